//! The `process` runtime against the real kernel: tasks run in a network
//! namespace of their own with a private resolv.conf, inside a cgroup holding
//! their limits; exits, logs, stop after a grace, OOM kills, and adoption by
//! a second runtime (an agent restart). Needs root. Each test makes its own
//! network namespace and cgroup root, and removes them even when it fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal_agent::executor::{
    cgroup2_mount, ExecutorError, Exit, Launch, ProcessRuntime, ProcessState, Runtime, Stream,
};
use shoal_agent::netns::NetnsDir;
use shoal_tests::require_root;
use tempfile::TempDir;

const RESOLV_CONF: &str = "nameserver 10.0.9.53\nsearch shoal.test\noptions ndots:0\n";
/// The longest any task of these tests is waited for.
const WAIT: Duration = Duration::from_secs(20);

/// A network namespace in a temporary directory, removed on drop.
struct NetnsGuard {
    dir: NetnsDir,
    name: String,
    _tmp: TempDir,
}

impl NetnsGuard {
    fn new(name: &str) -> Self {
        let tmp = TempDir::new().expect("temp dir for the netns");
        let dir = NetnsDir::new(tmp.path().join("netns"));
        dir.create(name)
            .expect("create the test's network namespace");
        NetnsGuard {
            dir,
            name: name.to_string(),
            _tmp: tmp,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path(&self.name)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.dir.remove(&self.name) {
            eprintln!("cannot remove test netns {}: {e}", self.name);
        }
    }
}

/// Every cgroup hierarchy's `<mount>/<name>`, killed and removed on drop.
struct CgroupRootGuard {
    name: String,
}

impl Drop for CgroupRootGuard {
    fn drop(&mut self) {
        let roots: Vec<PathBuf> = cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.name))
            .filter(|r| r.is_dir())
            .collect();
        let children = |root: &Path| -> Vec<PathBuf> {
            fs::read_dir(root)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()))
                .into_iter()
                .flatten()
                .filter(|p| p.is_dir())
                .collect()
        };
        for task in roots.iter().flat_map(|r| children(r)) {
            let _ = fs::write(task.join("cgroup.kill"), "1");
        }
        for dir in roots.iter().flat_map(|r| children(r)).chain(roots.clone()) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(&dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if dir.exists() {
                eprintln!("cannot remove test cgroup {}", dir.display());
            }
        }
    }
}

/// The mount points of every cgroup and cgroup2 filesystem.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter(|l| l.contains(" - cgroup2 ") || l.contains(" - cgroup "))
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

/// One test's runtime, namespace, cgroup root and state dir. Fields drop in
/// order: the runtime first, the directories last.
struct Fixture {
    rt: ProcessRuntime,
    cgroup_root: PathBuf,
    state: PathBuf,
    _cgroup: CgroupRootGuard,
    ns: NetnsGuard,
    _state_dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        require_root();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let state_dir = TempDir::new().expect("temp state dir");
        let ns = NetnsGuard::new(&format!("shoal-exec-{pid}-{n}"));
        let cgroup = CgroupRootGuard {
            name: format!("shoal-test-{pid}-{n}"),
        };
        let cgroup_root = cgroup2_mount()
            .expect("this host has no cgroup2 filesystem mounted")
            .join(&cgroup.name);
        let state = state_dir.path().join("tasks");
        let rt = ProcessRuntime::new(state.clone(), cgroup_root.clone()).expect("runtime opens");
        Fixture {
            rt,
            cgroup_root,
            state,
            _cgroup: cgroup,
            ns,
            _state_dir: state_dir,
        }
    }

    fn launch(&self, id: &str, command: &[&str]) -> Launch {
        Launch {
            task_id: id.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            netns: self.ns.path(),
            resolv_conf: RESOLV_CONF.to_string(),
            limit_nano_cpus: 0,
            limit_memory: 0,
            container: None,
            secrets: vec![],
            configs: vec![],
        }
    }

    /// Starts `command` and returns its exit and its stdout.
    fn run(&self, id: &str, command: &[&str]) -> (Exit, String) {
        self.rt
            .start(&self.launch(id, command))
            .expect("task starts");
        let exit = wait_exit(&self.rt, id);
        (exit, stdout(&self.rt, id))
    }

    /// A limit file of task `id` in whichever hierarchy has it.
    fn limit_file(&self, id: &str, v2: &str, v1: &str) -> (String, String) {
        let name = self.cgroup_root.file_name().expect("root has a name");
        for mount in cgroup_mounts() {
            for file in [v2, v1] {
                let path = mount.join(name).join(id).join(file);
                if let Ok(text) = fs::read_to_string(&path) {
                    return (file.to_string(), text.trim().to_string());
                }
            }
        }
        panic!("neither {v2} nor {v1} exists for task {id}");
    }
}

