//! `cargo xtask bench`: on one namespaced topology (client -> node -> backend), the
//! five ways into a published port measured side by side in one run (direct, shoal's
//! eBPF mesh attached with TCX and with clsact + cls_bpf, nftables DNAT, iptables
//! DNAT), then the time each takes to apply one service change at 1k and 10k
//! services. Only one path is in the node at a time.
//! It must never touch anything outside its own `shoal-bench-<pid>-*` namespaces,
//! and removes them whatever happens.

mod backend;
mod ingress;
mod load;
mod mesh;
mod report;
mod stats;
mod teardown;
mod topology;
mod updates;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{deps, ebpf, run, suite};
use ingress::Ingress;
use report::{PathResults, Sample};
use topology::Topology;

/// Service counts of the second table.
const SERVICE_COUNTS: &[usize] = &[1_000, 10_000];
/// Timed changes per tool and count (the median is shown).
const CHANGES: usize = 5;
/// Length of the unmeasured first wrk and iperf3 runs.
const WARM_UP_SECONDS: u32 = 1;

/// `cargo xtask bench [--rounds N] [--seconds S] [--shoal PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Rounds over the paths, interleaved; each path's medians are shown.
    pub rounds: usize,
    /// Length of each wrk and each iperf3 run.
    pub seconds: u32,
    /// A `shoal` binary to measure instead of building this tree's (another
    /// commit's, to compare before and after a change).
    pub shoal: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rounds: 3,
            seconds: 5,
            shoal: None,
        }
    }
}

impl Options {
    pub const USAGE: &'static str =
        "usage: cargo xtask bench [--rounds N] [--seconds S] [--shoal PATH]";

    pub fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Options::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("`{flag}` needs a value; {}", Self::USAGE))?;
            match flag.as_str() {
                "--rounds" => opts.rounds = positive(flag, value)?,
                "--seconds" => opts.seconds = positive(flag, value)?,
                "--shoal" => opts.shoal = Some(PathBuf::from(value)),
                other => bail!("unknown option `{other}`; {}", Self::USAGE),
            }
        }
        Ok(opts)
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(flag: &str, value: &str) -> Result<T> {
    match value.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => bail!("`{flag}` takes a positive number, got `{value}`"),
    }
}

/// Builds what is needed, then measures and prints both tables.
pub fn run(root: &Path, opts: Options) -> Result<()> {
    if !run::is_root()? {
        bail!(
            "`cargo xtask bench` needs root: it creates network namespaces, netfilter rules \
             and eBPF programs. Run it as root."
        );
    }
    deps::install_all()?;
    let shoal = match &opts.shoal {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => bail!("--shoal {}: no such file", path.display()),
        None => {
            ebpf::build(root)?;
            build_shoal(root)?
        }
    };
    println!("bench: measuring {}", shoal.display());

    let started = Instant::now();
    let mut topo = Topology::create()?;
    println!(
        "\nbench: namespaces {}-{{client,node,backend}}",
        topo.prefix()
    );
    backend::start(&mut topo)?;

    let results = measure_paths(&topo, &shoal, &opts);
    println!(
        "\n== ingress paths: {} round(s), paths interleaved; medians; ± = (max-min)/median ==",
        opts.rounds
    );
    println!("   {}", load::describe(opts.seconds));
    println!(
        "   backend nginx `return 200` + iperf3 -s; {} in the node",
        tool_versions(&topo)
    );
    print!("{}", report::paths_table(&results, opts.rounds));

    println!("\n== time to apply one service change ==");
    let rows = updates::measure(&topo, &shoal, SERVICE_COUNTS, CHANGES);
    print!("{}", report::updates_table(&rows, CHANGES));

    drop(topo);
    println!("bench: done in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `cargo build --release -p shoal-agent --bin shoal` with rustup's cargo.
fn build_shoal(root: &Path) -> Result<PathBuf> {
    let mut cmd = Command::new(suite::workspace_cargo());
    cmd.current_dir(root)
        .args(["build", "--release", "-p", "shoal-agent", "--bin", "shoal"]);
    // `cargo run` gave this process xtask's CARGO_PKG_*/CARGO_MANIFEST_*; build
    // scripts that watch them (ring's) would rebuild whenever the release build
    // alternates between here and a shell.
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || name == "CARGO_PRIMARY_PACKAGE"
        {
            cmd.env_remove(&var);
        }
    }
    run::run(&mut cmd)?;
    let shoal = suite::target_dir(root).join("release").join("shoal");
    if !shoal.is_file() {
        bail!("the build succeeded but {} does not exist", shoal.display());
    }
    Ok(shoal)
}

/// Every round runs every path once, each round starting one path later than the
/// last, so no path always runs first; a path that failed in one round is tried again
/// in the next, except eBPF when shoal has no mesh command at all. An unmeasured
/// warm-up on the direct path comes first.
fn measure_paths(topo: &Topology, shoal: &Path, opts: &Options) -> Vec<(Ingress, PathResults)> {
    println!("warm-up: direct, {WARM_UP_SECONDS}s, not counted");
    let (addr, http_port, iperf_port) = Ingress::Direct.target();
    if let Err(e) = load::wrk(topo, addr, http_port, WARM_UP_SECONDS)
        .and_then(|_| load::iperf3(topo, addr, iperf_port, WARM_UP_SECONDS))
    {
        println!("  warm-up failed: {e:#}");
    }
    let mut results: Vec<(Ingress, PathResults)> = Ingress::ALL
        .iter()
        .map(|&ingress| (ingress, PathResults::default()))
        .collect();
    for round in 0..opts.rounds {
        for i in 0..results.len() {
            let (ingress, result) = &mut results[(round + i) % Ingress::ALL.len()];
            let unavailable = result.samples.is_empty()
                && result
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with(MESH_UNAVAILABLE));
            if unavailable {
                continue;
            }
            println!("round {}/{}: {}", round + 1, opts.rounds, ingress.name());
            match measure_path(topo, shoal, *ingress, opts.seconds) {
                Ok(sample) => result.samples.push(sample),
                Err(e) => {
                    println!("  failed: {e}");
                    result.error = Some(e);
                }
            }
        }
    }
    results
}

