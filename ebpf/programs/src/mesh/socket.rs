//! Load balancing at the socket (cgroup `sock_addr` hooks): no packet is
//! ever translated, the socket is simply pointed at a task.
//!
//! - East-west, on the cgroup every task's cgroup is under: a `connect()` or
//!   a datagram to a service's virtual IP goes to one of its tasks.
//! - The node's own clients of published ports, on the root cgroup: a
//!   `connect()` or a datagram to a published port of a local address
//!   (127.0.0.0/8 or one of the node's) goes to one of the port's backends,
//!   which the node reaches over its link into the ingress network. Only
//!   sockets in the node's own network namespace are served: the root
//!   cgroup also holds every other namespace's processes.
//!
//! For an unconnected UDP socket, the address the application wrote to is
//! remembered per socket, and answers read as coming from it.

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_prandom_u32, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use shoal_ebpf_common::mesh::{
    Backend, ServiceKey, UdpOrigin, UdpVipKey, CONFIG_HOST, STAT_LOCAL_CLIENTS,
};

use super::{count, pick, MESH_CONFIG, MESH_LOCAL, MESH_SERVICES, MESH_UDP_VIPS, MESH_VIPS};

/// What `connect()` and `sendmsg()` hooks answer: let the call go on.
const ALLOW: i32 = 1;

/// East-west: a connect() to a service's virtual IP is pointed at one of its
/// tasks, picked at random, before the socket sends anything.
#[cgroup_sock_addr(connect4)]
pub fn shoal_connect4(ctx: SockAddrContext) -> i32 {
    to_task(&ctx);
    ALLOW
}

/// The same for a datagram sent to a virtual IP without connect(); the task
/// chosen is remembered for the socket so that its answers read as coming
/// from the virtual IP.
#[cgroup_sock_addr(sendmsg4)]
pub fn shoal_sendmsg4(ctx: SockAddrContext) -> i32 {
    if let Some(origin) = to_task(&ctx) {
        remember(&ctx, origin);
    }
    ALLOW
}

/// A datagram from a task that stood in for a virtual IP reads as coming
/// from the virtual IP.
#[cgroup_sock_addr(recvmsg4)]
pub fn shoal_recvmsg4(ctx: SockAddrContext) -> i32 {
    restore(&ctx);
    ALLOW
}

/// The node's own clients: a connect() to a published port of a local
/// address goes to one of its backends.
#[cgroup_sock_addr(connect4)]
pub fn shoal_host_connect4(ctx: SockAddrContext) -> i32 {
    to_backend(&ctx);
    ALLOW
}

/// The same per datagram, remembered for the socket.
#[cgroup_sock_addr(sendmsg4)]
pub fn shoal_host_sendmsg4(ctx: SockAddrContext) -> i32 {
    if let Some(origin) = to_backend(&ctx) {
        remember(&ctx, origin);
    }
    ALLOW
}

/// Answers to those datagrams read as coming from the published port.
#[cgroup_sock_addr(recvmsg4)]
pub fn shoal_host_recvmsg4(ctx: SockAddrContext) -> i32 {
    if in_node_namespace(&ctx, false) {
        restore(&ctx);
    }
    ALLOW
}

/// Points the call's address at a random task when it is a virtual IP;
/// returns the address it replaced.
#[inline(always)]
fn to_task(ctx: &SockAddrContext) -> Option<UdpOrigin> {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` for these hooks.
    let addr = unsafe { &mut *ctx.sock_addr };
    let origin = UdpOrigin {
        addr: addr.user_ip4,
        port: addr.user_port,
    };
    let backends = MESH_VIPS.get_ptr(origin.addr)?;
    // SAFETY: pointers from successful map lookups stay valid for the whole
    // run of the program (RCU); the values are plain data.
    let backends = unsafe { &*backends };
    // SAFETY: a plain helper call.
    let random = unsafe { bpf_get_prandom_u32() };
    // `checked_rem` leaves no division-by-zero panic path, which the
    // verifier would refuse.
    let i = random.checked_rem(backends.count)?;
    addr.user_ip4 = *backends.addrs.get(i as usize)?;
    Some(origin)
}

/// Whether the socket is in the node's own network namespace. With
/// `learn`, a `connect()` to the probe address teaches the hooks which
/// namespace that is (the agent does it at each start).
#[inline(always)]
fn in_node_namespace(ctx: &SockAddrContext, learn: bool) -> bool {
    let Some(config) = MESH_CONFIG.get_ptr_mut(CONFIG_HOST) else {
        return false;
    };
    // SAFETY: as in `to_task`; the context is the one the kernel passed.
    let (config, cookie) = unsafe { (&mut *config, bpf_get_netns_cookie(ctx.sock_addr as *mut _)) };
    if config.netns_cookie != 0 {
        return config.netns_cookie == cookie;
    }
    if learn && config.probe_port != 0 {
        // SAFETY: as in `to_task`.
        let addr = unsafe { &*ctx.sock_addr };
        if addr.user_ip4 == config.probe_addr && addr.user_port as u16 == config.probe_port {
            config.netns_cookie = cookie;
        }
    }
    false
}

/// Points a call of the node's own clients to a published port of a local
/// address at one of the port's backends; returns the address it replaced.
#[inline(always)]
fn to_backend(ctx: &SockAddrContext) -> Option<UdpOrigin> {
    if !in_node_namespace(ctx, true) {
        return None;
    }
    // SAFETY: as in `to_task`.
    let addr = unsafe { &mut *ctx.sock_addr };
    let dst = addr.user_ip4;
    let loopback = dst.to_ne_bytes()[0] == 127;
    if !loopback && MESH_LOCAL.get_ptr(dst).is_none() {
        return None;
    }
    let service = ServiceKey::new(addr.user_port as u16, addr.protocol as u8);
    let table = MESH_SERVICES.get_ptr(service)?;
    // SAFETY: as in `to_task`.
    let table = unsafe { &*table };
    // SAFETY: a plain helper call.
    let random = unsafe { bpf_get_prandom_u32() };
    let backend: Backend = pick(service, table, random)?;
    let origin = UdpOrigin {
        addr: dst,
        port: addr.user_port,
    };
    addr.user_ip4 = backend.addr;
    addr.user_port = u32::from(backend.port);
    count(STAT_LOCAL_CLIENTS);
    Some(origin)
}

/// Remembers, for this socket and the address it now sends to, where the
/// application meant to send.
#[inline(always)]
fn remember(ctx: &SockAddrContext, origin: UdpOrigin) {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` for this hook; the
    // cookie helper takes the context as it came.
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
    let _ = MESH_UDP_VIPS.insert(&key, &origin, 0);
}

/// A datagram from a task that stood in for another address reads as coming
/// from that address.
#[inline(always)]
fn restore(ctx: &SockAddrContext) {
    // SAFETY: as in `remember`.
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
    if let Some(origin) = MESH_UDP_VIPS.get_ptr(key) {
        // SAFETY: as in `to_task`.
        let origin = unsafe { *origin };
        addr.user_ip4 = origin.addr;
        addr.user_port = origin.port;
    }
}
