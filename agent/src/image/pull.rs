//! Pulling from a registry (the distribution API, through `oci-client`):
//! the manifest (an index resolved to this node's platform), the config,
//! then each layer this node lacks, streamed to disk while hashed, checked,
//! unpacked once and its compressed blob dropped. Plain HTTP only for the
//! registries the operator names and loopback ones, as Docker allows.
//! Progress goes to a callback, for the CLI.

use shoal_control::error_chain::ErrorChain;
use std::net::IpAddr;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::Client;

use super::config::{ImageConfig, MAX_CONFIG};
use super::digest::Digest;
use super::error::ImageError;
use super::manifest::{self, Descriptor, ImageManifest, Manifest, Platform, ACCEPTED};
use super::reference::Reference;
use super::store::{now_unix, ImageRecord, LayerRecord};
use super::{Credentials, ImageStore};

/// How many layers download at once.
const PARALLEL_LAYERS: usize = 3;
/// Progress is reported at most every this many bytes of a layer.
const PROGRESS_EVERY: u64 = 512 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The operator's registry and image store settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP. Loopback
    /// registries always are.
    pub insecure: Vec<String>,
    /// When unused images are collected.
    pub gc: super::GcPolicy,
}

impl RegistryOptions {
    /// True when `registry` may be spoken to without TLS.
    pub fn is_insecure(&self, registry: &str) -> bool {
        if self.insecure.iter().any(|r| r == registry) {
            return true;
        }
        let host = match registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
        };
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Where a layer's pull stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerProgress {
    /// The node has it already.
    Exists,
    Downloading {
        done: u64,
        total: u64,
    },
    Extracting,
    Complete,
}

/// What a pull reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullEvent {
    /// The reference's manifest digest.
    Resolved { reference: String, digest: Digest },
    /// One layer, by its blob digest.
    Layer {
        digest: Digest,
        progress: LayerProgress,
    },
    /// The image is on the node.
    Done { id: Digest },
}

/// A pull's progress callback.
pub type Progress<'a> = &'a (dyn Fn(PullEvent) + Send + Sync);

/// What the registry holds for a reference, without pulling it (Docker's
/// `/distribution/{name}/json`): the top manifest's descriptor and the
/// platforms it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteImage {
    pub descriptor: Descriptor,
    /// An index's platforms in its order; one image's from its config.
    pub platforms: Vec<Platform>,
}

