//! The mesh's limits with the real data path (`shoal mesh apply`, the
//! plumbing the agent's balancer uses) on namespaced hosts: one published
//! port balances over 200 backends and one virtual IP over 100 tasks (more
//! than the 128 and 64 of before), and a port with more backends than the
//! mesh holds (1024) is served up to that and said loudly, never dropped
//! silently.
//!
//! h1 is the node; behind its link `vb0`, a backend namespace answers on
//! 200 addresses with the address each connection reached; h2 is a client.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_tests::mesh::python;
use shoal_tests::{require_root, Host, Underlay};

/// Backends of the published port.
const BACKENDS: u32 = 200;
/// Addresses of the backend namespace: enough for a port over the limit.
const ADDRESSES: u32 = 1100;
/// The most backends one port balances over.
const LIMIT: u32 = 1024;
/// Tasks behind the virtual IP (the first of those addresses).
const VIP_TASKS: u32 = 100;
const VIP: &str = "10.78.0.100";

/// Answers `addr=<the address this connection reached>` on port 80.
const BACKEND: &str = r#"
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(("addr=%s\n" % self.connection.getsockname()[0]).encode())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("0.0.0.0", 80), H).serve_forever()
"#;

fn backend_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 77, 0, 2)) + i)
}

/// A namespace (and a cgroup) this test adds, removed when dropped.
struct Extra {
    netns: String,
    cgroup: PathBuf,
    server: Option<std::process::Child>,
}

