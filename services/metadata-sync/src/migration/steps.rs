//! The task's steps and their gates.
//!
//! 1 → 2: the last probe reached every NameServer and broker of both clusters and no broker
//!        name exists in both (cannot be forced: nothing works without it).
//! 2 → 3: the source was scanned, the task has topics, every task topic and every source
//!        group is on the target.
//! 3 → 4: for every task topic, a fresh readiness measured by the health checker for the
//!        topic's current revision finds no client still on the source NameServer (and could
//!        prove it: routers answering, presence known).
//! 4 → 5: every topic is DONE (the same rule as CompleteTask, which also releases the target).
//!
//! Gates 2 → 3 and 3 → 4 may be forced (say, a 4.x source cannot list producers); a forced
//! change keeps what the gate found in the task's step history.

use std::time::Duration;

use ferry_core::readiness::ReasonCode;
use ferry_core::{MigrationStep, Stage};
use ferry_store::{FerryStore, MigrationTask, ReadinessRecord, Versioned};

use super::extra::{StepRecord, TaskExtra};
use super::items::{import_gaps, task_topic_names};
use super::{MigrationTasks, all_topics};
use crate::error::{Result, SyncError};
use ferry_store::now_ms;

/// Most names listed in a gate's answer; the rest are counted.
const MAX_LISTED: usize = 20;

