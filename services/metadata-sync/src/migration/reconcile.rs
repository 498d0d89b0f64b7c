//! `Reconcile`: a desired state (topic → stage) turned into a plan of single stage steps,
//! applied one safe step per topic per call.
//!
//! Level-triggered on purpose: every call reads the current stages, plans from them, and
//! (with `apply`) makes only the steps the readiness gate lets through now — the same gate,
//! transaction and audit record as `AdvanceTopics` / `RollbackTopics`. Automation calls it
//! again until `converged`; a call repeated after a lost response plans from what actually
//! happened, so it is safe to retry.

use std::collections::BTreeMap;

use ferry_api::metadata_sync::v1 as pb;
use ferry_core::{Direction, Stage};

use super::{Gatekeeping, MigrationTasks, actor_or_anonymous, all_topics, change_one, steps};
use crate::convert::{stage_from_pb, stage_to_pb};
use crate::error::{Result, SyncError};

/// The direction and next stage from `current` toward `desired`, or `None` when there.
pub fn next_toward(current: Stage, desired: Stage) -> Option<(Direction, Stage)> {
    let direction = match current.cmp(&desired) {
        std::cmp::Ordering::Equal => return None,
        std::cmp::Ordering::Less => Direction::Advance,
        std::cmp::Ordering::Greater => Direction::Rollback,
    };
    current.step(direction).map(|next| (direction, next))
}

impl MigrationTasks {
    pub(super) async fn reconcile(
        &self,
        req: pb::ReconcileRequest,
    ) -> Result<pb::ReconcileResponse> {
        let store = self.store.get().map_err(SyncError::from)?;
        let task = store.get_task(&req.task_id).await?;
        let topics = all_topics(store.as_ref(), &req.task_id).await?;
        let by_name: BTreeMap<&str, _> =
            topics.iter().map(|t| (t.value.topic.as_str(), t)).collect();
        let mut desired: BTreeMap<String, Stage> = BTreeMap::new();
        for (topic, stage) in &req.desired {
            if !by_name.contains_key(topic.as_str()) {
                return Err(SyncError::InvalidArgument(format!(
                    "topic {topic} is not in task {}",
                    req.task_id
                )));
            }
            let stage = stage_from_pb(*stage).ok_or_else(|| {
                SyncError::InvalidArgument(format!("desired stage of {topic} is not a stage"))
            })?;
            desired.insert(topic.clone(), stage);
        }
        if let Some(all) = stage_from_pb(req.desired_all) {
            for t in &topics {
                desired.entry(t.value.topic.clone()).or_insert(all);
            }
        }
        if desired.is_empty() {
            return Err(SyncError::InvalidArgument(
                "no desired state: name topics in desired or set desired_all".into(),
            ));
        }
        if req.apply {
            super::ensure_accepts_changes(&task.value)?;
            steps::ensure_gray_step(&task.value)?;
        }
        let actor = actor_or_anonymous(req.actor);
        let mut plan = Vec::new();
        let mut applied = Vec::new();
        let mut converged = true;
        for (topic, want) in &desired {
            let current = by_name[topic.as_str()];
            let Some((direction, next)) = next_toward(current.value.stage, *want) else {
                continue;
            };
            let gk = Gatekeeping {
                direction,
                force: req.force,
                max_age: self.readiness_max_age,
                dry_run: true,
            };
            let topic_ref = pb::TopicRef {
                topic: topic.clone(),
                expected_revision: current.revision,
            };
            let decided =
                change_one(store.as_ref(), &task, topic_ref.clone(), gk, &actor, None).await;
            let ready = decided.error.is_empty();
            plan.push(pb::PlannedStep {
                topic: topic.clone(),
                current: stage_to_pb(current.value.stage) as i32,
                desired: stage_to_pb(*want) as i32,
                next: stage_to_pb(next) as i32,
                readiness: decided.readiness.clone(),
                ready,
                blocked_by: decided.error.clone(),
            });
            let mut now_at = current.value.stage;
            if req.apply && ready {
                let result = change_one(
                    store.as_ref(),
                    &task,
                    topic_ref,
                    Gatekeeping {
                        dry_run: false,
                        ..gk
                    },
                    &actor,
                    Some(format!("reconcile toward {want}")),
                )
                .await;
                if result.changed {
                    now_at = next;
                }
                applied.push(result);
            }
            converged &= now_at == *want;
        }
        Ok(pb::ReconcileResponse {
            plan,
            applied,
            converged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_stage() -> impl Strategy<Value = Stage> {
        prop::sample::select(Stage::ALL.to_vec())
    }

    proptest! {
        /// Repeating the next step always reaches the desired stage, one stage at a time,
        /// never overshooting it.
        #[test]
        fn next_steps_reach_the_desired_stage_one_stage_at_a_time(from in any_stage(), to in any_stage()) {
            let mut at = from;
            let mut steps = 0;
            while let Some((_, next)) = next_toward(at, to) {
                prop_assert_eq!(next.ordinal().abs_diff(at.ordinal()), 1);
                prop_assert!(next.ordinal().abs_diff(to.ordinal()) < at.ordinal().abs_diff(to.ordinal()));
                at = next;
                steps += 1;
                prop_assert!(steps <= 4);
            }
            prop_assert_eq!(at, to);
            prop_assert_eq!(steps, from.ordinal().abs_diff(to.ordinal()));
        }
    }

    #[test]
    fn no_step_when_there() {
        assert_eq!(next_toward(Stage::DualRead, Stage::DualRead), None);
        assert_eq!(
            next_toward(Stage::Done, Stage::Initial),
            Some((Direction::Rollback, Stage::Switching))
        );
    }
}
