//! Everyday operations on namespaced hosts with the real binary: a second
//! agent on the same state and run dirs is refused while the first keeps
//! serving, a network MTU no packet could carry is refused, and the ingress
//! network is neither removed nor joined with `--network`.

use std::time::Duration;

use shoal_tests::swarm::{cli, cli_ok, form, start_agent_with, state_dir, text, wait_for};
use shoal_tests::{require_root, Host, Underlay};

#[test]
fn a_second_agent_on_the_same_dirs_is_refused_and_the_first_keeps_serving() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: &Host = &ul.hosts()[0];
    let first = start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    let state = state_dir(h).to_string_lossy().to_string();
    let second = h
        .spawn_shoal(&["agent", "--state-dir", &state, "--hostname", h.name()])
        .expect("second agent starts");
    let exited = wait_for(Duration::from_secs(10), || h.exit_status(second).is_some());
    let log = h
        .log_path(second)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    assert!(exited, "the second agent still runs:\n{log}");
    let status = h.exit_status(second).expect("exit status");
    assert!(!status.success(), "the second agent exited 0:\n{log}");
    assert!(
        log.contains(&format!("another shoal agent (pid {first}) already uses")),
        "{log}"
    );
    // The first one still owns its socket and answers.
    assert!(h.exit_status(first).is_none(), "the first agent died");
    let nodes = cli_ok(h, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    assert_eq!(nodes.trim(), format!("{} Ready", h.name()));
}

#[test]
fn a_network_mtu_beyond_what_vxlan_can_carry_is_refused() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: &Host = &ul.hosts()[0];
    start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    let out = cli(h, &["network", "create", "--opt", "mtu=70000", "badmtu"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("MTU 70000 is above 65485"),
        "{}",
        text(&out)
    );
    let names = cli_ok(h, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!names.lines().any(|n| n == "badmtu"), "{names}");
    // The largest allowed MTU is accepted and inspectable.
    cli_ok(h, &["network", "create", "--opt", "mtu=9000", "jumbo"]);
    let mtu = cli_ok(
        h,
        &[
            "network",
            "inspect",
            "--format",
            "{{index .Options \"com.docker.network.driver.mtu\"}}",
            "jumbo",
        ],
    );
    assert_eq!(mtu, "9000");
}

#[test]
fn the_ingress_network_is_neither_removed_unconfirmed_nor_joined_explicitly() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: &Host = &ul.hosts()[0];
    start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    cli_ok(h, &["network", "create", "app"]);
    // Without a terminal to confirm on and without --force, it is refused
    // (ingress.rs removes it the ways Docker allows).
    let out = cli(h, &["network", "rm", "ingress"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("routing-mesh") && text(&out).contains("--force"),
        "{}",
        text(&out)
    );
    let names = cli_ok(h, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(names.lines().any(|n| n == "ingress"), "{names}");
    let out = cli(
        h,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "x",
            "--network",
            "ingress",
            "--",
            "sleep",
            "100",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cannot be explicitly attached to the ingress network"),
        "{}",
        text(&out)
    );
    let services = cli_ok(h, &["service", "ls", "-q"]);
    assert!(services.is_empty(), "{services}");
}

#[test]
fn a_crashing_slot_keeps_five_tasks_in_all_as_swarm_does() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: &Host = &ul.hosts()[0];
    start_agent_with(h, &[]).expect("agent");
    form(h, &[], &[]);
    shoal_tests::swarm::create(
        h,
        "crash",
        &["--restart-delay", "200ms"],
        &["sh", "-c", "exit 3"],
    );
    let mut most = 0;
    let mut failed_seen = 0;
    let enough = wait_for(Duration::from_secs(40), || {
        let tasks = shoal_tests::swarm::tasks(h, &["service", "ps", "crash"]);
        most = most.max(tasks.len());
        failed_seen = tasks
            .iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Failed")
            })
            .count();
        failed_seen >= 4
    });
    assert!(enough, "the task did not crash four times");
    // Watch a few more restarts: never more than five tasks for the slot.
    let end = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < end {
        let n = shoal_tests::swarm::tasks(h, &["service", "ps", "crash"]).len();
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most, 5, "the slot's history reached {most} tasks");
}

#[test]
fn the_task_history_limit_is_set_at_init_and_changed_with_update() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: &Host = &ul.hosts()[0];
    start_agent_with(h, &[]).expect("agent");
    shoal_tests::swarm::form_with(h, &["--task-history-limit", "2"], &[], &[]);
    shoal_tests::swarm::create(
        h,
        "crash",
        &["--restart-delay", "200ms"],
        &["sh", "-c", "exit 3"],
    );
    let count = || shoal_tests::swarm::tasks(h, &["service", "ps", "crash"]).len();
    let failed = || {
        shoal_tests::swarm::tasks(h, &["service", "ps", "crash"])
            .iter()
            .filter(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Failed")
            })
            .count()
    };
    // Watch several restarts: never more than two tasks for the slot.
    let mut most = 0;
    let end = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < end {
        most = most.max(count());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(failed() >= 1, "the task never crashed");
    assert_eq!(most, 2, "the slot's history reached {most} tasks");

    // Raised to 4: the slot grows to four and no further.
    cli_ok(h, &["swarm", "update", "--task-history-limit", "4"]);
    let grown = wait_for(Duration::from_secs(30), || count() == 4);
    assert!(grown, "the history did not grow to 4: {}", count());
    let end = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < end {
        most = most.max(count());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most, 4, "the slot's history reached {most} tasks");
}
