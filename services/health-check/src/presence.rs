//! Which clients look routes up through Ferry: asked of every router of the task registered
//! in the store (`routers/<id>`, value `{task_id, namesrv_addr, grpc_addr, version,
//! started_at}`) over its gRPC `RouterService.GetTopicPresence`. A router serving another
//! task answers that task's stages, so its clients do not count for this one; a
//! registration without `task_id` (older routers) counts for every task.
//!
//! Presence lives in router memory (lookups are far too frequent for etcd), so the answer is
//! the union over routers. A router that does not answer makes the union incomplete; callers
//! treat that as "cannot prove", never as "nobody there".
//!
//! Calls to routers carry the caller's W3C trace context
//! ([`ferry_telemetry::propagation::traced`]), so a readiness check and the router calls it
//! makes form one trace.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use ferry_api::router::v1::GetTopicPresenceRequest;
use ferry_api::router::v1::router_service_client::RouterServiceClient;
use ferry_store::{MigrationStore, RegisteredMember};
use ferry_telemetry::propagation::traced;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cluster::host_of;

/// Member kind under which routers register.
pub const ROUTER_KIND: &str = "routers";

/// A registered router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterInfo {
    pub id: String,
    /// The task it serves; empty when the registration does not say.
    pub task_id: String,
    pub grpc_addr: String,
    pub namesrv_addr: String,
    pub version: String,
}

