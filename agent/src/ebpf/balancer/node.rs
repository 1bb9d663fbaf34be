//! Wiring the eBPF balancer into its node (`LoadBalancer::attach`):
//! - the link: a veth from the host namespace (`sh-ingress`) to the ingress
//!   network's bridge (`ig0`), both ends with this node's gateway MAC and
//!   the underlay's MTU; the bridge gets the gateway MAC too, the network's
//!   namespace forwards (it fragments what is too big for its tasks), and
//!   the host routes the network's subnet over the link;
//! - the programs: `shoal_ingress` on the underlay interface (the one
//!   holding the node's address), `shoal_reply` on `sh-ingress`, and in the
//!   ingress network's namespace `shoal_learn` on the VXLAN device and
//!   `ig0`, and `shoal_return` on the bridge;
//! - the cgroup hooks: east-west on the tasks' cgroup, the node's own
//!   clients on the root cgroup, told which network namespace is the node's
//!   by a probe `connect()`.
//!
//! Each step is idempotent; the whole is redone only when something it
//! depends on changed (a new link, another underlay interface or network,
//! a pinned link severed because its interface was deleted).

use shoal_control::error_chain::ErrorChain;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;

use shoal_ebpf_common::mesh::{wire_addr, wire_port, Config, CONFIG_HOST, CONFIG_NETWORK};

use super::{EbpfBalancer, MeshProgram, HOST_HOOKS, TASK_HOOKS};
use crate::balancer::{host, Attached, BalancerError, NodeAttachment};
use crate::netns;
use crate::overlay::{names, RtnlKernel};

/// The link's host end.
pub const HOST_END: &str = "sh-ingress";
/// The link's end on the ingress network's bridge.
pub const INNER_END: &str = "ig0";

/// What an attachment was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wiring {
    node: NodeAttachment,
    underlay: String,
}

fn attach_error(e: impl std::fmt::Display) -> BalancerError {
    BalancerError::Attach(e.to_string())
}

pub fn attach(lb: &mut EbpfBalancer, node: &NodeAttachment) -> Result<Attached, BalancerError> {
    let netns = lb
        .node
        .clone()
        .ok_or_else(|| attach_error("this balancer was loaded without a node to attach to"))?;
    let kernel = RtnlKernel::new(netns.clone());
    let mac = node.gateway_mac;
    let created = kernel
        .ensure_link(&node.network, HOST_END, INNER_END, mac, node.underlay_mtu)
        .map_err(attach_error)?;
    let (underlay, locals) = host::underlay_of(node.vtep).map_err(attach_error)?;
    // The eBPF return path needs no per-node entries: other nodes coming
    // and going rewire nothing.
    let wiring = Wiring {
        node: NodeAttachment {
            peers: Default::default(),
            ..node.clone()
        },
        underlay: underlay.clone(),
    };
    // A link the kernel severed (its interface deleted and maybe made
    // again: the ingress network's namespace rebuilt) serves nothing:
    // dropped here, and the whole attachment made again.
    let mut severed = lb.drop_severed_links();
    if !severed.is_empty() {
        tracing::warn!(
            "mesh: pinned link(s) {} were severed (their interfaces were deleted); attaching the \
             mesh again",
            severed.join(", ")
        );
    }
    let replaced = lb.replaced_tc_devices();
    if !replaced.is_empty() {
        tracing::warn!(
            "mesh: the interfaces of TC filter(s) {} were deleted or made again; attaching the \
             mesh again",
            replaced.join(", ")
        );
    }
    severed.extend(replaced);
    let changed = created || lb.wired.as_ref() != Some(&wiring) || !severed.is_empty();
    if changed {
        kernel
            .wire_mesh_link(
                &node.network,
                HOST_END,
                INNER_END,
                mac,
                node.underlay_mtu,
                node.subnet,
                node.vtep,
            )
            .map_err(attach_error)?;
        let ns = netns.path(&names::network_ns(&node.network));
        forwarding(&ns)?;
        configure(lb, node, &ns)?;
        let vxlan = names::vxlan(node.vni);
        lb.attach_program(MeshProgram::Ingress, &underlay, None)?;
        lb.attach_program(MeshProgram::Reply, HOST_END, None)?;
        lb.attach_program(MeshProgram::Learn, &vxlan, Some(&ns))?;
        lb.attach_program(MeshProgram::Learn, INNER_END, Some(&ns))?;
        lb.attach_program(MeshProgram::Return, names::BRIDGE, Some(&ns))?;
        lb.attach_cgroup_hooks(&TASK_HOOKS, &node.cgroup_root, "cgroup")?;
        match &node.host_cgroup {
            Some(root) => {
                lb.attach_cgroup_hooks(&HOST_HOOKS, root, "host")?;
                learn_namespace(lb)?;
            }
            None => tracing::warn!(
                "mesh: no cgroup2 mount, so published ports do not answer on this node's own \
                 addresses (127.0.0.1:PORT)"
            ),
        }
        lb.wired = Some(wiring);
    }
    Ok(Attached {
        underlay,
        locals,
        changed,
    })
}

