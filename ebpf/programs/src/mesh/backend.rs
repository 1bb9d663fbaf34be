//! On the backend's node, in the ingress network's namespace:
//! - `shoal_learn` (ingress of the VXLAN device and of the link's inner end)
//!   remembers, per flow, the gateway MAC of the node it came through;
//! - `shoal_return` (ingress of the bridge: what tasks send to their default
//!   gateway) sends a task's replies back to that node.
//!
//! One client address and port can reach one task through two nodes at once
//! (a proxy in front of the swarm, a NAT reusing ports). The task would see
//! one connection where there are two, so a flow that opens while another
//! node's flow holds the same addresses and ports gets a client port of its
//! own ([`NAT_MAP`](shoal_ebpf_common::flow::NAT_MAP)); its replies get the
//! client's port back on their way out.
//!
//! The return tables keep unproven flows apart from established ones as the
//! ingress node's do: a TCP flow is established by any segment but the SYN
//! (its ingress node passes only segments of proven flows), a UDP flow when
//! the client speaks again after the task answered.

use aya_ebpf::{helpers::bpf_redirect, programs::TcContext};
use shoal_ebpf_common::flow::{
    FlowKey, FragHop, FragKey, NatKey, ReturnHop, FLOW_BACKEND_FIN, FLOW_CLIENT_FIN, FLOW_CLOSING,
    FLOW_REPLIED, FRAG_RETURN,
};
use shoal_ebpf_common::mesh::{
    fmix32, CONFIG_NETWORK, GATEWAY_MAC_PREFIX, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    STAT_CLOSED, STAT_ESTABLISHED, STAT_FRAGMENTS, STAT_PORT_TRANSLATED, TASK_MAC_PREFIX,
};

