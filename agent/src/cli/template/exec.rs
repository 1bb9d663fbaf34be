//! Runs a parsed template over JSON data with Go's rules: fields of maps,
//! pipelines that pass the previous result as the last argument, truth,
//! variables scoped to their block, `range` over lists and maps (by sorted
//! key), `with`, `break` and `continue`, and Go's way of printing values.

use serde_json::Value;

use super::funcs::{self, Mode};
use super::parse::{Arg, Branch, Command, List, Node, Pipeline, Pos};
use super::TemplateError;

/// A value, or no value (a missing map key: Go prints `<no value>`).
pub type Val = Option<Value>;

/// A method of the root object that takes arguments (`{{.Label "k"}}` on a
/// `network ls` row): `None` if there is no such method.
pub type Methods<'a> = &'a dyn Fn(&str, &[Val]) -> Option<Result<Val, String>>;

/// How a template runs.
pub struct Exec<'a> {
    pub mode: Mode,
    pub methods: Option<Methods<'a>>,
    /// For `ls` rows: a field the row does not have is an error (Docker's
    /// rows are Go structs), named with this type.
    pub row_type: Option<&'a str>,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

struct State<'a> {
    exec: &'a Exec<'a>,
    vars: Vec<(String, Val)>,
    out: String,
}

/// Where evaluation is: the dot and whether it is the root row.
#[derive(Clone, Copy)]
struct Dot<'v> {
    value: &'v Val,
    root: bool,
}

impl Exec<'_> {
    pub fn run(&self, list: &List, data: &Value) -> Result<String, TemplateError> {
        let root: Val = Some(data.clone());
        let mut state = State {
            exec: self,
            vars: vec![("$".to_string(), root.clone())],
            out: String::new(),
        };
        let dot = Dot {
            value: &root,
            root: true,
        };
        state.walk(list, dot)?;
        Ok(state.out)
    }
}

fn exec_error(pipe: &Pipeline, message: impl Into<String>) -> TemplateError {
    exec_error_at(pipe.pos, &pipe.text, message)
}

fn exec_error_at(pos: Pos, at: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Exec {
        line: pos.line,
        col: pos.col,
        at: at.to_string(),
        message: message.into(),
    }
}

