//! The bench's three network namespaces, `shoal-bench-<pid>-{client,node,backend}`:
//! client 198.18.0.1 —veth— (eth0) 198.18.0.2 node 198.19.1.1 (vb0) —veth— 198.19.1.2
//! backend. The node forwards; the client reaches 198.19.1.0/24 through it, and the
//! backend's default route is the node, so replies to DNATed traffic cross it again.
//! Commands run in a namespace with `nsenter --net` (bpffs stays visible), each bounded
//! by `timeout`.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};

use super::teardown::{self, Plan};
use crate::run;

pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The node's address on the client side: where published ports are reached.
pub const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NODE_BACKEND_SIDE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
pub const BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);
const CLIENT_PREFIX_LEN: u8 = 24;
const BACKEND_NET: &str = "198.19.1.0/24";
/// The node's interface toward the client (the mesh's underlay).
pub const NODE_UNDERLAY_IFACE: &str = "eth0";
/// The node's interface toward the backend (the mesh's link).
pub const NODE_BACKEND_IFACE: &str = "vb0";
/// The client's and the backend's only interface.
const PEER_IFACE: &str = "eth0";
const NETNS_DIR: &str = "/run/netns";
/// Bound on the plumbing commands (`ip`, `sysctl`, `nft`...).
pub const SHORT: Duration = Duration::from_secs(20);

/// One of the three namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Client,
    Node,
    Backend,
}

impl Ns {
    const ALL: [Ns; 3] = [Ns::Client, Ns::Node, Ns::Backend];

    fn suffix(self) -> &'static str {
        match self {
            Ns::Client => "client",
            Ns::Node => "node",
            Ns::Backend => "backend",
        }
    }
}

/// The namespaces of one run; dropping it removes them, with everything in them.
pub struct Topology {
    prefix: String,
    run_dir: PathBuf,
    servers: Vec<Child>,
}

impl Topology {
    /// Builds the namespaces, links, addresses and routes, and checks that the client
    /// reaches the backend through the node.
    pub fn create() -> Result<Self> {
        let prefix = format!("{}bench-{}", shoal_tests::NAME_PREFIX, std::process::id());
        let topo = Topology {
            run_dir: Path::new(shoal_tests::RUN_ROOT).join(&prefix),
            prefix,
            servers: Vec::new(),
        };
        teardown::register(Plan {
            prefix: topo.prefix.clone(),
            node_netns: topo.netns_path(Ns::Node),
            mesh_applied_by: None,
        })?;
        // From here on, `topo`'s Drop removes whatever exists.
        std::fs::create_dir_all(&topo.run_dir)
            .with_context(|| format!("cannot create {}", topo.run_dir.display()))?;
        topo.plumb()?;
        Ok(topo)
    }

    fn plumb(&self) -> Result<()> {
        for ns in Ns::ALL {
            self.host(["ip", "netns", "add", &self.netns_name(ns)])?;
            self.ip(ns, &["link", "set", "lo", "up"])?;
        }
        let node = self.netns_name(Ns::Node);
        let (client, backend) = (self.netns_name(Ns::Client), self.netns_name(Ns::Backend));
        self.host([
            "ip",
            "-n",
            &node,
            "link",
            "add",
            NODE_UNDERLAY_IFACE,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IFACE,
            "netns",
            &client,
        ])?;
        self.host([
            "ip",
            "-n",
            &node,
            "link",
            "add",
            NODE_BACKEND_IFACE,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IFACE,
            "netns",
            &backend,
        ])?;
        let addrs = [
            (Ns::Client, PEER_IFACE, CLIENT_ADDR),
            (Ns::Node, NODE_UNDERLAY_IFACE, NODE_ADDR),
            (Ns::Node, NODE_BACKEND_IFACE, NODE_BACKEND_SIDE_ADDR),
            (Ns::Backend, PEER_IFACE, BACKEND_ADDR),
        ];
        for (ns, iface, addr) in addrs {
            let cidr = format!("{addr}/{CLIENT_PREFIX_LEN}");
            self.ip(ns, &["addr", "add", &cidr, "dev", iface])?;
            self.ip(ns, &["link", "set", iface, "up"])?;
        }
        let via_node = NODE_ADDR.to_string();
        self.ip(Ns::Client, &["route", "add", BACKEND_NET, "via", &via_node])?;
        let via_node_b = NODE_BACKEND_SIDE_ADDR.to_string();
        self.ip(
            Ns::Backend,
            &["route", "add", "default", "via", &via_node_b],
        )?;
        self.run(Ns::Node, SHORT, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        let backend = BACKEND_ADDR.to_string();
        self.run(Ns::Client, SHORT, "ping", &["-c", "1", "-W", "2", &backend])
            .context("the client cannot ping the backend through the node")?;
        Ok(())
    }

    /// `shoal-bench-<pid>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A directory of this run's, removed with it.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn netns_name(&self, ns: Ns) -> String {
        format!("{}-{}", self.prefix, ns.suffix())
    }

