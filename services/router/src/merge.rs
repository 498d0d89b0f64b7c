//! The route merge: pure functions from two clusters' answers (and a topic's stage) to the
//! answer a client gets. No I/O, no clock: everything the merge depends on is an argument,
//! so the rules are property-tested here (see `tests`) and every router replica computes
//! byte-identical answers from the same inputs.
//!
//! Which rule a topic gets ([`TopicRule::classify`], first match wins):
//!
//! 1. `TBW102` ([`TopicRule::AutoCreateTemplate`]): the source's route as-is, never the
//!    target's. A producer whose topic has no route asks for `TBW102` and sends to those
//!    brokers, which auto-create the topic (if the cluster allows it); auto-created topics
//!    therefore land on the source, where rescans find them and import them into the task.
//!    Nothing is ever auto-created on the target through Ferry.
//! 2. `%RETRY%<group>` / `%DLQ%<group>` (also 5.x pop retry topics)
//!    ([`TopicRule::GroupUnion`]): the union of both clusters' queues with their own perms
//!    (no stage mask), each cluster included when it has the topic. Brokers create these per
//!    cluster on send-back, so retries written on either cluster must stay consumable.
//! 3. A topic of the task ([`TopicRule::Staged`]): each cluster's queues with
//!    `perm & mask`, masks from [`ferry_core::perm::route_perms`] (the stage table; DONE keeps
//!    the source with perm 0 while the grace period lasts, then drops it). Never adds a bit.
//! 4. Any other topic ([`TopicRule::Unmanaged`]): INITIAL semantics — the source's route
//!    as-is; if the source does not have it, the target's as-is; TOPIC_NOT_EXIST only when
//!    neither has it.
//!
//! Across all rules:
//! - **Broker-name collisions** (a brokerName in both clusters, from either cluster info or
//!   the two routes): the merge is refused and the answer is the source's route as-is, for
//!   every topic. Clients key addresses, offsets and locks by broker name alone, so a merged
//!   answer would silently mix the clusters up; renaming is impossible (brokers check names).
//! - **Unknown upstream** (down, nothing cached): when the answer depends on that cluster the
//!   outcome is [`MergeOutcome::Unavailable`] (the router answers SYSTEM_ERROR, clients keep
//!   their current route), never a partial route and never TOPIC_NOT_EXIST.
//! - Output is normalized: `queueDatas` and `brokerDatas` sorted by broker name, at most one
//!   entry per broker name (duplicates in an input keep the smallest), `BrokerData` copied
//!   verbatim, `filterServerTable` unioned, static-topic mappings never merged across
//!   clusters (if both clusters carry `topicQueueMappingByBroker`, the source's is kept and
//!   a note says so).
//! - `orderTopicConf`: if a cluster's route carries one (its NameServer has
//!   `orderMessageEnable`), the merged value lists the brokers of every included cluster
//!   whose queues are writable in the answer, source first: each cluster's entries come from
//!   its route's value, else its `ORDER_TOPIC_CONFIG` KV value, else its queues
//!   (`brokerName:writeQueueNums`). Clients take that list in order and ignore perms, so the
//!   writable filter is what applies the stage to ordered producers. Caveat (ROCKETMQ.md
//!   §6.4): when the list changes, `hash(key) % size` maps sharding keys to other queues, so
//!   per-key order holds only within one stage; drain (SWITCHING) before moving ordered
//!   consumers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use ferry_core::Stage;
use ferry_core::perm::{Side, StagePerms, route_perms};
use ferry_remoting::body::{KVTable, TopicList};
use ferry_remoting::{BrokerData, ClusterInfo, QueueData, TopicRouteData};

/// The topic producers ask for when their own topic has no route (`TopicValidator`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// KV namespace of order-topic configurations (`NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG`).
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

const RETRY_PREFIX: &str = "%RETRY%";
const DLQ_PREFIX: &str = "%DLQ%";

/// How a topic's answer is built (see the module docs for the order of the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRule {
    /// `TBW102`: the source's route as-is.
    AutoCreateTemplate,
    /// `%RETRY%` / `%DLQ%`: both clusters' queues with their own perms.
    GroupUnion,
    /// A topic of the task at `stage`; `grace_active` while DONE's grace period lasts.
    Staged { stage: Stage, grace_active: bool },
    /// Not in the task: source as-is, else target as-is.
    Unmanaged,
}

