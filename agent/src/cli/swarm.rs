//! `shoal swarm ...` and `shoal node ...`: Docker's verbs, sent to the local
//! agent, printed the way Docker prints them.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_control::api::{ApiRequest, Done, LocalRequest, NodeView, TokenAnswer};
use shoal_control::engine::filter::Filters;
use shoal_control::engine::Node;
use shoal_control::objects::{Availability, Role, Strategy};

use super::client;
use super::each::Each;
use super::format;
use super::nodes;
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
        /// Tasks kept per slot, the current one included (default 5; negative keeps all).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        task_history_limit: Option<i64>,
    },
    /// Join a swarm as a worker or manager, as the token says.
    Join {
        /// Token for entry into the swarm (from 'swarm join-token').
        #[arg(long)]
        token: String,
        /// Address other nodes reach this one on (default: this node's
        /// address on the route to the manager).
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Port of the manager API, if this node becomes a manager.
        #[arg(long, default_value_t = 2377)]
        listen_port: u16,
        /// A manager's address, IP[:PORT].
        manager: String,
    },
    /// Print or rotate a join token.
    JoinToken {
        /// The token's role: worker or manager.
        role: Role,
        /// Only display the token.
        #[arg(short, long)]
        quiet: bool,
        /// Rotate the token: the old one stops working.
        #[arg(long)]
        rotate: bool,
    },
    /// Leave the swarm.
    Leave {
        /// Leave even as the last manager (the swarm is lost) or without
        /// quorum.
        #[arg(short, long)]
        force: bool,
    },
    /// Change swarm settings.
    Update {
        /// Change the manager autolock setting (true|false).
        #[arg(long)]
        autolock: Option<bool>,
        /// Validity period for node certificates (e.g. 2160h, 90d).
        #[arg(long, value_parser = parse_duration)]
        cert_expiry: Option<Duration>,
        /// Start using a new gossip key: accepted by every node at once, used
        /// a few seconds later, the old one dropped a minute after that.
        #[arg(long)]
        rotate_gossip_key: bool,
        /// How the scheduler ranks nodes for services that do not set
        /// --strategy: spread (Swarm's) or binpack.
        #[arg(long, value_name = "spread|binpack")]
        scheduling_strategy: Option<Strategy>,
        /// The most replicas one service may have (default 10000): a cap
        /// so a mistyped service scale cannot flood the managers.
        #[arg(long, value_name = "N")]
        max_replicas: Option<u64>,
        /// Tasks kept per slot, the current one included (default 5; negative keeps all).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        task_history_limit: Option<i64>,
    },
    /// Unlock a locked manager (reads the key from standard input).
    Unlock,
    /// Print the key that unlocks an autolocked manager.
    UnlockKey {
        /// Only display the key.
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the swarm's nodes (this node marked with an asterisk).
    #[command(alias = "list")]
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Pretty-print nodes using a Go template, e.g. '{{.ID}}: {{.Hostname}}';
        /// 'table' for Docker's table, 'json' for one JSON object per node.
        #[arg(long)]
        format: Option<String>,
        /// Filter output based on conditions provided: id=, name=, role=,
        /// membership=, node.label=, label=. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Display detailed information on one or more nodes ('self' is this
    /// node).
    Inspect {
        /// Nodes: id, id prefix, hostname, or 'self'.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
        /// Print the information in a human friendly format.
        #[arg(long, conflicts_with = "format")]
        pretty: bool,
        /// Format the output using a Go template, e.g.
        /// '{{.ManagerStatus.Leader}}'.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Change a node's availability or labels.
    Update(NodeUpdateArgs),
    /// Make workers managers.
    Promote {
        /// Nodes: id, id prefix or hostname.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        /// Nodes: id, id prefix or hostname.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
    },
    /// List the tasks running on one or more nodes (default: this one).
    Ps {
        /// Nodes: id, id prefix, hostname, or 'self'.
        #[arg(default_value = "self", value_name = "NODE")]
        nodes: Vec<String>,
        /// Only display task IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate output (full ids and errors).
        #[arg(long)]
        no_trunc: bool,
        /// Filter output based on conditions provided: id=, name=, node=,
        /// desired-state=, label=. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
        /// Pretty-print tasks using a Go template, e.g. '{{.Name}}
        /// {{.CurrentState}}'; 'json' for one JSON object per task.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove nodes from the swarm.
    Rm {
        /// Remove a node that is not down yet (a manager must be demoted
        /// first).
        #[arg(short, long)]
        force: bool,
        /// Nodes: id, id prefix or hostname.
        #[arg(required = true, value_name = "NODE")]
        nodes: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct NodeUpdateArgs {
    /// Availability of the node: active, pause or drain.
    #[arg(long)]
    availability: Option<Availability>,
    /// Add or update a node label (key=value). Repeatable.
    #[arg(long = "label-add", value_name = "KEY=VALUE")]
    label_add: Vec<String>,
    /// Remove a node label if it exists. Repeatable.
    #[arg(long = "label-rm", value_name = "KEY")]
    label_rm: Vec<String>,
    /// The node: id, id prefix or hostname.
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
                task_history_limit,
            } => {
                let init = LocalRequest::Init {
                    advertise_addr,
                    listen_port,
                    force_new_cluster,
                    autolock,
                    cert_expiry_secs: cert_expiry.map(|d| d.as_secs()),
                };
                let Some(limit) = task_history_limit else {
                    return print_done(socket, &init).await;
                };
                print_done(socket, &init).await?;
                let set = ApiRequest::SetTaskHistoryLimit { limit };
                client::done(socket, &LocalRequest::Api(set)).await?;
                return Ok(());
            }
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
                max_replicas,
                task_history_limit,
            } => {
                let settings = LocalRequest::Api(ApiRequest::SwarmUpdate {
                    autolock,
                    cert_expiry_secs: cert_expiry.map(|d| d.as_secs()),
                    rotate_gossip_key,
                });
                let mut extra = Vec::new();
                if let Some(strategy) = scheduling_strategy {
                    extra.push(LocalRequest::Api(ApiRequest::SetStrategy { strategy }));
                }
                if let Some(max_replicas) = max_replicas {
                    extra.push(LocalRequest::Api(ApiRequest::SetMaxReplicas {
                        max_replicas,
                    }));
                }
                if let Some(limit) = task_history_limit {
                    extra.push(LocalRequest::Api(ApiRequest::SetTaskHistoryLimit { limit }));
                }
                let Some(last) = extra.pop() else {
                    return print_done(socket, &settings).await;
                };
                if autolock.is_some() || cert_expiry.is_some() || rotate_gossip_key {
                    print_done(socket, &settings).await?;
                }
                for request in &extra {
                    print_done(socket, request).await?;
                }
                last
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
            NodeCommand::Ls {
                quiet,
                format,
                filters,
            } => {
                let filters = Filters::parse(&filters)?;
                let nodes: Vec<NodeView> = client::api(socket, ApiRequest::NodeList).await?;
                let nodes: Vec<Node> = nodes.iter().map(Node::from).collect();
                // Docker asks `/info` for the `*`; `self` names this node.
                let self_id = if quiet || nodes.is_empty() {
                    None
                } else {
                    inspect_node(socket, "self").await.ok().map(|n| n.id)
                };
                print!(
                    "{}",
                    nodes::list(
                        nodes,
                        &filters,
                        self_id.as_deref(),
                        format.as_deref(),
                        quiet
                    )?
                );
                Ok(())
            }
            NodeCommand::Inspect {
                nodes: names,
                pretty,
                format,
            } => {
                let each = Each::run(
                    names,
                    |name| async move { inspect_node(socket, &name).await },
                )
                .await;
                let found = &each.answers;
                if pretty {
                    for node in found {
                        print!("{}", nodes::pretty(node));
                    }
                } else {
                    print!("{}", format::inspect(found, format.as_deref())?);
                }
                each.finish()
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
                nodes,
                quiet,
                no_trunc,
                filters,
                format,
            } => {
                let options = TaskListOptions {
                    quiet,
                    no_trunc,
                    format: format.as_deref(),
                    filters: Filters::parse(&filters)?,
                };
                service::node_ps(socket, nodes, options).await
            }
            NodeCommand::Promote { nodes } => set_roles(socket, nodes, Role::Manager).await,
            NodeCommand::Demote { nodes } => set_roles(socket, nodes, Role::Worker).await,
            NodeCommand::Rm { force, nodes } => {
                // Docker goes on after a node it cannot remove.
                Each::run(nodes, |node| async move {
                    let request = ApiRequest::NodeRemove {
                        node: node.clone(),
                        force,
                    };
                    client::api::<Done>(socket, request).await?;
                    println!("{node}");
                    Ok(())
                })
                .await
                .finish()
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

/// `node inspect NODE` as Docker's `Node`.
async fn inspect_node(socket: &Path, node: &str) -> anyhow::Result<Node> {
    let request = ApiRequest::NodeInspect {
        node: node.to_string(),
    };
    let node: NodeView = client::api(socket, request).await?;
    Ok(Node::from(&node))
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
