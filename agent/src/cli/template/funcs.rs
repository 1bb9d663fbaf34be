//! The functions `--format` templates can call: Go's built-ins (`and`, `or`,
//! `not`, `len`, `index`, `slice`, `eq`/`ne`/`lt`/`le`/`gt`/`ge`, `print`,
//! `printf`, `println`, `html`, `js`, `urlquery`) and Docker's (`json`,
//! `split`, `join`, `title`, `lower`, `upper`, `pad`, `truncate`), plus how
//! Go prints and tests values.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::exec::Val;

/// Rows, or the table header (where Docker's functions return the column
/// name unchanged, except `pad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Row,
    Header,
}

const NAMES: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print",
    "printf", "println", "html", "js", "urlquery", "json", "split", "join", "title", "lower",
    "upper", "pad", "truncate",
];

/// Whether `name` is a function templates can call.
pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

pub fn call(mode: Mode, name: &str, args: &[Val]) -> Result<Val, String> {
    if mode == Mode::Header {
        if let "json" | "split" | "join" | "title" | "lower" | "upper" | "truncate" = name {
            // The header keeps the column's name as it is.
            return Ok(args.first().cloned().unwrap_or(None));
        }
    }
    let s = |v: Value| Ok(Some(v));
    match name {
        "not" => {
            let [v] = want::<1>(name, args)?;
            s(Value::Bool(!truth(v)))
        }
        "len" => {
            let [v] = want::<1>(name, args)?;
            let n = match v {
                Some(Value::String(t)) => t.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(o)) => o.len(),
                other => return Err(format!("len of {}", type_name_of(other))),
            };
            s(Value::from(n))
        }
        "index" => index(args),
        "slice" => slice(args),
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or("missing argument for comparison")?;
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            for other in rest {
                if compare(first, other)? == Some(Ordering::Equal) {
                    return s(Value::Bool(true));
                }
            }
            s(Value::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            let [a, b] = want::<2>(name, args)?;
            let order = compare(a, b)?;
            if name != "ne" && order.is_none() {
                return Err("invalid type for comparison".into());
            }
            let result = match name {
                "ne" => order != Some(Ordering::Equal),
                "lt" => order == Some(Ordering::Less),
                "le" => order != Some(Ordering::Greater),
                "gt" => order == Some(Ordering::Greater),
                _ => order != Some(Ordering::Less),
            };
            s(Value::Bool(result))
        }
        "print" => s(Value::String(sprint(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(display_val).collect();
            s(Value::String(parts.join(" ") + "\n"))
        }
        "printf" => {
            let (format, rest) = args.split_first().ok_or("missing format")?;
            s(Value::String(printf(&string(format)?, rest)))
        }
        "html" => s(Value::String(html(&sprint(args)))),
        "js" => s(Value::String(js(&sprint(args)))),
        "urlquery" => s(Value::String(urlquery(&sprint(args)))),
        "json" => {
            let [v] = want::<1>(name, args)?;
            s(Value::String(match v {
                None => "null".into(),
                Some(v) => v.to_string(),
            }))
        }
        "split" => {
            let [text, sep] = want::<2>(name, args)?;
            let (text, sep) = (string(text)?, string(sep)?);
            let parts: Vec<Value> = if sep.is_empty() {
                text.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                text.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect()
            };
            s(Value::Array(parts))
        }
        "join" => {
            let [list, sep] = want::<2>(name, args)?;
            let sep = string(sep)?;
            let items = match list {
                Some(Value::Array(items)) => items,
                Some(Value::Null) => return s(Value::String(String::new())),
                other => {
                    return Err(format!(
                        "wrong type for value; expected []string; got {}",
                        type_name_of(other)
                    ))
                }
            };
            let texts = items
                .iter()
                .map(|v| match v {
                    Value::String(t) => Ok(t.as_str()),
                    _ => Err(
                        "wrong type for value; expected []string; got []interface {}".to_string(),
                    ),
                })
                .collect::<Result<Vec<&str>, String>>()?;
            s(Value::String(texts.join(&sep)))
        }
        "title" => {
            let [v] = want::<1>(name, args)?;
            s(Value::String(title(&string(v)?)))
        }
        "lower" => {
            let [v] = want::<1>(name, args)?;
            s(Value::String(string(v)?.to_lowercase()))
        }
        "upper" => {
            let [v] = want::<1>(name, args)?;
            s(Value::String(string(v)?.to_uppercase()))
        }
        "pad" => {
            let [v, prefix, suffix] = want::<3>(name, args)?;
            let text = string(v)?;
            if text.is_empty() {
                return s(Value::String(text));
            }
            let (prefix, suffix) = (count(prefix)?, count(suffix)?);
            s(Value::String(format!(
                "{}{text}{}",
                " ".repeat(prefix),
                " ".repeat(suffix)
            )))
        }
        "truncate" => {
            let [v, length] = want::<2>(name, args)?;
            let text = string(v)?;
            let length = count(length)?;
            s(Value::String(text.chars().take(length).collect()))
        }
        other => Err(format!("function \"{other}\" not defined")),
    }
}

fn want<'a, const N: usize>(name: &str, args: &'a [Val]) -> Result<&'a [Val; N], String> {
    args.try_into().map_err(|_| {
        format!(
            "wrong number of args for {name}: want {N} got {}",
            args.len()
        )
    })
}

