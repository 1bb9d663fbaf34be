//! Task addresses on overlay networks. An address is taken while a task that
//! holds it lives, and for [`ADDRESS_QUARANTINE_MS`] after it stops: the
//! stopped task's endpoint is withdrawn from gossip as a tombstone that lives
//! that long, and an address is never handed out while a tombstone for it may
//! still be gossiped. Deleted tasks leave their addresses in a per-network
//! [`AddressQuarantine`] object until the time is up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::objects::{EndpointMode, Network, Service, Task, VirtualIp};
use crate::store::{kind, Object};

/// How long a released address stays unused: the lifetime of a gossip
/// tombstone (the agent's tables use this same constant).
pub const ADDRESS_QUARANTINE_MS: u64 = 30 * 60 * 1000;

/// Addresses of deleted tasks on one network, each with the time it may be
/// used again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressQuarantine {
    pub network: String,
    pub until_ms: BTreeMap<Ipv4Addr, u64>,
}

/// Keyed by network id.
impl Object for AddressQuarantine {
    const KIND: &'static str = kind::ADDRESS_QUARANTINE;
    fn id(&self) -> &str {
        &self.network
    }
}

impl AddressQuarantine {
    /// Drops the entries whose time is up; true if any went.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let before = self.until_ms.len();
        self.until_ms.retain(|_, until| *until > now_ms);
        before != self.until_ms.len()
    }
}

/// How one network's addresses are used, for `network inspect` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressUsage {
    pub in_use: usize,
    pub quarantined: usize,
    pub free: usize,
}

/// The taken addresses of every network, built from the tasks and the
/// quarantines, and updated as the pass allocates.
pub struct AddressBook {
    taken: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// The addresses live tasks and virtual IPs hold (a subset of `taken`).
    live: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    in_use: BTreeMap<String, usize>,
    quarantined: BTreeMap<String, usize>,
}

/// Why a task gets no address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("network {0} not found")]
    UnknownNetwork(String),
    #[error("no free address on network {network}: {in_use} in use, {quarantined} waiting for their gossip tombstones to expire; use a larger subnet")]
    Exhausted {
        network: String,
        in_use: usize,
        quarantined: usize,
    },
}

/// Whether a task still holds its addresses at `now_ms`.
fn holds(task: &Task, now_ms: u64) -> bool {
    !task.status.state.is_final()
        || task
            .status
            .timestamp_ms
            .saturating_add(ADDRESS_QUARANTINE_MS)
            > now_ms
}

impl AddressBook {
    pub fn new<'a>(
        tasks: impl IntoIterator<Item = &'a Task>,
        quarantines: &[AddressQuarantine],
        now_ms: u64,
    ) -> AddressBook {
        let mut book = AddressBook {
            taken: BTreeMap::new(),
            live: BTreeMap::new(),
            in_use: BTreeMap::new(),
            quarantined: BTreeMap::new(),
        };
        for task in tasks {
            let live = !task.status.state.is_final();
            if !holds(task, now_ms) {
                continue;
            }
            for a in &task.networks {
                if live {
                    book.live.entry(a.network.clone()).or_default().insert(a.ip);
                }
                if book
                    .taken
                    .entry(a.network.clone())
                    .or_default()
                    .insert(a.ip)
                {
                    let count = if live {
                        book.in_use.entry(a.network.clone()).or_default()
                    } else {
                        book.quarantined.entry(a.network.clone()).or_default()
                    };
                    *count += 1;
                }
            }
        }
        for q in quarantines {
            for (ip, until) in &q.until_ms {
                if *until > now_ms && book.taken.entry(q.network.clone()).or_default().insert(*ip) {
                    *book.quarantined.entry(q.network.clone()).or_default() += 1;
                }
            }
        }
        book
    }

    /// Marks `ip` taken on `network` (a service's virtual IP).
    pub fn reserve(&mut self, network: &str, ip: Ipv4Addr) {
        self.live.entry(network.to_string()).or_default().insert(ip);
        if self
            .taken
            .entry(network.to_string())
            .or_default()
            .insert(ip)
        {
            *self.in_use.entry(network.to_string()).or_default() += 1;
        }
    }

    /// Marks every virtual IP of `services` taken.
    pub fn reserve_vips<'a>(&mut self, services: impl IntoIterator<Item = &'a Service>) {
        for service in services {
            for vip in &service.virtual_ips {
                self.reserve(&vip.network, vip.addr);
            }
        }
    }

    /// The highest free host address of `network`, marked taken: virtual
    /// IPs come from the top of the subnet and tasks from the bottom, so the
    /// two allocators (service writes and the orchestrator's task writes)
    /// cannot pick the same address until the subnet is nearly full.
    pub fn allocate_high(&mut self, network: &Network) -> Result<Ipv4Addr, AddressError> {
        self.take(network, true)
    }

    /// The lowest free host address of `network` (never the gateway),
    /// marked taken.
    pub fn allocate(&mut self, network: &Network) -> Result<Ipv4Addr, AddressError> {
        self.take(network, false)
    }

    fn take(&mut self, network: &Network, from_top: bool) -> Result<Ipv4Addr, AddressError> {
        let spec = &network.spec;
        let taken = self.taken.entry(network.id.clone()).or_default();
        let free = |ip: &Ipv4Addr| *ip != spec.gateway && !taken.contains(ip);
        let mut hosts = spec.subnet.hosts();
        let found = if from_top {
            hosts.rev().find(free)
        } else {
            hosts.find(free)
        };
        let ip = found.ok_or_else(|| AddressError::Exhausted {
            network: network.name.clone(),
            in_use: self.in_use.get(&network.id).copied().unwrap_or(0),
            quarantined: self.quarantined.get(&network.id).copied().unwrap_or(0),
        })?;
        taken.insert(ip);
        self.live.entry(network.id.clone()).or_default().insert(ip);
        *self.in_use.entry(network.id.clone()).or_default() += 1;
        Ok(ip)
    }

    /// Takes `ip` on `network` again for a task of the slot whose stopped
    /// task held it, if no live task or virtual IP holds it: the stopped
    /// task's node withdrew it, and the new task announces the same address
    /// (and MAC) under its own id. False if it is live elsewhere.
    pub fn reclaim(&mut self, network: &Network, ip: Ipv4Addr) -> bool {
        if ip == network.spec.gateway || !network.spec.subnet.contains(&ip) {
            return false;
        }
        if !self.live.entry(network.id.clone()).or_default().insert(ip) {
            return false;
        }
        if !self.taken.entry(network.id.clone()).or_default().insert(ip) {
            if let Some(q) = self.quarantined.get_mut(&network.id) {
                *q = q.saturating_sub(1);
            }
        }
        *self.in_use.entry(network.id.clone()).or_default() += 1;
        true
    }

    pub fn usage(&self, network: &Network) -> AddressUsage {
        let hosts = network.spec.subnet.hosts().count().saturating_sub(1);
        let taken = self.taken.get(&network.id).map_or(0, |t| t.len());
        AddressUsage {
            in_use: self.in_use.get(&network.id).copied().unwrap_or(0),
            quarantined: self.quarantined.get(&network.id).copied().unwrap_or(0),
            free: hosts.saturating_sub(taken),
        }
    }
}

