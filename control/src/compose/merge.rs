//! Merging several `-c` files, in order, by the Compose Specification's
//! rules: mappings merge key by key (the later file wins), most lists
//! append; `command`, `entrypoint` and `healthcheck.test` are replaced;
//! `environment`, `labels` and the like merge by key whatever form each
//! file used; `ports`, `volumes`, `secrets` and `configs` merge by their
//! unique key (address/target/published/protocol for ports, target for the
//! others); lists of names (`dns`, `cap_add`, constraints...) append
//! without repeats; `!reset` removes a key and `!override` replaces a value
//! whole. Files are merged as trees, after each was interpolated.

use super::mounts;
use super::parts::reference_merge_key;
use super::ports;
use super::yaml::{Mapping, MergeTag, Node, Value};

/// Merges `over` into `base`: both are the root mappings of files.
pub fn merge_files(base: Node, over: Node) -> Node {
    merge(base, over, &mut Vec::new())
}

/// Removes keys tagged `!reset` that no earlier file had (a `!reset` in
/// the first file, or on a key the base lacked).
pub fn drop_resets(node: &mut Node) {
    match &mut node.value {
        Value::Map(map) => {
            let reset: Vec<String> = map
                .iter()
                .filter(|(_, value)| value.tag == Some(MergeTag::Reset))
                .map(|(key, _)| key.to_string())
                .collect();
            for key in reset {
                map.remove(&key);
            }
            for (_, value) in map.iter_mut() {
                drop_resets(value);
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(drop_resets),
        Value::Null | Value::Scalar(_) => {}
    }
}

#[derive(Clone, Copy)]
enum Rule {
    /// Deep-merge mappings, append lists, replace the rest.
    Default,
    /// The later value replaces the earlier one.
    Replace,
    /// `KEY: value` pairs (a mapping or a list of `KEY=value`), merged by key.
    KeyValues,
    /// A list whose items are identified by a key.
    Keyed(fn(&Node) -> Option<String>),
    /// A list (or a single string) appended without repeats.
    Unique,
    /// A service's networks: a list of names or a mapping, merged by name.
    Networks,
}

fn rule(path: &[String]) -> Rule {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let ["services", _, rest @ ..] = path.as_slice() else {
        return Rule::Default;
    };
    match rest {
        ["command"] | ["entrypoint"] | ["healthcheck", "test"] => Rule::Replace,
        ["environment"]
        | ["labels"]
        | ["deploy", "labels"]
        | ["sysctls"]
        | ["build", "args"]
        | ["build", "labels"] => Rule::KeyValues,
        ["ports"] => Rule::Keyed(ports::merge_key),
        ["volumes"] => Rule::Keyed(mounts::merge_key),
        ["secrets"] | ["configs"] => Rule::Keyed(reference_merge_key),
        ["networks"] => Rule::Networks,
        ["networks", _, "aliases"]
        | ["dns"]
        | ["dns_search"]
        | ["dns_opt"]
        | ["env_file"]
        | ["tmpfs"]
        | ["cap_add"]
        | ["cap_drop"]
        | ["extra_hosts"]
        | ["expose"]
        | ["links"]
        | ["external_links"]
        | ["security_opt"]
        | ["devices"]
        | ["profiles"]
        | ["deploy", "placement", "constraints"]
        | ["deploy", "placement", "preferences"] => Rule::Unique,
        _ => Rule::Default,
    }
}

fn merge(base: Node, mut over: Node, path: &mut Vec<String>) -> Node {
    match over.tag.take() {
        Some(MergeTag::Override) => return over,
        Some(MergeTag::Reset) => {
            // A reset value replaces; its key is removed by the caller.
            return over;
        }
        None => {}
    }
    if over.is_null() {
        return base;
    }
    match rule(path) {
        Rule::Replace => over,
        Rule::KeyValues => {
            let at = over.at.clone();
            match (key_values(base), key_values(over)) {
                (Ok(base), Ok(over)) => {
                    Node::new(Value::Map(merge_maps(base, over, path, false)), at)
                }
                (Err(_), Ok(over)) => Node::new(Value::Map(over), at),
                // Not a valid form: kept for the typed read to report.
                (_, Err(over)) => over,
            }
        }
        Rule::Keyed(key_of) => keyed(base, over, key_of, path),
        Rule::Unique => {
            let at = over.at.clone();
            let mut items = list(base);
            for item in list(over) {
                if !items.iter().any(|existing| same(existing, &item)) {
                    items.push(item);
                }
            }
            Node::new(Value::Seq(items), at)
        }
        Rule::Networks => {
            let at = over.at.clone();
            match (names(base), names(over)) {
                (Ok(base), Ok(over)) => {
                    Node::new(Value::Map(merge_maps(base, over, path, true)), at)
                }
                (Err(_), Ok(over)) => Node::new(Value::Map(over), at),
                (_, Err(over)) => over,
            }
        }
        Rule::Default => match (base.value, over.value) {
            (Value::Map(base_map), Value::Map(over_map)) => Node::new(
                Value::Map(merge_maps(base_map, over_map, path, true)),
                over.at,
            ),
            (Value::Seq(mut base_items), Value::Seq(over_items)) => {
                base_items.extend(over_items);
                Node::new(Value::Seq(base_items), over.at)
            }
            (_, value) => Node {
                value,
                at: over.at,
                tag: None,
            },
        },
    }
}

/// Merges mappings key by key. With `deep`, values present in both merge
/// by their own rule; otherwise the later value replaces.
fn merge_maps(mut base: Mapping, over: Mapping, path: &mut Vec<String>, deep: bool) -> Mapping {
    for entry in over.into_entries() {
        if entry.value.tag == Some(MergeTag::Reset) {
            base.remove(&entry.key);
            continue;
        }
        match base.take(&entry.key) {
            Some((index, existing)) => {
                let value = if deep {
                    path.push(entry.key.clone());
                    let merged = merge(existing, entry.value, path);
                    path.pop();
                    merged
                } else {
                    Node {
                        tag: None,
                        ..entry.value
                    }
                };
                base.insert_at(index, entry.key, value);
            }
            None => base.insert(entry.key, entry.value),
        }
    }
    base
}

/// The items of a list whose entries carry a key: an item with the key of
/// an earlier one merges into it (mappings) or replaces it.
fn keyed(
    base: Node,
    over: Node,
    key_of: fn(&Node) -> Option<String>,
    path: &mut Vec<String>,
) -> Node {
    let at = over.at.clone();
    let mut items = list(base);
    for item in list(over) {
        let key = key_of(&item);
        let existing = key.as_ref().and_then(|key| {
            items
                .iter()
                .position(|old| key_of(old).as_ref() == Some(key))
        });
        match existing {
            Some(index) => {
                let old =
                    std::mem::replace(&mut items[index], Node::new(Value::Null, item.at.clone()));
                items[index] = match (&old.value, &item.value) {
                    (Value::Map(_), Value::Map(_)) => {
                        path.push("[]".to_string());
                        let merged = merge(old, item, path);
                        path.pop();
                        merged
                    }
                    _ => item,
                };
            }
            None => items.push(item),
        }
    }
    Node::new(Value::Seq(items), at)
}

/// A list, a single value as a one-item list, or a mapping as `KEY=value`
/// items.
fn list(node: Node) -> Vec<Node> {
    match node.value {
        Value::Null => Vec::new(),
        Value::Seq(items) => items,
        Value::Scalar(_) => vec![node],
        Value::Map(map) => map
            .into_entries()
            .into_iter()
            .flat_map(|entry| {
                let values = match entry.value.value {
                    Value::Seq(items) => items,
                    _ => vec![entry.value],
                };
                values.into_iter().map(move |value| {
                    let text = match &value.value {
                        Value::Scalar(text) => format!("{}={text}", entry.key),
                        _ => entry.key.clone(),
                    };
                    Node::new(Value::Scalar(text), value.at)
                })
            })
            .collect(),
    }
}

/// `KEY: value` pairs as a mapping, from either form; the node itself when
/// it is neither.
fn key_values(node: Node) -> Result<Mapping, Node> {
    let items = match node.value {
        Value::Map(map) => return Ok(map),
        Value::Seq(items) if items.iter().all(|item| item.as_scalar().is_some()) => items,
        _ => return Err(node),
    };
    let mut map = Mapping::default();
    for item in items {
        let Value::Scalar(text) = item.value else {
            continue;
        };
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key.to_string(), Value::Scalar(value.to_string())),
            None => (text, Value::Null),
        };
        map.insert(key, Node::new(value, item.at));
    }
    Ok(map)
}

