//! The per-container files Docker writes and bind-mounts: `/etc/hosts`
//! (localhost, the IPv6 names, the container's own addresses under its
//! hostname, extra hosts), `/etc/hostname`, and `/etc/resolv.conf` (the
//! task's, pointing at the embedded DNS).

use std::net::IpAddr;

/// Docker's `/etc/hosts` for a container.
pub fn hosts(hostname: &str, addresses: &[IpAddr], extra: &[(String, IpAddr)]) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    for ip in addresses {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

/// `/etc/hostname`.
pub fn hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// The hostname a container gets when the task names none: the first 12
/// characters of its id, as Docker names a container's host.
pub fn default_hostname(task_id: &str) -> String {
    task_id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_localhost_own_addresses_and_extras() {
        let text = hosts(
            "web-1",
            &["10.0.1.5".parse().unwrap()],
            &[("db".into(), "10.0.1.9".parse().unwrap())],
        );
        assert!(
            text.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(text.contains("10.0.1.9\tdb\n"));
        assert!(text.ends_with("10.0.1.5\tweb-1\n"));
        assert_eq!(hostname("web-1"), "web-1\n");
        assert_eq!(default_hostname("abcdefghijklmnop"), "abcdefghijkl");
    }
}
