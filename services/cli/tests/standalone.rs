//! `ferry standalone` as a process: one port serving every service with health and
//! reflection, clear UNIMPLEMENTED answers, state that survives a restart, graceful SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_api::scanner::v1::CheckConnectionRequest;
use ferry_api::scanner::v1::scanner_service_client::ScannerServiceClient;
use ferry_api::service_names;
use ferry_testkit::ServiceProcess;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Starts `ferry standalone` on a free port with its data in `data_dir` (relative to the
/// process dir unless absolute) and returns the process and its gRPC URL.
async fn start(data_dir: &str) -> (ServiceProcess, String) {
    let mut process = ServiceProcess::spawn(
        "standalone",
        FERRY,
        &[
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--ready-file",
            "ready",
        ],
        &[],
    )
    .unwrap();
    let addr = process
        .wait_for_file("ready", Duration::from_secs(30))
        .await
        .unwrap();
    (process, format!("http://{addr}"))
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn wait_serving(ch: &Channel, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = HealthClient::new(ch.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .ok();
        if status == Some(ServingStatus::Serving as i32) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service:?} not SERVING: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reflection_services(ch: &Channel) -> Vec<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match stream.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

const ALL_SERVICES: [&str; 5] = [
    service_names::SCANNER,
    service_names::IMPORT_TASK,
    service_names::MIGRATION_TASK,
    service_names::ROUTER,
    service_names::HEALTH_CHECK,
];

#[tokio::test]
async fn one_port_serves_every_service_with_health_and_reflection() {
    let (mut process, addr) = start("data").await;
    let ch = channel(&addr).await;
    wait_serving(&ch, "").await;
    for service in ALL_SERVICES {
        wait_serving(&ch, service).await;
    }
    let listed = reflection_services(&ch).await;
    for service in ALL_SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(
            listed.iter().any(|s| s == service),
            "reflection lacks {service}: {listed:?}"
        );
    }

    // The real scanner is wired in: a request without a source is refused as such.
    let err = ScannerServiceClient::new(ch.clone())
        .check_connection(CheckConnectionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("source is required"),
        "{}",
        err.message()
    );

    // The CLI agrees, as a person would run it.
    let out = Command::new(FERRY)
        .args(["--addr", &addr, "health"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ferry health failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("SERVING").count(), 6, "{text}");
    let json = Command::new(FERRY)
        .args(["--addr", &addr, "--output", "json", "health"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["all_serving"], true);

    let status = process.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
}

#[tokio::test]
async fn health_fails_clearly_when_nothing_listens() {
    let out = Command::new(FERRY)
        .args(["--addr", "http://127.0.0.1:1", "health"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach Ferry at http://127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
async fn embedded_state_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let (mut first, addr) = start(&data_dir).await;
    let mut client = MigrationTaskServiceClient::new(channel(&addr).await);
    let task = client
        .create_migration_task(pb::CreateMigrationTaskRequest {
            dry_run: false,
            name: "survivor".into(),
            source: Some(ClusterEndpoint {
                namesrv_addrs: "127.0.0.1:19876".into(),
                cluster_name: "ClusterA".into(),
                credentials: None,
            }),
            target_type: TargetType::V4 as i32,
            target: Some(ClusterEndpoint {
                namesrv_addrs: "127.0.0.1:29876".into(),
                cluster_name: "ClusterB".into(),
                credentials: None,
            }),
            actor: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    client
        .add_topics(pb::AddTopicsRequest {
            dry_run: false,
            task_id: task.task_id.clone(),
            topics: vec!["Orders".into()],
            actor: "test".into(),
        })
        .await
        .unwrap();
    // Stage changes need the task at step 4 (real clusters; see task_cli.rs); a pause is
    // state enough to prove it survives.
    client
        .pause_task(pb::PauseTaskRequest {
            dry_run: false,
            task_id: task.task_id.clone(),
            actor: "restart test".into(),
        })
        .await
        .unwrap();
    assert!(
        first
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );

    let (_second, addr) = start(&data_dir).await;
    let mut client = MigrationTaskServiceClient::new(channel(&addr).await);
    let got = client
        .get_migration_task(pb::GetMigrationTaskRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(got.name, "survivor");
    assert_eq!(got.topics_per_stage.get("STAGE_INITIAL"), Some(&1));
    assert_eq!(got.state, pb::MigrationTaskState::Paused as i32);
}

/// Starts `ferry standalone` on etcd (`--etcd-endpoints`, keys under `prefix`) with a data
/// dir that must stay unused; returns the process and its gRPC URL.
async fn start_on_etcd(endpoint: &str, prefix: &str) -> (ServiceProcess, String) {
    let mut process = ServiceProcess::spawn(
        "standalone-etcd",
        FERRY,
        &[
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "unused-data",
            "--etcd-prefix",
            prefix,
            "--ready-file",
            "ready",
        ],
        &[("FERRY_ETCD_ENDPOINTS", endpoint)],
    )
    .unwrap();
    let addr = process
        .wait_for_file("ready", Duration::from_secs(30))
        .await
        .unwrap();
    (process, format!("http://{addr}"))
}

#[tokio::test]
async fn etcd_state_survives_a_restart() {
    let etcd = ferry_testkit::EtcdProcess::start().await.unwrap();
    let prefix = "/ferry-standalone-test/";
    let (mut first, addr) = start_on_etcd(&etcd.endpoint(), prefix).await;
    let ch = channel(&addr).await;
    for service in [""].iter().chain(&ALL_SERVICES) {
        wait_serving(&ch, service).await;
    }
    let mut client = MigrationTaskServiceClient::new(ch);
    let task = client
        .create_migration_task(pb::CreateMigrationTaskRequest {
            dry_run: false,
            name: "in-etcd".into(),
            source: Some(ClusterEndpoint {
                namesrv_addrs: "127.0.0.1:19876".into(),
                cluster_name: "ClusterA".into(),
                credentials: None,
            }),
            target_type: TargetType::V5 as i32,
            target: Some(ClusterEndpoint {
                namesrv_addrs: "127.0.0.1:29876".into(),
                cluster_name: "ClusterB".into(),
                credentials: None,
            }),
            actor: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    client
        .add_topics(pb::AddTopicsRequest {
            dry_run: false,
            task_id: task.task_id.clone(),
            topics: vec!["Orders".into()],
            actor: "test".into(),
        })
        .await
        .unwrap();
    // Nothing went to the embedded store.
    assert!(
        !first.dir().join("unused-data").exists(),
        "--data-dir must stay unused with --etcd-endpoints"
    );
    assert!(
        first
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );

    // The record is in etcd under the prefix, as the separate services would read it.
    let store = ferry_store::EtcdStore::connect(
        &[etcd.endpoint()],
        ferry_store::EtcdOptions::default().with_prefix(prefix),
    )
    .await
    .unwrap();
    let stored = ferry_store::MigrationStore::get_task(&store, &task.task_id)
        .await
        .unwrap();
    assert_eq!(stored.value.name, "in-etcd");

    // A new process (fresh working directory, so no local state) reads it back.
    let (mut second, addr) = start_on_etcd(&etcd.endpoint(), prefix).await;
    let ch = channel(&addr).await;
    wait_serving(&ch, service_names::MIGRATION_TASK).await;
    let got = MigrationTaskServiceClient::new(ch)
        .get_migration_task(pb::GetMigrationTaskRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(got.name, "in-etcd");
    assert_eq!(got.topics_per_stage.get("STAGE_INITIAL"), Some(&1));
    assert!(
        second
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn etcd_unreachable_serves_not_serving_and_unavailable() {
    let port = ferry_testkit::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (mut process, addr) = start_on_etcd(&endpoint, "/ferry/").await;
    let ch = channel(&addr).await;
    let status = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: service_names::MIGRATION_TASK.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    let err = MigrationTaskServiceClient::new(ch)
        .list_migration_tasks(pb::ListMigrationTasksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains(&port.to_string()),
        "names the etcd address: {}",
        err.message()
    );
    assert!(
        process
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );
}
