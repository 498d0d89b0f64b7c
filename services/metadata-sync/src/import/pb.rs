//! Conversions between import records and the gRPC messages.

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;
use ferry_core::{ItemKind, ItemResult, ProgressCounts, TaskStatus};
use ferry_store::imports::CreateMode;
use ferry_store::{ImportItem, ImportTask, ImportTaskType, TargetQuota};

use crate::convert::timestamp;
use crate::error::{Result, SyncError};

pub fn task_type_from_pb(value: i32) -> Result<ImportTaskType> {
    match pb::ImportTaskType::try_from(value) {
        Ok(pb::ImportTaskType::ClusterMigration) => Ok(ImportTaskType::ClusterMigration),
        Ok(pb::ImportTaskType::IntoNamespace) => Ok(ImportTaskType::IntoNamespace),
        _ => Err(SyncError::InvalidArgument(
            "type is required: IMPORT_TASK_TYPE_CLUSTER_MIGRATION or IMPORT_TASK_TYPE_INTO_NAMESPACE"
                .into(),
        )),
    }
}

pub fn task_type_to_pb(t: ImportTaskType) -> pb::ImportTaskType {
    match t {
        ImportTaskType::ClusterMigration => pb::ImportTaskType::ClusterMigration,
        ImportTaskType::IntoNamespace => pb::ImportTaskType::IntoNamespace,
    }
}

pub fn create_mode_from_pb(value: i32) -> Result<CreateMode> {
    match pb::CreateMode::try_from(value) {
        Ok(pb::CreateMode::Unspecified) => Ok(CreateMode::Auto),
        Ok(pb::CreateMode::Batch) => Ok(CreateMode::Batch),
        Ok(pb::CreateMode::OneByOne) => Ok(CreateMode::OneByOne),
        Err(_) => Err(SyncError::InvalidArgument(format!(
            "unknown create_mode {value}"
        ))),
    }
}

pub fn create_mode_to_pb(mode: CreateMode) -> pb::CreateMode {
    match mode {
        CreateMode::Auto => pb::CreateMode::Unspecified,
        CreateMode::Batch => pb::CreateMode::Batch,
        CreateMode::OneByOne => pb::CreateMode::OneByOne,
    }
}

pub fn status_to_pb(s: TaskStatus) -> pb_common::TaskStatus {
    match s {
        TaskStatus::Pending => pb_common::TaskStatus::Pending,
        TaskStatus::Running => pb_common::TaskStatus::Running,
        TaskStatus::Succeeded => pb_common::TaskStatus::Succeeded,
        TaskStatus::PartiallyFailed => pb_common::TaskStatus::PartiallyFailed,
        TaskStatus::Failed => pb_common::TaskStatus::Failed,
    }
}

pub fn result_to_pb(r: ItemResult) -> pb_common::ItemResult {
    match r {
        ItemResult::Pending => pb_common::ItemResult::Pending,
        ItemResult::Success => pb_common::ItemResult::Success,
        ItemResult::AlreadyExistsSkipped => pb_common::ItemResult::AlreadyExistsSkipped,
        ItemResult::QuotaExceeded => pb_common::ItemResult::QuotaExceeded,
        ItemResult::InvalidName => pb_common::ItemResult::InvalidName,
        ItemResult::Failed => pb_common::ItemResult::Failed,
    }
}

pub fn result_from_pb(value: i32) -> Result<ItemResult> {
    match pb_common::ItemResult::try_from(value) {
        Ok(pb_common::ItemResult::Pending) => Ok(ItemResult::Pending),
        Ok(pb_common::ItemResult::Success) => Ok(ItemResult::Success),
        Ok(pb_common::ItemResult::AlreadyExistsSkipped) => Ok(ItemResult::AlreadyExistsSkipped),
        Ok(pb_common::ItemResult::QuotaExceeded) => Ok(ItemResult::QuotaExceeded),
        Ok(pb_common::ItemResult::InvalidName) => Ok(ItemResult::InvalidName),
        Ok(pb_common::ItemResult::Failed) => Ok(ItemResult::Failed),
        _ => Err(SyncError::InvalidArgument(format!(
            "unknown item result {value} in the filter"
        ))),
    }
}

