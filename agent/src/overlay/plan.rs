//! Planning: the ordered list of changes that turns the observed state into
//! the desired one. Pure, so it is tested without a kernel; an empty plan
//! means the host already matches.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::Serialize;
use shoal_control::objects::MacAddr;

use super::names;
use super::state::{
    BridgeState, HostState, IfaceState, NetworkState, PortState, SandboxState, VxlanState,
};

/// One step towards the desired state. Each maps to a handful of netlink
/// requests in the real kernel boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    DeleteSandbox {
        sandbox: String,
    },
    /// Deletes a sandbox interface and, with it, its bridge port.
    DetachIface {
        sandbox: String,
        ifname: String,
    },
    DeleteNetwork {
        network: String,
    },
    CreateNetwork {
        network: String,
    },
    /// Creates the bridge if missing and sets its MTU, addresses and state.
    EnsureBridge {
        network: String,
        bridge: BridgeState,
    },
    DeleteVxlan {
        network: String,
        name: String,
    },
    CreateVxlan {
        network: String,
        vxlan: VxlanState,
    },
    DeletePort {
        network: String,
        port: String,
    },
    DelFdb {
        network: String,
        mac: MacAddr,
    },
    DelNeigh {
        network: String,
        ip: Ipv4Addr,
    },
    SetFdb {
        network: String,
        mac: MacAddr,
        vtep: Ipv4Addr,
    },
    SetNeigh {
        network: String,
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    CreateSandbox {
        sandbox: String,
    },
    /// Creates a veth from the network's bridge into the sandbox.
    AttachIface {
        sandbox: String,
        ifname: String,
        network: String,
        iface: IfaceState,
        port: String,
        port_state: PortState,
    },
    SetDefaultRoute {
        sandbox: String,
        gateway: Ipv4Addr,
    },
}

/// The changes that make `observed` equal `desired`, in an order the kernel
/// accepts: removals that free names first, then networks, then sandboxes.
pub fn plan(desired: &HostState, observed: &HostState) -> Vec<Change> {
    let mut out = Vec::new();
    let reattach = ifaces_to_attach(desired, observed);

    for (sb, obs) in &observed.sandboxes {
        match desired.sandboxes.get(sb) {
            None => out.push(Change::DeleteSandbox {
                sandbox: sb.clone(),
            }),
            Some(want) => {
                for ifname in obs.ifaces.keys() {
                    let unwanted = !want.ifaces.contains_key(ifname);
                    if unwanted || reattach.contains(&(sb.clone(), ifname.clone())) {
                        out.push(Change::DetachIface {
                            sandbox: sb.clone(),
                            ifname: ifname.clone(),
                        });
                    }
                }
            }
        }
    }
    for net in observed
        .networks
        .keys()
        .filter(|n| !desired.networks.contains_key(*n))
    {
        out.push(Change::DeleteNetwork {
            network: net.clone(),
        });
    }

    let empty = NetworkState::default();
    for (net, want) in &desired.networks {
        let obs = match observed.networks.get(net) {
            Some(obs) => obs,
            None => {
                out.push(Change::CreateNetwork {
                    network: net.clone(),
                });
                &empty
            }
        };
        plan_network(net, want, obs, &reattach, &mut out);
    }

    let empty = SandboxState::default();
    for (sb, want) in &desired.sandboxes {
        let obs = match observed.sandboxes.get(sb) {
            Some(obs) => obs,
            None => {
                out.push(Change::CreateSandbox {
                    sandbox: sb.clone(),
                });
                &empty
            }
        };
        let mut attached = false;
        for (ifname, iface) in &want.ifaces {
            if !reattach.contains(&(sb.clone(), ifname.clone())) {
                continue;
            }
            let Some(network) = iface.network.clone() else {
                continue;
            };
            let port = names::port(sb, ifname);
            let port_state = desired.networks[&network].ports[&port].clone();
            out.push(Change::AttachIface {
                sandbox: sb.clone(),
                ifname: ifname.clone(),
                network,
                iface: iface.clone(),
                port,
                port_state,
            });
            attached = true;
        }
        if let Some(gateway) = want.default_gw {
            if attached || obs.default_gw != want.default_gw {
                out.push(Change::SetDefaultRoute {
                    sandbox: sb.clone(),
                    gateway,
                });
            }
        }
    }
    out
}

