//! `BrokerAdmin` against a fake broker answering like a Java broker.

#[path = "support/net.rs"]
mod net;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ferry_remoting::{
    BrokerAdmin, ClientConfig, RemotingClient, RemotingCommand, RemotingError, ServerConfig,
    SubscriptionGroupConfig, TopicConfig,
};
use net::{BoxFut, FnHandler, TestServer};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

type Log = Arc<Mutex<Vec<RemotingCommand>>>;

/// A fake broker; `list_codes` says whether codes 18/225 exist (5.x) or not (4.x).
async fn fake_broker(list_codes: bool) -> (TestServer, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let handler = FnHandler::new(move |_peer, req: RemotingCommand| -> BoxFut {
        seen.lock().unwrap().push(req.clone());
        Box::pin(async move {
            let ok = |body: Vec<u8>| Some(req.respond_to(0, None).with_body(body));
            let topic = req.ext("topic").unwrap_or("").to_string();
            let group = req
                .ext("consumerGroup")
                .or(req.ext("producerGroup"))
                .unwrap_or("")
                .to_string();
            match req.code {
                21 => ok(fixture("topic_config_wrapper.json")),
                201 => ok(fixture("subscription_group_wrapper.json")),
                17 | 200 => Some(req.respond_to(0, None)),
                18 | 225 if list_codes => Some(req.respond_to(0, None)),
                208 => ok(fixture("consume_stats.json")),
                202 if topic == "TopicTest" => ok(fixture("topic_stats.json")),
                202 => Some(req.respond_to(17, Some(format!("topic[{topic}] not exist")))),
                203 if group == "GroupA" => ok(fixture("consumer_connection.json")),
                203 => Some(
                    req.respond_to(206, Some(format!("the consumer group[{group}] not online"))),
                ),
                204 if group == "PG" => ok(fixture("producer_connection.json")),
                204 => {
                    Some(req.respond_to(1, Some(format!("the producer group[{group}] not exist"))))
                }
                28 => ok(fixture("kv_table_runtime_info.json")),
                38 if group == "GroupA" => ok(fixture("consumer_list.json")),
                38 => Some(req.respond_to(1, Some(format!("no consumer for this group, {group}")))),
                _ => Some(req.not_supported_response()),
            }
        })
    });
    (
        TestServer::start(handler, ServerConfig::default()).await,
        log,
    )
}

fn admin() -> BrokerAdmin {
    BrokerAdmin::new(RemotingClient::new(ClientConfig::default()))
}

