//! `shoal image ...` end to end on namespaced hosts: a real
//! `docker-registry` on one host's underlay address, busybox images built
//! with umoci and pushed with skopeo, real agents. `image pull` shows
//! Docker's progress lines and the registry's digest; `ls` and `inspect`
//! show what the node holds; `rm` refuses an image a task runs, naming the
//! task; `prune` removes unused images and layers no image references;
//! `load` takes `docker save` and OCI archives on a node that cannot reach
//! the registry, and a service runs the loaded image; the GC policy removes
//! unused images and never the one a task runs.

use std::time::{Duration, Instant};

use shoal_tests::mesh::page;
use shoal_tests::registry::{
    busybox_image, registry_digest, serve_on, shell_image, single_node_swarm_pulling_from,
    start_agents_pulling_from, ImageSpec, OciImage,
};
use shoal_tests::swarm::{
    cli, cli_ok, form, running, start_agent_with, state_dir, text, wait_for, wait_running,
};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

/// A busybox image serving `body` over HTTP on port 80.
fn web_image(dir: &std::path::Path, name: &str, body: &str) -> OciImage {
    busybox_image(
        dir,
        name,
        &ImageSpec {
            entrypoint: vec!["httpd".into(), "-f".into(), "-h".into(), "/www".into()],
            cmd: vec!["-p".into(), "80".into()],
            files: vec![("www/index.html".into(), format!("{body}\n"))],
            ..ImageSpec::default()
        },
    )
}

/// `image ls` rows as cells.
fn image_rows(host: &Host) -> Vec<Vec<String>> {
    cli_ok(host, &["image", "ls"])
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn image_verbs_pull_list_inspect_remove_prune_and_load() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (node, airgapped) = (h[0], h[1]);
    let registry = serve_on(node, None);
    let addr = registry.addr.clone();
    let dir = TempDir::new().expect("temp dir");
    let image1 = registry.push(&web_image(dir.path(), "w1", "one"), "web:1", false);
    let image2 = registry.push(&web_image(dir.path(), "w2", "two"), "web:2", true);

    // The air-gapped node names no insecure registry: it cannot pull from
    // this plain-HTTP one. Its GC marks are 0%: any unused image goes as
    // soon as a task takes its own.
    start_agents_pulling_from(&[node], &addr);
    start_agent_with(
        airgapped,
        &[
            "--image-gc-high-threshold",
            "0",
            "--image-gc-low-threshold",
            "0",
        ],
    )
    .expect("agent");
    form(node, &[], &[airgapped]);

    // A cold pull: Docker's lines, the registry's digest.
    let started = Instant::now();
    let pulled = cli_ok(node, &["image", "pull", &image1]);
    eprintln!("cold pull of {image1}: {:.2?}\n{pulled}", started.elapsed());
    let digest = registry_digest(node, &image1);
    assert!(pulled.contains("1: Pulling from web"), "{pulled}");
    assert!(pulled.contains(": Downloading "), "{pulled}");
    assert!(pulled.contains(": Pull complete"), "{pulled}");
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {image1}")),
        "{pulled}"
    );
    assert_eq!(pulled.lines().last(), Some(image1.as_str()), "{pulled}");
    // A warm pull asks the registry again, downloads nothing.
    let started = Instant::now();
    let again = cli_ok(node, &["image", "pull", &image1]);
    eprintln!("warm pull: {:.2?}", started.elapsed());
    assert!(again.contains(": Already exists"), "{again}");
    assert!(
        again.contains(&format!("Status: Image is up to date for {image1}")),
        "{again}"
    );
    cli_ok(node, &["image", "pull", &image2]);

    // ls: a row per image, Docker's columns.
    let rows = image_rows(node);
    let repo = format!("{addr}/web");
    let row1 = rows
        .iter()
        .find(|r| r[0] == repo && r[1] == "1")
        .unwrap_or_else(|| panic!("no {image1} in {rows:?}"));
    assert_eq!(row1[2].len(), 12, "IMAGE ID: {row1:?}");
    assert!(
        row1[4].ends_with("kB") || row1[4].ends_with("MB"),
        "SIZE: {row1:?}"
    );
    assert!(rows.iter().any(|r| r[0] == repo && r[1] == "2"), "{rows:?}");

    // inspect: Docker's JSON, with the image's config and layers.
    let inspected: serde_json::Value =
        serde_json::from_str(&cli_ok(node, &["image", "inspect", &image1])).expect("json");
    let object = &inspected[0];
    assert!(object["Id"]
        .as_str()
        .is_some_and(|id| id.starts_with(&format!("sha256:{}", row1[2]))));
    assert_eq!(object["RepoTags"][0], image1.as_str());
    assert_eq!(
        object["RepoDigests"][0],
        format!("{repo}@{digest}").as_str()
    );
    assert_eq!(object["Os"], "linux");
    assert_eq!(object["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(object["Config"]["Entrypoint"][0], "httpd");

    // rm is refused while a task runs the image, naming the task.
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--constraint",
            "node.role==manager",
            &image1,
        ],
    );
    wait_running(node, "web", 1, Duration::from_secs(60));
    let task = running(node, "web")[0]["ID"]
        .as_str()
        .expect("task id")
        .to_string();
    let refused = cli(node, &["image", "rm", &image1]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains(&task),
        "names task {task}: {}",
        text(&refused)
    );
    assert!(image_rows(node).iter().any(|r| r[0] == repo && r[1] == "1"));

    // prune -a removes what no task uses (web:2) and a layer no image
    // references (what an interrupted pull leaves); web:1 stays.
    let orphan = state_dir(node).join("images/layers").join("ab".repeat(32));
    std::fs::create_dir_all(orphan.join("etc")).expect("orphan layer");
    std::fs::write(orphan.join("etc/junk"), vec![0u8; 100_000]).expect("orphan file");
    let pruned = cli_ok(node, &["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("Deleted Images:"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    assert!(!orphan.exists(), "the unreferenced layer is gone");
    let rows = image_rows(node);
    assert!(rows.iter().any(|r| r[0] == repo && r[1] == "1"), "{rows:?}");
    assert!(
        !rows.iter().any(|r| r[0] == repo && r[1] == "2"),
        "{rows:?}"
    );
    // Once the service is gone, rm works, in Docker's words.
    cli_ok(node, &["service", "rm", "web"]);
    let removed = wait_for(Duration::from_secs(30), || {
        cli(node, &["image", "rm", &image1]).status.success()
    });
    assert!(removed, "rm after the task ended");
    assert!(image_rows(node).is_empty(), "{:?}", image_rows(node));

    // The air-gapped node cannot pull...
    let failed = cli(airgapped, &["image", "pull", &image1]);
    assert!(!failed.status.success(), "{}", text(&failed));
    // ...but loads a `docker save` tarball and an OCI archive.
    let saved = dir.path().join("saved.tar");
    let local = "airgap.invalid/web:3";
    web_image(dir.path(), "w3", "three").docker_archive(&saved, local);
    let loaded = cli_ok(airgapped, &["image", "load", "-i", saved.to_str().unwrap()]);
    assert_eq!(loaded, format!("Loaded image: {local}"));
    let oci = dir.path().join("oci.tar");
    web_image(dir.path(), "w4", "four").oci_archive(&oci, "4");
    let loaded = cli_ok(
        airgapped,
        &["image", "load", "--input", oci.to_str().unwrap()],
    );
    assert!(loaded.starts_with("Loaded image ID: sha256:"), "{loaded}");
    assert_eq!(
        image_rows(airgapped).len(),
        2,
        "{:?}",
        image_rows(airgapped)
    );

    // A service runs the loaded image there (the managers cannot resolve
    // its registry, so the tag is kept and the node finds it locally)...
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "local",
            "-p",
            "8081:80",
            "--constraint",
            "node.role==worker",
            local,
        ],
    );
    wait_running(node, "local", 1, Duration::from_secs(60));
    let served = wait_for(Duration::from_secs(20), || {
        page(node, airgapped, 8081).as_deref() == Some("three")
    });
    assert!(served, "page: {:?}", page(node, airgapped, 8081));
    // ...and its start applied the 0% GC marks: the unused OCI image went,
    // the running one stayed.
    let rows = image_rows(airgapped);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "airgap.invalid/web");
    assert_eq!(rows[0][1], "3");
}

