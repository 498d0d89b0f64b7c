//! The router's state: the task, its topic stages, the two upstreams, collisions, presence,
//! fail-static causes; and route resolution on top of it. Background loops that keep this
//! state current live in [`crate::sync`].

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use ferry_core::Stage;
use ferry_core::perm::{Side, route_perms};
use ferry_server::HealthReporter;
use ferry_store::MigrationTask;
use tokio::sync::Notify;
use tonic_health::ServingStatus;

use crate::merge::{
    self, MergeInput, MergeOutcome, TopicRule, UpstreamRoute, cluster_collisions, grace_active,
};
use crate::metrics;
use crate::presence::Presence;
use crate::stages::StageTable;
use crate::upstream::{Fetched, RouteValue, Upstream, UpstreamConfig, now_ms};

/// Settings of a router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The migration task this router serves.
    pub task_id: String,
    /// Id registered in the store (`routers/<id>`).
    pub router_id: String,
    /// How long DONE keeps source brokers listed with perm 0, from the topic's change.
    pub done_grace: Duration,
    /// Route cache, timeouts and bounds of both upstreams.
    pub upstream: UpstreamConfig,
    /// (topic, client) pairs remembered.
    pub presence_capacity: usize,
    /// How often the store is probed for reachability.
    pub store_probe_interval: Duration,
    /// How often the task record is re-read (NameServer lists may change).
    pub task_poll_interval: Duration,
    /// How often cluster info and order configs are refreshed and caches swept.
    pub refresh_interval: Duration,
    /// TTL of the router's registration lease.
    pub registration_ttl_secs: i64,
}

impl RouterConfig {
    /// Defaults for a router of `task_id`, with a generated id.
    pub fn new(task_id: impl Into<String>) -> Self {
        RouterConfig {
            task_id: task_id.into(),
            router_id: default_router_id(),
            done_grace: Duration::from_secs(600),
            upstream: UpstreamConfig::default(),
            presence_capacity: 100_000,
            store_probe_interval: Duration::from_secs(2),
            task_poll_interval: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(5),
            registration_ttl_secs: 10,
        }
    }
}

/// `<hostname>-<8 hex>`: unique per process, recognisable per host.
pub fn default_router_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "router".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// The two upstreams of the task.
#[derive(Clone)]
pub struct Upstreams {
    pub source: Arc<Upstream>,
    pub target: Arc<Upstream>,
}

impl Upstreams {
    pub fn get(&self, side: Side) -> &Arc<Upstream> {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }
}

/// What the router knows of its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub source_cluster: String,
    pub source_namesrv: String,
    pub target_cluster: String,
    pub target_namesrv: String,
    pub state: String,
}

