//! The router's gRPC admin API (`ferry.router.v1.RouterService`): status, client presence,
//! and the route a client would get.

use std::sync::Arc;

use ferry_api::common::v1 as pb_common;
use ferry_api::router::v1::router_service_server::{RouterService, RouterServiceServer};
use ferry_api::router::v1::*;
use ferry_core::Stage;
use ferry_remoting::{RouteDialect, encode_route, mq_version};
use tonic::{Request, Response, Status};

use crate::merge::MergeOutcome;
use crate::router::Router;
use crate::upstream::now_ms;

/// Default and largest page of ListClientPresence.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The admin service; without a router (e.g. `ferry standalone` started without
/// `--router-task-id`) every RPC answers FAILED_PRECONDITION saying how to start one.
#[derive(Clone)]
pub struct RouterAdmin {
    router: Option<Arc<Router>>,
}

impl RouterAdmin {
    pub fn new(router: Arc<Router>) -> Self {
        RouterAdmin {
            router: Some(router),
        }
    }

    /// An admin service for a process that runs no router.
    pub fn unconfigured() -> Self {
        RouterAdmin { router: None }
    }

    /// The tonic service to add to a server.
    pub fn into_service(self) -> RouterServiceServer<Self> {
        RouterServiceServer::new(self)
    }

    fn router(&self) -> Result<&Arc<Router>, Status> {
        self.router.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this process runs no router: start ferry-router --task-id <task> (or ferry standalone --router-task-id <task>)",
            )
        })
    }
}

use ferry_api::domain::timestamp;

/// STAGE_UNSPECIFIED for a topic outside the task.
fn stage_to_pb(stage: Option<Stage>) -> pb_common::Stage {
    stage.map_or(
        pb_common::Stage::Unspecified,
        ferry_api::domain::stage_to_pb,
    )
}

#[tonic::async_trait]
impl RouterService for RouterAdmin {
    async fn get_router_status(
        &self,
        _request: Request<GetRouterStatusRequest>,
    ) -> Result<Response<GetRouterStatusResponse>, Status> {
        let r = self.router()?;
        let mut reasons = Vec::new();
        if r.upstreams().is_none() {
            reasons.push(format!("not ready: {}", r.not_ready_reason()));
        }
        reasons.extend(r.fail_static_reasons());
        let task = r.task();
        let upstreams = r
            .upstreams()
            .map(|ups| {
                [&ups.source, &ups.target]
                    .into_iter()
                    .map(|up| {
                        let h = up.health();
                        let cluster = match (up.side(), &task) {
                            (ferry_core::perm::Side::Source, Some(t)) => t.source_cluster.clone(),
                            (ferry_core::perm::Side::Target, Some(t)) => t.target_cluster.clone(),
                            _ => up.cluster_names().join(","),
                        };
                        UpstreamStatus {
                            role: up.name().to_string(),
                            cluster,
                            namesrv_addrs: up.addrs().to_string(),
                            reachable: h.reachable,
                            last_error: h.last_error.unwrap_or_default(),
                            last_success_at: timestamp(h.last_success_ms),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (namesrv, _) = r.addrs();
        Ok(Response::new(GetRouterStatusResponse {
            router_id: r.id().to_string(),
            namesrv_listen_addr: namesrv.map(|a| a.to_string()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: timestamp(r.started_at_ms()),
            fail_static: !reasons.is_empty(),
            fail_static_reasons: reasons,
            stage_revision: r.stage_revision(),
            cached_topics: r.cached_topics() as i64,
            upstreams,
            broker_name_collisions: r.collisions().into_iter().collect(),
        }))
    }

    async fn list_client_presence(
        &self,
        request: Request<ListClientPresenceRequest>,
    ) -> Result<Response<ListClientPresenceResponse>, Status> {
        let r = self.router()?;
        let req = request.into_inner();
        if req.page_size < 0 || req.seen_within_seconds < 0 {
            return Err(Status::invalid_argument(
                "page_size and seen_within_seconds must not be negative",
            ));
        }
        let limit = match req.page_size {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let since = if req.seen_within_seconds == 0 {
            i64::MIN
        } else {
            now_ms().saturating_sub(req.seen_within_seconds.saturating_mul(1000))
        };
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(req.page_token.rsplit_once('\n').ok_or_else(|| {
                Status::invalid_argument("page_token is not one this router returned")
            })?)
        };
        let topic = (!req.topic.is_empty()).then_some(req.topic.as_str());
        let (entries, more) = r.with_presence(|p| p.list(topic, since, after, limit));
        let next_page_token = match (more, entries.last()) {
            (true, Some(last)) => format!("{}\n{}", last.topic, last.client_addr),
            _ => String::new(),
        };
        Ok(Response::new(ListClientPresenceResponse {
            clients: entries
                .into_iter()
                .map(|e| ClientPresence {
                    topic: e.topic,
                    client_addr: e.client_addr,
                    language: e.language,
                    client_version: e.version,
                    lookups: e.lookups,
                    first_seen: timestamp(e.first_seen_ms),
                    last_seen: timestamp(e.last_seen_ms),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_topic_presence(
        &self,
        request: Request<GetTopicPresenceRequest>,
    ) -> Result<Response<GetTopicPresenceResponse>, Status> {
        let r = self.router()?;
        let req = request.into_inner();
        let topics = r.with_presence(|p| p.topics(&req.topics));
        Ok(Response::new(GetTopicPresenceResponse {
            topics: topics
                .into_iter()
                .map(|t| TopicPresence {
                    topic: t.topic,
                    client_count: t.client_addrs.len() as i64,
                    client_addrs: t.client_addrs,
                    last_seen: timestamp(t.last_seen_ms),
                })
                .collect(),
            router_id: r.id().to_string(),
        }))
    }

    async fn get_merged_route(
        &self,
        request: Request<GetMergedRouteRequest>,
    ) -> Result<Response<GetMergedRouteResponse>, Status> {
        let r = self.router()?;
        let req = request.into_inner();
        if req.topic.is_empty() {
            return Err(Status::invalid_argument("topic is required"));
        }
        let version = if req.client_version == 0 {
            mq_version::V5_3_3
        } else {
            req.client_version
        };
        let resolved = r
            .resolve_route(&req.topic)
            .await
            .map_err(|reason| Status::unavailable(format!("router not ready: {reason}")))?;
        match resolved.outcome {
            MergeOutcome::Route(m) => {
                let body = encode_route(&m.route, RouteDialect::for_request(version, None));
                Ok(Response::new(GetMergedRouteResponse {
                    stage: stage_to_pb(resolved.rule.effective_stage()) as i32,
                    route_json: String::from_utf8_lossy(&body).into_owned(),
                    stale: resolved.stale,
                }))
            }
            MergeOutcome::TopicNotExist => Err(Status::not_found(format!(
                "no cluster routes topic {} (clients get TOPIC_NOT_EXIST)",
                req.topic
            ))),
            MergeOutcome::Unavailable(side) => Err(Status::unavailable(r.unavailable_reason(side))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = timestamp(1_700_000_000_123).unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
        assert!(timestamp(0).is_none());
        assert_eq!(stage_to_pb(None), pb_common::Stage::Unspecified);
        assert_eq!(stage_to_pb(Some(Stage::Done)), pb_common::Stage::Done);
    }

    #[tokio::test]
    async fn unconfigured_admin_says_how_to_start_a_router() {
        let admin = RouterAdmin::unconfigured();
        let err = admin
            .get_router_status(Request::new(GetRouterStatusRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains("--router-task-id"),
            "{}",
            err.message()
        );
    }
}
