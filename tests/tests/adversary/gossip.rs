//! Port 7946 and the metrics port as an attacker sees them: anyone can
//! connect, so connections are bounded; and a member holding the gossip key
//! still cannot write another node's records.

use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::swarm::{cli_ok, form, nodes, start_agent_with, wait_for};
use shoal_tests::{require_root, Host, Underlay};

use crate::support::{
    adversary_bin, ca, endpoints, fds, members, node_id, rss_kib, save_identity, wait_gossip,
};

const FLOOD: usize = 2000;
const HOLD_SECS: u64 = 20;

/// The result line of a finished `shoal-adversary flood` started with
/// `Host::spawn`.
fn flood_result(host: &Host, pid: u32) -> Value {
    let log = host.log_path(pid).expect("flood log");
    let ok = wait_for(Duration::from_secs(HOLD_SECS + 30), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"connected\""))
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok, "the flood never finished: {text}");
    let line = text
        .lines()
        .find(|l| l.contains("\"connected\""))
        .unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// 2,000 idle connections to 7946 and 2,000 to the metrics port, held
/// 20 s: the agent's descriptors and memory stay bounded (it closes what is
/// over its limits at once), and the cluster keeps working meanwhile.
#[test]
fn idle_connection_floods_leave_the_agent_bounded_and_the_cluster_working() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let (m, w, attacker) = (ul.host(0), ul.host(1), ul.host(2));
    let metrics = format!("{}:9323", m.addr());
    let agent = start_agent_with(m, &["--metrics-addr", &metrics]).expect("agent on h1");
    start_agent_with(w, &[]).expect("agent on h2");
    form(m, &[], &[w]);
    wait_gossip(&[m, w], 2);
    let network = cli_ok(
        m,
        &["network", "create", "--subnet", "10.30.0.0/24", "flooded"],
    );
    std::thread::sleep(Duration::from_secs(2));
    let (fds_before, rss_before) = (fds(agent), rss_kib(agent));

    let bin = adversary_bin().display().to_string();
    let count = FLOOD.to_string();
    let hold = HOLD_SECS.to_string();
    let gossip_target = format!("{}:7946", m.addr());
    let flood = |target: &str| {
        attacker
            .spawn(
                "prlimit",
                &[
                    "--nofile=10000",
                    &bin,
                    "flood",
                    "--target",
                    target,
                    "--count",
                    &count,
                    "--hold-secs",
                    &hold,
                ],
            )
            .expect("flood")
    };
    let gossip_flood = flood(&gossip_target);
    let metrics_flood = flood(&metrics);
    let started = Instant::now();
    let (mut max_fds, mut max_rss) = (0, 0);
    let mut published = false;
    while started.elapsed() < Duration::from_secs(HOLD_SECS - 4) {
        std::thread::sleep(Duration::from_millis(500));
        max_fds = max_fds.max(fds(agent));
        max_rss = max_rss.max(rss_kib(agent));
        if !published && started.elapsed() > Duration::from_secs(5) {
            // The cluster works under the flood: a new endpoint on h2 is seen
            // on h1, nodes stay ready, the metrics answer h2.
            cli_ok(
                w,
                &[
                    "endpoint",
                    "create",
                    "--network",
                    &network,
                    "--ip",
                    "10.30.0.7",
                    "during",
                ],
            );
            published = true;
            assert!(
                wait_for(Duration::from_secs(10), || endpoints(m)
                    .iter()
                    .any(|e| e["task_id"] == "during")),
                "an endpoint published under the flood never reached h1"
            );
            assert!(nodes(m).iter().all(|n| n["Status"]["State"] == "ready"));
            let scrape = w
                .exec(
                    "curl",
                    &[
                        "-sf",
                        "--max-time",
                        "5",
                        &format!("http://{metrics}/metrics"),
                    ],
                )
                .expect("curl");
            assert!(
                scrape.status.success(),
                "the metrics did not answer under the flood"
            );
        }
    }
    println!(
        "agent under 2x{FLOOD} idle connections: fds {fds_before} -> max {max_fds}, \
         RSS {rss_before} KiB -> max {max_rss} KiB"
    );
    assert!(
        max_fds < fds_before + 100,
        "the agent held {max_fds} descriptors under the flood ({fds_before} before)"
    );
    assert!(
        max_rss < rss_before + 64 * 1024,
        "the agent grew from {rss_before} KiB to {max_rss} KiB under the flood"
    );
    for (what, pid) in [("7946", gossip_flood), ("metrics", metrics_flood)] {
        let result = flood_result(attacker, pid);
        println!("flood of {what}: {result}");
        assert_eq!(result["connected"], FLOOD, "{what}: {result}");
        let closed = result["closed_by_server"].as_u64().unwrap_or(0);
        assert!(
            closed >= (FLOOD - 16) as u64,
            "{what}: the agent kept {} idle connections open: {result}",
            FLOOD as u64 - closed
        );
    }
    assert_eq!(members(m)["gossip"]["transitions"]["down"], 0);
}

