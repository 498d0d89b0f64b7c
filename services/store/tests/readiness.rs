//! Readiness records (`task-readiness/<task>/<topic>`) on both backends: the embedded store
//! in a temp dir and a real etcd. The same cases run against each.

use std::time::Duration;

use ferry_core::Stage;
use ferry_core::readiness::{Fact, ReadinessPolicy, ReasonCode, TopicFacts, assess_both};
use ferry_store::conformance::task;
use ferry_store::kv::KvBackend;
use ferry_store::{
    EmbeddedStore, EtcdOptions, EtcdStore, KvMigrationStore, MigrationStore, PageRequest,
    ReadinessRecord, ReadinessStore, SourceWatch, StageChange, StoreError, TopicState,
};
use ferry_testkit::EtcdProcess;

fn record(task_id: &str, topic: &str, stage: Stage, revision: i64) -> ReadinessRecord {
    let facts = TopicFacts {
        target_topic_exists: Fact::Known(false),
        ..TopicFacts::all_clear(Duration::from_secs(90), Duration::from_secs(30))
    };
    let (next, previous) = assess_both(stage, &facts, &ReadinessPolicy::default());
    ReadinessRecord {
        task_id: task_id.into(),
        topic: topic.into(),
        stage,
        topic_revision: revision,
        next,
        previous,
        checked_at_ms: 1_700_000_000_000,
        source_watch: Some(SourceWatch {
            since_ms: 1_700_000_000_000,
            max_offset_total: 42,
        }),
    }
}

async fn setup<B: KvBackend>(store: &KvMigrationStore<B>, id: &str, topics: &[&str]) {
    store
        .create_task(task(id, &format!("target-{id}")))
        .await
        .unwrap();
    store
        .add_topics(
            id,
            topics
                .iter()
                .map(|t| TopicState::initial(id, *t, "tester"))
                .collect(),
        )
        .await
        .unwrap();
}

/// Put, get and list; records do not touch the topic's revision.
async fn put_get_list<B: KvBackend>(store: &KvMigrationStore<B>) {
    setup(store, "r1", &["A", "B", "C"]).await;
    setup(store, "r2", &["A"]).await;
    assert_eq!(store.get_readiness("r1", "A").await.unwrap(), None);

    for topic in ["C", "A", "B"] {
        let current = store.get_topic("r1", topic).await.unwrap();
        let rec = record("r1", topic, Stage::Initial, current.revision);
        store.put_readiness(&rec).await.unwrap();
        // The stage key is untouched: callers' expected revisions stay valid.
        assert_eq!(
            store.get_topic("r1", topic).await.unwrap().revision,
            current.revision
        );
        assert_eq!(store.get_readiness("r1", topic).await.unwrap(), Some(rec));
    }
    let a2 = store.get_topic("r2", "A").await.unwrap();
    store
        .put_readiness(&record("r2", "A", Stage::Initial, a2.revision))
        .await
        .unwrap();

    // Listed per task, by topic, paged.
    let first = store
        .list_readiness("r1", PageRequest::first(2))
        .await
        .unwrap();
    let names: Vec<_> = first.items.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    let token = first.next_page_token.clone().expect("a second page");
    let second = store
        .list_readiness(
            "r1",
            PageRequest {
                page_size: 2,
                page_token: Some(token),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].topic, "C");
    assert_eq!(second.next_page_token, None);
    assert!(second.items.iter().all(|r| r.task_id == "r1"));

    // Readable by an operator: JSON with a schema version and the reason codes.
    let raw = store
        .backend()
        .get("task-readiness/r1/A")
        .await
        .unwrap()
        .expect("record stored under task-readiness/");
    let json: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["stage"], "INITIAL");
    assert_eq!(json["next"]["to"], "DUAL_READ");
    assert_eq!(json["next"]["ready"], false);
    assert_eq!(
        json["next"]["reasons"][0]["code"],
        ReasonCode::TopicNotImported.as_str()
    );
    assert_eq!(json["previous"]["reasons"][0]["code"], "NO_SUCH_STAGE");
}

