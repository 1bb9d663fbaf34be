//! Docker's networks: `NetworkResource` (`GET /networks`, `network ls` and
//! `inspect`) and the swarm `Network` carried in task attachments, and how
//! shoal's networks become them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{go_time_secs, is_false, Driver, Labels, ObjectVersion};
use crate::api::{NetworkView, VXLANID_OPTION};
use crate::objects::Network;

/// A network as `network ls` and `network inspect` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkResource {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(default)]
    pub created: String,
    /// `swarm` for every shoal network.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default, rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(default, rename = "IPAM")]
    pub ipam: Ipam,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub ingress: bool,
    #[serde(default)]
    pub config_from: NetworkConfigReference,
    #[serde(default)]
    pub config_only: bool,
    #[serde(default)]
    pub containers: Option<BTreeMap<String, EndpointResource>>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerInfo>,
    /// Docker's per-service load-balancing detail (`--verbose`); kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, serde_json::Value>>,
    /// shoal's own: how the subnet's addresses are used (`inspect` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<crate::orchestrator::AddressUsage>,
    /// shoal's own: nodes that cannot build the network, with their
    /// agent's error (`inspect` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<crate::api::NetworkFailureView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub config: Option<Vec<IpamConfig>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "IPRange")]
    pub ip_range: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "AuxiliaryAddresses"
    )]
    pub aux_address: Option<BTreeMap<String, String>>,
}

/// The config-only network a network takes its settings from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConfigReference {
    #[serde(default)]
    pub network: String,
}

/// A container's endpoint on a network (local containers only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointResource {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(default)]
    pub mac_address: String,
    #[serde(default, rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(default, rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// A node taking part in an overlay network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "IP")]
    pub ip: String,
}

