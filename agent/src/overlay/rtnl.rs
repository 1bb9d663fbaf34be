//! The overlay's real kernel boundary: rtnetlink requests, each run inside the
//! right namespace on a dedicated thread. Every mutating request is counted,
//! so tests can prove that a re-apply touched nothing.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};
use shoal_control::objects::MacAddr;

use super::names;
use super::plan::Change;
use super::state::{
    BridgeState, HostState, IfaceState, NetworkState, PortState, SandboxState, VxlanState,
};
use super::{OverlayError, OverlayKernel};
use crate::netns::{self, NetnsDir};

/// The overlay programmed through rtnetlink. Namespaces live in `netns`;
/// VXLAN devices are created in the caller's namespace (the host's underlay)
/// and moved into their network's namespace, so they keep their UDP socket
/// on the underlay.
pub struct RtnlKernel {
    netns: NetnsDir,
    mutations: Arc<AtomicU64>,
}

impl RtnlKernel {
    pub fn new(netns: NetnsDir) -> Self {
        RtnlKernel {
            netns,
            mutations: Arc::default(),
        }
    }

    /// Mutating netlink requests sent so far (namespace creation and removal
    /// count as one each).
    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::Relaxed)
    }

    /// Runs `f` with a netlink handle opened inside namespace `ns`.
    pub(super) fn nl<T, F, Fut>(&self, ns: Option<&Path>, op: &str, f: F) -> Result<T, OverlayError>
    where
        T: Send,
        F: FnOnce(Nl) -> Fut + Send,
        Fut: Future<Output = Result<T, rtnetlink::Error>>,
    {
        let counter = self.mutations.clone();
        netns::run_in(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| e.chain().to_string())?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| e.chain().to_string())?;
                tokio::spawn(conn);
                f(Nl { handle, counter })
                    .await
                    .map_err(|e| e.chain().to_string())
            })
        })?
        .map_err(|message| OverlayError::Netlink {
            op: op.to_string(),
            message,
        })
    }

    pub(super) fn ns_path(&self, name: &str) -> std::path::PathBuf {
        self.netns.path(name)
    }

    fn observe_network(&self, net: &str) -> Result<NetworkState, OverlayError> {
        let path = self.ns_path(&names::network_ns(net));
        self.nl(
            Some(&path),
            &format!("read network `{net}`"),
            |nl| async move {
                let links = nl.links().await?;
                let mut state = NetworkState::default();
                let bridge = links.iter().find(|l| link_name(l) == Some(names::BRIDGE));
                let bridge_index = bridge.map(|l| l.header.index);
                if let Some(br) = bridge {
                    state.bridge = Some(BridgeState {
                        mtu: link_mtu(br),
                        up: br.header.flags.contains(LinkFlags::Up),
                        addrs: nl.addrs(br.header.index).await?,
                    });
                }
                for link in &links {
                    let name = link_name(link).unwrap_or_default();
                    let on_bridge = bridge_index.is_some() && link_controller(link) == bridge_index;
                    if let Some(vxlan) = vxlan_info(link) {
                        let mut v = vxlan_state(name, link, vxlan);
                        v.on_bridge = on_bridge;
                        state.fdb = nl.fdb(link.header.index).await?;
                        state.neigh = nl.neigh(link.header.index).await?;
                        state.vxlan = Some(v);
                    } else if name.starts_with("ve") {
                        state.ports.insert(
                            name.to_string(),
                            PortState {
                                mtu: link_mtu(link),
                                up: link.header.flags.contains(LinkFlags::Up),
                                on_bridge,
                            },
                        );
                    }
                }
                Ok(state)
            },
        )
    }

    fn observe_sandbox(&self, sb: &str) -> Result<SandboxState, OverlayError> {
        let path = self.ns_path(&names::sandbox_ns(sb));
        self.nl(
            Some(&path),
            &format!("read sandbox `{sb}`"),
            |nl| async move {
                let mut state = SandboxState::default();
                for link in nl.links().await? {
                    let Some(name) = link_name(&link).filter(|n| n.starts_with("eth")) else {
                        continue;
                    };
                    let mac = link_mac(&link).unwrap_or_default();
                    state.ifaces.insert(
                        name.to_string(),
                        IfaceState {
                            network: None,
                            mac,
                            addrs: nl.addrs(link.header.index).await?,
                            mtu: link_mtu(&link),
                            up: link.header.flags.contains(LinkFlags::Up),
                        },
                    );
                }
                state.default_gw = nl.default_gateway().await?;
                Ok(state)
            },
        )
    }
}

