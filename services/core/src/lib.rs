//! Ferry's domain rules, with no I/O.
//!
//! Everything here is pure and deterministic so it can be property-tested. Services translate
//! between these types and the wire (protobuf, RocketMQ).
//!
//! - [`stage`]: the five migration stages of a topic; only one-step transitions are allowed.
//! - [`perm`]: RocketMQ queue permission bits and the stage → permission masks of merged
//!   routes, with the invariants that keep messages from being stranded.
//! - [`names`]: namespace parsing/wrapping as RocketMQ clients do it, topic/group/namespace
//!   validation with stable rule ids, and user/retry/DLQ/system topic classification.
//! - [`queues`]: queue counts clamped into what the target allows (3..=16), with a notice.
//! - [`results`]: per-item import results, task status roll-up and progress counts.
//! - [`limits`]: per-task item limits and target quotas; items over them are reported, not
//!   dropped.
//! - [`targets`]: target type (4.x/5.x) and the seamless-migration task's steps and states.
//! - [`readiness`]: whether a topic may change stage now (no message can be stranded), from
//!   measured facts, with every reason that blocks it.
//! - [`error`]: the crate's one error type.

/// `Display` and a case-insensitive `FromStr` from an enum's `ALL` and `as_str`.
macro_rules! text_enum {
    ($ty:ty, $what:literal, $expected:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::CoreError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .into_iter()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| $crate::CoreError::unknown($what, s, $expected))
            }
        }
    };
}
pub(crate) use text_enum;

pub mod error;
pub mod limits;
pub mod names;
pub mod perm;
pub mod queues;
pub mod readiness;
pub mod results;
pub mod stage;
pub mod targets;

pub use error::CoreError;
pub use limits::{
    DEFAULT_TASK_ITEM_LIMIT, Rejected, Split, TaskLimits, check_quota, effective_limit,
    split_task_limit,
};
pub use names::{
    IMPORT_DEFAULT_NAMESPACE, NameError, NameKind, NameRule, NamespacedName, ResourcePrefix,
    SystemNames, TopicClass, V4_TARGET_DEFAULT_NAMESPACE, classify_topic, classify_topic_in,
    is_system_group, is_system_topic, namespace_or_default, parse_namespaced, qualify_group,
    qualify_topic, validate_group, validate_group_with, validate_namespace, validate_topic,
    validate_topic_with, wrap_namespace,
};
pub use perm::{
    PERM_INHERIT, PERM_READ, PERM_RW, PERM_WRITE, Side, StagePerms, is_readable, is_writeable,
    route_perms,
};
pub use queues::{ClampedQueues, MAX_QUEUE_NUMS, MIN_QUEUE_NUMS, clamp_queue_nums};
pub use readiness::{Readiness, ReadinessPolicy, Reason, ReasonCode, TopicFacts};
pub use results::{ItemKind, ItemResult, ProgressCounts, TaskStatus, roll_up};
pub use stage::{Direction, Stage};
pub use targets::{MigrationStep, TargetType, TaskState};
