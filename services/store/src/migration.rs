//! The migration store in domain terms, written once over any [`KvBackend`].
//!
//! # Key layout (relative to the backend prefix, default `/ferry/`)
//!
//! ```text
//! tasks/<task-id>                              MigrationTask
//! task-topics/<task-id>/<topic>                TopicState (stage, updated_at/by, readiness)
//! task-audit/<task-id>/<rev:020>-<topic>       AuditRecord of one stage change
//! targets/<target-cluster>/lock                {"task_id": ...}: the task running on it
//! <kind>/<member-id>                           RegisteredMember, lease-bound (kind "routers", ...)
//! ```
//!
//! Topics and audit records live under their own prefixes rather than below `tasks/<id>/`
//! (as DESIGN.md first sketched), so listing `tasks/` pages over tasks only, and routers watch
//! exactly the stage keys (`task-topics/`) without seeing task or audit writes.
//!
//! An audit key is named after the topic revision the change replaced (unique: each change
//! is conditioned on it). Audit records are *listed* by their create revision, which is the
//! commit revision of the stage change, so the order is commit order across all topics.
//!
//! # Concurrency
//!
//! Every write that depends on what was read is one transaction conditioned on the read
//! revision ([`Versioned::revision`]); the loser gets [`StoreError::Conflict`] and must
//! re-read. A stage change writes the topic and its audit record in one transaction, and may
//! also be conditioned on the task's revision, so a task-level write such as a pause fences
//! stage changes decided before it. Creating a task takes `targets/<target>/lock` in the same
//! transaction, which is how "one running task per target cluster" holds across replicas.
//!
//! # Routers: list, then watch
//!
//! [`MigrationStore::stage_snapshot`] returns every topic's stage and a revision `R`;
//! [`MigrationStore::watch_stages`] from `R + 1` then delivers every later change. Each
//! [`StageEvent`] carries its revision: apply it only if newer than the revision held for
//! that topic, which also makes replays after a reconnect harmless.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::Stage;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::embedded::EmbeddedBackend;
use crate::error::{Result, StoreError};
use crate::etcd::{EtcdBackend, EtcdOptions};
use crate::kv::{Compare, KeyValue, KvBackend, Op, Txn, WatchEventKind, chunked};
use crate::model::{
    AuditRecord, MigrationTask, Page, PageRequest, RegisteredMember, StageEvent, TopicState,
    Versioned, decode, encode, now_ms,
};

/// Key names. See the module docs for the layout.
pub mod keys {
    /// Prefix of task keys.
    pub const TASKS: &str = "tasks/";
    /// Prefix of topic-stage keys of all tasks (what routers watch).
    pub const TOPICS: &str = "task-topics/";
    /// Prefix of audit keys of all tasks.
    pub const AUDIT: &str = "task-audit/";
    /// Prefix of target-cluster locks.
    pub const TARGETS: &str = "targets/";
    /// Member kinds that would collide with the keys above or planned ones.
    pub const RESERVED_KINDS: [&str; 12] = [
        "tasks",
        "task-topics",
        "task-audit",
        "task-readiness",
        "targets",
        "snapshots",
        "snapshot-index",
        "snapshot-chunks",
        "imports",
        "import-items",
        "import-active",
        "import-claims",
    ];

    pub fn task(id: &str) -> String {
        format!("{TASKS}{id}")
    }

    pub fn topics_of(task_id: &str) -> String {
        format!("{TOPICS}{task_id}/")
    }

    pub fn topic(task_id: &str, topic: &str) -> String {
        format!("{TOPICS}{task_id}/{topic}")
    }

    pub fn audit_of(task_id: &str) -> String {
        format!("{AUDIT}{task_id}/")
    }

    /// `replaced_revision` is the topic revision the change replaced.
    pub fn audit(task_id: &str, replaced_revision: i64, topic: &str) -> String {
        format!("{AUDIT}{task_id}/{replaced_revision:020}-{topic}")
    }

    pub fn target_lock(target: &str) -> String {
        format!("{TARGETS}{target}/lock")
    }

    pub fn members_of(kind: &str) -> String {
        format!("{kind}/")
    }

    pub fn member(kind: &str, id: &str) -> String {
        format!("{kind}/{id}")
    }
}

