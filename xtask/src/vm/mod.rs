//! `cargo xtask vm-box` and `cargo xtask vm-test`: the lab of real VMs in
//! `vagrant/`. The box is built locally and cached outside the repository;
//! `vm-test` brings up three VMs with Vagrant (libvirt, QEMU), runs the
//! swarm scenario of the namespaced end-to-end tests in them once per mesh,
//! and destroys them, even on failure or Ctrl-C.

mod image;
mod ipvs_lab;
mod lab;
mod libvirt;
mod scenario;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{deps, ebpf, run, suite};

/// Where the box, its build directory, the guests' logs and Vagrant's state
/// live: `$SHOAL_VM_CACHE`, else `/var/cache/shoal-vm` (outside the
/// repository: the box is ~1 GB).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SHOAL_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/shoal-vm"))
}

/// Which meshes `vm-test` runs the scenario with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mesh {
    Ebpf,
    Ipvs,
}

impl Mesh {
    pub fn name(self) -> &'static str {
        match self {
            Mesh::Ebpf => "ebpf",
            Mesh::Ipvs => "ipvs",
        }
    }
}

#[derive(Debug)]
pub struct Options {
    meshes: Vec<Mesh>,
    keep: bool,
    /// Run in the VMs an earlier `--keep` left up (`vagrant provision`
    /// installs the new `shoal`), not in new ones.
    reuse: bool,
    /// Install the `shoal` already in the VM cache instead of building one.
    no_build: bool,
    /// Run the swarm scenario with `--mesh ipvs` too, not only the IPVS
    /// client's checks: only when `--mesh ipvs|all` asks for it by name,
    /// because a whole run of that scenario has not passed yet (see the
    /// README's IPVS mesh paragraph), and `cargo xtask test` runs only what is claimed to work.
    pub ipvs_swarm: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            // IPVS first: without its mesh backend it runs no swarm, and
            // the eBPF swarm then needs no reboot before it.
            meshes: vec![Mesh::Ipvs, Mesh::Ebpf],
            keep: false,
            reuse: false,
            no_build: false,
            ipvs_swarm: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--keep" => options.keep = true,
                "--reuse" => options.reuse = true,
                "--no-build" => options.no_build = true,
                "--mesh" => {
                    options.meshes = match args.next().map(String::as_str) {
                        Some("ebpf") => vec![Mesh::Ebpf],
                        Some("ipvs") => {
                            options.ipvs_swarm = true;
                            vec![Mesh::Ipvs]
                        }
                        Some("all") => {
                            options.ipvs_swarm = true;
                            vec![Mesh::Ipvs, Mesh::Ebpf]
                        }
                        other => bail!("--mesh takes ebpf, ipvs or all, got {other:?}"),
                    }
                }
                other => bail!(
                    "usage: cargo xtask vm-test [--mesh ebpf|ipvs|all] [--keep] [--reuse] \
                     [--no-build]; got `{other}`"
                ),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask vm-box`: installs what the lab needs and builds (or finds)
/// the box, and adds it to Vagrant.
pub fn build_box() -> Result<()> {
    require_root()?;
    deps::install_vm()?;
    libvirt::ensure_daemons()?;
    let result = libvirt::ensure_pool().and_then(|()| image::ensure_box());
    libvirt::stop_daemons();
    result
}

/// `cargo xtask vm-test`.
pub fn test(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    require_root()?;
    deps::install_vm()?;
    let shoal = if options.no_build {
        cache_dir().join("shoal")
    } else {
        shoal_binary(root)?
    };
    libvirt::ensure_daemons()?;
    let result = libvirt::ensure_pool()
        .and_then(|()| image::ensure_box())
        .and_then(|()| lab::run(root, &shoal, options));
    libvirt::stop_daemons();
    println!(
        "vm-test: total wall time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// A release `shoal` with the eBPF object embedded, without its debug
/// sections, in the VM cache. Release, because under software emulation a
/// debug build keeps a guest's only CPU busy (the manager's loops alone
/// took 90% of it) and gossip then declares busy nodes dead.
fn shoal_binary(root: &Path) -> Result<std::path::PathBuf> {
    ebpf::build(root)?;
    run::run(
        std::process::Command::new(suite::workspace_cargo())
            .current_dir(root)
            .args(["build", "--release", "-p", "shoal-agent"]),
    )?;
    let built = suite::target_dir(root).join("release").join("shoal");
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the VM cache {}", cache.display()))?;
    let stripped = cache.join("shoal");
    run::run(
        std::process::Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&built)
            .arg(&stripped),
    )?;
    Ok(stripped)
}

fn require_root() -> Result<()> {
    if !run::is_root()? {
        bail!("the VM lab needs root: it runs libvirt, mounts the box image and uses loop devices");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Options::parse(&args).expect("valid options")
    }

    #[test]
    fn the_ipvs_swarm_scenario_runs_only_when_asked_for_by_name() {
        let default = parse(&[]);
        assert_eq!(default.meshes, vec![Mesh::Ipvs, Mesh::Ebpf]);
        assert!(!default.ipvs_swarm);
        assert!(parse(&["--mesh", "ipvs"]).ipvs_swarm);
        assert!(parse(&["--mesh", "all"]).ipvs_swarm);
        assert!(!parse(&["--mesh", "ebpf"]).ipvs_swarm);
    }
}
