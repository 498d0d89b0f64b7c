//! Import tasks end to end against real parts: etcd, two RocketMQ clusters (A = source,
//! B = target) and `ferry-metadata-sync` as a process. Every item result is produced by a
//! real cause, and what the task reports is checked against what broker B holds.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferry_api::common::v1::{ClusterEndpoint, ItemKind, ItemResult, TaskStatus};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::create_import_task_request::Source;
use ferry_api::scanner::v1::ScanRequest;
use ferry_api::scanner::v1::scanner_service_server::ScannerService;
use ferry_scanner::{ScanEngine, Scanner, SnapshotSlot};
use ferry_store::{EtcdOptions, EtcdStore};
use support::*;
use tonic::{Code, Request};

fn result_of(items: &[pb::ImportItem], name: &str) -> (ItemResult, pb::ImportItem) {
    let item = items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
        .clone();
    (ItemResult::try_from(item.result).unwrap(), item)
}

/// Scans cluster A with the scanner (in-process, same etcd and prefix) and returns the id
/// of the stored snapshot.
async fn scan_a(h: &Harness) -> String {
    let store = EtcdStore::connect(
        &[h.etcd.endpoint()],
        EtcdOptions::default().with_prefix(PREFIX),
    )
    .await
    .expect("connect etcd");
    let scanner = Scanner::new(ScanEngine::default(), SnapshotSlot::ready(Arc::new(store)));
    let resp = ScannerService::scan(
        &scanner,
        Request::new(ScanRequest {
            source: Some(ClusterEndpoint {
                namesrv_addrs: h.clusters.a.namesrv_addr(),
                cluster_name: h.clusters.a.cluster_name().into(),
                credentials: None,
            }),
            source_id: "cluster-a".into(),
            timeout_ms: 0,
            dry_run: false,
        }),
    )
    .await
    .expect("scan cluster A")
    .into_inner();
    resp.snapshot.expect("snapshot").snapshot_id
}

