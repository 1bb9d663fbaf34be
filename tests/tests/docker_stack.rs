//! Stacks through the real `docker` CLI (20.10, through each agent's
//! `docker.sock`; never dockerd) beside shoal's own, on namespaced hosts:
//! `docker stack deploy -c` a compose file with two services, a network, a
//! secret, a config and a healthcheck, its services converging and its
//! port answering through every node; a changed file re-deployed replacing
//! only the changed service's tasks; `docker stack rm` leaving nothing.
//! The same file through `shoal stack deploy` and `docker stack deploy`
//! gives the same `service inspect` specs, byte for byte; docker's `node
//! ls`, `service ls` and `service ps` print what shoal's print; and
//! docker's public example-voting-app stack file (images swapped for the
//! test registry's) deploys with both clients.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_tests::docker::{docker, docker_ok, docker_swarm, sorted_lines};
use shoal_tests::mesh::curl;
use shoal_tests::registry::{serve_on, start_agents_pulling_from, web_image};
use shoal_tests::swarm::{cli, cli_ok, text, wait_for};
use shoal_tests::{require_root, Host, Underlay};
use tempfile::TempDir;

/// The stack file: `web` (published, healthchecked, with the secret and
/// the config as its pages, `COLOUR` set to `colour`) and `worker` (an
/// entrypoint of its own, the secret at Docker's default path), both on
/// the `front` network. busybox's httpd runs as the container's PID 1,
/// which ignores SIGTERM: each task replaced by an update waits out its
/// stop grace period (Docker's default, 10 s) before SIGKILL, as with
/// dockerd, hence web's short one.
fn compose(image: &str, colour: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  web:
    image: {image}
    environment:
      COLOUR: {colour}
    ports:
      - "8080:80"
    networks: [front]
    secrets:
      - source: db_pw
        target: /www/pw.txt
    configs:
      - source: page
        target: /www/index.html
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 2s
      timeout: 2s
      retries: 3
    stop_grace_period: 1s
    deploy:
      replicas: 2
  worker:
    image: {image}
    entrypoint: ["sleep", "100000"]
    networks: [front]
    secrets: [db_pw]
networks:
  front: {{}}
secrets:
  db_pw:
    file: ./pw.txt
configs:
  page:
    file: ./page.html
"#
    )
}

