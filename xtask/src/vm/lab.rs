//! One lab run: `vagrant up` of the three VMs, ssh to them, the scenario
//! once per mesh, and `vagrant destroy`. The teardown is registered before
//! anything is created and runs once, whichever comes first: the normal end,
//! an error or a panic (the guard's `Drop`), or SIGINT/SIGTERM/SIGHUP.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

use super::{libvirt, scenario, Options};
use crate::run;

/// The VMs, their underlay addresses (the Vagrantfile's) and the host's.
pub const NODES: &[(&str, &str)] = &[
    ("node1", "198.18.56.11"),
    ("node2", "198.18.56.12"),
    ("node3", "198.18.56.13"),
];
pub const HOST_ADDR: &str = "198.18.56.1";

/// What the teardown needs to destroy the lab: `None` once done.
static TEARDOWN: Mutex<Option<Vagrant>> = Mutex::new(None);

/// How to run `vagrant` on this lab.
#[derive(Clone, Debug)]
pub struct Vagrant {
    dir: PathBuf,
    shoal: PathBuf,
    emulate: bool,
    dotfile: PathBuf,
}

impl Vagrant {
    fn command(&self) -> Command {
        let mut cmd = Command::new("vagrant");
        cmd.current_dir(&self.dir)
            .env("SHOAL_BIN", &self.shoal)
            .env("SHOAL_VM_EMULATE", if self.emulate { "1" } else { "0" })
            .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
            // No calls home to check for new versions or boxes.
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .env("VAGRANT_BOX_UPDATE_CHECK_DISABLE", "1")
            // Machine state outside the repository.
            .env("VAGRANT_DOTFILE_PATH", &self.dotfile);
        cmd
    }

    /// `vagrant destroy -f`, then whatever libvirt still holds by name.
    fn destroy(&self) {
        println!("vm: destroying the lab");
        let mut cmd = self.command();
        cmd.args(["destroy", "-f"]);
        if let Err(e) = run::run(&mut cmd) {
            eprintln!("vm: {e:#}");
        }
        for item in libvirt::remove_leftovers() {
            println!("vm: removed leftover {item}");
        }
    }
}

/// Destroys the lab if it still stands; a second call does nothing.
fn teardown_now() {
    let vagrant = TEARDOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(vagrant) = vagrant {
        vagrant.destroy();
    }
}

/// Tears the lab down when dropped, unless `--keep` disarmed it.
struct Guard {
    keep: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        teardown_now();
    }
}

/// Blocks SIGINT/SIGTERM/SIGHUP in this thread (and so in every thread it
/// starts later) and starts a watcher that tears the lab down on them.
fn watch_signals() -> Result<()> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals
        .thread_block()
        .context("cannot block SIGINT/SIGTERM/SIGHUP for the signal watcher")?;
    std::thread::Builder::new()
        .name("vm-signals".into())
        .spawn(move || {
            let signal = signals.wait().ok();
            let name = signal.map_or("a signal", Signal::as_str);
            eprintln!("\nvm-test: {name} received; destroying the lab");
            teardown_now();
            libvirt::stop_daemons();
            std::process::exit(130);
        })
        .context("cannot start the signal watcher thread")?;
    Ok(())
}

/// Whether VMs must use QEMU's software emulation: `SHOAL_VM_EMULATE=1|0`
/// if set, else whenever KVM cannot run a stock kernel here (no /dev/kvm,
/// no VT-x/AMD-V in the CPU flags, or a paravirtual KVM).
pub fn must_emulate() -> bool {
    match std::env::var("SHOAL_VM_EMULATE").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let cpu_virt = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    });
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    !(Path::new("/dev/kvm").exists() && cpu_virt && !pvm)
}

