//! The simulated network: a Linux bridge in a namespace of its own, and N host
//! namespaces each plugged into it by a veth. Everything it creates carries a prefix
//! unique to this `Underlay` and is removed when it is dropped, panic or not.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::{
    cleanup::Teardown,
    command,
    host::{Host, Placement},
    naming::{self, BRIDGE, HOST_IFACE, MAX_HOSTS, NETNS_DIR, RUN_ROOT, UNDERLAY_PREFIX_LEN},
    process, warn, HarnessError, Removed, Result,
};

/// How many times `build` looks for an unused prefix before giving up.
const PREFIX_ATTEMPTS: usize = 16;

/// Settings of an underlay, from `Underlay::builder()`.
#[derive(Debug, Clone)]
pub struct UnderlayBuilder {
    hosts: usize,
    mtu: u32,
}

impl Default for UnderlayBuilder {
    fn default() -> Self {
        Self {
            hosts: 1,
            mtu: 1500,
        }
    }
}

impl UnderlayBuilder {
    /// Number of hosts, 1 to 254 (default 1).
    pub fn hosts(mut self, hosts: usize) -> Self {
        self.hosts = hosts;
        self
    }

    /// MTU of the bridge and of every veth on it, 68 to 65535 (default 1500).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    /// Creates the namespaces, bridge, veths and run dirs. On error, whatever was
    /// already created is removed before returning.
    pub fn build(self) -> Result<Underlay> {
        if !(1..=MAX_HOSTS).contains(&self.hosts) {
            return Err(HarnessError::InvalidConfig(format!(
                "an underlay has 1 to {MAX_HOSTS} hosts, not {}",
                self.hosts
            )));
        }
        if !(68..=65535).contains(&self.mtu) {
            return Err(HarnessError::InvalidConfig(format!(
                "underlay MTU must be between 68 and 65535, not {}",
                self.mtu
            )));
        }
        let (prefix, run_root) = claim_run_root()?;
        // From here on, dropping `underlay` undoes whatever has been created.
        let mut underlay = Underlay {
            netns: naming::underlay_netns(&prefix),
            prefix,
            run_root,
            mtu: self.mtu,
            hosts: Vec::new(),
            created_netns: Vec::new(),
        };
        create_dir(&underlay.log_dir())?;
        underlay.create_bridge()?;
        for index in 0..self.hosts {
            underlay.add_host(index)?;
        }
        command::ip(&["-n", &underlay.netns, "link", "set", BRIDGE, "up"])?;
        Ok(underlay)
    }
}

/// A set of hosts on one simulated L2 network. Dropping it kills the processes it
/// started, unmounts what was mounted under its run dirs, and deletes its namespaces and
/// dirs.
#[derive(Debug)]
pub struct Underlay {
    prefix: String,
    run_root: PathBuf,
    netns: String,
    mtu: u32,
    hosts: Vec<Host>,
    /// Namespaces this underlay created, in creation order; only these are deleted.
    created_netns: Vec<String>,
}

impl Underlay {
    /// Settings for a new underlay.
    pub fn builder() -> UnderlayBuilder {
        UnderlayBuilder::default()
    }

    /// The prefix of every name this underlay created: `shoal-<runid>-<n>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The netns holding the bridge (`br0`) and the hosts' ports on it.
    pub fn underlay_netns(&self) -> &str {
        &self.netns
    }

    /// The MTU of the bridge and every veth.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Host `index`, 0-based (host 0 is `h1`).
    ///
    /// # Panics
    /// If there is no such host.
    pub fn host(&self, index: usize) -> &Host {
        match self.hosts.get(index) {
            Some(host) => host,
            None => panic!(
                "underlay {} has {} hosts, there is no host {index}",
                self.prefix,
                self.hosts.len()
            ),
        }
    }

    /// Every host, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Where the output of spawned processes goes: beside the hosts' run dirs, not in
    /// them, since those belong to `shoal`.
    fn log_dir(&self) -> PathBuf {
        self.run_root.join("logs")
    }

    fn create_netns(&mut self, name: &str) -> Result<()> {
        command::ip(&["netns", "add", name])?;
        self.created_netns.push(name.to_owned());
        Ok(())
    }

    fn create_bridge(&mut self) -> Result<()> {
        let netns = self.netns.clone();
        self.create_netns(&netns)?;
        let mtu = self.mtu.to_string();
        command::ip(&[
            "-n", &netns, "link", "add", BRIDGE, "mtu", &mtu, "type", "bridge",
        ])
    }

