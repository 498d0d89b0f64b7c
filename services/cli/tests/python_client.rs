//! The Python client (clients/python) as its users run it: `scripts/python-client` installs
//! the package into a cached venv (stubs generated from proto/ by grpcio-tools) and runs
//! `examples/migrate.py`, which drives a whole migration through all five steps against a
//! real `ferry standalone` on real etcd and two real RocketMQ clusters.
//!
//! A missing python3 (or python3-venv) is a failure naming what to install, never a skip, in
//! CI or not; the script installs both with apt when it can.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_api::common::v1::Stage;
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_api::service_names;
use ferry_testkit::rocketmq::TwoClusters;
use ferry_testkit::{EtcdProcess, ServiceProcess};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const TOPIC: &str = "PyOrders";
const GROUP: &str = "PyOrdersGroup";
const TASK_NAME: &str = "python-example-test";
const PREFIX: &str = "/ferry-python-client/";
/// Bound on the script: a cold venv downloads grpcio, grpcio-tools and protobuf (tens of
/// seconds), the migration itself takes seconds (the import waits ≤ 120 s on the server).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(480);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root above services/cli")
}

fn on_path(exe: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(exe).is_file()))
}

struct ScriptRun {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `scripts/python-client args…` in its own process group, output to files, killed
/// (the whole group) after [`SCRIPT_TIMEOUT`].
async fn python_client(args: &[&str]) -> ScriptRun {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let started = Instant::now();
    let mut child = Command::new(repo_root().join("scripts/python-client"))
        .args(args)
        .env("FERRY_ACTOR", "python-client-test")
        .env_remove("FERRY_TOKEN")
        .env_remove("FERRY_TOKEN_FILE")
        .env_remove("FERRY_ADDR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("cannot start scripts/python-client");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.to_string();
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            // The group: bash, pip and python alike.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break format!("killed after {SCRIPT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    ScriptRun {
        success: status == "exit status: 0",
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        took: started.elapsed(),
    }
}

async fn wait_serving(ch: &Channel, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn python_example_drives_a_whole_migration_on_etcd() {
    let python_missing = !on_path("python3");
    let etcd = EtcdProcess::start().await.unwrap();
    let clusters = TwoClusters::start().await.unwrap();
    clusters.a.create_topic(TOPIC, 4).await.unwrap();
    clusters.a.create_group(GROUP).await.unwrap();
    assert!(clusters.b.route(TOPIC).await.unwrap().is_none());

    let mut ferry = ServiceProcess::spawn(
        "standalone",
        FERRY,
        &[
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--etcd-prefix",
            PREFIX,
            "--ready-file",
            "ready",
        ],
        &[],
    )
    .unwrap();
    let addr = format!(
        "http://{}",
        ferry
            .wait_for_file("ready", Duration::from_secs(30))
            .await
            .unwrap()
    );
    let ch = Channel::from_shared(addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    wait_serving(&ch, service_names::MIGRATION_TASK).await;

    let (a, b) = (clusters.a.namesrv_addr(), clusters.b.namesrv_addr());
    let run = python_client(&[
        "--addr",
        &addr,
        "--name",
        TASK_NAME,
        "--source-namesrv",
        &a,
        "--source-cluster",
        clusters.a.cluster_name(),
        "--target-namesrv",
        &b,
        "--target-cluster",
        clusters.b.cluster_name(),
        "--topic",
        TOPIC,
        "--timeout",
        "150",
    ])
    .await;
    eprintln!(
        "scripts/python-client: {} in {:.1}s\n{}",
        run.status,
        run.took.as_secs_f64(),
        run.stdout
    );
    if !run.success && (python_missing || !on_path("python3")) {
        panic!(
            "python3 is not on PATH and scripts/python-client could not install it: install \
             python3 and python3-venv (Debian packages) — the Python client test is never \
             skipped{}\n--- stderr ---\n{}",
            if ferry_testkit::in_ci() {
                " (CI=true: every part is required)"
            } else {
                ""
            },
            run.stderr
        );
    }
    assert!(
        run.success,
        "scripts/python-client failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status, run.stdout, run.stderr
    );
    for shown in [
        "ConnectSource: CONNECT_OUTCOME_OK",
        "ImportMigrationItems(all)",
        "forced: python example: no router runs here",
        "AdvanceTopics -> STAGE_DONE",
        "MIGRATION_TASK_STATE_COMPLETED",
    ] {
        assert!(
            run.stdout.contains(shown),
            "stdout lacks {shown:?}:\n{}",
            run.stdout
        );
    }

    // What the server holds agrees: the task completed with its topic DONE.
    let mut tasks = MigrationTaskServiceClient::new(ch);
    let task = tasks
        .list_migration_tasks(pb::ListMigrationTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .find(|t| t.name == TASK_NAME)
        .expect("the example's task is listed");
    assert_eq!(
        task.state,
        pb::MigrationTaskState::Completed as i32,
        "{task:?}"
    );
    assert_eq!(task.step, pb::MigrationStep::Complete as i32, "{task:?}");
    assert_eq!(
        task.topics_per_stage.get("STAGE_DONE"),
        Some(&1),
        "{task:?}"
    );
    let audit = tasks
        .list_audit_records(pb::ListAuditRecordsRequest {
            task_id: task.task_id.clone(),
            topic: TOPIC.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let stages: Vec<i32> = audit.iter().map(|r| r.to_stage).collect();
    assert_eq!(
        stages,
        [
            Stage::DualRead,
            Stage::DualWrite,
            Stage::Switching,
            Stage::Done
        ]
        .map(|s| s as i32),
        "{audit:?}"
    );
    assert!(audit.iter().all(|r| r.forced), "{audit:?}");

    // The task lives in etcd under the prefix, and the topic was created on the target.
    let store = ferry_store::EtcdStore::connect(
        &[etcd.endpoint()],
        ferry_store::EtcdOptions::default().with_prefix(PREFIX),
    )
    .await
    .unwrap();
    let stored = ferry_store::MigrationStore::get_task(&store, &task.task_id)
        .await
        .unwrap();
    assert_eq!(stored.value.name, TASK_NAME);
    assert!(
        clusters.b.route(TOPIC).await.unwrap().is_some(),
        "{TOPIC} is routed on the target cluster"
    );

    assert!(
        ferry
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );
}
