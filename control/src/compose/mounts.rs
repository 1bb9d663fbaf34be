//! A service's `volumes:` (short `SOURCE:TARGET[:OPTIONS]` and long
//! `{type, source, target, read_only, bind, volume, tmpfs}`) and `tmpfs:`,
//! read as mounts. A source starting with `/`, `.` or `~` is a host path
//! (a bind), made absolute against the project directory; any other is a
//! named volume.

use std::path::{Component, Path, PathBuf};

use super::model::{Mount, MountKind, Propagation};
use super::path::KeyPath;
use super::read::{
    boolean, bytes, conflict, invalid, mapping, missing, string, string_or_list, wrong_type, Cx,
    Result,
};
use super::units::{parse_bytes, parse_octal_mode};
use super::yaml::{Node, Value};

/// Where relative host paths start, and what `~` means.
#[derive(Clone, Copy, Debug)]
pub struct HostPaths<'a> {
    pub working_dir: &'a Path,
    pub home: Option<&'a str>,
}

impl HostPaths<'_> {
    /// Makes `path` absolute: `~` is the home directory, a relative path is
    /// taken from the project directory; `.` and `..` are resolved in the
    /// text (the file system is not consulted).
    pub fn resolve(&self, path: &str) -> PathBuf {
        let expanded = match (path.strip_prefix('~'), self.home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{home}{rest}")
            }
            _ => path.to_string(),
        };
        let joined = self.working_dir.join(expanded);
        let mut clean = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::CurDir => {}
                Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        clean
    }
}

const SHORT_FORM: &str = "[SOURCE:]TARGET[:OPTIONS] with an absolute TARGET, such as data:/var/lib/data, ./conf:/etc/app:ro or /srv";

/// Reads a service's `volumes:`. Mounts of a type shoal does not support
/// are left out with a warning.
pub fn volumes(node: &Node, path: &KeyPath, paths: HostPaths, cx: &mut Cx) -> Result<Vec<Mount>> {
    let items = match &node.value {
        Value::Null => return Ok(Vec::new()),
        Value::Seq(items) => items,
        _ => return Err(wrong_type(node, path, "a list of volumes")),
    };
    let mut mounts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        let mount = match &item.value {
            Value::Scalar(text) => Some(short(item, text, &path, paths, cx)?),
            Value::Map(_) => long(item, &path, paths, cx)?,
            _ => return Err(wrong_type(item, &path, "a volume as a string or a mapping")),
        };
        mounts.extend(mount);
    }
    Ok(mounts)
}

/// The target of a `volumes:` entry, which identifies it when files are
/// merged.
pub fn merge_key(node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar(text) => {
            let fields: Vec<&str> = text.split(':').collect();
            match fields.as_slice() {
                [target] | [_, target] | [_, target, _] => Some(target.to_string()),
                _ => None,
            }
        }
        Value::Map(map) => map
            .get("target")
            .and_then(Node::as_scalar)
            .map(str::to_string),
        _ => None,
    }
}

fn is_host_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

fn check_target(node: &Node, path: &KeyPath, target: &str) -> Result<()> {
    if target.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(
            node,
            path,
            target,
            "an absolute path in the container for the target",
        ))
    }
}

fn short(node: &Node, text: &str, path: &KeyPath, paths: HostPaths, cx: &mut Cx) -> Result<Mount> {
    let fields: Vec<&str> = text.split(':').collect();
    if fields.iter().any(|field| field.is_empty()) || fields.len() > 3 {
        return Err(invalid(node, path, text, SHORT_FORM));
    }
    let (source, target, options) = match fields.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, options] => (Some(*source), *target, Some(*options)),
        _ => return Err(invalid(node, path, text, SHORT_FORM)),
    };
    check_target(node, path, target)?;
    let mut read_only = false;
    let mut nocopy = false;
    let mut propagation = None;
    for option in options
        .unwrap_or_default()
        .split(',')
        .filter(|o| !o.is_empty())
    {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => nocopy = true,
            "z" | "Z" => cx.ignored_value(node, path, option, "SELinux relabelling is not supported; the option is ignored"),
            "cached" | "delegated" | "consistent" => {
                cx.ignored_value(node, path, option, "consistency options only matter on Docker Desktop; ignored")
            }
            other => {
                propagation = Some(Propagation::parse(other).ok_or_else(|| {
                    invalid(
                        node,
                        path,
                        other,
                        "volume options ro, rw, nocopy, z, Z, or a propagation: shared, rshared, slave, rslave, private, rprivate",
                    )
                })?)
            }
        }
    }
    let kind = match source {
        Some(source) if is_host_path(source) => {
            if nocopy {
                return Err(conflict(
                    node,
                    path,
                    "`nocopy` applies to named volumes, not to host paths",
                ));
            }
            MountKind::Bind {
                source: paths.resolve(source),
                propagation,
            }
        }
        source => {
            if propagation.is_some() {
                return Err(conflict(
                    node,
                    path,
                    "a propagation applies to host paths, not to volumes",
                ));
            }
            MountKind::Volume {
                source: source.map(str::to_string),
                nocopy,
                subpath: None,
            }
        }
    };
    Ok(Mount {
        target: target.to_string(),
        read_only,
        kind,
    })
}

