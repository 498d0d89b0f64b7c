//! `scripts/bench router`: route lookups (105) per second and p99 through a `ferry-router`
//! process versus directly against the source cluster's real NameServer, in the same run,
//! with the same client and the same load.
//!
//! Setup (not timed): real etcd and two real RocketMQ clusters (ferry-testkit);
//! `FERRY_BENCH_TOPICS` topics (default 200) created on both clusters with the batch admin
//! call; a task with all of them, topic `i` at stage `i % 5` (INITIAL … DONE); the router
//! binary with its default flags (route TTL 5 s). Every topic is looked up once through
//! the router and once directly before timing (router cache warm).
//!
//! Timed, in rounds alternating direct and router (`FERRY_BENCH_ROUNDS`, default 3):
//! `FERRY_BENCH_CONNECTIONS` connections (default 16), closed loop (one 105 in flight per
//! connection, raw `FrameCodec` client), each sending its share of
//! `FERRY_BENCH_REQUESTS` (default 100 000 per round and side) over the topics in the same
//! order on both sides, every round capped at 60 s. Rates are completed lookups over the
//! summed round times; p99 over every lookup of a side.
//!
//! Prints, as its last line, one JSON object:
//! `{"bench":"router","ratio":…,"router_rps":…,"direct_rps":…,"router_p99_ms":…,"direct_p99_ms":…}`
//! (ratio = router_rps / direct_rps).

#![allow(clippy::print_stdout)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use support::*;

const ROUND_CAP: Duration = Duration::from_secs(60);

struct Side {
    name: &'static str,
    addr: String,
    lookups: Vec<Duration>,
    busy: Duration,
}

/// One round against `addr`: `conns` connections, `per_conn` lookups each.
async fn round(
    addr: &str,
    topics: Arc<Vec<String>>,
    conns: usize,
    per_conn: usize,
) -> (Vec<Duration>, Duration) {
    let mut opened = Vec::with_capacity(conns);
    for _ in 0..conns {
        opened.push(Conn::connect(addr).await);
    }
    let started = Instant::now();
    let deadline = started + ROUND_CAP;
    let mut tasks = Vec::with_capacity(conns);
    for (c, mut conn) in opened.into_iter().enumerate() {
        let topics = topics.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_conn);
            for i in 0..per_conn {
                if Instant::now() >= deadline {
                    break;
                }
                let topic = &topics[(c * 7 + i) % topics.len()];
                let t = Instant::now();
                let resp = conn.route(topic).await;
                lat.push(t.elapsed());
                assert_eq!(resp.code, 0, "105 {topic}: {:?}", resp.remark);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(conns * per_conn);
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    (all, started.elapsed())
}

#[tokio::main]
async fn main() {
    let topics_n = env_usize("FERRY_BENCH_TOPICS", 200).max(1);
    let conns = env_usize("FERRY_BENCH_CONNECTIONS", 16).max(1);
    let requests = env_usize("FERRY_BENCH_REQUESTS", 100_000).max(conns);
    let rounds = env_usize("FERRY_BENCH_ROUNDS", 3).clamp(1, 20);
    let per_conn = requests / conns;

    eprintln!("bench router: starting etcd and two RocketMQ clusters");
    let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
    let etcd = etcd.expect("etcd on PATH");
    let clusters = clusters.expect("RocketMQ peers (scripts/install-peers)");
    let topics: Vec<String> = (0..topics_n).map(|i| format!("BenchRoute{i:04}")).collect();
    eprintln!("bench router: creating {topics_n} topics on both clusters (not timed)");
    let (a_broker, a_ns) = (clusters.a.broker_addr(), clusters.a.namesrv_addr());
    let (b_broker, b_ns) = (clusters.b.broker_addr(), clusters.b.namesrv_addr());
    tokio::join!(
        create_topics(&a_broker, &a_ns, &topics),
        create_topics(&b_broker, &b_ns, &topics),
    );
    let prefix = "/ferry-bench-router/";
    let store = store(&etcd.endpoint(), prefix).await;
    create_task(
        &store,
        "bench",
        &clusters.a.namesrv_addr(),
        &clusters.b.namesrv_addr(),
        &topics,
    )
    .await;
    let stages = [
        Stage::Initial,
        Stage::DualRead,
        Stage::DualWrite,
        Stage::Switching,
        Stage::Done,
    ];
    for (i, t) in topics.iter().enumerate() {
        move_to(&store, "bench", t, stages[i % stages.len()]).await;
    }
    let router = RouterProc::start("bench", &etcd.endpoint(), prefix, &[]).await;

    // Warm up: the router has every stage and every route cached; both sides answer.
    let last = topics.last().expect("a topic");
    let want_stage = stages[(topics_n - 1) % stages.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warm = Conn::connect(&router.namesrv).await;
    loop {
        let got = warm.perms(last).await;
        let b_listed = got.as_ref().is_some_and(|p| p.contains_key("broker-b"));
        // INITIAL is source-only; every later stage lists the target.
        if got.is_some() && b_listed == (want_stage != Stage::Initial) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "router never served {last} at {want_stage}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut direct_warm = Conn::connect(&clusters.a.namesrv_addr()).await;
    for t in &topics {
        assert_eq!(warm.route(t).await.code, 0, "router 105 {t}");
        assert_eq!(direct_warm.route(t).await.code, 0, "direct 105 {t}");
    }
    drop((warm, direct_warm));

    let topics = Arc::new(topics);
    let mut sides = [
        Side {
            name: "direct",
            addr: clusters.a.namesrv_addr(),
            lookups: Vec::new(),
            busy: Duration::ZERO,
        },
        Side {
            name: "router",
            addr: router.namesrv.clone(),
            lookups: Vec::new(),
            busy: Duration::ZERO,
        },
    ];
    eprintln!(
        "bench router: {rounds} rounds x {} lookups per side over {conns} connections",
        per_conn * conns
    );
    for r in 0..rounds {
        for side in &mut sides {
            let (lat, took) = round(&side.addr, topics.clone(), conns, per_conn).await;
            eprintln!(
                "bench router: round {r} {}: {} lookups in {took:?} ({:.0}/s)",
                side.name,
                lat.len(),
                lat.len() as f64 / took.as_secs_f64()
            );
            side.lookups.extend(lat);
            side.busy += took;
        }
    }
    let mut figures = Vec::new();
    for side in &mut sides {
        side.lookups.sort();
        let rps = side.lookups.len() as f64 / side.busy.as_secs_f64();
        let (p50, p99) = (
            quantile_ms(&side.lookups, 0.5),
            quantile_ms(&side.lookups, 0.99),
        );
        eprintln!(
            "bench router: {}: {:.0}/s, p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
            side.name,
            rps,
            quantile_ms(&side.lookups, 1.0)
        );
        figures.push((rps, p99));
    }
    let [(direct_rps, direct_p99), (router_rps, router_p99)] = [figures[0], figures[1]];
    drop(router);
    drop(clusters);
    drop(etcd);
    println!(
        "{}",
        json_line(&[
            ("bench", "router".into()),
            ("ratio", r3(router_rps / direct_rps).into()),
            ("router_rps", (router_rps.round() as u64).into()),
            ("direct_rps", (direct_rps.round() as u64).into()),
            ("router_p99_ms", r3(router_p99).into()),
            ("direct_p99_ms", r3(direct_p99).into()),
        ])
    );
}
