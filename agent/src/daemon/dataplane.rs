//! The node's overlay, driven by gossip: a level-triggered loop that turns
//! the swarm's networks (from the managers), the live entries of the gossip
//! tables and this node's own endpoints into an `OverlaySpec` and reconciles
//! the kernel to it. It runs on every change, and every 30 s to repair
//! drift. A dead member's entries leave the tables' live view, so its FDB
//! and neighbour entries go; they come back with it.
//!
//! The managers are not on this path: with no quorum, or unreachable, the
//! node keeps its last network list (persisted) and gossip keeps going.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_control::objects::{BuildFailures, Endpoint, NetworkSpec, SandboxFailure};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::balancer::{self as mesh_plane, BalancerPlane, Loader};
use super::names::NamePlane;
use crate::balancer::{LoadBalancer, MeshConfig, MeshMode};
use crate::ebpf::{self, EbpfBalancer};
use crate::gossip::service::{Entry, Gossip, LocalEndpoint};
use crate::gossip::table::EndpointRecord;
use crate::netns::NetnsDir;
use crate::overlay::{self, Attachment, Change, OverlaySpec, RtnlKernel, SandboxSpec};

/// Periodic repair, whatever changed.
const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving together are applied together.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Back-off after a failed reconciliation.
const RETRY: Duration = Duration::from_secs(1);
/// The soonest a pass follows another to retry a held object.
const SOONEST_RETRY: Duration = Duration::from_millis(50);

/// What the loop last did, for `shoal members` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneStatus {
    pub reconciles: u64,
    pub changes_applied: u64,
    pub last_error: Option<String>,
    /// Remote endpoints programmed, per network.
    pub remote_endpoints: BTreeMap<String, usize>,
    pub sandboxes: usize,
    #[serde(default)]
    pub mesh: MeshStatus,
    /// Networks and sandboxes that failed to build, each retried with
    /// backoff while the others are reconciled.
    #[serde(default)]
    pub failing: Vec<FailingObject>,
    /// Failed attempts since the agent started, by part (`network`,
    /// `sandbox`, `mesh`, `overlay` for a whole pass).
    #[serde(default)]
    pub failures_total: BTreeMap<String, u64>,
}

/// One object the loop could not build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingObject {
    pub object: overlay::Object,
    pub error: String,
    /// Failed attempts in a row.
    pub attempts: u32,
}

/// The load balancer, as the loop last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// The data path's counters (`shoal_ebpf_common::mesh::STAT_*`).
    pub counters: Vec<(String, u64)>,
    /// Entries over the balancer's limits, each said as the fix.
    pub over_limit: Vec<String>,
    /// The last error of the balancer, if its last sync failed.
    pub last_error: Option<String>,
    /// Published ports the balancer refuses, each retried on its own
    /// backoff while the others are served.
    #[serde(default)]
    pub failing_ports: Vec<crate::balancer::FailingPort>,
    /// Failed attempts to program a published port since the agent started.
    #[serde(default)]
    pub port_failures_total: u64,
}

/// The endpoints this node owns, persisted so that a restarted agent
/// re-publishes them (and only them: its older entries get tombstoned).
pub struct LocalEndpoints {
    path: PathBuf,
    list: Mutex<Vec<LocalEndpoint>>,
}

impl LocalEndpoints {
    pub fn load(path: PathBuf) -> anyhow::Result<LocalEndpoints> {
        let list = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(LocalEndpoints {
            path,
            list: Mutex::new(list),
        })
    }

    pub fn list(&self) -> Vec<LocalEndpoint> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Adds or replaces the endpoint of (network, task id).
    pub fn insert(&self, endpoint: LocalEndpoint) -> anyhow::Result<()> {
        self.update(|list| {
            list.retain(|e| {
                (e.network.as_str(), e.record.task_id.as_str())
                    != (endpoint.network.as_str(), endpoint.record.task_id.as_str())
            });
            list.push(endpoint);
        })
    }

    /// Removes every endpoint of task `id`; returns them.
    pub fn remove(&self, id: &str) -> anyhow::Result<Vec<LocalEndpoint>> {
        let mut removed = Vec::new();
        self.update(|list| {
            let (gone, kept) = list.drain(..).partition(|e| e.record.task_id == id);
            removed = gone;
            *list = kept;
        })?;
        Ok(removed)
    }

    fn update(&self, change: impl FnOnce(&mut Vec<LocalEndpoint>)) -> anyhow::Result<()> {
        let mut list = self
            .list
            .lock()
            .map_err(|_| anyhow::anyhow!("local endpoint list poisoned"))?;
        change(&mut list);
        super::identity::write_atomic(&self.path, &serde_json::to_vec_pretty(&*list)?)?;
        Ok(())
    }
}