fn string(v: &Val) -> Result<String, String> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            type_name_of(other)
        )),
    }
}

/// The largest count `pad`, `truncate`, `slice` and `printf` widths take:
/// more is a mistake, not a format.
const MAX_COUNT: u64 = 1 << 20;

fn count(v: &Val) -> Result<usize, String> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n <= MAX_COUNT)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("invalid count {n}: use 0 to {MAX_COUNT}")),
        other => Err(format!(
            "wrong type for value; expected int; got {}",
            type_name_of(other)
        )),
    }
}

fn index(args: &[Val]) -> Result<Val, String> {
    let (item, keys) = args
        .split_first()
        .ok_or("wrong number of args for index: want at least 1 got 0")?;
    let mut value = item.clone();
    for key in keys {
        value = match (&value, key) {
            (Some(Value::Array(list)), Some(Value::Number(n))) => {
                let i = n
                    .as_i64()
                    .ok_or("cannot index slice/array with type float64")?;
                let got = usize::try_from(i).ok().and_then(|i| list.get(i));
                Some(
                    got.cloned()
                        .ok_or_else(|| format!("error calling index: index out of range: {i}"))?,
                )
            }
            (Some(Value::Object(map)), Some(Value::String(k))) => match map.get(k) {
                Some(v) => Some(v.clone()),
                None if is_string_map(map) => Some(Value::String(String::new())),
                None => None,
            },
            (Some(Value::Object(_)), other) => {
                return Err(format!(
                    "value has type {}; should be string",
                    type_name_of(other)
                ))
            }
            (None | Some(Value::Null), _) => return Err("index of untyped nil".into()),
            (other, _) => return Err(format!("can't index item of type {}", type_name_of(other))),
        };
    }
    Ok(value)
}

fn slice(args: &[Val]) -> Result<Val, String> {
    let (item, bounds) = args.split_first().ok_or("wrong number of args for slice")?;
    let bounds = bounds
        .iter()
        .map(count)
        .collect::<Result<Vec<usize>, String>>()?;
    let pick = |len: usize| -> Result<(usize, usize), String> {
        let start = bounds.first().copied().unwrap_or(0);
        let end = bounds.get(1).copied().unwrap_or(len);
        if start > end || end > len {
            return Err(format!("index out of range: {end}"));
        }
        Ok((start, end))
    };
    match item {
        Some(Value::String(s)) => {
            let (a, b) = pick(s.len())?;
            s.get(a..b)
                .map(|t| Some(Value::String(t.into())))
                .ok_or_else(|| "slice of a string inside a character".into())
        }
        Some(Value::Array(list)) => {
            let (a, b) = pick(list.len())?;
            Ok(Some(Value::Array(list[a..b].to_vec())))
        }
        other => Err(format!("can't slice item of type {}", type_name_of(other))),
    }
}

