//! Golden fixtures: bodies as a Java broker/NameServer (fastjson 1.x) writes them.

use ferry_remoting::body::{ConsumeStats, SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::headers::{CommandHeader, CreateTopicRequestHeader};
use ferry_remoting::{
    ClusterInfo, ConsumerConnection, GetConsumerListByGroupResponseBody, KVTable, LanguageCode,
    MessageQueue, ProducerConnection, RouteDialect, SubscriptionGroupWrapper,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData, TopicStatsTable, encode_route,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn route_with_unquoted_int_keys() {
    let body = fixture("route_fastjson.json");
    // Not valid JSON: the reason the tolerant parser exists.
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
    let route = TopicRouteData::from_body(&body).unwrap();
    assert_eq!(
        route.order_topic_conf.as_deref(),
        Some("broker-a:4;broker-b:8")
    );
    assert_eq!(route.queue_datas.len(), 2);
    assert_eq!(route.queue_datas[1].broker_name, "broker-b");
    assert_eq!(route.queue_datas[1].perm, 4);
    assert_eq!(route.queue_datas[1].read_queue_nums, 8);
    let a = &route.broker_datas[0];
    assert_eq!(a.cluster, "DefaultCluster");
    assert_eq!(a.master_addr(), Some("192.168.0.1:10911"));
    assert_eq!(
        a.broker_addrs.get(&1).map(String::as_str),
        Some("192.168.0.2:10911")
    );
    assert_eq!(a.enable_acting_master, Some(false));
    assert_eq!(route.broker_datas[1].zone_name.as_deref(), Some("zone-1"));
    assert!(route.filter_server_table.is_empty());
    assert!(route.topic_queue_mapping_by_broker.is_none());

    // Re-encoding reproduces the Java NameServer's bytes exactly, in both dialects.
    assert_eq!(encode_route(&route, RouteDialect::Fastjson), body);
    assert_eq!(
        encode_route(&route, RouteDialect::Standard),
        fixture("route_standard.json")
    );
}

#[test]
fn route_standard_parses_to_same_model() {
    let std_route = TopicRouteData::from_body(&fixture("route_standard.json")).unwrap();
    let fj_route = TopicRouteData::from_body(&fixture("route_fastjson.json")).unwrap();
    assert_eq!(std_route, fj_route);
}

#[test]
fn static_topic_route() {
    let body = fixture("route_static_topic_fastjson.json");
    let route = TopicRouteData::from_body(&body).unwrap();
    let mapping = route.topic_queue_mapping_by_broker.as_ref().unwrap();
    let info = &mapping["broker-s"];
    assert_eq!(info.total_queues, 4);
    assert_eq!(info.epoch, 1_700_000_000_000);
    assert_eq!(info.curr_id_map.get(&1), Some(&1));
    assert_eq!(info.scope.as_deref(), Some("__global__"));
    assert_eq!(encode_route(&route, RouteDialect::Fastjson), body);
}

#[test]
fn cluster_info() {
    let body = fixture("cluster_info.json");
    let ci = ClusterInfo::from_body(&body).unwrap();
    assert_eq!(ci.broker_addr_table.len(), 3);
    assert_eq!(
        ci.broker_addr_table["broker-b"].master_addr(),
        Some("192.168.0.3:10911")
    );
    // No master online: reads fall back to the lowest id.
    let x = &ci.broker_addr_table["broker-x"];
    assert_eq!(x.master_addr(), None);
    assert_eq!(x.select_addr(), Some("192.168.9.9:10911"));
    assert_eq!(x.enable_acting_master, None);
    let names: Vec<_> = ci.cluster_addr_table["DefaultCluster"].iter().collect();
    assert_eq!(names, ["broker-a", "broker-b"]);
    // Round trip through our own writer (sets come out sorted).
    let again = ClusterInfo::from_body(&ci.encode(RouteDialect::Fastjson)).unwrap();
    assert_eq!(again, ci);
    let std = ci.encode(RouteDialect::Standard);
    serde_json::from_slice::<serde_json::Value>(&std).unwrap();
    assert_eq!(ClusterInfo::from_body(&std).unwrap(), ci);
}

#[test]
fn consume_stats_with_inline_object_keys() {
    let cs = ConsumeStats::from_body(&fixture("consume_stats.json")).unwrap();
    assert_eq!(cs.consume_tps, 1.5);
    assert_eq!(cs.offset_table.len(), 3);
    let (mq, off) = &cs.offset_table[0];
    assert_eq!(
        mq,
        &MessageQueue {
            topic: "TopicTest".into(),
            broker_name: "broker-a".into(),
            queue_id: 0
        }
    );
    assert_eq!(off.broker_offset, 100);
    assert_eq!(off.consumer_offset, 90);
    assert_eq!(off.pull_offset, 95);
    assert_eq!(off.last_timestamp, 1_700_000_000_000);
    assert_eq!(cs.offset_table[2].0.topic, "%RETRY%GroupA");
    assert_eq!(cs.total_diff(), 10 + 3);

    let nan = ConsumeStats::from_body(&fixture("consume_stats_nan_tps.json")).unwrap();
    assert_eq!(nan.consume_tps, 0.0);
    assert_eq!(nan.offset_table[0].1.consumer_offset, -1);
    // Writers that emit the literal.
    for lit in ["NaN", "Infinity", "-Infinity"] {
        let body = format!(r#"{{"consumeTps":{lit},"offsetTable":{{}}}}"#);
        let cs = ConsumeStats::from_body(body.as_bytes()).unwrap();
        assert!(!cs.consume_tps.is_finite());
    }
}

#[test]
fn topic_stats_table() {
    let ts = TopicStatsTable::from_body(&fixture("topic_stats.json")).unwrap();
    assert_eq!(ts.topic_put_tps, 0.0);
    assert_eq!(ts.offset_table.len(), 2);
    assert_eq!(ts.offset_table[0].1.max_offset, 100);
    assert_eq!(ts.offset_table[1].0.queue_id, 1);
}

#[test]
fn topic_config_wrapper_5x_and_4x() {
    let w = TopicConfigSerializeWrapper::from_body(&fixture("topic_config_wrapper.json")).unwrap();
    assert_eq!(w.topic_config_table.len(), 4);
    let fifo = &w.topic_config_table["FifoTopic"];
    assert!(fifo.order);
    assert_eq!(fifo.read_queue_nums, 8);
    assert_eq!(fifo.attributes["message.type"], "FIFO");
    assert_eq!(w.topic_config_table["TBW102"].perm, 7);
    assert_eq!(w.data_version.as_ref().unwrap().counter, 42);
    // 5.x mapping tables are kept for write-back.
    assert!(w.extra.contains_key("mappingDataVersion"));
    assert!(w.extra.contains_key("topicQueueMappingInfoMap"));

    let h = CreateTopicRequestHeader::from_topic_config(fifo);
    let f = h.to_ext_fields();
    assert_eq!(f["attributes"], "+message.type=FIFO");
    assert_eq!(f["order"], "true");
    assert_eq!(f["readQueueNums"], "8");

    let old =
        TopicConfigSerializeWrapper::from_body(&fixture("topic_config_wrapper_4x.json")).unwrap();
    let legacy = &old.topic_config_table["LegacyTopic"];
    assert!(legacy.attributes.is_empty());
    assert_eq!(legacy.write_queue_nums, 16);
    assert_eq!(old.data_version.as_ref().unwrap().state_version, 0);
}

#[test]
fn topic_config_export_round_trip_keeps_unknown_fields() {
    let body = br#"{"topicName":"T","readQueueNums":2,"writeQueueNums":2,"perm":6,"topicFilterType":"SINGLE_TAG","topicSysFlag":0,"order":false,"attributes":{"message.type":"DELAY"},"newIn6x":{"nested":[1,2]},"liteTopicExpire":3600}"#;
    let tc = TopicConfig::from_body(body).unwrap();
    assert_eq!(tc.extra.len(), 2);
    let out = tc.to_body().unwrap();
    let back = TopicConfig::from_body(&out).unwrap();
    assert_eq!(back, tc);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["newIn6x"]["nested"][1], 2);
    assert_eq!(v["liteTopicExpire"], 3600);
    assert_eq!(v["attributes"]["message.type"], "DELAY");
}

#[test]
fn subscription_group_wrapper() {
    let w =
        SubscriptionGroupWrapper::from_body(&fixture("subscription_group_wrapper.json")).unwrap();
    assert_eq!(w.subscription_group_table.len(), 3);
    let a = &w.subscription_group_table["GroupA"];
    assert_eq!(a.group_retry_policy.policy_type, "CUSTOMIZED");
    assert!(a.subscription_data_set.is_none());
    let b = &w.subscription_group_table["GroupB"];
    assert!(b.consume_message_orderly);
    assert!(!b.consume_broadcast_enable);
    assert_eq!(b.retry_max_times, 5);
    assert_eq!(b.group_retry_policy.policy_type, "EXPONENTIAL");
    let exp = b
        .group_retry_policy
        .exponential_retry_policy
        .as_ref()
        .unwrap();
    assert_eq!((exp.initial, exp.max, exp.multiplier), (1000, 60000, 3));
    let subs = b.subscription_data_set.as_ref().unwrap();
    assert_eq!(subs[0].expression.as_deref(), Some("TagA || TagB"));
    assert_eq!(subs[0].version, 1_700_000_000_000);
    let c = &w.subscription_group_table["GroupC"];
    // Missing fields take Java defaults.
    assert_eq!(c.consume_timeout_minute, 15);
    assert!(c.attributes.is_empty());
    assert_eq!(c.broker_id, 1);
    assert_eq!(
        c.group_retry_policy
            .customized_retry_policy
            .as_ref()
            .unwrap()
            .next,
        [1000, 5000, 10000]
    );
    assert_eq!(w.forbidden_table["GroupB"]["TopicSecret"], 2);

    // Export -> import: every group config survives a to_body/from_body trip.
    for cfg in w.subscription_group_table.values() {
        let back = SubscriptionGroupConfig::from_body(&cfg.to_body().unwrap()).unwrap();
        assert_eq!(&back, cfg);
    }
    let whole = SubscriptionGroupWrapper::from_body(&w.to_body().unwrap()).unwrap();
    assert_eq!(whole, w);
}

#[test]
fn subscription_group_unknown_fields_survive() {
    let body = br#"{"groupName":"G","retryMaxTimes":"7","consumeEnable":"false","groupRetryPolicy":{"type":"CUSTOMIZED","futurePolicy":{"x":1}},"liteBindTopic":"T"}"#;
    let g = SubscriptionGroupConfig::from_body(body).unwrap();
    assert_eq!(g.retry_max_times, 7);
    assert!(!g.consume_enable);
    assert_eq!(g.extra["liteBindTopic"], "T");
    assert_eq!(g.group_retry_policy.extra["futurePolicy"]["x"], 1);
    let back = SubscriptionGroupConfig::from_body(&g.to_body().unwrap()).unwrap();
    assert_eq!(back, g);
}

#[test]
fn kv_tables() {
    let kv = KVTable::from_body(&fixture("kv_table.json")).unwrap();
    assert_eq!(kv.table["FifoTopic"], "broker-a:8;broker-b:8");
    let rt = KVTable::from_body(&fixture("kv_table_runtime_info.json")).unwrap();
    assert_eq!(rt.table["brokerVersionDesc"], "V5_3_3");
    assert_eq!(rt.table["brokerVersion"], "479");
    assert_eq!(KVTable::from_body(&kv.to_body().unwrap()).unwrap(), kv);
}

#[test]
fn connections_and_lists() {
    let cc = ConsumerConnection::from_body(&fixture("consumer_connection.json")).unwrap();
    assert_eq!(cc.connection_set.len(), 2);
    assert_eq!(cc.connection_set[1].language, LanguageCode::Go);
    assert_eq!(cc.connection_set[1].version, 317);
    assert_eq!(cc.message_model.as_deref(), Some("CLUSTERING"));
    assert_eq!(cc.consume_type.as_deref(), Some("CONSUME_PASSIVELY"));
    assert_eq!(cc.subscription_table["TopicTest"].tags_set, ["TagA"]);
    assert_eq!(cc.subscription_table["TopicTest"].code_set, [2598919]);
    assert_eq!(cc.subscription_table["%RETRY%GroupA"].sub_string, "*");

    let pc = ProducerConnection::from_body(&fixture("producer_connection.json")).unwrap();
    assert_eq!(pc.connection_set[0].client_addr, "10.0.0.7:50000");
    assert_eq!(pc.connection_set[0].language, LanguageCode::Java);

    let tl = TopicList::from_body(&fixture("topic_list.json")).unwrap();
    assert_eq!(tl.topic_list.len(), 5);
    assert!(tl.topic_list.contains("%RETRY%GroupA"));
    assert!(tl.broker_addr.is_none());
    assert_eq!(TopicList::from_body(&tl.to_body().unwrap()).unwrap(), tl);

    let ids =
        GetConsumerListByGroupResponseBody::from_body(&fixture("consumer_list.json")).unwrap();
    assert_eq!(
        ids.consumer_id_list,
        ["10.0.0.5@12345#1234567890", "10.0.0.6@go"]
    );
}

#[test]
fn garbage_bodies_are_errors_not_panics() {
    for body in [&b""[..], b"[1,2]", b"{", b"{\"topicList\":5}", b"\xff\xfe"] {
        assert!(TopicList::from_body(body).is_err(), "{body:?}");
    }
    // A `null` body reads as the empty default, as for a missing field.
    assert_eq!(TopicList::from_body(b"null").unwrap(), TopicList::default());
    // Wrong shapes deep inside are reported with a reason.
    let err = ConsumeStats::from_body(br#"{"offsetTable":{{"queueId":"x"}:{}}}"#).unwrap_err();
    assert!(err.to_string().contains("ConsumeStats"), "{err}");
}