/// `NAME REPLICAS` of the stack's services, sorted, as docker shows them.
fn replicas(host: &Host, stack: &str) -> Vec<String> {
    let out = docker(
        host,
        &[
            "stack",
            "services",
            stack,
            "--format",
            "{{.Name}} {{.Replicas}}",
        ],
    );
    sorted_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Waits (generously: images are pulled, the machine is shared) until
/// the stack's services show `expected`.
fn wait_replicas(host: &Host, stack: &str, expected: &[&str]) {
    let started = Instant::now();
    let up = wait_for(Duration::from_secs(180), || {
        replicas(host, stack) == expected
    });
    assert!(
        up,
        "stack services {stack}: {:?}; ps: {}",
        replicas(host, stack),
        text(&docker(host, &["stack", "ps", stack, "--no-trunc"]))
    );
    eprintln!("stack {stack} converged in {:.1?}", started.elapsed());
}

/// The running tasks' ids of `service`, sorted.
fn running_tasks(host: &Host, service: &str) -> Vec<String> {
    sorted_lines(&docker_ok(
        host,
        &[
            "service",
            "ps",
            service,
            "-q",
            "--filter",
            "desired-state=running",
        ],
    ))
}

/// `ID NAME` pairs of `docker KIND ls` (full ids).
fn ids(host: &Host, kind: &str) -> Vec<(String, String)> {
    let mut args = vec![kind, "ls", "--format", "{{.ID}} {{.Name}}"];
    if kind == "network" {
        args.push("--no-trunc");
    }
    docker_ok(host, &args)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect()
}

/// `docker service inspect`'s `.Spec` of each service of `stack`, as JSON,
/// with the ids of networks, secrets and configs (new ones each deploy)
/// replaced by `<id of NAME>`: nothing else is touched.
fn specs(host: &Host, stack: &str) -> BTreeMap<String, String> {
    let mut objects = ids(host, "network");
    objects.extend(ids(host, "secret"));
    objects.extend(ids(host, "config"));
    let names = docker_ok(host, &["stack", "services", stack, "--format", "{{.Name}}"]);
    names
        .lines()
        .map(|name| {
            let mut spec = docker_ok(
                host,
                &["service", "inspect", "--format", "{{json .Spec}}", name],
            );
            for (id, object) in &objects {
                spec = spec.replace(id.as_str(), &format!("<id of {object}>"));
            }
            (name.to_string(), spec)
        })
        .collect()
}

/// Names of `kind` objects (`service`, `network`, ...) of the stack `app`
/// that shoal still lists.
fn leftovers(host: &Host, kind: &str, stack: &str) -> Vec<String> {
    cli_ok(host, &[kind, "ls", "--format", "{{.Name}}"])
        .lines()
        .filter(|n| n.starts_with(&format!("{stack}_")))
        .map(str::to_string)
        .collect()
}

/// `docker stack rm STACK`, then nothing of the stack is left: no
/// service, secret or config at once; no network once the tasks have
/// stopped (Docker's own race: `stack rm` does not wait for them, so the
/// network's removal may fail, and it is removed again here).
fn docker_stack_rm(host: &Host, stack: &str) {
    let rm = docker(host, &["stack", "rm", stack]);
    let network_race =
        text(&rm).contains(&format!("{stack}_")) && text(&rm).to_lowercase().contains("network");
    assert!(rm.status.success() || network_race, "{}", text(&rm));
    for kind in ["service", "secret", "config"] {
        assert_eq!(
            leftovers(host, kind, stack),
            Vec::<String>::new(),
            "{kind}s"
        );
    }
    let gone = wait_for(Duration::from_secs(60), || {
        for network in leftovers(host, "network", stack) {
            docker(host, &["network", "rm", &network]);
        }
        leftovers(host, "network", stack).is_empty()
    });
    assert!(
        gone,
        "networks left: {:?}",
        leftovers(host, "network", stack)
    );
    assert_eq!(
        docker_ok(host, &["stack", "ls", "--format", "{{.Name}}"]),
        ""
    );
}

/// `shoal stack rm STACK` and its tasks gone (so the next deploy under the
/// same name starts from nothing).
fn shoal_stack_rm(host: &Host, stack: &str) {
    cli_ok(host, &["stack", "rm", stack]);
    for kind in ["service", "network", "secret", "config"] {
        assert_eq!(
            leftovers(host, kind, stack),
            Vec::<String>::new(),
            "{kind}s"
        );
    }
}

/// A registry on `registry_host`, the web image pushed, agents on `hosts`
/// pulling from it, a swarm made with the docker CLI (the first host the
/// manager), and the stack file's secret and config beside `file`.
struct Setup {
    image: String,
    dir: TempDir,
    site: String,
    password: String,
}

fn setup(hosts: &[&Host], registry_host: &Host) -> (Setup, shoal_tests::registry::Registry) {
    let registry = serve_on(registry_host, None);
    let dir = TempDir::new().expect("temp dir");
    let image = registry.push(
        &web_image(dir.path(), "stackweb", "from the image"),
        "stackweb:1",
        false,
    );
    start_agents_pulling_from(hosts, &registry.addr);
    docker_swarm(hosts[0], &hosts[1..]);
    let stamp = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
    let site = format!("stack page {stamp:x}");
    let password = format!("pw-{stamp:x}");
    std::fs::write(dir.path().join("pw.txt"), &password).expect("write");
    std::fs::write(dir.path().join("page.html"), &site).expect("write");
    (
        Setup {
            image,
            dir,
            site,
            password,
        },
        registry,
    )
}

impl Setup {
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write the stack file");
        path
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

#[test]
fn docker_stack_deploy_updates_only_the_changed_service_and_rm_leaves_nothing() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (s, _registry) = setup(&h, h[2]);
    let blue = path(&s.file("blue.yml", &compose(&s.image, "blue")));

    let out = docker_ok(h[0], &["stack", "deploy", "-c", &blue, "app"]);
    for line in [
        "Creating network app_front",
        "Creating secret app_db_pw",
        "Creating config app_page",
        "Creating service app_web",
        "Creating service app_worker",
    ] {
        assert!(out.contains(line), "`{line}` in {out}");
    }
    wait_replicas(h[0], "app", &["app_web 2/2", "app_worker 1/1"]);
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
                "{{index .Spec.Labels \"com.docker.stack.namespace\"}} {{json .Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}"
            ]
        ),
        r#"app ["CMD","wget","-q","-O","/dev/null","http://127.0.0.1/"]"#
    );

    // The published port answers through every node, with the config and
    // the secret where the file mounts them.
    let page = |node: &Host, file: &str| curl(h[2], &format!("http://{}:8080/{file}", node.addr()));
    let served = wait_for(Duration::from_secs(60), || {
        h.iter()
            .all(|n| page(n, "index.html").as_deref() == Some(s.site.as_str()))
    });
    assert!(
        served,
        "through every node: {:?}",
        h.iter().map(|n| page(n, "index.html")).collect::<Vec<_>>()
    );
    assert_eq!(page(h[1], "pw.txt").as_deref(), Some(s.password.as_str()));

    // A changed file: docker posts both services again (with the digest
    // it resolves); only web's tasks are replaced.
    let worker_tasks = running_tasks(h[0], "app_worker");
    let web_tasks = running_tasks(h[0], "app_web");
    assert_eq!((worker_tasks.len(), web_tasks.len()), (1, 2));
    let red = path(&s.file("red.yml", &compose(&s.image, "red")));
    let started = Instant::now();
    let out = docker_ok(h[0], &["stack", "deploy", "-c", &red, "app"]);
    assert!(out.contains("Updating service app_web (id: "), "{out}");
    let mut now = Vec::new();
    let rolled = wait_for(Duration::from_secs(120), || {
        now = running_tasks(h[0], "app_web");
        now.len() == 2
            && now.iter().all(|t| !web_tasks.contains(t))
            && replicas(h[0], "app") == ["app_web 2/2", "app_worker 1/1"]
    });
    assert!(
        rolled,
        "web's tasks were not all replaced and running: {now:?} (before {web_tasks:?}); {}",
        text(&docker(h[0], &["service", "ps", "app_web", "--no-trunc"]))
    );
    eprintln!(
        "re-deploy: the changed service rolled over in {:.1?}",
        started.elapsed()
    );
    // Where the time went: each web task's creation and last state change.
    let all_web: Vec<String> = sorted_lines(&docker_ok(
        h[0],
        &["service", "ps", "app_web", "-q", "--no-trunc"],
    ));
    let mut args = vec![
        "inspect",
        "--type",
        "task",
        "--format",
        "{{.Slot}} {{.CreatedAt}} {{.Status.Timestamp}} {{.Status.State}} {{.DesiredState}}",
    ];
    args.extend(all_web.iter().map(String::as_str));
    eprintln!("web's tasks:\n{}", text(&docker(h[0], &args)));
    assert_eq!(
        docker_ok(
            h[0],
            &[
                "service",
                "inspect",
                "app_web",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Env}}"
            ]
        ),
        "[COLOUR=red]"
    );
    assert_eq!(
        running_tasks(h[0], "app_worker"),
        worker_tasks,
        "the unchanged worker keeps its task"
    );
    assert_eq!(
        docker_ok(h[0], &["service", "ps", "app_worker", "-q"]),
        worker_tasks.join("\n"),
        "the worker has no replaced task either"
    );

    docker_stack_rm(h[0], "app");
    assert_eq!(cli_ok(h[0], &["service", "ls", "-q"]), "");
}

