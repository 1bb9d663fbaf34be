//! The leader's log broker, as plain state: fetches queued per node until
//! its next heartbeat answer takes them, and the node's answers kept until
//! the request that asked claims them. Times come from the caller, so the
//! rules (resend, expiry, batch size, per-node limit) are tested without a
//! clock or a network.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::api::{LogChunk, LogFetch, LogStart};

/// A fetch sent but not answered this long ago goes out again (its
/// heartbeat answer, or the node's answer, may have been lost).
pub const RESEND_AFTER: Duration = Duration::from_millis(1500);
/// Fetches and answers nobody claimed are dropped after this.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);
/// At most this many fetches wait per node.
pub const MAX_QUEUED_PER_NODE: usize = 256;
/// One heartbeat answer carries fetches for at most this much output
/// (one fetch at least), so the node's next heartbeat stays a sane size.
pub const BATCH_BYTES: u64 = 512 * 1024;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error(
        "node {node} already has {MAX_QUEUED_PER_NODE} log requests waiting; \
         try again in a few seconds"
    )]
    Busy { node: String },
}

#[derive(Debug)]
struct Queued {
    node: String,
    fetch: LogFetch,
    asked_at: Instant,
    sent_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct LogBroker {
    next_id: u64,
    queued: BTreeMap<u64, Queued>,
    answers: HashMap<u64, (Instant, LogChunk)>,
}

impl LogBroker {
    /// Queues a fetch of `task_id`'s output from `node`; returns its id.
    pub fn ask(
        &mut self,
        node: &str,
        task_id: &str,
        start: LogStart,
        max_bytes: u64,
        now: Instant,
    ) -> Result<u64, BrokerError> {
        self.expire(now);
        if self.queued.values().filter(|q| q.node == node).count() >= MAX_QUEUED_PER_NODE {
            return Err(BrokerError::Busy {
                node: node.to_string(),
            });
        }
        self.next_id += 1;
        let id = self.next_id;
        let fetch = LogFetch {
            id,
            task_id: task_id.to_string(),
            start,
            max_bytes,
        };
        self.queued.insert(
            id,
            Queued {
                node: node.to_string(),
                fetch,
                asked_at: now,
                sent_at: None,
            },
        );
        Ok(id)
    }

    /// The fetches for `node`'s heartbeat answer: those not sent yet, or
    /// sent [`RESEND_AFTER`] ago and still unanswered, oldest first, within
    /// [`BATCH_BYTES`].
    pub fn fetches_for(&mut self, node: &str, now: Instant) -> Vec<LogFetch> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for queued in self.queued.values_mut().filter(|q| q.node == node) {
            let due = queued
                .sent_at
                .is_none_or(|sent| now.duration_since(sent) >= RESEND_AFTER);
            if !due {
                continue;
            }
            if !batch.is_empty() && bytes + queued.fetch.max_bytes > BATCH_BYTES {
                break;
            }
            bytes += queued.fetch.max_bytes;
            queued.sent_at = Some(now);
            batch.push(queued.fetch.clone());
        }
        batch
    }

    /// Takes `node`'s answers; each must answer a fetch queued for that
    /// node and that task (anything else is dropped). Returns how many were
    /// taken.
    pub fn deliver(&mut self, node: &str, chunks: Vec<LogChunk>, now: Instant) -> usize {
        let mut taken = 0;
        for chunk in chunks {
            let asked = self
                .queued
                .get(&chunk.fetch_id)
                .is_some_and(|q| q.node == node && q.fetch.task_id == chunk.task_id);
            if asked {
                self.queued.remove(&chunk.fetch_id);
                self.answers.insert(chunk.fetch_id, (now, chunk));
                taken += 1;
            }
        }
        self.expire(now);
        taken
    }

    /// The answer to a fetch, once it came.
    pub fn take(&mut self, id: u64) -> Option<LogChunk> {
        self.answers.remove(&id).map(|(_, chunk)| chunk)
    }

    /// Forgets a fetch whose request stopped waiting, answered or not.
    pub fn cancel(&mut self, id: u64) {
        self.queued.remove(&id);
        self.answers.remove(&id);
    }

    /// Drops what waited longer than [`FORGET_AFTER`].
    fn expire(&mut self, now: Instant) {
        let fresh = |t: Instant| now.duration_since(t) < FORGET_AFTER;
        self.queued.retain(|_, q| fresh(q.asked_at));
        self.answers.retain(|_, (t, _)| fresh(*t));
    }

    /// How many fetches wait, for every node.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LogCursor;

