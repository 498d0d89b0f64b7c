//! The one error type of the health-check service, and its mapping to gRPC status codes.
//!
//! Measurement failures are mostly *not* errors: a cluster that cannot be reached becomes an
//! unknown fact and a `CLUSTER_UNREACHABLE` reason in the readiness answer. Errors here are
//! what stops a call from answering at all (no store, no such task, a bad request, a backlog
//! check whose cluster cannot be read).

use ferry_remoting::RemotingError;
use ferry_store::StoreError;
use tonic::{Code, Status};

/// Everything a health-check call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has not been reached yet (still connecting with backoff).
    #[error("store not available: {0}")]
    StoreUnavailable(String),
    /// The request is malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A named thing does not exist (e.g. a topic that is not in the task).
    #[error("{0}")]
    NotFound(String),
    /// A RocketMQ cluster could not be read for a call that has no "unknown" answer
    /// (CheckBacklog: an unreadable broker must not look drained).
    #[error("{what}: {source}")]
    Cluster {
        what: String,
        #[source]
        source: RemotingError,
    },
}

impl HealthError {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            HealthError::Store(e) => match e {
                StoreError::NotFound { .. } => Code::NotFound,
                StoreError::AlreadyExists { .. } => Code::AlreadyExists,
                StoreError::Conflict { .. } => Code::Aborted,
                StoreError::InvalidArgument { .. } => Code::InvalidArgument,
                StoreError::Unavailable { .. } => Code::Unavailable,
                StoreError::TargetLocked { .. }
                | StoreError::InvalidTransition { .. }
                | StoreError::FailedPrecondition { .. } => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            HealthError::StoreUnavailable(_) => Code::Unavailable,
            HealthError::InvalidArgument(_) => Code::InvalidArgument,
            HealthError::NotFound(_) => Code::NotFound,
            HealthError::Cluster { source, .. } => match source {
                RemotingError::InvalidAddress { .. } => Code::InvalidArgument,
                RemotingError::Auth { .. } => Code::PermissionDenied,
                _ => Code::Unavailable,
            },
        }
    }
}

impl From<HealthError> for Status {
    fn from(err: HealthError) -> Status {
        let code = err.code();
        if code == Code::Internal {
            tracing::error!(error = %err, "internal error");
        }
        Status::new(code, err.to_string())
    }
}

/// Result of health-check operations.
pub type Result<T, E = HealthError> = std::result::Result<T, E>;

impl From<ferry_store::Unavailable> for HealthError {
    fn from(err: ferry_store::Unavailable) -> Self {
        HealthError::StoreUnavailable(err.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_chosen_in_one_place() {
        let missing = HealthError::from(StoreError::NotFound {
            kind: "task",
            id: "mt-1".into(),
        });
        assert_eq!(Status::from(missing).code(), Code::NotFound);
        let down = HealthError::Cluster {
            what: "backlog of T".into(),
            source: RemotingError::ConnectionRefused {
                addr: "127.0.0.1:1".into(),
            },
        };
        let status = Status::from(down);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("127.0.0.1:1"),
            "{}",
            status.message()
        );
        let bad = HealthError::Cluster {
            what: "cluster".into(),
            source: RemotingError::InvalidAddress {
                addr: "x".into(),
                reason: "expected host:port".into(),
            },
        };
        assert_eq!(Status::from(bad).code(), Code::InvalidArgument);
        assert_eq!(
            Status::from(HealthError::StoreUnavailable("etcd".into())).code(),
            Code::Unavailable
        );
    }
}
