//! The scanner's one error type and its mapping to gRPC codes (one place).
//!
//! Messages name the address and request that failed and never contain a secret key: the
//! remoting layer's errors carry addresses, codes and remarks only, and credentials are
//! never formatted with their secret.

use ferry_store::StoreError;
use tonic::{Code, Status};

/// Result of scanner operations.
pub type Result<T, E = ScanError> = std::result::Result<T, E>;

/// Everything a scanner operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The request is malformed (bad address list, empty id, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// No NameServer of the list answered; the detail lists each address and why.
    #[error("no name server answered: {0}")]
    NamesrvUnreachable(String),

    /// The cluster refused the credentials (ACL on and keys wrong or missing).
    #[error("authentication failed: {0}")]
    Auth(String),

    /// A peer answered something that is not the RocketMQ remoting protocol, or a body
    /// that cannot be parsed; the detail names the address and request code.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The NameServers know no cluster of that name.
    #[error("cluster {name} not found; the name servers know: {found}")]
    ClusterNotFound { name: String, found: String },

    /// Not one broker could be read: nothing to build an inventory from.
    #[error("no broker could be scanned: {0}")]
    NoBrokerReadable(String),

    /// A stored snapshot or file could not be used.
    #[error("{0}")]
    Format(String),

    /// The snapshot store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The store is not connected yet (etcd unreachable at start).
    #[error("snapshot store unavailable: {0}")]
    StoreUnavailable(String),
}

impl From<ScanError> for Status {
    fn from(e: ScanError) -> Status {
        let code = match &e {
            ScanError::InvalidArgument(_) => Code::InvalidArgument,
            ScanError::NamesrvUnreachable(_) | ScanError::NoBrokerReadable(_) => Code::Unavailable,
            ScanError::Auth(_) => Code::PermissionDenied,
            ScanError::Protocol(_) | ScanError::Format(_) => Code::FailedPrecondition,
            ScanError::ClusterNotFound { .. } => Code::NotFound,
            ScanError::StoreUnavailable(_) => Code::Unavailable,
            ScanError::Store(s) => match s {
                StoreError::NotFound { .. } => Code::NotFound,
                StoreError::AlreadyExists { .. } => Code::AlreadyExists,
                StoreError::Conflict { .. } => Code::Aborted,
                StoreError::InvalidArgument { .. } => Code::InvalidArgument,
                StoreError::Unavailable { .. } => Code::Unavailable,
                StoreError::FailedPrecondition { .. } | StoreError::TargetLocked { .. } => {
                    Code::FailedPrecondition
                }
                _ => Code::Internal,
            },
        };
        Status::new(code, e.to_string())
    }
}

impl From<ferry_store::Unavailable> for ScanError {
    fn from(err: ferry_store::Unavailable) -> Self {
        ScanError::StoreUnavailable(err.0)
    }
}
