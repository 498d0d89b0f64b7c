//! The readiness engine: measures a task's topics, applies the rules of
//! `ferry_core::readiness`, and publishes the result to the store.
//!
//! A check reads the task and its topics (with their revisions) first, then measures. The
//! published record names the topic revision it was computed for and is written only if the
//! topic is still there (see `ferry_store::readiness`), so a stage change during a check
//! simply discards that topic's result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::readiness::{
    Fact, Readiness, ReadinessPolicy, Routers as RouterFacts, SourceWrites, TopicFacts, assess_both,
};
use ferry_core::{Stage, TaskState};
use ferry_remoting::ClientConfig;
use ferry_store::{
    FerryStore, MigrationTask, PageRequest, ReadinessRecord, SourceWatch, StoreError, TopicState,
    Versioned,
};
use futures::StreamExt;

use crate::cluster::Clusters;
use crate::error::{HealthError, Result};
use crate::measure::{Role, TaskContext, TopicMeasurement};
use crate::presence::{Presence, Routers};
use crate::slot::StoreSlot;
pub(crate) use ferry_store::now_ms;

/// Topics measured at once within one task.
const TOPIC_CONCURRENCY: usize = 8;

/// Settings of the health checker.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: ReadinessPolicy,
    /// How often every running task is measured and its readiness published.
    pub scan_interval: Duration,
    /// RocketMQ client settings (timeouts, credentials).
    pub remoting: ClientConfig,
    /// Deadline of one router gRPC call.
    pub router_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policy: ReadinessPolicy::default(),
            scan_interval: Duration::from_secs(10),
            remoting: ClientConfig::default(),
            router_timeout: Duration::from_secs(3),
        }
    }
}

/// One topic's check.
#[derive(Debug, Clone)]
pub struct TopicReport {
    pub topic: String,
    pub stage: Stage,
    /// Revision of the topic state the check was made against.
    pub revision: i64,
    pub next: Readiness,
    pub previous: Readiness,
    pub facts: TopicFacts,
    pub measurement: TopicMeasurement,
    /// Write-watch baseline to keep (SWITCHING only).
    pub watch: Option<SourceWatch>,
}

/// One task's check.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub task: Versioned<MigrationTask>,
    /// Unix milliseconds when measuring began.
    pub measured_at_ms: i64,
    /// Routers whose presence answer is included (0 when they could not be listed).
    pub routers_consulted: usize,
    /// Topics in name order.
    pub topics: Vec<TopicReport>,
}

/// Measures tasks and publishes readiness.
pub struct Engine {
    store: StoreSlot,
    clusters: Clusters,
    routers: Routers,
    config: EngineConfig,
}

fn ms(d: i64) -> Duration {
    Duration::from_millis(d.max(0) as u64)
}

/// The write watch of a topic in SWITCHING: messages written to the source since the
/// baseline kept in the previous record, and the baseline to keep.
///
/// The baseline moves only when writes are seen (so "quiet for X" grows until then) or when
/// none exists for this stage yet. Offsets only grow, so a baseline older than it should be
/// can only make the watch see *more* writes, never fewer: concurrent checks that overwrite
/// each other's baseline stay safe.
pub fn watch_source(
    stage: Stage,
    previous: Option<SourceWatch>,
    total: &Fact<i64>,
    now_ms: i64,
) -> (Fact<SourceWrites>, Option<SourceWatch>) {
    if stage != Stage::Switching {
        let quiet = SourceWrites {
            written: 0,
            watched: Duration::ZERO,
        };
        return (Fact::Known(quiet), None);
    }
    let total = match total {
        Fact::Known(t) => *t,
        Fact::Unknown(why) => return (Fact::Unknown(why.clone()), previous),
    };
    let fresh = SourceWatch {
        since_ms: now_ms,
        max_offset_total: total,
    };
    let nothing_yet = SourceWrites {
        written: 0,
        watched: Duration::ZERO,
    };
    match previous {
        None => (Fact::Known(nothing_yet), Some(fresh)),
        Some(base) if total > base.max_offset_total => (
            Fact::Known(SourceWrites {
                written: total - base.max_offset_total,
                watched: ms(now_ms - base.since_ms),
            }),
            Some(fresh),
        ),
        // Offsets went down (topic recreated, broker replaced): start watching again.
        Some(base) if total < base.max_offset_total => (Fact::Known(nothing_yet), Some(fresh)),
        Some(base) => (
            Fact::Known(SourceWrites {
                written: 0,
                watched: ms(now_ms - base.since_ms),
            }),
            Some(base),
        ),
    }
}

