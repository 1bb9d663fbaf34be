//! Variable interpolation as Compose does it: `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`,
//! `${VAR:+alt}`, `${VAR+alt}` (nested in the default, error or
//! alternative), and `$$` for a literal `$`. Applied per file to values, never
//! to keys, before files are merged.

use std::collections::BTreeSet;

use super::dotenv::Environment;
use super::error::{ComposeError, Subject, Warning, WarningKind};
use super::path::KeyPath;
use super::yaml::{Node, Value};

/// Why a string is not a valid template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    Unterminated,
    BadExpression,
    TooDeep,
    Required { variable: String, message: String },
}

impl TemplateError {
    pub fn problem(&self) -> &'static str {
        match self {
            TemplateError::Unterminated => "a `${` has no closing `}`",
            TemplateError::BadExpression => {
                "`${...}` takes a variable name ([A-Za-z_][A-Za-z0-9_]*), optionally followed by :-, -, :?, ?, :+ or + and a value"
            }
            TemplateError::TooDeep => "`${...}` nested more than 16 deep",
            TemplateError::Required { .. } => "a required variable is not set",
        }
    }
}

/// How deep `${A:-${B:-...}}` may nest: far beyond any real file, and a
/// bound on the recursion a hostile one could cause.
const MAX_NESTING: usize = 16;

/// A substituted string and the variables it used that were not set (and
/// had no default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Substituted {
    pub text: String,
    pub unset: Vec<String>,
}

/// Substitutes the variables of `template` from `lookup`.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, TemplateError> {
    let mut unset = Vec::new();
    let text = expand(template, lookup, &mut unset, 0)?;
    Ok(Substituted { text, unset })
}

