//! `ImportTaskService`: import tasks that create topics and consumer groups on a target
//! cluster, with one result per item (PRODUCT.md §2).
//!
//! - [`source`]: the engine's input, a list of topic and group specs, and the adapters from
//!   export JSON, `.xlsx` and scanner snapshots (bad input is refused before anything is
//!   stored or created, naming the file and field or row);
//! - [`plan`]: selection, target names and namespaces, per-task limit, naming rules, queue
//!   clamping — the results decided before touching the target;
//! - [`engine`]: the run against the target (pre-check, quota, batches, read-back);
//! - [`target`]: the target cluster's masters and admin calls;
//! - [`slot`]: the store handle; [`pb`]: gRPC conversions.
//!
//! A task runs under a lease-bound claim in the store. Creating or retrying a task claims and
//! starts it at once; a resume loop ([`ImportTasks::start_resuming`]) picks up every task with
//! work left whose claim is free — after a restart, or when another replica died — so a
//! restart in the middle of a task finishes it without creating anything twice.

pub mod engine;
pub mod pb;
pub mod plan;
pub mod slot;
pub mod source;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_api::metadata_sync::v1 as api;
use ferry_api::metadata_sync::v1::create_import_task_request::Source;
use ferry_api::metadata_sync::v1::import_task_service_server::{
    ImportTaskService, ImportTaskServiceServer,
};
use ferry_core::{TaskLimits, TaskStatus, validate_namespace};
use ferry_remoting::{ClientConfig, NameServerClient, RemotingClient};
use ferry_store::imports::{ItemCause, StoredCredentials, new_import_id};
use ferry_store::{
    ImportClaim, ImportItem, ImportStore, ImportTask, ImportTaskType, ImportWrite, ItemFilter,
    PageRequest, StoreError, TargetQuota,
};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::convert::page_request;
use crate::error::{Result, SyncError};
pub use engine::EngineSettings;
use ferry_store::now_ms;
pub use slot::{ImportBackend, ImportSlot, ImportSlotWriter};
use target::Timeouts;

/// Largest request accepted (an uploaded file travels in it).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// Default page sizes (the proto's `0 = server default`).
const TASK_PAGE: u32 = 50;
const ITEM_PAGE: u32 = 100;
/// Longest cluster name accepted (it names store keys).
const MAX_CLUSTER_NAME_LEN: usize = 127;

