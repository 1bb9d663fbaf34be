//! `shoal_ingress`: requests to published ports, on the ingress node.
//!
//! A flow opens (TCP SYN, any UDP datagram) in the unproven table and is
//! promoted to the established one when it proves itself: for TCP, the
//! client's ACK carries the acknowledgement number of the backend's SYN-ACK
//! (which `shoal_reply` recorded); for UDP, the client speaks again after an
//! answer. Other segments of an unproven TCP flow are dropped: a spoofed
//! source never sees the SYN-ACK, so a flood of them stays among the
//! unproven flows and cannot evict an established one. FIN from both ends or
//! RST moves a flow back among the unproven, where its last segments still
//! find it until it is evicted.

use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};
use shoal_ebpf_common::flow::{
    Flow, FlowKey, FragHop, FragKey, FLOW_BACKEND_FIN, FLOW_CLIENT_FIN, FLOW_CLOSING, FLOW_REPLIED,
    FRAG_INGRESS,
};
use shoal_ebpf_common::mesh::{
    flow_hash, Backend, Config, ServiceKey, CONFIG_HOST, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    STAT_CLOSED, STAT_ESTABLISHED, STAT_FRAGMENTED, STAT_FRAGMENTS, STAT_OPENED, STAT_UNVERIFIED,
};

use super::icmp;
use super::packet::{
    self, parse, redirect, reply_key, set_addr, set_port, Fragment, Packet, IP_DST_OFF, TCP_ACK,
    TCP_FIN, TCP_RST, TCP_SYN,
};
use super::{
    config, count, live, pick, MESH_CT, MESH_FRAGS, MESH_LOCAL, MESH_NEW_CT, MESH_NEW_REV,
    MESH_REV, MESH_SERVICES,
};

pub fn ingress(ctx: &TcContext) -> Option<i32> {
    let p = parse(ctx)?;
    MESH_LOCAL.get_ptr(p.key.dst)?;
    let config = config(CONFIG_HOST)?;
    match p.key.proto {
        IPPROTO_ICMP => return icmp::to_node(ctx, &p, config),
        IPPROTO_TCP | IPPROTO_UDP => {}
        _ => return None,
    }
    if p.frag == Fragment::Later {
        return later_fragment(ctx, &p, config);
    }
    let key = p.key;
    let service = ServiceKey::new(key.dport, key.proto);
    // A port the mesh does not publish belongs to the host.
    let table = MESH_SERVICES.get_ptr(service)?;
    let opens = p.opens();

    if let Some(flow) = MESH_CT.get_ptr_mut(key) {
        // SAFETY: pointers from successful map lookups stay valid for the
        // whole run of the program (RCU); the values are plain data.
        let flow = unsafe { &mut *flow };
        let backend = flow.backend;
        if live(service, &backend) {
            if p.is_tcp() {
                client_closes(&key, flow, p.tcp_flags);
            }
            return forward(ctx, &p, &backend, config);
        }
        // The backend is gone: forget the flow. A new connection that
        // happens to reuse its addresses and ports opens a flow of its own;
        // anything else goes to the host's stack, which has no socket for
        // it and resets it.
        let _ = MESH_CT.remove(&key);
        let _ = MESH_REV.remove(&reply_key(&key, backend.addr, backend.port));
        if !opens {
            return None;
        }
    } else if let Some(flow) = MESH_NEW_CT.get_ptr_mut(key) {
        // SAFETY: as above.
        let flow = unsafe { &mut *flow };
        let backend = flow.backend;
        let reopened = flow.state & FLOW_CLOSING != 0 && opens;
        if live(service, &backend) && !reopened {
            if !unproven(ctx, &p, flow) {
                count(STAT_UNVERIFIED);
                return Some(TC_ACT_SHOT as i32);
            }
            return forward(ctx, &p, &backend, config);
        }
        let _ = MESH_NEW_CT.remove(&key);
        let _ = MESH_NEW_REV.remove(&reply_key(&key, backend.addr, backend.port));
        if !opens {
            return None;
        }
    }
    // Only a connection's first segment opens a flow; a stray segment of an
    // unknown flow goes to the stack, which resets it.
    if !opens {
        return None;
    }
    // SAFETY: as above.
    let table = unsafe { &*table };
    let hash = flow_hash(key.src, key.sport, key.dst, key.dport, key.proto);
    let backend = pick(service, table, hash)?;
    let flow = Flow {
        backend,
        node_addr: key.dst,
        node_port: key.dport,
        proto: key.proto,
        state: 0,
        ifindex: packet::ifindex(ctx),
        client_mac: p.src_mac,
        node_mac: p.dst_mac,
        ack: 0,
    };
    MESH_NEW_CT.insert(&key, &flow, 0).ok()?;
    MESH_NEW_REV
        .insert(&reply_key(&key, backend.addr, backend.port), &flow, 0)
        .ok()?;
    count(STAT_OPENED);
    forward(ctx, &p, &backend, config)
}

