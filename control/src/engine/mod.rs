//! The Docker Engine API's swarm objects (API v1.41) as plain serde types,
//! with Docker's PascalCase field names, field order and empty-field rules,
//! and the conversions from shoal's objects and views into them.
//!
//! `inspect` prints these, `--filter` matches on them ([`filter`]), and the
//! Docker Engine API server answers with them, so a script written for
//! `docker` reads the same JSON from `shoal`. Fields shoal does not use yet
//! (images, mounts, health checks, secrets, configs) are still here, so
//! Docker's JSON parses and prints back unchanged.
//!
//! This module is pure data: it never talks to the store, the network or the
//! kernel, and it never decides anything about the cluster.

mod container;
mod distribution;
pub mod filter;
mod network;
mod node;
mod payload_refs;
mod port;
mod service;
mod system;
mod task;
mod time;
mod to_shoal;

pub use container::{
    BindOptions, ConfigReference, ConfigReferenceFileTarget, ContainerSpec, CredentialSpec,
    DnsConfig, HealthConfig, Mount, Privileges, SeLinuxContext, SecretReference,
    SecretReferenceFileTarget, TmpfsOptions, Ulimit, VolumeOptions,
};
pub use distribution::{DistributionInspect, OciDescriptor, OciPlatform};
pub use network::{
    EndpointResource, Ipam, IpamConfig, IpamOptions, NetworkAttachment, NetworkConfigReference,
    NetworkResource, NetworkSpec, PeerInfo, SwarmIpamConfig, SwarmNetwork,
};
pub use node::{
    EngineDescription, ManagerStatus, Node, NodeDescription, NodeSpec, NodeStatus,
    PluginDescription, TlsInfo,
};
pub use port::PortConfig;
pub use service::{
    Endpoint, EndpointSpec, EndpointVirtualIp, GlobalJob, GlobalService, JobStatus, ReplicatedJob,
    ReplicatedService, Service, ServiceMode, ServiceSpec, ServiceStatus, UpdateConfig,
    UpdateStatus, STACK_NAMESPACE,
};
pub use system::{
    CaConfig, ClusterInfo, ComponentVersion, DispatcherConfig, EncryptionConfig, ErrorResponse,
    ExternalCa, Info, JoinTokens, OrchestrationConfig, Peer, PlatformName, RaftConfig, Swarm,
    SwarmInfo, SwarmSpec, TaskDefaults, Version,
};
pub use task::{
    ContainerStatus, DiscreteGenericResource, GenericResource, Limit, NamedGenericResource,
    NetworkAttachmentConfig, Placement, PlacementPreference, Platform, PortStatus,
    ResourceRequirements, Resources, RestartPolicy, SpreadOver, Task, TaskSpec, TaskStatus,
};
pub use time::{go_duration_nanos, go_time_ms, go_time_secs, ZERO_TIME};
pub use to_shoal::{Converted, SpecError};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API version shoal speaks (Docker 20.10's).
pub const API_VERSION: &str = "1.41";

/// Docker's `Version` of an object: bumped by every change, sent back with
/// an update so a concurrent change is refused instead of overwritten.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectVersion {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index: u64,
}

impl ObjectVersion {
    pub fn new(index: u64) -> Self {
        ObjectVersion { index }
    }
}

/// A driver and its options (network drivers, log drivers, IPAM).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Driver {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// Labels as Docker prints them: always present, `{}` when empty.
pub type Labels = BTreeMap<String, String>;

// Go's `omitempty`, for `skip_serializing_if`.
pub(crate) fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
pub(crate) mod samples {
    //! Helpers for the round-trip tests: each sample is Docker's JSON for
    //! an object, written compactly in Docker's field order.

    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// Parses `sample` as `T` and prints it back: the same fields and
    /// values (checked as JSON), in Docker's order (checked as text, so
    /// samples are written compactly, without spaces).
    pub fn round_trip<T: DeserializeOwned + Serialize>(sample: &str) -> T {
        let parsed: T = match serde_json::from_str(sample) {
            Ok(parsed) => parsed,
            Err(e) => panic!("sample does not parse: {e}\n{sample}"),
        };
        let printed = serde_json::to_string(&parsed).expect("prints");
        let want: serde_json::Value = serde_json::from_str(sample).expect("sample is JSON");
        let got: serde_json::Value = serde_json::from_str(&printed).expect("printed is JSON");
        assert_eq!(got, want, "fields differ:\n got {printed}\nwant {sample}");
        assert_eq!(printed, sample.trim(), "field order differs");
        parsed
    }
}