/// How imports run. The defaults suit production; tests may shorten the TTL and sweep.
#[derive(Debug, Clone, Copy)]
pub struct ImportSettings {
    /// Items per broker batch (and per in-flight mark in the store).
    pub batch_items: usize,
    /// Lease of a runner's claim: how long a dead runner's task waits before another
    /// runner resumes it.
    pub claim_ttl_secs: i64,
    /// How often the resume loop looks for tasks with work left and a free claim.
    pub sweep_every: Duration,
    /// Tasks run at once by this process.
    pub max_parallel_runs: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            batch_items: 250,
            claim_ttl_secs: 5,
            sweep_every: Duration::from_secs(2),
            max_parallel_runs: 4,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl ImportSettings {
    fn engine(&self) -> EngineSettings {
        EngineSettings {
            batch_items: self.batch_items,
            timeouts: Timeouts {
                connect: self.connect_timeout,
                request: self.request_timeout,
            },
        }
    }
}

/// The import-task gRPC service and the runners of its tasks.
#[derive(Clone)]
pub struct ImportTasks {
    inner: Arc<Inner>,
}

struct Inner {
    slot: ImportSlot,
    settings: ImportSettings,
    runs: Arc<Semaphore>,
    /// Tasks this process is running (claimed), so the sweep does not try them again.
    running: Mutex<HashSet<String>>,
    /// One run at a time per target cluster, so two tasks cannot both fit the same quota room.
    targets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImportTasks {
    pub fn new(slot: ImportSlot, settings: ImportSettings) -> Self {
        ImportTasks {
            inner: Arc::new(Inner {
                slot,
                runs: Arc::new(Semaphore::new(settings.max_parallel_runs.max(1))),
                settings,
                running: Mutex::new(HashSet::new()),
                targets: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The tonic service to add to a server.
    pub fn into_service(self) -> ImportTaskServiceServer<Self> {
        ImportTaskServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Starts the resume loop: once the store is reachable, and then every
    /// [`ImportSettings::sweep_every`], runs each task with work left whose claim is free.
    pub fn start_resuming(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let Some(store) = this.inner.slot.wait().await else {
                return;
            };
            let mut ticker = tokio::time::interval(this.inner.settings.sweep_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = this.sweep(store.as_ref()).await {
                    tracing::warn!(error = %e, "import resume sweep failed; trying again later");
                }
            }
        })
    }

    /// One pass of the resume loop.
    async fn sweep(&self, store: &dyn ImportBackend) -> Result<()> {
        for id in store.active_imports().await? {
            if self.inner.runs.available_permits() == 0 {
                return Ok(());
            }
            if lock(&self.inner.running).contains(&id) || store.import_claimed(&id).await? {
                continue;
            }
            if let Some(claim) = store
                .claim_import(&id, self.inner.settings.claim_ttl_secs)
                .await?
            {
                tracing::info!(task = %id, "resuming import task");
                self.spawn_run(claim);
            }
        }
        Ok(())
    }

    /// Runs a claimed task in the background.
    fn spawn_run(&self, claim: ImportClaim) {
        let this = self.clone();
        let id = claim.task_id().to_string();
        lock(&self.inner.running).insert(id.clone());
        tokio::spawn(async move {
            let outcome = this.run_claimed(claim).await;
            lock(&this.inner.running).remove(&id);
            match outcome {
                Ok(status) => tracing::info!(task = %id, %status, "import task ran"),
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "import run stopped; it resumes later")
                }
            }
        });
    }

    async fn run_claimed(&self, claim: ImportClaim) -> Result<TaskStatus> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let _permit =
            self.inner.runs.clone().acquire_owned().await.map_err(|_| {
                SyncError::FailedPrecondition("import runner is shutting down".into())
            })?;
        let target = store
            .get_import(claim.task_id())
            .await?
            .value
            .target_cluster;
        let target_lock = lock(&self.inner.targets).entry(target).or_default().clone();
        let _serial = target_lock.lock().await;
        let store: Arc<dyn ImportStore> = store;
        engine::run(store, claim, self.inner.settings.engine()).await
    }

    /// Claims a task just created or reopened and starts it; if another runner holds it,
    /// that runner (or the resume loop) finishes it.
    async fn start(&self, store: &dyn ImportBackend, id: &str) -> Result<()> {
        match store
            .claim_import(id, self.inner.settings.claim_ttl_secs)
            .await?
        {
            Some(claim) => self.spawn_run(claim),
            None => tracing::info!(task = %id, "import task is claimed elsewhere"),
        }
        Ok(())
    }

    /// Creates a task from the request's source and starts it.
    async fn create(&self, req: api::CreateImportTaskRequest) -> Result<ImportTask> {
        self.create_with(req, None).await
    }

    /// Creates a task and starts it. `prepared`, when given, is the input instead of the
    /// request's source (items a migration task creates by hand).
    ///
    /// With `req.dry_run` nothing is stored or started: the task comes back as it would be
    /// created, with an empty id (see [`ImportTasks::plan_with`], which also returns its
    /// items).
    pub async fn create_with(
        &self,
        req: api::CreateImportTaskRequest,
        prepared: Option<source::ImportInput>,
    ) -> Result<ImportTask> {
        if req.dry_run {
            return Ok(self.plan_with(req, prepared).await?.0);
        }
        let received = std::time::Instant::now();
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let now = now_ms();
        let id = new_import_id(now);
        let (task, items) = self.build(req, prepared, &id, now).await?;
        let parsed_in = received.elapsed();
        let stored = store.create_import(task, items).await?;
        tracing::info!(
            task = %id, target = %stored.value.target_cluster,
            topics = stored.value.topic_count, groups = stored.value.group_count,
            source = %stored.value.source,
            plan_ms = parsed_in.as_millis() as u64,
            total_ms = received.elapsed().as_millis() as u64,
            "import task created"
        );
        if let Err(e) = self.start(store.as_ref(), &id).await {
            // Stored with its active marker: the resume loop starts it.
            tracing::warn!(task = %id, error = %e, "import task not started now; the resume loop will");
        }
        Ok(stored.value)
    }

    /// A dry run of [`ImportTasks::create_with`] (whatever `req.dry_run` says): the request
    /// is checked, the source parsed and the plan run exactly as for a real create, and the
    /// would-be task (empty id, PENDING, no timestamps) and its items come back. Nothing is
    /// stored or claimed and the target is not contacted, so results the run decides
    /// (already on the target, the target's quota, its errors) stay PENDING. The store is
    /// read only for a snapshot source.
    pub async fn plan_with(
        &self,
        req: api::CreateImportTaskRequest,
        prepared: Option<source::ImportInput>,
    ) -> Result<(ImportTask, Vec<ImportItem>)> {
        let (task, items) = self.build(req, prepared, "", 0).await?;
        tracing::info!(
            target = %task.target_cluster, topics = task.topic_count, groups = task.group_count,
            source = %task.source, "import task planned (dry run): nothing stored"
        );
        Ok((task, items))
    }

    /// The task and items a create stores under `id`: the request checked, the source
    /// parsed, the plan run. Reads the store only for a snapshot source.
    async fn build(
        &self,
        req: api::CreateImportTaskRequest,
        prepared: Option<source::ImportInput>,
        id: &str,
        now: i64,
    ) -> Result<(ImportTask, Vec<ImportItem>)> {
        let task_type = pb::task_type_from_pb(req.r#type)?;
        let namespace = match task_type {
            ImportTaskType::IntoNamespace => {
                if req.namespace.is_empty() {
                    return Err(SyncError::InvalidArgument(
                        "namespace is required for IMPORT_TASK_TYPE_INTO_NAMESPACE".into(),
                    ));
                }
                validate_namespace(&req.namespace).map_err(ferry_core::CoreError::from)?;
                Some(req.namespace.clone())
            }
            ImportTaskType::ClusterMigration => {
                if !req.namespace.is_empty() {
                    return Err(SyncError::InvalidArgument(
                        "namespace is only for IMPORT_TASK_TYPE_INTO_NAMESPACE: a cluster migration takes each name's namespace from the name itself".into(),
                    ));
                }
                None
            }
        };
        let target = req.target.ok_or_else(|| {
            SyncError::InvalidArgument("target is required (NameServers and cluster name)".into())
        })?;
        check_target(&target)?;
        let credentials = match target.credentials {
            Some(c) if !c.access_key.is_empty() => {
                if c.secret_key.is_empty() {
                    return Err(SyncError::InvalidArgument(
                        "target credentials have an access key but no secret key".into(),
                    ));
                }
                Some(StoredCredentials {
                    access_key: c.access_key,
                    secret_key: c.secret_key,
                })
            }
            _ => None,
        };
        if req.topic_limit < 0 || req.group_limit < 0 {
            return Err(SyncError::InvalidArgument(
                "topic_limit and group_limit must be 0 (default 1000) or positive".into(),
            ));
        }
        let limits = TaskLimits::from_requested(req.topic_limit.into(), req.group_limit.into());
        let create_mode = pb::create_mode_from_pb(req.create_mode)?;
        let mut notices = Vec::new();
        let input = match (prepared, req.source) {
            (Some(input), _) => input,
            (None, source) => match source {
                Some(Source::ExportJson(bytes)) => {
                    let file = file_name(&req.file_name, ferry_metadata::EXPORT_FILE_NAME);
                    source::from_export_json(&file, &bytes)?
                }
                Some(Source::Xlsx(bytes)) => {
                    let file = file_name(&req.file_name, ferry_metadata::XLSX_FILE_NAME);
                    source::from_xlsx(&file, &bytes)?
                }
                Some(Source::SnapshotId(scan_id)) => {
                    let store = self.inner.slot.get().map_err(SyncError::from)?;
                    let header = store.get_snapshot(&scan_id).await?;
                    let items = store.snapshot_items(&scan_id).await?;
                    let (input, left_out) = source::from_snapshot(&header, &items)?;
                    if left_out > 0 {
                        notices.push(format!(
                        "{left_out} system, retry or DLQ topics and system groups of the snapshot were left out"
                    ));
                    }
                    input
                }
                None => {
                    return Err(SyncError::InvalidArgument(
                        "a source is required: export_json, xlsx or snapshot_id".into(),
                    ));
                }
            },
        };
        let source_text = input.source.clone();
        let planned = plan::plan(
            input,
            &plan::PlanRequest {
                task_id: id,
                task_type,
                namespace: namespace.as_deref(),
                topics: &req.topics,
                groups: &req.groups,
                limits,
            },
        )?;
        notices.extend(planned.notices);
        let task = ImportTask {
            id: id.to_string(),
            task_type,
            namespace,
            target_cluster: target.cluster_name,
            target_namesrv: target.namesrv_addrs,
            target_credentials: credentials,
            create_mode,
            source: source_text,
            topic_limit: limits.topics as u64,
            group_limit: limits.groups as u64,
            topic_count: planned.topic_count,
            group_count: planned.group_count,
            status: TaskStatus::Pending,
            progress: planned.items.iter().map(|i| i.result).collect(),
            runs: 0,
            notices,
            error: None,
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: 0,
            extra: serde_json::Value::Null,
        };
        Ok((task, planned.items))
    }

    /// Waits (at most `within`) until task `id` has no work left, then returns it with its
    /// items. Items still pending when time is up come back as they are.
    pub async fn wait_finished(
        &self,
        id: &str,
        within: Duration,
    ) -> Result<(ImportTask, Vec<ImportItem>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let store = self.inner.slot.get().map_err(SyncError::from)?;
            let task = store.get_import(id).await?.value;
            if task.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                let items = store.import_items(id).await?;
                return Ok((task, items));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The import input of a stored snapshot (user topics and groups only).
    pub async fn snapshot_input(&self, scan_id: &str) -> Result<source::ImportInput> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let header = store.get_snapshot(scan_id).await?;
        let items = store.snapshot_items(scan_id).await?;
        Ok(source::from_snapshot(&header, &items)?.0)
    }

    /// Every item of task `id`.
    pub async fn items_of(&self, id: &str) -> Result<Vec<ImportItem>> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        Ok(store.import_items(id).await?)
    }

    /// Stores a scan as a snapshot (keeping the newest `keep` of its source) and returns
    /// its id.
    pub async fn store_inventory(
        &self,
        inventory: &ferry_scanner::Inventory,
        keep: usize,
    ) -> Result<String> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let scan_id = ferry_store::new_scan_id(inventory.taken_at_ms);
        let snapshot = inventory
            .to_snapshot(scan_id.clone())
            .map_err(|e| SyncError::FailedPrecondition(format!("cannot store the scan: {e}")))?;
        store.put_snapshot(snapshot).await?;
        store
            .prune_snapshots(&inventory.source_id, keep.max(1))
            .await?;
        Ok(scan_id)
    }

