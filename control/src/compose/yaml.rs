//! The YAML layer: a compose file's text becomes a tree of [`Node`]s, each
//! knowing where it was written. Anchors and aliases are expanded, merge keys
//! (`<<: *base`) applied, and Compose's `!reset` / `!override` tags kept for
//! the merge of several files. Scalars stay text: the typed layer reads them
//! as what each key needs (so `1.10` stays `1.10` and `22:22` is no base-60
//! number). Bounded in depth and in size after alias expansion.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::error::{ComposeError, Location, YamlProblem};

/// The most nodes a file may expand to (aliases included). Real compose
/// files hold a few thousand.
pub const MAX_NODES: usize = 200_000;
/// The deepest nesting accepted. Real compose files nest about 8 deep.
pub const MAX_DEPTH: usize = 64;

/// A value of the tree and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub at: Location,
    pub tag: Option<MergeTag>,
}

/// Compose's tags that steer the merge of several files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeTag {
    /// `!reset`: the key is removed from the merged result.
    Reset,
    /// `!override`: the value replaces the earlier one instead of merging.
    Override,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Scalar(String),
    Seq(Vec<Node>),
    Map(Mapping),
}

/// A mapping in file order; keys are unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Node,
}

impl Mapping {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| &entry.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|entry| entry.key == key)
            .map(|entry| &mut entry.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries
            .iter()
            .map(|entry| (entry.key.as_str(), &entry.value))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Node)> {
        self.entries
            .iter_mut()
            .map(|entry| (entry.key.as_str(), &mut entry.value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sets `key`, keeping its place if it was there, appending otherwise.
    pub fn insert(&mut self, key: String, value: Node) {
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.entries.push(Entry { key, value }),
        }
    }

    /// Removes `key`, returning where it was and its value.
    pub fn take(&mut self, key: &str) -> Option<(usize, Node)> {
        let index = self.entries.iter().position(|entry| entry.key == key)?;
        Some((index, self.entries.remove(index).value))
    }

    /// Puts `key` at `index` (at the end when past it).
    pub fn insert_at(&mut self, index: usize, key: String, value: Node) {
        let index = index.min(self.entries.len());
        self.entries.insert(index, Entry { key, value });
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let index = self.entries.iter().position(|entry| entry.key == key)?;
        Some(self.entries.remove(index).value)
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

impl Node {
    pub fn new(value: Value, at: Location) -> Node {
        Node {
            value,
            at,
            tag: None,
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(text) => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
}

/// Parses one compose file into its root node, a mapping.
pub fn parse(file: &Arc<str>, text: &str) -> Result<Node, ComposeError> {
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        documents: 0,
        root: None,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ComposeError::Yaml {
            at: Location {
                file: file.clone(),
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            problem: YamlProblem::Syntax(e.info().to_string()),
        })?;
        builder.on_event(event, span)?;
    }
    let start = Location {
        file: file.clone(),
        line: 1,
        column: 1,
    };
    let root = builder.root.ok_or(ComposeError::Yaml {
        at: start.clone(),
        problem: YamlProblem::Empty,
    })?;
    match root.node.value {
        Value::Map(_) => Ok(root.node),
        Value::Null => Err(ComposeError::Yaml {
            at: start,
            problem: YamlProblem::Empty,
        }),
        _ => Err(ComposeError::Yaml {
            at: root.node.at.clone(),
            problem: YamlProblem::NotAMapping(root.node.kind()),
        }),
    }
}

/// A finished node with its size (nodes in it) and depth, for the bounds.
#[derive(Clone)]
struct Built {
    node: Node,
    size: usize,
    depth: usize,
}

enum Frame {
    Seq {
        start: Location,
        anchor: usize,
        tag: Option<MergeTag>,
        items: Vec<Node>,
        size: usize,
        depth: usize,
    },
    Map {
        start: Location,
        anchor: usize,
        tag: Option<MergeTag>,
        /// (key, key was the plain merge key `<<`, value)
        entries: Vec<(Built, bool, Node)>,
        key: Option<(Built, bool)>,
        size: usize,
        depth: usize,
    },
}

struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Built>,
    nodes: usize,
    documents: usize,
    root: Option<Built>,
}

impl Builder {
    fn at(&self, span: &Span) -> Location {
        Location {
            file: self.file.clone(),
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }

    fn error(&self, at: Location, problem: YamlProblem) -> ComposeError {
        ComposeError::Yaml { at, problem }
    }

    fn count(&mut self, size: usize, at: &Location) -> Result<(), ComposeError> {
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err(self.error(at.clone(), YamlProblem::TooLarge(MAX_NODES)));
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), ComposeError> {
        let at = self.at(&span);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error(at, YamlProblem::SeveralDocuments));
                }
                Ok(())
            }
            Event::Alias(id) => {
                let built = self.anchors.get(&id).cloned().ok_or_else(|| {
                    self.error(at.clone(), YamlProblem::UnknownAlias(id.to_string()))
                })?;
                self.count(built.size, &at)?;
                self.push(built, false)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, &at)?;
                let is_str = tag
                    .as_deref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let plain = style == ScalarStyle::Plain;
                let value =
                    if plain && !is_str && matches!(&*text, "" | "~" | "null" | "Null" | "NULL") {
                        Value::Null
                    } else {
                        Value::Scalar(text.into_owned())
                    };
                let merge_key = plain && value == Value::Scalar("<<".to_string());
                let built = Built {
                    node: Node {
                        value,
                        at,
                        tag: merge_tag(tag.as_deref()),
                    },
                    size: 1,
                    depth: 1,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, built.clone());
                }
                self.push(built, merge_key)
            }
            Event::SequenceStart(anchor, tag) => {
                self.open(at.clone())?;
                self.stack.push(Frame::Seq {
                    start: at,
                    anchor,
                    tag: merge_tag(tag.as_deref()),
                    items: Vec::new(),
                    size: 1,
                    depth: 1,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.open(at.clone())?;
                self.stack.push(Frame::Map {
                    start: at,
                    anchor,
                    tag: merge_tag(tag.as_deref()),
                    entries: Vec::new(),
                    key: None,
                    size: 1,
                    depth: 1,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(());
                };
                let (built, anchor) = self.close(frame)?;
                if built.depth > MAX_DEPTH {
                    return Err(self.error(built.node.at, YamlProblem::TooDeep(MAX_DEPTH)));
                }
                if anchor > 0 {
                    self.anchors.insert(anchor, built.clone());
                }
                self.push(built, false)
            }
        }
    }

    fn open(&mut self, at: Location) -> Result<(), ComposeError> {
        self.count(1, &at)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(at, YamlProblem::TooDeep(MAX_DEPTH)));
        }
        Ok(())
    }

    /// Hands a finished node to the container being built (or makes it the
    /// root).
    fn push(&mut self, built: Built, merge_key: bool) -> Result<(), ComposeError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(built);
                Ok(())
            }
            Some(Frame::Seq {
                items, size, depth, ..
            }) => {
                *size += built.size;
                *depth = (*depth).max(built.depth + 1);
                items.push(built.node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                key,
                size,
                depth,
                ..
            }) => {
                *size += built.size;
                *depth = (*depth).max(built.depth + 1);
                match key.take() {
                    None => {
                        *key = Some((built, merge_key));
                    }
                    Some((key_node, is_merge)) => {
                        let mut value = built.node;
                        // A block list or mapping starts on the line after
                        // its key: errors and warnings about it point at
                        // the key.
                        if !matches!(value.value, Value::Scalar(_)) {
                            value.at = key_node.node.at.clone();
                        }
                        entries.push((key_node, is_merge, value))
                    }
                }
                Ok(())
            }
        }
    }

    fn close(&self, frame: Frame) -> Result<(Built, usize), ComposeError> {
        match frame {
            Frame::Seq {
                start,
                anchor,
                tag,
                items,
                size,
                depth,
            } => Ok((
                Built {
                    node: Node {
                        value: Value::Seq(items),
                        at: start,
                        tag,
                    },
                    size,
                    depth,
                },
                anchor,
            )),
            Frame::Map {
                start,
                anchor,
                tag,
                entries,
                size,
                depth,
                ..
            } => {
                let map = self.mapping(entries)?;
                Ok((
                    Built {
                        node: Node {
                            value: Value::Map(map),
                            at: start,
                            tag,
                        },
                        size,
                        depth,
                    },
                    anchor,
                ))
            }
        }
    }

    /// Builds a mapping: explicit keys (unique), then the keys of merged
    /// mappings that are not already there, earlier merges first.
    fn mapping(&self, entries: Vec<(Built, bool, Node)>) -> Result<Mapping, ComposeError> {
        let mut map = Mapping::default();
        let mut merges = Vec::new();
        for (key, is_merge, value) in entries {
            if is_merge {
                merges.push(value);
                continue;
            }
            let name = match key.node.value {
                Value::Scalar(text) => text,
                Value::Null => String::new(),
                _ => return Err(self.error(key.node.at, YamlProblem::ComplexKey)),
            };
            if map.get(&name).is_some() {
                return Err(self.error(key.node.at, YamlProblem::DuplicateKey(name)));
            }
            map.entries.push(Entry { key: name, value });
        }
        for merge in merges {
            let sources = match merge.value {
                Value::Map(source) => vec![source],
                Value::Seq(items) => {
                    let mut sources = Vec::new();
                    for item in items {
                        match item.value {
                            Value::Map(source) => sources.push(source),
                            _ => return Err(self.error(item.at, YamlProblem::BadMerge)),
                        }
                    }
                    sources
                }
                _ => return Err(self.error(merge.at, YamlProblem::BadMerge)),
            };
            for source in sources {
                for entry in source.entries {
                    if map.get(&entry.key).is_none() {
                        map.entries.push(entry);
                    }
                }
            }
        }
        Ok(map)
    }
}

