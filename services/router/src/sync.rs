//! Background loops that keep a router's state current:
//!
//! - **store sync**: reads the task record and a snapshot of its topic stages, then watches
//!   stage changes from the snapshot's revision + 1. A broken watch is resumed from the last
//!   revision seen + 1; history compacted away means a fresh snapshot. The task record is
//!   re-read every `task_poll_interval` (the store has no task watch) and the store is probed
//!   every `store_probe_interval`: while it does not answer, the router keeps serving the
//!   stages it holds (fail-static) and says so in metrics, status and health.
//! - **refresh**: cluster info and `ORDER_TOPIC_CONFIG` of both clusters every
//!   `refresh_interval` (and at once when the upstreams change), broker-name collisions,
//!   cache sweeping, health.
//! - **registration**: `routers/<router-id>` under a lease while the router runs.
//!
//! None of them ever exits on an error; they back off and retry until cancelled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Stage;
use ferry_store::{EtcdBackend, EtcdOptions, EtcdStore, MigrationStore, PageRequest, StoreError};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::router::Router;
use crate::stages::TopicStage;
use crate::upstream::now_ms;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The store as the router's loops see it: absent until connected.
#[derive(Clone)]
pub struct StoreSlot {
    rx: watch::Receiver<Option<Arc<dyn MigrationStore>>>,
}

/// Publishes the store once connected.
pub struct StoreSlotWriter {
    tx: watch::Sender<Option<Arc<dyn MigrationStore>>>,
}

impl StoreSlot {
    /// A slot holding `store` already (embedded store, tests).
    pub fn ready(store: Arc<dyn MigrationStore>) -> Self {
        let (tx, rx) = watch::channel(Some(store));
        // Keep the value readable after the sender is gone.
        drop(tx);
        StoreSlot { rx }
    }

    /// An empty slot and its writer.
    pub fn connecting() -> (Self, StoreSlotWriter) {
        let (tx, rx) = watch::channel(None);
        (StoreSlot { rx }, StoreSlotWriter { tx })
    }

    /// The store, once there.
    async fn wait(&mut self, cancel: &CancellationToken) -> Option<Arc<dyn MigrationStore>> {
        loop {
            if let Some(s) = self.rx.borrow_and_update().clone() {
                return Some(s);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                changed = self.rx.changed() => if changed.is_err() {
                    // Writer gone without a store: nothing will ever come.
                    cancel.cancelled().await;
                    return None;
                },
            }
        }
    }
}

impl StoreSlotWriter {
    pub fn set(&self, store: Arc<dyn MigrationStore>) {
        self.tx.send_replace(Some(store));
    }
}

/// Connects to etcd with backoff until it answers (recording the error in the router
/// meanwhile), then publishes the store. Never gives up; returns on cancel.
pub async fn connect_etcd(
    router: Arc<Router>,
    endpoints: Vec<String>,
    options: EtcdOptions,
    writer: StoreSlotWriter,
    cancel: CancellationToken,
) {
    let mut pause = Duration::from_millis(200);
    loop {
        let attempt = EtcdBackend::connect(&endpoints, options.clone());
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = attempt => r,
        };
        match result {
            Ok(backend) => {
                writer.set(Arc::new(EtcdStore::new(backend)));
                return;
            }
            Err(e) => {
                router.store_failed(&e.to_string());
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "store not reachable yet; NameServer requests wait for the task");
                if sleep_or_cancel(pause, &cancel).await {
                    return;
                }
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sleeps `d`; true if cancelled meanwhile.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn timed<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(STORE_CALL_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable {
            endpoint: "store".into(),
            reason: format!("no answer within {STORE_CALL_TIMEOUT:?}"),
        }),
    }
}

/// Runs every background loop until `cancel`; revokes the registration on the way out.
pub async fn run(router: Arc<Router>, slot: StoreSlot, cancel: CancellationToken) {
    tokio::join!(
        store_sync(router.clone(), slot.clone(), cancel.clone()),
        refresh_loop(router.clone(), cancel.clone()),
        registration(router.clone(), slot, cancel.clone()),
    );
}

// ---------------------------------------------------------------------- store sync

