//! Which clients look routes up through Ferry: asked of every router registered in the store
//! (`routers/<id>`, value `{namesrv_addr, grpc_addr, version, started_at}`) over its gRPC
//! `RouterService.GetTopicPresence`.
//!
//! Presence lives in router memory (lookups are far too frequent for etcd), so the answer is
//! the union over routers. A router that does not answer makes the union incomplete; callers
//! treat that as "cannot prove", never as "nobody there".

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use ferry_api::router::v1::GetTopicPresenceRequest;
use ferry_api::router::v1::router_service_client::RouterServiceClient;
use ferry_store::{MigrationStore, RegisteredMember};
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
            grpc_addr: field("grpc_addr"),
            namesrv_addr: field("namesrv_addr"),
            version: field("version"),
        }
    }

    /// `grpc 10.0.0.1:7073, namesrv 10.0.0.1:9876, version 0.1.0`.
    pub fn describe(&self) -> String {
        format!(
            "grpc {}, namesrv {}, version {}",
            or_dash(&self.grpc_addr),
            or_dash(&self.namesrv_addr),
            or_dash(&self.version)
        )
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Client presence as reported by every router that answered.
#[derive(Debug, Clone, Default)]
pub struct Presence {
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

    /// Presence over every registered router; `Err` only when the routers cannot be listed.
    pub async fn presence(&self, store: &dyn MigrationStore) -> ferry_store::Result<Presence> {
        let routers = self.list(store).await?;
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
        let mut client = RouterServiceClient::new(ch);
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

    /// Whether the router's gRPC health says SERVING.
    pub async fn health(&self, router: &RouterInfo) -> Result<(), String> {
        let ch = self.channel(router)?;
        let mut client = HealthClient::new(ch);
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
