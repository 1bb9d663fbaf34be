//! The command line: Docker-like verbs, each a thin layer over one part of
//! the agent. Prints for people by default and JSON with `--format json`.

mod overlay;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Runs services across a fleet of Linux hosts, the way Docker Swarm mode
/// does, with an eBPF-first data plane.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
pub struct Cli {
    /// Where the agent keeps runtime state (namespaces, sockets). Several
    /// agents on one machine each need their own.
    #[arg(
        long,
        global = true,
        env = "SHOAL_RUN_DIR",
        default_value = "/run/shoal"
    )]
    pub run_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Program this host's VXLAN overlay directly (plumbing; the agent drives
    /// it from gossip in a swarm).
    #[command(subcommand)]
    Overlay(overlay::OverlayCommand),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Overlay(cmd) => cmd.run(&self.run_dir),
        }
    }
}
