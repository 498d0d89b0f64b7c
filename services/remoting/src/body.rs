//! Typed bodies of the admin/NameServer calls Ferry makes, read through the
//! tolerant fastjson parser (`from_body`). Field names and defaults follow the Java
//! classes; missing fields take Java's field initialisers.
//!
//! `TopicConfig`, `SubscriptionGroupConfig` and their wrappers keep unknown fields in
//! `extra` so an export → import round trip does not drop settings newer brokers
//! added. Bodies Ferry sends (`to_body`) are standard JSON, which Java parses too.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codes::LanguageCode;
use crate::error::{RemotingError, Result};
use crate::fastjson;

/// Unknown JSON fields kept for write-back.
pub type Extra = serde_json::Map<String, serde_json::Value>;

macro_rules! body_io {
    ($($t:ty),* $(,)?) => {$(
        impl $t {
            /// Parses a Java (fastjson) or standard JSON body.
            pub fn from_body(body: &[u8]) -> Result<Self> {
                fastjson::from_slice(body)
            }
        }
    )*};
}

macro_rules! body_out {
    ($($t:ty),* $(,)?) => {$(
        impl $t {
            /// Standard JSON body with Java field names.
            pub fn to_body(&self) -> Result<Vec<u8>> {
                serde_json::to_vec(self).map_err(|e| RemotingError::unencodable(e))
            }
        }
    )*};
}

// ------------------------------------------------------------------ common

/// `DataVersion`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataVersion {
    pub state_version: i64,
    pub timestamp: i64,
    /// `AtomicLong` in Java, written as a number.
    pub counter: i64,
}

/// `KVTable` (`GET_KVLIST_BY_NAMESPACE`, `GET_BROKER_RUNTIME_INFO`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KVTable {
    pub table: BTreeMap<String, String>,
}

/// `TopicList` (`GET_ALL_TOPIC_LIST_FROM_NAMESERVER`, `GET_TOPICS_BY_CLUSTER`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicList {
    /// A Java `Set`: sorted and de-duplicated here.
    pub topic_list: BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// `GetConsumerListByGroupResponseBody` (`GET_CONSUMER_LIST_BY_GROUP`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GetConsumerListByGroupResponseBody {
    pub consumer_id_list: Vec<String>,
}

// ------------------------------------------------------------------ topics

fn default_queue_nums() -> i32 {
    16
}

/// `TopicConfig` (common/.../TopicConfig.java).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    /// `"SINGLE_TAG"` / `"MULTI_TAG"` (enum name).
    pub topic_filter_type: String,
    pub topic_sys_flag: i32,
    pub order: bool,
    /// Stored without the `+` prefix (e.g. `message.type` -> `NORMAL`).
    pub attributes: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            topic_name: String::new(),
            read_queue_nums: default_queue_nums(),
            write_queue_nums: default_queue_nums(),
            perm: 6,
            topic_filter_type: "SINGLE_TAG".to_string(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
            extra: Extra::new(),
        }
    }
}

/// `TopicConfigSerializeWrapper` / `TopicConfigAndMappingSerializeWrapper`
/// (`GET_ALL_TOPIC_CONFIG`). Mapping tables of 5.x static topics stay in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
    #[serde(flatten)]
    pub extra: Extra,
}

// ------------------------------------------------------------------ groups

/// `ExponentialRetryPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExponentialRetryPolicy {
    pub initial: i64,
    pub max: i64,
    pub multiplier: i64,
}

impl Default for ExponentialRetryPolicy {
    fn default() -> Self {
        ExponentialRetryPolicy {
            initial: 5_000,
            max: 7_200_000,
            multiplier: 2,
        }
    }
}

/// `CustomizedRetryPolicy`: delays in ms per retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomizedRetryPolicy {
    pub next: Vec<i64>,
}

/// `GroupRetryPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GroupRetryPolicy {
    /// `"CUSTOMIZED"` / `"EXPONENTIAL"`.
    #[serde(rename = "type")]
    pub policy_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for GroupRetryPolicy {
    fn default() -> Self {
        GroupRetryPolicy {
            policy_type: "CUSTOMIZED".to_string(),
            exponential_retry_policy: None,
            customized_retry_policy: None,
            extra: Extra::new(),
        }
    }
}

/// `SimpleSubscriptionData`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SimpleSubscriptionData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    pub version: i64,
}

