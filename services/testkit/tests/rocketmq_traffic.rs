//! Real producers and consumers (rocketmq-client-rust 1.0.0) against a testkit cluster.
//! Run with `cargo test -p ferry-testkit --features rocketmq-client`.
#![cfg(feature = "rocketmq-client")]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use ferry_testkit::traffic::{ClientOptions, Ledger, TrafficConsumer, TrafficProducer};

const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_count_every_key() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let a = RocketMqCluster::start(ClusterSpec::default())
        .await
        .expect("cluster A must start");
    let topic = "FerryTrafficTopic";
    a.create_topic(topic, 4).await.expect("topic on A");
    a.create_group("ferry-traffic-cg")
        .await
        .expect("group on A");

    let t = Instant::now();
    let consumer = TrafficConsumer::start(&a.namesrv_addr(), "ferry-traffic-cg", topic)
        .await
        .expect("consumer starts");
    let producer = TrafficProducer::start(
        &a.namesrv_addr(),
        "ferry-traffic-pg",
        ClientOptions::default(),
    )
    .await
    .expect("producer starts");
    eprintln!("clients started in {:?}", t.elapsed());

    let t = Instant::now();
    let mut keys = HashSet::new();
    for i in 0..MESSAGES {
        let key = format!("key-{i:04}");
        let sent = producer
            .send_keyed(topic, &key, format!("body {i}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}\n{}", a.log_tail()));
        assert_eq!(sent.broker_name, "broker-a");
        assert!((0..4).contains(&sent.queue_id), "{sent:?}");
        keys.insert(key);
    }
    eprintln!("{MESSAGES} sends acknowledged in {:?}", t.elapsed());
    assert_eq!(producer.failures(), 0);

    let t = Instant::now();
    consumer
        .wait_for_keys(&keys, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log_tail()));
    eprintln!("all keys consumed {:?} after the last send", t.elapsed());

    let ledger = Ledger::new(producer.sent(), consumer.received_keys());
    eprintln!("{}", ledger.summary());
    assert_eq!(ledger.sent().len(), MESSAGES);
    assert!(ledger.missing().is_empty(), "{}", ledger.summary());
    assert!(ledger.unexpected().is_empty(), "{}", ledger.summary());
    let deliveries = consumer.deliveries();
    assert!(deliveries.len() >= MESSAGES);
    assert!(
        deliveries.iter().all(|d| d.broker_name == "broker-a"),
        "every message comes from broker-a"
    );

    let t = Instant::now();
    producer.shutdown().await;
    consumer.shutdown().await;
    eprintln!("clients shut down in {:?}", t.elapsed());
}
