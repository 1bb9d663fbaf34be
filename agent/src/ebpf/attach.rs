//! Hanging TC programs on interfaces, on the kernels users run, and the
//! kernel features shoal's eBPF data path needs.
//!
//! Two ways to attach a TC program, chosen by probing (or forced with
//! `shoal agent --mesh-attach`):
//! - TCX links (Linux 6.6+): a bpf_link pinned in bpffs; a new agent swaps
//!   the program in place with `BPF_LINK_UPDATE`. A pinned link whose
//!   interface was deleted (severed) is replaced by a new one (see
//!   [`super::links`]).
//! - clsact + cls_bpf in direct-action mode (netlink TC), before 6.6: a
//!   filter at a fixed priority and handle, which outlives the agent; a new
//!   agent replaces the program in place at the same priority and handle.
//!
//! Either way a restart never leaves an interface without the program.
//!
//! What the data path uses, and the kernel that brought it:
//!
//! | feature                                          | since |
//! |--------------------------------------------------|-------|
//! | clsact qdisc, cls_bpf direct-action              | 4.5   |
//! | `bpf_redirect`, `bpf_skb_load/store_bytes`, csum | 4.5   |
//! | LRU hash maps                                    | 4.10  |
//! | `bpf_skb_change_tail`                            | 4.9   |
//! | cgroup `connect4` / `sendmsg4` / `recvmsg4`      | 4.17 / 4.18 / 5.2 |
//! | `bpf_skb_adjust_room` at the MAC header          | 5.2   |
//! | bpf_link for cgroups, link pinning and update    | 5.7   |
//! | `bpf_get_socket_cookie`, `bpf_get_netns_cookie` in sock_addr hooks | 5.7 |
//! | `__sk_buff.gso_size`                             | 5.7   |
//! | `bpf_csum_level`                                 | 5.8   |
//! | TCX links                                        | 6.6 (optional) |
//!
//! So the oldest kernel is 5.8; shoal names 5.10 (the oldest long-term
//! kernel above it, Debian 11's) and refuses to load below it.

use shoal_control::error_chain::ErrorChain;
use std::fmt;
use std::io;
use std::path::Path;

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType};
use aya::util::KernelVersion;
use serde::{Deserialize, Serialize};

use super::links::{self, KernelPins, Pins, Stale, Takeover};
use super::EbpfError;

/// The oldest kernel the eBPF data path runs on.
pub const MIN_KERNEL: (u32, u32) = (5, 10);
/// Priority of shoal's cls_bpf filters: before filters at the default
/// priorities, so the mesh sees its published ports first.
pub const TC_PRIORITY: u16 = 0x5e;
/// Handle of shoal's cls_bpf filters.
const TC_HANDLE: TcHandle = TcHandle::new(0, 1);

/// How TC programs are attached (`shoal agent --mesh-attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX where the kernel has it (6.6+), else clsact + cls_bpf.
    #[default]
    Auto,
    /// TCX links only (fails on kernels before 6.6).
    Tcx,
    /// clsact + cls_bpf (netlink TC), on any kernel.
    Tc,
}

/// The way chosen for this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcHook {
    Tcx,
    Netlink,
}

impl fmt::Display for TcHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcHook::Tcx => "tcx",
            TcHook::Netlink => "tc (clsact + cls_bpf)",
        })
    }
}

/// Fails below [`MIN_KERNEL`], naming it and what to do instead.
pub fn check_kernel() -> Result<(), EbpfError> {
    let found = KernelVersion::current().map_err(|e| EbpfError::KernelVersion {
        reason: e.chain().to_string(),
    })?;
    check_kernel_version(found)
}

fn check_kernel_version(found: KernelVersion) -> Result<(), EbpfError> {
    if found < KernelVersion::new(MIN_KERNEL.0 as u8, MIN_KERNEL.1 as u8, 0) {
        return Err(EbpfError::KernelTooOld {
            found: found.to_string(),
        });
    }
    Ok(())
}

/// The way `mode` attaches on this kernel: for `Auto`, TCX if a probe link
/// can be made.
pub fn resolve(mode: AttachMode) -> Result<TcHook, EbpfError> {
    match mode {
        AttachMode::Tc => Ok(TcHook::Netlink),
        AttachMode::Tcx => {
            if probe_tcx()? {
                Ok(TcHook::Tcx)
            } else {
                Err(EbpfError::NoTcx)
            }
        }
        AttachMode::Auto => Ok(if probe_tcx()? {
            TcHook::Tcx
        } else {
            TcHook::Netlink
        }),
    }
}

/// Whether the kernel makes TCX links: a two-instruction classifier that
/// passes everything on (`TCX_NEXT`) is linked to this namespace's loopback
/// ingress, and unlinked at once.
fn probe_tcx() -> Result<bool, EbpfError> {
    match super::probe::tcx_link() {
        Ok(()) => Ok(true),
        // An unknown attach type, or no link type for it: no TCX here.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => Ok(false),
        Err(source) => Err(EbpfError::Probe { source }),
    }
}

