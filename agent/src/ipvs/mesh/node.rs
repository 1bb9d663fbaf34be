//! [`HostNode`]: the real [`IpvsNode`], wiring the IPVS mesh into its node:
//! - the link: a veth from the host namespace (`sh-ingress`, with this
//!   node's gateway MAC) to the ingress network's bridge (`ig0`, its own
//!   MAC, so the bridge forwards frames for the gateway MAC up the link);
//!   the host routes the network's subnet over it;
//! - the return path: the ingress network's namespace forwards, and sends
//!   what its tasks answer to a node's underlay address to that node's
//!   gateway MAC (the overlay carries it there); the host SNATs what IPVS
//!   sends into the network to its underlay address (nftables), and
//!   forwards the answers back out;
//! - IPVS settings: `conntrack` (the SNAT sees IPVS's flows),
//!   `expire_nodest_conn` (a withdrawn backend's flows end);
//! - the sandboxes' VIP marks (nftables in each sandbox).
//!
//! Each step is idempotent; the whole is redone when what it depends on
//! changed (a new link, another underlay interface, network or node set).

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{nat, IpvsNode};
use crate::balancer::{host, Attached, BalancerError, NodeAttachment};
use crate::ipvs::{IpvsClient, IpvsError};
use crate::netns::{self, NetnsDir};
use crate::overlay::ipvs_link::missing_returns;
use crate::overlay::{names, RtnlKernel};

/// The link's host end.
pub const HOST_END: &str = "sh-ingress";
/// The link's end on the ingress network's bridge.
pub const INNER_END: &str = "ig0";

/// Where the kernel says how long conntrack keeps an idle established
/// TCP flow.
const CONNTRACK_ESTABLISHED: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established";
/// When conntrack is not loaded yet: a day.
const DEFAULT_TCP_TIMEOUT: u32 = 86_400;

/// What `--mesh ipvs` needs of the host, checked when the agent starts:
/// the kernel's IPVS ([`IpvsError::NoIpvs`] names `--mesh ebpf` as the
/// alternative) and the `nft` command.
pub async fn check_host() -> Result<(), BalancerError> {
    IpvsClient::connect().await?;
    let nft = tokio::process::Command::new("nft")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    match nft {
        Ok(status) if status.success() => Ok(()),
        _ => Err(attach_error(
            "`--mesh ipvs` needs the `nft` command (the nftables package) for its SNAT and \
             virtual IP marks: install nftables, or run the agent with `--mesh ebpf`",
        )),
    }
}

/// A node's namespaces, as the agent sees them.
pub struct HostNode {
    netns: NetnsDir,
    /// The attachment wired last, and its underlay interface.
    wired: Option<(NodeAttachment, String)>,
}

impl HostNode {
    pub fn new(netns: NetnsDir) -> Self {
        HostNode { netns, wired: None }
    }
}

fn attach_error(e: impl std::fmt::Display) -> BalancerError {
    BalancerError::Attach(e.to_string())
}

impl IpvsNode for HostNode {
    type Kernel = IpvsClient;

    fn open(
        &mut self,
        rt: &tokio::runtime::Runtime,
        sandbox: Option<&str>,
    ) -> Result<IpvsClient, IpvsError> {
        match sandbox {
            None => rt.block_on(IpvsClient::connect()),
            Some(name) => {
                let path = self.netns.path(&names::sandbox_ns(name));
                netns::run_in(Some(&path), || rt.block_on(IpvsClient::connect()))
                    .map_err(|e| IpvsError::Socket(std::io::Error::other(e.chain().to_string())))?
            }
        }
    }

    fn sandboxes(&mut self) -> Result<BTreeSet<String>, BalancerError> {
        let names = self.netns.list().map_err(attach_error)?;
        Ok(names
            .iter()
            .filter_map(|n| names::sandbox_of_ns(n).map(str::to_string))
            .collect())
    }

