//! Rolling updates of a service with a published port on namespaced hosts,
//! under a bounded stream of HTTP requests through every node's published
//! port: start-first loses no request, stop-first loses requests only to the
//! task being replaced, the update and its rollback converge, and the
//! network's free addresses end where they began.

use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::mesh::TASK_SERVER;
use shoal_tests::swarm::{
    cli, cli_ok, create, form, running, start_agent_with, wait_for, wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// A client that sends one request at a time round-robin through `nodes`'
/// port 8080 until the file `stop` exists (at most 4000 requests and 240 s),
/// printing `ok <task>` or `fail <node> <error>` per request.
fn client_script(nodes: &[&Host], stop: &str) -> String {
    let addrs: Vec<String> = nodes.iter().map(|n| format!("'{}'", n.addr())).collect();
    format!(
        r#"
import os, time, urllib.request
nodes = [{}]
end = time.time() + 240
n = 0
while n < 4000 and time.time() < end and not os.path.exists('{stop}'):
    node = nodes[n % len(nodes)]
    n += 1
    try:
        body = urllib.request.urlopen('http://%s:8080/' % node, timeout=3).read().decode()
        print('ok', body.strip().split('=')[-1], flush=True)
    except Exception as e:
        print('fail', node, repr(e).replace(' ', '_'), flush=True)
    time.sleep(0.02)
print('DONE', flush=True)
"#,
        addrs.join(", ")
    )
}

/// The requests a client made: (answering task ids, failures).
struct Requests {
    ok: Vec<String>,
    failed: Vec<String>,
}

/// Runs `during` while a client sends requests through every node; the
/// requests it made.
fn under_load(client: &Host, nodes: &[&Host], during: impl FnOnce()) -> Requests {
    std::fs::create_dir_all(client.run_dir()).expect("client run dir");
    let stop = client.run_dir().join("client.stop");
    let _ = std::fs::remove_file(&stop);
    let script = client_script(nodes, &stop.to_string_lossy());
    let pid = client.spawn("python3", &["-c", &script]).expect("client");
    std::thread::sleep(Duration::from_secs(2));
    during();
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&stop, b"").expect("stop file");
    let log = client.log_path(pid).expect("client log");
    let done = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("DONE"))
    });
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(done, "the client did not finish:\n{out}");
    let mut requests = Requests {
        ok: Vec::new(),
        failed: Vec::new(),
    };
    for line in out.lines() {
        match line.split_once(' ') {
            Some(("ok", task)) => requests.ok.push(task.to_string()),
            Some(("fail", why)) => requests.failed.push(why.to_string()),
            _ => {}
        }
    }
    requests
}