fn listed(names: &[String]) -> String {
    let shown = names
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(MAX_LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Why a gate does not hold, or `None` when it does.
pub type GateFinding = Option<String>;

/// Step 1's gate.
pub fn connect_finding(task: &MigrationTask) -> GateFinding {
    let extra = TaskExtra::of(task);
    let Some(result) = extra.connect else {
        return Some(format!(
            "task {} has not connected its source yet: run ConnectSource first",
            task.id
        ));
    };
    if !result.broker_name_collisions.is_empty() {
        return Some(format!(
            "broker names exist in both clusters ({}): a seamless migration needs unique broker names; rename the target's brokers",
            result.broker_name_collisions.join(", ")
        ));
    }
    if result.outcome != ferry_api::common::v1::ConnectOutcome::Ok as i32 {
        let outcome = ferry_api::common::v1::ConnectOutcome::try_from(result.outcome)
            .map(|o| o.as_str_name())
            .unwrap_or("UNKNOWN");
        return Some(format!(
            "the last source check ended {outcome}: {}; fix it and run ConnectSource again",
            result.message
        ));
    }
    None
}

/// Reasons that say a topic's clients are not (provably) on the routers.
const NOT_SWITCHED: [ReasonCode; 3] = [
    ReasonCode::ClientsNotSwitched,
    ReasonCode::RouterUnavailable,
    ReasonCode::ClusterUnreachable,
];

/// Step 3's gate for one topic from its stored readiness.
pub fn switch_finding(
    topic: &str,
    revision: i64,
    record: Option<&ReadinessRecord>,
    now_ms: i64,
    max_age: Duration,
) -> GateFinding {
    let Some(record) = record else {
        return Some(format!(
            "{topic}: not measured yet (is ferry-health-check running?)"
        ));
    };
    if !record.is_for_revision(revision) || record.stage != Stage::Initial {
        return Some(format!("{topic}: last measurement is for an older state"));
    }
    let age = (now_ms - record.checked_at_ms).unsigned_abs();
    if age > max_age.as_millis() as u64 {
        return Some(format!(
            "{topic}: measured {:.1} s ago, more than the {:.1} s allowed",
            age as f64 / 1000.0,
            max_age.as_secs_f64()
        ));
    }
    let blocking: Vec<String> = record
        .next
        .reasons
        .iter()
        .filter(|r| NOT_SWITCHED.contains(&r.code))
        .map(|r| format!("{}: {}", r.code.as_str(), r.detail))
        .collect();
    (!blocking.is_empty()).then(|| format!("{topic}: {}", blocking.join("; ")))
}

impl MigrationTasks {
    /// Why the task may not leave its current step, or `None` when it may.
    pub(super) async fn step_finding(
        &self,
        store: &dyn FerryStore,
        task: &Versioned<MigrationTask>,
    ) -> Result<GateFinding> {
        let t = &task.value;
        Ok(match t.step {
            MigrationStep::Connect => connect_finding(t),
            MigrationStep::ImportMetadata => {
                if TaskExtra::of(t).inventory.is_none() {
                    return Ok(Some(
                        "the source has not been scanned yet: run RefreshSourceInventory and import its items".into(),
                    ));
                }
                let topics = task_topic_names(store, &t.id).await?;
                if topics.is_empty() {
                    return Ok(Some(
                        "the task has no topics yet: import topics (they join the task) or add them".into(),
                    ));
                }
                let items = self.items(t).await?;
                let (topics, groups) = import_gaps(&items, &topics);
                let mut gaps = Vec::new();
                if !topics.is_empty() {
                    gaps.push(format!(
                        "{} task topic(s) not on the target: {}",
                        topics.len(),
                        listed(&topics)
                    ));
                }
                if !groups.is_empty() {
                    gaps.push(format!(
                        "{} source group(s) not imported: {}",
                        groups.len(),
                        listed(&groups)
                    ));
                }
                (!gaps.is_empty()).then(|| gaps.join("; "))
            }
            MigrationStep::SwitchAccessPoint => {
                let topics = all_topics(store, &t.id).await?;
                if topics.is_empty() {
                    return Ok(Some("the task has no topics".into()));
                }
                let now = now_ms();
                let mut findings = Vec::new();
                for topic in &topics {
                    let record = store.get_readiness(&t.id, &topic.value.topic).await?;
                    if let Some(f) = switch_finding(
                        &topic.value.topic,
                        topic.revision,
                        record.as_ref(),
                        now,
                        self.readiness_max_age,
                    ) {
                        findings.push(f);
                    }
                }
                (!findings.is_empty()).then(|| {
                    format!(
                        "clients have not all moved to the routers: {}",
                        listed(&findings)
                    )
                })
            }
            MigrationStep::GrayMigration => {
                let not_done: Vec<String> = all_topics(store, &t.id)
                    .await?
                    .into_iter()
                    .filter(|topic| topic.value.stage != Stage::Done)
                    .map(|topic| format!("{} ({})", topic.value.topic, topic.value.stage))
                    .collect();
                (!not_done.is_empty())
                    .then(|| format!("not every topic is DONE: {}", listed(&not_done)))
            }
            MigrationStep::Complete => Some("COMPLETE is the last step".into()),
        })
    }

    /// Moves the task one step forward, or back, recording who, when and whether forced.
    pub(super) async fn change_step(
        &self,
        store: &dyn FerryStore,
        task: Versioned<MigrationTask>,
        to: MigrationStep,
        actor: String,
        forced_finding: Option<String>,
        reason: Option<String>,
    ) -> Result<Versioned<MigrationTask>> {
        let mut updated = task.value.clone();
        let from = updated.step;
        let mut extra = TaskExtra::of(&updated);
        let reason = match (&forced_finding, reason) {
            (Some(f), Some(r)) => Some(format!("{r} (gate: {f})")),
            (Some(f), None) => Some(format!("gate: {f}")),
            (None, r) => r,
        };
        extra.steps.push(StepRecord {
            from,
            to,
            actor: actor.clone(),
            forced: forced_finding.is_some(),
            reason,
            at_ms: now_ms(),
        });
        extra.store(&mut updated);
        updated.step = to;
        updated.updated_at_ms = now_ms();
        let saved = store.update_task(updated, task.revision).await?;
        if forced_finding.is_some() {
            tracing::warn!(task = %saved.value.id, from = from.as_str(), to = to.as_str(), %actor, "task step forced although its gate does not hold");
        } else {
            tracing::info!(task = %saved.value.id, from = from.as_str(), to = to.as_str(), %actor, "task step changed");
        }
        Ok(saved)
    }

    /// Why the task may not go back from its current step, or `None`.
    pub(super) async fn rollback_finding(
        &self,
        store: &dyn FerryStore,
        task: &MigrationTask,
    ) -> Result<GateFinding> {
        Ok(match task.step {
            MigrationStep::Connect => Some("CONNECT is the first step".into()),
            // Routers serve stages only from step 4; leaving it is safe once every topic is
            // back where clients started.
            MigrationStep::GrayMigration => {
                let moved: Vec<String> = all_topics(store, &task.id)
                    .await?
                    .into_iter()
                    .filter(|t| t.value.stage != Stage::Initial)
                    .map(|t| format!("{} ({})", t.value.topic, t.value.stage))
                    .collect();
                (!moved.is_empty()).then(|| {
                    format!(
                        "roll these topics back to INITIAL first (RollbackTask): {}",
                        listed(&moved)
                    )
                })
            }
            MigrationStep::Complete => {
                Some("the task is complete; its target has been released".into())
            }
            _ => None,
        })
    }
}

/// Only step 4 changes topic stages.
pub fn ensure_gray_step(task: &MigrationTask) -> Result<()> {
    if task.step == MigrationStep::GrayMigration {
        return Ok(());
    }
    Err(SyncError::FailedPrecondition(format!(
        "task {} is at step {}: topic stages change only in step 4 (GRAY_MIGRATION); advance the task's step first",
        task.id,
        task.step.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::readiness::{Readiness, Reason};

    fn record(revision: i64, checked_at_ms: i64, reasons: Vec<Reason>) -> ReadinessRecord {
        ReadinessRecord {
            task_id: "t".into(),
            topic: "T".into(),
            stage: Stage::Initial,
            topic_revision: revision,
            next: Readiness {
                to: Some(Stage::DualRead),
                ready: reasons.is_empty(),
                reasons,
            },
            previous: Readiness {
                to: None,
                ready: true,
                reasons: Vec::new(),
            },
            checked_at_ms,
            source_watch: None,
        }
    }

    #[test]
    fn switch_gate_needs_fresh_proof_that_no_client_is_left_on_the_source() {
        let max = Duration::from_secs(30);
        assert!(switch_finding("T", 5, None, 1_000, max).is_some());
        let stale = record(5, 0, Vec::new());
        assert!(switch_finding("T", 5, Some(&stale), 40_000, max).is_some());
        let old_revision = record(4, 1_000, Vec::new());
        assert!(switch_finding("T", 5, Some(&old_revision), 1_000, max).is_some());
        let not_switched = record(
            5,
            1_000,
            vec![Reason::new(
                ReasonCode::ClientsNotSwitched,
                "1 client(s): 10.0.0.9",
            )],
        );
        let finding = switch_finding("T", 5, Some(&not_switched), 1_000, max).unwrap();
        assert!(finding.contains("10.0.0.9"), "{finding}");
        // Other reasons (a backlog, a dwell) are step 4's business, not step 3's.
        let other = record(
            5,
            1_000,
            vec![Reason::new(ReasonCode::DwellTooShort, "in INITIAL for 1 s")],
        );
        assert_eq!(switch_finding("T", 5, Some(&other), 1_000, max), None);
    }
}
