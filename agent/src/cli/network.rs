//! `shoal network create|ls|inspect|rm`: Docker's overlay-network verbs,
//! sent to the local agent (a manager), printed the way Docker prints them.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use shoal_control::api::{ApiRequest, Done, NetworkView};
use shoal_control::engine::filter::{self, Filters};
use shoal_control::engine::NetworkResource;

use super::client;
use super::each::Each;
use super::format::{self, natural_cmp, Listing, Row};

/// How many characters of an id `network ls` shows, as Docker does.
const SHORT_ID: usize = 12;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create an overlay network spanning the swarm; prints its id.
    Create(CreateArgs),
    /// List the swarm's networks.
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate the output (full ids).
        #[arg(long)]
        no_trunc: bool,
        /// Pretty-print networks using a Go template, e.g. '{{.Name}}
        /// {{.Driver}}'; 'json' for one JSON object per network.
        #[arg(long)]
        format: Option<String>,
        /// Filter output based on conditions provided: driver=, id=, label=,
        /// name=, scope=, type=custom|builtin. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Display detailed information on one or more networks (Docker's
    /// JSON).
    Inspect {
        /// Networks: name, id or unique id prefix.
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
        /// Format the output using a Go template, e.g. '{{json
        /// .IPAM.Config}}'.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove one or more networks. Removing the ingress (routing-mesh)
    /// network asks for confirmation first.
    #[command(alias = "remove")]
    Rm {
        /// Networks: name, id or unique id prefix.
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
        /// Do not ask for confirmation before removing the ingress network,
        /// and do not error if a network does not exist.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network: only overlay (the default).
    #[arg(short, long)]
    driver: Option<String>,
    /// Subnet in CIDR format (default: the first free /24 of 10.0.0.0/8).
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 gateway for the subnet (default: its first address); needs
    /// --subnet.
    #[arg(long)]
    gateway: Option<String>,
    /// Set driver specific options: only mtu=N. Repeatable.
    #[arg(short, long = "opt", value_name = "KEY=VALUE")]
    opt: Vec<String>,
    /// Set metadata on a network: key=value or key. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Create swarm routing-mesh network: the one network published ports
    /// go through (a swarm has at most one; make a new one after removing
    /// the old).
    #[arg(long)]
    ingress: bool,
    /// Enable manual container attachment (any service may join any shoal
    /// overlay already); refused with --ingress.
    #[arg(long)]
    attachable: bool,
    /// The network's name.
    name: String,
}

impl NetworkCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        match self {
            NetworkCommand::Create(args) => {
                let request = ApiRequest::NetworkCreate {
                    mtu: parse_mtu(&args.opt)?,
                    labels: parse_labels(&args.label)?,
                    ingress: args.ingress,
                    attachable: args.attachable,
                    name: args.name,
                    driver: args.driver,
                    subnet: args.subnet,
                    gateway: args.gateway,
                };
                let network: NetworkView = client::api(socket, request).await?;
                println!("{}", network.id);
                Ok(())
            }
            NetworkCommand::Ls {
                quiet,
                no_trunc,
                format,
                filters,
            } => {
                let filters = Filters::parse(&filters)?;
                let networks: Vec<NetworkView> =
                    client::api(socket, ApiRequest::NetworkList).await?;
                let networks: Vec<NetworkResource> =
                    networks.iter().map(NetworkResource::from).collect();
                print!(
                    "{}",
                    list(networks, &filters, quiet, no_trunc, format.as_deref())?
                );
                Ok(())
            }
            NetworkCommand::Inspect { networks, format } => {
                let each = Each::run(networks, |name_or_id| async move {
                    let request = ApiRequest::NetworkInspect { name_or_id };
                    client::api::<NetworkView>(socket, request).await
                })
                .await;
                let found: Vec<NetworkResource> =
                    each.answers.iter().map(NetworkResource::from).collect();
                print!("{}", format::inspect(&found, format.as_deref())?);
                each.finish()
            }
            NetworkCommand::Rm { networks, force } => {
                Each::run(networks, |name_or_id| async move {
                    if !force && !confirm_ingress_removal(socket, &name_or_id).await? {
                        return Ok(());
                    }
                    let request = ApiRequest::NetworkRemove { name_or_id };
                    match client::api::<Done>(socket, request).await {
                        Ok(Done { message }) => println!("{message}"),
                        Err(e) if force && client::is_not_found(&e) => {}
                        Err(e) => return Err(e),
                    }
                    Ok(())
                })
                .await
                .finish()
            }
        }
    }
}

