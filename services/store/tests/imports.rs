//! Import tasks in the store, against the embedded backend and a real etcd: creation in
//! bounded transactions, newest-first listing, filtered item pages, claims fencing writes,
//! active markers and target quotas.

use std::time::{Duration, Instant};

use ferry_core::{ItemKind, ItemResult, ProgressCounts, TaskStatus};
use ferry_store::imports::{CreateMode, ItemCause, new_import_id};
use ferry_store::{
    EmbeddedStore, EtcdStore, ImportItem, ImportStore, ImportTask, ImportTaskType, ImportWrite,
    ItemFilter, KvBackend, KvMigrationStore, PageRequest, StoreError, TargetQuota,
};
use ferry_testkit::EtcdProcess;

fn task(id: &str, target: &str, items: u64) -> ImportTask {
    ImportTask {
        id: id.into(),
        task_type: ImportTaskType::ClusterMigration,
        namespace: None,
        target_cluster: target.into(),
        target_namesrv: "127.0.0.1:9876".into(),
        target_credentials: None,
        create_mode: CreateMode::Auto,
        source: "test".into(),
        topic_limit: 1000,
        group_limit: 1000,
        topic_count: items,
        group_count: 0,
        status: TaskStatus::Pending,
        progress: ProgressCounts::default(),
        runs: 0,
        notices: vec![],
        error: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        finished_at_ms: 0,
        extra: serde_json::Value::Null,
    }
}

fn item(task_id: &str, seq: u32, kind: ItemKind, result: ItemResult) -> ImportItem {
    ImportItem {
        task_id: task_id.into(),
        seq,
        kind,
        name: format!("T{seq:04}"),
        source_name: format!("T{seq:04}"),
        namespace: "default".into(),
        result,
        cause: None,
        reason: None,
        notices: vec![],
        read_queue_nums: 4,
        write_queue_nums: 4,
        spec: serde_json::json!({"topicName": format!("T{seq:04}")}),
        in_flight: false,
        attempts: 0,
        updated_at_ms: 0,
    }
}

async fn create_with_items<B: KvBackend>(store: &KvMigrationStore<B>, id: &str, n: u32) {
    let items = (0..n)
        .map(|i| {
            let kind = if i % 2 == 0 {
                ItemKind::Topic
            } else {
                ItemKind::Group
            };
            item(id, i, kind, ItemResult::Pending)
        })
        .collect();
    store
        .create_import(task(id, "ClusterB", n as u64), items)
        .await
        .unwrap();
}

