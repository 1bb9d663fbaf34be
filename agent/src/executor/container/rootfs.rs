//! A container's root filesystem: an overlay of the image's layers (read
//! only, shared by every task of the image) under a writable upper
//! directory of the task's own. Mount options must fit in one page, so
//! layers are named by their short links; when even those overflow the
//! page with absolute paths, a forked child mounts from inside the layers
//! directory with relative ones (the agent's threads share one working
//! directory, so it never changes its own). Also reads files of the image
//! safely: resolved inside the rootfs, never through a symlink out of it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{umount2, MntFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// The longest mount data the kernel takes (one page, with its NUL).
const MAX_MOUNT_DATA: usize = 4095;

/// The overlay mount options, lowerdirs topmost first.
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    )
}

/// Mounts the overlay of `layers` (short links relative to `layers_dir`,
/// bottom first) with `upper` and `work` on `target`.
pub fn mount_overlay(
    layers_dir: &Path,
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    let absolute: Vec<PathBuf> = layers.iter().map(|l| layers_dir.join(l)).collect();
    let options = overlay_options(&absolute, upper, work);
    if options.len() <= MAX_MOUNT_DATA {
        return mount(target, &options);
    }
    let relative = overlay_options(layers, upper, work);
    if relative.len() > MAX_MOUNT_DATA {
        return Err(io::Error::other(format!(
            "{} layers are too many for one overlay mount ({} bytes of options, the kernel takes {MAX_MOUNT_DATA})",
            layers.len(),
            relative.len()
        )));
    }
    mount_from(layers_dir, target, &relative)
}

fn mount(target: &Path, options: &str) -> io::Result<()> {
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options),
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Mounts with relative lowerdirs from a child whose working directory is
/// `dir`.
fn mount_from(dir: &Path, target: &Path, options: &str) -> io::Result<()> {
    let cstr =
        |p: &[u8]| CString::new(p).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let dir = cstr(dir.as_os_str().as_bytes())?;
    let target = cstr(target.as_os_str().as_bytes())?;
    let data = cstr(options.as_bytes())?;
    // SAFETY: the child only makes async-signal-safe raw syscalls (chdir,
    // mount, _exit) on C strings prepared before the fork; it allocates
    // nothing and takes no lock, so the parent's other threads cannot
    // leave it deadlocked.
    match unsafe { fork() }.map_err(|e| io::Error::from_raw_os_error(e as i32))? {
        ForkResult::Child => {
            // SAFETY: see above; every pointer is a live NUL-terminated string.
            let code = unsafe {
                let failed = libc::chdir(dir.as_ptr()) != 0
                    || libc::mount(
                        c"overlay".as_ptr(),
                        target.as_ptr(),
                        c"overlay".as_ptr(),
                        0,
                        data.as_ptr().cast(),
                    ) != 0;
                if failed {
                    *libc::__errno_location()
                } else {
                    0
                }
            };
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(code.min(255)) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, errno)) => Err(io::Error::from_raw_os_error(errno)),
            Ok(other) => Err(io::Error::other(format!(
                "the mounting child ended as {other:?}"
            ))),
            Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
        },
    }
}

/// Unmounts `target` (lazily, so a process still holding it cannot stop
/// the task's removal); not mounted is fine.
pub fn unmount(target: &Path) -> io::Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// True when something is mounted at `target`.
pub fn is_mounted(target: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = target.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|point| point.replace("\\040", " ") == wanted)
}

/// Reads `path` of the rootfs, resolved as inside it (symlinks cannot
/// lead out), at most `limit` bytes; empty when it does not exist.
pub fn read_in_root(rootfs: &Path, path: &str, limit: u64) -> io::Result<String> {
    let root = File::open(rootfs)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&root, path.trim_start_matches('/'), how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(String::new()),
        Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
    };
    let mut text = String::new();
    File::from(fd).take(limit).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use tempfile::TempDir;

    #[test]
    fn options_list_layers_topmost_first() {
        let options = overlay_options(
            &[PathBuf::from("l/bottom"), PathBuf::from("l/top")],
            Path::new("/t/upper"),
            Path::new("/t/work"),
        );
        assert_eq!(
            options,
            "lowerdir=l/top:l/bottom,upperdir=/t/upper,workdir=/t/work"
        );
    }

    /// `n` one-file layers under `dir/layers`, with long absolute paths.
    fn layers(dir: &Path, n: usize) -> (PathBuf, Vec<PathBuf>) {
        let layers_dir = dir.join("layers-with-a-rather-long-directory-name-to-fill-the-page");
        fs::create_dir_all(layers_dir.join("l")).unwrap();
        let mut links = Vec::new();
        for i in 0..n {
            let name = format!("{i:064x}");
            fs::create_dir(layers_dir.join(&name)).unwrap();
            fs::write(layers_dir.join(&name).join(format!("f{i}")), format!("{i}")).unwrap();
            let link = PathBuf::from("l").join(&name[52..]);
            std::os::unix::fs::symlink(Path::new("..").join(&name), layers_dir.join(&link))
                .unwrap();
            links.push(link);
        }
        (layers_dir, links)
    }

    fn mount_and_check(n: usize) {
        shoal_tests::require_root();
        let dir = TempDir::new().unwrap();
        let (layers_dir, links) = layers(dir.path(), n);
        let (upper, work, target) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("rootfs"),
        );
        for d in [&upper, &work, &target] {
            fs::create_dir(d).unwrap();
        }
        mount_overlay(&layers_dir, &links, &upper, &work, &target).expect("overlay mounts");
        assert!(is_mounted(&target));
        for i in [0, n - 1] {
            assert_eq!(
                fs::read_to_string(target.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
        unmount(&target).unwrap();
        assert!(!is_mounted(&target));
    }

    #[test]
    fn a_few_layers_mount_with_absolute_paths() {
        mount_and_check(3);
    }

    #[test]
    fn many_layers_overflowing_the_page_still_mount() {
        // 120 layers: well over 4 KiB of absolute lowerdirs.
        mount_and_check(120);
    }

    #[test]
    fn reads_in_root_never_follow_symlinks_out() {
        let dir = TempDir::new().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(dir.path().join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("etc/group")).unwrap();
        fs::write(root.join("secret"), "in root").unwrap();
        // The absolute link resolves inside the root: to nothing there.
        assert_eq!(read_in_root(&root, "/etc/passwd", 100).unwrap(), "");
        assert_eq!(read_in_root(&root, "/etc/group", 100).unwrap(), "in root");
        assert_eq!(read_in_root(&root, "/missing", 100).unwrap(), "");
    }
}
