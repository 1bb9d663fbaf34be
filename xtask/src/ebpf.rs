//! `cargo xtask build-ebpf`: builds `ebpf/programs` for `bpfel-unknown-none`
//! with Debian's rustc 1.96 and its library sources (`-Z build-std=core`),
//! linked by bpf-linker. rustup's toolchains have no `rust-src`, so rustup's
//! cargo, rustc and their environment must stay out of this build.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{deps, run};

const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const TARGET: &str = "bpfel-unknown-none";
/// Debug info and `--btf` give the object its `.BTF` section.
const RUSTFLAGS: &[&str] = &["-Cdebuginfo=2", "-Clink-arg=--btf"];
/// What rustup or an outer cargo leaves in the environment that would pull
/// rustup's toolchain back into this build.
const INHERITED_ENV_TO_DROP: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO",
    "CARGO_TARGET_DIR",
];

/// Builds the eBPF object and returns its path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let bpf_linker = deps::install_ebpf_toolchain()?;
    let linker_dir = bpf_linker
        .parent()
        .context("bpf-linker path has no parent directory")?;
    let crate_dir = root.join("ebpf").join("programs");

    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(&crate_dir)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-Z",
            "build-std=core",
        ])
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"))
        .env("PATH", path_with(linker_dir)?);
    for var in INHERITED_ENV_TO_DROP {
        cmd.env_remove(var);
    }

    let started = Instant::now();
    run::run(&mut cmd)?;
    let object = object_path(root);
    if !object.is_file() {
        bail!(
            "the build succeeded but {} does not exist",
            object.display()
        );
    }
    println!(
        "eBPF object built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        object.display()
    );
    Ok(object)
}

/// Where `build` puts the object; the agent's build.rs embeds it from there.
pub fn object_path(root: &Path) -> PathBuf {
    root.join("ebpf/programs/target")
        .join(TARGET)
        .join("release/shoal-ebpf")
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> Result<OsString> {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&current));
    std::env::join_paths(paths).context("cannot build PATH for the eBPF build")
}
