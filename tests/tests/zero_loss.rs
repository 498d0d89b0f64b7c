//! Zero message loss, end to end (issues #8 and #9): a whole migration task through all five
//! steps with real producers and consumers (rocketmq-client-rust, route poll 10 s) whose
//! `namesrvAddr` is a pool of two `ferry-router` processes, two real RocketMQ clusters, real
//! etcd, and Ferry's services as separate processes, driven only through their gRPC APIs.
//!
//! The main test rolls back once at every stage of step 4 and re-advances, and proves that
//! the gates refuse for real causes: CLIENTS_NOT_SWITCHED (a producer still on the source
//! NameServer), DWELL_TOO_SHORT (a change right after a change) and SOURCE_BACKLOG (a
//! consumer suspended while its topic switches). The fault variants take the short path
//! INITIAL → DONE with one fault each: a router SIGKILLed and restarted, etcd down for 30 s,
//! metadata-sync killed in the middle of an advance. Every test ends with every acknowledged
//! send consumed at least once and nothing left unconsumed on the source.
//!
//! Run: `cargo build --workspace --bins && cargo test -p ferry-tests --features
//! rocketmq-client --test zero_loss -- --nocapture` (`cargo test --workspace --all-features`,
//! as `scripts/test` runs it, builds the binaries itself). At most two of these tests run at
//! once (`FERRY_ZERO_LOSS_PARALLEL`).
#![cfg(feature = "rocketmq-client")]

mod support;

use std::time::{Duration, Instant};

use ferry_api::common::v1::Stage;
use ferry_api::metadata_sync::v1 as pb;
use ferry_testkit::traffic::{ClientOptions, TrafficProducer};
use support::*;

/// One message per topic every 100 ms (10/s per topic).
const SEND_INTERVAL: Duration = Duration::from_millis(100);

fn main_topics() -> Vec<TopicSpec> {
    vec![
        TopicSpec::new("ZlOrders", Kind::Normal),
        TopicSpec::new("ZlPayments", Kind::Normal),
        TopicSpec::new("ZlSequence", Kind::Ordered),
        // Delay level 2 = 5 s: messages sent just before a route change land after it.
        TopicSpec::new("ZlDelayed", Kind::Delayed(2)),
    ]
}