/// A request to move one topic to another stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageChange {
    pub task_id: String,
    pub topic: String,
    /// The topic revision the caller decided on ([`Versioned::revision`] of the topic).
    pub expected_revision: i64,
    /// Must be one step forward or back from the stored stage.
    pub to: Stage,
    pub actor: String,
    /// Made although the topic was not reported ready (recorded in the audit).
    pub forced: bool,
    pub reason: Option<String>,
    /// When set, the change also requires the task key to still be at this revision.
    pub task_revision: Option<i64>,
}

/// What [`MigrationStore::add_topics`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AddTopicsOutcome {
    /// Topics created now.
    pub added: Vec<Versioned<TopicState>>,
    /// Topics that were already in the task, with their stored state (left unchanged).
    pub already_present: Vec<Versioned<TopicState>>,
}

/// The store of tasks, topic stages, target locks, members and audit, in domain terms.
///
/// Object safe: services hold an `Arc<dyn MigrationStore>`.
#[async_trait]
pub trait MigrationStore: Send + Sync {
    /// Creates a task and takes its target cluster's lock, atomically.
    /// [`StoreError::TargetLocked`] names the task holding the target;
    /// [`StoreError::AlreadyExists`] when the id is taken.
    async fn create_task(&self, task: MigrationTask) -> Result<Versioned<MigrationTask>>;

    /// Reads a task.
    async fn get_task(&self, id: &str) -> Result<Versioned<MigrationTask>>;

    /// Lists tasks by id.
    async fn list_tasks(&self, page: PageRequest) -> Result<Page<Versioned<MigrationTask>>>;

    /// Replaces a task if it is still at `expected_revision`. The id and target cluster
    /// cannot change; `created_at_ms` is kept.
    async fn update_task(
        &self,
        task: MigrationTask,
        expected_revision: i64,
    ) -> Result<Versioned<MigrationTask>>;

    /// Like [`Self::update_task`], and releases the target lock (if it still names this task)
    /// in the same transaction, so another task may take the target.
    async fn finish_task(
        &self,
        id: &str,
        expected_revision: i64,
        task: MigrationTask,
    ) -> Result<Versioned<MigrationTask>>;

    /// The task holding `target`'s lock, if any.
    async fn target_holder(&self, target: &str) -> Result<Option<String>>;

    /// Adds topics to a task (each one only if absent), in transactions of at most 100.
    async fn add_topics(&self, task_id: &str, topics: Vec<TopicState>) -> Result<AddTopicsOutcome>;

    /// Reads one topic of a task.
    async fn get_topic(&self, task_id: &str, topic: &str) -> Result<Versioned<TopicState>>;

    /// Lists a task's topics by name.
    async fn list_topics(
        &self,
        task_id: &str,
        page: PageRequest,
    ) -> Result<Page<Versioned<TopicState>>>;

    /// Removes a topic still at INITIAL, if still at `expected_revision`.
    async fn remove_topic(&self, task_id: &str, topic: &str, expected_revision: i64) -> Result<()>;

    /// Moves a topic one stage forward or back, writing the new state and an audit record in
    /// one transaction conditioned on the topic (and optionally task) revision.
    async fn change_stage(&self, change: StageChange) -> Result<Versioned<TopicState>>;

    /// A task's audit records in commit order.
    async fn list_audit(&self, task_id: &str, page: PageRequest) -> Result<Page<AuditRecord>>;

    /// Every topic's stage (all tasks) and the revision to watch after (`revision + 1`).
    async fn stage_snapshot(&self) -> Result<(Vec<StageEvent>, i64)>;

    /// Stage changes from `from_revision` on; [`StoreError::Compacted`] when too old.
    async fn watch_stages(
        &self,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Result<StageEvent>>>;

    /// Registers a live member under a lease kept alive in the background until the returned
    /// handle is revoked or dropped.
    async fn register_member(
        &self,
        kind: &str,
        id: &str,
        value: serde_json::Value,
        ttl_secs: i64,
    ) -> Result<MemberLease>;

    /// Live members of a kind.
    async fn list_members(&self, kind: &str) -> Result<Vec<RegisteredMember>>;

    /// A cheap read proving the store answers (for NOT_SERVING reporting).
    async fn health(&self) -> Result<()>;
}

/// The one [`MigrationStore`] implementation, over any backend.
pub struct KvMigrationStore<B: KvBackend> {
    kv: Arc<B>,
}

/// The production store.
pub type EtcdStore = KvMigrationStore<EtcdBackend>;
/// The single-process store (`ferry standalone`, unit tests).
pub type EmbeddedStore = KvMigrationStore<EmbeddedBackend>;

impl<B: KvBackend> Clone for KvMigrationStore<B> {
    fn clone(&self) -> Self {
        KvMigrationStore {
            kv: self.kv.clone(),
        }
    }
}

impl<B: KvBackend> std::fmt::Debug for KvMigrationStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvMigrationStore")
            .field("backend", &std::any::type_name::<B>())
            .finish()
    }
}

