//! The routing mesh's load balancer: program names, maps, and the layouts of
//! its tables (published ports, virtual IPs, node configuration). The flow
//! tracking it does per packet is in [`crate::flow`].
//!
//! Addresses and ports in every key and value are kept exactly as they are on
//! the wire (network byte order), read into a `u32`/`u16` as raw bytes, so the
//! programs never convert. Userspace builds them with [`wire_addr`] and
//! [`wire_port`].
//!
//! The path, on the ingress node:
//! - `shoal_ingress` (TC ingress of each underlay interface) takes packets to a
//!   published port on a local address, picks a backend from the port's
//!   Maglev table (or the flow's tracked one), rewrites the destination, and
//!   redirects the frame into the ingress network through the node's link.
//!   Packets too big for the overlay go to the ingress network's gateway,
//!   which fragments them; with DF set they get "fragmentation needed" back.
//! - `shoal_reply` (TC ingress of the link's host end) reverses that for the
//!   backend's replies and sends them out of the interface the request came in
//!   by, back to the MAC it came from.
//!
//! And on the backend's node, inside the ingress network's namespace:
//! - `shoal_learn` (TC ingress of the VXLAN device and of the link's inner end)
//!   records which ingress node (by its gateway MAC) each flow came through,
//!   and gives a flow a client port of its own when the same client address
//!   and port already reach the same task through another node;
//! - `shoal_return` (TC ingress of the bridge, where a task's packets to its
//!   default gateway arrive) sends the task's replies back to that node.
//!
//! No address is translated on the way to the task except the destination: the
//! task sees the client's own address (and port, but for the rare flow above).
//!
//! The node's own clients (`curl 127.0.0.1:8080`) are served at the socket:
//! `shoal_host_connect4`, `shoal_host_sendmsg4` and `shoal_host_recvmsg4`, on
//! the root cgroup, point a connection to a published port of a local address
//! at a backend, in the node's network namespace only.

/// TC classifier: published ports on the underlay, request direction.
pub const INGRESS_PROGRAM: &str = "shoal_ingress";
/// TC classifier: replies arriving from the ingress network.
pub const REPLY_PROGRAM: &str = "shoal_reply";
/// TC classifier: learns each flow's ingress node on the backend's side.
pub const LEARN_PROGRAM: &str = "shoal_learn";
/// TC classifier: sends a task's replies back to the flow's ingress node.
pub const RETURN_PROGRAM: &str = "shoal_return";

/// Hash map [`ServiceKey`] -> [`ServiceTable`]: every published port.
pub const SERVICES_MAP: &str = "MESH_SERVICES";
/// Hash map [`ServiceKey`] -> [`BigServiceTable`]: the ports with more than
/// [`MAX_BACKENDS`] backends (their [`SERVICES_MAP`] entry says so).
pub const BIG_SERVICES_MAP: &str = "MESH_BIG_SVCS";
/// Hash map [`LiveKey`] -> [`LIVE`]: the backends a tracked flow may keep.
pub const LIVE_MAP: &str = "MESH_LIVE";
/// Hash map local underlay address (wire order) -> [`LIVE`].
pub const LOCAL_MAP: &str = "MESH_LOCAL";
/// Array of [`Config`], indexed by [`CONFIG_HOST`] and [`CONFIG_NETWORK`].
pub const CONFIG_MAP: &str = "MESH_CONFIG";
/// Hash map virtual IP (wire order) -> [`VipBackends`].
pub const VIPS_MAP: &str = "MESH_VIPS";
/// Per-CPU array of `u64` counters, indexed by the `STAT_*` constants.
pub const STATS_MAP: &str = "MESH_STATS";

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
/// The node's own clients of published ports, at `connect()`.
pub const HOST_CONNECT_PROGRAM: &str = "shoal_host_connect4";
/// The node's own clients of published UDP ports, per datagram.
pub const HOST_SENDMSG_PROGRAM: &str = "shoal_host_sendmsg4";
/// Answers to those datagrams read as coming from the published port.
pub const HOST_RECVMSG_PROGRAM: &str = "shoal_host_recvmsg4";
/// LRU hash map [`UdpVipKey`] -> [`UdpOrigin`].
pub const UDP_VIPS_MAP: &str = "MESH_UDP_VIPS";

