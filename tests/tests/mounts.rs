//! Hostname templates and mounts end to end on namespaced hosts: a
//! busybox image from a registry on the node reports what its task sees,
//! read through the routing mesh: `--hostname` with Swarm's placeholders
//! filled, a read-only bind mount, a named volume whose file lands on the
//! node, a tmpfs with its mode and size; a missing bind source fails the
//! task naming the path; a placeholder shoal cannot fill is refused.

use std::time::Duration;

use shoal_tests::mesh::page;
use shoal_tests::registry::{serve_on, shell_image, single_node_swarm_pulling_from};
use shoal_tests::swarm::{cli, cli_ok, state_dir, text, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

#[test]
fn hostname_templates_and_bind_volume_and_tmpfs_mounts() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (node, client) = (h[0], h[1]);
    let registry = serve_on(node, None);
    let dir = TempDir::new().expect("temp dir");
    // The page says what the task sees: its hostname, the bind's file and
    // whether it can write there, the tmpfs's mode, type and size, and it
    // writes a file into the volume.
    let report = shell_image(
        dir.path(),
        "report",
        "mkdir -p /www; { hostname; cat /bind/hello.txt; \
         (touch /bind/x 2>/dev/null && echo rw) || echo ro; \
         stat -c %a /scratch; grep -c ' /scratch tmpfs' /proc/mounts; \
         df -k /scratch | tail -1 | awk '{print $2}'; } > /www/index.html; \
         echo kept > /data/written; exec httpd -f -h /www -p 80",
    );
    let image = registry.push(&report, "report:1", false);
    let source = dir.path().join("bindsrc");
    std::fs::create_dir_all(&source).expect("bind source");
    std::fs::write(source.join("hello.txt"), "from-the-node\n").expect("bind file");
    single_node_swarm_pulling_from(node, &registry);
    let bind = format!(
        "type=bind,source={},target=/bind,readonly",
        source.display()
    );
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "mnt",
            "-p",
            "8084:80",
            "--hostname",
            "{{.Service.Name}}-{{.Task.Slot}}-{{.Node.Hostname}}",
            "--mount",
            &bind,
            "--mount",
            "type=volume,source=vol1,target=/data",
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
            &image,
        ],
    );
    wait_running(node, "mnt", 1, Duration::from_secs(60));
    let mut got = None;
    let served = wait_for(Duration::from_secs(20), || {
        got = page(client, node, 8084);
        got.is_some()
    });
    assert!(served, "no page");
    let lines: Vec<String> = got
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let expected = [
        format!("mnt-1-{}", node.name()),
        "from-the-node".into(),
        "ro".into(),
        "1770".into(),
        "1".into(),
        "1024".into(),
    ];
    assert_eq!(lines, expected);
    let written = state_dir(node).join("volumes/vol1/_data/written");
    assert_eq!(
        std::fs::read_to_string(&written).ok().as_deref(),
        Some("kept\n"),
        "{}",
        written.display()
    );
    // A bind source the node lacks fails the task, naming the path.
    cli_ok(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "badbind",
            "--mount",
            "type=bind,source=/nonexistent-shoal-bind,target=/x",
            &image,
        ],
    );
    let refused = wait_for(Duration::from_secs(60), || {
        shoal_tests::swarm::tasks(node, &["service", "ps", "badbind"])
            .iter()
            .any(|t| {
                t["Error"]
                    .as_str()
                    .is_some_and(|e| e.contains("/nonexistent-shoal-bind"))
            })
    });
    assert!(
        refused,
        "{:#?}",
        shoal_tests::swarm::tasks(node, &["service", "ps", "badbind"])
    );
    // Placeholders shoal cannot fill are refused at create.
    let bad = cli(
        node,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "x",
            "--hostname",
            "{{.Service.Labels}}",
            &image,
        ],
    );
    assert!(!bad.status.success(), "{}", text(&bad));
}