/// Reads the network list last handed out by the managers.
pub fn load_networks(path: &std::path::Path) -> Option<Vec<NetworkSpec>> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The running loop.
pub struct DataPlane {
    stop: CancellationToken,
    kick: Arc<Notify>,
    status: Arc<Mutex<DataPlaneStatus>>,
    /// The load balancer, whose counters are read when asked.
    mesh: Arc<Mutex<BalancerPlane<Box<dyn LoadBalancer>>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Kicks the loop and waits for it, for parts other than the plane.
#[derive(Clone)]
pub struct DataPlaneHandle {
    kick: Arc<Notify>,
    status: Arc<Mutex<DataPlaneStatus>>,
}

impl DataPlaneHandle {
    fn reconciles(&self) -> u64 {
        self.status.lock().map(|s| s.reconciles).unwrap_or(0)
    }

    /// The last error of `object`, if it is failing.
    pub fn failure_of(&self, object: &overlay::Object) -> Option<String> {
        let status = self.status.lock().ok()?;
        status
            .failing
            .iter()
            .find(|f| &f.object == object)
            .map(|f| f.error.clone())
    }

    /// Kicks the loop and returns once a reconciliation that started after
    /// the kick has finished, or after `limit`.
    pub async fn kick_and_wait(&self, limit: Duration) -> bool {
        let before = self.reconciles();
        self.kick.notify_one();
        let deadline = Instant::now() + limit;
        // The pass running now may have started before the kick: wait for
        // the one after it.
        while self.reconciles() < before + 2 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.reconciles() == before + 1 {
                self.kick.notify_one();
            }
        }
        true
    }
}

/// What the loop reads.
pub struct Inputs {
    pub vtep: Ipv4Addr,
    pub underlay_mtu: u32,
    pub netns: NetnsDir,
    /// Where the last network list is kept across restarts.
    pub networks_file: PathBuf,
    pub networks: watch::Receiver<Option<Vec<NetworkSpec>>>,
    pub gossip: Arc<Gossip>,
    pub local: Arc<LocalEndpoints>,
    /// Where the routing mesh pins its maps and links.
    pub pin_dir: PathBuf,
    /// The cgroup every task's cgroup is under (east-west hook).
    pub cgroup_root: PathBuf,
    pub mesh: MeshConfig,
    pub gossip_view: shoal_control::manager::GossipView,
    /// What this node fails to build, for the managers (`network inspect`).
    pub network_failures: watch::Sender<NodeFailures>,
}

/// What this node fails to build, as its heartbeat reports it: networks
/// (id to error), and task sandboxes and published ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFailures {
    pub networks: BTreeMap<String, String>,
    pub build: BuildFailures,
}

/// The failing sandboxes of `failing`, once per network their task
/// attaches to in `spec`, and the failing published ports.
fn build_failures(
    failing: &[FailingObject],
    spec: &OverlaySpec,
    ports: &[crate::balancer::FailingPort],
) -> BuildFailures {
    let mut sandboxes = Vec::new();
    for f in failing {
        let overlay::Object::Sandbox(task) = &f.object else {
            continue;
        };
        let Some(sandbox) = spec.sandboxes.iter().find(|s| &s.id == task) else {
            continue;
        };
        for attachment in &sandbox.attachments {
            sandboxes.push(SandboxFailure {
                network: attachment.network.clone(),
                task_id: task.clone(),
                error: f.error.clone(),
            });
        }
    }
    BuildFailures {
        sandboxes,
        ports: ports
            .iter()
            .map(|p| (p.port.to_string(), p.error.clone()))
            .collect(),
    }
}