    /// A stored snapshot's inventory.
    pub async fn load_inventory(&self, scan_id: &str) -> Result<ferry_scanner::Inventory> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let header = store.get_snapshot(scan_id).await?;
        let items = store.snapshot_items(scan_id).await?;
        ferry_scanner::Inventory::from_snapshot(&header, &items)
            .map_err(|e| SyncError::FailedPrecondition(format!("snapshot {scan_id}: {e}")))
    }

    async fn retry(&self, id: &str, dry_run: bool) -> Result<ImportTask> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        // NOT_FOUND before claiming anything.
        store.get_import(id).await?;
        if dry_run {
            return retry_dry_run(store.as_ref(), id).await;
        }
        let Some(claim) = store
            .claim_import(id, self.inner.settings.claim_ttl_secs)
            .await?
        else {
            return Err(still_running(id));
        };
        // Read under the claim: a runner that just finished has written its last state.
        let (current, mut items) = match async {
            Ok::<_, StoreError>((
                store.get_import(id).await?.value,
                store.import_items(id).await?,
            ))
        }
        .await
        {
            Ok(read) => read,
            Err(e) => {
                let _ = claim.release().await;
                return Err(e.into());
            }
        };
        let reopened = reopen(&mut items);
        let mut task = current;
        if !reopened_task(&mut task, &items) {
            claim.release().await?;
            tracing::info!(task = %id, "retry: nothing to run again");
            return Ok(task);
        }
        store
            .write_import(
                &claim,
                ImportWrite {
                    items: &reopened,
                    task: Some(&task),
                    active: Some(true),
                },
            )
            .await?;
        tracing::info!(task = %id, items = reopened.len(), "import task retried");
        self.spawn_run(claim);
        Ok(task)
    }
}

