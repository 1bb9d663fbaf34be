//! `shoal image ...` on the agent's Unix socket: the `Images` service
//! (`control/proto/images.proto`) over the node's [`ImageStore`]. Each verb
//! answers with a stream of [`ImageEvent`]s, so a pull shows its layers'
//! progress as Docker's CLI does. Served only on the local socket, whose
//! file access (root, 0600) is the authorization, as for the other local
//! calls.

use shoal_control::error_chain::ErrorChain;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};
use shoal_control::proto::images::images_server::Images;
use shoal_control::proto::images::ImageJson;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::Agent;
use crate::executor::{VolumeError, VolumeUse};
use crate::image::{
    Credentials, ImageError, ImageRecord, ImageStore, LayerProgress, PullEvent, Reference,
};

/// A verb of `shoal image`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageRequest {
    List,
    /// `pull`, with what the CLI found in its `~/.docker/config.json`.
    Pull {
        reference: String,
        #[serde(default)]
        credentials: Credentials,
    },
    Remove {
        names: Vec<String>,
        force: bool,
    },
    Prune {
        all: bool,
    },
    /// `load -i FILE`: the agent reads the archive at this absolute path.
    Load {
        path: PathBuf,
    },
    Inspect {
        names: Vec<String>,
    },
    /// `volume ls`: the node's named volumes (served here, beside the
    /// images: both are the node's local storage for containers).
    VolumeList,
    /// `volume rm [-f] NAMES`: never one a container of the node mounts.
    VolumeRemove {
        names: Vec<String>,
        force: bool,
    },
}

/// What a verb reports.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageEvent {
    /// A line to print as is (`Pull complete`, `Deleted: ...`).
    Line(String),
    /// `image ls`.
    Images(Vec<ImageRecord>),
    /// `image inspect`: one object per name.
    Inspected(Vec<serde_json::Value>),
    /// `volume ls`.
    Volumes(Vec<VolumeUse>),
}

type Events = Pin<Box<dyn Stream<Item = Result<ImageJson, Status>> + Send>>;

/// The `Images` service of one agent.
pub struct ImagesApi(pub Arc<Agent>);

#[tonic::async_trait]
impl Images for ImagesApi {
    type RunStream = Events;

