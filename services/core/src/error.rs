//! The one error type of the domain rules.

use crate::stage::Stage;

/// A rule of the domain was broken. Messages say what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A stage change that is not one step forward or one step back.
    #[error(
        "stage change {from} -> {to} is not allowed: a topic moves one step forward ({from} -> {next}) or one step back ({from} -> {prev})",
        next = from.next().map(|s| s.as_str()).unwrap_or("none, DONE is last"),
        prev = from.prev().map(|s| s.as_str()).unwrap_or("none, INITIAL is first")
    )]
    InvalidTransition { from: Stage, to: Stage },
    /// A stage name that is not one of the five.
    #[error("unknown stage {0:?}: expected one of INITIAL, DUAL_READ, DUAL_WRITE, SWITCHING, DONE")]
    UnknownStage(String),
}
