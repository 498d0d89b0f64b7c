//! What one scan found, and how it is stored, diffed and exported.
//!
//! An [`Inventory`] keeps every broker's own config of each topic and group (not a merged
//! view): exports merge them the way mqadmin does, the importer can see per-broker queue
//! counts, and unknown fields of newer brokers survive. Topics are classified (user, retry,
//! DLQ, system) with the cluster's broker and cluster names, so per-broker and per-cluster
//! topics never pass for the user's.
//!
//! Stored as a snapshot ([`ferry_store::snapshots`]): the [`Summary`] (clusters, counts,
//! missing parts) goes into the header, topics, groups and ACL users are the items.

use std::collections::{BTreeMap, BTreeSet};

use ferry_core::{TargetType, TopicClass, parse_namespaced};
use ferry_metadata::{ExportBuilder, MessageType, MetadataExport, Workbook, group_row, topic_row};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_store::{NewSnapshot, SnapshotHeader};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Result, ScanError};

/// One scan of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub source_id: String,
    pub namesrv_addrs: String,
    /// The cluster asked for; `None` = every cluster the NameServers know.
    pub cluster_filter: Option<String>,
    /// Unix milliseconds when the scan finished.
    pub taken_at_ms: i64,
    pub clusters: Vec<ClusterEntry>,
    /// Sorted by name.
    pub topics: Vec<TopicEntry>,
    /// Sorted by name.
    pub groups: Vec<GroupEntry>,
    /// ACL 2.0 users (no secrets); `None` when no broker let us read them.
    pub acl_users: Option<Vec<AclUser>>,
    /// What could not be read: the inventory lacks exactly these parts.
    pub missing: Vec<String>,
    /// Facts that do not make the inventory partial.
    pub notes: Vec<String>,
}

/// A cluster and its broker groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEntry {
    pub name: String,
    pub brokers: Vec<BrokerEntry>,
}

/// A broker group (master and slaves share the name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerEntry {
    pub name: String,
    pub cluster: String,
    /// Broker id 0, if registered.
    pub master_addr: Option<String>,
    /// Broker id → address.
    pub addrs: BTreeMap<i64, String>,
    /// `brokerVersionDesc` of the scanned address, e.g. `V5_3_3`.
    pub version: Option<String>,
    /// The address whose configs are in this inventory (the master, else the lowest id).
    pub scanned_addr: Option<String>,
    /// True when its topics and groups were read.
    pub scanned: bool,
}

/// A topic and each broker's config of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicEntry {
    pub name: String,
    pub class: TopicClass,
    pub configs: Vec<BrokerTopicConfig>,
}

/// One broker's config of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerTopicConfig {
    pub broker: String,
    pub config: TopicConfig,
}

/// A consumer group and each broker's config of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub name: String,
    /// A RocketMQ-internal group (`is_system_group`).
    pub system: bool,
    pub configs: Vec<BrokerGroupConfig>,
}

/// One broker's config of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerGroupConfig {
    pub broker: String,
    pub config: SubscriptionGroupConfig,
}

/// An ACL 2.0 user, without its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclUser {
    pub username: String,
    pub user_type: Option<String>,
    pub user_status: Option<String>,
    pub brokers: Vec<String>,
}

/// Counts shown in listings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub user_topics: u64,
    /// System, retry and DLQ topics.
    pub system_topics: u64,
    pub user_groups: u64,
    pub system_groups: u64,
    pub acl_users: u64,
}

/// The header part of a stored snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub namesrv_addrs: String,
    pub cluster_filter: Option<String>,
    pub clusters: Vec<ClusterEntry>,
    pub counts: Counts,
    /// ACL users (few, and listed with the snapshot); `None` when not readable.
    pub acl_users: Option<Vec<AclUser>>,
    pub missing: Vec<String>,
    pub notes: Vec<String>,
}

/// One stored item.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Item {
    Topic(TopicEntry),
    Group(GroupEntry),
}

/// Topics and groups added or removed between two inventories (user ones only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub topics_added: Vec<String>,
    pub topics_removed: Vec<String>,
    pub groups_added: Vec<String>,
    pub groups_removed: Vec<String>,
}

impl TopicEntry {
    /// The namespace part of the name, if any.
    pub fn namespace(&self) -> Option<String> {
        parse_namespaced(&self.name).namespace
    }

