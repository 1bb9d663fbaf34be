//! Anti-entropy between two replicas: a digest summarises a replica per
//! owner; the other side answers with pages of every delta the digest shows
//! missing, tombstones included, each page bounded in bytes so a full-state
//! sync of any size streams in chunks.
//!
//! A settled owner also sends its own entries as authoritative pages: each
//! covers a key range and lists all of the owner's entries in it, so the peer
//! turns its copies of the owner's entries that the page does not list (left
//! by a previous run of the owner, or resurrected after a reaped tombstone)
//! into tombstones. NetworkDB has no such repair, which is one reason it does
//! not always converge.

use std::collections::{BTreeMap, BTreeSet};

use ring::digest;
use serde::{Deserialize, Serialize};

use super::record::{Change, Delta, NetworkId, NodeId, Proof, TaskId, Version};
use super::Tables;

/// Page size used unless the caller asks for another.
pub const DEFAULT_PAGE_BYTES: usize = 64 * 1024;
/// Room kept in a page for its framing and authority header.
const PAGE_RESERVE: usize = 1024;

/// A replica's summary of one owner's entries. Equal summaries mean equal
/// entries (up to a 64-bit hash collision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerSummary {
    /// Highest version held: the owner's epoch and latest sequence seen.
    pub max: Version,
    pub live: u32,
    pub tombstones: u32,
    /// Order-independent hash of every (key, version, tombstone) held.
    pub hash: u64,
}

/// Entries of one network, for diagnostics and convergence metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCount {
    pub live: u32,
    pub tombstones: u32,
}

/// What a replica holds, in a few dozen bytes per owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub owners: BTreeMap<NodeId, OwnerSummary>,
    pub networks: BTreeMap<NetworkId, NetworkCount>,
}

/// An owner's statement, in one page, that the page lists every entry it has
/// with a key in (`after`, `through`] (unbounded where `None`), as of `as_of`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    pub owner: NodeId,
    pub as_of: Version,
    /// The owner's clock when the pages were cut; stamps the tombstones the
    /// peer derives, so they are reaped on schedule.
    pub at: u64,
    pub after: Option<(NetworkId, TaskId)>,
    pub through: Option<(NetworkId, TaskId)>,
    /// The owner's signature over the fields above and the keys and
    /// versions of its deltas in the page ([`Authority::signed_bytes`]), so
    /// a relay can neither forge an authority nor drop entries from one.
    pub proof: Proof,
}

/// What an owner signs for an authority.
#[derive(Serialize)]
struct SignedAuthority<'a> {
    domain: &'static str,
    owner: &'a str,
    as_of: Version,
    at: u64,
    after: &'a Option<(NetworkId, TaskId)>,
    through: &'a Option<(NetworkId, TaskId)>,
    listed: [u8; 32],
}

impl Authority {
    /// The bytes the owner signs, with the owner's deltas listed in `page`.
    pub fn signed_bytes(&self, page: &[Delta]) -> Vec<u8> {
        let mut listed = digest::Context::new(&digest::SHA256);
        for delta in page.iter().filter(|d| d.owner == self.owner) {
            let key = postcard::to_allocvec(&(&delta.network, delta.task_id(), delta.version))
                .unwrap_or_default();
            listed.update(&(key.len() as u64).to_le_bytes());
            listed.update(&key);
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(listed.finish().as_ref());
        postcard::to_allocvec(&SignedAuthority {
            domain: "shoal-gossip-authority-v1",
            owner: &self.owner,
            as_of: self.as_of,
            at: self.at,
            after: &self.after,
            through: &self.through,
            listed: hash,
        })
        .unwrap_or_default()
    }

    pub fn covers(&self, network: &str, task_id: &str) -> bool {
        let key = (network, task_id);
        let above = self
            .after
            .as_ref()
            .is_none_or(|(n, t)| key > (n.as_str(), t.as_str()));
        let below = self
            .through
            .as_ref()
            .is_none_or(|(n, t)| key <= (n.as_str(), t.as_str()));
        above && below
    }
}

/// One chunk of a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPage {
    pub deltas: Vec<Delta>,
    pub authority: Option<Authority>,
}

