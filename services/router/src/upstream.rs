//! One upstream cluster (the source or the target) as the router sees it: a NameServer
//! client with failover over its address list, a per-topic route cache, cached cluster info
//! and `ORDER_TOPIC_CONFIG` table, and the reachability behind fail-static.
//!
//! Route cache: a topic's route (or "not found") is fresh for `route_ttl`; after that the
//! next lookup fetches it again (on demand; concurrent lookups of one topic share one
//! upstream call). When a fetch fails the last known value is served (stale-on-error) and
//! the upstream is marked unreachable; while it is, lookups that have a cached value get it
//! at once and the upstream is probed in the background (at most once per
//! `retry_down_after` after a failure), so a dead NameServer costs clients nothing but
//! freshness. Every call is bounded by `timeout`, well under the 3 s clients wait for a
//! NameServer before closing the channel and rotating to another router.
//!
//! Memory: at most `route_cache_capacity` topics per cluster (the least recently used are
//! dropped beyond that) and entries unused for `route_idle` are dropped, except while the
//! upstream is unreachable (they are the last known good state then).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ferry_core::perm::Side;
use ferry_remoting::body::{KVTable, TopicList};
use ferry_remoting::{
    ClientConfig, ClusterInfo, NameServerClient, RemotingClient, RemotingCommand, RemotingError,
    ResponseCode, TopicRouteData,
};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::merge::ORDER_TOPIC_CONFIG;
use crate::metrics;
pub(crate) use ferry_store::now_ms;

/// Timings and bounds of an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// How long a cached route (or "not found") is served without asking again.
    pub route_ttl: Duration,
    /// Deadline of one upstream call, failover across the list included.
    pub timeout: Duration,
    /// While unreachable, serve cached values without trying the upstream for this long
    /// after the last failure.
    pub retry_down_after: Duration,
    /// Topics cached per cluster.
    pub route_cache_capacity: usize,
    /// Entries unused this long are dropped (unless the upstream is unreachable).
    pub route_idle: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            route_ttl: Duration::from_secs(5),
            timeout: Duration::from_millis(1500),
            retry_down_after: Duration::from_secs(2),
            route_cache_capacity: 100_000,
            route_idle: Duration::from_secs(600),
        }
    }
}

/// A cached value and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched<T> {
    /// Fetched within the TTL.
    Fresh(T),
    /// The last known value; the upstream did not answer (or was not asked because it is
    /// down).
    Stale(T),
    /// Nothing known and the upstream did not answer: the reason.
    Unknown(String),
}

impl<T> Fetched<T> {
    pub fn is_stale(&self) -> bool {
        matches!(self, Fetched::Stale(_))
    }

    /// The reason nothing is known, if so.
    pub fn error(&self) -> Option<&str> {
        match self {
            Fetched::Unknown(e) => Some(e),
            _ => None,
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Fetched::Fresh(v) | Fetched::Stale(v) => Some(v),
            Fetched::Unknown(_) => None,
        }
    }
}

/// A topic's route on one cluster: `None` = TOPIC_NOT_EXIST.
pub type RouteValue = Option<Arc<TopicRouteData>>;
type SharedFetch = Shared<BoxFuture<'static, Result<RouteValue, String>>>;

struct RouteEntry {
    value: RouteValue,
    fetched: Instant,
    used: Instant,
}

/// Reachability of an upstream, as reported by the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// False from the first failed call until the next successful one.
    pub reachable: bool,
    pub last_error: Option<String>,
    /// Unix ms of the last successful call (0 = never).
    pub last_success_ms: i64,
    last_failure: Option<Instant>,
}

/// One upstream cluster. Shared (`Arc`) between the request path and background loops.
pub struct Upstream {
    side: Side,
    addrs: String,
    ns: NameServerClient,
    cfg: UpstreamConfig,
    routes: Mutex<HashMap<String, RouteEntry>>,
    inflight: Mutex<HashMap<String, SharedFetch>>,
    cluster: Mutex<Option<(Arc<ClusterInfo>, Instant)>>,
    order_kv: Mutex<Option<Arc<KVTable>>>,
    /// Last good topic list per request (206/224/...), for stale-on-error.
    lists: Mutex<HashMap<String, Arc<TopicList>>>,
    health: Mutex<UpstreamHealth>,
}

/// Bound on remembered topic lists (224 is keyed by cluster name, which clients choose).
const MAX_LISTS: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The metric/log name of a side.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Target => "target",
    }
}

