//! End-to-end tests of the server plumbing over real TCP on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ferry_server::{GrpcServer, HealthReporter, ServerError};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const SLOW: &str = "ferry.test.v1.Slow";
const SLOW_PATH: &str = "/ferry.test.v1.Slow/Sleep";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// One subscriber + propagator for the whole test binary (both are global).
fn telemetry() {
    static GUARD: OnceLock<ferry_telemetry::TelemetryGuard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let args = ferry_telemetry::TelemetryArgs {
            log: "info,ferry_server=debug".into(),
            ..Default::default()
        };
        ferry_telemetry::init("ferry-server-test", &args).unwrap()
    });
}

/// A hand-written unary service (no codegen needed): `Sleep` waits for the
/// number of milliseconds given in the request's `service` field, reusing the
/// health messages as payloads.
#[derive(Clone, Default)]
struct Slow {
    started: Arc<Notify>,
    trace_id: Arc<Mutex<Option<String>>>,
}

impl NamedService for Slow {
    const NAME: &'static str = SLOW;
}

struct SleepMethod(Slow);

impl tonic::server::UnaryService<HealthCheckRequest> for SleepMethod {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let slow = self.0.clone();
        Box::pin(async move {
            *slow.trace_id.lock().unwrap() = ferry_telemetry::propagation::current_trace_id();
            let millis: u64 = request
                .get_ref()
                .service
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("service must be milliseconds"))?;
            slow.started.notify_one();
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(tonic::Response::new(HealthCheckResponse {
                status: WireStatus::Serving as i32,
            }))
        })
    }
}

impl tower::Service<http::Request<Body>> for Slow {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = SleepMethod(self.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

struct Running {
    addr: SocketAddr,
    health: HealthReporter,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn start(configure: impl FnOnce(&mut GrpcServer)) -> Self {
        telemetry();
        let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "bound address must be known before serving");
        let health = server.health_reporter();
        configure(&mut server);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            health,
            stop: Some(stop),
            task,
        }
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for `serve` to return.
    async fn stop(mut self) -> Duration {
        self.shutdown();
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
        t0.elapsed()
    }
}

async fn check(channel: &Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

async fn call_slow(
    channel: Channel,
    millis: u64,
    metadata: &[(&'static str, &'static str)],
) -> Result<HealthCheckResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: millis.to_string(),
    });
    for (k, v) in metadata {
        request.metadata_mut().insert(*k, v.parse().unwrap());
    }
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(SLOW_PATH),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn health_reports_and_flips_status() {
    let running = Running::start(|_| {}).await;
    let channel = running.channel().await;

    assert_eq!(
        check(&channel, "").await.unwrap(),
        WireStatus::Serving as i32
    );
    let err = check(&channel, "ferry.test.v1.Missing").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    running
        .health
        .set_service_status("ferry.test.v1.Thing", ServingStatus::Serving)
        .await;
    assert_eq!(
        check(&channel, "ferry.test.v1.Thing").await.unwrap(),
        WireStatus::Serving as i32
    );
    running
        .health
        .set_service_status("ferry.test.v1.Thing", ServingStatus::NotServing)
        .await;
    assert_eq!(
        check(&channel, "ferry.test.v1.Thing").await.unwrap(),
        WireStatus::NotServing as i32
    );

    running.stop().await;
}

#[tokio::test]
async fn added_services_start_serving_unless_held_back() {
    let held = Running::start(|server| {
        server.add_service(Slow::default());
    })
    .await;
    let channel = held.channel().await;
    assert_eq!(
        check(&channel, SLOW).await.unwrap(),
        WireStatus::Serving as i32
    );
    held.stop().await;

    // Binaries gate readiness by setting NOT_SERVING before serve().
    let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    server.add_service(Slow::default());
    server
        .health_reporter()
        .set_service_status(SLOW, ServingStatus::NotServing)
        .await;
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        check(&channel, SLOW).await.unwrap(),
        WireStatus::NotServing as i32
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_served_services() {
    let running = Running::start(|_| {}).await;
    let channel = running.channel().await;

    let mut client = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n == "grpc.reflection.v1.ServerReflection"),
        "{names:?}"
    );

    // The health descriptor itself resolves, so grpcurl can describe it.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "grpc.health.v1.Health".into(),
        )),
    };
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(_))
        ),
        "{response:?}"
    );

    // v1alpha is served too, for older tools.
    let mut alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel,
        );
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(format!("{response:?}").contains("grpc.health.v1.Health"));

    running.stop().await;
}

