//! Typed request/response headers, flattened into `extFields` with the canonical Java
//! field names (Java's `makeCustomHeaderToNet`: `value.toString()`, null fields
//! omitted).
//!
//! Parsing is lenient like Java's `decodeCommandCustomHeader`: unknown keys are
//! ignored, numbers are read from strings (whitespace trimmed), booleans accept
//! `true`/`false` in any case and `1`/`0` (anything else reads as `false`, like
//! `Boolean.parseBoolean`), an unparsable optional number is treated as absent
//! (Java logs and leaves it null). A missing *required* field is an error here,
//! because the request cannot be served without it.

use std::collections::BTreeMap;

use crate::error::{RemotingError, Result};
use crate::fastjson::parse_bool_lenient;

/// A header that maps to/from `extFields`.
pub trait CommandHeader: Sized {
    fn to_ext_fields(&self) -> BTreeMap<String, String>;
    fn from_ext_fields(fields: &BTreeMap<String, String>) -> Result<Self>;
}

/// Default template topic for auto-creation (`TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const DEFAULT_TOPIC: &str = "TBW102";

struct W(BTreeMap<String, String>);

impl W {
    fn new() -> Self {
        W(BTreeMap::new())
    }
    fn s(&mut self, k: &str, v: &str) -> &mut Self {
        self.0.insert(k.to_string(), v.to_string());
        self
    }
    fn os(&mut self, k: &str, v: &Option<String>) -> &mut Self {
        if let Some(v) = v {
            self.s(k, v);
        }
        self
    }
    fn n(&mut self, k: &str, v: impl ToString) -> &mut Self {
        self.0.insert(k.to_string(), v.to_string());
        self
    }
    fn on<T: ToString>(&mut self, k: &str, v: &Option<T>) -> &mut Self {
        if let Some(v) = v {
            self.n(k, v.to_string());
        }
        self
    }
    fn done(&mut self) -> BTreeMap<String, String> {
        std::mem::take(&mut self.0)
    }
}

struct R<'a> {
    f: &'a BTreeMap<String, String>,
    header: &'static str,
}

impl<'a> R<'a> {
    fn new(f: &'a BTreeMap<String, String>, header: &'static str) -> Self {
        R { f, header }
    }

    fn opt_str(&self, k: &str) -> Option<String> {
        self.f.get(k).cloned()
    }

    fn req_str(&self, k: &str) -> Result<String> {
        self.opt_str(k).ok_or_else(|| self.missing(k))
    }

    fn missing(&self, k: &str) -> RemotingError {
        RemotingError::malformed(format_args!("{}: missing required field {k}", self.header))
    }

    fn opt_bool(&self, k: &str) -> Option<bool> {
        self.f
            .get(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse_bool_lenient(v).unwrap_or(false))
    }

    fn opt_num<T: std::str::FromStr>(&self, k: &str) -> Option<T> {
        let raw = self.f.get(k)?;
        let t = raw.trim();
        if t.is_empty() {
            return None;
        }
        match t.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::debug!(header = self.header, field = k, value = %raw, "ignoring unparsable header field");
                None
            }
        }
    }

    fn req_num<T: std::str::FromStr>(&self, k: &str) -> Result<T> {
        match self.f.get(k) {
            None => Err(self.missing(k)),
            Some(raw) => raw.trim().parse().map_err(|_| {
                RemotingError::malformed(format_args!(
                    "{}: field {k} = {raw:?} is not a number",
                    self.header
                ))
            }),
        }
    }
}

/// Optional fields of Java's `RpcRequestHeader`/`TopicRequestHeader` base classes
/// (namespace, broker name, oneway, logic queue). Carried through, never required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcFields {
    /// `ns`: namespace.
    pub ns: Option<String>,
    /// `nsd`: namespace already decoded.
    pub nsd: Option<bool>,
    /// `bname`: target broker name (5.x proxy / static topics).
    pub bname: Option<String>,
    /// `oway`: oneway.
    pub oway: Option<bool>,
    /// `lo`: logic queue (static topics; `TopicRequestHeader` only).
    pub lo: Option<bool>,
}

impl RpcFields {
    fn write(&self, w: &mut W) {
        w.os("ns", &self.ns)
            .on("nsd", &self.nsd)
            .os("bname", &self.bname)
            .on("oway", &self.oway)
            .on("lo", &self.lo);
    }

