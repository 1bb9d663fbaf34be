//! The routing mesh's harder cases on namespaced hosts, each checked with a
//! real client: packets with IP options, UDP datagrams larger than the
//! overlay's MTU (fragments, and DF datagrams that need path MTU discovery),
//! ICMP errors for tracked flows in both directions (port unreachable from a
//! task, fragmentation needed from a router on the client's side), published
//! ports used from the node itself, and one client port used through two
//! nodes at once.

use std::time::Duration;

use shoal_tests::mesh::{curl, mesh_counters, parse_answer, python, METRICS, SERVER};
use shoal_tests::swarm::{cli_ok, create, form, start_agent_with, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};

/// A named check: a closure returning what went wrong.
type Check<'a> = (&'static str, Box<dyn Fn() -> Result<(), String> + 'a>);

/// Runs `checks`; fails with every failure listed, so one run shows them all.
fn run_checks(checks: Vec<Check<'_>>) {
    let mut failed = Vec::new();
    for (name, check) in checks {
        match check() {
            Ok(()) => eprintln!("check passed: {name}"),
            Err(why) => {
                eprintln!("check FAILED: {name}: {why}");
                failed.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
}

/// A swarm of `nodes` with one replica of [`SERVER`] published on 8080/tcp
/// (HTTP), 8081/tcp (ticker), 8082/tcp (echo), 9053/udp (echo) and
/// 9054/udp (nothing listens behind it).
fn published_swarm(nodes: &[&Host]) {
    for node in nodes {
        start_agent_with(node, &["--metrics-addr", METRICS]).expect("agent");
    }
    form(nodes[0], &[], &nodes[1..]);
    cli_ok(nodes[0], &["network", "create", "app"]);
    create(
        nodes[0],
        "web",
        &[
            "--network",
            "app",
            "--publish",
            "8080:80",
            "--publish",
            "8081:81",
            "--publish",
            "8082:82",
            "--publish",
            "published=9053,target=90,protocol=udp",
            "--publish",
            "published=9054,target=91,protocol=udp",
        ],
        &["python3", "-c", SERVER],
    );
    wait_running(nodes[0], "web", 1, Duration::from_secs(40));
}

/// Waits until `client` gets an HTTP answer through every node.
fn wait_served(client: &Host, nodes: &[&Host]) {
    for node in nodes {
        let url = format!("http://{}:8080/", node.addr());
        let served = wait_for(Duration::from_secs(20), || curl(client, &url).is_some());
        assert!(served, "{url} never answered {}", client.name());
    }
}

#[test]
fn the_mesh_handles_options_fragments_icmp_local_clients_and_shared_ports() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..3], h[3]);
    published_swarm(nodes);
    wait_served(client, nodes);
    let me = client.addr().to_string();
    let (n1, n2) = (nodes[0].addr().to_string(), nodes[1].addr().to_string());

    let checks: Vec<Check<'_>> = vec![
        (
            "a TCP connection whose packets carry IP options",
            Box::new(|| {
                let script = format!(
                    "import socket\ns=socket.socket()\n\
                     s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b'\\x01\\x01\\x01\\x00')\n\
                     s.settimeout(3)\ns.connect(('{n1}',8080))\n\
                     s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\ndata=b''\n\
                     while True:\n  d=s.recv(4096)\n  if not d: break\n  data+=d\n\
                     print(data.decode())"
                );
                let (ok, out) = python(client, &script);
                match parse_answer(&out) {
                    Some((_, from)) if ok && from == me => Ok(()),
                    _ => Err(format!("no answer with the client's address: {out}")),
                }
            }),
        ),
        (
            "UDP to a published port nothing listens behind is refused",
            Box::new(|| {
                let script = format!(
                    "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                     s.settimeout(3)\ns.connect(('{n1}',9054))\nresult='TIMEOUT'\n\
                     for i in range(3):\n  s.send(b'hi')\n  \
                     try:\n    s.recv(100)\n    result='ANSWER'\n    break\n  \
                     except ConnectionRefusedError:\n    result='REFUSED'\n    break\n  \
                     except socket.timeout:\n    pass\nprint(result)"
                );
                let (_, out) = python(client, &script);
                if out.trim() == "REFUSED" {
                    Ok(())
                } else {
                    Err(format!(
                        "wanted ECONNREFUSED (ICMP port unreachable), got: {out}"
                    ))
                }
            }),
        ),
        (
            "UDP datagrams larger than the overlay's MTU, both ways",
            Box::new(|| {
                // 4000 bytes: the client fragments them; 1472: one
                // 1500-byte packet with DF, which needs path MTU discovery
                // (the first may be lost, as with any PMTU change).
                let script = format!(
                    "import socket\n\
                     for size in (4000, 1472, 1400, 20000):\n  \
                     s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n  s.settimeout(1)\n  got=None\n  \
                     for i in range(4):\n    s.sendto(b'y'*size,('{n2}',9053))\n    \
                     try:\n      got=s.recvfrom(65535)[0]\n      break\n    \
                     except socket.timeout:\n      pass\n  \
                     print(size, len(got) if got else 0, got[:80].decode() if got else '')"
                );
                let (_, out) = python(client, &script);
                let mut bad = Vec::new();
                for line in out.lines() {
                    let mut f = line.split_whitespace();
                    let (size, got) = (f.next(), f.next());
                    let from_me = parse_answer(line).is_some_and(|(_, from)| from == me);
                    if size != got || !from_me {
                        bad.push(line.to_string());
                    }
                }
                if out.lines().count() == 4 && bad.is_empty() {
                    Ok(())
                } else {
                    Err(format!("sizes sent, received and answers: {out}"))
                }
            }),
        ),
        (
            "published ports answer on the node itself",
            Box::new(|| {
                let node = nodes[1];
                let mut bad = Vec::new();
                for addr in ["127.0.0.1".to_string(), node.addr().to_string()] {
                    let url = format!("http://{addr}:8080/");
                    if curl(node, &url).and_then(|a| parse_answer(&a)).is_none() {
                        bad.push(format!("{url}: no answer"));
                    }
                    let script = format!(
                        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                         s.settimeout(2)\ns.sendto(b'hi',('{addr}',9053))\n\
                         data,peer=s.recvfrom(2048)\nprint(peer[0], peer[1], data.decode())"
                    );
                    let (ok, out) = python(node, &script);
                    let from_published = out.starts_with(&format!("{addr} 9053 "));
                    if !ok || parse_answer(&out).is_none() || !from_published {
                        bad.push(format!("udp {addr}:9053: {out}"));
                    }
                }
                if bad.is_empty() {
                    Ok(())
                } else {
                    Err(bad.join("; "))
                }
            }),
        ),
        (
            "one client port through two nodes at once",
            Box::new(|| {
                let script = format!(
                    "import socket\n\
                     def conn(addr):\n  s=socket.socket()\n  \
                     s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n  \
                     s.bind(('0.0.0.0', 47001))\n  s.settimeout(3)\n  s.connect((addr, 8081))\n  \
                     return s.makefile()\n\
                     a=conn('{n1}')\nb=conn('{n2}')\nseen=[[],[]]\n\
                     for i in range(10):\n  \
                     for k,f in enumerate((a,b)):\n    l=f.readline()\n    assert l, 'stream %d closed' % k\n    \
                     seen[k].append(int(l.split()[1]))\n\
                     assert all(s == sorted(s) and len(set(s)) == 10 for s in seen), seen\n\
                     print('BOTH OK', seen)"
                );
                let (ok, out) = python(client, &script);
                if ok && out.contains("BOTH OK") {
                    Ok(())
                } else {
                    Err(out)
                }
            }),
        ),
    ];
    run_checks(checks);

    // Each case took the path meant for it, as the data path counted.
    let mut total = std::collections::BTreeMap::new();
    for node in nodes {
        for (name, n) in mesh_counters(node) {
            *total.entry(name).or_insert(0u64) += n;
        }
    }
    eprintln!("mesh counters, all nodes: {total:?}");
    for (name, least) in [
        ("icmp_translated", 1),
        ("too_big", 1),
        ("fragmented", 1),
        ("fragments", 1),
        ("ports_translated", 1),
        ("local_clients", 4),
    ] {
        let n = total.get(name).copied().unwrap_or(0);
        assert!(
            n >= least,
            "counter {name} is {n}, wanted at least {least}: {total:?}"
        );
    }
}

