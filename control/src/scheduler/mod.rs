//! The scheduler: picks a node for each task that has none, the way Swarm
//! does. Filters (availability, constraints, resources, host-mode ports)
//! decide which nodes
//! can take a task; placement preferences and the strategy (spread or
//! binpack) decide which of those does. When no node fits, [`Unschedulable`]
//! says why, in the words `service ps` shows.
//!
//! It is pure: it reads nodes and tasks handed to it and never does I/O,
//! never reads the clock and never writes to the store. The orchestrator
//! builds a [`Scheduler`] once per pass and writes the decisions back.

mod filter;
mod labels;
mod rank;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::objects::{spread_label, Node, NodeResources, Protocol, Strategy, Task};

pub use filter::Unschedulable;
use filter::{Demand, Rejection};
use labels::LabelIndex;

/// The nodes of the swarm and what is committed on each, updated by every
/// placement so the next one sees it.
pub struct Scheduler {
    /// The nodes, in id order: every tie in ranking goes to the lowest
    /// index, which is then the lowest id, without comparing strings.
    nodes: Vec<Node>,
    /// What is committed on each node, by the same index: the only part of a
    /// node the scan over all nodes reads for most tasks, kept compact.
    loads: Vec<NodeLoad>,
    /// Label columns for constraints and preferences, built on first use.
    labels: LabelIndex,
    /// Node id to index in `nodes`.
    node_index: HashMap<String, u32>,
    /// Service id to index in `service_tasks`.
    service_index: HashMap<String, usize>,
    /// Per service, live tasks of that service on each node (by node index).
    service_tasks: Vec<Vec<u32>>,
    /// Live tasks counted, by task id, with what was booked for them.
    bookings: HashMap<String, Booking>,
    /// Reused by every placement: the nodes still in the running.
    candidates: Vec<u32>,
}

/// What a node offers and what its live tasks take of it.
struct NodeLoad {
    /// Ready and Active: may take new tasks.
    available: bool,
    capacity: NodeResources,
    reserved_nano_cpus: u64,
    reserved_memory: u64,
    live_tasks: u32,
    /// The host-mode ports its live tasks publish (one entry per task
    /// and port).
    host_ports: Vec<(Protocol, u16)>,
}

/// What counting one task added, so that releasing it takes back exactly that.
#[derive(Clone, Copy)]
struct Booking {
    node: u32,
    service: usize,
    nano_cpus: u64,
    memory_bytes: u64,
}

impl Scheduler {
    /// A scheduler over `nodes`. Of `tasks`, the live ones (see
    /// [`Task::is_live`]) with a node id count as placed there; tasks on
    /// nodes not in `nodes` are ignored.
    pub fn new(nodes: &[Node], tasks: &[Task]) -> Scheduler {
        let mut scheduler = Scheduler {
            nodes: Vec::with_capacity(nodes.len()),
            loads: Vec::with_capacity(nodes.len()),
            labels: LabelIndex::default(),
            node_index: HashMap::with_capacity(nodes.len()),
            service_index: HashMap::new(),
            service_tasks: Vec::new(),
            bookings: HashMap::with_capacity(tasks.len()),
            candidates: Vec::with_capacity(nodes.len()),
        };
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for node in sorted {
            if scheduler.node_index.contains_key(&node.id) {
                continue;
            }
            let index = scheduler.nodes.len() as u32;
            scheduler.node_index.insert(node.id.clone(), index);
            scheduler.loads.push(NodeLoad {
                available: filter::is_available(node),
                capacity: node.resources,
                reserved_nano_cpus: 0,
                reserved_memory: 0,
                live_tasks: 0,
                host_ports: Vec::new(),
            });
            scheduler.nodes.push(node.clone());
        }
        for task in tasks.iter().filter(|t| t.is_live()) {
            let Some(node) = task.node_id.as_deref() else {
                continue;
            };
            if let Some(&index) = scheduler.node_index.get(node) {
                scheduler.book(task, index);
            }
        }
        scheduler
    }

    /// Picks a node for `task` and records the placement (reservations and
    /// counts), so later calls see it; returns the node id.
    ///
    /// The task's `placement.strategy` overrides `cluster_strategy`. A task
    /// already counted (same id) is released first, so placing it again
    /// moves it, and a refused task is no longer counted anywhere.
    pub fn place(
        &mut self,
        task: &Task,
        cluster_strategy: Strategy,
    ) -> Result<String, Unschedulable> {
        self.release(task);
        self.prepare_labels(task);
        let service = self.service(&task.service_id);
        let demand = Demand::of(task, &self.labels);
        let mut rejected = Unschedulable::default();
        self.candidates.clear();
        for (index, (node, load)) in self.nodes.iter().zip(&self.loads).enumerate() {
            let index = index as u32;
            match demand.check(index, node, load) {
                Ok(()) => self.candidates.push(index),
                Err(rejection) => rejected.count(rejection),
            }
        }
        if self.candidates.is_empty() {
            return Err(rejected);
        }
        let service_tasks = &self.service_tasks[service];
        let placement = &task.spec.placement;
        rank::narrow_by_preferences(
            &mut self.candidates,
            &placement.preferences,
            &self.labels,
            service_tasks,
        );
        let strategy = placement.strategy.unwrap_or(cluster_strategy);
        let chosen = rank::pick(
            strategy,
            &self.candidates,
            &self.loads,
            service_tasks,
            &demand,
        )
        .ok_or(rejected)?;
        self.book(task, chosen);
        Ok(self.nodes[chosen as usize].id.clone())
    }

