//! Fuzzes layer unpacking: any bytes as a layer (plain, gzip or zstd tar,
//! by their magic), unpacked into a fresh directory beside a sentinel.
//! No panic, and nothing outside the layer directory is ever created,
//! changed or linked, whatever paths, links and whiteouts the tar holds.
//! Run it as root (layers make devices and set ownership).

#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;

use libfuzzer_sys::fuzz_target;
use shoal_agent::image::unpack::unpack;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::TempDir::new() else {
        return;
    };
    let layer = tmp.path().join("layer");
    let outside = tmp.path().join("outside");
    if fs::create_dir(&layer).is_err() || fs::create_dir(&outside).is_err() {
        return;
    }
    let secret = outside.join("secret");
    if fs::write(&secret, b"secret").is_err() {
        return;
    }
    let _ = unpack(data, &layer);
    let mut top: Vec<_> = fs::read_dir(tmp.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    top.sort();
    assert_eq!(top, vec!["layer", "outside"], "something appeared beside the layer");
    let names: Vec<_> = fs::read_dir(&outside)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["secret"]);
    assert_eq!(fs::read(&secret).ok().as_deref(), Some(&b"secret"[..]));
    assert_eq!(fs::symlink_metadata(&secret).map(|m| m.nlink()).ok(), Some(1));
});
