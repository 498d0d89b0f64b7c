//! `grpc.health.v1.Health` whose `Watch` streams end when the server drains.
//!
//! A watch stream never finishes on its own, so one open watcher (Envoy and
//! other balancers keep one per backend) would pin its connection for the
//! whole drain timeout. Once draining starts each stream sends a final
//! NOT_SERVING and completes with OK, which per the health protocol tells the
//! client to re-watch elsewhere.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

pub(crate) fn service(
    reporter: &HealthReporter,
    draining: CancellationToken,
) -> HealthServer<DrainingHealth> {
    HealthServer::new(DrainingHealth {
        inner: HealthService::from_health_reporter(reporter.clone()),
        draining,
    })
}

#[derive(Debug)]
pub(crate) struct DrainingHealth {
    inner: HealthService,
    draining: CancellationToken,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let updates = self.inner.watch(request).await?.into_inner();
        let last = futures::stream::once(async {
            Ok(HealthCheckResponse {
                status: WireStatus::NotServing as i32,
            })
        });
        let stream = updates
            .take_until(self.draining.clone().cancelled_owned())
            .chain(last);
        Ok(Response::new(Box::pin(stream)))
    }
}