fn long(node: &Node, path: &KeyPath, paths: HostPaths, cx: &mut Cx) -> Result<Option<Mount>> {
    let Value::Map(map) = &node.value else {
        return Err(wrong_type(node, path, "a mapping"));
    };
    let mut kind_name = None;
    let mut source = None;
    let mut target = None;
    let mut read_only = false;
    let mut nocopy = false;
    let mut subpath = None;
    let mut propagation = None;
    let mut size_bytes = None;
    let mut mode = None;
    let mut options = Vec::new();
    for (key, value) in map.iter() {
        let key_path = path.key(key);
        match key {
            "type" => kind_name = string(value, &key_path)?,
            "source" => source = string(value, &key_path)?,
            "target" => target = string(value, &key_path)?,
            "read_only" => read_only = boolean(value, &key_path)?.unwrap_or(false),
            "consistency" => {
                let text = string(value, &key_path)?.unwrap_or_default();
                cx.ignored_value(
                    value,
                    &key_path,
                    &text,
                    "consistency options only matter on Docker Desktop; ignored",
                );
            }
            "bind" | "volume" | "tmpfs" => {
                options.push(key);
                let Some(section) = mapping(value, &key_path)? else {
                    continue;
                };
                for (option, option_value) in section.iter() {
                    let option_path = key_path.key(option);
                    match (key, option) {
                        ("bind", "propagation") => {
                            if let Some(text) = string(option_value, &option_path)? {
                                propagation = Some(Propagation::parse(&text).ok_or_else(|| {
                                    invalid(
                                        option_value,
                                        &option_path,
                                        &text,
                                        "shared, rshared, slave, rslave, private or rprivate",
                                    )
                                })?);
                            }
                        }
                        ("volume", "nocopy") => {
                            nocopy = boolean(option_value, &option_path)?.unwrap_or(false)
                        }
                        ("volume", "subpath") => subpath = string(option_value, &option_path)?,
                        ("tmpfs", "size") => size_bytes = bytes(option_value, &option_path)?,
                        ("tmpfs", "mode") => {
                            if let Some(text) = string(option_value, &option_path)? {
                                mode = Some(parse_octal_mode(&text).ok_or_else(|| {
                                    invalid(
                                        option_value,
                                        &option_path,
                                        &text,
                                        "an octal file mode such as 1777",
                                    )
                                })?);
                            }
                        }
                        _ => cx.other(
                            option,
                            option_value,
                            &option_path,
                            &[
                                (
                                    "create_host_path",
                                    Some("Swarm never creates a bind's host path"),
                                ),
                                ("selinux", Some("SELinux relabelling is not supported")),
                            ],
                        ),
                    }
                }
            }
            _ => cx.other(key, value, &key_path, &[("image", None)]),
        }
    }
    let kind_name = kind_name.ok_or_else(|| missing(node, path, "type"))?;
    let target = target.ok_or_else(|| missing(node, path, "target"))?;
    check_target(node, path, &target)?;
    let misplaced = |allowed: &str| options.iter().find(|o| **o != allowed);
    let kind = match kind_name.as_str() {
        "volume" => MountKind::Volume {
            source: source.filter(|s| !s.is_empty()),
            nocopy,
            subpath,
        },
        "bind" => {
            let source = source
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing(node, path, "source"))?;
            MountKind::Bind {
                source: paths.resolve(&source),
                propagation,
            }
        }
        "tmpfs" => {
            if source.is_some_and(|s| !s.is_empty()) {
                return Err(conflict(node, path, "a tmpfs mount has no source"));
            }
            MountKind::Tmpfs { size_bytes, mode }
        }
        "npipe" | "cluster" | "image" => {
            cx.ignored_value(
                node,
                path,
                &kind_name,
                "shoal supports volume, bind and tmpfs mounts; this mount is left out",
            );
            return Ok(None);
        }
        _ => {
            return Err(invalid(
                node,
                &path.key("type"),
                &kind_name,
                "volume, bind or tmpfs",
            ))
        }
    };
    if let Some(option) = misplaced(&kind_name) {
        return Err(conflict(
            node,
            path,
            format!("`{option}` options do not apply to a {kind_name} mount"),
        ));
    }
    Ok(Some(Mount {
        target,
        read_only,
        kind,
    }))
}

