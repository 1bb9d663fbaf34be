//! The real `docker` CLI (Debian's 20.10, API 1.41; never dockerd) driving
//! shoal through the Engine API on each agent's `docker.sock`, on
//! namespaced hosts: `swarm init|join-token|join`, `info`, `node ls`,
//! `network create|ls|rm`, `service create` of an image pushed to a test
//! registry (its progress display converging, the tag pinned to the
//! registry's digest through `/distribution`) `ls|ps|inspect|logs|update
//! --image|rollback|scale|rm`, requests through the routing mesh answered
//! by the containers, an image the registry lacks `Rejected` with its
//! error, named volumes, and Docker's errors and status codes.

use std::time::{Duration, Instant};

use shoal_tests::docker::{
    docker, docker_err, docker_ok, docker_swarm, docker_with_input, sorted_lines as lines,
};
use shoal_tests::registry::{
    busybox_image, registry_digest, serve_on, start_agents_pulling_from, web_image, ImageSpec,
};
use shoal_tests::swarm::{cli, cli_ok, text, wait_for};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

/// The rows of `docker service ps NAME [--no-trunc]` through `format`,
/// sorted (truncated, images show without their digest).
fn service_ps(host: &Host, name: &str, no_trunc: bool, format: &str) -> Vec<String> {
    let mut args = vec!["service", "ps", name, "--format", format];
    if no_trunc {
        args.push("--no-trunc");
    }
    lines(&docker_ok(host, &args))
}

/// `curl` from `client` to every node's published `port` until each
/// answers `body`; panics naming the node that does not.
fn every_node_answers(client: &Host, nodes: &[&Host], port: u16, body: &str) {
    for node in nodes {
        let url = format!("http://{}:{port}/", node.addr());
        let mut last = String::new();
        let answered = wait_for(Duration::from_secs(30), || {
            last = client
                .exec("curl", &["-s", "-m", "2", &url])
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            last == body
        });
        assert!(answered, "{url} answered `{last}`, not `{body}`");
    }
}