/// The swarm's record of a network, as task attachments carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmNetwork {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub version: ObjectVersion,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub spec: NetworkSpec,
    #[serde(default)]
    pub driver_state: Driver,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "IPAMOptions"
    )]
    pub ipam_options: Option<IpamOptions>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_configuration: Option<Driver>,
    #[serde(default, skip_serializing_if = "is_false", rename = "IPv6Enabled")]
    pub ipv6_enabled: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ingress: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "IPAMOptions"
    )]
    pub ipam_options: Option<IpamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<NetworkConfigReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamOptions {
    #[serde(default)]
    pub driver: Driver,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<SwarmIpamConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmIpamConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub range: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// A task's place on a network: the network and the task's address in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    #[serde(default)]
    pub network: SwarmNetwork,
    /// `10.0.1.3/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

impl From<&NetworkView> for NetworkResource {
    fn from(view: &NetworkView) -> Self {
        NetworkResource {
            name: view.name.clone(),
            id: view.id.clone(),
            created: view.created.clone(),
            scope: view.scope.clone(),
            driver: view.driver.clone(),
            enable_ipv6: view.enable_ipv6,
            ipam: Ipam {
                driver: view.ipam.driver.clone(),
                options: None,
                config: Some(
                    view.ipam
                        .config
                        .iter()
                        .map(|c| IpamConfig {
                            subnet: c.subnet.clone(),
                            gateway: c.gateway.clone(),
                            ..IpamConfig::default()
                        })
                        .collect(),
                ),
            },
            internal: view.internal,
            attachable: view.attachable,
            ingress: view.ingress,
            config_from: NetworkConfigReference::default(),
            config_only: false,
            containers: None,
            options: Some(view.options.clone()),
            labels: Some(view.labels.clone()),
            peers: Vec::new(),
            services: None,
            addresses: view.addresses,
            failures: view.failures.clone(),
        }
    }
}

impl SwarmNetwork {
    /// The swarm record of a shoal network.
    pub fn from_shoal(network: &Network) -> Self {
        let ipam = IpamOptions {
            driver: Driver {
                name: "default".into(),
                options: None,
            },
            configs: vec![SwarmIpamConfig {
                subnet: network.spec.subnet.to_string(),
                range: String::new(),
                gateway: network.spec.gateway.to_string(),
            }],
        };
        SwarmNetwork {
            id: network.id.clone(),
            version: ObjectVersion::default(),
            created_at: go_time_secs(network.created_at),
            updated_at: go_time_secs(network.created_at),
            spec: NetworkSpec {
                name: network.name.clone(),
                labels: Some(network.labels.clone()),
                driver_configuration: Some(Driver {
                    name: network.driver.clone(),
                    options: None,
                }),
                ingress: network.spec.ingress,
                ipam_options: Some(ipam.clone()),
                ..NetworkSpec::default()
            },
            driver_state: Driver {
                name: network.driver.clone(),
                options: Some(BTreeMap::from([(
                    VXLANID_OPTION.to_string(),
                    network.spec.vni.to_string(),
                )])),
            },
            ipam_options: Some(ipam),
        }
    }
}

impl NetworkAttachment {
    /// A task at `ip` on a shoal network.
    pub fn from_shoal(network: &Network, ip: Ipv4Addr) -> Self {
        NetworkAttachment {
            network: SwarmNetwork::from_shoal(network),
            addresses: vec![format!("{ip}/{}", network.spec.subnet.prefix_len())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::samples::round_trip;
    use crate::objects::NetworkSpec as ShoalNetworkSpec;

    /// An overlay network inspected on a manager.
    const OVERLAY: &str = r#"{"Name":"app","Id":"7fnbdk7ny8ph4oxuowfcm54gs","Created":"2023-05-02T09:44:10.512163342Z","Scope":"swarm","Driver":"overlay","EnableIPv6":false,"IPAM":{"Driver":"default","Options":null,"Config":[{"Subnet":"10.0.1.0/24","Gateway":"10.0.1.1"}]},"Internal":false,"Attachable":true,"Ingress":false,"ConfigFrom":{"Network":""},"ConfigOnly":false,"Containers":null,"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4097"},"Labels":{"com.docker.stack.namespace":"shop"}}"#;

    /// The ingress network on a node running a task, with its peers.
    const INGRESS: &str = r#"{"Name":"ingress","Id":"4qvuz4ko70xaltuqbt8956gd1","Created":"2023-05-02T09:40:01.1Z","Scope":"swarm","Driver":"overlay","EnableIPv6":false,"IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.0.0.0/24","IPRange":"10.0.0.0/25","Gateway":"10.0.0.1","AuxiliaryAddresses":{"host":"10.0.0.2"}}]},"Internal":false,"Attachable":false,"Ingress":true,"ConfigFrom":{"Network":""},"ConfigOnly":false,"Containers":{"ingress-sbox":{"Name":"ingress-endpoint","EndpointID":"8f3d","MacAddress":"02:42:0a:00:00:02","IPv4Address":"10.0.0.2/24","IPv6Address":""}},"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4096"},"Labels":{},"Peers":[{"Name":"node1-8f3d","IP":"172.17.0.2"}]}"#;

    #[test]
    fn docker_networks_round_trip() {
        let app: NetworkResource = round_trip(OVERLAY);
        assert!(app.attachable && app.containers.is_none());
        let ingress: NetworkResource = round_trip(INGRESS);
        assert!(ingress.ingress);
        assert_eq!(ingress.peers[0].ip, "172.17.0.2");
    }

    fn shoal_network() -> Network {
        Network {
            id: "net1".into(),
            name: "app".into(),
            driver: "overlay".into(),
            spec: ShoalNetworkSpec {
                id: "net1".into(),
                vni: 4097,
                subnet: "10.0.1.0/24".parse().unwrap(),
                gateway: "10.0.1.1".parse().unwrap(),
                mtu: None,
                ingress: false,
            },
            labels: Labels::from([("team".into(), "a".into())]),
            created_at: 1_471_517_064,
        }
    }

    #[test]
    fn shoal_networks_become_docker_networks() {
        let json = serde_json::to_value(NetworkResource::from(&NetworkView::new(&shoal_network())))
            .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Name": "app", "Id": "net1", "Created": "2016-08-18T10:44:24Z",
                "Scope": "swarm", "Driver": "overlay", "EnableIPv6": false,
                "IPAM": {"Driver": "default", "Options": null,
                         "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]},
                "Internal": false, "Attachable": false, "Ingress": false,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": false, "Containers": null,
                "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"},
                "Labels": {"team": "a"}
            })
        );
        let attachment =
            NetworkAttachment::from_shoal(&shoal_network(), "10.0.1.7".parse().unwrap());
        assert_eq!(attachment.addresses, ["10.0.1.7/24"]);
        assert_eq!(attachment.network.spec.name, "app");
        assert_eq!(
            serde_json::to_value(&attachment.network.driver_state).unwrap(),
            serde_json::json!({"Name": "overlay",
                "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097"}})
        );
    }
}
