//! The one error type of metadata-sync, and its mapping to gRPC status codes.
//!
//! Every handler returns [`SyncError`]; the conversion to [`tonic::Status`] below is the only
//! place where codes are chosen, so a store conflict is `ABORTED` everywhere, a lock held by
//! another task `FAILED_PRECONDITION` everywhere, and so on.

use ferry_core::CoreError;
use ferry_store::StoreError;
use tonic::{Code, Status};

/// Everything a metadata-sync call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A domain rule was broken (bad name, stage skipped, unknown value).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The request is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The task's state does not allow the call.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The store has not been reached yet (still connecting with backoff).
    #[error("store not available: {0}")]
    StoreUnavailable(String),
    /// The behaviour arrives with later work.
    #[error("{0}")]
    NotImplemented(String),
}

impl SyncError {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            SyncError::Store(e) => match e {
                StoreError::NotFound { .. } => Code::NotFound,
                StoreError::AlreadyExists { .. } => Code::AlreadyExists,
                // gRPC's code for "a concurrency conflict; retry at a higher level".
                StoreError::Conflict { .. } => Code::Aborted,
                StoreError::TargetLocked { .. }
                | StoreError::InvalidTransition { .. }
                | StoreError::FailedPrecondition { .. } => Code::FailedPrecondition,
                StoreError::InvalidArgument { .. } => Code::InvalidArgument,
                StoreError::Compacted { .. } => Code::OutOfRange,
                StoreError::Unavailable { .. } => Code::Unavailable,
                _ => Code::Internal,
            },
            SyncError::Core(CoreError::InvalidTransition { .. }) => Code::FailedPrecondition,
            SyncError::Core(_) | SyncError::InvalidArgument(_) => Code::InvalidArgument,
            SyncError::FailedPrecondition(_) => Code::FailedPrecondition,
            SyncError::StoreUnavailable(_) => Code::Unavailable,
            SyncError::NotImplemented(_) => Code::Unimplemented,
        }
    }
}

impl From<SyncError> for Status {
    fn from(err: SyncError) -> Status {
        let code = err.code();
        if code == Code::Internal {
            tracing::error!(error = %err, "internal error");
        }
        Status::new(code, err.to_string())
    }
}

/// Result of metadata-sync operations.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;

impl From<ferry_store::Unavailable> for SyncError {
    fn from(err: ferry_store::Unavailable) -> Self {
        SyncError::StoreUnavailable(err.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_chosen_in_one_place() {
        let conflict = SyncError::from(StoreError::Conflict {
            what: "topic T".into(),
            key: "k".into(),
            expected: 1,
            actual: 2,
        });
        assert_eq!(Status::from(conflict).code(), Code::Aborted);
        let locked = SyncError::from(StoreError::TargetLocked {
            target: "B".into(),
            holder: "mt-1".into(),
        });
        let status = Status::from(locked);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("mt-1"), "{}", status.message());
        let skip = SyncError::from(CoreError::InvalidTransition {
            from: ferry_core::Stage::Initial,
            to: ferry_core::Stage::Done,
        });
        assert_eq!(Status::from(skip).code(), Code::FailedPrecondition);
        let down = SyncError::from(StoreError::Unavailable {
            endpoint: "127.0.0.1:1".into(),
            reason: "refused".into(),
        });
        let status = Status::from(down);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("127.0.0.1:1"));
    }
}
