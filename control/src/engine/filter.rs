//! Docker's `--filter` (and the API's `filters` parameter) over the objects
//! of this module: which keys each list takes, and Docker's matching rules
//! for each key (prefixes for names and ids of swarm objects, regular
//! expressions for network names and ids, `label=KEY` or `label=KEY=VALUE`).
//!
//! Values of one key are alternatives (any may match); different keys must
//! all match. Pure functions: the CLI and the API server share them.

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::{Labels, NetworkResource, Node, Service, Task};

/// Filters by key, each with its set of values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

/// A filter Docker would refuse, with Docker's words.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("bad format of filter (expected name=value)")]
    BadFormat,
    #[error("Invalid filter '{0}'")]
    UnknownKey(String),
    #[error("Invalid role filter: '{0}'")]
    Role(String),
    #[error("Invalid membership filter: '{0}'")]
    Membership(String),
    #[error("Invalid desired-state filter: '{0}'")]
    DesiredState(String),
    #[error("invalid filter: 'type'='{0}'")]
    NetworkType(String),
    #[error("invalid filters: {0}")]
    Json(String),
}

/// The keys `service ls` takes.
pub const SERVICE_KEYS: &[&str] = &["id", "label", "mode", "name", "runtime"];
/// The keys `node ls` takes.
pub const NODE_KEYS: &[&str] = &["id", "label", "membership", "name", "node.label", "role"];
/// The keys `service ps` and `node ps` take (`_up-to-date` is the
/// progress display's own).
pub const TASK_KEYS: &[&str] = &[
    "_up-to-date",
    "desired-state",
    "id",
    "label",
    "name",
    "node",
    "runtime",
    "service",
];
/// The keys `network ls` takes.
pub const NETWORK_KEYS: &[&str] = &["driver", "id", "label", "name", "scope", "type"];

/// The task states a `desired-state` filter may name.
const TASK_STATES: &[&str] = &[
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
    "complete",
    "shutdown",
    "failed",
    "rejected",
    "remove",
    "orphaned",
];

impl Filters {
    /// From repeated `--filter KEY=VALUE` flags, as Docker's CLI reads them:
    /// the key lowercased and trimmed, the value trimmed.
    pub fn parse<S: AsRef<str>>(flags: &[S]) -> Result<Self, FilterError> {
        let mut filters = Filters::default();
        for flag in flags {
            let flag = flag.as_ref();
            if flag.is_empty() {
                continue;
            }
            let (key, value) = flag.split_once('=').ok_or(FilterError::BadFormat)?;
            filters.add(&key.trim().to_lowercase(), value.trim());
        }
        Ok(filters)
    }

