//! A real `ferry standalone` (with an in-process router and a migration task that has a
//! topic) scraped over HTTP: every metric `docs/metrics.md` lists must be in the scrape with
//! its documented type and at least one sample, and the calls this test makes must show up
//! as the series they should be.
//!
//! The task's clusters are loopback ports where nothing listens, so the readiness scan, the
//! router's upstream lookups and the scanner's connection check all go through the remoting
//! client and fail fast; no RocketMQ is needed.

#[path = "support/metrics_doc.rs"]
mod metrics_doc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_api::scanner::v1::CheckConnectionRequest;
use ferry_api::scanner::v1::scanner_service_client::ScannerServiceClient;
use ferry_api::service_names;
use ferry_remoting::headers::GetRouteInfoRequestHeader;
use ferry_remoting::{ClientConfig, RemotingClient, RemotingCommand, RequestCode};
use ferry_testkit::{ServiceProcess, free_port};
use metrics_doc::Scrape;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// `ferry standalone` on a free gRPC port over `data_dir`, with `extra` flags.
async fn start(data_dir: &str, extra: &[&str]) -> (ServiceProcess, String) {
    let mut args = vec![
        "standalone",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--ready-file",
        "ready",
    ];
    args.extend_from_slice(extra);
    let mut process = ServiceProcess::spawn("standalone", FERRY, &args, &[]).unwrap();
    let addr = process
        .wait_for_file("ready", Duration::from_secs(30))
        .await
        .unwrap();
    (process, format!("http://{addr}"))
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn wait_serving(ch: &Channel) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = HealthClient::new(ch.clone())
            .check(HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status)
            .ok();
        if status == Some(ServingStatus::Serving as i32) {
            return;
        }
        assert!(Instant::now() < deadline, "not SERVING: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback address where nothing listens.
fn nothing_listens() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Creates a task whose clusters are unreachable, with the topic `Orders`; returns its id.
async fn create_task(ch: &Channel) -> String {
    let mut client = MigrationTaskServiceClient::new(ch.clone());
    let task = client
        .create_migration_task(pb::CreateMigrationTaskRequest {
            dry_run: false,
            name: "scrape".into(),
            source: Some(ClusterEndpoint {
                namesrv_addrs: nothing_listens(),
                cluster_name: "ClusterA".into(),
                credentials: None,
            }),
            target_type: TargetType::V4 as i32,
            target: Some(ClusterEndpoint {
                namesrv_addrs: nothing_listens(),
                cluster_name: "ClusterB".into(),
                credentials: None,
            }),
            actor: "metrics test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    client
        .add_topics(pb::AddTopicsRequest {
            dry_run: false,
            task_id: task.task_id.clone(),
            topics: vec!["Orders".into()],
            actor: "metrics test".into(),
        })
        .await
        .unwrap();
    task.task_id
}

/// Scrapes until `problems` finds none (families appear with their first series, the
/// readiness scan and the health mirror run in the background), or fails listing them.
async fn scrape_until(addr: SocketAddr, problems: impl Fn(&Scrape) -> Vec<String>) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let scrape = match metrics_doc::scrape(addr).await {
            Ok(body) => Scrape::parse(&body),
            Err(e) if Instant::now() < deadline => {
                eprintln!("scrape of {addr} failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("cannot scrape {addr}: {e}"),
        };
        let found = problems(&scrape);
        if found.is_empty() {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape is not as expected:\n  {}\n\nscrape:\n{}",
            found.join("\n  "),
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn standalone_exports_every_documented_metric() {
    let documented = metrics_doc::documented();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();

    // The router of a standalone process serves the task named at start, so create it first.
    let (mut first, addr) = start(&data_dir, &[]).await;
    let task_id = create_task(&channel(&addr).await).await;
    assert!(
        first
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );

    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let namesrv = format!("127.0.0.1:{}", free_port());
    let (mut process, addr) = start(
        &data_dir,
        &[
            "--router-task-id",
            &task_id,
            "--namesrv-listen",
            &namesrv,
            "--metrics-addr",
            &metrics.to_string(),
        ],
    )
    .await;
    let ch = channel(&addr).await;
    wait_serving(&ch).await;

    // gRPC: a list call, a failing call, a connection check that reaches for a NameServer.
    let mut tasks = MigrationTaskServiceClient::new(ch.clone());
    let listed = tasks
        .list_migration_tasks(pb::ListMigrationTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks.len(), 1);
    let missing = tasks
        .get_migration_task(pb::GetMigrationTaskRequest {
            task_id: "mt-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    ScannerServiceClient::new(ch.clone())
        .check_connection(CheckConnectionRequest {
            source: Some(ClusterEndpoint {
                namesrv_addrs: nothing_listens(),
                cluster_name: String::new(),
                credentials: None,
            }),
            target: None,
            timeout_ms: 1000,
        })
        .await
        .unwrap();

    // The router, over the NameServer protocol: a route lookup it cannot answer (the
    // task's clusters are down and nothing is cached).
    let remoting = RemotingClient::new(ClientConfig::default());
    let header = GetRouteInfoRequestHeader {
        topic: "Orders".into(),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match remoting
            .invoke(
                &namesrv,
                RemotingCommand::request_with_header(RequestCode::GET_ROUTEINFO_BY_TOPIC, &header),
                None,
            )
            .await
        {
            Ok(answer) => break answer,
            Err(e) if Instant::now() < deadline => {
                eprintln!("router not answering yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("router at {namesrv} does not answer: {e}"),
        }
    };
    assert_ne!(
        answer.code, 0,
        "no cluster is up: the route cannot be known"
    );

    let mt = service_names::MIGRATION_TASK;
    let router_service = format!("service=\"{}\"", service_names::ROUTER);
    let task_stage = format!("task=\"{task_id}\",topic=\"Orders\",stage=\"INITIAL\"");
    scrape_until(metrics, |scrape| {
        // Every documented metric, with its type and a sample.
        let mut problems: Vec<String> = documented
            .iter()
            .filter_map(|d| scrape.check(d).map(|p| format!("docs/metrics.md: {p}")))
            .collect();
        // The calls above, as the series they must be.
        let mut expect = |ok: bool, what: &str| {
            if !ok {
                problems.push(what.to_owned());
            }
        };
        let grpc = |service: &str, method: &str, code: &str| {
            scrape.sum(
                "ferry_grpc_requests_total",
                &[
                    &format!("service=\"{service}\""),
                    &format!("method=\"{method}\""),
                    &format!("code=\"{code}\""),
                ],
            )
        };
        expect(
            grpc("grpc.health.v1.Health", "Check", "OK") >= 1.0,
            "health Check counted OK",
        );
        expect(
            grpc(mt, "ListMigrationTasks", "OK") >= 1.0,
            "ListMigrationTasks counted OK",
        );
        expect(
            grpc(mt, "GetMigrationTask", "NOT_FOUND") >= 1.0,
            "GetMigrationTask counted NOT_FOUND",
        );
        expect(
            grpc(service_names::SCANNER, "CheckConnection", "OK") >= 1.0,
            "CheckConnection counted OK",
        );
        expect(
            scrape.sum(
                "ferry_grpc_request_duration_seconds_count",
                &[&format!("service=\"{mt}\""), "method=\"GetMigrationTask\""],
            ) >= 1.0,
            "GetMigrationTask observed in the latency histogram",
        );
        for service in ["server", service_names::SCANNER, mt] {
            expect(
                scrape.value("ferry_grpc_serving", &format!("service=\"{service}\"")) == Some(1.0),
                &format!("ferry_grpc_serving{{service=\"{service}\"}} 1"),
            );
        }
        // Degraded (no cluster reachable) or SERVING: the series is there either way.
        expect(
            scrape
                .value("ferry_grpc_serving", &router_service)
                .is_some(),
            "ferry_grpc_serving of the router service",
        );
        expect(
            scrape.sum(
                "ferry_remoting_client_requests_total",
                &["code=\"GET_BROKER_CLUSTER_INFO\"", "outcome=\"refused\""],
            ) >= 1.0,
            "the connection check's request to a closed port counted as refused",
        );
        expect(
            scrape.sum("ferry_router_requests_total", &["code=\"105\""]) >= 1.0,
            "the route lookup counted by the router",
        );
        expect(
            scrape.value("ferry_topic_stage", &task_stage) == Some(1.0),
            "the task's topic at INITIAL in ferry_topic_stage",
        );
        problems
    })
    .await;

    assert!(
        process
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );
}
