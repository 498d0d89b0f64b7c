//! Test support: scriptable fake NameServers (real remoting servers on 127.0.0.1 with
//! routes a test sets), an in-process router over an embedded store, and store helpers.
#![allow(dead_code)]

pub mod proc;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::{MigrationStep, Stage, TargetType, TaskState};
use ferry_remoting::body::{KVTable, TopicList};
use ferry_remoting::headers::GetRouteInfoRequestHeader;
use ferry_remoting::{
    BrokerData, ClusterInfo, QueueData, RemotingCommand, RequestCode, RequestHandler, ResponseCode,
    RouteDialect, ServerConfig, TopicRouteData, encode_cluster_info, encode_route,
    serve_connections,
};
use ferry_router::{CancellationToken, Router, RouterConfig, StoreSlot, UpstreamConfig};
use ferry_store::{EmbeddedStore, MigrationStore, MigrationTask, StageChange, TopicState};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,ferry_router=info".into()),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------- fake NameServer

#[derive(Default)]
pub struct FakeState {
    pub cluster: String,
    pub routes: BTreeMap<String, TopicRouteData>,
    pub brokers: BTreeMap<String, BrokerData>,
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
    /// Answer routes in plain fastjson (unquoted keys), as an old Java NameServer does.
    pub fastjson: bool,
    /// Every request received, for forwarding checks.
    pub seen: Vec<RemotingCommand>,
    /// Delay before answering.
    pub delay: Duration,
}

struct FakeHandler(Arc<Mutex<FakeState>>);

#[async_trait::async_trait]
impl RequestHandler for FakeHandler {
    async fn handle(&self, _peer: SocketAddr, req: RemotingCommand) -> Option<RemotingCommand> {
        let delay = self.0.lock().unwrap().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.0.lock().unwrap();
        st.seen.push(req.clone());
        let ok = || req.respond_to(ResponseCode::SUCCESS, None);
        let resp = match RequestCode(req.code) {
            RequestCode::GET_ROUTEINFO_BY_TOPIC => {
                match st.routes.get(req.ext("topic").unwrap_or_default()) {
                    Some(r) => {
                        let d = if st.fastjson {
                            RouteDialect::Fastjson
                        } else {
                            RouteDialect::for_command(&req)
                        };
                        ok().with_body(encode_route(r, d))
                    }
                    None => req.respond_to(
                        ResponseCode::TOPIC_NOT_EXIST,
                        Some("No topic route info in name server".into()),
                    ),
                }
            }
            RequestCode::GET_BROKER_CLUSTER_INFO => {
                let info = ClusterInfo {
                    broker_addr_table: st.brokers.clone(),
                    cluster_addr_table: [(
                        st.cluster.clone(),
                        st.brokers.keys().cloned().collect(),
                    )]
                    .into(),
                };
                ok().with_body(encode_cluster_info(&info, RouteDialect::Fastjson))
            }
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => ok().with_body(
                TopicList {
                    topic_list: st.routes.keys().cloned().collect(),
                    broker_addr: None,
                }
                .to_body()
                .unwrap(),
            ),
            RequestCode::GET_KV_CONFIG => {
                let v = st
                    .kv
                    .get(req.ext("namespace").unwrap_or_default())
                    .and_then(|ns| ns.get(req.ext("key").unwrap_or_default()));
                match v {
                    Some(v) => ok().with_ext_field("value", v.clone()),
                    None => req.respond_to(ResponseCode::QUERY_NOT_FOUND, Some("none".into())),
                }
            }
            RequestCode::GET_KVLIST_BY_NAMESPACE => {
                match st.kv.get(req.ext("namespace").unwrap_or_default()) {
                    Some(t) if !t.is_empty() => {
                        ok().with_body(KVTable { table: t.clone() }.to_body().unwrap())
                    }
                    _ => req.respond_to(ResponseCode::QUERY_NOT_FOUND, Some("none".into())),
                }
            }
            _ => ok().with_remark(format!("fake {} handled {}", st.cluster, req.code)),
        };
        Some(resp)
    }
}

/// A NameServer a test scripts. Stop/start keep its port and state.
pub struct FakeNamesrv {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
    stop: Option<CancellationToken>,
    task: Option<JoinHandle<()>>,
}

