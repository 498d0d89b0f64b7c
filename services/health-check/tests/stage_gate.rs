//! The metadata-sync gate over gRPC, fed by the health checker's periodic scan, on a real
//! etcd and two real RocketMQ clusters: a non-forced advance is refused with the measured
//! reasons, accepted once they are gone, refused again right after the change (dwell), and
//! refused when the readiness is stale; `force` overrides and is audited.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, ReadinessReasonCode, TargetType};
use ferry_api::health_check::v1 as hpb;
use ferry_api::health_check::v1::health_check_service_client::HealthCheckServiceClient;
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_core::readiness::ReadinessPolicy;
use ferry_health_check::{EngineConfig, HealthCheck};
use ferry_metadata_sync::{MigrationTasks, StoreSlot};
use ferry_server::GrpcServer;
use ferry_store::{EtcdOptions, EtcdStore, FerryStore};
use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use ferry_testkit::traffic::TrafficConsumer;
use support::{Router, init_tracing, wait_for};
use tonic::transport::Channel;

const TOPIC: &str = "FerryGateTopic";
const GROUP: &str = "ferry-gate-cg";
const WAIT: Duration = Duration::from_secs(60);
const MAX_AGE: Duration = Duration::from_secs(3);

type Tasks = MigrationTaskServiceClient<Channel>;
type Health = HealthCheckServiceClient<Channel>;

fn change(task_id: &str, force: bool) -> pb::StageChangeRequest {
    pb::StageChangeRequest {
        task_id: task_id.into(),
        topics: vec![pb::TopicRef {
            topic: TOPIC.into(),
            expected_revision: 0,
        }],
        force,
        actor: "gate-test".into(),
        reason: String::new(),
        dry_run: false,
    }
}

