//! The kernel boundary of the overlay: read what exists, apply one change.
//! [`RtnlKernel`](super::RtnlKernel) does it with netlink; [`FakeKernel`]
//! does it in memory with the same semantics, for fast tests of the logic.

use super::names;
use super::plan::Change;
use super::state::{HostState, NetworkState, SandboxState};
use super::OverlayError;

/// What the reconciler needs from the kernel.
pub trait OverlayKernel {
    /// Reads the overlay state this agent owns on the host.
    fn observe(&mut self) -> Result<HostState, OverlayError>;
    /// Applies one change. Deleting what is already gone is not an error.
    fn apply(&mut self, change: &Change) -> Result<(), OverlayError>;
}

/// An in-memory kernel that records every change applied to it.
#[derive(Debug, Default)]
pub struct FakeKernel {
    pub state: HostState,
    pub applied: Vec<Change>,
    /// Networks whose VXLAN device the kernel refuses (its VNI taken).
    pub refuse_vxlan: std::collections::BTreeSet<String>,
}

impl FakeKernel {
    pub fn with_state(state: HostState) -> Self {
        FakeKernel {
            state,
            ..FakeKernel::default()
        }
    }

    fn network(&mut self, id: &str) -> Result<&mut NetworkState, OverlayError> {
        self.state.networks.get_mut(id).ok_or_else(|| {
            OverlayError::Kernel(format!("network namespace of `{id}` does not exist"))
        })
    }

    fn sandbox(&mut self, id: &str) -> Result<&mut SandboxState, OverlayError> {
        self.state
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| OverlayError::Kernel(format!("sandbox namespace `{id}` does not exist")))
    }

    /// A veth pair dies as a whole: drop both ends.
    fn drop_pair(&mut self, sandbox: &str, ifname: &str) {
        let port = names::port(sandbox, ifname);
        for net in self.state.networks.values_mut() {
            net.ports.remove(&port);
        }
        if let Some(sb) = self.state.sandboxes.get_mut(sandbox) {
            sb.ifaces.remove(ifname);
            if ifname == "eth0" {
                sb.default_gw = None;
            }
        }
    }
}

impl OverlayKernel for FakeKernel {
    fn observe(&mut self) -> Result<HostState, OverlayError> {
        Ok(self.state.clone())
    }

    fn apply(&mut self, change: &Change) -> Result<(), OverlayError> {
        self.applied.push(change.clone());
        match change {
            Change::DeleteSandbox { sandbox } => {
                if let Some(sb) = self.state.sandboxes.get(sandbox) {
                    let ifnames: Vec<String> = sb.ifaces.keys().cloned().collect();
                    for ifname in ifnames {
                        self.drop_pair(sandbox, &ifname);
                    }
                }
                self.state.sandboxes.remove(sandbox);
            }
            Change::DetachIface { sandbox, ifname } => self.drop_pair(sandbox, ifname),
            Change::DeleteNetwork { network } => {
                let attached: Vec<(String, String)> = self
                    .state
                    .sandboxes
                    .iter()
                    .flat_map(|(sb, s)| {
                        s.ifaces
                            .iter()
                            .filter(|(_, i)| i.network.as_deref() == Some(network))
                            .map(move |(ifname, _)| (sb.clone(), ifname.clone()))
                    })
                    .collect();
                for (sb, ifname) in attached {
                    self.drop_pair(&sb, &ifname);
                }
                self.state.networks.remove(network);
            }
            Change::CreateNetwork { network } => {
                self.state.networks.entry(network.clone()).or_default();
            }
            Change::EnsureBridge { network, bridge } => {
                self.network(network)?.bridge = Some(bridge.clone())
            }
            Change::DeleteVxlan { network, .. } => {
                let net = self.network(network)?;
                net.vxlan = None;
                net.fdb.clear();
                net.neigh.clear();
            }
            Change::CreateVxlan { network, vxlan } => {
                if self.refuse_vxlan.contains(network) {
                    return Err(OverlayError::Netlink {
                        op: format!("create VXLAN {}", vxlan.name),
                        message: "File exists (os error 17)".into(),
                    });
                }
                let net = self.network(network)?;
                if net.bridge.is_none() {
                    return Err(OverlayError::Kernel(format!(
                        "no bridge in `{network}` for the VXLAN device"
                    )));
                }
                net.vxlan = Some(vxlan.clone());
            }
            Change::DeletePort { network, port } => {
                self.network(network)?.ports.remove(port);
                let owner = self.state.sandboxes.iter().find_map(|(sb, s)| {
                    s.ifaces
                        .keys()
                        .find(|ifname| names::port(sb, ifname) == *port)
                        .map(|i| (sb.clone(), i.clone()))
                });
                if let Some((sb, ifname)) = owner {
                    self.drop_pair(&sb, &ifname);
                }
            }
            Change::DelFdb { network, mac } => {
                self.network(network)?.fdb.remove(mac);
            }
            Change::DelNeigh { network, ip } => {
                self.network(network)?.neigh.remove(ip);
            }
            Change::SetFdb { network, mac, vtep } => {
                let net = self.network(network)?;
                if net.vxlan.is_none() {
                    return Err(OverlayError::Kernel(format!(
                        "no VXLAN device in `{network}`"
                    )));
                }
                net.fdb.insert(*mac, *vtep);
            }
            Change::SetNeigh { network, ip, mac } => {
                let net = self.network(network)?;
                if net.vxlan.is_none() {
                    return Err(OverlayError::Kernel(format!(
                        "no VXLAN device in `{network}`"
                    )));
                }
                net.neigh.insert(*ip, *mac);
            }
            Change::CreateSandbox { sandbox } => {
                self.state.sandboxes.entry(sandbox.clone()).or_default();
            }
            Change::AttachIface {
                sandbox,
                ifname,
                network,
                iface,
                port,
                port_state,
            } => {
                let net = self.network(network)?;
                if net.bridge.is_none() || net.ports.contains_key(port) {
                    return Err(OverlayError::Kernel(format!(
                        "cannot add port {port} in `{network}`"
                    )));
                }
                net.ports.insert(port.clone(), port_state.clone());
                let sb = self.sandbox(sandbox)?;
                if sb.ifaces.contains_key(ifname) {
                    return Err(OverlayError::Kernel(format!(
                        "{ifname} exists in sandbox `{sandbox}`"
                    )));
                }
                sb.ifaces.insert(ifname.clone(), iface.clone());
            }
            Change::SetDefaultRoute { sandbox, gateway } => {
                let sb = self.sandbox(sandbox)?;
                if !sb.ifaces.contains_key("eth0") {
                    return Err(OverlayError::Kernel(format!(
                        "no eth0 in sandbox `{sandbox}` for the default route"
                    )));
                }
                sb.default_gw = Some(*gateway);
            }
        }
        Ok(())
    }
}
