//! The VXLAN overlay data plane of one host.
//!
//! Given networks (id, VNI, subnet, gateway, MTU), endpoints (IP, MAC, VTEP)
//! and local sandboxes, it programs a namespace per network holding a bridge
//! and a VXLAN device (learning off, ARP proxy on, UDP 4789), static FDB and
//! neighbour entries for remote endpoints, and veths into sandbox namespaces.
//!
//! Reconciliation is level-triggered: read the kernel, plan the difference,
//! apply it. Re-applying a spec changes nothing, and an agent that starts on a
//! host already holding this state adopts it.
//!
//! It never shells out to `ip`, and never decides which endpoints exist: the
//! caller does (the data-plane loop in `daemon/dataplane.rs`, from the
//! managers' networks and the gossip tables; `shoal overlay` from a file).

pub mod backoff;
mod each;
pub mod ipvs_link;
mod kernel;
pub mod link_watch;
mod mesh_link;
pub mod names;
mod plan;
mod rtnl;
mod spec;
mod state;
pub mod underlay;

#[cfg(test)]
mod tests;

pub use each::{reconcile_each, Object, Outcome};
pub use kernel::{FakeKernel, OverlayKernel};
pub use plan::{plan, Change};
pub use rtnl::RtnlKernel;
pub use spec::{check_sandbox_id, Attachment, Gateway, OverlaySpec, SandboxSpec};
pub use state::{HostState, VXLAN_PORT};

use crate::netns::NetnsError;

/// Errors of the overlay.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("invalid overlay spec: {0}")]
    Invalid(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("netlink: {op}: {message}")]
    Netlink { op: String, message: String },
    #[error("kernel state: {0}")]
    Kernel(String),
    #[error("{0}")]
    Refused(String),
    #[error("{needed} is not built on this node: {cause}")]
    Needs { needed: Object, cause: String },
}

/// Brings the host to `spec`: validates it, observes the kernel, applies the
/// planned changes in order, and returns them. Stops at the first failure;
/// the next reconciliation picks up from whatever was applied.
pub fn reconcile(
    kernel: &mut dyn OverlayKernel,
    spec: &OverlaySpec,
) -> Result<Vec<Change>, OverlayError> {
    reconcile_keeping(kernel, spec, None)
}

/// Like [`reconcile`], but forwarding and neighbour entries that `inherited`
/// holds are not deleted. A freshly restarted agent passes what the kernel
/// held when it started, while gossip relearns the other nodes' endpoints,
/// so traffic to them does not stall meanwhile; entries it learned itself
/// come and go as usual.
pub fn reconcile_keeping(
    kernel: &mut dyn OverlayKernel,
    spec: &OverlaySpec,
    inherited: Option<&HostState>,
) -> Result<Vec<Change>, OverlayError> {
    spec.validate()?;
    let desired = HostState::desired(spec);
    let observed = kernel.observe()?;
    let changes = keep_inherited(plan(&desired, &observed), inherited);
    for change in &changes {
        kernel.apply(change)?;
    }
    Ok(changes)
}

/// `changes` without the removals of forwarding and neighbour entries that
/// `inherited` holds.
fn keep_inherited(mut changes: Vec<Change>, inherited: Option<&HostState>) -> Vec<Change> {
    if let Some(kept) = inherited {
        changes.retain(|c| match c {
            Change::DelFdb { network, mac } => !kept
                .networks
                .get(network)
                .is_some_and(|n| n.fdb.contains_key(mac)),
            Change::DelNeigh { network, ip } => !kept
                .networks
                .get(network)
                .is_some_and(|n| n.neigh.contains_key(ip)),
            _ => true,
        });
    }
    changes
}
