//! Shared parts of the health-check tests: a stand-in router (the real one is being built in
//! services/router; this one speaks the same `RouterService` proto and registers itself in
//! the store the same way), a migration task over two real clusters, bounded waits.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_api::router::v1 as rpb;
use ferry_api::router::v1::router_service_server::{RouterService, RouterServiceServer};
use ferry_core::{MigrationStep, TargetType, TaskState};
use ferry_server::GrpcServer;
use ferry_store::{MemberLease, MigrationStore, MigrationTask, TopicState};
use ferry_testkit::rocketmq::TwoClusters;
use tonic::{Request, Response, Status};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,ferry_health_check=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `limit` with the last
/// value `describe` gives.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Topic -> client addresses the stand-in router claims to have seen.
pub type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

#[derive(Clone)]
struct StandInRouter {
    id: String,
    seen: Seen,
}

#[tonic::async_trait]
impl RouterService for StandInRouter {
    async fn get_router_status(
        &self,
        _: Request<rpb::GetRouterStatusRequest>,
    ) -> Result<Response<rpb::GetRouterStatusResponse>, Status> {
        Err(Status::unimplemented("stand-in router"))
    }

    async fn list_client_presence(
        &self,
        _: Request<rpb::ListClientPresenceRequest>,
    ) -> Result<Response<rpb::ListClientPresenceResponse>, Status> {
        Err(Status::unimplemented("stand-in router"))
    }

    async fn get_topic_presence(
        &self,
        request: Request<rpb::GetTopicPresenceRequest>,
    ) -> Result<Response<rpb::GetTopicPresenceResponse>, Status> {
        let wanted = request.into_inner().topics;
        let seen = self.seen.lock().unwrap().clone();
        let topics = seen
            .into_iter()
            .filter(|(t, _)| wanted.is_empty() || wanted.contains(t))
            .map(|(topic, addrs)| rpb::TopicPresence {
                topic,
                client_count: addrs.len() as i64,
                client_addrs: addrs.into_iter().collect(),
                last_seen: None,
            })
            .collect();
        Ok(Response::new(rpb::GetTopicPresenceResponse {
            topics,
            router_id: self.id.clone(),
        }))
    }

    async fn get_merged_route(
        &self,
        _: Request<rpb::GetMergedRouteRequest>,
    ) -> Result<Response<rpb::GetMergedRouteResponse>, Status> {
        Err(Status::unimplemented("stand-in router"))
    }
}

/// A stand-in router serving on 127.0.0.1 and registered in the store as `routers/<id>`.
pub struct Router {
    pub addr: SocketAddr,
    pub seen: Seen,
    lease: Option<MemberLease>,
    server: tokio::task::JoinHandle<()>,
}

/// Registers `routers/<id>` for `task_id` at a gRPC address nothing listens on: a router
/// whose lease is alive but which does not answer (hung, partitioned). Revoke the lease to
/// deregister it.
pub async fn register_dead_router(
    store: &dyn MigrationStore,
    id: &str,
    task_id: &str,
) -> MemberLease {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    store
        .register_member(
            "routers",
            id,
            serde_json::json!({
                "task_id": task_id,
                "namesrv_addr": "127.0.0.1:9876",
                "grpc_addr": closed.to_string(),
                "version": "dead",
                "started_at": 0,
            }),
            10,
        )
        .await
        .unwrap()
}

impl Router {
    pub async fn start(store: &dyn MigrationStore, id: &str) -> Router {
        Self::start_for(store, id, None).await
    }

    /// A stand-in router registered with `task_id` (as real routers register), or without
    /// one (`None`, counted for every task).
    pub async fn start_for(store: &dyn MigrationStore, id: &str, task_id: Option<&str>) -> Router {
        let seen: Seen = Arc::default();
        let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        server.add_service(RouterServiceServer::new(StandInRouter {
            id: id.to_string(),
            seen: seen.clone(),
        }));
        let server = tokio::spawn(async move {
            let _ = server.serve(std::future::pending::<()>()).await;
        });
        let mut value = serde_json::json!({
            "namesrv_addr": "127.0.0.1:9876",
            "grpc_addr": addr.to_string(),
            "version": "stand-in",
            "started_at": "2026-01-01T00:00:00Z",
        });
        if let Some(task_id) = task_id {
            value["task_id"] = task_id.into();
        }
        let lease = store
            .register_member("routers", id, value, 10)
            .await
            .unwrap();
        Router {
            addr,
            seen,
            lease: Some(lease),
            server,
        }
    }

    /// Claims `addr` looked `topic` up here.
    pub fn saw(&self, topic: &str, addr: &str) {
        self.seen
            .lock()
            .unwrap()
            .entry(topic.to_string())
            .or_default()
            .insert(addr.to_string());
    }

    pub async fn stop(mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = lease.revoke().await;
        }
        self.server.abort();
    }
}

/// A migration task from cluster A to cluster B with `topics`, straight in the store.
pub async fn create_task(
    store: &dyn MigrationStore,
    clusters: &TwoClusters,
    id: &str,
    topics: &[&str],
) {
    let task = MigrationTask {
        id: id.into(),
        name: format!("readiness {id}"),
        source_cluster: clusters.a.cluster_name().into(),
        source_namesrv: clusters.a.namesrv_addr(),
        target_cluster: clusters.b.cluster_name().into(),
        target_namesrv: clusters.b.namesrv_addr(),
        target_type: TargetType::V5,
        step: MigrationStep::GrayMigration,
        state: TaskState::Running,
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "test".into(),
        extra: serde_json::Value::Null,
    };
    store.create_task(task).await.unwrap();
    store
        .add_topics(
            id,
            topics
                .iter()
                .map(|t| TopicState::initial(id, *t, "test"))
                .collect(),
        )
        .await
        .unwrap();
}