    /// For a global service's task made for `node_id`: whether that node can
    /// take it now (same filters as [`Scheduler::place`]); records it when
    /// it can. A node not in the swarm counts as not available. Like
    /// [`Scheduler::place`], it first releases the task if it is counted.
    pub fn place_on(&mut self, task: &Task, node_id: &str) -> Result<(), Unschedulable> {
        self.release(task);
        let mut rejected = Unschedulable::default();
        let Some(&index) = self.node_index.get(node_id) else {
            rejected.count(Rejection::Unavailable);
            return Err(rejected);
        };
        self.prepare_labels(task);
        let i = index as usize;
        match Demand::of(task, &self.labels).check(index, &self.nodes[i], &self.loads[i]) {
            Ok(()) => {
                self.book(task, index);
                Ok(())
            }
            Err(rejection) => {
                rejected.count(rejection);
                Err(rejected)
            }
        }
    }

    /// Stops counting `task` (reservations and counts), e.g. when the
    /// orchestrator shuts it down in the same pass. Does nothing for a task
    /// that is not counted.
    pub fn release(&mut self, task: &Task) {
        let Some(booking) = self.bookings.remove(&task.id) else {
            return;
        };
        let load = &mut self.loads[booking.node as usize];
        load.reserved_nano_cpus = load.reserved_nano_cpus.saturating_sub(booking.nano_cpus);
        load.reserved_memory = load.reserved_memory.saturating_sub(booking.memory_bytes);
        load.live_tasks = load.live_tasks.saturating_sub(1);
        for port in &task.host_ports {
            let key = (port.protocol, port.published);
            if let Some(at) = load.host_ports.iter().position(|p| *p == key) {
                load.host_ports.swap_remove(at);
            }
        }
        let count = &mut self.service_tasks[booking.service][booking.node as usize];
        *count = count.saturating_sub(1);
    }

    /// The id of the node `task` is counted on, if it is.
    pub fn node_of(&self, task_id: &str) -> Option<&str> {
        let booking = self.bookings.get(task_id)?;
        Some(self.nodes[booking.node as usize].id.as_str())
    }

    /// Builds the label columns `task`'s constraints and preferences read.
    fn prepare_labels(&mut self, task: &Task) {
        let placement = &task.spec.placement;
        let constrained = placement
            .constraints
            .iter()
            .filter_map(|c| c.key.strip_prefix("node.labels."));
        let preferred = placement
            .preferences
            .iter()
            .filter_map(|p| spread_label(p).ok());
        for key in constrained.chain(preferred) {
            self.labels.prepare(&self.nodes, key);
        }
    }

    /// Counts `task` on the node at `index`.
    fn book(&mut self, task: &Task, index: u32) {
        if self.bookings.contains_key(&task.id) {
            // The same task listed twice: count it once.
            return;
        }
        let service = self.service(&task.service_id);
        let resources = &task.spec.resources;
        let booking = Booking {
            node: index,
            service,
            nano_cpus: resources.reserve_nano_cpus,
            memory_bytes: resources.reserve_memory,
        };
        self.bookings.insert(task.id.clone(), booking);
        let load = &mut self.loads[index as usize];
        load.reserved_nano_cpus = load.reserved_nano_cpus.saturating_add(booking.nano_cpus);
        load.reserved_memory = load.reserved_memory.saturating_add(booking.memory_bytes);
        load.live_tasks = load.live_tasks.saturating_add(1);
        load.host_ports.extend(
            task.host_ports
                .iter()
                .map(|port| (port.protocol, port.published)),
        );
        let count = &mut self.service_tasks[service][index as usize];
        *count = count.saturating_add(1);
    }

    /// The index of `service_id`'s counts, made on first sight.
    fn service(&mut self, service_id: &str) -> usize {
        if let Some(&index) = self.service_index.get(service_id) {
            return index;
        }
        let index = self.service_tasks.len();
        self.service_tasks.push(vec![0; self.nodes.len()]);
        self.service_index.insert(service_id.to_string(), index);
        index
    }
}