/// `network inspect`'s free-address count.
fn free_addresses(host: &Host, network: &str) -> u64 {
    let out = cli_ok(host, &["network", "inspect", network]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v[0]["Addresses"]["Free"]
        .as_u64()
        .unwrap_or_else(|| panic!("no Addresses.Free in {out}"))
}

fn update_state(host: &Host, service: &str) -> String {
    let out = cli(host, &["service", "inspect", service]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["UpdateStatus"]["State"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn running_ids(host: &Host, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = running(host, service)
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// `service update --detach ARGS w4`, then waits for `state`; the time it
/// took.
fn update_until(host: &Host, args: &[&str], state: &str) -> Duration {
    let started = Instant::now();
    let mut full = vec!["service", "update", "--detach"];
    full.extend_from_slice(args);
    full.push("w4");
    cli_ok(host, &full);
    let done = wait_for(Duration::from_secs(120), || {
        update_state(host, "w4") == state
    });
    assert!(
        done,
        "`{}` did not reach {state}: {}",
        full.join(" "),
        cli_ok(host, &["service", "ps", "w4"])
    );
    started.elapsed()
}

#[test]
fn rolling_updates_of_a_published_service_converge_without_losing_requests() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    for node in nodes {
        start_agent_with(node, &[]).expect("agent");
    }
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    cli_ok(nodes[0], &["network", "create", "net4"]);
    create(
        nodes[0],
        "w4",
        &[
            "--replicas",
            "3",
            "--network",
            "net4",
            "--publish",
            "8080:80",
            "--update-order",
            "start-first",
            "--update-monitor",
            "1s",
            "--rollback-order",
            "start-first",
            "--rollback-monitor",
            "1s",
        ],
        &["python3", "-c", TASK_SERVER],
    );
    wait_running(nodes[0], "w4", 3, Duration::from_secs(40));
    let served = wait_for(Duration::from_secs(20), || {
        let r = under_load(client, nodes, || {});
        r.failed.is_empty() && !r.ok.is_empty()
    });
    assert!(served, "the published port does not answer");
    let free_before = (
        free_addresses(nodes[0], "net4"),
        free_addresses(nodes[0], "ingress"),
    );
    let first = running_ids(nodes[0], "w4");

    // start-first: a slot's old task leaves only once its new one runs.
    let mut took = Duration::ZERO;
    let r = under_load(client, nodes, || {
        took = update_until(nodes[0], &["--env-add", "VER=2"], "completed");
    });
    eprintln!(
        "start-first update: {took:?}, {} requests, {} failed",
        r.ok.len(),
        r.failed.len()
    );
    assert!(r.failed.is_empty(), "requests failed: {:?}", r.failed);
    let second = running_ids(nodes[0], "w4");
    assert_eq!(second.len(), 3);
    assert!(second.iter().all(|id| !first.contains(id)));
    let after_start_first = (
        free_addresses(nodes[0], "net4"),
        free_addresses(nodes[0], "ingress"),
    );
    // The old tasks' addresses wait out their tombstones; nothing else.
    assert_eq!(
        after_start_first,
        (free_before.0 - 3, free_before.1 - 3),
        "free addresses (net4, ingress) before {free_before:?}"
    );

    // The rollback (start-first too) takes the first tasks' addresses back.
    let mut took = Duration::ZERO;
    let r = under_load(client, nodes, || {
        let started = Instant::now();
        cli_ok(nodes[0], &["service", "rollback", "--detach", "w4"]);
        let done = wait_for(Duration::from_secs(120), || {
            update_state(nodes[0], "w4") == "rollback_completed"
        });
        assert!(done, "{}", cli_ok(nodes[0], &["service", "ps", "w4"]));
        took = started.elapsed();
    });
    eprintln!(
        "start-first rollback: {took:?}, {} requests, {} failed",
        r.ok.len(),
        r.failed.len()
    );
    assert!(r.failed.is_empty(), "requests failed: {:?}", r.failed);
    assert_eq!(
        (
            free_addresses(nodes[0], "net4"),
            free_addresses(nodes[0], "ingress"),
        ),
        after_start_first
    );

    // stop-first: each slot's new task takes its old task's addresses, and
    // the only requests lost are those sent to a task being replaced.
    let before = running_ids(nodes[0], "w4");
    let mut took = Duration::ZERO;
    let r = under_load(client, nodes, || {
        took = update_until(
            nodes[0],
            &["--update-order", "stop-first", "--env-add", "VER=3"],
            "completed",
        );
    });
    let total = r.ok.len() + r.failed.len();
    eprintln!(
        "stop-first update: {took:?}, {total} requests, {} failed",
        r.failed.len()
    );
    let after = running_ids(nodes[0], "w4");
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|id| !before.contains(id)));
    // One task of three is out at a time: at most a third of the requests
    // sent during the update could meet it.
    assert!(
        r.failed.len() * 3 <= total,
        "{} of {total} requests failed: {:?}",
        r.failed.len(),
        r.failed
    );
    assert_eq!(
        (
            free_addresses(nodes[0], "net4"),
            free_addresses(nodes[0], "ingress"),
        ),
        after_start_first,
        "stop-first replacements reuse their slots' addresses"
    );
}

#[test]
fn scaling_again_and_again_waits_for_the_tasks_and_reports_success() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    for host in &h {
        start_agent_with(host, &[]).expect("agent");
    }
    form(h[0], &[], &[h[1]]);
    create(h[0], "sc", &["--replicas", "2"], &["sleep", "100000"]);
    wait_running(h[0], "sc", 2, Duration::from_secs(30));
    for (replicas, want) in [("4", 4), ("1", 1), ("2", 2), ("3", 3)] {
        let started = Instant::now();
        let arg = format!("sc={replicas}");
        let out = cli(h[0], &["service", "scale", "--timeout", "40s", &arg]);
        let shown = shoal_tests::swarm::text(&out);
        assert!(out.status.success(), "scale to {replicas} failed:\n{shown}");
        assert!(shown.contains("verify: Service converged"), "{shown}");
        assert!(
            shown.contains(&format!("overall progress: {want} out of {want} tasks")),
            "{shown}"
        );
        // Never more running than wanted in the progress lines.
        for line in shown.lines().filter(|l| l.starts_with("overall progress")) {
            let n: u64 = line
                .split_whitespace()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(n <= want, "`{line}` while scaling to {want}");
        }
        eprintln!("scale to {replicas}: {:?}", started.elapsed());
        assert_eq!(running(h[0], "sc").len(), want as usize);
    }
}