/// Docker's question before removing the routing-mesh network.
const INGRESS_WARNING: &str =
    "WARNING! Before removing the routing-mesh network, make sure all the \
     nodes in your swarm run the same shoal version. Otherwise, removal may not be effective and \
     functionality of newly created ingress networks will be impaired.\nAre you sure you want to \
     continue? [y/N] ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum RemoveError {
    #[error(
        "network {0} is the swarm's ingress (routing-mesh) network: removing it needs \
         confirmation; answer y at the prompt, or pass --force"
    )]
    NotConfirmed(String),
}

/// Whether to go on removing `name_or_id`: yes unless it is the ingress
/// network, which asks first (as Docker does). A network that cannot be
/// inspected is left to `network rm` to report.
async fn confirm_ingress_removal(socket: &Path, name_or_id: &str) -> anyhow::Result<bool> {
    let request = ApiRequest::NetworkInspect {
        name_or_id: name_or_id.to_string(),
    };
    match client::api::<NetworkView>(socket, request).await {
        Ok(network) if network.ingress => {}
        _ => return Ok(true),
    }
    let mut out = std::io::stdout();
    write!(out, "{INGRESS_WARNING}")?;
    out.flush()?;
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut line = String::new();
    let answer = match stdin.lock().read_line(&mut line)? {
        0 => {
            writeln!(out)?;
            None
        }
        _ => Some(line.trim().to_string()),
    };
    Ok(confirmed(name_or_id, tty, answer.as_deref())?)
}

/// The answer to [`INGRESS_WARNING`]: `y` goes on; anything else at a
/// terminal declines (the network is skipped, as Docker does); with no
/// terminal, anything but `y` is refused, so a script never removes the
/// ingress network by accident nor believes it did.
fn confirmed(network: &str, tty: bool, answer: Option<&str>) -> Result<bool, RemoveError> {
    match answer {
        Some(a) if a.eq_ignore_ascii_case("y") => Ok(true),
        _ if tty => Ok(false),
        _ => Err(RemoveError::NotConfirmed(network.to_string())),
    }
}

/// `network ls`.
const NETWORKS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    headers: &[
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ],
    row_type: "*network.networkContext",
};

/// `network ls` output: the networks that pass `filters`, by name.
fn list(
    mut networks: Vec<NetworkResource>,
    filters: &Filters,
    quiet: bool,
    no_trunc: bool,
    format: Option<&str>,
) -> anyhow::Result<String> {
    filter::check_networks(filters)?;
    networks.retain(|n| filter::network_matches(filters, n));
    networks.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let rows: Vec<Row> = networks.iter().map(|n| ls_row(n, no_trunc)).collect();
    Ok(format::list(
        &NETWORKS,
        format::resolve(&NETWORKS, format, quiet),
        &rows,
    )?)
}

/// The fields `network ls --format` sees, as Docker names them (all
/// strings), and the labels `{{.Label "KEY"}}` reads.
fn ls_row(n: &NetworkResource, no_trunc: bool) -> Row {
    let id: String = if no_trunc {
        n.id.clone()
    } else {
        n.id.chars().take(SHORT_ID).collect()
    };
    let labels = n.labels.clone().unwrap_or_default();
    let joined: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // Go's `time.Time.String()`.
    let created = n.created.replacen('T', " ", 1).replace('Z', " +0000 UTC");
    Row::new(json!({
        "ID": id,
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope,
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": joined.join(","),
        "CreatedAt": created,
    }))
    .with_labels(&labels)
}

/// `--opt mtu=N` (or Docker's `com.docker.network.driver.mtu=N`).
fn parse_mtu(opts: &[String]) -> anyhow::Result<Option<u32>> {
    let mut mtu = None;
    for opt in opts {
        match opt.split_once('=') {
            Some(("mtu" | "com.docker.network.driver.mtu", value)) => {
                let n: u32 = value.trim().parse().with_context(|| {
                    format!("invalid mtu `{value}`: use a number of bytes such as 1400")
                })?;
                mtu = Some(n);
            }
            _ => bail!("unsupported option `{opt}`: shoal networks take only `--opt mtu=N`"),
        }
    }
    Ok(mtu)
}

