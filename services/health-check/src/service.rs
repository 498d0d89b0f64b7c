//! `HealthCheckService`: readiness on demand and from the periodic scan, monitoring of both
//! clusters, clients not yet switched, a backlog check for migrations by hand, and the health
//! of Ferry's components.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_api::health_check::v1 as pb;
use ferry_api::health_check::v1::health_check_service_server::{
    HealthCheckService, HealthCheckServiceServer,
};
use ferry_core::readiness::{Readiness, Reason, ReasonCode};
use ferry_core::{Direction, Stage, TopicClass, classify_topic, is_system_group};
use ferry_remoting::{ClientConfig, Credentials, NameServerClient};
use ferry_store::PageRequest;
use tonic::{Request, Response, Status};

use crate::cluster::Clusters;
use crate::engine::{Engine, EngineConfig, TaskReport, all_records};
use crate::error::{HealthError, Result};
use crate::measure::ClusterFigures;
use crate::slot::StoreSlot;

/// The health-check gRPC service (cheap to clone; clones share one engine).
#[derive(Clone)]
pub struct HealthCheck {
    engine: Arc<Engine>,
}

impl HealthCheck {
    pub fn new(store: StoreSlot, config: EngineConfig) -> Self {
        HealthCheck {
            engine: Arc::new(Engine::new(store, config)),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Starts the periodic readiness scan; abort the handle to stop it.
    pub fn spawn_scans(&self) -> tokio::task::JoinHandle<()> {
        let engine = self.engine.clone();
        tracing::info!(
            interval_ms = engine.config().scan_interval.as_millis() as u64,
            min_dwell_ms = engine.config().policy.min_dwell.as_millis() as u64,
            "readiness scans started"
        );
        tokio::spawn(engine.run_scans())
    }

    /// The tonic service to add to a server.
    pub fn into_service(self) -> HealthCheckServiceServer<Self> {
        HealthCheckServiceServer::new(self)
    }
}

// ------------------------------------------------------------------ conversions

pub use ferry_api::domain::{readiness_to_pb, reason_code_to_pb, stage_to_pb, timestamp};

/// Readiness of a topic the checker has not measured in its current stage.
fn not_measured(stage: Stage, direction: Direction) -> Readiness {
    let to = stage.step(direction);
    let reason = match to {
        None => Reason::new(ReasonCode::NoSuchStage, format!("topic is {stage}")),
        Some(_) => Reason::new(
            ReasonCode::DwellTooShort,
            format!("not measured in {stage} yet; the next readiness scan measures it"),
        ),
    };
    Readiness {
        to,
        ready: false,
        reasons: vec![reason],
    }
}

fn page_request(page_size: i32, page_token: String) -> Result<PageRequest> {
    PageRequest::from_wire(page_size, page_token).map_err(HealthError::InvalidArgument)
}

fn require_task_id(task_id: &str) -> Result<()> {
    if task_id.trim().is_empty() {
        return Err(HealthError::InvalidArgument("task_id is required".into()));
    }
    Ok(())
}

fn figures_to_pb(role: &str, cluster: &str, f: &ClusterFigures) -> pb::ClusterTopicFigures {
    pb::ClusterTopicFigures {
        role: role.into(),
        cluster: cluster.into(),
        put_tps: f.put_tps,
        consume_tps: f.consume_tps,
        backlog: f.backlog,
        writable_queues: f.writable_queues,
        readable_queues: f.readable_queues,
    }
}

fn topic_readiness(report: &TaskReport) -> Vec<pb::TopicReadiness> {
    report
        .topics
        .iter()
        .map(|t| pb::TopicReadiness {
            topic: t.topic.clone(),
            stage: stage_to_pb(t.stage) as i32,
            next: Some(readiness_to_pb(&t.next, report.measured_at_ms)),
            previous: Some(readiness_to_pb(&t.previous, report.measured_at_ms)),
        })
        .collect()
}

fn ok<T>(value: T) -> std::result::Result<Response<T>, Status> {
    Ok(Response::new(value))
}

// ------------------------------------------------------------------ the service

impl HealthCheck {
    async fn list_readiness(
        &self,
        req: pb::ListTopicReadinessRequest,
    ) -> Result<pb::ListTopicReadinessResponse> {
        require_task_id(&req.task_id)?;
        let store = self.engine.store()?;
        store.get_task(&req.task_id).await?;
        let page = store
            .list_topics(&req.task_id, page_request(req.page_size, req.page_token)?)
            .await?;
        let records = all_records(store.as_ref(), &req.task_id).await?;
        let mut scanned_at = 0;
        let mut topics = Vec::new();
        for t in &page.items {
            let stage = t.value.stage;
            let (next, previous, checked_at) = match records
                .get(&t.value.topic)
                .filter(|r| r.is_for_revision(t.revision))
            {
                Some(r) => {
                    scanned_at = scanned_at.max(r.checked_at_ms);
                    (r.next.clone(), r.previous.clone(), r.checked_at_ms)
                }
                None => (
                    not_measured(stage, Direction::Advance),
                    not_measured(stage, Direction::Rollback),
                    0,
                ),
            };
            if req.only_not_ready && next.ready {
                continue;
            }
            topics.push(pb::TopicReadiness {
                topic: t.value.topic.clone(),
                stage: stage_to_pb(stage) as i32,
                next: Some(readiness_to_pb(&next, checked_at)),
                previous: Some(readiness_to_pb(&previous, checked_at)),
            });
        }
        Ok(pb::ListTopicReadinessResponse {
            topics,
            next_page_token: page.next_page_token.unwrap_or_default(),
            scanned_at: timestamp(scanned_at),
        })
    }

    async fn monitor(&self, task_id: &str) -> Result<pb::GetMigrationMonitorResponse> {
        require_task_id(task_id)?;
        let report = self.engine.check(task_id, &[]).await?;
        let task = &report.task.value;
        let mut groups: BTreeMap<String, pb::GroupComparison> = BTreeMap::new();
        let topics = report
            .topics
            .iter()
            .map(|t| {
                for g in &t.measurement.groups {
                    let entry = groups
                        .entry(g.group.clone())
                        .or_insert(pb::GroupComparison {
                            group: g.group.clone(),
                            source_clients: 0,
                            target_clients: 0,
                            exists_on_target: true,
                            switched: true,
                        });
                    // A group's members are the same client instances for every topic it
                    // consumes, so the largest count is the group's.
                    entry.source_clients = entry
                        .source_clients
                        .max(g.source_clients.unwrap_or(0) as i64);
                    entry.target_clients = entry
                        .target_clients
                        .max(g.target_clients.unwrap_or(0) as i64);
                    entry.exists_on_target &= g.exists_on_target.unwrap_or(false);
                    entry.switched &= g.switched;
                }
                pb::TopicMonitor {
                    topic: t.topic.clone(),
                    stage: stage_to_pb(t.stage) as i32,
                    clusters: vec![
                        figures_to_pb(
                            "source",
                            &task.source_cluster,
                            &t.measurement.source_figures,
                        ),
                        figures_to_pb(
                            "target",
                            &task.target_cluster,
                            &t.measurement.target_figures,
                        ),
                    ],
                }
            })
            .collect();
        let groups_not_switched = groups
            .values()
            .filter(|g| !g.switched)
            .map(|g| g.group.clone())
            .collect();
        Ok(pb::GetMigrationMonitorResponse {
            topics,
            groups: groups.into_values().collect(),
            groups_not_switched,
            measured_at: timestamp(report.measured_at_ms),
        })
    }

    async fn unswitched(
        &self,
        req: pb::ListUnswitchedClientsRequest,
    ) -> Result<pb::ListUnswitchedClientsResponse> {
        require_task_id(&req.task_id)?;
        let topics: Vec<String> = if req.topic.is_empty() {
            Vec::new()
        } else {
            vec![req.topic]
        };
        let report = self.engine.check(&req.task_id, &topics).await?;
        let clients = report
            .topics
            .iter()
            .flat_map(|t| {
                t.measurement
                    .unswitched
                    .iter()
                    .map(|c| pb::UnswitchedClient {
                        topic: t.topic.clone(),
                        group: c.group.clone(),
                        role: c.role.as_str().into(),
                        client_id: c.client_id.clone(),
                        client_addr: c.client_addr.clone(),
                    })
            })
            .collect();
        Ok(pb::ListUnswitchedClientsResponse {
            clients,
            routers_consulted: report.routers_consulted as i32,
        })
    }

    /// Step 3's view: per topic, who looks it up through the routers, merged over routers
    /// (lookups summed, latest last-seen, the routers that saw each client).
    async fn topic_clients(
        &self,
        req: pb::ListTopicClientsRequest,
    ) -> Result<pb::ListTopicClientsResponse> {
        require_task_id(&req.task_id)?;
        let store = self.engine.store()?;
        store.get_task(&req.task_id).await?;
        let seen = self
            .engine
            .routers()
            .clients(store.as_ref(), &req.task_id, &req.topic)
            .await?;
        let mut topics: BTreeMap<String, BTreeMap<String, pb::RoutedClient>> = BTreeMap::new();
        for (router, c) in seen.clients {
            let entry = topics
                .entry(c.topic.clone())
                .or_default()
                .entry(c.client_addr.clone())
                .or_insert_with(|| pb::RoutedClient {
                    client_addr: c.client_addr.clone(),
                    language: c.language.clone(),
                    ..Default::default()
                });
            entry.lookups += c.lookups;
            let later = match (&entry.last_seen, &c.last_seen) {
                (Some(a), Some(b)) => (b.seconds, b.nanos) > (a.seconds, a.nanos),
                (None, Some(_)) => true,
                _ => false,
            };
            if later {
                entry.last_seen = c.last_seen;
            }
            if !entry.routers.contains(&router) {
                entry.routers.push(router);
            }
        }
        Ok(pb::ListTopicClientsResponse {
            topics: topics
                .into_iter()
                .map(|(topic, clients)| pb::TopicClients {
                    topic,
                    client_count: clients.len() as i32,
                    clients: clients.into_values().collect(),
                })
                .collect(),
            routers_registered: seen.registered as i32,
            routers_answered: seen.answered as i32,
            router_failures: seen.failures,
        })
    }

    /// PRODUCT.md §3: per topic and group, is the cluster drained? Works on any cluster,
    /// without a task. Anything that cannot be read fails the call: an unread broker must
    /// never look drained.
    async fn backlog(&self, req: pb::CheckBacklogRequest) -> Result<pb::CheckBacklogResponse> {
        let endpoint = req
            .cluster
            .ok_or_else(|| HealthError::InvalidArgument("cluster is required".into()))?;
        let clusters = match &endpoint.credentials {
            Some(c) if !c.access_key.is_empty() => Clusters::new(ClientConfig {
                credentials: Some(Credentials::new(&c.access_key, &c.secret_key)),
                ..self.engine.config().remoting.clone()
            }),
            _ => self.engine.clusters().clone(),
        };
        let cluster_err = |what: String| move |source| HealthError::Cluster { what, source };
        let ns = clusters
            .namesrv(&endpoint.namesrv_addrs)
            .map_err(cluster_err("NameServer addresses".into()))?;
        let explicit = !req.topics.is_empty();
        let topics: Vec<String> = if explicit {
            req.topics.clone()
        } else {
            list_user_topics(&ns, &endpoint.cluster_name).await?
        };
        let mut backlogs = Vec::new();
        let mut retry_backlogs: BTreeMap<String, i64> = BTreeMap::new();
        for topic in &topics {
            let route = ns
                .topic_route(topic)
                .await
                .map_err(cluster_err(format!("route of {topic}")))?;
            let Some(route) = route else {
                if explicit {
                    return Err(HealthError::NotFound(format!(
                        "topic {topic} does not exist on {}",
                        endpoint.namesrv_addrs
                    )));
                }
                continue;
            };
            let mut brokers = Vec::new();
            for bd in &route.broker_datas {
                if !endpoint.cluster_name.is_empty() && bd.cluster != endpoint.cluster_name {
                    continue;
                }
                let addr = bd.select_addr().ok_or_else(|| {
                    HealthError::NotFound(format!(
                        "broker {} of topic {topic} has no address",
                        bd.broker_name
                    ))
                })?;
                brokers.push(addr.to_string());
            }
            let groups: BTreeSet<String> = if req.groups.is_empty() {
                let mut found = BTreeSet::new();
                for addr in &brokers {
                    let g = clusters
                        .topic_groups(addr, topic)
                        .await
                        .map_err(cluster_err(format!("groups of {topic} on {addr}")))?;
                    found.extend(g.into_iter().filter(|g| !is_system_group(g)));
                }
                found
            } else {
                req.groups.iter().cloned().collect()
            };
            for group in groups {
                let mut backlog = 0i64;
                for addr in &brokers {
                    let stats = clusters
                        .admin()
                        .consume_stats(addr, &group, Some(topic))
                        .await
                        .map_err(cluster_err(format!(
                            "consume stats of {group} on {topic} at {addr}"
                        )))?;
                    backlog = stats.offset_table.iter().fold(backlog, |b, (_, o)| {
                        b.saturating_add((o.broker_offset - o.consumer_offset).max(0))
                    });
                }
                let retry_backlog = match retry_backlogs.get(&group) {
                    Some(n) => *n,
                    None => {
                        let n =
                            retry_backlog(&clusters, &ns, &endpoint.cluster_name, &group).await?;
                        retry_backlogs.insert(group.clone(), n);
                        n
                    }
                };
                backlogs.push(pb::GroupBacklog {
                    topic: topic.clone(),
                    group,
                    backlog,
                    drained: backlog == 0 && retry_backlog == 0,
                    retry_backlog,
                });
            }
        }
        Ok(pb::CheckBacklogResponse {
            all_drained: backlogs.iter().all(|b| b.drained),
            backlogs,
        })
    }

    async fn system_health(&self) -> pb::GetSystemHealthResponse {
        let mut components = Vec::new();
        let config = self.engine.config();
        components.push(pb::ComponentHealth {
            component: "health-check".into(),
            serving: true,
            detail: format!(
                "readiness scan every {} s; minimum dwell {} s; source quiet window {} s",
                config.scan_interval.as_secs_f64(),
                config.policy.min_dwell.as_secs_f64(),
                config.policy.source_quiet.as_secs_f64()
            ),
        });
        let store = match self.engine.store() {
            Ok(s) => s,
            Err(e) => {
                components.push(pb::ComponentHealth {
                    component: "store".into(),
                    serving: false,
                    detail: e.to_string(),
                });
                return pb::GetSystemHealthResponse { components };
            }
        };
        let (serving, detail) = match store.health().await {
            Ok(()) => (true, "reachable".to_string()),
            Err(e) => (false, e.to_string()),
        };
        components.push(pb::ComponentHealth {
            component: "store".into(),
            serving,
            detail,
        });
        match self.engine.routers().list(store.as_ref()).await {
            Err(e) => components.push(pb::ComponentHealth {
                component: "routers".into(),
                serving: false,
                detail: format!("cannot list registered routers: {e}"),
            }),
            Ok(routers) if routers.is_empty() => components.push(pb::ComponentHealth {
                component: "routers".into(),
                serving: false,
                detail: "no router is registered in the store: clients have nowhere to switch to"
                    .into(),
            }),
            Ok(routers) => {
                let checks = futures::future::join_all(
                    routers.iter().map(|r| self.engine.routers().health(r)),
                )
                .await;
                for (router, health) in routers.iter().zip(checks) {
                    let (serving, detail) = match health {
                        Ok(()) => (true, router.describe()),
                        Err(e) => (false, format!("{}: {e}", router.describe())),
                    };
                    components.push(pb::ComponentHealth {
                        component: format!("router/{}", router.id),
                        serving,
                        detail,
                    });
                }
            }
        }
        pb::GetSystemHealthResponse { components }
    }
}

/// Backlog of `group` in its `%RETRY%` topic on the cluster (0 when it has none).
async fn retry_backlog(
    clusters: &Clusters,
    ns: &NameServerClient,
    cluster: &str,
    group: &str,
) -> Result<i64> {
    let retry = format!("%RETRY%{group}");
    let cluster_err = |what: String| move |source| HealthError::Cluster { what, source };
    let Some(route) = ns
        .topic_route(&retry)
        .await
        .map_err(cluster_err(format!("route of {retry}")))?
    else {
        return Ok(0);
    };
    let mut backlog = 0i64;
    for bd in &route.broker_datas {
        if !cluster.is_empty() && bd.cluster != cluster {
            continue;
        }
        let Some(addr) = bd.select_addr() else {
            return Err(HealthError::NotFound(format!(
                "broker {} of topic {retry} has no address",
                bd.broker_name
            )));
        };
        let stats = clusters
            .admin()
            .consume_stats(addr, group, Some(&retry))
            .await
            .map_err(cluster_err(format!(
                "consume stats of {group} on {retry} at {addr}"
            )))?;
        backlog = stats.offset_table.iter().fold(backlog, |b, (_, o)| {
            b.saturating_add((o.broker_offset - o.consumer_offset).max(0))
        });
    }
    Ok(backlog)
}

/// User topics of a cluster (or of every cluster behind the NameServers).
async fn list_user_topics(ns: &NameServerClient, cluster: &str) -> Result<Vec<String>> {
    let list = if cluster.is_empty() {
        ns.all_topic_list().await
    } else {
        ns.topics_by_cluster(cluster).await
    }
    .map_err(|source| HealthError::Cluster {
        what: "topic list".into(),
        source,
    })?;
    Ok(list
        .topic_list
        .into_iter()
        .filter(|t| classify_topic(t) == TopicClass::User)
        .collect())
}

#[tonic::async_trait]
impl HealthCheckService for HealthCheck {
    async fn check_topics(
        &self,
        request: Request<pb::CheckTopicsRequest>,
    ) -> std::result::Result<Response<pb::CheckTopicsResponse>, Status> {
        let req = request.into_inner();
        require_task_id(&req.task_id)?;
        let report = self.engine.check(&req.task_id, &req.topics).await?;
        if req.dry_run {
            tracing::debug!(task = %req.task_id, topics = report.topics.len(), "readiness checked (dry run): nothing published");
        } else {
            self.engine.publish(&report).await?;
        }
        ok(pb::CheckTopicsResponse {
            topics: topic_readiness(&report),
        })
    }

    async fn list_topic_readiness(
        &self,
        request: Request<pb::ListTopicReadinessRequest>,
    ) -> std::result::Result<Response<pb::ListTopicReadinessResponse>, Status> {
        ok(self.list_readiness(request.into_inner()).await?)
    }

    async fn get_migration_monitor(
        &self,
        request: Request<pb::GetMigrationMonitorRequest>,
    ) -> std::result::Result<Response<pb::GetMigrationMonitorResponse>, Status> {
        ok(self.monitor(&request.into_inner().task_id).await?)
    }

    async fn list_unswitched_clients(
        &self,
        request: Request<pb::ListUnswitchedClientsRequest>,
    ) -> std::result::Result<Response<pb::ListUnswitchedClientsResponse>, Status> {
        ok(self.unswitched(request.into_inner()).await?)
    }

    async fn check_backlog(
        &self,
        request: Request<pb::CheckBacklogRequest>,
    ) -> std::result::Result<Response<pb::CheckBacklogResponse>, Status> {
        ok(self.backlog(request.into_inner()).await?)
    }

    async fn list_topic_clients(
        &self,
        request: Request<pb::ListTopicClientsRequest>,
    ) -> std::result::Result<Response<pb::ListTopicClientsResponse>, Status> {
        ok(self.topic_clients(request.into_inner()).await?)
    }

    async fn get_system_health(
        &self,
        _request: Request<pb::GetSystemHealthRequest>,
    ) -> std::result::Result<Response<pb::GetSystemHealthResponse>, Status> {
        ok(self.system_health().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_code_has_its_api_name() {
        for code in ReasonCode::ALL {
            let name = reason_code_to_pb(code).as_str_name();
            assert_eq!(
                name.trim_start_matches("READINESS_REASON_CODE_"),
                code.as_str()
            );
        }
    }

    #[test]
    fn unmeasured_topics_are_not_ready() {
        let r = not_measured(Stage::DualRead, Direction::Advance);
        assert!(!r.ready);
        assert_eq!(r.to, Some(Stage::DualWrite));
        let r = not_measured(Stage::Done, Direction::Advance);
        assert_eq!(r.reasons[0].code, ReasonCode::NoSuchStage);
        let pb = readiness_to_pb(&r, 1_500);
        assert_eq!(
            pb.to_stage,
            ferry_api::common::v1::Stage::Unspecified as i32
        );
        assert_eq!(pb.checked_at.unwrap().nanos, 500_000_000);
    }
}
