//! The agent's membership in a swarm. [`Agent`] is what the local API
//! calls: cluster requests go to this node's manager core, data-plane verbs
//! to its plane, and membership changes to the one membership task, which
//! owns the member's parts and runs every change in turn: the verbs from
//! the CLI (`init`, `join`, `leave`, `unlock`, `force_new_cluster`) and the
//! session's events (`role`, `renewal`, `rekey`, removal). Requests read a
//! published [`Standing`] and never wait for a change in progress; no lock
//! is held across a network call.
//!
//! One job per file: `init`, `join`, `leave`, `unlock`, `renewal`,
//! `rekey`, `role`, `bootstrap` (a manager's first steps), `member` (the
//! parts a member runs).

mod bootstrap;
mod error;
mod init;
mod join;
mod leave;
mod member;
mod pin;
mod rekey;
mod renewal;
mod role;
mod unlock;

use shoal_control::error_chain::ErrorChain;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_control::api::LocalRequest;
use shoal_control::manager::{Caller, GossipView};
use shoal_control::objects::{NodeResources, DEFAULT_CERT_EXPIRY_SECS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::AgentError;
use member::Member;

use super::answer::LocalAnswer;
use super::identity::{NodeIdentity, StateDir};
use super::manager::Core;
use super::plane::Plane;
use super::vitals::{raft_prometheus, HeartbeatLatency};
use super::worker::SessionEvent;
use super::Options;

/// What this node is now, for the requests it serves.
#[derive(Clone, Default)]
pub enum Standing {
    /// In no swarm.
    #[default]
    Outside,
    /// An autolocked manager waiting for `swarm unlock`.
    Locked,
    Member {
        /// The manager core, on managers.
        manager: Option<Arc<Core>>,
        /// Gossip and the overlay, or why they did not start.
        plane: Result<Arc<Plane>, String>,
    },
}

/// How long a cluster request waits for a membership change in progress
/// (a promotion, a join) to finish before it is answered.
const SETTLE_WAIT: Duration = Duration::from_secs(20);

/// The answer to a membership verb: what to print.
type Reply = oneshot::Sender<Result<String, AgentError>>;

/// A membership change the CLI asked for.
enum Job {
    Init {
        advertise_addr: String,
        listen_port: u16,
        cert_expiry_secs: u64,
        autolock: bool,
        reply: Reply,
    },
    ForceNewCluster {
        reply: Reply,
    },
    Join {
        token: String,
        manager: String,
        advertise_addr: Option<String>,
        listen_port: u16,
        reply: Reply,
    },
    Leave {
        force: bool,
        reply: Reply,
    },
    Unlock {
        key: String,
        reply: Reply,
    },
}

/// The local API's side of the agent.
pub struct Agent {
    jobs: mpsc::Sender<Job>,
    standing: watch::Receiver<Standing>,
    /// True while the membership task changes what this node is.
    changing: watch::Receiver<bool>,
    /// This node's heartbeat round trips.
    latency: Arc<HeartbeatLatency>,
}

/// The membership task's state: it alone changes the member.
struct Membership {
    state: StateDir,
    run_dir: PathBuf,
    hostname: String,
    cgroup_root: PathBuf,
    registries: crate::image::RegistryOptions,
    resources: NodeResources,
    mesh: crate::balancer::MeshConfig,
    gossip_view: GossipView,
    task_log_limit: u64,
    /// How long the managers keep this node's tasks when it restarts.
    restart_window: std::time::Duration,
    /// This node's heartbeat round trips, for the metrics.
    latency: Arc<HeartbeatLatency>,
    member: Option<Member>,
    /// Set while an autolocked manager waits for `swarm unlock`.
    locked: Option<NodeIdentity>,
    /// Where the session and the timers send events.
    events: mpsc::Sender<SessionEvent>,
    standing: watch::Sender<Standing>,
    changing: watch::Sender<bool>,
    /// The timers this task starts.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Agent {
    /// Starts the membership task on `tasks`, resuming the swarm recorded
    /// in the state dir. It stops, and stops the member's parts, when
    /// `stop` is cancelled.
    pub async fn start(
        opts: &Options,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<Agent> {
        let hostname = match &opts.hostname {
            Some(h) => h.clone(),
            None => hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into()),
        };
        let (jobs_tx, jobs) = mpsc::channel(8);
        let (events_tx, events) = mpsc::channel(16);
        let (standing_tx, standing) = watch::channel(Standing::Outside);
        let (changing_tx, changing) = watch::channel(false);
        let latency = Arc::new(HeartbeatLatency::default());
        let mut membership = Membership {
            state: StateDir::new(&opts.state_dir),
            run_dir: opts.run_dir.clone(),
            hostname,
            cgroup_root: opts.cgroup_root.clone(),
            registries: opts.registries.clone(),
            resources: opts.resources,
            mesh: opts.mesh,
            gossip_view: GossipView::default(),
            task_log_limit: opts.task_log_limit,
            restart_window: opts.restart_window,
            latency: latency.clone(),
            member: None,
            locked: None,
            events: events_tx,
            standing: standing_tx,
            changing: changing_tx,
            tasks: tasks.clone(),
            stop,
        };
        membership.resume().await?;
        tasks.spawn(membership.run(jobs, events));
        Ok(Agent {
            jobs: jobs_tx,
            standing,
            changing,
            latency,
        })
    }

    /// Answers a request of the local CLI.
    pub async fn handle_local(&self, request: LocalRequest) -> Result<LocalAnswer, AgentError> {
        let done = |message: String| {
            LocalAnswer::Cluster(shoal_control::api::ApiResponse::Done { message })
        };
        match request {
            LocalRequest::Init {
                advertise_addr,
                listen_port,
                force_new_cluster,
                autolock,
                cert_expiry_secs,
            } => {
                let job = |reply| {
                    if force_new_cluster {
                        Job::ForceNewCluster { reply }
                    } else {
                        Job::Init {
                            advertise_addr,
                            listen_port,
                            cert_expiry_secs: cert_expiry_secs.unwrap_or(DEFAULT_CERT_EXPIRY_SECS),
                            autolock,
                            reply,
                        }
                    }
                };
                self.run(job).await.map(done)
            }
            LocalRequest::Join {
                token,
                manager,
                advertise_addr,
                listen_port,
            } => self
                .run(|reply| Job::Join {
                    token,
                    manager,
                    advertise_addr,
                    listen_port,
                    reply,
                })
                .await
                .map(done),
            LocalRequest::Leave { force } => self
                .run(|reply| Job::Leave { force, reply })
                .await
                .map(done),
            LocalRequest::Unlock { key } => {
                self.run(|reply| Job::Unlock { key, reply }).await.map(done)
            }
            LocalRequest::Api(mut request) => {
                self.settled().await?;
                let core = self.manager()?;
                let images = self.plane().ok().and_then(|p| p.images());
                pin::pin_image(images.as_deref(), &mut request).await;
                Ok(LocalAnswer::Cluster(
                    core.handle(&Caller::Local, request).await?,
                ))
            }
            LocalRequest::Members => Ok(LocalAnswer::Members(Box::new(
                self.plane()?.report().await?,
            ))),
            LocalRequest::EndpointCreate {
                id,
                network,
                ip,
                service,
                publish,
            } => {
                let plane = self.plane()?;
                plane
                    .endpoint_create(&id, &network, ip, &service, &publish)
                    .await?;
                Ok(done(id))
            }
            LocalRequest::EndpointRemove { id } => {
                self.plane()?.endpoint_remove(&id).await?;
                Ok(done(id))
            }
            LocalRequest::EndpointList => Ok(LocalAnswer::Endpoints {
                endpoints: self.plane()?.endpoint_list().await?,
            }),
        }
    }

    /// Hands a membership change to the membership task and waits for it.
    async fn run(&self, job: impl FnOnce(Reply) -> Job) -> Result<String, AgentError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| AgentError::ShuttingDown)?;
        answer.await.map_err(|_| AgentError::ShuttingDown)?
    }

    /// Waits, a bounded time, for a membership change in progress to end,
    /// so a request made during a promotion or a join is answered by what
    /// the node becomes.
    async fn settled(&self) -> Result<(), AgentError> {
        let mut changing = self.changing.clone();
        let settled = tokio::time::timeout(SETTLE_WAIT, changing.wait_for(|c| !*c))
            .await
            .map(|r| r.is_ok());
        match settled {
            Ok(true) => Ok(()),
            Ok(false) => Err(AgentError::ShuttingDown),
            Err(_) => Err(AgentError::Changing),
        }
    }

    fn manager(&self) -> Result<Arc<Core>, AgentError> {
        match &*self.standing.borrow() {
            Standing::Outside => Err(AgentError::NotInSwarm),
            Standing::Locked => Err(super::at_rest::SecretError::Locked.into()),
            Standing::Member { manager: None, .. } => Err(AgentError::NotAManager),
            Standing::Member {
                manager: Some(core),
                ..
            } => Ok(core.clone()),
        }
    }

    /// What this node is now.
    pub fn standing(&self) -> Standing {
        self.standing.borrow().clone()
    }

    /// The node's image store (`shoal image ...`): there once the node is
    /// in a swarm and runs containers.
    pub fn images(&self) -> Option<Arc<crate::image::ImageStore>> {
        self.plane().ok().and_then(|p| p.images())
    }

    /// The node's container runtime (`shoal volume ...`), likewise.
    pub fn containers(&self) -> Option<Arc<crate::executor::ContainerRuntime>> {
        self.plane().ok().and_then(|p| p.containers())
    }

    fn plane(&self) -> Result<Arc<Plane>, AgentError> {
        match &*self.standing.borrow() {
            Standing::Outside | Standing::Locked => Err(AgentError::NotInSwarm),
            Standing::Member { plane, .. } => plane.clone().map_err(AgentError::NoPlane),
        }
    }

    /// The metrics page: the data plane's report, or a comment saying why
    /// there is none.
    pub async fn metrics(&self) -> String {
        let report = match self.plane() {
            Ok(plane) => plane.report().await.map_err(AgentError::from),
            Err(e) => Err(e),
        };
        let mut out = match report {
            Ok(report) => report.prometheus(),
            Err(e) => format!("# {}\n", e.chain()),
        };
        out.push_str(&self.latency.prometheus());
        if let Standing::Member {
            manager: Some(core),
            ..
        } = &*self.standing.borrow()
        {
            out.push_str(&raft_prometheus(&core.store().metrics()));
        }
        out
    }
}

