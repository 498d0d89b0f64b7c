//! What an import starts from: a list of topic and group specs, whatever the input was.
//!
//! The engine only knows [`ImportInput`]. Adapters turn each input into it, and reject bad
//! input *before* anything is stored or created, naming the file and the field, row or item:
//!
//! - export JSON (Ferry's or `mqadmin exportMetadata`'s): `ferry_metadata::parse_export`;
//! - `.xlsx` in the 4.x or 5.x template: `ferry_metadata::read_xlsx`;
//! - a scanner snapshot: its stored items, read with the scanner's `Inventory`.

use ferry_core::TopicClass;
use ferry_metadata::{GroupRow, MessageType, TopicRow, Workbook};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_scanner::Inventory;
use ferry_store::ImportTaskType;
use ferry_store::SnapshotHeader;
use serde_json::value::RawValue;

use crate::error::{Result, SyncError};

/// Topic attribute holding a 5.x message type.
const MESSAGE_TYPE_ATTRIBUTE: &str = "message.type";

/// One topic to import, with the config it had in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub config: TopicConfig,
}

/// One consumer group to import.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub config: SubscriptionGroupConfig,
    /// The client protocol the source declared for the group (e.g. `HTTP`), when it did.
    /// Groups are always created for TCP; anything else gets a notice.
    pub protocol: Option<String>,
}

impl TopicSpec {
    pub fn name(&self) -> &str {
        &self.config.topic_name
    }
}

impl GroupSpec {
    pub fn name(&self) -> &str {
        &self.config.group_name
    }
}

/// The engine's input: topics and groups in source order, and where they came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportInput {
    /// For people: "export JSON a.json", "spreadsheet b.xlsx (5.x template)", "snapshot X".
    pub source: String,
    pub topics: Vec<TopicSpec>,
    pub groups: Vec<GroupSpec>,
}

/// Keys under which exports from other tools carry a group's protocol.
const PROTOCOL_KEYS: [&str; 3] = ["protocol", "groupProtocol", "groupType"];

/// Takes the declared protocol out of a group's unknown fields (the broker has no use for
/// it; Ferry creates every group for TCP).
fn take_protocol(config: &mut SubscriptionGroupConfig) -> Option<String> {
    let mut found = None;
    for key in PROTOCOL_KEYS {
        if let Some(v) = config.extra.remove(key)
            && let Some(s) = v.as_str()
        {
            found.get_or_insert_with(|| s.to_string());
        }
        if let Some(v) = config.attributes.remove(key) {
            found.get_or_insert(v);
        }
    }
    found
}

fn group_spec(mut config: SubscriptionGroupConfig) -> GroupSpec {
    let protocol = take_protocol(&mut config);
    GroupSpec { config, protocol }
}

/// An export JSON file (`file` names it in errors).
pub fn from_export_json(file: &str, bytes: &[u8]) -> Result<ImportInput> {
    let parsed = ferry_metadata::parse_export(file, bytes)
        .map_err(|e| SyncError::InvalidArgument(format!("invalid export file {e}")))?;
    let export = parsed.export;
    Ok(ImportInput {
        source: format!("export JSON {file}"),
        topics: export
            .topic_config_table
            .into_iter()
            .map(|(name, mut config)| {
                // The table key is the name mqadmin and brokers go by.
                config.topic_name = name;
                TopicSpec { config }
            })
            .collect(),
        groups: export
            .subscription_group_table
            .into_iter()
            .map(|(name, mut config)| {
                config.group_name = name;
                group_spec(config)
            })
            .collect(),
    })
}

fn topic_from_row(row: &TopicRow) -> TopicSpec {
    let mut config = TopicConfig {
        topic_name: row.full_name(),
        read_queue_nums: row.read_queue_nums,
        write_queue_nums: row.write_queue_nums,
        perm: row.perm,
        order: row.order,
        ..TopicConfig::default()
    };
    if let Some(t) = row.message_type {
        config.order = t == MessageType::Fifo;
        config
            .attributes
            .insert(MESSAGE_TYPE_ATTRIBUTE.into(), t.as_str().into());
    }
    TopicSpec { config }
}

fn group_from_row(row: &GroupRow) -> GroupSpec {
    GroupSpec {
        config: SubscriptionGroupConfig {
            group_name: row.full_name(),
            consume_message_orderly: row.consume_orderly,
            consume_broadcast_enable: row.consume_broadcast_enable,
            consume_enable: row.consume_enable,
            retry_max_times: row.retry_max_times,
            retry_queue_nums: row.retry_queue_nums,
            ..SubscriptionGroupConfig::default()
        },
        protocol: None,
    }
}

/// A spreadsheet in either template.
pub fn from_xlsx(file: &str, bytes: &[u8]) -> Result<ImportInput> {
    let book: Workbook = ferry_metadata::read_xlsx(file, bytes)
        .map_err(|e| SyncError::InvalidArgument(format!("invalid spreadsheet {e}")))?;
    Ok(ImportInput {
        source: format!("spreadsheet {file} ({} template)", book.target.as_str()),
        topics: book.topics.iter().map(topic_from_row).collect(),
        groups: book.groups.iter().map(group_from_row).collect(),
    })
}

