//! What `node ls` and `node inspect` print: Docker's node rows (`ID`,
//! `Self`, `Hostname`, `Status`, `Availability`, `ManagerStatus`,
//! `EngineVersion`, `TLSStatus`) with the `*` on this node, Docker's `node
//! ls` filters, the inspect JSON of a Docker `Node`, and `--pretty`.

use serde_json::json;
use shoal_control::engine::{filter, Node};

use super::format::{self, natural_cmp, pretty_word, Listing, Row};

/// `node ls`: Docker's default table, `ENGINE VERSION` last (empty, as
/// the docker CLI shows it through the Engine API: shoal's agents do not
/// report a version to the managers).
pub const NODES: Listing = Listing {
    default_table: "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}",
    headers: &[
        ("ID", "ID"),
        ("Self", ""),
        ("Hostname", "HOSTNAME"),
        ("Status", "STATUS"),
        ("Availability", "AVAILABILITY"),
        ("ManagerStatus", "MANAGER STATUS"),
        ("EngineVersion", "ENGINE VERSION"),
        ("TLSStatus", "TLS STATUS"),
    ],
    row_type: "*node.nodeContext",
};

/// A `node ls` row; `self_id` is this node's id (marked `*`).
pub fn row(node: &Node, self_id: Option<&str>) -> Row {
    Row::new(json!({
        "ID": node.id,
        "Self": Some(node.id.as_str()) == self_id,
        "Hostname": node.description.hostname,
        "Status": pretty_word(&node.status.state),
        "Availability": pretty_word(&node.spec.availability),
        "ManagerStatus": node.manager_status_column(),
        "EngineVersion": node.description.engine.engine_version,
        // Docker compares the node's TLS info with the swarm's; shoal's
        // nodes do not report theirs.
        "TLSStatus": "Unknown",
    }))
}

/// `node ls` output: the nodes that pass `filters`, by hostname.
pub fn list(
    mut nodes: Vec<Node>,
    filters: &filter::Filters,
    self_id: Option<&str>,
    format: Option<&str>,
    quiet: bool,
) -> anyhow::Result<String> {
    filter::check_nodes(filters)?;
    nodes.retain(|n| filter::node_matches(filters, n));
    nodes.sort_by(|a, b| natural_cmp(&a.description.hostname, &b.description.hostname));
    let rows: Vec<Row> = nodes.iter().map(|n| row(n, self_id)).collect();
    Ok(format::list(
        &NODES,
        format::resolve(&NODES, format, quiet),
        &rows,
    )?)
}

/// `node inspect --pretty`: Docker's layout (tab-separated labels).
pub fn pretty(node: &Node) -> String {
    let mut t = String::new();
    let mut line = |text: String| {
        t.push_str(&text);
        t.push('\n');
    };
    line(format!("ID:\t\t\t{}", node.id));
    if !node.spec.name.is_empty() {
        line(format!("Name:\t\t\t{}", node.spec.name));
    }
    if let Some(labels) = node.spec.labels.as_ref().filter(|l| !l.is_empty()) {
        line("Labels:".into());
        for (k, v) in labels {
            if v.is_empty() {
                line(format!(" - {k}"));
            } else {
                line(format!(" - {k}={v}"));
            }
        }
    }
    line(format!(
        "Hostname:              \t{}",
        node.description.hostname
    ));
    line(format!(
        "Joined at:             \t{}",
        go_time_text(&node.created_at)
    ));
    line("Status:".into());
    line(format!(" State:\t\t\t{}", pretty_word(&node.status.state)));
    if !node.status.message.is_empty() {
        line(format!(" Message:              \t{}", node.status.message));
    }
    line(format!(
        " Availability:         \t{}",
        pretty_word(&node.spec.availability)
    ));
    if !node.status.addr.is_empty() {
        line(format!(" Address:\t\t{}", node.status.addr));
    }
    if let Some(manager) = &node.manager_status {
        line("Manager Status:".into());
        line(format!(" Address:\t\t{}", manager.addr));
        line(format!(
            " Raft Status:\t\t{}",
            pretty_word(&manager.reachability)
        ));
        line(format!(
            " Leader:\t\t{}",
            if manager.leader { "Yes" } else { "No" }
        ));
    }
    let description = &node.description;
    line("Platform:".into());
    line(format!(" Operating System:\t{}", description.platform.os));
    line(format!(
        " Architecture:\t\t{}",
        description.platform.architecture
    ));
    line("Resources:".into());
    line(format!(
        " CPUs:\t\t\t{}",
        description.resources.nano_cpus / 1_000_000_000
    ));
    let memory = description.resources.memory_bytes;
    line(format!(
        " Memory:\t\t{}",
        if memory == 0 {
            String::new()
        } else {
            bytes_size(memory as f64)
        }
    ));
    line(format!(
        "Engine Version:\t\t{}",
        description.engine.engine_version
    ));
    t
}

