//! `scripts/bench router-memory`: the peak memory of one `ferry-router` process holding
//! 10 000 topics in its route cache and 10 000 distinct clients in its presence table.
//!
//! Upstream: the REAL source NameServer (ferry-testkit cluster A; cluster B is the
//! target). Setup: `FERRY_BENCH_TOPICS` topics (default 10 000) created on the source
//! broker with the batch admin call (`BrokerAdmin::create_topics`) and added to a task
//! at INITIAL; the router binary with its default flags.
//!
//! Load: `FERRY_BENCH_CLIENTS` (default 10 000) short connections from 127.0.0.1, each
//! with its own source port (a distinct client address for the router's presence), 64 at
//! a time; client `i` asks one 105 for topic `i % topics` (so every topic is fetched from
//! the source and cached) and closes. Every answer must be SUCCESS; each is capped at 5 s.
//! Then the router's peak RSS (`VmHWM` in `/proc/<pid>/status`) is read.
//!
//! Prints, as its last line, one JSON object:
//! `{"bench":"router-memory","topics":…,"clients":…,"rss_mib":…}`.

#![allow(clippy::print_stdout)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use futures::StreamExt;
use support::*;

const CONCURRENCY: usize = 64;

#[tokio::main]
async fn main() {
    let topics_n = env_usize("FERRY_BENCH_TOPICS", 10_000).max(1);
    let clients_n = env_usize("FERRY_BENCH_CLIENTS", 10_000).clamp(1, 25_000);

    eprintln!("bench router-memory: starting etcd and two RocketMQ clusters");
    let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
    let etcd = etcd.expect("etcd on PATH");
    let clusters = clusters.expect("RocketMQ peers (scripts/install-peers)");
    let topics: Vec<String> = (0..topics_n).map(|i| format!("BenchMem{i:05}")).collect();
    let setup = Instant::now();
    eprintln!("bench router-memory: creating {topics_n} topics on the source (not timed)");
    create_topics(
        &clusters.a.broker_addr(),
        &clusters.a.namesrv_addr(),
        &topics,
    )
    .await;
    let prefix = "/ferry-bench-router-memory/";
    let store = store(&etcd.endpoint(), prefix).await;
    create_task(
        &store,
        "bench",
        &clusters.a.namesrv_addr(),
        &clusters.b.namesrv_addr(),
        &topics,
    )
    .await;
    eprintln!(
        "bench router-memory: setup took {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let router = RouterProc::start("bench", &etcd.endpoint(), prefix, &[]).await;
    let pid = router.pid();
    router.wait_serving(&topics[0]).await;
    eprintln!(
        "bench router-memory: router started, peak RSS {:.1} MiB",
        peak_rss_mib(pid)
    );

    let topics = Arc::new(topics);
    let addr = router.namesrv.clone();
    let started = Instant::now();
    let ports: Vec<u16> = futures::stream::iter(0..clients_n)
        .map(|i| {
            let (topics, addr) = (topics.clone(), addr.clone());
            async move {
                let mut conn = Conn::connect(&addr).await;
                let port = conn.local_port();
                let topic = &topics[i % topics.len()];
                let resp = conn.route(topic).await;
                assert_eq!(resp.code, 0, "105 {topic}: {:?}", resp.remark);
                port
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        clients_n,
        "client source ports were reused; clients not distinct"
    );
    eprintln!(
        "bench router-memory: {clients_n} clients asked {} topics in {:?}",
        topics_n.min(clients_n),
        started.elapsed()
    );
    // Let anything deferred (presence, cache bookkeeping) settle before reading the peak.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = peak_rss_mib(pid);
    eprintln!("bench router-memory: router peak RSS {rss:.1} MiB");
    drop(router);
    drop(clusters);
    drop(etcd);
    println!(
        "{}",
        json_line(&[
            ("bench", "router-memory".into()),
            ("topics", topics_n.min(clients_n).into()),
            ("clients", clients_n.into()),
            ("rss_mib", ((rss * 10.0).round() / 10.0).into()),
        ])
    );
}
