//! The swarm scenario of the namespaced end-to-end tests, in the VMs, with
//! one mesh: agents started as the `shoal` unit, swarm init and join, an
//! overlay network, a published 3-replica service (process runtime), curl
//! through every node from the host with the client's address checked, UDP
//! through every node, virtual IP and DNS east-west from a task, the IPVS
//! table when the mesh is IPVS, and a stream through a node that keeps
//! flowing while that node's agent is SIGKILLed and restarted. Every check
//! prints one line; the phase ends with the VMs reset for the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::lab::{Ssh, HOST_ADDR, NODES};
use super::Mesh;

const MANAGER: &str = "node1";
/// Requests per node when checking that every replica answers.
const REQUESTS_PER_NODE: usize = 12;

/// The results of one phase's checks.
struct Checks {
    mesh: Mesh,
    failed: Vec<String>,
}

impl Checks {
    fn record(&mut self, name: &str, result: Result<String>) -> bool {
        match result {
            Ok(detail) => {
                println!("vm-test [{}] ok   {name}: {detail}", self.mesh.name());
                true
            }
            Err(e) => {
                println!("vm-test [{}] FAIL {name}: {e:#}", self.mesh.name());
                self.failed
                    .push(format!("[--mesh {}] {name}: {e:#}", self.mesh.name()));
                false
            }
        }
    }
}

/// Runs the scenario with `mesh`; the failed checks (empty when all
/// passed). An error is a failure that stopped the phase early.
/// `fresh`: no earlier phase ran a swarm in these VMs; if one did, the VMs
/// are wiped and rebooted before this one's. Returns the failures and
/// whether this phase ran a swarm.
pub fn run(ssh: &Ssh, mesh: Mesh, fresh: bool, ipvs_swarm: bool) -> Result<(Vec<String>, bool)> {
    let mut checks = Checks {
        mesh,
        failed: Vec::new(),
    };
    println!(
        "vm-test [{}] --- scenario with --mesh {} ---",
        mesh.name(),
        mesh.name()
    );
    let kernel = ssh.ok(MANAGER, "uname -r")?;
    println!("vm-test [{}] guest kernel {kernel}", mesh.name());
    if mesh == Mesh::Ipvs {
        ipvs_client_checks(ssh, &mut checks);
    }
    if mesh == Mesh::Ipvs && !agent_knows_ipvs(ssh)? {
        println!(
            "vm-test [ipvs] NOT RUN: the swarm scenario with --mesh ipvs (this `shoal agent` \
             has no IPVS mesh: the IPVS backend of the mesh trait is not built yet); the IPVS \
             client is checked on its own"
        );
        return Ok((checks.failed, false));
    }
    if mesh == Mesh::Ipvs && !ipvs_swarm {
        println!(
            "vm-test [ipvs] NOT RUN: the swarm scenario with --mesh ipvs (a whole run of it has \
             not passed yet); run it with `cargo xtask vm-test --mesh ipvs`"
        );
        return Ok((checks.failed, false));
    }
    if !fresh {
        reset(ssh)?;
    }
    let result = swarm_checks(ssh, &mut checks);
    if let Err(e) = &result {
        checks.record("scenario", Err(anyhow::anyhow!("stopped early: {e:#}")));
    }
    Ok((checks.failed, true))
}

fn swarm_checks(ssh: &Ssh, checks: &mut Checks) -> Result<()> {
    let mesh = checks.mesh;
    for (node, _) in NODES {
        start_agent(ssh, node, mesh)?;
    }
    let formed = checks.record("swarm init and join", form(ssh));
    if !formed {
        bail!("no swarm");
    }
    let network = checks.record(
        "overlay network",
        ssh.ok(MANAGER, "shoal network create app")
            .map(|id| format!("`app` created ({id})")),
    );
    if !network {
        bail!("no overlay network");
    }
    let web = checks.record("published service", create_web(ssh));
    if !web {
        bail!("the published service did not start");
    }
    checks.record("overlay on every node", overlay_everywhere(ssh));
    let ids = task_ids(ssh, "web")?;
    checks.record(
        "curl through every node from the host",
        curl_every_node(mesh, &ids),
    );
    match mesh {
        Mesh::Ebpf => checks.record("client IP kept", client_ip_in_logs(ssh)),
        Mesh::Ipvs => checks.record("client IP: SNAT to the ingress node", snat_in_logs(ssh)),
    };
    checks.record("UDP through every node", udp_every_node(mesh, &ids));
    checks.record("VIP and DNS east-west", east_west(ssh, &ids));
    if mesh == Mesh::Ipvs {
        checks.record(
            "ipvsadm -Ln shows the services",
            ipvsadm_shows_services(ssh),
        );
        checks.record(
            "a task cannot reach the nodes' own ports",
            task_cannot_reach_nodes(ssh),
        );
    }
    checks.record(
        "agent restart under a live stream",
        stream_across_restart(ssh),
    );
    Ok(())
}

