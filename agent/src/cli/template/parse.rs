//! Go `text/template` syntax: the text between actions, and the actions
//! (`{{ .A.B }}`, pipelines, `if`/`range`/`with`/`else`/`end`, variables,
//! `{{- -}}` trimming, comments) parsed into a tree.

use super::lex::{lex, Token};
use super::TemplateError;

/// A parsed template: text and actions in order.
pub type List = Vec<Node>;

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Text(String),
    /// `{{pipeline}}`: prints the value unless it declares variables.
    Action(Pipeline),
    If(Branch),
    Range(Branch),
    With(Branch),
    Break(Pos),
    Continue(Pos),
}

/// `if`, `range` or `with`: the pipeline, the body and the `else` part.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    pub pipe: Pipeline,
    pub list: List,
    pub else_list: Option<List>,
}

/// Line and column (1-based), for messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// `$x := cmd | cmd arg`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub pos: Pos,
    /// Variables declared (`:=`) or assigned (`=`).
    pub vars: Vec<String>,
    pub assign: bool,
    pub commands: Vec<Command>,
    /// The action's text, for messages (`<.Foo>`).
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// `.`.
    Dot,
    /// `.A.B`.
    Field(Vec<String>),
    /// `$` or `$x`, then fields.
    Variable(String, Vec<String>),
    /// A function name.
    Function(String),
    /// `(pipeline)`, then fields.
    Group(Box<Pipeline>, Vec<String>),
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

/// What one action is.
enum Action {
    Pipeline(Pipeline),
    If(Pipeline),
    Range(Pipeline),
    With(Pipeline),
    Else(Option<(Keyword, Pipeline)>),
    End,
    Break,
    Continue,
    Comment,
}

#[derive(Clone, Copy, PartialEq)]
enum Keyword {
    If,
    With,
}

/// Parses a whole template.
pub fn parse(text: &str) -> Result<List, TemplateError> {
    let items = split(text)?;
    let mut parser = Parser { items, next: 0 };
    let (list, end) = parser.list()?;
    match end {
        None => Ok(list),
        Some((pos, _)) => Err(TemplateError::Parse {
            line: pos.line,
            message: "unexpected {{end}}".into(),
        }),
    }
}

/// Text or an action, with trimming already applied to the text.
enum Item {
    Text(String),
    Action(Pos, Action),
}

fn split(text: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let inner_start = start + 2;
        let trim_left = rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\t")
            || rest[inner_start..].starts_with("-\n");
        if trim_left {
            before = before.trim_end();
        }
        if !before.is_empty() {
            items.push(Item::Text(before.to_string()));
        }
        let pos = position(text, offset + start);
        let body_start = inner_start + usize::from(trim_left);
        let (body, after, trim_right) =
            action_body(&rest[body_start..]).ok_or_else(|| TemplateError::Parse {
                line: pos.line,
                message: "unclosed action".into(),
            })?;
        let action = action(body, pos)?;
        items.push(Item::Action(pos, action));
        trim_next = trim_right;
        let consumed = body_start + after;
        offset += consumed;
        rest = &rest[consumed..];
    }
    let tail = if trim_next { rest.trim_start() } else { rest };
    if !tail.is_empty() {
        items.push(Item::Text(tail.to_string()));
    }
    Ok(items)
}

/// The action's text up to `}}` (outside quotes), how far `}}` ends, and
/// whether it was ` -}}`.
fn action_body(text: &str) -> Option<(&str, usize, bool)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q != b'`' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'"' || b == b'`' || b == b'\'' {
                    quote = Some(b);
                } else if text[i..].starts_with(" -}}")
                    || text[i..].starts_with("\t-}}")
                    || text[i..].starts_with("\n-}}")
                {
                    return Some((&text[..i], i + 4, true));
                } else if text[i..].starts_with("}}") {
                    return Some((&text[..i], i + 2, false));
                } else if text[i..].starts_with("/*") {
                    let end = text[i..].find("*/")? + i + 2;
                    i = end;
                    continue;
                }
            }
        }
        i += 1;
    }
    None
}

fn position(text: &str, byte: usize) -> Pos {
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Pos { line, col }
}

pub(super) fn parse_error(pos: Pos, message: impl Into<String>) -> TemplateError {
    TemplateError::Parse {
        line: pos.line,
        message: message.into(),
    }
}

