//! Services: what a user declares with `service create` (store kind
//! `service`, keyed by id). The orchestrator turns a service into tasks; the
//! scheduler places them; the spec here is everything both need.

use crate::error_chain::ErrorChain;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{ContainerSpec, PayloadReference};
use crate::store::{kind, Object};

/// A service as the managers store it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// 25 lowercase base36 characters.
    pub id: String,
    pub spec: ServiceSpec,
    /// The spec before the last update, for `service rollback`.
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    /// Bumped by every change of the spec; tasks carry the version they
    /// were made from, so an update knows which tasks are out of date.
    pub spec_version: u64,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    /// One virtual IP per network of the spec: names resolve to it, and
    /// connections to it are balanced over the service's tasks.
    #[serde(default)]
    pub virtual_ips: Vec<VirtualIp>,
}

/// A service's virtual IP on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// The network id.
    pub network: String,
    pub addr: std::net::Ipv4Addr,
}

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub mode: ServiceMode,
    pub task: TaskSpec,
    /// Network ids, in the order given.
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// `--endpoint-mode`: a virtual IP per network (`vip`), or names that
    /// resolve straight to the tasks' addresses (`dnsrr`).
    #[serde(default)]
    pub endpoint_mode: EndpointMode,
    /// `--network name=NET,alias=A`: more names the service answers to on
    /// a network, keyed like `networks` (names before admission, ids after).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_aliases: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub update: UpdateConfig,
    #[serde(default)]
    pub rollback: UpdateConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

/// What each task runs and how it is placed and restarted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// A host command and its arguments (`--runtime process -- CMD
    /// ARGS...`); for a container, Docker's `Command` (`--entrypoint`),
    /// which replaces the image's Entrypoint (empty keeps it).
    pub command: Vec<String>,
    /// `KEY=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub placement: Placement,
    /// Bumped by `service update --force`: a changed spec replaces every task.
    #[serde(default)]
    pub force_update: u64,
    /// The image and Docker's options: the task is a container. `None`:
    /// a host command (`--runtime process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// `--secret`: files under `/run/secrets` (or their target), handed
    /// only to the nodes running a task of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<PayloadReference>,
    /// `--config`: read-only files at their target (default `/NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<PayloadReference>,
}

/// Reservations (what the scheduler counts) and limits (what the cgroup
/// enforces). Zero means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub reserve_nano_cpus: u64,
    #[serde(default)]
    pub reserve_memory: u64,
    #[serde(default)]
    pub limit_nano_cpus: u64,
    #[serde(default)]
    pub limit_memory: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

/// Swarm's restart policy: condition `any`, delay 5 s, no attempt limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    /// `None`: restart forever.
    pub max_attempts: Option<u64>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: None,
        }
    }
}

/// Where tasks may go and how they spread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// `spread=node.labels.KEY`, applied in order (a tree, as in Swarm).
    #[serde(default)]
    pub preferences: Vec<String>,
    /// `None`: the cluster's strategy.
    #[serde(default)]
    pub strategy: Option<Strategy>,
}

/// How the scheduler ranks the nodes that fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Fewest tasks of the service, then fewest tasks: Swarm's only strategy.
    #[default]
    Spread,
    /// Fill the most reserved node that still fits.
    Binpack,
}

/// One `--constraint`: `node.id|node.hostname|node.role|node.labels.KEY`
/// `==|!=` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub key: String,
    pub equal: bool,
    pub value: String,
}

/// The transport protocol of a port: the one type from a service's spec
/// through gossip to the load balancer (the eBPF programs see its IANA
/// [`number`](Protocol::number)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IANA protocol number, as in the IPv4 header.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol with IANA number `number`, if it is one of shoal's.
    pub const fn from_number(number: u8) -> Option<Protocol> {
        match number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// One `--publish`: the port the nodes accept, and the task's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortConfig {
    pub protocol: Protocol,
    pub target: u16,
    /// 0 until allocated (from 30000-32767) when the user gave none.
    pub published: u16,
    /// Every node (`ingress`, the routing mesh) or only the nodes running
    /// a task, straight to that node's task (`host`).
    #[serde(default, skip_serializing_if = "PublishMode::is_ingress")]
    pub mode: PublishMode,
}

/// How a port is published: Docker's `mode=ingress|host`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// The routing mesh: every node accepts the port and balances over
    /// every task.
    #[default]
    Ingress,
    /// Only a node running a task accepts it, for its own task; the
    /// scheduler puts at most one such task on a node.
    Host,
}

impl PublishMode {
    pub fn is_ingress(&self) -> bool {
        *self == PublishMode::Ingress
    }
}

impl fmt::Display for PublishMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        })
    }
}

