//! Queue counts of imported topics: follow the source, clamped into what the target allows.
//!
//! PRODUCT.md §2/§4: "Queue count follows the source but is clamped into 3..16 with a notice."
//! Read and write counts are clamped independently by the same monotonic function, so a topic
//! with `read >= write` keeps `read >= write`: every queue written to stays readable (RocketMQ
//! consumers only read the first `readQueueNums` queues, so `write > read` would strand messages).

use serde::{Deserialize, Serialize};

/// Fewest queues per topic the target allows.
pub const MIN_QUEUE_NUMS: u32 = 3;
/// Most queues per topic the target allows.
pub const MAX_QUEUE_NUMS: u32 = 16;

/// Queue counts to create on the target, and a notice for people when they differ from the
/// source's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClampedQueues {
    pub read: u32,
    pub write: u32,
    /// Set iff a count changed; says the old and new values and why.
    pub notice: Option<String>,
}

impl ClampedQueues {
    /// True when a count differs from the source's.
    pub fn changed(&self) -> bool {
        self.notice.is_some()
    }
}

/// One count clamped into `MIN_QUEUE_NUMS..=MAX_QUEUE_NUMS`.
pub fn clamp_queue_num(n: u32) -> u32 {
    n.clamp(MIN_QUEUE_NUMS, MAX_QUEUE_NUMS)
}

/// Clamps the source's read and write queue counts into `3..=16`.
pub fn clamp_queue_nums(read: u32, write: u32) -> ClampedQueues {
    let (new_read, new_write) = (clamp_queue_num(read), clamp_queue_num(write));
    let notice = (new_read != read || new_write != write).then(|| {
        format!(
            "queue counts changed from read {read} / write {write} to read {new_read} / write {new_write}: \
             the target allows {MIN_QUEUE_NUMS}..{MAX_QUEUE_NUMS} queues per topic"
        )
    });
    ClampedQueues {
        read: new_read,
        write: new_write,
        notice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn count() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..40, any::<u32>()]
    }

    proptest! {
        /// Results are always in range.
        #[test]
        fn always_in_range(r in count(), w in count()) {
            let c = clamp_queue_nums(r, w);
            prop_assert!((MIN_QUEUE_NUMS..=MAX_QUEUE_NUMS).contains(&c.read));
            prop_assert!((MIN_QUEUE_NUMS..=MAX_QUEUE_NUMS).contains(&c.write));
        }

        /// Unchanged and without notice iff already in range; a notice names both old and new.
        #[test]
        fn unchanged_iff_in_range(r in count(), w in count()) {
            let c = clamp_queue_nums(r, w);
            let in_range = |n: u32| (MIN_QUEUE_NUMS..=MAX_QUEUE_NUMS).contains(&n);
            let both_in = in_range(r) && in_range(w);
            prop_assert_eq!(c.notice.is_none(), both_in);
            prop_assert_eq!((c.read, c.write) == (r, w), both_in);
            if let Some(n) = &c.notice {
                prop_assert!(n.contains(&format!("read {r} / write {w}")), "{}", n);
                prop_assert!(n.contains(&format!("read {} / write {}", c.read, c.write)), "{}", n);
                prop_assert!(n.contains("3..16"), "{}", n);
            }
        }

        /// Monotonic: more source queues never give fewer target queues.
        #[test]
        fn monotonic(a in count(), b in count()) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(clamp_queue_num(lo) <= clamp_queue_num(hi));
        }

        /// Every writable queue stays readable: read >= write is preserved.
        #[test]
        fn keeps_read_at_least_write(r in count(), w in count()) {
            let c = clamp_queue_nums(r, w);
            if r >= w {
                prop_assert!(c.read >= c.write);
            }
        }

        /// Clamping twice changes nothing more.
        #[test]
        fn idempotent(r in count(), w in count()) {
            let c = clamp_queue_nums(r, w);
            let again = clamp_queue_nums(c.read, c.write);
            prop_assert_eq!((again.read, again.write), (c.read, c.write));
            prop_assert!(again.notice.is_none());
        }
    }

    #[test]
    fn examples() {
        assert_eq!(clamp_queue_nums(8, 8).notice, None);
        let c = clamp_queue_nums(32, 1);
        assert_eq!((c.read, c.write), (16, 3));
        assert!(c.changed());
    }
}
