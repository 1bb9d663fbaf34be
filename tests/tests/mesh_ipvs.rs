//! `shoal agent --mesh ipvs` on a kernel without IPVS (this development
//! kernel has none; the VM lab, `cargo xtask vm-test --mesh ipvs`, runs the
//! IPVS mesh for real): the agent refuses to start, at once, with a message
//! that names the alternative.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this kernel can have IPVS (built in, or as a module to load).
fn kernel_has_ipvs() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    std::path::Path::new("/proc/net/ip_vs").exists()
        || std::path::Path::new(&format!(
            "/lib/modules/{}/kernel/net/netfilter/ipvs",
            release.trim()
        ))
        .exists()
}

#[test]
fn an_ipvs_mesh_without_ipvs_in_the_kernel_is_refused_naming_the_ebpf_mesh() {
    if kernel_has_ipvs() {
        eprintln!("skipped: this kernel has IPVS (the VM lab tests the IPVS mesh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut child = Command::new(shoal_tests::shoal_bin())
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["agent", "--mesh", "ipvs", "--state-dir"])
        .arg(dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run shoal: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`shoal agent --mesh ipvs` kept running on a kernel without IPVS");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("output: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "the agent started: {stderr}");
    assert!(
        stderr.contains("no IPVS") && stderr.contains("--mesh ebpf"),
        "the refusal does not say what to do: {stderr}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "the agent made its state before refusing"
    );
}
