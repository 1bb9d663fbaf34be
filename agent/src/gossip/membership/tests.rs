//! Driver tests with hand-delivered packets; cluster behaviour over time is
//! tested in `gossip::sim`.

use std::net::SocketAddr;
use std::time::Duration;

use foca::{Member, State};
use proptest::prelude::*;

use super::*;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7946))
}

fn node(i: u8) -> Membership {
    Membership::new(
        MemberId::new(format!("n{i}"), addr(i), 1),
        MembershipConfig::lan(),
        u64::from(i),
    )
}

/// Delivers every datagram and stream message between `nodes` (indexed by
/// the last address octet minus one) until none is left; timers are
/// dropped. Returns the other effects, tagged with the node they came from.
fn deliver(nodes: &mut [Membership], from: usize, effects: Vec<Effect>) -> Vec<(usize, Effect)> {
    let mut pending: Vec<(usize, Effect)> = effects.into_iter().map(|e| (from, e)).collect();
    let mut seen = Vec::new();
    let now = Duration::from_secs(1);
    while let Some((sender, effect)) = pending.pop() {
        let sender_addr = addr(sender as u8 + 1);
        let index = |to: SocketAddr| match to {
            SocketAddr::V4(v4) => usize::from(v4.ip().octets()[3]) - 1,
            SocketAddr::V6(_) => usize::MAX,
        };
        let next = match &effect {
            Effect::Send { to, bytes } => Some((index(*to), false, bytes.clone())),
            Effect::SyncRequest { to, bytes } | Effect::SyncReply { to, bytes } => {
                Some((index(*to), true, bytes.clone()))
            }
            Effect::ScheduleTimer { .. } => None,
            _ => {
                seen.push((sender, effect.clone()));
                None
            }
        };
        if let Some((to, stream, bytes)) = next {
            let Some(target) = nodes.get_mut(to) else {
                continue;
            };
            let out = if stream {
                target.handle_sync(sender_addr, &bytes, now)
            } else {
                target.handle_packet(sender_addr, &bytes, now)
            };
            pending.extend(out.into_iter().map(|e| (to, e)));
        }
    }
    seen
}

#[test]
fn joining_nodes_see_each_other_alive() {
    let mut nodes = [node(1), node(2), node(3)];
    let effects = nodes[1].join(&[addr(1)], Duration::ZERO);
    deliver(&mut nodes, 1, effects);
    let effects = nodes[2].join(&[addr(1)], Duration::ZERO);
    let events = deliver(&mut nodes, 2, effects);
    assert!(events
        .iter()
        .any(|(at, e)| *at == 0
            && matches!(e, Effect::MemberUp { member } if member.addr() == addr(3))));
    // The seed and the last joiner (through the seed's member list) see
    // everyone; n2 learns of n3 by gossip, which needs timers.
    for i in [0, 2] {
        let views = nodes[i].members();
        assert_eq!(views.len(), 3, "node {i} sees {views:?}");
        assert_eq!(views[0].node, *nodes[i].identity().node(), "self first");
        assert!(views.iter().all(|v| v.state == MemberState::Alive));
    }
    assert_eq!(nodes[1].active_members(), 1);
}

#[test]
fn broadcast_is_delivered_once_to_the_other_members() {
    let mut nodes = [node(1), node(2)];
    let effects = nodes[1].join(&[addr(1)], Duration::ZERO);
    deliver(&mut nodes, 1, effects);
    let effects = nodes[0].broadcast(b"endpoint v1", Duration::ZERO);
    let effects = effects.unwrap_or_default();
    let events = deliver(&mut nodes, 0, effects);
    let delivered: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, Effect::Broadcast { payload } if payload.as_ref() == b"endpoint v1"))
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].0, 1, "delivered at the other node only");
    // The same bytes again are a duplicate: nothing new to gossip.
    assert_eq!(
        nodes[0].broadcast(b"endpoint v1", Duration::ZERO),
        Ok(Vec::new())
    );
}

#[test]
fn oversized_broadcast_is_refused() {
    let mut membership = node(1);
    let result = membership.broadcast(&[0u8; 4000], Duration::ZERO);
    assert!(matches!(
        result,
        Err(MembershipError::Broadcast { len: 4000, .. })
    ));
}

#[test]
fn garbage_is_dropped_and_counted() {
    let mut membership = node(1);
    let effects = membership.handle_packet(addr(9), b"\x00\x01garbage", Duration::ZERO);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Error(MembershipError::Packet { .. })]
    ));
    let effects = membership.handle_sync(addr(9), b"\x01\xff\xff", Duration::ZERO);
    assert!(matches!(
        effects.as_slice(),
        [Effect::Error(MembershipError::Sync { .. })]
    ));
    let stats = membership.stats();
    assert_eq!((stats.packets_dropped, stats.syncs_dropped), (1, 1));
    assert_eq!(membership.members().len(), 1);
}

#[test]
fn truncated_real_packets_never_panic() {
    let mut nodes = [node(1), node(2)];
    let effects = nodes[1].join(&[addr(1)], Duration::ZERO);
    let packets: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { bytes, .. } | Effect::SyncRequest { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert!(!packets.is_empty());
    for packet in packets {
        for len in 0..packet.len() {
            nodes[0].handle_packet(addr(2), &packet[..len], Duration::ZERO);
            nodes[0].handle_sync(addr(2), &packet[..len], Duration::ZERO);
        }
    }
}

#[test]
fn suspicion_and_death_are_reported_as_transitions() {
    let mut membership = node(1);
    let other = MemberId::new("n2", addr(2), 1);
    let mut effects = Vec::new();
    for (state, incarnation) in [(State::Alive, 0), (State::Suspect, 0), (State::Alive, 1)] {
        membership.observe(
            &Member::new(other.clone(), incarnation, state),
            &mut effects,
        );
    }
    membership.observe(&Member::new(other.clone(), 1, State::Down), &mut effects);
    membership.observe(&Member::new(other.clone(), 1, State::Down), &mut effects);
    let newer = MemberId::new("n2", addr(2), 2);
    membership.observe(&Member::alive(newer.clone()), &mut effects);
    // News about the older life is ignored now.
    membership.observe(&Member::new(other.clone(), 1, State::Alive), &mut effects);
    assert_eq!(
        effects,
        vec![
            Effect::MemberUp {
                member: other.clone()
            },
            Effect::MemberSuspect {
                member: other.clone()
            },
            Effect::MemberUp {
                member: other.clone()
            },
            Effect::MemberDown { member: other },
            Effect::MemberUp { member: newer },
        ]
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut membership = node(1);
        membership.handle_packet(addr(2), &bytes, Duration::ZERO);
        membership.handle_sync(addr(2), &bytes, Duration::ZERO);
    }
}

#[test]
fn member_states_print_as_their_serde_names() {
    for state in [MemberState::Alive, MemberState::Suspect, MemberState::Dead] {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
}
