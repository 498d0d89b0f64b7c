//! Acceptance: real producers and consumers (rocketmq-client-rust, route poll 10 s) whose
//! namesrvAddr is a `ferry-router` process, two real RocketMQ clusters, real etcd. For each
//! stage, messages land on exactly the clusters the stage allows and consumers read exactly
//! the readable queues — checked on the brokers' own stats (GET_TOPIC_STATS_INFO max
//! offsets, GET_CONSUME_STATS consumer offsets), not on the router's answers. The router is
//! also killed and restarted mid-migration: clients keep working on their cached routes,
//! then follow the router again.
#![cfg(feature = "rocketmq-client")]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_remoting::{BrokerAdmin, ClientConfig, RemotingClient};
use ferry_store::MigrationStore;
use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use ferry_testkit::traffic::{ClientOptions, Ledger, SentRecord, TrafficConsumer, TrafficProducer};
use support::proc::*;
use support::*;

const TASK: &str = "acceptance";
const TOPIC: &str = "Orders";
const GROUP: &str = "cg-orders";

struct Brokers {
    admin: BrokerAdmin,
    a: String,
    b: String,
}

impl Brokers {
    /// Messages stored per broker (Σ max offset over the topic's queues).
    async fn stored(&self) -> (i64, i64) {
        let total = |addr: String| async move {
            self.admin
                .topic_stats(&addr, TOPIC)
                .await
                .unwrap()
                .map_or(0, |t| {
                    t.offset_table.iter().map(|(_, o)| o.max_offset).sum()
                })
        };
        (total(self.a.clone()).await, total(self.b.clone()).await)
    }

    /// Messages of the topic not yet consumed by the group on a broker (Σ broker offset −
    /// consumer offset); a group with no offsets there has consumed nothing.
    async fn lag(&self, addr: &str) -> i64 {
        let stored: i64 = self
            .admin
            .topic_stats(addr, TOPIC)
            .await
            .unwrap()
            .map_or(0, |t| {
                t.offset_table.iter().map(|(_, o)| o.max_offset).sum()
            });
        match self.admin.consume_stats(addr, GROUP, Some(TOPIC)).await {
            Ok(stats) if !stats.offset_table.is_empty() => {
                let consumed: i64 = stats
                    .offset_table
                    .iter()
                    .map(|(_, o)| o.consumer_offset.max(0))
                    .sum();
                stored - consumed
            }
            _ => stored,
        }
    }

    async fn wait_lag(&self, addr: &str, want: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let lag = self.lag(addr).await;
            if lag == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lag of {GROUP} on {addr} is {lag}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn send(p: &TrafficProducer, prefix: &str, n: usize) -> Vec<SentRecord> {
    let mut out = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        out.push(
            p.send_keyed(TOPIC, &key, key.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("send {key}: {e}")),
        );
    }
    out
}

fn per_broker(records: &[SentRecord]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(r.broker_name.clone()).or_insert(0) += 1;
    }
    m
}

fn keys(records: &[SentRecord]) -> HashSet<String> {
    records.iter().map(|r| r.key.clone()).collect()
}

