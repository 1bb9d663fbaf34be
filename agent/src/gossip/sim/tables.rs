//! The endpoint tables (`gossip::table`) riding the simulation: each node
//! holds a `Tables` replica on a clock driven by virtual time, gossips its
//! deltas as membership broadcasts, repairs what gossip missed by periodic
//! anti-entropy with a random live member, and programs only the entries of
//! owners membership says are alive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AppNode, AppOutput};
use crate::gossip::codec::Message;
use crate::gossip::membership::MemberId;
use crate::gossip::table::{
    pack_deltas, Delta, EndpointRecord, LiveEndpoint, ManualClock, Tables, DEFAULT_PAGE_BYTES,
};

/// The simulated wall clock at virtual time zero (Unix milliseconds).
const EPOCH_MS: u64 = 1_700_000_000_000;
/// Largest encoded group of deltas per broadcast, within
/// `Membership::max_broadcast_len` of the default configuration.
const BROADCAST_BYTES: usize = 600;

/// One node's endpoint tables.
pub struct TableNode {
    tables: Tables,
    clock: Arc<ManualClock>,
    /// Live members: node id -> gossip address.
    alive: BTreeMap<String, SocketAddr>,
    rng: ChaCha8Rng,
    sync_interval: Duration,
    next_sync: Duration,
    session: u64,
}

impl TableNode {
    /// Empty tables for node `index` (named `n<index>` like its member),
    /// started at `now`; anti-entropy every `sync_interval`.
    pub fn new(index: usize, now: Duration, seed: u64, sync_interval: Duration) -> Self {
        let clock = Arc::new(ManualClock::new(EPOCH_MS + millis(now)));
        let mut tables = Tables::with_clock(format!("n{index}"), clock.clone());
        // A simulated node runs no task across a restart: from the start it
        // is the authority on its entries, and old copies get tombstoned.
        tables.settle();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (index as u64) ^ millis(now));
        let spread = u64::try_from(sync_interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let next_sync = now + Duration::from_nanos(rng.random_range(0..spread));
        Self {
            tables,
            clock,
            alive: BTreeMap::new(),
            rng,
            sync_interval,
            next_sync,
            session: 0,
        }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
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
        broadcasts(vec![delta])
    }

    /// Withdraws a task's endpoint; returns the broadcasts.
    pub fn withdraw(&mut self, network: &str, task_id: &str, now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        broadcasts(self.tables.withdraw(network, task_id).into_iter().collect())
    }

    /// What this node would program for `network`: live entries whose owner
    /// membership reports alive.
    pub fn live(&self, network: &str) -> Vec<LiveEndpoint<'_>> {
        self.tables
            .live_endpoints(network, |owner| self.alive.contains_key(owner))
    }

    fn set_clock(&self, now: Duration) {
        self.clock.set(EPOCH_MS + millis(now));
    }
}

impl AppNode for TableNode {
    fn on_member_up(&mut self, member: &MemberId, _now: Duration) -> Vec<AppOutput> {
        self.alive
            .insert(member.node().as_str().to_string(), member.addr());
        Vec::new()
    }

    fn on_member_down(&mut self, member: &MemberId, _now: Duration) -> Vec<AppOutput> {
        self.alive.remove(member.node().as_str());
        Vec::new()
    }

    fn on_broadcast(&mut self, payload: &[u8], now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        let Ok(Message::Deltas(deltas)) = Message::decode(payload) else {
            return Vec::new();
        };
        let answers: Vec<Delta> = deltas
            .into_iter()
            .filter_map(|delta| self.tables.apply(delta).answer)
            .collect();
        broadcasts(answers)
    }

    fn on_stream(&mut self, from: SocketAddr, bytes: &[u8], now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        match Message::decode(bytes) {
            Ok(Message::SyncRequest { session, digest }) => {
                let pages = self.tables.missing_for(&digest, DEFAULT_PAGE_BYTES);
                let count = pages.len();
                pages
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, page)| {
                        let message = Message::SyncPage {
                            session,
                            index: u32::try_from(index).ok()?,
                            last: index + 1 == count,
                            page,
                        };
                        let bytes = Bytes::from(message.encode().ok()?);
                        Some(AppOutput::Stream { to: from, bytes })
                    })
                    .collect()
            }
            Ok(Message::SyncPage { page, .. }) => broadcasts(self.tables.apply_page(page).answers),
            _ => Vec::new(),
        }
    }

    fn on_tick(&mut self, now: Duration) -> Vec<AppOutput> {
        self.set_clock(now);
        self.tables.reap(EPOCH_MS + millis(now));
        if now < self.next_sync || self.alive.is_empty() {
            return Vec::new();
        }
        self.next_sync = now + self.sync_interval;
        let pick = self.rng.random_range(0..self.alive.len());
        let Some(&to) = self.alive.values().nth(pick) else {
            return Vec::new();
        };
        self.session += 1;
        let request = Message::SyncRequest {
            session: self.session,
            digest: self.tables.digest(),
        };
        match request.encode() {
            Ok(bytes) => vec![AppOutput::Stream {
                to,
                bytes: Bytes::from(bytes),
            }],
            Err(_) => Vec::new(),
        }
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
