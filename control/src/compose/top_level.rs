//! The top-level `networks:`, `volumes:`, `secrets:` and `configs:`
//! sections. `external: true` marks what exists already (the old
//! `external: {name: X}` still works, with a warning); a `name:` is used
//! as is, without the stack's namespace.

use std::collections::BTreeMap;

use super::dotenv::Environment;
use super::error::{Subject, Warning, WarningKind};
use super::model::{FileObject, Ipam, IpamPool, Network, ObjectSource, Volume};
use super::mounts::HostPaths;
use super::path::KeyPath;
use super::read::{boolean, conflict, labels, mapping, missing, string, wrong_type, Cx, Result};
use super::yaml::{Mapping, Node, Value};

/// Reads one top-level section, one object per key, each with its warnings.
fn section<T>(
    node: &Node,
    path: &KeyPath,
    warnings: &mut Vec<Warning>,
    subject: fn(String) -> Subject,
    mut read: impl FnMut(&Node, &KeyPath, &mut Cx) -> Result<T>,
) -> Result<BTreeMap<String, T>> {
    let mut objects = BTreeMap::new();
    let Some(map) = mapping(node, path)? else {
        return Ok(objects);
    };
    for (name, value) in map.iter() {
        let mut cx = Cx {
            subject: subject(name.to_string()),
            warnings,
        };
        let object = read(value, &path.key(name).subject(), &mut cx)?;
        objects.insert(name.to_string(), object);
    }
    Ok(objects)
}

/// `external:` as a boolean, or the deprecated `{name: X}` (which sets the
/// name).
fn external(value: &Node, path: &KeyPath, name: &mut Option<String>, cx: &mut Cx) -> Result<bool> {
    match &value.value {
        Value::Map(map) => {
            let external_name = map
                .get("name")
                .map(|n| string(n, &path.key("name")))
                .transpose()?
                .flatten();
            if let Some(external_name) = external_name {
                if name.is_some() {
                    return Err(conflict(
                        value,
                        path,
                        "external.name and name conflict: only use name",
                    ));
                }
                *name = Some(external_name);
            }
            cx.warn(
                value,
                WarningKind::Deprecated {
                    key: path.relative().to_string(),
                    instead: "`external: true` with `name:`",
                },
            );
            Ok(true)
        }
        _ => Ok(boolean(value, path)?.unwrap_or(false)),
    }
}

/// Refuses keys that make no sense on something external.
fn check_external(
    map: &Mapping,
    node: &Node,
    path: &KeyPath,
    external: bool,
    keys: &[&str],
) -> Result<()> {
    if !external {
        return Ok(());
    }
    match keys
        .iter()
        .find(|key| map.get(key).is_some_and(|v| !v.is_null()))
    {
        Some(key) => Err(conflict(
            node,
            path,
            format!("an external object is not created, so `{key}` cannot be set on it"),
        )),
        None => Ok(()),
    }
}

pub fn networks(
    node: &Node,
    path: &KeyPath,
    warnings: &mut Vec<Warning>,
) -> Result<BTreeMap<String, Network>> {
    section(node, path, warnings, Subject::Network, network)
}

fn network(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Network> {
    let mut network = Network::default();
    let Some(map) = mapping(node, path)? else {
        return Ok(network);
    };
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "name" => network.name = string(value, &path)?,
            "external" => network.external = external(value, &path, &mut network.name, cx)?,
            "driver" => network.driver = string(value, &path)?,
            "driver_opts" => network.driver_opts = labels(value, &path)?,
            "ipam" => network.ipam = ipam(value, &path, cx)?,
            "attachable" => network.attachable = boolean(value, &path)?.unwrap_or(false),
            "internal" => network.internal = boolean(value, &path)?.unwrap_or(false),
            "enable_ipv6" => network.enable_ipv6 = boolean(value, &path)?,
            "labels" => network.labels = labels(value, &path)?,
            _ => cx.other(key, value, &path, &[("enable_ipv4", None)]),
        }
    }
    if let Some(map) = node.as_map() {
        check_external(
            map,
            node,
            path,
            network.external,
            &["driver", "driver_opts", "ipam", "labels"],
        )?;
    }
    Ok(network)
}

fn ipam(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Option<Ipam>> {
    let Some(map) = mapping(node, path)? else {
        return Ok(None);
    };
    let mut ipam = Ipam::default();
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "driver" => ipam.driver = string(value, &path)?,
            "options" => ipam.options = labels(value, &path)?,
            "config" => {
                let items = match &value.value {
                    Value::Null => continue,
                    Value::Seq(items) => items,
                    _ => {
                        return Err(wrong_type(
                            value,
                            &path,
                            "a list of {subnet, ip_range, gateway}",
                        ))
                    }
                };
                for (i, item) in items.iter().enumerate() {
                    let path = path.index(i);
                    let mut pool = IpamPool::default();
                    let Some(fields) = mapping(item, &path)? else {
                        continue;
                    };
                    for (field, value) in fields.iter() {
                        let path = path.key(field);
                        match field {
                            "subnet" => pool.subnet = string(value, &path)?,
                            "ip_range" => pool.ip_range = string(value, &path)?,
                            "gateway" => pool.gateway = string(value, &path)?,
                            _ => cx.other(field, value, &path, &[("aux_addresses", None)]),
                        }
                    }
                    ipam.config.push(pool);
                }
            }
            _ => cx.other(key, value, &path, &[]),
        }
    }
    Ok(Some(ipam))
}

