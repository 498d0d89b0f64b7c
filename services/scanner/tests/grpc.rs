//! The scanner's gRPC API against a real cluster: in process on the embedded store, and the
//! `ferry-scanner` binary on a real etcd.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, ConnectOutcome, Credentials, TargetType};
use ferry_api::scanner::v1 as pb;
use ferry_api::scanner::v1::scanner_service_client::ScannerServiceClient;
use ferry_api::service_names::SCANNER;
use ferry_core::TargetType as CoreTarget;
use ferry_metadata::{ExportLayout, Workbook, group_row, parse_export, read_xlsx, topic_row};
use ferry_remoting::body::TopicConfig;
use ferry_remoting::{BrokerAdmin, ClientConfig, RemotingClient};
use ferry_scanner::{ScanEngine, Scanner, SnapshotSlot};
use ferry_server::GrpcServer;
use ferry_store::{EmbeddedStore, SnapshotStore};
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use support::*;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

type Client = ScannerServiceClient<Channel>;

const SECRET: &str = "never-show-this-secret";

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

/// A scanner on a free port over an embedded store in `dir`; stops when the token drops.
async fn serve(dir: &std::path::Path) -> (Client, tokio_util::sync::DropGuard) {
    let store: Arc<dyn SnapshotStore> = Arc::new(EmbeddedStore::open(dir).await.unwrap());
    let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    server.add_service(
        Scanner::new(ScanEngine::default(), SnapshotSlot::ready(store)).into_service(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { server.serve(s.cancelled_owned()).await });
    let ch = channel(&format!("http://{addr}")).await;
    (ScannerServiceClient::new(ch), stop.drop_guard())
}

fn endpoint(namesrv: &str, cluster: &str) -> ClusterEndpoint {
    ClusterEndpoint {
        namesrv_addrs: namesrv.into(),
        cluster_name: cluster.into(),
        credentials: Some(Credentials {
            access_key: "ak".into(),
            secret_key: SECRET.into(),
        }),
    }
}

async fn create_topics(cluster: &RocketMqCluster, names: &[String]) {
    let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig::default()));
    let topics: Vec<TopicConfig> = names
        .iter()
        .map(|n| TopicConfig {
            topic_name: n.clone(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            ..Default::default()
        })
        .collect();
    admin
        .create_topics(&cluster.broker_addr(), &topics)
        .await
        .unwrap();
}

