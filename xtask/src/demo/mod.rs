//! `cargo xtask demo`: the main job, on this one machine. Four network
//! namespaces on a shared underlay bridge (198.18.0.0/15): a swarm of one
//! manager and two workers running the real `shoal` binary, and a client that
//! runs no agent. Each node loads a small busybox image built on the spot
//! (offline, [`image`]); the swarm runs it as a 3-replica web service
//! published on port 8080; the client calls it through every node's routing
//! mesh, and each reply names the task that served it and the client
//! address it saw.

mod answers;
mod image;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shoal_tests::swarm::{form, running, start_agent_with};
use shoal_tests::{cleanup_leftovers, Host, Underlay};

use crate::{deps, ebpf, run, suite};
use answers::{Answer, NodeTally, TaskLabel};

const NETWORK: &str = "app";
const SERVICE: &str = "web";
const REPLICAS: usize = 3;
const PUBLISHED: u16 = 8080;
const REQUESTS_PER_NODE: usize = 9;
/// How long the service's tasks may take to run, from `service create`.
const TASKS_LIMIT: Duration = Duration::from_secs(90);
/// How long each node's routing mesh may take to give a first answer once
/// the tasks run.
const INGRESS_LIMIT: Duration = Duration::from_secs(30);
/// How long the task processes may take to exit after `service rm`.
const REMOVE_LIMIT: Duration = Duration::from_secs(20);
/// Per request, in seconds (curl's `-m`).
const CURL_TIMEOUT: &str = "3";
/// Where the agent looks for the eBPF object before its embedded copy
/// (`agent/src/ebpf/loader.rs`).
const OBJECT_ENV: &str = "SHOAL_EBPF_OBJECT";

