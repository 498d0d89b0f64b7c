//! The scan engine: probes and scans a cluster over RocketMQ remoting, without gRPC.
//!
//! What it asks (ROCKETMQ.md §7, as `mqadmin` does):
//! - NameServer: GET_BROKER_CLUSTER_INFO (106) for clusters and brokers,
//!   GET_TOPICS_BY_CLUSTER (224) to cross-check that no broker's topics went unseen.
//! - Each broker group, at its master (else its lowest id): GET_BROKER_RUNTIME_INFO (28, the
//!   version), GET_ALL_TOPIC_CONFIG (21), GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201),
//!   GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305, what mqadmin treats as system topics) and
//!   AUTH_LIST_USER (3005, ACL 2.0 users; 4.x brokers keep ACL 1.0 accounts in a file and
//!   have no call to read them).
//!
//! Brokers are scanned concurrently, at most [`EngineConfig::concurrency`] at a time. A broker
//! that cannot be read does not shorten the inventory silently: it is listed in
//! [`Inventory::missing`] with its address, the request and the error. Only when *nothing*
//! could be read does the scan fail, with the reason (unreachable, authentication, protocol).
//!
//! Every request is signed when credentials are given. The secret key never appears in a
//! log line, error or result: only the access key is ever shown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_core::{TopicClass, classify_topic_in, is_system_group};
use ferry_remoting::body::{
    KVTable, SubscriptionGroupWrapper, TopicConfigSerializeWrapper, TopicList,
};
use ferry_remoting::namesrv::parse_addr_list;
use ferry_remoting::{
    ClientConfig, ClusterInfo, Credentials, NameServerClient, RemotingClient, RemotingCommand,
    RemotingError, RequestCode, ResponseCode,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error::{Result, ScanError};
use crate::inventory::{
    AclUser, BrokerEntry, BrokerGroupConfig, BrokerTopicConfig, ClusterEntry, GroupEntry,
    Inventory, TopicEntry,
};
use ferry_store::now_ms;

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Brokers scanned at once.
    pub concurrency: usize,
    /// Default per-request deadline (mqadmin uses 10 s for the config tables).
    pub request_timeout: Duration,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrency: 8,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Where and how to reach a cluster.
#[derive(Debug, Clone, Default)]
pub struct SourceSpec {
    /// `host:port;host:port`.
    pub namesrv_addrs: String,
    /// Only this cluster (`None` = all the NameServers know).
    pub cluster_name: Option<String>,
    /// ACL admin credentials; `Debug` shows the access key only.
    pub credentials: Option<Credentials>,
}

/// How a probe or request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// TCP connect refused: nothing listens there (or a firewall rejects).
    Refused,
    /// No answer in time (firewall dropping, host down, overloaded peer).
    Timeout,
    /// Other network failures (DNS, unreachable network, connection reset or closed).
    Unreachable,
    /// The peer refused the credentials.
    Auth,
    /// The peer does not speak RocketMQ remoting, or sent an unparsable body.
    Protocol,
    /// The peer answered with another error code.
    Remote,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Timeout => "timeout",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Auth => "auth",
            FailureKind::Protocol => "protocol",
            FailureKind::Remote => "remote",
        }
    }
}

/// Whether an error answer means "your credentials were refused": ACL 2.0 (5.3+) answers
/// NO_PERMISSION (16); ACL 1.0 brokers throw an `AclException` that Java turns into
/// SYSTEM_ERROR (1) with the exception text as remark (ROCKETMQ.md §5.1).
pub fn is_auth_refusal(code: i32, remark: &str) -> bool {
    if code == ResponseCode::NO_PERMISSION {
        return true;
    }
    let r = remark.to_ascii_lowercase();
    code == ResponseCode::SYSTEM_ERROR
        && [
            "aclexception",
            "accesskey",
            "signature",
            "authenticat",
            "no acl config",
            "admin permission",
        ]
        .iter()
        .any(|needle| r.contains(needle))
}

/// The kind of a remoting failure.
pub fn failure_kind(e: &RemotingError) -> FailureKind {
    match e {
        RemotingError::ConnectionRefused { .. } => FailureKind::Refused,
        RemotingError::Timeout { .. } => FailureKind::Timeout,
        RemotingError::Unreachable { .. }
        | RemotingError::Closed { .. }
        | RemotingError::Io { .. }
        | RemotingError::InvalidAddress { .. } => FailureKind::Unreachable,
        RemotingError::Malformed { .. }
        | RemotingError::FrameTooLarge { .. }
        | RemotingError::Unencodable { .. } => FailureKind::Protocol,
        RemotingError::Auth { .. } => FailureKind::Auth,
        RemotingError::Remote { code, remark, .. } if is_auth_refusal(*code, remark) => {
            FailureKind::Auth
        }
        RemotingError::Remote { .. } => FailureKind::Remote,
        RemotingError::AllAddressesFailed { errors } => errors
            .first()
            .map_or(FailureKind::Unreachable, failure_kind),
    }
}