/// A service's networks as a mapping, from a list of names or a mapping;
/// the node itself when it is neither.
fn names(node: Node) -> Result<Mapping, Node> {
    let items = match node.value {
        Value::Map(map) => return Ok(map),
        Value::Seq(items) if items.iter().all(|item| item.as_scalar().is_some()) => items,
        _ => return Err(node),
    };
    let mut map = Mapping::default();
    for item in items {
        if let Value::Scalar(name) = item.value {
            map.insert(name, Node::new(Value::Null, item.at));
        }
    }
    Ok(map)
}

/// Whether two nodes hold the same value, wherever they were written.
fn same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Null, Value::Null) => true,
        (Value::Scalar(x), Value::Scalar(y)) => x == y,
        (Value::Seq(xs), Value::Seq(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        (Value::Map(xs), Value::Map(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| same(x, y)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::compose::yaml;

    fn merged(files: &[&str]) -> Node {
        let mut trees = files
            .iter()
            .enumerate()
            .map(|(i, text)| yaml::parse(&Arc::from(format!("f{i}.yml")), text).unwrap());
        let first = trees.next().unwrap();
        let mut root = trees.fold(first, merge_files);
        drop_resets(&mut root);
        root
    }

    /// The merged tree written back as compact text, for comparisons.
    fn show(node: &Node) -> String {
        match &node.value {
            Value::Null => "~".into(),
            Value::Scalar(text) => text.clone(),
            Value::Seq(items) => format!(
                "[{}]",
                items.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
            Value::Map(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{k}: {}", show(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn service(root: &Node, name: &str) -> String {
        show(
            root.as_map()
                .unwrap()
                .get("services")
                .unwrap()
                .as_map()
                .unwrap()
                .get(name)
                .unwrap(),
        )
    }

    #[test]
    fn mappings_merge_scalars_override_and_lists_append() {
        let root = merged(&[
            "services:\n  web:\n    image: a\n    user: www\n    deploy: {replicas: 1, resources: {limits: {memory: 1g}}}\n    annotations: [x]\n",
            "services:\n  web:\n    image: b\n    deploy: {replicas: 3, resources: {limits: {cpus: '1'}}}\n    annotations: [y]\n  db:\n    image: pg\n",
        ]);
        assert_eq!(
            service(&root, "web"),
            "{image: b, user: www, deploy: {replicas: 3, resources: {limits: {memory: 1g, cpus: 1}}}, annotations: [x, y]}"
        );
        assert_eq!(service(&root, "db"), "{image: pg}");
    }

    #[test]
    fn commands_are_replaced_and_key_values_merge_across_forms() {
        let root = merged(&[
            "services:\n  web:\n    command: [echo, foo]\n    healthcheck: {test: [CMD, a], interval: 5s}\n    environment: {A: '1', B: '2'}\n    labels: [x=1]\n",
            "services:\n  web:\n    command: [echo, bar]\n    healthcheck: {test: [CMD, b]}\n    environment: [B=3, C]\n    labels: {y: '2'}\n",
        ]);
        assert_eq!(
            service(&root, "web"),
            "{command: [echo, bar], healthcheck: {test: [CMD, b], interval: 5s}, environment: {A: 1, B: 3, C: ~}, labels: {x: 1, y: 2}}"
        );
    }

    #[test]
    fn ports_volumes_secrets_and_configs_merge_by_their_key() {
        let root = merged(&[
            "services:\n  web:\n    ports: ['8080:80', '9000:9000/udp']\n    volumes: ['foo:/work', '/a:/a']\n    secrets: [s1, {source: s2, target: t}]\n    configs: [c1]\n",
            "services:\n  web:\n    ports: [{target: 80, published: 8080, mode: host}, '9000:9000']\n    volumes: ['bar:/work']\n    secrets: [{source: s3, target: t}, s4]\n    configs: [{source: c1, mode: '0400'}]\n",
        ]);
        assert_eq!(
            service(&root, "web"),
            "{ports: [{target: 80, published: 8080, mode: host}, 9000:9000/udp, 9000:9000], volumes: [bar:/work, /a:/a], secrets: [s1, {source: s3, target: t}, s4], configs: [{source: c1, mode: 0400}]}"
        );
    }

    #[test]
    fn networks_and_name_lists_merge_without_repeats() {
        let root = merged(&[
            "services:\n  web:\n    networks: [front]\n    dns: 8.8.8.8\n    cap_add: [NET_ADMIN]\n    deploy: {placement: {constraints: [node.role == worker]}}\n",
            "services:\n  web:\n    networks: {front: {aliases: [www]}, back: }\n    dns: [8.8.8.8, 1.1.1.1]\n    cap_add: [NET_ADMIN, SYS_TIME]\n    deploy: {placement: {constraints: [node.role == worker, node.labels.az == a]}}\n",
            "services:\n  web:\n    networks: {front: {aliases: [www, web2]}}\n",
        ]);
        assert_eq!(
            service(&root, "web"),
            "{networks: {front: {aliases: [www, web2]}, back: ~}, dns: [8.8.8.8, 1.1.1.1], cap_add: [NET_ADMIN, SYS_TIME], deploy: {placement: {constraints: [node.role == worker, node.labels.az == a]}}}"
        );
    }

    #[test]
    fn reset_and_override_tags() {
        let root = merged(&[
            "services:\n  web:\n    image: a\n    ports: ['8080:80']\n    environment: {FOO: bar, KEEP: x}\n    volumes: ['a:/a']\n",
            "services:\n  web:\n    ports: !reset []\n    environment:\n      FOO: !reset null\n    volumes: !override ['b:/b']\n    user: !reset root\n",
        ]);
        assert_eq!(
            service(&root, "web"),
            "{image: a, environment: {KEEP: x}, volumes: [b:/b]}"
        );
        // A null in a later file changes nothing.
        let root = merged(&[
            "services:\n  web:\n    image: a\n",
            "services:\n  web:\n    image:\n",
        ]);
        assert_eq!(service(&root, "web"), "{image: a}");
    }

    #[test]
    fn top_level_sections_merge_deeply() {
        let root = merged(&[
            "services: {}\nnetworks:\n  front: {driver: overlay, labels: {a: '1'}}\nvolumes:\n  data:\n",
            "services: {}\nnetworks:\n  front: {attachable: true, labels: {b: '2'}}\nvolumes:\n  data: {driver: local}\n",
        ]);
        let map = root.as_map().unwrap();
        assert_eq!(
            show(map.get("networks").unwrap()),
            "{front: {driver: overlay, labels: {a: 1, b: 2}, attachable: true}}"
        );
        assert_eq!(show(map.get("volumes").unwrap()), "{data: {driver: local}}");
    }
}
