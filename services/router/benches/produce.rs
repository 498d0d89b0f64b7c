//! `scripts/bench produce`: producer throughput with `namesrvAddr` = a `ferry-router` versus
//! = the source NameServer, in the same run (cargo feature `rocketmq-client`).
//!
//! Setup (not timed): real etcd and two real RocketMQ clusters (ferry-testkit), one topic
//! (8 queues) on both clusters in a task at INITIAL (the router answers the source's
//! route as-is, so both sides write to the same source broker), the router binary with its
//! default flags. Producers are real `rocketmq-client-rust` producers
//! (`ferry_testkit::traffic::TrafficProducer`); each first sends 20 untimed messages
//! (route fetched, connections open).
//!
//! Timed, in rounds alternating direct and router (`FERRY_BENCH_ROUNDS`, default 2):
//! `FERRY_BENCH_PRODUCERS` producers (default 4) concurrently, each sending its share of
//! `FERRY_BENCH_MESSAGES` (default 4 000 per round and side) synchronously (next send after
//! SEND_OK), bodies of `FERRY_BENCH_MESSAGE_BYTES` (default 1 024); every round capped at
//! 120 s. Rate = acknowledged messages over the summed round times.
//!
//! Prints, as its last line, one JSON object:
//! `{"bench":"produce","ratio":…,"router_msgs_per_s":…,"direct_msgs_per_s":…}`
//! (ratio = router_msgs_per_s / direct_msgs_per_s).

#![allow(clippy::print_stdout)]
// The rocketmq-client futures are deep (as in tests/traffic.rs).
#![recursion_limit = "256"]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use ferry_testkit::traffic::{ClientOptions, TrafficProducer};
use support::*;

const TOPIC: &str = "BenchProduce";
const ROUND_CAP: Duration = Duration::from_secs(120);
const WARMUP: usize = 20;

async fn producers(addr: &str, side: &str, n: usize, body: &[u8]) -> Vec<Arc<TrafficProducer>> {
    let mut out = Vec::with_capacity(n);
    for p in 0..n {
        let producer =
            TrafficProducer::start(addr, &format!("bench-{side}-{p}"), ClientOptions::default())
                .await
                .expect("start producer");
        for i in 0..WARMUP {
            producer
                .send_keyed(TOPIC, &format!("warm-{side}-{p}-{i}"), body)
                .await
                .expect("warm-up send");
        }
        out.push(Arc::new(producer));
    }
    out
}

/// One round: every producer sends `per_producer` messages; (acknowledged, elapsed).
async fn round(
    side: &str,
    r: usize,
    producers: &[Arc<TrafficProducer>],
    per_producer: usize,
    body: Arc<Vec<u8>>,
) -> (usize, Duration) {
    let started = Instant::now();
    let deadline = started + ROUND_CAP;
    let mut tasks = Vec::new();
    for (p, producer) in producers.iter().enumerate() {
        let (producer, body, side) = (producer.clone(), body.clone(), side.to_string());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..per_producer {
                if Instant::now() >= deadline {
                    break;
                }
                if producer
                    .send_keyed(TOPIC, &format!("{side}-{r}-{p}-{i}"), &body)
                    .await
                    .is_ok()
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.expect("producer task");
    }
    (acked, started.elapsed())
}

#[tokio::main]
async fn main() {
    let producers_n = env_usize("FERRY_BENCH_PRODUCERS", 4).clamp(1, 64);
    let messages = env_usize("FERRY_BENCH_MESSAGES", 4_000).max(producers_n);
    let size = env_usize("FERRY_BENCH_MESSAGE_BYTES", 1_024).clamp(1, 4 << 20);
    let rounds = env_usize("FERRY_BENCH_ROUNDS", 2).clamp(1, 20);
    let per_producer = messages / producers_n;
    let body = Arc::new(vec![b'x'; size]);

    eprintln!("bench produce: starting etcd and two RocketMQ clusters");
    let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
    let etcd = etcd.expect("etcd on PATH");
    let clusters = clusters.expect("RocketMQ peers (scripts/install-peers)");
    clusters.a.create_topic(TOPIC, 8).await.expect("topic on A");
    clusters.b.create_topic(TOPIC, 8).await.expect("topic on B");
    let prefix = "/ferry-bench-produce/";
    let store = store(&etcd.endpoint(), prefix).await;
    create_task(
        &store,
        "bench",
        &clusters.a.namesrv_addr(),
        &clusters.b.namesrv_addr(),
        &[TOPIC.to_string()],
    )
    .await;
    let router = RouterProc::start("bench", &etcd.endpoint(), prefix, &[]).await;
    router.wait_serving(TOPIC).await;

    let direct = producers(&clusters.a.namesrv_addr(), "direct", producers_n, &body).await;
    let routed = producers(&router.namesrv, "router", producers_n, &body).await;
    eprintln!(
        "bench produce: {rounds} rounds x {} messages of {size} B per side, {producers_n} producers",
        per_producer * producers_n
    );
    let mut totals = [(0usize, Duration::ZERO); 2];
    for r in 0..rounds {
        for (i, (side, ps)) in [("direct", &direct), ("router", &routed)]
            .iter()
            .enumerate()
        {
            let (acked, took) = round(side, r, ps, per_producer, body.clone()).await;
            eprintln!(
                "bench produce: round {r} {side}: {acked} acknowledged in {took:?} ({:.0}/s)",
                acked as f64 / took.as_secs_f64()
            );
            totals[i].0 += acked;
            totals[i].1 += took;
        }
    }
    let failures: usize = direct.iter().chain(&routed).map(|p| p.failures()).sum();
    let rate = |(n, d): (usize, Duration)| n as f64 / d.as_secs_f64();
    let (direct_rate, router_rate) = (rate(totals[0]), rate(totals[1]));
    eprintln!(
        "bench produce: direct {direct_rate:.0}/s, router {router_rate:.0}/s, {failures} failed sends"
    );
    for p in direct.into_iter().chain(routed) {
        if let Ok(p) = Arc::try_unwrap(p) {
            p.shutdown().await;
        }
    }
    drop(router);
    drop(clusters);
    drop(etcd);
    println!(
        "{}",
        json_line(&[
            ("bench", "produce".into()),
            ("ratio", r3(router_rate / direct_rate).into()),
            ("router_msgs_per_s", (router_rate.round() as u64).into()),
            ("direct_msgs_per_s", (direct_rate.round() as u64).into()),
        ])
    );
}
