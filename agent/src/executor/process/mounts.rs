//! The cgroup filesystems mounted on this host, from `/proc/self/mountinfo`:
//! where cgroup2 is, and which cgroup v1 hierarchy (on a hybrid host) holds
//! which controller.

use std::fs;
use std::io;
use std::path::PathBuf;

/// A cgroup filesystem mounted on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub point: PathBuf,
    /// `None` for cgroup2, else the v1 hierarchy's super options, which
    /// name its controllers (`rw,cpu,cpuacct`).
    pub v1_options: Option<Vec<String>>,
}

/// The cgroup2 mount point of this host, e.g. `/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host.
pub fn cgroup2_mount() -> Option<PathBuf> {
    mounts().ok()?.into_iter().find_map(|m| match m.v1_options {
        None => Some(m.point),
        Some(_) => None,
    })
}

/// The cgroup filesystems in `/proc/self/mountinfo`.
pub(crate) fn mounts() -> io::Result<Vec<CgroupMount>> {
    Ok(parse_mountinfo(&fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The cgroup and cgroup2 mounts of a mountinfo text. A line reads
/// `ID PARENT DEV ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let point = fields.get(4)?;
            let dash = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(dash + 1)?;
            let v1_options = match *fstype {
                "cgroup2" => None,
                "cgroup" => Some(
                    fields
                        .get(dash + 3)?
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                point: PathBuf::from(unescape(point)),
                v1_options,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
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
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mountinfo_lists_v1_options_and_the_v2_mount() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/with\\040space rw - cgroup2 none rw,nsdelegate";
        let mounts = parse_mountinfo(text);
        let v1 = |point: &str, c: &[&str]| CgroupMount {
            point: point.into(),
            v1_options: Some(c.iter().map(|s| s.to_string()).collect()),
        };
        assert_eq!(
            mounts,
            vec![
                v1("/sys/fs/cgroup/cpu,cpuacct", &["rw", "cpu", "cpuacct"]),
                v1("/sys/fs/cgroup/memory", &["rw", "memory"]),
                v1("/sys/fs/cgroup/systemd", &["rw", "xattr", "name=systemd"]),
                CgroupMount {
                    point: "/sys/fs/cgroup/unified".into(),
                    v1_options: None
                },
                CgroupMount {
                    point: "/mnt/with space".into(),
                    v1_options: None
                },
            ]
        );
    }
}
