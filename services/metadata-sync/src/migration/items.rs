//! Step 2 (import metadata): the source inventory, the task's items and their import state.
//!
//! Items are the source's user topics and groups from the task's last scan, plus anything
//! created by hand. Imports run as ordinary import tasks (same engine, same per-item results
//! read back from the target); the migration task remembers their ids, and an item's state
//! is the overlay of their results: IMPORTED once any import put it on the target, FAILED
//! when the last attempt failed and none succeeded, NOT_IMPORTED otherwise. Topics that
//! reach the target join the task at INITIAL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;
use ferry_core::{ItemKind, ItemResult, MigrationStep, TopicClass};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_scanner::{Inventory, SourceSpec};
use ferry_store::{FerryStore, ImportItem, MigrationTask, TopicState, Versioned};

use super::extra::{InventoryRef, TaskExtra};
use super::{MigrationTasks, all_topics, ensure_accepts_changes};
use crate::error::{Result, SyncError};
use crate::import::ImportTasks;
use crate::import::source::{GroupSpec, ImportInput, TopicSpec};
use ferry_store::now_ms;

/// How long an import call waits for its import task; items still pending after that are
/// reported as such and finish in the background.
const IMPORT_WAIT: Duration = Duration::from_secs(120);
/// Scans kept per source for migration tasks.
const KEEP_SNAPSHOTS: usize = 20;
/// Attempts to record an import id on a task that other calls change at the same time.
const RECORD_ATTEMPTS: usize = 5;

/// One item of the task with its import state.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemState {
    pub kind: ItemKind,
    pub name: String,
    pub state: pb::MigrationItemState,
    /// The last terminal import result, if any import touched it.
    pub last: Option<ImportItem>,
}

/// The listing order of items (topics, then groups, then roles, each by name) as a string
/// that compares in that order: the page token of `ListMigrationItems`.
pub fn page_key(item: &ItemState) -> String {
    format!("{}/{}", kind_rank(item.kind), item.name)
}

fn kind_rank(kind: ItemKind) -> u8 {
    match kind {
        ItemKind::Topic => 0,
        ItemKind::Group => 1,
        ItemKind::Role => 2,
    }
}

/// Overlays import results (oldest first) on the inventory's items.
pub fn overlay(inventory: Option<&Inventory>, imports: &[Vec<ImportItem>]) -> Vec<ItemState> {
    let mut items: BTreeMap<(u8, String), ItemState> = BTreeMap::new();
    let key = |kind: ItemKind, name: &str| (kind_rank(kind), name.to_string());
    if let Some(inv) = inventory {
        for t in inv.topics.iter().filter(|t| t.class == TopicClass::User) {
            items.insert(
                key(ItemKind::Topic, &t.name),
                ItemState {
                    kind: ItemKind::Topic,
                    name: t.name.clone(),
                    state: pb::MigrationItemState::NotImported,
                    last: None,
                },
            );
        }
        for g in inv.groups.iter().filter(|g| !g.system) {
            items.insert(
                key(ItemKind::Group, &g.name),
                ItemState {
                    kind: ItemKind::Group,
                    name: g.name.clone(),
                    state: pb::MigrationItemState::NotImported,
                    last: None,
                },
            );
        }
    }
    for item in imports.iter().flatten() {
        if !item.result.is_terminal() {
            continue;
        }
        let entry = items
            .entry(key(item.kind, &item.source_name))
            .or_insert_with(|| ItemState {
                kind: item.kind,
                name: item.source_name.clone(),
                state: pb::MigrationItemState::NotImported,
                last: None,
            });
        let on_target = matches!(
            item.result,
            ItemResult::Success | ItemResult::AlreadyExistsSkipped
        );
        if on_target {
            entry.state = pb::MigrationItemState::Imported;
        } else if entry.state != pb::MigrationItemState::Imported {
            entry.state = pb::MigrationItemState::Failed;
        }
        entry.last = Some(item.clone());
    }
    items.into_values().collect()
}

