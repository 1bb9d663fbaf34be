//! Layer unpacking against hostile and ordinary tars. Needs root (it makes
//! devices and sets trusted xattrs), as the agent does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

/// One raw tar entry: any path bytes, unlike `tar::Builder`'s checked ones.
#[derive(Clone, Debug)]
enum Raw {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    let name = &mut h.as_old_mut().name;
    let bytes = path.as_bytes();
    name[..bytes.len().min(100)].copy_from_slice(&bytes[..bytes.len().min(100)]);
    h
}

fn with_link(mut h: tar::Header, target: &str) -> tar::Header {
    let link = &mut h.as_old_mut().linkname;
    let bytes = target.as_bytes();
    link[..bytes.len().min(100)].copy_from_slice(&bytes[..bytes.len().min(100)]);
    h
}

fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = match e {
            Raw::File(p, data) => header(p, tar::EntryType::Regular, data.len() as u64),
            Raw::Dir(p) => header(p, tar::EntryType::Directory, 0),
            Raw::Symlink(p, t) => with_link(header(p, tar::EntryType::Symlink, 0), t),
            Raw::Hardlink(p, t) => with_link(header(p, tar::EntryType::Link, 0), t),
        };
        h.set_cksum();
        let data: &[u8] = match e {
            Raw::File(_, data) => data,
            _ => &[],
        };
        builder.append(&h, data).expect("append");
    }
    builder.into_inner().expect("finish")
}

/// A temporary tree: `layer/` to unpack into and `outside/secret` beside it.
struct Tree {
    tmp: TempDir,
}

