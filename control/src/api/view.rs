//! How nodes and networks are shown: Docker's `node inspect` and `network
//! inspect` JSON shapes, so `--format '{{ .ManagerStatus.Reachability }}'`
//! or `--format '{{json .IPAM.Config}}'` work as with Docker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::objects::{Availability, Network, Node, NodeResources, NodeState, Role};
use crate::orchestrator::AddressUsage;

/// A manager's reachability as the answering manager sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Reachable,
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    pub leader: bool,
    pub reachability: Reachability,
    pub addr: String,
}

/// `node inspect` output (Docker's field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeView {
    #[serde(rename = "ID")]
    pub id: String,
    pub created_at: u64,
    pub updated_at: u64,
    pub spec: NodeSpecView,
    pub description: DescriptionView,
    pub status: StatusView,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub manager_status: Option<ManagerStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpecView {
    pub role: Role,
    pub availability: Availability,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescriptionView {
    pub hostname: String,
    /// What the node offers to reservations (Docker's `Resources`).
    #[serde(default)]
    pub resources: NodeResources,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusView {
    pub state: String,
    pub addr: String,
}

impl NodeView {
    /// `manager` is `Some((is_leader, reachability))` for managers.
    pub fn new(node: &Node, manager: Option<(bool, Reachability)>) -> Self {
        NodeView {
            id: node.id.clone(),
            created_at: node.created_at,
            updated_at: node.updated_at,
            spec: NodeSpecView {
                role: node.role,
                availability: node.availability,
                labels: node.labels.clone(),
            },
            description: DescriptionView {
                hostname: node.hostname.clone(),
                resources: node.resources,
            },
            status: StatusView {
                state: node.state.to_string().to_lowercase(),
                addr: node.addr.clone(),
            },
            manager_status: manager.map(|(leader, reachability)| ManagerStatus {
                leader,
                reachability,
                addr: node.addr.clone(),
            }),
        }
    }

    /// The MANAGER STATUS column: Leader, Reachable, Unreachable or empty.
    pub fn manager_column(&self) -> &'static str {
        match &self.manager_status {
            Some(m) if m.leader => "Leader",
            Some(m) if m.reachability == Reachability::Reachable => "Reachable",
            Some(_) => "Unreachable",
            None => "",
        }
    }

    /// The STATUS column.
    pub fn status_column(&self) -> String {
        let state: NodeState = match self.status.state.as_str() {
            "ready" => NodeState::Ready,
            "down" => NodeState::Down,
            _ => NodeState::Unknown,
        };
        state.to_string()
    }
}

/// The option Docker's overlay driver shows the VNI under.
pub const VXLANID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// The option Docker shows a network's MTU under.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// `network inspect` output (Docker's field names and order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkView {
    pub name: String,
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// Always `swarm`: every network spans the swarm.
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: IpamView,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// How the subnet's addresses are used (`network inspect` only): in use,
    /// held for a gossip tombstone's lifetime, free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<AddressUsage>,
    /// What nodes cannot build on the network (`network inspect` only),
    /// each with its agent's error, retried there with backoff: the network
    /// itself, a task's sandbox on it (`TaskID`), or, on the ingress
    /// network, a published port of the routing mesh (`Port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<NetworkFailureView>,
}

/// One node's failure to build a network, a task's sandbox on it, or a
/// published port of the routing mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkFailureView {
    pub node: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// The task whose sandbox fails on the network.
    #[serde(default, rename = "TaskID", skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The published port (`8080/tcp`) the node's load balancer refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamView {
    pub driver: String,
    pub config: Vec<IpamConfigView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfigView {
    pub subnet: String,
    pub gateway: String,
}

impl NetworkView {
    pub fn new(network: &Network) -> Self {
        let mut options =
            BTreeMap::from([(VXLANID_OPTION.to_string(), network.spec.vni.to_string())]);
        if let Some(mtu) = network.spec.mtu {
            options.insert(MTU_OPTION.to_string(), mtu.to_string());
        }
        NetworkView {
            name: network.name.clone(),
            id: network.id.clone(),
            created: rfc3339(network.created_at),
            scope: "swarm".into(),
            driver: network.driver.clone(),
            enable_ipv6: false,
            ipam: IpamView {
                driver: "default".into(),
                config: vec![IpamConfigView {
                    subnet: network.spec.subnet.to_string(),
                    gateway: network.spec.gateway.to_string(),
                }],
            },
            internal: false,
            attachable: false,
            ingress: network.spec.ingress,
            options,
            labels: network.labels.clone(),
            addresses: None,
            failures: Vec::new(),
        }
    }
}

/// Unix seconds as RFC 3339 in UTC (`2026-11-23T22:03:39Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix_secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::NetworkSpec;

    #[test]
    fn network_inspect_has_dockers_shape() {
        let network = Network {
            id: "abc".into(),
            name: "web".into(),
            driver: "overlay".into(),
            spec: NetworkSpec {
                id: "abc".into(),
                vni: 4097,
                subnet: "10.0.1.0/24".parse().unwrap(),
                gateway: "10.0.1.1".parse().unwrap(),
                mtu: Some(1400),
                ingress: false,
            },
            labels: BTreeMap::from([("team".into(), "a".into())]),
            created_at: 1_795_000_000,
        };
        let json = serde_json::to_value(NetworkView::new(&network)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Name": "web", "Id": "abc", "Created": "2026-11-18T11:06:40Z",
                "Scope": "swarm", "Driver": "overlay", "EnableIPv6": false,
                "IPAM": {"Driver": "default",
                         "Config": [{"Subnet": "10.0.1.0/24", "Gateway": "10.0.1.1"}]},
                "Internal": false, "Attachable": false, "Ingress": false,
                "Options": {"com.docker.network.driver.overlay.vxlanid_list": "4097",
                            "com.docker.network.driver.mtu": "1400"},
                "Labels": {"team": "a"}
            })
        );
    }

    #[test]
    fn formats_times_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
