//! The swarm's gossip keys and their rotation, decided by time so that one
//! Raft write rotates: `swarm update --rotate-gossip-key` adds a key, and
//! what the managers hand out in heartbeats follows from the clock.
//!
//! Key 1 is [`Cluster::gossip_key`] (made by `swarm init`, primary from the
//! start); rotated keys live in a [`GossipKeyring`], its own store object,
//! so the cluster object keeps its shape. A key added at `t`:
//! - is handed out at once as an accepted key (nodes can open messages
//!   sealed with it, but nobody seals with it yet);
//! - becomes the primary at `t + KEY_PROMOTE_AFTER_MS`, when every live node
//!   has had several heartbeats to learn it;
//! - and the key it replaced is still handed out for `KEY_RETIRE_AFTER_MS`
//!   after that, so messages sealed just before the switch still open.
//!
//! Managers judge the phases by their own clocks; a skew of a second or two
//! between managers moves the switch by as much, within those margins.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::store::{kind, Object};

/// How long a new key is only accepted before it becomes the primary (ten
/// heartbeats: every live node has learned it by then).
pub const KEY_PROMOTE_AFTER_MS: u64 = 5_000;
/// How long a replaced key is still handed out after its successor became
/// the primary: messages sealed just before the switch still open, and a
/// node that missed a few heartbeats catches up.
pub const KEY_RETIRE_AFTER_MS: u64 = 10_000;
/// How long a removed node's id stays on the refused list handed to every
/// node: well past the time the keys it held are retired, after which it
/// can open nothing anyway.
pub const REFUSE_REMOVED_FOR_MS: u64 = 4 * (KEY_PROMOTE_AFTER_MS + KEY_RETIRE_AFTER_MS);
/// At most this many removed nodes are remembered (the newest).
const MAX_REFUSED: usize = 4_096;
/// The id of [`Cluster::gossip_key`].
pub const INITIAL_GOSSIP_KEY_ID: u32 = 1;

/// A key added by a rotation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGossipKey {
    pub id: u32,
    /// 32 random bytes.
    pub key: Vec<u8>,
    /// When the rotation was written (Unix milliseconds, the leader's clock).
    pub added_at_ms: u64,
}

impl fmt::Debug for StoredGossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredGossipKey")
            .field("id", &self.id)
            .field("added_at_ms", &self.added_at_ms)
            .finish_non_exhaustive()
    }
}

/// One gossip key as nodes get it in heartbeat answers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKey {
    pub id: u32,
    /// 32 bytes, hex-encoded.
    pub key: String,
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GossipKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The rotated keys, one object of kind [`kind::GOSSIP_KEYRING`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeyring {
    #[serde(default)]
    pub keys: Vec<StoredGossipKey>,
    /// Removed nodes' ids and when they were removed (Unix ms): nodes refuse
    /// their gossip at once (see [`GossipKeyring::refused_at`]).
    #[serde(default)]
    pub removed: BTreeMap<String, u64>,
}

/// What a rotation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The new key's id.
    pub id: u32,
    /// When it becomes the primary (Unix milliseconds).
    pub primary_from_ms: u64,
}

/// The keyring's id in its kind (there is one).
pub const GOSSIP_KEYRING_ID: &str = "keyring";

impl Object for GossipKeyring {
    const KIND: &'static str = kind::GOSSIP_KEYRING;
    fn id(&self) -> &str {
        GOSSIP_KEYRING_ID
    }
}

impl GossipKeyring {
    /// Adds `key` at `now_ms` with the next id, and forgets rotated keys that
    /// are no longer handed out.
    pub fn rotate(&mut self, cluster: &Cluster, key: [u8; 32], now_ms: u64) -> Rotation {
        let id = all_keys(cluster, self)
            .iter()
            .map(|k| k.id)
            .max()
            .unwrap_or(0)
            + 1;
        self.keys.push(StoredGossipKey {
            id,
            key: key.to_vec(),
            added_at_ms: now_ms,
        });
        let live: Vec<u32> = phases(&all_keys(cluster, self), now_ms)
            .into_iter()
            .map(|(k, _)| k.id)
            .collect();
        self.keys.retain(|k| live.contains(&k.id));
        Rotation {
            id,
            primary_from_ms: now_ms + KEY_PROMOTE_AFTER_MS,
        }
    }
}