pub fn kind_to_pb(k: ItemKind) -> pb_common::ItemKind {
    match k {
        ItemKind::Topic => pb_common::ItemKind::Topic,
        ItemKind::Group => pb_common::ItemKind::Group,
        ItemKind::Role => pb_common::ItemKind::Role,
    }
}

/// `None` for ITEM_KIND_UNSPECIFIED (no filter).
pub fn kind_from_pb(value: i32) -> Result<Option<ItemKind>> {
    match pb_common::ItemKind::try_from(value) {
        Ok(pb_common::ItemKind::Unspecified) => Ok(None),
        Ok(pb_common::ItemKind::Topic) => Ok(Some(ItemKind::Topic)),
        Ok(pb_common::ItemKind::Group) => Ok(Some(ItemKind::Group)),
        Ok(pb_common::ItemKind::Role) => Ok(Some(ItemKind::Role)),
        Err(_) => Err(SyncError::InvalidArgument(format!(
            "unknown item kind {value} in the filter"
        ))),
    }
}

pub fn progress_to_pb(c: &ProgressCounts) -> pb_common::ProgressCounts {
    pb_common::ProgressCounts {
        total: c.total as i64,
        pending: c.pending as i64,
        success: c.success as i64,
        skipped: c.skipped as i64,
        quota_exceeded: c.quota_exceeded as i64,
        invalid_name: c.invalid_name as i64,
        failed: c.failed as i64,
    }
}

fn clamp_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn task_to_pb(t: &ImportTask) -> pb::ImportTask {
    pb::ImportTask {
        task_id: t.id.clone(),
        r#type: task_type_to_pb(t.task_type) as i32,
        namespace: t.namespace.clone().unwrap_or_default(),
        target_cluster: t.target_cluster.clone(),
        target_namesrv_addrs: t.target_namesrv.clone(),
        topic_count: t.topic_count as i64,
        group_count: t.group_count as i64,
        status: status_to_pb(t.status) as i32,
        progress: Some(progress_to_pb(&t.progress)),
        created_at: timestamp(t.created_at_ms),
        finished_at: timestamp(t.finished_at_ms),
        error: t.error.clone().unwrap_or_default(),
        create_mode: create_mode_to_pb(t.create_mode) as i32,
        source: t.source.clone(),
        topic_limit: clamp_i32(t.topic_limit),
        group_limit: clamp_i32(t.group_limit),
        runs: t.runs as i32,
        notices: t.notices.clone(),
        updated_at: timestamp(t.updated_at_ms),
    }
}

pub fn item_to_pb(i: &ImportItem) -> pb::ImportItem {
    pb::ImportItem {
        kind: kind_to_pb(i.kind) as i32,
        name: i.name.clone(),
        namespace: i.namespace.clone(),
        result: result_to_pb(i.result) as i32,
        reason: i.reason.clone().unwrap_or_default(),
        notices: i.notices.clone(),
        read_queue_nums: i.read_queue_nums as i32,
        write_queue_nums: i.write_queue_nums as i32,
        seq: i64::from(i.seq),
        source_name: i.source_name.clone(),
        attempts: i.attempts as i32,
    }
}

pub fn quota_to_pb(cluster: &str, q: Option<&TargetQuota>) -> pb::TargetQuota {
    pb::TargetQuota {
        target_cluster: cluster.to_string(),
        topic_quota: q.and_then(|q| q.topics).unwrap_or(0) as i64,
        group_quota: q.and_then(|q| q.groups).unwrap_or(0) as i64,
        updated_at: q.and_then(|q| timestamp(q.updated_at_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for r in ItemResult::ALL {
            assert_eq!(result_from_pb(result_to_pb(r) as i32).unwrap(), r);
        }
        for k in ItemKind::ALL {
            assert_eq!(kind_from_pb(kind_to_pb(k) as i32).unwrap(), Some(k));
        }
        assert_eq!(kind_from_pb(0).unwrap(), None);
        assert!(result_from_pb(0).is_err());
        for m in [CreateMode::Auto, CreateMode::Batch, CreateMode::OneByOne] {
            assert_eq!(create_mode_from_pb(create_mode_to_pb(m) as i32).unwrap(), m);
        }
        for t in [
            ImportTaskType::ClusterMigration,
            ImportTaskType::IntoNamespace,
        ] {
            assert_eq!(task_type_from_pb(task_type_to_pb(t) as i32).unwrap(), t);
        }
        assert!(task_type_from_pb(0).is_err());
    }
}
