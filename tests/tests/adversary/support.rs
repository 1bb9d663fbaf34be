//! What the adversary tests share: running `shoal-adversary` in a host, a
//! node's identity from its state dir, an agent's file descriptors and
//! memory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use shoal_tests::swarm::{cli, state_dir, wait_for};
use shoal_tests::Host;

/// The attacker's tool: `$SHOAL_ADVERSARY_BIN`, else beside `shoal`.
pub fn adversary_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SHOAL_ADVERSARY_BIN") {
        return PathBuf::from(bin);
    }
    let bin = shoal_tests::shoal_bin().with_file_name("shoal-adversary");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p shoal-adversary` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// Runs `shoal-adversary ARGS` in `host` and returns the JSON line it prints.
pub fn adversary(host: &Host, args: &[&str]) -> Value {
    let out = host
        .exec(adversary_bin(), args)
        .unwrap_or_else(|e| panic!("cannot run shoal-adversary: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shoal-adversary {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("shoal-adversary printed no JSON ({e}): {stdout}"))
}

/// `node.json` of a host's agent.
pub fn identity(host: &Host) -> Value {
    let path = state_dir(host).join("node.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn node_id(host: &Host) -> String {
    identity(host)["node_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no node id", host.name()))
        .to_string()
}

pub fn raft_id(host: &Host) -> u64 {
    identity(host)["raft_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{} has no Raft id", host.name()))
}

/// The cluster's CA certificate, from a member's state dir.
pub fn ca(host: &Host) -> PathBuf {
    state_dir(host).join("certs/ca.pem")
}

/// A copy of `host`'s current certificate and key, kept under `name` in the
/// host's run dir (later renewals replace the state dir's).
pub fn save_identity(host: &Host, name: &str) -> (PathBuf, PathBuf) {
    let certs = state_dir(host).join("certs");
    let cert = host.run_dir().join(format!("{name}.pem"));
    let key = host.run_dir().join(format!("{name}.key"));
    std::fs::copy(certs.join("node.pem"), &cert).expect("copy the certificate");
    std::fs::copy(certs.join("node.key"), &key).expect("copy the key");
    (cert, key)
}

/// TLS arguments of `shoal-adversary` for `addr`, with an identity or none.
pub fn tls<'a>(addr: &'a str, ca: &'a Path, who: Option<&'a (PathBuf, PathBuf)>) -> Vec<String> {
    let mut args = vec![
        "--addr".to_string(),
        addr.to_string(),
        "--ca".into(),
        ca.display().to_string(),
    ];
    if let Some((cert, key)) = who {
        args.extend([
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    args
}

/// Runs a Raft or Control command of `shoal-adversary` with `tls` args.
pub fn call(host: &Host, command: &str, tls: &[String], extra: &[&str]) -> Value {
    let mut args: Vec<&str> = vec![command];
    args.extend(tls.iter().map(String::as_str));
    args.extend_from_slice(extra);
    adversary(host, &args)
}

/// Asserts a call was refused for who made it (not for a malformed message).
pub fn assert_refused(outcome: &Value, what: &str) {
    assert_eq!(outcome["ok"], false, "{what} was accepted: {outcome}");
    let code = outcome["code"].as_str().unwrap_or_default();
    assert!(
        code == "Unauthenticated" || code == "PermissionDenied",
        "{what} was refused for another reason: {outcome}"
    );
}

/// Open file descriptors of a process.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `shoal members --format json` on `host`; `Null` if it fails.
pub fn members(host: &Host) -> Value {
    let out = cli(host, &["members", "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until every host's gossip sees `n` members alive.
pub fn wait_gossip(hosts: &[&Host], n: usize) {
    let alive = |h: &Host| {
        members(h)["gossip"]["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["state"] == "alive").count())
    };
    assert!(
        wait_for(Duration::from_secs(30), || hosts
            .iter()
            .all(|h| alive(h) == n)),
        "gossip never saw {n} members alive everywhere"
    );
}

/// `shoal endpoint ls --format json` on `host`.
pub fn endpoints(host: &Host) -> Vec<Value> {
    let out = cli(host, &["endpoint", "ls", "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}
