//! `shoal mesh ...`: plumbing for the routing mesh's eBPF data path, outside
//! a swarm (the agent drives it from gossip in one). Used by `cargo xtask
//! bench` and for debugging.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use serde::Deserialize;
use shoal_control::objects::MacAddr;
use shoal_ebpf_common::mesh::{Config, CONFIG_HOST};

use crate::ebpf::{self, EbpfMesh, MeshProgram};
use crate::mesh::{
    host, service_key, Mesh, MeshBackend, MeshChanges, MeshSpec, Proto, PublishedService,
};

/// Where `shoal mesh` pins by default.
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/shoal/mesh";

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Attach the ingress programs in this namespace and program the
    /// published ports of FILE (JSON: underlay, link, services).
    Apply {
        /// The spec file (JSON).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// Where the programs and maps are pinned on bpffs.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
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
}

/// The plumbing spec file.
#[derive(Debug, Deserialize)]
struct ApplySpec {
    /// Interfaces whose addresses serve the published ports.
    underlay: Vec<String>,
    /// The interface that leads to the backends.
    link: String,
    services: Vec<PublishedService>,
}

impl MeshCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            MeshCommand::Apply { spec, pin_dir } => apply(&spec, &pin_dir),
            MeshCommand::Reset { pin_dir } => {
                EbpfMesh::remove(&pin_dir)?;
                println!(
                    "mesh: removed everything pinned under {}",
                    pin_dir.display()
                );
                Ok(())
            }
            MeshCommand::Bench { services, pin_dir } => bench(services, &pin_dir),
        }
    }
}

fn apply(file: &std::path::Path, pin_dir: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read mesh spec {}", file.display()))?;
    let spec: ApplySpec = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid mesh spec", file.display()))?;
    ebpf::ensure_bpffs(std::path::Path::new(ebpf::BPFFS_ROOT))?;
    let mut loaded = EbpfMesh::load(pin_dir)?;
    let link = host::iface(&spec.link)?;
    loaded.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: link.index,
            vxlan_ifindex: 0,
            link_mac: link.mac.octets(),
            pad: [0; 2],
        },
    )?;
    let mut locals = BTreeSet::new();
    for name in &spec.underlay {
        locals.extend(host::iface(name)?.addrs);
        loaded.attach(MeshProgram::Ingress, name, None)?;
    }
    loaded.attach(MeshProgram::Reply, &spec.link, None)?;
    let mut mesh = Mesh::new(loaded)?;
    let changes = mesh.apply(&MeshSpec {
        locals,
        services: spec.services,
    })?;
    println!("{}", serde_json::to_string(&changes)?);
    Ok(())
}

/// Fills the tables with `count` ports of 3 backends each, then times
/// single-port changes (a backend added, then removed again).
fn bench(count: u16, pin_dir: &std::path::Path) -> anyhow::Result<()> {
    ebpf::ensure_bpffs(std::path::Path::new(ebpf::BPFFS_ROOT))?;
    EbpfMesh::remove(pin_dir)?;
    let loaded = EbpfMesh::load(pin_dir)?;
    let result = (|| -> anyhow::Result<serde_json::Value> {
        let backend = |i: u32| {
            let ip = Ipv4Addr::from(0x0aff_0000 + i);
            MeshBackend {
                ip,
                port: 80,
                mac: MacAddr::from_ipv4(ip),
            }
        };
        let mut spec = MeshSpec {
            locals: BTreeSet::from([Ipv4Addr::new(198, 18, 0, 2)]),
            services: (0..count)
                .map(|i| PublishedService {
                    protocol: Proto::Tcp,
                    port: 10_000 + i,
                    backends: (0..3).map(|b| backend(u32::from(i) * 3 + b + 2)).collect(),
                    lingering: Vec::new(),
                })
                .collect(),
        };
        let mut mesh = Mesh::new(loaded)?;
        let filled = Instant::now();
        mesh.apply(&spec)?;
        let fill_ms = filled.elapsed().as_secs_f64() * 1e3;
        let mut one_port = Vec::new();
        let mut whole_spec = Vec::new();
        for round in 0..51u32 {
            // One backend more, then one fewer, on a different port each time.
            let i = (round as usize * 7) % usize::from(count);
            let key = service_key(Proto::Tcp, 10_000 + i as u16);
            let mut backends: BTreeSet<MeshBackend> = mesh.state().services[&key].clone();
            if round % 2 == 0 {
                backends.insert(backend(200_000 + round));
            } else {
                backends.pop_last();
            }
            let start = Instant::now();
            let mut changes = MeshChanges::default();
            mesh.set_port(key, &backends, &mut changes)?;
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
                changes.services_written == 1,
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
    EbpfMesh::remove(pin_dir)?;
    println!("{}", result?);
    Ok(())
}

/// The ingress program's median run time on a tracked TCP flow's packet,
/// from BPF_PROG_TEST_RUN (the kernel's own clock, one packet per run).
fn test_run_ns(mesh: &mut EbpfMesh) -> anyhow::Result<u64> {
    mesh.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: 1,
            vxlan_ifindex: 0,
            link_mac: [2, 0, 0, 0, 0, 1],
            pad: [0; 2],
        },
    )?;
    let mut times = Vec::new();
    for _ in 0..2001 {
        let frame = tcp_syn([198, 19, 0, 9], [198, 18, 0, 2], 40_000, 10_000);
        let (_, ns) = mesh.test_run(MeshProgram::Ingress, &frame)?;
        times.push(u64::from(ns));
    }
    // The first run opened the flow; the rest took the tracked path.
    Ok(median(&mut times[1..]))
}

/// An Ethernet + IPv4 + TCP SYN frame (checksums left zero: the program
/// only patches them).
fn tcp_syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
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
    f[46] = 0x50;
    f[47] = 0x02;
    f
}

fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}
