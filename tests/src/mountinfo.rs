//! Reads /proc/self/mountinfo to find the mounts under a directory, such as the nsfs
//! files an agent bind-mounts into its run dir for the namespaces it creates.

use std::{
    ffi::OsString,
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
};

use crate::{HarnessError, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo, reduced to what cleanup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) mount_point: PathBuf,
    pub(crate) fs_type: String,
}

impl Mount {
    /// Whether this mount holds a namespace file (a bind mount of /proc/<pid>/ns/*).
    pub(crate) fn is_namespace(&self) -> bool {
        self.fs_type == "nsfs"
    }
}

/// The mounts of this process's mount namespace, in mount order.
pub(crate) fn mounts() -> Result<Vec<Mount>> {
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|source| HarnessError::Io {
        action: "read",
        path: MOUNTINFO.into(),
        source,
    })?;
    Ok(parse(&text))
}

/// The mounts at or below `dir`, topmost (last mounted) first, so that unmounting in
/// this order never leaves a mount stranded under another.
pub(crate) fn under(mounts: &[Mount], dir: &Path) -> Vec<Mount> {
    mounts
        .iter()
        .rev()
        .filter(|mount| mount.mount_point.starts_with(dir))
        .cloned()
        .collect()
}

/// Parses mountinfo text, skipping lines that do not have the documented shape:
/// `id parent major:minor root mount-point options [optional...] - fstype source super`.
pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let fs_type = after.split(' ').next()?;
    Some(Mount {
        mount_point: unescape(mount_point),
        fs_type: fs_type.to_owned(),
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040`...).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
90 27 0:4 net:[4026532301] /run/shoal-test/shoal-t1-1/h1/ns/c1 rw shared:5 master:1 - nsfs nsfs rw
91 27 0:4 net:[4026532302] /run/shoal-test/shoal-t1-1/h1/with\\040space rw - nsfs nsfs rw
92 27 0:50 / /run/shoal-test/shoal-t1-10/h1 rw - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn parses_mount_point_and_type_past_optional_fields() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            mounts[2],
            Mount {
                mount_point: "/run/shoal-test/shoal-t1-1/h1/ns/c1".into(),
                fs_type: "nsfs".into(),
            }
        );
        assert!(mounts[2].is_namespace());
        assert!(!mounts[1].is_namespace());
    }

    #[test]
    fn unescapes_octal_sequences() {
        assert_eq!(unescape("a\\040b\\134c\\011"), PathBuf::from("a b\\c\t"));
        assert_eq!(unescape("trailing\\04"), PathBuf::from("trailing\\04"));
    }

    #[test]
    fn under_selects_whole_components_topmost_first() {
        let mounts = parse(SAMPLE);
        let found = under(&mounts, Path::new("/run/shoal-test/shoal-t1-1"));
        let points: Vec<_> = found.iter().map(|m| m.mount_point.clone()).collect();
        assert_eq!(
            points,
            vec![
                PathBuf::from("/run/shoal-test/shoal-t1-1/h1/with space"),
                PathBuf::from("/run/shoal-test/shoal-t1-1/h1/ns/c1"),
            ]
        );
    }
}
