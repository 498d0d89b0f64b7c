//! The router: a NameServer-protocol route server that merges the source and target
//! clusters' routes by each topic's migration stage, plus a gRPC admin API.
//!
//! The route server arrives with the router work; until then the admin RPCs answer
//! `UNIMPLEMENTED` saying so.

use ferry_api::router::v1::router_service_server::{RouterService, RouterServiceServer};
use ferry_api::router::v1::*;

/// The router's gRPC admin service.
#[derive(Debug, Clone, Default)]
pub struct RouterAdmin;

impl RouterAdmin {
    /// The tonic service to add to a server.
    pub fn into_service(self) -> RouterServiceServer<Self> {
        RouterServiceServer::new(self)
    }
}

ferry_server::pending_service! {
    impl RouterService for RouterAdmin;
    service ferry_api::service_names::ROUTER, arrives_with "the router work (issue #7)";
    get_router_status(GetRouterStatusRequest) -> GetRouterStatusResponse;
    list_client_presence(ListClientPresenceRequest) -> ListClientPresenceResponse;
    get_topic_presence(GetTopicPresenceRequest) -> GetTopicPresenceResponse;
    get_merged_route(GetMergedRouteRequest) -> GetMergedRouteResponse;
}
