//! Target type and the seamless-migration task's steps and states (PRODUCT.md §4).

use serde::{Deserialize, Serialize};

use crate::names::V4_TARGET_DEFAULT_NAMESPACE;

/// Major version line of the target cluster: decides namespaces and spreadsheet templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetType {
    /// RocketMQ 4.x: items live in namespaces (the name part before `%`, else `Default`).
    V4,
    /// RocketMQ 5.x: no namespace; topics carry a message type.
    V5,
}

impl TargetType {
    pub const ALL: [TargetType; 2] = [TargetType::V4, TargetType::V5];

    /// `4.x` or `5.x`, as people write it. Parsing also accepts `4`, `5`, `V4`, `V5`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::V4 => "4.x",
            TargetType::V5 => "5.x",
        }
    }

    /// Namespace for names without one: `Default` on 4.x, none on 5.x.
    pub fn default_namespace(self) -> Option<&'static str> {
        match self {
            TargetType::V4 => Some(V4_TARGET_DEFAULT_NAMESPACE),
            TargetType::V5 => None,
        }
    }

    fn matches(self, s: &str) -> bool {
        let s = s.trim();
        let short = &self.as_str()[..1];
        s.eq_ignore_ascii_case(self.as_str())
            || s == short
            || s.eq_ignore_ascii_case(&format!("v{short}"))
    }
}

/// The five steps of a seamless migration, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MigrationStep {
    /// 1. Connect the source (NameServers, ACL admin keys).
    Connect,
    /// 2. Import topics, groups and roles into the target.
    ImportMetadata,
    /// 3. Clients switch their NameServer address to Ferry's routers.
    SwitchAccessPoint,
    /// 4. Topics move stage by stage.
    GrayMigration,
    /// 5. Every topic is DONE; the source can be retired.
    Complete,
}

impl MigrationStep {
    pub const ALL: [MigrationStep; 5] = [
        MigrationStep::Connect,
        MigrationStep::ImportMetadata,
        MigrationStep::SwitchAccessPoint,
        MigrationStep::GrayMigration,
        MigrationStep::Complete,
    ];

    /// Step number as shown to people, 1 to 5.
    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// The step after this one, if any.
    pub fn next(self) -> Option<MigrationStep> {
        MigrationStep::ALL.get(self as usize + 1).copied()
    }

    /// The step before this one, if any.
    pub fn prev(self) -> Option<MigrationStep> {
        (self as usize)
            .checked_sub(1)
            .map(|i| MigrationStep::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStep::Connect => "CONNECT",
            MigrationStep::ImportMetadata => "IMPORT_METADATA",
            MigrationStep::SwitchAccessPoint => "SWITCH_ACCESS_POINT",
            MigrationStep::GrayMigration => "GRAY_MIGRATION",
            MigrationStep::Complete => "COMPLETE",
        }
    }
}

/// Lifecycle state of a seamless-migration task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Accepting step and stage changes.
    Running,
    /// No stage change accepted until resumed; routers keep serving the current stages.
    Paused,
    /// Every topic DONE; the target is released.
    Completed,
    /// Rolled back to the start and closed; the target is released.
    RolledBack,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Running,
        TaskState::Paused,
        TaskState::Completed,
        TaskState::RolledBack,
    ];

    /// Closed for good; the target cluster may be taken by another task.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::RolledBack)
    }

    /// Whether step and stage changes may happen now.
    pub fn accepts_changes(self) -> bool {
        self == TaskState::Running
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "RUNNING",
            TaskState::Paused => "PAUSED",
            TaskState::Completed => "COMPLETED",
            TaskState::RolledBack => "ROLLED_BACK",
        }
    }
}

impl std::fmt::Display for TargetType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TargetType {
    type Err = crate::CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetType::ALL
            .into_iter()
            .find(|t| t.matches(s))
            .ok_or_else(|| crate::CoreError::unknown("target type", s, "4.x, 5.x (or 4, 5)"))
    }
}

crate::text_enum!(
    MigrationStep,
    "migration step",
    "CONNECT, IMPORT_METADATA, SWITCH_ACCESS_POINT, GRAY_MIGRATION, COMPLETE"
);
crate::text_enum!(
    TaskState,
    "task state",
    "RUNNING, PAUSED, COMPLETED, ROLLED_BACK"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_step() -> impl Strategy<Value = MigrationStep> {
        prop::sample::select(MigrationStep::ALL.to_vec())
    }

    proptest! {
        /// next and prev are inverse, and follow the numbering.
        #[test]
        fn steps_are_ordered(s in any_step()) {
            if let Some(n) = s.next() {
                prop_assert_eq!(n.prev(), Some(s));
                prop_assert_eq!(n.number(), s.number() + 1);
            }
            if let Some(p) = s.prev() {
                prop_assert_eq!(p.next(), Some(s));
            }
            prop_assert_eq!(s.to_string().parse::<MigrationStep>(), Ok(s));
            prop_assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }

        /// Task states round-trip through text and serde.
        #[test]
        fn states_round_trip(t in prop::sample::select(TaskState::ALL.to_vec())) {
            prop_assert_eq!(t.to_string().parse::<TaskState>(), Ok(t));
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
    }

    #[test]
    fn five_steps_from_connect_to_complete() {
        assert_eq!(MigrationStep::ALL.len(), 5);
        assert_eq!(MigrationStep::Connect.prev(), None);
        assert_eq!(MigrationStep::Complete.next(), None);
        assert_eq!(MigrationStep::Complete.number(), 5);
    }

    #[test]
    fn target_type_parses_common_spellings() {
        for (s, t) in [
            ("4.x", TargetType::V4),
            ("4", TargetType::V4),
            ("4.X", TargetType::V4),
            ("v4", TargetType::V4),
            (" 5.x ", TargetType::V5),
            ("5", TargetType::V5),
            ("V5", TargetType::V5),
        ] {
            assert_eq!(s.parse::<TargetType>(), Ok(t), "{s}");
        }
        let err = "6.x".parse::<TargetType>().unwrap_err();
        assert!(err.to_string().contains("4.x, 5.x"), "{err}");
        assert_eq!(serde_json::to_string(&TargetType::V4).unwrap(), "\"V4\"");
        assert_eq!(TargetType::V4.default_namespace(), Some("Default"));
        assert_eq!(TargetType::V5.default_namespace(), None);
    }

    #[test]
    fn terminal_states() {
        assert!(TaskState::Completed.is_terminal() && TaskState::RolledBack.is_terminal());
        assert!(!TaskState::Paused.is_terminal() && !TaskState::Paused.accepts_changes());
        assert!(TaskState::Running.accepts_changes());
    }
}
