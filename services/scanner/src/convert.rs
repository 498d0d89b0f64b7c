//! Conversions between the engine's types and the gRPC messages.

use std::time::Duration;

use ferry_api::common::v1 as pb_common;
use ferry_api::scanner::v1 as pb;
use ferry_core::{TargetType, TopicClass};
use ferry_metadata::MessageType;
use ferry_remoting::Credentials;
use ferry_store::SnapshotHeader;

use crate::engine::{CollisionKind, ConnectReport, Outcome, Probe, SourceSpec};
use crate::error::{Result, ScanError};
use crate::inventory::{
    AclUser, BrokerEntry, ClusterEntry, GroupEntry, Inventory, Summary, TopicEntry,
};

/// A source from the API. Credentials with an empty access key count as none.
pub fn source_from_pb(
    endpoint: Option<pb_common::ClusterEndpoint>,
    what: &str,
) -> Result<SourceSpec> {
    let endpoint =
        endpoint.ok_or_else(|| ScanError::InvalidArgument(format!("{what} is required")))?;
    if endpoint.namesrv_addrs.trim().is_empty() {
        return Err(ScanError::InvalidArgument(format!(
            "{what}.namesrv_addrs is required (host:port;host:port)"
        )));
    }
    let credentials = endpoint
        .credentials
        .filter(|c| !c.access_key.is_empty())
        .map(|c| Credentials::new(c.access_key, c.secret_key));
    Ok(SourceSpec {
        namesrv_addrs: endpoint.namesrv_addrs,
        cluster_name: Some(endpoint.cluster_name.trim().to_string()).filter(|c| !c.is_empty()),
        credentials,
    })
}

/// `0` means "the default".
pub fn timeout_from_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn target_type_from_pb(value: i32) -> Option<TargetType> {
    match pb_common::TargetType::try_from(value).ok()? {
        pb_common::TargetType::V4 => Some(TargetType::V4),
        pb_common::TargetType::V5 => Some(TargetType::V5),
        pb_common::TargetType::Unspecified => None,
    }
}

fn outcome_to_pb(o: Outcome) -> pb_common::ConnectOutcome {
    match o {
        Outcome::Ok => pb_common::ConnectOutcome::Ok,
        Outcome::NamesrvUnreachable => pb_common::ConnectOutcome::NamesrvUnreachable,
        Outcome::AuthFailed => pb_common::ConnectOutcome::AuthFailed,
        Outcome::ProtocolError => pb_common::ConnectOutcome::ProtocolError,
        Outcome::Partial => pb_common::ConnectOutcome::Partial,
        Outcome::ClusterNotFound => pb_common::ConnectOutcome::ClusterNotFound,
    }
}

fn probe_to_pb(p: &Probe) -> pb_common::AddressProbe {
    pb_common::AddressProbe {
        address: p.address.clone(),
        role: p.role.clone(),
        ok: p.ok,
        error_kind: p.kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
        error: p.error.clone(),
        latency_ms: p.latency_ms,
    }
}

fn broker_to_pb(b: &BrokerEntry) -> pb::BrokerInfo {
    pb::BrokerInfo {
        name: b.name.clone(),
        cluster: b.cluster.clone(),
        master_addr: b.master_addr.clone().unwrap_or_default(),
        addrs: b.addrs.clone().into_iter().collect(),
        version: b.version.clone().unwrap_or_default(),
    }
}

pub fn cluster_to_pb(c: &ClusterEntry) -> pb::ClusterSummary {
    pb::ClusterSummary {
        name: c.name.clone(),
        brokers: c.brokers.iter().map(broker_to_pb).collect(),
    }
}

pub fn report_to_pb(r: &ConnectReport) -> pb::CheckConnectionResponse {
    pb::CheckConnectionResponse {
        outcome: outcome_to_pb(r.outcome) as i32,
        message: r.message.clone(),
        probes: r.probes.iter().map(probe_to_pb).collect(),
        clusters: r.clusters.iter().map(cluster_to_pb).collect(),
        collisions: r
            .collisions
            .iter()
            .map(|c| pb::NameCollision {
                kind: match c.kind {
                    CollisionKind::BrokerName => pb::CollisionKind::BrokerName,
                    CollisionKind::ClusterName => pb::CollisionKind::ClusterName,
                } as i32,
                name: c.name.clone(),
                detail: c.detail.clone(),
            })
            .collect(),
        acl_enabled: r.acl_enabled,
    }
}

fn acl_user_to_pb(u: &AclUser) -> pb::AclUserInfo {
    pb::AclUserInfo {
        username: u.username.clone(),
        user_type: u.user_type.clone().unwrap_or_default(),
        user_status: u.user_status.clone().unwrap_or_default(),
        brokers: u.brokers.clone(),
    }
}

