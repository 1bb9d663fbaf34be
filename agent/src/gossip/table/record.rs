//! What the endpoint tables hold and exchange: endpoint records, versions,
//! and the deltas (a write or a tombstone by the entry's owner) that move
//! between agents, with the order that decides which write wins.

use std::cmp::Ordering;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shoal_control::objects::{Endpoint, MacAddr};

pub use crate::gossip::node_id::NodeId;
/// A network's id, as in [`shoal_control::objects::NetworkSpec::id`].
pub type NetworkId = String;
/// A task's id; unique in the swarm, and a task only ever runs on one node.
pub type TaskId = String;

/// The version of an entry: the owner's epoch (fixed per agent start, unix
/// milliseconds at boot) then a sequence number within that epoch, ordered
/// lexicographically, so a restarted owner's new writes beat its old ones.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    pub epoch: u64,
    pub seq: u64,
}

impl Version {
    /// The smallest version greater than `self`.
    pub fn next(self) -> Version {
        match self.seq.checked_add(1) {
            Some(seq) => Version { seq, ..self },
            None => Version {
                epoch: self.epoch.saturating_add(1),
                seq: 0,
            },
        }
    }
}

/// A transport protocol of a published port: the service spec's.
pub use shoal_control::objects::Protocol;

/// A port a service publishes on every node, forwarded to `target` in its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub published: u16,
    pub target: u16,
}

/// One task's endpoint on one network, as its node publishes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub task_id: TaskId,
    /// Name of the service the task belongs to.
    pub service: String,
    pub ip: Ipv4Addr,
    #[serde(with = "mac_wire")]
    pub mac: MacAddr,
    /// Underlay address of the node hosting the task.
    pub vtep: Ipv4Addr,
    pub ports: Vec<PublishedPort>,
    /// The service's virtual IP on this network, if it has one.
    #[serde(default)]
    pub vip: Option<Ipv4Addr>,
    /// The service's aliases on this network: more names for it in DNS.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Ports published in host mode: only the node hosting the task
    /// accepts them, for this task alone.
    #[serde(default)]
    pub host_ports: Vec<PublishedPort>,
}

impl EndpointRecord {
    /// The overlay's view of this record on `network`.
    pub fn endpoint(&self, network: &str) -> Endpoint {
        Endpoint {
            network: network.to_string(),
            ip: self.ip,
            mac: self.mac,
            vtep: self.vtep,
        }
    }
}

/// What a delta does to its key. A withdrawal keeps the address it freed, so
/// every node can tell which addresses tombstones still hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    Publish(EndpointRecord),
    Withdraw { task_id: TaskId, ip: Ipv4Addr },
}

impl Change {
    pub fn task_id(&self) -> &str {
        match self {
            Change::Publish(record) => &record.task_id,
            Change::Withdraw { task_id, .. } => task_id,
        }
    }

    pub fn ip(&self) -> Ipv4Addr {
        match self {
            Change::Publish(record) => record.ip,
            Change::Withdraw { ip, .. } => *ip,
        }
    }

    pub fn record(&self) -> Option<&EndpointRecord> {
        match self {
            Change::Publish(record) => Some(record),
            Change::Withdraw { .. } => None,
        }
    }
}

/// Who vouches for a delta (or an owner's authority over a key range).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Proof {
    /// Made by this node from what it holds (a tombstone derived from an
    /// owner's authority page): kept here, never sent, and refused when a
    /// peer sends one.
    Local,
    /// Signed by the owner with its node key `key` (see
    /// [`shoal_control::ca::key_id`]); `signature` covers the statement's
    /// fields as [`Delta::signed_bytes`] encodes them.
    Signed { key: [u8; 8], signature: Vec<u8> },
}

