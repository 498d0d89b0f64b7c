//! W3C trace context across real gRPC hops: a client span with a known trace id calls
//! server A through `ferry_telemetry::propagation::traced`; A's handler calls server B the
//! same way (as ferry-health-check calls routers). Every span is exported to an in-memory
//! collector, and the test checks the chain client → A's `grpc.request` span → B's
//! `grpc.request` span: one trace id, each parent the span before it. A call made without
//! the helper is the control: it must start a trace of its own.
//!
//! One test function: the subscriber, tracer provider and propagator are process-global.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ferry_server::GrpcServer;
use futures::future::BoxFuture;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

const RELAY: &str = "ferry.test.v1.Relay";
const RELAY_PATH: &str = "/ferry.test.v1.Relay/Forward";
const RELAY_SPAN: &str = "ferry.test.v1.Relay/Forward";
const CHECK_SPAN: &str = "grpc.health.v1.Health/Check";

/// Finished spans, as an OTLP collector would receive them.
#[derive(Clone, Debug, Default)]
struct Collected(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collected {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

impl Collected {
    /// Waits until `want` finished spans named `name` and matching `pred` were exported.
    async fn wait(
        &self,
        name: &str,
        pred: impl Fn(&SpanData) -> bool,
        want: usize,
    ) -> Vec<SpanData> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<SpanData> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.name == name && pred(s))
                .cloned()
                .collect();
            if found.len() >= want {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {want} exported span(s) named {name}; exported: {:#?}",
                self.summary()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn summary(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{} trace={} span={} parent={}",
                    s.name,
                    s.span_context.trace_id(),
                    s.span_context.span_id(),
                    s.parent_span_id
                )
            })
            .collect()
    }
}

/// The global subscriber: only the OpenTelemetry bridge, exporting to `Collected`.
fn install() -> (Collected, SdkTracerProvider) {
    let collected = Collected::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(collected.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("only this test installs one");
    (collected, provider)
}

/// `Forward` calls `grpc.health.v1.Health/Check` on the address in the request's `service`
/// field through a traced channel, and answers with its status.
#[derive(Clone, Default)]
struct Relay;

impl NamedService for Relay {
    const NAME: &'static str = RELAY;
}

struct ForwardMethod;

impl tonic::server::UnaryService<HealthCheckRequest> for ForwardMethod {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        Box::pin(async move {
            let downstream = request.into_inner().service;
            let channel = Channel::from_shared(downstream)
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            // The hop under test: the current span here is this server's `grpc.request`.
            let status = HealthClient::new(ferry_telemetry::propagation::traced(channel))
                .check(HealthCheckRequest::default())
                .await?
                .into_inner()
                .status;
            Ok(tonic::Response::new(HealthCheckResponse { status }))
        })
    }
}

impl tower::Service<http::Request<Body>> for Relay {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(ForwardMethod, request).await)
        })
    }
}

async fn start(configure: impl FnOnce(&mut GrpcServer)) -> (SocketAddr, oneshot::Sender<()>) {
    let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    configure(&mut server);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A client span continuing the remote trace `trace_id` (as if Ferry's caller had one),
/// with its own span id.
fn client_span(trace_id: &str) -> (tracing::Span, TraceId, SpanId) {
    let span = tracing::info_span!("client.call", otel.kind = "client");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    ferry_telemetry::propagation::set_parent_from_headers(&span, &headers);
    let sc = span.context().span().span_context().clone();
    assert!(sc.is_valid(), "the client span must be part of a trace");
    assert_eq!(sc.trace_id().to_string(), trace_id);
    (span, sc.trace_id(), sc.span_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_follows_the_calls_between_ferry_services() {
    let (collected, _provider) = install();
    let (b_addr, stop_b) = start(|_| {}).await;
    let (a_addr, stop_a) = start(|server| {
        server.add_service(Relay);
    })
    .await;

    // client --traced--> A (Relay/Forward) --traced--> B (Health/Check)
    let (span, trace, client_span_id) = client_span("4bf92f3577b34da6a3ce929d0e0e4736");
    let a = channel(a_addr).await;
    let answer = async {
        let mut grpc = tonic::client::Grpc::new(ferry_telemetry::propagation::traced(a));
        grpc.ready().await.unwrap();
        grpc.unary::<_, HealthCheckResponse, _>(
            tonic::Request::new(HealthCheckRequest {
                service: format!("http://{b_addr}"),
            }),
            http::uri::PathAndQuery::from_static(RELAY_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
    }
    .instrument(span.clone())
    .await
    .expect("relay call");
    assert_eq!(answer.into_inner().status, WireStatus::Serving as i32);

    let in_trace = |s: &SpanData| s.span_context.trace_id() == trace;
    let a_span = collected.wait(RELAY_SPAN, in_trace, 1).await.remove(0);
    let b_span = collected.wait(CHECK_SPAN, in_trace, 1).await.remove(0);
    assert_eq!(a_span.span_kind, SpanKind::Server);
    assert_eq!(
        a_span.parent_span_id, client_span_id,
        "A's request span must be the child of the caller's span"
    );
    assert!(a_span.parent_span_is_remote);
    assert_ne!(a_span.span_context.span_id(), client_span_id);
    assert_eq!(b_span.span_kind, SpanKind::Server);
    assert_eq!(
        b_span.parent_span_id,
        a_span.span_context.span_id(),
        "B's request span must be the child of A's request span (the hop A made)"
    );
    assert!(b_span.parent_span_is_remote);

    // Control: the same call to B without the helper starts a trace of its own.
    let (span, other_trace, _) = client_span("0af7651916cd43dd8448eb211c80319c");
    let b = channel(b_addr).await;
    HealthClient::new(b)
        .check(HealthCheckRequest::default())
        .instrument(span)
        .await
        .expect("plain check");
    let not_ours = |s: &SpanData| s.span_context.trace_id() != trace;
    let untraced = collected.wait(CHECK_SPAN, not_ours, 1).await.remove(0);
    assert_ne!(untraced.span_context.trace_id(), other_trace);
    assert_eq!(untraced.parent_span_id, SpanId::INVALID);

    let _ = stop_a.send(());
    let _ = stop_b.send(());
}
