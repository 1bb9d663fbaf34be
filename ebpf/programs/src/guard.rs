//! `shoal_guard`: a TC ingress classifier. It counts every packet and its bytes
//! by IP protocol, and drops IPv4 TCP/UDP packets whose destination port is in
//! `GUARD_BLOCKED_PORTS`. It never rewrites or redirects a packet; anything it
//! does not drop is handed on unchanged (`TC_ACT_PIPE`) to later programs.
//!
//! It expects an Ethernet device. Packets are read with `bpf_skb_load_bytes`
//! (`TcContext::load`), which checks every read against the packet's length and
//! also works on non-linear skbs.

use aya_ebpf::{
    bindings::{TC_ACT_PIPE, TC_ACT_SHOT},
    macros::{classifier, map},
    maps::{HashMap, PerCpuArray},
    programs::TcContext,
};
use shoal_ebpf_common::guard::{
    BlockedPortKey, Counters, BLOCKED_PORTS_CAPACITY, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    SLOT_DROPPED, SLOT_ICMP, SLOT_MALFORMED, SLOT_NON_IPV4, SLOT_OTHER, SLOT_TCP, SLOT_UDP,
    STATS_SLOTS,
};

/// Length of an Ethernet header without VLAN tags.
const ETH_HDR_LEN: usize = 14;
/// Offset of the EtherType in an Ethernet header.
const ETH_TYPE_OFFSET: usize = 12;
/// EtherType of IPv4.
const ETH_P_IP: u16 = 0x0800;
/// Smallest IPv4 header (IHL = 5).
const IPV4_MIN_HDR_LEN: usize = 20;
/// Offset of the flags + fragment offset field in an IPv4 header.
const IPV4_FRAG_OFFSET: usize = 6;
/// The fragment offset bits of that field.
const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
/// Offset of the protocol field in an IPv4 header.
const IPV4_PROTO_OFFSET: usize = 9;
/// Offset of the destination port in both TCP and UDP headers.
const L4_DST_PORT_OFFSET: usize = 2;

#[map]
static GUARD_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

#[map]
static GUARD_BLOCKED_PORTS: HashMap<BlockedPortKey, u32> =
    HashMap::with_max_entries(BLOCKED_PORTS_CAPACITY, 0);

/// What the guard learned about one packet.
struct Inspection {
    /// The `GUARD_STATS` slot the packet is counted in.
    slot: u32,
    /// For IPv4 TCP/UDP packets that carry a transport header: the key to look
    /// up in `GUARD_BLOCKED_PORTS`.
    key: Option<BlockedPortKey>,
}

impl Inspection {
    const fn counted_as(slot: u32) -> Self {
        Self { slot, key: None }
    }
}

#[classifier]
pub fn shoal_guard(ctx: TcContext) -> i32 {
    let inspection = inspect(&ctx);
    let len = ctx.len();
    count(inspection.slot, len);
    if let Some(key) = inspection.key {
        if GUARD_BLOCKED_PORTS.get_ptr(key).is_some() {
            count(SLOT_DROPPED, len);
            return TC_ACT_SHOT as i32;
        }
    }
    TC_ACT_PIPE as i32
}

/// Parses the Ethernet, IPv4 and TCP/UDP headers as far as needed.
#[inline(always)]
fn inspect(ctx: &TcContext) -> Inspection {
    let Ok(ethertype) = ctx.load::<u16>(ETH_TYPE_OFFSET) else {
        return Inspection::counted_as(SLOT_NON_IPV4);
    };
    if u16::from_be(ethertype) != ETH_P_IP {
        return Inspection::counted_as(SLOT_NON_IPV4);
    }

    let Ok(version_ihl) = ctx.load::<u8>(ETH_HDR_LEN) else {
        return Inspection::counted_as(SLOT_MALFORMED);
    };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_MIN_HDR_LEN {
        return Inspection::counted_as(SLOT_MALFORMED);
    }
    let (Ok(proto), Ok(frag)) = (
        ctx.load::<u8>(ETH_HDR_LEN + IPV4_PROTO_OFFSET),
        ctx.load::<u16>(ETH_HDR_LEN + IPV4_FRAG_OFFSET),
    ) else {
        return Inspection::counted_as(SLOT_MALFORMED);
    };

    let slot = match proto {
        IPPROTO_TCP => SLOT_TCP,
        IPPROTO_UDP => SLOT_UDP,
        IPPROTO_ICMP => SLOT_ICMP,
        _ => SLOT_OTHER,
    };
    if slot != SLOT_TCP && slot != SLOT_UDP {
        return Inspection::counted_as(slot);
    }
    // Only the first fragment carries the transport header; later fragments
    // of a dropped first fragment cannot be reassembled anyway.
    if u16::from_be(frag) & IPV4_FRAG_OFFSET_MASK != 0 {
        return Inspection::counted_as(slot);
    }

    // The IHL bounds the offset to 14 + 60 + 2; the helper checks the packet
    // length at run time.
    let Ok(dst_port) = ctx.load::<u16>(ETH_HDR_LEN + header_len + L4_DST_PORT_OFFSET) else {
        return Inspection::counted_as(SLOT_MALFORMED);
    };
    Inspection {
        slot,
        key: Some(BlockedPortKey::new(u16::from_be(dst_port), proto)),
    }
}

/// Adds one packet of `len` bytes to `slot` on this CPU.
#[inline(always)]
fn count(slot: u32, len: u32) {
    let Some(counters) = GUARD_STATS.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: the pointer comes from a successful lookup in a per-CPU array, so
    // it points at this CPU's value for `slot`, which lives as long as the map.
    // TC programs run with bottom halves disabled, so nothing else on this CPU
    // touches the value while we update it.
    let counters = unsafe { &mut *counters };
    counters.packets = counters.packets.wrapping_add(1);
    counters.bytes = counters.bytes.wrapping_add(u64::from(len));
}
