//! The node's images: pulled from registries (any distribution-API
//! registry, OCI or Docker schema 2, multi-platform indexes resolved to
//! this node's platform) or loaded from `docker save` / OCI archives, kept
//! once per node in a content-addressed store that every task shares, with
//! layers unpacked once for overlayfs.
//!
//! Never trusts what it reads: every blob is checked against its digest
//! while it streams and bounded in size, every layer against its diff_id,
//! and unpacking never writes outside the layer's directory. Never removes
//! an image a task uses. Knows nothing of containers: the container
//! runtime asks it for an image's config and layer directories.

mod auth;
mod config;
mod digest;
mod error;
mod gc;
mod load;
mod manifest;
mod pull;
mod reference;
mod store;
pub mod unpack;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use auth::Credentials;
pub use config::{ImageConfig, ImageHealthcheck, RunConfig};
pub use digest::Digest;
pub use error::ImageError;
pub use gc::GcPolicy;
pub use manifest::{
    parse as parse_manifest, select_platform, Descriptor, ImageManifest, IndexEntry, Manifest,
    Platform,
};
pub use pull::{LayerProgress, PullEvent, RegistryOptions, RemoteImage};
pub use reference::Reference;
pub use store::{ImageRecord, LayerRecord};

use store::Layout;

/// The image store of one node; see the module docs. Cheap to share
/// behind an `Arc`: the registry work is async, the rest blocks briefly on
/// the local disk.
pub struct ImageStore {
    layout: Layout,
    registry: RegistryOptions,
    state: Mutex<State>,
    /// One lock per layer being fetched, so two pulls sharing a layer
    /// download and unpack it once.
    layer_locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls and loads under way: the layers they unpacked are nobody's
    /// until their record commits, so `prune` leaves leftovers alone then.
    in_flight: AtomicUsize,
}

/// Counts a pull or load as under way while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct State {
    images: BTreeMap<Digest, ImageRecord>,
    /// Task id -> the image it runs.
    users: BTreeMap<String, Digest>,
}

/// What `remove` did, in Docker's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    Untagged(String),
    Deleted(Digest),
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Untagged(name) => write!(f, "Untagged: {name}"),
            Removal::Deleted(id) => write!(f, "Deleted: {id}"),
        }
    }
}

impl ImageStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path, registry: RegistryOptions) -> Result<ImageStore, ImageError> {
        // The registry client's TLS uses the process's provider: ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let layout = Layout::open(root)?;
        let mut state = State::default();
        for record in layout.load_records() {
            state.images.insert(record.id.clone(), record);
        }
        Ok(ImageStore {
            layout,
            registry,
            state: Mutex::new(state),
            layer_locks: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Marks a pull or load as under way until the guard drops.
    fn busy(&self) -> InFlight<'_> {
        // Under the state lock: a prune sweeping leftovers (which holds it)
        // finishes before a new pull or load writes anything.
        let _state = self.lock();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Every image, newest first.
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut images: Vec<ImageRecord> = self.lock().images.values().cloned().collect();
        images.sort_by(|a, b| b.added.cmp(&a.added).then(a.id.cmp(&b.id)));
        images
    }

    /// The image a reference names locally, if the node has it.
    pub fn lookup(&self, reference: &Reference) -> Option<ImageRecord> {
        let state = self.lock();
        find_by_reference(&state, reference).cloned()
    }

    /// An image by reference (`nginx:1`), full id or id prefix (`3f5e`).
    pub fn find(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let state = self.lock();
        find_in(&state, name)
            .cloned()
            .ok_or_else(|| ImageError::NoSuchImage(name.to_string()))
    }

    /// The image's parsed config.
    pub fn config(&self, id: &Digest) -> Result<ImageConfig, ImageError> {
        let bytes = self.layout.read_blob(id, config::MAX_CONFIG)?;
        ImageConfig::parse(&bytes, &format!("image config {id}"))
    }

    /// The directory holding the unpacked layers, and each layer's short
    /// link relative to it, bottom layer first: overlayfs's lowerdirs.
    pub fn layer_links(&self, id: &Digest) -> Result<(PathBuf, Vec<PathBuf>), ImageError> {
        let record = self
            .lock()
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| ImageError::NoSuchImage(id.to_string()))?;
        let mut links = Vec::with_capacity(record.layers.len());
        for layer in &record.layers {
            if !self.layout.has_layer(&layer.diff_id) {
                return Err(ImageError::Layer {
                    digest: layer.diff_id.to_string(),
                    reason: "missing from the store; pull or load the image again".into(),
                });
            }
            self.layout.link_short(&layer.diff_id)?;
            links.push(Layout::short_link(&layer.diff_id));
        }
        Ok((self.layout.layers_dir(), links))
    }

