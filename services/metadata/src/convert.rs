//! From scanned broker configs to the file formats.
//!
//! A topic or group lives on every master of a cluster that hosts it, each with its own
//! config. mqadmin's cluster export (ExportMetadataCommand) merges them by name: the last
//! broker's config wins, except that queue counts (`readQueueNums`, `writeQueueNums`) and a
//! group's `retryQueueNums` are *summed* over brokers, so the file states the cluster-wide
//! total. [`ExportBuilder`] does exactly that, so Ferry's file and mqadmin's agree.

use std::str::FromStr;

use ferry_core::{TargetType, V4_TARGET_DEFAULT_NAMESPACE, namespace_or_default};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};

use crate::json::MetadataExport;
use crate::xlsx::{GroupRow, TopicRow};

/// Topic attribute holding the 5.x message type (`TopicAttributes.TOPIC_MESSAGE_TYPE_ATTRIBUTE`).
pub const MESSAGE_TYPE_ATTRIBUTE: &str = "message.type";

/// Message type of a topic (5.x `TopicMessageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    Normal,
    Fifo,
    Delay,
    Transaction,
    Mixed,
}

impl MessageType {
    pub const ALL: [MessageType; 5] = [
        MessageType::Normal,
        MessageType::Fifo,
        MessageType::Delay,
        MessageType::Transaction,
        MessageType::Mixed,
    ];

    /// The attribute value RocketMQ stores, e.g. `FIFO`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Normal => "NORMAL",
            MessageType::Fifo => "FIFO",
            MessageType::Delay => "DELAY",
            MessageType::Transaction => "TRANSACTION",
            MessageType::Mixed => "MIXED",
        }
    }

    /// The type the topic declares (`message.type` attribute, 5.x); `None` when it declares
    /// none (every 4.x topic) or an unknown value.
    pub fn declared(tc: &TopicConfig) -> Option<MessageType> {
        tc.attributes
            .get(MESSAGE_TYPE_ATTRIBUTE)
            .and_then(|v| v.parse().ok())
    }

    /// The type a 5.x target should get: the declared one, else FIFO for an ordered topic,
    /// else NORMAL. A 4.x source's delay or transactional use is not visible in its metadata,
    /// so such topics come out NORMAL and need a person's correction.
    pub fn effective(tc: &TopicConfig) -> MessageType {
        Self::declared(tc).unwrap_or(if tc.order {
            MessageType::Fifo
        } else {
            MessageType::Normal
        })
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        MessageType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown message type {s:?}: expected NORMAL, FIFO, DELAY, TRANSACTION or MIXED"
                )
            })
    }
}

/// Merges per-broker configs into one cluster export the way mqadmin does (see the module
/// docs). Feed brokers in a stable order (e.g. by broker name) for reproducible output.
#[derive(Debug, Default)]
pub struct ExportBuilder {
    export: MetadataExport,
}

impl ExportBuilder {
    /// An empty export stamped with `export_time_ms`.
    pub fn new(export_time_ms: i64) -> Self {
        ExportBuilder {
            export: MetadataExport {
                export_time: export_time_ms,
                ..Default::default()
            },
        }
    }

    /// Adds one broker's config of a topic.
    pub fn add_topic(&mut self, tc: &TopicConfig) {
        let mut merged = tc.clone();
        if let Some(prev) = self.export.topic_config_table.get(&tc.topic_name) {
            merged.read_queue_nums = prev.read_queue_nums.saturating_add(tc.read_queue_nums);
            merged.write_queue_nums = prev.write_queue_nums.saturating_add(tc.write_queue_nums);
        }
        self.export
            .topic_config_table
            .insert(tc.topic_name.clone(), merged);
    }

    /// Adds one broker's config of a group.
    pub fn add_group(&mut self, g: &SubscriptionGroupConfig) {
        let mut merged = g.clone();
        if let Some(prev) = self.export.subscription_group_table.get(&g.group_name) {
            merged.retry_queue_nums = prev.retry_queue_nums.saturating_add(g.retry_queue_nums);
        }
        self.export
            .subscription_group_table
            .insert(g.group_name.clone(), merged);
    }

    pub fn finish(self) -> MetadataExport {
        self.export
    }
}