impl Upstream {
    /// An upstream over the NameServer list `addrs` (`h:p;h:p`).
    pub fn new(side: Side, addrs: &str, cfg: UpstreamConfig) -> Result<Arc<Self>, RemotingError> {
        let client = RemotingClient::new(ClientConfig {
            connect_timeout: cfg.timeout.min(Duration::from_secs(1)),
            request_timeout: cfg.timeout,
            ..Default::default()
        });
        let ns = NameServerClient::new(addrs, client)?;
        Ok(Arc::new(Upstream {
            side,
            addrs: ns.addrs().join(";"),
            ns,
            cfg,
            routes: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            cluster: Mutex::new(None),
            order_kv: Mutex::new(None),
            lists: Mutex::new(HashMap::new()),
            health: Mutex::new(UpstreamHealth::default()),
        }))
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn name(&self) -> &'static str {
        side_name(self.side)
    }

    /// The NameServer list, normalized.
    pub fn addrs(&self) -> &str {
        &self.addrs
    }

    pub fn health(&self) -> UpstreamHealth {
        lock(&self.health).clone()
    }

    /// Topics with a cached route.
    pub fn cached_topics(&self) -> usize {
        lock(&self.routes).len()
    }

    /// Whether the upstream failed recently enough that lookups with a cached value should
    /// not wait on it.
    fn down_recently(&self, now: Instant) -> bool {
        let h = lock(&self.health);
        !h.reachable
            && h.last_failure
                .is_some_and(|t| now.duration_since(t) < self.cfg.retry_down_after)
    }

    /// Whether the last call failed.
    fn is_down(&self) -> bool {
        let h = lock(&self.health);
        !h.reachable && h.last_error.is_some()
    }

    fn mark_ok(&self) {
        let mut h = lock(&self.health);
        if !h.reachable && h.last_error.is_some() {
            tracing::info!(cluster = self.name(), addrs = %self.addrs, "upstream NameServers reachable again");
        }
        h.reachable = true;
        h.last_error = None;
        h.last_success_ms = now_ms();
        drop(h);
        metrics::set_fail_static(self.name(), false);
    }

    fn mark_failed(&self, error: &str) {
        let mut h = lock(&self.health);
        if h.reachable || h.last_error.is_none() {
            tracing::warn!(cluster = self.name(), addrs = %self.addrs, %error, "upstream NameServers unreachable; serving last known routes (fail-static)");
        }
        h.reachable = false;
        h.last_error = Some(error.to_string());
        h.last_failure = Some(Instant::now());
        drop(h);
        metrics::set_fail_static(self.name(), true);
    }

