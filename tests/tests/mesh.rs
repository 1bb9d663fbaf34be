//! The routing mesh end to end on namespaced hosts: a client outside the
//! swarm reaches a service's published TCP and UDP ports through every node,
//! every replica answers through every node, the backend sees the client's
//! own address, removed and killed tasks leave the rotation, and a long-lived
//! stream through the ingress survives its node's agent being killed and
//! restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::mesh::{parse_answer, SERVER};
use shoal_tests::swarm::{cli_ok, create, form, running, start_agent_with, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};

/// One HTTP request from `client` to `addr`; the answer's `task=` and
/// `client=` fields.
fn get(client: &Host, addr: &str) -> Option<(String, String)> {
    let url = format!("http://{addr}:8080/");
    let out = client
        .exec("curl", &["-s", "-m", "3", &url])
        .expect("curl runs");
    parse_answer(&String::from_utf8_lossy(&out.stdout))
}

/// `n` requests through each node; the task ids that answered, per node,
/// and how many requests failed.
fn spread(client: &Host, nodes: &[&Host], n: usize) -> (BTreeMap<String, BTreeSet<String>>, usize) {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut failed = 0;
    for node in nodes {
        let addr = node.addr().to_string();
        for _ in 0..n {
            match get(client, &addr) {
                Some((task, from)) => {
                    assert_eq!(
                        from,
                        client.addr().to_string(),
                        "the backend saw another address"
                    );
                    seen.entry(node.name().to_string())
                        .or_default()
                        .insert(task);
                }
                None => failed += 1,
            }
        }
    }
    (seen, failed)
}

fn task_ids(host: &Host, service: &str) -> BTreeSet<String> {
    running(host, service)
        .iter()
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect()
}

/// One UDP datagram to `addr:9053` from `client`; the answer.
fn udp(client: &Host, addr: &str) -> Option<(String, String)> {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.sendto(b'hi',('{addr}',9053))\nprint(s.recvfrom(2048)[0].decode())"
    );
    let out = client
        .exec("python3", &["-c", &script])
        .expect("python3 runs");
    parse_answer(&String::from_utf8_lossy(&out.stdout))
}

/// How a node's ingress program is attached to its underlay interface, and
/// the program's id: `tc` when the kernel lists a cls_bpf filter there
/// (`bpftool net`), `tcx` when the agent's pinned link is a TCX link (this
/// bpftool does not list TCX links by interface; type 11 is TCX).
fn attachment(node: &Host) -> Option<(&'static str, String)> {
    let out = node.exec("bpftool", &["-j", "net", "show"]).ok()?;
    let listed: Value = serde_json::from_slice(&out.stdout).ok()?;
    for entry in listed[0]["tc"].as_array().into_iter().flatten() {
        if entry["devname"] == node.iface() && entry["name"] == "shoal_ingress" {
            return Some(("tc", entry["id"].to_string()));
        }
    }
    let run_dir: String = node
        .run_dir()
        .to_string_lossy()
        .trim_matches('/')
        .replace('/', "_");
    let pin = format!(
        "/sys/fs/bpf/shoal/{run_dir}/links/shoal_ingress@host@{}",
        node.iface()
    );
    let out = node
        .exec("bpftool", &["-j", "link", "show", "pinned", &pin])
        .ok()?;
    let link: Value = serde_json::from_slice(&out.stdout).ok()?;
    (link["type"] == 11 || link["type"] == "tcx").then(|| ("tcx", link["prog_id"].to_string()))
}

#[test]
fn published_ports_reach_every_replica_through_every_node() {
    published_ports_scenario(&[], "tcx");
}

/// The same with the pre-6.6 attachment forced: clsact + cls_bpf filters,
/// replaced in place (same priority and handle) by a restarted agent.
#[test]
fn published_ports_work_with_the_legacy_tc_attachment() {
    published_ports_scenario(&["--mesh-attach", "tc"], "tc");
}

