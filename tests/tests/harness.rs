//! End-to-end tests of the harness itself: hosts reach each other over the underlay, the
//! link knobs do what they say, and nothing is left behind, even by a panicking test.
//! Every test needs root and fails loudly without it.

use std::{
    net::Ipv4Addr,
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use shoal_tests::{cleanup_leftovers, require_root, HarnessError, Host, Removed, Underlay};

/// Whether `from` gets an answer from `to` within a few one-second pings.
fn reaches(from: &Host, to: Ipv4Addr) -> bool {
    answered_rtt_ms(from, to, &[]).is_some()
}

/// The round-trip time of the first of a few pings that is answered (one lost ping on
/// a loaded machine must not fail a test that expects an answer).
fn answered_rtt_ms(from: &Host, to: Ipv4Addr, extra: &[&str]) -> Option<f64> {
    (0..3).find_map(|_| ping_rtt_ms(from, to, extra))
}

/// The round-trip time of one ping from `from` to `to`, if it was answered within 1 s.
fn ping_rtt_ms(from: &Host, to: Ipv4Addr, extra: &[&str]) -> Option<f64> {
    let to = to.to_string();
    let mut args = vec!["-c", "1", "-W", "1", "-n"];
    args.extend_from_slice(extra);
    args.push(&to);
    let out = from.exec("ping", &args).expect("ping can be started");
    if !out.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rtt = stdout.split("time=").nth(1)?.split_whitespace().next()?;
    rtt.parse().ok()
}

/// What one run of `ping -c <count>` reported.
#[derive(Debug)]
struct PingRun {
    transmitted: u32,
    received: u32,
    /// min, avg and max round trip in ms, if any ping was answered.
    rtt_ms: Option<[f64; 3]>,
}

impl PingRun {
    fn loss_pct(&self) -> f64 {
        100.0 * f64::from(self.transmitted - self.received) / f64::from(self.transmitted.max(1))
    }

    fn rtt(&self, which: usize) -> f64 {
        self.rtt_ms
            .map_or_else(|| panic!("no ping answered: {self}"), |rtt| rtt[which])
    }

    fn min_ms(&self) -> f64 {
        self.rtt(0)
    }

    fn avg_ms(&self) -> f64 {
        self.rtt(1)
    }

    fn max_ms(&self) -> f64 {
        self.rtt(2)
    }
}

impl std::fmt::Display for PingRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} answered ({:.1}% lost)",
            self.received,
            self.transmitted,
            self.loss_pct()
        )?;
        if let Some([min, avg, max]) = self.rtt_ms {
            write!(f, ", rtt min/avg/max {min:.2}/{avg:.2}/{max:.2} ms")?;
        }
        Ok(())
    }
}

/// `count` pings from `from` to `to`, one every `interval` seconds, each waited for up
/// to a second, the whole run cut short (SIGINT: ping still prints its summary) at 60 s.
fn ping_run(from: &Host, to: Ipv4Addr, count: u32, interval: &str) -> PingRun {
    let count = count.to_string();
    let to = to.to_string();
    let args = [
        "-s", "INT", "60", "ping", "-n", "-q", "-c", &count, "-i", interval, "-W", "1", &to,
    ];
    let out = from.exec("timeout", &args).expect("ping can be started");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |line: &str, after: &str| -> Option<u32> {
        line.split(", ")
            .find_map(|part| part.strip_suffix(after)?.trim().parse().ok())
    };
    let summary = stdout
        .lines()
        .find(|line| line.contains(" packets transmitted, "))
        .unwrap_or_else(|| panic!("no summary in ping's output: {out:?}"));
    let rtt_ms = stdout.lines().find_map(|line| {
        let values = line.strip_prefix("rtt min/avg/max/mdev = ")?;
        let mut values = values.split(['/', ' ']).map(|v| v.parse::<f64>());
        Some([
            values.next()?.ok()?,
            values.next()?.ok()?,
            values.next()?.ok()?,
        ])
    });
    PingRun {
        transmitted: field(summary, " packets transmitted").expect("transmitted count"),
        received: field(summary, " received").expect("received count"),
        rtt_ms,
    }
}

