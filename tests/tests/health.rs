//! Container tasks end to end (issue #15's remaining checks), on
//! namespaced hosts with the real agent, a real `docker-registry` and
//! busybox images built with umoci:
//! - a task whose health check starts failing leaves the routing mesh (no
//!   request fails once its health interval times its retries, plus one
//!   interval and the agent's reaction, has passed) and is replaced; one
//!   that still serves while unhealthy leaves the mesh before it stops
//!   (no request fails at all);
//! - an update to an image that never turns healthy is rolled back;
//! - a task killed by the OOM killer under `--limit-memory` is reported so
//!   (and a task that merely exits 137 is not);
//! - an agent restart adopts running containers without restarting them;
//! - `--stop-grace-period` is honoured and `--host` lands in /etc/hosts;
//! - the figures: create-to-running cold and warm, the container start
//!   against the process runtime, the agent's RSS with 50 tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use shoal_tests::registry::{
    busybox_image, registry_digest, serve_on, shell_image, single_node_swarm_pulling_from,
    start_agents_pulling_from, ImageSpec, OciImage,
};
use shoal_tests::swarm::{
    cli, cli_ok, form, running, start_agent_with, tasks, text, wait_for, wait_running,
};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn alive(pid: u64) -> bool {
    pid > 0 && kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// The container hostname of a task without `--hostname`: its id's first
/// 12 characters, as Docker's.
fn hostname_of(task_id: &str) -> String {
    task_id.chars().take(12).collect()
}

/// A busybox web server whose page is its hostname (so a client sees which
/// task answered), serving `/www` on port 80. With `marker`, the image
/// also holds the file `/healthy`.
fn hostname_web_image(dir: &Path, name: &str, script_extra: &str, marker: bool) -> OciImage {
    let script = format!(
        "mkdir -p /www; hostname > /www/index.html; {script_extra} exec httpd -f -p 80 -h /www"
    );
    let mut files = Vec::new();
    if marker {
        files.push(("healthy".to_string(), "yes\n".to_string()));
    }
    busybox_image(
        dir,
        name,
        &ImageSpec {
            entrypoint: vec!["sh".into(), "-c".into(), script],
            files,
            ..ImageSpec::default()
        },
    )
}

/// A client in its own host sending one request at a time round-robin
/// through `nodes`' port 8080 until its stop file exists (at most 6000
/// requests and 300 s), logging `<unix time> ok <node> <page>` or `<unix
/// time> fail <node> <error>`.
struct Client<'a> {
    host: &'a Host,
    pid: u32,
    stop: PathBuf,
}

/// One request of the client's log.
#[derive(Debug)]
struct Request {
    at: f64,
    ok: bool,
    node: String,
    /// The page (the answering task's hostname) or the error.
    what: String,
}

impl<'a> Client<'a> {
    fn start(host: &'a Host, nodes: &[&Host]) -> Client<'a> {
        std::fs::create_dir_all(host.run_dir()).expect("client run dir");
        let stop = host.run_dir().join("client.stop");
        let _ = std::fs::remove_file(&stop);
        let addrs: Vec<String> = nodes.iter().map(|n| format!("'{}'", n.addr())).collect();
        let script = format!(
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
        print(time.time(), 'ok', node, body.strip() or '-', flush=True)
    except Exception as e:
        print(time.time(), 'fail', node, repr(e).replace(' ', '_'), flush=True)
    time.sleep(0.02)
print('DONE', flush=True)
"#,
            addrs.join(", "),
            stop.display()
        );
        let pid = host.spawn("python3", &["-c", &script]).expect("client");
        Client { host, pid, stop }
    }

    fn requests(&self) -> Vec<Request> {
        let log = self.host.log_path(self.pid).expect("client log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let at = f.next()?.parse().ok()?;
                let ok = f.next()? == "ok";
                Some(Request {
                    at,
                    ok,
                    node: f.next()?.to_string(),
                    what: f.next().unwrap_or_default().to_string(),
                })
            })
            .collect()
    }

    /// The hostnames that answered after `since`.
    fn answered_since(&self, since: f64) -> BTreeSet<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.ok && r.at > since)
            .map(|r| r.what)
            .collect()
    }

    fn finish(self) -> Vec<Request> {
        std::fs::write(&self.stop, b"").expect("stop file");
        let log = self.host.log_path(self.pid).expect("client log");
        let done = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("DONE"))
        });
        assert!(done, "the client did not finish");
        self.requests()
    }
}

