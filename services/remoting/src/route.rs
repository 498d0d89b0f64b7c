//! Route model (`TopicRouteData`, `ClusterInfo`) and the two JSON dialects a Java
//! NameServer writes them in.
//!
//! `GET_ROUTEINFO_BY_TOPIC` answers with standard JSON (fastjson `BrowserCompatible`:
//! quoted keys, ASCII-only) iff `version >= V4_9_4 (401) || acceptStandardJsonOnly`,
//! and with plain fastjson otherwise, where `brokerAddrs` keys are unquoted
//! (`{0:"ip:port"}`). Older Java clients and rocketmq-client-go (version 317, hand
//! parsing of the keys) depend on the unquoted form, so a router must reproduce the
//! switch exactly. Output is deterministic (lists sorted by broker name, maps by
//! key, fields in fastjson's alphabetical order) so every router replica and every
//! poll gives byte-identical answers (Go's route comparison is order-sensitive).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::codes::mq_version;
use crate::command::RemotingCommand;
use crate::error::Result;
use crate::fastjson;
use crate::jsonw;

/// `MixAll.MASTER_ID`.
pub const MASTER_ID: i64 = 0;

/// `QueueData`: one broker's queues of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    /// `PermName` bits: 4 read, 2 write, 1 inherit.
    pub perm: i32,
    pub topic_sys_flag: i32,
}

/// `BrokerData`: a broker group's addresses (id 0 = master).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    /// broker id -> `ip:port`. fastjson writes these keys unquoted on legacy paths.
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// 5.x only; `None` when the source (4.x) did not send it, and then not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_acting_master: Option<bool>,
}

impl BrokerData {
    /// The master address (id 0), if online.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }

    /// Master if present, else the lowest id (what admin reads fall back to).
    pub fn select_addr(&self) -> Option<&str> {
        self.master_addr()
            .or_else(|| self.broker_addrs.values().next().map(String::as_str))
    }

    fn sort_key(&self) -> (&str, &str, Option<&str>) {
        (&self.broker_name, &self.cluster, self.zone_name.as_deref())
    }
}

/// `TopicQueueMappingInfo` (5.x static topics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicQueueMappingInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub total_queues: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bname: Option<String>,
    pub epoch: i64,
    pub dirty: bool,
    /// logic queue id -> physical queue id (Integer keys: unquoted in fastjson).
    pub curr_id_map: BTreeMap<i32, i32>,
}

/// `TopicRouteData`, the body of a successful `GET_ROUTEINFO_BY_TOPIC`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicRouteData {
    /// `brokerName:queueNum;...` from KV namespace `ORDER_TOPIC_CONFIG`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    /// broker address -> filter server addresses (legacy, usually empty).
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<BTreeMap<String, TopicQueueMappingInfo>>,
}

impl TopicRouteData {
    /// Parses a route body in either dialect (and other SDKs' variants).
    pub fn from_body(body: &[u8]) -> Result<Self> {
        fastjson::from_slice(body)
    }

    /// Encodes in `dialect`; see [`encode_route`].
    pub fn encode(&self, dialect: RouteDialect) -> Vec<u8> {
        encode_route(self, dialect)
    }

    /// Sorts lists the way the encoder writes them (Java clients compare routes
    /// after `Collections.sort`; sorting here makes `==` match that).
    pub fn normalize(&mut self) {
        self.queue_datas.sort();
        self.broker_datas
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }
}

/// `ClusterInfo`, the body of `GET_BROKER_CLUSTER_INFO` (always plain fastjson from
/// a Java NameServer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterInfo {
    /// brokerName -> BrokerData.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// clusterName -> brokerNames.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterInfo {
    pub fn from_body(body: &[u8]) -> Result<Self> {
        fastjson::from_slice(body)
    }

    /// Encodes in `dialect`; see [`encode_cluster_info`].
    pub fn encode(&self, dialect: RouteDialect) -> Vec<u8> {
        encode_cluster_info(self, dialect)
    }
}

