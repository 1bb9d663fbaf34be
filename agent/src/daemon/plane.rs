//! The node's data-plane parts, started when it is a swarm member: gossip on
//! 7946 and the overlay driven by it, plus the local verbs that read or feed
//! them (`members`, `endpoint create|rm|ls`); the task runner and the reader
//! of the tasks' output for `service logs`.

use shoal_control::error_chain::ErrorChain;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shoal_control::api::{Assignment, GossipConfig, LogChunk, LogFetch, TaskReport, GOSSIP_PORT};
use shoal_control::objects::{MacAddr, NetworkSpec, TaskState};
use tokio::sync::{mpsc, watch};

use super::dataplane::{self, DataPlane, DataPlaneStatus, Inputs, LocalEndpoints};
use super::identity::{Certs, NodeIdentity, StateDir};
use super::sandboxes::{host_resolv_conf, PlaneSandboxes};
use super::task_logs::LogReader;
use super::tasks::TaskRunner;
use crate::executor::Runtime;
use crate::gossip::service::{Entry, Gossip, GossipOptions, GossipStatus, LocalEndpoint};
use crate::gossip::table::{CertNotary, EndpointRecord, Protocol, PublishedPort};
use crate::netns::NetnsDir;
use crate::overlay::check_sandbox_id;

/// The underlay MTU assumed for overlay networks without their own.
const UNDERLAY_MTU: u32 = 1500;

/// `shoal members`: the gossip view and what the overlay made of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MembersReport {
    pub gossip: GossipStatus,
    pub overlay: DataPlaneStatus,
    /// This node's tasks by state, as it last reported them.
    #[serde(default)]
    pub tasks: std::collections::BTreeMap<String, u64>,
}

/// The states a node reports its tasks in, each shown even when none is in
/// it (so a graph has a zero rather than a gap).
const NODE_TASK_STATES: [TaskState; 8] = [
    TaskState::Assigned,
    TaskState::Preparing,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
];

/// Counts `reports` by state.
fn tasks_by_state(reports: &[TaskReport]) -> std::collections::BTreeMap<String, u64> {
    let mut counts: std::collections::BTreeMap<String, u64> = NODE_TASK_STATES
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for report in reports {
        *counts.entry(report.state.as_str().to_string()).or_default() += 1;
    }
    counts
}

/// One line of `shoal endpoint ls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointLine {
    pub network: String,
    pub owner: String,
    pub task_id: String,
    pub service: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub vtep: Ipv4Addr,
    pub ports: Vec<PublishedPort>,
    /// Whether this node programs it (its owner is alive).
    pub live: bool,
}

/// What the plane needs to run tasks.
pub struct TaskInputs {
    pub assignments: watch::Receiver<Option<Vec<Assignment>>>,
    /// This node's finished tasks the managers keep (their logs stay).
    pub history: watch::Receiver<Option<Vec<String>>>,
    pub reports: watch::Sender<Vec<TaskReport>>,
    /// The cgroup under which each task gets its own.
    pub cgroup_root: std::path::PathBuf,
    /// Which registries the node pulls from over plain HTTP.
    pub registries: crate::image::RegistryOptions,
    /// The node's load balancer (it needs the task cgroup root).
    pub mesh: crate::balancer::MeshConfig,
    /// Kept current from gossip, for the managers' down detector.
    pub gossip_view: shoal_control::manager::GossipView,
    /// The leader's log fetches, and where the answers go.
    pub log_fetches: mpsc::Receiver<Vec<LogFetch>>,
    pub log_chunks: mpsc::Sender<Vec<LogChunk>>,
    /// Bytes of each task output kept on disk.
    pub log_limit: u64,
    /// The networks this node fails to build, for the heartbeat.
    pub network_failures: watch::Sender<super::dataplane::NodeFailures>,
}