impl<B: KvBackend> KvMigrationStore<B> {
    /// A store over `backend`.
    pub fn new(backend: B) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// A store over a shared backend.
    pub fn from_arc(backend: Arc<B>) -> Self {
        KvMigrationStore { kv: backend }
    }

    /// The backend, for tests and tools.
    pub fn backend(&self) -> &Arc<B> {
        &self.kv
    }
}

impl EtcdStore {
    /// Connects to etcd (see [`EtcdBackend::connect`]).
    pub async fn connect(endpoints: &[String], options: EtcdOptions) -> Result<EtcdStore> {
        Ok(Self::new(EtcdBackend::connect(endpoints, options).await?))
    }
}

impl EmbeddedStore {
    /// Opens a file-backed embedded store in `dir` (see [`EmbeddedBackend::open`]).
    pub async fn open(dir: impl AsRef<std::path::Path>) -> Result<EmbeddedStore> {
        Ok(Self::new(EmbeddedBackend::open(dir).await?))
    }

    /// An in-memory embedded store, for unit tests.
    pub fn in_memory() -> EmbeddedStore {
        Self::new(EmbeddedBackend::in_memory())
    }
}

/// Value of a target lock.
#[derive(Debug, Serialize, Deserialize)]
struct TargetLock {
    task_id: String,
}

/// Checks one key segment: non-empty, no `/`, no control characters.
pub(crate) fn segment<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(StoreError::invalid(format!("{what} must not be empty")));
    }
    if value.len() > 255 || value.contains('/') || value.chars().any(char::is_control) {
        return Err(StoreError::invalid(format!(
            "{what} {value:?} must be at most 255 characters without '/' or control characters"
        )));
    }
    Ok(value)
}

fn versioned<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Result<Versioned<T>> {
    Ok(Versioned {
        value: decode(&kv.key, &kv.value)?,
        revision: kv.mod_revision,
    })
}

fn topic_what(task_id: &str, topic: &str) -> String {
    format!("topic {topic} of task {task_id}")
}

fn task_what(task_id: &str) -> String {
    format!("task {task_id}")
}

/// Retries of transactions that failed only because of a lock key moving underneath.
const LOCK_RETRIES: usize = 5;
/// Page size when reading all stages.
const SNAPSHOT_PAGE: usize = 500;
/// Attempts to read a snapshot with every page at the same revision.
const SNAPSHOT_ATTEMPTS: usize = 3;

impl<B: KvBackend> KvMigrationStore<B> {
    async fn read_lock(&self, target: &str) -> Result<Option<(String, i64)>> {
        let key = keys::target_lock(target);
        match self.kv.get(&key).await? {
            Some(kv) => {
                let lock: TargetLock = decode(&key, &kv.value)?;
                Ok(Some((lock.task_id, kv.mod_revision)))
            }
            None => Ok(None),
        }
    }

    async fn revision_of(&self, key: &str) -> Result<i64> {
        Ok(self.kv.get(key).await?.map_or(0, |kv| kv.mod_revision))
    }

    /// Reads the task at `expected_revision` for a replace; checks immutable fields.
    async fn prepare_task_write(
        &self,
        id: &str,
        expected_revision: i64,
        task: &mut MigrationTask,
    ) -> Result<String> {
        segment("task id", id)?;
        if task.id != id {
            return Err(StoreError::invalid(format!(
                "task id cannot change ({id} -> {})",
                task.id
            )));
        }
        let key = keys::task(id);
        let current: Versioned<MigrationTask> = match self.kv.get(&key).await? {
            Some(kv) => versioned(&kv)?,
            None => return Err(StoreError::not_found("task", id)),
        };
        if current.revision != expected_revision {
            return Err(StoreError::Conflict {
                what: task_what(id),
                key,
                expected: expected_revision,
                actual: current.revision,
            });
        }
        if current.value.target_cluster != task.target_cluster {
            return Err(StoreError::invalid(format!(
                "the target cluster of task {id} cannot change ({} -> {}); create a new task instead",
                current.value.target_cluster, task.target_cluster
            )));
        }
        task.created_at_ms = current.value.created_at_ms;
        task.updated_at_ms = now_ms();
        Ok(key)
    }