impl From<&MigrationTask> for TaskView {
    fn from(t: &MigrationTask) -> Self {
        TaskView {
            source_cluster: t.source_cluster.clone(),
            source_namesrv: t.source_namesrv.clone(),
            target_cluster: t.target_cluster.clone(),
            target_namesrv: t.target_namesrv.clone(),
            state: t.state.as_str().to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct StoreStatus {
    ok: bool,
    error: Option<String>,
}

struct HealthHook {
    reporter: HealthReporter,
    /// Also drive `""` (the whole server): the router binary does, `ferry standalone`
    /// does not (other services share that server).
    whole_server: bool,
    last: Option<(bool, bool)>,
}

/// A resolved 105 answer.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub rule: TopicRule,
    pub outcome: MergeOutcome,
    /// Built from last known state (an upstream or the store did not answer).
    pub stale: bool,
}

/// One router: see the crate docs.
pub struct Router {
    cfg: RouterConfig,
    started_at_ms: i64,
    upstreams: RwLock<Option<Upstreams>>,
    task: RwLock<Option<TaskView>>,
    not_ready: Mutex<String>,
    pub(crate) stages: RwLock<StageTable>,
    store: Mutex<StoreStatus>,
    collisions: RwLock<BTreeSet<String>>,
    presence: Mutex<Presence>,
    addrs: Mutex<(Option<SocketAddr>, Option<SocketAddr>)>,
    health: tokio::sync::Mutex<Option<HealthHook>>,
    warned_notes: Mutex<HashSet<String>>,
    pub(crate) refresh_now: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Arc<Self> {
        metrics::init();
        let presence = Presence::new(cfg.presence_capacity);
        let not_ready = format!("waiting for the store to load task {}", cfg.task_id);
        Arc::new(Router {
            cfg,
            started_at_ms: now_ms(),
            upstreams: RwLock::new(None),
            task: RwLock::new(None),
            not_ready: Mutex::new(not_ready),
            stages: RwLock::new(StageTable::default()),
            store: Mutex::new(StoreStatus::default()),
            collisions: RwLock::new(BTreeSet::new()),
            presence: Mutex::new(presence),
            addrs: Mutex::new((None, None)),
            health: tokio::sync::Mutex::new(None),
            warned_notes: Mutex::new(HashSet::new()),
            refresh_now: Notify::new(),
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    pub fn id(&self) -> &str {
        &self.cfg.router_id
    }

    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }

    /// Records the bound addresses (for status and registration).
    pub fn set_addrs(&self, namesrv: Option<SocketAddr>, grpc: Option<SocketAddr>) {
        let mut a = lock(&self.addrs);
        if namesrv.is_some() {
            a.0 = namesrv;
        }
        if grpc.is_some() {
            a.1 = grpc;
        }
    }

    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        *lock(&self.addrs)
    }

    /// Lets the router drive gRPC health: `ferry.router.v1.RouterService` is SERVING only
    /// when ready, not fail-static and without collisions; with `whole_server`, `""` is
    /// SERVING whenever the router answers NameServer requests (ready), fail-static or not.
    pub async fn attach_health(&self, reporter: HealthReporter, whole_server: bool) {
        *self.health.lock().await = Some(HealthHook {
            reporter,
            whole_server,
            last: None,
        });
        self.update_health().await;
    }

    /// Applies the current state to gRPC health (called by the background loop).
    pub async fn update_health(&self) {
        let ready = self.upstreams().is_some();
        let fine = ready && self.collisions().is_empty() && self.fail_static_reasons().is_empty();
        let mut guard = self.health.lock().await;
        let Some(hook) = guard.as_mut() else { return };
        if hook.last == Some((ready, fine)) {
            return;
        }
        let status = |on: bool| {
            if on {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        if hook.whole_server {
            hook.reporter.set_service_status("", status(ready)).await;
        }
        hook.reporter
            .set_service_status(ferry_api::service_names::ROUTER, status(fine))
            .await;
        if hook.last.is_some() || !fine {
            tracing::info!(ready, serving = fine, reasons = ?self.health_reasons(), "router health changed");
        }
        hook.last = Some((ready, fine));
    }

    // ------------------------------------------------------------------ task & upstreams

    pub fn upstreams(&self) -> Option<Upstreams> {
        read(&self.upstreams).clone()
    }

    pub fn task(&self) -> Option<TaskView> {
        read(&self.task).clone()
    }

    /// Why NameServer requests are not served yet.
    pub fn not_ready_reason(&self) -> String {
        lock(&self.not_ready).clone()
    }

    pub(crate) fn set_not_ready(&self, reason: impl Into<String>) {
        *lock(&self.not_ready) = reason.into();
    }

    /// Adopts the task record: new upstream clients when a NameServer list changed.
    pub(crate) fn apply_task(&self, task: &MigrationTask) {
        let view = TaskView::from(task);
        let previous = self.task();
        if previous.as_ref() == Some(&view) {
            return;
        }
        let lists_changed = previous.as_ref().is_none_or(|p| {
            p.source_namesrv != view.source_namesrv || p.target_namesrv != view.target_namesrv
        });
        if lists_changed {
            let built = Upstream::new(
                Side::Source,
                &view.source_namesrv,
                self.cfg.upstream.clone(),
            )
            .map_err(|e| format!("task {}: source NameServer list: {e}", self.cfg.task_id))
            .and_then(|source| {
                Upstream::new(
                    Side::Target,
                    &view.target_namesrv,
                    self.cfg.upstream.clone(),
                )
                .map_err(|e| format!("task {}: target NameServer list: {e}", self.cfg.task_id))
                .map(|target| Upstreams { source, target })
            });
            match built {
                Ok(ups) => {
                    tracing::info!(
                        task = %self.cfg.task_id,
                        source = %ups.source.addrs(),
                        target = %ups.target.addrs(),
                        "serving task: upstream NameServers set"
                    );
                    *write(&self.upstreams) = Some(ups);
                    write(&self.collisions).clear();
                    metrics::get().collisions.set(0);
                    self.refresh_now.notify_one();
                }
                Err(e) => {
                    tracing::error!(error = %e, "task record unusable; keeping the previous upstreams");
                    self.set_not_ready(e);
                    return;
                }
            }
        }
        *write(&self.task) = Some(view);
    }

    // ------------------------------------------------------------------ store state

    pub(crate) fn store_ok(&self) {
        let mut s = lock(&self.store);
        if !s.ok && s.error.is_some() {
            tracing::info!(task = %self.cfg.task_id, "store reachable again; stage data is current");
        }
        s.ok = true;
        s.error = None;
        drop(s);
        metrics::set_fail_static("store", false);
    }

    pub(crate) fn store_failed(&self, error: &str) {
        let mut s = lock(&self.store);
        if s.ok || s.error.is_none() {
            tracing::warn!(%error, "store unreachable; serving the last known stages (fail-static)");
        }
        s.ok = false;
        s.error = Some(error.to_string());
        drop(s);
        metrics::set_fail_static("store", true);
    }

    pub fn store_reachable(&self) -> bool {
        lock(&self.store).ok
    }

    /// One line per fail-static cause (store, source, target); empty when all answer.
    pub fn fail_static_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        {
            let s = lock(&self.store);
            if !s.ok {
                out.push(format!(
                    "store: {}",
                    s.error.as_deref().unwrap_or("not connected yet")
                ));
            }
        }
        if let Some(ups) = self.upstreams() {
            for up in [&ups.source, &ups.target] {
                let h = up.health();
                if !h.reachable && h.last_error.is_some() {
                    out.push(format!(
                        "{} NameServers ({}): {}",
                        up.name(),
                        up.addrs(),
                        h.last_error.unwrap_or_default()
                    ));
                }
            }
        }
        out
    }

    /// Everything that keeps the router service from SERVING.
    pub fn health_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.upstreams().is_none() {
            out.push(format!("not ready: {}", self.not_ready_reason()));
        }
        let c = self.collisions();
        if !c.is_empty() {
            out.push(format!(
                "broker names in both clusters: {}; routes are answered source-only until they are renamed on one cluster",
                c.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        out.extend(self.fail_static_reasons());
        out
    }

    // ------------------------------------------------------------------ collisions

    pub fn collisions(&self) -> BTreeSet<String> {
        read(&self.collisions).clone()
    }

    /// Recomputes collisions from both clusters' cached cluster info (if both are known).
    pub(crate) fn update_collisions(&self) {
        let Some(ups) = self.upstreams() else { return };
        let (Some(s), Some(t)) = (
            ups.source.cached_cluster_info(),
            ups.target.cached_cluster_info(),
        ) else {
            return;
        };
        let found = cluster_collisions(&s, &t);
        let mut held = write(&self.collisions);
        if *held != found {
            if found.is_empty() {
                tracing::info!(
                    "no broker name is shared by the two clusters any more; merging routes again"
                );
            } else {
                tracing::error!(
                    collisions = ?found,
                    "broker names present in both clusters: refusing to merge, answering source-only for every topic; rename the brokers on one cluster"
                );
            }
            metrics::get().collisions.set(found.len() as i64);
            *held = found;
        }
    }

    // ------------------------------------------------------------------ presence

    pub(crate) fn record_presence(
        &self,
        topic: &str,
        peer: SocketAddr,
        language: &str,
        version: i32,
    ) {
        let mut p = lock(&self.presence);
        p.record(topic, &peer.to_string(), language, version, now_ms());
        metrics::get().presence_clients.set(p.len() as i64);
    }

    /// Runs `f` on the presence table.
    pub fn with_presence<T>(&self, f: impl FnOnce(&Presence) -> T) -> T {
        f(&lock(&self.presence))
    }

    // ------------------------------------------------------------------ routes

    /// The stage of `topic` and whether DONE's grace lasts, if the task has it.
    pub fn stage_of(&self, topic: &str) -> Option<(Stage, bool)> {
        let t = read(&self.stages).get(topic)?;
        let grace_ms = i64::try_from(self.cfg.done_grace.as_millis()).unwrap_or(i64::MAX);
        Some((t.stage, grace_active(t.updated_at_ms, grace_ms, now_ms())))
    }

    /// Which cluster gets forwarded requests (see [`merge::owner_side`]).
    pub fn owner(&self) -> Side {
        merge::owner_side(read(&self.stages).stages())
    }

    /// Builds the answer for `topic` from the stage and both clusters' routes.
    /// `Err` (with the reason) while the router is not ready.
    pub async fn resolve_route(&self, topic: &str) -> Result<Resolved, String> {
        let ups = self.upstreams().ok_or_else(|| self.not_ready_reason())?;
        let rule = TopicRule::classify(topic, self.stage_of(topic));
        let collisions = self.collisions();
        let masks = match rule {
            TopicRule::Staged {
                stage,
                grace_active,
            } => Some(route_perms(stage, grace_active)),
            _ => None,
        };
        let source_needed = !collisions.is_empty() || masks.is_none_or(|m| m.source.is_some());
        let target_needed = collisions.is_empty()
            && match rule {
                TopicRule::AutoCreateTemplate | TopicRule::Unmanaged => false,
                TopicRule::GroupUnion => true,
                TopicRule::Staged { .. } => masks.is_some_and(|m| m.target.is_some()),
            };
        let (s, mut t) = tokio::join!(
            async {
                if source_needed {
                    Some(ups.source.route(topic).await)
                } else {
                    None
                }
            },
            async {
                if target_needed {
                    Some(ups.target.route(topic).await)
                } else {
                    None
                }
            }
        );
        // Topics outside the task: the target matters only when the source lacks them.
        if t.is_none()
            && collisions.is_empty()
            && rule == TopicRule::Unmanaged
            && matches!(&s, Some(f) if matches!(f.value(), Some(None)))
        {
            t = Some(ups.target.route(topic).await);
        }
        let stale = [&s, &t]
            .iter()
            .any(|f| f.as_ref().is_some_and(Fetched::is_stale))
            || !self.store_reachable();
        let source_kv = ups.source.order_kv();
        let target_kv = ups.target.order_kv();
        let input = MergeInput {
            source: as_upstream(&s),
            target: as_upstream(&t),
            source_order_kv: source_kv.table.get(topic).map(String::as_str),
            target_order_kv: target_kv.table.get(topic).map(String::as_str),
            cluster_collisions: &collisions,
        };
        let outcome = merge::merge_route(rule, &input);
        if let MergeOutcome::Route(m) = &outcome
            && !m.notes.is_empty()
        {
            let mut warned = lock(&self.warned_notes);
            if warned.len() < 1024 && warned.insert(topic.to_string()) {
                tracing::warn!(%topic, notes = ?m.notes, "route merge note (logged once per topic)");
            }
        }
        Ok(Resolved {
            rule,
            outcome,
            stale,
        })
    }

    /// Why `side` is unknown, for error remarks.
    pub fn unavailable_reason(&self, side: Side) -> String {
        match self.upstreams() {
            Some(ups) => {
                let up = ups.get(side);
                let h = up.health();
                format!(
                    "the {} NameServers ({}) did not answer and nothing is cached: {}",
                    up.name(),
                    up.addrs(),
                    h.last_error.unwrap_or_else(|| "no answer yet".into())
                )
            }
            None => self.not_ready_reason(),
        }
    }

    /// Topics with a cached route (the larger of the two clusters' caches).
    pub fn cached_topics(&self) -> usize {
        self.upstreams().map_or(0, |u| {
            u.source.cached_topics().max(u.target.cached_topics())
        })
    }

    /// Highest store revision of stage data applied.
    pub fn stage_revision(&self) -> i64 {
        read(&self.stages).revision()
    }
}

fn as_upstream(f: &Option<Fetched<RouteValue>>) -> UpstreamRoute<'_> {
    match f {
        None | Some(Fetched::Unknown(_)) => UpstreamRoute::Unknown,
        Some(Fetched::Fresh(v) | Fetched::Stale(v)) => match v {
            Some(r) => UpstreamRoute::Found(r),
            None => UpstreamRoute::NotFound,
        },
    }
}
