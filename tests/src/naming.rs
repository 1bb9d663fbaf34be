//! Names and addresses of everything an underlay creates, chosen so that one run never
//! touches another's: prefixes `shoal-<runid>-<n>`, namespace names derived from them,
//! and host addresses in 198.18.0.0/15 (RFC 2544 benchmarking space).

use std::{
    hash::{BuildHasher, RandomState},
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

/// Every netns and run dir the harness creates starts with this.
pub const NAME_PREFIX: &str = "shoal-";
/// Parent of every underlay's run root (and of `cargo xtask bench`'s run dir), all
/// removed by `cleanup_leftovers`.
pub const RUN_ROOT: &str = "/run/shoal-test";
/// Where `ip netns` keeps its namespace files.
pub(crate) const NETNS_DIR: &str = "/run/netns";
/// Where hosts' agents make their task cgroups (`shoal-*` names only).
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where agents pin their routing mesh, one directory per agent.
pub(crate) const BPF_PINS: &str = "/sys/fs/bpf/shoal";
/// The underlay interface inside every host.
pub(crate) const HOST_IFACE: &str = "eth0";
/// The bridge inside the underlay namespace.
pub(crate) const BRIDGE: &str = "br0";
/// Prefix length of the underlay subnet 198.18.0.0/15.
pub(crate) const UNDERLAY_PREFIX_LEN: u8 = 15;
/// Most hosts one underlay can have: addresses stay within 198.18.0.1-254.
pub(crate) const MAX_HOSTS: usize = 254;

const UNDERLAY_NETWORK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);

/// The environment variable through which `cargo xtask test` tags every test process it
/// runs, so that its leftover check looks at its own namespaces only and never at those
/// of another run going on beside it.
pub const RUN_TAG_ENV: &str = "SHOAL_TEST_RUN_TAG";

/// A random id for this process, fixed for its lifetime: `t`, then the run tag of
/// [`RUN_TAG_ENV`] when it is set to three lowercase hex digits, then six random hex
/// digits.
fn run_id() -> &'static str {
    static RUN_ID: OnceLock<String> = OnceLock::new();
    RUN_ID.get_or_init(|| {
        // RandomState is seeded from the OS's randomness once per process.
        let random = RandomState::new().hash_one(std::process::id());
        let tag = std::env::var(RUN_TAG_ENV)
            .ok()
            .filter(|tag| is_run_tag(tag))
            .unwrap_or_default();
        format!("t{tag}{:06x}", random & 0xff_ffff)
    })
}

/// Whether `tag` can tag a run: exactly three lowercase hex digits.
pub fn is_run_tag(tag: &str) -> bool {
    tag.len() == 3
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The next unused prefix of this process: `shoal-<runid>-<n>`.
pub(crate) fn next_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{n}", run_id())
}

/// The name of host `index` (0-based): `h1`, `h2`, ...
pub(crate) fn host_name(index: usize) -> String {
    format!("h{}", index + 1)
}

/// The netns of host `host` in the underlay `prefix`.
pub(crate) fn host_netns(prefix: &str, host: &str) -> String {
    format!("{prefix}-{host}")
}

/// The netns holding the bridge of the underlay `prefix`.
pub(crate) fn underlay_netns(prefix: &str) -> String {
    format!("{prefix}-underlay")
}

/// The underlay end of the veth pair that detours host port `port` through the
/// impairment relay: the relay reads and writes it (`h2-relay`).
pub(crate) fn relay_end(port: &str) -> String {
    format!("{port}-relay")
}

/// The bridge end of that veth pair, a port of the bridge (`h2-bridge`).
pub(crate) fn relay_bridge_end(port: &str) -> String {
    format!("{port}-bridge")
}

/// The underlay address of host `index` (0-based): 198.18.0.(index + 1).
pub(crate) fn host_addr(index: usize) -> Option<Ipv4Addr> {
    if index >= MAX_HOSTS {
        return None;
    }
    let offset = u32::try_from(index + 1).ok()?;
    Some(Ipv4Addr::from(u32::from(UNDERLAY_NETWORK) + offset))
}

/// Whether `name` is the harness's and selected by `filter`.
///
/// A filter selects names equal to it or continuing it after a `-`, so `shoal-t1a2b3c-1`
/// selects `shoal-t1a2b3c-1-h1` but not `shoal-t1a2b3c-10-h1`.
pub(crate) fn matches_filter(name: &str, filter: Option<&str>) -> bool {
    if !name.starts_with(NAME_PREFIX) {
        return false;
    }
    match filter {
        None => true,
        Some(filter) => name
            .strip_prefix(filter)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_within_a_process_and_share_the_run_id() {
        let a = next_prefix();
        let b = next_prefix();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{NAME_PREFIX}{}-", run_id())), "{a}");
        let tagged = std::env::var(RUN_TAG_ENV).is_ok_and(|tag| is_run_tag(&tag));
        assert_eq!(run_id().len(), if tagged { 10 } else { 7 });
    }

    #[test]
    fn hosts_are_numbered_from_one() {
        assert_eq!(host_name(0), "h1");
        assert_eq!(host_netns("shoal-t000001-3", "h2"), "shoal-t000001-3-h2");
        assert_eq!(host_addr(0), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(host_addr(253), Some(Ipv4Addr::new(198, 18, 0, 254)));
        assert_eq!(host_addr(254), None);
    }

    #[test]
    fn detour_names_fit_an_interface_name() {
        // IFNAMSIZ is 16 with the NUL: 15 characters at most, even for host 254.
        let port = host_name(MAX_HOSTS - 1);
        assert_eq!(relay_end(&port), "h254-relay");
        assert!(relay_bridge_end(&port).len() <= 15);
        assert_ne!(relay_end("h1"), relay_bridge_end("h1"));
    }

    #[test]
    fn filter_matches_whole_dash_separated_parts() {
        assert!(matches_filter("shoal-t1-1-h1", None));
        assert!(!matches_filter("other-t1-1-h1", None));
        assert!(matches_filter("shoal-t1-1-h1", Some("shoal-t1-1")));
        assert!(matches_filter("shoal-t1-1", Some("shoal-t1-1")));
        assert!(matches_filter("shoal-t1-1-h1", Some("shoal-t1")));
        assert!(!matches_filter("shoal-t1-10-h1", Some("shoal-t1-1")));
        assert!(!matches_filter("other-x", Some("other")));
    }
}