/// The ingress network's namespace routes what it cannot bridge (packets
/// larger than its tasks take, which it fragments), and only that: it has
/// no route beyond its own subnet.
fn forwarding(ns: &Path) -> Result<(), BalancerError> {
    let settings = [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/ipv4/conf/all/rp_filter", "0"),
        ("/proc/sys/net/ipv4/conf/all/send_redirects", "0"),
        (
            &*format!("/proc/sys/net/ipv4/conf/{}/rp_filter", names::BRIDGE),
            "0",
        ),
        (
            &*format!("/proc/sys/net/ipv4/conf/{}/send_redirects", names::BRIDGE),
            "0",
        ),
    ];
    let written = netns::run_in(Some(ns), || -> std::io::Result<()> {
        for (path, value) in settings {
            std::fs::write(path, value)?;
        }
        Ok(())
    })
    .map_err(attach_error)?;
    written.map_err(|e| attach_error(format!("ingress network forwarding: {}", e.chain())))
}

/// Writes both configuration slots. The host slot's namespace cookie is
/// cleared: it is learned again, in case this is another namespace.
fn configure(lb: &mut EbpfBalancer, node: &NodeAttachment, ns: &Path) -> Result<(), BalancerError> {
    let link = host::iface(HOST_END).map_err(attach_error)?;
    let mtu = u16::try_from(node.network_mtu).unwrap_or(u16::MAX);
    lb.set_config(
        CONFIG_HOST,
        Config {
            link_ifindex: link.index,
            link_mac: node.gateway_mac.octets(),
            mtu,
            ..Config::default()
        },
    )?;
    let vxlan = names::vxlan(node.vni);
    let (inner, vx) = netns::run_in(Some(ns), || -> anyhow::Result<(u32, u32)> {
        Ok((host::iface(INNER_END)?.index, host::iface(&vxlan)?.index))
    })
    .map_err(attach_error)?
    .map_err(attach_error)?;
    lb.set_config(
        CONFIG_NETWORK,
        Config {
            link_ifindex: inner,
            vxlan_ifindex: vx,
            link_mac: node.gateway_mac.octets(),
            mtu,
            ..Config::default()
        },
    )?;
    Ok(())
}

/// Tells the host hooks which network namespace is the node's: a UDP
/// `connect()` (which sends nothing) from here to a nonce address and port
/// on loopback, which the hook recognises and records.
fn learn_namespace(lb: &mut EbpfBalancer) -> Result<(), BalancerError> {
    let nonce: [u8; 4] = rand::random();
    let addr = Ipv4Addr::new(127, nonce[0] | 1, nonce[1], nonce[2] | 1);
    let port = u16::from_ne_bytes([nonce[3], nonce[0]]).max(1024);
    let mut config = lb.config(CONFIG_HOST)?;
    config.netns_cookie = 0;
    config.probe_addr = wire_addr(addr.octets());
    config.probe_port = wire_port(port);
    lb.set_config(CONFIG_HOST, config)?;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.connect((addr, port)).map(|()| s))
        .map_err(|e| attach_error(format!("probe connect for the host hooks: {}", e.chain())))?;
    drop(socket);
    let mut config = lb.config(CONFIG_HOST)?;
    if config.netns_cookie == 0 {
        return Err(attach_error(
            "the host hooks did not see this node's probe connect, so published ports would not \
             answer on its own addresses",
        ));
    }
    config.probe_addr = 0;
    config.probe_port = 0;
    lb.set_config(CONFIG_HOST, config)?;
    Ok(())
}
