//! The routing mesh's ingress: program names, maps, and their layouts.
//!
//! Addresses and ports in every key and value are kept exactly as they are on
//! the wire (network byte order), read into a `u32`/`u16` as raw bytes, so the
//! programs never convert. Userspace builds them with [`wire_addr`] and
//! [`wire_port`].
//!
//! The path, on the ingress node:
//! - `shoal_ingress` (TC ingress of each underlay interface) takes packets to a
//!   published port on a local address, picks a backend from the service's
//!   Maglev table (or the flow's tracked one), rewrites the destination, and
//!   redirects the frame into the ingress network through the node's link.
//! - `shoal_reply` (TC ingress of the link's host end) reverses that for the
//!   backend's replies and sends them out of the interface the request came in
//!   by, back to the MAC it came from.
//!
//! And on the backend's node, inside the ingress network's namespace:
//! - `shoal_learn` (TC ingress of the VXLAN device and of the link's inner end)
//!   records which ingress node (by its gateway MAC) each flow came through;
//! - `shoal_return` (TC ingress of the bridge, where a task's packets to its
//!   default gateway arrive) sends the task's replies back to that node.
//!
//! No address is translated on the way to the task except the destination: the
//! task sees the client's own address and port.

/// TC classifier: published ports on the underlay, request direction.
pub const INGRESS_PROGRAM: &str = "shoal_ingress";
/// TC classifier: replies arriving from the ingress network.
pub const REPLY_PROGRAM: &str = "shoal_reply";
/// TC classifier: learns each flow's ingress node on the backend's side.
pub const LEARN_PROGRAM: &str = "shoal_learn";
/// TC classifier: sends a task's replies back to the flow's ingress node.
pub const RETURN_PROGRAM: &str = "shoal_return";

/// Hash map [`ServiceKey`] -> [`ServiceTable`].
pub const SERVICES_MAP: &str = "MESH_SERVICES";
/// LRU hash map [`FlowKey`] (client -> node address) -> [`Flow`].
pub const CT_MAP: &str = "MESH_CT";
/// LRU hash map [`FlowKey`] (backend -> client) -> [`Flow`].
pub const REV_MAP: &str = "MESH_REV";
/// Hash map [`LiveKey`] -> [`LIVE`]: the backends a tracked flow may keep.
pub const LIVE_MAP: &str = "MESH_LIVE";
/// Hash map local underlay address (wire order) -> [`LIVE`].
pub const LOCAL_MAP: &str = "MESH_LOCAL";
/// LRU hash map [`FlowKey`] (task -> client) -> [`ReturnHop`].
pub const RETURN_MAP: &str = "MESH_RETURN";
/// Array of [`Config`], indexed by [`CONFIG_HOST`] and [`CONFIG_NETWORK`].
pub const CONFIG_MAP: &str = "MESH_CONFIG";
/// Hash map virtual IP (wire order) -> [`VipBackends`].
pub const VIPS_MAP: &str = "MESH_VIPS";

/// cgroup `connect4` hook: a task connecting to a service's virtual IP is
/// connected to one of the service's tasks instead, at the socket, so no
/// packet is ever translated (east-west).
pub const CONNECT_PROGRAM: &str = "shoal_connect4";

/// cgroup `sendmsg4` hook: the same for a datagram sent to a virtual IP from
/// an unconnected UDP socket; it remembers which task stood in for the VIP.
pub const SENDMSG_PROGRAM: &str = "shoal_sendmsg4";
/// cgroup `recvmsg4` hook: a datagram from that task reads as coming from
/// the virtual IP, so the application sees the address it wrote to.
pub const RECVMSG_PROGRAM: &str = "shoal_recvmsg4";
/// LRU hash map [`UdpVipKey`] -> virtual IP (wire order).
pub const UDP_VIPS_MAP: &str = "MESH_UDP_VIPS";

/// A UDP socket and the task that stood in for a virtual IP for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpVipKey {
    pub cookie: u64,
    /// Wire order.
    pub addr: u32,
    /// As `bpf_sock_addr.user_port` holds it (wire order in the low 16 bits).
    pub port: u32,
}

