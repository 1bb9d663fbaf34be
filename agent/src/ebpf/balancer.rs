//! The load balancer's eBPF backend: the mesh's programs, their pinned
//! maps, and their links (TCX or cls_bpf on interfaces, bpf_links on
//! cgroups).
//!
//! Everything lives under one bpffs directory per node (`pin_dir`): the maps
//! at `pin_dir/<MAP>`, the links at `pin_dir/links/<program>@<where>`. A new
//! agent (restarted or upgraded) loads its object against the pinned maps
//! (a map whose layout changed is started afresh), then takes each
//! attachment over in one step (see [`super::attach`]), so packets never
//! meet a missing program and tracked flows keep their backends. Dropping an
//! [`EbpfBalancer`] leaves everything in place; [`EbpfBalancer::remove`]
//! takes it all down.

mod node;

pub use node::{HOST_END, INNER_END};

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier};
use aya::Ebpf;
use shoal_ebpf_common::flow::{
    CT_MAP, FRAGS_MAP, NAT_MAP, NEW_CT_MAP, NEW_RETURN_MAP, NEW_REV_MAP, RETURN_MAP, REV_MAP,
};
use shoal_ebpf_common::mesh::{
    wire_addr, BigServiceTable, Config, LiveKey, ServiceKey, ServiceTable, VipBackends,
    BIG_SERVICES_MAP, CONFIG_MAP, CONNECT_PROGRAM, HOST_CONNECT_PROGRAM, HOST_RECVMSG_PROGRAM,
    HOST_SENDMSG_PROGRAM, INGRESS_PROGRAM, LEARN_PROGRAM, LIVE, LIVE_MAP, LOCAL_MAP,
    MAX_BIG_BACKENDS, MAX_VIP_BACKENDS, RECVMSG_PROGRAM, REPLY_PROGRAM, RETURN_PROGRAM,
    SENDMSG_PROGRAM, SERVICES_MAP, SERVICE_BIG, STATS_MAP, STAT_SLOTS, UDP_VIPS_MAP, VIPS_MAP,
};

use super::attach::{self, AttachMode, TcHook};
use super::links;
use super::loader::{self, ObjectSource};
use super::tables::{self, live_keys, port_key, service_key};
use super::EbpfError;
use crate::balancer::{
    Attached, BalancerError, Counters, Limits, LoadBalancer, NodeAttachment, PortBackends, PortKey,
    Programmed,
};
use crate::netns::{self, NetnsDir};

/// Every map of the mesh, for pinning.
pub const MAPS: [&str; 16] = [
    VIPS_MAP,
    UDP_VIPS_MAP,
    SERVICES_MAP,
    BIG_SERVICES_MAP,
    LIVE_MAP,
    LOCAL_MAP,
    CONFIG_MAP,
    STATS_MAP,
    CT_MAP,
    REV_MAP,
    NEW_CT_MAP,
    NEW_REV_MAP,
    RETURN_MAP,
    NEW_RETURN_MAP,
    NAT_MAP,
    FRAGS_MAP,
];

/// The mesh's TC programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeshProgram {
    /// Underlay interfaces: requests to published ports.
    Ingress,
    /// The link's host end: replies from backends.
    Reply,
    /// Ingress network namespace, VXLAN device and link's inner end.
    Learn,
    /// Ingress network namespace, the bridge.
    Return,
}

impl MeshProgram {
    pub const ALL: [MeshProgram; 4] = [
        MeshProgram::Ingress,
        MeshProgram::Reply,
        MeshProgram::Learn,
        MeshProgram::Return,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MeshProgram::Ingress => INGRESS_PROGRAM,
            MeshProgram::Reply => REPLY_PROGRAM,
            MeshProgram::Learn => LEARN_PROGRAM,
            MeshProgram::Return => RETURN_PROGRAM,
        }
    }
}