    /// Largest read queue count over brokers.
    pub fn max_read_queue_nums(&self) -> i32 {
        self.configs
            .iter()
            .map(|c| c.config.read_queue_nums)
            .max()
            .unwrap_or(0)
    }

    /// Largest write queue count over brokers.
    pub fn max_write_queue_nums(&self) -> i32 {
        self.configs
            .iter()
            .map(|c| c.config.write_queue_nums)
            .max()
            .unwrap_or(0)
    }

    /// Read queues summed over brokers.
    pub fn total_read_queue_nums(&self) -> i32 {
        self.configs
            .iter()
            .fold(0i32, |a, c| a.saturating_add(c.config.read_queue_nums))
    }

    /// Write queues summed over brokers.
    pub fn total_write_queue_nums(&self) -> i32 {
        self.configs
            .iter()
            .fold(0i32, |a, c| a.saturating_add(c.config.write_queue_nums))
    }

    /// The first broker's config (brokers are sorted by name), for settings that are the
    /// same everywhere in practice (perm, order, attributes).
    pub fn first(&self) -> Option<&TopicConfig> {
        self.configs.first().map(|c| &c.config)
    }

    /// The declared message type, else derived (see [`MessageType::effective`]); `None`
    /// when no broker declares one and the topic is not ordered.
    pub fn message_type(&self) -> Option<MessageType> {
        let tc = self.first()?;
        MessageType::declared(tc).or(tc.order.then_some(MessageType::Fifo))
    }

    pub fn brokers(&self) -> Vec<String> {
        self.configs.iter().map(|c| c.broker.clone()).collect()
    }
}

impl GroupEntry {
    pub fn namespace(&self) -> Option<String> {
        parse_namespaced(&self.name).namespace
    }

    pub fn first(&self) -> Option<&SubscriptionGroupConfig> {
        self.configs.first().map(|c| &c.config)
    }

    pub fn brokers(&self) -> Vec<String> {
        self.configs.iter().map(|c| c.broker.clone()).collect()
    }
}

impl Inventory {
    pub fn counts(&self) -> Counts {
        let user_topics = self
            .topics
            .iter()
            .filter(|t| t.class == TopicClass::User)
            .count() as u64;
        let user_groups = self.groups.iter().filter(|g| !g.system).count() as u64;
        Counts {
            user_topics,
            system_topics: self.topics.len() as u64 - user_topics,
            user_groups,
            system_groups: self.groups.len() as u64 - user_groups,
            acl_users: self.acl_users.as_ref().map_or(0, |u| u.len() as u64),
        }
    }

    /// True when some part could not be read.
    pub fn is_partial(&self) -> bool {
        !self.missing.is_empty()
    }

    pub fn summary(&self) -> Summary {
        Summary {
            namesrv_addrs: self.namesrv_addrs.clone(),
            cluster_filter: self.cluster_filter.clone(),
            clusters: self.clusters.clone(),
            counts: self.counts(),
            acl_users: self.acl_users.clone(),
            missing: self.missing.clone(),
            notes: self.notes.clone(),
        }
    }

    /// The snapshot to store under `scan_id`.
    pub fn to_snapshot(&self, scan_id: String) -> Result<NewSnapshot> {
        let raw = |item: &Item| {
            serde_json::value::to_raw_value(item)
                .map_err(|e| ScanError::Format(format!("cannot encode a snapshot item: {e}")))
        };
        let mut items: Vec<Box<RawValue>> =
            Vec::with_capacity(self.topics.len() + self.groups.len());
        // Clones are per item and dropped at once; the inventory itself is kept.
        for t in &self.topics {
            items.push(raw(&Item::Topic(t.clone()))?);
        }
        for g in &self.groups {
            items.push(raw(&Item::Group(g.clone()))?);
        }
        Ok(NewSnapshot {
            source_id: self.source_id.clone(),
            scan_id,
            taken_at_ms: self.taken_at_ms,
            summary: serde_json::to_value(self.summary())
                .map_err(|e| ScanError::Format(format!("cannot encode the summary: {e}")))?,
            items,
        })
    }

