//! How each item of an import ends, and how item results roll up into a task status.
//!
//! PRODUCT.md §2: every item ends as exactly one result, and the task status follows from the
//! items alone, so two readers of the same items never disagree about a task.

use serde::{Deserialize, Serialize};

/// Kind of an imported item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemKind {
    Topic,
    Group,
    /// An ACL role / user with its keys.
    Role,
}

impl ItemKind {
    pub const ALL: [ItemKind; 3] = [ItemKind::Topic, ItemKind::Group, ItemKind::Role];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Topic => "TOPIC",
            ItemKind::Group => "GROUP",
            ItemKind::Role => "ROLE",
        }
    }

    /// Plural noun for messages ("topics").
    pub fn plural(self) -> &'static str {
        match self {
            ItemKind::Topic => "topics",
            ItemKind::Group => "groups",
            ItemKind::Role => "roles",
        }
    }
}

/// How one item ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemResult {
    /// Not processed yet.
    Pending,
    /// Created on the target and read back.
    Success,
    /// Already present on the target; left as it was (re-running an import is idempotent).
    AlreadyExistsSkipped,
    /// Over the target's quota or the per-task limit; the reason says which.
    QuotaExceeded,
    /// The name breaks a naming rule; the reason names the rule.
    InvalidName,
    /// The target refused or could not be reached; the reason carries its error.
    Failed,
}

impl ItemResult {
    pub const ALL: [ItemResult; 6] = [
        ItemResult::Pending,
        ItemResult::Success,
        ItemResult::AlreadyExistsSkipped,
        ItemResult::QuotaExceeded,
        ItemResult::InvalidName,
        ItemResult::Failed,
    ];

    /// Every result but `Pending` is final.
    pub fn is_terminal(self) -> bool {
        self != ItemResult::Pending
    }

    /// The item did not end up on the target.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ItemResult::QuotaExceeded | ItemResult::InvalidName | ItemResult::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ItemResult::Pending => "PENDING",
            ItemResult::Success => "SUCCESS",
            ItemResult::AlreadyExistsSkipped => "ALREADY_EXISTS_SKIPPED",
            ItemResult::QuotaExceeded => "QUOTA_EXCEEDED",
            ItemResult::InvalidName => "INVALID_NAME",
            ItemResult::Failed => "FAILED",
        }
    }
}

/// Status of a task, rolled up from its items by [`roll_up`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::PartiallyFailed,
        TaskStatus::Failed,
    ];

    /// The task will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::PartiallyFailed | TaskStatus::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::PartiallyFailed => "PARTIALLY_FAILED",
            TaskStatus::Failed => "FAILED",
        }
    }
}

crate::text_enum!(ItemKind, "item kind", "TOPIC, GROUP, ROLE");
crate::text_enum!(
    ItemResult,
    "item result",
    "PENDING, SUCCESS, ALREADY_EXISTS_SKIPPED, QUOTA_EXCEEDED, INVALID_NAME, FAILED"
);
crate::text_enum!(
    TaskStatus,
    "task status",
    "PENDING, RUNNING, SUCCEEDED, PARTIALLY_FAILED, FAILED"
);

/// Task status from its item results:
/// - not started → `Pending`;
/// - any item still `Pending` → `Running`;
/// - no failures (only `Success`/`AlreadyExistsSkipped`, or no items) → `Succeeded`;
/// - only failures (`QuotaExceeded`/`InvalidName`/`Failed`) → `Failed`;
/// - otherwise → `PartiallyFailed`.
///
/// Order does not matter, so items may be processed and stored in any order.
pub fn roll_up(results: impl IntoIterator<Item = ItemResult>, started: bool) -> TaskStatus {
    ProgressCounts::from_results(results).status(started)
}

/// Counts of item results, for progress bars and task lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ProgressCounts {
    pub total: u64,
    pub pending: u64,
    pub success: u64,
    pub skipped: u64,
    pub quota_exceeded: u64,
    pub invalid_name: u64,
    pub failed: u64,
}

impl ProgressCounts {
    /// Counts `results`.
    pub fn from_results(results: impl IntoIterator<Item = ItemResult>) -> Self {
        let mut counts = ProgressCounts::default();
        for r in results {
            counts.add(r);
        }
        counts
    }

    /// Counts one more item.
    pub fn add(&mut self, result: ItemResult) {
        self.total += 1;
        let slot = match result {
            ItemResult::Pending => &mut self.pending,
            ItemResult::Success => &mut self.success,
            ItemResult::AlreadyExistsSkipped => &mut self.skipped,
            ItemResult::QuotaExceeded => &mut self.quota_exceeded,
            ItemResult::InvalidName => &mut self.invalid_name,
            ItemResult::Failed => &mut self.failed,
        };
        *slot += 1;
    }

    /// Items with a final result.
    pub fn done(&self) -> u64 {
        self.total - self.pending
    }

    /// Items that failed in any way.
    pub fn failures(&self) -> u64 {
        self.quota_exceeded + self.invalid_name + self.failed
    }

