//! The common life of a service process: expose metrics if asked, serve until shut down.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::Health as _;
use tonic_health::server::HealthService;

use crate::GrpcServer;

/// How often a service whose health status is not set yet is looked at again.
const SERVING_RETRY: Duration = Duration::from_millis(250);

/// Serves `server` until `shutdown` resolves, with the Prometheus endpoint on
/// `metrics_addr` when one is given. Both stop together.
///
/// Meanwhile `ferry_grpc_serving{service}` follows the `grpc.health.v1` status of `""`
/// and of every service of `server`.
pub async fn run_until<F>(
    server: GrpcServer,
    metrics_addr: Option<SocketAddr>,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let stop_metrics = CancellationToken::new();
    let watchers = watch_serving(&server, stop_metrics.clone());
    let metrics =
        match metrics_addr {
            Some(addr) => {
                let token = stop_metrics.clone();
                let (bound, handle) = ferry_telemetry::metrics::serve_metrics(addr, async move {
                    token.cancelled().await
                })
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
                tracing::info!(%bound, "metrics endpoint listening on /metrics");
                Some(handle)
            }
            None => None,
        };
    tracing::info!(addr = %server.local_addr(), "gRPC listening");
    let served = server.serve(shutdown).await;
    stop_metrics.cancel();
    for watcher in watchers {
        let _ = watcher.await;
    }
    if let Some(handle) = metrics {
        let _ = handle.await;
    }
    served.map_err(Into::into)
}

/// One task per health name (`""` and each service of `server`) mirroring its
/// `grpc.health.v1` status into `ferry_grpc_serving` until `stop`. A name whose
/// status is not set yet (the server sets it when serving starts) reads 0 until it is.
fn watch_serving(server: &GrpcServer, stop: CancellationToken) -> Vec<JoinHandle<()>> {
    let reporter = server.health_reporter();
    std::iter::once("")
        .chain(server.services.iter().copied())
        .map(|name| {
            let health = HealthService::from_health_reporter(reporter.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let metrics = ferry_telemetry::metrics::grpc();
                metrics.set_serving(name, false);
                let mirror = async {
                    loop {
                        let request = tonic::Request::new(HealthCheckRequest {
                            service: name.to_owned(),
                        });
                        match health.watch(request).await {
                            Ok(updates) => {
                                let mut updates = updates.into_inner();
                                while let Some(Ok(update)) = updates.next().await {
                                    let serving = update.status == WireStatus::Serving as i32;
                                    metrics.set_serving(name, serving);
                                }
                            }
                            // Not set yet: the server sets it when serving starts.
                            Err(_) => tokio::time::sleep(SERVING_RETRY).await,
                        }
                    }
                };
                tokio::select! {
                    () = mirror => {}
                    () = stop.cancelled() => {}
                }
            })
        })
        .collect()
}

/// Sets every service in `services` ("" is the server as a whole) SERVING or NOT_SERVING.
pub async fn set_serving(health: &crate::HealthReporter, services: &[&str], serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    for service in services {
        health.set_service_status(*service, status).await;
    }
}
