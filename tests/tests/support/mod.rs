//! The zero-loss harness: real etcd, two real RocketMQ clusters (A = source, B = target),
//! Ferry's services as separate processes on etcd (`ferry-metadata-sync`,
//! `ferry-health-check`, `ferry-scanner`, two `ferry-router`s for the task), real keyed
//! producers and consumers whose `namesrvAddr` is the router pool, and the migration driven
//! only through the services' gRPC APIs.
//!
//! Ferry's binaries are those of the workspace's target directory (`cargo test --workspace`
//! builds every binary before running tests; with `-p ferry-tests` alone, build them first
//! with `cargo build --workspace --bins`). `FERRY_BIN_DIR` points elsewhere.
//!
//! Every wait is bounded in time and count; stage changes are retried on the published
//! readiness until a deadline, never after a fixed sleep alone.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_api::common::v1::{
    ClusterEndpoint, ConnectOutcome, ItemResult, ReadinessReasonCode, Stage, TargetType,
};
use ferry_api::health_check::v1 as hpb;
use ferry_api::health_check::v1::health_check_service_client::HealthCheckServiceClient;
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_api::scanner::v1 as spb;
use ferry_api::scanner::v1::scanner_service_client::ScannerServiceClient;
use ferry_remoting::{BrokerAdmin, ClientConfig, RemotingClient};
use ferry_testkit::rocketmq::{RocketMqCluster, TwoClusters};
use ferry_testkit::traffic::{ClientOptions, Ledger, SentRecord, TrafficConsumer, TrafficProducer};
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Clients' route poll interval: the client's minimum (ClientOptions::default()).
pub const ROUTE_POLL: Duration = Duration::from_secs(10);
/// How often the health checker publishes readiness on its own (CheckTopics is also called
/// before every attempt).
pub const SCAN_INTERVAL: &str = "3s";
/// Bound of one stage change (dwell 2 × ROUTE_POLL, plus drains and readiness lag).
pub const STAGE_DEADLINE: Duration = Duration::from_secs(150);
/// Pause between two attempts of a stage change.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Who the audit log names.
const ACTOR: &str = "zero-loss-test";

pub type Tasks = MigrationTaskServiceClient<Channel>;
pub type Health = HealthCheckServiceClient<Channel>;
pub type Scanner = ScannerServiceClient<Channel>;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The client logs every deferred pull of a suspended consumer and every
                // missing %RETRY% route at WARN (PEER-NOTES.md §6): errors only.
                "warn,rocketmq_client_rust=error,rocketmq_transport=error".into()
            }),
        )
        .with_test_writer()
        .try_init();
}

// ------------------------------------------------------------------ serialization

/// Tests of this file that may run at once (each runs ~12 processes and a dozen client
/// runtimes; the machine may have 2 cores). `FERRY_ZERO_LOSS_PARALLEL` overrides.
pub async fn slot() -> SemaphorePermit<'static> {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        let n = std::env::var("FERRY_ZERO_LOSS_PARALLEL")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(2);
        Semaphore::new(n)
    });
    slots.acquire().await.expect("semaphore never closed")
}

// ------------------------------------------------------------------ binaries

/// A Ferry binary of this workspace: `$FERRY_BIN_DIR/<name>`, else next to the test
/// executable's `deps/` directory (`<target>/<profile>/<name>`).
pub fn ferry_bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("FERRY_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("path of the test executable");
            // <target>/<profile>/deps/zero_loss-<hash>
            exe.parent()
                .and_then(Path::parent)
                .expect("test executable lives in <target>/<profile>/deps")
                .to_path_buf()
        }
    };
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "Ferry binary {} not found: build the binaries first with `cargo build --workspace --bins` \
         (`cargo test --workspace` builds them before running tests), or set FERRY_BIN_DIR",
        bin.display()
    );
    bin
}

// ------------------------------------------------------------------ processes

/// A Ferry service process with a gRPC port that survives restarts.
pub struct Service {
    pub name: &'static str,
    pub process: ServiceProcess,
    /// host:port of the gRPC listener.
    pub addr: String,
    args: Vec<String>,
}

const SERVICE_LOG: &str = "info,ferry_health_check=debug,ferry_metadata_sync=debug";

impl Service {
    /// Spawns `ferry-<name>` listening on a free port with `args` (plus `--listen`).
    pub async fn start(name: &'static str, args: &[String]) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut all = vec!["--listen".to_string(), addr.clone()];
        all.extend(args.iter().cloned());
        let mut s = Service {
            name,
            process: Self::spawn(name, &all),
            addr,
            args: all,
        };
        s.wait_serving(Duration::from_secs(30)).await;
        s
    }

    fn spawn(name: &str, args: &[String]) -> ServiceProcess {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        ServiceProcess::spawn(
            name,
            ferry_bin(&format!("ferry-{name}")),
            &argv,
            &[("FERRY_LOG", SERVICE_LOG)],
        )
        .unwrap_or_else(|e| panic!("spawn ferry-{name}: {e}"))
    }

