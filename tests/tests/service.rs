//! `shoal service` end to end on namespaced hosts: tasks run as real
//! processes in sandboxes on the overlay; spread and binpack placement,
//! reachability by IP across hosts, drain, replacement after a worker's
//! agent is killed, global services, rolling updates and rollback, the
//! tasks' logs read from every node, and the refusals of bad input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use shoal_tests::overlay::Topology;
use shoal_tests::swarm::{
    cli, cli_ok, create, form, running, start_agent_with, tasks, text, wait_for, wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// A task that serves HTTP on 8080 and answers with its hostname-less id.
const SERVE: &[&str] = &["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"];

fn start(hosts: &[&Host]) {
    for host in hosts {
        start_agent_with(host, &["--cpus", "2", "--memory", "4G"])
            .unwrap_or_else(|e| panic!("agent on {}: {e}", host.name()));
    }
}

/// A swarm of h1 (manager) and every other host of `ul` (workers). The
/// manager is drained, so it runs no tasks, as in most Swarm deployments.
fn drained_manager_and_workers(ul: &Underlay) -> Vec<&Host> {
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start(&h);
    form(h[0], &[], &h[1..]);
    cli_ok(
        h[0],
        &["node", "update", "--availability", "drain", h[0].name()],
    );
    h
}

/// Running tasks per node hostname.
fn per_node(host: &Host, service: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in running(host, service) {
        *m.entry(t["Node"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    m
}

/// The task's sandbox namespace file on the host that runs it.
fn sandbox(hosts: &[&Host], task: &Value) -> (usize, std::path::PathBuf) {
    let node = task["Node"].as_str().unwrap_or_default();
    let i = hosts
        .iter()
        .position(|h| h.name() == node)
        .unwrap_or_else(|| panic!("no host {node}"));
    let id = task["ID"].as_str().unwrap_or_default();
    (i, Topology::sandbox_ns(hosts[i], id))
}

fn ip_of(task: &Value) -> String {
    let addr = task["Addresses"][0].as_str().unwrap_or_default();
    addr.split('=').nth(1).unwrap_or_default().to_string()
}

#[test]
fn replicated_services_spread_binpack_drain_and_survive_a_worker_kill() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h = drained_manager_and_workers(&ul);
    cli_ok(h[0], &["network", "create", "app"]);

    create(h[0], "web", &["--replicas", "6", "--network", "app"], SERVE);
    wait_running(h[0], "web", 6, Duration::from_secs(30));
    let spread = per_node(h[0], "web");
    assert_eq!(
        spread.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{spread:?}"
    );

    // Each task runs in its own sandbox on the overlay, with its own
    // resolv.conf and cgroup.
    let all = running(h[0], "web");
    let a = all
        .iter()
        .find(|t| t["Node"] == h[1].name())
        .expect("a task on h1");
    let b = all
        .iter()
        .find(|t| t["Node"] == h[2].name())
        .expect("a task on h2");
    let pid = a["Pid"].as_u64().expect("pid") as u32;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(cgroup.contains(a["ID"].as_str().unwrap()), "{cgroup}");
    let resolv =
        std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf")).unwrap_or_default();
    assert!(resolv.starts_with("# written by shoal"), "{resolv}");
    let (_, ns_a) = sandbox(&h, a);
    // Across hosts, by IP, over VXLAN.
    let url = format!("http://{}:8080/", ip_of(b));
    let reached = wait_for(Duration::from_secs(10), || {
        Topology::run_in(&ns_a, "curl", &["-sf", "-m", "2", "-o", "/dev/null", &url])
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    assert!(reached, "task {} could not reach {url}", a["Name"]);

    // Drain a worker: its tasks move.
    cli_ok(
        h[0],
        &["node", "update", "--availability", "drain", h[3].name()],
    );
    let moved = wait_for(Duration::from_secs(30), || {
        let m = per_node(h[0], "web");
        !m.contains_key(h[3].name()) && m.values().sum::<usize>() == 6
    });
    assert!(moved, "{:?}", per_node(h[0], "web"));
    cli_ok(
        h[0],
        &["node", "update", "--availability", "active", h[3].name()],
    );

    // Binpack with reservations fills one node first: 2 CPUs per node,
    // 0.5 reserved per task, so 4 fit on one node.
    create(
        h[0],
        "packed",
        &[
            "--replicas",
            "6",
            "--strategy",
            "binpack",
            "--reserve-cpu",
            "0.5",
        ],
        &["sleep", "100000"],
    );
    wait_running(h[0], "packed", 6, Duration::from_secs(30));
    let mut packed: Vec<usize> = per_node(h[0], "packed").into_values().collect();
    packed.sort();
    assert_eq!(packed, vec![2, 4]);
    cli_ok(h[0], &["service", "rm", "packed"]);

    // SIGKILL a worker's agent: its tasks are replaced on the others.
    let victim = h[1];
    let before = per_node(h[0], "web")
        .get(victim.name())
        .copied()
        .unwrap_or(0);
    assert!(before > 0);
    let pids = victim.pids();
    let killed = Instant::now();
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let replaced = wait_for(Duration::from_secs(30), || {
        let m = per_node(h[0], "web");
        !m.contains_key(victim.name()) && m.values().sum::<usize>() == 6
    });
    let took = killed.elapsed();
    assert!(replaced, "not replaced: {:?}", per_node(h[0], "web"));
    eprintln!(
        "replacement: {before} tasks of a killed worker running elsewhere {} ms after SIGKILL",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn global_services_run_once_per_node_including_late_joiners() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start(&h[..2]);
    form(h[0], &[], &[h[1]]);
    create(h[0], "agent", &["--mode", "global"], &["sleep", "100000"]);
    wait_running(h[0], "agent", 2, Duration::from_secs(30));
    start(&h[2..]);
    let token = cli_ok(h[0], &["swarm", "join-token", "-q", "worker"]);
    cli_ok(
        h[2],
        &[
            "swarm",
            "join",
            "--token",
            &token,
            &format!("{}:2377", h[0].addr()),
        ],
    );
    wait_running(h[0], "agent", 3, Duration::from_secs(30));
    let nodes = per_node(h[0], "agent");
    assert!(nodes.values().all(|&n| n == 1), "{nodes:?}");
    // `node ps` on the newcomer shows its task.
    let on_new = tasks(h[0], &["node", "ps", h[2].name()]);
    assert_eq!(on_new.len(), 1, "{on_new:#?}");
    assert!(on_new[0]["Name"]
        .as_str()
        .unwrap_or_default()
        .starts_with("agent."));
}

#[test]
fn rolling_updates_go_two_at_a_time_and_failed_updates_roll_back() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h = drained_manager_and_workers(&ul);
    create(
        h[0],
        "web",
        &[
            "--replicas",
            "6",
            "--update-parallelism",
            "2",
            "--update-monitor",
            "1s",
            "--update-failure-action",
            "rollback",
            "--rollback-monitor",
            "1s",
            "--rollback-parallelism",
            "0",
        ],
        &["sleep", "100000"],
    );
    wait_running(h[0], "web", 6, Duration::from_secs(30));
    let first: Vec<String> = running(h[0], "web")
        .iter()
        .map(|t| t["ID"].as_str().unwrap_or_default().to_string())
        .collect();

    cli_ok(
        h[0],
        &["service", "update", "--detach", "--env-add", "V=2", "web"],
    );
    let done = wait_for(Duration::from_secs(60), || {
        let r = running(h[0], "web");
        r.len() == 6
            && r.iter()
                .all(|t| !first.contains(&t["ID"].as_str().unwrap_or_default().to_string()))
    });
    assert!(done, "{:#?}", tasks(h[0], &["service", "ps", "web"]));
    // New tasks were created in batches of two, each a monitor period apart.
    let mut created: Vec<u64> = running(h[0], "web")
        .iter()
        .map(|t| t["CreatedAtMs"].as_u64().unwrap_or(0))
        .collect();
    created.sort();
    let mut batches = vec![1];
    for pair in created.windows(2) {
        if pair[1] - pair[0] > 500 {
            batches.push(1);
        } else if let Some(last) = batches.last_mut() {
            *last += 1;
        }
    }
    assert_eq!(batches, vec![2, 2, 2], "creation times {created:?}");

    // An update whose tasks fail rolls back to the previous spec.
    cli_ok(
        h[0],
        &[
            "service",
            "update",
            "--detach",
            "web",
            "--",
            "sh",
            "-c",
            "sleep 0.3; exit 1",
        ],
    );
    let rolled = wait_for(Duration::from_secs(60), || {
        let out = cli(h[0], &["service", "inspect", "web"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v[0]["UpdateStatus"]["State"] == "rollback_completed"
    });
    assert!(
        rolled,
        "{}",
        text(&cli(h[0], &["service", "inspect", "web"]))
    );
    wait_running(h[0], "web", 6, Duration::from_secs(30));
    assert!(running(h[0], "web")
        .iter()
        .all(|t| t["Command"][0] == "sleep"));
}

/// `service logs` lines: `web.1.<id12>@h2    | text` -> (prefix, text).
fn log_lines(output: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(output)
        .lines()
        .filter_map(|l| l.split_once("    | "))
        .map(|(prefix, text)| (prefix.trim_end().to_string(), text.to_string()))
        .collect()
}

/// Docker's prefix of a task in `service logs`.
fn log_prefix(task: &Value) -> String {
    let id = task["ID"].as_str().unwrap_or_default();
    format!(
        "{}.{}@{}",
        task["Name"].as_str().unwrap_or_default(),
        &id[..12],
        task["Node"].as_str().unwrap_or_default()
    )
}

/// The highest `line N` a task printed in `lines`.
fn last_line(lines: &[(String, String)], prefix: &str) -> Option<u64> {
    lines
        .iter()
        .filter(|(p, _)| p == prefix)
        .filter_map(|(_, text)| text.strip_prefix("line ")?.parse().ok())
        .max()
}

#[test]
fn logs_come_from_every_node_with_tail_and_follow() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h = drained_manager_and_workers(&ul);
    let script = "echo hello; echo oops >&2; i=0; \
                  while true; do echo line $i; i=$((i+1)); sleep 0.2; done";
    create(h[0], "web", &["--replicas", "2"], &["sh", "-c", script]);
    wait_running(h[0], "web", 2, Duration::from_secs(30));
    let web = running(h[0], "web");
    let nodes: Vec<&str> = web.iter().filter_map(|t| t["Node"].as_str()).collect();
    assert!(
        nodes.contains(&h[1].name()) && nodes.contains(&h[2].name()),
        "{web:#?}"
    );
    let prefixes: Vec<String> = web.iter().map(log_prefix).collect();
    // Let each print a few lines.
    std::thread::sleep(Duration::from_secs(1));

    // Everything so far, from both workers; stderr's line on stderr.
    let all = cli(h[0], &["service", "logs", "web"]);
    assert!(all.status.success(), "{}", text(&all));
    let (out, err) = (log_lines(&all.stdout), log_lines(&all.stderr));
    for prefix in &prefixes {
        let mine: Vec<&str> = out
            .iter()
            .filter(|(p, _)| p == prefix)
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(mine.first(), Some(&"hello"), "{prefix}: {}", text(&all));
        assert!(mine.contains(&"line 0"), "{prefix}: {}", text(&all));
        assert!(
            err.contains(&(prefix.clone(), "oops".to_string())),
            "{prefix}: {}",
            text(&all)
        );
    }
    assert!(
        out.iter().chain(&err).all(|(p, _)| prefixes.contains(p)),
        "{}",
        text(&all)
    );

    // --tail 2: the last two lines of each task, stdout and stderr together.
    let tail = cli(h[0], &["service", "logs", "--tail", "2", "web"]);
    assert!(tail.status.success(), "{}", text(&tail));
    let lines = log_lines(&tail.stdout);
    for prefix in &prefixes {
        let mine: Vec<&(String, String)> = lines.iter().filter(|(p, _)| p == prefix).collect();
        assert_eq!(mine.len(), 2, "{prefix}: {}", text(&tail));
        assert!(
            mine.iter().all(|(_, t)| t.starts_with("line ")),
            "{}",
            text(&tail)
        );
    }
    assert!(log_lines(&tail.stderr).is_empty(), "{}", text(&tail));
    let seen: Vec<u64> = prefixes
        .iter()
        .map(|p| last_line(&lines, p).expect("a line"))
        .collect();

    // --follow shows what the tasks print after it started, and stops on
    // Ctrl-C.
    let follower = h[0]
        .spawn_shoal(&["service", "logs", "--follow", "--tail", "0", "web"])
        .expect("follower starts");
    std::thread::sleep(Duration::from_secs(3));
    kill(Pid::from_raw(follower as i32), Signal::SIGINT).expect("SIGINT");
    let stopped = wait_for(Duration::from_secs(5), || !is_running(follower));
    let log = h[0].log_path(follower).expect("follower log");
    let followed = std::fs::read(&log).unwrap_or_default();
    assert!(stopped, "the follower ignored Ctrl-C");
    let followed_lines = log_lines(&followed);
    for (prefix, before) in prefixes.iter().zip(&seen) {
        let after = last_line(&followed_lines, prefix);
        assert!(
            after.is_some_and(|n| n > before + 5),
            "{prefix}: last line before {before}, while following {after:?}: {}",
            String::from_utf8_lossy(&followed)
        );
    }
    assert!(
        !followed_lines.iter().any(|(_, t)| t == "hello"),
        "--tail 0 showed old lines: {}",
        String::from_utf8_lossy(&followed)
    );

    // A task id works too, and the manager's own tasks are read the same way.
    let one = cli_ok(
        h[0],
        &[
            "service",
            "logs",
            "--no-task-ids",
            &web[0]["ID"].as_str().unwrap()[..8],
        ],
    );
    let name = format!(
        "{}@{}",
        web[0]["Name"].as_str().unwrap(),
        web[0]["Node"].as_str().unwrap()
    );
    assert!(
        one.lines().all(|l| l.starts_with(&format!("{name}    | "))),
        "{one}"
    );
    cli_ok(
        h[0],
        &["node", "update", "--availability", "active", h[0].name()],
    );
    create(
        h[0],
        "local",
        &["--constraint", "node.role==manager"],
        &["sh", "-c", "echo on-the-manager; sleep 100000"],
    );
    wait_running(h[0], "local", 1, Duration::from_secs(30));
    let local = wait_for(Duration::from_secs(10), || {
        cli_ok(h[0], &["service", "logs", "local"])
            .ends_with(&format!("@{}    | on-the-manager", h[0].name()))
    });
    assert!(local, "{}", text(&cli(h[0], &["service", "logs", "local"])));

    // A finished task keeps its logs while it is in the service's history,
    // and loses them with it.
    create(
        h[0],
        "once",
        &[
            "--restart-condition",
            "none",
            "--constraint",
            "node.role==worker",
        ],
        &["sh", "-c", "echo finished-work; echo to-stderr >&2"],
    );
    let complete = wait_for(Duration::from_secs(30), || {
        tasks(h[0], &["service", "ps", "once"]).iter().any(|t| {
            t["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Complete"))
        })
    });
    assert!(complete, "{:#?}", tasks(h[0], &["service", "ps", "once"]));
    let done = tasks(h[0], &["service", "ps", "once"]).remove(0);
    // Well past the heartbeats that took it off its node's assignments.
    std::thread::sleep(Duration::from_secs(2));
    let once = cli(h[0], &["service", "logs", "once"]);
    let prefix = log_prefix(&done);
    assert_eq!(
        log_lines(&once.stdout),
        [(prefix.clone(), "finished-work".to_string())],
        "{}",
        text(&once)
    );
    assert_eq!(
        log_lines(&once.stderr),
        [(prefix, "to-stderr".to_string())],
        "{}",
        text(&once)
    );
    cli_ok(h[0], &["service", "rm", "once"]);
    let (i, _) = sandbox(&h, &done);
    let task_dir = shoal_tests::swarm::state_dir(h[i])
        .join("tasks")
        .join(done["ID"].as_str().unwrap());
    assert!(
        wait_for(Duration::from_secs(10), || !task_dir.exists()),
        "{} outlived its service",
        task_dir.display()
    );

    let missing = cli(h[0], &["service", "logs", "nope"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no such task or service: nope"),
        "{}",
        text(&missing)
    );
}

/// Whether `pid` runs (a zombie does not).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start(&h);
    form(h[0], &[], &[]);
    cli_ok(h[0], &["network", "create", "app"]);

    let unknown = cli(
        h[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "x",
            "--network",
            "nope",
            "--runtime",
            "process",
            "--",
            "sleep",
            "1",
        ],
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("network nope not found"),
        "{}",
        text(&unknown)
    );

    create(
        h[0],
        "a",
        &["--publish", "8080:80", "--network", "app"],
        &["sleep", "100000"],
    );
    let taken = cli(
        h[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "b",
            "-p",
            "8080:80",
            "--runtime",
            "process",
            "--",
            "sleep",
            "1",
        ],
    );
    assert!(!taken.status.success());
    assert!(
        text(&taken).contains("port 8080/tcp is already published by service a"),
        "{}",
        text(&taken)
    );
    let ls = cli_ok(h[0], &["service", "ls"]);
    assert!(!ls.contains(" b "), "{ls}");

    // A constraint that never matches: pending, with the reason shown.
    create(
        h[0],
        "nowhere",
        &["--constraint", "node.labels.zone==mars"],
        &["sleep", "1"],
    );
    let pending = wait_for(Duration::from_secs(10), || {
        tasks(h[0], &["service", "ps", "nowhere"]).iter().any(|t| {
            t["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Pending"))
                && t["Error"]
                    .as_str()
                    .is_some_and(|e| e.contains("no suitable node"))
        })
    });
    assert!(pending, "{:#?}", tasks(h[0], &["service", "ps", "nowhere"]));
    let ps = cli_ok(h[0], &["service", "ps", "nowhere"]);
    assert!(ps.contains("no suitable node"), "{ps}");

    // A network in use cannot go; once its service is gone it can.
    let rm = cli(h[0], &["network", "rm", "app"]);
    assert!(!rm.status.success());
    assert!(text(&rm).contains("in use by service a"), "{}", text(&rm));
    for round in 0..5 {
        let name = format!("loop{round}");
        create(
            h[0],
            &name,
            &["--replicas", "2", "--network", "app"],
            &["sleep", "100000"],
        );
        wait_running(h[0], &name, 2, Duration::from_secs(30));
        cli_ok(h[0], &["service", "rm", &name]);
    }
    cli_ok(h[0], &["service", "rm", "a", "nowhere"]);
    let removed = wait_for(Duration::from_secs(30), || {
        cli(h[0], &["network", "rm", "app"]).status.success()
    });
    assert!(removed, "{}", text(&cli(h[0], &["network", "rm", "app"])));
}
