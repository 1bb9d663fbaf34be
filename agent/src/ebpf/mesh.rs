//! The routing mesh's eBPF backend: the four mesh programs, their pinned maps,
//! and their TCX links, also pinned.
//!
//! Everything lives under one bpffs directory per node (`pin_dir`): the maps
//! at `pin_dir/<MAP>`, the links at `pin_dir/links/<program>@<where>`. A new
//! agent (restarted or upgraded) loads its object against the pinned maps,
//! then swaps each pinned link over to its own program in one step
//! (`BPF_LINK_UPDATE`), so packets never meet a missing program and tracked
//! flows keep their backends. Dropping an [`EbpfMesh`] leaves everything in
//! place; [`EbpfMesh::remove`] takes it all down.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{
    tc::TcAttachOptions, CgroupAttachMode, CgroupSockAddr, LinkOrder, SchedClassifier, TcAttachType,
};
use aya::Ebpf;
use shoal_ebpf_common::mesh::{
    Config, LiveKey, ServiceKey, ServiceTable, VipBackends, CONFIG_MAP, CONNECT_PROGRAM,
    INGRESS_PROGRAM, LEARN_PROGRAM, LIVE, LIVE_MAP, LOCAL_MAP, MAPS, MAX_VIP_BACKENDS,
    RECVMSG_PROGRAM, REPLY_PROGRAM, RETURN_PROGRAM, SENDMSG_PROGRAM, SERVICES_MAP, VIPS_MAP,
};

use super::loader::{self, ObjectSource};
use super::EbpfError;
use crate::mesh::{mesh_backend, MeshError, MeshKernel, MeshState};
use crate::netns;

/// The mesh's programs.
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

/// The loaded mesh: programs ready to attach and the maps to write.
pub struct EbpfMesh {
    ebpf: Ebpf,
    origin: ObjectSource,
    pin_dir: PathBuf,
    services: HashMap<MapData, ServiceKey, ServiceTable>,
    live: HashMap<MapData, LiveKey, u32>,
    locals: HashMap<MapData, u32, u32>,
    config: Array<MapData, Config>,
    vips: HashMap<MapData, u32, VipBackends>,
}

impl EbpfMesh {
    /// Loads shoal's object with the mesh's maps pinned in `pin_dir` (reusing
    /// maps already pinned there, with their flows) and its programs loaded
    /// into the kernel, not yet attached.
    pub fn load(pin_dir: &Path) -> Result<Self, EbpfError> {
        let (mut ebpf, origin) = loader::load_object(Some(pin_dir), &MAPS)?;
        for program in MeshProgram::ALL {
            classifier(&mut ebpf, &origin, program)?
                .load()
                .map_err(|e| program_error(program, "load it into the kernel", e))?;
        }
        for name in SOCKET_PROGRAMS {
            socket_program(&mut ebpf, &origin, name)?
                .load()
                .map_err(|e| socket_error(name, "load it into the kernel", e))?;
        }
        let services = open_hash(&mut ebpf, &origin, SERVICES_MAP)?;
        let vips = open_hash(&mut ebpf, &origin, VIPS_MAP)?;
        let live = open_hash(&mut ebpf, &origin, LIVE_MAP)?;
        let locals = open_hash(&mut ebpf, &origin, LOCAL_MAP)?;
        let config = Array::try_from(take_map(&mut ebpf, &origin, CONFIG_MAP)?)
            .map_err(|e| map_error(CONFIG_MAP, "open", e))?;
        Ok(EbpfMesh {
            ebpf,
            origin,
            pin_dir: pin_dir.to_path_buf(),
            services,
            live,
            locals,
            config,
            vips,
        })
    }

    /// Attaches the east-west hooks (`connect4`, `sendmsg4`, `recvmsg4`) to
    /// the cgroup at `cgroup` (every task's cgroup is below it). A link
    /// pinned by an earlier agent is kept as it is: it runs the same code
    /// against the same maps.
    pub fn attach_socket_hooks(&mut self, cgroup: &Path) -> Result<(), EbpfError> {
        let links = self.links_dir()?;
        std::fs::create_dir_all(cgroup).map_err(|source| EbpfError::PinDir {
            path: cgroup.to_path_buf(),
            source,
        })?;
        let dir = std::fs::File::open(cgroup).map_err(|source| EbpfError::PinDir {
            path: cgroup.to_path_buf(),
            source,
        })?;
        for name in SOCKET_PROGRAMS {
            let pin = links.join(format!("{name}@cgroup"));
            if PinnedLink::from_pin(&pin).is_ok() {
                continue;
            }
            let prog = socket_program(&mut self.ebpf, &self.origin, name)?;
            // With a bpf link the kernel wants no attach flags; links to one
            // cgroup always stack.
            let id = prog.attach(&dir, CgroupAttachMode::Single).map_err(|e| {
                socket_error(name, &format!("attach it to {}", cgroup.display()), e)
            })?;
            let link: FdLink = prog
                .take_link(id)
                .map_err(|e| socket_error(name, "keep its link", e))?
                .try_into()
                .map_err(|e| link_error(name, "use its link as a bpf link", e))?;
            pin_link(link, &pin)?;
        }
        Ok(())
    }

