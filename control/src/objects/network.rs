//! Overlay networks and the endpoints attached to them: the [`Network`]
//! object users create (`network create`), the [`NetworkSpec`] the data
//! plane runs, and the endpoints gossiped between nodes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::MacAddr;
use crate::store::{kind, Object};

/// VNIs below this are left to the operator's other uses, as Docker does.
pub const VNI_MIN: u32 = 4096;
/// The largest VNI VXLAN can carry (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;
/// Bytes VXLAN adds to every frame: outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The smallest MTU an IPv4 network may have (RFC 791).
const MTU_MIN: u32 = 576;
/// The largest MTU a network may ask for: the largest IPv4 packet less the
/// VXLAN encapsulation that carries it across the underlay.
pub const MTU_MAX: u32 = 65_535 - VXLAN_OVERHEAD;

/// The only driver shoal has: VXLAN overlays spanning the swarm.
pub const OVERLAY_DRIVER: &str = "overlay";

/// A network as the managers store it (store kind `network`, keyed by id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 25 lowercase base36 characters, like node ids; equal to `spec.id`.
    pub id: String,
    /// Unique in the swarm.
    pub name: String,
    /// Always [`OVERLAY_DRIVER`] for now.
    pub driver: String,
    pub spec: NetworkSpec,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// One overlay network as the data plane needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Stable id; names the network's namespace on every host.
    pub id: String,
    /// VXLAN network identifier, unique in the swarm.
    pub vni: u32,
    pub subnet: Ipv4Net,
    /// Address of the network's bridge on every host; tasks route through it.
    pub gateway: Ipv4Addr,
    /// MTU of the bridge, VXLAN device and sandboxes; `None` derives it from
    /// the underlay (underlay MTU minus [`VXLAN_OVERHEAD`]).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The swarm's ingress network, which carries published ports' traffic
    /// from any node to the tasks (Swarm's `ingress`). There is one.
    #[serde(default)]
    pub ingress: bool,
}

/// A task's address on a network, as gossiped to every node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// Network id this endpoint belongs to.
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Underlay address of the node that hosts the endpoint.
    pub vtep: Ipv4Addr,
}

/// Why a network definition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("network id must be 1-40 characters of [a-zA-Z0-9_.-], got `{0}`")]
    BadId(String),
    #[error("network `{id}`: VNI {vni} is outside {VNI_MIN}-{VNI_MAX}")]
    VniOutOfRange { id: String, vni: u32 },
    #[error("network `{id}`: gateway {gateway} is not a host address of subnet {subnet}")]
    GatewayOutsideSubnet {
        id: String,
        gateway: Ipv4Addr,
        subnet: Ipv4Net,
    },
    #[error("network `{id}`: subnet {subnet} is too small; use a /30 or larger")]
    SubnetTooSmall { id: String, subnet: Ipv4Net },
    #[error("network `{id}`: MTU {mtu} is below the IPv4 minimum of {MTU_MIN}")]
    MtuTooSmall { id: String, mtu: u32 },
    #[error("network `{id}`: MTU {mtu} is above {MTU_MAX} (65535, the largest IPv4 packet, less the {VXLAN_OVERHEAD} bytes of VXLAN encapsulation); use an MTU up to your underlay's less {VXLAN_OVERHEAD}")]
    MtuTooLarge { id: String, mtu: u32 },
    #[error("network `{id}`: MTU {mtu} does not fit this node's underlay (MTU {underlay_mtu}, so at most {} inside VXLAN); the network is not built here: recreate it with `--opt mtu=` up to {}", underlay_mtu.saturating_sub(VXLAN_OVERHEAD), underlay_mtu.saturating_sub(VXLAN_OVERHEAD))]
    MtuAboveUnderlay {
        id: String,
        mtu: u32,
        underlay_mtu: u32,
    },
    #[error("network `{id}`: VNI {vni} is already used by network `{other}`")]
    DuplicateVni { id: String, vni: u32, other: String },
    #[error("{ip} is the gateway of network `{network}`")]
    EndpointIsGateway { network: String, ip: Ipv4Addr },
    #[error("endpoint {ip} is not inside subnet {subnet} of network `{network}`")]
    EndpointOutsideSubnet {
        network: String,
        ip: Ipv4Addr,
        subnet: Ipv4Net,
    },
}

