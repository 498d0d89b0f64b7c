//! Real RocketMQ clusters for tests: one NameServer and one master broker, each a child
//! process (the Rust RocketMQ 1.0.0 peers, `scripts/install-peers`) on free loopback ports.
//!
//! Each cluster keeps everything in its own temporary directory: the NameServer's and the
//! broker's `ROCKETMQ_HOME`, the broker store, the NameServer KV/config files, the two
//! config files and the two process logs (`namesrv.log`, `broker.log`, appended to across
//! restarts). Readiness is polled with real remoting requests over a plain TCP stream
//! (ferry-remoting's pure codec), never guessed with sleeps:
//!
//! - the NameServer answers `GET_BROKER_CLUSTER_INFO` (106) with SUCCESS;
//! - the broker answers a request on its listen port (`GET_BROKER_RUNTIME_INFO`, 28), and
//!   the NameServer's cluster info lists it in its cluster with master address
//!   [`RocketMqCluster::broker_addr`].
//!
//! **Startup time, measured here** (2 vCPU VM, debug test build, peers 1.0.0, repeated runs of
//! this crate's tests): [`RocketMqCluster::start`] returns after 0.25-0.31 s (spawn, NameServer
//! answering, broker answering and registered); [`TwoClusters::start`] after 0.31 s (305-315 ms
//! over 5 runs: both clusters start concurrently). A graceful broker stop takes 50-110 ms.
//! [`RocketMqCluster::start_namesrv`] takes ~9.9 s with a running broker: the broker
//! re-registers on its periodic task (`registerNameServerPeriod = 10000`, the peer's minimum),
//! which the restart waits for.
//!
//! ```no_run
//! # async fn demo() -> ferry_testkit::Result<()> {
//! use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster, TwoClusters};
//! let a = RocketMqCluster::start(ClusterSpec::default()).await?; // ClusterA / broker-a
//! a.create_topic("T", 4).await?; // on broker-a, then polled until routable
//! let both = TwoClusters::start().await?; // ClusterA/broker-a and ClusterB/broker-b
//! let route = both.b.route("T").await?; // None: topics are per cluster
//! # let _ = route; Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use ferry_remoting::body::SubscriptionGroupConfig;
use ferry_remoting::headers::{CreateTopicRequestHeader, GetRouteInfoRequestHeader};
use ferry_remoting::{ClusterInfo, RemotingCommand, RequestCode, ResponseCode, TopicRouteData};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Result, TestkitError, free_port, tail};

/// Version of the RocketMQ peers the tests run against (`scripts/install-peers`).
pub const PEERS_VERSION: &str = "1.0.0";
/// The NameServer executable.
pub const NAMESRV_EXE: &str = "rocketmq-namesrv-rust";
/// The broker executable.
pub const BROKER_EXE: &str = "rocketmq-broker-rust";

/// How long a start (or restart) waits for readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Launch attempts; a retry after an early exit picks new ports (a collision is the usual
/// cause: another process took a port between [`free_port`] and the peer's bind).
const START_ATTEMPTS: u32 = 3;
/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Deadline for one raw request (connect + write + read).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long [`RocketMqCluster::create_topic`] polls the NameServer for the new route.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines shown when a test fails.
const TAIL_LINES: usize = 40;
/// Largest response frame accepted by [`request`] (Netty's default limit).
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Broker re-registration period (ms); 10 s is the minimum the peer accepts.
const REGISTER_PERIOD_MS: u64 = 10_000;

/// What cluster to start.
///
/// `RocketMqCluster::start(ClusterSpec { cluster_name: "ClusterB", broker_name: "broker-b",
/// ..Default::default() })`. The default is ClusterA / broker-a with topic and
/// subscription-group auto-creation **off**, so whatever a test (or Ferry) creates is
/// observable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `brokerClusterName`.
    pub cluster_name: &'static str,
    /// `brokerName` of the single master (brokerId 0).
    pub broker_name: &'static str,
    /// `autoCreateTopicEnable`.
    pub auto_create_topic: bool,
    /// `autoCreateSubscriptionGroup`.
    pub auto_create_group: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            cluster_name: "ClusterA",
            broker_name: "broker-a",
            auto_create_topic: false,
            auto_create_group: false,
        }
    }
}

