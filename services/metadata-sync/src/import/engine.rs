//! Runs one claimed import task against its target cluster.
//!
//! 1. Connect: the target cluster's masters from its NameServers (106). If that fails,
//!    every remaining item ends FAILED with the reason and the task records it.
//! 2. Pre-check: what every master already has (21 / 201). An item on every master is
//!    ALREADY_EXISTS_SKIPPED — or SUCCESS if this task sent a create for it before (a run
//!    that died between creating and recording). Topics named like the target's brokers or
//!    clusters are INVALID_NAME; items that would take the target over its quota are
//!    QUOTA_EXCEEDED.
//! 3. Create in batches: mark the batch in flight in the store (so a restart knows creates
//!    may have happened), create on every master that lacks an item (batch requests, or one
//!    per item), read the tables back, and record each item from what the broker *has*, not
//!    from what it answered. Items a batch did not create are sent once more one by one, so
//!    each gets the broker's own error.
//! 4. A master that cannot be reached fails its batch's items with that error, and every
//!    later item with "not attempted" and the same reason; RetryImportTask runs only those.
//!
//! Store writes go in transactions of at most 100 operations (items, with the task record
//! and its progress counts in the last), all conditioned on the runner's claim.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_core::{ItemKind, ItemResult, ProgressCounts, TaskStatus, check_quota};
use ferry_store::imports::{CreateMode, ItemCause};
use ferry_store::{ImportClaim, ImportItem, ImportStore, ImportTask, ImportWrite};
use tracing::Instrument;

use super::target::{CreateError, Held, Master, Target, Timeouts};
use crate::error::{Result, SyncError};
use ferry_store::now_ms;

/// How the engine works; see [`super::ImportSettings`].
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// Items per broker batch, and per in-flight mark in the store.
    pub batch_items: usize,
    pub timeouts: Timeouts,
}

fn counts(items: &[ImportItem]) -> ProgressCounts {
    items.iter().map(|i| i.result).collect()
}

fn end(item: &mut ImportItem, result: ItemResult, cause: ItemCause, reason: Option<String>) {
    item.result = result;
    item.cause = Some(cause);
    item.reason = reason;
    item.in_flight = false;
}

/// One run of a task, holding its claim.
struct Run<'a> {
    store: &'a dyn ImportStore,
    claim: &'a ImportClaim,
    task: ImportTask,
    /// Every item of the task, in seq order.
    items: Vec<ImportItem>,
    settings: EngineSettings,
}