/// The outcome of applying a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageApplied {
    /// Entries stored or turned into tombstones.
    pub changed: usize,
    /// Corrections this node must gossip (see [`super::Applied::answer`]).
    pub answers: Vec<Delta>,
    /// The owners of deltas and authorities refused for their proofs, and
    /// why.
    pub refused: Vec<(NodeId, super::Verdict)>,
}

impl Tables {
    /// This replica's summary, to send to a peer.
    pub fn digest(&self) -> Digest {
        let mut digest = Digest::default();
        for delta in self.iter().filter(|d| d.proof != Proof::Local) {
            let owner = match digest.owners.get_mut(&delta.owner) {
                Some(summary) => summary,
                None => digest.owners.entry(delta.owner.clone()).or_default(),
            };
            let network = match digest.networks.get_mut(&delta.network) {
                Some(count) => count,
                None => digest.networks.entry(delta.network.clone()).or_default(),
            };
            owner.max = owner.max.max(delta.version);
            owner.hash = owner.hash.wrapping_add(entry_hash(delta));
            if delta.is_tombstone() {
                owner.tombstones = owner.tombstones.saturating_add(1);
                network.tombstones = network.tombstones.saturating_add(1);
            } else {
                owner.live = owner.live.saturating_add(1);
                network.live = network.live.saturating_add(1);
            }
        }
        digest
    }

    /// Everything a peer with digest `peer` lacks, as pages of about
    /// `page_bytes` encoded bytes (at least one delta each): for each owner
    /// whose summary differs, all of that owner's entries. Once settled, this
    /// node's own entries go as authoritative pages.
    pub fn missing_for(&self, peer: &Digest, page_bytes: usize) -> Vec<SyncPage> {
        let ours = self.digest().owners;
        let mut by_owner: BTreeMap<&str, Vec<&Delta>> = BTreeMap::new();
        // Local tombstones stay here: no peer could check them.
        for delta in self.iter().filter(|d| d.proof != Proof::Local) {
            by_owner.entry(&delta.owner).or_default().push(delta);
        }
        let mut pages = Vec::new();
        if self.settled {
            let own = by_owner.remove(self.self_node.as_str()).unwrap_or_default();
            if peer.owners.get(&self.self_node) != ours.get(&self.self_node) {
                pages = self.authority_pages(&own, page_bytes);
            }
        }
        let lacking = by_owner
            .into_iter()
            .filter(|(owner, _)| peer.owners.get(*owner) != ours.get(*owner))
            .flat_map(|(_, deltas)| deltas)
            .cloned();
        let budget = page_bytes.saturating_sub(PAGE_RESERVE);
        pages.extend(
            pack_deltas(lacking, budget)
                .into_iter()
                .map(|deltas| SyncPage {
                    deltas,
                    authority: None,
                }),
        );
        pages
    }

    fn authority_pages(&self, own: &[&Delta], page_bytes: usize) -> Vec<SyncPage> {
        let held = own.iter().map(|d| d.version).max().unwrap_or_default();
        let authority = Authority {
            owner: self.self_node.clone(),
            as_of: held.max(self.last),
            at: self.clock.now_ms(),
            after: None,
            through: None,
            proof: Proof::Local,
        };
        let budget = page_bytes.saturating_sub(PAGE_RESERVE);
        let chunks = pack_deltas(own.iter().map(|d| (*d).clone()), budget);
        if chunks.is_empty() {
            return vec![SyncPage {
                authority: Some(self.signed(authority, &[])),
                deltas: Vec::new(),
            }];
        }
        let count = chunks.len();
        let mut after = None;
        let mut pages = Vec::with_capacity(count);
        for (i, deltas) in chunks.into_iter().enumerate() {
            let through = match deltas.last() {
                Some(last) if i + 1 < count => Some(key_of(last)),
                _ => None,
            };
            let authority = Authority {
                after: after.take(),
                through: through.clone(),
                ..authority.clone()
            };
            pages.push(SyncPage {
                authority: Some(self.signed(authority, &deltas)),
                deltas,
            });
            after = through;
        }
        pages
    }