pub struct Plane {
    gossip: Arc<Gossip>,
    dataplane: DataPlane,
    runtime: Arc<dyn Runtime>,
    /// The node's images, when it runs containers (`shoal image ...`).
    images: Option<Arc<crate::image::ImageStore>>,
    /// The container runtime, for `shoal volume ...`.
    containers: Option<Arc<crate::executor::ContainerRuntime>>,
    runner: tokio::sync::Mutex<Option<TaskRunner>>,
    logs: tokio::sync::Mutex<Option<LogReader>>,
    local: Arc<LocalEndpoints>,
    networks: watch::Receiver<Option<Vec<NetworkSpec>>>,
    netns: NetnsDir,
    vtep: Ipv4Addr,
    /// The routing mesh's pins, removed when the node leaves the swarm.
    pin_dir: PathBuf,
    /// What the task runner last reported, for the metrics.
    reports: watch::Receiver<Vec<TaskReport>>,
}

impl Plane {
    /// Signs gossip records with a renewed certificate and key.
    pub async fn rekey(&self, certs: &Certs) -> anyhow::Result<()> {
        self.gossip.rekey(&certs.cert_pem, &certs.key_pem).await
    }

    pub async fn start(
        identity: &NodeIdentity,
        certs: &Certs,
        state: &StateDir,
        run_dir: &Path,
        gossip_config: watch::Receiver<Option<GossipConfig>>,
        networks: watch::Receiver<Option<Vec<NetworkSpec>>>,
        tasks: TaskInputs,
    ) -> anyhow::Result<Plane> {
        let vtep = match identity.addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            _ => bail!(
                "gossip and the overlay need an IPv4 advertise address, not `{}`",
                identity.addr
            ),
        };
        let local = Arc::new(LocalEndpoints::load(state.endpoints_file())?);
        let opts = GossipOptions::new(&identity.node_id, vtep, GOSSIP_PORT);
        // Gossip signs this node's records with its key; peers check them
        // against its certificate.
        let notary = CertNotary::new(&certs.ca_pem, &certs.cert_pem, &certs.key_pem)
            .context("gossip cannot sign with this node's certificate")?;
        let gossip =
            Arc::new(Gossip::start(opts, Box::new(notary), gossip_config, local.list()).await?);
        let netns = NetnsDir::new(run_dir.join("netns"));
        let dataplane = DataPlane::start(Inputs {
            vtep,
            underlay_mtu: UNDERLAY_MTU,
            netns: netns.clone(),
            networks_file: state.networks_file(),
            networks: networks.clone(),
            gossip: gossip.clone(),
            local: local.clone(),
            pin_dir: super::balancer::pin_dir(run_dir),
            cgroup_root: tasks.cgroup_root.clone(),
            mesh: tasks.mesh,
            gossip_view: tasks.gossip_view.clone(),
            network_failures: tasks.network_failures.clone(),
        });
        let runtimes = super::runtimes::open(
            state,
            run_dir,
            &tasks.cgroup_root,
            &tasks.registries,
            tasks.log_limit,
        )?;
        let runtime = runtimes.runtime;
        let sandboxes = Arc::new(PlaneSandboxes {
            gossip: gossip.clone(),
            local: local.clone(),
            dataplane: dataplane.handle(),
            netns: netns.clone(),
            vtep,
            resolv_conf: host_resolv_conf(),
            networks: networks.clone(),
        });
        let reports = tasks.reports.subscribe();
        let runner = TaskRunner::start(
            runtime.clone(),
            sandboxes,
            tasks.assignments,
            tasks.history,
            tasks.reports,
        )
        .await;
        let logs = LogReader::start(runtime.clone(), tasks.log_fetches, tasks.log_chunks);
        Ok(Plane {
            gossip,
            dataplane,
            runtime,
            images: runtimes.images,
            containers: runtimes.containers,
            runner: tokio::sync::Mutex::new(Some(runner)),
            logs: tokio::sync::Mutex::new(Some(logs)),
            local,
            networks,
            netns,
            vtep,
            pin_dir: super::balancer::pin_dir(run_dir),
            reports,
        })
    }

    /// Stops the overlay loop and leaves gossip; with `teardown` (leaving
    /// the swarm) also removes every overlay namespace.
    pub async fn stop(&self, teardown: bool) {
        if let Some(runner) = self.runner.lock().await.take() {
            runner.stop().await;
        }
        if let Some(logs) = self.logs.lock().await.take() {
            logs.stop().await;
        }
        if teardown {
            // Leaving the swarm stops this node's tasks; a restart keeps them.
            let runtime = self.runtime.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for id in runtime.tasks() {
                    if let Err(e) = runtime.stop(&id, std::time::Duration::from_secs(2)) {
                        tracing::warn!("stopping task {id}: {}", e.chain());
                    }
                    let _ = runtime.remove(&id);
                }
            })
            .await;
        }
        self.dataplane.stop().await;
        self.gossip.stop().await;
        if teardown {
            let netns = self.netns.clone();
            let pins = self.pin_dir.clone();
            let removed = tokio::task::spawn_blocking(move || {
                if let Err(e) = crate::ebpf::EbpfBalancer::remove(&pins) {
                    tracing::warn!("mesh teardown failed: {}", e.chain());
                }
                // Tasks on no network have a namespace of their own, outside
                // the overlay's.
                if let Err(e) = super::sandboxes::remove_bare(&netns) {
                    tracing::warn!("removing the namespaces of tasks: {}", e.chain());
                }
                dataplane::teardown(&netns)
            })
            .await;
            match removed {
                Ok(Ok(n)) => tracing::info!("overlay: removed {n} namespaces"),
                Ok(Err(e)) => tracing::warn!("overlay teardown failed: {e:#}"),
                Err(e) => tracing::warn!("overlay teardown failed: {}", e.chain()),
            }
        }
    }

    /// The node's image store, when it runs containers.
    pub fn images(&self) -> Option<Arc<crate::image::ImageStore>> {
        self.images.clone()
    }

    /// The container runtime (its volumes), when the node runs containers.
    pub fn containers(&self) -> Option<Arc<crate::executor::ContainerRuntime>> {
        self.containers.clone()
    }

    pub async fn report(&self) -> anyhow::Result<MembersReport> {
        Ok(MembersReport {
            gossip: self.gossip.status().await?,
            overlay: self.dataplane.status(),
            tasks: tasks_by_state(&self.reports.borrow()),
        })
    }

    pub async fn endpoint_create(
        &self,
        id: &str,
        network: &str,
        ip: Ipv4Addr,
        service: &str,
        publish: &[String],
    ) -> anyhow::Result<()> {
        check_sandbox_id(id)?;
        let networks = self.networks.borrow().clone().unwrap_or_default();
        let net = networks.iter().find(|n| n.id == network).with_context(|| {
            format!("network {network} not found on this node (use its id from `shoal network ls`)")
        })?;
        net.check_endpoint(ip)?;
        let live = self.gossip.live().await?;
        if let Some(holder) = live
            .get(network)
            .into_iter()
            .flatten()
            .find(|r| r.ip == ip && r.task_id != id)
        {
            bail!(
                "address {ip} is already in use on network {network} by {}",
                holder.task_id
            );
        }
        let ports = publish
            .iter()
            .map(|p| parse_port(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let record = EndpointRecord {
            task_id: id.to_string(),
            service: service.to_string(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            vtep: self.vtep,
            ports,
            vip: None,
            aliases: Vec::new(),
            host_ports: Vec::new(),
        };
        self.local.insert(LocalEndpoint {
            network: network.to_string(),
            record: record.clone(),
        })?;
        self.gossip.publish(network, record).await?;
        self.dataplane.kick();
        Ok(())
    }

    pub async fn endpoint_remove(&self, id: &str) -> anyhow::Result<()> {
        let removed = self.local.remove(id)?;
        if removed.is_empty() {
            bail!("endpoint {id} not found on this node");
        }
        for endpoint in &removed {
            self.gossip.withdraw(&endpoint.network, id).await?;
        }
        self.dataplane.kick();
        Ok(())
    }

    pub async fn endpoint_list(&self) -> anyhow::Result<Vec<EndpointLine>> {
        let entries = self.gossip.entries().await?;
        let lines: Vec<EndpointLine> = entries
            .into_iter()
            .map(
                |Entry {
                     owner,
                     network,
                     record,
                     live,
                 }| EndpointLine {
                    network,
                    owner: owner.into(),
                    task_id: record.task_id,
                    service: record.service,
                    ip: record.ip,
                    mac: record.mac.to_string(),
                    vtep: record.vtep,
                    ports: record.ports,
                    live,
                },
            )
            .collect();
        Ok(lines)
    }
}

/// `PUBLISHED:TARGET[/tcp|udp]`, Docker's short form.
pub fn parse_port(text: &str) -> anyhow::Result<PublishedPort> {
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, "tcp")) => (ports, Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some((_, other)) => bail!("unknown protocol `{other}` in `{text}`; use tcp or udp"),
        None => (text, Protocol::Tcp),
    };
    let (published, target) = ports
        .split_once(':')
        .with_context(|| format!("`{text}` is not PUBLISHED:TARGET[/tcp|udp]"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| format!("`{p}` in `{text}` is not a port (1-65535)"))
    };
    Ok(PublishedPort {
        protocol,
        published: port(published)?,
        target: port(target)?,
    })
}

