//! Reading an IPv4 frame the way the mesh needs it, and changing it:
//! addresses and ports with their checksums kept right, MACs, redirects.
//!
//! Headers are read with `bpf_skb_load_bytes` (`TcContext::load`), checked
//! against the packet's length by the kernel, so IP options (a header longer
//! than 20 bytes, up to 60) simply move the transport header further on.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::bpf_redirect,
    programs::TcContext,
};
use shoal_ebpf_common::flow::FlowKey;
use shoal_ebpf_common::mesh::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

const ETH_P_IP: u16 = 0x0800;
pub const ETH_HDR_LEN: usize = 14;
pub const IP_OFF: usize = ETH_HDR_LEN;
pub const IP_CSUM_OFF: usize = IP_OFF + 10;
pub const IP_SRC_OFF: usize = IP_OFF + 12;
pub const IP_DST_OFF: usize = IP_OFF + 16;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Where a packet stands in its datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    Whole,
    /// The first fragment: it carries the transport header.
    First,
    /// A later fragment: no transport header, ports unknown.
    Later,
}

/// The parts of an IPv4 frame the mesh looks at.
pub struct Packet {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Addresses and protocol; ports only for TCP and UDP that carry their
    /// header (zero otherwise).
    pub key: FlowKey,
    /// Offset of the transport (or ICMP) header.
    pub l4: usize,
    /// The IP header's length in bytes (20 to 60).
    pub ip_len: usize,
    pub tcp_flags: u8,
    pub frag: Fragment,
    /// The datagram's id, as on the wire.
    pub id: u16,
    /// Don't Fragment.
    pub df: bool,
    /// The IP packet's total length.
    pub len: u16,
}

impl Packet {
    /// A TCP connection's first segment, or any UDP datagram: what may open
    /// a flow.
    #[inline(always)]
    pub fn opens(&self) -> bool {
        match self.key.proto {
            IPPROTO_TCP => self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN,
            IPPROTO_UDP => true,
            _ => false,
        }
    }

    #[inline(always)]
    pub fn is_tcp(&self) -> bool {
        self.key.proto == IPPROTO_TCP
    }
}

/// Parses an IPv4 frame carrying TCP, UDP or ICMP; `None` for anything
/// else.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<Packet> {
    // Few, wide reads: each is a helper call.
    let eth: [u8; ETH_HDR_LEN] = ctx.load(0).ok()?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP {
        return None;
    }
    let ip: [u8; 20] = ctx.load(IP_OFF).ok()?;
    let version_ihl = ip[0];
    if version_ihl >> 4 != 4 || version_ihl & 0x0f < 5 {
        return None;
    }
    let ip_len = usize::from(version_ihl & 0x0f) * 4;
    let l4 = IP_OFF + ip_len;
    let proto = ip[9];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP {
        return None;
    }
    let flags = u16::from_be_bytes([ip[6], ip[7]]);
    let frag = if flags & 0x1fff != 0 {
        Fragment::Later
    } else if flags & 0x2000 != 0 {
        Fragment::First
    } else {
        Fragment::Whole
    };
    let mut key = FlowKey {
        src: u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        dst: u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
        sport: 0,
        dport: 0,
        proto,
        pad: [0; 3],
    };
    let mut tcp_flags = 0;
    if frag != Fragment::Later && proto != IPPROTO_ICMP {
        let ports: [u8; 4] = ctx.load(l4).ok()?;
        key.sport = u16::from_ne_bytes([ports[0], ports[1]]);
        key.dport = u16::from_ne_bytes([ports[2], ports[3]]);
        if proto == IPPROTO_TCP {
            tcp_flags = ctx.load(l4 + 13).ok()?;
        }
    }
    Some(Packet {
        dst_mac: [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]],
        src_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
        key,
        l4,
        ip_len,
        tcp_flags,
        frag,
        id: u16::from_ne_bytes([ip[4], ip[5]]),
        df: flags & 0x4000 != 0,
        len: u16::from_be_bytes([ip[2], ip[3]]),
    })
}

/// The transport checksum's offset, for a header at `l4`.
#[inline(always)]
pub fn l4_csum_offset(proto: u8, l4: usize) -> usize {
    if proto == IPPROTO_TCP {
        l4 + 16
    } else {
        l4 + 6
    }
}

/// UDP's checksum is optional: zero means none, and must stay so.
#[inline(always)]
fn l4_flags(proto: u8) -> u64 {
    if proto == IPPROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    }
}

/// Replaces the IPv4 address at `offset` (source or destination) and fixes
/// the IP checksum and, when the transport header is in this packet, its
/// checksum too (the address is part of its pseudo-header).
#[inline(always)]
pub fn set_addr(ctx: &TcContext, p: &Packet, offset: usize, from: u32, to: u32) -> Option<()> {
    if from == to {
        return Some(());
    }
    if p.frag != Fragment::Later && p.key.proto != IPPROTO_ICMP {
        ctx.l4_csum_replace(
            l4_csum_offset(p.key.proto, p.l4),
            u64::from(from),
            u64::from(to),
            l4_flags(p.key.proto) | u64::from(BPF_F_PSEUDO_HDR) | 4,
        )
        .ok()?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4)
        .ok()?;
    ctx.store(offset, &to, 0).ok()
}

/// Replaces the port at `offset` (in the transport header at `p.l4`) and
/// fixes the transport checksum.
#[inline(always)]
pub fn set_port(ctx: &TcContext, p: &Packet, offset: usize, from: u16, to: u16) -> Option<()> {
    if from == to {
        return Some(());
    }
    ctx.l4_csum_replace(
        l4_csum_offset(p.key.proto, p.l4),
        u64::from(from),
        u64::from(to),
        l4_flags(p.key.proto) | 2,
    )
    .ok()?;
    ctx.store(offset, &to, 0).ok()
}

/// Sets both MACs and sends the frame out of `ifindex`.
#[inline(always)]
pub fn redirect(ctx: &TcContext, dst: &[u8; 6], src: &[u8; 6], ifindex: u32) -> Option<i32> {
    ctx.store(0, dst, 0).ok()?;
    ctx.store(6, src, 0).ok()?;
    // SAFETY: a plain helper call; the kernel checks the interface index.
    Some(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// The interface the packet arrived on.
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` points at the `__sk_buff` the program was called with.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Whether the packet is a GRO aggregate (segmented again on its way out,
/// so its length says nothing about the MTU).
#[inline(always)]
pub fn is_gso(ctx: &TcContext) -> bool {
    // SAFETY: as in `ifindex`.
    unsafe { (*ctx.skb.skb).gso_size != 0 }
}

/// The key of a flow's replies: from `backend`'s address and port to the
/// client.
#[inline(always)]
pub fn reply_key(request: &FlowKey, addr: u32, port: u16) -> FlowKey {
    FlowKey {
        src: addr,
        dst: request.src,
        sport: port,
        dport: request.sport,
        proto: request.proto,
        pad: [0; 3],
    }
}

/// Adds 16-bit words for an Internet checksum (RFC 1071).
#[inline(always)]
pub fn csum_add(sum: u32, word: u16) -> u32 {
    sum + u32::from(word)
}

/// Folds a running sum into the checksum to store.
#[inline(always)]
pub fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The 16-bit words of a `u32` read from the wire (native order, as the
/// checksum is summed).
#[inline(always)]
pub fn words(v: u32) -> u32 {
    (v & 0xffff) + (v >> 16)
}