impl TopicRule {
    /// The rule for `topic`; `stage` is the topic's stage if the task has it.
    pub fn classify(topic: &str, stage: Option<(Stage, bool)>) -> TopicRule {
        if topic == AUTO_CREATE_TOPIC {
            TopicRule::AutoCreateTemplate
        } else if topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX) {
            TopicRule::GroupUnion
        } else if let Some((stage, grace_active)) = stage {
            TopicRule::Staged {
                stage,
                grace_active,
            }
        } else {
            TopicRule::Unmanaged
        }
    }

    /// The stage whose semantics the answer has: the task stage, INITIAL for topics served
    /// from the source as-is, `None` for the retry/DLQ union (no stage applies).
    pub fn effective_stage(self) -> Option<Stage> {
        match self {
            TopicRule::Staged { stage, .. } => Some(stage),
            TopicRule::AutoCreateTemplate | TopicRule::Unmanaged => Some(Stage::Initial),
            TopicRule::GroupUnion => None,
        }
    }
}

/// Whether DONE's grace period (source listed with perm 0) still lasts at `now_ms` for a
/// topic that entered its stage at `updated_at_ms`.
pub fn grace_active(updated_at_ms: i64, grace_ms: i64, now_ms: i64) -> bool {
    now_ms < updated_at_ms.saturating_add(grace_ms.max(0))
}

/// What one cluster said about a topic.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamRoute<'a> {
    /// The cluster routes the topic.
    Found(&'a TopicRouteData),
    /// The cluster answered TOPIC_NOT_EXIST.
    NotFound,
    /// Nothing known: the upstream is down and nothing is cached.
    Unknown,
}

impl<'a> UpstreamRoute<'a> {
    fn found(self) -> Option<&'a TopicRouteData> {
        match self {
            UpstreamRoute::Found(r) => Some(r),
            _ => None,
        }
    }
}

/// Everything a topic's answer depends on besides its rule.
#[derive(Debug, Clone, Copy)]
pub struct MergeInput<'a> {
    pub source: UpstreamRoute<'a>,
    pub target: UpstreamRoute<'a>,
    /// The topic's `ORDER_TOPIC_CONFIG` KV value on the source, if any.
    pub source_order_kv: Option<&'a str>,
    /// The topic's `ORDER_TOPIC_CONFIG` KV value on the target, if any.
    pub target_order_kv: Option<&'a str>,
    /// Broker names present in both clusters' cluster info (106); non-empty means every
    /// topic is answered source-only.
    pub cluster_collisions: &'a BTreeSet<String>,
}

/// The answer for a topic.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeOutcome {
    Route(MergedRoute),
    /// Answer TOPIC_NOT_EXIST (17).
    TopicNotExist,
    /// A cluster the answer depends on is unknown; answer an error, not a guess.
    Unavailable(Side),
}

/// A merged route and how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRoute {
    /// Normalized (sorted, one entry per broker name).
    pub route: TopicRouteData,
    /// Broker names in both clusters; when non-empty the route is the source's as-is.
    pub collisions: BTreeSet<String>,
    /// Clusters whose queues are in the route.
    pub sides: Vec<Side>,
    /// Things worth a log line (e.g. a static-topic mapping dropped).
    pub notes: Vec<String>,
}

/// How the answer is assembled, after collisions are taken into account.
#[derive(Debug, Clone, Copy)]
enum Plan {
    SourceAsIs,
    SourceElseTarget,
    Union,
    Masked(StagePerms),
}

