//! Ferry's remoting client against real RocketMQ peers (two independent clusters): the
//! calls the scanner, importer and health checks rely on, read back from the peers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::{BrokerAdmin, ClientConfig, NameServerClient, RemotingClient, RemotingError};
use ferry_testkit::rocketmq::{RocketMqCluster, TwoClusters};

fn client() -> RemotingClient {
    RemotingClient::new(ClientConfig::default())
}

fn topic(name: &str, queues: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        ..TopicConfig::default()
    }
}

fn group(name: &str) -> SubscriptionGroupConfig {
    SubscriptionGroupConfig {
        group_name: name.into(),
        ..SubscriptionGroupConfig::default()
    }
}

/// Polls the route of `topic` on `namesrv` until it lists `broker` (brokers register topic
/// changes with their NameServer asynchronously).
async fn wait_route(
    ns: &NameServerClient,
    topic: &str,
    broker: &str,
) -> ferry_remoting::route::TopicRouteData {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(route) = ns.topic_route(topic).await.unwrap()
            && route.broker_datas.iter().any(|b| b.broker_name == broker)
        {
            return route;
        }
        assert!(
            Instant::now() < deadline,
            "route of {topic} never listed {broker}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cluster_info_and_topic_list_come_from_each_cluster() {
    let clusters = TwoClusters::start().await.unwrap();
    for cluster in [&clusters.a, &clusters.b] {
        let ns = NameServerClient::new(&cluster.namesrv_addr(), client()).unwrap();
        let info = ns.cluster_info().await.unwrap();
        let brokers = info
            .cluster_addr_table
            .get(cluster.cluster_name())
            .expect("own cluster listed");
        assert!(brokers.contains(cluster.broker_name()), "{info:?}");
        assert_eq!(
            info.cluster_addr_table.len(),
            1,
            "only its own cluster: {info:?}"
        );
        let data = &info.broker_addr_table[cluster.broker_name()];
        assert_eq!(data.master_addr(), Some(cluster.broker_addr().as_str()));

        let list = ns.all_topic_list().await.unwrap();
        // Every broker serves topics named after its cluster and itself (system topics).
        assert!(
            list.topic_list.iter().any(|t| t == cluster.cluster_name()),
            "{list:?}"
        );
    }
}

#[tokio::test]
async fn topic_and_group_created_on_b_read_back_and_routed() {
    let clusters = TwoClusters::start().await.unwrap();
    let b = &clusters.b;
    let admin = BrokerAdmin::new(client());
    admin
        .create_topic(&b.broker_addr(), &topic("FerryOrders", 6))
        .await
        .unwrap();
    admin
        .create_group(&b.broker_addr(), &group("FerryOrdersGroup"))
        .await
        .unwrap();

    let topics = admin.all_topic_config(&b.broker_addr()).await.unwrap();
    let created = &topics.topic_config_table["FerryOrders"];
    assert_eq!(
        (
            created.read_queue_nums,
            created.write_queue_nums,
            created.perm
        ),
        (6, 6, 6)
    );
    let groups = admin
        .all_subscription_groups(&b.broker_addr())
        .await
        .unwrap();
    assert!(
        groups
            .subscription_group_table
            .contains_key("FerryOrdersGroup")
    );

    let ns_b = NameServerClient::new(&b.namesrv_addr(), client()).unwrap();
    let route = wait_route(&ns_b, "FerryOrders", "broker-b").await;
    let queues = &route.queue_datas[0];
    assert_eq!(
        (queues.broker_name.as_str(), queues.write_queue_nums),
        ("broker-b", 6)
    );

    // Cluster A never hears of it.
    let ns_a = NameServerClient::new(&clusters.a.namesrv_addr(), client()).unwrap();
    assert!(ns_a.topic_route("FerryOrders").await.unwrap().is_none());
    let on_a = admin
        .all_topic_config(&clusters.a.broker_addr())
        .await
        .unwrap();
    assert!(!on_a.topic_config_table.contains_key("FerryOrders"));
}

#[tokio::test]
async fn batch_creates_are_read_back_completely() {
    let cluster = RocketMqCluster::start(Default::default()).await.unwrap();
    let admin = BrokerAdmin::new(client());
    let addr = cluster.broker_addr();
    // One topic exists already: a batch must still create every other one (the broker
    // stops at the first unchanged entry of a list).
    admin
        .create_topic(&addr, &topic("Batch-007", 4))
        .await
        .unwrap();
    let topics: Vec<TopicConfig> = (0..120)
        .map(|i| topic(&format!("Batch-{i:03}"), 4))
        .collect();
    let groups: Vec<SubscriptionGroupConfig> = (0..120)
        .map(|i| group(&format!("BatchGroup-{i:03}")))
        .collect();
    admin.create_topics(&addr, &topics).await.unwrap();
    admin.create_groups(&addr, &groups).await.unwrap();

    let have: HashSet<String> = admin
        .all_topic_config(&addr)
        .await
        .unwrap()
        .topic_config_table
        .into_keys()
        .collect();
    let missing: Vec<_> = topics
        .iter()
        .filter(|t| !have.contains(&t.topic_name))
        .map(|t| &t.topic_name)
        .collect();
    assert!(missing.is_empty(), "topics not created: {missing:?}");
    let have: HashSet<String> = admin
        .all_subscription_groups(&addr)
        .await
        .unwrap()
        .subscription_group_table
        .into_keys()
        .collect();
    let missing: Vec<_> = groups
        .iter()
        .filter(|g| !have.contains(&g.group_name))
        .map(|g| &g.group_name)
        .collect();
    assert!(missing.is_empty(), "groups not created: {missing:?}");
}

#[tokio::test]
async fn answers_and_failures_are_told_apart() {
    let cluster = RocketMqCluster::start(Default::default()).await.unwrap();
    let admin = BrokerAdmin::new(client());
    // Answers, not errors: absent topic, no consumer online.
    let ns = NameServerClient::new(&cluster.namesrv_addr(), client()).unwrap();
    assert!(ns.topic_route("NoSuchTopic").await.unwrap().is_none());
    assert!(
        admin
            .topic_stats(&cluster.broker_addr(), "NoSuchTopic")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        admin
            .consumer_connections(&cluster.broker_addr(), "NobodyHere")
            .await
            .unwrap()
            .is_none()
    );
    let runtime = admin
        .broker_runtime_info(&cluster.broker_addr())
        .await
        .unwrap();
    assert!(
        runtime.table.contains_key("brokerVersionDesc"),
        "{runtime:?}"
    );

    // A refused address fails over to the live one; all dead names every address.
    let dead = format!("127.0.0.1:{}", ferry_testkit::free_port());
    let ns =
        NameServerClient::new(&format!("{dead};{}", cluster.namesrv_addr()), client()).unwrap();
    ns.select(0);
    assert!(ns.cluster_info().await.is_ok());
    assert_eq!(ns.current_addr(), cluster.namesrv_addr());
    let ns = NameServerClient::new(&dead, client()).unwrap();
    let err = ns.cluster_info().await.unwrap_err();
    assert!(err.to_string().contains(&dead), "{err}");
    assert!(
        matches!(
            err,
            RemotingError::ConnectionRefused { .. } | RemotingError::AllAddressesFailed { .. }
        ),
        "{err:?}"
    );
}

#[cfg(feature = "rocketmq-client")]
#[tokio::test]
async fn consume_stats_connections_and_topic_stats_after_real_traffic() {
    use ferry_testkit::traffic::{ClientOptions, TrafficConsumer, TrafficProducer};

    let cluster = RocketMqCluster::start(Default::default()).await.unwrap();
    let (topic_name, group_name) = ("StatsTopic", "StatsGroup");
    cluster.create_topic(topic_name, 4).await.unwrap();
    cluster.create_group(group_name).await.unwrap();
    let consumer = TrafficConsumer::start(&cluster.namesrv_addr(), group_name, topic_name)
        .await
        .unwrap();
    let producer = TrafficProducer::start(
        &cluster.namesrv_addr(),
        "StatsProducer",
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let mut keys = HashSet::new();
    for i in 0..100 {
        let key = format!("k-{i}");
        producer
            .send_keyed(topic_name, &key, b"stats")
            .await
            .unwrap();
        keys.insert(key);
    }
    consumer
        .wait_for_keys(&keys, Duration::from_secs(60))
        .await
        .unwrap();

    let admin = BrokerAdmin::new(client());
    let addr = cluster.broker_addr();
    let stats = admin
        .topic_stats(&addr, topic_name)
        .await
        .unwrap()
        .expect("topic stats");
    let max_sum: i64 = stats.offset_table.iter().map(|(_, o)| o.max_offset).sum();
    assert_eq!(max_sum, 100, "{stats:?}");

    // Offsets are committed asynchronously (every 5 s by default): poll until lag is 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let consume = admin
            .consume_stats(&addr, group_name, Some(topic_name))
            .await
            .unwrap();
        let broker_sum: i64 = consume
            .offset_table
            .iter()
            .map(|(_, o)| o.broker_offset)
            .sum();
        assert_eq!(broker_sum, 100, "{consume:?}");
        if consume.total_diff() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag never reached 0: {consume:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let connections = admin
        .consumer_connections(&addr, group_name)
        .await
        .unwrap()
        .expect("online");
    assert!(!connections.connection_set.is_empty());
    assert!(
        !admin
            .consumer_list(&addr, group_name)
            .await
            .unwrap()
            .is_empty()
    );
    producer.shutdown().await;
    consumer.shutdown().await;
}
