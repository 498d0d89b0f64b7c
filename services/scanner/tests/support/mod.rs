//! Real and fault-injecting peers for the scanner's tests, all on 127.0.0.1.
//!
//! - [`register_fake_broker`]: registers a broker name at a real NameServer that points
//!   anywhere (a dead port = "one broker down", a [`GarbageBroker`] = malformed answers).
//!   The registration lives as long as the returned client's connection.
//! - [`GarbageBroker`]: speaks remoting framing but answers every request SUCCESS with a
//!   body that is not JSON.
//! - [`HungListener`]: accepts connections and never answers (a firewall that drops).
//! - [`AclBroker`]: a real `rocketmq-broker-rust` with ACL 2.0 authentication on, registered
//!   in an existing cluster (the testkit's harness has no ACL switch).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_remoting::{
    ClientConfig, RemotingClient, RemotingCommand, RequestCode, RequestHandler, ResponseCode,
    ServerConfig, serve_connections,
};
use ferry_testkit::free_port;
use ferry_testkit::rocketmq::{BROKER_EXE, require_peer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ferry_scanner=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A port nothing listens on (bound, then released).
pub fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Registers `broker` of `cluster` at `addr` with the NameServer; keep the client alive for
/// as long as the registration should last (the NameServer drops brokers whose
/// registering connection closes).
pub async fn register_fake_broker(
    namesrv: &str,
    cluster: &str,
    broker: &str,
    addr: &str,
) -> RemotingClient {
    let client = RemotingClient::new(ClientConfig::default());
    let body = serde_json::json!({
        "topicConfigSerializeWrapper": {
            "topicConfigTable": {},
            "dataVersion": {"timestamp": 0, "counter": 0, "stateVersion": 0},
            "topicQueueMappingInfoMap": {},
            "topicQueueMappingDetailMap": {},
            "mappingDataVersion": {"timestamp": 0, "counter": 0, "stateVersion": 0}
        },
        "filterServerList": []
    });
    let request = client
        .new_request(RequestCode::REGISTER_BROKER)
        .with_ext_field("brokerName", broker)
        .with_ext_field("brokerAddr", addr)
        .with_ext_field("clusterName", cluster)
        .with_ext_field("haServerAddr", addr)
        .with_ext_field("brokerId", "0")
        .with_ext_field("compressed", "false")
        .with_ext_field("bodyCrc32", "0")
        .with_body(serde_json::to_vec(&body).unwrap());
    let resp = client.invoke(namesrv, request, None).await.unwrap();
    assert_eq!(
        resp.code,
        ResponseCode::SUCCESS,
        "REGISTER_BROKER refused: {:?}",
        resp.remark
    );
    // Wait until the cluster table shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = ferry_testkit::rocketmq::fetch_cluster_info(namesrv)
            .await
            .unwrap();
        if info
            .cluster_addr_table
            .get(cluster)
            .is_some_and(|b| b.contains(broker))
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "{broker} never showed up in {cluster}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Garbage;

#[async_trait::async_trait]
impl RequestHandler for Garbage {
    async fn handle(&self, _peer: SocketAddr, request: RemotingCommand) -> Option<RemotingCommand> {
        Some(
            request
                .respond_to(ResponseCode::SUCCESS, None)
                .with_body(b"{this is not json".to_vec()),
        )
    }
}

/// A remoting server answering SUCCESS with an unparsable body to everything.
pub struct GarbageBroker {
    pub addr: String,
    stop: CancellationToken,
}

impl GarbageBroker {
    pub async fn start() -> GarbageBroker {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            serve_connections(
                listener,
                Arc::new(Garbage),
                ServerConfig::default(),
                s.cancelled_owned(),
            )
            .await
        });
        GarbageBroker { addr, stop }
    }
}

impl Drop for GarbageBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accepts TCP connections and never answers.
pub struct HungListener {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl HungListener {
    pub async fn start() -> HungListener {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        HungListener { addr, task }
    }
}

impl Drop for HungListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers anything with an HTTP error, as a web server on a wrong port would.
pub struct HttpListener {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl HttpListener {
    pub async fn start() -> HttpListener {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        HttpListener { addr, task }
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real broker with ACL 2.0 authentication and authorization on, user `admin` (Super).
pub struct AclBroker {
    pub addr: String,
    pub name: String,
    child: Child,
    dir: tempfile::TempDir,
}

pub const ACL_ADMIN: &str = "ferryadmin";
pub const ACL_SECRET: &str = "s3cret-Ferry-key";

fn port_pair() -> u16 {
    // listenPort and listenPort-2 (the broker's always-on fast port) must both be free.
    for _ in 0..50 {
        let p = free_port();
        if p > 1026 && StdListener::bind((Ipv4Addr::LOCALHOST, p - 2)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

impl AclBroker {
    pub async fn start(namesrv: &str, cluster: &str, name: &str) -> AclBroker {
        let exe = require_peer(BROKER_EXE).expect("the RocketMQ peers (scripts/install-peers)");
        let dir = tempfile::Builder::new()
            .prefix("ferry-acl-broker-")
            .tempdir()
            .unwrap();
        let home: PathBuf = dir.path().to_path_buf();
        let listen = port_pair();
        let ha = free_port();
        let store = home.join("store");
        let auth = home.join("auth");
        let config = format!(
            r#"[broker]
brokerIp1 = "127.0.0.1"
brokerIp2 = "127.0.0.1"
listenPort = {listen}
namesrvAddr = "{namesrv}"
storePathRootDir = "{store}"
autoCreateTopicEnable = false
autoCreateSubscriptionGroup = false
registerNameServerPeriod = 10000
authenticationEnabled = true
authorizationEnabled = true
authConfigPath = "{auth}"
initAuthenticationUser = "{ACL_ADMIN}:{ACL_SECRET}"

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "{name}"
brokerClusterName = "{cluster}"
brokerId = 0

[store]
brokerRole = "ASYNC_MASTER"
flushDiskType = "ASYNC_FLUSH"
haListenAddress = "127.0.0.1"
haListenPort = {ha}
storePathRootDir = "{store}"
"#,
            store = store.display(),
            auth = auth.display(),
        );
        let path = home.join("broker.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(home.join("broker.log")).unwrap();
        let child = Command::new(exe)
            .arg("-c")
            .arg(&path)
            .env("ROCKETMQ_HOME", &home)
            .env("NO_COLOR", "1")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut broker = AclBroker {
            addr: format!("127.0.0.1:{listen}"),
            name: name.to_string(),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("ACL broker exited with {status}:\n{}", broker.log_tail());
            }
            if let Ok(info) = ferry_testkit::rocketmq::fetch_cluster_info(namesrv).await
                && info
                    .broker_addr_table
                    .get(name)
                    .and_then(|b| b.master_addr())
                    == Some(broker.addr.as_str())
            {
                return broker;
            }
            assert!(
                Instant::now() < deadline,
                "ACL broker not registered within 60 s:\n{}",
                broker.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        ferry_testkit::tail(&self.dir.path().join("broker.log"), 40)
    }
}

impl Drop for AclBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("ACL broker log:\n{}", self.log_tail());
        }
    }
}
