//! Installing what shoal's build and tests need on a Debian machine: apt
//! packages (only the missing ones) and bpf-linker 0.13 built against LLVM 22.
//! Idempotent: a second run installs nothing. See shared/notes/ebpf-toolchain.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run;

/// What building the eBPF object needs: Debian's rustc 1.96 with its library
/// sources (for `-Z build-std=core`) and the LLVM 22 that bpf-linker links to.
pub const EBPF_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "llvm-22-dev",
    "libllvm22",
];

/// What the tests, the demo and the benches run.
pub const TEST_PACKAGES: &[&str] = &[
    "clang-19",
    "bpftool",
    "iproute2",
    "iputils-ping",
    "iperf3",
    "curl",
    "util-linux",
    "netcat-openbsd",
    "ethtool",
    "python3",
    "dnsutils",
    "nginx",
    "wrk",
    "nftables",
    "iptables",
    // containers (agent/src/executor/container) and their tests: runc runs
    // them (crun refuses hybrid cgroups), tini is `--init`; the tests build
    // busybox images with umoci, push and save them with skopeo, serve them
    // from docker-registry, behind htpasswd (apache2-utils) basic auth.
    "runc",
    "tini",
    "umoci",
    "skopeo",
    "docker-registry",
    "busybox-static",
    "apache2-utils",
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// `bpf-linker --version` prints `bpf-linker 0.13.0`.
const BPF_LINKER_VERSION_PREFIX: &str = "bpf-linker 0.13.";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// `cargo xtask install-deps`: every apt package and bpf-linker.
pub fn install_all() -> Result<()> {
    let all: Vec<&str> = EBPF_PACKAGES.iter().chain(TEST_PACKAGES).copied().collect();
    ensure_apt_packages(&all)?;
    ensure_bpf_linker()?;
    ensure_docker_cli()?;
    Ok(())
}

/// Where the Docker Engine API tests find the docker client.
pub const DOCKER_CLI: &str = "/opt/docker-cli/docker";

/// The real docker client (Debian's `docker.io`, API 1.41) for the Engine
/// API tests, unpacked from its package, never installed: installing it
/// would start dockerd, which rewrites iptables.
fn ensure_docker_cli() -> Result<()> {
    let target = Path::new(DOCKER_CLI);
    if target.exists() {
        println!("docker client present: {DOCKER_CLI}");
        return Ok(());
    }
    let scratch = std::env::temp_dir().join("shoal-docker-cli");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    run::run(
        apt_get()
            .current_dir(&scratch)
            .args(["download", "docker.io"]),
    )?;
    let deb = std::fs::read_dir(&scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download docker.io left no .deb")?;
    let unpacked = scratch.join("root");
    run::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(unpacked.join("usr/bin/docker"), target)
        .with_context(|| format!("cannot copy the docker client to {DOCKER_CLI}"))?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// The eBPF part only; returns the path of a working bpf-linker 0.13.
pub fn install_ebpf_toolchain() -> Result<PathBuf> {
    ensure_apt_packages(EBPF_PACKAGES)?;
    ensure_bpf_linker()
}

/// Installs those of `packages` that dpkg does not report as installed.
fn ensure_apt_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        println!("apt packages present: {}", packages.join(" "));
        return Ok(());
    }
    println!("installing: {}", missing.join(" "));
    if !run::is_root()? {
        bail!(
            "missing apt packages: {}; run `cargo xtask install-deps` as root",
            missing.join(" ")
        );
    }
    run::run(apt_get().arg("update"))?;
    run::run(
        apt_get()
            .args(["install", "-y", "-o", "DPkg::Lock::Timeout=600"])
            .args(&missing),
    )?;
    let still_missing: Vec<&str> = missing.into_iter().filter(|p| !is_installed(p)).collect();
    if !still_missing.is_empty() {
        bail!(
            "apt-get reported success but these are still not installed: {}",
            still_missing.join(" ")
        );
    }
    Ok(())
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=600"]);
    cmd
}

fn is_installed(package: &str) -> bool {
    run::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

/// Returns a bpf-linker 0.13 that runs, installing it with rustup's cargo if
/// there is none (or only another version, or one whose libLLVM is gone).
fn ensure_bpf_linker() -> Result<PathBuf> {
    if let Some(path) = find_bpf_linker() {
        println!(
            "bpf-linker {BPF_LINKER_VERSION} present: {}",
            path.display()
        );
        return Ok(path);
    }
    println!(
        "installing: bpf-linker {BPF_LINKER_VERSION} (LLVM_PREFIX={LLVM_PREFIX}; about a minute)"
    );
    let mut install = Command::new(rustup_cargo());
    install
        .args(["install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"])
        // Without it, llvm-sys finds Debian's LLVM 14 `llvm-config` first and
        // fails with `unable to find library -lLLVM`.
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    run::run(&mut install)?;
    find_bpf_linker().with_context(|| {
        format!(
            "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` does not \
             report it (looked in {} and PATH)",
            cargo_bin_dir().display()
        )
    })
}

/// A bpf-linker whose `--version` reports 0.13, from cargo's bin directory or
/// PATH.
fn find_bpf_linker() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(cargo_bin_dir())
        .chain(from_path)
        .map(|dir| dir.join("bpf-linker"))
        .find(|candidate| reports_wanted_version(candidate))
}

fn reports_wanted_version(bpf_linker: &Path) -> bool {
    run::output(Command::new(bpf_linker).arg("--version"))
        .is_some_and(|v| v.trim().starts_with(BPF_LINKER_VERSION_PREFIX))
}

/// `$CARGO_HOME/bin`, else `~/.cargo/bin`: where rustup's proxies and
/// `cargo install` binaries live.
pub fn cargo_bin_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home).join("bin");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cargo").join("bin")
}

/// rustup's cargo: the proxy in cargo's bin directory, else the cargo that
/// runs this xtask, else whatever `cargo` is on PATH. Never Debian's
/// `/usr/bin/cargo`, which only builds the eBPF crate.
pub fn rustup_cargo() -> PathBuf {
    let proxy = cargo_bin_dir().join("cargo");
    if proxy.exists() {
        return proxy;
    }
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}
