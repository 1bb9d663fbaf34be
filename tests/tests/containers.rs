//! Services from images end to end on namespaced hosts: a real
//! `docker-registry` serves on one host's underlay address (plain HTTP, a
//! registry the agents name with `--insecure-registry`), busybox images
//! are built with umoci from `busybox-static` and pushed with skopeo (OCI
//! and Docker schema 2); `service create IMAGE` runs containers that a
//! client outside the swarm reaches through the routing mesh on every
//! node; scale and `service update --image` work; `service ps` and
//! `service inspect` show the image; a missing tag is Rejected with the
//! registry's error.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_tests::registry::{
    registry_digest, serve_on, shell_image, single_node_swarm_pulling_from,
    start_agents_pulling_from, web_image,
};
use shoal_tests::swarm::{cli, cli_ok, form, running, tasks, text, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

/// The page `client` gets from `node:8080`, if any.
fn page(client: &Host, node: &Host) -> Option<String> {
    shoal_tests::mesh::page(client, node, 8080)
}

/// The pages answered through every node, `n` requests each.
fn pages(client: &Host, nodes: &[&Host], n: usize) -> Vec<Option<String>> {
    nodes
        .iter()
        .flat_map(|node| (0..n).map(move |_| page(client, node)))
        .collect()
}

#[test]
fn an_image_service_answers_through_the_mesh_scales_and_updates_its_image() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    let registry = serve_on(nodes[0], None);
    let dir = TempDir::new().expect("temp dir");
    let v1 = web_image(dir.path(), "web1", "version-1");
    let v2 = web_image(dir.path(), "web2", "version-2");
    let image1 = registry.push(&v1, "web:1", false);
    let image2 = registry.push(&v2, "web:2", true);

    start_agents_pulling_from(nodes, &registry.addr);
    form(nodes[0], &[], &[nodes[1], nodes[2]]);
    let started = Instant::now();
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
            &image1,
        ],
    );
    wait_running(nodes[0], "web", 3, Duration::from_secs(90));
    eprintln!(
        "3 replicas of {image1} running {:.1?} after service create (cold pulls)",
        started.elapsed()
    );

    // Every node answers with the image's page, through the mesh.
    let all = wait_for(Duration::from_secs(20), || {
        pages(client, nodes, 3)
            .iter()
            .all(|p| p.as_deref() == Some("version-1"))
    });
    assert!(all, "pages: {:?}", pages(client, nodes, 3));

    // The managers pinned the tag to the registry's digest; `service ps`
    // shows the image (pinned with --no-trunc, as Docker), `service
    // inspect` Docker's ContainerSpec.
    let pinned1 = format!("{image1}@{}", registry_digest(nodes[0], &image1));
    let ps = tasks(nodes[0], &["service", "ps", "web"]);
    assert!(
        ps.iter().all(|t| t["Image"] == pinned1.as_str()),
        "service ps: {ps:#?}"
    );
    let short = cli_ok(
        nodes[0],
        &["service", "ps", "web", "--format", "{{.Image}}"],
    );
    assert!(short.lines().all(|l| l == image1), "{short}");
    let inspected = cli_ok(
        nodes[0],
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
    );
    assert_eq!(inspected, pinned1);
    let nodes_used: BTreeSet<String> = running(nodes[0], "web")
        .iter()
        .filter_map(|t| t["Node"].as_str().map(str::to_string))
        .collect();
    assert_eq!(nodes_used.len(), 3, "spread over the nodes: {nodes_used:?}");

    // Scale down, then up again.
    cli_ok(nodes[0], &["service", "scale", "--detach", "web=2"]);
    wait_running(nodes[0], "web", 2, Duration::from_secs(60));
    cli_ok(nodes[0], &["service", "scale", "--detach", "web=3"]);
    wait_running(nodes[0], "web", 3, Duration::from_secs(60));

    // A new image rolls out two at a time (a service without published
    // ports: see the report on updates of published services); the
    // tasks' own output shows the new image's bytes ran.
    cli_ok(
        nodes[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "api",
            "--replicas",
            "3",
            &image1,
        ],
    );
    wait_running(nodes[0], "api", 3, Duration::from_secs(60));
    let pinned2 = format!("{image2}@{}", registry_digest(nodes[0], &image2));
    let started = Instant::now();
    cli_ok(
        nodes[0],
        &[
            "service",
            "update",
            "--detach",
            "--update-parallelism",
            "2",
            "--image",
            &image2,
            "api",
        ],
    );
    let rolled = wait_for(Duration::from_secs(120), || {
        let r = running(nodes[0], "api");
        r.len() == 3 && r.iter().all(|t| t["Image"] == pinned2.as_str())
    });
    assert!(
        rolled,
        "not rolled to {image2}: {:#?}",
        tasks(nodes[0], &["service", "ps", "api"])
    );
    eprintln!("updated to {image2} in {:.1?}", started.elapsed());
    let logs = cli_ok(nodes[0], &["service", "logs", "api"]);
    assert_eq!(
        logs.lines().filter(|l| l.ends_with("version-2")).count(),
        3,
        "{logs}"
    );
    let ps = tasks(nodes[0], &["service", "ps", "api"]);
    let shut: Vec<_> = ps
        .iter()
        .filter(|t| t["DesiredState"] == "Shutdown")
        .collect();
    assert!(
        shut.len() == 3 && shut.iter().all(|t| t["Image"] == pinned1.as_str()),
        "the old tasks: {ps:#?}"
    );

    cli_ok(nodes[0], &["service", "rm", "web", "api"]);

    drop(registry);
}

