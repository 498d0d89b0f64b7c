//! The conformance suite against a real etcd (started from PATH by ferry-testkit; a missing
//! etcd fails these tests), plus etcd-only behaviour: watches surviving an etcd restart,
//! compaction reported as such, and bounded, well-named failure when etcd is unreachable.

use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_store::conformance::{Fixture, task, within};
use ferry_store::{
    EtcdBackend, EtcdOptions, EtcdStore, MigrationStore, StageChange, StoreError, TopicState,
};
use ferry_testkit::EtcdProcess;
use futures::StreamExt;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Fast reconnects for tests; production defaults are slower.
fn options() -> EtcdOptions {
    EtcdOptions {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..EtcdOptions::default()
    }
}

async fn start() -> (EtcdProcess, EtcdStore) {
    init_tracing();
    let etcd = EtcdProcess::start().await.expect("etcd must start");
    let store = EtcdStore::connect(&[etcd.endpoint()], options())
        .await
        .expect("connect to the test etcd");
    (etcd, store)
}

async fn fixture() -> Fixture<EtcdBackend> {
    let (etcd, store) = start().await;
    Fixture {
        store,
        guard: Box::new(etcd),
    }
}

ferry_store::conformance_tests!(fixture);

async fn advance(store: &EtcdStore, task_id: &str, topic: &str, to: Stage) -> i64 {
    let current = store.get_topic(task_id, topic).await.unwrap();
    store
        .change_stage(StageChange {
            task_id: task_id.into(),
            topic: topic.into(),
            expected_revision: current.revision,
            to,
            actor: "tester".into(),
            forced: false,
            reason: None,
            task_revision: None,
        })
        .await
        .unwrap()
        .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_under_the_prefix_and_read_as_json() {
    let (_etcd, store) = start().await;
    store.create_task(task("t1", "prod")).await.unwrap();
    let mut client = store.backend().client().clone();
    let resp = client.get("/ferry/tasks/t1", None).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(resp.kvs()[0].value()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["target_cluster"], "prod");
    let lock = client.get("/ferry/targets/prod/lock", None).await.unwrap();
    let lock: serde_json::Value = serde_json::from_slice(lock.kvs()[0].value()).unwrap();
    assert_eq!(lock["task_id"], "t1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_an_etcd_restart() {
    let (mut etcd, store) = start().await;
    store.create_task(task("w", "prod")).await.unwrap();
    store
        .add_topics("w", vec![TopicState::initial("w", "A", "t")])
        .await
        .unwrap();
    let (_, revision) = store.stage_snapshot().await.unwrap();
    let mut stream = store.watch_stages(revision + 1).await.unwrap();
    let before = advance(&store, "w", "A", Stage::DualRead).await;
    let ev = within(
        "event before restart",
        Duration::from_secs(10),
        stream.next(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ev.revision, before);

    etcd.stop().await.unwrap();
    let err = store.health().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", etcd.client_port())),
        "{err}"
    );
    etcd.restart().await.unwrap();

    // The health check comes back and writes made after the restart reach the old stream.
    ferry_store::conformance::poll_until(
        "etcd to serve again",
        Duration::from_secs(15),
        || async { store.health().await.is_ok() },
    )
    .await;
    let after = advance(&store, "w", "A", Stage::DualWrite).await;
    let ev = within(
        "event after restart",
        Duration::from_secs(20),
        stream.next(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((ev.stage, ev.revision), (Some(Stage::DualWrite), after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_is_reported() {
    let (_etcd, store) = start().await;
    store.create_task(task("c", "prod")).await.unwrap();
    store
        .add_topics("c", vec![TopicState::initial("c", "A", "t")])
        .await
        .unwrap();
    advance(&store, "c", "A", Stage::DualRead).await;
    let last = advance(&store, "c", "A", Stage::Initial).await;
    let mut client = store.backend().client().clone();
    client.compact(last, None).await.unwrap();
    match store.watch_stages(2).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, 2);
            assert!(oldest >= last, "oldest {oldest} < compacted {last}");
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
}

#[tokio::test]
async fn unreachable_etcd_fails_within_the_retry_budget_naming_the_address() {
    init_tracing();
    let port = ferry_testkit::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = EtcdOptions {
        connect_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        ..EtcdOptions::default()
    };
    let started = Instant::now();
    let err = EtcdStore::connect(&[endpoint], options).await.unwrap_err();
    let elapsed = started.elapsed();
    // 3 attempts × (0.5 s connect + 1 s request) + 0.3 s of backoff, with slack.
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("etcd at 127.0.0.1:{port} unreachable: ")),
        "{msg}"
    );
    assert!(msg.contains("3 attempts"), "{msg}");
    assert!(err.is_retryable());
}
