//! End-to-end tests of the harness itself: hosts reach each other over the underlay, the
//! link knobs do what they say, and nothing is left behind, even by a panicking test.
//! Every test needs root and fails loudly without it.

use std::{
    net::Ipv4Addr,
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
    process::Command,
    time::Duration,
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
fn impair_delays_packets_or_says_netem_is_missing() {
    require_root();
    let ul = Underlay::builder()
        .hosts(2)
        .build()
        .expect("underlay builds");
    let (h1, h2) = (ul.host(0), ul.host(1));
    assert!(reaches(h1, h2.addr()));

    match h2.impair(0.0, 200) {
        Ok(()) => {
            let rtt = answered_rtt_ms(h1, h2.addr(), &["-W", "2"]).expect("impaired h2 answers");
            assert!(rtt >= 200.0, "rtt {rtt} ms with 200 ms of delay");
            h2.heal().expect("heal");
            let rtt = answered_rtt_ms(h1, h2.addr(), &[]).expect("healed h2 answers");
            assert!(rtt < 100.0, "rtt {rtt} ms after heal");
        }
        Err(HarnessError::NetemUnavailable { .. }) => {
            eprintln!("note: this kernel has no netem; impair() reports it as expected");
            assert!(reaches(h1, h2.addr()), "a failed impair() changed the link");
            h2.heal().expect("heal after a failed impair is harmless");
        }
        Err(err) => panic!("impair failed for another reason: {err}"),
    }
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
    assert_eq!(leftovers_of(&prefix), Vec::<String>::new());
    assert!(gone(untracked));
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
