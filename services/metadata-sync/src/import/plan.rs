//! From an [`ImportInput`] to the items of a task, before anything touches the target:
//! selection, target names and namespaces, the per-task limit, naming rules, queue clamping
//! and the TCP protocol note. Pure, so every rule is tested without a cluster.
//!
//! What is decided here is final for an item (`INVALID_NAME`, `QUOTA_EXCEEDED` over the task
//! limit); everything else stays `PENDING` for the engine, which decides against the target's
//! current configs.

use std::collections::{HashMap, HashSet};

use ferry_core::{
    ItemKind, ItemResult, NameError, TaskLimits, TopicClass, clamp_queue_nums, classify_topic,
    is_system_group, split_task_limit, validate_group, validate_topic, wrap_namespace,
};
use ferry_store::ImportItem;
use ferry_store::ImportTaskType;
use ferry_store::imports::ItemCause;

use super::source::{GroupSpec, ImportInput, TopicSpec, item_namespace};
use crate::error::{Result, SyncError};

/// Names listed in one notice or error before "…".
const NAMES_SHOWN: usize = 10;

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    pub task_id: &'a str,
    pub task_type: ImportTaskType,
    /// The chosen namespace ([`ImportTaskType::IntoNamespace`]).
    pub namespace: Option<&'a str>,
    /// Source topic names to import; empty = every user topic of the source.
    pub topics: &'a [String],
    /// Source group names to import; empty = every user group of the source.
    pub groups: &'a [String],
    pub limits: TaskLimits,
}

/// The items of a new task.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Topics first, then groups, each in source order; `seq` is the position.
    pub items: Vec<ImportItem>,
    pub topic_count: u64,
    pub group_count: u64,
    /// Task-level notes (source items left out as system items).
    pub notices: Vec<String>,
}

fn shown(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(NAMES_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        s.push_str(", …");
    }
    s
}

