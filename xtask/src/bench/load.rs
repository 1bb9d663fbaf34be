//! The load generators, run in the client namespace: `wrk --latency` (HTTP keep-alive
//! requests per second, p50, p99) and `iperf3 -J` (one TCP stream's Gbit/s), each
//! bounded in time, and the parsers of what they print.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::topology::{checked_output, first_lines, output, Ns, Topology};

/// wrk's threads and connections.
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 32;
/// A run may take this much longer than asked before it is killed.
const GRACE: Duration = Duration::from_secs(15);
/// More failed requests than this share make a wrk run fail.
const MAX_ERROR_SHARE: f64 = 0.001;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpResult {
    pub requests_per_sec: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// How wrk and iperf3 are run, for the table's heading.
pub fn describe(seconds: u32) -> String {
    format!(
        "wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s --latency (HTTP/1.1 keep-alive), \
         iperf3 -t {seconds} (1 TCP stream)"
    )
}

/// `wrk --latency` against `http://addr:port/` from the client for `seconds`.
pub fn wrk(topo: &Topology, addr: Ipv4Addr, port: u16, seconds: u32) -> Result<HttpResult> {
    let url = format!("http://{addr}:{port}/");
    let mut cmd = topo.command(Ns::Client, limit(seconds), "wrk");
    cmd.arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{seconds}s"))
        .args(["--latency", "--timeout", "2s", &url]);
    let out = checked_output(&mut cmd)?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout)).with_context(|| format!("wrk against {url}"))
}

/// `iperf3 -c addr -p port -t seconds -J` from the client: received Gbit/s.
pub fn iperf3(topo: &Topology, addr: Ipv4Addr, port: u16, seconds: u32) -> Result<f64> {
    let mut cmd = topo.command(Ns::Client, limit(seconds), "iperf3");
    cmd.args(["-c", &addr.to_string(), "-p", &port.to_string()])
        .args([
            "-t",
            &seconds.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ]);
    // iperf3 -J reports its own errors in the JSON, with a non-zero exit.
    let out = output(&mut cmd)?;
    let json = String::from_utf8_lossy(&out.stdout);
    if json.trim().is_empty() {
        bail!(
            "iperf3 to {addr}:{port} printed nothing ({}): {}",
            out.status,
            first_lines(&out.stderr)
        );
    }
    parse_iperf3(&json).with_context(|| format!("iperf3 to {addr}:{port}"))
}

fn limit(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds)) + GRACE
}

/// Requests/sec, the 50% and 99% latencies, and the error counts of wrk's report.
fn parse_wrk(text: &str) -> Result<HttpResult> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut requests = None;
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(value)) => rps = value.parse::<f64>().ok(),
            (Some("50%"), Some(value)) => p50 = parse_latency_ns(value),
            (Some("99%"), Some(value)) => p99 = parse_latency_ns(value),
            (Some(count), Some("requests")) => requests = count.parse::<u64>().ok(),
            _ => {}
        }
        if let Some(counts) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            errors += counts
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += count.trim().parse::<u64>().unwrap_or(u64::MAX);
        }
    }
    let (Some(requests_per_sec), Some(p50_ns), Some(p99_ns), Some(requests)) =
        (rps, p50, p99, requests)
    else {
        bail!("cannot read requests/sec, 50% and 99% latency from wrk's output:\n{text}");
    };
    if requests == 0 {
        bail!("wrk completed no request");
    }
    if errors as f64 > requests as f64 * MAX_ERROR_SHARE {
        bail!("wrk saw {errors} failed requests out of {requests}");
    }
    Ok(HttpResult {
        requests_per_sec,
        p50_ns,
        p99_ns,
    })
}

/// wrk's latency, `172.00us`, `1.15ms`, `2.01s`, `1.00m`, in nanoseconds.
fn parse_latency_ns(value: &str) -> Option<u64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

/// The receiver's throughput in Gbit/s from `iperf3 -J`, or iperf3's own error.
fn parse_iperf3(json: &str) -> Result<f64> {
    let report: serde_json::Value =
        serde_json::from_str(json).context("iperf3 -J printed no JSON")?;
    if let Some(error) = report.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {error}");
    }
    let bits = report
        .pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .context("no end.sum_received.bits_per_second in iperf3's report")?;
    Ok(bits / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "\
Running 2s test @ http://127.0.0.1:18080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.39ms    2.95ms  36.79ms   89.64%
    Req/Sec    39.92k    22.39k   66.64k    42.50%
  Latency Distribution
     50%  172.00us
     75%    1.15ms
     90%    4.47ms
     99%   13.37ms
  159556 requests in 2.04s, 22.82MB read
Requests/sec:  78248.59
Transfer/sec:     11.19MB
";

    #[test]
    fn reads_rate_and_percentiles_from_wrk() {
        let result = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(
            result,
            HttpResult {
                requests_per_sec: 78248.59,
                p50_ns: 172_000,
                p99_ns: 13_370_000,
            }
        );
    }

    #[test]
    fn a_wrk_run_with_failed_requests_fails() {
        let with_errors = WRK_OUTPUT.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 200, write 0, timeout 3\nRequests/sec:",
        );
        let err = parse_wrk(&with_errors).unwrap_err().to_string();
        assert!(err.contains("203 failed requests out of 159556"), "{err}");
        let non_2xx = WRK_OUTPUT.replace(
            "Requests/sec:",
            "  Non-2xx or 3xx responses: 159556\nRequests/sec:",
        );
        assert!(parse_wrk(&non_2xx).is_err());
        // A handful of read errors at the end of a run is noise, not a failure.
        let few = WRK_OUTPUT.replace(
            "Requests/sec:",
            "  Socket errors: connect 0, read 12, write 0, timeout 0\nRequests/sec:",
        );
        assert!(parse_wrk(&few).is_ok());
    }

    #[test]
    fn wrk_output_without_percentiles_is_an_error() {
        assert!(parse_wrk("unable to connect to 198.18.0.2:8080 Connection refused").is_err());
    }

    #[test]
    fn latencies_in_every_unit() {
        assert_eq!(parse_latency_ns("172.00us"), Some(172_000));
        assert_eq!(parse_latency_ns("1.15ms"), Some(1_150_000));
        assert_eq!(parse_latency_ns("2.01s"), Some(2_010_000_000));
        assert_eq!(parse_latency_ns("1.00m"), Some(60_000_000_000));
        assert_eq!(parse_latency_ns("12"), None);
        assert_eq!(parse_latency_ns("3.0xs"), None);
    }

    #[test]
    fn iperf3_throughput_and_errors() {
        let ok = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":15.2e9},
                     "sum_received":{"bits_per_second":15.1e9}}}"#;
        assert!((parse_iperf3(ok).unwrap() - 15.1).abs() < 1e-9);
        let failed =
            r#"{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}"#;
        let err = parse_iperf3(failed).unwrap_err().to_string();
        assert!(err.contains("Connection refused"), "{err}");
        assert!(parse_iperf3("not json").is_err());
    }
}