impl Drop for Extra {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `shoal mesh apply` in `node` with `spec`; (success, stdout, stderr).
fn apply(node: &Host, pins: &Path, spec: &serde_json::Value) -> (bool, String, String) {
    let file = node.run_dir().join("mesh.json");
    std::fs::write(&file, spec.to_string()).expect("write the spec");
    let out = node
        .shoal(&[
            "mesh",
            "apply",
            "--spec",
            &file.to_string_lossy(),
            "--pin-dir",
            &pins.to_string_lossy(),
        ])
        .expect("shoal runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spec(backends: u32, mac: &str, cgroup: &Path) -> serde_json::Value {
    let list: Vec<serde_json::Value> = (0..backends)
        .map(|i| serde_json::json!({"ip": backend_addr(i).to_string(), "port": 80, "mac": mac}))
        .collect();
    let tasks: Vec<String> = (0..VIP_TASKS)
        .map(|i| backend_addr(i).to_string())
        .collect();
    let mut vips = serde_json::Map::new();
    vips.insert(VIP.to_string(), serde_json::json!(tasks));
    serde_json::json!({
        "underlay": ["eth0"],
        "link": "vb0",
        "services": [{"protocol": "tcp", "port": 8080, "backends": list}],
        "vips": vips,
        "cgroup": cgroup,
    })
}

/// `n` connections from a python client (in `cgroup` if given) to
/// `addr:port`: the distinct backend addresses that answered.
fn answered(
    host: &Host,
    addr: &str,
    port: u16,
    n: usize,
    cgroup: Option<&Path>,
) -> BTreeSet<String> {
    let script = format!(
        "import socket\nseen=set()\n\
         for i in range({n}):\n  s=socket.create_connection(('{addr}',{port}), timeout=3)\n  \
         s.sendall(b'hi\\n'); seen.add(s.makefile().readline().strip()); s.close()\n\
         print('\\n'.join(sorted(seen)))"
    );
    let out = match cgroup {
        None => python(host, &script).1,
        Some(cgroup) => {
            let procs = cgroup.join("cgroup.procs");
            let shell = format!(
                "echo $$ > {} && exec python3 -c \"$0\"",
                procs.to_string_lossy()
            );
            let out = host.exec("sh", &["-c", &shell, &script]).expect("sh runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    out.lines()
        .filter_map(|l| l.strip_prefix("addr=").map(str::to_string))
        .collect()
}

#[test]
fn ports_and_virtual_ips_balance_over_hundreds_and_say_when_they_cannot() {
    require_root();
    let ul = Underlay::builder().hosts(2).build().expect("underlay");
    let (node, client) = (ul.host(0), ul.host(1));
    let prefix = ul.prefix().to_string();
    let cgroup_root = Command::new("sh")
        .args(["-c", "findmnt -n -t cgroup2 -o TARGET | head -1"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("findmnt");
    let mut extra = Extra {
        netns: format!("{prefix}-be"),
        cgroup: Path::new(&cgroup_root).join(format!("{prefix}-vip")),
        server: None,
    };
    std::fs::create_dir_all(&extra.cgroup).expect("a cgroup for the VIP's client");

    // The backend namespace: 200 addresses behind the node's `vb0`.
    let be = extra.netns.clone();
    run("ip", &["netns", "add", &be]);
    run(
        "ip",
        &[
            "-n",
            node.netns(),
            "link",
            "add",
            "vb0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &be,
        ],
    );
    run(
        "ip",
        &[
            "-n",
            node.netns(),
            "addr",
            "add",
            "10.77.255.254/16",
            "dev",
            "vb0",
        ],
    );
    run("ip", &["-n", node.netns(), "link", "set", "vb0", "up"]);
    let batch = node.run_dir().join("addrs.batch");
    let lines: String = (0..ADDRESSES)
        .map(|i| format!("addr add {}/16 dev eth0\n", backend_addr(i)))
        .collect();
    std::fs::write(&batch, lines).expect("write the address batch");
    run("ip", &["-n", &be, "-batch", &batch.to_string_lossy()]);
    run("ip", &["-n", &be, "link", "set", "eth0", "up"]);
    run("ip", &["-n", &be, "link", "set", "lo", "up"]);
    run(
        "ip",
        &["-n", &be, "route", "add", "default", "via", "10.77.255.254"],
    );
    let mac = run("ip", &["-n", &be, "-br", "link", "show", "eth0"])
        .split_whitespace()
        .nth(2)
        .expect("a MAC")
        .to_string();
    extra.server = Some(
        Command::new("ip")
            .args(["netns", "exec", &be, "python3", "-c", BACKEND])
            .spawn()
            .expect("backend server"),
    );

    let pins = Path::new("/sys/fs/bpf/shoal").join(
        node.run_dir()
            .to_string_lossy()
            .trim_matches('/')
            .replace('/', "_"),
    );
    let (ok, out, err) = apply(node, &pins, &spec(BACKENDS, &mac, &extra.cgroup));
    assert!(ok, "shoal mesh apply failed: {out}{err}");

    // 200 backends behind one published port: far more than 128 answer.
    let target = node.addr().to_string();
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        seen = answered(client, &target, 8080, 800, None);
        if seen.len() > 128 {
            break;
        }
    }
    eprintln!(
        "published port: {} of {BACKENDS} backends answered",
        seen.len()
    );
    assert!(
        seen.len() > 150,
        "only {} backends answered: {seen:?}",
        seen.len()
    );

    // 100 tasks behind one virtual IP: more than 64 answer, to a socket in
    // the cgroup the hooks serve.
    let seen = answered(node, VIP, 80, 600, Some(&extra.cgroup));
    eprintln!("virtual IP: {} of {VIP_TASKS} tasks answered", seen.len());
    assert!(
        seen.len() > 80,
        "only {} tasks answered the VIP: {seen:?}",
        seen.len()
    );
    assert!(seen.iter().all(|a| {
        a.parse::<Ipv4Addr>()
            .is_ok_and(|ip| (0..VIP_TASKS).any(|i| backend_addr(i) == ip))
    }));

    // More than the mesh holds: served up to it (the lowest addresses),
    // and said; the others get nothing new.
    let (ok, out, err) = apply(node, &pins, &spec(ADDRESSES, &mac, &extra.cgroup));
    assert!(!ok, "an over-limit spec was applied silently: {out}");
    assert!(
        err.contains("8080/tcp has 1100 backends") && err.contains("at most 1024"),
        "the error does not say what is wrong: {err}"
    );
    assert!(out.contains("\"over_limit\":[{"), "{out}");
    let seen = answered(client, &target, 8080, 2000, None);
    let beyond: Vec<&String> = seen
        .iter()
        .filter(|a| (LIMIT..ADDRESSES).any(|i| backend_addr(i).to_string() == **a))
        .collect();
    eprintln!(
        "over the limit: {} of {LIMIT} backends answered",
        seen.len()
    );
    assert!(seen.len() > 600, "only {} backends answered", seen.len());
    assert!(
        beyond.is_empty(),
        "backends over the limit got flows: {beyond:?}"
    );

    let _ = node.shoal(&["mesh", "reset", "--pin-dir", &pins.to_string_lossy()]);
}