/// The ids of `service`'s running tasks, sorted.
fn running_ids(host: &Host, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = running(host, service)
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn is_unhealthy_failure(task: &Value) -> bool {
    task["Error"]
        .as_str()
        .is_some_and(|e| e.trim_matches('"') == "task: unhealthy container")
}

const INTERVAL: Duration = Duration::from_secs(1);
const RETRIES: u32 = 2;

/// The image of item 1: serves its hostname from `/www`; drops its page
/// once the test names it in `/ctl` (it breaks); stops at once on SIGTERM
/// (so a task stopped while still in the mesh of some node refuses
/// connections there).
fn sickable_image(dir: &Path) -> OciImage {
    let script = "mkdir -p /www; hostname > /www/index.html; \
        (while sleep 0.2; do if [ -e /ctl/$(hostname) ]; then rm -f /www/index.html; fi; done) & \
        httpd -f -p 80 -h /www & h=$!; trap \"kill $h; exit 0\" TERM; wait $h";
    busybox_image(
        dir,
        "sickable",
        &ImageSpec {
            entrypoint: vec!["sh".into(), "-c".into(), script.into()],
            ..ImageSpec::default()
        },
    )
}

/// Waits until the task `sick` of `web` failed as unhealthy and three
/// others run; returns the one that is new against `known`.
fn wait_replaced(node: &Host, sick: &str, known: &[String]) -> String {
    let replaced = wait_for(Duration::from_secs(120), || {
        let ps = tasks(node, &["service", "ps", "web"]);
        let failed = ps
            .iter()
            .any(|t| t["ID"] == sick && is_unhealthy_failure(t));
        let now_running = running_ids(node, "web");
        failed && now_running.len() == 3 && !now_running.iter().any(|id| id == sick)
    });
    let ps = tasks(node, &["service", "ps", "web"]);
    assert!(
        replaced,
        "{sick}: no unhealthy failure and replacement: {ps:#?}"
    );
    let sick_row = ps.iter().find(|t| t["ID"] == sick).expect("sick");
    assert_eq!(sick_row["DesiredState"], "Shutdown", "{sick_row:#?}");
    let new: Vec<String> = running_ids(node, "web")
        .into_iter()
        .filter(|id| !known.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "one replacement: {ps:#?}");
    new[0].clone()
}

/// Item 1: three replicas behind the routing mesh, each serving its
/// hostname, with a health check on its page and on a file the test
/// controls, while a client sends requests through all three nodes the
/// whole time.
/// - Broken: the test makes one task drop its page. It answers 404 until
///   its check has failed RETRIES times; then it must leave the mesh on
///   every node and be replaced. No request fails once (RETRIES + 1)
///   intervals (the first failing probe comes up to one interval after
///   the break) plus 1 s (the agent's health poll, the mesh update on
///   every node) have passed; none fails before the break.
/// - Unhealthy but still serving (its check fails on the test's file):
///   it must leave the mesh on every node BEFORE it is stopped (it stops
///   at once on SIGTERM), so not one request fails, and a replacement
///   joins once healthy.
#[test]
fn a_task_whose_health_check_starts_failing_leaves_the_mesh_and_is_replaced() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    let registry = serve_on(nodes[0], None);
    let dir = TempDir::new().expect("temp dir");
    let ctl = TempDir::new().expect("control dir");
    let image = registry.push(&sickable_image(dir.path()), "sickable:1", false);
    start_agents_pulling_from(nodes, &registry.addr);
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    let mount = format!(
        "type=bind,source={},target=/ctl,readonly",
        ctl.path().display()
    );
    let interval = format!("{}s", INTERVAL.as_secs());
    let retries = RETRIES.to_string();
    cli_ok(
        nodes[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--mount",
            &mount,
            "--health-cmd",
            "test -e /www/index.html && test ! -e /ctl/ill-$(hostname)",
            "--health-interval",
            &interval,
            "--health-retries",
            &retries,
            "--health-timeout",
            "5s",
            &image,
        ],
    );
    wait_running(nodes[0], "web", 3, Duration::from_secs(120));
    let mut known = running_ids(nodes[0], "web");
    let names: BTreeSet<String> = known.iter().map(|id| hostname_of(id)).collect();

    let c = Client::start(client, nodes);
    let started = now();
    let all = wait_for(Duration::from_secs(30), || {
        c.answered_since(started).is_superset(&names)
    });
    assert!(
        all,
        "not every task answered: {:?} of {names:?}",
        c.answered_since(started)
    );

    // Broken.
    let sick = known[0].clone();
    let broke_at = now();
    std::fs::write(ctl.path().join(hostname_of(&sick)), b"").expect("break the task");
    let fresh = wait_replaced(nodes[0], &sick, &known);
    let replaced_at = now();
    known.push(fresh.clone());
    let answers = wait_for(Duration::from_secs(30), || {
        c.answered_since(replaced_at).contains(&hostname_of(&fresh))
    });
    assert!(answers, "the replacement {fresh} never answered");

    // Unhealthy, still serving.
    let ill = running_ids(nodes[0], "web")
        .into_iter()
        .find(|id| *id != fresh)
        .expect("an old task");
    let ill_at = now();
    std::fs::write(ctl.path().join(format!("ill-{}", hostname_of(&ill))), b"")
        .expect("make the task unhealthy");
    let second = wait_replaced(nodes[0], &ill, &known);
    let second_at = now();
    let answers = wait_for(Duration::from_secs(30), || {
        c.answered_since(second_at).contains(&hostname_of(&second))
    });
    assert!(answers, "the replacement {second} never answered");
    std::thread::sleep(Duration::from_secs(3));
    let requests = c.finish();

    let budget = (INTERVAL * (RETRIES + 1)).as_secs_f64() + 1.0;
    let failed: Vec<&Request> = requests.iter().filter(|r| !r.ok).collect();
    let early: Vec<&&Request> = failed.iter().filter(|r| r.at < broke_at).collect();
    let within: Vec<&&Request> = failed
        .iter()
        .filter(|r| r.at >= broke_at && r.at <= broke_at + budget)
        .collect();
    let late: Vec<&&Request> = failed
        .iter()
        .filter(|r| r.at > broke_at + budget && r.at < ill_at)
        .collect();
    let while_ill: Vec<&&Request> = failed.iter().filter(|r| r.at >= ill_at).collect();
    let last = failed
        .iter()
        .rfind(|r| r.at < ill_at)
        .map_or(0.0, |r| r.at - broke_at);
    let sick_answers_after = requests
        .iter()
        .filter(|r| r.ok && r.at > broke_at + budget && r.what == hostname_of(&sick))
        .count();
    eprintln!(
        "health leave: {} requests; broken task: {} failed while it was in the mesh, the last \
         {last:.2} s after the break (budget {budget:.1} s), {} later, replaced {:.1} s after the \
         break; unhealthy serving task: {} failed, replaced {:.1} s after; per node: {:?}",
        requests.len(),
        within.len(),
        late.len(),
        replaced_at - broke_at,
        while_ill.len(),
        second_at - ill_at,
        requests
            .iter()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
                *m.entry(r.node.as_str()).or_default() += 1;
                m
            })
    );
    assert!(requests.len() > 100, "too few requests: {}", requests.len());
    assert!(early.is_empty(), "failed before the break: {early:#?}");
    // The break is real: the broken task was asked while it was still in
    // the mesh and answered 404 (else this test could not see a task left
    // in the mesh).
    assert!(
        !within.is_empty(),
        "no request reached the broken task after its break"
    );
    assert!(
        late.is_empty(),
        "requests failed after the broken task should have left the mesh: {late:#?}"
    );
    assert_eq!(sick_answers_after, 0, "the broken task still answered");
    assert!(
        while_ill.is_empty(),
        "requests failed while an unhealthy task that still served left the mesh: {while_ill:#?}"
    );
    drop(registry);
}

