//! Swarm fixtures: start the real `shoal agent` in hosts, run CLI commands
//! against each host's agent, and wait for conditions with bounded polling.

use shoal_control::error_chain::ErrorChain;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Host, Result};

/// The agent's state dir inside a host's run dir.
pub fn state_dir(host: &Host) -> PathBuf {
    host.run_dir().join("state")
}

/// Starts `shoal agent` in `host` (named after the host) and waits for its
/// socket. Returns the agent's PID.
pub fn start_agent(host: &Host) -> Result<u32> {
    start_agent_with(host, &[])
}

/// The arguments of `shoal agent` in `host` (after the global ones), with
/// `extra` flags.
pub fn agent_args(host: &Host, extra: &[&str]) -> Vec<String> {
    let state = state_dir(host).to_string_lossy().to_string();
    // Task cgroups under a name the harness's cleanup finds.
    let cgroup = crate::cleanup::cgroup2_mount()
        .join(host.netns())
        .to_string_lossy()
        .to_string();
    let mut args: Vec<String> = ["agent", "--state-dir", &state, "--hostname", host.name()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--cgroup-root".to_string(), cgroup]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts `shoal agent` in `host` as `start_agent_with` does, with the
/// environment variables `env` set, and returns its PID without waiting
/// for it to serve (it may be meant to stop on its own).
pub fn spawn_agent_with_env(host: &Host, env: &[(&str, &str)], extra: &[&str]) -> Result<u32> {
    let _ = std::fs::remove_file(host.run_dir().join("shoal.sock"));
    let mut args: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    args.push(crate::shoal_bin().to_string_lossy().to_string());
    args.push("--run-dir".into());
    args.push(host.run_dir().to_string_lossy().to_string());
    args.extend(agent_args(host, extra));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host.spawn("env", &args)
}

/// `start_agent` with more agent flags.
pub fn start_agent_with(host: &Host, extra: &[&str]) -> Result<u32> {
    let socket = host.run_dir().join("shoal.sock");
    let _ = std::fs::remove_file(&socket);
    let args = agent_args(host, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = host.spawn_shoal(&args)?;
    let ready = wait_for(Duration::from_secs(15), || {
        socket.exists()
            && host
                .shoal(&["node", "ls", "-q"])
                .map(|o| !text(&o).contains("cannot reach"))
                .unwrap_or(false)
    });
    if !ready {
        panic!(
            "shoal agent on {} did not open {}",
            host.name(),
            socket.display()
        );
    }
    Ok(pid)
}

/// Runs a CLI command against the host's agent.
pub fn cli(host: &Host, args: &[&str]) -> Output {
    host.shoal(args)
        .unwrap_or_else(|e| panic!("cannot run shoal on {}: {}", host.name(), e.chain()))
}

/// Runs a CLI command that must succeed; returns its stdout.
pub fn cli_ok(host: &Host, args: &[&str]) -> String {
    let out = cli(host, args);
    assert!(
        out.status.success(),
        "`shoal {}` on {} failed: {}",
        args.join(" "),
        host.name(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every node as `node inspect` shows it on `host` (Docker's `Node`:
/// `Spec`, `Description`, `Status`, `ManagerStatus`); empty if `host`
/// cannot list them. (`node ls --format json` prints Docker's ls rows.)
pub fn nodes(host: &Host) -> Vec<Value> {
    let ids = cli(host, &["node", "ls", "-q"]);
    if !ids.status.success() {
        return Vec::new();
    }
    let ids = String::from_utf8_lossy(&ids.stdout).to_string();
    let mut args = vec!["node", "inspect"];
    args.extend(ids.lines().map(str::trim).filter(|l| !l.is_empty()));
    if args.len() == 2 {
        return Vec::new();
    }
    // A node removed meanwhile fails its inspect; the others still print.
    let out = cli(host, &args);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The hostname of the manager `host` sees as leader.
pub fn leader(host: &Host) -> Option<String> {
    nodes(host)
        .iter()
        .find(|n| n["ManagerStatus"]["Leader"] == true)
        .map(hostname)
}

pub fn hostname(node: &Value) -> String {
    node["Description"]["Hostname"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A node's view by hostname, as `host` sees it.
pub fn node<'a>(nodes: &'a [Value], name: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| hostname(n) == name)
}

/// Polls `cond` every 100 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// `swarm init` on `first`, then joins `managers` and `workers` with the
/// tokens it prints. Returns (worker token, manager token).
pub fn form(first: &Host, managers: &[&Host], workers: &[&Host]) -> (String, String) {
    form_with(first, &[], managers, workers)
}

/// [`form`], with more `swarm init` flags (`--cert-expiry 20s`, ...).
pub fn form_with(
    first: &Host,
    init_flags: &[&str],
    managers: &[&Host],
    workers: &[&Host],
) -> (String, String) {
    let addr = first.addr().to_string();
    let mut init = vec!["swarm", "init", "--advertise-addr", &addr];
    init.extend_from_slice(init_flags);
    cli_ok(first, &init);
    let worker_token = cli_ok(first, &["swarm", "join-token", "-q", "worker"]);
    let manager_token = cli_ok(first, &["swarm", "join-token", "-q", "manager"]);
    let target = format!("{}:2377", first.addr());
    for h in managers {
        cli_ok(h, &["swarm", "join", "--token", &manager_token, &target]);
    }
    for h in workers {
        cli_ok(h, &["swarm", "join", "--token", &worker_token, &target]);
    }
    (worker_token, manager_token)
}

/// Starts an agent on every host.
pub fn start_agents(hosts: &[&Host]) {
    for host in hosts {
        start_agent(host).unwrap_or_else(|e| panic!("agent on {}: {}", host.name(), e.chain()));
    }
}

/// How many managers `host` sees as reachable.
pub fn reachable_managers(host: &Host) -> usize {
    nodes(host)
        .iter()
        .filter(|n| n["ManagerStatus"]["Reachability"] == "reachable")
        .count()
}

/// `service ps` (or `node ps`) as JSON values, one per task.
pub fn tasks(host: &Host, args: &[&str]) -> Vec<Value> {
    let mut full = args.to_vec();
    full.extend(["--no-trunc", "--format", "json"]);
    let out = cli(host, &full);
    let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if body.starts_with('[') {
        serde_json::from_str::<Vec<Value>>(&body).unwrap_or_default()
    } else {
        body.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// The tasks of `service` that run and should.
pub fn running(host: &Host, service: &str) -> Vec<Value> {
    tasks(host, &["service", "ps", service])
        .into_iter()
        .filter(|t| {
            t["DesiredState"] == "Running"
                && t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
        })
        .collect()
}

/// `service create --detach --name NAME --runtime process FLAGS -- COMMAND`
/// (a host command); returns the output.
pub fn create(host: &Host, name: &str, flags: &[&str], command: &[&str]) -> String {
    cli_ok(host, &create_args(name, flags, command))
}

/// [`create`] for a create that may be refused: its output, success or not.
pub fn try_create(host: &Host, name: &str, flags: &[&str], command: &[&str]) -> Output {
    cli(host, &create_args(name, flags, command))
}

fn create_args<'a>(name: &'a str, flags: &[&'a str], command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "service",
        "create",
        "--detach",
        "--name",
        name,
        "--runtime",
        "process",
    ];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(command);
    args
}

/// Waits until `service` has `n` running tasks; panics with its tasks if not.
pub fn wait_running(host: &Host, service: &str, n: usize, limit: Duration) {
    let ok = wait_for(limit, || running(host, service).len() == n);
    assert!(
        ok,
        "{service}: wanted {n} running; tasks: {:#?}",
        tasks(host, &["service", "ps", service])
    );
}
