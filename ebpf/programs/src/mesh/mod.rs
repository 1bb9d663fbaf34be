//! The routing mesh's data path; see `shoal_ebpf_common::mesh` for the whole
//! picture and `shoal_ebpf_common::flow` for the flow tables.
//!
//! IPv4 TCP and UDP (with or without IP options, whole or fragmented) and
//! ICMP errors about them are handled; every other frame is passed on
//! untouched (`TC_ACT_OK`). Programs never drop a packet they do not
//! understand; they drop only the segments of a half-open TCP flow that do
//! not prove the handshake (see `ingress`).

mod backend;
mod icmp;
mod ingress;
mod packet;
mod reply;
mod socket;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_OK},
    macros::{classifier, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::TcContext,
};
use shoal_ebpf_common::flow::{
    Flow, FlowKey, FragHop, FragKey, NatKey, ReturnHop, CT_CAPACITY, FRAGS_CAPACITY, NAT_CAPACITY,
    NEW_CAPACITY,
};
use shoal_ebpf_common::mesh::{
    Backend, BigServiceTable, Config, LiveKey, ServiceKey, ServiceTable, UdpOrigin, UdpVipKey,
    VipBackends, BIG_MAGLEV_SLOTS, BIG_SERVICES_CAPACITY, CONFIG_SLOTS, LIVE_CAPACITY,
    LOCAL_CAPACITY, MAGLEV_SLOTS, MAX_BACKENDS, MAX_BIG_BACKENDS, SERVICES_CAPACITY, SERVICE_BIG,
    STAT_SLOTS, VIPS_CAPACITY,
};

#[map]
static MESH_SERVICES: HashMap<ServiceKey, ServiceTable> =
    HashMap::with_max_entries(SERVICES_CAPACITY, BPF_F_NO_PREALLOC);

#[map]
static MESH_BIG_SVCS: HashMap<ServiceKey, BigServiceTable> =
    HashMap::with_max_entries(BIG_SERVICES_CAPACITY, BPF_F_NO_PREALLOC);

#[map]
static MESH_LIVE: HashMap<LiveKey, u32> = HashMap::with_max_entries(LIVE_CAPACITY, 0);

#[map]
static MESH_LOCAL: HashMap<u32, u32> = HashMap::with_max_entries(LOCAL_CAPACITY, 0);

#[map]
static MESH_CONFIG: Array<Config> = Array::with_max_entries(CONFIG_SLOTS, 0);

#[map]
static MESH_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

#[map]
static MESH_CT: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

#[map]
static MESH_REV: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

#[map]
static MESH_NEW_CT: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(NEW_CAPACITY, 0);

#[map]
static MESH_NEW_REV: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(NEW_CAPACITY, 0);

#[map]
static MESH_RETURN: LruHashMap<FlowKey, ReturnHop> = LruHashMap::with_max_entries(CT_CAPACITY, 0);

#[map]
static MESH_NEW_RETURN: LruHashMap<FlowKey, ReturnHop> =
    LruHashMap::with_max_entries(NEW_CAPACITY, 0);

#[map]
static MESH_NAT: LruHashMap<NatKey, u32> = LruHashMap::with_max_entries(NAT_CAPACITY, 0);

#[map]
static MESH_FRAGS: LruHashMap<FragKey, FragHop> = LruHashMap::with_max_entries(FRAGS_CAPACITY, 0);

#[map]
static MESH_VIPS: HashMap<u32, VipBackends> =
    HashMap::with_max_entries(VIPS_CAPACITY, BPF_F_NO_PREALLOC);

#[map]
static MESH_UDP_VIPS: LruHashMap<UdpVipKey, UdpOrigin> =
    LruHashMap::with_max_entries(CT_CAPACITY, 0);

/// Published ports on the underlay: pick (or keep) a backend, rewrite the
/// destination and send the frame into the ingress network.
#[classifier]
pub fn shoal_ingress(ctx: TcContext) -> i32 {
    ingress::ingress(&ctx).unwrap_or(TC_ACT_OK as i32)
}

/// Replies coming back out of the ingress network: restore the node's address
/// and published port as the source, and send them out the way the request
/// came in.
#[classifier]
pub fn shoal_reply(ctx: TcContext) -> i32 {
    reply::reply(&ctx).unwrap_or(TC_ACT_OK as i32)
}

/// On the backend's node: remember which ingress node a flow came through.
#[classifier]
pub fn shoal_learn(ctx: TcContext) -> i32 {
    backend::learn(&ctx);
    TC_ACT_OK as i32
}

/// On the backend's node: a task's packet to its default gateway that answers
/// an ingress flow goes back to the node the flow came through.
#[classifier]
pub fn shoal_return(ctx: TcContext) -> i32 {
    backend::back(&ctx).unwrap_or(TC_ACT_OK as i32)
}

/// Adds one to counter `slot` of this CPU.
#[inline(always)]
fn count(slot: u32) {
    if let Some(n) = MESH_STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe { *n += 1 };
    }
}

/// The node's configuration for the programs of one namespace.
#[inline(always)]
fn config(slot: u32) -> Option<&'static Config> {
    let config = MESH_CONFIG.get_ptr(slot)?;
    // SAFETY: pointers from successful map lookups stay valid for the whole
    // run of the program (RCU); the values are plain data.
    Some(unsafe { &*config })
}

/// Whether `backend` of `service` may still carry flows.
#[inline(always)]
fn live(service: ServiceKey, backend: &Backend) -> bool {
    MESH_LIVE.get_ptr(LiveKey::new(service, backend)).is_some()
}

/// The backend of `table`'s Maglev slot for `hash` (the big table's when the
/// port has one).
#[inline(always)]
fn pick(service: ServiceKey, table: &ServiceTable, hash: u32) -> Option<Backend> {
    if table.flags & SERVICE_BIG != 0 {
        let big = MESH_BIG_SVCS.get_ptr(service)?;
        // SAFETY: as in `config`.
        let big = unsafe { &*big };
        if big.count == 0 {
            return None;
        }
        let slot = *big.slots.get(hash as usize & (BIG_MAGLEV_SLOTS - 1))? as usize;
        if slot >= MAX_BIG_BACKENDS {
            return None;
        }
        return big.backends.get(slot).copied();
    }
    if table.count == 0 {
        return None;
    }
    let slot = *table.slots.get(hash as usize & (MAGLEV_SLOTS - 1))? as usize;
    if slot >= MAX_BACKENDS {
        return None;
    }
    table.backends.get(slot).copied()
}