fn fault_topics() -> Vec<TopicSpec> {
    vec![
        TopicSpec::new("ZfOrders", Kind::Normal),
        TopicSpec::new("ZfPayments", Kind::Normal),
        TopicSpec::new("ZfSequence", Kind::Ordered),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_through_every_stage_and_every_rollback() {
    let _slot = slot().await;
    let started = Instant::now();
    let mut h = Harness::start("main", main_topics()).await;
    h.scanner_sees_source().await;
    h.create_task("zero-loss").await;
    h.connect_and_import().await;

    // ------------------------------------------------------------ step 3
    // A producer still on the source NameServer. Switching is judged by client IP, and
    // every client here is 127.0.0.1, so it must be alone: once any client of this host
    // looks routes up at a router, the host counts as switched (a documented limit).
    let first = h.topics[0].name.clone();
    let direct = TrafficProducer::start(
        &h.clusters.a.namesrv_addr(),
        "pg-direct",
        ClientOptions::default(),
    )
    .await
    .unwrap();
    for i in 0..10 {
        let key = format!("{first}-direct-{i}");
        direct
            .send_keyed(&first, &key, key.as_bytes())
            .await
            .unwrap();
    }
    h.note("a producer on the source NameServer sent 10 messages");
    h.step3_refuses_unswitched_client().await;
    let direct_sent = direct.sent();
    direct.shutdown().await;
    h.note("the direct producer stopped; clients start on the routers");
    let mut traffic = Traffic::start(&h.router_pool(), &h.topics, SEND_INTERVAL, &h.timeline).await;
    traffic.add_sent(direct_sent);
    h.advance_step3_when_switched().await;

    // ------------------------------------------------------------ step 4
    use Stage::*;
    h.move_all(Initial, DualRead).await;
    // Right after a change the gate refuses on dwell, measured for the new revision.
    h.check_topics(&h.topic_names()).await.expect("CheckTopics");
    let refused = h.try_move_now(DualRead, false).await;
    assert!(
        refused
            .iter()
            .all(|r| codes_of(r).contains("DWELL_TOO_SHORT")),
        "an advance right after a change must be refused with DWELL_TOO_SHORT: {refused:?}"
    );
    h.note(format!(
        "DUAL_READ -> DUAL_WRITE right after the change: refused, e.g. {:?}",
        refused[0].error
    ));
    h.move_all(DualRead, Initial).await;
    h.move_all(Initial, DualRead).await;

    h.move_all(DualRead, DualWrite).await;
    h.move_all(DualWrite, DualRead).await;
    h.move_all(DualRead, DualWrite).await;

    h.move_all(DualWrite, Switching).await;
    h.move_all(Switching, DualWrite).await;
    // The consumer of the first topic stops pulling while its topic switches: its source
    // backlog must hold SWITCHING -> DONE.
    traffic.consumer(&first).suspend().await;
    h.note(format!("consumer of {first} suspended"));
    h.move_all(DualWrite, Switching).await;
    wait_for_backlog_refusal(&mut h, &first).await;
    traffic.consumer(&first).resume().await;
    h.note(format!("consumer of {first} resumed"));
    h.move_all(Switching, Done).await;
    h.move_all(Done, Switching).await;
    h.move_all(Switching, Done).await;

    // ------------------------------------------------------------ step 5
    h.complete().await;
    let ledger = finish(&mut h, traffic).await;
    for code in ["CLIENTS_NOT_SWITCHED", "DWELL_TOO_SHORT", "SOURCE_BACKLOG"] {
        assert!(
            h.refusals.saw(code),
            "no refusal named {code}: {:?}",
            h.refusals.codes
        );
    }
    // Every stage and every rollback happened.
    let moves: Vec<(Stage, Stage)> = h.moves.iter().map(|m| (m.from, m.to)).collect();
    for step in [
        (Initial, DualRead),
        (DualRead, Initial),
        (DualRead, DualWrite),
        (DualWrite, DualRead),
        (DualWrite, Switching),
        (Switching, DualWrite),
        (Switching, Done),
        (Done, Switching),
    ] {
        assert!(moves.contains(&step), "{step:?} missing from {moves:?}");
    }
    let audit = audit_records(&mut h).await;
    assert!(
        audit.iter().all(|r| !r.forced),
        "a stage change was forced: {audit:?}"
    );
    eprintln!(
        "zero_loss main: {} acknowledged sends, {} audit records, wall time {:.1} s",
        ledger.sent().len(),
        audit.len(),
        started.elapsed().as_secs_f64()
    );
}

/// SWITCHING -> DONE is refused with SOURCE_BACKLOG once the dwell no longer blocks it
/// (so the backlog alone holds it), while `topic`'s consumer is suspended.
async fn wait_for_backlog_refusal(h: &mut Harness, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let names = h.topic_names();
    loop {
        let _ = h.check_topics(&names).await;
        let results = h
            .tasks
            .advance_topics(pb::AdvanceTopicsRequest {
                change: Some(pb::StageChangeRequest {
                    task_id: h.task_id.clone(),
                    topics: vec![pb::TopicRef {
                        topic: topic.into(),
                        expected_revision: 0,
                    }],
                    actor: "zero-loss-test".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("AdvanceTopics")
            .into_inner()
            .results;
        let r = &results[0];
        assert!(
            !r.changed,
            "{topic} went SWITCHING -> DONE while its consumer was suspended (source backlog): {r:?}"
        );
        let codes = codes_of(r);
        h.refusals.add(&codes, &r.error);
        if codes.contains("SOURCE_BACKLOG") && !codes.contains("DWELL_TOO_SHORT") {
            h.note(format!(
                "{topic}: SWITCHING -> DONE refused by the backlog alone: {}",
                r.error
            ));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: no SOURCE_BACKLOG refusal past the dwell; last {codes:?}: {}",
            r.error
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn audit_records(h: &mut Harness) -> Vec<pb::AuditRecord> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let page = h
            .tasks
            .list_audit_records(pb::ListAuditRecordsRequest {
                task_id: h.task_id.clone(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListAuditRecords")
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("audit log does not end");
}

/// Steps 1–3 of a fault variant: task, import, traffic on the routers, step 3 passed.
async fn prepared(name: &str) -> (Harness, Traffic) {
    let mut h = Harness::start(name, fault_topics()).await;
    h.create_task(name).await;
    h.connect_and_import().await;
    let traffic = Traffic::start(&h.router_pool(), &h.topics, SEND_INTERVAL, &h.timeline).await;
    h.advance_step3_when_switched().await;
    (h, traffic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_with_a_router_killed_and_restarted_mid_stage() {
    let _slot = slot().await;
    let started = Instant::now();
    let (mut h, traffic) = prepared("router-kill").await;
    use Stage::*;
    h.move_all(Initial, DualRead).await;
    h.move_all(DualRead, DualWrite).await;
    // Mid-stage: clients pinned to router 1 lose it and fail over to router 2.
    h.routers[0].kill();
    let killed = Instant::now();
    h.note(format!("router 1 ({}) SIGKILLed", h.routers[0].namesrv));
    // Longer than one route poll: every client polled at least once without router 1.
    // Meanwhile readiness cannot vouch for the clients of a registered router that does
    // not answer (its registration lives until its lease expires).
    let names = h.topic_names();
    let mut seen = std::collections::BTreeSet::new();
    while killed.elapsed() < ROUTE_POLL + Duration::from_secs(2) {
        if let Ok(report) = h.check_topics(&names).await {
            for t in &report {
                seen.extend(readiness_codes(t.next.as_ref()));
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    h.note(format!("readiness codes while router 1 was down: {seen:?}"));
    assert!(
        seen.iter()
            .any(|c| c.contains("ROUTER") || c == "CLUSTER_UNREACHABLE"),
        "a dead registered router must make readiness unproven: {seen:?}"
    );
    h.routers[0].restart().await;
    h.note("router 1 restarted on the same ports");
    h.move_all(DualWrite, Switching).await;
    h.move_all(Switching, Done).await;
    h.complete().await;
    finish(&mut h, traffic).await;
    eprintln!(
        "zero_loss router kill: wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_with_etcd_down_for_30s_mid_stage() {
    let _slot = slot().await;
    let started = Instant::now();
    let (mut h, traffic) = prepared("etcd-outage").await;
    use Stage::*;
    h.move_all(Initial, DualRead).await;
    h.move_all(DualRead, DualWrite).await;
    h.etcd.stop().await.unwrap();
    let outage = Instant::now();
    h.note("etcd stopped");
    // Stage changes cannot happen without the store; they are refused, never half-done.
    let attempt = tokio::time::timeout(
        Duration::from_secs(20),
        h.tasks.advance_topics(pb::AdvanceTopicsRequest {
            change: Some(pb::StageChangeRequest {
                task_id: h.task_id.clone(),
                topics: vec![pb::TopicRef {
                    topic: h.topics[0].name.clone(),
                    expected_revision: 0,
                }],
                force: true,
                actor: "zero-loss-test".into(),
                ..Default::default()
            }),
        }),
    )
    .await
    .expect("metadata-sync answers while etcd is down");
    let status = attempt.expect_err("no stage change without etcd");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    h.note(format!(
        "AdvanceTopics without etcd: {:?} {}",
        status.code(),
        status.message()
    ));
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    h.etcd.restart().await.unwrap();
    h.note(format!(
        "etcd restarted after {:.1} s",
        outage.elapsed().as_secs_f64()
    ));
    h.metadata_sync.wait_serving(Duration::from_secs(60)).await;
    h.health_check.wait_serving(Duration::from_secs(60)).await;
    h.note("metadata-sync and health-check SERVING again");
    let stages = h.stages().await;
    assert!(
        stages.values().all(|(s, _)| *s == DualWrite as i32),
        "stages changed during the outage: {stages:?}"
    );
    h.move_all(DualWrite, Switching).await;
    h.move_all(Switching, Done).await;
    h.complete().await;
    finish(&mut h, traffic).await;
    eprintln!(
        "zero_loss etcd outage: wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// metadata-sync SIGKILLed while it advances a batch: each topic changed fully or not at
/// all, with its audit record; then the health checker and the scanner are crashed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_with_metadata_sync_killed_mid_advance() {
    let _slot = slot().await;
    let started = Instant::now();
    let (mut h, traffic) = prepared("metadata-sync-kill").await;
    use Stage::*;
    h.move_all(Initial, DualRead).await;
    // Wait until every topic is ready for DUAL_WRITE, then kill metadata-sync while it
    // advances them.
    let names = h.topic_names();
    let deadline = Instant::now() + STAGE_DEADLINE;
    loop {
        let report = h.check_topics(&names).await.expect("CheckTopics");
        if report.len() == names.len()
            && report
                .iter()
                .all(|t| t.next.as_ref().is_some_and(|n| n.ready))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready for DUAL_WRITE: {report:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut tasks = h.tasks.clone();
    let task_id = h.task_id.clone();
    let refs: Vec<pb::TopicRef> = names
        .iter()
        .map(|t| pb::TopicRef {
            topic: t.clone(),
            expected_revision: 0,
        })
        .collect();
    let call = tokio::spawn(async move {
        tasks
            .advance_topics(pb::AdvanceTopicsRequest {
                change: Some(pb::StageChangeRequest {
                    task_id,
                    topics: refs,
                    actor: "zero-loss-test".into(),
                    ..Default::default()
                }),
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(15)).await;
    h.metadata_sync.kill();
    let answered = call.await.unwrap();
    h.note(format!(
        "metadata-sync SIGKILLed mid-advance; the call ended {}",
        match &answered {
            Ok(r) => format!(
                "OK ({} of {} changed)",
                r.get_ref().results.iter().filter(|r| r.changed).count(),
                names.len()
            ),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        }
    ));
    h.metadata_sync.restart().await;
    h.note("metadata-sync restarted");
    // Each topic changed completely or not at all, with exactly one audit record per change.
    let stages = h.stages().await;
    let audit = audit_records(&mut h).await;
    for (topic, (stage, _)) in &stages {
        let to_dual_write = audit
            .iter()
            .filter(|r| &r.topic == topic && r.to_stage == DualWrite as i32)
            .count();
        match Stage::try_from(*stage) {
            Ok(DualWrite) => assert_eq!(to_dual_write, 1, "{topic}: {audit:?}"),
            Ok(DualRead) => assert_eq!(to_dual_write, 0, "{topic}: {audit:?}"),
            other => panic!("{topic} is {other:?} after the kill"),
        }
    }
    h.note(format!(
        "after the restart: {} of {} topics at DUAL_WRITE, audit consistent",
        stages
            .values()
            .filter(|(s, _)| *s == DualWrite as i32)
            .count(),
        stages.len()
    ));
    // The health checker and the scanner keep nothing either: crash both mid-stage; the
    // migration goes on from what the store holds (readiness is measured again).
    h.health_check.kill();
    h.scanner.kill();
    h.health_check.restart().await;
    h.scanner.restart().await;
    h.note("health-check and scanner SIGKILLed and restarted mid-stage");
    h.move_all(DualRead, DualWrite).await;
    h.move_all(DualWrite, Switching).await;
    h.move_all(Switching, Done).await;
    h.complete().await;
    finish(&mut h, traffic).await;
    eprintln!(
        "zero_loss metadata-sync kill: wall time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A rollback to INITIAL hides the target's queues. Scheduled (delayed) messages written to
/// the target during DUAL_WRITE land in its queues only when due: if one came due after the
/// change to INITIAL, nobody would read it. This test found that the gate of
/// DUAL_READ -> INITIAL checked only the target backlog; it now also waits for the target's
/// scheduled messages and unresolved transactions (PENDING_DELAY_MESSAGES /
/// PENDING_TRANSACTIONS "on the target"), and nothing is stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_to_initial_strands_no_delayed_message_on_the_target() {
    let _slot = slot().await;
    // Delay level 5 = 1 min: messages written to the target from the start of DUAL_WRITE
    // come due after DUAL_WRITE (20 s) and DUAL_READ (20 s) have passed, so the target has
    // no backlog yet when DUAL_READ -> INITIAL is measured.
    let mut h = Harness::start(
        "delay-rollback",
        vec![TopicSpec::new("ZdDelayed", Kind::Delayed(5))],
    )
    .await;
    h.create_task("delay-rollback").await;
    h.connect_and_import().await;
    let mut traffic = Traffic::start(&h.router_pool(), &h.topics, SEND_INTERVAL, &h.timeline).await;
    h.advance_step3_when_switched().await;
    use Stage::*;
    h.move_all(Initial, DualRead).await;
    h.move_all(DualRead, DualWrite).await;
    h.move_all(DualWrite, DualRead).await;
    let b = h.clusters.b.broker_addr();
    h.note(format!(
        "before DUAL_READ -> INITIAL: scheduled messages pending on broker-b: {:?}",
        h.pending_delayed_on(&b).await
    ));
    let back = h.move_all(DualRead, Initial).await;
    // The gate held the rollback while the target still had messages scheduled.
    assert!(
        back.refusals.saw("PENDING_DELAY_MESSAGES"),
        "DUAL_READ -> INITIAL was never held for the target's scheduled messages: {back:?}"
    );
    h.note(format!(
        "INITIAL (without force): scheduled messages pending on broker-b: {:?}",
        h.pending_delayed_on(&b).await
    ));
    // The topic stays INITIAL: every acknowledged message must still be consumed.
    traffic.stop_producers().await;
    // The last message is due one minute after its send.
    match traffic.drain(Duration::from_secs(90)).await {
        Ok(took) => h.note(format!(
            "all consumed {:.1} s after the last send",
            took.as_secs_f64()
        )),
        Err(ledger) => {
            let why = traffic.explain_missing(&ledger);
            eprintln!(
                "broker-b now: unconsumed {:?}, scheduled pending {:?}",
                h.backlog_on(&b).await,
                h.pending_delayed_on(&b).await
            );
            h.report();
            panic!(
                "STRANDED by DUAL_READ -> INITIAL: {}\n{why}",
                ledger.summary()
            );
        }
    }
    traffic.shutdown().await;
}
