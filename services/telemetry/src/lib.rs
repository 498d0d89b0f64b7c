//! Telemetry shared by every Ferry binary: logs, traces and metrics, plus the
//! flag/env conventions that go with them.
//!
//! # Flags and environment
//!
//! Every Ferry flag has a `FERRY_*` environment variable; a flag on the command
//! line wins over the variable. [`TelemetryArgs`] is `#[command(flatten)]`ed into
//! each binary and contributes:
//!
//! | flag | env | default | meaning |
//! |---|---|---|---|
//! | `--log-format pretty\|json` | `FERRY_LOG_FORMAT` | `pretty` | log lines on stderr: human-readable or one JSON object per line |
//! | `--log <filter>` | `FERRY_LOG` | `info` | [`EnvFilter`] directives, e.g. `info,ferry_router=debug`; also gates which spans are traced |
//! | `--otlp-endpoint <url>` | `FERRY_OTLP_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT` | off | export spans over OTLP/gRPC, e.g. `http://otel-collector:4317` |
//! | `--metrics-addr <ip:port>` | `FERRY_METRICS_ADDR` | off | serve Prometheus metrics on `GET /metrics`, e.g. `127.0.0.1:9464` |
//!
//! # Usage
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     telemetry: ferry_telemetry::TelemetryArgs,
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let cli = Cli::parse();
//!     // Keep the guard alive until the end of main so buffered spans are flushed.
//!     let _guard = ferry_telemetry::init("ferry-router", &cli.telemetry)?;
//!     if let Some(addr) = cli.telemetry.metrics_addr {
//!         let (bound, _task) =
//!             ferry_telemetry::metrics::serve_metrics(addr, std::future::pending()).await?;
//!         tracing::info!(%bound, "metrics listening");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Trace context crosses process boundaries as W3C `traceparent`/`tracestate`
//! headers; see [`propagation`]. A tracer provider is installed even when no
//! OTLP endpoint is set, so trace ids are still generated and forwarded: a hop
//! that does not export does not break the trace for the hops that do.
//! Command-line clients use [`init_client`] instead of [`init`]: no log output,
//! one client span per command whose trace every call carries.
//!
//! Every metric of every Ferry process is listed in `docs/metrics.md`.
//!
//! [`EnvFilter`]: tracing_subscriber::EnvFilter

pub mod metrics;
pub mod propagation;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Standard OpenTelemetry variable, honoured when `FERRY_OTLP_ENDPOINT` is unset
/// so Ferry drops into existing OTel deployments without extra configuration.
pub const OTEL_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long dropping [`TelemetryGuard`] may block to flush spans; bounded so a
/// dead collector cannot hang process exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Log line format on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable single-line records (ANSI colours only on a terminal).
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Telemetry flags shared by every Ferry binary (flatten into the binary's
/// parser). They are global, so `ferry standalone --log debug` works too.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct TelemetryArgs {
    /// Log format on stderr.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log/trace filter directives (tracing EnvFilter syntax), e.g. `info,ferry_router=debug`.
    #[arg(long = "log", global = true, env = "FERRY_LOG", default_value = "info")]
    pub log: String,

    /// OTLP/gRPC collector endpoint for spans (falls back to OTEL_EXPORTER_OTLP_ENDPOINT); off when unset.
    #[arg(long, global = true, env = "FERRY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Address for the Prometheus `/metrics` endpoint, e.g. 127.0.0.1:9464; off when unset.
    #[arg(long, global = true, env = "FERRY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for TelemetryArgs {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log: "info".to_owned(),
            otlp_endpoint: None,
            metrics_addr: None,
        }
    }
}

impl TelemetryArgs {
    /// The OTLP endpoint in effect: the flag / `FERRY_OTLP_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`. Blank values count as unset because
    /// manifests often template variables to "".
    pub fn effective_otlp_endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| std::env::var(OTEL_ENDPOINT_ENV).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
}

/// Keeps the tracer provider alive; dropping it flushes pending spans and shuts
/// the exporter down. Hold it in `main` for the life of the process.
#[must_use = "dropping the guard immediately shuts tracing export down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// The tracer provider behind the `tracing` → OpenTelemetry bridge.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // The OTLP exporter's channel runs on the Tokio runtime; blocking a
        // multi-thread worker without telling Tokio could starve it.
        let shutdown = move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(shutdown)
            }
            _ => shutdown(),
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "tracer provider shutdown incomplete; some spans may be lost");
        }
    }
}

