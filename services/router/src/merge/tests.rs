use super::*;
use ferry_core::perm::{MASK_AS_IS, PERM_READ, PERM_RW};
use ferry_remoting::{RouteDialect, TopicQueueMappingInfo, encode_route};
use proptest::prelude::*;

const NO_COLLISIONS: &BTreeSet<String> = &BTreeSet::new();

fn qd(name: &str, perm: i32, n: i32) -> QueueData {
    QueueData {
        broker_name: name.into(),
        read_queue_nums: n,
        write_queue_nums: n,
        perm,
        topic_sys_flag: 0,
    }
}

fn bd(cluster: &str, name: &str, addr: &str) -> BrokerData {
    BrokerData {
        cluster: cluster.into(),
        broker_name: name.into(),
        broker_addrs: [(0, addr.to_string())].into(),
        zone_name: None,
        enable_acting_master: Some(false),
    }
}

fn route(cluster: &str, brokers: &[(&str, i32)]) -> TopicRouteData {
    TopicRouteData {
        queue_datas: brokers.iter().map(|(n, p)| qd(n, *p, 4)).collect(),
        broker_datas: brokers
            .iter()
            .enumerate()
            .map(|(i, (n, _))| bd(cluster, n, &format!("10.0.{cluster}.{i}:10911")))
            .collect(),
        ..Default::default()
    }
}

fn input<'a>(s: UpstreamRoute<'a>, t: UpstreamRoute<'a>) -> MergeInput<'a> {
    MergeInput {
        source: s,
        target: t,
        source_order_kv: None,
        target_order_kv: None,
        cluster_collisions: NO_COLLISIONS,
    }
}

fn staged(stage: Stage, grace: bool) -> TopicRule {
    TopicRule::Staged {
        stage,
        grace_active: grace,
    }
}

fn merged(outcome: MergeOutcome) -> MergedRoute {
    match outcome {
        MergeOutcome::Route(r) => r,
        other => panic!("expected a route, got {other:?}"),
    }
}

#[test]
fn classification_order() {
    let st = Some((Stage::DualWrite, false));
    assert_eq!(
        TopicRule::classify("TBW102", st),
        TopicRule::AutoCreateTemplate
    );
    assert_eq!(TopicRule::classify("%RETRY%g", st), TopicRule::GroupUnion);
    assert_eq!(TopicRule::classify("%DLQ%g", None), TopicRule::GroupUnion);
    assert_eq!(
        TopicRule::classify("%RETRY%g+T", None),
        TopicRule::GroupUnion
    );
    assert_eq!(
        TopicRule::classify("T", st),
        staged(Stage::DualWrite, false)
    );
    assert_eq!(TopicRule::classify("T", None), TopicRule::Unmanaged);
    assert_eq!(
        TopicRule::classify("ns%T", None).effective_stage(),
        Some(Stage::Initial)
    );
}

