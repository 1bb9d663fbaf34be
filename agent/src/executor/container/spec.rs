//! The OCI runtime spec (`config.json`) the agent writes for runc, with
//! Docker's default isolation: new PID, mount, UTS, IPC and cgroup
//! namespaces and the task's sandbox as the network namespace; Docker's
//! capabilities (effective only for root), its seccomp profile resolved
//! for this container, `no_new_privs`, masked and read-only /proc paths,
//! its device allow-list, its /dev, /dev/shm, /sys and cgroup mounts;
//! the task's resolv.conf, hosts and hostname files; the limits.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::process::ProcessPlan;

/// Docker's masked paths (moby `oci/defaults.go`).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The CFS period, as Docker uses it.
const CPU_PERIOD_US: u64 = 100_000;

/// A mount from the host into the container, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMount {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        size: u64,
        mode: Option<u32>,
    },
}

/// Everything a spec is made of.
#[derive(Clone, Debug)]
pub struct SpecInput<'a> {
    pub plan: &'a ProcessPlan,
    pub caps: &'a [String],
    pub seccomp: Value,
    pub hostname: &'a str,
    pub netns: &'a Path,
    /// runc's `cgroupsPath`, e.g. `/shoal/<task>`.
    pub cgroups_path: &'a str,
    pub read_only: bool,
    pub limit_nano_cpus: u64,
    pub limit_memory: u64,
    pub pids_limit: i64,
    pub resolv_conf: &'a Path,
    pub hosts: &'a Path,
    pub hostname_file: &'a Path,
    /// The init binary mounted at `/sbin/docker-init`, with `--init`.
    pub init: Option<&'a Path>,
    pub mounts: &'a [HostMount],
}

