//! A real `ferry-router` process (real etcd, scripted NameServers) scraped over HTTP: every
//! metric `docs/metrics.md` lists for `ferry-router` (or for `all` processes) must be in the
//! scrape with its documented type and a sample, and the lookups this test makes must show
//! up as the series they should be.

mod support;

#[path = "../../cli/tests/support/metrics_doc.rs"]
mod metrics_doc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_store::MigrationStore;
use ferry_testkit::EtcdProcess;
use metrics_doc::Scrape;
use support::proc::*;
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;

const TASK: &str = "metrics";

#[tokio::test]
async fn router_process_exports_every_documented_metric() {
    init_tracing();
    let documented: Vec<_> = metrics_doc::documented()
        .into_iter()
        .filter(|d| d.exported_by("ferry-router"))
        .collect();
    assert!(
        documented
            .iter()
            .any(|d| d.name == "ferry_router_fail_static"),
        "{documented:?}"
    );
    let etcd = EtcdProcess::start().await.expect("etcd");
    let source = FakeNamesrv::start("ClusterA").await;
    let target = FakeNamesrv::start("ClusterB").await;
    source.set_topic("Orders", &["broker-a"], 4, 6);
    target.set_topic("Orders", &["broker-b"], 4, 6);
    let prefix = "/ferry-metrics/";
    let store = etcd_store(&etcd.endpoint(), prefix).await;
    let mut t = task(TASK, &source.addr_str(), &target.addr_str());
    t.target_cluster = "ClusterB".into();
    store.create_task(t).await.unwrap();
    add_topics(&store, TASK, &["Orders"]).await;

    let router = RouterProcess::start(TASK, &etcd.endpoint(), prefix, &[]).await;
    router
        .wait_health("", ServingStatus::Serving, Duration::from_secs(20))
        .await;
    // gRPC: the admin API.
    assert!(!router.status().await.fail_static);
    // NameServer protocol: the first lookup fills the cache, the second is served from it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = router.route_raw("Orders").await.expect("router answers");
        if answer.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route for Orders: {:?}",
            answer.remark
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(router.route_raw("Orders").await.unwrap().code, 0);

    let addr: SocketAddr = router.metrics.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = Scrape::parse(&metrics_doc::scrape(addr).await.expect("scrape"));
        let mut problems: Vec<String> = documented
            .iter()
            .filter_map(|d| scrape.check(d).map(|p| format!("docs/metrics.md: {p}")))
            .collect();
        let mut expect = |ok: bool, what: &str| {
            if !ok {
                problems.push(what.to_owned());
            }
        };
        expect(
            scrape.sum(
                "ferry_grpc_requests_total",
                &[
                    "service=\"ferry.router.v1.RouterService\"",
                    "method=\"GetRouterStatus\"",
                    "code=\"OK\"",
                ],
            ) >= 1.0,
            "GetRouterStatus counted OK",
        );
        expect(
            scrape.sum(
                "ferry_router_requests_total",
                &["code=\"105\"", "result=\"success\""],
            ) >= 2.0,
            "both route lookups counted as success",
        );
        // At INITIAL the answer is the source's route: only the source is looked up.
        expect(
            scrape.value("ferry_router_cache_misses_total", "cluster=\"source\"") >= Some(1.0),
            "the first lookup missed the source cache",
        );
        expect(
            scrape.value("ferry_router_cache_hits_total", "cluster=\"source\"") >= Some(1.0),
            "the second lookup hit the source cache",
        );
        expect(
            scrape.value("ferry_router_cache_misses_total", "cluster=\"target\"") == Some(0.0),
            "the target cache series exists from the start, at 0",
        );
        expect(
            scrape.sum(
                "ferry_remoting_client_requests_total",
                &["code=\"GET_ROUTEINFO_BY_TOPIC\"", "outcome=\"SUCCESS\""],
            ) >= 1.0,
            "the router's upstream lookup counted as SUCCESS",
        );
        expect(
            scrape.value("ferry_router_presence_clients", "") >= Some(1.0),
            "this test's client remembered for presence",
        );
        for cause in ["store", "source", "target"] {
            expect(
                scrape.value("ferry_router_fail_static", &format!("cause=\"{cause}\""))
                    == Some(0.0),
                &format!("ferry_router_fail_static{{cause=\"{cause}\"}} 0"),
            );
        }
        for service in ["server", "ferry.router.v1.RouterService"] {
            expect(
                scrape.value("ferry_grpc_serving", &format!("service=\"{service}\"")) == Some(1.0),
                &format!("ferry_grpc_serving{{service=\"{service}\"}} 1"),
            );
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape is not as expected:\n  {}\n\nscrape:\n{}",
            problems.join("\n  "),
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
