//! `shoal-netem`: a userspace stand-in for the netem qdisc, for kernels without
//! sch_netem. It joins two interfaces frame by frame through AF_PACKET sockets and
//! impairs one direction: frames toward the host are lost with a given probability and
//! the others held for a fixed delay, in order. Frames from the host pass untouched.
//!
//! `Host::impair` runs it in the underlay netns between the host's port (detached from
//! the bridge) and a veth whose peer is on the bridge. It prints `ready` once both
//! sockets are bound, then counters every few seconds while traffic flows.

mod impairment;
mod socket;

use std::{
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{impairment::Impairment, socket::PacketSocket};

const USAGE: &str = "usage: shoal-netem <host-port> <bridge-side> <loss-pct> <delay-ms> <seed>

Relays every frame between <host-port> (a veth whose peer is the host) and <bridge-side>
(a veth whose peer is on the bridge). Frames toward the host are lost with probability
<loss-pct> percent (0 to 100) and the others delayed by <delay-ms> milliseconds; <seed>
seeds the loss decisions.";

/// Frames held toward the host at once; more are dropped, like netem's `limit`.
const QUEUE_LIMIT: usize = 10_000;
/// Receive buffer: the largest frame a 65535-byte MTU allows, and room for a VLAN tag.
const FRAME_BUFFER_BYTES: usize = 65_536 + 64;
/// How often counters are printed while they change.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The command line.
#[derive(Debug, Clone, PartialEq)]
struct Args {
    host_port: String,
    bridge_side: String,
    loss_pct: f64,
    delay: Duration,
    seed: u64,
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    let [host_port, bridge_side, loss_pct, delay_ms, seed] = args else {
        bail!("expected 5 arguments, got {}\n{USAGE}", args.len());
    };
    let loss_pct: f64 = loss_pct
        .parse()
        .with_context(|| format!("loss `{loss_pct}` is not a number\n{USAGE}"))?;
    if !(0.0..=100.0).contains(&loss_pct) {
        bail!("loss must be between 0 and 100 percent, not {loss_pct}");
    }
    let delay_ms: u64 = delay_ms
        .parse()
        .with_context(|| format!("delay `{delay_ms}` is not a whole number of ms\n{USAGE}"))?;
    let seed = seed
        .parse()
        .with_context(|| format!("seed `{seed}` is not a 64-bit unsigned number\n{USAGE}"))?;
    Ok(Args {
        host_port: host_port.clone(),
        bridge_side: bridge_side.clone(),
        loss_pct,
        delay: Duration::from_millis(delay_ms),
        seed,
    })
}

/// Counters of one direction of the relay.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    /// Dropped by the kernel before the relay read them: the relay fell behind.
    overrun: AtomicU64,
    lost: AtomicU64,
    over_limit: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    truncated: AtomicU64,
    checksum_pending: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "{} received, {} overrun, {} lost, {} over the queue limit, {} sent, \
             {} send errors, {} truncated, {} with checksum left to offload",
            get(&self.received),
            get(&self.overrun),
            get(&self.lost),
            get(&self.over_limit),
            get(&self.sent),
            get(&self.send_errors),
            get(&self.truncated),
            get(&self.checksum_pending),
        )
    }
}

/// A frame toward the host, and when it is due out.
type Held = (Instant, Vec<u8>);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&args)?;
    let host = PacketSocket::open(&args.host_port)?;
    let bridge = PacketSocket::open(&args.bridge_side)?;
    let impairment = Impairment::new(args.loss_pct, args.delay, args.seed);
    let from_host = Counters::default();
    let toward_host = Counters::default();
    println!(
        "ready: relaying {} <-> {}; toward the host {}% loss, {} ms delay (seed {})",
        host.iface(),
        bridge.iface(),
        args.loss_pct,
        args.delay.as_millis(),
        args.seed
    );

    thread::scope(|scope| {
        scope.spawn(|| relay_from_host(&host, &bridge, &from_host));
        if impairment.delays() {
            let (queue, held) = mpsc::sync_channel::<Held>(QUEUE_LIMIT);
            scope
                .spawn(|| relay_toward_host(&bridge, &host, impairment, Some(queue), &toward_host));
            scope.spawn(|| deliver_held(&host, held, &toward_host));
        } else {
            scope.spawn(|| relay_toward_host(&bridge, &host, impairment, None, &toward_host));
        }
        report([(&host, &from_host), (&bridge, &toward_host)])
    })
}

/// Host to bridge: every frame, at once.
fn relay_from_host(host: &PacketSocket, bridge: &PacketSocket, counters: &Counters) -> ! {
    let mut buf = vec![0; FRAME_BUFFER_BYTES];
    loop {
        let Some(frame) = receive(host, &mut buf, counters) else {
            continue;
        };
        send(bridge, frame, counters);
    }
}

