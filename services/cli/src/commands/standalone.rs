//! `ferry standalone`: every service in one process, on one gRPC port. The one-command local
//! default.
//!
//! State lives in the embedded file-backed store under `--data-dir` by default. With
//! `--etcd-endpoints URL[,URL]` (`FERRY_ETCD_ENDPOINTS`, keys under `--etcd-prefix`, default
//! `/ferry/`) every service of the process uses etcd instead, as the separate service binaries
//! do: the process serves at once with health NOT_SERVING, reaches etcd in the background with
//! backoff (`ferry_store::keep_etcd_connected`; calls answer UNAVAILABLE naming the address
//! meanwhile), flips to SERVING once the store answers and back while it does not.
//!
//! With `--router-task-id <task>` it also runs a router for that migration task in-process:
//! the NameServer protocol on `--namesrv-listen` (default 127.0.0.1:9876), its admin API on
//! the shared gRPC port, stages from the same store. Without it the router admin API
//! answers FAILED_PRECONDITION saying how to start one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ferry_api::service_names::{HEALTH_CHECK, IMPORT_TASK, MIGRATION_TASK, SCANNER};
use ferry_health_check::{EngineConfig, HealthCheck};
use ferry_metadata_sync::{ImportSettings, ImportSlot, ImportTasks, MigrationTasks, StoreSlot};
use ferry_router::{Router, RouterAdmin, RouterConfig};
use ferry_scanner::{ScanEngine, Scanner, SnapshotSlot};
use ferry_server::{GrpcServer, HealthReporter, run_until, set_serving, shutdown_signal};
use ferry_store::{EmbeddedStore, EtcdOptions, KvRequestStore, RequestSlot, keep_etcd_connected};
use ferry_telemetry::TelemetryArgs;
use tokio::task::JoinHandle;

/// Flags of `ferry standalone`.
#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// gRPC listen address of all services (port 0 picks a free port).
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing; state survives restarts).
    /// Unused with --etcd-endpoints.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = ".ferry/data")]
    data_dir: PathBuf,
    /// Keep every service's state in etcd at these endpoints (comma-separated, e.g.
    /// http://127.0.0.1:2379) instead of the embedded store.
    #[arg(long, env = "FERRY_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Prefix of every key Ferry writes in etcd; ends with '/' (used only with
    /// --etcd-endpoints).
    #[arg(long, env = "FERRY_ETCD_PREFIX", default_value = "/ferry/")]
    etcd_prefix: String,
    /// Write the bound gRPC address to this file once listening (for scripts and tests).
    #[arg(long, env = "FERRY_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Also run a router for this migration task in this process.
    #[arg(long, env = "FERRY_ROUTER_TASK_ID")]
    router_task_id: Option<String>,
    /// How often the health checker measures every running task's topics.
    #[arg(long, env = "FERRY_SCAN_INTERVAL", default_value = "10s", value_parser = ferry_core::readiness::parse_duration)]
    scan_interval: std::time::Duration,
    /// Clients' route poll interval (pollNameServerInterval): a stage is held at least twice
    /// this before the next change, so every client has seen it.
    #[arg(long, env = "FERRY_ROUTE_POLL_INTERVAL", default_value = "30s", value_parser = ferry_core::readiness::parse_duration)]
    route_poll_interval: std::time::Duration,
    /// How often the source of every running task in steps 2–4 is rescanned, so topics
    /// created there during the migration are offered for import (0s = never).
    #[arg(long, env = "FERRY_RESCAN_INTERVAL", default_value = "5m", value_parser = ferry_core::readiness::parse_duration)]
    rescan_interval: std::time::Duration,
    /// NameServer-protocol listen address of the in-process router (default
    /// 127.0.0.1:9876; used only with --router-task-id).
    #[arg(long)]
    namesrv_listen: Option<SocketAddr>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// Health names that follow the store's reachability with etcd (the router, when one runs,
/// reports its own).
const STORE_SERVICES: [&str; 5] = ["", SCANNER, IMPORT_TASK, MIGRATION_TASK, HEALTH_CHECK];

/// The store as each service sees it: ready at once (embedded) or filled by the etcd
/// connector.
struct Slots {
    /// Tasks, stages and readiness (metadata-sync and health-check).
    full: StoreSlot,
    imports: ImportSlot,
    snapshots: SnapshotSlot,
    router: ferry_router::StoreSlot,
    /// Idempotency-key records (same store).
    requests: RequestSlot,
    /// What the log says the state lives in.
    described: String,
}