    /// From the API's `filters` parameter: `{"key":{"value":true}}`, or the
    /// older `{"key":["value"]}`.
    pub fn from_json(text: &str) -> Result<Self, FilterError> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| FilterError::Json(e.chain().to_string()))?;
        let object = json
            .as_object()
            .ok_or_else(|| FilterError::Json("not an object".into()))?;
        let mut filters = Filters::default();
        for (key, values) in object {
            match values {
                serde_json::Value::Object(set) => {
                    for (value, on) in set {
                        if on.as_bool() == Some(true) {
                            filters.add(key, value);
                        }
                    }
                }
                serde_json::Value::Array(list) => {
                    for value in list {
                        let value = value
                            .as_str()
                            .ok_or_else(|| FilterError::Json(format!("`{key}`: not a string")))?;
                        filters.add(key, value);
                    }
                }
                _ => return Err(FilterError::Json(format!("`{key}`: not a set of values"))),
            }
        }
        Ok(filters)
    }

    /// As the API's `filters` parameter: `{"key":{"value":true}}`.
    pub fn to_json(&self) -> String {
        let object: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(key, values)| {
                let set = values
                    .iter()
                    .map(|v| (v.clone(), serde_json::Value::Bool(true)))
                    .collect();
                (key.clone(), serde_json::Value::Object(set))
            })
            .collect();
        serde_json::Value::Object(object).to_string()
    }

    pub fn add(&mut self, key: &str, value: &str) {
        self.0
            .entry(key.to_string())
            .or_default()
            .insert(value.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The values given for `key`.
    pub fn get(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.get(key).into_iter().flatten().map(String::as_str)
    }

    /// Replaces the values of `key` (e.g. node names by their ids).
    pub fn set(&mut self, key: &str, values: impl IntoIterator<Item = String>) {
        self.0.insert(key.to_string(), values.into_iter().collect());
    }

    /// Refuses keys outside `accepted`, as Docker does.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), FilterError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(key) => Err(FilterError::UnknownKey(key.clone())),
            None => Ok(()),
        }
    }

    /// No values for `key`, or `text` starts with one of them.
    fn prefix(&self, key: &str, text: &str) -> bool {
        !self.contains(key) || self.get(key).any(|v| text.starts_with(v))
    }

    /// No values for `key`, or `text` is one of them.
    fn exact(&self, key: &str, text: &str) -> bool {
        !self.contains(key) || self.get(key).any(|v| v == text)
    }

    /// Docker's `Match`: `text` is a value, or a value as a regular
    /// expression is found in it.
    fn regex(&self, key: &str, text: &str) -> bool {
        !self.contains(key)
            || self
                .get(key)
                .any(|v| v == text || regex::Regex::new(v).is_ok_and(|re| re.is_match(text)))
    }

    /// Every `KEY` or `KEY=VALUE` of `key` holds in `labels`.
    fn labels(&self, key: &str, labels: Option<&Labels>) -> bool {
        self.get(key).all(|wanted| {
            let (k, v) = match wanted.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (wanted, None),
            };
            labels
                .and_then(|l| l.get(k))
                .is_some_and(|actual| v.is_none_or(|v| v.is_empty() || v == actual))
        })
    }
}

/// Checks `service ls` filters.
pub fn check_services(filters: &Filters) -> Result<(), FilterError> {
    filters.validate(SERVICE_KEYS)
}

/// Whether `service` passes `service ls` filters: `name` and `id` by
/// prefix, `label`, `mode` (`replicated`, `global`...), `runtime`.
pub fn service_matches(filters: &Filters, service: &Service) -> bool {
    let spec = &service.spec;
    filters.prefix("name", &spec.name)
        && filters.prefix("id", &service.id)
        && filters.labels("label", spec.labels.as_ref())
        && filters.exact("mode", spec.mode.name())
        && filters.exact("runtime", runtime(&spec.task_template))
}

fn runtime(spec: &super::TaskSpec) -> &str {
    if !spec.runtime.is_empty() {
        &spec.runtime
    } else if spec.container_spec.is_some() {
        "container"
    } else {
        ""
    }
}

/// Checks `node ls` filters, with Docker's errors for a bad role or
/// membership.
pub fn check_nodes(filters: &Filters) -> Result<(), FilterError> {
    filters.validate(NODE_KEYS)?;
    if let Some(bad) = filters
        .get("role")
        .find(|r| !r.is_empty() && !["manager", "worker"].contains(&r.to_lowercase().as_str()))
    {
        return Err(FilterError::Role(bad.to_string()));
    }
    if let Some(bad) = filters
        .get("membership")
        .find(|m| !m.is_empty() && !["accepted", "pending"].contains(&m.to_lowercase().as_str()))
    {
        return Err(FilterError::Membership(bad.to_string()));
    }
    Ok(())
}

