//! Gossip on a real network: one task per agent owns the membership driver,
//! the endpoint-table replica and the codec, and carries out what they ask
//! over UDP (SWIM datagrams) and TCP (member lists and table sync) on port
//! 7946. Everything else talks to it through [`Gossip`].
//!
//! Keys and peers come from the managers ([`GossipConfig`], via the
//! heartbeat): nothing is sent or accepted before the first key arrives, a
//! new key set is taken without a restart, and the node joins through the
//! peers it is given whenever it knows no live member.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_control::api::GossipConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::app::{AppNode, AppOutput};
use super::codec::{Channel, Codec, DecodeStats, Keyring, Message, SecretKey, MAX_DATAGRAM};
use super::membership::{
    Effect, MemberId, MemberState, MemberView, Membership, MembershipConfig, MembershipStats,
    MembershipTimer,
};
use super::replica::{LagStats, TableNode};
use super::table::{EndpointRecord, NetworkId, NodeId, Notary, RefusedRecords, TableSize};
use super::transport::{self, MAX_REQUEST_BYTES, MAX_REQUEST_FRAMES};
use crate::admission::{Admission, AdmissionStats, Limits};

/// Gossip streams held at once, overall and per peer address: a peer has
/// at most a few exchanges open with a node (member lists, table syncs).
pub const STREAM_LIMITS: Limits = Limits {
    total: 256,
    per_peer: 8,
};

/// How often membership and the tables get their periodic turn.
const TICK: Duration = Duration::from_secs(1);
/// How often each node runs table anti-entropy with a random live member.
pub const TABLE_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// A `Message::Membership` adds a variant tag and a length to foca's packet.
const MEMBERSHIP_FRAMING: usize = 4;

/// How one node gossips.
#[derive(Clone, Debug)]
pub struct GossipOptions {
    /// The swarm node id; it names the member and owns its entries.
    pub node_id: String,
    /// The address other nodes reach this one on (the advertise address);
    /// gossip binds to it, not to every address of the host.
    pub advertise: Ipv4Addr,
    pub port: u16,
    pub membership: MembershipConfig,
    pub table_sync_interval: Duration,
}

impl GossipOptions {
    pub fn new(node_id: &str, advertise: Ipv4Addr, port: u16) -> Self {
        let mut membership = MembershipConfig::lan();
        let max = super::codec::MAX_DATAGRAM_PAYLOAD - MEMBERSHIP_FRAMING;
        membership.max_packet_size = std::num::NonZeroUsize::new(max)
            .unwrap_or(membership.max_packet_size)
            .min(membership.max_packet_size);
        GossipOptions {
            node_id: node_id.to_string(),
            advertise,
            port,
            membership,
            table_sync_interval: TABLE_SYNC_INTERVAL,
        }
    }
}

/// An endpoint this node owns, as it is persisted and re-published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    pub network: String,
    pub record: EndpointRecord,
}

/// One member as `shoal members` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLine {
    #[serde(flatten)]
    pub view: MemberView,
    /// Live entries this member owns in the local tables, per network.
    pub endpoints: BTreeMap<String, usize>,
    /// Milliseconds since this node last saw the member change state.
    pub since_ms: u64,
}

/// Counters of the transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportStats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// Datagrams not sent: no key yet, or the socket refused them.
    pub datagrams_unsent: u64,
    pub streams_opened: u64,
    pub streams_accepted: u64,
    pub stream_failures: u64,
    /// Connections closed at once: over [`STREAM_LIMITS`].
    pub streams_refused: u64,
    /// Streams whose first frame was not an authentic hello.
    pub hellos_refused: u64,
}

/// Member transitions this node observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionStats {
    pub up: u64,
    pub suspect: u64,
    pub down: u64,
}

/// The local gossip view: `shoal members` and the metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipStatus {
    pub node: String,
    pub addr: SocketAddr,
    /// Key ids held, and the one messages are sealed with (none before the
    /// managers handed out a key).
    pub keys: Vec<u32>,
    pub primary_key: Option<u32>,
    pub members: Vec<MemberLine>,
    /// Live entries and tombstones per network in the local replica.
    pub networks: BTreeMap<String, TableSize>,
    /// Owner's write to arrival here.
    pub convergence_lag: LagStats,
    pub decode: DecodeStats,
    /// Records refused for their owner's signature.
    #[serde(default)]
    pub records_refused: RefusedRecords,
    pub membership: MembershipStats,
    pub transport: TransportStats,
    pub transitions: TransitionStats,
}

