//! The manager core as a careless user or a node gone bad meets it: ports
//! the nodes need cannot be published, a huge `service scale` is refused at
//! once (the leader keeps answering), a node's configured listen port is
//! reserved, and a removed node's gossip is refused at once, its saved key
//! soon after.

use std::time::{Duration, Instant};

use shoal_tests::swarm::{
    cli, cli_ok, form, leader, node, nodes, reachable_managers, start_agent, start_agent_with,
    start_agents, text, try_create, wait_for,
};
use shoal_tests::{require_root, Underlay};

use crate::support::{adversary, ca, endpoints, node_id, save_identity, wait_gossip};

/// `--publish` of 2377, 7946 (tcp and udp) and 4789/udp is refused with
/// an error naming the port and what it is for; `service scale
/// web=4000000000` is refused at once, naming the cap and how to raise it,
/// and `node ls` answers right after.
#[test]
fn reserved_ports_and_huge_scales_are_refused_and_the_leader_keeps_answering() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let m = ul.host(0);
    start_agent(m).expect("agent");
    cli_ok(
        m,
        &["swarm", "init", "--advertise-addr", &m.addr().to_string()],
    );
    for publish in ["2377:80", "7946:80", "7946:80/udp", "4789:80/udp"] {
        let out = try_create(m, "web", &["-p", publish], &["sleep", "1000"]);
        let said = text(&out);
        let port = publish.split(':').next().unwrap_or_default();
        assert!(!out.status.success(), "--publish {publish} was accepted");
        assert!(
            said.contains(&format!("port {port}/")) && said.contains("is reserved"),
            "--publish {publish}: {said}"
        );
    }
    cli_ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--runtime",
            "process",
            "--",
            "sleep",
            "100000",
        ],
    );
    let started = Instant::now();
    let out = cli(m, &["service", "scale", "web=4000000000"]);
    let took = started.elapsed();
    let said = text(&out);
    assert!(!out.status.success(), "the scale was accepted: {said}");
    assert!(
        said.contains("cap of 10000") && said.contains("--max-replicas"),
        "{said}"
    );
    assert!(took < Duration::from_secs(5), "the refusal took {took:?}");
    let started = Instant::now();
    cli_ok(m, &["node", "ls"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "node ls took {:?} after the scale",
        started.elapsed()
    );
    // The cap is the user's to set: lowered, then raised again.
    cli_ok(m, &["swarm", "update", "--max-replicas", "3"]);
    let out = cli(m, &["service", "scale", "web=4"]);
    assert!(
        !out.status.success() && text(&out).contains("cap of 3"),
        "{}",
        text(&out)
    );
    cli_ok(m, &["swarm", "update", "--max-replicas", "20000"]);
    let out = cli(m, &["service", "scale", "web=4"]);
    assert!(out.status.success(), "{}", text(&out));
    cli_ok(m, &["node", "ls"]);
}

/// A node's configured `--listen-port` (here a worker's 2400, the API port
/// it takes if promoted) is reserved like 2377: publishing it is refused,
/// naming the port and why; a neighbouring port is not.
#[test]
fn a_nodes_configured_listen_port_cannot_be_published() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let (m, w) = (ul.host(0), ul.host(1));
    for host in [m, w] {
        start_agent_with(host, &[]).expect("agent");
    }
    let (worker_token, _) = form(m, &[], &[]);
    let target = format!("{}:2377", m.addr());
    cli_ok(
        w,
        &[
            "swarm",
            "join",
            "--token",
            &worker_token,
            "--listen-port",
            "2400",
            &target,
        ],
    );
    let publish = |name: &str, port: &str| {
        let mapping = format!("{port}:80");
        try_create(m, name, &["-p", &mapping], &["sleep", "1000"])
    };
    let out = publish("web", "2400");
    let said = text(&out);
    assert!(!out.status.success(), "--publish 2400 was accepted: {said}");
    assert!(
        said.contains("port 2400/tcp is reserved") && said.contains("--listen-port"),
        "{said}"
    );
    let out = publish("web", "2401");
    assert!(out.status.success(), "{}", text(&out));
}

