//! Where shoal's eBPF object comes from and how it gets into the kernel: the
//! object is `$SHOAL_EBPF_OBJECT` if set, else the copy embedded at build time
//! (when `cargo xtask build-ebpf` had run before the agent was built), else a
//! `shoal-ebpf` file next to the running executable.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use aya::programs::tc;
use aya::{Ebpf, EbpfLoader};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, BPF_FS_MAGIC};

use super::EbpfError;

/// Environment variable naming an eBPF object to load instead of the embedded one.
pub const OBJECT_ENV: &str = "SHOAL_EBPF_OBJECT";
/// Where bpffs is mounted on a usual Linux host, and where shoal pins maps.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// File name of the object, as `cargo xtask build-ebpf` produces it.
const OBJECT_FILE: &str = "shoal-ebpf";

/// The object embedded by build.rs, if it found one.
#[cfg(shoal_ebpf_embedded)]
fn embedded() -> Option<&'static [u8]> {
    Some(aya::include_bytes_aligned!(env!("SHOAL_EBPF_OBJECT_PATH")))
}

/// The object embedded by build.rs, if it found one.
#[cfg(not(shoal_ebpf_embedded))]
fn embedded() -> Option<&'static [u8]> {
    None
}

/// Where the object that was loaded came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectSource {
    /// Embedded in the binary at build time.
    Embedded,
    /// Read from this file at run time.
    File(PathBuf),
}

impl fmt::Display for ObjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("the copy embedded in this binary"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The bytes of shoal's eBPF object and where they came from.
pub fn object_bytes() -> Result<(Cow<'static, [u8]>, ObjectSource), EbpfError> {
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(OBJECT_FILE)));
    find_object(std::env::var_os(OBJECT_ENV), embedded(), beside_exe)
}

/// The object from the first of these that has one: the path in
/// `$SHOAL_EBPF_OBJECT` (which must then exist), the embedded bytes, the file
/// next to the executable.
fn find_object(
    from_env: Option<OsString>,
    embedded: Option<&'static [u8]>,
    beside_exe: Option<PathBuf>,
) -> Result<(Cow<'static, [u8]>, ObjectSource), EbpfError> {
    if let Some(path) = from_env {
        return read_object(PathBuf::from(path));
    }
    if let Some(bytes) = embedded {
        return Ok((Cow::Borrowed(bytes), ObjectSource::Embedded));
    }
    match beside_exe {
        Some(path) if path.is_file() => read_object(path),
        other => Err(EbpfError::ObjectNotFound {
            searched: match other {
                Some(path) => format!("${OBJECT_ENV} (unset) and {}", path.display()),
                None => format!("${OBJECT_ENV} (unset)"),
            },
        }),
    }
}

fn read_object(path: PathBuf) -> Result<(Cow<'static, [u8]>, ObjectSource), EbpfError> {
    match std::fs::read(&path) {
        Ok(bytes) => Ok((Cow::Owned(bytes), ObjectSource::File(path))),
        Err(source) => Err(EbpfError::ReadObject { path, source }),
    }
}

