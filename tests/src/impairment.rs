//! Loss and delay on a host's link without the netem qdisc (this kernel has none): the
//! host's port is taken off the bridge and joined to it again through the `shoal-netem`
//! relay, a userspace process in the underlay netns that impairs the frames going toward
//! the host. Touches only that host's port, its detour veth pair and the host's `eth0`.
//!
//! ```text
//!  host netns   |             underlay netns
//!  eth0 <-veth-> hN    [shoal-netem]    hN-relay <-veth-> hN-bridge --- br0
//!                       drops + delays frames toward the host
//! ```

use std::{
    hash::{BuildHasher, RandomState},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    command,
    naming::{self, BRIDGE, HOST_IFACE, NETNS_DIR},
    netem_bin,
    process::{self, ProcessTable, Started},
    HarnessError, Result,
};

/// How long the relay may take to bind its sockets once it runs.
const RELAY_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// The line the relay prints once it forwards frames.
const RELAY_READY_LINE: &str = "ready";

/// Where a host's link is: everything the detour needs to know about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link<'a> {
    /// The host's name (`h2`), for log names.
    pub(crate) host: &'a str,
    pub(crate) host_netns: &'a str,
    pub(crate) underlay_netns: &'a str,
    /// The host's port on the bridge, the underlay end of its `eth0` veth.
    pub(crate) port: &'a str,
    pub(crate) mtu: u32,
    pub(crate) log_dir: &'a Path,
}

impl Link<'_> {
    fn underlay_netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(self.underlay_netns)
    }

    fn host_netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(self.host_netns)
    }
}

/// The impairment of one host's link: whether the detour is in place, and the relay
/// processes started for it (at most one alive).
#[derive(Debug, Default)]
pub(crate) struct LinkImpairment {
    detoured: bool,
    relays: ProcessTable,
}

impl LinkImpairment {
    /// Whether the link currently runs through a relay.
    pub(crate) fn is_active(&self) -> bool {
        self.detoured
    }

    /// Impairs the link, or changes the settings of an impaired one (restarting the
    /// relay, which loses the frames it held). On error the link is left healed.
    pub(crate) fn apply(&mut self, link: Link<'_>, loss_pct: f64, delay_ms: u32) -> Result<()> {
        let bin = netem_bin();
        if !bin.is_file() {
            return Err(HarnessError::NetemBinaryMissing { path: bin });
        }
        let applied = if self.detoured {
            self.stop_relay()
                .and_then(|()| self.start_relay(link, &bin, loss_pct, delay_ms))
        } else {
            self.detoured = true;
            install_detour(link).and_then(|()| self.start_relay(link, &bin, loss_pct, delay_ms))
        };
        if let Err(err) = applied {
            // Best effort: the first error says what went wrong.
            let _ = self.remove(link);
            return Err(err);
        }
        Ok(())
    }

    /// Stops the relay and puts the host's port back on the bridge. Every step is tried;
    /// the first failure is returned.
    pub(crate) fn remove(&mut self, link: Link<'_>) -> Result<()> {
        let mut first_error = self.stop_relay().err();
        if self.detoured {
            let ul = link.underlay_netns;
            let relay_end = naming::relay_end(link.port);
            // Deleting one end of a veth deletes both, taking the detour off the bridge.
            let steps = [
                command::ip(&["-n", ul, "link", "del", &relay_end]),
                command::ip(&["-n", ul, "link", "set", link.port, "master", BRIDGE]),
                set_tx_offload(&link.host_netns_path(), HOST_IFACE, true),
            ];
            for err in steps.into_iter().filter_map(Result::err) {
                first_error.get_or_insert(err);
            }
            self.detoured = false;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// SIGKILLs the relay without touching the links: for teardown, which deletes the
    /// namespaces anyway. Returns what could not be killed.
    pub(crate) fn kill_relays(&mut self) -> Vec<HarnessError> {
        self.relays.kill_all()
    }

    /// Every relay started for this link, for the logs shown when a test panics.
    pub(crate) fn started(&self) -> &[Started] {
        self.relays.started()
    }

    fn stop_relay(&mut self) -> Result<()> {
        match self.relays.kill_all().into_iter().next() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Starts the relay between the host's port and the detour, and waits until it has
    /// bound its sockets and forwards frames.
    fn start_relay(
        &mut self,
        link: Link<'_>,
        bin: &Path,
        loss_pct: f64,
        delay_ms: u32,
    ) -> Result<()> {
        let netns = link.underlay_netns_path();
        // A fresh seed per relay; it is printed in the relay's log.
        let seed = RandomState::new().hash_one(Instant::now());
        let mut relay = command::in_netns(&netns, bin);
        relay
            .arg(link.port)
            .arg(naming::relay_end(link.port))
            .arg(loss_pct.to_string())
            .arg(delay_ms.to_string())
            .arg(seed.to_string());
        let description = command::describe(&relay);
        let log = link.log_dir.join(format!(
            "{}-netem-{}.log",
            link.host,
            self.relays.started().len() + 1
        ));
        let pid = process::start_in_netns(&mut self.relays, relay, log.clone(), &netns)?;

        let deadline = Instant::now() + RELAY_READY_TIMEOUT;
        loop {
            let ready = std::fs::read_to_string(&log)
                .is_ok_and(|text| text.lines().any(|line| line.starts_with(RELAY_READY_LINE)));
            if ready {
                return Ok(());
            }
            match self.relays.exit_status(pid) {
                Some(status) => {
                    return Err(HarnessError::CommandFailed {
                        command: description,
                        status,
                        stderr: process::tail(&log),
                    })
                }
                None if Instant::now() >= deadline => {
                    return Err(HarnessError::RelayNotReady {
                        command: description,
                        seconds: RELAY_READY_TIMEOUT.as_secs(),
                        log: process::tail(&log),
                    })
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
}

/// Creates the detour veth pair, puts its bridge end on the bridge and takes the host's
/// port off it. From here until the relay runs, the host is cut off.
///
/// The relay forwards frames as the sender built them, so neither sender may leave work
/// to offloads: tx checksum offload (and with it TSO/USO) goes off on the host's `eth0`
/// and on the detour's bridge end, so every frame the relay sees is a finished,
/// MTU-sized frame with its checksums, and a lost frame is one wire packet.
fn install_detour(link: Link<'_>) -> Result<()> {
    let ul = link.underlay_netns;
    let relay_end = naming::relay_end(link.port);
    let bridge_end = naming::relay_bridge_end(link.port);
    let mtu = link.mtu.to_string();
    command::ip(&[
        "-n",
        ul,
        "link",
        "add",
        &relay_end,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        &bridge_end,
        "mtu",
        &mtu,
    ])?;
    set_tx_offload(&link.underlay_netns_path(), &bridge_end, false)?;
    set_tx_offload(&link.host_netns_path(), HOST_IFACE, false)?;
    command::ip(&["-n", ul, "link", "set", &bridge_end, "master", BRIDGE, "up"])?;
    command::ip(&["-n", ul, "link", "set", &relay_end, "up"])?;
    command::ip(&["-n", ul, "link", "set", link.port, "nomaster"])
}

/// Turns tx checksum offload (and what depends on it: TSO, USO) on or off for `iface`
/// in the netns at `netns`.
fn set_tx_offload(netns: &Path, iface: &str, on: bool) -> Result<()> {
    let mut ethtool = command::in_netns(netns, "ethtool");
    ethtool
        .args(["-K", iface, "tx"])
        .arg(if on { "on" } else { "off" });
    command::run(&mut ethtool).map(drop)
}