/// Installs the global `tracing` subscriber (stderr logs + OpenTelemetry
/// bridge), the W3C TraceContext propagator and, when an endpoint is
/// configured, an OTLP/gRPC span exporter tagged with `service.name`.
///
/// Must run inside a Tokio runtime when OTLP export is enabled (the exporter's
/// gRPC channel lives on it). Calling it again (e.g. from several tests) is
/// harmless: the first subscriber stays installed.
pub fn init(service_name: &str, args: &TelemetryArgs) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&args.log)
        .with_context(|| format!("invalid --log / FERRY_LOG filter {:?}", args.log))?;

    let endpoint = args.effective_otlp_endpoint();
    let provider = tracer_provider(service_name, endpoint.as_deref())?;

    let fmt_layer = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // The exporter's own transport must not be traced into the export pipeline
    // (at debug/trace levels that feeds back on itself); on top of the global filter.
    let otel_filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_targets(
            [
                "opentelemetry",
                "opentelemetry_sdk",
                "opentelemetry_otlp",
                "tonic",
                "h2",
                "hyper",
                "hyper_util",
                "tower",
            ]
            .map(|t| (t, tracing_subscriber::filter::LevelFilter::OFF)),
        );
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("ferry"))
        .with_filter(otel_filter);

    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    match installed {
        Ok(()) => tracing::info!(
            service = service_name,
            otlp_endpoint = endpoint.as_deref().unwrap_or("off"),
            "telemetry initialised"
        ),
        // Another init (typically an earlier test in the same process) won.
        Err(err) => tracing::debug!(error = %err, "global subscriber already set; keeping it"),
    }

    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// The tracer provider every Ferry process uses (exporting over OTLP/gRPC to
/// `endpoint` when one is given), installed globally with the W3C TraceContext
/// propagator.
fn tracer_provider(
    service_name: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<SdkTracerProvider> {
    let mut provider = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(endpoint) = endpoint {
        tokio::runtime::Handle::try_current().map_err(|_| {
            anyhow::anyhow!(
                "OTLP export needs a Tokio runtime: call ferry_telemetry::init from async main"
            )
        })?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.to_owned())
            .build()
            .with_context(|| format!("cannot build OTLP exporter for {endpoint}"))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

/// Tracing for a command-line client such as `ferry health`: no log output at
/// all, only trace context for the calls it makes. Installs the W3C propagator
/// and a tracer provider (exporting over OTLP when `FERRY_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set) behind a subscriber that only feeds
/// it, and returns the guard with a client span named `command`: run the
/// command inside that span and every call made through
/// [`propagation::traced`] or [`propagation::inject_context`] carries its trace,
/// so the server spans of one command form one trace. When the environment
/// carries a trace (`TRACEPARENT`, `TRACESTATE`, as OpenTelemetry's environment
/// carriers define them, e.g. set by a CI job), the span continues it.
pub fn init_client(
    service_name: &str,
    command: &str,
) -> anyhow::Result<(TelemetryGuard, tracing::Span)> {
    let endpoint = TelemetryArgs {
        otlp_endpoint: std::env::var("FERRY_OTLP_ENDPOINT").ok(),
        ..TelemetryArgs::default()
    }
    .effective_otlp_endpoint();
    let provider = tracer_provider(service_name, endpoint.as_deref())?;
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("ferry"));
    // Only this command's own spans: none from the gRPC stack underneath.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target(env!("CARGO_CRATE_NAME"), tracing::Level::TRACE)
        .with_target("ferry_cli", tracing::Level::INFO);
    if let Err(err) = tracing_subscriber::registry()
        .with(otel_layer.with_filter(filter))
        .try_init()
    {
        tracing::debug!(error = %err, "global subscriber already set; keeping it");
    }
    let span = tracing::info_span!(
        "ferry.client",
        otel.name = %command,
        otel.kind = "client",
    );
    propagation::set_parent_from_env(&span);
    Ok((
        TelemetryGuard {
            provider: Some(provider),
        },
        span,
    ))
}

/// One telemetry install shared by all unit tests: dropping a guard shuts its
/// provider down, which would disable trace ids for tests still running.
#[cfg(test)]
pub(crate) fn test_telemetry() {
    static GUARD: std::sync::OnceLock<TelemetryGuard> = std::sync::OnceLock::new();
    GUARD.get_or_init(|| init("ferry-telemetry-test", &TelemetryArgs::default()).unwrap());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        telemetry: TelemetryArgs,
    }

    #[test]
    fn flags_parse_with_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.telemetry.log_format, LogFormat::Pretty);
        assert_eq!(cli.telemetry.log, "info");
        assert_eq!(cli.telemetry.metrics_addr, None);

        let cli = Cli::try_parse_from([
            "x",
            "--log-format",
            "json",
            "--log",
            "debug",
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(cli.telemetry.log_format, LogFormat::Json);
        assert_eq!(cli.telemetry.log, "debug");
        assert_eq!(
            cli.telemetry.effective_otlp_endpoint().as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert_eq!(
            cli.telemetry.metrics_addr,
            Some("127.0.0.1:0".parse().unwrap())
        );
    }

    #[derive(Parser)]
    struct WithSub {
        #[command(flatten)]
        telemetry: TelemetryArgs,
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Standalone,
    }

    #[test]
    fn flags_are_accepted_after_a_subcommand() {
        let cli = WithSub::try_parse_from(["ferry", "standalone", "--log", "debug"]).unwrap();
        assert!(matches!(cli.cmd, Sub::Standalone));
        assert_eq!(cli.telemetry.log, "debug");
    }

    #[test]
    fn rejects_bad_filter() {
        let args = TelemetryArgs {
            log: "=[".into(),
            ..Default::default()
        };
        assert!(init("test", &args).is_err());
    }
}