impl OverlayKernel for RtnlKernel {
    fn observe(&mut self) -> Result<HostState, OverlayError> {
        let mut state = HostState::default();
        for ns in self.netns.list()? {
            if let Some(net) = names::network_of_ns(&ns) {
                state
                    .networks
                    .insert(net.to_string(), self.observe_network(net)?);
            } else if let Some(sb) = names::sandbox_of_ns(&ns) {
                state
                    .sandboxes
                    .insert(sb.to_string(), self.observe_sandbox(sb)?);
            }
        }
        // A sandbox interface belongs to the network holding its veth peer.
        for (sb, sandbox) in state.sandboxes.iter_mut() {
            for (ifname, iface) in sandbox.ifaces.iter_mut() {
                let port = names::port(sb, ifname);
                iface.network = state
                    .networks
                    .iter()
                    .find(|(_, n)| n.ports.contains_key(&port))
                    .map(|(id, _)| id.clone());
            }
        }
        Ok(state)
    }

    fn apply(&mut self, change: &Change) -> Result<(), OverlayError> {
        let op = format!("{change:?}");
        match change {
            Change::CreateNetwork { network } => self.create_ns(&names::network_ns(network), &op),
            Change::CreateSandbox { sandbox } => self.create_ns(&names::sandbox_ns(sandbox), &op),
            Change::DeleteNetwork { network } => self.remove_ns(&names::network_ns(network)),
            Change::DeleteSandbox { sandbox } => self.remove_ns(&names::sandbox_ns(sandbox)),
            Change::EnsureBridge { network, bridge } => {
                let bridge = bridge.clone();
                self.nl(
                    Some(&self.ns_path(&names::network_ns(network))),
                    &op,
                    |nl| async move {
                        let index = match nl.index(names::BRIDGE).await? {
                            Some(i) => i,
                            None => {
                                // A MAC of its own, set: a bridge without one takes
                                // its lowest port's, so it would change as tasks come
                                // and go, and the kernel then drops every neighbour
                                // of the bridge, permanent ones too (the IPVS mesh's
                                // return path).
                                nl.add_link(
                                    LinkBridge::new(names::BRIDGE)
                                        .address(bridge_mac().to_vec())
                                        .build(),
                                )
                                .await?;
                                nl.require_index(names::BRIDGE).await?
                            }
                        };
                        nl.set_link(
                            LinkUnspec::new_with_index(index)
                                .mtu(bridge.mtu)
                                .up()
                                .build(),
                        )
                        .await?;
                        nl.set_addrs(index, &bridge.addrs).await
                    },
                )
            }
            Change::DeleteVxlan { network, name } => {
                let name = name.clone();
                self.nl(
                    Some(&self.ns_path(&names::network_ns(network))),
                    &op,
                    |nl| async move { nl.del_link_named(&name).await },
                )
            }
            Change::CreateVxlan { network, vxlan } => {
                let op = format!(
                    "create VXLAN device {} (VNI {}, UDP {}); another device on the host with this VNI and port makes the kernel refuse it",
                    vxlan.name, vxlan.vni, vxlan.port
                );
                self.create_vxlan(network, vxlan, &op)
            }
            Change::DeletePort { network, port } => {
                let port = port.clone();
                self.nl(
                    Some(&self.ns_path(&names::network_ns(network))),
                    &op,
                    |nl| async move { nl.del_link_named(&port).await },
                )
            }
            Change::DetachIface { sandbox, ifname } => {
                let ifname = ifname.clone();
                self.nl(
                    Some(&self.ns_path(&names::sandbox_ns(sandbox))),
                    &op,
                    |nl| async move { nl.del_link_named(&ifname).await },
                )
            }
            Change::SetFdb { network, mac, vtep } => self.on_vxlan(network, &op, {
                let (mac, vtep) = (*mac, *vtep);
                move |nl, vx| async move { nl.set_fdb(vx, mac, vtep).await }
            }),
            Change::DelFdb { network, mac } => self.on_vxlan(network, &op, {
                let mac = *mac;
                move |nl, vx| async move { nl.del_fdb(vx, mac).await }
            }),
            Change::SetNeigh { network, ip, mac } => self.on_vxlan(network, &op, {
                let (ip, mac) = (*ip, *mac);
                move |nl, vx| async move { nl.set_neigh(vx, ip, mac).await }
            }),
            Change::DelNeigh { network, ip } => self.on_vxlan(network, &op, {
                let ip = *ip;
                move |nl, vx| async move { nl.del_neigh(vx, ip).await }
            }),
            Change::AttachIface {
                sandbox,
                ifname,
                network,
                iface,
                port,
                port_state,
            } => self.attach(sandbox, ifname, network, iface, port, port_state, &op),
            Change::SetDefaultRoute { sandbox, gateway } => {
                let gateway = *gateway;
                self.nl(
                    Some(&self.ns_path(&names::sandbox_ns(sandbox))),
                    &op,
                    |nl| async move {
                        let eth0 = nl.require_index(&names::sandbox_iface(0)).await?;
                        nl.replace_default_route(eth0, gateway).await
                    },
                )
            }
        }
    }
}