impl FromStr for PublishMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingress" => Ok(PublishMode::Ingress),
            "host" => Ok(PublishMode::Host),
            other => Err(format!(
                "invalid publish mode value ({other}): must be either 'ingress' or 'host'"
            )),
        }
    }
}

/// How a service's name resolves: Docker's `--endpoint-mode vip|dnsrr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP per network, balanced over the tasks.
    #[default]
    Vip,
    /// No virtual IP: the name answers every task's address.
    Dnsrr,
}

impl fmt::Display for EndpointMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        })
    }
}

impl FromStr for EndpointMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vip" => Ok(EndpointMode::Vip),
            "dnsrr" => Ok(EndpointMode::Dnsrr),
            other => Err(format!("invalid endpoint mode `{other}`: use vip or dnsrr")),
        }
    }
}

impl ServiceSpec {
    /// The ports published in host mode, which tie a task to its node.
    pub fn host_ports(&self) -> Vec<PortConfig> {
        self.ports
            .iter()
            .filter(|p| p.mode == PublishMode::Host)
            .copied()
            .collect()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// `--update-*` (and `--rollback-*`): Swarm's defaults, one task at a time,
/// no delay, pause on failure, a task must run 5 s to count as updated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks replaced at once; 0 means all.
    pub parallelism: u64,
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    pub order: UpdateOrder,
    /// How long a new task must run before it counts as a success.
    pub monitor_ms: u64,
    /// The share of new tasks that may fail before `failure_action`.
    pub max_failure_ratio: f32,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            order: UpdateOrder::StopFirst,
            monitor_ms: 5_000,
            max_failure_ratio: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    #[serde(default)]
    pub completed_at_ms: Option<u64>,
    #[serde(default)]
    pub message: String,
}

impl UpdateState {
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }

    /// Whether the updater still has work to do.
    pub fn in_progress(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }
}

/// Why a service spec is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServiceSpecError {
    #[error("invalid service name `{0}`: use 1-63 letters, digits, `-` or `_`, starting with a letter or digit")]
    Name(String),
    #[error(
        "a service needs an image or a command: `shoal service create --name NAME IMAGE \
         [COMMAND] [ARG...]` or `shoal service create --name NAME --runtime process -- CMD ARGS...`"
    )]
    NoCommand,
    #[error("invalid image reference `{0}`: use NAME[:TAG][@DIGEST], e.g. nginx:1.25")]
    Image(String),
    #[error("invalid hostname `{0}`: use up to 64 letters, digits, `-`, `_` or `.`, and the placeholders {{{{.Service.Name}}}}, {{{{.Service.ID}}}}, {{{{.Task.Slot}}}}, {{{{.Task.Name}}}}, {{{{.Task.ID}}}}, {{{{.Node.Hostname}}}}, {{{{.Node.ID}}}}")]
    Hostname(String),
    #[error("invalid mount for {target}: {reason}")]
    Mount { target: String, reason: String },
    #[error("invalid extra host `{0}`: use `IP HOSTNAME [ALIAS...]`, e.g. `10.0.0.9 db`")]
    HostEntry(String),
    #[error("invalid health check test `{0}`: use NONE, CMD or CMD-SHELL")]
    HealthTest(String),
    #[error("invalid environment variable `{0}`: use KEY=VALUE")]
    Env(String),
    #[error("port {0} must be between 1 and 65535")]
    Port(u32),
    #[error("port {published}/{protocol} is published twice")]
    PortTwice { published: u16, protocol: Protocol },
    #[error(
        "invalid constraint key `{0}`: use node.id, node.hostname, node.role or node.labels.KEY"
    )]
    ConstraintKey(String),
    #[error("invalid placement preference `{0}`: use spread=node.labels.KEY")]
    Preference(String),
    #[error("the reservation ({what}) is above the limit")]
    ReserveAboveLimit { what: &'static str },
    #[error("network `{0}` is given twice")]
    NetworkTwice(String),
    #[error("--update-max-failure-ratio must be between 0 and 1")]
    FailureRatio,
    #[error("port published with ingress mode can't be used with dnsrr mode")]
    IngressWithDnsrr,
    #[error("invalid network alias `{0}`: use 1-63 letters, digits, `-`, `_` or `.`, starting with a letter or digit")]
    Alias(String),
    #[error("network aliases are given for `{0}`, which is not one of the service's networks")]
    AliasNetwork(String),
}

