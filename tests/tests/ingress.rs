//! The ingress (routing-mesh) network as Docker handles it, end to end on
//! namespaced hosts: `network rm ingress` asks for confirmation and is
//! refused while a service publishes a port; once it is gone, published
//! ports are refused with Docker's text until `network create --ingress`
//! makes a new one, and then the published service answers through every
//! node. And the mesh's pinned links, severed when the interfaces they
//! serve are deleted and made again, are replaced by the running agent:
//! no restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_tests::mesh::{page, parse_answer, SERVER};
use shoal_tests::swarm::{
    cli, cli_ok, create, form, start_agent, start_agent_with, text, try_create, wait_for,
    wait_running,
};
use shoal_tests::{require_root, Host, Underlay};

/// How long the mesh may take to answer through every node again: the
/// agent reconciles on every change it hears of, and at least every 30 s.
const RECOVERY: Duration = Duration::from_secs(90);

/// Whether `client` gets an answer from a task through each of `nodes`'
/// published port 8080, three times in a row (new flows, so they spread
/// over the tasks of every node, not only the node's own).
fn answers_through_all(client: &Host, nodes: &[&Host]) -> bool {
    nodes.iter().all(|node| {
        (0..3).all(|_| {
            page(client, node, 8080)
                .as_deref()
                .and_then(parse_answer)
                .is_some()
        })
    })
}

/// Waits until every node answers on 8080; how long that took.
fn wait_answering(client: &Host, nodes: &[&Host], what: &str) -> Duration {
    let start = Instant::now();
    let ok = wait_for(RECOVERY, || answers_through_all(client, nodes));
    let failing: Vec<&str> = nodes
        .iter()
        .filter(|n| page(client, n, 8080).is_none())
        .map(|n| n.name())
        .collect();
    assert!(
        ok,
        "{what}: published port 8080 does not answer through {failing:?} within {RECOVERY:?}"
    );
    start.elapsed()
}