async fn advance(tasks: &mut Tasks, task_id: &str, force: bool) -> pb::StageChangeResult {
    tasks
        .advance_topics(pb::AdvanceTopicsRequest {
            change: Some(change(task_id, force)),
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0)
}

async fn readiness(health: &mut Health, task_id: &str) -> hpb::TopicReadiness {
    health
        .list_topic_readiness(hpb::ListTopicReadinessRequest {
            task_id: task_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .topics
        .remove(0)
}

fn reason_codes(r: &ferry_api::common::v1::Readiness) -> Vec<ReadinessReasonCode> {
    r.reasons
        .iter()
        .map(|x| ReadinessReasonCode::try_from(x.code).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_sync_gate_follows_published_readiness() {
    init_tracing();
    let started = Instant::now();
    let etcd = EtcdProcess::start().await.expect("etcd must start");
    let store: Arc<dyn FerryStore> = Arc::new(
        EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default())
            .await
            .unwrap(),
    );
    let clusters = TwoClusters::start().await.expect("two clusters");
    let (a, b) = (&clusters.a, &clusters.b);
    a.create_topic(TOPIC, 4).await.unwrap();
    a.create_group(GROUP).await.unwrap();
    let consumer = TrafficConsumer::start(&a.namesrv_addr(), GROUP, TOPIC)
        .await
        .unwrap();

    // Both services on one port, as `ferry standalone` serves them, on a real etcd.
    let health_check = HealthCheck::new(
        ferry_health_check::StoreSlot::ready(store.clone()),
        EngineConfig {
            policy: ReadinessPolicy {
                min_dwell: Duration::from_secs(2),
                source_quiet: Duration::from_secs(1),
            },
            scan_interval: Duration::from_millis(300),
            ..EngineConfig::default()
        },
    );
    let scans = health_check.spawn_scans();
    let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    server
        .add_service(
            MigrationTasks::new(StoreSlot::ready(store.clone()))
                .with_readiness_max_age(MAX_AGE)
                .into_service(),
        )
        .add_service(health_check.into_service());
    let serving = tokio::spawn(async move {
        let _ = server.serve(std::future::pending::<()>()).await;
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (mut tasks, mut health) = (Tasks::new(channel.clone()), Health::new(channel));

    let task_id = tasks
        .create_migration_task(pb::CreateMigrationTaskRequest {
            name: "gate".into(),
            source: Some(ClusterEndpoint {
                namesrv_addrs: a.namesrv_addr(),
                cluster_name: a.cluster_name().into(),
                credentials: None,
            }),
            target_type: TargetType::V5 as i32,
            target: Some(ClusterEndpoint {
                namesrv_addrs: b.namesrv_addr(),
                cluster_name: b.cluster_name().into(),
                credentials: None,
            }),
            actor: "gate-test".into(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .task_id;
    tasks
        .add_topics(pb::AddTopicsRequest {
            task_id: task_id.clone(),
            topics: vec![TOPIC.into()],
            actor: "gate-test".into(),
            dry_run: false,
        })
        .await
        .unwrap();
    // Stages move only in step 4; this test is about the stage gate, so the task is put
    // there directly (the step gates have their own tests in metadata-sync).
    let current = store.get_task(&task_id).await.unwrap();
    let mut at_step_4 = current.value.clone();
    at_step_4.step = ferry_store::TaskStep::GrayMigration;
    store
        .update_task(at_step_4, current.revision)
        .await
        .unwrap();

    // 1. Measured by the scan, not ready: the advance is refused with the reasons.
    wait_for("a first readiness scan", WAIT, || async {
        let t = readiness(&mut health.clone(), &task_id).await;
        let next = t.next.unwrap();
        if next.checked_at.is_some() {
            Ok(())
        } else {
            Err(format!("{next:?}"))
        }
    })
    .await;
    let refused = advance(&mut tasks, &task_id, false).await;
    assert!(!refused.changed, "{refused:?}");
    assert!(
        refused
            .error
            .starts_with("not ready for INITIAL -> DUAL_READ ("),
        "{}",
        refused.error
    );
    for code in [
        "TOPIC_NOT_IMPORTED",
        "GROUP_NOT_IMPORTED",
        "CLIENTS_NOT_SWITCHED",
        "ROUTER_UNAVAILABLE",
    ] {
        assert!(refused.error.contains(code), "{code}: {}", refused.error);
    }
    let r = refused
        .readiness
        .as_ref()
        .expect("the readiness that was checked");
    assert!(!r.ready);
    let codes = reason_codes(r);
    assert!(
        codes.contains(&ReadinessReasonCode::TopicNotImported),
        "{codes:?}"
    );
    assert!(
        codes.contains(&ReadinessReasonCode::ClientsNotSwitched),
        "{codes:?}"
    );
    assert!(
        codes.contains(&ReadinessReasonCode::RouterUnavailable),
        "{codes:?}"
    );
    let stages = tasks
        .list_topic_stages(pb::ListTopicStagesRequest {
            task_id: task_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let listed = &stages.topics[0];
    assert!(listed.next.as_ref().is_some_and(|n| !n.ready), "{listed:?}");
    eprintln!("[{:?}] refused: {}", started.elapsed(), refused.error);

    // 2. Import, clients seen at a router: accepted without force, audited as not forced.
    b.create_topic(TOPIC, 4).await.unwrap();
    b.create_group(GROUP).await.unwrap();
    let router = Router::start(store.as_ref(), "r-gate").await;
    router.saw(TOPIC, "127.0.0.1:50002");
    wait_for("INITIAL -> DUAL_READ ready", WAIT, || async {
        let next = readiness(&mut health.clone(), &task_id).await.next.unwrap();
        if next.ready {
            Ok(())
        } else {
            Err(format!("{:?}", next.reasons))
        }
    })
    .await;
    let accepted = advance(&mut tasks, &task_id, false).await;
    assert!(accepted.changed, "{accepted:?}");
    assert!(accepted.readiness.as_ref().is_some_and(|r| r.ready));
    eprintln!("[{:?}] accepted INITIAL -> DUAL_READ", started.elapsed());

    // 3. Right after the change: measured again (on demand), the dwell is too short.
    health
        .check_topics(hpb::CheckTopicsRequest {
            task_id: task_id.clone(),
            topics: vec![TOPIC.into()],
            dry_run: false,
        })
        .await
        .unwrap();
    let refused = advance(&mut tasks, &task_id, false).await;
    assert!(!refused.changed);
    assert!(
        refused.error.contains("DWELL_TOO_SHORT"),
        "{}",
        refused.error
    );
    // `force` overrides, and the audit says so.
    let forced = advance(&mut tasks, &task_id, true).await;
    assert!(forced.changed, "{forced:?}");
    let audit = tasks
        .list_audit_records(pb::ListAuditRecordsRequest {
            task_id: task_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let forced_flags: Vec<bool> = audit.iter().map(|r| r.forced).collect();
    assert_eq!(forced_flags, [false, true], "{audit:?}");
    eprintln!("[{:?}] dwell refusal and forced change", started.elapsed());

    // 4. With the health checker gone, readiness goes stale and nothing moves unforced.
    scans.abort();
    health
        .check_topics(hpb::CheckTopicsRequest {
            task_id: task_id.clone(),
            topics: Vec::new(),
            dry_run: false,
        })
        .await
        .unwrap();
    // A dry run measures and answers, but publishes nothing: the stored readiness (and its
    // checked_at) stays the one published just before.
    let published = readiness(&mut health, &task_id).await;
    let checked_at = |r: &hpb::TopicReadiness| {
        let t = r
            .next
            .as_ref()
            .and_then(|n| n.checked_at)
            .expect("checked_at");
        (t.seconds, t.nanos)
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let answered = health
        .check_topics(hpb::CheckTopicsRequest {
            task_id: task_id.clone(),
            topics: Vec::new(),
            dry_run: true,
        })
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].topic, TOPIC);
    assert_eq!(answered[0].stage, published.stage);
    assert!(
        checked_at(&answered[0]) > checked_at(&published),
        "measured anew: {answered:?} vs {published:?}"
    );
    assert!(
        answered[0].next.is_some() && answered[0].previous.is_some(),
        "the answer carries the readiness both ways: {answered:?}"
    );
    assert_eq!(
        readiness(&mut health, &task_id).await,
        published,
        "a dry run publishes no readiness"
    );
    tokio::time::sleep(MAX_AGE + Duration::from_millis(500)).await;
    let refused = advance(&mut tasks, &task_id, false).await;
    assert!(!refused.changed);
    assert!(
        refused.error.contains("more than the 3.0 s allowed"),
        "{}",
        refused.error
    );
    assert!(refused.readiness.is_some());
    eprintln!(
        "[{:?}] stale readiness refused: {}",
        started.elapsed(),
        refused.error
    );

    consumer.shutdown().await;
    router.stop().await;
    serving.abort();
}