/// Tasks one virtual IP balances over.
pub const MAX_VIP_BACKENDS: usize = 64;
/// Virtual IPs a node knows.
pub const VIPS_CAPACITY: u32 = 65_536;

/// The tasks behind one virtual IP: their addresses on its network. The port
/// is kept: a virtual IP stands for its service on every port.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VipBackends {
    pub count: u32,
    /// Wire order.
    pub addrs: [u32; MAX_VIP_BACKENDS],
}

/// Every map of the mesh, for pinning.
pub const MAPS: [&str; 9] = [
    VIPS_MAP,
    UDP_VIPS_MAP,
    SERVICES_MAP,
    CT_MAP,
    REV_MAP,
    LIVE_MAP,
    LOCAL_MAP,
    RETURN_MAP,
    CONFIG_MAP,
];

/// Slots of a Maglev table. A power of two, so that the programs index it with
/// a mask; Maglev's permutations stay complete because every skip is odd.
pub const MAGLEV_SLOTS: usize = 1024;
/// Backends one published port can balance over.
pub const MAX_BACKENDS: usize = 128;
/// Published ports (per protocol) a node can serve.
pub const SERVICES_CAPACITY: u32 = 16_384;
/// Tracked flows. The table is LRU: flows are never dropped for being idle,
/// only when the table is full and they are the least recently used.
pub const CT_CAPACITY: u32 = 262_144;
/// Backend liveness entries.
pub const LIVE_CAPACITY: u32 = 65_536;
/// Local underlay addresses.
pub const LOCAL_CAPACITY: u32 = 64;

/// Slot of [`CONFIG_MAP`] used by the programs in the host namespace.
pub const CONFIG_HOST: u32 = 0;
/// Slot of [`CONFIG_MAP`] used by the programs in the ingress network's namespace.
pub const CONFIG_NETWORK: u32 = 1;
/// Slots in [`CONFIG_MAP`].
pub const CONFIG_SLOTS: u32 = 2;

/// Value of a present entry in the set-like maps.
pub const LIVE: u32 = 1;

/// The first two bytes of every node's gateway MAC on the ingress network;
/// the other four are the node's VTEP address. Frames whose source MAC starts
/// with them came from an ingress node.
pub const GATEWAY_MAC_PREFIX: [u8; 2] = [0x02, 0x5e];

/// IANA protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// A published port: the key of [`SERVICES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Wire order.
    pub port: u16,
    pub proto: u8,
    /// Always zero.
    pub pad: u8,
}

/// One backend: a task's address on the ingress network and its MAC there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// Wire order.
    pub addr: u32,
    /// Wire order.
    pub port: u16,
    pub mac: [u8; 6],
}

/// A published port's backends and its Maglev lookup table, written whole on
/// every change, so a program never sees half of an update.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ServiceTable {
    /// Backends in use; zero means the port has no backend and its packets
    /// go to the host's stack, which refuses them (RST or ICMP unreachable).
    pub count: u32,
    /// Reserved, zero.
    pub flags: u32,
    pub backends: [Backend; MAX_BACKENDS],
    /// Indexes into `backends`.
    pub slots: [u16; MAGLEV_SLOTS],
}

/// A flow's addresses and ports, in the direction named by the map holding it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// A tracked ingress flow, stored under both of its directions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub backend: Backend,
    /// The node's address and published port the client connected to.
    pub node_addr: u32,
    pub node_port: u16,
    pub proto: u8,
    pub pad: u8,
    /// The underlay interface the flow came in by, and the two MACs of its
    /// frames, so replies leave the same way without a route lookup.
    pub ifindex: u32,
    pub client_mac: [u8; 6],
    pub node_mac: [u8; 6],
}

/// Key of [`LIVE_MAP`]: a backend of a published port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LiveKey {
    pub service: ServiceKey,
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

/// Value of [`RETURN_MAP`]: the gateway MAC of the flow's ingress node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReturnHop {
    pub mac: [u8; 6],
    pub pad: [u8; 2],
}

/// What the programs of one namespace need to know about the node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Host slot: the link's host end, where requests are redirected.
    /// Network slot: the link's inner end, where replies for this node go.
    pub link_ifindex: u32,
    /// Network slot: the VXLAN device, where replies for other nodes go.
    pub vxlan_ifindex: u32,
    /// The source MAC of frames sent towards backends; this node's gateway
    /// MAC on the ingress network.
    pub link_mac: [u8; 6],
    pub pad: [u8; 2],
}

