//! The control plane end to end: real `shoal agent` daemons in namespaced
//! hosts forming a swarm over mutual TLS, managed with the real CLI.

use std::time::{Duration, Instant};

use shoal_tests::swarm::{
    cli, cli_ok, form, form_with, hostname, leader, node, nodes, reachable_managers, start_agent,
    start_agents, text, wait_for,
};
use shoal_tests::{require_root, Underlay};

/// 3 managers and 2 workers: roles and statuses, tokens, drain, promote and
/// demote, node rm refusals, leader failover, quorum loss and recovery.
#[test]
fn three_managers_two_workers() {
    require_root();
    let ul = Underlay::builder().hosts(6).build().expect("underlay");
    let h: Vec<_> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[h[1], h[2]], &[h[3], h[4]]);
    let outsider = h[5];

    // node ls shows every node Ready, with Swarm's manager statuses.
    assert!(
        wait_for(Duration::from_secs(10), || {
            let ns = nodes(h[0]);
            ns.len() == 5
                && ns.iter().all(|n| n["Status"]["State"] == "ready")
                && ns
                    .iter()
                    .filter(|n| n["ManagerStatus"]["Reachability"] == "reachable")
                    .count()
                    == 3
        }),
        "nodes never became ready and reachable: {}",
        cli_ok(h[0], &["node", "ls"])
    );
    let table = cli_ok(h[0], &["node", "ls"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("MANAGER STATUS") && table.contains("Leader") && table.contains("Reachable"),
        "{table}"
    );
    assert_eq!(
        cli_ok(
            h[1],
            &[
                "node",
                "inspect",
                "self",
                "--format",
                "{{ .ManagerStatus.Reachability }}"
            ]
        ),
        "reachable"
    );
    assert_eq!(leader(h[2]).as_deref(), Some("h1"));

    // Workers cannot read or change cluster state.
    let refused = cli(h[3], &["node", "ls"]);
    assert!(
        !refused.status.success() && text(&refused).contains("not a swarm manager"),
        "{}",
        text(&refused)
    );

    // A wrong token cannot join: a rotated-away one neither.
    let target = format!("{}:2377", h[0].addr());
    let old = cli_ok(h[0], &["swarm", "join-token", "-q", "worker"]);
    cli_ok(h[0], &["swarm", "join-token", "--rotate", "worker"]);
    let bad = cli(outsider, &["swarm", "join", "--token", &old, &target]);
    assert!(
        !bad.status.success(),
        "a rotated-away token joined: {}",
        text(&bad)
    );
    let forged = format!("{}{}", &old[..old.len() - 25], "0000000000000000000000000");
    let bad = cli(outsider, &["swarm", "join", "--token", &forged, &target]);
    assert!(
        !bad.status.success() && text(&bad).contains("join token rejected"),
        "{}",
        text(&bad)
    );

    // Drain, promote and demote as in Swarm.
    cli_ok(
        h[0],
        &[
            "node",
            "update",
            "--availability",
            "drain",
            "--label-add",
            "zone=a",
            "h4",
        ],
    );
    let ns = nodes(h[0]);
    let h4 = node(&ns, "h4").expect("h4");
    assert_eq!(h4["Spec"]["Availability"], "drain");
    assert_eq!(h4["Spec"]["Labels"]["zone"], "a");
    cli_ok(h[0], &["node", "promote", "h5"]);
    assert!(
        wait_for(Duration::from_secs(15), || {
            node(&nodes(h[0]), "h5")
                .is_some_and(|n| n["ManagerStatus"]["Reachability"] == "reachable")
        }),
        "promoted h5 never became a reachable manager: {}",
        cli_ok(h[0], &["node", "ls"])
    );
    assert!(
        cli(h[4], &["node", "ls"]).status.success(),
        "the promoted node cannot read cluster state"
    );
    cli_ok(h[0], &["node", "demote", "h5"]);
    assert!(
        wait_for(Duration::from_secs(15), || {
            node(&nodes(h[0]), "h5")
                .is_some_and(|n| n["ManagerStatus"].is_null() && n["Spec"]["Role"] == "worker")
                && !cli(h[4], &["node", "ls"]).status.success()
        }),
        "h5 was not demoted"
    );
    let rm = cli(h[0], &["node", "rm", "h2"]);
    assert!(
        !rm.status.success() && text(&rm).contains("must be demoted"),
        "{}",
        text(&rm)
    );
    let rm = cli(h[0], &["node", "rm", "h4"]);
    assert!(
        !rm.status.success() && text(&rm).contains("not down"),
        "{}",
        text(&rm)
    );

    // A manager refuses a plain leave; a worker that leaves goes Down (its
    // heartbeats stop) and can then be removed without --force.
    let leave = cli(h[1], &["swarm", "leave"]);
    assert!(
        !leave.status.success() && text(&leave).contains("--force"),
        "{}",
        text(&leave)
    );
    let left = Instant::now();
    cli_ok(h[4], &["swarm", "leave"]);
    assert!(
        wait_for(Duration::from_secs(10), || {
            node(&nodes(h[0]), "h5").is_some_and(|n| n["Status"]["State"] == "down")
        }),
        "h5 never shown down after leaving"
    );
    println!(
        "worker shown Down {} ms after it stopped heartbeating",
        left.elapsed().as_millis()
    );
    cli_ok(h[0], &["node", "rm", "h5"]);
    assert!(
        node(&nodes(h[0]), "h5").is_none(),
        "h5 still listed after node rm"
    );

    // Kill the leader: a new one is elected and h1 is shown Unreachable.
    let killed = Instant::now();
    h[0].kill_processes();
    let elected = wait_for(Duration::from_secs(10), || {
        leader(h[1]).is_some_and(|l| l != "h1")
    });
    let failover = killed.elapsed();
    assert!(
        elected,
        "no new leader after killing h1: {}",
        text(&cli(h[1], &["node", "ls"]))
    );
    println!(
        "leader failover (kill -> new leader visible in node ls): {} ms",
        failover.as_millis()
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            node(&nodes(h[1]), "h1")
                .is_some_and(|n| n["ManagerStatus"]["Reachability"] == "unreachable")
        }),
        "h1 not shown unreachable"
    );
    cli_ok(
        h[1],
        &["node", "update", "--label-add", "after=failover", "h4"],
    );

    // Kill a second manager: no quorum. Writes fail fast with the reason;
    // reads of the last known state still answer.
    let new_leader = leader(h[1]).expect("leader");
    let (victim, survivor) = if new_leader == "h2" {
        (h[1], h[2])
    } else {
        (h[2], h[1])
    };
    victim.kill_processes();
    let started = Instant::now();
    let write = cli(survivor, &["node", "update", "--label-add", "x=y", "h4"]);
    let took = started.elapsed();
    assert!(!write.status.success(), "a write succeeded without quorum");
    assert!(
        text(&write).contains("no quorum: 1 of 3 managers reachable"),
        "{}",
        text(&write)
    );
    assert!(
        took < Duration::from_secs(8),
        "the quorum error took {took:?}"
    );
    assert_eq!(
        nodes(survivor).len(),
        4,
        "reads stopped answering without quorum"
    );

    // Recover: the survivor becomes a one-manager swarm, keeping its state.
    cli_ok(
        survivor,
        &[
            "swarm",
            "init",
            "--force-new-cluster",
            "--advertise-addr",
            &survivor.addr().to_string(),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            cli(
                survivor,
                &["node", "update", "--label-add", "recovered=yes", "h4"],
            )
            .status
            .success()
        }),
        "writes still fail after --force-new-cluster"
    );
    let ns = nodes(survivor);
    assert_eq!(ns.len(), 4, "nodes lost in recovery");
    assert_eq!(
        node(&ns, "h4").expect("h4")["Spec"]["Labels"]["after"],
        "failover",
        "a committed write was lost"
    );
    assert_eq!(
        leader(survivor),
        Some(hostname(node(&ns, survivor.name()).expect("self")))
    );
}

