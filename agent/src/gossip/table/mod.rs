//! Per-network endpoint tables: every agent's replica of which task has which
//! address where, merged from gossip by last-writer-wins per key, so that any
//! order, duplication or loss of deltas ends in the same table once
//! anti-entropy ([`Tables::missing_for`]) has run.
//!
//! Each entry (network, task id) has one owner, the node running the task; only
//! it writes the entry. An owner is also the authority on its own entries: a
//! stale copy of one (from its previous run, or resurrected after its tombstone
//! was reaped) that reaches it is answered with a newer tombstone, and its sync
//! pages let peers drop such copies (see [`Tables::settle`]).
//!
//! The table never deletes a dead node's entries: [`Tables::live_endpoints`]
//! filters them out with the caller's view of membership, so they come back
//! when the node does. Only [`Tables::forget_owner`] (node removed from the
//! swarm) drops them.
//!
//! Every delta and authority carries its owner's signature ([`notary`]); a
//! replica stores nothing that does not check out against the owner's
//! certificate, so no other node can write or tombstone an owner's entries.
//! Tombstones a replica derives itself are local: never sent, never counted
//! in its digest.

mod notary;
mod record;
mod sync;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use notary::{CertNotary, HashNotary, NoKeys, Notary, Verdict};
pub use record::{
    Change, Clock, Delta, EndpointRecord, ManualClock, NetworkId, NodeId, Proof, Protocol,
    PublishedPort, SystemClock, TaskId, Version,
};
pub use sync::{
    pack_deltas, Authority, Digest, NetworkCount, OwnerSummary, PageApplied, SyncPage,
    DEFAULT_PAGE_BYTES,
};

/// How long a tombstone is kept after its withdrawal, as NetworkDB does.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(30 * 60);

/// The outcome of applying one delta.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The delta was newer than what the table held and is now stored:
    /// relay it, and reconcile the data plane.
    pub changed: bool,
    /// A correction this node, as the entry's owner, must gossip: the delta
    /// was a stale copy of one of its own entries.
    pub answer: Option<Delta>,
    /// Why the delta was refused: its owner's key is unknown here (a sync
    /// with the owner brings its certificate), or its proof is invalid.
    pub refused: Option<Verdict>,
}

/// Deltas and authorities refused for their proofs, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecords {
    /// Signed with a key this node had no certificate for.
    pub unknown_key: u64,
    /// Unsigned, signed by another node than the owner, expired or altered.
    pub invalid: u64,
}

/// Size of one network's table, for `shoal members`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSize {
    pub live: usize,
    pub tombstones: usize,
}

/// An entry to program into the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveEndpoint<'a> {
    pub owner: &'a str,
    pub record: &'a EndpointRecord,
}

/// This node's replica of every network's endpoint table.
pub struct Tables {
    self_node: NodeId,
    /// The last version this node issued (epoch fixed at start, bumped only
    /// past a clock that went backwards).
    last: Version,
    clock: Arc<dyn Clock>,
    tombstone_ttl_ms: u64,
    /// network -> task id -> latest delta.
    entries: BTreeMap<NetworkId, BTreeMap<TaskId, Delta>>,
    /// What this run of the agent publishes: the truth about its own entries.
    mine: BTreeMap<(NetworkId, TaskId), EndpointRecord>,
    /// Whether this run has re-published its tasks (see [`Tables::settle`]).
    settled: bool,
    /// Owners removed from the swarm; their deltas are ignored.
    forgotten: BTreeSet<NodeId>,
    /// Signs this node's deltas and checks the others'.
    notary: Box<dyn Notary>,
    refused: RefusedRecords,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("self_node", &self.self_node)
            .field("last", &self.last)
            .field("settled", &self.settled)
            .field("sizes", &self.sizes())
            .finish_non_exhaustive()
    }
}

impl Tables {
    /// Empty tables for `self_node`, on the host's clock, with an epoch of
    /// now. Not settled: call [`Tables::settle`] once the agent has
    /// re-published the tasks that survived its restart.
    pub fn new(self_node: impl Into<NodeId>) -> Self {
        Self::with_clock(self_node, Arc::new(SystemClock))
    }