/// Which JSON a NameServer writes a route/cluster body in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteDialect {
    /// fastjson `BrowserCompatible | QuoteFieldNames | MapSortField`: standard JSON,
    /// integer keys quoted, non-ASCII escaped, longs outside ±2^53 as strings.
    Standard,
    /// plain fastjson `toJSONString`: integer map keys unquoted (`{0:"a"}`).
    Fastjson,
}

impl RouteDialect {
    /// Java `ClientRequestProcessor`: standard iff
    /// `version >= V4_9_4 || acceptStandardJsonOnly` (`null` counts as false).
    pub fn for_request(version: i32, accept_standard_json_only: impl Into<Option<bool>>) -> Self {
        if version >= mq_version::V4_9_4 || accept_standard_json_only.into().unwrap_or(false) {
            RouteDialect::Standard
        } else {
            RouteDialect::Fastjson
        }
    }

    /// The dialect for a `GET_ROUTEINFO_BY_TOPIC` request command.
    pub fn for_command(request: &RemotingCommand) -> Self {
        let accept = request
            .ext("acceptStandardJsonOnly")
            .and_then(fastjson::parse_bool_lenient);
        Self::for_request(request.version, accept)
    }

    fn quoted_keys(self) -> bool {
        self == RouteDialect::Standard
    }

    fn ascii_only(self) -> bool {
        self == RouteDialect::Standard
    }
}

struct Writer {
    out: String,
    dialect: RouteDialect,
}

impl Writer {
    fn str(&mut self, s: &str) {
        jsonw::write_str(&mut self.out, s, self.dialect.ascii_only());
    }

    fn field(&mut self, first: &mut bool, name: &str) {
        jsonw::write_field(&mut self.out, first, name);
    }

    fn int(&mut self, v: i64) {
        jsonw::write_i64(&mut self.out, v, self.dialect == RouteDialect::Standard);
    }

    fn bool(&mut self, v: bool) {
        self.out.push_str(if v { "true" } else { "false" });
    }

    fn int_map<V>(
        &mut self,
        m: &BTreeMap<impl Copy + Into<i64>, V>,
        mut f: impl FnMut(&mut Self, &V),
    ) {
        self.out.push('{');
        let mut first = true;
        for (k, v) in m {
            jsonw::write_int_key(
                &mut self.out,
                &mut first,
                (*k).into(),
                self.dialect.quoted_keys(),
            );
            f(self, v);
        }
        self.out.push('}');
    }

    fn str_map<V>(&mut self, m: &BTreeMap<String, V>, mut f: impl FnMut(&mut Self, &V)) {
        self.out.push('{');
        let mut first = true;
        for (k, v) in m {
            jsonw::write_str_key(&mut self.out, &mut first, k, self.dialect.ascii_only());
            f(self, v);
        }
        self.out.push('}');
    }

    fn str_list<'a>(&mut self, items: impl IntoIterator<Item = &'a String>) {
        self.out.push('[');
        for (i, s) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.str(s);
        }
        self.out.push(']');
    }

    fn queue_data(&mut self, q: &QueueData) {
        let mut first = true;
        self.out.push('{');
        self.field(&mut first, "brokerName");
        self.str(&q.broker_name);
        self.field(&mut first, "perm");
        self.int(q.perm.into());
        self.field(&mut first, "readQueueNums");
        self.int(q.read_queue_nums.into());
        self.field(&mut first, "topicSysFlag");
        self.int(q.topic_sys_flag.into());
        self.field(&mut first, "writeQueueNums");
        self.int(q.write_queue_nums.into());
        self.out.push('}');
    }

    fn broker_data(&mut self, b: &BrokerData) {
        let mut first = true;
        self.out.push('{');
        self.field(&mut first, "brokerAddrs");
        self.int_map(&b.broker_addrs, |w, addr| w.str(addr));
        self.field(&mut first, "brokerName");
        self.str(&b.broker_name);
        self.field(&mut first, "cluster");
        self.str(&b.cluster);
        if let Some(acting) = b.enable_acting_master {
            self.field(&mut first, "enableActingMaster");
            self.bool(acting);
        }
        if let Some(zone) = &b.zone_name {
            self.field(&mut first, "zoneName");
            self.str(zone);
        }
        self.out.push('}');
    }

    fn mapping_info(&mut self, m: &TopicQueueMappingInfo) {
        let mut first = true;
        self.out.push('{');
        if let Some(bname) = &m.bname {
            self.field(&mut first, "bname");
            self.str(bname);
        }
        self.field(&mut first, "currIdMap");
        self.int_map(&m.curr_id_map, |w, v| w.int((*v).into()));
        self.field(&mut first, "dirty");
        self.bool(m.dirty);
        self.field(&mut first, "epoch");
        self.int(m.epoch);
        if let Some(scope) = &m.scope {
            self.field(&mut first, "scope");
            self.str(scope);
        }
        if let Some(topic) = &m.topic {
            self.field(&mut first, "topic");
            self.str(topic);
        }
        self.field(&mut first, "totalQueues");
        self.int(m.total_queues.into());
        self.out.push('}');
    }
}