fn plan_network(
    net: &str,
    want: &NetworkState,
    obs: &NetworkState,
    reattach: &BTreeSet<(String, String)>,
    out: &mut Vec<Change>,
) {
    if let Some(bridge) = &want.bridge {
        if obs.bridge.as_ref() != Some(bridge) {
            out.push(Change::EnsureBridge {
                network: net.into(),
                bridge: bridge.clone(),
            });
        }
    }
    // A VXLAN device is never edited in place: a wrong one is replaced, and
    // its forwarding entries go with it.
    let mut fresh_vxlan = false;
    if let Some(vxlan) = &want.vxlan {
        if obs.vxlan.as_ref() != Some(vxlan) {
            if let Some(old) = &obs.vxlan {
                out.push(Change::DeleteVxlan {
                    network: net.into(),
                    name: old.name.clone(),
                });
            }
            out.push(Change::CreateVxlan {
                network: net.into(),
                vxlan: vxlan.clone(),
            });
            fresh_vxlan = true;
        }
    }
    let being_reattached: BTreeSet<String> = reattach
        .iter()
        .map(|(sb, ifname)| names::port(sb, ifname))
        .collect();
    for port in obs.ports.keys() {
        if !want.ports.contains_key(port) || being_reattached.contains(port) {
            out.push(Change::DeletePort {
                network: net.into(),
                port: port.clone(),
            });
        }
    }
    let (obs_fdb, obs_neigh) = if fresh_vxlan {
        (None, None)
    } else {
        (Some(&obs.fdb), Some(&obs.neigh))
    };
    for mac in obs_fdb
        .into_iter()
        .flat_map(|f| f.keys())
        .filter(|m| !want.fdb.contains_key(*m))
    {
        out.push(Change::DelFdb {
            network: net.into(),
            mac: *mac,
        });
    }
    for ip in obs_neigh
        .into_iter()
        .flat_map(|n| n.keys())
        .filter(|ip| !want.neigh.contains_key(*ip))
    {
        out.push(Change::DelNeigh {
            network: net.into(),
            ip: *ip,
        });
    }
    for (mac, vtep) in &want.fdb {
        if obs_fdb.and_then(|f| f.get(mac)) != Some(vtep) {
            out.push(Change::SetFdb {
                network: net.into(),
                mac: *mac,
                vtep: *vtep,
            });
        }
    }
    for (ip, mac) in &want.neigh {
        if obs_neigh.and_then(|n| n.get(ip)) != Some(mac) {
            out.push(Change::SetNeigh {
                network: net.into(),
                ip: *ip,
                mac: *mac,
            });
        }
    }
}

/// Sandbox interfaces that must be (re)created: missing, different from the
/// spec, or whose bridge port is missing or wrong.
fn ifaces_to_attach(desired: &HostState, observed: &HostState) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (sb, want) in &desired.sandboxes {
        for (ifname, iface) in &want.ifaces {
            let Some(network) = &iface.network else {
                continue;
            };
            let port = names::port(sb, ifname);
            let obs_iface = observed
                .sandboxes
                .get(sb)
                .and_then(|s| s.ifaces.get(ifname));
            let obs_port = observed
                .networks
                .get(network)
                .and_then(|n| n.ports.get(&port));
            let want_port = desired
                .networks
                .get(network)
                .and_then(|n| n.ports.get(&port));
            if obs_iface != Some(iface) || obs_port != want_port {
                out.insert((sb.clone(), ifname.clone()));
            }
        }
    }
    out
}
