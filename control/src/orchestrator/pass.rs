//! One reconciliation pass over a working copy of the tasks: node facts
//! first (tasks on down or removed nodes are orphaned), then each service
//! (slots or nodes, restarts, scaling, updates), then history clean-up,
//! addresses and placement.

use crate::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::objects::{
    Availability, Constraint, Network, Node, NodeState, RestartCondition, Service, ServiceMode,
    Task, TaskAttachment, TaskState, TaskStatus, UpdateOrder,
};
use crate::scheduler::Scheduler;

use super::addresses::{quarantine_deleted, AddressBook};
use super::slots::{key_of, Key};
use super::{update, ClusterState, Plan};

/// How many tasks one pass makes to scale up (or to cover new nodes for
/// global services), across all services: a service scaled to millions of
/// replicas is made in passes of this many, so every pass (and the Raft
/// entries it writes) stays small, and the leader keeps answering.
/// Replacements of stopped tasks and rolling updates are not held back by
/// it: their count is bounded by the tasks that exist.
pub const NEW_TASKS_PER_PASS: usize = 500;

pub(super) struct Pass<'a, 'b> {
    pub(super) state: &'a ClusterState<'a>,
    new_id: &'b mut dyn FnMut() -> String,
    nodes: HashMap<&'a str, &'a Node>,
    networks: HashMap<&'a str, &'a Network>,
    pub(super) tasks: BTreeMap<String, Task>,
    changed: BTreeSet<String>,
    /// Tasks made in this pass (not in the store yet).
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
    pub(super) services: Vec<Service>,
    /// New tasks this pass may still make to scale a service up or to put
    /// a global service on more nodes; the next pass makes the rest.
    budget: usize,
}

impl<'a, 'b> Pass<'a, 'b> {
    pub(super) fn new(state: &'a ClusterState<'a>, new_id: &'b mut dyn FnMut() -> String) -> Self {
        Pass {
            state,
            new_id,
            nodes: state.nodes.iter().map(|n| (n.id.as_str(), n)).collect(),
            networks: state.networks.iter().map(|n| (n.id.as_str(), n)).collect(),
            tasks: state
                .tasks
                .iter()
                .map(|t| (t.id.clone(), t.clone()))
                .collect(),
            changed: BTreeSet::new(),
            created: BTreeSet::new(),
            deleted: BTreeSet::new(),
            services: Vec::new(),
            budget: NEW_TASKS_PER_PASS,
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.state.now_ms
    }

    /// The ingress network's id, if there is one.
    pub(super) fn ingress(&self) -> Option<&'a str> {
        self.state
            .networks
            .iter()
            .find(|n| n.spec.ingress)
            .map(|n| n.id.as_str())
    }

    pub(super) fn run(mut self) -> Plan {
        self.node_facts();
        let services: BTreeMap<&str, &Service> = self
            .state
            .services
            .iter()
            .map(|s| (s.id.as_str(), s))
            .collect();
        self.orphan_removed_services(&services);
        for service in self.state.services {
            match service.spec.mode {
                ServiceMode::Replicated { replicas } => self.replicated(service, replicas),
                ServiceMode::Global => self.global(service),
            }
            if let Some(changed) = update::advance(&mut self, service) {
                self.services.push(changed);
            }
        }
        self.clean_history(&services);
        self.allocate(&services);
        self.schedule();
        self.finish()
    }

    // ---- working copy -------------------------------------------------

    pub(super) fn edit(&mut self, id: &str, change: impl FnOnce(&mut Task) -> bool) {
        if let Some(task) = self.tasks.get_mut(id) {
            if change(task) {
                self.changed.insert(id.to_string());
            }
        }
    }

    /// The ids of a service's tasks, by key, wanted ones only.
    pub(super) fn wanted_by_key(&self, service_id: &str) -> BTreeMap<Key, Vec<String>> {
        let mut keys: BTreeMap<Key, Vec<String>> = BTreeMap::new();
        for task in self.tasks.values() {
            if task.service_id == service_id && task.wanted() {
                keys.entry(key_of(task)).or_default().push(task.id.clone());
            }
        }
        for ids in keys.values_mut() {
            ids.sort_by_key(|id| self.tasks.get(id).map(|t| t.created_at_ms));
        }
        keys
    }