impl ServiceSpec {
    /// Checks what can be checked without the rest of the cluster.
    pub fn validate(&self) -> Result<(), ServiceSpecError> {
        check_name(&self.name)?;
        match &self.task.container {
            Some(container) => container.validate()?,
            None if self.task.command.first().is_none_or(|c| c.is_empty()) => {
                return Err(ServiceSpecError::NoCommand)
            }
            None => {}
        }
        if let Some(bad) = self.task.env.iter().find(|e| {
            e.split_once('=')
                .is_none_or(|(key, _)| key.is_empty() || key.contains('\0'))
        }) {
            return Err(ServiceSpecError::Env(bad.clone()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &self.ports {
            if port.target == 0 {
                return Err(ServiceSpecError::Port(0));
            }
            if port.published != 0 && !seen.insert((port.published, port.protocol)) {
                return Err(ServiceSpecError::PortTwice {
                    published: port.published,
                    protocol: port.protocol,
                });
            }
        }
        if self.endpoint_mode == EndpointMode::Dnsrr
            && self.ports.iter().any(|p| p.mode == PublishMode::Ingress)
        {
            return Err(ServiceSpecError::IngressWithDnsrr);
        }
        for (network, aliases) in &self.network_aliases {
            if !self.networks.contains(network) {
                return Err(ServiceSpecError::AliasNetwork(network.clone()));
            }
            if let Some(bad) = aliases.iter().find(|a| !is_alias(a)) {
                return Err(ServiceSpecError::Alias(bad.clone()));
            }
        }
        for constraint in &self.task.placement.constraints {
            constraint.check_key()?;
        }
        for pref in &self.task.placement.preferences {
            spread_label(pref)?;
        }
        let r = &self.task.resources;
        if r.limit_nano_cpus != 0 && r.reserve_nano_cpus > r.limit_nano_cpus {
            return Err(ServiceSpecError::ReserveAboveLimit { what: "cpu" });
        }
        if r.limit_memory != 0 && r.reserve_memory > r.limit_memory {
            return Err(ServiceSpecError::ReserveAboveLimit { what: "memory" });
        }
        let mut networks = std::collections::BTreeSet::new();
        if let Some(twice) = self.networks.iter().find(|n| !networks.insert(*n)) {
            return Err(ServiceSpecError::NetworkTwice(twice.clone()));
        }
        for update in [&self.update, &self.rollback] {
            if !(0.0..=1.0).contains(&update.max_failure_ratio) {
                return Err(ServiceSpecError::FailureRatio);
            }
        }
        Ok(())
    }

    /// Replicas wanted, `None` for a global service.
    pub fn replicas(&self) -> Option<u64> {
        match self.mode {
            ServiceMode::Replicated { replicas } => Some(replicas),
            ServiceMode::Global => None,
        }
    }
}

/// The label a `spread=node.labels.KEY` preference spreads over.
pub fn spread_label(preference: &str) -> Result<&str, ServiceSpecError> {
    preference
        .strip_prefix("spread=node.labels.")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ServiceSpecError::Preference(preference.to_string()))
}

/// A name DNS can answer on a network: a service name, dots allowed.
fn is_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= 63
        && alias.starts_with(|c: char| c.is_ascii_alphanumeric())
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_name(name: &str) -> Result<(), ServiceSpecError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceSpecError::Name(name.to_string()))
    }
}

impl Constraint {
    fn check_key(&self) -> Result<(), ServiceSpecError> {
        match self.key.as_str() {
            "node.id" | "node.hostname" | "node.role" => Ok(()),
            key if key
                .strip_prefix("node.labels.")
                .is_some_and(|l| !l.is_empty()) =>
            {
                Ok(())
            }
            other => Err(ServiceSpecError::ConstraintKey(other.to_string())),
        }
    }
}

impl Constraint {
    /// Whether `node` satisfies this constraint. Values compare without
    /// ASCII case and a missing label equals nothing, so `!=` on it holds
    /// (Swarm's rules; the scheduler's indexed filter applies the same).
    pub fn matches(&self, node: &super::Node) -> bool {
        let actual: Option<&str> = match self.key.as_str() {
            "node.id" => Some(&node.id),
            "node.hostname" => Some(&node.hostname),
            "node.role" => Some(match node.role {
                super::Role::Manager => "manager",
                super::Role::Worker => "worker",
            }),
            key => key
                .strip_prefix("node.labels.")
                .and_then(|label| node.labels.get(label))
                .map(String::as_str),
        };
        actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value)) == self.equal
    }

    /// Whether `node` satisfies every constraint.
    pub fn all_match(constraints: &[Constraint], node: &super::Node) -> bool {
        constraints.iter().all(|c| c.matches(node))
    }
}

impl FromStr for Constraint {
    type Err = String;

