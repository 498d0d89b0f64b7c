//! Prometheus metrics: one process-wide registry, registration helpers, the
//! gRPC families every Ferry server records, and a tiny `/metrics` endpoint.
//!
//! Families are registered once per process (typically through a
//! `LazyLock`/`OnceLock`) and then updated through cheap clones:
//!
//! ```
//! use ferry_telemetry::metrics;
//! use prometheus_client::metrics::counter::Counter;
//!
//! let scans: Counter = metrics::register("ferry_example_scans", "Scans finished", Counter::default());
//! scans.inc();
//! assert!(metrics::encode().contains("ferry_example_scans_total 1"));
//! ```
//!
//! gRPC families (recorded by `ferry-server`'s request layer and run loop through [`grpc`]):
//! - `ferry_grpc_requests_total{service,method,code}`: finished calls by final
//!   gRPC status (`OK`, `NOT_FOUND`, ... as in the gRPC status-code spec);
//! - `ferry_grpc_request_duration_seconds{service,method}`: time from request
//!   headers to the end of the response stream;
//! - `ferry_grpc_serving{service}`: 1 while `grpc.health.v1` says SERVING for the
//!   service (`server` stands for `""`, the whole server), else 0.
//!
//! RocketMQ remoting client families (recorded by `ferry-remoting`'s client through
//! [`remoting_client`]):
//! - `ferry_remoting_client_requests_total{code,outcome}`: requests Ferry sent to
//!   NameServers and brokers, by request code name and outcome;
//! - `ferry_remoting_client_request_duration_seconds{code}`: time from sending to the
//!   answer (or to the failure).
//!
//! The full list of Ferry's metrics, with their labels, is `docs/metrics.md`.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};
use tokio::task::JoinHandle;

/// Content type of [`encode`]'s output (OpenMetrics text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Global {
    registry: Mutex<Registry>,
    // The registry cannot be asked which names it holds; a second family under
    // one name would make every scrape fail, so registration checks here.
    names: Mutex<HashSet<String>>,
}

static GLOBAL: LazyLock<Global> = LazyLock::new(|| Global {
    registry: Mutex::new(Registry::default()),
    names: Mutex::new(HashSet::new()),
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Metrics must keep working after an unrelated panic while the lock was held.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process-wide registry served on `/metrics`. Prefer [`register`] /
/// [`register_with_unit`], which refuse duplicate names.
pub fn registry() -> &'static Mutex<Registry> {
    &GLOBAL.registry
}

fn register_inner<M: Metric + Clone>(name: &str, help: &str, unit: Option<Unit>, metric: M) -> M {
    let mut names = lock(&GLOBAL.names);
    if !names.insert(name.to_owned()) {
        tracing::warn!(
            metric = name,
            "metric already registered; the new instance is not exported"
        );
        return metric;
    }
    let mut registry = lock(&GLOBAL.registry);
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

/// Registers `metric` under `name` (without type suffix: a counter named
/// `x` is exported as `x_total`) and returns it for recording.
///
/// A name registered twice keeps the first metric; the duplicate is returned
/// unexported and a warning is logged.
pub fn register<M: Metric + Clone>(name: &str, help: &str, metric: M) -> M {
    register_inner(name, help, None, metric)
}

/// Like [`register`], with a unit appended to the exported name (`x` with
/// [`Unit::Seconds`] becomes `x_seconds`).
pub fn register_with_unit<M: Metric + Clone>(name: &str, help: &str, unit: Unit, metric: M) -> M {
    register_inner(name, help, Some(unit), metric)
}

/// Registers a labelled counter family.
pub fn counter_family<L>(name: &str, help: &str) -> Family<L, Counter>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    register(name, help, Family::default())
}

/// Histogram buckets for RPC latencies, 1 ms to 30 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Constructor type for latency histogram families.
pub type HistogramCtor = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Registers a labelled latency histogram family in seconds ([`LATENCY_BUCKETS`]).
pub fn latency_family<L>(name: &str, help: &str) -> Family<L, Histogram, HistogramCtor>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    register_with_unit(
        name,
        help,
        Unit::Seconds,
        Family::new_with_constructor(latency_histogram as HistogramCtor),
    )
}