impl Run<'_> {
    /// Writes the items at `positions` and the task with fresh progress counts.
    async fn save(&mut self, positions: &[usize], active: Option<bool>) -> Result<()> {
        self.task.progress = counts(&self.items);
        let items: Vec<ImportItem> = positions.iter().map(|&p| self.items[p].clone()).collect();
        self.store
            .write_import(
                self.claim,
                ImportWrite {
                    items: &items,
                    task: Some(&self.task),
                    active,
                },
            )
            .await?;
        Ok(())
    }

    fn pending(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&p| self.items[p].result == ItemResult::Pending)
            .collect()
    }

    /// Ends every pending item FAILED with `reason` and records it as the task's error.
    async fn fail_all(&mut self, reason: String) -> Result<()> {
        tracing::warn!(task = %self.task.id, %reason, "import target unusable; remaining items fail");
        let pending = self.pending();
        for &p in &pending {
            end(
                &mut self.items[p],
                ItemResult::Failed,
                ItemCause::TargetError,
                Some(reason.clone()),
            );
        }
        self.task.error = Some(reason);
        self.save(&pending, None).await
    }

    /// Step 2: decides what the target's current state already settles; returns the
    /// positions left to create, in seq order.
    async fn precheck(&mut self, target: &Target, held: &[Held]) -> Result<Vec<usize>> {
        let quota = self.store.target_quota(&target.cluster).await?;
        let mut decided = Vec::new();
        let mut to_create = Vec::new();
        for kind in [ItemKind::Topic, ItemKind::Group] {
            let mut fresh = Vec::new();
            for p in self.pending() {
                let item = &mut self.items[p];
                if item.kind != kind {
                    continue;
                }
                if kind == ItemKind::Topic
                    && let Some(why) = target.reserved_topic(&item.name)
                {
                    let reason = format!(
                        "topic {} is reserved on the target cluster ({why}) (rule RESERVED)",
                        item.name
                    );
                    end(
                        item,
                        ItemResult::InvalidName,
                        ItemCause::NameRule,
                        Some(reason),
                    );
                    decided.push(p);
                    continue;
                }
                let on = held
                    .iter()
                    .filter(|h| h.of(kind).contains(&item.name))
                    .count();
                if on == held.len() {
                    if item.attempts > 0 {
                        // Created by an earlier run of this task that stopped before
                        // recording it.
                        end(item, ItemResult::Success, ItemCause::Created, None);
                    } else {
                        end(
                            item,
                            ItemResult::AlreadyExistsSkipped,
                            ItemCause::Exists,
                            Some("already on the target cluster; left as it is".into()),
                        );
                    }
                    decided.push(p);
                } else if on > 0 {
                    // On some masters already: completing it adds nothing to the quota count.
                    to_create.push(p);
                } else {
                    fresh.push(p);
                }
            }
            match quota.as_ref().and_then(|q| q.for_kind(kind)) {
                Some(limit) => {
                    let existing = target.user_count(held, kind);
                    let split = check_quota(existing, fresh, limit as usize, kind);
                    to_create.extend(split.within);
                    for over in split.over {
                        end(
                            &mut self.items[over.item],
                            ItemResult::QuotaExceeded,
                            ItemCause::TargetQuota,
                            Some(over.reason),
                        );
                        decided.push(over.item);
                    }
                }
                None => to_create.extend(fresh),
            }
        }
        to_create.sort_unstable();
        self.save(&decided, None).await?;
        Ok(to_create)
    }

    /// Creates one batch of one kind on every master, reads it back, and records each item.
    /// Returns the reason when a master was unreachable.
    async fn create_batch(
        &mut self,
        target: &Target,
        held: &mut [Held],
        kind: ItemKind,
        batch: &[usize],
    ) -> Result<Option<String>> {
        for &p in batch {
            let item = &mut self.items[p];
            item.in_flight = true;
            item.attempts += 1;
        }
        // The mark must be durable before any create is sent: a restart then knows that
        // these items may exist because of this task.
        let t0 = std::time::Instant::now();
        self.save(batch, None).await?;
        let marked = t0.elapsed();
        let mode = self.task.create_mode;
        let work = target.masters.iter().zip(held.iter()).map(|(master, h)| {
            let missing: Vec<(String, serde_json::Value)> = batch
                .iter()
                .map(|&p| &self.items[p])
                .filter(|i| !h.of(kind).contains(&i.name))
                .map(|i| (i.name.clone(), i.spec.clone()))
                .collect();
            create_on_master(target, master, kind, mode, missing)
        });
        let outcomes = futures::future::join_all(work).await;
        let created = t0.elapsed() - marked;
        let mut unreachable = None;
        for (h, outcome) in held.iter_mut().zip(&outcomes) {
            if let Some(names) = &outcome.names {
                *h.of_mut(kind) = names.clone();
            }
            if unreachable.is_none() {
                unreachable = outcome.unreachable.clone();
            }
        }
        for &p in batch {
            let item = &mut self.items[p];
            let missing_on = target
                .masters
                .iter()
                .zip(held.iter())
                .zip(&outcomes)
                .find(|((_, h), _)| !h.of(kind).contains(&item.name));
            match missing_on {
                None => end(item, ItemResult::Success, ItemCause::Created, None),
                Some(((master, _), outcome)) => {
                    let reason = outcome.reason_for(&item.name, master);
                    end(
                        item,
                        ItemResult::Failed,
                        ItemCause::TargetError,
                        Some(reason),
                    );
                }
            }
        }
        let t1 = std::time::Instant::now();
        self.save(batch, None).await?;
        tracing::debug!(
            %kind,
            items = batch.len(),
            mark_ms = marked.as_millis() as u64,
            create_and_read_back_ms = created.as_millis() as u64,
            record_ms = t1.elapsed().as_millis() as u64,
            "import batch done"
        );
        Ok(unreachable)
    }
}