impl ClusterSpec {
    /// ClusterB / broker-b, otherwise the defaults.
    pub fn cluster_b() -> Self {
        ClusterSpec {
            cluster_name: "ClusterB",
            broker_name: "broker-b",
            ..Default::default()
        }
    }
}

/// The directory that `scripts/install-peers` installs the peers into:
/// `$FERRY_PEERS_BIN` if set, else `$FERRY_CACHE/peers/1.0.0/bin` (`FERRY_CACHE`
/// defaulting to `~/.cache/ferry`).
pub fn peers_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_PEERS_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("FERRY_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/ferry")
        });
    cache.join("peers").join(PEERS_VERSION).join("bin")
}

/// Finds a peer executable in [`peers_bin_dir`], then on `PATH`; a missing peer is an
/// error telling to run `scripts/install-peers` (never a skip).
pub fn require_peer(exe: &str) -> Result<PathBuf> {
    let dir = peers_bin_dir();
    let candidate = dir.join(exe);
    if crate::is_executable(&candidate) {
        return Ok(candidate);
    }
    crate::require_part(
        exe,
        &format!(
            "not in {} either; run scripts/install-peers (it builds the RocketMQ {PEERS_VERSION} \
             peers into the cache and prints their bin dir; set FERRY_PEERS_BIN to use another)",
            dir.display()
        ),
    )
}

// ------------------------------------------------------------------ ports

/// Ports handed out by this process, so concurrent starts never pick the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A free port not handed out before by this process.
fn fresh_port() -> u16 {
    for _ in 0..1000 {
        let p = free_port();
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if taken.insert(p) {
            return p;
        }
    }
    panic!("no fresh loopback port after 1000 tries")
}

/// A broker listen port `p` with `p - 2` (the broker's always-on fast remoting port) also
/// free; both are marked handed out.
fn broker_port() -> u16 {
    for _ in 0..1000 {
        let p = free_port();
        if p < 1026 {
            continue;
        }
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&p) || taken.contains(&(p - 2)) || !bindable(p - 2) {
            continue;
        }
        taken.insert(p);
        taken.insert(p - 2);
        return p;
    }
    panic!("no free loopback port pair (p, p-2) after 1000 tries")
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    namesrv: u16,
    broker: u16,
    ha: u16,
}

impl Ports {
    fn pick() -> Ports {
        Ports {
            namesrv: fresh_port(),
            broker: broker_port(),
            ha: fresh_port(),
        }
    }
}

// ------------------------------------------------------------------ one peer process

/// A peer process: spawned with its log appended to `log`, stopped with SIGTERM/SIGKILL.
struct Peer {
    what: &'static str,
    exe: PathBuf,
    home: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    launches: u32,
}

impl Peer {
    fn new(what: &'static str, exe: PathBuf, home: PathBuf, log: PathBuf) -> Peer {
        Peer {
            what,
            exe,
            home,
            log,
            child: None,
            launches: 0,
        }
    }