async fn tasks_and_items<B: KvBackend>(store: &KvMigrationStore<B>) {
    let ids: Vec<String> = (1..=3).map(|i| new_import_id(i * 1000)).collect();
    create_with_items(store, &ids[0], 250).await;
    create_with_items(store, &ids[1], 3).await;
    store
        .create_import(task(&ids[2], "ClusterC", 0), vec![])
        .await
        .unwrap();
    let again = store
        .create_import(task(&ids[1], "ClusterB", 0), vec![])
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );

    let got = store.get_import(&ids[0]).await.unwrap().value;
    assert!(got.created_at_ms > 0);
    assert!(matches!(
        store.get_import("imp-missing").await,
        Err(StoreError::NotFound { .. })
    ));

    // Newest first, paged, filtered by target.
    let first = store
        .list_imports(None, PageRequest::first(2))
        .await
        .unwrap();
    let listed: Vec<&str> = first.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let second = store
        .list_imports(
            None,
            PageRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].id, ids[0]);
    assert!(second.next_page_token.is_none());
    let only_b = store
        .list_imports(Some("ClusterB"), PageRequest::first(0))
        .await
        .unwrap();
    assert_eq!(only_b.items.len(), 2);

    // All 250 items came through several transactions, in task order.
    let all = store.import_items(&ids[0]).await.unwrap();
    assert_eq!(all.len(), 250);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));

    // Filtered pages: 125 topics in pages of 50, tokens only while more match.
    let filter = ItemFilter {
        kind: Some(ItemKind::Topic),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut page = PageRequest::first(50);
    for _ in 0..10 {
        let got = store
            .list_import_items(&ids[0], &filter, page.clone())
            .await
            .unwrap();
        seen.extend(got.items.iter().map(|i| i.seq));
        match got.next_page_token {
            Some(t) => page.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 125);
    assert!(seen.iter().all(|s| s % 2 == 0));
    let exact = store
        .list_import_items(&ids[1], &ItemFilter::default(), PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(exact.items.len(), 3);
    assert!(
        exact.next_page_token.is_none(),
        "no token when nothing more matches"
    );
    let by_name = store
        .list_import_items(
            &ids[0],
            &ItemFilter {
                name_contains: Some("t0010".into()),
                ..Default::default()
            },
            PageRequest::first(0),
        )
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    let active = store.active_imports().await.unwrap();
    assert_eq!(active.len(), 3);
}

async fn claims_fence_writes<B: KvBackend>(store: &KvMigrationStore<B>) {
    let id = new_import_id(5_000);
    create_with_items(store, &id, 150).await;
    let claim = store
        .claim_import(&id, 2)
        .await
        .unwrap()
        .expect("free claim");
    assert!(store.claim_import(&id, 2).await.unwrap().is_none());
    assert!(store.import_claimed(&id).await.unwrap());

    // 150 items + task + marker: written in two transactions under the claim.
    let mut items = store.import_items(&id).await.unwrap();
    for it in &mut items {
        it.result = ItemResult::Failed;
        it.cause = Some(ItemCause::TargetError);
        it.reason = Some("refused".into());
    }
    let mut t = store.get_import(&id).await.unwrap().value;
    t.status = TaskStatus::Failed;
    t.progress = items.iter().map(|i| i.result).collect();
    store
        .write_import(
            &claim,
            ImportWrite {
                items: &items,
                task: Some(&t),
                active: Some(false),
            },
        )
        .await
        .unwrap();
    let stored = store.get_import(&id).await.unwrap().value;
    assert_eq!(stored.status, TaskStatus::Failed);
    assert_eq!(stored.progress.failed, 150);
    assert!(
        store
            .import_items(&id)
            .await
            .unwrap()
            .iter()
            .all(|i| i.result == ItemResult::Failed)
    );
    assert!(!store.active_imports().await.unwrap().contains(&id));

    // A hung runner's claim ends with its lease; another runner takes the task, and the
    // old handle can no longer write.
    let mut claim = claim;
    claim.abandon().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let next = loop {
        if let Some(c) = store.claim_import(&id, 5).await.unwrap() {
            break c;
        }
        assert!(Instant::now() < deadline, "claim never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let err = store
        .write_import(
            &claim,
            ImportWrite {
                items: &items[..1],
                task: None,
                active: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::FailedPrecondition { .. }),
        "{err}"
    );
    assert!(claim.is_lost());
    store
        .write_import(
            &next,
            ImportWrite {
                items: &items[..1],
                task: None,
                active: Some(true),
            },
        )
        .await
        .unwrap();
    assert!(store.active_imports().await.unwrap().contains(&id));
    next.release().await.unwrap();
    assert!(!store.import_claimed(&id).await.unwrap());
}

async fn quotas<B: KvBackend>(store: &KvMigrationStore<B>) {
    assert!(store.target_quota("ClusterB").await.unwrap().is_none());
    let set = store
        .set_target_quota(TargetQuota {
            target_cluster: "ClusterB".into(),
            topics: Some(10),
            groups: None,
            updated_at_ms: 0,
        })
        .await
        .unwrap();
    assert!(set.updated_at_ms > 0);
    let got = store.target_quota("ClusterB").await.unwrap().unwrap();
    assert_eq!(got.for_kind(ItemKind::Topic), Some(10));
    assert_eq!(got.for_kind(ItemKind::Group), None);
    assert!(store.target_quota("bad/name").await.is_err());
}

async fn all<B: KvBackend>(store: KvMigrationStore<B>) {
    tasks_and_items(&store).await;
    claims_fence_writes(&store).await;
    quotas(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_on_embedded_store() {
    all(EmbeddedStore::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_on_etcd() {
    let etcd = EtcdProcess::start().await.expect("etcd must start");
    let store = EtcdStore::connect(&[etcd.endpoint()], Default::default())
        .await
        .expect("connect to the test etcd");
    all(store).await;
    drop(etcd);
}