/// The `UpdateStatus` of `service`: (State, Message).
fn update_status(host: &Host, service: &str) -> (String, String) {
    let out = cli(host, &["service", "inspect", service]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let s = &v[0]["UpdateStatus"];
    (
        s["State"].as_str().unwrap_or_default().to_string(),
        s["Message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Item 2: `service update --image BAD --update-failure-action rollback`
/// where BAD lacks the file the service's health check tests: its first
/// task never turns healthy, fails as unhealthy, and the update is rolled
/// back; UpdateStatus says `rollback_completed`, every task runs the old
/// image (pinned digest), and the mesh answers with the old tasks.
#[test]
fn an_update_to_an_image_that_never_turns_healthy_is_rolled_back() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..2], h[2]);
    let registry = serve_on(nodes[0], None);
    let dir = TempDir::new().expect("temp dir");
    let good = hostname_web_image(dir.path(), "good", "", true);
    let bad = hostname_web_image(dir.path(), "bad", "", false);
    let good = registry.push(&good, "web:good", false);
    let bad = registry.push(&bad, "web:bad", true);
    start_agents_pulling_from(nodes, &registry.addr);
    form(nodes[0], &[], &[nodes[1]]);
    cli_ok(
        nodes[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--health-cmd",
            "test -e /healthy",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            &good,
        ],
    );
    wait_running(nodes[0], "web", 3, Duration::from_secs(120));
    let before = running_ids(nodes[0], "web");
    let pinned_good = format!("{good}@{}", registry_digest(nodes[0], &good));
    let pinned_bad = format!("{bad}@{}", registry_digest(nodes[0], &bad));

    let started = Instant::now();
    cli_ok(
        nodes[0],
        &[
            "service",
            "update",
            "--detach",
            "--image",
            &bad,
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "10s",
            "--update-parallelism",
            "1",
            "--update-max-failure-ratio",
            "0",
            "web",
        ],
    );
    let rolled_back = wait_for(Duration::from_secs(180), || {
        update_status(nodes[0], "web").0 == "rollback_completed"
    });
    let ps = tasks(nodes[0], &["service", "ps", "web"]);
    assert!(
        rolled_back,
        "not rolled back: {:?}\n{ps:#?}",
        update_status(nodes[0], "web")
    );
    let (state, message) = update_status(nodes[0], "web");
    eprintln!(
        "rolled back {:.1?} after the update: {state}: {message}",
        started.elapsed()
    );
    assert_eq!(message, "rollback completed");
    // The bad image was tried, and failed its health check.
    assert!(
        ps.iter()
            .any(|t| t["Image"] == pinned_bad.as_str() && is_unhealthy_failure(t)),
        "no unhealthy task of {pinned_bad}: {ps:#?}"
    );
    // Back to three tasks of the good image; the spec too.
    wait_running(nodes[0], "web", 3, Duration::from_secs(60));
    let settled = wait_for(Duration::from_secs(60), || {
        let r = running(nodes[0], "web");
        r.len() == 3 && r.iter().all(|t| t["Image"] == pinned_good.as_str())
    });
    assert!(
        settled,
        "not all on {pinned_good}: {:#?}",
        tasks(nodes[0], &["service", "ps", "web"])
    );
    let image = cli_ok(
        nodes[0],
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
    );
    assert_eq!(image, pinned_good);
    let after = running_ids(nodes[0], "web");
    eprintln!("tasks before {before:?}, after {after:?}");
    // Every node answers, with pages of the running (good) tasks.
    let names: BTreeSet<String> = after.iter().map(|id| hostname_of(id)).collect();
    let answers = wait_for(Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            (0..6).all(|_| {
                shoal_tests::mesh::page(client, n, 8080).is_some_and(|p| names.contains(&p))
            })
        })
    });
    assert!(answers, "the mesh does not answer with the good tasks");
    drop(registry);
}