fn action(body: &str, pos: Pos) -> Result<Action, TemplateError> {
    let trimmed = body.trim();
    if trimmed.starts_with("/*") {
        if !trimmed.ends_with("*/") {
            return Err(parse_error(pos, "unclosed comment"));
        }
        return Ok(Action::Comment);
    }
    let tokens = lex(trimmed, pos)?;
    let mut words = tokens.iter().filter(|t| **t != Token::Space);
    let keyword = match words.next() {
        Some(Token::Ident(word)) => word.as_str(),
        Some(_) => "",
        None => return Err(parse_error(pos, "missing value for command")),
    };
    let after_keyword = || -> Vec<Token> {
        let start = tokens
            .iter()
            .position(|t| matches!(t, Token::Ident(_)))
            .map_or(0, |i| i + 1);
        tokens[start..].to_vec()
    };
    let pipeline = |toks: Vec<Token>, context: &str| -> Result<Pipeline, TemplateError> {
        let pipe = pipeline(&toks, pos, trimmed)?;
        if pipe.commands.is_empty() {
            return Err(parse_error(pos, format!("missing value for {context}")));
        }
        Ok(pipe)
    };
    Ok(match keyword {
        "if" => Action::If(pipeline(after_keyword(), "if")?),
        "range" => Action::Range(pipeline(after_keyword(), "range")?),
        "with" => Action::With(pipeline(after_keyword(), "with")?),
        "end" => Action::End,
        "break" => Action::Break,
        "continue" => Action::Continue,
        "else" => {
            let rest = after_keyword();
            let mut words = rest.iter().filter(|t| **t != Token::Space);
            match words.next() {
                None => Action::Else(None),
                Some(Token::Ident(word)) if word == "if" || word == "with" => {
                    let kind = if word == "if" {
                        Keyword::If
                    } else {
                        Keyword::With
                    };
                    let start = rest
                        .iter()
                        .position(|t| matches!(t, Token::Ident(_)))
                        .map_or(0, |i| i + 1);
                    Action::Else(Some((kind, pipeline(rest[start..].to_vec(), word)?)))
                }
                Some(_) => return Err(parse_error(pos, "unexpected token after else")),
            }
        }
        "define" | "template" | "block" => {
            return Err(parse_error(
                pos,
                format!("{{{{{keyword}}}}} is not supported in --format templates"),
            ))
        }
        _ => Action::Pipeline(pipeline(tokens, "command")?),
    })
}

/// `$x := a | b c` from tokens.
fn pipeline(tokens: &[Token], pos: Pos, text: &str) -> Result<Pipeline, TemplateError> {
    let words: Vec<&Token> = tokens.iter().filter(|t| **t != Token::Space).collect();
    let mut vars = Vec::new();
    let mut assign = false;
    let mut start = 0;
    // `$a :=`, `$a =`, `$i, $e :=`.
    let declared = match words.as_slice() {
        [Token::Variable(a), Token::Comma, Token::Variable(b), Token::Declare | Token::Assign, ..] =>
        {
            vars = vec![a.clone(), b.clone()];
            assign = matches!(words[3], Token::Assign);
            4
        }
        [Token::Variable(a), Token::Declare | Token::Assign, ..] => {
            vars = vec![a.clone()];
            assign = matches!(words[1], Token::Assign);
            2
        }
        _ => 0,
    };
    if declared > 0 {
        let mut seen = 0;
        for (i, t) in tokens.iter().enumerate() {
            if *t != Token::Space {
                seen += 1;
            }
            if seen == declared {
                start = i + 1;
                break;
            }
        }
    }
    let mut commands = Vec::new();
    let mut rest = &tokens[start..];
    loop {
        let (command, used) = command(rest, pos, text)?;
        rest = &rest[used..];
        match command {
            Some(c) => commands.push(c),
            None if commands.is_empty() && rest.is_empty() => break,
            None => return Err(parse_error(pos, "missing command")),
        }
        match rest.first() {
            Some(Token::Pipe) => rest = &rest[1..],
            None => break,
            Some(other) => {
                return Err(parse_error(pos, format!("unexpected {other:?} in operand")))
            }
        }
    }
    Ok(Pipeline {
        pos,
        vars,
        assign,
        commands,
        text: text.to_string(),
    })
}

