//! The two guard objects that make admission decisions safe without locks.
//! A guard's value does not matter, its version does: whoever decides on
//! the whole set of networks (or services) writes the guard in the same
//! batch as its change, expecting the version it read with the set. Of two
//! decisions made on the same read, only the first commits; the second
//! conflicts, reads again and decides again.
//!
//! - [`NetworkGuard`]: written by `network create` and `network rm`, and by
//!   `service create|update`, whose specs name networks that must exist.
//! - [`ServiceGuard`]: written by `service create|update` (names, published
//!   ports and virtual IPs are shared by all services), and by `network rm`,
//!   which must see every service using the network.

use serde::{Deserialize, Serialize};

use crate::store::{kind, Command, Object, Objects, StoreError};

/// The id of both guards in their kinds.
const GUARD_ID: &str = "guard";

/// Versions the set of networks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkGuard {
    /// The last network created or removed, for people reading the store.
    pub last_network: String,
}

/// Versions the set of services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "GuardValue", into = "GuardValue")]
pub struct ServiceGuard {
    /// The last service created or updated, for people reading the store.
    pub last_service: String,
}

/// Earlier versions stored the service guard as a bare id.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum GuardValue {
    Id(String),
    Struct { last_service: String },
}

impl From<GuardValue> for ServiceGuard {
    fn from(v: GuardValue) -> Self {
        match v {
            GuardValue::Id(last_service) | GuardValue::Struct { last_service } => {
                ServiceGuard { last_service }
            }
        }
    }
}

impl From<ServiceGuard> for GuardValue {
    fn from(g: ServiceGuard) -> Self {
        GuardValue::Struct {
            last_service: g.last_service,
        }
    }
}

impl Object for NetworkGuard {
    const KIND: &'static str = kind::NETWORK_GUARD;
    fn id(&self) -> &str {
        GUARD_ID
    }
}

impl Object for ServiceGuard {
    const KIND: &'static str = kind::SERVICE_GUARD;
    fn id(&self) -> &str {
        GUARD_ID
    }
}

/// The guards' versions in one store view (0: never written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardVersions {
    pub networks: u64,
    pub services: u64,
}

impl GuardVersions {
    pub fn read(objects: &Objects) -> GuardVersions {
        GuardVersions {
            networks: objects.version_of::<NetworkGuard>(GUARD_ID),
            services: objects.version_of::<ServiceGuard>(GUARD_ID),
        }
    }

    /// The write of the network guard, expecting the version read.
    pub fn networks_changed(&self, last_network: &str) -> Result<Command, StoreError> {
        Command::put(
            &NetworkGuard {
                last_network: last_network.to_string(),
            },
            Some(self.networks),
        )
    }

    /// The write of the service guard, expecting the version read.
    pub fn services_changed(&self, last_service: &str) -> Result<Command, StoreError> {
        Command::put(
            &ServiceGuard {
                last_service: last_service.to_string(),
            },
            Some(self.services),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_service_guard_still_reads() {
        let old: ServiceGuard = serde_json::from_str(r#""abc""#).unwrap();
        assert_eq!(old.last_service, "abc");
        let new = serde_json::to_string(&old).unwrap();
        assert_eq!(new, r#"{"last_service":"abc"}"#);
        assert_eq!(serde_json::from_str::<ServiceGuard>(&new).unwrap(), old);
    }
}
