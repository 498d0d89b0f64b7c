//! The health-check's Prometheus families (process-wide, registered on first use), set from
//! every periodic readiness scan:
//!
//! - `ferry_topic_stage{task,topic,stage}`: 1 for the topic's current stage (one series per
//!   topic; the `stage` label changes with it);
//! - `ferry_topic_ready{task,topic,direction}`: 1 when the step is ready, else 0;
//!   `direction` is `next` (advance) or `previous` (roll back);
//! - `ferry_topic_not_ready_reasons{task,topic,direction,reason}`: how many reasons of that
//!   code block the step (`reason` = API name, e.g. `SOURCE_BACKLOG`); only codes that hold
//!   have a series;
//! - `ferry_cluster_tps{task,cluster,direction}`: messages per second over the task's topics,
//!   `cluster` = `source` | `target`, `direction` = `in` (put) | `out` (consume);
//! - `ferry_topic_tps{task,topic,cluster,direction}`: the same per topic;
//! - `ferry_unswitched_clients{task}`: distinct clients (role, group, client id) still using
//!   the source NameServer directly.
//!
//! Series of topics that left a task, of stages, directions and reasons that no longer hold,
//! and of tasks no longer scanned (completed, deleted) are removed, so every series is
//! current as of the last scan.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

use ferry_core::readiness::Readiness;
use ferry_telemetry::metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::engine::TaskReport;
use crate::measure::ClusterFigures;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub task: String,
    pub topic: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    pub task: String,
    pub topic: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub task: String,
    pub topic: String,
    pub direction: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterTpsLabels {
    pub task: String,
    pub cluster: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicTpsLabels {
    pub task: String,
    pub topic: String,
    pub cluster: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct HealthMetrics {
    pub topic_stage: Family<StageLabels, Gauge>,
    pub topic_ready: Family<ReadyLabels, Gauge>,
    pub not_ready_reasons: Family<ReasonLabels, Gauge>,
    pub cluster_tps: Family<ClusterTpsLabels, FloatGauge>,
    pub topic_tps: Family<TopicTpsLabels, FloatGauge>,
    pub unswitched_clients: Family<TaskLabels, Gauge>,
    /// Label sets set by the last scan of each task.
    published: Mutex<HashMap<String, TaskSeries>>,
}

/// Every series one task's last scan set.
#[derive(Default)]
struct TaskSeries {
    stage: HashSet<StageLabels>,
    ready: HashSet<ReadyLabels>,
    reasons: HashSet<ReasonLabels>,
    cluster_tps: HashSet<ClusterTpsLabels>,
    topic_tps: HashSet<TopicTpsLabels>,
    unswitched: HashSet<TaskLabels>,
}

static METRICS: LazyLock<HealthMetrics> = LazyLock::new(|| HealthMetrics {
    topic_stage: metrics::register(
        "ferry_topic_stage",
        "1 for the migration stage a topic of a task is in (label stage)",
        Family::default(),
    ),
    topic_ready: metrics::register(
        "ferry_topic_ready",
        "1 when the topic may change stage in that direction now (next = advance, previous = roll back), else 0",
        Family::default(),
    ),
    not_ready_reasons: metrics::register(
        "ferry_topic_not_ready_reasons",
        "Reasons of one code (label reason) blocking the topic's stage change in that direction",
        Family::default(),
    ),
    cluster_tps: metrics::register(
        "ferry_cluster_tps",
        "Messages per second over the task's topics on the source or target cluster, in (put) or out (consume)",
        Family::default(),
    ),
    topic_tps: metrics::register(
        "ferry_topic_tps",
        "Messages per second of one topic on the source or target cluster, in (put) or out (consume)",
        Family::default(),
    ),
    unswitched_clients: metrics::register(
        "ferry_unswitched_clients",
        "Distinct clients of the task's topics still looking routes up on the source NameServer directly",
        Family::default(),
    ),
    published: Mutex::new(HashMap::new()),
});

/// The families, registered on first use.
pub fn get() -> &'static HealthMetrics {
    &METRICS
}

fn directions<'r>(
    next: &'r Readiness,
    previous: &'r Readiness,
) -> [(&'static str, &'r Readiness); 2] {
    [("next", next), ("previous", previous)]
}

