//! The one mapping between manager errors and gRPC statuses. A status
//! carries the error's [`ErrorCode`] in the `shoal-error` metadata entry
//! and its message as the status message; [`from_status`] turns a status
//! back into a typed [`ManagerError`], so no caller reads message text to
//! decide anything.

use crate::error_chain::ErrorChain;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::manager::{ErrorCode, ManagerError};

/// The metadata key holding the error code.
pub const ERROR_CODE_KEY: &str = "shoal-error";

/// The gRPC code for each error code.
pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::Conflict => Code::Aborted,
        ErrorCode::NoQuorum | ErrorCode::NotLeader | ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Permission | ErrorCode::Removed => Code::PermissionDenied,
        ErrorCode::Invalid => Code::FailedPrecondition,
        ErrorCode::Internal => Code::Internal,
    }
}

/// `code` and `message` as a status.
pub fn status(code: ErrorCode, message: impl Into<String>) -> Status {
    let mut status = Status::new(grpc_code(code), message);
    status
        .metadata_mut()
        .insert(ERROR_CODE_KEY, MetadataValue::from_static(code.as_str()));
    status
}

impl From<ManagerError> for Status {
    fn from(e: ManagerError) -> Status {
        status(e.code(), e.chain().to_string())
    }
}

/// What a status means as a manager error, `manager` being the address
/// called. A status without a code did not come from a manager's decision:
/// the call failed on the way ([`ManagerError::Unreachable`]) or the
/// message was not understood.
pub fn from_status(manager: &str, status: &Status) -> ManagerError {
    let code = status
        .metadata()
        .get(ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorCode::parse);
    match (code, status.code()) {
        (Some(code), _) => ManagerError::Remote {
            code,
            message: status.message().to_string(),
        },
        (None, Code::InvalidArgument) => ManagerError::Remote {
            code: ErrorCode::Invalid,
            message: status.message().to_string(),
        },
        (None, Code::Unauthenticated | Code::PermissionDenied) => ManagerError::Remote {
            code: ErrorCode::Permission,
            message: status.message().to_string(),
        },
        (None, _) => ManagerError::Unreachable {
            manager: manager.to_string(),
            detail: status.message().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::Denied;

    #[test]
    fn every_code_survives_the_trip_through_a_status() {
        for code in ErrorCode::ALL {
            let back = from_status("m:2377", &status(code, "why"));
            assert_eq!(back.code(), code);
            assert_eq!(back.to_string(), "why");
        }
    }

    #[test]
    fn a_removed_node_is_told_so_by_the_code_not_the_words() {
        let sent = Status::from(ManagerError::from(Denied::Removed { node: "n1".into() }));
        assert_eq!(sent.code(), Code::PermissionDenied);
        assert_eq!(from_status("m", &sent).code(), ErrorCode::Removed);
        // The same words without the code are not a removal.
        let words = Status::permission_denied("node n1 was removed from the swarm");
        assert_eq!(from_status("m", &words).code(), ErrorCode::Permission);
    }

    #[test]
    fn a_transport_failure_is_unreachable() {
        let lost = Status::unavailable("error trying to connect: connection refused");
        assert!(matches!(
            from_status("198.18.0.1:2377", &lost),
            ManagerError::Unreachable { manager, .. } if manager == "198.18.0.1:2377"
        ));
    }
}