/// A UDP socket and the task that stood in for a virtual IP (or a published
/// port) for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpVipKey {
    pub cookie: u64,
    /// Wire order.
    pub addr: u32,
    /// As `bpf_sock_addr.user_port` holds it (wire order in the low 16 bits).
    pub port: u32,
}

/// Where the application sent the datagram: what its answers must come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpOrigin {
    /// Wire order.
    pub addr: u32,
    /// As `bpf_sock_addr.user_port` holds it.
    pub port: u32,
}

/// Tasks one virtual IP balances over.
pub const MAX_VIP_BACKENDS: usize = 1024;
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

/// Slots of a port's Maglev table. A power of two, so that the programs index
/// it with a mask; Maglev's permutations stay complete because every skip is
/// odd.
pub const MAGLEV_SLOTS: usize = 1024;
/// Backends one published port balances over in [`SERVICES_MAP`].
pub const MAX_BACKENDS: usize = 128;
/// Slots of a big port's Maglev table (16 per backend when full).
pub const BIG_MAGLEV_SLOTS: usize = 16_384;
/// Backends one published port balances over at most.
pub const MAX_BIG_BACKENDS: usize = 1024;
/// Published ports (per protocol) a node can serve.
pub const SERVICES_CAPACITY: u32 = 16_384;
/// Published ports with more than [`MAX_BACKENDS`] backends.
pub const BIG_SERVICES_CAPACITY: u32 = 1024;
/// Backend liveness entries.
pub const LIVE_CAPACITY: u32 = 65_536;
/// Local underlay addresses.
pub const LOCAL_CAPACITY: u32 = 64;

/// [`ServiceTable::flags`]: the port's backends are in [`BIG_SERVICES_MAP`].
pub const SERVICE_BIG: u32 = 1;

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

/// The first two bytes of a task's MAC; the other four are its address
/// (Docker's scheme, `MacAddr::from_ipv4`).
pub const TASK_MAC_PREFIX: [u8; 2] = [0x02, 0x42];

/// IANA protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IANA protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Counters in [`STATS_MAP`]: flows opened (half-open).
pub const STAT_OPENED: u32 = 0;
/// Flows promoted to the established table (TCP: the client's handshake ACK
/// checked against the backend's SYN-ACK; UDP: the client spoke again after
/// an answer).
pub const STAT_ESTABLISHED: u32 = 1;
/// Flows moved out of the established table after FIN from both ends or RST.
pub const STAT_CLOSED: u32 = 2;
/// Segments of a half-open TCP flow dropped: not a SYN, and not the ACK the
/// backend's SYN-ACK asked for (a blind or spoofed segment).
pub const STAT_UNVERIFIED: u32 = 3;
/// ICMP errors about a tracked flow, translated and passed on.
pub const STAT_ICMP: u32 = 4;
/// IP fragments after the first, sent along their datagram's flow.
pub const STAT_FRAGMENTS: u32 = 5;
/// Packets too big for the overlay with DF set: answered with
/// "fragmentation needed".
pub const STAT_TOO_BIG: u32 = 6;
/// Packets too big for the overlay without DF: fragmented by the ingress
/// network's gateway.
pub const STAT_FRAGMENTED: u32 = 7;
/// Flows given a client port of their own on the backend's node.
pub const STAT_PORT_TRANSLATED: u32 = 8;
/// Connections and datagrams of the node's own clients sent to a backend.
pub const STAT_LOCAL_CLIENTS: u32 = 9;
/// Slots in [`STATS_MAP`].
pub const STAT_SLOTS: u32 = 10;

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
    /// [`SERVICE_BIG`]: the backends and slots are in [`BIG_SERVICES_MAP`].
    pub flags: u32,
    pub backends: [Backend; MAX_BACKENDS],
    /// Indexes into `backends`.
    pub slots: [u16; MAGLEV_SLOTS],
}