/// Runs the demo; with `keep`, leaves the cluster up and says how to use it
/// and tear it down, else tears it down and checks that nothing is left.
pub fn run(root: &Path, keep: bool) -> Result<()> {
    if !run::is_root()? {
        bail!(
            "`cargo xtask demo` needs root: it creates network namespaces, veth pairs, \
             cgroups and eBPF programs. Run it as root."
        );
    }
    let started = Instant::now();
    println!("== what the demo needs: apt packages, bpf-linker, the eBPF object, shoal");
    deps::install_all()?;
    let object = ebpf::build(root)?;
    let shoal = build_shoal(root)?;
    // The harness runs this binary; the agents it starts load this object
    // rather than whatever copy the binary embedded.
    std::env::set_var("SHOAL_BIN", &shoal);
    std::env::set_var(OBJECT_ENV, &object);

    println!("\n== shoal demo: a service on a 3-node swarm, reached through its routing mesh");
    let ul = Underlay::builder()
        .hosts(4)
        .mtu(1500)
        .build()
        .context("creating the hosts")?;
    let hosts: Vec<&Host> = ul.hosts().iter().collect();
    let mut demo = Demo {
        nodes: [hosts[0], hosts[1], hosts[2]],
        client: hosts[3],
        agents: Vec::new(),
        tasks: Vec::new(),
    };
    demo.print_hosts(&ul);
    let outcome = demo.show();
    if outcome.is_err() {
        demo.print_agent_logs();
    }
    let mut failures = match outcome {
        Ok(failures) => failures,
        Err(e) if keep => vec![format!("{e:#}")],
        Err(e) => {
            if let Err(cleanup) = teardown(ul) {
                eprintln!("error: {cleanup:#}");
            }
            return Err(e);
        }
    };
    if keep {
        demo.print_usage(root, &ul, &shoal);
        // Deliberately skip the underlay's cleanup; `cargo xtask clean` does it.
        std::mem::forget(ul);
    } else {
        if let Err(e) = demo.remove_service() {
            failures.push(format!("{e:#}"));
        }
        teardown(ul)?;
        println!("(`cargo xtask demo --keep` keeps the cluster up and prints how to use it.)");
    }
    println!("\ndemo done in {:.1}s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        bail!(
            "{} demo check(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Builds the `shoal` binary (which embeds the eBPF object just built) and
/// returns its path.
fn build_shoal(root: &Path) -> Result<PathBuf> {
    run::run(
        Command::new(suite::workspace_cargo())
            .current_dir(root)
            .args(["build", "-p", "shoal-agent", "--bin", "shoal"]),
    )?;
    Ok(suite::target_dir(root).join("debug").join("shoal"))
}

/// The hosts of one run: three swarm nodes (h1 the manager) and the client.
struct Demo<'a> {
    nodes: [&'a Host; 3],
    client: &'a Host,
    /// The agents' PIDs, in the order of `nodes`.
    agents: Vec<u32>,
    /// The service's running tasks, once they all run.
    tasks: Vec<TaskLabel>,
}

impl Demo<'_> {
    fn print_hosts(&self, ul: &Underlay) {
        println!(
            "\n-- 4 hosts, each a network namespace with eth0 on bridge br0 (netns {}), MTU {}",
            ul.underlay_netns(),
            ul.mtu()
        );
        let roles = ["manager", "worker", "worker", "client (no agent)"];
        for (host, role) in self.nodes.iter().chain([&self.client]).zip(roles) {
            println!(
                "  {:<3} {:<12} netns {:<24} {role}",
                host.name(),
                host.addr(),
                host.netns()
            );
        }
    }

    /// The demo proper. An error stops it (the cluster did not come up);
    /// the returned list holds the checks that failed after it did.
    fn show(&mut self) -> Result<Vec<String>> {
        self.start_swarm()?;
        self.load_image()?;
        self.tasks = self.start_service()?;
        Ok(self.call_through_every_node(&self.tasks))
    }

    fn start_swarm(&mut self) -> Result<()> {
        println!("\n-- `shoal agent` on h1, h2, h3");
        for node in self.nodes {
            let t = Instant::now();
            let pid = start_agent_with(node, &[])
                .with_context(|| format!("starting the agent on {}", node.name()))?;
            println!(
                "  {}: pid {pid}, socket {}/shoal.sock after {:.1}s",
                node.name(),
                node.run_dir().display(),
                t.elapsed().as_secs_f64()
            );
            self.agents.push(pid);
        }
        let [manager, w1, w2] = self.nodes;
        println!(
            "\n-- `shoal swarm init --advertise-addr {}` on h1; h2 and h3 join as workers",
            manager.addr()
        );
        let t = Instant::now();
        form(manager, &[], &[w1, w2]);
        println!("  formed in {:.1}s", t.elapsed().as_secs_f64());
        print_indented(&shoal(manager, &["node", "ls"])?);
        Ok(())
    }

    /// Builds the demo's image and loads it on every node, as on
    /// air-gapped hosts.
    fn load_image(&self) -> Result<()> {
        println!(
            "\n-- the image {}: busybox httpd and a CGI, built with umoci",
            image::IMAGE
        );
        let t = Instant::now();
        let dir = std::env::temp_dir().join(format!("shoal-demo-image-{}", std::process::id()));
        let archive = image::build(&dir);
        let archive = match archive {
            Ok(archive) => archive,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        println!("  built in {:.1}s", t.elapsed().as_secs_f64());
        let path = archive.to_string_lossy().to_string();
        let loaded = self.nodes.iter().try_for_each(|node| {
            println!("\n-- `shoal image load -i {path}` on {}", node.name());
            print_indented(&shoal(node, &["image", "load", "-i", &path])?);
            Ok::<(), anyhow::Error>(())
        });
        let _ = std::fs::remove_dir_all(&dir);
        loaded?;
        println!("\n-- `shoal image ls` on h1");
        print_indented(&shoal(self.nodes[0], &["image", "ls"])?);
        println!(
            "  images on every node {:.1}s after the build began",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Creates the network and the service, waits for its tasks to run and
    /// returns them.
    fn start_service(&self) -> Result<Vec<TaskLabel>> {
        let manager = self.nodes[0];
        println!("\n-- `shoal network create {NETWORK}` (an overlay for the whole swarm)");
        print_indented(&shoal(manager, &["network", "create", NETWORK])?);

        let replicas = REPLICAS.to_string();
        let publish = format!("{PUBLISHED}:80");
        println!(
            "\n-- `shoal service create --name {SERVICE} --replicas {replicas} --network {NETWORK} \
             --publish {publish} -d {}`",
            image::IMAGE
        );
        let t = Instant::now();
        let id = shoal(
            manager,
            &[
                "service",
                "create",
                "--name",
                SERVICE,
                "--replicas",
                &replicas,
                "--network",
                NETWORK,
                "--publish",
                &publish,
                "--detach",
                image::IMAGE,
            ],
        )?;
        println!("  service id {}", id.trim());

        println!(
            "\n-- waiting for {REPLICAS} running tasks (at most {}s)",
            TASKS_LIMIT.as_secs()
        );
        let mut shown = None;
        let tasks = loop {
            let now = running(manager, SERVICE);
            if shown != Some(now.len()) {
                println!(
                    "  {}/{REPLICAS} running after {:.1}s",
                    now.len(),
                    t.elapsed().as_secs_f64()
                );
                shown = Some(now.len());
            }
            if now.len() == REPLICAS {
                break now;
            }
            if t.elapsed() > TASKS_LIMIT {
                bail!(
                    "{SERVICE}: {} of {REPLICAS} tasks running after {}s; `service ps {SERVICE}`:\n{}",
                    now.len(),
                    TASKS_LIMIT.as_secs(),
                    shoal(manager, &["service", "ps", SERVICE])?
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        println!("\n-- `shoal service ps {SERVICE}`");
        print_indented(&shoal(manager, &["service", "ps", SERVICE])?);
        Ok(tasks
            .iter()
            .map(|t| TaskLabel {
                id: field(t, "ID"),
                name: field(t, "Name"),
                node: field(t, "Node"),
                pid: t["Pid"].as_u64().and_then(|pid| u32::try_from(pid).ok()),
            })
            .collect())
    }

    /// From the client, calls the published port on every node; prints the
    /// replies, the summary table and the client addresses the backends saw.
    /// Returns the checks that failed.
    fn call_through_every_node(&self, tasks: &[TaskLabel]) -> Vec<String> {
        let client = self.client;
        let mut failures = Vec::new();
        println!(
            "\n-- from the client {} ({}): the first answer through each node's routing mesh \
             (at most {}s each)",
            client.name(),
            client.addr(),
            INGRESS_LIMIT.as_secs()
        );
        for node in self.nodes {
            let t = Instant::now();
            let mut outcome = self.get(node);
            while outcome.is_err() && t.elapsed() < INGRESS_LIMIT {
                std::thread::sleep(Duration::from_millis(250));
                outcome = self.get(node);
            }
            match outcome {
                Ok((_, body)) => println!(
                    "  {:<3} {}: answered after {:.1}s: {body}",
                    node.name(),
                    url(node),
                    t.elapsed().as_secs_f64()
                ),
                Err(why) => {
                    println!(
                        "  {:<3} {}: NO ANSWER in {}s: {why}",
                        node.name(),
                        url(node),
                        INGRESS_LIMIT.as_secs()
                    );
                    failures.push(format!(
                        "no answer through {} ({}): {why}",
                        node.name(),
                        url(node)
                    ));
                }
            }
        }

        println!(
            "\n-- {REQUESTS_PER_NODE} requests through each node: `curl {}` and so on",
            url(self.nodes[0])
        );
        let mut tallies = Vec::new();
        for node in self.nodes {
            let mut tally = NodeTally::new(node.name(), node.addr());
            for n in 1..=REQUESTS_PER_NODE {
                let outcome = self.get(node);
                let shown = match &outcome {
                    Ok((_, body)) => body.clone(),
                    Err(why) => format!("FAILED: {why}"),
                };
                println!("  {:<3} #{n}  {shown}", node.name());
                tally.record(outcome.map(|(answer, _)| answer));
            }
            tallies.push(tally);
        }

        println!(
            "\n-- summary: replies per task, through each node (a task is picked per connection \
             from a hash of the client's address and port)"
        );
        for line in answers::table(&tallies, tasks, PUBLISHED) {
            println!("  {line}");
        }
        for tally in &tallies {
            for why in &tally.failures {
                failures.push(format!("a request through {} failed: {why}", tally.node));
            }
            let reached = tasks
                .iter()
                .filter(|t| tally.by_task.contains_key(&t.id))
                .count();
            if tally.answered() > 0 && reached < tasks.len() {
                println!(
                    "  {} reached {reached} of {} tasks in {} requests",
                    tally.node,
                    tasks.len(),
                    tally.sent
                );
            }
        }

        println!("\n-- the client address the backends saw");
        let total: usize = tallies.iter().map(NodeTally::answered).sum();
        for (addr, n) in answers::clients_seen(&tallies) {
            if addr == client.addr() {
                println!(
                    "  {addr} in {n} of {total} replies: the client's own address ({}), \
                     not a node's: the mesh does not masquerade",
                    client.name()
                );
            } else {
                println!("  {addr} in {n} of {total} replies: NOT the client's address");
                failures.push(format!(
                    "{n} replies saw client {addr}, not {}",
                    client.addr()
                ));
            }
        }
        failures
    }

    /// One request from the client to `node`'s published port: the parsed
    /// reply and its text, or why there is none.
    fn get(&self, node: &Host) -> Result<(Answer, String), String> {
        let out = self
            .client
            .exec("curl", &["-sS", "-m", CURL_TIMEOUT, &url(node)])
            .map_err(|e| format!("cannot run curl: {e}"))?;
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(format!("{} ({stderr})", out.status));
        }
        match Answer::parse(&body) {
            Some(answer) => Ok((answer, body)),
            None => Err(format!("unexpected reply {body:?}")),
        }
    }

    /// `shoal service rm`, then waits for the task processes to exit, so that
    /// the teardown finds no workload to kill.
    fn remove_service(&self) -> Result<()> {
        if self.tasks.is_empty() {
            return Ok(());
        }
        println!("\n-- `shoal service rm {SERVICE}`");
        let t = Instant::now();
        print_indented(&shoal(self.nodes[0], &["service", "rm", SERVICE])?);
        let pids: Vec<u32> = self.tasks.iter().filter_map(|task| task.pid).collect();
        while pids.iter().any(|pid| is_alive(*pid)) {
            if t.elapsed() > REMOVE_LIMIT {
                bail!(
                    "the tasks of {SERVICE} still run {}s after `service rm`",
                    REMOVE_LIMIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "  its {} task processes exited within {:.1}s",
            pids.len(),
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The last lines of each agent's log, when the demo stops short.
    fn print_agent_logs(&self) {
        for (node, pid) in self.nodes.iter().zip(&self.agents) {
            let Some(log) = node.log_path(*pid) else {
                continue;
            };
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            println!(
                "\n-- the last lines of {}'s agent log ({})",
                node.name(),
                log.display()
            );
            for line in &lines[lines.len().saturating_sub(15)..] {
                println!("  {line}");
            }
        }
    }

    /// Copy-pasteable commands, with this run's paths, to use the cluster
    /// and to tear it down.
    fn print_usage(&self, root: &Path, ul: &Underlay, shoal: &Path) {
        let [manager, w1, _] = self.nodes;
        let cli = |host: &Host, args: &str| {
            format!(
                "nsenter --net={} -- {} --run-dir {} {args}",
                host.netns_path().display(),
                shoal.display(),
                host.run_dir().display()
            )
        };
        println!("\nThe cluster stays up. As root, on the manager h1:");
        for args in [
            "service ls",
            "service ps web",
            "service scale web=5",
            "node ls",
        ] {
            println!("  {}", cli(manager, args));
        }
        println!("or, shorter:");
        println!("  alias shoal-h1='{}'", cli(manager, "").trim_end());
        println!("  shoal-h1 service inspect --pretty web");
        println!("From the client {}, through any node:", self.client.name());
        println!(
            "  nsenter --net={} -- curl -s {}",
            self.client.netns_path().display(),
            url(w1)
        );
        println!("Agent logs:");
        for (node, pid) in self.nodes.iter().zip(&self.agents) {
            if let Some(log) = node.log_path(*pid) {
                println!("  {}", log.display());
            }
        }
        println!(
            "Tear it all down (namespaces, run dirs, cgroups, bpf pins), from {}:",
            root.display()
        );
        println!("  cargo xtask clean {}", ul.prefix());
    }
}

/// Drops the underlay (its cleanup kills the agents and tasks and removes
/// namespaces, run dirs, cgroups and bpf pins), then checks that nothing of
/// it is left; whatever is, is removed and reported as an error.
fn teardown(ul: Underlay) -> Result<()> {
    let prefix = ul.prefix().to_string();
    println!("\n-- tearing down {prefix}");
    drop(ul);
    let left = cleanup_leftovers(Some(&prefix))
        .with_context(|| format!("checking that {prefix} left nothing"))?;
    if left.is_empty() {
        println!("  nothing left: no netns, run dir, cgroup or bpf pin named {prefix}*");
        return Ok(());
    }
    for item in &left {
        println!("  left behind, removed now: {item}");
    }
    bail!(
        "the teardown of {prefix} left {} thing(s) behind",
        left.len()
    )
}

/// Runs `shoal ARGS` against `host`'s agent; its stdout, or an error with
/// what it printed.
fn shoal(host: &Host, args: &[&str]) -> Result<String> {
    let out = host
        .shoal(args)
        .with_context(|| format!("running shoal on {}", host.name()))?;
    if !out.status.success() {
        bail!(
            "`shoal {}` on {} failed ({}): {}{}",
            args.iter().take(3).copied().collect::<Vec<_>>().join(" "),
            host.name(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether process `pid` exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn url(node: &Host) -> String {
    format!("http://{}:{PUBLISHED}/", node.addr())
}

/// A string field of a `service ps --format json` task.
fn field(task: &serde_json::Value, name: &str) -> String {
    task[name].as_str().unwrap_or_default().to_string()
}

fn print_indented(text: &str) {
    for line in text.trim_end().lines() {
        println!("  {line}");
    }
}