fn agent_knows_ipvs(ssh: &Ssh) -> Result<bool> {
    let help = ssh.ok(MANAGER, "shoal agent --help")?;
    // `[possible values: ebpf, ipvs, off]`, or one `- ipvs: ...` line each.
    Ok(help.lines().any(|l| {
        let l = l.trim();
        l.starts_with("- ipvs")
            || (l.to_lowercase().contains("possible values") && l.contains("ipvs"))
    }))
}

/// Sets the node's mesh and starts the `shoal` unit; waits for its socket.
fn start_agent(ssh: &Ssh, node: &str, mesh: Mesh) -> Result<()> {
    ssh.ok(
        node,
        &format!(
            "printf 'SHOAL_MESH={}\\n' > /etc/default/shoal && systemctl reset-failed shoal \
             2>/dev/null; systemctl start shoal",
            mesh.name()
        ),
    )?;
    wait_until(Duration::from_secs(60), || {
        ssh.sh(node, "shoal node ls -q")
            .map(|o| !String::from_utf8_lossy(&o.stderr).contains("cannot reach"))
            .unwrap_or(false)
            && ssh
                .sh(node, "test -S /run/shoal/shoal.sock")
                .is_ok_and(|o| o.status.success())
    })
    .with_context(|| format!("the agent on {node} did not open its socket"))
}

fn form(ssh: &Ssh) -> Result<String> {
    let (_, manager_addr) = NODES[0];
    ssh.ok(
        MANAGER,
        &format!("shoal swarm init --advertise-addr {manager_addr}"),
    )?;
    let token = ssh.ok(MANAGER, "shoal swarm join-token -q worker")?;
    for (node, addr) in &NODES[1..] {
        ssh.ok(
            node,
            &format!(
                "shoal swarm join --token {token} --advertise-addr {addr} {manager_addr}:2377"
            ),
        )?;
    }
    let mut ready = 0;
    wait_until(Duration::from_secs(60), || {
        ready = node_list(ssh)
            .iter()
            .filter(|n| n["Status"]["State"] == "ready")
            .count();
        ready == NODES.len()
    })
    .with_context(|| format!("{ready} of {} nodes ready", NODES.len()))?;
    Ok(format!("{} nodes ready", NODES.len()))
}

/// Every node as `node inspect` shows it (Docker's `Node`).
fn node_list(ssh: &Ssh) -> Vec<Value> {
    ssh.ok(MANAGER, "shoal node inspect $(shoal node ls -q)")
        .ok()
        .and_then(|out| serde_json::from_str(&out).ok())
        .unwrap_or_default()
}