/// How one address answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub address: String,
    /// `namesrv`, `broker`, or `target-namesrv`.
    pub role: String,
    pub ok: bool,
    pub kind: Option<FailureKind>,
    /// Empty when ok; never contains secrets.
    pub error: String,
    pub latency_ms: f64,
}

/// Overall result of a connection check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Ok,
    NamesrvUnreachable,
    AuthFailed,
    ProtocolError,
    Partial,
    ClusterNotFound,
}

/// A name present in both clusters of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collision {
    /// `broker` or `cluster`.
    pub kind: CollisionKind,
    pub name: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollisionKind {
    BrokerName,
    ClusterName,
}

/// The result of [`ScanEngine::check_connection`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectReport {
    pub outcome: Outcome,
    pub message: String,
    pub probes: Vec<Probe>,
    /// Clusters found (only the requested one when a name was given).
    pub clusters: Vec<ClusterEntry>,
    pub collisions: Vec<Collision>,
    pub acl_enabled: bool,
}

/// Progress of a scan, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub brokers_total: usize,
    pub brokers_done: usize,
}

/// Scans clusters. Cheap to clone; holds no connections (each call opens its own, signed
/// with its own credentials, and closes them when done).
#[derive(Debug, Clone, Default)]
pub struct ScanEngine {
    config: EngineConfig,
}

/// `ListUsersRequestHeader.filter`, sent empty ("all users").
const USER_FILTER: &str = "filter";

/// What reading one broker group produced.
struct BrokerScan {
    entry: BrokerEntry,
    topics: Option<BTreeMap<String, ferry_remoting::body::TopicConfig>>,
    groups: Option<BTreeMap<String, ferry_remoting::body::SubscriptionGroupConfig>>,
    system_topics: BTreeSet<String>,
    acl: Result<Vec<AclUserRecord>, String>,
    missing: Vec<String>,
    notes: Vec<String>,
    /// Kinds of the failed topic/group reads.
    failures: Vec<FailureKind>,
}

/// One user as a broker lists it; the password is dropped at parse time.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AclUserRecord {
    username: String,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    user_status: Option<String>,
}