fn published_ports_scenario(flags: &[&str], kind: &str) {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    let mut agents = Vec::new();
    for node in nodes {
        agents.push(start_agent_with(node, flags).expect("agent"));
    }
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    cli_ok(nodes[0], &["network", "create", "app"]);
    create(
        nodes[0],
        "web",
        &[
            "--replicas",
            "3",
            "--network",
            "app",
            "--publish",
            "8080:80",
            "--publish",
            "8081:81",
            "--publish",
            "published=9053,target=90,protocol=udp",
        ],
        &["python3", "-c", SERVER],
    );
    wait_running(nodes[0], "web", 3, Duration::from_secs(40));
    let ids = task_ids(nodes[0], "web");

    // Every replica answers through every node, and sees the client itself.
    let all_seen = wait_for(Duration::from_secs(20), || {
        let (seen, _) = spread(client, nodes, 12);
        seen.len() == 3 && seen.values().all(|s| *s == ids)
    });
    assert!(
        all_seen,
        "not every replica answered through every node: {:?}",
        spread(client, nodes, 12)
    );
    let (seen, failed) = spread(client, nodes, 15);
    assert_eq!(failed, 0, "requests failed: {seen:?}");

    // The backends' own logs name the client, not a node.
    let logs = cli_ok(nodes[0], &["service", "logs", "web"]);
    let from_client = format!("request from {}:", client.addr());
    assert!(
        logs.contains(&from_client),
        "no `{from_client}` in:\n{logs}"
    );
    assert!(
        nodes
            .iter()
            .all(|n| !logs.contains(&format!("request from {}:", n.addr()))),
        "a backend saw a node's address:\n{logs}"
    );

    // UDP too, through every node.
    for node in nodes {
        let (task, from) = udp(client, &node.addr().to_string()).expect("a UDP answer");
        assert!(ids.contains(&task));
        assert_eq!(from, client.addr().to_string());
    }

    // A long-lived stream through node 2 keeps flowing while node 2's agent
    // is SIGKILLed and started again.
    let stream = client
        .spawn(
            "python3",
            &[
                "-c",
                &format!(
                    "import socket,sys,time\ns=socket.create_connection(('{}',8081))\n\
                     s.settimeout(3)\nf=s.makefile()\nend=time.time()+14\n\
                     while time.time()<end:\n  l=f.readline()\n  assert l, 'stream closed'\n  print(time.time(), l.strip(), flush=True)\n\
                     print('STREAM OK', flush=True)",
                    nodes[1].addr()
                ),
            ],
        )
        .expect("stream client");
    std::thread::sleep(Duration::from_secs(2));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agents[1] as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    // Started again at once: a node silent for longer than the heartbeat
    // timeout (2 s) is marked down and its tasks are replaced elsewhere.
    let attached_before = attachment(nodes[1]);
    agents[1] = start_agent_with(nodes[1], flags).expect("agent restarts");
    let log = client.log_path(stream).expect("stream log");
    let done = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("STREAM OK") || l.contains("Error"))
    });
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done && out.contains("STREAM OK"),
        "the stream broke:\n{out}"
    );
    let times: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    eprintln!(
        "stream across an agent restart: {} lines, longest gap {gap:.2} s",
        times.len()
    );
    assert!(gap < 1.0, "the stream stalled for {gap:.2} s");

    // Attached the way asked for, and taken over by the new agent: the
    // program changed in place, one attachment before and after.
    let attached_after = wait_for(Duration::from_secs(10), || {
        attachment(nodes[1]).is_some_and(|after| Some(&after) != attached_before.as_ref())
    });
    let (before, after) = (attached_before.clone(), attachment(nodes[1]));
    eprintln!("underlay attachment of node 2: {before:?} -> {after:?}");
    assert!(
        before.as_ref().is_some_and(|(k, _)| *k == kind) && attached_after,
        "wanted a {kind} attachment replaced by the restarted agent: {before:?} -> {after:?}"
    );
    assert!(after.is_some_and(|(k, _)| k == kind));
    if kind == "tc" {
        let out = nodes[1]
            .exec(
                "tc",
                &["filter", "show", "dev", nodes[1].iface(), "ingress"],
            )
            .expect("tc runs");
        let filters = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            filters
                .lines()
                .filter(|l| l.contains("shoal_ingress"))
                .count(),
            1,
            "one shoal filter, replaced in place:\n{filters}"
        );
        assert!(filters.contains("direct-action"), "{filters}");
    }

    // Scale down: no request reaches a removed task.
    cli_ok(nodes[0], &["service", "scale", "--detach", "web=1"]);
    wait_running(nodes[0], "web", 1, Duration::from_secs(30));
    let left = task_ids(nodes[0], "web");
    let settled = wait_for(Duration::from_secs(10), || {
        let (seen, failed) = spread(client, nodes, 5);
        failed == 0 && seen.values().all(|s| *s == left)
    });
    assert!(
        settled,
        "removed tasks still answer: {:?}",
        spread(client, nodes, 5)
    );
    let (seen, failed) = spread(client, nodes, 10);
    assert_eq!(failed, 0);
    assert!(seen.values().all(|s| *s == left), "{seen:?}");

    // Kill the task's process: it leaves the rotation, and its replacement
    // answers.
    cli_ok(nodes[0], &["service", "scale", "--detach", "web=2"]);
    wait_running(nodes[0], "web", 2, Duration::from_secs(30));
    let victim: Value = running(nodes[0], "web").remove(0);
    let victim_id = victim["ID"].as_str().unwrap_or_default().to_string();
    let pid: i32 = victim["Pid"].as_u64().expect("running task has a pid") as i32;
    let killed = Instant::now();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let gone = wait_for(Duration::from_secs(15), || {
        let (seen, failed) = spread(client, nodes, 4);
        failed == 0 && seen.values().all(|s| !s.contains(&victim_id))
    });
    eprintln!(
        "killed task out of the rotation after {} ms",
        killed.elapsed().as_millis()
    );
    assert!(gone, "the killed task stayed in the rotation");
}

