//! The real `docker` CLI (Debian's 20.10, API 1.41; never dockerd) run
//! against a test host's agent through its `docker.sock`: one runner with
//! a time limit and optional stdin, the success/failure wrappers, and a
//! swarm formed with `docker swarm init|join-token|join`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::swarm::{cli_ok, text};
use crate::Host;

/// How long one docker command may run: a progress display that never
/// converges fails the test.
const LIMIT_SECS: &str = "120";

/// The docker client: `SHOAL_DOCKER_CLI`, else the one `cargo xtask
/// install-deps` unpacks, else `docker` on PATH.
pub fn docker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOAL_DOCKER_CLI") {
        return PathBuf::from(path);
    }
    let unpacked = PathBuf::from("/opt/docker-cli/docker");
    if unpacked.exists() {
        return unpacked;
    }
    PathBuf::from("docker")
}

/// `docker ARGS` against `host`'s agent with `input` (if any) on stdin,
/// killed after [`LIMIT_SECS`].
pub fn docker_with_input(host: &Host, args: &[&str], input: Option<&str>) -> Output {
    let config = host.run_dir().join("docker-config");
    let _ = std::fs::create_dir_all(&config);
    let mut command = Command::new("timeout");
    command
        .arg(LIMIT_SECS)
        .arg(docker_bin())
        .env(
            "DOCKER_HOST",
            format!("unix://{}", host.run_dir().join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", &config)
        .env_remove("DOCKER_CONTEXT")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker_bin().display()));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).expect("docker's stdin");
    }
    child.wait_with_output().expect("docker ends")
}

/// `docker ARGS` against `host`'s agent.
pub fn docker(host: &Host, args: &[&str]) -> Output {
    docker_with_input(host, args, None)
}

/// `docker ARGS` that must succeed; its stdout, trimmed.
pub fn docker_ok(host: &Host, args: &[&str]) -> String {
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

/// `docker ARGS` that must fail; its stderr, trimmed.
pub fn docker_err(host: &Host, args: &[&str]) -> String {
    let out = docker(host, args);
    assert!(
        !out.status.success(),
        "`docker {}` succeeded: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// A swarm made with the docker CLI alone: `swarm init` on `first` (its
/// agent already running), then `swarm join` with the worker token on
/// each of `workers`, checking Docker's words and that shoal shows the
/// same token.
pub fn docker_swarm(first: &Host, workers: &[&Host]) {
    let addr = first.addr().to_string();
    let out = docker_ok(first, &["swarm", "init", "--advertise-addr", &addr]);
    assert!(out.contains("Swarm initialized: current node ("), "{out}");
    let token = docker_ok(first, &["swarm", "join-token", "-q", "worker"]);
    assert!(token.starts_with("SWMTKN-1-"), "{token}");
    assert_eq!(
        token,
        cli_ok(first, &["swarm", "join-token", "-q", "worker"]),
        "docker and shoal show the same token"
    );
    let manager = format!("{addr}:2377");
    for host in workers {
        let out = docker_ok(host, &["swarm", "join", "--token", &token, &manager]);
        assert!(
            out.contains("This node joined a swarm as a worker"),
            "{out}"
        );
    }
}

/// The lines of `text`, trailing blanks trimmed, sorted.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    lines.sort();
    lines
}
