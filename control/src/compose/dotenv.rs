//! The environment compose files are interpolated from, and the `KEY=VALUE`
//! files Compose reads: the project's `.env` (which only fills variables the
//! environment does not set) and a service's `env_file:`.
//!
//! Syntax as Compose reads it: `#` comments, an optional `export `, values
//! unquoted (an inline comment after ` #`), `'single'` (literal) or
//! `"double"` (escapes `\n \t \r \" \\ \$`), quoted values may span lines;
//! `${VAR}` is interpolated in unquoted and double-quoted values; a line
//! `KEY` alone takes `KEY` from the environment.

use std::collections::BTreeMap;

use std::path::Path;

use super::error::ComposeError;
use super::interpolate::{substitute, TemplateError};
use super::source::FileReader;

/// Variables for interpolation: the caller's environment, then `.env`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn from_vars<I, K, V>(vars: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Adds the variables of the `.env` file at `path`, if there is one
    /// (Compose reads it from the project directory).
    pub fn add_dotenv_file(
        &mut self,
        path: &Path,
        files: &dyn FileReader,
    ) -> Result<bool, ComposeError> {
        match files.read(path)? {
            Some(content) => {
                self.add_dotenv(&path.display().to_string(), &content)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Adds the variables of a `.env` file (named `file` in errors) that
    /// the environment does not set already: the environment wins.
    pub fn add_dotenv(&mut self, file: &str, content: &str) -> Result<(), ComposeError> {
        let parsed = {
            let lookup = |name: &str| self.get(name).map(str::to_string);
            parse_env_file(file, content, &lookup)?
        };
        for (key, value) in parsed {
            if self.vars.contains_key(&key) {
                continue;
            }
            match value {
                Some(value) => {
                    self.vars.insert(key, value);
                }
                // `KEY` alone takes it from the environment, which has none.
                None => continue,
            }
        }
        Ok(())
    }
}

/// Parses a `KEY=VALUE` file. `None` values are lines with a key alone
/// (take the value from the environment). `lookup` resolves `${VAR}` in
/// values, before the file's own earlier keys.
pub fn parse_env_file(
    file: &str,
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, ComposeError> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let lines: Vec<&str> = content.lines().collect();
    let mut parsed: Vec<(String, Option<String>)> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let error = |problem: String| ComposeError::EnvFile {
            file: file.to_string(),
            line: number,
            problem,
        };
        let line = lines[index].trim();
        index += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim_start())),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(error(format!(
                "`{line}` is not KEY=VALUE: a key is one word, without spaces"
            )));
        }
        let Some(raw) = value else {
            parsed.push((key.to_string(), None));
            continue;
        };
        let own = parsed.clone();
        let lookup_both = |name: &str| {
            lookup(name).or_else(|| {
                own.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.clone())
            })
        };
        let interpolate = |text: &str| -> Result<String, ComposeError> {
            substitute(text, &lookup_both)
                .map(|done| done.text)
                .map_err(|e| match e {
                    TemplateError::Required { variable, message } => error(format!(
                        "required variable `{variable}` is not set: {message}"
                    )),
                    other => error(format!(
                        "invalid interpolation in `{raw}`: {}",
                        other.problem()
                    )),
                })
        };
        let value = match raw.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                // The value may go on over the next lines until its closing quote.
                let mut text = raw[1..].to_string();
                let closing = loop {
                    if let Some(end) = closing_quote(&text, quote) {
                        break end;
                    }
                    match lines.get(index) {
                        Some(next) => {
                            text.push('\n');
                            text.push_str(next);
                            index += 1;
                        }
                        None => {
                            return Err(error(format!(
                                "the value of `{key}` opens a {quote} quote that is never closed"
                            )))
                        }
                    }
                };
                let after = text[closing + 1..].trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(error(format!(
                        "unexpected `{after}` after the quoted value of `{key}`"
                    )));
                }
                let inner = &text[..closing];
                if quote == '\'' {
                    inner.to_string()
                } else {
                    interpolate(&unescape(inner))?
                }
            }
            _ => {
                let text = match raw.find(" #") {
                    Some(comment) => &raw[..comment],
                    None => raw,
                };
                interpolate(text.trim_end())?
            }
        };
        parsed.push((key.to_string(), Some(value)));
    }
    Ok(parsed)
}

