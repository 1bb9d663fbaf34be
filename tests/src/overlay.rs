//! Overlay fixtures shared by the end-to-end tests and `cargo xtask demo`:
//! networks with one sandbox per host on each, the spec each host applies
//! with `shoal overlay apply`, and ways to run commands inside what the agent
//! built (sandboxes and network namespaces live in the host's run dir).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{HarnessError, Host, Result};

/// One overlay network of the fixture: subnet `10.<octet>.0.0/24`.
#[derive(Clone, Debug)]
pub struct OverlayNet {
    pub id: String,
    pub vni: u32,
    pub octet: u8,
}

/// Networks spanning every host, with sandbox `<net>-h<N>` on host N.
#[derive(Clone, Debug)]
pub struct Topology {
    pub networks: Vec<OverlayNet>,
    /// Each host's underlay address, which is its VTEP.
    pub vteps: Vec<Ipv4Addr>,
    pub underlay_mtu: u32,
}

/// What `shoal overlay apply --format json` reported.
#[derive(Debug, Deserialize)]
pub struct ApplyReport {
    pub changes: Vec<Value>,
    pub netlink_requests: u64,
}

impl Topology {
    pub fn new(hosts: &[Host], underlay_mtu: u32, networks: &[(&str, u32, u8)]) -> Self {
        Topology {
            networks: networks
                .iter()
                .map(|(id, vni, octet)| OverlayNet {
                    id: id.to_string(),
                    vni: *vni,
                    octet: *octet,
                })
                .collect(),
            vteps: hosts.iter().map(Host::addr).collect(),
            underlay_mtu,
        }
    }

    fn net(&self, network: &str) -> &OverlayNet {
        self.networks
            .iter()
            .find(|n| n.id == network)
            .unwrap_or_else(|| panic!("no network {network}"))
    }

    /// Address of the sandbox on `network` at host index `host`.
    pub fn sandbox_ip(&self, network: &str, host: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net(network).octet, 0, 10 + host as u8)
    }

    pub fn sandbox_id(network: &str, host: usize) -> String {
        format!("{network}-h{}", host + 1)
    }

    /// The spec host `host` applies, knowing the endpoints of `visible` hosts
    /// (its own sandboxes are always there).
    pub fn spec(&self, host: usize, visible: &[usize]) -> Value {
        let networks: Vec<Value> = self
            .networks
            .iter()
            .map(|n| {
                json!({"id": n.id, "vni": n.vni, "subnet": format!("10.{}.0.0/24", n.octet),
                       "gateway": format!("10.{}.0.1", n.octet)})
            })
            .collect();
        let mut endpoints = Vec::new();
        for n in &self.networks {
            for &h in visible {
                let ip = self.sandbox_ip(&n.id, h);
                let o = ip.octets();
                endpoints.push(json!({"network": n.id, "ip": ip,
                    "mac": format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
                    "vtep": self.vteps[h]}));
            }
        }
        let sandboxes: Vec<Value> = self
            .networks
            .iter()
            .map(|n| {
                json!({"id": Self::sandbox_id(&n.id, host),
                            "attachments": [{"network": n.id, "ip": self.sandbox_ip(&n.id, host)}]})
            })
            .collect();
        json!({"vtep": self.vteps[host], "underlay_mtu": self.underlay_mtu,
               "networks": networks, "endpoints": endpoints, "sandboxes": sandboxes})
    }

    /// Writes `spec` into the host's run dir and applies it with the real binary.
    pub fn apply(host: &Host, spec: &Value) -> Result<ApplyReport> {
        let file = host.run_dir().join("overlay.json");
        std::fs::create_dir_all(host.run_dir())
            .and_then(|()| std::fs::write(&file, spec.to_string()))
            .map_err(|source| HarnessError::Io {
                action: "write",
                path: file.clone(),
                source,
            })?;
        let path = file.to_string_lossy().to_string();
        let out = host.shoal(&["overlay", "apply", "--format", "json", &path])?;
        let failed = |stderr: String| HarnessError::CommandFailed {
            command: format!("shoal overlay apply {path}"),
            status: out.status,
            stderr,
        };
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| failed(format!("unreadable report: {e}")))
    }

    /// Namespace file of a sandbox the agent on `host` made.
    pub fn sandbox_ns(host: &Host, sandbox: &str) -> PathBuf {
        host.run_dir().join("netns").join(format!("sb-{sandbox}"))
    }

    /// Namespace file of a network on `host`.
    pub fn network_ns(host: &Host, network: &str) -> PathBuf {
        host.run_dir().join("netns").join(format!("ov-{network}"))
    }

    /// Runs a command inside a namespace file with `nsenter --net=`.
    pub fn run_in(ns: &std::path::Path, program: &str, args: &[&str]) -> Result<Output> {
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg(program)
            .args(args)
            .output()
            .map_err(|source| HarnessError::Spawn {
                command: format!("nsenter --net={} {program}", ns.display()),
                program: program.to_string(),
                source,
            })
    }
}