/// `docker ARGS` and `shoal ARGS` print the same (a state's age, "Running
/// 3 seconds ago", may move between the two calls, so they are asked
/// again, bounded, until they agree); the difference if they never do.
fn output_difference(host: &Host, args: &[&str]) -> Option<String> {
    let (mut d, mut s) = (String::new(), String::new());
    let same = wait_for(Duration::from_secs(20), || {
        d = docker_ok(host, args);
        s = cli_ok(host, args);
        d == s && !d.is_empty()
    });
    (!same).then(|| format!("`{}`:\ndocker:\n{d}\nshoal:\n{s}", args.join(" ")))
}

#[test]
fn shoal_and_docker_deploy_the_same_services_and_print_the_same_tables() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (s, _registry) = setup(&h, h[1]);
    let file = path(&s.file("stack.yml", &compose(&s.image, "blue")));
    let expected = ["app_web 2/2", "app_worker 1/1"];

    cli_ok(h[0], &["stack", "deploy", "-c", &file, "app"]);
    wait_replicas(h[0], "app", &expected);
    let by_shoal = specs(h[0], "app");
    shoal_stack_rm(h[0], "app");

    docker_ok(h[0], &["stack", "deploy", "-c", &file, "app"]);
    wait_replicas(h[0], "app", &expected);
    let by_docker = specs(h[0], "app");
    assert_eq!(by_shoal.len(), 2, "{by_shoal:?}");
    for (name, spec) in &by_docker {
        assert_eq!(
            by_shoal.get(name),
            Some(spec),
            "{name}: shoal's spec, then docker's"
        );
    }

    // docker's tables are shoal's: `node ls` whole; the others column for
    // column through the same --format (shoal's default `service ls`
    // shows COMMAND where Docker's shows IMAGE, its `service ps` leaves
    // IMAGE out, and docker 20.10's `stack ls` adds ORCHESTRATOR).
    let mut differences = Vec::new();
    let mut same_output = |args: &[&str]| {
        differences.extend(output_difference(h[0], args));
    };
    same_output(&["node", "ls"]);
    same_output(&[
        "node",
        "ls",
        "--format",
        "{{.ID}} {{.Self}} {{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}} {{.EngineVersion}}",
    ]);
    let services = "{{.ID}} {{.Name}} {{.Mode}} {{.Replicas}} {{.Image}} {{.Ports}}";
    let tasks = "{{.ID}} {{.Name}} {{.Image}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}} {{.Ports}}";
    same_output(&["service", "ls", "--format", services]);
    for service in ["app_web", "app_worker"] {
        same_output(&["service", "ps", service, "--format", tasks]);
        same_output(&["service", "ps", service, "--no-trunc", "--format", tasks]);
    }
    same_output(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"]);
    same_output(&["stack", "services", "app", "--format", services]);
    same_output(&["stack", "ps", "app", "--format", tasks]);
    same_output(&["stack", "ps", "app", "--no-trunc", "--format", tasks]);
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    docker_stack_rm(h[0], "app");
}

