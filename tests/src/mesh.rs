//! Fixtures for the routing-mesh scenarios: a replica that serves every kind
//! of traffic the mesh carries, and small clients for it that run in a host
//! with python3.

use crate::Host;

/// Each replica serves:
/// - HTTP on 80: `GET /` answers `task=<id> client=<ip>:<port>`, `GET /big`
///   the same line followed by 200 KB of `x`;
/// - on 81, a TCP stream of one numbered line (`<task> <n>`) every 100 ms;
/// - on 82, a line echo (`<task> <line>`) for as long as the client stays;
/// - on 90/udp, an echo: the answer is `task=<id> client=<ip>:<port> len=<n>`
///   padded with `x` to the request's own size.
///
/// Every HTTP request is logged to stdout (`request from <ip>:<port>`).
pub const SERVER: &str = r#"
import os, socket, socketserver, sys, threading, time, http.server
TASK = os.environ["SHOAL_TASK_ID"]
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("task=%s client=%s:%d\n" % (TASK, *self.client_address)).encode()
        if self.path == "/big":
            body += b"x" * 200000 + b"\n"
        print("request from %s:%d" % self.client_address, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Ticker(socketserver.BaseRequestHandler):
    def handle(self):
        n = 0
        while True:
            self.request.sendall(("%s %d\n" % (TASK, n)).encode())
            n += 1
            time.sleep(0.1)
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(("%s %s" % (TASK, line.decode())).encode())
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 90))
    while True:
        data, peer = s.recvfrom(65535)
        head = ("task=%s client=%s:%d len=%d " % (TASK, *peer, len(data))).encode()
        s.sendto(head + b"x" * max(0, len(data) - len(head)), peer)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=socketserver.ThreadingTCPServer(("0.0.0.0", 81), Ticker).serve_forever, daemon=True).start()
threading.Thread(target=socketserver.ThreadingTCPServer(("0.0.0.0", 82), Echo).serve_forever, daemon=True).start()
socketserver.ThreadingTCPServer(("0.0.0.0", 80), Web).serve_forever()
"#;

/// A replica that answers `GET` on port 80 with only `task=<id>`: for the
/// tests that count which task answered, not who asked.
pub const TASK_SERVER: &str = r#"
import os, http.server
TASK = os.environ["SHOAL_TASK_ID"]
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("task=%s\n" % TASK).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), Web).serve_forever()
"#;

/// The `task=` and `client=` (address only) fields of an answer.
pub fn parse_answer(answer: &str) -> Option<(String, String)> {
    let mut task = None;
    let mut from = None;
    for field in answer.split_whitespace() {
        if let Some(t) = field.strip_prefix("task=") {
            task = Some(t.to_string());
        } else if let Some(c) = field.strip_prefix("client=") {
            from = Some(c.split(':').next().unwrap_or_default().to_string());
        }
    }
    Some((task?, from?))
}

/// Runs a python3 script in `host`; its stdout and stderr, and whether it
/// exited 0.
pub fn python(host: &Host, script: &str) -> (bool, String) {
    match host.exec("python3", &["-c", script]) {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run python3 in {}: {e}", host.name())),
    }
}

/// One HTTP GET from `host` with curl (3 s budget); the body, if any.
pub fn curl(host: &Host, url: &str) -> Option<String> {
    let out = host.exec("curl", &["-s", "-f", "-m", "3", url]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The page `client` gets from `http://node:port/` with curl (3 s budget),
/// trimmed, if curl succeeds (any HTTP status).
pub fn page(client: &Host, node: &Host, port: u16) -> Option<String> {
    let url = format!("http://{}:{port}/", node.addr());
    let out = client.exec("curl", &["-s", "-m", "3", &url]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Where the mesh tests' agents serve their metrics, in each host.
pub const METRICS: &str = "127.0.0.1:9323";

/// The routing mesh's counters of the agent in `host` (started with
/// `--metrics-addr` [`METRICS`]): `shoal_mesh_<name>_total` by name.
pub fn mesh_counters(host: &Host) -> std::collections::BTreeMap<String, u64> {
    let url = format!("http://{METRICS}/metrics");
    let text = curl(host, &url).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("shoal_mesh_")?;
            let (name, value) = rest.split_once(' ')?;
            let name = name.strip_suffix("_total")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}
