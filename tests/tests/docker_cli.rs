//! Docker's CLI habits end to end, with the real binary on namespaced
//! hosts: `--format` Go templates on `ls` rows and on `inspect` objects
//! (Docker's JSON shapes), `--filter` with Docker's keys and matching rules,
//! the `*` on this node, `node inspect --pretty`, and unknown flags refused
//! before anything is created.

use std::time::Duration;

use shoal_tests::swarm::{cli, cli_ok, create, form, start_agents, text, wait_for};
use shoal_tests::{require_root, Host, Underlay};

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// `shoal ARGS` on `host`: it must fail; returns (exit code, stderr).
fn refused(host: &Host, args: &[&str]) -> (Option<i32>, String) {
    let out = cli(host, args);
    assert!(
        !out.status.success(),
        "`shoal {}` succeeded: {}",
        args.join(" "),
        text(&out)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn formats_filters_and_flags_as_docker() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start_agents(&h);
    form(h[0], &[], &h[1..]);

    // node ls: Docker's row fields, sorted by hostname; filters by role
    // and by name prefix.
    let ready = wait_for(Duration::from_secs(15), || {
        cli_ok(
            h[0],
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        ) == "h1 Ready\nh2 Ready\nh3 Ready"
    });
    assert!(ready, "{}", cli_ok(h[0], &["node", "ls"]));
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "node",
                "ls",
                "--filter",
                "role=worker",
                "--format",
                "{{.Hostname}}"
            ]
        ),
        "h2\nh3"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "node",
                "ls",
                "-f",
                "role=manager",
                "--format",
                "{{.Hostname}}: {{.ManagerStatus}}"
            ]
        ),
        "h1: Leader"
    );
    let h2_id = cli_ok(h[0], &["node", "ls", "--filter", "name=h2", "-q"]);
    assert_eq!(h2_id.len(), 25, "{h2_id}");
    let (_, err) = refused(h[0], &["node", "ls", "--filter", "colour=red"]);
    assert!(err.contains("Invalid filter 'colour'"), "{err}");

    // The `*` marks the node the CLI talks to.
    let table = cli_ok(h[0], &["node", "ls"]);
    let rows = lines(&table);
    assert!(
        rows[0].starts_with("ID ") && rows[0].contains("MANAGER STATUS"),
        "{table}"
    );
    for row in &rows[1..] {
        let marked = row.split_whitespace().nth(1) == Some("*");
        assert_eq!(marked, row.contains(" h1 "), "{table}");
    }

    // inspect: Docker's Node, and --pretty.
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "node",
                "inspect",
                "self",
                "--format",
                "{{.Description.Hostname}} {{.Spec.Role}} {{.ManagerStatus.Leader}}"
            ]
        ),
        "h1 manager true"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "node",
                "inspect",
                &h2_id,
                "--format",
                "{{.Spec.Availability}} {{.Status.State}}"
            ]
        ),
        "active ready"
    );
    let pretty = cli_ok(h[0], &["node", "inspect", "--pretty", "self"]);
    for line in [
        "Hostname:              \th1",
        "Manager Status:",
        " Leader:\t\tYes",
        " State:\t\t\tReady",
    ] {
        assert!(pretty.contains(line), "{line:?} not in\n{pretty}");
    }

    // An unknown flag is refused as Docker refuses it, and nothing is made.
    let (code, err) = refused(
        h[0],
        &[
            "service",
            "create",
            "--name",
            "x",
            "--bogus-flag",
            "--",
            "sleep",
            "100",
        ],
    );
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.starts_with("unknown flag: --bogus-flag\nSee 'shoal service create --help'."),
        "{err}"
    );
    let (_, err) = refused(h[0], &["node", "ls", "-z"]);
    assert!(
        err.starts_with("unknown shorthand flag: 'z' in -z"),
        "{err}"
    );

    // Flags after the command are the command's; `--` still separates.
    create(h[0], "web", &["--replicas", "2"], &["sleep", "1000"]);
    create(
        h[0],
        "webapp",
        &["--label", "tier=front"],
        &["sleep", "1000"],
    );
    create(h[0], "agent", &["--mode", "global"], &["sleep", "1000"]);
    cli_ok(
        h[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "tailer",
            "--runtime",
            "process",
            "tail",
            "-f",
            "/dev/null",
        ],
    );
    assert_eq!(
        cli_ok(h[0], &["service", "ls", "--format", "{{.Name}}"]),
        "agent\ntailer\nweb\nwebapp",
        "no service `x`, sorted by name"
    );

    // service inspect: Docker's Service.
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}}"
            ]
        ),
        "2"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "service",
                "inspect",
                "tailer",
                "--format",
                "{{json .Spec.TaskTemplate.ContainerSpec.Args}}"
            ]
        ),
        r#"["tail","-f","/dev/null"]"#
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "service",
                "inspect",
                "agent",
                "--format",
                "{{json .Spec.Mode}} {{index .Spec.Labels \"tier\"}}|"
            ]
        ),
        r#"{"Global":{}} |"#
    );
    let created = cli_ok(
        h[0],
        &["service", "inspect", "web", "--format", "{{.CreatedAt}}"],
    );
    let rfc3339 = created.len() >= 20
        && created.as_bytes()[4] == b'-'
        && created.as_bytes()[10] == b'T'
        && created.ends_with('Z');
    assert!(rfc3339, "CreatedAt is not RFC 3339: {created}");

    // service ls filters: names by prefix, labels, modes.
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "service",
                "ls",
                "--filter",
                "name=web",
                "--format",
                "{{.Name}}"
            ]
        ),
        "web\nwebapp"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "service",
                "ls",
                "--filter",
                "label=tier=front",
                "--format",
                "{{.Name}}"
            ]
        ),
        "webapp"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "service",
                "ls",
                "-f",
                "mode=global",
                "--format",
                "{{.Name}} {{.Mode}}"
            ]
        ),
        "agent global"
    );
    let (_, err) = refused(h[0], &["service", "ls", "--filter", "bogus=1"]);
    assert!(err.contains("Invalid filter 'bogus'"), "{err}");

    // service ps / node ps filters: desired state, node by hostname.
    let running = wait_for(Duration::from_secs(30), || {
        cli_ok(
            h[0],
            &[
                "service",
                "ps",
                "web",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Name}} {{.CurrentState}}",
            ],
        )
        .lines()
        .filter(|l| l.contains(" Running "))
        .count()
            == 2
    });
    assert!(running, "{}", cli_ok(h[0], &["service", "ps", "web"]));
    let on_h2 = cli_ok(
        h[0],
        &[
            "service",
            "ps",
            "agent",
            "--filter",
            "node=h2",
            "--format",
            "{{.Node}}",
        ],
    );
    assert_eq!(on_h2, "h2");
    let on_h3 = cli_ok(
        h[0],
        &[
            "node",
            "ps",
            "h3",
            "--filter",
            "name=agent",
            "--format",
            "{{.Name}}",
        ],
    );
    assert!(on_h3.starts_with("agent."), "{on_h3}");
    let (_, err) = refused(
        h[0],
        &["service", "ps", "web", "--filter", "desired-state=sleeping"],
    );
    assert!(
        err.contains("Invalid desired-state filter: 'sleeping'"),
        "{err}"
    );

    // network ls: Docker's filters (names match in part).
    cli_ok(
        h[0],
        &["network", "create", "--label", "team=a", "frontend"],
    );
    cli_ok(h[0], &["network", "create", "backend"]);
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "network",
                "ls",
                "--filter",
                "name=end",
                "--format",
                "{{.Name}}"
            ]
        ),
        "backend\nfrontend"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "network",
                "ls",
                "--filter",
                "label=team=a",
                "--format",
                "{{.Name}} {{.Label \"team\"}}"
            ]
        ),
        "frontend a"
    );
    assert_eq!(
        cli_ok(
            h[0],
            &[
                "network",
                "inspect",
                "frontend",
                "--format",
                "{{.Scope}} {{.Driver}} {{.Labels.team}}"
            ]
        ),
        "swarm overlay a"
    );

    for service in ["web", "webapp", "agent", "tailer"] {
        cli_ok(h[0], &["service", "rm", service]);
    }
}
