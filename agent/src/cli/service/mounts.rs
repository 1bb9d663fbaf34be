//! Docker's `--mount` syntax: comma-separated `key=value`s, e.g.
//! `type=bind,source=/srv/www,target=/www,readonly` or
//! `type=tmpfs,target=/scratch,tmpfs-size=64m,tmpfs-mode=1770`. Options
//! shoal cannot honour are refused by name rather than ignored.

use shoal_control::error_chain::ErrorChain;
use shoal_control::objects::{MountKind, MountSpec};

use super::values::parse_memory;

/// Parses one `--mount` value.
pub fn parse_mount(text: &str) -> Result<MountSpec, String> {
    let mut mount = MountSpec::default();
    let mut target = None;
    for field in text.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need =
            || value.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match key.as_str() {
            "type" => {
                mount.kind = match need()? {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    other => {
                        return Err(format!(
                            "mount type `{other}` is not supported: use bind, volume or tmpfs"
                        ))
                    }
                }
            }
            "source" | "src" => mount.source = need()?.to_string(),
            "target" | "destination" | "dst" => target = Some(need()?.to_string()),
            "readonly" | "ro" => mount.read_only = parse_bool(field, value)?,
            "tmpfs-size" => {
                mount.tmpfs_size =
                    parse_memory(need()?).map_err(|e| format!("tmpfs-size: {}", e.chain()))?;
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(need()?, 8)
                    .map_err(|_| format!("tmpfs-mode `{}` is not octal", need().unwrap_or("")))?;
                mount.tmpfs_mode = Some(mode);
            }
            // Docker accepts these and they change nothing here.
            "consistency" => {}
            _ => {
                return Err(format!(
                    "mount option `{key}` is not supported: use type, source, target, readonly, \
                     tmpfs-size or tmpfs-mode"
                ))
            }
        }
    }
    mount.target = target.ok_or("a mount needs a target (target=/path)")?;
    let tmpfs_option = mount.tmpfs_size > 0 || mount.tmpfs_mode.is_some();
    if tmpfs_option && mount.kind != MountKind::Tmpfs {
        return Err("tmpfs-size and tmpfs-mode need type=tmpfs".into());
    }
    if mount.kind == MountKind::Bind && mount.source.is_empty() {
        return Err("a bind mount needs a source (source=/path/on/the/node)".into());
    }
    Ok(mount)
}

fn parse_bool(field: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        _ => Err(format!("invalid value for '{field}': use true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_mount_syntax() {
        let bind = parse_mount("type=bind,source=/srv/www,target=/www,readonly").unwrap();
        assert_eq!(
            bind,
            MountSpec {
                kind: MountKind::Bind,
                source: "/srv/www".into(),
                target: "/www".into(),
                read_only: true,
                ..MountSpec::default()
            }
        );
        let volume = parse_mount("src=data,dst=/data,ro=false").unwrap();
        assert_eq!(volume.kind, MountKind::Volume);
        assert_eq!((volume.source.as_str(), volume.read_only), ("data", false));
        let tmpfs =
            parse_mount("type=tmpfs,destination=/scratch,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        assert_eq!(tmpfs.tmpfs_size, 1 << 20);
        assert_eq!(tmpfs.tmpfs_mode, Some(0o1770));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        for bad in [
            "type=npipe,target=/x",
            "type=bind,target=/x",
            "source=data",
            "type=volume,target=/x,tmpfs-size=1m",
            "type=bind,source=/a,target=/b,bind-propagation=shared",
            "type=tmpfs,target=/x,tmpfs-mode=999",
            "target",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad}");
        }
    }
}
