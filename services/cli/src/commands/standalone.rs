//! `ferry standalone`: every service in one process, on one gRPC port, with the embedded
//! file-backed store. The one-command local default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ferry_health_check::HealthCheck;
use ferry_metadata_sync::{ImportTasks, MigrationTasks, StoreSlot};
use ferry_router::RouterAdmin;
use ferry_scanner::Scanner;
use ferry_server::{GrpcServer, run_until, shutdown_signal};
use ferry_store::{EmbeddedStore, MigrationStore};
use ferry_telemetry::TelemetryArgs;

/// Flags of `ferry standalone`.
#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// gRPC listen address of all services (port 0 picks a free port).
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing; state survives restarts).
    #[arg(long, env = "FERRY_DATA_DIR", default_value = ".ferry/data")]
    data_dir: PathBuf,
    /// Write the bound gRPC address to this file once listening (for scripts and tests).
    #[arg(long, env = "FERRY_READY_FILE")]
    ready_file: Option<PathBuf>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = ferry_telemetry::init("ferry-standalone", &args.telemetry)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let store: Arc<dyn MigrationStore> =
        Arc::new(EmbeddedStore::open(&args.data_dir).await.with_context(|| {
            format!(
                "cannot open the embedded store in {}",
                args.data_dir.display()
            )
        })?);
    let slot = StoreSlot::ready(store);
    let mut server = GrpcServer::bind(args.listen).await?;
    let addr = server.local_addr();
    server
        .add_service(Scanner.into_service())
        .add_service(ImportTasks.into_service())
        .add_service(MigrationTasks::new(slot).into_service())
        .add_service(RouterAdmin.into_service())
        .add_service(HealthCheck.into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "ferry standalone: all services on one port, embedded store");
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{addr}\n"))
            .with_context(|| format!("cannot write ready file {}", path.display()))?;
    }
    run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