pub fn item_to_pb(item: &ItemState) -> pb::MigrationItem {
    let (last_result, reason, notices) = match &item.last {
        Some(last) => (
            crate::import::pb::result_to_pb(last.result) as i32,
            last.reason.clone().unwrap_or_default(),
            last.notices.clone(),
        ),
        None => (
            pb_common::ItemResult::Unspecified as i32,
            String::new(),
            Vec::new(),
        ),
    };
    pb::MigrationItem {
        kind: crate::import::pb::kind_to_pb(item.kind) as i32,
        name: item.name.clone(),
        state: item.state as i32,
        last_result,
        reason,
        notices,
    }
}

/// Steps in which metadata can be imported: from step 2 on, so topics created on the source
/// during the migration can still join the task.
fn ensure_import_step(task: &MigrationTask) -> Result<()> {
    match task.step {
        MigrationStep::ImportMetadata
        | MigrationStep::SwitchAccessPoint
        | MigrationStep::GrayMigration => Ok(()),
        step => Err(SyncError::FailedPrecondition(format!(
            "task {} is at step {}: metadata is imported from step 2 (IMPORT_METADATA) on",
            task.id,
            step.as_str()
        ))),
    }
}

impl MigrationTasks {
    fn importer(&self) -> Result<&ImportTasks> {
        self.imports.as_ref().ok_or_else(|| {
            SyncError::FailedPrecondition(
                "this server runs no importer: run migration tasks on ferry-metadata-sync or ferry standalone".into(),
            )
        })
    }

    /// The task's last inventory, if it has one.
    pub(super) async fn inventory_of(&self, extra: &TaskExtra) -> Result<Option<Inventory>> {
        match &extra.inventory {
            Some(inv) => Ok(Some(
                self.importer()?.load_inventory(&inv.snapshot_id).await?,
            )),
            None => Ok(None),
        }
    }

    /// Every item of the task with its state.
    pub(super) async fn items(&self, task: &MigrationTask) -> Result<Vec<ItemState>> {
        let inventory = self.inventory_of(&TaskExtra::of(task)).await?;
        self.items_with(task, inventory.as_ref()).await
    }

    /// The task's items as `inventory` (instead of its last stored scan) would make them.
    pub(super) async fn items_with(
        &self,
        task: &MigrationTask,
        inventory: Option<&Inventory>,
    ) -> Result<Vec<ItemState>> {
        let extra = TaskExtra::of(task);
        let importer = self.importer()?;
        let mut results = Vec::with_capacity(extra.imports.len());
        for id in &extra.imports {
            results.push(importer.items_of(id).await?);
        }
        Ok(overlay(inventory, &results))
    }

    /// Scans the source, stores the scan and keeps its id on the task (a dry run only scans).
    pub(super) async fn refresh_inventory(
        &self,
        store: &dyn FerryStore,
        task_id: &str,
        dry_run: bool,
    ) -> Result<(Versioned<MigrationTask>, Inventory)> {
        let importer = self.importer()?;
        let task = store.get_task(task_id).await?;
        ensure_accepts_changes(&task.value)?;
        ensure_import_step(&task.value)?;
        let extra = TaskExtra::of(&task.value);
        let source = SourceSpec {
            namesrv_addrs: task.value.source_namesrv.clone(),
            cluster_name: Some(task.value.source_cluster.clone()),
            credentials: extra
                .source_credentials
                .as_ref()
                .map(|c| ferry_remoting::Credentials::new(&c.access_key, &c.secret_key)),
        };
        let inventory = self
            .engine
            .scan(&source, None, None, &|_| {})
            .await
            .map_err(|e| SyncError::FailedPrecondition(format!("cannot scan the source: {e}")))?;
        if dry_run {
            return Ok((task, inventory));
        }
        let snapshot_id = importer.store_inventory(&inventory, KEEP_SNAPSHOTS).await?;
        let inventory_ref = InventoryRef {
            snapshot_id: snapshot_id.clone(),
            at_ms: inventory.taken_at_ms,
            missing: inventory.missing.clone(),
        };
        let saved = update_extra(store, task_id, |extra| {
            extra.inventory = Some(inventory_ref.clone());
        })
        .await?;
        tracing::info!(task = %task_id, snapshot = %snapshot_id, topics = inventory.topics.len(), groups = inventory.groups.len(), "source inventory refreshed");
        Ok((saved, inventory))
    }