impl MembersReport {
    /// The report in Prometheus' text format: per-peer state, convergence
    /// lag, dropped packets, table sizes, overlay reconciliation.
    pub fn prometheus(&self) -> String {
        let g = &self.gossip;
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, samples: Vec<(String, String)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        metric(
            "shoal_gossip_member_state",
            "How this node sees each member (1 for its current state).",
            "gauge",
            g.members
                .iter()
                .map(|m| {
                    (
                        format!(
                            "{{node=\"{}\",addr=\"{}\",state=\"{}\"}}",
                            m.view.node,
                            m.view.addr,
                            m.view.state.as_str()
                        ),
                        "1".into(),
                    )
                })
                .collect(),
        );
        metric(
            "shoal_gossip_member_incarnation",
            "SWIM incarnation of each member.",
            "gauge",
            g.members
                .iter()
                .map(|m| {
                    (
                        format!("{{node=\"{}\"}}", m.view.node),
                        m.view.incarnation.to_string(),
                    )
                })
                .collect(),
        );
        let lag = &g.convergence_lag;
        metric(
            "shoal_gossip_convergence_lag_ms",
            "From an owner's table write to its arrival here (recent changes).",
            "summary",
            vec![
                ("{quantile=\"0.5\"}".into(), lag.p50_ms.to_string()),
                ("{quantile=\"0.99\"}".into(), lag.p99_ms.to_string()),
                ("{quantile=\"1\"}".into(), lag.max_ms.to_string()),
            ],
        );
        metric(
            "shoal_gossip_changes_received_total",
            "Table changes from other nodes stored here.",
            "counter",
            vec![(String::new(), lag.count.to_string())],
        );
        let d = &g.decode;
        metric(
            "shoal_gossip_messages_total",
            "Gossip messages received, by outcome; all but accepted were dropped.",
            "counter",
            [
                ("accepted", d.accepted),
                ("malformed", d.malformed),
                ("truncated", d.truncated),
                ("unauthenticated", d.unauthenticated),
                ("replayed", d.replayed),
                ("skewed", d.skewed),
                ("unknown_key", d.unknown_key),
                ("too_large", d.too_large),
            ]
            .iter()
            .map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), v.to_string()))
            .collect(),
        );
        let t = &g.transitions;
        metric(
            "shoal_gossip_member_transitions_total",
            "Member state changes this node observed.",
            "counter",
            [("alive", t.up), ("suspect", t.suspect), ("dead", t.down)]
                .iter()
                .map(|(k, v)| (format!("{{to=\"{k}\"}}"), v.to_string()))
                .collect(),
        );
        metric(
            "shoal_gossip_table_entries",
            "Entries of the local endpoint tables.",
            "gauge",
            g.networks
                .iter()
                .flat_map(|(net, size)| {
                    [
                        (
                            format!("{{network=\"{net}\",kind=\"live\"}}"),
                            size.live.to_string(),
                        ),
                        (
                            format!("{{network=\"{net}\",kind=\"tombstone\"}}"),
                            size.tombstones.to_string(),
                        ),
                    ]
                })
                .collect(),
        );
        metric(
            "shoal_overlay_remote_endpoints",
            "Remote endpoints programmed into the overlay.",
            "gauge",
            self.overlay
                .remote_endpoints
                .iter()
                .map(|(net, n)| (format!("{{network=\"{net}\"}}"), n.to_string()))
                .collect(),
        );
        metric(
            "shoal_overlay_reconciles_total",
            "Overlay reconciliations run.",
            "counter",
            vec![(String::new(), self.overlay.reconciles.to_string())],
        );
        metric(
            "shoal_reconcile_failures_total",
            "Failed attempts to build an object on this node, by part (network, sandbox, \
             mesh, a published port; overlay for a whole pass); each failing object is retried \
             with backoff.",
            "counter",
            ["network", "sandbox", "mesh", "port", "overlay"]
                .iter()
                .map(|part| {
                    let n = self.overlay.failures_total.get(*part).copied().unwrap_or(0);
                    (format!("{{part=\"{part}\"}}"), n.to_string())
                })
                .collect(),
        );
        metric(
            "shoal_reconcile_failing",
            "Objects this node fails to build now, by part.",
            "gauge",
            ["network", "sandbox", "port"]
                .iter()
                .map(|part| {
                    let n = match *part {
                        "port" => self.overlay.mesh.failing_ports.len(),
                        _ => self
                            .overlay
                            .failing
                            .iter()
                            .filter(|f| f.object.part() == *part)
                            .count(),
                    };
                    (format!("{{part=\"{part}\"}}"), n.to_string())
                })
                .collect(),
        );
        metric(
            "shoal_tasks",
            "This node's tasks by state.",
            "gauge",
            self.tasks
                .iter()
                .map(|(state, n)| (format!("{{state=\"{state}\"}}"), n.to_string()))
                .collect(),
        );
        let mesh = &self.overlay.mesh;
        for (name, value) in &mesh.counters {
            metric(
                &format!("shoal_mesh_{name}_total"),
                "Routing mesh data path events on this node (see shoal_ebpf_common::mesh::STAT_*).",
                "counter",
                vec![(String::new(), value.to_string())],
            );
        }
        metric(
            "shoal_mesh_over_limit",
            "Published ports and virtual IPs with more backends than the mesh balances over; \
             the extra ones get no new connections (the agent's log says which).",
            "gauge",
            vec![(String::new(), mesh.over_limit.len().to_string())],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_counted_by_state_with_zeros_for_the_others() {
        let report = |id: &str, state| TaskReport {
            task_id: id.into(),
            state,
            message: String::new(),
            err: None,
            exit_code: None,
            pid: None,
        };
        let counts = tasks_by_state(&[
            report("a", TaskState::Running),
            report("b", TaskState::Running),
            report("c", TaskState::Failed),
        ]);
        assert_eq!(counts["running"], 2);
        assert_eq!(counts["failed"], 1);
        assert_eq!(counts["starting"], 0);
        assert_eq!(counts.values().sum::<u64>(), 3);
    }

    #[test]
    fn ports_parse_like_docker_short_form() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol),
            (8080, 80, Protocol::Tcp)
        );
        assert_eq!(parse_port("53:53/udp").unwrap().protocol, Protocol::Udp);
        assert!(parse_port("80").is_err());
        assert!(parse_port("0:80").is_err());
        assert!(parse_port("80:80/sctp")
            .unwrap_err()
            .to_string()
            .contains("sctp"));
    }
}