/// `SubscriptionGroupConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    pub consume_message_orderly: bool,
    pub retry_queue_nums: i32,
    pub retry_max_times: i32,
    pub group_retry_policy: GroupRetryPolicy,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    pub group_sys_flag: i32,
    pub consume_timeout_minute: i32,
    /// Java `Set`, nullable (absent in 4.x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data_set: Option<Vec<SimpleSubscriptionData>>,
    pub attributes: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            group_retry_policy: GroupRetryPolicy::default(),
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            subscription_data_set: None,
            attributes: BTreeMap::new(),
            extra: Extra::new(),
        }
    }
}

/// `SubscriptionGroupWrapper` (`GET_ALL_SUBSCRIPTIONGROUP_CONFIG`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// group -> topic -> forbidden perm bits.
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
    #[serde(flatten)]
    pub extra: Extra,
}

// ------------------------------------------------------------------ stats

/// `MessageQueue`: the identity of a queue. Ordered like Java's `compareTo`
/// (topic, brokerName, queueId).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

/// `OffsetWrapper` (per-queue consumer progress).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OffsetWrapper {
    pub broker_offset: i64,
    pub consumer_offset: i64,
    pub pull_offset: i64,
    pub last_timestamp: i64,
}

/// `ConsumeStats` (`GET_CONSUME_STATS`). fastjson writes `offsetTable` with inline
/// `MessageQueue` object keys; here it is a list of pairs in body order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumeStats {
    #[serde(deserialize_with = "fastjson::deserialize_entries")]
    pub offset_table: Vec<(MessageQueue, OffsetWrapper)>,
    /// NaN/Infinity (written as `null` by fastjson) read as 0.
    pub consume_tps: f64,
}

impl ConsumeStats {
    /// Java `computeTotalDiff`: Σ(brokerOffset − consumerOffset).
    pub fn total_diff(&self) -> i64 {
        self.offset_table
            .iter()
            .map(|(_, o)| o.broker_offset.saturating_sub(o.consumer_offset))
            .fold(0i64, i64::saturating_add)
    }
}

/// `TopicOffset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicOffset {
    pub min_offset: i64,
    pub max_offset: i64,
    pub last_update_timestamp: i64,
}

/// `TopicStatsTable` (`GET_TOPIC_STATS_INFO`), MessageQueue-keyed like ConsumeStats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicStatsTable {
    #[serde(deserialize_with = "fastjson::deserialize_entries")]
    pub offset_table: Vec<(MessageQueue, TopicOffset)>,
    pub topic_put_tps: f64,
}

// ------------------------------------------------------------------ connections

impl Serialize for LanguageCode {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for LanguageCode {
    /// Enum name (any case) or ordinal; unknown names read as `OTHER`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LanguageCode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a language name or code")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                s: &str,
            ) -> std::result::Result<LanguageCode, E> {
                Ok(LanguageCode::from_name(s).unwrap_or(LanguageCode::Other))
            }
            fn visit_i64<E: serde::de::Error>(
                self,
                n: i64,
            ) -> std::result::Result<LanguageCode, E> {
                Ok(u8::try_from(n).map_or(LanguageCode::Other, LanguageCode::from_code))
            }
            fn visit_u64<E: serde::de::Error>(
                self,
                n: u64,
            ) -> std::result::Result<LanguageCode, E> {
                Ok(u8::try_from(n).map_or(LanguageCode::Other, LanguageCode::from_code))
            }
            fn visit_f64<E: serde::de::Error>(
                self,
                _: f64,
            ) -> std::result::Result<LanguageCode, E> {
                Ok(LanguageCode::Other)
            }
            fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<LanguageCode, E> {
                Ok(LanguageCode::Java)
            }
        }
        d.deserialize_any(V)
    }
}

/// `Connection`: one client channel as the broker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Connection {
    pub client_id: String,
    pub client_addr: String,
    pub language: LanguageCode,
    pub version: i32,
}

/// `SubscriptionData` (heartbeat / consumer connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub topic: String,
    pub sub_string: String,
    pub tags_set: Vec<String>,
    pub code_set: Vec<i32>,
    pub sub_version: i64,
    pub expression_type: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            topic: String::new(),
            sub_string: String::new(),
            tags_set: Vec::new(),
            code_set: Vec::new(),
            sub_version: 0,
            expression_type: "TAG".to_string(),
        }
    }
}