/// A worker gone bad (its agent stopped, its certificate and the gossip key
/// in the attacker's hands) syncs a peer with its own record, which is
/// taken, and with a record, a tombstone and an authority in another node's
/// name, which are all refused: that node's endpoint stays live.
#[test]
fn gossip_records_in_another_nodes_name_are_refused() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let (m, bad, victim) = (ul.host(0), ul.host(1), ul.host(2));
    for host in [m, bad, victim] {
        start_agent_with(host, &[]).expect("agent");
    }
    form(m, &[], &[bad, victim]);
    wait_gossip(&[m, bad, victim], 3);
    let network = cli_ok(m, &["network", "create", "--subnet", "10.40.0.0/24", "app"]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            shoal_tests::swarm::cli(
                victim,
                &[
                    "endpoint",
                    "create",
                    "--network",
                    &network,
                    "--ip",
                    "10.40.0.5",
                    "victim-ep",
                ],
            )
            .status
            .success()
        }),
        "the victim could not publish its endpoint"
    );
    assert!(
        wait_for(Duration::from_secs(15), || endpoints(m)
            .iter()
            .any(|e| e["task_id"] == "victim-ep" && e["live"] == true)),
        "h1 never saw the victim's endpoint"
    );
    let (bad_id, victim_id) = (node_id(bad), node_id(victim));
    let stolen = save_identity(bad, "stolen");
    bad.kill_processes();

    let ca = ca(m);
    let manager = format!("{}:2377", m.addr());
    let gossip = format!("{}:7946", m.addr());
    let (cert, key) = (
        stolen.0.display().to_string(),
        stolen.1.display().to_string(),
    );
    let ca = ca.display().to_string();
    let sent = crate::support::adversary(
        bad,
        &[
            "forge-gossip",
            "--addr",
            &manager,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--to",
            &gossip,
            "--node",
            &bad_id,
            "--network",
            &network,
            "--victim",
            &victim_id,
            "--victim-task",
            "victim-ep",
            "--victim-ip",
            "10.40.0.5",
        ],
    );
    assert_eq!(sent["sent"], true, "{sent}");
    // Its own record goes through: the channel works.
    assert!(
        wait_for(Duration::from_secs(10), || endpoints(m)
            .iter()
            .any(
                |e| e["task_id"] == "adv-honest" && e["owner"] == bad_id.as_str()
            )),
        "the bad node's own record never arrived: {:#?}",
        endpoints(m)
    );
    let held = endpoints(m);
    assert!(
        !held.iter().any(|e| e["task_id"] == "adv-forged"),
        "a record forged in the victim's name was taken: {held:#?}"
    );
    assert!(
        held.iter().any(|e| e["task_id"] == "victim-ep"
            && e["owner"] == victim_id.as_str()
            && e["live"] == true),
        "the victim's endpoint was withdrawn by a forged tombstone or authority: {held:#?}"
    );
    let refused = &members(m)["gossip"]["records_refused"];
    let count =
        refused["unknown_key"].as_u64().unwrap_or(0) + refused["invalid"].as_u64().unwrap_or(0);
    assert!(
        count >= 3,
        "h1 did not count the forgeries it refused: {refused}"
    );
}
