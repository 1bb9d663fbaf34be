//! The routing mesh's ingress data path; see `shoal_ebpf_common::mesh` for the
//! whole picture and the maps' layouts.
//!
//! Only plain IPv4 (no IP options, no fragments) TCP and UDP is handled; every
//! other frame is passed on untouched (`TC_ACT_OK`).

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_NO_PREALLOC, BPF_F_PSEUDO_HDR, TC_ACT_OK},
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_redirect},
    macros::{cgroup_sock_addr, classifier, map},
    maps::{Array, HashMap, LruHashMap},
    programs::{SockAddrContext, TcContext},
};
use shoal_ebpf_common::mesh::{
    flow_hash, Config, Flow, FlowKey, LiveKey, ReturnHop, ServiceKey, ServiceTable,
    CONFIG_HOST, CONFIG_NETWORK, CONFIG_SLOTS, CT_CAPACITY, GATEWAY_MAC_PREFIX, IPPROTO_TCP,
    IPPROTO_UDP, LIVE_CAPACITY, LOCAL_CAPACITY, MAGLEV_SLOTS, MAX_BACKENDS,
    SERVICES_CAPACITY, VIPS_CAPACITY, UdpVipKey, VipBackends,
};

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
/// IPv4 header without options: the only kind handled.
const IP_HDR_LEN: usize = 20;
const IP_OFF: usize = ETH_HDR_LEN;
const IP_CSUM_OFF: usize = IP_OFF + 10;
const IP_SRC_OFF: usize = IP_OFF + 12;
const IP_DST_OFF: usize = IP_OFF + 16;
const L4_OFF: usize = IP_OFF + IP_HDR_LEN;
const SPORT_OFF: usize = L4_OFF;
const DPORT_OFF: usize = L4_OFF + 2;
const TCP_FLAGS_OFF: usize = L4_OFF + 13;
const TCP_CSUM_OFF: usize = L4_OFF + 16;
const UDP_CSUM_OFF: usize = L4_OFF + 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[map]
static MESH_SERVICES: HashMap<ServiceKey, ServiceTable> =
    HashMap::with_max_entries(SERVICES_CAPACITY, BPF_F_NO_PREALLOC);

#[map]
static MESH_CT: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

#[map]
static MESH_REV: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

#[map]
static MESH_LIVE: HashMap<LiveKey, u32> = HashMap::with_max_entries(LIVE_CAPACITY, 0);

#[map]
static MESH_LOCAL: HashMap<u32, u32> = HashMap::with_max_entries(LOCAL_CAPACITY, 0);

#[map]
static MESH_RETURN: LruHashMap<FlowKey, ReturnHop> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

#[map]
static MESH_CONFIG: Array<Config> = Array::with_max_entries(CONFIG_SLOTS, 0);

/// The parts of a plain IPv4 TCP/UDP frame the mesh looks at.
struct Packet {
    src_mac: [u8; 6],
    key: FlowKey,
    tcp_flags: u8,
}

/// Parses the frame; `None` for anything the mesh does not handle.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype: u16 = ctx.load(12).ok()?;
    if u16::from_be(ethertype) != ETH_P_IP {
        return None;
    }
    let version_ihl: u8 = ctx.load(IP_OFF).ok()?;
    if version_ihl != 0x45 {
        return None;
    }
    let frag: u16 = ctx.load(IP_OFF + 6).ok()?;
    // More-fragments bit or a fragment offset: not a whole datagram.
    if u16::from_be(frag) & 0x3fff != 0 {
        return None;
    }
    let proto: u8 = ctx.load(IP_OFF + 9).ok()?;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let tcp_flags = if proto == IPPROTO_TCP {
        ctx.load::<u8>(TCP_FLAGS_OFF).ok()?
    } else {
        0
    };
    Some(Packet {
        src_mac: ctx.load(6).ok()?,
        key: FlowKey {
            src: ctx.load(IP_SRC_OFF).ok()?,
            dst: ctx.load(IP_DST_OFF).ok()?,
            sport: ctx.load(SPORT_OFF).ok()?,
            dport: ctx.load(DPORT_OFF).ok()?,
            proto,
            pad: [0; 3],
        },
        tcp_flags,
    })
}

