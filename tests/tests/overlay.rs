//! The VXLAN overlay end to end: three namespaced hosts run the real `shoal`
//! binary, two networks with different VNIs, a sandbox per network per host,
//! and real clients (ping, a TCP exchange, `bridge fdb`, `ip neigh`).

use std::process::Output;

use shoal_tests::overlay::Topology;
use shoal_tests::{require_root, Host, Underlay};

const NETS: &[(&str, u32, u8)] = &[("red", 4096, 10), ("blue", 4097, 20)];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sandbox(host: &Host, network: &str, index: usize, program: &str, args: &[&str]) -> Output {
    let ns = Topology::sandbox_ns(host, &Topology::sandbox_id(network, index));
    Topology::run_in(&ns, program, args).expect("nsenter into sandbox")
}

fn ping(host: &Host, network: &str, index: usize, target: &str, size: Option<usize>) -> bool {
    let size = size.map(|s| s.to_string());
    let mut args = vec!["-c", "1", "-W", "1", "-M", "do"];
    if let Some(size) = &size {
        args.extend(["-s", size]);
    }
    args.push(target);
    // A first packet may wait on ARP; allow a few bounded tries.
    (0..3).any(|_| {
        sandbox(host, network, index, "ping", &args)
            .status
            .success()
    })
}