/// Item 3: a task that reads 256 MiB into one buffer under
/// `--limit-memory 32M` is killed by the kernel's OOM killer, and `service
/// ps --no-trunc` says `non-zero exit (137)` and `OOM killed`; a task that
/// exits 137 on its own under the same limit is not called OOM killed.
#[test]
fn a_task_killed_by_the_oom_killer_is_reported_so() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let node = ul.host(0);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    let hog = shell_image(
        dir.path(),
        "hog",
        "sleep 1; exec dd if=/dev/zero of=/dev/null bs=256M count=1",
    );
    let hog = registry.push(&hog, "hog:1", false);
    let quits = shell_image(dir.path(), "quits", "sleep 1; exit 137");
    let quits = registry.push(&quits, "quits:1", false);
    single_node_swarm_pulling_from(node, &registry);
    for (name, image) in [("hog", &hog), ("quits", &quits)] {
        cli_ok(
            node,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                name,
                "--limit-memory",
                "32M",
                "--restart-condition",
                "none",
                image,
            ],
        );
    }
    let error_of = |service: &str| -> Option<String> {
        tasks(node, &["service", "ps", service])
            .iter()
            .find_map(|t| {
                t["Error"]
                    .as_str()
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
            })
    };
    let ended = wait_for(Duration::from_secs(90), || {
        error_of("hog").is_some() && error_of("quits").is_some()
    });
    assert!(
        ended,
        "hog: {:#?}\nquits: {:#?}",
        tasks(node, &["service", "ps", "hog"]),
        tasks(node, &["service", "ps", "quits"])
    );
    let hog_error = error_of("hog").unwrap_or_default();
    let quits_error = error_of("quits").unwrap_or_default();
    eprintln!("hog: {hog_error}; quits: {quits_error}");
    assert_eq!(
        hog_error.trim_matches('"'),
        "task: non-zero exit (137): OOM killed"
    );
    assert_eq!(quits_error.trim_matches('"'), "task: non-zero exit (137)");
    // The plain table, as a user reads it.
    let table = cli_ok(node, &["service", "ps", "--no-trunc", "hog"]);
    assert!(
        table.contains("non-zero exit (137)") && table.contains("OOM killed"),
        "{table}"
    );
    let table = cli_ok(node, &["service", "ps", "--no-trunc", "quits"]);
    assert!(
        table.contains("non-zero exit (137)") && !table.contains("OOM killed"),
        "{table}"
    );
    drop(registry);
}

