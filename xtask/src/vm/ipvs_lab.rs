//! The IPVS client in a guest kernel that has IPVS (this host's has not):
//! `shoal ipvs apply` programs a table of the lab's shape (a published
//! port per protocol with `mh`/`sh`, a firewall-mark service, a VIP with
//! direct routing, long timeouts), `ipvsadm` (the kernel's other client)
//! must show exactly that, a re-apply must change nothing, a removed real
//! server must go, and the kernel's raw answers are captured (and copied to
//! `$SHOAL_IPVS_FIXTURES` when set, to refresh the unit tests' fixtures).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::lab::Ssh;

/// The guest the IPVS checks run in.
const NODE: &str = "node1";
const NODE_ADDR: &str = "198.18.56.11";

/// The table `shoal ipvs apply` programs (backends on the ingress network).
fn table(backends: &[&str]) -> String {
    let dests = |port: u16, forward: &str| -> String {
        backends
            .iter()
            .map(|b| format!(r#"{{"addr": "{b}", "port": {port}, "forward": "{forward}"}}"#))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"{{"timeouts": {{"tcp": 86400, "tcp_fin": 120, "udp": 300}},
 "services": [
  {{"key": {{"addr": {{"protocol": "tcp", "addr": "{NODE_ADDR}", "port": 8080}}}},
    "scheduler": {{"name": "maglev", "fallback": true, "port": true}},
    "destinations": [{}]}},
  {{"key": {{"addr": {{"protocol": "udp", "addr": "{NODE_ADDR}", "port": 9053}}}},
    "scheduler": {{"name": "sourcehash", "fallback": false, "port": true}},
    "destinations": [{}]}},
  {{"key": {{"fwmark": {{"mark": 4096, "ipv6": false}}}},
    "scheduler": {{"name": "maglev"}},
    "destinations": [{}]}},
  {{"key": {{"addr": {{"protocol": "tcp", "addr": "10.0.1.254", "port": 80}}}},
    "scheduler": {{"name": "roundrobin"}},
    "destinations": [{}]}}
 ]}}"#,
        dests(80, "masq"),
        dests(90, "masq"),
        dests(0, "masq"),
        dests(80, "route"),
    )
}

/// Runs the checks, each one line through `record`.
pub fn run(ssh: &Ssh, record: &mut dyn FnMut(&str, Result<String>) -> bool) {
    let kernel = ssh.ok(NODE, "uname -r").unwrap_or_default();
    let _ = ssh.ok(NODE, "shoal ipvs flush");
    let three = ["10.255.0.3", "10.255.0.4", "10.255.0.5"];
    let applied = record(
        "shoal ipvs apply programs the kernel",
        apply(ssh, &table(&three)).and_then(|out| {
            if !out.contains("ipvs: 17 change(s)") {
                bail!("wanted 17 changes (timeouts, 4 services, 12 real servers):\n{out}");
            }
            Ok(format!("17 changes on {kernel}"))
        }),
    );
    if !applied {
        return;
    }
    record(
        "ipvsadm -Ln shows the services",
        ipvsadm_agrees(ssh, &three),
    );
    record(
        "a re-apply changes nothing",
        apply(ssh, &table(&three)).and_then(|out| {
            if !out.contains("ipvs: 0 change(s)") {
                bail!("a re-apply wrote:\n{out}");
            }
            Ok("0 changes".into())
        }),
    );
    record("timeouts set (no 900 s idle cut-off)", timeouts(ssh));
    record("shoal ipvs ls reads the table back", read_back(ssh));
    record(
        "a removed real server goes, the others stay",
        apply(ssh, &table(&three[..2])).and_then(|out| {
            let removed = out.matches("remove real server 10.255.0.5").count();
            if removed != 4 || out.contains("remove real server 10.255.0.3") {
                bail!("wanted 10.255.0.5 removed from the 4 services only:\n{out}");
            }
            let table = ssh.ok(NODE, "ipvsadm -Ln")?;
            if table.contains("10.255.0.5") || table.matches("10.255.0.4").count() != 4 {
                bail!("ipvsadm -Ln after the removal:\n{table}");
            }
            Ok("10.255.0.5 gone from 4 services, ipvsadm agrees".into())
        }),
    );
    record("kernel answers captured", capture(ssh));
    record(
        "shoal ipvs flush",
        ssh.ok(NODE, "shoal ipvs flush && ipvsadm -Ln")
            .and_then(|table| {
                if table.contains("TCP  ") || table.contains("FWM  ") || table.contains("UDP  ") {
                    bail!("services left after the flush:\n{table}");
                }
                Ok("no service left".into())
            }),
    );
}