impl ScanEngine {
    pub fn new(config: EngineConfig) -> Self {
        ScanEngine { config }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn client(&self, credentials: Option<Credentials>, timeout: Duration) -> RemotingClient {
        RemotingClient::new(ClientConfig {
            connect_timeout: self.config.connect_timeout.min(timeout),
            request_timeout: timeout,
            credentials,
            ..ClientConfig::default()
        })
    }

    fn timeout(&self, requested: Option<Duration>) -> Duration {
        requested
            .filter(|d| !d.is_zero())
            .unwrap_or(self.config.request_timeout)
    }

    // -------------------------------------------------------------- connection check

    /// Probes every NameServer of `source` and every broker address of its clusters, and
    /// tells apart unreachable, refused credentials and protocol errors. With `target`,
    /// also lists broker and cluster names present in both.
    pub async fn check_connection(
        &self,
        source: &SourceSpec,
        target: Option<&SourceSpec>,
        timeout: Option<Duration>,
    ) -> Result<ConnectReport> {
        let timeout = timeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(3));
        let span = tracing::info_span!("scanner.check_connection", namesrv = %source.namesrv_addrs, cluster = ?source.cluster_name);
        async move {
            let addrs = parse_addr_list(&source.namesrv_addrs)
                .map_err(|e| ScanError::InvalidArgument(e.to_string()))?;
            let client = self.client(source.credentials.clone(), timeout);
            let ns = futures::future::join_all(addrs.iter().map(|addr| {
                probe(&client, addr, "namesrv", RequestCode::GET_BROKER_CLUSTER_INFO, timeout, ClusterInfo::from_body)
            }))
            .await;
            let mut probes: Vec<Probe> = ns.iter().map(|(p, _)| p.clone()).collect();
            let info = ns.into_iter().find_map(|(_, info)| info);
            let Some(info) = info else {
                let kinds: BTreeSet<FailureKind> = probes.iter().filter_map(|p| p.kind).collect();
                let outcome = if kinds.contains(&FailureKind::Auth) {
                    Outcome::AuthFailed
                } else if kinds.contains(&FailureKind::Protocol) {
                    Outcome::ProtocolError
                } else {
                    Outcome::NamesrvUnreachable
                };
                let message = format!(
                    "no name server answered: {}",
                    probes
                        .iter()
                        .map(|p| format!("{} {} ({})", p.address, p.kind.map_or("?", FailureKind::as_str), p.error))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                return Ok(ConnectReport {
                    outcome,
                    message,
                    probes,
                    clusters: Vec::new(),
                    collisions: Vec::new(),
                    acl_enabled: outcome == Outcome::AuthFailed,
                });
            };
            let (clusters, mut problems) = match select_clusters(&info, source.cluster_name.as_deref()) {
                Ok(selected) => selected,
                Err(ScanError::ClusterNotFound { name, found }) => {
                    return Ok(ConnectReport {
                        outcome: Outcome::ClusterNotFound,
                        message: format!("the name servers know no cluster {name}; they know: {found}"),
                        probes,
                        clusters: all_clusters(&info),
                        collisions: Vec::new(),
                        acl_enabled: false,
                    });
                }
                Err(e) => return Err(e),
            };
            // Every broker address, masters and slaves: a half-reachable cluster shows here.
            let targets: Vec<(String, String, bool)> = clusters
                .iter()
                .flat_map(|c| c.brokers.iter())
                .flat_map(|b| {
                    b.addrs
                        .iter()
                        .map(move |(id, addr)| (b.name.clone(), addr.clone(), *id == 0))
                })
                .collect();
            let addrs_to_probe: Vec<String> = targets.iter().map(|(_, a, _)| a.clone()).collect();
            let broker_probes = futures::stream::iter(addrs_to_probe)
            .map(|addr| {
                let client = client.clone();
                async move {
                    probe(&client, &addr, "broker", RequestCode::GET_BROKER_RUNTIME_INFO, timeout, KVTable::from_body).await
                }
            })
            .buffered(self.config.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
            let mut clusters = clusters;
            for ((broker, _, is_master), (p, table)) in targets.iter().zip(&broker_probes) {
                if *is_master
                    && let Some(version) = table.as_ref().and_then(|t| t.table.get("brokerVersionDesc"))
                {
                    for b in clusters.iter_mut().flat_map(|c| c.brokers.iter_mut()) {
                        if &b.name == broker {
                            b.version = Some(version.clone());
                        }
                    }
                }
                probes.push(p.clone());
            }
            let kinds: BTreeSet<FailureKind> = probes.iter().filter_map(|p| p.kind).collect();
            let mut acl_enabled = kinds.contains(&FailureKind::Auth);
            if !acl_enabled && source.credentials.is_some() {
                // Keys worked; find out whether they were needed (an unsigned probe).
                if let Some((_, addr, _)) = targets
                    .iter()
                    .zip(&broker_probes)
                    .find(|(t, (p, _))| t.2 && p.ok)
                    .map(|(t, _)| t)
                {
                    let bare = self.client(None, timeout);
                    let (p, _) = probe(&bare, addr, "broker", RequestCode::GET_BROKER_RUNTIME_INFO, timeout, KVTable::from_body).await;
                    acl_enabled = p.kind == Some(FailureKind::Auth);
                }
            }
            if clusters.iter().all(|c| c.brokers.is_empty()) {
                problems.push("no broker is registered with the name servers".to_string());
            }
            for b in clusters.iter().flat_map(|c| c.brokers.iter()) {
                if b.addrs.is_empty() {
                    problems.push(format!(
                        "broker {} of cluster {} has no live address (all its nodes are down?)",
                        b.name, b.cluster
                    ));
                }
            }
            let failed: Vec<&Probe> = probes.iter().filter(|p| !p.ok).collect();
            let outcome = if kinds.contains(&FailureKind::Auth) {
                Outcome::AuthFailed
            } else if kinds.contains(&FailureKind::Protocol) {
                Outcome::ProtocolError
            } else if !failed.is_empty() || !problems.is_empty() {
                Outcome::Partial
            } else {
                Outcome::Ok
            };
            let mut message = match outcome {
                Outcome::Ok => format!(
                    "connected: {} name server(s), cluster(s) {} with {} broker address(es) answering",
                    addrs.len(),
                    clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                    targets.len()
                ),
                Outcome::AuthFailed => {
                    let what = if source.credentials.is_some() {
                        "the access key / secret key were refused"
                    } else {
                        "ACL is on and no credentials were given"
                    };
                    format!("authentication failed: {what}")
                }
                Outcome::ProtocolError => "a peer does not answer as a RocketMQ NameServer or broker".to_string(),
                _ => "partly reachable".to_string(),
            };
            for p in &failed {
                message.push_str(&format!("; {} {} {}: {}", p.role, p.address, p.kind.map_or("?", FailureKind::as_str), p.error));
            }
            let failed = failed.len();
            for problem in &problems {
                message.push_str(&format!("; {problem}"));
            }
            let collisions = match target {
                Some(t) => {
                    let (c, target_probes) = self.collisions(&clusters, t, timeout).await;
                    probes.extend(target_probes);
                    c
                }
                None => Vec::new(),
            };
            tracing::info!(?outcome, probes = probes.len(), failed, collisions = collisions.len(), "connection checked");
            Ok(ConnectReport {
                outcome,
                message,
                probes,
                clusters,
                collisions,
                acl_enabled,
            })
        }
        .instrument(span)
        .await
    }

    /// Broker and cluster names of `source_clusters` that `target` also has.
    async fn collisions(
        &self,
        source_clusters: &[ClusterEntry],
        target: &SourceSpec,
        timeout: Duration,
    ) -> (Vec<Collision>, Vec<Probe>) {
        let client = self.client(target.credentials.clone(), timeout);
        let ns = match NameServerClient::new(&target.namesrv_addrs, client) {
            Ok(ns) => ns,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![Probe {
                        address: target.namesrv_addrs.clone(),
                        role: "target-namesrv".into(),
                        ok: false,
                        kind: Some(FailureKind::Unreachable),
                        error: e.to_string(),
                        latency_ms: 0.0,
                    }],
                );
            }
        };
        let started = Instant::now();
        let info = ns.cluster_info().await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let info = match info {
            Ok(info) => info,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![Probe {
                        address: target.namesrv_addrs.clone(),
                        role: "target-namesrv".into(),
                        ok: false,
                        kind: Some(failure_kind(&e)),
                        error: e.to_string(),
                        latency_ms,
                    }],
                );
            }
        };
        let target_clusters: Vec<ClusterEntry> =
            match select_clusters(&info, target.cluster_name.as_deref()) {
                Ok((c, _)) => c,
                Err(_) => all_clusters(&info),
            };
        let target_brokers: BTreeSet<&str> = target_clusters
            .iter()
            .flat_map(|c| c.brokers.iter().map(|b| b.name.as_str()))
            .collect();
        let target_names: BTreeSet<&str> =
            target_clusters.iter().map(|c| c.name.as_str()).collect();
        let mut out = Vec::new();
        for b in source_clusters.iter().flat_map(|c| c.brokers.iter()) {
            if target_brokers.contains(b.name.as_str()) {
                out.push(Collision {
                    kind: CollisionKind::BrokerName,
                    name: b.name.clone(),
                    detail: format!(
                        "broker name {} exists in both clusters: clients key addresses, offsets and locks by broker name, so routes cannot be merged; rename the target's broker (brokerName) before migrating",
                        b.name
                    ),
                });
            }
        }
        for c in source_clusters {
            if target_names.contains(c.name.as_str()) {
                out.push(Collision {
                    kind: CollisionKind::ClusterName,
                    name: c.name.clone(),
                    detail: format!(
                        "cluster name {} exists in both: admin tools and dashboards merge cluster tables by name; use a distinct brokerClusterName on the target",
                        c.name
                    ),
                });
            }
        }
        let probe = Probe {
            address: target.namesrv_addrs.clone(),
            role: "target-namesrv".into(),
            ok: true,
            kind: None,
            error: String::new(),
            latency_ms,
        };
        (out, vec![probe])
    }

    // -------------------------------------------------------------- scan

    /// Scans `source` into an inventory. `source_id` defaults to the cluster name (or the
    /// names of all clusters joined by `+`).
    pub async fn scan(
        &self,
        source: &SourceSpec,
        source_id: Option<&str>,
        timeout: Option<Duration>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Inventory> {
        let timeout = self.timeout(timeout);
        let span = tracing::info_span!("scanner.scan", namesrv = %source.namesrv_addrs, cluster = ?source.cluster_name);
        async move {
            let addrs = parse_addr_list(&source.namesrv_addrs)
                .map_err(|e| ScanError::InvalidArgument(e.to_string()))?;
            let client = self.client(source.credentials.clone(), timeout);
            let ns = NameServerClient::new(&source.namesrv_addrs, client.clone())
                .map_err(|e| ScanError::InvalidArgument(e.to_string()))?;
            let info = match ns.cluster_info().await {
                Ok(info) => info,
                Err(e) => {
                    // A peer that is not RocketMQ shows up as "closed"; say what it is.
                    let mut foreign = Vec::new();
                    for addr in &addrs {
                        if let Some(why) = diagnose_closed(addr, timeout.min(Duration::from_secs(3))).await {
                            foreign.push(format!("{addr} does not speak RocketMQ remoting: {why}"));
                        }
                    }
                    return Err(match failure_kind(&e) {
                        FailureKind::Auth => ScanError::Auth(e.to_string()),
                        FailureKind::Protocol | FailureKind::Remote => ScanError::Protocol(e.to_string()),
                        _ if !foreign.is_empty() => ScanError::Protocol(format!("{e}; {}", foreign.join("; "))),
                        _ => ScanError::NamesrvUnreachable(e.to_string()),
                    });
                }
            };
            let (clusters, mut missing) = select_clusters(&info, source.cluster_name.as_deref())?;
            let brokers: Vec<BrokerEntry> = clusters.iter().flat_map(|c| c.brokers.iter().cloned()).collect();
            if brokers.is_empty() {
                return Err(ScanError::NoBrokerReadable(format!(
                    "cluster(s) {} have no broker registered with the name servers",
                    clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            let total = brokers.len();
            let done = Arc::new(AtomicUsize::new(0));
            progress(Progress { brokers_total: total, brokers_done: 0 });
            let mut scans: Vec<BrokerScan> = futures::stream::iter(brokers.into_iter().map(|b| {
                let client = client.clone();
                let done = done.clone();
                async move {
                    let scan = scan_broker(&client, b, timeout).await;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(Progress { brokers_total: total, brokers_done: n });
                    scan
                }
            }))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
            scans.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));

            let readable = scans.iter().filter(|s| s.topics.is_some() || s.groups.is_some()).count();
            if readable == 0 {
                let kinds: Vec<FailureKind> = scans.iter().flat_map(|s| s.failures.iter().copied()).collect();
                let detail = scans
                    .iter()
                    .flat_map(|s| s.missing.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("; ");
                let all = |k: FailureKind| !kinds.is_empty() && kinds.iter().all(|x| *x == k);
                return Err(if all(FailureKind::Auth) {
                    ScanError::Auth(detail)
                } else if all(FailureKind::Protocol) {
                    ScanError::Protocol(detail)
                } else {
                    ScanError::NoBrokerReadable(detail)
                });
            }

            let broker_names: Vec<String> = info.broker_addr_table.keys().cloned().collect();
            let cluster_names: Vec<String> = info.cluster_addr_table.keys().cloned().collect();
            let mut notes = Vec::new();
            let mut topics: BTreeMap<String, TopicEntry> = BTreeMap::new();
            let mut groups: BTreeMap<String, GroupEntry> = BTreeMap::new();
            let mut acl: BTreeMap<String, AclUser> = BTreeMap::new();
            let mut acl_readable = false;
            let mut acl_reasons = Vec::new();
            let mut system_topics = BTreeSet::new();
            let mut scanned_entries = BTreeMap::new();
            for s in scans {
                missing.extend(s.missing);
                notes.extend(s.notes);
                system_topics.extend(s.system_topics);
                let broker = s.entry.name.clone();
                for (name, config) in s.topics.into_iter().flatten() {
                    topics
                        .entry(name.clone())
                        .or_insert_with(|| TopicEntry {
                            class: classify_topic_in(&name, &broker_names, &cluster_names),
                            name,
                            configs: Vec::new(),
                        })
                        .configs
                        .push(BrokerTopicConfig { broker: broker.clone(), config });
                }
                for (name, config) in s.groups.into_iter().flatten() {
                    groups
                        .entry(name.clone())
                        .or_insert_with(|| GroupEntry {
                            system: is_system_group(&name),
                            name,
                            configs: Vec::new(),
                        })
                        .configs
                        .push(BrokerGroupConfig { broker: broker.clone(), config });
                }
                match s.acl {
                    Ok(users) => {
                        acl_readable = true;
                        for u in users {
                            acl.entry(u.username.clone())
                                .or_insert_with(|| AclUser {
                                    username: u.username,
                                    user_type: u.user_type,
                                    user_status: u.user_status,
                                    brokers: Vec::new(),
                                })
                                .brokers
                                .push(broker.clone());
                        }
                    }
                    Err(reason) => acl_reasons.push(format!("{broker}: {reason}")),
                }
                scanned_entries.insert(broker, s.entry);
            }
            // mqadmin treats the broker's own system topic list as system topics too.
            for t in topics.values_mut() {
                if t.class == TopicClass::User && system_topics.contains(&t.name) {
                    t.class = TopicClass::System;
                }
            }
            if !acl_reasons.is_empty() {
                notes.push(format!("ACL users not read from {}", acl_reasons.join("; ")));
            }
            let clusters: Vec<ClusterEntry> = clusters
                .into_iter()
                .map(|mut c| {
                    for b in &mut c.brokers {
                        if let Some(scanned) = scanned_entries.get(&b.name) {
                            *b = scanned.clone();
                        }
                    }
                    c
                })
                .collect();
            // Cross-check: every topic the name servers route for a fully scanned cluster
            // must have come back from one of its brokers.
            for c in &clusters {
                if !c.brokers.iter().all(|b| b.scanned) {
                    continue;
                }
                match ns.topics_by_cluster(&c.name).await {
                    Ok(TopicList { topic_list, .. }) => {
                        let unseen: Vec<&String> = topic_list.iter().filter(|t| !topics.contains_key(*t)).collect();
                        if !unseen.is_empty() {
                            missing.push(format!(
                                "{} topic(s) routed by the name servers for cluster {} were returned by no broker (deleted meanwhile, or on a broker not registered in the cluster table): {}",
                                unseen.len(),
                                c.name,
                                shorten(&unseen, 10)
                            ));
                        }
                    }
                    Err(e) => notes.push(format!(
                        "could not cross-check the topic list of cluster {} with the name servers: {e}",
                        c.name
                    )),
                }
            }
            let taken_at_ms = now_ms();
            let source_id = match source_id.filter(|s| !s.trim().is_empty()) {
                Some(s) => s.trim().to_string(),
                None => match &source.cluster_name {
                    Some(c) => c.clone(),
                    None => clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join("+"),
                },
            };
            let inventory = Inventory {
                source_id,
                namesrv_addrs: addrs.join(";"),
                cluster_filter: source.cluster_name.clone(),
                taken_at_ms,
                clusters,
                topics: topics.into_values().collect(),
                groups: groups.into_values().collect(),
                acl_users: acl_readable.then(|| acl.into_values().collect()),
                missing,
                notes,
            };
            let counts = inventory.counts();
            tracing::info!(
                user_topics = counts.user_topics,
                system_topics = counts.system_topics,
                user_groups = counts.user_groups,
                system_groups = counts.system_groups,
                missing = inventory.missing.len(),
                "scan finished"
            );
            Ok(inventory)
        }
        .instrument(span)
        .await
    }
}

fn shorten(items: &[&String], n: usize) -> String {
    let mut s = items
        .iter()
        .take(n)
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > n {
        s.push_str(&format!(", … ({} more)", items.len() - n));
    }
    s
}

/// Every cluster of `info`, brokers by name.
fn all_clusters(info: &ClusterInfo) -> Vec<ClusterEntry> {
    info.cluster_addr_table
        .iter()
        .map(|(name, brokers)| ClusterEntry {
            name: name.clone(),
            brokers: brokers
                .iter()
                .filter_map(|b| info.broker_addr_table.get(b))
                .map(|bd| BrokerEntry {
                    name: bd.broker_name.clone(),
                    cluster: name.clone(),
                    master_addr: bd.master_addr().map(str::to_string),
                    addrs: bd.broker_addrs.clone(),
                    version: None,
                    scanned_addr: None,
                    scanned: false,
                })
                .collect(),
        })
        .collect()
}

/// The requested cluster (or all), plus problems of the cluster table itself.
fn select_clusters(
    info: &ClusterInfo,
    name: Option<&str>,
) -> Result<(Vec<ClusterEntry>, Vec<String>)> {
    let mut problems = Vec::new();
    let clusters: Vec<ClusterEntry> = match name {
        None => all_clusters(info),
        Some(name) => {
            let found = all_clusters(info);
            match found.iter().position(|c| c.name == name) {
                Some(i) => vec![found[i].clone()],
                None => {
                    return Err(ScanError::ClusterNotFound {
                        name: name.to_string(),
                        found: found
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
    };
    for c in &clusters {
        if let Some(listed) = info.cluster_addr_table.get(&c.name) {
            for b in listed {
                if !info.broker_addr_table.contains_key(b) {
                    problems.push(format!(
                        "broker {b} of cluster {} is listed by the name servers without any address",
                        c.name
                    ));
                }
            }
        }
    }
    Ok((clusters, problems))
}

/// One request with its timing, as a [`Probe`], and the parsed body when it worked.
async fn probe<T>(
    client: &RemotingClient,
    addr: &str,
    role: &str,
    code: RequestCode,
    timeout: Duration,
    parse: fn(&[u8]) -> ferry_remoting::Result<T>,
) -> (Probe, Option<T>) {
    let started = Instant::now();
    let result = call(client, addr, client.new_request(code), timeout, parse).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(v) => (
            Probe {
                address: addr.to_string(),
                role: role.to_string(),
                ok: true,
                kind: None,
                error: String::new(),
                latency_ms,
            },
            Some(v),
        ),
        Err(e) => {
            let (kind, error) = match &e {
                RemotingError::Closed { .. } => match diagnose_closed(addr, timeout).await {
                    Some(why) => (
                        FailureKind::Protocol,
                        format!("{addr} does not speak RocketMQ remoting: {why}"),
                    ),
                    None => (failure_kind(&e), e.to_string()),
                },
                _ => (failure_kind(&e), e.to_string()),
            };
            (
                Probe {
                    address: addr.to_string(),
                    role: role.to_string(),
                    ok: false,
                    kind: Some(kind),
                    error,
                    latency_ms,
                },
                None,
            )
        }
    }
}

/// Why a peer closed the connection, when its first bytes show it is not RocketMQ.
///
/// The remoting client only reports "closed" when a peer answers something that is not a
/// frame (an HTTP or TLS server on that port): the decoder drops the connection. One raw
/// exchange tells that apart from a RocketMQ peer that closed silently (the Rust peers do
/// on a header they reject): `None` then.
async fn diagnose_closed(addr: &str, timeout: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frame = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO)
        .to_frame()
        .ok()?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(&frame).await.ok()?;
        let mut head = [0u8; 8];
        let n = stream.read(&mut head).await.ok()?;
        Some(head[..n].to_vec())
    };
    let head = tokio::time::timeout(timeout, exchange).await.ok()??;
    if head.is_empty() {
        return None;
    }
    if head.starts_with(b"HTTP/") {
        return Some("it answered HTTP".into());
    }
    if head[0] == 0x15 || head[0] == 0x16 {
        return Some("it answered a TLS record (is this a TLS port?)".into());
    }
    if head.len() >= 4 {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if !(4..=16 * 1024 * 1024).contains(&len) {
            let shown: String = head
                .iter()
                .map(|b| {
                    if b.is_ascii_graphic() {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            return Some(format!(
                "its answer starts with {shown:?}, not a remoting frame (length prefix {len})"
            ));
        }
    }
    None
}

/// Sends `request`, requires SUCCESS and parses the body; a bad body is a `Malformed` error
/// naming the address and the request code.
async fn call<T>(
    client: &RemotingClient,
    addr: &str,
    request: RemotingCommand,
    timeout: Duration,
    parse: fn(&[u8]) -> ferry_remoting::Result<T>,
) -> ferry_remoting::Result<T> {
    let code = RequestCode(request.code);
    let resp = client
        .invoke(addr, request, Some(timeout))
        .await?
        .into_success(addr)?;
    parse(&resp.body).map_err(|e| {
        let detail = match e {
            RemotingError::Malformed { reason } => reason,
            other => other.to_string(),
        };
        RemotingError::Malformed {
            reason: format!("{code} answer from {addr}: {detail}"),
        }
    })
}

fn parse_users(body: &[u8]) -> ferry_remoting::Result<Vec<AclUserRecord>> {
    if body.is_empty() {
        // The broker sends no body when there are no users.
        return Ok(Vec::new());
    }
    ferry_remoting::fastjson::from_slice(body)
}

fn parse_topics(body: &[u8]) -> ferry_remoting::Result<TopicConfigSerializeWrapper> {
    if body.is_empty() {
        return Err(RemotingError::Malformed {
            reason: "empty body".into(),
        });
    }
    TopicConfigSerializeWrapper::from_body(body)
}

fn parse_groups(body: &[u8]) -> ferry_remoting::Result<SubscriptionGroupWrapper> {
    if body.is_empty() {
        return Err(RemotingError::Malformed {
            reason: "empty body".into(),
        });
    }
    SubscriptionGroupWrapper::from_body(body)
}

fn parse_topic_list(body: &[u8]) -> ferry_remoting::Result<TopicList> {
    if body.is_empty() {
        return Ok(TopicList::default());
    }
    TopicList::from_body(body)
}

fn parse_kv(body: &[u8]) -> ferry_remoting::Result<KVTable> {
    KVTable::from_body(body)
}

/// Reads one broker group at its master (else its lowest id).
async fn scan_broker(
    client: &RemotingClient,
    mut entry: BrokerEntry,
    timeout: Duration,
) -> BrokerScan {
    let mut scan = BrokerScan {
        topics: None,
        groups: None,
        system_topics: BTreeSet::new(),
        acl: Err("not read".into()),
        missing: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
        entry: entry.clone(),
    };
    let addr = match (&entry.master_addr, entry.addrs.iter().next()) {
        (Some(m), _) => m.clone(),
        (None, Some((id, a))) => {
            scan.notes.push(format!(
                "broker {} has no master registered; read from its node id {id} at {a}",
                entry.name
            ));
            a.clone()
        }
        (None, None) => {
            scan.missing.push(format!(
                "broker {} (cluster {}): no live address, its topics and groups are not in this inventory",
                entry.name, entry.cluster
            ));
            return scan;
        }
    };
    let name = entry.name.clone();
    let span = tracing::debug_span!("scanner.broker", broker = %name, %addr);
    async {
        let (runtime, topics, groups, system, users) = tokio::join!(
            call(client, &addr, client.new_request(RequestCode::GET_BROKER_RUNTIME_INFO), timeout, parse_kv),
            call(client, &addr, client.new_request(RequestCode::GET_ALL_TOPIC_CONFIG), timeout, parse_topics),
            call(client, &addr, client.new_request(RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG), timeout, parse_groups),
            call(client, &addr, client.new_request(RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_BROKER), timeout, parse_topic_list),
            call(
                client,
                &addr,
                client.new_request(RequestCode::AUTH_LIST_USER).with_ext_field(USER_FILTER, ""),
                timeout,
                parse_users
            ),
        );
        let label = format!("broker {} (cluster {}) at {addr}", entry.name, entry.cluster);
        let fail = |what: &str, code: RequestCode, e: RemotingError, scan: &mut BrokerScan| {
            let kind = failure_kind(&e);
            scan.failures.push(kind);
            scan.missing.push(format!(
                "{label}: {what} not read, {code} failed ({}): {e}",
                kind.as_str()
            ));
        };
        match runtime {
            Ok(kv) => entry.version = kv.table.get("brokerVersionDesc").cloned(),
            Err(e) => scan.notes.push(format!(
                "broker {} at {addr}: version unknown, {} failed: {e}",
                entry.name,
                RequestCode::GET_BROKER_RUNTIME_INFO
            )),
        }
        match topics {
            Ok(w) => scan.topics = Some(w.topic_config_table),
            Err(e) => fail("topics", RequestCode::GET_ALL_TOPIC_CONFIG, e, &mut scan),
        }
        match groups {
            Ok(w) => scan.groups = Some(w.subscription_group_table),
            Err(e) => fail("groups", RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG, e, &mut scan),
        }
        match system {
            Ok(list) => scan.system_topics = list.topic_list,
            // Classification then relies on the name rules alone (which cover what brokers
            // create); not an inventory gap.
            Err(e) => tracing::debug!(error = %e, "system topic list not available"),
        }
        scan.acl = match users {
            Ok(users) => Ok(users),
            Err(RemotingError::Remote { code, .. }) if code == ResponseCode::REQUEST_CODE_NOT_SUPPORTED => Err(
                "the broker has no ACL 2.0 user API (4.x and 5.0-5.2 keep ACL 1.0 accounts in plain_acl.yml on each broker)".into(),
            ),
            Err(e) => Err(e.to_string()),
        };
        entry.scanned_addr = Some(addr.clone());
        entry.scanned = scan.topics.is_some() && scan.groups.is_some();
        scan.entry = entry;
        scan
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_refusals_are_recognised() {
        assert!(is_auth_refusal(16, "anything"));
        assert!(is_auth_refusal(
            1,
            "org.apache.rocketmq.acl.common.AclException: Check signature failed for accessKey=ak"
        ));
        assert!(is_auth_refusal(1, "No acl config for ak"));
        assert!(!is_auth_refusal(1, "disable"));
        assert!(!is_auth_refusal(17, "topic not exist"));
    }

    #[test]
    fn failure_kinds() {
        let refused = RemotingError::ConnectionRefused { addr: "a".into() };
        assert_eq!(failure_kind(&refused), FailureKind::Refused);
        let all = RemotingError::AllAddressesFailed {
            errors: vec![RemotingError::Timeout {
                addr: "a".into(),
                ms: 1,
            }],
        };
        assert_eq!(failure_kind(&all), FailureKind::Timeout);
        let remote = RemotingError::Remote {
            addr: "a".into(),
            code: 16,
            remark: "no".into(),
        };
        assert_eq!(failure_kind(&remote), FailureKind::Auth);
        let bad = RemotingError::FrameTooLarge { len: 1, max: 0 };
        assert_eq!(failure_kind(&bad), FailureKind::Protocol);
    }
}