/// Every task of `service` by id: (node, state, PID).
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

/// The start time of `pid` (clock ticks since boot, /proc/PID/stat field
/// 22): a PID reused by a new process has another.
fn start_time(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Item 4: the worker's agent gets SIGTERM while it runs container tasks
/// and starts again on the same directories: the containers were not
/// restarted (same task ids, same PIDs with the same start times, no new
/// task), `service ps` is unchanged, and they answer through the mesh.
#[test]
fn a_restarted_agent_adopts_its_containers_without_restarting_them() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..2], h[2]);
    let registry = serve_on(nodes[0], None);
    let dir = TempDir::new().expect("temp dir");
    let image = hostname_web_image(dir.path(), "web", "", false);
    let image = registry.push(&image, "web:1", false);
    let insecure = ["--insecure-registry", registry.addr.as_str()];
    start_agent_with(nodes[0], &insecure).expect("manager agent");
    let worker_pid = start_agent_with(nodes[1], &insecure).expect("worker agent");
    form(nodes[0], &[], &[nodes[1]]);
    cli_ok(
        nodes[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--replicas",
            "4",
            "-p",
            "8080:80",
            &image,
        ],
    );
    wait_running(nodes[0], "web", 4, Duration::from_secs(120));
    let before = task_table(nodes[0], "web");
    let on_worker: Vec<(String, u64, u64)> = before
        .iter()
        .filter(|(_, (n, _, _))| n == nodes[1].name())
        .map(|(id, (_, _, pid))| (id.clone(), *pid, start_time(*pid).unwrap_or(0)))
        .collect();
    assert!(!on_worker.is_empty(), "no task on the worker: {before:#?}");
    assert!(
        on_worker
            .iter()
            .all(|(_, pid, start)| alive(*pid) && *start > 0),
        "{on_worker:?}"
    );

    kill(Pid::from_raw(worker_pid as i32), Signal::SIGTERM).expect("SIGTERM the agent");
    let exited = wait_for(Duration::from_secs(25), || {
        nodes[1].exit_status(worker_pid).is_some()
    });
    assert!(exited, "the worker's agent did not exit on SIGTERM");
    std::thread::sleep(Duration::from_secs(3));
    let unchanged = |tasks: &[(String, u64, u64)]| {
        tasks
            .iter()
            .all(|(_, pid, start)| alive(*pid) && start_time(*pid) == Some(*start))
    };
    assert!(unchanged(&on_worker), "a container died with its agent");

    let restarted_at = Instant::now();
    start_agent_with(nodes[1], &insecure).expect("the worker's agent again");
    let same = wait_for(Duration::from_secs(30), || {
        let now = task_table(nodes[0], "web");
        now.len() == before.len()
            && on_worker.iter().all(|(id, pid, _)| {
                now.get(id)
                    .is_some_and(|(_, state, p)| state.starts_with("Running") && p == pid)
            })
    });
    let after = task_table(nodes[0], "web");
    assert!(same, "tasks changed:\nbefore {before:#?}\nafter {after:#?}");
    eprintln!(
        "adopted {} containers {:.1?} after the agent started again",
        on_worker.len(),
        restarted_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(5));
    let after = task_table(nodes[0], "web");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no new task"
    );
    for (id, (node, _, pid)) in &before {
        let (now_node, state, now_pid) = &after[id];
        assert!(state.starts_with("Running"), "{id}: {state}");
        assert_eq!((node, pid), (now_node, now_pid), "{id} restarted");
    }
    assert!(unchanged(&on_worker), "a container was restarted");
    // The adopted containers answer through the mesh, on both nodes.
    let worker_names: BTreeSet<String> =
        on_worker.iter().map(|(id, _, _)| hostname_of(id)).collect();
    let mut seen = BTreeSet::new();
    let answered = wait_for(Duration::from_secs(30), || {
        for n in nodes {
            if let Some(p) = shoal_tests::mesh::page(client, n, 8080) {
                seen.insert(p);
            }
        }
        seen.is_superset(&worker_names)
    });
    assert!(
        answered,
        "the worker's containers {worker_names:?} did not answer; seen {seen:?}"
    );
    drop(registry);
}

