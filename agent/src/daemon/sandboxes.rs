//! Task sandboxes on the real data plane: a task's endpoints become local
//! endpoints (kept on disk, published in gossip) and the overlay loop builds
//! the sandbox namespace with one interface per network. A task on no
//! network gets a namespace of its own with only loopback.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use shoal_control::api::Assignment;
use shoal_control::objects::{MacAddr, NetworkSpec, PublishMode};
use tokio::sync::watch;

use super::dataplane::{DataPlaneHandle, LocalEndpoints};
use super::tasks::Sandboxes;
use crate::gossip::service::{Gossip, LocalEndpoint};
use crate::gossip::table::{EndpointRecord, PublishedPort};
use crate::netns::NetnsDir;
use crate::overlay::names;

/// How long the overlay may take to build a sandbox.
const SANDBOX_WAIT: Duration = Duration::from_secs(15);

pub struct PlaneSandboxes {
    pub gossip: Arc<Gossip>,
    pub local: Arc<LocalEndpoints>,
    pub dataplane: DataPlaneHandle,
    pub netns: NetnsDir,
    pub vtep: Ipv4Addr,
    /// The host's nameservers, for tasks on no overlay network.
    pub resolv_conf: String,
    pub networks: watch::Receiver<Option<Vec<NetworkSpec>>>,
}

/// The prefix of the namespace of a task on no network.
const BARE_NS_PREFIX: &str = "tk-";

/// A task's published ports, by mode: the routing mesh's (every node) and
/// the host-mode ones (its own node only).
#[derive(Default)]
struct Published {
    ingress: Vec<PublishedPort>,
    host: Vec<PublishedPort>,
}

/// The namespace of a task on no network.
fn bare_ns(task_id: &str) -> String {
    format!("{BARE_NS_PREFIX}{task_id}")
}

/// Removes the namespaces of every task on no network (the node leaves the
/// swarm and its tasks are stopped); returns how many there were.
pub fn remove_bare(netns: &NetnsDir) -> Result<usize, crate::netns::NetnsError> {
    let bare: Vec<String> = netns
        .list()?
        .into_iter()
        .filter(|name| name.starts_with(BARE_NS_PREFIX))
        .collect();
    for name in &bare {
        netns.remove(name)?;
    }
    Ok(bare.len())
}

#[tonic::async_trait]
impl Sandboxes for PlaneSandboxes {
    async fn attach(&self, a: &Assignment) -> anyhow::Result<PathBuf> {
        crate::overlay::check_sandbox_id(&a.task_id)?;
        if a.networks.is_empty() {
            let netns = self.netns.clone();
            let name = bare_ns(&a.task_id);
            return tokio::task::spawn_blocking(move || netns.create(&name))
                .await?
                .context("cannot create the task's network namespace");
        }
        // In the overlay at once; behind its published ports and virtual
        // IP only once it serves (listens, or is healthy: `serve`).
        self.publish(a, Published::default(), false).await?;
        let name = names::sandbox_ns(&a.task_id);
        let built = self.dataplane.kick_and_wait(SANDBOX_WAIT).await;
        let object = crate::overlay::Object::Sandbox(a.task_id.clone());
        if let Some(error) = self.dataplane.failure_of(&object) {
            bail!("the overlay cannot build the task's sandbox: {error}");
        }
        if !built || !self.netns.exists(&name) {
            bail!(
                "the overlay did not build the sandbox within {} s (is network {} known on this node?)",
                SANDBOX_WAIT.as_secs(),
                a.networks[0].network
            );
        }
        Ok(self.netns.path(&name))
    }

    async fn detach(&self, task_id: &str) -> anyhow::Result<()> {
        let removed = self.local.remove(task_id)?;
        for endpoint in &removed {
            self.gossip.withdraw(&endpoint.network, task_id).await?;
        }
        if removed.is_empty() {
            let netns = self.netns.clone();
            let name = bare_ns(task_id);
            tokio::task::spawn_blocking(move || netns.remove(&name)).await??;
        } else {
            self.dataplane.kick_and_wait(SANDBOX_WAIT).await;
        }
        Ok(())
    }

    async fn serve(&self, a: &Assignment, serving: bool) -> anyhow::Result<()> {
        let ports = |mode: PublishMode| -> Vec<PublishedPort> {
            a.ports
                .iter()
                .filter(|p| serving && p.mode == mode)
                .map(|p| PublishedPort {
                    published: p.published,
                    target: p.target,
                    protocol: p.protocol,
                })
                .collect()
        };
        let published = Published {
            ingress: ports(PublishMode::Ingress),
            host: ports(PublishMode::Host),
        };
        self.publish(a, published, serving).await
    }

    fn listens(&self, pid: u32, a: &Assignment) -> bool {
        super::listening::listens(pid, &a.ports)
    }

    fn resolv_conf(&self, assignment: &Assignment) -> String {
        let networks = self.networks.borrow().clone().unwrap_or_default();
        super::names::resolv_conf(assignment, &networks, &self.resolv_conf)
    }
}

impl PlaneSandboxes {
    /// Publishes (and keeps on disk) the task's endpoint on each of its
    /// networks, a backend of `ports`, and of its service's virtual IP when
    /// `serving`.
    async fn publish(&self, a: &Assignment, ports: Published, serving: bool) -> anyhow::Result<()> {
        for attachment in &a.networks {
            let record = EndpointRecord {
                task_id: a.task_id.clone(),
                service: a.service_name.clone(),
                ip: attachment.ip,
                mac: MacAddr::from_ipv4(attachment.ip),
                vtep: self.vtep,
                ports: ports.ingress.clone(),
                vip: attachment.vip.filter(|_| serving),
                aliases: attachment.aliases.clone(),
                host_ports: ports.host.clone(),
            };
            self.local.insert(LocalEndpoint {
                network: attachment.network.clone(),
                record: record.clone(),
            })?;
            self.gossip.publish(&attachment.network, record).await?;
        }
        Ok(())
    }
}

/// The resolv.conf of tasks on no overlay network: the host's nameservers
/// and search domains.
pub fn host_resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::from("# written by shoal for this task\n");
    for line in host.lines() {
        let l = line.trim_start();
        if l.starts_with("nameserver") || l.starts_with("search") || l.starts_with("options") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