impl DataPlane {
    pub fn start(inputs: Inputs) -> DataPlane {
        let stop = CancellationToken::new();
        let kick = Arc::new(Notify::new());
        let status = Arc::new(Mutex::new(DataPlaneStatus::default()));
        let mesh = Arc::new(Mutex::new(BalancerPlane::new(
            loader(&inputs),
            inputs.vtep,
            inputs.cgroup_root.clone(),
            crate::executor::cgroup2_mount(),
        )));
        // A link of ours deleted from outside is made again at once.
        let (watch_kick, watch_stop) = (kick.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = overlay::link_watch::watch(watch_kick, watch_stop).await {
                tracing::warn!(
                    "cannot watch the host's links (a deleted link is rebuilt at the next \
                     periodic pass): {e}"
                );
            }
        });
        let task = tokio::spawn(run(
            inputs,
            mesh.clone(),
            kick.clone(),
            status.clone(),
            stop.clone(),
        ));
        DataPlane {
            stop,
            kick,
            mesh,
            status,
            task: Mutex::new(Some(task)),
        }
    }

    /// Asks for a reconciliation now (local endpoints changed).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// What the loop last did, with the mesh's counters as they are now
    /// (unless the loop is busy with the mesh: then as of its last pass).
    pub fn status(&self) -> DataPlaneStatus {
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some(counters) = self.mesh.try_lock().ok().and_then(|mut m| m.counters()) {
            status.mesh.counters = counters
                .into_iter()
                .map(|(name, n)| (name.to_string(), n))
                .collect();
        }
        status
    }

    /// A handle that kicks the loop and reads its status.
    pub fn handle(&self) -> DataPlaneHandle {
        DataPlaneHandle {
            kick: self.kick.clone(),
            status: self.status.clone(),
        }
    }

    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(
    mut inputs: Inputs,
    ingress: Arc<Mutex<BalancerPlane<Box<dyn LoadBalancer>>>>,
    kick: Arc<Notify>,
    status: Arc<Mutex<DataPlaneStatus>>,
    stop: CancellationToken,
) {
    let mut changes = inputs.gossip.changes();
    let mut wait = Duration::ZERO;
    // The channel starts with the list read from the file: only a list
    // that differs from the last one written goes to disk.
    let mut saved = inputs.networks.borrow().clone();
    let began = Instant::now();
    // What the kernel held when this agent started (an earlier agent's
    // entries), kept for a while; see `overlay::reconcile_keeping`.
    let inherited: Arc<Mutex<Option<overlay::HostState>>> = Arc::new(Mutex::new(None));
    let mut names = NamePlane::new(inputs.netns.clone());
    let mut backoff = overlay::backoff::Backoff::default();
    // When each entry of a member that is down was first seen so.
    let mut down_since: BTreeMap<DownKey, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = changes.changed() => {}
            _ = inputs.networks.changed() => {}
            _ = kick.notified() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        let networks = inputs.networks.borrow_and_update().clone();
        changes.borrow_and_update();
        if let Some(list) = networks.as_ref().filter(|_| networks != saved) {
            if persist_networks(&inputs.networks_file, list) {
                saved = networks.clone();
            }
        }
        let (live, members, entries) = match (
            inputs.gossip.live().await,
            inputs.gossip.status().await,
            inputs.gossip.entries().await,
        ) {
            (Ok(live), Ok(status), Ok(entries)) => (live, status.members, entries),
            _ => return,
        };
        inputs.gossip_view.replace(
            members
                .iter()
                .map(|m| (m.view.node.as_str().to_string(), m.view.state.is_active()))
                .collect(),
        );
        let lingering = lingering(entries);
        let networks = networks.unwrap_or_default();
        let vteps: BTreeSet<Ipv4Addr> = members
            .iter()
            .filter_map(|m| match m.view.addr.ip() {
                std::net::IpAddr::V4(ip) if ip != inputs.vtep => Some(ip),
                _ => None,
            })
            .collect();
        let (reachable, linger_ends) = still_reachable(
            &lingering,
            &mut down_since,
            Instant::now(),
            DOWN_MEMBER_LINGER,
        );
        let mut spec = desired(
            inputs.vtep,
            inputs.underlay_mtu,
            networks.clone(),
            &live,
            &reachable,
            &inputs.local.list(),
        );
        spec.gateways = mesh_plane::gateways(&networks, &vteps);
        let mut records = live.clone();
        for (network, list) in &lingering {
            records
                .entry(network.clone())
                .or_default()
                .extend(list.iter().cloned());
        }
        let named = networks.clone();
        let netns = inputs.netns.clone();
        let started = Instant::now();
        let mesh = ingress.clone();
        let underlay_mtu = inputs.underlay_mtu;
        let mesh_mode = inputs.mesh;
        let warming = began.elapsed() < mesh_plane::WARM_UP;
        let kept = inherited.clone();
        let waiting = backoff.held(Instant::now());
        let mut held = waiting.clone();
        // Networks over the host's own routes are not built here.
        let refused = overlay::underlay::clashes(
            &networks,
            &overlay::underlay::host_routes(),
            &[ebpf::HOST_END],
        );
        held.extend(refused.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut kernel = RtnlKernel::new(netns);
            let mut kept = kept.lock().map_err(|_| {
                overlay::OverlayError::Kernel("inherited overlay state poisoned".into())
            })?;
            if kept.is_none() {
                *kept = Some(overlay::OverlayKernel::observe(&mut kernel)?);
            }
            let keep = kept.as_ref().filter(|_| warming);
            let changes = overlay::reconcile_each(&mut kernel, &spec, keep, &held)?;
            drop(kept);
            // The mesh needs the overlay's namespaces; a mesh failure is
            // reported but does not undo the overlay.
            let mut mesh_status = MeshStatus::default();
            let mut port_retry = None;
            if mesh_mode.mode != MeshMode::Off {
                if let Ok(mut mesh) = mesh.lock() {
                    mesh.set_peers(&vteps);
                    match mesh.sync(&networks, &live, &lingering, underlay_mtu) {
                        Ok(done) if !done.is_empty() => tracing::info!("mesh: {done:?}"),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("mesh: {}", e.chain());
                            mesh_status.last_error = Some(e.chain().to_string());
                        }
                    }
                    mesh_status.over_limit =
                        mesh.over_limit().iter().map(|o| o.to_string()).collect();
                    mesh_status.failing_ports = mesh.failing_ports();
                    mesh_status.port_failures_total = mesh.port_failures();
                    port_retry = mesh.next_port_retry();
                    mesh_status.counters = mesh
                        .counters()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, n)| (name.to_string(), n))
                        .collect();
                }
            }
            Ok::<_, overlay::OverlayError>((changes, spec, (mesh_status, port_retry)))
        })
        .await;
        names.sync(&named, &records).await;
        let mut status = match status.lock() {
            Ok(status) => status,
            Err(_) => return,
        };
        status.reconciles += 1;
        wait = RESYNC;
        if let Some(ends) = linger_ends {
            wait = wait.min(ends.saturating_duration_since(Instant::now()) + DEBOUNCE);
        }
        match result {
            Ok(Ok((outcome, spec, (mesh_status, port_retry)))) => {
                if mesh_status.last_error.is_some() {
                    *status.failures_total.entry("mesh".into()).or_default() += 1;
                }
                if mesh_status.port_failures_total > 0 {
                    status
                        .failures_total
                        .insert("port".into(), mesh_status.port_failures_total);
                }
                if let Some(due) = port_retry {
                    let now = Instant::now();
                    wait = wait.min(due.saturating_duration_since(now).max(SOONEST_RETRY));
                }
                status.mesh = mesh_status;
                if !outcome.applied.is_empty() {
                    tracing::info!(
                        "overlay: {} changes applied in {} ms",
                        outcome.applied.len(),
                        started.elapsed().as_millis()
                    );
                }
                let now = Instant::now();
                let mut outcome = outcome;
                // Counted and logged as failures when their retry is due,
                // held meanwhile, like any failing object.
                for (object, error) in refused {
                    if waiting.contains_key(&object) {
                        outcome.held.insert(object);
                        continue;
                    }
                    outcome.held.remove(&object);
                    outcome.done.remove(&object);
                    outcome
                        .failed
                        .insert(object, overlay::OverlayError::Refused(error));
                }
                for object in outcome.failed.keys() {
                    *status
                        .failures_total
                        .entry(object.part().into())
                        .or_default() += 1;
                }
                for event in backoff.record(&outcome, now) {
                    log_failure(&event);
                }
                if let Some(due) = backoff.next_due() {
                    wait = wait.min(due.saturating_duration_since(now).max(SOONEST_RETRY));
                }
                status.failing = backoff
                    .failing()
                    .iter()
                    .map(|(object, f)| FailingObject {
                        object: object.clone(),
                        error: f.error.clone(),
                        attempts: f.attempts,
                    })
                    .collect();
                let by_network: BTreeMap<String, String> = status
                    .failing
                    .iter()
                    .filter_map(|f| match &f.object {
                        overlay::Object::Network(id) => Some((id.clone(), f.error.clone())),
                        overlay::Object::Sandbox(_) => None,
                    })
                    .collect();
                let failures = NodeFailures {
                    networks: by_network,
                    build: build_failures(&status.failing, &spec, &status.mesh.failing_ports),
                };
                inputs.network_failures.send_if_modified(|current| {
                    let changed = *current != failures;
                    if changed {
                        *current = failures;
                    }
                    changed
                });
                status.changes_applied += outcome.applied.len() as u64;
                status.last_error = None;
                status.sandboxes = spec.sandboxes.len();
                status.remote_endpoints = BTreeMap::new();
                for endpoint in spec.endpoints.iter().filter(|e| e.vtep != spec.vtep) {
                    *status
                        .remote_endpoints
                        .entry(endpoint.network.clone())
                        .or_default() += 1;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!("overlay reconciliation failed, retrying: {}", error.chain());
                *status.failures_total.entry("overlay".into()).or_default() += 1;
                status.last_error = Some(error.chain().to_string());
                wait = RETRY;
            }
            Err(error) => {
                *status.failures_total.entry("overlay".into()).or_default() += 1;
                status.last_error = Some(error.chain().to_string());
                wait = RETRY;
            }
        }
    }
}