impl ServiceKey {
    pub const fn new(port: u16, proto: u8) -> Self {
        Self {
            port,
            proto,
            pad: 0,
        }
    }
}

impl FlowKey {
    /// The same flow seen from the other end.
    pub const fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            pad: [0; 3],
        }
    }
}

impl LiveKey {
    pub const fn new(service: ServiceKey, backend: &Backend) -> Self {
        Self {
            service,
            addr: backend.addr,
            port: backend.port,
            pad: 0,
        }
    }
}

/// An IPv4 address as the programs read it from a packet.
pub const fn wire_addr(octets: [u8; 4]) -> u32 {
    u32::from_ne_bytes(octets)
}

/// A port (host order) as the programs read it from a packet.
pub const fn wire_port(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

/// The flow hash that picks a Maglev slot. It covers the client's address
/// and port, the protocol and the published port, not the node's address, so
/// every ingress node picks the same backend for the same client flow.
#[inline(always)]
pub fn flow_hash(client: u32, client_port: u16, port: u16, proto: u8) -> u32 {
    let mut h = client ^ 0x9e37_79b9;
    h = fmix32(h ^ ((u32::from(client_port) << 16) | u32::from(port)));
    fmix32(h ^ u32::from(proto))
}

/// MurmurHash3's finaliser.
#[inline(always)]
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(feature = "user")]
mod pod {
    use super::{
        Backend, Config, Flow, FlowKey, LiveKey, ReturnHop, ServiceKey, ServiceTable, UdpVipKey,
        VipBackends,
    };

    // SAFETY (all below): `#[repr(C)]` types made only of integers and byte
    // arrays, laid out without implicit padding (checked by the layout test),
    // holding no pointers; every bit pattern is a valid value.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for ServiceTable {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for LiveKey {}
    unsafe impl aya::Pod for ReturnHop {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for VipBackends {}
    unsafe impl aya::Pod for UdpVipKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 4);
        assert_eq!(size_of::<Backend>(), 12);
        assert_eq!(
            size_of::<ServiceTable>(),
            8 + 12 * MAX_BACKENDS + 2 * MAGLEV_SLOTS
        );
        assert_eq!(size_of::<FlowKey>(), 16);
        assert_eq!(size_of::<Flow>(), 12 + 4 + 2 + 2 + 4 + 12);
        assert_eq!(size_of::<LiveKey>(), 12);
        assert_eq!(size_of::<ReturnHop>(), 8);
        assert_eq!(size_of::<Config>(), 16);
        assert!(MAGLEV_SLOTS.is_power_of_two());
        assert!(MAX_BACKENDS <= usize::from(u16::MAX));
    }

    #[test]
    fn a_reversed_key_swaps_the_ends() {
        let k = FlowKey {
            src: 1,
            dst: 2,
            sport: 3,
            dport: 4,
            proto: IPPROTO_UDP,
            pad: [0; 3],
        };
        let r = k.reversed();
        assert_eq!(
            (r.src, r.dst, r.sport, r.dport, r.proto),
            (2, 1, 4, 3, IPPROTO_UDP)
        );
        assert_eq!(r.reversed(), k);
    }

    #[test]
    fn wire_order_matches_the_packet_bytes() {
        assert_eq!(wire_addr([10, 0, 0, 1]).to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(wire_port(8080).to_ne_bytes(), [0x1f, 0x90]);
    }

    #[test]
    fn flow_hash_depends_on_the_client_not_the_node() {
        let a = flow_hash(wire_addr([198, 18, 0, 9]), 40000, 8080, IPPROTO_TCP);
        assert_eq!(
            a,
            flow_hash(wire_addr([198, 18, 0, 9]), 40000, 8080, IPPROTO_TCP)
        );
        assert_ne!(
            a,
            flow_hash(wire_addr([198, 18, 0, 9]), 40001, 8080, IPPROTO_TCP)
        );
        assert_ne!(
            a,
            flow_hash(wire_addr([198, 18, 0, 9]), 40000, 8080, IPPROTO_UDP)
        );
    }
}
