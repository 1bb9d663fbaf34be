//! End to end: `shoal_guard` attached to a host's `eth0` counts the real packets
//! another host sends it, drops TCP connections to a blocked port, lets them
//! through again once unblocked, and keeps its blocklist in pinned maps across a
//! reload. Needs root, the eBPF object (`cargo xtask build-ebpf`), `nc` and
//! `bpftool`.

use std::error::Error;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_agent::ebpf::{ensure_bpffs, Guard, BPFFS_ROOT};
use shoal_control::objects::Protocol;
use shoal_tests::{require_root, Host, Underlay};

type TestResult = Result<(), Box<dyn Error>>;

/// Where host 1's `nc` listens.
const PORT: u16 = 7070;

#[test]
fn guard_counts_and_drops_real_packets() -> TestResult {
    require_root();
    let ul = Underlay::builder().hosts(2).build()?;
    let (h1, h2) = (ul.host(0), ul.host(1));
    // Pinning needs a bpffs; the agent mounts one at start when the host has none.
    ensure_bpffs(Path::new(BPFFS_ROOT))?;
    let pins = PinDir(Path::new(BPFFS_ROOT).join(format!("{}-guard", ul.prefix())));

    let port = PORT.to_string();
    h1.spawn("nc", &["-l", "-k", &port])?;
    wait_until_connects(h2, h1.addr(), Duration::from_secs(10))?;

    let mut guard = attach_in(h1, &pins.0)?;
    assert_program_loaded()?;

    // ICMP: every echo request shows up in the ICMP counter.
    let before = guard.stats()?;
    let ping = h2.exec(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", &h1.addr().to_string()],
    )?;
    assert!(ping.status.success(), "ping h1 from h2 failed: {ping:?}");
    let after = guard.stats()?;
    assert!(
        after.icmp.packets >= before.icmp.packets + 3,
        "3 echo requests should be counted as ICMP: before {before:?}, after {after:?}"
    );

    // TCP to an unblocked port works and is counted. Blocking the same port for
    // UDP does not touch TCP: the protocol is part of the key.
    guard.block_port(PORT, Protocol::Udp)?;
    let before = guard.stats()?;
    assert!(
        connects(h2, h1.addr())?,
        "TCP to unblocked port {PORT} should connect"
    );
    let after = guard.stats()?;
    assert!(
        after.tcp.packets > before.tcp.packets,
        "TCP not counted: {after:?}"
    );
    assert_eq!(
        after.dropped, before.dropped,
        "nothing should be dropped yet"
    );
    guard.unblock_port(PORT, Protocol::Udp)?;

    // Blocked: the SYNs are dropped, the connection times out, drops are counted.
    guard.block_port(PORT, Protocol::Tcp)?;
    let before = guard.stats()?;
    assert!(
        !connects(h2, h1.addr())?,
        "TCP to blocked port {PORT} should fail"
    );
    let after = guard.stats()?;
    assert!(
        after.dropped.packets > before.dropped.packets,
        "drops should be counted: before {before:?}, after {after:?}"
    );
    assert_eq!(guard.blocked_ports()?, vec![(PORT, Protocol::Tcp)]);

    // A reload (an agent restart) finds the blocklist in the pinned map.
    drop(guard);
    let mut guard = attach_in(h1, &pins.0)?;
    assert_eq!(guard.blocked_ports()?, vec![(PORT, Protocol::Tcp)]);
    assert!(
        !connects(h2, h1.addr())?,
        "port {PORT} should stay blocked after a reload"
    );

    // Unblocked: it works again and nothing more is dropped.
    guard.unblock_port(PORT, Protocol::Tcp)?;
    let before = guard.stats()?;
    assert!(
        connects(h2, h1.addr())?,
        "TCP to unblocked port {PORT} should connect again"
    );
    let after = guard.stats()?;
    assert_eq!(after.dropped, before.dropped, "no drops after unblocking");
    assert!(guard.blocked_ports()?.is_empty());
    // Unblocking twice is fine.
    guard.unblock_port(PORT, Protocol::Tcp)?;

    eprintln!("guard stats at the end: {:?}", guard.stats()?);
    drop(guard);
    Ok(())
}

/// Attaches the guard to `host`'s `eth0` from a thread that has entered the
/// host's network namespace (`setns` changes only the calling thread).
fn attach_in(host: &Host, pin_dir: &Path) -> Result<Guard, Box<dyn Error>> {
    let netns = host.netns_path();
    let iface = host.iface().to_owned();
    let pin_dir = pin_dir.to_path_buf();
    let worker = std::thread::spawn(move || -> Result<Guard, String> {
        let ns = File::open(&netns).map_err(|e| format!("open {}: {e}", netns.display()))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns into {}: {e}", netns.display()))?;
        Guard::load_and_attach(&iface, Some(&pin_dir)).map_err(|e| e.to_string())
    });
    let guard = worker
        .join()
        .map_err(|_| "the thread attaching the guard panicked")??;
    Ok(guard)
}

/// `bpftool` sees a loaded program named `shoal_guard`.
fn assert_program_loaded() -> TestResult {
    let out = std::process::Command::new("bpftool")
        .args(["prog", "show", "name", "shoal_guard"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("sched_cls") && stdout.contains("shoal_guard"),
        "bpftool does not show shoal_guard: {out:?}"
    );
    Ok(())
}

/// Whether a TCP connection from `from` to `to`:PORT succeeds within 2 s.
fn connects(from: &Host, to: Ipv4Addr) -> Result<bool, Box<dyn Error>> {
    let out = from.exec(
        "timeout",
        &[
            "5",
            "nc",
            "-z",
            "-w",
            "2",
            &to.to_string(),
            &PORT.to_string(),
        ],
    )?;
    Ok(out.status.success())
}

/// Waits for the listener on `to` to accept connections.
fn wait_until_connects(from: &Host, to: Ipv4Addr, limit: Duration) -> TestResult {
    let start = Instant::now();
    while start.elapsed() < limit {
        if connects(from, to)? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(
        format!("nothing listens on {to}:{PORT} after {limit:?} (is netcat-openbsd installed?)")
            .into(),
    )
}

/// The test's bpffs pin directory, removed at the end whatever happens.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = Guard::remove_pins(&self.0) {
            eprintln!("cannot remove pins under {}: {e}", self.0.display());
        }
    }
}
