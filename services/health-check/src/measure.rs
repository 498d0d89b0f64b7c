//! Measuring one task's topics on both clusters: the facts the readiness rules need and the
//! figures the monitor shows.
//!
//! Per topic and cluster (ROCKETMQ.md §7, the `mqadmin` recipes):
//! - route (`GET_ROUTEINFO_BY_TOPIC`): which brokers hold the topic; absent = no queues;
//! - groups of the topic: `QUERY_TOPIC_CONSUME_BY_WHO` on each broker (online subscriptions
//!   and committed offsets), on both clusters; system groups are left out;
//! - backlog per group: `GET_CONSUME_STATS` for the topic, Σ max(brokerOffset −
//!   consumerOffset, 0), plus the same for the group's `%RETRY%` topic on that cluster (retry
//!   messages are stranded like any other; on the source kept apart as
//!   `RETRY_OR_DLQ_BACKLOG`). Offsets are the *committed* ones, so a message consumed but not
//!   committed still counts: backlog errs high, never low;
//! - dead letters per group on the source: messages stored in `%DLQ%<group>` (Σ max − min
//!   offset, `GET_TOPIC_STATS_INFO`). Nobody consumes a DLQ as a group, so committed offsets
//!   say nothing there; what is stored goes away with the source;
//! - per source broker of the task's cluster, for all topics at once (brokers keep them in one
//!   system queue): scheduled messages not delivered yet, Σ over `SCHEDULE_TOPIC_XXXX` queues
//!   of max offset − max(delivered offset of level queue+1 from `GET_ALL_DELAY_OFFSET` (45),
//!   min offset); transactional half messages not resolved yet, the backlog of system group
//!   `CID_RMQ_SYS_TRANS` on `RMQ_SYS_TRANS_HALF_TOPIC` (0 when the broker has no half topic;
//!   the check service advances that offset on its own schedule, so it errs high);
//! - consumers: `GET_CONSUMER_CONNECTION_LIST` per group, kept when the group subscribes the
//!   topic; producers: `GET_ALL_PRODUCER_INFO` (RocketMQ 5.x; a 4.x broker cannot list
//!   producers, which is reported as unproven, never as "none");
//! - writes: Σ max offset of the topic's source queues (`GET_TOPIC_STATS_INFO`).
//!
//! **Client switch is judged by IP, coarsely.** A broker sees a client's TCP address; a router
//! sees the address the client looked routes up from. A consumer of the topic counts as
//! switched when its IP looked that topic up at some router; a producer (brokers do not say
//! which topics a producer writes) when its IP looked any topic up at some router, since a
//! client's NameServer address is set per client instance. Two client processes on one host
//! are indistinguishable: one switched instance hides an unswitched neighbour, and NAT
//! between clients and brokers or routers defeats the comparison. The write watch
//! (SWITCHING → DONE) catches a hidden producer that still writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use ferry_core::perm::{Side, is_readable, is_writeable, route_perms};
use ferry_core::readiness::{BrokerPending, ClientSwitch, Fact, GroupBacklog, RetryBacklog};
use ferry_core::{Stage, is_system_group};
use ferry_remoting::{ClusterInfo, ConsumeStats, ConsumerConnection, TopicRouteData};
use ferry_store::MigrationTask;

use crate::cluster::{Clusters, Memo, ProducerTable, host_of};
use crate::presence::Presence;

/// System topic of scheduled (delayed) messages; queue id = delay level − 1.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// System topic of transactional half messages.
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// System group whose offset on [`TRANS_HALF_TOPIC`] marks the half messages checked.
pub const TRANS_CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";

/// Which cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }

    fn side(self) -> Side {
        match self {
            Role::Source => Side::Source,
            Role::Target => Side::Target,
        }
    }
}

/// Producer or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientRole {
    Producer,
    Consumer,
}

impl ClientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Producer => "producer",
            ClientRole::Consumer => "consumer",
        }
    }
}

/// One client connection as a broker reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientRef {
    pub role: ClientRole,
    pub group: String,
    pub client_id: String,
    pub client_addr: String,
}

impl ClientRef {
    fn describe(&self) -> String {
        format!(
            "{} {} {} ({})",
            self.role.as_str(),
            self.group,
            self.client_addr,
            self.client_id
        )
    }
}

/// Figures of one topic on one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFigures {
    pub put_tps: f64,
    pub consume_tps: f64,
    /// Σ of the known group backlogs (topic and retry topics).
    pub backlog: i64,
    /// Queues writable / readable in the merged route at the topic's stage.
    pub writable_queues: i32,
    pub readable_queues: i32,
}

