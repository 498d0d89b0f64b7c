//! `ferry-scanner`: serves the scanner gRPC API with health and reflection; drains on SIGTERM.
//!
//! Snapshots live in etcd. Like `ferry-metadata-sync`, it starts serving at once with health
//! NOT_SERVING, reaches etcd in the background with backoff (never exiting while etcd is
//! down), and flips to SERVING once the store answers; a periodic probe flips it back while
//! etcd is unreachable. Connection checks work meanwhile; scans answer UNAVAILABLE.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferry_api::service_names::SCANNER;
use ferry_scanner::service::DEFAULT_KEEP_SNAPSHOTS;
use ferry_scanner::{EngineConfig, ScanEngine, Scanner, SnapshotSlot, SnapshotSlotWriter};
use ferry_server::{GrpcServer, HealthReporter, run_until, shutdown_signal};
use ferry_store::{EtcdBackend, EtcdOptions, EtcdStore, SnapshotStore};
use ferry_telemetry::TelemetryArgs;
use tonic_health::ServingStatus;

/// Ferry scanner service: probes a source cluster, inventories it into snapshots, exports
/// metadata.
#[derive(Debug, Parser)]
#[command(name = "ferry-scanner", version, about)]
struct Args {
    /// gRPC listen address.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:7071")]
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
    /// Brokers scanned at once.
    #[arg(long, env = "FERRY_SCAN_CONCURRENCY", default_value_t = 8)]
    scan_concurrency: usize,
    /// Snapshots kept per source; older ones are deleted after each scan.
    #[arg(long, env = "FERRY_KEEP_SNAPSHOTS", default_value_t = DEFAULT_KEEP_SNAPSHOTS)]
    keep_snapshots: usize,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// How often the store is probed once connected.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Longest pause between connection rounds.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);
const SERVICES: [&str; 2] = ["", SCANNER];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-scanner", &args.telemetry)?;
    let mut server = GrpcServer::bind(args.listen).await?;
    let health = server.health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let (slot, writer) =
        SnapshotSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    let engine = ScanEngine::new(EngineConfig {
        concurrency: args.scan_concurrency.max(1),
        ..EngineConfig::default()
    });
    server
        .add_service(
            Scanner::new(engine, slot)
                .keep_snapshots(args.keep_snapshots)
                .into_service(),
        )
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    let options = EtcdOptions::default().with_prefix(args.etcd_prefix);
    let connector = tokio::spawn(keep_store(args.etcd_endpoints, options, writer, health));
    let served = run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await;
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
    writer: SnapshotSlotWriter,
    health: HealthReporter,
) {
    let mut pause = Duration::from_millis(500);
    let store: Arc<dyn SnapshotStore> = loop {
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
        let ok = match store.snapshot_health().await {
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