    pub fn netns_path(&self, ns: Ns) -> PathBuf {
        Path::new(NETNS_DIR).join(self.netns_name(ns))
    }

    /// `nsenter --net=NS -- timeout -k 2 LIMIT prog`, stdin closed.
    pub fn command(&self, ns: Ns, limit: Duration, prog: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path(ns).display()))
            .args(["--", "timeout", "-k", "2"])
            .arg(limit.as_secs().max(1).to_string())
            .arg(prog.as_ref())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `prog args` in `ns` within `limit`; fails unless it exits 0, with its
    /// stderr in the error.
    pub fn run(&self, ns: Ns, limit: Duration, prog: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = self.command(ns, limit, prog);
        cmd.args(args);
        checked_output(&mut cmd)
    }

    /// Starts a long-running `prog args` in `ns` (no time limit); it is killed with
    /// the namespace at the end.
    pub fn start_server(&mut self, ns: Ns, prog: &str, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path(ns).display()))
            .arg("--")
            .arg(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = teardown::spawn(&mut cmd)?;
        self.servers.push(child);
        Ok(())
    }

    /// Runs `f` on a thread of its own that has entered `ns`: what it spawns starts
    /// in `ns` without the extra `nsenter` exec, for timing short commands.
    pub fn in_netns<T: Send>(&self, ns: Ns, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.netns_path(ns);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let shown = path.display().to_string();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("cannot enter {}", path.display()))?;
                    Ok(f())
                })
                .join()
                .map_err(|_| anyhow!("the thread working in {shown} panicked"))?
        })
    }

    /// The MAC address of the backend's interface, as `ip` prints it.
    pub fn backend_mac(&self) -> Result<String> {
        let out = self.run(
            Ns::Backend,
            SHORT,
            "ip",
            &["-br", "link", "show", PEER_IFACE],
        )?;
        // `eth0@if5  UP  b2:4e:...:9c <BROADCAST,...>`
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(2)
            .filter(|mac| mac.len() == 17 && mac.matches(':').count() == 5)
            .map(str::to_owned)
            .with_context(|| format!("no MAC address in `ip -br link show`: {text:?}"))
    }

    fn ip(&self, ns: Ns, args: &[&str]) -> Result<()> {
        self.run(ns, SHORT, "ip", args).map(|_| ())
    }

    /// A command outside the namespaces (creating them and their links).
    fn host<const N: usize>(&self, argv: [&str; N]) -> Result<()> {
        let (prog, args) = argv.split_first().context("empty command")?;
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "2"])
            .arg(SHORT.as_secs().to_string())
            .arg(prog)
            .args(args)
            .stdin(Stdio::null());
        checked_output(&mut cmd).map(|_| ())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        teardown::run_now();
        for server in &mut self.servers {
            // Killed with the namespace's processes; only reap it here.
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// Spawns `cmd` with captured output (through the teardown lock) and waits for it;
/// fails unless it exits 0. The error names the command and carries its stderr.
pub fn checked_output(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            run::display(cmd),
            out.status,
            first_lines(&out.stderr)
        );
    }
    Ok(out)
}

/// Spawns `cmd` with captured output (through the teardown lock) and waits for it,
/// whatever its exit status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = teardown::spawn(cmd)?;
    child
        .wait_with_output()
        .with_context(|| format!("cannot wait for `{}`", run::display(cmd)))
}

/// The first two non-empty lines of a command's stderr, for an error message.
pub fn first_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(2)
        .collect();
    if lines.is_empty() {
        "no output on stderr".into()
    } else {
        lines.join(" / ")
    }
}