/// A packet of an unproven flow: whether it goes on. It may promote the
/// flow, or mark it closing.
#[inline(always)]
fn unproven(ctx: &TcContext, p: &Packet, flow: &mut Flow) -> bool {
    let key = p.key;
    let rkey = reply_key(&key, flow.backend.addr, flow.backend.port);
    let closing = flow.state & FLOW_CLOSING != 0;
    if !p.is_tcp() {
        if !closing {
            let replied = MESH_NEW_REV
                .get_ptr(rkey)
                // SAFETY: as in `ingress`.
                .is_some_and(|r| unsafe { (*r).state } & FLOW_REPLIED != 0);
            if replied {
                promote(&key, &rkey, flow);
            }
        }
        return true;
    }
    let flags = p.tcp_flags;
    if closing || flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        // The last segments of a closed flow; a retransmitted SYN.
        return true;
    }
    if flags & TCP_RST != 0 {
        flow.state |= FLOW_CLOSING;
        if let Some(r) = MESH_NEW_REV.get_ptr_mut(rkey) {
            // SAFETY: as in `ingress`.
            unsafe { (*r).state |= FLOW_CLOSING };
        }
        return true;
    }
    if flags & TCP_ACK == 0 {
        return false;
    }
    let Some(reply) = MESH_NEW_REV.get_ptr(rkey) else {
        return false;
    };
    // SAFETY: as in `ingress`.
    let (state, want) = unsafe { ((*reply).state, (*reply).ack) };
    let Ok(ack) = ctx.load::<u32>(p.l4 + 8) else {
        return false;
    };
    if state & FLOW_REPLIED == 0 || u32::from_be(ack) != want {
        return false;
    }
    promote(&key, &rkey, flow);
    true
}

/// Moves a proven flow into the established tables.
#[inline(always)]
fn promote(key: &FlowKey, rkey: &FlowKey, flow: &Flow) {
    let mut established = *flow;
    established.state &= FLOW_CLIENT_FIN | FLOW_BACKEND_FIN;
    if MESH_CT.insert(key, &established, 0).is_err() {
        return;
    }
    if let Some(r) = MESH_NEW_REV.get_ptr(*rkey) {
        // SAFETY: as in `ingress`.
        let mut reply = unsafe { *r };
        reply.state &= FLOW_CLIENT_FIN | FLOW_BACKEND_FIN;
        let _ = MESH_REV.insert(rkey, &reply, 0);
    } else {
        let _ = MESH_REV.insert(rkey, &established, 0);
    }
    let _ = MESH_NEW_CT.remove(key);
    let _ = MESH_NEW_REV.remove(rkey);
    count(STAT_ESTABLISHED);
}

