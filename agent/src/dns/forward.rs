//! Sending queries we do not answer to the upstream nameservers, and finding
//! those in a resolv.conf.
//!
//! Forwarding sockets are opened on tokio's threads, which never enter a
//! namespace, so they live in the agent's own namespace (the host's): the
//! upstreams are reached the way the host reaches them, loopback included.

use shoal_control::error_chain::ErrorChain;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

/// The DNS header is 12 bytes; its first two are the id.
const HEADER_LEN: usize = 12;

/// The upstream nameservers of one server.
#[derive(Clone, Debug)]
pub(crate) struct Upstreams {
    addrs: Vec<SocketAddr>,
    /// For one forward, all upstreams included.
    timeout: Duration,
}

impl Upstreams {
    pub(crate) fn new(addrs: Vec<SocketAddr>, timeout: Duration) -> Self {
        Upstreams { addrs, timeout }
    }

    /// Forwards `query` over UDP and returns the first upstream's reply with
    /// the client's id put back; `None` when none answered within the
    /// timeout. The upstreams are asked in order, each given an equal share of
    /// the timeout; one that refuses at once (ICMP port unreachable) hands
    /// over to the next at once.
    pub(crate) async fn udp(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.forward(query, |upstream, query, id, until| async move {
            udp_attempt(upstream, &query, id, until).await
        })
        .await
    }

    /// Like [`Upstreams::udp`], over TCP, for queries that came over TCP
    /// (their answers may not fit in a datagram).
    pub(crate) async fn tcp(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.forward(query, |upstream, query, id, until| async move {
            tcp_attempt(upstream, &query, id, until).await
        })
        .await
    }

    async fn forward<F, Fut>(&self, query: &[u8], attempt: F) -> Option<Vec<u8>>
    where
        F: Fn(SocketAddr, Vec<u8>, u16, Instant) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<Option<Vec<u8>>>>,
    {
        if query.len() < HEADER_LEN || self.addrs.is_empty() {
            return None;
        }
        // A fresh random id (and, over UDP, a fresh source port) per forward:
        // an off-path spoofer cannot guess either from the client's query.
        let id: u16 = rand::random();
        let mut ours = query.to_vec();
        ours[..2].copy_from_slice(&id.to_be_bytes());
        let deadline = Instant::now() + self.timeout;
        let share = self.timeout / u32::try_from(self.addrs.len()).unwrap_or(u32::MAX);
        for (i, &upstream) in self.addrs.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let until = if i + 1 == self.addrs.len() {
                deadline
            } else {
                (now + share).min(deadline)
            };
            match attempt(upstream, ours.clone(), id, until).await {
                Ok(Some(mut reply)) => {
                    reply[..2].copy_from_slice(&query[..2]);
                    return Some(reply);
                }
                Ok(None) => tracing::debug!(%upstream, "DNS upstream did not answer in time"),
                Err(e) => tracing::debug!(%upstream, "DNS upstream failed: {}", e.chain()),
            }
        }
        None
    }
}

/// A reply to our query: long enough, our id, the QR bit set.
fn is_reply_to(bytes: &[u8], id: u16) -> bool {
    bytes.len() >= HEADER_LEN && bytes[..2] == id.to_be_bytes() && bytes[2] & 0x80 != 0
}

fn unspecified_for(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// `Ok(None)` on timeout.
async fn udp_attempt(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    until: Instant,
) -> std::io::Result<Option<Vec<u8>>> {
    let socket = UdpSocket::bind(unspecified_for(upstream)).await?;
    // Connected: the kernel drops datagrams from anyone else, and reports the
    // upstream's ICMP errors to us.
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let Ok(received) = timeout_at(until, socket.recv(&mut buf)).await else {
            return Ok(None);
        };
        let n = received?;
        if is_reply_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(Some(buf));
        }
    }
}

/// `Ok(None)` on timeout.
async fn tcp_attempt(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    until: Instant,
) -> std::io::Result<Option<Vec<u8>>> {
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        loop {
            let len = stream.read_u16().await?;
            let mut reply = vec![0u8; usize::from(len)];
            stream.read_exact(&mut reply).await?;
            if is_reply_to(&reply, id) {
                return Ok(reply);
            }
        }
    };
    match timeout_at(until, exchange).await {
        Ok(result) => result.map(Some),
        Err(_) => Ok(None),
    }
}

/// The nameservers of a resolv.conf, in order, on port 53, duplicates
/// removed. Only parses: the caller decides what to do with none (glibc
/// would use 127.0.0.1). Loopback nameservers (a local caching resolver,
/// systemd-resolved's 127.0.0.53) are kept on purpose: forwards leave from
/// the agent's namespace, where they are reachable, never from the task's.
/// glibc uses only the first three; we keep them all and try them in order.
/// An IPv6 address may carry a zone (`fe80::1%eth0`, or a numeric index).
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_nameserver) else {
            continue;
        };
        if !upstreams.contains(&addr) {
            upstreams.push(addr);
        }
    }
    upstreams
}

fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    let (ip, zone) = match word.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (word, None),
    };
    match (ip.parse::<IpAddr>().ok()?, zone) {
        (IpAddr::V4(v4), None) => Some((v4, 53).into()),
        (IpAddr::V6(v6), None) => Some((v6, 53).into()),
        (IpAddr::V6(v6), Some(zone)) => {
            let scope = match zone.parse::<u32>() {
                Ok(index) => index,
                Err(_) => nix::net::if_::if_nametoindex(zone).ok()?,
            };
            Some(SocketAddrV6::new(v6, 53, 0, scope).into())
        }
        (IpAddr::V4(_), Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "\
# generated
search example.com
nameserver 10.0.0.2
nameserver   127.0.0.53   # systemd-resolved
options ndots:0 edns0
nameserver 2001:db8::1
nameserver 10.0.0.2
;nameserver 10.0.0.3
nameserver fe80::1%7
nameserver fe80::1%no-such-interface0
nameserver not-an-address
nameserver
domain nameserver
";
        let expected: Vec<SocketAddr> = vec![
            "10.0.0.2:53".parse().expect("addr"),
            "127.0.0.53:53".parse().expect("addr"),
            "[2001:db8::1]:53".parse().expect("addr"),
            SocketAddrV6::new("fe80::1".parse().expect("addr"), 53, 0, 7).into(),
        ];
        assert_eq!(upstreams_from_resolv_conf(text), expected);
        assert!(upstreams_from_resolv_conf("").is_empty());
    }

    #[test]
    fn replies_are_matched_by_id_and_qr() {
        let mut reply = [0u8; 12];
        reply[..2].copy_from_slice(&0xbeefu16.to_be_bytes());
        assert!(!is_reply_to(&reply, 0xbeef), "QR not set: a query");
        reply[2] = 0x80;
        assert!(is_reply_to(&reply, 0xbeef));
        assert!(!is_reply_to(&reply, 0xbeee));
        assert!(!is_reply_to(&reply[..11], 0xbeef));
    }
}