/// Go's comparison for `eq`, `lt`...: numbers with numbers, strings with
/// strings, booleans and nil for equality; `None` when unordered.
fn compare(a: &Val, b: &Val) -> Result<Option<Ordering>, String> {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Ok(Some(x.cmp(&y)));
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return Ok(Some(x.cmp(&y)));
            }
            Ok(x.as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y)))
        }
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(Some(x.cmp(y))),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => Ok((x == y).then_some(Ordering::Equal)),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ok(Some(Ordering::Equal)),
        (Some(Value::Array(_) | Value::Object(_)), _)
        | (_, Some(Value::Array(_) | Value::Object(_))) => Err("non-comparable type".into()),
        (None | Some(Value::Null), _) | (_, None | Some(Value::Null)) => Ok(None),
        _ => Err("incompatible types for comparison".into()),
    }
}

/// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
pub fn truth(value: &Val) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// A JSON object whose values are all strings (labels, options): Go reads a
/// missing key of such a map as the empty string.
pub fn is_string_map(map: &Map<String, Value>) -> bool {
    map.values().all(Value::is_string)
}

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn type_name_of(value: &Val) -> &'static str {
    value.as_ref().map_or("<invalid reflect.Value>", type_name)
}

/// Go's `%v` of a value: strings bare, lists `[a b]`, maps `map[k:v]`.
pub fn display(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(display).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", map.get(k).map(display).unwrap_or_default()))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn display_val(value: &Val) -> String {
    value.as_ref().map_or_else(|| "<no value>".into(), display)
}

fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// `fmt.Sprint`: spaces between operands when neither is a string.
fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        let is_string = |v: &Val| matches!(v, Some(Value::String(_)));
        if i > 0 && !is_string(arg) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&display_val(arg));
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %t %f %e %g %x
/// %X %o %c %%`, with flags `-+ 0`, width and precision.
fn printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0).min(MAX_COUNT as usize));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        let text = match (verb, arg) {
            ('d', Some(Value::Number(n))) if n.is_i64() || n.is_u64() => {
                let t = number(n);
                if plus && !t.starts_with('-') {
                    format!("+{t}")
                } else {
                    t
                }
            }
            ('x' | 'X' | 'o', Some(Value::Number(n))) if n.as_i64().is_some() => {
                let i = n.as_i64().unwrap_or(0);
                match verb {
                    'x' => format!("{i:x}"),
                    'X' => format!("{i:X}"),
                    _ => format!("{i:o}"),
                }
            }
            ('x', Some(Value::String(s))) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('f' | 'F' | 'e' | 'g', Some(Value::Number(n))) => {
                let f = n.as_f64().unwrap_or(0.0);
                match verb {
                    'e' => format!("{:.*e}", precision.unwrap_or(6), f),
                    'g' => number(n),
                    _ => format!("{:.*}", precision.unwrap_or(6), f),
                }
            }
            ('t', Some(Value::Bool(b))) => b.to_string(),
            ('c', Some(Value::Number(n))) => n
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .and_then(char::from_u32)
                .map(String::from)
                .unwrap_or_default(),
            ('q', Some(Value::String(s))) => quote(s),
            ('s' | 'v', v) => {
                let t = display_val(v);
                match precision {
                    Some(p) if verb == 's' => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            (verb, v) => format!("%!{verb}({}={})", type_name_of(v), display_val(v)),
        };
        let width: usize = width.parse().unwrap_or(0).min(MAX_COUNT as usize);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else if zero && matches!(arg, Some(Value::Number(_))) {
            let (sign, digits) = match text.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", text.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    out
}

/// Go's `strconv.Quote`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's deprecated `strings.Title`: the first letter of every word upper
/// case (words break at anything but letters, digits, `_` and `'`).
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_separates = true;
    for c in s.chars() {
        if previous_separates {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous_separates = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

fn html(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn urlquery(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