/// 5 managers tolerate losing 2, not 3.
#[test]
fn five_managers_tolerate_two_losses() {
    require_root();
    let ul = Underlay::builder().hosts(5).build().expect("underlay");
    let h: Vec<_> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[h[1], h[2], h[3], h[4]], &[]);
    assert!(
        wait_for(Duration::from_secs(15), || {
            reachable_managers(h[4]) == 5
        }),
        "5 managers never reachable: {}",
        text(&cli(h[4], &["node", "ls"]))
    );
    h[0].kill_processes();
    h[1].kill_processes();
    assert!(
        wait_for(Duration::from_secs(10), || {
            cli(h[4], &["node", "update", "--label-add", "two=down", "h5"])
                .status
                .success()
        }),
        "writes failed with 3 of 5 managers: {}",
        text(&cli(
            h[4],
            &["node", "update", "--label-add", "two=down", "h5"]
        ))
    );
    h[2].kill_processes();
    let write = cli(h[4], &["node", "update", "--label-add", "three=down", "h5"]);
    assert!(
        !write.status.success(),
        "a write succeeded with 2 of 5 managers"
    );
    assert!(
        text(&write).contains("no quorum: 2 of 5 managers reachable"),
        "{}",
        text(&write)
    );
}

/// Certificates renew themselves before they expire: with a 6 s lifetime,
/// the nodes keep working well past it, on new certificates.
#[test]
fn certificates_renew_before_expiry() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let (m, w) = (ul.host(0), ul.host(1));
    start_agent(m).expect("agent");
    start_agent(w).expect("agent");
    form_with(m, &["--cert-expiry", "6s"], &[], &[w]);
    let cert = |h: &shoal_tests::Host| {
        std::fs::read_to_string(shoal_tests::swarm::state_dir(h).join("certs/node.pem"))
            .unwrap_or_default()
    };
    let (m_first, w_first) = (cert(m), cert(w));
    let started = Instant::now();
    // Three lifetimes: without renewal every certificate would have expired twice.
    while started.elapsed() < Duration::from_secs(18) {
        std::thread::sleep(Duration::from_secs(2));
        let ns = nodes(m);
        assert_eq!(
            ns.len(),
            2,
            "node ls failed at {:?}: {}",
            started.elapsed(),
            text(&cli(m, &["node", "ls"]))
        );
        assert!(
            wait_for(Duration::from_secs(3), || nodes(m)
                .iter()
                .all(|n| n["Status"]["State"] == "ready")),
            "a node went down at {:?}: {}",
            started.elapsed(),
            text(&cli(m, &["node", "ls"]))
        );
    }
    assert_ne!(
        cert(m),
        m_first,
        "the manager's certificate was never renewed"
    );
    assert_ne!(
        cert(w),
        w_first,
        "the worker's certificate was never renewed"
    );
    cli_ok(m, &["node", "update", "--label-add", "renewed=yes", "h2"]);
}

