//! Secrets and configs end to end on namespaced hosts: `secret create`
//! from a file and from stdin, `config create`, `ls`/`inspect` (a secret's
//! data never shown), a container service using both (a secret at its
//! default `/run/secrets/NAME` printed to the task's log, a secret and a
//! config served by httpd from their targets, read with curl through the
//! routing mesh), the data on no node's disk (sealed in the managers'
//! store, on a tmpfs on the task's node, nowhere on a node without the
//! task), `secret rm` refused while in use, the tmpfs gone with the task,
//! and a worker refused.

use std::time::{Duration, Instant};

use shoal_tests::mesh::curl;
use shoal_tests::registry::{
    busybox_image, serve_on, shell_spec, start_agents_pulling_from, ImageSpec,
};
use shoal_tests::swarm::{cli, cli_ok, form, text, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

/// The page `client` gets from `node:8080/path`, if any.
fn page(client: &Host, node: &Host, path: &str) -> Option<String> {
    curl(client, &format!("http://{}:8080/{path}", node.addr()))
}

/// Files under the host's run dir (the agent's state and logs) holding
/// `needle`, each with its filesystem type.
fn files_holding(host: &Host, needle: &str) -> Vec<(String, String)> {
    let dir = host.run_dir();
    let out = host
        .sh(&format!(
            "grep -r -l -a -F -- '{needle}' '{}' 2>/dev/null | while read f; do \
             echo \"$f $(stat -f -c %T \"$f\")\"; done",
            dir.display()
        ))
        .expect("grep runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

#[test]
fn secrets_and_configs_reach_only_their_tasks_on_tmpfs_and_stay_while_used() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let registry = serve_on(h[0], None);
    let dir = TempDir::new().expect("temp dir");
    let image = busybox_image(
        dir.path(),
        "files",
        &ImageSpec {
            files: vec![("www/index.html".into(), "from the image\n".into())],
            // The secret's value with its tail masked: the log shows it
            // was read, without holding it on disk.
            ..shell_spec(
                "echo \"secret: $(sed 's/-7Qz$/-masked/' /run/secrets/db_pw)\"; \
                 exec httpd -f -p 80 -h /www",
            )
        },
    );
    let image = registry.push(&image, "files:1", false);
    start_agents_pulling_from(&h, &registry.addr);
    form(h[0], &[], &[h[1], h[2]]);

    // Values no other file holds: found on disk only if leaked.
    let stamp = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
    let password = format!("pw-{stamp:x}-7Qz");
    let token = format!("tok-{stamp:x}-9Wk");
    let site = format!("site-{stamp:x}-3Jp");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, &password).expect("write");
    let site_file = dir.path().join("site");
    std::fs::write(&site_file, &site).expect("write");

    let id = cli_ok(
        h[0],
        &[
            "secret",
            "create",
            "--label",
            "team=db",
            "db_pw",
            &pw_file.to_string_lossy(),
        ],
    );
    assert_eq!(id.len(), 25, "an id: {id}");
    let script = format!(
        "printf %s '{token}' | {} --run-dir {} secret create api_token -",
        shoal_tests::shoal_bin().display(),
        h[0].run_dir().display()
    );
    let out = h[0].sh(&script).expect("sh");
    assert!(out.status.success(), "{}", text(&out));
    cli_ok(
        h[0],
        &["config", "create", "site", &site_file.to_string_lossy()],
    );

    assert_eq!(
        cli_ok(h[0], &["secret", "ls", "--format", "{{.Name}} {{.Labels}}"]),
        "api_token \ndb_pw team=db"
    );
    let inspect = cli_ok(h[0], &["secret", "inspect", "db_pw"]);
    assert!(inspect.contains("\"Name\": \"db_pw\""), "{inspect}");
    assert!(
        !inspect.contains("\"Data\""),
        "a secret's data is never shown: {inspect}"
    );
    let config = cli_ok(
        h[0],
        &["config", "inspect", "--format", "{{.Spec.Data}}", "site"],
    );
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&site),
        config,
        "a config's data is shown in base64, as Docker does"
    );
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 500 * 1024 + 1]).expect("write");
    let out = cli(h[0], &["secret", "create", "big", &big.to_string_lossy()]);
    assert!(
        !out.status.success() && text(&out).contains("500 KB"),
        "{}",
        text(&out)
    );
    let out = cli(h[1], &["secret", "ls"]);
    assert!(
        !out.status.success(),
        "a worker lists no secrets: {}",
        text(&out)
    );

    // One task, on h[1]: h[2] runs none.
    let started = Instant::now();
    cli_ok(
        h[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--constraint",
            &format!("node.hostname=={}", h[1].name()),
            "-p",
            "8080:80",
            "--secret",
            "db_pw",
            "--secret",
            "source=api_token,target=/www/token,mode=0400",
            "--config",
            "source=site,target=/www/index.html",
            &image,
        ],
    );
    wait_running(h[0], "web", 1, Duration::from_secs(90));
    // Each node's mesh learns the task from gossip on its own time: wait
    // until every node serves it before reading through any of them.
    let ready = wait_for(Duration::from_secs(30), || {
        h.iter()
            .all(|node| page(h[2], node, "index.html").as_deref() == Some(site.as_str()))
    });
    assert!(
        ready,
        "the config is served through the mesh from h3: got {:?}, {:?}; logs: {}; ps: {}",
        page(h[2], h[2], "index.html"),
        page(h[2], h[2], "token"),
        text(&cli(h[0], &["service", "logs", "web"])),
        text(&cli(h[0], &["service", "ps", "--no-trunc", "web"]))
    );
    eprintln!(
        "service with secrets running and serving in {:?}",
        started.elapsed()
    );
    assert_eq!(page(h[2], h[0], "token").as_deref(), Some(token.as_str()));
    let logs = cli_ok(h[0], &["service", "logs", "web"]);
    assert!(
        logs.contains(&format!(
            "secret: {}-masked",
            password.trim_end_matches("-7Qz")
        )),
        "the task read /run/secrets/db_pw: {logs}"
    );

    // The data on disk: nowhere on h[0] (its store is sealed) and h[2]
    // (no task); on h[1] only on tmpfs.
    for (i, value) in [&password, &token, &site].into_iter().enumerate() {
        for host in [h[0], h[2]] {
            assert_eq!(
                files_holding(host, value),
                vec![],
                "value {i} on {}'s disk",
                host.name()
            );
        }
        let on_task_node = files_holding(h[1], value);
        assert!(!on_task_node.is_empty(), "value {i} is on the task's node");
        for (file, fs) in &on_task_node {
            assert_eq!(fs, "tmpfs", "value {i} in {file} on {}", h[1].name());
        }
    }

    let out = cli(h[0], &["secret", "rm", "db_pw"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("secret 'db_pw' is in use by the following service: web"),
        "{}",
        text(&out)
    );
    // --secret-rm on update frees it; the new task has no db_pw.
    cli_ok(
        h[0],
        &[
            "service",
            "update",
            "--detach",
            "--secret-rm",
            "db_pw",
            "web",
        ],
    );
    assert_eq!(cli_ok(h[0], &["secret", "rm", "db_pw"]), "db_pw");

    cli_ok(h[0], &["service", "rm", "web"]);
    let run_dir = h[1].run_dir().display().to_string();
    let mounts_gone = wait_for(Duration::from_secs(30), || {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        !info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|point| point.starts_with(&run_dir) && point.ends_with("/files"))
    });
    assert!(mounts_gone, "the task's tmpfs is unmounted with it");
    assert!(
        wait_for(Duration::from_secs(10), || files_holding(h[1], &token)
            .is_empty()),
        "no copy left on the task's node"
    );
    cli_ok(h[0], &["secret", "rm", "api_token"]);
    cli_ok(h[0], &["config", "rm", "site"]);
    assert_eq!(cli_ok(h[0], &["secret", "ls", "-q"]), "");
    assert_eq!(cli_ok(h[0], &["config", "ls", "-q"]), "");
}