/// A record for a revision the topic has left, or for a removed topic, is refused.
async fn stale_records_are_refused<B: KvBackend>(store: &KvMigrationStore<B>) {
    setup(store, "s1", &["A", "B"]).await;
    let before = store.get_topic("s1", "A").await.unwrap();
    let moved = store
        .change_stage(StageChange {
            task_id: "s1".into(),
            topic: "A".into(),
            expected_revision: before.revision,
            to: Stage::DualRead,
            actor: "tester".into(),
            forced: true,
            reason: None,
            task_revision: None,
        })
        .await
        .unwrap();
    let err = store
        .put_readiness(&record("s1", "A", Stage::Initial, before.revision))
        .await
        .unwrap_err();
    match &err {
        StoreError::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(*expected, before.revision);
            assert_eq!(*actual, moved.revision);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.get_readiness("s1", "A").await.unwrap(), None);
    // The current revision is accepted and the reader can tell which revision it is for.
    let rec = record("s1", "A", Stage::DualRead, moved.revision);
    store.put_readiness(&rec).await.unwrap();
    let got = store.get_readiness("s1", "A").await.unwrap().unwrap();
    assert!(got.is_for_revision(moved.revision) && !got.is_for_revision(before.revision));

    // A removed topic takes no records.
    let b = store.get_topic("s1", "B").await.unwrap();
    store.remove_topic("s1", "B", b.revision).await.unwrap();
    let err = store
        .put_readiness(&record("s1", "B", Stage::Initial, b.revision))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 0, .. }),
        "{err}"
    );
    // And a topic that never existed neither.
    assert!(
        store
            .put_readiness(&record("s1", "Nope", Stage::Initial, 1))
            .await
            .unwrap_err()
            .is_conflict()
    );
}

async fn bad_names_are_invalid<B: KvBackend>(store: &KvMigrationStore<B>) {
    for (task_id, topic) in [("", "A"), ("t/1", "A"), ("t", ""), ("t", "a/b")] {
        let err = store.get_readiness(task_id, topic).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidArgument { .. }),
            "{task_id:?} {topic:?}: {err}"
        );
        assert!(
            store
                .put_readiness(&record(task_id, topic, Stage::Initial, 1))
                .await
                .is_err()
        );
    }
    assert!(
        store
            .list_readiness("a/b", PageRequest::default())
            .await
            .is_err()
    );
    assert!(
        store
            .list_readiness("empty", PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn all_cases<B: KvBackend>(store: &KvMigrationStore<B>) {
    put_get_list(store).await;
    stale_records_are_refused(store).await;
    bad_names_are_invalid(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_records_on_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    all_cases(&store).await;
    // Records survive a reopen like every other value.
    drop(store);
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert!(store.get_readiness("r1", "A").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_records_on_etcd() {
    let etcd = EtcdProcess::start().await.expect("etcd must start");
    let store = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default())
        .await
        .expect("connect to the test etcd");
    all_cases(&store).await;
}

/// Services hold one handle for stages and readiness.
#[tokio::test]
async fn one_handle_serves_both_traits() {
    let store: std::sync::Arc<dyn ferry_store::FerryStore> =
        std::sync::Arc::new(EmbeddedStore::in_memory());
    setup_dyn(store.as_ref()).await;
    let stages: std::sync::Arc<dyn MigrationStore> = store.clone();
    let readiness: std::sync::Arc<dyn ReadinessStore> = store;
    let topic = stages.get_topic("d1", "A").await.unwrap();
    readiness
        .put_readiness(&record("d1", "A", Stage::Initial, topic.revision))
        .await
        .unwrap();
}

async fn setup_dyn(store: &dyn MigrationStore) {
    store.create_task(task("d1", "target-d1")).await.unwrap();
    store
        .add_topics("d1", vec![TopicState::initial("d1", "A", "tester")])
        .await
        .unwrap();
}
