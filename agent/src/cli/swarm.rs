//! `shoal swarm ...` and `shoal node ...`: Docker's verbs, sent to the local
//! agent, printed the way Docker prints them.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_control::api::{ApiRequest, Done, LocalRequest, NodeView, TokenAnswer};
use shoal_control::objects::{Availability, Role, Strategy};

use super::client;
use super::format;
use super::service::{self, TaskListOptions};

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Make this node the first manager of a new swarm.
    Init {
        /// Address other nodes reach this one on.
        #[arg(long)]
        advertise_addr: String,
        /// Port of the manager API (mutual TLS).
        #[arg(long, default_value_t = 2377)]
        listen_port: u16,
        /// Restart a manager that lost quorum as a one-manager swarm, keeping its state.
        #[arg(long)]
        force_new_cluster: bool,
        /// Encrypt the managers' Raft data and keys at rest; print the unlock key.
        #[arg(long)]
        autolock: bool,
        /// Lifetime of node certificates (e.g. 2160h, 90d, 30s).
        #[arg(long, value_parser = parse_duration)]
        cert_expiry: Option<Duration>,
    },
    /// Join a swarm as a worker or manager, as the token says.
    Join {
        #[arg(long)]
        token: String,
        #[arg(long)]
        advertise_addr: Option<String>,
        #[arg(long, default_value_t = 2377)]
        listen_port: u16,
        /// A manager's address, `IP[:PORT]`.
        manager: String,
    },
    /// Print or rotate a join token.
    JoinToken {
        role: Role,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long)]
        rotate: bool,
    },
    /// Leave the swarm.
    Leave {
        #[arg(short, long)]
        force: bool,
    },
    /// Change swarm settings.
    Update {
        #[arg(long)]
        autolock: Option<bool>,
        #[arg(long, value_parser = parse_duration)]
        cert_expiry: Option<Duration>,
        /// Start using a new gossip key: accepted by every node at once, used
        /// a few seconds later, the old one dropped a minute after that.
        #[arg(long)]
        rotate_gossip_key: bool,
        /// How the scheduler ranks nodes for services that do not set
        /// `--strategy`: spread (Swarm's) or binpack.
        #[arg(long, value_name = "spread|binpack")]
        scheduling_strategy: Option<Strategy>,
    },
    /// Unlock a locked manager (reads the key from standard input).
    Unlock,
    /// Print the key that unlocks an autolocked manager.
    UnlockKey {
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the swarm's nodes.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// `json`, or a Go template such as '{{.ID}} {{.Status.State}}'.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show nodes in detail (`self` is this node).
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Change a node's availability or labels.
    Update(NodeUpdateArgs),
    /// Make workers managers.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// List the tasks on a node (default: this one).
    Ps {
        #[arg(default_value = "self")]
        node: String,
        /// Full ids and errors.
        #[arg(long)]
        no_trunc: bool,
        /// `json`, or a Go template such as '{{.Name}} {{.CurrentState}}'.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove nodes from the swarm.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct NodeUpdateArgs {
    #[arg(long)]
    availability: Option<Availability>,
    /// `key=value`; repeatable.
    #[arg(long = "label-add")]
    label_add: Vec<String>,
    /// `key`; repeatable.
    #[arg(long = "label-rm")]
    label_rm: Vec<String>,
    node: String,
}

impl SwarmCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        let request = match self {
            SwarmCommand::Init {
                advertise_addr,
                listen_port,
                force_new_cluster,
                autolock,
                cert_expiry,
            } => LocalRequest::Init {
                advertise_addr,
                listen_port,
                force_new_cluster,
                autolock,
                cert_expiry_secs: cert_expiry.map(|d| d.as_secs()),
            },
            SwarmCommand::Join {
                token,
                advertise_addr,
                listen_port,
                manager,
            } => LocalRequest::Join {
                token,
                manager,
                advertise_addr,
                listen_port,
            },
            SwarmCommand::JoinToken {
                role,
                quiet,
                rotate,
            } => {
                let TokenAnswer { token, addr } =
                    client::api(socket, ApiRequest::JoinToken { role, rotate }).await?;
                if quiet {
                    println!("{token}");
                } else {
                    if rotate {
                        println!("Successfully rotated {role} join token.\n");
                    }
                    println!(
                        "To add a {role} to this swarm, run the following command:\n\n    shoal swarm join --token {token} {addr}\n"
                    );
                }
                return Ok(());
            }
            SwarmCommand::Leave { force } => LocalRequest::Leave { force },
            SwarmCommand::Update {
                autolock,
                cert_expiry,
                rotate_gossip_key,
                scheduling_strategy,
            } => {
                let settings = LocalRequest::Api(ApiRequest::SwarmUpdate {
                    autolock,
                    cert_expiry_secs: cert_expiry.map(|d| d.as_secs()),
                    rotate_gossip_key,
                });
                let Some(strategy) = scheduling_strategy else {
                    return print_done(socket, &settings).await;
                };
                if autolock.is_some() || cert_expiry.is_some() || rotate_gossip_key {
                    print_done(socket, &settings).await?;
                }
                LocalRequest::Api(ApiRequest::SetStrategy { strategy })
            }
            SwarmCommand::Unlock => {
                eprint!("Please enter unlock key: ");
                let mut key = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut key)
                    .context("cannot read the unlock key")?;
                LocalRequest::Unlock {
                    key: key.trim().to_string(),
                }
            }
            SwarmCommand::UnlockKey { quiet } => {
                let TokenAnswer { token, .. } = client::api(socket, ApiRequest::UnlockKey).await?;
                if quiet {
                    println!("{token}");
                } else {
                    println!("To unlock a swarm manager after it restarts, run `shoal swarm unlock` and enter:\n\n    {token}\n");
                }
                return Ok(());
            }
        };
        print_done(socket, &request).await
    }
}