/// A worker's gossip key, saved while it was a member, opens the swarm's
/// gossip until `node rm` takes it out. The removal puts the node's id on
/// the refused list every node gets with its next heartbeat (500 ms), so its
/// frames and records are refused within seconds; and it rotates the key,
/// so once the old one retires (15 s: 5 s to switch, 10 s to retire) even a
/// frame under another sender id opens nothing. The remaining members keep
/// gossiping on the new key.
#[test]
fn a_removed_nodes_gossip_key_stops_working() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let (m, bad, other) = (ul.host(0), ul.host(1), ul.host(2));
    for host in [m, bad, other] {
        start_agent_with(host, &[]).expect("agent");
    }
    form(m, &[], &[bad, other]);
    wait_gossip(&[m, bad, other], 3);
    let network = cli_ok(m, &["network", "create", "--subnet", "10.41.0.0/24", "app"]);
    let bad_id = node_id(bad);
    let other_id = node_id(other);
    let stolen = save_identity(bad, "stolen");
    let key_file = bad.run_dir().join("stolen-gossip-key");
    let _ = std::fs::remove_file(&key_file);
    let (ca, manager, gossip) = (
        ca(m).display().to_string(),
        format!("{}:2377", m.addr()),
        format!("{}:7946", m.addr()),
    );
    let (cert, key) = (
        stolen.0.display().to_string(),
        stolen.1.display().to_string(),
    );
    let key_path = key_file.display().to_string();
    let send = |sender: &str, task: &str| {
        adversary(
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
                sender,
                "--network",
                &network,
                "--victim",
                &other_id,
                "--victim-task",
                "none",
                "--victim-ip",
                "10.41.0.9",
                "--honest-task",
                task,
                "--gossip-key-file",
                &key_path,
            ],
        )
    };
    let has = |task: &str| endpoints(m).iter().any(|e| e["task_id"] == task);
    // While a member, its key works (and is saved).
    let before = send(&bad_id, "adv-member");
    assert_eq!(before["answered"], true, "{before}");
    assert!(
        wait_for(Duration::from_secs(10), || has("adv-member")),
        "the member's own record never arrived"
    );
    bad.kill_processes();
    cli_ok(m, &["node", "rm", "--force", bad.name()]);
    let removed = Instant::now();

    // In its own name: refused within a few heartbeats.
    let refused_by_id = wait_until_refused(Duration::from_secs(5), || send(&bad_id, "adv-removed"));
    // Its record is dropped, and nothing it sends is taken any more.
    let after = send(&bad_id, "adv-removed-late");
    assert_eq!(after["answered"], false, "{after}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !has("adv-member") && !has("adv-removed") && !has("adv-removed-late"),
        "a removed node's records are still held: {:?}",
        endpoints(m)
    );
    // Under a made-up sender id: refused once its key is retired.
    let refused_by_key = wait_until_refused(Duration::from_secs(25), || {
        send("adv000000000000000000000x", "adv-disguised")
    });
    assert!(!has("adv-disguised"), "a disguised record was taken");
    // The members left still gossip with each other on the new key.
    wait_gossip(&[m, other], 2);
    println!(
        "after `node rm`: frames in the removed node's name refused after {refused_by_id:?}, \
         its saved key opened nothing after {refused_by_key:?} (since the removal: {:?})",
        removed.elapsed()
    );
}

/// Sends with `send` every 500 ms until a frame is no longer answered;
/// panics if that takes longer than `limit`. How long it took.
fn wait_until_refused(limit: Duration, send: impl Fn() -> serde_json::Value) -> Duration {
    let started = Instant::now();
    let mut last = serde_json::Value::Null;
    while started.elapsed() < limit {
        last = send();
        if last["answered"] == false {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "a removed node's gossip is still answered {:?} after the removal: {last}",
        started.elapsed()
    );
}

/// A worker that cannot reach the leader's 2377 (only the followers')
/// heartbeats through a follower, which relays it: it counts for the
/// worker, which stays Ready well past the time a silent node is marked
/// Down (10 s while gossip still sees it).
#[test]
fn a_heartbeat_relayed_by_a_follower_keeps_its_node_ready() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&shoal_tests::Host> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[h[1], h[2]], &[h[3]]);
    assert!(
        wait_for(Duration::from_secs(30), || reachable_managers(h[0]) == 3),
        "three managers never became reachable"
    );
    let leader_name = leader(h[0]).expect("a leader");
    let leader_host = *h
        .iter()
        .find(|x| x.name() == leader_name)
        .expect("leader host");
    let worker = h[3];
    let ready = || {
        node(&nodes(leader_host), worker.name()).is_some_and(|n| n["Status"]["State"] == "ready")
    };
    assert!(wait_for(Duration::from_secs(20), ready), "never ready");
    let rules = format!(
        "nft add table inet adversary && \
         nft add chain inet adversary out '{{ type filter hook output priority 0; }}' && \
         nft add rule inet adversary out ip daddr {} tcp dport 2377 reject with tcp reset",
        leader_host.addr()
    );
    let out = worker.sh(&rules).expect("nft");
    assert!(out.status.success(), "{}", text(&out));
    let probe = format!(
        "timeout 2 bash -c 'exec 3<>/dev/tcp/{}/2377'",
        leader_host.addr()
    );
    assert!(
        !worker.sh(&probe).expect("probe").status.success(),
        "the worker still reaches the leader's 2377"
    );
    // Sampled for 20 s: never Down.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        assert!(
            ready(),
            "{} left Ready {:?} after its leader path was cut: {:#?}",
            worker.name(),
            started.elapsed(),
            node(&nodes(leader_host), worker.name())
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
