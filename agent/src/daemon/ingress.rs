//! The routing mesh on this node, driven like the overlay: from the ingress
//! network's gossip table. Each live endpoint on the ingress network that
//! carries published ports is a backend of those ports, on every node.
//!
//! What it keeps in place (see `shoal_ebpf_common::mesh` for the data path):
//! - the link: a veth from the host namespace (`sh-ingress`) to the ingress
//!   network's bridge (`ig0`), both ends with this node's gateway MAC;
//! - the programs: `shoal_ingress` on the underlay interface (the one holding
//!   the node's address), `shoal_reply` on `sh-ingress`, and in the ingress
//!   network's namespace `shoal_learn` on the VXLAN device and `ig0`, and
//!   `shoal_return` on the bridge;
//! - the tables, through [`Mesh`].
//!
//! Maps and links are pinned in `pin_dir`, so a restarted agent takes them
//! over without dropping a tracked flow.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use shoal_control::objects::{MacAddr, NetworkSpec};
use shoal_ebpf_common::mesh::{wire_addr, Config, CONFIG_HOST, CONFIG_NETWORK, GATEWAY_MAC_PREFIX};

use crate::ebpf::{self, EbpfMesh, MeshProgram};
use crate::gossip::table::{EndpointRecord, Protocol};
use crate::mesh::{
    host, Mesh, MeshBackend, MeshChanges, MeshSpec, MeshState, Proto, PublishedService,
};
use crate::netns::{self, NetnsDir};
use crate::overlay::{names, Gateway, RtnlKernel};

/// The link's host end.
pub const HOST_END: &str = "sh-ingress";
/// The link's end on the ingress network's bridge.
pub const INNER_END: &str = "ig0";

/// Where this agent pins the mesh: one directory per run dir, so agents of
/// several namespaced hosts on one machine keep apart.
pub fn pin_dir(run_dir: &std::path::Path) -> PathBuf {
    let name: String = run_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    PathBuf::from(ebpf::BPFFS_ROOT).join("shoal").join(name)
}

/// A node's gateway MAC on the ingress network: the mesh's prefix and the
/// node's VTEP address.
pub fn gateway_mac(vtep: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = vtep.octets();
    MacAddr([GATEWAY_MAC_PREFIX[0], GATEWAY_MAC_PREFIX[1], a, b, c, d])
}

/// The overlay's forwarding entries for other nodes' gateway MACs on the
/// ingress network, so the return path can reach them.
pub fn gateways(networks: &[NetworkSpec], vteps: &BTreeSet<Ipv4Addr>) -> Vec<Gateway> {
    let Some(ingress) = networks.iter().find(|n| n.ingress) else {
        return Vec::new();
    };
    vteps
        .iter()
        .map(|vtep| Gateway {
            network: ingress.id.clone(),
            mac: gateway_mac(*vtep),
            vtep: *vtep,
        })
        .collect()
}

/// The mesh spec for the ingress network's endpoints: those of live members
/// are backends; those of members that are down (or whose agent restarts)
/// linger: their flows go on, new flows go elsewhere.
pub fn spec(
    locals: BTreeSet<Ipv4Addr>,
    ingress: &str,
    live: &BTreeMap<String, Vec<EndpointRecord>>,
    lingering: &BTreeMap<String, Vec<EndpointRecord>>,
) -> MeshSpec {
    let mut services = Vec::new();
    let mut add = |record: &EndpointRecord, active: bool| {
        for port in &record.ports {
            let backend = MeshBackend {
                ip: record.ip,
                port: port.target,
                mac: record.mac,
            };
            let (backends, lingering) = if active {
                (vec![backend], Vec::new())
            } else {
                (Vec::new(), vec![backend])
            };
            services.push(PublishedService {
                protocol: match port.protocol {
                    Protocol::Tcp => Proto::Tcp,
                    Protocol::Udp => Proto::Udp,
                },
                port: port.published,
                backends,
                lingering,
            });
        }
    };
    for record in live.get(ingress).into_iter().flatten() {
        add(record, true);
    }
    for record in lingering.get(ingress).into_iter().flatten() {
        add(record, false);
    }
    MeshSpec { locals, services }
}