    fn add_host(&mut self, index: usize) -> Result<()> {
        let name = naming::host_name(index);
        let netns = naming::host_netns(&self.prefix, &name);
        let addr = naming::host_addr(index).ok_or_else(|| {
            HarnessError::InvalidConfig(format!("no underlay address for host {index}"))
        })?;
        self.create_netns(&netns)?;

        let run_dir = self.run_root.join(&name);
        create_dir(&run_dir)?;
        let mtu = self.mtu.to_string();
        let cidr = format!("{addr}/{UNDERLAY_PREFIX_LEN}");
        let ul = self.netns.as_str();
        // The bridge-side end is named after the host: `ip -n <underlay> link show h1`.
        command::ip(&[
            "-n", ul, "link", "add", &name, "mtu", &mtu, "type", "veth", "peer", "name",
            HOST_IFACE, "mtu", &mtu, "netns", &netns,
        ])?;
        command::ip(&["-n", ul, "link", "set", &name, "master", BRIDGE, "up"])?;
        command::ip(&["-n", &netns, "addr", "add", &cidr, "dev", HOST_IFACE])?;
        command::ip(&["-n", &netns, "link", "set", HOST_IFACE, "up"])?;
        command::ip(&["-n", &netns, "link", "set", "lo", "up"])?;

        self.hosts.push(Host::new(Placement {
            name: name.clone(),
            netns,
            addr,
            run_dir,
            log_dir: self.log_dir(),
            underlay_netns: self.netns.clone(),
            port: name,
            mtu: self.mtu,
        }));
        Ok(())
    }

    /// Shows the tail of every log, so a failing test says what its processes said.
    fn print_logs(&self) {
        for host in &self.hosts {
            for started in host.started() {
                warn(format_args!(
                    "{} pid {}: `{}`, last lines of {}:\n{}",
                    host.name(),
                    started.pid,
                    started.command,
                    started.log.display(),
                    process::tail(&started.log)
                ));
            }
        }
    }

    fn teardown(&self) -> Teardown {
        let mut teardown = Teardown::default();
        for host in &self.hosts {
            teardown.failures.extend(host.kill_tracked());
        }
        let netns: Vec<PathBuf> = self
            .created_netns
            .iter()
            .map(|name| Path::new(NETNS_DIR).join(name))
            .collect();
        teardown.kill_members(&netns, std::slice::from_ref(&self.run_root));
        teardown.unmount_under(&self.run_root);
        teardown.remove_dir(&self.run_root);
        for name in self.created_netns.iter().rev() {
            teardown.delete_netns(name);
        }
        teardown.remove_cgroups(Some(&self.prefix));
        teardown.remove_bpf_pins(Some(&self.prefix));
        teardown
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        let teardown = self.teardown();
        // Processes the harness did not start (say, workloads an agent left behind)
        // would keep the namespaces alive after their names are gone.
        for removed in &teardown.removed {
            if let Removed::Process { .. } = removed {
                warn(format_args!("{}: {removed}", self.prefix));
            }
        }
        for failure in &teardown.failures {
            warn(format_args!(
                "cleanup of {} incomplete, run `cargo xtask clean {}`: {failure}",
                self.prefix, self.prefix
            ));
        }
    }
}

/// Picks an unused prefix and creates its run root, /run/shoal-test/<prefix>.
fn claim_run_root() -> Result<(String, PathBuf)> {
    let parent = Path::new(RUN_ROOT);
    fs::create_dir_all(parent).map_err(|source| HarnessError::Io {
        action: "create",
        path: parent.to_owned(),
        source,
    })?;
    for _ in 0..PREFIX_ATTEMPTS {
        let prefix = naming::next_prefix();
        let run_root = parent.join(&prefix);
        match fs::create_dir(&run_root) {
            Ok(()) => return Ok((prefix, run_root)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(HarnessError::Io {
                    action: "create",
                    path: run_root,
                    source,
                })
            }
        }
    }
    Err(HarnessError::InvalidConfig(format!(
        "no unused prefix after {PREFIX_ATTEMPTS} tries; {RUN_ROOT} is full of leftovers, \
         run `cargo xtask clean`"
    )))
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir(path).map_err(|source| HarnessError::Io {
        action: "create",
        path: path.to_owned(),
        source,
    })
}
