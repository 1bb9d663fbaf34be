//! `shoal_reply`: a backend's replies, arriving on the ingress node's link
//! from the ingress network. The node's address and published port become
//! the source again and the frame leaves the way the request came in.
//!
//! It also watches the handshake for `shoal_ingress`: the acknowledgement
//! number the backend's SYN-ACK asks for, and that a UDP flow got an answer.
//! Anything that is no reply of a tracked flow (the node's own connections
//! to tasks, say) goes on to the host's stack.

use aya_ebpf::programs::TcContext;
use shoal_ebpf_common::flow::{
    Flow, FlowKey, FragHop, FragKey, FLOW_BACKEND_FIN, FLOW_CLIENT_FIN, FLOW_CLOSING, FLOW_REPLIED,
    FRAG_REPLY,
};
use shoal_ebpf_common::mesh::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, STAT_FRAGMENTS};

use super::icmp;
use super::ingress::close;
use super::packet::{
    parse, redirect, set_addr, set_port, Fragment, Packet, IP_SRC_OFF, TCP_ACK, TCP_FIN, TCP_RST,
    TCP_SYN,
};
use super::{count, MESH_CT, MESH_FRAGS, MESH_NEW_CT, MESH_NEW_REV, MESH_REV};

pub fn reply(ctx: &TcContext) -> Option<i32> {
    let p = parse(ctx)?;
    match p.key.proto {
        IPPROTO_ICMP => return icmp::from_backend(ctx, &p),
        IPPROTO_TCP | IPPROTO_UDP => {}
        _ => return None,
    }
    if p.frag == Fragment::Later {
        let key = FragKey {
            src: p.key.src,
            dst: p.key.dst,
            id: p.id,
            proto: p.key.proto,
            stage: FRAG_REPLY,
        };
        let hop = MESH_FRAGS.get_ptr(key)?;
        // SAFETY: pointers from successful map lookups stay valid for the
        // whole run of the program (RCU); the values are plain data.
        let hop = unsafe { *hop };
        set_addr(ctx, &p, IP_SRC_OFF, p.key.src, hop.addr)?;
        count(STAT_FRAGMENTS);
        return redirect(ctx, &hop.dst_mac, &hop.src_mac, hop.ifindex);
    }
    let key = p.key;
    if let Some(flow) = MESH_REV.get_ptr_mut(key) {
        // SAFETY: as above.
        let flow = unsafe { &mut *flow };
        let out = *flow;
        if p.is_tcp() {
            backend_closes(&key, flow, p.tcp_flags);
        }
        return send(ctx, &p, &out);
    }
    let flow = MESH_NEW_REV.get_ptr_mut(key)?;
    // SAFETY: as above.
    let flow = unsafe { &mut *flow };
    if p.is_tcp() {
        let flags = p.tcp_flags;
        if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
            let seq: u32 = ctx.load(p.l4 + 4).ok()?;
            flow.ack = u32::from_be(seq).wrapping_add(1);
            flow.state |= FLOW_REPLIED;
        }
        if flags & TCP_RST != 0 {
            flow.state |= FLOW_CLOSING;
            if let Some(c) = MESH_NEW_CT.get_ptr_mut(request_key(&key, flow)) {
                // SAFETY: as above.
                unsafe { (*c).state |= FLOW_CLOSING };
            }
        }
    } else {
        flow.state |= FLOW_REPLIED;
    }
    let out = *flow;
    send(ctx, &p, &out)
}

/// The request direction's key of a flow, from its reply's.
#[inline(always)]
fn request_key(reply: &FlowKey, flow: &Flow) -> FlowKey {
    FlowKey {
        src: reply.dst,
        dst: flow.node_addr,
        sport: reply.dport,
        dport: flow.node_port,
        proto: reply.proto,
        pad: [0; 3],
    }
}

/// The backend's FIN or RST on an established TCP flow (see
/// `ingress::client_closes`).
#[inline(always)]
fn backend_closes(key: &FlowKey, flow: &mut Flow, flags: u8) {
    if flags & (TCP_FIN | TCP_RST) == 0 {
        return;
    }
    let ckey = request_key(key, flow);
    if flags & TCP_FIN != 0 {
        flow.state |= FLOW_BACKEND_FIN;
        let client_done = MESH_CT
            .get_ptr(ckey)
            // SAFETY: as in `reply`.
            .is_some_and(|c| unsafe { (*c).state } & FLOW_CLIENT_FIN != 0);
        if !client_done && flags & TCP_RST == 0 {
            return;
        }
    }
    close(&ckey, key);
}

/// Restores the node's address and port as the source and sends the reply
/// out the way its request came in.
#[inline(always)]
fn send(ctx: &TcContext, p: &Packet, flow: &Flow) -> Option<i32> {
    if p.frag == Fragment::First {
        let key = FragKey {
            src: p.key.src,
            dst: p.key.dst,
            id: p.id,
            proto: p.key.proto,
            stage: FRAG_REPLY,
        };
        let hop = FragHop {
            addr: flow.node_addr,
            ifindex: flow.ifindex,
            dst_mac: flow.client_mac,
            src_mac: flow.node_mac,
        };
        let _ = MESH_FRAGS.insert(&key, &hop, 0);
    }
    set_addr(ctx, p, IP_SRC_OFF, p.key.src, flow.node_addr)?;
    set_port(ctx, p, p.l4, p.key.sport, flow.node_port)?;
    redirect(ctx, &flow.client_mac, &flow.node_mac, flow.ifindex)
}
