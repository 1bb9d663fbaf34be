//! Reading typed values out of the YAML tree: each reader takes a node and
//! its key path, and fails with an error naming the file, line, path and
//! the expected form. [`Cx`] collects the warnings of one subject.

use super::error::{ComposeError, Subject, Warning, WarningKind};
use super::path::KeyPath;
use super::units::{parse_bytes, parse_duration, split_words, SplitError};
use super::yaml::{Mapping, Node, Value};
use std::time::Duration;

pub type Result<T> = std::result::Result<T, ComposeError>;

pub fn wrong_type(node: &Node, path: &KeyPath, expected: &'static str) -> ComposeError {
    ComposeError::WrongType {
        at: node.at.clone(),
        path: path.to_string(),
        expected,
        found: node.kind(),
    }
}

pub fn invalid(
    node: &Node,
    path: &KeyPath,
    value: &str,
    expected: impl Into<String>,
) -> ComposeError {
    ComposeError::InvalidValue {
        at: node.at.clone(),
        path: path.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

pub fn conflict(node: &Node, path: &KeyPath, conflict: impl Into<String>) -> ComposeError {
    ComposeError::Conflict {
        at: node.at.clone(),
        path: path.to_string(),
        conflict: conflict.into(),
    }
}

pub fn missing(node: &Node, path: &KeyPath, key: &'static str) -> ComposeError {
    ComposeError::MissingKey {
        at: node.at.clone(),
        path: path.to_string(),
        key,
    }
}

/// A string; `None` for a null (an empty `key:`).
pub fn string(node: &Node, path: &KeyPath) -> Result<Option<String>> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Scalar(text) => Ok(Some(text.clone())),
        _ => Err(wrong_type(node, path, "a string")),
    }
}

/// `true`/`false` (also YAML 1.1's `yes`/`no`/`on`/`off`), any case.
pub fn boolean(node: &Node, path: &KeyPath) -> Result<Option<bool>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(Some(true)),
        "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(invalid(node, path, &text, "true or false")),
    }
}

/// A non-negative integer.
pub fn uint(node: &Node, path: &KeyPath) -> Result<Option<u64>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|_| invalid(node, path, &text, "a whole number, 0 or more"))
}

/// A number such as `0.3`.
pub fn float(node: &Node, path: &KeyPath) -> Result<Option<f64>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Some(value)),
        _ => Err(invalid(node, path, &text, "a number such as 0.3")),
    }
}

pub fn duration(node: &Node, path: &KeyPath) -> Result<Option<Duration>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    parse_duration(&text).map(Some).ok_or_else(|| {
        invalid(
            node,
            path,
            &text,
            "a duration with units, such as 10s, 1m30s, 500ms or 1h",
        )
    })
}

pub fn bytes(node: &Node, path: &KeyPath) -> Result<Option<u64>> {
    let Some(text) = string(node, path)? else {
        return Ok(None);
    };
    parse_bytes(&text).map(Some).ok_or_else(|| {
        invalid(
            node,
            path,
            &text,
            "a size such as 512M, 1.5g or 1024 (bytes)",
        )
    })
}

/// A list of strings.
pub fn string_list(node: &Node, path: &KeyPath) -> Result<Vec<String>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match &item.value {
                Value::Scalar(text) => Ok(text.clone()),
                _ => Err(wrong_type(item, &path.index(i), "a string")),
            })
            .collect(),
        _ => Err(wrong_type(node, path, "a list of strings")),
    }
}

/// A string or a list of strings (`dns: 8.8.8.8`).
pub fn string_or_list(node: &Node, path: &KeyPath) -> Result<Vec<String>> {
    match &node.value {
        Value::Scalar(text) => Ok(vec![text.clone()]),
        Value::Seq(_) | Value::Null => string_list(node, path),
        _ => Err(wrong_type(node, path, "a string or a list of strings")),
    }
}

/// A mapping; `None` for a null.
pub fn mapping<'n>(node: &'n Node, path: &KeyPath) -> Result<Option<&'n Mapping>> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Map(map) => Ok(Some(map)),
        _ => Err(wrong_type(node, path, "a mapping")),
    }
}

/// `KEY: value` pairs, written as a mapping or as a list of `KEY=value`.
/// A value is `None` when the key stands alone (`KEY:` or `- KEY`).
pub fn key_values(node: &Node, path: &KeyPath) -> Result<Vec<(String, Option<String>)>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Map(map) => map
            .iter()
            .map(|(key, value)| match &value.value {
                Value::Null => Ok((key.to_string(), None)),
                Value::Scalar(text) => Ok((key.to_string(), Some(text.clone()))),
                _ => Err(wrong_type(
                    value,
                    &path.key(key),
                    "a string, a number or nothing",
                )),
            })
            .collect(),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let text = match &item.value {
                    Value::Scalar(text) => text,
                    _ => return Err(wrong_type(item, &path.index(i), "a string KEY=VALUE")),
                };
                match text.split_once('=') {
                    Some((key, value)) => Ok((key.to_string(), Some(value.to_string()))),
                    None => Ok((text.clone(), None)),
                }
            })
            .collect(),
        Value::Scalar(_) => Err(wrong_type(node, path, "a mapping or a list of KEY=VALUE")),
    }
}

