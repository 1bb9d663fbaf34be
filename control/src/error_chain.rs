//! How shoal prints an error: each error's `Display` names only its own step,
//! and its cause is returned by `source()`, never repeated in the text. The
//! chain printer here (like anyhow's `{:#}`) then shows every cause exactly
//! once: `cannot mount bpffs at /sys/fs/bpf: EPERM: Operation not permitted`.
//!
//! Use [`ErrorChain::chain`] wherever an error becomes text (a log line, a
//! gRPC status message, a task's error), so no cause is lost.

use std::error::Error;
use std::fmt;

/// An error and all its causes, joined by `: `.
pub struct Chain<'a>(&'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `.chain()` on any error: its text with every cause.
pub trait ErrorChain {
    fn chain(&self) -> Chain<'_>;
}

impl<E: Error> ErrorChain for E {
    fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

impl ErrorChain for dyn Error + '_ {
    fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

impl ErrorChain for dyn Error + Send + Sync + '_ {
    fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// The first link of `e`'s chain whose text repeats its cause's text, as
/// `(text, cause)`; `None` when every cause is printed once. Tests use it to
/// hold every error type to the rule above.
pub fn repeated_cause(e: &(dyn Error + '_)) -> Option<(String, String)> {
    let mut current: &dyn Error = e;
    while let Some(cause) = current.source() {
        let (text, cause_text) = (current.to_string(), cause.to_string());
        if !cause_text.is_empty() && text.contains(&cause_text) {
            return Some((text, cause_text));
        }
        current = cause;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}")]
    struct Read {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}: {source}")]
    struct ReadTwice {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn the_chain_prints_each_cause_once() {
        let e = Read {
            path: "/x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(e.chain().to_string(), "reading /x: entity not found");
        assert_eq!(repeated_cause(&e), None);
        let boxed: Box<dyn Error + Send + Sync> = Box::new(e);
        assert_eq!(boxed.chain().to_string(), "reading /x: entity not found");
    }

    /// Representative errors of this crate that have a cause.
    #[test]
    fn no_error_of_the_control_plane_repeats_its_cause() {
        let connect = || crate::ca::CaError::Connect {
            addr: "198.18.0.1:2377".parse().unwrap(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let samples: Vec<Box<dyn Error + Send + Sync>> = vec![
            Box::new(connect()),
            Box::new(crate::compose::ComposeError::Read {
                path: "stack.yml".into(),
                source: std::io::ErrorKind::NotFound.into(),
            }),
            Box::new(crate::manager::ManagerError::Ca(connect())),
        ];
        for e in samples {
            assert_eq!(repeated_cause(&*e), None, "{}", e.chain());
            assert!(e.source().is_some(), "{e} lost its cause");
        }
        // What a CLI reads of a manager's error: each cause once.
        let status = tonic::Status::from(crate::manager::ManagerError::Ca(connect()));
        assert_eq!(
            status.message(),
            "could not reach the manager at 198.18.0.1:2377: connection refused"
        );
    }

    #[test]
    fn a_display_that_repeats_its_source_is_caught() {
        let e = ReadTwice {
            path: "/x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(
            repeated_cause(&e),
            Some((
                "reading /x: entity not found".into(),
                "entity not found".into()
            ))
        );
    }
}