use super::icmp;
use super::packet::{parse, set_port, Fragment, Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::{config, count, MESH_FRAGS, MESH_LOCAL, MESH_NAT, MESH_NEW_RETURN, MESH_RETURN};

const ETH_P_ARP: u16 = 0x0806;
/// Ports given to flows that need one of their own: 32768 to 60999, Linux's
/// ephemeral range.
const NAT_PORT_BASE: u32 = 32_768;
const NAT_PORT_SPAN: u32 = 28_232;

pub fn learn(ctx: &TcContext) -> Option<()> {
    let p = parse(ctx)?;
    let mac = p.src_mac;
    if mac[0] != GATEWAY_MAC_PREFIX[0] || mac[1] != GATEWAY_MAC_PREFIX[1] {
        return None;
    }
    let node = u32::from_ne_bytes([mac[2], mac[3], mac[4], mac[5]]);
    if p.key.proto == IPPROTO_ICMP {
        return icmp::to_task(ctx, &p, node);
    }
    if p.frag == Fragment::Later {
        return None;
    }
    let mut key = p.key;
    let nat = NatKey { flow: key, node };
    let mut client_port = 0;
    if let Some(port) = MESH_NAT.get_ptr(nat) {
        // SAFETY: pointers from successful map lookups stay valid for the
        // whole run of the program (RCU); the values are plain data.
        let port = unsafe { *port } as u16;
        set_port(ctx, &p, p.l4, key.sport, port)?;
        client_port = key.sport;
        key.sport = port;
    } else if p.opens() && taken(&key.reversed(), &mac) {
        let port = free_port(&key)?;
        MESH_NAT.insert(&nat, &u32::from(port), 0).ok()?;
        set_port(ctx, &p, p.l4, key.sport, port)?;
        count(STAT_PORT_TRANSLATED);
        client_port = key.sport;
        key.sport = port;
    }
    remember(&p, &key.reversed(), &mac, client_port)
}

/// Whether another node's live flow holds the replies' key `rkey`.
#[inline(always)]
fn taken(rkey: &FlowKey, mac: &[u8; 6]) -> bool {
    let hop = match MESH_RETURN.get_ptr(*rkey) {
        Some(hop) => hop,
        None => match MESH_NEW_RETURN.get_ptr(*rkey) {
            Some(hop) => hop,
            None => return false,
        },
    };
    // SAFETY: as in `learn`.
    let hop = unsafe { &*hop };
    hop.mac != *mac && hop.state & FLOW_CLOSING == 0
}

/// A client port for `key` (client -> task) that no flow to the task's
/// address and port uses.
#[inline(always)]
fn free_port(key: &FlowKey) -> Option<u16> {
    let seed = fmix32(key.src ^ u32::from(key.sport) ^ (u32::from(key.dport) << 16));
    for i in 0..4u32 {
        let port = NAT_PORT_BASE + fmix32(seed.wrapping_add(i)) % NAT_PORT_SPAN;
        let port = (port as u16).to_be();
        let rkey = FlowKey {
            src: key.dst,
            dst: key.src,
            sport: key.dport,
            dport: port,
            proto: key.proto,
            pad: [0; 3],
        };
        if MESH_RETURN.get_ptr(rkey).is_none() && MESH_NEW_RETURN.get_ptr(rkey).is_none() {
            return Some(port);
        }
    }
    None
}

/// Records (or updates) the return hop of the flow whose replies have key
/// `rkey`.
#[inline(always)]
fn remember(p: &Packet, rkey: &FlowKey, mac: &[u8; 6], client_port: u16) -> Option<()> {
    let flags = p.tcp_flags;
    if let Some(hop) = MESH_RETURN.get_ptr_mut(*rkey) {
        // SAFETY: as in `learn`.
        let hop = unsafe { &mut *hop };
        hop.mac = *mac;
        if p.is_tcp() && flags & (TCP_FIN | TCP_RST) != 0 {
            if flags & TCP_FIN != 0 {
                hop.state |= FLOW_CLIENT_FIN;
            }
            if flags & TCP_RST != 0 || hop.state & FLOW_BACKEND_FIN != 0 {
                close(rkey, hop);
            }
        }
        return Some(());
    }
    if let Some(hop) = MESH_NEW_RETURN.get_ptr_mut(*rkey) {
        // SAFETY: as in `learn`.
        let hop = unsafe { &mut *hop };
        let closing = hop.state & FLOW_CLOSING != 0;
        if closing && p.opens() {
            *hop = fresh(mac, client_port);
            return Some(());
        }
        hop.mac = *mac;
        if closing {
            return Some(());
        }
        let proven = if p.is_tcp() {
            if flags & TCP_RST != 0 {
                hop.state |= FLOW_CLOSING;
                return Some(());
            }
            flags & (TCP_SYN | TCP_ACK) == TCP_ACK
        } else {
            hop.state & FLOW_REPLIED != 0
        };
        if proven {
            let established = ReturnHop {
                state: hop.state & (FLOW_CLIENT_FIN | FLOW_BACKEND_FIN),
                ..*hop
            };
            MESH_RETURN.insert(rkey, &established, 0).ok()?;
            let _ = MESH_NEW_RETURN.remove(rkey);
            count(STAT_ESTABLISHED);
        }
        return Some(());
    }
    let hop = fresh(mac, client_port);
    // A TCP segment other than the SYN comes from an established flow at
    // its ingress node (this node lost it, or never saw the SYN).
    if p.is_tcp() && flags & (TCP_SYN | TCP_RST) == 0 {
        MESH_RETURN.insert(rkey, &hop, 0).ok()
    } else {
        MESH_NEW_RETURN.insert(rkey, &hop, 0).ok()
    }
}

#[inline(always)]
fn fresh(mac: &[u8; 6], client_port: u16) -> ReturnHop {
    ReturnHop {
        mac: *mac,
        state: 0,
        pad: 0,
        client_port,
        pad2: 0,
    }
}

/// Moves an established return hop to the unproven table, closing.
#[inline(always)]
fn close(rkey: &FlowKey, hop: &ReturnHop) {
    let closing = ReturnHop {
        state: hop.state | FLOW_CLOSING,
        ..*hop
    };
    let _ = MESH_NEW_RETURN.insert(rkey, &closing, 0);
    let _ = MESH_RETURN.remove(rkey);
    count(STAT_CLOSED);
}

/// What a task sends to its default gateway: replies of ingress flows go
/// back to their node; ARP answers for this node's own addresses go to the
/// node (its clients of published ports reach tasks by address), when they
/// give a task's own MAC for its address (a task cannot claim another's).
pub fn back(ctx: &TcContext) -> Option<i32> {
    let config = config(CONFIG_NETWORK)?;
    let ethertype: u16 = ctx.load(12).ok()?;
    if u16::from_be(ethertype) == ETH_P_ARP {
        // An ARP reply for IPv4 over Ethernet (operation 2): sender MAC and
        // address, target address.
        let op: u16 = ctx.load(20).ok()?;
        let sender_mac: [u8; 6] = ctx.load(22).ok()?;
        let sender: [u8; 4] = ctx.load(28).ok()?;
        let target: u32 = ctx.load(38).ok()?;
        let owned = sender_mac[..2] == TASK_MAC_PREFIX && sender_mac[2..] == sender;
        if u16::from_be(op) != 2 || !owned || MESH_LOCAL.get_ptr(target).is_none() {
            return None;
        }
        // SAFETY: a plain helper call; the kernel checks the interface index.
        return Some(unsafe { bpf_redirect(config.link_ifindex, 0) } as i32);
    }
    let p = parse(ctx)?;
    match p.key.proto {
        IPPROTO_ICMP => return icmp::from_task(ctx, &p, config),
        IPPROTO_TCP | IPPROTO_UDP => {}
        _ => return None,
    }
    let fkey = FragKey {
        src: p.key.src,
        dst: p.key.dst,
        id: p.id,
        proto: p.key.proto,
        stage: FRAG_RETURN,
    };
    if p.frag == Fragment::Later {
        let hop = MESH_FRAGS.get_ptr(fkey)?;
        // SAFETY: as in `learn`.
        let hop = unsafe { *hop };
        count(STAT_FRAGMENTS);
        ctx.store(0, &hop.dst_mac, 0).ok()?;
        // SAFETY: as above.
        return Some(unsafe { bpf_redirect(hop.ifindex, 0) } as i32);
    }
    let key = p.key;
    let hop = match MESH_RETURN.get_ptr_mut(key) {
        Some(hop) => hop,
        None => MESH_NEW_RETURN.get_ptr_mut(key)?,
    };
    // SAFETY: as in `learn`.
    let hop = unsafe { &mut *hop };
    let out = *hop;
    hop.state |= FLOW_REPLIED;
    if p.is_tcp() && p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        if p.tcp_flags & TCP_FIN != 0 {
            hop.state |= FLOW_BACKEND_FIN;
        }
        let established = MESH_RETURN.get_ptr(key).is_some();
        if established && (p.tcp_flags & TCP_RST != 0 || hop.state & FLOW_CLIENT_FIN != 0) {
            let now = *hop;
            close(&key, &now);
        } else if p.tcp_flags & TCP_RST != 0 {
            hop.state |= FLOW_CLOSING;
        }
    }
    if out.client_port != 0 {
        set_port(ctx, &p, p.l4 + 2, key.dport, out.client_port)?;
    }
    let ifindex = out_ifindex(&out.mac, config);
    if p.frag == Fragment::First {
        let frag = FragHop {
            addr: 0,
            ifindex,
            dst_mac: out.mac,
            src_mac: [0; 6],
        };
        let _ = MESH_FRAGS.insert(&fkey, &frag, 0);
    }
    ctx.store(0, &out.mac, 0).ok()?;
    // SAFETY: as above.
    Some(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// Where a frame for the gateway MAC `mac` leaves: this node's own link, or
/// the VXLAN device towards another node.
#[inline(always)]
pub fn out_ifindex(mac: &[u8; 6], config: &shoal_ebpf_common::mesh::Config) -> u32 {
    if *mac == config.link_mac {
        config.link_ifindex
    } else {
        config.vxlan_ifindex
    }
}
