//! `scripts/bench import`: how long an import task of 1 000 topics and 1 000 groups takes
//! through the service, into a real, empty target broker.
//!
//! Setup (not timed): a real etcd, the `ferry-metadata-sync` binary on it, the export JSON
//! built in memory, and a fresh NameServer + broker (ferry-testkit) per run. Timed: from
//! `CreateImportTask` (upload, parse, plan, store the task and its items) until
//! `GetImportTask` reports the task finished (pre-check, batches, read-backs, per-item results
//! in etcd). Reported: the median of a few batch runs, and one run forced through the
//! one-by-one path (one UPDATE_AND_CREATE_TOPIC / _SUBSCRIPTIONGROUP per item).
//!
//! Prints, as its last line, one JSON object:
//! `{"bench":"import","topics":…,"groups":…,"seconds":…,"one_by_one_seconds":…}`.
//! Environment: `FERRY_BENCH_TOPICS`, `FERRY_BENCH_GROUPS` (default 1 000 each),
//! `FERRY_BENCH_RUNS` (batch runs, default 3), `FERRY_BENCH_LOG` (the service's log filter;
//! its log is then copied to /tmp/ferry-bench-import.log).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, TaskStatus};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::import_task_service_client::ImportTaskServiceClient;
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use tonic::transport::Channel;

type Client = ImportTaskServiceClient<Channel>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn channel(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Channel::from_shared(addr.to_string())
            .expect("address")
            .connect()
            .await
        {
            Ok(ch) => return ch,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn export(topics: usize, groups: usize) -> Vec<u8> {
    let mut export = ferry_metadata::MetadataExport {
        export_time: 1,
        ..Default::default()
    };
    for i in 0..topics {
        let name = format!("BenchTopic{i:05}");
        export.topic_config_table.insert(
            name.clone(),
            TopicConfig {
                topic_name: name,
                read_queue_nums: 8,
                write_queue_nums: 8,
                ..Default::default()
            },
        );
    }
    for i in 0..groups {
        let name = format!("BenchGroup{i:05}");
        export.subscription_group_table.insert(
            name.clone(),
            SubscriptionGroupConfig {
                group_name: name,
                ..Default::default()
            },
        );
    }
    export.to_json()
}

/// One timed import into a fresh cluster; returns seconds.
async fn run_once(client: &mut Client, file: &[u8], mode: pb::CreateMode, expect: i64) -> f64 {
    let cluster = RocketMqCluster::start(ClusterSpec::cluster_b())
        .await
        .expect("RocketMQ peers (scripts/install-peers)");
    let request = pb::CreateImportTaskRequest {
        r#type: pb::ImportTaskType::ClusterMigration as i32,
        target: Some(ClusterEndpoint {
            namesrv_addrs: cluster.namesrv_addr(),
            cluster_name: cluster.cluster_name().into(),
            credentials: None,
        }),
        source: Some(pb::create_import_task_request::Source::ExportJson(
            file.to_vec(),
        )),
        create_mode: mode as i32,
        file_name: "bench.json".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let task = client
        .create_import_task(request)
        .await
        .expect("CreateImportTask")
        .into_inner()
        .task
        .expect("task");
    let deadline = started + Duration::from_secs(300);
    let done = loop {
        let t = client
            .get_import_task(pb::GetImportTaskRequest {
                task_id: task.task_id.clone(),
            })
            .await
            .expect("GetImportTask")
            .into_inner()
            .task
            .expect("task");
        if matches!(
            TaskStatus::try_from(t.status),
            Ok(TaskStatus::Succeeded | TaskStatus::PartiallyFailed | TaskStatus::Failed)
        ) {
            break t;
        }
        assert!(Instant::now() < deadline, "import did not finish: {t:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let progress = done.progress.unwrap_or_default();
    assert_eq!(
        (TaskStatus::try_from(done.status), progress.success),
        (Ok(TaskStatus::Succeeded), expect),
        "every item must be created: {done:?}"
    );
    eprintln!("bench import: {mode:?} run took {seconds:.3} s");
    seconds
}

#[tokio::main]
async fn main() {
    let topics_n = env_usize("FERRY_BENCH_TOPICS", 1000);
    let groups_n = env_usize("FERRY_BENCH_GROUPS", 1000);
    let runs = env_usize("FERRY_BENCH_RUNS", 3).clamp(1, 20);

    eprintln!("bench import: starting etcd and ferry-metadata-sync");
    let etcd = EtcdProcess::start().await.expect("etcd on PATH");
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::env::var("FERRY_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let service = ServiceProcess::spawn(
        "metadata-sync",
        env!("CARGO_BIN_EXE_ferry-metadata-sync"),
        &["--listen", &listen, "--etcd-endpoints", &etcd.endpoint()],
        &[("FERRY_LOG", log.as_str()), ("FERRY_LOG_FORMAT", "json")],
    )
    .expect("spawn ferry-metadata-sync");
    let mut client =
        Client::new(channel(&format!("http://{listen}")).await).max_encoding_message_size(64 << 20);
    let file = export(topics_n, groups_n);
    let expect = (topics_n + groups_n) as i64;
    eprintln!(
        "bench import: {topics_n} topics + {groups_n} groups ({} KiB of export JSON), {runs} batch runs",
        file.len() / 1024
    );
    let mut batch = Vec::with_capacity(runs);
    for _ in 0..runs {
        batch.push(run_once(&mut client, &file, pb::CreateMode::Unspecified, expect).await);
    }
    batch.sort_by(f64::total_cmp);
    let median = batch[batch.len() / 2];
    let one_by_one = run_once(&mut client, &file, pb::CreateMode::OneByOne, expect).await;
    if std::env::var_os("FERRY_BENCH_LOG").is_some() {
        // Keep the service's log for reading after the bench.
        let _ = std::fs::copy(service.log_path(), "/tmp/ferry-bench-import.log");
        eprintln!("bench import: service log copied to /tmp/ferry-bench-import.log");
    }
    println!(
        "{{\"bench\":\"import\",\"topics\":{topics_n},\"groups\":{groups_n},\"seconds\":{median:.3},\"one_by_one_seconds\":{one_by_one:.3}}}"
    );
}
