//! What a migration task keeps beside its core record (in the store's `extra` field): the
//! step-1 probe, the step-2 inventory, the import tasks it ran, the source's admin keys, the
//! imported roles and the step history. Typed here so handlers never poke at raw JSON.

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;
use ferry_core::MigrationStep;
use ferry_store::MigrationTask;
use ferry_store::imports::StoredCredentials;
use serde::{Deserialize, Serialize};

use super::roles::StoredRole;
use crate::convert::{step_to_pb, timestamp};

/// The last step-1 probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectResult {
    /// `ferry.common.v1.ConnectOutcome` number.
    pub outcome: i32,
    pub message: String,
    pub broker_name_collisions: Vec<String>,
    pub at_ms: i64,
    /// The source answered as an ACL-protected cluster.
    #[serde(default)]
    pub acl_enabled: bool,
}

/// The last step-2 scan of the source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryRef {
    pub snapshot_id: String,
    pub at_ms: i64,
    /// Parts of the source that could not be read (empty = complete).
    #[serde(default)]
    pub missing: Vec<String>,
}

/// One step change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub from: MigrationStep,
    pub to: MigrationStep,
    pub actor: String,
    pub forced: bool,
    #[serde(default)]
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// Everything in a task's `extra`. Unknown keys are kept verbatim.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskExtra {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryRef>,
    /// Import tasks run for this migration task, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    /// Admin keys of the source (ACL on): the secret is never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_credentials: Option<StoredCredentials>,
    /// Keys Ferry uses on the target (ACL on): the secret is never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_credentials: Option<StoredCredentials>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<StoredRole>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// An earlier source of this target had ACL on, so clients need AK/SK on the target.
    #[serde(default)]
    pub clients_need_credentials: bool,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl TaskExtra {
    /// The task's extra fields; a value this release cannot read counts as empty (logged).
    pub fn of(task: &MigrationTask) -> TaskExtra {
        if task.extra.is_null() {
            return TaskExtra::default();
        }
        serde_json::from_value(task.extra.clone()).unwrap_or_else(|e| {
            tracing::warn!(task = %task.id, error = %e, "task extra fields unreadable; treated as empty");
            TaskExtra::default()
        })
    }

    /// Writes these fields back into `task`.
    pub fn store(self, task: &mut MigrationTask) {
        task.extra = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
    }

    /// Fills the API fields that come from here (never a secret).
    pub fn fill(&self, out: &mut pb::MigrationTask) {
        if let Some(connect) = &self.connect {
            out.connect_outcome = connect.outcome;
            out.source_acl_enabled = connect.acl_enabled;
        }
        out.clients_need_credentials = self.clients_need_credentials;
        out.source_credentials =
            self.source_credentials
                .as_ref()
                .map(|c| pb_common::CredentialsView {
                    access_key: c.access_key.clone(),
                    secret_key_set: !c.secret_key.is_empty(),
                });
        if let Some(inventory) = &self.inventory {
            out.inventory_snapshot_id = inventory.snapshot_id.clone();
            out.inventory_taken_at = timestamp(inventory.at_ms);
        }
        out.step_history = self
            .steps
            .iter()
            .map(|s| pb::StepChange {
                from_step: step_to_pb(s.from) as i32,
                to_step: step_to_pb(s.to) as i32,
                actor: s.actor.clone(),
                forced: s.forced,
                reason: s.reason.clone().unwrap_or_default(),
                at: timestamp(s.at_ms),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_survive_a_round_trip_and_secrets_stay_out_of_debug() {
        let mut task = MigrationTask {
            id: "mt-1".into(),
            name: "n".into(),
            source_cluster: "A".into(),
            source_namesrv: "127.0.0.1:1".into(),
            target_cluster: "B".into(),
            target_namesrv: "127.0.0.1:2".into(),
            target_type: ferry_core::TargetType::V5,
            step: MigrationStep::Connect,
            state: ferry_core::TaskState::Running,
            created_at_ms: 1,
            updated_at_ms: 1,
            created_by: "t".into(),
            extra: serde_json::json!({"later_feature": {"x": 1}}),
        };
        let mut extra = TaskExtra::of(&task);
        extra.source_credentials = Some(StoredCredentials {
            access_key: "admin".into(),
            secret_key: "s3cr3t-value".into(),
        });
        extra.clone().store(&mut task);
        assert_eq!(task.extra["later_feature"]["x"], 1);
        let back = TaskExtra::of(&task);
        assert_eq!(
            back.source_credentials.as_ref().unwrap().secret_key,
            "s3cr3t-value"
        );
        assert!(!format!("{back:?}").contains("s3cr3t-value"));
        let mut out = pb::MigrationTask::default();
        back.fill(&mut out);
        assert!(!format!("{out:?}").contains("s3cr3t-value"));
        assert!(out.source_credentials.unwrap().secret_key_set);
    }
}
