//! One simulated machine: a network namespace with an underlay interface, a run dir for
//! the `shoal` it runs, the processes the harness started in it, and the knobs that
//! break its link (cut off, loss, delay). Never touches anything outside its own netns,
//! its own port on the underlay bridge and that port's impairment detour.

use std::{
    ffi::OsStr,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    sync::{Mutex, MutexGuard},
};

use crate::{
    command,
    impairment::{Link, LinkImpairment},
    namespace,
    naming::{HOST_IFACE, NETNS_DIR},
    process::{self, ProcessTable, Started},
    shoal_bin, warn, HarnessError, Result,
};

/// A host of an `Underlay`, borrowed from it with `Underlay::host`.
#[derive(Debug)]
pub struct Host {
    name: String,
    netns: String,
    addr: Ipv4Addr,
    run_dir: PathBuf,
    log_dir: PathBuf,
    /// The netns holding the bridge, and this host's port on it.
    underlay_netns: String,
    port: String,
    mtu: u32,
    processes: Mutex<ProcessTable>,
    impairment: Mutex<LinkImpairment>,
}

/// Where a host sits on the underlay; everything `Host::new` needs.
pub(crate) struct Placement {
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) addr: Ipv4Addr,
    pub(crate) run_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) underlay_netns: String,
    pub(crate) port: String,
    pub(crate) mtu: u32,
}

impl Host {
    pub(crate) fn new(placement: Placement) -> Self {
        let Placement {
            name,
            netns,
            addr,
            run_dir,
            log_dir,
            underlay_netns,
            port,
            mtu,
        } = placement;
        Self {
            name,
            netns,
            addr,
            run_dir,
            log_dir,
            underlay_netns,
            port,
            mtu,
            processes: Mutex::default(),
            impairment: Mutex::default(),
        }
    }