    /// Imports the named items (or every item not imported yet) through an import task and
    /// waits for it; imported topics join the task at INITIAL.
    pub(super) async fn import_items(
        &self,
        store: &dyn FerryStore,
        req: pb::ImportMigrationItemsRequest,
    ) -> Result<Vec<ferry_api::metadata_sync::v1::ImportItem>> {
        let task = store.get_task(&req.task_id).await?;
        ensure_accepts_changes(&task.value)?;
        ensure_import_step(&task.value)?;
        // Auto-scan: the first import scans the source if nobody did yet (a dry run scans
        // without keeping the scan).
        let (task, scanned) = if TaskExtra::of(&task.value).inventory.is_none() {
            let (task, inventory) = self
                .refresh_inventory(store, &req.task_id, req.dry_run)
                .await?;
            (task, Some(inventory))
        } else {
            (task, None)
        };
        if req.dry_run {
            return self
                .import_dry_run(&task.value, scanned.as_ref(), &req)
                .await;
        }
        let (topics, groups) = if req.all {
            let items = self.items(&task.value).await?;
            let pick = |kind| {
                items
                    .iter()
                    .filter(|i| i.kind == kind && i.state != pb::MigrationItemState::Imported)
                    .map(|i| i.name.clone())
                    .collect::<Vec<_>>()
            };
            (pick(ItemKind::Topic), pick(ItemKind::Group))
        } else {
            (req.topics, req.groups)
        };
        if topics.is_empty() && groups.is_empty() {
            if req.all {
                return Ok(Vec::new());
            }
            return Err(SyncError::InvalidArgument(
                "name topics or groups to import, or set all".into(),
            ));
        }
        let Some(inventory) = TaskExtra::of(&task.value).inventory else {
            return Err(SyncError::FailedPrecondition(
                "the source has not been scanned: run RefreshSourceInventory".into(),
            ));
        };
        // The selection is applied here: an import request's empty list means "all".
        let mut input = self
            .importer()?
            .snapshot_input(&inventory.snapshot_id)
            .await?;
        let unknown: Vec<&String> = topics
            .iter()
            .filter(|t| !input.topics.iter().any(|s| s.name() == t.as_str()))
            .chain(
                groups
                    .iter()
                    .filter(|g| !input.groups.iter().any(|s| s.name() == g.as_str())),
            )
            .collect();
        if !unknown.is_empty() {
            return Err(SyncError::InvalidArgument(format!(
                "not user topics or groups of the source's last scan: {}; refresh the inventory, or create the item by hand",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        input
            .topics
            .retain(|t| topics.iter().any(|n| n == t.name()));
        input
            .groups
            .retain(|g| groups.iter().any(|n| n == g.name()));
        let request = self.import_request(&task.value);
        self.run_import(store, &task.value, request, Some(input))
            .await
    }

    /// The items an import would take, checked against the scan, each answered PENDING.
    async fn import_dry_run(
        &self,
        task: &MigrationTask,
        scanned: Option<&Inventory>,
        req: &pb::ImportMigrationItemsRequest,
    ) -> Result<Vec<ferry_api::metadata_sync::v1::ImportItem>> {
        let items = match scanned {
            Some(inv) => self.items_with(task, Some(inv)).await?,
            None => self.items(task).await?,
        };
        let wanted = |kind: ItemKind, names: &[String]| -> Result<Vec<String>> {
            if req.all {
                return Ok(items
                    .iter()
                    .filter(|i| i.kind == kind && i.state != pb::MigrationItemState::Imported)
                    .map(|i| i.name.clone())
                    .collect());
            }
            let unknown: Vec<&str> = names
                .iter()
                .filter(|n| !items.iter().any(|i| i.kind == kind && &i.name == *n))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(SyncError::InvalidArgument(format!(
                    "not user {} of the source's last scan: {}; refresh the inventory, or create the item by hand",
                    kind.plural(),
                    unknown.join(", ")
                )));
            }
            Ok(names.to_vec())
        };
        let topics = wanted(ItemKind::Topic, &req.topics)?;
        let groups = wanted(ItemKind::Group, &req.groups)?;
        if topics.is_empty() && groups.is_empty() && !req.all {
            return Err(SyncError::InvalidArgument(
                "name topics or groups to import, or set all".into(),
            ));
        }
        Ok(topics
            .into_iter()
            .map(|n| (ItemKind::Topic, n))
            .chain(groups.into_iter().map(|n| (ItemKind::Group, n)))
            .enumerate()
            .map(|(seq, (kind, name))| pending_item(seq, kind, name))
            .collect())
    }

    /// Creates one topic or group on the target by hand (not from the source's scan).
    pub(super) async fn create_item(
        &self,
        store: &dyn FerryStore,
        req: pb::CreateMigrationItemRequest,
    ) -> Result<ferry_api::metadata_sync::v1::ImportItem> {
        let task = store.get_task(&req.task_id).await?;
        ensure_accepts_changes(&task.value)?;
        ensure_import_step(&task.value)?;
        let kind = crate::import::pb::kind_from_pb(req.kind)?.ok_or_else(|| {
            SyncError::InvalidArgument(
                "kind is required: ITEM_KIND_TOPIC or ITEM_KIND_GROUP".into(),
            )
        })?;
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(SyncError::InvalidArgument("name is required".into()));
        }
        if req.queue_nums < 0 {
            return Err(SyncError::InvalidArgument(
                "queue_nums must be 0 (default) or positive".into(),
            ));
        }
        let mut input = ImportInput {
            source: format!("created by hand in migration task {}", task.value.id),
            ..ImportInput::default()
        };
        match kind {
            ItemKind::Topic => {
                let mut config = TopicConfig {
                    topic_name: name.clone(),
                    order: req.order,
                    ..TopicConfig::default()
                };
                if req.queue_nums > 0 {
                    config.read_queue_nums = req.queue_nums;
                    config.write_queue_nums = req.queue_nums;
                }
                input.topics.push(TopicSpec { config });
            }
            ItemKind::Group => {
                input.groups.push(GroupSpec {
                    config: SubscriptionGroupConfig {
                        group_name: name.clone(),
                        consume_message_orderly: req.order,
                        ..SubscriptionGroupConfig::default()
                    },
                    protocol: None,
                });
            }
            ItemKind::Role => {
                return Err(SyncError::InvalidArgument(
                    "roles are imported with ImportRoles".into(),
                ));
            }
        }
        if req.dry_run {
            return Ok(pending_item(0, kind, name));
        }
        let request = self.import_request(&task.value);
        let mut items = self
            .run_import(store, &task.value, request, Some(input))
            .await?;
        items.pop().ok_or_else(|| {
            SyncError::FailedPrecondition(format!("the import of {name} produced no result"))
        })
    }

    /// A cluster-migration import into the task's target; the items come as a prepared
    /// input (the request's empty topic and group lists mean "all of it").
    fn import_request(&self, task: &MigrationTask) -> pb::CreateImportTaskRequest {
        pb::CreateImportTaskRequest {
            r#type: pb::ImportTaskType::ClusterMigration as i32,
            target: Some(pb_common::ClusterEndpoint {
                cluster_name: task.target_cluster.clone(),
                namesrv_addrs: task.target_namesrv.clone(),
                credentials: TaskExtra::of(task).target_credentials.map(|c| {
                    pb_common::Credentials {
                        access_key: c.access_key,
                        secret_key: c.secret_key,
                    }
                }),
            }),
            ..Default::default()
        }
    }

    async fn run_import(
        &self,
        store: &dyn FerryStore,
        task: &MigrationTask,
        request: pb::CreateImportTaskRequest,
        prepared: Option<ImportInput>,
    ) -> Result<Vec<ferry_api::metadata_sync::v1::ImportItem>> {
        let importer = self.importer()?;
        let created = importer.create_with(request, prepared).await?;
        // Remember the import before waiting: a restart while it runs still shows its items.
        update_extra(store, &task.id, |extra| {
            if !extra.imports.contains(&created.id) {
                extra.imports.push(created.id.clone());
            }
        })
        .await?;
        let (finished, items) = importer.wait_finished(&created.id, IMPORT_WAIT).await?;
        let imported: BTreeSet<String> = items
            .iter()
            .filter(|i| {
                i.kind == ItemKind::Topic
                    && matches!(
                        i.result,
                        ItemResult::Success | ItemResult::AlreadyExistsSkipped
                    )
            })
            .map(|i| i.source_name.clone())
            .collect();
        if !imported.is_empty() {
            let states = imported
                .iter()
                .map(|t| TopicState::initial(&task.id, t, "import"))
                .collect();
            store.add_topics(&task.id, states).await?;
        }
        tracing::info!(task = %task.id, import = %created.id, status = %finished.status, topics_joined = imported.len(), "migration items imported");
        Ok(items.iter().map(crate::import::pb::item_to_pb).collect())
    }
}

impl MigrationTasks {
    /// Rescans the source of every running task in steps 2–4 every `every`, so topics and
    /// groups created on the source during the migration show up as NOT_IMPORTED items
    /// (and in `RefreshSourceInventory`'s answer) without anyone asking.
    pub fn start_rescans(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(e) = this.rescan_all().await {
                    tracing::warn!(error = %e, "source rescan failed; trying again later");
                }
            }
        })
    }

    async fn rescan_all(&self) -> Result<()> {
        let store = self.store.get().map_err(SyncError::from)?;
        let mut page = ferry_store::PageRequest::first(ferry_store::PageRequest::MAX_SIZE);
        loop {
            let got = store.list_tasks(page.clone()).await?;
            for task in got.items.iter().filter(|t| {
                t.value.state == ferry_core::TaskState::Running
                    && ensure_import_step(&t.value).is_ok()
            }) {
                let before: BTreeSet<String> = self
                    .items(&task.value)
                    .await?
                    .into_iter()
                    .map(|i| i.name)
                    .collect();
                match self
                    .refresh_inventory(store.as_ref(), &task.value.id, false)
                    .await
                {
                    Ok((saved, _)) => {
                        let new: Vec<String> = self
                            .items(&saved.value)
                            .await?
                            .into_iter()
                            .filter(|i| !before.contains(&i.name))
                            .map(|i| i.name)
                            .collect();
                        if !new.is_empty() {
                            tracing::info!(task = %task.value.id, new = ?new, "new source topics/groups found; import them into the task");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(task = %task.value.id, error = %e, "source rescan of task failed")
                    }
                }
            }
            match got.next_page_token {
                Some(token) => page.page_token = Some(token),
                None => return Ok(()),
            }
        }
    }
}

