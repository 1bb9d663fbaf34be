//! Docker's swarm-wide and engine-wide answers: `Swarm` (`GET /swarm`),
//! `Info` with its `Swarm` section (`GET /info`), `Version` (`GET
//! /version`) and the error body every failed request gets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    go_time_secs, is_false, is_zero, Driver, GenericResource, Labels, ObjectVersion, TlsInfo,
    API_VERSION,
};
use crate::objects::Cluster;

/// The swarm, with its join tokens (managers only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    #[serde(flatten)]
    pub cluster: ClusterInfo,
    #[serde(default)]
    pub join_tokens: JoinTokens,
}

/// The swarm as `GET /info` shows it: no join tokens.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub version: ObjectVersion,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub spec: SwarmSpec,
    #[serde(default, rename = "TLSInfo")]
    pub tls_info: TlsInfo,
    #[serde(default)]
    pub root_rotation_in_progress: bool,
    #[serde(default)]
    pub default_addr_pool: Option<Vec<String>>,
    #[serde(default)]
    pub subnet_size: u32,
    #[serde(default)]
    pub data_path_port: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinTokens {
    #[serde(default)]
    pub worker: String,
    #[serde(default)]
    pub manager: String,
}

/// What `swarm update` changes; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub labels: Option<Labels>,
    #[serde(default)]
    pub orchestration: OrchestrationConfig,
    #[serde(default)]
    pub raft: RaftConfig,
    #[serde(default)]
    pub dispatcher: DispatcherConfig,
    #[serde(default, rename = "CAConfig")]
    pub ca_config: CaConfig,
    #[serde(default)]
    pub task_defaults: TaskDefaults,
    #[serde(default)]
    pub encryption_config: EncryptionConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrchestrationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_history_retention_limit: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfig {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub snapshot_interval: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_old_snapshots: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_entries_for_slow_followers: u64,
    #[serde(default)]
    pub election_tick: i64,
    #[serde(default)]
    pub heartbeat_tick: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DispatcherConfig {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub heartbeat_period: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaConfig {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub node_cert_expiry: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "ExternalCAs")]
    pub external_cas: Vec<ExternalCa>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "SigningCACert"
    )]
    pub signing_ca_cert: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "SigningCAKey"
    )]
    pub signing_ca_key: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_rotate: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExternalCa {
    #[serde(default)]
    pub protocol: String,
    #[serde(default, rename = "URL")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "CACert")]
    pub ca_cert: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<Driver>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionConfig {
    #[serde(default)]
    pub auto_lock_managers: bool,
}

/// `GET /info`. shoal fills the swarm section and what it knows of the
/// host; the container counters stay zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(default, rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub containers: i64,
    #[serde(default)]
    pub containers_running: i64,
    #[serde(default)]
    pub containers_paused: i64,
    #[serde(default)]
    pub containers_stopped: i64,
    #[serde(default)]
    pub images: i64,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub driver_status: Option<Vec<[String; 2]>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_status: Option<Vec<[String; 2]>>,
    #[serde(default)]
    pub plugins: PluginsInfo,
    #[serde(default)]
    pub memory_limit: bool,
    #[serde(default)]
    pub swap_limit: bool,
    #[serde(default)]
    pub kernel_memory: bool,
    #[serde(default, rename = "KernelMemoryTCP")]
    pub kernel_memory_tcp: bool,
    #[serde(default)]
    pub cpu_cfs_period: bool,
    #[serde(default)]
    pub cpu_cfs_quota: bool,
    #[serde(default, rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(default, rename = "CPUSet")]
    pub cpu_set: bool,
    #[serde(default)]
    pub pids_limit: bool,
    #[serde(default, rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    #[serde(default)]
    pub bridge_nf_iptables: bool,
    #[serde(default)]
    pub bridge_nf_ip6tables: bool,
    #[serde(default)]
    pub debug: bool,
    #[serde(default, rename = "NFd")]
    pub nfd: i64,
    #[serde(default)]
    pub oom_kill_disable: bool,
    #[serde(default, rename = "NGoroutines")]
    pub ngoroutines: i64,
    #[serde(default)]
    pub system_time: String,
    #[serde(default)]
    pub logging_driver: String,
    #[serde(default)]
    pub cgroup_driver: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup_version: String,
    #[serde(default, rename = "NEventsListener")]
    pub nevents_listener: i64,
    #[serde(default)]
    pub kernel_version: String,
    #[serde(default)]
    pub operating_system: String,
    #[serde(default, rename = "OSVersion")]
    pub os_version: String,
    #[serde(default, rename = "OSType")]
    pub os_type: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub index_server_address: String,
    /// Registry mirrors and insecure registries; kept as is.
    #[serde(default)]
    pub registry_config: Option<serde_json::Value>,
    #[serde(default, rename = "NCPU")]
    pub ncpu: i64,
    #[serde(default)]
    pub mem_total: i64,
    #[serde(default)]
    pub generic_resources: Option<Vec<GenericResource>>,
    #[serde(default)]
    pub docker_root_dir: String,
    #[serde(default)]
    pub http_proxy: String,
    #[serde(default)]
    pub https_proxy: String,
    #[serde(default)]
    pub no_proxy: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub experimental_build: bool,
    #[serde(default)]
    pub server_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_store: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_advertise: String,
    /// Runtime name to `{"path": ...}`; kept as is.
    #[serde(default)]
    pub runtimes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub default_runtime: String,
    #[serde(default)]
    pub swarm: SwarmInfo,
    #[serde(default)]
    pub live_restore_enabled: bool,
    #[serde(default)]
    pub isolation: String,
    #[serde(default)]
    pub init_binary: String,
    #[serde(default)]
    pub containerd_commit: Commit,
    #[serde(default)]
    pub runc_commit: Commit,
    #[serde(default)]
    pub init_commit: Commit,
    #[serde(default)]
    pub security_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_license: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_address_pools: Vec<AddressPool>,
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginsInfo {
    #[serde(default)]
    pub volume: Option<Vec<String>>,
    #[serde(default)]
    pub network: Option<Vec<String>>,
    #[serde(default)]
    pub authorization: Option<Vec<String>>,
    #[serde(default)]
    pub log: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Commit {
    #[serde(default, rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub expected: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressPool {
    #[serde(default)]
    pub base: String,
    #[serde(default)]
    pub size: i64,
}

/// `Info.Swarm`: this node's place in the swarm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(default, rename = "NodeID")]
    pub node_id: String,
    #[serde(default)]
    pub node_addr: String,
    /// `inactive`, `pending`, `active`, `error` or `locked`.
    #[serde(default)]
    pub local_node_state: String,
    /// Whether this node is a manager (can answer cluster requests).
    #[serde(default)]
    pub control_available: bool,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub remote_managers: Option<Vec<Peer>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nodes: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub managers: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A manager as `Info.Swarm.RemoteManagers` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Peer {
    #[serde(default, rename = "NodeID")]
    pub node_id: String,
    #[serde(default)]
    pub addr: String,
}

/// `GET /version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    #[serde(default)]
    pub platform: PlatformName,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentVersion>,
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "ApiVersion")]
    pub api_version: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        rename = "MinAPIVersion"
    )]
    pub min_api_version: String,
    #[serde(default)]
    pub git_commit: String,
    #[serde(default)]
    pub go_version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_version: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub experimental: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub build_time: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlatformName {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComponentVersion {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<BTreeMap<String, String>>,
}

/// The body of every failed request: `{"message": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

impl ClusterInfo {
    /// shoal's cluster object. Only what shoal has is set: the certificate
    /// lifetime and autolock; Raft and dispatcher timings are not Docker's
    /// settings in shoal and stay zero.
    pub fn from_cluster(cluster: &Cluster) -> Self {
        ClusterInfo {
            id: cluster.id.clone(),
            version: ObjectVersion::default(),
            created_at: go_time_secs(cluster.created_at),
            updated_at: go_time_secs(cluster.created_at),
            spec: SwarmSpec {
                name: "default".into(),
                labels: Some(Labels::new()),
                ca_config: CaConfig {
                    node_cert_expiry: i64::try_from(
                        u128::from(cluster.cert_expiry_secs) * 1_000_000_000,
                    )
                    .unwrap_or(i64::MAX),
                    ..CaConfig::default()
                },
                encryption_config: EncryptionConfig {
                    auto_lock_managers: cluster.autolock,
                },
                orchestration: OrchestrationConfig {
                    task_history_retention_limit: Some(cluster.task_history_limit),
                },
                ..SwarmSpec::default()
            },
            tls_info: TlsInfo {
                trust_root: cluster.ca_cert_pem.clone(),
                ..TlsInfo::default()
            },
            root_rotation_in_progress: false,
            default_addr_pool: Some(vec![crate::objects::DEFAULT_POOL.to_string()]),
            subnet_size: u32::from(crate::objects::DEFAULT_SUBNET_PREFIX),
            data_path_port: 4789,
        }
    }
}

impl Swarm {
    /// The swarm, with the join tokens as `swarm join-token` prints them.
    pub fn from_cluster(cluster: &Cluster, worker_token: String, manager_token: String) -> Self {
        Swarm {
            cluster: ClusterInfo::from_cluster(cluster),
            join_tokens: JoinTokens {
                worker: worker_token,
                manager: manager_token,
            },
        }
    }
}

impl Version {
    /// This shoal binary, on a kernel of `kernel_version`.
    pub fn of_shoal(kernel_version: &str) -> Self {
        Version {
            platform: PlatformName {
                name: "shoal".into(),
            },
            components: Vec::new(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: API_VERSION.into(),
            min_api_version: "1.24".into(),
            git_commit: String::new(),
            go_version: String::new(),
            os: std::env::consts::OS.into(),
            arch: match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            }
            .into(),
            kernel_version: kernel_version.into(),
            experimental: false,
            build_time: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::samples::round_trip;

    const SWARM: &str = r#"{"ID":"abajmipo7b4xz5ip2nrla6b11","Version":{"Index":373531},"CreatedAt":"2016-08-18T10:44:24.496525531Z","UpdatedAt":"2017-08-09T07:09:37.632105588Z","Spec":{"Name":"default","Labels":{"com.example.corp.type":"production"},"Orchestration":{"TaskHistoryRetentionLimit":10},"Raft":{"SnapshotInterval":10000,"KeepOldSnapshots":0,"LogEntriesForSlowFollowers":500,"ElectionTick":3,"HeartbeatTick":1},"Dispatcher":{"HeartbeatPeriod":5000000000},"CAConfig":{"NodeCertExpiry":7776000000000000,"ExternalCAs":[{"Protocol":"cfssl","URL":"https://ca.example.org","Options":{"a":"b"},"CACert":""}],"ForceRotate":1},"TaskDefaults":{"LogDriver":{"Name":"json-file","Options":{"max-file":"10","max-size":"100m"}}},"EncryptionConfig":{"AutoLockManagers":true}},"TLSInfo":{"TrustRoot":"-----BEGIN CERTIFICATE-----\nMIIBajCCARCg\n-----END CERTIFICATE-----\n","CertIssuerSubject":"MBMxETAPBgNVBAMTCHN3YXJtLWNh","CertIssuerPublicKey":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmT9XIw9h1qoNclv9VeHmf"},"RootRotationInProgress":false,"DefaultAddrPool":["10.10.0.0/16","20.20.0.0/16"],"SubnetSize":24,"DataPathPort":4789,"JoinTokens":{"Worker":"SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx","Manager":"SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2"}}"#;

    const INFO: &str = r#"{"ID":"7TRN:IPZB:QYBB:VPBQ:UWYJ:KTNQ:ARXC:BYGT:WZ6V:XQYM:4ZIE:TTYG","Containers":3,"ContainersRunning":2,"ContainersPaused":0,"ContainersStopped":1,"Images":5,"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"],["Supports d_type","true"]],"Plugins":{"Volume":["local"],"Network":["bridge","host","overlay"],"Authorization":null,"Log":["json-file","local"]},"MemoryLimit":true,"SwapLimit":false,"KernelMemory":true,"KernelMemoryTCP":true,"CpuCfsPeriod":true,"CpuCfsQuota":true,"CPUShares":true,"CPUSet":true,"PidsLimit":true,"IPv4Forwarding":true,"BridgeNfIptables":true,"BridgeNfIp6tables":true,"Debug":false,"NFd":35,"OomKillDisable":true,"NGoroutines":170,"SystemTime":"2023-05-02T11:12:13.123456789Z","LoggingDriver":"json-file","CgroupDriver":"systemd","CgroupVersion":"2","NEventsListener":0,"KernelVersion":"6.1.0-9-amd64","OperatingSystem":"Debian GNU/Linux 12 (bookworm)","OSVersion":"12","OSType":"linux","Architecture":"x86_64","IndexServerAddress":"https://index.docker.io/v1/","RegistryConfig":{"AllowNondistributableArtifactsCIDRs":[],"InsecureRegistryCIDRs":["127.0.0.0/8"],"Mirrors":[]},"NCPU":4,"MemTotal":8272408576,"GenericResources":null,"DockerRootDir":"/var/lib/docker","HttpProxy":"","HttpsProxy":"","NoProxy":"","Name":"node1","Labels":[],"ExperimentalBuild":false,"ServerVersion":"20.10.24","Runtimes":{"runc":{"path":"runc"}},"DefaultRuntime":"runc","Swarm":{"NodeID":"24ifsmvkjbyhk","NodeAddr":"172.17.0.2","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"24ifsmvkjbyhk","Addr":"172.17.0.2:2377"}],"Nodes":3,"Managers":1,"Cluster":{"ID":"abajmipo7b4xz5ip2nrla6b11","Version":{"Index":10},"CreatedAt":"2023-05-02T09:40:00Z","UpdatedAt":"2023-05-02T09:40:01Z","Spec":{"Name":"default","Labels":{},"Orchestration":{"TaskHistoryRetentionLimit":5},"Raft":{"SnapshotInterval":10000,"KeepOldSnapshots":0,"LogEntriesForSlowFollowers":500,"ElectionTick":10,"HeartbeatTick":1},"Dispatcher":{"HeartbeatPeriod":5000000000},"CAConfig":{"NodeCertExpiry":7776000000000000},"TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}},"TLSInfo":{},"RootRotationInProgress":false,"DefaultAddrPool":["10.0.0.0/8"],"SubnetSize":24,"DataPathPort":4789}},"LiveRestoreEnabled":false,"Isolation":"","InitBinary":"docker-init","ContainerdCommit":{"ID":"1e1ea6e986c6c86565bc33d52e34b81b3e2bc71f","Expected":"1e1ea6e986c6c86565bc33d52e34b81b3e2bc71f"},"RuncCommit":{"ID":"v1.1.4-0-g5fd4c4d","Expected":"v1.1.4-0-g5fd4c4d"},"InitCommit":{"ID":"de40ad0","Expected":"de40ad0"},"SecurityOptions":["name=seccomp,profile=default","name=cgroupns"],"DefaultAddressPools":[{"Base":"172.30.0.0/16","Size":24}],"Warnings":null}"#;

    const VERSION: &str = r#"{"Platform":{"Name":"Docker Engine - Community"},"Components":[{"Name":"Engine","Version":"20.10.24","Details":{"ApiVersion":"1.41","Os":"linux"}}],"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","GitCommit":"5d6db84","GoVersion":"go1.19.7","Os":"linux","Arch":"amd64","KernelVersion":"6.1.0-9-amd64","BuildTime":"2023-04-04T10:55:20.000000000+00:00"}"#;

    #[test]
    fn docker_swarm_info_and_version_round_trip() {
        let swarm: Swarm = round_trip(SWARM);
        assert!(swarm.cluster.spec.encryption_config.auto_lock_managers);
        assert!(swarm.join_tokens.worker.starts_with("SWMTKN-1-"));
        let info: Info = round_trip(INFO);
        assert_eq!(info.swarm.local_node_state, "active");
        assert_eq!(info.swarm.cluster.unwrap().subnet_size, 24);
        let version: Version = round_trip(VERSION);
        assert_eq!(version.api_version, "1.41");
        let error: ErrorResponse = round_trip(r#"{"message":"No such node: nope"}"#);
        assert_eq!(error.message, "No such node: nope");
        // A node outside any swarm: the swarm section is mostly empty.
        let inactive: SwarmInfo = round_trip(
            r#"{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}"#,
        );
        assert!(inactive.cluster.is_none());
    }

    #[test]
    fn shoal_clusters_become_docker_swarms() {
        let cluster = Cluster {
            id: "c1".into(),
            ca_cert_pem: "PEM".into(),
            ca_key_pem: "KEY".into(),
            worker_secret: "w".into(),
            manager_secret: "m".into(),
            cert_expiry_secs: 90 * 86_400,
            autolock: true,
            unlock_key: Some("SWMKEY-1-x".into()),
            gossip_key: vec![1; 32],
            strategy: crate::objects::Strategy::Spread,
            max_replicas: crate::objects::DEFAULT_MAX_REPLICAS,
            task_history_limit: crate::objects::DEFAULT_TASK_HISTORY_LIMIT,
            ingress_removed: false,
            created_at: 1_471_517_064,
        };
        let swarm = Swarm::from_cluster(&cluster, "SWMTKN-1-a-w".into(), "SWMTKN-1-a-m".into());
        let json = serde_json::to_value(&swarm).unwrap();
        assert_eq!(json["ID"], "c1");
        assert_eq!(json["CreatedAt"], "2016-08-18T10:44:24Z");
        assert_eq!(
            json["Spec"]["CAConfig"]["NodeCertExpiry"],
            7_776_000_000_000_000i64
        );
        assert_eq!(json["Spec"]["EncryptionConfig"]["AutoLockManagers"], true);
        assert_eq!(
            json["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"],
            crate::objects::DEFAULT_TASK_HISTORY_LIMIT
        );
        assert_eq!(json["TLSInfo"]["TrustRoot"], "PEM");
        assert_eq!(json["JoinTokens"]["Manager"], "SWMTKN-1-a-m");
        let text = json.to_string();
        assert!(
            !text.contains("KEY") && !text.contains("SWMKEY"),
            "no secrets: {text}"
        );
        let version = serde_json::to_value(Version::of_shoal("6.1.0")).unwrap();
        assert_eq!(version["ApiVersion"], "1.41");
        assert_eq!(version["KernelVersion"], "6.1.0");
    }
}
