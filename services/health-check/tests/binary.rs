//! `ferry-health-check` as a process on a real etcd: it serves, scans every task on its own
//! and publishes readiness (here: clusters that cannot be reached, so nothing is ready and
//! the reasons say why), and reports the health of the store and of registered routers.

mod support;

use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, ReadinessReasonCode};
use ferry_api::health_check::v1 as hpb;
use ferry_api::health_check::v1::health_check_service_client::HealthCheckServiceClient;
use ferry_api::service_names::HEALTH_CHECK;
use ferry_core::{MigrationStep, TargetType, TaskState};
use ferry_store::{EtcdOptions, EtcdStore, MigrationStore, MigrationTask, TopicState};
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use support::{Router, init_tracing, wait_for};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PREFIX: &str = "/ferry-hc-bin/";
const WAIT: Duration = Duration::from_secs(30);

async fn channel(addr: &str) -> Channel {
    wait_for("the gRPC port", WAIT, || async {
        Channel::from_shared(addr.to_string())
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_scans_publishes_and_reports_health() {
    init_tracing();
    let started = Instant::now();
    let etcd = EtcdProcess::start().await.expect("etcd must start");
    let store = EtcdStore::connect(
        &[etcd.endpoint()],
        EtcdOptions::default().with_prefix(PREFIX),
    )
    .await
    .unwrap();
    // A task whose clusters do not answer (nothing listens on port 1 or 2).
    store
        .create_task(MigrationTask {
            id: "mt-bin".into(),
            name: "binary".into(),
            source_cluster: "ClusterA".into(),
            source_namesrv: "127.0.0.1:1".into(),
            target_cluster: "ClusterB".into(),
            target_namesrv: "127.0.0.1:2".into(),
            target_type: TargetType::V5,
            step: MigrationStep::GrayMigration,
            state: TaskState::Running,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: "test".into(),
            extra: serde_json::Value::Null,
        })
        .await
        .unwrap();
    store
        .add_topics("mt-bin", vec![TopicState::initial("mt-bin", "T", "test")])
        .await
        .unwrap();

    let listen = format!("127.0.0.1:{}", free_port());
    let _process = ServiceProcess::spawn(
        "health-check",
        env!("CARGO_BIN_EXE_ferry-health-check"),
        &[
            "--listen",
            &listen,
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--etcd-prefix",
            PREFIX,
            "--scan-interval",
            "300ms",
        ],
        &[("FERRY_LOG", "info,ferry_health_check=debug")],
    )
    .expect("spawn ferry-health-check");
    let ch = channel(&format!("http://{listen}")).await;
    wait_for("SERVING", WAIT, || async {
        let status = HealthClient::new(ch.clone())
            .check(HealthCheckRequest {
                service: HEALTH_CHECK.into(),
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    })
    .await;
    let mut client = HealthCheckServiceClient::new(ch.clone());

    // The scan measured the task on its own: not ready, because nothing could be reached.
    let listed = wait_for("published readiness", WAIT, || async {
        let resp = HealthCheckServiceClient::new(ch.clone())
            .list_topic_readiness(hpb::ListTopicReadinessRequest {
                task_id: "mt-bin".into(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if resp.scanned_at.is_some() {
            Ok(resp)
        } else {
            Err(format!("{resp:?}"))
        }
    })
    .await;
    let next = listed.topics[0].next.as_ref().unwrap();
    assert!(!next.ready);
    let unreachable: Vec<&str> = next
        .reasons
        .iter()
        .filter(|r| r.code == ReadinessReasonCode::ClusterUnreachable as i32)
        .map(|r| r.detail.as_str())
        .collect();
    assert!(
        unreachable.iter().any(|d| d.contains("127.0.0.1:1")),
        "{next:?}"
    );
    eprintln!("[{:?}] scan published: {unreachable:?}", started.elapsed());

    // Health of the parts: store up, no router yet; then a registered router with its address.
    let components = client
        .get_system_health(hpb::GetSystemHealthRequest {})
        .await
        .unwrap()
        .into_inner()
        .components;
    let find =
        |c: &[hpb::ComponentHealth], name: &str| c.iter().find(|x| x.component == name).cloned();
    assert!(find(&components, "store").unwrap().serving);
    let routers = find(&components, "routers").unwrap();
    assert!(
        !routers.serving && routers.detail.contains("no router"),
        "{routers:?}"
    );
    let router = Router::start(&store, "r-bin").await;
    let components = client
        .get_system_health(hpb::GetSystemHealthRequest {})
        .await
        .unwrap()
        .into_inner()
        .components;
    let r = find(&components, "router/r-bin").expect("the registered router");
    assert!(r.serving, "{r:?}");
    assert!(r.detail.contains(&router.addr.to_string()), "{r:?}");
    assert!(find(&components, "routers").is_none());

    // A backlog check of a cluster that cannot be read fails; it never says "drained".
    let err = client
        .check_backlog(hpb::CheckBacklogRequest {
            cluster: Some(ClusterEndpoint {
                namesrv_addrs: "127.0.0.1:1".into(),
                cluster_name: String::new(),
                credentials: None,
            }),
            topics: vec!["T".into()],
            groups: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("127.0.0.1:1"), "{}", err.message());
    // A task that does not exist.
    let err = client
        .check_topics(hpb::CheckTopicsRequest {
            task_id: "mt-none".into(),
            topics: Vec::new(),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    router.stop().await;
}