/// An item a dry run would import: PENDING, nothing decided yet.
fn pending_item(
    seq: usize,
    kind: ItemKind,
    name: String,
) -> ferry_api::metadata_sync::v1::ImportItem {
    ferry_api::metadata_sync::v1::ImportItem {
        kind: crate::import::pb::kind_to_pb(kind) as i32,
        source_name: name.clone(),
        name,
        result: pb_common::ItemResult::Pending as i32,
        reason: "dry run: nothing created".into(),
        seq: seq as i64,
        ..Default::default()
    }
}

/// Applies `change` to the task's extra fields with a compare-and-swap, re-reading on a
/// conflict with another writer.
pub(super) async fn update_extra(
    store: &dyn FerryStore,
    task_id: &str,
    change: impl Fn(&mut TaskExtra),
) -> Result<Versioned<MigrationTask>> {
    let mut last = None;
    for _ in 0..RECORD_ATTEMPTS {
        let task = store.get_task(task_id).await?;
        let mut updated = task.value.clone();
        let mut extra = TaskExtra::of(&updated);
        change(&mut extra);
        extra.store(&mut updated);
        updated.updated_at_ms = now_ms();
        match store.update_task(updated, task.revision).await {
            Ok(saved) => return Ok(saved),
            Err(e @ ferry_store::StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map(SyncError::from).unwrap_or_else(|| {
        SyncError::FailedPrecondition(format!("task {task_id} keeps changing; try again"))
    }))
}

/// Task topics not on the target yet, and groups of the inventory not imported.
pub fn import_gaps(items: &[ItemState], task_topics: &[String]) -> (Vec<String>, Vec<String>) {
    let imported: BTreeSet<(ItemKind, &str)> = items
        .iter()
        .filter(|i| i.state == pb::MigrationItemState::Imported)
        .map(|i| (i.kind, i.name.as_str()))
        .collect();
    let topics = task_topics
        .iter()
        .filter(|t| !imported.contains(&(ItemKind::Topic, t.as_str())))
        .cloned()
        .collect();
    let groups = items
        .iter()
        .filter(|i| i.kind == ItemKind::Group && i.state != pb::MigrationItemState::Imported)
        .map(|i| i.name.clone())
        .collect();
    (topics, groups)
}

/// Names of the task's topics.
pub(super) async fn task_topic_names(store: &dyn FerryStore, task_id: &str) -> Result<Vec<String>> {
    Ok(all_topics(store, task_id)
        .await?
        .into_iter()
        .map(|t| t.value.topic)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: ItemKind, name: &str, result: ItemResult) -> ImportItem {
        ImportItem {
            task_id: "it".into(),
            seq: 0,
            kind,
            name: name.into(),
            source_name: name.into(),
            namespace: String::new(),
            result,
            cause: None,
            reason: Some(format!("{result:?}")),
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
    fn an_item_stays_imported_once_any_import_put_it_on_the_target() {
        let first = vec![
            item(ItemKind::Topic, "A", ItemResult::Failed),
            item(ItemKind::Topic, "B", ItemResult::Success),
            item(ItemKind::Group, "G", ItemResult::Pending),
        ];
        let second = vec![
            item(ItemKind::Topic, "A", ItemResult::AlreadyExistsSkipped),
            item(ItemKind::Topic, "B", ItemResult::QuotaExceeded),
        ];
        let got = overlay(None, &[first.clone(), second]);
        let state = |n: &str| got.iter().find(|i| i.name == n).map(|i| i.state);
        assert_eq!(state("A"), Some(pb::MigrationItemState::Imported));
        assert_eq!(state("B"), Some(pb::MigrationItemState::Imported));
        // A pending item is not a result yet.
        assert_eq!(state("G"), None);
        let only_first = overlay(None, &[first]);
        assert_eq!(
            only_first.iter().find(|i| i.name == "A").map(|i| i.state),
            Some(pb::MigrationItemState::Failed)
        );
    }

    #[test]
    fn page_keys_follow_the_listing_order_across_kinds() {
        let items = overlay(
            None,
            &[vec![
                item(ItemKind::Group, "Aardvark", ItemResult::Success),
                item(ItemKind::Topic, "Zebra", ItemResult::Success),
                item(ItemKind::Topic, "Apple", ItemResult::Success),
            ]],
        );
        let keys: Vec<String> = items.iter().map(page_key).collect();
        assert_eq!(items.last().map(|i| i.kind), Some(ItemKind::Group));
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }

    #[test]
    fn gaps_name_task_topics_and_groups_not_on_the_target() {
        let items = overlay(
            None,
            &[vec![
                item(ItemKind::Topic, "A", ItemResult::Success),
                item(ItemKind::Group, "G1", ItemResult::Success),
                item(ItemKind::Group, "G2", ItemResult::Failed),
            ]],
        );
        let (topics, groups) = import_gaps(&items, &["A".into(), "C".into()]);
        assert_eq!(topics, vec!["C".to_string()]);
        assert_eq!(groups, vec!["G2".to_string()]);
    }
}