/// Labels of `ferry_grpc_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcCodeLabels {
    /// Fully qualified service, e.g. `grpc.health.v1.Health`.
    pub service: String,
    /// Method name, e.g. `Check`.
    pub method: String,
    /// Final gRPC status as its canonical name, e.g. `OK`.
    pub code: String,
}

/// Labels of `ferry_grpc_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethodLabels {
    /// Fully qualified service.
    pub service: String,
    /// Method name.
    pub method: String,
}

/// Labels of `ferry_grpc_serving`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcServiceLabels {
    /// Fully qualified service, or [`WHOLE_SERVER_LABEL`] for `""`.
    pub service: String,
}

/// The `service` label of `ferry_grpc_serving` for the health status of the whole
/// server (`""` in `grpc.health.v1`, what readiness probes ask).
pub const WHOLE_SERVER_LABEL: &str = "server";

/// The standard gRPC server families.
#[derive(Debug)]
pub struct GrpcMetrics {
    /// `ferry_grpc_requests_total{service,method,code}`.
    pub requests: Family<GrpcCodeLabels, Counter>,
    /// `ferry_grpc_request_duration_seconds{service,method}`.
    pub duration: Family<GrpcMethodLabels, Histogram, HistogramCtor>,
    /// `ferry_grpc_serving{service}`.
    pub serving: Family<GrpcServiceLabels, Gauge>,
}

impl GrpcMetrics {
    /// Records one finished call.
    pub fn observe(&self, service: &str, method: &str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .get_or_create(&GrpcCodeLabels {
                service: service.to_owned(),
                method: method.to_owned(),
                code: code_name(code).to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&GrpcMethodLabels {
                service: service.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the `grpc.health.v1` status of `service` (`""` = the whole server).
    pub fn set_serving(&self, service: &str, serving: bool) {
        let service = if service.is_empty() {
            WHOLE_SERVER_LABEL
        } else {
            service
        };
        self.serving
            .get_or_create(&GrpcServiceLabels {
                service: service.to_owned(),
            })
            .set(i64::from(serving));
    }
}

static GRPC: LazyLock<GrpcMetrics> = LazyLock::new(|| GrpcMetrics {
    requests: counter_family("ferry_grpc_requests", "gRPC calls handled, by final status"),
    duration: latency_family(
        "ferry_grpc_request_duration",
        "gRPC call duration from request headers to end of response",
    ),
    serving: register(
        "ferry_grpc_serving",
        "1 while grpc.health.v1 reports the service SERVING (service=\"server\" is the whole server), else 0",
        Family::default(),
    ),
});

/// The gRPC server families, registered in the global registry on first use.
pub fn grpc() -> &'static GrpcMetrics {
    &GRPC
}

/// Labels of `ferry_remoting_client_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemotingOutcomeLabels {
    /// Request code name as in RocketMQ's `RequestCode`, e.g. `GET_ROUTEINFO_BY_TOPIC`;
    /// `OTHER` for codes Ferry does not know.
    pub code: &'static str,
    /// The response code name when the peer answered (`SUCCESS`, `TOPIC_NOT_EXIST`, ...,
    /// `OTHER` for unknown codes), else what happened, in lower case: `timeout`,
    /// `refused`, `unreachable`, `closed`, `cancelled`, `error`; `oneway` for a oneway
    /// request that was sent.
    pub outcome: &'static str,
}

/// Labels of `ferry_remoting_client_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RemotingCodeLabels {
    /// Request code name, as in [`RemotingOutcomeLabels::code`].
    pub code: &'static str,
}

/// The RocketMQ remoting client families (requests Ferry sends to NameServers and brokers).
#[derive(Debug)]
pub struct RemotingClientMetrics {
    /// `ferry_remoting_client_requests_total{code,outcome}`.
    pub requests: Family<RemotingOutcomeLabels, Counter>,
    /// `ferry_remoting_client_request_duration_seconds{code}`.
    pub duration: Family<RemotingCodeLabels, Histogram, HistogramCtor>,
}

impl RemotingClientMetrics {
    /// Records one finished request. Both labels must come from bounded sets (code and
    /// response-code names, fixed outcome words): never peer addresses or remarks.
    pub fn observe(&self, code: &'static str, outcome: &'static str, elapsed: Duration) {
        self.requests
            .get_or_create(&RemotingOutcomeLabels { code, outcome })
            .inc();
        self.duration
            .get_or_create(&RemotingCodeLabels { code })
            .observe(elapsed.as_secs_f64());
    }
}

static REMOTING_CLIENT: LazyLock<RemotingClientMetrics> = LazyLock::new(|| RemotingClientMetrics {
    requests: counter_family(
        "ferry_remoting_client_requests",
        "RocketMQ remoting requests sent to NameServers and brokers, by request code and outcome",
    ),
    duration: latency_family(
        "ferry_remoting_client_request_duration",
        "Time from sending a RocketMQ remoting request to its answer or failure",
    ),
});

/// The remoting client families, registered in the global registry on first use.
pub fn remoting_client() -> &'static RemotingClientMetrics {
    &REMOTING_CLIENT
}

