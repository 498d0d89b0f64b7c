//! `init` in its own process: it installs process-global state.

use ferry_telemetry::{LogFormat, TelemetryArgs, init};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_twice_with_otlp_does_not_panic() {
    let args = TelemetryArgs {
        log_format: LogFormat::Json,
        // Nothing listens on the discard port; export failures must stay non-fatal.
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let first = init("test", &args).unwrap();
    let second = init("test", &TelemetryArgs::default()).unwrap();
    tracing::info_span!("span").in_scope(|| tracing::info!("hello"));
    drop(second);
    drop(first);
}

#[test]
fn otlp_without_runtime_is_an_error() {
    let args = TelemetryArgs {
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let err = init("test", &args).unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}