/// Logs a change in the failing set: once per new error, not per pass.
fn log_failure(event: &overlay::backoff::Event) {
    match event {
        overlay::backoff::Event::Failed {
            object,
            error,
            retry_in,
        } => tracing::warn!(
            "overlay: cannot build {object}: {}; the others go on, this one is retried in {} s and backing off",
            error,
            retry_in.as_secs()
        ),
        overlay::backoff::Event::Recovered { object } => {
            tracing::info!("overlay: {object} is built again")
        }
    }
}

/// Loads the balancer of the node's mesh mode when the swarm first has an
/// ingress network.
fn loader(inputs: &Inputs) -> Loader<Box<dyn LoadBalancer>> {
    match inputs.mesh.mode {
        MeshMode::Ipvs => {
            let netns = inputs.netns.clone();
            Box::new(move || {
                let node = crate::ipvs::mesh::node::HostNode::new(netns.clone());
                let balancer = crate::ipvs::mesh::IpvsBalancer::new(node)?;
                tracing::info!(
                    "mesh: IPVS load balancer (scheduler {})",
                    balancer.scheduler().label()
                );
                Ok(Box::new(balancer) as Box<dyn LoadBalancer>)
            })
        }
        MeshMode::Ebpf | MeshMode::Off => {
            let mut ebpf = ebpf_loader(inputs);
            Box::new(move || Ok(Box::new(ebpf()?) as Box<dyn LoadBalancer>))
        }
    }
}