/// Waits until at least `clients` distinct clients looked `TOPIC` up at the router after
/// `since_ms`: their next poll has answered with the current route.
async fn wait_polled(router: &RouterProcess, since_ms: i64, clients: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = router.presence(TOPIC).await;
        let fresh = p
            .clients
            .iter()
            .filter(|c| {
                c.last_seen
                    .as_ref()
                    .is_some_and(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000) >= since_ms)
            })
            .count();
        if fresh >= clients {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {fresh} clients polled the router since the change: {:?}",
            p.clients
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producers_and_consumers_follow_every_stage() {
    init_tracing();
    let started = Instant::now();
    let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
    let (etcd, clusters) = (etcd.unwrap(), clusters.unwrap());
    for c in [&clusters.a, &clusters.b] {
        c.create_topic(TOPIC, 4).await.unwrap();
        c.create_group(GROUP).await.unwrap();
    }
    let prefix = "/ferry-acceptance/";
    let store = etcd_store(&etcd.endpoint(), prefix).await;
    let mut t = task(TASK, &clusters.a.namesrv_addr(), &clusters.b.namesrv_addr());
    t.target_cluster = "ClusterB".into();
    store.create_task(t).await.unwrap();
    add_topics(&store, TASK, &[TOPIC]).await;
    let mut router = RouterProcess::start(
        TASK,
        &etcd.endpoint(),
        prefix,
        &["--route-ttl", "1s", "--done-grace", "40s"],
    )
    .await;
    let brokers = Brokers {
        admin: BrokerAdmin::new(RemotingClient::new(ClientConfig::default())),
        a: clusters.a.broker_addr(),
        b: clusters.b.broker_addr(),
    };
    router
        .wait_perms(TOPIC, &perms(&[("broker-a", 6)]), Duration::from_secs(15))
        .await;

    let opts = ClientOptions::default(); // route poll every 10 s, the client's minimum
    let consumer = TrafficConsumer::start(&router.namesrv, GROUP, TOPIC)
        .await
        .unwrap();
    let producer = TrafficProducer::start(&router.namesrv, "pg-orders", opts)
        .await
        .unwrap();
    // Applications not (yet) behind the router, writing straight to one cluster.
    let direct_a = TrafficProducer::start(&clusters.a.namesrv_addr(), "pg-direct-a", opts)
        .await
        .unwrap();
    let direct_b = TrafficProducer::start(&clusters.b.namesrv_addr(), "pg-direct-b", opts)
        .await
        .unwrap();
    let mut expected: HashSet<String> = HashSet::new();
    let mut log = Vec::new();

    // ---------------------------------------------------------------- INITIAL
    let (a0, b0) = brokers.stored().await;
    let sent = send(&producer, "initial", 20).await;
    assert_eq!(per_broker(&sent), [("broker-a".to_string(), 20)].into());
    let (a1, b1) = brokers.stored().await;
    assert_eq!(
        (a1 - a0, b1 - b0),
        (20, 0),
        "INITIAL: only the source stores"
    );
    expected.extend(keys(&sent));
    let on_target = send(&direct_b, "target-early", 10).await;
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = consumer.received_keys();
    assert!(
        on_target.iter().all(|r| !got.contains_key(&r.key)),
        "INITIAL: target queues must not be read"
    );
    brokers
        .wait_lag(&brokers.b, 10, Duration::from_secs(5))
        .await;
    log.push(format!("INITIAL ok at {:?}", started.elapsed()));

    // ---------------------------------------------------------------- DUAL_READ
    let since = now_ms();
    move_to(&store, TASK, TOPIC, Stage::DualRead).await;
    router
        .wait_perms(
            TOPIC,
            &perms(&[("broker-a", 6), ("broker-b", 4)]),
            Duration::from_secs(10),
        )
        .await;
    wait_polled(&router, since, 2).await;
    let (a0, b0) = brokers.stored().await;
    let sent = send(&producer, "dual-read", 20).await;
    let (a1, b1) = brokers.stored().await;
    assert_eq!(
        (a1 - a0, b1 - b0),
        (20, 0),
        "DUAL_READ: producers still write the source only"
    );
    expected.extend(keys(&sent));
    // Consumers now read the target: the early target messages arrive.
    expected.extend(keys(&on_target));
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    brokers
        .wait_lag(&brokers.b, 0, Duration::from_secs(20))
        .await;
    brokers
        .wait_lag(&brokers.a, 0, Duration::from_secs(20))
        .await;
    log.push(format!("DUAL_READ ok at {:?}", started.elapsed()));

    // ---------------------------------------------------------------- DUAL_WRITE
    let since = now_ms();
    move_to(&store, TASK, TOPIC, Stage::DualWrite).await;
    router
        .wait_perms(
            TOPIC,
            &perms(&[("broker-a", 6), ("broker-b", 6)]),
            Duration::from_secs(10),
        )
        .await;
    wait_polled(&router, since, 2).await;
    let (a0, b0) = brokers.stored().await;
    let sent = send(&producer, "dual-write", 40).await;
    let (a1, b1) = brokers.stored().await;
    assert_eq!((a1 - a0) + (b1 - b0), 40);
    assert!(
        a1 > a0 && b1 > b0,
        "DUAL_WRITE: both clusters store ({} / {})",
        a1 - a0,
        b1 - b0
    );
    assert_eq!(per_broker(&sent).len(), 2);
    expected.extend(keys(&sent));
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    log.push(format!("DUAL_WRITE ok at {:?}", started.elapsed()));

    // ---------------------------------------------------------------- router killed
    router.kill();
    let killed = Instant::now();
    move_to(&store, TASK, TOPIC, Stage::Switching).await;
    // Clients keep working on their cached (DUAL_WRITE) routes while no router answers.
    let sent = send(&producer, "router-down", 20).await;
    assert_eq!(sent.len(), 20);
    expected.extend(keys(&sent));
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(killed.elapsed())).await;
    let since = now_ms();
    router.restart().await;
    log.push(format!(
        "router down for {:?}: {} sends acknowledged on cached routes",
        killed.elapsed(),
        sent.len()
    ));

    // ---------------------------------------------------------------- SWITCHING
    router
        .wait_perms(
            TOPIC,
            &perms(&[("broker-a", 4), ("broker-b", 6)]),
            Duration::from_secs(15),
        )
        .await;
    wait_polled(&router, since, 2).await;
    let (a0, b0) = brokers.stored().await;
    let sent = send(&producer, "switching", 20).await;
    let (a1, b1) = brokers.stored().await;
    assert_eq!(
        (a1 - a0, b1 - b0),
        (0, 20),
        "SWITCHING: only the target stores new writes"
    );
    expected.extend(keys(&sent));
    // The source is still read (its backlog drains).
    let on_source = send(&direct_a, "source-switching", 10).await;
    expected.extend(keys(&on_source));
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    brokers
        .wait_lag(&brokers.a, 0, Duration::from_secs(20))
        .await;
    log.push(format!("SWITCHING ok at {:?}", started.elapsed()));

    // ---------------------------------------------------------------- DONE (grace)
    let since = now_ms();
    move_to(&store, TASK, TOPIC, Stage::Done).await;
    let done_at = Instant::now();
    router
        .wait_perms(
            TOPIC,
            &perms(&[("broker-a", 0), ("broker-b", 6)]),
            Duration::from_secs(10),
        )
        .await;
    wait_polled(&router, since, 2).await;
    let (a0, b0) = brokers.stored().await;
    let sent = send(&producer, "done", 20).await;
    let (a1, b1) = brokers.stored().await;
    assert_eq!((a1 - a0, b1 - b0), (0, 20), "DONE: only the target stores");
    expected.extend(keys(&sent));
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    // Once the consumer rebalanced (every 20 s) the source is not read any more.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let late_on_source = send(&direct_a, "source-done", 10).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let got = consumer.received_keys();
    assert!(
        late_on_source.iter().all(|r| !got.contains_key(&r.key)),
        "DONE: source queues must not be read"
    );
    assert_eq!(brokers.lag(&brokers.a).await, 10);
    // Grace over: the source leaves the route altogether.
    router
        .wait_perms(
            TOPIC,
            &perms(&[("broker-b", 6)]),
            Duration::from_secs(45).saturating_sub(done_at.elapsed()) + Duration::from_secs(5),
        )
        .await;
    let sent = send(&producer, "after-grace", 10).await;
    assert_eq!(per_broker(&sent), [("broker-b".to_string(), 10)].into());
    expected.extend(keys(&sent));
    consumer
        .wait_for_keys(&expected, Duration::from_secs(60))
        .await
        .unwrap();
    log.push(format!("DONE ok at {:?}", started.elapsed()));

    // No loss: every acknowledged send through the router was consumed.
    let mut all_sent = producer.sent();
    all_sent.extend(direct_b.sent());
    all_sent.extend(
        direct_a
            .sent()
            .into_iter()
            .filter(|r| !r.key.starts_with("source-done")),
    );
    let ledger = Ledger::new(all_sent, consumer.received_keys());
    assert!(ledger.missing().is_empty(), "{}", ledger.summary());
    log.push(format!(
        "ledger: {}; producer failures {}",
        ledger.summary(),
        producer.failures()
    ));
    for line in &log {
        eprintln!("{line}");
    }
    producer.shutdown().await;
    consumer.shutdown().await;
    direct_a.shutdown().await;
    direct_b.shutdown().await;
}
