//! The one error type of the remoting layer.
//!
//! Variants are kinds a caller can act on (retry another address, give up, report a
//! remote error code). Every variant that concerns a peer carries its address so that
//! log lines and operator messages always say *which* NameServer/broker failed.

use std::fmt;

use crate::codes::ResponseCode;

/// Result alias used throughout the crate.
pub type Result<T, E = RemotingError> = std::result::Result<T, E>;

/// Errors of the remoting protocol layer and of the async client/server.
///
/// `Clone` so that one connection failure can be handed to every request waiting on
/// that connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemotingError {
    /// A frame whose declared length (including the 4-byte length prefix, as Netty
    /// counts it) exceeds the configured maximum. Raised before any allocation.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: u64, max: u64 },

    /// Bytes that do not form a valid frame, header or body.
    #[error("malformed remoting data: {reason}")]
    Malformed { reason: String },

    /// A command that cannot be put on the wire (e.g. a code that does not fit the
    /// binary header's int16, a header longer than 24 bits of length).
    #[error("cannot encode remoting command: {reason}")]
    Unencodable { reason: String },

    /// ACL signing could not be done (e.g. empty secret key). Never contains the secret.
    #[error("ACL signing failed: {reason}")]
    Auth { reason: String },

    /// TCP connect was actively refused.
    #[error("connection refused by {addr}")]
    ConnectionRefused { addr: String },

    /// No response within the deadline.
    #[error("request to {addr} timed out after {ms} ms")]
    Timeout { addr: String, ms: u64 },

    /// Connect or I/O failed for another reason (DNS, reset, unreachable network, ...).
    #[error("{addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },

    /// The peer answered with a non-success response code.
    #[error("{addr} answered {} ({code}): {remark}", ResponseCode::name_or_unknown(*.code))]
    Remote {
        addr: String,
        code: i32,
        remark: String,
    },

    /// The connection was closed (by the peer or locally) before the answer arrived.
    #[error("connection to {addr} closed")]
    Closed { addr: String },

    /// An address that cannot be used (e.g. an empty or port-less entry of a
    /// `host:port;host:port` NameServer list).
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },

    /// Every address of a list failed at the transport level; one error per address,
    /// in the order they were tried, each naming its address and failure kind.
    #[error("all {} addresses failed: {}", .errors.len(), join_errors(.errors))]
    AllAddressesFailed { errors: Vec<RemotingError> },

    /// An I/O error without a known peer address (codec level). The client maps these
    /// to `Unreachable`/`Closed` with the address before handing them to callers.
    #[error("i/o error ({kind:?}): {message}")]
    Io {
        kind: std::io::ErrorKind,
        message: String,
    },
}

impl RemotingError {
    pub(crate) fn malformed(reason: impl fmt::Display) -> Self {
        RemotingError::Malformed {
            reason: reason.to_string(),
        }
    }

    pub(crate) fn unencodable(reason: impl fmt::Display) -> Self {
        RemotingError::Unencodable {
            reason: reason.to_string(),
        }
    }

    /// The peer address this error is about, if any.
    pub fn addr(&self) -> Option<&str> {
        match self {
            RemotingError::ConnectionRefused { addr }
            | RemotingError::Timeout { addr, .. }
            | RemotingError::Unreachable { addr, .. }
            | RemotingError::Remote { addr, .. }
            | RemotingError::Closed { addr }
            | RemotingError::InvalidAddress { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// True for failures where another address of the same `;`-list may succeed
    /// (the Java client rotates NameServers on these).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            RemotingError::ConnectionRefused { .. }
                | RemotingError::Timeout { .. }
                | RemotingError::Unreachable { .. }
                | RemotingError::Closed { .. }
                | RemotingError::Io { .. }
                | RemotingError::AllAddressesFailed { .. }
        )
    }
}

fn join_errors(errors: &[RemotingError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<std::io::Error> for RemotingError {
    fn from(e: std::io::Error) -> Self {
        RemotingError::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}
