//! The two printed tables: ingress paths side by side (medians over rounds, spread,
//! ratios to direct), and the time to apply one service change.

use std::fmt::Write;

use super::ingress::Ingress;
use super::load::HttpResult;
use super::stats::{median, spread};
use super::updates::UpdateRow;

/// What one round measured on one path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub http: HttpResult,
    pub gbit_per_sec: f64,
}

/// Every round's result on one path.
#[derive(Debug, Default)]
pub struct PathResults {
    pub samples: Vec<Sample>,
    /// The last error, shown if no round succeeded.
    pub error: Option<String>,
}

/// The medians of one path over its successful rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    rps: f64,
    rps_spread: f64,
    p50_ns: f64,
    p99_ns: f64,
    gbit: f64,
    gbit_spread: f64,
    rounds: usize,
}

impl PathResults {
    fn summary(&self) -> Option<Summary> {
        let rps: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.http.requests_per_sec)
            .collect();
        let gbit: Vec<f64> = self.samples.iter().map(|s| s.gbit_per_sec).collect();
        let p50: Vec<f64> = self.samples.iter().map(|s| s.http.p50_ns as f64).collect();
        let p99: Vec<f64> = self.samples.iter().map(|s| s.http.p99_ns as f64).collect();
        Some(Summary {
            rps: median(&rps)?,
            rps_spread: spread(&rps)?,
            p50_ns: median(&p50)?,
            p99_ns: median(&p99)?,
            gbit: median(&gbit)?,
            gbit_spread: spread(&gbit)?,
            rounds: self.samples.len(),
        })
    }
}

/// The first table; `results` in `Ingress::ALL` order.
pub fn paths_table(results: &[(Ingress, PathResults)], rounds: usize) -> String {
    let direct = results
        .iter()
        .find(|(ingress, _)| *ingress == Ingress::Direct)
        .and_then(|(_, r)| r.summary());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>13} {:>9} {:>9} {:>12}   vs direct (rps / p99 / Gbit/s)",
        "path", "req/s", "p50", "p99", "Gbit/s"
    );
    for (ingress, result) in results {
        let _ = write!(out, "{:<10} ", ingress.name());
        let Some(s) = result.summary() else {
            let why = result.error.as_deref().unwrap_or("not measured");
            let _ = writeln!(out, "n/a ({why})");
            continue;
        };
        let _ = write!(
            out,
            "{:>13} {:>9} {:>9} {:>12}   ",
            format!("{:.0} ±{:.0}%", s.rps, s.rps_spread * 100.0),
            latency(s.p50_ns),
            latency(s.p99_ns),
            format!("{:.2} ±{:.0}%", s.gbit, s.gbit_spread * 100.0),
        );
        match direct {
            Some(d) => {
                let _ = write!(
                    out,
                    "{} / {} / {}",
                    ratio(s.rps, d.rps),
                    ratio(s.p99_ns, d.p99_ns),
                    ratio(s.gbit, d.gbit)
                );
            }
            None => out.push_str("n/a (direct not measured)"),
        }
        if s.rounds < rounds {
            let _ = write!(
                out,
                "  ({} of {rounds} rounds; last error: {})",
                s.rounds,
                result.error.as_deref().unwrap_or("?")
            );
        }
        out.push('\n');
    }
    out
}