/// Dry run of a retry: the task as the retry would leave it, with a notice counting what
/// would run again per kind. Reads only; a running task is refused as a real retry is.
async fn retry_dry_run(store: &dyn ImportBackend, id: &str) -> Result<ImportTask> {
    if store.import_claimed(id).await? {
        return Err(still_running(id));
    }
    let mut task = store.get_import(id).await?.value;
    let mut items = store.import_items(id).await?;
    let reopened = reopen(&mut items);
    let notice = if reopened_task(&mut task, &items) {
        let still_pending =
            items.iter().filter(|i| !i.result.is_terminal()).count() - reopened.len();
        let mut notice = format!("dry run: {} would run again", per_kind(&reopened));
        if still_pending > 0 {
            notice.push_str(&format!(
                ", with {} not run yet",
                count_of(still_pending, "item", "items")
            ));
        }
        notice
    } else {
        "dry run: nothing would run again".to_string()
    };
    tracing::info!(task = %id, reopened = reopened.len(), "retry planned (dry run): nothing written");
    task.notices.push(notice);
    Ok(task)
}

fn still_running(id: &str) -> SyncError {
    SyncError::FailedPrecondition(format!(
        "import task {id} is running; retry it once it has finished"
    ))
}

/// Reopens the items a retry runs again (failures with a retryable cause) and returns them.
fn reopen(items: &mut [ImportItem]) -> Vec<ImportItem> {
    let mut reopened = Vec::new();
    for item in items {
        if item.result.is_failure() && item.cause.is_some_and(ItemCause::is_retryable) {
            item.result = ferry_core::ItemResult::Pending;
            item.cause = None;
            item.reason = None;
            item.in_flight = false;
            reopened.push(item.clone());
        }
    }
    reopened
}

