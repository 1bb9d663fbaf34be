//! Reading this namespace's interfaces for the mesh: index, MAC and IPv4
//! addresses, through `getifaddrs` (netlink), which unlike `/sys/class/net`
//! always shows the calling thread's namespace.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::Context;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::if_nametoindex;
use shoal_control::objects::MacAddr;

/// One interface as the mesh needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: MacAddr,
    pub addrs: BTreeSet<Ipv4Addr>,
}

/// Reads interface `name` in the calling thread's namespace.
pub fn iface(name: &str) -> anyhow::Result<Iface> {
    let index = if_nametoindex(name).with_context(|| format!("no interface `{name}`"))?;
    let mut mac = None;
    let mut addrs = BTreeSet::new();
    for entry in getifaddrs().context("cannot list interfaces")? {
        if entry.interface_name != name {
            continue;
        }
        let Some(address) = entry.address else {
            continue;
        };
        if let Some(link) = address.as_link_addr() {
            if let Some(bytes) = link.addr() {
                mac = Some(MacAddr(bytes));
            }
        } else if let Some(inet) = address.as_sockaddr_in() {
            addrs.insert(inet.ip());
        }
    }
    Ok(Iface {
        name: name.to_owned(),
        index,
        mac: mac.with_context(|| format!("interface `{name}` has no MAC address"))?,
        addrs,
    })
}

/// The interface holding `addr`, if any.
pub fn iface_with(addr: Ipv4Addr) -> anyhow::Result<Option<String>> {
    for entry in getifaddrs().context("cannot list interfaces")? {
        let found = entry
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .is_some_and(|inet| inet.ip() == addr);
        if found {
            return Ok(Some(entry.interface_name));
        }
    }
    Ok(None)
}

/// The underlay interface holding this node's address `vtep`, and every
/// address it has (a published port is served on each of them).
pub fn underlay_of(vtep: Ipv4Addr) -> anyhow::Result<(String, BTreeSet<Ipv4Addr>)> {
    let name = iface_with(vtep)?
        .with_context(|| format!("no interface holds this node's address {vtep}"))?;
    let addrs = iface(&name)?.addrs;
    Ok((name, addrs))
}
