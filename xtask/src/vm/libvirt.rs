//! The host side of the lab: libvirt's daemons (started here when no
//! service manager runs them, and stopped again by whoever started them), its
//! `default` storage pool, and removing by name whatever a lab left in
//! libvirt (domains, their disks, networks, uploaded box images) when
//! Vagrant could not.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::run;

/// The libvirt connection Vagrant uses.
const URI: &str = "qemu:///system";
/// Where the `default` pool keeps its volumes when this creates it.
const POOL_DIR: &str = "/var/lib/libvirt/images";
/// The lab's domains are `shoal-lab-node1`... (`lv.default_prefix`).
pub const DOMAIN_PREFIX: &str = "shoal-lab-";
/// The lab's libvirt networks (Vagrantfile).
pub const NETWORKS: &[&str] = &["shoal-mgmt", "shoal-underlay"];

/// libvirt daemons this run started, to stop at the end (also from the
/// signal watcher, hence a static).
static STARTED: Mutex<Vec<(&'static str, u32)>> = Mutex::new(Vec::new());

/// Makes sure libvirtd answers, starting virtlogd and libvirtd if it does
/// not (a machine without systemd, like this one).
pub fn ensure_daemons() -> Result<()> {
    if answers() {
        return Ok(());
    }
    for (name, pidfile) in [
        ("virtlogd", "/run/virtlogd.pid"),
        ("libvirtd", "/run/libvirtd.pid"),
    ] {
        if running_pid(pidfile).is_some() {
            continue;
        }
        // Warnings and errors to a file in the VM cache: with no service
        // manager there is no journal to read them from.
        let cache = super::cache_dir();
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("cannot create the VM cache {}", cache.display()))?;
        let log = cache.join(format!("{name}.log"));
        run::run(
            Command::new(name)
                .arg("--daemon")
                .env("LIBVIRT_LOG_OUTPUTS", format!("3:file:{}", log.display())),
        )?;
        let pid = wait_pid(pidfile, Duration::from_secs(10))
            .with_context(|| format!("{name} started but wrote no {pidfile}"))?;
        println!("vm: started {name} (pid {pid})");
        started().push((name, pid));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers() {
        if Instant::now() > deadline {
            bail!("libvirtd does not answer on {URI} 30 s after it started");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

fn started() -> std::sync::MutexGuard<'static, Vec<(&'static str, u32)>> {
    STARTED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops the daemons this run started (libvirtd first), by PID.
pub fn stop_daemons() {
    let mut started = started();
    while let Some((name, pid)) = started.pop() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        println!("vm: stopped {name} (pid {pid})");
    }
}

fn answers() -> bool {
    run::output(virsh().arg("version")).is_some()
}

/// The PID in `pidfile` if that process lives.
fn running_pid(pidfile: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn wait_pid(pidfile: &str, limit: Duration) -> Option<u32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(pid) = running_pid(pidfile) {
            return Some(pid);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn virsh() -> Command {
    let mut cmd = Command::new("virsh");
    cmd.args(["-q", "-c", URI]);
    cmd
}

/// Defines and starts the `default` storage pool (a directory) if missing.
pub fn ensure_pool() -> Result<()> {
    if run::output(virsh().args(["pool-info", "default"])).is_none() {
        std::fs::create_dir_all(POOL_DIR).with_context(|| format!("cannot create {POOL_DIR}"))?;
        run::run(virsh().args(["pool-define-as", "default", "dir", "--target", POOL_DIR]))?;
    }
    let info = run::output(virsh().args(["pool-info", "default"])).unwrap_or_default();
    if !info
        .lines()
        .any(|l| l.starts_with("State:") && l.contains("running"))
    {
        run::run(virsh().args(["pool-start", "default"]))?;
    }
    Ok(())
}

/// Deletes the images vagrant-libvirt uploaded from box `name` into the
/// `default` pool (`shoal-VAGRANTSLASH-debian12_vagrant_box_image_0_box.img`).
pub fn remove_box_volumes(name: &str) -> Result<()> {
    let prefix = format!("{}_vagrant_box_image", name.replace('/', "-VAGRANTSLASH-"));
    let Some(list) = run::output(virsh().args(["vol-list", "default"])) else {
        return Ok(());
    };
    for volume in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if volume.starts_with(&prefix) {
            run::run(virsh().args(["vol-delete", "--pool", "default", volume]))?;
        }
    }
    Ok(())
}

/// Removes every domain named `shoal-lab-*` (with its disks) and the lab's
/// networks. Returns what it removed.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let domains = run::output(virsh().args(["list", "--all", "--name"])).unwrap_or_default();
    for domain in domains.lines().map(str::trim) {
        if !domain.starts_with(DOMAIN_PREFIX) {
            continue;
        }
        let _ = virsh().args(["destroy", domain]).output();
        if run::output(virsh().args(["undefine", "--remove-all-storage", domain])).is_some() {
            removed.push(format!("domain {domain}"));
        }
    }
    // Disks of domains that were never defined (an interrupted `up`).
    let volumes = run::output(virsh().args(["vol-list", "default"])).unwrap_or_default();
    for volume in volumes.lines().filter_map(|l| l.split_whitespace().next()) {
        if volume.starts_with(DOMAIN_PREFIX)
            && run::output(virsh().args(["vol-delete", "--pool", "default", volume])).is_some()
        {
            removed.push(format!("volume {volume}"));
        }
    }
    for network in NETWORKS {
        let _ = virsh().args(["net-destroy", network]).output();
        if run::output(virsh().args(["net-undefine", network])).is_some() {
            removed.push(format!("network {network}"));
        }
    }
    removed
}