    /// Like [`Tables::new`] on the given clock (the epoch is its now).
    pub fn with_clock(self_node: impl Into<NodeId>, clock: Arc<dyn Clock>) -> Self {
        let epoch = clock.now_ms();
        Tables {
            self_node: self_node.into(),
            last: Version { epoch, seq: 0 },
            clock,
            tombstone_ttl_ms: duration_ms(DEFAULT_TOMBSTONE_TTL),
            entries: BTreeMap::new(),
            mine: BTreeMap::new(),
            settled: false,
            forgotten: BTreeSet::new(),
            notary: Box::new(NoKeys),
            refused: RefusedRecords::default(),
        }
    }

    /// Signs and checks with `notary` (tables without one sign nothing and
    /// refuse every peer's delta).
    pub fn with_notary(mut self, notary: Box<dyn Notary>) -> Self {
        self.notary = notary;
        self
    }

    /// Takes a certificate a peer handed on (see [`Notary::learn`]).
    pub fn learn(&mut self, certificate: &[u8]) -> bool {
        let now = self.clock.now_ms();
        self.notary.learn(certificate, now)
    }

    /// The certificates that vouch for the deltas and authorities of
    /// `pages`, one per owner key, for the peer that gets the pages.
    pub fn certificates_for(&self, pages: &[SyncPage]) -> Vec<Vec<u8>> {
        let mut keys = BTreeSet::new();
        for page in pages {
            let proofs = page
                .deltas
                .iter()
                .map(|d| (&d.owner, &d.proof))
                .chain(page.authority.iter().map(|a| (&a.owner, &a.proof)));
            for (owner, proof) in proofs {
                if let Proof::Signed { key, .. } = proof {
                    keys.insert((owner.clone(), *key));
                }
            }
        }
        keys.into_iter()
            .filter_map(|(owner, key)| self.notary.certificate(&owner, &key))
            .collect()
    }

    /// Deltas and authorities refused so far for their proofs.
    pub fn refused(&self) -> RefusedRecords {
        self.refused
    }

    /// Signs with a renewed certificate and key, and signs this node's
    /// entries again with them; returns the deltas to gossip.
    pub fn rekey(&mut self, cert_pem: &str, key_pem: &str) -> Result<Vec<Delta>, String> {
        self.notary
            .rekey(cert_pem, key_pem)
            .map_err(|e| e.to_string())?;
        let mine: Vec<((NetworkId, TaskId), EndpointRecord)> = self
            .mine
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        Ok(mine
            .into_iter()
            .map(|((network, _), record)| self.write(network, Change::Publish(record), None))
            .collect())
    }

    /// Checks a peer's proof for `delta`, counting a refusal.
    fn check(&mut self, delta: &Delta) -> Result<(), Verdict> {
        let now = self.clock.now_ms();
        let verdict = self
            .notary
            .verify(&delta.owner, &delta.proof, &delta.signed_bytes(), now);
        self.count(verdict)
    }

    fn count(&mut self, verdict: Verdict) -> Result<(), Verdict> {
        match verdict {
            Verdict::Valid => return Ok(()),
            Verdict::UnknownKey => self.refused.unknown_key += 1,
            Verdict::Invalid => self.refused.invalid += 1,
        }
        Err(verdict)
    }

