//! The reachability prober: calls every other manager's API twice a second
//! and records who answered in the core's [`Reach`] table (MANAGER STATUS
//! and the quorum error read it).

use std::time::Duration;

use shoal_control::api::ApiRequest;
use shoal_control::manager::Reach;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::super::peers::Peers;

const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);

/// Probes the managers `list()` names (but `own_addr`) until `stop`; the
/// probes in flight then finish within [`PROBE_TIMEOUT`].
pub async fn run(
    reach: Reach,
    peers: Peers,
    own_addr: String,
    list: impl Fn() -> Vec<String> + Send + 'static,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut probes = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        while probes.try_join_next().is_some() {}
        for addr in list().into_iter().filter(|a| *a != own_addr) {
            let (reach, peers) = (reach.clone(), peers.clone());
            probes.spawn(async move {
                let probe = peers.call(&addr, &ApiRequest::Info);
                if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                    reach.mark(&addr);
                }
            });
        }
    }
    while probes.join_next().await.is_some() {}
}
