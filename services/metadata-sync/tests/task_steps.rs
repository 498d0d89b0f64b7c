//! The steps of a migration task against real RocketMQ clusters: ConnectSource probes source
//! and target and keeps the outcome on the task; AdvanceStep moves on only when it was OK
//! and no broker name exists in both clusters; step 2 scans and imports through the import
//! engine (imported topics join the task); step 3's gate needs proof that clients moved;
//! topic stages change only in step 4.

use std::sync::Arc;

use ferry_api::common::v1::{ClusterEndpoint, ConnectOutcome, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_server::MigrationTaskService;
use ferry_metadata_sync::{ImportSettings, ImportSlot, ImportTasks, MigrationTasks, StoreSlot};
use ferry_store::{EmbeddedStore, FerryStore};
use ferry_testkit::free_port;
use ferry_testkit::rocketmq::{ClusterSpec, TwoClusters};
use tonic::{Code, Request};

fn service() -> MigrationTasks {
    let embedded = Arc::new(EmbeddedStore::in_memory());
    let store: Arc<dyn FerryStore> = embedded.clone();
    let imports = ImportTasks::new(ImportSlot::ready(embedded), ImportSettings::default());
    MigrationTasks::new(StoreSlot::ready(store)).with_imports(imports)
}

async fn create(
    svc: &MigrationTasks,
    source: (&str, &str),
    target: (&str, &str),
) -> pb::MigrationTask {
    let endpoint = |(cluster, namesrv): (&str, &str)| ClusterEndpoint {
        namesrv_addrs: namesrv.into(),
        cluster_name: cluster.into(),
        credentials: None,
    };
    svc.create_migration_task(Request::new(pb::CreateMigrationTaskRequest {
        dry_run: false,
        name: "step1".into(),
        source: Some(endpoint(source)),
        target_type: TargetType::V5 as i32,
        target: Some(endpoint(target)),
        actor: "test".into(),
    }))
    .await
    .unwrap()
    .into_inner()
    .task
    .unwrap()
}

async fn advance(
    svc: &MigrationTasks,
    task_id: &str,
    from: pb::MigrationStep,
) -> Result<pb::MigrationTask, tonic::Status> {
    advance_with(svc, task_id, from, false).await
}

async fn advance_with(
    svc: &MigrationTasks,
    task_id: &str,
    from: pb::MigrationStep,
    force: bool,
) -> Result<pb::MigrationTask, tonic::Status> {
    svc.advance_step(Request::new(pb::AdvanceStepRequest {
        task_id: task_id.into(),
        from_step: from as i32,
        actor: "test".into(),
        force,
        reason: "test".into(),
        dry_run: false,
    }))
    .await
    .map(|r| r.into_inner().task.unwrap())
}

async fn connect(svc: &MigrationTasks, task_id: &str) -> pb::ConnectSourceResponse {
    svc.connect_source(Request::new(pb::ConnectSourceRequest {
        task_id: task_id.into(),
        dry_run: false,
    }))
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn connected_source_opens_step_two_and_stale_or_later_steps_are_refused() {
    let clusters = TwoClusters::start().await.unwrap();
    let svc = service();
    let (a, b) = (clusters.a.namesrv_addr(), clusters.b.namesrv_addr());
    let task = create(&svc, ("ClusterA", &a), ("ClusterB", &b)).await;

    let err = advance(&svc, &task.task_id, pb::MigrationStep::Connect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("run ConnectSource first"),
        "{}",
        err.message()
    );

    let checked = connect(&svc, &task.task_id).await;
    assert_eq!(
        checked.outcome,
        ConnectOutcome::Ok as i32,
        "{}",
        checked.message
    );
    assert!(
        checked.probes.iter().any(|p| p.address == a && p.ok),
        "{:?}",
        checked.probes
    );
    assert_eq!(
        checked.task.unwrap().connect_outcome,
        ConnectOutcome::Ok as i32
    );

    let moved = advance(&svc, &task.task_id, pb::MigrationStep::Connect)
        .await
        .unwrap();
    assert_eq!(moved.step, pb::MigrationStep::ImportMetadata as i32);
    // A request naming the step the task has left is refused, not applied twice.
    let err = advance(&svc, &task.task_id, pb::MigrationStep::Connect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("IMPORT_METADATA"),
        "{}",
        err.message()
    );
    // Step 2's gate: nothing scanned or imported yet.
    let err = advance(&svc, &task.task_id, pb::MigrationStep::ImportMetadata)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("RefreshSourceInventory"),
        "{}",
        err.message()
    );
}

fn stage_change(task_id: &str, topic: &str, force: bool) -> pb::StageChangeRequest {
    pb::StageChangeRequest {
        task_id: task_id.into(),
        topics: vec![pb::TopicRef {
            topic: topic.into(),
            expected_revision: 0,
        }],
        force,
        actor: "test".into(),
        reason: String::new(),
        dry_run: false,
    }
}

async fn items(svc: &MigrationTasks, task_id: &str) -> Vec<pb::MigrationItem> {
    svc.list_migration_items(Request::new(pb::ListMigrationItemsRequest {
        task_id: task_id.into(),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
    .items
}

fn state_of(items: &[pb::MigrationItem], name: &str) -> Option<pb::MigrationItemState> {
    items
        .iter()
        .find(|i| i.name == name)
        .and_then(|i| pb::MigrationItemState::try_from(i.state).ok())
}

#[tokio::test]
async fn steps_two_to_five_import_gate_switch_and_complete() {
    let clusters = TwoClusters::start().await.unwrap();
    clusters.a.create_topic("Orders", 4).await.unwrap();
    clusters.a.create_topic("Payments", 4).await.unwrap();
    clusters.a.create_group("OrdersGroup").await.unwrap();
    let svc = service();
    let task = create(
        &svc,
        ("ClusterA", &clusters.a.namesrv_addr()),
        ("ClusterB", &clusters.b.namesrv_addr()),
    )
    .await;
    let id = task.task_id.clone();
    let checked = connect(&svc, &id).await;
    assert_eq!(
        checked.outcome,
        ConnectOutcome::Ok as i32,
        "{}",
        checked.message
    );
    advance(&svc, &id, pb::MigrationStep::Connect)
        .await
        .unwrap();

    // Stages cannot move before step 4.
    let err = svc
        .advance_topics(Request::new(pb::AdvanceTopicsRequest {
            change: Some(stage_change(&id, "Orders", true)),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("GRAY_MIGRATION"),
        "{}",
        err.message()
    );

    // The scan offers the source's user topics and groups, none imported yet.
    let refreshed = svc
        .refresh_source_inventory(Request::new(pb::RefreshSourceInventoryRequest {
            dry_run: false,
            task_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!refreshed.snapshot_id.is_empty());
    for t in ["Orders", "Payments"] {
        assert!(
            refreshed.new_topics.contains(&t.to_string()),
            "{refreshed:?}"
        );
    }
    assert!(
        refreshed.new_groups.contains(&"OrdersGroup".to_string()),
        "{refreshed:?}"
    );
    let listed = items(&svc, &id).await;
    assert_eq!(
        state_of(&listed, "Orders"),
        Some(pb::MigrationItemState::NotImported)
    );

    // Confirm and import one item: it lands on the target (read back) and joins the task.
    let imported = svc
        .import_migration_items(Request::new(pb::ImportMigrationItemsRequest {
            dry_run: false,
            task_id: id.clone(),
            topics: vec!["Orders".into()],
            groups: vec![],
            all: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(imported.len(), 1, "{imported:?}");
    assert_eq!(
        imported[0].result,
        ferry_api::common::v1::ItemResult::Success as i32,
        "{imported:?}"
    );
    assert!(
        clusters.b.route("Orders").await.unwrap().is_some(),
        "Orders exists on the target"
    );
    let listed = items(&svc, &id).await;
    assert_eq!(
        state_of(&listed, "Orders"),
        Some(pb::MigrationItemState::Imported)
    );
    assert_eq!(
        state_of(&listed, "Payments"),
        Some(pb::MigrationItemState::NotImported)
    );

    // The gate names what is missing: the group not imported.
    let err = advance(&svc, &id, pb::MigrationStep::ImportMetadata)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("OrdersGroup"), "{}", err.message());

    // A topic created by hand joins the task too; then everything else at once.
    let by_hand = svc
        .create_migration_item(Request::new(pb::CreateMigrationItemRequest {
            dry_run: false,
            task_id: id.clone(),
            kind: ferry_api::common::v1::ItemKind::Topic as i32,
            name: "Audit".into(),
            queue_nums: 40,
            order: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap();
    assert_eq!(
        by_hand.result,
        ferry_api::common::v1::ItemResult::Success as i32,
        "{by_hand:?}"
    );
    assert!(
        by_hand.notices.iter().any(|n| n.contains("16")),
        "queue count clamped: {by_hand:?}"
    );
    let rest = svc
        .import_migration_items(Request::new(pb::ImportMigrationItemsRequest {
            task_id: id.clone(),
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .items;
    let names: Vec<&str> = rest.iter().map(|i| i.name.as_str()).collect();
    assert!(
        names.contains(&"Payments") && names.contains(&"OrdersGroup"),
        "{names:?}"
    );
    let stages = svc
        .list_topic_stages(Request::new(pb::ListTopicStagesRequest {
            task_id: id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .topics;
    let in_task: Vec<&str> = stages.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(in_task, vec!["Audit", "Orders", "Payments"]);

    let at3 = advance(&svc, &id, pb::MigrationStep::ImportMetadata)
        .await
        .unwrap();
    assert_eq!(at3.step, pb::MigrationStep::SwitchAccessPoint as i32);

    // Step 3: no readiness was ever measured (no health checker here), so nothing proves the
    // clients moved; a dry run answers like the real call and changes nothing.
    let err = svc
        .advance_step(Request::new(pb::AdvanceStepRequest {
            task_id: id.clone(),
            from_step: pb::MigrationStep::SwitchAccessPoint as i32,
            dry_run: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not measured"), "{}", err.message());
    let forced = advance_with(&svc, &id, pb::MigrationStep::SwitchAccessPoint, true)
        .await
        .unwrap();
    assert_eq!(forced.step, pb::MigrationStep::GrayMigration as i32);
    let last = forced.step_history.last().unwrap();
    assert!(
        last.forced && last.reason.contains("not measured"),
        "{last:?}"
    );
    assert_eq!(forced.step_history.len(), 3);

    // Step 4: a dry run decides without committing; then the stages move.
    let dry = svc
        .advance_topics(Request::new(pb::AdvanceTopicsRequest {
            change: Some(pb::StageChangeRequest {
                dry_run: true,
                ..stage_change(&id, "Orders", true)
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(!dry[0].changed && dry[0].error.is_empty(), "{dry:?}");
    assert_eq!(
        dry[0].to_stage,
        ferry_api::common::v1::Stage::DualRead as i32
    );
    let moved = svc
        .advance_topics(Request::new(pb::AdvanceTopicsRequest {
            change: Some(stage_change(&id, "Orders", true)),
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(moved[0].changed, "{moved:?}");
    // The dry run reported the revision it decided on; the real change moved past it.
    assert!(moved[0].revision > dry[0].revision, "{dry:?} {moved:?}");

    // Leaving step 4 backwards needs every topic at INITIAL.
    let err = svc
        .rollback_step(Request::new(pb::RollbackStepRequest {
            dry_run: false,
            task_id: id.clone(),
            from_step: pb::MigrationStep::GrayMigration as i32,
            actor: "test".into(),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert!(err.message().contains("Orders"), "{}", err.message());

    // Step 5 only when every topic is DONE.
    let err = advance(&svc, &id, pb::MigrationStep::GrayMigration)
        .await
        .unwrap_err();
    assert!(err.message().contains("Payments"), "{}", err.message());
    // Reconcile toward DONE: the plan names one next stage per topic; without readiness
    // proof nothing is applied unless forced; forced, one stage per topic per call.
    let reconcile = |apply: bool, force: bool| {
        svc.reconcile(Request::new(pb::ReconcileRequest {
            task_id: id.clone(),
            desired_all: ferry_api::common::v1::Stage::Done as i32,
            apply,
            force,
            actor: "automation".into(),
            ..Default::default()
        }))
    };
    let plan = reconcile(false, false).await.unwrap().into_inner();
    assert_eq!(plan.plan.len(), 3, "{plan:?}");
    assert!(plan.applied.is_empty() && !plan.converged);
    let orders = plan.plan.iter().find(|p| p.topic == "Orders").unwrap();
    assert_eq!(orders.next, ferry_api::common::v1::Stage::DualWrite as i32);
    assert!(
        !orders.ready && orders.blocked_by.contains("readiness"),
        "{orders:?}"
    );
    let unforced = reconcile(true, false).await.unwrap().into_inner();
    assert!(
        unforced.applied.is_empty() && !unforced.converged,
        "{unforced:?}"
    );
    let mut calls = 0;
    loop {
        let step = reconcile(true, true).await.unwrap().into_inner();
        calls += 1;
        assert!(step.applied.iter().all(|a| a.changed), "{step:?}");
        if step.converged {
            break;
        }
        assert!(calls < 4, "DONE is at most 4 stages away: {step:?}");
    }
    // Orders started one stage ahead, so four calls bring every topic to DONE.
    assert_eq!(calls, 4);
    let settled = reconcile(true, true).await.unwrap().into_inner();
    assert!(settled.plan.is_empty() && settled.converged, "{settled:?}");
    let done = advance(&svc, &id, pb::MigrationStep::GrayMigration)
        .await
        .unwrap();
    assert_eq!(done.step, pb::MigrationStep::Complete as i32);
    assert_eq!(done.state, pb::MigrationTaskState::Completed as i32);
}

#[tokio::test]
async fn unreachable_source_keeps_the_task_at_step_one() {
    let svc = service();
    let dead = format!("127.0.0.1:{}", free_port());
    let other = format!("127.0.0.1:{}", free_port());
    let task = create(&svc, ("ClusterA", &dead), ("ClusterB", &other)).await;
    let checked = connect(&svc, &task.task_id).await;
    assert_eq!(
        checked.outcome,
        ConnectOutcome::NamesrvUnreachable as i32,
        "{}",
        checked.message
    );
    assert!(
        checked.message.contains(&dead)
            || checked.probes.iter().any(|p| p.address == dead && !p.ok)
    );
    let err = advance(&svc, &task.task_id, pb::MigrationStep::Connect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("NAMESRV_UNREACHABLE"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn broker_name_collision_blocks_step_two() {
    let same_broker = ClusterSpec {
        cluster_name: "ClusterB",
        broker_name: "broker-a",
        ..ClusterSpec::default()
    };
    let clusters = TwoClusters::start_with(ClusterSpec::default(), same_broker)
        .await
        .unwrap();
    let svc = service();
    let task = create(
        &svc,
        ("ClusterA", &clusters.a.namesrv_addr()),
        ("ClusterB", &clusters.b.namesrv_addr()),
    )
    .await;
    connect(&svc, &task.task_id).await;
    let err = advance(&svc, &task.task_id, pb::MigrationStep::Connect)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("broker-a"), "{}", err.message());
}

#[tokio::test]
async fn rescans_offer_topics_created_on_the_source_during_the_migration() {
    let clusters = TwoClusters::start().await.unwrap();
    clusters.a.create_topic("Orders", 4).await.unwrap();
    let svc = service();
    let task = create(
        &svc,
        ("ClusterA", &clusters.a.namesrv_addr()),
        ("ClusterB", &clusters.b.namesrv_addr()),
    )
    .await;
    let id = task.task_id.clone();
    connect(&svc, &id).await;
    advance(&svc, &id, pb::MigrationStep::Connect)
        .await
        .unwrap();
    svc.import_migration_items(Request::new(pb::ImportMigrationItemsRequest {
        task_id: id.clone(),
        all: true,
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(state_of(&items(&svc, &id).await, "Refunds"), None);

    // A topic appears on the source mid-migration; the periodic rescan offers it.
    clusters.a.create_topic("Refunds", 4).await.unwrap();
    let rescans = svc.start_rescans(std::time::Duration::from_millis(300));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = items(&svc, &id).await;
        if state_of(&listed, "Refunds") == Some(pb::MigrationItemState::NotImported) {
            assert_eq!(
                state_of(&listed, "Orders"),
                Some(pb::MigrationItemState::Imported)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rescan never offered Refunds: {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    rescans.abort();
}

#[tokio::test]
async fn dry_runs_answer_like_the_real_calls_and_change_nothing() {
    use ferry_api::common::v1::ItemResult;
    let clusters = TwoClusters::start().await.unwrap();
    clusters.a.create_topic("Orders", 4).await.unwrap();
    let svc = service();
    let (a, b) = (clusters.a.namesrv_addr(), clusters.b.namesrv_addr());
    let task = create(&svc, ("ClusterA", &a), ("ClusterB", &b)).await;
    let id = task.task_id.clone();
    let get = || async {
        svc.get_migration_task(Request::new(pb::GetMigrationTaskRequest {
            task_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
    };

    // The target is held: a dry-run create says so like the real one.
    let err = svc
        .create_migration_task(Request::new(pb::CreateMigrationTaskRequest {
            name: "again".into(),
            source: Some(ClusterEndpoint {
                namesrv_addrs: a.clone(),
                cluster_name: "ClusterA".into(),
                credentials: None,
            }),
            target_type: TargetType::V5 as i32,
            target: Some(ClusterEndpoint {
                namesrv_addrs: b.clone(),
                cluster_name: "ClusterB".into(),
                credentials: None,
            }),
            actor: "test".into(),
            dry_run: true,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&id), "{}", err.message());

    // A dry-run probe answers but keeps nothing: step 1's gate still wants a probe.
    let probe = svc
        .connect_source(Request::new(pb::ConnectSourceRequest {
            task_id: id.clone(),
            dry_run: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        probe.outcome,
        ConnectOutcome::Ok as i32,
        "{}",
        probe.message
    );
    assert_eq!(
        get().await.connect_outcome,
        ConnectOutcome::Unspecified as i32
    );
    connect(&svc, &id).await;
    advance(&svc, &id, pb::MigrationStep::Connect)
        .await
        .unwrap();

    // Scan, import, create by hand, add topics, pause: answered, nothing kept or created.
    let scan = svc
        .refresh_source_inventory(Request::new(pb::RefreshSourceInventoryRequest {
            task_id: id.clone(),
            dry_run: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(scan.snapshot_id.is_empty() && scan.new_topics.contains(&"Orders".to_string()));
    assert!(get().await.inventory_snapshot_id.is_empty());
    let would = svc
        .import_migration_items(Request::new(pb::ImportMigrationItemsRequest {
            task_id: id.clone(),
            all: true,
            dry_run: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(
        would
            .iter()
            .any(|i| i.name == "Orders" && i.result == ItemResult::Pending as i32),
        "{would:?}"
    );
    let err = svc
        .import_migration_items(Request::new(pb::ImportMigrationItemsRequest {
            task_id: id.clone(),
            topics: vec!["NoSuchTopic".into()],
            dry_run: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let by_hand = svc
        .create_migration_item(Request::new(pb::CreateMigrationItemRequest {
            task_id: id.clone(),
            kind: ferry_api::common::v1::ItemKind::Topic as i32,
            name: "Audit".into(),
            queue_nums: 4,
            order: false,
            dry_run: true,
        }))
        .await
        .unwrap()
        .into_inner()
        .item
        .unwrap();
    assert_eq!(by_hand.result, ItemResult::Pending as i32);
    assert!(clusters.b.route("Orders").await.unwrap().is_none());
    assert!(clusters.b.route("Audit").await.unwrap().is_none());
    let added = svc
        .add_topics(Request::new(pb::AddTopicsRequest {
            task_id: id.clone(),
            topics: vec!["Orders".into()],
            actor: "test".into(),
            dry_run: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added, vec!["Orders".to_string()]);
    let paused = svc
        .pause_task(Request::new(pb::PauseTaskRequest {
            task_id: id.clone(),
            actor: "test".into(),
            dry_run: true,
        }))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(paused.state, pb::MigrationTaskState::Running as i32);
    let now = get().await;
    assert!(now.topics_per_stage.is_empty(), "{now:?}");
    assert_eq!(now.state, pb::MigrationTaskState::Running as i32);
    assert_eq!(now.revision, paused.revision, "nothing was written");
}
