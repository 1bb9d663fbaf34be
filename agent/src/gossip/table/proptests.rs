//! Properties of the replicated tables: order, duplication and loss of deltas
//! do not matter once anti-entropy has run, and versions decide every race.

use std::sync::Arc;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::tests::{node, record, sync, NET};
use super::*;

/// One step of an owner's life.
#[derive(Clone, Debug)]
enum Op {
    Publish {
        task: u8,
        ip: u8,
    },
    Withdraw {
        task: u8,
    },
    /// The agent restarts with a later epoch (and re-publishes nothing).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, 1u8..20).prop_map(|(task, ip)| Op::Publish { task, ip }),
        2 => (0u8..5).prop_map(|task| Op::Withdraw { task }),
        1 => Just(Op::Restart),
    ]
}

/// Owners `o0..o2` run their ops; returns every delta they emitted and the
/// owners' final tables. `shared_keys` lets owners write the same task ids.
fn history(ops: &[(usize, Op)], shared_keys: bool) -> (Vec<Delta>, Vec<Tables>) {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut owners: Vec<Tables> = (0..3).map(|i| node(&format!("o{i}"), &clock)).collect();
    let mut deltas: Vec<Delta> = owners.iter_mut().flat_map(|o| o.settle()).collect();
    for (who, op) in ops {
        clock.advance(1);
        let owner = &mut owners[*who];
        let task = |t: &u8| match shared_keys {
            true => format!("t{t}"),
            false => format!("o{who}-t{t}"),
        };
        match op {
            Op::Publish { task: t, ip } => deltas.push(owner.publish(NET, record(&task(t), *ip))),
            Op::Withdraw { task: t } => deltas.extend(owner.withdraw(NET, &task(t))),
            Op::Restart => {
                *owner = node(&format!("o{who}"), &clock);
                deltas.extend(owner.settle());
            }
        }
    }
    (deltas, owners)
}

fn ops() -> impl Strategy<Value = Vec<(usize, Op)>> {
    prop::collection::vec((0usize..3, op()), 0..40)
}

fn observer(name: &str) -> Tables {
    node(name, &Arc::new(ManualClock::new(1)))
}

/// A shuffled subset (`keep` in 0..=100 percent) with some duplicates.
fn scramble(deltas: &[Delta], keep: u32, rng: &mut ChaCha8Rng) -> Vec<Delta> {
    let mut out: Vec<Delta> = deltas
        .iter()
        .filter(|_| rng.random_range(0..100) < keep)
        .cloned()
        .collect();
    let dups: Vec<Delta> = out
        .iter()
        .filter(|_| rng.random_bool(0.3))
        .cloned()
        .collect();
    out.extend(dups);
    out.shuffle(rng);
    out
}

proptest! {
    #[test]
    fn any_order_and_duplication_gives_identical_tables(
        ops in ops(), shared in any::<bool>(), seed in any::<u64>(),
    ) {
        let (deltas, _) = history(&ops, shared);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut in_order = observer("x");
        for d in &deltas {
            in_order.apply(d.clone());
        }
        for name in ["y", "z"] {
            let mut replica = observer(name);
            for d in scramble(&deltas, 100, &mut rng) {
                replica.apply(d);
            }
            prop_assert_eq!(&replica.entries, &in_order.entries);
            prop_assert_eq!(replica.digest(), in_order.digest());
        }
    }

    #[test]
    fn anti_entropy_makes_two_replicas_equal(
        ops in ops(), keep in (0u32..=100, 0u32..=100), seed in any::<u64>(),
        page_bytes in 1_100usize..4_000,
    ) {
        let (deltas, _) = history(&ops, false);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut a, mut b) = (observer("x"), observer("y"));
        for d in scramble(&deltas, keep.0, &mut rng) {
            a.apply(d);
        }
        for d in scramble(&deltas, keep.1, &mut rng) {
            b.apply(d);
        }
        sync(&mut a, &mut b, page_bytes);
        prop_assert_eq!(&a.entries, &b.entries);
        prop_assert!(a.missing_for(&b.digest(), page_bytes).is_empty());
    }

    #[test]
    fn anti_entropy_with_an_owner_converges_on_the_owners_truth(
        ops in ops(), keep in 0u32..=100, seed in any::<u64>(),
    ) {
        let (deltas, mut owners) = history(&ops, false);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = observer("y");
        for d in scramble(&deltas, keep, &mut rng) {
            b.apply(d);
        }
        let mut owner = owners.remove(0);
        sync(&mut owner, &mut b, 2_000);
        // Every live entry of o0 that b now holds is one o0 publishes now,
        // even those b kept from o0's earlier runs.
        for d in b.iter().filter(|d| d.owner == "o0" && !d.is_tombstone()) {
            prop_assert_eq!(owner.get(NET, d.task_id()), Some(d));
        }
        prop_assert_eq!(&owner.entries, &b.entries);
    }

    #[test]
    fn tombstones_beat_older_writes_and_lose_to_newer_ones(
        writes in prop::collection::vec(prop::option::of(1u8..50), 1..12),
        seed in any::<u64>(),
    ) {
        let clock = Arc::new(ManualClock::new(1));
        let mut owner = node("o", &clock);
        let mut deltas = Vec::new();
        for w in &writes {
            clock.advance(1);
            match w {
                Some(ip) => deltas.push(owner.publish(NET, record("t", *ip))),
                None => deltas.extend(owner.withdraw(NET, "t")),
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut replica = observer("x");
        let received = scramble(&deltas, 70, &mut rng);
        for d in &received {
            replica.apply(d.clone());
        }
        let newest = received.iter().max_by_key(|d| d.version);
        prop_assert_eq!(replica.get(NET, "t"), newest);
    }

    #[test]
    fn a_restarted_owners_writes_supersede_its_old_ones(
        old_ips in prop::collection::vec(1u8..50, 1..6),
        new_ip in 1u8..50, gap in 1u64..1_000_000, seed in any::<u64>(),
    ) {
        let clock = Arc::new(ManualClock::new(10_000));
        let mut old = node("o", &clock);
        let mut deltas: Vec<Delta> = old_ips
            .iter()
            .map(|ip| { clock.advance(1); old.publish(NET, record("t", *ip)) })
            .collect();
        clock.advance(gap);
        let mut new = node("o", &clock);
        let fresh = new.publish(NET, record("t", new_ip));
        deltas.push(fresh.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut replica = observer("x");
        for d in scramble(&deltas, 100, &mut rng) {
            replica.apply(d);
        }
        prop_assert_eq!(replica.get(NET, "t"), Some(&fresh));
    }
}
