//! Ports every node needs for itself, which no service may publish: the
//! routing mesh takes a published port on every node's addresses, so a
//! service on 2377 would cut the managers' API off, on 7946 gossip, and on
//! 4789/udp the overlay's VXLAN traffic. A manager's API listens on the
//! port it was configured with (`--listen-port`), which the store records
//! for every node: each of those is reserved as well.

use std::fmt;

use crate::api::GOSSIP_PORT;
use crate::objects::{Protocol, ServiceSpec};

/// The managers' API port when none is configured.
pub const DEFAULT_API_PORT: u16 = 2377;
/// The overlay's VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

/// A port a node holds for itself, and what for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedPort {
    pub port: u16,
    pub protocol: Protocol,
    pub used_for: &'static str,
}

impl fmt::Display for ReservedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "port {}/{} is reserved: every node uses it for {}; publish another port",
            self.port, self.protocol, self.used_for
        )
    }
}

/// The ports nodes need, given the managers' configured API ports (0 for
/// one not known is skipped).
pub fn reserved_ports(api_ports: &[u16]) -> Vec<ReservedPort> {
    let api = "the managers' API (mTLS gRPC)";
    let mut ports = vec![
        ReservedPort {
            port: DEFAULT_API_PORT,
            protocol: Protocol::Tcp,
            used_for: api,
        },
        ReservedPort {
            port: GOSSIP_PORT,
            protocol: Protocol::Tcp,
            used_for: "gossip (full-state sync)",
        },
        ReservedPort {
            port: GOSSIP_PORT,
            protocol: Protocol::Udp,
            used_for: "gossip (membership)",
        },
        ReservedPort {
            port: VXLAN_PORT,
            protocol: Protocol::Udp,
            used_for: "the overlay networks' VXLAN traffic",
        },
    ];
    for &port in api_ports {
        let known = ports
            .iter()
            .any(|r| r.port == port && r.protocol == Protocol::Tcp);
        if port != 0 && !known {
            ports.push(ReservedPort {
                port,
                protocol: Protocol::Tcp,
                used_for: "a manager's API (its configured --listen-port)",
            });
        }
    }
    ports
}

/// The first port of `spec` that nodes need for themselves, if any.
pub fn reserved_port_in(spec: &ServiceSpec, api_ports: &[u16]) -> Option<ReservedPort> {
    let reserved = reserved_ports(api_ports);
    spec.ports.iter().find_map(|p| {
        reserved
            .iter()
            .find(|r| r.port == p.published && r.protocol == p.protocol)
            .copied()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::PortConfig;
    use crate::orchestrator::tests::spec;

    fn publishing(published: u16, protocol: Protocol) -> ServiceSpec {
        let mut s = spec("web", 1);
        s.ports = vec![PortConfig {
            protocol,
            target: 80,
            published,
            mode: Default::default(),
        }];
        s
    }

    #[test]
    fn the_nodes_own_ports_are_refused_with_what_they_are_for() {
        for (port, protocol) in [
            (2377, Protocol::Tcp),
            (7946, Protocol::Tcp),
            (7946, Protocol::Udp),
            (4789, Protocol::Udp),
        ] {
            let found = reserved_port_in(&publishing(port, protocol), &[2377]);
            assert_eq!(found.map(|r| (r.port, r.protocol)), Some((port, protocol)));
        }
        assert_eq!(
            reserved_port_in(&publishing(2377, Protocol::Tcp), &[2377])
                .unwrap()
                .to_string(),
            "port 2377/tcp is reserved: every node uses it for the managers' API (mTLS gRPC); \
             publish another port"
        );
        // A configured API port is reserved too, and the default stays so.
        assert!(reserved_port_in(&publishing(4000, Protocol::Tcp), &[4000]).is_some());
        assert!(reserved_port_in(&publishing(2377, Protocol::Tcp), &[4000]).is_some());
    }

    #[test]
    fn every_managers_configured_listen_port_is_reserved() {
        let ports = [2377, 4000, 0, 5000];
        for port in [4000, 5000] {
            let found = reserved_port_in(&publishing(port, Protocol::Tcp), &ports)
                .map(|r| r.to_string())
                .unwrap_or_default();
            assert!(
                found.contains(&format!("port {port}/tcp is reserved"))
                    && found.contains("--listen-port"),
                "{found}"
            );
        }
        // Listed once each, 0 (not known) never.
        assert_eq!(reserved_ports(&ports).len(), 6);
        assert_eq!(
            reserved_port_in(&publishing(0, Protocol::Tcp), &ports),
            None
        );
        assert_eq!(
            reserved_port_in(&publishing(4000, Protocol::Udp), &ports),
            None
        );
    }

    #[test]
    fn other_ports_and_other_protocols_are_free() {
        for (port, protocol) in [
            (2377, Protocol::Udp),
            (4789, Protocol::Tcp),
            (8080, Protocol::Tcp),
            (4000, Protocol::Tcp),
        ] {
            assert_eq!(reserved_port_in(&publishing(port, protocol), &[2377]), None);
        }
    }
}
