//! `service logs` on the leader. Workers have no listener, so the leader
//! reaches a task's node through its heartbeat session: a request queues one
//! fetch per task in the [`LogBroker`], the node's next heartbeat answer
//! carries them, the node answers in the heartbeat after (sent at once),
//! and the request, waiting meanwhile, answers the CLI with what came. A
//! follower reads by asking again from the offsets it got.
//!
//! Never reads output itself, nor keeps any: the nodes hold the logs.

use crate::error_chain::ErrorChain;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Link, LogBroker, Manager, ManagerError, Store};
use crate::api::{ApiResponse, LogChunk, LogCursor, LogFetch, LogQuery, LogStart, TaskLogs};
use crate::objects::{find, LookupError, Node, NodeState, Task, TaskState};

/// How long a request waits for the nodes' answers: two heartbeat periods
/// and then some.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// The output one request asks for, shared among its tasks...
const REQUEST_BYTES: u64 = 512 * 1024;
/// ...but never less than this per task.
const MIN_TASK_BYTES: u64 = 16 * 1024;

/// The broker and the signal that an answer came.
#[derive(Default)]
pub struct LogExchange {
    broker: Mutex<LogBroker>,
    answered: Notify,
}

impl LogExchange {
    fn broker(&self) -> std::sync::MutexGuard<'_, LogBroker> {
        self.broker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A node's answers, from its heartbeat.
    pub fn deliver(&self, node: &str, chunks: Vec<LogChunk>) {
        if chunks.is_empty() {
            return;
        }
        if self.broker().deliver(node, chunks, Instant::now()) > 0 {
            self.answered.notify_waiters();
        }
    }

    /// The fetches for a node's heartbeat answer.
    pub fn fetches_for(&self, node: &str) -> Vec<LogFetch> {
        self.broker().fetches_for(node, Instant::now())
    }
}

/// One task being read for a request.
struct Reading {
    task: Task,
    node: String,
    start: LogStart,
    /// Set once answered (or found unanswerable).
    result: Option<Result<LogChunk, String>>,
    fetch: Option<u64>,
}

impl<S: Store, L: Link> Manager<S, L> {
    /// Leader only: reads the output of a service's tasks, or of one task.
    pub(super) async fn service_logs(&self, query: LogQuery) -> Result<ApiResponse, ManagerError> {
        let objects = self.objects();
        let nodes: HashMap<String, Node> = self
            .all::<Node>(&objects)
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut readings: Vec<Reading> = self
            .log_targets(&query.target)?
            .into_iter()
            .filter(|t| !query.done.contains(&t.id))
            .map(|task| {
                let node_id = task.node_id.clone().unwrap_or_default();
                let node = nodes.get(&node_id);
                let start = query.starts.get(&task.id).copied().unwrap_or(query.others);
                let result = match node {
                    None => Some(Err(format!("node {node_id} is no longer in the swarm"))),
                    Some(n) if n.state == NodeState::Down => {
                        Some(Err(format!("node {} is down", n.hostname)))
                    }
                    Some(_) => None,
                };
                Reading {
                    node: node.map_or(node_id, |n| n.hostname.clone()),
                    task,
                    start,
                    result,
                    fetch: None,
                }
            })
            .collect();
        let asking = readings.iter().filter(|r| r.result.is_none()).count() as u64;
        let max_bytes = (REQUEST_BYTES / asking.max(1)).max(MIN_TASK_BYTES);
        {
            let mut broker = self.logs.broker();
            let now = Instant::now();
            for r in readings.iter_mut().filter(|r| r.result.is_none()) {
                let node_id = r.task.node_id.as_deref().unwrap_or_default();
                match broker.ask(node_id, &r.task.id, r.start, max_bytes, now) {
                    Ok(id) => r.fetch = Some(id),
                    Err(e) => r.result = Some(Err(e.chain().to_string())),
                }
            }
        }
        self.wait_for_answers(&mut readings).await;
        let tasks = readings.into_iter().map(task_logs).collect();
        Ok(ApiResponse::Logs { tasks })
    }

    /// Waits until every fetch is answered or [`ANSWER_WAIT`] is over; the
    /// fetches left unanswered are withdrawn.
    async fn wait_for_answers(&self, readings: &mut [Reading]) {
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        loop {
            // Registered before looking, so no answer slips in between.
            let answered = self.logs.answered.notified();
            {
                let mut broker = self.logs.broker();
                for r in readings.iter_mut().filter(|r| r.result.is_none()) {
                    if let Some(chunk) = r.fetch.and_then(|id| broker.take(id)) {
                        r.result = Some(Ok(chunk));
                    }
                }
            }
            if readings.iter().all(|r| r.result.is_some()) {
                return;
            }
            if tokio::time::timeout_at(deadline, answered).await.is_err() {
                break;
            }
        }
        let mut broker = self.logs.broker();
        for r in readings.iter_mut().filter(|r| r.result.is_none()) {
            if let Some(id) = r.fetch {
                broker.cancel(id);
            }
            r.result = Some(Err(format!(
                "node {} did not answer within {}s",
                r.node,
                ANSWER_WAIT.as_secs()
            )));
        }
    }

    /// The tasks `target` names: a service's (id, name or unique id
    /// prefix), or one task (id or unique id prefix). Only tasks given to a
    /// node can have output.
    fn log_targets(&self, target: &str) -> Result<Vec<Task>, ManagerError> {
        let objects = self.objects();
        let tasks: Vec<Task> = self.all(&objects);
        let mut chosen: Vec<Task> = match self.find_service(&objects, target) {
            Ok((service, _)) => tasks
                .into_iter()
                .filter(|t| t.service_id == service.id)
                .collect(),
            Err(ManagerError::Lookup(LookupError::NotFound { .. })) => match find(&tasks, target) {
                Ok(task) => vec![task.clone()],
                Err(LookupError::NotFound { .. }) => {
                    return Err(ManagerError::NoLogTarget(target.to_string()))
                }
                Err(ambiguous) => return Err(ambiguous.into()),
            },
            Err(e) => return Err(e),
        };
        chosen.retain(|t| t.node_id.is_some() && t.status.state >= TaskState::Assigned);
        chosen.sort_by(|a, b| {
            (a.slot, &a.node_id, a.created_at_ms).cmp(&(b.slot, &b.node_id, b.created_at_ms))
        });
        Ok(chosen)
    }
}

/// What the CLI gets for one task.
fn task_logs(r: Reading) -> TaskLogs {
    let mut out = TaskLogs {
        name: r.task.name(),
        slot: r.task.slot,
        node_id: r.task.node_id.clone().unwrap_or_default(),
        node: r.node,
        task_id: r.task.id,
        lines: Vec::new(),
        next: match r.start {
            LogStart::At(cursor) => cursor,
            LogStart::Tail(_) => LogCursor::default(),
        },
        more: false,
        ended: false,
        error: None,
    };
    match r.result {
        Some(Ok(chunk)) if chunk.missing => {
            // Not started there yet, or gone with its logs for good.
            out.ended = r.task.status.state.is_final();
        }
        Some(Ok(chunk)) => match chunk.error {
            Some(e) => out.error = Some(e),
            None => {
                out.lines = chunk.lines;
                out.next = chunk.next;
                out.more = chunk.more;
                out.ended = chunk.ended;
            }
        },
        Some(Err(e)) => out.error = Some(e),
        None => out.error = Some("not read".into()),
    }
    out
}
