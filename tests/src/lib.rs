//! Multi-host test harness for shoal: simulated machines as network namespaces on a
//! shared bridge, the real `shoal` binary run inside them, link failures on demand, and
//! cleanup that leaves nothing behind even when a test panics.
//!
//! ```no_run
//! use shoal_tests::{require_root, Underlay};
//!
//! require_root();
//! let ul = Underlay::builder().hosts(3).mtu(1500).build()?;
//! let (h1, h2) = (ul.host(0), ul.host(1));
//! let ping = h1.exec("ping", &["-c", "1", "-W", "1", &h2.addr().to_string()])?;
//! assert!(ping.status.success());
//! h1.spawn_shoal(&["agent"])?;
//! # Ok::<(), shoal_tests::HarnessError>(())
//! ```
#![forbid(unsafe_code)]

mod cleanup;
mod command;
pub mod docker;
mod error;
mod host;
mod impairment;
pub mod mesh;
mod mountinfo;
mod namespace;
mod naming;
pub mod overlay;
mod process;
pub mod registry;
mod removed;
pub mod swarm;
mod underlay;

use std::{
    fmt,
    io::Write,
    path::{Path, PathBuf},
};

pub use cleanup::{cgroup2_mount, cleanup_leftovers};
pub use error::HarnessError;
pub use host::Host;
pub use naming::{is_run_tag, NAME_PREFIX, RUN_ROOT, RUN_TAG_ENV};
pub use removed::Removed;
pub use underlay::{Underlay, UnderlayBuilder};

/// Result of a harness operation.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Panics with an explanation unless the effective user is root. Call it first in every
/// test that builds an `Underlay`: such a test must fail loudly without root, never skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (euid 0): it creates network namespaces, veths and a \
             bridge. Run it as root, e.g. `sudo -E cargo test -p shoal-tests`"
        );
    }
}

/// The `shoal` binary the harness runs: `$SHOAL_BIN` if set, else `debug/shoal` in
/// `$CARGO_TARGET_DIR` if set, else `<workspace>/target/debug/shoal`.
pub fn shoal_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SHOAL_BIN") {
        return PathBuf::from(bin);
    }
    target_dir().join("debug").join("shoal")
}

/// The `shoal-netem` relay `Host::impair` runs, a binary of this crate: `$SHOAL_NETEM_BIN`
/// if set, else `shoal-netem` beside the running test's build dir (`target/<profile>`,
/// when the test binary is in `target/<profile>/deps`) if it is there, else
/// `debug/shoal-netem` in the target dir as for `shoal_bin`.
///
/// Cargo builds it for `cargo test -p shoal-tests` and `cargo build --workspace`, not for
/// another crate's tests: run `cargo build -p shoal-tests --bin shoal-netem` first.
pub fn netem_bin() -> PathBuf {
    const NAME: &str = "shoal-netem";
    if let Some(bin) = std::env::var_os("SHOAL_NETEM_BIN") {
        return PathBuf::from(bin);
    }
    let beside_test = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        let bin = deps.parent()?.join(NAME);
        (deps.file_name()? == "deps" && bin.is_file()).then_some(bin)
    });
    beside_test.unwrap_or_else(|| target_dir().join("debug").join(NAME))
}

/// `$CARGO_TARGET_DIR` if set, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            crate_dir.parent().unwrap_or(crate_dir).join("target")
        },
        PathBuf::from,
    )
}

/// Writes a harness message to stderr, tagged with the current thread (for tests, the
/// test's name). Never panics, unlike `eprintln!`, so `Drop` can use it while a test is
/// unwinding; the price is that cargo's output capture does not hold these lines back.
pub(crate) fn warn(args: fmt::Arguments<'_>) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unnamed thread");
    let _ = writeln!(std::io::stderr().lock(), "shoal-tests [{test}]: {args}");
}