    async fn run(&self, req: Request<ImageJson>) -> Result<Response<Events>, Status> {
        let request: ImageRequest = serde_json::from_str(&req.into_inner().json).map_err(|e| {
            Status::invalid_argument(format!("unreadable image request: {}", e.chain()))
        })?;
        if let ImageRequest::VolumeList | ImageRequest::VolumeRemove { .. } = &request {
            return volumes(&self.0, request);
        }
        let store = self.0.images().ok_or_else(|| {
            Status::failed_precondition(
                "this node has no image store: it is not in a swarm yet (shoal swarm init|join), \
                 or runc is not installed (apt-get install runc)",
            )
        })?;
        let (tx, rx) = mpsc::unbounded_channel::<Result<ImageEvent, Status>>();
        // On a thread of its own: the pull's future is not `Send` (the
        // layer stream's closures), so it is driven by `block_on` there,
        // as the container runtime drives its pulls.
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = handle.block_on(answer(&store, request, &tx)) {
                let _ = tx.send(Err(image_status(&e)));
            }
        });
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let stream = futures::StreamExt::map(stream, |item| {
            item.and_then(|event| {
                serde_json::to_string(&event)
                    .map(|json| ImageJson { json })
                    .map_err(|e| Status::internal(e.chain().to_string()))
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// `volume ls|rm`, answered at once (the checks hold the container
/// runtime's lock, briefly).
fn volumes(agent: &Agent, request: ImageRequest) -> Result<Response<Events>, Status> {
    let containers = agent.containers().ok_or_else(|| {
        Status::failed_precondition(
            "this node has no volumes: it is not in a swarm yet (shoal swarm init|join), \
             or runc is not installed (apt-get install runc)",
        )
    })?;
    let mut events = Vec::new();
    match request {
        ImageRequest::VolumeRemove { names, force } => {
            // Docker goes on past a volume it cannot remove, then fails.
            let mut failed = Vec::new();
            for name in names {
                match containers.volume_remove(&name, force) {
                    Ok(()) => events.push(Ok(ImageEvent::Line(name))),
                    Err(e @ VolumeError::NotFound(_)) => {
                        failed.push((tonic::Code::NotFound, e.to_string()))
                    }
                    Err(e @ VolumeError::InUse { .. }) => {
                        failed.push((tonic::Code::FailedPrecondition, e.to_string()))
                    }
                    Err(e @ VolumeError::Io { .. }) => {
                        failed.push((tonic::Code::Internal, format!("{e}: {}", io_source(&e))))
                    }
                }
            }
            if let Some((code, _)) = failed.first() {
                let message: Vec<String> = failed.iter().map(|(_, m)| m.clone()).collect();
                events.push(Err(Status::new(*code, message.join("\n"))));
            }
        }
        _ => events.push(Ok(ImageEvent::Volumes(containers.volume_list()))),
    }
    let stream = futures::stream::iter(events.into_iter().map(|item| {
        item.and_then(|event| {
            serde_json::to_string(&event)
                .map(|json| ImageJson { json })
                .map_err(|e| Status::internal(e.to_string()))
        })
    }));
    Ok(Response::new(Box::pin(stream)))
}

fn io_source(e: &VolumeError) -> String {
    std::error::Error::source(e).map_or_else(String::new, |s| s.to_string())
}

type Sender = mpsc::UnboundedSender<Result<ImageEvent, Status>>;

fn line(tx: &Sender, text: impl Into<String>) {
    let _ = tx.send(Ok(ImageEvent::Line(text.into())));
}

async fn answer(
    store: &Arc<ImageStore>,
    request: ImageRequest,
    tx: &Sender,
) -> Result<(), ImageError> {
    match request {
        ImageRequest::List => {
            let _ = tx.send(Ok(ImageEvent::Images(store.list())));
        }
        ImageRequest::Pull {
            reference,
            credentials,
        } => pull(store, &reference, &credentials, tx).await?,
        ImageRequest::Remove { names, force } => {
            // Docker goes on past a name it cannot remove, then fails.
            let mut failed: Option<Status> = None;
            for name in names {
                match store.remove(&name, force) {
                    Ok(done) => done.iter().for_each(|d| line(tx, d.to_string())),
                    Err(e) => {
                        let status = image_status(&e);
                        failed = Some(match failed {
                            None => status,
                            Some(before) => Status::new(
                                status.code(),
                                format!("{}\n{}", before.message(), status.message()),
                            ),
                        });
                    }
                }
            }
            if let Some(status) = failed {
                let _ = tx.send(Err(status));
            }
        }
        ImageRequest::Prune { all } => {
            let store = store.clone();
            let (victims, freed) = blocking(move || store.prune(all)).await?;
            if !victims.is_empty() {
                line(tx, "Deleted Images:");
                for id in &victims {
                    line(tx, format!("deleted: {id}"));
                }
                line(tx, "");
            }
            line(tx, format!("Total reclaimed space: {}", human_size(freed)));
        }
        ImageRequest::Load { path } => {
            let loader = store.clone();
            let records = blocking(move || loader.load(&path, None)).await?;
            for record in records {
                if record.repo_tags.is_empty() {
                    line(tx, format!("Loaded image ID: {}", record.id));
                }
                for tag in &record.repo_tags {
                    line(tx, format!("Loaded image: {}", familiar(tag)));
                }
            }
        }
        // Answered by `volumes`, before the image store is asked.
        ImageRequest::VolumeList | ImageRequest::VolumeRemove { .. } => {}
        ImageRequest::Inspect { names } => {
            let mut found = Vec::new();
            for name in names {
                let record = store.find(&name)?;
                let config = store.config_json(&record.id)?;
                found.push(inspect_json(&record, &config));
            }
            let _ = tx.send(Ok(ImageEvent::Inspected(found)));
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ImageError::Archive(format!(
            "the image work failed: {}",
            e.chain()
        )))
    })
}

/// Pulls with Docker's lines: `TAG: Pulling from REPO`, per layer
/// `Already exists` or `Downloading DONE/TOTAL` then `Pull complete`, then
/// `Digest:`, `Status:` and the full reference.
async fn pull(
    store: &ImageStore,
    name: &str,
    credentials: &Credentials,
    tx: &Sender,
) -> Result<(), ImageError> {
    let reference = Reference::parse(name)?;
    let downloaded = std::sync::atomic::AtomicBool::new(false);
    let digest = std::sync::Mutex::new(None);
    let progress = |event: PullEvent| match event {
        PullEvent::Resolved { digest: d, .. } => {
            let what = reference
                .tag()
                .map_or_else(|| d.to_string(), |t| t.to_string());
            line(
                tx,
                format!("{what}: Pulling from {}", reference.repository()),
            );
            *digest.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
        }
        PullEvent::Layer {
            digest: d,
            progress,
        } => {
            let short = d.short().to_string();
            let text = match progress {
                LayerProgress::Exists => "Already exists".to_string(),
                LayerProgress::Downloading { done, total } => {
                    downloaded.store(true, std::sync::atomic::Ordering::Relaxed);
                    format!("Downloading {}/{}", human_size(done), human_size(total))
                }
                LayerProgress::Extracting => "Extracting".to_string(),
                LayerProgress::Complete => "Pull complete".to_string(),
            };
            line(tx, format!("{short}: {text}"));
        }
        PullEvent::Done { .. } => {}
    };
    store.pull(&reference, credentials, &progress).await?;
    let digest = digest.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(digest) = &digest {
        line(tx, format!("Digest: {digest}"));
    }
    let status = if downloaded.load(std::sync::atomic::Ordering::Relaxed) {
        "Downloaded newer image for"
    } else {
        "Image is up to date for"
    };
    line(tx, format!("Status: {status} {}", reference.familiar()));
    line(tx, reference.to_string());
    Ok(())
}

/// Docker's `image inspect` object, from the record and the config.
fn inspect_json(record: &ImageRecord, config: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "Id": record.id.to_string(),
        "RepoTags": record.repo_tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": record.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Created": record.created.clone().unwrap_or_default(),
        "Architecture": record.architecture,
        "Os": record.os,
        "Variant": config.get("variant").cloned().unwrap_or(serde_json::Value::Null),
        "Size": record.size(),
        "Config": config.get("config").cloned().unwrap_or(serde_json::Value::Null),
        "RootFS": {
            "Type": "layers",
            "Layers": record.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "Shoal": {
            "Layers": record.layers.iter().map(|l| serde_json::json!({
                "DiffID": l.diff_id.to_string(),
                "Blob": l.blob.as_ref().map(|b| b.to_string()),
                "Size": l.size,
            })).collect::<Vec<_>>(),
            "LastUsed": record.last_used,
        },
    })
}

fn familiar(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

fn image_status(e: &ImageError) -> Status {
    match e {
        ImageError::NoSuchImage(_) => Status::not_found(e.chain().to_string()),
        ImageError::InUse { .. } => Status::failed_precondition(e.chain().to_string()),
        _ => Status::unknown(e.chain().to_string()),
    }
}

/// Docker's sizes: decimal units, three significant digits (`1.1MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // Three significant digits, trailing zeros dropped, as Go's %.3g.
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let rounded = format!("{value:.digits$}");
    let trimmed = if rounded.contains('.') {
        rounded
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        rounded
    };
    format!("{trimmed}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_100_000), "1.1MB");
        assert_eq!(human_size(524_288), "524kB");
        assert_eq!(human_size(47_123_456), "47.1MB");
        assert_eq!(human_size(1_000), "1kB");
    }
}