/// Loads the object into the kernel. With `pin_dir`, each map in `maps` is
/// pinned at `pin_dir/<map name>`, reusing a map already pinned there (so its
/// entries survive an agent restart); the directory is created if missing.
pub fn load_object(
    pin_dir: Option<&Path>,
    maps: &[&'static str],
) -> Result<(Ebpf, ObjectSource), EbpfError> {
    let (bytes, source) = object_bytes()?;
    let mut loader = EbpfLoader::new();
    if let Some(dir) = pin_dir {
        if !on_bpffs(dir) {
            return Err(EbpfError::NotBpffs {
                path: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| EbpfError::PinDir {
            path: dir.to_path_buf(),
            source,
        })?;
        for &map in maps {
            loader.map_pin_path(map, dir.join(map));
        }
    }
    match loader.load(&bytes) {
        Ok(ebpf) => Ok((ebpf, source)),
        Err(e) => Err(EbpfError::Load {
            origin: source.to_string(),
            source: Box::new(e),
        }),
    }
}

/// Mounts a bpffs at `path` (normally [`BPFFS_ROOT`]) unless one is already
/// mounted there; returns whether it mounted one. Pinning needs it, and not
/// every host mounts it at boot.
pub fn ensure_bpffs(path: &Path) -> Result<bool, EbpfError> {
    if is_bpffs(path) {
        return Ok(false);
    }
    std::fs::create_dir_all(path).map_err(|source| EbpfError::PinDir {
        path: path.to_path_buf(),
        source,
    })?;
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|source| EbpfError::MountBpffs {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Whether `path`, or its nearest existing ancestor, is on a bpffs.
fn on_bpffs(path: &Path) -> bool {
    path.ancestors().find(|p| p.exists()).is_some_and(is_bpffs)
}

/// Adds the clsact qdisc to `iface`, which TC programs hang from. One that is
/// already there (from shoal or anyone else) is fine.
pub fn ensure_clsact(iface: &str) -> Result<(), EbpfError> {
    match tc::qdisc_add_clsact(iface) {
        Ok(()) => Ok(()),
        Err(e) if clsact_already_present(&e) => Ok(()),
        Err(source) => Err(EbpfError::Clsact {
            iface: iface.to_owned(),
            source,
        }),
    }
}

/// "File exists" or the kernel's "Exclusivity flag on" (also EEXIST): the
/// qdisc is already there.
fn clsact_already_present(e: &tc::TcError) -> bool {
    match e {
        tc::TcError::AlreadyAttached => true,
        tc::TcError::NetlinkError(nl) => {
            nl.raw_os_error() == Some(libc::EEXIST)
                || nl.to_string().contains("Exclusivity flag on")
        }
        _ => false,
    }
}

/// Unpins each of `maps` pinned under `pin_dir` whose shape (key, value,
/// capacity) differs from the object's: an earlier shoal's map of another
/// layout, which the programs cannot use. Its entries are lost (for flow
/// tables: the flows it tracked end), so it is said.
pub fn drop_stale_pins(pin_dir: &Path, maps: &[&'static str]) -> Result<(), EbpfError> {
    let (bytes, origin) = object_bytes()?;
    let object = aya_obj::Object::parse(&bytes).map_err(|e| EbpfError::Load {
        origin: origin.to_string(),
        source: Box::new(aya::EbpfError::ParseError(e)),
    })?;
    for &name in maps {
        let pin = pin_dir.join(name);
        let Ok(info) = aya::maps::MapInfo::from_pin(&pin) else {
            continue;
        };
        let Some(def) = object.maps.get(name) else {
            continue;
        };
        let shape = |k, v, n| (k, v, n);
        let pinned = shape(info.key_size(), info.value_size(), info.max_entries());
        let wanted = shape(def.key_size(), def.value_size(), def.max_entries());
        if pinned != wanted {
            tracing::warn!(
                "eBPF map {name}: the pinned one (key, value, entries {pinned:?}) is an older \
                 layout than this shoal's {wanted:?}; starting it afresh (its entries are dropped)"
            );
            std::fs::remove_file(&pin).map_err(|source| EbpfError::PinDir {
                path: pin.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Removes the pins of `maps` under `pin_dir`, then the directory if it is
/// empty. Missing pins are fine. Maps stay alive while a program uses them.
pub fn remove_pins(pin_dir: &Path, maps: &[&'static str]) -> Result<(), EbpfError> {
    let pin_error = |source| EbpfError::PinDir {
        path: pin_dir.to_path_buf(),
        source,
    };
    for map in maps {
        match std::fs::remove_file(pin_dir.join(map)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(pin_error(e)),
        }
    }
    match std::fs::remove_dir(pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Something else is pinned there too: leave the directory.
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) => Err(pin_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static EMBEDDED: &[u8] = b"embedded object";

    #[test]
    fn env_path_wins_and_must_exist() {
        let missing = PathBuf::from("/nonexistent/shoal-ebpf");
        let err = find_object(Some(missing.clone().into()), Some(EMBEDDED), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/shoal-ebpf"), "{err}");
    }

    #[test]
    fn env_path_is_read() -> Result<(), Box<dyn std::error::Error>> {
        let path = std::env::temp_dir().join(format!("shoal-ebpf-test-{}", std::process::id()));
        std::fs::write(&path, b"from a file")?;
        let found = find_object(Some(path.clone().into()), Some(EMBEDDED), None);
        std::fs::remove_file(&path)?;
        let (bytes, source) = found?;
        assert_eq!(&*bytes, b"from a file");
        assert_eq!(source, ObjectSource::File(path));
        Ok(())
    }

    #[test]
    fn embedded_comes_before_the_file_beside_the_executable() -> Result<(), EbpfError> {
        let (bytes, source) = find_object(None, Some(EMBEDDED), Some("/bin/sh".into()))?;
        assert_eq!(&*bytes, EMBEDDED);
        assert_eq!(source, ObjectSource::Embedded);
        Ok(())
    }

    #[test]
    fn nothing_found_names_the_fix() {
        let err = find_object(None, None, Some("/nonexistent/dir/shoal-ebpf".into()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cargo xtask build-ebpf"), "{err}");
        assert!(err.contains("/nonexistent/dir/shoal-ebpf"), "{err}");
    }
}