impl ImageStore {
    fn client(&self, reference: &Reference) -> Result<Client, ImageError> {
        let protocol = if self.registry.is_insecure(reference.registry()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        Client::try_from(config).map_err(|e| registry_error(reference, e))
    }

    /// The manifest digest a reference names now: its own digest, or the
    /// registry's answer for its tag. Managers call this at service create
    /// so every node runs the same bytes.
    pub async fn resolve_digest(
        &self,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<Digest, ImageError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        let client = self.client(reference)?;
        let (_, digest) = fetch_manifest(&client, reference, credentials).await?;
        Ok(digest)
    }

    /// What the registry holds for `reference` now: its manifest's media
    /// type, digest and size, and its platforms (an index's entries, or the
    /// config's of a single image).
    pub async fn inspect_remote(
        &self,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<RemoteImage, ImageError> {
        let client = self.client(reference)?;
        let (bytes, digest) = fetch_manifest(&client, reference, credentials).await?;
        let what = reference.to_string();
        let parsed = manifest::parse(&bytes, None, &what)?;
        let descriptor = Descriptor {
            media_type: manifest::media_type(&bytes, &parsed),
            digest,
            size: bytes.len() as u64,
        };
        let platforms = match parsed {
            Manifest::Index(entries) => entries.into_iter().filter_map(|e| e.platform).collect(),
            Manifest::Image(image) => {
                let config_bytes = self.fetch_config(&client, reference, &image).await?;
                let config = ImageConfig::parse(&config_bytes, &format!("{what} config"))?;
                vec![Platform {
                    os: config.os,
                    architecture: config.architecture,
                    variant: config.variant,
                }]
            }
        };
        Ok(RemoteImage {
            descriptor,
            platforms,
        })
    }

    /// Pulls `reference` unless the node has it (a tag is always asked for
    /// again, as Docker does; a digest already here needs no registry).
    pub async fn pull(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        progress: Progress<'_>,
    ) -> Result<ImageRecord, ImageError> {
        let _busy = self.busy();
        if reference.digest().is_some() {
            if let Some(found) = self.lookup(reference) {
                if self.has_all_layers(&found) {
                    progress(PullEvent::Done {
                        id: found.id.clone(),
                    });
                    return Ok(found);
                }
            }
        }
        let client = self.client(reference)?;
        let (bytes, top_digest) = fetch_manifest(&client, reference, credentials).await?;
        progress(PullEvent::Resolved {
            reference: reference.familiar(),
            digest: top_digest.clone(),
        });
        let what = reference.to_string();
        let (image, manifest_bytes, manifest_digest) = match manifest::parse(&bytes, None, &what)? {
            Manifest::Image(image) => (image, bytes, top_digest.clone()),
            Manifest::Index(entries) => {
                let platform = Platform::current();
                let entry = manifest::select_platform(&entries, &platform).ok_or_else(|| {
                    ImageError::NoMatchingPlatform {
                        reference: reference.familiar(),
                        platform: platform.to_string(),
                        offered: manifest::offered(&entries),
                    }
                })?;
                let child = reference.with_digest(entry.descriptor.digest.clone());
                let (bytes, digest) = fetch_manifest(&client, &child, credentials).await?;
                match manifest::parse(&bytes, None, &what)? {
                    Manifest::Image(image) => (image, bytes, digest),
                    Manifest::Index(_) => {
                        return Err(ImageError::UnsupportedManifest {
                            reference: reference.familiar(),
                            reason: "an index inside an index".into(),
                        })
                    }
                }
            }
        };
        let config_bytes = self.fetch_config(&client, reference, &image).await?;
        let config = ImageConfig::parse(&config_bytes, &format!("{what} config"))?;
        let diff_ids = config.diff_ids()?;
        if diff_ids.len() != image.layers.len() {
            return Err(ImageError::malformed(
                &what,
                format!(
                    "the manifest lists {} layers but the config {} diff_ids",
                    image.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let layers: Vec<LayerRecord> = futures::stream::iter(image.layers.iter().zip(&diff_ids))
            .map(|(blob, diff_id)| self.fetch_layer(&client, reference, blob, diff_id, progress))
            .buffered(PARALLEL_LAYERS)
            .try_collect()
            .await?;
        self.layout.write_blob(
            &manifest_digest,
            &manifest_bytes,
            &format!("{what} manifest"),
        )?;
        self.layout.write_blob(
            &image.config.digest,
            &config_bytes,
            &format!("{what} config"),
        )?;
        let now = now_unix();
        let record = ImageRecord {
            id: image.config.digest.clone(),
            repo_tags: reference.tagged_name().into_iter().collect(),
            repo_digests: vec![format!("{}@{top_digest}", reference.name())],
            layers,
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            created: config.created.clone(),
            added: now,
            last_used: now,
        };
        let record = self.commit(record)?;
        progress(PullEvent::Done {
            id: record.id.clone(),
        });
        Ok(record)
    }

    fn has_all_layers(&self, record: &ImageRecord) -> bool {
        record
            .layers
            .iter()
            .all(|l| self.layout.has_layer(&l.diff_id))
    }

    async fn fetch_config(
        &self,
        client: &Client,
        reference: &Reference,
        image: &ImageManifest,
    ) -> Result<Vec<u8>, ImageError> {
        let digest = &image.config.digest;
        if self.layout.has_blob(digest) {
            return self.layout.read_blob(digest, MAX_CONFIG);
        }
        if image.config.size > MAX_CONFIG {
            return Err(ImageError::TooLarge {
                what: format!("{reference} config"),
                limit: MAX_CONFIG,
            });
        }
        let mut stream = client
            .pull_blob_stream(&reference.to_oci(), &oci_descriptor(&image.config))
            .await
            .map_err(|e| registry_error(reference, e))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unreachable(reference, e.chain().to_string()))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_CONFIG {
                return Err(ImageError::TooLarge {
                    what: format!("{reference} config"),
                    limit: MAX_CONFIG,
                });
            }
        }
        digest.verify(&Digest::of(&bytes), format!("{reference} config"))?;
        Ok(bytes)
    }

    /// Makes layer `diff_id` present, downloading `blob` if needed.
    async fn fetch_layer(
        &self,
        client: &Client,
        reference: &Reference,
        blob: &Descriptor,
        diff_id: &Digest,
        progress: Progress<'_>,
    ) -> Result<LayerRecord, ImageError> {
        let report = |p: LayerProgress| {
            progress(PullEvent::Layer {
                digest: blob.digest.clone(),
                progress: p,
            })
        };
        let lock = self.layer_lock(diff_id);
        let _held = lock.lock().await;
        let known_size = self.known_layer_size(diff_id);
        if let (true, Some(size)) = (self.layout.has_layer(diff_id), known_size) {
            report(LayerProgress::Exists);
            return Ok(LayerRecord {
                diff_id: diff_id.clone(),
                blob: Some(blob.digest.clone()),
                size,
            });
        }
        let what = format!("layer {} of {reference}", blob.digest);
        let mut writer = self.layout.blob_writer(&blob.digest, blob.size, &what)?;
        let mut stream = client
            .pull_blob_stream(&reference.to_oci(), &oci_descriptor(blob))
            .await
            .map_err(|e| registry_error(reference, e))?;
        let mut reported = 0;
        report(LayerProgress::Downloading {
            done: 0,
            total: blob.size,
        });
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unreachable(reference, e.chain().to_string()))?;
            writer.write(&chunk)?;
            if writer.written() - reported >= PROGRESS_EVERY {
                reported = writer.written();
                report(LayerProgress::Downloading {
                    done: reported,
                    total: blob.size,
                });
            }
        }
        let path = writer.commit()?;
        report(LayerProgress::Extracting);
        let layout = self.layout.clone();
        let (diff, blob_path) = (diff_id.clone(), path.clone());
        let size = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&blob_path).map_err(ImageError::io(&blob_path))?;
            layout.unpack_layer(file, &diff)
        })
        .await
        .map_err(|e| ImageError::Layer {
            digest: diff_id.to_string(),
            reason: format!("the unpacking thread failed: {}", e.chain()),
        })?;
        self.layout.remove_blob(&blob.digest);
        let size = size?;
        report(LayerProgress::Complete);
        Ok(LayerRecord {
            diff_id: diff_id.clone(),
            blob: Some(blob.digest.clone()),
            size,
        })
    }

    /// The size a stored image records for a layer.
    fn known_layer_size(&self, diff_id: &Digest) -> Option<u64> {
        self.lock()
            .images
            .values()
            .flat_map(|r| r.layers.iter())
            .find(|l| l.diff_id == *diff_id)
            .map(|l| l.size)
    }
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