enum Request {
    Publish {
        network: String,
        record: EndpointRecord,
    },
    Withdraw {
        network: String,
        task_id: String,
        done: oneshot::Sender<bool>,
    },
    Status(oneshot::Sender<GossipStatus>),
    /// A renewed certificate (PEM) and key: sign with them from now on.
    Rekey {
        cert_pem: String,
        key_pem: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    Live(oneshot::Sender<BTreeMap<String, Vec<EndpointRecord>>>),
    Entries(oneshot::Sender<Vec<Entry>>),
}

/// A live entry of the local tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The node that published it.
    pub owner: NodeId,
    pub network: NetworkId,
    pub record: EndpointRecord,
    /// Whether its owner is alive (so it is programmed).
    pub live: bool,
}

enum Inbound {
    /// The first frame of an accepted stream, to authenticate before the
    /// rest is read.
    Hello {
        from: SocketAddr,
        frame: Vec<u8>,
        verdict: oneshot::Sender<bool>,
    },
    Stream {
        from: SocketAddr,
        frames: Vec<Vec<u8>>,
        reply: Option<oneshot::Sender<Vec<Vec<u8>>>>,
    },
    StreamFailed {
        to: SocketAddr,
        error: String,
    },
}

/// The handle on a running gossip node.
pub struct Gossip {
    requests: mpsc::Sender<Request>,
    changes: watch::Receiver<u64>,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Gossip {
    /// Binds UDP and TCP `port`, re-publishes `local` (what this node still
    /// runs) and starts gossiping as soon as `config` holds a key.
    pub async fn start(
        opts: GossipOptions,
        notary: Box<dyn Notary>,
        config: watch::Receiver<Option<GossipConfig>>,
        local: Vec<LocalEndpoint>,
    ) -> anyhow::Result<Gossip> {
        let bind = SocketAddr::new(IpAddr::V4(opts.advertise), opts.port);
        let udp = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("cannot bind gossip UDP port {bind}"))?;
        let tcp = TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot bind gossip TCP port {bind}"))?;
        let (requests, requests_rx) = mpsc::channel(64);
        let (changes_tx, changes) = watch::channel(0);
        let (inbound_tx, inbound_rx) = mpsc::channel(256);
        let stop = CancellationToken::new();
        let mut node = Node::new(opts, notary, Arc::new(udp), inbound_tx.clone(), changes_tx);
        for endpoint in local {
            let outputs = node
                .tables
                .publish(&endpoint.network, endpoint.record, node.now());
            node.queue_outputs(outputs);
        }
        let outputs = node.tables.settle(node.now());
        node.queue_outputs(outputs);
        let task = tokio::spawn(node.run(
            config,
            requests_rx,
            inbound_rx,
            tcp,
            inbound_tx,
            stop.clone(),
        ));
        Ok(Gossip {
            requests,
            changes,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Publishes (or replaces) an endpoint this node owns.
    pub async fn publish(&self, network: &str, record: EndpointRecord) -> anyhow::Result<()> {
        self.send(Request::Publish {
            network: network.to_string(),
            record,
        })
        .await
    }

    /// Withdraws an endpoint this node owns; false if it held none.
    pub async fn withdraw(&self, network: &str, task_id: &str) -> anyhow::Result<bool> {
        let (done, rx) = oneshot::channel();
        self.send(Request::Withdraw {
            network: network.to_string(),
            task_id: task_id.to_string(),
            done,
        })
        .await?;
        Ok(rx.await?)
    }

    /// Signs this node's records with a renewed certificate and key, and
    /// gossips them signed again.
    pub async fn rekey(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        let (done, rx) = oneshot::channel();
        self.send(Request::Rekey {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            done,
        })
        .await?;
        rx.await?
            .map_err(|e| anyhow::anyhow!("gossip cannot sign with the new key: {e}"))
    }

    pub async fn status(&self) -> anyhow::Result<GossipStatus> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Status(tx)).await?;
        Ok(rx.await?)
    }

    /// The entries to program, per network: live, owned by a live member.
    pub async fn live(&self) -> anyhow::Result<BTreeMap<String, Vec<EndpointRecord>>> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Live(tx)).await?;
        Ok(rx.await?)
    }

    /// Every live (not withdrawn) entry of the local tables.
    pub async fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Entries(tx)).await?;
        Ok(rx.await?)
    }

    /// Changes whenever [`Gossip::live`] may answer differently.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Tells a few members this node leaves, then stops. Idempotent.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    async fn send(&self, request: Request) -> anyhow::Result<()> {
        self.requests
            .send(request)
            .await
            .map_err(|_| anyhow::anyhow!("gossip has stopped"))
    }
}

