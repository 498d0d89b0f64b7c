//! One conformance suite for every backend.
//!
//! The test bodies live here, generic over the backend, and `tests/conformance_*.rs`
//! instantiate them with [`crate::conformance_tests!`] and a fixture that provides a fresh,
//! isolated store (a temp dir for the embedded backend, a real etcd for etcd). So the same
//! assertions run against both and a behaviour difference is a test failure.
//!
//! Not part of the public API (hidden from docs); it panics on failure like any test.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::Stage;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::StoreError;
use crate::kv::{Compare, KvBackend, Op, Txn, WatchEventKind};
use crate::migration::{KvMigrationStore, MigrationStore, StageChange};
use crate::model::{MigrationTask, PageRequest, StageEvent, TopicState, Versioned};
use crate::snapshots::{MAX_CHUNK_BYTES, NewSnapshot, SnapshotStore, keys as snapshot_keys};

/// A fresh store plus whatever must live as long as it (temp dir, etcd process).
pub struct Fixture<B: KvBackend> {
    pub store: KvMigrationStore<B>,
    /// Dropped after the store.
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Generates one `#[tokio::test]` per conformance case, each with a fresh fixture from
/// `$fixture` (an async fn returning [`Fixture`]).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance_tests!(@cases $fixture;
            kv_semantics,
            task_crud_and_pagination,
            task_cas_conflict,
            one_running_task_per_target,
            topics_add_list_remove,
            concurrent_stage_changes,
            invalid_transition_writes_nothing,
            audit_in_commit_order,
            watch_resumes_without_gap_or_duplicate,
            task_revision_fences_stage_changes,
            stage_snapshot_covers_all_tasks,
            member_disappears_after_revoke_and_ttl,
            health_reports_serving,
            snapshots_put_get_list_delete,
            snapshots_large_inventory_is_chunked,
            snapshots_prune_keeps_the_newest
        );
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture().await;
                $crate::conformance::$case(&fixture.store).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(15);

/// Awaits `fut` or panics after `limit`, naming `what`.
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Polls `check` every 50 ms until it returns true, or panics after `limit`.
pub async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task to create in tests.
pub fn task(id: &str, target: &str) -> MigrationTask {
    MigrationTask {
        id: id.into(),
        name: format!("migrate {id}"),
        source_cluster: "src".into(),
        source_namesrv: "10.0.0.1:9876".into(),
        target_cluster: target.into(),
        target_namesrv: "10.0.0.2:9876".into(),
        target_type: ferry_core::TargetType::V5,
        step: ferry_core::MigrationStep::GrayMigration,
        state: ferry_core::TaskState::Running,
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "tester".into(),
        extra: serde_json::json!({"note": "conformance"}),
    }
}

async fn task_with_topics<B: KvBackend>(
    store: &KvMigrationStore<B>,
    id: &str,
    topics: &[&str],
) -> Versioned<MigrationTask> {
    let created = store
        .create_task(task(id, &format!("target-{id}")))
        .await
        .unwrap();
    let outcome = store
        .add_topics(
            id,
            topics
                .iter()
                .map(|t| TopicState::initial(id, *t, "tester"))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.added.len(), topics.len());
    created
}

fn change(task_id: &str, topic: &str, expected_revision: i64, to: Stage) -> StageChange {
    StageChange {
        task_id: task_id.into(),
        topic: topic.into(),
        expected_revision,
        to,
        actor: "tester".into(),
        forced: false,
        reason: None,
        task_revision: None,
    }
}

/// Moves `topic` one step to `to`, reading its revision first.
async fn step<B: KvBackend>(
    store: &KvMigrationStore<B>,
    task_id: &str,
    topic: &str,
    to: Stage,
) -> Versioned<TopicState> {
    let current = store.get_topic(task_id, topic).await.unwrap();
    store
        .change_stage(change(task_id, topic, current.revision, to))
        .await
        .unwrap()
}

async fn next_event(stream: &mut BoxStream<'static, crate::Result<StageEvent>>) -> StageEvent {
    within("a stage event", WAIT, stream.next())
        .await
        .expect("watch stream ended")
        .expect("watch stream failed")
}

