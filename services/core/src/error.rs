//! The one error type of the domain rules.

use crate::names::NameError;
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
    /// A topic, group or namespace name that breaks a naming rule; the rule is inside.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A text value that does not name any variant of a domain enum (target type, step, ...).
    #[error("unknown {what} {value:?}: expected one of {expected}")]
    UnknownValue {
        /// What was being parsed, e.g. "target type".
        what: &'static str,
        /// The text that was given.
        value: String,
        /// The accepted spellings.
        expected: &'static str,
    },
}

impl CoreError {
    pub(crate) fn unknown(what: &'static str, value: &str, expected: &'static str) -> Self {
        CoreError::UnknownValue {
            what,
            value: value.to_string(),
            expected,
        }
    }
}
