//! The agent's eBPF data plane: finding shoal's eBPF object, loading its
//! programs onto interfaces with aya, and reading and writing their maps.
//!
//! This module only executes: it attaches what it is told to and writes the
//! map entries it is given. It never decides what to block or route (that is
//! the control plane's job, and `balancer`'s), never loads anything but
//! shoal's own object, and never leaves anything in the kernel that is not
//! pinned under shoal's bpffs directory or one of shoal's TC filters (the
//! mesh's maps and attachments outlive the agent on purpose, so a restart
//! drops no flow; `EbpfBalancer::remove` takes them down).

mod attach;
mod balancer;
mod links;
mod loader;
mod probe;
mod tables;

use std::io;
use std::path::PathBuf;

pub use attach::{AttachMode, TcHook, MIN_KERNEL, TC_PRIORITY};
pub use balancer::{
    EbpfBalancer, MeshProgram, HOST_END, HOST_HOOKS, INNER_END, STAT_NAMES, TASK_HOOKS,
};
pub use loader::{ensure_bpffs, object_bytes, ObjectSource, BPFFS_ROOT, OBJECT_ENV};
pub use probe::TestRun;

/// Errors from loading, attaching or using shoal's eBPF programs and maps.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "no eBPF object: this shoal binary was built without one and none was found at {searched}; \
         run `cargo xtask build-ebpf` and rebuild shoal, or set {OBJECT_ENV} to the object's path"
    )]
    ObjectNotFound { searched: String },
    #[error("cannot read the eBPF object {path}")]
    ReadObject { path: PathBuf, source: io::Error },
    #[error(
        "cannot load the eBPF object from {origin} into the kernel (needs root or CAP_BPF; \
         rebuild it with `cargo xtask build-ebpf` if it is stale)"
    )]
    Load {
        origin: String,
        source: Box<aya::EbpfError>,
    },
    #[error(
        "the eBPF object from {origin} has no {kind} `{name}`; rebuild it with `cargo xtask build-ebpf`"
    )]
    MissingInObject {
        origin: String,
        kind: &'static str,
        name: &'static str,
    },
    #[error("cannot add the clsact qdisc to interface `{iface}`")]
    Clsact {
        iface: String,
        source: aya::programs::tc::TcError,
    },
    #[error("eBPF program `{program}`: cannot {action}")]
    Program {
        program: &'static str,
        action: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map `{map}`: cannot {action}")]
    Map {
        map: &'static str,
        action: String,
        source: Box<aya::maps::MapError>,
    },
    #[error("bpffs pin directory {path}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error(
        "pin directory {path} is not on a bpffs; mount one first \
         (`mount -t bpf bpf {BPFFS_ROOT}`, which `ebpf::ensure_bpffs` does)"
    )]
    NotBpffs { path: PathBuf },
    #[error("cannot mount bpffs at {path}")]
    MountBpffs { path: PathBuf, source: nix::Error },
    #[error(
        "this kernel ({found}) is older than {}.{}, the oldest the eBPF mesh runs on; \
         upgrade the kernel, or run this node with `--mesh off`",
        MIN_KERNEL.0,
        MIN_KERNEL.1
    )]
    KernelTooOld { found: String },
    #[error("cannot tell this kernel's version: {reason}")]
    KernelVersion { reason: String },
    #[error(
        "`--mesh-attach tcx` asks for TCX links, which this kernel does not make (they came \
         with Linux 6.6); use `--mesh-attach auto` or `tc`"
    )]
    NoTcx,
    #[error("cannot probe the kernel for TCX links")]
    Probe { source: io::Error },
}