impl Engine {
    pub fn new(store: StoreSlot, config: EngineConfig) -> Self {
        Engine {
            store,
            clusters: Clusters::new(config.remoting.clone()),
            routers: Routers::new(config.router_timeout),
            config,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn store(&self) -> Result<Arc<dyn FerryStore>> {
        Ok(self.store.get()?)
    }

    pub fn routers(&self) -> &Routers {
        &self.routers
    }

    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// Measures `topics` of the task (every topic when empty) and computes their readiness.
    /// Nothing is published.
    #[tracing::instrument(skip(self, topics), fields(topics = topics.len()))]
    pub async fn check(&self, task_id: &str, topics: &[String]) -> Result<TaskReport> {
        let store = self.store.get()?;
        let task = store.get_task(task_id).await?;
        let mut states = all_topics(store.as_ref(), task_id).await?;
        if !topics.is_empty() {
            let missing: Vec<&str> = topics
                .iter()
                .filter(|t| !states.iter().any(|s| &s.value.topic == *t))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(HealthError::NotFound(format!(
                    "topic(s) {} not in task {task_id}",
                    missing.join(", ")
                )));
            }
            states.retain(|s| topics.contains(&s.value.topic));
        }
        let previous = all_records(store.as_ref(), task_id).await?;
        let measured_at_ms = now_ms();
        let presence: Fact<Presence> = self
            .routers
            .presence(store.as_ref(), task_id)
            .await
            .map_err(|e| format!("routers cannot be listed from the store: {e}"))
            .into();
        let routers_consulted = presence.known().map_or(0, |p| p.answered);
        let ctx = TaskContext::new(&self.clusters, &task.value, presence).await;
        let paused = task.value.state == TaskState::Paused;
        let mut reports: Vec<TopicReport> = futures::stream::iter(states)
            .map(|state| {
                let prev = previous
                    .get(&state.value.topic)
                    .filter(|r| r.is_for_revision(state.revision))
                    .and_then(|r| r.source_watch);
                self.check_topic(&ctx, state, prev, paused, measured_at_ms)
            })
            .buffer_unordered(TOPIC_CONCURRENCY)
            .collect()
            .await;
        reports.sort_by(|a, b| a.topic.cmp(&b.topic));
        tracing::debug!(task = %task_id, topics = reports.len(), routers_consulted, "task measured");
        Ok(TaskReport {
            task,
            measured_at_ms,
            routers_consulted,
            topics: reports,
        })
    }

    async fn check_topic(
        &self,
        ctx: &TaskContext<'_>,
        state: Versioned<TopicState>,
        prev_watch: Option<SourceWatch>,
        paused: bool,
        measured_at_ms: i64,
    ) -> TopicReport {
        let TopicState {
            topic,
            stage,
            updated_at_ms,
            ..
        } = state.value;
        let m = ctx.measure(&topic, stage).await;
        let (
            pending_delay,
            pending_transactions,
            target_pending_delay,
            target_pending_transactions,
        ) = tokio::join!(
            ctx.pending_delay(Role::Source),
            ctx.pending_transactions(Role::Source),
            ctx.pending_delay(Role::Target),
            ctx.pending_transactions(Role::Target),
        );
        let routers = ctx.presence.clone().map(|p| RouterFacts {
            registered: p.routers.len(),
            answering: p.answered,
            failures: p.failures,
        });
        let (source_writes, watch) = watch_source(
            stage,
            prev_watch,
            &m.source_max_offset_total,
            measured_at_ms,
        );
        let facts = TopicFacts {
            task_paused: paused,
            dwell: (updated_at_ms > 0).then(|| ms(measured_at_ms - updated_at_ms)),
            broker_name_collisions: ctx.collisions.clone(),
            target_topic_exists: m.target_topic_exists.clone(),
            target_groups_missing: m.target_groups_missing.clone(),
            routers,
            clients: m.clients.clone(),
            groups_not_on_target: m.groups_not_on_target.clone(),
            source_backlog: m.source_backlog.clone(),
            retry_backlog: m.retry_backlog.clone(),
            pending_delay,
            pending_transactions,
            target_backlog: m.target_backlog.clone(),
            target_pending_delay,
            target_pending_transactions,
            source_writes,
        };
        let (next, previous) = assess_both(stage, &facts, &self.config.policy);
        TopicReport {
            topic,
            stage,
            revision: state.revision,
            next,
            previous,
            facts,
            measurement: m,
            watch,
        }
    }

    /// Stores each topic's readiness. Topics that changed stage meanwhile are skipped (their
    /// result is stale); returns how many records were written.
    pub async fn publish(&self, report: &TaskReport) -> Result<usize> {
        let store = self.store.get()?;
        let mut written = 0;
        for t in &report.topics {
            let record = ReadinessRecord {
                task_id: report.task.value.id.clone(),
                topic: t.topic.clone(),
                stage: t.stage,
                topic_revision: t.revision,
                next: t.next.clone(),
                previous: t.previous.clone(),
                checked_at_ms: report.measured_at_ms,
                source_watch: t.watch,
            };
            match store.put_readiness(&record).await {
                Ok(()) => written += 1,
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(task = %record.task_id, topic = %record.topic, "topic changed during the check; result dropped");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Measures and publishes every topic of every running or paused task, once, and sets
    /// the readiness and monitor metrics (`crate::metrics`) from what it measured.
    #[tracing::instrument(skip(self))]
    pub async fn scan_once(&self) -> Result<usize> {
        let store = self.store.get()?;
        let mut page = PageRequest::first(PageRequest::MAX_SIZE);
        let mut published = 0;
        let mut scanned = std::collections::HashSet::new();
        loop {
            let tasks = store.list_tasks(page.clone()).await?;
            for task in &tasks.items {
                if task.value.state.is_terminal() {
                    continue;
                }
                // Kept (with its last series) even when this check fails.
                scanned.insert(task.value.id.clone());
                match self.check(&task.value.id, &[]).await {
                    Ok(report) => {
                        crate::metrics::get().record(&report);
                        match self.publish(&report).await {
                            Ok(n) => published += n,
                            Err(e) => {
                                tracing::warn!(task = %task.value.id, error = %e, "readiness not published")
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(task = %task.value.id, error = %e, "task not measured")
                    }
                }
            }
            match tasks.next_page_token {
                Some(token) => page.page_token = Some(token),
                None => {
                    crate::metrics::get().retain_tasks(&scanned);
                    return Ok(published);
                }
            }
        }
    }

    /// Scans every `scan_interval`, forever (abort the task to stop). Waits for the store.
    pub async fn run_scans(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.scan_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.scan_once().await {
                Ok(n) => tracing::debug!(published = n, "readiness scan done"),
                Err(HealthError::StoreUnavailable(why)) => {
                    tracing::debug!(%why, "readiness scan waits for the store")
                }
                Err(e) => tracing::warn!(error = %e, "readiness scan failed"),
            }
        }
    }
}

async fn all_topics(store: &dyn FerryStore, task_id: &str) -> Result<Vec<Versioned<TopicState>>> {
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

/// Every readiness record of a task, by topic.
pub(crate) async fn all_records(
    store: &dyn FerryStore,
    task_id: &str,
) -> Result<HashMap<String, ReadinessRecord>> {
    let mut out = HashMap::new();
    let mut page = PageRequest::first(PageRequest::MAX_SIZE);
    loop {
        let got = store.list_readiness(task_id, page.clone()).await?;
        out.extend(got.items.into_iter().map(|r| (r.topic.clone(), r)));
        match got.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000;

    #[test]
    fn write_watch_starts_grows_and_restarts_on_writes() {
        let s = Stage::Switching;
        // First look: nothing watched yet, baseline taken.
        let (w, b) = watch_source(s, None, &Fact::Known(100), T0);
        assert_eq!(
            w,
            Fact::Known(SourceWrites {
                written: 0,
                watched: Duration::ZERO
            })
        );
        let b = b.unwrap();
        assert_eq!((b.since_ms, b.max_offset_total), (T0, 100));
        // Quiet: the window grows, the baseline stays.
        let (w, b2) = watch_source(s, Some(b), &Fact::Known(100), T0 + 40_000);
        assert_eq!(
            w,
            Fact::Known(SourceWrites {
                written: 0,
                watched: Duration::from_secs(40)
            })
        );
        assert_eq!(b2, Some(b));
        // Writes: counted over the window, baseline restarts now.
        let (w, b3) = watch_source(s, Some(b), &Fact::Known(107), T0 + 50_000);
        assert_eq!(
            w,
            Fact::Known(SourceWrites {
                written: 7,
                watched: Duration::from_secs(50)
            })
        );
        assert_eq!(b3.unwrap().since_ms, T0 + 50_000);
        // Unknown total: unknown, baseline kept.
        let (w, b4) = watch_source(s, Some(b), &Fact::Unknown("down".into()), T0 + 60_000);
        assert!(!w.is_known());
        assert_eq!(b4, Some(b));
        // Offsets went down: start over.
        let (w, b5) = watch_source(s, Some(b), &Fact::Known(5), T0 + 60_000);
        assert_eq!(
            w,
            Fact::Known(SourceWrites {
                written: 0,
                watched: Duration::ZERO
            })
        );
        assert_eq!(b5.unwrap().max_offset_total, 5);
    }

    #[test]
    fn write_watch_only_in_switching() {
        for stage in [
            Stage::Initial,
            Stage::DualRead,
            Stage::DualWrite,
            Stage::Done,
        ] {
            let (_, b) = watch_source(stage, None, &Fact::Known(100), T0);
            assert_eq!(b, None, "{stage}");
        }
    }
}
