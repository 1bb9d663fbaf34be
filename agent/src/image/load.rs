//! `image load`: images from a tarball instead of a registry, for nodes
//! that cannot reach one. Reads both what `docker save` writes (a
//! `manifest.json` naming each image's config, tags and layer files) and
//! an OCI image layout archive (`oci-layout`, `index.json`, `blobs/`). The
//! archive is read twice: once for its small JSON files, then once per
//! layer, streamed straight into the layer store and checked against the
//! config's diff_ids (and, for OCI blobs, their digests).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::config::{ImageConfig, MAX_CONFIG};
use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::manifest::{self, Manifest, Platform};
use super::reference::Reference;
use super::store::{now_unix, ImageRecord, LayerRecord};
use super::ImageStore;

/// Archive members kept in memory in the first pass: JSON documents.
const MAX_SMALL: u64 = MAX_CONFIG;

/// One `docker save` manifest.json entry.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image found in the archive, before its layers are read.
struct Found {
    config_bytes: Vec<u8>,
    tags: Vec<String>,
    /// The archive member of each layer, bottom first, and the blob
    /// digest to check it against (OCI layouts name blobs by digest).
    layers: Vec<(String, Option<Digest>)>,
}

impl ImageStore {
    /// Loads every image of the archive at `path`; blocking. An OCI
    /// layout's images without a full name are tagged `default_name`'s
    /// repository with their ref-name tag when given, else left untagged.
    pub fn load(
        &self,
        path: &Path,
        default_name: Option<&Reference>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let _busy = self.busy();
        let small = read_small_members(path)?;
        let found = if let Some(manifest) = small.get("manifest.json") {
            from_docker_save(&small, manifest)?
        } else if small.contains_key("index.json") {
            from_oci_layout(&small, default_name)?
        } else {
            return Err(ImageError::Archive(format!(
                "{}: neither a `docker save` tarball (no manifest.json) nor an OCI layout (no index.json)",
                path.display()
            )));
        };
        let mut records = Vec::new();
        for image in found {
            records.push(self.load_one(path, image)?);
        }
        Ok(records)
    }