const MESH_UNAVAILABLE: &str = "shoal mesh unavailable";

/// Checks the node is clean, enables `ingress`, checks the published port answers,
/// runs wrk then iperf3, and disables it again (always).
fn measure_path(
    topo: &Topology,
    shoal: &Path,
    ingress: Ingress,
    seconds: u32,
) -> Result<Sample, String> {
    ingress::ensure_node_clean(topo).map_err(|e| format!("node not clean: {e:#}"))?;
    let measured = ingress
        .enable(topo, shoal)
        .map_err(|e| {
            if ingress.is_shoal() {
                format!("{MESH_UNAVAILABLE}: {e:#}")
            } else {
                format!("enabling {}: {e:#}", ingress.name())
            }
        })
        .and_then(|()| run_load(topo, ingress, seconds).map_err(|e| format!("{e:#}")));
    let disabled = ingress.disable(topo, shoal);
    match (measured, disabled) {
        (Ok(sample), Ok(())) => Ok(sample),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(format!("removing {}: {e:#}", ingress.name())),
    }
}

fn run_load(topo: &Topology, ingress: Ingress, seconds: u32) -> Result<Sample> {
    let (addr, http_port, iperf_port) = ingress.target();
    backend::wait_for(std::time::Duration::from_secs(3), || {
        backend::http_ok(topo, addr, http_port)
    })
    .with_context(|| format!("no HTTP answer on {addr}:{http_port}"))?;
    let http = load::wrk(topo, addr, http_port, seconds)?;
    let gbit_per_sec = load::iperf3(topo, addr, iperf_port, seconds)?;
    println!(
        "  {:.0} req/s, p99 {:.2} ms, {gbit_per_sec:.2} Gbit/s",
        http.requests_per_sec,
        http.p99_ns as f64 / 1e6
    );
    Ok(Sample { http, gbit_per_sec })
}

/// `nft v1.0.6, iptables v1.8.9 (nf_tables)` as the node runs them.
fn tool_versions(topo: &Topology) -> String {
    let version = |prog: &str| {
        topo.run(topology::Ns::Node, topology::SHORT, prog, &["--version"])
            .map(|out| {
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines().next().unwrap_or_default().trim().to_owned()
            })
            .unwrap_or_else(|e| format!("{prog}: {e:#}"))
    };
    format!("{}, {}", version("nft"), version("iptables"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_default_and_parse() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        assert_eq!(
            Options::parse(&args(&["--rounds", "1", "--seconds", "2"])).unwrap(),
            Options {
                rounds: 1,
                seconds: 2,
                shoal: None
            }
        );
        assert!(Options::parse(&args(&["--rounds"])).is_err());
        assert!(Options::parse(&args(&["--rounds", "0"])).is_err());
        assert!(Options::parse(&args(&["--fast", "1"])).is_err());
    }
}