#[test]
fn stage_table_on_read_write_queues() {
    let s = route("A", &[("broker-a", 6)]);
    let t = route("B", &[("broker-b", 6)]);
    let perms = |rule| {
        let out = merged(merge_route(
            rule,
            &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
        ));
        perms_by_broker(&out.route)
    };
    let row = |a: Option<i32>, b: Option<i32>| {
        let mut m = BTreeMap::new();
        if let Some(a) = a {
            m.insert("broker-a".to_string(), a);
        }
        if let Some(b) = b {
            m.insert("broker-b".to_string(), b);
        }
        m
    };
    assert_eq!(perms(staged(Stage::Initial, false)), row(Some(6), None));
    assert_eq!(perms(staged(Stage::DualRead, false)), row(Some(6), Some(4)));
    assert_eq!(
        perms(staged(Stage::DualWrite, false)),
        row(Some(6), Some(6))
    );
    assert_eq!(
        perms(staged(Stage::Switching, false)),
        row(Some(4), Some(6))
    );
    assert_eq!(perms(staged(Stage::Done, true)), row(Some(0), Some(6)));
    assert_eq!(perms(staged(Stage::Done, false)), row(None, Some(6)));
    // Source brokers stay listed (BrokerData) during DONE's grace, so heartbeats and
    // transaction check-backs keep reaching producers.
    let grace = merged(merge_route(
        staged(Stage::Done, true),
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(grace.route.broker_datas.len(), 2);
    let after = merged(merge_route(
        staged(Stage::Done, false),
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(after.route.broker_datas.len(), 1);
    assert_eq!(after.route.broker_datas[0].broker_name, "broker-b");
}

#[test]
fn read_only_source_queue_never_becomes_writable() {
    let s = route("A", &[("broker-a", PERM_READ as i32)]);
    let out = merged(merge_route(
        staged(Stage::DualWrite, false),
        &input(UpstreamRoute::Found(&s), UpstreamRoute::NotFound),
    ));
    assert_eq!(perms_by_broker(&out.route)["broker-a"], 4);
}

#[test]
fn unmanaged_topics_source_first_then_target() {
    let s = route("A", &[("broker-a", 6)]);
    let t = route("B", &[("broker-b", 6)]);
    let rule = TopicRule::Unmanaged;
    let both = merged(merge_route(
        rule,
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(both.sides, [Side::Source]);
    assert_eq!(both.route, verbatim(&s));
    let target_only = merged(merge_route(
        rule,
        &input(UpstreamRoute::NotFound, UpstreamRoute::Found(&t)),
    ));
    assert_eq!(target_only.sides, [Side::Target]);
    assert_eq!(
        merge_route(
            rule,
            &input(UpstreamRoute::NotFound, UpstreamRoute::NotFound)
        ),
        MergeOutcome::TopicNotExist
    );
    // Not knowing the source is never "not found".
    assert_eq!(
        merge_route(
            rule,
            &input(UpstreamRoute::Unknown, UpstreamRoute::Found(&t))
        ),
        MergeOutcome::Unavailable(Side::Source)
    );
    assert_eq!(
        merge_route(
            rule,
            &input(UpstreamRoute::NotFound, UpstreamRoute::Unknown)
        ),
        MergeOutcome::Unavailable(Side::Target)
    );
    // Source known: the target does not matter.
    assert!(matches!(
        merge_route(
            rule,
            &input(UpstreamRoute::Found(&s), UpstreamRoute::Unknown)
        ),
        MergeOutcome::Route(_)
    ));
}

#[test]
fn auto_create_template_is_never_the_targets() {
    let t = route("B", &[("broker-b", 7)]);
    let rule = TopicRule::classify(AUTO_CREATE_TOPIC, None);
    assert_eq!(
        merge_route(
            rule,
            &input(UpstreamRoute::NotFound, UpstreamRoute::Found(&t))
        ),
        MergeOutcome::TopicNotExist
    );
    let s = route("A", &[("broker-a", 7)]);
    let out = merged(merge_route(
        rule,
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(out.route, verbatim(&s));
}

#[test]
fn retry_and_dlq_are_unions_with_own_perms() {
    let s = route("A", &[("broker-a", 6)]);
    let t = route("B", &[("broker-b", 4)]);
    let out = merged(merge_route(
        TopicRule::GroupUnion,
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(
        perms_by_broker(&out.route),
        [("broker-a".to_string(), 6), ("broker-b".to_string(), 4)].into()
    );
    let only_t = merged(merge_route(
        TopicRule::GroupUnion,
        &input(UpstreamRoute::NotFound, UpstreamRoute::Found(&t)),
    ));
    assert_eq!(only_t.sides, [Side::Target]);
    assert_eq!(
        merge_route(
            TopicRule::GroupUnion,
            &input(UpstreamRoute::Found(&s), UpstreamRoute::Unknown)
        ),
        MergeOutcome::Unavailable(Side::Target)
    );
}

#[test]
fn collisions_answer_source_only() {
    let s = route("A", &[("broker-a", 6)]);
    let t = route("B", &[("broker-a", 6), ("broker-b", 6)]);
    let out = merged(merge_route(
        staged(Stage::Switching, false),
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(out.collisions, ["broker-a".to_string()].into());
    assert_eq!(out.route, verbatim(&s));
    // A cluster-level collision applies to topics whose routes do not collide.
    let t2 = route("B", &[("broker-b", 6)]);
    let global: BTreeSet<String> = ["broker-x".to_string()].into();
    let mut inp = input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t2));
    inp.cluster_collisions = &global;
    let out = merged(merge_route(staged(Stage::Done, false), &inp));
    assert_eq!(out.sides, [Side::Source]);
    assert_eq!(perms_by_broker(&out.route)["broker-a"], 6);
}

#[test]
fn order_conf_lists_writable_brokers_of_both_clusters() {
    let mut s = route("A", &[("broker-a", 6)]);
    s.order_topic_conf = Some("broker-a:8".into());
    let t = route("B", &[("broker-b", 6), ("broker-c", 6)]);
    let mut inp = input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t));
    inp.target_order_kv = Some("broker-c:2;broker-b:3;broker-zz:9");
    let conf = |rule, inp: &MergeInput<'_>| merged(merge_route(rule, inp)).route.order_topic_conf;
    assert_eq!(
        conf(staged(Stage::DualWrite, false), &inp).as_deref(),
        Some("broker-a:8;broker-c:2;broker-b:3")
    );
    // Read-only and absent clusters drop out of the ordered list.
    assert_eq!(
        conf(staged(Stage::DualRead, false), &inp).as_deref(),
        Some("broker-a:8")
    );
    assert_eq!(
        conf(staged(Stage::Switching, false), &inp).as_deref(),
        Some("broker-c:2;broker-b:3")
    );
    // Without a KV value the target's queues are listed.
    inp.target_order_kv = None;
    assert_eq!(
        conf(staged(Stage::Done, true), &inp).as_deref(),
        Some("broker-b:4;broker-c:4")
    );
    // No cluster enabled order conf in its routes: none is invented.
    s.order_topic_conf = None;
    let inp = input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t));
    assert_eq!(conf(staged(Stage::DualWrite, false), &inp), None);
}

#[test]
fn order_kv_merge() {
    assert_eq!(merge_order_values(None, None), None);
    assert_eq!(
        merge_order_values(Some("a:8"), Some("b:4;a:2")).as_deref(),
        Some("a:8;b:4")
    );
    assert_eq!(
        merge_order_values(None, Some("junk")).as_deref(),
        Some("junk")
    );
    let s = KVTable {
        table: [("T".to_string(), "a:8".to_string())].into(),
    };
    let t = KVTable {
        table: [
            ("T".to_string(), "b:8".to_string()),
            ("U".to_string(), "b:2".to_string()),
        ]
        .into(),
    };
    let m = merge_order_kv(&s, &t);
    assert_eq!(m.table["T"], "a:8;b:8");
    assert_eq!(m.table["U"], "b:2");
    assert_eq!(
        parse_order_conf(" a : 1 ;;b:x; :3;c:2"),
        [("a".to_string(), 1), ("c".to_string(), 2)]
    );
}

#[test]
fn static_topic_mappings_are_not_merged() {
    let mapping = |b: &str| {
        Some(BTreeMap::from([(
            b.to_string(),
            TopicQueueMappingInfo {
                bname: Some(b.to_string()),
                total_queues: 2,
                ..Default::default()
            },
        )]))
    };
    let mut s = route("A", &[("broker-a", 6)]);
    s.topic_queue_mapping_by_broker = mapping("broker-a");
    let mut t = route("B", &[("broker-b", 6)]);
    t.topic_queue_mapping_by_broker = mapping("broker-b");
    let out = merged(merge_route(
        staged(Stage::DualWrite, false),
        &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t)),
    ));
    assert_eq!(
        out.route.topic_queue_mapping_by_broker,
        s.topic_queue_mapping_by_broker
    );
    assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
    // Only the target's: kept.
    let out = merged(merge_route(
        staged(Stage::Switching, false),
        &input(UpstreamRoute::NotFound, UpstreamRoute::Found(&t)),
    ));
    assert_eq!(
        out.route.topic_queue_mapping_by_broker,
        t.topic_queue_mapping_by_broker
    );
}

#[test]
fn cluster_info_merge_and_collisions() {
    let info = |cluster: &str, brokers: &[&str]| ClusterInfo {
        broker_addr_table: brokers
            .iter()
            .map(|b| (b.to_string(), bd(cluster, b, "1.1.1.1:1")))
            .collect(),
        cluster_addr_table: [(
            cluster.to_string(),
            brokers.iter().map(|b| b.to_string()).collect(),
        )]
        .into(),
    };
    let a = info("A", &["broker-a"]);
    let b = info("B", &["broker-b"]);
    assert!(cluster_collisions(&a, &b).is_empty());
    let m = merge_cluster_info(Some(&a), Some(&b), NO_COLLISIONS);
    assert_eq!(m.broker_addr_table.len(), 2);
    assert_eq!(m.cluster_addr_table.len(), 2);
    let b2 = info("B", &["broker-b", "broker-a"]);
    let c = cluster_collisions(&a, &b2);
    assert_eq!(c, ["broker-a".to_string()].into());
    assert_eq!(merge_cluster_info(Some(&a), Some(&b2), &c), a);
    assert_eq!(merge_cluster_info(None, Some(&b), NO_COLLISIONS), b);
}

#[test]
fn owner_and_grace() {
    assert_eq!(owner_side([]), Side::Source);
    assert_eq!(owner_side([&Stage::Done, &Stage::Switching]), Side::Source);
    assert_eq!(owner_side([&Stage::Done, &Stage::Done]), Side::Target);
    assert!(grace_active(1_000, 600_000, 1_000));
    assert!(grace_active(1_000, 600_000, 600_999));
    assert!(!grace_active(1_000, 600_000, 601_000));
    assert!(!grace_active(1_000, 0, 1_000));
    assert!(grace_active(i64::MAX - 1, 600_000, 0));
}

#[test]
fn topic_list_union() {
    let a = TopicList {
        topic_list: ["T".to_string(), "A".to_string()].into(),
        broker_addr: None,
    };
    let b = TopicList {
        topic_list: ["T".to_string(), "B".to_string()].into(),
        broker_addr: Some("x:1".into()),
    };
    let m = merge_topic_lists([&a, &b]);
    assert_eq!(m.topic_list.len(), 3);
    assert_eq!(m.broker_addr.as_deref(), Some("x:1"));
}

// ------------------------------------------------------------------ properties

const SOURCE_NAMES: [&str; 3] = ["sa", "sb", "sc"];
const TARGET_NAMES: [&str; 3] = ["ta", "tb", "tc"];

fn any_queue(names: &'static [&'static str]) -> impl Strategy<Value = QueueData> {
    (
        prop::sample::select(names),
        0..9i32,
        0..9i32,
        0..16i32,
        0..3i32,
    )
        .prop_map(|(n, r, w, perm, flag)| QueueData {
            broker_name: n.to_string(),
            read_queue_nums: r,
            write_queue_nums: w,
            perm,
            topic_sys_flag: flag,
        })
}

fn any_broker(
    cluster: &'static str,
    names: &'static [&'static str],
) -> impl Strategy<Value = BrokerData> {
    (prop::sample::select(names), 0..3u8, any::<bool>()).prop_map(move |(n, ip, slave)| {
        let mut addrs = BTreeMap::from([(0, format!("10.{cluster}.{ip}.1:10911"))]);
        if slave {
            addrs.insert(1, format!("10.{cluster}.{ip}.2:10911"));
        }
        BrokerData {
            cluster: cluster.to_string(),
            broker_name: n.to_string(),
            broker_addrs: addrs,
            zone_name: None,
            enable_acting_master: None,
        }
    })
}

fn any_route(
    cluster: &'static str,
    names: &'static [&'static str],
) -> impl Strategy<Value = TopicRouteData> {
    (
        prop::collection::vec(any_queue(names), 1..6),
        prop::collection::vec(any_broker(cluster, names), 0..6),
        prop::option::of(prop::sample::select(vec!["sa:4;ta:4", "tb:2", "sb:8;sa:1"])),
    )
        .prop_map(|(queue_datas, broker_datas, conf)| TopicRouteData {
            order_topic_conf: conf.map(str::to_string),
            queue_datas,
            broker_datas,
            ..Default::default()
        })
}

fn any_upstream(
    cluster: &'static str,
    names: &'static [&'static str],
) -> impl Strategy<Value = Option<Option<TopicRouteData>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(None)),
        6 => any_route(cluster, names).prop_map(|r| Some(Some(r))),
    ]
}