/// The client's FIN or RST on an established TCP flow: after FIN from both
/// ends, or any RST, the flow leaves the established tables.
#[inline(always)]
fn client_closes(key: &FlowKey, flow: &mut Flow, flags: u8) {
    if flags & (TCP_FIN | TCP_RST) == 0 {
        return;
    }
    let rkey = reply_key(key, flow.backend.addr, flow.backend.port);
    if flags & TCP_FIN != 0 {
        flow.state |= FLOW_CLIENT_FIN;
        let backend_done = MESH_REV
            .get_ptr(rkey)
            // SAFETY: as in `ingress`.
            .is_some_and(|r| unsafe { (*r).state } & FLOW_BACKEND_FIN != 0);
        if !backend_done && flags & TCP_RST == 0 {
            return;
        }
    }
    close(key, &rkey);
}

/// Moves an established flow (both directions) to the unproven tables,
/// marked closing.
#[inline(always)]
pub fn close(key: &FlowKey, rkey: &FlowKey) {
    if let Some(f) = MESH_CT.get_ptr(*key) {
        // SAFETY: as in `ingress`.
        let mut flow = unsafe { *f };
        flow.state |= FLOW_CLOSING;
        let _ = MESH_NEW_CT.insert(key, &flow, 0);
    }
    if let Some(r) = MESH_REV.get_ptr(*rkey) {
        // SAFETY: as in `ingress`.
        let mut reply = unsafe { *r };
        reply.state |= FLOW_CLOSING;
        let _ = MESH_NEW_REV.insert(rkey, &reply, 0);
    }
    let _ = MESH_CT.remove(key);
    let _ = MESH_REV.remove(rkey);
    count(STAT_CLOSED);
}

/// Whether the packet is larger than the ingress network carries.
#[inline(always)]
fn too_big(ctx: &TcContext, p: &Packet, config: &Config) -> bool {
    config.mtu != 0 && p.len > config.mtu && !packet::is_gso(ctx)
}

/// Sends a request to `backend`: destination rewritten, into the ingress
/// network. Too big for it: with DF, "fragmentation needed" goes back to
/// the client; without, the ingress network's gateway gets it, routes it
/// and fragments it on the way.
#[inline(always)]
fn forward(ctx: &TcContext, p: &Packet, backend: &Backend, config: &Config) -> Option<i32> {
    let big = too_big(ctx, p, config);
    if big && p.df && p.frag == Fragment::Whole {
        return icmp::too_big(ctx, p, config.mtu);
    }
    if p.frag == Fragment::First {
        let key = FragKey {
            src: p.key.src,
            dst: p.key.dst,
            id: p.id,
            proto: p.key.proto,
            stage: FRAG_INGRESS,
        };
        let hop = FragHop {
            addr: backend.addr,
            ifindex: config.link_ifindex,
            dst_mac: backend.mac,
            src_mac: config.link_mac,
        };
        let _ = MESH_FRAGS.insert(&key, &hop, 0);
    }
    set_addr(ctx, p, IP_DST_OFF, p.key.dst, backend.addr)?;
    set_port(ctx, p, p.l4 + 2, p.key.dport, backend.port)?;
    let dst = if big {
        count(STAT_FRAGMENTED);
        config.link_mac
    } else {
        backend.mac
    };
    redirect(ctx, &dst, &config.link_mac, config.link_ifindex)
}

/// A fragment after the first: it follows its datagram's first fragment.
#[inline(always)]
fn later_fragment(ctx: &TcContext, p: &Packet, config: &Config) -> Option<i32> {
    let key = FragKey {
        src: p.key.src,
        dst: p.key.dst,
        id: p.id,
        proto: p.key.proto,
        stage: FRAG_INGRESS,
    };
    let hop = MESH_FRAGS.get_ptr(key)?;
    // SAFETY: as in `ingress`.
    let hop = unsafe { *hop };
    set_addr(ctx, p, IP_DST_OFF, p.key.dst, hop.addr)?;
    count(STAT_FRAGMENTS);
    let dst = if too_big(ctx, p, config) {
        count(STAT_FRAGMENTED);
        config.link_mac
    } else {
        hop.dst_mac
    };
    redirect(ctx, &dst, &hop.src_mac, hop.ifindex)
}