/// Work the loop carries out in order, so that effects of effects queue up
/// instead of recursing.
enum Work {
    Effect(Effect),
    Output(AppOutput),
}

struct Node {
    opts: GossipOptions,
    started: Instant,
    base_ms: u64,
    membership: Membership,
    tables: TableNode,
    codec: Option<Codec>,
    udp: Arc<UdpSocket>,
    timers: BTreeMap<(Duration, u64), MembershipTimer>,
    timer_seq: u64,
    inbound: mpsc::Sender<Inbound>,
    changes: watch::Sender<u64>,
    work: VecDeque<Work>,
    /// While answering a stream: who asked, and the frames of the answer.
    answering: Option<(SocketAddr, Vec<Vec<u8>>)>,
    peers: Vec<SocketAddr>,
    since: BTreeMap<String, Instant>,
    transport: TransportStats,
    transitions: TransitionStats,
    admission: Arc<AdmissionStats>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Node {
    fn new(
        opts: GossipOptions,
        notary: Box<dyn Notary>,
        udp: Arc<UdpSocket>,
        inbound: mpsc::Sender<Inbound>,
        changes: watch::Sender<u64>,
    ) -> Node {
        let base_ms = unix_ms();
        let addr = SocketAddr::new(IpAddr::V4(opts.advertise), opts.port);
        // A restart must come back with a higher identity bump: the wall clock.
        let identity = MemberId::new(opts.node_id.as_str(), addr, base_ms);
        let seed = rand::random();
        let membership = Membership::new(identity, opts.membership.clone(), seed);
        let tables = TableNode::starting(
            &opts.node_id,
            base_ms,
            Duration::ZERO,
            seed,
            opts.table_sync_interval,
        )
        .with_notary(notary);
        Node {
            opts,
            started: Instant::now(),
            base_ms,
            membership,
            tables,
            codec: None,
            udp,
            timers: BTreeMap::new(),
            timer_seq: 0,
            inbound,
            changes,
            work: VecDeque::new(),
            answering: None,
            peers: Vec::new(),
            since: BTreeMap::new(),
            transport: TransportStats::default(),
            transitions: TransitionStats::default(),
            admission: Arc::default(),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    async fn run(
        mut self,
        mut config: watch::Receiver<Option<GossipConfig>>,
        mut requests: mpsc::Receiver<Request>,
        mut inbound: mpsc::Receiver<Inbound>,
        tcp: TcpListener,
        inbound_tx: mpsc::Sender<Inbound>,
        stop: CancellationToken,
    ) {
        let admission = Admission::new(STREAM_LIMITS);
        self.admission = admission.stats();
        let acceptor = tokio::spawn(accept(admission, tcp, inbound_tx, self.opts.port));
        let udp = self.udp.clone();
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let initial = config.borrow_and_update().clone();
        if let Some(initial) = initial {
            self.configure(&initial);
        }
        self.drain();
        loop {
            let next_timer = self.timers.keys().next().map(|(at, _)| self.started + *at);
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = config.borrow_and_update().clone();
                    if let Some(current) = current {
                        self.configure(&current);
                    }
                }
                Some(request) = requests.recv() => self.request(request),
                Some(message) = inbound.recv() => self.inbound(message),
                received = udp.recv_from(&mut buf) => {
                    if let Ok((len, from)) = received {
                        self.datagram(from, &buf[..len]);
                    }
                }
                _ = sleep_until(next_timer) => self.fire_timers(),
                _ = tick.tick() => self.tick(),
            }
            self.drain();
        }
        let now = self.now();
        let effects = self.membership.leave(now);
        self.queue_effects(effects);
        self.drain();
        acceptor.abort();
    }

    /// Takes the managers' key set and peers.
    fn configure(&mut self, config: &GossipConfig) {
        let mut keys = Vec::new();
        for key in &config.keys {
            match hex_key(&key.key) {
                Some(secret) => keys.push((key.id, secret)),
                None => tracing::warn!("gossip key {} from the managers is malformed", key.id),
            }
        }
        if let Some((_, primary)) = keys.iter().find(|(id, _)| *id == config.primary) {
            let (node_id, epoch) = (&self.opts.node_id, self.base_ms);
            let codec = self.codec.get_or_insert_with(|| {
                Codec::new(
                    node_id,
                    Keyring::new(config.primary, primary.clone()),
                    epoch,
                )
            });
            let ring = codec.keyring_mut();
            for (id, secret) in &keys {
                ring.insert(*id, secret.clone());
            }
            if ring.primary() != config.primary {
                tracing::info!("gossip now seals with key {}", config.primary);
            }
            let _ = ring.set_primary(config.primary);
            for id in ring.ids() {
                if !keys.iter().any(|(k, _)| *k == id) {
                    let _ = ring.remove(id);
                }
            }
        }
        self.refuse(&config.refused);
        let own = self.membership.identity().addr();
        let peers: Vec<SocketAddr> = config
            .peers
            .iter()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p != own)
            .collect();
        let fresh = peers != self.peers;
        self.peers = peers;
        if self.codec.is_some()
            && !self.peers.is_empty()
            && self.membership.active_members() == 0
            && fresh
        {
            let now = self.now();
            let effects = self.membership.join(&self.peers, now);
            self.queue_effects(effects);
        }
    }

