//! One node's replica of the endpoint tables (`gossip::table`) as an
//! application of membership: it gossips its deltas as membership
//! broadcasts, repairs what gossip missed by periodic anti-entropy with a
//! random live member, and programs only the entries of owners membership
//! says are alive. The agent runs it over UDP/TCP 7946, the simulation in
//! virtual time; both drive its clock from the `now` they pass in.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::app::{AppNode, AppOutput};
use crate::gossip::codec::Message;
use crate::gossip::membership::MemberId;
use crate::gossip::table::{
    pack_deltas, Delta, EndpointRecord, HashNotary, LiveEndpoint, ManualClock, Notary, Tables,
    Verdict, DEFAULT_PAGE_BYTES,
};

/// Certificates per `Message::Certificates` frame (some 600 bytes each).
const CERTIFICATES_PER_FRAME: usize = 64;

/// The simulated wall clock at virtual time zero (Unix milliseconds).
const EPOCH_MS: u64 = 1_700_000_000_000;
/// How many recent convergence lags are kept for quantiles.
const LAG_WINDOW: usize = 512;
/// Largest encoded group of deltas per broadcast, within
/// `Membership::max_broadcast_len` of the default configuration.
const BROADCAST_BYTES: usize = 600;

/// One node's endpoint tables.
pub struct TableNode {
    tables: Tables,
    clock: Arc<ManualClock>,
    /// Wall clock (Unix ms) at `now` zero.
    base_ms: u64,
    /// Live members: node id -> (identity bump, gossip address).
    alive: BTreeMap<String, (u64, SocketAddr)>,
    rng: ChaCha8Rng,
    sync_interval: Duration,
    next_sync: Duration,
    session: u64,
    generation: u64,
    lag: LagStats,
    /// Members that just came up (joined, restarted, or back after a
    /// partition): synced with at the next tick instead of waiting for the
    /// periodic round, so what either side missed meanwhile is repaired at
    /// once. At most [`MAX_PROMPT_SYNCS`] per tick.
    prompt: Vec<SocketAddr>,
}

/// Members synced with promptly per tick, after they came up.
const MAX_PROMPT_SYNCS: usize = 3;

/// How long peers' changes took to reach this replica: from the owner's
/// write (its clock) to the first time this node stored it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagStats {
    /// Changes from other nodes stored so far.
    pub count: u64,
    pub last_ms: u64,
    pub max_ms: u64,
    /// Quantiles over the last [`LAG_WINDOW`] changes, filled in when the
    /// stats are read ([`TableNode::lag`]).
    pub p50_ms: u64,
    pub p99_ms: u64,
    #[serde(skip)]
    recent: VecDeque<u64>,
}

impl LagStats {
    fn record(&mut self, lag_ms: u64) {
        self.count += 1;
        self.last_ms = lag_ms;
        self.max_ms = self.max_ms.max(lag_ms);
        if self.recent.len() == LAG_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(lag_ms);
    }

