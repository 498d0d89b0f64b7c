//! The conformance suite against the embedded backend (file-backed, in a temp dir), plus
//! what only the embedded backend has: durability across reopen, torn-log tolerance,
//! snapshot compaction, watch history limits and the directory lock.

use std::time::Duration;

use ferry_core::Stage;
use ferry_store::conformance::{Fixture, task, within};
use ferry_store::kv::KvBackend;
use ferry_store::{
    EmbeddedBackend, EmbeddedOptions, EmbeddedStore, KvMigrationStore, MigrationStore, PageRequest,
    StageChange, StoreError, TopicState,
};
use futures::StreamExt;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn fixture() -> Fixture<EmbeddedBackend> {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    Fixture {
        store,
        guard: Box::new(dir),
    }
}

ferry_store::conformance_tests!(fixture);

/// The in-memory flavour passes the heart of the suite too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_memory_store_passes_core_cases() {
    init_tracing();
    ferry_store::conformance::kv_semantics(&EmbeddedStore::in_memory()).await;
    ferry_store::conformance::concurrent_stage_changes(&EmbeddedStore::in_memory()).await;
    ferry_store::conformance::watch_resumes_without_gap_or_duplicate(&EmbeddedStore::in_memory())
        .await;
}

async fn advance(store: &EmbeddedStore, task_id: &str, topic: &str, to: Stage) -> i64 {
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

async fn populate(store: &EmbeddedStore) -> i64 {
    store.create_task(task("durable", "prod")).await.unwrap();
    store
        .add_topics(
            "durable",
            vec![
                TopicState::initial("durable", "A", "t"),
                TopicState::initial("durable", "B", "t"),
            ],
        )
        .await
        .unwrap();
    advance(store, "durable", "A", Stage::DualRead).await;
    advance(store, "durable", "A", Stage::DualWrite).await
}

async fn assert_populated(store: &EmbeddedStore, revision: i64) {
    let a = store.get_topic("durable", "A").await.unwrap();
    assert_eq!((a.value.stage, a.revision), (Stage::DualWrite, revision));
    assert_eq!(
        store.get_topic("durable", "B").await.unwrap().value.stage,
        Stage::Initial
    );
    assert_eq!(
        store
            .get_task("durable")
            .await
            .unwrap()
            .value
            .target_cluster,
        "prod"
    );
    assert_eq!(
        store.target_holder("prod").await.unwrap().as_deref(),
        Some("durable")
    );
    let audit = store
        .list_audit("durable", PageRequest::default())
        .await
        .unwrap()
        .items;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].revision, revision);
    assert!(store.backend().current_revision().await.unwrap() >= revision);
}

#[tokio::test]
async fn data_survives_reopen_and_revisions_continue() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let revision = populate(&store).await;
    let member = store
        .register_member("routers", "r1", serde_json::json!({}), 30)
        .await
        .unwrap();
    member.abandon().await;
    drop(store);

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert_populated(&store, revision).await;
    // Leases died with the previous process: their keys are gone.
    assert!(store.list_members("routers").await.unwrap().is_empty());
    // The revision counter continues (the member's put was revision + 1); a watch from
    // before the reopen is compacted.
    assert_eq!(
        store.backend().current_revision().await.unwrap(),
        revision + 1
    );
    let next = advance(&store, "durable", "B", Stage::DualRead).await;
    assert_eq!(next, revision + 2);
    assert!(matches!(
        store.watch_stages(revision).await,
        Err(StoreError::Compacted { .. })
    ));
}

#[tokio::test]
async fn torn_last_log_line_is_ignored() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let revision = populate(&store).await;
    drop(store);

    // A crash in the middle of appending the next record.
    let log = dir.path().join("log.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(br#"{"rev":99,"changes":[{"k":"task-topics/durable/A","v":"{\"sch"#);
    std::fs::write(&log, &bytes).unwrap();

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert_populated(&store, revision).await;
    let next = advance(&store, "durable", "B", Stage::DualRead).await;
    drop(store);
    // The torn tail was cut, so the record appended after it replays cleanly.
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let b = store.get_topic("durable", "B").await.unwrap();
    assert_eq!((b.value.stage, b.revision), (Stage::DualRead, next));
}

#[tokio::test]
async fn corruption_before_the_end_fails_the_open() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    populate(&store).await;
    drop(store);
    let log = dir.path().join("log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, format!("garbage\n{text}")).unwrap();
    let err = EmbeddedStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn snapshot_compaction_keeps_data() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        compact_log_bytes: 4 * 1024,
        ..EmbeddedOptions::default()
    };
    let store = KvMigrationStore::new(
        EmbeddedBackend::open_with(dir.path(), options.clone())
            .await
            .unwrap(),
    );
    let revision = populate(&store).await;
    // Enough writes to pass the threshold several times.
    let topics: Vec<_> = (0..60)
        .map(|i| TopicState::initial("durable", format!("Bulk{i:02}"), "t"))
        .collect();
    store.add_topics("durable", topics).await.unwrap();
    let mut last = revision;
    for _ in 0..10 {
        last = advance(&store, "durable", "B", Stage::DualRead).await;
        last = last.max(advance(&store, "durable", "B", Stage::Initial).await);
    }
    let snapshot = dir.path().join("snapshot.json");
    assert!(snapshot.exists(), "a snapshot was written");
    let log_len = std::fs::metadata(dir.path().join("log.jsonl"))
        .unwrap()
        .len();
    assert!(
        log_len <= options.compact_log_bytes,
        "log was truncated ({log_len} bytes)"
    );
    drop(store);

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert_eq!(store.backend().current_revision().await.unwrap(), last);
    let topics = store
        .list_topics("durable", PageRequest::first(1000))
        .await
        .unwrap()
        .items;
    assert_eq!(topics.len(), 62);
    let a = store.get_topic("durable", "A").await.unwrap();
    assert_eq!((a.value.stage, a.revision), (Stage::DualWrite, revision));
    let audit = store
        .list_audit("durable", PageRequest::first(1000))
        .await
        .unwrap()
        .items;
    assert_eq!(audit.len(), 22);
    assert!(audit.windows(2).all(|w| w[0].revision < w[1].revision));
}

#[tokio::test]
async fn watch_older_than_history_is_compacted() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedBackend::open_with(
        dir.path(),
        EmbeddedOptions {
            history_limit: 5,
            ..EmbeddedOptions::default()
        },
    )
    .await
    .unwrap();
    for i in 0..10 {
        kv.txn(ferry_store::kv::Txn {
            success: vec![ferry_store::kv::Op::put(format!("k/{i}"), "v")],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    match kv.watch_prefix("k/", Some(2)).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (2, 6));
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    let mut stream = kv.watch_prefix("k/", Some(6)).await.unwrap();
    for rev in 6..=10 {
        let ev = within("history replay", Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.mod_revision, rev);
    }
}

#[tokio::test]
async fn a_directory_is_opened_by_one_store_at_a_time() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path()).await.unwrap();
    let err = EmbeddedStore::open(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    EmbeddedStore::open(dir.path()).await.unwrap();
}