pub fn volumes(
    node: &Node,
    path: &KeyPath,
    warnings: &mut Vec<Warning>,
) -> Result<BTreeMap<String, Volume>> {
    section(node, path, warnings, Subject::Volume, volume)
}

fn volume(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Volume> {
    let mut volume = Volume::default();
    let Some(map) = mapping(node, path)? else {
        return Ok(volume);
    };
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "name" => volume.name = string(value, &path)?,
            "external" => volume.external = external(value, &path, &mut volume.name, cx)?,
            "driver" => volume.driver = string(value, &path)?,
            "driver_opts" => volume.driver_opts = labels(value, &path)?,
            "labels" => volume.labels = labels(value, &path)?,
            _ => cx.other(key, value, &path, &[]),
        }
    }
    check_external(
        map,
        node,
        path,
        volume.external,
        &["driver", "driver_opts", "labels"],
    )?;
    Ok(volume)
}

/// What reading secrets and configs needs: where `file:` paths start, and
/// the environment `environment:` sources read.
#[derive(Clone, Copy)]
pub struct ObjectContext<'a> {
    pub paths: HostPaths<'a>,
    pub env: &'a Environment,
}

pub fn secrets(
    node: &Node,
    path: &KeyPath,
    context: ObjectContext,
    warnings: &mut Vec<Warning>,
) -> Result<BTreeMap<String, FileObject>> {
    section(node, path, warnings, Subject::Secret, |node, path, cx| {
        file_object(node, path, context, false, cx)
    })
}

pub fn configs(
    node: &Node,
    path: &KeyPath,
    context: ObjectContext,
    warnings: &mut Vec<Warning>,
) -> Result<BTreeMap<String, FileObject>> {
    section(node, path, warnings, Subject::Config, |node, path, cx| {
        file_object(node, path, context, true, cx)
    })
}

