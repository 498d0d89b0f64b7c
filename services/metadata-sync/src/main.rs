//! `ferry-metadata-sync`: serves import and migration tasks over gRPC, state in etcd.
//!
//! It starts serving at once with health NOT_SERVING, reaches etcd in the background with
//! backoff (never exiting or panicking while etcd is down), and flips to SERVING once the
//! store answers; a periodic probe flips it back while etcd is unreachable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferry_api::service_names::{IMPORT_TASK, MIGRATION_TASK};
use ferry_core::readiness::parse_duration;
use ferry_metadata_sync::{
    ImportSettings, ImportSlot, ImportSlotWriter, ImportTasks, MigrationTasks, StoreSlot,
    StoreSlotWriter,
};
use ferry_server::{GrpcServer, HealthReporter, run_until, shutdown_signal};
use ferry_store::{EtcdBackend, EtcdOptions, EtcdStore, FerryStore};
use ferry_telemetry::TelemetryArgs;
use tonic_health::ServingStatus;

/// Ferry metadata-sync service: import tasks and seamless-migration tasks.
#[derive(Debug, Parser)]
#[command(name = "ferry-metadata-sync", version, about)]
struct Args {
    /// gRPC listen address.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:7072")]
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
    /// How old the health checker's readiness may be for a stage change without --force
    /// (e.g. 30s, 500ms, 2m).
    #[arg(long, env = "FERRY_READINESS_MAX_AGE", default_value = "30s", value_parser = parse_duration)]
    readiness_max_age: Duration,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// How often the store is probed once connected.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Longest pause between connection rounds.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(10);
const SERVICES: [&str; 3] = ["", IMPORT_TASK, MIGRATION_TASK];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-metadata-sync", &args.telemetry)?;
    let mut server = GrpcServer::bind(args.listen).await?;
    let health = server.health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let (slot, writer) =
        StoreSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    let (import_slot, import_writer) =
        ImportSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    let imports = ImportTasks::new(import_slot, ImportSettings::default());
    // Runs import tasks left unfinished by a previous process once etcd answers.
    let resumer = imports.start_resuming();
    server
        .add_service(imports.into_service())
        .add_service(
            MigrationTasks::new(slot)
                .with_readiness_max_age(args.readiness_max_age)
                .into_service(),
        )
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    let options = EtcdOptions::default().with_prefix(args.etcd_prefix);
    let connector = tokio::spawn(keep_store(
        args.etcd_endpoints,
        options,
        writer,
        import_writer,
        health,
    ));
    let served = run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await;
    connector.abort();
    resumer.abort();
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
    imports: ImportSlotWriter,
    health: HealthReporter,
) {
    let mut pause = Duration::from_millis(500);
    let store: Arc<dyn FerryStore> = loop {
        match EtcdBackend::connect(&endpoints, options.clone()).await {
            Ok(backend) => {
                let etcd = Arc::new(EtcdStore::new(backend));
                imports.set(etcd.clone());
                break etcd;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "store not reachable; still NOT_SERVING");
                writer.failed(err.to_string());
                imports.failed(err.to_string());
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