    /// Records that `task` runs `id`: the image is kept while it does.
    pub fn acquire(&self, task: &str, id: &Digest) -> Result<(), ImageError> {
        let mut state = self.lock();
        let Some(record) = state.images.get_mut(id) else {
            return Err(ImageError::NoSuchImage(id.to_string()));
        };
        record.last_used = store::now_unix();
        let record = record.clone();
        state.users.insert(task.to_string(), id.clone());
        drop(state);
        self.layout.save_record(&record)
    }

    /// `task` no longer needs its image.
    pub fn release(&self, task: &str) {
        self.lock().users.remove(task);
    }

    /// The task using `id`, if any.
    fn user_of(state: &State, id: &Digest) -> Option<String> {
        state
            .users
            .iter()
            .find(|(_, used)| *used == id)
            .map(|(task, _)| task.clone())
    }

    /// Docker's `image rm`: a tag is untagged (the image goes with its
    /// last tag); an id removes the image, which must then carry at most
    /// one tag unless `force`. An image a task uses is never removed.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<Removal>, ImageError> {
        let mut state = self.lock();
        let record = find_in(&state, name)
            .cloned()
            .ok_or_else(|| ImageError::NoSuchImage(name.to_string()))?;
        let by_tag = Reference::parse(name)
            .ok()
            .and_then(|r| r.tagged_name())
            .filter(|t| record.repo_tags.contains(t) && r_has_no_digest(name));
        let mut done = Vec::new();
        if let Some(tag) = by_tag {
            if record.repo_tags.len() > 1 {
                let mut kept = record.clone();
                kept.repo_tags.retain(|t| *t != tag);
                self.layout.save_record(&kept)?;
                state.images.insert(kept.id.clone(), kept);
                return Ok(vec![Removal::Untagged(familiar(&tag))]);
            }
        } else if record.repo_tags.len() > 1 && !force {
            return Err(ImageError::Archive(format!(
                "conflict: unable to delete {} (must be forced): image is referenced in multiple repositories",
                record.id.short()
            )));
        }
        if let Some(task) = Self::user_of(&state, &record.id) {
            return Err(ImageError::InUse {
                image: name.to_string(),
                task,
            });
        }
        for tag in &record.repo_tags {
            done.push(Removal::Untagged(familiar(tag)));
        }
        for digest in &record.repo_digests {
            done.push(Removal::Untagged(familiar(digest)));
        }
        self.delete(&mut state, &record.id)?;
        done.push(Removal::Deleted(record.id.clone()));
        Ok(done)
    }

    /// Drops the record and whatever layers and blobs no other image
    /// shares.
    fn delete(&self, state: &mut State, id: &Digest) -> Result<(), ImageError> {
        let Some(record) = state.images.remove(id) else {
            return Ok(());
        };
        self.layout.remove_record(id)?;
        let still_used: std::collections::BTreeSet<&Digest> = state
            .images
            .values()
            .flat_map(|r| r.layers.iter().map(|l| &l.diff_id))
            .collect();
        for layer in &record.layers {
            if !still_used.contains(&layer.diff_id) {
                self.layout.remove_layer(&layer.diff_id)?;
            }
        }
        self.layout.remove_blob(id);
        Ok(())
    }

    /// The image's config as the registry served it (for `inspect`).
    pub fn config_json(&self, id: &Digest) -> Result<serde_json::Value, ImageError> {
        let bytes = self.layout.read_blob(id, config::MAX_CONFIG)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::malformed(format!("image config {id}"), e))
    }

    /// Docker's `image prune`: removes images no task uses that have no
    /// tag (`all`: every image no task uses), then the layers and blobs no
    /// image references (what an interrupted pull left), unless a pull or
    /// load is under way. Returns what went and the bytes freed (shared
    /// layers of kept images stay).
    pub fn prune(&self, all: bool) -> Result<(Vec<Digest>, u64), ImageError> {
        let mut state = self.lock();
        let victims: Vec<Digest> = state
            .images
            .values()
            .filter(|r| all || r.repo_tags.is_empty())
            .filter(|r| Self::user_of(&state, &r.id).is_none())
            .map(|r| r.id.clone())
            .collect();
        let before = layer_bytes(&state);
        for id in &victims {
            self.delete(&mut state, id)?;
        }
        let after = layer_bytes(&state);
        let mut freed = before.saturating_sub(after);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let layers: std::collections::BTreeSet<String> = state
                .images
                .values()
                .flat_map(|r| r.layers.iter().map(|l| l.diff_id.hex().to_string()))
                .collect();
            let blobs: std::collections::BTreeSet<String> = state
                .images
                .values()
                .flat_map(|r| {
                    let pinned = r
                        .repo_digests
                        .iter()
                        .filter_map(|d| d.rsplit_once("@sha256:").map(|(_, hex)| hex.to_string()));
                    std::iter::once(r.id.hex().to_string()).chain(pinned)
                })
                .collect();
            freed += self.layout.sweep(&layers, &blobs);
        }
        Ok((victims, freed))
    }

    /// Applies the GC policy: when the store's disk is fuller than the
    /// policy's high mark, removes unused images, least recently used
    /// first, until the low mark is reached. Returns what was removed.
    pub fn collect_garbage(&self, policy: &GcPolicy) -> Result<Vec<Digest>, ImageError> {
        let (used, total) = self.layout.disk_usage()?;
        let mut state = self.lock();
        let in_use: std::collections::BTreeSet<Digest> = state.users.values().cloned().collect();
        let images: Vec<ImageRecord> = state.images.values().cloned().collect();
        let victims = gc::plan(&images, &in_use, used, total, policy);
        for id in &victims {
            tracing::info!("image gc: removing {id} (disk {used} of {total} bytes used)");
            self.delete(&mut state, id)?;
        }
        Ok(victims)
    }

    /// Adds (or updates) an image's record, moving its tags away from any
    /// other image (which may be left dangling, as Docker leaves it).
    fn commit(&self, mut record: ImageRecord) -> Result<ImageRecord, ImageError> {
        let mut state = self.lock();
        if let Some(existing) = state.images.get(&record.id) {
            for tag in &existing.repo_tags {
                if !record.repo_tags.contains(tag) {
                    record.repo_tags.push(tag.clone());
                }
            }
            for digest in &existing.repo_digests {
                if !record.repo_digests.contains(digest) {
                    record.repo_digests.push(digest.clone());
                }
            }
            record.added = existing.added;
        }
        let mut changed = Vec::new();
        for (id, other) in state.images.iter_mut() {
            if *id == record.id {
                continue;
            }
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !record.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                changed.push(other.clone());
            }
        }
        for other in &changed {
            self.layout.save_record(other)?;
        }
        self.layout.save_record(&record)?;
        state.images.insert(record.id.clone(), record.clone());
        Ok(record)
    }

    fn layer_lock(&self, diff_id: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.layer_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(diff_id.clone()).or_default().clone()
    }
}