    /// `KEY==VALUE` or `KEY!=VALUE`, spaces around the operator allowed.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (key, equal, value) = if let Some((k, v)) = text.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = text.split_once("==") {
            (k, true, v)
        } else {
            return Err(format!(
                "invalid constraint `{text}`: use KEY==VALUE or KEY!=VALUE, e.g. node.labels.zone==a"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(format!(
                "invalid constraint `{text}`: the key and the value must not be empty"
            ));
        }
        let constraint = Constraint {
            key: key.to_string(),
            equal,
            value: value.to_string(),
        };
        constraint.check_key().map_err(|e| e.chain().to_string())?;
        Ok(constraint)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spread" => Ok(Strategy::Spread),
            "binpack" => Ok(Strategy::Binpack),
            other => Err(format!("invalid strategy `{other}`: use spread or binpack")),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Spread => "spread",
            Strategy::Binpack => "binpack",
        })
    }
}

impl Object for Service {
    const KIND: &'static str = kind::SERVICE;
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            labels: BTreeMap::new(),
            mode: ServiceMode::Replicated { replicas: 1 },
            task: TaskSpec {
                command: vec!["sleep".into(), "1000".into()],
                ..TaskSpec::default()
            },
            networks: vec![],
            ports: vec![],
            endpoint_mode: EndpointMode::Vip,
            network_aliases: BTreeMap::new(),
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
        }
    }

    #[test]
    fn constraints_parse_both_operators_and_refuse_unknown_keys() {
        let c: Constraint = "node.labels.zone == a".parse().unwrap();
        assert_eq!(
            (c.key.as_str(), c.equal, c.value.as_str()),
            ("node.labels.zone", true, "a")
        );
        let c: Constraint = "node.role!=manager".parse().unwrap();
        assert!(!c.equal);
        assert_eq!(c.to_string(), "node.role!=manager");
        assert!("node.zone==a"
            .parse::<Constraint>()
            .unwrap_err()
            .contains("node.labels.KEY"));
        assert!("node.id=x"
            .parse::<Constraint>()
            .unwrap_err()
            .contains("KEY==VALUE"));
        assert!("node.id==".parse::<Constraint>().is_err());
    }

    #[test]
    fn specs_are_checked() {
        assert_eq!(spec("web").validate(), Ok(()));
        assert!(matches!(
            spec("-x").validate(),
            Err(ServiceSpecError::Name(_))
        ));
        let mut s = spec("web");
        s.task.command.clear();
        assert_eq!(s.validate(), Err(ServiceSpecError::NoCommand));
        let mut s = spec("web");
        s.task.env.push("NOVALUE".into());
        assert!(matches!(s.validate(), Err(ServiceSpecError::Env(_))));
        let mut s = spec("web");
        let port = PortConfig {
            protocol: Protocol::Tcp,
            target: 80,
            published: 8080,
            mode: PublishMode::Ingress,
        };
        s.ports = vec![port, port];
        assert!(matches!(
            s.validate(),
            Err(ServiceSpecError::PortTwice { .. })
        ));
        s.ports[1].protocol = Protocol::Udp;
        assert_eq!(s.validate(), Ok(()));
        s.endpoint_mode = EndpointMode::Dnsrr;
        assert_eq!(s.validate(), Err(ServiceSpecError::IngressWithDnsrr));
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "port published with ingress mode can't be used with dnsrr mode"
        );
        for p in &mut s.ports {
            p.mode = PublishMode::Host;
        }
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.host_ports().len(), 2);
        let mut s = spec("web");
        s.networks = vec!["app".into()];
        s.network_aliases.insert("app".into(), vec!["db".into()]);
        assert_eq!(s.validate(), Ok(()));
        s.network_aliases.insert("app".into(), vec!["-db".into()]);
        assert!(matches!(s.validate(), Err(ServiceSpecError::Alias(_))));
        s.network_aliases.clear();
        s.network_aliases.insert("other".into(), vec!["db".into()]);
        assert!(matches!(
            s.validate(),
            Err(ServiceSpecError::AliasNetwork(_))
        ));
        let mut s = spec("web");
        s.task.placement.preferences.push("spread=node.zone".into());
        assert!(matches!(s.validate(), Err(ServiceSpecError::Preference(_))));
        let mut s = spec("web");
        s.task.resources.reserve_memory = 10;
        s.task.resources.limit_memory = 5;
        assert!(matches!(
            s.validate(),
            Err(ServiceSpecError::ReserveAboveLimit { .. })
        ));
    }

    #[test]
    fn defaults_are_swarms() {
        let u = UpdateConfig::default();
        assert_eq!((u.parallelism, u.order), (1, UpdateOrder::StopFirst));
        assert_eq!(RestartPolicy::default().condition, RestartCondition::Any);
        assert_eq!(spread_label("spread=node.labels.zone"), Ok("zone"));
    }
}