/// Bridge to host: lose some frames; send the others at once, or queue them for
/// `deliver_held` when there is a delay.
fn relay_toward_host(
    bridge: &PacketSocket,
    host: &PacketSocket,
    mut impairment: Impairment,
    queue: Option<SyncSender<Held>>,
    counters: &Counters,
) -> ! {
    let mut buf = vec![0; FRAME_BUFFER_BYTES];
    loop {
        let Some(frame) = receive(bridge, &mut buf, counters) else {
            continue;
        };
        let Some(due) = impairment.schedule(Instant::now()) else {
            Counters::bump(&counters.lost);
            continue;
        };
        let Some(queue) = &queue else {
            send(host, frame, counters);
            continue;
        };
        match queue.try_send((due, frame.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Counters::bump(&counters.over_limit),
            Err(TrySendError::Disconnected(_)) => fail("toward the host", "the delay queue closed"),
        }
    }
}

/// Sends held frames to the host when they are due, in the order they came.
fn deliver_held(host: &PacketSocket, held: mpsc::Receiver<Held>, counters: &Counters) -> ! {
    loop {
        let Ok((due, frame)) = held.recv() else {
            fail("toward the host", "the delay queue closed");
        };
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        send(host, &frame, counters);
    }
}

/// The next frame worth forwarding from `socket`, or `None` for one that is not (the
/// caller just asks again). Exits the process on an error that will not go away.
fn receive<'b>(socket: &PacketSocket, buf: &'b mut [u8], counters: &Counters) -> Option<&'b [u8]> {
    match socket.recv(buf) {
        Ok(received) => {
            Counters::bump(&counters.received);
            if received.checksum_pending {
                Counters::bump(&counters.checksum_pending);
            }
            if received.truncated {
                Counters::bump(&counters.truncated);
                return None;
            }
            Some(received.frame)
        }
        // The interface went down (`Host::cut_off`); the socket resumes when it is up.
        Err(err) if err.raw_os_error() == Some(libc::ENETDOWN) => {
            eprintln!("shoal-netem: {} went down", socket.iface());
            None
        }
        Err(err) => fail(socket.iface(), &format!("receive: {err}")),
    }
}

/// Sends `frame`; a frame that cannot go out (interface down, peer backlog full) is
/// counted and dropped, as a wire would.
fn send(socket: &PacketSocket, frame: &[u8], counters: &Counters) {
    match socket.send(frame) {
        Ok(()) => Counters::bump(&counters.sent),
        Err(_) => Counters::bump(&counters.send_errors),
    }
}

/// Prints the counters every `REPORT_INTERVAL` in which they changed. Each socket comes
/// with the counters of the direction it receives.
fn report(sources: [(&PacketSocket, &Counters); 2]) -> ! {
    let [(_, from_host), (_, toward_host)] = sources;
    let mut last = String::new();
    loop {
        thread::sleep(REPORT_INTERVAL);
        for (socket, counters) in sources {
            match socket.take_drops() {
                Ok(drops) => {
                    counters.overrun.fetch_add(drops, Ordering::Relaxed);
                }
                Err(err) => eprintln!("shoal-netem: {err}"),
            }
        }
        let now = format!(
            "from the host: {}; toward the host: {}",
            from_host.summary(),
            toward_host.summary()
        );
        if now != last {
            println!("{now}");
            last = now;
        }
    }
}

fn fail(what: &str, why: &str) -> ! {
    eprintln!("shoal-netem: {what}: {why}; exiting, the link is broken until heal");
    let _ = io::Write::flush(&mut io::stdout());
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn parses_interfaces_loss_delay_and_seed() {
        let parsed = parse_args(&args(&["h2", "h2-relay", "10.5", "50", "7"])).expect("valid");
        assert_eq!(
            parsed,
            Args {
                host_port: "h2".into(),
                bridge_side: "h2-relay".into(),
                loss_pct: 10.5,
                delay: Duration::from_millis(50),
                seed: 7,
            }
        );
    }

    #[test]
    fn rejects_impossible_arguments_with_the_usage() {
        for bad in [
            &["h2", "h2-relay", "10", "50"][..],
            &["h2", "h2-relay", "101", "50", "7"],
            &["h2", "h2-relay", "NaN", "50", "7"],
            &["h2", "h2-relay", "10", "-1", "7"],
            &["h2", "h2-relay", "10", "50", "seed"],
        ] {
            let err = parse_args(&args(bad)).expect_err("invalid arguments");
            assert!(!format!("{err:#}").is_empty(), "{bad:?}");
        }
        let err = parse_args(&args(&["h2"])).expect_err("too few");
        assert!(err.to_string().contains("usage: shoal-netem"), "{err}");
    }
}
