//! `shoal network` end to end: allocation, Docker's output shapes, refusals,
//! and networks reaching a worker's overlay without any command there.

use std::time::Duration;

use serde_json::Value;
use shoal_tests::overlay::Topology;
use shoal_tests::swarm::{cli, cli_ok, form, start_agents, text, wait_for};
use shoal_tests::{require_root, Underlay};

#[test]
fn networks_are_allocated_listed_refused_and_reach_workers() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<_> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[], &[h[1]]);

    let web = cli_ok(h[0], &["network", "create", "web"]);
    assert!(
        web.len() == 25
            && web
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
        "{web}"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "network",
                "inspect",
                "web",
                "--format",
                "{{json .IPAM.Config}}"
            ]
        ),
        r#"[{"Gateway":"10.0.0.1","Subnet":"10.0.0.0/24"}]"#
    );
    assert_eq!(
        cli_ok(
            h[0],
            &["network", "inspect", "web", "--format", "{{json .Options}}"]
        ),
        r#"{"com.docker.network.driver.overlay.vxlanid_list":"4097"}"#
    );
    cli_ok(h[0], &["network", "create", "b"]);
    let b: Value = serde_json::from_str(&cli_ok(h[0], &["network", "inspect", "b"])).expect("json");
    assert_eq!(b[0]["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
    assert_eq!(
        b[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4098"
    );
    cli_ok(
        h[0],
        &[
            "network",
            "create",
            "--subnet",
            "10.1.2.0/24",
            "--gateway",
            "10.1.2.254",
            "--opt",
            "mtu=1400",
            "--label",
            "team=a",
            "backend",
        ],
    );
    let backend: Value =
        serde_json::from_str(&cli_ok(h[0], &["network", "inspect", "backend"])).expect("json");
    assert_eq!(backend[0]["IPAM"]["Config"][0]["Gateway"], "10.1.2.254");
    assert_eq!(
        backend[0]["Options"]["com.docker.network.driver.mtu"],
        "1400"
    );

    // Refusals: clear errors, nothing created.
    for (args, message) in [
        (vec!["web"], "network with name web already exists"),
        (vec!["--driver", "bridge", "x"], "not supported"),
        (
            vec!["--subnet", "10.1.2.3/24", "x"],
            "did you mean 10.1.2.0/24",
        ),
        (vec!["--subnet", "10.1.0.0/16", "x"], "backend"),
        (vec!["--opt", "mtu=100", "x"], "below the IPv4 minimum"),
    ] {
        let mut full = vec!["network", "create"];
        full.extend(args);
        let out = cli(h[0], &full);
        assert!(
            !out.status.success() && text(&out).contains(message),
            "`{}` did not fail with `{message}`: {}",
            full.join(" "),
            text(&out)
        );
    }
    let ls = cli_ok(h[0], &["network", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("NETWORK ID"), "{ls}");
    assert_eq!(lines.len(), 5, "{ls}");
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(names, ["b", "backend", "ingress", "web"], "{ls}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("overlay") && l.ends_with("swarm")),
        "{ls}"
    );
    assert!(cli_ok(h[0], &["network", "ls", "-q"])
        .lines()
        .all(|l| l.len() == 12));

    // The worker's overlay gets every network, with no command on it.
    assert!(
        wait_for(Duration::from_secs(10), || {
            [&web]
                .iter()
                .all(|id| Topology::network_ns(h[1], id).exists())
        }),
        "network web never reached the worker's overlay"
    );
    let refused = cli(h[1], &["network", "ls"]);
    assert!(
        !refused.status.success() && text(&refused).contains("not a swarm manager"),
        "{}",
        text(&refused)
    );

    // rm: removes, carries on past an unknown name, exits 1; the worker's
    // overlay drops the network.
    let out = cli(h[0], &["network", "rm", "web", "nope"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    assert!(
        text(&out).contains("network nope not found"),
        "{}",
        text(&out)
    );
    assert!(
        wait_for(Duration::from_secs(10), || !Topology::network_ns(
            h[1], &web
        )
        .exists()),
        "the removed network stayed on the worker"
    );

    // Leaving the swarm tears the worker's overlay down.
    cli_ok(h[0], &["network", "create", "last"]);
    let last = cli_ok(
        h[0],
        &["network", "inspect", "last", "--format", "{{ .Id }}"],
    );
    assert!(
        wait_for(Duration::from_secs(10), || Topology::network_ns(
            h[1], &last
        )
        .exists()),
        "network last never reached the worker"
    );
    cli_ok(h[1], &["swarm", "leave"]);
    assert!(
        !Topology::network_ns(h[1], &last).exists(),
        "the overlay stayed after `swarm leave`"
    );
}
