//! `ferry-health-check`: readiness of topics (periodic scan + on demand), monitoring and
//! component health over gRPC; readiness published to etcd.
//!
//! It starts serving at once with health NOT_SERVING, reaches etcd in the background with
//! backoff (never exiting while etcd is down), and flips to SERVING once the store answers;
//! a periodic probe flips it back while etcd is unreachable. The readiness scan waits for
//! the store.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ferry_api::service_names::HEALTH_CHECK;
use ferry_core::readiness::{ReadinessPolicy, parse_duration};
use ferry_health_check::{EngineConfig, HealthCheck, StoreSlot};
use ferry_server::{GrpcServer, run_until, set_serving, shutdown_signal};
use ferry_store::{EtcdOptions, KvRequestStore, RequestSlot, keep_etcd_connected};
use ferry_telemetry::TelemetryArgs;

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
    set_serving(&health, &SERVICES, false).await;
    // Idempotency keys: records in the same etcd, UNAVAILABLE to keyed calls until it answers.
    let (requests, requests_writer) =
        RequestSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    server.idempotency(std::sync::Arc::new(requests));
    let (slot, writer) =
        StoreSlot::connecting(format!("etcd at {}", args.etcd_endpoints.join(",")));
    let service = HealthCheck::new(slot, config);
    let scans = service.spawn_scans();
    server
        .add_service(service.into_service())
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
    scans.abort();
    connector.abort();
    served
}