/// `shoal ARGS` on `host` with the client's Docker config in `docker_config`.
fn cli_with_config(
    host: &Host,
    docker_config: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let bin = shoal_tests::shoal_bin().to_string_lossy().to_string();
    let run_dir = host.run_dir().to_string_lossy().to_string();
    let config = format!("DOCKER_CONFIG={}", docker_config.display());
    let mut full = vec![config.as_str(), bin.as_str(), "--run-dir", run_dir.as_str()];
    full.extend_from_slice(args);
    host.exec("env", &full).expect("shoal runs")
}

#[test]
fn a_private_registry_is_pulled_from_with_registry_auth_only() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (manager, worker) = (h[0], h[1]);
    let (user, password) = ("alice", "pr1vate-pass");
    let registry = serve_on(manager, Some((user, password)));
    let addr = registry.addr.clone();
    let dir = TempDir::new().expect("temp dir");
    let image = registry.push(&web_image(dir.path(), "p1", "private"), "private:1", false);
    start_agents_pulling_from(&[manager, worker], &addr);
    form(manager, &[], &[worker]);

    // The client's ~/.docker/config.json, as `docker login` writes it.
    let auth = std::process::Command::new("sh")
        .args(["-c", &format!("printf %s '{user}:{password}' | base64 -w0")])
        .output()
        .expect("base64");
    let auth = String::from_utf8_lossy(&auth.stdout).trim().to_string();
    let config_dir = dir.path().join("docker");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::write(
        config_dir.join("config.json"),
        format!(r#"{{"auths":{{"{addr}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("config.json");
    let empty_dir = dir.path().join("none");
    std::fs::create_dir_all(&empty_dir).expect("empty config dir");

    // Without credentials the nodes' pulls are refused: Rejected with the
    // registry's error.
    let out = cli_with_config(
        manager,
        &empty_dir,
        &["service", "create", "--detach", "--name", "anon", &image],
    );
    assert!(out.status.success(), "{}", text(&out));
    let rejected = wait_for(Duration::from_secs(60), || {
        shoal_tests::swarm::tasks(manager, &["service", "ps", "anon"])
            .iter()
            .any(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Rejected"))
                    && t["Error"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase().contains("auth"))
            })
    });
    assert!(
        rejected,
        "{:#?}",
        shoal_tests::swarm::tasks(manager, &["service", "ps", "anon"])
    );
    cli_ok(manager, &["service", "rm", "anon"]);

    // With --with-registry-auth, tasks on both nodes pull and run.
    let started = Instant::now();
    let out = cli_with_config(
        manager,
        &config_dir,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "private",
            "--replicas",
            "2",
            "--with-registry-auth",
            "-p",
            "8082:80",
            &image,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    wait_running(manager, "private", 2, Duration::from_secs(90));
    eprintln!(
        "2 replicas from the private registry in {:.1?}",
        started.elapsed()
    );
    let nodes: std::collections::BTreeSet<String> = running(manager, "private")
        .iter()
        .filter_map(|t| t["Node"].as_str().map(str::to_string))
        .collect();
    assert_eq!(nodes.len(), 2, "one task on each node: {nodes:?}");
    let served = wait_for(Duration::from_secs(20), || {
        page(worker, manager, 8082).as_deref() == Some("private")
    });
    assert!(served, "page: {:?}", page(worker, manager, 8082));
    // The managers pinned the digest with the credentials too.
    let shown = cli_ok(manager, &["service", "inspect", "private"]);
    assert!(shown.contains(&format!("{image}@sha256:")), "{shown}");
    // The credentials are never shown.
    for secret in [password, auth.as_str(), "registry_auth", "RegistryAuth"] {
        assert!(!shown.contains(secret), "inspect shows {secret}: {shown}");
    }
    // An update without the flag keeps them: a new image from the same
    // registry is pulled by both nodes with the kept credentials.
    let image2 = registry.push(&web_image(dir.path(), "p2", "private-2"), "private:2", true);
    cli_ok(
        manager,
        &[
            "service", "update", "--detach", "--image", &image2, "private",
        ],
    );
    let updated = wait_for(Duration::from_secs(90), || {
        let tasks = running(manager, "private");
        tasks.len() == 2
            && tasks
                .iter()
                .all(|t| t["Image"].as_str().is_some_and(|i| i.starts_with(&image2)))
    });
    assert!(
        updated,
        "{:#?}",
        shoal_tests::swarm::tasks(manager, &["service", "ps", "private"])
    );
    let served = wait_for(Duration::from_secs(20), || {
        page(worker, manager, 8082).as_deref() == Some("private-2")
    });
    assert!(served, "page: {:?}", page(worker, manager, 8082));
}

#[test]
fn a_task_with_a_health_check_joins_the_mesh_only_once_healthy() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (node, client) = (h[0], h[1]);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    // It listens at once and says `early`; 8 s later it says `ready`, and
    // only then its health check passes.
    let slow = shell_image(
        dir.path(),
        "slow",
        "mkdir -p /www; echo early > /www/index.html; \
         (sleep 8; echo ready > /www/index.html; touch /tmp/ready) & \
         exec httpd -f -h /www -p 80",
    );
    let image = registry.push(&slow, "slow:1", false);
    single_node_swarm_pulling_from(node, &registry);
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "slow",
            "-p",
            "8083:80",
            "--health-cmd",
            "test -f /tmp/ready",
            "--health-interval",
            "1s",
            "--health-retries",
            "3",
            "--health-start-period",
            "20s",
            &image,
        ],
    );
    let created = Instant::now();
    // Through the mesh, from outside the swarm, until the task serves: no
    // request may reach it before it is healthy.
    let mut answers = Vec::new();
    while created.elapsed() < Duration::from_secs(60) {
        if let Some(page) = page(client, node, 8083) {
            answers.push((created.elapsed(), page.clone()));
            if answers.iter().filter(|(_, p)| p == "ready").count() >= 5 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("answers through the mesh: {answers:?}");
    assert!(
        answers.iter().all(|(_, p)| p == "ready"),
        "a request reached the task before it was healthy: {answers:?}"
    );
    assert!(
        answers.len() >= 5,
        "the healthy task never served: {answers:?}; tasks: {:#?}",
        shoal_tests::swarm::tasks(node, &["service", "ps", "slow"])
    );
    wait_running(node, "slow", 1, Duration::from_secs(10));
}