pub fn snapshot_to_pb(header: &SnapshotHeader, summary: &Summary) -> pb::Snapshot {
    summary_to_pb(
        &header.scan_id,
        &header.source_id,
        header.taken_at_ms,
        summary,
    )
}

/// The summary of a scan that is not stored (a dry run, `ferry scan --local`): an empty
/// snapshot id.
pub fn inventory_to_pb(inventory: &Inventory) -> pb::Snapshot {
    summary_to_pb(
        "",
        &inventory.source_id,
        inventory.taken_at_ms,
        &inventory.summary(),
    )
}

fn summary_to_pb(
    scan_id: &str,
    source_id: &str,
    taken_at_ms: i64,
    summary: &Summary,
) -> pb::Snapshot {
    pb::Snapshot {
        snapshot_id: scan_id.to_string(),
        source_id: source_id.to_string(),
        namesrv_addrs: summary.namesrv_addrs.clone(),
        taken_at: Some(timestamp(taken_at_ms)),
        clusters: summary.clusters.iter().map(cluster_to_pb).collect(),
        user_topic_count: summary.counts.user_topics as i64,
        system_topic_count: summary.counts.system_topics as i64,
        user_group_count: summary.counts.user_groups as i64,
        system_group_count: summary.counts.system_groups as i64,
        acl_user_count: summary.counts.acl_users as i64,
        missing: summary.missing.clone(),
        notes: summary.notes.clone(),
        partial: !summary.missing.is_empty(),
        acl_users: summary
            .acl_users
            .iter()
            .flatten()
            .map(acl_user_to_pb)
            .collect(),
    }
}

pub fn topic_class_to_pb(c: TopicClass) -> pb::TopicClass {
    match c {
        TopicClass::User => pb::TopicClass::User,
        TopicClass::Retry => pb::TopicClass::Retry,
        TopicClass::Dlq => pb::TopicClass::Dlq,
        TopicClass::System => pb::TopicClass::System,
    }
}

pub fn topic_class_from_pb(value: i32) -> Option<TopicClass> {
    match pb::TopicClass::try_from(value).ok()? {
        pb::TopicClass::User => Some(TopicClass::User),
        pb::TopicClass::Retry => Some(TopicClass::Retry),
        pb::TopicClass::Dlq => Some(TopicClass::Dlq),
        pb::TopicClass::System => Some(TopicClass::System),
        pb::TopicClass::Unspecified => None,
    }
}

fn message_type_to_pb(t: Option<MessageType>) -> pb::MessageType {
    match t {
        None => pb::MessageType::Unspecified,
        Some(MessageType::Normal) => pb::MessageType::Normal,
        Some(MessageType::Fifo) => pb::MessageType::Fifo,
        Some(MessageType::Delay) => pb::MessageType::Delay,
        Some(MessageType::Transaction) => pb::MessageType::Transaction,
        Some(MessageType::Mixed) => pb::MessageType::Mixed,
    }
}

pub fn topic_to_pb(t: &TopicEntry) -> pb::TopicInfo {
    let first = t.first();
    pb::TopicInfo {
        name: t.name.clone(),
        namespace: t.namespace().unwrap_or_default(),
        topic_class: topic_class_to_pb(t.class) as i32,
        read_queue_nums: t.max_read_queue_nums(),
        write_queue_nums: t.max_write_queue_nums(),
        perm: first.map_or(0, |c| c.perm),
        order: first.is_some_and(|c| c.order),
        message_type: message_type_to_pb(t.message_type()) as i32,
        brokers: t.brokers(),
        attributes: first
            .map(|c| c.attributes.clone().into_iter().collect())
            .unwrap_or_default(),
        total_read_queue_nums: t.total_read_queue_nums(),
        total_write_queue_nums: t.total_write_queue_nums(),
        topic_filter_type: first
            .map(|c| c.topic_filter_type.clone())
            .unwrap_or_default(),
    }
}

pub fn group_to_pb(g: &GroupEntry) -> pb::GroupInfo {
    let first = g.first();
    pb::GroupInfo {
        name: g.name.clone(),
        namespace: g.namespace().unwrap_or_default(),
        system: g.system,
        consume_enable: first.is_some_and(|c| c.consume_enable),
        consume_broadcast_enable: first.is_some_and(|c| c.consume_broadcast_enable),
        consume_message_orderly: first.is_some_and(|c| c.consume_message_orderly),
        retry_queue_nums: first.map_or(0, |c| c.retry_queue_nums),
        retry_max_times: first.map_or(0, |c| c.retry_max_times),
        brokers: g.brokers(),
    }
}
