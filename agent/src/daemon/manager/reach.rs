//! Which managers this manager can reach: a prober calls every other
//! manager's API twice a second; a manager answering within the last two
//! seconds is Reachable. This feeds MANAGER STATUS and the quorum error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_control::api::{ApiRequest, Reachability};
use tokio_util::sync::CancellationToken;

use super::super::peers::Peers;

const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);
const REACHABLE_WITHIN: Duration = Duration::from_secs(2);

/// Last successful contact per manager API address.
#[derive(Clone, Default)]
pub struct Reach {
    last_ok: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Reach {
    pub fn of(&self, addr: &str, own_addr: &str) -> Reachability {
        if addr == own_addr {
            return Reachability::Reachable;
        }
        let fresh = self
            .last_ok
            .lock()
            .ok()
            .and_then(|m| m.get(addr).copied())
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

    fn mark(&self, addr: &str) {
        if let Ok(mut m) = self.last_ok.lock() {
            m.insert(addr.to_string(), Instant::now());
        }
    }

    /// Probes the managers `list()` returns until `stop` is cancelled.
    pub async fn run(
        self,
        peers: Peers,
        own_addr: String,
        list: impl Fn() -> Vec<String> + Send + 'static,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for addr in list().into_iter().filter(|a| *a != own_addr) {
                let (reach, peers) = (self.clone(), peers.clone());
                tokio::spawn(async move {
                    let probe = peers.call(&addr, &ApiRequest::Info);
                    if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                        reach.mark(&addr);
                    }
                });
            }
        }
    }
}