    /// The host's name: `h1`, `h2`, ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the host's network namespace, e.g. `shoal-t4f2a01-1-h1`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The file of the host's network namespace: /run/netns/<netns>.
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }

    /// The host's underlay address, in 198.18.0.0/15.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The underlay interface inside the host: `eth0`.
    pub fn iface(&self) -> &str {
        HOST_IFACE
    }

    /// The host's scratch dir, passed to `shoal --run-dir`.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone()
    }

    /// Runs `program` in the host's netns and waits for it. A non-zero exit is not an
    /// error: check `status` (an error means it could not be started).
    pub fn exec(&self, program: impl AsRef<OsStr>, args: &[&str]) -> Result<Output> {
        let mut command = command::in_netns(&self.netns_path(), program);
        command.args(args);
        command::output(&mut command)
    }

    /// Runs `sh -c script` in the host's netns and waits for it, like `exec`.
    pub fn sh(&self, script: &str) -> Result<Output> {
        self.exec("sh", &["-c", script])
    }

    /// Starts `program` in the host's netns in the background and returns its PID once
    /// `program` runs inside the netns. It is SIGKILLed by `kill_processes` or when the
    /// underlay is dropped; its stdout and stderr go to `log_path(pid)`. If it cannot be
    /// started (say, it does not exist) the error quotes nsenter's complaint.
    pub fn spawn(&self, program: impl AsRef<OsStr>, args: &[&str]) -> Result<u32> {
        let program = program.as_ref();
        let mut command = command::in_netns(&self.netns_path(), program);
        command.args(args);
        self.start(command, program)
    }

    /// Runs the real `shoal` binary in the host and waits for it:
    /// `shoal --run-dir <run_dir> <args>`.
    pub fn shoal(&self, args: &[&str]) -> Result<Output> {
        let bin = existing_shoal_bin()?;
        command::output(&mut self.shoal_command(&bin, args))
    }

    /// Starts `shoal --run-dir <run_dir> <args>` in the background, like `spawn`.
    pub fn spawn_shoal(&self, args: &[&str]) -> Result<u32> {
        let bin = existing_shoal_bin()?;
        self.start(self.shoal_command(&bin, args), bin.as_os_str())
    }

    /// `shoal` in the host's netns; the global `--run-dir` comes before `args`.
    fn shoal_command(&self, bin: &Path, args: &[&str]) -> Command {
        let mut command = command::in_netns(&self.netns_path(), bin);
        command.arg("--run-dir").arg(&self.run_dir).args(args);
        command
    }

    /// Starts `command` as a tracked process logging to `<host>-<n>-<program>.log`, and
    /// waits until nsenter has entered the netns and exec'd the program (or exited).
    fn start(&self, command: Command, program: &OsStr) -> Result<u32> {
        let mut processes = self.processes();
        let base = Path::new(program)
            .file_name()
            .map_or_else(|| "process".into(), |name| name.to_string_lossy());
        let log = self.log_dir.join(format!(
            "{}-{}-{base}.log",
            self.name,
            processes.started().len() + 1
        ));
        process::start_in_netns(&mut processes, command, log, &self.netns_path())
    }

    /// SIGKILLs every process the harness started in this host (and only those), and
    /// waits for them to die.
    pub fn kill_processes(&self) {
        for failure in self.kill_tracked() {
            warn(format_args!("{}: {failure}", self.name));
        }
    }

    /// Like `kill_processes`, and also kills the impairment relay (leaving the link
    /// detoured: for teardown), returning what could not be killed.
    pub(crate) fn kill_tracked(&self) -> Vec<HarnessError> {
        let mut failures = self.processes().kill_all();
        failures.extend(self.impairment().kill_relays());
        failures
    }

    /// The PIDs of every process in the host's netns, whoever started it.
    pub fn pids(&self) -> Vec<u32> {
        namespace::members(&[self.netns_path()])
            .into_iter()
            .map(|member| member.pid)
            .collect()
    }

    /// The exit status of a process started with `spawn` or `spawn_shoal`,
    /// once it has exited (`None` while it runs).
    pub fn exit_status(&self, pid: u32) -> Option<ExitStatus> {
        self.processes().exit_status(pid)
    }

    /// The log file of a process started with `spawn` or `spawn_shoal`.
    pub fn log_path(&self, pid: u32) -> Option<PathBuf> {
        self.processes()
            .started()
            .iter()
            .find(|started| started.pid == pid)
            .map(|started| started.log.clone())
    }

    /// Cuts the host off the underlay: its port on the bridge goes down, so `eth0` loses
    /// carrier and nothing reaches or leaves the host until `heal`.
    pub fn cut_off(&self) -> Result<()> {
        command::ip(&[
            "-n",
            &self.underlay_netns,
            "link",
            "set",
            &self.port,
            "down",
        ])
    }

    /// Puts the host's link in a bad state: every frame sent *to* the host is dropped
    /// with probability `loss_pct` percent and the others delayed by `delay_ms`, in
    /// order; frames *from* the host are untouched. So a round trip through the host
    /// takes `delay_ms` longer, and between two impaired hosts each direction crosses one
    /// impairment: `impair(10.0, 50)` on both gives 50 ms one way, 100 ms round trip, and
    /// 10% loss each way. Calling it again replaces the settings. Undone by `heal`.
    ///
    /// This kernel has no netem qdisc, so the host's port is taken off the bridge and
    /// rejoined through the `shoal-netem` relay (see `netem_bin`), a process in the
    /// underlay netns reading and writing frames on AF_PACKET sockets. Tx checksum
    /// offload (and with it TSO) is off on `eth0` while impaired, so each lost frame is
    /// one wire packet. The relay forwards some 60k frames/s toward the host (measured on
    /// 2 vCPUs shared with the traffic) and counts what it drops in its log; changing the
    /// settings restarts it, losing the frames it held. On error the link is left healed.
    pub fn impair(&self, loss_pct: f64, delay_ms: u32) -> Result<()> {
        if !(0.0..=100.0).contains(&loss_pct) {
            return Err(HarnessError::InvalidConfig(format!(
                "loss must be between 0 and 100 percent, not {loss_pct}"
            )));
        }
        self.impairment().apply(self.link(), loss_pct, delay_ms)
    }

    /// Undoes `cut_off` and `impair`: the relay is stopped, the host's port is back on
    /// the bridge and up, and the link passes every frame at once.
    pub fn heal(&self) -> Result<()> {
        {
            let mut impairment = self.impairment();
            if impairment.is_active() {
                impairment.remove(self.link())?;
            }
        }
        command::ip(&["-n", &self.underlay_netns, "link", "set", &self.port, "up"])
    }

    /// Where the host's link is, for the impairment detour.
    fn link(&self) -> Link<'_> {
        Link {
            host: &self.name,
            host_netns: &self.netns,
            underlay_netns: &self.underlay_netns,
            port: &self.port,
            mtu: self.mtu,
            log_dir: &self.log_dir,
        }
    }

    /// Every process started in this host, for the logs shown when a test panics.
    /// The impairment relays are included.
    pub(crate) fn started(&self) -> Vec<Started> {
        let mut started = self.processes().started().to_vec();
        started.extend_from_slice(self.impairment().started());
        started
    }

    fn processes(&self) -> MutexGuard<'_, ProcessTable> {
        // A panic while holding the lock leaves the table consistent; keep using it.
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn impairment(&self) -> MutexGuard<'_, LinkImpairment> {
        // As for `processes`: the state stays consistent across a panic.
        self.impairment
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn existing_shoal_bin() -> Result<PathBuf> {
    let path = shoal_bin();
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::ShoalBinaryMissing { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host::new(Placement {
            name: "h1".into(),
            netns: "shoal-t000001-1-h1".into(),
            addr: Ipv4Addr::new(198, 18, 0, 1),
            run_dir: "/run/shoal-test/shoal-t000001-1/h1".into(),
            log_dir: "/run/shoal-test/shoal-t000001-1/logs".into(),
            underlay_netns: "shoal-t000001-1-underlay".into(),
            port: "h1".into(),
            mtu: 1500,
        })
    }

    #[test]
    fn shoal_gets_the_run_dir_before_its_own_arguments() {
        let command = host().shoal_command(Path::new("/bin/shoal"), &["overlay", "apply", "f"]);
        assert_eq!(
            command::describe(&command),
            "nsenter --net=/run/netns/shoal-t000001-1-h1 -- /bin/shoal \
             --run-dir /run/shoal-test/shoal-t000001-1/h1 overlay apply f"
        );
    }

    #[test]
    fn impair_rejects_impossible_loss_before_touching_the_link() {
        for loss in [150.0, -1.0, f64::NAN] {
            let err = host().impair(loss, 0).expect_err("impossible loss");
            assert!(matches!(err, HarnessError::InvalidConfig(_)), "{err}");
        }
    }
}