async fn store_sync(router: Arc<Router>, mut slot: StoreSlot, cancel: CancellationToken) {
    let Some(store) = slot.wait(&cancel).await else {
        return;
    };
    let task_id = router.config().task_id.clone();
    let mut backoff = Duration::from_millis(200);
    let mut missing_logged = false;
    'snapshot: loop {
        let from = match load(&router, store.as_ref(), &task_id).await {
            Ok(rev) => {
                router.store_ok();
                missing_logged = false;
                backoff = Duration::from_millis(200);
                rev + 1
            }
            Err(e @ StoreError::NotFound { .. }) => {
                // The store answers; the task is just not there (yet): not an outage.
                router.store_ok();
                if router.upstreams().is_none() {
                    router.set_not_ready(format!("task {task_id} is not in the store: {e}"));
                } else if !missing_logged {
                    tracing::warn!(task = %task_id, "task no longer in the store; serving its last known state");
                }
                missing_logged = true;
                if sleep_or_cancel(Duration::from_secs(1), &cancel).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                router.store_failed(&e.to_string());
                if router.upstreams().is_none() {
                    router.set_not_ready(format!("cannot load task {task_id}: {e}"));
                }
                if sleep_or_cancel(backoff, &cancel).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut from = from;
        let mut task_tick = tokio::time::interval(router.config().task_poll_interval);
        let mut probe_tick = tokio::time::interval(router.config().store_probe_interval);
        task_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // (Re)open the watch from the last revision seen + 1.
            let opened = tokio::select! {
                _ = cancel.cancelled() => return,
                r = timed(store.watch_stages(from)) => r,
            };
            let mut stream = match opened {
                Ok(s) => {
                    tracing::debug!(from, "watching stage changes");
                    s
                }
                Err(StoreError::Compacted { .. }) => {
                    tracing::warn!(from, "stage history compacted; taking a new snapshot");
                    continue 'snapshot;
                }
                Err(e) => {
                    router.store_failed(&e.to_string());
                    if sleep_or_cancel(backoff, &cancel).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    item = stream.next() => match item {
                        Some(Ok(ev)) => {
                            from = from.max(ev.revision + 1);
                            apply_event(&router, store.as_ref(), &task_id, ev).await;
                        }
                        Some(Err(StoreError::Compacted { .. })) => {
                            tracing::warn!(from, "stage history compacted while watching; taking a new snapshot");
                            continue 'snapshot;
                        }
                        Some(Err(e)) => {
                            router.store_failed(&e.to_string());
                            break;
                        }
                        None => {
                            tracing::debug!(from, "stage watch ended; resuming");
                            break;
                        }
                    },
                    _ = task_tick.tick() => match timed(store.get_task(&task_id)).await {
                        Ok(t) => {
                            missing_logged = false;
                            router.apply_task(&t.value);
                        }
                        Err(StoreError::NotFound { .. }) => {
                            if !missing_logged {
                                tracing::warn!(task = %task_id, "task no longer in the store; serving its last known state");
                                missing_logged = true;
                            }
                        }
                        Err(e) => router.store_failed(&e.to_string()),
                    },
                    _ = probe_tick.tick() => match timed(store.health()).await {
                        Ok(()) => router.store_ok(),
                        Err(e) => router.store_failed(&e.to_string()),
                    },
                }
            }
            if sleep_or_cancel(backoff, &cancel).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Reads the task and a snapshot of its stages into the router; returns the revision to
/// watch after.
async fn load(
    router: &Router,
    store: &dyn MigrationStore,
    task_id: &str,
) -> Result<i64, StoreError> {
    let task = timed(store.get_task(task_id)).await?;
    let (events, revision) = timed(store.stage_snapshot()).await?;
    // updated_at (DONE's grace start) is not in the events: read it from the topics.
    let mut updated_at: HashMap<String, i64> = HashMap::new();
    let mut page = PageRequest::first(PageRequest::MAX_SIZE);
    loop {
        let p = timed(store.list_topics(task_id, page.clone())).await?;
        for t in &p.items {
            updated_at.insert(t.value.topic.clone(), t.value.updated_at_ms);
        }
        match p.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => break,
        }
    }
    let now = now_ms();
    let topics: HashMap<String, TopicStage> = events
        .into_iter()
        .filter(|e| e.task_id == task_id)
        .filter_map(|e| {
            let stage = e.stage?;
            Some((
                e.topic.clone(),
                TopicStage {
                    stage,
                    updated_at_ms: updated_at.get(&e.topic).copied().unwrap_or(now),
                    revision: e.revision,
                },
            ))
        })
        .collect();
    let n = topics.len();
    // Stages before the task: the router turns ready with the task, and must not answer
    // one request with an empty stage table (which would mean INITIAL for every topic).
    router
        .stages
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace(topics, revision);
    router.apply_task(&task.value);
    metrics::get().stage_revision.set(revision);
    tracing::info!(task = %task_id, topics = n, revision, "stage snapshot loaded");
    Ok(revision)
}

async fn apply_event(
    router: &Router,
    store: &dyn MigrationStore,
    task_id: &str,
    ev: ferry_store::StageEvent,
) {
    if ev.task_id != task_id {
        router
            .stages
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .advance(ev.revision);
        metrics::get().stage_revision.set(router.stage_revision());
        return;
    }
    let state = match ev.stage {
        None => None,
        Some(stage) => {
            let updated_at_ms = if stage == Stage::Done {
                // The grace period counts from the change; fall back to "now", which only
                // lengthens it (source listed with perm 0 a little longer: harmless).
                match timed(store.get_topic(task_id, &ev.topic)).await {
                    Ok(t) if t.value.stage == Stage::Done => t.value.updated_at_ms,
                    _ => now_ms(),
                }
            } else {
                now_ms()
            };
            Some(TopicStage {
                stage,
                updated_at_ms,
                revision: ev.revision,
            })
        }
    };
    let applied = router
        .stages
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .apply(&ev.topic, state, ev.revision);
    metrics::get().stage_revision.set(router.stage_revision());
    if applied {
        tracing::info!(topic = %ev.topic, stage = ?ev.stage, revision = ev.revision, "stage change applied");
    }
}

// ---------------------------------------------------------------------- refresh

async fn refresh_loop(router: Arc<Router>, cancel: CancellationToken) {
    let every = router.config().refresh_interval;
    let mut health_tick = tokio::time::interval(Duration::from_millis(500));
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refresh_tick = tokio::time::interval(every);
    refresh_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = health_tick.tick() => {
                router.update_health().await;
                continue;
            }
            _ = refresh_tick.tick() => {}
            _ = router.refresh_now.notified() => {}
        }
        if let Some(ups) = router.upstreams() {
            let (s, t) = tokio::join!(ups.source.refresh(), ups.target.refresh());
            for (side, r) in [("source", s), ("target", t)] {
                if let Err(e) = r {
                    tracing::debug!(cluster = side, error = %e, "cluster info refresh failed");
                }
            }
            router.update_collisions();
            ups.source.sweep();
            ups.target.sweep();
        }
        router.update_health().await;
    }
}

// ---------------------------------------------------------------------- registration

async fn registration(router: Arc<Router>, mut slot: StoreSlot, cancel: CancellationToken) {
    let Some(store) = slot.wait(&cancel).await else {
        return;
    };
    // Register once the NameServer address is known (the binary binds before this runs).
    let mut backoff = Duration::from_millis(200);
    let lease = loop {
        let (namesrv, grpc) = router.addrs();
        let value = serde_json::json!({
            "task_id": router.config().task_id,
            "namesrv_addr": namesrv.map(|a| a.to_string()),
            "grpc_addr": grpc.map(|a| a.to_string()),
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": router.started_at_ms(),
        });
        let ttl = router.config().registration_ttl_secs;
        match timed(store.register_member("routers", router.id(), value, ttl)).await {
            Ok(lease) => break lease,
            Err(e) => {
                tracing::debug!(error = %e, "router registration failed; retrying");
                if sleep_or_cancel(backoff, &cancel).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    tracing::info!(id = %router.id(), key = %lease.key(), "router registered");
    cancel.cancelled().await;
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), lease.revoke())
        .await
        .unwrap_or(Ok(()))
    {
        tracing::warn!(error = %e, "could not revoke the router registration; it expires with its lease");
    }
}
