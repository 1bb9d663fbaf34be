//! Retrying failed objects with exponential backoff: an object that failed
//! is held back for 1 s, then 2, 4 ... up to 60 s between attempts, while
//! every other object is reconciled as usual. Each failure is logged once
//! per change of its error, not once per pass. Pure (time is passed in), so
//! the schedule is unit-tested.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::each::{Object, Outcome};

/// The first retry delay.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const LAST_RETRY: Duration = Duration::from_secs(60);

/// One failing object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failing {
    /// The last error, as the user reads it.
    pub error: String,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// When the object is tried again.
    pub next: Instant,
}

/// What a pass changed in the failing set, to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new failure, or a known one whose error changed.
    Failed {
        object: Object,
        error: String,
        retry_in: Duration,
    },
    /// A failing object was built.
    Recovered { object: Object },
}

/// The failing objects and when each is tried again.
#[derive(Debug, Default)]
pub struct Backoff {
    schedule: Schedule<Object>,
}

/// The delay after `attempts` failures in a row: 1 s doubling, at most 60 s.
pub fn delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(LAST_RETRY)
}

impl Backoff {
    /// The objects a pass starting at `now` must leave alone, with their
    /// last error.
    pub fn held(&self, now: Instant) -> BTreeMap<Object, String> {
        self.schedule
            .held(now)
            .map(|(o, f)| (o.clone(), f.error.clone()))
            .collect()
    }

    /// Takes in a pass's outcome: failed objects are held for their next
    /// delay, objects neither failed nor held are well again.
    pub fn record(&mut self, outcome: &Outcome, now: Instant) -> Vec<Event> {
        let failed = outcome
            .failed
            .iter()
            .map(|(object, error)| (object.clone(), error.chain().to_string()));
        self.schedule
            .record(failed, |o| outcome.held.contains(o), now)
            .into_iter()
            .map(|change| match change {
                Change::Failed {
                    key,
                    error,
                    retry_in,
                } => Event::Failed {
                    object: key,
                    error,
                    retry_in,
                },
                Change::Recovered { key } => Event::Recovered { object: key },
            })
            .collect()
    }

    /// When the next held object is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    /// The failing objects with their last error.
    pub fn failing(&self) -> &BTreeMap<Object, Failing> {
        self.schedule.failing()
    }
}

/// A change a pass made to a [`Schedule`]'s failing set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<K> {
    /// A new failure, or a known one whose error changed.
    Failed {
        key: K,
        error: String,
        retry_in: Duration,
    },
    /// A failing key is well again.
    Recovered { key: K },
}

/// The backoff schedule of anything retried by key (overlay objects,
/// published ports): each failing key with its last error, its failures in
/// a row and when it is tried again.
#[derive(Debug)]
pub struct Schedule<K> {
    failing: BTreeMap<K, Failing>,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Schedule {
            failing: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Schedule<K> {
    /// The failing keys a pass starting at `now` must leave alone.
    pub fn held(&self, now: Instant) -> impl Iterator<Item = (&K, &Failing)> {
        self.failing.iter().filter(move |(_, f)| f.next > now)
    }

    /// Takes in a pass: the keys in `failed` are held for their next delay;
    /// a failing key neither failed nor `held` this pass is well again.
    pub fn record(
        &mut self,
        failed: impl IntoIterator<Item = (K, String)>,
        held: impl Fn(&K) -> bool,
        now: Instant,
    ) -> Vec<Change<K>> {
        let mut events = Vec::new();
        let mut failed_now = std::collections::BTreeSet::new();
        for (key, error) in failed {
            let entry = self.failing.entry(key.clone()).or_insert(Failing {
                error: String::new(),
                attempts: 0,
                next: now,
            });
            entry.attempts = entry.attempts.saturating_add(1);
            let retry_in = delay(entry.attempts);
            entry.next = now + retry_in;
            if entry.error != error {
                entry.error.clone_from(&error);
                events.push(Change::Failed {
                    key: key.clone(),
                    error,
                    retry_in,
                });
            }
            failed_now.insert(key);
        }
        let well: Vec<K> = self
            .failing
            .keys()
            .filter(|k| !failed_now.contains(*k) && !held(k))
            .cloned()
            .collect();
        for key in well {
            self.failing.remove(&key);
            events.push(Change::Recovered { key });
        }
        events
    }

    /// When the next held key is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.failing.values().map(|f| f.next).min()
    }

    /// The failing keys with their last error.
    pub fn failing(&self) -> &BTreeMap<K, Failing> {
        &self.failing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::OverlayError;

    fn failed(object: &Object, error: &str) -> Outcome {
        let mut outcome = Outcome::default();
        outcome
            .failed
            .insert(object.clone(), OverlayError::Kernel(error.into()));
        outcome
    }

    #[test]
    fn delays_double_from_one_second_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(u32::MAX), LAST_RETRY);
    }

    #[test]
    fn a_failed_object_is_held_until_its_retry_and_logged_once_per_error() {
        let t0 = Instant::now();
        let bad = Object::Network("bad".into());
        let mut backoff = Backoff::default();
        let events = backoff.record(&failed(&bad, "File exists"), t0);
        assert!(
            matches!(&events[..], [Event::Failed { retry_in, .. }] if *retry_in == FIRST_RETRY)
        );
        assert!(backoff.held(t0).contains_key(&bad));
        assert!(backoff.held(t0 + FIRST_RETRY).is_empty());
        // Held during a pass: still failing, nothing to log.
        let mut held = Outcome::default();
        held.held.insert(bad.clone());
        assert!(backoff.record(&held, t0).is_empty());
        // The same error again: no new log line, a longer delay.
        let t1 = t0 + FIRST_RETRY;
        assert!(backoff.record(&failed(&bad, "File exists"), t1).is_empty());
        assert_eq!(backoff.next_due(), Some(t1 + Duration::from_secs(2)));
        // Another error is logged.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(
            backoff.record(&failed(&bad, "No buffer space"), t2).len(),
            1
        );
        assert_eq!(backoff.failing()[&bad].attempts, 3);
    }

    #[test]
    fn an_object_that_builds_or_is_gone_is_well_again() {
        let t0 = Instant::now();
        let bad = Object::Sandbox("t1".into());
        let mut backoff = Backoff::default();
        backoff.record(&failed(&bad, "boom"), t0);
        let events = backoff.record(&Outcome::default(), t0 + LAST_RETRY);
        assert_eq!(events, [Event::Recovered { object: bad }]);
        assert!(backoff.failing().is_empty());
        assert_eq!(backoff.next_due(), None);
    }

    #[test]
    fn other_objects_are_never_held_by_a_failing_one() {
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        backoff.record(&failed(&Object::Network("bad".into()), "x"), t0);
        let held = backoff.held(t0);
        assert!(!held.contains_key(&Object::Network("good".into())));
        assert_eq!(held.len(), 1);
    }
}