/// Splits a full name for a spreadsheet row: on a 4.x target, the namespace column gets the
/// part before `%` (or `Default`) and the name column the rest; on 5.x the full name stays.
fn split_for(target: TargetType, full: &str) -> (Option<String>, String) {
    match target {
        TargetType::V4 => {
            let parsed = namespace_or_default(full, V4_TARGET_DEFAULT_NAMESPACE);
            let resource = parsed.resource();
            (parsed.namespace, resource)
        }
        TargetType::V5 => (None, full.to_string()),
    }
}

/// The spreadsheet row of a (merged) topic config for `target`.
pub fn topic_row(tc: &TopicConfig, target: TargetType) -> TopicRow {
    let (namespace, topic) = split_for(target, &tc.topic_name);
    let message_type = match target {
        TargetType::V4 => None,
        TargetType::V5 => Some(MessageType::effective(tc)),
    };
    TopicRow {
        namespace,
        topic,
        message_type,
        read_queue_nums: tc.read_queue_nums,
        write_queue_nums: tc.write_queue_nums,
        perm: tc.perm,
        // On 5.x order is the FIFO message type (the template has no Order column).
        order: match message_type {
            None => tc.order,
            Some(t) => t == MessageType::Fifo,
        },
        remark: String::new(),
    }
}

/// The spreadsheet row of a (merged) group config for `target`.
pub fn group_row(g: &SubscriptionGroupConfig, target: TargetType) -> GroupRow {
    let (namespace, group) = split_for(target, &g.group_name);
    GroupRow {
        namespace,
        group,
        consume_orderly: g.consume_message_orderly,
        consume_broadcast_enable: g.consume_broadcast_enable,
        consume_enable: g.consume_enable,
        retry_max_times: g.retry_max_times,
        retry_queue_nums: g.retry_queue_nums,
        remark: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, q: i32) -> TopicConfig {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: q,
            write_queue_nums: q,
            ..Default::default()
        }
    }

    #[test]
    fn builder_sums_queues_like_mqadmin() {
        let mut b = ExportBuilder::new(7);
        b.add_topic(&topic("T", 4));
        let mut second = topic("T", 8);
        second.perm = 4;
        b.add_topic(&second);
        b.add_topic(&topic("U", 2));
        let g = SubscriptionGroupConfig {
            group_name: "G".into(),
            retry_queue_nums: 1,
            ..Default::default()
        };
        b.add_group(&g);
        b.add_group(&g);
        let e = b.finish();
        assert_eq!(e.export_time, 7);
        let t = &e.topic_config_table["T"];
        assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (12, 12, 4));
        assert_eq!(e.topic_config_table["U"].read_queue_nums, 2);
        assert_eq!(e.subscription_group_table["G"].retry_queue_nums, 2);
    }

    #[test]
    fn message_types() {
        let mut t = topic("T", 1);
        assert_eq!(MessageType::declared(&t), None);
        assert_eq!(MessageType::effective(&t), MessageType::Normal);
        t.order = true;
        assert_eq!(MessageType::effective(&t), MessageType::Fifo);
        t.attributes
            .insert(MESSAGE_TYPE_ATTRIBUTE.into(), "TRANSACTION".into());
        assert_eq!(MessageType::effective(&t), MessageType::Transaction);
        assert_eq!("delay".parse::<MessageType>(), Ok(MessageType::Delay));
        assert!("x".parse::<MessageType>().is_err());
    }

    #[test]
    fn rows_split_namespaces_for_4x_only() {
        let t = topic("ns1%Orders", 4);
        let r4 = topic_row(&t, TargetType::V4);
        assert_eq!(
            (r4.namespace.as_deref(), r4.topic.as_str()),
            (Some("ns1"), "Orders")
        );
        assert_eq!(r4.message_type, None);
        let plain = topic_row(&topic("Orders", 4), TargetType::V4);
        assert_eq!(plain.namespace.as_deref(), Some("Default"));
        let r5 = topic_row(&t, TargetType::V5);
        assert_eq!((r5.namespace, r5.topic.as_str()), (None, "ns1%Orders"));
        assert_eq!(r5.message_type, Some(MessageType::Normal));
        let g = SubscriptionGroupConfig {
            group_name: "ns1%G".into(),
            ..Default::default()
        };
        let gr = group_row(&g, TargetType::V4);
        assert_eq!(
            (gr.namespace.as_deref(), gr.group.as_str()),
            (Some("ns1"), "G")
        );
    }
}