    /// Asks a task to stop. One that never reached a node stops at once,
    /// and gives its addresses back: no node ever announced them, so no
    /// gossip tombstone can hold them.
    pub(super) fn shut_down(&mut self, id: &str, why: &str) {
        let now = self.now();
        self.edit(id, |t| {
            let mut changed = false;
            if t.desired_state != TaskState::Shutdown {
                t.desired_state = TaskState::Shutdown;
                changed = true;
            }
            if t.status.state < TaskState::Assigned {
                changed |= t.set_state(TaskState::Shutdown, why, now);
                if !t.networks.is_empty() {
                    t.networks.clear();
                    changed = true;
                }
            }
            changed
        });
    }

    /// A new task of `service` for `key`, made from the current spec.
    pub(super) fn create(
        &mut self,
        service: &Service,
        key: &Key,
        attempt: u64,
        delay_ms: u64,
    ) -> String {
        let id = (self.new_id)();
        let (slot, node_id) = match key {
            Key::Slot(s) => (*s, None),
            Key::Node(n) => (0, Some(n.clone())),
        };
        let now = self.now();
        let task = Task {
            id: id.clone(),
            service_id: service.id.clone(),
            service_name: service.spec.name.clone(),
            slot,
            node_id,
            spec: service.spec.task.clone(),
            spec_version: service.spec_version,
            networks: Vec::new(),
            host_ports: service.spec.host_ports(),
            desired_state: TaskState::Running,
            status: TaskStatus {
                state: TaskState::New,
                timestamp_ms: now,
                message: "created".into(),
                ..TaskStatus::default()
            },
            not_before_ms: now + delay_ms,
            attempt,
            created_at_ms: now,
        };
        self.tasks.insert(id.clone(), task);
        self.changed.insert(id.clone());
        self.created.insert(id.clone());
        self.budget = self.budget.saturating_sub(1);
        id
    }

    // ---- node facts ---------------------------------------------------