fn file_object(
    node: &Node,
    path: &KeyPath,
    context: ObjectContext,
    is_config: bool,
    cx: &mut Cx,
) -> Result<FileObject> {
    let map = mapping(node, path)?;
    let empty = Mapping::default();
    let map = map.unwrap_or(&empty);
    let mut name = None;
    let mut labels_read = BTreeMap::new();
    let mut sources = Vec::new();
    let mut external_set = false;
    for (key, value) in map.iter() {
        let key_path = path.key(key);
        match key {
            "name" => name = string(value, &key_path)?,
            "labels" => labels_read = labels(value, &key_path)?,
            "external" => {
                external_set = external(value, &key_path, &mut name, cx)?;
                if external_set {
                    sources.push(("external", ObjectSource::External));
                }
            }
            "file" => {
                if let Some(file) = string(value, &key_path)? {
                    sources.push(("file", ObjectSource::File(context.paths.resolve(&file))));
                }
            }
            "content" if is_config => {
                sources.push((
                    "content",
                    ObjectSource::Inline(string(value, &key_path)?.unwrap_or_default()),
                ));
            }
            "environment" => {
                if let Some(variable) = string(value, &key_path)? {
                    let content = context.env.get(&variable).ok_or_else(|| {
                        conflict(
                            value,
                            &key_path,
                            format!("the environment variable `{variable}` it reads is not set"),
                        )
                    })?;
                    sources.push(("environment", ObjectSource::Inline(content.to_string())));
                }
            }
            _ => cx.other(
                key,
                value,
                &key_path,
                &[
                    (
                        "driver",
                        Some("secrets are kept sealed by shoal's managers"),
                    ),
                    ("driver_opts", None),
                    ("template_driver", Some("the content is used as written")),
                ],
            ),
        }
    }
    if external_set && !labels_read.is_empty() {
        return Err(conflict(
            node,
            path,
            "an external object is not created, so `labels` cannot be set on it",
        ));
    }
    let kinds = if is_config {
        "`file`, `content`, `environment` or `external: true`"
    } else {
        "`file`, `environment` or `external: true`"
    };
    let source = match sources.len() {
        0 => {
            return Err(missing(
                node,
                path,
                if is_config {
                    "file (or content, environment, external)"
                } else {
                    "file (or environment, external)"
                },
            ))
        }
        1 => sources.remove(0).1,
        _ => {
            let given: Vec<&str> = sources.iter().map(|(key, _)| *key).collect();
            return Err(conflict(
                node,
                path,
                format!("give only one of {kinds}, not {}", given.join(" and ")),
            ));
        }
    };
    Ok(FileObject {
        name,
        source,
        labels: labels_read,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::*;
    use crate::compose::yaml;

    fn paths() -> HostPaths<'static> {
        HostPaths {
            working_dir: Path::new("/srv/app"),
            home: None,
        }
    }

    fn node(text: &str) -> Node {
        yaml::parse(&Arc::from("t.yml"), &format!("v:\n{text}"))
            .unwrap()
            .as_map()
            .unwrap()
            .get("v")
            .unwrap()
            .clone()
    }

    #[test]
    fn networks_read_every_key() {
        let mut warnings = Vec::new();
        let nets = networks(
            &node(
                "  front:
  back:
    driver: overlay
    driver_opts: {encrypted: 'yes', mtu: 1400}
    attachable: true
    internal: true
    enable_ipv6: false
    labels: [tier=back]
    ipam:
      driver: default
      config: [{subnet: 172.16.238.0/24, gateway: 172.16.238.1, aux_addresses: {a: 1.2.3.4}}]
  outside: {external: true}
  old: {external: {name: my-cool-network}}
",
            ),
            &KeyPath::root().key("networks"),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(nets["front"], Network::default());
        let back = &nets["back"];
        assert_eq!(back.driver.as_deref(), Some("overlay"));
        assert_eq!(back.driver_opts["mtu"], "1400");
        assert!(back.attachable && back.internal);
        assert_eq!(back.enable_ipv6, Some(false));
        assert_eq!(back.labels["tier"], "back");
        let ipam = back.ipam.as_ref().unwrap();
        assert_eq!(ipam.config[0].subnet.as_deref(), Some("172.16.238.0/24"));
        assert!(nets["outside"].external);
        assert_eq!(nets["old"].name.as_deref(), Some("my-cool-network"));
        let texts: Vec<_> = warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            texts,
            [
                "t.yml:12: network back: key \"ipam.config[0].aux_addresses\" is not supported, ignored",
                "t.yml:14: network old: key \"external\" is deprecated, use `external: true` with `name:`",
            ]
        );
        let err = networks(
            &node("  x: {external: true, driver: overlay}\n"),
            &KeyPath::root().key("networks"),
            &mut warnings,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yml:2: networks.x: an external object is not created, so `driver` cannot be set on it"
        );
    }

    #[test]
    fn volumes_read_every_key() {
        let mut warnings = Vec::new();
        let vols = volumes(
            &node("  data:\n  named: {name: user_specified_name, driver: local, driver_opts: {type: nfs}, labels: {a: b}}\n  ext: {external: true, name: real}\n"),
            &KeyPath::root().key("volumes"),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(vols["data"], Volume::default());
        assert_eq!(vols["named"].name.as_deref(), Some("user_specified_name"));
        assert_eq!(vols["named"].driver_opts["type"], "nfs");
        assert!(vols["ext"].external);
        assert_eq!(vols["ext"].name.as_deref(), Some("real"));
        assert!(warnings.is_empty());
        assert!(volumes(
            &node("  x: {external: true, labels: {a: b}}\n"),
            &KeyPath::root().key("volumes"),
            &mut warnings
        )
        .is_err());
    }

    #[test]
    fn secrets_and_configs_need_exactly_one_source() {
        let env = Environment::from_vars([("TOKEN", "s3cret")]);
        let context = ObjectContext {
            paths: paths(),
            env: &env,
        };
        let mut warnings = Vec::new();
        let path = KeyPath::root().key("secrets");
        let read = |text: &str, warnings: &mut Vec<Warning>| {
            secrets(&node(text), &path, context, warnings)
        };
        let objects = read(
            "  file: {file: ./secret.txt, labels: {a: b}}\n  env: {environment: TOKEN, name: token}\n  ext: {external: true}\n  tmpl: {file: /x, template_driver: golang}\n",
            &mut warnings,
        )
        .unwrap();
        assert_eq!(
            objects["file"].source,
            ObjectSource::File(PathBuf::from("/srv/app/secret.txt"))
        );
        assert_eq!(objects["file"].labels["a"], "b");
        assert_eq!(objects["env"].source, ObjectSource::Inline("s3cret".into()));
        assert_eq!(objects["env"].name.as_deref(), Some("token"));
        assert_eq!(objects["ext"].source, ObjectSource::External);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0]
            .to_string()
            .contains("secret tmpl: key \"template_driver\" is not supported"));

        for (bad, expected) in [
            ("  s: {}\n", "`file (or environment, external)` is required"),
            ("  s:\n", "is required"),
            ("  s: {file: /x, external: true}\n", "give only one of"),
            (
                "  s: {environment: NOT_SET}\n",
                "`NOT_SET` it reads is not set",
            ),
            ("  s: {content: inline}\n", "is required"),
        ] {
            let err = read(bad, &mut warnings).unwrap_err();
            assert!(err.to_string().contains(expected), "{bad}: {err}");
        }
        let configs = configs(
            &node("  c: {content: 'hello'}\n"),
            &KeyPath::root().key("configs"),
            context,
            &mut warnings,
        )
        .unwrap();
        assert_eq!(configs["c"].source, ObjectSource::Inline("hello".into()));
    }
}