    /// The task status these counts roll up to (same rules as [`roll_up`]).
    pub fn status(&self, started: bool) -> TaskStatus {
        let failures = self.failures();
        if !started {
            TaskStatus::Pending
        } else if self.pending > 0 {
            TaskStatus::Running
        } else if failures == 0 {
            TaskStatus::Succeeded
        } else if failures == self.total {
            TaskStatus::Failed
        } else {
            TaskStatus::PartiallyFailed
        }
    }
}

impl FromIterator<ItemResult> for ProgressCounts {
    fn from_iter<I: IntoIterator<Item = ItemResult>>(iter: I) -> Self {
        ProgressCounts::from_results(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_result() -> impl Strategy<Value = ItemResult> {
        prop::sample::select(ItemResult::ALL.to_vec())
    }

    fn terminal() -> impl Strategy<Value = ItemResult> {
        any_result().prop_filter("terminal", |r| r.is_terminal())
    }

    fn ok_result() -> impl Strategy<Value = ItemResult> {
        prop::sample::select(vec![ItemResult::Success, ItemResult::AlreadyExistsSkipped])
    }

    fn failure() -> impl Strategy<Value = ItemResult> {
        any_result().prop_filter("failure", |r| r.is_failure())
    }

    proptest! {
        /// The order of items never changes the status.
        #[test]
        fn roll_up_is_permutation_invariant(
            (items, shuffled) in prop::collection::vec(any_result(), 0..40)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            started in any::<bool>(),
        ) {
            prop_assert_eq!(roll_up(items, started), roll_up(shuffled, started));
        }

        /// Adding a success to an all-success set keeps it Succeeded.
        #[test]
        fn success_keeps_succeeded(mut items in prop::collection::vec(ok_result(), 0..40)) {
            prop_assert_eq!(roll_up(items.clone(), true), TaskStatus::Succeeded);
            items.push(ItemResult::Success);
            prop_assert_eq!(roll_up(items, true), TaskStatus::Succeeded);
        }

        /// One failure and one success, with any other final items, is PartiallyFailed.
        #[test]
        fn failure_and_success_is_partial(
            f in failure(), s in ok_result(),
            rest in prop::collection::vec(terminal(), 0..40),
            at in any::<prop::sample::Index>(),
        ) {
            let mut items = rest;
            items.insert(at.index(items.len() + 1), f);
            items.push(s);
            prop_assert_eq!(roll_up(items, true), TaskStatus::PartiallyFailed);
        }

        /// Only failures is Failed; any pending item once started is Running; not started is Pending.
        #[test]
        fn other_rules(
            fails in prop::collection::vec(failure(), 1..40),
            mixed in prop::collection::vec(any_result(), 0..40),
        ) {
            prop_assert_eq!(roll_up(fails, true), TaskStatus::Failed);
            let mut with_pending = mixed.clone();
            with_pending.push(ItemResult::Pending);
            prop_assert_eq!(roll_up(with_pending, true), TaskStatus::Running);
            prop_assert_eq!(roll_up(mixed, false), TaskStatus::Pending);
        }

        /// Counts add up to the total, and the status from counts equals the roll-up.
        #[test]
        fn counts_sum_to_total(items in prop::collection::vec(any_result(), 0..60), started in any::<bool>()) {
            let c: ProgressCounts = items.iter().copied().collect();
            prop_assert_eq!(c.total, items.len() as u64);
            prop_assert_eq!(
                c.pending + c.success + c.skipped + c.quota_exceeded + c.invalid_name + c.failed,
                c.total
            );
            prop_assert_eq!(c.done() + c.pending, c.total);
            prop_assert_eq!(c.status(started), roll_up(items, started));
        }

        /// Names round-trip through Display/FromStr and serde.
        #[test]
        fn names_round_trip(r in any_result(), s in prop::sample::select(TaskStatus::ALL.to_vec()), k in prop::sample::select(ItemKind::ALL.to_vec())) {
            prop_assert_eq!(r.to_string().parse::<ItemResult>(), Ok(r));
            prop_assert_eq!(s.to_string().parse::<TaskStatus>(), Ok(s));
            prop_assert_eq!(k.to_string().parse::<ItemKind>(), Ok(k));
            prop_assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
            prop_assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
            prop_assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }

    #[test]
    fn empty_started_task_succeeds() {
        assert_eq!(roll_up([], true), TaskStatus::Succeeded);
        assert_eq!(roll_up([], false), TaskStatus::Pending);
    }

    #[test]
    fn classification_of_results() {
        use ItemResult::*;
        assert!(!Pending.is_terminal() && !Pending.is_failure());
        assert!(Success.is_terminal() && !Success.is_failure());
        assert!(AlreadyExistsSkipped.is_terminal() && !AlreadyExistsSkipped.is_failure());
        for f in [QuotaExceeded, InvalidName, Failed] {
            assert!(f.is_terminal() && f.is_failure());
        }
        let err = "DONE?".parse::<TaskStatus>().unwrap_err();
        assert!(err.to_string().contains("PARTIALLY_FAILED"), "{err}");
    }
}
