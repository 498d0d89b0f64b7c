//! Queue permission bits and the stage → permission table of merged routes.
//!
//! RocketMQ clients decide everything from a queue's `perm` (common/.../constant/PermName.java):
//! producers send only to writable queues, consumers rebalance only over readable ones. So
//! the router moves traffic by rewriting `perm` in the merged route (DESIGN.md "The idea"):
//!
//! | stage      | source queues               | target queues |
//! |------------|-----------------------------|---------------|
//! | INITIAL    | as they are (R/W)           | absent        |
//! | DUAL_READ  | R/W                         | READ only     |
//! | DUAL_WRITE | R/W                         | R/W           |
//! | SWITCHING  | READ only                   | R/W           |
//! | DONE       | perm 0 (grace), then absent | R/W           |
//!
//! The table gives *masks*, applied as `queue_perm & mask`: Ferry only ever takes permissions
//! away, so a queue its own cluster made read-only never becomes writable through Ferry.
//!
//! Invariants that keep messages safe (property-tested below, for queues that are R/W):
//! 1. In every stage some cluster is writable: producers always have somewhere to send.
//! 2. In every stage some cluster is readable, and every cluster that may hold messages is
//!    readable (the source until DONE; the target from DUAL_READ on, because a rollback from
//!    DUAL_WRITE leaves messages there).
//! 3. A cluster writable in stage S is readable in S and in both neighbours of S. Clients
//!    refresh routes every ~30 s, so during a one-step change some clients act on S and others
//!    on its neighbour: a message written under either is still consumed under either.
//! 4. While the grace period lasts the source stays listed in every stage (perm 0 in DONE):
//!    transactional check-backs need producers to keep heartbeating to source brokers.

use serde::{Deserialize, Serialize};

use crate::stage::Stage;

/// `PermName.PERM_PRIORITY`; not a valid topic permission (`isValid` is `0 <= perm < 8`).
pub const PERM_PRIORITY: u8 = 1 << 3;
/// `PermName.PERM_READ`: consumers may read the queue.
pub const PERM_READ: u8 = 1 << 2;
/// `PermName.PERM_WRITE`: producers may send to the queue.
pub const PERM_WRITE: u8 = 1 << 1;
/// `PermName.PERM_INHERIT`: topics auto-created from this template inherit its config.
pub const PERM_INHERIT: u8 = 1;
/// Read and write, RocketMQ's default topic permission (6).
pub const PERM_RW: u8 = PERM_READ | PERM_WRITE;

/// Mask that keeps every valid bit: the queue as its own cluster set it.
pub const MASK_AS_IS: u8 = PERM_READ | PERM_WRITE | PERM_INHERIT;
/// Mask that clears only the write bit, as the NameServer's `WIPE_WRITE_PERM_OF_BROKER` does.
pub const MASK_READ_ONLY: u8 = PERM_READ | PERM_INHERIT;
/// Mask that clears everything: listed (brokers stay known to clients) but not used.
pub const MASK_NONE: u8 = 0;

/// `PermName.isReadable`.
pub fn is_readable(perm: u8) -> bool {
    perm & PERM_READ == PERM_READ
}

/// `PermName.isWriteable`.
pub fn is_writeable(perm: u8) -> bool {
    perm & PERM_WRITE == PERM_WRITE
}

/// `PermName.isInherited`.
pub fn is_inherited(perm: u8) -> bool {
    perm & PERM_INHERIT == PERM_INHERIT
}

/// `PermName.isValid`: `0 <= perm < 8`.
pub fn is_valid_perm(perm: u8) -> bool {
    perm < PERM_PRIORITY
}

/// `PermName.perm2String`: `RWX`-style, `-` for a missing bit (`X` is inherit).
pub fn perm_to_string(perm: u8) -> String {
    [
        (is_readable(perm), 'R'),
        (is_writeable(perm), 'W'),
        (is_inherited(perm), 'X'),
    ]
    .iter()
    .map(|&(on, c)| if on { c } else { '-' })
    .collect()
}

/// Which of the two clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Side {
    Source,
    Target,
}

/// Permission masks for one stage; `None` means that cluster's queues are left out of the
/// merged route altogether.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StagePerms {
    pub source: Option<u8>,
    pub target: Option<u8>,
}

impl StagePerms {
    /// The mask for `side`.
    pub fn mask(&self, side: Side) -> Option<u8> {
        match side {
            Side::Source => self.source,
            Side::Target => self.target,
        }
    }

    /// The perm to put in the merged route for a queue of `side` whose own perm is
    /// `queue_perm`, or `None` to leave the queue out.
    pub fn apply(&self, side: Side, queue_perm: u8) -> Option<u8> {
        self.mask(side).map(|m| queue_perm & m)
    }
}

