//! The store's bookkeeping (tags, removal, prune, tasks' use) and `load`
//! of archives built here, byte for byte as `docker save` and OCI layouts
//! shape them. Needs root for the unpacking.

use std::io::Write;

use tempfile::TempDir;

use super::*;

/// A one-layer image: the layer tar, its config and their digests.
pub(crate) struct TestImage {
    pub layer: Vec<u8>,
    pub gz_layer: Vec<u8>,
    pub config: Vec<u8>,
}

impl TestImage {
    pub fn new(file: &str, content: &[u8]) -> TestImage {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, file, content)
            .expect("append");
        let layer = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).expect("gzip");
        let gz_layer = gz.finish().expect("gzip");
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/hello"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]}
        })
        .to_string()
        .into_bytes();
        TestImage {
            layer,
            gz_layer,
            config,
        }
    }

    pub fn id(&self) -> Digest {
        Digest::of(&self.config)
    }
}

fn add(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, name, bytes)
        .expect("append");
}

/// `docker save` (the classic layout: `<id>/layer.tar`, manifest.json last).
pub(crate) fn docker_save(image: &TestImage, tag: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let config_name = format!("{}.json", image.id().hex());
    add(&mut b, "abc123/layer.tar", &image.layer);
    add(&mut b, &config_name, &image.config);
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": [tag], "Layers": ["abc123/layer.tar"]
    }]);
    add(&mut b, "manifest.json", manifest.to_string().as_bytes());
    b.into_inner().expect("tar")
}

/// An OCI layout archive (`skopeo copy ... oci-archive:`), gzip layer.
fn oci_archive(image: &TestImage, ref_name: &str) -> Vec<u8> {
    let layer_digest = Digest::of(&image.gz_layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": image.id().to_string(), "size": image.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest.to_string(), "size": image.gz_layer.len()}]
    })
    .to_string();
    let manifest_digest = Digest::of(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": manifest::OCI_MANIFEST, "digest": manifest_digest.to_string(),
                       "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": ref_name}}]
    });
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(&mut b, "index.json", index.to_string().as_bytes());
    add(
        &mut b,
        &format!("blobs/sha256/{}", manifest_digest.hex()),
        manifest.as_bytes(),
    );
    add(
        &mut b,
        &format!("blobs/sha256/{}", image.id().hex()),
        &image.config,
    );
    add(
        &mut b,
        &format!("blobs/sha256/{}", layer_digest.hex()),
        &image.gz_layer,
    );
    b.into_inner().expect("tar")
}

fn store() -> (TempDir, ImageStore) {
    let dir = TempDir::new().expect("temp dir");
    let store = ImageStore::open(dir.path(), RegistryOptions::default()).expect("open store");
    (dir, store)
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write archive");
    path
}

#[test]
fn docker_save_tarball_loads_with_its_tag_and_layer() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let image = TestImage::new("hello", b"#!/bin/sh\necho hi\n");
    let path = write(&dir, "save.tar", &docker_save(&image, "example.com/app:1"));
    let loaded = store.load(&path, None).expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, image.id());
    assert_eq!(loaded[0].repo_tags, vec!["example.com/app:1"]);
    let found = store.find("example.com/app:1").expect("by tag");
    assert_eq!(
        store.find(found.id.short()).expect("by short id").id,
        found.id
    );
    let (root, links) = store.layer_links(&found.id).expect("layers");
    assert_eq!(
        std::fs::read(root.join(&links[0]).join("hello")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(store.config(&found.id).unwrap().config.cmd, vec!["/hello"]);
    // Reopening reads the records back.
    drop(store);
    let again = ImageStore::open(dir.path(), RegistryOptions::default()).unwrap();
    assert_eq!(again.list().len(), 1);
}

#[test]
fn oci_archive_loads_under_the_given_name() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let image = TestImage::new("f", b"data");
    let path = write(&dir, "oci.tar", &oci_archive(&image, "v2"));
    let name = Reference::parse("198.18.0.1:5000/bb").unwrap();
    let loaded = store.load(&path, Some(&name)).expect("load");
    assert_eq!(loaded[0].repo_tags, vec!["198.18.0.1:5000/bb:v2"]);
    assert!(store
        .lookup(&Reference::parse("198.18.0.1:5000/bb:v2").unwrap())
        .is_some());
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_kept() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let image = TestImage::new("f", b"data");
    let mut other = TestImage::new("f", b"evil");
    other.config = image.config.clone();
    let path = write(&dir, "bad.tar", &docker_save(&other, "x:1"));
    let err = store.load(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(store.list().is_empty());
    let layers: Vec<_> = std::fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(layers.len(), 1, "only the l/ directory: {layers:?}");
}

#[test]
fn tags_move_untag_and_delete_like_docker() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let a = TestImage::new("a", b"a");
    let b = TestImage::new("b", b"b");
    store
        .load(&write(&dir, "a.tar", &docker_save(&a, "app:1")), None)
        .unwrap();
    store
        .load(&write(&dir, "a2.tar", &docker_save(&a, "app:latest")), None)
        .unwrap();
    assert_eq!(store.find("app").unwrap().repo_tags.len(), 2);
    // The tag moves to the new image; the old keeps its other tag.
    store
        .load(&write(&dir, "b.tar", &docker_save(&b, "app:1")), None)
        .unwrap();
    assert_eq!(store.find("app:1").unwrap().id, b.id());
    assert_eq!(store.find("app:latest").unwrap().id, a.id());
    // In use: refused.
    store.acquire("task1", &b.id()).unwrap();
    assert!(matches!(
        store.remove("app:1", false),
        Err(ImageError::InUse { .. })
    ));
    assert!(store.prune(true).unwrap().0 == vec![a.id()]);
    store.release("task1");
    let removed = store.remove("app:1", false).unwrap();
    assert_eq!(
        removed,
        vec![Removal::Untagged("app:1".into()), Removal::Deleted(b.id())]
    );
    assert!(store.list().is_empty());
    assert!(matches!(
        store.find("app:1"),
        Err(ImageError::NoSuchImage(_))
    ));
}

