//! Retrying published ports the balancer refused, each on its own
//! exponential backoff (the overlay's schedule: 1 s doubling up to 60 s),
//! while every other port is written as usual. Each failure is logged once
//! per change of its error. Pure (time is passed in), so the schedule is
//! unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::PortKey;
use crate::overlay::backoff::{Change, Schedule};

/// One published port the balancer fails to program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingPort {
    pub port: PortKey,
    /// The last error, as the user reads it.
    pub error: String,
    /// Failed attempts in a row.
    pub attempts: u32,
}

/// What a pass changed in the failing set, to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortEvent {
    /// A new failure, or a known one whose error changed.
    Failed {
        port: PortKey,
        error: String,
        retry_in: Duration,
    },
    /// A failing port was written (or removed) at last.
    Recovered { port: PortKey },
}

/// The failing ports and when each is tried again.
#[derive(Debug, Default)]
pub struct PortRetry {
    schedule: Schedule<PortKey>,
}

impl PortRetry {
    /// The ports a pass starting at `now` must leave alone.
    pub fn held(&self, now: Instant) -> BTreeSet<PortKey> {
        self.schedule.held(now).map(|(p, _)| *p).collect()
    }

    /// Takes in a pass: the ports in `failed` are held for their next
    /// delay; a failing port neither failed nor `held` this pass is well
    /// again.
    pub fn record(
        &mut self,
        failed: &BTreeMap<PortKey, String>,
        held: &BTreeSet<PortKey>,
        now: Instant,
    ) -> Vec<PortEvent> {
        let failed = failed.iter().map(|(p, e)| (*p, e.clone()));
        self.schedule
            .record(failed, |p| held.contains(p), now)
            .into_iter()
            .map(|change| match change {
                Change::Failed {
                    key,
                    error,
                    retry_in,
                } => PortEvent::Failed {
                    port: key,
                    error,
                    retry_in,
                },
                Change::Recovered { key } => PortEvent::Recovered { port: key },
            })
            .collect()
    }

    /// When the next held port is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    /// The failing ports, by port.
    pub fn failing(&self) -> Vec<FailingPort> {
        self.schedule
            .failing()
            .iter()
            .map(|(port, f)| FailingPort {
                port: *port,
                error: f.error.clone(),
                attempts: f.attempts,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::Protocol;

    fn port(n: u16) -> PortKey {
        PortKey {
            protocol: Protocol::Tcp,
            port: n,
        }
    }

    fn failed(p: PortKey, error: &str) -> BTreeMap<PortKey, String> {
        BTreeMap::from([(p, error.to_string())])
    }

    #[test]
    fn a_failed_port_backs_off_exponentially_up_to_a_minute() {
        let t0 = Instant::now();
        let bad = port(8080);
        let mut retry = PortRetry::default();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            retry.record(&failed(bad, "map full"), &BTreeSet::new(), now);
            let due = retry.next_due().unwrap();
            waits.push(due.duration_since(now).as_secs());
            assert!(retry.held(now).contains(&bad));
            assert!(retry.held(due).is_empty(), "due at its retry time");
            now = due;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry.failing()[0].attempts, 9);
    }

    #[test]
    fn each_port_has_its_own_schedule_and_is_logged_once_per_error() {
        let t0 = Instant::now();
        let (a, b) = (port(8080), port(9090));
        let mut retry = PortRetry::default();
        let events = retry.record(&failed(a, "E2BIG"), &BTreeSet::new(), t0);
        assert!(matches!(&events[..], [PortEvent::Failed { port, .. }] if *port == a));
        // Three more failures of a; b fails later, once.
        let mut now = t0;
        for _ in 0..3 {
            now = retry.next_due().unwrap();
            assert!(retry
                .record(&failed(a, "E2BIG"), &BTreeSet::new(), now)
                .is_empty());
        }
        let held = retry.held(now);
        let events = retry.record(&failed(b, "EPERM"), &held, now);
        assert_eq!(events.len(), 1, "{events:?}");
        let held = retry.held(now);
        assert!(held.contains(&a) && held.contains(&b));
        let by_port: BTreeMap<PortKey, u32> = retry
            .failing()
            .into_iter()
            .map(|f| (f.port, f.attempts))
            .collect();
        assert_eq!(by_port, BTreeMap::from([(a, 4), (b, 1)]));
        // b is due after 1 s, a after 8 s: b alone is retried then.
        let soon = now + Duration::from_secs(1);
        assert_eq!(retry.held(soon), BTreeSet::from([a]));
        // A changed error is logged again.
        let events = retry.record(&failed(b, "ENOSPC"), &BTreeSet::from([a]), soon);
        assert!(matches!(&events[..], [PortEvent::Failed { error, .. }] if error == "ENOSPC"));
    }

    #[test]
    fn a_port_that_is_written_or_no_longer_held_is_well_again() {
        let t0 = Instant::now();
        let bad = port(53);
        let mut retry = PortRetry::default();
        retry.record(&failed(bad, "boom"), &BTreeSet::new(), t0);
        // Held during a pass: still failing, nothing to log.
        assert!(retry
            .record(&BTreeMap::new(), &BTreeSet::from([bad]), t0)
            .is_empty());
        assert_eq!(retry.failing().len(), 1);
        let events = retry.record(
            &BTreeMap::new(),
            &BTreeSet::new(),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(events, [PortEvent::Recovered { port: bad }]);
        assert!(retry.failing().is_empty());
        assert_eq!(retry.next_due(), None);
    }
}