    /// Refuses the frames and records of the nodes the managers list as
    /// removed, at once: the keys they held are phased out only later.
    fn refuse(&mut self, refused: &[String]) {
        let owners: std::collections::BTreeSet<String> = refused
            .iter()
            .filter(|id| **id != self.opts.node_id)
            .cloned()
            .collect();
        if let Some(codec) = &mut self.codec {
            codec.refuse_senders(owners.iter().map(String::as_str));
        }
        let dropped = self.tables.refuse_owners(&owners);
        if dropped > 0 {
            tracing::info!("gossip: dropped {dropped} entries of nodes removed from the swarm");
        }
    }

    fn request(&mut self, request: Request) {
        let now = self.now();
        match request {
            Request::Publish { network, record } => {
                let outputs = self.tables.publish(&network, record, now);
                self.queue_outputs(outputs);
            }
            Request::Withdraw {
                network,
                task_id,
                done,
            } => {
                let outputs = self.tables.withdraw(&network, &task_id, now);
                let _ = done.send(!outputs.is_empty());
                self.queue_outputs(outputs);
            }
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::Rekey {
                cert_pem,
                key_pem,
                done,
            } => {
                let result = self.tables.rekey(&cert_pem, &key_pem, now);
                let _ = done.send(match result {
                    Ok(outputs) => {
                        self.queue_outputs(outputs);
                        Ok(())
                    }
                    Err(e) => Err(e),
                });
            }
            Request::Live(reply) => {
                let live = self
                    .tables
                    .tables()
                    .networks()
                    .map(|network| {
                        let records = self
                            .tables
                            .live(network)
                            .into_iter()
                            .map(|e| e.record.clone())
                            .collect();
                        (network.clone(), records)
                    })
                    .collect();
                let _ = reply.send(live);
            }
            Request::Entries(reply) => {
                let entries = self
                    .tables
                    .tables()
                    .iter()
                    .filter_map(|d| {
                        Some(Entry {
                            owner: d.owner.clone(),
                            network: d.network.clone(),
                            record: d.change.record()?.clone(),
                            live: self.tables.is_alive(&d.owner),
                        })
                    })
                    .collect();
                let _ = reply.send(entries);
            }
        }
    }