/// A swarm of one manager (h1) and one worker (h2).
fn manager_and_worker() -> Underlay {
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    start_agents(&[ul.host(0), ul.host(1)]);
    form(ul.host(0), &[], &[ul.host(1)]);
    ul
}

fn unlock(host: &shoal_tests::Host, key: &str) -> std::process::Output {
    let script = format!(
        "echo '{key}' | {} --run-dir {} swarm unlock",
        shoal_tests::shoal_bin().display(),
        host.run_dir().display()
    );
    host.sh(&script).expect("sh")
}

/// Autolock: keys and Raft data are encrypted at rest, and a restarted
/// manager serves nothing until it is unlocked with the key.
#[test]
fn autolocked_manager_needs_its_key_after_restart() {
    require_root();
    let ul = manager_and_worker();
    let m = ul.host(0);
    cli_ok(
        m,
        &[
            "node",
            "update",
            "--label-add",
            "secret=plaintext-canary-4711",
            "h2",
        ],
    );
    let out = cli_ok(m, &["swarm", "update", "--autolock=true"]);
    let key = cli_ok(m, &["swarm", "unlock-key", "-q"]);
    assert!(key.starts_with("SWMKEY-1-") && out.contains(&key), "{out}");

    let state = shoal_tests::swarm::state_dir(m);
    assert!(
        wait_for(Duration::from_secs(5), || {
            std::fs::read(state.join("certs/node.key"))
                .is_ok_and(|k| k.starts_with(b"shoal-sealed-v1"))
        }),
        "the manager's TLS key was not sealed"
    );
    let raft_files: Vec<_> = std::fs::read_dir(state.join("raft"))
        .expect("raft dir")
        .flatten()
        .collect();
    for f in &raft_files {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        assert!(
            !bytes
                .windows(b"plaintext-canary-4711".len())
                .any(|w| w == b"plaintext-canary-4711"),
            "{} holds cluster data in plaintext",
            f.path().display()
        );
    }

    m.kill_processes();
    start_agent(m).expect("agent restart");
    let locked = cli(m, &["node", "ls"]);
    assert!(
        !locked.status.success() && text(&locked).contains("needs to be unlocked"),
        "{}",
        text(&locked)
    );
    let wrong = unlock(
        m,
        "SWMKEY-1-00000000000000000000000000000000000000000000000000",
    );
    assert!(
        !wrong.status.success() && text(&wrong).contains("invalid unlock key"),
        "{}",
        text(&wrong)
    );
    let ok = unlock(m, &key);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        wait_for(Duration::from_secs(10), || cli(m, &["node", "ls"])
            .status
            .success()),
        "still locked"
    );
    let ns = nodes(m);
    assert_eq!(
        node(&ns, "h2").expect("h2")["Spec"]["Labels"]["secret"],
        "plaintext-canary-4711"
    );
    cli_ok(m, &["node", "update", "--label-add", "unlocked=yes", "h2"]);
}