    async fn task_conflict(&self, id: &str, expected: i64) -> StoreError {
        let key = keys::task(id);
        let actual = self.revision_of(&key).await.unwrap_or(-1);
        StoreError::Conflict {
            what: task_what(id),
            key,
            expected,
            actual,
        }
    }

    async fn read_page_of_tasks(
        &self,
        page: &PageRequest,
    ) -> Result<Page<Versioned<MigrationTask>>> {
        let start_after = page.page_token.as_ref().map(|t| keys::task(t));
        let range = self
            .kv
            .range(keys::TASKS, start_after, page.limit())
            .await?;
        let items = range
            .kvs
            .iter()
            .map(versioned)
            .collect::<Result<Vec<Versioned<MigrationTask>>>>()?;
        let next_page_token = if range.more {
            items.last().map(|t| t.value.id.clone())
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }
}

/// Turns a key under `task-topics/` into (task id, topic).
fn split_topic_key(key: &str) -> Result<(String, String)> {
    key.strip_prefix(keys::TOPICS)
        .and_then(|rest| rest.split_once('/'))
        .map(|(task, topic)| (task.to_string(), topic.to_string()))
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_string(),
            reason: "not a topic key (task-topics/<task>/<topic>)".into(),
        })
}

fn stage_event(key: &str, value: Option<&[u8]>, revision: i64) -> Result<StageEvent> {
    let (task_id, topic) = split_topic_key(key)?;
    let stage = match value {
        Some(bytes) => Some(decode::<TopicState>(key, bytes)?.stage),
        None => None,
    };
    Ok(StageEvent {
        task_id,
        topic,
        stage,
        revision,
    })
}

#[async_trait]
impl<B: KvBackend> MigrationStore for KvMigrationStore<B> {
    async fn create_task(&self, mut task: MigrationTask) -> Result<Versioned<MigrationTask>> {
        segment("task id", &task.id)?;
        segment("target cluster", &task.target_cluster)?;
        let now = now_ms();
        if task.created_at_ms == 0 {
            task.created_at_ms = now;
        }
        task.updated_at_ms = now;
        let task_key = keys::task(&task.id);
        let lock_key = keys::target_lock(&task.target_cluster);
        let txn = Txn {
            compares: vec![
                Compare::Absent(task_key.clone()),
                Compare::Absent(lock_key.clone()),
            ],
            success: vec![
                Op::put(task_key.clone(), encode(&task)),
                Op::put(
                    lock_key.clone(),
                    encode(&TargetLock {
                        task_id: task.id.clone(),
                    }),
                ),
            ],
            failure: vec![],
        };
        for _ in 0..LOCK_RETRIES {
            let outcome = self.kv.txn(txn.clone()).await?;
            if outcome.succeeded {
                tracing::info!(task = %task.id, target = %task.target_cluster, revision = outcome.revision, "task created");
                return Ok(Versioned {
                    value: task,
                    revision: outcome.revision,
                });
            }
            if self.kv.get(&task_key).await?.is_some() {
                return Err(StoreError::AlreadyExists {
                    kind: "task",
                    id: task.id,
                });
            }
            if let Some((holder, _)) = self.read_lock(&task.target_cluster).await? {
                return Err(StoreError::TargetLocked {
                    target: task.target_cluster,
                    holder,
                });
            }
            // The lock was released between the attempt and the re-read: try again.
        }
        Err(StoreError::Conflict {
            what: format!("lock of target cluster {}", task.target_cluster),
            key: lock_key,
            expected: 0,
            actual: -1,
        })
    }

    async fn get_task(&self, id: &str) -> Result<Versioned<MigrationTask>> {
        segment("task id", id)?;
        match self.kv.get(&keys::task(id)).await? {
            Some(kv) => versioned(&kv),
            None => Err(StoreError::not_found("task", id)),
        }
    }

    async fn list_tasks(&self, page: PageRequest) -> Result<Page<Versioned<MigrationTask>>> {
        self.read_page_of_tasks(&page).await
    }