    /// How long tombstones are kept before [`Tables::reap`] drops them.
    pub fn with_tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl_ms = duration_ms(ttl);
        self
    }

    pub fn self_node(&self) -> &str {
        &self.self_node
    }

    /// The epoch of this node's latest write.
    pub fn epoch(&self) -> u64 {
        self.last.epoch
    }

    /// Publishes (or updates) this node's endpoint for a task on `network`.
    /// Returns the delta to gossip.
    pub fn publish(&mut self, network: impl Into<NetworkId>, record: EndpointRecord) -> Delta {
        let network = network.into();
        let key = (network.clone(), record.task_id.clone());
        self.mine.insert(key, record.clone());
        self.write(network, Change::Publish(record), None)
    }

    /// Withdraws this node's endpoint for a task; `None` when this node holds
    /// no live entry of its own for it. Returns the tombstone to gossip.
    pub fn withdraw(&mut self, network: &str, task_id: &str) -> Option<Delta> {
        let key = (network.to_string(), task_id.to_string());
        let mine = self.mine.remove(&key);
        let current = self.get(network, task_id);
        let own_live = current
            .filter(|d| d.owner == self.self_node)
            .and_then(|d| d.change.record());
        let ip = mine.as_ref().or(own_live)?.ip;
        let change = Change::Withdraw {
            task_id: task_id.to_string(),
            ip,
        };
        Some(self.write(network.to_string(), change, None))
    }

    /// Declares that this run has re-published every task it still runs.
    /// From now on the node is the authority on its entries: those it did not
    /// re-publish (left by its previous run) are withdrawn, and the returned
    /// tombstones must be gossiped. Idempotent.
    pub fn settle(&mut self) -> Vec<Delta> {
        self.settled = true;
        let stale: Vec<(NetworkId, TaskId, Ipv4Addr)> = self
            .iter()
            .filter(|d| d.owner == self.self_node && !d.is_tombstone())
            .filter(|d| !self.is_mine(&d.network, d.task_id()))
            .map(|d| (d.network.clone(), d.task_id().to_string(), d.change.ip()))
            .collect();
        stale
            .into_iter()
            .map(|(network, task_id, ip)| {
                self.write(network, Change::Withdraw { task_id, ip }, None)
            })
            .collect()
    }

    /// Merges a delta from a peer: kept if it supersedes the stored one
    /// (idempotent, commutative) and its owner signed it; stale deltas are
    /// ignored.
    pub fn apply(&mut self, delta: Delta) -> Applied {
        if self.forgotten.contains(&delta.owner) {
            return Applied::default();
        }
        // Checked only when it would change something: copies of what is
        // held come again and again.
        if self
            .get(&delta.network, delta.task_id())
            .is_some_and(|held| !delta.supersedes(held))
        {
            return Applied::default();
        }
        if let Err(verdict) = self.check(&delta) {
            return Applied {
                refused: Some(verdict),
                ..Applied::default()
            };
        }
        let own = delta.owner == self.self_node;
        if own && (self.settled || self.is_mine(&delta.network, delta.task_id())) {
            return self.apply_own_echo(delta);
        }
        Applied {
            changed: self.store(delta),
            ..Applied::default()
        }
    }

    /// A copy of one of our own entries came back. If it is newer than what
    /// we hold, it is stale by definition (we are the only writer): answer
    /// with our current record or a tombstone, versioned above it.
    fn apply_own_echo(&mut self, delta: Delta) -> Applied {
        let held = self.get(&delta.network, delta.task_id());
        if held.is_some_and(|h| !delta.supersedes(h)) {
            return Applied::default();
        }
        let key = (delta.network.clone(), delta.task_id().to_string());
        let change = match self.mine.get(&key) {
            Some(record) => Change::Publish(record.clone()),
            // A tombstone of an entry we no longer publish says what we would.
            None if delta.is_tombstone() => {
                return Applied {
                    changed: self.store(delta),
                    ..Applied::default()
                };
            }
            None => Change::Withdraw {
                task_id: key.1.clone(),
                ip: delta.change.ip(),
            },
        };
        let answer = self.write(key.0, change, Some(delta.version));
        Applied {
            answer: Some(answer),
            ..Applied::default()
        }
    }

    /// Writes an entry of this node's, versioned above everything it issued,
    /// above the stored entry, and above `floor`.
    fn write(&mut self, network: NetworkId, change: Change, floor: Option<Version>) -> Delta {
        let held = self
            .get(&network, change.task_id())
            .map(|d| d.version)
            .unwrap_or_default();
        let version = self
            .last
            .next()
            .max(held.next())
            .max(floor.unwrap_or_default().next());
        self.last = version;
        let mut delta = Delta {
            network,
            owner: self.self_node.clone(),
            version,
            written_at: self.clock.now_ms(),
            change,
            proof: Proof::Local,
        };
        delta.proof = self.notary.sign(&delta.signed_bytes());
        self.store(delta.clone());
        delta
    }

    /// Stores `delta` if it supersedes the entry of its key.
    fn store(&mut self, delta: Delta) -> bool {
        let table = self.entries.entry(delta.network.clone()).or_default();
        match table.get_mut(delta.task_id()) {
            Some(held) if !delta.supersedes(held) => false,
            Some(held) => {
                *held = delta;
                true
            }
            None => {
                table.insert(delta.task_id().to_string(), delta);
                true
            }
        }
    }

    /// Drops tombstones older than the TTL; returns how many.
    pub fn reap(&mut self, now_ms: u64) -> usize {
        let ttl = self.tombstone_ttl_ms;
        let mut reaped = 0;
        for table in self.entries.values_mut() {
            let before = table.len();
            table.retain(|_, d| !d.is_tombstone() || d.written_at.saturating_add(ttl) > now_ms);
            reaped += before - table.len();
        }
        self.entries.retain(|_, table| !table.is_empty());
        reaped
    }

    /// Makes `owners` (the managers' list of nodes removed lately) the
    /// owners whose deltas are ignored, dropping the entries of those newly
    /// on it. Returns how many entries were dropped.
    pub fn refuse_owners(&mut self, owners: &BTreeSet<String>) -> usize {
        let new: Vec<&String> = owners
            .iter()
            .filter(|o| !self.forgotten.iter().any(|f| f.as_str() == o.as_str()))
            .collect();
        let dropped = new.into_iter().map(|o| self.forget_owner(o)).sum();
        self.forgotten.retain(|o| owners.contains(o.as_str()));
        dropped
    }

    /// Drops every entry of a node removed from the swarm, and ignores its
    /// deltas from now on. Returns how many entries were dropped.
    pub fn forget_owner(&mut self, owner: &str) -> usize {
        if self.self_node == owner {
            return 0;
        }
        self.forgotten.insert(owner.into());
        let mut dropped = 0;
        for table in self.entries.values_mut() {
            let before = table.len();
            table.retain(|_, d| d.owner != owner);
            dropped += before - table.len();
        }
        self.entries.retain(|_, table| !table.is_empty());
        dropped
    }

    /// The entries of `network` to program: live (not tombstones) and owned
    /// by a node that `alive` says is up (this node always is). Two live
    /// entries claiming one IP (a stale one, from an owner not yet declared
    /// dead) resolve to the most recently written, the same on every node.
    pub fn live_endpoints(
        &self,
        network: &str,
        alive: impl Fn(&str) -> bool,
    ) -> Vec<LiveEndpoint<'_>> {
        let mut by_ip: BTreeMap<Ipv4Addr, &Delta> = BTreeMap::new();
        let live = self
            .entries
            .get(network)
            .into_iter()
            .flat_map(|table| table.values())
            .filter(|d| !d.is_tombstone())
            .filter(|d| d.owner == self.self_node || alive(&d.owner));
        for delta in live {
            let slot = by_ip.entry(delta.change.ip()).or_insert(delta);
            if recency(delta) > recency(slot) {
                *slot = delta;
            }
        }
        by_ip
            .into_values()
            .filter_map(|d| {
                d.change.record().map(|record| LiveEndpoint {
                    owner: &d.owner,
                    record,
                })
            })
            .collect()
    }

    /// The networks this replica holds entries (or tombstones) for.
    pub fn networks(&self) -> impl Iterator<Item = &NetworkId> + '_ {
        self.entries.keys()
    }

    /// Live entries and tombstones per network (dead owners included).
    pub fn sizes(&self) -> BTreeMap<NetworkId, TableSize> {
        self.entries
            .iter()
            .map(|(network, table)| {
                let tombstones = table.values().filter(|d| d.is_tombstone()).count();
                let size = TableSize {
                    live: table.len() - tombstones,
                    tombstones,
                };
                (network.clone(), size)
            })
            .collect()
    }

    /// Addresses still held by tombstones: IPAM must not hand them out
    /// until the tombstones are reaped, or stale neighbour entries could
    /// point a reused address at the wrong host.
    pub fn held_ips(&self) -> BTreeSet<(NetworkId, Ipv4Addr)> {
        self.iter()
            .filter(|d| d.is_tombstone())
            .map(|d| (d.network.clone(), d.change.ip()))
            .collect()
    }

    /// The stored delta of one key, tombstones included.
    pub fn get(&self, network: &str, task_id: &str) -> Option<&Delta> {
        self.entries.get(network)?.get(task_id)
    }

    /// Every stored delta, ordered by (network, task id).
    pub fn iter(&self) -> impl Iterator<Item = &Delta> + '_ {
        self.entries.values().flat_map(|table| table.values())
    }

    fn is_mine(&self, network: &str, task_id: &str) -> bool {
        self.mine
            .contains_key(&(network.to_string(), task_id.to_string()))
    }
}

/// Which of two live entries claiming one IP is the more recent write.
fn recency(d: &Delta) -> (u64, Version, &str, &str) {
    (d.written_at, d.version, &d.owner, d.task_id())
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