/// Attaches `prog` (named `name`) to the TC ingress of `iface` in the
/// calling thread's namespace. With TCX the link is pinned at `pin`; a link
/// pinned there earlier is switched over to `prog` atomically. With netlink
/// TC the filter at shoal's priority and handle is replaced in place, or
/// made. Whatever the other way left at this place is removed afterwards.
pub fn attach_ingress(
    prog: &mut SchedClassifier,
    name: &'static str,
    iface: &str,
    hook: TcHook,
    pin: &Path,
) -> Result<(), EbpfError> {
    let fail = |action: String, e: ProgramError| EbpfError::Program {
        program: name,
        action,
        source: Box::new(e),
    };
    match hook {
        TcHook::Tcx => {
            let index = nix::net::if_::if_nametoindex(iface).ok();
            let step = links::takeover(KernelPins.state(pin), index);
            if let Takeover::Replace(stale) = step {
                replace_stale(name, iface, pin, stale);
            }
            let taken = match (step, PinnedLink::from_pin(pin)) {
                (Takeover::Update, Ok(old)) => {
                    let link: SchedClassifierLink = FdLink::from(old)
                        .try_into()
                        .map_err(|e| link_error(name, "reuse its pinned link", e))?;
                    match prog.attach_to_link(link) {
                        Ok(id) => Some(id),
                        // Severed between the look and the update.
                        Err(e) if severed(&e) => {
                            replace_stale(name, iface, pin, Stale::Severed);
                            None
                        }
                        Err(e) => return Err(fail("take over its pinned link".into(), e)),
                    }
                }
                _ => None,
            };
            let id = match taken {
                Some(id) => id,
                None => prog
                    .attach_with_options(
                        iface,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| fail(format!("attach it to the ingress of `{iface}`"), e))?,
            };
            let link: FdLink = prog
                .take_link(id)
                .map_err(|e| fail("keep its link".into(), e))?
                .try_into()
                .map_err(|e| link_error(name, "use its link as a bpf link", e))?;
            // A pin left by an agent whose link no longer works (the
            // interface went away) is replaced.
            let _ = std::fs::remove_file(pin);
            pin_link(link, pin)?;
            remove_filter(iface, name);
        }
        TcHook::Netlink => {
            super::loader::ensure_clsact(iface)?;
            let existing = SchedClassifierLink::attached(
                iface,
                TcAttachType::Ingress,
                TC_PRIORITY,
                TC_HANDLE,
                None,
            )
            .map_err(|e| fail(format!("find `{iface}`"), ProgramError::IOError(e)))?;
            let id = match prog.attach_to_link(existing) {
                Ok(id) => id,
                Err(e) if no_such_filter(&e) => prog
                    .attach_with_options(
                        iface,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(NlOptions {
                            priority: TC_PRIORITY,
                            handle: TC_HANDLE,
                            classid: None,
                        }),
                    )
                    .map_err(|e| fail(format!("attach it to the ingress of `{iface}`"), e))?,
                Err(e) => return Err(fail(format!("replace it on `{iface}`"), e)),
            };
            let link = prog
                .take_link(id)
                .map_err(|e| fail("keep its filter".into(), e))?;
            // The filter must outlive this process: dropping the link would
            // delete it. It holds no descriptor, so nothing leaks.
            std::mem::forget(link);
            unpin_link(pin);
        }
    }
    Ok(())
}

/// Drops the pin of a link that no longer serves `iface`, saying so once:
/// the program is attached anew right after.
fn replace_stale(name: &str, iface: &str, pin: &Path, stale: Stale) {
    tracing::warn!(
        "mesh: the pinned link of {name} on `{iface}` {stale}; attaching {name} to `{iface}` anew"
    );
    unpin_link(pin);
}

/// Whether updating a link failed because the kernel severed it (its
/// interface was deleted): ENOLINK.
fn severed(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOLINK))
}

/// Whether replacing a filter failed because there was none yet.
fn no_such_filter(e: &ProgramError) -> bool {
    match e {
        ProgramError::TcError(tc::TcError::NetlinkError(nl)) => {
            nl.raw_os_error() == Some(libc::ENOENT)
        }
        ProgramError::NetlinkError(nl) => nl.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Removes shoal's filter named `name` from the TC ingress of `iface`, if
/// there is one.
pub fn remove_filter(iface: &str, name: &str) {
    let _ = tc::qdisc_detach_program(iface, TcAttachType::Ingress, name);
}

/// Pins `link` at `pin`, which keeps it (and its program) attached after
/// this process exits.
pub fn pin_link(link: FdLink, pin: &Path) -> Result<(), EbpfError> {
    link.pin(pin).map(drop).map_err(|e| EbpfError::PinDir {
        path: pin.to_path_buf(),
        source: io::Error::other(e.chain().to_string()),
    })
}

/// Unpins a link; dropping the last reference detaches it.
pub fn unpin_link(path: &Path) {
    if let Ok(link) = PinnedLink::from_pin(path) {
        let _ = link.unpin();
    }
    let _ = std::fs::remove_file(path);
}

pub fn link_error(
    program: &'static str,
    action: &str,
    e: aya::programs::links::LinkError,
) -> EbpfError {
    EbpfError::Program {
        program,
        action: format!("{action}: {}", e.chain()),
        source: Box::new(ProgramError::UnexpectedProgramType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_5_10_are_refused_with_the_fix() {
        for (major, minor) in [(4, 19), (5, 4), (5, 9)] {
            let err = check_kernel_version(KernelVersion::new(major, minor, 0))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("older than 5.10"), "{err}");
            assert!(err.contains("--mesh off"), "{err}");
        }
        for (major, minor) in [(5, 10), (5, 15), (6, 1), (6, 18)] {
            assert!(check_kernel_version(KernelVersion::new(major, minor, 0)).is_ok());
        }
    }
}
