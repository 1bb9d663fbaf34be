//! ICMP errors about tracked flows (destination unreachable, including
//! "fragmentation needed"; time exceeded; parameter problem), translated like
//! the flows they quote, so each end learns what happened to its packets:
//! a client whose UDP datagram no task listens for gets "port unreachable"
//! from the node's address, and a task whose replies are too big for a hop
//! on the client's side learns that hop's MTU.
//!
//! Also "fragmentation needed" itself, for a client packet with DF that is
//! larger than the ingress network can carry.

use aya_ebpf::{
    bindings::{bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_CSUM_LEVEL_RESET},
    helpers::{bpf_csum_level, bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use shoal_ebpf_common::flow::{FlowKey, NatKey};
use shoal_ebpf_common::mesh::{
    Config, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, STAT_ICMP, STAT_TOO_BIG,
};

use super::backend::out_ifindex;
use super::packet::{
    self, csum_add, csum_fold, redirect, set_addr, words, Fragment, Packet, ETH_HDR_LEN,
    IP_DST_OFF, IP_OFF, IP_SRC_OFF,
};
use super::{
    count, MESH_CT, MESH_NAT, MESH_NEW_CT, MESH_NEW_RETURN, MESH_NEW_REV, MESH_RETURN, MESH_REV,
};

const DEST_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;
const TIME_EXCEEDED: u8 = 11;
const PARAM_PROBLEM: u8 = 12;
/// IP and ICMP headers of an error this node sends.
const ERROR_HEADERS: usize = 20 + 8;
/// Bytes of the offending packet's transport header quoted in an error this
/// node sends (RFC 792 asks for 8; 20 keeps a TCP checksum inside).
const QUOTED_L4: usize = 20;

/// The packet an ICMP error quotes.
struct Quote {
    /// Offset of the ICMP header.
    icmp: usize,
    /// Offset of the quoted IP header.
    ip: usize,
    /// Offset of the quoted transport header.
    l4: usize,
    /// The quoted packet's addresses and ports.
    key: FlowKey,
}

/// The quoted TCP or UDP packet of an ICMP error.
#[inline(always)]
fn quote(ctx: &TcContext, p: &Packet) -> Option<Quote> {
    if p.frag != Fragment::Whole {
        return None;
    }
    let kind: u8 = ctx.load(p.l4).ok()?;
    if kind != DEST_UNREACH && kind != TIME_EXCEEDED && kind != PARAM_PROBLEM {
        return None;
    }
    let ip = p.l4 + 8;
    let version_ihl: u8 = ctx.load(ip).ok()?;
    if version_ihl >> 4 != 4 || version_ihl & 0x0f < 5 {
        return None;
    }
    let l4 = ip + usize::from(version_ihl & 0x0f) * 4;
    let proto: u8 = ctx.load(ip + 9).ok()?;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    Some(Quote {
        icmp: p.l4,
        ip,
        l4,
        key: FlowKey {
            src: ctx.load(ip + 12).ok()?,
            dst: ctx.load(ip + 16).ok()?,
            sport: ctx.load(l4).ok()?,
            dport: ctx.load(l4 + 2).ok()?,
            proto,
            pad: [0; 3],
        },
    })
}

/// Replaces an address of the quoted IP header (`offset` 12: source, 16:
/// destination), keeping its checksum and the ICMP checksum right.
#[inline(always)]
fn quote_addr(ctx: &TcContext, q: &Quote, offset: usize, from: u32, to: u32) -> Option<()> {
    if from == to {
        return Some(());
    }
    let csum = q.ip + 10;
    let old: u16 = ctx.load(csum).ok()?;
    ctx.l3_csum_replace(csum, u64::from(from), u64::from(to), 4)
        .ok()?;
    let new: u16 = ctx.load(csum).ok()?;
    ctx.store(q.ip + offset, &to, 0).ok()?;
    ctx.l4_csum_replace(q.icmp + 2, u64::from(from), u64::from(to), 4)
        .ok()?;
    ctx.l4_csum_replace(q.icmp + 2, u64::from(old), u64::from(new), 2)
        .ok()
}

/// Replaces a port of the quoted transport header (`offset` 0: source, 2:
/// destination), keeping the ICMP checksum right. (The quoted transport
/// checksum is left: nobody checks it.)
#[inline(always)]
fn quote_port(ctx: &TcContext, q: &Quote, offset: usize, from: u16, to: u16) -> Option<()> {
    if from == to {
        return Some(());
    }
    ctx.store(q.l4 + offset, &to, 0).ok()?;
    ctx.l4_csum_replace(q.icmp + 2, u64::from(from), u64::from(to), 2)
        .ok()
}

/// Ingress node, from the client's side: an error about a reply the node
/// sent (quoted: node -> client) goes to the flow's backend, as if the
/// backend had sent that reply itself.
#[inline(always)]
pub fn to_node(ctx: &TcContext, p: &Packet, config: &Config) -> Option<i32> {
    let q = quote(ctx, p)?;
    let ckey = q.key.reversed();
    let flow = match MESH_CT.get_ptr(ckey) {
        Some(flow) => flow,
        None => MESH_NEW_CT.get_ptr(ckey)?,
    };
    // SAFETY: pointers from successful map lookups stay valid for the whole
    // run of the program (RCU); the values are plain data.
    let backend = unsafe { (*flow).backend };
    set_addr(ctx, p, IP_DST_OFF, p.key.dst, backend.addr)?;
    quote_addr(ctx, &q, 12, q.key.src, backend.addr)?;
    quote_port(ctx, &q, 0, q.key.sport, backend.port)?;
    count(STAT_ICMP);
    redirect(ctx, &backend.mac, &config.link_mac, config.link_ifindex)
}

/// Ingress node, from the backend's side: an error about a request
/// (quoted: client -> task) goes to the client as if about its packet to
/// the node's published port, from the node.
#[inline(always)]
pub fn from_backend(ctx: &TcContext, p: &Packet) -> Option<i32> {
    let q = quote(ctx, p)?;
    let rkey = q.key.reversed();
    let flow = match MESH_REV.get_ptr(rkey) {
        Some(flow) => flow,
        None => MESH_NEW_REV.get_ptr(rkey)?,
    };
    // SAFETY: as in `to_node`.
    let flow = unsafe { *flow };
    set_addr(ctx, p, IP_SRC_OFF, p.key.src, flow.node_addr)?;
    quote_addr(ctx, &q, 16, q.key.dst, flow.node_addr)?;
    quote_port(ctx, &q, 2, q.key.dport, flow.node_port)?;
    count(STAT_ICMP);
    redirect(ctx, &flow.client_mac, &flow.node_mac, flow.ifindex)
}

/// Backend's node, arriving from ingress node `node`: an error about a
/// reply of a flow that got a client port of its own names that port, as
/// the task knows the flow.
#[inline(always)]
pub fn to_task(ctx: &TcContext, p: &Packet, node: u32) -> Option<()> {
    let q = quote(ctx, p)?;
    let nat = NatKey {
        flow: q.key.reversed(),
        node,
    };
    let port = MESH_NAT.get_ptr(nat)?;
    // SAFETY: as in `to_node`.
    let port = unsafe { *port } as u16;
    quote_port(ctx, &q, 2, q.key.dport, port)
}

/// Backend's node, from a task: an error about a request it received
/// (quoted: client -> task) goes back to the flow's ingress node.
#[inline(always)]
pub fn from_task(ctx: &TcContext, p: &Packet, config: &Config) -> Option<i32> {
    let q = quote(ctx, p)?;
    let rkey = q.key.reversed();
    let hop = match MESH_RETURN.get_ptr(rkey) {
        Some(hop) => hop,
        None => MESH_NEW_RETURN.get_ptr(rkey)?,
    };
    // SAFETY: as in `to_node`.
    let hop = unsafe { *hop };
    if hop.client_port != 0 {
        quote_port(ctx, &q, 0, q.key.sport, hop.client_port)?;
    }
    count(STAT_ICMP);
    ctx.store(0, &hop.mac, 0).ok()?;
    // SAFETY: a plain helper call; the kernel checks the interface index.
    Some(unsafe { bpf_redirect(out_ifindex(&hop.mac, config), 0) } as i32)
}

/// Turns the packet into "fragmentation needed" (next-hop MTU `mtu`) from
/// the node to the client, sent back out of the interface it came in by.
#[inline(always)]
pub fn too_big(ctx: &TcContext, p: &Packet, mtu: u16) -> Option<i32> {
    // What is quoted: the IP header and the first bytes of the transport
    // header. A valid IP header's words sum to 0xffff.
    let mut quoted = 0xffff;
    let mut at = p.l4;
    for _ in 0..QUOTED_L4 / 4 {
        let word: u32 = ctx.load(at).ok()?;
        quoted += words(word);
        at += 4;
    }
    let quote_len = p.ip_len + QUOTED_L4;
    let client_mac = p.src_mac;
    let node_mac = p.dst_mac;
    let (client, node) = (p.key.src, p.key.dst);
    let ifindex = packet::ifindex(ctx);

    // SAFETY: helper calls on the context the program was given.
    unsafe {
        let skb = ctx.skb.skb;
        if bpf_skb_change_tail(skb, (ETH_HDR_LEN + quote_len) as u32, 0) != 0 {
            return None;
        }
        let _ = bpf_csum_level(skb, u64::from(BPF_CSUM_LEVEL_RESET));
    }
    ctx.adjust_room(ERROR_HEADERS as i32, BPF_ADJ_ROOM_MAC, 0)
        .ok()?;

    let total = ((ERROR_HEADERS + quote_len) as u16).to_be_bytes();
    let mut ip = [
        0x45,
        0,
        total[0],
        total[1],
        0,
        0,
        0,
        0,
        64,
        IPPROTO_ICMP,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    ip[12..16].copy_from_slice(&node.to_ne_bytes());
    ip[16..20].copy_from_slice(&client.to_ne_bytes());
    let mut sum = 0;
    for pair in ip.chunks_exact(2) {
        sum = csum_add(sum, u16::from_ne_bytes([pair[0], pair[1]]));
    }
    let ip_csum = csum_fold(sum).to_ne_bytes();
    ip[10] = ip_csum[0];
    ip[11] = ip_csum[1];

    let next_hop = mtu.to_be_bytes();
    let mut icmp = [
        DEST_UNREACH,
        FRAG_NEEDED,
        0,
        0,
        0,
        0,
        next_hop[0],
        next_hop[1],
    ];
    let mut sum = quoted;
    for pair in icmp.chunks_exact(2) {
        sum = csum_add(sum, u16::from_ne_bytes([pair[0], pair[1]]));
    }
    let icmp_csum = csum_fold(sum).to_ne_bytes();
    icmp[2] = icmp_csum[0];
    icmp[3] = icmp_csum[1];

    ctx.store(IP_OFF, &ip, 0).ok()?;
    ctx.store(IP_OFF + 20, &icmp, 0).ok()?;
    ctx.store(12, &0x0800u16.to_be(), 0).ok()?;
    count(STAT_TOO_BIG);
    redirect(ctx, &client_mac, &node_mac, ifindex)
}