impl RtnlKernel {
    fn create_ns(&self, name: &str, op: &str) -> Result<(), OverlayError> {
        let path = self.netns.create(name)?;
        self.mutations.fetch_add(1, Ordering::Relaxed);
        self.nl(Some(&path), op, |nl| async move {
            let lo = nl.require_index("lo").await?;
            nl.set_link(LinkUnspec::new_with_index(lo).up().build())
                .await
        })
    }

    fn remove_ns(&self, name: &str) -> Result<(), OverlayError> {
        self.netns.remove(name)?;
        self.mutations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn on_vxlan<F, Fut>(&self, network: &str, op: &str, f: F) -> Result<(), OverlayError>
    where
        F: FnOnce(Nl, u32) -> Fut + Send,
        Fut: Future<Output = Result<(), rtnetlink::Error>>,
    {
        self.nl(
            Some(&self.ns_path(&names::network_ns(network))),
            op,
            |nl| async move {
                let links = nl.links().await?;
                let vx = links
                    .iter()
                    .find(|l| vxlan_info(l).is_some())
                    .map(|l| l.header.index);
                let vx = vx.ok_or_else(|| {
                    rtnetlink::Error::InvalidNla("no VXLAN device in the network".into())
                })?;
                f(nl, vx).await
            },
        )
    }

    fn create_vxlan(
        &self,
        network: &str,
        vxlan: &VxlanState,
        op: &str,
    ) -> Result<(), OverlayError> {
        let ns_path = self.ns_path(&names::network_ns(network));
        let ns = File::open(&ns_path)
            .map_err(|e| OverlayError::Kernel(format!("open {}: {e}", ns_path.display())))?;
        let fd = ns.as_raw_fd();
        let v = vxlan.clone();
        // Created in the host namespace so its socket binds to the underlay,
        // then moved. A leftover from an interrupted run is replaced.
        self.nl(None, op, |nl| async move {
            nl.del_link_named(&v.name).await?;
            let mut builder = LinkVxlan::new(&v.name, v.vni)
                .port(v.port)
                .learning(v.learning)
                .proxy(v.proxy)
                .mtu(v.mtu);
            if let Some(local) = v.local {
                builder = builder.local(local);
            }
            nl.add_link(builder.build()).await?;
            let index = nl.require_index(&v.name).await?;
            nl.set_link(LinkUnspec::new_with_index(index).setns_by_fd(fd).build())
                .await
        })?;
        let (name, learning) = (vxlan.name.clone(), vxlan.bridge_learning);
        self.nl(Some(&ns_path), op, |nl| async move {
            let index = nl.require_index(&name).await?;
            let bridge = nl.require_index(names::BRIDGE).await?;
            nl.set_link(
                LinkUnspec::new_with_index(index)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .await?;
            nl.set_port(LinkBridgePort::new(index).learning(learning).build())
                .await
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attach(
        &self,
        sandbox: &str,
        ifname: &str,
        network: &str,
        iface: &IfaceState,
        port: &str,
        port_state: &PortState,
        op: &str,
    ) -> Result<(), OverlayError> {
        let net_path = self.ns_path(&names::network_ns(network));
        let sb_path = self.ns_path(&names::sandbox_ns(sandbox));
        let sb_ns = File::open(&sb_path)
            .map_err(|e| OverlayError::Kernel(format!("open {}: {e}", sb_path.display())))?;
        let sb_fd = sb_ns.as_raw_fd();
        let peer = names::peer(sandbox, ifname);
        let (port_name, mtu) = (port.to_string(), port_state.mtu);
        let peer_name = peer.clone();
        self.nl(Some(&net_path), op, |nl| async move {
            nl.veth_to_bridge(&port_name, &peer_name, mtu, sb_fd, None)
                .await
        })?;
        let (ifname, iface) = (ifname.to_string(), iface.clone());
        self.nl(Some(&sb_path), op, |nl| async move {
            let index = nl.require_index(&peer).await?;
            nl.set_link(
                LinkUnspec::new_with_index(index)
                    .name(ifname.clone())
                    .address(iface.mac.octets().to_vec())
                    .mtu(iface.mtu)
                    .build(),
            )
            .await?;
            nl.set_link(LinkUnspec::new_with_index(index).up().build())
                .await?;
            nl.set_addrs(index, &iface.addrs).await
        })
    }
}

/// A netlink handle that counts the requests that change something.
pub(super) struct Nl {
    pub(super) handle: Handle,
    counter: Arc<AtomicU64>,
}

impl Nl {
    pub(super) fn count(&self) {
        self.counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) async fn links(&self) -> Result<Vec<LinkMessage>, rtnetlink::Error> {
        self.handle.link().get().execute().try_collect().await
    }

    pub(super) async fn index(&self, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
        Ok(self
            .links()
            .await?
            .iter()
            .find(|l| link_name(l) == Some(name))
            .map(|l| l.header.index))
    }

    pub(super) async fn require_index(&self, name: &str) -> Result<u32, rtnetlink::Error> {
        self.index(name)
            .await?
            .ok_or_else(|| rtnetlink::Error::InvalidNla(format!("interface {name} not found")))
    }

    async fn add_link(&self, msg: LinkMessage) -> Result<(), rtnetlink::Error> {
        self.count();
        self.handle.link().add(msg).execute().await
    }

    pub(super) async fn set_link(&self, msg: LinkMessage) -> Result<(), rtnetlink::Error> {
        self.count();
        self.handle.link().set(msg).execute().await
    }

    async fn set_port(&self, msg: LinkMessage) -> Result<(), rtnetlink::Error> {
        self.count();
        self.handle.link().set_port(msg).execute().await
    }

    /// Makes a veth whose end `port` is a port of this namespace's bridge
    /// (up, with MAC `port_mac` if given) and whose end `peer` is moved to
    /// the namespace open at `peer_ns`. Either name left by an earlier try
    /// is deleted first.
    pub(super) async fn veth_to_bridge(
        &self,
        port: &str,
        peer: &str,
        mtu: u32,
        peer_ns: RawFd,
        port_mac: Option<MacAddr>,
    ) -> Result<(), rtnetlink::Error> {
        self.del_link_named(port).await?;
        self.del_link_named(peer).await?;
        self.add_link(LinkVeth::new(port, peer).mtu(mtu).build())
            .await?;
        let peer_index = self.require_index(peer).await?;
        self.set_link(
            LinkUnspec::new_with_index(peer_index)
                .setns_by_fd(peer_ns)
                .build(),
        )
        .await?;
        let index = self.require_index(port).await?;
        if let Some(mac) = port_mac {
            self.set_link(
                LinkUnspec::new_with_index(index)
                    .address(mac.octets().to_vec())
                    .build(),
            )
            .await?;
        }
        let bridge = self.require_index(names::BRIDGE).await?;
        self.set_link(
            LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build(),
        )
        .await
    }

    /// Deletes an interface by name; a missing one is fine.
    pub(super) async fn del_link_named(&self, name: &str) -> Result<(), rtnetlink::Error> {
        let Some(index) = self.index(name).await? else {
            return Ok(());
        };
        self.count();
        ignore_missing(self.handle.link().del(index).execute().await)
    }

    async fn addrs(&self, index: u32) -> Result<BTreeSet<Ipv4Net>, rtnetlink::Error> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await?;
        Ok(msgs.iter().filter_map(ipv4_of).collect())
    }

    /// Makes the interface's IPv4 addresses exactly `want`.
    async fn set_addrs(
        &self,
        index: u32,
        want: &BTreeSet<Ipv4Net>,
    ) -> Result<(), rtnetlink::Error> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await?;
        let mut have = BTreeSet::new();
        for msg in msgs {
            let Some(net) = ipv4_of(&msg) else { continue };
            if want.contains(&net) {
                have.insert(net);
            } else {
                self.count();
                ignore_missing(self.handle.address().del(msg).execute().await)?;
            }
        }
        for net in want.difference(&have) {
            self.count();
            self.handle
                .address()
                .add(index, IpAddr::V4(net.addr()), net.prefix_len())
                .execute()
                .await?;
        }
        Ok(())
    }

    async fn fdb(&self, vxlan: u32) -> Result<BTreeMap<MacAddr, Ipv4Addr>, rtnetlink::Error> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == vxlan && m.header.flags.contains(NeighbourFlags::Own))
            .filter_map(|m| Some((neigh_lladdr(m)?, neigh_dst(m)?)))
            .collect())
    }