    fn read(r: &R<'_>) -> Self {
        RpcFields {
            ns: r.opt_str("ns"),
            nsd: r.opt_bool("nsd"),
            bname: r.opt_str("bname"),
            oway: r.opt_bool("oway"),
            lo: r.opt_bool("lo"),
        }
    }
}

/// `GET_ROUTEINFO_BY_TOPIC` (105).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRouteInfoRequestHeader {
    pub topic: String,
    /// When true the NameServer answers standard JSON regardless of `version`.
    pub accept_standard_json_only: Option<bool>,
    pub rpc: RpcFields,
}

impl CommandHeader for GetRouteInfoRequestHeader {
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        let mut w = W::new();
        w.s("topic", &self.topic)
            .on("acceptStandardJsonOnly", &self.accept_standard_json_only);
        self.rpc.write(&mut w);
        w.done()
    }
    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let r = R::new(f, "GetRouteInfoRequestHeader");
        Ok(GetRouteInfoRequestHeader {
            topic: r.req_str("topic")?,
            accept_standard_json_only: r.opt_bool("acceptStandardJsonOnly"),
            rpc: RpcFields::read(&r),
        })
    }
}

/// `GET_KV_CONFIG` (101) and the key part of `DELETE_KV_CONFIG` (102).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetKVConfigRequestHeader {
    pub namespace: String,
    pub key: String,
}

impl CommandHeader for GetKVConfigRequestHeader {
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        W::new()
            .s("namespace", &self.namespace)
            .s("key", &self.key)
            .done()
    }
    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let r = R::new(f, "GetKVConfigRequestHeader");
        Ok(GetKVConfigRequestHeader {
            namespace: r.req_str("namespace")?,
            key: r.req_str("key")?,
        })
    }
}

/// Response header of `GET_KV_CONFIG` (101).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetKVConfigResponseHeader {
    pub value: Option<String>,
}

impl CommandHeader for GetKVConfigResponseHeader {
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        W::new().os("value", &self.value).done()
    }
    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let r = R::new(f, "GetKVConfigResponseHeader");
        Ok(GetKVConfigResponseHeader {
            value: r.opt_str("value"),
        })
    }
}

/// `GET_KVLIST_BY_NAMESPACE` (219).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetKVListByNamespaceRequestHeader {
    pub namespace: String,
}

impl CommandHeader for GetKVListByNamespaceRequestHeader {
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        W::new().s("namespace", &self.namespace).done()
    }
    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let r = R::new(f, "GetKVListByNamespaceRequestHeader");
        Ok(GetKVListByNamespaceRequestHeader {
            namespace: r.req_str("namespace")?,
        })
    }
}

/// `UPDATE_AND_CREATE_TOPIC` (17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicRequestHeader {
    pub topic: String,
    /// The Java client always sends `"TBW102"`.
    pub default_topic: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    /// `"SINGLE_TAG"` / `"MULTI_TAG"`.
    pub topic_filter_type: String,
    pub topic_sys_flag: Option<i32>,
    pub order: bool,
    /// `AttributeParser` modification string: `+key=value,+k2=v2` (a `+` is required
    /// on every key when creating; see [`CreateTopicRequestHeader::attributes_from_map`]).
    pub attributes: Option<String>,
    pub force: Option<bool>,
    pub rpc: RpcFields,
}

impl Default for CreateTopicRequestHeader {
    fn default() -> Self {
        CreateTopicRequestHeader {
            topic: String::new(),
            default_topic: DEFAULT_TOPIC.to_string(),
            read_queue_nums: 16,
            write_queue_nums: 16,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".to_string(),
            topic_sys_flag: Some(0),
            order: false,
            attributes: None,
            force: None,
            rpc: RpcFields::default(),
        }
    }
}

impl CreateTopicRequestHeader {
    /// Builds the header the Java admin client sends for a `TopicConfig`
    /// (`MQClientAPIImpl.createTopic`).
    pub fn from_topic_config(tc: &crate::body::TopicConfig) -> Self {
        CreateTopicRequestHeader {
            topic: tc.topic_name.clone(),
            default_topic: DEFAULT_TOPIC.to_string(),
            read_queue_nums: tc.read_queue_nums,
            write_queue_nums: tc.write_queue_nums,
            perm: tc.perm,
            topic_filter_type: tc.topic_filter_type.clone(),
            topic_sys_flag: Some(tc.topic_sys_flag),
            order: tc.order,
            attributes: Self::attributes_from_map(&tc.attributes),
            force: None,
            rpc: RpcFields::default(),
        }
    }