impl NodeCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        match self {
            NodeCommand::Ls { quiet, format } => {
                let nodes: Vec<NodeView> = client::api(socket, ApiRequest::NodeList).await?;
                print_node_list(&nodes, quiet, format.as_deref())
            }
            NodeCommand::Inspect { nodes, format } => {
                let mut views = Vec::new();
                for node in nodes {
                    let node: NodeView =
                        client::api(socket, ApiRequest::NodeInspect { node }).await?;
                    views.push(serde_json::to_value(node)?);
                }
                match format.as_deref() {
                    None | Some("json") => println!("{}", serde_json::to_string_pretty(&views)?),
                    Some(template) => {
                        for v in &views {
                            println!("{}", format::render(template, v)?);
                        }
                    }
                }
                Ok(())
            }
            NodeCommand::Update(args) => {
                let label_add = args
                    .label_add
                    .iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                        _ => bail!("invalid label `{kv}`: use key=value"),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let request = ApiRequest::NodeUpdate {
                    node: args.node.clone(),
                    availability: args.availability,
                    label_add,
                    label_rm: args.label_rm,
                };
                client::api::<Done>(socket, request).await?;
                println!("{}", args.node);
                Ok(())
            }
            NodeCommand::Ps {
                node,
                no_trunc,
                format,
            } => {
                let options = TaskListOptions {
                    no_trunc,
                    format: format.as_deref(),
                    ..TaskListOptions::default()
                };
                service::node_ps(socket, node, &options).await
            }
            NodeCommand::Promote { nodes } => set_roles(socket, nodes, Role::Manager).await,
            NodeCommand::Demote { nodes } => set_roles(socket, nodes, Role::Worker).await,
            NodeCommand::Rm { force, nodes } => {
                for node in nodes {
                    let request = ApiRequest::NodeRemove {
                        node: node.clone(),
                        force,
                    };
                    client::api::<Done>(socket, request).await?;
                    println!("{node}");
                }
                Ok(())
            }
        }
    }
}

async fn set_roles(socket: &Path, nodes: Vec<String>, role: Role) -> anyhow::Result<()> {
    for node in nodes {
        let request = LocalRequest::Api(ApiRequest::NodeSetRole { node, role });
        print_done(socket, &request).await?;
    }
    Ok(())
}

/// Sends `request` and prints what it did.
pub(super) async fn print_done(socket: &Path, request: &LocalRequest) -> anyhow::Result<()> {
    println!("{}", client::done(socket, request).await?);
    Ok(())
}

fn print_node_list(nodes: &[NodeView], quiet: bool, format: Option<&str>) -> anyhow::Result<()> {
    if quiet {
        for n in nodes {
            println!("{}", n.id);
        }
        return Ok(());
    }
    match format {
        Some("json") => {
            for n in nodes {
                println!("{}", serde_json::to_string(n)?);
            }
        }
        Some(template) => {
            for n in nodes {
                println!("{}", format::render(template, &serde_json::to_value(n)?)?);
            }
        }
        None => {
            let rows: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| {
                    vec![
                        n.id.clone(),
                        n.description.hostname.clone(),
                        n.status_column(),
                        n.spec.availability.to_string(),
                        n.manager_column().to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                format::table(
                    &["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

/// `90d`, `2160h`, `30m`, `45s`, `500ms`, Go-style sums such as `1m30s`, or
/// plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration `{s}`: use e.g. 90d, 2160h, 1m30s, 45s, 500ms");
    if s.is_empty() {
        return Err(invalid());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map(Duration::from_secs).map_err(|_| invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs_per_unit = match &rest[..unit_len] {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86400),
            _ => return Err(invalid()),
        };
        let part = match secs_per_unit {
            None => Duration::from_millis(n),
            Some(unit) => Duration::from_secs(n.checked_mul(unit).ok_or_else(invalid)?),
        };
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h5m"), Ok(Duration::from_secs(3900)));
        assert!(parse_duration("1m30").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 s").is_err());
    }
}
