//! What one host's overlay should look like: its networks, the endpoints on
//! them (local and remote), and the local sandboxes. Today it is read from a
//! file (`shoal overlay apply`); the gossip tables will produce it later.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use shoal_control::objects::{Endpoint, MacAddr, NetworkError, NetworkSpec};

use super::OverlayError;

fn default_underlay_mtu() -> u32 {
    1500
}

/// The desired overlay of one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// This host's underlay address: source of its VXLAN packets, and how
    /// remote endpoints are told apart from local ones.
    pub vtep: Ipv4Addr,
    #[serde(default = "default_underlay_mtu")]
    pub underlay_mtu: u32,
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    /// Endpoints of every host; those whose VTEP is this host's are skipped.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub sandboxes: Vec<SandboxSpec>,
    /// Other nodes' gateway MACs on a network (the routing mesh's return
    /// path): forwarding entries only, no address.
    #[serde(default)]
    pub gateways: Vec<Gateway>,
}

/// A node's gateway MAC on a network, and the node's VTEP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    pub network: String,
    pub mac: MacAddr,
    pub vtep: Ipv4Addr,
}

/// A sandbox: a network namespace with one interface per attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub id: String,
    /// The first attachment becomes `eth0` and carries the default route.
    pub attachments: Vec<Attachment>,
}

/// A sandbox's address on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub ip: Ipv4Addr,
    /// Defaults to the MAC derived from `ip` (`02:42:` + the address bytes).
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

impl Attachment {
    pub fn mac(&self) -> MacAddr {
        self.mac.unwrap_or_else(|| MacAddr::from_ipv4(self.ip))
    }
}

impl OverlaySpec {
    /// Refuses a spec the kernel should never see, naming what is wrong.
    pub fn validate(&self) -> Result<(), OverlayError> {
        NetworkSpec::validate_all(&self.networks)?;
        let mut ids = BTreeSet::new();
        for sandbox in &self.sandboxes {
            check_sandbox_id(&sandbox.id)?;
            if !ids.insert(sandbox.id.as_str()) {
                return Err(OverlayError::Invalid(format!(
                    "sandbox `{}` is listed twice",
                    sandbox.id
                )));
            }
        }
        let mut seen = BTreeSet::new();
        let local = self.sandboxes.iter().flat_map(|s| {
            s.attachments
                .iter()
                .map(move |a| (s.id.as_str(), a.network.as_str(), a.ip))
        });
        let remote = self
            .endpoints
            .iter()
            .map(|e| ("endpoint", e.network.as_str(), e.ip));
        for (owner, network, ip) in local.chain(remote) {
            let net = self.network(network).ok_or_else(|| {
                OverlayError::Invalid(format!(
                    "{owner} refers to unknown network `{network}`; define it under `networks`"
                ))
            })?;
            net.check_endpoint(ip)
                .map_err(|e| OverlayError::Invalid(format!("{owner}: {}", e.chain())))?;
            // A local sandbox is also gossiped as an endpoint with this host's
            // VTEP; that is the same address, not a clash.
            let is_own_echo = owner == "endpoint"
                && self
                    .endpoints
                    .iter()
                    .any(|e| e.ip == ip && e.network == network && e.vtep == self.vtep);
            if !seen.insert((network, ip)) && !is_own_echo {
                return Err(OverlayError::Invalid(format!(
                    "address {ip} is used twice on network `{network}`"
                )));
            }
        }
        Ok(())
    }

    fn network(&self, id: &str) -> Option<&NetworkSpec> {
        self.networks.iter().find(|n| n.id == id)
    }
}

/// Refuses a sandbox id that cannot name a namespace file.
pub fn check_sandbox_id(id: &str) -> Result<(), OverlayError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(OverlayError::Invalid(format!(
            "sandbox id must be 1-64 characters of [a-zA-Z0-9_.-], got `{id}`"
        )))
    }
}

impl From<NetworkError> for OverlayError {
    fn from(e: NetworkError) -> Self {
        OverlayError::Invalid(e.chain().to_string())
    }
}