    /// The virtual IPs in the table, with their tasks' addresses.
    pub fn vips(&self) -> Result<std::collections::BTreeMap<u32, BTreeSet<u32>>, EbpfError> {
        let mut out = std::collections::BTreeMap::new();
        for item in self.vips.iter() {
            let (vip, b) = item.map_err(|e| map_error(VIPS_MAP, "read", e))?;
            let n = (b.count as usize).min(MAX_VIP_BACKENDS);
            out.insert(vip, b.addrs[..n].iter().copied().collect());
        }
        Ok(out)
    }

    /// Sets the tasks behind `vip` (at most [`MAX_VIP_BACKENDS`]).
    pub fn put_vip(&mut self, vip: u32, addrs: &BTreeSet<u32>) -> Result<(), EbpfError> {
        let mut value = VipBackends {
            count: 0,
            addrs: [0; MAX_VIP_BACKENDS],
        };
        for (slot, addr) in value.addrs.iter_mut().zip(addrs) {
            *slot = *addr;
            value.count += 1;
        }
        self.vips
            .insert(vip, value, 0)
            .map_err(|e| map_error(VIPS_MAP, "write a virtual IP", e))
    }

    pub fn delete_vip(&mut self, vip: u32) -> Result<(), EbpfError> {
        ignore_missing(self.vips.remove(&vip))
            .map_err(|e| map_error(VIPS_MAP, "remove a virtual IP", e))
    }

