//! The task's topic stages as the router holds them: replaced by a store snapshot, then
//! updated by watch events, each applied only if newer than what is held for its topic
//! (events carry the store revision of the change).

use std::collections::HashMap;

use ferry_core::Stage;

/// One topic of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicStage {
    pub stage: Stage,
    /// When the topic entered `stage` (Unix ms, from the store); DONE's grace counts from it.
    pub updated_at_ms: i64,
    /// Store revision of the change.
    pub revision: i64,
}

/// Every topic of one task, plus the store position applied.
#[derive(Debug, Clone, Default)]
pub struct StageTable {
    topics: HashMap<String, TopicStage>,
    /// Highest store revision applied (snapshot or event, any task).
    revision: i64,
    /// Topics removed from the task, with the revision of the removal, so an older put
    /// arriving late cannot bring them back.
    removed: HashMap<String, i64>,
}

impl StageTable {
    /// Replaces everything with a snapshot taken at `revision`.
    pub fn replace(&mut self, topics: HashMap<String, TopicStage>, revision: i64) {
        self.topics = topics;
        self.removed.clear();
        self.revision = revision;
    }

    /// Applies a change of `topic` made at `revision`: `Some` sets the stage, `None` removes
    /// the topic from the task. Returns false when the table already holds something newer.
    pub fn apply(&mut self, topic: &str, state: Option<TopicStage>, revision: i64) -> bool {
        self.revision = self.revision.max(revision);
        let held = self
            .topics
            .get(topic)
            .map(|t| t.revision)
            .or_else(|| self.removed.get(topic).copied());
        if held.is_some_and(|h| h >= revision) {
            return false;
        }
        match state {
            Some(s) => {
                self.removed.remove(topic);
                self.topics.insert(topic.to_string(), s);
            }
            None => {
                self.topics.remove(topic);
                // Bounded by the number of removals between two snapshots.
                self.removed.insert(topic.to_string(), revision);
            }
        }
        true
    }

    /// Notes that the store reached `revision` (events of other tasks).
    pub fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    pub fn get(&self, topic: &str) -> Option<TopicStage> {
        self.topics.get(topic).copied()
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.topics.values().map(|t| &t.stage)
    }

    /// Number of topics per stage.
    pub fn counts(&self) -> [usize; 5] {
        let mut c = [0; 5];
        for t in self.topics.values() {
            c[t.stage.ordinal()] += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(stage: Stage, revision: i64) -> TopicStage {
        TopicStage {
            stage,
            updated_at_ms: revision * 10,
            revision,
        }
    }

    #[test]
    fn only_newer_changes_apply() {
        let mut t = StageTable::default();
        t.replace([("A".to_string(), ts(Stage::DualRead, 5))].into(), 7);
        assert_eq!(t.revision(), 7);
        assert!(!t.apply("A", Some(ts(Stage::Initial, 4)), 4));
        assert_eq!(t.get("A").unwrap().stage, Stage::DualRead);
        assert!(t.apply("A", Some(ts(Stage::DualWrite, 9)), 9));
        assert_eq!(t.get("A").unwrap().stage, Stage::DualWrite);
        assert_eq!(t.revision(), 9);
        // Removal, then a stale put must not resurrect the topic.
        assert!(t.apply("A", None, 11));
        assert!(t.get("A").is_none());
        assert!(!t.apply("A", Some(ts(Stage::DualWrite, 10)), 10));
        assert!(t.get("A").is_none());
        assert!(t.apply("A", Some(ts(Stage::Initial, 12)), 12));
        assert_eq!(t.counts(), [1, 0, 0, 0, 0]);
        t.advance(40);
        assert_eq!(t.revision(), 40);
    }
}
