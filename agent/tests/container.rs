//! The `container` runtime against the real kernel and real runc: images
//! built here with umoci from busybox-static, pulled from a real
//! docker-registry or loaded from a `docker save` tarball; containers in a
//! network namespace of the test's own with Docker's rules and isolation,
//! limits, mounts, stop signals, OOM kills, health checks and adoption by
//! a new runtime (an agent restart). Needs root, runc, umoci, skopeo,
//! docker-registry, busybox-static and tini.

mod support;

use std::time::{Duration, Instant};

use shoal_agent::executor::container::{HealthConfig, Mount};
use shoal_agent::executor::{ContainerConfig, Exit, HealthStatus, ProcessState, Runtime};
use support::container::Fixture;
use support::registry::{busybox_image, ImageSpec, Registry};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn pulls_and_runs_with_dockers_process_rules_in_the_sandbox() {
    let fx = Fixture::new();
    let image = busybox_image(
        fx.dir.path(),
        "rules",
        &ImageSpec {
            entrypoint: s(&["/bin/sh", "-c"]),
            cmd: s(&["echo from-image-cmd"]),
            env: s(&["FROM_IMAGE=1", "SHARED=image"]),
            workdir: Some("/home/app".into()),
            ..ImageSpec::default()
        },
    );
    let registry = Registry::start();
    let reference = registry.push(&image, "rules:1", false);

    // The image's Entrypoint and Cmd, pulled on first use.
    let launch = fx.launch("defaults", &reference, &[], ContainerConfig::default());
    let (exit, out) = fx.run(&launch);
    assert_eq!(exit, Exit::Code(0), "stderr: {}", fx.stderr("defaults"));
    assert_eq!(out, "from-image-cmd\n");
    assert!(fx.images.find(&reference).is_ok(), "pulled into the store");

    // Args replace Cmd; Env merges; the hostname, files and netns are the task's.
    let script = "echo env=$FROM_IMAGE,$SHARED,$TASK_ONLY; echo host=$(hostname),$HOSTNAME; \
                  echo pwd=$(pwd); cat /etc/hostname; cat /etc/resolv.conf; grep web-1 /etc/hosts; \
                  echo ns=$(readlink /proc/self/ns/net); echo uid=$(id -u)";
    let mut launch = fx.launch(
        "args",
        &reference,
        &[],
        ContainerConfig {
            args: s(&[script]),
            hostname: "web-1".into(),
            addresses: vec!["10.0.1.5".parse().unwrap()],
            ..ContainerConfig::default()
        },
    );
    launch.env = s(&["SHARED=service", "TASK_ONLY=yes"]);
    let (exit, out) = fx.run(&launch);
    assert_eq!(exit, Exit::Code(0), "stderr: {}", fx.stderr("args"));
    assert!(out.contains("env=1,service,yes\n"), "{out}");
    assert!(out.contains("host=web-1,web-1\n"), "{out}");
    assert!(out.contains("pwd=/home/app\n"), "{out}");
    assert!(out.contains("web-1\nnameserver 10.0.9.53\n"), "{out}");
    assert!(out.contains("10.0.1.5\tweb-1"), "{out}");
    assert!(
        out.contains(&format!("ns=net:[{}]", fx.netns_inode())),
        "the sandbox's netns: {out}"
    );
    assert!(out.contains("uid=0\n"), "{out}");

    // Command replaces Entrypoint and drops the image's Cmd.
    let launch = fx.launch(
        "command",
        &reference,
        &["/bin/echo", "replaced"],
        ContainerConfig::default(),
    );
    assert_eq!(fx.run(&launch).1, "replaced\n");
    let launch = fx.launch(
        "missing",
        &reference,
        &["/bin/nope"],
        ContainerConfig::default(),
    );
    let err = fx.rt().start(&launch).unwrap_err().to_string();
    assert!(
        err.contains("/bin/nope"),
        "runc's reason reaches the error: {err}"
    );
}