/// Item 5: `--stop-grace-period 2s` on a task that ignores SIGTERM: it is
/// killed about 2 s after its stop, not after Docker's 10 s default; and
/// `--host NAME:IP` lines are in its /etc/hosts; `--host-rm` and
/// `--host-add` edit them on update.
#[test]
fn the_stop_grace_period_is_honoured_and_host_mappings_land_in_etc_hosts() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let node = ul.host(0);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    let stubborn = shell_image(
        dir.path(),
        "stubborn",
        "trap '' TERM; while true; do sleep 1; done",
    );
    let stubborn = registry.push(&stubborn, "stubborn:1", false);
    single_node_swarm_pulling_from(node, &registry);
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "stubborn",
            "--stop-grace-period",
            "2s",
            "--host",
            "db.example:10.1.2.3",
            "--host",
            "cache=10.1.2.4",
            &stubborn,
        ],
    );
    wait_running(node, "stubborn", 1, Duration::from_secs(60));
    let spec = || -> Value {
        let out = cli(node, &["service", "inspect", "stubborn"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v[0]["Spec"]["TaskTemplate"]["ContainerSpec"].clone()
    };
    let c = spec();
    assert_eq!(c["StopGracePeriod"], 2_000_000_000i64, "{c:#?}");
    assert_eq!(
        c["Hosts"],
        serde_json::json!(["10.1.2.3 db.example", "10.1.2.4 cache"]),
        "{c:#?}"
    );
    let pid = running(node, "stubborn")[0]["Pid"].as_u64().unwrap_or(0);
    assert!(alive(pid), "no task process");
    let hosts = std::fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).expect("hosts");
    assert!(
        hosts.contains("10.1.2.3\tdb.example\n") && hosts.contains("10.1.2.4\tcache\n"),
        "{hosts}"
    );

    let asked = Instant::now();
    cli_ok(node, &["service", "scale", "--detach", "stubborn=0"]);
    let gone = wait_for(Duration::from_secs(30), || !alive(pid));
    let took = asked.elapsed();
    assert!(gone, "the task still runs {took:?} after its stop");
    eprintln!(
        "a task ignoring SIGTERM with --stop-grace-period 2s ended {took:.2?} after the scale to 0"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "killed before its grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "not killed at its 2 s grace period (Docker's default is 10 s): {took:?}"
    );

    // Update: one mapping removed, one added; the new task has them.
    cli_ok(
        node,
        &[
            "service",
            "update",
            "--detach",
            "--host-rm",
            "db.example",
            "--host-add",
            "api:10.1.2.5",
            "--replicas",
            "1",
            "stubborn",
        ],
    );
    assert_eq!(
        spec()["Hosts"],
        serde_json::json!(["10.1.2.4 cache", "10.1.2.5 api"])
    );
    wait_running(node, "stubborn", 1, Duration::from_secs(60));
    let pid = running(node, "stubborn")[0]["Pid"].as_u64().unwrap_or(0);
    let hosts = std::fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).expect("hosts");
    assert!(
        !hosts.contains("db.example")
            && hosts.contains("10.1.2.4\tcache\n")
            && hosts.contains("10.1.2.5\tapi\n"),
        "{hosts}"
    );
    // A bad mapping is refused with Docker's text, before anything is sent.
    let out = cli(
        node,
        &[
            "service",
            "update",
            "--host-add",
            "db:10.0.0.300",
            "stubborn",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("invalid IP address in add-host: \"10.0.0.300\""),
        "{}",
        text(&out)
    );
    drop(registry);
}

/// How long after `create` (run now) `service` has `n` running tasks,
/// polling every 50 ms.
fn time_to_running(host: &Host, create: &[&str], service: &str, n: usize) -> Duration {
    let started = Instant::now();
    cli_ok(host, create);
    let ok = wait_for(Duration::from_secs(300), || {
        running(host, service).len() == n
    });
    assert!(
        ok,
        "{service}: {:#?}",
        tasks(host, &["service", "ps", service])
    );
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The agent's resident memory (VmRSS of /proc/PID/status), in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Item 6, the figures (printed; about 90 s on a busy 2-core machine):
/// create-to-running of one replica from a cold pull (the first service
/// of a new swarm) and a warm one (same image), the container start
/// against `--runtime process` (median of 5 rounds each), and the
/// agent's RSS idle and with 50 running container tasks.
#[test]
fn figures_pull_start_overhead_and_agent_rss() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let node = ul.host(0);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    let image = shell_image(dir.path(), "idle", "exec sleep 100000");
    let image = registry.push(&image, "idle:1", false);
    let agent =
        start_agent_with(node, &["--insecure-registry", registry.addr.as_str()]).expect("agent");
    form(node, &[], &[]);
    let rss_idle = rss_kib(agent);

    let create = |name: &str, tail: &[&str]| -> Vec<String> {
        ["service", "create", "--detach", "--name", name]
            .iter()
            .chain(tail)
            .map(|s| s.to_string())
            .collect()
    };
    let timed = |args: Vec<String>, name: &str, n: usize| -> Duration {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let took = time_to_running(node, &args, name, n);
        cli_ok(node, &["service", "rm", name]);
        let gone = wait_for(Duration::from_secs(60), || {
            tasks(node, &["service", "ps", name]).is_empty()
        });
        assert!(gone, "{name} not removed");
        took
    };
    let cold = timed(create("cold", &[&image]), "cold", 1);
    let warm = timed(create("warm", &[&image]), "warm", 1);
    let mut containers = Vec::new();
    let mut processes = Vec::new();
    for _ in 0..5 {
        containers.push(timed(create("c", &[&image]), "c", 1));
        processes.push(timed(
            create("p", &["--runtime", "process", "--", "sleep", "100000"]),
            "p",
            1,
        ));
    }
    let (c, p) = (median(containers.clone()), median(processes.clone()));

    let fifty = time_to_running(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "many",
            "--replicas",
            "50",
            &image,
        ],
        "many",
        50,
    );
    std::thread::sleep(Duration::from_secs(5));
    let rss_50 = rss_kib(agent);
    eprintln!(
        "FIGURES: cold pull create-to-running {cold:.2?}, warm {warm:.2?}; \
         container start median {c:.2?} (rounds {containers:.2?}) vs process {p:.2?} \
         (rounds {processes:.2?}), overhead {:.2?}; 50 container tasks running {fifty:.1?} \
         after create; agent VmRSS {rss_idle} KiB idle, {rss_50} KiB with 50 running tasks",
        c.saturating_sub(p)
    );
    assert!(rss_idle > 0 && rss_50 > 0, "no VmRSS for the agent {agent}");
    cli_ok(node, &["service", "rm", "many"]);
    drop(registry);
}
