//! Reconciling object by object: each change builds one network or one
//! sandbox, and a change that fails marks its object failed; that object's
//! later changes (and sandbox interfaces on a failed network) are skipped,
//! and every other object goes on. Objects the caller holds back (waiting
//! out a retry delay, with their last error) are not touched at all.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::plan::Change;
use super::state::HostState;
use super::{plan, OverlayError, OverlayKernel, OverlaySpec};

/// What a change builds: a network's namespace or a task's sandbox.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Object {
    Network(String),
    Sandbox(String),
}

impl Object {
    /// The metric label of the object's kind.
    pub fn part(&self) -> &'static str {
        match self {
            Object::Network(_) => "network",
            Object::Sandbox(_) => "sandbox",
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Network(id) => write!(f, "network `{id}`"),
            Object::Sandbox(id) => write!(f, "sandbox of task `{id}`"),
        }
    }
}

impl Change {
    /// The object this change builds or removes.
    pub fn object(&self) -> Object {
        match self {
            Change::DeleteSandbox { sandbox }
            | Change::DetachIface { sandbox, .. }
            | Change::CreateSandbox { sandbox }
            | Change::AttachIface { sandbox, .. }
            | Change::SetDefaultRoute { sandbox, .. } => Object::Sandbox(sandbox.clone()),
            Change::DeleteNetwork { network }
            | Change::CreateNetwork { network }
            | Change::EnsureBridge { network, .. }
            | Change::DeleteVxlan { network, .. }
            | Change::CreateVxlan { network, .. }
            | Change::DeletePort { network, .. }
            | Change::DelFdb { network, .. }
            | Change::DelNeigh { network, .. }
            | Change::SetFdb { network, .. }
            | Change::SetNeigh { network, .. } => Object::Network(network.clone()),
        }
    }

    /// The other object this change needs built first (a sandbox interface
    /// needs its network's bridge).
    fn needs(&self) -> Option<Object> {
        match self {
            Change::AttachIface { network, .. } => Some(Object::Network(network.clone())),
            _ => None,
        }
    }
}

/// What one object-by-object pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Changes applied, in order.
    pub applied: Vec<Change>,
    /// Objects whose planned changes all applied.
    pub done: BTreeSet<Object>,
    /// Objects with a change that failed (or that needed a failed or held
    /// object), with the error; their later changes were skipped.
    pub failed: BTreeMap<Object, OverlayError>,
    /// Objects that had changes to make but were held back.
    pub held: BTreeSet<Object>,
}

/// Brings the host towards `spec` object by object (see the module doc).
/// Only an invalid spec or an unreadable host fails the whole pass.
/// `inherited` keeps forwarding entries as [`super::reconcile_keeping`] does.
pub fn reconcile_each(
    kernel: &mut dyn OverlayKernel,
    spec: &OverlaySpec,
    inherited: Option<&HostState>,
    held: &BTreeMap<Object, String>,
) -> Result<Outcome, OverlayError> {
    spec.validate()?;
    let desired = HostState::desired(spec);
    let observed = kernel.observe()?;
    let changes = super::keep_inherited(plan(&desired, &observed), inherited);
    let mut outcome = Outcome::default();
    for change in changes {
        let object = change.object();
        if outcome.failed.contains_key(&object) {
            continue;
        }
        if held.contains_key(&object) {
            outcome.held.insert(object);
            continue;
        }
        if let Some(needed) = change.needs() {
            let cause = match outcome.failed.get(&needed) {
                Some(error) => Some(error.chain().to_string()),
                None => held.get(&needed).cloned(),
            };
            if let Some(cause) = cause {
                outcome
                    .failed
                    .insert(object, OverlayError::Needs { needed, cause });
                continue;
            }
        }
        match kernel.apply(&change) {
            Ok(()) => {
                outcome.done.insert(object);
                outcome.applied.push(change);
            }
            Err(error) => {
                outcome.failed.insert(object, error);
            }
        }
    }
    for object in outcome.failed.keys().chain(&outcome.held) {
        outcome.done.remove(object);
    }
    Ok(outcome)
}
