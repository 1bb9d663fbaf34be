//! Gossip end to end: five real agents in namespaced hosts, one swarm. The
//! overlay of every host is programmed from the gossip tables (checked with
//! `bridge fdb`, `ip neigh` and ping between sandboxes); a SIGKILLed agent is
//! declared dead everywhere and its entries withdrawn, then it restarts and
//! its entries come back; a host cut off and healed converges again; and
//! lossy, slow links never get a live node declared dead.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::overlay::Topology;
use shoal_tests::swarm::{
    cli, cli_ok, form, nodes, start_agent, start_agent_with, start_agents, text, wait_for,
};
use shoal_tests::{require_root, Host, Underlay};

/// `shoal members --format json` on `host`; `Null` if it fails.
fn members(host: &Host) -> Value {
    let out = cli(host, &["members", "--format", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// How `observer` sees the member named `node`: "alive", "suspect", "dead".
fn state_of(observer: &Host, node: &str) -> Option<String> {
    let view = members(observer);
    view["gossip"]["members"]
        .as_array()?
        .iter()
        .find(|m| m["node"] == node)
        .and_then(|m| m["state"].as_str().map(str::to_string))
}

fn alive_count(view: &Value) -> usize {
    view["gossip"]["members"]
        .as_array()
        .map(|ms| ms.iter().filter(|m| m["state"] == "alive").count())
        .unwrap_or(0)
}

/// The host's swarm node id, as its gossip names it.
fn node_id(host: &Host) -> String {
    members(host)["gossip"]["node"]
        .as_str()
        .unwrap_or_else(|| panic!("no gossip view on {}", host.name()))
        .to_string()
}

fn mac_of(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The remote endpoints `host` programs on `network`: (MAC, VTEP) from the
/// VXLAN FDB and (IP, MAC) from the neighbour table.
fn programmed(host: &Host, network: &str, vni: u32) -> (BTreeSet<String>, BTreeSet<String>) {
    let ns = Topology::network_ns(host, network);
    let dev = format!("vx-{vni}");
    let fdb = Topology::run_in(&ns, "bridge", &["fdb", "show", "dev", &dev])
        .map(|o| text(&o))
        .unwrap_or_default();
    let fdb = fdb
        .lines()
        .filter(|l| l.contains(" dst ") && !l.starts_with("00:00:00:00:00:00"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let mac = words.next()?;
            let dst = l.split(" dst ").nth(1)?.split_whitespace().next()?;
            Some(format!("{mac}@{dst}"))
        })
        .collect();
    let neigh = Topology::run_in(&ns, "ip", &["neigh", "show", "dev", &dev])
        .map(|o| text(&o))
        .unwrap_or_default();
    let neigh = neigh
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let ip = words.next()?;
            let mac = l.split(" lladdr ").nth(1)?.split_whitespace().next()?;
            Some(format!("{ip}={mac}"))
        })
        .collect();
    (fdb, neigh)
}

/// What every host other than the endpoint's own should program.
fn expected(endpoints: &[(usize, Ipv4Addr)], hosts: &[&Host], viewer: usize) -> BTreeSet<String> {
    endpoints
        .iter()
        .filter(|(owner, _)| *owner != viewer)
        .map(|(owner, ip)| format!("{}@{}", mac_of(*ip), hosts[*owner].addr()))
        .collect()
}

fn wait_programmed(
    hosts: &[&Host],
    up: &[usize],
    network: &str,
    vni: u32,
    endpoints: &[(usize, Ipv4Addr)],
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let ok = wait_for(limit, || {
        up.iter().all(|&i| {
            let (fdb, neigh) = programmed(hosts[i], network, vni);
            let want = expected(endpoints, hosts, i);
            let want_neigh: BTreeSet<String> = endpoints
                .iter()
                .filter(|(owner, _)| *owner != i)
                .map(|(_, ip)| format!("{ip}={}", mac_of(*ip)))
                .collect();
            fdb == want && neigh == want_neigh
        })
    });
    if !ok {
        let detail: Vec<String> = up
            .iter()
            .map(|&i| {
                let (fdb, neigh) = programmed(hosts[i], network, vni);
                format!(
                    "{}: fdb {fdb:?} (want {:?}) neigh {neigh:?}\n{}",
                    hosts[i].name(),
                    expected(endpoints, hosts, i),
                    cli_ok(hosts[i], &["members"])
                )
            })
            .collect();
        panic!("overlays never matched the tables:\n{}", detail.join("\n"));
    }
    start.elapsed()
}

fn create_endpoint(host: &Host, network: &str, id: &str, ip: Ipv4Addr) {
    cli_ok(
        host,
        &[
            "endpoint",
            "create",
            "--network",
            network,
            "--ip",
            &ip.to_string(),
            id,
        ],
    );
}

fn ping_from(host: &Host, sandbox: &str, ip: Ipv4Addr) -> bool {
    let ns = Topology::sandbox_ns(host, sandbox);
    Topology::run_in(&ns, "ping", &["-c", "1", "-W", "2", &ip.to_string()])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Where h1's agent serves Prometheus metrics (inside h1).
const METRICS: &str = "127.0.0.1:9323";

/// A five-host swarm (one manager, four workers) with network `red`.
fn swarm(ul: &Underlay) -> (Vec<&Host>, String, u32) {
    let h: Vec<&Host> = ul.hosts().iter().collect();
    start_agent_with(h[0], &["--metrics-addr", METRICS]).expect("agent on h1");
    start_agents(&h[1..]);
    form(h[0], &[], &h[1..]);
    let id = cli_ok(
        h[0],
        &["network", "create", "--subnet", "10.10.1.0/24", "red"],
    );
    let inspect: Value =
        serde_json::from_str(&cli_ok(h[0], &["network", "inspect", "red"])).expect("inspect json");
    let vni: u32 = inspect[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VNI in {inspect}"));
    assert!(
        wait_for(Duration::from_secs(20), || h
            .iter()
            .all(|host| alive_count(&members(host)) == 5)),
        "gossip never converged to 5 alive members:\n{}",
        cli_ok(h[0], &["members"])
    );
    (h, id, vni)
}

#[test]
fn five_hosts_program_the_overlay_from_gossip() {
    require_root();
    let ul = Underlay::builder().hosts(5).build().expect("underlay");
    let (h, red, vni) = swarm(&ul);
    let ip = |last: u8| Ipv4Addr::new(10, 10, 1, last);

    // Endpoints on h2, h3 and h5: every host programs the others'.
    let mut endpoints = vec![(1, ip(2)), (2, ip(3)), (4, ip(5))];
    for &(owner, addr) in &endpoints {
        create_endpoint(h[owner], &red, &format!("ep{owner}"), addr);
    }
    let all: Vec<usize> = (0..5).collect();
    let took = wait_programmed(&h, &all, &red, vni, &endpoints, Duration::from_secs(15));
    println!(
        "3 endpoints programmed on 5 hosts in {} ms",
        took.as_millis()
    );
    assert!(ping_from(h[1], "ep1", ip(3)), "h2 cannot ping h3's sandbox");
    assert!(ping_from(h[4], "ep4", ip(2)), "h5 cannot ping h2's sandbox");
    let listed = cli_ok(h[0], &["endpoint", "ls"]);
    assert!(
        listed.contains("10.10.1.5") && listed.contains("live"),
        "{listed}"
    );
    let refused = cli(
        h[3],
        &[
            "endpoint",
            "create",
            "--network",
            &red,
            "--ip",
            "10.10.1.3",
            "dup",
        ],
    );
    assert!(
        !refused.status.success() && text(&refused).contains("already in use"),
        "{}",
        text(&refused)
    );

    // Garbage, truncated and replayed datagrams to h2's gossip port are
    // dropped and counted; h2 stays alive everywhere.
    let before = members(h[1])["gossip"]["decode"].clone();
    let target = format!("{}", h[1].addr());
    let script = format!(
        "import socket,os,time\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         bad=[os.urandom(n*7%1400+1) for n in range(200)]\n\
         bad+=[b'SHG\\x01'+os.urandom(60) for n in range(50)]+[b'SHG']*20\n\
         for b in bad: s.sendto(b,('{target}',7946)); time.sleep(0.002)\n"
    );
    let sent = h[0].exec("python3", &["-c", &script]).expect("python3");
    assert!(sent.status.success(), "{}", text(&sent));
    let h2 = node_id(h[1]);
    assert!(
        wait_for(Duration::from_secs(5), || {
            let after = &members(h[1])["gossip"]["decode"];
            let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
            let rejected = |v: &Value| {
                [
                    "malformed",
                    "truncated",
                    "unauthenticated",
                    "unknown_key",
                    "too_large",
                ]
                .iter()
                .map(|k| n(v, k))
                .sum::<u64>()
            };
            rejected(after) >= rejected(&before) + 250
        }),
        "h2 did not count the bad packets: {}",
        members(h[1])["gossip"]["decode"]
    );
    assert_eq!(state_of(h[0], &h2).as_deref(), Some("alive"));
    let metrics = h[0]
        .exec("curl", &["-sf", &format!("http://{METRICS}/metrics")])
        .expect("curl");
    let page = text(&metrics);
    assert!(
        page.contains(&format!("shoal_gossip_member_state{{node=\"{h2}\""))
            && page.contains("shoal_gossip_convergence_lag_ms{quantile=\"0.99\"}")
            && page.contains("shoal_overlay_remote_endpoints{network="),
        "metrics page lacks gossip figures:\n{page}"
    );

    // SIGKILL h5's agent, three times: every survivor marks it dead and
    // withdraws its entry; restarted, it rejoins and its entry returns.
    let victim = node_id(h[4]);
    let survivors: Vec<usize> = (0..4).collect();
    let without_h5: Vec<(usize, Ipv4Addr)> =
        endpoints.iter().copied().filter(|(o, _)| *o != 4).collect();
    let mut detections = Vec::new();
    for round in 0..3 {
        let killed = Instant::now();
        h[4].kill_processes();
        let dead = wait_for(Duration::from_secs(10), || {
            survivors
                .iter()
                .all(|&i| state_of(h[i], &victim).as_deref() == Some("dead"))
        });
        let detected = killed.elapsed();
        assert!(dead, "round {round}: h5 never dead everywhere");
        detections.push(detected);
        // The survivors keep reaching a down member's tasks for 10 s (the
        // agent's DOWN_MEMBER_LINGER: an agent restarting), then drop them.
        wait_programmed(
            &h,
            &survivors,
            &red,
            vni,
            &without_h5,
            Duration::from_secs(15),
        );
        start_agent(h[4]).expect("restart h5");
        wait_programmed(&h, &all, &red, vni, &endpoints, Duration::from_secs(20));
        assert!(
            wait_for(Duration::from_secs(10), || ping_from(h[1], "ep1", ip(5))),
            "round {round}: h5's sandbox unreachable after its restart"
        );
    }
    detections.sort();
    println!(
        "failure detection (SIGKILL -> dead at all 4 survivors, polled every ~100 ms): {:?}, median {} ms",
        detections.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        detections[1].as_millis()
    );
    assert!(
        detections[1] < Duration::from_secs(3),
        "median detection {:?} is over 3 s",
        detections[1]
    );

    // Cut h4 off: the others declare it dead and drop its entries; changes on
    // both sides meanwhile; healed, every table and overlay converges.
    create_endpoint(h[3], &red, "ep3", ip(4));
    endpoints.push((3, ip(4)));
    wait_programmed(&h, &all, &red, vni, &endpoints, Duration::from_secs(10));
    let cut = node_id(h[3]);
    h[3].cut_off().expect("cut off h4");
    assert!(
        wait_for(Duration::from_secs(10), || [0, 1, 2, 4]
            .iter()
            .all(|&i| state_of(h[i], &cut).as_deref() == Some("dead"))),
        "h4 never declared dead while cut off"
    );
    create_endpoint(h[1], &red, "ep1b", ip(22));
    cli_ok(h[2], &["endpoint", "rm", "ep2"]);
    create_endpoint(h[3], &red, "ep3b", ip(44));
    endpoints.retain(|(o, _)| *o != 2);
    endpoints.push((1, ip(22)));
    endpoints.push((3, ip(44)));
    std::thread::sleep(Duration::from_secs(2));
    h[3].heal().expect("heal h4");
    let healed = Instant::now();
    wait_programmed(&h, &all, &red, vni, &endpoints, Duration::from_secs(30));
    assert!(
        wait_for(Duration::from_secs(15), || h
            .iter()
            .all(|host| alive_count(&members(host)) == 5)),
        "membership did not converge after the heal"
    );
    println!(
        "after healing a 100%-loss cut: tables and overlays converged in {} ms",
        healed.elapsed().as_millis()
    );
    assert!(
        ping_from(h[3], "ep3b", ip(22)),
        "h4 cannot reach h2's new sandbox"
    );
}

/// 10% loss and 50 ms delay on every link (each way) for several minutes:
/// no live node is ever declared dead, and a change still reaches everyone.
#[test]
fn lossy_links_declare_no_live_node_dead() {
    require_root();
    let secs: u64 = std::env::var("SHOAL_LOSSY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let ul = Underlay::builder().hosts(5).build().expect("underlay");
    let (h, red, vni) = swarm(&ul);
    for host in &h {
        host.impair(10.0, 50).expect("impair");
    }
    let start = Instant::now();
    let mut polls = 0;
    let mut published = false;
    let mut rotated = false;
    while start.elapsed() < Duration::from_secs(secs) {
        // The managers' view too: no node is marked down by missed
        // heartbeats (which would replace its tasks).
        let listed = nodes(h[0]);
        if !listed.is_empty() {
            assert!(
                listed.iter().all(|n| n["Status"]["State"] == "ready"),
                "a node was marked down after {} s under 10%/50 ms: {listed:#?}",
                start.elapsed().as_secs()
            );
        }
        for host in &h {
            let view = members(host);
            let down = &view["gossip"]["transitions"]["down"];
            assert_eq!(
                down,
                &Value::from(0),
                "{} saw a member die after {} s under 10%/50 ms:\n{}",
                host.name(),
                start.elapsed().as_secs(),
                cli_ok(host, &["members"])
            );
        }
        polls += 1;
        if !rotated && start.elapsed() > Duration::from_secs(secs / 4) {
            // Rotate the gossip key under loss: every node takes key 2 and
            // seals with it a few seconds later, without a restart.
            cli_ok(h[0], &["swarm", "update", "--rotate-gossip-key"]);
            let t = Instant::now();
            assert!(
                wait_for(Duration::from_secs(30), || h
                    .iter()
                    .all(|host| members(host)["gossip"]["primary_key"] == 2)),
                "the new gossip key was not taken everywhere"
            );
            println!(
                "gossip key rotation: every node seals with key 2 after {} ms",
                t.elapsed().as_millis()
            );
            rotated = true;
        }
        if !published && start.elapsed() > Duration::from_secs(secs / 2) {
            create_endpoint(h[2], &red, "lossy", Ipv4Addr::new(10, 10, 1, 9));
            let all: Vec<usize> = (0..5).collect();
            let took = wait_programmed(
                &h,
                &all,
                &red,
                vni,
                &[(2, Ipv4Addr::new(10, 10, 1, 9))],
                Duration::from_secs(20),
            );
            println!(
                "under 10% loss / 50 ms: an endpoint reached every overlay in {} ms",
                took.as_millis()
            );
            published = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let suspicions: u64 = h
        .iter()
        .map(|host| {
            members(host)["gossip"]["transitions"]["suspect"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    println!(
        "{secs} s at 10% loss / 50 ms one way on every link: 0 false deaths over {polls} polls of 5 hosts, {suspicions} suspicions raised and refuted"
    );
    assert!(rotated, "the run was too short to rotate the key");
    for host in &h {
        host.heal().expect("heal");
    }
}
