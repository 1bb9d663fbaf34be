//! The typed model of a loaded compose project: what the files say, after
//! interpolation, merging, short-to-long syntax and path resolution, before
//! any stack naming. Only what shoal acts on is here; everything else was
//! reported as a warning while loading.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A whole project: several `-c` files merged into one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Project {
    /// The top-level `name:` (a stack's name comes from the command line).
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub secrets: BTreeMap<String, FileObject>,
    pub configs: BTreeMap<String, FileObject>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    /// Missing when the file only says how to `build:` it.
    pub image: Option<String>,
    /// Arguments to the entrypoint (Swarm's `ContainerSpec.Args`).
    pub command: Option<Vec<String>>,
    /// Swarm's `ContainerSpec.Command`.
    pub entrypoint: Option<Vec<String>>,
    /// `env_file:` contents first, `environment:` over them. `None`: the
    /// key was given without a value and the environment has none.
    pub environment: BTreeMap<String, Option<String>>,
    pub ports: Vec<Port>,
    /// The networks by their key in the file, with this service's options.
    /// Empty means the stack's `default` network.
    pub networks: BTreeMap<String, ServiceNetwork>,
    pub mounts: Vec<Mount>,
    pub secrets: Vec<FileReference>,
    pub configs: Vec<FileReference>,
    pub healthcheck: Option<Healthcheck>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// Container labels (`deploy.labels` are the service's).
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Duration>,
    pub init: Option<bool>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub extra_hosts: Vec<ExtraHost>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub tty: bool,
    pub stdin_open: bool,
    pub deploy: Deploy,
}

/// `host:ip` in `extra_hosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraHost {
    pub hostname: String,
    /// An address, or Docker's `host-gateway`.
    pub address: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PublishMode {
    /// Published on every node through the routing mesh.
    #[default]
    Ingress,
    /// Published only on the nodes running a task, straight to it.
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub target: u16,
    /// `None`: the manager picks one (Swarm's 30000-32767).
    pub published: Option<u16>,
    pub protocol: Protocol,
    pub mode: PublishMode,
    /// Written in the file; Swarm publishes on all addresses (a warning
    /// says so).
    pub host_ip: Option<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub target: String,
    pub read_only: bool,
    pub kind: MountKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A named volume (its key in the top-level `volumes:`), or an
    /// anonymous one when `source` is `None`.
    Volume {
        source: Option<String>,
        nocopy: bool,
        subpath: Option<String>,
    },
    /// A host path, made absolute against the project directory.
    Bind {
        source: PathBuf,
        propagation: Option<Propagation>,
    },
    Tmpfs {
        size_bytes: Option<u64>,
        mode: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Shared,
    Rshared,
    Slave,
    Rslave,
    Private,
    Rprivate,
}

impl Propagation {
    pub fn parse(text: &str) -> Option<Propagation> {
        Some(match text {
            "shared" => Propagation::Shared,
            "rshared" => Propagation::Rshared,
            "slave" => Propagation::Slave,
            "rslave" => Propagation::Rslave,
            "private" => Propagation::Private,
            "rprivate" => Propagation::Rprivate,
            _ => return None,
        })
    }
}

/// A service's use of a secret or config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReference {
    /// The key in the top-level `secrets:` / `configs:`.
    pub source: String,
    /// The file name in the task; defaults to `source` (under
    /// `/run/secrets/` for a secret, `/` for a config, when relative).
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthTest {
    /// No `test:`: the image's own health check.
    Inherit,
    /// `disable: true` or `["NONE"]`.
    Disabled,
    /// `["CMD", ...]`: run directly.
    Exec(Vec<String>),
    /// A string, or `["CMD-SHELL", "..."]`: run with `/bin/sh -c`.
    Shell(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: HealthTest,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u64>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceMode {
    /// `None`: not given (one replica on create).
    Replicated {
        replicas: Option<u64>,
    },
    Global,
    /// Runs to completion `replicas` times.
    ReplicatedJob {
        replicas: Option<u64>,
    },
    GlobalJob,
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointMode {
    Vip,
    Dnsrr,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deploy {
    pub mode: ServiceMode,
    /// The service's labels.
    pub labels: BTreeMap<String, String>,
    pub placement: Placement,
    pub resources: Resources,
    pub restart_policy: Option<RestartPolicy>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
    pub endpoint_mode: Option<EndpointMode>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// As written: `node.role == manager`.
    pub constraints: Vec<String>,
    /// Labels to spread over: `node.labels.zone`.
    pub spread: Vec<String>,
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub limits: Option<Limits>,
    pub reservations: Option<Reservations>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub nano_cpus: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reservations {
    pub nano_cpus: Option<u64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartCondition {
    None,
    OnFailure,
    Any,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestartPolicy {
    pub condition: Option<RestartCondition>,
    pub delay: Option<Duration>,
    pub max_attempts: Option<u64>,
    pub window: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOrder {
    StopFirst,
    StartFirst,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpdateConfig {
    pub parallelism: Option<u64>,
    pub delay: Option<Duration>,
    pub failure_action: Option<FailureAction>,
    pub monitor: Option<Duration>,
    pub max_failure_ratio: Option<f64>,
    pub order: Option<UpdateOrder>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// The real name, not namespaced by the stack.
    pub name: Option<String>,
    /// Exists already; the stack neither creates nor removes it.
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub ipam: Option<Ipam>,
    pub attachable: bool,
    pub internal: bool,
    pub enable_ipv6: Option<bool>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Vec<IpamPool>,
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    pub name: Option<String>,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Where a secret's or config's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectSource {
    /// `file:`, made absolute against the project directory; read at
    /// deploy time.
    File(PathBuf),
    /// `content:`, or `environment:` resolved while loading.
    Inline(String),
    /// `external: true`: it exists already.
    External,
}

/// A top-level secret or config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileObject {
    pub name: Option<String>,
    pub source: ObjectSource,
    pub labels: BTreeMap<String, String>,
}
