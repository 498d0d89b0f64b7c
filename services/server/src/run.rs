//! The common life of a service process: expose metrics if asked, serve until shut down.

use std::future::Future;
use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::GrpcServer;

/// Serves `server` until `shutdown` resolves, with the Prometheus endpoint on
/// `metrics_addr` when one is given. Both stop together.
pub async fn run_until<F>(
    server: GrpcServer,
    metrics_addr: Option<SocketAddr>,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let stop_metrics = CancellationToken::new();
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
    if let Some(handle) = metrics {
        let _ = handle.await;
    }
    served.map_err(Into::into)
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
