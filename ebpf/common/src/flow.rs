//! The routing mesh's flow tracking: the tables that remember, per flow,
//! which backend a client got (on the ingress node) and which node a flow
//! came through (on the backend's node), and their layouts.
//!
//! Every flow table comes in two: flows that have not proven they are real
//! (half-open TCP, UDP that got no answer yet, and flows closing after FIN or
//! RST) live in a table of their own, so that a flood of spoofed new flows
//! only ever evicts other unproven flows; established flows live in the
//! other, which only a proven flow can enter. A TCP flow is proven by the
//! client's ACK of the backend's SYN-ACK, with the acknowledgement number that
//! SYN-ACK asked for (a spoofed source never sees it); a UDP flow by the
//! client speaking again after the backend answered. No table has an idle
//! timeout: only LRU eviction when full.
//!
//! On the ingress node (keys as the packets carry them):
//! - [`CT_MAP`] / [`NEW_CT_MAP`]: client -> node address and published port;
//! - [`REV_MAP`] / [`NEW_REV_MAP`]: backend -> client.
//!
//! On the backend's node:
//! - [`RETURN_MAP`] / [`NEW_RETURN_MAP`]: task -> client (its replies), with
//!   the ingress node's gateway MAC;
//! - [`NAT_MAP`]: flows whose client address and port already reached the
//!   same task through another node, and the port they get instead.
//!
//! And [`FRAGS_MAP`]: IP fragments after the first carry no ports; they
//! follow the first one's decision, by datagram id.

/// LRU hash map [`FlowKey`] (client -> node address) -> [`Flow`]: established.
pub const CT_MAP: &str = "MESH_CT";
/// LRU hash map [`FlowKey`] (backend -> client) -> [`Flow`]: established.
pub const REV_MAP: &str = "MESH_REV";
/// LRU hash map [`FlowKey`] (client -> node address) -> [`Flow`]: unproven.
pub const NEW_CT_MAP: &str = "MESH_NEW_CT";
/// LRU hash map [`FlowKey`] (backend -> client) -> [`Flow`]: unproven.
pub const NEW_REV_MAP: &str = "MESH_NEW_REV";
/// LRU hash map [`FlowKey`] (task -> client) -> [`ReturnHop`]: established.
pub const RETURN_MAP: &str = "MESH_RETURN";
/// LRU hash map [`FlowKey`] (task -> client) -> [`ReturnHop`]: unproven.
pub const NEW_RETURN_MAP: &str = "MESH_NEW_RETURN";
/// LRU hash map [`NatKey`] -> client port (wire order, low 16 bits).
pub const NAT_MAP: &str = "MESH_NAT";
/// LRU hash map [`FragKey`] -> [`FragHop`].
pub const FRAGS_MAP: &str = "MESH_FRAGS";

/// Established flows each table holds.
pub const CT_CAPACITY: u32 = 262_144;
/// Unproven flows each table holds.
pub const NEW_CAPACITY: u32 = 131_072;
/// Translated client ports.
pub const NAT_CAPACITY: u32 = 65_536;
/// Fragmented datagrams in flight.
pub const FRAGS_CAPACITY: u32 = 16_384;

/// [`Flow::state`] / [`ReturnHop::state`]: the backend (task) answered.
pub const FLOW_REPLIED: u8 = 1;
/// The client sent FIN.
pub const FLOW_CLIENT_FIN: u8 = 2;
/// The backend (task) sent FIN.
pub const FLOW_BACKEND_FIN: u8 = 4;
/// The flow ended (FIN both ways, or RST) and lives on in the unproven
/// table until evicted, for its last segments; it is never promoted again.
pub const FLOW_CLOSING: u8 = 8;

/// [`FragKey::stage`]: a request's fragments on the ingress node.
pub const FRAG_INGRESS: u8 = 1;
/// A reply's fragments leaving the ingress node.
pub const FRAG_REPLY: u8 = 2;
/// A reply's fragments leaving the backend's node.
pub const FRAG_RETURN: u8 = 3;

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
    pub backend: crate::mesh::Backend,
    /// The node's address and published port the client connected to.
    pub node_addr: u32,
    pub node_port: u16,
    pub proto: u8,
    /// `FLOW_*` bits.
    pub state: u8,
    /// The underlay interface the flow came in by, and the two MACs of its
    /// frames, so replies leave the same way without a route lookup.
    pub ifindex: u32,
    pub client_mac: [u8; 6],
    pub node_mac: [u8; 6],
    /// TCP, unproven: the acknowledgement number (host order) that proves
    /// the client saw the backend's SYN-ACK; zero until that SYN-ACK passed.
    pub ack: u32,
}

/// Value of the return maps: the gateway MAC of the flow's ingress node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReturnHop {
    pub mac: [u8; 6],
    /// `FLOW_*` bits, the task standing for the backend.
    pub state: u8,
    pub pad: u8,
    /// The client's own port (wire order) when the task sees the flow with
    /// another one ([`NAT_MAP`]); zero otherwise.
    pub client_port: u16,
    pub pad2: u16,
}

/// Key of [`NAT_MAP`]: a flow as its ingress node sent it, and that node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKey {
    /// Client -> task, with the client's own port.
    pub flow: FlowKey,
    /// The ingress node's VTEP address (the last four bytes of its gateway
    /// MAC), raw.
    pub node: u32,
}

/// Key of [`FRAGS_MAP`]: one fragmented datagram at one stage of the path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// As the fragments carry them (wire order).
    pub src: u32,
    pub dst: u32,
    pub id: u16,
    pub proto: u8,
    /// `FRAG_*`.
    pub stage: u8,
}

/// What the first fragment's flow decided, for the others.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragHop {
    /// The address written into the fragments (destination on the way in,
    /// source on the way out; unused when nothing is translated).
    pub addr: u32,
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
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

#[cfg(feature = "user")]
mod pod {
    use super::{Flow, FlowKey, FragHop, FragKey, NatKey, ReturnHop};

    // SAFETY (all below): `#[repr(C)]` types made only of integers and byte
    // arrays, laid out without implicit padding (checked by the layout test),
    // holding no pointers; every bit pattern is a valid value.
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for ReturnHop {}
    unsafe impl aya::Pod for NatKey {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragHop {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::IPPROTO_UDP;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 16);
        assert_eq!(size_of::<Flow>(), 12 + 4 + 2 + 1 + 1 + 4 + 6 + 6 + 4);
        assert_eq!(size_of::<ReturnHop>(), 12);
        assert_eq!(size_of::<NatKey>(), 20);
        assert_eq!(size_of::<FragKey>(), 12);
        assert_eq!(size_of::<FragHop>(), 20);
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
}
