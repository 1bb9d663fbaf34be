//! `shoal-adversary`: what an attacker on the swarm's network can try, run by
//! the adversary suite (`tests/tests/adversary.rs`) inside a test host's
//! network namespace. It speaks gRPC over mutual TLS with whatever
//! certificate it is given (or none), floods a port with idle connections,
//! and writes gossip records in another node's name. Each command prints
//! one JSON line saying what happened; it never decides whether that was
//! right: the suite does.

mod flood;
mod forge;
mod rpc;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "shoal-adversary", about = "An attacker on the swarm's network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Who the attacker claims to be on port 2377.
#[derive(Args, Clone)]
pub struct Tls {
    /// The manager to call, `IP:PORT`.
    #[arg(long)]
    addr: String,
    /// The cluster's CA certificate (public: every joining node gets it).
    #[arg(long)]
    ca: PathBuf,
    /// A node certificate to present; none without it.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Its key: a PEM, or a key file from a state dir (`shoal-plain-v1`).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// `Raft.AppendEntries` with no entries, as a leader of `--term`.
    RaftAppend {
        #[command(flatten)]
        tls: Tls,
        #[arg(long)]
        term: u64,
        /// The Raft id the message names as its leader.
        #[arg(long)]
        leader: u64,
    },
    /// `Raft.Vote` as candidate `--candidate` of `--term`; prints the
    /// responder's term when it answers.
    RaftVote {
        #[command(flatten)]
        tls: Tls,
        #[arg(long)]
        term: u64,
        #[arg(long)]
        candidate: u64,
    },
    /// `Raft.InstallSnapshot` announcing `--size` bytes, then nothing.
    RaftSnapshot {
        #[command(flatten)]
        tls: Tls,
        #[arg(long)]
        term: u64,
        #[arg(long)]
        leader: u64,
        #[arg(long)]
        size: u64,
    },
    /// `Control.Call` with a request (JSON of `shoal_control::api::ApiRequest`).
    Control {
        #[command(flatten)]
        tls: Tls,
        #[arg(long)]
        request: String,
    },
    /// Opens `--count` TCP connections to `--target` and holds them idle.
    Flood {
        #[arg(long)]
        target: std::net::SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        hold_secs: u64,
    },
    /// As a node holding the gossip key (it heartbeats with the node's
    /// certificate to get it), sends `--to` a sync with the node's own
    /// record, and records and an authority in `--victim`'s name.
    ForgeGossip {
        #[command(flatten)]
        tls: Tls,
        /// The gossip port to send to, `IP:7946`.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// This node's id (the certificate's).
        #[arg(long)]
        node: String,
        #[arg(long)]
        network: String,
        #[arg(long)]
        victim: String,
        /// The victim's task whose record the forged tombstone withdraws.
        #[arg(long)]
        victim_task: String,
        #[arg(long)]
        victim_ip: std::net::Ipv4Addr,
        /// The task id of the node's own (honest) record.
        #[arg(long, default_value = "adv-honest")]
        honest_task: String,
        /// Where the gossip key is kept: read from it when it exists (the
        /// node may be removed since, its heartbeats refused), else fetched
        /// by a heartbeat and written there.
        #[arg(long)]
        gossip_key_file: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(async move {
        match cli.command {
            Command::RaftAppend { tls, term, leader } => rpc::append(&tls, term, leader).await,
            Command::RaftVote {
                tls,
                term,
                candidate,
            } => rpc::vote(&tls, term, candidate).await,
            Command::RaftSnapshot {
                tls,
                term,
                leader,
                size,
            } => rpc::snapshot(&tls, term, leader, size).await,
            Command::Control { tls, request } => rpc::control(&tls, &request).await,
            Command::Flood {
                target,
                count,
                hold_secs,
            } => flood::flood(target, count, hold_secs).await,
            Command::ForgeGossip {
                tls,
                to,
                node,
                network,
                victim,
                victim_task,
                victim_ip,
                honest_task,
                gossip_key_file,
            } => {
                let target = forge::Target {
                    to,
                    node,
                    network,
                    victim,
                    victim_task,
                    victim_ip,
                    honest_task,
                    gossip_key_file,
                };
                forge::forge(&tls, &target).await
            }
        }
    })?;
    println!("{out}");
    Ok(())
}
