//! `shoal secret create|ls|inspect|rm` and `shoal config create|ls|inspect|rm`:
//! Docker's verbs, output and flags. The data is read from a file or stdin
//! (`-`) and sent once to the managers; `secret inspect` never shows it
//! (the managers never send it back), `config inspect` does, in base64.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;
use shoal_control::api::{ApiRequest, Done, PayloadView};
use shoal_control::objects::{PayloadData, MAX_PAYLOAD_BYTES};

use super::client;
use super::each::Each;
use super::format::{self, natural_cmp, Listing, Row};
use super::service::human_duration;

pub use shoal_control::api::PayloadClass;

#[derive(Debug, Subcommand)]
pub enum PayloadCommand {
    /// Create from a file or from stdin (a dash); prints its id.
    Create {
        /// Labels: key=value or key. Repeatable.
        #[arg(short, long, value_name = "KEY=VALUE")]
        label: Vec<String>,
        /// Its name.
        name: String,
        /// A file holding the data, or a dash for stdin.
        file: PathBuf,
    },
    /// List them.
    #[command(alias = "list")]
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// A Go template, or 'json'.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information (Docker's JSON).
    Inspect {
        /// Names, ids or unique id prefixes.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Format the output using a Go template.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Remove one or more.
    #[command(alias = "remove")]
    Rm {
        /// Names, ids or unique id prefixes.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

impl PayloadCommand {
    pub async fn run(self, class: PayloadClass, socket: &Path) -> anyhow::Result<()> {
        match self {
            PayloadCommand::Create { label, name, file } => {
                let data = PayloadData(read_data(&file)?);
                let labels = label
                    .iter()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                        if k.is_empty() {
                            bail!("invalid label `{kv}`: use key=value");
                        }
                        Ok((k.to_string(), v.to_string()))
                    })
                    .collect::<anyhow::Result<_>>()?;
                let request = match class {
                    PayloadClass::Secret => ApiRequest::SecretCreate { name, labels, data },
                    PayloadClass::Config => ApiRequest::ConfigCreate { name, labels, data },
                };
                let created: PayloadView = client::api(socket, request).await?;
                println!("{}", created.id);
                Ok(())
            }
            PayloadCommand::Ls { quiet, format } => {
                let request = match class {
                    PayloadClass::Secret => ApiRequest::SecretList,
                    PayloadClass::Config => ApiRequest::ConfigList,
                };
                let items: Vec<PayloadView> = client::api(socket, request).await?;
                print!(
                    "{}",
                    list(class, items, quiet, format.as_deref(), now_secs())?
                );
                Ok(())
            }
            PayloadCommand::Inspect { names, format } => {
                let each = Each::run(names, |name| async move {
                    let request = match class {
                        PayloadClass::Secret => ApiRequest::SecretInspect { secret: name },
                        PayloadClass::Config => ApiRequest::ConfigInspect { config: name },
                    };
                    client::api::<PayloadView>(socket, request).await
                })
                .await;
                print!("{}", format::inspect(&each.answers, format.as_deref())?);
                each.finish()
            }
            PayloadCommand::Rm { names } => {
                Each::run(names, |name| async move {
                    let request = match class {
                        PayloadClass::Secret => ApiRequest::SecretRemove {
                            secret: name.clone(),
                        },
                        PayloadClass::Config => ApiRequest::ConfigRemove {
                            config: name.clone(),
                        },
                    };
                    client::api::<Done>(socket, request).await?;
                    // Docker prints what was asked for.
                    println!("{name}");
                    Ok(())
                })
                .await
                .finish()
            }
        }
    }
}

/// The data of `file` (`-`: stdin), at most [`MAX_PAYLOAD_BYTES`] (read
/// one byte more, so a larger one is refused here with the managers'
/// limit).
fn read_data(file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    let limit = MAX_PAYLOAD_BYTES as u64 + 1;
    if file == Path::new("-") {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut data)
            .context("reading the data from stdin")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut data))
            .with_context(|| format!("reading {}", file.display()))?;
    }
    if data.len() > MAX_PAYLOAD_BYTES {
        bail!("the data is over the limit of {MAX_PAYLOAD_BYTES} bytes (500 KB)");
    }
    Ok(data)
}

const SECRETS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("CreatedAt", "CREATED"),
        ("UpdatedAt", "UPDATED"),
        ("Labels", "LABELS"),
    ],
    row_type: "*formatter.secretContext",
};

const CONFIGS: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("CreatedAt", "CREATED"),
        ("UpdatedAt", "UPDATED"),
        ("Labels", "LABELS"),
    ],
    row_type: "*formatter.configContext",
};

/// `secret ls` / `config ls` output, by name.
fn list(
    class: PayloadClass,
    mut items: Vec<PayloadView>,
    quiet: bool,
    format: Option<&str>,
    now: u64,
) -> anyhow::Result<String> {
    items.sort_by(|a, b| natural_cmp(&a.spec.name, &b.spec.name));
    let ago = |t: &str| {
        let secs = unix_secs(t).unwrap_or(now);
        format!("{} ago", human_duration(now.saturating_sub(secs) * 1000))
    };
    let rows: Vec<Row> = items
        .iter()
        .map(|p| {
            let labels: Vec<String> = p
                .spec
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Row::new(json!({
                "ID": p.id,
                "Name": p.spec.name,
                "Driver": "",
                "CreatedAt": ago(&p.created_at),
                "UpdatedAt": ago(&p.updated_at),
                "Labels": labels.join(","),
            }))
            .with_labels(&p.spec.labels)
        })
        .collect();
    let listing = match class {
        PayloadClass::Secret => &SECRETS,
        PayloadClass::Config => &CONFIGS,
    };
    Ok(format::list(
        listing,
        format::resolve(listing, format, quiet),
        &rows,
    )?)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (what the managers send).
fn unix_secs(text: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    if text.len() < 20 {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::api::{ObjectVersion, PayloadSpecView};

    fn item(id: &str, name: &str) -> PayloadView {
        PayloadView {
            id: id.into(),
            version: ObjectVersion { index: 3 },
            created_at: "2026-12-07T04:00:00Z".into(),
            updated_at: "2026-12-07T04:00:00Z".into(),
            spec: PayloadSpecView {
                name: name.into(),
                labels: Default::default(),
                data: None,
            },
        }
    }

    #[test]
    fn times_read_back() {
        assert_eq!(unix_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_secs("2026-12-07T04:00:00Z"), Some(1_796_616_000));
        assert_eq!(unix_secs("garbage"), None);
    }

    #[test]
    fn ls_prints_dockers_columns() {
        let now = 1_796_616_000 + 90;
        let items = vec![item("bbbb", "web_tls"), item("aaaa", "db_pw")];
        assert_eq!(
            list(PayloadClass::Secret, items.clone(), false, None, now).unwrap(),
            "ID        NAME      DRIVER    CREATED              UPDATED\n\
             aaaa      db_pw               About a minute ago   About a minute ago\n\
             bbbb      web_tls             About a minute ago   About a minute ago\n"
        );
        assert_eq!(
            list(PayloadClass::Config, items.clone(), true, None, now).unwrap(),
            "aaaa\nbbbb\n"
        );
        assert_eq!(
            list(PayloadClass::Config, items, false, Some("{{.Name}}"), now).unwrap(),
            "db_pw\nweb_tls\n"
        );
    }
}
