//! The image store's files, content-addressed:
//!
//! ```text
//! <root>/blobs/sha256/<hex>     manifests and configs, verified on the way in
//! <root>/layers/<hex>/          a layer unpacked once per diff_id
//! <root>/layers/l/<12 hex>      a short link to it (overlay's mount options
//!                               hold one page)
//! <root>/images/<hex>.json      an image's record, named by its config digest
//! <root>/tmp/                   downloads and unpacks in progress
//! ```
//!
//! Nothing lands under its final name before its digest was checked: a
//! blob or layer is written under `tmp/` and renamed into place.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::digest::{Digest, Hasher};
use super::error::ImageError;
use super::unpack;

/// How a short layer link is named: this many hex digits of the diff_id.
pub const SHORT_LINK: usize = 12;

/// One layer of an image, as its record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// The compressed blob it came from, when pulled (for `inspect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    /// Bytes of its uncompressed tar.
    pub size: u64,
}

/// What the node knows of one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config's digest: Docker's image id.
    pub id: Digest,
    /// `docker.io/library/nginx:latest`...
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `docker.io/library/nginx@sha256:...`: the manifest digests it was
    /// pulled by.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    pub layers: Vec<LayerRecord>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub created: Option<String>,
    /// Unix seconds when it came to this node.
    pub added: u64,
    /// Unix seconds of its last use by a task (or its arrival).
    pub last_used: u64,
}

impl ImageRecord {
    /// Bytes of all its layers.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The directories of the store.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the directories if missing, private to root (0700) like the
    /// rest of the state dir; a layer keeps the modes its image gives it.
    pub fn open(root: &Path) -> Result<Layout, ImageError> {
        let layout = Layout {
            root: root.to_path_buf(),
        };
        for dir in [
            layout.blobs_dir(),
            layout.layers_dir().join("l"),
            layout.images_dir(),
            layout.tmp_dir(),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(ImageError::io(&dir))?;
        }
        // What a crash left half-written is garbage.
        if let Ok(entries) = fs::read_dir(layout.tmp_dir()) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh name under `tmp/`.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir()
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a stored blob of at most `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(ImageError::io(&path))?;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(ImageError::io(&path))?;
        if bytes.len() as u64 > limit {
            return Err(ImageError::TooLarge {
                what: format!("blob {digest}"),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` as the blob `expected`, refusing other bytes.
    pub fn write_blob(
        &self,
        expected: &Digest,
        bytes: &[u8],
        what: &str,
    ) -> Result<(), ImageError> {
        expected.verify(&Digest::of(bytes), what)?;
        if self.has_blob(expected) {
            return Ok(());
        }
        let tmp = self.tmp_path("blob");
        fs::write(&tmp, bytes).map_err(ImageError::io(&tmp))?;
        let path = self.blob_path(expected);
        fs::rename(&tmp, &path).map_err(ImageError::io(&path))
    }

    /// A writer for a blob that streams in; `commit` checks its digest.
    pub fn blob_writer(
        &self,
        expected: &Digest,
        limit: u64,
        what: &str,
    ) -> Result<BlobWriter, ImageError> {
        let tmp = self.tmp_path("download");
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&tmp)
            .map_err(ImageError::io(&tmp))?;
        Ok(BlobWriter {
            file,
            tmp,
            hasher: Hasher::new(),
            written: 0,
            limit,
            expected: expected.clone(),
            what: what.to_string(),
            dest: self.blob_path(expected),
        })
    }

    pub fn remove_blob(&self, digest: &Digest) {
        let _ = fs::remove_file(self.blob_path(digest));
    }