impl Tree {
    fn new() -> Tree {
        let tmp = TempDir::new().expect("temp dir");
        fs::create_dir(tmp.path().join("layer")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/secret"), b"secret").unwrap();
        Tree { tmp }
    }

    fn layer(&self) -> PathBuf {
        self.tmp.path().join("layer")
    }

    /// Nothing beside the layer changed.
    fn assert_outside_untouched(&self) {
        let mut top: Vec<String> = fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, vec!["layer", "outside"]);
        let outside: Vec<String> = fs::read_dir(self.tmp.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(outside, vec!["secret"]);
        let secret = self.tmp.path().join("outside/secret");
        assert_eq!(fs::read(&secret).unwrap(), b"secret");
        let meta = fs::symlink_metadata(&secret).unwrap();
        assert_eq!(meta.nlink(), 1, "a hard link to the outside file was made");
        assert_eq!(meta.mode() & 0o7777, 0o644);
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    shoal_tests::require_root();
    let tree = Tree::new();
    let tar = tar_of(&[
        Raw::Dir("etc/".into()),
        Raw::File("etc/.wh.hosts".into(), vec![]),
        Raw::Dir("var/cache/".into()),
        Raw::File("var/cache/.wh..wh..opq".into(), vec![]),
        Raw::File("var/cache/kept".into(), b"k".to_vec()),
        Raw::File(".wh..wh.plnk".into(), vec![]),
    ]);
    unpack(&tar[..], &tree.layer()).expect("unpacks");
    let hosts = fs::symlink_metadata(tree.layer().join("etc/hosts")).unwrap();
    assert!(hosts.file_type().is_char_device());
    assert_eq!(hosts.rdev(), 0);
    let mut value = [0u8; 4];
    let path = CString::new(tree.layer().join("var/cache").as_os_str().as_bytes()).unwrap();
    // SAFETY: live NUL-terminated strings and a live buffer for the call.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            OPAQUE_XATTR.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(n, 1, "opaque xattr set");
    assert_eq!(value[0], b'y');
    assert_eq!(fs::read(tree.layer().join("var/cache/kept")).unwrap(), b"k");
    assert!(!tree.layer().join(".wh..wh.plnk").exists());
    assert!(!tree.layer().join("plnk").exists());
}

#[test]
fn diff_id_is_the_uncompressed_digest_for_every_compression() {
    shoal_tests::require_root();
    let tar = tar_of(&[
        Raw::Dir("bin/".into()),
        Raw::File("bin/sh".into(), b"#!".to_vec()),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    for (name, bytes) in [("plain", tar.clone()), ("gzip", gz), ("zstd", zst)] {
        let tree = Tree::new();
        let got = unpack(&bytes[..], &tree.layer()).expect(name);
        assert_eq!(got.diff_id, Digest::of(&tar), "{name}");
        assert_eq!(got.size, tar.len() as u64, "{name}");
        assert_eq!(
            fs::read(tree.layer().join("bin/sh")).unwrap(),
            b"#!",
            "{name}"
        );
    }
}

#[test]
fn dot_dot_and_absolute_paths_stay_inside() {
    shoal_tests::require_root();
    let tree = Tree::new();
    let tar = tar_of(&[
        Raw::File("../outside/secret".into(), b"pwned".to_vec()),
        Raw::File("/abs".into(), b"a".to_vec()),
        Raw::File("a/../../../../b".into(), b"b".to_vec()),
    ]);
    unpack(&tar[..], &tree.layer()).expect("unpacks");
    tree.assert_outside_untouched();
    assert_eq!(
        fs::read(tree.layer().join("outside/secret")).unwrap(),
        b"pwned"
    );
    assert_eq!(fs::read(tree.layer().join("abs")).unwrap(), b"a");
    assert_eq!(fs::read(tree.layer().join("b")).unwrap(), b"b");
}

#[test]
fn symlinked_parents_resolve_inside_the_layer() {
    shoal_tests::require_root();
    let tree = Tree::new();
    let outside = tree.tmp.path().join("outside");
    let tar = tar_of(&[
        Raw::Symlink("up".into(), "../outside".into()),
        Raw::Symlink("abs".into(), outside.to_string_lossy().into_owned()),
        Raw::Symlink("root".into(), "/".into()),
        Raw::File("up/secret".into(), b"1".to_vec()),
        Raw::File("abs/secret".into(), b"2".to_vec()),
        Raw::File("root/x".into(), b"3".to_vec()),
    ]);
    // `up` resolves to the layer's own `outside`, which does not exist;
    // whatever happens, nothing outside changes.
    let _ = unpack(&tar[..], &tree.layer());
    tree.assert_outside_untouched();
}

#[test]
fn a_final_symlink_is_replaced_never_written_through() {
    shoal_tests::require_root();
    let tree = Tree::new();
    let secret = tree.tmp.path().join("outside/secret");
    let tar = tar_of(&[
        Raw::Symlink("x".into(), secret.to_string_lossy().into_owned()),
        Raw::File("x".into(), b"overwritten?".to_vec()),
    ]);
    unpack(&tar[..], &tree.layer()).expect("unpacks");
    tree.assert_outside_untouched();
    assert_eq!(fs::read(tree.layer().join("x")).unwrap(), b"overwritten?");
    assert!(fs::symlink_metadata(tree.layer().join("x"))
        .unwrap()
        .is_file());
}

#[test]
fn hard_links_only_reach_inside() {
    shoal_tests::require_root();
    let tree = Tree::new();
    let secret = tree.tmp.path().join("outside/secret");
    let tar = tar_of(&[Raw::Hardlink(
        "h".into(),
        secret.to_string_lossy().into_owned(),
    )]);
    assert!(
        unpack(&tar[..], &tree.layer()).is_err(),
        "target is not in the layer"
    );
    let tar = tar_of(&[
        Raw::Symlink("s".into(), "/".into()),
        Raw::Hardlink("h".into(), "../../outside/secret".into()),
        Raw::Hardlink("h2".into(), "s/../outside/secret".into()),
    ]);
    let _ = unpack(&tar[..], &tree.layer());
    tree.assert_outside_untouched();
    let tar = tar_of(&[
        Raw::File("f".into(), b"f".to_vec()),
        Raw::Hardlink("g".into(), "/f".into()),
    ]);
    let tree = Tree::new();
    unpack(&tar[..], &tree.layer()).expect("in-layer hard link");
    assert_eq!(
        fs::symlink_metadata(tree.layer().join("g"))
            .unwrap()
            .nlink(),
        2
    );
}

#[test]
fn clean_never_leaves_the_top() {
    assert_eq!(display(&clean(b"../../a/./b//c/..")), "a/b");
    assert_eq!(display(&clean(b"/etc/passwd")), "etc/passwd");
    assert!(clean(b"..").is_empty());
    assert!(clean(b"/").is_empty());
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        Just("outside".to_string()),
        Just("secret".to_string()),
        Just("l".to_string()),
        Just("d".to_string()),
        Just(".wh.secret".to_string()),
        Just(".wh..wh..opq".to_string()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(component(), 1..5)).prop_map(|(abs, parts)| {
        let joined = parts.join("/");
        if abs {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

/// Link targets: any path, and ones aimed at the sentinel beside the layer.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        path(),
        Just("../outside".to_string()),
        Just("../../outside".to_string()),
        Just("..".to_string()),
        Just("../outside/secret".to_string()),
    ]
}

fn raw() -> impl Strategy<Value = Raw> {
    prop_oneof![
        path().prop_map(|p| Raw::File(p, b"x".to_vec())),
        Just(Raw::File("l/secret".into(), b"x".to_vec())),
        Just(Raw::File("l/outside/secret".into(), b"x".to_vec())),
        path().prop_map(Raw::Dir),
        (path(), target()).prop_map(|(p, t)| Raw::Symlink(p, t)),
        target().prop_map(|t| Raw::Symlink("l".into(), t)),
        (path(), target()).prop_map(|(p, t)| Raw::Hardlink(p, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the tar holds, nothing outside the layer directory is
    /// created, changed, linked or removed.
    #[test]
    fn no_entry_escapes_the_layer(entries in prop::collection::vec(raw(), 1..12)) {
        shoal_tests::require_root();
        let tree = Tree::new();
        let tar = tar_of(&entries);
        let _ = unpack(&tar[..], &tree.layer());
        tree.assert_outside_untouched();
    }
}