fn upstream(u: &Option<Option<TopicRouteData>>) -> UpstreamRoute<'_> {
    match u {
        None => UpstreamRoute::Unknown,
        Some(None) => UpstreamRoute::NotFound,
        Some(Some(r)) => UpstreamRoute::Found(r),
    }
}

fn any_rule() -> impl Strategy<Value = TopicRule> {
    prop_oneof![
        Just(TopicRule::AutoCreateTemplate),
        Just(TopicRule::GroupUnion),
        Just(TopicRule::Unmanaged),
        (prop::sample::select(Stage::ALL.to_vec()), any::<bool>())
            .prop_map(|(stage, g)| staged(stage, g)),
    ]
}

/// Optionally renames one target queue (and its broker) to a source name: a collision
/// (when the source has that name).
fn collide(t: Option<Option<TopicRouteData>>, yes: bool) -> Option<Option<TopicRouteData>> {
    if yes { collide_with(t, "sa") } else { t }
}

fn collide_with(
    mut t: Option<Option<TopicRouteData>>,
    name: &str,
) -> Option<Option<TopicRouteData>> {
    if let Some(Some(r)) = &mut t {
        let old = r.queue_datas[0].broker_name.clone();
        r.queue_datas[0].broker_name = name.into();
        for b in &mut r.broker_datas {
            if b.broker_name == old {
                b.broker_name = name.into();
            }
        }
    }
    t
}

