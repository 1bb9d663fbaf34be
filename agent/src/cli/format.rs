//! Output for people: aligned tables with Docker's columns, and the subset of
//! Go templates that `--format` needs (`{{ .A.B }}`, `{{json .}}`).

use serde_json::Value;

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Errors in a `--format` template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template: unclosed action in `{0}`")]
    Unclosed(String),
    #[error("template: unsupported action `{{{{{0}}}}}`: use `{{{{ .Field.Sub }}}}` or `{{{{json .Field}}}}`")]
    Unsupported(String),
}

/// Renders `template` against `value`: text outside `{{ }}` is copied;
/// `{{ .A.B }}` prints a field (strings bare, others as JSON, missing as
/// `<no value>` like Go); `{{json .A}}` prints it as JSON.
pub fn render(template: &str, value: &Value) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        let action = after[..end].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(path) => (true, path.trim()),
            None => (false, action),
        };
        let field =
            lookup(value, path).ok_or_else(|| TemplateError::Unsupported(action.to_string()))?;
        match (as_json, field) {
            (_, None) => out.push_str("<no value>"),
            (false, Some(Value::String(s))) => out.push_str(s),
            (_, Some(v)) => out.push_str(&v.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `None` if `path` is not a field path; `Some(None)` if the field is absent.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<Option<&'a Value>> {
    let path = path.strip_prefix('.')?;
    if path.is_empty() {
        return Some(Some(value));
    }
    let mut cur = Some(value);
    for key in path.split('.') {
        if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        cur = cur.and_then(|v| v.get(key));
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields_like_docker() {
        let v =
            json!({"ManagerStatus": {"Reachability": "reachable", "Leader": true}, "ID": "abc"});
        assert_eq!(
            render("{{ .ManagerStatus.Reachability }}", &v).unwrap(),
            "reachable"
        );
        assert_eq!(
            render("{{.ID}}: {{.ManagerStatus.Leader}}", &v).unwrap(),
            "abc: true"
        );
        assert_eq!(
            render("{{json .ManagerStatus}}", &v).unwrap(),
            r#"{"Leader":true,"Reachability":"reachable"}"#
        );
        assert_eq!(render("{{ .Nope.X }}", &v).unwrap(), "<no value>");
        assert!(render("{{ range . }}", &v).is_err());
        assert!(render("{{ .ID ", &v).is_err());
    }

    #[test]
    fn aligns_columns() {
        let t = table(
            &["ID", "HOSTNAME"],
            &[
                vec!["a".into(), "host-1".into()],
                vec!["bbbb".into(), "h".into()],
            ],
        );
        assert_eq!(t, "ID     HOSTNAME\na      host-1\nbbbb   h\n");
    }
}
