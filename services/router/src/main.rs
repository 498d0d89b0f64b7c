//! `ferry-router`: the NameServer-protocol route server of one migration task (default
//! :9876) plus its gRPC admin API with health and reflection (default :7073). State comes
//! from etcd; see the crate docs for what it answers. SIGTERM drains both listeners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferry_router::{Router, RouterAdmin, RouterConfig, StoreSlot, UpstreamConfig, sync};
use ferry_server::{GrpcServer, run_until, shutdown_signal};
use ferry_store::EtcdOptions;
use ferry_telemetry::TelemetryArgs;
use tokio_util::sync::CancellationToken;

/// Ferry router: answers RocketMQ route lookups with routes merged by migration stage.
#[derive(Debug, Parser)]
#[command(name = "ferry-router", version, about)]
struct Args {
    /// The migration task this router serves.
    #[arg(long, env = "FERRY_TASK_ID")]
    task_id: String,
    /// NameServer-protocol listen address (clients' namesrvAddr points here).
    #[arg(long, env = "FERRY_NAMESRV_LISTEN", default_value = "0.0.0.0:9876")]
    namesrv_listen: SocketAddr,
    /// gRPC admin listen address.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:7073")]
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
    /// Id registered in the store (routers/<id>); default <hostname>-<random>.
    #[arg(long, env = "FERRY_ROUTER_ID")]
    router_id: Option<String>,
    /// How long DONE keeps source brokers listed with perm 0 (e.g. 600s, 10m, 1h).
    #[arg(long, env = "FERRY_DONE_GRACE", default_value = "10m", value_parser = parse_duration)]
    done_grace: Duration,
    /// How long a cached route is served before it is fetched again.
    #[arg(long, env = "FERRY_ROUTE_TTL", default_value = "5s", value_parser = parse_duration)]
    route_ttl: Duration,
    /// Deadline of one upstream NameServer call (keep well under clients' 3 s).
    #[arg(long, env = "FERRY_UPSTREAM_TIMEOUT", default_value = "1500ms", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// (topic, client) pairs remembered for presence.
    #[arg(long, env = "FERRY_PRESENCE_CAPACITY", default_value_t = 100_000)]
    presence_capacity: usize,
    /// NameServer-protocol connections served at once.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Close NameServer connections without a complete request for this long.
    #[arg(long, env = "FERRY_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Write "namesrv=<addr>" and "grpc=<addr>" lines here once listening (scripts, tests).
    #[arg(long, env = "FERRY_READY_FILE")]
    ready_file: Option<PathBuf>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// `500ms`, `30s`, `10m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 30s, 10m or 1h"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        other => Err(format!(
            "unknown duration unit {other:?} in {s:?}; use ms, s, m or h"
        )),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-router", &args.telemetry)?;

    let mut cfg = RouterConfig::new(args.task_id.clone());
    if let Some(id) = args.router_id {
        cfg.router_id = id;
    }
    cfg.done_grace = args.done_grace;
    cfg.upstream = UpstreamConfig {
        route_ttl: args.route_ttl,
        timeout: args.upstream_timeout,
        ..UpstreamConfig::default()
    };
    cfg.refresh_interval = args.route_ttl.max(Duration::from_secs(1));
    cfg.presence_capacity = args.presence_capacity;
    let router = Router::new(cfg);

    let namesrv_listener = tokio::net::TcpListener::bind(args.namesrv_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (NameServer protocol)",
                args.namesrv_listen
            )
        })?;
    let namesrv_addr = namesrv_listener.local_addr()?;
    let mut server = GrpcServer::bind(args.listen).await?;
    let grpc_addr = server.local_addr();
    router.set_addrs(Some(namesrv_addr), Some(grpc_addr));
    router.attach_health(server.health_reporter(), true).await;
    server
        .add_service(RouterAdmin::new(router.clone()).into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    tracing::info!(task = %args.task_id, id = %router.id(), %namesrv_addr, %grpc_addr, "ferry-router starting");
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("namesrv={namesrv_addr}\ngrpc={grpc_addr}\n"))
            .with_context(|| format!("cannot write ready file {}", path.display()))?;
    }

    // One shutdown for everything: the signal cancels the token every part watches.
    let shutdown = CancellationToken::new();
    let on_signal = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            shutdown.cancel();
        })
    };
    let (slot, writer) = StoreSlot::connecting();
    let options = EtcdOptions::default().with_prefix(args.etcd_prefix);
    let connector = tokio::spawn(sync::connect_etcd(
        router.clone(),
        args.etcd_endpoints,
        options,
        writer,
        shutdown.clone(),
    ));
    let background = tokio::spawn(sync::run(router.clone(), slot, shutdown.clone()));
    let mut server_cfg = ferry_router::default_server_config();
    server_cfg.max_connections = args.max_connections;
    server_cfg.idle_timeout = args.idle_timeout;
    let namesrv = tokio::spawn(ferry_router::serve_namesrv(
        router.clone(),
        namesrv_listener,
        server_cfg,
        shutdown.clone().cancelled_owned(),
    ));
    let served = run_until(
        server,
        args.telemetry.metrics_addr,
        shutdown.clone().cancelled_owned(),
    )
    .await;
    shutdown.cancel();
    let _ = namesrv.await;
    let _ = background.await;
    connector.abort();
    on_signal.abort();
    tracing::info!("ferry-router stopped");
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10d").is_err());
    }
}