/// After the agent starts, gossip takes a moment to learn the other nodes'
/// endpoints again (it syncs with a member as soon as it sees it, about a
/// second); until then a backend the tables held before the start lingers
/// rather than losing its flows, and the overlay keeps the entries it
/// inherited.
pub const WARM_UP: Duration = Duration::from_secs(5);

/// `spec`, with every backend the tables hold but `spec` lacks kept as
/// lingering.
fn keep_known(mut spec: MeshSpec, known: &MeshState) -> MeshSpec {
    for (key, backends) in &known.services {
        let Some(protocol) = [Proto::Tcp, Proto::Udp]
            .into_iter()
            .find(|p| p.number() == key.proto)
        else {
            continue;
        };
        spec.services.push(PublishedService {
            protocol,
            port: u16::from_be(key.port),
            backends: Vec::new(),
            lingering: backends.iter().cloned().collect(),
        });
    }
    spec
}

/// How long a backend that left the live records keeps its flows (as a
/// lingering backend) before they are reset: a task being stopped leaves
/// the published ports first and is stopped [`crate::daemon::tasks::PORT_DRAIN`]
/// later, so requests in flight finish rather than being reset the moment
/// it leaves.
pub const DEPARTED_LINGER: Duration = Duration::from_secs(3);

/// A backend of one published port.
type PortBackend = (Proto, u16, MeshBackend);

/// `spec`, with the backends that left it within [`DEPARTED_LINGER`] kept
/// as lingering. `departed` holds when each left; `previous` is the last
/// spec applied. Entries older than the linger go.
fn keep_departed(
    mut spec: MeshSpec,
    previous: &BTreeSet<PortBackend>,
    departed: &mut BTreeMap<PortBackend, Instant>,
    now: Instant,
) -> MeshSpec {
    let active: BTreeSet<PortBackend> = active_backends(&spec);
    for gone in previous.difference(&active) {
        departed.entry(gone.clone()).or_insert(now);
    }
    departed.retain(|b, left| !active.contains(b) && now.duration_since(*left) < DEPARTED_LINGER);
    for (protocol, port, backend) in departed.keys() {
        match spec
            .services
            .iter_mut()
            .find(|s| s.protocol == *protocol && s.port == *port)
        {
            Some(service) if !service.lingering.contains(backend) => {
                service.lingering.push(backend.clone())
            }
            Some(_) => {}
            None => spec.services.push(PublishedService {
                protocol: *protocol,
                port: *port,
                backends: Vec::new(),
                lingering: vec![backend.clone()],
            }),
        }
    }
    spec
}

/// The backends that take new flows in `spec`.
fn active_backends(spec: &MeshSpec) -> BTreeSet<PortBackend> {
    spec.services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| (s.protocol, s.port, b.clone())))
        .collect()
}

/// The mesh of this node.
pub struct IngressPlane {
    pin_dir: PathBuf,
    netns: NetnsDir,
    vtep: Ipv4Addr,
    mesh: Option<Mesh<EbpfMesh>>,
    /// The ingress network the programs are attached for.
    attached: Option<String>,
    started: Instant,
    /// What the tables held when this agent took them over.
    inherited: MeshState,
    /// Where the east-west hook attaches.
    cgroup_root: PathBuf,
    /// The virtual IP table as last written.
    vips: Option<BTreeMap<u32, BTreeSet<u32>>>,
    /// The backends taking new flows in the last spec applied, and those
    /// that left it lately (kept lingering).
    active: BTreeSet<PortBackend>,
    departed: BTreeMap<PortBackend, Instant>,
}

impl IngressPlane {
    pub fn new(pin_dir: PathBuf, netns: NetnsDir, vtep: Ipv4Addr, cgroup_root: PathBuf) -> Self {
        IngressPlane {
            pin_dir,
            netns,
            vtep,
            mesh: None,
            attached: None,
            started: Instant::now(),
            inherited: MeshState::default(),
            cgroup_root,
            vips: None,
            active: BTreeSet::new(),
            departed: BTreeMap::new(),
        }
    }