    fn load_one(&self, path: &Path, image: Found) -> Result<ImageRecord, ImageError> {
        let id = Digest::of(&image.config_bytes);
        let config = ImageConfig::parse(&image.config_bytes, &format!("image config {id}"))?;
        let diff_ids = config.diff_ids()?;
        if diff_ids.len() != image.layers.len() {
            return Err(ImageError::Archive(format!(
                "image {}: {} layer files for {} diff_ids in its config",
                id.short(),
                image.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for ((member, blob), diff_id) in image.layers.iter().zip(&diff_ids) {
            let size = match self.known_size(diff_id) {
                Some(size) if self.layout.has_layer(diff_id) => size,
                _ => self.unpack_member(path, member, blob.as_ref(), diff_id)?,
            };
            layers.push(LayerRecord {
                diff_id: diff_id.clone(),
                blob: blob.clone(),
                size,
            });
        }
        self.layout
            .write_blob(&id, &image.config_bytes, "image config")?;
        let mut tags = Vec::new();
        for tag in &image.tags {
            let reference = Reference::parse(tag)?;
            tags.extend(reference.tagged_name());
        }
        let now = now_unix();
        self.commit(ImageRecord {
            id,
            repo_tags: tags,
            repo_digests: Vec::new(),
            layers,
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            created: config.created.clone(),
            added: now,
            last_used: now,
        })
    }

    fn known_size(&self, diff_id: &Digest) -> Option<u64> {
        self.lock()
            .images
            .values()
            .flat_map(|r| r.layers.iter())
            .find(|l| l.diff_id == *diff_id)
            .map(|l| l.size)
    }

    /// Streams one archive member into the layer store. A member that is
    /// a symlink (`docker save` links layers it holds twice) is followed
    /// inside the archive, a few hops at most.
    fn unpack_member(
        &self,
        path: &Path,
        member: &str,
        blob: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<u64, ImageError> {
        let mut wanted = member.to_string();
        for _hop in 0..4 {
            let file = File::open(path).map_err(ImageError::io(path))?;
            let mut archive = tar::Archive::new(file);
            let entries = archive.entries_with_seek().map_err(ImageError::io(path))?;
            let mut next = None;
            for entry in entries {
                let entry = entry.map_err(ImageError::io(path))?;
                if member_name(&entry) != wanted {
                    continue;
                }
                if entry.header().entry_type() == tar::EntryType::Symlink {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    let base = wanted.rsplit_once('/').map_or("", |(dir, _)| dir);
                    let joined = format!("{base}/{}", String::from_utf8_lossy(&target));
                    let clean = super::unpack::clean(joined.as_bytes());
                    next = Some(
                        clean
                            .iter()
                            .map(|p| p.to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join("/"),
                    );
                    break;
                }
                let mut hashing = HashingReader::new(entry);
                let size = self.layout.unpack_layer(&mut hashing, diff_id)?;
                let (digest, _) = hashing.finish().map_err(ImageError::io(path))?;
                if let Some(blob) = blob {
                    if let Err(e) = blob.verify(&digest, format!("archive member {member}")) {
                        let _ = self.layout.remove_layer(diff_id);
                        return Err(e);
                    }
                }
                return Ok(size);
            }
            match next {
                Some(target) => wanted = target,
                None => break,
            }
        }
        Err(ImageError::Archive(format!(
            "{}: the layer file `{member}` is missing",
            path.display()
        )))
    }
}

/// A member's name, cleaned (`./x` is `x`).
fn member_name<R: Read>(entry: &tar::Entry<'_, R>) -> String {
    let raw = entry.path_bytes();
    let text = String::from_utf8_lossy(&raw);
    text.trim_start_matches("./").to_string()
}

/// First pass: every small regular member, by name.
fn read_small_members(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, ImageError> {
    let file = File::open(path).map_err(ImageError::io(path))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive.entries_with_seek().map_err(ImageError::io(path))?;
    let mut small = BTreeMap::new();
    for entry in entries {
        let mut entry = entry.map_err(ImageError::io(path))?;
        if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > MAX_SMALL {
            continue;
        }
        let name = member_name(&entry);
        let interesting =
            name.ends_with(".json") || name == "oci-layout" || name.starts_with("blobs/");
        if !interesting {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(ImageError::io(path))?;
        small.insert(name, bytes);
    }
    Ok(small)
}

fn from_docker_save(
    small: &BTreeMap<String, Vec<u8>>,
    manifest: &[u8],
) -> Result<Vec<Found>, ImageError> {
    let saved: Vec<SavedImage> =
        serde_json::from_slice(manifest).map_err(|e| ImageError::malformed("manifest.json", e))?;
    saved
        .into_iter()
        .map(|image| {
            let config_bytes = small
                .get(image.config.trim_start_matches("./"))
                .cloned()
                .ok_or_else(|| {
                    ImageError::Archive(format!("the config file `{}` is missing", image.config))
                })?;
            let layers = image
                .layers
                .iter()
                .map(|l| {
                    let name = l.trim_start_matches("./").to_string();
                    let blob = name
                        .strip_prefix("blobs/sha256/")
                        .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
                    (name, blob)
                })
                .collect();
            Ok(Found {
                config_bytes,
                tags: image.repo_tags.unwrap_or_default(),
                layers,
            })
        })
        .collect()
}

fn blob<'a>(small: &'a BTreeMap<String, Vec<u8>>, digest: &Digest) -> Result<&'a [u8], ImageError> {
    let bytes = small
        .get(&format!("blobs/sha256/{}", digest.hex()))
        .ok_or_else(|| ImageError::Archive(format!("blob {digest} is missing from the archive")))?;
    digest.verify(&Digest::of(bytes), format!("archive blob {digest}"))?;
    Ok(bytes)
}

fn from_oci_layout(
    small: &BTreeMap<String, Vec<u8>>,
    default_name: Option<&Reference>,
) -> Result<Vec<Found>, ImageError> {
    let index = small
        .get("index.json")
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Manifest::Index(entries) = manifest::parse(index, Some(manifest::OCI_INDEX), "index.json")?
    else {
        return Err(ImageError::Archive(
            "index.json is not an image index".into(),
        ));
    };
    #[derive(Deserialize, Default)]
    struct Annotated {
        #[serde(default)]
        manifests: Vec<AnnotatedEntry>,
    }
    #[derive(Deserialize, Default)]
    struct AnnotatedEntry {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let annotated: Annotated = serde_json::from_slice(index).unwrap_or_default();
    let mut found = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let annotations = annotated.manifests.get(i).map(|a| &a.annotations);
        let full_name = annotations
            .and_then(|a| a.get("io.containerd.image.name"))
            .cloned();
        let tag = match (full_name, &entry.ref_name) {
            (Some(name), _) => Some(name),
            (None, Some(r)) if r.contains('/') && Reference::parse(r).is_ok() => Some(r.clone()),
            (None, Some(tag)) => default_name.map(|n| format!("{}:{tag}", n.name())),
            (None, None) => None,
        };
        let mut descriptor = entry.descriptor.clone();
        let mut bytes = blob(small, &descriptor.digest)?;
        if let Manifest::Index(children) = manifest::parse(bytes, None, "OCI layout manifest")? {
            let platform = Platform::current();
            let child = manifest::select_platform(&children, &platform).ok_or_else(|| {
                ImageError::NoMatchingPlatform {
                    reference: "archive".into(),
                    platform: platform.to_string(),
                    offered: manifest::offered(&children),
                }
            })?;
            descriptor = child.descriptor.clone();
            bytes = blob(small, &descriptor.digest)?;
        }
        let Manifest::Image(image) = manifest::parse(bytes, None, "OCI layout manifest")? else {
            return Err(ImageError::Archive(
                "nested indexes are not supported".into(),
            ));
        };
        let config_bytes = blob(small, &image.config.digest)?.to_vec();
        let layers = image
            .layers
            .iter()
            .map(|l| {
                (
                    format!("blobs/sha256/{}", l.digest.hex()),
                    Some(l.digest.clone()),
                )
            })
            .collect();
        found.push(Found {
            config_bytes,
            tags: tag.into_iter().collect(),
            layers,
        });
    }
    Ok(found)
}
