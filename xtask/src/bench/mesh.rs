//! The `shoal mesh` commands the bench drives in the node namespace: `apply --spec`
//! (attach the ingress programs, program the published ports), `reset` (remove them)
//! and `bench --services N` (shoal's own timing of one service change and of one
//! packet through BPF_PROG_TEST_RUN). Their errors are one line, for a table cell.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::teardown;
use super::topology::{first_lines, output, Ns, Topology, BACKEND_ADDR, SHORT};
use super::topology::{NODE_BACKEND_IFACE, NODE_UNDERLAY_IFACE};

/// Bound on one `shoal mesh bench` (10k services included).
const BENCH_LIMIT: Duration = Duration::from_secs(180);

/// What `shoal mesh bench --services N` prints.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct MeshBench {
    pub services: u64,
    /// Median ns to apply one service change.
    pub update_ns: f64,
    /// ns per packet through the ingress program (BPF_PROG_TEST_RUN).
    pub test_run_ns_per_packet: f64,
}

/// `shoal mesh apply --spec FILE [--attach ATTACH]` publishing `ports` ((port, backend
/// port), TCP) to the backend; `attach`: `tc` to force clsact + cls_bpf, none for the
/// kernel's choice.
pub fn apply(
    topo: &Topology,
    shoal: &Path,
    ports: &[(u16, u16)],
    attach: Option<&str>,
) -> Result<()> {
    let mac = topo.backend_mac()?;
    let file = topo.run_dir().join("mesh.json");
    std::fs::write(&file, spec(&mac, ports).to_string())
        .with_context(|| format!("cannot write {}", file.display()))?;
    teardown::set_mesh_applied(Some(shoal));
    let file = file.display().to_string();
    let mut args = vec!["apply", "--spec", file.as_str()];
    if let Some(attach) = attach {
        args.extend(["--attach", attach]);
    }
    shoal_mesh(topo, shoal, SHORT, &args).map(|_| ())
}

/// `shoal mesh reset`. Whatever it answers, the teardown does not run it again: a
/// second reset would fail the same way, and the row reports the failure.
pub fn reset(topo: &Topology, shoal: &Path) -> Result<()> {
    let reset = shoal_mesh(topo, shoal, SHORT, &["reset"]);
    teardown::set_mesh_applied(None);
    reset.map(|_| ())
}

/// `shoal mesh bench --services N`.
pub fn bench(topo: &Topology, shoal: &Path, services: usize) -> Result<MeshBench> {
    let n = services.to_string();
    let stdout = shoal_mesh(topo, shoal, BENCH_LIMIT, &["bench", "--services", &n])?;
    parse_bench(&stdout)
}

/// Runs `shoal mesh ARGS` in the node; its stdout, or an error made of the first
/// line of its stderr.
fn shoal_mesh(topo: &Topology, shoal: &Path, limit: Duration, args: &[&str]) -> Result<String> {
    let mut cmd = topo.command(Ns::Node, limit, shoal);
    cmd.arg("mesh").args(args);
    let out = output(&mut cmd)?;
    if !out.status.success() {
        let why = first_lines(&out.stderr);
        let why = why.split(" / ").next().unwrap_or_default();
        bail!("{}", why.strip_prefix("error: ").unwrap_or(why));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last line of `stdout` that is a JSON object.
fn parse_bench(stdout: &str) -> Result<MeshBench> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|line| line.starts_with('{'))
        .find_map(|line| serde_json::from_str(line).ok())
        .with_context(|| {
            format!("`shoal mesh bench` printed no {{\"services\", \"update_ns\", \"test_run_ns_per_packet\"}} object: {stdout:?}")
        })
}

fn spec(backend_mac: &str, ports: &[(u16, u16)]) -> serde_json::Value {
    let services: Vec<serde_json::Value> = ports
        .iter()
        .map(|(port, target)| {
            serde_json::json!({
                "protocol": "tcp",
                "port": port,
                "backends": [{"ip": BACKEND_ADDR.to_string(), "port": target, "mac": backend_mac}],
            })
        })
        .collect();
    serde_json::json!({
        "underlay": [NODE_UNDERLAY_IFACE],
        "link": NODE_BACKEND_IFACE,
        "services": services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_publishes_each_port_to_the_backend() {
        let spec = spec("02:00:00:00:00:01", &[(8080, 80), (5201, 5201)]);
        assert_eq!(spec["underlay"], serde_json::json!(["eth0"]));
        assert_eq!(spec["link"], "vb0");
        let services = spec["services"].as_array().unwrap();
        assert_eq!(services.len(), 2);
        assert_eq!(services[0]["protocol"], "tcp");
        assert_eq!(services[0]["port"], 8080);
        assert_eq!(services[0]["backends"][0]["port"], 80);
        assert_eq!(services[0]["backends"][0]["ip"], "198.19.1.2");
        assert_eq!(services[0]["backends"][0]["mac"], "02:00:00:00:00:01");
        assert_eq!(services[1]["port"], 5201);
        assert_eq!(services[1]["backends"][0]["port"], 5201);
    }

    #[test]
    fn bench_output_is_the_last_json_line() {
        let out = "loading...\n{\"services\": 1000, \"update_ns\": 2100, \"test_run_ns_per_packet\": 41.5}\n";
        assert_eq!(
            parse_bench(out).unwrap(),
            MeshBench {
                services: 1000,
                update_ns: 2100.0,
                test_run_ns_per_packet: 41.5
            }
        );
        assert!(parse_bench("no json here").is_err());
    }
}
