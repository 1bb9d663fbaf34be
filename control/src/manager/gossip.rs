//! What managers hand out for gossip: the swarm's keys (rotated by
//! `swarm update --rotate-gossip-key`, phased in by time, see
//! `crate::objects::gossip_config_at`) and a few peers for each node
//! to join through. Managers only decide and hand out; they never gossip here.

use crate::error_chain::ErrorChain;
use std::net::{IpAddr, SocketAddr};

use rand::seq::SliceRandom;
use rand::Rng;

use super::{now_ms, Link, Manager, ManagerError, Store};
use crate::api::{rfc3339, GossipConfig, GOSSIP_PORT};
use crate::objects::{
    gossip_config_at, GossipKeyring, Node, NodeState, Role, Rotation, GOSSIP_KEYRING_ID,
    KEY_RETIRE_AFTER_MS,
};
use crate::store::{Command, Objects};

/// How many peers a heartbeat answer names.
pub const GOSSIP_PEERS: usize = 8;
/// How many of them are reserved for managers, which are the most likely to
/// be up and well connected.
const MANAGER_SLOTS: usize = GOSSIP_PEERS / 2;

impl<S: Store, L: Link> Manager<S, L> {
    /// Keys and peers for `caller`'s heartbeat answer; `None` when the
    /// store cannot say (the node keeps what it has).
    pub(super) fn gossip_config(&self, caller: &Node) -> Option<GossipConfig> {
        let cluster = self.cluster().ok()?;
        let keyring = match self.objects().one::<GossipKeyring>(GOSSIP_KEYRING_ID) {
            Ok(keyring) => keyring.map(|v| v.value).unwrap_or_default(),
            Err(e) => {
                tracing::error!("unreadable gossip keys: {}", e.chain());
                return None;
            }
        };
        let (keys, primary) = gossip_config_at(&cluster, &keyring, now_ms())?;
        let peers = gossip_peers(&self.nodes(), caller, &mut rand::rng());
        Some(GossipConfig {
            keys,
            primary,
            peers,
            refused: keyring.refused_at(now_ms()),
        })
    }
}

impl<S: Store, L: Link> Manager<S, L> {
    /// The write that adds a new gossip key to the keyring read in
    /// `objects` (failing with a conflict if the keyring changed since), as
    /// `node rm` and `node demote` make: a node that leaves must not keep
    /// speaking gossip with the key it held. Its key stops being handed out
    /// on the rotation's schedule (see `crate::objects::gossip_keys`); a
    /// `removed` node is also put on the list every node refuses at once.
    pub(super) fn gossip_rotation(
        &self,
        objects: &Objects,
        removed: Option<&str>,
    ) -> Result<(Command, Rotation), ManagerError> {
        let cluster = objects
            .one::<crate::objects::Cluster>(crate::objects::CLUSTER_ID)
            .map_err(ManagerError::store)?
            .ok_or(ManagerError::NoCluster)?
            .value;
        let (mut keyring, version) = objects
            .one::<GossipKeyring>(GOSSIP_KEYRING_ID)
            .map_err(ManagerError::store)?
            .map(|v| (v.value, v.version))
            .unwrap_or_default();
        let now = now_ms();
        let rotation = keyring.rotate(&cluster, rand::random::<[u8; 32]>(), now);
        if let Some(node_id) = removed {
            keyring.refuse(node_id, now);
        }
        let put = Command::put(&keyring, Some(version)).map_err(ManagerError::store)?;
        Ok((put, rotation))
    }
}

/// What `swarm update --rotate-gossip-key` prints.
pub fn rotation_message(rotation: &Rotation) -> String {
    format!(
        "Gossip key rotation started: key {} is accepted now and used from {}; \
         older keys stay accepted until {} s after that.",
        rotation.id,
        rfc3339(rotation.primary_from_ms.div_ceil(1000)),
        KEY_RETIRE_AFTER_MS / 1000,
    )
}

/// Up to [`GOSSIP_PEERS`] gossip addresses (`ip:7946`) of nodes other than
/// `caller`: managers that are not down first (at most [`MANAGER_SLOTS`],
/// so with few managers all of them), then the other nodes, Ready before
/// Unknown before Down, chosen at random so that callers join through
/// different nodes.
pub fn gossip_peers(nodes: &[Node], caller: &Node, rng: &mut impl Rng) -> Vec<String> {
    let rank = |n: &Node| match n.state {
        NodeState::Ready => 0,
        NodeState::Unknown => 1,
        NodeState::Down => 2,
    };
    let mut others: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.id != caller.id && n.addr != caller.addr && !n.addr.is_empty())
        .collect();
    others.shuffle(rng);
    others.sort_by_key(|n| rank(n));
    let (mut managers, mut rest): (Vec<&Node>, Vec<&Node>) = others
        .into_iter()
        .partition(|n| n.role == Role::Manager && n.state != NodeState::Down);
    rest.extend(managers.split_off(managers.len().min(MANAGER_SLOTS)));
    rest.sort_by_key(|n| rank(n));
    let mut peers: Vec<String> = Vec::with_capacity(GOSSIP_PEERS);
    for node in managers.into_iter().chain(rest) {
        let addr = gossip_addr(&node.addr);
        if peers.len() == GOSSIP_PEERS {
            break;
        }
        if !peers.contains(&addr) {
            peers.push(addr);
        }
    }
    peers
}

