//! The router's NameServer protocol against scriptable fake upstream NameServers and an
//! embedded store: stages, rules per topic kind, dialects, lenient parsing, collisions,
//! stale-on-error, forwarding, bad input.

mod support;

use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_remoting::headers::GetRouteInfoRequestHeader;
use ferry_remoting::{
    ClusterInfo, RemotingCommand, RequestCode, ResponseCode, SerializeType, TopicRouteData,
};
use ferry_router::RouterAdmin;
use ferry_router::merge::ORDER_TOPIC_CONFIG;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup(task: &str) -> (FakeNamesrv, FakeNamesrv, TestRouter) {
    init_tracing();
    let a = FakeNamesrv::start("ClusterA").await;
    let b = FakeNamesrv::start("ClusterB").await;
    let store = store_with_task(task, &a, &b).await;
    let r = TestRouter::start(store, test_config(task)).await;
    r.wait_ready().await;
    (a, b, r)
}

#[tokio::test]
async fn every_stage_moves_permissions_and_done_grace_expires() {
    init_tracing();
    let a = FakeNamesrv::start("ClusterA").await;
    let b = FakeNamesrv::start("ClusterB").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    b.set_topic("T", &["broker-b"], 4, 6);
    let store = store_with_task("t1", &a, &b).await;
    add_topics(store.as_ref(), "t1", &["T"]).await;
    let mut cfg = test_config("t1");
    cfg.done_grace = Duration::from_secs(2);
    let r = TestRouter::start(store.clone(), cfg).await;
    r.wait_ready().await;
    r.wait_stage("T", Some(Stage::Initial)).await;
    assert_eq!(r.perms("T").await, perms(&[("broker-a", 6)]));

    let table = [
        (Stage::DualRead, perms(&[("broker-a", 6), ("broker-b", 4)])),
        (Stage::DualWrite, perms(&[("broker-a", 6), ("broker-b", 6)])),
        (Stage::Switching, perms(&[("broker-a", 4), ("broker-b", 6)])),
        (Stage::Done, perms(&[("broker-a", 0), ("broker-b", 6)])),
    ];
    for (stage, want) in table {
        let started = Instant::now();
        move_to(store.as_ref(), "t1", "T", stage).await;
        r.wait_stage("T", Some(stage)).await;
        let applied = started.elapsed();
        assert_eq!(r.perms("T").await, want, "{stage}");
        eprintln!("stage {stage} applied by the router {applied:?} after the store change");
    }
    // DONE's grace ends 2 s after the change: the source disappears from the route.
    wait_until_async("grace over", Duration::from_secs(6), || async {
        r.perms("T").await == perms(&[("broker-b", 6)])
    })
    .await;
    // Rollback is the same table read upwards.
    move_to(store.as_ref(), "t1", "T", Stage::Switching).await;
    r.wait_stage("T", Some(Stage::Switching)).await;
    assert_eq!(
        r.perms("T").await,
        perms(&[("broker-a", 4), ("broker-b", 6)])
    );
    r.shutdown().await;
}

async fn wait_until_async<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn topic_kinds_retry_tbw102_unknown_and_outside_the_task() {
    let (a, b, r) = setup("t2").await;
    a.set_topic("%RETRY%g", &["broker-a"], 1, 6);
    b.set_topic("%RETRY%g", &["broker-b"], 1, 6);
    b.set_topic("%DLQ%g", &["broker-b"], 1, 2);
    a.set_topic("TBW102", &["broker-a"], 8, 7);
    b.set_topic("TBW102", &["broker-b"], 8, 7);
    a.set_topic("Outside", &["broker-a"], 4, 6);
    b.set_topic("Outside", &["broker-b"], 4, 6);
    b.set_topic("OnlyTarget", &["broker-b"], 4, 6);

    assert_eq!(
        r.perms("%RETRY%g").await,
        perms(&[("broker-a", 6), ("broker-b", 6)])
    );
    assert_eq!(r.perms("%DLQ%g").await, perms(&[("broker-b", 2)]));
    assert_eq!(r.perms("TBW102").await, perms(&[("broker-a", 7)]));
    assert_eq!(r.perms("Outside").await, perms(&[("broker-a", 6)]));
    assert_eq!(r.perms("OnlyTarget").await, perms(&[("broker-b", 6)]));
    let resp = r.route("Nowhere", 479).await;
    assert_eq!(resp.code, ResponseCode::TOPIC_NOT_EXIST);
    assert!(
        resp.remark
            .unwrap()
            .starts_with("No topic route info in name server for the topic: Nowhere")
    );
    // TBW102 never comes from the target, even when only the target has it.
    a.remove_topic("TBW102");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.route("TBW102", 479).await.code,
        ResponseCode::TOPIC_NOT_EXIST
    );
}