    pub(super) async fn neigh(
        &self,
        vxlan: u32,
    ) -> Result<BTreeMap<Ipv4Addr, MacAddr>, rtnetlink::Error> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.ifindex == vxlan && m.header.state == NeighbourState::Permanent)
            .filter_map(|m| Some((neigh_dst(m)?, neigh_lladdr(m)?)))
            .collect())
    }

    async fn set_fdb(
        &self,
        vxlan: u32,
        mac: MacAddr,
        vtep: Ipv4Addr,
    ) -> Result<(), rtnetlink::Error> {
        self.count();
        self.handle
            .neighbours()
            .add_bridge(vxlan, &mac.octets())
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .destination(IpAddr::V4(vtep))
            .replace()
            .execute()
            .await
    }

    async fn del_fdb(&self, vxlan: u32, mac: MacAddr) -> Result<(), rtnetlink::Error> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = vxlan;
        msg.header.flags = NeighbourFlags::Own;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
        self.count();
        ignore_missing(self.handle.neighbours().del(msg).execute().await)
    }

    async fn set_neigh(
        &self,
        vxlan: u32,
        ip: Ipv4Addr,
        mac: MacAddr,
    ) -> Result<(), rtnetlink::Error> {
        self.count();
        self.handle
            .neighbours()
            .add(vxlan, IpAddr::V4(ip))
            .link_layer_address(&mac.octets())
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
    }

    async fn del_neigh(&self, vxlan: u32, ip: Ipv4Addr) -> Result<(), rtnetlink::Error> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = vxlan;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        self.count();
        ignore_missing(self.handle.neighbours().del(msg).execute().await)
    }

    async fn default_gateway(&self) -> Result<Option<Ipv4Addr>, rtnetlink::Error> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<_> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await?;
        Ok(routes
            .iter()
            .filter(|r| {
                r.header.destination_prefix_length == 0
                    && r.header.table == RouteHeader::RT_TABLE_MAIN
            })
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                })
            }))
    }

    async fn replace_default_route(
        &self,
        dev: u32,
        gateway: Ipv4Addr,
    ) -> Result<(), rtnetlink::Error> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(dev)
            .gateway(gateway)
            .build();
        self.count();
        self.handle.route().add(route).replace().execute().await
    }
}