/// A network namespace this test adds behind a host (beyond the harness's
/// own), deleted when dropped.
struct ExtraNetns(String);

impl Drop for ExtraNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client sits behind a router (host 4) whose link to it has a smaller
/// MTU (1300) than the client's own interface (1500), so the client's SYN
/// promises segments the path cannot carry: the router answers the task's
/// full-size segments with ICMP "fragmentation needed", sent to the node's
/// address. The mesh must hand it to the task, or a large answer never
/// arrives.
#[test]
fn fragmentation_needed_from_the_client_path_reaches_the_task() {
    require_root();
    let ul = Underlay::builder().hosts(4).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, router) = (&h[..3], h[3]);
    let client = ExtraNetns(format!("{}-far", ul.prefix()));
    ip(&["netns", "add", &client.0]);
    let router_ns = router.netns().to_string();
    ip(&[
        "-n", &router_ns, "link", "add", "far0", "mtu", "1300", "type", "veth", "peer", "name",
        "eth0", "mtu", "1500", "netns", &client.0,
    ]);
    ip(&[
        "-n",
        &router_ns,
        "addr",
        "add",
        "198.19.9.1/24",
        "dev",
        "far0",
    ]);
    ip(&["-n", &router_ns, "link", "set", "far0", "up"]);
    ip(&[
        "-n",
        &client.0,
        "addr",
        "add",
        "198.19.9.2/24",
        "dev",
        "eth0",
    ]);
    ip(&["-n", &client.0, "link", "set", "eth0", "up"]);
    ip(&["-n", &client.0, "link", "set", "lo", "up"]);
    let via = router.addr().to_string();
    ip(&[
        "-n",
        &client.0,
        "route",
        "add",
        "default",
        "via",
        "198.19.9.1",
    ]);
    router
        .sh("sysctl -qw net.ipv4.ip_forward=1")
        .expect("router forwards");
    for node in nodes {
        ip(&[
            "-n",
            node.netns(),
            "route",
            "add",
            "198.19.9.0/24",
            "via",
            &via,
        ]);
    }
    published_swarm(nodes);
    wait_served(router, nodes);
    let before: u64 = nodes
        .iter()
        .map(|n| {
            mesh_counters(n)
                .get("icmp_translated")
                .copied()
                .unwrap_or(0)
        })
        .sum();

    for node in nodes {
        let url = format!("http://{}:8080/big", node.addr());
        let got = wait_for(Duration::from_secs(20), || {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &client.0, "curl", "-s", "-m", "5", &url])
                .output();
            out.is_ok_and(|o| {
                o.status.success()
                    && o.stdout.len() > 200_000
                    && String::from_utf8_lossy(&o.stdout).contains("client=198.19.9.2:")
            })
        });
        assert!(
            got,
            "{url}: the 200 KB answer never arrived through the 1300-byte hop"
        );
    }
    let after: u64 = nodes
        .iter()
        .map(|n| {
            mesh_counters(n)
                .get("icmp_translated")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        after > before,
        "the answers arrived, but no ICMP error was translated ({before} -> {after})"
    );
}
