//! Time to apply one service change with N services in place, in the node namespace:
//! iptables the kube-proxy way (a full `iptables-restore --noflush` of a chain of N+1
//! DNAT rules), nftables as one `nft add element` to a DNAT map of N ports, and eBPF
//! as `shoal mesh bench` reports it. Commands are timed from a thread that entered the
//! node, so no `nsenter` exec is counted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

use super::ingress;
use super::mesh::{self, MeshBench};
use super::stats::median;
use super::topology::{checked_output, Ns, Topology, BACKEND_ADDR, SHORT};

/// First service port; services are ports FIRST_PORT.. FIRST_PORT+N.
const FIRST_PORT: u32 = 10_000;
const IPT_CHAIN: &str = "SHOAL-BENCH-UPD";
const NFT_TABLE: &str = "shoal_bench_upd";

/// One row of the second table; an `Err` is shown as `n/a (why)`.
pub struct UpdateRow {
    pub services: usize,
    pub iptables_ns: Result<f64, String>,
    pub nftables_ns: Result<f64, String>,
    pub ebpf: Result<MeshBench, String>,
}

/// Measures each of `counts` with `changes` timed changes per tool (median).
pub fn measure(topo: &Topology, shoal: &Path, counts: &[usize], changes: usize) -> Vec<UpdateRow> {
    counts
        .iter()
        .map(|&services| {
            println!("  {services} services: iptables, nftables, shoal mesh bench");
            let iptables_ns = iptables(topo, services, changes).map_err(|e| format!("{e:#}"));
            let nftables_ns = nftables(topo, services, changes).map_err(|e| format!("{e:#}"));
            let ebpf = mesh::bench(topo, shoal, services)
                .map_err(|e| format!("shoal mesh unavailable: {e:#}"));
            UpdateRow {
                services,
                iptables_ns,
                nftables_ns,
                ebpf,
            }
        })
        .collect()
}

/// Loads `services` DNAT rules, then times `changes` full restores of the chain,
/// each with one more (different) rule. The rules are removed afterwards.
fn iptables(topo: &Topology, services: usize, changes: usize) -> Result<f64> {
    let dir = topo.run_dir();
    let base = dir.join("upd-base.iptables");
    write(&base, &iptables_chain(services, None))?;
    let changed: Vec<_> = (0..changes)
        .map(|i| {
            let file = dir.join(format!("upd-change-{i}.iptables"));
            write(&file, &iptables_chain(services, Some(services + i))).map(|_| file)
        })
        .collect::<Result<_>>()?;
    let timed = topo.in_netns(Ns::Node, || -> Result<Vec<f64>> {
        run_timed(Command::new("iptables-restore").arg("--noflush").arg(&base))?;
        changed
            .iter()
            .map(|file| run_timed(Command::new("iptables-restore").arg("--noflush").arg(file)))
            .collect()
    });
    let cleaned = topo.run(Ns::Node, SHORT, "nft", &["flush", "ruleset"]);
    let times = timed??;
    cleaned?;
    median(&times).context("no change was timed")
}

/// Loads a DNAT map of `services` ports, then times `changes` single
/// `nft add element` runs. The table is removed afterwards.
fn nftables(topo: &Topology, services: usize, changes: usize) -> Result<f64> {
    let file = topo.run_dir().join("upd-base.nft");
    write(&file, &nft_map(services))?;
    let file = file.display().to_string();
    topo.run(Ns::Node, SHORT, "nft", &["-f", &file])?;
    let timed = topo.in_netns(Ns::Node, || -> Result<Vec<f64>> {
        (0..changes)
            .map(|i| {
                let element = format!("{{ {} : {BACKEND_ADDR} . 80 }}", port(services + i));
                run_timed(Command::new("nft").args([
                    "add",
                    "element",
                    "ip",
                    NFT_TABLE,
                    "port_dnat",
                    &element,
                ]))
            })
            .collect()
    });
    let cleaned = topo.run(Ns::Node, SHORT, "nft", &["flush", "ruleset"]);
    let times = timed??;
    cleaned?;
    median(&times).context("no change was timed")
}

/// Wall time of `cmd` from spawn to exit, in ns; fails unless it exits 0.
fn run_timed(cmd: &mut Command) -> Result<f64> {
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    checked_output(cmd)?;
    Ok(started.elapsed().as_nanos() as f64)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn port(service: usize) -> u32 {
    FIRST_PORT + service as u32
}

/// A restore of the whole chain: `services` DNAT rules, plus service `extra` if given.
/// The chain's declaration flushes it first, as kube-proxy's restores do.
fn iptables_chain(services: usize, extra: Option<usize>) -> String {
    let mut text = format!("*nat\n:{IPT_CHAIN} - [0:0]\n");
    for service in (0..services).chain(extra) {
        text.push_str(&format!(
            "-A {IPT_CHAIN} -p tcp -m tcp --dport {} -j DNAT --to-destination {BACKEND_ADDR}:80\n",
            port(service)
        ));
    }
    text.push_str("COMMIT\n");
    text
}

/// A table whose prerouting chain looks the port up in a DNAT map of `services`.
fn nft_map(services: usize) -> String {
    let elements: Vec<String> = (0..services)
        .map(|s| format!("{} : {BACKEND_ADDR} . 80", port(s)))
        .collect();
    let node = ingress::Ingress::Nftables.target().0;
    format!(
        "table ip {NFT_TABLE} {{
    map port_dnat {{
        type inet_service : ipv4_addr . inet_service
        elements = {{ {} }}
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {node} dnat ip to tcp dport map @port_dnat
    }}
}}
",
        elements.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_restores_the_whole_chain_plus_one_rule() {
        let base = iptables_chain(3, None);
        assert_eq!(base.matches(" -j DNAT ").count(), 3);
        let changed = iptables_chain(3, Some(3));
        assert_eq!(changed.matches(" -j DNAT ").count(), 4);
        assert!(changed.contains("--dport 10003 "));
        assert!(changed.starts_with("*nat\n:SHOAL-BENCH-UPD - [0:0]\n"));
        assert!(changed.ends_with("COMMIT\n"));
    }

    #[test]
    fn the_map_holds_one_element_per_service() {
        let text = nft_map(1000);
        assert_eq!(text.matches(" : 198.19.1.2 . 80").count(), 1000);
        assert!(text.contains("10999 : 198.19.1.2 . 80"));
        assert!(!text.contains("11000 :"));
    }
}
