//! One network's DNS server: UDP and TCP sockets bound inside the network's
//! namespace, answering from the latest table and forwarding the rest.

use shoal_control::error_chain::ErrorChain;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::forward::Upstreams;
use super::table::DnsTable;
use super::wire::{handle, servfail, Outcome, Transport};
use super::DnsError;
use crate::netns;

/// How long a forward may take, all upstreams included, before the client
/// gets SERVFAIL: well within a stub resolver's own 5 s timeout.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwards in flight at once; past this a query gets SERVFAIL at once
/// rather than queueing behind a slow upstream.
pub const MAX_FORWARDS: usize = 256;
/// TCP connections served at once; more are closed as soon as accepted.
pub const MAX_TCP_CONNECTIONS: usize = 128;
/// A TCP connection idle (or stalled mid-message) this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What a [`DnsServer`] serves and where.
#[derive(Clone, Debug)]
pub struct DnsServerConfig {
    /// The network whose records are answered.
    pub network: String,
    /// The namespace file to bind in (e.g. `/run/shoal/netns/ov-<id>`);
    /// `None` binds in the caller's namespace.
    pub netns: Option<PathBuf>,
    /// Where to listen, UDP and TCP; port 0 picks one (the same for both).
    /// The address must already be on an interface of the namespace.
    pub listen: SocketAddrV4,
    /// Where other questions go, tried in order.
    pub upstreams: Vec<SocketAddr>,
    pub forward_timeout: Duration,
    pub max_forwards: usize,
}

impl DnsServerConfig {
    /// A config with the default timeout and bounds.
    pub fn new(
        network: impl Into<String>,
        netns: Option<PathBuf>,
        listen: SocketAddrV4,
        upstreams: Vec<SocketAddr>,
    ) -> Self {
        DnsServerConfig {
            network: network.into(),
            netns,
            listen,
            upstreams,
            forward_timeout: FORWARD_TIMEOUT,
            max_forwards: MAX_FORWARDS,
        }
    }
}

/// A running server. [`DnsServer::stop`] closes it and waits; dropping it
/// closes it too, without waiting.
pub struct DnsServer {
    local_addr: SocketAddrV4,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// What the UDP and TCP sides share.
struct Shared {
    network: String,
    table: watch::Receiver<Arc<DnsTable>>,
    upstreams: Upstreams,
    forwards: Arc<Semaphore>,
}

impl Shared {
    fn handle(&self, query: &[u8], transport: Transport) -> Outcome {
        let table = Arc::clone(&self.table.borrow());
        handle(&table, &self.network, query, transport)
    }
}

impl DnsServer {
    /// Binds the sockets inside `config.netns` and starts serving
    /// `config.network` from the latest table in `table`. Must be called
    /// inside a tokio runtime; the server's tasks run on it.
    pub async fn start(
        config: DnsServerConfig,
        table: watch::Receiver<Arc<DnsTable>>,
    ) -> Result<Self, DnsError> {
        let ns = config.netns.clone();
        let listen = config.listen;
        // `setns` happens on a thread of its own (inside `run_in`); a socket
        // keeps the namespace it was created in, so tokio can use it anywhere.
        let (udp, tcp) = tokio::task::spawn_blocking(move || {
            netns::run_in(ns.as_deref(), || bind(listen, ns.clone()))
        })
        .await
        .map_err(|_| DnsError::SetupPanicked)???;
        let udp = Arc::new(
            UdpSocket::from_std(udp)
                .map_err(|source| bind_error("udp", listen, &config, source))?,
        );
        let tcp = TcpListener::from_std(tcp)
            .map_err(|source| bind_error("tcp", listen, &config, source))?;
        let local_addr = match udp.local_addr() {
            Ok(SocketAddr::V4(addr)) => addr,
            Ok(SocketAddr::V6(_)) => listen,
            Err(source) => return Err(bind_error("udp", listen, &config, source)),
        };

        let shared = Arc::new(Shared {
            network: config.network.clone(),
            table,
            upstreams: Upstreams::new(config.upstreams.clone(), config.forward_timeout),
            forwards: Arc::new(Semaphore::new(config.max_forwards)),
        });
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, Arc::clone(&shared), cancel.clone()));
        tasks.spawn(serve_tcp(tcp, shared, cancel.clone()));
        tracing::info!(network = %config.network, addr = %local_addr, "DNS server started");
        Ok(DnsServer {
            local_addr,
            cancel,
            tasks,
        })
    }

    /// The address served, with the port picked when the config said 0.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    /// Stops serving and waits until the sockets are closed and every
    /// forward in flight is abandoned.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.tasks.abort_all();
    }
}

