//! The command line: Docker-like verbs, each a thin layer over one part of
//! the agent. Cluster verbs go to the local agent over its Unix socket.

mod client;
mod each;
mod format;
mod image;
mod ipvs;
mod members;
mod mesh;
mod network;
mod nodes;
mod overlay;
mod payload;
mod service;
mod stack;
mod swarm;
mod template;
mod usage;
mod volume;

use shoal_control::error_chain::ErrorChain;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use swarm::parse_duration;
pub use usage::parse;

/// Runs services across a fleet of Linux hosts, the way Docker Swarm mode
/// does, with an eBPF-first data plane.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
pub struct Cli {
    /// Where the agent keeps runtime state (namespaces, its socket). Several
    /// agents on one machine each need their own.
    #[arg(
        long,
        global = true,
        env = "SHOAL_RUN_DIR",
        default_value = "/run/shoal"
    )]
    pub run_dir: PathBuf,

    /// The agent to talk to: unix:///path/to/shoal.sock (default:
    /// RUN_DIR/shoal.sock). Given before the command, as Docker's -H
    /// (service create --host is a host-to-IP mapping).
    #[arg(short = 'H', long = "host", env = "SHOAL_HOST")]
    pub host: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent daemon on this host.
    Agent(AgentArgs),
    /// Manage the swarm.
    #[command(subcommand)]
    Swarm(swarm::SwarmCommand),
    /// Manage the swarm's nodes.
    #[command(subcommand)]
    Node(swarm::NodeCommand),
    /// Manage the swarm's overlay networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Manage stacks: services, networks, secrets and configs from compose
    /// files.
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Manage this node's images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Manage this node's named volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage secrets: files only the tasks that use them receive.
    #[command(subcommand)]
    Secret(payload::PayloadCommand),
    /// Manage configs: read-only files for services.
    #[command(subcommand)]
    Config(payload::PayloadCommand),
    /// This node's gossip view: members, their state, table sizes.
    Members(members::MembersArgs),
    /// Standalone endpoints on overlay networks, published through gossip.
    #[command(subcommand)]
    Endpoint(members::EndpointCommand),
    /// Program this host's VXLAN overlay directly (plumbing; the agent drives
    /// it from gossip in a swarm).
    #[command(subcommand)]
    Overlay(overlay::OverlayCommand),
    /// Program this host's routing mesh directly (plumbing; the agent
    /// drives it from gossip in a swarm).
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
    /// Program this host's IPVS table over generic netlink (plumbing for
    /// an IPVS mesh; needs the kernel's ip_vs).
    #[command(subcommand)]
    Ipvs(ipvs::IpvsCommand),
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Durable state: identity, certificates, Raft data.
    #[arg(long, default_value = "/var/lib/shoal")]
    pub state_dir: PathBuf,
    /// The Unix socket the CLI talks to (default: RUN_DIR/shoal.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The Docker Engine API socket, for the docker CLI (default:
    /// RUN_DIR/docker.sock; 'none' serves no Docker API).
    #[arg(long)]
    pub docker_socket: Option<PathBuf>,
    /// The name this node shows in 'node ls' (default: the kernel hostname).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Serve Prometheus metrics (gossip members, convergence lag, dropped
    /// packets, overlay) at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The cgroup (on the cgroup2 filesystem) under which each task gets a
    /// cgroup of its own (default: 'shoal' at the cgroup2 mount).
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// This node's load balancer for published ports and virtual IPs.
    #[arg(long, default_value = "ebpf", value_parser = mesh_mode())]
    pub mesh: crate::balancer::MeshMode,
    /// How the eBPF mesh hangs its programs on interfaces: auto takes TCX
    /// links where the kernel has them (6.6+), else clsact + cls_bpf; tcx
    /// or tc forces one.
    #[arg(long, value_enum, default_value = "auto")]
    pub mesh_attach: crate::ebpf::AttachMode,
    /// CPUs this node offers to reservations (default: its CPU count).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory this node offers to reservations, e.g. 4G (default: its RAM).
    #[arg(long)]
    pub memory: Option<String>,
    /// A registry (HOST[:PORT]) this node may pull from over plain HTTP;
    /// repeatable. Loopback registries always may, as Docker allows.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Unused images are collected once the image store's disk is fuller
    /// than this (percent)...
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// ...until it is at most this full (percent; never an image a task
    /// uses).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// Disk each task output (stdout, stderr) keeps, e.g. 32M: older
    /// output is dropped as new output comes.
    #[arg(long, default_value = "32M")]
    pub task_log_max_size: String,
    /// How long the managers keep this node's tasks (and the node Ready)
    /// after this agent stops on SIGTERM or SIGINT, waiting for it to come
    /// back: an upgrade or a restart fits in it. Its tasks keep running
    /// meanwhile. 0s: the node goes Down as soon as it is silent.
    #[arg(long, default_value = "30s", value_parser = swarm::parse_duration)]
    pub restart_window: std::time::Duration,
}

