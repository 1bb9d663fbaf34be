//! Networks whose subnet overlaps the host's own underlay routes are not
//! built on that host: the bridge's address would take the host's traffic
//! for those destinations into the overlay. The managers refuse a subnet
//! holding a node's address; routes only the node knows are checked here,
//! and the network is reported as failing on this node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use shoal_control::objects::NetworkSpec;

use super::Object;

/// One IPv4 route of the host's main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoute {
    pub dest: Ipv4Net,
    pub dev: String,
}

/// The routes of `/proc/net/route` (the reading thread's namespace), the
/// default route left out: every subnet is inside it.
pub fn host_routes() -> Vec<HostRoute> {
    std::fs::read_to_string("/proc/self/net/route")
        .map(|text| parse_routes(&text))
        .unwrap_or_default()
}

/// Parses `/proc/net/route`: destination and mask are little-endian hex.
pub fn parse_routes(text: &str) -> Vec<HostRoute> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dev = fields.first()?;
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            let prefix = u32::from_be(mask).leading_ones();
            if prefix == 0 {
                return None;
            }
            let dest = Ipv4Addr::from(u32::from_be(dest));
            let dest = Ipv4Net::new(dest, u8::try_from(prefix).ok()?).ok()?;
            Some(HostRoute {
                dest: dest.trunc(),
                dev: dev.to_string(),
            })
        })
        .collect()
}

/// The networks that overlap one of `routes`, each with the error naming
/// both. Routes through `own_devs` (the mesh's link into the ingress
/// network) and the host's route to the ingress subnet are shoal's own.
pub fn clashes(
    networks: &[NetworkSpec],
    routes: &[HostRoute],
    own_devs: &[&str],
) -> BTreeMap<Object, String> {
    networks
        .iter()
        .filter_map(|n| {
            let route = routes.iter().find(|r| {
                let own = own_devs.contains(&r.dev.as_str()) || (n.ingress && r.dest == n.subnet);
                !own && (r.dest.contains(&n.subnet) || n.subnet.contains(&r.dest))
            })?;
            Some((
                Object::Network(n.id.clone()),
                format!(
                    "subnet {} overlaps this node's underlay route {} (dev {}); the network is not built here until one of them changes",
                    n.subnet, route.dest, route.dev
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012C6\t00000000\t0001\t0\t0\t0\t0000FEFF\t0\t0\t0
eth0\t0000580A\t010012C6\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    fn net(id: &str, subnet: &str) -> NetworkSpec {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NetworkSpec {
            id: id.into(),
            vni: 4097,
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            mtu: None,
            ingress: false,
        }
    }

    #[test]
    fn routes_parse_without_the_default() {
        let routes = parse_routes(ROUTES);
        let dests: Vec<String> = routes.iter().map(|r| r.dest.to_string()).collect();
        assert_eq!(dests, ["198.18.0.0/15", "10.88.0.0/16"]);
        assert_eq!(routes[0].dev, "eth0");
    }

    #[test]
    fn a_network_inside_or_around_a_route_clashes_naming_both() {
        let routes = parse_routes(ROUTES);
        let found = clashes(
            &[
                net("inside", "10.88.1.0/24"),
                net("around", "198.0.0.0/8"),
                net("clear", "10.0.1.0/24"),
            ],
            &routes,
            &[],
        );
        assert_eq!(found.len(), 2);
        let inside = &found[&Object::Network("inside".into())];
        assert!(
            inside.contains("10.88.1.0/24") && inside.contains("10.88.0.0/16"),
            "{inside}"
        );
        assert!(!found.contains_key(&Object::Network("clear".into())));
        // The mesh's own route to the ingress subnet is not a clash.
        let mut ingress = net("ingress", "10.255.0.0/16");
        ingress.ingress = true;
        let own = parse_routes(&format!(
            "{ROUTES}shoal0\t0000FF0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
        ));
        assert!(clashes(&[ingress.clone()], &own, &[]).is_empty());
        assert!(clashes(&[net("x", "10.255.1.0/24")], &own, &["shoal0"]).is_empty());
        assert_eq!(clashes(&[net("x", "10.255.1.0/24")], &own, &[]).len(), 1);
    }
}
