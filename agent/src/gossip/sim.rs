//! A deterministic, seeded, in-process simulation of a gossip cluster:
//! N nodes each run the real `Membership` driver over a simulated network
//! (loss, delay, jitter, partitions) in virtual time, with crashes and
//! restarts. Same seed, same run. It measures failure detection, false
//! deaths and convergence; `AppNode` lets table state ride along.

mod engine;
mod network;
mod observe;
mod scenario;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;

use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gossip::membership::{Effect, MemberId, Membership, MembershipConfig};
use engine::{Event, Queued};

pub use super::app::{AppNode, AppOutput, NoApp};
pub use super::replica::TableNode;
pub use network::{node_addr, node_index, LinkModel};
pub use observe::{FalseDeath, Seen};
pub use scenario::{
    endpoint, measure_detection, measure_false_deaths, measure_join, measure_propagation,
    table_cluster, DetectionRun, FalseDeathRun, Summary, TABLE_SYNC_INTERVAL,
};

/// The shape of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Node slots; nodes are started explicitly.
    pub nodes: usize,
    pub seed: u64,
    pub link: LinkModel,
    pub membership: MembershipConfig,
    /// How often each node's `Membership::tick` runs.
    pub tick_interval: Duration,
    /// Print every member transition to stderr.
    pub trace: bool,
}

impl SimConfig {
    /// `nodes` slots on a quiet LAN with the default membership tuning.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            link: LinkModel::lan(),
            membership: MembershipConfig::lan(),
            tick_interval: Duration::from_secs(1),
            trace: false,
        }
    }
}

/// Counters over a whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub events: u64,
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
    pub stream_messages: u64,
    /// `Effect::Error`s reported by members (dropped input, failed steps).
    pub errors: u64,
    /// The first few of them, for diagnosis.
    pub first_errors: Vec<String>,
}

struct Slot<A> {
    membership: Option<Membership>,
    life: u32,
    app: A,
}

/// Identity bumps of successive lives are this far apart, so that renewals
/// (+1 each) never reach the next life's.
const LIFE_BUMP: u64 = 1_000_000;

/// A simulated cluster whose nodes hold application state `A`.
pub struct Simulation<A: AppNode = NoApp> {
    config: SimConfig,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Queued>,
    slots: Vec<Slot<A>>,
    network: network::Network,
    rng: ChaCha8Rng,
    seen: observe::Observations,
    make_app: Box<dyn Fn(usize, Duration) -> A>,
    stats: SimStats,
}

impl Simulation<NoApp> {
    /// A membership-only simulation; no node is started yet.
    pub fn new(config: SimConfig) -> Self {
        Self::with_app(config, |_, _| NoApp)
    }
}

impl<A: AppNode> Simulation<A> {
    /// A simulation whose node `i` starts (and restarts) at time `t` with
    /// the application state `make_app(i, t)`.
    pub fn with_app(config: SimConfig, make_app: impl Fn(usize, Duration) -> A + 'static) -> Self {
        let slots = (0..config.nodes)
            .map(|i| Slot {
                membership: None,
                life: 0,
                app: make_app(i, Duration::ZERO),
            })
            .collect();
        Self {
            network: network::Network::new(config.nodes, config.link),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            seen: observe::Observations::new(config.nodes),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            slots,
            make_app: Box::new(make_app),
            stats: SimStats::default(),
            config,
        }
    }

    /// Virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Node `node`'s membership, while it runs.
    pub fn membership(&self, node: usize) -> Option<&Membership> {
        self.slots.get(node)?.membership.as_ref()
    }

    /// Node `node`'s application state, while it runs.
    pub fn app(&self, node: usize) -> Option<&A> {
        let slot = self.slots.get(node)?;
        slot.membership.as_ref().map(|_| &slot.app)
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.seen.is_running(node)
    }

    /// Live identities declared dead so far.
    pub fn false_deaths(&self) -> &[FalseDeath] {
        &self.seen.false_deaths
    }

    /// Suspicions raised so far (each observer counts).
    pub fn suspicions(&self) -> u64 {
        self.seen.suspicions
    }

    /// What `observer` believes about `target`.
    pub fn seen(&self, observer: usize, target: usize) -> Option<Seen> {
        self.seen.seen(observer, target)
    }

    /// Every running node sees every running node alive.
    pub fn converged(&self) -> bool {
        self.seen.converged()
    }

    /// `node` sees every running node, and they all see it.
    pub fn node_converged(&self, node: usize) -> bool {
        self.seen.node_converged(node)
    }

    pub fn set_link(&mut self, link: LinkModel) {
        self.network.link = link;
    }