async fn export(client: &mut Client, req: pb::ExportMetadataRequest) -> (String, Vec<u8>) {
    let mut stream = client.export_metadata(req).await.unwrap().into_inner();
    let mut name = String::new();
    let mut bytes = Vec::new();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if n == 0 {
            name = chunk.file_name.clone();
        }
        n += 1;
        bytes.extend(chunk.chunk);
    }
    (name, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_store_list_page_diff_and_export_over_grpc() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let mut topics: Vec<String> = (0..12).map(|i| format!("GrpcTopic{i:02}")).collect();
    create_topics(&cluster, &topics).await;
    ferry_testkit::rocketmq::create_group_at(&cluster.broker_addr(), "GID_grpc")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut client, _stop) = serve(dir.path()).await;

    let check = client
        .check_connection(pb::CheckConnectionRequest {
            source: Some(endpoint(&cluster.namesrv_addr(), "ClusterA")),
            target: None,
            timeout_ms: 3000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        check.outcome,
        ConnectOutcome::Ok as i32,
        "{}",
        check.message
    );
    assert!(!format!("{check:?}").contains(SECRET));

    let scan_with = |client: &mut Client, dry_run: bool| {
        let mut client = client.clone();
        let ns = cluster.namesrv_addr();
        async move {
            client
                .scan(pb::ScanRequest {
                    source: Some(endpoint(&ns, "ClusterA")),
                    source_id: String::new(),
                    timeout_ms: 0,
                    dry_run,
                })
                .await
                .unwrap()
                .into_inner()
                .snapshot
                .unwrap()
        }
    };
    let scan = |client: &mut Client| scan_with(client, false);

    // A dry run scans and answers the summary, but stores no snapshot.
    let dry = scan_with(&mut client, true).await;
    assert!(dry.snapshot_id.is_empty(), "{dry:?}");
    assert_eq!(dry.source_id, "ClusterA");
    assert_eq!(dry.user_topic_count, 12);
    assert_eq!(dry.user_group_count, 1);
    assert!(dry.system_topic_count > 0 && !dry.partial);
    assert_eq!(dry.clusters[0].brokers[0].name, "broker-a");
    assert!(!format!("{dry:?}").contains(SECRET));
    let listed = client
        .list_snapshots(pb::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.snapshots.is_empty(), "{listed:?}");

    let s1 = scan(&mut client).await;
    assert_eq!(s1.source_id, "ClusterA");
    assert_eq!(s1.user_topic_count, 12);
    assert_eq!(s1.user_group_count, 1);
    assert!(!s1.partial && s1.missing.is_empty(), "{:?}", s1.missing);
    assert!(s1.system_topic_count > 0);
    assert!(!format!("{s1:?}").contains(SECRET));

    create_topics(&cluster, &["LateTopic".to_string()]).await;
    topics.push("LateTopic".into());
    let s2 = scan(&mut client).await;
    assert_eq!(s2.user_topic_count, 13);

    let diff = client
        .diff_snapshots(pb::DiffSnapshotsRequest {
            base_snapshot_id: s1.snapshot_id.clone(),
            head_snapshot_id: s2.snapshot_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(diff.topics_added, ["LateTopic"]);
    assert!(diff.topics_removed.is_empty() && diff.groups_added.is_empty());

    let listed = client
        .list_snapshots(pb::ListSnapshotsRequest {
            source_id: "ClusterA".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.snapshots[0].snapshot_id, s2.snapshot_id);
    let next = client
        .list_snapshots(pb::ListSnapshotsRequest {
            source_id: "ClusterA".into(),
            page_size: 1,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.snapshots[0].snapshot_id, s1.snapshot_id);
    assert!(next.next_page_token.is_empty());

    // Page through the user topics 5 at a time.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = client
            .list_snapshot_topics(pb::ListSnapshotTopicsRequest {
                snapshot_id: s2.snapshot_id.clone(),
                page_size: 5,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.topics.len() <= 5);
        seen.extend(page.topics.iter().map(|t| t.name.clone()));
        for t in &page.topics {
            assert_eq!(t.topic_class, pb::TopicClass::User as i32);
            assert_eq!((t.read_queue_nums, t.total_read_queue_nums), (4, 4));
            assert_eq!(t.brokers, ["broker-a"]);
        }
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    topics.sort();
    assert_eq!(seen, topics);
    let system = client
        .list_snapshot_topics(pb::ListSnapshotTopicsRequest {
            snapshot_id: s2.snapshot_id.clone(),
            classes: vec![pb::TopicClass::System as i32],
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!system.topics.is_empty());
    assert!(
        system
            .topics
            .iter()
            .all(|t| !t.name.starts_with("GrpcTopic"))
    );
    let groups = client
        .list_snapshot_groups(pb::ListSnapshotGroupsRequest {
            snapshot_id: s2.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["GID_grpc"]);

    // JSON export: mqadmin layout, what the importer's parser reads back.
    let (name, json) = export(
        &mut client,
        pb::ExportMetadataRequest {
            snapshot_id: s2.snapshot_id.clone(),
            cluster_name: "ClusterA".into(),
            format: pb::ExportFormat::Json as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(name, "rocketmq-metadata-export.json");
    let parsed = parse_export(&name, &json).unwrap();
    assert_eq!(parsed.layout, ExportLayout::Metadata);
    let exported: BTreeSet<String> = parsed.export.topic_config_table.keys().cloned().collect();
    assert_eq!(exported, topics.iter().cloned().collect());
    assert_eq!(
        parsed
            .export
            .subscription_group_table
            .keys()
            .collect::<Vec<_>>(),
        ["GID_grpc"]
    );
    let text = String::from_utf8(json).unwrap();
    assert!(text.starts_with("{\n\t\"exportTime\":"), "{}", &text[..40]);

    // XLSX export: written, read back, equal to the inventory's rows.
    for (template, target) in [
        (TargetType::V4, CoreTarget::V4),
        (TargetType::V5, CoreTarget::V5),
    ] {
        let (name, bytes) = export(
            &mut client,
            pb::ExportMetadataRequest {
                snapshot_id: s2.snapshot_id.clone(),
                cluster_name: String::new(),
                format: pb::ExportFormat::Xlsx as i32,
                template: template as i32,
                include_retry_dlq: false,
            },
        )
        .await;
        assert_eq!(name, "rocketmq-metadata-export.xlsx");
        let book = read_xlsx(&name, &bytes).unwrap();
        let expected = Workbook {
            target,
            topics: parsed
                .export
                .topic_config_table
                .values()
                .map(|t| topic_row(t, target))
                .collect(),
            groups: parsed
                .export
                .subscription_group_table
                .values()
                .map(|g| group_row(g, target))
                .collect(),
        };
        assert_eq!(book, expected);
    }
    let err = client
        .export_metadata(pb::ExportMetadataRequest {
            snapshot_id: s2.snapshot_id.clone(),
            format: pb::ExportFormat::Xlsx as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let template = client
        .get_template(pb::GetTemplateRequest {
            target_type: TargetType::V5 as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(template.file_name, "ferry-template-5.x.xlsx");
    assert_eq!(
        read_xlsx("t.xlsx", &template.content).unwrap(),
        Workbook::empty(CoreTarget::V5)
    );

    let got = client
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: s1.snapshot_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(got.user_topic_count, 12);
    assert_eq!(got.clusters[0].brokers[0].name, "broker-a");
    let missing = client
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: "0000000000000-00000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let dead = dead_addr();
    let err = client
        .scan(pb::ScanRequest {
            source: Some(endpoint(&dead, "")),
            source_id: "x".into(),
            timeout_ms: 1000,
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains(&dead), "{}", err.message());
    assert!(!err.message().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_binary_serves_once_etcd_is_there_and_stores_snapshots_in_it() {
    init_tracing();
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    create_topics(&cluster, &["EtcdTopic".to_string()]).await;
    let mut etcd = EtcdProcess::start().await.unwrap();
    etcd.stop().await.unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let _service = ServiceProcess::spawn(
        "scanner",
        env!("CARGO_BIN_EXE_ferry-scanner"),
        &[
            "--listen",
            &listen,
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--etcd-prefix",
            "/ferry-scan/",
        ],
        &[("FERRY_LOG", "info,ferry=debug")],
    )
    .expect("spawn ferry-scanner");
    let ch = channel(&format!("http://{listen}")).await;
    let health = || {
        let ch = ch.clone();
        async move {
            let resp = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: SCANNER.into(),
                })
                .await
                .unwrap();
            ServingStatus::try_from(resp.into_inner().status).unwrap()
        }
    };
    assert_eq!(health().await, ServingStatus::NotServing);
    let mut client = ScannerServiceClient::new(ch.clone());
    let request = pb::ScanRequest {
        source: Some(endpoint(&cluster.namesrv_addr(), "ClusterA")),
        source_id: "prod-a".into(),
        timeout_ms: 0,
        dry_run: false,
    };
    let err = client.scan(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("etcd"), "{}", err.message());
    // A dry run stores nothing, so it does not need the store.
    let dry = client
        .scan(pb::ScanRequest {
            dry_run: true,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(
        (
            dry.snapshot_id.as_str(),
            dry.source_id.as_str(),
            dry.user_topic_count
        ),
        ("", "prod-a", 1)
    );
    // Connection checks do not need the store.
    let check = client
        .check_connection(pb::CheckConnectionRequest {
            source: request.source.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        check.outcome,
        ConnectOutcome::Ok as i32,
        "{}",
        check.message
    );

    etcd.restart().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while health().await != ServingStatus::Serving {
        assert!(
            Instant::now() < deadline,
            "never SERVING after etcd came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snap = client
        .scan(request)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(snap.source_id, "prod-a");
    assert_eq!(snap.user_topic_count, 1);
    let mut etcd_client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let header = etcd_client
        .get(
            format!("/ferry-scan/snapshots/prod-a/{}", snap.snapshot_id),
            None,
        )
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(header.kvs()[0].value()).unwrap();
    assert_eq!(value["schema_version"], 1);
    assert!(!String::from_utf8_lossy(header.kvs()[0].value()).contains(SECRET));
    let listed = client
        .list_snapshots(pb::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.snapshots.len(), 1);
}
