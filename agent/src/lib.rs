//! The shoal agent: the per-host daemon's parts and the CLI that drives them.
//! See the README's architecture section for how the parts fit together.

pub mod admission;
pub mod balancer;
pub mod cli;
pub mod daemon;
pub mod dns;
pub mod docker_api;
pub mod ebpf;
pub mod executor;
pub mod gossip;
pub mod image;
pub mod ipvs;
pub mod netns;
pub mod overlay;
pub mod private_files;

#[cfg(test)]
mod error_chains;