/// One command (operands up to `|`, `)` or the end) and the tokens used.
fn command(
    tokens: &[Token],
    pos: Pos,
    text: &str,
) -> Result<(Option<Command>, usize), TemplateError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let arg = match &tokens[i] {
            Token::Space => {
                i += 1;
                continue;
            }
            Token::Pipe | Token::RightParen => break,
            Token::Dot => Arg::Dot,
            Token::Field(name) => {
                let (fields, used) = fields(&tokens[i..]);
                i += used;
                debug_assert_eq!(fields.first(), Some(name));
                args.push(Arg::Field(fields));
                continue;
            }
            Token::Variable(name) => {
                let (fields, used) = fields(&tokens[i + 1..]);
                i += 1 + used;
                args.push(Arg::Variable(name.clone(), fields));
                continue;
            }
            Token::Ident(word) => match word.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Function(word.clone()),
            },
            Token::String(s) => Arg::String(s.clone()),
            Token::Int(n) => Arg::Int(*n),
            Token::Float(f) => Arg::Float(*f),
            Token::Char(c) => Arg::Int(i64::from(u32::from(*c))),
            Token::LeftParen => {
                let close = matching_paren(&tokens[i..])
                    .ok_or_else(|| parse_error(pos, "unclosed left paren"))?;
                let inner = pipeline(&tokens[i + 1..i + close], pos, text)?;
                if inner.commands.is_empty() {
                    return Err(parse_error(pos, "missing value for parenthesized pipeline"));
                }
                let (fields, used) = fields(&tokens[i + close + 1..]);
                i += close + 1 + used;
                args.push(Arg::Group(Box::new(inner), fields));
                continue;
            }
            other => return Err(parse_error(pos, format!("unexpected {other:?} in command"))),
        };
        args.push(arg);
        i += 1;
    }
    if args.is_empty() {
        return Ok((None, i));
    }
    Ok((Some(Command { args }), i))
}

/// `.A.B` directly following (no space): the field names and tokens used.
fn fields(tokens: &[Token]) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    for t in tokens {
        match t {
            Token::Field(name) => names.push(name.clone()),
            _ => break,
        }
    }
    let used = names.len();
    (names, used)
}

fn matching_paren(tokens: &[Token]) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LeftParen => depth += 1,
            Token::RightParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

struct Parser {
    items: Vec<Item>,
    next: usize,
}

/// How a list ended: `{{end}}`, or `{{else ...}}`.
type Ending = Option<(Pos, Option<Option<(Keyword, Pipeline)>>)>;

impl Parser {
    /// Nodes up to `{{end}}` or `{{else}}` (returned), or the end of the
    /// template (`None`).
    fn list(&mut self) -> Result<(List, Ending), TemplateError> {
        let mut list = Vec::new();
        while self.next < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.next], Item::Text(String::new()));
            self.next += 1;
            match item {
                Item::Text(t) => list.push(Node::Text(t)),
                Item::Action(pos, action) => match action {
                    Action::Comment => {}
                    Action::Pipeline(p) => list.push(Node::Action(p)),
                    Action::Break => list.push(Node::Break(pos)),
                    Action::Continue => list.push(Node::Continue(pos)),
                    Action::End => return Ok((list, Some((pos, None)))),
                    Action::Else(chain) => return Ok((list, Some((pos, Some(chain))))),
                    Action::If(p) => list.push(Node::If(self.branch(p, pos, "if")?)),
                    Action::Range(p) => list.push(Node::Range(self.branch(p, pos, "range")?)),
                    Action::With(p) => list.push(Node::With(self.branch(p, pos, "with")?)),
                },
            }
        }
        Ok((list, None))
    }

    fn branch(&mut self, pipe: Pipeline, pos: Pos, what: &str) -> Result<Branch, TemplateError> {
        let (list, ending) = self.list()?;
        let else_list = match ending {
            None => return Err(parse_error(pos, format!("unexpected EOF in {what}"))),
            Some((_, None)) => None,
            Some((_, Some(None))) => {
                let (else_list, ending) = self.list()?;
                match ending {
                    Some((_, None)) => Some(else_list),
                    Some((p, Some(_))) => {
                        return Err(parse_error(
                            p,
                            format!("expected end; found else in {what}"),
                        ))
                    }
                    None => return Err(parse_error(pos, format!("unexpected EOF in {what}"))),
                }
            }
            // `{{else if x}}` / `{{else with x}}`: a nested branch that
            // shares this one's `{{end}}`.
            Some((p, Some(Some((kind, chained))))) => {
                let nested = self.branch(chained, p, what)?;
                Some(vec![match kind {
                    Keyword::If => Node::If(nested),
                    Keyword::With => Node::With(nested),
                }])
            }
        };
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }
}
