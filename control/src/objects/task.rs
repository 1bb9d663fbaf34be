//! Tasks: one running instance of a service on one node (store kind `task`,
//! keyed by id). Managers decide a task's desired state and node; the node
//! running it reports its observed state.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::TaskSpec;
use crate::store::{kind, Object};

/// Swarm's task states, in the order a task moves through them. A task
/// never moves backwards; every state from `Complete` on is final.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created by the orchestrator, waiting for addresses.
    #[default]
    New,
    /// Addresses allocated, waiting for a node.
    Pending,
    /// Given to a node.
    Assigned,
    /// The node is pulling the task's image.
    Preparing,
    /// The node is building the sandbox.
    Starting,
    Running,
    /// Exited with status 0.
    Complete,
    /// Stopped because the managers asked.
    Shutdown,
    /// Exited non-zero, or could not start.
    Failed,
    /// The node refused it (e.g. unknown network).
    Rejected,
    /// Its node went down; the managers no longer know what it does.
    Orphaned,
}

impl TaskState {
    /// Whether the task has stopped for good.
    pub fn is_final(self) -> bool {
        self >= TaskState::Complete
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Preparing => "preparing",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of a task now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    /// Unix milliseconds of the last state change.
    pub timestamp_ms: u64,
    /// A short human line ("started", "no suitable node (...)").
    #[serde(default)]
    pub message: String,
    /// Why the task failed or is stuck.
    #[serde(default)]
    pub err: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The process id on its node, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A task's address on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAttachment {
    /// The network id.
    pub network: String,
    pub ip: Ipv4Addr,
    /// The service's virtual IP on this network, if it has one.
    #[serde(default)]
    pub vip: Option<Ipv4Addr>,
    /// The service's aliases on this network (`--network name=N,alias=A`):
    /// names the DNS answers like the service's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    pub service_name: String,
    /// Replicated services: the replica number, from 1. Global: 0.
    pub slot: u64,
    /// Set by the scheduler (replicated) or at creation (global).
    #[serde(default)]
    pub node_id: Option<String>,
    pub spec: TaskSpec,
    /// The service's `spec_version` this task was made from.
    pub spec_version: u64,
    /// Filled by the allocator, one per network of the service.
    #[serde(default)]
    pub networks: Vec<TaskAttachment>,
    /// The service's ports published in host mode: the scheduler puts no
    /// two tasks holding one of them on a node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<super::PortConfig>,
    /// Running, or Shutdown when the managers want it stopped.
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// A restarted task waits for the restart delay before it is scheduled.
    #[serde(default)]
    pub not_before_ms: u64,
    /// How many restarts preceded this task in its slot.
    #[serde(default)]
    pub attempt: u64,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

impl Task {
    /// Docker's task name: `SERVICE.SLOT` or, for global tasks,
    /// `SERVICE.NODE_ID`.
    pub fn name(&self) -> String {
        if self.slot > 0 {
            format!("{}.{}", self.service_name, self.slot)
        } else {
            let node = self.node_id.as_deref().unwrap_or("");
            format!("{}.{}", self.service_name, node)
        }
    }

    /// Whether the managers still want this task to run.
    pub fn wanted(&self) -> bool {
        self.desired_state <= TaskState::Running
    }

    /// Whether the task holds (or will hold) a place on a node: wanted and
    /// not stopped.
    pub fn is_live(&self) -> bool {
        self.wanted() && !self.status.state.is_final()
    }

    /// Sets the observed state, stamping the time; never moves backwards.
    pub fn set_state(&mut self, state: TaskState, message: impl Into<String>, now_ms: u64) -> bool {
        if state < self.status.state {
            return false;
        }
        if state == self.status.state {
            let message = message.into();
            if message == self.status.message {
                return false;
            }
            self.status.message = message;
            return true;
        }
        self.status.state = state;
        self.status.message = message.into();
        self.status.timestamp_ms = now_ms;
        true
    }
}

impl Object for Task {
    const KIND: &'static str = kind::TASK;
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_and_final_from_complete_on() {
        assert!(TaskState::New < TaskState::Pending);
        assert!(TaskState::Running < TaskState::Complete);
        assert!(!TaskState::Running.is_final());
        for s in [
            TaskState::Complete,
            TaskState::Shutdown,
            TaskState::Failed,
            TaskState::Rejected,
            TaskState::Orphaned,
        ] {
            assert!(s.is_final());
        }
        assert_eq!(
            serde_json::to_string(&TaskState::Running).unwrap(),
            "\"running\""
        );
    }

    #[test]
    fn state_never_moves_backwards() {
        let mut t = Task {
            id: "t".into(),
            service_id: "s".into(),
            service_name: "web".into(),
            slot: 2,
            node_id: None,
            spec: TaskSpec::default(),
            spec_version: 1,
            networks: vec![],
            host_ports: vec![],
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            not_before_ms: 0,
            attempt: 0,
            created_at_ms: 0,
        };
        assert_eq!(t.name(), "web.2");
        assert!(t.set_state(TaskState::Running, "started", 10));
        assert!(!t.set_state(TaskState::Pending, "", 11));
        assert_eq!(t.status.timestamp_ms, 10);
        assert!(t.set_state(TaskState::Failed, "exit 1", 12));
        assert!(t.status.state.is_final());
        assert!(!t.is_live());
    }
}