/// The east-west hooks, on the tasks' cgroup.
pub const TASK_HOOKS: [&str; 3] = [CONNECT_PROGRAM, SENDMSG_PROGRAM, RECVMSG_PROGRAM];
/// The node's own clients' hooks, on the root cgroup.
pub const HOST_HOOKS: [&str; 3] = [
    HOST_CONNECT_PROGRAM,
    HOST_SENDMSG_PROGRAM,
    HOST_RECVMSG_PROGRAM,
];

/// The loaded mesh: programs ready to attach and the maps to write.
pub struct EbpfBalancer {
    ebpf: Ebpf,
    origin: ObjectSource,
    pin_dir: PathBuf,
    hook: TcHook,
    services: HashMap<MapData, ServiceKey, ServiceTable>,
    big: HashMap<MapData, ServiceKey, BigServiceTable>,
    live: HashMap<MapData, LiveKey, u32>,
    locals: HashMap<MapData, u32, u32>,
    config: Array<MapData, Config>,
    vips: HashMap<MapData, u32, VipBackends>,
    stats: PerCpuArray<MapData, u64>,
    /// Liveness keys written, per port.
    live_written: BTreeMap<ServiceKey, BTreeSet<LiveKey>>,
    /// Ports whose backends are in the big table.
    big_ports: BTreeSet<ServiceKey>,
    /// Where the agent attaches on its node (none for `shoal mesh`).
    pub(super) node: Option<NetnsDir>,
    /// The attachment made last, to tell when to make it again.
    pub(super) wired: Option<node::Wiring>,
    /// With netlink TC filters (no pins to find severed), the interface
    /// index each program was attached to, by place: an interface made
    /// again has another index and lost its filter.
    tc_devices: BTreeMap<String, TcDevice>,
}

/// Where a TC filter was attached: the namespace, the interface, its index.
struct TcDevice {
    netns: Option<PathBuf>,
    iface: String,
    index: u32,
}

/// The index of `iface` in namespace `netns` (this one with none), if it
/// exists.
fn ifindex_in(netns: Option<&Path>, iface: &str) -> Option<u32> {
    netns::run_in(netns, || nix::net::if_::if_nametoindex(iface).ok())
        .ok()
        .flatten()
}

impl EbpfBalancer {
    /// Loads shoal's object with the mesh's maps pinned in `pin_dir` (reusing
    /// maps already pinned there, with their flows) and its programs loaded
    /// into the kernel, not yet attached. Fails on a kernel older than
    /// [`attach::MIN_KERNEL`], or (with [`AttachMode::Tcx`]) without TCX.
    pub fn load(pin_dir: &Path, mode: AttachMode) -> Result<Self, EbpfError> {
        attach::check_kernel()?;
        let hook = attach::resolve(mode)?;
        loader::drop_stale_pins(pin_dir, &MAPS)?;
        let (mut ebpf, origin) = loader::load_object(Some(pin_dir), &MAPS)?;
        for program in MeshProgram::ALL {
            classifier(&mut ebpf, &origin, program.name())?
                .load()
                .map_err(|e| program_error(program.name(), "load it into the kernel", e))?;
        }
        for name in TASK_HOOKS.into_iter().chain(HOST_HOOKS) {
            socket_program(&mut ebpf, &origin, name)?
                .load()
                .map_err(|e| program_error(name, "load it into the kernel", e))?;
        }
        let services = open_hash(&mut ebpf, &origin, SERVICES_MAP)?;
        let big = open_hash(&mut ebpf, &origin, BIG_SERVICES_MAP)?;
        let vips = open_hash(&mut ebpf, &origin, VIPS_MAP)?;
        let live = open_hash(&mut ebpf, &origin, LIVE_MAP)?;
        let locals = open_hash(&mut ebpf, &origin, LOCAL_MAP)?;
        let config = Array::try_from(take_map(&mut ebpf, &origin, CONFIG_MAP)?)
            .map_err(|e| map_error(CONFIG_MAP, "open", e))?;
        let stats = PerCpuArray::try_from(take_map(&mut ebpf, &origin, STATS_MAP)?)
            .map_err(|e| map_error(STATS_MAP, "open", e))?;
        Ok(EbpfBalancer {
            ebpf,
            origin,
            pin_dir: pin_dir.to_path_buf(),
            hook,
            services,
            big,
            live,
            locals,
            config,
            vips,
            stats,
            live_written: BTreeMap::new(),
            big_ports: BTreeSet::new(),
            node: None,
            wired: None,
            tc_devices: BTreeMap::new(),
        })
    }