#[test]
fn an_id_with_many_tags_needs_force() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let a = TestImage::new("a", b"a");
    store
        .load(&write(&dir, "a.tar", &docker_save(&a, "one:1")), None)
        .unwrap();
    store
        .load(&write(&dir, "b.tar", &docker_save(&a, "two:1")), None)
        .unwrap();
    assert!(store.remove(a.id().as_str(), false).is_err());
    // By tag: only untagged.
    assert_eq!(
        store.remove("two:1", false).unwrap(),
        vec![Removal::Untagged("two:1".into())]
    );
    assert_eq!(store.list().len(), 1);
    let removed = store.remove(a.id().short(), true).unwrap();
    assert!(removed.contains(&Removal::Deleted(a.id())));
}

#[test]
fn gc_over_the_high_mark_removes_unused_images_only() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let a = TestImage::new("a", b"a");
    let b = TestImage::new("b", b"b");
    store
        .load(&write(&dir, "a.tar", &docker_save(&a, "a:1")), None)
        .unwrap();
    store
        .load(&write(&dir, "b.tar", &docker_save(&b, "b:1")), None)
        .unwrap();
    store.acquire("task", &b.id()).unwrap();
    // Marks at 0%: any usage is over them, so everything unused goes.
    let always = GcPolicy {
        high_percent: 0,
        low_percent: 0,
    };
    assert_eq!(store.collect_garbage(&always).unwrap(), vec![a.id()]);
    assert_eq!(store.list().len(), 1);
    assert!(store.find("b:1").is_ok());
    // Marks at 100%: never.
    store.release("task");
    let never = GcPolicy {
        high_percent: 100,
        low_percent: 100,
    };
    assert!(store.collect_garbage(&never).unwrap().is_empty());
}

#[test]
fn prune_sweeps_layers_and_blobs_no_image_references_unless_a_pull_is_under_way() {
    shoal_tests::require_root();
    let (dir, store) = store();
    let kept = TestImage::new("k", b"k");
    store
        .load(&write(&dir, "k.tar", &docker_save(&kept, "k:1")), None)
        .unwrap();
    let root = store.root().to_path_buf();
    let orphan_layer = root.join("layers").join("ab".repeat(32));
    let orphan_blob = root.join("blobs/sha256").join("cd".repeat(32));
    std::fs::create_dir_all(orphan_layer.join("etc")).unwrap();
    std::fs::write(orphan_layer.join("etc/f"), [0u8; 1000]).unwrap();
    std::fs::write(&orphan_blob, [0u8; 500]).unwrap();
    // While a pull or load is under way, its layers are nobody's yet.
    {
        let _busy = store.busy();
        store.prune(false).unwrap();
        assert!(orphan_layer.exists() && orphan_blob.exists());
    }
    let (removed, freed) = store.prune(false).unwrap();
    assert!(removed.is_empty(), "the tagged image stays");
    assert!(!orphan_layer.exists() && !orphan_blob.exists());
    assert!(freed >= 1500, "freed {freed}");
    assert!(store.find("k:1").is_ok());
    let (_, links) = store.layer_links(&kept.id()).unwrap();
    assert_eq!(links.len(), 1, "the kept image's layer is whole");
}
