//! [`FakeIpvs`]: an in-memory IPVS table with the kernel's answers (EEXIST
//! for a second add, ESRCH for a missing service, ENOENT for a missing real
//! server), which counts the mutating requests it gets. For unit tests of
//! whatever drives IPVS.

use std::collections::BTreeMap;

use super::objects::{Destination, Service, ServiceKey, Timeouts};
use super::{IpvsError, IpvsKernel};

#[derive(Debug, Clone)]
pub struct FakeIpvs {
    services: BTreeMap<ServiceKey, (Service, Vec<Destination>)>,
    timeouts: Timeouts,
    /// Mutating requests received (adds, updates, removals, timeouts).
    pub writes: usize,
}

impl Default for FakeIpvs {
    fn default() -> Self {
        FakeIpvs {
            services: BTreeMap::new(),
            // The kernel's defaults.
            timeouts: Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            },
            writes: 0,
        }
    }
}

fn refused(op: &'static str, object: String, errno: i32) -> IpvsError {
    IpvsError::Kernel { op, object, errno }
}

impl FakeIpvs {
    fn entry(
        &mut self,
        op: &'static str,
        key: &ServiceKey,
    ) -> Result<&mut (Service, Vec<Destination>), IpvsError> {
        self.services
            .get_mut(key)
            .ok_or_else(|| refused(op, key.to_string(), libc::ESRCH))
    }
}

impl IpvsKernel for FakeIpvs {
    async fn services(&mut self) -> Result<Vec<Service>, IpvsError> {
        Ok(self.services.values().map(|(s, _)| s.clone()).collect())
    }

    async fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<Destination>, IpvsError> {
        Ok(self.entry("GET_DEST", service)?.1.clone())
    }

    async fn add_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        self.writes += 1;
        if self.services.contains_key(&service.key) {
            return Err(refused(
                "NEW_SERVICE",
                service.key.to_string(),
                libc::EEXIST,
            ));
        }
        self.services
            .insert(service.key, (service.clone(), Vec::new()));
        Ok(())
    }

    async fn update_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        self.writes += 1;
        self.entry("SET_SERVICE", &service.key)?.0 = service.clone();
        Ok(())
    }

    async fn remove_service(&mut self, service: &ServiceKey) -> Result<(), IpvsError> {
        self.writes += 1;
        self.services
            .remove(service)
            .map(|_| ())
            .ok_or_else(|| refused("DEL_SERVICE", service.to_string(), libc::ESRCH))
    }

    async fn add_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError> {
        self.writes += 1;
        let (_, dests) = self.entry("NEW_DEST", service)?;
        if dests
            .iter()
            .any(|d| d.addr == destination.addr && d.port == destination.port)
        {
            return Err(refused(
                "NEW_DEST",
                format!("{}:{}", destination.addr, destination.port),
                libc::EEXIST,
            ));
        }
        let mut stored = destination.clone();
        stored.connections = Some(Default::default());
        dests.push(stored);
        Ok(())
    }

    async fn update_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError> {
        self.writes += 1;
        let (_, dests) = self.entry("SET_DEST", service)?;
        let Some(stored) = dests
            .iter_mut()
            .find(|d| d.addr == destination.addr && d.port == destination.port)
        else {
            return Err(refused(
                "SET_DEST",
                format!("{}:{}", destination.addr, destination.port),
                libc::ENOENT,
            ));
        };
        let connections = stored.connections;
        *stored = destination.clone();
        stored.connections = connections;
        Ok(())
    }

    async fn remove_destination(
        &mut self,
        service: &ServiceKey,
        destination: &Destination,
    ) -> Result<(), IpvsError> {
        self.writes += 1;
        let (_, dests) = self.entry("DEL_DEST", service)?;
        let before = dests.len();
        dests.retain(|d| !(d.addr == destination.addr && d.port == destination.port));
        if dests.len() == before {
            return Err(refused(
                "DEL_DEST",
                format!("{}:{}", destination.addr, destination.port),
                libc::ENOENT,
            ));
        }
        Ok(())
    }

    async fn timeouts(&mut self) -> Result<Timeouts, IpvsError> {
        Ok(self.timeouts)
    }

    async fn set_timeouts(&mut self, timeouts: &Timeouts) -> Result<(), IpvsError> {
        self.writes += 1;
        for (current, new) in [
            (&mut self.timeouts.tcp, timeouts.tcp),
            (&mut self.timeouts.tcp_fin, timeouts.tcp_fin),
            (&mut self.timeouts.udp, timeouts.udp),
        ] {
            if new != 0 {
                *current = new;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), IpvsError> {
        self.writes += 1;
        self.services.clear();
        Ok(())
    }
}