/// The networks `host` lists, by name.
fn network_names(host: &Host) -> Vec<String> {
    cli_ok(host, &["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The agents are the ones started at first: none exited meanwhile.
fn assert_same_agents(nodes: &[&Host], pids: &[u32]) {
    for (node, pid) in nodes.iter().zip(pids) {
        assert!(
            node.exit_status(*pid).is_none(),
            "the agent on {} exited",
            node.name()
        );
    }
}

/// Lines of the agent's log (pid `pid` on `node`) that contain `needle`.
fn log_lines(node: &Host, pid: u32, needle: &str) -> usize {
    node.log_path(pid)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn the_ingress_network_is_removed_and_made_again_as_docker_does() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    let pids: Vec<u32> = nodes
        .iter()
        .map(|n| start_agent(n).expect("agent"))
        .collect();
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    cli_ok(nodes[0], &["network", "create", "app"]);
    let publish = ["--replicas", "3", "--network", "app", "-p", "8080:80"];
    create(nodes[0], "web", &publish, &["python3", "-c", SERVER]);
    wait_running(nodes[0], "web", 3, Duration::from_secs(60));
    wait_answering(client, nodes, "before");

    // Refused while a service publishes a port, with or without --force.
    let refused = cli(nodes[0], &["network", "rm", "--force", "ingress"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused)
            .contains("ingress network cannot be removed because service web depends on it"),
        "{}",
        text(&refused)
    );
    // Without a terminal and without --force: the question, and a refusal.
    let unconfirmed = cli(nodes[0], &["network", "rm", "ingress"]);
    assert!(!unconfirmed.status.success(), "{}", text(&unconfirmed));
    let said = text(&unconfirmed);
    assert!(
        said.contains("WARNING! Before removing the routing-mesh network")
            && said.contains("[y/N]")
            && said.contains("--force"),
        "{said}"
    );
    assert!(network_names(nodes[0]).contains(&"ingress".to_string()));
    // No service joins it by name.
    let joined = try_create(
        nodes[0],
        "joiner",
        &["--network", "ingress"],
        &["sleep", "300"],
    );
    assert!(!joined.status.success(), "{}", text(&joined));
    assert!(
        text(&joined).contains("cannot be explicitly attached to the ingress network"),
        "{}",
        text(&joined)
    );

    // Once the service is gone (and its tasks let go of their addresses),
    // --force removes it without asking.
    cli_ok(nodes[0], &["service", "rm", "web"]);
    let mut last = String::new();
    let removed = wait_for(Duration::from_secs(60), || {
        let out = cli(nodes[0], &["network", "rm", "--force", "ingress"]);
        last = text(&out);
        out.status.success()
    });
    assert!(removed, "network rm --force ingress: {last}");
    assert!(!last.contains("WARNING"), "--force asked anyway: {last}");
    assert!(!network_names(nodes[0]).contains(&"ingress".to_string()));
    // --force: a network that does not exist is no error.
    cli_ok(nodes[0], &["network", "rm", "--force", "no-such-network"]);

    // No ingress network: published ports are refused with Docker's text
    // (so the leader did not make the default one again).
    let refused = try_create(nodes[0], "web2", &publish, &["python3", "-c", SERVER]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("service needs ingress network, but no ingress network is present"),
        "{}",
        text(&refused)
    );

    // `network create --ingress`: never attachable, one at most.
    let attachable = cli(
        nodes[0],
        &[
            "network",
            "create",
            "--ingress",
            "--attachable",
            "-d",
            "overlay",
            "mesh",
        ],
    );
    assert!(!attachable.status.success());
    assert!(
        text(&attachable).contains("ingress network cannot be attachable"),
        "{}",
        text(&attachable)
    );
    cli_ok(
        nodes[0],
        &["network", "create", "--ingress", "-d", "overlay", "mesh"],
    );
    let second = cli(
        nodes[0],
        &["network", "create", "--ingress", "-d", "overlay", "mesh2"],
    );
    assert!(
        !second.status.success() && text(&second).contains("is already present"),
        "{}",
        text(&second)
    );
    let inspected = cli_ok(
        nodes[0],
        &["network", "inspect", "-f", "{{.Ingress}}", "mesh"],
    );
    assert_eq!(inspected, "true");
    let joined = try_create(
        nodes[0],
        "joiner",
        &["--network", "mesh"],
        &["sleep", "300"],
    );
    assert!(
        !joined.status.success()
            && text(&joined).contains("cannot be explicitly attached to the ingress network"),
        "{}",
        text(&joined)
    );

    // The mesh uses the new network on every node: through each of them the
    // published port answers, the agents never restarted.
    create(nodes[0], "web2", &publish, &["python3", "-c", SERVER]);
    wait_running(nodes[0], "web2", 3, Duration::from_secs(60));
    let took = wait_answering(client, nodes, "after network create --ingress");
    eprintln!("published port answered through every node {took:?} after the tasks ran");
    assert_same_agents(nodes, &pids);
}

/// The path of the namespace of network `name` on `node`, and its VXLAN
/// device, as the manager `manager` knows the network.
fn network_ns(manager: &Host, node: &Host, name: &str) -> (PathBuf, String) {
    let id = cli_ok(manager, &["network", "inspect", "-f", "{{.Id}}", name]);
    let vni = cli_ok(
        manager,
        &[
            "network",
            "inspect",
            "-f",
            "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}",
            name,
        ],
    );
    (
        node.run_dir().join("netns").join(format!("ov-{id}")),
        format!("vx-{vni}"),
    )
}

#[test]
fn severed_mesh_links_are_replaced_without_restarting_the_agent() {
    mesh_attachment_is_replaced(&[], "severed");
}

/// With clsact + cls_bpf filters (what kernels before 6.6 get) there are no
/// pins to find severed: the agent tells a device made again by its index.
#[test]
fn tc_filters_on_devices_made_again_are_replaced_without_restarting_the_agent() {
    mesh_attachment_is_replaced(&["--mesh-attach", "tc"], "made again");
}

/// Deletes the mesh's host link, then the ingress network's VXLAN device,
/// on one node of agents started with `agent_args`: each time every node
/// answers again without an agent restarting, and the agent logs `said`
/// once per deletion.
fn mesh_attachment_is_replaced(agent_args: &[&str], said: &str) {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    let pids: Vec<u32> = nodes
        .iter()
        .map(|n| start_agent_with(n, agent_args).expect("agent"))
        .collect();
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    cli_ok(nodes[0], &["network", "create", "app"]);
    create(
        nodes[0],
        "web",
        &["--replicas", "3", "--network", "app", "-p", "8080:80"],
        &["python3", "-c", SERVER],
    );
    wait_running(nodes[0], "web", 3, Duration::from_secs(60));
    wait_answering(client, nodes, "before");
    let victim = nodes[1];
    let severed = said;
    assert_eq!(log_lines(victim, pids[1], severed), 0);

    // The link between the host and the ingress network goes (both of its
    // ends, and with them the programs' TCX links); the agent makes it
    // again, and must attach anew rather than update its severed links.
    let out = victim
        .exec("ip", &["link", "del", "sh-ingress"])
        .expect("ip");
    assert!(out.status.success(), "{}", text(&out));
    let took = wait_answering(client, nodes, "after sh-ingress was deleted");
    eprintln!("answering through every node again {took:?} after sh-ingress was deleted");
    // The agent sees the deletion (a link watch), not its 30 s periodic
    // pass (1.6 s on a quiet machine).
    assert!(
        took < Duration::from_secs(15),
        "sh-ingress was made again only after {took:?}"
    );
    let reported = log_lines(victim, pids[1], severed);
    assert!(reported >= 1, "the agent did not report the severed links");

    // The ingress network's VXLAN device goes: the overlay makes it again,
    // and the mesh finds its link severed when it reconciles.
    let (ns, vxlan) = network_ns(nodes[0], victim, "ingress");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "link", "del", &vxlan])
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let in_ns = |args: &[&str]| {
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let rebuilt = wait_for(RECOVERY, || in_ns(&["ip", "link", "show", &vxlan]));
    assert!(rebuilt, "the overlay did not make {vxlan} again");
    let took = wait_answering(client, nodes, "after the VXLAN device was deleted");
    eprintln!("answering through every node again {took:?} after {vxlan} was deleted");
    assert!(
        log_lines(victim, pids[1], severed) > reported,
        "the agent did not report the severed link of {vxlan}"
    );

    // Reported once per severance, not on every reconcile: through more
    // than one periodic reconcile (30 s), the mesh answers and the log
    // says nothing more of it.
    let settled = log_lines(victim, pids[1], severed);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(35) {
        assert!(
            answers_through_all(client, nodes),
            "the mesh stopped answering after its links were replaced"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(log_lines(victim, pids[1], severed), settled);
    assert_same_agents(nodes, &pids);
}