/// `ip:7946`, bracketing IPv6.
fn gossip_addr(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, GOSSIP_PORT).to_string(),
        Err(_) => format!("{ip}:{GOSSIP_PORT}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn node(i: u8, role: Role, state: NodeState) -> Node {
        Node {
            id: format!("n{i}"),
            hostname: format!("host-{i}"),
            addr: format!("198.18.0.{i}"),
            listen_port: 0,
            role,
            availability: Default::default(),
            labels: Default::default(),
            state,
            raft_id: None,
            resources: Default::default(),
            created_at: 0,
            updated_at: 0,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        }
    }

    /// The last byte of a peer's address: the node's number.
    fn host(peer: &str) -> u8 {
        let ip = peer.strip_suffix(":7946").unwrap();
        ip.rsplit('.').next().unwrap().parse().unwrap()
    }

    fn swarm(managers: u8, workers: u8) -> Vec<Node> {
        (1..=managers)
            .map(|i| node(i, Role::Manager, NodeState::Ready))
            .chain(
                (managers + 1..=managers + workers)
                    .map(|i| node(i, Role::Worker, NodeState::Ready)),
            )
            .collect()
    }

    #[test]
    fn small_swarms_get_every_other_node_and_never_the_caller() {
        let nodes = swarm(3, 2);
        let peers = gossip_peers(&nodes, &nodes[4], &mut StdRng::seed_from_u64(1));
        assert_eq!(peers.len(), 4);
        assert!(!peers.contains(&"198.18.0.5:7946".to_string()));
        // Managers come first.
        let first: BTreeSet<&str> = peers[..3].iter().map(String::as_str).collect();
        assert_eq!(
            first,
            BTreeSet::from(["198.18.0.1:7946", "198.18.0.2:7946", "198.18.0.3:7946"])
        );
    }

    #[test]
    fn large_swarms_get_every_manager_and_a_random_few_ready_workers() {
        let mut nodes = swarm(3, 40);
        for n in nodes.iter_mut().skip(3).take(30) {
            n.state = NodeState::Down;
        }
        let caller = nodes[42].clone();
        let mut seen = BTreeSet::new();
        for seed in 0..20 {
            let peers = gossip_peers(&nodes, &caller, &mut StdRng::seed_from_u64(seed));
            assert_eq!(peers.len(), GOSSIP_PEERS);
            for m in ["198.18.0.1:7946", "198.18.0.2:7946", "198.18.0.3:7946"] {
                assert!(peers.contains(&m.to_string()), "{peers:?}");
            }
            // Ready workers (34..=42, less the caller) before any Down one.
            for p in &peers[3..] {
                assert!((34..=42).contains(&host(p)), "{p} is down");
            }
            seen.extend(peers);
        }
        assert!(seen.len() > GOSSIP_PEERS, "callers get different subsets");
    }

    #[test]
    fn many_managers_leave_room_for_workers_and_down_managers_go_last() {
        let mut nodes = swarm(7, 10);
        nodes[0].state = NodeState::Down;
        let caller = nodes[16].clone();
        let peers = gossip_peers(&nodes, &caller, &mut StdRng::seed_from_u64(3));
        let managers = peers.iter().filter(|p| host(p) <= 7).count();
        assert_eq!(managers, MANAGER_SLOTS, "{peers:?}");
        assert!(!peers.contains(&"198.18.0.1:7946".to_string()));
    }

    #[test]
    fn a_node_that_rejoined_is_not_its_own_peer() {
        let mut nodes = swarm(1, 1);
        let mut old_self = node(2, Role::Worker, NodeState::Down);
        old_self.id = "old".into();
        nodes.push(old_self);
        let peers = gossip_peers(&nodes, &nodes[1], &mut StdRng::seed_from_u64(0));
        assert_eq!(peers, vec!["198.18.0.1:7946".to_string()]);
        assert_eq!(gossip_addr("fd00::1"), "[fd00::1]:7946");
    }

    #[test]
    fn the_rotation_message_says_when_the_key_takes_over() {
        let rotation = Rotation {
            id: 2,
            primary_from_ms: 1_795_000_000_500,
        };
        assert_eq!(
            rotation_message(&rotation),
            "Gossip key rotation started: key 2 is accepted now and used from \
             2026-11-18T11:06:41Z; older keys stay accepted until 10 s after that."
        );
    }
}