fn wait_exit(rt: &ProcessRuntime, id: &str) -> Exit {
    let deadline = Instant::now() + WAIT;
    loop {
        match rt.state(id) {
            Some(ProcessState::Exited(exit)) => return exit,
            Some(ProcessState::Running { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("task {id} did not exit within {WAIT:?}: {other:?}"),
        }
    }
}

fn stdout(rt: &ProcessRuntime, id: &str) -> String {
    let (bytes, _) = rt.logs(id, Stream::Stdout, 0, 1 << 20).expect("stdout");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits until the task has printed `needle`.
fn wait_for_output(rt: &ProcessRuntime, id: &str, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !stdout(rt, id).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "task {id} never printed {needle:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn task_runs_in_its_netns_and_sees_its_own_resolv_conf() {
    let fx = Fixture::new();
    let host_resolv = fs::read("/etc/resolv.conf").expect("host resolv.conf");

    let ns_inode = fs::metadata(fx.ns.path()).expect("netns file").ino();
    let (exit, out) = fx.run("netns", &["readlink", "/proc/self/ns/net"]);
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(out, format!("net:[{ns_inode}]\n"));
    let own = fs::read_link("/proc/self/ns/net").expect("own netns");
    assert_ne!(
        own.to_string_lossy(),
        out.trim(),
        "task must not share our netns"
    );

    // A fresh namespace holds only its loopback.
    let (_, dev) = fx.run("links", &["cat", "/proc/net/dev"]);
    let links: Vec<&str> = dev
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(links, vec!["lo"], "{dev}");

    let (exit, resolv) = fx.run("resolv", &["cat", "/etc/resolv.conf"]);
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(resolv, RESOLV_CONF);
    assert_eq!(
        fs::read("/etc/resolv.conf").expect("host resolv.conf"),
        host_resolv,
        "the host's resolv.conf must be untouched"
    );
}

/// A task's mount namespace (a private copy of the host's) does not keep
/// the namespaces that existed when it started: removing one unlinks its
/// mount point, and the kernel (3.18 on) then detaches the mounts on it in
/// every mount namespace. So a removed network's namespace, VXLAN device and
/// all, is gone while the task runs on.
#[test]
fn a_running_task_pins_no_removed_namespace() {
    let fx = Fixture::new();
    let other = fx.ns.dir.create("ov-pinned").expect("another namespace");
    let inode = fs::metadata(&other).expect("netns file").ino();
    let pid = fx
        .rt
        .start(&fx.launch("pinner", &["sleep", "60"]))
        .expect("task starts");
    let mounts = || fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let needle = format!("net:[{inode}]");
    assert!(
        mounts().contains(&needle),
        "the task should see the namespace while it exists"
    );
    fx.ns.dir.remove("ov-pinned").expect("remove");
    assert!(
        !mounts().contains(&needle),
        "the task still holds the removed namespace {needle}:\n{}",
        mounts()
    );
    // A namespace made after the task started leaves with its removal too.
    let later = fx.ns.dir.create("ov-later").expect("a later namespace");
    let later_inode = fs::metadata(&later).expect("netns file").ino();
    fx.ns.dir.remove("ov-later").expect("remove");
    assert!(!mounts().contains(&format!("net:[{later_inode}]")));
    // An agent stopped between unmounting a namespace and unlinking its
    // mount point: making the namespace again must not leave the task
    // holding the old one.
    let stale = fx.ns.dir.create("ov-stale").expect("a namespace");
    let stale_inode = fs::metadata(&stale).expect("netns file").ino();
    let task_pid = fx
        .rt
        .start(&fx.launch("pinner2", &["sleep", "60"]))
        .expect("task starts");
    let task_mounts =
        || fs::read_to_string(format!("/proc/{task_pid}/mountinfo")).expect("mountinfo");
    nix::mount::umount2(&stale, nix::mount::MntFlags::MNT_DETACH).expect("umount");
    assert!(task_mounts().contains(&format!("net:[{stale_inode}]")));
    fx.ns.dir.create("ov-stale").expect("made again");
    assert!(
        !task_mounts().contains(&format!("net:[{stale_inode}]")),
        "the task still holds the old namespace"
    );
    fx.ns.dir.remove("ov-stale").expect("remove");
    fx.rt
        .stop("pinner2", Duration::from_secs(5))
        .expect("stops");
    // The task's own resolv.conf mount never reached the host.
    let host = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!host.contains("/pinner/resolv.conf"), "{host}");
    assert_eq!(fx.rt.state("pinner"), Some(ProcessState::Running { pid }));
    fx.rt.stop("pinner", Duration::from_secs(5)).expect("stops");
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let fx = Fixture::new();
    assert_eq!(fx.run("three", &["sh", "-c", "exit 3"]).0, Exit::Code(3));
    assert_eq!(fx.run("zero", &["true"]).0, Exit::Code(0));
    let (exit, _) = fx.run("usr1", &["sh", "-c", "kill -USR1 $$"]);
    assert_eq!(exit, Exit::Signal(libc::SIGUSR1));
    assert_eq!(exit.code(), Some(128 + libc::SIGUSR1));

    // Starting a running task again is a no-op returning its pid.
    let launch = fx.launch("twice", &["sleep", "60"]);
    let pid = fx.rt.start(&launch).expect("starts");
    assert_eq!(fx.rt.start(&launch).expect("no-op"), pid);
    assert_eq!(fx.rt.state("twice"), Some(ProcessState::Running { pid }));
    fx.rt.stop("twice", Duration::from_secs(5)).expect("stops");
}

#[test]
fn env_is_the_minimal_one_plus_the_launch_env() {
    let fx = Fixture::new();
    let mut launch = fx.launch("env", &["env"]);
    launch.env = vec!["GREETING=hello world".into(), "EQ=a=b".into()];
    fx.rt.start(&launch).expect("starts");
    assert_eq!(wait_exit(&fx.rt, "env"), Exit::Code(0));
    let out = stdout(&fx.rt, "env");
    let mut vars: Vec<&str> = out.lines().collect();
    vars.sort();
    assert_eq!(
        vars,
        vec![
            "EQ=a=b",
            "GREETING=hello world",
            "HOME=/",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
        "the agent's own environment must not leak into tasks"
    );
}

#[test]
fn limits_land_in_the_task_cgroup_and_remove_deletes_it() {
    let fx = Fixture::new();
    let mut launch = fx.launch("limited", &["sleep", "60"]);
    launch.limit_nano_cpus = 500_000_000;
    launch.limit_memory = 64 << 20;
    let pid = fx.rt.start(&launch).expect("starts");

    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("task cgroups");
    let unified = cgroups
        .lines()
        .find(|l| l.starts_with("0::"))
        .expect("a cgroup2 line");
    assert!(
        fx.cgroup_root
            .join("limited")
            .ends_with(unified.trim_start_matches("0::/")),
        "task in {unified}, expected under {}",
        fx.cgroup_root.display()
    );
    match fx.limit_file("limited", "cpu.max", "cpu.cfs_quota_us") {
        (file, text) if file == "cpu.max" => assert_eq!(text, "50000 100000"),
        (_, quota) => assert_eq!(quota, "50000"),
    }
    let (_, memory) = fx.limit_file("limited", "memory.max", "memory.limit_in_bytes");
    assert_eq!(memory, (64u64 << 20).to_string());

    fx.rt.remove("limited").expect("removes a running task");
    assert_eq!(fx.rt.state("limited"), None);
    assert!(fx.rt.tasks().is_empty());
    assert!(
        !fx.cgroup_root.join("limited").exists(),
        "cgroup left behind"
    );
    assert!(!fx.state.join("limited").exists(), "task dir left behind");
    assert!(!is_running(pid), "task {pid} survived remove");
}

fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_memory_hog_beyond_its_limit_is_oom_killed() {
    let fx = Fixture::new();
    let mut launch = fx.launch(
        "hog",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    launch.limit_memory = 32 << 20;
    fx.rt.start(&launch).expect("starts");
    assert_eq!(wait_exit(&fx.rt, "hog"), Exit::Signal(libc::SIGKILL));
}

#[test]
fn stop_kills_a_task_that_ignores_sigterm_after_the_grace() {
    let fx = Fixture::new();
    let script = "trap '' TERM; echo ready; sleep 1000";
    fx.rt
        .start(&fx.launch("stubborn", &["sh", "-c", script]))
        .expect("starts");
    wait_for_output(&fx.rt, "stubborn", "ready");
    let grace = Duration::from_secs(1);
    let started = Instant::now();
    fx.rt.stop("stubborn", grace).expect("stops");
    let took = started.elapsed();
    assert!(took >= grace, "killed before the grace ended: {took:?}");
    assert!(took < grace + Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(
        fx.rt.state("stubborn"),
        Some(ProcessState::Exited(Exit::Signal(libc::SIGKILL)))
    );
    // The finished task's cgroup is empty, or already released.
    let procs = fx.cgroup_root.join("stubborn").join("cgroup.procs");
    assert_eq!(fs::read_to_string(procs).unwrap_or_default(), "");
}

#[test]
fn stop_of_a_task_that_obeys_sigterm_returns_at_once() {
    let fx = Fixture::new();
    fx.rt
        .start(&fx.launch("polite", &["sleep", "1000"]))
        .expect("starts");
    let started = Instant::now();
    fx.rt
        .stop("polite", Duration::from_secs(10))
        .expect("stops");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        fx.rt.state("polite"),
        Some(ProcessState::Exited(Exit::Signal(libc::SIGTERM)))
    );
}

#[test]
fn a_second_runtime_adopts_running_tasks_and_can_stop_them() {
    let fx = Fixture::new();
    let pid = fx
        .rt
        .start(&fx.launch("long", &["sh", "-c", "echo up; exec sleep 1000"]))
        .expect("starts");
    wait_for_output(&fx.rt, "long", "up");
    assert_eq!(fx.run("done", &["sh", "-c", "exit 4"]).0, Exit::Code(4));
    // A record whose pid now belongs to another process (ours): recycled.
    let ghost = fx.state.join("ghost");
    fs::create_dir_all(&ghost).expect("ghost dir");
    let record = format!(
        r#"{{"task_id":"ghost","pid":{},"start_time":1,"exit":null}}"#,
        std::process::id()
    );
    fs::write(ghost.join("task.json"), record).expect("ghost record");

    let again = ProcessRuntime::new(fx.state.clone(), fx.cgroup_root.clone()).expect("reopens");
    assert_eq!(again.tasks(), vec!["done", "ghost", "long"]);
    assert_eq!(again.state("long"), Some(ProcessState::Running { pid }));
    assert_eq!(
        again.state("done"),
        Some(ProcessState::Exited(Exit::Code(4)))
    );
    assert_eq!(
        again.state("ghost"),
        Some(ProcessState::Exited(Exit::Unknown))
    );
    assert_eq!(stdout(&again, "long"), "up\n");

    again.stop("long", Duration::from_secs(5)).expect("stops");
    assert!(matches!(again.state("long"), Some(ProcessState::Exited(_))));
    assert!(!is_running(pid), "adopted task {pid} still runs");
    again.remove("long").expect("removes");
    assert!(!fx.state.join("long").exists());
}

#[test]
fn logs_are_read_from_an_offset() {
    let fx = Fixture::new();
    let script = "printf hello-out; printf hello-err >&2";
    assert_eq!(fx.run("logs", &["sh", "-c", script]).0, Exit::Code(0));
    let read = |stream, offset, max| fx.rt.logs("logs", stream, offset, max).expect("logs");
    assert_eq!(read(Stream::Stdout, 0, 100), (b"hello-out".to_vec(), 9));
    assert_eq!(read(Stream::Stdout, 0, 5), (b"hello".to_vec(), 5));
    assert_eq!(read(Stream::Stdout, 5, 100), (b"-out".to_vec(), 9));
    assert_eq!(read(Stream::Stdout, 9, 100), (Vec::new(), 9));
    assert_eq!(read(Stream::Stderr, 6, 100), (b"err".to_vec(), 9));
    assert!(matches!(
        fx.rt.logs("nobody", Stream::Stdout, 0, 1),
        Err(ExecutorError::Unknown(_))
    ));
}

#[test]
fn output_is_timed_by_marks_that_survive_a_restart_of_the_runtime() {
    let fx = Fixture::new();
    let script = "echo early; sleep 0.6; echo late; sleep 30";
    fx.rt
        .start(&fx.launch("timed", &["sh", "-c", script]))
        .expect("starts");
    wait_for_output(&fx.rt, "timed", "late");
    // The sampler marks each growth within its period.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fx.rt.log_size("timed", Stream::Stdout).expect("size"), 11);
    let marks = fx
        .rt
        .log_marks("timed", Stream::Stdout, 0, 11)
        .expect("marks");
    let offsets: Vec<u64> = marks.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [6, 11], "{marks:?}");
    let gap = marks[1].time_ns - marks[0].time_ns;
    assert!(
        (400_000_000..2_000_000_000).contains(&gap),
        "lines 0.6 s apart were marked {gap} ns apart"
    );
    // Only the marks a range needs, and none for a stream never written.
    assert_eq!(
        fx.rt
            .log_marks("timed", Stream::Stdout, 6, 11)
            .expect("marks"),
        marks[1..]
    );
    assert!(fx
        .rt
        .log_marks("timed", Stream::Stderr, 0, 0)
        .expect("marks")
        .is_empty());
    // A new runtime (an agent restart) reads the same marks.
    let again = ProcessRuntime::new(fx.state.clone(), fx.cgroup_root.clone()).expect("reopens");
    assert_eq!(
        again
            .log_marks("timed", Stream::Stdout, 0, 11)
            .expect("marks"),
        marks
    );
    again.remove("timed").expect("removes");
}

#[test]
fn bad_commands_and_ids_are_refused_and_leave_nothing() {
    let fx = Fixture::new();
    let err = fx.rt.start(&fx.launch("empty", &[])).expect_err("empty");
    assert!(matches!(err, ExecutorError::EmptyCommand(ref id) if id == "empty"));

    let missing = "shoal-no-such-binary";
    let err = fx
        .rt
        .start(&fx.launch("missing", &[missing, "arg"]))
        .expect_err("missing binary");
    assert!(
        matches!(&err, ExecutorError::Spawn { command, source, .. }
            if command == missing && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains(missing), "{err}");
    assert_eq!(fx.rt.state("missing"), None);
    assert!(!fx.state.join("missing").exists());
    assert!(!fx.cgroup_root.join("missing").exists());

    let err = fx
        .rt
        .start(&fx.launch("../escape", &["true"]))
        .expect_err("bad id");
    assert!(matches!(err, ExecutorError::InvalidTaskId(_)), "{err:?}");

    let tmp = TempDir::new().expect("temp dir");
    let err = ProcessRuntime::new(fx.state.clone(), tmp.path().join("cg"))
        .err()
        .expect("a cgroup root off cgroup2 is refused");
    let chain = shoal_control::error_chain::ErrorChain::chain(&err).to_string();
    assert!(chain.contains("cgroup2"), "{chain}");
}

/// A secret as an assignment carries it.
fn payload(path: &str, data: &str, uid: u32, mode: u32) -> shoal_control::objects::PayloadFile {
    shoal_control::objects::PayloadFile {
        path: path.into(),
        uid,
        gid: uid,
        mode,
        data: shoal_control::objects::PayloadData(data.as_bytes().to_vec()),
    }
}

#[test]
fn secrets_and_configs_are_tmpfs_files_named_in_the_env_and_gone_with_the_task() {
    let fx = Fixture::new();
    let mut launch = fx.launch(
        "files",
        &[
            "sh",
            "-c",
            "cat $SHOAL_SECRETS_DIR/pw; echo; cat $SHOAL_CONFIGS_DIR/app.conf; echo; \
             stat -c '%a %u' $SHOAL_SECRETS_DIR/pw; stat -f -c %T $SHOAL_SECRETS_DIR",
        ],
    );
    launch.secrets = vec![payload("/run/secrets/pw", "hunter2", 1000, 0o400)];
    launch.configs = vec![payload("/etc/app.conf", "port=80", 0, 0o444)];
    fx.rt.start(&launch).expect("task starts");
    assert_eq!(wait_exit(&fx.rt, "files"), Exit::Code(0));
    let out = stdout(&fx.rt, "files");
    assert_eq!(out, "hunter2\nport=80\n400 1000\ntmpfs\n", "{out}");

    let files = fx.state.join("files").join("files");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        mountinfo.contains(&format!(" {} ", files.display())),
        "a tmpfs of the task's at {}",
        files.display()
    );
    fx.rt.remove("files").expect("removed");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&files.display().to_string()),
        "the tmpfs is unmounted with the task"
    );
    assert!(!files.exists());
}

#[test]
fn a_task_without_secrets_mounts_nothing_and_gets_no_variables() {
    let fx = Fixture::new();
    let (exit, out) = fx.run("plain", &["sh", "-c", "echo [$SHOAL_SECRETS_DIR]"]);
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(out, "[]\n");
    assert!(!fx.state.join("plain").join("files").exists());
}