#[test]
fn users_resolve_through_the_images_passwd_and_group() {
    let fx = Fixture::new();
    let image = fx.image(
        "users",
        &ImageSpec {
            user: Some("app".into()),
            ..ImageSpec::default()
        },
    );
    let launch = fx.launch(
        "image-user",
        &image,
        &["/bin/id"],
        ContainerConfig::default(),
    );
    let (_, out) = fx.run(&launch);
    // Docker's supplementary groups: those listing the user (busybox's
    // `id` shows getgroups(2) alone).
    assert_eq!(out.trim(), "uid=1000(app) gid=1000(app) groups=2000(extra)");
    let launch = fx.launch(
        "override",
        &image,
        &["/bin/id"],
        ContainerConfig {
            user: Some("nobody:extra".into()),
            ..ContainerConfig::default()
        },
    );
    assert_eq!(
        fx.run(&launch).1.trim(),
        "uid=65534(nobody) gid=2000(extra)"
    );
    let launch = fx.launch(
        "ghost",
        &image,
        &["/bin/id"],
        ContainerConfig {
            user: Some("ghost".into()),
            ..ContainerConfig::default()
        },
    );
    let err = fx.rt().start(&launch).unwrap_err().to_string();
    assert!(err.contains("unable to find user ghost"), "{err}");
}