    fn spawn(&mut self, args: &[String]) -> Result<()> {
        self.launches += 1;
        std::fs::create_dir_all(&self.home).map_err(|source| TestkitError::Io {
            context: format!("creating {}", self.home.display()),
            source,
        })?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| TestkitError::Io {
                context: format!("opening {}", self.log.display()),
                source,
            })?;
        let _ = writeln!(
            &log,
            "=== ferry-testkit: launch #{} of {} {} ===",
            self.launches,
            self.exe.display(),
            args.join(" ")
        );
        let stderr = log.try_clone().map_err(|source| TestkitError::Io {
            context: format!("duplicating the {} log handle", self.what),
            source,
        })?;
        let child = Command::new(&self.exe)
            .args(args)
            .env("ROCKETMQ_HOME", &self.home)
            .env("NO_COLOR", "1")
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|source| TestkitError::Io {
                context: format!("spawning {} ({})", self.exe.display(), self.what),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// The exit status if the process has exited (then it is forgotten).
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if child.try_wait().ok().flatten().is_none() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map_err(|source| TestkitError::Io {
                    context: format!("sending SIGTERM to the {}", self.what),
                    source,
                })?;
            if status.success() {
                let deadline = Instant::now() + STOP_TIMEOUT;
                while Instant::now() < deadline {
                    if child.try_wait().ok().flatten().is_some() {
                        self.child = None;
                        return Ok(());
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                tracing::warn!(
                    what = self.what,
                    "ignored SIGTERM for {STOP_TIMEOUT:?}, killing it"
                );
            }
        }
        self.kill();
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn tail(&self, n: usize) -> String {
        strip_ansi(&tail(&self.log, n))
    }
}

/// Removes ANSI escape sequences (the peers colour their console logs).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ------------------------------------------------------------------ the cluster

/// Why a launch failed: worth another attempt with new ports, or not.
enum LaunchError {
    /// A process exited early (port collision, usually).
    Exited(TestkitError),
    /// Readiness timed out or the harness failed; retrying would not help.
    Fatal(TestkitError),
}

impl LaunchError {
    fn into_inner(self) -> TestkitError {
        match self {
            LaunchError::Exited(e) | LaunchError::Fatal(e) => e,
        }
    }
}

impl From<TestkitError> for LaunchError {
    fn from(e: TestkitError) -> Self {
        LaunchError::Fatal(e)
    }
}

/// One RocketMQ cluster (NameServer + master broker) owned by a test; killed on drop.
///
/// On a failing test (the thread panics while this is dropped) the last log lines of both
/// processes are printed and the directory is kept for a post-mortem.
pub struct RocketMqCluster {
    spec: ClusterSpec,
    /// `None` once kept for a post-mortem.
    dir: Option<TempDir>,
    root: PathBuf,
    ports: Ports,
    namesrv: Peer,
    broker: Peer,
}

impl RocketMqCluster {
    /// Starts a NameServer and a master broker and waits (≤ 60 s each) until the broker
    /// is registered; retries with new ports (3 attempts) when a process exits early.
    ///
    /// Fails, never skips, when the peers are not installed.
    pub async fn start(spec: ClusterSpec) -> Result<RocketMqCluster> {
        Self::start_on(spec, Ports::pick()).await
    }

    /// [`Self::start`] trying `ports` first (tests of the retry path pass taken ones).
    async fn start_on(spec: ClusterSpec, ports: Ports) -> Result<RocketMqCluster> {
        let namesrv_exe = require_peer(NAMESRV_EXE)?;
        let broker_exe = require_peer(BROKER_EXE)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-rocketmq-{}-", spec.cluster_name))
            .tempdir()
            .map_err(|source| TestkitError::Io {
                context: "creating a temporary directory for RocketMQ".into(),
                source,
            })?;
        let root = dir.path().to_path_buf();
        let mut cluster = RocketMqCluster {
            namesrv: Peer::new(
                "NameServer",
                namesrv_exe,
                root.join("namesrv"),
                root.join("namesrv.log"),
            ),
            broker: Peer::new(
                "broker",
                broker_exe,
                root.join("broker"),
                root.join("broker.log"),
            ),
            spec,
            dir: Some(dir),
            root,
            ports,
        };
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match cluster.launch_both().await {
                Ok(()) => {
                    tracing::info!(
                        cluster = cluster.spec.cluster_name,
                        namesrv = %cluster.namesrv_addr(),
                        broker = %cluster.broker_addr(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        dir = %cluster.root.display(),
                        "RocketMQ cluster ready"
                    );
                    return Ok(cluster);
                }
                Err(LaunchError::Exited(e)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "RocketMQ peer exited early, retrying with new ports");
                    cluster.kill_all();
                    let _ = std::fs::remove_dir_all(&cluster.namesrv.home);
                    let _ = std::fs::remove_dir_all(&cluster.broker.home);
                    cluster.ports = Ports::pick();
                    attempt += 1;
                }
                Err(e) => {
                    cluster.kill_all();
                    return Err(e.into_inner());
                }
            }
        }
    }

    async fn launch_both(&mut self) -> Result<(), LaunchError> {
        self.launch_namesrv().await?;
        self.launch_broker().await
    }

    /// `127.0.0.1:PORT` of the NameServer.
    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.namesrv)
    }

    /// `127.0.0.1:PORT` of the broker (its `listenPort`; the fast port is `PORT-2`).
    pub fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.broker)
    }

    /// The broker's HA listen port.
    pub fn ha_port(&self) -> u16 {
        self.ports.ha
    }

    pub fn cluster_name(&self) -> &'static str {
        self.spec.cluster_name
    }

    pub fn broker_name(&self) -> &'static str {
        self.spec.broker_name
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The temporary directory holding homes, store, configs and logs.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn namesrv_log_path(&self) -> &Path {
        &self.namesrv.log
    }

    pub fn broker_log_path(&self) -> &Path {
        &self.broker.log
    }

    /// The last lines of both logs (ANSI colours removed), for assertion messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} NameServer log {} ---\n{}\n--- {} broker log {} ---\n{}",
            self.spec.cluster_name,
            self.namesrv.log.display(),
            self.namesrv.tail(TAIL_LINES),
            self.spec.cluster_name,
            self.broker.log.display(),
            self.broker.tail(TAIL_LINES)
        )
    }

    pub fn namesrv_running(&mut self) -> bool {
        self.namesrv.is_running()
    }

    pub fn broker_running(&mut self) -> bool {
        self.broker.is_running()
    }

    /// Stops the broker gracefully (SIGTERM, SIGKILL after 15 s). Ports and store are kept.
    pub async fn stop_broker(&mut self) -> Result<()> {
        self.broker.stop().await
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill_broker(&mut self) {
        self.broker.kill();
    }

    /// Starts the broker again with the same ports, config and store, and waits until it
    /// answers and (if the NameServer runs) is registered. Fails if it is running.
    pub async fn start_broker(&mut self) -> Result<()> {
        if self.broker.is_running() {
            return Err(self.failure("start_broker: the broker is already running"));
        }
        let mut attempt = 1;
        loop {
            match self.launch_broker().await {
                Ok(()) => return Ok(()),
                Err(LaunchError::Exited(e)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "broker exited early on restart, retrying");
                    attempt += 1;
                }
                Err(e) => {
                    self.broker.kill();
                    return Err(e.into_inner());
                }
            }
        }
    }

    /// Stops the NameServer gracefully. Ports and KV data are kept.
    pub async fn stop_namesrv(&mut self) -> Result<()> {
        self.namesrv.stop().await
    }

    /// Kills the NameServer at once (SIGKILL).
    pub fn kill_namesrv(&mut self) {
        self.namesrv.kill();
    }

    /// Starts the NameServer again on the same port with the same data, and waits until
    /// it answers and, if the broker runs, the broker has registered again (within its
    /// 10 s registration period). Fails if it is running.
    pub async fn start_namesrv(&mut self) -> Result<()> {
        if self.namesrv.is_running() {
            return Err(self.failure("start_namesrv: the NameServer is already running"));
        }
        let mut attempt = 1;
        loop {
            let launched = match self.launch_namesrv().await {
                Ok(()) if self.broker.is_running() => self.wait_broker_ready().await,
                other => other,
            };
            match launched {
                Ok(()) => return Ok(()),
                Err(LaunchError::Exited(e)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "NameServer exited early on restart, retrying");
                    attempt += 1;
                }
                Err(e) => {
                    self.namesrv.kill();
                    return Err(e.into_inner());
                }
            }
        }
    }

    fn kill_all(&mut self) {
        self.broker.kill();
        self.namesrv.kill();
    }

    // -------------------------------------------------------------- launching

    fn write_file(&self, path: &Path, text: &str) -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| TestkitError::Io {
                context: format!("creating {}", parent.display()),
                source,
            })?;
        }
        std::fs::write(path, text).map_err(|source| TestkitError::Io {
            context: format!("writing {}", path.display()),
            source,
        })
    }

    fn namesrv_config_path(&self) -> PathBuf {
        self.namesrv.home.join("namesrv.toml")
    }

    fn broker_config_path(&self) -> PathBuf {
        self.broker.home.join("broker.toml")
    }

    async fn launch_namesrv(&mut self) -> Result<(), LaunchError> {
        let home = &self.namesrv.home;
        let config = format!(
            "rocketmqHome = {}\nkvConfigPath = {}\nconfigStorePath = {}\n",
            toml_str(home),
            toml_str(&home.join("kvConfig.json")),
            toml_str(&home.join("namesrv.properties")),
        );
        let path = self.namesrv_config_path();
        self.write_file(&path, &config)?;
        let args = [
            "-c".to_string(),
            path.display().to_string(),
            "--listenPort".into(),
            self.ports.namesrv.to_string(),
            "--bindAddress".into(),
            "127.0.0.1".into(),
            "--rocketmqHome".into(),
            home.display().to_string(),
            "--kvConfigPath".into(),
            home.join("kvConfig.json").display().to_string(),
        ];
        self.namesrv.spawn(&args)?;
        self.wait_namesrv_ready().await
    }

    async fn launch_broker(&mut self) -> Result<(), LaunchError> {
        let home = &self.broker.home;
        let store = home.join("store");
        let config = format!(
            r#"[broker]
brokerIp1 = "127.0.0.1"
brokerIp2 = "127.0.0.1"
listenPort = {listen}
namesrvAddr = "{namesrv}"
storePathRootDir = {store}
autoCreateTopicEnable = {auto_topic}
autoCreateSubscriptionGroup = {auto_group}
registerNameServerPeriod = {period}
# Without it the broker keeps ACL users in $HOME/config/auth, shared by every broker on the
# machine across runs (PEER-NOTES.md §9).
authConfigPath = {auth}

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "{broker}"
brokerClusterName = "{cluster}"
brokerId = 0

[store]
brokerRole = "ASYNC_MASTER"
flushDiskType = "ASYNC_FLUSH"
haListenAddress = "127.0.0.1"
haListenPort = {ha}
storePathRootDir = {store}
"#,
            listen = self.ports.broker,
            namesrv = self.namesrv_addr(),
            store = toml_str(&store),
            auth = toml_str(&home.join("auth")),
            auto_topic = self.spec.auto_create_topic,
            auto_group = self.spec.auto_create_group,
            period = REGISTER_PERIOD_MS,
            broker = self.spec.broker_name,
            cluster = self.spec.cluster_name,
            ha = self.ports.ha,
        );
        let path = self.broker_config_path();
        self.write_file(&path, &config)?;
        let args = ["-c".to_string(), path.display().to_string()];
        self.broker.spawn(&args)?;
        self.wait_broker_ready().await
    }

    async fn wait_namesrv_ready(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.namesrv_addr();
        loop {
            if let Some(status) = self.namesrv.exited() {
                return Err(LaunchError::Exited(self.not_ready(
                    "NameServer",
                    format!("exited with {status} before answering on {addr}"),
                    &self.namesrv,
                )));
            }
            let reason = match request(
                &addr,
                RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO),
            )
            .await
            {
                Ok(resp) if resp.code == ResponseCode::SUCCESS => return Ok(()),
                Ok(resp) => format!("answered 106 with code {} ({:?})", resp.code, resp.remark),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(LaunchError::Fatal(self.not_ready(
                    "NameServer",
                    format!("no answer from {addr} within {READY_TIMEOUT:?}, last: {reason}"),
                    &self.namesrv,
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The broker answers on its port and, if the NameServer runs, is registered there as
    /// master of its broker name in its cluster.
    async fn wait_broker_ready(&mut self) -> Result<(), LaunchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let broker_addr = self.broker_addr();
        let mut broker_answered = false;
        loop {
            if let Some(status) = self.broker.exited() {
                return Err(LaunchError::Exited(self.not_ready(
                    "broker",
                    format!("exited with {status} before becoming ready"),
                    &self.broker,
                )));
            }
            let reason = if !broker_answered {
                match request(
                    &broker_addr,
                    RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO),
                )
                .await
                {
                    Ok(_) => {
                        broker_answered = true;
                        continue;
                    }
                    Err(e) => format!("broker {broker_addr} did not answer: {e}"),
                }
            } else if !self.namesrv.is_running() {
                return Ok(());
            } else {
                match self.registration().await {
                    Ok(()) => return Ok(()),
                    Err(reason) => reason,
                }
            };
            if Instant::now() >= deadline {
                return Err(LaunchError::Fatal(self.not_ready(
                    "broker",
                    format!("not ready within {READY_TIMEOUT:?}: {reason}"),
                    &self.broker,
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Ok when the NameServer lists our broker in our cluster with our address as master.
    async fn registration(&self) -> std::result::Result<(), String> {
        let info = fetch_cluster_info(&self.namesrv_addr())
            .await
            .map_err(|e| e.to_string())?;
        let in_cluster = info
            .cluster_addr_table
            .get(self.spec.cluster_name)
            .is_some_and(|brokers| brokers.contains(self.spec.broker_name));
        let master = info
            .broker_addr_table
            .get(self.spec.broker_name)
            .and_then(|b| b.master_addr().map(str::to_string));
        if in_cluster && master.as_deref() == Some(self.broker_addr().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "NameServer does not list {} in {} with master {} yet (in cluster: {in_cluster}, master: {master:?})",
                self.spec.broker_name,
                self.spec.cluster_name,
                self.broker_addr()
            ))
        }
    }

    fn not_ready(&self, what: &str, reason: String, peer: &Peer) -> TestkitError {
        TestkitError::NotReady {
            what: format!("{} {what}", self.spec.cluster_name),
            reason: format!(
                "{reason}\n--- last lines of {} ---\n{}",
                peer.log.display(),
                peer.tail(TAIL_LINES)
            ),
            log: peer.log.display().to_string(),
        }
    }

    fn failure(&self, what: &str) -> TestkitError {
        TestkitError::Failed {
            what: format!("{} {what}", self.spec.cluster_name),
            log_tail: self.log_tail(),
        }
    }

    // -------------------------------------------------------------- admin helpers

    /// `GET_BROKER_CLUSTER_INFO` from this cluster's NameServer.
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        fetch_cluster_info(&self.namesrv_addr()).await
    }

    /// `GET_ROUTEINFO_BY_TOPIC` from this cluster's NameServer; `None` for TOPIC_NOT_EXIST.
    pub async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        fetch_route(&self.namesrv_addr(), topic).await
    }

    /// Creates `topic` (`queue_nums` read and write queues, perm RW) on this cluster's
    /// broker with a raw `UPDATE_AND_CREATE_TOPIC` (17), then polls the NameServer
    /// (≤ 30 s) until the route lists the broker; returns that route.
    pub async fn create_topic(&self, topic: &str, queue_nums: i32) -> Result<TopicRouteData> {
        create_topic_at(
            &self.broker_addr(),
            &self.namesrv_addr(),
            self.spec.broker_name,
            topic,
            queue_nums,
        )
        .await
    }

    /// Creates consumer group `group` on this cluster's broker with a raw
    /// `UPDATE_AND_CREATE_SUBSCRIPTIONGROUP` (200); needed before consuming when
    /// `auto_create_group` is off.
    pub async fn create_group(&self, group: &str) -> Result<()> {
        create_group_at(&self.broker_addr(), group).await
    }
}

impl Drop for RocketMqCluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            let kept = match self.dir.take() {
                Some(d) => {
                    let _ = d.keep();
                    format!("kept at {}", self.root.display())
                }
                None => "already kept".into(),
            };
            // The test is failing: leave a post-mortem where the developer looks first.
            eprintln!(
                "RocketMQ {} (directory {kept})\n{}",
                self.spec.cluster_name,
                self.log_tail()
            );
        }
    }
}

/// Two independent clusters, as a migration has: `a` = ClusterA/broker-a (source),
/// `b` = ClusterB/broker-b (target), both with auto-creation off.
pub struct TwoClusters {
    pub a: RocketMqCluster,
    pub b: RocketMqCluster,
}

impl TwoClusters {
    /// Starts both clusters concurrently (~0.31 s here, see the module docs).
    pub async fn start() -> Result<TwoClusters> {
        Self::start_with(ClusterSpec::default(), ClusterSpec::cluster_b()).await
    }

    /// Starts `a` and `b` concurrently.
    pub async fn start_with(a: ClusterSpec, b: ClusterSpec) -> Result<TwoClusters> {
        let (a, b) = tokio::join!(RocketMqCluster::start(a), RocketMqCluster::start(b));
        Ok(TwoClusters { a: a?, b: b? })
    }
}

// ------------------------------------------------------------------ raw remoting

static OPAQUE: AtomicI32 = AtomicI32::new(1);

fn request_error(addr: &str, code: i32, reason: impl std::fmt::Display) -> TestkitError {
    TestkitError::Request {
        what: format!(
            "request {code} ({}) to {addr}",
            RequestCode::name_or_unknown(code)
        ),
        reason: reason.to_string(),
    }
}

/// Sends one request on a fresh connection and reads its response (≤ [`REQUEST_TIMEOUT`]).
///
/// The header is JSON with `"serializeTypeCurrentRPC":"JSON"` (the Rust peers drop
/// connections without it); the opaque is assigned here. Any response code is returned;
/// check `code` yourself.
pub async fn request(addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
    let code = cmd.code;
    let opaque = OPAQUE.fetch_add(1, Ordering::Relaxed);
    let cmd = cmd.with_opaque(opaque);
    let frame = cmd
        .to_frame()
        .map_err(|e| request_error(addr, code, format!("encoding: {e}")))?;
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(&frame)
            .await
            .map_err(|e| format!("write: {e}"))?;
        // Skip anything that is not our response (a server-initiated request, say).
        for _ in 0..16 {
            let mut len = [0u8; 4];
            stream
                .read_exact(&mut len)
                .await
                .map_err(|e| format!("reading the response length: {e}"))?;
            let total = i32::from_be_bytes(len);
            if total < 4 || total as usize + 4 > MAX_FRAME {
                return Err(format!("bad response frame length {total}"));
            }
            let mut buf = vec![0u8; total as usize];
            stream
                .read_exact(&mut buf)
                .await
                .map_err(|e| format!("reading a {total}-byte response: {e}"))?;
            let resp = RemotingCommand::decode(buf.into()).map_err(|e| format!("decoding: {e}"))?;
            if resp.is_response() && resp.opaque == opaque {
                return Ok(resp);
            }
        }
        Err("16 frames without our response".to_string())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(reason)) => Err(request_error(addr, code, reason)),
        Err(_) => Err(request_error(
            addr,
            code,
            format!("no response within {REQUEST_TIMEOUT:?}"),
        )),
    }
}

