//! Step 1 of a migration task against real RocketMQ clusters: ConnectSource probes source
//! and target and keeps the outcome on the task; AdvanceStep moves on only when it was OK
//! and no broker name exists in both clusters.

use std::sync::Arc;

use ferry_api::common::v1::{ClusterEndpoint, ConnectOutcome, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_server::MigrationTaskService;
use ferry_metadata_sync::{MigrationTasks, StoreSlot};
use ferry_store::{EmbeddedStore, FerryStore};
use ferry_testkit::free_port;
use ferry_testkit::rocketmq::{ClusterSpec, TwoClusters};
use tonic::{Code, Request};

fn service() -> MigrationTasks {
    let store: Arc<dyn FerryStore> = Arc::new(EmbeddedStore::in_memory());
    MigrationTasks::new(StoreSlot::ready(store))
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
    svc.advance_step(Request::new(pb::AdvanceStepRequest {
        task_id: task_id.into(),
        from_step: from as i32,
        actor: "test".into(),
    }))
    .await
    .map(|r| r.into_inner().task.unwrap())
}

async fn connect(svc: &MigrationTasks, task_id: &str) -> pb::ConnectSourceResponse {
    svc.connect_source(Request::new(pb::ConnectSourceRequest {
        task_id: task_id.into(),
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
    // Later gates have not landed: said plainly.
    let err = advance(&svc, &task.task_id, pb::MigrationStep::ImportMetadata)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
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
