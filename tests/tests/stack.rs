//! Stacks end to end on namespaced hosts: `shoal stack deploy -c` a
//! compose file with two services (one published), a network, a secret, a
//! config, `.env` interpolation and a key shoal does not act on (warned,
//! by name); `stack services` converging; the published port answering
//! through every node with the config and the secret; a re-deploy of the
//! same file changing nothing, of a changed `.env` updating only the
//! service it changes (its version moves, the other's does not);
//! `--prune`; and `stack rm` leaving no service, network, secret or config
//! of the stack.

use std::path::Path;
use std::time::{Duration, Instant};

use shoal_tests::mesh::curl;
use shoal_tests::registry::{
    busybox_image, serve_on, shell_spec, start_agents_pulling_from, ImageSpec,
};
use shoal_tests::swarm::{cli, cli_ok, form, text, wait_for};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

/// The compose file; `services` is the list of service keys to keep.
fn compose(image: &str, services: &[&str]) -> String {
    let web = format!(
        "  web:
    image: {image}
    ports: ['8080:80']
    networks: [front]
    secrets: [{{source: db_pw, target: /www/pw.txt}}]
    configs: [{{source: page, target: /www/index.html}}]
    deploy:
      replicas: 2
"
    );
    let worker = format!(
        "  worker:
    image: {image}
    environment:
      - MODE=${{WORKER_MODE:-unset}}
    networks: [front]
    logging: {{driver: syslog}}
"
    );
    let mut text = String::from("version: '3.8'\nservices:\n");
    if services.contains(&"web") {
        text.push_str(&web);
    }
    if services.contains(&"worker") {
        text.push_str(&worker);
    }
    text.push_str(
        "networks:
  front: {}
secrets:
  db_pw: {file: ./pw.txt}
configs:
  page: {file: ./page.html}
",
    );
    text
}

fn deploy(host: &Host, file: &Path, extra: &[&str]) -> (String, String) {
    let file = file.to_string_lossy();
    let mut args = vec!["stack", "deploy", "-c", &file];
    args.extend_from_slice(extra);
    args.push("app");
    let out = cli(host, &args);
    assert!(out.status.success(), "stack deploy: {}", text(&out));
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn version(host: &Host, service: &str) -> u64 {
    cli_ok(
        host,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            service,
        ],
    )
    .parse()
    .expect("a version")
}

fn replicas(host: &Host) -> String {
    cli_ok(
        host,
        &[
            "stack",
            "services",
            "app",
            "--format",
            "{{.Name}} {{.Replicas}}",
        ],
    )
}

fn names(host: &Host, kind: &str) -> Vec<String> {
    cli_ok(host, &[kind, "ls", "--format", "{{.Name}}"])
        .lines()
        .map(str::to_string)
        .filter(|n| n.starts_with("app_"))
        .collect()
}

