//! `cargo xtask`: everything about building and testing shoal that is not plain
//! cargo: installing the system packages and the eBPF toolchain, building the
//! eBPF object with Debian's rustc, running the root-only test suite, and the
//! ingress benchmark.

mod bench;
mod demo;
mod deps;
mod ebpf;
mod run;
mod suite;
mod vm;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  demo [--keep]  the main job: a 3-node swarm on namespaced hosts runs a 3-replica web
                 service published on 8080; a client outside the swarm calls it through
                 every node's routing mesh (needs root; installs what is missing first)
  install-deps   install the missing apt packages and bpf-linker 0.13 (needs root)
  build-ebpf     build the eBPF object (ebpf/programs) with Debian's rustc
  bench [--rounds N] [--seconds S]
                 direct vs shoal's eBPF ingress vs nftables vs iptables DNAT on one
                 namespaced topology (req/s, p50, p99, Gbit/s), and the time to apply
                 one service change at 1k and 10k services (needs root)
  vm-box         build the lab's Vagrant box (Debian 12, kernel 6.1) if it is not cached, and
                 add it to Vagrant (needs root; installs vagrant, libvirt and QEMU first)
  vm-test [--mesh ebpf|ipvs|all] [--keep] [--reuse] [--no-build]
                 the lab of 3 VMs in vagrant/ (libvirt + QEMU): the swarm scenario of the
                 end-to-end tests once per mesh, then everything destroyed (needs root);
                 --reuse runs in the VMs a --keep run left (new shoal provisioned),
                 --no-build installs the shoal already in the VM cache
  lint           cargo fmt --check and clippy with warnings denied, on the workspace
  test           lint, install-deps, build-ebpf, build and test the workspace (needs root)
  clean [PREFIX] remove network namespaces and other leftovers named shoal-* (or one run's)
";

fn main() -> ExitCode {
    match run_task() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line; no backtrace even with RUST_BACKTRACE set.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_task() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("no task given");
    };
    let root = workspace_root();
    if task == "clean" {
        return match rest {
            [] => suite::clean(None),
            [prefix] => suite::clean(Some(prefix)),
            _ => bail!("usage: cargo xtask clean [PREFIX]"),
        };
    }
    if task == "demo" {
        return match rest {
            [] => demo::run(&root, false),
            [keep] if keep == "--keep" => demo::run(&root, true),
            _ => bail!("usage: cargo xtask demo [--keep]"),
        };
    }
    if task == "bench" {
        return bench::run(&root, bench::Options::parse(rest)?);
    }
    if task == "vm-test" {
        return vm::test(&root, &vm::Options::parse(rest)?);
    }
    if !rest.is_empty() {
        bail!("`{task}` takes no arguments, got: {}", rest.join(" "));
    }
    match task.as_str() {
        "install-deps" => deps::install_all(),
        "build-ebpf" => ebpf::build(&root).map(|_| ()),
        "lint" => suite::lint(&root),
        "test" => suite::test(&root),
        "vm-box" => vm::build_box(),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown task `{other}`")
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}