/// Builds the answer for a topic (see the module docs).
pub fn merge_route(rule: TopicRule, input: &MergeInput<'_>) -> MergeOutcome {
    let mut collisions = input.cluster_collisions.clone();
    if let (Some(s), Some(t)) = (input.source.found(), input.target.found()) {
        collisions.extend(route_collisions(s, t));
    }
    let plan = if !collisions.is_empty() {
        Plan::SourceAsIs
    } else {
        match rule {
            TopicRule::AutoCreateTemplate => Plan::SourceAsIs,
            TopicRule::Unmanaged => Plan::SourceElseTarget,
            TopicRule::GroupUnion => Plan::Union,
            TopicRule::Staged {
                stage,
                grace_active,
            } => Plan::Masked(route_perms(stage, grace_active)),
        }
    };
    let as_is = |side: Side, r: &TopicRouteData, collisions: BTreeSet<String>| {
        let route = verbatim(r);
        if route.queue_datas.is_empty() {
            MergeOutcome::TopicNotExist
        } else {
            MergeOutcome::Route(MergedRoute {
                route,
                collisions,
                sides: vec![side],
                notes: Vec::new(),
            })
        }
    };
    match plan {
        Plan::SourceAsIs => match input.source {
            UpstreamRoute::Unknown => MergeOutcome::Unavailable(Side::Source),
            UpstreamRoute::NotFound => MergeOutcome::TopicNotExist,
            UpstreamRoute::Found(r) => as_is(Side::Source, r, collisions),
        },
        Plan::SourceElseTarget => match (input.source, input.target) {
            (UpstreamRoute::Unknown, _) => MergeOutcome::Unavailable(Side::Source),
            (UpstreamRoute::Found(r), _) => as_is(Side::Source, r, collisions),
            (UpstreamRoute::NotFound, UpstreamRoute::Unknown) => {
                MergeOutcome::Unavailable(Side::Target)
            }
            (UpstreamRoute::NotFound, UpstreamRoute::NotFound) => MergeOutcome::TopicNotExist,
            (UpstreamRoute::NotFound, UpstreamRoute::Found(r)) => {
                as_is(Side::Target, r, collisions)
            }
        },
        Plan::Union => combine(input, |_| Some(None)),
        Plan::Masked(perms) => combine(input, |side| perms.mask(side).map(Some)),
    }
}

/// Merges the clusters for which `mask_of(side)` is `Some`, applying `Some(mask)` to their
/// queue perms (`None` inside keeps perms as they are).
fn combine(input: &MergeInput<'_>, mask_of: impl Fn(Side) -> Option<Option<u8>>) -> MergeOutcome {
    let mut parts: Vec<(Side, &TopicRouteData, Option<&str>, Option<u8>)> = Vec::new();
    for (side, upstream, kv) in [
        (Side::Source, input.source, input.source_order_kv),
        (Side::Target, input.target, input.target_order_kv),
    ] {
        let Some(mask) = mask_of(side) else { continue };
        match upstream {
            UpstreamRoute::Unknown => return MergeOutcome::Unavailable(side),
            UpstreamRoute::NotFound => {}
            UpstreamRoute::Found(r) => parts.push((side, r, kv, mask)),
        }
    }

    let mut route = TopicRouteData::default();
    let mut notes = Vec::new();
    let mut sides = Vec::new();
    let mut names_by_side: Vec<(Side, BTreeSet<String>)> = Vec::new();
    for &(side, r, _, mask) in &parts {
        let (queues, brokers) = side_parts(r);
        let names: BTreeSet<String> = queues.iter().map(|q| q.broker_name.clone()).collect();
        route.queue_datas.extend(queues.into_iter().map(|mut q| {
            if let Some(m) = mask {
                // Only ever takes bits away (ferry_core::perm).
                q.perm &= i32::from(m);
            }
            q
        }));
        route.broker_datas.extend(brokers);
        for (addr, servers) in &r.filter_server_table {
            let list = route.filter_server_table.entry(addr.clone()).or_default();
            list.extend(servers.iter().cloned());
            list.sort();
            list.dedup();
        }
        match (
            &route.topic_queue_mapping_by_broker,
            &r.topic_queue_mapping_by_broker,
        ) {
            (_, None) => {}
            (None, Some(m)) => route.topic_queue_mapping_by_broker = Some(m.clone()),
            (Some(_), Some(m)) => {
                if !m.is_empty() {
                    notes.push(format!(
                        "both clusters carry a static-topic mapping; kept the source's, dropped the {side:?} one ({} brokers)",
                        m.len()
                    ));
                }
            }
        }
        sides.push(side);
        names_by_side.push((side, names));
    }
    if route.queue_datas.is_empty() {
        return MergeOutcome::TopicNotExist;
    }
    route.order_topic_conf = merged_order_conf(&parts, &names_by_side, &route.queue_datas);
    normalize(&mut route);
    MergeOutcome::Route(MergedRoute {
        route,
        collisions: BTreeSet::new(),
        sides,
        notes,
    })
}