fn r_has_no_digest(name: &str) -> bool {
    !name.contains('@')
}

/// The short form of a stored full name, for messages.
fn familiar(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

fn layer_bytes(state: &State) -> u64 {
    let mut seen = std::collections::BTreeMap::new();
    for record in state.images.values() {
        for layer in &record.layers {
            seen.insert(layer.diff_id.clone(), layer.size);
        }
    }
    seen.values().sum()
}

fn find_by_reference<'a>(state: &'a State, reference: &Reference) -> Option<&'a ImageRecord> {
    if let Some(digest) = reference.digest() {
        let pinned = format!("{}@{digest}", reference.name());
        return state
            .images
            .values()
            .find(|r| r.repo_digests.contains(&pinned) || r.id == *digest);
    }
    let tagged = reference.tagged_name()?;
    state
        .images
        .values()
        .find(|r| r.repo_tags.contains(&tagged))
}

fn find_in<'a>(state: &'a State, name: &str) -> Option<&'a ImageRecord> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let is_hex = hex.len() >= 4 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let mut matches = state
            .images
            .values()
            .filter(|r| r.id.hex().starts_with(hex));
        if let (Some(found), None) = (matches.next(), matches.next()) {
            return Some(found);
        }
    }
    let reference = Reference::parse(name).ok()?;
    find_by_reference(state, &reference)
}

#[cfg(test)]
mod tests;
