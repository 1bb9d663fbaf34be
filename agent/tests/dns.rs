//! The embedded DNS server bound inside a real network namespace, asked from
//! inside it by `dig` and by glibc (`getent` with a task-style resolv.conf),
//! forwarding to a fake upstream on the host's loopback. Needs root and
//! `dig` (apt package dnsutils). Each test makes its own namespace, named
//! after the test process, and removes it even when it fails.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use shoal_agent::dns::{DnsEntry, DnsError, DnsServer, DnsServerConfig, DnsTable};
use shoal_agent::netns::NetnsDir;
use shoal_tests::require_root;
use tempfile::TempDir;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const NETWORK: &str = "net-dns";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
/// What the fake upstream answers for every name.
const UPSTREAM_ANSWER: &str = "192.0.2.7";

/// A network namespace in a temporary directory, removed on drop.
struct NetnsGuard {
    dir: NetnsDir,
    name: String,
    tmp: TempDir,
}

impl NetnsGuard {
    fn new() -> Self {
        require_root();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "shoal-dns-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let tmp = TempDir::new().expect("temp dir for the netns");
        let dir = NetnsDir::new(tmp.path().join("netns"));
        dir.create(&name)
            .expect("create the test's network namespace");
        NetnsGuard { dir, name, tmp }
    }

    fn path(&self) -> PathBuf {
        self.dir.path(&self.name)
    }

    /// Runs `program` inside the namespace and returns its stdout; panics
    /// with its stderr when it fails.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = nsenter(&self.path(), program, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} in {}: {}\n{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Brings up loopback and a veth pair, one end holding the gateway
    /// address, the way the overlay puts the gateway on its bridge. (A veth,
    /// not a dummy: the dummy module may not be loadable where tests run.)
    fn with_gateway(self) -> Self {
        self.run("ip", &["link", "set", "lo", "up"]);
        self.run(
            "ip",
            &[
                "link", "add", "dns0", "type", "veth", "peer", "name", "dns1",
            ],
        );
        self.run(
            "ip",
            &["addr", "add", &format!("{GATEWAY}/24"), "dev", "dns0"],
        );
        self.run("ip", &["link", "set", "dns0", "up"]);
        self.run("ip", &["link", "set", "dns1", "up"]);
        self
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.dir.remove(&self.name) {
            eprintln!("cannot remove test netns {}: {e}", self.name);
        }
    }
}

fn nsenter(ns: &Path, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", ns.display()))
        .arg("--")
        .arg(program)
        .args(args);
    command
}

fn require_dig() {
    let found = Command::new("dig").arg("-v").output().is_ok();
    assert!(
        found,
        "this test asks the server with `dig`: install dnsutils (`cargo xtask install-deps`)"
    );
}

/// A nameserver on the host's loopback answering every question with an A
/// record of 192.0.2.7; stopped on drop.
struct FakeUpstream {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeUpstream {
    async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("upstream socket");
        let addr = socket.local_addr().expect("upstream addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(question) = query.queries.first() else {
                    continue;
                };
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                reply.add_query(question.clone());
                let ip: Ipv4Addr = UPSTREAM_ANSWER.parse().expect("answer address");
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(ip)),
                ));
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, from).await;
                }
            }
        });
        FakeUpstream { addr, task }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn entry(service: &str, vip: Option<&str>, task: &str, ip: &str) -> DnsEntry {
    DnsEntry {
        network: NETWORK.into(),
        service: service.into(),
        vip: vip.map(|v| v.parse().expect("vip")),
        task: task.into(),
        ip: ip.parse().expect("task ip"),
    }
}

/// `web` (VIP 10.9.0.2, tasks .3 and .4) and `db` (dnsrr, task .5) on our
/// network; `other` only on another network.
fn table() -> DnsTable {
    DnsTable::from_entries([
        entry("web", Some("10.9.0.2"), "web.1.t1", "10.9.0.3"),
        entry("web", Some("10.9.0.2"), "web.2.t2", "10.9.0.4"),
        entry("db", None, "db.1.t3", "10.9.0.5"),
        DnsEntry {
            network: "net-elsewhere".into(),
            ..entry("other", Some("10.9.0.50"), "other.1.t4", "10.9.0.51")
        },
    ])
    .with_subnet(NETWORK, "10.9.0.0/24".parse().expect("subnet"))
}