fn expand(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, TemplateError> {
    if depth > MAX_NESTING {
        return Err(TemplateError::TooDeep);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or(TemplateError::Unterminated)?;
            out.push_str(&braced(&body[..end], lookup, unset, depth)?);
            rest = &body[end + 1..];
        } else {
            let name = &after[..name_len(after)];
            if name.is_empty() {
                // Not a variable: Compose keeps the `$` as written.
                out.push('$');
            } else {
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => unset.push(name.to_string()),
                }
            }
            rest = &after[name.len()..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name at the start of `text`.
fn name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// The index in `body` of the `}` closing a `${`, skipping nested `${...}`
/// and `$$`.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 2,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, TemplateError> {
    let name = &body[..name_len(body)];
    if name.is_empty() {
        return Err(TemplateError::BadExpression);
    }
    let rest = &body[name.len()..];
    let value = lookup(name);
    let set_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let (operator, argument) = ["-", ":-", "?", ":?", "+", ":+"]
        .iter()
        .filter_map(|op| rest.strip_prefix(op).map(|arg| (*op, arg)))
        .max_by_key(|(op, _)| op.len())
        .unwrap_or(("", rest));
    match operator {
        "" if argument.is_empty() => Ok(value.unwrap_or_else(|| {
            unset.push(name.to_string());
            String::new()
        })),
        "" => Err(TemplateError::BadExpression),
        ":-" if set_non_empty => Ok(value.unwrap_or_default()),
        "-" if value.is_some() => Ok(value.unwrap_or_default()),
        ":-" | "-" => expand(argument, lookup, unset, depth + 1),
        ":?" if set_non_empty => Ok(value.unwrap_or_default()),
        "?" if value.is_some() => Ok(value.unwrap_or_default()),
        ":?" | "?" => Err(TemplateError::Required {
            variable: name.to_string(),
            message: expand(argument, lookup, unset, depth + 1)?,
        }),
        ":+" if set_non_empty => expand(argument, lookup, unset, depth + 1),
        "+" if value.is_some() => expand(argument, lookup, unset, depth + 1),
        _ => Ok(String::new()),
    }
}

/// Interpolates every value of a parsed file (not keys, not `x-` extension
/// fields, not `version`), warning once per unset variable.
pub fn interpolate_file(
    root: &mut Node,
    env: &Environment,
    warnings: &mut Vec<Warning>,
    warned: &mut BTreeSet<String>,
) -> Result<(), ComposeError> {
    let lookup = |name: &str| env.get(name).map(str::to_string);
    let Value::Map(map) = &mut root.value else {
        return Ok(());
    };
    let mut walker = Walker {
        lookup: &lookup,
        warnings,
        warned,
    };
    for (section, node) in map.iter_mut() {
        if section.starts_with("x-") || section == "version" {
            continue;
        }
        let path = KeyPath::root().key(section);
        let subject_of = |name: &str| match section {
            "services" => Some(Subject::Service(name.to_string())),
            "networks" => Some(Subject::Network(name.to_string())),
            "volumes" => Some(Subject::Volume(name.to_string())),
            "secrets" => Some(Subject::Secret(name.to_string())),
            "configs" => Some(Subject::Config(name.to_string())),
            _ => None,
        };
        match &mut node.value {
            Value::Map(objects) if subject_of("").is_some() => {
                for (name, object) in objects.iter_mut() {
                    let subject = subject_of(name).unwrap_or(Subject::File);
                    walker.walk(object, &path.key(name), &subject)?;
                }
            }
            _ => walker.walk(node, &path, &Subject::File)?,
        }
    }
    Ok(())
}

struct Walker<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: &'a mut Vec<Warning>,
    warned: &'a mut BTreeSet<String>,
}

impl Walker<'_> {
    fn walk(
        &mut self,
        node: &mut Node,
        path: &KeyPath,
        subject: &Subject,
    ) -> Result<(), ComposeError> {
        match &mut node.value {
            Value::Null => Ok(()),
            Value::Scalar(text) => {
                if !text.contains('$') {
                    return Ok(());
                }
                let done = substitute(text, self.lookup).map_err(|e| match e {
                    TemplateError::Required { variable, message } => {
                        ComposeError::RequiredVariable {
                            at: node.at.clone(),
                            path: path.to_string(),
                            variable,
                            message,
                        }
                    }
                    other => ComposeError::BadTemplate {
                        at: node.at.clone(),
                        path: path.to_string(),
                        template: text.clone(),
                        problem: other.problem(),
                    },
                })?;
                for name in done.unset {
                    if self.warned.insert(name.clone()) {
                        self.warnings.push(Warning {
                            at: Some(node.at.clone()),
                            subject: subject.clone(),
                            kind: WarningKind::UnsetVariable { name },
                        });
                    }
                }
                *text = done.text;
                Ok(())
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(item, &path.index(i), subject)?;
                }
                Ok(())
            }
            Value::Map(map) => {
                for (key, value) in map.iter_mut() {
                    self.walk(value, &path.key(key), subject)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::compose::yaml;

    proptest! {
        #[test]
        fn any_text_substitutes_or_fails_cleanly(text in "[ -~]{0,80}") {
            let _ = substitute(&text, &env());
        }

        #[test]
        fn text_without_dollars_comes_back_unchanged(text in "[^$]{0,80}") {
            prop_assert_eq!(substitute(&text, &env()).map(|s| s.text), Ok(text));
        }

        #[test]
        fn doubled_dollars_come_back_single(text in "[a-z{}]{0,20}") {
            let template = format!("$${text}");
            prop_assert_eq!(substitute(&template, &env()).map(|s| s.text), Ok(format!("${text}")));
        }
    }

    fn env() -> impl Fn(&str) -> Option<String> {
        |name: &str| match name {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            "TAG" => Some("1.2".to_string()),
            _ => None,
        }
    }

    fn sub(template: &str) -> Result<String, TemplateError> {
        substitute(template, &env()).map(|s| s.text)
    }

    #[test]
    fn every_form_substitutes_as_compose_does() {
        let cases = [
            ("$SET", "value"),
            ("${SET}", "value"),
            ("a${SET}b$SET.c", "avaluebvalue.c"),
            ("${UNSET:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${SET:-dflt}", "value"),
            ("${UNSET-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${SET:?boom}", "value"),
            ("${EMPTY?boom}", ""),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("cost: 5$", "cost: 5$"),
            ("$ 1 $1 $-", "$ 1 $1 $-"),
            ("${UNSET:-${TAG}}", "1.2"),
            ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
            ("${UNSET:-a}b}", "ab}"),
            ("${UNSET:-}", ""),
            ("img:${TAG:-latest}", "img:1.2"),
            ("é${SET}ü", "évalueü"),
        ];
        for (template, expected) in cases {
            assert_eq!(sub(template).as_deref(), Ok(expected), "{template}");
        }
    }

    #[test]
    fn unset_variables_are_reported_and_become_empty() {
        let done = substitute("x${NOPE}y$ALSO_NOPE${SET}", &env()).unwrap();
        assert_eq!(done.text, "xyvalue");
        assert_eq!(
            done.unset,
            vec!["NOPE".to_string(), "ALSO_NOPE".to_string()]
        );
        let done = substitute("${NOPE:-d}${NOPE-d}${NOPE:+a}", &env()).unwrap();
        assert!(done.unset.is_empty());
    }

    #[test]
    fn required_and_malformed_templates_fail() {
        assert_eq!(
            sub("${UNSET:?set UNSET to the ${SET} you want}"),
            Err(TemplateError::Required {
                variable: "UNSET".into(),
                message: "set UNSET to the value you want".into()
            })
        );
        assert_eq!(
            sub("${EMPTY:?}"),
            Err(TemplateError::Required {
                variable: "EMPTY".into(),
                message: String::new()
            })
        );
        assert_eq!(sub("${UNSET?}").ok(), None);
        assert_eq!(sub("${SET"), Err(TemplateError::Unterminated));
        assert_eq!(sub("${SET:-${X}"), Err(TemplateError::Unterminated));
        assert_eq!(sub("${}"), Err(TemplateError::BadExpression));
        assert_eq!(sub("${1A}"), Err(TemplateError::BadExpression));
        assert_eq!(sub("${SET/a/b}"), Err(TemplateError::BadExpression));
        assert_eq!(sub("${SET:0:2}"), Err(TemplateError::BadExpression));
        let deep = format!(
            "{}x{}",
            "${U:-".repeat(MAX_NESTING),
            "}".repeat(MAX_NESTING)
        );
        assert_eq!(sub(&deep).as_deref(), Ok("x"));
        let deeper = format!("{}x{}", "${U:-".repeat(10_000), "}".repeat(10_000));
        assert_eq!(sub(&deeper), Err(TemplateError::TooDeep));
    }

    #[test]
    fn files_are_interpolated_in_values_only_with_errors_naming_file_key_and_variable() {
        let file: Arc<str> = Arc::from("stack.yml");
        let text = "\
version: '3.${V}'
x-ignored: ${UNSET:?never evaluated}
services:
  web:
    image: nginx:${TAG:-latest}
    environment:
      ${KEY}: $$literal
      B: ${NOT_SET}
  db:
    image: ${NOT_SET}
";
        let mut root = yaml::parse(&file, text).unwrap();
        let env = Environment::from_vars([("TAG", "1.25"), ("KEY", "k")]);
        let mut warnings = Vec::new();
        let mut warned = BTreeSet::new();
        interpolate_file(&mut root, &env, &mut warnings, &mut warned).unwrap();
        let map = root.as_map().unwrap();
        let web = map
            .get("services")
            .unwrap()
            .as_map()
            .unwrap()
            .get("web")
            .unwrap()
            .as_map()
            .unwrap();
        assert_eq!(web.get("image").unwrap().as_scalar(), Some("nginx:1.25"));
        let environment = web.get("environment").unwrap().as_map().unwrap();
        assert_eq!(
            environment.get("${KEY}").unwrap().as_scalar(),
            Some("$literal")
        );
        assert_eq!(map.get("version").unwrap().as_scalar(), Some("3.${V}"));
        // One warning per variable, at its first use.
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].to_string(),
            "stack.yml:8: service web: variable \"NOT_SET\" is not set, using an empty string"
        );

        let text = "services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image to run}\n";
        let mut root = yaml::parse(&file, text).unwrap();
        let err = interpolate_file(&mut root, &env, &mut warnings, &mut warned).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack.yml:3: services.web.image: required variable `IMAGE` is not set: set IMAGE to the image to run"
        );
        let text = "services:\n  web:\n    ports: ['${PORT']\n";
        let mut root = yaml::parse(&file, text).unwrap();
        let err = interpolate_file(&mut root, &env, &mut warnings, &mut warned).unwrap_err();
        assert!(
            matches!(err, ComposeError::BadTemplate { ref path, .. } if path == "services.web.ports[0]"),
            "{err}"
        );
    }
}