/// Brings the lab up, runs the scenario per mesh, tears the lab down.
pub fn run(root: &Path, shoal: &Path, options: &Options) -> Result<()> {
    let emulate = must_emulate();
    let vagrant = Vagrant {
        dir: root.join("vagrant"),
        shoal: shoal.to_path_buf(),
        emulate,
        dotfile: super::cache_dir().join("vagrant-state"),
    };
    println!(
        "vm: {} VMs, {}",
        NODES.len(),
        if emulate {
            "QEMU software emulation (SHOAL_VM_EMULATE=1: no usable KVM here)"
        } else {
            "KVM"
        }
    );
    if !options.reuse {
        // Whatever an earlier, interrupted run left.
        for item in libvirt::remove_leftovers() {
            println!("vm: removed leftover {item}");
        }
    }
    *TEARDOWN.lock().unwrap_or_else(|p| p.into_inner()) = Some(vagrant.clone());
    watch_signals()?;
    let guard = Guard { keep: options.keep };

    let started = Instant::now();
    let mut up = vagrant.command();
    if options.reuse {
        // The VMs a `--keep` run left: the new `shoal` installed, their
        // swarm state wiped by the scenario's reset.
        up.args(["provision"]);
    } else {
        up.args(["up", "--provider", "libvirt"]);
    }
    run::run(&mut up)?;
    println!(
        "vm: `vagrant {}` of {} VMs took {:.0} s",
        if options.reuse { "provision" } else { "up" },
        NODES.len(),
        started.elapsed().as_secs_f64()
    );
    let ssh = Ssh::configure(&vagrant)?;
    let mut failures = Vec::new();
    let mut swarm_ran = options.reuse;
    for mesh in &options.meshes {
        let phase = Instant::now();
        let result = scenario::run(&ssh, *mesh, !swarm_ran, options.ipvs_swarm);
        println!(
            "vm: scenario with --mesh {} took {:.0} s",
            mesh.name(),
            phase.elapsed().as_secs_f64()
        );
        match result {
            Ok((failed, ran)) => {
                failures.extend(failed);
                swarm_ran |= ran;
            }
            Err(e) => {
                failures.push(format!("--mesh {}: {e:#}", mesh.name()));
                swarm_ran = true;
            }
        }
    }
    ssh.close();
    if options.keep {
        println!(
            "vm: --keep: the lab stays up. ssh: `ssh -F {} node1`; destroy: \
             `cd vagrant && VAGRANT_DOTFILE_PATH={} vagrant destroy -f`",
            ssh.config.display(),
            vagrant.dotfile.display()
        );
    }
    drop(guard);
    if !failures.is_empty() {
        bail!(
            "{} check(s) failed in the VMs:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// ssh to the VMs with the config `vagrant ssh-config` prints, one shared
/// connection per VM (an ssh handshake is slow in an emulated guest).
pub struct Ssh {
    config: PathBuf,
    control_dir: PathBuf,
}

impl Ssh {
    fn configure(vagrant: &Vagrant) -> Result<Ssh> {
        let mut cmd = vagrant.command();
        cmd.arg("ssh-config");
        let config_text = run::output(&mut cmd).context("`vagrant ssh-config` failed")?;
        let dir = super::cache_dir();
        let config = dir.join("ssh-config");
        std::fs::write(&config, config_text)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let control_dir = dir.join("ssh-control");
        std::fs::create_dir_all(&control_dir)
            .with_context(|| format!("cannot create {}", control_dir.display()))?;
        Ok(Ssh {
            config,
            control_dir,
        })
    }

    fn base(&self, node: &str) -> Command {
        let mut cmd = self.options();
        cmd.arg(node);
        cmd
    }

    fn options(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&self.config)
            .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=120"])
            .arg("-o")
            .arg(format!("ControlPath={}/%h", self.control_dir.display()))
            .args(["-o", "ServerAliveInterval=5", "-o", "ConnectTimeout=30"]);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `script` with `sh -c` as root on `node`; its output, whatever
    /// the exit status. Fails only if ssh itself cannot run.
    pub fn sh(&self, node: &str, script: &str) -> Result<Output> {
        self.command(node, script)
            .output()
            .with_context(|| format!("cannot run ssh to {node}"))
    }

    /// The command that runs `script` with `sh -c` as root on `node`.
    pub fn command(&self, node: &str, script: &str) -> Command {
        let mut cmd = self.base(node);
        cmd.arg("--")
            .arg("sudo")
            .arg("sh")
            .arg("-c")
            .arg(quote(script));
        cmd
    }

    /// `sh`, which must exit 0; its stdout.
    pub fn ok(&self, node: &str, script: &str) -> Result<String> {
        let out = self.sh(node, script)?;
        if !out.status.success() {
            bail!(
                "`{script}` on {node} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until `node` answers ssh again (after a reboot).
    pub fn wait_up(&self, node: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.sh(node, "true").is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{node} does not answer ssh after {} s", limit.as_secs());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Ends the shared connections.
    pub fn close(&self) {
        for (node, _) in NODES {
            let _ = self
                .options()
                .args(["-O", "exit", node])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `'text'` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
