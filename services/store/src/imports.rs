//! Import tasks and their per-item results, target-cluster quotas, and the claim a runner
//! holds while it works on a task.
//!
//! # Key layout (relative to the backend prefix)
//!
//! ```text
//! imports/<id>                      ImportTask: spec, status, progress counts
//! import-items/<id>/<seq:08>        ImportItem: what to create, and how it ended
//! import-active/<id>                {}: the task has items left to run (what the resume sweep reads)
//! import-claims/<id>                {"token": ...}, lease-bound: the runner working on the task
//! targets/<cluster>/quota           TargetQuota of a target cluster
//! ```
//!
//! Items live under their own prefix so listing `imports/` returns tasks only; they are keyed
//! by position so a task's items list in task order and page by key.
//!
//! # Writing
//!
//! A task is created items first (transactions of at most [`MAX_OPS_PER_TXN`] operations:
//! etcd refuses bigger ones), then the task record with its active marker in one last
//! transaction: a task exists once its record does, so no reader sees half of one, and a
//! crash in between leaves only unreferenced items.
//!
//! While a task runs, every write is conditioned on the runner's claim (the claim key still
//! holding its token), so a runner that lost its claim — its lease expired while the store
//! was unreachable, and another runner took over — cannot overwrite the newer runner's
//! results. The claim is lease-bound: when a runner's process dies, the claim disappears with
//! the lease and the task is picked up again by the resume sweep of any replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{ItemKind, ItemResult, ProgressCounts, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::kv::{Compare, KvBackend, MAX_OPS_PER_TXN, Op, Txn, chunked_by};
use crate::migration::{KvMigrationStore, segment};
use crate::model::{Page, PageRequest, Versioned, decode, encode, now_ms};

/// Key names. See the module docs for the layout.
pub mod keys {
    /// Prefix of import task records.
    pub const IMPORTS: &str = "imports/";
    /// Prefix of import items.
    pub const ITEMS: &str = "import-items/";
    /// Prefix of the markers of tasks with work left.
    pub const ACTIVE: &str = "import-active/";
    /// Prefix of runner claims.
    pub const CLAIMS: &str = "import-claims/";

    pub fn import(id: &str) -> String {
        format!("{IMPORTS}{id}")
    }

    pub fn items_of(id: &str) -> String {
        format!("{ITEMS}{id}/")
    }

    pub fn item(id: &str, seq: u32) -> String {
        format!("{ITEMS}{id}/{seq:08}")
    }

    pub fn active(id: &str) -> String {
        format!("{ACTIVE}{id}")
    }

    pub fn claim(id: &str) -> String {
        format!("{CLAIMS}{id}")
    }

    pub fn quota(target_cluster: &str) -> String {
        format!("targets/{target_cluster}/quota")
    }
}

/// Kind of import task (PRODUCT.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImportTaskType {
    /// Names keep their source form; an item's namespace is the part before `%`, or `default`.
    ClusterMigration,
    /// Picked items are created inside one chosen namespace.
    IntoNamespace,
}

/// How items are created on the target's brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreateMode {
    /// Batch requests where the broker has them, one request per item otherwise.
    #[default]
    Auto,
    /// Batch requests (a broker without them still gets one per item).
    Batch,
    /// One request per item.
    OneByOne,
}

/// ACL credentials for the target, kept so a resumed task can still sign its requests.
/// Never returned by the API; `Debug` shows the access key only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// An import task: what to import where, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportTask {
    /// From [`new_import_id`]: sorts by creation time.
    pub id: String,
    pub task_type: ImportTaskType,
    /// The chosen namespace ([`ImportTaskType::IntoNamespace`] only).
    #[serde(default)]
    pub namespace: Option<String>,
    pub target_cluster: String,
    pub target_namesrv: String,
    #[serde(default)]
    pub target_credentials: Option<StoredCredentials>,
    pub create_mode: CreateMode,
    /// Where the items came from, for people ("export JSON a.json", "snapshot <id>").
    pub source: String,
    pub topic_limit: u64,
    pub group_limit: u64,
    pub topic_count: u64,
    pub group_count: u64,
    pub status: TaskStatus,
    pub progress: ProgressCounts,
    /// Runs so far: the first, retries and resumes after a restart.
    pub runs: u32,
    #[serde(default)]
    pub notices: Vec<String>,
    /// Why the task could not run at all (e.g. the target cluster is not on its NameServer).
    #[serde(default)]
    pub error: Option<String>,
    /// Unix milliseconds; set by the store on create when 0.
    pub created_at_ms: i64,
    /// Unix milliseconds; set by the store on every write.
    pub updated_at_ms: i64,
    /// Unix milliseconds when the last item ended; 0 while items are left.
    #[serde(default)]
    pub finished_at_ms: i64,
    /// Fields added by later features, kept verbatim.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// Why an item ended as it did, beyond its [`ItemResult`]: decides whether a retry can