/// What happened on one master for one batch.
#[derive(Debug, Default)]
struct MasterOutcome {
    /// The master's names of the kind after the creates (`None` when the read failed).
    names: Option<std::collections::HashSet<String>>,
    /// Per-item errors from one-by-one requests.
    errors: HashMap<String, String>,
    /// The batch request's error.
    batch_error: Option<String>,
    /// The read-back's error.
    read_error: Option<String>,
    /// Set when the master could not be reached.
    unreachable: Option<String>,
}

impl MasterOutcome {
    fn reason_for(&self, name: &str, master: &Master) -> String {
        if let Some(e) = self.errors.get(name) {
            return e.clone();
        }
        if let Some(e) = &self.batch_error {
            return e.clone();
        }
        if let Some(e) = &self.unreachable {
            return format!("not attempted: {e}");
        }
        if let Some(e) = &self.read_error {
            return format!("could not read the topics/groups back: {e}");
        }
        format!(
            "not found on broker {} ({}) after it answered the create with SUCCESS",
            master.broker, master.addr
        )
    }

    fn note(&mut self, e: CreateError) -> String {
        if e.unreachable && self.unreachable.is_none() {
            self.unreachable = Some(e.reason.clone());
        }
        e.reason
    }
}

/// Creates `missing` on one master and reads its table back.
async fn create_on_master(
    target: &Target,
    master: &Master,
    kind: ItemKind,
    mode: CreateMode,
    missing: Vec<(String, serde_json::Value)>,
) -> MasterOutcome {
    let mut out = MasterOutcome::default();
    if missing.is_empty() {
        return out;
    }
    let mut one_by_one: Vec<&(String, serde_json::Value)> = Vec::new();
    match mode {
        CreateMode::OneByOne => one_by_one.extend(missing.iter()),
        CreateMode::Auto | CreateMode::Batch => {
            let specs: Vec<serde_json::Value> = missing.iter().map(|(_, s)| s.clone()).collect();
            if let Err(e) = target.create_batch(master, kind, &specs).await {
                out.batch_error = Some(out.note(e));
            }
        }
    }
    for (name, spec) in one_by_one {
        if out.unreachable.is_some() {
            break;
        }
        if let Err(e) = target.create_one(master, kind, spec).await {
            let reason = out.note(e);
            out.errors.insert(name.clone(), reason);
        }
    }
    if out.unreachable.is_some() {
        return out;
    }
    match target.names(master, kind).await {
        Ok(names) => out.names = Some(names),
        Err(e) => {
            out.read_error = Some(e);
            return out;
        }
    }
    // A refused batch may have applied some items: send each missing one alone, once, so
    // each gets the broker's own answer.
    if out.batch_error.is_some() {
        let names = out.names.clone().unwrap_or_default();
        let mut retried = false;
        for (name, spec) in missing.iter().filter(|(n, _)| !names.contains(n)) {
            if out.unreachable.is_some() {
                break;
            }
            retried = true;
            if let Err(e) = target.create_one(master, kind, spec).await {
                let reason = out.note(e);
                out.errors.insert(name.clone(), reason);
            }
        }
        if retried && out.unreachable.is_none() {
            match target.names(master, kind).await {
                Ok(names) => out.names = Some(names),
                Err(e) => out.read_error = Some(e),
            }
        }
    }
    out
}