fn device(kind: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> Value {
    let mut d = json!({"allow": true, "type": kind, "access": access});
    if let Some(major) = major {
        d["major"] = json!(major);
    }
    if let Some(minor) = minor {
        d["minor"] = json!(minor);
    }
    d
}

/// Docker's device cgroup rules: nothing but the usual character devices.
fn devices() -> Vec<Value> {
    vec![
        json!({"allow": false, "access": "rwm"}),
        device("c", None, None, "m"),
        device("b", None, None, "m"),
        device("c", Some(1), Some(3), "rwm"),
        device("c", Some(1), Some(8), "rwm"),
        device("c", Some(1), Some(7), "rwm"),
        device("c", Some(5), Some(0), "rwm"),
        device("c", Some(1), Some(5), "rwm"),
        device("c", Some(1), Some(9), "rwm"),
        device("c", Some(136), None, "rwm"),
        device("c", Some(5), Some(2), "rwm"),
        device("c", Some(10), Some(200), "rwm"),
    ]
}

fn bind(source: &Path, target: &str, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate", "nosuid", "nodev"];
    if read_only {
        options.push("ro");
    }
    json!({"destination": target, "type": "bind", "source": source, "options": options})
}

/// Docker's standard mounts, then the task's files and mounts.
fn mounts(input: &SpecInput<'_>) -> Vec<Value> {
    let mut all = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    // Docker leaves these three writable (they are the container's own
    // copies) unless the root is read-only.
    all.push(bind(input.resolv_conf, "/etc/resolv.conf", input.read_only));
    all.push(bind(input.hostname_file, "/etc/hostname", input.read_only));
    all.push(bind(input.hosts, "/etc/hosts", input.read_only));
    if let Some(init) = input.init {
        all.push(
            json!({"destination": super::process::INIT_PATH, "type": "bind", "source": init,
                        "options": ["bind", "ro", "nosuid", "nodev"]}),
        );
    }
    for mount in input.mounts {
        all.push(match mount {
            HostMount::Bind {
                source,
                target,
                read_only,
            } => bind(source, target, *read_only),
            HostMount::Tmpfs { target, size, mode } => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
                if *size > 0 {
                    options.push(format!("size={size}"));
                }
                options.push(format!("mode={:o}", mode.unwrap_or(0o1777)));
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        });
    }
    all
}

fn resources(input: &SpecInput<'_>) -> Value {
    let mut resources = json!({"devices": devices()});
    if input.limit_memory > 0 {
        // No swap on top of the limit: memory+swap is the limit itself.
        resources["memory"] = json!({"limit": input.limit_memory, "swap": input.limit_memory});
    }
    if input.limit_nano_cpus > 0 {
        let quota = (input.limit_nano_cpus / (1_000_000_000 / CPU_PERIOD_US)).max(1_000);
        resources["cpu"] = json!({"quota": quota, "period": CPU_PERIOD_US});
    }
    if input.pids_limit > 0 {
        resources["pids"] = json!({"limit": input.pids_limit});
    }
    resources
}

/// The whole `config.json`, its root the bundle's `rootfs`.
pub fn runtime_spec(input: &SpecInput<'_>) -> Value {
    let plan = input.plan;
    // Docker gives a non-root user the bounding set only: it gains
    // capabilities through file capabilities or setuid, not by default.
    let running_as_root = plan.user.uid == 0;
    let granted: &[String] = if running_as_root { input.caps } else { &[] };
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": plan.user.uid,
                "gid": plan.user.gid,
                "additionalGids": plan.user.additional_gids,
            },
            "args": plan.args,
            "env": plan.env,
            "cwd": plan.cwd,
            "capabilities": {
                "bounding": input.caps,
                "effective": granted,
                "permitted": granted,
            },
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": input.read_only},
        "hostname": input.hostname,
        "mounts": mounts(input),
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
                {"type": "network", "path": input.netns},
            ],
            "cgroupsPath": input.cgroups_path,
            "resources": resources(input),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": input.seccomp,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::container::caps;
    use crate::executor::container::seccomp;
    use crate::executor::container::user::ResolvedUser;

    fn plan(uid: u32) -> ProcessPlan {
        ProcessPlan {
            args: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: ResolvedUser {
                uid,
                gid: uid,
                additional_gids: vec![2000],
                home: None,
            },
            stop_signal: 15,
            health: None,
        }
    }

    fn spec_for(plan: &ProcessPlan, mounts: &[HostMount], read_only: bool) -> Value {
        let caps = caps::resolve(&[], &[]).unwrap();
        let input = SpecInput {
            plan,
            caps: &caps,
            seccomp: seccomp::profile(&caps, &seccomp::Target::current()),
            hostname: "web-1",
            netns: Path::new("/run/shoal/netns/t1"),
            cgroups_path: "/shoal/t1",
            read_only,
            limit_nano_cpus: 500_000_000,
            limit_memory: 64 << 20,
            pids_limit: 100,
            resolv_conf: Path::new("/state/t1/resolv.conf"),
            hosts: Path::new("/state/t1/hosts"),
            hostname_file: Path::new("/state/t1/hostname"),
            init: Some(Path::new("/usr/bin/tini-static")),
            mounts,
        };
        runtime_spec(&input)
    }

    #[test]
    fn namespaces_are_dockers_with_the_sandbox_netns() {
        let spec = spec_for(&plan(0), &[], false);
        let ns: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, vec!["pid", "ipc", "uts", "mount", "cgroup", "network"]);
        assert_eq!(
            spec["linux"]["namespaces"][5]["path"],
            "/run/shoal/netns/t1"
        );
        assert_eq!(spec["hostname"], "web-1");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["process"]["terminal"], false);
        assert_eq!(spec["linux"]["cgroupsPath"], "/shoal/t1");
    }

    #[test]
    fn root_gets_effective_caps_others_only_bounding() {
        let spec = spec_for(&plan(0), &[], false);
        assert_eq!(
            spec["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        let spec = spec_for(&plan(1000), &[], false);
        assert!(spec["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .is_empty());
        assert!(spec["process"]["capabilities"]["permitted"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(spec["process"]["user"]["additionalGids"][0], 2000);
    }

    #[test]
    fn limits_and_devices() {
        let spec = spec_for(&plan(0), &[], false);
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["pids"]["limit"], 100);
        assert_eq!(r["devices"][0]["allow"], false);
        assert!(spec["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore"));
        assert!(spec["linux"]["readonlyPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/sys"));
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn mounts_include_task_files_init_and_user_mounts() {
        let user = [
            HostMount::Bind {
                source: "/srv/data".into(),
                target: "/data".into(),
                read_only: true,
            },
            HostMount::Tmpfs {
                target: "/cache".into(),
                size: 1 << 20,
                mode: Some(0o700),
            },
        ];
        let spec = spec_for(&plan(0), &user, true);
        let mounts = spec["mounts"].as_array().unwrap();
        let find = |dest: &str| {
            mounts
                .iter()
                .find(|m| m["destination"] == dest)
                .cloned()
                .unwrap()
        };
        assert_eq!(find("/etc/resolv.conf")["source"], "/state/t1/resolv.conf");
        assert!(find("/etc/hosts")["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "ro"));
        assert_eq!(find("/sbin/docker-init")["source"], "/usr/bin/tini-static");
        assert!(find("/data")["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "ro"));
        let cache = find("/cache");
        assert_eq!(cache["type"], "tmpfs");
        assert!(cache["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "size=1048576"));
        assert!(cache["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "mode=700"));
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(find("/dev/shm")["type"], "tmpfs");
    }
}