/// Keeps the picked items (in source order), or every non-system one when none is picked.
/// Returns the kept items and the names left out as system items.
fn select<T>(
    all: Vec<T>,
    name: impl Fn(&T) -> &str,
    picked: &[String],
    is_system: impl Fn(&str) -> bool,
    kind: ItemKind,
) -> Result<(Vec<T>, Vec<String>)> {
    if picked.is_empty() {
        let (system, user): (Vec<T>, Vec<T>) = all.into_iter().partition(|t| is_system(name(t)));
        return Ok((user, system.iter().map(|t| name(t).to_string()).collect()));
    }
    let wanted: HashSet<&str> = picked.iter().map(String::as_str).collect();
    let present: HashSet<&str> = all.iter().map(&name).collect();
    let missing: Vec<String> = picked
        .iter()
        .filter(|p| !present.contains(p.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(SyncError::InvalidArgument(format!(
            "{} {} picked but not in the source: {}",
            missing.len(),
            kind.plural(),
            shown(&missing)
        )));
    }
    let kept = all
        .into_iter()
        .filter(|t| wanted.contains(name(t)))
        .collect();
    Ok((kept, Vec::new()))
}

fn target_name(req: &PlanRequest<'_>, source_name: &str) -> String {
    match (req.task_type, req.namespace) {
        (ImportTaskType::IntoNamespace, Some(ns)) => wrap_namespace(ns, source_name),
        // Cluster migration keeps every name as clients use it today.
        _ => source_name.to_string(),
    }
}

fn invalid_reason(e: &NameError) -> String {
    format!("{e} (rule {})", e.rule.id())
}

/// One item before the shared rules (limit, name, duplicates) decide its start.
struct Draft {
    kind: ItemKind,
    source_name: String,
    target: String,
    spec: serde_json::Value,
    queues: (u32, u32),
    notices: Vec<String>,
    over_limit: Option<String>,
    name_check: std::result::Result<(), NameError>,
}

/// Numbers items and applies the rules every kind shares.
struct ItemBuilder<'r, 'a> {
    req: &'r PlanRequest<'a>,
    items: Vec<ImportItem>,
    /// Target name → seq of the first item creating it, per kind.
    seen: HashMap<(ItemKind, String), u32>,
}

impl ItemBuilder<'_, '_> {
    fn push(&mut self, draft: Draft) {
        let Draft {
            kind,
            source_name,
            target,
            spec,
            queues,
            notices,
            over_limit,
            name_check,
        } = draft;
        let seq = self.items.len() as u32;
        let namespace = item_namespace(self.req.task_type, self.req.namespace, &target);
        let (result, cause, reason) = if let Some(reason) = over_limit {
            (
                ItemResult::QuotaExceeded,
                Some(ItemCause::TaskLimit),
                Some(reason),
            )
        } else if let Err(e) = name_check {
            (
                ItemResult::InvalidName,
                Some(ItemCause::NameRule),
                Some(invalid_reason(&e)),
            )
        } else if let Some(first) = self.seen.get(&(kind, target.clone())) {
            (
                ItemResult::AlreadyExistsSkipped,
                Some(ItemCause::Duplicate),
                Some(format!(
                    "item {first} of this task creates the same {} {target} on the target",
                    kind.as_str().to_ascii_lowercase()
                )),
            )
        } else {
            self.seen.insert((kind, target.clone()), seq);
            (ItemResult::Pending, None, None)
        };
        self.items.push(ImportItem {
            task_id: self.req.task_id.to_string(),
            seq,
            kind,
            name: target,
            source_name,
            namespace,
            result,
            cause,
            reason,
            notices,
            read_queue_nums: queues.0,
            write_queue_nums: queues.1,
            spec,
            in_flight: false,
            attempts: 0,
            updated_at_ms: 0,
        });
    }

    fn topic(&mut self, spec: TopicSpec, over_limit: Option<String>) {
        let source_name = spec.name().to_string();
        let target = target_name(self.req, &source_name);
        let mut config = spec.config;
        let clamped = clamp_queue_nums(
            config.read_queue_nums.max(0) as u32,
            config.write_queue_nums.max(0) as u32,
        );
        config.topic_name = target.clone();
        config.read_queue_nums = clamped.read as i32;
        config.write_queue_nums = clamped.write as i32;
        let value = serde_json::to_value(&config).expect("TopicConfig serialises");
        let name_check = validate_topic(&target);
        self.push(Draft {
            kind: ItemKind::Topic,
            source_name,
            target,
            spec: value,
            queues: (clamped.read, clamped.write),
            notices: clamped.notice.into_iter().collect(),
            over_limit,
            name_check,
        });
    }

    fn group(&mut self, spec: GroupSpec, over_limit: Option<String>) {
        let source_name = spec.name().to_string();
        let target = target_name(self.req, &source_name);
        let mut notices = Vec::new();
        if let Some(p) = spec
            .protocol
            .as_deref()
            .filter(|p| !p.eq_ignore_ascii_case("tcp"))
        {
            notices.push(format!(
                "the source declares protocol {p}; the group is created for TCP, the protocol the target's brokers serve"
            ));
        }
        let mut config = spec.config;
        config.group_name = target.clone();
        let value = serde_json::to_value(&config).expect("SubscriptionGroupConfig serialises");
        let name_check = validate_group(&target);
        self.push(Draft {
            kind: ItemKind::Group,
            source_name,
            target,
            spec: value,
            queues: (0, 0),
            notices,
            over_limit,
            name_check,
        });
    }
}

/// The items of a task importing `input` as `req` asks.
pub fn plan(input: ImportInput, req: &PlanRequest<'_>) -> Result<Plan> {
    let (topics, system_topics) = select(
        input.topics,
        |t| t.name(),
        req.topics,
        |n| classify_topic(n) != TopicClass::User,
        ItemKind::Topic,
    )?;
    let (groups, system_groups) = select(
        input.groups,
        |g| g.name(),
        req.groups,
        is_system_group,
        ItemKind::Group,
    )?;
    let mut notices = Vec::new();
    for (names, what) in [
        (
            &system_topics,
            "topics (RocketMQ system, retry or DLQ topics)",
        ),
        (&system_groups, "groups (RocketMQ system groups)"),
    ] {
        if !names.is_empty() {
            notices.push(format!(
                "{} {what} of the source were left out: {}",
                names.len(),
                shown(names)
            ));
        }
    }
    let topic_count = topics.len() as u64;
    let group_count = groups.len() as u64;
    let topics = split_task_limit(topics, req.limits.topics, ItemKind::Topic);
    let groups = split_task_limit(groups, req.limits.groups, ItemKind::Group);
    let mut b = ItemBuilder {
        req,
        items: Vec::with_capacity((topic_count + group_count) as usize),
        seen: HashMap::new(),
    };
    for t in topics.within {
        b.topic(t, None);
    }
    for r in topics.over {
        b.topic(r.item, Some(r.reason));
    }
    for g in groups.within {
        b.group(g, None);
    }
    for r in groups.over {
        b.group(r.item, Some(r.reason));
    }
    Ok(Plan {
        items: b.items,
        topic_count,
        group_count,
        notices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};

    fn topic(name: &str, q: i32) -> TopicSpec {
        TopicSpec {
            config: TopicConfig {
                topic_name: name.into(),
                read_queue_nums: q,
                write_queue_nums: q,
                ..Default::default()
            },
        }
    }

    fn group(name: &str) -> GroupSpec {
        GroupSpec {
            config: SubscriptionGroupConfig {
                group_name: name.into(),
                ..Default::default()
            },
            protocol: None,
        }
    }

    fn req<'a>(
        task_type: ImportTaskType,
        namespace: Option<&'a str>,
        topics: &'a [String],
        limits: TaskLimits,
    ) -> PlanRequest<'a> {
        PlanRequest {
            task_id: "imp-1",
            task_type,
            namespace,
            topics,
            groups: &[],
            limits,
        }
    }

    fn input() -> ImportInput {
        ImportInput {
            source: "test".into(),
            topics: vec![
                topic("Orders", 8),
                topic("ns1%Pay", 32),
                topic("TBW102", 8),
                topic("%RETRY%G1", 1),
                topic("bad topic", 4),
            ],
            groups: vec![group("G1"), group("TOOLS_CONSUMER"), {
                let mut g = group("HttpGroup");
                g.protocol = Some("HTTP".into());
                g
            }],
        }
    }

    #[test]
    fn cluster_migration_keeps_names_and_labels_namespaces() {
        let p = plan(
            input(),
            &req(
                ImportTaskType::ClusterMigration,
                None,
                &[],
                TaskLimits::default(),
            ),
        )
        .unwrap();
        let names: Vec<&str> = p.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["Orders", "ns1%Pay", "bad topic", "G1", "HttpGroup"]);
        assert_eq!(p.items[0].namespace, "default");
        assert_eq!(p.items[1].namespace, "ns1");
        assert_eq!(
            (p.items[1].read_queue_nums, p.items[1].write_queue_nums),
            (16, 16)
        );
        assert!(p.items[1].notices[0].contains("read 32 / write 32"));
        assert_eq!(p.items[1].spec["readQueueNums"], 16);
        assert_eq!(p.items[2].result, ItemResult::InvalidName);
        assert!(
            p.items[2]
                .reason
                .as_deref()
                .unwrap()
                .contains("ILLEGAL_CHAR")
        );
        assert!(p.items[4].notices[0].contains("HTTP"));
        assert!(p.items.iter().enumerate().all(|(i, it)| it.seq == i as u32));
        assert_eq!((p.topic_count, p.group_count), (3, 2));
        assert!(p.notices[0].starts_with("2 topics"), "{:?}", p.notices);
        assert!(p.notices[0].contains("TBW102") && p.notices[0].contains("%RETRY%G1"));
        assert!(p.notices[1].contains("TOOLS_CONSUMER"));
    }

    #[test]
    fn into_namespace_wraps_picked_items() {
        let picked = vec!["Orders".to_string(), "TBW102".to_string()];
        let p = plan(
            input(),
            &req(
                ImportTaskType::IntoNamespace,
                Some("prod"),
                &picked,
                TaskLimits::default(),
            ),
        )
        .unwrap();
        assert_eq!(p.items[0].name, "prod%Orders");
        assert_eq!(p.items[0].source_name, "Orders");
        assert_eq!(p.items[0].namespace, "prod");
        assert_eq!(p.items[0].spec["topicName"], "prod%Orders");
        // A picked system topic is not wrapped (clients never wrap it) and is refused.
        assert_eq!(p.items[1].name, "TBW102");
        assert_eq!(p.items[1].result, ItemResult::InvalidName);
        assert!(p.items[1].reason.as_deref().unwrap().contains("RESERVED"));
        // Groups not picked: all user groups.
        assert_eq!(p.items[2].name, "prod%G1");
        let missing = vec!["Nope".to_string()];
        let err = plan(
            input(),
            &req(
                ImportTaskType::IntoNamespace,
                Some("prod"),
                &missing,
                TaskLimits::default(),
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Nope"), "{err}");
    }

    #[test]
    fn over_the_limit_is_reported_not_dropped() {
        let source = ImportInput {
            source: "t".into(),
            topics: (0..5).map(|i| topic(&format!("T{i}"), 4)).collect(),
            groups: vec![],
        };
        let limits = TaskLimits {
            topics: 3,
            groups: 1,
        };
        let p = plan(
            source,
            &req(ImportTaskType::ClusterMigration, None, &[], limits),
        )
        .unwrap();
        assert_eq!(p.items.len(), 5);
        let over: Vec<&ImportItem> = p
            .items
            .iter()
            .filter(|i| i.result == ItemResult::QuotaExceeded)
            .collect();
        assert_eq!(over.len(), 2);
        assert_eq!(over[0].name, "T3");
        assert_eq!(over[0].cause, Some(ItemCause::TaskLimit));
        assert!(
            over[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("per-task limit of 3 topics")
        );
    }

    #[test]
    fn two_sources_for_one_target_name() {
        let source = ImportInput {
            source: "t".into(),
            topics: vec![topic("T", 4), topic("prod%T", 4)],
            groups: vec![],
        };
        let p = plan(
            source,
            &req(
                ImportTaskType::IntoNamespace,
                Some("prod"),
                &[],
                TaskLimits::default(),
            ),
        )
        .unwrap();
        assert_eq!(p.items[0].result, ItemResult::Pending);
        assert_eq!(p.items[1].name, "prod%T");
        assert_eq!(p.items[1].result, ItemResult::AlreadyExistsSkipped);
        assert_eq!(p.items[1].cause, Some(ItemCause::Duplicate));
    }
}
