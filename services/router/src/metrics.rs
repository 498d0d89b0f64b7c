//! The router's Prometheus families (process-wide, registered on first use).
//!
//! - `ferry_router_requests_total{code,result}`: NameServer requests by request code and
//!   outcome (`success`, `stale` = success from last known state, `topic_not_exist`,
//!   `not_found` (KV), `error`, `refused` (broker writes), `not_supported`, `forwarded`,
//!   `oneway`). Unknown codes are labelled `other` so the label set stays bounded.
//! - `ferry_router_request_duration_seconds{code}`.
//! - `ferry_router_cache_hits_total{cluster}` / `ferry_router_cache_misses_total{cluster}`:
//!   route lookups answered from the per-topic cache vs. fetched from the upstream.
//! - `ferry_router_fail_static{cause}`: 1 while serving last known state because the
//!   `store`, the `source` or the `target` NameServers are unreachable.
//! - `ferry_router_stage_revision`: highest store revision of stage data applied.
//! - `ferry_router_presence_clients`: (topic, client) pairs remembered.
//! - `ferry_router_broker_name_collisions`: broker names present in both clusters (> 0
//!   means routes are not merged).
//!
//! [`init`] (called by [`crate::Router::new`]) creates the series with bounded label sets
//! (`fail_static` per cause, cache hits and misses per cluster) at 0, so a scrape shows them
//! before the first event (prometheus-client leaves families without series out). The list
//! with every label value is in `docs/metrics.md`.

use std::sync::LazyLock;
use std::time::Duration;

use ferry_remoting::RequestCode;
use ferry_telemetry::metrics::{self, HistogramCtor};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeResult {
    pub code: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: String,
}

pub struct RouterMetrics {
    pub requests: Family<CodeResult, Counter>,
    pub duration: Family<CodeLabel, Histogram, HistogramCtor>,
    pub cache_hits: Family<ClusterLabel, Counter>,
    pub cache_misses: Family<ClusterLabel, Counter>,
    pub fail_static: Family<CauseLabel, Gauge>,
    pub stage_revision: Gauge,
    pub presence_clients: Gauge,
    pub collisions: Gauge,
}

static METRICS: LazyLock<RouterMetrics> = LazyLock::new(|| RouterMetrics {
    requests: metrics::counter_family(
        "ferry_router_requests",
        "NameServer requests answered by the router, by request code and result",
    ),
    duration: metrics::latency_family(
        "ferry_router_request_duration",
        "Time to answer a NameServer request",
    ),
    cache_hits: metrics::counter_family(
        "ferry_router_cache_hits",
        "Route lookups answered from the per-topic cache",
    ),
    cache_misses: metrics::counter_family(
        "ferry_router_cache_misses",
        "Route lookups that went to the upstream NameServers",
    ),
    fail_static: metrics::register(
        "ferry_router_fail_static",
        "1 while serving last known state because the store or an upstream is unreachable",
        Family::default(),
    ),
    stage_revision: metrics::register(
        "ferry_router_stage_revision",
        "Highest store revision of stage data applied",
        Gauge::default(),
    ),
    presence_clients: metrics::register(
        "ferry_router_presence_clients",
        "(topic, client address) pairs remembered for presence",
        Gauge::default(),
    ),
    collisions: metrics::register(
        "ferry_router_broker_name_collisions",
        "Broker names present in both clusters; routes are not merged while > 0",
        Gauge::default(),
    ),
});

/// The families, registered on first use.
pub fn get() -> &'static RouterMetrics {
    &METRICS
}

/// The causes of `ferry_router_fail_static`.
pub const FAIL_STATIC_CAUSES: [&str; 3] = ["store", "source", "target"];

/// The `cluster` label values of the cache families.
pub const CLUSTERS: [&str; 2] = ["source", "target"];

/// Creates every series with a bounded label set, at 0 unless it is already set: dashboards
/// see "not fail-static" and "no lookups yet" rather than no data.
pub fn init() {
    let m = get();
    for cause in FAIL_STATIC_CAUSES {
        let _ = m.fail_static.get_or_create(&CauseLabel {
            cause: cause.to_string(),
        });
    }
    for cluster in CLUSTERS {
        let label = ClusterLabel {
            cluster: cluster.to_string(),
        };
        let _ = m.cache_hits.get_or_create(&label);
        let _ = m.cache_misses.get_or_create(&label);
    }
}

/// The `code` label: the number for codes Ferry knows, `other` for the rest.
pub fn code_label(code: i32) -> String {
    if RequestCode::name_of(code).is_some() {
        code.to_string()
    } else {
        "other".to_string()
    }
}

/// Records one answered request.
pub fn observe(code: i32, result: &str, elapsed: Duration) {
    let code = code_label(code);
    let m = get();
    m.requests
        .get_or_create(&CodeResult {
            code: code.clone(),
            result: result.to_string(),
        })
        .inc();
    m.duration
        .get_or_create(&CodeLabel { code })
        .observe(elapsed.as_secs_f64());
}

pub fn cache(cluster: &str, hit: bool) {
    let label = ClusterLabel {
        cluster: cluster.to_string(),
    };
    if hit {
        get().cache_hits.get_or_create(&label).inc();
    } else {
        get().cache_misses.get_or_create(&label).inc();
    }
}

pub fn set_fail_static(cause: &str, on: bool) {
    get()
        .fail_static
        .get_or_create(&CauseLabel {
            cause: cause.to_string(),
        })
        .set(i64::from(on));
}
