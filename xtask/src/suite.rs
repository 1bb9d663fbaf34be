//! `cargo xtask test` and `cargo xtask clean`: the style gates (`cargo fmt
//! --check`, clippy with warnings denied), the whole suite as root, and the
//! check that it left no network namespace behind. The check looks only at this
//! run's namespaces (its test processes carry a run tag into the harness's names):
//! another run going on beside it on a shared machine is never blamed or touched;
//! `cargo xtask clean` removes every run's leftovers.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{deps, ebpf, run};

/// Prefix of every network namespace the harness creates.
const NETNS_PREFIX: &str = shoal_tests::NAME_PREFIX;
/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Fails unless the code is formatted and clippy finds nothing.
pub fn lint(root: &Path) -> Result<()> {
    let cargo = workspace_cargo();
    run::run(
        Command::new(&cargo)
            .current_dir(root)
            .args(["fmt", "--all", "--", "--check"]),
    )
    .context("`cargo fmt --check` found unformatted code: run `cargo fmt`")?;
    run::run(Command::new(&cargo).current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found problems")?;
    Ok(())
}

/// Checks the style gates, installs what is missing, builds the eBPF object
/// and the workspace, runs every test, then fails if any test namespace is
/// left.
pub fn test(root: &Path) -> Result<()> {
    let started = Instant::now();
    if !run::is_root()? {
        bail!(
            "`cargo xtask test` needs root: the tests create network namespaces, veth pairs \
             and eBPF programs. Run it as root."
        );
    }
    lint(root)?;
    deps::install_all()?;
    ebpf::build(root)?;
    let tag = run_tag();
    let ours = format!("{NETNS_PREFIX}t{tag}");
    let before = shoal_netns(&ours)?;

    let cargo = workspace_cargo();
    run::run(
        Command::new(&cargo)
            .current_dir(root)
            .args(["build", "--workspace"]),
    )?;
    let shoal_bin = target_dir(root).join("debug").join("shoal");
    println!("SHOAL_BIN={}", shoal_bin.display());
    let tests = run::run(
        Command::new(&cargo)
            .current_dir(root)
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("SHOAL_BIN", &shoal_bin)
            .env(shoal_tests::RUN_TAG_ENV, &tag),
    );
    let leftovers = check_no_leftovers(&ours, &before);

    println!("total wall time: {:.1}s", started.elapsed().as_secs_f64());
    tests?;
    leftovers
}

/// `cargo xtask clean [PREFIX]`: removes everything the harness names
/// `shoal-*`, or only one run's (`shoal-tXXXXXX-N`) when a prefix is given.
pub fn clean(prefix: Option<&str>) -> Result<()> {
    let removed = shoal_tests::cleanup_leftovers(prefix).context("cleaning up leftovers")?;
    if removed.is_empty() {
        println!("nothing to clean");
    }
    for item in &removed {
        println!("{item}");
    }
    Ok(())
}

/// Three hex digits that tag every test process of this run (the harness puts them in
/// its names), so that the leftover check sees this run's namespaces only: another
/// run going on beside this one is neither blamed nor cleaned up.
fn run_tag() -> String {
    let random = RandomState::new().hash_one(std::process::id());
    format!("{:03x}", random & 0xfff)
}

/// Fails, after listing and removing them, if network namespaces named
/// `ours*` (this run's) that were not in `before` remain.
fn check_no_leftovers(ours: &str, before: &BTreeSet<String>) -> Result<()> {
    let now = shoal_netns(ours)?;
    let older: Vec<&String> = now.intersection(before).collect();
    if !older.is_empty() {
        println!(
            "leftover check: ignoring {} {ours}* namespace(s) that existed before this \
             run (`cargo xtask clean` removes them)",
            older.len()
        );
    }
    let left: Vec<&String> = now.difference(before).collect();
    if left.is_empty() {
        println!("leftover check: the tests left no {ours}* network namespace");
        return Ok(());
    }
    eprintln!("leftover check: the tests left these network namespaces behind:");
    for name in &left {
        eprintln!("  {name}");
    }
    let runs: BTreeSet<&str> = left.iter().map(|name| run_prefix(name)).collect();
    for run in runs {
        for item in shoal_tests::cleanup_leftovers(Some(run))
            .with_context(|| format!("cleaning up the leftovers of {run}"))?
        {
            println!("{item}");
        }
    }
    bail!(
        "{} network namespace(s) were left behind by the tests (removed now): {}",
        left.len(),
        left.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `shoal-t1a2b3c` from `shoal-t1a2b3c-1-h1`: the harness's id of the test
/// process that made it (every underlay it built continues it after a `-`).
fn run_prefix(netns: &str) -> &str {
    let rest = netns.strip_prefix(NETNS_PREFIX).unwrap_or(netns);
    match rest.find('-') {
        Some(end) => &netns[..NETNS_PREFIX.len() + end],
        None => netns,
    }
}

/// The network namespaces whose names start with `prefix`.
fn shoal_netns(prefix: &str) -> Result<BTreeSet<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {NETNS_DIR}")),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {NETNS_DIR}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            names.insert(name);
        }
    }
    Ok(names)
}

/// The cargo that runs this xtask (rustup's), else rustup's proxy.
pub(crate) fn workspace_cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(deps::rustup_cargo)
}

/// `$CARGO_TARGET_DIR` (relative to the workspace if relative), else
/// `<workspace>/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::run_prefix;

    #[test]
    fn run_prefix_is_the_name_up_to_the_run_id() {
        assert_eq!(run_prefix("shoal-t1a2b3c-1-h1"), "shoal-t1a2b3c");
        assert_eq!(run_prefix("shoal-t1a2b3c-12-underlay"), "shoal-t1a2b3c");
        assert_eq!(run_prefix("shoal-t1a2b3c"), "shoal-t1a2b3c");
    }
}
