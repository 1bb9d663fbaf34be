//! Test registries and images made with Debian's tools only: a
//! `docker-registry` on a loopback port (optionally behind htpasswd basic
//! auth), a busybox image built with umoci from `busybox-static`, pushed
//! with skopeo as OCI or Docker schema 2, or written as a `docker save`
//! tarball. Every process started here is killed by its pid on drop.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Runs a command to completion, panicking with its output on failure.
pub fn run(command: &mut Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `docker-registry` serving from a temporary directory.
pub struct Registry {
    child: Child,
    pub addr: String,
    /// The network namespace it serves in (`None`: this one).
    netns: Option<PathBuf>,
    _dir: TempDir,
    /// `user:password` when it wants basic auth.
    pub credentials: Option<(String, String)>,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// With htpasswd basic auth for `user`/`password`.
    pub fn with_basic_auth(user: &str, password: &str) -> Registry {
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Registry {
        Self::serve(format!("127.0.0.1:{}", free_port()), None, credentials)
    }

    /// Serves on `addr` inside the network namespace `netns` (a test
    /// host's), optionally behind basic auth.
    pub fn serve(
        addr: String,
        netns: Option<PathBuf>,
        credentials: Option<(String, String)>,
    ) -> Registry {
        let dir = TempDir::new().expect("registry dir");
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}}}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = &credentials {
            let htpasswd = dir.path().join("htpasswd");
            run(Command::new("htpasswd")
                .args(["-Bbc"])
                .arg(&htpasswd)
                .args([user, password]));
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: shoal-test, path: {}}}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("registry config");
        let child = in_netns(netns.as_deref(), "docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (apt-get install docker-registry)");
        let registry = Registry {
            child,
            addr,
            netns,
            _dir: dir,
            credentials,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = format!("exec 3<>/dev/tcp/{}", registry.addr.replace(':', "/"));
        let listening = || match &registry.netns {
            None => std::net::TcpStream::connect(&registry.addr).is_ok(),
            Some(_) => in_netns(registry.netns.as_deref(), "bash")
                .args(["-c", &probe])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        };
        while !listening() {
            assert!(Instant::now() < deadline, "the registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// Pushes `oci:<layout>:<tag>` as `<repo>:<tag>`, OCI or Docker v2s2.
    pub fn push(&self, image: &OciImage, repo_tag: &str, docker_v2s2: bool) -> String {
        let dest = format!("docker://{}/{repo_tag}", self.addr);
        let mut command = in_netns(self.netns.as_deref(), "skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if docker_v2s2 {
            command.args(["--format", "v2s2"]);
        }
        if let Some((user, password)) = &self.credentials {
            command.arg(format!("--dest-creds={user}:{password}"));
        }
        command.arg(image.source()).arg(&dest);
        run(&mut command);
        format!("{}/{repo_tag}", self.addr)
    }
}

/// `program`, run in `netns` when given (through nsenter).
fn in_netns(netns: Option<&Path>, program: &str) -> Command {
    match netns {
        None => Command::new(program),
        Some(path) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", path.display()))
                .arg(program);
            command
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI image layout on disk, with one image tag in it.
pub struct OciImage {
    pub layout: PathBuf,
    pub tag: String,
}

impl OciImage {
    pub fn source(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }

    /// Writes it as a `docker save` tarball named `name` (`repo:tag`).
    pub fn docker_archive(&self, path: &Path, name: &str) {
        let _ = fs::remove_file(path);
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(self.source())
            .arg(format!("docker-archive:{}:{name}", path.display())));
    }

    /// Writes it as an OCI archive (`oci-archive:`).
    pub fn oci_archive(&self, path: &Path, tag: &str) {
        let _ = fs::remove_file(path);
        run(Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(self.source())
            .arg(format!("oci-archive:{}:{tag}", path.display())));
    }
}

/// What the busybox image runs and declares.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub stop_signal: Option<String>,
    /// Extra files (path in the image, content).
    pub files: Vec<(String, String)>,
}

/// Builds a busybox image (one layer with busybox and its applets, an
/// /etc/passwd with root, nobody and `app` (1000), an /etc/group where
/// `app` is also in `extra` (2000)) plus a layer of `spec.files`, in a new
/// layout under `dir`.
pub fn busybox_image(dir: &Path, name: &str, spec: &ImageSpec) -> OciImage {
    let layout = dir.join(format!("{name}-layout"));
    let bundle = dir.join(format!("{name}-bundle"));
    let _ = fs::remove_dir_all(&layout);
    let _ = fs::remove_dir_all(&bundle);
    let image = format!("{}:{name}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp", "root", "home/app"] {
        fs::create_dir_all(rootfs.join(d)).expect("rootfs dirs");
    }
    fs::copy(busybox_binary(), rootfs.join("bin/busybox")).expect("copy busybox");
    let applets = run(Command::new(busybox_binary()).arg("--list"));
    for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .expect("group");
    run(Command::new("chmod").args(["1777"]).arg(rootfs.join("tmp")));
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    if !spec.files.is_empty() {
        for (path, content) in &spec.files {
            let target = rootfs.join(path.trim_start_matches('/'));
            fs::create_dir_all(target.parent().expect("a parent")).expect("dirs");
            fs::write(&target, content).expect("file");
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle));
    }
    let mut config = Command::new("umoci");
    config.args(["config", "--image", &image]);
    for e in &spec.entrypoint {
        config.arg(format!("--config.entrypoint={e}"));
    }
    for c in &spec.cmd {
        config.arg(format!("--config.cmd={c}"));
    }
    for e in spec
        .env
        .iter()
        .chain(std::iter::once(&"PATH=/bin".to_string()))
    {
        config.arg(format!("--config.env={e}"));
    }
    if let Some(user) = &spec.user {
        config.arg(format!("--config.user={user}"));
    }
    if let Some(dir) = &spec.workdir {
        config.arg(format!("--config.workingdir={dir}"));
    }
    if let Some(sig) = &spec.stop_signal {
        config.arg(format!("--config.stopsignal={sig}"));
    }
    run(&mut config);
    let _ = fs::remove_dir_all(&bundle);
    OciImage {
        layout,
        tag: name.to_string(),
    }
}

/// The static busybox of `busybox-static`.
pub fn busybox_binary() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let path = PathBuf::from("/bin/busybox");
        let out = Command::new("file").arg("-L").arg(&path).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains("dynamically linked"),
                "/bin/busybox is dynamically linked: apt-get install busybox-static"
            );
        }
        path
    })
}