/// The merged `orderTopicConf` (see the module docs), or `None` when no included cluster's
/// route carries one.
fn merged_order_conf(
    parts: &[(Side, &TopicRouteData, Option<&str>, Option<u8>)],
    names_by_side: &[(Side, BTreeSet<String>)],
    merged_queues: &[QueueData],
) -> Option<String> {
    let enabled = parts.iter().any(|(_, r, _, _)| {
        r.order_topic_conf
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    });
    if !enabled {
        return None;
    }
    let writable: BTreeSet<&str> = merged_queues
        .iter()
        .filter(|q| ferry_core::perm::is_writeable((q.perm & 0xFF) as u8))
        .map(|q| q.broker_name.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    let mut out: Vec<(String, i32)> = Vec::new();
    for ((_, r, kv, _), (_, names)) in parts.iter().zip(names_by_side) {
        let from_route = r
            .order_topic_conf
            .as_deref()
            .map(parse_order_conf)
            .filter(|e| !e.is_empty());
        let from_kv = kv.map(parse_order_conf).filter(|e| !e.is_empty());
        let entries = from_route.or(from_kv).unwrap_or_else(|| {
            let (queues, _) = side_parts(r);
            queues
                .into_iter()
                .map(|q| (q.broker_name, q.write_queue_nums))
                .collect()
        });
        for (broker, n) in entries {
            // Only this cluster's brokers, only writable ones, each once.
            if names.contains(&broker)
                && writable.contains(broker.as_str())
                && seen.insert(broker.clone())
            {
                out.push((broker, n));
            }
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(join_order_conf(&out))
    }
}

/// Parses `brokerName:queueNum;...`, skipping malformed entries (as lenient as clients).
pub fn parse_order_conf(conf: &str) -> Vec<(String, i32)> {
    conf.split(';')
        .filter_map(|entry| {
            let (name, num) = entry.trim().split_once(':')?;
            let name = name.trim();
            let num = num.trim().parse::<i32>().ok()?;
            (!name.is_empty()).then(|| (name.to_string(), num))
        })
        .collect()
}

fn join_order_conf(entries: &[(String, i32)]) -> String {
    entries
        .iter()
        .map(|(b, n)| format!("{b}:{n}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Merges two `ORDER_TOPIC_CONFIG` values of one topic: source entries first, each broker
/// once. `None` when neither cluster has a value.
pub fn merge_order_values(source: Option<&str>, target: Option<&str>) -> Option<String> {
    if source.is_none() && target.is_none() {
        return None;
    }
    let mut seen = BTreeSet::new();
    let entries: Vec<(String, i32)> = source
        .into_iter()
        .chain(target)
        .flat_map(parse_order_conf)
        .filter(|(b, _)| seen.insert(b.clone()))
        .collect();
    if entries.is_empty() {
        // Nothing parseable: pass the first value on unchanged rather than invent one.
        return source.or(target).map(str::to_string);
    }
    Some(join_order_conf(&entries))
}

/// The `ORDER_TOPIC_CONFIG` namespace of both clusters, merged per key.
pub fn merge_order_kv(source: &KVTable, target: &KVTable) -> KVTable {
    let keys: BTreeSet<&String> = source.table.keys().chain(target.table.keys()).collect();
    let table = keys
        .into_iter()
        .filter_map(|k| {
            merge_order_values(
                source.table.get(k).map(String::as_str),
                target.table.get(k).map(String::as_str),
            )
            .map(|v| (k.clone(), v))
        })
        .collect();
    KVTable { table }
}

/// A cluster's route copied as-is, normalized.
fn verbatim(r: &TopicRouteData) -> TopicRouteData {
    let (queue_datas, broker_datas) = side_parts(r);
    let mut route = TopicRouteData {
        order_topic_conf: r.order_topic_conf.clone(),
        queue_datas,
        broker_datas,
        filter_server_table: r.filter_server_table.clone(),
        topic_queue_mapping_by_broker: r.topic_queue_mapping_by_broker.clone(),
    };
    for list in route.filter_server_table.values_mut() {
        list.sort();
        list.dedup();
    }
    normalize(&mut route);
    route
}

/// One cluster's queues (one per broker name) and the BrokerData of those brokers.
fn side_parts(r: &TopicRouteData) -> (Vec<QueueData>, Vec<BrokerData>) {
    let mut queues = r.queue_datas.clone();
    queues.sort();
    queues.dedup_by(|a, b| a.broker_name == b.broker_name);
    let names: BTreeSet<&str> = queues.iter().map(|q| q.broker_name.as_str()).collect();
    let mut brokers: Vec<BrokerData> = r
        .broker_datas
        .iter()
        .filter(|b| names.contains(b.broker_name.as_str()))
        .cloned()
        .collect();
    brokers.sort_by(broker_cmp);
    brokers.dedup_by(|a, b| a.broker_name == b.broker_name);
    (queues, brokers)
}

/// A total order on BrokerData, so de-duplication does not depend on input order.
fn broker_cmp(a: &BrokerData, b: &BrokerData) -> Ordering {
    (
        &a.broker_name,
        &a.cluster,
        &a.zone_name,
        &a.broker_addrs,
        a.enable_acting_master,
    )
        .cmp(&(
            &b.broker_name,
            &b.cluster,
            &b.zone_name,
            &b.broker_addrs,
            b.enable_acting_master,
        ))
}

fn normalize(route: &mut TopicRouteData) {
    route.queue_datas.sort();
    route.broker_datas.sort_by(broker_cmp);
}

fn route_names(r: &TopicRouteData) -> BTreeSet<&str> {
    r.queue_datas
        .iter()
        .map(|q| q.broker_name.as_str())
        .chain(r.broker_datas.iter().map(|b| b.broker_name.as_str()))
        .collect()
}

/// Broker names that appear in both routes.
pub fn route_collisions(source: &TopicRouteData, target: &TopicRouteData) -> BTreeSet<String> {
    let s = route_names(source);
    route_names(target)
        .into_iter()
        .filter(|n| s.contains(n))
        .map(str::to_string)
        .collect()
}

fn cluster_names(info: &ClusterInfo) -> BTreeSet<&str> {
    info.broker_addr_table
        .iter()
        .flat_map(|(k, b)| [k.as_str(), b.broker_name.as_str()])
        .chain(
            info.cluster_addr_table
                .values()
                .flat_map(|names| names.iter().map(String::as_str)),
        )
        .filter(|n| !n.is_empty())
        .collect()
}

/// Broker names present in both clusters' cluster info.
pub fn cluster_collisions(source: &ClusterInfo, target: &ClusterInfo) -> BTreeSet<String> {
    let s = cluster_names(source);
    cluster_names(target)
        .into_iter()
        .filter(|n| s.contains(n))
        .map(str::to_string)
        .collect()
}

/// The cluster info clients get (106): both clusters' tables, or the source's alone while
/// broker names collide.
pub fn merge_cluster_info(
    source: Option<&ClusterInfo>,
    target: Option<&ClusterInfo>,
    collisions: &BTreeSet<String>,
) -> ClusterInfo {
    let mut out = source.cloned().unwrap_or_default();
    if !collisions.is_empty() {
        return out;
    }
    if let Some(t) = target {
        for (name, b) in &t.broker_addr_table {
            out.broker_addr_table
                .entry(name.clone())
                .or_insert_with(|| b.clone());
        }
        for (cluster, names) in &t.cluster_addr_table {
            out.cluster_addr_table
                .entry(cluster.clone())
                .or_default()
                .extend(names.iter().cloned());
        }
    }
    out
}

/// Union of topic lists (206, 224, 304, 311-313); `brokerAddr` from the first that has one.
pub fn merge_topic_lists<'a>(lists: impl IntoIterator<Item = &'a TopicList>) -> TopicList {
    let mut out = TopicList::default();
    for l in lists {
        out.topic_list.extend(l.topic_list.iter().cloned());
        if out.broker_addr.is_none() {
            out.broker_addr.clone_from(&l.broker_addr);
        }
    }
    out
}

/// Which cluster "owns the traffic" for requests the router forwards: the target once the
/// task has topics and every one of them is DONE, the source before.
pub fn owner_side<'a>(stages: impl IntoIterator<Item = &'a Stage>) -> Side {
    let mut any = false;
    for s in stages {
        any = true;
        if *s != Stage::Done {
            return Side::Source;
        }
    }
    if any { Side::Target } else { Side::Source }
}

/// Queue perm by broker name (for status and tests).
pub fn perms_by_broker(route: &TopicRouteData) -> BTreeMap<String, i32> {
    route
        .queue_datas
        .iter()
        .map(|q| (q.broker_name.clone(), q.perm))
        .collect()
}

#[cfg(test)]
mod tests;