/// The embedded store in `data_dir`: every slot ready.
async fn embedded(data_dir: &std::path::Path) -> anyhow::Result<Slots> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let store =
        Arc::new(EmbeddedStore::open(data_dir).await.with_context(|| {
            format!("cannot open the embedded store in {}", data_dir.display())
        })?);
    Ok(Slots {
        full: StoreSlot::ready(store.clone()),
        imports: ImportSlot::ready(store.clone()),
        snapshots: SnapshotSlot::ready(store.clone()),
        requests: RequestSlot::ready(Arc::new(KvRequestStore::embedded(&store))),
        router: ferry_router::StoreSlot::ready(store),
        described: format!("embedded store in {}", data_dir.display()),
    })
}

/// Empty slots and the task that fills them once etcd answers (and flips health with the
/// store's reachability), as each service binary does.
fn etcd(endpoints: Vec<String>, prefix: String, health: HealthReporter) -> (Slots, JoinHandle<()>) {
    let what = format!("etcd at {}", endpoints.join(","));
    let (full, full_writer) = StoreSlot::connecting(what.clone());
    let (imports, imports_writer) = ImportSlot::connecting(what.clone());
    let (snapshots, snapshots_writer) = SnapshotSlot::connecting(what.clone());
    let (router, router_writer) = ferry_router::StoreSlot::connecting();
    let (requests, requests_writer) = RequestSlot::connecting(what.clone());
    let options = EtcdOptions::default().with_prefix(prefix.clone());
    let connector = tokio::spawn(keep_etcd_connected(
        endpoints,
        options,
        move |store| match store {
            Ok(store) => {
                full_writer.set(store.clone());
                imports_writer.set(store.clone());
                snapshots_writer.set(store.clone());
                requests_writer.set(Arc::new(KvRequestStore::etcd(&store)));
                router_writer.set(store);
            }
            Err(err) => {
                full_writer.failed(err.0.clone());
                imports_writer.failed(err.0.clone());
                requests_writer.failed(err.0.clone());
                snapshots_writer.failed(err.0);
            }
        },
        move |up| {
            let health = health.clone();
            async move { set_serving(&health, &STORE_SERVICES, up).await }
        },
    ));
    let slots = Slots {
        full,
        imports,
        snapshots,
        router,
        requests,
        described: format!("{what} (prefix {prefix})"),
    };
    (slots, connector)
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = ferry_telemetry::init("ferry-standalone", &args.telemetry)?;
    let endpoints: Vec<String> = args
        .etcd_endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    // Settings first (etcd prefix, store), then the port: nothing listens when they are wrong.
    if !endpoints.is_empty() && !args.etcd_prefix.ends_with('/') {
        anyhow::bail!(
            "--etcd-prefix must end with '/', got {:?}",
            args.etcd_prefix
        );
    }
    let slots = if endpoints.is_empty() {
        Some(embedded(&args.data_dir).await?)
    } else {
        None
    };
    let mut server = GrpcServer::bind(args.listen).await?;
    let addr = server.local_addr();
    let (slots, connector) = match slots {
        Some(slots) => (slots, None),
        None => {
            let health = server.health_reporter();
            // NOT_SERVING until the store answers (the connector flips it).
            set_serving(&health, &STORE_SERVICES, false).await;
            let (slots, connector) = etcd(endpoints, args.etcd_prefix.clone(), health);
            (slots, Some(connector))
        }
    };
    server.idempotency(Arc::new(slots.requests.clone()));
    // Import tasks run on the same store; unfinished ones resume once serving.
    let imports = ImportTasks::new(slots.imports, ImportSettings::default());
    let resumer = imports.start_resuming();
    // Readiness scans on the same store; metadata-sync's stage gate reads what they publish.
    let health_check = HealthCheck::new(
        slots.full.clone(),
        EngineConfig {
            policy: ferry_core::readiness::ReadinessPolicy::for_route_poll(
                args.route_poll_interval,
            ),
            scan_interval: args.scan_interval,
            ..EngineConfig::default()
        },
    );
    let scans = health_check.spawn_scans();
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
    let migrations = MigrationTasks::new(slots.full).with_imports(imports.clone());
    let _rescans =
        (!args.rescan_interval.is_zero()).then(|| migrations.start_rescans(args.rescan_interval));
    server
        .add_service(
            // The scanner keeps its snapshots in the same store.
            Scanner::new(ScanEngine::default(), slots.snapshots).into_service(),
        )
        .add_service(imports.clone().into_service())
        .add_service(migrations.into_service())
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
            slots.router,
            stop.clone(),
        )));
    }
    tracing::info!(%addr, store = %slots.described, "ferry standalone: all services on one port");
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
    resumer.abort();
    if let Some(connector) = connector {
        connector.abort();
    }
    stop.cancel();
    for task in router_tasks {
        let _ = task.await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}