/// Reads a service's `tmpfs:` (`/run` or `/run:size=64m,mode=1777`).
pub fn tmpfs(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Vec<Mount>> {
    let mut mounts = Vec::new();
    for (i, entry) in string_or_list(node, path)?.into_iter().enumerate() {
        let path = if matches!(node.value, Value::Seq(_)) {
            path.index(i)
        } else {
            path.clone()
        };
        let (target, options) = entry.split_once(':').unwrap_or((&entry, ""));
        check_target(node, &path, target)?;
        let mut size_bytes = None;
        let mut mode = None;
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("size", size)) => {
                    size_bytes = Some(
                        parse_bytes(size)
                            .ok_or_else(|| invalid(node, &path, size, "a size such as 64m"))?,
                    )
                }
                Some(("mode", text)) => {
                    mode = Some(parse_octal_mode(text).ok_or_else(|| {
                        invalid(node, &path, text, "an octal file mode such as 1777")
                    })?)
                }
                _ => cx.ignored_value(
                    node,
                    &path,
                    option,
                    "Swarm's tmpfs mounts take only size and mode; ignored",
                ),
            }
        }
        mounts.push(Mount {
            target: target.to_string(),
            read_only: false,
            kind: MountKind::Tmpfs { size_bytes, mode },
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::compose::error::{Subject, Warning, WarningKind};
    use crate::compose::yaml;

    fn paths() -> HostPaths<'static> {
        HostPaths {
            working_dir: Path::new("/srv/app"),
            home: Some("/home/me"),
        }
    }

    fn read(text: &str) -> (Result<Vec<Mount>>, Vec<Warning>) {
        let root = yaml::parse(&Arc::from("t.yml"), &format!("volumes: {text}\n")).unwrap();
        let node = root.as_map().unwrap().get("volumes").unwrap().clone();
        let mut warnings = Vec::new();
        let mut cx = Cx {
            subject: Subject::Service("web".into()),
            warnings: &mut warnings,
        };
        let path = KeyPath::root()
            .key("services")
            .key("web")
            .subject()
            .key("volumes");
        let result = volumes(&node, &path, paths(), &mut cx);
        (result, warnings)
    }

    fn volume(source: Option<&str>, target: &str) -> Mount {
        Mount {
            target: target.into(),
            read_only: false,
            kind: MountKind::Volume {
                source: source.map(str::to_string),
                nocopy: false,
                subpath: None,
            },
        }
    }

    fn bind(source: &str, target: &str, read_only: bool) -> Mount {
        Mount {
            target: target.into(),
            read_only,
            kind: MountKind::Bind {
                source: source.into(),
                propagation: None,
            },
        }
    }

    #[test]
    fn host_paths_resolve_against_the_project_directory_and_home() {
        assert_eq!(paths().resolve("./data"), Path::new("/srv/app/data"));
        assert_eq!(paths().resolve("."), Path::new("/srv/app"));
        assert_eq!(paths().resolve("../x/./y"), Path::new("/srv/x/y"));
        assert_eq!(paths().resolve("/abs"), Path::new("/abs"));
        assert_eq!(paths().resolve("~/conf"), Path::new("/home/me/conf"));
        assert_eq!(paths().resolve("~"), Path::new("/home/me"));
    }

    #[test]
    fn short_syntax_tells_volumes_from_binds() {
        let (mounts, warnings) = read(
            "[/var/lib/mysql, '/opt/data:/var/lib/mysql', '.:/code', './static:/var/www/html', '~/configs:/etc/configs/:ro', 'datavolume:/var/lib/mysql:nocopy', '/sock:/sock:rw,rslave', '/x:/y:z']",
        );
        let mut propagated = bind("/sock", "/sock", false);
        if let MountKind::Bind { propagation, .. } = &mut propagated.kind {
            *propagation = Some(Propagation::Rslave);
        }
        assert_eq!(
            mounts.unwrap(),
            vec![
                volume(None, "/var/lib/mysql"),
                bind("/opt/data", "/var/lib/mysql", false),
                bind("/srv/app", "/code", false),
                bind("/srv/app/static", "/var/www/html", false),
                bind("/home/me/configs", "/etc/configs/", true),
                Mount {
                    kind: MountKind::Volume {
                        source: Some("datavolume".into()),
                        nocopy: true,
                        subpath: None
                    },
                    ..volume(None, "/var/lib/mysql")
                },
                propagated,
                bind("/x", "/y", false),
            ]
        );
        assert_eq!(warnings.len(), 1);
        assert!(
            matches!(&warnings[0].kind, WarningKind::IgnoredValue { key, value, .. } if key == "volumes[7]" && value == "z")
        );
    }

    #[test]
    fn long_syntax_reads_every_type() {
        let (mounts, warnings) = read(
            "[{type: volume, source: data, target: /data, read_only: true, volume: {nocopy: true, subpath: sub}}, \
              {type: bind, source: ./opt, target: /opt, consistency: cached, bind: {propagation: rshared, create_host_path: true}}, \
              {type: tmpfs, target: /tmp, tmpfs: {size: 10000, mode: '1777'}}, \
              {type: cluster, source: 'group:g', target: /srv}]",
        );
        assert_eq!(
            mounts.unwrap(),
            vec![
                Mount {
                    target: "/data".into(),
                    read_only: true,
                    kind: MountKind::Volume {
                        source: Some("data".into()),
                        nocopy: true,
                        subpath: Some("sub".into())
                    }
                },
                Mount {
                    target: "/opt".into(),
                    read_only: false,
                    kind: MountKind::Bind {
                        source: "/srv/app/opt".into(),
                        propagation: Some(Propagation::Rshared)
                    }
                },
                Mount {
                    target: "/tmp".into(),
                    read_only: false,
                    kind: MountKind::Tmpfs {
                        size_bytes: Some(10000),
                        mode: Some(0o1777)
                    }
                },
            ]
        );
        let keys: Vec<_> = warnings
            .iter()
            .map(|w| w.key().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "volumes[1].consistency",
                "volumes[1].bind.create_host_path",
                "volumes[3]"
            ]
        );
    }

    #[test]
    fn invalid_volumes_are_errors_with_the_path() {
        for bad in [
            "['data:relative']",
            "['a:b:c:d']",
            "['a::/x']",
            "['/x:/y:bogus']",
            "['/x:/y:nocopy']",
            "['data:/y:rshared']",
            "[{type: volume}]",
            "[{target: /x}]",
            "[{type: bind, target: /x}]",
            "[{type: tmpfs, source: x, target: /x}]",
            "[{type: weird, target: /x}]",
            "[{type: volume, target: /x, bind: {propagation: shared}}]",
            "[{type: bind, source: /a, target: /x, bind: {propagation: sideways}}]",
            "[[a]]",
        ] {
            let (result, _) = read(bad);
            let err = result.expect_err(bad);
            assert!(
                err.to_string().contains("services.web.volumes"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn service_tmpfs_reads_size_and_mode() {
        let root = yaml::parse(
            &Arc::from("t.yml"),
            "tmpfs: [/run, '/tmp:size=64m,mode=1777,noexec']\n",
        )
        .unwrap();
        let node = root.as_map().unwrap().get("tmpfs").unwrap().clone();
        let mut warnings = Vec::new();
        let mut cx = Cx {
            subject: Subject::Service("web".into()),
            warnings: &mut warnings,
        };
        let path = KeyPath::root()
            .key("services")
            .key("web")
            .subject()
            .key("tmpfs");
        let mounts = tmpfs(&node, &path, &mut cx).unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            mounts[1].kind,
            MountKind::Tmpfs {
                size_bytes: Some(64 << 20),
                mode: Some(0o1777)
            }
        );
        assert_eq!(warnings.len(), 1);
    }
}
