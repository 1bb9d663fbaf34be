//! Scenarios of the endpoint tables as users of the data plane see them:
//! publish, withdraw, node death and return, restarts, and paged syncs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use shoal_control::objects::MacAddr;

use super::*;

pub(super) const NET: &str = "app";

pub(super) fn record(task: &str, ip: u8) -> EndpointRecord {
    let addr = Ipv4Addr::new(10, 0, 0, ip);
    EndpointRecord {
        task_id: task.to_string(),
        service: "web".to_string(),
        ip: addr,
        mac: MacAddr::from_ipv4(addr),
        vtep: Ipv4Addr::new(192, 168, 0, 1),
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

pub(super) fn node(name: &str, clock: &Arc<ManualClock>) -> Tables {
    Tables::with_clock(name, clock.clone()).with_notary(Box::new(HashNotary::new(name)))
}

/// Runs one anti-entropy exchange in both directions, then delivers the
/// owners' answers until there are none.
pub(super) fn sync(a: &mut Tables, b: &mut Tables, page_bytes: usize) {
    let to_b = a.missing_for(&b.digest(), page_bytes);
    let to_a = b.missing_for(&a.digest(), page_bytes);
    // Answers go back to the side whose page caused them.
    let mut for_a: Vec<Delta> = to_b
        .into_iter()
        .flat_map(|p| b.apply_page(p).answers)
        .collect();
    let mut for_b: Vec<Delta> = to_a
        .into_iter()
        .flat_map(|p| a.apply_page(p).answers)
        .collect();
    for _ in 0..8 {
        if for_a.is_empty() && for_b.is_empty() {
            return;
        }
        let next_b: Vec<Delta> = for_a.drain(..).filter_map(|d| a.apply(d).answer).collect();
        let next_a: Vec<Delta> = for_b.drain(..).filter_map(|d| b.apply(d).answer).collect();
        for_a = next_a;
        for_b = next_b;
    }
    panic!("answers kept coming");
}

fn programmed(t: &Tables, alive: impl Fn(&str) -> bool) -> Vec<(String, Ipv4Addr)> {
    t.live_endpoints(NET, alive)
        .iter()
        .map(|e| (e.record.task_id.clone(), e.record.ip))
        .collect()
}

#[test]
fn a_published_endpoint_is_programmed_everywhere() {
    let clock = Arc::new(ManualClock::new(1_000));
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    let delta = a.publish(NET, record("t1", 2));
    assert!(b.apply(delta.clone()).changed);
    assert!(!b.apply(delta).changed, "a duplicate changes nothing");
    assert_eq!(
        programmed(&b, |_| true),
        [("t1".into(), Ipv4Addr::new(10, 0, 0, 2))]
    );
    assert_eq!(
        b.sizes()[NET],
        TableSize {
            live: 1,
            tombstones: 0
        }
    );
}

#[test]
fn a_withdrawal_leaves_a_tombstone_that_holds_the_ip_until_reaped() {
    let clock = Arc::new(ManualClock::new(1_000));
    let ttl = Duration::from_secs(60);
    let mut a = node("a", &clock).with_tombstone_ttl(ttl);
    let mut b = node("b", &clock).with_tombstone_ttl(ttl);
    b.apply(a.publish(NET, record("t1", 2)));
    clock.advance(5);
    let tombstone = a.withdraw(NET, "t1").expect("a owns t1");
    assert!(a.withdraw(NET, "t1").is_none(), "already withdrawn");
    assert!(b.apply(tombstone).changed);
    assert!(programmed(&b, |_| true).is_empty());
    let held = (NET.to_string(), Ipv4Addr::new(10, 0, 0, 2));
    assert!(b.held_ips().contains(&held));
    assert_eq!(
        b.sizes()[NET],
        TableSize {
            live: 0,
            tombstones: 1
        }
    );

    assert_eq!(b.reap(1_005 + 59_999), 0);
    assert_eq!(b.reap(1_005 + 60_000), 1);
    assert!(b.held_ips().is_empty());
    assert!(b.sizes().is_empty());
}

#[test]
fn only_the_owner_withdraws_and_unknown_tasks_are_refused() {
    let clock = Arc::new(ManualClock::new(1));
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    b.apply(a.publish(NET, record("t1", 2)));
    assert!(b.withdraw(NET, "t1").is_none());
    assert!(a.withdraw(NET, "nope").is_none());
    assert!(a.withdraw("other", "t1").is_none());
}

#[test]
fn a_dead_nodes_entries_are_hidden_then_return_with_it() {
    let clock = Arc::new(ManualClock::new(1));
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    b.apply(a.publish(NET, record("t1", 2)));
    b.publish(NET, record("t2", 3));
    let a_dead = |n: &str| n != "a";
    assert_eq!(
        programmed(&b, a_dead),
        [("t2".into(), Ipv4Addr::new(10, 0, 0, 3))]
    );
    assert_eq!(b.sizes()[NET].live, 2, "kept while dead");
    assert_eq!(programmed(&b, |_| true).len(), 2, "back when alive");
    assert_eq!(programmed(&b, |_| false).len(), 1, "self is always alive");
}

#[test]
fn stale_deltas_are_ignored() {
    let clock = Arc::new(ManualClock::new(1));
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    let v1 = a.publish(NET, record("t1", 2));
    let v2 = a.publish(NET, record("t1", 9));
    assert!(b.apply(v2.clone()).changed);
    assert!(!b.apply(v1).changed);
    assert_eq!(b.get(NET, "t1"), Some(&v2));
}

#[test]
fn a_restarted_owner_replaces_and_retires_its_previous_entries() {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut old = node("a", &clock);
    let mut b = node("b", &clock);
    b.apply(old.publish(NET, record("t1", 2)));
    b.apply(old.publish(NET, record("t2", 3)));

    clock.set(2_000);
    let mut new = node("a", &clock);
    // The restarted agent learns its old entries, re-publishes the task that
    // survived (with a new address here), then settles.
    for page in b.missing_for(&new.digest(), DEFAULT_PAGE_BYTES) {
        new.apply_page(page);
    }
    let t1 = new.publish(NET, record("t1", 7));
    assert!(t1.version.epoch > 1_000);
    let retired = new.settle();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].task_id(), "t2");
    b.apply(t1);
    for d in retired {
        b.apply(d);
    }
    assert_eq!(
        programmed(&b, |_| true),
        [("t1".into(), Ipv4Addr::new(10, 0, 0, 7))]
    );
}