/// The second table.
pub fn updates_table(rows: &[UpdateRow], changes: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:>24} {:>18} {:>18} {:>18}",
        "services", "iptables-restore (N+1)", "nft add element", "ebpf (shoal)", "ebpf ns/packet"
    );
    let mut notes = Vec::new();
    for row in rows {
        let mut cell = |value: Result<String, &String>| match value {
            Ok(text) => text,
            Err(why) => {
                if !notes.contains(why) {
                    notes.push(why.clone());
                }
                format!(
                    "n/a [{}]",
                    notes.iter().position(|n| n == why).unwrap_or(0) + 1
                )
            }
        };
        let ipt = cell(row.iptables_ns.as_ref().map(|ns| duration(*ns)));
        let nft = cell(row.nftables_ns.as_ref().map(|ns| duration(*ns)));
        let ebpf = cell(row.ebpf.as_ref().map(|m| duration(m.update_ns)));
        let per_packet = cell(
            row.ebpf
                .as_ref()
                .map(|m| format!("{:.0} ns", m.test_run_ns_per_packet)),
        );
        let _ = writeln!(
            out,
            "{:<9} {:>24} {:>18} {:>18} {:>18}",
            row.services, ipt, nft, ebpf, per_packet
        );
    }
    let _ = writeln!(
        out,
        "(iptables and nft: median wall time of {changes} changes, one process each; \
         ebpf: as `shoal mesh bench --services N` reports it; \
         ns/packet: BPF_PROG_TEST_RUN)"
    );
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(out, "[{}] {note}", i + 1);
    }
    out
}

/// `a / b` as `0.97x`.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

/// A latency in ns as `394us` or `1.20ms`.
fn latency(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.0}us", ns / 1e3)
    } else {
        format!("{:.2}ms", ns / 1e6)
    }
}

/// A duration in ns as `850 ns`, `12.3 us`, `4.9 ms` or `1.32 s`.
fn duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::super::mesh::MeshBench;
    use super::*;

    fn sample(rps: f64, p99_ms: u64, gbit: f64) -> Sample {
        Sample {
            http: HttpResult {
                requests_per_sec: rps,
                p50_ns: 400_000,
                p99_ns: p99_ms * 1_000_000,
            },
            gbit_per_sec: gbit,
        }
    }

    #[test]
    fn paths_are_compared_with_direct() {
        let results = vec![
            (
                Ingress::Direct,
                PathResults {
                    samples: vec![sample(40_000.0, 2, 15.0), sample(40_000.0, 2, 15.0)],
                    error: None,
                },
            ),
            (
                Ingress::Ebpf,
                PathResults {
                    samples: vec![],
                    error: Some("shoal mesh unavailable: unrecognized subcommand 'mesh'".into()),
                },
            ),
            (
                Ingress::Nftables,
                PathResults {
                    samples: vec![sample(30_000.0, 3, 12.0), sample(30_000.0, 3, 12.0)],
                    error: None,
                },
            ),
        ];
        let table = paths_table(&results, 2);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("direct"), "{table}");
        assert!(lines[1].contains("1.00x / 1.00x / 1.00x"), "{table}");
        assert!(lines[1].contains("40000 ±0%"), "{table}");
        assert_eq!(
            lines[2],
            "ebpf       n/a (shoal mesh unavailable: unrecognized subcommand 'mesh')"
        );
        assert!(lines[3].contains("0.75x / 1.50x / 0.80x"), "{table}");
        assert!(lines[3].contains("3.00ms"), "{table}");
        assert!(lines[3].contains("400us"), "{table}");
    }

    #[test]
    fn update_failures_become_numbered_notes() {
        let why = "shoal mesh unavailable: unrecognized subcommand 'mesh'".to_string();
        let rows = vec![
            UpdateRow {
                services: 1000,
                iptables_ns: Ok(85_200_000.0),
                nftables_ns: Ok(4_900_000.0),
                ebpf: Err(why.clone()),
            },
            UpdateRow {
                services: 10000,
                iptables_ns: Ok(1_320_000_000.0),
                nftables_ns: Ok(5_100_000.0),
                ebpf: Ok(MeshBench {
                    services: 10000,
                    update_ns: 2_400.0,
                    test_run_ns_per_packet: 38.0,
                }),
            },
        ];
        let table = updates_table(&rows, 5);
        assert!(table.contains("85.2 ms"), "{table}");
        assert!(table.contains("1.32 s"), "{table}");
        assert!(table.contains("2.4 us"), "{table}");
        assert!(table.contains("38 ns"), "{table}");
        assert_eq!(table.matches("n/a [1]").count(), 2, "{table}");
        assert!(table.contains(&format!("[1] {why}")), "{table}");
    }
}
