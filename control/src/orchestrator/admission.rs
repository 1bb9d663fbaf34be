//! What `service create` and `service update` must pass before anything is
//! written: a valid spec, a unique name, networks that exist (names become
//! ids), and published ports no other service holds (a port left at 0 gets
//! the lowest free one of 30000-32767, as Swarm does).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use thiserror::Error;

use super::pass::takes_global_task;
use crate::objects::{
    find, LookupError, Network, Node, Protocol, PublishMode, Service, ServiceMode, ServiceSpec,
    ServiceSpecError,
};

/// Where automatically published ports come from.
pub const AUTO_PORTS: RangeInclusive<u16> = 30000..=32767;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AdmissionError {
    #[error(transparent)]
    Spec(#[from] ServiceSpecError),
    #[error(transparent)]
    Network(#[from] LookupError),
    #[error("service {0} already exists")]
    NameTaken(String),
    #[error("port {port}/{protocol} is already published by service {service}")]
    PortTaken {
        port: u16,
        protocol: Protocol,
        service: String,
    },
    #[error("no free port left in 30000-32767 for {0}")]
    NoFreePort(Protocol),
    #[error("{0}")]
    PortReserved(super::ReservedPort),
    #[error("service cannot be explicitly attached to the ingress network \"{0}\": publish a port (-p) and its tasks join it")]
    IngressNetwork(String),
    /// Swarm's refusal of published ports while the swarm has no ingress
    /// network (it was removed; `network create --ingress` makes one).
    #[error("service needs ingress network, but no ingress network is present")]
    NoIngress,
}

/// The spec to store: checked, networks as ids, every port published.
/// `except` is the id of the service being updated.
pub fn admit(
    mut spec: ServiceSpec,
    services: &[Service],
    networks: &[Network],
    except: Option<&str>,
) -> Result<ServiceSpec, AdmissionError> {
    spec.validate()?;
    let others: Vec<&Service> = services
        .iter()
        .filter(|s| Some(s.id.as_str()) != except)
        .collect();
    if others.iter().any(|s| s.spec.name == spec.name) {
        return Err(AdmissionError::NameTaken(spec.name));
    }
    spec.networks = spec
        .networks
        .iter()
        .map(|n| find(networks, n).map(|found| found.id.clone()))
        .collect::<Result<_, _>>()?;
    let mut aliases = std::collections::BTreeMap::new();
    for (network, names) in std::mem::take(&mut spec.network_aliases) {
        let id = find(networks, &network)?.id.clone();
        let list: &mut Vec<String> = aliases.entry(id).or_default();
        for name in names {
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    spec.network_aliases = aliases;
    if let Some(ingress) = networks
        .iter()
        .find(|n| n.spec.ingress && spec.networks.contains(&n.id))
    {
        return Err(AdmissionError::IngressNetwork(ingress.name.clone()));
    }
    if !spec.ports.is_empty() && !networks.iter().any(|n| n.spec.ingress) {
        return Err(AdmissionError::NoIngress);
    }
    // Two names of one network.
    let mut seen = BTreeSet::new();
    if let Some(twice) = spec.networks.iter().find(|n| !seen.insert(*n)) {
        return Err(ServiceSpecError::NetworkTwice(twice.clone()).into());
    }
    let mut taken: BTreeSet<(u16, Protocol)> = BTreeSet::new();
    for other in &others {
        for p in &other.spec.ports {
            // Host-mode ports of two services may match: the scheduler
            // keeps their tasks on different nodes. The mesh's take a port
            // on every node.
            if spec.ports.iter().any(|mine| {
                mine.published == p.published
                    && mine.protocol == p.protocol
                    && (mine.mode == PublishMode::Ingress || p.mode == PublishMode::Ingress)
            }) {
                return Err(AdmissionError::PortTaken {
                    port: p.published,
                    protocol: p.protocol,
                    service: other.spec.name.clone(),
                });
            }
            taken.insert((p.published, p.protocol));
        }
    }
    for p in spec.ports.iter().filter(|p| p.published != 0) {
        taken.insert((p.published, p.protocol));
    }
    for port in spec.ports.iter_mut().filter(|p| p.published == 0) {
        let free = AUTO_PORTS
            .clone()
            .find(|n| !taken.contains(&(*n, port.protocol)))
            .ok_or(AdmissionError::NoFreePort(port.protocol))?;
        port.published = free;
        taken.insert((free, port.protocol));
    }
    Ok(spec)
}

/// Tasks a service wants: its replicas, or for a global service the nodes
/// that may run it.
pub fn desired_tasks(service: &Service, nodes: &[Node]) -> u64 {
    match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => nodes
            .iter()
            .filter(|n| takes_global_task(n, &service.spec.task.placement.constraints))
            .count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::PortConfig;
    use crate::orchestrator::tests::{network, spec};

    fn service(name: &str, ports: Vec<PortConfig>) -> Service {
        let mut spec = spec(name, 1);
        spec.ports = ports;
        Service {
            id: format!("id-{name}"),
            spec,
            previous_spec: None,
            spec_version: 1,
            update_status: None,
            created_at: 0,
            updated_at: 0,
            virtual_ips: Vec::new(),
        }
    }

    fn port(published: u16, protocol: Protocol) -> PortConfig {
        PortConfig {
            protocol,
            target: 80,
            published,
            mode: PublishMode::Ingress,
        }
    }

    fn ingress() -> Network {
        let mut ingress = network("ingress", "10.255.0.0/16");
        ingress.spec.ingress = true;
        ingress
    }

    #[test]
    fn published_ports_need_an_ingress_network_and_services_never_join_it() {
        let mut s = spec("web", 1);
        s.ports = vec![port(8080, Protocol::Tcp)];
        let without = vec![network("net", "10.0.1.0/24")];
        assert_eq!(
            admit(s.clone(), &[], &without, None)
                .unwrap_err()
                .to_string(),
            "service needs ingress network, but no ingress network is present"
        );
        let with = vec![network("net", "10.0.1.0/24"), ingress()];
        assert!(admit(s.clone(), &[], &with, None).is_ok());
        // Without ports, no ingress network is needed.
        s.ports.clear();
        assert!(admit(s.clone(), &[], &without, None).is_ok());
        s.networks = vec!["ingress".into()];
        assert_eq!(
            admit(s, &[], &with, None).unwrap_err(),
            AdmissionError::IngressNetwork("ingress".into())
        );
    }

    #[test]
    fn names_become_ids_and_unknown_networks_are_refused() {
        let networks = vec![network("n1abc", "10.0.1.0/24")];
        let mut s = spec("web", 1);
        s.networks = vec!["n1abc".into()];
        assert_eq!(
            admit(s.clone(), &[], &networks, None).unwrap().networks,
            vec!["n1abc"]
        );
        s.networks = vec!["nope".into()];
        assert_eq!(
            admit(s, &[], &networks, None).unwrap_err().to_string(),
            "network nope not found"
        );
    }

    #[test]
    fn a_published_port_is_refused_twice_and_auto_ports_skip_taken_ones() {
        let networks = vec![network("net", "10.0.1.0/24"), ingress()];
        let existing = vec![service(
            "a",
            vec![port(8080, Protocol::Tcp), port(30000, Protocol::Tcp)],
        )];
        let mut s = spec("b", 1);
        s.ports = vec![port(8080, Protocol::Tcp)];
        let err = admit(s.clone(), &existing, &networks, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "port 8080/tcp is already published by service a"
        );
        s.ports = vec![port(8080, Protocol::Udp), port(0, Protocol::Tcp)];
        let admitted = admit(s, &existing, &networks, None).unwrap();
        assert_eq!(admitted.ports[1].published, 30001);
        // An update of `a` itself keeps its own ports.
        let mut a = existing[0].spec.clone();
        a.task.env.push("X=1".into());
        assert!(admit(a, &existing, &networks, Some("id-a")).is_ok());
        assert!(matches!(
            admit(spec("a", 1), &existing, &networks, None),
            Err(AdmissionError::NameTaken(_))
        ));
    }

    #[test]
    fn host_mode_ports_may_repeat_across_services_but_never_meet_an_ingress_one() {
        let networks = vec![network("net", "10.0.1.0/24"), ingress()];
        let host = |p| PortConfig {
            mode: PublishMode::Host,
            ..port(p, Protocol::Tcp)
        };
        let existing = vec![service("a", vec![host(8080), port(9090, Protocol::Tcp)])];
        let mut s = spec("b", 1);
        s.ports = vec![host(8080)];
        assert!(admit(s.clone(), &existing, &networks, None).is_ok());
        s.ports = vec![port(8080, Protocol::Tcp)];
        assert!(matches!(
            admit(s.clone(), &existing, &networks, None),
            Err(AdmissionError::PortTaken { port: 8080, .. })
        ));
        s.ports = vec![host(9090)];
        assert!(matches!(
            admit(s, &existing, &networks, None),
            Err(AdmissionError::PortTaken { port: 9090, .. })
        ));
    }

    #[test]
    fn aliases_follow_their_network_from_name_to_id() {
        let mut app = network("n1abc", "10.0.1.0/24");
        app.name = "app".into();
        let networks = vec![app];
        let mut s = spec("db", 1);
        s.networks = vec!["app".into()];
        s.network_aliases
            .insert("app".into(), vec!["database".into(), "pg".into()]);
        let admitted = admit(s, &[], &networks, None).unwrap();
        assert_eq!(admitted.networks, vec!["n1abc"]);
        assert_eq!(
            admitted.network_aliases.get("n1abc"),
            Some(&vec!["database".to_string(), "pg".to_string()])
        );
    }
}