#[tokio::test]
async fn both_dialects_and_deterministic_answers() {
    let (a, b, r) = setup("t3").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    b.set_topic("T", &["broker-b"], 4, 6);
    // An old Java NameServer answers the router in fastjson: parsed all the same.
    a.state.lock().unwrap().fastjson = true;
    add_topics(r.store.as_ref(), "t3", &["T"]).await;
    move_to(r.store.as_ref(), "t3", "T", Stage::DualWrite).await;
    r.wait_stage("T", Some(Stage::DualWrite)).await;

    let new = r.route("T", 479).await;
    let new_body = String::from_utf8(new.body.to_vec()).unwrap();
    assert!(new_body.contains(r#""brokerAddrs":{"0":"#), "{new_body}");
    serde_json::from_str::<serde_json::Value>(&new_body).expect("standard JSON");
    let old = r.route("T", 317).await;
    let old_body = String::from_utf8(old.body.to_vec()).unwrap();
    assert!(old_body.contains(r#""brokerAddrs":{0:"#), "{old_body}");
    assert_eq!(old_body.replace("{0:", "{\"0\":"), new_body);
    // acceptStandardJsonOnly wins over an old version.
    let header = GetRouteInfoRequestHeader {
        topic: "T".into(),
        accept_standard_json_only: Some(true),
        ..Default::default()
    };
    let accept = r
        .request(
            RemotingCommand::request_with_header(RequestCode::GET_ROUTEINFO_BY_TOPIC, &header)
                .with_version(317),
        )
        .await;
    assert_eq!(accept.body, new.body);
    // Nothing changed: byte-identical answers poll after poll (cache hits and misses).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(r.route("T", 479).await.body, new.body);
        assert_eq!(r.route("T", 317).await.body, old.body);
    }
    // The admin API shows exactly what a client of a given version gets.
    use ferry_api::router::v1::router_service_server::RouterService;
    use ferry_api::router::v1::{GetMergedRouteRequest, GetTopicPresenceRequest};
    let admin = RouterAdmin::new(r.router.clone());
    let merged = |topic: &str, client_version: i32| {
        admin.get_merged_route(tonic::Request::new(GetMergedRouteRequest {
            topic: topic.into(),
            client_version,
        }))
    };
    let m = merged("T", 317).await.unwrap().into_inner();
    assert_eq!(m.route_json.as_bytes(), &old.body[..]);
    assert_eq!(m.stage, ferry_api::common::v1::Stage::DualWrite as i32);
    assert!(!m.stale);
    let m = merged("T", 0).await.unwrap().into_inner();
    assert_eq!(m.route_json.as_bytes(), &new.body[..]);
    assert_eq!(
        merged("Nowhere", 0).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let p = admin
        .get_topic_presence(tonic::Request::new(GetTopicPresenceRequest {
            topics: vec!["T".into()],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.topics.len(), 1);
    // testkit's request() opens a connection per call: an address per lookup.
    assert!(p.topics[0].client_count > 1);
    assert_eq!(
        p.topics[0].client_count as usize,
        p.topics[0].client_addrs.len()
    );
    assert_eq!(p.router_id, r.router.id());
}

/// A frame with a hand-written JSON header (no serializeTypeCurrentRPC, numbers in
/// extFields, a language Java knows but we need not).
fn raw_json_frame(header: &str) -> Vec<u8> {
    let h = header.as_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + h.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(h);
    out
}

async fn read_frame(stream: &mut TcpStream, within: Duration) -> Option<RemotingCommand> {
    let read = async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.ok()?;
        let n = i32::from_be_bytes(len) as usize;
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).await.ok()?;
        RemotingCommand::decode(buf.into()).ok()
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

#[tokio::test]
async fn lenient_parsing_like_the_java_nameserver() {
    let (a, _b, r) = setup("t4").await;
    a.set_topic("123", &["broker-a"], 4, 6);
    let mut s = TcpStream::connect(&r.addr).await.unwrap();
    // Go-style header: no serializeTypeCurrentRPC, numeric topic, numeric boolean.
    s.write_all(&raw_json_frame(
        r#"{"code":105,"language":"GO","version":317,"opaque":41,"flag":0,"remark":"","extFields":{"topic":123,"acceptStandardJsonOnly":"false"}}"#,
    ))
    .await
    .unwrap();
    let resp = read_frame(&mut s, Duration::from_secs(3)).await.unwrap();
    assert_eq!((resp.code, resp.opaque), (0, 41));
    assert!(resp.is_response());
    assert!(String::from_utf8_lossy(&resp.body).contains("{0:"));
    // Binary (ROCKETMQ) header on the same connection, unknown language byte.
    let bin = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC)
        .with_ext_field("topic", "123")
        .with_opaque(42)
        .with_version(63)
        .with_language(ferry_remoting::LanguageCode::Unknown(99))
        .with_serialize_type(SerializeType::RocketMq);
    s.write_all(&bin.to_frame().unwrap()).await.unwrap();
    let resp = read_frame(&mut s, Duration::from_secs(3)).await.unwrap();
    assert_eq!((resp.code, resp.opaque), (0, 42));
    // Missing topic: Java's header check error, connection kept.
    s.write_all(&raw_json_frame(r#"{"code":105,"opaque":43}"#))
        .await
        .unwrap();
    let resp = read_frame(&mut s, Duration::from_secs(3)).await.unwrap();
    assert_eq!((resp.code, resp.opaque), (1, 43));
    // Unknown code: REQUEST_CODE_NOT_SUPPORTED like Java.
    s.write_all(&raw_json_frame(r#"{"code":99999,"opaque":44}"#))
        .await
        .unwrap();
    let resp = read_frame(&mut s, Duration::from_secs(3)).await.unwrap();
    assert_eq!((resp.code, resp.opaque), (3, 44));
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 99999 not supported")
    );
    // Oneway: never answered, the next request still is.
    s.write_all(&raw_json_frame(
        r#"{"code":105,"opaque":45,"flag":2,"extFields":{"topic":"123"}}"#,
    ))
    .await
    .unwrap();
    s.write_all(&raw_json_frame(
        r#"{"code":105,"opaque":46,"extFields":{"topic":"123"}}"#,
    ))
    .await
    .unwrap();
    let resp = read_frame(&mut s, Duration::from_secs(3)).await.unwrap();
    assert_eq!(resp.opaque, 46, "the oneway request must not be answered");
    // Presence recorded language and version from the headers.
    let admin = RouterAdmin::new(r.router.clone());
    use ferry_api::router::v1::router_service_server::RouterService;
    let list = admin
        .list_client_presence(tonic::Request::new(
            ferry_api::router::v1::ListClientPresenceRequest {
                topic: "123".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.clients.len(), 1);
    let c = &list.clients[0];
    // 41, 42 and 46: the topic-less and the oneway requests are not lookups.
    assert_eq!(c.lookups, 3);
    assert_eq!(c.client_addr, s.local_addr().unwrap().to_string());
}

#[tokio::test]
async fn bad_input_closes_the_connection_and_nothing_else() {
    init_tracing();
    let a = FakeNamesrv::start("ClusterA").await;
    let b = FakeNamesrv::start("ClusterB").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    let store = store_with_task("t5", &a, &b).await;
    let server = ferry_remoting::ServerConfig {
        idle_timeout: Duration::from_millis(800),
        ..ferry_router::default_server_config()
    };
    let r = TestRouter::start_with(store, test_config("t5"), server).await;
    r.wait_ready().await;

    let closed = |mut s: TcpStream| async move {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    };
    // Oversized frame: refused from its length prefix, before any allocation.
    let mut s = TcpStream::connect(&r.addr).await.unwrap();
    s.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
    assert!(closed(s).await, "oversized frame must close the connection");
    // Malformed: unknown serialize type.
    let mut s = TcpStream::connect(&r.addr).await.unwrap();
    let mut f = raw_json_frame(r#"{"code":105}"#);
    f[4] = 7;
    s.write_all(&f).await.unwrap();
    assert!(closed(s).await, "malformed frame must close the connection");
    // Garbage JSON header.
    let mut s = TcpStream::connect(&r.addr).await.unwrap();
    s.write_all(&raw_json_frame("{\"code\":[[[")).await.unwrap();
    assert!(closed(s).await, "garbage header must close the connection");
    // Slowloris: a frame trickled byte by byte never completes; closed on idle timeout.
    let mut s = TcpStream::connect(&r.addr).await.unwrap();
    let frame = raw_json_frame(r#"{"code":105,"extFields":{"topic":"T"}}"#);
    let started = Instant::now();
    let mut closed_early = false;
    for byte in &frame[..frame.len() - 1] {
        if s.write_all(&[*byte]).await.is_err() {
            closed_early = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    assert!(closed_early || closed(s).await, "slowloris must be closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The router still answers.
    assert_eq!(r.route("T", 479).await.code, 0);
}

#[tokio::test]
async fn broker_name_collision_refuses_to_merge() {
    let (a, b, r) = setup("t6").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    b.set_topic("T", &["broker-b"], 4, 6);
    b.set_topic("U", &["broker-a"], 4, 6); // target also has a "broker-a"
    add_topics(r.store.as_ref(), "t6", &["T"]).await;
    move_to(r.store.as_ref(), "t6", "T", Stage::DualWrite).await;
    r.wait_stage("T", Some(Stage::DualWrite)).await;
    wait_until("collision detected", Duration::from_secs(5), || {
        !r.router.collisions().is_empty()
    })
    .await;
    assert_eq!(r.router.collisions(), set_of(&["broker-a"]));
    // Source-only, even for a topic whose own routes do not collide.
    assert_eq!(r.perms("T").await, perms(&[("broker-a", 6)]));
    let info = r
        .request(RemotingCommand::request(
            RequestCode::GET_BROKER_CLUSTER_INFO,
        ))
        .await;
    let info = ClusterInfo::from_body(&info.body).unwrap();
    assert_eq!(
        info.cluster_addr_table.keys().collect::<Vec<_>>(),
        ["ClusterA"]
    );
    let reasons = r.router.health_reasons();
    assert!(
        reasons.iter().any(|l| l.contains("broker-a")),
        "{reasons:?}"
    );
    let admin = RouterAdmin::new(r.router.clone());
    use ferry_api::router::v1::router_service_server::RouterService;
    let status = admin
        .get_router_status(tonic::Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.broker_name_collisions, ["broker-a"]);
    // Renamed on the target: merging resumes.
    {
        let mut st = b.state.lock().unwrap();
        st.brokers.remove("broker-a");
        st.routes.remove("U");
    }
    wait_until("collision gone", Duration::from_secs(5), || {
        r.router.collisions().is_empty()
    })
    .await;
    assert_eq!(
        r.perms("T").await,
        perms(&[("broker-a", 6), ("broker-b", 6)])
    );
}

#[tokio::test]
async fn upstream_down_serves_last_known_routes() {
    let (a, mut b, r) = setup("t7").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    b.set_topic("T", &["broker-b"], 4, 6);
    add_topics(r.store.as_ref(), "t7", &["T"]).await;
    move_to(r.store.as_ref(), "t7", "T", Stage::Switching).await;
    r.wait_stage("T", Some(Stage::Switching)).await;
    let before = r.route("T", 479).await;
    assert_eq!(before.code, 0);

    b.stop().await;
    // Past the TTL: every answer is the same route, from the cache, and fast.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let now = r.route("T", 479).await;
        assert_eq!((now.code, &now.body), (0, &before.body));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    wait_until("target marked down", Duration::from_secs(5), || {
        r.router
            .fail_static_reasons()
            .iter()
            .any(|l| l.starts_with("target NameServers"))
    })
    .await;
    // A topic never seen before cannot be built without the target: an error, not 17.
    a.set_topic("New", &["broker-a"], 4, 6);
    b.set_topic("New", &["broker-b"], 4, 6);
    add_topics(r.store.as_ref(), "t7", &["New"]).await;
    move_to(r.store.as_ref(), "t7", "New", Stage::DualRead).await;
    r.wait_stage("New", Some(Stage::DualRead)).await;
    let resp = r.route("New", 479).await;
    assert_eq!(resp.code, ResponseCode::SYSTEM_ERROR, "{:?}", resp.remark);
    // A topic outside the task found on the source does not need the target at all.
    a.set_topic("Plain", &["broker-a"], 4, 6);
    assert_eq!(r.route("Plain", 479).await.code, 0);

    b.restart().await;
    wait_until_async("target back", Duration::from_secs(10), || async {
        r.router.fail_static_reasons().is_empty() && r.route("New", 479).await.code == 0
    })
    .await;
    assert_eq!(
        r.perms("New").await,
        perms(&[("broker-a", 6), ("broker-b", 4)])
    );
}

#[tokio::test]
async fn cluster_info_lists_kv_and_forwarding() {
    let (a, b, r) = setup("t8").await;
    a.set_topic("T", &["broker-a"], 8, 6);
    b.set_topic("T", &["broker-b"], 8, 6);
    b.set_topic("U", &["broker-b"], 8, 6);
    a.set_kv(ORDER_TOPIC_CONFIG, "T", "broker-a:8");
    b.set_kv(ORDER_TOPIC_CONFIG, "T", "broker-b:8");
    b.set_kv(ORDER_TOPIC_CONFIG, "U", "broker-b:4");

    // 106: both clusters (cluster info is cached for the route TTL).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = r
        .request(RemotingCommand::request(
            RequestCode::GET_BROKER_CLUSTER_INFO,
        ))
        .await;
    assert_eq!(resp.code, 0);
    let info = ClusterInfo::from_body(&resp.body).unwrap();
    assert_eq!(
        info.broker_addr_table.keys().collect::<Vec<_>>(),
        ["broker-a", "broker-b"]
    );
    assert_eq!(info.cluster_addr_table.len(), 2);
    // 206: union.
    let resp = r
        .request(RemotingCommand::request(
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        ))
        .await;
    let list = ferry_remoting::body::TopicList::from_body(&resp.body).unwrap();
    assert_eq!(list.topic_list, set_of(&["T", "U"]));
    // 101 / 219 ORDER_TOPIC_CONFIG merged (after the first refresh).
    let kv = |key: &str| {
        RemotingCommand::request(RequestCode::GET_KV_CONFIG)
            .with_ext_field("namespace", ORDER_TOPIC_CONFIG)
            .with_ext_field("key", key)
    };
    wait_until_async("order conf loaded", Duration::from_secs(5), || async {
        r.request(kv("T")).await.ext("value") == Some("broker-a:8;broker-b:8")
    })
    .await;
    assert_eq!(
        r.request(kv("Nope")).await.code,
        ResponseCode::QUERY_NOT_FOUND
    );
    let resp = r
        .request(
            RemotingCommand::request(RequestCode::GET_KVLIST_BY_NAMESPACE)
                .with_ext_field("namespace", ORDER_TOPIC_CONFIG),
        )
        .await;
    let table = ferry_remoting::body::KVTable::from_body(&resp.body).unwrap();
    assert_eq!(table.table["T"], "broker-a:8;broker-b:8");
    assert_eq!(table.table["U"], "broker-b:4");
    // Other namespaces and writes go to the cluster owning the traffic: the source.
    let put = RemotingCommand::request(RequestCode::PUT_KV_CONFIG)
        .with_ext_field("namespace", "X")
        .with_ext_field("key", "k")
        .with_ext_field("value", "v");
    let resp = r.request(put).await;
    assert_eq!(resp.code, 0);
    assert!(a.seen_codes().contains(&100));
    assert!(!b.seen_codes().contains(&100));
    // Per-broker calls go to the broker's cluster.
    let wipe = RemotingCommand::request(RequestCode::WIPE_WRITE_PERM_OF_BROKER)
        .with_ext_field("brokerName", "broker-b");
    assert_eq!(r.request(wipe).await.code, 0);
    assert!(b.seen_codes().contains(&205));
    // Broker writes are refused, and never reach an upstream.
    for code in [103, 104, 904] {
        let resp = r.request(RemotingCommand::request(code)).await;
        assert_eq!(
            resp.code,
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
            "{code}"
        );
    }
    assert!(!a.seen_codes().iter().any(|c| [103, 104, 904].contains(c)));
    // Once every topic of the task is DONE, forwarded requests go to the target.
    add_topics(r.store.as_ref(), "t8", &["T"]).await;
    move_to(r.store.as_ref(), "t8", "T", Stage::Done).await;
    r.wait_stage("T", Some(Stage::Done)).await;
    let put = RemotingCommand::request(RequestCode::PUT_KV_CONFIG)
        .with_ext_field("namespace", "X")
        .with_ext_field("key", "k2")
        .with_ext_field("value", "v");
    assert_eq!(r.request(put).await.code, 0);
    assert!(b.seen_codes().contains(&100));
    // DONE (grace): the ordered list has only the writable target broker.
    let route = r.route("T", 479).await;
    let route = TopicRouteData::from_body(&route.body).unwrap();
    assert_eq!(
        route.order_topic_conf, None,
        "no cluster put orderTopicConf in routes"
    );
}

#[tokio::test]
async fn not_ready_until_the_task_exists_then_serves() {
    init_tracing();
    let a = FakeNamesrv::start("ClusterA").await;
    let b = FakeNamesrv::start("ClusterB").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    let store: std::sync::Arc<dyn ferry_store::MigrationStore> =
        std::sync::Arc::new(ferry_store::EmbeddedStore::in_memory());
    let r = TestRouter::start(store.clone(), test_config("late")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = r.route("T", 479).await;
    assert_eq!(resp.code, ResponseCode::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("late"));
    store
        .create_task(task("late", &a.addr_str(), &b.addr_str()))
        .await
        .unwrap();
    r.wait_ready().await;
    assert_eq!(r.perms("T").await, perms(&[("broker-a", 6)]));
}

#[tokio::test]
async fn slow_upstream_does_not_hold_clients_past_the_timeout() {
    let (a, b, r) = setup("t9").await;
    a.set_topic("T", &["broker-a"], 4, 6);
    b.set_topic("%RETRY%g", &["broker-b"], 1, 6);
    a.set_topic("%RETRY%g", &["broker-a"], 1, 6);
    // Warm the cache, then make the target hang longer than the upstream timeout.
    assert_eq!(r.route("%RETRY%g", 479).await.code, 0);
    b.state.lock().unwrap().delay = Duration::from_secs(5);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = Instant::now();
    let resp = r.route("%RETRY%g", 479).await;
    assert_eq!(resp.code, 0, "stale answer expected");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered after {:?}",
        started.elapsed()
    );
}

/// Throughput and latency of cached route lookups (run by hand:
/// `cargo test --release -p ferry-router --test namesrv -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_cached_route_lookups() {
    let (a, b, r) = setup("bench").await;
    a.set_topic("T", &["broker-a"], 8, 6);
    b.set_topic("T", &["broker-b"], 8, 6);
    add_topics(r.store.as_ref(), "bench", &["T"]).await;
    move_to(r.store.as_ref(), "bench", "T", Stage::DualWrite).await;
    r.wait_stage("T", Some(Stage::DualWrite)).await;
    let (conns, per_conn) = (16, 2500);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let addr = r.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let mut lat = Vec::with_capacity(per_conn);
            for i in 0..per_conn {
                let opaque = (c * per_conn + i) as i32;
                let frame = raw_json_frame(&format!(
                    r#"{{"code":105,"opaque":{opaque},"version":479,"extFields":{{"topic":"T"}}}}"#
                ));
                let t = Instant::now();
                s.write_all(&frame).await.unwrap();
                let resp = read_frame(&mut s, Duration::from_secs(5)).await.unwrap();
                assert_eq!((resp.code, resp.opaque), (0, opaque));
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    eprintln!(
        "{} lookups over {conns} connections in {elapsed:?}: {:.0}/s, p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        all.last().unwrap()
    );
}