#[test]
fn a_missing_tag_is_rejected_with_the_registrys_error() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let node = ul.host(0);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    let image = web_image(dir.path(), "web1", "v1");
    let pushed = registry.push(&image, "web:1", false);
    single_node_swarm_pulling_from(node, &registry);

    let missing = pushed.replace("web:1", "web:nope");
    let out = cli(
        node,
        &["service", "create", "--detach", "--name", "ghost", &missing],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rejected = wait_for(Duration::from_secs(30), || {
        tasks(node, &["service", "ps", "ghost"]).iter().any(|t| {
            t["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Rejected"))
        })
    });
    let ps = tasks(node, &["service", "ps", "ghost"]);
    assert!(rejected, "never rejected: {ps:#?}");
    let error = ps
        .iter()
        .find(|t| {
            t["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Rejected"))
        })
        .and_then(|t| t["Error"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("web:nope") && error.to_lowercase().contains("manifest unknown"),
        "the registry's error: {error}\n{ps:#?}"
    );
    // A registry that cannot be reached: the tag is kept, with Docker's
    // warning, and the task is rejected by its node.
    let unreachable = format!("{}:5999/web:1", node.addr());
    let out = cli(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "far",
            &unreachable,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "image {unreachable} could not be accessed on a registry"
        )),
        "{said}"
    );
    let stored = cli_ok(
        node,
        &[
            "service",
            "inspect",
            "far",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
    );
    assert_eq!(stored, unreachable);

    drop(registry);
}

#[test]
fn health_checks_gate_running_and_an_unhealthy_task_is_replaced() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let node = ul.host(0);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    let web = registry.push(&web_image(dir.path(), "web1", "v1"), "web:1", false);
    let sick = shell_image(
        dir.path(),
        "sick",
        "(sleep 4; touch /tmp/sick) & exec httpd -f -p 80 -h /tmp",
    );
    let sick = registry.push(&sick, "sick:1", false);
    single_node_swarm_pulling_from(node, &registry);

    // A check that never finishes: the task starts but never counts as
    // running (Swarm's rule: a task with a health check runs once healthy).
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "slow",
            "--health-cmd",
            "sleep 100",
            "--health-timeout",
            "60s",
            "--health-interval",
            "1s",
            &web,
        ],
    );
    let started = wait_for(Duration::from_secs(30), || {
        tasks(node, &["service", "ps", "slow"])
            .iter()
            .any(|t| t["Message"] == "waiting for the health check")
    });
    assert!(started, "{:#?}", tasks(node, &["service", "ps", "slow"]));
    std::thread::sleep(Duration::from_secs(4));
    let ps = tasks(node, &["service", "ps", "slow"]);
    assert!(
        ps.len() == 1
            && ps[0]["CurrentState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Starting")),
        "not healthy yet, so not running: {ps:#?}"
    );

    // Healthy, then unhealthy: it runs, then fails and is replaced.
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "sick",
            "--health-cmd",
            "test ! -e /tmp/sick",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            &sick,
        ],
    );
    wait_running(node, "sick", 1, Duration::from_secs(30));
    let replaced = wait_for(Duration::from_secs(60), || {
        let ps = tasks(node, &["service", "ps", "sick"]);
        let failed = ps.iter().any(|t| {
            t["Error"] == "\"task: unhealthy container\""
                || t["Error"] == "task: unhealthy container"
        });
        failed && ps.len() >= 2
    });
    assert!(
        replaced,
        "no unhealthy failure and replacement: {:#?}",
        tasks(node, &["service", "ps", "sick"])
    );
    drop(registry);
}
