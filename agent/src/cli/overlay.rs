//! `shoal overlay ...`: apply an overlay spec from a file, show what the
//! kernel holds, tear it down, or run a command inside a sandbox.

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};

use crate::netns::NetnsDir;
use crate::overlay::{self, names, OverlaySpec, RtnlKernel};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum OverlayCommand {
    /// Bring this host's overlay to the spec in FILE (JSON); re-applying
    /// the same spec changes nothing.
    Apply {
        /// The overlay spec (JSON).
        file: PathBuf,
        /// How to print what changed: text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the overlay state this host's kernel holds, as JSON.
    Show,
    /// Remove every network and sandbox namespace this agent made.
    Reset,
    /// Run a command inside a sandbox's network namespace.
    Exec {
        /// The sandbox's id.
        sandbox: String,
        /// The command to run, and its arguments.
        #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

impl OverlayCommand {
    pub fn run(self, run_dir: &Path) -> anyhow::Result<()> {
        let netns = NetnsDir::new(run_dir.join("netns"));
        match self {
            OverlayCommand::Apply { file, format } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read overlay spec {}", file.display()))?;
                let spec: OverlaySpec = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a valid overlay spec", file.display()))?;
                let mut kernel = RtnlKernel::new(netns);
                let changes = overlay::reconcile(&mut kernel, &spec)?;
                match format {
                    Format::Json => println!(
                        "{}",
                        serde_json::json!({ "changes": changes, "netlink_requests": kernel.mutations() })
                    ),
                    Format::Text => {
                        for change in &changes {
                            println!("{}", serde_json::to_string(change)?);
                        }
                        println!(
                            "overlay: {} changes applied ({} netlink requests)",
                            changes.len(),
                            kernel.mutations()
                        );
                    }
                }
                Ok(())
            }
            OverlayCommand::Show => {
                let mut kernel = RtnlKernel::new(netns);
                let state = overlay::OverlayKernel::observe(&mut kernel)?;
                println!("{}", serde_json::to_string_pretty(&state)?);
                Ok(())
            }
            OverlayCommand::Reset => {
                let mut removed = 0;
                for ns in netns.list()? {
                    netns.remove(&ns)?;
                    removed += 1;
                }
                println!("overlay: removed {removed} namespaces");
                Ok(())
            }
            OverlayCommand::Exec { sandbox, command } => exec_in(&netns, &sandbox, &command),
        }
    }
}

/// Replaces this process with `command` inside the sandbox's namespace. The
/// CLI is still single-threaded here, so `setns` moves the whole process.
fn exec_in(netns: &NetnsDir, sandbox: &str, command: &[String]) -> anyhow::Result<()> {
    let name = names::sandbox_ns(sandbox);
    if !netns.exists(&name) {
        bail!(
            "sandbox `{sandbox}` not found under {}",
            netns.path("").display()
        );
    }
    let ns = File::open(netns.path(&name))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter sandbox `{sandbox}`"))?;
    let args: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .context("command contains a NUL byte")?;
    let err = nix::unistd::execvp(&args[0], &args).unwrap_err();
    bail!("cannot run `{}`: {err}", command[0])
}