/// Sets `task` as a retry leaves it, given its items after [`reopen`]; false (task left as
/// it is) when the retry has nothing to run.
fn reopened_task(task: &mut ImportTask, items: &[ImportItem]) -> bool {
    let has_work = items.iter().any(|i| !i.result.is_terminal());
    if !has_work && task.status.is_terminal() {
        return false;
    }
    task.progress = items.iter().map(|i| i.result).collect();
    task.status = TaskStatus::Pending;
    task.error = None;
    task.finished_at_ms = 0;
    true
}

/// "3 topics and 1 group", "no item".
fn per_kind(items: &[ImportItem]) -> String {
    let count = |kind| items.iter().filter(|i| i.kind == kind).count();
    let parts: Vec<String> = [
        (ferry_core::ItemKind::Topic, "topic", "topics"),
        (ferry_core::ItemKind::Group, "group", "groups"),
        (ferry_core::ItemKind::Role, "role", "roles"),
    ]
    .into_iter()
    .map(|(kind, one, many)| (count(kind), one, many))
    .filter(|(n, _, _)| *n > 0)
    .map(|(n, one, many)| count_of(n, one, many))
    .collect();
    match parts.as_slice() {
        [] => "no item".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn count_of(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn file_name(given: &str, default: &str) -> String {
    if given.trim().is_empty() {
        default.to_string()
    } else {
        given.trim().to_string()
    }
}

fn check_cluster_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(SyncError::InvalidArgument(
            "target.cluster_name is required: the cluster to create topics and groups on".into(),
        ));
    }
    if name.len() > MAX_CLUSTER_NAME_LEN || name.contains('/') || name.chars().any(char::is_control)
    {
        return Err(SyncError::InvalidArgument(format!(
            "cluster name {name:?} must be at most {MAX_CLUSTER_NAME_LEN} characters without '/' or control characters"
        )));
    }
    Ok(())
}

fn check_target(target: &ferry_api::common::v1::ClusterEndpoint) -> Result<()> {
    check_cluster_name(&target.cluster_name)?;
    if target.namesrv_addrs.trim().is_empty() {
        return Err(SyncError::InvalidArgument(
            "target.namesrv_addrs is required: \"host:port\", several joined by ';'".into(),
        ));
    }
    NameServerClient::new(
        &target.namesrv_addrs,
        RemotingClient::new(ClientConfig::default()),
    )
    .map_err(|e| SyncError::InvalidArgument(format!("target.namesrv_addrs: {e}")))?;
    Ok(())
}

fn task_id_of(id: &str) -> Result<&str> {
    if id.is_empty() {
        return Err(SyncError::InvalidArgument("task_id is required".into()));
    }
    Ok(id)
}

#[tonic::async_trait]
impl ImportTaskService for ImportTasks {
    #[tracing::instrument(skip_all)]
    async fn create_import_task(
        &self,
        request: Request<api::CreateImportTaskRequest>,
    ) -> Result<Response<api::CreateImportTaskResponse>, Status> {
        let req = request.into_inner();
        if req.dry_run {
            let (task, items) = self.plan_with(req, None).await?;
            return Ok(Response::new(api::CreateImportTaskResponse {
                task: Some(pb::task_to_pb(&task)),
                items: items.iter().map(pb::item_to_pb).collect(),
            }));
        }
        let task = self.create(req).await?;
        Ok(Response::new(api::CreateImportTaskResponse {
            task: Some(pb::task_to_pb(&task)),
            items: Vec::new(),
        }))
    }

    #[tracing::instrument(skip_all, fields(task = %request.get_ref().task_id))]
    async fn get_import_task(
        &self,
        request: Request<api::GetImportTaskRequest>,
    ) -> Result<Response<api::GetImportTaskResponse>, Status> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let id = task_id_of(&request.get_ref().task_id)?;
        let task = store.get_import(id).await.map_err(SyncError::from)?;
        Ok(Response::new(api::GetImportTaskResponse {
            task: Some(pb::task_to_pb(&task.value)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_import_tasks(
        &self,
        request: Request<api::ListImportTasksRequest>,
    ) -> Result<Response<api::ListImportTasksResponse>, Status> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let req = request.into_inner();
        let mut page = page_request(req.page_size, req.page_token)?;
        if page.page_size == 0 {
            page.page_size = TASK_PAGE;
        }
        let target = (!req.target_cluster.is_empty()).then_some(req.target_cluster.as_str());
        let got = store
            .list_imports(target, page)
            .await
            .map_err(SyncError::from)?;
        Ok(Response::new(api::ListImportTasksResponse {
            tasks: got.items.iter().map(pb::task_to_pb).collect(),
            next_page_token: got.next_page_token.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(task = %request.get_ref().task_id))]
    async fn list_import_items(
        &self,
        request: Request<api::ListImportItemsRequest>,
    ) -> Result<Response<api::ListImportItemsResponse>, Status> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let req = request.into_inner();
        let id = task_id_of(&req.task_id)?;
        let filter = ItemFilter {
            results: req
                .results
                .iter()
                .map(|r| pb::result_from_pb(*r))
                .collect::<Result<_>>()?,
            kind: pb::kind_from_pb(req.kind)?,
            name_contains: (!req.name_contains.is_empty()).then_some(req.name_contains.clone()),
        };
        let mut page: PageRequest = page_request(req.page_size, req.page_token.clone())?;
        if page.page_size == 0 {
            page.page_size = ITEM_PAGE;
        }
        // A missing task is NOT_FOUND, not an empty list.
        store.get_import(id).await.map_err(SyncError::from)?;
        let got = store
            .list_import_items(id, &filter, page)
            .await
            .map_err(SyncError::from)?;
        Ok(Response::new(api::ListImportItemsResponse {
            items: got.items.iter().map(pb::item_to_pb).collect(),
            next_page_token: got.next_page_token.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(task = %request.get_ref().task_id))]
    async fn retry_import_task(
        &self,
        request: Request<api::RetryImportTaskRequest>,
    ) -> Result<Response<api::RetryImportTaskResponse>, Status> {
        let req = request.into_inner();
        let id = task_id_of(&req.task_id)?;
        let task = self.retry(id, req.dry_run).await?;
        Ok(Response::new(api::RetryImportTaskResponse {
            task: Some(pb::task_to_pb(&task)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_target_quota(
        &self,
        request: Request<api::SetTargetQuotaRequest>,
    ) -> Result<Response<api::SetTargetQuotaResponse>, Status> {
        let req = request.into_inner();
        // A dry run stores nothing, so it does not need the store.
        let store = if req.dry_run {
            None
        } else {
            Some(self.inner.slot.get().map_err(SyncError::from)?)
        };
        let q = req
            .quota
            .ok_or_else(|| SyncError::InvalidArgument("quota is required".into()))?;
        check_cluster_name(&q.target_cluster)?;
        if q.topic_quota < 0 || q.group_quota < 0 {
            return Err(SyncError::InvalidArgument(
                "topic_quota and group_quota must be 0 (no quota) or positive".into(),
            )
            .into());
        }
        let positive = |n: i64| (n > 0).then_some(n as u64);
        let quota = TargetQuota {
            target_cluster: q.target_cluster.clone(),
            topics: positive(q.topic_quota),
            groups: positive(q.group_quota),
            updated_at_ms: 0,
        };
        let stored = match store {
            Some(store) => store
                .set_target_quota(quota)
                .await
                .map_err(SyncError::from)?,
            None => {
                tracing::info!(target = %quota.target_cluster, topics = ?quota.topics, groups = ?quota.groups, "target quota checked (dry run): nothing stored");
                quota
            }
        };
        Ok(Response::new(api::SetTargetQuotaResponse {
            quota: Some(pb::quota_to_pb(&q.target_cluster, Some(&stored))),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_target_quota(
        &self,
        request: Request<api::GetTargetQuotaRequest>,
    ) -> Result<Response<api::GetTargetQuotaResponse>, Status> {
        let store = self.inner.slot.get().map_err(SyncError::from)?;
        let cluster = request.into_inner().target_cluster;
        check_cluster_name(&cluster)?;
        let quota = store
            .target_quota(&cluster)
            .await
            .map_err(SyncError::from)?;
        Ok(Response::new(api::GetTargetQuotaResponse {
            quota: Some(pb::quota_to_pb(&cluster, quota.as_ref())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u32, kind: ferry_core::ItemKind) -> ImportItem {
        ImportItem {
            task_id: String::new(),
            seq,
            kind,
            name: format!("n{seq}"),
            source_name: format!("n{seq}"),
            namespace: "default".into(),
            result: ferry_core::ItemResult::Pending,
            cause: None,
            reason: None,
            notices: Vec::new(),
            read_queue_nums: 0,
            write_queue_nums: 0,
            spec: serde_json::Value::Null,
            in_flight: false,
            attempts: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn dry_run_notices_count_per_kind() {
        use ferry_core::ItemKind::{Group, Role, Topic};
        assert_eq!(per_kind(&[]), "no item");
        assert_eq!(per_kind(&[item(0, Group)]), "1 group");
        assert_eq!(
            per_kind(&[item(0, Topic), item(1, Topic), item(2, Group)]),
            "2 topics and 1 group"
        );
        assert_eq!(
            per_kind(&[item(0, Topic), item(1, Group), item(2, Role), item(3, Role)]),
            "1 topic, 1 group and 2 roles"
        );
    }

    #[test]
    fn retry_reopens_only_retryable_failures() {
        let mut items = vec![
            item(0, ferry_core::ItemKind::Topic),
            item(1, ferry_core::ItemKind::Topic),
            item(2, ferry_core::ItemKind::Group),
        ];
        items[0].result = ferry_core::ItemResult::Failed;
        items[0].cause = Some(ItemCause::TargetError);
        items[0].reason = Some("broker down".into());
        items[1].result = ferry_core::ItemResult::QuotaExceeded;
        items[1].cause = Some(ItemCause::TaskLimit);
        items[2].result = ferry_core::ItemResult::QuotaExceeded;
        items[2].cause = Some(ItemCause::TargetQuota);
        let reopened = reopen(&mut items);
        assert_eq!(reopened.iter().map(|i| i.seq).collect::<Vec<_>>(), [0, 2]);
        assert!(items[0].reason.is_none());
        assert_eq!(items[1].result, ferry_core::ItemResult::QuotaExceeded);
    }
}
