//! `ports:` in both syntaxes. Short: `[[IP:]PUBLISHED:]TARGET[/PROTOCOL]`,
//! each port a number or a range (`9090-9091:8080-8081` publishes two),
//! IPv6 addresses in brackets. Long: `{target, published, protocol, mode,
//! host_ip}`.

use std::net::IpAddr;

use super::model::{Port, Protocol, PublishMode};
use super::path::KeyPath;
use super::read::{conflict, invalid, missing, string, wrong_type, Cx, Result};
use super::yaml::{Node, Value};

const SHORT_FORM: &str = "[[IP:]PUBLISHED:]TARGET[/PROTOCOL] with ports 1-65535 or ranges, such as 8080:80, 8080:80/udp, 9090-9091:8080-8081 or 127.0.0.1:8080:80";

/// Reads a service's `ports:`.
pub fn ports(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Vec<Port>> {
    let items = match &node.value {
        Value::Null => return Ok(Vec::new()),
        Value::Seq(items) => items,
        _ => return Err(wrong_type(node, path, "a list of ports")),
    };
    let mut ports = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        let mut parsed = match &item.value {
            Value::Scalar(text) => {
                short(text).ok_or_else(|| invalid(item, &path, text, SHORT_FORM))?
            }
            Value::Map(_) => vec![long(item, &path, cx)?],
            _ => return Err(wrong_type(item, &path, "a port as a string or a mapping")),
        };
        if let Some(ip) = parsed.first().and_then(|p| p.host_ip) {
            cx.ignored_value(
                item,
                &path,
                &ip.to_string(),
                "Swarm publishes ports on every address of a node; the address is ignored",
            );
        }
        ports.append(&mut parsed);
    }
    Ok(ports)
}

/// The identity of a port entry when files are merged: address, target,
/// published and protocol (all ports of a range), or `None` when it does
/// not parse (the typed read reports that).
pub fn merge_key(node: &Node) -> Option<String> {
    let ports = match &node.value {
        Value::Scalar(text) => short(text)?,
        Value::Map(map) => {
            let field = |key: &str| map.get(key).and_then(Node::as_scalar).unwrap_or("");
            return Some(format!(
                "{}|{}|{}|{}",
                field("host_ip"),
                field("target"),
                field("published"),
                field("protocol").to_ascii_lowercase().replace("tcp", "")
            ));
        }
        _ => return None,
    };
    let first = ports.first()?;
    let (target, published) = (
        ports
            .iter()
            .map(|p| p.target.to_string())
            .collect::<Vec<_>>()
            .join(","),
        ports
            .iter()
            .map(|p| p.published.map(|n| n.to_string()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
    );
    let protocol = match first.protocol {
        Protocol::Tcp => "",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    };
    let ip = first.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
    Some(format!("{ip}|{target}|{published}|{protocol}"))
}

fn protocol(text: &str) -> Option<Protocol> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// A port number or an inclusive range `a-b`.
fn range(text: &str) -> Option<(u16, u16)> {
    let (start, end) = match text.split_once('-') {
        Some((start, end)) => (start.parse().ok()?, end.parse().ok()?),
        None => {
            let port = text.parse().ok()?;
            (port, port)
        }
    };
    (start > 0 && start <= end).then_some((start, end))
}

/// Parses the short syntax into one port per target port.
fn short(text: &str) -> Option<Vec<Port>> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, protocol(proto)?),
        None => (text, Protocol::Tcp),
    };
    // The target and published ports are the last two fields; whatever
    // is before them is the address (IPv6 ones have colons of their own).
    let mut fields = spec.rsplitn(3, ':');
    let target = fields.next()?;
    let published = fields.next();
    let ip = match fields.next() {
        Some(ip) => {
            let ip = ip
                .strip_prefix('[')
                .and_then(|ip| ip.strip_suffix(']'))
                .unwrap_or(ip);
            Some(ip.parse::<IpAddr>().ok()?)
        }
        None => None,
    };
    let (target_start, target_end) = range(target)?;
    let published = match published {
        None | Some("") => None,
        Some(published) => Some(range(published)?),
    };
    let count = target_end - target_start;
    if let Some((start, end)) = published {
        if end - start != count {
            return None;
        }
    }
    Some(
        (0..=count)
            .map(|offset| Port {
                target: target_start + offset,
                published: published.map(|(start, _)| start + offset),
                protocol,
                mode: PublishMode::Ingress,
                host_ip: ip,
            })
            .collect(),
    )
}