    /// Runs `call` bounded by the upstream timeout, flattening errors to text.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, RemotingError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.cfg.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what} from {} NameServers: {e}", self.name())),
            Err(_) => Err(format!(
                "{what} from {} NameServers ({}): no answer within {} ms",
                self.name(),
                self.addrs,
                self.cfg.timeout.as_millis()
            )),
        }
    }

    // ------------------------------------------------------------------ routes

    /// The topic's route on this cluster (see the module docs).
    pub async fn route(self: &Arc<Self>, topic: &str) -> Fetched<RouteValue> {
        let now = Instant::now();
        let cached = lock(&self.routes).get_mut(topic).map(|e| {
            e.used = now;
            (e.value.clone(), e.fetched)
        });
        if let Some((value, fetched)) = &cached {
            if now.duration_since(*fetched) < self.cfg.route_ttl {
                metrics::cache(self.name(), true);
                return Fetched::Fresh(value.clone());
            }
            if self.down_recently(now) {
                metrics::cache(self.name(), true);
                return Fetched::Stale(value.clone());
            }
            if self.is_down() {
                // Down for a while: answer from the cache now and probe the upstream in
                // the background, so no client waits on a dead NameServer.
                metrics::cache(self.name(), true);
                let me = self.clone();
                let t = topic.to_string();
                tokio::spawn(async move {
                    let _ = me.fetch_route(&t).await;
                });
                return Fetched::Stale(value.clone());
            }
        }
        metrics::cache(self.name(), false);
        match self.fetch_route(topic).await {
            Ok(v) => Fetched::Fresh(v),
            Err(e) => match cached {
                Some((v, _)) => Fetched::Stale(v),
                None => Fetched::Unknown(e),
            },
        }
    }

    /// Fetches a route, sharing one upstream call between concurrent callers. The call
    /// runs in its own task, so a caller giving up does not cancel it for the others.
    async fn fetch_route(self: &Arc<Self>, topic: &str) -> Result<RouteValue, String> {
        let shared = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(topic) {
                Some(f) => f.clone(),
                None => {
                    let me = self.clone();
                    let t = topic.to_string();
                    let task = tokio::spawn(async move { me.fetch_route_now(&t).await });
                    let me = self.clone();
                    let t = topic.to_string();
                    let f = async move {
                        task.await.unwrap_or_else(|e| {
                            // The task did not get to remove its entry: do it, so the next
                            // lookup fetches again instead of reusing this failure.
                            lock(&me.inflight).remove(&t);
                            Err(format!("route fetch task failed: {e}"))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(topic.to_string(), f.clone());
                    f
                }
            }
        };
        shared.await
    }

    async fn fetch_route_now(&self, topic: &str) -> Result<RouteValue, String> {
        let result = self
            .bounded("route", self.ns.topic_route(topic))
            .await
            .map(|r| r.map(Arc::new));
        match &result {
            Ok(v) => {
                self.store_route(topic, v.clone());
                self.mark_ok();
            }
            Err(e) => self.mark_failed(e),
        }
        lock(&self.inflight).remove(topic);
        result
    }

    fn store_route(&self, topic: &str, value: RouteValue) {
        let now = Instant::now();
        let mut routes = lock(&self.routes);
        if routes.len() >= self.cfg.route_cache_capacity && !routes.contains_key(topic) {
            // Drop the least recently used eighth at once, so this stays amortized O(1).
            let mut by_use: Vec<(Instant, String)> =
                routes.iter().map(|(k, e)| (e.used, k.clone())).collect();
            by_use.sort();
            let drop_n = (routes.len() / 8).max(1);
            for (_, k) in by_use.into_iter().take(drop_n) {
                routes.remove(&k);
            }
        }
        routes.insert(
            topic.to_string(),
            RouteEntry {
                value,
                fetched: now,
                used: now,
            },
        );
    }

    /// Drops routes unused for `route_idle`, unless the upstream is unreachable.
    pub fn sweep(&self) {
        if !lock(&self.health).reachable {
            return;
        }
        let idle = self.cfg.route_idle;
        let now = Instant::now();
        lock(&self.routes).retain(|_, e| now.duration_since(e.used) < idle);
    }

    /// The cached route of `topic` without asking anyone (admin views).
    pub fn cached_route(&self, topic: &str) -> Option<RouteValue> {
        lock(&self.routes).get(topic).map(|e| e.value.clone())
    }

    // ------------------------------------------------------------------ cluster info

    /// Refreshes cluster info (106) and the `ORDER_TOPIC_CONFIG` table (219); called by the
    /// background loop every TTL. Returns the cluster info error, if any.
    pub async fn refresh(&self) -> Result<(), String> {
        let info = self.bounded("cluster info", self.ns.cluster_info()).await;
        let result = match info {
            Ok(info) => {
                *lock(&self.cluster) = Some((Arc::new(info), Instant::now()));
                self.mark_ok();
                Ok(())
            }
            Err(e) => {
                self.mark_failed(&e);
                Err(e)
            }
        };
        if result.is_ok() {
            // A KV failure on a NameServer that answers 106 is not an outage: keep the last
            // table and say so at debug level.
            match self
                .bounded("order config", self.ns.kv_list(ORDER_TOPIC_CONFIG))
                .await
            {
                Ok(kv) => *lock(&self.order_kv) = Some(Arc::new(kv)),
                Err(e) => {
                    tracing::debug!(cluster = self.name(), error = %e, "ORDER_TOPIC_CONFIG not refreshed")
                }
            }
        }
        result
    }

    /// Cluster info: cached if younger than the TTL, else fetched (stale on error).
    pub async fn cluster_info(&self) -> Fetched<Arc<ClusterInfo>> {
        let cached = lock(&self.cluster).clone();
        if let Some((info, at)) = &cached
            && (at.elapsed() < self.cfg.route_ttl || self.down_recently(Instant::now()))
        {
            return if at.elapsed() < self.cfg.route_ttl {
                Fetched::Fresh(info.clone())
            } else {
                Fetched::Stale(info.clone())
            };
        }
        match self.refresh().await {
            Ok(()) => match lock(&self.cluster).clone() {
                Some((info, _)) => Fetched::Fresh(info),
                None => Fetched::Unknown("cluster info vanished".into()),
            },
            Err(e) => match cached {
                Some((info, _)) => Fetched::Stale(info),
                None => Fetched::Unknown(e),
            },
        }
    }

    /// The last cluster info, without asking.
    pub fn cached_cluster_info(&self) -> Option<Arc<ClusterInfo>> {
        lock(&self.cluster).as_ref().map(|(i, _)| i.clone())
    }

    /// The last `ORDER_TOPIC_CONFIG` table (empty until first fetched).
    pub fn order_kv(&self) -> Arc<KVTable> {
        lock(&self.order_kv).clone().unwrap_or_default()
    }

    /// The cluster's name(s) from its cluster info.
    pub fn cluster_names(&self) -> Vec<String> {
        self.cached_cluster_info()
            .map(|i| i.cluster_addr_table.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether this cluster has broker `name` (per the last cluster info).
    pub fn has_broker(&self, name: &str) -> bool {
        self.cached_cluster_info()
            .is_some_and(|i| i.broker_addr_table.contains_key(name))
    }

    // ------------------------------------------------------------------ forwarding

    /// Sends `request` (as the client sent it: code, version, language, ext fields, body)
    /// to this cluster's NameServers and returns their answer.
    pub async fn forward(&self, request: RemotingCommand) -> Result<RemotingCommand, String> {
        let code = request.code;
        let result = self
            .bounded(&format!("request {code}"), self.ns.invoke(request))
            .await;
        match result {
            Ok((_, resp)) => {
                self.mark_ok();
                Ok(resp)
            }
            Err(e) => {
                self.mark_failed(&e);
                Err(e)
            }
        }
    }

    /// A topic-list request (206, 224, 304, 311-313) forwarded and parsed; the last good
    /// list for the same request when the upstream does not answer.
    pub async fn topic_list(&self, key: &str, request: RemotingCommand) -> Fetched<Arc<TopicList>> {
        match self.forward(request).await {
            Ok(resp) if resp.code == ResponseCode::SUCCESS => {
                if resp.body.is_empty() {
                    return Fetched::Fresh(Arc::new(TopicList::default()));
                }
                match TopicList::from_body(&resp.body) {
                    Ok(list) => {
                        let list = Arc::new(list);
                        let mut lists = lock(&self.lists);
                        if lists.len() < MAX_LISTS || lists.contains_key(key) {
                            lists.insert(key.to_string(), list.clone());
                        }
                        Fetched::Fresh(list)
                    }
                    Err(e) => Fetched::Unknown(format!(
                        "{} NameServers sent an unreadable topic list: {e}",
                        self.name()
                    )),
                }
            }
            // An answer, not an outage (e.g. "disable" when enableAllTopicList=false).
            Ok(resp) => Fetched::Unknown(format!(
                "{} NameServers answered {}: {}",
                self.name(),
                resp.code,
                resp.remark.unwrap_or_default()
            )),
            Err(e) => match lock(&self.lists).get(key) {
                Some(list) => Fetched::Stale(list.clone()),
                None => Fetched::Unknown(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_helpers() {
        let f: Fetched<i32> = Fetched::Stale(3);
        assert!(f.is_stale());
        assert_eq!(f.value(), Some(&3));
        assert_eq!(Fetched::<i32>::Unknown("x".into()).value(), None);
    }

    #[tokio::test]
    async fn invalid_address_lists_are_refused() {
        assert!(Upstream::new(Side::Source, "", UpstreamConfig::default()).is_err());
        assert!(Upstream::new(Side::Source, "a:1;b", UpstreamConfig::default()).is_err());
        let up = Upstream::new(Side::Target, " 127.0.0.1:1 ;", UpstreamConfig::default()).unwrap();
        assert_eq!(up.addrs(), "127.0.0.1:1");
        assert_eq!(up.name(), "target");
    }

    #[tokio::test]
    async fn cache_capacity_is_bounded() {
        let cfg = UpstreamConfig {
            route_cache_capacity: 16,
            ..Default::default()
        };
        let up = Upstream::new(Side::Source, "127.0.0.1:1", cfg).unwrap();
        for i in 0..1000 {
            up.store_route(&format!("T{i}"), None);
        }
        assert!(up.cached_topics() <= 16, "{}", up.cached_topics());
        assert!(up.cached_route("T999").is_some());
    }

    #[tokio::test]
    async fn unreachable_upstream_is_unknown_then_stale() {
        let cfg = UpstreamConfig {
            timeout: Duration::from_millis(300),
            route_ttl: Duration::from_millis(1),
            ..Default::default()
        };
        // A port nobody listens on: connection refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let up = Upstream::new(Side::Source, &format!("127.0.0.1:{port}"), cfg).unwrap();
        assert!(matches!(up.route("T").await, Fetched::Unknown(_)));
        assert!(!up.health().reachable);
        up.store_route("T", None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(up.route("T").await, Fetched::Stale(None));
    }
}