/// Asserts the link between `a` and `b` is plain again: 20 pings, all answered, fast.
fn assert_healthy(a: &Host, b: &Host) {
    let run = ping_run(a, b.addr(), 20, "0.05");
    eprintln!("{} -> {} healed: {run}", a.name(), b.name());
    assert_eq!(run.received, 20, "loss after heal: {run}");
    assert!(run.avg_ms() < 5.0, "slow after heal: {run}");
}

/// The PIDs of the processes in the underlay's netns.
fn underlay_pids(ul: &Underlay) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ul.underlay_netns()])
        .output()
        .expect("ip netns pids runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// The PID of the one impairment relay running in the underlay.
fn relay_pid(ul: &Underlay) -> u32 {
    let pids = underlay_pids(ul);
    let [pid] = pids[..] else {
        panic!("expected one process (the relay) in the underlay, found {pids:?}");
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "shoal-netem", "pid {pid} is not the relay");
    pid
}

/// `ip -o link show` in the netns `netns`.
fn ip_links(netns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "link", "show"])
        .output()
        .expect("ip link runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_names() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Everything still on the machine that carries `prefix`: netns, run root, mounts.
fn leftovers_of(prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = netns_names()
        .into_iter()
        .filter(|name| name.starts_with(&format!("{prefix}-")))
        .map(|name| format!("netns {name}"))
        .collect();
    let run_root = Path::new("/run/shoal-test").join(prefix);
    if run_root.exists() {
        found.push(format!("dir {}", run_root.display()));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo readable");
    found.extend(
        mountinfo
            .lines()
            .filter(|line| line.contains(&format!("{}/", run_root.display())))
            .map(|line| format!("mount {line}")),
    );
    found
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait() is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// Waits up to a second for `pid` to be gone (SIGKILL is delivered asynchronously).
fn gone(pid: u32) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Inside `host`, creates a network namespace the way the agent does for a workload
/// (an nsfs file bind-mounted under the run dir) and starts a process in it that the
/// harness does not track. Returns that process's PID.
fn start_untracked_workload(host: &Host) -> u32 {
    let ns = host.run_dir().join("workload-net");
    let script = format!(
        "touch {ns} && unshare --net={ns} true && \
         {{ nsenter --net={ns} sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; }}",
        ns = ns.display()
    );
    let out = host.sh(&script).expect("sh can be started");
    assert!(out.status.success(), "workload setup failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the script prints the workload's pid")
}

#[test]
fn hosts_ping_each_other_over_the_underlay() {
    require_root();
    let ul = Underlay::builder()
        .hosts(3)
        .build()
        .expect("underlay builds");
    for from in ul.hosts() {
        assert!(
            reaches(from, Ipv4Addr::LOCALHOST),
            "lo is down in {}",
            from.name()
        );
        for to in ul.hosts().iter().filter(|to| to.name() != from.name()) {
            assert!(
                reaches(from, to.addr()),
                "{} ({}) cannot ping {} ({})",
                from.name(),
                from.addr(),
                to.name(),
                to.addr()
            );
        }
    }
    assert_eq!(ul.host(2).addr(), Ipv4Addr::new(198, 18, 0, 3));
    assert_eq!(ul.host(2).name(), "h3");
}

#[test]
fn underlay_mtu_reaches_the_hosts() {
    require_root();
    let ul = Underlay::builder()
        .hosts(2)
        .mtu(1400)
        .build()
        .expect("underlay builds");
    let (h1, h2) = (ul.host(0), ul.host(1));
    let link = h1
        .exec("ip", &["-o", "link", "show", "dev", h1.iface()])
        .expect("ip runs");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(link.contains(" mtu 1400 "), "eth0 of h1: {link}");

    // 1372 bytes of ICMP payload + 28 of headers fill 1400 exactly; one more needs
    // fragmenting, which -M do forbids.
    assert!(reaches(h1, h2.addr()));
    assert!(answered_rtt_ms(h1, h2.addr(), &["-M", "do", "-s", "1372"]).is_some());
    assert!(ping_rtt_ms(h1, h2.addr(), &["-M", "do", "-s", "1373"]).is_none());
}

#[test]
fn cut_off_partitions_a_host_until_healed() {
    require_root();
    let ul = Underlay::builder()
        .hosts(3)
        .build()
        .expect("underlay builds");
    let (h1, h2, h3) = (ul.host(0), ul.host(1), ul.host(2));
    assert!(reaches(h1, h2.addr()));

    h2.cut_off().expect("cut_off");
    assert!(
        ping_rtt_ms(h1, h2.addr(), &[]).is_none(),
        "h1 still reaches h2"
    );
    assert!(
        ping_rtt_ms(h2, h3.addr(), &[]).is_none(),
        "h2 still reaches h3"
    );
    assert!(reaches(h1, h3.addr()), "cutting h2 off broke h1 <-> h3");

    h2.heal().expect("heal");
    assert!(reaches(h1, h2.addr()), "h1 does not reach h2 after heal");
    assert!(reaches(h2, h3.addr()), "h2 does not reach h3 after heal");
}

#[test]
fn impair_delays_frames_toward_the_host_until_healed() {
    require_root();
    let ul = Underlay::builder()
        .hosts(3)
        .build()
        .expect("underlay builds");
    let (h1, h2, h3) = (ul.host(0), ul.host(1), ul.host(2));
    assert!(reaches(h1, h2.addr()));

    h2.impair(0.0, 50).expect("impair");
    let relay = relay_pid(&ul);
    let to_h2 = ping_run(h1, h2.addr(), 10, "0.1");
    eprintln!("h1 -> h2 with 50 ms toward h2: {to_h2}");
    assert_eq!(to_h2.received, to_h2.transmitted, "{to_h2}");
    assert!(to_h2.min_ms() >= 50.0, "{to_h2}");
    assert!(to_h2.max_ms() < 200.0, "{to_h2}");
    // Replies toward h2 are the delayed half of a round trip h2 starts.
    let from_h2 = ping_run(h2, h1.addr(), 10, "0.1");
    eprintln!("h2 -> h1 with 50 ms toward h2: {from_h2}");
    assert!(from_h2.min_ms() >= 50.0, "{from_h2}");
    let h1_h3 = ping_run(h1, h3.addr(), 10, "0.1");
    eprintln!("h1 -> h3, neither impaired: {h1_h3}");
    assert_eq!(h1_h3.received, h1_h3.transmitted, "{h1_h3}");
    assert!(
        h1_h3.max_ms() < 50.0,
        "impairing h2 delayed h1 <-> h3: {h1_h3}"
    );

    h2.impair(0.0, 20)
        .expect("impair again replaces the settings");
    assert!(
        gone(relay),
        "the first relay {relay} survived the new settings"
    );
    let replaced = ping_run(h1, h2.addr(), 10, "0.1");
    eprintln!("h1 -> h2 with 20 ms toward h2: {replaced}");
    assert!(replaced.min_ms() >= 20.0, "{replaced}");
    assert!(replaced.avg_ms() < 50.0, "{replaced}");

    let relay = relay_pid(&ul);
    h2.heal().expect("heal");
    assert!(gone(relay), "relay {relay} survived heal");
    assert_healthy(h1, h2);
    assert!(
        underlay_pids(&ul).is_empty(),
        "processes left in the underlay"
    );
    let links = ip_links(ul.underlay_netns());
    assert!(!links.contains("h2-relay"), "detour veth left: {links}");
    let port = links
        .lines()
        .find(|line| line.contains(" h2@"))
        .unwrap_or_default();
    assert!(port.contains("master br0"), "h2 is not back on br0: {port}");
    let offload = h2
        .exec("ethtool", &["-k", h2.iface()])
        .expect("ethtool runs");
    let offload = String::from_utf8_lossy(&offload.stdout);
    assert!(
        offload.contains("tx-checksumming: on"),
        "tx offload of eth0 not restored: {offload}"
    );
}

#[test]
fn impair_loses_frames_toward_the_host_until_healed() {
    require_root();
    let ul = Underlay::builder()
        .hosts(2)
        .build()
        .expect("underlay builds");
    let (h1, h2) = (ul.host(0), ul.host(1));
    assert!(reaches(h1, h2.addr()));

    h2.impair(30.0, 0).expect("impair");
    let run = ping_run(h1, h2.addr(), 200, "0.01");
    eprintln!("h1 -> h2 with 30% loss toward h2: {run}");
    assert_eq!(run.transmitted, 200, "{run}");
    let loss = run.loss_pct();
    assert!((15.0..=45.0).contains(&loss), "{loss}% lost: {run}");

    // Cutting an impaired host off, then healing, restores the plain link.
    h2.cut_off().expect("cut_off");
    assert!(
        ping_rtt_ms(h1, h2.addr(), &[]).is_none(),
        "cut off h2 answers"
    );
    h2.heal().expect("heal");
    assert_healthy(h1, h2);
}

#[test]
fn tcp_crosses_impaired_links() {
    require_root();
    const BYTES: usize = 256 * 1024;
    let ul = Underlay::builder()
        .hosts(2)
        .build()
        .expect("underlay builds");
    let (h1, h2) = (ul.host(0), ul.host(1));
    // What the gossip tests use: every link impaired, so each direction crosses one
    // relay: 10% loss and 50 ms one way, 100 ms round trip.
    for host in [h1, h2] {
        host.impair(10.0, 50).expect("impair");
    }
    let rtt = ping_run(h1, h2.addr(), 20, "0.05");
    eprintln!("h1 -> h2, both with 10% loss and 50 ms: {rtt}");
    assert!(rtt.min_ms() >= 100.0, "{rtt}");
    assert!(rtt.received > 0, "{rtt}");

    let sent = h1.run_dir().join("sent");
    let received = h2.run_dir().join("received");
    let make = h1
        .sh(&format!(
            "head -c {BYTES} /dev/urandom > {}",
            sent.display()
        ))
        .expect("sh runs");
    assert!(make.status.success(), "{make:?}");
    h2.spawn(
        "sh",
        &["-c", &format!("exec nc -l 7000 > {}", received.display())],
    )
    .expect("nc listens");
    let listening = (0..250).any(|_| {
        let ss = h2.exec("ss", &["-Hltn", "sport = :7000"]).expect("ss runs");
        let up = !String::from_utf8_lossy(&ss.stdout).trim().is_empty();
        if !up {
            std::thread::sleep(Duration::from_millis(20));
        }
        up
    });
    assert!(listening, "nc does not listen on h2");

    let started = Instant::now();
    let send = h1
        .sh(&format!(
            "timeout 90 nc -N {} 7000 < {}",
            h2.addr(),
            sent.display()
        ))
        .expect("sh runs");
    assert!(send.status.success(), "nc on h1 failed: {send:?}");
    let arrived = (0..1500).any(|_| {
        let done = std::fs::metadata(&received).is_ok_and(|meta| meta.len() == BYTES as u64);
        if !done {
            std::thread::sleep(Duration::from_millis(20));
        }
        done
    });
    let elapsed = started.elapsed().as_secs_f64();
    assert!(arrived, "{BYTES} bytes did not all arrive at h2");
    eprintln!(
        "{BYTES} bytes h1 -> h2 over TCP in {elapsed:.1} s ({:.0} KiB/s)",
        BYTES as f64 / 1024.0 / elapsed
    );
    let sent = std::fs::read(&sent).expect("sent file readable");
    let received = std::fs::read(&received).expect("received file readable");
    assert!(
        sent == received,
        "the bytes h2 received differ from those sent"
    );
}

#[test]
fn dropping_an_underlay_with_an_active_relay_leaves_nothing_behind() {
    require_root();
    let ul = Underlay::builder()
        .hosts(2)
        .build()
        .expect("underlay builds");
    ul.host(0).impair(10.0, 50).expect("impair");
    let relay = relay_pid(&ul);
    let prefix = ul.prefix().to_owned();
    drop(ul);
    assert!(gone(relay), "relay {relay} survived the underlay");
    assert_eq!(leftovers_of(&prefix), Vec::<String>::new());
}

#[test]
fn kill_processes_kills_what_the_harness_started() {
    require_root();
    let ul = Underlay::builder()
        .hosts(2)
        .build()
        .expect("underlay builds");
    let (h1, h2) = (ul.host(0), ul.host(1));
    let pid = h1.spawn("sleep", &["1000"]).expect("sleep starts");
    let other = h2.spawn("sleep", &["1000"]).expect("sleep starts");
    assert!(alive(pid));
    assert_eq!(
        h1.pids(),
        vec![pid],
        "sleep should be the only process in h1"
    );
    assert!(h1.log_path(pid).is_some_and(|log| log.exists()));

    h1.kill_processes();
    assert!(!alive(pid), "sleep {pid} survived kill_processes");
    assert!(h1.pids().is_empty());
    assert!(alive(other), "h1's kill_processes killed a process of h2");
}

#[test]
fn spawn_reports_a_program_that_cannot_start() {
    require_root();
    let ul = Underlay::builder().build().expect("underlay builds");
    match ul.host(0).spawn("/nonexistent/daemon", &["--flag"]) {
        Err(HarnessError::CommandFailed { stderr, .. }) => {
            assert!(stderr.contains("/nonexistent/daemon"), "stderr: {stderr}");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
}

#[test]
fn panicking_test_leaves_nothing_behind() {
    require_root();
    let mut seen = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let ul = Underlay::builder()
            .hosts(2)
            .build()
            .expect("underlay builds");
        let tracked = ul.host(0).spawn("sleep", &["1000"]).expect("sleep starts");
        let untracked = start_untracked_workload(ul.host(1));
        seen = Some((ul.prefix().to_owned(), tracked, untracked));
        assert!(!leftovers_of(ul.prefix()).is_empty());
        panic!("deliberate panic with a live underlay");
    }));
    assert!(outcome.is_err(), "the closure should have panicked");
    let (prefix, tracked, untracked) = seen.expect("the underlay was built before the panic");

    assert_eq!(leftovers_of(&prefix), Vec::<String>::new());
    assert!(gone(tracked), "tracked process {tracked} survived");
    assert!(
        gone(untracked),
        "workload {untracked} survived in a deleted namespace"
    );
}

#[test]
fn cleanup_leftovers_removes_an_abandoned_underlay() {
    require_root();
    let ul = Underlay::builder()
        .hosts(2)
        .build()
        .expect("underlay builds");
    let prefix = ul.prefix().to_owned();
    let untracked = start_untracked_workload(ul.host(0));
    ul.host(1).impair(10.0, 50).expect("impair");
    let relay = relay_pid(&ul);
    // What a test killed by SIGKILL leaves: nothing ran Drop.
    std::mem::forget(ul);
    assert!(!leftovers_of(&prefix).is_empty());

    let removed = cleanup_leftovers(Some(&prefix)).expect("cleanup succeeds");
    for expected in [
        Removed::Netns(format!("{prefix}-h1")),
        Removed::Netns(format!("{prefix}-h2")),
        Removed::Netns(format!("{prefix}-underlay")),
        Removed::Dir(Path::new("/run/shoal-test").join(&prefix)),
    ] {
        assert!(
            removed.contains(&expected),
            "{expected} missing from {removed:?}"
        );
    }
    assert!(removed
        .iter()
        .any(|r| matches!(r, Removed::Process { pid, .. } if *pid == untracked)));
    assert!(removed.iter().any(|r| matches!(r, Removed::Mount(_))));
    assert!(removed
        .iter()
        .any(|r| matches!(r, Removed::Process { pid, comm, .. } if *pid == relay && comm == "shoal-netem")));
    assert_eq!(leftovers_of(&prefix), Vec::<String>::new());
    assert!(gone(untracked));
    assert!(gone(relay));
}

#[test]
fn underlays_built_together_do_not_collide() {
    require_root();
    let a = Underlay::builder()
        .hosts(2)
        .build()
        .expect("first underlay builds");
    let b = Underlay::builder()
        .hosts(2)
        .build()
        .expect("second underlay builds");
    assert_ne!(a.prefix(), b.prefix());
    assert_ne!(a.host(0).netns(), b.host(0).netns());
    // Same addresses on separate networks: each host only sees its own underlay.
    assert_eq!(a.host(1).addr(), b.host(1).addr());
    let b_prefix = b.prefix().to_owned();
    drop(b);
    assert_eq!(leftovers_of(&b_prefix), Vec::<String>::new());
    assert!(reaches(a.host(0), a.host(1).addr()), "dropping b broke a");
}

#[test]
fn build_rejects_impossible_settings() {
    require_root();
    for builder in [
        Underlay::builder().hosts(0),
        Underlay::builder().hosts(255),
        Underlay::builder().mtu(40),
    ] {
        match builder.build() {
            Err(HarnessError::InvalidConfig(message)) => assert!(!message.is_empty()),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
}