/// Runs the task `claim` holds until every item has its result (or the store fails), then
/// releases the claim.
pub async fn run(
    store: Arc<dyn ImportStore>,
    claim: ImportClaim,
    settings: EngineSettings,
) -> Result<TaskStatus> {
    let id = claim.task_id().to_string();
    let span = tracing::info_span!("import_run", task = %id);
    let result = run_claimed(store.as_ref(), &claim, settings)
        .instrument(span)
        .await;
    if let Err(e) = claim.release().await {
        tracing::warn!(task = %id, error = %e, "could not release import claim; it ends with its TTL");
    }
    result
}

async fn run_claimed(
    store: &dyn ImportStore,
    claim: &ImportClaim,
    settings: EngineSettings,
) -> Result<TaskStatus> {
    let id = claim.task_id();
    let task = store.get_import(id).await?.value;
    let mut items = store.import_items(id).await?;
    items.sort_by_key(|i| i.seq);
    let started = std::time::Instant::now();
    let mut run = Run {
        store,
        claim,
        task,
        items,
        settings,
    };
    let pending = run.pending().len();
    if pending > 0 {
        run.task.runs += 1;
        run.task.status = TaskStatus::Running;
        run.task.error = None;
        run.task.finished_at_ms = 0;
        run.save(&[], None).await?;
        tracing::info!(pending, runs = run.task.runs, target = %run.task.target_cluster, "import run starts");
        let target = Target::connect(
            &run.task.target_namesrv,
            &run.task.target_cluster,
            run.task.target_credentials.as_ref(),
            run.settings.timeouts,
        )
        .await;
        match target {
            Err(reason) => run.fail_all(reason).await?,
            Ok(target) => match target.inventory().await {
                Err(reason) => run.fail_all(reason).await?,
                Ok(mut held) => {
                    tracing::debug!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "target connected and read"
                    );
                    let to_create = run.precheck(&target, &held).await?;
                    create_all(&mut run, &target, &mut held, to_create).await?;
                }
            },
        }
    }
    run.task.progress = counts(&run.items);
    run.task.status = run.task.progress.status(true);
    run.task.finished_at_ms = now_ms();
    run.save(&[], Some(false)).await?;
    tracing::info!(
        status = %run.task.status,
        success = run.task.progress.success,
        skipped = run.task.progress.skipped,
        failed = run.task.progress.failed,
        quota_exceeded = run.task.progress.quota_exceeded,
        invalid_name = run.task.progress.invalid_name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import run finished"
    );
    Ok(run.task.status)
}

async fn create_all(
    run: &mut Run<'_>,
    target: &Target,
    held: &mut [Held],
    to_create: Vec<usize>,
) -> Result<()> {
    let mut unreachable: Option<String> = None;
    for kind in [ItemKind::Topic, ItemKind::Group] {
        let of_kind: Vec<usize> = to_create
            .iter()
            .copied()
            .filter(|&p| run.items[p].kind == kind)
            .collect();
        for batch in of_kind.chunks(run.settings.batch_items.max(1)) {
            if run.claim.is_lost() {
                return Err(SyncError::FailedPrecondition(format!(
                    "import task {} is no longer claimed by this runner; another runner continues it",
                    run.task.id
                )));
            }
            if let Some(reason) = &unreachable {
                let reason = format!("not attempted: {reason}");
                for &p in batch {
                    end(
                        &mut run.items[p],
                        ItemResult::Failed,
                        ItemCause::TargetError,
                        Some(reason.clone()),
                    );
                }
                run.save(batch, None).await?;
                continue;
            }
            unreachable = run.create_batch(target, held, kind, batch).await?;
            if let Some(reason) = &unreachable {
                tracing::warn!(%reason, "target broker unreachable; the rest of the task is not attempted");
            }
        }
    }
    Ok(())
}