#[test]
fn a_settled_owner_prunes_entries_it_never_heard_of_through_sync() {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut old = node("a", &clock);
    let mut b = node("b", &clock);
    b.apply(old.publish(NET, record("t1", 2)));
    b.apply(old.publish(NET, record("t2", 3)));

    clock.set(2_000);
    let mut new = node("a", &clock);
    new.publish(NET, record("t1", 7));
    assert!(new.settle().is_empty(), "it knows nothing of t2 yet");
    sync(&mut new, &mut b, DEFAULT_PAGE_BYTES);
    assert_eq!(
        programmed(&b, |_| true),
        [("t1".into(), Ipv4Addr::new(10, 0, 0, 7))]
    );
    assert_eq!(new.entries, b.entries);
    assert_eq!(new.digest(), b.digest());
}

#[test]
fn a_settled_owner_answers_a_stale_copy_of_its_entry() {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut old = node("a", &clock);
    let stale = old.publish(NET, record("t1", 2));
    clock.set(2_000);
    let mut new = node("a", &clock);
    new.settle();
    let applied = new.apply(stale.clone());
    assert!(!applied.changed);
    let answer = applied.answer.expect("a tombstone answers the stale copy");
    assert!(answer.is_tombstone() && answer.version > stale.version);
    let mut b = node("b", &clock);
    b.apply(stale);
    b.apply(answer);
    assert!(programmed(&b, |_| true).is_empty());
}

#[test]
fn an_owner_whose_clock_went_back_still_wins_for_its_tasks() {
    let clock = Arc::new(ManualClock::new(5_000));
    let mut old = node("a", &clock);
    let mut b = node("b", &clock);
    b.apply(old.publish(NET, record("t1", 2)));
    // Restarted with a clock 4 s behind: its epoch is below the old one.
    clock.set(1_000);
    let mut new = node("a", &clock);
    let fresh = new.publish(NET, record("t1", 9));
    new.settle();
    assert!(!b.apply(fresh).changed, "loses to the old epoch at first");
    sync(&mut new, &mut b, DEFAULT_PAGE_BYTES);
    assert_eq!(
        programmed(&b, |_| true),
        [("t1".into(), Ipv4Addr::new(10, 0, 0, 9))]
    );
    assert!(new.epoch() >= 5_000, "the epoch moved past the old one");
}

