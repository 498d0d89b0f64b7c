//! `ferry-router` as a process against real etcd and two real RocketMQ clusters (one
//! NameServer and one broker each): fail-static when etcd is stopped for 30 s or an
//! upstream NameServer is down, recovery by itself, registration under a lease, SIGTERM
//! drain.

mod support;

use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_store::MigrationStore;
use ferry_testkit::EtcdProcess;
use ferry_testkit::rocketmq::TwoClusters;
use support::proc::*;
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;

struct Setup {
    etcd: EtcdProcess,
    clusters: TwoClusters,
    store: ferry_store::EtcdStore,
    prefix: String,
}

async fn setup(task_id: &str, topics: &[&str]) -> Setup {
    init_tracing();
    let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
    let (etcd, clusters) = (etcd.expect("etcd"), clusters.expect("RocketMQ clusters"));
    for t in topics {
        clusters.a.create_topic(t, 4).await.unwrap();
        clusters.b.create_topic(t, 4).await.unwrap();
    }
    let prefix = format!("/ferry-{task_id}/");
    let store = etcd_store(&etcd.endpoint(), &prefix).await;
    let mut t = task(
        task_id,
        &clusters.a.namesrv_addr(),
        &clusters.b.namesrv_addr(),
    );
    t.target_cluster = "ClusterB".into();
    store.create_task(t).await.unwrap();
    add_topics(&store, task_id, topics).await;
    Setup {
        etcd,
        clusters,
        store,
        prefix,
    }
}

#[tokio::test]
async fn etcd_down_for_30s_keeps_routes_and_recovers_by_itself() {
    let mut s = setup("etcd-outage", &["Orders"]).await;
    move_to(&s.store, "etcd-outage", "Orders", Stage::DualWrite).await;
    let router = RouterProcess::start(
        "etcd-outage",
        &s.etcd.endpoint(),
        &s.prefix,
        &["--route-ttl", "1s"],
    )
    .await;
    let both_rw = perms(&[("broker-a", 6), ("broker-b", 6)]);
    router
        .wait_perms("Orders", &both_rw, Duration::from_secs(15))
        .await;
    router
        .wait_health(
            ROUTER_SERVICE,
            ServingStatus::Serving,
            Duration::from_secs(10),
        )
        .await;
    // Registered under a lease.
    let members = s.store.list_members("routers").await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].value["task_id"], "etcd-outage");
    assert_eq!(members[0].value["namesrv_addr"], router.namesrv.as_str());
    let before = router.route_raw("Orders").await.unwrap();

    s.etcd.stop().await.unwrap();
    let outage = Instant::now();
    let mut degraded_after = None;
    // 30 s without etcd: same answer every second, health degraded, readiness kept.
    while outage.elapsed() < Duration::from_secs(30) {
        let now = router.route_raw("Orders").await.unwrap();
        assert_eq!(
            (now.code, &now.body),
            (0, &before.body),
            "route changed during the outage"
        );
        if degraded_after.is_none()
            && router.health(ROUTER_SERVICE).await == ServingStatus::NotServing
        {
            degraded_after = Some(outage.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let degraded_after =
        degraded_after.expect("router service never turned NOT_SERVING without etcd");
    eprintln!("health degraded {degraded_after:?} after etcd stopped");
    assert_eq!(
        router.health("").await,
        ServingStatus::Serving,
        "a fail-static router stays ready"
    );
    let status = router.status().await;
    assert!(status.fail_static);
    assert!(
        status
            .fail_static_reasons
            .iter()
            .any(|r| r.starts_with("store:")),
        "{:?}",
        status.fail_static_reasons
    );
    assert_eq!(
        router
            .metric(r#"ferry_router_fail_static{cause="store"}"#)
            .await,
        Some(1.0)
    );

    s.etcd.restart().await.unwrap();
    let back = Instant::now();
    router
        .wait_health(
            ROUTER_SERVICE,
            ServingStatus::Serving,
            Duration::from_secs(30),
        )
        .await;
    eprintln!("recovered {:?} after etcd restarted", back.elapsed());
    assert_eq!(
        router
            .metric(r#"ferry_router_fail_static{cause="store"}"#)
            .await,
        Some(0.0)
    );
    // The watch resumed: a stage change made after the outage reaches clients.
    let store = etcd_store(&s.etcd.endpoint(), &s.prefix).await;
    let changed = Instant::now();
    move_to(&store, "etcd-outage", "Orders", Stage::Switching).await;
    router
        .wait_perms(
            "Orders",
            &perms(&[("broker-a", 4), ("broker-b", 6)]),
            Duration::from_secs(15),
        )
        .await;
    eprintln!(
        "stage change served {:?} after the store write",
        changed.elapsed()
    );
    let rev = router.metric("ferry_router_stage_revision").await.unwrap();
    assert!(rev > 0.0);

    // SIGTERM: drains and exits cleanly, deregistering.
    let mut router = router;
    let status = router
        .process
        .terminate(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.list_members("routers").await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "registration not revoked on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_upstream_nameserver_down_serves_stale_routes() {
    let mut s = setup("ns-down", &["Orders"]).await;
    move_to(&s.store, "ns-down", "Orders", Stage::DualRead).await;
    let router = RouterProcess::start(
        "ns-down",
        &s.etcd.endpoint(),
        &s.prefix,
        &["--route-ttl", "1s"],
    )
    .await;
    let want = perms(&[("broker-a", 6), ("broker-b", 4)]);
    router
        .wait_perms("Orders", &want, Duration::from_secs(15))
        .await;
    let before = router.route_raw("Orders").await.unwrap();

    s.clusters.b.stop_namesrv().await.unwrap();
    let down = Instant::now();
    // Past several TTLs: the same route, quickly, and the target is reported down.
    let mut slowest = Duration::ZERO;
    while down.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let now = router.route_raw("Orders").await.unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!((now.code, &now.body), (0, &before.body));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("slowest answer with the target NameServer down: {slowest:?}");
    assert!(slowest < Duration::from_millis(2000), "{slowest:?}");
    let status = router.status().await;
    let target = status
        .upstreams
        .iter()
        .find(|u| u.role == "target")
        .unwrap();
    assert!(!target.reachable, "{target:?}");
    assert!(!target.last_error.is_empty());
    assert_eq!(
        router
            .metric(r#"ferry_router_fail_static{cause="target"}"#)
            .await,
        Some(1.0)
    );
    router
        .wait_health(
            ROUTER_SERVICE,
            ServingStatus::NotServing,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        router
            .metric(r#"ferry_router_requests_total{code="105",result="stale"}"#)
            .await
            .unwrap_or(0.0)
            > 0.0
    );

    s.clusters.b.start_namesrv().await.unwrap();
    router
        .wait_health(
            ROUTER_SERVICE,
            ServingStatus::Serving,
            Duration::from_secs(30),
        )
        .await;
    let status = router.status().await;
    assert!(
        status.upstreams.iter().all(|u| u.reachable),
        "{:?}",
        status.upstreams
    );
    assert_eq!(router.route_raw("Orders").await.unwrap().body, before.body);
}