    /// Attaches `program` to the TC ingress of `iface` in the namespace at
    /// `netns` (the caller's when `None`). A link pinned for the same place
    /// by an earlier agent is switched over to this program atomically.
    pub fn attach(
        &mut self,
        program: MeshProgram,
        iface: &str,
        netns: Option<&Path>,
    ) -> Result<(), EbpfError> {
        let place = match netns.and_then(|p| p.file_name()) {
            Some(ns) => format!("{}@{}@{iface}", program.name(), ns.to_string_lossy()),
            None => format!("{}@host@{iface}", program.name()),
        };
        let pin = self.links_dir()?.join(place);
        let (ebpf, origin) = (&mut self.ebpf, &self.origin);
        let attached = netns::run_in(netns, || -> Result<(), EbpfError> {
            let prog = classifier(ebpf, origin, program)?;
            let id = match PinnedLink::from_pin(&pin) {
                Ok(old) => {
                    let link = FdLink::from(old)
                        .try_into()
                        .map_err(|e| link_error(program.name(), "reuse its pinned link", e))?;
                    prog.attach_to_link(link)
                        .map_err(|e| program_error(program, "take over its pinned link", e))?
                }
                Err(_) => {
                    loader::ensure_clsact(iface)?;
                    prog.attach_with_options(
                        iface,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| {
                        program_error(
                            program,
                            &format!("attach it to the ingress of `{iface}`"),
                            e,
                        )
                    })?
                }
            };
            let link = prog
                .take_link(id)
                .map_err(|e| program_error(program, "keep its link", e))?;
            let link: FdLink = link
                .try_into()
                .map_err(|e| link_error(program.name(), "use its link as a bpf link", e))?;
            // A pin left by an agent whose link no longer works (the
            // interface went away) is replaced.
            let _ = std::fs::remove_file(&pin);
            pin_link(link, &pin)
        });
        attached.map_err(|e| EbpfError::PinDir {
            path: self.pin_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    /// Where the links are pinned, created if missing.
    fn links_dir(&self) -> Result<PathBuf, EbpfError> {
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

    /// Takes everything down: unpins (and so detaches) every link and removes
    /// the map pins. Flows in progress are dropped.
    pub fn remove(pin_dir: &Path) -> Result<(), EbpfError> {
        let links = pin_dir.join("links");
        if let Ok(entries) = std::fs::read_dir(&links) {
            for entry in entries.flatten() {
                unpin_link(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(&links);
        loader::remove_pins(pin_dir, &MAPS)
    }

    /// Runs `program` once on `frame` with BPF_PROG_TEST_RUN; returns its
    /// verdict and the kernel's measured run time in ns.
    pub fn test_run(
        &mut self,
        program: MeshProgram,
        frame: &[u8],
    ) -> Result<(u32, u32), EbpfError> {
        use std::os::fd::{AsFd, AsRawFd};
        let prog = classifier(&mut self.ebpf, &self.origin, program)?;
        let fd = prog
            .fd()
            .map_err(|e| program_error(program, "get its descriptor", e))?
            .as_fd()
            .as_raw_fd();
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..TestRunAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix for BPF_PROG_TEST_RUN,
        // its buffers outlive the call, and the size passed is its own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        if rc != 0 {
            return Err(program_error(
                program,
                "test-run it",
                aya::programs::ProgramError::IOError(std::io::Error::last_os_error()),
            ));
        }
        Ok((attr.retval, attr.duration))
    }
}

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Pins `link` at `pin`, which keeps it (and its program) attached after
/// this process exits.
fn pin_link(link: FdLink, pin: &Path) -> Result<(), EbpfError> {
    link.pin(pin).map(drop).map_err(|e| EbpfError::PinDir {
        path: pin.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Unpins a link; dropping the last reference detaches it.
fn unpin_link(path: &Path) {
    if let Ok(link) = PinnedLink::from_pin(path) {
        let _ = link.unpin();
    }
    let _ = std::fs::remove_file(path);
}

impl MeshKernel for EbpfMesh {
    fn observe(&mut self) -> Result<MeshState, MeshError> {
        let mut state = MeshState::default();
        for item in self.services.iter() {
            let (key, table) = item.map_err(|e| map_error(SERVICES_MAP, "read", e))?;
            state.services.insert(
                key,
                table.backends[..(table.count as usize).min(table.backends.len())]
                    .iter()
                    .map(mesh_backend)
                    .collect(),
            );
        }
        for key in self.live.keys() {
            state
                .live
                .insert(key.map_err(|e| map_error(LIVE_MAP, "read", e))?);
        }
        let locals: Result<BTreeSet<u32>, _> = self.locals.keys().collect();
        state.locals = locals.map_err(|e| map_error(LOCAL_MAP, "read", e))?;
        Ok(state)
    }

    fn put_service(&mut self, key: ServiceKey, table: &ServiceTable) -> Result<(), MeshError> {
        Ok(self
            .services
            .insert(key, table, 0)
            .map_err(|e| map_error(SERVICES_MAP, "write a published port", e))?)
    }

    fn delete_service(&mut self, key: ServiceKey) -> Result<(), MeshError> {
        Ok(ignore_missing(self.services.remove(&key))
            .map_err(|e| map_error(SERVICES_MAP, "remove a published port", e))?)
    }

    fn put_live(&mut self, key: LiveKey) -> Result<(), MeshError> {
        Ok(self
            .live
            .insert(key, LIVE, 0)
            .map_err(|e| map_error(LIVE_MAP, "add a backend", e))?)
    }

    fn delete_live(&mut self, key: LiveKey) -> Result<(), MeshError> {
        Ok(ignore_missing(self.live.remove(&key))
            .map_err(|e| map_error(LIVE_MAP, "remove a backend", e))?)
    }

    fn put_local(&mut self, addr: u32) -> Result<(), MeshError> {
        Ok(self
            .locals
            .insert(addr, LIVE, 0)
            .map_err(|e| map_error(LOCAL_MAP, "add a local address", e))?)
    }

    fn delete_local(&mut self, addr: u32) -> Result<(), MeshError> {
        Ok(ignore_missing(self.locals.remove(&addr))
            .map_err(|e| map_error(LOCAL_MAP, "remove a local address", e))?)
    }
}

fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    origin: &ObjectSource,
    program: MeshProgram,
) -> Result<&'a mut SchedClassifier, EbpfError> {
    ebpf.program_mut(program.name())
        .ok_or_else(|| EbpfError::MissingInObject {
            origin: origin.to_string(),
            kind: "program",
            name: program.name(),
        })?
        .try_into()
        .map_err(|e| program_error(program, "use it as a TC classifier", e))
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

fn map_error(map: &'static str, action: &str, e: aya::maps::MapError) -> EbpfError {
    EbpfError::Map {
        map,
        action: action.to_owned(),
        source: Box::new(e),
    }
}

/// The east-west socket hooks.
const SOCKET_PROGRAMS: [&str; 3] = [CONNECT_PROGRAM, SENDMSG_PROGRAM, RECVMSG_PROGRAM];

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
        .map_err(|e| socket_error(name, "use it as a cgroup sock_addr program", e))
}

fn socket_error(program: &'static str, action: &str, e: aya::programs::ProgramError) -> EbpfError {
    EbpfError::Program {
        program,
        action: action.to_owned(),
        source: Box::new(e),
    }
}

fn program_error(program: MeshProgram, action: &str, e: aya::programs::ProgramError) -> EbpfError {
    EbpfError::Program {
        program: program.name(),
        action: action.to_owned(),
        source: Box::new(e),
    }
}

fn link_error(
    program: &'static str,
    action: &str,
    e: aya::programs::links::LinkError,
) -> EbpfError {
    EbpfError::Program {
        program,
        action: format!("{action}: {e}"),
        source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
    }
}