    /// A copy with the quantiles of the recent window.
    fn summary(&self) -> LagStats {
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| {
            let last = sorted.len().saturating_sub(1);
            sorted
                .get((last as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        LagStats {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            ..self.clone()
        }
    }
}

impl TableNode {
    /// Empty tables for simulated node `index` (named `n<index>` like its
    /// member), started at `now`; anti-entropy every `sync_interval`.
    pub fn new(index: usize, now: Duration, seed: u64, sync_interval: Duration) -> Self {
        let name = format!("n{index}");
        let mut node = Self::starting(&name, EPOCH_MS, now, seed ^ (index as u64), sync_interval)
            .with_notary(Box::new(HashNotary::new(&name)));
        // A simulated node runs no task across a restart: from the start it
        // is the authority on its entries, and old copies get tombstoned.
        node.tables.settle();
        node
    }

    /// Empty, unsettled tables for node `node_id`, whose wall clock read
    /// `base_ms` at `now` zero. Re-publish what this node still runs, then
    /// call [`TableNode::settle`].
    pub fn starting(
        node_id: &str,
        base_ms: u64,
        now: Duration,
        seed: u64,
        sync_interval: Duration,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(base_ms + millis(now)));
        let tables = Tables::with_clock(node_id.to_string(), clock.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ millis(now));
        let spread = u64::try_from(sync_interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let next_sync = now + Duration::from_nanos(rng.random_range(0..spread));
        Self {
            tables,
            clock,
            base_ms,
            alive: BTreeMap::new(),
            rng,
            sync_interval,
            next_sync,
            session: 0,
            generation: 0,
            lag: LagStats::default(),
            prompt: Vec::new(),
        }
    }

    /// Signs and checks records with `notary` (see [`Tables::with_notary`]).
    pub fn with_notary(mut self, notary: Box<dyn Notary>) -> Self {
        self.tables = std::mem::replace(&mut self.tables, Tables::new("")).with_notary(notary);
        self
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Signs with a renewed certificate and key, and gossips this node's
    /// entries signed again.
    pub fn rekey(
        &mut self,
        cert_pem: &str,
        key_pem: &str,
        now: Duration,
    ) -> Result<Vec<AppOutput>, String> {
        self.set_clock(now);
        let deltas = self.tables.rekey(cert_pem, key_pem)?;
        self.changed(!deltas.is_empty());
        Ok(broadcasts(deltas))
    }

    /// Ignores the deltas of `owners` (nodes removed from the swarm) and
    /// drops their entries; returns how many were dropped.
    pub fn refuse_owners(&mut self, owners: &std::collections::BTreeSet<String>) -> usize {
        let dropped = self.tables.refuse_owners(owners);
        self.changed(dropped > 0);
        dropped
    }

    /// Deltas whose owner's key is unknown here: sync with the owner (if it
    /// is alive) at the next tick, which brings its certificate.
    fn ask_owner(&mut self, owner: &str) {
        if let Some(&(_, addr)) = self.alive.get(owner) {
            if !self.prompt.contains(&addr) && self.prompt.len() < MAX_PROMPT_SYNCS {
                self.prompt.push(addr);
            }
        }
    }

    /// Bumped whenever what [`TableNode::live`] returns may have changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Convergence lag so far, with the quantiles of recent changes.
    pub fn lag(&self) -> LagStats {
        self.lag.summary()
    }

    /// Whether membership reports `node` alive (this node always is).
    pub fn is_alive(&self, node: &str) -> bool {
        node == self.tables.self_node() || self.alive.contains_key(node)
    }

    /// Declares that this node re-published what it still runs (see
    /// [`Tables::settle`]); returns the broadcasts of the withdrawals.
    pub fn settle(&mut self, now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        let stale = self.tables.settle();
        self.changed(!stale.is_empty());
        broadcasts(stale)
    }

    /// Publishes a task's endpoint on `network`; returns the broadcasts.
    pub fn publish(
        &mut self,
        network: &str,
        record: EndpointRecord,
        now: Duration,
    ) -> Vec<AppOutput> {
        self.set_clock(now);
        let delta = self.tables.publish(network, record);
        self.changed(true);
        broadcasts(vec![delta])
    }

    /// Withdraws a task's endpoint; returns the broadcasts.
    pub fn withdraw(&mut self, network: &str, task_id: &str, now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        let withdrawn: Vec<Delta> = self.tables.withdraw(network, task_id).into_iter().collect();
        self.changed(!withdrawn.is_empty());
        broadcasts(withdrawn)
    }

    /// What this node would program for `network`: live entries whose owner
    /// membership reports alive.
    pub fn live(&self, network: &str) -> Vec<LiveEndpoint<'_>> {
        self.tables
            .live_endpoints(network, |owner| self.alive.contains_key(owner))
    }

    fn set_clock(&self, now: Duration) {
        self.clock.set(self.base_ms + millis(now));
    }

    fn changed(&mut self, changed: bool) {
        if changed {
            self.generation += 1;
        }
    }

    /// Stores a peer's delta, recording how long it took to get here.
    fn apply(&mut self, delta: Delta, now: Duration) -> Option<Delta> {
        let written_at = delta.written_at;
        let foreign = delta.owner != self.tables.self_node();
        let owner = delta.owner.clone();
        let applied = self.tables.apply(delta);
        if applied.refused == Some(Verdict::UnknownKey) {
            self.ask_owner(&owner);
        }
        if applied.changed {
            self.changed(true);
            if foreign {
                let now_ms = self.base_ms + millis(now);
                self.lag.record(now_ms.saturating_sub(written_at));
            }
        }
        applied.answer
    }
}

impl AppNode for TableNode {
    fn on_member_up(&mut self, member: &MemberId, _now: Duration) -> Vec<AppOutput> {
        let node = member.node().as_str();
        let newer = self
            .alive
            .get(node)
            .is_none_or(|(bump, _)| *bump <= member.bump());
        if newer {
            let previous = self
                .alive
                .insert(node.to_string(), (member.bump(), member.addr()));
            if previous.is_none_or(|(bump, _)| bump != member.bump())
                && self.prompt.len() < MAX_PROMPT_SYNCS
            {
                self.prompt.push(member.addr());
            }
            self.changed(true);
        }
        Vec::new()
    }

    fn on_member_down(&mut self, member: &MemberId, _now: Duration) -> Vec<AppOutput> {
        // Only this identity: a node that restarted is up with a higher one.
        let node = member.node().as_str();
        if self
            .alive
            .get(node)
            .is_some_and(|(bump, _)| *bump == member.bump())
        {
            self.alive.remove(node);
            self.changed(true);
        }
        Vec::new()
    }

    fn on_broadcast(&mut self, payload: &[u8], now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        let Ok(Message::Deltas(deltas)) = Message::decode(payload) else {
            return Vec::new();
        };
        let answers: Vec<Delta> = deltas
            .into_iter()
            .filter_map(|delta| self.apply(delta, now))
            .collect();
        broadcasts(answers)
    }

    fn on_stream(&mut self, from: SocketAddr, bytes: &[u8], now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        match Message::decode(bytes) {
            Ok(Message::SyncRequest { session, digest }) => {
                let pages = self.tables.missing_for(&digest, DEFAULT_PAGE_BYTES);
                let count = pages.len();
                // The certificates first, so the pages check out on arrival.
                let certificates = self.tables.certificates_for(&pages);
                let certificates = certificates
                    .chunks(CERTIFICATES_PER_FRAME)
                    .filter_map(|chunk| Message::Certificates(chunk.to_vec()).encode().ok())
                    .map(|bytes| AppOutput::Stream {
                        to: from,
                        bytes: Bytes::from(bytes),
                    });
                let pages = pages.into_iter().enumerate().filter_map(|(index, page)| {
                    let message = Message::SyncPage {
                        session,
                        index: u32::try_from(index).ok()?,
                        last: index + 1 == count,
                        page,
                    };
                    let bytes = Bytes::from(message.encode().ok()?);
                    Some(AppOutput::Stream { to: from, bytes })
                });
                certificates.chain(pages).collect()
            }
            Ok(Message::Certificates(certificates)) => {
                // As many as a sender puts in a frame: a member cannot make
                // this node check certificates without end.
                for certificate in certificates.iter().take(CERTIFICATES_PER_FRAME) {
                    self.tables.learn(certificate);
                }
                Vec::new()
            }
            Ok(Message::SyncPage { page, .. }) => {
                let now_ms = self.base_ms + millis(now);
                let fresh: Vec<u64> = page
                    .deltas
                    .iter()
                    .filter(|d| d.owner != self.tables.self_node())
                    .filter(|d| {
                        self.tables
                            .get(&d.network, d.task_id())
                            .is_none_or(|held| d.supersedes(held))
                    })
                    .map(|d| now_ms.saturating_sub(d.written_at))
                    .collect();
                let applied = self.tables.apply_page(page);
                for (owner, verdict) in &applied.refused {
                    if *verdict == Verdict::UnknownKey {
                        self.ask_owner(owner);
                    }
                }
                self.changed(applied.changed > 0);
                for lag in fresh {
                    self.lag.record(lag);
                }
                broadcasts(applied.answers)
            }
            _ => Vec::new(),
        }
    }

    fn on_tick(&mut self, now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        self.tables.reap(self.base_ms + millis(now));
        let mut targets = std::mem::take(&mut self.prompt);
        if now >= self.next_sync && !self.alive.is_empty() {
            self.next_sync = now + self.sync_interval;
            let pick = self.rng.random_range(0..self.alive.len());
            if let Some(&(_, to)) = self.alive.values().nth(pick) {
                targets.push(to);
            }
        }
        targets.dedup();
        if targets.is_empty() {
            return Vec::new();
        }
        let digest = self.tables.digest();
        targets
            .into_iter()
            .filter_map(|to| {
                self.session += 1;
                let request = Message::SyncRequest {
                    session: self.session,
                    digest: digest.clone(),
                };
                let bytes = Bytes::from(request.encode().ok()?);
                Some(AppOutput::Stream { to, bytes })
            })
            .collect()
    }
}

/// Deltas as broadcast payloads (`Message::Deltas`), each small enough to
/// ride a membership datagram.
fn broadcasts(deltas: Vec<Delta>) -> Vec<AppOutput> {
    pack_deltas(deltas, BROADCAST_BYTES)
        .into_iter()
        .filter_map(|group| Message::Deltas(group).encode().ok())
        .map(|bytes| AppOutput::Broadcast(Bytes::from(bytes)))
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles_cover_the_recent_window() {
        let mut lag = LagStats::default();
        assert_eq!(lag.summary().p99_ms, 0);
        for ms in 1..=100 {
            lag.record(ms);
        }
        let s = lag.summary();
        assert_eq!((s.count, s.last_ms, s.max_ms), (100, 100, 100));
        assert_eq!((s.p50_ms, s.p99_ms), (51, 99));
        for _ in 0..LAG_WINDOW {
            lag.record(7);
        }
        let s = lag.summary();
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (7, 7, 100));
    }
}
