//! The parts of a service that refer to something: its `networks:` (list,
//! or mapping with aliases), `secrets:` and `configs:` (short name or long
//! `{source, target, uid, gid, mode}`), and its `healthcheck:`.

use std::collections::BTreeMap;

use super::model::{FileReference, HealthTest, Healthcheck, ServiceNetwork};
use super::path::KeyPath;
use super::read::{
    boolean, conflict, duration, invalid, labels, mapping, missing, string, string_list, uint,
    wrong_type, Cx, Result,
};
use super::units::parse_mode;
use super::yaml::{Node, Value};

/// Reads a service's `networks:`, by their key in the file.
pub fn service_networks(
    node: &Node,
    path: &KeyPath,
    cx: &mut Cx,
) -> Result<BTreeMap<String, ServiceNetwork>> {
    let mut networks = BTreeMap::new();
    match &node.value {
        Value::Null => {}
        Value::Seq(_) => {
            for name in string_list(node, path)? {
                networks.insert(name, ServiceNetwork::default());
            }
        }
        Value::Map(map) => {
            for (name, value) in map.iter() {
                let path = path.key(name);
                let mut network = ServiceNetwork::default();
                if let Some(options) = mapping(value, &path)? {
                    for (key, value) in options.iter() {
                        let path = path.key(key);
                        match key {
                            "aliases" => network.aliases = string_list(value, &path)?,
                            "ipv4_address" => network.ipv4_address = string(value, &path)?,
                            "ipv6_address" => network.ipv6_address = string(value, &path)?,
                            "driver_opts" => network.driver_opts = labels(value, &path)?,
                            _ => cx.other(
                                key,
                                value,
                                &path,
                                &[
                                    ("priority", None),
                                    ("gw_priority", None),
                                    ("link_local_ips", None),
                                    ("mac_address", None),
                                    ("interface_name", None),
                                ],
                            ),
                        }
                    }
                }
                networks.insert(name.to_string(), network);
            }
        }
        Value::Scalar(_) => return Err(wrong_type(node, path, "a list of networks or a mapping")),
    }
    Ok(networks)
}

/// Reads a service's `secrets:` or `configs:`.
pub fn file_references(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Vec<FileReference>> {
    let items = match &node.value {
        Value::Null => return Ok(Vec::new()),
        Value::Seq(items) => items,
        _ => return Err(wrong_type(node, path, "a list")),
    };
    let mut references = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        let reference = match &item.value {
            Value::Scalar(source) => FileReference {
                source: source.clone(),
                ..FileReference::default()
            },
            Value::Map(map) => {
                let mut reference = FileReference::default();
                let mut source = None;
                for (key, value) in map.iter() {
                    let path = path.key(key);
                    match key {
                        "source" => source = string(value, &path)?,
                        "target" => reference.target = string(value, &path)?,
                        "uid" => reference.uid = string(value, &path)?,
                        "gid" => reference.gid = string(value, &path)?,
                        "mode" => {
                            if let Some(text) = string(value, &path)? {
                                reference.mode = Some(parse_mode(&text).ok_or_else(|| {
                                    invalid(
                                        value,
                                        &path,
                                        &text,
                                        "a file mode such as 0440 (octal) or 288",
                                    )
                                })?);
                            }
                        }
                        _ => cx.other(key, value, &path, &[]),
                    }
                }
                reference.source = source.ok_or_else(|| missing(item, &path, "source"))?;
                reference
            }
            _ => {
                return Err(wrong_type(
                    item,
                    &path,
                    "a name or {source, target, uid, gid, mode}",
                ))
            }
        };
        references.push(reference);
    }
    Ok(references)
}

/// The target identifying a `secrets:`/`configs:` entry when files are
/// merged: `target`, else the source.
pub fn reference_merge_key(node: &Node) -> Option<String> {
    match &node.value {
        Value::Scalar(source) => Some(source.clone()),
        Value::Map(map) => map
            .get("target")
            .or_else(|| map.get("source"))
            .and_then(Node::as_scalar)
            .map(str::to_string),
        _ => None,
    }
}

pub fn healthcheck(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Option<Healthcheck>> {
    let Some(map) = mapping(node, path)? else {
        return Ok(None);
    };
    let mut check = Healthcheck {
        test: HealthTest::Inherit,
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
        start_interval: None,
    };
    let mut disable = None;
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "test" => check.test = health_test(value, &path)?,
            "interval" => check.interval = duration(value, &path)?,
            "timeout" => check.timeout = duration(value, &path)?,
            "retries" => check.retries = uint(value, &path)?,
            "start_period" => check.start_period = duration(value, &path)?,
            "start_interval" => check.start_interval = duration(value, &path)?,
            "disable" => disable = boolean(value, &path)?.map(|d| (d, value)),
            _ => cx.other(key, value, &path, &[]),
        }
    }
    if let Some((true, value)) = disable {
        if !matches!(check.test, HealthTest::Inherit | HealthTest::Disabled) {
            return Err(conflict(
                value,
                &path.key("disable"),
                "`disable: true` and a `test:` cannot be set together",
            ));
        }
        check.test = HealthTest::Disabled;
    }
    Ok(Some(check))
}

