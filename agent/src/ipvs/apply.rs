//! Making the kernel's IPVS table equal to a desired one, level-triggered:
//! read what the kernel has, write only the differences, new servers before
//! stale ones are removed (a service never passes through having none).
//! Applying the same table twice writes nothing the second time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::objects::{Destination, Service, ServiceKey, Timeouts};
use super::{IpvsError, IpvsKernel};

/// A virtual service and its real servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualService {
    #[serde(flatten)]
    pub service: Service,
    #[serde(default)]
    pub destinations: Vec<Destination>,
}

/// The whole IPVS table: services not in it are removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsTable {
    #[serde(default)]
    pub services: Vec<VirtualService>,
    /// The connection timeouts; `None` leaves the kernel's as they are.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

/// One write `apply` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    SetTimeouts(Timeouts),
    AddService(ServiceKey),
    UpdateService(ServiceKey),
    RemoveService(ServiceKey),
    AddDestination(ServiceKey, String),
    UpdateDestination(ServiceKey, String),
    RemoveDestination(ServiceKey, String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::SetTimeouts(t) => write!(
                f,
                "set timeouts tcp {} s, tcpfin {} s, udp {} s",
                t.tcp, t.tcp_fin, t.udp
            ),
            Change::AddService(k) => write!(f, "add service {k}"),
            Change::UpdateService(k) => write!(f, "update service {k}"),
            Change::RemoveService(k) => write!(f, "remove service {k}"),
            Change::AddDestination(k, d) => write!(f, "add real server {d} to {k}"),
            Change::UpdateDestination(k, d) => write!(f, "update real server {d} of {k}"),
            Change::RemoveDestination(k, d) => write!(f, "remove real server {d} from {k}"),
        }
    }
}

fn server(d: &Destination) -> String {
    match d.addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{}", d.port),
        a => format!("{a}:{}", d.port),
    }
}

/// Brings `kernel` to `desired`; returns the writes made, in order.
pub async fn apply<K: IpvsKernel>(
    kernel: &mut K,
    desired: &IpvsTable,
) -> Result<Vec<Change>, IpvsError> {
    let mut changes = Vec::new();
    if let Some(wanted) = desired.timeouts {
        changes.extend(apply_timeouts(kernel, wanted).await?);
    }

    let current: BTreeMap<ServiceKey, Service> = kernel
        .services()
        .await?
        .into_iter()
        .map(|s| (s.key, s))
        .collect();
    let mut wanted_keys = BTreeSet::new();
    for virtual_service in &desired.services {
        wanted_keys.insert(virtual_service.service.key);
        let have = current.get(&virtual_service.service.key);
        apply_known(kernel, virtual_service, have, &mut changes).await?;
    }
    for key in current.keys().filter(|k| !wanted_keys.contains(k)) {
        kernel.remove_service(key).await?;
        changes.push(Change::RemoveService(*key));
    }
    Ok(changes)
}

/// Sets the non-zero timeouts of `wanted` that differ from the kernel's.
pub async fn apply_timeouts<K: IpvsKernel>(
    kernel: &mut K,
    wanted: Timeouts,
) -> Result<Option<Change>, IpvsError> {
    let current = kernel.timeouts().await?;
    let differs = |want: u32, have: u32| want != 0 && want != have;
    if differs(wanted.tcp, current.tcp)
        || differs(wanted.tcp_fin, current.tcp_fin)
        || differs(wanted.udp, current.udp)
    {
        kernel.set_timeouts(&wanted).await?;
        return Ok(Some(Change::SetTimeouts(wanted)));
    }
    Ok(None)
}

/// Brings one virtual service to `desired` (added if missing, its real
/// servers made equal), leaving every other service alone.
pub async fn apply_service<K: IpvsKernel>(
    kernel: &mut K,
    desired: &VirtualService,
) -> Result<Vec<Change>, IpvsError> {
    let have = kernel
        .services()
        .await?
        .into_iter()
        .find(|s| s.key == desired.service.key);
    let mut changes = Vec::new();
    apply_known(kernel, desired, have.as_ref(), &mut changes).await?;
    Ok(changes)
}

/// `virtual_service`, given what the kernel has of it (`have`).
async fn apply_known<K: IpvsKernel>(
    kernel: &mut K,
    virtual_service: &VirtualService,
    have: Option<&Service>,
    changes: &mut Vec<Change>,
) -> Result<(), IpvsError> {
    let service = &virtual_service.service;
    let existing = match have {
        None => {
            kernel.add_service(service).await?;
            changes.push(Change::AddService(service.key));
            Vec::new()
        }
        Some(have) => {
            if have != service {
                kernel.update_service(service).await?;
                changes.push(Change::UpdateService(service.key));
            }
            kernel.destinations(&service.key).await?
        }
    };
    apply_destinations(
        kernel,
        service.key,
        &existing,
        &virtual_service.destinations,
        changes,
    )
    .await
}

async fn apply_destinations<K: IpvsKernel>(
    kernel: &mut K,
    key: ServiceKey,
    existing: &[Destination],
    wanted: &[Destination],
    changes: &mut Vec<Change>,
) -> Result<(), IpvsError> {
    let find = |d: &Destination| {
        existing
            .iter()
            .find(|e| e.addr == d.addr && e.port == d.port)
    };
    for dest in wanted {
        match find(dest) {
            None => {
                kernel.add_destination(&key, dest).await?;
                changes.push(Change::AddDestination(key, server(dest)));
            }
            Some(have) if !have.same_settings(dest) => {
                kernel.update_destination(&key, dest).await?;
                changes.push(Change::UpdateDestination(key, server(dest)));
            }
            Some(_) => {}
        }
    }
    for stale in existing
        .iter()
        .filter(|e| !wanted.iter().any(|w| w.addr == e.addr && w.port == e.port))
    {
        kernel.remove_destination(&key, stale).await?;
        changes.push(Change::RemoveDestination(key, server(stale)));
    }
    Ok(())
}
