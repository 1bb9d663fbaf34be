//! `shoal mesh ...`: plumbing for the routing mesh's eBPF data path, outside
//! a swarm (the agent drives it from gossip in one). Used by `cargo xtask
//! bench`, the end-to-end tests of the mesh's limits, and for debugging.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use serde::Deserialize;
use shoal_control::objects::MacAddr;
use shoal_ebpf_common::mesh::{Config, CONFIG_HOST};

use crate::balancer::{
    host, Balancer, BalancerError, BalancerSpec, MeshBackend, PortKey, Protocol, PublishedService,
};
use crate::ebpf::{self, AttachMode, EbpfBalancer, MeshProgram};

/// Where `shoal mesh` pins by default.
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/shoal/mesh";

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Attach the ingress programs in this namespace and program the
    /// published ports of FILE (JSON with the keys underlay, link, services,
    /// and optionally vips with the cgroup whose sockets they serve).
    Apply {
        /// The spec file (JSON).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// Where the programs and maps are pinned on bpffs.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// How TC programs are attached.
        #[arg(long, value_enum, default_value = "auto")]
        attach: AttachMode,
    },
    /// Detach everything 'mesh apply' attached and remove its maps.
    Reset {
        /// Where the programs and maps are pinned on bpffs.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Time one service change with N published ports in the tables, and the
    /// ingress program per packet (BPF_PROG_TEST_RUN); prints JSON.
    Bench {
        /// Published ports in the tables while timing.
        #[arg(long, default_value_t = 1000)]
        services: u16,
        /// Where the benchmark's programs and maps are pinned on bpffs.
        #[arg(long, default_value = "/sys/fs/bpf/shoal/mesh-bench")]
        pin_dir: PathBuf,
    },
    /// Print the data path's counters (JSON).
    Stats {
        /// Where the programs and maps are pinned on bpffs.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

/// The plumbing spec file.
#[derive(Debug, Deserialize)]
struct ApplySpec {
    /// Interfaces whose addresses serve the published ports.
    underlay: Vec<String>,
    /// The interface that leads to the backends.
    link: String,
    services: Vec<PublishedService>,
    /// Virtual IPs and their tasks, served to sockets under `cgroup`.
    #[serde(default)]
    vips: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
    #[serde(default)]
    cgroup: Option<PathBuf>,
}

impl MeshCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            MeshCommand::Apply {
                spec,
                pin_dir,
                attach,
            } => apply(&spec, &pin_dir, attach),
            MeshCommand::Reset { pin_dir } => {
                EbpfBalancer::remove(&pin_dir)?;
                println!(
                    "mesh: removed everything pinned under {}",
                    pin_dir.display()
                );
                Ok(())
            }
            MeshCommand::Bench { services, pin_dir } => bench(services, &pin_dir),
            MeshCommand::Stats { pin_dir } => {
                use crate::balancer::LoadBalancer;
                let counters = EbpfBalancer::load(&pin_dir, AttachMode::Auto)?.counters()?;
                let counters: BTreeMap<&str, u64> = counters.into_iter().collect();
                println!("{}", serde_json::to_string(&counters)?);
                Ok(())
            }
        }
    }
}

fn apply(
    file: &std::path::Path,
    pin_dir: &std::path::Path,
    attach: AttachMode,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read mesh spec {}", file.display()))?;
    let spec: ApplySpec = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid mesh spec", file.display()))?;
    ebpf::ensure_bpffs(std::path::Path::new(ebpf::BPFFS_ROOT))?;
    let mut loaded = EbpfBalancer::load(pin_dir, attach)?;
    eprintln!("mesh: TC programs attach with {}", loaded.hook());
    let link = host::iface(&spec.link)?;
    loaded.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: link.index,
            link_mac: link.mac.octets(),
            ..Config::default()
        },
    )?;
    let mut locals = BTreeSet::new();
    for name in &spec.underlay {
        locals.extend(host::iface(name)?.addrs);
        loaded.attach_program(MeshProgram::Ingress, name, None)?;
    }
    loaded.attach_program(MeshProgram::Reply, &spec.link, None)?;
    if let Some(cgroup) = &spec.cgroup {
        loaded.attach_cgroup_hooks(&ebpf::TASK_HOOKS, cgroup, "cgroup")?;
    }
    let mut mesh = Balancer::new(loaded)?;
    let changes = mesh.apply(&BalancerSpec {
        locals,
        services: spec.services,
        vips: spec.vips,
    })?;
    println!("{}", serde_json::to_string(&changes)?);
    if !changes.over_limit.is_empty() {
        return Err(BalancerError::OverLimit(changes.over_limit).into());
    }
    Ok(())
}