/// `ConsumerConnection` (`GET_CONSUMER_CONNECTION_LIST`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerConnection {
    pub connection_set: Vec<Connection>,
    /// topic -> subscription.
    pub subscription_table: BTreeMap<String, SubscriptionData>,
    /// `CONSUME_ACTIVELY` / `CONSUME_PASSIVELY` / `CONSUME_POP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume_type: Option<String>,
    /// `BROADCASTING` / `CLUSTERING`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume_from_where: Option<String>,
}

/// `ProducerConnection` (`GET_PRODUCER_CONNECTION_LIST`): only `connectionSet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProducerConnection {
    pub connection_set: Vec<Connection>,
}

/// `DelayOffsetSerializeWrapper` (`GET_ALL_DELAY_OFFSET`, the broker's `delayOffset.json`):
/// per delay level, the offset in `SCHEDULE_TOPIC_XXXX` queue `level − 1` up to which
/// scheduled messages have been delivered. fastjson writes the integer keys unquoted, the
/// Rust broker quoted; both read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DelayOffsetSerializeWrapper {
    pub offset_table: BTreeMap<i32, i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
}

body_io!(
    DataVersion,
    DelayOffsetSerializeWrapper,
    KVTable,
    TopicList,
    GetConsumerListByGroupResponseBody,
    TopicConfig,
    TopicConfigSerializeWrapper,
    SubscriptionGroupConfig,
    SubscriptionGroupWrapper,
    ConsumeStats,
    TopicStatsTable,
    ConsumerConnection,
    ProducerConnection,
);

body_out!(
    KVTable,
    TopicList,
    GetConsumerListByGroupResponseBody,
    TopicConfig,
    TopicConfigSerializeWrapper,
    SubscriptionGroupConfig,
    SubscriptionGroupWrapper,
    ConsumerConnection,
    ProducerConnection,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_config_defaults_and_extra() {
        let tc = TopicConfig::from_body(br#"{"topicName":"T","futureField":{"a":1},"perm":"4"}"#)
            .unwrap();
        assert_eq!(tc.read_queue_nums, 16);
        assert_eq!(tc.perm, 4);
        assert_eq!(tc.topic_filter_type, "SINGLE_TAG");
        assert_eq!(tc.extra["futureField"], serde_json::json!({"a":1}));
        let out: serde_json::Value = serde_json::from_slice(&tc.to_body().unwrap()).unwrap();
        assert_eq!(out["futureField"]["a"], 1);
        assert_eq!(out["topicName"], "T");
    }

    #[test]
    fn consume_stats_forms() {
        let fj = br#"{"consumeTps":null,"offsetTable":{{"brokerName":"b","queueId":1,"topic":"T"}:{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":0,"pullOffset":5}}}"#;
        let cs = ConsumeStats::from_body(fj).unwrap();
        assert_eq!(cs.consume_tps, 0.0);
        assert_eq!(cs.offset_table[0].0.queue_id, 1);
        assert_eq!(cs.total_diff(), 6);
        // Stringified-key form (some SDKs) and our own array-of-pairs form.
        let stringified = br#"{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":1,\"topic\":\"T\"}":{"brokerOffset":10,"consumerOffset":4,"pullOffset":5}}}"#;
        assert_eq!(
            ConsumeStats::from_body(stringified).unwrap().offset_table,
            cs.offset_table
        );
        let ours = serde_json::to_vec(&cs).unwrap();
        assert_eq!(ConsumeStats::from_body(&ours).unwrap(), cs);
    }

    #[test]
    fn delay_offsets_in_both_dialects() {
        let java = br#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1},"offsetTable":{1:5,18:2}}"#;
        let rust = br#"{"offsetTable":{"1":5,"18":2},"dataVersion":{"stateVersion":0,"timestamp":1,"counter":3}}"#;
        for body in [&java[..], &rust[..]] {
            let w = DelayOffsetSerializeWrapper::from_body(body).unwrap();
            assert_eq!(w.offset_table, BTreeMap::from([(1, 5), (18, 2)]));
            assert_eq!(w.data_version.unwrap().counter, 3);
        }
        let empty = DelayOffsetSerializeWrapper::from_body(br#"{"offsetTable":null}"#).unwrap();
        assert!(empty.offset_table.is_empty());
    }

    #[test]
    fn language_in_connection() {
        let pc = ProducerConnection::from_body(
            br#"{"connectionSet":[{"clientId":"a","clientAddr":"1.2.3.4:5","language":"GO","version":317},{"language":1}]}"#,
        )
        .unwrap();
        assert_eq!(pc.connection_set[0].language, LanguageCode::Go);
        assert_eq!(pc.connection_set[1].language, LanguageCode::Cpp);
    }
}