impl RouterInfo {
    fn from_member(m: &RegisteredMember) -> Self {
        let field = |k: &str| {
            m.value
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        RouterInfo {
            id: m.id.clone(),
            task_id: field("task_id"),
            grpc_addr: field("grpc_addr"),
            namesrv_addr: field("namesrv_addr"),
            version: field("version"),
        }
    }

    /// `grpc 10.0.0.1:7073, namesrv 10.0.0.1:9876, version 0.1.0`.
    pub fn describe(&self) -> String {
        format!(
            "task {}, grpc {}, namesrv {}, version {}",
            or_dash(&self.task_id),
            or_dash(&self.grpc_addr),
            or_dash(&self.namesrv_addr),
            or_dash(&self.version)
        )
    }

    /// Whether this router serves `task_id` (a registration without a task counts).
    pub fn serves(&self, task_id: &str) -> bool {
        self.task_id.is_empty() || self.task_id == task_id
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Client presence as reported by every router of the task that answered.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    /// The task's registered routers.
    pub routers: Vec<RouterInfo>,
    /// Routers whose answer is included.
    pub answered: usize,
    /// Topic -> client hosts (IP) that looked it up.
    pub by_topic: HashMap<String, HashSet<String>>,
    /// Client hosts that looked up any topic.
    pub any_topic: HashSet<String>,
    /// Routers that did not answer, each with why.
    pub failures: Vec<String>,
}

impl Presence {
    /// True when `host` looked `topic` up at some router.
    pub fn saw_for_topic(&self, topic: &str, host: &str) -> bool {
        self.by_topic.get(topic).is_some_and(|h| h.contains(host))
    }

    /// True when `host` looked any topic up at some router.
    pub fn saw_anywhere(&self, host: &str) -> bool {
        self.any_topic.contains(host)
    }
}

/// Clients as every router of a task remembers them.
#[derive(Debug, Clone, Default)]
pub struct RoutedClients {
    /// Routers of the task registered in the store.
    pub registered: usize,
    /// Routers whose answer is included.
    pub answered: usize,
    /// (router id, client) pairs.
    pub clients: Vec<(String, ferry_api::router::v1::ClientPresence)>,
    /// Why each router that did not answer did not.
    pub failures: Vec<String>,
}

/// gRPC channels to routers, one per address, reused across checks.
pub struct Routers {
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Routers {
    pub fn new(timeout: Duration) -> Self {
        Routers {
            timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The registered routers.
    pub async fn list(&self, store: &dyn MigrationStore) -> ferry_store::Result<Vec<RouterInfo>> {
        let members = store.list_members(ROUTER_KIND).await?;
        Ok(members.iter().map(RouterInfo::from_member).collect())
    }

    fn channel(&self, router: &RouterInfo) -> Result<Channel, String> {
        let addr = router.grpc_addr.trim();
        let host = host_of(addr);
        if addr.is_empty() || host.is_empty() || host == "0.0.0.0" || host == "::" {
            return Err(format!(
                "router {} registered no reachable gRPC address ({:?})",
                router.id, router.grpc_addr
            ));
        }
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let ch = Endpoint::from_shared(uri)
            .map_err(|e| format!("router {} gRPC address {addr:?}: {e}", router.id))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .connect_lazy();
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    fn forget(&self, router: &RouterInfo) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.remove(router.grpc_addr.trim());
    }

    /// Presence over every registered router of `task_id`; `Err` only when the routers
    /// cannot be listed.
    pub async fn presence(
        &self,
        store: &dyn MigrationStore,
        task_id: &str,
    ) -> ferry_store::Result<Presence> {
        let mut routers = self.list(store).await?;
        routers.retain(|r| r.serves(task_id));
        let answers = futures::future::join_all(routers.iter().map(|r| self.ask(r))).await;
        let mut presence = Presence {
            routers: routers.clone(),
            ..Presence::default()
        };
        for (router, answer) in routers.iter().zip(answers) {
            match answer {
                Ok(topics) => {
                    presence.answered += 1;
                    for t in topics {
                        let hosts: HashSet<String> = t
                            .client_addrs
                            .iter()
                            .map(|a| host_of(a).to_string())
                            .collect();
                        presence.any_topic.extend(hosts.iter().cloned());
                        presence.by_topic.entry(t.topic).or_default().extend(hosts);
                    }
                }
                Err(why) => {
                    tracing::warn!(router = %router.id, error = %why, "router presence unavailable");
                    presence.failures.push(why);
                }
            }
        }
        Ok(presence)
    }

    async fn ask(
        &self,
        router: &RouterInfo,
    ) -> Result<Vec<ferry_api::router::v1::TopicPresence>, String> {
        let ch = self.channel(router)?;
        let mut client = RouterServiceClient::new(traced(ch));
        let call = client.get_topic_presence(GetTopicPresenceRequest { topics: Vec::new() });
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner().topics),
            Ok(Err(status)) => {
                self.forget(router);
                Err(format!(
                    "router {} at {} answered {:?}: {}",
                    router.id,
                    router.grpc_addr,
                    status.code(),
                    status.message()
                ))
            }
            Err(_) => {
                self.forget(router);
                Err(format!(
                    "router {} at {} did not answer within {:?}",
                    router.id, router.grpc_addr, self.timeout
                ))
            }
        }
    }

    /// Every client each router of `task_id` remembers (optionally for one topic), tagged
    /// with the router's id; the routers that answered; why the others did not.
    pub async fn clients(
        &self,
        store: &dyn MigrationStore,
        task_id: &str,
        topic: &str,
    ) -> ferry_store::Result<RoutedClients> {
        let mut routers = self.list(store).await?;
        routers.retain(|r| r.serves(task_id));
        let answers =
            futures::future::join_all(routers.iter().map(|r| self.ask_clients(r, topic))).await;
        let mut out = RoutedClients {
            registered: routers.len(),
            ..RoutedClients::default()
        };
        for (router, answer) in routers.iter().zip(answers) {
            match answer {
                Ok(clients) => {
                    out.answered += 1;
                    out.clients
                        .extend(clients.into_iter().map(|c| (router.id.clone(), c)));
                }
                Err(why) => out.failures.push(why),
            }
        }
        Ok(out)
    }

    /// One router's remembered clients, every page (bounded).
    async fn ask_clients(
        &self,
        router: &RouterInfo,
        topic: &str,
    ) -> Result<Vec<ferry_api::router::v1::ClientPresence>, String> {
        /// Pages followed per router; 1000 clients each.
        const MAX_PAGES: usize = 100;
        let ch = self.channel(router)?;
        let mut client = RouterServiceClient::new(traced(ch));
        let mut out = Vec::new();
        let mut page_token = String::new();
        for _ in 0..MAX_PAGES {
            let call =
                client.list_client_presence(ferry_api::router::v1::ListClientPresenceRequest {
                    topic: topic.to_string(),
                    seen_within_seconds: 0,
                    page_size: 1000,
                    page_token: page_token.clone(),
                });
            let page = match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(resp)) => resp.into_inner(),
                Ok(Err(status)) => {
                    self.forget(router);
                    return Err(format!(
                        "router {} at {} answered {:?}: {}",
                        router.id,
                        router.grpc_addr,
                        status.code(),
                        status.message()
                    ));
                }
                Err(_) => {
                    self.forget(router);
                    return Err(format!(
                        "router {} at {} did not answer within {:?}",
                        router.id, router.grpc_addr, self.timeout
                    ));
                }
            };
            out.extend(page.clients);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
        Ok(out)
    }

    /// Whether the router's gRPC health says SERVING.
    pub async fn health(&self, router: &RouterInfo) -> Result<(), String> {
        let ch = self.channel(router)?;
        let mut client = HealthClient::new(traced(ch));
        let call = client.check(HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(resp)) => match ServingStatus::try_from(resp.into_inner().status) {
                Ok(ServingStatus::Serving) => Ok(()),
                Ok(other) => Err(format!("health {}", other.as_str_name())),
                Err(_) => Err("unknown health status".into()),
            },
            Ok(Err(status)) => {
                self.forget(router);
                Err(format!("{:?}: {}", status.code(), status.message()))
            }
            Err(_) => {
                self.forget(router);
                Err(format!("no answer within {:?}", self.timeout))
            }
        }
    }
}