/// A dry-run retry of `id`. The runner releases its claim just after writing the task's
/// last state, so a task seen finished may still be claimed for a moment (a real retry is
/// refused then too): FAILED_PRECONDITION is retried for a few seconds.
async fn dry_retry(client: &mut Client, id: &str) -> pb::ImportTask {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .retry_import_task(pb::RetryImportTaskRequest {
                task_id: id.into(),
                dry_run: true,
            })
            .await
        {
            Ok(resp) => return resp.into_inner().task.expect("task"),
            Err(e)
                if e.code() == Code::FailedPrecondition && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("dry-run RetryImportTask: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_of_a_imported_into_b_with_every_result_kind_then_rerun_is_idempotent() {
    let mut h = Harness::start().await;
    let (a, b) = (&h.clusters.a, &h.clusters.b);
    for (topic, queues) in [
        ("Orders", 4),
        ("Big", 32),
        ("Tiny", 1),
        ("ns1%Pay", 4),
        ("PreExisting", 4),
        // Named like the target's broker: reserved there.
        ("broker-b", 4),
        // Last in source order: over the per-task limit below.
        ("zz-Over", 4),
    ] {
        a.create_topic(topic, queues).await.expect("topic on A");
    }
    for group in ["G1", "G2", "GPre", "ns1%GPay"] {
        a.create_group(group).await.expect("group on A");
    }
    // Already on the target before the import.
    b.create_topic("PreExisting", 8).await.expect("topic on B");
    b.create_group("GPre").await.expect("group on B");
    let snapshot = scan_a(&h).await;

    // A dry-run quota is checked like a real one and answered as it would be stored, but
    // never stored.
    let dry_quota = |topic_quota: i64, group_quota: i64| pb::SetTargetQuotaRequest {
        quota: Some(pb::TargetQuota {
            target_cluster: "ClusterB".into(),
            topic_quota,
            group_quota,
            updated_at: None,
        }),
        dry_run: true,
    };
    let would = h
        .client
        .set_target_quota(dry_quota(5, 1))
        .await
        .unwrap()
        .into_inner()
        .quota
        .unwrap();
    assert_eq!(
        (
            would.target_cluster.as_str(),
            would.topic_quota,
            would.group_quota
        ),
        ("ClusterB", 5, 1)
    );
    assert!(would.updated_at.is_none(), "{would:?}");
    let err = h
        .client
        .set_target_quota(dry_quota(-1, 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let never_set = h
        .client
        .get_target_quota(pb::GetTargetQuotaRequest {
            target_cluster: "ClusterB".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .quota
        .unwrap();
    assert_eq!(
        (
            never_set.topic_quota,
            never_set.group_quota,
            never_set.updated_at
        ),
        (0, 0, None),
        "a dry run stores no quota"
    );

    // Quota: room for two more user groups on B.
    let user_groups_on_b = groups_on(&b.broker_addr())
        .await
        .keys()
        .filter(|g| !ferry_core::is_system_group(g))
        .count() as i64;
    let quota = h
        .client
        .set_target_quota(pb::SetTargetQuotaRequest {
            quota: Some(pb::TargetQuota {
                target_cluster: "ClusterB".into(),
                topic_quota: 0,
                group_quota: user_groups_on_b + 2,
                updated_at: None,
            }),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner()
        .quota
        .unwrap();
    assert_eq!(quota.group_quota, user_groups_on_b + 2);
    let got = h
        .client
        .get_target_quota(pb::GetTargetQuotaRequest {
            target_cluster: "ClusterB".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .quota
        .unwrap();
    assert_eq!(
        (got.topic_quota, got.group_quota),
        (0, user_groups_on_b + 2)
    );
    h.client.set_target_quota(dry_quota(1, 1)).await.unwrap();
    let after_dry_run = h
        .client
        .get_target_quota(pb::GetTargetQuotaRequest {
            target_cluster: "ClusterB".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .quota
        .unwrap();
    assert_eq!(
        after_dry_run, got,
        "a dry run leaves the stored quota as it was"
    );

    let mut req = create_request(h.target(), Source::SnapshotId(snapshot.clone()));
    req.topic_limit = 6;

    // Dry run first: the would-be task and its planned items, and nothing stored, claimed
    // or created.
    let dry = h
        .client
        .create_import_task(pb::CreateImportTaskRequest {
            dry_run: true,
            ..req.clone()
        })
        .await
        .expect("dry-run create")
        .into_inner();
    let would = dry.task.clone().unwrap();
    assert!(would.task_id.is_empty(), "{would:?}");
    assert_eq!(
        TaskStatus::try_from(would.status).unwrap(),
        TaskStatus::Pending
    );
    assert_eq!((would.topic_count, would.group_count), (7, 4));
    assert_eq!((would.runs, would.created_at), (0, None));
    assert_eq!(dry.items.len(), 11);
    let (r, over) = result_of(&dry.items, "zz-Over");
    assert_eq!(r, ItemResult::QuotaExceeded);
    assert!(
        over.reason.contains("per-task limit of 6 topics"),
        "{}",
        over.reason
    );
    let (r, big) = result_of(&dry.items, "Big");
    assert_eq!(r, ItemResult::Pending, "the run decides, not the plan");
    assert_eq!((big.read_queue_nums, big.write_queue_nums), (16, 16));
    assert!(
        big.notices[0].contains("read 32 / write 32"),
        "{:?}",
        big.notices
    );
    let stored = h
        .client
        .list_import_tasks(pb::ListImportTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        stored.tasks.is_empty(),
        "a dry run stores no task: {stored:?}"
    );
    assert!(
        b.route("Orders")
            .await
            .expect("route lookup on B")
            .is_none(),
        "a dry run creates nothing on the target"
    );
    let on_b = topics_on(&b.broker_addr()).await;
    assert!(!on_b.contains_key("Orders") && !on_b.contains_key("Big"));

    let started = std::time::Instant::now();
    let task = h
        .client
        .create_import_task(req.clone())
        .await
        .expect("create import task")
        .into_inner()
        .task
        .unwrap();
    assert_eq!((task.topic_count, task.group_count), (7, 4));
    assert!(task.source.contains(&snapshot), "{}", task.source);
    // The dry run answered what the create answers, but for the id and timestamps.
    let mut expected = task.clone();
    expected.task_id.clear();
    expected.created_at = None;
    expected.updated_at = None;
    assert_eq!(would, expected);
    assert!(
        task.notices.iter().any(|n| n.contains("left out")),
        "system items of A are left out: {:?}",
        task.notices
    );
    let done = wait_done(&mut h.client, &task.task_id, Duration::from_secs(30)).await;
    eprintln!("import of the scan took {:?}", started.elapsed());
    assert_eq!(
        TaskStatus::try_from(done.status).unwrap(),
        TaskStatus::PartiallyFailed,
        "{done:?}"
    );
    assert_eq!(done.runs, 1);
    assert!(done.finished_at.is_some());
    let items = all_items(&mut h.client, &task.task_id).await;
    assert_eq!(items.len(), 11);
    // Item by item, the dry run planned what the task ran; what the plan decided held.
    for (planned, ran) in dry.items.iter().zip(&items) {
        assert_eq!(
            (
                planned.seq,
                planned.kind,
                &planned.name,
                &planned.source_name,
                &planned.namespace,
                planned.read_queue_nums,
                planned.write_queue_nums,
            ),
            (
                ran.seq,
                ran.kind,
                &ran.name,
                &ran.source_name,
                &ran.namespace,
                ran.read_queue_nums,
                ran.write_queue_nums,
            )
        );
        if planned.result != ItemResult::Pending as i32 {
            assert_eq!(
                (planned.result, &planned.reason),
                (ran.result, &ran.reason),
                "{}",
                ran.name
            );
        }
        for notice in &planned.notices {
            assert!(ran.notices.contains(notice), "{notice} on {ran:?}");
        }
    }

    let (r, big) = result_of(&items, "Big");
    assert_eq!(r, ItemResult::Success);
    assert_eq!((big.read_queue_nums, big.write_queue_nums), (16, 16));
    assert!(
        big.notices[0].contains("read 32 / write 32"),
        "{:?}",
        big.notices
    );
    let (r, tiny) = result_of(&items, "Tiny");
    assert_eq!(r, ItemResult::Success);
    assert_eq!((tiny.read_queue_nums, tiny.write_queue_nums), (3, 3));
    assert_eq!(result_of(&items, "Orders").0, ItemResult::Success);
    let (r, pay) = result_of(&items, "ns1%Pay");
    assert_eq!(r, ItemResult::Success);
    assert_eq!(pay.namespace, "ns1");
    assert_eq!(result_of(&items, "Orders").1.namespace, "default");
    let (r, pre) = result_of(&items, "PreExisting");
    assert_eq!(r, ItemResult::AlreadyExistsSkipped);
    assert_eq!(pre.attempts, 0);
    let (r, reserved) = result_of(&items, "broker-b");
    assert_eq!(r, ItemResult::InvalidName);
    assert!(reserved.reason.contains("RESERVED"), "{}", reserved.reason);
    let (r, over) = result_of(&items, "zz-Over");
    assert_eq!(r, ItemResult::QuotaExceeded);
    assert!(
        over.reason.contains("per-task limit of 6 topics"),
        "{}",
        over.reason
    );
    assert_eq!(result_of(&items, "G1").0, ItemResult::Success);
    assert_eq!(result_of(&items, "G2").0, ItemResult::Success);
    assert_eq!(
        result_of(&items, "GPre").0,
        ItemResult::AlreadyExistsSkipped
    );
    let (r, gq) = result_of(&items, "ns1%GPay");
    assert_eq!(r, ItemResult::QuotaExceeded);
    assert!(
        gq.reason.contains("target cluster's quota"),
        "{}",
        gq.reason
    );
    // A dry-run retry counts what a retry would reopen (the group over the target's quota;
    // the per-task limit is not retryable) and changes nothing.
    let would_retry = dry_retry(&mut h.client, &task.task_id).await;
    assert_eq!(
        TaskStatus::try_from(would_retry.status).unwrap(),
        TaskStatus::Pending
    );
    assert_eq!(
        would_retry.notices.last().map(String::as_str),
        Some("dry run: 1 group would run again"),
        "{:?}",
        would_retry.notices
    );
    let p = would_retry.progress.unwrap();
    assert_eq!((p.pending, p.quota_exceeded), (1, 1), "{p:?}");
    assert_eq!(
        get(&mut h.client, &task.task_id).await,
        done,
        "nothing written"
    );
    let progress = done.progress.unwrap();

    assert_eq!(
        (
            progress.success,
            progress.skipped,
            progress.quota_exceeded,
            progress.invalid_name,
            progress.failed,
            progress.pending
        ),
        (6, 2, 2, 1, 0, 0)
    );

    // What B holds matches what the task says.
    let topics_b = topics_on(&b.broker_addr()).await;
    for (name, queues) in [("Big", 16), ("Tiny", 3), ("Orders", 4), ("ns1%Pay", 4)] {
        let tc = topics_b
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing on B"));
        assert_eq!(
            (tc.read_queue_nums, tc.write_queue_nums),
            (queues, queues),
            "{name}"
        );
    }
    assert_eq!(topics_b["PreExisting"].read_queue_nums, 8, "left as it was");
    assert!(!topics_b.contains_key("zz-Over"));
    let groups_b = groups_on(&b.broker_addr()).await;
    assert!(groups_b.contains_key("G1") && groups_b.contains_key("G2"));
    assert!(!groups_b.contains_key("ns1%GPay"));

    // Filters and pages.
    let ok_topics = items_where(
        &mut h.client,
        &task.task_id,
        vec![ItemResult::Success as i32],
        ItemKind::Topic as i32,
        "",
    )
    .await;
    assert_eq!(ok_topics.len(), 4);
    let ns1 = items_where(&mut h.client, &task.task_id, vec![], 0, "NS1%").await;
    assert_eq!(ns1.len(), 2);
    let page = h
        .client
        .list_import_items(pb::ListImportItemsRequest {
            task_id: task.task_id.clone(),
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.items[0].seq, 0);
    assert!(!page.next_page_token.is_empty());

    // Re-running the same import creates nothing and succeeds on every item it can.
    let before = (
        topics_on(&b.broker_addr()).await,
        groups_on(&b.broker_addr()).await,
    );
    let again = h
        .client
        .create_import_task(req)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let again = wait_done(&mut h.client, &again.task_id, Duration::from_secs(30)).await;
    let p = again.progress.unwrap();
    assert_eq!(p.success, 0, "{p:?}");
    assert_eq!(p.skipped, 8, "{p:?}");
    let after = (
        topics_on(&b.broker_addr()).await,
        groups_on(&b.broker_addr()).await,
    );
    assert_eq!(before, after, "a re-run changes nothing on the target");

    let list = h
        .client
        .list_import_tasks(pb::ListImportTasksRequest {
            target_cluster: "ClusterB".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = list.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(
        ids,
        [again.task_id.as_str(), task.task_id.as_str()],
        "newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xlsx_into_a_namespace_reports_names_too_long_for_it() {
    let mut h = Harness::start().await;
    let long = format!("L{}", "x".repeat(124));
    let book = ferry_metadata::Workbook {
        target: ferry_core::TargetType::V5,
        topics: ["Orders", long.as_str()]
            .iter()
            .map(|t| ferry_metadata::TopicRow {
                namespace: None,
                topic: t.to_string(),
                message_type: Some(ferry_metadata::MessageType::Normal),
                read_queue_nums: 8,
                write_queue_nums: 8,
                perm: 6,
                order: false,
                remark: String::new(),
            })
            .collect(),
        groups: vec![ferry_metadata::GroupRow {
            namespace: None,
            group: "G1".into(),
            consume_orderly: false,
            consume_broadcast_enable: true,
            consume_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            remark: String::new(),
        }],
    };
    let bytes = ferry_metadata::write_xlsx(&book).unwrap();
    let mut req = create_request(h.target(), Source::Xlsx(bytes));
    req.r#type = pb::ImportTaskType::IntoNamespace as i32;
    req.namespace = "prod".into();
    req.file_name = "topics.xlsx".into();
    let task = h
        .client
        .create_import_task(req)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(task.namespace, "prod");
    let done = wait_done(&mut h.client, &task.task_id, Duration::from_secs(30)).await;
    assert_eq!(
        TaskStatus::try_from(done.status).unwrap(),
        TaskStatus::PartiallyFailed
    );
    let items = all_items(&mut h.client, &task.task_id).await;
    let (r, orders) = result_of(&items, "prod%Orders");
    assert_eq!(r, ItemResult::Success);
    assert_eq!(orders.source_name, "Orders");
    let (r, long_item) = result_of(&items, &format!("prod%{long}"));
    assert_eq!(r, ItemResult::InvalidName);
    assert!(
        long_item.reason.contains("TOO_LONG"),
        "{}",
        long_item.reason
    );
    assert_eq!(result_of(&items, "prod%G1").0, ItemResult::Success);
    let topics_b = topics_on(&h.clusters.b.broker_addr()).await;
    assert_eq!(topics_b["prod%Orders"].read_queue_nums, 8);
    assert!(
        groups_on(&h.clusters.b.broker_addr())
            .await
            .contains_key("prod%G1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_rejected_before_anything_is_created() {
    let mut h = Harness::start().await;
    let before = topics_on(&h.clusters.b.broker_addr()).await;
    let cases: Vec<(Source, &str, &[&str])> = vec![
        (
            Source::ExportJson(
                br#"{"topicConfigTable":{"T1":{"readQueueNums":"eight"}}}"#.to_vec(),
            ),
            "broken.json",
            &["broken.json", "topicConfigTable.T1.readQueueNums"],
        ),
        (
            Source::ExportJson(b"{\"topicConfigTable\": {\"T1\": {".to_vec()),
            "cut.json",
            &["cut.json", "line 1"],
        ),
        (
            Source::Xlsx(b"PK\x03\x04 not really a workbook".to_vec()),
            "sheet.xlsx",
            &["sheet.xlsx"],
        ),
        (
            Source::SnapshotId("0000000000001-deadbeef".into()),
            "",
            &["0000000000001-deadbeef"],
        ),
    ];
    for (source, file, expected) in cases {
        let mut req = create_request(h.target(), source);
        req.file_name = file.into();
        let err = h.client.create_import_task(req.clone()).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::NotFound),
            "{err:?}"
        );
        // "Check my upload": a dry run fails exactly as the real call does.
        req.dry_run = true;
        let dry_err = h.client.create_import_task(req).await.unwrap_err();
        assert_eq!(
            (dry_err.code(), dry_err.message()),
            (err.code(), err.message())
        );
        for part in expected {
            assert!(
                err.message().contains(part),
                "{part:?} in {}",
                err.message()
            );
        }
    }
    // Request errors name what is wrong.
    let mut no_cluster = create_request(
        ClusterEndpoint {
            namesrv_addrs: h.clusters.b.namesrv_addr(),
            ..Default::default()
        },
        Source::ExportJson(export_json("x", 1, 0)),
    );
    let err = h
        .client
        .create_import_task(no_cluster.clone())
        .await
        .unwrap_err();
    assert!(err.message().contains("cluster_name"), "{}", err.message());
    no_cluster.target = Some(h.target());
    no_cluster.r#type = pb::ImportTaskType::IntoNamespace as i32;
    no_cluster.namespace = "bad%ns".into();
    let err = h
        .client
        .create_import_task(no_cluster.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    no_cluster.dry_run = true;
    let dry_err = h.client.create_import_task(no_cluster).await.unwrap_err();
    assert_eq!(
        (dry_err.code(), dry_err.message()),
        (err.code(), err.message())
    );
    assert!(
        err.message().contains("ILLEGAL") || err.message().contains("illegal"),
        "{}",
        err.message()
    );

    let tasks = h
        .client
        .list_import_tasks(pb::ListImportTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(tasks.tasks.is_empty(), "nothing stored: {tasks:?}");
    assert_eq!(
        before,
        topics_on(&h.clusters.b.broker_addr()).await,
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_target_address_fails_every_item_with_the_reason() {
    let mut h = Harness::start().await;
    let dead = format!("127.0.0.1:{}", ferry_testkit::free_port());
    let target = ClusterEndpoint {
        namesrv_addrs: dead.clone(),
        cluster_name: "ClusterB".into(),
        credentials: None,
    };
    let task = h
        .client
        .create_import_task(create_request(
            target,
            Source::ExportJson(export_json("d", 3, 2)),
        ))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let done = wait_done(&mut h.client, &task.task_id, Duration::from_secs(30)).await;
    assert_eq!(
        TaskStatus::try_from(done.status).unwrap(),
        TaskStatus::Failed
    );
    assert!(done.error.contains(&dead), "{}", done.error);
    let items = all_items(&mut h.client, &task.task_id).await;
    assert_eq!(items.len(), 5);
    for item in &items {
        assert_eq!(
            ItemResult::try_from(item.result).unwrap(),
            ItemResult::Failed
        );
        assert!(item.reason.contains(&dead), "{}", item.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_broker_stopped_mid_task_then_retry_completes_only_the_rest() {
    let mut h = Harness::start().await;
    let topics = 600;
    let mut req = create_request(h.target(), Source::ExportJson(export_json("u", topics, 0)));
    req.create_mode = pb::CreateMode::OneByOne as i32;
    let task = h
        .client
        .create_import_task(req)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    // The first batch is recorded; stop B's broker while later ones are being created.
    wait_progress(&mut h.client, &task.task_id, 250, Duration::from_secs(60)).await;
    h.clusters.b.stop_broker().await.expect("stop broker B");
    let done = wait_done(&mut h.client, &task.task_id, Duration::from_secs(60)).await;
    assert_eq!(
        TaskStatus::try_from(done.status).unwrap(),
        TaskStatus::PartiallyFailed,
        "{done:?}"
    );
    let items = all_items(&mut h.client, &task.task_id).await;
    let failed: Vec<&pb::ImportItem> = items
        .iter()
        .filter(|i| i.result == ItemResult::Failed as i32)
        .collect();
    let succeeded: HashSet<String> = items
        .iter()
        .filter(|i| i.result == ItemResult::Success as i32)
        .map(|i| i.name.clone())
        .collect();
    assert!(!failed.is_empty() && !succeeded.is_empty());
    assert_eq!(failed.len() + succeeded.len(), topics);
    let broker = h.clusters.b.broker_addr();
    assert!(
        failed.iter().all(|i| i.reason.contains(&broker)),
        "reasons name the broker: {:?}",
        failed.iter().map(|i| &i.reason).collect::<BTreeSet<_>>()
    );
    assert!(failed.iter().any(|i| i.reason.starts_with("not attempted")));
    eprintln!(
        "broker stopped: {} succeeded, {} failed; first reason: {}",
        succeeded.len(),
        failed.len(),
        failed[0].reason
    );

    h.clusters.b.start_broker().await.expect("start broker B");
    // A dry run reports what the retry would run again, claiming and writing nothing.
    let would = dry_retry(&mut h.client, &task.task_id).await;
    assert_eq!(
        would.notices.last().cloned(),
        Some(format!("dry run: {} topics would run again", failed.len()))
    );
    let p = would.progress.unwrap();
    assert_eq!(
        (p.pending, p.failed, p.success),
        (failed.len() as i64, 0, succeeded.len() as i64)
    );
    assert_eq!(
        TaskStatus::try_from(would.status).unwrap(),
        TaskStatus::Pending
    );
    assert_eq!(
        get(&mut h.client, &task.task_id).await,
        done,
        "nothing written"
    );
    let retried = h
        .client
        .retry_import_task(pb::RetryImportTaskRequest {
            task_id: task.task_id.clone(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(retried.task_id, task.task_id);
    let done = wait_done(&mut h.client, &task.task_id, Duration::from_secs(60)).await;
    assert_eq!(
        TaskStatus::try_from(done.status).unwrap(),
        TaskStatus::Succeeded,
        "{done:?}"
    );
    assert_eq!(done.runs, 2);
    let items = all_items(&mut h.client, &task.task_id).await;
    assert!(items.iter().all(|i| i.result == ItemResult::Success as i32));
    for item in &items {
        if succeeded.contains(&item.name) {
            assert_eq!(
                item.attempts, 1,
                "{} was sent again by the retry",
                item.name
            );
        }
    }
    let on_b = topics_on(&broker).await;
    assert!(items.iter().all(|i| on_b.contains_key(&i.name)));
    // A retry of a finished task has nothing to run; a dry run says so.
    let would = dry_retry(&mut h.client, &task.task_id).await;
    assert_eq!(
        would.notices.last().map(String::as_str),
        Some("dry run: nothing would run again")
    );
    let again = h
        .client
        .retry_import_task(pb::RetryImportTaskRequest {
            task_id: task.task_id.clone(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(
        TaskStatus::try_from(again.status).unwrap(),
        TaskStatus::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mid_task_resumes_without_creating_anything_twice() {
    let mut h = Harness::start().await;
    let topics = 1000;
    let mut req = create_request(h.target(), Source::ExportJson(export_json("r", topics, 0)));
    req.create_mode = pb::CreateMode::OneByOne as i32;
    let task = h
        .client
        .create_import_task(req)
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    wait_progress(&mut h.client, &task.task_id, 250, Duration::from_secs(60)).await;
    h.service.kill();
    // What the dead process had created: none of these may be sent again.
    let broker = h.clusters.b.broker_addr();
    let created_before: HashSet<String> = topics_on(&broker)
        .await
        .into_keys()
        .filter(|t| t.starts_with("r-T"))
        .collect();
    assert!(
        created_before.len() >= 250 && created_before.len() < topics,
        "killed mid-task: {} of {topics} created",
        created_before.len()
    );
    h.restart_service_after_kill().await;
    let done = wait_done(&mut h.client, &task.task_id, Duration::from_secs(90)).await;
    assert_eq!(
        TaskStatus::try_from(done.status).unwrap(),
        TaskStatus::Succeeded,
        "{done:?}"
    );
    assert_eq!(done.runs, 2, "one run, one resume");
    let items = all_items(&mut h.client, &task.task_id).await;
    assert_eq!(items.len(), topics);
    let mut resent = 0;
    for item in &items {
        assert_eq!(
            ItemResult::try_from(item.result).unwrap(),
            ItemResult::Success,
            "{item:?}"
        );
        if created_before.contains(&item.name) {
            assert_eq!(item.attempts, 1, "{} was created twice", item.name);
        } else if item.attempts == 2 {
            resent += 1;
        }
    }
    eprintln!(
        "restart: {} of {topics} created before the kill, {resent} re-sent after it",
        created_before.len()
    );
    // Only items of the batch in flight at the kill that were not created yet are sent again.
    assert!(resent <= 250, "{resent} items re-sent");
    let on_b = topics_on(&broker).await;
    assert_eq!(on_b.keys().filter(|t| t.starts_with("r-T")).count(), topics);
}