impl State<'_> {
    fn walk(&mut self, list: &List, dot: Dot) -> Result<Flow, TemplateError> {
        for node in list {
            let flow = match node {
                Node::Text(text) => {
                    self.out.push_str(text);
                    Flow::Normal
                }
                Node::Action(pipe) => {
                    let value = self.pipeline(pipe, dot)?;
                    if pipe.vars.is_empty() {
                        print_value(&mut self.out, &value);
                    }
                    Flow::Normal
                }
                Node::If(branch) => self.branch(branch, dot, false)?,
                Node::With(branch) => self.branch(branch, dot, true)?,
                Node::Range(branch) => self.range(branch, dot)?,
                Node::Break(_) => Flow::Break,
                Node::Continue(_) => Flow::Continue,
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// `if` (dot unchanged) or `with` (dot is the value).
    fn branch(&mut self, branch: &Branch, dot: Dot, with: bool) -> Result<Flow, TemplateError> {
        let mark = self.vars.len();
        let value = self.pipeline(&branch.pipe, dot)?;
        let flow = if funcs::truth(&value) {
            if with {
                let inner = Dot {
                    value: &value,
                    root: false,
                };
                self.walk(&branch.list, inner)?
            } else {
                self.walk(&branch.list, dot)?
            }
        } else if let Some(else_list) = &branch.else_list {
            self.walk(else_list, dot)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, branch: &Branch, dot: Dot) -> Result<Flow, TemplateError> {
        let mark = self.vars.len();
        let value = self.commands(&branch.pipe, dot)?;
        let items: Vec<(Value, Val)> = match &value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::from(i), Some(v.clone())))
                .collect(),
            Some(Value::Object(map)) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                keys.into_iter()
                    .map(|k| (Value::String(k.clone()), map.get(k).cloned()))
                    .collect()
            }
            Some(other) => {
                return Err(exec_error(
                    &branch.pipe,
                    format!("range can't iterate over {}", funcs::display(other)),
                ))
            }
        };
        if items.is_empty() {
            let flow = match &branch.else_list {
                Some(else_list) => self.walk(else_list, dot)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (key, item) in items {
            let inner_mark = self.vars.len();
            match branch.pipe.vars.as_slice() {
                [element] => self.declare(&branch.pipe, element, item.clone())?,
                [index, element] => {
                    self.declare(&branch.pipe, index, Some(key))?;
                    self.declare(&branch.pipe, element, item.clone())?;
                }
                _ => {}
            }
            let inner = Dot {
                value: &item,
                root: false,
            };
            let flow = self.walk(&branch.list, inner)?;
            self.vars.truncate(inner_mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    fn declare(&mut self, pipe: &Pipeline, name: &str, value: Val) -> Result<(), TemplateError> {
        if pipe.assign {
            match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value,
                None => return Err(exec_error(pipe, format!("undefined variable: {name}"))),
            }
        } else {
            self.vars.push((name.to_string(), value));
        }
        Ok(())
    }

    /// A whole pipeline: its commands, then its variables.
    fn pipeline(&mut self, pipe: &Pipeline, dot: Dot) -> Result<Val, TemplateError> {
        let value = self.commands(pipe, dot)?;
        for name in &pipe.vars {
            self.declare(pipe, name, value.clone())?;
        }
        Ok(value)
    }

    fn commands(&mut self, pipe: &Pipeline, dot: Dot) -> Result<Val, TemplateError> {
        let mut value: Option<Val> = None;
        for command in &pipe.commands {
            value = Some(self.command(pipe, command, dot, value)?);
        }
        Ok(value.unwrap_or(None))
    }

    /// One command; `piped` is the previous command's result, passed as the
    /// last argument.
    fn command(
        &mut self,
        pipe: &Pipeline,
        command: &Command,
        dot: Dot,
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        let (first, rest) = match command.args.split_first() {
            Some(split) => split,
            None => return Err(exec_error(pipe, "empty command")),
        };
        let has_args = !rest.is_empty() || piped.is_some();
        match first {
            Arg::Function(name) => self.function(pipe, name, rest, dot, piped),
            Arg::Field(names) => {
                self.fields(pipe, dot.value.clone(), dot.root, names, rest, dot, piped)
            }
            Arg::Variable(name, names) => {
                let base = self.variable(pipe, name)?;
                if names.is_empty() {
                    if has_args {
                        return Err(exec_error(
                            pipe,
                            format!("can't give argument to non-function {name}"),
                        ));
                    }
                    return Ok(base);
                }
                let root = name == "$";
                self.fields(pipe, base, root, names, rest, dot, piped)
            }
            Arg::Group(inner, names) => {
                let base = self.pipeline(inner, dot)?;
                if names.is_empty() {
                    if has_args {
                        return Err(exec_error(pipe, "can't give argument to non-function"));
                    }
                    return Ok(base);
                }
                self.fields(pipe, base, false, names, rest, dot, piped)
            }
            literal => {
                if has_args {
                    return Err(exec_error(pipe, "can't give argument to non-function"));
                }
                self.arg(pipe, literal, dot)
            }
        }
    }

    fn variable(&self, pipe: &Pipeline, name: &str) -> Result<Val, TemplateError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| exec_error(pipe, format!("undefined variable: {name}")))
    }

    /// `.A.B` from `base`; the last name may be a root method given `args`.
    #[allow(clippy::too_many_arguments)]
    fn fields(
        &mut self,
        pipe: &Pipeline,
        base: Val,
        base_is_root: bool,
        names: &[String],
        args: &[Arg],
        dot: Dot,
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        let has_args = !args.is_empty() || piped.is_some();
        let mut value = base;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let on_root = base_is_root && i == 0;
            if last && has_args {
                if let (true, Some(methods)) = (on_root, self.exec.methods) {
                    let mut values = self.args(pipe, args, dot)?;
                    values.extend(piped.clone());
                    if let Some(result) = methods(name, &values) {
                        return result.map_err(|e| exec_error(pipe, e));
                    }
                }
                return Err(exec_error(
                    pipe,
                    format!("{name} has arguments but cannot be invoked as function"),
                ));
            }
            value = self.field(pipe, &value, name, on_root)?;
        }
        Ok(value)
    }

    fn field(
        &self,
        pipe: &Pipeline,
        value: &Val,
        name: &str,
        on_root: bool,
    ) -> Result<Val, TemplateError> {
        match value {
            None | Some(Value::Null) => Err(exec_error(
                pipe,
                format!("nil pointer evaluating interface {{}}.{name}"),
            )),
            Some(Value::Object(map)) => match map.get(name) {
                Some(v) => Ok(Some(v.clone())),
                None => match self.exec.row_type {
                    Some(row) if on_root => Err(exec_error(
                        pipe,
                        format!("can't evaluate field {name} in type {row}"),
                    )),
                    _ if funcs::is_string_map(map) => Ok(Some(Value::String(String::new()))),
                    _ => Ok(None),
                },
            },
            Some(other) => Err(exec_error(
                pipe,
                format!(
                    "can't evaluate field {name} in type {}",
                    funcs::type_name(other)
                ),
            )),
        }
    }

    fn args(&mut self, pipe: &Pipeline, args: &[Arg], dot: Dot) -> Result<Vec<Val>, TemplateError> {
        args.iter().map(|a| self.arg(pipe, a, dot)).collect()
    }

    /// One argument's value.
    fn arg(&mut self, pipe: &Pipeline, arg: &Arg, dot: Dot) -> Result<Val, TemplateError> {
        Ok(match arg {
            Arg::Dot => dot.value.clone(),
            Arg::Field(names) => {
                return self.fields(pipe, dot.value.clone(), dot.root, names, &[], dot, None)
            }
            Arg::Variable(name, names) => {
                let base = self.variable(pipe, name)?;
                if names.is_empty() {
                    return Ok(base);
                }
                return self.fields(pipe, base, name == "$", names, &[], dot, None);
            }
            Arg::Group(inner, names) => {
                let base = self.pipeline(inner, dot)?;
                if names.is_empty() {
                    return Ok(base);
                }
                return self.fields(pipe, base, false, names, &[], dot, None);
            }
            Arg::Function(name) => return self.function(pipe, name, &[], dot, None),
            Arg::String(s) => Some(Value::String(s.clone())),
            Arg::Int(n) => Some(Value::from(*n)),
            Arg::Float(f) => {
                Some(serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number))
            }
            Arg::Bool(b) => Some(Value::Bool(*b)),
            Arg::Nil => Some(Value::Null),
        })
    }

    fn function(
        &mut self,
        pipe: &Pipeline,
        name: &str,
        args: &[Arg],
        dot: Dot,
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        // `and` and `or` stop at the first argument that decides.
        if name == "and" || name == "or" {
            let count = args.len() + usize::from(piped.is_some());
            if count == 0 {
                return Err(exec_error(
                    pipe,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = None;
            for arg in args {
                let value = self.arg(pipe, arg, dot)?;
                if funcs::truth(&value) != (name == "and") {
                    return Ok(value);
                }
                last = Some(value);
            }
            if let Some(value) = piped {
                return Ok(value);
            }
            return Ok(last.unwrap_or(None));
        }
        let mut values = self.args(pipe, args, dot)?;
        values.extend(piped);
        funcs::call(self.exec.mode, name, &values)
            .map_err(|e| exec_error(pipe, format!("error calling {name}: {e}")))
    }
}

/// Go's `fmt.Print` of a value.
fn print_value(out: &mut String, value: &Val) {
    match value {
        None => out.push_str("<no value>"),
        Some(v) => out.push_str(&funcs::display(v)),
    }
}