impl NetworkError {
    /// The same refusal naming the network `name` instead of its id (for
    /// users, who know networks by the names they gave).
    pub fn naming(self, name: &str) -> NetworkError {
        let id = name.to_string();
        match self {
            NetworkError::BadId(_) => NetworkError::BadId(id),
            NetworkError::VniOutOfRange { vni, .. } => NetworkError::VniOutOfRange { id, vni },
            NetworkError::GatewayOutsideSubnet {
                gateway, subnet, ..
            } => NetworkError::GatewayOutsideSubnet {
                id,
                gateway,
                subnet,
            },
            NetworkError::SubnetTooSmall { subnet, .. } => {
                NetworkError::SubnetTooSmall { id, subnet }
            }
            NetworkError::MtuTooSmall { mtu, .. } => NetworkError::MtuTooSmall { id, mtu },
            NetworkError::MtuTooLarge { mtu, .. } => NetworkError::MtuTooLarge { id, mtu },
            NetworkError::MtuAboveUnderlay {
                mtu, underlay_mtu, ..
            } => NetworkError::MtuAboveUnderlay {
                id,
                mtu,
                underlay_mtu,
            },
            NetworkError::DuplicateVni { vni, other, .. } => {
                NetworkError::DuplicateVni { id, vni, other }
            }
            endpoint @ (NetworkError::EndpointOutsideSubnet { .. }
            | NetworkError::EndpointIsGateway { .. }) => endpoint,
        }
    }
}