fn apply(ssh: &Ssh, table: &str) -> Result<String> {
    let script = format!(
        "cat > /tmp/ipvs-table.json <<'EOF'\n{table}\nEOF\nshoal ipvs apply /tmp/ipvs-table.json"
    );
    ssh.ok(NODE, &script)
}

/// What ipvsadm prints holds each service with its scheduler and flags and
/// each real server with its forwarding method.
fn ipvsadm_agrees(ssh: &Ssh, backends: &[&str]) -> Result<String> {
    let table = ssh.ok(NODE, "ipvsadm -Ln")?;
    println!("vm-test [ipvs] {NODE}: ipvsadm -Ln\n{table}");
    let ours = ssh.ok(NODE, "shoal ipvs ls")?;
    println!("vm-test [ipvs] {NODE}: shoal ipvs ls\n{ours}");
    for wanted in [
        format!("TCP  {NODE_ADDR}:8080 mh (mh-fallback,mh-port)"),
        format!("UDP  {NODE_ADDR}:9053 sh (sh-port)"),
        "FWM  4096 mh".to_string(),
        "TCP  10.0.1.254:80 rr".to_string(),
    ] {
        if !table.lines().any(|l| l.trim_end() == wanted) {
            bail!("no line `{wanted}` in ipvsadm -Ln:\n{table}");
        }
    }
    for backend in backends {
        let masq = table
            .lines()
            .filter(|l| l.contains(&format!("-> {backend}:")) && l.contains("Masq"))
            .count();
        let route = table
            .lines()
            .filter(|l| l.contains(&format!("-> {backend}:80")) && l.contains("Route"))
            .count();
        if masq != 3 || route != 1 {
            bail!("{backend}: {masq} masq and {route} route entries, wanted 3 and 1:\n{table}");
        }
    }
    Ok(format!(
        "4 services (mh with both flags, sh-port, FWM, rr), {} real servers each",
        backends.len()
    ))
}

fn timeouts(ssh: &Ssh) -> Result<String> {
    let theirs = ssh.ok(NODE, "ipvsadm -L --timeout")?;
    let ours = ssh.ok(NODE, "shoal ipvs timeout")?;
    let wanted = "Timeout (tcp tcpfin udp): 86400 120 300";
    if theirs.trim() != wanted || ours.trim() != wanted {
        bail!("ipvsadm: `{theirs}`, shoal: `{ours}`, wanted `{wanted}`");
    }
    Ok(wanted.into())
}

fn read_back(ssh: &Ssh) -> Result<String> {
    let json = ssh.ok(NODE, "shoal ipvs ls --format json")?;
    let table: serde_json::Value =
        serde_json::from_str(&json).context("`shoal ipvs ls --format json` is not JSON")?;
    let services = table["services"].as_array().map_or(0, Vec::len);
    let servers: usize = table["services"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|v| v["destinations"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    if services != 4 || servers != 12 {
        bail!("read back {services} services and {servers} real servers:\n{json}");
    }
    Ok("4 services, 12 real servers, as applied".into())
}

/// `shoal ipvs capture` in the guest; the files copied to
/// `$SHOAL_IPVS_FIXTURES` when set.
fn capture(ssh: &Ssh) -> Result<String> {
    let out = ssh.ok(
        NODE,
        "rm -rf /tmp/ipvs-fixtures && shoal ipvs capture /tmp/ipvs-fixtures",
    )?;
    let files = out.lines().filter(|l| l.starts_with("captured")).count();
    if files < 5 {
        bail!("captured only:\n{out}");
    }
    if let Some(dir) = std::env::var_os("SHOAL_IPVS_FIXTURES") {
        fetch_dir(ssh, "/tmp/ipvs-fixtures", Path::new(&dir))?;
        return Ok(format!(
            "{files} files, copied to {}",
            Path::new(&dir).display()
        ));
    }
    Ok(format!("{files} files"))
}

/// Copies a guest directory to this host with tar over ssh.
fn fetch_dir(ssh: &Ssh, remote: &str, local: &Path) -> Result<()> {
    std::fs::create_dir_all(local).with_context(|| format!("cannot create {}", local.display()))?;
    let tar = ssh
        .command(NODE, &format!("tar -C {remote} -cf - ."))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start ssh")?;
    let Some(stdout) = tar.stdout else {
        bail!("no ssh output");
    };
    let status = Command::new("tar")
        .arg("-C")
        .arg(local)
        .arg("-xf")
        .arg("-")
        .stdin(stdout)
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("tar -x into {} failed: {status}", local.display());
    }
    Ok(())
}