/// The quarantines after deleting `deleted` at `now_ms`: each address that
/// is still within its time joins its network's quarantine; expired entries
/// go. Returns only the quarantines that changed.
pub fn quarantine_deleted<'a>(
    current: &[AddressQuarantine],
    deleted: impl IntoIterator<Item = &'a Task>,
    now_ms: u64,
) -> Vec<AddressQuarantine> {
    let mut by_network: BTreeMap<String, (AddressQuarantine, bool)> = current
        .iter()
        .map(|q| (q.network.clone(), (q.clone(), false)))
        .collect();
    for task in deleted {
        let until = if task.status.state.is_final() {
            task.status
                .timestamp_ms
                .saturating_add(ADDRESS_QUARANTINE_MS)
        } else {
            now_ms.saturating_add(ADDRESS_QUARANTINE_MS)
        };
        if until <= now_ms {
            continue;
        }
        for a in &task.networks {
            let (q, changed) = by_network.entry(a.network.clone()).or_insert_with(|| {
                (
                    AddressQuarantine {
                        network: a.network.clone(),
                        until_ms: BTreeMap::new(),
                    },
                    false,
                )
            });
            let slot = q.until_ms.entry(a.ip).or_insert(0);
            if *slot < until {
                *slot = until;
                *changed = true;
            }
        }
    }
    by_network
        .into_values()
        .filter_map(|(mut q, changed)| {
            let expired = q.expire(now_ms);
            (changed || expired).then_some(q)
        })
        .collect()
}

/// Gives `service` one virtual IP on each network of its spec (none in
/// `dnsrr` mode) (by id; the
/// spec's networks are ids after admission), keeping those it has and
/// dropping those of networks it left. `book` must already hold every
/// other address in use.
pub fn assign_vips(
    service: &mut Service,
    networks: &[Network],
    book: &mut AddressBook,
) -> Result<(), AddressError> {
    let mut kept = Vec::new();
    if service.spec.endpoint_mode == EndpointMode::Dnsrr {
        // Names resolve to the tasks; a VIP held before is given back.
        service.virtual_ips = kept;
        return Ok(());
    }
    for id in &service.spec.networks {
        if let Some(vip) = service.virtual_ips.iter().find(|v| &v.network == id) {
            kept.push(vip.clone());
            continue;
        }
        let network = networks
            .iter()
            .find(|n| &n.id == id)
            .ok_or_else(|| AddressError::UnknownNetwork(id.clone()))?;
        kept.push(VirtualIp {
            network: id.clone(),
            addr: book.allocate_high(network)?,
        });
    }
    service.virtual_ips = kept;
    Ok(())
}
