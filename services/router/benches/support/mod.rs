//! Shared by the router benches: the real parts (etcd, two RocketMQ clusters, the
//! `ferry-router` binary), a task in the store, and a closed-loop raw 105 client
//! (`FrameCodec` over one TCP connection, one request in flight) that is the same whether
//! it talks to a router or to a NameServer.
#![allow(dead_code, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::Stage;
use ferry_core::{MigrationStep, TargetType, TaskState};
use ferry_remoting::body::TopicConfig;
use ferry_remoting::headers::GetRouteInfoRequestHeader;
use ferry_remoting::{
    BrokerAdmin, ClientConfig, FrameCodec, RemotingClient, RemotingCommand, RequestCode,
    TopicRouteData,
};
use ferry_store::{
    EtcdOptions, EtcdStore, MigrationStore, MigrationTask, StageChange, TopicState, Versioned,
};
use ferry_testkit::{ServiceProcess, free_port};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// `name` from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set (`VmHWM`) of `pid`, MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `q`-quantile of sorted durations, in ms.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Rounds to 3 decimals (JSON output).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Creates `names` (8 queues, RW) on the broker with the batch admin call, then waits
/// (≤ 60 s) until the NameServer routes the first and the last of them.
pub async fn create_topics(broker: &str, namesrv: &str, names: &[String]) {
    let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig {
        request_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    }));
    let configs: Vec<TopicConfig> = names
        .iter()
        .map(|n| TopicConfig {
            topic_name: n.clone(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            ..Default::default()
        })
        .collect();
    admin
        .create_topics(broker, &configs)
        .await
        .expect("create topics");
    let deadline = Instant::now() + Duration::from_secs(60);
    for probe in [names.first(), names.last()].into_iter().flatten() {
        loop {
            if let Ok(Some(_)) = ferry_testkit::rocketmq::fetch_route(namesrv, probe).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{probe} not routed by {namesrv} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A store client on `etcd` under `prefix`.
pub async fn store(etcd: &str, prefix: &str) -> EtcdStore {
    EtcdStore::connect(
        &[etcd.to_string()],
        EtcdOptions::default().with_prefix(prefix),
    )
    .await
    .expect("connect to etcd")
}

/// Creates task `id` (source ClusterA at `source`, target ClusterB at `target`) with
/// `topics` at INITIAL.
pub async fn create_task(
    store: &dyn MigrationStore,
    id: &str,
    source: &str,
    target: &str,
    topics: &[String],
) {
    store
        .create_task(MigrationTask {
            id: id.into(),
            name: id.into(),
            source_cluster: "ClusterA".into(),
            source_namesrv: source.into(),
            target_cluster: "ClusterB".into(),
            target_namesrv: target.into(),
            target_type: TargetType::V5,
            step: MigrationStep::GrayMigration,
            state: TaskState::Running,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: "bench".into(),
            extra: serde_json::Value::Null,
        })
        .await
        .expect("create task");
    store
        .add_topics(
            id,
            topics
                .iter()
                .map(|t| TopicState::initial(id, t.as_str(), "bench"))
                .collect(),
        )
        .await
        .expect("add topics");
}

/// One forced stage change of `topic` from `cur` to `to`; returns the new version.
pub async fn change_stage(
    store: &dyn MigrationStore,
    task: &str,
    topic: &str,
    cur: &Versioned<TopicState>,
    to: Stage,
) -> Versioned<TopicState> {
    store
        .change_stage(StageChange {
            task_id: task.into(),
            topic: topic.into(),
            expected_revision: cur.revision,
            to,
            actor: "bench".into(),
            forced: true,
            reason: None,
            task_revision: None,
        })
        .await
        .expect("change stage")
}

/// Walks `topic` one step at a time to `to`.
pub async fn move_to(store: &dyn MigrationStore, task: &str, topic: &str, to: Stage) {
    let mut cur = store
        .get_topic(task, topic)
        .await
        .expect("topic in the task");
    while cur.value.stage != to {
        let next = if cur.value.stage < to {
            cur.value.stage.next().expect("a next stage")
        } else {
            cur.value.stage.prev().expect("a previous stage")
        };
        cur = change_stage(store, task, topic, &cur, next).await;
    }
}

/// A `ferry-router` process for `task` on free loopback ports.
pub struct RouterProc {
    pub process: ServiceProcess,
    pub namesrv: String,
}

impl RouterProc {
    pub async fn start(task: &str, etcd: &str, prefix: &str, extra: &[&str]) -> RouterProc {
        let namesrv = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--task-id",
            task,
            "--namesrv-listen",
            &namesrv,
            "--listen",
            &grpc,
            "--etcd-endpoints",
            etcd,
            "--etcd-prefix",
            prefix,
            "--ready-file",
            "ready",
        ];
        args.extend_from_slice(extra);
        let mut process = ServiceProcess::spawn(
            "ferry-router",
            env!("CARGO_BIN_EXE_ferry-router"),
            &args,
            &[("FERRY_LOG", "warn")],
        )
        .expect("spawn ferry-router");
        process
            .wait_for_file("ready", Duration::from_secs(20))
            .await
            .expect("ferry-router ready");
        RouterProc { process, namesrv }
    }

    /// Waits (≤ 30 s) until the router answers SUCCESS for `topic` (store loaded).
    pub async fn wait_serving(&self, topic: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = Conn::connect(&self.namesrv).await;
        loop {
            let resp = conn.route(topic).await;
            if resp.code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "router never answered {topic}: {} {:?}",
                resp.code,
                resp.remark
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid().expect("router running")
    }
}

/// A 105 request as a current Java client sends it (standard JSON dialect).
pub fn route_request(topic: &str) -> RemotingCommand {
    let header = GetRouteInfoRequestHeader {
        topic: topic.into(),
        ..Default::default()
    };
    RemotingCommand::request_with_header(RequestCode::GET_ROUTEINFO_BY_TOPIC, &header)
        .with_version(479)
}

/// One NameServer-protocol connection, one request in flight.
pub struct Conn {
    framed: Framed<TcpStream, FrameCodec>,
    opaque: i32,
}

impl Conn {
    pub async fn connect(addr: &str) -> Conn {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr}: timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            framed: Framed::new(stream, FrameCodec::new()),
            opaque: 0,
        }
    }

    /// The local (source) port of this connection.
    pub fn local_port(&self) -> u16 {
        self.framed
            .get_ref()
            .local_addr()
            .expect("local address")
            .port()
    }

    /// Sends a 105 for `topic` and waits (≤ 5 s) for its answer.
    pub async fn route(&mut self, topic: &str) -> RemotingCommand {
        self.opaque = self.opaque.wrapping_add(1);
        let opaque = self.opaque;
        let exchange = async {
            self.framed
                .send(route_request(topic).with_opaque(opaque))
                .await
                .expect("send 105");
            loop {
                let resp = self
                    .framed
                    .next()
                    .await
                    .expect("connection open")
                    .expect("a frame");
                if resp.is_response() && resp.opaque == opaque {
                    return resp;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .unwrap_or_else(|_| panic!("105 {topic}: no answer within 5 s"))
    }

    /// Queue perm by broker name, `None` unless SUCCESS.
    pub async fn perms(&mut self, topic: &str) -> Option<BTreeMap<String, i32>> {
        let resp = self.route(topic).await;
        if resp.code != 0 {
            return None;
        }
        let r = TopicRouteData::from_body(&resp.body).ok()?;
        Some(ferry_router::merge::perms_by_broker(&r))
    }
}

/// One JSON object with the keys in the given order (the documented order).
pub fn json_line(fields: &[(&str, serde_json::Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(*k)))
        .collect();
    format!("{{{}}}", body.join(","))
}