fn bind_error(
    proto: &'static str,
    addr: SocketAddrV4,
    config: &DnsServerConfig,
    source: std::io::Error,
) -> DnsError {
    DnsError::Bind {
        proto,
        addr,
        netns: config.netns.clone(),
        source,
    }
}

/// Binds UDP then TCP on the same port (when `listen` has port 0, the one
/// the kernel gave UDP, retried if TCP finds it taken). Runs in the
/// namespace.
fn bind(
    listen: SocketAddrV4,
    netns: Option<PathBuf>,
) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let error = |proto, source| DnsError::Bind {
        proto,
        addr: listen,
        netns: netns.clone(),
        source,
    };
    let mut attempts = if listen.port() == 0 { 8 } else { 1 };
    loop {
        let udp = std::net::UdpSocket::bind(listen).map_err(|e| error("udp", e))?;
        let port = udp.local_addr().map_err(|e| error("udp", e))?.port();
        match std::net::TcpListener::bind(SocketAddrV4::new(*listen.ip(), port)) {
            Ok(tcp) => {
                udp.set_nonblocking(true).map_err(|e| error("udp", e))?;
                tcp.set_nonblocking(true).map_err(|e| error("tcp", e))?;
                return Ok((udp, tcp));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => attempts -= 1,
            Err(e) => return Err(error("tcp", e)),
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    let mut forwards = JoinSet::new();
    loop {
        let (n, client) = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    // E.g. an ICMP error for an earlier reply; never fatal,
                    // but do not spin if it repeats.
                    tracing::debug!("DNS UDP receive: {}", e.chain());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let query = &buf[..n];
        match shared.handle(query, Transport::Udp) {
            Outcome::Reply(reply) => send(&socket, &reply, client).await,
            Outcome::Drop => tracing::trace!(%client, "DNS: dropped a datagram"),
            Outcome::Forward => match Arc::clone(&shared.forwards).try_acquire_owned() {
                Ok(permit) => {
                    let query = query.to_vec();
                    let (socket, shared) = (Arc::clone(&socket), Arc::clone(&shared));
                    forwards.spawn(async move {
                        let reply = match shared.upstreams.udp(&query).await {
                            Some(reply) => Some(reply),
                            None => servfail(&query, Transport::Udp),
                        };
                        drop(permit);
                        if let Some(reply) = reply {
                            send(&socket, &reply, client).await;
                        }
                    });
                }
                Err(_) => {
                    tracing::debug!("DNS: too many forwards in flight, SERVFAIL");
                    if let Some(reply) = servfail(query, Transport::Udp) {
                        send(&socket, &reply, client).await;
                    }
                }
            },
        }
    }
    forwards.shutdown().await;
}

async fn send(socket: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(e) = socket.send_to(reply, client).await {
        tracing::debug!(%client, "DNS UDP send: {}", e.chain());
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() < MAX_TCP_CONNECTIONS => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Ok((_, client)) => tracing::debug!(%client, "DNS: too many TCP connections, closed"),
                Err(e) => {
                    // Out of file descriptors, most likely: back off a little.
                    tracing::debug!("DNS TCP accept: {}", e.chain());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Serves length-prefixed queries one after another until the client closes,
/// idles, or sends something that does not decode.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let Ok(Ok(len)) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        let Ok(Ok(_)) = timeout(TCP_IDLE, stream.read_exact(&mut query)).await else {
            return;
        };
        let reply = match shared.handle(&query, Transport::Tcp) {
            Outcome::Reply(reply) => Some(reply),
            Outcome::Drop => return,
            Outcome::Forward => match Arc::clone(&shared.forwards).try_acquire_owned() {
                Ok(_permit) => match shared.upstreams.tcp(&query).await {
                    Some(reply) => Some(reply),
                    None => servfail(&query, Transport::Tcp),
                },
                Err(_) => servfail(&query, Transport::Tcp),
            },
        };
        let Some(reply) = reply else { return };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if !matches!(
            timeout(TCP_IDLE, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
