//! Agent restarts and upgrades keep the node's tasks (issue #13 item 3):
//! SIGTERM stops the agent and leaves its tasks running, the managers keep
//! the node and its tasks for the restart window the agent asked for, and
//! the next agent (the same binary, or a new one copied elsewhere) adopts
//! them: same task ids, same PIDs, no new task. The agent logs its stop and
//! its start, and its metrics endpoint shows the heartbeat latency and, on
//! managers, the Raft term, commit index and leader changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_tests::mesh::{mesh_counters, METRICS, TASK_SERVER};
use shoal_tests::swarm::{
    agent_args, cli_ok, create, form, node, nodes, start_agent_with, tasks, text, wait_for,
    wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// How long each agent stays stopped during the upgrade.
const UPGRADE_PAUSE: Duration = Duration::from_secs(5);

/// Every task of `service` by id: (node hostname, state, PID).
fn task_table(host: &Host, service: &str) -> BTreeMap<String, (String, String, u64)> {
    tasks(host, &["service", "ps", service])
        .iter()
        .map(|t| {
            (
                t["ID"].as_str().unwrap_or_default().to_string(),
                (
                    t["Node"].as_str().unwrap_or_default().to_string(),
                    t["CurrentState"].as_str().unwrap_or_default().to_string(),
                    t["Pid"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn alive(pid: u64) -> bool {
    pid > 0 && kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// `node ls` state of `name` as `from` sees it.
fn node_state(from: &Host, name: &str) -> String {
    node(&nodes(from), name)
        .map(|n| {
            n["Status"]["State"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// SIGTERMs the agent `pid` in `host` and waits for it to exit; how long
/// it took.
fn stop_agent(host: &Host, pid: u32) -> Duration {
    let sent = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM the agent");
    let exited = wait_for(Duration::from_secs(25), || host.exit_status(pid).is_some());
    assert!(
        exited,
        "the agent on {} did not exit on SIGTERM",
        host.name()
    );
    sent.elapsed()
}

fn agent_log(host: &Host, pid: u32) -> String {
    host.log_path(pid)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// The value of the sample `name` (no labels) in `host`'s metrics.
fn metric(host: &Host, name: &str) -> Option<f64> {
    let out = host
        .exec(
            "curl",
            &["-s", "-m", "3", &format!("http://{METRICS}/metrics")],
        )
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A worker's agent gets SIGTERM and starts again: its tasks keep running
/// (same ids, same PIDs), the node is not marked Down meanwhile (though it
/// is silent longer than the 2 s a crashed node gets), `service ps` shows
/// no new task, and the agent logs its stop and its start.
#[test]
fn a_restarted_workers_agent_keeps_its_tasks() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let flags = ["--metrics-addr", METRICS];
    start_agent_with(h[0], &flags).expect("agent on h1");
    let worker_pid = start_agent_with(h[1], &flags).expect("agent on h2");
    form(h[0], &[], &[h[1]]);
    create(
        h[0],
        "ticker",
        &["--replicas", "4"],
        &["sh", "-c", "while true; do echo tick; sleep 0.5; done"],
    );
    wait_running(h[0], "ticker", 4, Duration::from_secs(60));
    let before = task_table(h[0], "ticker");
    let on_worker: Vec<(String, u64)> = before
        .iter()
        .filter(|(_, (n, _, _))| n == h[1].name())
        .map(|(id, (_, _, pid))| (id.clone(), *pid))
        .collect();
    assert!(!on_worker.is_empty(), "no task on the worker: {before:#?}");
    assert!(on_worker.iter().all(|(_, pid)| alive(*pid)));

    // Metrics: the worker's heartbeats are timed, the manager's Raft shows.
    let beats = metric(h[1], "shoal_heartbeat_latency_seconds_count").unwrap_or(0.0);
    assert!(beats >= 1.0, "no heartbeat latency on the worker");
    assert!(metric(h[0], "shoal_raft_term").unwrap_or(0.0) >= 1.0);
    assert!(metric(h[0], "shoal_raft_commit_index").unwrap_or(0.0) >= 1.0);
    assert!(metric(h[0], "shoal_raft_leader_changes_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(metric(h[0], "shoal_raft_is_leader"), Some(1.0));

    let worker_lines = || {
        cli_ok(h[0], &["service", "logs", "ticker"])
            .lines()
            .filter(|l| l.contains(&format!("@{}", h[1].name())))
            .count()
    };
    let lines_before = worker_lines();
    let took = stop_agent(h[1], worker_pid);
    let log = agent_log(h[1], worker_pid);
    eprintln!("worker agent exited {} ms after SIGTERM", took.as_millis());
    assert!(log.contains("stopping on SIGTERM"), "no stop line:\n{log}");
    assert!(
        log.contains("stopped on SIGTERM in"),
        "no stopped line:\n{log}"
    );
    assert!(
        log.contains("restarting"),
        "the managers were not told:\n{log}"
    );
    // Longer than a silent node gets (2 s): the window holds it.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(node_state(h[0], h[1].name()), "ready");
    assert!(
        on_worker.iter().all(|(_, pid)| alive(*pid)),
        "a task died with its agent"
    );

    let new_pid = start_agent_with(h[1], &flags).expect("agent on h2 again");
    let log = agent_log(h[1], new_pid);
    assert!(log.contains("started: socket"), "no start line:\n{log}");
    assert!(
        log.contains("is a worker of swarm"),
        "no member line:\n{log}"
    );
    // Back, and its tasks with it: no new task anywhere.
    let same = wait_for(Duration::from_secs(20), || {
        let now = task_table(h[0], "ticker");
        now.len() == before.len()
            && on_worker.iter().all(|(id, pid)| {
                now.get(id)
                    .is_some_and(|(_, state, p)| state.starts_with("Running") && p == pid)
            })
    });
    let after = task_table(h[0], "ticker");
    assert!(same, "tasks changed:\nbefore {before:#?}\nafter {after:#?}");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(task_table(h[0], "ticker").len(), before.len());
    assert!(on_worker.iter().all(|(_, pid)| alive(*pid)));
    // Their output, written while no agent ran and since, reaches `service
    // logs` (the tasks write twice a second).
    let lines_after = worker_lines();
    eprintln!("worker task log lines: {lines_before} before the restart, {lines_after} after");
    assert!(
        lines_after >= lines_before + 2 * 7,
        "the worker's task output stopped: {lines_before} -> {lines_after} lines"
    );
}

/// A client that sends one request at a time round-robin through `nodes`'
/// port 8080 until the file `stop` exists (at most 6000 requests and 300
/// s), printing `<unix time> ok <node> <task>` or `<unix time> fail <node>
/// <error>`.
fn client_script(nodes: &[&Host], stop: &Path) -> String {
    let addrs: Vec<String> = nodes.iter().map(|n| format!("'{}'", n.addr())).collect();
    format!(
        r#"
import os, time, urllib.request
nodes = [{}]
end = time.time() + 300
n = 0
while n < 6000 and time.time() < end and not os.path.exists('{}'):
    node = nodes[n % len(nodes)]
    n += 1
    try:
        body = urllib.request.urlopen('http://%s:8080/' % node, timeout=3).read().decode()
        print(time.time(), 'ok', node, body.strip().split('=')[-1], flush=True)
    except Exception as e:
        print(time.time(), 'fail', node, repr(e).replace(' ', '_'), flush=True)
    time.sleep(0.02)
print('DONE', flush=True)
"#,
        addrs.join(", "),
        stop.display()
    )
}

/// Starts the agent binary `bin` in `host` with the harness's agent
/// arguments and `extra`, and waits for its socket.
fn start_agent_from(host: &Host, bin: &Path, extra: &[&str]) -> u32 {
    let socket = host.run_dir().join("shoal.sock");
    let _ = std::fs::remove_file(&socket);
    let run_dir = host.run_dir().to_string_lossy().to_string();
    let mut args = vec!["--run-dir".to_string(), run_dir];
    args.extend(agent_args(host, extra));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = host.spawn(bin, &args).expect("start the new agent");
    let ready = wait_for(Duration::from_secs(20), || {
        socket.exists()
            && host
                .shoal(&["node", "ls", "-q"])
                .map(|o| !text(&o).contains("cannot reach"))
                .unwrap_or(false)
    });
    assert!(ready, "the new agent on {} did not serve", host.name());
    pid
}

/// The upgrade: every agent in turn (the three managers, then the worker)
/// gets SIGTERM and a new binary (a copy of the build at another path)
/// starts in its place [`UPGRADE_PAUSE`] later, while a client sends
/// requests through every node's published port. No task restarts (same ids and PIDs, no new task), no
/// request fails; the restart windows and the client's longest gap are
/// printed.
#[test]
fn upgrading_every_agent_in_turn_keeps_every_task_and_every_request() {
    require_root();
    let ul = Underlay::builder().hosts(5).build().expect("underlay");
    let all: Vec<&Host> = ul.hosts().iter().collect();
    let (swarm, client) = (&all[..4], all[4]);
    let mut pids: Vec<u32> = swarm
        .iter()
        .map(|h| start_agent_with(h, &["--metrics-addr", METRICS]).expect("agent"))
        .collect();
    form(swarm[0], &[swarm[1], swarm[2]], &[swarm[3]]);
    cli_ok(
        swarm[0],
        &["network", "create", "--driver", "overlay", "net"],
    );
    create(
        swarm[0],
        "web",
        &["--replicas", "4", "--network", "net", "-p", "8080:80"],
        &["python3", "-c", TASK_SERVER],
    );
    wait_running(swarm[0], "web", 4, Duration::from_secs(90));
    let before = task_table(swarm[0], "web");

    // The new binary: the same build at a new path.
    let new_bin = swarm[0].run_dir().join("shoal-upgraded");
    std::fs::copy(shoal_tests::shoal_bin(), &new_bin).expect("copy the binary");

    std::fs::create_dir_all(client.run_dir()).expect("client run dir");
    let stop = client.run_dir().join("client.stop");
    let client_pid = client
        .spawn("python3", &["-c", &client_script(swarm, &stop)])
        .expect("client");
    std::thread::sleep(Duration::from_secs(3));
    let counters_before: Vec<_> = swarm.iter().map(|h| mesh_counters(h)).collect();
    let mut windows = Vec::new();
    let mut last_back = 0.0;
    // When each agent stopped, started and was seen back (epoch seconds, as
    // the client logs), to place a failed request in the upgrade.
    let mut timeline: Vec<(f64, String)> = Vec::new();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    for (i, host) in swarm.iter().enumerate() {
        let watcher = swarm[(i + 1) % 3];
        let started = Instant::now();
        timeline.push((now(), format!("{} stop", host.addr())));
        stop_agent(host, pids[i]);
        // The upgrade itself (a package unpacked, a unit reloaded): longer
        // than a silent node's 2 s, well within the 30 s window.
        std::thread::sleep(UPGRADE_PAUSE);
        timeline.push((now(), format!("{} start", host.addr())));
        pids[i] = start_agent_from(host, &new_bin, &["--metrics-addr", METRICS]);
        timeline.push((now(), format!("{} serving", host.addr())));
        let back = wait_for(Duration::from_secs(30), || {
            node_state(watcher, host.name()) == "ready"
                && nodes(watcher).len() == swarm.len()
                && task_table(watcher, "web").len() == before.len()
        });
        assert!(back, "{} did not come back", host.name());
        let window = started.elapsed();
        eprintln!(
            "{}: restarted onto the new binary in {window:.2?}",
            host.name()
        );
        windows.push(window);
        last_back = now();
        timeline.push((last_back, format!("{} back", host.addr())));
        std::thread::sleep(Duration::from_secs(2));
    }
    // Some more requests after the last agent is back.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop, b"").expect("stop file");
    let log = client.log_path(client_pid).expect("client log");
    let done = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("DONE"))
    });
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(done, "the client did not finish:\n{out}");
    let (mut ok, mut failed, mut times) = (0, Vec::new(), Vec::new());
    let mut answered_after = std::collections::BTreeSet::new();
    for line in out.lines() {
        let mut fields = line.split_whitespace();
        let (Some(at), Some(kind), Some(node)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        match kind {
            "ok" => {
                ok += 1;
                let at = at.parse::<f64>().unwrap_or(0.0);
                if at > last_back {
                    answered_after.insert(fields.next().unwrap_or_default().to_string());
                }
                times.push((at, node.to_string()));
            }
            "fail" => failed.push(line.to_string()),
            _ => {}
        }
    }
    // The longest wait between two answers, and the node the late one
    // came through.
    let (gap, via) = times
        .windows(2)
        .map(|w| (w[1].0 - w[0].0, w[1].1.clone()))
        .fold((0.0, String::new()), |a, b| if b.0 > a.0 { b } else { a });
    eprintln!(
        "upgrade under load: windows {windows:.2?}, {ok} requests ok, {} failed, \
         longest gap {gap:.2} s (the late answer came through {via})",
        failed.len()
    );
    // The data path's view of the run, per node: flows it opened as the
    // ingress node, flows proven (counted at the ingress and at the task's
    // end), closed, and segments dropped for an unproven flow.
    let mesh: Vec<String> = swarm
        .iter()
        .zip(&counters_before)
        .map(|(h, before)| {
            let after = mesh_counters(h);
            let read = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
            let delta = |k: &str| read(&after, k).saturating_sub(read(before, k));
            format!(
                "{}: opened {} established {} closed {} unverified {}",
                h.addr(),
                delta("flows_opened"),
                delta("flows_established"),
                delta("flows_closed"),
                delta("segments_unverified")
            )
        })
        .collect();
    eprintln!("mesh counters over the upgrade: {mesh:#?}");
    assert!(ok > 100, "too few requests: {ok}");
    // None may fail. (A request through one node to a task on a node whose
    // agent had just stopped used to time out, about one in 700: the
    // overlay dropped the down member's neighbours while the mesh still
    // forwarded its flows; see `dataplane::desired`.)
    if !failed.is_empty() {
        eprintln!("upgrade timeline: {timeline:#?}");
    }
    assert!(failed.is_empty(), "requests failed: {failed:#?}");
    // Every task still serves through the mesh: the agents that adopted
    // them announced their endpoints again.
    let ids: std::collections::BTreeSet<String> = before.keys().cloned().collect();
    assert_eq!(answered_after, ids, "tasks answering after the upgrade");

    // No task restarted, none added.
    let after = task_table(swarm[0], "web");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "tasks changed:\nbefore {before:#?}\nafter {after:#?}"
    );
    for (id, (node, _, pid)) in &before {
        let (now_node, state, now_pid) = &after[id];
        assert!(state.starts_with("Running"), "{id}: {state}");
        assert_eq!((node, pid), (now_node, now_pid), "{id} restarted");
    }
}