/// change the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemCause {
    /// Over the per-task limit (fixed when the task was created).
    TaskLimit,
    /// Over the target cluster's quota (may fit after the quota is raised).
    TargetQuota,
    /// The name breaks a naming rule.
    NameRule,
    /// Another item of the task creates the same name on the target.
    Duplicate,
    /// Found on the target.
    Exists,
    /// Created by this task and read back.
    Created,
    /// The target refused it or could not be reached.
    TargetError,
}

impl ItemCause {
    /// A retry runs the item again: the target's answer or quota may differ now.
    pub fn is_retryable(self) -> bool {
        matches!(self, ItemCause::TargetError | ItemCause::TargetQuota)
    }
}

/// One topic or group of an import task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportItem {
    pub task_id: String,
    /// Position in the task: topics first, then groups, in source order.
    pub seq: u32,
    pub kind: ItemKind,
    /// Full name as created on the target.
    pub name: String,
    /// Name in the source.
    pub source_name: String,
    pub namespace: String,
    pub result: ItemResult,
    #[serde(default)]
    pub cause: Option<ItemCause>,
    /// Why it ended so: the rule broken, the quota hit or the target's error.
    #[serde(default)]
    pub reason: Option<String>,
    /// Changes made on the way (queue counts clamped, protocol).
    #[serde(default)]
    pub notices: Vec<String>,
    /// Topics: queue counts to create.
    #[serde(default)]
    pub read_queue_nums: u32,
    #[serde(default)]
    pub write_queue_nums: u32,
    /// The broker config to create (Java `TopicConfig` / `SubscriptionGroupConfig` JSON).
    pub spec: serde_json::Value,
    /// A create request was sent and its outcome is not recorded yet.
    #[serde(default)]
    pub in_flight: bool,
    /// Create requests sent over every run. An item found on the target with `attempts > 0`
    /// was created by this task (SUCCESS); with 0 it was there before (ALREADY_EXISTS_SKIPPED).
    #[serde(default)]
    pub attempts: u32,
    /// Unix milliseconds of the last change.
    #[serde(default)]
    pub updated_at_ms: i64,
}

/// The most user topics and groups a target cluster may hold; `None` = no quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetQuota {
    pub target_cluster: String,
    pub topics: Option<u64>,
    pub groups: Option<u64>,
    /// Unix milliseconds; set by the store.
    #[serde(default)]
    pub updated_at_ms: i64,
}

impl TargetQuota {
    /// The quota for `kind`, if any.
    pub fn for_kind(&self, kind: ItemKind) -> Option<u64> {
        match kind {
            ItemKind::Topic => self.topics,
            ItemKind::Group => self.groups,
            ItemKind::Role => None,
        }
    }
}

/// Which items [`ImportStore::list_import_items`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    /// Only these results; empty = all.
    pub results: Vec<ItemResult>,
    pub kind: Option<ItemKind>,
    /// Only names (target or source) containing this, ignoring ASCII case.
    pub name_contains: Option<String>,
}

impl ItemFilter {
    /// True when `item` passes.
    pub fn matches(&self, item: &ImportItem) -> bool {
        if !self.results.is_empty() && !self.results.contains(&item.result) {
            return false;
        }
        if self.kind.is_some_and(|k| k != item.kind) {
            return false;
        }
        match &self.name_contains {
            Some(needle) if !needle.is_empty() => {
                let needle = needle.to_ascii_lowercase();
                item.name.to_ascii_lowercase().contains(&needle)
                    || item.source_name.to_ascii_lowercase().contains(&needle)
            }
            _ => true,
        }
    }
}

/// A fresh import id: `imp-<ms:013>-<8 hex>`, sortable by creation time.
pub fn new_import_id(created_at_ms: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(created_at_ms);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("imp-{:013}-{:08x}", created_at_ms.max(0), h.finish() as u32)
}