    /// The balancer of an agent, which attaches to its node: the ingress
    /// network's namespace is in `netns`.
    pub fn for_node(mut self, netns: NetnsDir) -> Self {
        self.node = Some(netns);
        self
    }

    /// How TC programs are attached on this node.
    pub fn hook(&self) -> TcHook {
        self.hook
    }

    /// Attaches `program` to the TC ingress of `iface` in the namespace at
    /// `netns` (the caller's when `None`), taking over what an earlier agent
    /// attached there without a gap.
    pub fn attach_program(
        &mut self,
        program: MeshProgram,
        iface: &str,
        netns: Option<&Path>,
    ) -> Result<(), EbpfError> {
        let place = match netns.and_then(|p| p.file_name()) {
            Some(ns) => format!("{}@{}@{iface}", program.name(), ns.to_string_lossy()),
            None => format!("{}@host@{iface}", program.name()),
        };
        let pin = self.links_dir()?.join(&place);
        let (ebpf, origin, hook) = (&mut self.ebpf, &self.origin, self.hook);
        let attached = netns::run_in(netns, || -> Result<(), EbpfError> {
            let prog = classifier(ebpf, origin, program.name())?;
            attach::attach_ingress(prog, program.name(), iface, hook, &pin)
        });
        attached.map_err(|e| EbpfError::PinDir {
            path: self.pin_dir.clone(),
            source: std::io::Error::other(e.chain().to_string()),
        })??;
        if self.hook == TcHook::Netlink {
            if let Some(index) = ifindex_in(netns, iface) {
                let device = TcDevice {
                    netns: netns.map(Path::to_path_buf),
                    iface: iface.to_string(),
                    index,
                };
                self.tc_devices.insert(place, device);
            }
        }
        Ok(())
    }

    /// With netlink TC filters: the places whose interface was deleted or
    /// made again since its program was attached there (its filter went with
    /// it). A place stays listed until a program is attached there again.
    pub fn replaced_tc_devices(&self) -> Vec<String> {
        self.tc_devices
            .iter()
            .filter(|(_, d)| ifindex_in(d.netns.as_deref(), &d.iface) != Some(d.index))
            .map(|(place, _)| place.clone())
            .collect()
    }