/// One write to one entry, keyed by (network, task id). Tables store the
/// latest delta of each key; a stored withdrawal is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Delta {
    pub network: NetworkId,
    /// The node that wrote the entry; only it changes the entry.
    pub owner: NodeId,
    pub version: Version,
    /// The owner's clock (unix ms) at the write; a tombstone is reaped a TTL
    /// after it, at about the same moment on every node.
    pub written_at: u64,
    pub change: Change,
    /// The owner's signature: no other node can write or tombstone its
    /// entries, even one holding the cluster's gossip key.
    pub proof: Proof,
}

/// What an owner signs for a delta: every field but the proof, after a
/// domain tag so the bytes mean nothing elsewhere.
#[derive(Serialize)]
struct SignedDelta<'a> {
    domain: &'static str,
    network: &'a str,
    owner: &'a str,
    version: Version,
    written_at: u64,
    change: &'a Change,
}

impl Delta {
    pub fn task_id(&self) -> &str {
        self.change.task_id()
    }

    pub fn is_tombstone(&self) -> bool {
        matches!(self.change, Change::Withdraw { .. })
    }

    /// Whether `self` replaces `other` for the same key: the higher version
    /// wins; at equal versions a tombstone wins, then a total order on the
    /// rest, so every replica picks the same winner whatever the arrival order.
    pub fn supersedes(&self, other: &Delta) -> bool {
        self.rank().cmp(&other.rank()) == Ordering::Greater
    }

    fn rank(&self) -> (Version, bool, &str, u64, &Change) {
        (
            self.version,
            self.is_tombstone(),
            &self.owner,
            self.written_at,
            &self.change,
        )
    }

    /// Bytes this delta takes in a postcard payload.
    pub fn encoded_len(&self) -> usize {
        postcard::experimental::serialized_size(self).unwrap_or(usize::MAX / 2)
    }

    /// The bytes the owner signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(&SignedDelta {
            domain: "shoal-gossip-delta-v1",
            network: &self.network,
            owner: &self.owner,
            version: self.version,
            written_at: self.written_at,
            change: &self.change,
        })
        .unwrap_or_default()
    }
}

/// Wall-clock time for the tables, injected so a simulation can drive it.
pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;
}

/// The host's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock(AtomicU64::new(now_ms))
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, AtomicOrdering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, AtomicOrdering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(AtomicOrdering::SeqCst)
    }
}

/// MACs as six raw bytes on the wire and as `02:42:..` text in JSON.
mod mac_wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use shoal_control::objects::MacAddr;

    pub fn serialize<S: Serializer>(mac: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            mac.serialize(s)
        } else {
            mac.octets().serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        if d.is_human_readable() {
            MacAddr::deserialize(d)
        } else {
            <[u8; 6]>::deserialize(d).map(MacAddr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EndpointRecord {
        EndpointRecord {
            task_id: "t1".into(),
            service: "web".into(),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            mac: MacAddr::from_ipv4(Ipv4Addr::new(10, 0, 0, 2)),
            vtep: Ipv4Addr::new(192, 168, 1, 1),
            ports: vec![PublishedPort {
                protocol: Protocol::Tcp,
                published: 8080,
                target: 80,
            }],
            vip: None,
            aliases: Vec::new(),
            host_ports: Vec::new(),
        }
    }

    #[test]
    fn mac_is_six_bytes_on_the_wire_and_text_in_json() {
        let r = record();
        let wire = postcard::to_allocvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<EndpointRecord>(&wire).unwrap(), r);
        let octets = r.mac.octets();
        assert!(
            wire.windows(7).any(|w| w[..6] == octets && w[6] == 192),
            "mac not packed: {wire:?}"
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"02:42:0a:00:00:02\""), "{json}");
        assert_eq!(serde_json::from_str::<EndpointRecord>(&json).unwrap(), r);
    }

    #[test]
    fn versions_order_by_epoch_then_seq() {
        let old = Version { epoch: 1, seq: 900 };
        let new = Version { epoch: 2, seq: 1 };
        assert!(new > old);
        assert_eq!(old.next(), Version { epoch: 1, seq: 901 });
        let last = Version {
            epoch: 5,
            seq: u64::MAX,
        };
        assert!(last.next() > last);
    }
}