/// The backend follows etcd's revision, range, txn, watch and lease rules.
pub async fn kv_semantics<B: KvBackend>(store: &KvMigrationStore<B>) {
    let kv = store.backend();
    let start = kv.current_revision().await.unwrap();
    let mut watch = kv.watch_prefix("kvtest/", None).await.unwrap();

    // One txn = one revision for every key it writes.
    let out = kv
        .txn(Txn {
            compares: vec![Compare::Absent("kvtest/a".into())],
            success: vec![
                Op::put("kvtest/a", "1"),
                Op::put("kvtest/b", "1"),
                Op::put("kvtest/c", "1"),
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(out.succeeded);
    assert_eq!(out.revision, start + 1);
    let a = kv.get("kvtest/a").await.unwrap().unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, a.lease),
        (start + 1, start + 1, 0)
    );

    // Overwrite keeps create_revision; failed compares apply the failure branch.
    let out = kv
        .txn(Txn {
            compares: vec![Compare::Absent("kvtest/a".into())],
            success: vec![Op::put("kvtest/a", "never")],
            failure: vec![Op::put("kvtest/a", "2")],
        })
        .await
        .unwrap();
    assert!(!out.succeeded);
    let a = kv.get("kvtest/a").await.unwrap().unwrap();
    assert_eq!(a.value, b"2");
    assert_eq!((a.create_revision, a.mod_revision), (start + 1, start + 2));

    // ValueEquals and ModRevision compares.
    let out = kv
        .txn(Txn {
            compares: vec![
                Compare::ValueEquals("kvtest/a".into(), b"2".to_vec()),
                Compare::ModRevision("kvtest/b".into(), start + 1),
                Compare::ModRevision("kvtest/missing".into(), 0),
            ],
            success: vec![Op::put("kvtest/b", "2")],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(out.succeeded);
    let out = kv
        .txn(Txn {
            compares: vec![Compare::ValueEquals("kvtest/missing".into(), Vec::new())],
            success: vec![Op::put("kvtest/x", "no")],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(!out.succeeded, "ValueEquals on an absent key must fail");

    // A txn that changes nothing keeps the revision.
    let before = kv.current_revision().await.unwrap();
    let out = kv
        .txn(Txn {
            success: vec![Op::delete("kvtest/missing")],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert_eq!(out.revision, before);
    assert_eq!(kv.current_revision().await.unwrap(), before);

    // Ranges: byte order, limit + more, start_after.
    let page = kv.range("kvtest/", None, 2).await.unwrap();
    let keys: Vec<_> = page.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["kvtest/a", "kvtest/b"]);
    assert!(page.more);
    let page = kv
        .range("kvtest/", Some("kvtest/b".into()), 2)
        .await
        .unwrap();
    let keys: Vec<_> = page.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["kvtest/c"]);
    assert!(!page.more);
    assert_eq!(page.revision, before);

    // By create revision: commit order, not key order.
    kv.txn(Txn {
        success: vec![Op::put("kvtest/0-late", "x")],
        ..Txn::default()
    })
    .await
    .unwrap();
    let page = kv
        .range_by_create_revision("kvtest/", start + 1, 0)
        .await
        .unwrap();
    let keys: Vec<_> = page.kvs.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["kvtest/0-late"]);
    let page = kv.range_by_create_revision("kvtest/", 0, 3).await.unwrap();
    assert!(page.more);
    let mut keys: Vec<_> = page.kvs.iter().map(|k| k.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["kvtest/a", "kvtest/b", "kvtest/c"]);

    // DeletePrefix deletes exactly the prefix.
    let out = kv
        .txn(Txn {
            success: vec![Op::DeletePrefix {
                prefix: "kvtest/".into(),
            }],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert!(kv.range("kvtest/", None, 0).await.unwrap().kvs.is_empty());

    // The watch saw every change in order, deletes at the deleting revision.
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let ev = within("kv watch events", WAIT, watch.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((ev.kind, ev.key, ev.mod_revision));
    }
    let expected_puts = [
        ("kvtest/a", start + 1),
        ("kvtest/b", start + 1),
        ("kvtest/c", start + 1),
        ("kvtest/a", start + 2),
        ("kvtest/b", start + 3),
        ("kvtest/0-late", start + 4),
    ];
    for (i, (key, rev)) in expected_puts.iter().enumerate() {
        assert_eq!(
            seen[i],
            (WatchEventKind::Put, key.to_string(), *rev),
            "{seen:?}"
        );
    }
    let mut deleted: Vec<_> = seen[6..].to_vec();
    deleted.sort();
    for (kind, _, rev) in &deleted {
        assert_eq!((*kind, *rev), (WatchEventKind::Delete, out.revision));
    }

    // Limits and lease checks are the same everywhere.
    let too_many = Txn {
        success: (0..129)
            .map(|i| Op::put(format!("kvtest/{i}"), "v"))
            .collect(),
        ..Txn::default()
    };
    assert!(matches!(
        kv.txn(too_many).await,
        Err(StoreError::InvalidArgument { .. })
    ));
    let unknown_lease = Txn {
        success: vec![Op::Put {
            key: "kvtest/leased".into(),
            value: b"v".to_vec(),
            lease: Some(0x7fff_0000),
        }],
        ..Txn::default()
    };
    let err = kv.txn(unknown_lease).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(matches!(
        kv.keep_alive(0x7fff_0000).await,
        Err(StoreError::NotFound { .. })
    ));
    kv.revoke_lease(0x7fff_0000).await.unwrap();
}

/// Create, read, update; list over several pages without topic or audit keys mixed in.
pub async fn task_crud_and_pagination<B: KvBackend>(store: &KvMigrationStore<B>) {
    let mut ids = Vec::new();
    for i in 0..25 {
        let id = format!("task-{i:02}");
        let created = store
            .create_task(task(&id, &format!("target-{i}")))
            .await
            .unwrap();
        assert!(created.value.created_at_ms > 0);
        assert_eq!(created.value.updated_at_ms, created.value.created_at_ms);
        ids.push(id);
    }
    // Topics and audit records must not show up as tasks.
    store
        .add_topics(
            "task-03",
            vec![TopicState::initial("task-03", "TopicA", "t")],
        )
        .await
        .unwrap();
    step(store, "task-03", "TopicA", Stage::DualRead).await;

    let got = store.get_task("task-07").await.unwrap();
    assert_eq!(got.value.target_cluster, "target-7");
    assert_eq!(got.value.extra["note"], "conformance");

    let mut listed = Vec::new();
    let mut page = PageRequest::first(10);
    let mut pages = 0;
    loop {
        let result = store.list_tasks(page.clone()).await.unwrap();
        pages += 1;
        assert!(result.items.len() <= 10);
        listed.extend(result.items.into_iter().map(|t| t.value.id));
        match result.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(listed, ids);

    let mut updated = got.value.clone();
    updated.state = ferry_core::TaskState::Paused;
    let after = store.update_task(updated, got.revision).await.unwrap();
    assert!(after.revision > got.revision);
    let reread = store.get_task("task-07").await.unwrap();
    assert_eq!(reread.value.state, ferry_core::TaskState::Paused);
    assert_eq!(reread.revision, after.revision);
    assert_eq!(reread.value.created_at_ms, got.value.created_at_ms);

    assert!(matches!(
        store.get_task("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_task("a/b").await,
        Err(StoreError::InvalidArgument { .. })
    ));
}

/// A stale expected revision loses with a Conflict naming both revisions.
pub async fn task_cas_conflict<B: KvBackend>(store: &KvMigrationStore<B>) {
    let v1 = store.create_task(task("cas", "target-cas")).await.unwrap();
    let mut a = v1.value.clone();
    a.state = ferry_core::TaskState::Paused;
    let v2 = store.update_task(a, v1.revision).await.unwrap();
    let mut b = v1.value.clone();
    b.state = ferry_core::TaskState::RolledBack;
    match store.update_task(b, v1.revision).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (v1.revision, v2.revision));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        store.get_task("cas").await.unwrap().value.state,
        ferry_core::TaskState::Paused
    );

    let mut moved = v2.value.clone();
    moved.target_cluster = "elsewhere".into();
    assert!(matches!(
        store.update_task(moved, v2.revision).await,
        Err(StoreError::InvalidArgument { .. })
    ));
    assert!(matches!(
        store.update_task(task("ghost", "t"), 1).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A target is in at most one running task; finishing releases it.
pub async fn one_running_task_per_target<B: KvBackend>(store: &KvMigrationStore<B>) {
    let first = store.create_task(task("first", "prod")).await.unwrap();
    assert_eq!(
        store.target_holder("prod").await.unwrap().as_deref(),
        Some("first")
    );
    match store.create_task(task("second", "prod")).await {
        Err(StoreError::TargetLocked { target, holder }) => {
            assert_eq!((target.as_str(), holder.as_str()), ("prod", "first"));
        }
        other => panic!("expected TargetLocked, got {other:?}"),
    }
    assert!(matches!(
        store.get_task("second").await,
        Err(StoreError::NotFound { .. })
    ));
    match store.create_task(task("first", "other")).await {
        Err(StoreError::AlreadyExists { id, .. }) => assert_eq!(id, "first"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.target_holder("other").await.unwrap(), None);

    // A stale finish does not release the lock.
    let mut paused = first.value.clone();
    paused.state = ferry_core::TaskState::Paused;
    let paused = store.update_task(paused, first.revision).await.unwrap();
    let mut done = first.value.clone();
    done.state = ferry_core::TaskState::Completed;
    assert!(matches!(
        store
            .finish_task("first", first.revision, done.clone())
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.target_holder("prod").await.unwrap().is_some());

    let finished = store
        .finish_task("first", paused.revision, done)
        .await
        .unwrap();
    assert_eq!(finished.value.state, ferry_core::TaskState::Completed);
    assert_eq!(store.target_holder("prod").await.unwrap(), None);
    store.create_task(task("second", "prod")).await.unwrap();
    assert_eq!(
        store.target_holder("prod").await.unwrap().as_deref(),
        Some("second")
    );

    // Finishing the old task again must not release the new task's lock.
    let again = store.get_task("first").await.unwrap();
    store
        .finish_task("first", again.revision, again.value.clone())
        .await
        .unwrap();
    assert_eq!(
        store.target_holder("prod").await.unwrap().as_deref(),
        Some("second")
    );
}

/// Adding is create-if-absent in chunks; listing pages; removal only at INITIAL.
pub async fn topics_add_list_remove<B: KvBackend>(store: &KvMigrationStore<B>) {
    assert!(matches!(
        store
            .add_topics("missing", vec![TopicState::initial("missing", "T", "t")])
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store.create_task(task("big", "target-big")).await.unwrap();
    let names: Vec<String> = (0..250).map(|i| format!("Topic{i:03}")).collect();
    let outcome = store
        .add_topics(
            "big",
            names
                .iter()
                .map(|n| TopicState::initial("ignored", n, "t"))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.added.len(), 250);
    assert!(outcome.already_present.is_empty());
    assert!(outcome.added.iter().all(|t| t.value.task_id == "big"));

    // Re-adding is idempotent: existing topics are reported, new ones added.
    let again = store
        .add_topics(
            "big",
            vec![
                TopicState::initial("big", "Topic005", "t"),
                TopicState::initial("big", "Topic300", "t"),
                TopicState::initial("big", "Topic300", "t"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again.added.len(), 1);
    assert_eq!(again.added[0].value.topic, "Topic300");
    assert_eq!(again.already_present.len(), 1);
    assert_eq!(again.already_present[0].value.topic, "Topic005");

    let mut listed = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let result = store.list_topics("big", page.clone()).await.unwrap();
        listed.extend(result.items.into_iter().map(|t| t.value.topic));
        match result.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(listed.len(), 251);
    assert!(listed.windows(2).all(|w| w[0] < w[1]));

    let moved = step(store, "big", "Topic001", Stage::DualRead).await;
    match store.remove_topic("big", "Topic001", moved.revision).await {
        Err(StoreError::FailedPrecondition { reason }) => {
            assert!(reason.contains("DUAL_READ"), "{reason}")
        }
        other => panic!("expected FailedPrecondition, got {other:?}"),
    }
    let t2 = store.get_topic("big", "Topic002").await.unwrap();
    assert!(matches!(
        store.remove_topic("big", "Topic002", t2.revision - 1).await,
        Err(StoreError::Conflict { .. })
    ));
    store
        .remove_topic("big", "Topic002", t2.revision)
        .await
        .unwrap();
    assert!(matches!(
        store.get_topic("big", "Topic002").await,
        Err(StoreError::NotFound { .. })
    ));
}

/// 100 rounds of two concurrent changes with the same expected revision: exactly one wins.
pub async fn concurrent_stage_changes<B: KvBackend>(store: &KvMigrationStore<B>) {
    task_with_topics(store, "race", &["Hot"]).await;
    let started = Instant::now();
    let (mut winners, mut conflicts) = (0, 0);
    for round in 0..100 {
        let current = store.get_topic("race", "Hot").await.unwrap();
        let to = if current.value.stage == Stage::Initial {
            Stage::DualRead
        } else {
            Stage::Initial
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let contenders: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|actor| {
                let (store, barrier) = (store.clone(), barrier.clone());
                let mut request = change("race", "Hot", current.revision, to);
                request.actor = actor.into();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.change_stage(request).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for c in contenders {
            results.push(c.await.unwrap());
        }
        let won = results.iter().filter(|r| r.is_ok()).count();
        let lost = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict { .. })))
            .count();
        assert_eq!((won, lost), (1, 1), "round {round}: {results:?}");
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            let msg = e.to_string();
            assert!(
                msg.contains("topic Hot of task race changed concurrently")
                    && msg.contains("re-read and retry"),
                "{msg}"
            );
        }
        winners += won;
        conflicts += lost;
    }
    let elapsed = started.elapsed();
    assert_eq!((winners, conflicts), (100, 100));
    let audit = store
        .list_audit("race", PageRequest::first(1000))
        .await
        .unwrap();
    assert_eq!(
        audit.items.len(),
        100,
        "one audit record per winning change"
    );
    tracing::info!(
        backend = std::any::type_name::<B>(),
        ?elapsed,
        "concurrent change test: 100 rounds, 100 winners, 100 conflicts"
    );
}

/// A skip is refused and writes nothing (no stage, no audit, no revision).
pub async fn invalid_transition_writes_nothing<B: KvBackend>(store: &KvMigrationStore<B>) {
    task_with_topics(store, "skip", &["T"]).await;
    let before = store.get_topic("skip", "T").await.unwrap();
    let revision = store.backend().current_revision().await.unwrap();
    match store
        .change_stage(change("skip", "T", before.revision, Stage::DualWrite))
        .await
    {
        Err(StoreError::InvalidTransition { source, .. }) => {
            assert!(
                source.to_string().contains("INITIAL -> DUAL_WRITE"),
                "{source}"
            );
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    assert_eq!(store.get_topic("skip", "T").await.unwrap(), before);
    assert_eq!(store.backend().current_revision().await.unwrap(), revision);
    assert!(
        store
            .list_audit("skip", PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Same stage is not a transition either.
    assert!(matches!(
        store
            .change_stage(change("skip", "T", before.revision, Stage::Initial))
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        store
            .change_stage(change("skip", "Nope", 1, Stage::DualRead))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Every change leaves one audit record; listing is in commit order across topics.
pub async fn audit_in_commit_order<B: KvBackend>(store: &KvMigrationStore<B>) {
    task_with_topics(store, "audit", &["Zeta", "Alpha"]).await;
    let plan = [
        ("Zeta", Stage::DualRead),
        ("Alpha", Stage::DualRead),
        ("Zeta", Stage::DualWrite),
        ("Alpha", Stage::Initial),
        ("Zeta", Stage::Switching),
    ];
    let mut expected = Vec::new();
    for (i, (topic, to)) in plan.iter().enumerate() {
        let current = store.get_topic("audit", topic).await.unwrap();
        let mut request = change("audit", topic, current.revision, *to);
        request.actor = format!("op{i}");
        request.forced = i == 2;
        request.reason = (i == 3).then(|| "backlog on target".to_string());
        let done = store.change_stage(request).await.unwrap();
        assert!(done.value.readiness.is_none());
        assert_eq!(done.value.updated_by, format!("op{i}"));
        expected.push((topic.to_string(), current.value.stage, *to, done.revision));
    }
    let mut records = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = store.list_audit("audit", page.clone()).await.unwrap();
        records.extend(result.items);
        match result.next_page_token {
            Some(token) => page.page_token = Some(token),
            None => break,
        }
    }
    let got: Vec<_> = records
        .iter()
        .map(|r| (r.topic.clone(), r.from, r.to, r.revision))
        .collect();
    assert_eq!(got, expected);
    assert!(records[2].forced && !records[1].forced);
    assert_eq!(records[3].reason.as_deref(), Some("backlog on target"));
    assert_eq!(records[4].actor, "op4");
    assert!(records.iter().all(|r| r.task_id == "audit" && r.at_ms > 0));
}

/// Watch from a snapshot sees every change; resuming from a revision neither skips nor
/// repeats; removals arrive as `stage: None`.
pub async fn watch_resumes_without_gap_or_duplicate<B: KvBackend>(store: &KvMigrationStore<B>) {
    task_with_topics(store, "w", &["A", "B"]).await;
    let (snapshot, revision) = store.stage_snapshot().await.unwrap();
    assert_eq!(snapshot.len(), 2);
    let mut stream = store.watch_stages(revision + 1).await.unwrap();

    let plan = [
        ("A", Stage::DualRead),
        ("B", Stage::DualRead),
        ("A", Stage::DualWrite),
        ("A", Stage::Switching),
        ("B", Stage::Initial),
        ("A", Stage::Done),
    ];
    let mut made = Vec::new();
    for (topic, to) in plan {
        let v = step(store, "w", topic, to).await;
        made.push((topic.to_string(), Some(to), v.revision));
    }
    let mut seen = Vec::new();
    for _ in 0..plan.len() {
        let ev = next_event(&mut stream).await;
        assert_eq!(ev.task_id, "w");
        seen.push((ev.topic, ev.stage, ev.revision));
    }
    assert_eq!(seen, made);
    drop(stream);

    // Changes while nobody watches, then resume after the last seen revision.
    let last_seen = seen.last().unwrap().2;
    let mut later = Vec::new();
    let v = step(store, "w", "A", Stage::Switching).await;
    later.push(("A".to_string(), Some(Stage::Switching), v.revision));
    let v = step(store, "w", "B", Stage::DualRead).await;
    later.push(("B".to_string(), Some(Stage::DualRead), v.revision));
    let b = step(store, "w", "B", Stage::Initial).await;
    later.push(("B".to_string(), Some(Stage::Initial), b.revision));
    store.remove_topic("w", "B", b.revision).await.unwrap();
    let removed_at = store.backend().current_revision().await.unwrap();
    later.push(("B".to_string(), None, removed_at));

    let mut resumed = store.watch_stages(last_seen + 1).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..later.len() {
        let ev = next_event(&mut resumed).await;
        got.push((ev.topic, ev.stage, ev.revision));
    }
    assert_eq!(got, later);
    // Nothing more (no duplicates) until the next change, which comes next.
    let v = step(store, "w", "A", Stage::Done).await;
    let ev = next_event(&mut resumed).await;
    assert_eq!(
        (ev.topic.as_str(), ev.stage, ev.revision),
        ("A", Some(Stage::Done), v.revision)
    );

    // Resuming from the middle replays from exactly there.
    let mut middle = store.watch_stages(seen[3].2).await.unwrap();
    for expected in &seen[3..] {
        let ev = next_event(&mut middle).await;
        assert_eq!(&(ev.topic, ev.stage, ev.revision), expected);
    }
}

/// A task write (pause) fences stage changes conditioned on the older task revision.
pub async fn task_revision_fences_stage_changes<B: KvBackend>(store: &KvMigrationStore<B>) {
    let created = task_with_topics(store, "fence", &["T"]).await;
    let topic = store.get_topic("fence", "T").await.unwrap();
    let mut paused = created.value.clone();
    paused.state = ferry_core::TaskState::Paused;
    let paused = store.update_task(paused, created.revision).await.unwrap();

    let mut request = change("fence", "T", topic.revision, Stage::DualRead);
    request.task_revision = Some(created.revision);
    match store.change_stage(request.clone()).await {
        Err(e @ StoreError::Conflict { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("task fence"), "{msg}");
            if let StoreError::Conflict {
                expected, actual, ..
            } = e
            {
                assert_eq!((expected, actual), (created.revision, paused.revision));
            }
        }
        other => panic!("expected Conflict on the task, got {other:?}"),
    }
    assert_eq!(store.get_topic("fence", "T").await.unwrap(), topic);
    assert!(
        store
            .list_audit("fence", PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    request.task_revision = Some(paused.revision);
    let moved = store.change_stage(request).await.unwrap();
    assert_eq!(moved.value.stage, Stage::DualRead);
    // The stage change did not touch the task: its revision still fences correctly.
    assert_eq!(
        store.get_task("fence").await.unwrap().revision,
        paused.revision
    );
}

/// The snapshot lists every topic of every task with its revision.
pub async fn stage_snapshot_covers_all_tasks<B: KvBackend>(store: &KvMigrationStore<B>) {
    task_with_topics(store, "s1", &["A", "B"]).await;
    task_with_topics(store, "s2", &["A"]).await;
    let moved = step(store, "s2", "A", Stage::DualRead).await;
    let (events, revision) = store.stage_snapshot().await.unwrap();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.task_id.as_str(), e.topic.as_str(), e.stage))
        .collect();
    assert_eq!(
        got,
        [
            ("s1", "A", Some(Stage::Initial)),
            ("s1", "B", Some(Stage::Initial)),
            ("s2", "A", Some(Stage::DualRead)),
        ]
    );
    assert_eq!(events[2].revision, moved.revision);
    assert!(revision >= moved.revision);
    assert!(events.iter().all(|e| e.revision <= revision));
}

/// A member is listed while kept alive, gone right after revoke, and gone after its TTL
/// once nobody refreshes it.
pub async fn member_disappears_after_revoke_and_ttl<B: KvBackend>(store: &KvMigrationStore<B>) {
    let ids = |members: Vec<crate::RegisteredMember>| -> Vec<String> {
        members.into_iter().map(|m| m.id).collect()
    };
    let r1 = store
        .register_member(
            "routers",
            "r1",
            serde_json::json!({"addr": "10.0.0.9:9876"}),
            1,
        )
        .await
        .unwrap();
    let r2 = store
        .register_member(
            "routers",
            "r2",
            serde_json::json!({"addr": "10.0.0.8:9876"}),
            1,
        )
        .await
        .unwrap();
    let members = store.list_members("routers").await.unwrap();
    assert_eq!(members[0].value["addr"], "10.0.0.9:9876");
    assert_eq!(ids(members), ["r1", "r2"]);

    // Kept alive well past the TTL.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert_eq!(
            store.list_members("routers").await.unwrap().len(),
            2,
            "members must stay while their leases are refreshed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    r1.revoke().await.unwrap();
    assert_eq!(ids(store.list_members("routers").await.unwrap()), ["r2"]);

    r2.abandon().await;
    poll_until("the abandoned member's lease to expire", WAIT, || async {
        store.list_members("routers").await.unwrap().is_empty()
    })
    .await;

    assert!(matches!(
        store
            .register_member("tasks", "x", serde_json::Value::Null, 1)
            .await,
        Err(StoreError::InvalidArgument { .. })
    ));
}

/// A reachable store reports healthy.
pub async fn health_reports_serving<B: KvBackend>(store: &KvMigrationStore<B>) {
    store.health().await.unwrap();
}

// ------------------------------------------------------------------ snapshots

fn raw_items(items: &[serde_json::Value]) -> Vec<Box<serde_json::value::RawValue>> {
    items
        .iter()
        .map(|v| serde_json::value::to_raw_value(v).unwrap())
        .collect()
}

fn new_snapshot(source: &str, scan: &str, items: &[serde_json::Value]) -> NewSnapshot {
    NewSnapshot {
        source_id: source.into(),
        scan_id: scan.into(),
        taken_at_ms: scan[..13].parse().unwrap(),
        summary: serde_json::json!({"clusters": ["ClusterA"], "missing": []}),
        items: raw_items(items),
    }
}

fn texts(items: &[Box<serde_json::value::RawValue>]) -> Vec<String> {
    items.iter().map(|i| i.get().to_string()).collect()
}

/// Snapshots are stored, found by id, listed newest first (per source and overall, paged)
/// and deleted with all their chunks.
pub async fn snapshots_put_get_list_delete<B: KvBackend>(store: &KvMigrationStore<B>) {
    let items = vec![
        serde_json::json!({"kind": "topic", "name": "Orders"}),
        serde_json::json!({"kind": "group", "name": "GID_orders"}),
    ];
    let a1 = store
        .put_snapshot(new_snapshot("srcA", "0000000001000-aaaaaaaa", &items))
        .await
        .unwrap();
    assert_eq!((a1.item_count, a1.chunk_count), (2, 1));
    store
        .put_snapshot(new_snapshot("srcB", "0000000002000-bbbbbbbb", &items[..1]))
        .await
        .unwrap();
    store
        .put_snapshot(new_snapshot("srcA", "0000000003000-cccccccc", &[]))
        .await
        .unwrap();
    let dup = store
        .put_snapshot(new_snapshot("srcA", "0000000001000-aaaaaaaa", &items))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::AlreadyExists { .. }), "{dup}");

    let got = store.get_snapshot("0000000001000-aaaaaaaa").await.unwrap();
    assert_eq!(got, a1);
    assert_eq!(got.summary["clusters"][0], "ClusterA");
    let back = store
        .snapshot_items("0000000001000-aaaaaaaa")
        .await
        .unwrap();
    assert_eq!(texts(&back), texts(&raw_items(&items)));
    assert!(
        store
            .snapshot_items("0000000003000-cccccccc")
            .await
            .unwrap()
            .is_empty()
    );

    let ids = |page: &crate::model::Page<crate::snapshots::SnapshotHeader>| {
        page.items
            .iter()
            .map(|h| h.scan_id.clone())
            .collect::<Vec<_>>()
    };
    let all = store
        .list_snapshots(None, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        [
            "0000000003000-cccccccc",
            "0000000002000-bbbbbbbb",
            "0000000001000-aaaaaaaa"
        ]
    );
    let of_a = store
        .list_snapshots(Some("srcA"), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&of_a),
        ["0000000003000-cccccccc", "0000000001000-aaaaaaaa"]
    );
    let first = store
        .list_snapshots(None, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let second = store
        .list_snapshots(
            None,
            PageRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&second), ["0000000001000-aaaaaaaa"]);
    assert_eq!(second.next_page_token, None);

    store
        .delete_snapshot("0000000001000-aaaaaaaa")
        .await
        .unwrap();
    let gone = store
        .get_snapshot("0000000001000-aaaaaaaa")
        .await
        .unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }), "{gone}");
    let again = store
        .delete_snapshot("0000000001000-aaaaaaaa")
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::NotFound { .. }), "{again}");
    let chunks = store
        .backend()
        .range(&snapshot_keys::chunks_of("0000000001000-aaaaaaaa"), None, 0)
        .await
        .unwrap();
    assert!(chunks.kvs.is_empty(), "chunks left behind");
    let bad = store.get_snapshot("a/b").await.unwrap_err();
    assert!(matches!(bad, StoreError::InvalidArgument { .. }), "{bad}");
}

/// An inventory of several MiB goes into chunks no larger than [`MAX_CHUNK_BYTES`] (etcd
/// refuses requests over 1.5 MiB) and comes back item for item.
pub async fn snapshots_large_inventory_is_chunked<B: KvBackend>(store: &KvMigrationStore<B>) {
    let items: Vec<serde_json::Value> = (0..12_000)
        .map(|i| {
            serde_json::json!({
                "kind": "topic",
                "name": format!("Topic-{i:05}"),
                "configs": [{"broker": "broker-a", "readQueueNums": 8, "pad": "x".repeat(200)}],
            })
        })
        .collect();
    let header = store
        .put_snapshot(new_snapshot("big", "0000000005000-dddddddd", &items))
        .await
        .unwrap();
    assert!(header.bytes > 3 * 1024 * 1024, "{}", header.bytes);
    assert!(header.chunk_count >= 6, "{}", header.chunk_count);
    let stored = store
        .backend()
        .range(&snapshot_keys::chunks_of("0000000005000-dddddddd"), None, 0)
        .await
        .unwrap();
    assert_eq!(stored.kvs.len(), header.chunk_count as usize);
    for kv in &stored.kvs {
        assert!(
            kv.value.len() <= MAX_CHUNK_BYTES,
            "{} is {} bytes",
            kv.key,
            kv.value.len()
        );
    }
    let back = store
        .snapshot_items("0000000005000-dddddddd")
        .await
        .unwrap();
    assert_eq!(back.len(), items.len());
    assert_eq!(texts(&back), texts(&raw_items(&items)));
    let huge = serde_json::json!({"pad": "x".repeat(MAX_CHUNK_BYTES)});
    let err = store
        .put_snapshot(new_snapshot("big", "0000000006000-eeeeeeee", &[huge]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument { .. }), "{err}");
    let err = store
        .get_snapshot("0000000006000-eeeeeeee")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

/// Pruning keeps the newest snapshots of one source and leaves other sources alone.
pub async fn snapshots_prune_keeps_the_newest<B: KvBackend>(store: &KvMigrationStore<B>) {
    for i in 1..=4 {
        store
            .put_snapshot(new_snapshot(
                "p",
                &format!("000000000{i}000-0000000{i}"),
                &[serde_json::json!(i)],
            ))
            .await
            .unwrap();
    }
    store
        .put_snapshot(new_snapshot("other", "0000000000500-ffffffff", &[]))
        .await
        .unwrap();
    let deleted = store.prune_snapshots("p", 2).await.unwrap();
    assert_eq!(
        deleted,
        ["0000000002000-00000002", "0000000001000-00000001"]
    );
    let left = store
        .list_snapshots(Some("p"), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(left.items.len(), 2);
    assert_eq!(left.items[0].scan_id, "0000000004000-00000004");
    store.get_snapshot("0000000000500-ffffffff").await.unwrap();
    assert!(store.prune_snapshots("p", 2).await.unwrap().is_empty());
}
