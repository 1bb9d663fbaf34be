//! `cargo xtask demo`: the main job, on this one machine. Three hosts made of
//! network namespaces on a shared underlay bridge each run the real `shoal`
//! binary, which builds two VXLAN overlay networks; then sandboxes ping and
//! talk TCP across hosts, and the networks are shown to be isolated.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use shoal_tests::overlay::Topology;
use shoal_tests::{Host, Underlay};

use crate::{deps, run, suite};

const NETS: &[(&str, u32, u8)] = &[("red", 4096, 10), ("blue", 4097, 20)];

/// Runs the demo; with `keep`, leaves the hosts up and says how to use them
/// and tear them down.
pub fn run(root: &Path, keep: bool) -> Result<()> {
    if !run::is_root()? {
        bail!("`cargo xtask demo` needs root: it creates network namespaces, bridges and VXLAN devices");
    }
    deps::install_all()?;
    let cargo = suite::workspace_cargo();
    run::run(Command::new(&cargo).current_dir(root).args([
        "build",
        "-p",
        "shoal-agent",
        "--bin",
        "shoal",
    ]))?;
    let shoal = suite::target_dir(root).join("debug").join("shoal");
    std::env::set_var("SHOAL_BIN", &shoal);

    println!("\n== shoal demo: a VXLAN overlay across 3 hosts made of network namespaces ==");
    let ul = Underlay::builder()
        .hosts(3)
        .mtu(1500)
        .build()
        .context("creating the hosts")?;
    for h in ul.hosts() {
        println!(
            "  host {} : netns {}, underlay {} on {}, MTU 1500",
            h.name(),
            h.netns(),
            h.addr(),
            h.iface()
        );
    }
    let topo = Topology::new(ul.hosts(), 1500, NETS);
    let everyone: Vec<usize> = (0..ul.hosts().len()).collect();

    println!("\n-- each host runs `shoal overlay apply` with networks red (VNI 4096) and blue (VNI 4097)");
    for (i, h) in ul.hosts().iter().enumerate() {
        let t = Instant::now();
        let report = Topology::apply(h, &topo.spec(i, &everyone))?;
        println!(
            "  {}: {} changes, {} netlink requests, {:.1} ms",
            h.name(),
            report.changes.len(),
            report.netlink_requests,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    println!("-- applying the same spec again (level-triggered: nothing to do)");
    for (i, h) in ul.hosts().iter().enumerate() {
        let report = Topology::apply(h, &topo.spec(i, &everyone))?;
        println!(
            "  {}: {} changes, {} netlink requests",
            h.name(),
            report.changes.len(),
            report.netlink_requests
        );
    }

    println!("\n-- ping between sandboxes on different hosts, over VXLAN");
    let mut failures = 0;
    for (net, _, _) in NETS {
        for from in 0..3 {
            for to in (0..3).filter(|t| *t != from) {
                let target = topo.sandbox_ip(net, to);
                let rtt = ping(ul.host(from), net, from, &target.to_string());
                let shown = rtt.clone().unwrap_or_else(|| "FAILED".into());
                println!(
                    "  {:<8} ({}) -> {:<8} ({}) on {}: {shown}",
                    Topology::sandbox_id(net, from),
                    topo.sandbox_ip(net, from),
                    Topology::sandbox_id(net, to),
                    target,
                    ul.host(to).name()
                );
                failures += usize::from(rtt.is_none());
            }
        }
    }

    println!("\n-- isolation: red cannot reach blue");
    let blue = topo.sandbox_ip("blue", 1).to_string();
    let crossed = ping(ul.host(0), "red", 0, &blue);
    println!(
        "  red-h1 -> blue-h2 ({blue}): {}",
        crossed
            .as_deref()
            .map_or("unreachable, as it should be", |_| "REACHED")
    );
    failures += usize::from(crossed.is_some());

    println!("\n-- what h1's red network holds (`bridge fdb show dev vx-4096`; red-h1's eth0)");
    let ns = Topology::network_ns(ul.host(0), "red");
    print_indented(&Topology::run_in(&ns, "bridge", &["fdb", "show", "dev", "vx-4096"])?.stdout);
    let sb = Topology::sandbox_ns(ul.host(0), "red-h1");
    print_indented(&Topology::run_in(&sb, "ip", &["-br", "link", "show", "eth0"])?.stdout);
    print_indented(&Topology::run_in(&sb, "ip", &["-br", "addr", "show", "eth0"])?.stdout);

    if keep {
        let h1 = ul.host(0);
        println!(
            "\nThe hosts stay up. Try, as root:\n  \
             nsenter --net={} {} --run-dir {} overlay show\n  \
             nsenter --net={} {} --run-dir {} overlay exec red-h1 -- ping -c 3 {}\n\
             Tear everything down with:\n  cargo xtask clean {}",
            h1.netns_path().display(),
            shoal.display(),
            h1.run_dir().display(),
            h1.netns_path().display(),
            shoal.display(),
            h1.run_dir().display(),
            topo.sandbox_ip("red", 2),
            ul.prefix(),
        );
        // Deliberately skip the underlay's cleanup; `cargo xtask clean` does it.
        std::mem::forget(ul);
    } else {
        drop(ul);
        println!("\nTorn down (run `cargo xtask demo --keep` to keep the hosts up and explore).");
    }
    if failures > 0 {
        bail!("{failures} demo checks failed");
    }
    Ok(())
}

/// Round-trip time of one ping from a sandbox, with a few bounded tries.
fn ping(host: &Host, network: &str, index: usize, target: &str) -> Option<String> {
    let ns = Topology::sandbox_ns(host, &Topology::sandbox_id(network, index));
    (0..3).find_map(|_| {
        let out = Topology::run_in(&ns, "ping", &["-c", "1", "-W", "1", target]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        out.status.success().then(|| {
            text.split("time=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .map_or("ok".into(), |t| format!("{t} ms"))
        })
    })
}

fn print_indented(bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        println!("  {line}");
    }
}
