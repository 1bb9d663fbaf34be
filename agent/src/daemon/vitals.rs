//! The agent's own vital signs on the metrics endpoint: the latency of its
//! heartbeats to the managers (every node) and, on managers, its Raft
//! member's term, commit index and leader changes. Only measures and
//! renders; the session and the Raft member own the values.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_control::raft::RaftStatus;

/// Upper bounds (seconds) of the heartbeat latency histogram's buckets.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Heartbeat round trips to the managers: a histogram of the answered ones
/// and a count of those that failed (no answer in time, or an error).
#[derive(Debug, Default)]
pub struct HeartbeatLatency {
    /// Answers per bucket of [`BUCKETS`] (not cumulative), then those
    /// slower than the last bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
    failed: AtomicU64,
}

impl HeartbeatLatency {
    /// One answered heartbeat that took `took`.
    pub fn answered(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// One heartbeat that got no answer.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram and the failure count in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP shoal_heartbeat_latency_seconds Round trip of this node's heartbeats to the managers.\n\
             # TYPE shoal_heartbeat_latency_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "shoal_heartbeat_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "shoal_heartbeat_latency_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             shoal_heartbeat_latency_seconds_sum {sum}\n\
             shoal_heartbeat_latency_seconds_count {count}\n\
             # HELP shoal_heartbeat_failures_total Heartbeats to the managers that got no answer.\n\
             # TYPE shoal_heartbeat_failures_total counter\n\
             shoal_heartbeat_failures_total {}",
            self.failed.load(Ordering::Relaxed)
        );
        out
    }
}

/// A manager's Raft member in Prometheus' text format: its term, commit
/// index, the leader changes it saw, and whether it leads.
pub fn raft_prometheus(status: &RaftStatus) -> String {
    let leader = u8::from(status.leader == Some(status.raft_id));
    format!(
        "# HELP shoal_raft_term The Raft term this manager is in.\n\
         # TYPE shoal_raft_term gauge\n\
         shoal_raft_term {}\n\
         # HELP shoal_raft_commit_index The highest Raft log index this manager knows committed.\n\
         # TYPE shoal_raft_commit_index gauge\n\
         shoal_raft_commit_index {}\n\
         # HELP shoal_raft_leader_changes_total New leaders this manager saw since it started.\n\
         # TYPE shoal_raft_leader_changes_total counter\n\
         shoal_raft_leader_changes_total {}\n\
         # HELP shoal_raft_is_leader 1 while this manager leads the Raft group.\n\
         # TYPE shoal_raft_is_leader gauge\n\
         shoal_raft_is_leader {leader}\n",
        status.term,
        status.committed_index.unwrap_or(0),
        status.leader_changes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::raft::RaftRole;

    fn sample<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    }

    #[test]
    fn heartbeat_latencies_fill_cumulative_buckets_and_failures_count_apart() {
        let h = HeartbeatLatency::default();
        h.answered(Duration::from_micros(800));
        h.answered(Duration::from_millis(30));
        h.answered(Duration::from_secs(3));
        h.failed();
        let text = h.prometheus();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("shoal_heartbeat_latency_seconds_bucket{{le=\"{le}\"}}"),
            )
            .map(str::to_string)
        };
        assert_eq!(bucket("0.001").as_deref(), Some("1"));
        assert_eq!(bucket("0.025").as_deref(), Some("1"));
        assert_eq!(bucket("0.05").as_deref(), Some("2"));
        assert_eq!(bucket("1").as_deref(), Some("2"));
        assert_eq!(bucket("+Inf").as_deref(), Some("3"));
        assert_eq!(
            sample(&text, "shoal_heartbeat_latency_seconds_count"),
            Some("3")
        );
        assert_eq!(
            sample(&text, "shoal_heartbeat_latency_seconds_sum"),
            Some("3.0308")
        );
        assert_eq!(sample(&text, "shoal_heartbeat_failures_total"), Some("1"));
    }

    #[test]
    fn raft_vitals_come_from_the_members_status() {
        let status = RaftStatus {
            raft_id: 2,
            role: RaftRole::Leader,
            term: 7,
            leader: Some(2),
            last_log_index: Some(45),
            committed_index: Some(44),
            applied_index: Some(44),
            snapshot_index: None,
            purged_index: None,
            peers: Vec::new(),
            leader_changes: 3,
        };
        let text = raft_prometheus(&status);
        assert_eq!(sample(&text, "shoal_raft_term"), Some("7"));
        assert_eq!(sample(&text, "shoal_raft_commit_index"), Some("44"));
        assert_eq!(sample(&text, "shoal_raft_leader_changes_total"), Some("3"));
        assert_eq!(sample(&text, "shoal_raft_is_leader"), Some("1"));
    }
}
