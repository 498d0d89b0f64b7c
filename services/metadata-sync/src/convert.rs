//! Conversions between the store's domain records and the gRPC messages.

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;
use ferry_core::{MigrationStep, TargetType, TaskState};
use ferry_store::{AuditRecord, MigrationTask, PageRequest, TopicState, Versioned};

pub use ferry_api::domain::{
    readiness_to_pb, reason_code_to_pb, stage_from_pb, stage_to_pb, timestamp,
};

use crate::error::{Result, SyncError};

pub fn step_to_pb(step: MigrationStep) -> pb::MigrationStep {
    match step {
        MigrationStep::Connect => pb::MigrationStep::Connect,
        MigrationStep::ImportMetadata => pb::MigrationStep::ImportMetadata,
        MigrationStep::SwitchAccessPoint => pb::MigrationStep::SwitchAccessPoint,
        MigrationStep::GrayMigration => pb::MigrationStep::GrayMigration,
        MigrationStep::Complete => pb::MigrationStep::Complete,
    }
}

pub fn state_to_pb(state: TaskState) -> pb::MigrationTaskState {
    match state {
        TaskState::Running => pb::MigrationTaskState::Running,
        TaskState::Paused => pb::MigrationTaskState::Paused,
        TaskState::Completed => pb::MigrationTaskState::Completed,
        TaskState::RolledBack => pb::MigrationTaskState::RolledBack,
    }
}

/// `None` for UNSPECIFIED (no filter).
pub fn state_from_pb(value: i32) -> Option<TaskState> {
    match pb::MigrationTaskState::try_from(value).ok()? {
        pb::MigrationTaskState::Unspecified => None,
        pb::MigrationTaskState::Running => Some(TaskState::Running),
        pb::MigrationTaskState::Paused => Some(TaskState::Paused),
        pb::MigrationTaskState::Completed => Some(TaskState::Completed),
        pb::MigrationTaskState::RolledBack => Some(TaskState::RolledBack),
    }
}

pub fn target_type_to_pb(t: TargetType) -> pb_common::TargetType {
    match t {
        TargetType::V4 => pb_common::TargetType::V4,
        TargetType::V5 => pb_common::TargetType::V5,
    }
}

pub fn target_type_from_pb(value: i32) -> Result<TargetType> {
    match pb_common::TargetType::try_from(value) {
        Ok(pb_common::TargetType::V4) => Ok(TargetType::V4),
        Ok(pb_common::TargetType::V5) => Ok(TargetType::V5),
        _ => Err(SyncError::InvalidArgument(
            "target_type is required: TARGET_TYPE_V4 (4.x) or TARGET_TYPE_V5 (5.x)".into(),
        )),
    }
}

pub fn page_request(page_size: i32, page_token: String) -> Result<PageRequest> {
    PageRequest::from_wire(page_size, page_token).map_err(SyncError::InvalidArgument)
}

pub fn task_to_pb(
    task: &Versioned<MigrationTask>,
    topics_per_stage: std::collections::HashMap<String, i64>,
) -> pb::MigrationTask {
    let t = &task.value;
    pb::MigrationTask {
        task_id: t.id.clone(),
        name: t.name.clone(),
        source_cluster: t.source_cluster.clone(),
        source_namesrv_addrs: t.source_namesrv.clone(),
        source_credentials: None,
        target_type: target_type_to_pb(t.target_type) as i32,
        target_cluster: t.target_cluster.clone(),
        target_namesrv_addrs: t.target_namesrv.clone(),
        step: step_to_pb(t.step) as i32,
        state: state_to_pb(t.state) as i32,
        topics_per_stage,
        revision: task.revision,
        created_at: timestamp(t.created_at_ms),
        updated_at: timestamp(t.updated_at_ms),
        created_by: t.created_by.clone(),
        // The step results, keys and history kept in `extra` are filled by the migration
        // service, which owns their layout.
        ..Default::default()
    }
}

pub fn topic_to_pb(topic: &Versioned<TopicState>) -> pb::TopicStage {
    pb::TopicStage {
        topic: topic.value.topic.clone(),
        stage: stage_to_pb(topic.value.stage) as i32,
        revision: topic.revision,
        updated_at: timestamp(topic.value.updated_at_ms),
        updated_by: topic.value.updated_by.clone(),
        next: None,
        previous: None,
    }
}

pub fn audit_to_pb(record: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        topic: record.topic.clone(),
        from_stage: stage_to_pb(record.from) as i32,
        to_stage: stage_to_pb(record.to) as i32,
        actor: record.actor.clone(),
        forced: record.forced,
        reason: record.reason.clone().unwrap_or_default(),
        at: timestamp(record.at_ms),
        revision: record.revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_page_size_is_invalid() {
        assert!(page_request(-1, String::new()).is_err());
        assert_eq!(
            page_request(5, "t".into()).unwrap().page_token.as_deref(),
            Some("t")
        );
    }
}