/// Canonical upper-case name of a gRPC status code (as in the gRPC spec).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The global registry in OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    let registry = lock(&GLOBAL.registry);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `addr` (port 0 picks a free port) until `shutdown`
/// resolves. Returns the bound address and the server task.
pub async fn serve_metrics<F>(
    addr: SocketAddr,
    shutdown: F,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], encode()) }),
    );
    let task = tokio::spawn(async move {
        tracing::info!(addr = %bound, "metrics endpoint listening");
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %err, "metrics endpoint failed");
        }
        tracing::debug!(addr = %bound, "metrics endpoint stopped");
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[test]
    fn duplicate_registration_is_not_exported_twice() {
        let a: Counter = register("ferry_test_dup", "first", Counter::default());
        let b: Counter = register("ferry_test_dup", "second", Counter::default());
        a.inc();
        b.inc_by(5);
        let text = encode();
        assert_eq!(text.matches("# TYPE ferry_test_dup counter").count(), 1);
        assert!(text.contains("ferry_test_dup_total 1"), "{text}");
    }

    #[test]
    fn grpc_families_use_standard_names() {
        grpc().observe(
            "test.Svc",
            "Do",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        let text = encode();
        assert!(
            text.contains(
                r#"ferry_grpc_requests_total{service="test.Svc",method="Do",code="NOT_FOUND"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ferry_grpc_request_duration_seconds_count{service="test.Svc",method="Do"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn serving_and_remoting_families_use_documented_names() {
        grpc().set_serving("", true);
        grpc().set_serving("test.Svc", false);
        remoting_client().observe(
            "GET_ROUTEINFO_BY_TOPIC",
            "timeout",
            Duration::from_millis(7),
        );
        let text = encode();
        assert!(
            text.contains(r#"ferry_grpc_serving{service="server"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_grpc_serving{service="test.Svc"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ferry_remoting_client_requests_total{code="GET_ROUTEINFO_BY_TOPIC",outcome="timeout"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"ferry_remoting_client_request_duration_seconds_count{code="GET_ROUTEINFO_BY_TOPIC"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn serves_metrics_until_shutdown() {
        let scrapes: Counter = register("ferry_test_scrapes", "test", Counter::default());
        scrapes.inc();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve_metrics("127.0.0.1:0".parse().unwrap(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        assert_ne!(addr.port(), 0);

        let resp = http_get(addr, "/metrics").await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("application/openmetrics-text"), "{resp}");
        assert!(resp.contains("ferry_test_scrapes_total 1"), "{resp}");
        assert!(http_get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("metrics server did not stop")
            .unwrap();
    }
}