    fn wire(&mut self, node: &NodeAttachment) -> Result<Attached, BalancerError> {
        let kernel = RtnlKernel::new(self.netns.clone());
        let created = kernel
            .ensure_link_macs(
                &node.network,
                HOST_END,
                INNER_END,
                node.gateway_mac,
                None,
                node.underlay_mtu,
            )
            .map_err(attach_error)?;
        let (underlay, locals) = host::underlay_of(node.vtep).map_err(attach_error)?;
        let wiring = (node.clone(), underlay.clone());
        let mut returns = node.peers.clone();
        returns.insert(node.vtep, node.gateway_mac);
        let rewire = created || self.wired.as_ref() != Some(&wiring);
        // Checked each time: the kernel drops the bridge's neighbours when
        // its MAC changes or it goes down, and the answers of this node's
        // tasks to other nodes then go nowhere.
        let lost = match kernel.ipvs_returns_held(&node.network) {
            Ok(held) => missing_returns(&returns, &held),
            Err(e) if rewire => {
                tracing::debug!("mesh: {}", e.chain());
                BTreeSet::new()
            }
            Err(e) => return Err(attach_error(e)),
        };
        if !rewire && !lost.is_empty() {
            tracing::warn!(
                "mesh: the ingress network lost its return path to {}; writing it again",
                lost.iter()
                    .map(Ipv4Addr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let changed = rewire || !lost.is_empty();
        if changed {
            kernel
                .wire_ipvs_link(
                    &node.network,
                    HOST_END,
                    INNER_END,
                    node.underlay_mtu,
                    node.subnet,
                    node.vtep,
                    &returns,
                )
                .map_err(attach_error)?;
            let ns = self.netns.path(&names::network_ns(&node.network));
            sysctls(None, &HOST_SETTINGS)?;
            sysctls(Some(&ns), &NETWORK_SETTINGS)?;
            nat::run(None, &nat::node_rules(HOST_END, node.vtep))?;
            self.wired = Some(wiring);
        }
        Ok(Attached {
            underlay,
            locals,
            changed,
        })
    }

    fn mark_vips(&mut self, sandbox: &str, vips: &BTreeSet<Ipv4Addr>) -> Result<(), BalancerError> {
        let path = self.netns.path(&names::sandbox_ns(sandbox));
        nat::run(Some(&path), &nat::sandbox_rules(vips))
    }

    fn tcp_timeout(&self) -> u32 {
        std::fs::read_to_string(CONNTRACK_ESTABLISHED)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_TCP_TIMEOUT)
    }

    fn unwire(&mut self) -> Result<(), BalancerError> {
        self.wired = None;
        nat::run(None, &nat::remove_node_rules())
    }
}

/// The node's namespace: forwards (answers go back out), IPVS flows seen
/// by conntrack (for the SNAT), a withdrawn backend's flows ended.
const HOST_SETTINGS: [(&str, &str); 3] = [
    ("/proc/sys/net/ipv4/ip_forward", "1"),
    ("/proc/sys/net/ipv4/vs/conntrack", "1"),
    ("/proc/sys/net/ipv4/vs/expire_nodest_conn", "1"),
];

/// The ingress network's namespace: routes its tasks' answers to the nodes
/// they came through (back out of the bridge they came in on).
const NETWORK_SETTINGS: [(&str, &str); 5] = [
    ("/proc/sys/net/ipv4/ip_forward", "1"),
    ("/proc/sys/net/ipv4/conf/all/rp_filter", "0"),
    ("/proc/sys/net/ipv4/conf/all/send_redirects", "0"),
    ("/proc/sys/net/ipv4/conf/br0/rp_filter", "0"),
    ("/proc/sys/net/ipv4/conf/br0/send_redirects", "0"),
];

fn sysctls(ns: Option<&Path>, settings: &[(&str, &str)]) -> Result<(), BalancerError> {
    let written = netns::run_in(ns, || -> std::io::Result<()> {
        for (path, value) in settings {
            std::fs::write(path, value)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {}", e.chain())))?;
        }
        Ok(())
    })
    .map_err(attach_error)?;
    written.map_err(|e| attach_error(format!("IPVS mesh settings: {}", e.chain())))
}