/// Whether `node` passes `node ls` filters: `name` (hostname) and `id` by
/// prefix, `role`, `membership` (every shoal node is `accepted`),
/// `node.label` (the node's labels) and `label` (its engine's labels).
pub fn node_matches(filters: &Filters, node: &Node) -> bool {
    let lower =
        |values: Vec<&str>| -> Vec<String> { values.iter().map(|v| v.to_lowercase()).collect() };
    let roles = lower(filters.get("role").collect());
    let memberships = lower(filters.get("membership").collect());
    filters.prefix("name", &node.description.hostname)
        && filters.prefix("id", &node.id)
        && (roles.is_empty() || roles.contains(&node.spec.role))
        && (memberships.is_empty() || memberships.iter().any(|m| m == "accepted"))
        && filters.labels("node.label", node.spec.labels.as_ref())
        && filters.labels("label", node.description.engine.labels.as_ref())
}

/// Checks `service ps` / `node ps` filters.
pub fn check_tasks(filters: &Filters) -> Result<(), FilterError> {
    filters.validate(TASK_KEYS)?;
    match filters
        .get("desired-state")
        .find(|s| !s.is_empty() && !TASK_STATES.contains(&s.to_lowercase().as_str()))
    {
        Some(bad) => Err(FilterError::DesiredState(bad.to_string())),
        None => Ok(()),
    }
}

/// What a task filter needs beyond the task itself.
#[derive(Clone, Copy, Debug)]
pub struct TaskContext<'a> {
    /// The task's service name (tasks are named `SERVICE.SLOT.ID`).
    pub service_name: &'a str,
    /// The service's labels: `label` matches them, as in Docker.
    pub service_labels: Option<&'a Labels>,
    /// Whether the task runs the service's current spec (`_up-to-date`).
    pub up_to_date: bool,
}

/// A task's full name: `web.2.<id>`, or `web.<node id>.<id>` for a task of a
/// global service.
pub fn task_name(task: &Task, service_name: &str) -> String {
    if task.slot > 0 {
        format!("{service_name}.{}.{}", task.slot, task.id)
    } else {
        format!("{service_name}.{}.{}", task.node_id, task.id)
    }
}

/// Whether `task` passes `service ps` / `node ps` filters: `name` (the
/// full name) and `id` by prefix, `service` and `node` by id (resolve
/// names first), `desired-state`, `label` (the service's), `_up-to-date`.
pub fn task_matches(filters: &Filters, task: &Task, context: &TaskContext) -> bool {
    let states: Vec<String> = filters
        .get("desired-state")
        .map(str::to_lowercase)
        .collect();
    filters.prefix("name", &task_name(task, context.service_name))
        && filters.prefix("id", &task.id)
        && filters.exact("service", &task.service_id)
        && filters.exact("node", &task.node_id)
        && (states.is_empty() || states.contains(&task.desired_state))
        && filters.labels("label", context.service_labels)
        && filters.exact("runtime", runtime(&task.spec))
        && (!filters.contains("_up-to-date") || context.up_to_date)
}

/// Checks `network ls` filters.
pub fn check_networks(filters: &Filters) -> Result<(), FilterError> {
    filters.validate(NETWORK_KEYS)?;
    match filters
        .get("type")
        .find(|t| !["builtin", "custom"].contains(t))
    {
        Some(bad) => Err(FilterError::NetworkType(bad.to_string())),
        None => Ok(()),
    }
}

/// Docker's predefined networks (`type=builtin`): none exist in a shoal
/// swarm, whose networks are all overlays.
const BUILTIN_NETWORKS: &[&str] = &["bridge", "host", "none", "default"];

/// Whether `network` passes `network ls` filters: `driver` and `scope`
/// exactly, `name` and `id` as Docker's regular expressions (so `name=web`
/// also finds `myweb`), `label`, `type=builtin|custom`.
pub fn network_matches(filters: &Filters, network: &NetworkResource) -> bool {
    let builtin = BUILTIN_NETWORKS.contains(&network.name.as_str());
    filters.exact("driver", &network.driver)
        && filters.regex("name", &network.name)
        && filters.regex("id", &network.id)
        && filters.labels("label", network.labels.as_ref())
        && filters.exact("scope", &network.scope)
        && filters.exact("type", if builtin { "builtin" } else { "custom" })
}