const ISOLATION_SCRIPT: &str = r#"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
test -e "$STATE_DIR" && echo "state=visible" || echo "state=hidden"
test -e "$SOCKET" && echo "socket=visible" || echo "socket=hidden"
test -e /run/netns && echo "netns=visible" || echo "netns=hidden"
mount -t tmpfs none /mnt 2>&1 && echo "mount=ok" || echo "mount=denied"
insmod /bin/busybox 2>&1; echo "insmod=$?"
unshare -m true 2>&1; echo "unshare-mnt=$?"
unshare -U -r true 2>&1; echo "unshare-user=$?"
unshare -n true 2>&1; echo "unshare-net=$?"
hostname evil 2>&1; echo "sethostname=$?"
echo "hostname=$(hostname)"
echo 1 > /proc/sys/kernel/domainname 2>&1; echo "procsys=$?"
echo "keys=$(wc -c < /proc/keys)"
grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status
( i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done ) 2>/tmp/fork.err
set -- /proc/[0-9]*; echo "sleeps=$#"
for p in /proc/[0-9]*; do read c < $p/comm; [ "$c" = sleep ] && kill ${p#/proc/}; done 2>/dev/null
sleep 0.5
echo "forkerrors=$(grep -c -i -E 'fork|resource' /tmp/fork.err)"
echo done
"#;

/// Runs the isolation script as the container's own process and checks
/// every escape it tries fails.
#[test]
fn isolation_seen_from_inside_the_container() {
    let fx = Fixture::new();
    let image = fx.image(
        "iso",
        &ImageSpec {
            files: vec![("/isolation.sh".into(), ISOLATION_SCRIPT.into())],
            ..ImageSpec::default()
        },
    );
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // A socket standing for the agent's, in a protected directory.
    let run = fx.dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let socket = run.join("shoal.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut launch = fx.launch(
        "iso",
        &image,
        &["/bin/sh", "/isolation.sh"],
        ContainerConfig {
            hostname: "iso-task".into(),
            pids_limit: 20,
            ..ContainerConfig::default()
        },
    );
    launch.env = vec![
        format!("STATE_DIR={}", fx.opts.state_dir.display()),
        format!("SOCKET={}", socket.display()),
    ];
    fx.rt().start(&launch).expect("starts");
    fx.wait_for_output("iso", "done");
    let out = fx.stdout("iso");
    let line = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {out}"))
            .trim()
            .to_string()
    };
    let procs: usize = line("procs").parse().unwrap();
    assert!(
        procs <= 4,
        "sees only its own processes, not the host's: {procs}\n{out}"
    );
    assert_eq!(line("state"), "hidden");
    assert_eq!(line("socket"), "hidden");
    assert_eq!(line("netns"), "hidden");
    assert_eq!(line("mount"), "denied");
    assert_ne!(line("insmod"), "0", "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert_ne!(line("unshare-mnt"), "0");
    assert_ne!(line("unshare-user"), "0");
    assert_ne!(line("unshare-net"), "0");
    assert_ne!(line("sethostname"), "0");
    assert_eq!(line("hostname"), "iso-task");
    assert_ne!(line("procsys"), "0", "/proc/sys is read-only");
    assert_eq!(line("keys"), "0", "/proc/keys is masked");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    // Docker's 14 default capabilities, and no more in the bounding set.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    let sleeps: usize = line("sleeps").parse().unwrap();
    assert!(
        sleeps <= 20,
        "the pids limit holds: {sleeps} processes\n{out}"
    );
    assert_ne!(
        line("forkerrors"),
        "0",
        "forks beyond the limit failed: {out}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_hostname
    );
    fx.rt().stop("iso", Duration::from_secs(1)).unwrap();
}

#[test]
fn memory_limit_oom_is_reported_and_limits_land_in_the_cgroup() {
    let fx = Fixture::new();
    let image = fx.image("oom", &ImageSpec::default());
    let mut launch = fx.launch(
        "oom",
        &image,
        &["/bin/sh", "-c", "sleep 1; tail /dev/zero"],
        ContainerConfig::default(),
    );
    launch.limit_memory = 32 << 20;
    launch.limit_nano_cpus = 500_000_000;
    fx.rt().start(&launch).expect("starts");
    let (file, limit) = fx
        .cgroup_file("oom", &["memory.max", "memory.limit_in_bytes"])
        .expect("a memory limit file");
    assert_eq!(limit, (32u64 << 20).to_string(), "{file}");
    let (file, quota) = fx
        .cgroup_file("oom", &["cpu.max", "cpu.cfs_quota_us"])
        .expect("a cpu file");
    assert!(quota.starts_with("50000"), "{file}: {quota}");
    let exit = fx.wait_exit("oom");
    assert_eq!(exit, Exit::OomKilled);
    assert_eq!(exit.code(), Some(137));
}

#[test]
fn stop_sends_the_stop_signal_then_kills_after_the_grace() {
    let fx = Fixture::new();
    let image = fx.image(
        "stop",
        &ImageSpec {
            stop_signal: Some("SIGUSR1".into()),
            ..ImageSpec::default()
        },
    );
    // The image's StopSignal, handled.
    let launch = fx.launch(
        "graceful",
        &image,
        &[
            "/bin/sh",
            "-c",
            "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.1; done",
        ],
        ContainerConfig::default(),
    );
    fx.rt().start(&launch).unwrap();
    fx.wait_for_output("graceful", "ready");
    fx.rt().stop("graceful", Duration::from_secs(10)).unwrap();
    assert_eq!(fx.wait_exit("graceful"), Exit::Code(3));
    assert!(fx.stdout("graceful").contains("got-usr1"));

    // A process that ignores it is killed once the grace is over.
    let launch = fx.launch(
        "stubborn",
        &image,
        &[
            "/bin/sh",
            "-c",
            "trap '' USR1 TERM; echo ready; while true; do sleep 0.1; done",
        ],
        ContainerConfig {
            stop_signal: Some("TERM".into()),
            ..ContainerConfig::default()
        },
    );
    fx.rt().start(&launch).unwrap();
    fx.wait_for_output("stubborn", "ready");
    let started = Instant::now();
    fx.rt().stop("stubborn", Duration::from_secs(1)).unwrap();
    let took = started.elapsed();
    assert_eq!(fx.wait_exit("stubborn"), Exit::Signal(libc::SIGKILL));
    assert!(
        took >= Duration::from_secs(1),
        "the grace was honoured: {took:?}"
    );
}

#[test]
fn a_restarted_runtime_adopts_running_containers_and_still_learns_their_exit() {
    let mut fx = Fixture::new();
    let image = fx.image("adopt", &ImageSpec::default());
    let launch = fx.launch(
        "adopted",
        &image,
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 7' TERM; echo up; while true; do sleep 0.1; done",
        ],
        ContainerConfig::default(),
    );
    let pid = fx.rt().start(&launch).unwrap();
    fx.wait_for_output("adopted", "up");
    fx.restart();
    assert_eq!(fx.rt().tasks(), vec!["adopted"]);
    assert_eq!(
        fx.rt().state("adopted"),
        Some(ProcessState::Running { pid }),
        "not restarted"
    );
    assert!(
        fx.images.remove(&image, false).is_err(),
        "its image stays in use"
    );
    assert!(
        fx.stdout("adopted").contains("up"),
        "its logs are still read"
    );
    fx.rt().stop("adopted", Duration::from_secs(10)).unwrap();
    assert_eq!(
        fx.wait_exit("adopted"),
        Exit::Code(7),
        "the shim recorded the exit"
    );
    fx.rt().remove("adopted").unwrap();
    assert!(!fx.task_dir("adopted").exists());
    assert!(
        fx.images.remove(&image, false).is_ok(),
        "released with the task"
    );
}