/// Loads the eBPF balancer when the swarm first has an ingress network.
fn ebpf_loader(inputs: &Inputs) -> Loader<EbpfBalancer> {
    let (pin_dir, netns, mode) = (
        inputs.pin_dir.clone(),
        inputs.netns.clone(),
        inputs.mesh.attach,
    );
    Box::new(move || {
        ebpf::ensure_bpffs(std::path::Path::new(ebpf::BPFFS_ROOT))?;
        let balancer = EbpfBalancer::load(&pin_dir, mode)?.for_node(netns.clone());
        tracing::info!(
            "mesh: eBPF data path loaded; TC programs attach with {}",
            balancer.hook()
        );
        Ok(balancer)
    })
}

/// The entries of members that are down, per network: their tasks may
/// still serve.
fn lingering(entries: Vec<Entry>) -> BTreeMap<String, Vec<EndpointRecord>> {
    let mut lingering: BTreeMap<String, Vec<EndpointRecord>> = BTreeMap::new();
    for Entry {
        network,
        record,
        live,
        ..
    } in entries
    {
        if !live {
            lingering.entry(network).or_default().push(record);
        }
    }
    lingering
}

/// How long the overlay keeps reaching the tasks of a member that went
/// down (its agent restarting: the node says it leaves, and its tasks still
/// serve the flows the mesh keeps to them). A node that stays down longer
/// is taken for gone.
pub const DOWN_MEMBER_LINGER: Duration = Duration::from_secs(10);

/// An entry of a member that is down: network, task, address.
type DownKey = (String, String, Ipv4Addr);

/// The entries of `lingering` that went down less than `linger` ago (when
/// each was first seen down is kept in `down_since`, which forgets the
/// entries no longer down), and when the first of them expires.
fn still_reachable(
    lingering: &BTreeMap<String, Vec<EndpointRecord>>,
    down_since: &mut BTreeMap<DownKey, Instant>,
    now: Instant,
    linger: Duration,
) -> (BTreeMap<String, Vec<EndpointRecord>>, Option<Instant>) {
    let key = |network: &str, r: &EndpointRecord| (network.to_string(), r.task_id.clone(), r.ip);
    let down: BTreeSet<DownKey> = lingering
        .iter()
        .flat_map(|(n, records)| records.iter().map(move |r| key(n, r)))
        .collect();
    down_since.retain(|k, _| down.contains(k));
    let mut kept: BTreeMap<String, Vec<EndpointRecord>> = BTreeMap::new();
    let mut first_end: Option<Instant> = None;
    for (network, records) in lingering {
        for record in records {
            let since = *down_since.entry(key(network, record)).or_insert(now);
            let ends = since + linger;
            if ends > now {
                kept.entry(network.clone())
                    .or_default()
                    .push(record.clone());
                first_end = Some(first_end.map_or(ends, |f| f.min(ends)));
            }
        }
    }
    (kept, first_end)
}

/// Removes every overlay namespace this agent made (leaving the swarm).
pub fn teardown(netns: &NetnsDir) -> anyhow::Result<usize> {
    let mut kernel = RtnlKernel::new(netns.clone());
    let spec = OverlaySpec {
        vtep: Ipv4Addr::UNSPECIFIED,
        underlay_mtu: 1500,
        networks: Vec::new(),
        endpoints: Vec::new(),
        sandboxes: Vec::new(),
        gateways: Vec::new(),
    };
    let changes = overlay::reconcile(&mut kernel, &spec)?;
    Ok(changes
        .iter()
        .filter(|c| {
            matches!(
                c,
                Change::DeleteNetwork { .. } | Change::DeleteSandbox { .. }
            )
        })
        .count())
}

