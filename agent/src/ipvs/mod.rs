//! IPVS, the kernel's layer-4 load balancer, programmed over generic
//! netlink: the message layer (`wire`, `objects`), the kernel boundary
//! ([`IpvsKernel`], with the real [`IpvsClient`] on genetlink and the
//! in-memory [`FakeIpvs`]), and [`apply`], which makes the kernel's table
//! equal to a desired one with only the changes needed. It is the layer the
//! `--mesh ipvs` backend stands on, and `shoal ipvs` drives it directly.
//!
//! Never shells out to `ipvsadm`, and never branches on an error's text:
//! kernel refusals carry their errno.

pub mod apply;
pub mod capture;
pub mod client;
pub mod fake;
pub mod mesh;
pub mod objects;
pub mod wire;

#[cfg(test)]
mod tests;

pub use apply::{apply, apply_service, apply_timeouts, Change, IpvsTable, VirtualService};
pub use client::IpvsClient;
pub use fake::FakeIpvs;
pub use objects::{
    Connections, Destination, Forward, Info, Protocol, Scheduler, Service, ServiceKey, Timeouts,
};

/// What can go wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error("cannot open a generic netlink socket")]
    Socket(#[source] std::io::Error),
    #[error(
        "this kernel has no IPVS (no generic netlink family `IPVS`): load it with \
         `modprobe ip_vs` (Debian's cloud kernel has it as a module), or run the agent with \
         `--mesh ebpf`"
    )]
    NoIpvs,
    #[error("generic netlink request {op} failed: {reason}")]
    Netlink { op: &'static str, reason: String },
    #[error("IPVS refused {op} of {object}: {}", errno_text(*.errno))]
    Kernel {
        op: &'static str,
        object: String,
        errno: i32,
    },
    #[error("cannot read the kernel's IPVS answer to {op}: {reason}")]
    Decode { op: &'static str, reason: String },
}

impl IpvsError {
    /// The object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        matches!(self, IpvsError::Kernel { errno, .. } if *errno == libc::EEXIST)
    }

    /// The service or destination does not exist (ESRCH for a service,
    /// ENOENT for a destination).
    pub fn is_missing(&self) -> bool {
        matches!(self, IpvsError::Kernel { errno, .. }
            if *errno == libc::ESRCH || *errno == libc::ENOENT)
    }
}

fn errno_text(errno: i32) -> String {
    let hint = match errno {
        libc::EEXIST => "it already exists",
        libc::ESRCH => "no such service",
        libc::ENOENT => "no such object (or scheduler module: is ip_vs_<name> available?)",
        libc::EINVAL => "invalid request",
        libc::EPERM => "not permitted (needs CAP_NET_ADMIN)",
        libc::EBUSY => "busy",
        _ => "",
    };
    let text = std::io::Error::from_raw_os_error(errno);
    if hint.is_empty() {
        format!("{text}")
    } else {
        format!("{hint} ({text})")
    }
}

/// The kernel boundary: one IPVS table. Mutations fail with the kernel's
/// errno when an object exists already or is missing.
#[allow(async_fn_in_trait)]
pub trait IpvsKernel {
    async fn services(&mut self) -> Result<Vec<Service>, IpvsError>;
    async fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<Destination>, IpvsError>;
    async fn add_service(&mut self, service: &Service) -> Result<(), IpvsError>;
    async fn update_service(&mut self, service: &Service) -> Result<(), IpvsError>;
    async fn remove_service(&mut self, service: &ServiceKey) -> Result<(), IpvsError>;
    async fn add_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError>;
    async fn update_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError>;
    async fn remove_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError>;
    async fn timeouts(&mut self) -> Result<Timeouts, IpvsError>;
    /// Sets the non-zero ones.
    async fn set_timeouts(&mut self, timeouts: &Timeouts) -> Result<(), IpvsError>;
    /// Removes every service.
    async fn flush(&mut self) -> Result<(), IpvsError>;
}
