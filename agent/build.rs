//! Embeds shoal's eBPF object in the agent when `cargo xtask build-ebpf` has
//! built it: sets `cfg(shoal_ebpf_embedded)` and `SHOAL_EBPF_OBJECT_PATH`.
//! Without it the agent still builds, and looks for the object at run time
//! (`$SHOAL_EBPF_OBJECT`, or next to the executable).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shoal_ebpf_embedded)");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let programs = manifest_dir.join("..").join("ebpf").join("programs");
    let object = programs.join("target/bpfel-unknown-none/release/shoal-ebpf");

    if object.is_file() {
        println!("cargo::rerun-if-changed={}", object.display());
        println!("cargo::rustc-cfg=shoal_ebpf_embedded");
        println!(
            "cargo::rustc-env=SHOAL_EBPF_OBJECT_PATH={}",
            absolute(&object).display()
        );
    } else {
        // Watching the missing file itself would rerun this script on every
        // build; the crate directory changes when build-ebpf creates it.
        println!("cargo::rerun-if-changed={}", programs.display());
        println!(
            "cargo::warning=no eBPF object at {}; shoal will look for one at run time. \
             Run `cargo xtask build-ebpf` to embed it.",
            object.display()
        );
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
