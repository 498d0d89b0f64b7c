//! `MigrationTaskService`: seamless-migration tasks, their steps and per-topic stages.
//!
//! Implemented here: creating, reading and listing tasks; adding and removing topics;
//! advancing and rolling back topics one stage at a time (each change one store transaction
//! conditioned on the topic's revision and fenced by the task's revision, with an audit
//! record); pause, resume, whole-task rollback and completion; the audit log.
//!
//! Readiness is measured by the health-check service and stored per topic
//! (`task-readiness/<task>/<topic>`). A change without `force` happens only when that record
//! says ready for exactly this direction, was measured against the topic's current revision
//! (so for its current stage, after the last change), and is fresh (at most
//! `readiness_max_age` old, default 30 s); otherwise it is refused with the reasons. `force`
//! overrides, and the audit records the change as forced whenever readiness was not proven:
//! moving a topic without proof that no message is stranded is the operator's explicit
//! decision, never Ferry's default.
//!
//! The steps: [`steps`] holds their gates (step 1 connect, step 2 import with [`items`] and
//! [`roles`], step 3 switch access point, step 4 gray migration, step 5 complete); topic
//! stages change only in step 4. What a task keeps besides its core record is typed in
//! [`extra`].

mod extra;
mod items;
mod reconcile;
pub mod roles;
mod steps;

use std::collections::HashMap;
use std::time::Duration;

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_server::{
    MigrationTaskService, MigrationTaskServiceServer,
};
use ferry_core::names::is_valid_name_char;
use ferry_core::readiness::ReasonCode;
use ferry_core::{Direction, MigrationStep, Stage, TaskState, validate_topic};
use ferry_scanner::convert::report_to_pb;
use ferry_scanner::engine::CollisionKind;
use ferry_scanner::{EngineConfig, ScanEngine, SourceSpec};
use ferry_store::{
    FerryStore, MigrationStore, MigrationTask, PageRequest, ReadinessRecord, StageChange,
    StoreError, TopicState, Versioned,
};
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::error::{Result, SyncError};
use crate::import::ImportTasks;
use crate::store_slot::StoreSlot;
use extra::{ConnectResult, TaskExtra};
use ferry_store::imports::StoredCredentials;
use ferry_store::now_ms;

/// Longest task name accepted.
const MAX_TASK_NAME_LEN: usize = 128;
/// Longest cluster name accepted (same charset as topics, since it names store keys).
const MAX_CLUSTER_NAME_LEN: usize = 127;
/// Actor recorded when the caller names none.
const ANONYMOUS: &str = "anonymous";

/// Default page of items and roles.
const ITEM_PAGE: usize = 100;
const MAX_ITEM_PAGE: usize = 1000;

/// How old a stored readiness may be and still allow a change without `force`: well above
/// the health checker's scan interval (10 s), well below the clients' route poll interval.
pub const DEFAULT_READINESS_MAX_AGE: Duration = Duration::from_secs(30);

/// The migration-task gRPC service.
#[derive(Clone)]
pub struct MigrationTasks {
    store: StoreSlot,
    readiness_max_age: Duration,
    /// Probes and scans the source for steps 1 and 2 (the scanner's engine, in-process).
    engine: ScanEngine,
    /// Runs step 2's imports (the import-task engine of this process).
    imports: Option<ImportTasks>,
}

impl MigrationTasks {
    pub fn new(store: StoreSlot) -> Self {
        MigrationTasks {
            store,
            readiness_max_age: DEFAULT_READINESS_MAX_AGE,
            engine: ScanEngine::new(EngineConfig::default()),
            imports: None,
        }
    }

    /// Runs step 2's imports with `imports` (without it, step 2 answers FAILED_PRECONDITION).
    pub fn with_imports(mut self, imports: ImportTasks) -> Self {
        self.imports = Some(imports);
        self
    }

    /// Sets how old a stored readiness may be for a change without `force`.
    pub fn with_readiness_max_age(mut self, max_age: Duration) -> Self {
        self.readiness_max_age = max_age;
        self
    }

    /// The tonic service to add to a server.
    pub fn into_service(self) -> MigrationTaskServiceServer<Self> {
        MigrationTaskServiceServer::new(self)
    }

    async fn topics_per_stage(
        store: &dyn MigrationStore,
        task_id: &str,
    ) -> Result<HashMap<String, i64>> {
        let mut counts = HashMap::new();
        for topic in all_topics(store, task_id).await? {
            *counts
                .entry(stage_to_pb(topic.value.stage).as_str_name().to_string())
                .or_insert(0) += 1;
        }
        Ok(counts)
    }

    async fn task_response(
        store: &dyn MigrationStore,
        task: &Versioned<MigrationTask>,
    ) -> Result<pb::MigrationTask> {
        let counts = Self::topics_per_stage(store, &task.value.id).await?;
        let mut out = task_to_pb(task, counts);
        TaskExtra::of(&task.value).fill(&mut out);
        Ok(out)
    }

    /// Moves a task whose gate was decided to step `to` (a dry run returns it unchanged).
    #[allow(clippy::too_many_arguments)]
    async fn move_step(
        &self,
        store: &dyn FerryStore,
        task: Versioned<MigrationTask>,
        to: MigrationStep,
        actor: String,
        forced: Option<String>,
        reason: String,
        dry_run: bool,
    ) -> Result<pb::MigrationTask> {
        if dry_run {
            return Self::task_response(store, &task).await;
        }
        let reason = (!reason.is_empty()).then_some(reason);
        let saved = self
            .change_step(store, task, to, actor_or_anonymous(actor), forced, reason)
            .await?;
        Self::task_response(store, &saved).await
    }