/// Go's `time.Time.String()` of an RFC 3339 UTC time, as Docker's
/// `PrettyPrint` lowercases it: `2016-06-16 22:52:44.9910662 +0000 utc`.
fn go_time_text(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(utc) => format!("{} +0000 utc", utc.replacen('T', " ", 1)),
        None => rfc3339.to_string(),
    }
}

/// go-units' `BytesSize`: binary units, four significant digits (`7.704GiB`).
fn bytes_size(mut size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{}{}", four_significant(size), UNITS[unit])
}

/// Go's `%.4g` for values below 10000.
fn four_significant(value: f64) -> String {
    let digits = if value >= 1000.0 {
        0
    } else if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use shoal_control::engine::{ManagerStatus, NodeDescription, NodeSpec, NodeStatus, Resources};

    use super::*;

    fn node(id: &str, host: &str, manager: Option<(bool, &str)>) -> Node {
        Node {
            id: id.into(),
            created_at: "2016-06-16T22:52:44.9910662Z".into(),
            spec: NodeSpec {
                labels: Some([("zone".to_string(), "a".to_string())].into()),
                role: if manager.is_some() {
                    "manager"
                } else {
                    "worker"
                }
                .into(),
                availability: "active".into(),
                ..NodeSpec::default()
            },
            description: NodeDescription {
                hostname: host.into(),
                resources: Resources {
                    nano_cpus: 2_000_000_000,
                    memory_bytes: 8_272_408_576,
                    ..Resources::default()
                },
                ..NodeDescription::default()
            },
            status: NodeStatus {
                state: "ready".into(),
                addr: "198.18.0.1".into(),
                ..NodeStatus::default()
            },
            manager_status: manager.map(|(leader, reach)| ManagerStatus {
                leader,
                reachability: reach.into(),
                addr: "198.18.0.1:2377".into(),
            }),
            ..Node::default()
        }
    }

    fn nodes() -> Vec<Node> {
        vec![
            node("38ciaotwjuritcdtn9npbnkuz", "h10", None),
            node("e216jshn25ckzbvmwlnh5jr3g", "h1", Some((true, "reachable"))),
            node(
                "1bcef6utixb0l0ca7gxuivsj0",
                "h2",
                Some((false, "unreachable")),
            ),
        ]
    }

    #[test]
    fn ls_marks_this_node_and_sorts_by_hostname() {
        let out = list(
            nodes(),
            &Default::default(),
            Some("1bcef6utixb0l0ca7gxuivsj0"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            "ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n\
             e216jshn25ckzbvmwlnh5jr3g     h1         Ready     Active         Leader           \n\
             1bcef6utixb0l0ca7gxuivsj0 *   h2         Ready     Active         Unreachable      \n\
             38ciaotwjuritcdtn9npbnkuz     h10        Ready     Active                          \n"
        );
        let out = list(
            nodes(),
            &Default::default(),
            None,
            Some("{{.Hostname}}"),
            false,
        )
        .unwrap();
        assert_eq!(out, "h1\nh2\nh10\n");
    }

    #[test]
    fn ls_filters_like_docker() {
        let by = |flags: &[&str]| -> String {
            let f = filter::Filters::parse(flags).unwrap();
            list(nodes(), &f, None, Some("{{.Hostname}}"), false).unwrap()
        };
        assert_eq!(by(&["role=manager"]), "h1\nh2\n");
        assert_eq!(by(&["name=h1"]), "h1\nh10\n");
        assert_eq!(by(&["id=e2"]), "h1\n");
        assert_eq!(by(&["node.label=zone=a", "role=worker"]), "h10\n");
        let f = filter::Filters::parse(&["colour=red"]).unwrap();
        assert_eq!(
            list(nodes(), &f, None, None, false)
                .unwrap_err()
                .to_string(),
            "Invalid filter 'colour'"
        );
    }

    #[test]
    fn pretty_is_dockers_layout() {
        let text = pretty(&nodes()[1]);
        assert_eq!(
            text,
            "ID:\t\t\te216jshn25ckzbvmwlnh5jr3g\n\
             Labels:\n - zone=a\n\
             Hostname:              \th1\n\
             Joined at:             \t2016-06-16 22:52:44.9910662 +0000 utc\n\
             Status:\n State:\t\t\tReady\n Availability:         \tActive\n Address:\t\t198.18.0.1\n\
             Manager Status:\n Address:\t\t198.18.0.1:2377\n Raft Status:\t\tReachable\n Leader:\t\tYes\n\
             Platform:\n Operating System:\t\n Architecture:\t\t\n\
             Resources:\n CPUs:\t\t\t2\n Memory:\t\t7.704GiB\n\
             Engine Version:\t\t\n"
        );
        assert_eq!(bytes_size(1024.0 * 1024.0 * 1024.0), "1GiB");
        assert_eq!(bytes_size(512.0), "512B");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
    }
}