#[test]
fn pages_are_bounded_and_rebuild_a_large_table() {
    let clock = Arc::new(ManualClock::new(1));
    let mut owners: Vec<Tables> = (0..4).map(|i| node(&format!("n{i}"), &clock)).collect();
    let mut full = node("full", &clock);
    for i in 0..2_000u32 {
        let owner = &mut owners[(i % 4) as usize];
        let mut r = record(&format!("task-{i:05}"), (i % 250) as u8 + 1);
        r.ports.extend((0..i % 7).map(|p| PublishedPort {
            protocol: Protocol::Udp,
            published: 30_000 + p as u16,
            target: 53,
        }));
        full.apply(owner.publish(format!("net-{}", i % 3), r));
    }
    owners[0].settle();
    full.apply(owners[0].withdraw("net-0", "task-00000").expect("owned"));
    let mut empty = node("empty", &clock);
    let page_bytes = 4_096;
    let pages = full.missing_for(&empty.digest(), page_bytes);
    assert!(pages.len() > 20, "{} pages", pages.len());
    for page in pages {
        let len = postcard::to_allocvec(&page).expect("encodes").len();
        assert!(len <= page_bytes, "page of {len} bytes");
        empty.apply_page(page);
    }
    assert_eq!(empty.entries, full.entries);
    assert!(full.missing_for(&empty.digest(), page_bytes).is_empty());
}

#[test]
fn a_forgotten_owner_stays_gone() {
    let clock = Arc::new(ManualClock::new(1));
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    let d = a.publish(NET, record("t1", 2));
    b.apply(d.clone());
    assert_eq!(b.forget_owner("a"), 1);
    assert!(!b.apply(d).changed);
    assert!(b.apply(a.publish(NET, record("t2", 3))).answer.is_none());
    assert!(b.sizes().is_empty());
    assert_eq!(b.forget_owner("b"), 0, "never forgets itself");
}

#[test]
fn two_live_entries_on_one_ip_resolve_to_the_latest_write() {
    let clock = Arc::new(ManualClock::new(1));
    let (mut a, mut c, mut b) = (node("a", &clock), node("c", &clock), node("b", &clock));
    let stale = a.publish(NET, record("old-task", 2));
    clock.advance(10);
    let fresh = c.publish(NET, record("new-task", 2));
    b.apply(fresh);
    b.apply(stale);
    assert_eq!(
        programmed(&b, |_| true),
        [("new-task".into(), Ipv4Addr::new(10, 0, 0, 2))]
    );
}

#[test]
fn an_entry_resurrected_after_its_tombstone_was_reaped_is_withdrawn_again() {
    let clock = Arc::new(ManualClock::new(1_000));
    let ttl = Duration::from_secs(60);
    let mut a = node("a", &clock).with_tombstone_ttl(ttl);
    let mut b = node("b", &clock).with_tombstone_ttl(ttl);
    let mut c = node("c", &clock).with_tombstone_ttl(ttl);
    a.settle();
    for d in [
        a.publish(NET, record("t0", 2)),
        a.publish(NET, record("t1", 3)),
    ] {
        b.apply(d.clone());
        c.apply(d);
    }
    b.apply(a.withdraw(NET, "t1").expect("owned"));
    // c was cut off and missed the withdrawal; b and a reap the tombstone.
    clock.advance(61_000);
    assert_eq!((a.reap(clock.now_ms()), b.reap(clock.now_ms())), (1, 1));
    sync(&mut c, &mut b, DEFAULT_PAGE_BYTES);
    assert_eq!(programmed(&b, |_| true).len(), 2, "c brought t1 back to b");

    // The owner's authoritative pages withdraw it again, and that spreads.
    sync(&mut a, &mut b, DEFAULT_PAGE_BYTES);
    sync(&mut b, &mut c, DEFAULT_PAGE_BYTES);
    let only_t0 = [("t0".to_string(), Ipv4Addr::new(10, 0, 0, 2))];
    assert_eq!(programmed(&b, |_| true), only_t0);
    assert_eq!(programmed(&c, |_| true), only_t0);
    assert_eq!(programmed(&a, |_| true), only_t0);
}

