//! Whether a task listens on its published ports' targets, read from the
//! socket tables of its network namespace (`/proc/<pid>/net/{tcp,udp}` and
//! their IPv6 twins, as the task's process sees them). A new task becomes a
//! backend of the routing mesh only once it does.

use std::collections::BTreeSet;

use shoal_control::objects::{PortConfig, Protocol};

/// The TCP state of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Whether process `pid` listens on every target port of `ports` (TCP) or
/// has a socket bound to it (UDP). False if its tables cannot be read.
pub fn listens(pid: u32, ports: &[PortConfig]) -> bool {
    let read = |name: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{name}"));
    let (Ok(tcp), Ok(udp)) = (read("tcp"), read("udp")) else {
        return false;
    };
    let tcp6 = read("tcp6").unwrap_or_default();
    let udp6 = read("udp6").unwrap_or_default();
    let tcp_ports = bound_ports(&[&tcp, &tcp6], Some(TCP_LISTEN));
    let udp_ports = bound_ports(&[&udp, &udp6], None);
    ports.iter().all(|p| match p.protocol {
        Protocol::Tcp => tcp_ports.contains(&p.target),
        Protocol::Udp => udp_ports.contains(&p.target),
    })
}

/// The local ports of the sockets in `/proc/net/{tcp,udp}[6]` tables, only
/// those in `state` if given.
fn bound_ports(tables: &[&str], state: Option<&str>) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for table in tables {
        for line in table.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let (Some(local), Some(st)) = (fields.nth(1), fields.nth(1)) else {
                continue;
            };
            if state.is_some_and(|want| want != st) {
                continue;
            }
            let Some((_, port)) = local.rsplit_once(':') else {
                continue;
            };
            if let Ok(port) = u16::from_str_radix(port, 16) {
                ports.insert(port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:B2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  12: 00000000:005A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0 0
";

    #[test]
    fn listening_tcp_and_bound_udp_ports_are_read_from_the_tables() {
        assert_eq!(bound_ports(&[TCP], Some(TCP_LISTEN)), BTreeSet::from([80]));
        // 8080 is only an established connection's local port.
        assert!(!bound_ports(&[TCP], Some(TCP_LISTEN)).contains(&8080));
        assert_eq!(bound_ports(&[UDP], None), BTreeSet::from([90]));
        assert!(bound_ports(&["garbage\nnot a table"], None).is_empty());
    }

    #[test]
    fn this_process_listens_on_a_port_it_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let config = |target| PortConfig {
            protocol: Protocol::Tcp,
            target,
            published: 8080,
            mode: Default::default(),
        };
        assert!(listens(std::process::id(), &[config(port)]));
        drop(listener);
        assert!(!listens(std::process::id(), &[config(port)]));
    }
}
