//! `ferry standalone`: every service in one process, on one gRPC port, with the embedded
//! file-backed store. The one-command local default.
//!
//! With `--router-task-id <task>` it also runs a router for that migration task in-process:
//! the NameServer protocol on `--namesrv-listen` (default 127.0.0.1:9876), its admin API on
//! the shared gRPC port, stages from the embedded store. Without it the router admin API
//! answers FAILED_PRECONDITION saying how to start one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ferry_health_check::{EngineConfig, HealthCheck};
use ferry_metadata_sync::{ImportSettings, ImportSlot, ImportTasks, MigrationTasks, StoreSlot};
use ferry_router::{Router, RouterAdmin, RouterConfig};
use ferry_scanner::{ScanEngine, Scanner, SnapshotSlot};
use ferry_server::{GrpcServer, run_until, shutdown_signal};
use ferry_store::{EmbeddedStore, FerryStore, MigrationStore, SnapshotStore};
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
    /// Also run a router for this migration task in this process.
    #[arg(long, env = "FERRY_ROUTER_TASK_ID")]
    router_task_id: Option<String>,
    /// NameServer-protocol listen address of the in-process router (default
    /// 127.0.0.1:9876; used only with --router-task-id).
    #[arg(long)]
    namesrv_listen: Option<SocketAddr>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = ferry_telemetry::init("ferry-standalone", &args.telemetry)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let embedded = Arc::new(EmbeddedStore::open(&args.data_dir).await.with_context(|| {
        format!(
            "cannot open the embedded store in {}",
            args.data_dir.display()
        )
    })?);
    let store: Arc<dyn MigrationStore> = embedded.clone();
    let full: Arc<dyn FerryStore> = embedded.clone();
    // Import tasks run on the same store; unfinished ones resume once serving.
    let imports = ImportTasks::new(
        ImportSlot::ready(embedded.clone()),
        ImportSettings::default(),
    );
    let _resumer = imports.start_resuming();
    // The scanner keeps its snapshots in the same embedded store.
    let snapshots: Arc<dyn SnapshotStore> = embedded;
    let slot = StoreSlot::ready(full.clone());
    // Readiness scans on the same store; metadata-sync's stage gate reads what they publish.
    let health_check = HealthCheck::new(
        ferry_health_check::StoreSlot::ready(full),
        EngineConfig::default(),
    );
    let scans = health_check.spawn_scans();
    let mut server = GrpcServer::bind(args.listen).await?;
    let addr = server.local_addr();
    let router = args
        .router_task_id
        .as_ref()
        .map(|task| Router::new(RouterConfig::new(task.clone())));
    if router.is_none() && args.namesrv_listen.is_some() {
        tracing::warn!("--namesrv-listen is ignored without --router-task-id");
    }
    let router_admin = router
        .as_ref()
        .map_or_else(RouterAdmin::unconfigured, |r| RouterAdmin::new(r.clone()));
    server
        .add_service(
            Scanner::new(ScanEngine::default(), SnapshotSlot::ready(snapshots)).into_service(),
        )
        .add_service(imports.into_service())
        .add_service(MigrationTasks::new(slot).into_service())
        .add_service(router_admin.into_service())
        .add_service(health_check.into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    let stop = ferry_router::CancellationToken::new();
    let mut router_tasks = Vec::new();
    if let Some(router) = &router {
        let listen = args
            .namesrv_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9876)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (router NameServer protocol)"))?;
        let namesrv_addr = listener.local_addr()?;
        router.set_addrs(Some(namesrv_addr), Some(addr));
        // Only the router's own service: `""` belongs to every service of this process.
        router.attach_health(server.health_reporter(), false).await;
        tracing::info!(%namesrv_addr, task = %router.config().task_id, "ferry standalone: router in-process");
        router_tasks.push(tokio::spawn(ferry_router::serve_namesrv(
            router.clone(),
            listener,
            ferry_router::default_server_config(),
            stop.clone().cancelled_owned(),
        )));
        router_tasks.push(tokio::spawn(ferry_router::sync::run(
            router.clone(),
            ferry_router::StoreSlot::ready(store),
            stop.clone(),
        )));
    }
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "ferry standalone: all services on one port, embedded store");
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{addr}\n"))
            .with_context(|| format!("cannot write ready file {}", path.display()))?;
    }
    let shutdown = {
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    };
    let served = run_until(server, args.telemetry.metrics_addr, shutdown).await;
    scans.abort();
    stop.cancel();
    for task in router_tasks {
        let _ = task.await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}
