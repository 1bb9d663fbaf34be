//! `shoal ipvs ...`: plumbing for the kernel's IPVS table over generic
//! netlink (the `--mesh ipvs` backend's layer): list it as `ipvsadm -Ln`
//! does, make it equal to a JSON table, set the timeouts, flush it, and
//! capture the kernel's raw answers as test fixtures.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::ipvs::{
    self, capture, wire, IpvsClient, IpvsKernel, IpvsTable, Service, Timeouts, VirtualService,
};

#[derive(Debug, Subcommand)]
pub enum IpvsCommand {
    /// The virtual services and their real servers, laid out as ipvsadm -Ln
    /// prints them.
    Ls {
        /// json: the table that apply takes.
        #[arg(long)]
        format: Option<String>,
    },
    /// Make the kernel's IPVS table equal to a JSON file; services not in
    /// it are removed. Prints each change (none on a re-apply).
    Apply {
        /// The table: services (each with key, scheduler and destinations)
        /// and optional timeouts.
        file: PathBuf,
    },
    /// Print the connection timeouts; with flags, set those first.
    Timeout {
        /// Idle timeout of an established TCP connection, in seconds.
        #[arg(long)]
        tcp: Option<u32>,
        /// Timeout of a TCP connection after its FIN, in seconds.
        #[arg(long)]
        tcp_fin: Option<u32>,
        /// Idle timeout of a UDP flow, in seconds.
        #[arg(long)]
        udp: Option<u32>,
    },
    /// Remove every virtual service.
    Flush,
    /// Write the kernel's raw answers (service and real-server dumps,
    /// timeouts, version, a refused duplicate) as test fixtures.
    #[command(hide = true)]
    Capture {
        /// The directory to write the fixtures to.
        dir: PathBuf,
    },
}

impl IpvsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> anyhow::Result<()> {
        let mut client = IpvsClient::connect().await?;
        match self {
            IpvsCommand::Ls { format } => {
                let table = read_table(&mut client).await?;
                if format.as_deref() == Some("json") {
                    println!("{}", serde_json::to_string_pretty(&table)?);
                } else {
                    let info = client.info().await?;
                    print!("{}", render(&table, &info));
                }
            }
            IpvsCommand::Apply { file } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read IPVS table {}", file.display()))?;
                let table: IpvsTable = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a valid IPVS table", file.display()))?;
                let changes = ipvs::apply(&mut client, &table).await?;
                for change in &changes {
                    println!("{change}");
                }
                println!("ipvs: {} change(s)", changes.len());
            }
            IpvsCommand::Timeout { tcp, tcp_fin, udp } => {
                let wanted = Timeouts {
                    tcp: tcp.unwrap_or(0),
                    tcp_fin: tcp_fin.unwrap_or(0),
                    udp: udp.unwrap_or(0),
                };
                if wanted != Timeouts::default() {
                    client.set_timeouts(&wanted).await?;
                }
                let t = client.timeouts().await?;
                println!(
                    "Timeout (tcp tcpfin udp): {} {} {}",
                    t.tcp, t.tcp_fin, t.udp
                );
            }
            IpvsCommand::Flush => {
                client.flush().await?;
                println!("ipvs: flushed");
            }
            IpvsCommand::Capture { dir } => capture_fixtures(&mut client, &dir).await?,
        }
        Ok(())
    }
}

/// Every service with its real servers.
async fn read_table(client: &mut IpvsClient) -> anyhow::Result<IpvsTable> {
    let mut services = Vec::new();
    for service in client.services().await? {
        let destinations = client.destinations(&service.key).await?;
        services.push(VirtualService {
            service,
            destinations,
        });
    }
    services.sort_by_key(|s| s.service.key);
    Ok(IpvsTable {
        services,
        timeouts: Some(client.timeouts().await?),
    })
}

/// `ipvsadm -Ln`'s layout.
fn render(table: &IpvsTable, info: &ipvs::Info) -> String {
    let mut out = format!(
        "IP Virtual Server version {} (size={})\n\
         Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        info.version_label(),
        info.connection_table_size
    );
    for vs in &table.services {
        let s: &Service = &vs.service;
        let mut line = format!("{} {}", s.key, s.scheduler.label());
        if let Some(timeout) = s.persistent {
            line.push_str(&format!(" persistent {timeout}"));
        }
        if s.one_packet {
            line.push_str(" ops");
        }
        out.push_str(&line);
        out.push('\n');
        for d in &vs.destinations {
            let c = d.connections.unwrap_or_default();
            let server = match d.addr {
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", d.port),
                a => format!("{a}:{}", d.port),
            };
            out.push_str(&format!(
                "  -> {server:<28} {:<7} {:<6} {:<10} {}\n",
                d.forward.label(),
                d.weight,
                c.active,
                c.inactive
            ));
        }
    }
    out
}

/// The fixtures `ipvs/tests.rs` decodes: raw answers to a service dump, a
/// real-server dump per service, GET_CONFIG, GET_INFO, and the refusal of
/// a service that exists.
async fn capture_fixtures(client: &mut IpvsClient, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let family = client.family_id().await?;
    let save = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        println!("captured {} ({} bytes)", path.display(), bytes.len());
        Ok(())
    };
    let exchange = |message: wire::IpvsMessage, dump: bool| {
        capture::exchange(&capture::request_bytes(family, message, dump))
    };
    save(
        "services.bin",
        &exchange(wire::IpvsMessage::new(wire::cmd::GET_SERVICE, vec![]), true)?,
    )?;
    let services = client.services().await?;
    for (i, service) in services.iter().enumerate() {
        let message = wire::IpvsMessage::new(
            wire::cmd::GET_DEST,
            vec![wire::Attr::Nested(wire::attr::SERVICE, service.key.attrs())],
        );
        save(&format!("dests-{i}.bin"), &exchange(message, true)?)?;
    }
    save(
        "config.bin",
        &exchange(wire::IpvsMessage::new(wire::cmd::GET_CONFIG, vec![]), false)?,
    )?;
    save(
        "info.bin",
        &exchange(wire::IpvsMessage::new(wire::cmd::GET_INFO, vec![]), false)?,
    )?;
    if let Some(first) = services.first() {
        let duplicate = wire::IpvsMessage::new(
            wire::cmd::NEW_SERVICE,
            vec![wire::Attr::Nested(wire::attr::SERVICE, first.attrs())],
        );
        save("duplicate.bin", &exchange(duplicate, false)?)?;
    }
    Ok(())
}
