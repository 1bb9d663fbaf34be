//! The backend's servers: nginx answering `200 ok` on port 80 from a config file of
//! the run's own (never the system's), and `iperf3 -s` on 5201. Both are killed with
//! the backend namespace.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::topology::{Ns, Topology, BACKEND_ADDR, SHORT};

pub const HTTP_PORT: u16 = 80;
pub const IPERF_PORT: u16 = 5201;
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Starts nginx and iperf3 in the backend and waits until the client gets answers.
pub fn start(topo: &mut Topology) -> Result<()> {
    let dir = topo.run_dir().join("nginx");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir.display().to_string()))
        .with_context(|| format!("cannot write {}", conf.display()))?;
    let (conf, dir) = (conf.display().to_string(), dir.display().to_string());
    let error_log = format!("{dir}/error.log");
    topo.start_server(
        Ns::Backend,
        "nginx",
        &[
            "-c",
            &conf,
            "-p",
            &dir,
            "-e",
            &error_log,
            "-g",
            "daemon off;",
        ],
    )?;
    topo.start_server(
        Ns::Backend,
        "iperf3",
        &["-s", "-p", &IPERF_PORT.to_string()],
    )?;

    wait_for(READY_WITHIN, || http_ok(topo, BACKEND_ADDR, HTTP_PORT)).with_context(|| {
        format!("nginx does not answer on {BACKEND_ADDR}:{HTTP_PORT} (see {error_log})")
    })?;
    let port_filter = format!("sport = :{IPERF_PORT}");
    wait_for(READY_WITHIN, || {
        topo.run(Ns::Backend, SHORT, "ss", &["-Hltn", &port_filter])
            .is_ok_and(|out| !out.stdout.is_empty())
    })
    .with_context(|| format!("iperf3 does not listen on {BACKEND_ADDR}:{IPERF_PORT}"))?;
    Ok(())
}

/// Whether `GET http://addr:port/` from the client answers 200 within a second.
pub fn http_ok(topo: &Topology, addr: impl std::fmt::Display, port: u16) -> bool {
    let url = format!("http://{addr}:{port}/");
    topo.run(
        Ns::Client,
        SHORT,
        "curl",
        &["-sf", "-o", "/dev/null", "--max-time", "1", &url],
    )
    .is_ok()
}

/// Polls `ready` every 100 ms until it holds or `within` has passed.
pub fn wait_for(within: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("not ready after {}s", within.as_secs());
        }
        sleep(Duration::from_millis(100));
    }
}

/// nginx as a fast static responder: no logs, keep-alive without a request limit,
/// temp paths inside `dir`.
fn nginx_conf(dir: &str) -> String {
    format!(
        "worker_processes auto;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    server {{
        listen {HTTP_PORT} reuseport;
        default_type text/plain;
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
"
    )
}