/// A scanner snapshot, read back through the scanner's own record type (so the import
/// follows the scanner's format). Only user topics and non-system groups are imported; the
/// number left out is returned for a task notice. A topic or group seen on several source
/// brokers takes the first broker's config with the largest queue counts of any broker:
/// every target master gets what one source master had.
pub fn from_snapshot(
    header: &SnapshotHeader,
    items: &[Box<RawValue>],
) -> Result<(ImportInput, usize)> {
    let inventory = Inventory::from_snapshot(header, items).map_err(|e| {
        SyncError::InvalidArgument(format!(
            "snapshot {} cannot be imported: {e}",
            header.scan_id
        ))
    })?;
    let mut input = ImportInput {
        source: format!("snapshot {} of {}", header.scan_id, header.source_id),
        ..Default::default()
    };
    let mut left_out = 0;
    let no_config = |what: &str, name: &str| {
        SyncError::InvalidArgument(format!(
            "snapshot {} cannot be imported: {what} {name} has no broker config",
            header.scan_id
        ))
    };
    for t in inventory.topics {
        if t.class != TopicClass::User {
            left_out += 1;
            continue;
        }
        let first = t
            .configs
            .first()
            .ok_or_else(|| no_config("topic", &t.name))?;
        let mut config = first.config.clone();
        config.topic_name = t.name.clone();
        config.read_queue_nums = t
            .configs
            .iter()
            .map(|c| c.config.read_queue_nums)
            .max()
            .unwrap_or(0);
        config.write_queue_nums = t
            .configs
            .iter()
            .map(|c| c.config.write_queue_nums)
            .max()
            .unwrap_or(0);
        input.topics.push(TopicSpec { config });
    }
    for g in inventory.groups {
        if g.system {
            left_out += 1;
            continue;
        }
        let first = g
            .configs
            .first()
            .ok_or_else(|| no_config("group", &g.name))?;
        let mut config = first.config.clone();
        config.group_name = g.name.clone();
        input.groups.push(group_spec(config));
    }
    Ok((input, left_out))
}

/// The item namespace shown for a target name (task type decides).
pub fn item_namespace(
    task_type: ImportTaskType,
    chosen: Option<&str>,
    target_name: &str,
) -> String {
    match (task_type, chosen) {
        (ImportTaskType::IntoNamespace, Some(ns)) => ns.to_string(),
        _ => ferry_core::namespace_or_default(target_name, ferry_core::IMPORT_DEFAULT_NAMESPACE)
            .namespace
            .unwrap_or_else(|| ferry_core::IMPORT_DEFAULT_NAMESPACE.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_json_keys_name_the_items_and_protocol_is_taken_out() {
        let json = br#"{"exportTime":1,"topicConfigTable":{"Orders":{"topicName":"Orders","readQueueNums":8,"writeQueueNums":8,"perm":6}},
            "subscriptionGroupTable":{"G1":{"groupName":"G1","groupType":"HTTP"}}}"#;
        let input = from_export_json("a.json", json).unwrap();
        assert_eq!(input.topics.len(), 1);
        assert_eq!(input.topics[0].name(), "Orders");
        assert_eq!(input.groups[0].protocol.as_deref(), Some("HTTP"));
        assert!(!input.groups[0].config.extra.contains_key("groupType"));
        assert_eq!(input.source, "export JSON a.json");
    }

    #[test]
    fn malformed_json_names_file_and_field() {
        let err = from_export_json(
            "bad.json",
            b"{\"topicConfigTable\": {\"T\": {\"readQueueNums\": \"x\"}}}",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.json"), "{err}");
        assert!(err.contains("topicConfigTable.T.readQueueNums"), "{err}");
        let err = from_export_json("cut.json", b"{\"topicConfigTable\": {")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.json") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn xlsx_rows_become_specs() {
        let book = Workbook {
            target: ferry_core::TargetType::V5,
            topics: vec![TopicRow {
                namespace: None,
                topic: "Fifo".into(),
                message_type: Some(MessageType::Fifo),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                order: false,
                remark: String::new(),
            }],
            groups: vec![GroupRow {
                namespace: None,
                group: "G".into(),
                consume_orderly: true,
                consume_broadcast_enable: false,
                consume_enable: true,
                retry_max_times: 3,
                retry_queue_nums: 1,
                remark: String::new(),
            }],
        };
        let bytes = ferry_metadata::write_xlsx(&book).unwrap();
        let input = from_xlsx("m.xlsx", &bytes).unwrap();
        assert!(input.topics[0].config.order);
        assert_eq!(input.topics[0].config.attributes["message.type"], "FIFO");
        assert!(input.groups[0].config.consume_message_orderly);
        assert_eq!(input.groups[0].config.retry_max_times, 3);
        let err = from_xlsx("x.xlsx", b"not a zip").unwrap_err().to_string();
        assert!(err.contains("x.xlsx"), "{err}");
    }

    #[test]
    fn namespaces_by_task_type() {
        assert_eq!(
            item_namespace(ImportTaskType::ClusterMigration, None, "ns1%T"),
            "ns1"
        );
        assert_eq!(
            item_namespace(ImportTaskType::ClusterMigration, None, "T"),
            "default"
        );
        assert_eq!(
            item_namespace(ImportTaskType::IntoNamespace, Some("x"), "x%T"),
            "x"
        );
    }
}
