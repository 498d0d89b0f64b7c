//! Readiness of each topic as the health checker last measured it, stored apart from the
//! topic's stage.
//!
//! ```text
//! task-readiness/<task-id>/<topic>     ReadinessRecord (readiness for next and previous stage)
//! ```
//!
//! Why a separate key rather than `TopicState::readiness`: writing the topic key bumps its
//! revision, so every periodic check would invalidate the `expected_revision` a caller just
//! read and make stage changes fail as conflicts. Routers watch `task-topics/` only, so these
//! frequent writes cost them nothing either.
//!
//! A record names the topic revision its facts were measured against; it is written only while
//! the topic is still at that revision (one transaction), and readers treat a record for any
//! other revision as stale. So a stage change (or a removal) makes old readiness unusable at
//! once, with no clean-up needed.

use async_trait::async_trait;
use ferry_core::Stage;
use ferry_core::readiness::Readiness;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::kv::{Compare, KvBackend, Op, Txn};
use crate::migration::{KvMigrationStore, MigrationStore, keys as topic_keys};
use crate::model::{Page, PageRequest, decode, encode};

/// Key names of readiness records.
pub mod keys {
    /// Prefix of every readiness record.
    pub const READINESS: &str = "task-readiness/";

    pub fn of_task(task_id: &str) -> String {
        format!("{READINESS}{task_id}/")
    }

    pub fn record(task_id: &str, topic: &str) -> String {
        format!("{READINESS}{task_id}/{topic}")
    }
}

/// Where the health checker's watch of source writes started (SWITCHING only): the sum of
/// the source topic's max offsets at that time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWatch {
    /// Unix milliseconds of the baseline measurement.
    pub since_ms: i64,
    /// Σ max offset over the source queues of the topic then.
    pub max_offset_total: i64,
}

/// Readiness of one topic for its next and previous stage, as last measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadinessRecord {
    pub task_id: String,
    pub topic: String,
    /// The stage the readiness was computed for.
    pub stage: Stage,
    /// Revision of the topic's state the facts were measured against.
    pub topic_revision: i64,
    pub next: Readiness,
    pub previous: Readiness,
    /// Unix milliseconds when the facts were measured (not when written).
    pub checked_at_ms: i64,
    /// Baseline of the source write watch; kept across checks of the same stage.
    #[serde(default)]
    pub source_watch: Option<SourceWatch>,
}

impl ReadinessRecord {
    /// True when the record was measured against exactly this revision of the topic.
    pub fn is_for_revision(&self, topic_revision: i64) -> bool {
        self.topic_revision == topic_revision
    }
}

/// Readiness records, per task.
#[async_trait]
pub trait ReadinessStore: Send + Sync {
    /// Writes `record` if its topic still exists at `record.topic_revision`; otherwise
    /// [`StoreError::Conflict`] (the topic moved or was removed: the record would be stale).
    async fn put_readiness(&self, record: &ReadinessRecord) -> Result<()>;

    /// The record of one topic, if any (possibly for an older revision: check
    /// [`ReadinessRecord::is_for_revision`]).
    async fn get_readiness(&self, task_id: &str, topic: &str) -> Result<Option<ReadinessRecord>>;

    /// A task's records by topic name.
    async fn list_readiness(
        &self,
        task_id: &str,
        page: PageRequest,
    ) -> Result<Page<ReadinessRecord>>;
}

/// The whole store as services use it: stages, tasks and readiness behind one handle.
/// `Arc<dyn FerryStore>` coerces to `Arc<dyn MigrationStore>` or `Arc<dyn ReadinessStore>`.
pub trait FerryStore: MigrationStore + ReadinessStore {}

impl<T: MigrationStore + ReadinessStore> FerryStore for T {}

/// Checks one key segment like the rest of the store: non-empty, no `/`, no control chars.
fn segment<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty()
        || value.len() > 255
        || value.contains('/')
        || value.chars().any(char::is_control)
    {
        return Err(StoreError::InvalidArgument {
            reason: format!(
                "{what} {value:?} must be 1 to 255 characters without '/' or control characters"
            ),
        });
    }
    Ok(value)
}

#[async_trait]
impl<B: KvBackend> ReadinessStore for KvMigrationStore<B> {
    async fn put_readiness(&self, record: &ReadinessRecord) -> Result<()> {
        segment("task id", &record.task_id)?;
        segment("topic", &record.topic)?;
        let topic_key = topic_keys::topic(&record.task_id, &record.topic);
        let kv = self.backend();
        let outcome = kv
            .txn(Txn {
                compares: vec![Compare::ModRevision(
                    topic_key.clone(),
                    record.topic_revision,
                )],
                success: vec![Op::put(
                    keys::record(&record.task_id, &record.topic),
                    encode(record),
                )],
                failure: vec![],
            })
            .await?;
        if outcome.succeeded {
            return Ok(());
        }
        let actual = kv.get(&topic_key).await?.map_or(0, |kv| kv.mod_revision);
        Err(StoreError::Conflict {
            what: format!(
                "topic {} of task {} (readiness measured for an older stage)",
                record.topic, record.task_id
            ),
            key: topic_key,
            expected: record.topic_revision,
            actual,
        })
    }

    async fn get_readiness(&self, task_id: &str, topic: &str) -> Result<Option<ReadinessRecord>> {
        segment("task id", task_id)?;
        segment("topic", topic)?;
        let key = keys::record(task_id, topic);
        match self.backend().get(&key).await? {
            Some(kv) => decode(&key, &kv.value).map(Some),
            None => Ok(None),
        }
    }

    async fn list_readiness(
        &self,
        task_id: &str,
        page: PageRequest,
    ) -> Result<Page<ReadinessRecord>> {
        segment("task id", task_id)?;
        let start_after = match &page.page_token {
            Some(topic) => Some(keys::record(task_id, segment("page token", topic)?)),
            None => None,
        };
        let range = self
            .backend()
            .range(&keys::of_task(task_id), start_after, page.limit())
            .await?;
        let items = range
            .kvs
            .iter()
            .map(|kv| decode::<ReadinessRecord>(&kv.key, &kv.value))
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if range.more {
            items.last().map(|r| r.topic.clone())
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_apart_from_topics_and_tasks() {
        assert_eq!(keys::record("t1", "A"), "task-readiness/t1/A");
        assert!(!keys::record("t1", "A").starts_with(topic_keys::TOPICS));
        assert!(!keys::record("t1", "A").starts_with(topic_keys::TASKS));
        assert!(keys::record("t1", "A").starts_with(&keys::of_task("t1")));
    }
}
