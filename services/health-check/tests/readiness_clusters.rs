//! Readiness for real causes, measured on two real RocketMQ clusters (A = source, B =
//! target) with real producers and consumers: what is missing on the target, no router or a
//! router not answering, clients not switched, dwell after a change, a group not consuming on
//! the target yet, a source backlog that drains, writes reaching the source, scheduled
//! messages not delivered yet; and the metrics a scan sets.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::common::v1::ClusterEndpoint;
use ferry_api::health_check::v1 as pb;
use ferry_api::health_check::v1::health_check_service_server::HealthCheckService;
use ferry_core::Stage;
use ferry_core::readiness::{ReadinessPolicy, ReasonCode};
use ferry_health_check::{EngineConfig, HealthCheck, StoreSlot, TopicReport};
use ferry_store::{EmbeddedStore, FerryStore, MigrationStore, StageChange};
use ferry_testkit::rocketmq::TwoClusters;
use ferry_testkit::traffic::{ClientOptions, TrafficConsumer, TrafficProducer};
use support::{Router, create_task, init_tracing, register_dead_router, wait_for};
use tonic::Request;

const TASK: &str = "mt-readiness";
const TOPIC: &str = "FerryReadyTopic";
const GROUP: &str = "ferry-ready-cg";
const PRODUCER_GROUP: &str = "ferry-ready-pg";
/// Short on purpose: the rules do not care how long, only that it is respected.
const DWELL: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(60);

fn codes(r: &ferry_core::readiness::Readiness) -> BTreeSet<ReasonCode> {
    r.codes()
}

async fn check(hc: &HealthCheck) -> TopicReport {
    let engine = hc.engine();
    let report = engine.check(TASK, &[TOPIC.to_string()]).await.unwrap();
    engine.publish(&report).await.unwrap();
    report.topics.into_iter().next().unwrap()
}

async fn force_to(store: &dyn MigrationStore, to: Stage) {
    let current = store.get_topic(TASK, TOPIC).await.unwrap();
    store
        .change_stage(StageChange {
            task_id: TASK.into(),
            topic: TOPIC.into(),
            expected_revision: current.revision,
            to,
            actor: "test".into(),
            forced: true,
            reason: None,
            task_revision: None,
        })
        .await
        .unwrap();
}

