//! The payloads answers carry, and the one typed conversion from an
//! [`ApiResponse`] to the payload a request expects ([`Answer`]), so
//! clients never match on answers they did not ask for.

use serde::{Deserialize, Serialize};

use super::{ApiResponse, NetworkView, NodeView, PayloadView, ServiceView, TaskLogs, TaskView};
use crate::objects::Role;

/// `ApiRequest::Info`: what the answering manager is and knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub node_id: String,
    pub cluster_id: String,
    pub role: Role,
    /// The leader's API address, if one is known.
    pub leader: Option<String>,
    /// Every manager's API address.
    pub managers: Vec<String>,
}

/// A join token or the unlock key, and the manager that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAnswer {
    pub token: String,
    pub addr: String,
}

/// What a change says when it is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub message: String,
}

/// The answer was not the kind the request gets: a client and a manager
/// of different versions, or a bug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the manager answered with {got} where {expected} was expected")]
pub struct UnexpectedAnswer {
    pub expected: &'static str,
    pub got: &'static str,
}

/// A payload a request's answer carries.
pub trait Answer: Sized {
    /// Takes the payload out of `response`.
    fn from_response(response: ApiResponse) -> Result<Self, UnexpectedAnswer>;
}

impl ApiResponse {
    /// Its kind, as in its JSON tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiResponse::Info(_) => "info",
            ApiResponse::Token { .. } => "token",
            ApiResponse::Nodes { .. } => "nodes",
            ApiResponse::Node { .. } => "node",
            ApiResponse::Networks { .. } => "networks",
            ApiResponse::Network { .. } => "network",
            ApiResponse::Services { .. } => "services",
            ApiResponse::Service { .. } => "service",
            ApiResponse::Tasks { .. } => "tasks",
            ApiResponse::Logs { .. } => "logs",
            ApiResponse::Done { .. } => "done",
            ApiResponse::Payloads { .. } => "payloads",
            ApiResponse::Payload { .. } => "payload",
        }
    }
}

/// `impl Answer for $ty`: the payload of variant `$kind`.
macro_rules! answer {
    ($ty:ty, $kind:literal, $pattern:pat => $payload:expr) => {
        impl Answer for $ty {
            fn from_response(response: ApiResponse) -> Result<Self, UnexpectedAnswer> {
                match response {
                    $pattern => Ok($payload),
                    other => Err(UnexpectedAnswer {
                        expected: $kind,
                        got: other.kind(),
                    }),
                }
            }
        }
    };
}

answer!(ClusterInfo, "info", ApiResponse::Info(info) => info);
answer!(TokenAnswer, "token", ApiResponse::Token { token, addr } => TokenAnswer { token, addr });
answer!(Vec<NodeView>, "nodes", ApiResponse::Nodes { nodes } => nodes);
answer!(NodeView, "node", ApiResponse::Node { node } => *node);
answer!(Vec<NetworkView>, "networks", ApiResponse::Networks { networks } => networks);
answer!(NetworkView, "network", ApiResponse::Network { network } => *network);
answer!(Vec<ServiceView>, "services", ApiResponse::Services { services } => services);
answer!(ServiceView, "service", ApiResponse::Service { service } => *service);
answer!(Vec<TaskView>, "tasks", ApiResponse::Tasks { tasks } => tasks);
answer!(Vec<TaskLogs>, "logs", ApiResponse::Logs { tasks } => tasks);
answer!(Done, "done", ApiResponse::Done { message } => Done { message });
answer!(Vec<PayloadView>, "payloads", ApiResponse::Payloads { items } => items);
answer!(PayloadView, "payload", ApiResponse::Payload { item } => *item);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_converts_to_its_payload_or_says_what_came() {
        let done = Done::from_response(ApiResponse::Done {
            message: "ok".into(),
        });
        assert_eq!(
            done,
            Ok(Done {
                message: "ok".into()
            })
        );
        let wrong = Vec::<NodeView>::from_response(ApiResponse::Logs { tasks: vec![] });
        assert_eq!(
            wrong.unwrap_err().to_string(),
            "the manager answered with logs where nodes was expected"
        );
    }

    #[test]
    fn info_travels_as_a_typed_object() {
        let info = ApiResponse::Info(ClusterInfo {
            node_id: "n".into(),
            cluster_id: "c".into(),
            role: Role::Manager,
            leader: None,
            managers: vec!["198.18.0.1:2377".into()],
        });
        let json = serde_json::to_string(&info).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"info","node_id":"n""#),
            "{json}"
        );
        let back: ApiResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
    }
}
