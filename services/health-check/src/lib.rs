//! The health-check service: readiness of each topic for its next and previous stage,
//! monitoring of both clusters, and the health of every Ferry component.
//!
//! Readiness and monitoring arrive with the migration control work; until then those RPCs
//! answer `UNIMPLEMENTED` saying so.

use ferry_api::health_check::v1::health_check_service_server::{
    HealthCheckService, HealthCheckServiceServer,
};
use ferry_api::health_check::v1::*;

/// The health-check gRPC service.
#[derive(Debug, Clone, Default)]
pub struct HealthCheck;

impl HealthCheck {
    /// The tonic service to add to a server.
    pub fn into_service(self) -> HealthCheckServiceServer<Self> {
        HealthCheckServiceServer::new(self)
    }
}

ferry_server::pending_service! {
    impl HealthCheckService for HealthCheck;
    service ferry_api::service_names::HEALTH_CHECK,
        arrives_with "the migration control and health-check work (issue #8)";
    check_topics(CheckTopicsRequest) -> CheckTopicsResponse;
    list_topic_readiness(ListTopicReadinessRequest) -> ListTopicReadinessResponse;
    get_migration_monitor(GetMigrationMonitorRequest) -> GetMigrationMonitorResponse;
    list_unswitched_clients(ListUnswitchedClientsRequest) -> ListUnswitchedClientsResponse;
    check_backlog(CheckBacklogRequest) -> CheckBacklogResponse;
    get_system_health(GetSystemHealthRequest) -> GetSystemHealthResponse;
}
