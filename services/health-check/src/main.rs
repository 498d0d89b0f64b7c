//! `ferry-health-check`: readiness of topics (periodic scan + on demand), monitoring and
//! component health over gRPC; readiness published to etcd.
//!
//! It starts serving at once with health NOT_SERVING, reaches etcd in the background with
//! backoff (never exiting while etcd is down), and flips to SERVING once the store answers;
//! a periodic probe flips it back while etcd is unreachable. The readiness scan waits for
//! the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferry_api::service_names::HEALTH_CHECK;
use ferry_core::readiness::{ReadinessPolicy, parse_duration};
use ferry_health_check::{EngineConfig, HealthCheck, StoreSlot, StoreSlotWriter};
use ferry_server::{GrpcServer, HealthReporter, run_until, shutdown_signal};
use ferry_store::{EtcdBackend, EtcdOptions, EtcdStore, FerryStore};
use ferry_telemetry::TelemetryArgs;
use tonic_health::ServingStatus;

/// Ferry health-check service.
#[derive(Debug, Parser)]
#[command(name = "ferry-health-check", version, about)]
struct Args {
    /// gRPC listen address.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:7074")]
    listen: SocketAddr,
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "FERRY_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// Prefix of every key Ferry writes in etcd; ends with '/'.
    #[arg(long, env = "FERRY_ETCD_PREFIX", default_value = "/ferry/")]
    etcd_prefix: String,
    /// How often every running task's topics are measured and their readiness published
    /// (keep it well below metadata-sync's --readiness-max-age).
    #[arg(long, env = "FERRY_SCAN_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    scan_interval: Duration,
    /// Clients' route poll interval (pollNameServerInterval): the minimum dwell in a stage
    /// is twice this, the source quiet window before DONE once this.
    #[arg(long, env = "FERRY_ROUTE_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    route_poll_interval: Duration,
    /// Overrides the minimum dwell in a stage (default 2 × route poll interval).
    #[arg(long, env = "FERRY_MIN_DWELL", value_parser = parse_duration)]
    min_dwell: Option<Duration>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// How often the store is probed once connected.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Longest pause between connection rounds.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);
const SERVICES: [&str; 2] = ["", HEALTH_CHECK];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-health-check", &args.telemetry)?;
    let mut policy = ReadinessPolicy::for_route_poll(args.route_poll_interval);
    if let Some(d) = args.min_dwell {
        policy.min_dwell = d;
    }
    let config = EngineConfig {
        policy,
        scan_interval: args.scan_interval,
        ..EngineConfig::default()
    };
    let mut server = GrpcServer::bind(args.listen).await?;
    let health = server.health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let (slot, writer) =
        StoreSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    let service = HealthCheck::new(slot, config);
    let scans = service.spawn_scans();
    server
        .add_service(service.into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    let options = EtcdOptions::default().with_prefix(args.etcd_prefix);
    let connector = tokio::spawn(keep_store(args.etcd_endpoints, options, writer, health));
    let served = run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await;
    scans.abort();
    connector.abort();
    served
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Connects with backoff, publishes the store, then probes it and mirrors its reachability
/// in health, forever.
async fn keep_store(
    endpoints: Vec<String>,
    options: EtcdOptions,
    writer: StoreSlotWriter,
    health: HealthReporter,
) {
    let mut pause = Duration::from_millis(500);
    let store: Arc<dyn FerryStore> = loop {
        match EtcdBackend::connect(&endpoints, options.clone()).await {
            Ok(backend) => break Arc::new(EtcdStore::new(backend)),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "store not reachable; still NOT_SERVING");
                writer.failed(err.to_string());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
            }
        }
    };
    writer.set(store.clone());
    let mut serving = false;
    loop {
        let ok = match store.health().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "store probe failed; NOT_SERVING");
                false
            }
        };
        if ok != serving {
            serving = ok;
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::info!(?status, "store reachability changed");
            set_health(&health, status).await;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}