/// docker's example-voting-app `docker-stack.yml` (the parser's fixture,
/// from github.com/dockersamples/example-voting-app) with each image
/// swapped for the test registry's web image, and nothing else changed.
fn voting_app(image: &str) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../control/tests/fixtures/compose/example-voting-app/docker-stack.yml");
    let original = std::fs::read_to_string(&fixture).expect("the voting app fixture");
    let mut swapped = 0;
    let text: Vec<String> = original
        .lines()
        .map(|line| match line.split_once("image: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                swapped += 1;
                format!("{indent}image: {image}")
            }
            _ => line.to_string(),
        })
        .collect();
    assert_eq!(swapped, 5, "the five services' images");
    text.join("\n") + "\n"
}

#[test]
fn the_public_voting_app_stack_deploys_with_shoal_and_with_docker() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (s, _registry) = setup(&h, h[1]);
    let file = path(&s.file("docker-stack.yml", &voting_app(&s.image)));
    let expected = [
        "vote_db 1/1",
        "vote_redis 1/1",
        "vote_result 1/1",
        "vote_vote 2/2",
        "vote_worker 2/2",
    ];

    let out = cli(h[0], &["stack", "deploy", "-c", &file, "vote"]);
    assert!(out.status.success(), "{}", text(&out));
    // The file uses no key shoal leaves out: no warning.
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Creating network vote_backend\nCreating network vote_frontend\n\
         Creating service vote_db\nCreating service vote_redis\nCreating service vote_result\n\
         Creating service vote_vote\nCreating service vote_worker"
    );
    wait_replicas(h[0], "vote", &expected);
    for (node, port) in [(h[0], 8080), (h[1], 8080), (h[0], 8081), (h[1], 8081)] {
        let url = format!("http://{}:{port}/", node.addr());
        let answered = wait_for(Duration::from_secs(60), || {
            curl(h[1], &url).is_some_and(|page| page.trim() == "from the image")
        });
        assert!(answered, "{url}: {:?}", curl(h[1], &url));
    }
    let by_shoal = specs(h[0], "vote");
    shoal_stack_rm(h[0], "vote");

    let out = docker_ok(h[0], &["stack", "deploy", "-c", &file, "vote"]);
    assert!(out.contains("Creating service vote_worker"), "{out}");
    wait_replicas(h[0], "vote", &expected);
    let by_docker = specs(h[0], "vote");
    assert_eq!(by_shoal.len(), 5, "{by_shoal:?}");
    for (name, spec) in &by_docker {
        assert_eq!(
            by_shoal.get(name),
            Some(spec),
            "{name}: shoal's spec, then docker's"
        );
    }
    docker_stack_rm(h[0], "vote");
}
