//! The words of a template action: fields (`.A`), variables (`$x`),
//! identifiers, Go's string, raw string, character and number literals,
//! parentheses, `|`, `:=`, `=` and `,`.

use super::parse::{parse_error, Pos};
use super::TemplateError;

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    Dot,
    Field(String),
    Variable(String),
    Ident(String),
    String(String),
    Int(i64),
    Float(f64),
    Char(char),
    LeftParen,
    RightParen,
    Pipe,
    Declare,
    Assign,
    Comma,
    Space,
}

pub fn lex(text: &str, pos: Pos) -> Result<Vec<Token>, TemplateError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word_end = |from: usize| -> usize {
        let mut j = from;
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                tokens.push(Token::Space);
                continue;
            }
            '(' => tokens.push(Token::LeftParen),
            ')' => tokens.push(Token::RightParen),
            '|' => tokens.push(Token::Pipe),
            ',' => tokens.push(Token::Comma),
            '=' => tokens.push(Token::Assign),
            ':' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Declare);
                i += 1;
            }
            '.' if chars
                .get(i + 1)
                .is_some_and(|c| c.is_alphabetic() || *c == '_') =>
            {
                let end = word_end(i + 1);
                tokens.push(Token::Field(chars[i + 1..end].iter().collect()));
                i = end;
                continue;
            }
            '.' if !chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => tokens.push(Token::Dot),
            '$' => {
                let end = word_end(i + 1);
                tokens.push(Token::Variable(chars[i..end].iter().collect()));
                i = end;
                continue;
            }
            '"' | '`' => {
                let (value, end) = quoted(&chars, i, pos)?;
                tokens.push(Token::String(value));
                i = end;
                continue;
            }
            '\'' => {
                let (value, end) = quoted(&chars, i, pos)?;
                let mut it = value.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => tokens.push(Token::Char(c)),
                    _ => {
                        return Err(parse_error(
                            pos,
                            format!("malformed character constant: {value}"),
                        ))
                    }
                }
                i = end;
                continue;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let mut end = i + 1;
                while end < chars.len()
                    && (chars[end].is_ascii_alphanumeric()
                        || chars[end] == '.'
                        || chars[end] == '_'
                        || ((chars[end] == '-' || chars[end] == '+')
                            && matches!(chars[end - 1], 'e' | 'E')))
                {
                    end += 1;
                }
                let word: String = chars[i..end].iter().filter(|c| **c != '_').collect();
                tokens.push(
                    number(&word).ok_or_else(|| {
                        parse_error(pos, format!("bad number syntax: \"{word}\""))
                    })?,
                );
                i = end;
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let end = word_end(i);
                tokens.push(Token::Ident(chars[i..end].iter().collect()));
                i = end;
                continue;
            }
            other => {
                return Err(parse_error(
                    pos,
                    format!("unexpected \"{other}\" in command"),
                ))
            }
        }
        i += 1;
    }
    Ok(tokens)
}

fn number(word: &str) -> Option<Token> {
    let (negative, digits) = match word.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, word.strip_prefix('+').unwrap_or(word)),
    };
    let lower = digits.to_ascii_lowercase();
    let int = if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = lower.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(n) = int {
        return Some(Token::Int(if negative { -n } else { n }));
    }
    let f: f64 = lower.parse().ok()?;
    Some(Token::Float(if negative { -f } else { f }))
}

/// A quoted string from `chars[start]` (`"`, `` ` `` or `'`) with Go's
/// escapes, and where it ends.
fn quoted(chars: &[char], start: usize, pos: Pos) -> Result<(String, usize), TemplateError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((out, i + 1));
        }
        if c == '\\' && quote != '`' {
            i += 1;
            let Some(&e) = chars.get(i) else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '\\' | '"' | '\'' => out.push(e),
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars
                        .get(i + 1..i + 1 + len)
                        .unwrap_or(&[])
                        .iter()
                        .collect();
                    let code = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == len)
                        .and_then(char::from_u32)
                        .ok_or_else(|| parse_error(pos, "invalid escape in string"))?;
                    out.push(code);
                    i += len;
                }
                _ => return Err(parse_error(pos, format!("unknown escape sequence: \\{e}"))),
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    Err(parse_error(pos, "unterminated quoted string"))
}