/// The filters of `GET /secrets` and `GET /configs`.
const PAYLOAD_KEYS: &[&str] = &["id", "label", "name", "names"];

/// Checks `secret ls` / `config ls` filters.
pub fn check_payloads(filters: &Filters) -> Result<(), FilterError> {
    filters.validate(PAYLOAD_KEYS)
}

/// Whether a secret or config passes the filters: `id` and `name` by
/// prefix (swarmkit's name prefixes), `names` exactly, `label`.
pub fn payload_matches(filters: &Filters, item: &crate::api::PayloadView) -> bool {
    filters.prefix("id", &item.id)
        && filters.prefix("name", &item.spec.name)
        && filters.exact("names", &item.spec.name)
        && filters.labels("label", Some(&item.spec.labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        ManagerStatus, NodeDescription, NodeSpec, ReplicatedService, ServiceMode, ServiceSpec,
        TaskSpec,
    };

    fn filters(flags: &[&str]) -> Filters {
        Filters::parse(flags).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Option<Labels> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn service(id: &str, name: &str, global: bool, l: &[(&str, &str)]) -> Service {
        let mode = if global {
            ServiceMode {
                global: Some(Default::default()),
                ..Default::default()
            }
        } else {
            ServiceMode {
                replicated: Some(ReplicatedService { replicas: Some(1) }),
                ..Default::default()
            }
        };
        Service {
            id: id.into(),
            spec: ServiceSpec {
                name: name.into(),
                labels: labels(l),
                task_template: TaskSpec {
                    container_spec: Some(Default::default()),
                    ..Default::default()
                },
                mode,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn flags_parse_as_dockers_cli_reads_them() {
        let f = filters(&[" Name = web", "label=a=b", "name=api"]);
        assert_eq!(f.get("name").collect::<Vec<_>>(), ["api", "web"]);
        assert_eq!(f.get("label").collect::<Vec<_>>(), ["a=b"]);
        assert_eq!(Filters::parse(&["name"]), Err(FilterError::BadFormat));
        assert_eq!(
            FilterError::BadFormat.to_string(),
            "bad format of filter (expected name=value)"
        );
        let json = f.to_json();
        assert_eq!(
            json,
            r#"{"label":{"a=b":true},"name":{"api":true,"web":true}}"#
        );
        assert_eq!(Filters::from_json(&json).unwrap(), f);
        assert_eq!(
            Filters::from_json(r#"{"name":["api","web"],"label":["a=b"]}"#).unwrap(),
            f,
            "the older list form"
        );
        assert!(Filters::from_json("[1]").is_err());
    }

    #[test]
    fn unknown_keys_are_refused_with_dockers_words() {
        let f = filters(&["bogus=1"]);
        assert_eq!(
            check_services(&f).unwrap_err().to_string(),
            "Invalid filter 'bogus'"
        );
        assert!(check_nodes(&f).is_err() && check_tasks(&f).is_err());
        assert!(check_networks(&f).is_err());
        assert_eq!(
            check_nodes(&filters(&["role=boss"]))
                .unwrap_err()
                .to_string(),
            "Invalid role filter: 'boss'"
        );
        assert_eq!(
            check_tasks(&filters(&["desired-state=sleeping"]))
                .unwrap_err()
                .to_string(),
            "Invalid desired-state filter: 'sleeping'"
        );
        assert_eq!(
            check_networks(&filters(&["type=other"]))
                .unwrap_err()
                .to_string(),
            "invalid filter: 'type'='other'"
        );
        assert!(check_nodes(&filters(&["role=Manager", "membership=accepted"])).is_ok());
    }

    /// docs.docker.com `service ls` filtering: id and name by prefix,
    /// label by key or key=value, mode.
    #[test]
    fn service_ls_filters() {
        let services = [
            service("0bcjwfh8ychr", "redis", false, &[]),
            service("74nzcxxjv6fq", "web", true, &[("project", "project-a")]),
            service("9s5q7gd8s2h8", "webapp", false, &[("project", "project-b")]),
        ];
        let names = |flags: &[&str]| -> Vec<String> {
            let f = filters(flags);
            check_services(&f).unwrap();
            services
                .iter()
                .filter(|s| service_matches(&f, s))
                .map(|s| s.spec.name.clone())
                .collect()
        };
        assert_eq!(names(&["id=0bcjw"]), ["redis"]);
        assert_eq!(names(&["name=web"]), ["web", "webapp"], "name is a prefix");
        assert_eq!(names(&["name=eb"]), Vec::<String>::new());
        assert_eq!(names(&["name=redis", "name=webapp"]), ["redis", "webapp"]);
        assert_eq!(names(&["label=project"]), ["web", "webapp"]);
        assert_eq!(names(&["label=project=project-a"]), ["web"]);
        assert_eq!(
            names(&["label=project", "label=other"]),
            Vec::<String>::new(),
            "every label must hold"
        );
        assert_eq!(names(&["mode=global"]), ["web"]);
        assert_eq!(names(&["mode=replicated", "name=web"]), ["webapp"]);
        assert_eq!(names(&["runtime=container"]).len(), 3);
    }

    fn node(id: &str, hostname: &str, role: &str, l: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            spec: NodeSpec {
                labels: labels(l),
                role: role.into(),
                availability: "active".into(),
                ..Default::default()
            },
            description: NodeDescription {
                hostname: hostname.into(),
                ..Default::default()
            },
            manager_status: (role == "manager").then(ManagerStatus::default),
            ..Default::default()
        }
    }

    /// docs.docker.com `node ls` filtering.
    #[test]
    fn node_ls_filters() {
        let nodes = [
            node("1bcef6utixb0l0ca7gxuivsj0", "swarm-worker2", "worker", &[]),
            node(
                "38ciaotwjuritcdtn9npbnkuz",
                "swarm-worker1",
                "worker",
                &[("region", "region1")],
            ),
            node(
                "e216jshn25ckzbvmwlnh5jr3g",
                "swarm-manager1",
                "manager",
                &[("region", "region2")],
            ),
        ];
        let hosts = |flags: &[&str]| -> Vec<String> {
            let f = filters(flags);
            check_nodes(&f).unwrap();
            nodes
                .iter()
                .filter(|n| node_matches(&f, n))
                .map(|n| n.description.hostname.clone())
                .collect()
        };
        assert_eq!(hosts(&["id=1bcef6utixb0l0ca7gxuivsj0"]), ["swarm-worker2"]);
        assert_eq!(hosts(&["id=e21"]), ["swarm-manager1"]);
        assert_eq!(hosts(&["name=swarm-master"]), Vec::<String>::new());
        assert_eq!(hosts(&["name=swarm-w"]), ["swarm-worker2", "swarm-worker1"]);
        assert_eq!(hosts(&["role=manager"]), ["swarm-manager1"]);
        assert_eq!(hosts(&["role=WORKER"]).len(), 2);
        assert_eq!(
            hosts(&["node.label=region"]),
            ["swarm-worker1", "swarm-manager1"]
        );
        assert_eq!(hosts(&["node.label=region=region1"]), ["swarm-worker1"]);
        assert_eq!(
            hosts(&["label=region"]),
            Vec::<String>::new(),
            "engine labels"
        );
        assert_eq!(hosts(&["membership=accepted"]).len(), 3);
        assert_eq!(hosts(&["membership=pending"]), Vec::<String>::new());
    }

    fn task(id: &str, slot: u64, node: &str, desired: &str) -> Task {
        Task {
            id: id.into(),
            service_id: "svc1".into(),
            slot,
            node_id: node.into(),
            desired_state: desired.into(),
            spec: TaskSpec {
                container_spec: Some(Default::default()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// docs.docker.com `service ps` / `node ps` filtering.
    #[test]
    fn task_filters() {
        let service_labels = labels(&[("tier", "front")]);
        let context = TaskContext {
            service_name: "redis",
            service_labels: service_labels.as_ref(),
            up_to_date: true,
        };
        let tasks = [
            task("0qihejybwf1x5vqi8lgzlgnpq", 1, "node1", "running"),
            task("bk658fpbex0d57cqcwoe3jthu", 2, "node2", "running"),
            task("5ls5s5fldaqg37s9pwayjecrf", 3, "node1", "shutdown"),
            task("8ryt076polmclyihzx67zsssj", 0, "node3", "running"),
        ];
        let ids = |flags: &[&str]| -> Vec<String> {
            let f = filters(flags);
            check_tasks(&f).unwrap();
            tasks
                .iter()
                .filter(|t| task_matches(&f, t, &context))
                .map(|t| t.id[..4].to_string())
                .collect()
        };
        assert_eq!(ids(&["id=8ryt076polmc"]), ["8ryt"]);
        assert_eq!(ids(&["name=redis.1"]), ["0qih"], "the full name, by prefix");
        assert_eq!(ids(&["name=redis.node3"]), ["8ryt"], "global tasks by node");
        assert_eq!(ids(&["node=node1"]), ["0qih", "5ls5"]);
        assert_eq!(ids(&["desired-state=running", "node=node1"]), ["0qih"]);
        assert_eq!(ids(&["desired-state=shutdown"]), ["5ls5"]);
        assert_eq!(ids(&["label=tier=front"]).len(), 4, "the service's labels");
        assert_eq!(ids(&["label=tier=back"]), Vec::<String>::new());
        assert_eq!(ids(&["service=svc1", "_up-to-date=true"]).len(), 4);
        assert_eq!(ids(&["service=svc2"]), Vec::<String>::new());
    }

    fn network(id: &str, name: &str, l: &[(&str, &str)]) -> NetworkResource {
        NetworkResource {
            id: id.into(),
            name: name.into(),
            driver: "overlay".into(),
            scope: "swarm".into(),
            labels: labels(l),
            ..Default::default()
        }
    }

    /// docs.docker.com `network ls` filtering.
    #[test]
    fn network_ls_filters() {
        let networks = [
            network("7fca4eb8c647e57e", "foobar", &[("usage", "prod")]),
            network("63d1ff1f77b0", "bar", &[]),
            network("95e74588f40d", "ingress", &[("usage", "dev")]),
        ];
        let names = |flags: &[&str]| -> Vec<String> {
            let f = filters(flags);
            check_networks(&f).unwrap();
            networks
                .iter()
                .filter(|n| network_matches(&f, n))
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(names(&["name=foobar"]), ["foobar"]);
        assert_eq!(names(&["name=bar"]), ["foobar", "bar"], "a partial match");
        assert_eq!(names(&["name=^bar$"]), ["bar"], "a regular expression");
        assert_eq!(names(&["id=63d1ff1f77b0"]), ["bar"]);
        assert_eq!(names(&["id=7fca"]), ["foobar"]);
        assert_eq!(names(&["driver=overlay"]).len(), 3);
        assert_eq!(names(&["driver=bridge"]), Vec::<String>::new());
        assert_eq!(names(&["label=usage"]), ["foobar", "ingress"]);
        assert_eq!(names(&["label=usage=dev"]), ["ingress"]);
        assert_eq!(names(&["scope=swarm"]).len(), 3);
        assert_eq!(names(&["scope=local"]), Vec::<String>::new());
        assert_eq!(names(&["type=custom"]).len(), 3);
        assert_eq!(names(&["type=builtin"]), Vec::<String>::new());
        assert_eq!(
            names(&["name=[invalid"]),
            Vec::<String>::new(),
            "a bad regex matches nothing"
        );
    }
}
