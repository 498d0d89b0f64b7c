//! `ferry-scanner`: serves the scanner gRPC API with health and reflection; drains on SIGTERM.
//!
//! Snapshots live in etcd. Like `ferry-metadata-sync`, it starts serving at once with health
//! NOT_SERVING, reaches etcd in the background with backoff (never exiting while etcd is
//! down), and flips to SERVING once the store answers; a periodic probe flips it back while
//! etcd is unreachable. Connection checks work meanwhile; scans answer UNAVAILABLE.

use std::net::SocketAddr;

use clap::Parser;
use ferry_api::service_names::SCANNER;
use ferry_scanner::service::DEFAULT_KEEP_SNAPSHOTS;
use ferry_scanner::{EngineConfig, ScanEngine, Scanner, SnapshotSlot};
use ferry_server::{GrpcServer, run_until, set_serving, shutdown_signal};
use ferry_store::{EtcdOptions, KvRequestStore, RequestSlot, keep_etcd_connected};
use ferry_telemetry::TelemetryArgs;

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

const SERVICES: [&str; 2] = ["", SCANNER];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-scanner", &args.telemetry)?;
    let mut server = GrpcServer::bind(args.listen).await?;
    let health = server.health_reporter();
    set_serving(&health, &SERVICES, false).await;
    // Idempotency keys: records in the same etcd, UNAVAILABLE to keyed calls until it answers.
    let (requests, requests_writer) =
        RequestSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    server.idempotency(std::sync::Arc::new(requests));
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
    let connector = tokio::spawn(keep_etcd_connected(
        args.etcd_endpoints,
        options,
        move |store| match store {
            Ok(store) => {
                requests_writer.set(std::sync::Arc::new(KvRequestStore::etcd(&store)));
                writer.set(store);
            }
            Err(err) => {
                requests_writer.failed(err.0.clone());
                writer.failed(err.0);
            }
        },
        move |up| {
            let health = health.clone();
            async move { set_serving(&health, &SERVICES, up).await }
        },
    ));
    let served = run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await;
    connector.abort();
    served
}