    /// Tasks on nodes that are down or gone are orphaned: the managers no
    /// longer know what they do, and their slots get new tasks.
    fn node_facts(&mut self) {
        let now = self.now();
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if task.status.state.is_final() || task.status.state < TaskState::Assigned {
                continue;
            }
            let Some(node_id) = task.node_id.as_deref() else {
                continue;
            };
            let why = match self.nodes.get(node_id) {
                None => "node removed",
                Some(n) if n.state == NodeState::Down => "node is down",
                Some(_) => continue,
            };
            self.edit(&id, |t| t.set_state(TaskState::Orphaned, why, now));
        }
    }

    fn orphan_removed_services(&mut self, services: &BTreeMap<&str, &Service>) {
        let gone: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.wanted() && !services.contains_key(t.service_id.as_str()))
            .map(|t| t.id.clone())
            .collect();
        for id in gone {
            self.shut_down(&id, "service removed");
        }
    }

    /// Whether a task may stay on its node: the node exists, is not
    /// drained and still meets the constraints.
    fn may_stay(&self, task: &Task) -> Result<(), &'static str> {
        match task.node_id.as_deref() {
            None => Ok(()),
            Some(node_id) => self.node_keeps(node_id, &task.spec.placement.constraints),
        }
    }

    /// Whether node `node_id` keeps tasks with `constraints`.
    fn node_keeps(&self, node_id: &str, constraints: &[Constraint]) -> Result<(), &'static str> {
        match self.nodes.get(node_id) {
            None => Err("node removed"),
            Some(n) if n.availability == Availability::Drain => Err("node drained"),
            Some(n) if !Constraint::all_match(constraints, n) => {
                Err("constraints no longer satisfied")
            }
            Some(_) => Ok(()),
        }
    }

    // ---- services ------------------------------------------------------

    fn replicated(&mut self, service: &Service, replicas: u64) {
        let mut keys = self.wanted_by_key(&service.id);
        for (key, ids) in keys.iter_mut() {
            self.keep_key_alive(service, key, ids);
        }
        keys.retain(|_, ids| !ids.is_empty());
        let active = keys.len() as u64;
        if active > replicas {
            self.scale_down(&keys, (active - replicas) as usize);
        } else {
            let mut slot = 0;
            let missing = (replicas - active).min(self.budget as u64);
            for _ in 0..missing {
                slot = (slot + 1..)
                    .find(|s| !keys.contains_key(&Key::Slot(*s)))
                    .unwrap_or(slot + 1);
                self.create(service, &Key::Slot(slot), 0, 0);
            }
        }
    }

    fn global(&mut self, service: &Service) {
        let mut keys = self.wanted_by_key(&service.id);
        for (key, ids) in keys.iter_mut() {
            self.keep_key_alive(service, key, ids);
        }
        let constraints = &service.spec.task.placement.constraints;
        for node in self.state.nodes {
            let key = Key::Node(node.id.clone());
            let has = keys.get(&key).is_some_and(|ids| !ids.is_empty());
            let eligible = takes_global_task(node, constraints);
            if !has && eligible && self.budget > 0 {
                self.create(service, &key, 0, 0);
            }
        }
    }

    /// Stops tasks that may not stay where they are and restarts stopped
    /// ones under the restart policy. `ids` keeps the key's wanted tasks.
    fn keep_key_alive(&mut self, service: &Service, key: &Key, ids: &mut Vec<String>) {
        for id in ids.clone() {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            if let Err(why) = self.may_stay(task) {
                self.shut_down(&id, why);
            }
        }
        ids.retain(|id| self.tasks.get(id).is_some_and(|t| t.wanted()));
        if let Key::Node(node_id) = key {
            // A global task lives and dies with its node.
            if self
                .node_keeps(node_id, &service.spec.task.placement.constraints)
                .is_err()
            {
                return;
            }
        }
        let any_live = ids.iter().any(|id| {
            self.tasks
                .get(id)
                .is_some_and(|t| !t.status.state.is_final())
        });
        if ids.is_empty() || any_live {
            return;
        }
        // Every wanted task of the key has stopped: restart or give up.
        let Some(last) = ids.last().and_then(|id| self.tasks.get(id)).cloned() else {
            return;
        };
        if let Key::Node(node_id) = key {
            if self
                .nodes
                .get(node_id.as_str())
                .is_some_and(|n| n.state == NodeState::Down)
            {
                return;
            }
        }
        let policy = last.spec.restart;
        let (restart, counted) = match last.status.state {
            TaskState::Orphaned | TaskState::Shutdown => (true, false),
            TaskState::Complete => (policy.condition == RestartCondition::Any, true),
            _ => (policy.condition != RestartCondition::None, true),
        };
        let attempt = last.attempt + u64::from(counted);
        let within = policy.max_attempts.is_none_or(|max| attempt <= max);
        if !(restart && within) {
            return;
        }
        let delay = if counted { policy.delay_ms } else { 0 };
        for id in ids.iter() {
            self.shut_down(id, "replaced");
        }
        ids.clear();
        let id = self.create(service, key, attempt, delay);
        ids.push(id);
    }

    /// Stops `excess` slots: first those with no running task, then those
    /// on the nodes holding most of the service, then the highest slots.
    fn scale_down(&mut self, keys: &BTreeMap<Key, Vec<String>>, excess: usize) {
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for ids in keys.values() {
            for id in ids {
                if let Some(node) = self.tasks.get(id).and_then(|t| t.node_id.clone()) {
                    *per_node.entry(node).or_default() += 1;
                }
            }
        }
        let mut ranked: Vec<(bool, usize, &Key)> = keys
            .iter()
            .map(|(key, ids)| {
                let tasks: Vec<&Task> = ids.iter().filter_map(|id| self.tasks.get(id)).collect();
                let running = tasks.iter().any(|t| t.status.state == TaskState::Running);
                let load = tasks
                    .iter()
                    .filter_map(|t| t.node_id.as_ref())
                    .map(|n| per_node.get(n).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0);
                (running, load, key)
            })
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(a.2)));
        let doomed: Vec<String> = ranked
            .iter()
            .take(excess)
            .flat_map(|(_, _, key)| keys.get(*key).cloned().unwrap_or_default())
            .collect();
        for id in doomed {
            self.shut_down(&id, "scaled down");
        }
    }

    // ---- history -------------------------------------------------------

    /// Deletes stopped tasks beyond the history limit, and every stopped
    /// task of a removed service.
    fn clean_history(&mut self, services: &BTreeMap<&str, &Service>) {
        let mut history: BTreeMap<(String, Key), Vec<(u64, String)>> = BTreeMap::new();
        let mut doomed = Vec::new();
        for task in self.tasks.values() {
            let stopped = !task.wanted()
                && (task.status.state.is_final() || task.status.state < TaskState::Assigned);
            if !stopped {
                continue;
            }
            if !services.contains_key(task.service_id.as_str()) {
                doomed.push(task.id.clone());
                continue;
            }
            history
                .entry((task.service_id.clone(), key_of(task)))
                .or_default()
                .push((task.created_at_ms, task.id.clone()));
        }
        // Swarm's limit counts every task of a slot, the current one too.
        let mut current: BTreeMap<(String, Key), usize> = BTreeMap::new();
        for task in self.tasks.values().filter(|t| t.is_live()) {
            *current
                .entry((task.service_id.clone(), key_of(task)))
                .or_default() += 1;
        }
        for (key, mut old) in history {
            let live = current.get(&key).copied().unwrap_or(0);
            let Ok(limit) = usize::try_from(self.state.task_history_limit) else {
                continue;
            };
            let keep = limit.saturating_sub(live.max(1));
            if old.len() > keep {
                old.sort();
                let extra = old.len() - keep;
                doomed.extend(old.into_iter().take(extra).map(|(_, id)| id));
            }
        }
        for id in doomed {
            self.tasks.remove(&id);
            self.changed.remove(&id);
            if !self.created.remove(&id) {
                self.deleted.insert(id);
            }
        }
    }

    // ---- addresses and placement ---------------------------------------

    fn allocate(&mut self, services: &BTreeMap<&str, &Service>) {
        let waiting: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.wanted() && t.status.state == TaskState::New)
            .map(|t| t.id.clone())
            .collect();
        if waiting.is_empty() {
            return;
        }
        let mut book = AddressBook::new(
            self.tasks.values().chain(
                self.state
                    .tasks
                    .iter()
                    .filter(|t| self.deleted.contains(&t.id)),
            ),
            self.state.quarantines,
            self.now(),
        );
        book.reserve_vips(self.state.services);
        let now = self.now();
        // Published ports reach tasks over the ingress network, which comes
        // first so it holds the task's default route (replies to outside
        // clients leave through it).
        let ingress = self.ingress().map(str::to_string);
        for id in waiting {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            let Some(service) = services.get(task.service_id.as_str()) else {
                continue;
            };
            let key = key_of(task);
            if self.stopping_first(service, &key) {
                let why = "waiting for the task it replaces to stop";
                self.edit(&id, |t| t.set_state(TaskState::New, why, now));
                continue;
            }
            let previous = self.previous_addresses(service, &key);
            let mut attachments = Vec::new();
            let mut failure = None;
            let ingress = ingress.as_ref().filter(|_| !service.spec.ports.is_empty());
            for network_id in ingress.into_iter().chain(&service.spec.networks) {
                let Some(network) = self.networks.get(network_id.as_str()) else {
                    failure = Some(format!("network {network_id} not found"));
                    break;
                };
                let reclaimed = previous
                    .iter()
                    .filter(|(n, _)| n == network_id)
                    .map(|(_, ip)| *ip)
                    .find(|ip| book.reclaim(network, *ip));
                match reclaimed.map_or_else(|| book.allocate(network), Ok) {
                    Ok(ip) => attachments.push(TaskAttachment {
                        network: network_id.clone(),
                        ip,
                        vip: service
                            .virtual_ips
                            .iter()
                            .find(|v| &v.network == network_id)
                            .map(|v| v.addr),
                        aliases: service
                            .spec
                            .network_aliases
                            .get(network_id)
                            .cloned()
                            .unwrap_or_default(),
                    }),
                    Err(e) => {
                        failure = Some(e.chain().to_string());
                        break;
                    }
                }
            }
            self.edit(&id, |t| match failure {
                Some(err) => {
                    let changed = t.status.err.as_deref() != Some(err.as_str());
                    t.status.err = Some(err);
                    changed
                }
                None => {
                    t.networks = attachments;
                    t.status.err = None;
                    t.set_state(TaskState::Pending, "addresses allocated", now);
                    true
                }
            });
        }
    }

    /// Whether a new task of `key` waits for the task it replaces: during
    /// a stop-first update (or rollback), until the old task has stopped,
    /// as Swarm does; it then takes the old task's addresses.
    fn stopping_first(&self, service: &Service, key: &Key) -> bool {
        let Some(status) = service.update_status.as_ref() else {
            return false;
        };
        let config = if status.state.is_rollback() {
            service.spec.rollback
        } else {
            service.spec.update
        };
        status.state.in_progress()
            && config.order == UpdateOrder::StopFirst
            && self.tasks.values().any(|t| {
                t.service_id == service.id
                    && !t.wanted()
                    && t.status.state >= TaskState::Assigned
                    && !t.status.state.is_final()
                    && key_of(t) == *key
            })
    }

    /// The addresses the stopped tasks of `key` held (newest first), which
    /// its new task may take again. Only tasks their node reported stopped
    /// count (their endpoints are withdrawn); an orphaned task's node may
    /// still announce its address.
    fn previous_addresses(&self, service: &Service, key: &Key) -> Vec<(String, Ipv4Addr)> {
        let mut stopped: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| {
                t.service_id == service.id
                    && t.status.state.is_final()
                    && t.status.state != TaskState::Orphaned
                    && key_of(t) == *key
            })
            .collect();
        stopped.sort_by_key(|t| std::cmp::Reverse(t.created_at_ms));
        stopped
            .iter()
            .flat_map(|t| t.networks.iter().map(|a| (a.network.clone(), a.ip)))
            .collect()
    }

    fn schedule(&mut self) {
        let now = self.now();
        let mut waiting: Vec<(u64, u64, String)> = self
            .tasks
            .values()
            .filter(|t| {
                t.wanted() && t.status.state == TaskState::Pending && t.not_before_ms <= now
            })
            .map(|t| (t.created_at_ms, t.slot, t.id.clone()))
            .collect();
        if waiting.is_empty() {
            return;
        }
        waiting.sort();
        let all: Vec<Task> = self.tasks.values().cloned().collect();
        let mut scheduler = Scheduler::new(self.state.nodes, &all);
        for (_, _, id) in waiting {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            let placed = match task.node_id.clone() {
                Some(node) => scheduler.place_on(task, &node).map(|()| node),
                None => scheduler.place(task, self.state.strategy),
            };
            self.edit(&id, |t| match placed {
                Ok(node) => {
                    t.node_id = Some(node);
                    t.status.err = None;
                    t.set_state(TaskState::Assigned, "scheduled", now);
                    true
                }
                Err(why) => {
                    let why = why.to_string();
                    let changed = t.status.err.as_deref() != Some(why.as_str());
                    t.status.err = Some(why);
                    changed
                }
            });
        }
    }

    fn finish(self) -> Plan {
        let deleted: Vec<&Task> = self
            .state
            .tasks
            .iter()
            .filter(|t| self.deleted.contains(&t.id))
            .collect();
        let quarantines = if deleted.is_empty() {
            Vec::new()
        } else {
            quarantine_deleted(self.state.quarantines, deleted, self.now())
        };
        Plan {
            tasks: self
                .changed
                .iter()
                .filter_map(|id| self.tasks.get(id).cloned())
                .collect(),
            deleted_tasks: self.deleted.into_iter().collect(),
            services: self.services,
            quarantines,
        }
    }
}

/// Whether `node` should run a global service's task: active, not down,
/// and meeting the service's constraints.
pub(super) fn takes_global_task(node: &Node, constraints: &[Constraint]) -> bool {
    node.availability == Availability::Active
        && node.state != NodeState::Down
        && Constraint::all_match(constraints, node)
}

/// The pass as a rolling update sees it.
impl update::Tasks for Pass<'_, '_> {
    fn now(&self) -> u64 {
        Pass::now(self)
    }

    fn ingress(&self) -> Option<&str> {
        Pass::ingress(self)
    }

    fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.get(id)
    }

    fn all(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    fn wanted_by_key(&self, service_id: &str) -> BTreeMap<Key, Vec<String>> {
        Pass::wanted_by_key(self, service_id)
    }

    fn shut_down(&mut self, id: &str, why: &str) {
        Pass::shut_down(self, id, why)
    }

    fn create(&mut self, service: &Service, key: &Key) {
        Pass::create(self, service, key, 0, 0);
    }
}
