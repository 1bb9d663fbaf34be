//! The embedded DNS resolver tasks use to find services by name.
//!
//! Per overlay network it answers a service's name with its VIP on that
//! network (its task addresses for a `dnsrr` service), `tasks.NAME` with
//! every task address, reverse lookups of those addresses, and forwards
//! everything else to the host's nameservers. A name resolves only on a
//! network its service is attached to.
//!
//! - `table`: the records, plain data ([`DnsTable::from_entries`] builds
//!   them from task endpoints);
//! - `answer`: the rules, [`answer()`], a pure function of a table and a
//!   query;
//! - [`wire`]: bytes to bytes around it, with truncation for UDP;
//! - `server` and `forward`: [`DnsServer`], its sockets, the forwarding to
//!   upstream and their limits.
//!
//! It never decides what exists: the caller builds the table. It never
//! enters a namespace on a tokio thread, and never answers for a network
//! from another network's records.
//!
//! # How the agent is meant to wire it
//!
//! - One [`DnsServer`] per overlay network present on the host, bound in the
//!   network's namespace (`<run dir>/netns/ov-<network id>`, see
//!   [`crate::overlay::names::network_ns`]) on the network's gateway address,
//!   port 53: the gateway sits on the bridge every local task of the network
//!   is attached to. Start it once the overlay has put the gateway on the
//!   bridge, stop it when the network leaves the host.
//! - One `watch` channel of `Arc<DnsTable>` shared by all servers: the agent
//!   rebuilds the table with [`DnsTable::from_entries`] (plus
//!   [`DnsTable::with_subnet`] per network) whenever its gossip endpoint
//!   tables change, and sends it.
//! - Upstreams: [`upstreams_from_resolv_conf`] of the host's
//!   `/etc/resolv.conf`, read at start (forwards leave from the agent's own
//!   namespace, so the host's loopback resolvers work).
//! - A task's private resolv.conf: `nameserver <gateway of its first
//!   network>` and `options ndots:0`, so `web` is asked as `web.` first
//!   instead of walking the host's search domains, which upstream would
//!   answer NXDOMAIN slowly or, worse, with a real host of that name.
#![forbid(unsafe_code)]

mod answer;
mod forward;
mod server;
mod table;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddrV4;
use std::path::PathBuf;

pub use answer::{answer, Answer, MAX_UDP_PAYLOAD, TTL};
pub use forward::upstreams_from_resolv_conf;
pub use server::{DnsServer, DnsServerConfig, FORWARD_TIMEOUT, MAX_FORWARDS, MAX_TCP_CONNECTIONS};
pub use table::{DnsEntry, DnsTable, NetworkRecords, ServiceRecord};

use crate::netns::NetnsError;

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(
        "cannot bind the DNS server to {proto} {addr} in {} (the address must be on an \
         interface of that namespace and the port free)",
        .netns.as_ref().map_or_else(|| "the agent's namespace".to_string(), |p| p.display().to_string())
    )]
    Bind {
        proto: &'static str,
        addr: SocketAddrV4,
        netns: Option<PathBuf>,
        source: std::io::Error,
    },
    #[error("the DNS server's setup thread panicked")]
    SetupPanicked,
}