/// `dig` inside the namespace against the gateway, `+short` lines sorted.
/// Blocking: run from `spawn_blocking`.
fn dig_short(ns: &NetnsGuard, args: &[&str]) -> Vec<String> {
    let server = format!("@{GATEWAY}");
    let mut all = vec![server.as_str(), "+short", "+tries=1", "+time=3"];
    all.extend_from_slice(args);
    let mut lines: Vec<String> = ns.run("dig", &all).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The `status:` and answer count of a full `dig` reply.
fn dig_status(ns: &NetnsGuard, args: &[&str]) -> (String, String) {
    let server = format!("@{GATEWAY}");
    let mut all = vec![server.as_str(), "+tries=1", "+time=3"];
    all.extend_from_slice(args);
    let out = ns.run("dig", &all);
    let field = |key: &str| {
        out.split(key)
            .nth(1)
            .and_then(|rest| rest.split([',', ' ', '\n']).next())
            .unwrap_or_else(|| panic!("no {key} in dig output:\n{out}"))
            .to_string()
    };
    (field("status: "), field("ANSWER: "))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_server_in_a_namespace_answers_dig_and_glibc() {
    require_dig();
    let ns = Arc::new(NetnsGuard::new().with_gateway());
    let upstream = FakeUpstream::start().await;
    let (tables, rx) = watch::channel(Arc::new(table()));
    let config = DnsServerConfig::new(
        NETWORK,
        Some(ns.path()),
        SocketAddrV4::new(GATEWAY, 53),
        vec![upstream.addr],
    );
    let server = DnsServer::start(config, rx)
        .await
        .expect("server binds in the namespace");
    assert_eq!(server.local_addr(), SocketAddrV4::new(GATEWAY, 53));

    let ns2 = Arc::clone(&ns);
    blocking(move || {
        let ns = &*ns2;
        assert_eq!(dig_short(ns, &["web"]), ["10.9.0.2"]);
        assert_eq!(dig_short(ns, &["WEB."]), ["10.9.0.2"]);
        assert_eq!(dig_short(ns, &["tasks.web"]), ["10.9.0.3", "10.9.0.4"]);
        assert_eq!(
            dig_short(ns, &["+tcp", "tasks.web"]),
            ["10.9.0.3", "10.9.0.4"]
        );
        assert_eq!(
            dig_short(ns, &["db"]),
            ["10.9.0.5"],
            "dnsrr: the task itself"
        );
        assert_eq!(
            dig_status(ns, &["web", "AAAA"]),
            ("NOERROR".into(), "0".into())
        );
        assert_eq!(dig_short(ns, &["-x", "10.9.0.2"]), ["web."]);
        assert_eq!(dig_short(ns, &["-x", "10.9.0.4"]), ["web.2.t2."]);
        assert_eq!(
            dig_status(ns, &["-x", "10.9.0.99"]),
            ("NXDOMAIN".into(), "0".into())
        );
        // Not ours: forwarded to the host's loopback, from the host's namespace.
        assert_eq!(dig_short(ns, &["example.test"]), [UPSTREAM_ANSWER]);
        assert_eq!(
            dig_short(ns, &["other"]),
            [UPSTREAM_ANSWER],
            "other's network only"
        );

        // What a task's libc sees with the resolv.conf the executor writes:
        // AAAA first (empty), then A.
        let resolv = ns.tmp.path().join("resolv.conf");
        fs::write(&resolv, format!("nameserver {GATEWAY}\noptions ndots:0\n"))
            .expect("write resolv.conf");
        let getent = |args: &str| {
            let script = format!(
                "mount --bind {} /etc/resolv.conf && getent {args}",
                resolv.display()
            );
            ns.run("unshare", &["--mount", "sh", "-c", &script])
        };
        let hosts = getent("hosts web");
        assert_eq!(
            hosts.split_whitespace().collect::<Vec<_>>(),
            ["10.9.0.2", "web"]
        );
        let mut task_ips: Vec<String> = getent("ahostsv4 tasks.web")
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        task_ips.sort();
        task_ips.dedup();
        assert_eq!(task_ips, ["10.9.0.3", "10.9.0.4"]);
    })
    .await;

    // A new table reaches the next query.
    tables.send_replace(Arc::new(DnsTable::from_entries([entry(
        "web",
        Some("10.9.0.20"),
        "web.1.t9",
        "10.9.0.21",
    )])));
    let ns2 = Arc::clone(&ns);
    blocking(move || {
        assert_eq!(dig_short(&ns2, &["web"]), ["10.9.0.20"]);
        assert_eq!(dig_short(&ns2, &["tasks.web"]), ["10.9.0.21"]);
        assert_eq!(
            dig_short(&ns2, &["db"]),
            [UPSTREAM_ANSWER],
            "db left the table"
        );
    })
    .await;

    server.stop().await;
    let ns2 = Arc::clone(&ns);
    let after_stop = blocking(move || {
        let server = format!("@{GATEWAY}");
        nsenter(&ns2.path(), "dig", &[&server, "+tries=1", "+time=1", "web"])
            .output()
            .expect("run dig")
    })
    .await;
    assert!(
        !after_stop.status.success(),
        "a stopped server still answered"
    );
}

#[tokio::test]
async fn dns_server_bind_outside_the_namespace_addresses_is_refused() {
    let ns = NetnsGuard::new().with_gateway();
    let (_tables, rx) = watch::channel(Arc::new(table()));
    let missing = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 77), 53);
    let config = DnsServerConfig::new(NETWORK, Some(ns.path()), missing, vec![]);
    match DnsServer::start(config, rx).await {
        Err(error @ DnsError::Bind { .. }) => {
            let message = error.to_string();
            assert!(message.contains("10.9.0.77:53"), "{message}");
            assert!(message.contains(&ns.name), "{message}");
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("bound an address the namespace does not have"),
    }
}
