//! Admission of TCP connections on ports anyone on the network can reach
//! (gossip's 7946, the metrics port): at most so many connections at once,
//! and fewer per peer address, so one peer (or a flood of idle connections)
//! cannot take every file descriptor or byte of memory; accept errors such
//! as EMFILE back off instead of spinning. Connections over a limit are
//! closed at once and counted.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

/// How many connections a listener holds at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_peer: usize,
}

/// First and longest pause after a failed accept (EMFILE, ENFILE, ENOBUFS...).
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a listener admitted and refused so far.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    pub accepted: AtomicU64,
    /// Closed at once: over the total or the peer's limit.
    pub refused: AtomicU64,
    /// Failed accepts (each followed by a pause).
    pub accept_errors: AtomicU64,
}

/// Counts open connections, overall and per peer address.
#[derive(Clone, Debug)]
pub struct Admission {
    limits: Limits,
    open: Arc<Mutex<Open>>,
    stats: Arc<AdmissionStats>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    peer: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_peer.remove(&self.peer);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            open: Arc::default(),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<AdmissionStats> {
        self.stats.clone()
    }

    /// A place for a connection from `peer`, if both limits allow it.
    pub fn admit(&self, peer: IpAddr) -> Option<Permit> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let of_peer = open.per_peer.get(&peer).copied().unwrap_or(0);
        if open.total >= self.limits.total || of_peer >= self.limits.per_peer {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        open.total += 1;
        open.per_peer.insert(peer, of_peer + 1);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            peer,
            open: self.open.clone(),
        })
    }

    /// Accepts connections on `listener` forever, handing each admitted one
    /// to `serve` (on a task of `connections`) with its permit; the others
    /// are closed at once. A failed accept pauses the loop, 5 ms doubling up
    /// to 1 s, so a full file table does not turn into a busy loop.
    pub async fn serve<F, Fut>(self, listener: TcpListener, connections: TaskTracker, serve: F)
    where
        F: Fn(TcpStream, SocketAddr, Permit) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    backoff = BACKOFF_FIRST;
                    match self.admit(peer.ip()) {
                        Some(permit) => {
                            connections.spawn(serve(stream, peer, permit));
                        }
                        None => drop(stream),
                    }
                }
                Err(error) => {
                    self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "accepting on {:?} failed ({error}); pausing {backoff:?}",
                        listener.local_addr().ok()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn limits_hold_overall_and_per_peer_and_free_on_drop() {
        let admission = Admission::new(Limits {
            total: 3,
            per_peer: 2,
        });
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let c: IpAddr = "198.18.0.3".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert!(admission.admit(a).is_none(), "a third from one peer");
        let _b1 = admission.admit(b).unwrap();
        assert!(admission.admit(c).is_none(), "a fourth overall");
        drop(a1);
        assert!(admission.admit(a).is_some());
        let stats = admission.stats();
        assert_eq!(stats.accepted.load(Ordering::Relaxed), 4);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admission = Admission::new(Limits {
            total: 10,
            per_peer: 2,
        });
        let stats = admission.stats();
        let server = tokio::spawn(admission.serve(
            listener,
            TaskTracker::new(),
            |stream, _, permit| async move {
                // Hold the connection (and the permit) until the client goes.
                let mut stream = stream;
                let _ = stream.read(&mut [0u8; 1]).await;
                drop(permit);
            },
        ));
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // The three refused ones read EOF quickly; the two admitted do not.
        let mut closed = 0;
        for stream in &mut held {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte));
            if let Ok(Ok(0)) = read.await {
                closed += 1;
            }
        }
        assert_eq!(closed, 3);
        assert_eq!(stats.refused.load(Ordering::Relaxed), 3);
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Places are free again.
        let mut again = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), again.read(&mut byte));
        assert!(
            read.await.is_err(),
            "a connection after the others left was refused"
        );
        server.abort();
    }
}
