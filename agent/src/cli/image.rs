//! `shoal image ls|pull|rm|prune|load|inspect`: this node's images, through
//! the local agent's `Images` service, printed as Docker prints them. A
//! pull streams its layers' progress; its credentials come from the
//! client's `~/.docker/config.json`, as `docker pull`'s do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use shoal_control::proto::images::images_client::ImagesClient;
use shoal_control::proto::images::ImageJson;

use super::{client, format};
use crate::daemon::{human_size, ImageEvent, ImageRequest};
use crate::image::{Credentials, ImageRecord, Reference};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List this node's images.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Pull an image from a registry onto this node.
    Pull {
        /// The image: NAME[:TAG][@DIGEST].
        image: String,
    },
    /// Remove images from this node (never one a task uses).
    #[command(alias = "remove")]
    Rm {
        /// Untag and remove even an image referenced by several tags.
        #[arg(short, long)]
        force: bool,
        /// Images by name, id or id prefix.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images no task uses, and layers no image references.
    Prune {
        /// Every unused image, not only untagged ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation (there is none to ask: accepted for
        /// Docker's scripts).
        #[arg(short, long)]
        force: bool,
    },
    /// Load images from a docker save tarball or an OCI archive.
    Load {
        /// The archive to read.
        #[arg(short, long)]
        input: PathBuf,
        /// Print less.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Docker's JSON for images on this node.
    Inspect {
        /// Print each image through a Go template instead of JSON.
        #[arg(short, long)]
        format: Option<String>,
        /// Images by name, id or id prefix.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Full image ids.
    #[arg(long)]
    no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
}

impl ImageCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        let request = match &self {
            ImageCommand::Ls(_) => ImageRequest::List,
            ImageCommand::Pull { image } => {
                let reference = Reference::parse(image)?;
                ImageRequest::Pull {
                    reference: image.clone(),
                    credentials: docker_credentials(&reference)?,
                }
            }
            ImageCommand::Rm { force, images } => ImageRequest::Remove {
                names: images.clone(),
                force: *force,
            },
            ImageCommand::Prune { all, .. } => ImageRequest::Prune { all: *all },
            ImageCommand::Load { input, .. } => ImageRequest::Load {
                path: std::path::absolute(input)
                    .with_context(|| format!("cannot resolve {}", input.display()))?,
            },
            ImageCommand::Inspect { images, .. } => ImageRequest::Inspect {
                names: images.clone(),
            },
        };
        image_events(socket, &request, |event| {
            Ok(match event {
                ImageEvent::Line(text) => match &self {
                    ImageCommand::Load { quiet: true, .. } => None,
                    _ => Some(text + "\n"),
                },
                ImageEvent::Images(records) => match &self {
                    ImageCommand::Ls(args) => Some(list(&records, args, now_unix())),
                    _ => None,
                },
                ImageEvent::Inspected(objects) => match &self {
                    ImageCommand::Inspect { format: f, .. } => {
                        Some(format::inspect(&objects, f.as_deref())?)
                    }
                    _ => None,
                },
                ImageEvent::Volumes(_) => None,
            })
        })
        .await
    }
}

/// Sends `request` to the local agent's `Images` service and writes to
/// stdout, as it arrives, the text `print` makes of each answer (`None`:
/// nothing for this command).
pub(super) async fn image_events(
    socket: &Path,
    request: &ImageRequest,
    mut print: impl FnMut(ImageEvent) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<()> {
    let channel = client::connect(socket).await?;
    let json = serde_json::to_string(request)?;
    let mut events = ImagesClient::new(channel)
        .run(ImageJson { json })
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner();
    let mut stdout = std::io::stdout();
    while let Some(item) = events.next().await {
        let item = item.map_err(|status| anyhow::anyhow!("{}", status.message()))?;
        let event: ImageEvent =
            serde_json::from_str(&item.json).context("the agent sent an unreadable answer")?;
        if let Some(text) = print(event)? {
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(())
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `image ls`: REPOSITORY TAG IMAGE ID CREATED SIZE, a row per tag (an
/// untagged image shows `<none>`).
fn list(records: &[ImageRecord], args: &LsArgs, now: u64) -> String {
    let id = |r: &ImageRecord| {
        if args.no_trunc {
            r.id.to_string()
        } else {
            r.id.short().to_string()
        }
    };
    if args.quiet {
        let mut ids: Vec<String> = records.iter().map(id).collect();
        ids.dedup();
        return ids.iter().map(|i| format!("{i}\n")).collect();
    }
    let mut rows = Vec::new();
    for record in records {
        let created = record
            .created
            .as_deref()
            .and_then(rfc3339_unix)
            .map_or_else(
                || "N/A".to_string(),
                |t| {
                    let age = super::service::human_duration(now.saturating_sub(t) * 1000);
                    format!("{age} ago")
                },
            );
        let digest = |repo: &str| {
            record
                .repo_digests
                .iter()
                .filter_map(|d| d.split_once('@'))
                .find(|(name, _)| *name == repo)
                .map_or("<none>".to_string(), |(_, d)| d.to_string())
        };
        let mut names: Vec<(String, String, String)> = record
            .repo_tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| {
                let familiar = r.familiar();
                let repo = familiar
                    .rsplit_once(':')
                    .map_or(familiar.clone(), |(repo, _)| repo.to_string());
                (
                    repo,
                    r.tag().unwrap_or("<none>").to_string(),
                    digest(&r.name()),
                )
            })
            .collect();
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into(), "<none>".into()));
        }
        for (repo, tag, digest) in names {
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(digest);
            }
            row.extend([id(record), created.clone(), human_size(record.size())]);
            rows.push(row);
        }
    }
    let headers: &[&str] = if args.digests {
        &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    } else {
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    };
    format::table(headers, &rows)
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-07T04:09:05.1Z`,
/// `...+02:00`), as image configs say when they were made.
fn rfc3339_unix(text: &str) -> Option<u64> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let clock_end = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(clock_end);
    let clock = clock.split('.').next()?;
    let mut hms = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (hms.next()??, hms.next()??, hms.next()??);
    let offset = match zone.as_bytes().first() {
        Some(b'+') | Some(b'-') => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
        _ => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss - offset).ok()
}

/// The credentials the client's Docker config holds for `reference`'s
/// registry (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
/// `auths.<host>.auth`); anonymous when there are none. Credential helpers
/// are refused by name: shoal does not run them.
pub fn docker_credentials(reference: &Reference) -> anyhow::Result<Credentials> {
    let Some(path) = docker_config_path() else {
        return Ok(Credentials::Anonymous);
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let registry = reference.registry();
    let credentials = Credentials::from_docker_config(&bytes, registry)
        .with_context(|| format!("{}", path.display()))?;
    if credentials == Credentials::Anonymous {
        if let Some(helper) = credential_helper(&bytes, registry) {
            anyhow::bail!(
                "{}: the credentials for {registry} are kept by the credential helper \
                 `docker-credential-{helper}`, which shoal does not run; log in with \
                 them written to the file instead (an `auths.\"{registry}\".auth` entry)",
                path.display()
            );
        }
    }
    Ok(credentials)
}