/// Tables of node `name` signing with a real node key of `ca`, and the
/// node's certificate (DER).
fn signed(
    ca: &shoal_control::ca::RootCa,
    name: &str,
    clock: &Arc<ManualClock>,
) -> (Tables, Vec<u8>) {
    let day = Duration::from_secs(86_400);
    let (key, cert) = ca
        .issue(name, shoal_control::objects::Role::Worker, "c1", day)
        .unwrap();
    let notary = CertNotary::new(ca.cert_pem(), &cert, &key).unwrap();
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes()).unwrap();
    let tables = Tables::with_clock(name, clock.clone()).with_notary(Box::new(notary));
    (tables, der.to_vec())
}

/// A node holding the gossip key (here: able to hand deltas to `b`) can
/// neither write, rewrite nor tombstone another node's entries, nor forge
/// or trim its authority pages; its own entries go through.
#[test]
fn only_the_owner_can_write_its_entries() {
    let ca = shoal_control::ca::RootCa::generate("c1").unwrap();
    // Certificates are checked against the tables' clock: now.
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let (mut a, cert_a) = signed(&ca, "nodea", &clock);
    let (mut b, _) = signed(&ca, "nodeb", &clock);
    let (mut m, cert_m) = signed(&ca, "nodem", &clock);
    // Not before the certificates' start (whole seconds).
    clock.set(SystemClock.now_ms() + 1_000);
    let honest = a.publish(NET, record("t1", 2));
    // Unknown key until a's certificate arrives.
    assert_eq!(b.apply(honest.clone()).refused, Some(Verdict::UnknownKey));
    assert!(b.learn(&cert_a) && b.learn(&cert_m));
    assert!(b.apply(honest.clone()).changed);

    // Rewrites of a's entry: a higher version with m's signature, a's
    // signature on other content, no signature at all.
    let mut forged = m.publish(NET, record("t1", 9));
    forged.owner = "nodea".into();
    forged.version = honest.version.next().next();
    assert_eq!(b.apply(forged.clone()).refused, Some(Verdict::UnknownKey));
    let mut altered = honest.clone();
    altered.version = honest.version.next();
    altered.change = Change::Publish(record("t1", 9));
    assert_eq!(b.apply(altered).refused, Some(Verdict::Invalid));
    let mut unsigned = forged.clone();
    unsigned.proof = Proof::Local;
    assert_eq!(b.apply(unsigned).refused, Some(Verdict::Invalid));
    // A tombstone of a's entry, signed by m.
    m.publish(NET, record("t1", 2));
    let mut tombstone = m.withdraw(NET, "t1").unwrap();
    tombstone.owner = "nodea".into();
    tombstone.version = honest.version.next().next().next();
    assert_eq!(b.apply(tombstone).refused, Some(Verdict::UnknownKey));
    assert_eq!(
        programmed(&b, |_| true),
        [("t1".into(), Ipv4Addr::new(10, 0, 0, 2))]
    );
    assert_eq!(b.refused().invalid, 2);
    assert_eq!(b.refused().unknown_key, 3);

    // m's own entries go through.
    let own = m.publish(NET, record("m1", 7));
    assert!(b.apply(own).changed);

    // a's authority page, trimmed by a relay of the entry it lists: the
    // authority no longer checks out, and nothing of a's is pruned.
    a.settle();
    let mut pages = a.missing_for(&Digest::default(), DEFAULT_PAGE_BYTES);
    let mut page = pages.remove(0);
    assert!(page.authority.is_some());
    page.deltas.retain(|d| d.owner != "nodea");
    let applied = b.apply_page(page);
    assert!(applied
        .refused
        .contains(&("nodea".into(), Verdict::Invalid)));
    assert!(programmed(&b, |_| true).contains(&("t1".into(), Ipv4Addr::new(10, 0, 0, 2))));
}

#[test]
fn owners_on_the_managers_refused_list_are_dropped_and_ignored() {
    let clock = Arc::new(ManualClock::new(1));
    let (mut a, mut b) = (node("a", &clock), node("b", &clock));
    let d = a.publish(NET, record("t1", 2));
    b.apply(d.clone());
    let refused = std::collections::BTreeSet::from(["a".to_string()]);
    assert_eq!(b.refuse_owners(&refused), 1);
    assert_eq!(b.refuse_owners(&refused), 0, "dropped once");
    assert!(!b.apply(d).changed);
    assert!(!b.apply(a.publish(NET, record("t2", 3))).changed);
    assert!(b.sizes().is_empty());
    // Off the list, its deltas are taken again.
    b.refuse_owners(&std::collections::BTreeSet::new());
    assert!(b.apply(a.publish(NET, record("t3", 4))).changed);
}