    /// Brings the mesh to the ingress network's live endpoints. Blocking.
    /// Nothing to do before the swarm has an ingress network.
    pub fn sync(
        &mut self,
        networks: &[NetworkSpec],
        live: &BTreeMap<String, Vec<EndpointRecord>>,
        lingering: &BTreeMap<String, Vec<EndpointRecord>>,
        underlay_mtu: u32,
    ) -> anyhow::Result<MeshChanges> {
        let Some(ingress) = networks.iter().find(|n| n.ingress) else {
            return Ok(MeshChanges::default());
        };
        let kernel = RtnlKernel::new(self.netns.clone());
        let mac = gateway_mac(self.vtep);
        let created = kernel.ensure_link(
            &ingress.id,
            HOST_END,
            INNER_END,
            mac,
            ingress.effective_mtu(underlay_mtu),
        )?;
        let underlay = host::iface_with(self.vtep)?
            .with_context(|| format!("no interface holds this node's address {}", self.vtep))?;
        if self.mesh.is_none() {
            ebpf::ensure_bpffs(std::path::Path::new(ebpf::BPFFS_ROOT))?;
            let mesh = Mesh::new(EbpfMesh::load(&self.pin_dir)?)?;
            self.inherited = mesh.state().clone();
            self.mesh = Some(mesh);
        }
        let mesh = self.mesh.as_mut().context("the mesh is not loaded")?;
        if created || self.attached.as_deref() != Some(ingress.id.as_str()) {
            attach(mesh.kernel(), &self.netns, ingress, &underlay, mac)?;
            mesh.kernel().attach_socket_hooks(&self.cgroup_root)?;
            self.attached = Some(ingress.id.clone());
            tracing::info!(
                "mesh: ingress programs attached (underlay {underlay}, network {})",
                ingress.id
            );
        }
        sync_vips(mesh.kernel(), &mut self.vips, live)?;
        let locals = host::iface(&underlay)?.addrs;
        let mut want = spec(locals, &ingress.id, live, lingering);
        let active = active_backends(&want);
        want = keep_departed(want, &self.active, &mut self.departed, Instant::now());
        self.active = active;
        if self.started.elapsed() < WARM_UP {
            want = keep_known(want, &self.inherited);
        }
        Ok(mesh.apply(&want)?)
    }
}

/// The virtual IP table for `live`: each endpoint carrying its service's
/// virtual IP is one of the tasks behind it.
pub fn vip_table(live: &BTreeMap<String, Vec<EndpointRecord>>) -> BTreeMap<u32, BTreeSet<u32>> {
    let mut table: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for record in live.values().flatten() {
        if let Some(vip) = record.vip {
            table
                .entry(wire_addr(vip.octets()))
                .or_default()
                .insert(wire_addr(record.ip.octets()));
        }
    }
    table
}

/// Writes the virtual IPs that changed since `written` (read from the kernel
/// the first time).
fn sync_vips(
    loaded: &mut EbpfMesh,
    written: &mut Option<BTreeMap<u32, BTreeSet<u32>>>,
    live: &BTreeMap<String, Vec<EndpointRecord>>,
) -> anyhow::Result<()> {
    let want = vip_table(live);
    let have = match written.take() {
        Some(have) => have,
        None => loaded.vips()?,
    };
    for (vip, addrs) in &want {
        if have.get(vip) != Some(addrs) {
            loaded.put_vip(*vip, addrs)?;
        }
    }
    for vip in have.keys().filter(|v| !want.contains_key(v)) {
        loaded.delete_vip(*vip)?;
    }
    *written = Some(want);
    Ok(())
}