/// The index of the quote closing a value (escaped `\"` does not close a
/// double-quoted one).
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if quote == '"' && c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        if c == quote && !escaped {
            return Some(i);
        }
        escaped = false;
    }
    None
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            // `\$` stays `$$` so the interpolation that follows keeps a `$`.
            Some('$') => out.push_str("$$"),
            Some(other @ ('"' | '\\')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content: &str) -> Vec<(String, Option<String>)> {
        let lookup = |name: &str| (name == "HOME").then(|| "/home/me".to_string());
        parse_env_file(".env", content, &lookup).unwrap()
    }

    fn pairs(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn env_files_read_every_form_compose_writes() {
        let content = "\
\u{feff}# a comment
export TAG=1.25
PLAIN = some value   # a comment
HASH=a#b
EMPTY=
ALONE
SINGLE='no ${TAG} $$ \\n here' # trailing comment
DOUBLE=\"tab\\there \\\"q\\\" \\$TAG ${TAG}\"
MULTI=\"line one
line two\"
REF=${HOME}/x-${TAG}-${MISSING:-dflt}
";
        assert_eq!(
            parse(content),
            pairs(&[
                ("TAG", Some("1.25")),
                ("PLAIN", Some("some value")),
                ("HASH", Some("a#b")),
                ("EMPTY", Some("")),
                ("ALONE", None),
                ("SINGLE", Some("no ${TAG} $$ \\n here")),
                ("DOUBLE", Some("tab\there \"q\" $TAG 1.25")),
                ("MULTI", Some("line one\nline two")),
                ("REF", Some("/home/me/x-1.25-dflt")),
            ])
        );
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let lookup = |_: &str| None;
        let err = parse_env_file("app.env", "A=1\nNOT A KEY\n", &lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app.env:2: `NOT A KEY` is not KEY=VALUE: a key is one word, without spaces"
        );
        let err = parse_env_file("app.env", "A='open\nB=2\n", &lookup).unwrap_err();
        assert!(
            matches!(err, ComposeError::EnvFile { line: 1, .. }),
            "{err}"
        );
        let err = parse_env_file("app.env", "A=\"x\" y\n", &lookup).unwrap_err();
        assert!(err.to_string().contains("unexpected `y`"), "{err}");
        let err = parse_env_file("app.env", "\nA=${NEED:?set NEED}\n", &lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app.env:2: required variable `NEED` is not set: set NEED"
        );
    }

    #[test]
    fn a_dotenv_file_is_optional() {
        use crate::compose::source::MemoryFiles;
        let files = MemoryFiles::new().with("/p/.env", "A=1\n");
        let mut env = Environment::default();
        assert!(env.add_dotenv_file(Path::new("/p/.env"), &files).unwrap());
        assert!(!env.add_dotenv_file(Path::new("/q/.env"), &files).unwrap());
        assert_eq!(env.get("A"), Some("1"));
    }

    #[test]
    fn dotenv_fills_only_what_the_environment_lacks() {
        let mut env = Environment::from_vars([("TAG", "from-shell")]);
        env.add_dotenv(
            ".env",
            "TAG=from-file\nPORT=8080\nURL=http://x:${PORT}/${TAG}\nALONE\n",
        )
        .unwrap();
        assert_eq!(env.get("TAG"), Some("from-shell"));
        assert_eq!(env.get("PORT"), Some("8080"));
        assert_eq!(env.get("URL"), Some("http://x:8080/from-shell"));
        assert_eq!(env.get("ALONE"), None);
    }
}