fn health_test(node: &Node, path: &KeyPath) -> Result<HealthTest> {
    match &node.value {
        Value::Null => Ok(HealthTest::Inherit),
        Value::Scalar(text) => Ok(HealthTest::Shell(text.clone())),
        Value::Seq(_) => {
            let words = string_list(node, path)?;
            match words.split_first() {
                None => Ok(HealthTest::Inherit),
                Some((first, [])) if first == "NONE" => Ok(HealthTest::Disabled),
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => Ok(HealthTest::Exec(rest.to_vec())),
                Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => Ok(HealthTest::Shell(rest.join(" "))),
                Some(_) => Err(invalid(
                    node,
                    path,
                    &words.join(" "),
                    "a command string, [\"CMD\", ARGS...], [\"CMD-SHELL\", \"COMMAND\"] or [\"NONE\"]",
                )),
            }
        }
        Value::Map(_) => Err(wrong_type(node, path, "a string or a list")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::compose::error::{Subject, Warning};
    use crate::compose::yaml;

    fn node(text: &str) -> Node {
        let root = yaml::parse(&Arc::from("t.yml"), &format!("v: {text}\n")).unwrap();
        root.as_map().unwrap().get("v").unwrap().clone()
    }

    fn with_cx<T>(f: impl FnOnce(&mut Cx, &KeyPath) -> T) -> (T, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut cx = Cx {
            subject: Subject::Service("web".into()),
            warnings: &mut warnings,
        };
        let path = KeyPath::root()
            .key("services")
            .key("web")
            .subject()
            .key("v");
        let result = f(&mut cx, &path);
        (result, warnings)
    }

    #[test]
    fn networks_as_a_list_or_with_aliases() {
        let (list, _) = with_cx(|cx, path| service_networks(&node("[front, back]"), path, cx));
        assert_eq!(list.unwrap().keys().collect::<Vec<_>>(), ["back", "front"]);
        let (map, warnings) = with_cx(|cx, path| {
            service_networks(
                &node(
                    "{front: {aliases: [www, web2], ipv4_address: 10.0.0.9, priority: 3}, back: }",
                ),
                path,
                cx,
            )
        });
        let map = map.unwrap();
        assert_eq!(map["front"].aliases, ["www", "web2"]);
        assert_eq!(map["front"].ipv4_address.as_deref(), Some("10.0.0.9"));
        assert_eq!(map["back"], ServiceNetwork::default());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0]
            .to_string()
            .contains("key \"v.front.priority\" is not supported"));
    }

    #[test]
    fn secrets_and_configs_short_and_long() {
        let (refs, _) = with_cx(|cx, path| {
            file_references(
                &node("[db_password, {source: cert, target: /etc/tls/cert.pem, uid: '103', gid: 103, mode: 0440}]"),
                path,
                cx,
            )
        });
        assert_eq!(
            refs.unwrap(),
            vec![
                FileReference {
                    source: "db_password".into(),
                    ..FileReference::default()
                },
                FileReference {
                    source: "cert".into(),
                    target: Some("/etc/tls/cert.pem".into()),
                    uid: Some("103".into()),
                    gid: Some("103".into()),
                    mode: Some(0o440),
                },
            ]
        );
        let (err, _) = with_cx(|cx, path| file_references(&node("[{target: x}]"), path, cx));
        assert_eq!(
            err.unwrap_err().to_string(),
            "t.yml:1: services.web.v[0]: `source` is required"
        );
        let (err, _) =
            with_cx(|cx, path| file_references(&node("[{source: x, mode: rwx}]"), path, cx));
        assert!(err.unwrap_err().to_string().contains("a file mode"));
        assert_eq!(reference_merge_key(&node("x")).as_deref(), Some("x"));
        assert_eq!(
            reference_merge_key(&node("{source: x, target: y}")).as_deref(),
            Some("y")
        );
        assert_eq!(
            reference_merge_key(&node("{source: x}")).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn healthchecks_in_every_form() {
        let read = |text: &str| with_cx(|cx, path| healthcheck(&node(text), path, cx)).0;
        let check = read("{test: [CMD, curl, -f, 'http://localhost'], interval: 15s, timeout: 5s, retries: 3, start_period: 10s, start_interval: 1s}")
            .unwrap()
            .unwrap();
        assert_eq!(
            check,
            Healthcheck {
                test: HealthTest::Exec(vec!["curl".into(), "-f".into(), "http://localhost".into()]),
                interval: Some(Duration::from_secs(15)),
                timeout: Some(Duration::from_secs(5)),
                retries: Some(3),
                start_period: Some(Duration::from_secs(10)),
                start_interval: Some(Duration::from_secs(1)),
            }
        );
        let test = |text: &str| read(text).unwrap().unwrap().test;
        assert_eq!(
            test("{test: /healthchecks/redis.sh}"),
            HealthTest::Shell("/healthchecks/redis.sh".into())
        );
        assert_eq!(
            test("{test: [CMD-SHELL, 'pg_isready -U postgres']}"),
            HealthTest::Shell("pg_isready -U postgres".into())
        );
        assert_eq!(test("{test: [NONE]}"), HealthTest::Disabled);
        assert_eq!(test("{disable: true}"), HealthTest::Disabled);
        assert_eq!(test("{interval: 5s}"), HealthTest::Inherit);
        assert_eq!(test("{test: [], disable: false}"), HealthTest::Inherit);
        assert!(read("{test: [CMD, x], disable: true}").is_err());
        assert!(read("{test: [curl, x]}").is_err());
        assert!(read("{test: [CMD]}").is_err());
        assert!(read("{interval: 5}").is_err());
    }
}