    /// Rebuilds an inventory from a stored snapshot.
    pub fn from_snapshot(header: &SnapshotHeader, items: &[Box<RawValue>]) -> Result<Inventory> {
        let summary = summary_of(header)?;
        let mut inv = Inventory {
            source_id: header.source_id.clone(),
            namesrv_addrs: summary.namesrv_addrs,
            cluster_filter: summary.cluster_filter,
            taken_at_ms: header.taken_at_ms,
            clusters: summary.clusters,
            topics: Vec::new(),
            groups: Vec::new(),
            acl_users: summary.acl_users,
            missing: summary.missing,
            notes: summary.notes,
        };
        for (i, raw) in items.iter().enumerate() {
            let item: Item = serde_json::from_str(raw.get()).map_err(|e| {
                ScanError::Format(format!(
                    "snapshot {} item {i} is not a scanner record: {e}",
                    header.scan_id
                ))
            })?;
            match item {
                Item::Topic(t) => inv.topics.push(t),
                Item::Group(g) => inv.groups.push(g),
            }
        }
        Ok(inv)
    }

    /// Brokers of `cluster` (all when `None`); an unknown cluster is an error.
    fn brokers_of(&self, cluster: Option<&str>) -> Result<BTreeSet<String>> {
        match cluster {
            None => Ok(self
                .clusters
                .iter()
                .flat_map(|c| c.brokers.iter().map(|b| b.name.clone()))
                .collect()),
            Some(name) => match self.clusters.iter().find(|c| c.name == name) {
                Some(c) => Ok(c.brokers.iter().map(|b| b.name.clone()).collect()),
                None => Err(ScanError::ClusterNotFound {
                    name: name.to_string(),
                    found: self
                        .clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            },
        }
    }

    /// The `mqadmin exportMetadata -c` file of one cluster (all when `None`): user topics
    /// (plus retry/DLQ topics when asked, like `-s`) and non-system groups, configs merged
    /// over the cluster's brokers in broker-name order.
    pub fn export_json(
        &self,
        cluster: Option<&str>,
        include_retry_dlq: bool,
    ) -> Result<MetadataExport> {
        let brokers = self.brokers_of(cluster)?;
        let mut b = ExportBuilder::new(self.taken_at_ms);
        for t in &self.topics {
            let wanted = match t.class {
                TopicClass::User => true,
                TopicClass::Retry | TopicClass::Dlq => include_retry_dlq,
                TopicClass::System => false,
            };
            if wanted {
                for c in t.configs.iter().filter(|c| brokers.contains(&c.broker)) {
                    b.add_topic(&c.config);
                }
            }
        }
        for g in self.groups.iter().filter(|g| !g.system) {
            for c in g.configs.iter().filter(|c| brokers.contains(&c.broker)) {
                b.add_group(&c.config);
            }
        }
        Ok(b.finish())
    }

    /// The spreadsheet of one cluster (all when `None`) in `target`'s template.
    pub fn workbook(&self, cluster: Option<&str>, target: TargetType) -> Result<Workbook> {
        let export = self.export_json(cluster, false)?;
        Ok(Workbook {
            target,
            topics: export
                .topic_config_table
                .values()
                .map(|t| topic_row(t, target))
                .collect(),
            groups: export
                .subscription_group_table
                .values()
                .map(|g| group_row(g, target))
                .collect(),
        })
    }

    fn user_topic_names(&self) -> BTreeSet<&str> {
        self.topics
            .iter()
            .filter(|t| t.class == TopicClass::User)
            .map(|t| t.name.as_str())
            .collect()
    }

    fn user_group_names(&self) -> BTreeSet<&str> {
        self.groups
            .iter()
            .filter(|g| !g.system)
            .map(|g| g.name.as_str())
            .collect()
    }

    /// User topics and groups in `head` but not in `self`, and the reverse.
    pub fn diff(&self, head: &Inventory) -> Diff {
        let (bt, ht) = (self.user_topic_names(), head.user_topic_names());
        let (bg, hg) = (self.user_group_names(), head.user_group_names());
        let list = |a: &BTreeSet<&str>, b: &BTreeSet<&str>| {
            a.difference(b).map(|s| s.to_string()).collect::<Vec<_>>()
        };
        Diff {
            topics_added: list(&ht, &bt),
            topics_removed: list(&bt, &ht),
            groups_added: list(&hg, &bg),
            groups_removed: list(&bg, &hg),
        }
    }
}

/// The summary stored in a snapshot header.
pub fn summary_of(header: &SnapshotHeader) -> Result<Summary> {
    serde_json::from_value(header.summary.clone()).map_err(|e| {
        ScanError::Format(format!(
            "snapshot {} has no scanner summary: {e}",
            header.scan_id
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn inventory() -> Inventory {
        let topic = |name: &str, class, brokers: &[(&str, i32)]| TopicEntry {
            name: name.into(),
            class,
            configs: brokers
                .iter()
                .map(|(b, q)| BrokerTopicConfig {
                    broker: b.to_string(),
                    config: TopicConfig {
                        topic_name: name.into(),
                        read_queue_nums: *q,
                        write_queue_nums: *q,
                        ..Default::default()
                    },
                })
                .collect(),
        };
        let group = |name: &str, system| GroupEntry {
            name: name.into(),
            system,
            configs: vec![BrokerGroupConfig {
                broker: "broker-a".into(),
                config: SubscriptionGroupConfig {
                    group_name: name.into(),
                    ..Default::default()
                },
            }],
        };
        let broker = |name: &str, cluster: &str| BrokerEntry {
            name: name.into(),
            cluster: cluster.into(),
            master_addr: Some("127.0.0.1:1".into()),
            addrs: BTreeMap::from([(0, "127.0.0.1:1".into())]),
            version: Some("V5_3_3".into()),
            scanned_addr: Some("127.0.0.1:1".into()),
            scanned: true,
        };
        Inventory {
            source_id: "src".into(),
            namesrv_addrs: "127.0.0.1:9876".into(),
            cluster_filter: None,
            taken_at_ms: 42,
            clusters: vec![
                ClusterEntry {
                    name: "A".into(),
                    brokers: vec![broker("broker-a", "A")],
                },
                ClusterEntry {
                    name: "B".into(),
                    brokers: vec![broker("broker-b", "B")],
                },
            ],
            topics: vec![
                topic("%RETRY%G", TopicClass::Retry, &[("broker-a", 1)]),
                topic(
                    "Orders",
                    TopicClass::User,
                    &[("broker-a", 4), ("broker-b", 8)],
                ),
                topic("TBW102", TopicClass::System, &[("broker-a", 8)]),
            ],
            groups: vec![group("G", false), group("TOOLS_CONSUMER", true)],
            acl_users: Some(vec![AclUser {
                username: "admin".into(),
                user_type: Some("Super".into()),
                user_status: Some("enable".into()),
                brokers: vec!["broker-a".into()],
            }]),
            missing: vec![],
            notes: vec!["n".into()],
        }
    }

    #[test]
    fn snapshot_round_trip() {
        let inv = inventory();
        let snap = inv.to_snapshot("0000000000042-00000000".into()).unwrap();
        let header = SnapshotHeader {
            source_id: snap.source_id.clone(),
            scan_id: snap.scan_id.clone(),
            taken_at_ms: snap.taken_at_ms,
            summary: snap.summary.clone(),
            item_count: snap.items.len() as u64,
            chunk_count: 1,
            bytes: 0,
        };
        assert_eq!(Inventory::from_snapshot(&header, &snap.items).unwrap(), inv);
        let counts = inv.counts();
        assert_eq!(
            (
                counts.user_topics,
                counts.system_topics,
                counts.user_groups,
                counts.system_groups
            ),
            (1, 2, 1, 1)
        );
    }

    #[test]
    fn export_follows_mqadmin_per_cluster() {
        let inv = inventory();
        let all = inv.export_json(None, false).unwrap();
        assert_eq!(all.topic_config_table.len(), 1);
        assert_eq!(all.topic_config_table["Orders"].read_queue_nums, 12);
        assert_eq!(all.subscription_group_table.len(), 1);
        let a = inv.export_json(Some("A"), true).unwrap();
        assert_eq!(a.topic_config_table["Orders"].read_queue_nums, 4);
        assert!(a.topic_config_table.contains_key("%RETRY%G"));
        assert!(matches!(
            inv.export_json(Some("Z"), false),
            Err(ScanError::ClusterNotFound { .. })
        ));
    }

    #[test]
    fn diff_lists_user_names_only() {
        let base = inventory();
        let mut head = inventory();
        head.topics.retain(|t| t.name != "Orders");
        head.topics.push(TopicEntry {
            name: "New".into(),
            class: TopicClass::User,
            configs: vec![],
        });
        head.groups.retain(|g| g.name != "TOOLS_CONSUMER");
        let d = base.diff(&head);
        assert_eq!(d.topics_added, ["New"]);
        assert_eq!(d.topics_removed, ["Orders"]);
        assert!(d.groups_added.is_empty() && d.groups_removed.is_empty());
    }
}