/// A TCP round trip from one sandbox to another: server on `to`, client on `from`.
fn tcp_exchange(ul: &Underlay, topo: &Topology, network: &str, from: usize, to: usize) -> String {
    let server_ns = Topology::sandbox_ns(ul.host(to), &Topology::sandbox_id(network, to));
    let server = std::thread::spawn(move || {
        Topology::run_in(
            &server_ns,
            "timeout",
            &["10", "python3", "-c",
              "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
               s.bind(('0.0.0.0',7000));s.listen()\nc,a=s.accept();c.sendall(b'hello '+c.recv(64));c.close()"],
        )
    });
    let target = topo.sandbox_ip(network, to).to_string();
    let script = format!(
        "import socket,time\nfor i in range(40):\n  try:\n    s=socket.create_connection(('{target}',7000),timeout=2);break\n  \
         except OSError: time.sleep(0.1)\ns.sendall(b'from {from}');print(s.recv(64).decode())"
    );
    let out = sandbox(ul.host(from), network, from, "python3", &["-c", &script]);
    let _ = server.join();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn overlay_across_three_hosts() {
    require_root();
    let ul = Underlay::builder()
        .hosts(3)
        .mtu(1500)
        .build()
        .expect("underlay");
    let topo = Topology::new(ul.hosts(), 1500, NETS);
    let all = [0, 1, 2];

    for (i, host) in ul.hosts().iter().enumerate() {
        let report = Topology::apply(host, &topo.spec(i, &all)).expect("first apply");
        assert!(
            report.netlink_requests > 0,
            "first apply on h{} did nothing",
            i + 1
        );
    }
    // Level-triggered: the same spec again sends no netlink change at all.
    for (i, host) in ul.hosts().iter().enumerate() {
        let report = Topology::apply(host, &topo.spec(i, &all)).expect("second apply");
        assert!(
            report.changes.is_empty(),
            "re-apply on h{} planned {:?}",
            i + 1,
            report.changes
        );
        assert_eq!(
            report.netlink_requests,
            0,
            "re-apply on h{} sent netlink requests",
            i + 1
        );
    }

    // Ping and TCP within each network, across every pair of hosts.
    for net in ["red", "blue"] {
        for from in 0..3 {
            for to in (0..3).filter(|t| *t != from) {
                let target = topo.sandbox_ip(net, to).to_string();
                assert!(
                    ping(ul.host(from), net, from, &target, None),
                    "{net}: h{} cannot ping {target}",
                    from + 1
                );
            }
        }
        assert_eq!(
            tcp_exchange(&ul, &topo, net, 0, 2),
            "hello from 0",
            "{net}: TCP h1 -> h3"
        );
    }

    // No reach between networks: neither routed, nor a frame forged with the
    // other network's MAC on an on-link route (the VXLAN FDB is per network).
    let blue_h2 = topo.sandbox_ip("blue", 1).to_string();
    assert!(
        !ping(ul.host(0), "red", 0, &blue_h2, None),
        "red reached blue by IP"
    );
    let forged = sandbox(
        ul.host(0),
        "red",
        0,
        "sh",
        &["-c", &format!(
            "ip route add {blue_h2}/32 dev eth0 && ip neigh replace {blue_h2} lladdr 02:42:0a:14:00:0b dev eth0 nud permanent && \
             ping -c 2 -W 1 {blue_h2}"
        )],
    );
    assert!(
        !forged.status.success(),
        "a forged red frame reached blue: {}",
        text(&forged)
    );

    // MTU 1450 on a 1500 underlay: set on the sandbox, and a full-size frame
    // crosses hosts without fragmentation while one byte more is refused.
    // (Read with `ip`: /sys under `nsenter --net` still shows the root namespace.)
    let link = text(&sandbox(
        ul.host(0),
        "red",
        0,
        "ip",
        &["-o", "link", "show", "eth0"],
    ));
    assert!(
        link.contains(" mtu 1450 "),
        "sandbox eth0 is not at MTU 1450: {link}"
    );
    let red_h3 = topo.sandbox_ip("red", 2).to_string();
    assert!(
        ping(ul.host(0), "red", 0, &red_h3, Some(1450 - 28)),
        "1450-byte packet did not cross"
    );
    assert!(
        !ping(ul.host(0), "red", 0, &red_h3, Some(1450 - 27)),
        "1451-byte packet was not refused"
    );

    // Static entries for remote endpoints are visible with the real tools.
    let red_ns = Topology::network_ns(ul.host(0), "red");
    let h3_mac = "02:42:0a:0a:00:0c";
    let fdb =
        text(&Topology::run_in(&red_ns, "bridge", &["fdb", "show", "dev", "vx-4096"]).unwrap());
    assert!(
        fdb.contains(&format!("{h3_mac} dst {} ", ul.host(2).addr())) && fdb.contains("permanent"),
        "h1 lacks the FDB entry for h3:\n{fdb}"
    );

    // h3's endpoints are withdrawn: h1 and h2 drop its FDB and neighbour
    // entries, and can no longer reach it.
    for i in 0..2 {
        Topology::apply(ul.host(i), &topo.spec(i, &[0, 1])).expect("apply without h3");
    }
    let fdb =
        text(&Topology::run_in(&red_ns, "bridge", &["fdb", "show", "dev", "vx-4096"]).unwrap());
    assert!(
        !fdb.contains(h3_mac),
        "h3's FDB entry is still on h1:\n{fdb}"
    );
    let neigh =
        text(&Topology::run_in(&red_ns, "ip", &["neigh", "show", "dev", "vx-4096"]).unwrap());
    assert!(
        !neigh.contains(&red_h3),
        "h3's neighbour entry is still on h1:\n{neigh}"
    );
    assert!(
        !ping(ul.host(0), "red", 0, &red_h3, None),
        "h1 still reaches h3 after withdrawal"
    );
    assert!(
        ping(
            ul.host(0),
            "red",
            0,
            &topo.sandbox_ip("red", 1).to_string(),
            None
        ),
        "h1 lost h2"
    );
}

#[test]
fn agent_adopts_and_repairs_existing_state() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let topo = Topology::new(ul.hosts(), 1500, &NETS[..1]);
    for i in 0..2 {
        Topology::apply(ul.host(i), &topo.spec(i, &[0, 1])).expect("apply");
    }
    // Damage h1 behind the agent's back: drop an FDB entry and the sandbox's link.
    let red_ns = Topology::network_ns(ul.host(0), "red");
    let h2_mac = "02:42:0a:0a:00:0b";
    let del = Topology::run_in(
        &red_ns,
        "bridge",
        &["fdb", "del", h2_mac, "dev", "vx-4096", "self"],
    )
    .unwrap();
    assert!(del.status.success(), "{}", text(&del));
    let del = sandbox(ul.host(0), "red", 0, "ip", &["link", "del", "eth0"]);
    assert!(del.status.success(), "{}", text(&del));

    // A new agent run finds the rest in place and repairs exactly the damage.
    let report = Topology::apply(ul.host(0), &topo.spec(0, &[0, 1])).expect("repair");
    let ops: Vec<String> = report
        .changes
        .iter()
        .map(|c| c["op"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        !ops.iter()
            .any(|o| o.starts_with("create_network") || o == "create_vxlan"),
        "recreated: {ops:?}"
    );
    assert!(
        ops.contains(&"set_fdb".to_string()) && ops.contains(&"attach_iface".to_string()),
        "{ops:?}"
    );
    let target = topo.sandbox_ip("red", 1).to_string();
    assert!(
        ping(ul.host(0), "red", 0, &target, None),
        "no connectivity after repair"
    );
    let again = Topology::apply(ul.host(0), &topo.spec(0, &[0, 1])).expect("re-apply");
    assert_eq!(again.netlink_requests, 0);
}
