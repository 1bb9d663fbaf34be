//! Go templates as Docker's `--format` has them: a small `text/template`
//! (fields, pipelines, `if`/`else`/`range`/`with`, variables, comparisons)
//! with Docker's functions (`json`, `join`, `split`, `title`, `lower`,
//! `upper`, `pad`, `truncate`...), and Go's `tabwriter` for `table`
//! formats. Templates run over JSON values; they never reach the agent.

mod exec;
mod funcs;
mod lex;
mod parse;
pub mod tabwriter;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use exec::{Methods, Val};
pub use funcs::Mode;

/// A `--format` template that does not parse or does not run, in the
/// words of Docker's CLI.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template parsing error: template: :{line}: {message}")]
    Parse { line: usize, message: String },
    #[error("template: :{line}:{col}: executing \"\" at <{at}>: {message}")]
    Exec {
        line: usize,
        col: usize,
        at: String,
        message: String,
    },
}

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    list: parse::List,
}

impl Template {
    /// Parses `text`; unknown functions are refused here, as Go does.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let list = parse::parse(text)?;
        check_functions(&list)?;
        Ok(Template { list })
    }

    /// Runs over an object whose missing fields print `<no value>`
    /// (`inspect` output).
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        exec::Exec {
            mode: Mode::Row,
            methods: None,
            row_type: None,
        }
        .run(&self.list, data)
    }

    /// Runs over an `ls` row: asking for a field the row lacks is an error
    /// naming `row_type`; `methods` answers fields given arguments.
    pub fn render_row(
        &self,
        data: &Value,
        row_type: &str,
        methods: Option<Methods>,
    ) -> Result<String, TemplateError> {
        exec::Exec {
            mode: Mode::Row,
            methods,
            row_type: Some(row_type),
        }
        .run(&self.list, data)
    }

    /// Runs over a table's header (field names to column names), with
    /// Docker's header functions.
    pub fn render_header(
        &self,
        header: &Value,
        methods: Option<Methods>,
    ) -> Result<String, TemplateError> {
        exec::Exec {
            mode: Mode::Header,
            methods,
            row_type: None,
        }
        .run(&self.list, header)
    }
}

fn check_functions(list: &parse::List) -> Result<(), TemplateError> {
    use parse::{Arg, Node, Pipeline};
    fn pipeline(p: &Pipeline) -> Result<(), TemplateError> {
        for command in &p.commands {
            for arg in &command.args {
                match arg {
                    Arg::Function(name) if !funcs::exists(name) => {
                        return Err(TemplateError::Parse {
                            line: p.pos.line,
                            message: format!("function \"{name}\" not defined"),
                        })
                    }
                    Arg::Group(inner, _) => pipeline(inner)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
    for node in list {
        match node {
            Node::Action(p) => pipeline(p)?,
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                pipeline(&b.pipe)?;
                check_functions(&b.list)?;
                if let Some(else_list) = &b.else_list {
                    check_functions(else_list)?;
                }
            }
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }
    Ok(())
}