/// Fetches a manifest (any kind) and checks its bytes: against the
/// reference's digest when it has one, else against the registry's.
async fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    credentials: &Credentials,
) -> Result<(Vec<u8>, Digest), ImageError> {
    let (bytes, announced) = client
        .pull_manifest_raw(&reference.to_oci(), &credentials.to_oci(), ACCEPTED)
        .await
        .map_err(|e| registry_error(reference, e))?;
    if bytes.len() as u64 > manifest::MAX_MANIFEST {
        return Err(ImageError::TooLarge {
            what: format!("{reference} manifest"),
            limit: manifest::MAX_MANIFEST,
        });
    }
    let actual = Digest::of(&bytes);
    let expected = match reference.digest() {
        Some(d) => d.clone(),
        None => Digest::parse(&announced).unwrap_or_else(|_| actual.clone()),
    };
    expected.verify(&actual, format!("{reference} manifest"))?;
    Ok((bytes.to_vec(), actual))
}

fn unreachable(reference: &Reference, message: String) -> ImageError {
    ImageError::Unreachable {
        reference: reference.familiar(),
        message,
    }
}

/// The registry client's error as the store's, with the registry's words.
fn registry_error(reference: &Reference, e: OciDistributionError) -> ImageError {
    let name = reference.familiar();
    match e {
        OciDistributionError::AuthenticationFailure(message) => ImageError::Unauthorized {
            reference: name,
            message,
        },
        OciDistributionError::UnauthorizedError { url } => ImageError::Unauthorized {
            reference: name,
            message: format!("unauthorized ({url})"),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let message = envelope
                .errors
                .iter()
                .map(|e| format!("{}: {}", code_name(&e.code), e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let denied = envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
            let missing = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            });
            if denied {
                ImageError::Unauthorized {
                    reference: name,
                    message,
                }
            } else if missing {
                ImageError::NotFound {
                    reference: name,
                    message,
                }
            } else {
                ImageError::Registry {
                    reference: name,
                    message,
                }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 | 403 => ImageError::Unauthorized {
                reference: name,
                message: format!("HTTP {code}: {message}"),
            },
            404 => ImageError::NotFound {
                reference: name,
                message: format!("HTTP 404: {message}"),
            },
            _ => ImageError::Registry {
                reference: name,
                message: format!("HTTP {code}: {message}"),
            },
        },
        OciDistributionError::ImageManifestNotFoundError(message) => ImageError::NotFound {
            reference: name,
            message,
        },
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            ImageError::Unreachable {
                reference: name,
                message: error_chain(&e),
            }
        }
        OciDistributionError::DigestError(e) => ImageError::Registry {
            reference: name,
            message: format!("content digest: {}", e.chain()),
        },
        other => ImageError::Registry {
            reference: name,
            message: error_chain(&other),
        },
    }
}

fn code_name(code: &OciErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.chain().to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.chain().to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_named_and_loopback_registries() {
        let options = RegistryOptions {
            insecure: vec!["198.18.0.1:5000".into()],
            ..RegistryOptions::default()
        };
        assert!(options.is_insecure("198.18.0.1:5000"));
        assert!(!options.is_insecure("198.18.0.1:5001"));
        assert!(options.is_insecure("127.0.0.1:5000"));
        assert!(options.is_insecure("127.5.6.7"));
        assert!(options.is_insecure("localhost:5000"));
        assert!(options.is_insecure("[::1]:5000"));
        assert!(!options.is_insecure("docker.io"));
        assert!(!options.is_insecure("registry.example.com:5000"));
        assert!(!options.is_insecure("10.0.0.1:5000"));
    }
}