/// [`request`], requiring SUCCESS.
async fn request_ok(addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
    let code = cmd.code;
    let resp = request(addr, cmd).await?;
    if resp.code == ResponseCode::SUCCESS {
        Ok(resp)
    } else {
        Err(request_error(
            addr,
            code,
            format!(
                "answered {} ({}): {}",
                resp.code,
                ResponseCode::name_or_unknown(resp.code),
                resp.remark.unwrap_or_default()
            ),
        ))
    }
}

/// `GET_BROKER_CLUSTER_INFO` (106) from the NameServer at `namesrv_addr`.
pub async fn fetch_cluster_info(namesrv_addr: &str) -> Result<ClusterInfo> {
    let resp = request_ok(
        namesrv_addr,
        RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO),
    )
    .await?;
    ClusterInfo::from_body(&resp.body).map_err(|e| {
        request_error(
            namesrv_addr,
            RequestCode::GET_BROKER_CLUSTER_INFO.0,
            format!("cluster info body: {e}"),
        )
    })
}

/// `GET_ROUTEINFO_BY_TOPIC` (105); `None` when the NameServer answers TOPIC_NOT_EXIST.
pub async fn fetch_route(namesrv_addr: &str, topic: &str) -> Result<Option<TopicRouteData>> {
    let header = GetRouteInfoRequestHeader {
        topic: topic.to_string(),
        accept_standard_json_only: Some(true),
        ..Default::default()
    };
    let code = RequestCode::GET_ROUTEINFO_BY_TOPIC;
    let resp = request(
        namesrv_addr,
        RemotingCommand::request_with_header(code, &header),
    )
    .await?;
    if resp.code == ResponseCode::TOPIC_NOT_EXIST {
        return Ok(None);
    }
    if resp.code != ResponseCode::SUCCESS {
        return Err(request_error(
            namesrv_addr,
            code.0,
            format!(
                "answered {}: {}",
                resp.code,
                resp.remark.unwrap_or_default()
            ),
        ));
    }
    TopicRouteData::from_body(&resp.body)
        .map(Some)
        .map_err(|e| request_error(namesrv_addr, code.0, format!("route body: {e}")))
}

