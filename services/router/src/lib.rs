//! The router: a NameServer-protocol route server that moves a migration task's traffic
//! by stage, out of the message path, plus a gRPC admin API.
//!
//! Clients set `namesrvAddr` to a pool of routers. Every route lookup (105) is answered with
//! a route built from the source cluster's route, the target cluster's route and the
//! topic's stage in the store; queue permission bits decide where producers write and
//! consumers read, and messages keep flowing directly between clients and brokers.
//!
//! # What a router serves
//! - **One migration task** (`--task-id`): the source and target NameServer lists come
//!   from the task record in the store (re-read every few seconds, so a changed list is
//!   picked up). Topics in the task's topic set are merged by their stage; topics not in
//!   the task are served from the source as-is (INITIAL semantics), or from the target
//!   as-is when only the target has them; TOPIC_NOT_EXIST (17) only when no cluster has the
//!   topic. `TBW102` is the source's route as-is, never the target's, so auto-created topics
//!   land on the source (where rescans find them and import them into the task) and
//!   nothing is ever auto-created on the target through Ferry. `%RETRY%<group>` and
//!   `%DLQ%<group>` are the union of both clusters' queues with their own perms. The rules
//!   and their invariants are in [`merge`] (pure, property-tested).
//! - **Stages** ([`ferry_core::perm::route_perms`], applied as `queue perm & mask`, never
//!   adding a permission): INITIAL source as-is, target absent; DUAL_READ target read-only;
//!   DUAL_WRITE both read/write; SWITCHING source read-only; DONE source perm 0 for
//!   `--done-grace` (default 10 min, counted from the topic's `updated_at_ms`) so
//!   transactional check-backs still reach producers (they heartbeat only to brokers in
//!   their routes), then source absent.
//! - **Broker-name collisions** between the clusters (checked on both clusters' cluster
//!   info, refreshed with the caches, and on every pair of routes): the router refuses to
//!   merge and answers source-only for every topic, sets
//!   `ferry_router_broker_name_collisions` > 0 and turns the `ferry.router.v1.RouterService`
//!   health NOT_SERVING with the names in `GetRouterStatus`. It never renames.
//! - **Other codes**: see [`handler`] (106 merged, list calls unioned, `ORDER_TOPIC_CONFIG`
//!   merged, broker writes 103/104/904 refused, other NameServer codes forwarded to the
//!   cluster that owns the traffic, unknown codes REQUEST_CODE_NOT_SUPPORTED).
//!
//! # Wire behaviour
//! Requests are parsed at least as leniently as Apache's Java NameServer (JSON headers with
//! or without `serializeTypeCurrentRPC`, ext fields as strings or numbers, any client
//! version and language, both header encodings: [`ferry_remoting::server`]). Route bodies
//! use the Java NameServer's dialect switch: quoted broker-id keys iff `version >= 401 ||
//! acceptStandardJsonOnly`, fastjson-style unquoted keys otherwise (old Java and Go
//! clients need those). Output is deterministic (sorted lists and keys), so every replica
//! and every poll gives byte-identical answers while nothing changes.
//!
//! # Caches and fail-static
//! Routes are cached per topic per cluster for `--route-ttl` (5 s) and filled on demand;
//! stages come from a store snapshot plus a watch resumed by revision after disconnects
//! ([`sync`]). If the store or an upstream NameServer is down, the router keeps serving the
//! last known good stages and routes (stale-on-error, never TOPIC_NOT_EXIST because of an
//! outage) and says so: `ferry_router_fail_static{cause=store|source|target}` = 1, the
//! reasons in `GetRouterStatus`, and `ferry.router.v1.RouterService` NOT_SERVING (while
//! `""`, the readiness a load balancer should probe, stays SERVING: a fail-static router
//! still answers). A topic whose answer depends on a cluster that is down with nothing
//! cached gets SYSTEM_ERROR (clients keep their current route on errors).
//!
//! # Bounds
//! Frames are limited before allocation ([`ferry_remoting::ServerConfig`]: 16 MiB frames,
//! 64 KiB headers), connections (`--max-connections`), requests in flight per connection,
//! idle connections (slowloris included) are closed after `--idle-timeout`; route caches,
//! presence and remembered lists have fixed capacities. Malformed frames close the
//! connection with a log line; a panicking handler answers SYSTEM_ERROR.
//!
//! # Presence and registration
//! Every 105 records (topic, client address) with lookup count, first/last seen, language
//! and version, in memory and bounded (least recently seen evicted), served by
//! `ListClientPresence` / `GetTopicPresence`. The router registers itself as
//! `routers/<router-id>` under a lease while it runs.

pub mod admin;
pub mod handler;
pub mod merge;
pub mod metrics;
pub mod presence;
pub mod router;
pub mod stages;
pub mod sync;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

pub use admin::RouterAdmin;
pub use handler::NamesrvHandler;
pub use router::{Router, RouterConfig};
pub use sync::{StoreSlot, StoreSlotWriter};
/// Re-exported for embedders (`ferry standalone`) that stop a router with a token.
pub use tokio_util::sync::CancellationToken;
pub use upstream::UpstreamConfig;

use ferry_remoting::{RequestHandler, ServerConfig, serve_connections};
use tokio::net::TcpListener;

/// The NameServer listener's limits for a router: the remoting defaults with fewer
/// connections and requests in flight (route lookups are small and fast).
pub fn default_server_config() -> ServerConfig {
    ServerConfig {
        max_in_flight_per_connection: 16,
        max_connections: 4096,
        idle_timeout: Duration::from_secs(120),
        ..ServerConfig::default()
    }
}

/// Serves the NameServer protocol for `router` on `listener` until `shutdown`, then drains.
pub async fn serve_namesrv<F>(
    router: Arc<Router>,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    router.set_addrs(listener.local_addr().ok(), None);
    let handler: Arc<dyn RequestHandler> = NamesrvHandler::new(router);
    serve_connections(listener, handler, config, shutdown).await;
}
