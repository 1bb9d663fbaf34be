//! Managers that each listen on a different `--listen-port` form one Raft
//! group: every manager reaches the others on the port each one recorded
//! when it joined, not on its own.

use std::time::Duration;

use shoal_tests::swarm::{
    cli, cli_ok, create, leader, nodes, start_agents, text, wait_for, wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// The services `host` lists (names), empty if it cannot list them.
fn service_names(host: &Host) -> Vec<String> {
    let out = cli(host, &["service", "ls", "--format", "{{.Name}}"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn managers_on_different_listen_ports_form_a_group_and_survive_the_leaders_loss() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start_agents(&h);
    let addr = h[0].addr().to_string();
    cli_ok(
        h[0],
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &addr,
            "--listen-port",
            "2401",
        ],
    );
    let token = cli_ok(h[0], &["swarm", "join-token", "-q", "manager"]);
    let first = format!("{addr}:2401");
    for (host, port) in [(h[1], "2402"), (h[2], "2403")] {
        cli_ok(
            host,
            &[
                "swarm",
                "join",
                "--token",
                &token,
                "--listen-port",
                port,
                &first,
            ],
        );
    }
    let grouped = wait_for(Duration::from_secs(60), || {
        h.iter().all(|host| {
            let ns = nodes(host);
            ns.len() == 3
                && ns
                    .iter()
                    .all(|n| n["ManagerStatus"]["Reachability"] == "reachable")
        })
    });
    assert!(
        grouped,
        "the managers never all saw each other reachable: {}",
        h.iter()
            .map(|host| text(&cli(host, &["node", "ls"])))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A write on one manager is seen on the others.
    create(h[1], "web", &["--replicas", "3"], &["sleep", "1000"]);
    for host in &h {
        assert!(
            wait_for(Duration::from_secs(30), || service_names(host)
                .contains(&"web".to_string())),
            "{} does not list the service created on h2",
            host.name()
        );
    }
    wait_running(h[2], "web", 3, Duration::from_secs(60));

    // The leader's loss: the other two elect a new one, over their ports,
    // and take writes.
    let old = leader(h[1]).expect("a leader");
    let victim = h.iter().find(|x| x.name() == old).expect("leader's host");
    let survivors: Vec<&Host> = h.iter().copied().filter(|x| x.name() != old).collect();
    victim.kill_processes();
    let elected = wait_for(Duration::from_secs(30), || {
        leader(survivors[0]).is_some_and(|l| l != old)
    });
    assert!(
        elected,
        "no new leader after killing {old}: {}",
        text(&cli(survivors[0], &["node", "ls"]))
    );
    create(
        survivors[0],
        "after",
        &["--replicas", "1"],
        &["sleep", "1000"],
    );
    assert!(
        wait_for(Duration::from_secs(30), || service_names(survivors[1])
            .contains(&"after".to_string())),
        "{} does not list the service created after the failover",
        survivors[1].name()
    );
}