#[tokio::test]
async fn graceful_drain_lets_in_flight_call_finish() {
    let slow = Slow::default();
    let started = slow.started.clone();
    let mut running = Running::start(|server| {
        server.add_service(slow);
    })
    .await;
    let channel = running.channel().await;

    // Watch overall health: it must turn NOT_SERVING when draining starts.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        WireStatus::Serving as i32
    );

    let call = tokio::spawn(call_slow(channel, 500, &[]));
    started.notified().await;
    let t0 = Instant::now();
    running.shutdown();

    let response = call.await.unwrap().expect("in-flight call must complete");
    assert_eq!(response.status, WireStatus::Serving as i32);
    // Watchers see NOT_SERVING, then the stream ends so it cannot hold the drain.
    let mut last = None;
    while let Some(update) = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("watch stream must end when draining")
    {
        last = Some(update.unwrap().status);
    }
    assert_eq!(last, Some(WireStatus::NotServing as i32));

    let addr = running.addr;
    running.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "drain waited for the timeout instead of the call"
    );
    // The listener is closed once draining starts.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn drain_timeout_bounds_shutdown() {
    let slow = Slow::default();
    let started = slow.started.clone();
    let mut running = Running::start(|server| {
        server
            .add_service(slow)
            .drain_timeout(Duration::from_millis(300));
    })
    .await;
    let channel = running.channel().await;

    let call = tokio::spawn(call_slow(channel, 60_000, &[]));
    started.notified().await;
    running.shutdown();
    let took = running.stop().await;
    assert!(took < Duration::from_secs(5), "drain took {took:?}");
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("call should fail once the connection is closed")
        .unwrap();
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn server_span_continues_caller_trace() {
    let slow = Slow::default();
    let trace_id = slow.trace_id.clone();
    let running = Running::start(|server| {
        server.add_service(slow);
    })
    .await;
    let channel = running.channel().await;

    call_slow(
        channel,
        1,
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    )
    .await
    .unwrap();
    assert_eq!(trace_id.lock().unwrap().as_deref(), Some(TRACE_ID));

    running.stop().await;
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test]
async fn metrics_scrape_shows_grpc_requests() {
    let running = Running::start(|server| {
        server.add_service(Slow::default());
    })
    .await;
    let channel = running.channel().await;
    check(&channel, "").await.unwrap();
    let err = call_slow(channel.clone(), 0, &[]).await;
    assert!(err.is_ok());
    // Bad input → INVALID_ARGUMENT, sent trailers-only.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<_, HealthCheckResponse, _>(
            tonic::Request::new(HealthCheckRequest {
                service: "not-a-number".into(),
            }),
            http::uri::PathAndQuery::from_static(SLOW_PATH),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // Unknown service: counted, but under a bounded label.
    let err = check_unknown(channel).await;
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    let (stop, stopped) = oneshot::channel::<()>();
    let (metrics_addr, metrics_task) =
        ferry_telemetry::metrics::serve_metrics("127.0.0.1:0".parse().unwrap(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    let text = scrape(metrics_addr).await;

    let ok = sample(
        &text,
        r#"ferry_grpc_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"}"#,
    );
    assert!(ok.is_some_and(|v| v >= 1.0), "{text}");
    let slow_ok = sample(
        &text,
        r#"ferry_grpc_requests_total{service="ferry.test.v1.Slow",method="Sleep",code="OK"}"#,
    );
    assert!(slow_ok.is_some_and(|v| v >= 1.0), "{text}");
    let invalid = sample(
        &text,
        r#"ferry_grpc_requests_total{service="ferry.test.v1.Slow",method="Sleep",code="INVALID_ARGUMENT"}"#,
    );
    assert!(invalid.is_some_and(|v| v >= 1.0), "{text}");
    let unknown = sample(
        &text,
        r#"ferry_grpc_requests_total{service="unknown",method="unknown",code="UNIMPLEMENTED"}"#,
    );
    assert!(unknown.is_some_and(|v| v >= 1.0), "{text}");
    let count = sample(
        &text,
        r#"ferry_grpc_request_duration_seconds_count{service="grpc.health.v1.Health",method="Check"}"#,
    );
    assert!(count.is_some_and(|v| v >= 1.0), "{text}");

    stop.send(()).unwrap();
    metrics_task.await.unwrap();
    running.stop().await;
}

async fn check_unknown(channel: Channel) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary::<_, HealthCheckResponse, _>(
        tonic::Request::new(HealthCheckRequest::default()),
        http::uri::PathAndQuery::from_static("/no.such.Service/Call"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}