/// A random locally administered unicast MAC for a network's bridge.
fn bridge_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Treats "no such object" as success, for deletes.
fn ignore_missing(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(e)) if matches!(e.raw_code(), c if c == -libc::ENOENT || c == -libc::ENODEV || c == -libc::EADDRNOTAVAIL) => {
            Ok(())
        }
        other => other,
    }
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn link_mtu(link: &LinkMessage) -> u32 {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(0)
}

fn link_mac(link: &LinkMessage) -> Option<MacAddr> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => MacAddr::from_slice(bytes),
        _ => None,
    })
}

fn link_controller(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

fn vxlan_info(link: &LinkMessage) -> Option<&Vec<InfoVxlan>> {
    let infos = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    })?;
    if !infos
        .iter()
        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan)))
    {
        return None;
    }
    infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Vxlan(v)) => Some(v),
        _ => None,
    })
}

fn vxlan_state(name: &str, link: &LinkMessage, info: &[InfoVxlan]) -> VxlanState {
    let mut state = VxlanState {
        name: name.to_string(),
        vni: 0,
        local: None,
        port: 0,
        learning: true,
        proxy: false,
        mtu: link_mtu(link),
        up: link.header.flags.contains(LinkFlags::Up),
        on_bridge: false,
        bridge_learning: bridge_port_learning(link),
    };
    for attr in info {
        match attr {
            InfoVxlan::Id(vni) => state.vni = *vni,
            InfoVxlan::Local(ip) => state.local = Some(*ip),
            InfoVxlan::Port(port) => state.port = *port,
            InfoVxlan::Learning(on) => state.learning = *on,
            InfoVxlan::Proxy(on) => state.proxy = *on,
            _ => {}
        }
    }
    state
}

/// Whether a bridge port learns source MACs (the kernel's default is yes).
fn bridge_port_learning(link: &LinkMessage) -> bool {
    link.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
        .filter_map(|i| match i {
            LinkInfo::PortData(InfoPortData::BridgePort(port)) => Some(port),
            _ => None,
        })
        .flatten()
        .find_map(|p| match p {
            InfoBridgePort::Learning(on) => Some(*on),
            _ => None,
        })
        .unwrap_or(true)
}

fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Net> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V4(ip)) => Ipv4Net::new(*ip, msg.header.prefix_len).ok(),
        _ => None,
    })
}

/// The IPv4 destination of a neighbour or FDB entry. Bridge-family (FDB)
/// entries carry it as raw bytes, since the family says nothing of its type.
fn neigh_dst(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
            <[u8; 4]>::try_from(bytes.as_slice())
                .ok()
                .map(Ipv4Addr::from)
        }
        _ => None,
    })
}

fn neigh_lladdr(msg: &NeighbourMessage) -> Option<MacAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(bytes) => MacAddr::from_slice(bytes),
        _ => None,
    })
}