impl NetworkSpec {
    /// Checks the network on its own; [`NetworkSpec::validate_all`] also
    /// checks networks against each other.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 40
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !id_ok {
            return Err(NetworkError::BadId(self.id.clone()));
        }
        if !(VNI_MIN..=VNI_MAX).contains(&self.vni) {
            return Err(NetworkError::VniOutOfRange {
                id: self.id.clone(),
                vni: self.vni,
            });
        }
        if self.subnet.prefix_len() > 30 {
            return Err(NetworkError::SubnetTooSmall {
                id: self.id.clone(),
                subnet: self.subnet,
            });
        }
        if !self.is_host_address(self.gateway) {
            return Err(NetworkError::GatewayOutsideSubnet {
                id: self.id.clone(),
                gateway: self.gateway,
                subnet: self.subnet,
            });
        }
        if let Some(mtu) = self.mtu.filter(|m| *m < MTU_MIN) {
            return Err(NetworkError::MtuTooSmall {
                id: self.id.clone(),
                mtu,
            });
        }
        if let Some(mtu) = self.mtu.filter(|m| *m > MTU_MAX) {
            return Err(NetworkError::MtuTooLarge {
                id: self.id.clone(),
                mtu,
            });
        }
        Ok(())
    }

    /// Validates each network and refuses two networks sharing a VNI.
    pub fn validate_all(networks: &[NetworkSpec]) -> Result<(), NetworkError> {
        for (i, net) in networks.iter().enumerate() {
            net.validate()?;
            if let Some(other) = networks[..i].iter().find(|o| o.vni == net.vni) {
                return Err(NetworkError::DuplicateVni {
                    id: net.id.clone(),
                    vni: net.vni,
                    other: other.id.clone(),
                });
            }
        }
        Ok(())
    }

    /// True when `ip` is inside the subnet and is neither its network nor
    /// its broadcast address.
    pub fn is_host_address(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip) && ip != self.subnet.network() && ip != self.subnet.broadcast()
    }

    /// The MTU the network runs with on an underlay of `underlay_mtu`.
    pub fn effective_mtu(&self, underlay_mtu: u32) -> u32 {
        self.mtu
            .unwrap_or_else(|| underlay_mtu.saturating_sub(VXLAN_OVERHEAD))
    }

    /// Checks that the network's MTU fits inside VXLAN on an underlay of
    /// `underlay_mtu` (a node's own check: managers do not know each node's
    /// underlay). A derived MTU always fits.
    pub fn check_underlay(&self, underlay_mtu: u32) -> Result<(), NetworkError> {
        match self.mtu {
            Some(mtu) if mtu > underlay_mtu.saturating_sub(VXLAN_OVERHEAD) => {
                Err(NetworkError::MtuAboveUnderlay {
                    id: self.id.clone(),
                    mtu,
                    underlay_mtu,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks that an endpoint may take `ip` on this network: a host address
    /// of the subnet other than the gateway.
    pub fn check_endpoint(&self, ip: Ipv4Addr) -> Result<(), NetworkError> {
        if !self.is_host_address(ip) {
            return Err(NetworkError::EndpointOutsideSubnet {
                network: self.id.clone(),
                ip,
                subnet: self.subnet,
            });
        }
        if ip == self.gateway {
            return Err(NetworkError::EndpointIsGateway {
                network: self.id.clone(),
                ip,
            });
        }
        Ok(())
    }
}

impl Object for Network {
    const KIND: &'static str = kind::NETWORK;
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, vni: u32, subnet: &str, gw: &str) -> NetworkSpec {
        NetworkSpec {
            id: id.into(),
            vni,
            subnet: subnet.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            mtu: None,
            ingress: false,
        }
    }

    #[test]
    fn mtus_are_bounded_on_both_sides() {
        let with = |mtu| NetworkSpec {
            mtu: Some(mtu),
            ..net("n", 4096, "10.0.9.0/24", "10.0.9.1")
        };
        assert!(with(MTU_MAX).validate().is_ok());
        assert!(with(1400).validate().is_ok());
        let err = with(70_000).validate().unwrap_err();
        assert!(matches!(err, NetworkError::MtuTooLarge { mtu: 70_000, .. }));
        assert!(err.to_string().contains("above 65485"), "{err}");
        assert!(matches!(
            with(MTU_MAX + 1).validate(),
            Err(NetworkError::MtuTooLarge { .. })
        ));
        assert!(matches!(
            with(100).validate(),
            Err(NetworkError::MtuTooSmall { .. })
        ));
    }

    #[test]
    fn an_mtu_beyond_the_underlay_less_vxlan_does_not_fit_a_node() {
        let with = |mtu| NetworkSpec {
            mtu,
            ..net("n", 4096, "10.0.9.0/24", "10.0.9.1")
        };
        assert!(with(None).check_underlay(1500).is_ok());
        assert!(with(Some(1450)).check_underlay(1500).is_ok());
        assert!(with(Some(9000)).check_underlay(9050).is_ok());
        let err = with(Some(1451)).check_underlay(1500).unwrap_err();
        assert_eq!(
            err,
            NetworkError::MtuAboveUnderlay {
                id: "n".into(),
                mtu: 1451,
                underlay_mtu: 1500
            }
        );
        assert!(err.to_string().contains("up to 1450"), "{err}");
        // A tiny underlay fits nothing explicit.
        assert!(with(Some(576)).check_underlay(40).is_err());
    }

    #[test]
    fn endpoints_take_host_addresses_other_than_the_gateway() {
        let n = net("a", 4096, "10.0.0.0/24", "10.0.0.1");
        assert_eq!(n.check_endpoint("10.0.0.2".parse().unwrap()), Ok(()));
        for bad in ["10.0.0.0", "10.0.0.255", "10.0.1.2"] {
            assert!(matches!(
                n.check_endpoint(bad.parse().unwrap()),
                Err(NetworkError::EndpointOutsideSubnet { .. })
            ));
        }
        let gw = n.check_endpoint("10.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(gw.to_string(), "10.0.0.1 is the gateway of network `a`");
    }

    #[test]
    fn mtu_defaults_to_underlay_minus_vxlan_overhead() {
        let n = net("a", 4096, "10.0.0.0/24", "10.0.0.1");
        assert_eq!(n.effective_mtu(1500), 1450);
        assert_eq!(n.effective_mtu(9000), 8950);
        let fixed = NetworkSpec {
            mtu: Some(1400),
            ingress: false,
            ..n
        };
        assert_eq!(fixed.effective_mtu(1500), 1400);
    }

    #[test]
    fn refuses_bad_networks_with_the_reason() {
        assert!(net("a", 4096, "10.0.0.0/24", "10.0.0.1").validate().is_ok());
        assert_eq!(
            net("a", 12, "10.0.0.0/24", "10.0.0.1").validate(),
            Err(NetworkError::VniOutOfRange {
                id: "a".into(),
                vni: 12
            })
        );
        assert!(matches!(
            net("a", 4096, "10.0.0.0/24", "10.0.1.1").validate(),
            Err(NetworkError::GatewayOutsideSubnet { .. })
        ));
        assert!(matches!(
            net("a", 4096, "10.0.0.0/24", "10.0.0.255").validate(),
            Err(NetworkError::GatewayOutsideSubnet { .. })
        ));
        assert!(matches!(
            net("a/b", 4096, "10.0.0.0/24", "10.0.0.1").validate(),
            Err(NetworkError::BadId(_))
        ));
        assert!(matches!(
            net("a", 4096, "10.0.0.0/31", "10.0.0.1").validate(),
            Err(NetworkError::SubnetTooSmall { .. })
        ));
    }
}