/// Labels and options: `KEY: value` pairs where a missing value is empty.
pub fn labels(node: &Node, path: &KeyPath) -> Result<std::collections::BTreeMap<String, String>> {
    Ok(key_values(node, path)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A command: a list of words, or one string split as a shell would.
pub fn command(node: &Node, path: &KeyPath) -> Result<Option<Vec<String>>> {
    match &node.value {
        Value::Null => Ok(None),
        Value::Seq(_) => string_list(node, path).map(Some),
        Value::Scalar(text) => split_words(text).map(Some).map_err(|e| {
            let problem = match e {
                SplitError::UnclosedQuote(quote) => {
                    format!("a command whose {quote} quotes are closed")
                }
                SplitError::TrailingBackslash => "a command not ending in a lone `\\`".to_string(),
            };
            invalid(node, path, text, problem)
        }),
        Value::Map(_) => Err(wrong_type(node, path, "a string or a list of strings")),
    }
}

/// The warnings of one subject (a service, a network...).
pub struct Cx<'w> {
    pub subject: Subject,
    pub warnings: &'w mut Vec<Warning>,
}

impl Cx<'_> {
    pub fn warn(&mut self, node: &Node, kind: WarningKind) {
        self.warnings.push(Warning {
            at: Some(node.at.clone()),
            subject: self.subject.clone(),
            kind,
        });
    }

    /// A key the reader does not act on: `x-` extensions are the file's
    /// own and pass silently; known Compose keys shoal does not support,
    /// and unknown keys, get a warning naming them.
    pub fn other(
        &mut self,
        key: &str,
        node: &Node,
        path: &KeyPath,
        unsupported: &[(&str, Option<&'static str>)],
    ) {
        if key.starts_with("x-") {
            return;
        }
        let relative = path.relative().to_string();
        let kind = match unsupported.iter().find(|(name, _)| *name == key) {
            Some((_, hint)) => WarningKind::Unsupported {
                key: relative,
                hint: *hint,
            },
            None => WarningKind::Unknown { key: relative },
        };
        self.warn(node, kind);
    }

    pub fn ignored_value(
        &mut self,
        node: &Node,
        path: &KeyPath,
        value: &str,
        reason: &'static str,
    ) {
        self.warn(
            node,
            WarningKind::IgnoredValue {
                key: path.relative().to_string(),
                value: value.to_string(),
                reason,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::compose::yaml;

    fn node(text: &str) -> Node {
        let root = yaml::parse(&Arc::from("t.yml"), &format!("v: {text}\n")).unwrap();
        root.as_map().unwrap().get("v").unwrap().clone()
    }

    fn path() -> KeyPath {
        KeyPath::root()
            .key("services")
            .key("web")
            .subject()
            .key("v")
    }

    #[test]
    fn scalars_read_as_the_key_needs() {
        assert_eq!(boolean(&node("yes"), &path()).unwrap(), Some(true));
        assert_eq!(boolean(&node("'False'"), &path()).unwrap(), Some(false));
        assert_eq!(boolean(&node(""), &path()).unwrap(), None);
        assert_eq!(uint(&node("42"), &path()).unwrap(), Some(42));
        assert_eq!(float(&node("0.25"), &path()).unwrap(), Some(0.25));
        assert_eq!(
            duration(&node("1m"), &path()).unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(bytes(&node("1k"), &path()).unwrap(), Some(1024));
        assert_eq!(
            string_or_list(&node("8.8.8.8"), &path()).unwrap(),
            ["8.8.8.8"]
        );
        assert_eq!(
            string_or_list(&node("[a, b]"), &path()).unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            command(&node("sh -c 'a b'"), &path()).unwrap(),
            Some(vec!["sh".into(), "-c".into(), "a b".into()])
        );
        assert_eq!(
            command(&node("[sh, -c, 'a b']"), &path()).unwrap(),
            Some(vec!["sh".into(), "-c".into(), "a b".into()])
        );
    }

    #[test]
    fn key_values_read_both_forms() {
        let expected = vec![
            ("A".to_string(), Some("1".to_string())),
            ("B".to_string(), Some("x=y".to_string())),
            ("C".to_string(), None),
            ("D".to_string(), Some(String::new())),
        ];
        assert_eq!(
            key_values(&node("{A: 1, B: x=y, C: , D: ''}"), &path()).unwrap(),
            expected
        );
        assert_eq!(
            key_values(&node("[A=1, B=x=y, C, D=]"), &path()).unwrap(),
            expected
        );
    }

    #[test]
    fn errors_name_the_file_line_path_and_expected_form() {
        let err = boolean(&node("maybe"), &path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yml:1: services.web.v: invalid value `maybe`: expected true or false"
        );
        let err = uint(&node("-1"), &path()).unwrap_err();
        assert!(err.to_string().contains("expected a whole number"), "{err}");
        let err = duration(&node("10"), &path()).unwrap_err();
        assert!(err.to_string().contains("such as 10s"), "{err}");
        let err = string(&node("[a]"), &path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yml:1: services.web.v: expected a string, found a list"
        );
        let err = key_values(&node("{A: [1]}"), &path()).unwrap_err();
        assert!(err.to_string().contains("services.web.v.A"), "{err}");
        let err = command(&node("echo 'x"), &path()).unwrap_err();
        assert!(err.to_string().contains("quotes are closed"), "{err}");
    }
}