    /// Each group only reaches itself; unlisted nodes form one more group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.network.partition(groups);
    }

    pub fn heal(&mut self) {
        self.network.heal();
    }

    /// Starts `nodes` as a cluster that already converged (as if each had
    /// synced member lists with the first), each at a random point within
    /// one probe period so that their probe rounds are not in step.
    pub fn start_warm(&mut self, nodes: &[usize]) {
        for &node in nodes {
            self.boot(node);
        }
        let Some((&hub, rest)) = nodes.split_first() else {
            return;
        };
        let mut roster = Bytes::new();
        for &node in rest {
            let now = self.now;
            let Some(joiner) = self.slot_membership(node) else {
                continue;
            };
            let request = joiner
                .join(&[node_addr(hub)], now)
                .into_iter()
                .find_map(|effect| match effect {
                    Effect::SyncRequest { bytes, .. } => Some(bytes),
                    _ => None,
                })
                .unwrap_or_default();
            let Some(hub_membership) = self.slot_membership(hub) else {
                return;
            };
            let mut effects = hub_membership.handle_sync(node_addr(node), &request, now);
            effects.retain(|effect| match effect {
                Effect::SyncReply { bytes, .. } => {
                    roster = bytes.clone();
                    false
                }
                _ => true,
            });
            self.apply(hub, effects);
        }
        let spread = self.config.membership.probe_period.as_nanos().max(1) as u64;
        for &node in rest {
            let at = self.now + Duration::from_nanos(self.rng.random_range(0..spread));
            let life = self.slots[node].life;
            let (from, bytes) = (node_addr(hub), roster.clone());
            self.push(
                at,
                Event::Warm {
                    node,
                    life,
                    from,
                    bytes,
                },
            );
        }
    }

    /// Starts `node` (fresh state, next identity) and joins through `seeds`.
    pub fn start(&mut self, node: usize, seeds: &[usize]) {
        self.boot(node);
        let now = self.now;
        let seeds: Vec<SocketAddr> = seeds.iter().map(|&s| node_addr(s)).collect();
        if let Some(membership) = self.slot_membership(node) {
            let effects = membership.join(&seeds, now);
            self.apply(node, effects);
        }
    }

    /// Kills `node` without a word: its timers, state and packets vanish.
    pub fn crash(&mut self, node: usize) {
        if let Some(slot) = self.slots.get_mut(node) {
            slot.membership = None;
            self.seen.set_truth(node, None);
        }
    }

    /// Crashes `node` if it runs, then starts it again through `seeds`.
    pub fn restart(&mut self, node: usize, seeds: &[usize]) {
        self.crash(node);
        self.start(node, seeds);
    }

    /// Lets the test act on `node`'s application (publish a change...).
    pub fn act(&mut self, node: usize, action: impl FnOnce(&mut A, Duration) -> Vec<AppOutput>) {
        let now = self.now;
        let Some(slot) = self.slots.get_mut(node) else {
            return;
        };
        if slot.membership.is_some() {
            let outputs = action(&mut slot.app, now);
            self.outputs(node, outputs);
        }
    }

    /// Runs every event up to `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Duration) {
        while self.queue.peek().is_some_and(|next| next.at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs until `done` holds (checked after every event, so it must be
    /// cheap) or `deadline`; returns the time it first held.
    pub fn run_until_with(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Duration> {
        loop {
            if done(self) {
                return Some(self.now);
            }
            if self.queue.peek().is_none_or(|next| next.at > deadline) {
                self.now = self.now.max(deadline);
                return done(self).then_some(self.now);
            }
            self.step();
        }
    }

    /// Runs until every running node sees identity `bump` of `node` dead;
    /// returns when the last of them learnt it.
    pub fn run_until_dead_everywhere(
        &mut self,
        node: usize,
        bump: u64,
        deadline: Duration,
    ) -> Option<Duration> {
        let poll = Duration::from_millis(5);
        let mut next_check = self.now;
        loop {
            if self.now >= next_check {
                next_check = self.now + poll;
                if let Some(at) = self.seen.dead_everywhere(node, bump) {
                    return Some(at);
                }
            }
            if self.queue.peek().is_none_or(|next| next.at > deadline) {
                self.now = self.now.max(deadline);
                return self.seen.dead_everywhere(node, bump);
            }
            self.step();
        }
    }

    fn slot_membership(&mut self, node: usize) -> Option<&mut Membership> {
        self.slots.get_mut(node)?.membership.as_mut()
    }

    fn boot(&mut self, node: usize) {
        let Some(slot) = self.slots.get_mut(node) else {
            return;
        };
        slot.life += 1;
        let life = slot.life;
        let bump = u64::from(life) * LIFE_BUMP;
        let identity = MemberId::new(format!("n{node}"), node_addr(node), bump);
        let seed = self.config.seed
            ^ (node as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(life).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        slot.membership = Some(Membership::new(
            identity,
            self.config.membership.clone(),
            seed,
        ));
        slot.app = (self.make_app)(node, self.now);
        self.seen.set_truth(node, Some(bump));
        let spread = self.config.tick_interval.as_nanos().max(1) as u64;
        let at = self.now + Duration::from_nanos(self.rng.random_range(0..spread));
        self.push(at, Event::Tick { node, life });
    }
}