    async fn update_task(
        &self,
        mut task: MigrationTask,
        expected_revision: i64,
    ) -> Result<Versioned<MigrationTask>> {
        let id = task.id.clone();
        let key = self
            .prepare_task_write(&id, expected_revision, &mut task)
            .await?;
        let outcome = self
            .kv
            .txn(Txn {
                compares: vec![Compare::ModRevision(key.clone(), expected_revision)],
                success: vec![Op::put(key, encode(&task))],
                failure: vec![],
            })
            .await?;
        if !outcome.succeeded {
            return Err(self.task_conflict(&id, expected_revision).await);
        }
        Ok(Versioned {
            value: task,
            revision: outcome.revision,
        })
    }

    async fn finish_task(
        &self,
        id: &str,
        expected_revision: i64,
        mut task: MigrationTask,
    ) -> Result<Versioned<MigrationTask>> {
        let key = self
            .prepare_task_write(id, expected_revision, &mut task)
            .await?;
        let lock_key = keys::target_lock(&task.target_cluster);
        for _ in 0..LOCK_RETRIES {
            let mut compares = vec![Compare::ModRevision(key.clone(), expected_revision)];
            let mut success = vec![Op::put(key.clone(), encode(&task))];
            match self.read_lock(&task.target_cluster).await? {
                Some((holder, lock_revision)) if holder == id => {
                    compares.push(Compare::ModRevision(lock_key.clone(), lock_revision));
                    success.push(Op::delete(lock_key.clone()));
                }
                Some((holder, lock_revision)) => {
                    tracing::warn!(task = %id, %holder, "target lock names another task; leaving it");
                    compares.push(Compare::ModRevision(lock_key.clone(), lock_revision));
                }
                None => compares.push(Compare::Absent(lock_key.clone())),
            }
            let outcome = self
                .kv
                .txn(Txn {
                    compares,
                    success,
                    failure: vec![],
                })
                .await?;
            if outcome.succeeded {
                tracing::info!(task = %id, target = %task.target_cluster, revision = outcome.revision, "task finished, target released");
                return Ok(Versioned {
                    value: task,
                    revision: outcome.revision,
                });
            }
            if self.revision_of(&key).await? != expected_revision {
                return Err(self.task_conflict(id, expected_revision).await);
            }
            // Only the lock moved: re-read it and try again.
        }
        Err(StoreError::Conflict {
            what: format!("lock of target cluster {}", task.target_cluster),
            key: lock_key,
            expected: 0,
            actual: -1,
        })
    }

    async fn target_holder(&self, target: &str) -> Result<Option<String>> {
        segment("target cluster", target)?;
        Ok(self.read_lock(target).await?.map(|(holder, _)| holder))
    }

    async fn add_topics(&self, task_id: &str, topics: Vec<TopicState>) -> Result<AddTopicsOutcome> {
        self.get_task(task_id).await?;
        let now = now_ms();
        let mut seen = std::collections::HashSet::new();
        let mut wanted = Vec::with_capacity(topics.len());
        for mut t in topics {
            segment("topic", &t.topic)?;
            if !seen.insert(t.topic.clone()) {
                continue;
            }
            t.task_id = task_id.to_string();
            t.updated_at_ms = now;
            wanted.push(t);
        }
        let mut outcome = AddTopicsOutcome::default();
        for mut batch in chunked(wanted) {
            while !batch.is_empty() {
                let txn = Txn {
                    compares: batch
                        .iter()
                        .map(|t| Compare::Absent(keys::topic(task_id, &t.topic)))
                        .collect(),
                    success: batch
                        .iter()
                        .map(|t| Op::put(keys::topic(task_id, &t.topic), encode(t)))
                        .collect(),
                    failure: vec![],
                };
                let result = self.kv.txn(txn).await?;
                if result.succeeded {
                    outcome.added.extend(batch.drain(..).map(|value| Versioned {
                        value,
                        revision: result.revision,
                    }));
                    break;
                }
                // Some already exist: report those, retry the rest.
                let mut remaining = Vec::with_capacity(batch.len());
                for t in batch {
                    match self.kv.get(&keys::topic(task_id, &t.topic)).await? {
                        Some(kv) => outcome.already_present.push(versioned(&kv)?),
                        None => remaining.push(t),
                    }
                }
                batch = remaining;
            }
        }
        tracing::info!(
            task = %task_id,
            added = outcome.added.len(),
            already_present = outcome.already_present.len(),
            "topics added"
        );
        Ok(outcome)
    }

    async fn get_topic(&self, task_id: &str, topic: &str) -> Result<Versioned<TopicState>> {
        segment("task id", task_id)?;
        segment("topic", topic)?;
        match self.kv.get(&keys::topic(task_id, topic)).await? {
            Some(kv) => versioned(&kv),
            None => Err(StoreError::not_found(
                "topic",
                format!("{topic} of task {task_id}"),
            )),
        }
    }

