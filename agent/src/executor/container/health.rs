//! Health checks as Docker runs them: a probe every interval inside the
//! container (its namespaces, user and limits, through `runc exec`),
//! killed after its timeout; `retries` failures in a row make the task
//! unhealthy, one success healthy; failures during the start period do not
//! count. The state is what the task loop reads (and, later, what decides
//! whether the mesh publishes the task).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::HealthCheck;

/// Where a container's health stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

/// A probe's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Exit 0.
    Passed(String),
    /// Another exit code, or the probe could not run.
    Failed(String),
    TimedOut,
}

/// A container's health, as Docker's `State.Health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// The last probe's output (bounded), for `inspect`.
    pub last_output: String,
    pub probes: u64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            last_output: String::new(),
            probes: 0,
        }
    }
}

impl Health {
    /// Folds one probe result in. `in_start_period`: the container is
    /// still within its start period.
    pub fn record(&mut self, result: ProbeResult, in_start_period: bool, retries: u32) {
        self.probes += 1;
        match result {
            ProbeResult::Passed(output) => {
                self.status = HealthStatus::Healthy;
                self.failing_streak = 0;
                self.last_output = output;
            }
            failed => {
                self.last_output = match failed {
                    ProbeResult::Failed(output) => output,
                    _ => "the health check timed out".into(),
                };
                // Docker: failures while still starting, within the start
                // period, are not counted.
                if in_start_period && self.status == HealthStatus::Starting {
                    return;
                }
                self.failing_streak += 1;
                if self.failing_streak >= retries.max(1) {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
    }
}

/// A thread probing one container until dropped.
pub struct HealthMonitor {
    state: Arc<Mutex<Health>>,
    stop: Arc<AtomicBool>,
}

/// How often the monitor checks whether it should stop while it waits.
const TICK: Duration = Duration::from_millis(50);

impl HealthMonitor {
    /// Starts probing with `probe` (the probe's argv and timeout in, its
    /// result out). `started` is when the container started (the start
    /// period counts from it). The thread ends when the monitor is
    /// dropped or `probe` says the container is gone (`None`).
    pub fn start<P>(
        name: &str,
        check: HealthCheck,
        started: Instant,
        probe: P,
    ) -> std::io::Result<HealthMonitor>
    where
        P: Fn(&[String], Duration) -> Option<ProbeResult> + Send + 'static,
    {
        let state = Arc::new(Mutex::new(Health::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("health-{name}"))
            .spawn(move || {
                let mut next = Instant::now() + check.interval;
                loop {
                    while Instant::now() < next {
                        if thread_stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(
                            TICK.min(next.saturating_duration_since(Instant::now())),
                        );
                    }
                    if thread_stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(result) = probe(&check.probe, check.timeout) else {
                        return;
                    };
                    let in_start = started.elapsed() < check.start_period;
                    thread_state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(result, in_start, check.retries);
                    next = Instant::now() + check.interval;
                }
            })?;
        Ok(HealthMonitor { state, stop })
    }

    pub fn health(&self) -> Health {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy() {
        let mut h = Health::default();
        h.record(ProbeResult::Failed("x".into()), false, 3);
        h.record(ProbeResult::TimedOut, false, 3);
        assert_eq!(h.status, HealthStatus::Starting);
        assert_eq!(h.failing_streak, 2);
        h.record(ProbeResult::Failed("x".into()), false, 3);
        assert_eq!(h.status, HealthStatus::Unhealthy);
        h.record(ProbeResult::Passed("ok".into()), false, 3);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        assert_eq!(h.probes, 4);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_healthy_once() {
        let mut h = Health::default();
        for _ in 0..5 {
            h.record(ProbeResult::Failed("booting".into()), true, 1);
        }
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        h.record(ProbeResult::Passed(String::new()), true, 1);
        assert_eq!(h.status, HealthStatus::Healthy);
        // Once healthy, a failure counts even inside the start period.
        h.record(ProbeResult::Failed("down".into()), true, 1);
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert_eq!(h.last_output, "down");
    }

    #[test]
    fn the_monitor_probes_every_interval_until_dropped() {
        let check = HealthCheck {
            probe: vec!["true".into()],
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(1),
            start_period: Duration::ZERO,
            retries: 1,
        };
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = calls.clone();
        let monitor = HealthMonitor::start("t", check, Instant::now(), move |_, _| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Some(if n < 2 {
                ProbeResult::Passed(String::new())
            } else {
                ProbeResult::Failed("no".into())
            })
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while monitor.health().status != HealthStatus::Unhealthy {
            assert!(
                Instant::now() < deadline,
                "never unhealthy: {:?}",
                monitor.health()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(monitor);
        std::thread::sleep(Duration::from_millis(100));
        let after = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(calls.load(Ordering::SeqCst), after, "probing stopped");
    }
}