/// Published ports on the underlay: pick (or keep) a backend, rewrite the
/// destination and send the frame into the ingress network.
#[classifier]
pub fn shoal_ingress(ctx: TcContext) -> i32 {
    ingress(&ctx).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn ingress(ctx: &TcContext) -> Option<i32> {
    let packet = parse(ctx)?;
    let key = packet.key;
    MESH_LOCAL.get_ptr(key.dst)?;
    let service = ServiceKey::new(key.dport, key.proto);
    let table = MESH_SERVICES.get_ptr(service)?;
    let config = MESH_CONFIG.get_ptr(CONFIG_HOST)?;
    // SAFETY: pointers from successful map lookups stay valid for the whole
    // run of the program (RCU); the values are plain data.
    let (table, config) = unsafe { (&*table, &*config) };

    let opens = key.proto == IPPROTO_TCP && packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let tracked = match MESH_CT.get_ptr(key) {
        Some(flow) => {
            // SAFETY: as above.
            let flow = unsafe { &*flow };
            if MESH_LIVE
                .get_ptr(LiveKey::new(service, &flow.backend))
                .is_some()
            {
                Some(flow.backend)
            } else {
                // The backend is gone: forget the flow. A new connection
                // that happens to reuse its addresses and ports opens a flow
                // of its own; anything else goes to the host's stack, which
                // has no socket for it and resets it.
                let _ = MESH_CT.remove(key);
                if !opens {
                    return None;
                }
                None
            }
        }
        None => None,
    };
    let backend = match tracked {
        Some(backend) => backend,
        None => {
            // Only a connection's first segment opens a flow; a stray segment
            // of an unknown flow goes to the stack, which resets it.
            if key.proto == IPPROTO_TCP && !opens {
                return None;
            }
            if table.count == 0 {
                return None;
            }
            let hash = flow_hash(key.src, key.sport, key.dport, key.proto);
            let slot = table.slots[hash as usize & (MAGLEV_SLOTS - 1)] as usize;
            if slot >= MAX_BACKENDS {
                return None;
            }
            let backend = table.backends[slot];
            let flow = Flow {
                backend,
                node_addr: key.dst,
                node_port: key.dport,
                proto: key.proto,
                pad: 0,
                ifindex: ctx_ifindex(ctx),
                client_mac: packet.src_mac,
                node_mac: ctx.load(0).ok()?,
            };
            // The reply's key: from the backend to the client.
            let reverse = FlowKey {
                dst: backend.addr,
                dport: backend.port,
                ..key
            }
            .reversed();
            MESH_CT.insert(key, flow, 0).ok()?;
            MESH_REV.insert(reverse, flow, 0).ok()?;
            backend
        }
    };

    rewrite(ctx, key.proto, IP_DST_OFF, key.dst, backend.addr)?;
    rewrite_port(ctx, key.proto, DPORT_OFF, key.dport, backend.port)?;
    ctx.store(0, &backend.mac, 0).ok()?;
    ctx.store(6, &config.link_mac, 0).ok()?;
    // SAFETY: a plain helper call; the kernel checks the interface index.
    Some(unsafe { bpf_redirect(config.link_ifindex, 0) } as i32)
}

/// Replies coming back out of the ingress network: restore the node's address
/// and published port as the source, and send them out the way the request
/// came in.
#[classifier]
pub fn shoal_reply(ctx: TcContext) -> i32 {
    reply(&ctx).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn reply(ctx: &TcContext) -> Option<i32> {
    let packet = parse(ctx)?;
    let key = packet.key;
    let flow = MESH_REV.get_ptr(key)?;
    // SAFETY: see `ingress`.
    let flow = unsafe { &*flow };
    let (node_addr, node_port, ifindex) = (flow.node_addr, flow.node_port, flow.ifindex);
    let (client_mac, node_mac) = (flow.client_mac, flow.node_mac);
    rewrite(ctx, key.proto, IP_SRC_OFF, key.src, node_addr)?;
    rewrite_port(ctx, key.proto, SPORT_OFF, key.sport, node_port)?;
    ctx.store(0, &client_mac, 0).ok()?;
    ctx.store(6, &node_mac, 0).ok()?;
    // SAFETY: as in `ingress`.
    Some(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// On the backend's node: remember which ingress node a flow came through.
#[classifier]
pub fn shoal_learn(ctx: TcContext) -> i32 {
    learn(&ctx);
    TC_ACT_OK as i32
}

#[inline(always)]
fn learn(ctx: &TcContext) -> Option<()> {
    let packet = parse(ctx)?;
    if packet.src_mac[0] != GATEWAY_MAC_PREFIX[0] || packet.src_mac[1] != GATEWAY_MAC_PREFIX[1] {
        return None;
    }
    let key = packet.key;
    let reverse = key.reversed();
    if let Some(known) = MESH_RETURN.get_ptr(reverse) {
        // SAFETY: see `ingress`.
        if unsafe { (*known).mac } == packet.src_mac {
            return None;
        }
    }
    let hop = ReturnHop {
        mac: packet.src_mac,
        pad: [0; 2],
    };
    MESH_RETURN.insert(reverse, hop, 0).ok()
}

/// On the backend's node: a task's packet to its default gateway that answers
/// an ingress flow goes back to the node the flow came through.
#[classifier]
pub fn shoal_return(ctx: TcContext) -> i32 {
    back(&ctx).unwrap_or(TC_ACT_OK as i32)
}

#[inline(always)]
fn back(ctx: &TcContext) -> Option<i32> {
    let packet = parse(ctx)?;
    let hop = MESH_RETURN.get_ptr(packet.key)?;
    let config = MESH_CONFIG.get_ptr(CONFIG_NETWORK)?;
    // SAFETY: see `ingress`.
    let (mac, config) = unsafe { ((*hop).mac, &*config) };
    ctx.store(0, &mac, 0).ok()?;
    let out = if mac == config.link_mac {
        config.link_ifindex
    } else {
        config.vxlan_ifindex
    };
    // SAFETY: as in `ingress`.
    Some(unsafe { bpf_redirect(out, 0) } as i32)
}

/// Replaces an IPv4 address at `offset` and fixes both checksums.
#[inline(always)]
fn rewrite(ctx: &TcContext, proto: u8, offset: usize, from: u32, to: u32) -> Option<()> {
    if from == to {
        return Some(());
    }
    ctx.l4_csum_replace(
        l4_csum_offset(proto),
        u64::from(from),
        u64::from(to),
        l4_flags(proto) | u64::from(BPF_F_PSEUDO_HDR) | 4,
    )
    .ok()?;
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(from), u64::from(to), 4)
        .ok()?;
    ctx.store(offset, &to, 0).ok()
}

/// Replaces a port at `offset` and fixes the transport checksum.
#[inline(always)]
fn rewrite_port(ctx: &TcContext, proto: u8, offset: usize, from: u16, to: u16) -> Option<()> {
    if from == to {
        return Some(());
    }
    ctx.l4_csum_replace(
        l4_csum_offset(proto),
        u64::from(from),
        u64::from(to),
        l4_flags(proto) | 2,
    )
    .ok()?;
    ctx.store(offset, &to, 0).ok()
}

#[inline(always)]
fn l4_csum_offset(proto: u8) -> usize {
    if proto == IPPROTO_TCP {
        TCP_CSUM_OFF
    } else {
        UDP_CSUM_OFF
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

#[inline(always)]
fn ctx_ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` points at the `__sk_buff` the program was called with.
    unsafe { (*ctx.skb.skb).ifindex }
}

#[map]
static MESH_VIPS: HashMap<u32, VipBackends> =
    HashMap::with_max_entries(VIPS_CAPACITY, BPF_F_NO_PREALLOC);

#[map]
static MESH_UDP_VIPS: LruHashMap<UdpVipKey, u32> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

/// East-west: a connect() to a service's virtual IP is pointed at one of its
/// tasks, picked at random, before the socket sends anything.
#[cgroup_sock_addr(connect4)]
pub fn shoal_connect4(ctx: SockAddrContext) -> i32 {
    to_task(&ctx);
    // Allow the call, translated or not.
    1
}

/// The same for a datagram sent to a virtual IP without connect(); the task
/// chosen is remembered for the socket so that its answers read as coming
/// from the virtual IP.
#[cgroup_sock_addr(sendmsg4)]
pub fn shoal_sendmsg4(ctx: SockAddrContext) -> i32 {
    if let Some(vip) = to_task(&ctx) {
        // SAFETY: the kernel passes a valid `bpf_sock_addr` for this hook;
        // the cookie helper takes the context as it came.
        let (addr, cookie) = unsafe {
            (
                &*ctx.sock_addr,
                bpf_get_socket_cookie(ctx.sock_addr as *mut _),
            )
        };
        let key = UdpVipKey {
            cookie,
            addr: addr.user_ip4,
            port: addr.user_port,
        };
        let _ = MESH_UDP_VIPS.insert(key, vip, 0);
    }
    1
}

/// A datagram from a task that stood in for a virtual IP reads as coming
/// from the virtual IP.
#[cgroup_sock_addr(recvmsg4)]
pub fn shoal_recvmsg4(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in `shoal_sendmsg4`.
    let (addr, cookie) = unsafe {
        (
            &mut *ctx.sock_addr,
            bpf_get_socket_cookie(ctx.sock_addr as *mut _),
        )
    };
    let key = UdpVipKey {
        cookie,
        addr: addr.user_ip4,
        port: addr.user_port,
    };
    if let Some(vip) = MESH_UDP_VIPS.get_ptr(key) {
        // SAFETY: see `ingress`.
        addr.user_ip4 = unsafe { *vip };
    }
    1
}

/// Points the call's address at a random task when it is a virtual IP;
/// returns the virtual IP it replaced.
#[inline(always)]
fn to_task(ctx: &SockAddrContext) -> Option<u32> {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` for these hooks.
    let addr = unsafe { &mut *ctx.sock_addr };
    let vip = addr.user_ip4;
    let backends = MESH_VIPS.get_ptr(vip)?;
    // SAFETY: see `ingress`.
    let backends = unsafe { &*backends };
    let count = backends.count;
    // SAFETY: a plain helper call.
    let random = unsafe { bpf_get_prandom_u32() };
    // `checked_rem` leaves no division-by-zero panic path, which the
    // verifier would refuse.
    let i = random.checked_rem(count)?;
    addr.user_ip4 = *backends.addrs.get(i as usize)?;
    Some(vip)
}
