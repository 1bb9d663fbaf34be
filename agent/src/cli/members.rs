//! `shoal members`: this node's gossip view (membership, table sizes,
//! convergence lag, dropped packets), the diagnostic Docker lacks; and
//! `shoal endpoint`: standalone endpoints published through gossip.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::bail;
use clap::{Args, Subcommand};
use shoal_control::api::{ApiResponse, LocalRequest};

use super::client;
use super::format;
use super::swarm::print_done;
use crate::daemon::{EndpointLine, MembersReport};

#[derive(Debug, Args)]
pub struct MembersArgs {
    /// 'json' for everything as JSON, or a Go template per member
    /// ('{{.node}} {{.state}}').
    #[arg(long)]
    pub format: Option<String>,
}

impl MembersArgs {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        let report: MembersReport = info(client::call(socket, &LocalRequest::Members).await?)?;
        match self.format.as_deref() {
            Some("json") => println!("{}", serde_json::to_string_pretty(&report)?),
            Some(template) => {
                for member in &report.gossip.members {
                    println!(
                        "{}",
                        format::render(template, &serde_json::to_value(member)?)?
                    );
                }
            }
            None => print!("{}", members_text(&report)),
        }
        Ok(())
    }
}

fn members_text(report: &MembersReport) -> String {
    let g = &report.gossip;
    let rows: Vec<Vec<String>> = g
        .members
        .iter()
        .map(|m| {
            let node = if m.view.node.as_str() == g.node {
                format!("{} *", m.view.node)
            } else {
                m.view.node.to_string()
            };
            let endpoints: Vec<String> = m
                .endpoints
                .iter()
                .map(|(net, n)| format!("{net}={n}"))
                .collect();
            vec![
                node,
                m.view.addr.to_string(),
                m.view.state.as_str().to_string(),
                m.view.incarnation.to_string(),
                format!("{:.1}s", m.since_ms as f64 / 1000.0),
                if endpoints.is_empty() {
                    "-".into()
                } else {
                    endpoints.join(",")
                },
            ]
        })
        .collect();
    let mut out = format::table(
        &[
            "NODE",
            "ADDRESS",
            "STATE",
            "INCARNATION",
            "SINCE",
            "ENDPOINTS",
        ],
        &rows,
    );
    if !g.networks.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = g
            .networks
            .iter()
            .map(|(net, size)| {
                let programmed = report.overlay.remote_endpoints.get(net).copied();
                vec![
                    net.clone(),
                    size.live.to_string(),
                    size.tombstones.to_string(),
                    programmed.map_or("-".into(), |n| n.to_string()),
                ]
            })
            .collect();
        out.push_str(&format::table(
            &["NETWORK", "ENTRIES", "TOMBSTONES", "REMOTE PROGRAMMED"],
            &rows,
        ));
    }
    let lag = &g.convergence_lag;
    out.push_str(&format!(
        "\nkeys {:?} (sealing with {}); convergence lag p50 {} ms, p99 {} ms, max {} ms over {} changes; \
         packets dropped: {}\n",
        g.keys,
        g.primary_key.map_or("none".into(), |k| k.to_string()),
        lag.p50_ms,
        lag.p99_ms,
        lag.max_ms,
        lag.count,
        g.decode.rejected(),
    ));
    if let Some(error) = &report.overlay.last_error {
        out.push_str(&format!("overlay: last reconciliation failed: {error}\n"));
    }
    out
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Attach a standalone sandbox to an overlay network on this node and
    /// publish its endpoint through gossip (tasks do this themselves).
    Create {
        /// Overlay network id.
        #[arg(long)]
        network: String,
        /// The endpoint's address on the network.
        #[arg(long)]
        ip: Ipv4Addr,
        /// Service name the endpoint is gossiped under.
        #[arg(long, default_value = "")]
        service: String,
        /// Publish a port: PUBLISHED:TARGET[/tcp|udp]. Repeatable.
        #[arg(long = "publish", short = 'p')]
        publish: Vec<String>,
        /// Endpoint (and sandbox) id.
        id: String,
    },
    /// Withdraw endpoints created on this node and remove their sandboxes.
    #[command(alias = "remove")]
    Rm {
        /// Endpoint ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Every endpoint in this node's gossip tables.
    #[command(alias = "list")]
    Ls {
        /// 'json', or a Go template per endpoint.
        #[arg(long)]
        format: Option<String>,
    },
}

impl EndpointCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        match self {
            EndpointCommand::Create {
                network,
                ip,
                service,
                publish,
                id,
            } => {
                let request = LocalRequest::EndpointCreate {
                    id,
                    network,
                    ip,
                    service,
                    publish,
                };
                print_done(client::call(socket, &request).await?)
            }
            EndpointCommand::Rm { ids } => {
                for id in ids {
                    print_done(client::call(socket, &LocalRequest::EndpointRemove { id }).await?)?;
                }
                Ok(())
            }
            EndpointCommand::Ls { format } => {
                let list: EndpointList =
                    info(client::call(socket, &LocalRequest::EndpointList).await?)?;
                let lines = list.endpoints;
                match format.as_deref() {
                    Some("json") => println!("{}", serde_json::to_string_pretty(&lines)?),
                    Some(template) => {
                        for line in &lines {
                            println!(
                                "{}",
                                format::render(template, &serde_json::to_value(line)?)?
                            );
                        }
                    }
                    None => {
                        let rows: Vec<Vec<String>> = lines
                            .iter()
                            .map(|l| {
                                vec![
                                    l.network.clone(),
                                    l.task_id.clone(),
                                    l.ip.to_string(),
                                    l.mac.clone(),
                                    l.vtep.to_string(),
                                    l.owner.clone(),
                                    if l.live { "live" } else { "owner dead" }.into(),
                                ]
                            })
                            .collect();
                        print!(
                            "{}",
                            format::table(
                                &["NETWORK", "ID", "IP", "MAC", "VTEP", "OWNER", "STATE"],
                                &rows
                            )
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct EndpointList {
    endpoints: Vec<EndpointLine>,
}

fn info<T: serde::de::DeserializeOwned>(reply: ApiResponse) -> anyhow::Result<T> {
    match reply {
        ApiResponse::Info(value) => Ok(serde_json::from_value(value)?),
        other => bail!("unexpected answer: {other:?}"),
    }
}