/// Creates `topic` on the broker at `broker_addr` (`UPDATE_AND_CREATE_TOPIC`, 17, with the
/// canonical Java header keys) and polls the NameServer (≤ 30 s) until the route lists
/// `broker_name`; returns that route.
pub async fn create_topic_at(
    broker_addr: &str,
    namesrv_addr: &str,
    broker_name: &str,
    topic: &str,
    queue_nums: i32,
) -> Result<TopicRouteData> {
    let header = CreateTopicRequestHeader {
        topic: topic.to_string(),
        read_queue_nums: queue_nums,
        write_queue_nums: queue_nums,
        ..Default::default()
    };
    request_ok(
        broker_addr,
        RemotingCommand::request_with_header(RequestCode::UPDATE_AND_CREATE_TOPIC, &header),
    )
    .await?;
    let deadline = Instant::now() + ROUTE_TIMEOUT;
    loop {
        let last = match fetch_route(namesrv_addr, topic).await {
            Ok(Some(route))
                if route
                    .queue_datas
                    .iter()
                    .any(|q| q.broker_name == broker_name) =>
            {
                return Ok(route);
            }
            Ok(other) => format!("route: {other:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(request_error(
                namesrv_addr,
                RequestCode::GET_ROUTEINFO_BY_TOPIC.0,
                format!(
                    "topic {topic} created on {broker_addr} but not routed to {broker_name} within {ROUTE_TIMEOUT:?}; last {last}"
                ),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Creates consumer group `group` with default settings on the broker at `broker_addr`
/// (`UPDATE_AND_CREATE_SUBSCRIPTIONGROUP`, 200; body = `SubscriptionGroupConfig` JSON).
pub async fn create_group_at(broker_addr: &str, group: &str) -> Result<()> {
    let config = SubscriptionGroupConfig {
        group_name: group.to_string(),
        ..Default::default()
    };
    let code = RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP;
    let body = serde_json::to_vec(&config)
        .map_err(|e| request_error(broker_addr, code.0, format!("encoding the body: {e}")))?;
    request_ok(broker_addr, RemotingCommand::request(code).with_body(body))
        .await
        .map(|_| ())
}

/// A TOML basic string holding `path`.
fn toml_str(path: &Path) -> String {
    let s = path.display().to_string();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ansi_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ok"),
            "2026  INFO ok"
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(Path::new("/tmp/a\"b\\c")), r#""/tmp/a\"b\\c""#);
    }

    #[test]
    fn broker_ports_leave_the_fast_port_free_and_distinct() {
        let a = Ports::pick();
        let b = Ports::pick();
        let all = [
            a.namesrv,
            a.broker,
            a.broker - 2,
            a.ha,
            b.namesrv,
            b.broker,
            b.broker - 2,
            b.ha,
        ];
        let distinct: BTreeSet<u16> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        assert!(bindable(a.broker - 2) && bindable(a.broker));
    }

    #[tokio::test]
    async fn a_taken_port_is_retried_with_new_ports() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut ports = Ports::pick();
        ports.namesrv = taken.local_addr().unwrap().port();
        let cluster = RocketMqCluster::start_on(ClusterSpec::default(), ports)
            .await
            .expect("the second attempt uses new ports");
        assert_ne!(cluster.ports.namesrv, ports.namesrv);
        let log = std::fs::read_to_string(cluster.namesrv_log_path()).unwrap();
        assert!(log.contains("launch #2"), "{}", cluster.log_tail());
        assert!(!log.contains("launch #3"));
    }

    #[test]
    fn a_failing_test_keeps_the_directory_and_a_clean_drop_removes_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cluster = rt
            .block_on(RocketMqCluster::start(ClusterSpec::default()))
            .unwrap();
        let clean_dir = cluster.dir().to_path_buf();
        drop(cluster);
        assert!(!clean_dir.exists(), "a clean drop removes the directory");

        let payload = std::thread::spawn(move || {
            let cluster = rt
                .block_on(RocketMqCluster::start(ClusterSpec::cluster_b()))
                .unwrap();
            // Unwinding drops `cluster` while the thread panics, as in a failing test.
            std::panic::panic_any(cluster.dir().to_path_buf());
        })
        .join()
        .expect_err("the thread panicked");
        let kept = payload.downcast::<PathBuf>().unwrap();
        let log = std::fs::read_to_string(kept.join("broker.log"));
        std::fs::remove_dir_all(&*kept).unwrap();
        assert!(log.unwrap().contains("broker-b"), "the broker log is kept");
    }

    #[test]
    fn missing_peer_tells_to_run_install_peers() {
        let err = require_peer("definitely-not-a-rocketmq-peer").unwrap_err();
        assert!(err.to_string().contains("scripts/install-peers"), "{err}");
    }
}
