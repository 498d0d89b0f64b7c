//! `ferry-metadata-sync` as a process against a real etcd: health follows the store, stage
//! changes are compare-and-swap over gRPC, one running task per target.

use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, Stage, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_api::service_names::MIGRATION_TASK;
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

type Client = MigrationTaskServiceClient<Channel>;

fn spawn_service(etcd_endpoint: &str, prefix: &str) -> (ServiceProcess, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let process = ServiceProcess::spawn(
        "metadata-sync",
        env!("CARGO_BIN_EXE_ferry-metadata-sync"),
        &[
            "--listen",
            &listen,
            "--etcd-endpoints",
            etcd_endpoint,
            "--etcd-prefix",
            prefix,
        ],
        &[("FERRY_LOG", "info,ferry=debug")],
    )
    .expect("spawn ferry-metadata-sync");
    (process, format!("http://{listen}"))
}

async fn channel(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Channel::from_shared(addr.to_string())
            .unwrap()
            .connect()
            .await
        {
            Ok(ch) => return ch,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn health(ch: &Channel) -> ServingStatus {
    let resp = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: MIGRATION_TASK.into(),
        })
        .await
        .expect("health check answers");
    ServingStatus::try_from(resp.into_inner().status).unwrap()
}

async fn wait_health(ch: &Channel, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = health(ch).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create_request(name: &str, target: &str) -> pb::CreateMigrationTaskRequest {
    pb::CreateMigrationTaskRequest {
        dry_run: false,
        name: name.into(),
        source: Some(ClusterEndpoint {
            namesrv_addrs: "127.0.0.1:19876".into(),
            cluster_name: "ClusterA".into(),
            credentials: None,
        }),
        target_type: TargetType::V5 as i32,
        target: Some(ClusterEndpoint {
            namesrv_addrs: "127.0.0.1:29876".into(),
            cluster_name: target.into(),
            credentials: None,
        }),
        actor: "test".into(),
    }
}

fn change(
    task_id: &str,
    topic: &str,
    expected_revision: i64,
    force: bool,
) -> pb::StageChangeRequest {
    pb::StageChangeRequest {
        task_id: task_id.into(),
        topics: vec![pb::TopicRef {
            topic: topic.into(),
            expected_revision,
        }],
        force,
        actor: "test".into(),
        reason: String::new(),
        dry_run: false,
    }
}

async fn topic_stage(client: &mut Client, task_id: &str, topic: &str) -> pb::TopicStage {
    let resp = client
        .list_topic_stages(pb::ListTopicStagesRequest {
            task_id: task_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    resp.topics
        .into_iter()
        .find(|t| t.topic == topic)
        .expect("topic listed")
}

#[tokio::test]
async fn not_serving_while_etcd_is_down_then_recovers_by_itself() {
    let mut etcd = EtcdProcess::start().await.unwrap();
    etcd.stop().await.unwrap();
    let (mut service, addr) = spawn_service(&etcd.endpoint(), "/ferry-health/");
    let ch = channel(&addr).await;
    assert_eq!(health(&ch).await, ServingStatus::NotServing);

    let err = MigrationTaskServiceClient::new(ch.clone())
        .create_migration_task(create_request("t", "ClusterB"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let port = etcd.client_port().to_string();
    assert!(
        err.message().contains(&port),
        "error names the etcd address: {}",
        err.message()
    );
    assert!(
        service.try_status().is_none(),
        "the service must not exit while etcd is down"
    );

    etcd.restart().await.unwrap();
    wait_health(&ch, ServingStatus::Serving, Duration::from_secs(40)).await;
    let created = MigrationTaskServiceClient::new(ch.clone())
        .create_migration_task(create_request("t", "ClusterB"))
        .await
        .expect("works once etcd is back");
    assert!(
        created
            .into_inner()
            .task
            .unwrap()
            .task_id
            .starts_with("mt-")
    );

    let status = service.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
}

#[tokio::test]
async fn stage_changes_are_conditioned_audited_and_fenced() {
    let etcd = EtcdProcess::start().await.unwrap();
    let (_service, addr) = spawn_service(&etcd.endpoint(), "/ferry-stages/");
    let ch = channel(&addr).await;
    wait_health(&ch, ServingStatus::Serving, Duration::from_secs(30)).await;
    let mut client = Client::new(ch.clone());

    let task = client
        .create_migration_task(create_request("orders", "ClusterB"))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let task_id = task.task_id.clone();

    // One running task per target: the error names the holder.
    let err = client
        .create_migration_task(create_request("again", "ClusterB"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains(&task_id), "{}", err.message());

    // Bad names are refused with the rule.
    let err = client
        .add_topics(pb::AddTopicsRequest {
            dry_run: false,
            task_id: task_id.clone(),
            topics: vec!["bad topic".into()],
            actor: "test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("' '"), "{}", err.message());

    let added = client
        .add_topics(pb::AddTopicsRequest {
            dry_run: false,
            task_id: task_id.clone(),
            topics: vec!["TopicA".into(), "TopicB".into()],
            actor: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added.len(), 2);
    // Stages move only in step 4 (the step gates have their own tests): put the task there
    // through the same etcd the service uses.
    let store = ferry_store::EtcdStore::connect(
        &[etcd.endpoint()],
        ferry_store::EtcdOptions::default().with_prefix("/ferry-stages/"),
    )
    .await
    .unwrap();
    let current = ferry_store::MigrationStore::get_task(&store, &task_id)
        .await
        .unwrap();
    let mut at_step_4 = current.value.clone();
    at_step_4.step = ferry_store::TaskStep::GrayMigration;
    ferry_store::MigrationStore::update_task(&store, at_step_4, current.revision)
        .await
        .unwrap();

    // Without readiness proof, a change needs force; nothing is written.
    let before = topic_stage(&mut client, &task_id, "TopicA").await;
    let refused = client
        .advance_topics(pb::AdvanceTopicsRequest {
            change: Some(change(&task_id, "TopicA", 0, false)),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        !refused[0].changed && refused[0].error.contains("readiness"),
        "{refused:?}"
    );
    assert_eq!(
        topic_stage(&mut client, &task_id, "TopicA").await.revision,
        before.revision
    );

    // Rolling back INITIAL is refused.
    let refused = client
        .rollback_topics(pb::RollbackTopicsRequest {
            change: Some(change(&task_id, "TopicA", 0, true)),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        !refused[0].changed && refused[0].error.contains("INITIAL"),
        "{refused:?}"
    );

    // Two clients advance the same topic from the same revision: exactly one wins, every time.
    let rounds = 4; // INITIAL -> DONE
    for round in 0..rounds {
        let current = topic_stage(&mut client, &task_id, "TopicA").await;
        let (mut c1, mut c2) = (Client::new(ch.clone()), Client::new(ch.clone()));
        let r1 = change(&task_id, "TopicA", current.revision, true);
        let r2 = r1.clone();
        let (a, b) = tokio::join!(
            c1.advance_topics(pb::AdvanceTopicsRequest { change: Some(r1) }),
            c2.advance_topics(pb::AdvanceTopicsRequest { change: Some(r2) }),
        );
        let (a, b) = (
            a.unwrap().into_inner().results,
            b.unwrap().into_inner().results,
        );
        let winners = [a[0].changed, b[0].changed].iter().filter(|w| **w).count();
        assert_eq!(winners, 1, "round {round}: {a:?} {b:?}");
        let loser = if a[0].changed { &b[0] } else { &a[0] };
        assert!(loser.error.contains("changed concurrently"), "{loser:?}");
    }
    assert_eq!(
        topic_stage(&mut client, &task_id, "TopicA").await.stage,
        Stage::Done as i32
    );

    // Only INITIAL topics can be removed.
    let removed = client
        .remove_topics(pb::RemoveTopicsRequest {
            dry_run: false,
            task_id: task_id.clone(),
            topics: vec![pb::TopicRef {
                topic: "TopicA".into(),
                expected_revision: 0,
            }],
            actor: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed.is_empty() && removed.refused[0].error.contains("only INITIAL"));

    // Pause fences stage changes; resume lets them through again.
    client
        .pause_task(pb::PauseTaskRequest {
            dry_run: false,
            task_id: task_id.clone(),
            actor: "test".into(),
        })
        .await
        .unwrap();
    let err = client
        .advance_topics(pb::AdvanceTopicsRequest {
            change: Some(change(&task_id, "TopicB", 0, true)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("paused"), "{}", err.message());
    client
        .resume_task(pb::ResumeTaskRequest {
            dry_run: false,
            task_id: task_id.clone(),
            actor: "test".into(),
        })
        .await
        .unwrap();

    // Completion needs every topic DONE.
    let err = client
        .complete_task(pb::CompleteTaskRequest {
            dry_run: false,
            task_id: task_id.clone(),
            actor: "test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("TopicB (INITIAL)"),
        "{}",
        err.message()
    );
    for _ in 0..4 {
        let r = client
            .advance_topics(pb::AdvanceTopicsRequest {
                change: Some(change(&task_id, "TopicB", 0, true)),
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert!(r[0].changed, "{r:?}");
    }
    let done = client
        .complete_task(pb::CompleteTaskRequest {
            dry_run: false,
            task_id: task_id.clone(),
            actor: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(done.state, pb::MigrationTaskState::Completed as i32);
    assert_eq!(done.topics_per_stage.get("STAGE_DONE"), Some(&2));

    // Every committed change has exactly one audit record, in commit order, all forced.
    let audit = client
        .list_audit_records(pb::ListAuditRecordsRequest {
            task_id: task_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(audit.len(), 8);
    assert!(audit.windows(2).all(|w| w[0].revision < w[1].revision));
    assert!(audit.iter().all(|r| r.forced && r.actor == "test"));

    // The target is released: a new task may take it.
    client
        .create_migration_task(create_request("next", "ClusterB"))
        .await
        .expect("target released after completion");
}
