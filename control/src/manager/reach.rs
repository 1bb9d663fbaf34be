//! Which managers this manager can reach: the last successful contact per
//! manager API address, fed by the daemon's prober (which calls every other
//! manager twice a second). A manager heard from within the last two
//! seconds is Reachable. This feeds MANAGER STATUS and the quorum error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::api::Reachability;

/// How recent a contact must be for the manager to count as reachable.
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(2);

/// Last successful contact per manager API address.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    last_ok: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Reach {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.last_ok.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `addr` is reachable from `own_addr` (itself always is).
    pub fn of(&self, addr: &str, own_addr: &str) -> Reachability {
        if addr == own_addr {
            return Reachability::Reachable;
        }
        let fresh = self
            .table()
            .get(addr)
            .is_some_and(|t| t.elapsed() < REACHABLE_WITHIN);
        if fresh {
            Reachability::Reachable
        } else {
            Reachability::Unreachable
        }
    }

    /// How many of `managers` (API addresses) are reachable, this one included.
    pub fn count(&self, managers: &[String], own_addr: &str) -> usize {
        managers
            .iter()
            .filter(|a| self.of(a, own_addr) == Reachability::Reachable)
            .count()
    }

    /// `addr` answered just now.
    pub fn mark(&self, addr: &str) {
        self.table().insert(addr.to_string(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_is_reachable_once_it_answered_and_itself_always() {
        let reach = Reach::default();
        let managers = vec!["a:2377".to_string(), "b:2377".into(), "c:2377".into()];
        assert_eq!(reach.count(&managers, "a:2377"), 1);
        reach.mark("b:2377");
        assert_eq!(reach.of("b:2377", "a:2377"), Reachability::Reachable);
        assert_eq!(reach.of("c:2377", "a:2377"), Reachability::Unreachable);
        assert_eq!(reach.count(&managers, "a:2377"), 2);
    }
}