/// Fills the tables with `count` ports of 3 backends each, then times
/// single-port changes (a backend added, then removed again).
fn bench(count: u16, pin_dir: &std::path::Path) -> anyhow::Result<()> {
    ebpf::ensure_bpffs(std::path::Path::new(ebpf::BPFFS_ROOT))?;
    EbpfBalancer::remove(pin_dir)?;
    let loaded = EbpfBalancer::load(pin_dir, AttachMode::Auto)?;
    let result = (|| -> anyhow::Result<serde_json::Value> {
        let backend = |i: u32| {
            let ip = Ipv4Addr::from(0x0aff_0000 + i);
            MeshBackend {
                ip,
                port: 80,
                mac: MacAddr::from_ipv4(ip),
            }
        };
        let mut spec = BalancerSpec {
            locals: BTreeSet::from([Ipv4Addr::new(198, 18, 0, 2)]),
            vips: BTreeMap::new(),
            services: (0..count)
                .map(|i| PublishedService {
                    protocol: Protocol::Tcp,
                    port: 10_000 + i,
                    backends: (0..3).map(|b| backend(u32::from(i) * 3 + b + 2)).collect(),
                    lingering: Vec::new(),
                })
                .collect(),
        };
        let mut mesh = Balancer::new(loaded)?;
        let filled = Instant::now();
        mesh.apply(&spec)?;
        let fill_ms = filled.elapsed().as_secs_f64() * 1e3;
        let mut one_port = Vec::new();
        let mut whole_spec = Vec::new();
        for round in 0..51u32 {
            // One backend more, then one fewer, on a different port each time.
            let i = (round as usize * 7) % usize::from(count);
            let key = PortKey {
                protocol: Protocol::Tcp,
                port: 10_000 + i as u16,
            };
            let mut backends: BTreeSet<MeshBackend> = mesh.state().ports[&key].active.clone();
            if round % 2 == 0 {
                backends.insert(backend(200_000 + round));
            } else {
                backends.pop_last();
            }
            let start = Instant::now();
            mesh.set_port(key, &backends)?;
            one_port.push(start.elapsed().as_nanos() as u64);
            // The same change again through the whole-spec path the agent
            // uses today, which compares every port: undo it, then redo it.
            let undo = spec.services[i].backends.clone();
            mesh.apply(&spec)?;
            spec.services[i].backends = backends.into_iter().collect();
            let start = Instant::now();
            let changes = mesh.apply(&spec)?;
            whole_spec.push(start.elapsed().as_nanos() as u64);
            anyhow::ensure!(
                changes.ports_written == 1,
                "the spec path wrote {changes:?}"
            );
            let _ = undo;
        }
        let test_run = test_run_ns(mesh.kernel())?;
        Ok(serde_json::json!({
            "services": count,
            "fill_ms": fill_ms,
            "update_ns": median(&mut one_port),
            "spec_update_ns": median(&mut whole_spec),
            "test_run_ns_per_packet": test_run,
        }))
    })();
    EbpfBalancer::remove(pin_dir)?;
    println!("{}", result?);
    Ok(())
}

/// The ingress program's median run time on a packet of an established
/// TCP flow, from BPF_PROG_TEST_RUN (the kernel's own clock, one packet per
/// run). The flow is established first as a real one is: the client's SYN,
/// the backend's SYN-ACK through the reply program, the client's ACK.
fn test_run_ns(mesh: &mut EbpfBalancer) -> anyhow::Result<u64> {
    mesh.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: 1,
            link_mac: [2, 0, 0, 0, 0, 1],
            ..Config::default()
        },
    )?;
    let (client, node) = ([198, 19, 0, 9], [198, 18, 0, 2]);
    let syn = mesh.test_run(
        MeshProgram::Ingress,
        &tcp_frame(client, node, 40_000, 10_000, TCP_SYN, 0, 0),
    )?;
    // Where the SYN went: the backend's address and port.
    let to = syn.frame.get(30..34).zip(syn.frame.get(36..38));
    let Some((backend, port)) = to else {
        anyhow::bail!(
            "the ingress program returned a {} byte frame",
            syn.frame.len()
        );
    };
    let backend: [u8; 4] = backend.try_into()?;
    let port = u16::from_be_bytes(port.try_into()?);
    let isn = 7_000_000;
    mesh.test_run(
        MeshProgram::Reply,
        &tcp_frame(backend, client, port, 40_000, TCP_SYN | TCP_ACK, isn, 1),
    )?;
    let ack = tcp_frame(client, node, 40_000, 10_000, TCP_ACK, 1, isn + 1);
    let mut times = Vec::new();
    for _ in 0..2001 {
        times.push(u64::from(mesh.test_run(MeshProgram::Ingress, &ack)?.ns));
    }
    // The first ACK promoted the flow; the rest took the established path.
    Ok(median(&mut times[1..]))
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// An Ethernet + IPv4 + TCP frame (checksums left zero: the programs only
/// patch them).
fn tcp_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[42..46].copy_from_slice(&ack.to_be_bytes());
    f[46] = 0x50;
    f[47] = flags;
    f
}

fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}
