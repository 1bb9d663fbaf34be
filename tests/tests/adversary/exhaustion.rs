//! Inputs that would use up a node's or a network's finite resources: a
//! crash-looping service on a small network must not exhaust its addresses;
//! a network whose MTU the node's underlay cannot carry is not built.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::swarm::{cli_ok, create, form, start_agent_with, tasks, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};

/// How long the crash loop runs (the bound).
const CRASH_LOOP_FOR: Duration = Duration::from_secs(120);

/// `network inspect`'s `Addresses {InUse, Quarantined, Free}`.
fn addresses(host: &Host, network: &str) -> (u64, u64, u64) {
    let out = cli_ok(host, &["network", "inspect", network]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let a = &v[0]["Addresses"];
    let field = |name: &str| {
        a[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no Addresses.{name} in {out}"))
    };
    (field("InUse"), field("Quarantined"), field("Free"))
}

/// Three replicas that exit at once, restarted every 200 ms, on a /28 (13
/// task addresses after the gateway and the service's VIP) for two minutes:
/// far more tasks than addresses are made, yet the network never runs out
/// (each slot's replacement takes back its failed task's address), and a
/// second service still gets an address at the end.
#[test]
fn a_crash_looping_service_on_a_28_runs_two_minutes_without_exhausting_it() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h = ul.host(0);
    start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    cli_ok(
        h,
        &["network", "create", "--subnet", "10.45.3.0/28", "small"],
    );
    let (_, _, free_at_start) = addresses(h, "small");
    create(
        h,
        "crash",
        &[
            "--replicas",
            "3",
            "--network",
            "small",
            "--restart-delay",
            "200ms",
        ],
        &["sh", "-c", "exit 3"],
    );
    let started = Instant::now();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut least_free = u64::MAX;
    let mut last = (0, 0, 0);
    while started.elapsed() < CRASH_LOOP_FOR {
        for t in tasks(h, &["service", "ps", "crash"]) {
            if let Some(id) = t["ID"].as_str() {
                seen.insert(id.to_string());
            }
        }
        last = addresses(h, "small");
        least_free = least_free.min(last.2);
        assert!(
            last.2 > 0,
            "the crash loop exhausted the /28 after {:?} and {} tasks: {last:?} \
             (InUse, Quarantined, Free)",
            started.elapsed(),
            seen.len()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // It did loop: far more tasks than the /28 has addresses.
    assert!(
        seen.len() > 13 * 2,
        "only {} tasks were made in {CRASH_LOOP_FOR:?}: the service did not crash-loop",
        seen.len()
    );
    create(h, "after", &["--network", "small"], &["sleep", "100000"]);
    wait_running(h, "after", 1, Duration::from_secs(30));
    println!(
        "crash loop: {} tasks in {CRASH_LOOP_FOR:?}; free addresses {free_at_start} at start, \
         at least {least_free} throughout, {last:?} (InUse, Quarantined, Free) at the end",
        seen.len()
    );
}

/// A network with `--opt mtu=9000` on a 1500-byte underlay (the managers
/// cannot know each node's underlay, so they accept it): the node does not
/// build it (the kernel would, and drop every large packet), says why in its
/// log, and builds a network that fits beside it.
#[test]
fn a_network_mtu_beyond_the_nodes_underlay_is_not_built_and_says_why() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h = ul.host(0);
    let pid = start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    let jumbo = cli_ok(h, &["network", "create", "--opt", "mtu=9000", "jumbo"]);
    let fits = cli_ok(h, &["network", "create", "--opt", "mtu=1400", "fits"]);
    let built = |id: &str| h.run_dir().join("netns").join(format!("ov-{id}")).exists();
    assert!(
        wait_for(Duration::from_secs(20), || built(&fits)),
        "the network that fits was never built"
    );
    let log = h.log_path(pid).expect("agent log");
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(10), || said()
            .contains("MTU 9000 does not fit this node's underlay (MTU 1500")),
        "the agent never said why: {}",
        said()
    );
    assert!(
        !built(&jumbo),
        "the jumbo network was built on a 1500 underlay"
    );
}