fn merge_tag(tag: Option<&Tag>) -> Option<MergeTag> {
    let tag = tag?;
    if tag.handle != "!" {
        return None;
    }
    match tag.suffix.as_str() {
        "reset" => Some(MergeTag::Reset),
        "override" => Some(MergeTag::Override),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, ComposeError> {
        parse(&Arc::from("test.yml"), text)
    }

    fn problem(text: &str) -> YamlProblem {
        match parse_str(text) {
            Err(ComposeError::Yaml { problem, .. }) => problem,
            other => panic!("expected a YAML error, got {other:?}"),
        }
    }

    fn get<'a>(node: &'a Node, path: &[&str]) -> &'a Node {
        path.iter().fold(node, |node, key| {
            node.as_map()
                .and_then(|map| map.get(key))
                .unwrap_or_else(|| panic!("no key {key}"))
        })
    }

    #[test]
    fn scalars_stay_text_and_nulls_are_plain_only() {
        let root =
            parse_str("a: 1.10\nb: 22:22\nc:\nd: ~\ne: 'null'\nf: !!str null\ng: \"\"\n").unwrap();
        assert_eq!(get(&root, &["a"]).as_scalar(), Some("1.10"));
        assert_eq!(get(&root, &["b"]).as_scalar(), Some("22:22"));
        assert!(get(&root, &["c"]).is_null());
        assert!(get(&root, &["d"]).is_null());
        assert_eq!(get(&root, &["e"]).as_scalar(), Some("null"));
        assert_eq!(get(&root, &["f"]).as_scalar(), Some("null"));
        assert_eq!(get(&root, &["g"]).as_scalar(), Some(""));
    }

    #[test]
    fn byte_order_marks_and_windows_line_ends_are_read() {
        let root = parse_str("\u{feff}services:\r\n  web:\r\n    image: nginx\r\n").unwrap();
        let image = get(&root, &["services", "web", "image"]);
        assert_eq!(image.as_scalar(), Some("nginx"));
        assert_eq!(image.at.line, 3);
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let root = parse_str("services:\n  web:\n    image: nginx\n").unwrap();
        let image = get(&root, &["services", "web", "image"]);
        assert_eq!(image.at.line, 3);
        assert_eq!(image.at.column, 12);
        assert_eq!(image.at.to_string(), "test.yml:3");
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand() {
        let text = "\
x-base: &base
  image: nginx
  environment: {A: '1'}
x-more: &more
  user: www
  image: ignored
services:
  web:
    <<: [*base, *more]
    image: httpd
  api: *base
";
        let root = parse_str(text).unwrap();
        assert_eq!(
            get(&root, &["services", "web", "image"]).as_scalar(),
            Some("httpd")
        );
        assert_eq!(
            get(&root, &["services", "web", "user"]).as_scalar(),
            Some("www")
        );
        assert_eq!(
            get(&root, &["services", "web", "environment", "A"]).as_scalar(),
            Some("1")
        );
        assert_eq!(
            get(&root, &["services", "api", "image"]).as_scalar(),
            Some("nginx")
        );
        // A quoted "<<" is an ordinary key.
        let root = parse_str("a:\n  '<<': 1\n").unwrap();
        assert_eq!(get(&root, &["a", "<<"]).as_scalar(), Some("1"));
    }

    #[test]
    fn merge_tags_are_kept() {
        let root = parse_str("a: !reset []\nb: !override {x: 1}\nc: !custom 3\n").unwrap();
        assert_eq!(get(&root, &["a"]).tag, Some(MergeTag::Reset));
        assert_eq!(get(&root, &["b"]).tag, Some(MergeTag::Override));
        assert_eq!(get(&root, &["c"]).tag, None);
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        assert_eq!(
            problem("a: 1\na: 2\n"),
            YamlProblem::DuplicateKey("a".into())
        );
        assert_eq!(problem(""), YamlProblem::Empty);
        assert_eq!(problem("# only a comment\n"), YamlProblem::Empty);
        assert_eq!(problem("- a\n- b\n"), YamlProblem::NotAMapping("a list"));
        assert_eq!(problem("a: 1\n---\nb: 2\n"), YamlProblem::SeveralDocuments);
        assert_eq!(problem("? [a]\n: 1\n"), YamlProblem::ComplexKey);
        assert_eq!(problem("a:\n  <<: 3\n"), YamlProblem::BadMerge);
        assert!(matches!(problem("a: [1, 2\n"), YamlProblem::Syntax(_)));
        assert!(matches!(
            problem("a: *nope\n"),
            YamlProblem::Syntax(_) | YamlProblem::UnknownAlias(_)
        ));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_bounded() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g'] {
            bomb.push_str(&format!(
                "{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
            ));
            previous = name;
        }
        assert_eq!(problem(&bomb), YamlProblem::TooLarge(MAX_NODES));

        let deep = format!(
            "a: {}{}\n",
            "[".repeat(MAX_DEPTH + 5),
            "]".repeat(MAX_DEPTH + 5)
        );
        assert!(matches!(
            problem(&deep),
            YamlProblem::TooDeep(_) | YamlProblem::Syntax(_)
        ));

        // Aliases can stack depth beyond what any single frame reaches.
        let mut stacked = String::from("a0: &a0 [[[[[[[[[[1]]]]]]]]]]\n");
        for i in 1..10 {
            stacked.push_str(&format!("a{i}: &a{i} [[[[[[[[*a{}]]]]]]]]\n", i - 1));
        }
        assert_eq!(problem(&stacked), YamlProblem::TooDeep(MAX_DEPTH));
    }
}
