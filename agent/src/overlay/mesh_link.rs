//! The routing mesh's link between the host and the ingress network: a veth
//! from the host's namespace into the network's bridge, and what the mesh
//! needs around it (the bridge's MAC, the host's route to the network's
//! tasks). Through rtnetlink, like the rest of the overlay.

use shoal_control::error_chain::ErrorChain;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use ipnet::Ipv4Net;
use netlink_packet_route::route::RouteScope;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};
use shoal_control::objects::MacAddr;

use super::{names, OverlayError, RtnlKernel};

impl RtnlKernel {
    /// Makes sure a veth joins this (the caller's) namespace, as `host_end`,
    /// to network `network`'s bridge, as `inner_end`, both ends up with MAC
    /// `mac`. Returns whether it had to create it.
    pub fn ensure_link(
        &self,
        network: &str,
        host_end: &str,
        inner_end: &str,
        mac: MacAddr,
        mtu: u32,
    ) -> Result<bool, OverlayError> {
        self.ensure_link_macs(network, host_end, inner_end, mac, Some(mac), mtu)
    }

    /// [`Self::ensure_link`] with the host end's MAC `mac` and the inner
    /// end's `inner_mac` (the kernel's own when `None`).
    pub fn ensure_link_macs(
        &self,
        network: &str,
        host_end: &str,
        inner_end: &str,
        mac: MacAddr,
        inner_mac: Option<MacAddr>,
        mtu: u32,
    ) -> Result<bool, OverlayError> {
        let net_path = self.ns_path(&names::network_ns(network));
        let op = "ensure the mesh link";
        let (host, inner) = (host_end.to_string(), inner_end.to_string());
        let host_index = self.nl(None, op, |nl| async move { nl.index(&host).await })?;
        let inner_index = self.nl(
            Some(&net_path),
            op,
            |nl| async move { nl.index(&inner).await },
        )?;
        if host_index.is_some() && inner_index.is_some() {
            return Ok(false);
        }
        let here = File::open("/proc/thread-self/ns/net")
            .map_err(|e| OverlayError::Kernel(format!("open this namespace: {}", e.chain())))?;
        let here_fd = here.as_raw_fd();
        let (host, inner) = (host_end.to_string(), inner_end.to_string());
        let host_name = host.clone();
        self.nl(
            None,
            op,
            |nl| async move { nl.del_link_named(&host_name).await },
        )?;
        self.nl(Some(&net_path), op, |nl| async move {
            nl.veth_to_bridge(&inner, &host, mtu, here_fd, inner_mac)
                .await
        })?;
        let host = host_end.to_string();
        self.nl(None, op, |nl| async move {
            let index = nl.require_index(&host).await?;
            nl.set_link(
                LinkUnspec::new_with_index(index)
                    .address(mac.octets().to_vec())
                    .build(),
            )
            .await?;
            nl.set_link(LinkUnspec::new_with_index(index).up().build())
                .await
        })?;
        drop(here);
        Ok(true)
    }

    /// Sets up what the mesh needs around its link:
    /// - both ends carry packets of the underlay's `mtu` (larger than the
    ///   network's: the network's gateway fragments what its tasks cannot
    ///   take whole);
    /// - the network's bridge has the node's gateway MAC `mac`, so what it
    ///   routes to other nodes' tasks reads as from this node;
    /// - the host reaches the network's `subnet` over the link, from `src`
    ///   (the node's own clients of published ports connect to tasks).
    #[allow(clippy::too_many_arguments)]
    pub fn wire_mesh_link(
        &self,
        network: &str,
        host_end: &str,
        inner_end: &str,
        mac: MacAddr,
        mtu: u32,
        subnet: Ipv4Net,
        src: Ipv4Addr,
    ) -> Result<(), OverlayError> {
        let net_path = self.ns_path(&names::network_ns(network));
        let op = "wire the mesh link";
        let inner = inner_end.to_string();
        self.nl(Some(&net_path), op, |nl| async move {
            let index = nl.require_index(&inner).await?;
            nl.set_link(LinkUnspec::new_with_index(index).mtu(mtu).build())
                .await?;
            let bridge = nl.require_index(names::BRIDGE).await?;
            nl.set_link(
                LinkUnspec::new_with_index(bridge)
                    .address(mac.octets().to_vec())
                    .build(),
            )
            .await
        })?;
        self.route_over_host_end(host_end, mtu, subnet, src, op)
    }

    /// Sets the host's end of a mesh link (eBPF or IPVS) to `mtu` and routes
    /// `subnet` from the host over it, from `src`.
    pub(super) fn route_over_host_end(
        &self,
        host_end: &str,
        mtu: u32,
        subnet: Ipv4Net,
        src: Ipv4Addr,
        op: &str,
    ) -> Result<(), OverlayError> {
        let host = host_end.to_string();
        self.nl(None, op, |nl| async move {
            let index = nl.require_index(&host).await?;
            nl.set_link(LinkUnspec::new_with_index(index).mtu(mtu).build())
                .await?;
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(subnet.network(), subnet.prefix_len())
                .output_interface(index)
                .pref_source(src)
                .scope(RouteScope::Link)
                .build();
            nl.count();
            nl.handle.route().add(route).replace().execute().await
        })
    }
}
