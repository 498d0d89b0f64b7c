//! Per-task item limits and target quotas.
//!
//! PRODUCT.md §2: at most 1000 topics and 1000 groups per task by default (configurable);
//! items beyond the limit fail with that reason — never silently dropped. The same holds for
//! the target cluster's own quota. So both checks *split* a list, in order, and every item
//! over the line comes back with its [`ItemResult::QuotaExceeded`] reason.

use serde::{Deserialize, Serialize};

use crate::results::{ItemKind, ItemResult};

/// Default per-task limit, for topics and for groups separately.
pub const DEFAULT_TASK_ITEM_LIMIT: usize = 1000;

/// An item refused before it reached the target, with its result and the reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rejected<T> {
    pub item: T,
    /// Always [`ItemResult::QuotaExceeded`] for limits and quotas.
    pub result: ItemResult,
    pub reason: String,
}

/// A list split in order: `within` then `over` is the input, nothing lost or reordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Split<T> {
    pub within: Vec<T>,
    pub over: Vec<Rejected<T>>,
}

impl<T> Split<T> {
    /// Puts the items back together in their original order.
    pub fn into_items(self) -> Vec<T> {
        let mut all = self.within;
        all.extend(self.over.into_iter().map(|r| r.item));
        all
    }
}

fn split_at<T>(items: impl IntoIterator<Item = T>, keep: usize, reason: &str) -> Split<T> {
    let mut within = Vec::new();
    let mut over = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if i < keep {
            within.push(item);
        } else {
            over.push(Rejected {
                item,
                result: ItemResult::QuotaExceeded,
                reason: reason.to_string(),
            });
        }
    }
    Split { within, over }
}

/// Per-task limits by kind; the proto's `0 = default` maps through [`effective_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskLimits {
    pub topics: usize,
    pub groups: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            topics: DEFAULT_TASK_ITEM_LIMIT,
            groups: DEFAULT_TASK_ITEM_LIMIT,
        }
    }
}

impl TaskLimits {
    /// From requested limits where `0` (or less) means the default.
    pub fn from_requested(topics: i64, groups: i64) -> Self {
        TaskLimits {
            topics: effective_limit(topics),
            groups: effective_limit(groups),
        }
    }

    /// The limit for `kind`; roles have none (PRODUCT.md limits topics and groups only).
    pub fn for_kind(&self, kind: ItemKind) -> Option<usize> {
        match kind {
            ItemKind::Topic => Some(self.topics),
            ItemKind::Group => Some(self.groups),
            ItemKind::Role => None,
        }
    }
}

/// A requested limit where `0` or negative means [`DEFAULT_TASK_ITEM_LIMIT`].
pub fn effective_limit(requested: i64) -> usize {
    if requested <= 0 {
        DEFAULT_TASK_ITEM_LIMIT
    } else {
        usize::try_from(requested).unwrap_or(usize::MAX)
    }
}

/// The first `limit` items are within the task; the rest end `QUOTA_EXCEEDED` with reason
/// "over the per-task limit of N topics" (or groups, roles).
pub fn split_task_limit<T>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    kind: ItemKind,
) -> Split<T> {
    let reason = format!(
        "over the per-task limit of {limit} {}: split the import into several tasks or raise the limit",
        kind.plural()
    );
    split_at(items, limit, &reason)
}

/// Which of `to_create_in_order` fit the target cluster's quota given `existing_on_target`
/// items of this kind already there. Only items that will really be created count, so skipped
/// (already existing) items are not passed here.
pub fn check_quota<T>(
    existing_on_target: usize,
    to_create_in_order: impl IntoIterator<Item = T>,
    quota: usize,
    kind: ItemKind,
) -> Split<T> {
    let room = quota.saturating_sub(existing_on_target);
    let reason = format!(
        "over the target cluster's quota of {quota} {} ({existing_on_target} already exist there): \
         raise the target's quota or delete unused {} on it",
        kind.plural(),
        kind.plural()
    );
    split_at(to_create_in_order, room, &reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_kind() -> impl Strategy<Value = ItemKind> {
        prop::sample::select(ItemKind::ALL.to_vec())
    }

    proptest! {
        /// No item is lost or reordered; exactly `min(n, limit)` are within; the rest say why.
        #[test]
        fn task_limit_loses_nothing(n in 0usize..300, limit in 0usize..300, kind in any_kind()) {
            let items: Vec<usize> = (0..n).collect();
            let split = split_task_limit(items.clone(), limit, kind);
            prop_assert_eq!(split.within.len(), n.min(limit));
            for r in &split.over {
                prop_assert_eq!(r.result, ItemResult::QuotaExceeded);
                let expected = format!("over the per-task limit of {limit} {}", kind.plural());
                prop_assert!(r.reason.contains(&expected), "{}", r.reason);
            }
            prop_assert_eq!(split.into_items(), items);
        }

        /// Quota: room is `quota - existing`; no item lost; a full target takes nothing.
        #[test]
        fn quota_loses_nothing(n in 0usize..300, existing in 0usize..400, quota in 0usize..400, kind in any_kind()) {
            let items: Vec<usize> = (0..n).collect();
            let split = check_quota(existing, items.clone(), quota, kind);
            prop_assert_eq!(split.within.len(), n.min(quota.saturating_sub(existing)));
            if existing >= quota {
                prop_assert!(split.within.is_empty());
            }
            let expected = format!("quota of {quota}");
            prop_assert!(split
                .over
                .iter()
                .all(|r| r.result == ItemResult::QuotaExceeded && r.reason.contains(&expected)));
            prop_assert_eq!(split.into_items(), items);
        }
    }

    #[test]
    fn limits_from_request() {
        assert_eq!(TaskLimits::from_requested(0, -1), TaskLimits::default());
        let l = TaskLimits::from_requested(5, 7);
        assert_eq!(l.for_kind(ItemKind::Topic), Some(5));
        assert_eq!(l.for_kind(ItemKind::Group), Some(7));
        assert_eq!(l.for_kind(ItemKind::Role), None);
    }

    #[test]
    fn reason_text() {
        let s = split_task_limit(["a", "b"], 1, ItemKind::Topic);
        assert_eq!(s.within, vec!["a"]);
        assert!(
            s.over[0]
                .reason
                .starts_with("over the per-task limit of 1 topics")
        );
    }
}