    pub fn channel(&self, timeout: Duration) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .connect_lazy()
    }

    /// Waits until health `""` answers SERVING (the store answered).
    pub async fn wait_serving(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut health = HealthClient::new(self.channel(Duration::from_secs(2)));
        loop {
            let got = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status);
            if matches!(got, Ok(s) if s == ServingStatus::Serving as i32) {
                return;
            }
            if let Some(status) = self.process.try_status() {
                panic!(
                    "ferry-{} exited with {status}; log {}:\n{}",
                    self.name,
                    self.process.log_path().display(),
                    ferry_testkit::tail(&self.process.log_path(), 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "ferry-{} not SERVING within {within:?}: {got:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again with the same flags and port (after a kill) and waits until serving.
    pub async fn restart(&mut self) {
        self.process.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.process = Self::spawn(self.name, &self.args);
            // A port still held by the kernel makes the new process exit at once.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.process.try_status().is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ferry-{} does not restart on {}",
                self.name,
                self.addr
            );
        }
        self.wait_serving(Duration::from_secs(30)).await;
    }
}

/// A `ferry-router` for the task: NameServer protocol and gRPC admin on fixed ports.
pub struct Router {
    pub process: ServiceProcess,
    pub namesrv: String,
    pub grpc: String,
    args: Vec<String>,
}

impl Router {
    pub async fn start(task_id: &str, etcd: &str) -> Router {
        let namesrv = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = [
            "--task-id",
            task_id,
            "--namesrv-listen",
            &namesrv,
            "--listen",
            &grpc,
            "--etcd-endpoints",
            etcd,
            "--ready-file",
            "ready",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Router {
            process: Self::spawn(&args).await,
            namesrv,
            grpc,
            args,
        }
    }

    async fn spawn(args: &[String]) -> ServiceProcess {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut p = ServiceProcess::spawn(
                "ferry-router",
                ferry_bin("ferry-router"),
                &argv,
                &[("FERRY_LOG", "info,ferry_router=debug")],
            )
            .expect("spawn ferry-router");
            match p.wait_for_file("ready", Duration::from_secs(20)).await {
                Ok(_) => return p,
                // Ports just released by a killed router may still be held briefly.
                Err(e) if Instant::now() > deadline => panic!("ferry-router start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again with the same flags and ports.
    pub async fn restart(&mut self) {
        self.process.kill();
        self.process = Self::spawn(&self.args).await;
    }
}

// ------------------------------------------------------------------ timeline

/// Events with their time since the start of the test, shared with the traffic tasks.
#[derive(Clone, Default)]
pub struct Timeline {
    label: Arc<String>,
    start: Arc<OnceLock<Instant>>,
    events: Arc<Mutex<Vec<(Duration, String)>>>,
}

impl Timeline {
    /// A timeline whose lines start with `label` (tests of this file run side by side).
    pub fn new(label: &str) -> Timeline {
        let t = Timeline {
            label: Arc::new(label.to_string()),
            ..Timeline::default()
        };
        let _ = t.start.set(Instant::now());
        t
    }

    pub fn elapsed(&self) -> Duration {
        self.start
            .get()
            .copied()
            .unwrap_or_else(Instant::now)
            .elapsed()
    }

    pub fn note(&self, what: impl Into<String>) {
        let what = what.into();
        let at = self.elapsed();
        eprintln!("[{} {:>6.1}s] {what}", self.label, at.as_secs_f64());
        self.events.lock().unwrap().push((at, what));
    }

    pub fn events(&self) -> Vec<(Duration, String)> {
        self.events.lock().unwrap().clone()
    }

    /// The last event at or before `at` whose text contains `marker`.
    pub fn last_before(&self, at: Duration, marker: &str) -> Option<(Duration, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .rfind(|(t, e)| *t <= at && e.contains(marker))
            .cloned()
    }
}

// ------------------------------------------------------------------ topics and traffic

/// What a topic's traffic looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keyed messages, any queue.
    Normal,
    /// Ordered sends by shard key (hash of the shard over the writable queues), consumed
    /// by an orderly listener.
    Ordered,
    /// Delayed messages (broker delay level).
    Delayed(i32),
}

#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub group: String,
    pub kind: Kind,
}

impl TopicSpec {
    pub fn new(name: &str, kind: Kind) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            group: format!("cg-{name}"),
            kind,
        }
    }
}

/// Shards (order ids) of an ordered topic.
pub const SHARDS: usize = 8;

struct Flow {
    spec: TopicSpec,
    producer: Arc<TrafficProducer>,
    sender: Option<JoinHandle<()>>,
    consumer: TrafficConsumer,
}

/// Producers sending at a steady rate and consumers, one of each per topic.
pub struct Traffic {
    flows: Vec<Flow>,
    stop: Arc<AtomicBool>,
    /// Send time (since the test start) of every acknowledged key.
    sent_at: Arc<Mutex<HashMap<String, Duration>>>,
    /// Acknowledged sends of other producers (e.g. one still on the source NameServer).
    extra_sent: Vec<SentRecord>,
    timeline: Timeline,
}

impl Traffic {
    /// Starts a consumer (group `cg-<topic>`) and a producer (group `pg-<topic>`) per topic
    /// against `namesrv` (e.g. "r1;r2"), each producer sending one keyed message every
    /// `interval`.
    pub async fn start(
        namesrv: &str,
        topics: &[TopicSpec],
        interval: Duration,
        timeline: &Timeline,
    ) -> Traffic {
        let opts = ClientOptions::default();
        assert_eq!(
            opts.poll_name_server_interval_ms,
            Some(ROUTE_POLL.as_millis() as u64),
            "the health checker's policy assumes clients poll routes every {ROUTE_POLL:?}"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let sent_at = Arc::new(Mutex::new(HashMap::new()));
        let mut flows = Vec::new();
        for spec in topics {
            let consumer = match spec.kind {
                Kind::Ordered => {
                    TrafficConsumer::start_orderly(namesrv, &spec.group, &spec.name, opts).await
                }
                _ => TrafficConsumer::start_with(namesrv, &spec.group, &spec.name, opts).await,
            }
            .unwrap_or_else(|e| panic!("consumer of {}: {e}", spec.name));
            let producer = Arc::new(
                TrafficProducer::start(namesrv, &format!("pg-{}", spec.name), opts)
                    .await
                    .unwrap_or_else(|e| panic!("producer of {}: {e}", spec.name)),
            );
            flows.push(Flow {
                spec: spec.clone(),
                producer,
                sender: None,
                consumer,
            });
        }
        for flow in &mut flows {
            flow.sender = Some(tokio::spawn(send_loop(
                flow.spec.clone(),
                flow.producer.clone(),
                interval,
                stop.clone(),
                sent_at.clone(),
                timeline.clone(),
            )));
        }
        timeline.note(format!(
            "traffic started on {} topics via {namesrv}, one message per {interval:?} each",
            topics.len()
        ));
        Traffic {
            flows,
            stop,
            sent_at,
            extra_sent: Vec::new(),
            timeline: timeline.clone(),
        }
    }

    pub fn consumer(&self, topic: &str) -> &TrafficConsumer {
        &self
            .flows
            .iter()
            .find(|f| f.spec.name == topic)
            .unwrap_or_else(|| panic!("no traffic on {topic}"))
            .consumer
    }

    /// Counts sends of another producer in the ledger.
    pub fn add_sent(&mut self, records: Vec<SentRecord>) {
        self.extra_sent.extend(records);
    }

    /// Acknowledged sends so far, all producers.
    pub fn sent(&self) -> Vec<SentRecord> {
        let mut all = self.extra_sent.clone();
        for f in &self.flows {
            all.extend(f.producer.sent());
        }
        all
    }

    pub fn failures(&self) -> usize {
        self.flows.iter().map(|f| f.producer.failures()).sum()
    }

    /// Sent vs received over every topic.
    pub fn ledger(&self) -> Ledger {
        let mut ledger = Ledger::new(self.sent(), HashMap::new());
        for f in &self.flows {
            ledger.add_received(&f.consumer.received_keys());
        }
        ledger
    }

    /// Stops every producer's send loop (the producers stay up until shutdown).
    pub async fn stop_producers(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for f in &mut self.flows {
            if let Some(h) = f.sender.take() {
                h.await.expect("send loop");
            }
        }
        self.timeline.note(format!(
            "producers stopped: {} acknowledged, {} failed sends",
            self.sent().len(),
            self.failures()
        ));
    }

    /// Waits (≤ `within`) until every acknowledged key was received; returns how long it
    /// took, or the ledger when keys are still missing.
    pub async fn drain(&self, within: Duration) -> Result<Duration, Ledger> {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            let ledger = self.ledger();
            if ledger.missing().is_empty() {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(ledger);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Why each missing key is missing, as far as the test can tell: where it was stored,
    /// when it was sent and which stage change preceded the send.
    pub fn explain_missing(&self, ledger: &Ledger) -> String {
        let sent_at = self.sent_at.lock().unwrap();
        let mut out = String::new();
        let missing = ledger.missing();
        let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
        for k in &missing {
            let r = &ledger.sent()[k];
            *per.entry((r.topic.clone(), r.broker_name.clone()))
                .or_default() += 1;
        }
        out.push_str(&format!(
            "{} keys missing; per (topic, broker): {per:?}\n",
            missing.len()
        ));
        for k in missing.iter().take(40) {
            let r = &ledger.sent()[k];
            let at = sent_at.get(k).copied();
            let stage = at.and_then(|t| self.timeline.last_before(t, "->"));
            out.push_str(&format!(
                "  {k}: stored on {} queue {}, sent at {:?}, last change before: {:?}\n",
                r.broker_name, r.queue_id, at, stage
            ));
        }
        out
    }

    /// Per-key order of the ordered topics: first deliveries of each shard from one queue
    /// must come in send order (violations listed); inversions across queues (a shard moved
    /// to another queue when the route changed) are counted.
    pub fn order_report(&self) -> OrderReport {
        let mut report = OrderReport::default();
        for f in self.flows.iter().filter(|f| f.spec.kind == Kind::Ordered) {
            let mut seen = HashSet::new();
            // shard -> (last seq overall), (broker, queue) -> last seq
            let mut last_in_queue: HashMap<(String, String, i32), u64> = HashMap::new();
            let mut last_in_shard: HashMap<String, u64> = HashMap::new();
            for d in f.consumer.deliveries() {
                if !seen.insert(d.key.clone()) {
                    continue; // a redelivery
                }
                let Some((shard, seq)) = parse_ordered_key(&d.key) else {
                    continue;
                };
                report.checked += 1;
                let q = (shard.clone(), d.broker_name.clone(), d.queue_id);
                if let Some(prev) = last_in_queue.insert(q.clone(), seq)
                    && prev > seq
                {
                    report.queue_violations.push(format!(
                        "{}: shard {} on {} queue {}: {} after {}",
                        f.spec.name, shard, d.broker_name, d.queue_id, seq, prev
                    ));
                }
                match last_in_shard.get(&shard) {
                    Some(prev) if *prev > seq => report.cross_queue_inversions += 1,
                    _ => {
                        last_in_shard.insert(shard, seq);
                    }
                }
            }
        }
        report
    }

    /// Shuts every client down.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for f in self.flows.drain(..) {
            if let Some(h) = f.sender {
                let _ = h.await;
            }
            f.consumer.shutdown().await;
            match Arc::try_unwrap(f.producer) {
                Ok(p) => p.shutdown().await,
                Err(_) => eprintln!("producer of {} still shared; dropped", f.spec.name),
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct OrderReport {
    pub checked: usize,
    pub queue_violations: Vec<String>,
    pub cross_queue_inversions: usize,
}

fn ordered_key(topic: &str, shard: usize, n: u64) -> String {
    format!("{topic}-s{shard}-{n:06}")
}

/// (shard, sequence) of an ordered key.
fn parse_ordered_key(key: &str) -> Option<(String, u64)> {
    let (rest, seq) = key.rsplit_once('-')?;
    let (_, shard) = rest.rsplit_once('-')?;
    Some((shard.to_string(), seq.parse().ok()?))
}

async fn send_loop(
    spec: TopicSpec,
    producer: Arc<TrafficProducer>,
    interval: Duration,
    stop: Arc<AtomicBool>,
    sent_at: Arc<Mutex<HashMap<String, Duration>>>,
    timeline: Timeline,
) {
    let mut n: u64 = 0;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    while !stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        n += 1;
        let at = timeline.elapsed();
        let (key, result) = match spec.kind {
            Kind::Normal => {
                let key = format!("{}-{n:06}", spec.name);
                let r = producer.send_keyed(&spec.name, &key, key.as_bytes()).await;
                (key, r)
            }
            Kind::Ordered => {
                let shard = (n as usize) % SHARDS;
                let key = ordered_key(&spec.name, shard, n);
                let r = producer
                    .send_ordered(&spec.name, &key, &format!("order-{shard}"), key.as_bytes())
                    .await;
                (key, r)
            }
            Kind::Delayed(level) => {
                let key = format!("{}-{n:06}", spec.name);
                let r = producer
                    .send_delayed(&spec.name, &key, key.as_bytes(), level)
                    .await;
                (key, r)
            }
        };
        match result {
            Ok(_) => {
                sent_at.lock().unwrap().insert(key, at);
                last_error = None;
            }
            Err(e) => {
                // Not acknowledged: not in the ledger. Logged once per streak.
                let e = e.to_string();
                if last_error.as_deref() != Some(e.as_str()) {
                    timeline.note(format!("send of {key} failed: {e}"));
                }
                last_error = Some(e);
            }
        }
    }
}

// ------------------------------------------------------------------ the harness

/// Steps of a migration task as the API names them.
pub use pb::MigrationStep as Step;

/// A refusal seen while waiting for a change.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    /// Reason code (short form, e.g. SOURCE_BACKLOG) -> how many refusals named it.
    pub codes: BTreeMap<String, usize>,
    /// A few messages, for the report.
    pub samples: Vec<String>,
}

impl Refusals {
    pub fn add(&mut self, codes: &BTreeSet<String>, message: &str) {
        for c in codes {
            *self.codes.entry(c.clone()).or_default() += 1;
        }
        if self.samples.len() < 200 {
            self.samples.push(message.to_string());
        }
    }

    pub fn saw(&self, code: &str) -> bool {
        self.codes.contains_key(code)
    }

    fn merge(&mut self, other: &Refusals) {
        for (c, n) in &other.codes {
            *self.codes.entry(c.clone()).or_default() += n;
        }
        self.samples.extend(other.samples.iter().take(20).cloned());
    }
}

/// Short reason code names found in a refusal: the readiness reasons' codes and any
/// SCREAMING_SNAKE word of the error text (codes are matched loosely by name, since new
/// codes keep being added).
pub fn codes_of(result: &pb::StageChangeResult) -> BTreeSet<String> {
    let mut out = readiness_codes(result.readiness.as_ref());
    out.extend(codes_in_text(&result.error));
    out
}

/// Short names of a readiness's reason codes, e.g. `SOURCE_BACKLOG`.
pub fn readiness_codes(readiness: Option<&ferry_api::common::v1::Readiness>) -> BTreeSet<String> {
    readiness
        .map(|r| {
            r.reasons
                .iter()
                .map(|reason| code_name(reason.code))
                .collect()
        })
        .unwrap_or_default()
}

/// `READINESS_REASON_CODE_SOURCE_BACKLOG` -> `SOURCE_BACKLOG` (unknown numbers as `CODE_<n>`).
pub fn code_name(code: i32) -> String {
    let name = ReadinessReasonCode::try_from(code)
        .map(|c| c.as_str_name().to_string())
        .unwrap_or_else(|_| format!("CODE_{code}"));
    name.strip_prefix("READINESS_REASON_CODE_")
        .unwrap_or(&name)
        .to_string()
}

/// SCREAMING_SNAKE words (with at least one '_') of a message that are not stage or step
/// names.
pub fn codes_in_text(text: &str) -> BTreeSet<String> {
    const NOT_CODES: [&str; 6] = [
        "DUAL_READ",
        "DUAL_WRITE",
        "IMPORT_METADATA",
        "SWITCH_ACCESS_POINT",
        "GRAY_MIGRATION",
        "FAILED_PRECONDITION",
    ];
    text.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.len() > 4 && w.contains('_') && !w.starts_with('_') && !w.ends_with('_'))
        .filter(|w| !NOT_CODES.contains(w) && !w.starts_with("STAGE_"))
        .map(str::to_string)
        .collect()
}

/// How one stage change of every topic went.
#[derive(Debug, Clone)]
pub struct StageMove {
    pub from: Stage,
    pub to: Stage,
    pub took: Duration,
    pub attempts: usize,
    pub refusals: Refusals,
}

pub struct Harness {
    pub timeline: Timeline,
    pub etcd: EtcdProcess,
    pub clusters: TwoClusters,
    pub metadata_sync: Service,
    pub health_check: Service,
    pub scanner: Service,
    pub routers: Vec<Router>,
    pub task_id: String,
    pub topics: Vec<TopicSpec>,
    pub tasks: Tasks,
    pub health: Health,
    pub moves: Vec<StageMove>,
    pub refusals: Refusals,
}

fn endpoint(c: &RocketMqCluster) -> ClusterEndpoint {
    ClusterEndpoint {
        namesrv_addrs: c.namesrv_addr(),
        cluster_name: c.cluster_name().into(),
        credentials: None,
    }
}

pub fn stage_name(s: i32) -> &'static str {
    Stage::try_from(s).map_or("?", |s| s.as_str_name())
}

impl Harness {
    /// etcd, clusters A and B with `topics` (4 queues) and their groups on A only, and the
    /// services metadata-sync, health-check and scanner as processes on etcd.
    pub async fn start(label: &str, topics: Vec<TopicSpec>) -> Harness {
        init_tracing();
        let timeline = Timeline::new(label);
        let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
        let etcd = etcd.expect("etcd must start (install etcd-server; CI requires it)");
        let clusters = clusters.expect("RocketMQ peers must start (scripts/install-peers)");
        for t in &topics {
            clusters.a.create_topic(&t.name, 4).await.unwrap();
            clusters.a.create_group(&t.group).await.unwrap();
        }
        timeline.note(format!(
            "etcd, clusters A ({}) and B ({}) up; {} topics and groups created on A",
            clusters.a.namesrv_addr(),
            clusters.b.namesrv_addr(),
            topics.len()
        ));
        let etcd_args = vec!["--etcd-endpoints".to_string(), etcd.endpoint()];
        let mut hc_args = etcd_args.clone();
        hc_args.extend([
            "--scan-interval".to_string(),
            SCAN_INTERVAL.to_string(),
            "--route-poll-interval".to_string(),
            format!("{}s", ROUTE_POLL.as_secs()),
        ]);
        let (metadata_sync, health_check, scanner) = tokio::join!(
            Service::start("metadata-sync", &etcd_args),
            Service::start("health-check", &hc_args),
            Service::start("scanner", &etcd_args),
        );
        timeline.note("ferry-metadata-sync, ferry-health-check, ferry-scanner SERVING");
        let tasks = Tasks::new(metadata_sync.channel(Duration::from_secs(180)))
            .max_decoding_message_size(64 << 20);
        let health = Health::new(health_check.channel(Duration::from_secs(60)));
        Harness {
            timeline,
            etcd,
            clusters,
            metadata_sync,
            health_check,
            scanner,
            routers: Vec::new(),
            task_id: String::new(),
            topics,
            tasks,
            health,
            moves: Vec::new(),
            refusals: Refusals::default(),
        }
    }

    pub fn note(&self, what: impl Into<String>) {
        self.timeline.note(what);
    }

    /// The router pool as clients name it: "r1;r2".
    pub fn router_pool(&self) -> String {
        self.routers
            .iter()
            .map(|r| r.namesrv.clone())
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.topics.iter().map(|t| t.name.clone()).collect()
    }

    /// The scanner process sees the source and our topics (a live scan into a snapshot).
    pub async fn scanner_sees_source(&self) {
        let mut scanner = Scanner::new(self.scanner.channel(Duration::from_secs(60)));
        let check = scanner
            .check_connection(spb::CheckConnectionRequest {
                source: Some(endpoint(&self.clusters.a)),
                target: Some(endpoint(&self.clusters.b)),
                ..Default::default()
            })
            .await
            .expect("scanner CheckConnection")
            .into_inner();
        assert_eq!(
            check.outcome,
            ConnectOutcome::Ok as i32,
            "scanner: {}",
            check.message
        );
        let snapshot = scanner
            .scan(spb::ScanRequest {
                source: Some(endpoint(&self.clusters.a)),
                ..Default::default()
            })
            .await
            .expect("scanner Scan")
            .into_inner()
            .snapshot
            .expect("a snapshot");
        let listed: BTreeSet<String> = scanner
            .list_snapshot_topics(spb::ListSnapshotTopicsRequest {
                snapshot_id: snapshot.snapshot_id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("scanner ListSnapshotTopics")
            .into_inner()
            .topics
            .into_iter()
            .map(|t| t.name)
            .collect();
        for t in &self.topics {
            assert!(
                listed.contains(&t.name),
                "scanner missed {}: {listed:?}",
                t.name
            );
        }
        self.note(format!(
            "scanner: source reachable, snapshot {} lists every user topic",
            snapshot.snapshot_id
        ));
    }

    /// CreateMigrationTask (A → B, 5.x), then two routers for it.
    pub async fn create_task(&mut self, name: &str) {
        let task = self
            .tasks
            .create_migration_task(pb::CreateMigrationTaskRequest {
                dry_run: false,
                name: name.into(),
                source: Some(endpoint(&self.clusters.a)),
                target_type: TargetType::V5 as i32,
                target: Some(endpoint(&self.clusters.b)),
                actor: ACTOR.into(),
            })
            .await
            .expect("CreateMigrationTask")
            .into_inner()
            .task
            .expect("task");
        self.task_id = task.task_id.clone();
        assert_eq!(task.step, Step::Connect as i32);
        let etcd = self.etcd.endpoint();
        let (r1, r2) = tokio::join!(
            Router::start(&self.task_id, &etcd),
            Router::start(&self.task_id, &etcd)
        );
        self.routers = vec![r1, r2];
        self.note(format!(
            "task {} created; routers {}",
            self.task_id,
            self.router_pool()
        ));
    }

    pub async fn task(&mut self) -> pb::MigrationTask {
        self.tasks
            .get_migration_task(pb::GetMigrationTaskRequest {
                task_id: self.task_id.clone(),
            })
            .await
            .expect("GetMigrationTask")
            .into_inner()
            .task
            .expect("task")
    }

    pub async fn advance_step(
        &mut self,
        from: Step,
        force: bool,
    ) -> Result<pb::MigrationTask, tonic::Status> {
        self.tasks
            .advance_step(pb::AdvanceStepRequest {
                task_id: self.task_id.clone(),
                from_step: from as i32,
                actor: ACTOR.into(),
                force,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().task.expect("task"))
    }

    /// Steps 1 and 2: ConnectSource, AdvanceStep(CONNECT), RefreshSourceInventory,
    /// ImportMigrationItems{all}, AdvanceStep(IMPORT_METADATA) without force.
    pub async fn connect_and_import(&mut self) {
        let connected = self
            .tasks
            .connect_source(pb::ConnectSourceRequest {
                dry_run: false,
                task_id: self.task_id.clone(),
            })
            .await
            .expect("ConnectSource")
            .into_inner();
        assert_eq!(
            connected.outcome,
            ConnectOutcome::Ok as i32,
            "ConnectSource: {}",
            connected.message
        );
        let task = self
            .advance_step(Step::Connect, false)
            .await
            .expect("step 1 -> 2");
        assert_eq!(task.step, Step::ImportMetadata as i32);
        self.note("step 1 CONNECT done (source and target probed OK)");

        let inventory = self
            .tasks
            .refresh_source_inventory(pb::RefreshSourceInventoryRequest {
                dry_run: false,
                task_id: self.task_id.clone(),
            })
            .await
            .expect("RefreshSourceInventory")
            .into_inner();
        for t in &self.topics {
            assert!(
                inventory.new_topics.contains(&t.name),
                "inventory misses topic {}: {:?}",
                t.name,
                inventory.new_topics
            );
            assert!(
                inventory.new_groups.contains(&t.group),
                "inventory misses group {}: {:?}",
                t.group,
                inventory.new_groups
            );
        }
        // Gate 2 -> 3 refuses before anything is imported.
        let early = self.advance_step(Step::ImportMetadata, false).await;
        let err = early.expect_err("step 2 must not pass before the import");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

        let imported = self
            .tasks
            .import_migration_items(pb::ImportMigrationItemsRequest {
                task_id: self.task_id.clone(),
                all: true,
                ..Default::default()
            })
            .await
            .expect("ImportMigrationItems")
            .into_inner()
            .items;
        for t in &self.topics {
            for name in [&t.name, &t.group] {
                let item = imported
                    .iter()
                    .find(|i| &i.source_name == name || &i.name == name)
                    .unwrap_or_else(|| panic!("{name} not imported: {imported:?}"));
                assert!(
                    [
                        ItemResult::Success as i32,
                        ItemResult::AlreadyExistsSkipped as i32
                    ]
                    .contains(&item.result),
                    "{name}: {item:?}"
                );
            }
        }
        // The topics joined the task at INITIAL and exist on B.
        let stages = self.stages().await;
        for t in &self.topics {
            assert_eq!(
                stages.get(&t.name).map(|s| s.0),
                Some(Stage::Initial as i32),
                "{} not in the task at INITIAL: {stages:?}",
                t.name
            );
            assert!(
                self.clusters.b.route(&t.name).await.unwrap().is_some(),
                "{} not routed on B",
                t.name
            );
        }
        let task = self
            .advance_step(Step::ImportMetadata, false)
            .await
            .expect("step 2 -> 3 without force once everything is imported");
        assert_eq!(task.step, Step::SwitchAccessPoint as i32);
        self.note(format!(
            "step 2 IMPORT_METADATA done: {} items imported, topics INITIAL",
            imported.len()
        ));
    }

    /// Topic -> (stage, revision).
    pub async fn stages(&mut self) -> BTreeMap<String, (i32, i64)> {
        self.tasks
            .list_topic_stages(pb::ListTopicStagesRequest {
                task_id: self.task_id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("ListTopicStages")
            .into_inner()
            .topics
            .into_iter()
            .map(|t| (t.topic, (t.stage, t.revision)))
            .collect()
    }

    /// Measures and publishes readiness now (CheckTopics); errors are returned, not fatal.
    pub async fn check_topics(
        &mut self,
        topics: &[String],
    ) -> Result<Vec<hpb::TopicReadiness>, tonic::Status> {
        self.health
            .check_topics(hpb::CheckTopicsRequest {
                task_id: self.task_id.clone(),
                topics: topics.to_vec(),
                dry_run: false,
            })
            .await
            .map(|r| r.into_inner().topics)
    }

    /// Step 3's gate refuses while a client of a task topic still uses the source
    /// NameServer: `producer` (already sending on A) must be named CLIENTS_NOT_SWITCHED.
    pub async fn step3_refuses_unswitched_client(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let topics = self.topic_names();
        let mut last = String::new();
        loop {
            // Readiness must show the unswitched client first (measured by health-check).
            let seen = match self.check_topics(&topics).await {
                Ok(report) => report.iter().any(|t| {
                    t.next.as_ref().is_some_and(|n| {
                        n.reasons
                            .iter()
                            .any(|r| r.code == ReadinessReasonCode::ClientsNotSwitched as i32)
                    })
                }),
                Err(e) => {
                    last = e.to_string();
                    false
                }
            };
            if seen {
                let err = self
                    .advance_step(Step::SwitchAccessPoint, false)
                    .await
                    .expect_err("step 3 must refuse while a client is on the source NameServer");
                assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
                let codes = codes_in_text(err.message());
                if codes.contains("CLIENTS_NOT_SWITCHED") {
                    self.refusals.add(&codes, err.message());
                    self.note(format!(
                        "step 3 refused (FAILED_PRECONDITION): {}",
                        err.message()
                    ));
                    return;
                }
                last = err.message().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "CLIENTS_NOT_SWITCHED never refused step 3; last: {last}"
            );
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// AdvanceStep(SWITCH_ACCESS_POINT) without force, retried until the published
    /// readiness proves every client switched.
    pub async fn advance_step3_when_switched(&mut self) -> Duration {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(120);
        let topics = self.topic_names();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let _ = self.check_topics(&topics).await;
            match self.advance_step(Step::SwitchAccessPoint, false).await {
                Ok(task) => {
                    assert_eq!(task.step, Step::GrayMigration as i32);
                    self.note(format!(
                        "step 3 SWITCH_ACCESS_POINT done without force after {attempts} attempts ({:.1} s)",
                        start.elapsed().as_secs_f64()
                    ));
                    return start.elapsed();
                }
                Err(e) => {
                    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
                    self.refusals.add(&codes_in_text(e.message()), e.message());
                    assert!(
                        Instant::now() < deadline,
                        "step 3 still refused after {attempts} attempts: {}",
                        e.message()
                    );
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn change(
        &mut self,
        topics: Vec<pb::TopicRef>,
        rollback: bool,
    ) -> Result<Vec<pb::StageChangeResult>, tonic::Status> {
        let change = pb::StageChangeRequest {
            task_id: self.task_id.clone(),
            topics,
            force: false,
            actor: ACTOR.into(),
            reason: "zero-loss test".into(),
            ..Default::default()
        };
        if rollback {
            self.tasks
                .rollback_topics(pb::RollbackTopicsRequest {
                    change: Some(change),
                })
                .await
                .map(|r| r.into_inner().results)
        } else {
            self.tasks
                .advance_topics(pb::AdvanceTopicsRequest {
                    change: Some(change),
                })
                .await
                .map(|r| r.into_inner().results)
        }
    }

    /// One attempt to move every topic still at `from` one stage (no force), right now;
    /// returns the results (used to prove a refusal right after a change).
    pub async fn try_move_now(
        &mut self,
        from: Stage,
        rollback: bool,
    ) -> Vec<pb::StageChangeResult> {
        let topics: Vec<pb::TopicRef> = self
            .stages()
            .await
            .into_iter()
            .filter(|(_, (s, _))| *s == from as i32)
            .map(|(topic, (_, revision))| pb::TopicRef {
                topic,
                expected_revision: revision,
            })
            .collect();
        let results = self
            .change(topics, rollback)
            .await
            .expect("AdvanceTopics/RollbackTopics");
        for r in &results {
            assert!(!r.changed, "{} changed without readiness: {r:?}", r.topic);
            self.refusals.add(&codes_of(r), &r.error);
        }
        results
    }

    /// Moves every topic from `from` to `to` (one stage, forward or back) without force,
    /// retrying on fresh readiness until each changed. Topics already at `to` count as
    /// moved; a topic anywhere else fails the test.
    pub async fn move_all(&mut self, from: Stage, to: Stage) -> StageMove {
        let rollback = (to as i32) < (from as i32);
        let start = Instant::now();
        let deadline = start + STAGE_DEADLINE;
        let mut refusals = Refusals::default();
        let mut attempts = 0;
        let mut last_errors: Vec<String> = Vec::new();
        loop {
            let stages = self.stages().await;
            let mut pending = Vec::new();
            for t in &self.topics {
                let (stage, revision) = *stages
                    .get(&t.name)
                    .unwrap_or_else(|| panic!("{} left the task: {stages:?}", t.name));
                if stage == to as i32 {
                    continue;
                }
                assert_eq!(
                    stage,
                    from as i32,
                    "{} is {} while moving {} -> {}",
                    t.name,
                    stage_name(stage),
                    from.as_str_name(),
                    to.as_str_name()
                );
                pending.push(pb::TopicRef {
                    topic: t.name.clone(),
                    expected_revision: revision,
                });
            }
            if pending.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} -> {} not done within {STAGE_DEADLINE:?} ({attempts} attempts); last refusals:\n{}",
                from.as_str_name(),
                to.as_str_name(),
                last_errors.join("\n")
            );
            attempts += 1;
            let names: Vec<String> = pending.iter().map(|t| t.topic.clone()).collect();
            if let Err(e) = self.check_topics(&names).await {
                last_errors = vec![format!("CheckTopics: {e}")];
            }
            let mut all_changed = false;
            match self.change(pending, rollback).await {
                Ok(results) => {
                    last_errors.clear();
                    all_changed = results.iter().all(|r| r.changed);
                    for r in results {
                        if r.changed {
                            self.note(format!(
                                "{}: {} -> {} (rev {}){}",
                                r.topic,
                                stage_name(r.from_stage),
                                stage_name(r.to_stage),
                                r.revision,
                                if attempts > 1 {
                                    format!(" after {attempts} attempts")
                                } else {
                                    String::new()
                                }
                            ));
                        } else {
                            let codes = codes_of(&r);
                            refusals.add(&codes, &format!("{}: {}", r.topic, r.error));
                            last_errors.push(format!("{}: {:?} {}", r.topic, codes, r.error));
                        }
                    }
                }
                Err(e) => last_errors = vec![format!("change call failed: {e}")],
            }
            if !all_changed {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        let m = StageMove {
            from,
            to,
            took: start.elapsed(),
            attempts,
            refusals,
        };
        self.note(format!(
            "all topics {} -> {} in {:.1} s, {} attempts, refusals {:?}",
            from.as_str_name(),
            to.as_str_name(),
            m.took.as_secs_f64(),
            m.attempts,
            m.refusals.codes
        ));
        self.refusals.merge(&m.refusals);
        self.moves.push(m.clone());
        m
    }

    /// AdvanceStep(GRAY_MIGRATION): every topic DONE, the task completes.
    pub async fn complete(&mut self) {
        let task = self
            .advance_step(Step::GrayMigration, false)
            .await
            .expect("step 4 -> 5 once every topic is DONE");
        assert_eq!(task.step, Step::Complete as i32);
        assert_eq!(
            task.state,
            pb::MigrationTaskState::Completed as i32,
            "{task:?}"
        );
        self.note("step 4 GRAY_MIGRATION done: task COMPLETE, target released");
    }

    /// Messages of our topics left unconsumed on cluster A (source), per topic and group,
    /// measured on the broker (Σ brokerOffset − committed offset, topic and %RETRY% topic),
    /// and the health checker's CheckBacklog for the same.
    pub async fn source_backlog(&mut self) -> (BTreeMap<String, i64>, bool) {
        let out = self.backlog_on(&self.clusters.a.broker_addr()).await;
        let checked = self
            .health
            .check_backlog(hpb::CheckBacklogRequest {
                cluster: Some(endpoint(&self.clusters.a)),
                topics: self.topic_names(),
                groups: self.topics.iter().map(|t| t.group.clone()).collect(),
            })
            .await
            .expect("CheckBacklog")
            .into_inner();
        (out, checked.all_drained)
    }

    /// Unconsumed messages of our topics on the broker at `addr`, per `topic/group`
    /// (topic and `%RETRY%` topic; committed offsets), plus scheduled messages not yet
    /// delivered there (`SCHEDULE_TOPIC_XXXX`, all topics).
    pub async fn backlog_on(&self, addr: &str) -> BTreeMap<String, i64> {
        let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig::default()));
        let mut out = BTreeMap::new();
        for t in &self.topics {
            for topic in [t.name.clone(), format!("%RETRY%{}", t.group)] {
                let stored: i64 = admin
                    .topic_stats(addr, &topic)
                    .await
                    .unwrap()
                    .map_or(0, |s| {
                        s.offset_table.iter().map(|(_, o)| o.max_offset).sum()
                    });
                if stored == 0 {
                    out.insert(format!("{topic}/{}", t.group), 0);
                    continue;
                }
                let consumed: i64 = match admin.consume_stats(addr, &t.group, Some(&topic)).await {
                    Ok(stats) => stats
                        .offset_table
                        .iter()
                        .map(|(_, o)| o.consumer_offset.max(0))
                        .sum(),
                    Err(_) => 0,
                };
                out.insert(format!("{topic}/{}", t.group), stored - consumed);
            }
        }
        out
    }

    /// Scheduled messages stored on the broker at `addr` but not delivered yet
    /// (Σ over `SCHEDULE_TOPIC_XXXX` queues of max offset − delivered offset).
    pub async fn pending_delayed_on(&self, addr: &str) -> Option<i64> {
        let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig::default()));
        let stats = admin
            .topic_stats(addr, "SCHEDULE_TOPIC_XXXX")
            .await
            .ok()??;
        let delivered = admin.delay_offsets(addr).await.ok()?;
        let mut pending = 0;
        for (mq, o) in stats.offset_table.iter() {
            // Queue id q holds delay level q + 1.
            let done = delivered
                .offset_table
                .get(&(mq.queue_id + 1))
                .copied()
                .unwrap_or(0);
            pending += (o.max_offset - done).max(0);
        }
        Some(pending)
    }

    /// One line per stage move, for the report.
    pub fn report(&self) {
        eprintln!("---- stage moves ----");
        for m in &self.moves {
            eprintln!(
                "{:>22} -> {:<22} {:>6.1} s  {:>2} attempts  refusals {:?}",
                m.from.as_str_name(),
                m.to.as_str_name(),
                m.took.as_secs_f64(),
                m.attempts,
                m.refusals.codes
            );
        }
        eprintln!("all refusal codes seen: {:?}", self.refusals.codes);
    }
}

/// Final accounting: stop producers, drain, assert no loss and nothing left on the source.
pub async fn finish(h: &mut Harness, mut traffic: Traffic) -> Ledger {
    traffic.stop_producers().await;
    let drained = traffic.drain(Duration::from_secs(120)).await;
    let ledger = match drained {
        Ok(took) => {
            h.note(format!(
                "all acknowledged keys consumed {:.1} s after the last send",
                took.as_secs_f64()
            ));
            traffic.ledger()
        }
        Err(ledger) => {
            h.report();
            let why = traffic.explain_missing(&ledger);
            let stages = h.stages().await;
            eprintln!("stages now: {stages:?}");
            for c in [&h.clusters.a, &h.clusters.b] {
                eprintln!(
                    "{}: unconsumed {:?}, scheduled not delivered {:?}",
                    c.broker_name(),
                    h.backlog_on(&c.broker_addr()).await,
                    h.pending_delayed_on(&c.broker_addr()).await
                );
            }
            eprintln!("---- timeline ----");
            for (at, e) in h.timeline.events() {
                eprintln!("[{:>6.1}s] {e}", at.as_secs_f64());
            }
            panic!("MESSAGE LOSS: {}\n{why}", ledger.summary());
        }
    };
    assert!(ledger.missing().is_empty(), "{}", ledger.summary());
    let per_broker = ledger.sent_per_broker();
    for c in [&h.clusters.a, &h.clusters.b] {
        assert!(
            per_broker.get(c.broker_name()).is_some_and(|n| *n > 0),
            "no acknowledged send was stored on {}: {per_broker:?}",
            c.broker_name()
        );
    }
    let dups = ledger.duplicates();
    eprintln!(
        "ledger: {}; duplicates {} keys ({} extra deliveries); failed (unacknowledged) sends {}",
        ledger.summary(),
        dups.len(),
        dups.values().map(|n| n - 1).sum::<usize>(),
        traffic.failures()
    );
    let order = traffic.order_report();
    eprintln!(
        "order: {} first deliveries of ordered keys checked, {} per-queue violations, {} cross-queue inversions (shards moved between queues at stage changes)",
        order.checked,
        order.queue_violations.len(),
        order.cross_queue_inversions
    );
    assert!(
        order.queue_violations.is_empty(),
        "per-key order broken within a queue: {:?}",
        &order.queue_violations[..order.queue_violations.len().min(20)]
    );
    // Nothing stranded on the source.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (backlog, all_drained) = h.source_backlog().await;
        let left: i64 = backlog.values().sum();
        if left == 0 && all_drained {
            h.note(format!(
                "source backlog 0 on cluster A ({} topic/group pairs), CheckBacklog all_drained",
                backlog.len()
            ));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "messages left unconsumed on the source: {backlog:?}, CheckBacklog all_drained={all_drained}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    h.report();
    traffic.shutdown().await;
    ledger
}