/// Encodes a route body in `dialect`, deterministically: `queueDatas` sorted by
/// broker name (then the other fields), `brokerDatas` by broker name (then cluster,
/// zone), map keys sorted, fields in fastjson's alphabetical order, null fields
/// omitted. `filterServerTable` is always written (Java initialises it to `{}`).
pub fn encode_route(route: &TopicRouteData, dialect: RouteDialect) -> Vec<u8> {
    let mut queues: Vec<&QueueData> = route.queue_datas.iter().collect();
    queues.sort();
    let mut brokers: Vec<&BrokerData> = route.broker_datas.iter().collect();
    brokers.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));

    let mut w = Writer {
        out: String::with_capacity(256 + 160 * (queues.len() + brokers.len())),
        dialect,
    };
    let mut first = true;
    w.out.push('{');
    w.field(&mut first, "brokerDatas");
    w.out.push('[');
    for (i, b) in brokers.iter().enumerate() {
        if i > 0 {
            w.out.push(',');
        }
        w.broker_data(b);
    }
    w.out.push(']');
    w.field(&mut first, "filterServerTable");
    w.str_map(&route.filter_server_table, |w, list| w.str_list(list));
    if let Some(conf) = &route.order_topic_conf {
        w.field(&mut first, "orderTopicConf");
        w.str(conf);
    }
    w.field(&mut first, "queueDatas");
    w.out.push('[');
    for (i, q) in queues.iter().enumerate() {
        if i > 0 {
            w.out.push(',');
        }
        w.queue_data(q);
    }
    w.out.push(']');
    if let Some(mapping) = &route.topic_queue_mapping_by_broker {
        w.field(&mut first, "topicQueueMappingByBroker");
        w.str_map(mapping, |w, m| w.mapping_info(m));
    }
    w.out.push('}');
    w.out.into_bytes()
}

