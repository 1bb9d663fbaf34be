//! A SYN flood with random source addresses at a published port must not
//! cost an established connection its flow: idle connections through the
//! mesh still answer after 25 s of `hping3 --flood --rand-source -S`, new
//! connections work again once the flood stops, and closed connections
//! leave the established table.

use std::time::{Duration, Instant};

use shoal_tests::mesh::{curl, mesh_counters, python, METRICS, SERVER};
use shoal_tests::swarm::{cli_ok, create, form, start_agent_with, wait_for, wait_running};
use shoal_tests::{require_root, Host, Underlay};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(25);

/// Established connections kept idle through the flood.
const IDLE: usize = 50;

/// A client that opens [`IDLE`] connections to the echo port, checks each,
/// goes idle until `go` exists, then checks each again and closes them:
/// `IDLE OK n` with how many answered both times.
fn idle_client(node: &str, go: &str) -> String {
    format!(
        "import os, socket, time\n\
         conns=[]\n\
         for i in range({IDLE}):\n  s=socket.create_connection(('{node}',8082), timeout=3)\n  \
         f=s.makefile('rw'); f.write('one\\n'); f.flush(); assert f.readline().strip().endswith('one')\n  \
         conns.append((s,f))\n\
         print('first', len(conns), flush=True)\n\
         while not os.path.exists('{go}'):\n  time.sleep(0.2)\n\
         ok=0\n\
         for s,f in conns:\n  s.settimeout(5)\n  \
         try:\n    f.write('two\\n'); f.flush(); ok+=f.readline().strip().endswith('two')\n  \
         except OSError as e:\n    print('broken', e, flush=True)\n\
         for s,f in conns:\n  f.close(); s.close()\n\
         time.sleep(1)\n\
         print('IDLE OK' if ok == len(conns) else 'IDLE BROKEN', ok, flush=True)"
    )
}

#[test]
fn an_idle_connection_survives_a_syn_flood() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let (nodes, client) = (&h[..2], h[2]);
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
            "8082:82",
        ],
        &["python3", "-c", SERVER],
    );
    wait_running(nodes[0], "web", 1, Duration::from_secs(40));
    let target = nodes[0].addr().to_string();
    let url = format!("http://{target}:8080/");
    assert!(
        wait_for(Duration::from_secs(20), || curl(client, &url).is_some()),
        "{url} never answered"
    );

    let go = ul.host(2).run_dir().join("flood-done");
    let idle = client
        .spawn(
            "python3",
            &["-c", &idle_client(&target, &go.to_string_lossy())],
        )
        .expect("idle client");
    let log = client.log_path(idle).expect("idle client log");
    let opened = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("first "))
    });
    assert!(
        opened,
        "the idle connection did not open: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let counted = mesh_counters(nodes[0]);
    let count =
        |c: &std::collections::BTreeMap<String, u64>, name: &str| c.get(name).copied().unwrap_or(0);
    let before = Instant::now();
    let flood = client
        .exec(
            "timeout",
            &[
                "-s",
                "INT",
                &FLOOD.as_secs().to_string(),
                "hping3",
                "--flood",
                "--rand-source",
                "-S",
                "-p",
                "8082",
                &target,
            ],
        )
        .expect("hping3 runs");
    let flooded = before.elapsed();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&flood.stdout),
        String::from_utf8_lossy(&flood.stderr)
    );
    let sent: u64 = report
        .lines()
        .find_map(|l| l.split(" packets transmitted").next()?.trim().parse().ok())
        .unwrap_or(0);
    eprintln!(
        "flood: {sent} SYNs in {:.1} s ({:.0}/s)",
        flooded.as_secs_f64(),
        sent as f64 / flooded.as_secs_f64()
    );
    assert!(
        sent > 100_000,
        "hping3 sent too little to test anything: {report}"
    );
    let flooded_counters = mesh_counters(nodes[0]);
    std::fs::write(&go, b"").expect("signal the idle client");
    let done = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("IDLE "))
    });
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done && out.contains("IDLE OK"),
        "the idle connections did not survive the flood:\n{out}"
    );
    eprintln!("flood: {IDLE} of {IDLE} idle established connections kept");
    let opened =
        count(&flooded_counters, "flows_opened").saturating_sub(count(&counted, "flows_opened"));
    let established = count(&flooded_counters, "flows_established")
        .saturating_sub(count(&counted, "flows_established"));
    eprintln!(
        "flood: {opened} new flows absorbed ({:.0}/s), {established} established meanwhile",
        opened as f64 / flooded.as_secs_f64()
    );
    assert!(
        opened as f64 > sent as f64 * 0.5,
        "the ingress node saw {opened} of {sent} SYNs: the flood did not reach the mesh"
    );
    assert!(
        established < 10,
        "{established} flows of a spoofed flood became established"
    );

    // Their FINs took them out of the established table.
    let closed = wait_for(Duration::from_secs(5), || {
        count(&mesh_counters(nodes[0]), "flows_closed")
            .saturating_sub(count(&counted, "flows_closed"))
            >= IDLE as u64
    });
    assert!(
        closed,
        "closed connections stayed established: {:?}",
        mesh_counters(nodes[0])
    );

    // New connections work again (the half-open flows of the flood age out
    // of their own table, they never filled the established one).
    let (ok, answer) = python(
        client,
        &format!(
            "import socket\ns=socket.create_connection(('{target}',8082), timeout=3)\n\
             s.sendall(b'three\\n'); print(s.recv(100).decode())"
        ),
    );
    assert!(
        ok && answer.contains("three"),
        "a new connection failed: {answer}"
    );
    let metrics = nodes[0]
        .exec("curl", &["-s", "-m", "3", "http://127.0.0.1:9323/metrics"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mesh: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("shoal_mesh_"))
        .collect();
    eprintln!("mesh metrics on the flooded node:\n{}", mesh.join("\n"));
}
