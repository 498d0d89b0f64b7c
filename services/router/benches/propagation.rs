//! `scripts/bench propagation`: how long a committed stage change takes to reach every
//! router of a pool.
//!
//! Setup (not timed): real etcd and two real RocketMQ clusters (ferry-testkit), one topic
//! on both clusters in a task at DUAL_WRITE, and `FERRY_BENCH_ROUTERS` (default 8)
//! `ferry-router` processes with default flags, each with its own store connection (watch),
//! all answering the topic.
//!
//! Timed, `FERRY_BENCH_CHANGES` times (default 200): the topic is moved DUAL_WRITE ⇄
//! SWITCHING with a forced `change_stage` straight on the store; from the moment that call
//! returns (committed), every router is polled over its own connection (a raw 105 every
//! 1 ms, so figures carry up to ~1 ms of polling granularity) until its answer has the new
//! perms (broker-a 6 ⇄ 4). One sample = the time until the LAST router answers the new
//! route; every wait is capped at 10 s (a router that never converges fails the bench).
//!
//! Prints, as its last line, one JSON object:
//! `{"bench":"propagation","routers":…,"changes":…,"p50_ms":…,"p99_ms":…}`.

#![allow(clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_store::MigrationStore;
use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use support::*;

const TOPIC: &str = "BenchPropagation";
const WAIT_CAP: Duration = Duration::from_secs(10);

fn perms(a: i32) -> BTreeMap<String, i32> {
    [("broker-a".to_string(), a), ("broker-b".to_string(), 6)]
        .into_iter()
        .collect()
}

/// Polls `conn` until it answers `want`; the time since `since`.
async fn until_answers(conn: &mut Conn, want: &BTreeMap<String, i32>, since: Instant) -> Duration {
    loop {
        if conn.perms(TOPIC).await.as_ref() == Some(want) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < WAIT_CAP,
            "a router did not answer {want:?} within {WAIT_CAP:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let routers_n = env_usize("FERRY_BENCH_ROUTERS", 8).clamp(1, 64);
    let changes = env_usize("FERRY_BENCH_CHANGES", 200).clamp(1, 10_000);

    eprintln!("bench propagation: starting etcd and two RocketMQ clusters");
    let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
    let etcd = etcd.expect("etcd on PATH");
    let clusters = clusters.expect("RocketMQ peers (scripts/install-peers)");
    clusters.a.create_topic(TOPIC, 4).await.expect("topic on A");
    clusters.b.create_topic(TOPIC, 4).await.expect("topic on B");
    let prefix = "/ferry-bench-propagation/";
    let store = store(&etcd.endpoint(), prefix).await;
    let topics = [TOPIC.to_string()];
    create_task(
        &store,
        "bench",
        &clusters.a.namesrv_addr(),
        &clusters.b.namesrv_addr(),
        &topics,
    )
    .await;
    move_to(&store, "bench", TOPIC, Stage::DualWrite).await;

    eprintln!("bench propagation: starting {routers_n} routers");
    let mut routers = Vec::new();
    for _ in 0..routers_n {
        routers.push(RouterProc::start("bench", &etcd.endpoint(), prefix, &[]).await);
    }
    let mut conns = Vec::new();
    let ready = Instant::now();
    for r in &routers {
        let mut c = Conn::connect(&r.namesrv).await;
        until_answers(&mut c, &perms(6), ready).await;
        conns.push(c);
    }

    let mut cur = store.get_topic("bench", TOPIC).await.expect("topic");
    let mut samples = Vec::with_capacity(changes);
    let started = Instant::now();
    for i in 0..changes {
        let (to, want) = if cur.value.stage == Stage::DualWrite {
            (Stage::Switching, perms(4))
        } else {
            (Stage::DualWrite, perms(6))
        };
        cur = change_stage(&store, "bench", TOPIC, &cur, to).await;
        let committed = Instant::now();
        let waits = conns.iter_mut().map(|c| until_answers(c, &want, committed));
        let per_router = futures::future::join_all(waits).await;
        let slowest = per_router.into_iter().max().expect("a router");
        samples.push(slowest);
        if i % 50 == 49 {
            eprintln!("bench propagation: {} changes, last {slowest:?}", i + 1);
        }
    }
    let took = started.elapsed();
    samples.sort();
    let (p50, p99) = (quantile_ms(&samples, 0.5), quantile_ms(&samples, 0.99));
    eprintln!(
        "bench propagation: {changes} changes to {routers_n} routers in {took:?}: p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
        quantile_ms(&samples, 1.0)
    );
    drop(conns);
    drop(routers);
    drop(clusters);
    drop(etcd);
    println!(
        "{}",
        json_line(&[
            ("bench", "propagation".into()),
            ("routers", routers_n.into()),
            ("changes", changes.into()),
            ("p50_ms", r3(p50).into()),
            ("p99_ms", r3(p99).into()),
        ])
    );
}
