//! Golden answers: merged routes byte for byte in both JSON dialects, the collision refusal
//! and DONE's grace period. Files live in `tests/golden/`; after an intended change,
//! regenerate with `FERRY_UPDATE_GOLDEN=1 cargo test -p ferry-router --test golden` and
//! review the diff.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ferry_core::Stage;
use ferry_remoting::{BrokerData, QueueData, RouteDialect, TopicRouteData, encode_route};
use ferry_router::merge::{MergeInput, MergeOutcome, TopicRule, UpstreamRoute, merge_route};

fn source() -> TopicRouteData {
    TopicRouteData {
        order_topic_conf: Some("broker-a:8".into()),
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: 6,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "ClusterA".into(),
            broker_name: "broker-a".into(),
            broker_addrs: [
                (1, "10.0.0.2:10911".to_string()),
                (0, "10.0.0.1:10911".to_string()),
            ]
            .into(),
            zone_name: None,
            enable_acting_master: Some(false),
        }],
        filter_server_table: [(
            "10.0.0.1:10911".to_string(),
            vec!["10.0.0.9:7000".to_string()],
        )]
        .into(),
        topic_queue_mapping_by_broker: None,
    }
}

fn target(broker: &str) -> TopicRouteData {
    TopicRouteData {
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: broker.into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_sys_flag: 0,
        }],
        broker_datas: vec![BrokerData {
            cluster: "ClusterB".into(),
            broker_name: broker.into(),
            broker_addrs: [(0, "10.1.0.1:10911".to_string())].into(),
            zone_name: Some("zone-b".into()),
            enable_acting_master: None,
        }],
        ..Default::default()
    }
}

fn answer(rule: TopicRule, s: &TopicRouteData, t: &TopicRouteData) -> TopicRouteData {
    let none = BTreeSet::new();
    let input = MergeInput {
        source: UpstreamRoute::Found(s),
        target: UpstreamRoute::Found(t),
        source_order_kv: None,
        target_order_kv: Some("broker-b:4"),
        cluster_collisions: &none,
    };
    match merge_route(rule, &input) {
        MergeOutcome::Route(m) => m.route,
        other => panic!("{other:?}"),
    }
}

fn check(name: &str, route: &TopicRouteData) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (dialect, suffix) in [
        (RouteDialect::Standard, "standard"),
        (RouteDialect::Fastjson, "fastjson"),
    ] {
        let got = String::from_utf8(encode_route(route, dialect)).unwrap();
        let path = dir.join(format!("{name}.{suffix}.json"));
        if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, format!("{got}\n")).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with FERRY_UPDATE_GOLDEN=1", path.display()));
        assert_eq!(got, want.trim_end(), "{} differs", path.display());
        // Standard is real JSON; both parse back to the same route.
        if dialect == RouteDialect::Standard {
            serde_json::from_str::<serde_json::Value>(&got).unwrap();
        }
        let mut back = TopicRouteData::from_body(got.as_bytes()).unwrap();
        back.normalize();
        let mut want_route = route.clone();
        want_route.normalize();
        assert_eq!(back, want_route);
    }
}

fn staged(stage: Stage, grace_active: bool) -> TopicRule {
    TopicRule::Staged {
        stage,
        grace_active,
    }
}

#[test]
fn dual_write_merged_both_dialects() {
    let r = answer(
        staged(Stage::DualWrite, false),
        &source(),
        &target("broker-b"),
    );
    check("dual_write", &r);
}

#[test]
fn dual_read_and_switching() {
    check(
        "dual_read",
        &answer(
            staged(Stage::DualRead, false),
            &source(),
            &target("broker-b"),
        ),
    );
    check(
        "switching",
        &answer(
            staged(Stage::Switching, false),
            &source(),
            &target("broker-b"),
        ),
    );
}

#[test]
fn collision_refusal_is_the_source_route() {
    let r = answer(
        staged(Stage::DualWrite, false),
        &source(),
        &target("broker-a"),
    );
    check("collision_source_only", &r);
}

#[test]
fn done_grace_then_source_gone() {
    check(
        "done_grace",
        &answer(staged(Stage::Done, true), &source(), &target("broker-b")),
    );
    check(
        "done_after_grace",
        &answer(staged(Stage::Done, false), &source(), &target("broker-b")),
    );
}

#[test]
fn retry_union() {
    check(
        "retry_union",
        &answer(TopicRule::GroupUnion, &source(), &target("broker-b")),
    );
}