    /// Completes a task whose topics are all DONE and releases its target.
    async fn complete(
        &self,
        store: &dyn FerryStore,
        task: Versioned<MigrationTask>,
        actor: String,
        dry_run: bool,
    ) -> Result<pb::MigrationTask> {
        ensure_accepts_changes(&task.value)?;
        steps::ensure_gray_step(&task.value)?;
        let topics = all_topics(store, &task.value.id).await?;
        let not_done: Vec<String> = topics
            .iter()
            .filter(|t| t.value.stage != Stage::Done)
            .map(|t| format!("{} ({})", t.value.topic, t.value.stage))
            .collect();
        if !not_done.is_empty() {
            return Err(SyncError::FailedPrecondition(format!(
                "task {} can complete only when every topic is DONE; not yet: {}",
                task.value.id,
                not_done.join(", ")
            )));
        }
        if dry_run {
            return Self::task_response(store, &task).await;
        }
        let mut finished = task.value.clone();
        let mut extra = TaskExtra::of(&finished);
        extra.steps.push(extra::StepRecord {
            from: finished.step,
            to: MigrationStep::Complete,
            actor: actor.clone(),
            forced: false,
            reason: None,
            at_ms: now_ms(),
        });
        extra.store(&mut finished);
        finished.state = TaskState::Completed;
        finished.step = MigrationStep::Complete;
        finished.updated_at_ms = now_ms();
        let done = store
            .finish_task(&task.value.id, task.revision, finished)
            .await?;
        tracing::info!(task = %done.value.id, %actor, "task completed; target released");
        Self::task_response(store, &done).await
    }

    /// Moves each requested topic one step in `direction`. Per-topic outcomes are reported in
    /// the results; only task-level refusals fail the whole call.
    async fn change_stages(
        &self,
        change: pb::StageChangeRequest,
        direction: Direction,
    ) -> Result<Vec<pb::StageChangeResult>> {
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store.get_task(&change.task_id).await?;
        ensure_accepts_changes(&task.value)?;
        steps::ensure_gray_step(&task.value)?;
        if change.topics.is_empty() {
            return Err(SyncError::InvalidArgument("no topics given".into()));
        }
        let actor = actor_or_anonymous(change.actor);
        let reason = (!change.reason.is_empty()).then_some(change.reason);
        let mut results = Vec::with_capacity(change.topics.len());
        for topic_ref in change.topics {
            let result = change_one(
                store.as_ref(),
                &task,
                topic_ref,
                Gatekeeping {
                    direction,
                    force: change.force,
                    max_age: self.readiness_max_age,
                    dry_run: change.dry_run,
                },
                &actor,
                reason.clone(),
            )
            .await;
            results.push(result);
        }
        Ok(results)
    }
}

/// Every topic of a task, across pages.
async fn all_topics(
    store: &dyn MigrationStore,
    task_id: &str,
) -> Result<Vec<Versioned<TopicState>>> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_SIZE);
    loop {
        let got = store.list_topics(task_id, page.clone()).await?;
        out.extend(got.items);
        match got.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => return Ok(out),
        }
    }
}

fn ensure_accepts_changes(task: &MigrationTask) -> Result<()> {
    match task.state {
        TaskState::Running => Ok(()),
        TaskState::Paused => Err(SyncError::FailedPrecondition(format!(
            "task {} is paused: no stage change is accepted until it is resumed",
            task.id
        ))),
        state => Err(SyncError::FailedPrecondition(format!(
            "task {} is {}: it accepts no more changes",
            task.id,
            state.as_str()
        ))),
    }
}

fn actor_or_anonymous(actor: String) -> String {
    if actor.trim().is_empty() {
        ANONYMOUS.to_string()
    } else {
        actor
    }
}

fn refused(topic: String, stage: Option<Stage>, error: impl ToString) -> pb::StageChangeResult {
    let stage = stage.map(|s| stage_to_pb(s) as i32).unwrap_or_default();
    pb::StageChangeResult {
        topic,
        changed: false,
        from_stage: stage,
        to_stage: stage,
        revision: 0,
        error: error.to_string(),
        readiness: None,
    }
}

/// How a change is decided: its direction, whether the caller forces it, and how old a
/// stored readiness may be.
#[derive(Debug, Clone, Copy)]
struct Gatekeeping {
    direction: Direction,
    force: bool,
    max_age: Duration,
    /// Decide only; commit nothing.
    dry_run: bool,
}

/// What the stored readiness says about one change.
#[derive(Debug, Clone, PartialEq)]
enum Gate {
    /// Proven ready: fresh, for the topic's current revision, ready in this direction.
    Ready(pb_common::Readiness),
    /// Not proven: why, and the readiness that was looked at, if any.
    Refused {
        why: String,
        readiness: Option<pb_common::Readiness>,
    },
}

impl Gate {
    fn readiness(&self) -> Option<pb_common::Readiness> {
        match self {
            Gate::Ready(r) => Some(r.clone()),
            Gate::Refused { readiness, .. } => readiness.clone(),
        }
    }
}

/// Decides a change `from -> to` of a topic at `revision` from its stored readiness. Only a
/// record measured against this very revision (so after the last stage change), at most
/// `max_age` old, saying ready for this direction, lets the change through.
fn gate(
    record: Option<&ReadinessRecord>,
    revision: i64,
    (from, to): (Stage, Stage),
    direction: Direction,
    now_ms: i64,
    max_age: Duration,
) -> Gate {
    let force_hint = "force the change to take responsibility for it";
    let Some(record) = record else {
        return Gate::Refused {
            why: format!(
                "readiness of {from} -> {to} is unknown: the health checker has not measured this topic (is ferry-health-check running?); {force_hint}"
            ),
            readiness: None,
        };
    };
    if !record.is_for_revision(revision) || record.stage != from {
        return Gate::Refused {
            why: format!(
                "readiness of {from} -> {to} is unknown: the last measurement was for {} at revision {}, the topic is now at revision {revision}; wait for the next readiness scan or run CheckTopics, or {force_hint}",
                record.stage, record.topic_revision
            ),
            readiness: None,
        };
    }
    let readiness = match direction {
        Direction::Advance => &record.next,
        Direction::Rollback => &record.previous,
    };
    let as_pb = readiness_to_pb(readiness, record.checked_at_ms);
    let age_ms = now_ms - record.checked_at_ms;
    // A timestamp from the future counts as old as its distance: a skewed clock must not keep
    // a record fresh forever.
    if age_ms.unsigned_abs() > max_age.as_millis() as u64 {
        return Gate::Refused {
            why: format!(
                "readiness of {from} -> {to} was measured {:.1} s ago, more than the {:.1} s allowed (is ferry-health-check running?); run CheckTopics or wait for the next scan, or {force_hint}",
                age_ms as f64 / 1000.0,
                max_age.as_secs_f64()
            ),
            readiness: Some(as_pb),
        };
    }
    if readiness.to != Some(to) {
        return Gate::Refused {
            why: format!(
                "readiness of {from} -> {to} is unknown: the stored readiness is for a change to {}; {force_hint}",
                readiness
                    .to
                    .map_or("nothing".to_string(), |s| s.to_string())
            ),
            readiness: Some(as_pb),
        };
    }
    if !readiness.ready {
        let codes: Vec<&str> = readiness
            .codes()
            .into_iter()
            .map(ReasonCode::as_str)
            .collect();
        return Gate::Refused {
            why: format!(
                "not ready for {from} -> {to} ({}): {}",
                codes.join(", "),
                readiness.summary()
            ),
            readiness: Some(as_pb),
        };
    }
    Gate::Ready(as_pb)
}

