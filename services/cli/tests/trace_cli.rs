//! The `ferry` CLI sends W3C trace context with its calls: one trace per command, which
//! continues the caller's trace when `TRACEPARENT` is set (OpenTelemetry's environment
//! carrier). A stand-in server records the headers of what the CLI sends.

use std::convert::Infallible;
use std::process::Command;
use std::sync::{Arc, Mutex};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::{Context, Poll, Service, http};
use tonic::server::NamedService;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Answers every call UNAVAILABLE and keeps the request headers.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<http::HeaderMap>>>);

impl NamedService for Recorder {
    const NAME: &'static str = "ferry.metadata_sync.v1.MigrationTaskService";
}

impl Service<http::Request<tonic::body::Body>> for Recorder {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.lock().unwrap().push(request.headers().clone());
        std::future::ready(Ok(tonic::Status::unavailable("recorded").into_http()))
    }
}

/// `00-<trace>-<span>-<flags>` → (trace, span).
fn parse(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!(parts[1].len(), 32, "{traceparent}");
    assert_eq!(parts[2].len(), 16, "{traceparent}");
    assert_ne!(parts[1], "0".repeat(32), "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Runs `ferry migration list` against the recorder and returns the `traceparent` it sent.
async fn traceparent_sent(env_traceparent: Option<&str>) -> String {
    let recorder = Recorder::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(recorder.clone())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut cmd = Command::new(FERRY);
    cmd.args([
        "--addr",
        &format!("http://127.0.0.1:{port}"),
        "migration",
        "list",
    ])
    .env_remove("TRACEPARENT")
    .env_remove("TRACESTATE")
    .env_remove("FERRY_OTLP_ENDPOINT")
    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    if let Some(tp) = env_traceparent {
        cmd.env("TRACEPARENT", tp);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the recorder refuses every call");
    assert!(stderr.contains("recorded"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    server.abort();
    let seen = recorder.0.lock().unwrap().clone();
    assert!(!seen.is_empty(), "no call reached the recorder: {stderr}");
    let value = seen[0]
        .get("traceparent")
        .unwrap_or_else(|| panic!("no traceparent in {:?}", seen[0]));
    value.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_command_is_a_trace_and_continues_the_callers() {
    // Without a trace in the environment: a fresh trace, sampled.
    let first = traceparent_sent(None).await;
    let second = traceparent_sent(None).await;
    let (first_trace, _) = parse(&first);
    let (second_trace, _) = parse(&second);
    assert!(first.ends_with("-01"), "{first}");
    assert_ne!(first_trace, second_trace, "each command is its own trace");

    // With one: the same trace, and the CLI's own span as the parent.
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let sent = traceparent_sent(Some(caller)).await;
    let (trace, parent) = parse(&sent);
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "{sent}");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the CLI's span sits between: {sent}"
    );
}
