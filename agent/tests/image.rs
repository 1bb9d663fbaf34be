//! The image store against a real `docker-registry` on loopback and real
//! archives written by skopeo: pulls of OCI and Docker schema-2 images, a
//! multi-platform index, basic auth with and without credentials, a
//! missing tag, `load` of `docker save` and OCI archives with no registry.
//! Needs root (layers hold devices and root-owned files) and the Debian
//! packages docker-registry, skopeo, umoci, busybox-static, apache2-utils.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use shoal_agent::image::{
    Credentials, Digest, ImageError, ImageStore, LayerProgress, PullEvent, Reference,
    RegistryOptions,
};
use support::registry::{busybox_image, run, ImageSpec, Registry};
use tempfile::TempDir;

fn store(dir: &TempDir) -> ImageStore {
    ImageStore::open(&dir.path().join("images"), RegistryOptions::default()).expect("store opens")
}

/// The manifest digest the registry holds for `reference`.
fn registry_digest(reference: &str) -> String {
    run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ]))
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_oci_and_docker_v2s2_images_cold_then_warm() {
    shoal_tests::require_root();
    let dir = TempDir::new().unwrap();
    let image = busybox_image(
        dir.path(),
        "bb",
        &ImageSpec {
            cmd: vec!["echo".into(), "hi".into()],
            ..ImageSpec::default()
        },
    );
    let registry = Registry::start();
    let oci = registry.push(&image, "bb:oci", false);
    let v2 = registry.push(&image, "bb:v2", true);
    let store = store(&dir);
    let log: Mutex<Vec<PullEvent>> = Mutex::new(Vec::new());
    let progress = |e: PullEvent| log.lock().unwrap().push(e);

    let started = Instant::now();
    let pulled = store
        .pull(
            &Reference::parse(&oci).unwrap(),
            &Credentials::Anonymous,
            &progress,
        )
        .await
        .expect("OCI pull");
    let cold = started.elapsed();
    assert_eq!(pulled.repo_tags, vec![format!("{oci}")]);
    let digest = registry_digest(&oci);
    assert_eq!(
        pulled.repo_digests,
        vec![format!("{}/bb@{digest}", registry.addr)]
    );
    let (root, links) = store.layer_links(&pulled.id).expect("layers present");
    assert!(root.join(&links[0]).join("bin/busybox").is_file());
    assert!(
        std::fs::symlink_metadata(root.join(&links[0]).join("bin/sh"))
            .unwrap()
            .is_symlink()
    );
    let config = store.config(&pulled.id).unwrap();
    assert_eq!(config.config.cmd, vec!["echo", "hi"]);
    {
        let log = log.lock().unwrap();
        assert!(log.iter().any(|e| matches!(
            e,
            PullEvent::Layer {
                progress: LayerProgress::Complete,
                ..
            }
        )));
        assert!(matches!(log.last(), Some(PullEvent::Done { .. })));
    }

    // The same bytes as Docker schema 2: other manifest, same image id,
    // layers already here.
    log.lock().unwrap().clear();
    let started = Instant::now();
    let again = store
        .pull(
            &Reference::parse(&v2).unwrap(),
            &Credentials::Anonymous,
            &progress,
        )
        .await
        .expect("v2s2 pull");
    let warm = started.elapsed();
    assert_eq!(again.id, pulled.id, "one image, two manifests");
    assert!(log.lock().unwrap().iter().any(|e| matches!(
        e,
        PullEvent::Layer {
            progress: LayerProgress::Exists,
            ..
        }
    )));
    let record = store.find(&v2).unwrap();
    assert_eq!(record.repo_tags.len(), 2);
    assert_eq!(record.repo_digests.len(), 2);
    eprintln!("FIGURE busybox pull: cold {cold:?}, warm (layers present) {warm:?}");

    // Resolving a tag gives the registry's digest; a pinned pull of it
    // needs no registry at all.
    let resolved = store
        .resolve_digest(&Reference::parse(&oci).unwrap(), &Credentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved.as_str(), digest);
    drop(registry);
    let pinned = Reference::parse(&oci).unwrap().with_digest(resolved);
    let found = store
        .pull(&pinned, &Credentials::Anonymous, &|_| {})
        .await
        .expect("pinned pull from the store");
    assert_eq!(found.id, pulled.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_needs_the_right_credentials() {
    shoal_tests::require_root();
    let dir = TempDir::new().unwrap();
    let image = busybox_image(dir.path(), "private", &ImageSpec::default());
    let registry = Registry::with_basic_auth("alice", "s3cret");
    let name = registry.push(&image, "private:1", false);
    let reference = Reference::parse(&name).unwrap();
    let store = store(&dir);

    let err = store
        .pull(&reference, &Credentials::Anonymous, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    // oci-client keeps only the status of a 401, not its body.
    assert!(err.to_string().contains("unauthorized"), "{err}");
    let wrong = Credentials::Basic {
        username: "alice".into(),
        password: "nope".into(),
    };
    let err = store.pull(&reference, &wrong, &|_| {}).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(store.list().is_empty());

    // The credentials as `--with-registry-auth` carries them.
    let header = base64_url(r#"{"username":"alice","password":"s3cret"}"#);
    let creds = Credentials::from_registry_auth_header(&header).unwrap();
    let pulled = store
        .pull(&reference, &creds, &|_| {})
        .await
        .expect("authorized pull");
    assert_eq!(pulled.repo_tags, vec![name]);
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tags_and_foreign_platforms_are_refused_with_reasons() {
    shoal_tests::require_root();
    let dir = TempDir::new().unwrap();
    let image = busybox_image(dir.path(), "bb", &ImageSpec::default());
    let registry = Registry::start();
    let name = registry.push(&image, "bb:1", false);
    let store = store(&dir);
    let missing = Reference::parse(&format!("{}/bb:nope", registry.addr)).unwrap();
    let err = store
        .pull(&missing, &Credentials::Anonymous, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("manifest unknown"), "{err}");

    // An index: this node's platform is picked; one without it is refused.
    let digest = registry_digest(&name);
    let size = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .len();
    let entry = |arch: &str| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#
        )
    };
    let put_index = |tag: &str, entries: &[String]| {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        );
        run(Command::new("curl").args([
            "-fsS",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
            &body,
            &format!("http://{}/v2/bb/manifests/{tag}", registry.addr),
        ]));
    };
    let here = shoal_agent::image::Platform::current().architecture;
    put_index("multi", &[entry("s390x"), entry(&here)]);
    put_index("foreign", &[entry("s390x")]);
    let multi = Reference::parse(&format!("{}/bb:multi", registry.addr)).unwrap();
    let pulled = store
        .pull(&multi, &Credentials::Anonymous, &|_| {})
        .await
        .expect("index pull");
    let index_digest = registry_digest(&format!("{}/bb:multi", registry.addr));
    assert!(pulled
        .repo_digests
        .contains(&format!("{}/bb@{index_digest}", registry.addr)));
    let foreign = Reference::parse(&format!("{}/bb:foreign", registry.addr)).unwrap();
    let err = store
        .pull(&foreign, &Credentials::Anonymous, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("linux/s390x"), "{err}");
}

#[test]
fn load_docker_save_and_oci_archives_without_a_registry() {
    shoal_tests::require_root();
    let dir = TempDir::new().unwrap();
    let image = busybox_image(
        dir.path(),
        "airgap",
        &ImageSpec {
            cmd: vec!["true".into()],
            ..ImageSpec::default()
        },
    );
    let saved = dir.path().join("saved.tar");
    image.docker_archive(&saved, "airgap:v1");
    let archive = dir.path().join("oci.tar");
    image.oci_archive(&archive, "v2");
    let store = store(&dir);
    let loaded = store.load(&saved, None).expect("docker save tarball loads");
    assert_eq!(loaded[0].repo_tags, vec!["docker.io/library/airgap:v1"]);
    let (root, links) = store.layer_links(&loaded[0].id).unwrap();
    assert!(root.join(&links[0]).join("bin/busybox").is_file());
    let name = Reference::parse("airgap").unwrap();
    let from_oci = store
        .load(&archive, Some(&name))
        .expect("OCI archive loads");
    assert_eq!(from_oci[0].id, loaded[0].id);
    assert!(store.find("airgap:v2").is_ok());
    let id: Digest = loaded[0].id.clone();
    assert_eq!(store.find("airgap:v1").unwrap().id, id);
}
