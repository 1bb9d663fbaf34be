//! The agent's lifecycle end to end: SIGTERM while the real CLI keeps
//! sending it requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_tests::swarm::{cli, create, form, start_agent, text, wait_running};
use shoal_tests::{require_root, Underlay};

/// How long a stopping agent may take: it answers what is in flight, then
/// stops gossip, the overlay, the session and the manager role.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// What the CLI prints when no agent listens (the socket is gone).
const GONE: &str = "cannot reach the shoal agent";

/// One CLI request and what came of it.
struct Call {
    args: &'static [&'static str],
    started: Instant,
    finished: Instant,
    ok: bool,
    output: String,
}

/// A manager serving a stream of CLI requests gets SIGTERM: every request
/// is answered, or finds the agent already gone (the socket file removed),
/// and none is cut off halfway; the agent exits within the bound.
#[test]
fn sigterm_answers_requests_in_flight_and_exits_within_the_bound() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let h: Vec<_> = ul.hosts().iter().collect();
    let pid = start_agent(h[0]).expect("agent on h1");
    start_agent(h[1]).expect("agent on h2");
    form(h[0], &[], &[h[1]]);
    create(
        h[0],
        "web",
        &["--replicas", "2"],
        &["sh", "-c", "while true; do echo hi; sleep 0.2; done"],
    );
    wait_running(h[0], "web", 2, Duration::from_secs(30));

    // Reads, and `service logs`, which waits on the nodes' heartbeats, so
    // several are always in flight.
    let logs: &[&str] = &["service", "logs", "--tail", "2", "web"];
    let requests: [&[&str]; 6] = [
        &["node", "ls"],
        &["service", "ps", "web"],
        &["network", "ls"],
        logs,
        logs,
        logs,
    ];
    let stop = AtomicBool::new(false);
    let calls = Mutex::new(Vec::new());
    let (term_at, exited_in) = std::thread::scope(|s| {
        for args in requests {
            let (stop, calls, host) = (&stop, &calls, h[0]);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let out = cli(host, args);
                    let call = Call {
                        args,
                        started,
                        finished: Instant::now(),
                        ok: out.status.success(),
                        output: text(&out),
                    };
                    calls.lock().unwrap().push(call);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        let term_at = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM the agent");
        let mut exited_in = None;
        while term_at.elapsed() < EXIT_BOUND * 3 {
            if h[0].exit_status(pid).is_some() {
                exited_in = Some(term_at.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the clients find it gone, then stop them.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        (term_at, exited_in)
    });

    let calls = calls.into_inner().unwrap();
    let Some(exited_in) = exited_in else {
        panic!(
            "the agent did not exit within {:?} of SIGTERM",
            EXIT_BOUND * 3
        );
    };
    println!("agent exited {} ms after SIGTERM", exited_in.as_millis());
    let broken: Vec<String> = calls
        .iter()
        .filter(|c| !c.ok && !c.output.contains(GONE))
        .map(|c| format!("`shoal {}`: {}", c.args.join(" "), c.output.trim()))
        .collect();
    assert!(
        broken.is_empty(),
        "requests failed other than by finding the agent gone:\n{}",
        broken.join("\n")
    );
    let in_flight = calls
        .iter()
        .filter(|c| c.started < term_at && c.finished > term_at)
        .count();
    let answered = calls.iter().filter(|c| c.ok).count();
    let gone = calls.iter().filter(|c| !c.ok).count();
    println!(
        "{answered} requests answered ({in_flight} of them in flight at SIGTERM), \
         {gone} found the agent gone"
    );
    assert!(answered > 10, "too few requests were made: {answered}");
    assert!(in_flight > 0, "no request was in flight at SIGTERM");
    assert!(gone > 0, "no request was made after the agent stopped");
    assert!(
        exited_in < EXIT_BOUND,
        "the agent took {exited_in:?} to exit after SIGTERM (bound {EXIT_BOUND:?})"
    );
}
