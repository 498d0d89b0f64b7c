//! The five migration stages of a topic and the transitions between them.
//!
//! A topic moves `INITIAL → DUAL_READ → DUAL_WRITE → SWITCHING → DONE`, one step at a time,
//! and rolls back the same way, one step at a time. Skipping a stage could strand messages
//! (for example, going from DUAL_WRITE straight to INITIAL hides target queues that may still
//! hold unconsumed messages), so nothing else is allowed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Where a topic is in its migration. See DESIGN.md for what each stage means for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    /// All traffic on the source cluster.
    Initial,
    /// Producers on the source; consumers also attach to the (still empty) target queues.
    DualRead,
    /// Producers spread over both clusters; consumers read both.
    DualWrite,
    /// New writes go to the target only; consumers drain the source backlog.
    Switching,
    /// All traffic on the target; source brokers stay listed with perm 0 for a grace period.
    Done,
}

/// Which way a stage change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Advance,
    Rollback,
}

impl Stage {
    /// Every stage in migration order.
    pub const ALL: [Stage; 5] = [
        Stage::Initial,
        Stage::DualRead,
        Stage::DualWrite,
        Stage::Switching,
        Stage::Done,
    ];

    /// Position in migration order, 0 for INITIAL.
    pub fn ordinal(self) -> usize {
        self as usize
    }

    /// The stage one step forward, if any.
    pub fn next(self) -> Option<Stage> {
        Stage::ALL.get(self.ordinal() + 1).copied()
    }

    /// The stage one step back, if any.
    pub fn prev(self) -> Option<Stage> {
        self.ordinal().checked_sub(1).map(|i| Stage::ALL[i])
    }

    /// The stage one step in `direction`, if any.
    pub fn step(self, direction: Direction) -> Option<Stage> {
        match direction {
            Direction::Advance => self.next(),
            Direction::Rollback => self.prev(),
        }
    }

    /// Checks that `self -> to` is one step forward or back and says which.
    pub fn transition_to(self, to: Stage) -> Result<Direction, CoreError> {
        if self.next() == Some(to) {
            Ok(Direction::Advance)
        } else if self.prev() == Some(to) {
            Ok(Direction::Rollback)
        } else {
            Err(CoreError::InvalidTransition { from: self, to })
        }
    }

    /// The canonical upper-case name, as in the API and etcd values.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Initial => "INITIAL",
            Stage::DualRead => "DUAL_READ",
            Stage::DualWrite => "DUAL_WRITE",
            Stage::Switching => "SWITCHING",
            Stage::Done => "DONE",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CoreError::UnknownStage(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_stage() -> impl Strategy<Value = Stage> {
        prop::sample::select(Stage::ALL.to_vec())
    }

    proptest! {
        /// Allowed iff the ordinals differ by exactly one, and the direction matches the sign.
        #[test]
        fn transition_allowed_iff_one_step(from in any_stage(), to in any_stage()) {
            let diff = to.ordinal() as i64 - from.ordinal() as i64;
            match from.transition_to(to) {
                Ok(Direction::Advance) => prop_assert_eq!(diff, 1),
                Ok(Direction::Rollback) => prop_assert_eq!(diff, -1),
                Err(CoreError::InvalidTransition { .. }) => prop_assert!(diff != 1 && diff != -1),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        /// Rolling back an advance returns to where it started.
        #[test]
        fn advance_then_rollback_is_identity(s in any_stage()) {
            if let Some(n) = s.next() {
                prop_assert_eq!(n.prev(), Some(s));
                prop_assert_eq!(n.transition_to(s), Ok(Direction::Rollback));
            }
        }

        /// Names round-trip through Display/FromStr and serde.
        #[test]
        fn names_round_trip(s in any_stage()) {
            prop_assert_eq!(s.to_string().parse::<Stage>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(json.trim_matches('"'), s.as_str());
            prop_assert_eq!(serde_json::from_str::<Stage>(&json).unwrap(), s);
        }
    }

    #[test]
    fn ends_have_no_step_beyond() {
        assert_eq!(Stage::Initial.prev(), None);
        assert_eq!(Stage::Done.next(), None);
        assert_eq!(
            Stage::Initial.step(Direction::Advance),
            Some(Stage::DualRead)
        );
    }

    #[test]
    fn skipping_a_stage_names_the_allowed_steps() {
        let err = Stage::DualWrite.transition_to(Stage::Initial).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("DUAL_WRITE -> INITIAL"), "{msg}");
        assert!(msg.contains("DUAL_WRITE -> SWITCHING"), "{msg}");
        assert!(msg.contains("DUAL_WRITE -> DUAL_READ"), "{msg}");
    }
}