#[test]
fn the_docker_cli_drives_a_swarm() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let all: Vec<&Host> = ul.hosts().iter().collect();
    // Three nodes, and a client outside the swarm that serves the registry.
    let (h, client) = (&all[..3], all[3]);
    let registry = serve_on(client, None);
    let dir = TempDir::new().expect("temp dir");
    let web1 = registry.push(&web_image(dir.path(), "web1", "web v1"), "web:1", false);
    // The second tag as Docker schema 2, so both manifest kinds run.
    let web2 = registry.push(&web_image(dir.path(), "web2", "web v2"), "web:2", true);
    start_agents_pulling_from(h, &registry.addr);

    // Before a swarm: ping and info answer, cluster verbs are Docker's 503.
    let state = docker_ok(h[0], &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(state, "inactive");
    let err = docker_err(h[0], &["node", "ls"]);
    assert!(err.contains("not a swarm manager"), "{err}");

    // swarm init, join-token, join: as with dockerd.
    docker_swarm(h[0], &h[1..]);
    let info = docker_ok(
        h[0],
        &[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Managers}}",
        ],
    );
    assert_eq!(info, "active true 1");

    // node ls: every node Ready, the leader marked, `*` on this node; the
    // same nodes shoal's own CLI lists.
    let ready = wait_for(Duration::from_secs(20), || {
        docker(
            h[0],
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        )
        .stdout
        .starts_with(b"h1 Ready\nh2 Ready\nh3 Ready")
    });
    assert!(ready, "{}", text(&docker(h[0], &["node", "ls"])));
    let rows = docker_ok(
        h[0],
        &[
            "node",
            "ls",
            "--format",
            "{{.Self}} {{.Hostname}} {{.ManagerStatus}}",
        ],
    );
    assert_eq!(lines(&rows), ["false h2", "false h3", "true h1 Leader"]);
    assert_eq!(
        lines(&docker_ok(h[0], &["node", "ls", "-q"])),
        lines(&cli_ok(h[0], &["node", "ls", "-q"]))
    );
    docker_ok(h[0], &["node", "update", "--label-add", "zone=a", "h2"]);
    assert_eq!(
        docker_ok(
            h[0],
            &["node", "inspect", "h2", "--format", "{{.Spec.Labels.zone}}"]
        ),
        "a"
    );
    let err = docker_err(h[0], &["node", "inspect", "nosuchnode"]);
    assert!(err.contains("nosuchnode"), "{err}");

    // An overlay network.
    let net = docker_ok(h[0], &["network", "create", "-d", "overlay", "app"]);
    assert_eq!(net.len(), 25, "{net}");
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "network",
                "ls",
                "--filter",
                "name=app",
                "--format",
                "{{.Name}} {{.Driver}} {{.Scope}}"
            ]
        ),
        "app overlay swarm"
    );
    let err = docker_err(h[0], &["network", "create", "plain"]);
    assert!(err.contains("-d overlay"), "{err}");

    let digest1 = registry_digest(client, &web1);

    // service create of the image, with the progress display, to converged.
    let started = Instant::now();
    let out = docker(
        h[0],
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            "-p",
            "8080:80",
            "--network",
            "app",
            &web1,
        ],
    );
    let converged = started.elapsed();
    assert!(out.status.success(), "service create: {}", text(&out));
    assert!(
        text(&out).contains("Service converged"),
        "no convergence shown: {}",
        text(&out)
    );
    assert!(
        !text(&out).contains("could not be accessed on a registry"),
        "the CLI resolved the tag through /distribution: {}",
        text(&out)
    );
    eprintln!("docker service create (3 replicas of an image) converged in {converged:.1?}");
    // The CLI pinned the tag to the registry's digest.
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.Spec.Mode.Replicated.Replicas}} {{(index .Endpoint.Ports 0).PublishedPort}}"
            ]
        ),
        format!("{web1}@{digest1} 3 8080")
    );
    let pretty = docker_ok(h[0], &["service", "inspect", "--pretty", "web"]);
    assert!(
        pretty
            .lines()
            .any(|l| l.trim_start().starts_with("Image:") && l.contains(&web1)),
        "{pretty}"
    );
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "ls",
                "--format",
                "{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}"
            ]
        ),
        format!("web replicated 3/3 {web1}")
    );
    let ps = service_ps(h[0], "web", false, "{{.Name}} {{.Image}} {{.CurrentState}}");
    assert_eq!(ps.len(), 3, "{ps:?}");
    for (i, row) in ps.iter().enumerate() {
        assert!(
            row.starts_with(&format!("web.{} {web1} Running", i + 1)),
            "{ps:?}"
        );
    }

    // A request from outside the swarm through the mesh, to every node,
    // answered by the containers (the page is the image's).
    every_node_answers(client, h, 8080, "web v1");

    // Logs in the CLI's pretty form: `web.N.<id>@<host>    | line`.
    let logs_ok = wait_for(Duration::from_secs(15), || {
        let out = docker(h[0], &["service", "logs", "web"]);
        let all = text(&out);
        all.lines()
            .filter(|l| l.starts_with("web.") && l.contains('@') && l.contains("| serving "))
            .count()
            == 3
    });
    assert!(
        logs_ok,
        "{}",
        text(&docker(h[0], &["service", "logs", "web"]))
    );

    // update --image rolls out the second tag, rollback brings the first.
    let started = Instant::now();
    docker_ok(h[0], &["service", "update", "--image", &web2, "web"]);
    eprintln!(
        "docker service update --image (3 replicas) converged in {:.1?}",
        started.elapsed()
    );
    every_node_answers(client, h, 8080, "web v2");
    let ps = service_ps(h[0], "web", false, "{{.Image}} {{.DesiredState}}");
    assert_eq!(
        ps.iter()
            .filter(|r| *r == &format!("{web2} Running"))
            .count(),
        3,
        "{ps:?}"
    );
    assert!(
        ps.iter().any(|r| r == &format!("{web1} Shutdown")),
        "{ps:?}"
    );
    docker_ok(h[0], &["service", "rollback", "web"]);
    every_node_answers(client, h, 8080, "web v1");
    assert!(
        docker_ok(
            h[0],
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
            ]
        )
        .starts_with(&format!("{web1}@sha256:")),
        "rolled back to the first image"
    );

    // scale, and an update of the environment (the version round trip).
    docker_ok(h[0], &["service", "scale", "web=2"]);
    assert_eq!(
        docker_ok(h[0], &["service", "ls", "--format", "{{.Replicas}}"]),
        "2/2"
    );
    docker_ok(
        h[0],
        &[
            "service",
            "update",
            "--detach",
            "--env-add",
            "COLOUR=blue",
            "web",
        ],
    );
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Env}}"
            ]
        ),
        "[COLOUR=blue]"
    );

    // An image the registry does not have: the CLI warns, the task is
    // Rejected with the registry's error.
    let missing = web1.replace("web:1", "web:nope");
    let out = docker(
        h[0],
        &["service", "create", "--detach", "--name", "ghost", &missing],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("could not be accessed on a registry"),
        "{}",
        text(&out)
    );
    let mut ps = Vec::new();
    let rejected = wait_for(Duration::from_secs(40), || {
        ps = service_ps(h[0], "ghost", true, "{{.CurrentState}}|{{.Error}}");
        ps.iter().any(|r| r.starts_with("Rejected"))
    });
    assert!(rejected, "never rejected: {ps:?}");
    let row = ps
        .iter()
        .find(|r| r.starts_with("Rejected"))
        .cloned()
        .unwrap_or_default();
    assert!(
        row.contains("web:nope") && row.to_lowercase().contains("manifest unknown"),
        "the registry's error: {row}"
    );
    docker_ok(h[0], &["service", "rm", "ghost"]);

    // What shoal cannot honour is refused by name, not dropped.
    let err = docker_err(
        h[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "bad",
            "--sysctl",
            "net.core.somaxconn=1024",
            &web1,
        ],
    );
    assert!(err.contains("ContainerSpec.Sysctls"), "{err}");

    // A named volume: created on first use, listed by `shoal volume ls`
    // on the node that runs the task, not removable while mounted.
    docker_ok(
        h[0],
        &[
            "service",
            "create",
            "--name",
            "vol",
            "--constraint",
            "node.hostname==h1",
            "--mount",
            "type=volume,source=vdata,target=/data",
            &web1,
        ],
    );
    let listed = cli_ok(h[0], &["volume", "ls"]);
    assert!(
        listed
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("DRIVER") && l.contains("VOLUME NAME")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("local") && l.ends_with("vdata")),
        "{listed}"
    );
    let out = cli(h[0], &["volume", "rm", "vdata"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("volume is in use"), "{}", text(&out));
    // The same through the Engine API (`GET /volumes`, `DELETE` a 409).
    assert_eq!(
        docker_ok(h[0], &["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]),
        "local vdata"
    );
    let err = docker_err(h[0], &["volume", "rm", "vdata"]);
    assert!(err.contains("volume is in use"), "{err}");
    docker_ok(h[0], &["service", "rm", "vol"]);
    let mut last = String::new();
    let removed = wait_for(Duration::from_secs(40), || {
        let out = cli(h[0], &["volume", "rm", "vdata"]);
        last = text(&out);
        out.status.success()
    });
    assert!(removed, "the volume stayed in use: {last}");
    assert_eq!(cli_ok(h[0], &["volume", "ls", "-q"]), "");

    // rm: nothing left, in shoal's own view too.
    docker_ok(h[0], &["service", "rm", "web"]);
    assert_eq!(cli_ok(h[0], &["service", "ls", "-q"]), "");
    let gone = wait_for(Duration::from_secs(15), || {
        docker(h[0], &["network", "rm", "app"]).status.success()
    });
    assert!(gone, "{}", text(&docker(h[0], &["network", "rm", "app"])));
    assert_eq!(
        docker_ok(h[0], &["network", "ls", "--filter", "name=app", "-q"]),
        ""
    );

    // A worker's Engine API answers what dockerd's does.
    let err = docker_err(h[1], &["node", "ls"]);
    assert!(err.contains("not a swarm manager"), "{err}");
    docker_ok(h[1], &["swarm", "leave"]);
}

#[test]
fn docker_secrets_and_configs_through_the_api() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h = &ul.hosts()[0];
    let registry = serve_on(h, None);
    let dir = TempDir::new().expect("temp dir");
    let plain = busybox_image(dir.path(), "plain", &ImageSpec::default());
    let image = registry.push(&plain, "busybox:1", false);
    start_agents_pulling_from(&[h], &registry.addr);
    docker_swarm(h, &[]);

    let out = docker_with_input(
        h,
        &["secret", "create", "--label", "a=b", "s", "-"],
        Some("api-pw-42"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 25, "{id}");
    assert_eq!(
        docker_ok(h, &["secret", "ls", "--format", "{{.ID}} {{.Name}}"]),
        format!("{id} s")
    );
    assert_eq!(
        cli_ok(h, &["secret", "ls", "-q"]),
        id,
        "shoal lists the secret docker created"
    );
    let inspect = docker_ok(h, &["secret", "inspect", "s"]);
    assert!(
        inspect.contains("\"a\": \"b\"") && !inspect.contains("Data"),
        "{inspect}"
    );
    let out = docker_with_input(h, &["config", "create", "c", "-"], Some("port=8080"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        docker_ok(
            h,
            &[
                "config",
                "inspect",
                "--format",
                "{{printf \"%s\" .Spec.Data}}",
                "c"
            ]
        ),
        "port=8080"
    );
    assert!(docker_ok(h, &["secret", "ls", "--filter", "name=nope", "-q"]).is_empty());

    // The container finds the files at their targets (a process task
    // would in the directories its environment names).
    docker_ok(
        h,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "r",
            "--secret",
            "s",
            "--config",
            "source=c,target=/cfg",
            &image,
            "sh",
            "-c",
            "echo len=$(wc -c < ${SHOAL_SECRETS_DIR:-/run/secrets}/s) cfg=$(cat ${SHOAL_CONFIGS_DIR:-}/cfg); sleep 600",
        ],
    );
    let spec = docker_ok(
        h,
        &[
            "service",
            "inspect",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}:{{.File.Name}}{{end}}",
            "r",
        ],
    );
    assert_eq!(spec, "s:s");
    let mut logs = String::new();
    let read = wait_for(Duration::from_secs(30), || {
        logs = text(&docker(h, &["service", "logs", "r"]));
        logs.contains("len=9 cfg=port=8080")
    });
    assert!(read, "the task read its secret and config: {logs}");

    let err = docker_err(h, &["secret", "rm", "s"]);
    assert!(
        err.contains("secret 's' is in use by the following service: r"),
        "{err}"
    );
    docker_ok(h, &["service", "rm", "r"]);
    assert_eq!(docker_ok(h, &["secret", "rm", "s"]), "s");
    assert_eq!(docker_ok(h, &["config", "rm", "c"]), "c");
    assert_eq!(docker_ok(h, &["secret", "ls", "-q"]), "");
}
