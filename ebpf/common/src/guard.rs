//! The guard: a TC ingress classifier that counts packets per IP protocol and
//! drops IPv4 TCP/UDP packets to blocked destination ports. These are its
//! program name, its maps, and their key and value layouts.

/// Name of the TC classifier program in the object file.
pub const PROGRAM_NAME: &str = "shoal_guard";

/// Per-CPU array of [`Counters`], indexed by the `SLOT_*` constants.
pub const STATS_MAP: &str = "GUARD_STATS";

/// Hash map from [`BlockedPortKey`] to [`BLOCKED`].
pub const BLOCKED_PORTS_MAP: &str = "GUARD_BLOCKED_PORTS";

/// How many (port, protocol) pairs can be blocked at once.
pub const BLOCKED_PORTS_CAPACITY: u32 = 4096;

/// Value stored for a blocked key. Any present key blocks; the value is
/// reserved for future per-rule flags.
pub const BLOCKED: u32 = 1;

/// IANA protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IANA protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// IPv4 packets carrying TCP.
pub const SLOT_TCP: u32 = 0;
/// IPv4 packets carrying UDP.
pub const SLOT_UDP: u32 = 1;
/// IPv4 packets carrying ICMP.
pub const SLOT_ICMP: u32 = 2;
/// IPv4 packets carrying any other protocol.
pub const SLOT_OTHER: u32 = 3;
/// Frames that are not IPv4 (ARP, IPv6, ...); passed untouched.
pub const SLOT_NON_IPV4: u32 = 4;
/// IPv4 packets whose headers are truncated or invalid; passed untouched so the
/// kernel's own checks decide.
pub const SLOT_MALFORMED: u32 = 5;
/// Packets dropped because their destination port is blocked. Such packets are
/// also counted in their protocol's slot.
pub const SLOT_DROPPED: u32 = 6;
/// Number of slots in [`STATS_MAP`].
pub const STATS_SLOTS: u32 = 7;

/// Packet and byte counters of one slot of [`STATS_MAP`], on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen, counted as the skb length (layer 2 header included).
    pub bytes: u64,
}

/// Key of [`BLOCKED_PORTS_MAP`]: a destination port and an IP protocol.
///
/// The port is in host byte order. The padding byte is an explicit field so
/// that it is always zero: the kernel hashes all four bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockedPortKey {
    /// Destination port, host byte order.
    pub port: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub proto: u8,
    /// Always zero.
    pub pad: u8,
}

impl BlockedPortKey {
    /// The key for `port` (host byte order) over IP protocol `proto`.
    pub const fn new(port: u16, proto: u8) -> Self {
        Self {
            port,
            proto,
            pad: 0,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::{BlockedPortKey, Counters};

    // SAFETY: `Counters` is `#[repr(C)]`, made only of two `u64`s (no padding,
    // no pointers), and every bit pattern is a valid value.
    unsafe impl aya::Pod for Counters {}

    // SAFETY: `BlockedPortKey` is `#[repr(C)]` with fields u16, u8, u8: four
    // bytes, no implicit padding, no pointers, and every bit pattern is valid.
    unsafe impl aya::Pod for BlockedPortKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_match_what_the_program_expects() {
        assert_eq!(size_of::<BlockedPortKey>(), 4);
        assert_eq!(align_of::<BlockedPortKey>(), 2);
        assert_eq!(size_of::<Counters>(), 16);
    }

    #[test]
    fn slots_are_distinct_and_in_range() {
        let slots = [
            SLOT_TCP,
            SLOT_UDP,
            SLOT_ICMP,
            SLOT_OTHER,
            SLOT_NON_IPV4,
            SLOT_MALFORMED,
            SLOT_DROPPED,
        ];
        for (i, a) in slots.iter().enumerate() {
            assert!(*a < STATS_SLOTS);
            for b in &slots[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn new_key_has_zero_padding() {
        let key = BlockedPortKey::new(8080, IPPROTO_TCP);
        assert_eq!(key.pad, 0);
        assert_eq!(key.port, 8080);
        assert_eq!(key.proto, 6);
    }
}