    /// The directory of an unpacked layer.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex())
    }

    /// The layer's short link, relative to the layers directory.
    pub fn short_link(diff_id: &Digest) -> PathBuf {
        Path::new("l").join(&diff_id.hex()[..SHORT_LINK])
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// Unpacks `compressed` (blocking) and keeps it as layer `diff_id`,
    /// unless the bytes' diff_id differs. Returns the uncompressed size.
    pub fn unpack_layer(&self, compressed: impl Read, diff_id: &Digest) -> Result<u64, ImageError> {
        let tmp = self.tmp_path("layer");
        fs::create_dir(&tmp).map_err(ImageError::io(&tmp))?;
        let result = unpack::unpack(compressed, &tmp).map_err(|e| ImageError::Layer {
            digest: diff_id.to_string(),
            reason: e.chain().to_string(),
        });
        let finish = || -> Result<u64, ImageError> {
            let unpacked = result?;
            diff_id.verify(&unpacked.diff_id, format!("layer {diff_id}"))?;
            let dest = self.layer_dir(diff_id);
            if dest.is_dir() {
                // Another pull unpacked it meanwhile.
                return Ok(unpacked.size);
            }
            fs::rename(&tmp, &dest).map_err(ImageError::io(&dest))?;
            self.link_short(diff_id)?;
            Ok(unpacked.size)
        };
        let outcome = finish();
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        outcome
    }

    /// Makes `l/<short>` point at the layer (again).
    pub fn link_short(&self, diff_id: &Digest) -> Result<(), ImageError> {
        let link = self.layers_dir().join(Self::short_link(diff_id));
        let target = Path::new("..").join(diff_id.hex());
        match fs::read_link(&link) {
            Ok(existing) if existing == target => return Ok(()),
            Ok(_) => {
                return Err(ImageError::Layer {
                    digest: diff_id.to_string(),
                    reason: format!(
                        "its short name {} is taken by another layer",
                        link.display()
                    ),
                })
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&target, &link).map_err(ImageError::io(&link))
    }

    pub fn remove_layer(&self, diff_id: &Digest) -> Result<(), ImageError> {
        let _ = fs::remove_file(self.layers_dir().join(Self::short_link(diff_id)));
        let dir = self.layer_dir(diff_id);
        // Renamed away first, so a half-deleted layer never looks whole.
        let tmp = self.tmp_path("removed");
        match fs::rename(&dir, &tmp) {
            Ok(()) => fs::remove_dir_all(&tmp).map_err(ImageError::io(&tmp)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io(&dir)(e)),
        }
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.images_dir().join(format!("{}.json", id.hex()))
    }

    pub fn save_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let path = self.record_path(&record.id);
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| ImageError::malformed("image record", e))?;
        let tmp = self.tmp_path("record");
        fs::write(&tmp, text).map_err(ImageError::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(ImageError::io(&path))
    }

    pub fn remove_record(&self, id: &Digest) -> Result<(), ImageError> {
        let path = self.record_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ImageError::io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Every readable record; unreadable ones are logged and skipped.
    pub fn load_records(&self) -> Vec<ImageRecord> {
        let dir = self.images_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path).map(|t| serde_json::from_slice::<ImageRecord>(&t)) {
                Ok(Ok(record)) => records.push(record),
                Ok(Err(e)) => tracing::warn!("skipping image record {}: {e}", path.display()),
                Err(e) => tracing::warn!("skipping image record {}: {e}", path.display()),
            }
        }
        records
    }

    /// Removes the unpacked layers and blobs whose names (digest hex) are
    /// not in `layers` and `blobs`; returns the bytes freed.
    pub fn sweep(&self, layers: &BTreeSet<String>, blobs: &BTreeSet<String>) -> u64 {
        let mut freed = 0;
        for (dir, keep) in [(self.layers_dir(), layers), (self.blobs_dir(), blobs)] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let is_digest = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if !is_digest || keep.contains(name) {
                    continue;
                }
                let path = entry.path();
                let size = tree_size(&path);
                let removed = if path.is_dir() {
                    if let Ok(diff_id) = Digest::parse(&format!("sha256:{name}")) {
                        let _ = fs::remove_file(self.layers_dir().join(Self::short_link(&diff_id)));
                    }
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                match removed {
                    Ok(()) => {
                        tracing::info!("image store: removed unreferenced {}", path.display());
                        freed += size;
                    }
                    Err(e) => tracing::warn!("image store: cannot remove {}: {e}", path.display()),
                }
            }
        }
        freed
    }

    /// Bytes used and total on the store's filesystem.
    pub fn disk_usage(&self) -> Result<(u64, u64), ImageError> {
        let stat = nix::sys::statvfs::statvfs(&self.root)
            .map_err(|e| ImageError::io(&self.root)(io::Error::from_raw_os_error(e as i32)))?;
        let frag = stat.fragment_size() as u64;
        let total = stat.blocks() as u64 * frag;
        let free = stat.blocks_free() as u64 * frag;
        Ok((total.saturating_sub(free), total))
    }
}

/// A blob being downloaded: hashed and bounded as it is written.
pub struct BlobWriter {
    file: File,
    tmp: PathBuf,
    hasher: Hasher,
    written: u64,
    limit: u64,
    expected: Digest,
    what: String,
    dest: PathBuf,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.written += bytes.len() as u64;
        if self.written > self.limit {
            return Err(ImageError::TooLarge {
                what: self.what.clone(),
                limit: self.limit,
            });
        }
        self.hasher.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(ImageError::io(&self.tmp))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks the digest and moves the blob into place.
    pub fn commit(mut self) -> Result<PathBuf, ImageError> {
        self.file.flush().map_err(ImageError::io(&self.tmp))?;
        let actual = std::mem::take(&mut self.hasher).finish();
        self.expected.verify(&actual, self.what.clone())?;
        fs::rename(&self.tmp, &self.dest).map_err(ImageError::io(&self.dest))?;
        Ok(self.dest.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a commit the temporary name is gone; otherwise clean up.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Bytes of the files under `path` (not following links).
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}
