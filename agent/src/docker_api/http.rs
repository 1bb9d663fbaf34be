//! The HTTP side of the Engine API: version prefixes and negotiation,
//! the headers every answer carries, Docker's error body and status codes,
//! and the query and body readers the handlers share.

use shoal_control::error_chain::ErrorChain;
use std::collections::HashMap;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_control::engine::{ErrorResponse, API_VERSION};

/// The oldest API version shoal answers (Docker 1.12's, what every swarm
/// client since speaks).
pub const MIN_API_VERSION: &str = "1.24";

/// Why a request failed, as Docker's status codes class it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// 404: no such object.
    NotFound,
    /// 409: a taken name, a stale version, an object in use.
    Conflict,
    /// 400: a malformed or refused request.
    Invalid,
    /// 401: a registry refused the credentials.
    Unauthorized,
    /// 403: the caller may not.
    Forbidden,
    /// 503: not a swarm manager, no quorum, no leader, shutting down.
    Unavailable,
    /// 501: a part of the API shoal does not implement.
    NotImplemented,
    /// 500.
    Internal,
}

/// A failed request: its kind and the message the client prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::NotFound, message)
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Conflict => StatusCode::CONFLICT,
            RefusalKind::Invalid => StatusCode::BAD_REQUEST,
            RefusalKind::Unauthorized => StatusCode::UNAUTHORIZED,
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RefusalKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = self.status();
        json_with(
            status,
            &ErrorResponse {
                message: self.message,
            },
        )
    }
}

/// What a handler answers.
pub type Answer = Result<Response, Refusal>;

/// `body` as JSON with `status`; `Content-Type: application/json` exactly,
/// as Docker's clients check.
pub fn json_with<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.chain().to_string()).into_response(),
    }
}

pub fn ok<T: Serialize>(body: &T) -> Answer {
    Ok(json_with(StatusCode::OK, body))
}

pub fn created<T: Serialize>(body: &T) -> Answer {
    Ok(json_with(StatusCode::CREATED, body))
}

pub fn no_content() -> Answer {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A JSON body of type `T`; a body that does not parse is a 400 naming
/// what is wrong (serde's message names the field).
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(bytes)
        .map_err(|e| Refusal::invalid(format!("invalid JSON body: {}", e.chain())))
}

/// The query string's parameters.
pub type Query = HashMap<String, String>;

/// Docker's boolean query values: `1`, `true`, `True` (anything else, or
/// absent, is false).
pub fn flag(query: &Query, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

/// The `version` query parameter of an update, if given.
pub fn version(query: &Query) -> Result<Option<u64>, Refusal> {
    match query.get("version") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Refusal::invalid(format!("invalid version `{v}`: use a number"))),
    }
}

/// A version `1.N` as a comparable number.
fn minor(version: &str) -> Option<u32> {
    version.strip_prefix("1.")?.parse().ok()
}

/// Splits `/v1.41/rest` into (`Some("1.41")`, `/rest`); an unversioned
/// path is returned whole.
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    let Some(rest) = path.strip_prefix("/v") else {
        return (None, path);
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if version.split('.').count() == 2 && version.split('.').all(|p| p.parse::<u32>().is_ok()) {
        (Some(version), tail)
    } else {
        (None, path)
    }
}

/// Refuses versions shoal does not speak, as Docker does.
pub fn check_version(version: &str) -> Result<(), Refusal> {
    let (Some(asked), Some(max), Some(min)) =
        (minor(version), minor(API_VERSION), minor(MIN_API_VERSION))
    else {
        return Err(Refusal::invalid(format!(
            "invalid API version `{version}`: use 1.N"
        )));
    };
    if asked > max {
        return Err(Refusal::invalid(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if asked < min {
        return Err(Refusal::invalid(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(())
}

/// The middleware before routing: strips the `/vX.Y` prefix (refusing
/// versions out of range), so every route is written once.
pub async fn strip_version(mut request: Request) -> Result<Request, Response> {
    let path = request.uri().path().to_string();
    let (version, rest) = split_version(&path);
    if let Some(version) = version {
        check_version(version).map_err(IntoResponse::into_response)?;
        let rewritten = match request.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        match rewritten.parse::<Uri>() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(e) => {
                return Err(
                    Refusal::invalid(format!("invalid path: {}", e.chain())).into_response()
                );
            }
        }
    }
    Ok(request)
}

/// The headers every answer carries: the version the client negotiates
/// down to, the OS, and that this is no experimental daemon.
pub async fn server_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("shoal/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes_are_split_and_checked() {
        assert_eq!(
            split_version("/v1.41/services"),
            (Some("1.41"), "/services")
        );
        assert_eq!(split_version("/v1.24/_ping"), (Some("1.24"), "/_ping"));
        assert_eq!(split_version("/services/v1"), (None, "/services/v1"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/v1.41"), (Some("1.41"), "/"));
        assert!(check_version("1.41").is_ok());
        assert!(check_version("1.30").is_ok());
        let new = check_version("1.50").unwrap_err();
        assert_eq!(new.status(), StatusCode::BAD_REQUEST);
        assert!(new.message.contains("too new"), "{new}");
        assert!(check_version("1.12")
            .unwrap_err()
            .message
            .contains("too old"));
        assert!(check_version("2.x").is_err());
    }

    #[test]
    fn refusals_get_dockers_status_codes() {
        let cases = [
            (RefusalKind::NotFound, 404),
            (RefusalKind::Conflict, 409),
            (RefusalKind::Invalid, 400),
            (RefusalKind::Unauthorized, 401),
            (RefusalKind::Forbidden, 403),
            (RefusalKind::Unavailable, 503),
            (RefusalKind::NotImplemented, 501),
            (RefusalKind::Internal, 500),
        ];
        for (kind, code) in cases {
            assert_eq!(Refusal::new(kind, "x").status().as_u16(), code);
        }
    }

    #[test]
    fn query_flags_read_like_dockers() {
        let q: Query = [("force", "1"), ("status", "true"), ("x", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(flag(&q, "force") && flag(&q, "status"));
        assert!(!flag(&q, "x") && !flag(&q, "absent"));
        assert_eq!(version(&q).unwrap(), None);
        let q: Query = [("version".to_string(), "12".to_string())].into();
        assert_eq!(version(&q).unwrap(), Some(12));
        let q: Query = [("version".to_string(), "x".to_string())].into();
        assert!(version(&q).is_err());
    }
}
