//! What loading a compose file can say: errors that stop the load (each names
//! the file, line and key path, and what a valid value looks like), and
//! warnings for what shoal reads but does not honour, so nothing is dropped
//! silently.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

/// Where a value was written: the compose file as the user named it, and
/// the 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The kind of a top-level resource a service refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Network,
    Volume,
    Secret,
    Config,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::Secret => "secret",
            ResourceKind::Config => "config",
        })
    }
}

impl ResourceKind {
    /// The top-level section that declares resources of this kind.
    pub fn section(self) -> &'static str {
        match self {
            ResourceKind::Network => "networks",
            ResourceKind::Volume => "volumes",
            ResourceKind::Secret => "secrets",
            ResourceKind::Config => "configs",
        }
    }
}

/// Why the YAML of a file could not be read as a compose document.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum YamlProblem {
    #[error("{0}")]
    Syntax(String),
    #[error("key `{0}` appears twice in the same mapping")]
    DuplicateKey(String),
    #[error("a mapping key must be a plain string, not a list or mapping")]
    ComplexKey,
    #[error("alias `*{0}` refers to no anchor defined before it")]
    UnknownAlias(String),
    #[error("a merge key `<<` takes a mapping or a list of mappings")]
    BadMerge,
    #[error("the file holds several YAML documents; a compose file is one document")]
    SeveralDocuments,
    #[error("the file is empty; a compose file is a mapping with `services:`")]
    Empty,
    #[error("the top level must be a mapping with `services:`, not a {0}")]
    NotAMapping(&'static str),
    #[error("nesting deeper than {0} levels; a compose file this deep is not one")]
    TooDeep(usize),
    #[error("more than {0} values after expanding aliases; is this an alias bomb?")]
    TooLarge(usize),
}

/// Why a compose file (or a set of them) cannot be loaded.
#[derive(Debug, Error)]
pub enum ComposeError {
    #[error("{at}: invalid YAML: {problem}")]
    Yaml { at: Location, problem: YamlProblem },

    #[error("{at}: {path}: expected {expected}, found {found}")]
    WrongType {
        at: Location,
        path: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("{at}: {path}: invalid value `{value}`: expected {expected}")]
    InvalidValue {
        at: Location,
        path: String,
        value: String,
        expected: String,
    },

    #[error("{at}: {path}: `{key}` is required")]
    MissingKey {
        at: Location,
        path: String,
        key: &'static str,
    },

    #[error("{at}: {path}: {conflict}")]
    Conflict {
        at: Location,
        path: String,
        conflict: String,
    },

    #[error(
        "{at}: service {service} refers to undefined {kind} `{name}`: declare it under the top-level `{}:` key",
        kind.section()
    )]
    Undefined {
        at: Location,
        service: String,
        kind: ResourceKind,
        name: String,
    },

    #[error("{at}: {path}: required variable `{variable}` is not set{}", required_message(.message))]
    RequiredVariable {
        at: Location,
        path: String,
        variable: String,
        message: String,
    },

    #[error("{at}: {path}: invalid interpolation in `{template}`: {problem}")]
    BadTemplate {
        at: Location,
        path: String,
        template: String,
        problem: &'static str,
    },

    #[error("{at}: compose file version `{version}` is not supported: use version 3.x, or no `version:` (the Compose Specification)")]
    UnsupportedVersion { at: Location, version: String },

    #[error("{file}:{line}: {problem}")]
    EnvFile {
        file: String,
        line: usize,
        problem: String,
    },

    #[error("{at}: service {service}: env_file `{}` does not exist (mark it `required: false` to skip it when missing)", path.display())]
    MissingEnvFile {
        at: Location,
        service: String,
        path: PathBuf,
    },

    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no compose file given: pass at least one with -c FILE")]
    NoFiles,

    #[error("invalid stack name `{0}`: use letters, digits, `-` or `_`, starting with a letter or digit")]
    InvalidStackName(String),

    #[error("service {service} has no image: shoal does not build images; build and push it, then set `image:`")]
    NoImage { service: String },

    #[error("{kind} `{name}` of the stack is {len} characters long; names are at most {max}: use a shorter stack or {kind} name")]
    NameTooLong {
        kind: &'static str,
        name: String,
        len: usize,
        max: usize,
    },
}

fn required_message(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// What a warning is about: the file as a whole, or one named object in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    File,
    Service(String),
    Network(String),
    Volume(String),
    Secret(String),
    Config(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::File => f.write_str("compose file"),
            Subject::Service(name) => write!(f, "service {name}"),
            Subject::Network(name) => write!(f, "network {name}"),
            Subject::Volume(name) => write!(f, "volume {name}"),
            Subject::Secret(name) => write!(f, "secret {name}"),
            Subject::Config(name) => write!(f, "config {name}"),
        }
    }
}

/// What shoal read but does not act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// A key Compose defines that shoal does not support.
    Unsupported {
        key: String,
        hint: Option<&'static str>,
    },
    /// A key neither Compose nor shoal knows (often a typo).
    Unknown { key: String },
    /// A key Compose still accepts but replaced by another.
    Deprecated { key: String, instead: &'static str },
    /// `$NAME` or `${NAME}` with `NAME` unset: an empty string was used.
    UnsetVariable { name: String },
    /// A value whose meaning shoal cannot honour, dropped or reduced.
    IgnoredValue {
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// One warning, with where it was written when that is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub at: Option<Location>,
    pub subject: Subject,
    pub kind: WarningKind,
}

impl Warning {
    /// The key (relative to the subject) the warning is about, if any.
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            WarningKind::Unsupported { key, .. }
            | WarningKind::Unknown { key }
            | WarningKind::Deprecated { key, .. }
            | WarningKind::IgnoredValue { key, .. } => Some(key),
            WarningKind::UnsetVariable { .. } => None,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{}: ", self.subject)?;
        match &self.kind {
            WarningKind::Unsupported { key, hint } => {
                write!(f, "key \"{key}\" is not supported, ignored")?;
                if let Some(hint) = hint {
                    write!(f, " ({hint})")?;
                }
                Ok(())
            }
            WarningKind::Unknown { key } => write!(f, "unknown key \"{key}\", ignored"),
            WarningKind::Deprecated { key, instead } => {
                write!(f, "key \"{key}\" is deprecated, use {instead}")
            }
            WarningKind::UnsetVariable { name } => {
                write!(f, "variable \"{name}\" is not set, using an empty string")
            }
            WarningKind::IgnoredValue { key, value, reason } => {
                write!(f, "{key}: \"{value}\": {reason}")
            }
        }
    }
}
