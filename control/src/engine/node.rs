//! Docker's `Node` (`GET /nodes`, `node inspect`), and how shoal's node view
//! becomes one.

use serde::{Deserialize, Serialize};

use super::task::{Platform, Resources};
use super::{go_time_secs, is_false, Labels, ObjectVersion};
use crate::api::{NodeView, Reachability};

/// A node of the swarm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub version: ObjectVersion,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub description: NodeDescription,
    #[serde(default)]
    pub status: NodeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_status: Option<ManagerStatus>,
}

/// What the user sets on a node (`node update`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub labels: Option<Labels>,
    /// `worker` or `manager`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// `active`, `pause` or `drain`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub availability: String,
}

/// What the node's agent reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeDescription {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default)]
    pub platform: Platform,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub engine: EngineDescription,
    #[serde(default, rename = "TLSInfo")]
    pub tls_info: TlsInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EngineDescription {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub engine_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginDescription>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginDescription {
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The swarm's CA as a node's certificate names it (base64 in JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TlsInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trust_root: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_issuer_subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_issuer_public_key: String,
}

/// Whether the managers hear from the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeStatus {
    /// `unknown`, `down`, `ready` or `disconnected`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

/// A manager's place in the Raft group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagerStatus {
    #[serde(default, skip_serializing_if = "is_false")]
    pub leader: bool,
    /// `unknown`, `unreachable` or `reachable`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reachability: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

impl Node {
    /// The `MANAGER STATUS` column: `Leader`, `Reachable`, `Unreachable`,
    /// or empty for workers.
    pub fn manager_status_column(&self) -> String {
        match &self.manager_status {
            None => String::new(),
            Some(m) if m.leader => "Leader".into(),
            Some(m) => capitalized(&m.reachability),
        }
    }
}

impl From<&NodeView> for Node {
    fn from(view: &NodeView) -> Self {
        let resources = &view.description.resources;
        Node {
            id: view.id.clone(),
            version: ObjectVersion::default(),
            created_at: go_time_secs(view.created_at),
            updated_at: go_time_secs(view.updated_at),
            spec: NodeSpec {
                name: String::new(),
                labels: Some(view.spec.labels.clone()),
                role: view.spec.role.to_string(),
                availability: view.spec.availability.to_string().to_lowercase(),
            },
            description: NodeDescription {
                hostname: view.description.hostname.clone(),
                platform: Platform::default(),
                resources: Resources {
                    nano_cpus: i64::try_from(resources.nano_cpus).unwrap_or(i64::MAX),
                    memory_bytes: i64::try_from(resources.memory_bytes).unwrap_or(i64::MAX),
                    generic_resources: Vec::new(),
                },
                engine: EngineDescription::default(),
                tls_info: TlsInfo::default(),
            },
            status: NodeStatus {
                state: view.status.state.clone(),
                message: String::new(),
                addr: view.status.addr.clone(),
            },
            manager_status: view.manager_status.as_ref().map(|m| ManagerStatus {
                leader: m.leader,
                reachability: match m.reachability {
                    Reachability::Reachable => "reachable".into(),
                    Reachability::Unreachable => "unreachable".into(),
                },
                addr: m.addr.clone(),
            }),
        }
    }
}

/// `ready` -> `Ready`, as Docker's tables print states.
pub(crate) fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::samples::round_trip;
    use crate::objects::{Availability, Node as ShoalNode, NodeResources, NodeState, Role};

    /// A manager as Docker 20.10 prints it.
    const MANAGER: &str = r#"{"ID":"24ifsmvkjbyhk","Version":{"Index":8},"CreatedAt":"2016-06-16T22:52:44.9910662Z","UpdatedAt":"2016-06-16T22:52:45.230878043Z","Spec":{"Labels":{"zone":"a"},"Role":"manager","Availability":"active"},"Description":{"Hostname":"bf3067039e47","Platform":{"Architecture":"x86_64","OS":"linux"},"Resources":{"NanoCPUs":4000000000,"MemoryBytes":8272408576},"Engine":{"EngineVersion":"20.10.24","Labels":{"foo":"bar"},"Plugins":[{"Type":"Network","Name":"overlay"},{"Type":"Volume","Name":"local"}]},"TLSInfo":{"TrustRoot":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","CertIssuerSubject":"MBMxETAPBgNVBAMTCHN3YXJtLWNh","CertIssuerPublicKey":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}},"Status":{"State":"ready","Addr":"172.17.0.2"},"ManagerStatus":{"Leader":true,"Reachability":"reachable","Addr":"172.17.0.2:2377"}}"#;

    /// A worker that is down: no manager status, a status message.
    const WORKER: &str = r#"{"ID":"7ln70fl22uw2dvjn2ft53m3q5","Version":{"Index":11},"CreatedAt":"2016-06-16T22:52:44Z","UpdatedAt":"2016-06-16T22:53:12Z","Spec":{"Labels":{},"Role":"worker","Availability":"drain"},"Description":{"Hostname":"worker-1","Platform":{},"Resources":{},"Engine":{},"TLSInfo":{}},"Status":{"State":"down","Message":"heartbeat failure","Addr":"10.0.0.3"}}"#;

    #[test]
    fn docker_nodes_round_trip() {
        let manager: Node = round_trip(MANAGER);
        assert_eq!(manager.manager_status_column(), "Leader");
        assert_eq!(manager.description.engine.plugins[1].kind, "Volume");
        let worker: Node = round_trip(WORKER);
        assert_eq!(worker.manager_status_column(), "");
        assert_eq!(worker.spec.availability, "drain");
    }

    fn shoal_node(role: Role) -> ShoalNode {
        ShoalNode {
            id: "abcdefghijklmnopqrstuvwxy".into(),
            hostname: "h1".into(),
            addr: "198.18.0.1".into(),
            listen_port: 0,
            role,
            availability: Availability::Drain,
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            state: NodeState::Ready,
            raft_id: Some(1),
            resources: NodeResources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 1 << 30,
            },
            created_at: 1_471_517_064,
            updated_at: 1_471_517_065,
            network_errors: Default::default(),
            build_failures: Default::default(),
            restarting_until_ms: None,
        }
    }

    #[test]
    fn shoal_nodes_become_docker_nodes() {
        let view = NodeView::new(
            &shoal_node(Role::Manager),
            Some((false, Reachability::Reachable)),
        );
        let json = serde_json::to_value(Node::from(&view)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ID": "abcdefghijklmnopqrstuvwxy",
                "Version": {},
                "CreatedAt": "2016-08-18T10:44:24Z",
                "UpdatedAt": "2016-08-18T10:44:25Z",
                "Spec": {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "drain"},
                "Description": {
                    "Hostname": "h1",
                    "Platform": {},
                    "Resources": {"NanoCPUs": 2_000_000_000i64, "MemoryBytes": 1i64 << 30},
                    "Engine": {},
                    "TLSInfo": {}
                },
                "Status": {"State": "ready", "Addr": "198.18.0.1"},
                "ManagerStatus": {"Reachability": "reachable", "Addr": "198.18.0.1"}
            })
        );
        let node = Node::from(&view);
        assert_eq!(node.manager_status_column(), "Reachable");
        let worker = Node::from(&NodeView::new(&shoal_node(Role::Worker), None));
        assert!(worker.manager_status.is_none());
        assert_eq!(worker.spec.role, "worker");
    }
}