    /// Stored topic attributes are kept without the `+` prefix, but the broker's
    /// `AttributeUtil` rejects creation keys lacking it, so add `+` where missing.
    /// Empty values cannot be expressed (`AttributeParser.parseToMap` fails on
    /// them) and are skipped. Keys are sorted for a deterministic header.
    pub fn attributes_from_map(attrs: &BTreeMap<String, String>) -> Option<String> {
        let parts: Vec<String> = attrs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                if k.starts_with('+') {
                    format!("{k}={v}")
                } else {
                    format!("+{k}={v}")
                }
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

impl CommandHeader for CreateTopicRequestHeader {
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        let mut w = W::new();
        w.s("topic", &self.topic)
            .s("defaultTopic", &self.default_topic)
            .n("readQueueNums", self.read_queue_nums)
            .n("writeQueueNums", self.write_queue_nums)
            .n("perm", self.perm)
            .s("topicFilterType", &self.topic_filter_type)
            .on("topicSysFlag", &self.topic_sys_flag)
            .n("order", self.order)
            .os("attributes", &self.attributes)
            .on("force", &self.force);
        self.rpc.write(&mut w);
        w.done()
    }
    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let r = R::new(f, "CreateTopicRequestHeader");
        Ok(CreateTopicRequestHeader {
            topic: r.req_str("topic")?,
            default_topic: r
                .opt_str("defaultTopic")
                .unwrap_or_else(|| DEFAULT_TOPIC.to_string()),
            read_queue_nums: r.req_num("readQueueNums")?,
            write_queue_nums: r.req_num("writeQueueNums")?,
            perm: r.req_num("perm")?,
            topic_filter_type: r
                .opt_str("topicFilterType")
                .unwrap_or_else(|| "SINGLE_TAG".to_string()),
            topic_sys_flag: r.opt_num("topicSysFlag"),
            order: r.opt_bool("order").unwrap_or(false),
            attributes: r.opt_str("attributes"),
            force: r.opt_bool("force"),
            rpc: RpcFields::read(&r),
        })
    }
}

/// `GET_CONSUME_STATS` (208).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetConsumeStatsRequestHeader {
    pub consumer_group: String,
    /// Absent: all topics the group has offsets for on that broker.
    pub topic: Option<String>,
    /// 5.x `topicList`, `;`-joined on the wire.
    pub topic_list: Option<Vec<String>>,
    pub rpc: RpcFields,
}

impl CommandHeader for GetConsumeStatsRequestHeader {
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        let mut w = W::new();
        w.s("consumerGroup", &self.consumer_group)
            .os("topic", &self.topic)
            .os("topicList", &self.topic_list.as_ref().map(|l| l.join(";")));
        self.rpc.write(&mut w);
        w.done()
    }
    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let r = R::new(f, "GetConsumeStatsRequestHeader");
        Ok(GetConsumeStatsRequestHeader {
            consumer_group: r.req_str("consumerGroup")?,
            topic: r.opt_str("topic"),
            topic_list: r.opt_str("topicList").map(|s| {
                s.split(';')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            }),
            rpc: RpcFields::read(&r),
        })
    }
}

macro_rules! single_field_header {
    ($(#[$meta:meta])* $name:ident, $field:ident, $key:literal, rpc) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            pub $field: String,
            pub rpc: RpcFields,
        }

        impl CommandHeader for $name {
            fn to_ext_fields(&self) -> BTreeMap<String, String> {
                let mut w = W::new();
                w.s($key, &self.$field);
                self.rpc.write(&mut w);
                w.done()
            }
            fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
                let r = R::new(f, stringify!($name));
                Ok($name {
                    $field: r.req_str($key)?,
                    rpc: RpcFields::read(&r),
                })
            }
        }
    };
    ($(#[$meta:meta])* $name:ident, $field:ident, $key:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            pub $field: String,
        }

        impl CommandHeader for $name {
            fn to_ext_fields(&self) -> BTreeMap<String, String> {
                W::new().s($key, &self.$field).done()
            }
            fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
                let r = R::new(f, stringify!($name));
                Ok($name {
                    $field: r.req_str($key)?,
                })
            }
        }
    };
}

