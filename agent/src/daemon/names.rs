//! Service discovery on this node: the embedded DNS servers (one per overlay
//! network, on the network's gateway address in its namespace) and the
//! records they answer, rebuilt from the gossip endpoint tables on every
//! pass of the data-plane loop. Also the private resolv.conf a task gets.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use shoal_control::api::Assignment;
use shoal_control::objects::NetworkSpec;
use tokio::sync::watch;

use crate::dns::{upstreams_from_resolv_conf, DnsEntry, DnsServer, DnsServerConfig, DnsTable};
use crate::gossip::table::EndpointRecord;
use crate::netns::NetnsDir;
use crate::overlay::names;

/// The DNS servers of this node.
pub struct NamePlane {
    netns: NetnsDir,
    servers: BTreeMap<String, (Ipv4Addr, DnsServer)>,
    table: watch::Sender<Arc<DnsTable>>,
    /// The host's nameservers, read once at start.
    upstreams: Vec<std::net::SocketAddr>,
}

impl NamePlane {
    pub fn new(netns: NetnsDir) -> Self {
        NamePlane {
            netns,
            servers: BTreeMap::new(),
            table: watch::channel(Arc::new(DnsTable::default())).0,
            upstreams: upstreams_from_resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
        }
    }

    /// Publishes the records of `records` (per network) and makes sure every
    /// network whose namespace exists has its server, and no other does.
    pub async fn sync(
        &mut self,
        networks: &[NetworkSpec],
        records: &BTreeMap<String, Vec<EndpointRecord>>,
    ) {
        self.table.send_replace(Arc::new(table(networks, records)));
        let wanted: BTreeMap<&str, &NetworkSpec> = networks
            .iter()
            .filter(|n| !n.ingress)
            .filter(|n| self.netns.exists(&names::network_ns(&n.id)))
            .map(|n| (n.id.as_str(), n))
            .collect();
        let gone: Vec<String> = self
            .servers
            .iter()
            .filter(|(id, (gw, _))| wanted.get(id.as_str()).is_none_or(|n| n.gateway != *gw))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some((_, server)) = self.servers.remove(&id) {
                server.stop().await;
            }
        }
        for (id, network) in wanted {
            if self.servers.contains_key(id) {
                continue;
            }
            let config = DnsServerConfig::new(
                id,
                Some(self.netns.path(&names::network_ns(id))),
                SocketAddrV4::new(network.gateway, 53),
                self.upstreams.clone(),
            );
            match DnsServer::start(config, self.table.subscribe()).await {
                Ok(server) => {
                    tracing::info!("dns: serving network {id} on {}:53", network.gateway);
                    self.servers
                        .insert(id.to_string(), (network.gateway, server));
                }
                Err(e) => tracing::warn!("dns: network {id}: {}", e.chain()),
            }
        }
    }
}

/// The records of every network: each endpoint is a task of its service
/// (and of each of the service's aliases on that network), and carries the
/// service's virtual IP on that network.
pub fn table(
    networks: &[NetworkSpec],
    records: &BTreeMap<String, Vec<EndpointRecord>>,
) -> DnsTable {
    let entries = records.iter().flat_map(|(network, list)| {
        list.iter().flat_map(move |r| {
            // An alias answers as the service does: its VIP, or in dnsrr
            // mode its tasks, and `tasks.ALIAS` its tasks.
            std::iter::once(&r.service)
                .chain(&r.aliases)
                .map(move |name| DnsEntry {
                    network: network.clone(),
                    service: name.clone(),
                    vip: r.vip,
                    task: r.task_id.clone(),
                    ip: r.ip,
                })
        })
    });
    let mut table = DnsTable::from_entries(entries);
    for network in networks {
        table = table.with_subnet(&network.id, network.subnet);
    }
    table
}

/// A task's resolv.conf: the embedded server on the gateway of its first
/// network other than the ingress one; the host's nameservers for a task
/// on no such network.
pub fn resolv_conf(assignment: &Assignment, networks: &[NetworkSpec], host: &str) -> String {
    let gateway = assignment.networks.iter().find_map(|a| {
        networks
            .iter()
            .find(|n| n.id == a.network && !n.ingress)
            .map(|n| n.gateway)
    });
    match gateway {
        Some(gw) => format!(
            "# written by shoal for this task: the swarm's embedded DNS\nnameserver {gw}\noptions ndots:0\n"
        ),
        None => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::objects::MacAddr;

    fn record(task: &str, ip: [u8; 4], vip: Option<[u8; 4]>, aliases: &[&str]) -> EndpointRecord {
        let ip = Ipv4Addr::from(ip);
        EndpointRecord {
            task_id: task.into(),
            service: "web".into(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            vtep: Ipv4Addr::new(198, 18, 0, 2),
            ports: Vec::new(),
            vip: vip.map(Ipv4Addr::from),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            host_ports: Vec::new(),
        }
    }

    #[test]
    fn aliases_resolve_like_the_service_on_their_network_only() {
        let records = BTreeMap::from([
            (
                "app".to_string(),
                vec![
                    record("t1", [10, 0, 1, 3], None, &["db"]),
                    record("t2", [10, 0, 1, 4], None, &["db"]),
                ],
            ),
            (
                "other".to_string(),
                vec![record("t1", [10, 0, 2, 3], Some([10, 0, 2, 2]), &[])],
            ),
        ]);
        let table = table(&[], &records);
        let app = &table.networks["app"];
        assert_eq!(app.services["db"], app.services["web"]);
        assert_eq!(app.services["db"].vip, None);
        assert_eq!(app.services["db"].tasks.len(), 2);
        let other = &table.networks["other"];
        assert!(!other.services.contains_key("db"));
        assert_eq!(other.services["web"].vip, Some(Ipv4Addr::new(10, 0, 2, 2)));
    }
}