impl FakeNamesrv {
    pub async fn start(cluster: &str) -> FakeNamesrv {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FakeState {
            cluster: cluster.to_string(),
            ..Default::default()
        }));
        let mut f = FakeNamesrv {
            addr,
            state,
            stop: None,
            task: None,
        };
        f.serve(listener);
        f
    }

    fn serve(&mut self, listener: TcpListener) {
        let token = CancellationToken::new();
        let handler: Arc<dyn RequestHandler> = Arc::new(FakeHandler(self.state.clone()));
        let cfg = ServerConfig {
            drain_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        self.task = Some(tokio::spawn(serve_connections(
            listener,
            handler,
            cfg,
            token.clone().cancelled_owned(),
        )));
        self.stop = Some(token);
    }

    /// Takes the NameServer down (connections closed, port refuses).
    pub async fn stop(&mut self) {
        if let Some(t) = self.stop.take() {
            t.cancel();
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Brings it back on the same port.
    pub async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => panic!("rebind {}: {e}", self.addr),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }

    /// Registers broker `name` (master address fake) in cluster info.
    pub fn add_broker(&self, name: &str) {
        let mut st = self.state.lock().unwrap();
        let cluster = st.cluster.clone();
        let n = st.brokers.len();
        st.brokers.insert(
            name.to_string(),
            BrokerData {
                cluster,
                broker_name: name.to_string(),
                broker_addrs: [(0, format!("127.0.0.{}:{}", n + 2, 10911))].into(),
                zone_name: None,
                enable_acting_master: Some(false),
            },
        );
    }

    /// Routes `topic` to `brokers` (each `queues` queues with `perm`).
    pub fn set_topic(&self, topic: &str, brokers: &[&str], queues: i32, perm: i32) {
        for b in brokers {
            if !self.state.lock().unwrap().brokers.contains_key(*b) {
                self.add_broker(b);
            }
        }
        let mut st = self.state.lock().unwrap();
        let route = TopicRouteData {
            queue_datas: brokers
                .iter()
                .map(|b| QueueData {
                    broker_name: b.to_string(),
                    read_queue_nums: queues,
                    write_queue_nums: queues,
                    perm,
                    topic_sys_flag: 0,
                })
                .collect(),
            broker_datas: brokers.iter().map(|b| st.brokers[*b].clone()).collect(),
            ..Default::default()
        };
        st.routes.insert(topic.to_string(), route);
    }

    pub fn remove_topic(&self, topic: &str) {
        self.state.lock().unwrap().routes.remove(topic);
    }

    pub fn set_kv(&self, ns: &str, key: &str, value: &str) {
        self.state
            .lock()
            .unwrap()
            .kv
            .entry(ns.into())
            .or_default()
            .insert(key.into(), value.into());
    }

    pub fn seen_codes(&self) -> Vec<i32> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .map(|c| c.code)
            .collect()
    }
}

impl Drop for FakeNamesrv {
    fn drop(&mut self) {
        if let Some(t) = self.stop.take() {
            t.cancel();
        }
    }
}

// ---------------------------------------------------------------------- store helpers

pub fn task(id: &str, source: &str, target: &str) -> MigrationTask {
    MigrationTask {
        id: id.into(),
        name: id.into(),
        source_cluster: "ClusterA".into(),
        source_namesrv: source.into(),
        target_cluster: format!("ClusterB-{id}"),
        target_namesrv: target.into(),
        target_type: TargetType::V5,
        step: MigrationStep::GrayMigration,
        state: TaskState::Running,
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: "test".into(),
        extra: serde_json::Value::Null,
    }
}

pub async fn add_topics(store: &dyn MigrationStore, task_id: &str, topics: &[&str]) {
    store
        .add_topics(
            task_id,
            topics
                .iter()
                .map(|t| TopicState::initial(task_id, *t, "test"))
                .collect(),
        )
        .await
        .unwrap();
}