async fn change_one(
    store: &dyn FerryStore,
    task: &Versioned<MigrationTask>,
    topic_ref: pb::TopicRef,
    gk: Gatekeeping,
    actor: &str,
    reason: Option<String>,
) -> pb::StageChangeResult {
    let Gatekeeping {
        direction,
        force,
        max_age,
        dry_run,
    } = gk;
    let current = match store.get_topic(&task.value.id, &topic_ref.topic).await {
        Ok(current) => current,
        Err(err) => return refused(topic_ref.topic, None, err),
    };
    // The caller decided on the stage it saw; if the topic moved since, the step computed
    // from today's stage is not the one they asked for.
    if topic_ref.expected_revision != 0 && topic_ref.expected_revision != current.revision {
        let conflict = StoreError::Conflict {
            what: format!("topic {} of task {}", topic_ref.topic, task.value.id),
            key: String::new(),
            expected: topic_ref.expected_revision,
            actual: current.revision,
        };
        return refused(topic_ref.topic, Some(current.value.stage), conflict);
    }
    let from = current.value.stage;
    let Some(to) = from.step(direction) else {
        let why = match direction {
            Direction::Advance => "DONE is the last stage",
            Direction::Rollback => "INITIAL is the first stage",
        };
        return refused(
            topic_ref.topic,
            Some(from),
            format!("topic is {from}: {why}"),
        );
    };
    let decided = match store.get_readiness(&task.value.id, &topic_ref.topic).await {
        Ok(record) => gate(
            record.as_ref(),
            current.revision,
            (from, to),
            direction,
            now_ms(),
            max_age,
        ),
        Err(err) => Gate::Refused {
            why: format!("readiness of {from} -> {to} could not be read: {err}"),
            readiness: None,
        },
    };
    let proven = matches!(decided, Gate::Ready(_));
    let readiness = decided.readiness();
    if let Gate::Refused { why, .. } = &decided {
        if !force {
            tracing::info!(task = %task.value.id, topic = %topic_ref.topic, %from, %to, why = %why, "stage change refused");
            return pb::StageChangeResult {
                readiness,
                ..refused(topic_ref.topic, Some(from), why)
            };
        }
        tracing::warn!(task = %task.value.id, topic = %topic_ref.topic, %from, %to, why = %why, actor, "stage change forced although readiness is not proven");
    }
    if dry_run {
        return pb::StageChangeResult {
            topic: topic_ref.topic,
            changed: false,
            from_stage: stage_to_pb(from) as i32,
            to_stage: stage_to_pb(to) as i32,
            revision: current.revision,
            error: String::new(),
            readiness,
        };
    }
    let expected_revision = match topic_ref.expected_revision {
        0 => current.revision,
        rev => rev,
    };
    let change = StageChange {
        task_id: task.value.id.clone(),
        topic: topic_ref.topic.clone(),
        expected_revision,
        to,
        actor: actor.to_string(),
        // Forced means "made without proof": a forced change of a proven-ready topic is not.
        forced: !proven,
        reason,
        task_revision: Some(task.revision),
    };
    match store.change_stage(change).await {
        Ok(updated) => {
            tracing::info!(task = %task.value.id, topic = %topic_ref.topic, %from, %to, actor, forced = !proven, "stage changed");
            pb::StageChangeResult {
                topic: topic_ref.topic,
                changed: true,
                from_stage: stage_to_pb(from) as i32,
                to_stage: stage_to_pb(to) as i32,
                revision: updated.revision,
                error: String::new(),
                readiness,
            }
        }
        Err(err) => pb::StageChangeResult {
            readiness,
            ..refused(topic_ref.topic, Some(from), err)
        },
    }
}

fn validate_cluster_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(SyncError::InvalidArgument(format!(
            "{what} cluster name is required"
        )));
    }
    if name.chars().count() > MAX_CLUSTER_NAME_LEN {
        return Err(SyncError::InvalidArgument(format!(
            "{what} cluster name is longer than {MAX_CLUSTER_NAME_LEN} characters"
        )));
    }
    if let Some((i, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !is_valid_name_char(*c))
    {
        return Err(SyncError::InvalidArgument(format!(
            "{what} cluster name {name:?} has illegal character {c:?} at {i}: allowed are letters, digits, '%', '|', '_' and '-'"
        )));
    }
    Ok(())
}

/// Checks a `host:port;host:port` NameServer list.
fn validate_namesrv_addrs(what: &str, addrs: &str) -> Result<()> {
    if addrs.trim().is_empty() {
        return Err(SyncError::InvalidArgument(format!(
            "{what} NameServer addresses are required, e.g. 10.0.0.1:9876;10.0.0.2:9876"
        )));
    }
    for addr in addrs.split(';').map(str::trim).filter(|a| !a.is_empty()) {
        let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(SyncError::InvalidArgument(format!(
                "{what} NameServer address {addr:?} is not host:port"
            )));
        }
    }
    Ok(())
}

fn new_task_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("mt-{}", &id[..12])
}

/// The task, if it accepts changes and is at the step the caller saw (a request naming a
/// step the task has left is refused, not applied twice).
async fn task_at_step(
    store: &dyn FerryStore,
    task_id: &str,
    from_step: i32,
) -> Result<Versioned<MigrationTask>> {
    let task = store.get_task(task_id).await?;
    ensure_accepts_changes(&task.value)?;
    if from_step != step_to_pb(task.value.step) as i32 {
        return Err(SyncError::FailedPrecondition(format!(
            "task {} is at step {}, not the step the request names: re-read the task",
            task.value.id,
            task.value.step.as_str()
        )));
    }
    Ok(task)
}

