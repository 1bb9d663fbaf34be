//! The simulated network: per-packet loss, delay and jitter, partitions as
//! groups of nodes that only reach their own group, and the mapping between
//! node indexes and gossip addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How every link behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// Probability that a datagram is lost (0.0-1.0).
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`, per datagram.
    pub jitter: Duration,
}

impl LinkModel {
    /// A quiet LAN: 0.2 ms one way, up to 0.1 ms of jitter, no loss.
    pub fn lan() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::from_micros(200),
            jitter: Duration::from_micros(100),
        }
    }

    /// A bad network: `loss` on every datagram, `delay` one way, 10% jitter.
    pub fn lossy(loss: f64, delay: Duration) -> Self {
        Self {
            loss,
            delay,
            jitter: delay / 10,
        }
    }
}

/// The gossip port of every simulated node.
const GOSSIP_PORT: u16 = 7946;

/// The gossip address of node `index`: 10.x.y.z:7946.
pub fn node_addr(index: usize) -> SocketAddr {
    let [_, a, b, c] = u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, a, b, c), GOSSIP_PORT))
}

/// The node index behind a simulated gossip address.
pub fn node_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == GOSSIP_PORT => {
            let [ten, a, b, c] = v4.ip().octets();
            (ten == 10).then(|| usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))
        }
        _ => None,
    }
}

/// Links and partitions between `nodes` nodes.
pub(crate) struct Network {
    pub(crate) link: LinkModel,
    group: Vec<u32>,
}

impl Network {
    pub(crate) fn new(nodes: usize, link: LinkModel) -> Self {
        Self {
            link,
            group: vec![0; nodes],
        }
    }

    /// Splits the cluster: each listed group reaches only itself; nodes in
    /// no group form one more group.
    pub(crate) fn partition(&mut self, groups: &[Vec<usize>]) {
        self.group.iter_mut().for_each(|g| *g = 0);
        for (number, members) in groups.iter().enumerate() {
            for &node in members {
                if let Some(slot) = self.group.get_mut(node) {
                    *slot = u32::try_from(number + 1).unwrap_or(u32::MAX);
                }
            }
        }
    }

    /// Every node reaches every node again.
    pub(crate) fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    pub(crate) fn connected(&self, from: usize, to: usize) -> bool {
        self.group.get(from) == self.group.get(to)
    }

    /// When a datagram sent now arrives, or `None` if it is lost.
    pub(crate) fn datagram(
        &self,
        from: usize,
        to: usize,
        rng: &mut ChaCha8Rng,
    ) -> Option<Duration> {
        if !self.connected(from, to) {
            return None;
        }
        if self.link.loss > 0.0 && rng.random::<f64>() < self.link.loss {
            return None;
        }
        Some(self.link.delay + self.jitter(rng))
    }

    /// When a stream message sent now arrives (a connection handshake
    /// first), or `None` if the peer is unreachable. Streams retransmit, so
    /// loss only adds delay.
    pub(crate) fn stream(&self, from: usize, to: usize, rng: &mut ChaCha8Rng) -> Option<Duration> {
        if !self.connected(from, to) {
            return None;
        }
        let mut delay = self.link.delay * 3 + self.jitter(rng);
        while self.link.loss > 0.0 && rng.random::<f64>() < self.link.loss {
            delay += (self.link.delay * 2).max(Duration::from_millis(200));
        }
        Some(delay)
    }

    fn jitter(&self, rng: &mut ChaCha8Rng) -> Duration {
        let max = u64::try_from(self.link.jitter.as_nanos()).unwrap_or(u64::MAX);
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.random_range(0..=max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_back_to_indexes() {
        for index in [0, 1, 255, 256, 999, 70_000] {
            assert_eq!(node_index(node_addr(index)), Some(index));
        }
        assert_eq!(node_index(SocketAddr::from(([192, 168, 0, 1], 7946))), None);
    }

    #[test]
    fn partitions_cut_only_between_groups() {
        let mut net = Network::new(4, LinkModel::lan());
        net.partition(&[vec![0, 1]]);
        assert!(net.connected(0, 1) && net.connected(2, 3));
        assert!(!net.connected(1, 2));
        net.heal();
        assert!(net.connected(1, 2));
    }
}