/// The masks of the stage table (module docs). `grace_active` keeps the source listed with
/// perm 0 in DONE while transactional check-backs may still arrive.
pub fn route_perms(stage: Stage, grace_active: bool) -> StagePerms {
    let (source, target) = match stage {
        Stage::Initial => (Some(MASK_AS_IS), None),
        Stage::DualRead => (Some(MASK_AS_IS), Some(MASK_READ_ONLY)),
        Stage::DualWrite => (Some(MASK_AS_IS), Some(MASK_AS_IS)),
        Stage::Switching => (Some(MASK_READ_ONLY), Some(MASK_AS_IS)),
        Stage::Done => (grace_active.then_some(MASK_NONE), Some(MASK_AS_IS)),
    };
    StagePerms { source, target }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIDES: [Side; 2] = [Side::Source, Side::Target];

    fn any_stage() -> impl Strategy<Value = Stage> {
        prop::sample::select(Stage::ALL.to_vec())
    }

    /// Queue perms a healthy cluster serves: R/W, with or without inherit.
    fn rw_perm() -> impl Strategy<Value = u8> {
        prop::sample::select(vec![PERM_RW, PERM_RW | PERM_INHERIT])
    }

    fn effective(stage: Stage, grace: bool, side: Side, queue_perm: u8) -> Option<u8> {
        route_perms(stage, grace).apply(side, queue_perm)
    }

    fn writable(stage: Stage, grace: bool, side: Side, p: u8) -> bool {
        effective(stage, grace, side, p).is_some_and(is_writeable)
    }

    fn readable(stage: Stage, grace: bool, side: Side, p: u8) -> bool {
        effective(stage, grace, side, p).is_some_and(is_readable)
    }

    /// Clusters that may hold unconsumed messages in `stage` (see invariant 2).
    fn may_hold_messages(stage: Stage, side: Side) -> bool {
        match side {
            Side::Source => stage != Stage::Done,
            Side::Target => stage != Stage::Initial,
        }
    }

    proptest! {
        /// Invariant 1: some cluster is writable in every stage.
        #[test]
        fn some_cluster_writable(stage in any_stage(), grace in any::<bool>(), p in rw_perm()) {
            prop_assert!(SIDES.iter().any(|&s| writable(stage, grace, s, p)));
        }

        /// Invariant 2: some cluster is readable, and every cluster that may hold messages is.
        #[test]
        fn clusters_with_messages_readable(stage in any_stage(), grace in any::<bool>(), p in rw_perm()) {
            prop_assert!(SIDES.iter().any(|&s| readable(stage, grace, s, p)));
            for side in SIDES {
                if may_hold_messages(stage, side) {
                    prop_assert!(readable(stage, grace, side, p), "{stage} {side:?}");
                }
            }
        }

        /// Invariant 3: writable in S ⇒ readable in S and in both neighbours of S.
        #[test]
        fn writable_is_readable_one_step_around(
            stage in any_stage(), g1 in any::<bool>(), g2 in any::<bool>(), p in rw_perm(),
        ) {
            for side in SIDES {
                if writable(stage, g1, side, p) {
                    prop_assert!(readable(stage, g1, side, p));
                    for n in [stage.prev(), stage.next()].into_iter().flatten() {
                        prop_assert!(readable(n, g2, side, p), "{side:?} writable in {stage}, not readable in {n}");
                    }
                }
            }
        }

        /// Invariant 4: with the grace period on, the source is listed in every stage.
        #[test]
        fn source_listed_during_grace(stage in any_stage()) {
            prop_assert!(route_perms(stage, true).source.is_some());
        }

        /// Masks only take permissions away: a read-only queue never becomes writable.
        #[test]
        fn never_adds_permission(stage in any_stage(), grace in any::<bool>(), p in any::<u8>()) {
            for side in SIDES {
                if let Some(e) = effective(stage, grace, side, p) {
                    prop_assert_eq!(e & !p, 0);
                    prop_assert!(is_valid_perm(e));
                    if !is_writeable(p) {
                        prop_assert!(!is_writeable(e));
                    }
                }
            }
        }

        /// perm_to_string agrees with the bit tests.
        #[test]
        fn perm_string_matches_bits(p in 0u8..8) {
            let s: Vec<char> = perm_to_string(p).chars().collect();
            prop_assert_eq!(s[0] == 'R', is_readable(p));
            prop_assert_eq!(s[1] == 'W', is_writeable(p));
            prop_assert_eq!(s[2] == 'X', is_inherited(p));
        }
    }

    #[test]
    fn table_matches_design() {
        let rw = PERM_RW;
        let row = |st, grace| {
            let sp = route_perms(st, grace);
            (sp.apply(Side::Source, rw), sp.apply(Side::Target, rw))
        };
        assert_eq!(row(Stage::Initial, false), (Some(6), None));
        assert_eq!(row(Stage::DualRead, false), (Some(6), Some(4)));
        assert_eq!(row(Stage::DualWrite, false), (Some(6), Some(6)));
        assert_eq!(row(Stage::Switching, false), (Some(4), Some(6)));
        assert_eq!(row(Stage::Done, true), (Some(0), Some(6)));
        assert_eq!(row(Stage::Done, false), (None, Some(6)));
        // A read-only source queue stays read-only even in INITIAL.
        assert_eq!(
            route_perms(Stage::Initial, false).apply(Side::Source, PERM_READ),
            Some(PERM_READ)
        );
        assert_eq!(perm_to_string(7), "RWX");
        assert_eq!(perm_to_string(4), "R--");
    }
}