/// Asks the embedded DNS for `api`, `tasks.api` and the VIP's reverse name,
/// fetches `http://api/` through the virtual IP and sends a UDP datagram to
/// `api:90` from an unconnected socket, 12 times; prints what it got.
const CALLER: &str = r#"
import socket, time, urllib.request
for i in range(12):
    try:
        vip = socket.gethostbyname("api")
        tasks = sorted(socket.gethostbyname_ex("tasks.api")[2])
        ptr = socket.gethostbyaddr(vip)[0]
        body = urllib.request.urlopen("http://api/", timeout=3).read().decode().strip()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(3)
        u.sendto(b"hi", ("api", 90))
        answer, peer = u.recvfrom(2048)
        u.close()
        udp_task = answer.decode().split()[0].split("=")[1]
        print("vip=%s ptr=%s tasks=%s udp_from=%s udp_task=%s %s" % (vip, ptr, ",".join(tasks), peer[0], udp_task, body), flush=True)
    except Exception as e:
        print("error %r" % e, flush=True)
    time.sleep(0.3)
time.sleep(3600)
"#;

#[test]
fn tasks_reach_a_service_by_name_through_its_virtual_ip() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let nodes: Vec<&Host> = ul.hosts().iter().collect();
    for node in &nodes {
        start_agent_with(node, &[]).expect("agent");
    }
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    cli_ok(nodes[0], &["network", "create", "app"]);
    create(
        nodes[0],
        "api",
        &["--replicas", "2", "--network", "app"],
        &["python3", "-c", SERVER],
    );
    wait_running(nodes[0], "api", 2, Duration::from_secs(40));
    let inspect: Value =
        serde_json::from_str(&cli_ok(nodes[0], &["service", "inspect", "api"])).expect("json");
    let vip = inspect[0]["Endpoint"]["VirtualIPs"][0]["Addr"]
        .as_str()
        .expect("api has a virtual IP")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let api_ids = task_ids(nodes[0], "api");
    let api_ips: BTreeSet<String> = running(nodes[0], "api")
        .iter()
        .map(|t| {
            let a = t["Addresses"][0].as_str().unwrap_or_default();
            a.split('=').nth(1).unwrap_or_default().to_string()
        })
        .collect();

    create(
        nodes[0],
        "caller",
        &["--network", "app"],
        &["python3", "-c", CALLER],
    );
    wait_running(nodes[0], "caller", 1, Duration::from_secs(40));
    let mut lines = Vec::new();
    let done = wait_for(Duration::from_secs(20), || {
        let out = cli_ok(nodes[0], &["service", "logs", "caller"]);
        lines = out.lines().map(str::to_string).collect();
        lines
            .iter()
            .filter(|l| l.contains("vip=") || l.contains("error"))
            .count()
            >= 12
    });
    assert!(done, "the caller did not finish: {lines:#?}");
    let mut answered = BTreeSet::new();
    for line in lines
        .iter()
        .filter(|l| l.contains("vip=") || l.contains("error"))
    {
        assert!(!line.contains("error"), "{line}");
        assert!(
            line.contains(&format!("vip={vip} ")),
            "{line}: not the VIP {vip}"
        );
        assert!(
            line.contains("ptr=api "),
            "{line}: the VIP's reverse name is not api"
        );
        // A datagram from an unconnected socket: sent to a task, answered as
        // if by the VIP.
        assert!(
            line.contains(&format!("udp_from={vip} ")),
            "{line}: UDP answer not from the VIP"
        );
        let udp_task = line
            .split("udp_task=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or_default();
        assert!(
            api_ids.contains(udp_task),
            "{line}: UDP answered by {udp_task}"
        );
        let tasks: BTreeSet<String> = line
            .split("tasks=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(tasks, api_ips, "{line}");
        let (task, _) = parse_answer(line).expect("an answer");
        answered.insert(task);
    }
    assert_eq!(answered, api_ids, "both api tasks answer through the VIP");
}