fn names_of(u: &Option<Option<TopicRouteData>>) -> BTreeSet<String> {
    match u {
        Some(Some(r)) => r
            .queue_datas
            .iter()
            .map(|q| q.broker_name.clone())
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn shuffled(u: &Option<Option<TopicRouteData>>, seed: u64) -> Option<Option<TopicRouteData>> {
    let mut u = u.clone();
    if let Some(Some(r)) = &mut u {
        // A deterministic permutation per seed (rotate + reverse).
        let n = r.queue_datas.len();
        r.queue_datas.rotate_left(seed as usize % n.max(1));
        if seed % 2 == 1 {
            r.queue_datas.reverse();
            r.broker_datas.reverse();
        }
        let m = r.broker_datas.len();
        r.broker_datas.rotate_left((seed / 2) as usize % m.max(1));
    }
    u
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// The merge never adds a permission bit, keeps each queue's counts, and lists every
    /// broker name at most once (queues and brokers).
    #[test]
    fn never_adds_permissions_and_no_duplicates(
        rule in any_rule(),
        s in any_upstream("A", &SOURCE_NAMES),
        t in any_upstream("B", &TARGET_NAMES),
        c in any::<bool>(),
    ) {
        let t = collide(t, c);
        let inputs: Vec<QueueData> = [&s, &t]
            .iter()
            .filter_map(|u| u.as_ref().and_then(|r| r.as_ref()))
            .flat_map(|r| r.queue_datas.clone())
            .collect();
        if let MergeOutcome::Route(out) = merge_route(rule, &input(upstream(&s), upstream(&t))) {
            let mut names = BTreeSet::new();
            for q in &out.route.queue_datas {
                prop_assert!(names.insert(q.broker_name.clone()), "queue {} twice", q.broker_name);
                prop_assert!(
                    inputs.iter().any(|i| i.broker_name == q.broker_name
                        && q.perm & !i.perm == 0
                        && q.read_queue_nums == i.read_queue_nums
                        && q.write_queue_nums == i.write_queue_nums),
                    "{q:?} has no input it could come from"
                );
            }
            let mut bnames = BTreeSet::new();
            for b in &out.route.broker_datas {
                prop_assert!(bnames.insert(b.broker_name.clone()));
                prop_assert!(names.contains(&b.broker_name));
            }
        }
    }

    /// Staged topics follow the stage table: a cluster without a mask is absent, one with a
    /// mask has every broker present with perm within the mask; unknown clusters the stage
    /// needs give Unavailable, never a route or TOPIC_NOT_EXIST.
    #[test]
    fn stage_table_respected(
        stage in prop::sample::select(Stage::ALL.to_vec()),
        grace in any::<bool>(),
        s in any_upstream("A", &SOURCE_NAMES),
        t in any_upstream("B", &TARGET_NAMES),
    ) {
        let perms = route_perms(stage, grace);
        let outcome = merge_route(staged(stage, grace), &input(upstream(&s), upstream(&t)));
        let needed_unknown = [(Side::Source, &s), (Side::Target, &t)]
            .into_iter()
            .find(|(side, u)| perms.mask(*side).is_some() && u.is_none());
        if let Some((side, _)) = needed_unknown {
            prop_assert_eq!(outcome, MergeOutcome::Unavailable(side));
            return Ok(());
        }
        let (sn, tn) = (names_of(&s), names_of(&t));
        match outcome {
            MergeOutcome::Route(out) => {
                let got: BTreeMap<String, i32> = perms_by_broker(&out.route);
                for (side, names) in [(Side::Source, &sn), (Side::Target, &tn)] {
                    match perms.mask(side) {
                        None => prop_assert!(names.iter().all(|n| !got.contains_key(n))),
                        Some(mask) => for n in names {
                            let p = got.get(n).copied();
                            prop_assert!(p.is_some(), "{side:?} broker {n} missing in {stage}");
                            prop_assert_eq!(p.unwrap() & !i32::from(mask), 0);
                        },
                    }
                }
            }
            MergeOutcome::TopicNotExist => {
                let included = |side, names: &BTreeSet<String>| perms.mask(side).is_some() && !names.is_empty();
                prop_assert!(!included(Side::Source, &sn) && !included(Side::Target, &tn));
            }
            MergeOutcome::Unavailable(side) => prop_assert!(false, "unexpected Unavailable({side:?})"),
        }
    }

    /// The answer does not depend on the order of the inputs' lists: byte-identical in both
    /// dialects, so no client sees a route change between polls.
    #[test]
    fn deterministic_output(
        rule in any_rule(),
        s in any_upstream("A", &SOURCE_NAMES),
        t in any_upstream("B", &TARGET_NAMES),
        c in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let t = collide(t, c);
        let (s2, t2) = (shuffled(&s, seed), shuffled(&t, seed.rotate_left(7)));
        let a = merge_route(rule, &input(upstream(&s), upstream(&t)));
        let b = merge_route(rule, &input(upstream(&s2), upstream(&t2)));
        match (a, b) {
            (MergeOutcome::Route(a), MergeOutcome::Route(b)) => {
                for d in [RouteDialect::Standard, RouteDialect::Fastjson] {
                    prop_assert_eq!(encode_route(&a.route, d), encode_route(&b.route, d));
                }
            }
            (a, b) => prop_assert_eq!(a, b),
        }
    }

    /// Any broker name in both clusters: the answer is the source's route as-is.
    #[test]
    fn collision_means_source_only(
        rule in any_rule(),
        s in any_route("A", &SOURCE_NAMES),
        t in any_upstream("B", &TARGET_NAMES),
    ) {
        let t = collide_with(t, &s.queue_datas[0].broker_name);
        let global: BTreeSet<String> = BTreeSet::new();
        let mut inp = input(UpstreamRoute::Found(&s), upstream(&t));
        inp.cluster_collisions = &global;
        let colliding = matches!(&t, Some(Some(_)));
        let out = merge_route(rule, &inp);
        if colliding {
            let out = match out {
                MergeOutcome::Route(r) => r,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert!(!out.collisions.is_empty());
            prop_assert_eq!(out.sides, vec![Side::Source]);
            prop_assert_eq!(out.route, verbatim(&s));
        }
        // A cluster-level collision forces the same for any topic.
        let global: BTreeSet<String> = ["zz".to_string()].into();
        inp.cluster_collisions = &global;
        let out = merged(merge_route(rule, &inp));
        prop_assert_eq!(out.route, verbatim(&s));
    }

    /// Masks only take bits away, for every perm value a cluster may send.
    #[test]
    fn masks_only_clear_bits(perm in any::<i32>(), stage in prop::sample::select(Stage::ALL.to_vec()), g in any::<bool>()) {
        let s = route("A", &[("sa", perm)]);
        let t = route("B", &[("ta", perm)]);
        if let MergeOutcome::Route(out) = merge_route(staged(stage, g), &input(UpstreamRoute::Found(&s), UpstreamRoute::Found(&t))) {
            for q in out.route.queue_datas {
                prop_assert_eq!(q.perm & !perm, 0);
                prop_assert_eq!(q.perm & !i32::from(MASK_AS_IS), 0);
            }
        }
    }
}

#[test]
fn as_is_keeps_the_priority_and_odd_bits() {
    // INITIAL via the stage mask clears bits outside R/W/inherit; "as-is" rules do not.
    let s = route("A", &[("sa", 14)]);
    let out = merged(merge_route(
        TopicRule::Unmanaged,
        &input(UpstreamRoute::Found(&s), UpstreamRoute::NotFound),
    ));
    assert_eq!(out.route.queue_datas[0].perm, 14);
    let out = merged(merge_route(
        staged(Stage::Initial, false),
        &input(UpstreamRoute::Found(&s), UpstreamRoute::NotFound),
    ));
    assert_eq!(out.route.queue_datas[0].perm, 6);
    assert_eq!(i32::from(PERM_RW), 6);
}