async fn backlog(hc: &HealthCheck, clusters: &TwoClusters) -> pb::CheckBacklogResponse {
    hc.check_backlog(Request::new(pb::CheckBacklogRequest {
        cluster: Some(ClusterEndpoint {
            namesrv_addrs: clusters.a.namesrv_addr(),
            cluster_name: clusters.a.cluster_name().into(),
            credentials: None,
        }),
        topics: vec![TOPIC.into()],
        groups: Vec::new(),
    }))
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_real_causes() {
    init_tracing();
    let started = Instant::now();
    let clusters = TwoClusters::start().await.expect("two clusters");
    let (a, b) = (&clusters.a, &clusters.b);
    a.create_topic(TOPIC, 4).await.unwrap();
    a.create_group(GROUP).await.unwrap();
    let store: Arc<dyn FerryStore> = Arc::new(EmbeddedStore::in_memory());
    create_task(store.as_ref(), &clusters, TASK, &[TOPIC]).await;
    let hc = HealthCheck::new(
        StoreSlot::ready(store.clone()),
        EngineConfig {
            policy: ReadinessPolicy {
                min_dwell: DWELL,
                source_quiet: QUIET,
            },
            ..EngineConfig::default()
        },
    );

    // Traffic on the source, clients pointed straight at its NameServer.
    let mut source_consumer = TrafficConsumer::start(&a.namesrv_addr(), GROUP, TOPIC)
        .await
        .unwrap();
    let producer =
        TrafficProducer::start(&a.namesrv_addr(), PRODUCER_GROUP, ClientOptions::default())
            .await
            .unwrap();
    let mut keys = HashSet::new();
    for i in 0..20 {
        let key = format!("warm-{i}");
        producer.send_keyed(TOPIC, &key, b"m").await.unwrap();
        keys.insert(key);
    }
    source_consumer.wait_for_keys(&keys, WAIT).await.unwrap();
    eprintln!("[{:?}] clusters and traffic up", started.elapsed());

    // 1. Before import, no routers: the target lacks topic and group, every client of the
    //    source is unswitched, and the topic was added a moment ago.
    let t = check(&hc).await;
    assert_eq!(t.stage, Stage::Initial);
    let next = &t.next;
    assert_eq!(next.to, Some(Stage::DualRead));
    assert!(!next.ready);
    for code in [
        ReasonCode::TopicNotImported,
        ReasonCode::GroupNotImported,
        ReasonCode::ClientsNotSwitched,
        ReasonCode::RouterUnavailable,
        ReasonCode::DwellTooShort,
    ] {
        assert!(
            codes(next).contains(&code),
            "{code} expected: {}",
            next.summary()
        );
    }
    let summary = next.summary();
    assert!(
        summary.contains(&format!("missing on the target: {GROUP}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("consumer {GROUP} 127.0.0.1:")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("producer {PRODUCER_GROUP} 127.0.0.1:")),
        "{summary}"
    );
    assert!(
        summary.contains(
            "ROUTER_UNAVAILABLE: no router of the task is registered (0 registered, 0 answering)"
        ),
        "{summary}"
    );
    assert_eq!(
        t.previous.codes(),
        BTreeSet::from([ReasonCode::NoSuchStage])
    );
    let unswitched = hc
        .list_unswitched_clients(Request::new(pb::ListUnswitchedClientsRequest {
            task_id: TASK.into(),
            topic: TOPIC.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unswitched.routers_consulted, 0);
    let roles: BTreeSet<(String, String)> = unswitched
        .clients
        .iter()
        .map(|c| (c.role.clone(), c.group.clone()))
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([
            ("consumer".to_string(), GROUP.to_string()),
            ("producer".to_string(), PRODUCER_GROUP.to_string()),
        ]),
        "{unswitched:?}"
    );
    eprintln!(
        "[{:?}] phase 1: not ready before import: {summary}",
        started.elapsed()
    );

    // 2. Import into the target. A router of the task is registered but does not answer,
    //    and the one that saw the clients serves another task: switching is unproven.
    b.create_topic(TOPIC, 4).await.unwrap();
    b.create_group(GROUP).await.unwrap();
    let dead = register_dead_router(store.as_ref(), "r-dead", TASK).await;
    let other = Router::start_for(store.as_ref(), "r-other", Some("mt-other")).await;
    other.saw(TOPIC, "127.0.0.1:50001");
    let t = check(&hc).await;
    let summary = t.next.summary();
    assert!(
        codes(&t.next).contains(&ReasonCode::RouterUnavailable),
        "{summary}"
    );
    assert!(
        codes(&t.next).contains(&ReasonCode::ClientsNotSwitched),
        "{summary}"
    );
    assert!(
        summary.contains("0 of 1 registered router(s) answering") && summary.contains("r-dead"),
        "{summary}"
    );
    // A live router of the task sees the clients; the dead one still counts against it.
    let router = Router::start_for(store.as_ref(), "r-1", Some(TASK)).await;
    router.saw(TOPIC, "127.0.0.1:50001");
    let t = check(&hc).await;
    let summary = t.next.summary();
    assert!(
        summary.contains("ROUTER_UNAVAILABLE: 1 of 2 registered router(s) answering"),
        "{summary}"
    );
    assert!(
        !codes(&t.next).contains(&ReasonCode::ClientsNotSwitched),
        "{summary}"
    );
    dead.revoke().await.unwrap();
    other.stop().await;
    eprintln!(
        "[{:?}] phase 2: routers down or of another task",
        started.elapsed()
    );
    let t = wait_for("INITIAL -> DUAL_READ ready", WAIT, || async {
        let t = check(&hc).await;
        if t.next.ready {
            Ok(t)
        } else {
            Err(t.next.summary())
        }
    })
    .await;
    assert!(t.next.reasons.is_empty());
    eprintln!(
        "[{:?}] phase 2: INITIAL -> DUAL_READ ready",
        started.elapsed()
    );

    // 3. Right after a change the dwell is too short; and no consumer reads the target yet.
    force_to(store.as_ref(), Stage::DualRead).await;
    let t = check(&hc).await;
    assert_eq!(
        (t.stage, t.next.to),
        (Stage::DualRead, Some(Stage::DualWrite))
    );
    assert!(
        codes(&t.next).contains(&ReasonCode::DwellTooShort),
        "{}",
        t.next.summary()
    );
    assert!(
        codes(&t.next).contains(&ReasonCode::ConsumersNotOnTarget),
        "{}",
        t.next.summary()
    );
    assert!(
        !codes(&t.next).contains(&ReasonCode::ClientsNotSwitched),
        "{}",
        t.next.summary()
    );
    assert!(
        t.next.summary().contains(&format!(
            "CONSUMERS_NOT_ON_TARGET: 1 group(s) consuming on the source with no consumer on the target yet: {GROUP}"
        )),
        "{}",
        t.next.summary()
    );
    // Rolling back only needs the dwell (the target holds nothing yet).
    assert_eq!(
        t.previous.codes(),
        BTreeSet::from([ReasonCode::DwellTooShort])
    );
    // A consumer of the group attaches to the target (as the merged route would make it).
    let target_consumer = TrafficConsumer::start(&b.namesrv_addr(), GROUP, TOPIC)
        .await
        .unwrap();
    wait_for("DUAL_READ -> DUAL_WRITE ready", WAIT, || async {
        let t = check(&hc).await;
        if t.next.ready {
            Ok(())
        } else {
            Err(t.next.summary())
        }
    })
    .await;
    let monitor = hc
        .get_migration_monitor(Request::new(pb::GetMigrationMonitorRequest {
            task_id: TASK.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let g = monitor.groups.iter().find(|g| g.group == GROUP).unwrap();
    assert_eq!((g.source_clients, g.target_clients), (1, 1), "{monitor:?}");
    assert!(g.exists_on_target && g.switched, "{monitor:?}");
    assert!(monitor.groups_not_switched.is_empty());
    let figures = &monitor.topics[0].clusters;
    assert_eq!(
        (figures[0].role.as_str(), figures[1].role.as_str()),
        ("source", "target")
    );
    assert_eq!(
        (figures[0].writable_queues, figures[0].readable_queues),
        (4, 4)
    );
    assert_eq!(
        (figures[1].writable_queues, figures[1].readable_queues),
        (0, 4)
    );
    eprintln!("[{:?}] phase 3: dwell and attachment", started.elapsed());

    // 4. SWITCHING with the source consumer gone: new writes to the source are a backlog no
    //    one reads, and writes the stage forbids.
    force_to(store.as_ref(), Stage::DualWrite).await;
    force_to(store.as_ref(), Stage::Switching).await;
    wait_for("source drained before the consumer stops", WAIT, || async {
        let t = check(&hc).await;
        if codes(&t.next).contains(&ReasonCode::SourceBacklog) {
            Err(t.next.summary())
        } else {
            Ok(())
        }
    })
    .await;
    source_consumer.shutdown().await;
    // The baseline of the write watch is in the record now; these writes come after it.
    for i in 0..15 {
        producer
            .send_keyed(TOPIC, &format!("late-{i}"), b"m")
            .await
            .unwrap();
    }
    // And one scheduled message, due in 10 s (delay level 3): held by the source broker.
    producer
        .send_delayed(TOPIC, "delayed-0", b"m", 3)
        .await
        .unwrap();
    let t = check(&hc).await;
    let summary = t.next.summary();
    assert_eq!(t.next.to, Some(Stage::Done));
    assert!(
        summary.contains(&format!("source backlog 15 messages in group {GROUP}")),
        "{summary}"
    );
    assert!(
        codes(&t.next).contains(&ReasonCode::SourceStillWritten),
        "{summary}"
    );
    assert!(
        codes(&t.next).contains(&ReasonCode::PendingDelayMessages),
        "{summary}"
    );
    assert!(
        summary.contains("scheduled message(s) not delivered yet on the source")
            && summary.contains("delay level 3:"),
        "{summary}"
    );
    assert!(
        summary.contains("15 message(s) written to the source"),
        "{summary}"
    );
    let manual = backlog(&hc, &clusters).await;
    assert!(!manual.all_drained);
    assert_eq!(manual.backlogs.len(), 1);
    assert_eq!(
        (
            manual.backlogs[0].group.as_str(),
            manual.backlogs[0].backlog
        ),
        (GROUP, 15)
    );
    eprintln!("[{:?}] phase 4: {summary}", started.elapsed());

    // 5. The consumer comes back and drains the source; once nothing more is written for the
    //    quiet window, SWITCHING -> DONE is ready.
    source_consumer = TrafficConsumer::start(&a.namesrv_addr(), GROUP, TOPIC)
        .await
        .unwrap();
    let mut late: HashSet<String> = (0..15).map(|i| format!("late-{i}")).collect();
    // The scheduled message is delivered to the source topic when due, and consumed there.
    late.insert("delayed-0".into());
    source_consumer.wait_for_keys(&late, WAIT).await.unwrap();
    wait_for("SWITCHING -> DONE ready", WAIT, || async {
        let t = check(&hc).await;
        if t.next.ready {
            Ok(())
        } else {
            Err(t.next.summary())
        }
    })
    .await;
    let manual = backlog(&hc, &clusters).await;
    assert!(manual.all_drained, "{manual:?}");
    assert_eq!(manual.backlogs[0].retry_backlog, 0);
    eprintln!(
        "[{:?}] phase 5: drained, SWITCHING -> DONE ready",
        started.elapsed()
    );

    // 6. A message scheduled two hours out (delay level 18) blocks DONE for as long: the
    //    broker would deliver it to the source after its consumers left.
    producer
        .send_delayed(TOPIC, "delayed-2h", b"m", 18)
        .await
        .unwrap();
    let t = check(&hc).await;
    let summary = t.next.summary();
    assert!(!t.next.ready);
    assert!(
        codes(&t.next).contains(&ReasonCode::PendingDelayMessages),
        "{summary}"
    );
    // (Exactly one unless a consumer hiccup sent a message back for retry meanwhile: retries
    // wait in the same schedule queue, at level 3 and up.)
    assert!(
        summary.contains("scheduled message(s) not delivered yet on the source (")
            && summary.contains(&format!("{} ({}): ", a.broker_name(), a.broker_addr()))
            && summary.contains("delay level 18: 1")
            && summary.contains("for all topics"),
        "{summary}"
    );
    // Rolling back does not care.
    assert!(
        !codes(&t.previous).contains(&ReasonCode::PendingDelayMessages),
        "{}",
        t.previous.summary()
    );

    // 7. The periodic scan sets the metrics from what it measured.
    hc.engine().scan_once().await.unwrap();
    let text = ferry_telemetry::metrics::encode();
    for series in [
        format!("ferry_topic_stage{{task=\"{TASK}\",topic=\"{TOPIC}\",stage=\"SWITCHING\"}} 1"),
        format!("ferry_topic_ready{{task=\"{TASK}\",topic=\"{TOPIC}\",direction=\"next\"}} 0"),
        format!(
            "ferry_topic_not_ready_reasons{{task=\"{TASK}\",topic=\"{TOPIC}\",direction=\"next\",reason=\"PENDING_DELAY_MESSAGES\"}} 1"
        ),
        format!("ferry_unswitched_clients{{task=\"{TASK}\"}} 0"),
    ] {
        assert!(text.contains(&series), "{series} missing in:\n{text}");
    }
    for prefix in [
        format!("ferry_cluster_tps{{task=\"{TASK}\",cluster=\"source\",direction=\"in\"}} "),
        format!("ferry_cluster_tps{{task=\"{TASK}\",cluster=\"target\",direction=\"out\"}} "),
        format!(
            "ferry_topic_tps{{task=\"{TASK}\",topic=\"{TOPIC}\",cluster=\"source\",direction=\"in\"}} "
        ),
    ] {
        assert!(text.contains(&prefix), "{prefix} missing in:\n{text}");
    }
    // Only the current stage has a series.
    assert!(
        !text.contains(&format!(
            "ferry_topic_stage{{task=\"{TASK}\",topic=\"{TOPIC}\",stage=\"DUAL_WRITE\"}}"
        )),
        "{text}"
    );
    eprintln!(
        "[{:?}] phases 6-7: long delay pending, metrics",
        started.elapsed()
    );

    producer.shutdown().await;
    source_consumer.shutdown().await;
    target_consumer.shutdown().await;
    router.stop().await;
}