    fn signed(&self, mut authority: Authority, page: &[Delta]) -> Authority {
        authority.proof = self.notary.sign(&authority.signed_bytes(page));
        authority
    }

    /// Merges a page from a peer. An authoritative page (whose owner's
    /// signature checks out) also turns the owner's entries it covers but
    /// does not list into (local) tombstones.
    pub fn apply_page(&mut self, page: SyncPage) -> PageApplied {
        let mut out = PageApplied::default();
        let authority = match page.authority {
            Some(authority) if authority.owner != self.self_node => {
                let now = self.clock.now_ms();
                let message = authority.signed_bytes(&page.deltas);
                let verdict = self
                    .notary
                    .verify(&authority.owner, &authority.proof, &message, now);
                match self.count(verdict) {
                    Ok(()) => Some(authority),
                    Err(verdict) => {
                        out.refused.push((authority.owner, verdict));
                        None
                    }
                }
            }
            other => other,
        };
        let page = SyncPage {
            deltas: page.deltas,
            authority,
        };
        let listed: BTreeSet<(NetworkId, TaskId)> = match &page.authority {
            Some(authority) => page
                .deltas
                .iter()
                .filter(|d| d.owner == authority.owner)
                .map(key_of)
                .collect(),
            None => BTreeSet::new(),
        };
        for delta in page.deltas {
            let owner = delta.owner.clone();
            let applied = self.apply(delta);
            out.changed += usize::from(applied.changed);
            out.answers.extend(applied.answer);
            out.refused
                .extend(applied.refused.map(|verdict| (owner, verdict)));
        }
        if let Some(authority) = page.authority {
            out.changed += self.prune(&authority, &listed);
        }
        out
    }

    fn prune(&mut self, authority: &Authority, listed: &BTreeSet<(NetworkId, TaskId)>) -> usize {
        if authority.owner == self.self_node || self.forgotten.contains(&authority.owner) {
            return 0;
        }
        let stale: Vec<Delta> = self
            .iter()
            .filter(|d| d.owner == authority.owner && !d.is_tombstone())
            .filter(|d| d.version < authority.as_of)
            .filter(|d| authority.covers(&d.network, d.task_id()))
            .filter(|d| !listed.contains(&key_of(d)))
            .map(|d| Delta {
                network: d.network.clone(),
                owner: d.owner.clone(),
                version: authority.as_of,
                written_at: authority.at,
                change: Change::Withdraw {
                    task_id: d.task_id().to_string(),
                    ip: d.change.ip(),
                },
                proof: Proof::Local,
            })
            .collect();
        stale.into_iter().filter(|t| self.store(t.clone())).count()
    }
}

/// Splits deltas into groups whose postcard encoding (as a `Vec<Delta>`)
/// stays within `max_bytes`; a delta larger than that travels alone.
pub fn pack_deltas(deltas: impl IntoIterator<Item = Delta>, max_bytes: usize) -> Vec<Vec<Delta>> {
    const VEC_HEADER: usize = 10;
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut size = VEC_HEADER;
    for delta in deltas {
        let len = delta.encoded_len();
        if !group.is_empty() && size.saturating_add(len) > max_bytes {
            groups.push(std::mem::take(&mut group));
            size = VEC_HEADER;
        }
        size = size.saturating_add(len);
        group.push(delta);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

fn key_of(delta: &Delta) -> (NetworkId, TaskId) {
    (delta.network.clone(), delta.task_id().to_string())
}

/// FNV-1a over the entry's key and version, then a SplitMix64 finish: stable
/// across builds and hosts (unlike std's hasher), and summed per owner.
fn entry_hash(delta: &Delta) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let fields: [&[u8]; 7] = [
        delta.network.as_bytes(),
        &[0xff],
        delta.task_id().as_bytes(),
        &[0xff],
        &delta.version.epoch.to_le_bytes(),
        &delta.version.seq.to_le_bytes(),
        &[u8::from(delta.is_tombstone())],
    ];
    let mut h = OFFSET;
    for byte in fields.iter().flat_map(|f| f.iter()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
