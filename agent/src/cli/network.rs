//! `shoal network create|ls|inspect|rm`: Docker's overlay-network verbs,
//! sent to the local agent (a manager), printed the way Docker prints them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_control::api::{ApiRequest, Done, NetworkView};

use super::client;
use super::format;

/// How many characters of an id `network ls` shows, as Docker does.
const SHORT_ID: usize = 12;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create an overlay network spanning the swarm; prints its id.
    Create(CreateArgs),
    /// List the swarm's networks.
    #[command(alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Full ids.
        #[arg(long)]
        no_trunc: bool,
        /// `json`, or a Go template such as '{{.Name}} {{.Driver}}'.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show networks in detail (Docker's JSON).
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
        /// `json`, or a Go template such as '{{json .IPAM.Config}}'.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Only `overlay`.
    #[arg(short, long)]
    driver: Option<String>,
    /// IPv4 CIDR (default: the first free /24 of 10.0.0.0/8).
    #[arg(long)]
    subnet: Option<String>,
    /// The subnet's gateway (default: its first address); needs --subnet.
    #[arg(long)]
    gateway: Option<String>,
    /// Driver option; only `mtu=N`. Repeatable.
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// `key=value` or `key`; repeatable.
    #[arg(long)]
    label: Vec<String>,
    name: String,
}

impl NetworkCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        match self {
            NetworkCommand::Create(args) => {
                let request = ApiRequest::NetworkCreate {
                    mtu: parse_mtu(&args.opt)?,
                    labels: parse_labels(&args.label)?,
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
            } => {
                let networks: Vec<NetworkView> =
                    client::api(socket, ApiRequest::NetworkList).await?;
                print!("{}", list(&networks, quiet, no_trunc, format.as_deref())?);
                Ok(())
            }
            NetworkCommand::Inspect { networks, format } => {
                let mut views = Vec::new();
                let mut errors = Vec::new();
                for name_or_id in networks {
                    let request = ApiRequest::NetworkInspect { name_or_id };
                    match client::api::<NetworkView>(socket, request).await {
                        Ok(network) => views.push(network),
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
                match format.as_deref() {
                    // Straight from the view, to keep Docker's field order.
                    None | Some("json") => println!("{}", serde_json::to_string_pretty(&views)?),
                    Some(template) => {
                        for v in &views {
                            println!("{}", format::render(template, &serde_json::to_value(v)?)?);
                        }
                    }
                }
                if !errors.is_empty() {
                    bail!("{}", errors.join("\n"));
                }
                Ok(())
            }
            NetworkCommand::Rm { networks } => {
                let mut errors = Vec::new();
                for name_or_id in networks {
                    let request = ApiRequest::NetworkRemove { name_or_id };
                    match client::api::<Done>(socket, request).await {
                        Ok(Done { message }) => println!("{message}"),
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
                if !errors.is_empty() {
                    bail!("{}", errors.join("\n"));
                }
                Ok(())
            }
        }
    }
}

/// `network ls` output: Docker's table, ids only, or each row through a
/// template (`json` prints each row as JSON).
fn list(
    networks: &[NetworkView],
    quiet: bool,
    no_trunc: bool,
    format: Option<&str>,
) -> anyhow::Result<String> {
    let id = |n: &NetworkView| -> String {
        if no_trunc {
            n.id.clone()
        } else {
            n.id.chars().take(SHORT_ID).collect()
        }
    };
    let mut out = String::new();
    if quiet {
        for n in networks {
            out.push_str(&id(n));
            out.push('\n');
        }
        return Ok(out);
    }
    match format {
        Some(template) => {
            for n in networks {
                let row = ls_row(n, id(n));
                let line = if template == "json" {
                    row.to_string()
                } else {
                    format::render(template, &row)?
                };
                out.push_str(&line);
                out.push('\n');
            }
        }
        None => {
            let rows: Vec<Vec<String>> = networks
                .iter()
                .map(|n| vec![id(n), n.name.clone(), n.driver.clone(), n.scope.clone()])
                .collect();
            out = format::table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
        }
    }
    Ok(out)
}

/// The fields `network ls --format` sees, as Docker names them (all strings).
fn ls_row(n: &NetworkView, id: String) -> Value {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let created = n.created.replacen('T', " ", 1).replace('Z', " +0000 UTC");
    json!({
        "ID": id,
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope,
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": created,
    })
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
    use shoal_control::objects::{Network, NetworkSpec};

    use super::*;

    fn view(name: &str, id: &str, vni: u32) -> NetworkView {
        NetworkView::new(&Network {
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
        })
    }

    #[test]
    fn ls_prints_dockers_table_with_short_ids() {
        let nets = [
            view("backend", "0123456789abcdefghijklmno", 4096),
            view("web", "zzzzzzzzzzzzzzzzzzzzzzzzz", 4097),
        ];
        assert_eq!(
            list(&nets, false, false, None).unwrap(),
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             0123456789ab   backend   overlay   swarm\n\
             zzzzzzzzzzzz   web       overlay   swarm\n"
        );
        assert_eq!(
            list(&nets, true, false, None).unwrap(),
            "0123456789ab\nzzzzzzzzzzzz\n"
        );
        assert_eq!(
            list(&nets, true, true, None).unwrap(),
            "0123456789abcdefghijklmno\nzzzzzzzzzzzzzzzzzzzzzzzzz\n"
        );
        assert_eq!(
            list(
                &nets,
                false,
                false,
                Some("{{.Name}}: {{.Driver}} {{.Labels}}")
            )
            .unwrap(),
            "backend: overlay a=1,b=\nweb: overlay a=1,b=\n"
        );
        let json_row: Value =
            serde_json::from_str(list(&nets[..1], false, false, Some("json")).unwrap().trim())
                .unwrap();
        assert_eq!(json_row["ID"], "0123456789ab");
        assert_eq!(json_row["CreatedAt"], "1970-01-01 00:00:00 +0000 UTC");
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