/// Writes both configuration slots and attaches (or takes over) every program.
fn attach(
    loaded: &mut EbpfMesh,
    netns: &NetnsDir,
    ingress: &NetworkSpec,
    underlay: &str,
    mac: MacAddr,
) -> anyhow::Result<()> {
    let ns = netns.path(&names::network_ns(&ingress.id));
    let vxlan = names::vxlan(ingress.vni);
    let link = host::iface(HOST_END)?;
    loaded.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: link.index,
            vxlan_ifindex: 0,
            link_mac: mac.octets(),
            pad: [0; 2],
        },
    )?;
    let (inner, vx) = netns::run_in(Some(&ns), || -> anyhow::Result<(u32, u32)> {
        Ok((host::iface(INNER_END)?.index, host::iface(&vxlan)?.index))
    })??;
    loaded.set_config(
        CONFIG_NETWORK,
        Config {
            link_ifindex: inner,
            vxlan_ifindex: vx,
            link_mac: mac.octets(),
            pad: [0; 2],
        },
    )?;
    loaded.attach(MeshProgram::Ingress, underlay, None)?;
    loaded.attach(MeshProgram::Reply, HOST_END, None)?;
    loaded.attach(MeshProgram::Learn, &vxlan, Some(&ns))?;
    loaded.attach(MeshProgram::Learn, INNER_END, Some(&ns))?;
    loaded.attach(MeshProgram::Return, names::BRIDGE, Some(&ns))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::table::PublishedPort;

    fn record(task: &str, ip: [u8; 4], ports: Vec<PublishedPort>) -> EndpointRecord {
        let ip = Ipv4Addr::from(ip);
        EndpointRecord {
            task_id: task.into(),
            service: "web".into(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            vtep: Ipv4Addr::new(198, 18, 0, 2),
            ports,
            vip: None,
        }
    }

    #[test]
    fn a_backend_that_leaves_keeps_its_flows_for_a_while() {
        let backend = MeshBackend {
            ip: Ipv4Addr::new(10, 255, 0, 3),
            port: 80,
            mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 255, 0, 3)),
        };
        let with = MeshSpec {
            locals: BTreeSet::new(),
            services: vec![PublishedService {
                protocol: Proto::Tcp,
                port: 8080,
                backends: vec![backend.clone()],
                lingering: Vec::new(),
            }],
        };
        let without = MeshSpec::default();
        let mut departed = BTreeMap::new();
        let t0 = Instant::now();
        let previous = active_backends(&with);
        let kept = keep_departed(without.clone(), &previous, &mut departed, t0);
        assert_eq!(kept.services.len(), 1);
        assert!(kept.services[0].backends.is_empty(), "no new flows");
        assert_eq!(kept.services[0].lingering, vec![backend.clone()]);
        // Still lingering a moment later, gone after the linger.
        let later = keep_departed(
            without.clone(),
            &BTreeSet::new(),
            &mut departed,
            t0 + Duration::from_secs(1),
        );
        assert_eq!(later.services[0].lingering, vec![backend.clone()]);
        let after = keep_departed(
            without.clone(),
            &BTreeSet::new(),
            &mut departed,
            t0 + DEPARTED_LINGER,
        );
        assert!(after.services.is_empty());
        assert!(departed.is_empty());
        // A backend that comes back takes new flows again at once.
        let kept = keep_departed(without, &previous, &mut departed, t0);
        let back = keep_departed(with.clone(), &BTreeSet::new(), &mut departed, t0);
        assert_eq!(back, with);
        assert!(departed.is_empty());
        drop(kept);
    }

    #[test]
    fn only_ingress_endpoints_with_ports_become_backends() {
        let port = PublishedPort {
            protocol: Protocol::Tcp,
            published: 8080,
            target: 80,
        };
        let live = BTreeMap::from([
            (
                "ing".to_string(),
                vec![
                    record("a", [10, 255, 0, 2], vec![port]),
                    record("b", [10, 255, 0, 3], vec![port]),
                    record("c", [10, 255, 0, 4], vec![]),
                ],
            ),
            (
                "app".to_string(),
                vec![record("a", [10, 0, 0, 2], vec![port])],
            ),
        ]);
        let spec = spec(BTreeSet::new(), "ing", &live, &BTreeMap::new());
        let ips: Vec<Ipv4Addr> = spec
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.ip))
            .collect();
        assert_eq!(
            ips,
            [Ipv4Addr::new(10, 255, 0, 2), Ipv4Addr::new(10, 255, 0, 3)]
        );
        assert!(spec.services.iter().all(|s| s.port == 8080));
        assert!(spec
            .services
            .iter()
            .flat_map(|s| &s.backends)
            .all(|b| b.port == 80));
    }

    #[test]
    fn gateway_macs_carry_the_vtep() {
        let mac = gateway_mac(Ipv4Addr::new(198, 18, 0, 7));
        assert_eq!(mac.octets(), [0x02, 0x5e, 198, 18, 0, 7]);
        assert_ne!(mac, MacAddr::from_ipv4(Ipv4Addr::new(198, 18, 0, 7)));
    }
}