    fn datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.transport.datagrams_received += 1;
        let Some(codec) = &mut self.codec else {
            return;
        };
        match codec.open(Channel::Datagram, bytes, unix_ms()) {
            Ok(received) => match received.message {
                Message::Membership(packet) => {
                    let now = self.now();
                    let effects = self.membership.handle_packet(from, &packet, now);
                    self.queue_effects(effects);
                }
                other => tracing::debug!("unexpected {} datagram from {from}", kind(&other)),
            },
            Err(rejected) => tracing::debug!("gossip datagram from {from} dropped: {rejected}"),
        }
    }

    fn inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Hello {
                from,
                frame,
                verdict,
            } => {
                let authentic = self.hello(from, &frame);
                if !authentic {
                    self.transport.hellos_refused += 1;
                }
                let _ = verdict.send(authentic);
            }
            Inbound::StreamFailed { to, error } => {
                self.transport.stream_failures += 1;
                tracing::debug!("gossip stream to {to} failed: {error}");
            }
            Inbound::Stream {
                from,
                frames,
                reply,
            } => {
                if reply.is_some() {
                    self.answering = Some((from, Vec::new()));
                }
                for frame in frames {
                    self.stream_frame(from, &frame);
                    self.drain();
                }
                let answer = self
                    .answering
                    .take()
                    .map(|(_, frames)| frames)
                    .unwrap_or_default();
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Whether the first frame of a stream is an authentic hello.
    fn hello(&mut self, from: SocketAddr, frame: &[u8]) -> bool {
        let Some(codec) = &mut self.codec else {
            return false;
        };
        match codec.open(Channel::Stream, frame, unix_ms()) {
            Ok(received) if received.message == Message::Hello => true,
            Ok(other) => {
                tracing::debug!(
                    "gossip stream from {from} starts with a {}",
                    kind(&other.message)
                );
                false
            }
            Err(rejected) => {
                tracing::debug!("gossip stream from {from} refused: {rejected}");
                false
            }
        }
    }

    fn stream_frame(&mut self, from: SocketAddr, frame: &[u8]) {
        let Some(codec) = &mut self.codec else {
            return;
        };
        let message = match codec.open(Channel::Stream, frame, unix_ms()) {
            Ok(received) => received.message,
            Err(rejected) => {
                tracing::debug!("gossip stream frame from {from} dropped: {rejected}");
                return;
            }
        };
        let now = self.now();
        match message {
            Message::MemberList(list) => {
                let effects = self.membership.handle_sync(from, &list, now);
                self.queue_effects(effects);
            }
            message @ (Message::SyncRequest { .. }
            | Message::SyncPage { .. }
            | Message::Certificates(_)) => {
                if let Ok(bytes) = message.encode() {
                    let outputs = self.tables.on_stream(from, &bytes, now);
                    self.queue_outputs(outputs);
                }
            }
            other => tracing::debug!("unexpected {} stream frame from {from}", kind(&other)),
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            let effects = self.membership.handle_timer(timer, now);
            self.queue_effects(effects);
            self.drain();
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        let effects = self.membership.tick(now);
        self.queue_effects(effects);
        let outputs = self.tables.on_tick(now);
        self.queue_outputs(outputs);
        if let Some(codec) = &mut self.codec {
            codec.forget_idle_senders(unix_ms());
        }
    }

    fn queue_effects(&mut self, effects: Vec<Effect>) {
        self.work.extend(effects.into_iter().map(Work::Effect));
    }

    fn queue_outputs(&mut self, outputs: Vec<AppOutput>) {
        self.work.extend(outputs.into_iter().map(Work::Output));
    }

    /// Carries out queued work until none is left, then tells watchers if
    /// the programmable entries may have changed.
    fn drain(&mut self) {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Effect(effect) => self.effect(effect),
                Work::Output(output) => self.output(output),
            }
        }
        let generation = self.tables.generation();
        self.changes.send_if_modified(|current| {
            let changed = *current != generation;
            *current = generation;
            changed
        });
    }

    fn effect(&mut self, effect: Effect) {
        let now = self.now();
        match effect {
            Effect::Send { to, bytes } => self.send_datagram(to, bytes),
            // A request and an answer travel alike: an answer goes back on
            // the stream being answered (see `send_stream`).
            Effect::SyncRequest { to, bytes } | Effect::SyncReply { to, bytes } => {
                self.send_stream(to, &Message::MemberList(bytes.to_vec()));
            }
            Effect::ScheduleTimer { at, timer } => {
                self.timer_seq += 1;
                self.timers.insert((at, self.timer_seq), timer);
            }
            Effect::MemberUp { member } => {
                self.transitions.up += 1;
                self.mark(&member);
                tracing::info!("gossip: {} is alive at {}", member.node(), member.addr());
                let outputs = self.tables.on_member_up(&member, now);
                self.queue_outputs(outputs);
            }
            Effect::MemberSuspect { member } => {
                self.transitions.suspect += 1;
                self.mark(&member);
                tracing::info!("gossip: {} is suspect", member.node());
            }
            Effect::MemberDown { member } => {
                self.transitions.down += 1;
                self.mark(&member);
                tracing::warn!("gossip: {} is dead", member.node());
                let outputs = self.tables.on_member_down(&member, now);
                self.queue_outputs(outputs);
            }
            Effect::Broadcast { payload } => {
                let outputs = self.tables.on_broadcast(&payload, now);
                self.queue_outputs(outputs);
            }
            Effect::Renewed { identity } => tracing::warn!(
                "gossip: the cluster declared this node dead; rejoining as generation {}",
                identity.bump()
            ),
            Effect::Error(error) => tracing::debug!("gossip: {}", error.chain()),
        }
    }

    fn output(&mut self, output: AppOutput) {
        match output {
            AppOutput::Broadcast(payload) => {
                let now = self.now();
                match self.membership.broadcast(&payload, now) {
                    Ok(effects) => self.queue_effects(effects),
                    Err(error) => tracing::warn!("gossip: {}", error.chain()),
                }
            }
            AppOutput::Stream { to, bytes } => match Message::decode(&bytes) {
                Ok(message) => self.send_stream(to, &message),
                Err(error) => {
                    tracing::warn!("gossip: cannot re-read a table message: {}", error.chain())
                }
            },
        }
    }

    fn mark(&mut self, member: &MemberId) {
        self.since
            .insert(member.node().as_str().to_string(), Instant::now());
    }

    fn send_datagram(&mut self, to: SocketAddr, packet: Bytes) {
        let sealed = self.codec.as_mut().map(|codec| {
            codec.seal(
                Channel::Datagram,
                &Message::Membership(packet.to_vec()),
                unix_ms(),
            )
        });
        match sealed {
            Some(Ok(datagram)) => match self.udp.try_send_to(&datagram, to) {
                Ok(_) => self.transport.datagrams_sent += 1,
                Err(error) => {
                    self.transport.datagrams_unsent += 1;
                    tracing::debug!("gossip datagram to {to} not sent: {}", error.chain());
                }
            },
            Some(Err(error)) => {
                self.transport.datagrams_unsent += 1;
                tracing::warn!("gossip datagram to {to} not sealed: {}", error.chain());
            }
            None => self.transport.datagrams_unsent += 1,
        }
    }

    /// Sends `message` on the stream being answered if it goes to the asker,
    /// else on a new connection whose answer comes back as inbound frames.
    fn send_stream(&mut self, to: SocketAddr, message: &Message) {
        let Some(codec) = &mut self.codec else {
            return;
        };
        let answering = matches!(&self.answering, Some((asker, _)) if *asker == to);
        let now = unix_ms();
        let sealed = if answering {
            codec.seal_frame(message, now).map(|frame| vec![frame])
        } else {
            codec
                .seal_frame(&Message::Hello, now)
                .and_then(|hello| Ok(vec![hello, codec.seal_frame(message, now)?]))
        };
        let frames = match sealed {
            Ok(frames) => frames,
            Err(error) => {
                tracing::warn!("gossip: {} to {to} not sealed: {error}", kind(message));
                return;
            }
        };
        if let Some((_, answer)) = self.answering.as_mut().filter(|_| answering) {
            answer.extend(frames);
            return;
        }
        self.transport.streams_opened += 1;
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            let message = match transport::exchange(to, frames).await {
                Ok(frames) => Inbound::Stream {
                    from: to,
                    frames,
                    reply: None,
                },
                Err(error) => Inbound::StreamFailed {
                    to,
                    error: error.chain().to_string(),
                },
            };
            let _ = inbound.send(message).await;
        });
    }

    fn status(&self) -> GossipStatus {
        let mut owned: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for delta in self.tables.tables().iter().filter(|d| !d.is_tombstone()) {
            *owned
                .entry(delta.owner.to_string())
                .or_default()
                .entry(delta.network.to_string())
                .or_default() += 1;
        }
        let members = self
            .membership
            .members()
            .into_iter()
            .map(|view| {
                let node = view.node.as_str().to_string();
                let since_ms = self
                    .since
                    .get(&node)
                    .copied()
                    .unwrap_or(self.started)
                    .elapsed()
                    .as_millis();
                MemberLine {
                    endpoints: owned.remove(&node).unwrap_or_default(),
                    since_ms: u64::try_from(since_ms).unwrap_or(u64::MAX),
                    view,
                }
            })
            .collect();
        let (keys, primary_key, decode) = match &self.codec {
            Some(codec) => (
                codec.keyring().ids(),
                Some(codec.keyring().primary()),
                codec.stats(),
            ),
            None => (Vec::new(), None, DecodeStats::default()),
        };
        GossipStatus {
            node: self.opts.node_id.clone(),
            addr: self.membership.identity().addr(),
            keys,
            primary_key,
            members,
            networks: self
                .tables
                .tables()
                .sizes()
                .into_iter()
                .map(|(network, size)| (network.to_string(), size))
                .collect(),
            convergence_lag: self.tables.lag(),
            decode,
            records_refused: self.tables.tables().refused(),
            membership: self.membership.stats(),
            transport: TransportStats {
                streams_refused: self
                    .admission
                    .refused
                    .load(std::sync::atomic::Ordering::Relaxed),
                ..self.transport
            },
            transitions: self.transitions,
        }
    }
}