#[test]
fn a_compose_stack_deploys_updates_only_what_changed_prunes_and_is_removed() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let registry = serve_on(h[0], None);
    let dir = TempDir::new().expect("temp dir");
    let image = busybox_image(
        dir.path(),
        "stackweb",
        &ImageSpec {
            files: vec![("www/index.html".into(), "from the image\n".into())],
            ..shell_spec("exec httpd -f -p 80 -h /www")
        },
    );
    let image = registry.push(&image, "stackweb:1", false);
    start_agents_pulling_from(&h, &registry.addr);
    form(h[0], &[], &[h[1], h[2]]);

    let stamp = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
    let password = format!("pw-{stamp:x}");
    let site = format!("stack page {stamp:x}");
    std::fs::write(dir.path().join("pw.txt"), &password).expect("write");
    std::fs::write(dir.path().join("page.html"), &site).expect("write");
    std::fs::write(dir.path().join(".env"), "WORKER_MODE=one\n").expect("write");
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, compose(&image, &["web", "worker"])).expect("write");

    let started = Instant::now();
    let (out, err) = deploy(h[0], &file, &[]);
    assert_eq!(
        out,
        "Creating network app_front\nCreating secret app_db_pw\nCreating config app_page\n\
         Creating service app_web\nCreating service app_worker"
    );
    assert!(
        err.contains("service worker: key \"logging\" is not supported"),
        "the key shoal does not act on is named: {err}"
    );
    let converged = wait_for(Duration::from_secs(180), || {
        replicas(h[0]) == "app_web 2/2\napp_worker 1/1"
    });
    assert!(
        converged,
        "stack services: {}; ps: {}",
        replicas(h[0]),
        text(&cli(h[0], &["stack", "ps", "app", "--no-trunc"]))
    );
    eprintln!("stack converged in {:?}", started.elapsed());
    assert_eq!(
        cli_ok(
            h[0],
            &["stack", "ls", "--format", "{{.Name}} {{.Services}}"]
        ),
        "app 2"
    );
    let running = cli_ok(
        h[0],
        &[
            "stack",
            "ps",
            "app",
            "-q",
            "--filter",
            "desired-state=running",
        ],
    );
    assert_eq!(running.lines().count(), 3, "{running}");

    // The published port answers through every node, with the config and
    // the secret mounted where the file says.
    let served = wait_for(Duration::from_secs(60), || {
        h.iter().all(|node| {
            curl(h[2], &format!("http://{}:8080/index.html", node.addr())).as_deref()
                == Some(site.as_str())
        })
    });
    assert!(
        served,
        "through every node: {:?}",
        h.iter()
            .map(|n| curl(h[2], &format!("http://{}:8080/index.html", n.addr())))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        curl(h[1], &format!("http://{}:8080/pw.txt", h[0].addr())).as_deref(),
        Some(password.as_str())
    );
    let worker_env = cli_ok(
        h[0],
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            "app_worker",
        ],
    );
    assert_eq!(worker_env, "[\"MODE=one\"]", "interpolated from .env");

    // The same file again: nothing changes.
    let (web_v, worker_v) = (version(h[0], "app_web"), version(h[0], "app_worker"));
    let (out, _) = deploy(h[0], &file, &[]);
    assert_eq!(out, "", "an unchanged file updates nothing");
    assert_eq!(version(h[0], "app_web"), web_v);
    assert_eq!(version(h[0], "app_worker"), worker_v);

    // A changed .env: only the worker is updated.
    std::fs::write(dir.path().join(".env"), "WORKER_MODE=two\n").expect("write");
    let (out, _) = deploy(h[0], &file, &[]);
    assert!(
        out.starts_with("Updating service app_worker (id: ") && !out.contains("app_web"),
        "{out}"
    );
    assert_eq!(version(h[0], "app_web"), web_v, "web is untouched");
    assert!(version(h[0], "app_worker") > worker_v, "worker moved");
    let updated = wait_for(Duration::from_secs(120), || {
        cli_ok(
            h[0],
            &[
                "service",
                "ps",
                "app_worker",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.CurrentState}}",
            ],
        )
        .starts_with("Running")
    });
    assert!(updated, "the worker's new task runs");

    // Without --prune a service left out of the file stays; with it, it goes.
    let web_only = dir.path().join("web-only.yml");
    std::fs::write(&web_only, compose(&image, &["web"])).expect("write");
    let (out, _) = deploy(h[0], &web_only, &[]);
    assert_eq!(out, "");
    assert_eq!(
        cli_ok(h[0], &["stack", "services", "app", "-q"])
            .lines()
            .count(),
        2
    );
    let (out, _) = deploy(h[0], &web_only, &["--prune"]);
    assert_eq!(out, "Removing service app_worker");
    assert_eq!(
        cli_ok(h[0], &["stack", "services", "app", "--format", "{{.Name}}"]),
        "app_web"
    );

    // stack rm leaves nothing of the stack.
    let out = cli_ok(h[0], &["stack", "rm", "app"]);
    assert_eq!(
        out,
        "Removing service app_web\nRemoving secret app_db_pw\nRemoving config app_page\n\
         Removing network app_front"
    );
    assert!(names(h[0], "service").is_empty());
    assert!(names(h[0], "network").is_empty());
    assert!(names(h[0], "secret").is_empty());
    assert!(names(h[0], "config").is_empty());
    assert_eq!(cli_ok(h[0], &["stack", "ls", "--format", "{{.Name}}"]), "");
    let out = cli(h[0], &["stack", "rm", "app"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "Nothing found in stack: app"
    );
}