impl AgentArgs {
    /// `--image-gc-high-threshold` and `--image-gc-low-threshold`.
    fn gc_policy(&self) -> anyhow::Result<crate::image::GcPolicy> {
        let (high, low) = (self.image_gc_high_threshold, self.image_gc_low_threshold);
        if low > high {
            anyhow::bail!(
                "--image-gc-low-threshold ({low}) must not be above --image-gc-high-threshold ({high})"
            );
        }
        Ok(crate::image::GcPolicy {
            high_percent: high,
            low_percent: low,
        })
    }

    /// What the node offers: the flags, or what the machine has.
    fn resources(&self) -> anyhow::Result<shoal_control::objects::NodeResources> {
        let nano_cpus = match self.cpus {
            Some(c) if c > 0.0 && c.is_finite() => (c * 1e9) as u64,
            Some(c) => anyhow::bail!("--cpus must be a positive number, got {c}"),
            None => {
                std::thread::available_parallelism().map_or(1, |n| n.get()) as u64 * 1_000_000_000
            }
        };
        let memory_bytes = match &self.memory {
            Some(text) => service::parse_memory(text)?,
            None => total_memory().unwrap_or(0),
        };
        Ok(shoal_control::objects::NodeResources {
            nano_cpus,
            memory_bytes,
        })
    }
}

/// `--mesh`, with help in plain words.
fn mesh_mode() -> impl clap::builder::TypedValueParser<Value = crate::balancer::MeshMode> {
    use crate::balancer::MeshMode;
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("ebpf")
            .help("The eBPF data path: ingress on published ports, virtual IPs at connect()"),
        PossibleValue::new("ipvs").help(
            "IPVS (the kernel's ip_vs, over generic netlink) and nftables, no eBPF: published \
             ports on every node address (scheduler mh, else sh), virtual IPs in each task \
             sandbox; backends see the ingress node's address, not the client's (SNAT)",
        ),
        PossibleValue::new("off").help(
            "No load balancer on this node: its addresses do not serve published ports, its \
             tasks reach services by task address (tasks.NAME) only, and replies of its tasks \
             to ingress clients have no way back (keep published services off it with a \
             constraint)",
        ),
    ])
    .map(|mode| match mode.as_str() {
        "off" => MeshMode::Off,
        "ipvs" => MeshMode::Ipvs,
        _ => MeshMode::Ebpf,
    })
}

/// MemTotal from /proc/meminfo, in bytes.
fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        let socket = client::socket_path(self.host.as_deref(), &self.run_dir)?;
        // `overlay exec` must stay single-threaded until it execs: no runtime.
        let command = match self.command {
            Command::Overlay(cmd) => return cmd.run(&self.run_dir),
            Command::Mesh(cmd) => return cmd.run(),
            Command::Ipvs(cmd) => return cmd.run(),
            command => command,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            match command {
                Command::Agent(args) => {
                    let resources = args.resources()?;
                    let gc = args.gc_policy()?;
                    let task_log_limit = service::parse_memory(&args.task_log_max_size)
                        .map_err(|e| anyhow::anyhow!("--task-log-max-size: {}", e.chain()))?;
                    if args.mesh == crate::balancer::MeshMode::Ipvs {
                        crate::ipvs::mesh::node::check_host().await?;
                    }
                    let socket = args.socket.unwrap_or(socket);
                    let docker_socket = match args.docker_socket {
                        Some(path) if path.as_os_str() == "none" => None,
                        Some(path) => Some(path),
                        None => Some(self.run_dir.join("docker.sock")),
                    };
                    crate::daemon::run(crate::daemon::Options {
                        docker_socket,
                        state_dir: args.state_dir,
                        run_dir: self.run_dir,
                        socket,
                        hostname: args.hostname,
                        metrics_addr: args.metrics_addr,
                        resources,
                        registries: crate::image::RegistryOptions {
                            insecure: args.insecure_registries.clone(),
                            gc,
                        },
                        task_log_limit,
                        restart_window: args.restart_window,
                        mesh: crate::balancer::MeshConfig {
                            mode: args.mesh,
                            attach: args.mesh_attach,
                        },
                        cgroup_root: args.cgroup_root.unwrap_or_else(|| {
                            crate::executor::cgroup2_mount()
                                .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
                                .join("shoal")
                        }),
                    })
                    .await
                }
                Command::Swarm(cmd) => cmd.run(&socket).await,
                Command::Node(cmd) => cmd.run(&socket).await,
                Command::Network(cmd) => cmd.run(&socket).await,
                Command::Service(cmd) => cmd.run(&socket).await,
                Command::Stack(cmd) => cmd.run(&socket).await,
                Command::Image(cmd) => cmd.run(&socket).await,
                Command::Volume(cmd) => cmd.run(&socket).await,
                Command::Secret(cmd) => cmd.run(payload::PayloadClass::Secret, &socket).await,
                Command::Config(cmd) => cmd.run(payload::PayloadClass::Config, &socket).await,
                Command::Members(args) => args.run(&socket).await,
                Command::Endpoint(cmd) => cmd.run(&socket).await,
                Command::Overlay(_) | Command::Mesh(_) | Command::Ipvs(_) => {
                    unreachable!("handled above")
                }
            }
        })
    }
}
