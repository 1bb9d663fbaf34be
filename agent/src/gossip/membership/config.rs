//! Membership tuning: SWIM probe timing, suspicion, gossip fan-out and the
//! extensions (periodic announce, announce to dead members, state sync).
//! `MembershipConfig::lan()` holds the values measured in the simulation;
//! the foca config is derived from it for the current cluster size.

use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// How a node probes, suspects and gossips.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipConfig {
    /// Every period each node pings one member (round robin over a shuffled
    /// list); a member that did not answer by the next period is suspect.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    /// Above the worst round-trip time expected on the gossip network.
    pub probe_rtt: Duration,
    /// How many members are asked to probe indirectly.
    pub indirect_probes: NonZeroUsize,
    /// A suspect is declared dead after
    /// `suspicion_multiplier × max(1, log10(cluster size)) × probe_period`
    /// unless it refutes the suspicion.
    pub suspicion_multiplier: f64,
    /// How often membership updates and broadcasts are pushed to
    /// `gossip_fanout` random members (only when there is something to say).
    pub gossip_interval: Duration,
    /// Members reached per gossip round.
    pub gossip_fanout: NonZeroUsize,
    /// Each membership update or broadcast is gossiped
    /// `transmission_multiplier × log10(n + 1)` times by every member that
    /// learns it (memberlist uses 4), and at least `min_transmissions`.
    pub transmission_multiplier: f64,
    pub min_transmissions: u8,
    /// After refuting a suspicion, how many more gossip rounds carry the
    /// refutation (foca sends one at once).
    pub refute_rounds: u8,
    /// How often a node asks one random member for its member list.
    pub announce_interval: Duration,
    /// How often a node knocks on two members it believes dead, so that the
    /// two sides of a healed partition find each other again.
    pub announce_down_interval: Duration,
    /// How often a node exchanges its full member list with a random member
    /// over the stream transport (memberlist's push-pull).
    pub sync_interval: Duration,
    /// While a node knows no live member, how often it re-announces to its
    /// seeds.
    pub rejoin_interval: Duration,
    /// How long a dead identity is remembered.
    pub remove_down_after: Duration,
    /// Largest datagram produced or accepted (before the envelope).
    pub max_packet_size: NonZeroUsize,
}

impl MembershipConfig {
    /// Values for a LAN cluster, measured with `examples/gossip_sim.rs`:
    /// a crashed node is dead at every survivor of a 5-node cluster in about
    /// 2 s (Swarm's memberlist needs 5-6 s), and with 10% loss and 50 ms
    /// one-way delay on every link no live node is declared dead.
    pub fn lan() -> Self {
        Self {
            probe_period: Duration::from_millis(400),
            probe_rtt: Duration::from_millis(150),
            indirect_probes: nonzero(3),
            suspicion_multiplier: 1.5,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: nonzero(3),
            transmission_multiplier: 6.0,
            min_transmissions: 6,
            refute_rounds: 2,
            announce_interval: Duration::from_secs(30),
            announce_down_interval: Duration::from_secs(5),
            sync_interval: Duration::from_secs(30),
            rejoin_interval: Duration::from_secs(2),
            remove_down_after: Duration::from_secs(24 * 3600),
            max_packet_size: nonzero(1400),
        }
    }

    /// How long a suspect has to refute before it is declared dead, for a
    /// cluster of `cluster_size` members.
    pub fn suspicion_timeout(&self, cluster_size: usize) -> Duration {
        let scale = (cluster_size.max(1) as f64).log10().max(1.0);
        let secs = self.suspicion_multiplier.max(0.0) * scale * self.probe_period.as_secs_f64();
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.probe_period)
            .max(self.probe_period)
    }

    /// How many times each update is gossiped in a cluster of
    /// `cluster_size` members.
    pub fn transmissions(&self, cluster_size: usize) -> NonZeroU8 {
        let scaled = self.transmission_multiplier.max(0.0) * ((cluster_size + 1) as f64).log10();
        let count = (scaled.ceil() as u64).clamp(u64::from(self.min_transmissions), 255);
        NonZeroU8::new(count as u8).unwrap_or(NonZeroU8::MIN)
    }

    /// The foca configuration for a cluster of `cluster_size` members.
    pub(crate) fn foca(&self, cluster_size: usize) -> foca::Config {
        let size = NonZeroU32::new(u32::try_from(cluster_size).unwrap_or(u32::MAX).max(1))
            .unwrap_or(NonZeroU32::MIN);
        let mut config = foca::Config::new_lan(size);
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes = self.indirect_probes;
        config.suspect_to_down_after = self.suspicion_timeout(cluster_size);
        config.remove_down_after = Some(self.remove_down_after);
        config.max_packet_size = self.max_packet_size;
        config.max_transmissions = self.transmissions(cluster_size);
        config.notify_down_members = true;
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.announce_interval,
            num_members: NonZeroUsize::MIN,
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.announce_down_interval,
            num_members: nonzero(2),
        });
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: self.gossip_fanout,
        });
        config
    }
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_grows_with_the_cluster() {
        let config = MembershipConfig::lan();
        let small = config.suspicion_timeout(5);
        let hundred = config.suspicion_timeout(100);
        let thousand = config.suspicion_timeout(1000);
        assert_eq!(small, config.suspicion_timeout(10));
        assert!(small < hundred && hundred < thousand);
        assert_eq!(hundred, small * 2);
    }

    #[test]
    fn foca_config_keeps_probe_timing_and_sizes_dissemination() {
        let config = MembershipConfig::lan();
        let foca = config.foca(1000);
        assert_eq!(foca.probe_period, config.probe_period);
        assert_eq!(foca.probe_rtt, config.probe_rtt);
        assert!(foca.max_transmissions > config.foca(5).max_transmissions);
        assert!(foca.notify_down_members);
    }
}