/// Encodes a `ClusterInfo` body. A Java NameServer always uses the plain fastjson
/// form for 106; [`RouteDialect::Standard`] is for callers known to be >= 4.9.4.
pub fn encode_cluster_info(info: &ClusterInfo, dialect: RouteDialect) -> Vec<u8> {
    let mut w = Writer {
        out: String::with_capacity(256 + 200 * info.broker_addr_table.len()),
        dialect,
    };
    let mut first = true;
    w.out.push('{');
    w.field(&mut first, "brokerAddrTable");
    w.str_map(&info.broker_addr_table, |w, b| w.broker_data(b));
    w.field(&mut first, "clusterAddrTable");
    w.str_map(&info.cluster_addr_table, |w, names| w.str_list(names));
    w.out.push('}');
    w.out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> TopicRouteData {
        TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![
                QueueData {
                    broker_name: "broker-b".into(),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    perm: 6,
                    topic_sys_flag: 0,
                },
                QueueData {
                    broker_name: "broker-a".into(),
                    read_queue_nums: 8,
                    write_queue_nums: 8,
                    perm: 4,
                    topic_sys_flag: 0,
                },
            ],
            broker_datas: vec![
                BrokerData {
                    cluster: "B".into(),
                    broker_name: "broker-b".into(),
                    broker_addrs: [(0, "10.0.0.2:10911".to_string())].into(),
                    zone_name: None,
                    enable_acting_master: Some(false),
                },
                BrokerData {
                    cluster: "A".into(),
                    broker_name: "broker-a".into(),
                    broker_addrs: [
                        (1, "10.0.0.3:10911".to_string()),
                        (0, "10.0.0.1:10911".to_string()),
                    ]
                    .into(),
                    zone_name: None,
                    enable_acting_master: None,
                },
            ],
            filter_server_table: BTreeMap::new(),
            topic_queue_mapping_by_broker: None,
        }
    }

    #[test]
    fn dialect_switch() {
        assert_eq!(RouteDialect::for_request(317, None), RouteDialect::Fastjson);
        assert_eq!(
            RouteDialect::for_request(400, false),
            RouteDialect::Fastjson
        );
        assert_eq!(RouteDialect::for_request(401, None), RouteDialect::Standard);
        assert_eq!(RouteDialect::for_request(63, true), RouteDialect::Standard);
        let req = RemotingCommand::request(105)
            .with_version(317)
            .with_ext_field("acceptStandardJsonOnly", "true");
        assert_eq!(RouteDialect::for_command(&req), RouteDialect::Standard);
    }

    #[test]
    fn both_dialects_exact_bytes() {
        let fj = String::from_utf8(encode_route(&route(), RouteDialect::Fastjson)).unwrap();
        assert_eq!(
            fj,
            concat!(
                r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.3:10911"},"brokerName":"broker-a","cluster":"A"},"#,
                r#"{"brokerAddrs":{0:"10.0.0.2:10911"},"brokerName":"broker-b","cluster":"B","enableActingMaster":false}],"#,
                r#""filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":4,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8},"#,
                r#"{"brokerName":"broker-b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
            )
        );
        let std = String::from_utf8(encode_route(&route(), RouteDialect::Standard)).unwrap();
        assert_eq!(std, fj.replace("{0:", "{\"0\":").replace(",1:", ",\"1\":"));
        // Standard output is real JSON.
        serde_json::from_str::<serde_json::Value>(&std).unwrap();
        // Both parse back to the same (normalized) route.
        let mut want = route();
        want.normalize();
        for body in [fj.as_bytes(), std.as_bytes()] {
            let mut got = TopicRouteData::from_body(body).unwrap();
            got.normalize();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn order_independent_output() {
        let mut r = route();
        let a = encode_route(&r, RouteDialect::Fastjson);
        r.queue_datas.reverse();
        r.broker_datas.reverse();
        assert_eq!(a, encode_route(&r, RouteDialect::Fastjson));
    }

    #[test]
    fn standard_escapes_non_ascii_and_big_longs() {
        let mut r = route();
        r.order_topic_conf = Some("brökér:4".into());
        r.topic_queue_mapping_by_broker = Some(
            [(
                "broker-a".to_string(),
                TopicQueueMappingInfo {
                    topic: Some("T".into()),
                    scope: Some("__global__".into()),
                    total_queues: 2,
                    bname: Some("broker-a".into()),
                    epoch: 1 << 60,
                    dirty: false,
                    curr_id_map: [(0, 0), (1, 1)].into(),
                },
            )]
            .into(),
        );
        let std = String::from_utf8(encode_route(&r, RouteDialect::Standard)).unwrap();
        assert!(
            std.contains(r#""orderTopicConf":"br\u00f6k\u00e9r:4""#),
            "{std}"
        );
        assert!(std.contains(r#""currIdMap":{"0":0,"1":1}"#), "{std}");
        assert!(std.contains(r#""epoch":"1152921504606846976""#), "{std}");
        let fj = String::from_utf8(encode_route(&r, RouteDialect::Fastjson)).unwrap();
        assert!(fj.contains(r#""currIdMap":{0:0,1:1}"#), "{fj}");
        assert!(fj.contains("brökér"), "{fj}");
        for body in [std, fj] {
            let back = TopicRouteData::from_body(body.as_bytes()).unwrap();
            assert_eq!(
                back.topic_queue_mapping_by_broker,
                r.topic_queue_mapping_by_broker
            );
            assert_eq!(back.order_topic_conf, r.order_topic_conf);
        }
    }
}
