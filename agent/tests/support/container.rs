//! A container runtime for one test: its own network namespace (the task
//! sandbox), cgroup parent, state, runc root and image store, all removed
//! on drop, containers killed first. The shim is the `shoal` binary cargo
//! built for these tests.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_agent::executor::container::Runc;
use shoal_agent::executor::{
    ContainerConfig, ContainerOptions, ContainerRuntime, Exit, Launch, ProcessState, Runtime,
    Stream,
};
use shoal_agent::image::{GcPolicy, ImageStore, RegistryOptions};
use shoal_agent::netns::NetnsDir;
use tempfile::TempDir;

use super::registry::{busybox_image, ImageSpec};

pub const RESOLV_CONF: &str = "nameserver 10.0.9.53\nsearch shoal.test\noptions ndots:0\n";
/// The longest a container of these tests is waited for.
pub const WAIT: Duration = Duration::from_secs(30);

/// The mount points of every cgroup and cgroup2 filesystem.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .filter(|l| l.contains(" - cgroup2 ") || l.contains(" - cgroup "))
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

/// Removes `<mount>/<name>` and its children in every hierarchy.
fn remove_cgroups(name: &str) {
    for root in cgroup_mounts()
        .into_iter()
        .map(|m| m.join(name))
        .filter(|r| r.is_dir())
    {
        let children: Vec<PathBuf> = fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        for dir in children.iter().chain(std::iter::once(&root)) {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

pub struct Fixture {
    pub rt: Option<ContainerRuntime>,
    pub images: Arc<ImageStore>,
    pub opts: ContainerOptions,
    pub netns: PathBuf,
    pub cgroup_name: String,
    pub tokio: tokio::runtime::Runtime,
    netns_dir: NetnsDir,
    netns_name: String,
    pub dir: TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        shoal_tests::require_root();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = TempDir::new().expect("temp dir");
        let netns_dir = NetnsDir::new(dir.path().join("netns"));
        let netns_name = format!("shoal-ctr-{pid}-{n}");
        netns_dir
            .create(&netns_name)
            .expect("the test's network namespace");
        let cgroup_name = format!("shoal-ctest-{pid}-{n}");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let images = Arc::new(
            ImageStore::open(&dir.path().join("images"), RegistryOptions::default())
                .expect("image store"),
        );
        let opts = ContainerOptions {
            state_dir: dir.path().join("containers"),
            runc: Runc {
                binary: PathBuf::from("runc"),
                root: dir.path().join("runc"),
            },
            shim: PathBuf::from(env!("CARGO_BIN_EXE_shoal")),
            cgroup_parent: format!("/{cgroup_name}"),
            init_binary: ContainerOptions::find_init(),
            volumes_dir: dir.path().join("volumes"),
            protected: vec![
                dir.path().join("containers"),
                dir.path().join("netns"),
                dir.path().join("run"),
            ],
            gc: GcPolicy::default(),
        };
        let rt = ContainerRuntime::new(opts.clone(), images.clone(), tokio.handle().clone())
            .expect("runtime");
        Fixture {
            rt: Some(rt),
            images,
            opts,
            netns: netns_dir.path(&netns_name),
            cgroup_name,
            tokio,
            netns_dir,
            netns_name,
            dir,
        }
    }

    pub fn rt(&self) -> &ContainerRuntime {
        self.rt.as_ref().expect("a runtime")
    }

    /// Drops the runtime and opens a new one on the same state: an agent
    /// restart.
    pub fn restart(&mut self) {
        drop(self.rt.take());
        self.rt = Some(
            ContainerRuntime::new(
                self.opts.clone(),
                self.images.clone(),
                self.tokio.handle().clone(),
            )
            .expect("runtime reopens"),
        );
    }

    /// Builds a busybox image and loads it (as `docker load` would). With
    /// `SHOAL_TEST_IMAGES` set, its tarball is kept there, and taken from
    /// there when present: so the tests run where umoci and skopeo are not
    /// (the pure cgroup v2 guest, see `vagrant/cgroup2/`).
    pub fn image(&self, name: &str, spec: &ImageSpec) -> String {
        let cached = std::env::var_os("SHOAL_TEST_IMAGES")
            .map(|d| PathBuf::from(d).join(format!("{name}.tar")));
        let tar = match cached {
            Some(path) if path.is_file() => path,
            cached => {
                let image = busybox_image(self.dir.path(), name, spec);
                let tar = self.dir.path().join(format!("{name}.tar"));
                image.docker_archive(&tar, &format!("{name}:test"));
                if let Some(path) = cached {
                    fs::copy(&tar, &path).expect("keep the image tarball");
                }
                tar
            }
        };
        self.images.load(&tar, None).expect("image loads");
        format!("{name}:test")
    }

    pub fn launch(
        &self,
        id: &str,
        image: &str,
        command: &[&str],
        container: ContainerConfig,
    ) -> Launch {
        Launch {
            task_id: id.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            netns: self.netns.clone(),
            resolv_conf: RESOLV_CONF.to_string(),
            limit_nano_cpus: 0,
            limit_memory: 0,
            container: Some(ContainerConfig {
                image: image.to_string(),
                ..container
            }),
            secrets: Vec::new(),
            configs: Vec::new(),
        }
    }

    pub fn wait_exit(&self, id: &str) -> Exit {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.rt().state(id) {
                Some(ProcessState::Exited(exit)) => return exit,
                Some(ProcessState::Running { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => panic!(
                    "task {id} did not exit within {WAIT:?}: {other:?}; stderr: {}",
                    self.stderr(id)
                ),
            }
        }
    }

    pub fn stdout(&self, id: &str) -> String {
        let (bytes, _) = self
            .rt()
            .logs(id, Stream::Stdout, 0, 1 << 20)
            .expect("stdout");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn stderr(&self, id: &str) -> String {
        self.rt()
            .logs(id, Stream::Stderr, 0, 1 << 20)
            .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Runs a container to its end: its exit and stdout.
    pub fn run(&self, launch: &Launch) -> (Exit, String) {
        self.rt().start(launch).expect("container starts");
        let exit = self.wait_exit(&launch.task_id);
        (exit, self.stdout(&launch.task_id))
    }

    pub fn wait_for_output(&self, id: &str, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stdout(id).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "task {id} never printed {needle:?}; stdout {:?} stderr {:?}",
                self.stdout(id),
                self.stderr(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A file of the task's cgroup in whichever hierarchy has it.
    pub fn cgroup_file(&self, id: &str, names: &[&str]) -> Option<(String, String)> {
        for mount in cgroup_mounts() {
            for name in names {
                let path = mount.join(&self.cgroup_name).join(id).join(name);
                if let Ok(text) = fs::read_to_string(&path) {
                    return Some((name.to_string(), text.trim().to_string()));
                }
            }
        }
        None
    }

    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.opts.state_dir.join(id)
    }

    pub fn netns_inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.netns).expect("netns file").ino()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            for id in rt.tasks() {
                let _ = rt.remove(&id);
            }
        }
        // Whatever a failed test left: runc's containers, mounts, cgroups.
        let runc_root = self.opts.runc.root.clone();
        if let Ok(entries) = fs::read_dir(&runc_root) {
            for e in entries.flatten() {
                let _ = std::process::Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .output();
            }
        }
        if let Ok(entries) = fs::read_dir(&self.opts.state_dir) {
            for e in entries.flatten() {
                let _ =
                    nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        remove_cgroups(&self.cgroup_name);
        if let Err(e) = self.netns_dir.remove(&self.netns_name) {
            eprintln!("cannot remove test netns {}: {e}", self.netns_name);
        }
    }
}
