//! The overlay state of one host, in one shape for both sides of a
//! reconciliation: what the spec wants ([`HostState::desired`]) and what the
//! kernel has (read by an [`OverlayKernel`](super::OverlayKernel)).
//! Comparing two values of this shape is the whole of planning.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use shoal_control::objects::MacAddr;

use super::names;
use super::spec::OverlaySpec;

/// The UDP port VXLAN uses (IANA).
pub const VXLAN_PORT: u16 = 4789;

/// Everything the overlay owns on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostState {
    /// By network id; each network lives in its own namespace.
    pub networks: BTreeMap<String, NetworkState>,
    /// By sandbox id; each sandbox is a namespace of its own.
    pub sandboxes: BTreeMap<String, SandboxState>,
}

/// One network's namespace: a bridge, a VXLAN device on it, the static
/// forwarding and neighbour entries for remote endpoints, and the bridge
/// ports that lead to local sandboxes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkState {
    pub bridge: Option<BridgeState>,
    pub vxlan: Option<VxlanState>,
    /// Remote endpoint MAC -> VTEP it lives behind (VXLAN FDB, static).
    pub fdb: BTreeMap<MacAddr, Ipv4Addr>,
    /// Remote endpoint IP -> MAC, answered locally by the VXLAN ARP proxy.
    pub neigh: BTreeMap<Ipv4Addr, MacAddr>,
    /// Bridge-side ends of sandbox veths, by interface name.
    pub ports: BTreeMap<String, PortState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BridgeState {
    pub mtu: u32,
    pub up: bool,
    /// The gateway address with the subnet's prefix.
    pub addrs: BTreeSet<Ipv4Net>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VxlanState {
    pub name: String,
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub learning: bool,
    pub proxy: bool,
    pub mtu: u32,
    pub up: bool,
    pub on_bridge: bool,
    /// Whether the bridge learns MACs behind this port. Off: remote MACs are
    /// known only from the static VXLAN entries, so a withdrawn endpoint
    /// leaves no learned entry behind to misdirect a reused address.
    pub bridge_learning: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortState {
    pub mtu: u32,
    pub up: bool,
    pub on_bridge: bool,
}

/// A sandbox namespace and its interfaces on overlay networks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SandboxState {
    /// By interface name inside the sandbox (`eth0`, `eth1`, ...).
    pub ifaces: BTreeMap<String, IfaceState>,
    /// Gateway of the default route, if any.
    pub default_gw: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IfaceState {
    /// The network whose bridge the other end of this veth is plugged into.
    pub network: Option<String>,
    pub mac: MacAddr,
    pub addrs: BTreeSet<Ipv4Net>,
    pub mtu: u32,
    pub up: bool,
}

impl HostState {
    /// The state `spec` asks for. The spec must already be validated.
    pub fn desired(spec: &OverlaySpec) -> HostState {
        let mut state = HostState::default();
        for net in &spec.networks {
            let mtu = net.effective_mtu(spec.underlay_mtu);
            let prefix = net.subnet.prefix_len();
            let gateway = Ipv4Net::new(net.gateway, prefix).unwrap_or(net.subnet);
            let remote = spec
                .endpoints
                .iter()
                .filter(|e| e.network == net.id && e.vtep != spec.vtep);
            state.networks.insert(
                net.id.clone(),
                NetworkState {
                    bridge: Some(BridgeState {
                        mtu,
                        up: true,
                        addrs: BTreeSet::from([gateway]),
                    }),
                    vxlan: Some(VxlanState {
                        name: names::vxlan(net.vni),
                        vni: net.vni,
                        local: Some(spec.vtep),
                        port: VXLAN_PORT,
                        learning: false,
                        proxy: true,
                        mtu,
                        up: true,
                        on_bridge: true,
                        bridge_learning: false,
                    }),
                    fdb: remote
                        .clone()
                        .map(|e| (e.mac, e.vtep))
                        .chain(
                            spec.gateways
                                .iter()
                                .filter(|g| g.network == net.id && g.vtep != spec.vtep)
                                .map(|g| (g.mac, g.vtep)),
                        )
                        .collect(),
                    neigh: remote.map(|e| (e.ip, e.mac)).collect(),
                    ports: BTreeMap::new(),
                },
            );
        }
        for sandbox in &spec.sandboxes {
            let mut sb = SandboxState::default();
            for (i, att) in sandbox.attachments.iter().enumerate() {
                let Some(net) = spec.networks.iter().find(|n| n.id == att.network) else {
                    continue;
                };
                let mtu = net.effective_mtu(spec.underlay_mtu);
                let ifname = names::sandbox_iface(i);
                let addr = Ipv4Net::new(att.ip, net.subnet.prefix_len()).unwrap_or(net.subnet);
                if i == 0 {
                    sb.default_gw = Some(net.gateway);
                }
                sb.ifaces.insert(
                    ifname.clone(),
                    IfaceState {
                        network: Some(net.id.clone()),
                        mac: att.mac(),
                        addrs: BTreeSet::from([addr]),
                        mtu,
                        up: true,
                    },
                );
                if let Some(ns) = state.networks.get_mut(&net.id) {
                    ns.ports.insert(
                        names::port(&sandbox.id, &ifname),
                        PortState {
                            mtu,
                            up: true,
                            on_bridge: true,
                        },
                    );
                }
            }
            state.sandboxes.insert(sandbox.id.clone(), sb);
        }
        state
    }

    /// Number of remote endpoints programmed over all networks.
    pub fn remote_endpoints(&self) -> usize {
        self.networks.values().map(|n| n.neigh.len()).sum()
    }
}
