//! The scan engine against real RocketMQ clusters (NameServer + broker processes from
//! ferry-testkit) and fault-injecting peers on 127.0.0.1.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_core::TopicClass;
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::{BrokerAdmin, ClientConfig, Credentials, RemotingClient};
use ferry_scanner::engine::{CollisionKind, FailureKind, Outcome};
use ferry_scanner::{ScanEngine, ScanError, SourceSpec};
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster, TwoClusters};
use support::*;

fn source(namesrv: &str) -> SourceSpec {
    SourceSpec {
        namesrv_addrs: namesrv.to_string(),
        ..Default::default()
    }
}

fn topic(name: &str, queues: i32) -> TopicConfig {
    TopicConfig {
        topic_name: name.into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        ..Default::default()
    }
}

fn group(name: &str) -> SubscriptionGroupConfig {
    SubscriptionGroupConfig {
        group_name: name.into(),
        ..Default::default()
    }
}

/// Creates `n` user topics (some namespaced, one ordered with a 5.x type), `n` groups and a
/// retry topic on the cluster's broker with batch creates; returns the names.
async fn populate(cluster: &RocketMqCluster, n: usize) -> (BTreeSet<String>, BTreeSet<String>) {
    let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig::default()));
    let mut topics: Vec<TopicConfig> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                topic(&format!("shop%Topic{i:03}"), 4)
            } else {
                topic(&format!("Topic{i:03}"), 8)
            }
        })
        .collect();
    let mut ordered = topic("OrderedTopic", 2);
    ordered.order = true;
    ordered
        .attributes
        .insert("message.type".into(), "FIFO".into());
    topics.push(ordered);
    admin
        .create_topics(&cluster.broker_addr(), &topics)
        .await
        .unwrap();
    admin
        .create_topics(&cluster.broker_addr(), &[topic("%RETRY%Group000", 1)])
        .await
        .unwrap();
    let groups: Vec<SubscriptionGroupConfig> =
        (0..n).map(|i| group(&format!("Group{i:03}"))).collect();
    admin
        .create_groups(&cluster.broker_addr(), &groups)
        .await
        .unwrap();
    (
        topics.iter().map(|t| t.topic_name.clone()).collect(),
        groups.iter().map(|g| g.group_name.clone()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ok_reports_clusters_brokers_and_versions() {
    init_tracing();
    let both = TwoClusters::start().await.unwrap();
    let engine = ScanEngine::default();
    let report = engine
        .check_connection(
            &source(&both.a.namesrv_addr()),
            Some(&source(&both.b.namesrv_addr())),
            Some(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Ok, "{}", report.message);
    assert_eq!(report.clusters.len(), 1);
    let broker = &report.clusters[0].brokers[0];
    assert_eq!(
        (report.clusters[0].name.as_str(), broker.name.as_str()),
        ("ClusterA", "broker-a")
    );
    assert_eq!(
        broker.master_addr.as_deref(),
        Some(both.a.broker_addr().as_str())
    );
    assert!(
        broker.version.as_deref().is_some_and(|v| !v.is_empty()),
        "{broker:?}"
    );
    assert!(report.collisions.is_empty(), "{:?}", report.collisions);
    assert!(!report.acl_enabled);
    let roles: Vec<(&str, bool)> = report
        .probes
        .iter()
        .map(|p| (p.role.as_str(), p.ok))
        .collect();
    assert_eq!(
        roles,
        [
            ("namesrv", true),
            ("broker", true),
            ("target-namesrv", true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_collisions_with_the_target_are_reported() {
    init_tracing();
    let same_broker = TwoClusters::start_with(
        ClusterSpec::default(),
        ClusterSpec {
            cluster_name: "ClusterB",
            broker_name: "broker-a",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let engine = ScanEngine::default();
    let report = engine
        .check_connection(
            &source(&same_broker.a.namesrv_addr()),
            Some(&source(&same_broker.b.namesrv_addr())),
            None,
        )
        .await
        .unwrap();
    assert_eq!(report.collisions.len(), 1, "{:?}", report.collisions);
    assert_eq!(report.collisions[0].kind, CollisionKind::BrokerName);
    assert_eq!(report.collisions[0].name, "broker-a");
    assert!(report.collisions[0].detail.contains("rename"));
    drop(same_broker);

    let same_cluster = TwoClusters::start_with(
        ClusterSpec::default(),
        ClusterSpec {
            cluster_name: "ClusterA",
            broker_name: "broker-b",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let report = engine
        .check_connection(
            &source(&same_cluster.a.namesrv_addr()),
            Some(&source(&same_cluster.b.namesrv_addr())),
            None,
        )
        .await
        .unwrap();
    let kinds: Vec<(CollisionKind, &str)> = report
        .collisions
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(kinds, [(CollisionKind::ClusterName, "ClusterA")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_name_servers_are_named_with_refused_or_timeout() {
    init_tracing();
    let hung = HungListener::start().await;
    let dead = dead_addr();
    let engine = ScanEngine::default();
    let report = engine
        .check_connection(
            &source(&format!("{dead};{}", hung.addr)),
            None,
            Some(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::NamesrvUnreachable,
        "{}",
        report.message
    );
    let kinds: Vec<(String, Option<FailureKind>)> = report
        .probes
        .iter()
        .map(|p| (p.address.clone(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (dead.clone(), Some(FailureKind::Refused)),
            (hung.addr.clone(), Some(FailureKind::Timeout))
        ]
    );
    assert!(report.message.contains(&dead) && report.message.contains("refused"));
    assert!(report.message.contains(&hung.addr) && report.message.contains("timeout"));

    // A scan says the same as an error naming every address.
    let err = engine
        .scan(
            &source(&format!("{dead};{}", hung.addr)),
            None,
            Some(Duration::from_millis(500)),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::NamesrvUnreachable(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("connection refused by {dead}")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("request to {} timed out", hung.addr)),
        "{msg}"
    );

    // Bad input is refused before any traffic.
    let err = engine
        .check_connection(&source("nohost"), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::InvalidArgument(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn something_that_is_not_rocketmq_is_a_protocol_error() {
    init_tracing();
    let http = HttpListener::start().await;
    let report = ScanEngine::default()
        .check_connection(&source(&http.addr), None, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::ProtocolError, "{}", report.message);
    assert_eq!(report.probes[0].kind, Some(FailureKind::Protocol));
    assert!(
        report.message.contains("answered HTTP"),
        "{}",
        report.message
    );
    let err = ScanEngine::default()
        .scan(
            &source(&http.addr),
            None,
            Some(Duration::from_secs(2)),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::Protocol(_)), "{err}");
    assert!(err.to_string().contains(&http.addr), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_reachable_name_server_list_is_partial() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let dead = dead_addr();
    let report = ScanEngine::default()
        .check_connection(
            &source(&format!("{};{dead}", cluster.namesrv_addr())),
            None,
            Some(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.message);
    assert!(report.message.contains(&dead), "{}", report.message);
    assert_eq!(report.clusters[0].name, "ClusterA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_counts_match_what_was_created_and_system_topics_are_apart() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let (topics, groups) = populate(&cluster, 30).await;
    let progress = std::sync::Mutex::new(Vec::new());
    let inv = ScanEngine::default()
        .scan(
            &SourceSpec {
                namesrv_addrs: cluster.namesrv_addr(),
                cluster_name: Some("ClusterA".into()),
                credentials: None,
            },
            None,
            None,
            &|p| {
                progress
                    .lock()
                    .unwrap()
                    .push((p.brokers_done, p.brokers_total))
            },
        )
        .await
        .unwrap();
    assert!(inv.missing.is_empty(), "{:?}", inv.missing);
    assert_eq!(inv.source_id, "ClusterA");
    assert_eq!(*progress.lock().unwrap(), [(0, 1), (1, 1)]);
    let user_topics: BTreeSet<String> = inv
        .topics
        .iter()
        .filter(|t| t.class == TopicClass::User)
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(user_topics, topics);
    let user_groups: BTreeSet<String> = inv
        .groups
        .iter()
        .filter(|g| !g.system)
        .map(|g| g.name.clone())
        .collect();
    assert_eq!(user_groups, groups);
    let class_of = |name: &str| inv.topics.iter().find(|t| t.name == name).map(|t| t.class);
    assert_eq!(class_of("%RETRY%Group000"), Some(TopicClass::Retry));
    // Whatever the broker created for itself is never a user topic.
    for t in &inv.topics {
        if ["TBW102", "SCHEDULE_TOPIC_XXXX", "broker-a", "ClusterA"].contains(&t.name.as_str())
            || t.name.starts_with("rmq_sys_")
            || t.name.starts_with("RMQ_SYS_")
        {
            assert_eq!(t.class, TopicClass::System, "{}", t.name);
        }
    }
    let ordered = inv
        .topics
        .iter()
        .find(|t| t.name == "OrderedTopic")
        .unwrap();
    let tc = ordered.first().unwrap();
    assert!(tc.order);
    assert_eq!(
        ordered.message_type(),
        Some(ferry_metadata::MessageType::Fifo)
    );
    let ns = inv
        .topics
        .iter()
        .find(|t| t.name == "shop%Topic000")
        .unwrap();
    assert_eq!(ns.namespace().as_deref(), Some("shop"));
    assert_eq!(ns.max_read_queue_nums(), 4);
    let broker = &inv.clusters[0].brokers[0];
    assert!(broker.scanned && broker.version.is_some(), "{broker:?}");
    let counts = inv.counts();
    assert_eq!(counts.user_topics as usize, topics.len());
    assert_eq!(counts.user_groups as usize, groups.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_makes_a_partial_scan_that_names_it() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let (topics, _) = populate(&cluster, 5).await;
    let dead = dead_addr();
    let _registration =
        register_fake_broker(&cluster.namesrv_addr(), "ClusterA", "broker-down", &dead).await;
    let engine = ScanEngine::default();

    let report = engine
        .check_connection(
            &source(&cluster.namesrv_addr()),
            None,
            Some(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Partial, "{}", report.message);
    let down = report.probes.iter().find(|p| p.address == dead).unwrap();
    assert_eq!((down.ok, down.kind), (false, Some(FailureKind::Refused)));

    let inv = engine
        .scan(
            &source(&cluster.namesrv_addr()),
            None,
            Some(Duration::from_secs(2)),
            &|_| {},
        )
        .await
        .unwrap();
    assert!(inv.is_partial());
    let missing = inv.missing.join("\n");
    assert!(
        missing.contains("broker broker-down (cluster ClusterA)"),
        "{missing}"
    );
    assert!(missing.contains(&dead), "{missing}");
    assert!(missing.contains("GET_ALL_TOPIC_CONFIG(21)"), "{missing}");
    assert!(
        missing.contains("GET_ALL_SUBSCRIPTIONGROUP_CONFIG(201)"),
        "{missing}"
    );
    assert!(missing.contains("refused"), "{missing}");
    // What was readable is all there.
    let found: BTreeSet<String> = inv
        .topics
        .iter()
        .filter(|t| t.class == TopicClass::User)
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(found, topics);
    let down = inv
        .clusters
        .iter()
        .flat_map(|c| &c.brokers)
        .find(|b| b.name == "broker-down")
        .unwrap();
    assert!(!down.scanned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_broker_answers_name_the_address_and_request_code() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let garbage = GarbageBroker::start().await;
    let _registration = register_fake_broker(
        &cluster.namesrv_addr(),
        "ClusterA",
        "broker-garbage",
        &garbage.addr,
    )
    .await;
    let inv = ScanEngine::default()
        .scan(
            &source(&cluster.namesrv_addr()),
            None,
            Some(Duration::from_secs(2)),
            &|_| {},
        )
        .await
        .unwrap();
    let line = inv
        .missing
        .iter()
        .find(|m| m.contains("broker-garbage") && m.contains("topics"))
        .unwrap_or_else(|| panic!("{:?}", inv.missing));
    assert!(line.contains(&garbage.addr), "{line}");
    assert!(line.contains("GET_ALL_TOPIC_CONFIG(21)"), "{line}");
    assert!(line.contains("(protocol)"), "{line}");

    // Only garbage to scan: the whole scan is a protocol error naming it.
    let alone = RocketMqCluster::start(ClusterSpec::cluster_b())
        .await
        .unwrap();
    let _g = register_fake_broker(
        &alone.namesrv_addr(),
        "ClusterX",
        "broker-garbage",
        &garbage.addr,
    )
    .await;
    let err = ScanEngine::default()
        .scan(
            &SourceSpec {
                namesrv_addrs: alone.namesrv_addr(),
                cluster_name: Some("ClusterX".into()),
                credentials: None,
            },
            None,
            Some(Duration::from_secs(2)),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ScanError::Protocol(_)), "{err}");
    assert!(err.to_string().contains(&garbage.addr), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cluster_is_named_with_the_known_ones() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let spec = SourceSpec {
        namesrv_addrs: cluster.namesrv_addr(),
        cluster_name: Some("Nope".into()),
        credentials: None,
    };
    let engine = ScanEngine::default();
    let report = engine.check_connection(&spec, None, None).await.unwrap();
    assert_eq!(report.outcome, Outcome::ClusterNotFound);
    assert!(report.message.contains("ClusterA"), "{}", report.message);
    let err = engine.scan(&spec, None, None, &|_| {}).await.unwrap_err();
    assert!(matches!(err, ScanError::ClusterNotFound { .. }), "{err}");
}

/// ACL 2.0 on a real broker: no keys and wrong keys are authentication errors, right keys
/// scan and read the users, and the secret is nowhere in what comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_broker_tells_auth_errors_apart_and_reads_users() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec {
        cluster_name: "AclCluster",
        broker_name: "broker-plain",
        ..Default::default()
    })
    .await
    .unwrap();
    let acl = AclBroker::start(&cluster.namesrv_addr(), "AclCluster", "broker-acl").await;
    let engine = ScanEngine::default();
    let with = |creds: Option<Credentials>| SourceSpec {
        namesrv_addrs: cluster.namesrv_addr(),
        cluster_name: Some("AclCluster".into()),
        credentials: creds,
    };

    let none = engine
        .check_connection(&with(None), None, Some(Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(none.outcome, Outcome::AuthFailed, "{}", none.message);
    assert!(none.acl_enabled);
    assert!(none.message.contains("no credentials"), "{}", none.message);
    let refused = none.probes.iter().find(|p| p.address == acl.addr).unwrap();
    assert_eq!(refused.kind, Some(FailureKind::Auth), "{refused:?}");

    let wrong = engine
        .check_connection(
            &with(Some(Credentials::new(ACL_ADMIN, "not-the-secret"))),
            None,
            Some(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    assert_eq!(wrong.outcome, Outcome::AuthFailed, "{}", wrong.message);
    assert!(wrong.message.contains("were refused"), "{}", wrong.message);
    assert!(!wrong.message.contains("not-the-secret"));

    let right = engine
        .check_connection(
            &with(Some(Credentials::new(ACL_ADMIN, ACL_SECRET))),
            None,
            Some(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    assert_eq!(right.outcome, Outcome::Ok, "{}", right.message);
    assert!(
        right.acl_enabled,
        "the unsigned probe should have been refused"
    );

    // Scanning with wrong keys: the ACL broker is missing, as an authentication failure.
    let partial = engine
        .scan(
            &with(Some(Credentials::new(ACL_ADMIN, "not-the-secret"))),
            None,
            None,
            &|_| {},
        )
        .await
        .unwrap();
    assert!(
        partial
            .missing
            .iter()
            .any(|m| m.contains("broker-acl") && m.contains("(auth)")),
        "{:?}",
        partial.missing
    );

    let inv = engine
        .scan(
            &with(Some(Credentials::new(ACL_ADMIN, ACL_SECRET))),
            None,
            None,
            &|_| {},
        )
        .await
        .unwrap();
    assert!(inv.missing.is_empty(), "{:?}", inv.missing);
    let users = inv.acl_users.as_ref().expect("ACL users readable");
    let admin = users.iter().find(|u| u.username == ACL_ADMIN).unwrap();
    assert_eq!(admin.brokers, ["broker-acl"]);
    let json = serde_json::to_string(&inv).unwrap();
    assert!(
        !json.contains(ACL_SECRET),
        "the secret leaked into the inventory"
    );
    assert!(!format!("{inv:?}").contains(ACL_SECRET));
}