fn long(node: &Node, path: &KeyPath, cx: &mut Cx) -> Result<Port> {
    let mut port = Port {
        target: 0,
        published: None,
        protocol: Protocol::Tcp,
        mode: PublishMode::Ingress,
        host_ip: None,
    };
    let Value::Map(map) = &node.value else {
        return Err(wrong_type(node, path, "a mapping"));
    };
    let number = |value: &Node, path: &KeyPath| -> Result<Option<u16>> {
        let Some(text) = string(value, path)? else {
            return Ok(None);
        };
        match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(invalid(value, path, &text, "a port number, 1-65535")),
        }
    };
    let mut target = None;
    for (key, value) in map.iter() {
        let path = path.key(key);
        match key {
            "target" => target = number(value, &path)?,
            "published" => {
                let text = string(value, &path)?.unwrap_or_default();
                if let Some((start, end)) = text
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
                {
                    if start != end {
                        return Err(conflict(
                            value,
                            &path,
                            format!("a published range ({start}-{end}) needs as many target ports: use the short syntax `{start}-{end}:A-B`"),
                        ));
                    }
                    port.published = Some(start);
                } else {
                    port.published = number(value, &path)?;
                }
            }
            "protocol" => {
                if let Some(text) = string(value, &path)? {
                    port.protocol = protocol(&text)
                        .ok_or_else(|| invalid(value, &path, &text, "tcp, udp or sctp"))?;
                }
            }
            "mode" => {
                if let Some(text) = string(value, &path)? {
                    port.mode = match text.as_str() {
                        "ingress" => PublishMode::Ingress,
                        "host" => PublishMode::Host,
                        _ => return Err(invalid(value, &path, &text, "ingress or host")),
                    };
                }
            }
            "host_ip" => {
                if let Some(text) = string(value, &path)? {
                    port.host_ip = Some(
                        text.parse()
                            .map_err(|_| invalid(value, &path, &text, "an IP address"))?,
                    );
                }
            }
            _ => cx.other(
                key,
                value,
                &path,
                &[
                    ("name", Some("Swarm ports have no name")),
                    ("app_protocol", None),
                ],
            ),
        }
    }
    port.target = target.ok_or_else(|| missing(node, path, "target"))?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::compose::error::{ComposeError, Subject, WarningKind};
    use crate::compose::yaml;

    fn node(text: &str) -> Node {
        let root = yaml::parse(&Arc::from("t.yml"), &format!("ports: {text}\n")).unwrap();
        root.as_map().unwrap().get("ports").unwrap().clone()
    }

    fn read(text: &str) -> (Result<Vec<Port>>, Vec<crate::compose::error::Warning>) {
        let mut warnings = Vec::new();
        let mut cx = Cx {
            subject: Subject::Service("web".into()),
            warnings: &mut warnings,
        };
        let path = KeyPath::root()
            .key("services")
            .key("web")
            .subject()
            .key("ports");
        let result = ports(&node(text), &path, &mut cx);
        (result, warnings)
    }

    fn port(target: u16, published: Option<u16>) -> Port {
        Port {
            target,
            published,
            protocol: Protocol::Tcp,
            mode: PublishMode::Ingress,
            host_ip: None,
        }
    }

    #[test]
    fn short_syntax_covers_every_form() {
        let (ports, warnings) = read(
            r#"[3000, "3001-3002", "8000:8000", "9090-9091:8080-8081", 49100:22, "6060:6060/udp", "127.0.0.1::80", "[::1]:6001:6001/sctp", "0.0.0.0:5000-5001:5000-5001"]"#,
        );
        let ports = ports.unwrap();
        let udp = Port {
            protocol: Protocol::Udp,
            ..port(6060, Some(6060))
        };
        let expected = vec![
            port(3000, None),
            port(3001, None),
            port(3002, None),
            port(8000, Some(8000)),
            port(8080, Some(9090)),
            port(8081, Some(9091)),
            port(22, Some(49100)),
            udp,
            Port {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                ..port(80, None)
            },
            Port {
                host_ip: Some("::1".parse().unwrap()),
                protocol: Protocol::Sctp,
                ..port(6001, Some(6001))
            },
            Port {
                host_ip: Some("0.0.0.0".parse().unwrap()),
                ..port(5000, Some(5000))
            },
            Port {
                host_ip: Some("0.0.0.0".parse().unwrap()),
                ..port(5001, Some(5001))
            },
        ];
        assert_eq!(ports, expected);
        // One warning per entry with an address.
        assert_eq!(warnings.len(), 3);
        assert!(warnings[0]
            .to_string()
            .contains("ports[6]: \"127.0.0.1\": Swarm publishes"));
    }

    #[test]
    fn long_syntax_reads_every_field() {
        let (ports, warnings) = read(
            "[{target: 80, published: 8080, protocol: udp, mode: host}, {target: 443, published: '8443-8443', name: https}]",
        );
        assert_eq!(
            ports.unwrap(),
            vec![
                Port {
                    protocol: Protocol::Udp,
                    mode: PublishMode::Host,
                    ..port(80, Some(8080))
                },
                port(443, Some(8443)),
            ]
        );
        assert_eq!(warnings.len(), 1);
        assert!(
            matches!(&warnings[0].kind, WarningKind::Unsupported { key, .. } if key == "ports[1].name")
        );
    }

    #[test]
    fn invalid_ports_are_errors_with_the_path() {
        for bad in [
            "['80:80:80:80']",
            "['0']",
            "['70000']",
            "['80/http']",
            "['9090-9092:8080-8081']",
            "['8081-8080']",
            "['bad.ip:80:80']",
            "[{published: 80}]",
            "[{target: 80, mode: bridge}]",
            "[{target: 80, published: 8080-8081}]",
            "[[80]]",
            "80",
        ] {
            let (result, _) = read(bad);
            let err = result.expect_err(bad);
            assert!(
                err.to_string().contains("services.web.ports"),
                "{bad}: {err}"
            );
            assert!(
                matches!(
                    err,
                    ComposeError::InvalidValue { .. }
                        | ComposeError::MissingKey { .. }
                        | ComposeError::Conflict { .. }
                        | ComposeError::WrongType { .. }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn merge_keys_identify_the_same_port() {
        let key = |text: &str| merge_key(&node(text));
        assert_eq!(key("'8080:80'"), key("'8080:80/tcp'"));
        assert_ne!(key("'8080:80'"), key("'8080:80/udp'"));
        assert_ne!(key("'8080:80'"), key("'8081:80'"));
        assert_eq!(
            key("{target: 80, published: 8080}"),
            key("{target: 80, published: 8080, protocol: tcp}")
        );
        assert_eq!(key("nonsense"), None);
    }
}