/// The same for a port with up to [`MAX_BIG_BACKENDS`] backends.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BigServiceTable {
    pub count: u32,
    /// Reserved, zero.
    pub flags: u32,
    pub backends: [Backend; MAX_BIG_BACKENDS],
    pub slots: [u16; BIG_MAGLEV_SLOTS],
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
    /// MAC on the ingress network (also its bridge's, which routes and
    /// fragments what is too big to be bridged).
    pub link_mac: [u8; 6],
    /// The ingress network's MTU: the largest IP packet a task can be sent
    /// without fragmenting it.
    pub mtu: u16,
    /// Host slot: the cookie of the node's network namespace, whose own
    /// clients the host hooks serve; zero until learned.
    pub netns_cookie: u64,
    /// Host slot: a `connect()` to this address and port from a socket in
    /// the node's namespace teaches the hooks its cookie (a nonce the agent
    /// picks at each start, on 127.0.0.0/8).
    pub probe_addr: u32,
    pub probe_port: u16,
    pub pad: u16,
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
/// and port, the node's address and published port, and the protocol: one
/// client port used through two nodes most often lands on two backends (the
/// backend's node sorts out the rest, see `shoal_learn`).
#[inline(always)]
pub fn flow_hash(client: u32, client_port: u16, node: u32, port: u16, proto: u8) -> u32 {
    let mut h = fmix32(client ^ 0x9e37_79b9);
    h = fmix32(h ^ node);
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
        Backend, BigServiceTable, Config, LiveKey, ServiceKey, ServiceTable, UdpOrigin, UdpVipKey,
        VipBackends,
    };

    // SAFETY (all below): `#[repr(C)]` types made only of integers and byte
    // arrays, laid out without implicit padding (checked by the layout test),
    // holding no pointers; every bit pattern is a valid value.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for ServiceTable {}
    unsafe impl aya::Pod for BigServiceTable {}
    unsafe impl aya::Pod for LiveKey {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for VipBackends {}
    unsafe impl aya::Pod for UdpVipKey {}
    unsafe impl aya::Pod for UdpOrigin {}
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
        assert_eq!(
            size_of::<BigServiceTable>(),
            8 + 12 * MAX_BIG_BACKENDS + 2 * BIG_MAGLEV_SLOTS
        );
        assert_eq!(size_of::<LiveKey>(), 12);
        assert_eq!(size_of::<Config>(), 4 + 4 + 6 + 2 + 8 + 4 + 2 + 2);
        assert_eq!(size_of::<VipBackends>(), 4 + 4 * MAX_VIP_BACKENDS);
        assert_eq!(size_of::<UdpVipKey>(), 16);
        assert_eq!(size_of::<UdpOrigin>(), 8);
        const {
            assert!(MAGLEV_SLOTS.is_power_of_two() && BIG_MAGLEV_SLOTS.is_power_of_two());
            assert!(MAX_BIG_BACKENDS <= u16::MAX as usize);
            assert!(BIG_MAGLEV_SLOTS >= 16 * MAX_BIG_BACKENDS);
        }
    }

    #[test]
    fn wire_order_matches_the_packet_bytes() {
        assert_eq!(wire_addr([10, 0, 0, 1]).to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(wire_port(8080).to_ne_bytes(), [0x1f, 0x90]);
    }

    #[test]
    fn flow_hash_covers_the_client_and_the_node() {
        let client = wire_addr([198, 18, 0, 9]);
        let (n1, n2) = (wire_addr([198, 18, 0, 1]), wire_addr([198, 18, 0, 2]));
        let a = flow_hash(client, 40000, n1, 8080, IPPROTO_TCP);
        assert_eq!(a, flow_hash(client, 40000, n1, 8080, IPPROTO_TCP));
        assert_ne!(a, flow_hash(client, 40001, n1, 8080, IPPROTO_TCP));
        assert_ne!(a, flow_hash(client, 40000, n1, 8080, IPPROTO_UDP));
        assert_ne!(a, flow_hash(client, 40000, n2, 8080, IPPROTO_TCP));
    }

    #[test]
    fn one_client_port_through_many_nodes_spreads_over_the_backends() {
        // The same client port through 64 node addresses, over 8 slots:
        // every slot gets some, so two nodes rarely pick one backend.
        let client = wire_addr([198, 18, 0, 9]);
        let mut hit = [0u32; 8];
        for node in 0..64u8 {
            let h = flow_hash(
                client,
                40000,
                wire_addr([198, 18, 1, node]),
                8080,
                IPPROTO_TCP,
            );
            hit[(h & 7) as usize] += 1;
        }
        assert!(hit.iter().all(|&n| n > 0), "{hit:?}");
    }
}