#[test]
fn a_failing_health_check_turns_the_task_unhealthy() {
    let fx = Fixture::new();
    let image = fx.image("health", &ImageSpec::default());
    // The probe fails once the test drops a file into a bound directory.
    let control = fx.dir.path().join("health-control");
    std::fs::create_dir_all(&control).unwrap();
    let launch = fx.launch(
        "health",
        &image,
        &["/bin/sleep", "600"],
        ContainerConfig {
            healthcheck: Some(HealthConfig {
                test: s(&["CMD-SHELL", "test ! -e /control/fail"]),
                interval: Some(Duration::from_millis(300)),
                timeout: Some(Duration::from_secs(10)),
                retries: Some(2),
                ..HealthConfig::default()
            }),
            mounts: vec![Mount::Bind {
                source: control.clone(),
                target: "/control".into(),
                read_only: true,
            }],
            ..ContainerConfig::default()
        },
    );
    fx.rt().start(&launch).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = fx.rt().health("health").expect("a health check");
        if seen.last() != Some(&health.status) {
            seen.push(health.status);
        }
        if health.status == HealthStatus::Healthy && !control.join("fail").exists() {
            std::fs::write(control.join("fail"), "").unwrap();
        }
        if health.status == HealthStatus::Unhealthy {
            assert!(health.failing_streak >= 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never unhealthy: {seen:?} {health:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        seen,
        vec![
            HealthStatus::Starting,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy
        ]
    );
    // The task itself still runs: replacing it is the task loop's call.
    assert!(matches!(
        fx.rt().state("health"),
        Some(ProcessState::Running { .. })
    ));
}

#[test]
fn read_only_root_tmpfs_volumes_binds_and_init() {
    let fx = Fixture::new();
    let image = fx.image(
        "mounts",
        &ImageSpec {
            files: vec![("/seed/hello".into(), "from-image\n".into())],
            ..ImageSpec::default()
        },
    );
    let host_dir = fx.dir.path().join("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "hi\n").unwrap();
    let container = |mounts: Vec<Mount>| ContainerConfig {
        read_only: true,
        init: true,
        mounts,
        ..ContainerConfig::default()
    };
    let mounts = vec![
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: 1 << 20,
            mode: None,
        },
        Mount::Volume {
            name: "data".into(),
            target: "/data".into(),
            read_only: false,
        },
        Mount::Volume {
            name: "seeded".into(),
            target: "/seed".into(),
            read_only: true,
        },
        Mount::Bind {
            source: host_dir.clone(),
            target: "/host".into(),
            read_only: true,
        },
    ];
    let script = "touch /rootfile 2>/dev/null && echo root=rw || echo root=ro; \
                  echo x > /scratch/f && echo scratch=rw; echo kept > /data/f; cat /host/from-host; \
                  touch /host/new 2>/dev/null && echo bind=rw || echo bind=ro; \
                  echo pid1=$(cat /proc/1/comm); cat /seed/hello";
    let launch = fx.launch(
        "m1",
        &image,
        &["/bin/sh", "-c", script],
        container(mounts.clone()),
    );
    let (exit, out) = fx.run(&launch);
    assert_eq!(exit, Exit::Code(0), "{}", fx.stderr("m1"));
    assert!(out.contains("root=ro\n"), "{out}");
    assert!(out.contains("scratch=rw\n"), "{out}");
    assert!(out.contains("hi\n"), "{out}");
    assert!(out.contains("bind=ro\n"), "{out}");
    assert!(out.contains("pid1=docker-init"), "tini is PID 1: {out}");
    assert!(
        out.contains("from-image\n"),
        "a new volume gets the image's content: {out}"
    );
    // The named volume outlives the task and is shared.
    let launch = fx.launch("m2", &image, &["/bin/cat", "/data/f"], container(mounts));
    assert_eq!(fx.run(&launch).1, "kept\n");
    assert_eq!(fx.rt().volumes().list(), vec!["data", "seeded"]);
    // The agent's own directories are never bound in.
    let launch = fx.launch(
        "sneaky",
        &image,
        &["/bin/true"],
        container(vec![Mount::Bind {
            source: fx.dir.path().to_path_buf(),
            target: "/agent".into(),
            read_only: true,
        }]),
    );
    let err = fx.rt().start(&launch).unwrap_err().to_string();
    assert!(err.contains("belongs to the agent"), "{err}");
    // Removing a task leaves nothing mounted.
    let rootfs = fx.task_dir("m1").join("rootfs");
    fx.rt().remove("m1").unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&rootfs.display().to_string()));
}

/// RSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()))
        .unwrap_or(0)
}

/// Figures for the report, not a pass/fail check: the time `start` takes
/// for a container (image on the node) and for a process-runtime task, and
/// what a running container costs the node beside the agent (its shim).
/// `cargo test -p shoal-agent --test container -- --ignored --nocapture figures`
#[test]
#[ignore]
fn figures_start_overhead_and_memory() {
    use shoal_agent::executor::{cgroup2_mount, Launch, ProcessRuntime};
    const N: usize = 10;
    let fx = Fixture::new();
    let image = fx.image("figures", &ImageSpec::default());
    let mut container_times = Vec::new();
    let mut pids = Vec::new();
    let agent_before = rss_kib(std::process::id());
    for i in 0..N {
        let launch = fx.launch(
            &format!("c{i}"),
            &image,
            &["/bin/sleep", "600"],
            ContainerConfig::default(),
        );
        let started = Instant::now();
        pids.push(fx.rt().start(&launch).unwrap());
        container_times.push(started.elapsed());
    }
    let agent_after = rss_kib(std::process::id());
    let shims: Vec<u64> = pids.iter().map(|p| rss_kib(parent_of(*p))).collect();
    let cgroup_name = format!("shoal-fig-{}", std::process::id());
    let cgroup_root = cgroup2_mount().unwrap().join(&cgroup_name);
    let process = ProcessRuntime::new(fx.dir.path().join("process"), cgroup_root.clone()).unwrap();
    let mut process_times = Vec::new();
    for i in 0..N {
        let launch = Launch {
            task_id: format!("p{i}"),
            command: s(&["sleep", "600"]),
            env: vec![],
            netns: fx.netns.clone(),
            resolv_conf: "nameserver 10.0.9.53\n".into(),
            limit_nano_cpus: 0,
            limit_memory: 0,
            container: None,
            secrets: Vec::new(),
            configs: Vec::new(),
        };
        let started = Instant::now();
        process.start(&launch).unwrap();
        process_times.push(started.elapsed());
    }
    for i in 0..N {
        let _ = process.remove(&format!("p{i}"));
    }
    for mount in support::container::cgroup_mounts() {
        let _ = std::fs::remove_dir(mount.join(&cgroup_name));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "FIGURE start (median of {N}): container {:?}, process {:?}",
        median(&mut container_times),
        median(&mut process_times)
    );
    eprintln!(
        "FIGURE per running container: shim RSS {} KiB (mean of {N}); agent-process RSS grew {} KiB for {N} containers",
        shims.iter().sum::<u64>() / N as u64,
        agent_after.saturating_sub(agent_before)
    );
}
