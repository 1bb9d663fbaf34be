//! What the IPVS mesh needs around its link into the ingress network (see
//! `crate::ipvs::mesh::node`): the host reaches the network's tasks over
//! the link, and the network's namespace sends what its tasks answer to a
//! node's address (the SNAT source of a request that came in through that
//! node) to the node's gateway MAC: over the overlay to another node, or
//! up the link to this node's host. Through rtnetlink, like the rest of the
//! overlay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::RouteScope;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use shoal_control::objects::MacAddr;

use super::{names, OverlayError, RtnlKernel};

impl RtnlKernel {
    /// Sets both ends of the link to `mtu`, routes `subnet` from the host
    /// over `host_end` (from `src`), and in network `network`'s namespace
    /// routes each node address of `returns` to that node's gateway MAC on
    /// the bridge.
    #[allow(clippy::too_many_arguments)]
    pub fn wire_ipvs_link(
        &self,
        network: &str,
        host_end: &str,
        inner_end: &str,
        mtu: u32,
        subnet: Ipv4Net,
        src: Ipv4Addr,
        returns: &BTreeMap<Ipv4Addr, MacAddr>,
    ) -> Result<(), OverlayError> {
        let net_path = self.ns_path(&names::network_ns(network));
        let op = "wire the IPVS mesh link";
        let inner = inner_end.to_string();
        let returns = returns.clone();
        self.nl(Some(&net_path), op, |nl| async move {
            let index = nl.require_index(&inner).await?;
            nl.set_link(LinkUnspec::new_with_index(index).mtu(mtu).build())
                .await?;
            let bridge = nl.require_index(names::BRIDGE).await?;
            for (node, mac) in returns {
                nl.count();
                nl.handle
                    .neighbours()
                    .add(bridge, IpAddr::V4(node))
                    .link_layer_address(&mac.octets())
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await?;
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(node, 32)
                    .output_interface(bridge)
                    .scope(RouteScope::Link)
                    .build();
                nl.count();
                nl.handle.route().add(route).replace().execute().await?;
            }
            Ok(())
        })?;
        self.route_over_host_end(host_end, mtu, subnet, src, op)
    }
}

/// The node addresses of `returns` whose return neighbour the network's
/// bridge does not hold as wanted (`held`: its permanent neighbours). The
/// kernel drops every neighbour of a device whose MAC changes or that goes
/// down, permanent ones too; the answers of the network's tasks to those
/// nodes are then lost until the neighbours are written again.
pub fn missing_returns(
    returns: &BTreeMap<Ipv4Addr, MacAddr>,
    held: &BTreeMap<Ipv4Addr, MacAddr>,
) -> BTreeSet<Ipv4Addr> {
    returns
        .iter()
        .filter(|(node, mac)| held.get(node) != Some(mac))
        .map(|(node, _)| *node)
        .collect()
}

impl RtnlKernel {
    /// The permanent neighbours of network `network`'s bridge: where it
    /// sends its tasks' answers to each node's address.
    pub fn ipvs_returns_held(
        &self,
        network: &str,
    ) -> Result<BTreeMap<Ipv4Addr, MacAddr>, OverlayError> {
        let net_path = self.ns_path(&names::network_ns(network));
        self.nl(
            Some(&net_path),
            "read the IPVS mesh's return neighbours",
            |nl| async move {
                let bridge = nl.require_index(names::BRIDGE).await?;
                nl.neigh(bridge).await
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(last: u8) -> MacAddr {
        MacAddr([0x02, 0x5e, 198, 18, 0, last])
    }

    #[test]
    fn returns_the_bridge_lost_are_missing() {
        let node = |last| Ipv4Addr::new(198, 18, 0, last);
        let returns = BTreeMap::from([
            (node(1), gateway(1)),
            (node(2), gateway(2)),
            (node(3), gateway(3)),
        ]);
        // As wired: nothing to do.
        assert!(missing_returns(&returns, &returns).is_empty());
        // The bridge changed MAC: the kernel flushed them all.
        assert_eq!(
            missing_returns(&returns, &BTreeMap::new()),
            BTreeSet::from([node(1), node(2), node(3)])
        );
        // One lost, one with another MAC (an address now another node's),
        // one extra held (a node that left): the first two are rewritten.
        let held = BTreeMap::from([
            (node(1), gateway(1)),
            (node(3), gateway(9)),
            (node(4), gateway(4)),
        ]);
        assert_eq!(
            missing_returns(&returns, &held),
            BTreeSet::from([node(2), node(3)])
        );
    }
}
