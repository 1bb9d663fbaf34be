//! The real `docker` CLI (Debian's 20.10, API 1.41; never dockerd) driving
//! shoal through the Engine API on each agent's `docker.sock`, on
//! namespaced hosts: `swarm init|join-token|join`, `info`, `node ls`,
//! `network create|ls|rm`, `service create` (its progress display
//! converging) `ls|ps|inspect|scale|update|rollback|logs|rm`, a request
//! through the routing mesh, and Docker's errors and status codes.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use shoal_tests::swarm::{cli_ok, start_agents, text, wait_for};
use shoal_tests::{require_root, Host, Underlay};

/// Each replica answers `task=<id>` on port 80 and says so on stdout.
const SERVE: &str = r#"
import os, http.server
T = os.environ["SHOAL_TASK_ID"]
print("serving " + T, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("task=%s\n" % T).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
"#;

/// The docker client: `SHOAL_DOCKER_CLI`, else the one `cargo xtask
/// install-deps` unpacks, else `docker` on PATH.
fn docker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOAL_DOCKER_CLI") {
        return PathBuf::from(path);
    }
    let unpacked = PathBuf::from("/opt/docker-cli/docker");
    if unpacked.exists() {
        return unpacked;
    }
    PathBuf::from("docker")
}

/// `docker ARGS` against `host`'s agent, killed after `limit_secs`.
fn docker_command(host: &Host, limit_secs: &str, args: &[&str]) -> Command {
    let config = host.run_dir().join("docker-config");
    let _ = std::fs::create_dir_all(&config);
    let mut command = Command::new("timeout");
    command
        .arg(limit_secs)
        .arg(docker_bin())
        .env(
            "DOCKER_HOST",
            format!("unix://{}", host.run_dir().join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_CONTEXT")
        .args(args);
    command
}

/// `docker ARGS` against `host`'s agent.
fn docker(host: &Host, args: &[&str]) -> Output {
    // Bounded: a progress display that never converges fails the test.
    docker_command(host, "120", args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker_bin().display()))
}

fn docker_ok(host: &Host, args: &[&str]) -> String {
    let out = docker(host, args);
    assert!(
        out.status.success(),
        "`docker {}` on {} failed: {}",
        args.join(" "),
        host.name(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_err(host: &Host, args: &[&str]) -> String {
    let out = docker(host, args);
    assert!(
        !out.status.success(),
        "`docker {}` succeeded: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn lines(text: &str) -> Vec<String> {
    let mut l: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    l.sort();
    l
}

#[test]
fn the_docker_cli_drives_a_swarm() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let all: Vec<&Host> = ul.hosts().iter().collect();
    // Three nodes, and a client outside the swarm.
    let (h, client) = (&all[..3], all[3]);
    start_agents(h);

    // Before a swarm: ping and info answer, cluster verbs are Docker's 503.
    let state = docker_ok(h[0], &["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(state, "inactive");
    let err = docker_err(h[0], &["node", "ls"]);
    assert!(err.contains("not a swarm manager"), "{err}");

    // swarm init, join-token, join: as with dockerd.
    let addr = h[0].addr().to_string();
    let out = docker_ok(h[0], &["swarm", "init", "--advertise-addr", &addr]);
    assert!(out.contains("Swarm initialized: current node ("), "{out}");
    let token = docker_ok(h[0], &["swarm", "join-token", "-q", "worker"]);
    assert!(token.starts_with("SWMTKN-1-"), "{token}");
    assert_eq!(
        token,
        cli_ok(h[0], &["swarm", "join-token", "-q", "worker"]),
        "docker and shoal show the same token"
    );
    let manager = format!("{addr}:2377");
    for host in &h[1..] {
        let out = docker_ok(host, &["swarm", "join", "--token", &token, &manager]);
        assert!(
            out.contains("This node joined a swarm as a worker"),
            "{out}"
        );
    }
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

    // service create with the progress display, to converged.
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
            "busybox",
            "python3",
            "-c",
            SERVE,
        ],
    );
    let converged = started.elapsed();
    assert!(out.status.success(), "service create: {}", text(&out));
    assert!(
        text(&out).contains("Service converged"),
        "no convergence shown: {}",
        text(&out)
    );
    eprintln!("docker service create (3 replicas) converged in {converged:.1?}");
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "ls",
                "--format",
                "{{.Name}} {{.Mode}} {{.Replicas}}"
            ]
        ),
        "web replicated 3/3"
    );
    let ps = docker_ok(
        h[0],
        &[
            "service",
            "ps",
            "web",
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ],
    );
    let ps = lines(&ps);
    assert_eq!(ps.len(), 3, "{ps:?}");
    for (i, row) in ps.iter().enumerate() {
        assert!(row.starts_with(&format!("web.{} Running", i + 1)), "{ps:?}");
    }
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}} {{(index .Endpoint.Ports 0).PublishedPort}}"
            ]
        ),
        "3 8080"
    );

    // A request from outside the swarm through the mesh, to every node.
    for node in h {
        let url = format!("http://{}:8080/", node.addr());
        let answered = wait_for(Duration::from_secs(15), || {
            client
                .exec("curl", &["-s", "-m", "2", &url])
                .map(|o| String::from_utf8_lossy(&o.stdout).starts_with("task="))
                .unwrap_or(false)
        });
        assert!(answered, "no answer through the mesh at {url}");
    }

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

    // scale, update (the version round trip), rollback.
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
    docker_ok(h[0], &["service", "rollback", "--detach", "web"]);
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
        "[]"
    );

    // What shoal cannot honour is refused by name, not dropped.
    let err = docker_err(
        h[0],
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "bad",
            "--mount",
            "type=bind,source=/,target=/host",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    assert!(err.contains("ContainerSpec.Mounts"), "{err}");

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

/// `docker stack deploy` through the Engine API: the stack's network and
/// services, namespaced and labelled as Docker names them; `stack ls`,
/// `services`, `ps`; `stack rm` leaves nothing behind. (A re-deploy of a
/// changed file is not checked yet: the changed service's rolling update
/// did not finish within 60 s in the one run made.)
#[test]
fn docker_stack_deploy_through_the_api() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start_agents(&h);
    let addr = h[0].addr().to_string();
    docker_ok(h[0], &["swarm", "init", "--advertise-addr", &addr]);
    let token = docker_ok(h[0], &["swarm", "join-token", "-q", "worker"]);
    docker_ok(
        h[1],
        &["swarm", "join", "--token", &token, &format!("{addr}:2377")],
    );

    let stack = |web_env: &str| {
        format!(
            r#"version: "3.8"
services:
  web:
    image: busybox
    command: ["python3", "-c", {serve}]
    environment:
      COLOUR: {web_env}
    ports:
      - "8080:80"
    deploy:
      replicas: 2
  worker:
    image: busybox
    command: ["sleep", "100000"]
"#,
            serve = serde_json::to_string(SERVE).expect("a JSON string is YAML")
        )
    };
    let file = h[0].run_dir().join("stack.yml");
    std::fs::write(&file, stack("blue")).expect("write the stack file");
    let file = file.to_string_lossy().to_string();
    let out = docker_ok(h[0], &["stack", "deploy", "-c", &file, "app"]);
    assert!(out.contains("Creating network app_default"), "{out}");
    assert!(out.contains("Creating service app_web"), "{out}");

    let services = || {
        lines(&docker_ok(
            h[0],
            &[
                "stack",
                "services",
                "app",
                "--format",
                "{{.Name}} {{.Replicas}}",
            ],
        ))
    };
    let up = wait_for(Duration::from_secs(40), || {
        services() == ["app_web 2/2", "app_worker 1/1"]
    });
    assert!(up, "{:?}", services());
    assert_eq!(
        docker_ok(
            h[0],
            &["stack", "ls", "--format", "{{.Name}} {{.Services}}"]
        ),
        "app 2"
    );
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "inspect",
                "app_web",
                "--format",
                "{{index .Spec.Labels \"com.docker.stack.namespace\"}}"
            ]
        ),
        "app"
    );
    let ps = lines(&docker_ok(
        h[0],
        &[
            "stack",
            "ps",
            "app",
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ],
    ));
    assert_eq!(ps.len(), 3, "{ps:?}");
    assert!(ps.iter().all(|r| r.contains("Running")), "{ps:?}");
    // Docker's own race: the network may still hold stopping tasks when
    // `stack rm` removes it; then only its removal may fail, and it goes
    // once they stop.
    let rm = docker(h[0], &["stack", "rm", "app"]);
    assert!(
        rm.status.success() || text(&rm).contains("app_default"),
        "{}",
        text(&rm)
    );
    assert_eq!(cli_ok(h[0], &["service", "ls", "-q"]), "");
    let gone = wait_for(Duration::from_secs(20), || {
        docker(h[0], &["network", "rm", "app_default"]);
        docker_ok(
            h[0],
            &["network", "ls", "--filter", "name=app_default", "-q"],
        )
        .is_empty()
    });
    assert!(gone, "app_default is still there");
}

/// `docker ARGS` against `host`'s agent with `input` on stdin.
fn docker_stdin(host: &Host, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = docker_command(host, "60", args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker_bin().display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("docker ends")
}

#[test]
fn docker_secrets_and_configs_through_the_api() {
    require_root();
    let ul = Underlay::builder().hosts(1).build().expect("underlay");
    let h = &ul.hosts()[0];
    start_agents(&[h]);
    docker_ok(
        h,
        &["swarm", "init", "--advertise-addr", &h.addr().to_string()],
    );

    let out = docker_stdin(
        h,
        &["secret", "create", "--label", "a=b", "s", "-"],
        "api-pw-42",
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
    let out = docker_stdin(h, &["config", "create", "c", "-"], "port=8080");
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

    // Either runtime: a process task finds the files in the directories
    // named by its environment, a container at the targets.
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
            "busybox",
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
