//! The records the resolver answers from: per network, each service's VIP and
//! its tasks' addresses. Plain data, no I/O; the agent rebuilds it from its
//! endpoint tables and hands it to the servers through a watch channel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Every network's records, keyed by network id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsTable {
    pub networks: BTreeMap<String, NetworkRecords>,
}

/// What one network resolves: only services attached to it, so a name never
/// leaks onto a network its service is not on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRecords {
    /// The network's subnets. A reverse lookup of an unknown address inside
    /// one is answered NXDOMAIN here instead of being sent upstream, which
    /// knows nothing of overlay addresses.
    pub subnets: Vec<Ipv4Net>,
    /// Services by lower-case name.
    pub services: BTreeMap<String, ServiceRecord>,
}

/// One service on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The virtual IP on this network; `None` for a `dnsrr` service, whose
    /// name resolves to its tasks' addresses instead.
    pub vip: Option<Ipv4Addr>,
    /// `(task name, address)`, sorted when built by
    /// [`DnsTable::from_entries`]; the name is what a reverse lookup of the
    /// address answers (e.g. `web.1.x1y2z3`).
    pub tasks: Vec<(String, Ipv4Addr)>,
}

/// One task endpoint, the unit the gossip endpoint tables hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEntry {
    pub network: String,
    pub service: String,
    pub vip: Option<Ipv4Addr>,
    pub task: String,
    pub ip: Ipv4Addr,
}

impl DnsTable {
    /// Builds a table from task endpoints. Service names are folded to lower
    /// case; when the entries of one service disagree on its VIP the first one
    /// that has a VIP wins (they only disagree while an update spreads).
    /// Duplicate `(task, ip)` pairs collapse into one.
    pub fn from_entries(entries: impl IntoIterator<Item = DnsEntry>) -> Self {
        let mut table = DnsTable::default();
        for entry in entries {
            let records = table.networks.entry(entry.network).or_default();
            let service = records
                .services
                .entry(entry.service.to_ascii_lowercase())
                .or_default();
            if service.vip.is_none() {
                service.vip = entry.vip;
            }
            service.tasks.push((entry.task, entry.ip));
        }
        for records in table.networks.values_mut() {
            for service in records.services.values_mut() {
                service.tasks.sort();
                service.tasks.dedup();
            }
        }
        table
    }

    /// Records `subnet` as one of `network`'s (see [`NetworkRecords::subnets`]).
    pub fn with_subnet(mut self, network: &str, subnet: Ipv4Net) -> Self {
        let records = self.networks.entry(network.to_string()).or_default();
        if !records.subnets.contains(&subnet) {
            records.subnets.push(subnet);
        }
        self
    }
}

/// What a reverse lookup of an address found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reverse<'a> {
    /// The address names these (a VIP names its service, a task address its
    /// task).
    Names(Vec<&'a str>),
    /// Nothing has the address, but it is in the network's subnet.
    InSubnet,
    /// Not this network's address.
    Foreign,
}

impl NetworkRecords {
    /// The service called `name` (already lower case, no trailing dot).
    pub(crate) fn service(&self, name: &str) -> Option<&ServiceRecord> {
        self.services.get(name)
    }

    /// Who has `ip` on this network. A scan: reverse lookups are rare and
    /// keeping the fields public rules out an index that could go stale.
    pub(crate) fn reverse(&self, ip: Ipv4Addr) -> Reverse<'_> {
        let mut names = Vec::new();
        for (name, service) in &self.services {
            if service.vip == Some(ip) {
                names.push(name.as_str());
            }
            for (task, task_ip) in &service.tasks {
                if *task_ip == ip {
                    names.push(task.as_str());
                }
            }
        }
        if !names.is_empty() {
            names.sort_unstable();
            names.dedup();
            Reverse::Names(names)
        } else if self.subnets.iter().any(|net| net.contains(&ip)) {
            Reverse::InSubnet
        } else {
            Reverse::Foreign
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        network: &str,
        service: &str,
        vip: Option<[u8; 4]>,
        task: &str,
        ip: [u8; 4],
    ) -> DnsEntry {
        DnsEntry {
            network: network.into(),
            service: service.into(),
            vip: vip.map(Ipv4Addr::from),
            task: task.into(),
            ip: ip.into(),
        }
    }

    #[test]
    fn from_entries_groups_by_network_and_lower_case_service() {
        let table = DnsTable::from_entries([
            entry("n1", "Web", Some([10, 0, 0, 2]), "web.2.b", [10, 0, 0, 4]),
            entry("n1", "web", Some([10, 0, 0, 2]), "web.1.a", [10, 0, 0, 3]),
            entry("n1", "web", Some([10, 0, 0, 2]), "web.1.a", [10, 0, 0, 3]),
            entry("n2", "web", Some([10, 1, 0, 2]), "web.1.a", [10, 1, 0, 3]),
        ]);
        assert_eq!(table.networks.len(), 2);
        let web = &table.networks["n1"].services["web"];
        assert_eq!(web.vip, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(
            web.tasks,
            vec![
                ("web.1.a".to_string(), Ipv4Addr::new(10, 0, 0, 3)),
                ("web.2.b".to_string(), Ipv4Addr::new(10, 0, 0, 4)),
            ]
        );
        assert_eq!(
            table.networks["n2"].services["web"].vip,
            Some(Ipv4Addr::new(10, 1, 0, 2))
        );
    }

    #[test]
    fn first_known_vip_wins() {
        let table = DnsTable::from_entries([
            entry("n1", "web", None, "web.1.a", [10, 0, 0, 3]),
            entry("n1", "web", Some([10, 0, 0, 2]), "web.2.b", [10, 0, 0, 4]),
            entry("n1", "web", Some([10, 0, 0, 9]), "web.3.c", [10, 0, 0, 5]),
        ]);
        assert_eq!(
            table.networks["n1"].services["web"].vip,
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    #[test]
    fn reverse_finds_vips_and_tasks_and_knows_the_subnet() {
        let table = DnsTable::from_entries([entry(
            "n1",
            "web",
            Some([10, 0, 0, 2]),
            "web.1.a",
            [10, 0, 0, 3],
        )])
        .with_subnet("n1", "10.0.0.0/24".parse().expect("subnet"));
        let n1 = &table.networks["n1"];
        assert_eq!(
            n1.reverse([10, 0, 0, 2].into()),
            Reverse::Names(vec!["web"])
        );
        assert_eq!(
            n1.reverse([10, 0, 0, 3].into()),
            Reverse::Names(vec!["web.1.a"])
        );
        assert_eq!(n1.reverse([10, 0, 0, 99].into()), Reverse::InSubnet);
        assert_eq!(n1.reverse([192, 168, 1, 1].into()), Reverse::Foreign);
    }
}
