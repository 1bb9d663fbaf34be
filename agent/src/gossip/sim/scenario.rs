//! The measurements the simulation exists for, each over seeded runs:
//! failure detection (crash -> every survivor sees it dead), false deaths
//! under loss and delay, membership convergence after a join, and how fast
//! a published endpoint reaches every node's table.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{SimConfig, Simulation, TableNode};
use crate::gossip::membership::MemberState;
use crate::gossip::table::EndpointRecord;
use shoal_control::objects::MacAddr;

/// Time every run spends running before it is disturbed, so that probe
/// rounds and the start-up gossip are in their steady state.
const SETTLE: Duration = Duration::from_secs(5);

/// One crash, timed from the crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectionRun {
    pub crashed: usize,
    /// Until the first survivor declared it dead.
    pub first: Duration,
    /// Until every survivor had.
    pub everywhere: Duration,
}

/// Live nodes declared dead during a steady run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FalseDeathRun {
    pub false_deaths: usize,
    /// Suspicions raised (all refuted unless counted above).
    pub suspicions: u64,
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
}

/// Order statistics of a set of durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// `None` for an empty set.
    pub fn of(values: impl IntoIterator<Item = Duration>) -> Option<Self> {
        let mut values: Vec<Duration> = values.into_iter().collect();
        values.sort();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        (!values.is_empty()).then(|| Self {
            count: values.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.3}s  p90 {:.3}s  p99 {:.3}s  max {:.3}s  (n={})",
            self.p50.as_secs_f64(),
            self.p90.as_secs_f64(),
            self.p99.as_secs_f64(),
            self.max.as_secs_f64(),
            self.count
        )
    }
}

fn run_config(base: &SimConfig, run: usize) -> SimConfig {
    let mut config = base.clone();
    config.seed = base.seed.wrapping_add(run as u64);
    config
}

fn warm_cluster(config: SimConfig) -> Simulation {
    let nodes: Vec<usize> = (0..config.nodes).collect();
    let mut sim = Simulation::new(config);
    sim.start_warm(&nodes);
    sim.run_for(SETTLE);
    sim
}

/// `runs` runs of: converged cluster, crash a random node at a random
/// moment, wait (up to `timeout`) until every survivor sees it dead.
/// `None` for a run where some survivor never did.
pub fn measure_detection(
    base: &SimConfig,
    runs: usize,
    timeout: Duration,
) -> Vec<Option<DetectionRun>> {
    (0..runs)
        .map(|run| {
            let config = run_config(base, run);
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x00de_7ec7);
            let mut sim = warm_cluster(config);
            sim.run_for(Duration::from_millis(rng.random_range(0..1000)));
            let crashed = rng.random_range(0..sim.config().nodes);
            let bump = sim.membership(crashed)?.identity().bump();
            sim.crash(crashed);
            let crash_at = sim.now();
            let everywhere = sim.run_until_dead_everywhere(crashed, bump, crash_at + timeout)?;
            let first = (0..sim.config().nodes)
                .filter_map(|observer| sim.seen(observer, crashed))
                .filter(|seen| seen.bump == bump && seen.state == MemberState::Dead)
                .map(|seen| seen.since)
                .min()?;
            Some(DetectionRun {
                crashed,
                first: first.saturating_sub(crash_at),
                everywhere: everywhere.saturating_sub(crash_at),
            })
        })
        .collect()
}

/// A converged cluster left alone for `duration` on `base.link`.
pub fn measure_false_deaths(base: &SimConfig, duration: Duration) -> FalseDeathRun {
    let mut sim = warm_cluster(base.clone());
    sim.run_for(duration);
    let stats = sim.stats();
    FalseDeathRun {
        false_deaths: sim.false_deaths().len(),
        suspicions: sim.suspicions(),
        datagrams_sent: stats.datagrams_sent,
        datagrams_lost: stats.datagrams_lost,
    }
}

/// `runs` runs of: converged cluster of all nodes but the last, then the
/// last one joins through node 0; time until it sees every node and every
/// node sees it (`None` if not within `timeout`).
pub fn measure_join(base: &SimConfig, runs: usize, timeout: Duration) -> Vec<Option<Duration>> {
    (0..runs)
        .map(|run| {
            let config = run_config(base, run);
            let joiner = config.nodes.checked_sub(1)?;
            let nodes: Vec<usize> = (0..joiner).collect();
            let mut sim = Simulation::new(config);
            sim.start_warm(&nodes);
            sim.run_for(SETTLE);
            sim.start(joiner, &[0]);
            let start = sim.now();
            let done = sim.run_until_with(start + timeout, |sim| sim.node_converged(joiner))?;
            Some(done - start)
        })
        .collect()
}

/// Anti-entropy period of the simulated tables.
pub const TABLE_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// A started, converged cluster whose nodes hold endpoint tables.
pub fn table_cluster(config: SimConfig) -> Simulation<TableNode> {
    let seed = config.seed;
    let nodes: Vec<usize> = (0..config.nodes).collect();
    let mut sim = Simulation::with_app(config, move |node, now| {
        TableNode::new(node, now, seed, TABLE_SYNC_INTERVAL)
    });
    sim.start_warm(&nodes);
    sim.run_for(SETTLE);
    sim
}

/// A task's endpoint on the simulated overlay.
pub fn endpoint(task_id: &str, host: usize, n: u8) -> EndpointRecord {
    let [_, a, b, c] = u32::try_from(host).unwrap_or(u32::MAX).to_be_bytes();
    EndpointRecord {
        task_id: task_id.to_string(),
        service: "web".to_string(),
        ip: Ipv4Addr::new(10, 255, a ^ b, c.wrapping_add(n)),
        mac: MacAddr([0x02, 0x42, 10, a, b, c]),
        vtep: Ipv4Addr::new(192, 168, b, c),
        ports: Vec::new(),
        vip: None,
        aliases: Vec::new(),
        host_ports: Vec::new(),
    }
}

/// `runs` runs of: converged cluster, a random node publishes a task's
/// endpoint; time until every node's table holds it, checked every
/// millisecond (`None` if not within `timeout`).
pub fn measure_propagation(
    base: &SimConfig,
    runs: usize,
    timeout: Duration,
) -> Vec<Option<Duration>> {
    (0..runs)
        .map(|run| {
            let config = run_config(base, run);
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x009a_9e12);
            let mut sim = table_cluster(config);
            let nodes = sim.config().nodes;
            let publisher = rng.random_range(0..nodes);
            let task = format!("task-{run}");
            let record = endpoint(&task, publisher, 1);
            sim.act(publisher, |app, now| app.publish("net", record, now));
            let version = sim.app(publisher)?.tables().get("net", &task)?.version;
            let start = sim.now();
            while sim.now() < start + timeout {
                sim.run_for(Duration::from_millis(1));
                let everywhere = (0..nodes).all(|node| {
                    sim.app(node).is_none_or(|app| {
                        app.tables()
                            .get("net", &task)
                            .is_some_and(|d| d.version == version)
                    })
                });
                if everywhere {
                    return Some(sim.now() - start);
                }
            }
            None
        })
        .collect()
}
