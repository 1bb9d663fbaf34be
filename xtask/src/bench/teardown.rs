//! Making sure a bench run leaves nothing behind: one registered teardown (shoal's mesh
//! reset if it was applied, then every `shoal-bench-<pid>-*` namespace with the
//! processes in it, and the run dir), done once by whichever comes first: the normal
//! end, an error or panic (through `Topology`'s `Drop`), or SIGINT/SIGTERM/SIGHUP.
//!
//! Every process the bench starts is spawned through [`spawn`], under the same lock the
//! teardown takes, so nothing new can start inside a namespace once it is being torn
//! down.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::run;

/// What to undo; `None` once it has been undone (or before anything was made).
static PLAN: Mutex<Option<Plan>> = Mutex::new(None);

/// The leftovers of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `shoal-bench-<pid>`: every namespace and the run dir continue it after a `-`.
    pub prefix: String,
    /// Where `shoal mesh reset` must run if the mesh was applied.
    pub node_netns: PathBuf,
    /// The shoal binary; `Some` while a `shoal mesh apply` may be in effect.
    pub mesh_applied_by: Option<PathBuf>,
}

fn lock() -> MutexGuard<'static, Option<Plan>> {
    // A panic while holding the lock leaves the plan as it was, which is still right.
    PLAN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers what to undo and starts the signal watcher. Call it before creating
/// anything, from the main thread, before any other thread exists: the signals are
/// blocked here and inherited by every later thread, so only the watcher receives
/// them. (Children start with an empty mask: std resets it before `exec`.)
pub fn register(plan: Plan) -> Result<()> {
    *lock() = Some(plan);
    let signals = watched_signals();
    signals
        .thread_block()
        .context("cannot block SIGINT/SIGTERM/SIGHUP for the signal watcher")?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let signal = signals.wait().ok();
            let name = signal.map_or("a signal", Signal::as_str);
            eprintln!("\nbench: {name} received; removing the bench namespaces");
            run_now();
            std::process::exit(130);
        })
        .context("cannot start the signal watcher thread")?;
    Ok(())
}

fn watched_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Marks the mesh as applied by `shoal` (so a teardown resets it first), or as reset.
pub fn set_mesh_applied(shoal: Option<&Path>) {
    if let Some(plan) = lock().as_mut() {
        plan.mesh_applied_by = shoal.map(Path::to_path_buf);
    }
}

/// Spawns `cmd` unless the teardown has started (or is done).
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    let plan = lock();
    if plan.is_none() {
        bail!(
            "the bench is being torn down; not starting `{}`",
            run::display(cmd)
        );
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", run::display(cmd)))?;
    drop(plan);
    Ok(child)
}

/// Undoes the registered plan, once; later calls do nothing. Every step is attempted
/// and reported; none can fail the caller.
pub fn run_now() {
    let mut guard = lock();
    let Some(plan) = guard.take() else {
        return;
    };
    if let Some(shoal) = &plan.mesh_applied_by {
        reset_mesh(shoal, &plan.node_netns);
    }
    match shoal_tests::cleanup_leftovers(Some(&plan.prefix)) {
        Ok(removed) => {
            let netns = removed
                .iter()
                .filter(|r| matches!(r, shoal_tests::Removed::Netns(_)))
                .count();
            println!(
                "bench: removed {netns} network namespace(s) and the run dir of {}",
                plan.prefix
            );
        }
        Err(e) => eprintln!(
            "bench: cleaning up {} failed: {e}; `cargo xtask clean {}` retries",
            plan.prefix, plan.prefix
        ),
    }
}

/// `shoal mesh reset` in the node, bounded; a failure is reported, not raised, since
/// deleting the namespace detaches the programs anyway (pinned objects would stay).
fn reset_mesh(shoal: &Path, node_netns: &Path) {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", node_netns.display()))
        .args(["--", "timeout", "-k", "2", "20"])
        .arg(shoal)
        .args(["mesh", "reset"])
        .stdin(Stdio::null());
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "bench: `shoal mesh reset` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or_default()
        ),
        Err(e) => eprintln!("bench: cannot run `shoal mesh reset`: {e}"),
    }
}
