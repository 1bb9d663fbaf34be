//! Output the way Docker's CLI prints it: `ls` rows through `--format`
//! (`table ...` aligned by Go's tabwriter with a header, `json` as `{{json
//! .}}`, any other Go template one line per row), `inspect` objects as
//! indented JSON or through a template, and the natural sort order of names.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::template::tabwriter::{self, MIN_WIDTH, PADDING};
pub use super::template::TemplateError;
use super::template::{Template, Val};

/// One kind of list (`node ls`, `service ps`...).
pub struct Listing {
    /// The format of a plain `ls`: `table {{.ID}}\t...`.
    pub default_table: &'static str,
    /// Column names by field, as Docker prints them.
    pub headers: &'static [(&'static str, &'static str)],
    /// The Go type Docker names when a template asks for a field rows lack.
    pub row_type: &'static str,
}

/// One row of a list: the fields a template sees (`{{json .}}` prints
/// them all) and the labels `{{.Label "KEY"}}` reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub fields: Map<String, Value>,
    pub labels: BTreeMap<String, String>,
}

impl Row {
    pub fn new(fields: Value) -> Self {
        Row {
            fields: match fields {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            labels: BTreeMap::new(),
        }
    }

    pub fn with_labels(mut self, labels: &BTreeMap<String, String>) -> Self {
        self.labels = labels.clone();
        self
    }
}

/// What a `--format` asks for, after Docker's defaults: `None` or `table`
/// is the default table (ids only with `-q`), `json` is `{{json .}}`.
pub fn resolve<'a>(listing: &'a Listing, format: Option<&'a str>, quiet: bool) -> &'a str {
    match format.filter(|f| !f.is_empty()).unwrap_or("table") {
        "table" if quiet => "{{.ID}}",
        "table" => listing.default_table,
        "json" => "{{json .}}",
        other => other,
    }
}

/// Whether a resolved format prints a table.
pub fn is_table(format: &str) -> bool {
    format.starts_with("table")
}

/// `rows` printed with `format` (already [`resolve`]d).
pub fn list(listing: &Listing, format: &str, rows: &[Row]) -> Result<String, TemplateError> {
    let table = is_table(format);
    let body = if table {
        &format["table".len()..]
    } else {
        format
    };
    let body = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let template = Template::parse(&body)?;
    let mut out = String::new();
    for row in rows {
        let fields = Value::Object(row.fields.clone());
        let label = |name: &str, args: &[Val]| -> Option<Result<Val, String>> {
            (name == "Label").then(|| match args {
                [Some(Value::String(key))] => Ok(Some(Value::String(
                    row.labels.get(key).cloned().unwrap_or_default(),
                ))),
                _ => Err("wrong number of args for Label: want 1".into()),
            })
        };
        out.push_str(&template.render_row(&fields, listing.row_type, Some(&label))?);
        out.push('\n');
    }
    if !table {
        return Ok(out);
    }
    let header = template.render_header(&header(listing, rows), Some(&header_label))?;
    Ok(tabwriter::align(
        &format!("{header}\n{out}"),
        MIN_WIDTH,
        PADDING,
    ))
}

/// Column names for every field: Docker's where it has one, else the
/// field's words in capitals (`CreatedAtMs` -> `CREATED AT MS`).
fn header(listing: &Listing, rows: &[Row]) -> Value {
    let mut map = Map::new();
    for key in rows.iter().flat_map(|r| r.fields.keys()) {
        map.insert(key.clone(), Value::String(words_upper(key)));
    }
    for (field, name) in listing.headers {
        map.insert(field.to_string(), Value::String(name.to_string()));
    }
    Value::Object(map)
}

/// The header of `{{.Label "com.example.team"}}`: `team`, as Docker's.
fn header_label(name: &str, args: &[Val]) -> Option<Result<Val, String>> {
    (name == "Label").then(|| match args {
        [Some(Value::String(key))] => {
            let last = key.rsplit('.').next().unwrap_or(key);
            Ok(Some(Value::String(last.replace(['-', '_'], " "))))
        }
        _ => Err("wrong number of args for Label: want 1".into()),
    })
}

fn words_upper(field: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let starts_word = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if starts_word {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// `inspect` output: Docker's indented JSON array, or each object through
/// a template (`json` is the indented array too).
pub fn inspect<T: Serialize>(items: &[T], format: Option<&str>) -> anyhow::Result<String> {
    match format.filter(|f| !f.is_empty()) {
        None | Some("json") => Ok(indented_json(items)? + "\n"),
        Some(text) => {
            let template = Template::parse(&text.replace("\\t", "\t").replace("\\n", "\n"))?;
            let mut out = String::new();
            for item in items {
                out.push_str(&template.render(&serde_json::to_value(item)?)?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// JSON indented by four spaces, as Docker prints `inspect`.
pub fn indented_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One value through a template whose missing fields print `<no value>`
/// (shoal's own lists: `members`, `endpoint ls`).
pub fn render(template: &str, value: &Value) -> Result<String, TemplateError> {
    Template::parse(template)?.render(value)
}

/// Prints rows under headers, each column as wide as its widest cell
/// (shoal's own tables).
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

/// Docker's order for names: digit runs compare as numbers (`node2` before
/// `node10`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                let (na, nb) = (digits(a), digits(b));
                let (da, db) = (
                    a[..na].trim_start_matches('0'),
                    b[..nb].trim_start_matches('0'),
                );
                let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

/// Docker's `PrettyPrint` of a state word: `ready` -> `Ready`.
pub fn pretty_word(word: &str) -> String {
    let mut chars = word.chars();
    match (chars.next(), word.chars().count()) {
        (None, _) => String::new(),
        (Some(c), 1) => c.to_lowercase().collect(),
        (Some(c), _) => c.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NODES: Listing = Listing {
        default_table: "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}",
        headers: &[
            ("ID", "ID"),
            ("Self", ""),
            ("Hostname", "HOSTNAME"),
            ("Status", "STATUS"),
        ],
        row_type: "*node.nodeContext",
    };

    fn rows() -> Vec<Row> {
        vec![
            Row::new(
                json!({"ID": "1bcef6utixb0l0ca7gxuivsj0", "Self": false, "Hostname": "swarm-worker2", "Status": "Ready"}),
            ),
            Row::new(
                json!({"ID": "e216jshn25ckzbvmwlnh5jr3g", "Self": true, "Hostname": "swarm-manager1", "Status": "Ready"}),
            ),
        ]
    }

    #[test]
    fn default_tables_are_dockers() {
        let format = resolve(&NODES, None, false);
        assert_eq!(
            list(&NODES, format, &rows()).unwrap(),
            "ID                            HOSTNAME         STATUS\n\
             1bcef6utixb0l0ca7gxuivsj0     swarm-worker2    Ready\n\
             e216jshn25ckzbvmwlnh5jr3g *   swarm-manager1   Ready\n"
        );
        assert_eq!(
            list(&NODES, resolve(&NODES, None, true), &rows()).unwrap(),
            "1bcef6utixb0l0ca7gxuivsj0\ne216jshn25ckzbvmwlnh5jr3g\n"
        );
        // An empty list still prints the header.
        assert_eq!(
            list(&NODES, resolve(&NODES, Some("table"), false), &[]).unwrap(),
            "ID        HOSTNAME   STATUS\n"
        );
    }

    /// `docker node ls --format "{{.ID}}: {{.Hostname}}"` and `table`
    /// formats with `\t` typed by the user.
    #[test]
    fn custom_formats() {
        let format = resolve(&NODES, Some("{{.ID}}: {{.Hostname}}"), true);
        assert_eq!(
            list(&NODES, format, &rows()).unwrap(),
            "1bcef6utixb0l0ca7gxuivsj0: swarm-worker2\ne216jshn25ckzbvmwlnh5jr3g: swarm-manager1\n"
        );
        let format = resolve(&NODES, Some(r"table {{.Hostname}}\t{{.Status}}"), false);
        assert_eq!(
            list(&NODES, format, &rows()).unwrap(),
            "HOSTNAME         STATUS\nswarm-worker2    Ready\nswarm-manager1   Ready\n"
        );
        let json_line = list(&NODES, resolve(&NODES, Some("json"), false), &rows()[..1]).unwrap();
        assert_eq!(
            json_line,
            "{\"Hostname\":\"swarm-worker2\",\"ID\":\"1bcef6utixb0l0ca7gxuivsj0\",\"Self\":false,\"Status\":\"Ready\"}\n"
        );
        let err = list(&NODES, "{{.Spec}}", &rows()).unwrap_err().to_string();
        assert!(
            err.ends_with("can't evaluate field Spec in type *node.nodeContext"),
            "{err}"
        );
        let labelled = [Row::new(json!({"ID": "x"})).with_labels(&BTreeMap::from([(
            "com.example.team".to_string(),
            "web".to_string(),
        )]))];
        assert_eq!(
            list(
                &NODES,
                r#"table {{.ID}}\t{{.Label "com.example.team"}}"#,
                &labelled
            )
            .unwrap(),
            "ID        team\nx         web\n"
        );
    }

    #[test]
    fn inspect_prints_dockers_indented_json_or_a_template() {
        let items = [json!({"ID": "a", "Spec": {"Name": "web"}})];
        assert_eq!(
            inspect(&items, None).unwrap(),
            "[\n    {\n        \"ID\": \"a\",\n        \"Spec\": {\n            \"Name\": \"web\"\n        }\n    }\n]\n"
        );
        assert_eq!(inspect::<Value>(&[], None).unwrap(), "[]\n");
        assert_eq!(inspect(&items, Some("{{.Spec.Name}}")).unwrap(), "web\n");
        assert!(inspect(&items, Some("{{.Spec.Name")).is_err());
    }

    #[test]
    fn names_sort_naturally_and_words_print_like_docker() {
        let mut names = vec!["node10", "node2", "backend", "b", "node1"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["b", "backend", "node1", "node2", "node10"]);
        assert_eq!(pretty_word("ready"), "Ready");
        assert_eq!(pretty_word("REACHABLE"), "Reachable");
        assert_eq!(pretty_word(""), "");
        assert_eq!(words_upper("CreatedAtMs"), "CREATED AT MS");
        assert_eq!(words_upper("ID"), "ID");
        assert_eq!(words_upper("TLSStatus"), "TLS STATUS");
    }

    #[test]
    fn shoal_tables_align() {
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
