//! The node's load balancer (published ports and virtual IPs), driven like
//! the overlay: from the gossip tables. Each live endpoint on the ingress
//! network that carries published ports is a backend of those ports, on
//! every node (host-mode ports: on its own node only); each endpoint that carries its service's virtual IP is a task
//! behind that VIP.
//!
//! [`BalancerPlane`] decides; the [`LoadBalancer`] it is given (eBPF on a
//! real node, a fake in tests) attaches and holds. Its entries outlive the
//! agent, so a restarted agent takes them over without dropping a flow, and
//! keeps what it inherited for [`WARM_UP`] while gossip relearns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_control::objects::{MacAddr, NetworkSpec, Protocol};
use shoal_ebpf_common::mesh::GATEWAY_MAC_PREFIX;

use crate::balancer::{
    Balancer, BalancerError, BalancerSpec, Changes, Counters, FailingPort, LoadBalancer,
    MeshBackend, NodeAttachment, PortEvent, PortRetry, Programmed, PublishedService,
};
use crate::ebpf;
use crate::gossip::table::EndpointRecord;
use crate::overlay::Gateway;

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

/// The published ports for the ingress network's endpoints: those of live
/// members are backends; those of members that are down (or whose agent
/// restarts) linger: their flows go on, new flows go elsewhere. A port
/// published in host mode is served only by the node of the task, the
/// one whose underlay address is `vtep`, and only for its own tasks.
pub fn published(
    ingress: &str,
    vtep: Ipv4Addr,
    live: &BTreeMap<String, Vec<EndpointRecord>>,
    lingering: &BTreeMap<String, Vec<EndpointRecord>>,
) -> Vec<PublishedService> {
    let mut services = Vec::new();
    let mut add = |record: &EndpointRecord, active: bool| {
        let host_ports = record.host_ports.iter().filter(|_| record.vtep == vtep);
        for port in record.ports.iter().chain(host_ports) {
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
                protocol: port.protocol,
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
    services
}

/// The virtual IP table for `live`: each endpoint carrying its service's
/// virtual IP is one of the tasks behind it.
pub fn vip_table(
    live: &BTreeMap<String, Vec<EndpointRecord>>,
) -> BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>> {
    let mut table: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for record in live.values().flatten() {
        if let Some(vip) = record.vip {
            table.entry(vip).or_default().insert(record.ip);
        }
    }
    table
}

/// After the agent starts, gossip takes a moment to learn the other nodes'
/// endpoints again (it syncs with a member as soon as it sees it, about a
/// second); until then a backend the balancer held before the start
/// lingers rather than losing its flows, a virtual IP keeps its tasks, and
/// the overlay keeps the entries it inherited.
pub const WARM_UP: Duration = Duration::from_secs(5);

/// `spec`, with what the balancer held but `spec` lacks kept: backends as
/// lingering, virtual IPs' tasks as they were.
fn keep_known(mut spec: BalancerSpec, known: &Programmed) -> BalancerSpec {
    for (port, backends) in &known.ports {
        spec.services.push(PublishedService {
            protocol: port.protocol,
            port: port.port,
            backends: Vec::new(),
            lingering: backends
                .active
                .iter()
                .chain(&backends.lingering)
                .cloned()
                .collect(),
        });
    }
    for (vip, tasks) in &known.vips {
        spec.vips.entry(*vip).or_default().extend(tasks);
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
type PortBackend = (Protocol, u16, MeshBackend);

/// `spec`, with the backends that left it within `linger` kept as
/// lingering. `departed` holds when each left; `previous` is the last
/// spec's active backends. Entries older than the linger go.
fn keep_departed(
    mut spec: BalancerSpec,
    previous: &BTreeSet<PortBackend>,
    departed: &mut BTreeMap<PortBackend, Instant>,
    now: Instant,
    linger: Duration,
) -> BalancerSpec {
    let active: BTreeSet<PortBackend> = active_backends(&spec);
    for gone in previous.difference(&active) {
        departed.entry(gone.clone()).or_insert(now);
    }
    departed.retain(|b, left| !active.contains(b) && now.duration_since(*left) < linger);
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
fn active_backends(spec: &BalancerSpec) -> BTreeSet<PortBackend> {
    spec.services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| (s.protocol, s.port, b.clone())))
        .collect()
}

/// How the plane gets its balancer, when the swarm first has an ingress
/// network.
pub type Loader<L> = Box<dyn FnMut() -> Result<L, BalancerError> + Send>;

/// The load balancer of this node.
pub struct BalancerPlane<L: LoadBalancer> {
    load: Loader<L>,
    balancer: Option<Balancer<L>>,
    vtep: Ipv4Addr,
    cgroup_root: PathBuf,
    host_cgroup: Option<PathBuf>,
    started: Instant,
    warm_up: Duration,
    /// What the balancer held when this agent took it over.
    inherited: Programmed,
    /// Entries over the balancer's limits, as last reported.
    over_limit: Vec<crate::balancer::Overflow>,
    /// The backends taking new flows in the last spec applied, and those
    /// that left it lately (kept lingering).
    active: BTreeSet<PortBackend>,
    departed: BTreeMap<PortBackend, Instant>,
    departed_linger: Duration,
    /// The other nodes' underlay addresses.
    peers: BTreeSet<Ipv4Addr>,
    /// Published ports the balancer refused, each retried on its own
    /// backoff.
    retry: PortRetry,
    /// Failed attempts to write or remove a published port so far.
    port_failures: u64,
}

impl<L: LoadBalancer> BalancerPlane<L> {
    pub fn new(
        load: Loader<L>,
        vtep: Ipv4Addr,
        cgroup_root: PathBuf,
        host_cgroup: Option<PathBuf>,
    ) -> Self {
        BalancerPlane {
            load,
            balancer: None,
            vtep,
            cgroup_root,
            host_cgroup,
            started: Instant::now(),
            warm_up: WARM_UP,
            inherited: Programmed::default(),
            over_limit: Vec::new(),
            active: BTreeSet::new(),
            departed: BTreeMap::new(),
            departed_linger: DEPARTED_LINGER,
            peers: BTreeSet::new(),
            retry: PortRetry::default(),
            port_failures: 0,
        }
    }

    /// Another warm-up than [`WARM_UP`].
    #[cfg(test)]
    pub fn with_warm_up(mut self, warm_up: Duration) -> Self {
        self.warm_up = warm_up;
        self
    }

    /// Another linger of departed backends than [`DEPARTED_LINGER`].
    #[cfg(test)]
    pub fn with_departed_linger(mut self, linger: Duration) -> Self {
        self.departed_linger = linger;
        self
    }

    /// The other nodes' underlay addresses (the IPVS mesh routes answers
    /// back to them).
    pub fn set_peers(&mut self, peers: &BTreeSet<Ipv4Addr>) {
        self.peers = peers.iter().copied().filter(|p| *p != self.vtep).collect();
    }

    /// The balancer, once loaded.
    #[cfg(test)]
    pub fn balancer(&mut self) -> Option<&mut Balancer<L>> {
        self.balancer.as_mut()
    }

    /// Brings the balancer to the gossip tables. Blocking. Nothing to do
    /// before the swarm has an ingress network. Entries over the
    /// balancer's limits are served up to them, and reported as an error
    /// (logged once per new report).
    pub fn sync(
        &mut self,
        networks: &[NetworkSpec],
        live: &BTreeMap<String, Vec<EndpointRecord>>,
        lingering: &BTreeMap<String, Vec<EndpointRecord>>,
        underlay_mtu: u32,
    ) -> Result<Changes, BalancerError> {
        let Some(ingress) = networks.iter().find(|n| n.ingress) else {
            return Ok(Changes::default());
        };
        if self.balancer.is_none() {
            let balancer = Balancer::new((self.load)()?)?;
            self.inherited = balancer.state().clone();
            self.started = Instant::now();
            self.balancer = Some(balancer);
        }
        let Some(balancer) = self.balancer.as_mut() else {
            return Ok(Changes::default());
        };
        let node = NodeAttachment {
            vtep: self.vtep,
            underlay_mtu,
            network: ingress.id.clone(),
            vni: ingress.vni,
            subnet: ingress.subnet,
            network_mtu: ingress.effective_mtu(underlay_mtu),
            gateway_mac: gateway_mac(self.vtep),
            cgroup_root: self.cgroup_root.clone(),
            host_cgroup: self.host_cgroup.clone(),
            peers: self.peers.iter().map(|p| (*p, gateway_mac(*p))).collect(),
        };
        let attached = balancer.kernel().attach(&node)?;
        if attached.changed {
            tracing::info!(
                "mesh: attached (underlay {}, network {})",
                attached.underlay,
                ingress.id
            );
        }
        let mut want = BalancerSpec {
            locals: attached.locals.clone(),
            services: published(&ingress.id, self.vtep, live, lingering),
            vips: vip_table(live),
        };
        let active = active_backends(&want);
        want = keep_departed(
            want,
            &self.active,
            &mut self.departed,
            Instant::now(),
            self.departed_linger,
        );
        self.active = active;
        if self.started.elapsed() < self.warm_up {
            want = keep_known(want, &self.inherited);
        }
        let now = Instant::now();
        let held = self.retry.held(now);
        let changes = balancer.apply_holding(&want, &held)?;
        self.port_failures += changes.failed_ports.len() as u64;
        for event in self.retry.record(&changes.failed_ports, &held, now) {
            log_port(&event);
        }
        if !changes.over_limit.is_empty() && changes.over_limit != self.over_limit {
            self.over_limit = changes.over_limit.clone();
            return Err(BalancerError::OverLimit(changes.over_limit));
        }
        self.over_limit = changes.over_limit.clone();
        Ok(changes)
    }

    /// Published ports the balancer fails to program now, each retried on
    /// its own backoff.
    pub fn failing_ports(&self) -> Vec<FailingPort> {
        self.retry.failing()
    }

    /// Failed attempts to write or remove a published port so far.
    pub fn port_failures(&self) -> u64 {
        self.port_failures
    }

    /// When the next refused port is due for a retry, if any.
    pub fn next_port_retry(&self) -> Option<Instant> {
        self.retry.next_due()
    }

    /// Entries over the balancer's limits right now.
    pub fn over_limit(&self) -> &[crate::balancer::Overflow] {
        &self.over_limit
    }

    /// The data path's counters, once loaded.
    pub fn counters(&mut self) -> Option<Counters> {
        self.balancer.as_mut()?.kernel().counters().ok()
    }
}

/// Logs a change in the failing ports: once per new error, not per pass.
fn log_port(event: &PortEvent) {
    match event {
        PortEvent::Failed {
            port,
            error,
            retry_in,
        } => tracing::warn!(
            "mesh: cannot program published port {port}: {error}; the other ports go on, this \
             one is retried in {} s and backing off",
            retry_in.as_secs()
        ),
        PortEvent::Recovered { port } => {
            tracing::info!("mesh: published port {port} is programmed again")
        }
    }
}

#[cfg(test)]
mod tests;