/// Writes the network list; false (and a warning) if it could not.
fn persist_networks(path: &std::path::Path, networks: &[NetworkSpec]) -> bool {
    let written = serde_json::to_vec_pretty(networks)
        .map_err(std::io::Error::other)
        .and_then(|bytes| super::identity::write_atomic(path, &bytes));
    if let Err(error) = &written {
        tracing::warn!(
            "cannot keep the network list in {}: {error}",
            path.display()
        );
    }
    written.is_ok()
}

/// The overlay this host should have. Entries that cannot be programmed
/// (unknown network, address outside the subnet, the gateway, an address
/// already taken) are skipped one by one, so a bad entry never blocks the
/// rest.
///
/// The entries of members that went down lately (`lingering`: an agent
/// restarting, a node that stopped answering; see [`DOWN_MEMBER_LINGER`])
/// stay reachable as the mesh keeps their flows: without them the flows the
/// mesh still forwards to those tasks would be dropped at the missing
/// neighbour. A live entry wins an address over a lingering one.
pub fn desired(
    vtep: Ipv4Addr,
    underlay_mtu: u32,
    networks: Vec<NetworkSpec>,
    live: &BTreeMap<String, Vec<EndpointRecord>>,
    lingering: &BTreeMap<String, Vec<EndpointRecord>>,
    local: &[LocalEndpoint],
) -> OverlaySpec {
    let networks = valid_networks(networks, underlay_mtu);
    let by_id: BTreeMap<&str, &NetworkSpec> = networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let usable = |network: &str, ip: Ipv4Addr| {
        by_id
            .get(network)
            .is_some_and(|n| n.check_endpoint(ip).is_ok())
    };
    let mut taken: BTreeSet<(String, Ipv4Addr)> = BTreeSet::new();
    let mut sandboxes: BTreeMap<String, Vec<Attachment>> = BTreeMap::new();
    for endpoint in local {
        let (network, record) = (&endpoint.network, &endpoint.record);
        if usable(network, record.ip) && taken.insert((network.clone(), record.ip)) {
            sandboxes
                .entry(record.task_id.clone())
                .or_default()
                .push(Attachment {
                    network: network.clone(),
                    ip: record.ip,
                    mac: Some(record.mac),
                });
        }
    }
    let mut endpoints = Vec::new();
    let remote = live
        .iter()
        .flat_map(|(network, records)| records.iter().map(move |r| (network, r)));
    let down = lingering
        .iter()
        .flat_map(|(network, records)| records.iter().map(move |r| (network, r)));
    for (network, record) in remote.chain(down) {
        let own = record.vtep == vtep;
        if own || !usable(network, record.ip) {
            continue;
        }
        if taken.insert((network.clone(), record.ip)) {
            endpoints.push(Endpoint {
                network: network.clone(),
                ip: record.ip,
                mac: record.mac,
                vtep: record.vtep,
            });
        }
    }
    OverlaySpec {
        vtep,
        underlay_mtu,
        networks,
        endpoints,
        sandboxes: sandboxes
            .into_iter()
            .map(|(id, attachments)| SandboxSpec { id, attachments })
            .collect(),
        gateways: Vec::new(),
    }
}

