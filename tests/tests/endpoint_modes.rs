//! Endpoint modes, network aliases and host-mode publishing end to end on
//! namespaced hosts: a `dnsrr` service's name answers its tasks' addresses
//! (no virtual IP) and follows a scale; an alias answers like the service;
//! a port published with `mode=host` is served only by the node running a
//! task, straight to it with the client's address kept, and the scheduler
//! keeps a second such task off that node.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use shoal_tests::mesh::{page, parse_answer, SERVER};
use shoal_tests::swarm::{
    cli, cli_ok, create, form, running, start_agent_with, tasks, text, try_create, wait_for,
    wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// The addresses `dig` gets for `name` from the embedded DNS at `gateway`,
/// asked from inside the sandbox of task `task_id` on `node`.
fn dig(node: &Host, task_id: &str, gateway: &str, name: &str) -> BTreeSet<String> {
    let server = format!("@{gateway}");
    let out = cli(
        node,
        &[
            "overlay", "exec", task_id, "--", "dig", "+short", "+time=2", "+tries=1", &server, name,
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
        .collect()
}

/// The addresses of `service`'s running tasks on its first network.
fn task_ips(host: &Host, service: &str) -> BTreeSet<String> {
    running(host, service)
        .iter()
        .map(|t| {
            let a = t["Addresses"][0].as_str().unwrap_or_default();
            a.split('=').nth(1).unwrap_or_default().to_string()
        })
        .collect()
}

fn inspect(host: &Host, service: &str) -> Value {
    let out = cli_ok(host, &["service", "inspect", service]);
    serde_json::from_str::<Value>(&out).expect("inspect json")[0].clone()
}

#[test]
fn dnsrr_names_and_aliases_answer_the_tasks_and_follow_a_scale() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let nodes: Vec<&Host> = ul.hosts().iter().collect();
    for node in &nodes {
        start_agent_with(node, &[]).expect("agent");
    }
    form(nodes[0], &[], &[nodes[1]]);
    cli_ok(nodes[0], &["network", "create", "app"]);
    let network: Value =
        serde_json::from_str(&cli_ok(nodes[0], &["network", "inspect", "app"])).expect("json");
    let gateway = network[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("a gateway")
        .to_string();

    // Docker's refusal, before anything is written.
    let refused = try_create(
        nodes[0],
        "bad",
        &["--endpoint-mode", "dnsrr", "-p", "8080:80"],
        &["sleep", "600"],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("port published with ingress mode can't be used with dnsrr mode"),
        "{}",
        text(&refused)
    );

    create(
        nodes[0],
        "web",
        &[
            "--replicas",
            "2",
            "--endpoint-mode",
            "dnsrr",
            "--network",
            "name=app,alias=db",
        ],
        &["sleep", "3600"],
    );
    create(
        nodes[0],
        "api",
        &["--network", "name=app,alias=backend,alias=rest"],
        &["sleep", "3600"],
    );
    // The caller runs on the manager, so `overlay exec` there reaches it.
    create(
        nodes[0],
        "caller",
        &["--network", "app", "--constraint", "node.role==manager"],
        &["sleep", "3600"],
    );
    wait_running(nodes[0], "web", 2, Duration::from_secs(60));
    wait_running(nodes[0], "api", 1, Duration::from_secs(60));
    wait_running(nodes[0], "caller", 1, Duration::from_secs(60));
    let caller = running(nodes[0], "caller")[0]["ID"]
        .as_str()
        .expect("caller id")
        .to_string();

    let web = inspect(nodes[0], "web");
    assert_eq!(web["Spec"]["EndpointSpec"]["Mode"], "dnsrr");
    assert_eq!(web["Endpoint"]["Spec"]["Mode"], "dnsrr");
    assert!(
        web["Endpoint"]["VirtualIPs"]
            .as_array()
            .is_none_or(|v| v.is_empty()),
        "a dnsrr service has no VIP: {}",
        web["Endpoint"]
    );
    assert_eq!(
        web["Spec"]["TaskTemplate"]["Networks"][0]["Aliases"],
        serde_json::json!(["db"])
    );
    let api = inspect(nodes[0], "api");
    let api_vip = api["Endpoint"]["VirtualIPs"][0]["Addr"]
        .as_str()
        .expect("api has a VIP")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();

    // `web`, `tasks.web` and the alias `db` answer the two task addresses.
    let want = task_ips(nodes[0], "web");
    assert_eq!(want.len(), 2, "{want:?}");
    for name in ["web", "tasks.web", "db", "tasks.db"] {
        let ok = wait_for(Duration::from_secs(20), || {
            dig(nodes[0], &caller, &gateway, name) == want
        });
        assert!(
            ok,
            "{name}: {:?}, want the tasks {want:?}",
            dig(nodes[0], &caller, &gateway, name)
        );
    }
    // A VIP service's aliases answer its VIP.
    for name in ["api", "backend", "rest"] {
        let ok = wait_for(Duration::from_secs(20), || {
            dig(nodes[0], &caller, &gateway, name) == BTreeSet::from([api_vip.clone()])
        });
        assert!(
            ok,
            "{name}: {:?}, want the VIP {api_vip}",
            dig(nodes[0], &caller, &gateway, name)
        );
    }
    // Aliases live on their network only: `caller` has none.
    assert!(dig(nodes[0], &caller, &gateway, "nothere").is_empty());

    // A scale changes the answer.
    cli_ok(nodes[0], &["service", "scale", "-d", "web=3"]);
    wait_running(nodes[0], "web", 3, Duration::from_secs(60));
    let want = task_ips(nodes[0], "web");
    assert_eq!(want.len(), 3, "{want:?}");
    let ok = wait_for(Duration::from_secs(20), || {
        dig(nodes[0], &caller, &gateway, "web") == want
    });
    assert!(
        ok,
        "after the scale: {:?}, want {want:?}",
        dig(nodes[0], &caller, &gateway, "web")
    );
    cli_ok(nodes[0], &["service", "scale", "-d", "web=1"]);
    wait_running(nodes[0], "web", 1, Duration::from_secs(60));
    let want = task_ips(nodes[0], "web");
    let ok = wait_for(Duration::from_secs(20), || {
        dig(nodes[0], &caller, &gateway, "db") == want
    });
    assert!(
        ok,
        "after the scale down: {:?}, want {want:?}",
        dig(nodes[0], &caller, &gateway, "db")
    );
}

#[test]
fn host_mode_ports_are_served_only_where_a_task_runs() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..2], h[2]);
    for node in nodes {
        start_agent_with(node, &[]).expect("agent");
    }
    form(nodes[0], &[], &[nodes[1]]);
    create(
        nodes[0],
        "web",
        &["--publish", "mode=host,target=80,published=8080"],
        &["python3", "-c", SERVER],
    );
    wait_running(nodes[0], "web", 1, Duration::from_secs(60));
    let task = &running(nodes[0], "web")[0];
    assert_eq!(task["Ports"], "*:8080->80/tcp", "{task}");
    let task_id = task["ID"].as_str().expect("id").to_string();
    let on = task["Node"].as_str().expect("node").to_string();
    // The harness starts each agent with its host's name as `--hostname`
    // (a worker cannot `node inspect self`).
    let hostnames: Vec<String> = nodes.iter().map(|n| n.name().to_string()).collect();
    let with = hostnames
        .iter()
        .position(|n| *n == on)
        .expect("the task's node");
    let (with, without) = (nodes[with], nodes[1 - with]);

    let spec = inspect(nodes[0], "web");
    assert_eq!(
        spec["Spec"]["EndpointSpec"]["Ports"][0]["PublishMode"],
        "host"
    );

    // The node with the task answers, with the client's own address.
    let answered = wait_for(Duration::from_secs(20), || {
        page(client, with, 8080).is_some_and(|p| p.contains("task="))
    });
    assert!(answered, "the task's node does not serve 8080");
    for _ in 0..5 {
        let body = page(client, with, 8080).expect("an answer");
        let (task, from) = parse_answer(&body).expect("task= client=");
        assert_eq!(task, task_id);
        assert_eq!(from, client.addr().to_string(), "{body}");
    }
    // The node without a task refuses: nothing listens there.
    let refused = client
        .exec(
            "curl",
            &["-s", "-m", "3", &format!("http://{}:8080/", without.addr())],
        )
        .expect("curl");
    assert_eq!(
        refused.status.code(),
        Some(7),
        "curl to the node without a task did not fail to connect: {}",
        text(&refused)
    );

    // A task per node: the third replica cannot find a node.
    cli_ok(nodes[0], &["service", "scale", "-d", "web=3"]);
    wait_running(nodes[0], "web", 2, Duration::from_secs(60));
    let stuck = wait_for(Duration::from_secs(20), || {
        tasks(nodes[0], &["service", "ps", "web"]).iter().any(|t| {
            t["Error"]
                .as_str()
                .is_some_and(|e| e.contains("host-mode port already in use on 2 nodes"))
        })
    });
    assert!(
        stuck,
        "no task pending on the host port: {:#?}",
        tasks(nodes[0], &["service", "ps", "web"])
    );
    // Both nodes now serve their own task.
    for node in nodes {
        let served = wait_for(Duration::from_secs(20), || {
            page(client, node, 8080).is_some_and(|p| p.contains("task="))
        });
        assert!(served, "{} does not serve its task", node.name());
    }
}