/// What one [`ImportStore::write_import`] call writes, conditioned on a claim.
#[derive(Debug, Default)]
pub struct ImportWrite<'a> {
    /// Items to put (any number; split into transactions).
    pub items: &'a [ImportItem],
    /// The task record, put in the last transaction.
    pub task: Option<&'a ImportTask>,
    /// Put (`Some(true)`) or delete (`Some(false)`) the active marker with the task.
    pub active: Option<bool>,
}

/// The right to run one import task, held under a lease refreshed in the background.
///
/// Every write of the runner is conditioned on the claim; [`ImportClaim::is_lost`] tells
/// that the lease expired (the store was unreachable for longer than its TTL), after which
/// writes fail and the runner must stop. Dropping the handle releases the claim (best effort).
pub struct ImportClaim {
    task_id: String,
    token: String,
    lease: i64,
    lost: Arc<AtomicBool>,
    kv: Arc<dyn KvBackend>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ImportClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportClaim")
            .field("task_id", &self.task_id)
            .field("lease", &self.lease)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl ImportClaim {
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// True once the lease is known to have expired.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Releases the claim now: another runner may take the task at once.
    pub async fn release(mut self) -> Result<()> {
        self.stop_keepalive().await;
        self.kv.revoke_lease(self.lease).await
    }

    /// Stops refreshing without releasing: the claim ends with its TTL, as if this process
    /// had crashed or hung. The handle stays, and its writes fail once another runner has
    /// claimed the task. For tests.
    pub async fn abandon(&mut self) {
        self.stop_keepalive().await;
    }

    async fn stop_keepalive(&mut self) {
        if let Some(task) = self.keepalive.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn guard(&self) -> Compare {
        Compare::ValueEquals(keys::claim(&self.task_id), claim_value(&self.token))
    }
}

impl Drop for ImportClaim {
    fn drop(&mut self) {
        let Some(task) = self.keepalive.take() else {
            return;
        };
        task.abort();
        let (kv, lease, id) = (self.kv.clone(), self.lease, self.task_id.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = kv.revoke_lease(lease).await {
                    tracing::warn!(task = %id, error = %e, "could not release import claim; it ends with its TTL");
                }
            });
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ClaimValue {
    token: String,
}

fn claim_value(token: &str) -> Vec<u8> {
    encode(&ClaimValue {
        token: token.to_string(),
    })
}

async fn keep_claim(kv: Arc<dyn KvBackend>, lease: i64, ttl_secs: i64, lost: Arc<AtomicBool>) {
    let every = Duration::from_millis((ttl_secs.max(1) as u64 * 1000 / 3).max(100));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match kv.keep_alive(lease).await {
            Ok(()) => {}
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(lease, "import claim lease expired; the runner must stop");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(lease, error = %e, "could not refresh import claim"),
        }
    }
}

/// Import tasks, items, claims and target quotas in domain terms. Object safe: services hold
/// an `Arc<dyn ImportStore>`.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Stores a new task with its items (see the module docs for the order).
    /// [`StoreError::AlreadyExists`] when the id is taken.
    async fn create_import(
        &self,
        task: ImportTask,
        items: Vec<ImportItem>,
    ) -> Result<Versioned<ImportTask>>;

    /// Reads a task.
    async fn get_import(&self, id: &str) -> Result<Versioned<ImportTask>>;

    /// Tasks newest first, of one target cluster or (None) all; `page_token` is the last id
    /// of the previous page.
    async fn list_imports(
        &self,
        target_cluster: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<ImportTask>>;

    /// A task's items in task order, filtered; `page_token` is the last seq of the previous
    /// page.
    async fn list_import_items(
        &self,
        id: &str,
        filter: &ItemFilter,
        page: PageRequest,
    ) -> Result<Page<ImportItem>>;

    /// Every item of a task, in task order.
    async fn import_items(&self, id: &str) -> Result<Vec<ImportItem>>;

    /// Takes the task's claim with a lease of `ttl_secs`, or `None` when another runner
    /// holds it.
    async fn claim_import(&self, id: &str, ttl_secs: i64) -> Result<Option<ImportClaim>>;

    /// Writes items (in transactions of at most 100 operations), then the task and active
    /// marker, each transaction conditioned on `claim`. [`StoreError::FailedPrecondition`]
    /// when the claim is gone; transactions before that one stay applied.
    async fn write_import(&self, claim: &ImportClaim, write: ImportWrite<'_>) -> Result<()>;

    /// Ids of tasks with work left (active markers), oldest first.
    async fn active_imports(&self) -> Result<Vec<String>>;

    /// True when some runner holds the task's claim.
    async fn import_claimed(&self, id: &str) -> Result<bool>;

    /// Replaces a target cluster's quota.
    async fn set_target_quota(&self, quota: TargetQuota) -> Result<TargetQuota>;

    /// A target cluster's quota, `None` when never set.
    async fn target_quota(&self, target_cluster: &str) -> Result<Option<TargetQuota>>;
}

/// Items per transaction when the last one may also carry the task and its active marker.
const ITEMS_PER_TXN: usize = MAX_OPS_PER_TXN - 2;
/// Page size of range reads.
const READ_PAGE: usize = 500;

impl<B: KvBackend> KvMigrationStore<B> {
    /// Every key-value under `prefix`, in key order, page by page.
    async fn read_all(&self, prefix: &str) -> Result<Vec<crate::kv::KeyValue>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.backend().range(prefix, after, READ_PAGE).await?;
            let more = page.more;
            after = page.kvs.last().map(|kv| kv.key.clone());
            out.extend(page.kvs);
            if !more || after.is_none() {
                return Ok(out);
            }
        }
    }

    async fn txn_with_claim(&self, claim: &ImportClaim, success: Vec<Op>) -> Result<()> {
        let outcome = self
            .backend()
            .txn(Txn {
                compares: vec![claim.guard()],
                success,
                failure: vec![],
            })
            .await?;
        if outcome.succeeded {
            Ok(())
        } else {
            claim.lost.store(true, Ordering::SeqCst);
            Err(StoreError::FailedPrecondition {
                reason: format!(
                    "import task {} is no longer claimed by this runner (its lease expired); another runner continues it",
                    claim.task_id
                ),
            })
        }
    }
}

fn check_item(task_id: &str, item: &ImportItem) -> Result<()> {
    if item.task_id != task_id {
        return Err(StoreError::invalid(format!(
            "item {} belongs to task {}, not {task_id}",
            item.seq, item.task_id
        )));
    }
    Ok(())
}

#[async_trait]
impl<B: KvBackend> ImportStore for KvMigrationStore<B> {
    async fn create_import(
        &self,
        mut task: ImportTask,
        items: Vec<ImportItem>,
    ) -> Result<Versioned<ImportTask>> {
        segment("import id", &task.id)?;
        segment("target cluster", &task.target_cluster)?;
        let id = task.id.clone();
        let key = keys::import(&id);
        if self.backend().get(&key).await?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "import task",
                id,
            });
        }
        let now = now_ms();
        if task.created_at_ms == 0 {
            task.created_at_ms = now;
        }
        task.updated_at_ms = now;
        for item in &items {
            check_item(&id, item)?;
        }
        let count = items.len();
        for batch in chunked_by(items, MAX_OPS_PER_TXN) {
            let ops = batch
                .iter()
                .map(|item| {
                    let mut item = item.clone();
                    item.updated_at_ms = now;
                    Op::put(keys::item(&id, item.seq), encode(&item))
                })
                .collect();
            self.backend()
                .txn(Txn {
                    compares: vec![Compare::Absent(key.clone())],
                    success: ops,
                    failure: vec![],
                })
                .await?;
        }
        let outcome = self
            .backend()
            .txn(Txn {
                compares: vec![Compare::Absent(key.clone())],
                success: vec![
                    Op::put(key.clone(), encode(&task)),
                    Op::put(keys::active(&id), encode(&serde_json::json!({}))),
                ],
                failure: vec![],
            })
            .await?;
        if !outcome.succeeded {
            return Err(StoreError::AlreadyExists {
                kind: "import task",
                id,
            });
        }
        tracing::info!(task = %id, items = count, target = %task.target_cluster, "import task stored");
        Ok(Versioned {
            value: task,
            revision: outcome.revision,
        })
    }

    async fn get_import(&self, id: &str) -> Result<Versioned<ImportTask>> {
        segment("import id", id)?;
        let key = keys::import(id);
        match self.backend().get(&key).await? {
            Some(kv) => Ok(Versioned {
                value: decode(&key, &kv.value)?,
                revision: kv.mod_revision,
            }),
            None => Err(StoreError::NotFound {
                kind: "import task",
                id: id.to_string(),
            }),
        }
    }

    async fn list_imports(
        &self,
        target_cluster: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<ImportTask>> {
        let mut tasks = self
            .read_all(keys::IMPORTS)
            .await?
            .iter()
            .map(|kv| decode::<ImportTask>(&kv.key, &kv.value))
            .collect::<Result<Vec<_>>>()?;
        if let Some(target) = target_cluster.filter(|t| !t.is_empty()) {
            tasks.retain(|t| t.target_cluster == target);
        }
        tasks.sort_by(|a, b| b.id.cmp(&a.id));
        if let Some(token) = &page.page_token {
            tasks.retain(|t| t.id.as_str() < token.as_str());
        }
        let limit = page.limit();
        let more = tasks.len() > limit;
        tasks.truncate(limit);
        let next_page_token = if more {
            tasks.last().map(|t| t.id.clone())
        } else {
            None
        };
        Ok(Page {
            items: tasks,
            next_page_token,
        })
    }

    async fn list_import_items(
        &self,
        id: &str,
        filter: &ItemFilter,
        page: PageRequest,
    ) -> Result<Page<ImportItem>> {
        segment("import id", id)?;
        let mut after = match &page.page_token {
            Some(token) => {
                let seq: u32 = token.parse().map_err(|_| {
                    StoreError::invalid(format!("page token {token:?} is not an item page token"))
                })?;
                Some(keys::item(id, seq))
            }
            None => None,
        };
        let limit = page.limit();
        let mut items = Vec::new();
        let prefix = keys::items_of(id);
        // Scan until one match past the page is seen (so the token is only given when more
        // matches exist) or the items end; bounded by the task's item count.
        loop {
            let got = self
                .backend()
                .range(&prefix, after.clone(), READ_PAGE)
                .await?;
            for kv in &got.kvs {
                let item: ImportItem = decode(&kv.key, &kv.value)?;
                if !filter.matches(&item) {
                    continue;
                }
                if items.len() == limit {
                    let next = items.last().map(|i: &ImportItem| i.seq.to_string());
                    return Ok(Page {
                        items,
                        next_page_token: next,
                    });
                }
                items.push(item);
            }
            after = got.kvs.last().map(|kv| kv.key.clone());
            if !got.more || after.is_none() {
                return Ok(Page {
                    items,
                    next_page_token: None,
                });
            }
        }
    }

    async fn import_items(&self, id: &str) -> Result<Vec<ImportItem>> {
        segment("import id", id)?;
        self.read_all(&keys::items_of(id))
            .await?
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    async fn claim_import(&self, id: &str, ttl_secs: i64) -> Result<Option<ImportClaim>> {
        segment("import id", id)?;
        if ttl_secs <= 0 {
            return Err(StoreError::invalid(format!(
                "claim TTL must be positive, got {ttl_secs}"
            )));
        }
        let kv: Arc<dyn KvBackend> = self.backend().clone();
        let token = new_import_id(now_ms());
        let lease = kv.grant_lease(ttl_secs).await?;
        let key = keys::claim(id);
        let outcome = kv
            .txn(Txn {
                compares: vec![Compare::Absent(key.clone())],
                success: vec![Op::Put {
                    key,
                    value: claim_value(&token),
                    lease: Some(lease),
                }],
                failure: vec![],
            })
            .await;
        match outcome {
            Ok(o) if o.succeeded => {}
            other => {
                let _ = kv.revoke_lease(lease).await;
                other?;
                return Ok(None);
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let keepalive = tokio::spawn(keep_claim(kv.clone(), lease, ttl_secs, lost.clone()));
        tracing::debug!(task = %id, lease, "import task claimed");
        Ok(Some(ImportClaim {
            task_id: id.to_string(),
            token,
            lease,
            lost,
            kv,
            keepalive: Some(keepalive),
        }))
    }

    async fn write_import(&self, claim: &ImportClaim, write: ImportWrite<'_>) -> Result<()> {
        let id = claim.task_id.clone();
        let now = now_ms();
        for item in write.items {
            check_item(&id, item)?;
        }
        let mut ops: Vec<Op> = write
            .items
            .iter()
            .map(|item| {
                let mut item = item.clone();
                item.updated_at_ms = now;
                Op::put(keys::item(&id, item.seq), encode(&item))
            })
            .collect();
        let mut tail = Vec::new();
        if let Some(task) = write.task {
            if task.id != id {
                return Err(StoreError::invalid(format!(
                    "task {} written under the claim of task {id}",
                    task.id
                )));
            }
            let mut task = task.clone();
            task.updated_at_ms = now;
            tail.push(Op::put(keys::import(&id), encode(&task)));
        }
        match write.active {
            Some(true) => tail.push(Op::put(keys::active(&id), encode(&serde_json::json!({})))),
            Some(false) => tail.push(Op::delete(keys::active(&id))),
            None => {}
        }
        // The task and its marker ride in the last transaction with the last items.
        let mut last = ops.split_off(ops.len() - ops.len().min(ITEMS_PER_TXN));
        for batch in chunked_by(ops, MAX_OPS_PER_TXN) {
            self.txn_with_claim(claim, batch).await?;
        }
        last.extend(tail);
        if !last.is_empty() {
            self.txn_with_claim(claim, last).await?;
        }
        Ok(())
    }

    async fn active_imports(&self) -> Result<Vec<String>> {
        Ok(self
            .read_all(keys::ACTIVE)
            .await?
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(keys::ACTIVE).map(str::to_string))
            .collect())
    }

    async fn import_claimed(&self, id: &str) -> Result<bool> {
        segment("import id", id)?;
        Ok(self.backend().get(&keys::claim(id)).await?.is_some())
    }

    async fn set_target_quota(&self, mut quota: TargetQuota) -> Result<TargetQuota> {
        segment("target cluster", &quota.target_cluster)?;
        quota.updated_at_ms = now_ms();
        self.backend()
            .txn(Txn {
                compares: vec![],
                success: vec![Op::put(keys::quota(&quota.target_cluster), encode(&quota))],
                failure: vec![],
            })
            .await?;
        tracing::info!(target = %quota.target_cluster, topics = ?quota.topics, groups = ?quota.groups, "target quota set");
        Ok(quota)
    }

    async fn target_quota(&self, target_cluster: &str) -> Result<Option<TargetQuota>> {
        segment("target cluster", target_cluster)?;
        let key = keys::quota(target_cluster);
        match self.backend().get(&key).await? {
            Some(kv) => decode(&key, &kv.value).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        assert_eq!(keys::import("imp-1"), "imports/imp-1");
        assert_eq!(keys::item("imp-1", 7), "import-items/imp-1/00000007");
        assert_eq!(keys::quota("ClusterB"), "targets/ClusterB/quota");
        assert!(!keys::item("imp-1", 0).starts_with(keys::IMPORTS));
        assert!(keys::item("imp-1", 2) < keys::item("imp-1", 10));
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_import_id(1_000);
        let b = new_import_id(20_000);
        assert!(a < b, "{a} {b}");
        assert_ne!(new_import_id(5), new_import_id(5));
        assert!(a.starts_with("imp-0000000001000-"));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = StoredCredentials {
            access_key: "ak".into(),
            secret_key: "very-secret".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("ak") && !shown.contains("very-secret"),
            "{shown}"
        );
    }

    #[test]
    fn filter_matches_result_kind_and_name() {
        let item = ImportItem {
            task_id: "t".into(),
            seq: 0,
            kind: ItemKind::Topic,
            name: "ns%Orders".into(),
            source_name: "Orders".into(),
            namespace: "ns".into(),
            result: ItemResult::Failed,
            cause: Some(ItemCause::TargetError),
            reason: None,
            notices: vec![],
            read_queue_nums: 4,
            write_queue_nums: 4,
            spec: serde_json::json!({}),
            in_flight: false,
            attempts: 1,
            updated_at_ms: 0,
        };
        assert!(ItemFilter::default().matches(&item));
        let f = ItemFilter {
            results: vec![ItemResult::Failed, ItemResult::Success],
            kind: Some(ItemKind::Topic),
            name_contains: Some("ORD".into()),
        };
        assert!(f.matches(&item));
        assert!(
            !ItemFilter {
                kind: Some(ItemKind::Group),
                ..Default::default()
            }
            .matches(&item)
        );
        assert!(
            !ItemFilter {
                results: vec![ItemResult::Success],
                ..Default::default()
            }
            .matches(&item)
        );
        assert!(
            !ItemFilter {
                name_contains: Some("pay".into()),
                ..Default::default()
            }
            .matches(&item)
        );
    }
}
