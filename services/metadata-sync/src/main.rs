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
use ferry_metadata_sync::{ImportSettings, ImportSlot, ImportTasks, MigrationTasks, StoreSlot};
use ferry_server::{GrpcServer, run_until, set_serving, shutdown_signal};
use ferry_store::{EtcdOptions, KvRequestStore, RequestSlot, keep_etcd_connected};
use ferry_telemetry::TelemetryArgs;

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
    /// How often the source of every running task in steps 2–4 is rescanned, so topics
    /// created there during the migration are offered for import (0s = never).
    #[arg(long, env = "FERRY_RESCAN_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    rescan_interval: Duration,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

const SERVICES: [&str; 3] = ["", IMPORT_TASK, MIGRATION_TASK];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-metadata-sync", &args.telemetry)?;
    let mut server = GrpcServer::bind(args.listen).await?;
    let health = server.health_reporter();
    set_serving(&health, &SERVICES, false).await;
    let (slot, writer) =
        StoreSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    let (import_slot, import_writer) =
        ImportSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    // Idempotency keys: records in the same etcd, UNAVAILABLE to keyed calls until it answers.
    let (requests, requests_writer) =
        RequestSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    server.idempotency(Arc::new(requests));
    let imports = ImportTasks::new(import_slot, ImportSettings::default());
    // Runs import tasks left unfinished by a previous process once etcd answers.
    let resumer = imports.start_resuming();
    let migrations = MigrationTasks::new(slot)
        .with_readiness_max_age(args.readiness_max_age)
        .with_imports(imports.clone());
    let rescans =
        (!args.rescan_interval.is_zero()).then(|| migrations.start_rescans(args.rescan_interval));
    server
        .add_service(imports.into_service())
        .add_service(migrations.into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    let options = EtcdOptions::default().with_prefix(args.etcd_prefix);
    let connector = tokio::spawn(keep_etcd_connected(
        args.etcd_endpoints,
        options,
        move |store| match store {
            Ok(store) => {
                requests_writer.set(Arc::new(KvRequestStore::etcd(&store)));
                writer.set(store.clone());
                import_writer.set(store);
            }
            Err(err) => {
                requests_writer.failed(err.0.clone());
                writer.failed(err.0.clone());
                import_writer.failed(err.0);
            }
        },
        move |up| {
            let health = health.clone();
            async move { set_serving(&health, &SERVICES, up).await }
        },
    ));
    let served = run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await;
    connector.abort();
    resumer.abort();
    if let Some(rescans) = rescans {
        rescans.abort();
    }
    served
}