    async fn list_topics(
        &self,
        task_id: &str,
        page: PageRequest,
    ) -> Result<Page<Versioned<TopicState>>> {
        segment("task id", task_id)?;
        let start_after = page.page_token.as_ref().map(|t| keys::topic(task_id, t));
        let range = self
            .kv
            .range(&keys::topics_of(task_id), start_after, page.limit())
            .await?;
        let items = range
            .kvs
            .iter()
            .map(versioned)
            .collect::<Result<Vec<Versioned<TopicState>>>>()?;
        let next_page_token = if range.more {
            items.last().map(|t| t.value.topic.clone())
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn remove_topic(&self, task_id: &str, topic: &str, expected_revision: i64) -> Result<()> {
        let current = self.get_topic(task_id, topic).await?;
        let key = keys::topic(task_id, topic);
        if current.revision != expected_revision {
            return Err(StoreError::Conflict {
                what: topic_what(task_id, topic),
                key,
                expected: expected_revision,
                actual: current.revision,
            });
        }
        if current.value.stage != Stage::Initial {
            return Err(StoreError::FailedPrecondition {
                reason: format!(
                    "only INITIAL topics can be removed from a task; topic {topic} of task {task_id} is at {}: roll it back to INITIAL first",
                    current.value.stage
                ),
            });
        }
        let outcome = self
            .kv
            .txn(Txn {
                compares: vec![Compare::ModRevision(key.clone(), expected_revision)],
                success: vec![Op::delete(key.clone())],
                failure: vec![],
            })
            .await?;
        if !outcome.succeeded {
            return Err(StoreError::Conflict {
                what: topic_what(task_id, topic),
                expected: expected_revision,
                actual: self.revision_of(&key).await.unwrap_or(-1),
                key,
            });
        }
        tracing::info!(task = %task_id, %topic, "topic removed from task");
        Ok(())
    }

    async fn change_stage(&self, change: StageChange) -> Result<Versioned<TopicState>> {
        let StageChange {
            task_id,
            topic,
            expected_revision,
            to,
            actor,
            forced,
            reason,
            task_revision,
        } = change;
        let current = self.get_topic(&task_id, &topic).await?;
        let topic_key = keys::topic(&task_id, &topic);
        if current.revision != expected_revision {
            return Err(StoreError::Conflict {
                what: topic_what(&task_id, &topic),
                key: topic_key,
                expected: expected_revision,
                actual: current.revision,
            });
        }
        let from = current.value.stage;
        from.transition_to(to)
            .map_err(|source| StoreError::InvalidTransition {
                task_id: task_id.clone(),
                topic: topic.clone(),
                source: Box::new(source),
            })?;
        let now = now_ms();
        let state = TopicState {
            stage: to,
            updated_at_ms: now,
            updated_by: actor.clone(),
            // Readiness was assessed for the old stage; the health checker re-publishes it.
            readiness: None,
            ..current.value
        };
        let audit = AuditRecord {
            task_id: task_id.clone(),
            topic: topic.clone(),
            from,
            to,
            actor,
            forced,
            reason,
            at_ms: now,
            revision: 0,
        };
        let task_key = keys::task(&task_id);
        let mut compares = vec![Compare::ModRevision(topic_key.clone(), expected_revision)];
        if let Some(rev) = task_revision {
            compares.push(Compare::ModRevision(task_key.clone(), rev));
        }
        let outcome = self
            .kv
            .txn(Txn {
                compares,
                success: vec![
                    Op::put(topic_key.clone(), encode(&state)),
                    Op::put(
                        keys::audit(&task_id, expected_revision, &topic),
                        encode(&audit),
                    ),
                ],
                failure: vec![],
            })
            .await?;
        if outcome.succeeded {
            tracing::info!(
                task = %task_id, %topic, %from, %to, forced,
                actor = %state.updated_by, revision = outcome.revision,
                "stage changed"
            );
            return Ok(Versioned {
                value: state,
                revision: outcome.revision,
            });
        }
        let actual = self.revision_of(&topic_key).await?;
        if actual != expected_revision {
            return Err(StoreError::Conflict {
                what: topic_what(&task_id, &topic),
                key: topic_key,
                expected: expected_revision,
                actual,
            });
        }
        let expected_task = task_revision.unwrap_or_default();
        Err(StoreError::Conflict {
            what: format!(
                "{} (paused, resumed or otherwise updated)",
                task_what(&task_id)
            ),
            actual: self.revision_of(&task_key).await?,
            key: task_key,
            expected: expected_task,
        })
    }

    async fn list_audit(&self, task_id: &str, page: PageRequest) -> Result<Page<AuditRecord>> {
        segment("task id", task_id)?;
        let after = match &page.page_token {
            Some(token) => token.parse::<i64>().map_err(|_| {
                StoreError::invalid(format!("page token {token:?} is not an audit page token"))
            })?,
            None => 0,
        };
        let range = self
            .kv
            .range_by_create_revision(&keys::audit_of(task_id), after, page.limit())
            .await?;
        let items = range
            .kvs
            .iter()
            .map(|kv| {
                let mut record: AuditRecord = decode(&kv.key, &kv.value)?;
                record.revision = kv.create_revision;
                Ok(record)
            })
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if range.more {
            items.last().map(|r| r.revision.to_string())
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn stage_snapshot(&self) -> Result<(Vec<StageEvent>, i64)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut events = Vec::new();
            let mut start: Option<i64> = None;
            let mut consistent = true;
            let mut after = None;
            loop {
                let page = self.kv.range(keys::TOPICS, after, SNAPSHOT_PAGE).await?;
                let first = *start.get_or_insert(page.revision);
                consistent &= page.revision == first;
                for kv in &page.kvs {
                    events.push(stage_event(&kv.key, Some(&kv.value), kv.mod_revision)?);
                }
                if !page.more {
                    break;
                }
                after = page.kvs.last().map(|kv| kv.key.clone());
            }
            let revision = start.unwrap_or_default();
            // Pages read at different revisions are still safe to watch after the first
            // page's revision (events carry revisions); retry a few times for an exact cut.
            if consistent || attempt >= SNAPSHOT_ATTEMPTS {
                return Ok((events, revision));
            }
        }
    }

    async fn watch_stages(
        &self,
        from_revision: i64,
    ) -> Result<BoxStream<'static, Result<StageEvent>>> {
        let stream = self
            .kv
            .watch_prefix(keys::TOPICS, Some(from_revision))
            .await?;
        Ok(stream
            .map(|item| {
                let ev = item?;
                match ev.kind {
                    WatchEventKind::Put => stage_event(&ev.key, Some(&ev.value), ev.mod_revision),
                    WatchEventKind::Delete => stage_event(&ev.key, None, ev.mod_revision),
                }
            })
            .boxed())
    }

    async fn register_member(
        &self,
        kind: &str,
        id: &str,
        value: serde_json::Value,
        ttl_secs: i64,
    ) -> Result<MemberLease> {
        segment("member kind", kind)?;
        segment("member id", id)?;
        if keys::RESERVED_KINDS.contains(&kind) {
            return Err(StoreError::invalid(format!(
                "member kind {kind:?} is reserved for the store's own keys"
            )));
        }
        if ttl_secs <= 0 {
            return Err(StoreError::invalid(format!(
                "member lease TTL must be positive, got {ttl_secs}"
            )));
        }
        let member = RegisteredMember {
            kind: kind.to_string(),
            id: id.to_string(),
            value,
        };
        let kv: Arc<dyn KvBackend> = self.kv.clone();
        let key = keys::member(kind, id);
        let bytes = encode(&member);
        let lease = put_leased(kv.as_ref(), &key, &bytes, ttl_secs).await?;
        tracing::info!(%kind, %id, lease, ttl_secs, "member registered");
        Ok(MemberLease::start(&kv, key, bytes, ttl_secs, lease))
    }

    async fn list_members(&self, kind: &str) -> Result<Vec<RegisteredMember>> {
        segment("member kind", kind)?;
        let range = self.kv.range(&keys::members_of(kind), None, 0).await?;
        range
            .kvs
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    async fn health(&self) -> Result<()> {
        self.kv.current_revision().await.map(|_| ())
    }
}

/// Grants a lease and puts `key` bound to it.
async fn put_leased(kv: &dyn KvBackend, key: &str, value: &[u8], ttl_secs: i64) -> Result<i64> {
    let lease = kv.grant_lease(ttl_secs).await?;
    kv.txn(Txn {
        compares: vec![],
        success: vec![Op::Put {
            key: key.to_string(),
            value: value.to_vec(),
            lease: Some(lease),
        }],
        failure: vec![],
    })
    .await?;
    Ok(lease)
}

/// A registered member's lease, refreshed in the background every TTL/3.
///
/// If the lease is lost anyway (the store was unreachable for longer than the TTL), the
/// member is registered again under a new lease. [`MemberLease::revoke`] removes the member
/// at once; dropping the handle revokes it in the background (best effort). The handle keeps
/// its store open while it lives.
pub struct MemberLease {
    key: String,
    lease: Arc<AtomicI64>,
    kv: Arc<dyn KvBackend>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MemberLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberLease")
            .field("key", &self.key)
            .field("lease", &self.lease_id())
            .finish()
    }
}

impl MemberLease {
    fn start(
        kv: &Arc<dyn KvBackend>,
        key: String,
        value: Vec<u8>,
        ttl_secs: i64,
        lease: i64,
    ) -> Self {
        let lease = Arc::new(AtomicI64::new(lease));
        let keepalive = tokio::spawn(keep_member_alive(
            kv.clone(),
            key.clone(),
            value,
            ttl_secs,
            lease.clone(),
        ));
        MemberLease {
            key,
            lease,
            kv: kv.clone(),
            keepalive: Some(keepalive),
        }
    }