/// Moves `topic` one step at a time to `to`. Returns the revision of the last change.
pub async fn move_to(store: &dyn MigrationStore, task_id: &str, topic: &str, to: Stage) -> i64 {
    let mut cur = store.get_topic(task_id, topic).await.unwrap();
    while cur.value.stage != to {
        let next = if cur.value.stage < to {
            cur.value.stage.next().unwrap()
        } else {
            cur.value.stage.prev().unwrap()
        };
        cur = store
            .change_stage(StageChange {
                task_id: task_id.into(),
                topic: topic.into(),
                expected_revision: cur.revision,
                to: next,
                actor: "test".into(),
                forced: true,
                reason: None,
                task_revision: None,
            })
            .await
            .unwrap();
    }
    cur.revision
}

// ---------------------------------------------------------------------- in-process router

/// Router settings for tests: short TTLs and timeouts.
pub fn test_config(task_id: &str) -> RouterConfig {
    let mut cfg = RouterConfig::new(task_id);
    cfg.upstream = UpstreamConfig {
        route_ttl: Duration::from_millis(200),
        timeout: Duration::from_millis(700),
        retry_down_after: Duration::from_millis(500),
        ..UpstreamConfig::default()
    };
    cfg.refresh_interval = Duration::from_millis(200);
    cfg.store_probe_interval = Duration::from_millis(200);
    cfg.task_poll_interval = Duration::from_millis(300);
    cfg.registration_ttl_secs = 3;
    cfg
}

pub struct TestRouter {
    pub router: Arc<Router>,
    pub addr: String,
    pub store: Arc<dyn MigrationStore>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl TestRouter {
    pub async fn start(store: Arc<dyn MigrationStore>, cfg: RouterConfig) -> TestRouter {
        Self::start_with(store, cfg, ferry_router::default_server_config()).await
    }

    pub async fn start_with(
        store: Arc<dyn MigrationStore>,
        cfg: RouterConfig,
        server: ServerConfig,
    ) -> TestRouter {
        let router = Router::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(ferry_router::serve_namesrv(
                router.clone(),
                listener,
                server,
                stop.clone().cancelled_owned(),
            )),
            tokio::spawn(ferry_router::sync::run(
                router.clone(),
                StoreSlot::ready(store.clone()),
                stop.clone(),
            )),
        ];
        TestRouter {
            router,
            addr,
            store,
            stop,
            tasks,
        }
    }

    pub async fn wait_ready(&self) {
        wait_until("router ready", Duration::from_secs(10), || {
            self.router.upstreams().is_some()
        })
        .await;
    }

    /// Waits until the router holds `stage` for `topic`.
    pub async fn wait_stage(&self, topic: &str, stage: Option<Stage>) {
        wait_until(
            &format!("{topic} at {stage:?}"),
            Duration::from_secs(10),
            || self.router.stage_of(topic).map(|s| s.0) == stage,
        )
        .await;
    }

    pub async fn request(&self, cmd: RemotingCommand) -> RemotingCommand {
        ferry_testkit::rocketmq::request(&self.addr, cmd)
            .await
            .unwrap()
    }

    /// 105 as a client of `version` (standard JSON dialect asked iff `accept`).
    pub async fn route(&self, topic: &str, version: i32) -> RemotingCommand {
        let header = GetRouteInfoRequestHeader {
            topic: topic.into(),
            ..Default::default()
        };
        self.request(
            RemotingCommand::request_with_header(RequestCode::GET_ROUTEINFO_BY_TOPIC, &header)
                .with_version(version),
        )
        .await
    }

    /// Queue perm by broker name of the route the router answers (panics unless SUCCESS).
    pub async fn perms(&self, topic: &str) -> BTreeMap<String, i32> {
        let resp = self.route(topic, 479).await;
        assert_eq!(resp.code, 0, "{topic}: {:?}", resp.remark);
        let r = TopicRouteData::from_body(&resp.body).unwrap();
        ferry_router::merge::perms_by_broker(&r)
    }

    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An embedded store with a task whose source/target are the fakes.
pub async fn store_with_task(
    id: &str,
    source: &FakeNamesrv,
    target: &FakeNamesrv,
) -> Arc<dyn MigrationStore> {
    let store: Arc<dyn MigrationStore> = Arc::new(EmbeddedStore::in_memory());
    store
        .create_task(task(id, &source.addr_str(), &target.addr_str()))
        .await
        .unwrap();
    store
}

pub fn perms(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(b, p)| (b.to_string(), *p)).collect()
}

pub fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub type Counts = HashMap<String, usize>;