single_field_header!(
    /// `GET_TOPIC_STATS_INFO` (202).
    GetTopicStatsInfoRequestHeader, topic, "topic", rpc
);
single_field_header!(
    /// `GET_CONSUMER_CONNECTION_LIST` (203).
    GetConsumerConnectionListRequestHeader, consumer_group, "consumerGroup", rpc
);
single_field_header!(
    /// `GET_PRODUCER_CONNECTION_LIST` (204).
    GetProducerConnectionListRequestHeader, producer_group, "producerGroup", rpc
);
single_field_header!(
    /// `GET_CONSUMER_LIST_BY_GROUP` (38).
    GetConsumerListByGroupRequestHeader, consumer_group, "consumerGroup", rpc
);
single_field_header!(
    /// `GET_TOPICS_BY_CLUSTER` (224).
    GetTopicsByClusterRequestHeader, cluster, "cluster"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn route_header_lenient() {
        for (raw, want) in [
            ("true", Some(true)),
            ("TRUE", Some(true)),
            ("1", Some(true)),
            ("0", Some(false)),
            ("false", Some(false)),
            ("yes", Some(false)),
            ("", None),
        ] {
            let h = GetRouteInfoRequestHeader::from_ext_fields(&map(&[
                ("topic", "T"),
                ("acceptStandardJsonOnly", raw),
                ("bname", "broker-a"),
                ("unknown", "x"),
            ]))
            .unwrap();
            assert_eq!(h.accept_standard_json_only, want, "{raw}");
            assert_eq!(h.rpc.bname.as_deref(), Some("broker-a"));
        }
        let err = GetRouteInfoRequestHeader::from_ext_fields(&map(&[])).unwrap_err();
        assert!(err.to_string().contains("topic"), "{err}");
    }

    #[test]
    fn create_topic_roundtrip_and_java_keys() {
        let h = CreateTopicRequestHeader {
            topic: "T".into(),
            read_queue_nums: 8,
            write_queue_nums: 4,
            order: true,
            attributes: Some("+message.type=FIFO".into()),
            ..Default::default()
        };
        let f = h.to_ext_fields();
        let keys: Vec<_> = f.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "attributes",
                "defaultTopic",
                "order",
                "perm",
                "readQueueNums",
                "topic",
                "topicFilterType",
                "topicSysFlag",
                "writeQueueNums"
            ]
        );
        assert_eq!(f["order"], "true");
        assert_eq!(f["defaultTopic"], "TBW102");
        assert_eq!(CreateTopicRequestHeader::from_ext_fields(&f).unwrap(), h);
        let lenient = CreateTopicRequestHeader::from_ext_fields(&map(&[
            ("topic", "T"),
            ("readQueueNums", " 8 "),
            ("writeQueueNums", "8"),
            ("perm", "6"),
            ("topicSysFlag", "x"),
            ("order", "1"),
        ]))
        .unwrap();
        assert_eq!(lenient.read_queue_nums, 8);
        assert_eq!(lenient.topic_sys_flag, None);
        assert!(lenient.order);
        assert!(
            CreateTopicRequestHeader::from_ext_fields(&map(&[("topic", "T"), ("perm", "rw")]))
                .is_err()
        );
    }

    #[test]
    fn attributes_get_plus_prefix() {
        let attrs = map(&[("message.type", "NORMAL"), ("+a", "b"), ("empty", "")]);
        assert_eq!(
            CreateTopicRequestHeader::attributes_from_map(&attrs).as_deref(),
            Some("+a=b,+message.type=NORMAL")
        );
        assert_eq!(
            CreateTopicRequestHeader::attributes_from_map(&map(&[])),
            None
        );
    }

    #[test]
    fn simple_headers() {
        let h = GetConsumeStatsRequestHeader {
            consumer_group: "G".into(),
            topic: None,
            topic_list: Some(vec!["A".into(), "B".into()]),
            ..Default::default()
        };
        let f = h.to_ext_fields();
        assert_eq!(f, map(&[("consumerGroup", "G"), ("topicList", "A;B")]));
        assert_eq!(
            GetConsumeStatsRequestHeader::from_ext_fields(&f).unwrap(),
            h
        );
        let p = GetProducerConnectionListRequestHeader {
            producer_group: "PG".into(),
            ..Default::default()
        };
        assert_eq!(p.to_ext_fields(), map(&[("producerGroup", "PG")]));
        let c = GetTopicsByClusterRequestHeader {
            cluster: "C".into(),
        };
        assert_eq!(
            GetTopicsByClusterRequestHeader::from_ext_fields(&c.to_ext_fields()).unwrap(),
            c
        );
        let kv = GetKVConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "T".into(),
        };
        assert_eq!(
            kv.to_ext_fields(),
            map(&[("key", "T"), ("namespace", "ORDER_TOPIC_CONFIG")])
        );
    }
}