    fn chunk(fetch: &LogFetch) -> LogChunk {
        LogChunk {
            fetch_id: fetch.id,
            task_id: fetch.task_id.clone(),
            next: LogCursor {
                stdout: 5,
                stderr: 0,
            },
            ..LogChunk::default()
        }
    }

    #[test]
    fn a_fetch_goes_to_its_node_once_and_its_answer_to_the_asker() {
        let mut b = LogBroker::default();
        let t0 = Instant::now();
        let id = b.ask("n1", "t1", LogStart::Tail(2), 1000, t0).unwrap();
        assert!(b.fetches_for("n2", t0).is_empty());
        let sent = b.fetches_for("n1", t0);
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].id, sent[0].start), (id, LogStart::Tail(2)));
        // Not again at the next heartbeat: the answer is on its way.
        assert!(b
            .fetches_for("n1", t0 + Duration::from_millis(500))
            .is_empty());
        assert_eq!(b.take(id), None);
        assert_eq!(b.deliver("n1", vec![chunk(&sent[0])], t0), 1);
        assert_eq!(b.take(id).map(|c| c.next.stdout), Some(5));
        assert_eq!(b.take(id), None);
        assert_eq!(b.queued(), 0);
    }

    #[test]
    fn an_unanswered_fetch_is_sent_again() {
        let mut b = LogBroker::default();
        let t0 = Instant::now();
        b.ask("n1", "t1", LogStart::default(), 10, t0).unwrap();
        assert_eq!(b.fetches_for("n1", t0).len(), 1);
        assert!(b.fetches_for("n1", t0 + RESEND_AFTER / 2).is_empty());
        assert_eq!(b.fetches_for("n1", t0 + RESEND_AFTER).len(), 1);
    }

    #[test]
    fn answers_only_count_from_the_node_asked_and_for_the_task_asked() {
        let mut b = LogBroker::default();
        let t0 = Instant::now();
        let id = b.ask("n1", "t1", LogStart::default(), 10, t0).unwrap();
        let fetch = b.fetches_for("n1", t0).remove(0);
        assert_eq!(b.deliver("n2", vec![chunk(&fetch)], t0), 0);
        let mut wrong_task = chunk(&fetch);
        wrong_task.task_id = "t9".into();
        assert_eq!(b.deliver("n1", vec![wrong_task], t0), 0);
        // Nor for a fetch that was never made.
        let mut unknown = chunk(&fetch);
        unknown.fetch_id = 999;
        assert_eq!(b.deliver("n1", vec![unknown], t0), 0);
        assert_eq!(b.take(id), None);
        assert_eq!(b.deliver("n1", vec![chunk(&fetch)], t0), 1);
        // A late duplicate is dropped.
        assert_eq!(b.deliver("n1", vec![chunk(&fetch)], t0), 0);
    }

    #[test]
    fn a_heartbeat_answer_carries_a_bounded_batch() {
        let mut b = LogBroker::default();
        let t0 = Instant::now();
        for task in ["a", "b", "c"] {
            b.ask("n1", task, LogStart::default(), BATCH_BYTES / 2, t0)
                .unwrap();
        }
        let first = b.fetches_for("n1", t0);
        assert_eq!(
            first.iter().map(|f| f.task_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let second = b.fetches_for("n1", t0);
        assert_eq!(second.len(), 1);
        // One fetch always goes, even beyond the batch size.
        b.ask("n2", "big", LogStart::default(), BATCH_BYTES * 4, t0)
            .unwrap();
        assert_eq!(b.fetches_for("n2", t0).len(), 1);
    }

    #[test]
    fn nodes_have_a_queue_limit_and_old_requests_are_forgotten() {
        let mut b = LogBroker::default();
        let t0 = Instant::now();
        let first = b.ask("n1", "t", LogStart::default(), 1, t0).unwrap();
        for _ in 1..MAX_QUEUED_PER_NODE {
            b.ask("n1", "t", LogStart::default(), 1, t0).unwrap();
        }
        let busy = b.ask("n1", "t", LogStart::default(), 1, t0).unwrap_err();
        assert!(busy.to_string().contains("node n1 already has"), "{busy}");
        assert!(b.ask("n2", "t", LogStart::default(), 1, t0).is_ok());
        // A node that never answers does not hold its queue forever.
        let later = t0 + FORGET_AFTER;
        assert!(b.ask("n1", "t", LogStart::default(), 1, later).is_ok());
        assert_eq!(b.queued(), 1);
        // Nor does an answer nobody claims stay.
        let fetch = b.fetches_for("n1", later).remove(0);
        b.deliver("n1", vec![chunk(&fetch)], later);
        b.deliver("n1", vec![], later + FORGET_AFTER);
        assert_eq!(b.take(fetch.id), None);
        b.cancel(first);
    }
}
