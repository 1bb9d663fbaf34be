//! How the overlay names what it creates. Names are derived from ids only, so
//! an agent that restarts finds (and adopts) what an earlier run made.

/// Namespace file of a network, in the agent's netns dir.
pub fn network_ns(network: &str) -> String {
    format!("ov-{network}")
}

/// Namespace file of a sandbox.
pub fn sandbox_ns(sandbox: &str) -> String {
    format!("sb-{sandbox}")
}

/// The network id of a namespace file name, if it is a network's.
pub fn network_of_ns(ns: &str) -> Option<&str> {
    ns.strip_prefix("ov-")
}

/// The sandbox id of a namespace file name, if it is a sandbox's.
pub fn sandbox_of_ns(ns: &str) -> Option<&str> {
    ns.strip_prefix("sb-")
}

/// The bridge inside every network namespace.
pub const BRIDGE: &str = "br0";

/// The VXLAN device; created in the host namespace under this name (unique
/// per VNI there), then moved into the network's namespace.
pub fn vxlan(vni: u32) -> String {
    format!("vx-{vni}")
}

/// The `i`th overlay interface of a sandbox.
pub fn sandbox_iface(i: usize) -> String {
    format!("eth{i}")
}

/// Bridge-side end of a sandbox's veth (15 characters at most, as the kernel
/// requires).
pub fn port(sandbox: &str, ifname: &str) -> String {
    format!("ve{:08x}", fnv1a(sandbox, ifname))
}

/// Temporary name of the sandbox-side end until it is moved and renamed.
pub fn peer(sandbox: &str, ifname: &str) -> String {
    format!("vp{:08x}", fnv1a(sandbox, ifname))
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`, so names
/// survive an agent upgrade.
fn fnv1a(sandbox: &str, ifname: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in sandbox.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let long = "a".repeat(64);
        assert!(port(&long, "eth9").len() <= 15);
        assert!(peer(&long, "eth9").len() <= 15);
        assert!(vxlan(16_777_215).len() <= 15);
    }

    #[test]
    fn names_are_stable_and_distinct() {
        assert_eq!(port("web.1", "eth0"), port("web.1", "eth0"));
        assert_ne!(port("web.1", "eth0"), port("web.1", "eth1"));
        assert_ne!(port("web.1", "eth0"), port("web.2", "eth0"));
        assert_eq!(network_of_ns(&network_ns("app")), Some("app"));
        assert_eq!(sandbox_of_ns(&sandbox_ns("t1")), Some("t1"));
        assert_eq!(network_of_ns("sb-x"), None);
    }
}
