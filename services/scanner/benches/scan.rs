//! `scripts/bench scan`: how long the scanner service takes to scan a source with 10 000
//! topics and 10 000 groups, and its peak memory.
//!
//! Setup (not timed): a real NameServer + broker (ferry-testkit), topics and groups created
//! with the batch admin calls (UPDATE_AND_CREATE_TOPIC_LIST 18, ..._SUBSCRIPTIONGROUP_LIST
//! 225), a real etcd, and the `ferry-scanner` binary on it. Timed: `Scan` over gRPC, which
//! reads the broker's tables, classifies, and stores the snapshot in etcd. Reported: the
//! median of a few scans, and the scanner process's peak RSS (`VmHWM`) afterwards.
//!
//! Prints, as its last line, one JSON object:
//! `{"bench":"scan","topics":…,"groups":…,"seconds":…,"rss_mib":…}`.
//! Environment: `FERRY_BENCH_TOPICS`, `FERRY_BENCH_GROUPS` (default 10 000 each),
//! `FERRY_BENCH_RUNS` (default 3).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use ferry_api::common::v1::ClusterEndpoint;
use ferry_api::scanner::v1 as pb;
use ferry_api::scanner::v1::scanner_service_client::ScannerServiceClient;
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::{BrokerAdmin, ClientConfig, RemotingClient};
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use tonic::transport::Channel;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
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

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let topics_n = env_usize("FERRY_BENCH_TOPICS", 10_000);
    let groups_n = env_usize("FERRY_BENCH_GROUPS", 10_000);
    let runs = env_usize("FERRY_BENCH_RUNS", 3).clamp(1, 20);

    eprintln!("bench scan: starting a RocketMQ cluster and etcd");
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .expect("RocketMQ peers (scripts/install-peers)");
    let etcd = EtcdProcess::start().await.expect("etcd on PATH");

    eprintln!("bench scan: creating {topics_n} topics and {groups_n} groups (not timed)");
    let setup = Instant::now();
    let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig {
        request_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    }));
    let topics: Vec<TopicConfig> = (0..topics_n)
        .map(|i| TopicConfig {
            topic_name: format!("BenchTopic{i:05}"),
            read_queue_nums: 8,
            write_queue_nums: 8,
            ..Default::default()
        })
        .collect();
    admin
        .create_topics(&cluster.broker_addr(), &topics)
        .await
        .expect("create topics");
    let groups: Vec<SubscriptionGroupConfig> = (0..groups_n)
        .map(|i| SubscriptionGroupConfig {
            group_name: format!("BenchGroup{i:05}"),
            ..Default::default()
        })
        .collect();
    admin
        .create_groups(&cluster.broker_addr(), &groups)
        .await
        .expect("create groups");
    drop((topics, groups, admin));
    eprintln!(
        "bench scan: setup took {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let listen = format!("127.0.0.1:{}", free_port());
    let scanner = ServiceProcess::spawn(
        "scanner",
        env!("CARGO_BIN_EXE_ferry-scanner"),
        &[
            "--listen",
            &listen,
            "--etcd-endpoints",
            &etcd.endpoint(),
            "--keep-snapshots",
            "2",
        ],
        &[("FERRY_LOG", "warn")],
    )
    .expect("spawn ferry-scanner");
    let pid = scanner.pid().expect("scanner pid");
    let mut client = ScannerServiceClient::new(channel(&format!("http://{listen}")).await);
    let request = pb::ScanRequest {
        source: Some(ClusterEndpoint {
            namesrv_addrs: cluster.namesrv_addr(),
            cluster_name: "ClusterA".into(),
            credentials: None,
        }),
        source_id: "bench".into(),
        timeout_ms: 60_000,
        dry_run: false,
    };
    // The store connects in the background: retry the first scan until it is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut times = Vec::new();
    let mut last = None;
    while times.len() < runs {
        let started = Instant::now();
        match client.scan(request.clone()).await {
            Ok(resp) => {
                times.push(started.elapsed().as_secs_f64());
                last = resp.into_inner().snapshot;
            }
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("scan failed: {s}"),
        }
    }
    let snapshot = last.expect("a snapshot");
    assert!(
        !snapshot.partial,
        "the bench scan was partial: {:?}",
        snapshot.missing
    );
    let rss = peak_rss_mib(pid);
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!("bench scan: {runs} scans, seconds {times:?}, peak RSS {rss:.1} MiB");
    println!(
        "{}",
        serde_json::json!({
            "bench": "scan",
            "topics": snapshot.user_topic_count,
            "groups": snapshot.user_group_count,
            "seconds": (median * 1000.0).round() / 1000.0,
            "rss_mib": (rss * 10.0).round() / 10.0,
        })
    );
}