/// Keys from a request, to keep on the task (the secret never comes back).
fn stored_credentials(
    what: &str,
    keys: Option<pb_common::Credentials>,
) -> Result<Option<StoredCredentials>> {
    match keys {
        Some(c) if !c.access_key.is_empty() || !c.secret_key.is_empty() => {
            if c.access_key.trim().is_empty() || c.secret_key.is_empty() {
                return Err(SyncError::InvalidArgument(format!(
                    "{what} credentials need both an access key and a secret key"
                )));
            }
            Ok(Some(StoredCredentials {
                access_key: c.access_key,
                secret_key: c.secret_key,
            }))
        }
        _ => Ok(None),
    }
}

/// True when the first source (oldest task) of `target` that was probed had ACL on.
async fn first_source_had_acl(store: &dyn MigrationStore, target: &str) -> Result<bool> {
    let mut first: Option<(i64, bool)> = None;
    let mut page = PageRequest::first(PageRequest::MAX_SIZE);
    loop {
        let got = store.list_tasks(page.clone()).await?;
        for task in got
            .items
            .iter()
            .filter(|t| t.value.target_cluster == target)
        {
            if let Some(connect) = TaskExtra::of(&task.value).connect
                && first.is_none_or(|(at, _)| task.value.created_at_ms < at)
            {
                first = Some((task.value.created_at_ms, connect.acl_enabled));
            }
        }
        match got.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => return Ok(first.is_some_and(|(_, acl)| acl)),
        }
    }
}

/// One page of `items` (in ascending `key` order): those after `token`, at most `page_size`
/// (0 = default), and the token of the next page (empty on the last).
fn page_after<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> String,
    page_size: i32,
    token: &str,
) -> (Vec<&'a T>, String) {
    let size = match page_size {
        n if n <= 0 => ITEM_PAGE,
        n => (n as usize).min(MAX_ITEM_PAGE),
    };
    let mut page: Vec<&T> = items
        .filter(|i| token.is_empty() || key(i).as_str() > token)
        .take(size + 1)
        .collect();
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map(|i| key(i)).unwrap_or_default()
    } else {
        String::new()
    };
    (page, next)
}