/// Backup and restore as the README documents: stop the manager, copy its
/// state dir; to restore, put the copy back and `swarm init --force-new-cluster`.
#[test]
fn backup_and_restore_a_manager() {
    require_root();
    let ul = manager_and_worker();
    let m = ul.host(0);
    cli_ok(m, &["node", "update", "--label-add", "backed=up", "h2"]);
    let state = shoal_tests::swarm::state_dir(m);
    let backup = m.run_dir().join("backup");

    m.kill_processes();
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(&state)
        .arg(&backup)
        .status()
        .expect("cp");
    assert!(copy.success());
    start_agent(m).expect("agent restart");
    assert!(
        wait_for(Duration::from_secs(10), || cli(m, &["node", "ls"])
            .status
            .success()),
        "manager did not come back"
    );
    cli_ok(m, &["node", "update", "--label-add", "after=backup", "h2"]);

    // Disaster: the state is lost. Restore the backup.
    m.kill_processes();
    std::fs::remove_dir_all(&state).expect("wipe");
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(&backup)
        .arg(&state)
        .status()
        .expect("cp");
    assert!(copy.success());
    start_agent(m).expect("agent restart");
    cli_ok(
        m,
        &[
            "swarm",
            "init",
            "--force-new-cluster",
            "--advertise-addr",
            &m.addr().to_string(),
        ],
    );
    assert!(
        wait_for(Duration::from_secs(10), || cli(
            m,
            &["node", "update", "--label-add", "restored=yes", "h2"]
        )
        .status
        .success()),
        "writes fail after the restore"
    );
    let ns = nodes(m);
    assert_eq!(ns.len(), 2, "the restored swarm lost nodes");
    let h2 = node(&ns, "h2").expect("h2");
    assert_eq!(h2["Spec"]["Labels"]["backed"], "up");
    assert!(
        h2["Spec"]["Labels"]["after"].is_null(),
        "a change made after the backup survived the restore"
    );
    assert!(
        wait_for(Duration::from_secs(10), || node(&nodes(m), "h2")
            .is_some_and(|n| n["Status"]["State"] == "ready")),
        "the worker did not reconnect to the restored manager"
    );
}

/// Leader failover, measured over repeated kills of the leader: the time
/// from SIGKILL to another manager showing a new leader in `node ls`. The
/// killed manager is restarted from its state dir and rejoins each round.
/// Prints the median; asserts only that every round elects a leader.
#[test]
fn leader_failover_median() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<_> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[h[1], h[2]], &[]);
    let all_reachable = |from: &shoal_tests::Host| reachable_managers(from) == 3;
    assert!(
        wait_for(Duration::from_secs(15), || all_reachable(h[0])),
        "managers never all reachable"
    );
    let mut times = Vec::new();
    for round in 0..5 {
        let old = (0..3).find_map(|i| leader(h[i])).expect("a leader");
        let victim = h.iter().find(|x| x.name() == old).expect("leader host");
        let observer = h.iter().find(|x| x.name() != old).expect("observer");
        let killed = Instant::now();
        victim.kill_processes();
        assert!(
            wait_for(Duration::from_secs(10), || leader(observer)
                .is_some_and(|l| l != old)),
            "round {round}: no new leader after killing {old}"
        );
        times.push(killed.elapsed());
        start_agent(victim).expect("restart");
        assert!(
            wait_for(Duration::from_secs(15), || all_reachable(observer)),
            "round {round}: {old} did not rejoin"
        );
    }
    times.sort();
    let ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
    println!(
        "leader failover over {} kills: median {} ms, all {:?} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms
    );
}

/// Kill the leader during a stream of writes: every write the CLI reported
/// as done is present afterwards on the surviving managers.
#[test]
fn no_acknowledged_write_is_lost_when_the_leader_dies() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<_> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[h[1], h[2]], &[]);
    assert!(
        wait_for(Duration::from_secs(15), || {
            reachable_managers(h[0]) == 3
        }),
        "managers never all reachable"
    );
    let old = leader(h[0]).expect("leader");
    let writer = h.iter().copied().find(|x| x.name() != old).expect("writer");
    let victim = h.iter().copied().find(|x| x.name() == old).expect("victim");
    let target = writer.name().to_string();
    let acked = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            let mut acked = Vec::new();
            let started = Instant::now();
            for i in 0..400 {
                if started.elapsed() > Duration::from_secs(20) {
                    break;
                }
                if cli(
                    writer,
                    &["node", "update", "--label-add", &format!("w{i}=v"), &target],
                )
                .status
                .success()
                {
                    acked.push(i);
                }
            }
            acked
        });
        std::thread::sleep(Duration::from_millis(800));
        victim.kill_processes();
        stream.join().expect("writer thread")
    });
    assert!(
        acked.len() > 20,
        "too few writes succeeded to mean anything: {}",
        acked.len()
    );
    for survivor in h.iter().filter(|x| x.name() != old) {
        let ns = nodes(survivor);
        let labels = &node(&ns, &target).expect("target node")["Spec"]["Labels"];
        let missing: Vec<_> = acked
            .iter()
            .filter(|i| labels[format!("w{i}")].is_null())
            .collect();
        assert!(
            missing.is_empty(),
            "{} lost acknowledged writes {missing:?}",
            survivor.name()
        );
    }
    println!(
        "{} acknowledged writes across the leader's death, none lost",
        acked.len()
    );
}
