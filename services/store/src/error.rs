//! The one error type of the store.
//!
//! Variants are domain outcomes (conflict, lock held, not found, ...) rather than backend
//! details, so callers map them to gRPC codes in one place without knowing whether etcd or the
//! embedded store answered. Messages say what happened and what to do next.

use ferry_core::CoreError;

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },

    /// A record with this identity already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },

    /// A compare-and-swap lost: the record changed since it was read.
    /// `actual` is 0 when the record is gone.
    #[error(
        "{what} changed concurrently: expected revision {expected}, {now}; re-read and retry",
        now = if *actual == 0 { "now deleted".to_string() } else { format!("now {actual}") }
    )]
    Conflict {
        /// Human description, e.g. "topic T of task X".
        what: String,
        /// The store key (relative to the store prefix).
        key: String,
        expected: i64,
        actual: i64,
    },

    /// The target cluster is already in a running task.
    #[error(
        "target cluster {target} is already in running task {holder}; a target can be in only one running task at a time: finish that task first"
    )]
    TargetLocked { target: String, holder: String },

    /// A stage change that is not one step forward or back. Nothing was written.
    #[error("topic {topic} of task {task_id}: {source}")]
    InvalidTransition {
        task_id: String,
        topic: String,
        /// Boxed: domain errors may grow, store errors travel in every `Result`.
        #[source]
        source: Box<CoreError>,
    },

    /// The request is malformed (bad name, too many operations, changed immutable field, ...).
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },

    /// The stored state does not allow the operation (e.g. removing a topic past INITIAL).
    #[error("failed precondition: {reason}")]
    FailedPrecondition { reason: String },

    /// A watch asked for history the store no longer keeps. List again and watch from the
    /// listed revision + 1.
    #[error(
        "revision {requested} has been compacted (oldest available is {oldest}); list again and watch from the listed revision + 1"
    )]
    Compacted { requested: i64, oldest: i64 },

    /// The backing store cannot be reached (etcd down, network, timeouts). Safe to retry.
    #[error("etcd at {endpoint} unreachable: {reason}")]
    Unavailable { endpoint: String, reason: String },

    /// A stored value cannot be decoded (bad JSON, unknown schema version, bad key).
    #[error("corrupt value at {key}: {reason}")]
    Corrupt { key: String, reason: String },

    /// Local file I/O of the embedded store failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when sending the same request again, unchanged, may succeed (the store was
    /// unreachable). A [`StoreError::Conflict`] is not retryable as is: re-read, then decide.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// True for a lost compare-and-swap.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        StoreError::InvalidArgument {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::Stage;

    #[test]
    fn conflict_message_says_what_to_do() {
        let e = StoreError::Conflict {
            what: "topic T of task X".into(),
            key: "task-topics/X/T".into(),
            expected: 5,
            actual: 7,
        };
        assert_eq!(
            e.to_string(),
            "topic T of task X changed concurrently: expected revision 5, now 7; re-read and retry"
        );
        assert!(e.is_conflict() && !e.is_retryable());
    }

    #[test]
    fn invalid_transition_wraps_core_error() {
        let e = StoreError::InvalidTransition {
            task_id: "X".into(),
            topic: "T".into(),
            source: Box::new(Stage::Initial.transition_to(Stage::Done).unwrap_err()),
        };
        assert!(e.to_string().contains("INITIAL -> DONE"), "{e}");
    }

    #[test]
    fn unavailable_names_the_endpoint_and_is_retryable() {
        let e = StoreError::Unavailable {
            endpoint: "127.0.0.1:2379".into(),
            reason: "connection refused".into(),
        };
        assert!(
            e.to_string()
                .starts_with("etcd at 127.0.0.1:2379 unreachable")
        );
        assert!(e.is_retryable());
    }
}