fn ok<T>(value: T) -> std::result::Result<Response<T>, Status> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl MigrationTaskService for MigrationTasks {
    async fn create_migration_task(
        &self,
        request: Request<pb::CreateMigrationTaskRequest>,
    ) -> std::result::Result<Response<pb::CreateMigrationTaskResponse>, Status> {
        let req = request.into_inner();
        let name = req.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_TASK_NAME_LEN {
            return Err(SyncError::InvalidArgument(format!(
                "task name is required and at most {MAX_TASK_NAME_LEN} characters"
            ))
            .into());
        }
        let source = req
            .source
            .ok_or_else(|| SyncError::InvalidArgument("source cluster is required".into()))?;
        let target = req
            .target
            .ok_or_else(|| SyncError::InvalidArgument("target cluster is required".into()))?;
        validate_cluster_name("source", &source.cluster_name)?;
        validate_cluster_name("target", &target.cluster_name)?;
        validate_namesrv_addrs("source", &source.namesrv_addrs)?;
        validate_namesrv_addrs("target", &target.namesrv_addrs)?;
        let target_type = target_type_from_pb(req.target_type)?;
        if source.cluster_name == target.cluster_name
            && source.namesrv_addrs == target.namesrv_addrs
        {
            return Err(SyncError::InvalidArgument(
                "source and target are the same cluster".into(),
            )
            .into());
        }
        let mut extra = TaskExtra {
            source_credentials: stored_credentials("source", source.credentials)?,
            target_credentials: stored_credentials("target", target.credentials)?,
            ..TaskExtra::default()
        };
        let store = self.store.get().map_err(SyncError::from)?;
        // PRODUCT.md §4 step 1: once a target's first source had ACL on, the target enforces
        // ACL for every later source, so their clients need keys too.
        extra.clients_need_credentials =
            first_source_had_acl(store.as_ref(), &target.cluster_name).await?;
        let now = now_ms();
        let task = MigrationTask {
            id: new_task_id(),
            name,
            source_cluster: source.cluster_name,
            source_namesrv: source.namesrv_addrs,
            target_cluster: target.cluster_name,
            target_namesrv: target.namesrv_addrs,
            target_type,
            step: MigrationStep::Connect,
            state: TaskState::Running,
            created_at_ms: now,
            updated_at_ms: now,
            created_by: actor_or_anonymous(req.actor),
            extra: serde_json::Value::Null,
        };
        let mut task = task;
        extra.store(&mut task);
        if req.dry_run {
            // Everything the store would check, without taking the target.
            if let Some(holder) = store
                .target_holder(&task.target_cluster)
                .await
                .map_err(SyncError::from)?
            {
                return Err(SyncError::FailedPrecondition(format!(
                    "target cluster {} is already in running task {holder}",
                    task.target_cluster
                ))
                .into());
            }
            task.id = String::new();
            let would = Versioned {
                value: task,
                revision: 0,
            };
            return ok(pb::CreateMigrationTaskResponse {
                task: Some(Self::task_response(store.as_ref(), &would).await?),
            });
        }
        let created = store.create_task(task).await.map_err(SyncError::from)?;
        tracing::info!(task = %created.value.id, target = %created.value.target_cluster, "migration task created");
        ok(pb::CreateMigrationTaskResponse {
            task: Some(Self::task_response(store.as_ref(), &created).await?),
        })
    }

    async fn get_migration_task(
        &self,
        request: Request<pb::GetMigrationTaskRequest>,
    ) -> std::result::Result<Response<pb::GetMigrationTaskResponse>, Status> {
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&request.into_inner().task_id)
            .await
            .map_err(SyncError::from)?;
        ok(pb::GetMigrationTaskResponse {
            task: Some(Self::task_response(store.as_ref(), &task).await?),
        })
    }

    async fn list_migration_tasks(
        &self,
        request: Request<pb::ListMigrationTasksRequest>,
    ) -> std::result::Result<Response<pb::ListMigrationTasksResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let filter = state_from_pb(req.state);
        let page = store
            .list_tasks(page_request(req.page_size, req.page_token)?)
            .await
            .map_err(SyncError::from)?;
        let mut tasks = Vec::new();
        for task in page
            .items
            .iter()
            .filter(|t| filter.is_none_or(|s| t.value.state == s))
        {
            tasks.push(Self::task_response(store.as_ref(), task).await?);
        }
        ok(pb::ListMigrationTasksResponse {
            tasks,
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn connect_source(
        &self,
        request: Request<pb::ConnectSourceRequest>,
    ) -> std::result::Result<Response<pb::ConnectSourceResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        ensure_accepts_changes(&task.value)?;
        let extra = TaskExtra::of(&task.value);
        let spec = |namesrv: &str, cluster: &str, keys: &Option<StoredCredentials>| SourceSpec {
            namesrv_addrs: namesrv.to_string(),
            cluster_name: Some(cluster.to_string()),
            credentials: keys
                .as_ref()
                .map(|c| ferry_remoting::Credentials::new(&c.access_key, &c.secret_key)),
        };
        let source = spec(
            &task.value.source_namesrv,
            &task.value.source_cluster,
            &extra.source_credentials,
        );
        let target = spec(
            &task.value.target_namesrv,
            &task.value.target_cluster,
            &extra.target_credentials,
        );
        let report = self
            .engine
            .check_connection(&source, Some(&target), None)
            .await
            .map_err(|e| SyncError::FailedPrecondition(format!("cannot probe the source: {e}")))?;
        let probe = report_to_pb(&report);
        let broker_collisions: Vec<&str> = report
            .collisions
            .iter()
            .filter(|c| c.kind == CollisionKind::BrokerName)
            .map(|c| c.name.as_str())
            .collect();
        if req.dry_run {
            return ok(pb::ConnectSourceResponse {
                outcome: probe.outcome,
                message: probe.message,
                probes: probe.probes,
                task: Some(Self::task_response(store.as_ref(), &task).await?),
            });
        }
        // The result stays on the task: the step-1 gate reads it, and people see it later.
        let mut updated = task.value.clone();
        let mut extra = extra;
        extra.connect = Some(ConnectResult {
            outcome: probe.outcome,
            message: report.message.clone(),
            broker_name_collisions: broker_collisions.iter().map(|s| s.to_string()).collect(),
            at_ms: now_ms(),
            acl_enabled: report.acl_enabled,
        });
        extra.store(&mut updated);
        updated.updated_at_ms = now_ms();
        let saved = store
            .update_task(updated, task.revision)
            .await
            .map_err(SyncError::from)?;
        tracing::info!(task = %req.task_id, outcome = probe.outcome, "source connection checked");
        ok(pb::ConnectSourceResponse {
            outcome: probe.outcome,
            message: probe.message,
            probes: probe.probes,
            task: Some(Self::task_response(store.as_ref(), &saved).await?),
        })
    }

    async fn refresh_source_inventory(
        &self,
        request: Request<pb::RefreshSourceInventoryRequest>,
    ) -> std::result::Result<Response<pb::RefreshSourceInventoryResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let (task, inventory) = self
            .refresh_inventory(store.as_ref(), &req.task_id, req.dry_run)
            .await?;
        let in_task: std::collections::BTreeSet<String> =
            items::task_topic_names(store.as_ref(), &req.task_id)
                .await?
                .into_iter()
                .collect();
        let items = self.items_with(&task.value, Some(&inventory)).await?;
        let new_topics = items
            .iter()
            .filter(|i| i.kind == ferry_core::ItemKind::Topic && !in_task.contains(&i.name))
            .map(|i| i.name.clone())
            .collect();
        let new_groups = items
            .iter()
            .filter(|i| {
                i.kind == ferry_core::ItemKind::Group && i.state != pb::MigrationItemState::Imported
            })
            .map(|i| i.name.clone())
            .collect();
        ok(pb::RefreshSourceInventoryResponse {
            snapshot_id: if req.dry_run {
                String::new()
            } else {
                TaskExtra::of(&task.value)
                    .inventory
                    .map(|i| i.snapshot_id)
                    .unwrap_or_default()
            },
            new_topics,
            new_groups,
        })
    }

    async fn list_migration_items(
        &self,
        request: Request<pb::ListMigrationItemsRequest>,
    ) -> std::result::Result<Response<pb::ListMigrationItemsResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        let kind = crate::import::pb::kind_from_pb(req.kind)?;
        let state = pb::MigrationItemState::try_from(req.state)
            .map_err(|_| SyncError::InvalidArgument(format!("unknown item state {}", req.state)))?;
        let all = self.items(&task.value).await?;
        let (page, next_page_token) = page_after(
            all.iter()
                .filter(|i| kind.is_none_or(|k| i.kind == k))
                .filter(|i| state == pb::MigrationItemState::Unspecified || i.state == state)
                .filter(|i| req.name_contains.is_empty() || i.name.contains(&req.name_contains)),
            items::page_key,
            req.page_size,
            &req.page_token,
        );
        ok(pb::ListMigrationItemsResponse {
            items: page.into_iter().map(items::item_to_pb).collect(),
            next_page_token,
        })
    }

    async fn import_migration_items(
        &self,
        request: Request<pb::ImportMigrationItemsRequest>,
    ) -> std::result::Result<Response<pb::ImportMigrationItemsResponse>, Status> {
        let store = self.store.get().map_err(SyncError::from)?;
        let items = self
            .import_items(store.as_ref(), request.into_inner())
            .await?;
        ok(pb::ImportMigrationItemsResponse { items })
    }

    async fn create_migration_item(
        &self,
        request: Request<pb::CreateMigrationItemRequest>,
    ) -> std::result::Result<Response<pb::CreateMigrationItemResponse>, Status> {
        let store = self.store.get().map_err(SyncError::from)?;
        let item = self
            .create_item(store.as_ref(), request.into_inner())
            .await?;
        ok(pb::CreateMigrationItemResponse { item: Some(item) })
    }

    async fn import_roles(
        &self,
        request: Request<pb::ImportRolesRequest>,
    ) -> std::result::Result<Response<pb::ImportRolesResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        ensure_accepts_changes(&task.value)?;
        let mut roles = roles::parse_roles(&req.roles, &req.roles_file)?;
        if roles.is_empty() {
            return Err(SyncError::InvalidArgument(
                "no roles given: pass roles or a roles_file".into(),
            )
            .into());
        }
        // The task's target (its cluster only, signed with Ferry's keys when ACL is on).
        let target = roles::RoleTarget {
            namesrv_addrs: task.value.target_namesrv.clone(),
            cluster: Some(task.value.target_cluster.clone()),
            credentials: TaskExtra::of(&task.value)
                .target_credentials
                .map(|c| ferry_remoting::Credentials::new(&c.access_key, &c.secret_key)),
            timeout: None,
        };
        if !req.dry_run {
            roles::apply_roles_to(&target, task.value.target_type, &mut roles).await?;
        }
        let results: Vec<ferry_api::metadata_sync::v1::ImportItem> = roles
            .iter()
            .enumerate()
            .map(|(seq, r)| ferry_api::metadata_sync::v1::ImportItem {
                name: r.access_key.clone(),
                source_name: r.access_key.clone(),
                result: crate::import::pb::result_to_pb(r.result) as i32,
                reason: r.reason.clone().unwrap_or_default(),
                seq: seq as i64,
                ..Default::default()
            })
            .collect();
        if req.dry_run {
            return ok(pb::ImportRolesResponse { items: results });
        }
        items::update_extra(store.as_ref(), &req.task_id, |extra| {
            for role in &roles {
                extra.roles.retain(|r| r.access_key != role.access_key);
                extra.roles.push(role.clone());
            }
            extra.roles.sort_by(|a, b| a.access_key.cmp(&b.access_key));
        })
        .await?;
        tracing::info!(task = %req.task_id, roles = roles.len(), "roles imported");
        ok(pb::ImportRolesResponse { items: results })
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> std::result::Result<Response<pb::ListRolesResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        let extra = TaskExtra::of(&task.value);
        // Roles are kept sorted by access key.
        let (page, next_page_token) = page_after(
            extra.roles.iter(),
            |r: &roles::StoredRole| r.access_key.clone(),
            req.page_size,
            &req.page_token,
        );
        ok(pb::ListRolesResponse {
            roles: page.into_iter().map(roles::role_view).collect(),
            next_page_token,
        })
    }

    async fn advance_step(
        &self,
        request: Request<pb::AdvanceStepRequest>,
    ) -> std::result::Result<Response<pb::AdvanceStepResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = task_at_step(store.as_ref(), &req.task_id, req.from_step).await?;
        let from = task.value.step;
        let Some(to) = from.next() else {
            return Err(SyncError::FailedPrecondition(format!(
                "task {} is at its last step",
                task.value.id
            ))
            .into());
        };
        if from == MigrationStep::GrayMigration && !req.dry_run {
            // Step 5 is completion: the same rule and release of the target as CompleteTask.
            let done = self
                .complete(store.as_ref(), task, actor_or_anonymous(req.actor), false)
                .await?;
            return ok(pb::AdvanceStepResponse { task: Some(done) });
        }
        let finding = self.step_finding(store.as_ref(), &task).await?;
        let forced = match finding {
            None => None,
            Some(why) if from == MigrationStep::Connect => {
                return Err(SyncError::FailedPrecondition(why).into());
            }
            Some(why) if !req.force => {
                return Err(SyncError::FailedPrecondition(format!(
                    "step {} is not done: {why}; or force the step to take responsibility for it",
                    from.as_str()
                ))
                .into());
            }
            Some(why) => Some(why),
        };
        let task = self
            .move_step(
                store.as_ref(),
                task,
                to,
                req.actor,
                forced,
                req.reason,
                req.dry_run,
            )
            .await?;
        ok(pb::AdvanceStepResponse { task: Some(task) })
    }

    async fn rollback_step(
        &self,
        request: Request<pb::RollbackStepRequest>,
    ) -> std::result::Result<Response<pb::RollbackStepResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = task_at_step(store.as_ref(), &req.task_id, req.from_step).await?;
        let from = task.value.step;
        if let Some(why) = self.rollback_finding(store.as_ref(), &task.value).await? {
            return Err(SyncError::FailedPrecondition(why).into());
        }
        let Some(to) = from.prev() else {
            return Err(SyncError::FailedPrecondition("CONNECT is the first step".into()).into());
        };
        let task = self
            .move_step(
                store.as_ref(),
                task,
                to,
                req.actor,
                None,
                req.reason,
                req.dry_run,
            )
            .await?;
        ok(pb::RollbackStepResponse { task: Some(task) })
    }

    async fn list_topic_stages(
        &self,
        request: Request<pb::ListTopicStagesRequest>,
    ) -> std::result::Result<Response<pb::ListTopicStagesResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        let wanted: Vec<Stage> = req
            .stages
            .iter()
            .filter_map(|s| stage_from_pb(*s))
            .collect();
        let page = store
            .list_topics(&req.task_id, page_request(req.page_size, req.page_token)?)
            .await
            .map_err(SyncError::from)?;
        let mut topics = Vec::new();
        for t in page
            .items
            .iter()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.value.stage))
        {
            let mut stage = topic_to_pb(t);
            // Last known readiness, only when measured for the topic's current revision.
            let record = store
                .get_readiness(&req.task_id, &t.value.topic)
                .await
                .map_err(SyncError::from)?
                .filter(|r| r.is_for_revision(t.revision));
            if let Some(r) = record {
                stage.next = Some(readiness_to_pb(&r.next, r.checked_at_ms));
                stage.previous = Some(readiness_to_pb(&r.previous, r.checked_at_ms));
            }
            topics.push(stage);
        }
        ok(pb::ListTopicStagesResponse {
            topics,
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn advance_topics(
        &self,
        request: Request<pb::AdvanceTopicsRequest>,
    ) -> std::result::Result<Response<pb::AdvanceTopicsResponse>, Status> {
        let change = request.into_inner().change.unwrap_or_default();
        let results = self.change_stages(change, Direction::Advance).await?;
        ok(pb::AdvanceTopicsResponse { results })
    }

    async fn rollback_topics(
        &self,
        request: Request<pb::RollbackTopicsRequest>,
    ) -> std::result::Result<Response<pb::RollbackTopicsResponse>, Status> {
        let change = request.into_inner().change.unwrap_or_default();
        let results = self.change_stages(change, Direction::Rollback).await?;
        ok(pb::RollbackTopicsResponse { results })
    }

    async fn add_topics(
        &self,
        request: Request<pb::AddTopicsRequest>,
    ) -> std::result::Result<Response<pb::AddTopicsResponse>, Status> {
        let req = request.into_inner();
        if req.topics.is_empty() {
            return Err(SyncError::InvalidArgument("no topics given".into()).into());
        }
        for topic in &req.topics {
            validate_topic(topic).map_err(|e| SyncError::Core(e.into()))?;
        }
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        if task.value.state.is_terminal() {
            return Err(SyncError::FailedPrecondition(format!(
                "task {} is {}: no topics can be added",
                task.value.id,
                task.value.state.as_str()
            ))
            .into());
        }
        if req.dry_run {
            let present: std::collections::BTreeSet<String> =
                items::task_topic_names(store.as_ref(), &req.task_id)
                    .await?
                    .into_iter()
                    .collect();
            let (already_present, added) =
                req.topics.into_iter().partition(|t| present.contains(t));
            return ok(pb::AddTopicsResponse {
                added,
                already_present,
            });
        }
        let actor = actor_or_anonymous(req.actor);
        let states = req
            .topics
            .iter()
            .map(|t| TopicState::initial(&req.task_id, t, &actor))
            .collect();
        let outcome = store
            .add_topics(&req.task_id, states)
            .await
            .map_err(SyncError::from)?;
        ok(pb::AddTopicsResponse {
            added: outcome.added.into_iter().map(|t| t.value.topic).collect(),
            already_present: outcome
                .already_present
                .into_iter()
                .map(|t| t.value.topic)
                .collect(),
        })
    }

    async fn remove_topics(
        &self,
        request: Request<pb::RemoveTopicsRequest>,
    ) -> std::result::Result<Response<pb::RemoveTopicsResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        ensure_accepts_changes(&task.value)?;
        let mut removed = Vec::new();
        let mut refused_topics = Vec::new();
        for topic_ref in req.topics {
            let current = match store.get_topic(&req.task_id, &topic_ref.topic).await {
                Ok(c) => c,
                Err(err) => {
                    refused_topics.push(refused(topic_ref.topic, None, err));
                    continue;
                }
            };
            if current.value.stage != Stage::Initial {
                let stage = current.value.stage;
                refused_topics.push(refused(
                    topic_ref.topic,
                    Some(stage),
                    format!("only INITIAL topics can be removed; this one is {stage}: roll it back first"),
                ));
                continue;
            }
            let expected = match topic_ref.expected_revision {
                0 => current.revision,
                rev => rev,
            };
            if req.dry_run {
                if expected == current.revision {
                    removed.push(topic_ref.topic);
                } else {
                    refused_topics.push(refused(
                        topic_ref.topic,
                        Some(Stage::Initial),
                        format!(
                            "changed concurrently: expected revision {expected}, now {}",
                            current.revision
                        ),
                    ));
                }
                continue;
            }
            match store
                .remove_topic(&req.task_id, &topic_ref.topic, expected)
                .await
            {
                Ok(()) => removed.push(topic_ref.topic),
                Err(err) => {
                    refused_topics.push(refused(topic_ref.topic, Some(Stage::Initial), err))
                }
            }
        }
        ok(pb::RemoveTopicsResponse {
            removed,
            refused: refused_topics,
        })
    }

    async fn pause_task(
        &self,
        request: Request<pb::PauseTaskRequest>,
    ) -> std::result::Result<Response<pb::PauseTaskResponse>, Status> {
        let req = request.into_inner();
        let task = set_state(
            &self.store,
            &req.task_id,
            TaskState::Running,
            TaskState::Paused,
            req.dry_run,
        )
        .await?;
        tracing::info!(task = %req.task_id, actor = %actor_or_anonymous(req.actor), "task paused");
        ok(pb::PauseTaskResponse { task: Some(task) })
    }

    async fn resume_task(
        &self,
        request: Request<pb::ResumeTaskRequest>,
    ) -> std::result::Result<Response<pb::ResumeTaskResponse>, Status> {
        let req = request.into_inner();
        let task = set_state(
            &self.store,
            &req.task_id,
            TaskState::Paused,
            TaskState::Running,
            req.dry_run,
        )
        .await?;
        tracing::info!(task = %req.task_id, actor = %actor_or_anonymous(req.actor), "task resumed");
        ok(pb::ResumeTaskResponse { task: Some(task) })
    }

    async fn rollback_task(
        &self,
        request: Request<pb::RollbackTaskRequest>,
    ) -> std::result::Result<Response<pb::RollbackTaskResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let topics: Vec<pb::TopicRef> = all_topics(store.as_ref(), &req.task_id)
            .await?
            .into_iter()
            .filter(|t| t.value.stage != Stage::Initial)
            .map(|t| pb::TopicRef {
                topic: t.value.topic,
                expected_revision: t.revision,
            })
            .collect();
        if topics.is_empty() {
            store
                .get_task(&req.task_id)
                .await
                .map_err(SyncError::from)?;
            return ok(pb::RollbackTaskResponse {
                results: Vec::new(),
            });
        }
        let change = pb::StageChangeRequest {
            task_id: req.task_id,
            topics,
            force: req.force,
            actor: req.actor,
            reason: "whole-task rollback".into(),
            dry_run: req.dry_run,
        };
        let results = self.change_stages(change, Direction::Rollback).await?;
        ok(pb::RollbackTaskResponse { results })
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> std::result::Result<Response<pb::CompleteTaskResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        let done = self
            .complete(
                store.as_ref(),
                task,
                actor_or_anonymous(req.actor),
                req.dry_run,
            )
            .await?;
        ok(pb::CompleteTaskResponse { task: Some(done) })
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> std::result::Result<Response<pb::ReconcileResponse>, Status> {
        ok(MigrationTasks::reconcile(self, request.into_inner()).await?)
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> std::result::Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(SyncError::from)?;
        store
            .get_task(&req.task_id)
            .await
            .map_err(SyncError::from)?;
        let page = store
            .list_audit(&req.task_id, page_request(req.page_size, req.page_token)?)
            .await
            .map_err(SyncError::from)?;
        ok(pb::ListAuditRecordsResponse {
            records: page
                .items
                .iter()
                .filter(|r| req.topic.is_empty() || r.topic == req.topic)
                .map(audit_to_pb)
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }
}

/// Moves a task from state `from` to `to` with a compare-and-swap on its revision; the new
/// revision fences any stage change decided under the old state.
async fn set_state(
    slot: &StoreSlot,
    task_id: &str,
    from: TaskState,
    to: TaskState,
    dry_run: bool,
) -> Result<pb::MigrationTask> {
    let store = slot.get()?;
    let task = store.get_task(task_id).await?;
    if task.value.state != from {
        return Err(SyncError::FailedPrecondition(format!(
            "task {task_id} is {}, not {}",
            task.value.state.as_str(),
            from.as_str()
        )));
    }
    if dry_run {
        return MigrationTasks::task_response(store.as_ref(), &task).await;
    }
    let mut updated = task.value.clone();
    updated.state = to;
    updated.updated_at_ms = now_ms();
    let saved = store.update_task(updated, task.revision).await?;
    MigrationTasks::task_response(store.as_ref(), &saved).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::readiness::{Fact, ReadinessPolicy, TopicFacts, assess_both};

    const NOW: i64 = 1_700_000_100_000;
    const MAX_AGE: Duration = DEFAULT_READINESS_MAX_AGE;

    fn record(
        stage: Stage,
        revision: i64,
        checked_at_ms: i64,
        facts: &TopicFacts,
    ) -> ReadinessRecord {
        let (next, previous) = assess_both(stage, facts, &ReadinessPolicy::default());
        ReadinessRecord {
            task_id: "t".into(),
            topic: "T".into(),
            stage,
            topic_revision: revision,
            next,
            previous,
            checked_at_ms,
            source_watch: None,
        }
    }

    fn clear() -> TopicFacts {
        TopicFacts::all_clear(Duration::from_secs(120), Duration::from_secs(60))
    }

    fn step(from: Stage, dir: Direction) -> (Stage, Stage) {
        (from, from.step(dir).unwrap())
    }

    #[test]
    fn gate_allows_only_fresh_ready_readiness_of_the_current_revision() {
        let adv = Direction::Advance;
        let ok = record(Stage::DualRead, 7, NOW - 5_000, &clear());
        let fwd = step(Stage::DualRead, adv);
        assert!(matches!(
            gate(Some(&ok), 7, fwd, adv, NOW, MAX_AGE),
            Gate::Ready(_)
        ));
        // Rollback uses the other half of the record.
        let back = step(Stage::DualRead, Direction::Rollback);
        assert!(matches!(
            gate(Some(&ok), 7, back, Direction::Rollback, NOW, MAX_AGE),
            Gate::Ready(r) if r.to_stage == pb_common::Stage::Initial as i32
        ));

        let refused = |g: Gate| match g {
            Gate::Refused { why, readiness } => (why, readiness),
            Gate::Ready(_) => panic!("must be refused"),
        };
        let (why, r) = refused(gate(None, 7, fwd, adv, NOW, MAX_AGE));
        assert!(
            why.contains("readiness of DUAL_READ -> DUAL_WRITE is unknown") && r.is_none(),
            "{why}"
        );
        // Measured for an older revision (the stage changed since): stale.
        let (why, _) = refused(gate(Some(&ok), 9, fwd, adv, NOW, MAX_AGE));
        assert!(
            why.contains("revision 7") && why.contains("revision 9"),
            "{why}"
        );
        // Too old, or from too far in the future.
        let old = record(Stage::DualRead, 7, NOW - 31_000, &clear());
        let (why, r) = refused(gate(Some(&old), 7, fwd, adv, NOW, MAX_AGE));
        assert!(why.contains("31.0 s ago") && r.is_some(), "{why}");
        let future = record(Stage::DualRead, 7, NOW + 60_000, &clear());
        refused(gate(Some(&future), 7, fwd, adv, NOW, MAX_AGE));
        // Not ready: the codes and details are in the error, the readiness is returned.
        let facts = TopicFacts {
            target_topic_exists: Fact::Known(false),
            dwell: Some(Duration::from_secs(3)),
            ..clear()
        };
        let blocked = record(Stage::DualRead, 7, NOW - 1_000, &facts);
        let (why, r) = refused(gate(Some(&blocked), 7, fwd, adv, NOW, MAX_AGE));
        assert!(
            why.starts_with("not ready for DUAL_READ -> DUAL_WRITE ("),
            "{why}"
        );
        assert!(
            why.contains("DWELL_TOO_SHORT") && why.contains("TOPIC_NOT_IMPORTED"),
            "{why}"
        );
        let r = r.unwrap();
        assert!(!r.ready && r.reasons.len() == 2);
        assert_eq!(
            r.reasons[0].code,
            pb_common::ReadinessReasonCode::DwellTooShort as i32
        );
    }

    #[test]
    fn every_reason_code_maps_to_its_api_name() {
        for code in ReasonCode::ALL {
            let wire = reason_code_to_pb(code);
            assert_eq!(
                wire.as_str_name()
                    .trim_start_matches("READINESS_REASON_CODE_"),
                code.as_str()
            );
            // 5, 6 and 7 are deprecated on the wire: only their replacements are sent.
            assert!(!matches!(wire as i32, 0 | 5..=7), "{code} -> {wire:?}");
        }
        for name in [
            "TOPIC_NOT_IMPORTED",
            "GROUP_NOT_IMPORTED",
            "CLIENTS_NOT_SWITCHED",
            "CONSUMERS_NOT_ON_TARGET",
            "SOURCE_BACKLOG",
            "SOURCE_STILL_WRITTEN",
            "TARGET_BACKLOG",
            "DWELL_TOO_SHORT",
            "PENDING_DELAY_MESSAGES",
            "PENDING_TRANSACTIONS",
            "RETRY_OR_DLQ_BACKLOG",
            "BROKER_NAME_COLLISION",
            "ROUTER_UNAVAILABLE",
        ] {
            let code: ReasonCode = name.parse().unwrap();
            assert_eq!(
                reason_code_to_pb(code).as_str_name(),
                format!("READINESS_REASON_CODE_{name}")
            );
        }
    }

    #[test]
    fn namesrv_lists_are_checked() {
        assert!(validate_namesrv_addrs("source", "127.0.0.1:9876;10.0.0.2:9876").is_ok());
        assert!(validate_namesrv_addrs("source", "").is_err());
        let err = validate_namesrv_addrs("source", "127.0.0.1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("127.0.0.1"), "{err}");
        assert!(validate_namesrv_addrs("source", "h:0").is_err());
        assert!(validate_namesrv_addrs("source", "h:99999").is_err());
    }

    #[test]
    fn cluster_names_name_the_bad_character() {
        assert!(validate_cluster_name("target", "ClusterB").is_ok());
        let err = validate_cluster_name("target", "a/b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'/'") && err.contains("at 1"), "{err}");
        assert!(validate_cluster_name("target", "").is_err());
    }
}