/// One group of the topic compared across clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub group: String,
    /// Distinct consumer clients of the topic online on each cluster (`None` = unknown).
    pub source_clients: Option<usize>,
    pub target_clients: Option<usize>,
    pub exists_on_target: Option<bool>,
    /// Every source consumer of the group looked the topic up at a router.
    pub switched: bool,
}

/// What measuring one topic found.
#[derive(Debug, Clone)]
pub struct TopicMeasurement {
    pub source_figures: ClusterFigures,
    pub target_figures: ClusterFigures,
    pub groups: Vec<GroupView>,
    /// Source clients no router has seen (see the module docs for how).
    pub unswitched: Vec<ClientRef>,
    pub target_topic_exists: Fact<bool>,
    pub target_groups_missing: Fact<Vec<String>>,
    pub clients: Fact<ClientSwitch>,
    pub groups_not_on_target: Fact<Vec<String>>,
    /// The topic alone on the source (retry and DLQ are `retry_backlog`).
    pub source_backlog: Fact<Vec<GroupBacklog>>,
    /// The groups' `%RETRY%` / `%DLQ%` topics on the source, entries with messages or unknown.
    pub retry_backlog: Fact<Vec<RetryBacklog>>,
    /// The topic and the groups' retry topics on the target.
    pub target_backlog: Fact<Vec<GroupBacklog>>,
    /// Σ max offset over the source queues.
    pub source_max_offset_total: Fact<i64>,
}

/// `what: error`, the text of an unknown fact.
fn fail(what: impl Display, e: impl Display) -> String {
    format!("{what}: {e}")
}

/// A broker of a route: its name and the address to read from.
#[derive(Debug, Clone)]
struct Broker {
    name: String,
    addr: Result<String, String>,
}

impl Broker {
    fn label(&self) -> String {
        match &self.addr {
            Ok(a) => format!("{} ({a})", self.name),
            Err(_) => self.name.clone(),
        }
    }
}

fn brokers_of(route: &TopicRouteData) -> Vec<Broker> {
    route
        .broker_datas
        .iter()
        .map(|bd| Broker {
            name: bd.broker_name.clone(),
            addr: bd
                .select_addr()
                .map(str::to_string)
                .ok_or_else(|| format!("broker {} has no address in the route", bd.broker_name)),
        })
        .collect()
}

/// One cluster of the task as this measurement sees it.
struct ClusterCtx {
    role: Role,
    cluster: String,
    namesrv: Result<ferry_remoting::NameServerClient, String>,
    info: Result<ClusterInfo, String>,
}

impl ClusterCtx {
    async fn new(clusters: &Clusters, role: Role, cluster: &str, namesrv: &str) -> Self {
        let client = clusters
            .namesrv(namesrv)
            .map_err(|e| fail(format!("{} NameServers {namesrv:?}", role.as_str()), e));
        let info = match &client {
            Ok(ns) => ns.cluster_info().await.map_err(|e| {
                fail(
                    format!("{} cluster {cluster} at {namesrv}", role.as_str()),
                    e,
                )
            }),
            Err(e) => Err(e.clone()),
        };
        ClusterCtx {
            role,
            cluster: cluster.to_string(),
            namesrv: client,
            info,
        }
    }