    /// The member's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current lease id.
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// Stops refreshing and revokes the lease: the member disappears now.
    pub async fn revoke(mut self) -> Result<()> {
        self.stop_keepalive().await;
        let result = self.kv.revoke_lease(self.lease_id()).await;
        if result.is_ok() {
            tracing::info!(key = %self.key, "member lease revoked");
        }
        result
    }

    /// Stops refreshing without revoking: the member disappears when the TTL runs out, as if
    /// this process had crashed. For tests and hand-overs.
    /// Returns once the refresh task has stopped (it no longer holds the store).
    pub async fn abandon(mut self) {
        self.stop_keepalive().await;
    }

    async fn stop_keepalive(&mut self) {
        if let Some(task) = self.keepalive.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MemberLease {
    fn drop(&mut self) {
        let Some(task) = self.keepalive.take() else {
            return;
        };
        task.abort();
        let (kv, lease, key) = (self.kv.clone(), self.lease_id(), self.key.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = kv.revoke_lease(lease).await {
                    tracing::warn!(%key, error = %e, "could not revoke member lease on drop; it expires with its TTL");
                }
            });
        }
    }
}

async fn keep_member_alive(
    kv: Arc<dyn KvBackend>,
    key: String,
    value: Vec<u8>,
    ttl_secs: i64,
    lease: Arc<AtomicI64>,
) {
    let interval = Duration::from_millis((ttl_secs.max(1) as u64 * 1000 / 3).max(100));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match kv.keep_alive(lease.load(Ordering::SeqCst)).await {
            Ok(()) => {}
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(%key, "member lease lost, registering again");
                match put_leased(kv.as_ref(), &key, &value, ttl_secs).await {
                    Ok(id) => lease.store(id, Ordering::SeqCst),
                    Err(e) => tracing::warn!(%key, error = %e, "could not register member again"),
                }
            }
            Err(e) => tracing::warn!(%key, error = %e, "could not refresh member lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_keeps_tasks_apart_from_topics_and_audit() {
        assert_eq!(keys::task("t1"), "tasks/t1");
        assert_eq!(keys::topic("t1", "A"), "task-topics/t1/A");
        assert_eq!(
            keys::audit("t1", 7, "A"),
            "task-audit/t1/00000000000000000007-A"
        );
        assert_eq!(keys::target_lock("c"), "targets/c/lock");
        assert_eq!(keys::member("routers", "r1"), "routers/r1");
        assert!(!keys::topic("t1", "A").starts_with(keys::TASKS));
        assert!(!keys::audit("t1", 1, "A").starts_with(keys::TASKS));
    }

    #[test]
    fn segments_reject_slashes_and_empties() {
        assert!(segment("topic", "A%B|c-d_e").is_ok());
        assert!(segment("topic", "").is_err());
        assert!(segment("topic", "a/b").is_err());
        assert!(segment("topic", "a\nb").is_err());
    }

    #[test]
    fn topic_keys_split_back() {
        assert_eq!(
            split_topic_key("task-topics/t1/A").unwrap(),
            ("t1".to_string(), "A".to_string())
        );
        assert!(split_topic_key("tasks/t1").is_err());
    }
}
