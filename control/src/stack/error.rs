//! Why a stack cannot be deployed as the file says.

use thiserror::Error;

use crate::engine::SpecError;

#[derive(Debug, Error)]
pub enum StackError {
    /// The service's Docker spec asks for something shoal cannot run.
    #[error("service {service}")]
    Spec {
        service: String,
        #[source]
        source: SpecError,
    },

    #[error("service {service}: {key}: {reason}")]
    Value {
        service: String,
        key: &'static str,
        reason: String,
    },

    #[error("network {network}: {key} is not supported by shoal's overlay networks; leave it out of the file")]
    NetworkOption { network: String, key: String },

    #[error("network {network}: driver \"{driver}\" is not supported: shoal creates swarm-scope overlay networks (set `driver: overlay` or leave it out)")]
    NetworkDriver { network: String, driver: String },

    #[error("network \"{0}\" is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed")]
    ExternalNetworkMissing(String),

    #[error("{kind} not found: {name} (it is declared as external: create it before the stack is deployed)")]
    ExternalObjectMissing { kind: &'static str, name: String },

    #[error("{kind} {name} is in the file but its data was not read")]
    NoData { kind: &'static str, name: String },
}