    /// Master (else lowest-id) brokers of the task's cluster.
    fn cluster_brokers(&self) -> Result<Vec<Broker>, String> {
        let info = self.info.as_ref().map_err(Clone::clone)?;
        let names = info.cluster_addr_table.get(&self.cluster).ok_or_else(|| {
            format!(
                "{} cluster {} is not known to its NameServers (clusters: {})",
                self.role.as_str(),
                self.cluster,
                info.cluster_addr_table
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        Ok(names
            .iter()
            .map(|name| Broker {
                name: name.clone(),
                addr: info
                    .broker_addr_table
                    .get(name)
                    .and_then(|bd| bd.select_addr())
                    .map(str::to_string)
                    .ok_or_else(|| format!("broker {name} has no address")),
            })
            .collect())
    }

    async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>, String> {
        let ns = self.namesrv.as_ref().map_err(Clone::clone)?;
        ns.topic_route(topic)
            .await
            .map_err(|e| fail(format!("{} route of {topic}", self.role.as_str()), e))
    }
}

/// Broker names present in both clusters' NameServers with different brokers behind them
/// (the same broker reached through one shared NameServer is not a collision).
fn collisions(source: &ClusterInfo, target: &ClusterInfo) -> Vec<String> {
    source
        .broker_addr_table
        .iter()
        .filter_map(|(name, bd)| {
            let other = target.broker_addr_table.get(name)?;
            (other.cluster != bd.cluster || other.broker_addrs != bd.broker_addrs)
                .then(|| name.clone())
        })
        .collect()
}

/// Queues writable and readable in the merged route at `stage` (grace assumed on in DONE:
/// the source stays listed with perm 0, so it counts for neither).
fn queue_counts(route: Option<&TopicRouteData>, role: Role, stage: Stage) -> (i32, i32) {
    let Some(route) = route else { return (0, 0) };
    let perms = route_perms(stage, true);
    route.queue_datas.iter().fold((0, 0), |(w, r), q| {
        match perms.apply(role.side(), q.perm.clamp(0, 7) as u8) {
            Some(p) => (
                w + if is_writeable(p) {
                    q.write_queue_nums
                } else {
                    0
                },
                r + if is_readable(p) { q.read_queue_nums } else { 0 },
            ),
            None => (w, r),
        }
    })
}

/// Scheduled messages not delivered yet on one broker from its `SCHEDULE_TOPIC_XXXX` queue
/// offsets and its delivered offsets by level (level = queue id + 1; a level missing from
/// the table delivered nothing; messages below the queue's min offset are gone). Returns
/// the total and `delay level L: n` for each level with some.
fn delay_pending(
    queues: &[(ferry_remoting::MessageQueue, ferry_remoting::TopicOffset)],
    delivered: &BTreeMap<i32, i64>,
) -> (i64, String) {
    let mut by_level: BTreeMap<i32, i64> = BTreeMap::new();
    for (mq, o) in queues {
        let level = mq.queue_id + 1;
        let done = delivered
            .get(&level)
            .copied()
            .unwrap_or(0)
            .max(o.min_offset)
            .max(0);
        let n = (o.max_offset - done).max(0);
        if n > 0 {
            let e = by_level.entry(level).or_default();
            *e = e.saturating_add(n);
        }
    }
    let total = by_level.values().fold(0i64, |t, n| t.saturating_add(*n));
    let detail = by_level
        .iter()
        .map(|(l, n)| format!("delay level {l}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    (total, detail)
}

fn backlog_of(stats: &ConsumeStats) -> i64 {
    stats
        .offset_table
        .iter()
        .map(|(_, o)| (o.broker_offset - o.consumer_offset).max(0))
        .fold(0i64, i64::saturating_add)
}

fn side_index(role: Role) -> usize {
    match role {
        Role::Source => 0,
        Role::Target => 1,
    }
}

/// What one measurement of a task shares between its topics.
pub struct TaskContext<'a> {
    clusters: &'a Clusters,
    source: ClusterCtx,
    target: ClusterCtx,
    pub collisions: Fact<Vec<String>>,
    pub presence: Fact<Presence>,
    connections: Memo<(String, String), Result<Option<ConsumerConnection>, String>>,
    sub_groups: Memo<String, Result<BTreeSet<String>, String>>,
    producers: Memo<String, Result<Option<ProducerTable>, String>>,
    retry: Memo<(Role, String), Result<(i64, f64), String>>,
    dlq: Memo<String, Result<i64, String>>,
    /// Per side (source, target).
    pending_delay: [tokio::sync::OnceCell<Fact<Vec<BrokerPending>>>; 2],
    pending_transactions: [tokio::sync::OnceCell<Fact<Vec<BrokerPending>>>; 2],
}

/// Per-side results for one topic.
struct SideTopic {
    route: Result<Option<TopicRouteData>, String>,
    brokers: Vec<Broker>,
}

impl SideTopic {
    fn route_ref(&self) -> Option<&TopicRouteData> {
        self.route.as_ref().ok().and_then(Option::as_ref)
    }
}

impl<'a> TaskContext<'a> {
    /// Reads both clusters' inventories once for the whole task.
    pub async fn new(
        clusters: &'a Clusters,
        task: &MigrationTask,
        presence: Fact<Presence>,
    ) -> TaskContext<'a> {
        let (source, target) = tokio::join!(
            ClusterCtx::new(
                clusters,
                Role::Source,
                &task.source_cluster,
                &task.source_namesrv
            ),
            ClusterCtx::new(
                clusters,
                Role::Target,
                &task.target_cluster,
                &task.target_namesrv
            ),
        );
        let collisions = match (&source.info, &target.info) {
            (Ok(s), Ok(t)) => Fact::Known(collisions(s, t)),
            (Err(e), _) | (_, Err(e)) => Fact::Unknown(e.clone()),
        };
        TaskContext {
            clusters,
            source,
            target,
            collisions,
            presence,
            connections: Memo::default(),
            sub_groups: Memo::default(),
            producers: Memo::default(),
            retry: Memo::default(),
            dlq: Memo::default(),
            pending_delay: Default::default(),
            pending_transactions: Default::default(),
        }
    }

    fn side(&self, role: Role) -> &ClusterCtx {
        match role {
            Role::Source => &self.source,
            Role::Target => &self.target,
        }
    }

    async fn side_topic(&self, role: Role, topic: &str) -> SideTopic {
        let route = self.side(role).route(topic).await;
        let brokers = route
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map(brokers_of)
            .unwrap_or_default();
        SideTopic { route, brokers }
    }

    /// Groups of `topic` on one cluster.
    async fn groups_on(&self, side: &SideTopic, topic: &str) -> Result<BTreeSet<String>, String> {
        side.route.as_ref().map_err(Clone::clone)?;
        let mut out = BTreeSet::new();
        for b in &side.brokers {
            let addr = b.addr.as_ref().map_err(Clone::clone)?;
            let groups = self
                .clusters
                .topic_groups(addr, topic)
                .await
                .map_err(|e| fail(format!("groups of {topic} on {}", b.label()), e))?;
            out.extend(groups.into_iter().filter(|g| !is_system_group(g)));
        }
        Ok(out)
    }

    /// Backlog and consume TPS of `group` on `topic` over the given brokers.
    async fn backlog_on(
        &self,
        brokers: &[Broker],
        group: &str,
        topic: &str,
    ) -> Result<(i64, f64), String> {
        let mut backlog = 0i64;
        let mut tps = 0.0;
        for b in brokers {
            let addr = b.addr.as_ref().map_err(Clone::clone)?;
            let stats = self
                .clusters
                .admin()
                .consume_stats(addr, group, Some(topic))
                .await
                .map_err(|e| fail(format!("consume stats of {group} on {}", b.label()), e))?;
            backlog = backlog.saturating_add(backlog_of(&stats));
            if stats.consume_tps.is_finite() {
                tps += stats.consume_tps;
            }
        }
        Ok((backlog, tps))
    }

    /// Backlog of the group's `%RETRY%` topic on one cluster (memoised: shared by topics).
    async fn retry_backlog(&self, role: Role, group: &str) -> Result<i64, String> {
        let key = (role, group.to_string());
        self.retry
            .get_or(key, || async {
                let retry = format!("%RETRY%{group}");
                let route = self.side(role).route(&retry).await?;
                match route {
                    Some(r) => self.backlog_on(&brokers_of(&r), group, &retry).await,
                    None => Ok((0, 0.0)),
                }
            })
            .await
            .map(|(b, _)| b)
    }

    /// Messages stored in the group's `%DLQ%` topic on the source (memoised).
    async fn dlq_stored(&self, group: &str) -> Result<i64, String> {
        self.dlq
            .get_or(group.to_string(), || async {
                let dlq = format!("%DLQ%{group}");
                let Some(route) = self.source.route(&dlq).await? else {
                    return Ok(0);
                };
                let mut stored = 0i64;
                for b in brokers_of(&route) {
                    let addr = b.addr.as_ref().map_err(Clone::clone)?;
                    let stats = self
                        .clusters
                        .admin()
                        .topic_stats(addr, &dlq)
                        .await
                        .map_err(|e| fail(format!("offsets of {dlq} on {}", b.label()), e))?;
                    if let Some(stats) = stats {
                        stored = stats.offset_table.iter().fold(stored, |n, (_, o)| {
                            n.saturating_add((o.max_offset - o.min_offset.max(0)).max(0))
                        });
                    }
                }
                Ok(stored)
            })
            .await
    }

    /// Scheduled messages not delivered yet, per broker of `role`'s cluster (all topics;
    /// computed once per measurement).
    pub async fn pending_delay(&self, role: Role) -> Fact<Vec<BrokerPending>> {
        self.pending_delay[side_index(role)]
            .get_or_init(|| async {
                let brokers = match self.side(role).cluster_brokers() {
                    Ok(b) => b,
                    Err(e) => return Fact::Unknown(e),
                };
                let mut out = Vec::new();
                for b in &brokers {
                    let (messages, detail) = match self.delay_on(b).await {
                        Ok((n, detail)) => (Fact::Known(n), detail),
                        Err(e) => (Fact::Unknown(e), String::new()),
                    };
                    out.push(BrokerPending {
                        broker: b.label(),
                        messages,
                        detail,
                    });
                }
                Fact::Known(out)
            })
            .await
            .clone()
    }

    async fn delay_on(&self, b: &Broker) -> Result<(i64, String), String> {
        let addr = b.addr.as_ref().map_err(Clone::clone)?;
        let admin = self.clusters.admin();
        let stats = admin
            .topic_stats(addr, SCHEDULE_TOPIC)
            .await
            .map_err(|e| fail(format!("offsets of {SCHEDULE_TOPIC} on {}", b.label()), e))?;
        // No schedule topic: the broker cannot hold scheduled messages.
        let Some(stats) = stats else {
            return Ok((0, String::new()));
        };
        let delivered = admin
            .delay_offsets(addr)
            .await
            .map_err(|e| {
                fail(
                    format!(
                        "delivered scheduled offsets (GET_ALL_DELAY_OFFSET) on {}",
                        b.label()
                    ),
                    e,
                )
            })?
            .offset_table;
        Ok(delay_pending(&stats.offset_table, &delivered))
    }

    /// Transactional half messages not resolved yet, per broker of `role`'s cluster (all
    /// topics; computed once per measurement).
    pub async fn pending_transactions(&self, role: Role) -> Fact<Vec<BrokerPending>> {
        self.pending_transactions[side_index(role)]
            .get_or_init(|| async {
                let brokers = match self.side(role).cluster_brokers() {
                    Ok(b) => b,
                    Err(e) => return Fact::Unknown(e),
                };
                let mut out = Vec::new();
                for b in &brokers {
                    let messages = match &b.addr {
                        Err(e) => Fact::Unknown(e.clone()),
                        Ok(addr) => self
                            .clusters
                            .admin()
                            .consume_stats(addr, TRANS_CHECK_GROUP, Some(TRANS_HALF_TOPIC))
                            .await
                            .map(|stats| backlog_of(&stats))
                            .map_err(|e| {
                                fail(
                                    format!(
                                        "backlog of {TRANS_CHECK_GROUP} on {TRANS_HALF_TOPIC} on {}",
                                        b.label()
                                    ),
                                    e,
                                )
                            })
                            .into(),
                    };
                    out.push(BrokerPending {
                        broker: b.label(),
                        messages,
                        detail: String::new(),
                    });
                }
                Fact::Known(out)
            })
            .await
            .clone()
    }

    async fn connection(
        &self,
        broker: &Broker,
        group: &str,
    ) -> Result<Option<ConsumerConnection>, String> {
        let addr = broker.addr.clone()?;
        self.connections
            .get_or((addr.clone(), group.to_string()), || async {
                self.clusters
                    .admin()
                    .consumer_connections(&addr, group)
                    .await
                    .map_err(|e| fail(format!("consumers of {group} on {}", broker.label()), e))
            })
            .await
    }

    /// Distinct consumers of `group` subscribed to `topic` on the given brokers.
    async fn consumers_on(
        &self,
        brokers: &[Broker],
        group: &str,
        topic: &str,
    ) -> Result<Vec<ClientRef>, String> {
        let mut out: BTreeMap<String, ClientRef> = BTreeMap::new();
        for b in brokers {
            let Some(conn) = self.connection(b, group).await? else {
                continue;
            };
            if !conn.subscription_table.contains_key(topic) {
                continue;
            }
            for c in conn.connection_set {
                out.entry(c.client_id.clone()).or_insert(ClientRef {
                    role: ClientRole::Consumer,
                    group: group.to_string(),
                    client_id: c.client_id,
                    client_addr: c.client_addr,
                });
            }
        }
        Ok(out.into_values().collect())
    }

    async fn subscription_groups(&self, broker: &Broker) -> Result<BTreeSet<String>, String> {
        let addr = broker.addr.clone()?;
        self.sub_groups
            .get_or(addr.clone(), || async {
                self.clusters
                    .admin()
                    .all_subscription_groups(&addr)
                    .await
                    .map(|w| w.subscription_group_table.into_keys().collect())
                    .map_err(|e| fail(format!("groups on {}", broker.label()), e))
            })
            .await
    }

    /// Producers on the source brokers (all topics: brokers do not say which topics a
    /// producer writes); `Err` lists brokers that cannot list them.
    async fn producers_on(
        &self,
        brokers: &[Broker],
    ) -> Result<(Vec<ClientRef>, Vec<String>), String> {
        let mut clients: BTreeMap<String, ClientRef> = BTreeMap::new();
        let mut unlistable = Vec::new();
        for b in brokers {
            let addr = b.addr.clone()?;
            let table = self
                .producers
                .get_or(addr.clone(), || async {
                    self.clusters
                        .producers(&addr)
                        .await
                        .map_err(|e| fail(format!("producers on {}", b.label()), e))
                })
                .await?;
            let Some(table) = table else {
                unlistable.push(format!(
                    "producers on {} cannot be listed (GET_ALL_PRODUCER_INFO is not supported, RocketMQ 4.x): check by hand that they use the routers",
                    b.label()
                ));
                continue;
            };
            for (group, producers) in table {
                if is_system_group(&group) {
                    continue;
                }
                for p in producers {
                    clients.entry(p.client_id.clone()).or_insert(ClientRef {
                        role: ClientRole::Producer,
                        group: group.clone(),
                        client_id: p.client_id,
                        client_addr: p.remote_ip,
                    });
                }
            }
        }
        Ok((clients.into_values().collect(), unlistable))
    }

    async fn topic_max_offsets(&self, side: &SideTopic, topic: &str) -> (Fact<i64>, f64) {
        if let Err(e) = &side.route {
            return (Fact::Unknown(e.clone()), 0.0);
        }
        let mut total = 0i64;
        let mut tps = 0.0;
        for b in &side.brokers {
            let addr = match &b.addr {
                Ok(a) => a,
                Err(e) => return (Fact::Unknown(e.clone()), tps),
            };
            match self.clusters.admin().topic_stats(addr, topic).await {
                Ok(Some(stats)) => {
                    total = stats
                        .offset_table
                        .iter()
                        .fold(total, |t, (_, o)| t.saturating_add(o.max_offset.max(0)));
                    if stats.topic_put_tps.is_finite() {
                        tps += stats.topic_put_tps;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    return (
                        Fact::Unknown(fail(format!("offsets of {topic} on {}", b.label()), e)),
                        tps,
                    );
                }
            }
        }
        (Fact::Known(total), tps)
    }

    /// Measures one topic at `stage`.
    pub async fn measure(&self, topic: &str, stage: Stage) -> TopicMeasurement {
        let (src, tgt) = tokio::join!(
            self.side_topic(Role::Source, topic),
            self.side_topic(Role::Target, topic)
        );
        let groups: Result<BTreeSet<String>, String> = async {
            let mut all = self.groups_on(&src, topic).await?;
            all.extend(self.groups_on(&tgt, topic).await?);
            Ok(all)
        }
        .await;

        let target_topic_exists = match &tgt.route {
            Ok(Some(r)) => Fact::Known(!r.queue_datas.is_empty()),
            Ok(None) => Fact::Known(false),
            Err(e) => Fact::Unknown(e.clone()),
        };

        // Per group, per cluster: backlog, retry backlog, consumers.
        let mut source_backlog = Vec::new();
        let mut retry_backlog = Vec::new();
        let mut target_backlog = Vec::new();
        let mut source_figures = ClusterFigures::default();
        let mut target_figures = ClusterFigures::default();
        let mut src_consumers: BTreeMap<String, Result<Vec<ClientRef>, String>> = BTreeMap::new();
        let mut tgt_consumers: BTreeMap<String, Result<Vec<ClientRef>, String>> = BTreeMap::new();
        if let Ok(groups) = &groups {
            for g in groups {
                for (role, side, backlogs, figures, consumers) in [
                    (
                        Role::Source,
                        &src,
                        &mut source_backlog,
                        &mut source_figures,
                        &mut src_consumers,
                    ),
                    (
                        Role::Target,
                        &tgt,
                        &mut target_backlog,
                        &mut target_figures,
                        &mut tgt_consumers,
                    ),
                ] {
                    let main = self.backlog_on(&side.brokers, g, topic).await;
                    if let Ok((b, tps)) = &main {
                        figures.backlog += b;
                        figures.consume_tps += tps;
                    }
                    backlogs.push(GroupBacklog {
                        group: g.clone(),
                        messages: main.map(|(b, _)| b).into(),
                    });
                    let retry = self.retry_backlog(role, g).await;
                    if let Ok(b) = &retry {
                        figures.backlog += b;
                    }
                    // A zero retry backlog is not worth a line of its own.
                    if !matches!(retry, Ok(0)) {
                        match role {
                            Role::Source => retry_backlog.push(RetryBacklog {
                                group: g.clone(),
                                topic: format!("%RETRY%{g}"),
                                messages: retry.into(),
                            }),
                            Role::Target => backlogs.push(GroupBacklog {
                                group: format!("{g} (retry topic %RETRY%{g})"),
                                messages: retry.into(),
                            }),
                        }
                    }
                    if role == Role::Source {
                        let dlq = self.dlq_stored(g).await;
                        if !matches!(dlq, Ok(0)) {
                            retry_backlog.push(RetryBacklog {
                                group: g.clone(),
                                topic: format!("%DLQ%{g}"),
                                messages: dlq.into(),
                            });
                        }
                    }
                    consumers.insert(g.clone(), self.consumers_on(&side.brokers, g, topic).await);
                }
            }
        }
        let (source_backlog, retry_backlog, target_backlog) = match &groups {
            Ok(_) => (
                Fact::Known(source_backlog),
                Fact::Known(retry_backlog),
                Fact::Known(target_backlog),
            ),
            Err(e) => (
                Fact::Unknown(e.clone()),
                Fact::Unknown(e.clone()),
                Fact::Unknown(e.clone()),
            ),
        };

        // Groups missing on the target: checked on the topic's target brokers, or on every
        // broker of the target cluster while the topic is not there yet.
        let target_groups_missing = match &groups {
            Err(e) => Fact::Unknown(e.clone()),
            Ok(groups) => {
                let brokers = match &tgt.route {
                    Ok(Some(_)) => Ok(tgt.brokers.clone()),
                    Ok(None) => self.target.cluster_brokers(),
                    Err(e) => Err(e.clone()),
                };
                match brokers {
                    Err(e) => Fact::Unknown(e),
                    Ok(brokers) => self.missing_groups(groups, &brokers).await.into(),
                }
            }
        };

        // Groups consuming on the source with no consumer on the target.
        let groups_not_on_target = match &groups {
            Err(e) => Fact::Unknown(e.clone()),
            Ok(groups) => {
                let mut out = Vec::new();
                let mut unknown = None;
                for g in groups {
                    match (&src_consumers[g], &tgt_consumers[g]) {
                        (Ok(s), Ok(t)) => {
                            if !s.is_empty() && t.is_empty() {
                                out.push(g.clone());
                            }
                        }
                        (Err(e), _) | (_, Err(e)) => unknown = Some(e.clone()),
                    }
                }
                match unknown {
                    Some(e) => Fact::Unknown(e),
                    None => Fact::Known(out),
                }
            }
        };

        // Client switch: source consumers of the topic and source producers vs presence.
        let (clients, unswitched) = self
            .client_switch(topic, &src, &groups, &src_consumers)
            .await;

        // Group comparison for the monitor.
        let group_views = match &groups {
            Err(_) => Vec::new(),
            Ok(groups) => {
                let missing: BTreeSet<String> = target_groups_missing
                    .known()
                    .map(|m| {
                        m.iter()
                            .map(|g| g.split('@').next().unwrap_or(g).to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                groups
                    .iter()
                    .map(|g| {
                        let s = src_consumers[g].as_ref().ok();
                        GroupView {
                            group: g.clone(),
                            source_clients: s.map(Vec::len),
                            target_clients: tgt_consumers[g].as_ref().ok().map(Vec::len),
                            exists_on_target: target_groups_missing
                                .is_known()
                                .then(|| !missing.contains(g)),
                            switched: s.is_some()
                                && !unswitched
                                    .iter()
                                    .any(|c| c.role == ClientRole::Consumer && &c.group == g),
                        }
                    })
                    .collect()
            }
        };

        let (source_max_offset_total, src_put) = self.topic_max_offsets(&src, topic).await;
        let (_, tgt_put) = self.topic_max_offsets(&tgt, topic).await;
        source_figures.put_tps = src_put;
        target_figures.put_tps = tgt_put;
        (
            source_figures.writable_queues,
            source_figures.readable_queues,
        ) = queue_counts(src.route_ref(), Role::Source, stage);
        (
            target_figures.writable_queues,
            target_figures.readable_queues,
        ) = queue_counts(tgt.route_ref(), Role::Target, stage);

        TopicMeasurement {
            source_figures,
            target_figures,
            groups: group_views,
            unswitched,
            target_topic_exists,
            target_groups_missing,
            clients,
            groups_not_on_target,
            source_backlog,
            retry_backlog,
            target_backlog,
            source_max_offset_total,
        }
    }

    async fn missing_groups(
        &self,
        groups: &BTreeSet<String>,
        brokers: &[Broker],
    ) -> Result<Vec<String>, String> {
        let mut per_broker = Vec::new();
        for b in brokers {
            per_broker.push((b, self.subscription_groups(b).await?));
        }
        let mut out = Vec::new();
        for g in groups {
            let lacking: Vec<&str> = per_broker
                .iter()
                .filter(|(_, have)| !have.contains(g))
                .map(|(b, _)| b.name.as_str())
                .collect();
            if lacking.is_empty() {
                continue;
            }
            if lacking.len() == per_broker.len() {
                out.push(g.clone());
            } else {
                out.extend(lacking.iter().map(|b| format!("{g}@{b}")));
            }
        }
        if brokers.is_empty() && !groups.is_empty() {
            // No target broker to hold them: every group is missing.
            out.extend(groups.iter().cloned());
        }
        Ok(out)
    }

    async fn client_switch(
        &self,
        topic: &str,
        src: &SideTopic,
        groups: &Result<BTreeSet<String>, String>,
        src_consumers: &BTreeMap<String, Result<Vec<ClientRef>, String>>,
    ) -> (Fact<ClientSwitch>, Vec<ClientRef>) {
        let presence = match &self.presence {
            Fact::Known(p) => p,
            Fact::Unknown(e) => return (Fact::Unknown(e.clone()), Vec::new()),
        };
        if let Err(e) = groups {
            return (Fact::Unknown(e.clone()), Vec::new());
        }
        let mut consumers = Vec::new();
        for result in src_consumers.values() {
            match result {
                Ok(c) => consumers.extend(c.iter().cloned()),
                Err(e) => return (Fact::Unknown(e.clone()), Vec::new()),
            }
        }
        let (producers, unproven) = match self.producers_on(&src.brokers).await {
            Ok(p) => p,
            Err(e) => return (Fact::Unknown(e), Vec::new()),
        };
        let mut unswitched: Vec<ClientRef> = consumers
            .into_iter()
            .filter(|c| !presence.saw_for_topic(topic, host_of(&c.client_addr)))
            .chain(
                producers
                    .iter()
                    .filter(|p| !presence.saw_anywhere(host_of(&p.client_addr)))
                    .cloned(),
            )
            .collect();
        unswitched.sort();
        // Routers that did not answer are ROUTER_UNAVAILABLE (the routers fact), not here.
        let fact = ClientSwitch {
            unswitched: unswitched.iter().map(ClientRef::describe).collect(),
            unproven,
        };
        (Fact::Known(fact), unswitched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_remoting::{BrokerData, QueueData};

    fn bd(cluster: &str, name: &str, addr: &str) -> BrokerData {
        BrokerData {
            cluster: cluster.into(),
            broker_name: name.into(),
            broker_addrs: BTreeMap::from([(0, addr.to_string())]),
            ..Default::default()
        }
    }

    fn info(brokers: &[BrokerData]) -> ClusterInfo {
        let mut ci = ClusterInfo::default();
        for b in brokers {
            ci.broker_addr_table
                .insert(b.broker_name.clone(), b.clone());
            ci.cluster_addr_table
                .entry(b.cluster.clone())
                .or_default()
                .insert(b.broker_name.clone());
        }
        ci
    }

    #[test]
    fn collisions_are_same_names_with_different_brokers() {
        let a = info(&[
            bd("A", "broker-a", "10.0.0.1:10911"),
            bd("A", "shared", "10.0.0.3:10911"),
        ]);
        let b = info(&[
            bd("B", "broker-a", "10.0.1.1:10911"),
            bd("B", "broker-b", "10.0.1.2:10911"),
        ]);
        assert_eq!(collisions(&a, &b), ["broker-a"]);
        // One NameServer serving both clusters lists the same broker twice: no collision.
        assert!(collisions(&a, &a).is_empty());
    }

    #[test]
    fn merged_queue_counts_follow_the_stage() {
        let route = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "b".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            ..Default::default()
        };
        let r = Some(&route);
        assert_eq!(queue_counts(r, Role::Source, Stage::Initial), (4, 4));
        assert_eq!(queue_counts(r, Role::Target, Stage::Initial), (0, 0));
        assert_eq!(queue_counts(r, Role::Target, Stage::DualRead), (0, 4));
        assert_eq!(queue_counts(r, Role::Source, Stage::Switching), (0, 4));
        assert_eq!(queue_counts(r, Role::Source, Stage::Done), (0, 0));
        assert_eq!(queue_counts(None, Role::Source, Stage::Done), (0, 0));
    }

    #[test]
    fn delay_pending_counts_undelivered_levels() {
        use ferry_remoting::{MessageQueue, TopicOffset};
        let q = |id, min, max| {
            (
                MessageQueue {
                    topic: SCHEDULE_TOPIC.into(),
                    broker_name: "broker-a".into(),
                    queue_id: id,
                },
                TopicOffset {
                    min_offset: min,
                    max_offset: max,
                    last_update_timestamp: 0,
                },
            )
        };
        // Level 1 (queue 0) fully delivered; level 3 (queue 2) 2 of 5 delivered; level 18
        // (queue 17) not in the table: nothing delivered; level 5 (queue 4): older messages
        // removed (min 8), table behind at 2: only 8..10 can still come.
        let queues = vec![q(0, 0, 4), q(2, 0, 5), q(17, 0, 3), q(4, 8, 10), q(6, 0, 0)];
        let delivered = BTreeMap::from([(1, 4), (3, 2), (5, 2)]);
        let (n, detail) = delay_pending(&queues, &delivered);
        assert_eq!(n, 3 + 3 + 2);
        assert_eq!(
            detail,
            "delay level 3: 3, delay level 5: 2, delay level 18: 3"
        );
        assert_eq!(delay_pending(&[], &delivered), (0, String::new()));
    }

    #[test]
    fn backlog_never_goes_negative() {
        use ferry_remoting::{MessageQueue, OffsetWrapper};
        let q = |b, c| {
            (
                MessageQueue::default(),
                OffsetWrapper {
                    broker_offset: b,
                    consumer_offset: c,
                    ..Default::default()
                },
            )
        };
        let stats = ConsumeStats {
            offset_table: vec![q(10, 4), q(3, 5), q(0, 0)],
            consume_tps: 0.0,
        };
        assert_eq!(backlog_of(&stats), 6);
    }
}