/// `--with-registry-auth`: the client's credentials for the spec's image
/// registry, carried in the spec to the managers (and by them only to the
/// nodes that run its tasks) in Docker's `X-Registry-Auth` form.
pub fn attach_registry_auth(spec: &mut shoal_control::objects::ServiceSpec) -> anyhow::Result<()> {
    let Some(container) = spec.task.container.as_mut() else {
        anyhow::bail!("--with-registry-auth needs an image: this service runs a host process");
    };
    let reference = Reference::parse(&container.image)?;
    let credentials = docker_credentials(&reference)?;
    container.registry_auth = shoal_control::objects::RegistryAuth(
        credentials.to_registry_auth_header(reference.registry()),
    );
    Ok(())
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The helper a Docker config names for `registry` (`credHelpers`, else
/// `credsStore`), if any.
fn credential_helper(config: &[u8], registry: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(config).ok()?;
    if let Some(helper) = value
        .get("credHelpers")
        .and_then(|h| h.get(registry))
        .and_then(|h| h.as_str())
    {
        return Some(helper.to_string());
    }
    value
        .get("credsStore")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Digest, LayerRecord};

    #[test]
    fn rfc3339_times_read_as_unix_seconds() {
        assert_eq!(rfc3339_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_unix("2026-12-07T04:09:05.123456789Z"),
            Some(1_796_616_545)
        );
        assert_eq!(
            rfc3339_unix("2026-12-07T06:09:05+02:00"),
            Some(1_796_616_545)
        );
        assert_eq!(rfc3339_unix("yesterday"), None);
    }

    fn record(tags: &[&str], size: u64) -> ImageRecord {
        ImageRecord {
            id: Digest::of(b"config"),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![],
            layers: vec![LayerRecord {
                diff_id: Digest::of(b"layer"),
                blob: None,
                size,
            }],
            os: "linux".into(),
            architecture: "amd64".into(),
            created: Some("2026-12-07T02:09:05Z".into()),
            added: 0,
            last_used: 0,
        }
    }

    #[test]
    fn ls_prints_dockers_columns_a_row_per_tag() {
        let args = LsArgs {
            quiet: false,
            no_trunc: false,
            digests: false,
        };
        let records = [
            record(
                &["127.0.0.1:5000/web:1", "docker.io/library/busybox:latest"],
                1_100_000,
            ),
            record(&[], 5),
        ];
        let out = list(&records, &args, 1_796_616_545);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("REPOSITORY"), "{out}");
        let id = Digest::of(b"config").short().to_string();
        let cells: Vec<Vec<&str>> = lines[1..]
            .iter()
            .map(|l| {
                l.split("   ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells[0],
            [
                "127.0.0.1:5000/web",
                "1",
                id.as_str(),
                "2 hours ago",
                "1.1MB"
            ]
        );
        assert_eq!(
            cells[1],
            ["busybox", "latest", id.as_str(), "2 hours ago", "1.1MB"]
        );
        assert_eq!(
            cells[2],
            ["<none>", "<none>", id.as_str(), "2 hours ago", "5B"]
        );
    }

    #[test]
    fn a_credential_helper_is_named() {
        let config = br#"{"auths":{},"credHelpers":{"r.example:5000":"pass"}}"#;
        assert_eq!(
            credential_helper(config, "r.example:5000").as_deref(),
            Some("pass")
        );
        assert_eq!(credential_helper(config, "other"), None);
        let store = br#"{"credsStore":"desktop"}"#;
        assert_eq!(
            credential_helper(store, "other").as_deref(),
            Some("desktop")
        );
    }
}