/// The networks that validate and whose MTU fits this node's underlay
/// (`underlay_mtu`; the kernel would take a larger one and drop the big
/// packets silently), each VNI once (first wins).
fn valid_networks(networks: Vec<NetworkSpec>, underlay_mtu: u32) -> Vec<NetworkSpec> {
    let mut kept: Vec<NetworkSpec> = Vec::new();
    for network in networks {
        let fits = network
            .validate()
            .and_then(|()| network.check_underlay(underlay_mtu));
        if let Err(error) = fits {
            tracing::warn!("network skipped: {}", error.chain());
            continue;
        }
        if kept
            .iter()
            .any(|k| k.vni == network.vni || k.id == network.id)
        {
            tracing::warn!("network `{}` skipped: its VNI or id is taken", network.id);
            continue;
        }
        kept.push(network);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::objects::MacAddr;

    fn net(id: &str, vni: u32, subnet: &str) -> NetworkSpec {
        let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
        NetworkSpec {
            id: id.into(),
            vni,
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            mtu: None,
            ingress: false,
        }
    }

    fn rec(task: &str, ip: [u8; 4], vtep: [u8; 4]) -> EndpointRecord {
        let ip = Ipv4Addr::from(ip);
        EndpointRecord {
            task_id: task.into(),
            service: String::new(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            vtep: Ipv4Addr::from(vtep),
            ports: Vec::new(),
            vip: None,
            aliases: Vec::new(),
            host_ports: Vec::new(),
        }
    }

    #[test]
    fn local_endpoints_become_sandboxes_and_remote_ones_fdb_entries() {
        let me = Ipv4Addr::new(198, 18, 0, 1);
        let networks = vec![
            net("red", 4096, "10.0.1.0/24"),
            net("blue", 4097, "10.0.2.0/24"),
        ];
        let mine = rec("t1", [10, 0, 1, 2], [198, 18, 0, 1]);
        let live = BTreeMap::from([
            (
                "red".to_string(),
                vec![mine.clone(), rec("t2", [10, 0, 1, 3], [198, 18, 0, 2])],
            ),
            (
                "blue".to_string(),
                vec![
                    rec("t3", [10, 0, 2, 3], [198, 18, 0, 3]),
                    // Outside the subnet, the gateway, an unknown network: skipped.
                    rec("bad1", [10, 9, 9, 9], [198, 18, 0, 3]),
                    rec("bad2", [10, 0, 2, 1], [198, 18, 0, 3]),
                ],
            ),
            (
                "gone".to_string(),
                vec![rec("t4", [10, 0, 3, 3], [198, 18, 0, 3])],
            ),
        ]);
        let local = vec![LocalEndpoint {
            network: "red".into(),
            record: mine,
        }];
        let spec = desired(me, 1500, networks, &live, &BTreeMap::new(), &local);
        spec.validate().unwrap();
        assert_eq!(spec.sandboxes.len(), 1);
        assert_eq!(spec.sandboxes[0].id, "t1");
        let remote: Vec<Ipv4Addr> = spec.endpoints.iter().map(|e| e.ip).collect();
        assert_eq!(
            remote,
            vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 1, 3)]
        );
    }

    #[test]
    fn a_remote_claim_on_a_local_address_is_skipped() {
        let me = Ipv4Addr::new(198, 18, 0, 1);
        let mine = rec("t1", [10, 0, 1, 2], [198, 18, 0, 1]);
        let live = BTreeMap::from([(
            "red".to_string(),
            vec![rec("stale", [10, 0, 1, 2], [198, 18, 0, 2])],
        )]);
        let local = vec![LocalEndpoint {
            network: "red".into(),
            record: mine,
        }];
        let spec = desired(
            me,
            1500,
            vec![net("red", 4096, "10.0.1.0/24")],
            &live,
            &BTreeMap::new(),
            &local,
        );
        spec.validate().unwrap();
        assert!(spec.endpoints.is_empty());
    }

    #[test]
    fn a_down_members_tasks_stay_reachable_and_a_live_claim_wins() {
        let me = Ipv4Addr::new(198, 18, 0, 1);
        let live = BTreeMap::from([(
            "red".to_string(),
            vec![rec("new", [10, 0, 1, 4], [198, 18, 0, 3])],
        )]);
        // A member whose agent is restarting: its task still serves the
        // flows the mesh keeps; an older claim on 10.0.1.4 loses to the live one.
        let lingering = BTreeMap::from([(
            "red".to_string(),
            vec![
                rec("kept", [10, 0, 1, 3], [198, 18, 0, 2]),
                rec("old", [10, 0, 1, 4], [198, 18, 0, 2]),
            ],
        )]);
        let spec = desired(
            me,
            1500,
            vec![net("red", 4096, "10.0.1.0/24")],
            &live,
            &lingering,
            &[],
        );
        spec.validate().unwrap();
        let remote: Vec<(Ipv4Addr, Ipv4Addr)> =
            spec.endpoints.iter().map(|e| (e.ip, e.vtep)).collect();
        assert_eq!(
            remote,
            vec![
                (Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(198, 18, 0, 3)),
                (Ipv4Addr::new(10, 0, 1, 3), Ipv4Addr::new(198, 18, 0, 2)),
            ]
        );
    }

    #[test]
    fn a_down_members_entries_stay_reachable_for_the_linger_only() {
        let t0 = Instant::now();
        let linger = Duration::from_secs(10);
        let mut since = BTreeMap::new();
        let down = BTreeMap::from([(
            "red".to_string(),
            vec![rec("a", [10, 0, 1, 3], [198, 18, 0, 2])],
        )]);
        let (kept, ends) = still_reachable(&down, &mut since, t0, linger);
        assert_eq!(kept["red"].len(), 1);
        assert_eq!(ends, Some(t0 + linger));
        // A second entry going down later keeps its own time.
        let later = BTreeMap::from([(
            "red".to_string(),
            vec![
                rec("a", [10, 0, 1, 3], [198, 18, 0, 2]),
                rec("b", [10, 0, 1, 4], [198, 18, 0, 2]),
            ],
        )]);
        let t5 = t0 + Duration::from_secs(5);
        let (kept, ends) = still_reachable(&later, &mut since, t5, linger);
        assert_eq!(kept["red"].len(), 2);
        assert_eq!(ends, Some(t0 + linger));
        let t11 = t0 + Duration::from_secs(11);
        let (kept, ends) = still_reachable(&later, &mut since, t11, linger);
        let tasks: Vec<&str> = kept["red"].iter().map(|r| r.task_id.as_str()).collect();
        assert_eq!(tasks, ["b"]);
        assert_eq!(ends, Some(t5 + linger));
        // Back up (no longer lingering) and down again: a fresh linger.
        let (kept, _) = still_reachable(&BTreeMap::new(), &mut since, t11, linger);
        assert!(kept.is_empty() && since.is_empty());
        let (kept, ends) = still_reachable(&later, &mut since, t11, linger);
        assert_eq!(kept["red"].len(), 2);
        assert_eq!(ends, Some(t11 + linger));
    }

    #[test]
    fn invalid_and_clashing_networks_are_dropped() {
        let mut bad = net("bad", 4096, "10.0.1.0/24");
        bad.vni = 5;
        let mut jumbo = net("jumbo", 4097, "10.0.3.0/24");
        jumbo.mtu = Some(9000);
        let kept = valid_networks(
            vec![
                bad,
                net("a", 4096, "10.0.1.0/24"),
                net("b", 4096, "10.0.2.0/24"),
                jumbo.clone(),
            ],
            1500,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, "a");
        // On a jumbo underlay it fits.
        assert_eq!(valid_networks(vec![jumbo], 9050).len(), 1);
    }

    #[test]
    fn local_endpoints_persist() {
        let dir = std::env::temp_dir().join(format!("shoal-local-{}", std::process::id()));
        let path = dir.join("endpoints.json");
        let store = LocalEndpoints::load(path.clone()).unwrap();
        let endpoint = LocalEndpoint {
            network: "red".into(),
            record: rec("t1", [10, 0, 1, 2], [198, 18, 0, 1]),
        };
        store.insert(endpoint.clone()).unwrap();
        store.insert(endpoint.clone()).unwrap();
        assert_eq!(
            LocalEndpoints::load(path.clone()).unwrap().list(),
            vec![endpoint]
        );
        assert_eq!(store.remove("t1").unwrap().len(), 1);
        assert!(LocalEndpoints::load(path).unwrap().list().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failing_sandbox_is_reported_on_each_network_of_its_task() {
        let me = Ipv4Addr::new(198, 18, 0, 1);
        let networks = vec![
            net("red", 4096, "10.0.1.0/24"),
            net("blue", 4097, "10.0.2.0/24"),
        ];
        let local: Vec<LocalEndpoint> = [("red", [10, 0, 1, 2]), ("blue", [10, 0, 2, 2])]
            .into_iter()
            .map(|(network, ip)| LocalEndpoint {
                network: network.into(),
                record: rec("t1", ip, [198, 18, 0, 1]),
            })
            .chain([LocalEndpoint {
                network: "red".into(),
                record: rec("t2", [10, 0, 1, 3], [198, 18, 0, 1]),
            }])
            .collect();
        let spec = desired(
            me,
            1500,
            networks,
            &BTreeMap::new(),
            &BTreeMap::new(),
            &local,
        );
        let failing = |object| FailingObject {
            object,
            error: "File exists".into(),
            attempts: 2,
        };
        let ports = vec![crate::balancer::FailingPort {
            port: crate::balancer::PortKey {
                protocol: shoal_control::objects::Protocol::Udp,
                port: 53,
            },
            error: "map full".into(),
            attempts: 1,
        }];
        let out = build_failures(
            &[
                failing(overlay::Object::Sandbox("t1".into())),
                // A network's failure is reported apart; a sandbox no
                // longer wanted is not reported.
                failing(overlay::Object::Network("red".into())),
                failing(overlay::Object::Sandbox("gone".into())),
            ],
            &spec,
            &ports,
        );
        let mut seen: Vec<(&str, &str)> = out
            .sandboxes
            .iter()
            .map(|f| (f.network.as_str(), f.task_id.as_str()))
            .collect();
        seen.sort();
        assert_eq!(seen, [("blue", "t1"), ("red", "t1")]);
        assert!(out.sandboxes.iter().all(|f| f.error == "File exists"));
        assert_eq!(
            out.ports,
            BTreeMap::from([("53/udp".to_string(), "map full".to_string())])
        );
    }

    #[test]
    fn entries_of_dead_owners_linger_by_network() {
        let entry = |owner: &str, network: &str, record, live| Entry {
            owner: owner.into(),
            network: network.into(),
            record,
            live,
        };
        let entries = vec![
            entry(
                "node-a",
                "ingress",
                rec("t1", [10, 255, 0, 2], [198, 18, 0, 2]),
                false,
            ),
            entry(
                "node-b",
                "ingress",
                rec("t2", [10, 255, 0, 3], [198, 18, 0, 3]),
                true,
            ),
            entry(
                "node-a",
                "app",
                rec("t1", [10, 0, 0, 2], [198, 18, 0, 2]),
                false,
            ),
        ];
        let out = lingering(entries);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["app", "ingress"]);
        assert_eq!(out["ingress"].len(), 1);
        assert_eq!(out["ingress"][0].task_id, "t1");
    }
}