    /// Attaches the cgroup hooks `names` to the cgroup at `cgroup`, as
    /// bpf_links pinned with `place` in their name. A link pinned by an
    /// earlier agent is pointed at this agent's program in one step (it may
    /// be another shoal's, with other maps).
    pub fn attach_cgroup_hooks(
        &mut self,
        names: &[&'static str],
        cgroup: &Path,
        place: &str,
    ) -> Result<(), EbpfError> {
        let links = self.links_dir()?;
        std::fs::create_dir_all(cgroup).map_err(|source| EbpfError::PinDir {
            path: cgroup.to_path_buf(),
            source,
        })?;
        let dir = std::fs::File::open(cgroup).map_err(|source| EbpfError::PinDir {
            path: cgroup.to_path_buf(),
            source,
        })?;
        for &name in names {
            let pin = links.join(format!("{name}@{place}"));
            let prog = socket_program(&mut self.ebpf, &self.origin, name)?;
            if pin.exists() {
                use std::os::fd::{AsFd, AsRawFd};
                let prog_fd = prog
                    .fd()
                    .map_err(|e| program_error(name, "get its descriptor", e))?
                    .as_fd()
                    .as_raw_fd();
                match super::probe::link_update(&pin, prog_fd) {
                    Ok(()) => continue,
                    // The link no longer works (its cgroup went away): make
                    // a new one.
                    Err(e) => {
                        tracing::debug!("{name}: replacing its pinned link: {}", e.chain());
                        attach::unpin_link(&pin);
                    }
                }
            }
            // With a bpf link the kernel wants no attach flags; links to one
            // cgroup always stack.
            let id = prog.attach(&dir, CgroupAttachMode::Single).map_err(|e| {
                program_error(name, &format!("attach it to {}", cgroup.display()), e)
            })?;
            let link: FdLink = prog
                .take_link(id)
                .map_err(|e| program_error(name, "keep its link", e))?
                .try_into()
                .map_err(|e| attach::link_error(name, "use its link as a bpf link", e))?;
            attach::pin_link(link, &pin)?;
        }
        Ok(())
    }

    /// Unpins every TC link whose interface was deleted (the kernel severed
    /// it), so the next attachment makes it anew; answers their pins'
    /// names. Cheap: two `bpf()` calls per pinned link.
    pub fn drop_severed_links(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.pin_dir.join("links")) else {
            return Vec::new();
        };
        let programs = MeshProgram::ALL.map(MeshProgram::name);
        let candidates = entries.flatten().map(|e| e.path()).filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| links::is_tc_pin(n, &programs))
        });
        let found = links::severed(&links::KernelPins, candidates);
        for pin in &found {
            attach::unpin_link(pin);
        }
        found
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }

    /// Where the links are pinned, created if missing.
    pub(super) fn links_dir(&self) -> Result<PathBuf, EbpfError> {
        let links = self.pin_dir.join("links");
        std::fs::create_dir_all(&links).map_err(|source| EbpfError::PinDir {
            path: links.clone(),
            source,
        })?;
        Ok(links)
    }

    /// Writes one slot of the configuration map.
    pub fn set_config(&mut self, slot: u32, config: Config) -> Result<(), EbpfError> {
        self.config
            .set(slot, config, 0)
            .map_err(|e| map_error(CONFIG_MAP, "write the node's configuration", e))
    }

    /// Reads one slot of the configuration map.
    pub fn config(&self, slot: u32) -> Result<Config, EbpfError> {
        self.config
            .get(&slot, 0)
            .map_err(|e| map_error(CONFIG_MAP, "read the node's configuration", e))
    }

    /// Takes everything down: unpins (and so detaches) every link, removes
    /// shoal's TC filters from the host's interfaces, and removes the map
    /// pins. Flows in progress are dropped.
    pub fn remove(pin_dir: &Path) -> Result<(), EbpfError> {
        let links = pin_dir.join("links");
        if let Ok(entries) = std::fs::read_dir(&links) {
            for entry in entries.flatten() {
                attach::unpin_link(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(&links);
        if let Ok(ifaces) = nix::net::if_::if_nameindex() {
            for iface in ifaces.iter() {
                let name = iface.name().to_string_lossy();
                for program in MeshProgram::ALL {
                    attach::remove_filter(&name, program.name());
                }
            }
        }
        loader::remove_pins(pin_dir, &MAPS)
    }

    /// Runs `program` once on `frame` with BPF_PROG_TEST_RUN.
    pub fn test_run(
        &mut self,
        program: MeshProgram,
        frame: &[u8],
    ) -> Result<super::probe::TestRun, EbpfError> {
        use std::os::fd::{AsFd, AsRawFd};
        let prog = classifier(&mut self.ebpf, &self.origin, program.name())?;
        let fd = prog
            .fd()
            .map_err(|e| program_error(program.name(), "get its descriptor", e))?
            .as_fd()
            .as_raw_fd();
        super::probe::test_run(fd, frame).map_err(|e| {
            program_error(
                program.name(),
                "test-run it",
                aya::programs::ProgramError::IOError(e),
            )
        })
    }
}

impl LoadBalancer for EbpfBalancer {
    fn observe(&mut self) -> Result<Programmed, BalancerError> {
        let mut held = Programmed::default();
        let mut live: BTreeMap<ServiceKey, BTreeSet<LiveKey>> = BTreeMap::new();
        for key in self.live.keys() {
            let key = key.map_err(|e| map_error(LIVE_MAP, "read", e))?;
            live.entry(key.service).or_default().insert(key);
        }
        for item in self.services.iter() {
            let (key, small) = item.map_err(|e| map_error(SERVICES_MAP, "read", e))?;
            let big = if small.flags & SERVICE_BIG != 0 {
                self.big_ports.insert(key);
                Some(
                    self.big
                        .get(&key, 0)
                        .map_err(|e| map_error(BIG_SERVICES_MAP, "read", e))?,
                )
            } else {
                None
            };
            let Some(port) = port_key(&key) else {
                continue;
            };
            let active = tables::table_backends(&small, big.as_ref());
            let keys = live.remove(&key).unwrap_or_default();
            let lingering = keys
                .iter()
                .map(|k| {
                    tables::mesh_backend(&shoal_ebpf_common::mesh::Backend {
                        addr: k.addr,
                        port: k.port,
                        mac: [0; 6],
                    })
                })
                .filter(|b| !active.iter().any(|a| a.ip == b.ip && a.port == b.port))
                .collect();
            self.live_written.insert(key, keys);
            held.ports.insert(port, PortBackends { active, lingering });
        }
        // Liveness keys of ports without a table: left to be removed.
        self.live_written.extend(live);
        for item in self.vips.iter() {
            let (vip, value) = item.map_err(|e| map_error(VIPS_MAP, "read", e))?;
            held.vips
                .insert(Ipv4Addr::from(vip.to_ne_bytes()), tables::vip_tasks(&value));
        }
        for addr in self.locals.keys() {
            let addr = addr.map_err(|e| map_error(LOCAL_MAP, "read", e))?;
            held.locals.insert(Ipv4Addr::from(addr.to_ne_bytes()));
        }
        Ok(held)
    }

    fn attach(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError> {
        node::attach(self, node)
    }

    fn detach(&mut self) -> Result<(), BalancerError> {
        self.wired = None;
        Ok(Self::remove(&self.pin_dir)?)
    }

    fn limits(&self) -> Limits {
        Limits {
            backends_per_port: MAX_BIG_BACKENDS,
            tasks_per_vip: MAX_VIP_BACKENDS,
        }
    }

    fn put_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        Ok(self
            .locals
            .insert(wire_addr(addr.octets()), LIVE, 0)
            .map_err(|e| map_error(LOCAL_MAP, "add a local address", e))?)
    }

    fn delete_local(&mut self, addr: Ipv4Addr) -> Result<(), BalancerError> {
        Ok(
            ignore_missing(self.locals.remove(&wire_addr(addr.octets())))
                .map_err(|e| map_error(LOCAL_MAP, "remove a local address", e))?,
        )
    }

    /// New liveness keys first, then the table, then stale keys: a flow
    /// never finds its backend missing from the live set while it still
    /// serves.
    fn put_port(&mut self, port: PortKey, backends: &PortBackends) -> Result<(), BalancerError> {
        let key = service_key(port);
        let want = live_keys(key, backends);
        let old = self.live_written.get(&key).cloned().unwrap_or_default();
        for k in want.difference(&old) {
            self.live
                .insert(*k, LIVE, 0)
                .map_err(|e| map_error(LIVE_MAP, "add a backend", e))?;
        }
        self.live_written.insert(key, want.clone());
        let tables = tables::port_tables(&backends.active);
        match &tables.big {
            Some(big) => {
                self.big
                    .insert(key, big.as_ref(), 0)
                    .map_err(|e| map_error(BIG_SERVICES_MAP, "write a published port", e))?;
                self.big_ports.insert(key);
                self.services
                    .insert(key, tables.small.as_ref(), 0)
                    .map_err(|e| map_error(SERVICES_MAP, "write a published port", e))?;
            }
            None => {
                self.services
                    .insert(key, tables.small.as_ref(), 0)
                    .map_err(|e| map_error(SERVICES_MAP, "write a published port", e))?;
                if self.big_ports.remove(&key) {
                    ignore_missing(self.big.remove(&key))
                        .map_err(|e| map_error(BIG_SERVICES_MAP, "remove a published port", e))?;
                }
            }
        }
        for k in old.difference(&want) {
            ignore_missing(self.live.remove(k))
                .map_err(|e| map_error(LIVE_MAP, "remove a backend", e))?;
        }
        Ok(())
    }

    fn delete_port(&mut self, port: PortKey) -> Result<(), BalancerError> {
        let key = service_key(port);
        ignore_missing(self.services.remove(&key))
            .map_err(|e| map_error(SERVICES_MAP, "remove a published port", e))?;
        if self.big_ports.remove(&key) {
            ignore_missing(self.big.remove(&key))
                .map_err(|e| map_error(BIG_SERVICES_MAP, "remove a published port", e))?;
        }
        for k in self.live_written.remove(&key).unwrap_or_default() {
            ignore_missing(self.live.remove(&k))
                .map_err(|e| map_error(LIVE_MAP, "remove a backend", e))?;
        }
        Ok(())
    }

    fn put_vip(&mut self, vip: Ipv4Addr, tasks: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError> {
        let value = tables::vip_value(tasks);
        Ok(self
            .vips
            .insert(wire_addr(vip.octets()), value.as_ref(), 0)
            .map_err(|e| map_error(VIPS_MAP, "write a virtual IP", e))?)
    }

    fn delete_vip(&mut self, vip: Ipv4Addr) -> Result<(), BalancerError> {
        Ok(ignore_missing(self.vips.remove(&wire_addr(vip.octets())))
            .map_err(|e| map_error(VIPS_MAP, "remove a virtual IP", e))?)
    }

    fn counters(&mut self) -> Result<Counters, BalancerError> {
        let mut out = Vec::new();
        for (slot, name) in STAT_NAMES.iter().enumerate().take(STAT_SLOTS as usize) {
            let per_cpu = self
                .stats
                .get(&(slot as u32), 0)
                .map_err(|e| map_error(STATS_MAP, "read", e))?;
            out.push((*name, per_cpu.iter().sum()));
        }
        Ok(out)
    }
}

/// The counters' names, by `STAT_*` slot (metric `shoal_mesh_<name>_total`).
pub const STAT_NAMES: [&str; STAT_SLOTS as usize] = [
    "flows_opened",
    "flows_established",
    "flows_closed",
    "segments_unverified",
    "icmp_translated",
    "fragments",
    "too_big",
    "fragmented",
    "ports_translated",
    "local_clients",
];

fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    origin: &ObjectSource,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, EbpfError> {
    ebpf.program_mut(name)
        .ok_or_else(|| EbpfError::MissingInObject {
            origin: origin.to_string(),
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| program_error(name, "use it as a TC classifier", e))
}

fn socket_program<'a>(
    ebpf: &'a mut Ebpf,
    origin: &ObjectSource,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, EbpfError> {
    ebpf.program_mut(name)
        .ok_or_else(|| EbpfError::MissingInObject {
            origin: origin.to_string(),
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| program_error(name, "use it as a cgroup sock_addr program", e))
}

fn open_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    origin: &ObjectSource,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, EbpfError> {
    HashMap::try_from(take_map(ebpf, origin, name)?).map_err(|e| map_error(name, "open", e))
}

fn take_map(
    ebpf: &mut Ebpf,
    origin: &ObjectSource,
    name: &'static str,
) -> Result<aya::maps::Map, EbpfError> {
    ebpf.take_map(name)
        .ok_or_else(|| EbpfError::MissingInObject {
            origin: origin.to_string(),
            kind: "map",
            name,
        })
}

pub(super) fn map_error(map: &'static str, action: &str, e: aya::maps::MapError) -> EbpfError {
    EbpfError::Map {
        map,
        action: action.to_owned(),
        source: Box::new(e),
    }
}

pub(super) fn program_error(
    program: &'static str,
    action: &str,
    e: aya::programs::ProgramError,
) -> EbpfError {
    EbpfError::Program {
        program,
        action: action.to_owned(),
        source: Box::new(e),
    }
}