fn create_web(ssh: &Ssh) -> Result<String> {
    ssh.ok(
        MANAGER,
        "shoal service create --detach --runtime process --name web --replicas 3 --network app \
         --publish 8080:80 --publish 8081:81 --publish published=9053,target=90,protocol=udp \
         -- python3 /opt/shoal-lab/server.py",
    )?;
    let started = Instant::now();
    wait_until(Duration::from_secs(240), || running(ssh, "web").len() == 3).with_context(|| {
        format!(
            "web: not 3 running tasks after 240 s: {}",
            ssh.ok(MANAGER, "shoal service ps web").unwrap_or_default()
        )
    })?;
    let nodes: BTreeSet<String> = running(ssh, "web")
        .iter()
        .filter_map(|t| t["Node"].as_str().map(str::to_string))
        .collect();
    Ok(format!(
        "web: 3 tasks running after {:.0} s, on {}",
        started.elapsed().as_secs_f64(),
        nodes.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

/// `service ps SERVICE` tasks that run and should.
fn running(ssh: &Ssh, service: &str) -> Vec<Value> {
    let out = ssh
        .ok(
            MANAGER,
            &format!("shoal service ps {service} --no-trunc --format json"),
        )
        .unwrap_or_default();
    let tasks: Vec<Value> = if out.starts_with('[') {
        serde_json::from_str(&out).unwrap_or_default()
    } else {
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    tasks
        .into_iter()
        .filter(|t| {
            t["DesiredState"] == "Running"
                && t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
        })
        .collect()
}

fn task_ids(ssh: &Ssh, service: &str) -> Result<BTreeSet<String>> {
    let ids: BTreeSet<String> = running(ssh, service)
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect();
    if ids.is_empty() {
        bail!("{service} has no running task");
    }
    Ok(ids)
}

/// Every node holds the overlay network's namespace (`ov-*`).
fn overlay_everywhere(ssh: &Ssh) -> Result<String> {
    let mut seen = Vec::new();
    for (node, _) in NODES {
        let list = ssh.ok(node, "ls /run/shoal/netns")?;
        let overlays = list
            .split_whitespace()
            .filter(|n| n.starts_with("ov-"))
            .count();
        if overlays < 2 {
            bail!("{node} has {overlays} overlay namespace(s), wanted ingress and app: {list}");
        }
        seen.push(format!("{node}: {overlays}"));
    }
    Ok(format!("overlay namespaces {}", seen.join(", ")))
}

/// One HTTP GET from this host; `(task, client address)` of the answer.
fn curl(addr: &str) -> Option<(String, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://{addr}:8080/")])
        .output()
        .ok()?;
    parse_answer(&String::from_utf8_lossy(&out.stdout))
}

/// `task=ID client=IP:PORT` -> (ID, IP).
fn parse_answer(answer: &str) -> Option<(String, String)> {
    let mut task = None;
    let mut from = None;
    for field in answer.split_whitespace() {
        if let Some(t) = field.strip_prefix("task=") {
            task = Some(t.to_string());
        } else if let Some(c) = field.strip_prefix("client=") {
            from = Some(c.split(':').next().unwrap_or_default().to_string());
        }
    }
    Some((task?, from?))
}

/// The source address a backend sees for a request from this host through
/// the node at `node_addr`: the host's with eBPF, the ingress node's with
/// IPVS (SNAT, see the README's routing mesh section).
fn expected_source(mesh: Mesh, node_addr: &str) -> &str {
    match mesh {
        Mesh::Ebpf => HOST_ADDR,
        Mesh::Ipvs => node_addr,
    }
}

fn curl_every_node(mesh: Mesh, ids: &BTreeSet<String>) -> Result<String> {
    let mut summary = Vec::new();
    for (node, addr) in NODES {
        let want = expected_source(mesh, addr);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut failed = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        // Until every replica answered, then REQUESTS_PER_NODE more that
        // must all succeed.
        while seen.len() < ids.len() && Instant::now() < deadline {
            if let Some((task, from)) = curl(addr) {
                if from != want {
                    bail!("through {node}: the backend saw {from}, not {want}");
                }
                *seen.entry(task).or_default() += 1;
            } else {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        for _ in 0..REQUESTS_PER_NODE {
            match curl(addr) {
                Some((task, from)) if from == want => *seen.entry(task).or_default() += 1,
                Some((_, from)) => bail!("through {node}: the backend saw {from}"),
                None => failed += 1,
            }
        }
        let answered: BTreeSet<String> = seen.keys().cloned().collect();
        if &answered != ids {
            bail!("through {node} ({addr}): answered by {answered:?}, wanted {ids:?}");
        }
        if failed > 0 {
            bail!("through {node}: {failed} of {REQUESTS_PER_NODE} requests failed");
        }
        summary.push(format!(
            "{node} {}",
            seen.values()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ));
    }
    Ok(format!(
        "every replica answered through every node, seen from {} (answers per task: {})",
        match mesh {
            Mesh::Ebpf => HOST_ADDR,
            Mesh::Ipvs => "the ingress node",
        },
        summary.join(", ")
    ))
}

fn client_ip_in_logs(ssh: &Ssh) -> Result<String> {
    let logs = ssh.ok(MANAGER, "shoal service logs web")?;
    let from_host = format!("request from {HOST_ADDR}:");
    if !logs.contains(&from_host) {
        bail!("no `{from_host}` in the service's logs:\n{logs}");
    }
    for (node, addr) in NODES {
        if logs.contains(&format!("request from {addr}:")) {
            bail!("a backend saw {node}'s address {addr}");
        }
    }
    let count = logs.matches(&from_host).count();
    Ok(format!(
        "{count} requests logged from {HOST_ADDR}, none from a node"
    ))
}

/// With IPVS the backends see the node a request came through (SNAT):
/// every node's address is in the logs, the host's is not.
fn snat_in_logs(ssh: &Ssh) -> Result<String> {
    let logs = ssh.ok(MANAGER, "shoal service logs web")?;
    if logs.contains(&format!("request from {HOST_ADDR}:")) {
        bail!("a backend saw the host's own address {HOST_ADDR}: no SNAT?");
    }
    let mut counts = Vec::new();
    for (node, addr) in NODES {
        let count = logs.matches(&format!("request from {addr}:")).count();
        if count == 0 {
            bail!("no request logged from {node}'s address {addr}:\n{logs}");
        }
        counts.push(format!("{count} from {node} ({addr})"));
    }
    Ok(format!(
        "backends logged {}, none from the host {HOST_ADDR}",
        counts.join(", ")
    ))
}

fn udp_every_node(mesh: Mesh, ids: &BTreeSet<String>) -> Result<String> {
    let mut answers = Vec::new();
    for (node, addr) in NODES {
        let want = expected_source(mesh, addr);
        let socket = UdpSocket::bind("0.0.0.0:0").context("cannot bind a UDP socket")?;
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .context("cannot set a UDP timeout")?;
        let mut answer = None;
        for _ in 0..5 {
            socket
                .send_to(b"hi", (*addr, 9053))
                .with_context(|| format!("cannot send to {addr}:9053"))?;
            let mut buf = [0u8; 2048];
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                answer = parse_answer(&String::from_utf8_lossy(&buf[..n]));
                break;
            }
        }
        let Some((task, from)) = answer else {
            bail!("no UDP answer through {node} ({addr}:9053)");
        };
        if !ids.contains(&task) || from != want {
            bail!("through {node}: task {task} saw {from}, not {want}");
        }
        answers.push(format!("{node}->{}", &task[..task.len().min(8)]));
    }
    Ok(format!("answers {}", answers.join(", ")))
}

/// A task of a second service calls `web` by name: DNS answers the VIP,
/// `tasks.web` and the VIP's reverse name; HTTP and UDP through the VIP
/// reach web's tasks.
fn east_west(ssh: &Ssh, ids: &BTreeSet<String>) -> Result<String> {
    let inspect: Value = serde_json::from_str(&ssh.ok(MANAGER, "shoal service inspect web")?)
        .context("`service inspect web` is not JSON")?;
    let vips: Vec<String> = inspect[0]["Endpoint"]["VirtualIPs"]
        .as_array()
        .or_else(|| inspect[0]["VirtualIPs"].as_array())
        .map(|v| {
            v.iter()
                .filter_map(|e| e["Addr"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default();
    let task_ips: BTreeSet<String> = running(ssh, "web")
        .iter()
        .filter_map(|t| {
            t["Addresses"].as_array()?.iter().find_map(|a| {
                let a = a.as_str()?;
                let (net, ip) = a.split_once('=')?;
                (net == "app").then(|| ip.split('/').next().unwrap_or(ip).to_string())
            })
        })
        .collect();
    ssh.ok(
        MANAGER,
        "shoal service create --detach --runtime process --name caller --network app \
         -- python3 /opt/shoal-lab/caller.py web",
    )?;
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(240), || {
        let logs = ssh
            .ok(MANAGER, "shoal service logs caller")
            .unwrap_or_default();
        lines = logs
            .lines()
            .filter(|l| l.contains("round="))
            .map(str::to_string)
            .collect();
        lines.len() >= 12
    })
    .with_context(|| format!("the caller did not finish 12 rounds: {lines:#?}"))?;
    let mut answered = BTreeSet::new();
    for line in &lines {
        if line.contains(" error ") {
            bail!("{line}");
        }
        let field = |name: &str| -> String {
            line.split(&format!("{name}="))
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .unwrap_or_default()
                .to_string()
        };
        let vip = field("vip");
        if !vips.contains(&vip) {
            bail!("{line}: `web` resolved to {vip}, not a VIP of web {vips:?}");
        }
        if field("ptr") != "web" {
            bail!("{line}: the VIP's reverse name is not web");
        }
        if field("udp_from") != vip {
            bail!("{line}: the UDP answer did not come from the VIP");
        }
        let tasks: BTreeSet<String> = field("tasks").split(',').map(str::to_string).collect();
        if !task_ips.is_empty() && tasks != task_ips {
            bail!("{line}: tasks.web is {tasks:?}, web's tasks are {task_ips:?}");
        }
        let task = field("task");
        if !ids.contains(&task) || !ids.contains(&field("udp_task")) {
            bail!("{line}: answered by a task not of web");
        }
        answered.insert(task);
    }
    let _ = ssh.ok(MANAGER, "shoal service rm caller");
    Ok(format!(
        "12 rounds: `web` = VIP {}, PTR web, tasks.web = {} addresses, HTTP via the VIP \
         answered by {} of {} tasks, UDP answers from the VIP",
        vips.join(","),
        task_ips.len(),
        answered.len(),
        ids.len()
    ))
}

/// Every node has IPVS services for the published ports on its address
/// with the `mh` scheduler and web's 3 tasks as masquerading real servers,
/// and no 900 s idle cut.
fn ipvsadm_shows_services(ssh: &Ssh) -> Result<String> {
    let mut timeouts = String::new();
    for (node, addr) in NODES {
        let table = ssh.ok(node, "ipvsadm -Ln")?;
        println!("vm-test [ipvs] {node}: ipvsadm -Ln\n{table}");
        for service in [format!("TCP  {addr}:8080"), format!("UDP  {addr}:9053")] {
            let Some(at) = table.find(&service) else {
                bail!("{node}: no `{service}` in ipvsadm -Ln");
            };
            let block: Vec<&str> = table[at..].lines().collect();
            if !block[0].contains("mh (mh-fallback,mh-port)") {
                bail!("{node}: `{}` does not schedule with mh", block[0]);
            }
            let servers = block[1..]
                .iter()
                .take_while(|l| l.trim_start().starts_with("->"))
                .filter(|l| l.contains("Masq"))
                .count();
            if servers != 3 {
                bail!("{node}: {service} has {servers} masquerading real servers, wanted 3");
            }
        }
        timeouts = ssh.ok(node, "ipvsadm -L --timeout")?;
        if timeouts.contains("tcp 900 ") {
            bail!("{node}: IPVS keeps the 900 s idle cut: {timeouts}");
        }
    }
    Ok(format!(
        "every node: TCP :8080 and UDP :9053 on its address, mh (mh-fallback,mh-port), 3 Masq \
         real servers each; {}",
        timeouts.trim()
    ))
}

/// The nodes' own ports a task must not reach: ssh, gossip's TCP and the
/// manager's port.
const NODE_PORTS: &[u16] = &[22, 7946, 2377];

/// A task on the ingress network (it publishes a port) tries to open TCP
/// connections to every node's own ports: none opens or is refused (the
/// node's stack never answers). Its control, `web` through the VIP, must
/// answer, so a task whose network does not work cannot pass.
fn task_cannot_reach_nodes(ssh: &Ssh) -> Result<String> {
    let targets: Vec<String> = NODES
        .iter()
        .flat_map(|(_, addr)| NODE_PORTS.iter().map(move |p| format!("{addr}:{p}")))
        .collect();
    ssh.ok(
        MANAGER,
        &format!(
            "shoal service create --detach --runtime process --name prober --network app \
             --publish 8099:80 -- python3 /opt/shoal-lab/prober.py web {}",
            targets.join(" ")
        ),
    )?;
    let mut logs = String::new();
    let finished = wait_until(Duration::from_secs(240), || {
        logs = ssh
            .ok(MANAGER, "shoal service logs prober")
            .unwrap_or_default();
        logs.lines().any(|l| l.trim_end().ends_with("done"))
    });
    let placed = ssh
        .ok(MANAGER, "shoal service ps prober --format '{{.Node}}'")
        .unwrap_or_default();
    let _ = ssh.ok(MANAGER, "shoal service rm prober");
    finished.with_context(|| format!("the prober did not finish:\n{logs}"))?;
    let control = logs
        .lines()
        .find(|l| l.contains("control web:80"))
        .unwrap_or_default();
    if !control.contains("reached (open)") {
        bail!("the prober's control failed (its network does not work): {control}");
    }
    let mut blocked = 0;
    for target in &targets {
        let Some(line) = logs
            .lines()
            .find(|l| l.contains(&format!("probe {target} ")))
        else {
            bail!("no probe of {target} in the prober's logs:\n{logs}");
        };
        if !line.contains(" blocked (") {
            bail!("a task on {}: {}", placed.trim(), line.trim());
        }
        blocked += 1;
    }
    Ok(format!(
        "a task on {} reached web through its VIP; {blocked} of {} node ports \
         ({} on every node) blocked",
        placed.trim(),
        targets.len(),
        NODE_PORTS
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A stream from this host through node2's published port 8081 keeps
/// flowing (no gap of a second) while node2's agent is SIGKILLed and
/// started again.
fn stream_across_restart(ssh: &Ssh) -> Result<String> {
    let (node, addr) = NODES[1];
    let stream = TcpStream::connect_timeout(
        &format!("{addr}:8081").parse().context("bad address")?,
        Duration::from_secs(5),
    )
    .with_context(|| format!("cannot connect to {addr}:8081"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .context("cannot set a read timeout")?;
    let reader = std::thread::spawn(move || -> Result<Vec<f64>> {
        let started = Instant::now();
        let mut times = Vec::new();
        let mut lines = BufReader::new(stream).lines();
        while started.elapsed() < Duration::from_secs(16) {
            match lines.next() {
                Some(Ok(_)) => times.push(started.elapsed().as_secs_f64()),
                Some(Err(e)) => bail!(
                    "the stream broke after {:.1} s ({} lines): {e}",
                    started.elapsed().as_secs_f64(),
                    times.len()
                ),
                None => bail!("the stream closed after {} lines", times.len()),
            }
        }
        Ok(times)
    });
    std::thread::sleep(Duration::from_secs(3));
    ssh.ok(
        node,
        "systemctl kill --kill-whom=main --signal=KILL shoal && sleep 0.2 && \
         systemctl reset-failed shoal; systemctl start shoal",
    )?;
    let times = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stream reader panicked"))??;
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    if gap >= 1.0 {
        bail!("the stream stalled for {gap:.2} s across the restart");
    }
    Ok(format!(
        "{} lines through {node} across its agent's SIGKILL and start, longest gap {gap:.2} s",
        times.len()
    ))
}

/// The IPVS client on its own (the agent has no IPVS mesh yet): program a
/// lab-shaped table with `shoal ipvs`, read it back through the client and
/// through `ipvsadm -Ln`, set timeouts, flush.
fn ipvs_client_checks(ssh: &Ssh, checks: &mut Checks) {
    super::ipvs_lab::run(ssh, &mut |name, result| checks.record(name, result));
}

/// Stops the agents, wipes their state and reboots the VMs at once (no
/// orderly stop of the tasks), so this phase starts from nothing.
fn reset(ssh: &Ssh) -> Result<()> {
    println!("vm-test: wiping the agents' state and rebooting the VMs");
    for (node, _) in NODES {
        ssh.sh(
            node,
            "systemctl stop shoal; rm -rf /var/lib/shoal; sync; \
             (sleep 1; systemctl reboot --force) >/dev/null 2>&1 &",
        )?;
    }
    ssh.close();
    std::thread::sleep(Duration::from_secs(5));
    for (node, _) in NODES {
        ssh.wait_up(node, Duration::from_secs(600))?;
    }
    Ok(())
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