impl GossipStatus {
    /// Members this node sees in `state`.
    pub fn count(&self, state: MemberState) -> usize {
        self.members
            .iter()
            .filter(|m| m.view.state == state)
            .count()
    }
}

/// Accepts stream exchanges within [`STREAM_LIMITS`]: reads the hello
/// alone and has the loop authenticate it, then the request frames, hands
/// them to the loop, writes its answer back.
async fn accept(
    admission: Admission,
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    port: u16,
) {
    // Each stream ends within its read and answer timeouts.
    admission
        .serve(listener, TaskTracker::new(), move |stream, peer, permit| {
            let inbound = inbound.clone();
            async move {
                let _permit = permit;
                let mut stream = stream;
                let _ = stream.set_nodelay(true);
                // Members are known by their gossip port, not the ephemeral one.
                let from = SocketAddr::new(peer.ip(), port);
                let work = async {
                    let frame = transport::read_hello(&mut stream).await?;
                    let (verdict, authentic) = oneshot::channel();
                    let hello = Inbound::Hello {
                        from,
                        frame,
                        verdict,
                    };
                    if inbound.send(hello).await.is_err() || authentic.await != Ok(true) {
                        return Err(transport::StreamError::Unauthenticated);
                    }
                    let frames =
                        transport::read_frames(&mut stream, MAX_REQUEST_FRAMES, MAX_REQUEST_BYTES)
                            .await?;
                    let (reply, answer) = oneshot::channel();
                    let request = Inbound::Stream {
                        from,
                        frames,
                        reply: Some(reply),
                    };
                    if inbound.send(request).await.is_err() {
                        return Ok(());
                    }
                    if let Ok(frames) = answer.await {
                        transport::write_frames(&mut stream, &frames).await?;
                    }
                    Ok::<_, transport::StreamError>(())
                };
                match tokio::time::timeout(transport::EXCHANGE_TIMEOUT, work).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!("gossip stream from {peer}: {}", error.chain())
                    }
                    Err(_) => tracing::debug!("gossip stream from {peer} timed out"),
                }
            }
        })
        .await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn hex_key(text: &str) -> Option<SecretKey> {
    SecretKey::from_slice(&shoal_control::hex::decode(text)?).ok()
}

/// A message's kind, for logs (never its content).
fn kind(message: &Message) -> &'static str {
    match message {
        Message::Membership(_) => "membership",
        Message::Deltas(_) => "deltas",
        Message::Digest(_) => "digest",
        Message::SyncRequest { .. } => "sync request",
        Message::SyncPage { .. } => "sync page",
        Message::MemberList(_) => "member list",
        Message::Hello => "hello",
        Message::Certificates(_) => "certificates",
    }
}

#[cfg(test)]
mod tests;
