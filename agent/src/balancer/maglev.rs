//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): each backend gets a
//! permutation of the table's slots from two hashes of its name, and backends
//! take turns claiming their next free slot. Every node that knows the same
//! backends builds the same table, and removing one backend moves only the
//! flows that were on it (plus a few percent of others).
//!
//! A table has a power-of-two number of slots; a permutation is complete
//! whenever its skip is odd, so skips are made odd instead of taking a prime
//! table size.

/// The table of `slots` slots (a power of two, at most 65,536) for `names`
/// (each backend's stable identity), as indexes into `names`. Empty input
/// gives an empty table. Names must be distinct; their order does not
/// matter.
pub fn table(names: &[String], slots: usize) -> Vec<u16> {
    if names.is_empty() || !slots.is_power_of_two() {
        return Vec::new();
    }
    // Turns go by sorted name so the result does not depend on input order.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|a, b| names[*a].cmp(&names[*b]));
    let m = slots as u64;
    let perms: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let offset = fnv1a64(names[i].as_bytes(), 0xcbf2_9ce4_8422_2325) % m;
            let skip = (fnv1a64(names[i].as_bytes(), 0x8422_2325_cbf2_9ce4) % (m / 2)) * 2 + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; order.len()];
    let mut table: Vec<Option<u16>> = vec![None; slots];
    let mut filled = 0;
    'fill: loop {
        for (turn, &backend) in order.iter().enumerate() {
            let (offset, skip) = perms[turn];
            let mut slot = ((offset + next[turn] * skip) % m) as usize;
            while table[slot].is_some() {
                next[turn] += 1;
                slot = ((offset + next[turn] * skip) % m) as usize;
            }
            table[slot] = Some(backend as u16);
            next[turn] += 1;
            filled += 1;
            if filled == slots {
                break 'fill;
            }
        }
    }
    table.into_iter().map(|s| s.unwrap_or(0)).collect()
}

/// The table of `slots` slots for a port's active backends, as indexes
/// into them in their sorted order; a backend's identity is its address and
/// port, so every node builds the same table.
pub fn port_table(
    active: &std::collections::BTreeSet<super::MeshBackend>,
    slots: usize,
) -> Vec<u16> {
    let names: Vec<String> = active
        .iter()
        .map(|b| format!("{}:{}", b.ip, b.port))
        .collect();
    table(&names, slots)
}

/// FNV-1a, 64 bits, from `seed`: stable across Rust versions and machines.
fn fnv1a64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGLEV_SLOTS: usize = 1024;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.255.0.{}:80", i + 2)).collect()
    }

    fn share(table: &[u16], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &s in table {
            counts[usize::from(s)] += 1;
        }
        counts
    }

    #[test]
    fn every_slot_is_filled_evenly() {
        for n in [1, 2, 3, 7, 50, 128] {
            let t = table(&names(n), MAGLEV_SLOTS);
            assert_eq!(t.len(), MAGLEV_SLOTS);
            let counts = share(&t, n);
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            // Maglev's round-robin claims keep shares within one slot.
            assert!(max - min <= 1, "n={n}: {counts:?}");
        }
    }

    #[test]
    fn the_same_backends_give_the_same_table_in_any_order() {
        let a = names(5);
        let mut b = a.clone();
        b.reverse();
        let ta = table(&a, MAGLEV_SLOTS);
        let tb = table(&b, MAGLEV_SLOTS);
        for slot in 0..MAGLEV_SLOTS {
            assert_eq!(a[usize::from(ta[slot])], b[usize::from(tb[slot])]);
        }
    }

    #[test]
    fn removing_a_backend_moves_few_other_slots() {
        let all = names(10);
        let before = table(&all, MAGLEV_SLOTS);
        let fewer: Vec<String> = all.iter().filter(|n| *n != &all[3]).cloned().collect();
        let after = table(&fewer, MAGLEV_SLOTS);
        let mut moved_elsewhere = 0;
        for slot in 0..MAGLEV_SLOTS {
            let old = &all[usize::from(before[slot])];
            let new = &fewer[usize::from(after[slot])];
            if old != &all[3] && old != new {
                moved_elsewhere += 1;
            }
        }
        // Slots of surviving backends that changed owner: a small fraction.
        assert!(
            moved_elsewhere * 100 / MAGLEV_SLOTS < 10,
            "{moved_elsewhere} slots moved"
        );
    }

    #[test]
    fn a_thousand_backends_share_a_big_table_evenly() {
        let t = table(&names(1024), 16_384);
        let counts = share(&t, 1024);
        assert!(
            counts.iter().all(|&c| c == 16),
            "every backend gets 16 slots"
        );
    }

    #[test]
    fn no_backends_no_table() {
        assert!(table(&[], MAGLEV_SLOTS).is_empty());
        assert!(table(&names(2), 1000).is_empty(), "not a power of two");
    }
}
