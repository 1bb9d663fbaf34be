//! The demo's image, made offline from Debian packages in a few seconds:
//! busybox (`busybox-static`) in one layer, built with `umoci`, whose httpd
//! runs a CGI answering `task=<id> client=<ip>:<port>` (its task id from
//! `SHOAL_TASK_ID`, the peer as the task sees it). Saved with `skopeo` as
//! a `docker save` tarball, which every node loads (`shoal image load`):
//! no registry is needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::run;

/// What the image is called on the nodes: `localhost` names no registry
/// they could reach, so the managers keep the tag and each node runs the
/// copy it loaded.
pub const IMAGE: &str = "localhost/shoal-demo/web:1";

/// The CGI behind `/` (httpd runs `cgi-bin/index.cgi` for a directory
/// without an index.html).
/// httpd listens on IPv4 only, so the peer is a plain `a.b.c.d` (an IPv6
/// socket would say `[::ffff:a.b.c.d]`, which the script strips anyway).
const ECHO_CGI: &str = "#!/bin/sh
peer=${REMOTE_ADDR#[}; peer=${peer%]}; peer=${peer#::ffff:}
echo 'Content-Type: text/plain'
echo
echo \"task=$SHOAL_TASK_ID client=$peer:$REMOTE_PORT\"
";

/// Builds the image under `dir` and returns its `docker save` tarball.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:web", layout.display());
    run::run(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    )?;
    run::run(Command::new("umoci").args(["new", "--image", &image]))?;
    run::run(
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    )?;
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp", "www/cgi-bin"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .context("copying /bin/busybox (apt-get install busybox-static)")?;
    for applet in ["sh", "httpd", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let cgi = rootfs.join("www/cgi-bin/index.cgi");
    fs::write(&cgi, ECHO_CGI)?;
    fs::set_permissions(&cgi, fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    run::run(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    )?;
    run::run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.entrypoint=httpd",
        "--config.cmd=-f",
        "--config.cmd=-p",
        "--config.cmd=0.0.0.0:80",
        "--config.cmd=-h",
        "--config.cmd=/www",
        "--config.env=PATH=/bin",
        "--config.exposedports=80/tcp",
    ]))?;
    let archive = dir.join("web.tar");
    run::run(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{image}"))
            .arg(format!("docker-archive:{}:{IMAGE}", archive.display())),
    )?;
    let _ = fs::remove_dir_all(&bundle);
    Ok(archive)
}