/// `key=value` or `key` (empty value), as Docker's `--label`.
fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            if k.is_empty() {
                bail!("invalid label `{kv}`: use key=value");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use shoal_control::api::NetworkView;
    use shoal_control::objects::{Network, NetworkSpec};

    use super::*;

    fn net(name: &str, id: &str, vni: u32) -> NetworkResource {
        NetworkResource::from(&NetworkView::new(&Network {
            id: id.into(),
            name: name.into(),
            driver: "overlay".into(),
            spec: NetworkSpec {
                id: id.into(),
                vni,
                subnet: "10.0.0.0/24".parse().unwrap(),
                gateway: "10.0.0.1".parse().unwrap(),
                mtu: None,
                ingress: false,
            },
            labels: BTreeMap::from([("a".into(), "1".into()), ("b".into(), String::new())]),
            created_at: 0,
        }))
    }

    fn nets() -> Vec<NetworkResource> {
        vec![
            net("web", "zzzzzzzzzzzzzzzzzzzzzzzzz", 4097),
            net("backend", "0123456789abcdefghijklmno", 4096),
        ]
    }

    #[test]
    fn removing_the_ingress_network_needs_a_yes() {
        assert_eq!(confirmed("ingress", true, Some("y")), Ok(true));
        assert_eq!(confirmed("ingress", false, Some("Y")), Ok(true));
        // Declined at a terminal: skipped without an error, as Docker.
        assert_eq!(confirmed("ingress", true, Some("")), Ok(false));
        assert_eq!(confirmed("ingress", true, None), Ok(false));
        // No terminal and no yes: refused, naming the way through.
        let refused = confirmed("ingress", false, None).unwrap_err();
        assert_eq!(refused, RemoveError::NotConfirmed("ingress".into()));
        assert!(refused.to_string().contains("--force"), "{refused}");
        assert!(confirmed("ingress", false, Some("n")).is_err());
        assert!(INGRESS_WARNING.starts_with("WARNING! Before removing the routing-mesh network"));
        assert!(INGRESS_WARNING.ends_with("Are you sure you want to continue? [y/N] "));
    }

    #[test]
    fn ls_prints_dockers_table_with_short_ids() {
        let none = Filters::default();
        assert_eq!(
            list(nets(), &none, false, false, None).unwrap(),
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             0123456789ab   backend   overlay   swarm\n\
             zzzzzzzzzzzz   web       overlay   swarm\n"
        );
        assert_eq!(
            list(nets(), &none, true, false, None).unwrap(),
            "0123456789ab\nzzzzzzzzzzzz\n"
        );
        assert_eq!(
            list(nets(), &none, true, true, None).unwrap(),
            "0123456789abcdefghijklmno\nzzzzzzzzzzzzzzzzzzzzzzzzz\n"
        );
        assert_eq!(
            list(
                nets(),
                &none,
                false,
                false,
                Some(r#"{{.Name}}: {{.Driver}} {{.Labels}} [{{.Label "a"}}]"#)
            )
            .unwrap(),
            "backend: overlay a=1,b= [1]\nweb: overlay a=1,b= [1]\n"
        );
        let json_row: Value = serde_json::from_str(
            list(nets()[1..].to_vec(), &none, false, false, Some("json"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        assert_eq!(json_row["ID"], "0123456789ab");
        assert_eq!(json_row["CreatedAt"], "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn ls_filters_like_docker() {
        let by = |flags: &[&str]| {
            let f = Filters::parse(flags).unwrap();
            list(nets(), &f, false, false, Some("{{.Name}}"))
        };
        assert_eq!(by(&["name=web"]).unwrap(), "web\n");
        assert_eq!(
            by(&["name=e"]).unwrap(),
            "backend\nweb\n",
            "names match in part"
        );
        assert_eq!(by(&["id=0123"]).unwrap(), "backend\n");
        assert_eq!(
            by(&["driver=overlay", "scope=swarm"]).unwrap(),
            "backend\nweb\n"
        );
        assert_eq!(by(&["label=a=2"]).unwrap(), "");
        assert_eq!(
            by(&["colour=red"]).unwrap_err().to_string(),
            "Invalid filter 'colour'"
        );
    }

    #[test]
    fn options_and_labels_parse_like_docker() {
        assert_eq!(parse_mtu(&[]).unwrap(), None);
        assert_eq!(parse_mtu(&["mtu=1400".into()]).unwrap(), Some(1400));
        assert_eq!(
            parse_mtu(&["com.docker.network.driver.mtu=9000".into()]).unwrap(),
            Some(9000)
        );
        assert!(parse_mtu(&["mtu=big".into()]).is_err());
        let err = parse_mtu(&["encrypted".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "unsupported option `encrypted`: shoal networks take only `--opt mtu=N`"
        );
        assert_eq!(
            parse_labels(&["team=web".into(), "x".into()]).unwrap(),
            BTreeMap::from([("team".into(), "web".into()), ("x".into(), String::new())])
        );
        assert!(parse_labels(&["=v".into()]).is_err());
    }
}
