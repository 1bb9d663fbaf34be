//! [`Balancer`]: a [`LoadBalancer`] and what it holds, brought to a
//! [`BalancerSpec`] with only the writes that differ.
//!
//! Order matters for flows in progress: local addresses and new entries are
//! written before stale ones are removed. An entry that asks for more than
//! the balancer holds is cut to its limit (the lowest addresses serve, the
//! others linger) and reported, never dropped silently.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

use super::{
    BalancerError, BalancerSpec, LoadBalancer, MeshBackend, Overflow, PortBackends, PortKey,
    Programmed,
};

/// What an update wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub ports_written: usize,
    pub ports_deleted: usize,
    pub vips_written: usize,
    pub vips_deleted: usize,
    pub locals_changed: usize,
    /// Entries cut to the balancer's limits.
    pub over_limit: Vec<Overflow>,
    /// Published ports the balancer failed to write or remove, with the
    /// error; every other port was still brought to the spec.
    #[serde(skip)]
    pub failed_ports: BTreeMap<PortKey, String>,
}

impl Changes {
    /// Nothing written (entries over their limit may still be reported).
    pub fn is_empty(&self) -> bool {
        self.ports_written
            + self.ports_deleted
            + self.vips_written
            + self.vips_deleted
            + self.locals_changed
            == 0
    }
}

/// The backends of each port `spec` asks for. Ports listed twice are merged;
/// a backend both active and lingering is active; a port with only
/// lingering backends has no active one.
pub fn desired_ports(spec: &BalancerSpec) -> BTreeMap<PortKey, PortBackends> {
    let mut ports: BTreeMap<PortKey, PortBackends> = BTreeMap::new();
    for service in &spec.services {
        let entry = ports
            .entry(PortKey {
                protocol: service.protocol,
                port: service.port,
            })
            .or_default();
        entry.active.extend(service.backends.iter().cloned());
        entry.lingering.extend(service.lingering.iter().cloned());
    }
    for entry in ports.values_mut() {
        let active = entry.active.clone();
        entry.lingering.retain(|b| !active.contains(b));
    }
    ports
}

/// Cuts `backends` to `limit` active ones: the rest linger.
fn within_limit(
    port: PortKey,
    mut backends: PortBackends,
    limit: usize,
) -> (PortBackends, Option<Overflow>) {
    if backends.active.len() <= limit {
        return (backends, None);
    }
    let overflow = Overflow::Port {
        port,
        backends: backends.active.len(),
        limit,
    };
    let extra: Vec<MeshBackend> = backends.active.iter().skip(limit).cloned().collect();
    for backend in extra {
        backends.active.remove(&backend);
        backends.lingering.insert(backend);
    }
    (backends, Some(overflow))
}

/// The load balancer: a kernel backend and what it holds.
pub struct Balancer<L: LoadBalancer> {
    kernel: L,
    state: Programmed,
}

impl<L: LoadBalancer> Balancer<L> {
    /// Starts from what the kernel already holds (an earlier agent's).
    pub fn new(mut kernel: L) -> Result<Self, BalancerError> {
        let state = kernel.observe()?;
        Ok(Balancer { kernel, state })
    }

    pub fn kernel(&mut self) -> &mut L {
        &mut self.kernel
    }

    pub fn state(&self) -> &Programmed {
        &self.state
    }

    /// Brings the balancer to `spec`.
    pub fn apply(&mut self, spec: &BalancerSpec) -> Result<Changes, BalancerError> {
        self.apply_holding(spec, &BTreeSet::new())
    }

    /// Brings the balancer to `spec`, leaving the ports in `held` as they
    /// are (they wait out a retry delay). A port that fails is reported in
    /// [`Changes::failed_ports`] and does not stop the others; local
    /// addresses and virtual IPs still fail the whole call.
    pub fn apply_holding(
        &mut self,
        spec: &BalancerSpec,
        held: &BTreeSet<PortKey>,
    ) -> Result<Changes, BalancerError> {
        let limits = self.kernel.limits();
        let mut changes = Changes::default();
        let mut want = BTreeMap::new();
        for (port, backends) in desired_ports(spec) {
            let (backends, overflow) = within_limit(port, backends, limits.backends_per_port);
            changes.over_limit.extend(overflow);
            want.insert(port, backends);
        }
        let mut vips = BTreeMap::new();
        for (vip, tasks) in &spec.vips {
            if tasks.len() > limits.tasks_per_vip {
                changes.over_limit.push(Overflow::Vip {
                    vip: *vip,
                    tasks: tasks.len(),
                    limit: limits.tasks_per_vip,
                });
            }
            let kept: BTreeSet<Ipv4Addr> =
                tasks.iter().take(limits.tasks_per_vip).copied().collect();
            vips.insert(*vip, kept);
        }

        for addr in spec.locals.difference(&self.state.locals.clone()) {
            self.kernel.put_local(*addr)?;
            self.state.locals.insert(*addr);
            changes.locals_changed += 1;
        }
        for (vip, tasks) in &vips {
            if self.state.vips.get(vip) != Some(tasks) {
                self.kernel.put_vip(*vip, tasks)?;
                self.state.vips.insert(*vip, tasks.clone());
                changes.vips_written += 1;
            }
        }
        for (port, backends) in want.iter().filter(|(p, _)| !held.contains(p)) {
            if self.state.ports.get(port) != Some(backends) {
                match self.kernel.put_port(*port, backends) {
                    Ok(()) => {
                        self.state.ports.insert(*port, backends.clone());
                        changes.ports_written += 1;
                    }
                    Err(e) => {
                        changes.failed_ports.insert(*port, e.chain().to_string());
                    }
                }
            }
        }
        let gone: Vec<PortKey> = self
            .state
            .ports
            .keys()
            .filter(|k| !want.contains_key(k) && !held.contains(k))
            .copied()
            .collect();
        for port in gone {
            match self.kernel.delete_port(port) {
                Ok(()) => {
                    self.state.ports.remove(&port);
                    changes.ports_deleted += 1;
                }
                Err(e) => {
                    changes.failed_ports.insert(port, e.chain().to_string());
                }
            }
        }
        let gone: Vec<Ipv4Addr> = self
            .state
            .vips
            .keys()
            .filter(|v| !vips.contains_key(v))
            .copied()
            .collect();
        for vip in gone {
            self.kernel.delete_vip(vip)?;
            self.state.vips.remove(&vip);
            changes.vips_deleted += 1;
        }
        for addr in self.state.locals.clone().difference(&spec.locals) {
            self.kernel.delete_local(*addr)?;
            self.state.locals.remove(addr);
            changes.locals_changed += 1;
        }
        Ok(changes)
    }

    /// Sets one port's active backends (its lingering ones go); writes
    /// nothing if they are unchanged.
    pub fn set_port(
        &mut self,
        port: PortKey,
        active: &BTreeSet<MeshBackend>,
    ) -> Result<Option<Overflow>, BalancerError> {
        let limit = self.kernel.limits().backends_per_port;
        let (backends, overflow) = within_limit(
            port,
            PortBackends {
                active: active.clone(),
                lingering: BTreeSet::new(),
            },
            limit,
        );
        if self.state.ports.get(&port) != Some(&backends) {
            self.kernel.put_port(port, &backends)?;
            self.state.ports.insert(port, backends);
        }
        Ok(overflow)
    }
}
