//! Docker's `PortConfig`: a published port of a service's endpoint, and of
//! a task's status.

use serde::{Deserialize, Serialize};

use super::is_zero;
use crate::objects;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub target_port: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub published_port: u32,
    /// `ingress` (the routing mesh) or `host`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub publish_mode: String,
}

impl PortConfig {
    /// A port published through the routing mesh, or in host mode.
    pub fn from_shoal(port: &objects::PortConfig) -> Self {
        PortConfig {
            name: String::new(),
            protocol: port.protocol.to_string(),
            target_port: u32::from(port.target),
            published_port: u32::from(port.published),
            publish_mode: port.mode.to_string(),
        }
    }
}
