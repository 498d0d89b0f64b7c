//! Two real RocketMQ clusters side by side, as a migration has them.

use std::time::{Duration, Instant};

use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster, TwoClusters, fetch_route};

#[tokio::test]
async fn two_clusters_start_independently() {
    let started = Instant::now();
    let both = TwoClusters::start()
        .await
        .expect("both clusters must start");
    eprintln!("TwoClusters::start took {:?}", started.elapsed());
    let (a, b) = (&both.a, &both.b);

    let addrs = [
        a.namesrv_addr(),
        a.broker_addr(),
        b.namesrv_addr(),
        b.broker_addr(),
    ];
    let distinct: std::collections::BTreeSet<_> = addrs.iter().collect();
    assert_eq!(distinct.len(), 4, "ports must differ: {addrs:?}");

    for (c, other) in [(a, b), (b, a)] {
        let info = c.cluster_info().await.expect("106");
        let clusters: Vec<_> = info.cluster_addr_table.keys().cloned().collect();
        assert_eq!(clusters, [c.cluster_name()], "{}", c.log_tail());
        let brokers: Vec<_> = info.broker_addr_table.keys().cloned().collect();
        assert_eq!(brokers, [c.broker_name()]);
        let broker = &info.broker_addr_table[c.broker_name()];
        assert_eq!(broker.cluster, c.cluster_name());
        assert_eq!(broker.master_addr(), Some(c.broker_addr().as_str()));
        assert_eq!(broker.broker_addrs.len(), 1, "a single master: {broker:?}");
        assert!(!info.broker_addr_table.contains_key(other.broker_name()));
    }
}

#[tokio::test]
async fn topic_created_on_b_appears_in_b_route_only() {
    let both = TwoClusters::start()
        .await
        .expect("both clusters must start");
    let topic = "FerryTestkitTopicB";
    assert!(
        both.b.route(topic).await.unwrap().is_none(),
        "auto-create is off"
    );

    let route = both.b.create_topic(topic, 4).await.expect("create on B");
    assert_eq!(route.queue_datas.len(), 1, "{route:?}");
    let q = &route.queue_datas[0];
    assert_eq!(
        (
            q.broker_name.as_str(),
            q.read_queue_nums,
            q.write_queue_nums,
            q.perm
        ),
        ("broker-b", 4, 4, 6)
    );
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(
        route.broker_datas[0].master_addr(),
        Some(both.b.broker_addr().as_str())
    );

    assert!(
        both.a.route(topic).await.unwrap().is_none(),
        "A must not know B's topic"
    );
    // Also after B's next registration round trip: A's NameServer never hears of B.
    let again = fetch_route(&both.a.namesrv_addr(), topic).await.unwrap();
    assert!(again.is_none());
}

/// Fault injection: both processes can go away and come back on the same ports with their
/// data; the broker re-registers with the restarted NameServer.
#[tokio::test]
async fn broker_and_namesrv_restart_on_same_ports_with_data() {
    let t = Instant::now();
    let mut a = RocketMqCluster::start(ClusterSpec::default())
        .await
        .expect("cluster A must start");
    eprintln!("RocketMqCluster::start took {:?}", t.elapsed());
    let (namesrv, broker) = (a.namesrv_addr(), a.broker_addr());
    a.create_topic("FerryRestartTopic", 2).await.unwrap();

    let t = Instant::now();
    a.stop_broker().await.unwrap();
    eprintln!("graceful broker stop took {:?}", t.elapsed());
    assert!(!a.broker_running());
    // A graceful stop unregisters the broker (the NameServer applies it in batches: poll).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = a.cluster_info().await.unwrap();
        if !info.broker_addr_table.contains_key("broker-a") {
            break;
        }
        assert!(Instant::now() < deadline, "still registered: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.start_broker().await.expect("broker restart");
    assert_eq!(a.broker_addr(), broker);

    a.kill_namesrv();
    assert!(a.cluster_info().await.is_err(), "NameServer is down");
    let t = Instant::now();
    a.start_namesrv().await.expect("NameServer restart");
    eprintln!(
        "NameServer restart + broker re-registration took {:?}",
        t.elapsed()
    );
    assert_eq!(a.namesrv_addr(), namesrv);
    assert!(t.elapsed() < Duration::from_secs(30));

    let route = a.route("FerryRestartTopic").await.unwrap();
    let route = route.expect("the topic survives in the broker store and is re-registered");
    assert_eq!(route.queue_datas[0].broker_name, "broker-a");

    let dir = a.dir().to_path_buf();
    drop(a);
    assert!(!dir.exists(), "a clean drop removes the directory");
}