impl GossipKeyring {
    /// Records that `node_id` was removed at `now_ms`, so every node refuses
    /// its gossip from now on, and forgets removals old enough that the
    /// keys they held are retired.
    pub fn refuse(&mut self, node_id: &str, now_ms: u64) {
        self.removed.insert(node_id.to_string(), now_ms);
        self.removed
            .retain(|_, at| now_ms < at.saturating_add(REFUSE_REMOVED_FOR_MS));
        while self.removed.len() > MAX_REFUSED {
            let oldest = self
                .removed
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.removed.remove(&id),
                None => break,
            };
        }
    }

    /// The node ids whose gossip nodes must refuse at `now_ms`.
    pub fn refused_at(&self, now_ms: u64) -> Vec<String> {
        self.removed
            .iter()
            .filter(|(_, at)| now_ms < at.saturating_add(REFUSE_REMOVED_FOR_MS))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The keys nodes must hold at `now_ms` and the id of the one to seal
/// with; `None` when the swarm has no gossip key at all.
pub fn gossip_config_at(
    cluster: &Cluster,
    keyring: &GossipKeyring,
    now_ms: u64,
) -> Option<(Vec<GossipKey>, u32)> {
    let keys = all_keys(cluster, keyring);
    let live = phases(&keys, now_ms);
    let primary = live
        .iter()
        .filter(|(_, promoted)| *promoted)
        .map(|(k, _)| k.id)
        .max()
        // Only without key 1 can no key be promoted yet: seal with the oldest.
        .or_else(|| live.iter().map(|(k, _)| k.id).min())?;
    let wire = live
        .into_iter()
        .map(|(k, _)| GossipKey {
            id: k.id,
            key: crate::hex::encode(&k.key),
        })
        .collect();
    Some((wire, primary))
}

/// Key 1 (when the cluster has one) and the rotated keys, by id.
fn all_keys(cluster: &Cluster, keyring: &GossipKeyring) -> Vec<StoredGossipKey> {
    let initial = (!cluster.gossip_key.is_empty()).then(|| StoredGossipKey {
        id: INITIAL_GOSSIP_KEY_ID,
        key: cluster.gossip_key.clone(),
        added_at_ms: cluster.created_at.saturating_mul(1000),
    });
    let mut keys: Vec<StoredGossipKey> = initial
        .into_iter()
        .chain(
            keyring
                .keys
                .iter()
                .filter(|k| k.id != INITIAL_GOSSIP_KEY_ID)
                .cloned(),
        )
        .collect();
    keys.sort_by_key(|k| k.id);
    keys
}

/// When a key becomes the primary (key 1: from the start).
fn promoted_at(key: &StoredGossipKey) -> u64 {
    if key.id == INITIAL_GOSSIP_KEY_ID {
        0
    } else {
        key.added_at_ms.saturating_add(KEY_PROMOTE_AFTER_MS)
    }
}

/// The keys still handed out at `now_ms` (sorted by id), each with whether
/// it has been promoted. A key is replaced when the first key newer than it
/// is promoted, and dropped `KEY_RETIRE_AFTER_MS` after that.
fn phases(keys: &[StoredGossipKey], now_ms: u64) -> Vec<(&StoredGossipKey, bool)> {
    keys.iter()
        .enumerate()
        .filter(|(i, _)| {
            let replaced_at = keys[i + 1..].iter().map(promoted_at).min();
            replaced_at.is_none_or(|r| now_ms < r.saturating_add(KEY_RETIRE_AFTER_MS))
        })
        .map(|(_, k)| (k, promoted_at(k) <= now_ms))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED_S: u64 = 1_000;
    const T0: u64 = 5_000_000;

    fn cluster() -> Cluster {
        Cluster {
            id: "c".into(),
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            worker_secret: String::new(),
            manager_secret: String::new(),
            cert_expiry_secs: 1,
            autolock: false,
            unlock_key: None,
            gossip_key: vec![1; 32],
            strategy: Default::default(),
            max_replicas: crate::objects::DEFAULT_MAX_REPLICAS,
            task_history_limit: crate::objects::DEFAULT_TASK_HISTORY_LIMIT,
            ingress_removed: false,
            created_at: CREATED_S,
        }
    }

    fn ids(c: &Cluster, ring: &GossipKeyring, now: u64) -> (Vec<u32>, u32) {
        let (keys, primary) = gossip_config_at(c, ring, now).unwrap();
        (keys.iter().map(|k| k.id).collect(), primary)
    }

    #[test]
    fn the_initial_key_is_key_1_and_primary() {
        let c = cluster();
        let (keys, primary) = gossip_config_at(&c, &GossipKeyring::default(), T0).unwrap();
        assert_eq!(primary, 1);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key, "01".repeat(32));
        let none = Cluster {
            gossip_key: Vec::new(),
            ..cluster()
        };
        assert_eq!(gossip_config_at(&none, &GossipKeyring::default(), T0), None);
    }

    #[test]
    fn removed_nodes_are_refused_until_their_keys_are_long_retired() {
        let mut ring = GossipKeyring::default();
        ring.refuse("gone", T0);
        assert_eq!(ring.refused_at(T0), vec!["gone".to_string()]);
        let retired = T0 + KEY_PROMOTE_AFTER_MS + KEY_RETIRE_AFTER_MS;
        assert_eq!(ring.refused_at(retired), vec!["gone".to_string()]);
        assert!(ring.refused_at(T0 + REFUSE_REMOVED_FOR_MS).is_empty());
        // A later removal forgets the old one.
        ring.refuse("later", T0 + REFUSE_REMOVED_FOR_MS);
        assert_eq!(ring.removed.len(), 1);
        assert!(ring.removed.contains_key("later"));
    }

    #[test]
    fn a_rotation_accepts_then_promotes_then_retires() {
        let c = cluster();
        let mut ring = GossipKeyring::default();
        let r = ring.rotate(&c, [2; 32], T0);
        assert_eq!(
            r,
            Rotation {
                id: 2,
                primary_from_ms: T0 + KEY_PROMOTE_AFTER_MS
            }
        );
        // Handed out at once, not yet sealed with.
        assert_eq!(ids(&c, &ring, T0), (vec![1, 2], 1));
        assert_eq!(
            ids(&c, &ring, T0 + KEY_PROMOTE_AFTER_MS - 1),
            (vec![1, 2], 1)
        );
        // Primary exactly at the promotion time; the old key stays.
        let promoted = T0 + KEY_PROMOTE_AFTER_MS;
        assert_eq!(ids(&c, &ring, promoted), (vec![1, 2], 2));
        assert_eq!(
            ids(&c, &ring, promoted + KEY_RETIRE_AFTER_MS - 1),
            (vec![1, 2], 2)
        );
        // Dropped exactly KEY_RETIRE_AFTER_MS after the promotion.
        assert_eq!(ids(&c, &ring, promoted + KEY_RETIRE_AFTER_MS), (vec![2], 2));
        let (keys, _) = gossip_config_at(&c, &ring, promoted + KEY_RETIRE_AFTER_MS).unwrap();
        assert_eq!(keys[0].key, "02".repeat(32));
    }

    #[test]
    fn quick_successive_rotations_keep_every_key_that_may_still_be_in_flight() {
        let c = cluster();
        let mut ring = GossipKeyring::default();
        ring.rotate(&c, [2; 32], T0);
        let r3 = ring.rotate(&c, [3; 32], T0 + 2_000);
        assert_eq!(r3.id, 3);
        assert_eq!(ids(&c, &ring, T0 + 2_000), (vec![1, 2, 3], 1));
        assert_eq!(ids(&c, &ring, T0 + 5_000), (vec![1, 2, 3], 2));
        assert_eq!(ids(&c, &ring, T0 + 7_000), (vec![1, 2, 3], 3));
        // Key 1 was replaced at T0+5s, key 2 at T0+7s.
        let (replaced_1, replaced_2) = (T0 + 5_000, T0 + 7_000);
        assert_eq!(
            ids(&c, &ring, replaced_1 + KEY_RETIRE_AFTER_MS),
            (vec![2, 3], 3)
        );
        assert_eq!(
            ids(&c, &ring, replaced_2 + KEY_RETIRE_AFTER_MS),
            (vec![3], 3)
        );
    }

    #[test]
    fn rotating_forgets_retired_keys_but_never_reuses_an_id() {
        let c = cluster();
        let mut ring = GossipKeyring::default();
        ring.rotate(&c, [2; 32], T0);
        ring.rotate(&c, [3; 32], T0 + 100_000);
        let later = T0 + 200_000;
        let r = ring.rotate(&c, [4; 32], later);
        assert_eq!(r.id, 4);
        // Key 2 retired long ago and is forgotten; key 3 is the primary.
        assert_eq!(
            ring.keys.iter().map(|k| k.id).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(ids(&c, &ring, later), (vec![3, 4], 3));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let mut ring = GossipKeyring::default();
        ring.rotate(&cluster(), [0xab; 32], T0);
        let debug = format!("{ring:?}");
        assert!(!debug.contains("171"), "{debug}");
        let (keys, _) = gossip_config_at(&cluster(), &ring, T0).unwrap();
        assert!(!format!("{keys:?}").contains("abab"));
    }

    #[test]
    fn a_keyring_round_trips_through_json() {
        let mut ring = GossipKeyring::default();
        ring.rotate(&cluster(), [7; 32], T0);
        let json = serde_json::to_value(&ring).unwrap();
        assert_eq!(serde_json::from_value::<GossipKeyring>(json).unwrap(), ring);
        assert_eq!(
            serde_json::from_str::<GossipKeyring>("{}").unwrap(),
            GossipKeyring::default()
        );
    }
}