/// Removes from `family` every label set in `old` that is not in `new`.
fn drop_stale<L, M>(family: &Family<L, M>, old: &HashSet<L>, new: &HashSet<L>)
where
    L: Clone + std::hash::Hash + Eq,
    M: Default,
{
    for labels in old.difference(new) {
        family.remove(labels);
    }
}

impl HealthMetrics {
    /// Sets every family from one task's scan and drops that task's series that no longer
    /// hold.
    pub fn record(&self, report: &TaskReport) {
        let task = report.task.value.id.clone();
        let mut now = TaskSeries::default();
        let mut cluster = [[0.0f64; 2]; 2];
        let mut unswitched = BTreeSet::new();
        for t in &report.topics {
            let stage = StageLabels {
                task: task.clone(),
                topic: t.topic.clone(),
                stage: t.stage.as_str().to_string(),
            };
            self.topic_stage.get_or_create(&stage).set(1);
            now.stage.insert(stage);
            for (direction, r) in directions(&t.next, &t.previous) {
                let ready = ReadyLabels {
                    task: task.clone(),
                    topic: t.topic.clone(),
                    direction: direction.to_string(),
                };
                self.topic_ready
                    .get_or_create(&ready)
                    .set(i64::from(r.ready));
                now.ready.insert(ready);
                let mut counts: HashMap<&'static str, i64> = HashMap::new();
                for reason in &r.reasons {
                    *counts.entry(reason.code.as_str()).or_default() += 1;
                }
                for (code, n) in counts {
                    let labels = ReasonLabels {
                        task: task.clone(),
                        topic: t.topic.clone(),
                        direction: direction.to_string(),
                        reason: code.to_string(),
                    };
                    self.not_ready_reasons.get_or_create(&labels).set(n);
                    now.reasons.insert(labels);
                }
            }
            let figures: [(&str, &ClusterFigures); 2] = [
                ("source", &t.measurement.source_figures),
                ("target", &t.measurement.target_figures),
            ];
            for (i, (side, f)) in figures.into_iter().enumerate() {
                for (j, (direction, tps)) in [("in", f.put_tps), ("out", f.consume_tps)]
                    .into_iter()
                    .enumerate()
                {
                    let tps = if tps.is_finite() { tps } else { 0.0 };
                    cluster[i][j] += tps;
                    let labels = TopicTpsLabels {
                        task: task.clone(),
                        topic: t.topic.clone(),
                        cluster: side.to_string(),
                        direction: direction.to_string(),
                    };
                    self.topic_tps.get_or_create(&labels).set(tps);
                    now.topic_tps.insert(labels);
                }
            }
            for c in &t.measurement.unswitched {
                unswitched.insert((c.role, c.group.clone(), c.client_id.clone()));
            }
        }
        for (i, side) in ["source", "target"].into_iter().enumerate() {
            for (j, direction) in ["in", "out"].into_iter().enumerate() {
                let labels = ClusterTpsLabels {
                    task: task.clone(),
                    cluster: side.to_string(),
                    direction: direction.to_string(),
                };
                self.cluster_tps.get_or_create(&labels).set(cluster[i][j]);
                now.cluster_tps.insert(labels);
            }
        }
        let labels = TaskLabels { task: task.clone() };
        self.unswitched_clients
            .get_or_create(&labels)
            .set(unswitched.len() as i64);
        now.unswitched.insert(labels);

        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = published.get(&task) {
            self.drop_series(old, &now);
        }
        published.insert(task, now);
    }

    /// Drops the series of every task not in `scanned` (completed, deleted).
    pub fn retain_tasks(&self, scanned: &HashSet<String>) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = published
            .keys()
            .filter(|t| !scanned.contains(*t))
            .cloned()
            .collect();
        for task in gone {
            if let Some(old) = published.remove(&task) {
                self.drop_series(&old, &TaskSeries::default());
            }
        }
    }

    fn drop_series(&self, old: &TaskSeries, now: &TaskSeries) {
        drop_stale(&self.topic_stage, &old.stage, &now.stage);
        drop_stale(&self.topic_ready, &old.ready, &now.ready);
        drop_stale(&self.not_ready_reasons, &old.reasons, &now.reasons);
        drop_stale(&self.cluster_tps, &old.cluster_tps, &now.cluster_tps);
        drop_stale(&self.topic_tps, &old.topic_tps, &now.topic_tps);
        drop_stale(&self.unswitched_clients, &old.unswitched, &now.unswitched);
    }
}
