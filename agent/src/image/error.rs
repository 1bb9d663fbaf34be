//! The image store's errors. Each names the image (or file) and, where the
//! registry said why, carries its words: a task that cannot be pulled shows
//! them as its `Rejected` message.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("invalid reference format `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest `{0}`: expected sha256: followed by 64 lowercase hex digits")]
    InvalidDigest(String),
    #[error("{what}: content digest mismatch: expected {expected}, got {actual}; the registry or the file sent other bytes than it announced")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: larger than the {limit}-byte limit for it")]
    TooLarge { what: String, limit: u64 },
    #[error("{reference}: the registry refused the credentials: {message}; check the user name and password (`--with-registry-auth` or `docker login`)")]
    Unauthorized { reference: String, message: String },
    #[error("{reference}: not found in the registry: {message}")]
    NotFound { reference: String, message: String },
    #[error("{reference}: the registry answered: {message}")]
    Registry { reference: String, message: String },
    #[error("{reference}: cannot reach the registry: {message}")]
    Unreachable { reference: String, message: String },
    #[error("{reference}: unsupported manifest: {reason}")]
    UnsupportedManifest { reference: String, reason: String },
    #[error("{reference}: no manifest for {platform} in the image index (it offers {offered})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        offered: String,
    },
    #[error("{what}: malformed: {reason}")]
    Malformed { what: String, reason: String },
    #[error("layer {digest}: {reason}")]
    Layer { digest: String, reason: String },
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("image {image} is used by task {task}; stop the task first (or remove with force once it is gone)")]
    InUse { image: String, task: String },
    #[error("registry credentials: {0}")]
    Credentials(String),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Archive(String),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl ToString) -> ImageError {
        ImageError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