fn topic(name: &str, attrs: &[(&str, &str)]) -> TopicConfig {
    TopicConfig {
        topic_name: name.to_string(),
        read_queue_nums: 8,
        write_queue_nums: 8,
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

fn codes(log: &Log) -> Vec<i32> {
    log.lock().unwrap().iter().map(|r| r.code).collect()
}

#[tokio::test]
async fn reads() {
    let (broker, _) = fake_broker(true).await;
    let admin = admin();
    let addr = broker.addr.as_str();
    let topics = admin.all_topic_config(addr).await.unwrap();
    assert!(topics.topic_config_table.contains_key("TopicTest"));
    let groups = admin.all_subscription_groups(addr).await.unwrap();
    assert!(groups.subscription_group_table.contains_key("GroupA"));
    let stats = admin
        .consume_stats(addr, "GroupA", Some("TopicTest"))
        .await
        .unwrap();
    assert!(stats.total_diff() > 0);
    assert!(
        admin
            .topic_stats(addr, "TopicTest")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(admin.topic_stats(addr, "Nope").await.unwrap(), None);
    let conns = admin
        .consumer_connections(addr, "GroupA")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conns.connection_set.len(), 2);
    assert_eq!(
        admin.consumer_connections(addr, "Idle").await.unwrap(),
        None
    );
    assert!(
        admin
            .producer_connections(addr, "PG")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        admin.producer_connections(addr, "Gone").await.unwrap(),
        None
    );
    assert!(
        !admin
            .broker_runtime_info(addr)
            .await
            .unwrap()
            .table
            .is_empty()
    );
    assert_eq!(admin.consumer_list(addr, "GroupA").await.unwrap().len(), 2);
    assert!(admin.consumer_list(addr, "Idle").await.unwrap().is_empty());
}

#[tokio::test]
async fn request_headers_use_java_keys() {
    let (broker, log) = fake_broker(true).await;
    let admin = admin();
    let addr = broker.addr.as_str();
    admin.consume_stats(addr, "G", None).await.unwrap();
    admin.topic_stats(addr, "TopicTest").await.unwrap();
    admin.consumer_connections(addr, "G").await.unwrap();
    admin.producer_connections(addr, "P").await.unwrap();
    admin.consumer_list(addr, "G").await.unwrap();
    let log = log.lock().unwrap();
    let keys: Vec<Vec<&str>> = log
        .iter()
        .map(|r| r.ext_fields.keys().map(String::as_str).collect())
        .collect();
    assert_eq!(
        keys,
        [
            vec!["consumerGroup"],
            vec!["topic"],
            vec!["consumerGroup"],
            vec!["producerGroup"],
            vec!["consumerGroup"],
        ]
    );
    assert!(log.iter().all(|r| r.version >= 401));
}

#[tokio::test]
async fn create_topic_sends_the_java_admin_header() {
    let (broker, log) = fake_broker(true).await;
    admin()
        .create_topic(&broker.addr, &topic("T1", &[("message.type", "FIFO")]))
        .await
        .unwrap();
    let log = log.lock().unwrap();
    let req = &log[0];
    assert_eq!(req.code, 17);
    assert_eq!(req.ext("topic"), Some("T1"));
    assert_eq!(req.ext("defaultTopic"), Some("TBW102"));
    assert_eq!(req.ext("readQueueNums"), Some("8"));
    assert_eq!(req.ext("perm"), Some("6"));
    assert_eq!(req.ext("attributes"), Some("+message.type=FIFO"));
    assert!(req.body.is_empty());
}

#[tokio::test]
async fn create_topics_batches_only_new_topics() {
    let (broker, log) = fake_broker(true).await;
    // TopicTest exists on the broker (fixture); the others do not.
    let wanted = [
        topic("New1", &[("message.type", "NORMAL")]),
        topic("TopicTest", &[]),
        topic("New2", &[("+queue.type", "BatchCQ"), ("empty", "")]),
    ];
    admin().create_topics(&broker.addr, &wanted).await.unwrap();
    assert_eq!(codes(&log), [21, 17, 18]);
    let log = log.lock().unwrap();
    assert_eq!(log[1].ext("topic"), Some("TopicTest"));
    let body: serde_json::Value = serde_json::from_slice(&log[2].body).unwrap();
    let list = body["topicConfigList"].as_array().unwrap();
    let names: Vec<&str> = list
        .iter()
        .map(|t| t["topicName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["New1", "New2"]);
    assert_eq!(
        list[0]["attributes"],
        serde_json::json!({"+message.type": "NORMAL"})
    );
    assert_eq!(
        list[1]["attributes"],
        serde_json::json!({"+queue.type": "BatchCQ"})
    );
    assert_eq!(list[0]["readQueueNums"], 8);
    assert_eq!(list[0]["topicFilterType"], "SINGLE_TAG");
}

#[tokio::test]
async fn create_lists_fall_back_on_old_brokers() {
    let (broker, log) = fake_broker(false).await;
    let admin = admin();
    admin
        .create_topics(&broker.addr, &[topic("A", &[]), topic("B", &[])])
        .await
        .unwrap();
    assert_eq!(codes(&log), [21, 18, 17, 17]);
    log.lock().unwrap().clear();
    let groups = [
        SubscriptionGroupConfig {
            group_name: "G1".into(),
            ..Default::default()
        },
        SubscriptionGroupConfig {
            group_name: "G2".into(),
            ..Default::default()
        },
    ];
    admin.create_groups(&broker.addr, &groups).await.unwrap();
    assert_eq!(codes(&log), [225, 200, 200]);
    let log = log.lock().unwrap();
    let g: serde_json::Value = serde_json::from_slice(&log[2].body).unwrap();
    assert_eq!(g["groupName"], "G2");
}

#[tokio::test]
async fn create_groups_sends_a_group_config_list() {
    let (broker, log) = fake_broker(true).await;
    let admin = admin();
    let g1 = SubscriptionGroupConfig {
        group_name: "G1".into(),
        retry_max_times: 3,
        ..Default::default()
    };
    admin.create_group(&broker.addr, &g1).await.unwrap();
    admin
        .create_groups(&broker.addr, std::slice::from_ref(&g1))
        .await
        .unwrap();
    assert_eq!(codes(&log), [200, 225]);
    let log = log.lock().unwrap();
    let single: serde_json::Value = serde_json::from_slice(&log[0].body).unwrap();
    assert_eq!(single["groupName"], "G1");
    assert_eq!(single["retryMaxTimes"], 3);
    let list: serde_json::Value = serde_json::from_slice(&log[1].body).unwrap();
    assert_eq!(list["groupConfigList"][0], single);
}

#[tokio::test]
async fn remote_errors_and_malformed_bodies_name_broker_and_code() {
    let handler = FnHandler::new(|_peer, req: RemotingCommand| -> BoxFut {
        Box::pin(async move {
            match req.code {
                17 => Some(req.respond_to(29, Some("topic name invalid".into()))),
                _ => Some(
                    req.respond_to(0, None)
                        .with_body(&b"{\"offsetTable\":[1,"[..]),
                ),
            }
        })
    });
    let server = TestServer::start(handler, ServerConfig::default()).await;
    let admin = admin();
    let err = admin
        .create_topic(&server.addr, &topic("bad name", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RemotingError::Remote {
            addr: server.addr.clone(),
            code: 29,
            remark: "topic name invalid".into()
        }
    );
    let err = admin
        .consume_stats(&server.addr, "G", None)
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&server.addr), "{text}");
    assert!(text.contains("GET_CONSUME_STATS(208)"), "{text}");
}