impl Membership {
    /// Rejoins the swarm recorded in the state dir, if any.
    async fn resume(&mut self) -> anyhow::Result<()> {
        let Some(identity) = self.state.load_identity()? else {
            return Ok(());
        };
        if self.state.is_locked() {
            tracing::warn!(
                "this manager is autolocked: it serves nothing until `shoal swarm unlock`"
            );
            self.locked = Some(identity);
            self.publish();
            return Ok(());
        }
        let certs = self.state.load_certs(None)?;
        self.become_member(identity, certs, None, None).await?;
        Ok(())
    }

    /// Runs jobs and session events in turn until `stop`; then stops the
    /// member's parts (a restart keeps the swarm).
    async fn run(
        mut self,
        mut jobs: mpsc::Receiver<Job>,
        mut events: mpsc::Receiver<SessionEvent>,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                Some(job) = jobs.recv() => self.job(job).await,
                Some(event) = events.recv() => self.event(event).await,
            }
        }
        self.standing.send_replace(Standing::Outside);
        if let Some(member) = self.member.take() {
            member.stop_for_restart(self.restart_window).await;
        }
    }

    async fn job(&mut self, job: Job) {
        self.changing.send_replace(true);
        let (result, reply) = match job {
            Job::Init {
                advertise_addr,
                listen_port,
                cert_expiry_secs,
                autolock,
                reply,
            } => (
                self.init(&advertise_addr, listen_port, cert_expiry_secs, autolock)
                    .await,
                reply,
            ),
            Job::ForceNewCluster { reply } => (self.force_new_cluster().await, reply),
            Job::Join {
                token,
                manager,
                advertise_addr,
                listen_port,
                reply,
            } => (
                self.join(&token, &manager, advertise_addr, listen_port)
                    .await,
                reply,
            ),
            Job::Leave { force, reply } => (self.leave(force).await, reply),
            Job::Unlock { key, reply } => (self.unlock(&key).await, reply),
        };
        self.changing.send_replace(false);
        // The CLI may have given up waiting; the change stands anyway.
        let _ = reply.send(result);
    }

    /// Applies what the heartbeat session or a timer learned.
    async fn event(&mut self, event: SessionEvent) {
        let changes_standing =
            matches!(event, SessionEvent::RoleChanged(_) | SessionEvent::Removed);
        self.changing.send_replace(changes_standing);
        let result = match event {
            SessionEvent::ManagersChanged(managers) => self.set_managers(managers),
            SessionEvent::RoleChanged(role) => self.change_role(role).await,
            SessionEvent::RenewDue => self.renew().await,
            SessionEvent::AutolockChanged(key) => self.rekey(key),
            SessionEvent::Removed => {
                tracing::warn!("this node was removed from the swarm; leaving");
                self.leave(true)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            }
        };
        self.changing.send_replace(false);
        if let Err(e) = result {
            tracing::warn!("reconfiguring after a session event failed: {e:#}");
        }
    }

    /// Tells the request paths what this node is now.
    fn publish(&self) {
        let standing = match (&self.member, &self.locked) {
            (Some(m), _) => Standing::Member {
                manager: m.manager.as_ref().map(|r| r.core.clone()),
                plane: m.plane.clone(),
            },
            (None, Some(_)) => Standing::Locked,
            (None, None) => Standing::Outside,
        };
        self.standing.send_replace(standing);
    }

    /// The new managers list, in memory and in the state dir.
    fn set_managers(&mut self, managers: Vec<String>) -> anyhow::Result<()> {
        if let Some(member) = &self.member {
            member.update_identity(&self.state, |id| id.managers = managers)?;
        }
        Ok(())
    }
}
