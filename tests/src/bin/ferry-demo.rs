//! `ferry-demo`: the one-command demo run by `scripts/demo`.
//!
//! Starts two local RocketMQ clusters (the Rust peers), `ferry standalone` (embedded store),
//! real producers and consumers with keyed messages, and walks a migration task through its
//! five steps while traffic flows: connect, import, switch the clients' NameServer address to
//! Ferry's router, every stage INITIAL → DUAL_READ → DUAL_WRITE → SWITCHING → DONE (each
//! change only when the health checker says ready), complete. A live view shows the stage
//! and readiness of each topic and where the writes land; the summary says sent, consumed,
//! missing, duplicates and the time per stage. Exit code 0 only with `missing 0`.
//!
//! Everything it starts is stopped and its temporary directories removed on exit, also on
//! Ctrl-C. Traffic goes to 127.0.0.1 only.

// A demo's job is to print to stdout.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, ReadinessReasonCode, Stage, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use ferry_testkit::traffic::{ClientOptions, Ledger, TrafficConsumer, TrafficProducer};
use ferry_testkit::{ServiceProcess, free_port};
use tokio::sync::Mutex;
use tonic::transport::Channel;

type Tasks = MigrationTaskServiceClient<Channel>;

/// Topics of the demo, each with its consumer group.
const TOPICS: [(&str, &str); 2] = [
    ("DemoOrders", "demo-orders-cg"),
    ("DemoPayments", "demo-payments-cg"),
];
/// The clients' route poll interval (the Rust client's minimum); a stage is held at least
/// twice this so every client saw it.
const ROUTE_POLL: &str = "10s";
/// Longest wait for one step or stage to become ready.
const STEP_DEADLINE: Duration = Duration::from_secs(180);
/// Messages per second per topic.
const RATE_PER_TOPIC: u64 = 10;

struct Args {
    ferry: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut ferry = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ferry" => ferry = it.next().map(PathBuf::from),
            "-h" | "--help" => {
                return Err(
                    "usage: ferry-demo --ferry PATH/TO/ferry (run it through scripts/demo)".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    Ok(Args {
        ferry: ferry.ok_or("--ferry PATH is required (the ferry binary)")?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let demo = Demo::new();
    let run = demo.clone().run(args);
    tokio::select! {
        outcome = run => match outcome {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("\ndemo failed: {e}");
                demo.cleanup().await;
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: stopping clients, Ferry and both clusters");
            demo.cleanup().await;
            ExitCode::from(130)
        }
    }
}

/// What has to be stopped on the way out, whatever happened.
#[derive(Default)]
struct Parts {
    producers: Vec<Arc<TrafficProducer>>,
    /// The send loops; they end once `stop` is set.
    senders: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Each consumer with the topic it reads.
    consumers: Vec<(String, TrafficConsumer)>,
    ferry: Option<ServiceProcess>,
    clusters: Vec<RocketMqCluster>,
    workdir: Option<tempfile::TempDir>,
}

#[derive(Clone)]
struct Demo {
    parts: Arc<Mutex<Parts>>,
    started: Instant,
}

fn section(title: &str) {
    println!("\n== {title}");
}

impl Demo {
    fn new() -> Demo {
        Demo {
            parts: Arc::new(Mutex::new(Parts::default())),
            started: Instant::now(),
        }
    }

    fn clock(&self) -> String {
        let s = self.started.elapsed().as_secs();
        format!("[{:02}:{:02}]", s / 60, s % 60)
    }

    async fn cleanup(&self) {
        let mut parts = self.parts.lock().await;
        stop_senders(&mut parts).await;
        for p in parts.producers.drain(..) {
            if let Ok(p) = Arc::try_unwrap(p) {
                p.shutdown().await;
            }
        }
        for (_, c) in parts.consumers.drain(..) {
            c.shutdown().await;
        }
        if let Some(mut f) = parts.ferry.take() {
            let _ = f.terminate(Duration::from_secs(10)).await;
        }
        // Dropping a cluster stops its processes and removes its directories.
        parts.clusters.clear();
        parts.workdir.take();
    }

    async fn start_ferry(
        &self,
        ferry: &std::path::Path,
        extra: &[String],
    ) -> Result<String, String> {
        let mut parts = self.parts.lock().await;
        if let Some(mut old) = parts.ferry.take() {
            old.terminate(Duration::from_secs(15))
                .await
                .map_err(|e| format!("stopping ferry standalone: {e}"))?;
        }
        let dir = parts
            .workdir
            .as_ref()
            .ok_or("no work dir")?
            .path()
            .to_path_buf();
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let mut argv: Vec<String> = vec![
            "standalone".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--ready-file".into(),
            ready.display().to_string(),
        ];
        argv.extend_from_slice(extra);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut process = ServiceProcess::spawn(
            "ferry standalone",
            ferry.display().to_string(),
            &argv,
            &[
                ("FERRY_ROUTE_POLL_INTERVAL", ROUTE_POLL),
                ("FERRY_SCAN_INTERVAL", "3s"),
                ("FERRY_LOG", "warn"),
            ],
        )
        .map_err(|e| format!("cannot start {}: {e}", ferry.display()))?;
        let addr = process
            .wait_for_file(&ready.display().to_string(), Duration::from_secs(60))
            .await
            .map_err(|e| format!("ferry standalone did not start: {e}"))?;
        parts.ferry = Some(process);
        Ok(format!("http://{addr}"))
    }

    async fn run(self, args: Args) -> Result<bool, String> {
        println!(
            "Ferry demo: a live RocketMQ migration, ClusterA → ClusterB, with traffic flowing."
        );
        let workdir = tempfile::Builder::new()
            .prefix("ferry-demo-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        self.parts.lock().await.workdir = Some(workdir);

        section("1/7 two local RocketMQ clusters");
        let a = RocketMqCluster::start(ClusterSpec::default())
            .await
            .map_err(|e| format!("ClusterA: {e}"))?;
        let b = RocketMqCluster::start(ClusterSpec::cluster_b())
            .await
            .map_err(|e| format!("ClusterB: {e}"))?;
        for (topic, group) in TOPICS {
            a.create_topic(topic, 4).await.map_err(|e| e.to_string())?;
            a.create_group(group).await.map_err(|e| e.to_string())?;
        }
        let (source_ns, target_ns) = (a.namesrv_addr(), b.namesrv_addr());
        println!(
            "source ClusterA: NameServer {source_ns}, broker broker-a; topics DemoOrders, DemoPayments"
        );
        println!("target ClusterB: NameServer {target_ns}, broker broker-b; empty");
        {
            let mut parts = self.parts.lock().await;
            parts.clusters.push(a);
            parts.clusters.push(b);
        }

        section("2/7 ferry standalone (embedded store) and a migration task");
        let addr = self.start_ferry(&args.ferry, &[]).await?;
        println!("Ferry gRPC API on {addr}");
        let mut tasks = connect(&addr).await?;
        let task = tasks
            .create_migration_task(pb::CreateMigrationTaskRequest {
                dry_run: false,
                name: "demo".into(),
                source: Some(endpoint("ClusterA", &source_ns)),
                target_type: TargetType::V5 as i32,
                target: Some(endpoint("ClusterB", &target_ns)),
                actor: "demo".into(),
            })
            .await
            .map_err(status)?
            .into_inner()
            .task
            .ok_or("no task returned")?;
        let id = task.task_id.clone();
        println!("task {id} created (step CONNECT)");

        section("3/7 step 1 connect, step 2 import metadata");
        let probe = tasks
            .connect_source(pb::ConnectSourceRequest {
                dry_run: false,
                task_id: id.clone(),
            })
            .await
            .map_err(status)?
            .into_inner();
        println!("connect: {}", probe.message);
        step(&mut tasks, &id, pb::MigrationStep::Connect, false).await?;
        let imported = tasks
            .import_migration_items(pb::ImportMigrationItemsRequest {
                task_id: id.clone(),
                all: true,
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner()
            .items;
        for item in &imported {
            println!(
                "imported {:<18} {}",
                item.name,
                ferry_api::common::v1::ItemResult::try_from(item.result)
                    .map(|r| r.as_str_name().trim_start_matches("ITEM_RESULT_"))
                    .unwrap_or("?")
            );
        }
        step(&mut tasks, &id, pb::MigrationStep::ImportMetadata, false).await?;

        section("4/7 step 3 switch access point: clients use Ferry's router");
        let router_port = free_port();
        let router = format!("127.0.0.1:{router_port}");
        let addr = self
            .start_ferry(
                &args.ferry,
                &[
                    "--router-task-id".into(),
                    id.clone(),
                    "--namesrv-listen".into(),
                    router.clone(),
                ],
            )
            .await?;
        let mut tasks = connect(&addr).await?;
        println!(
            "router for {id} answers the NameServer protocol on {router}; state survived the restart"
        );
        self.start_traffic(&router).await?;
        println!(
            "{} producers + {} consumers started with namesrvAddr={router} ({RATE_PER_TOPIC} msg/s per topic)",
            TOPICS.len(),
            TOPICS.len()
        );
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            match step(&mut tasks, &id, pb::MigrationStep::SwitchAccessPoint, false).await {
                Ok(()) => break,
                Err(why) if Instant::now() < deadline => {
                    println!("{} waiting: {}", self.clock(), short(&why));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(why) => return Err(why),
            }
        }

        show_switch_status(&addr, &id).await?;

        section("5/7 step 4 gray migration, stage by stage (each change waits for readiness)");
        let mut stage_times: Vec<(String, Duration)> = Vec::new();
        for to in [
            Stage::DualRead,
            Stage::DualWrite,
            Stage::Switching,
            Stage::Done,
        ] {
            let began = Instant::now();
            self.advance_all_to(&mut tasks, &id, to).await?;
            stage_times.push((stage_name(to as i32), began.elapsed()));
        }

        section("6/7 step 5 complete");
        step(&mut tasks, &id, pb::MigrationStep::GrayMigration, false).await?;
        println!("task {id} COMPLETED; ClusterA can be retired");

        section("7/7 drain and count");
        let ok = self.summary(&stage_times).await?;
        self.cleanup().await;
        Ok(ok)
    }

    async fn start_traffic(&self, router: &str) -> Result<(), String> {
        let options = ClientOptions::default();
        let mut parts = self.parts.lock().await;
        for (topic, group) in TOPICS {
            let consumer = TrafficConsumer::start_with(router, group, topic, options)
                .await
                .map_err(|e| format!("consumer of {topic}: {e}"))?;
            parts.consumers.push((topic.to_string(), consumer));
            let producer = Arc::new(
                TrafficProducer::start(router, &format!("{group}-producer"), options)
                    .await
                    .map_err(|e| format!("producer of {topic}: {e}"))?,
            );
            parts.producers.push(producer.clone());
            let stop = parts.stop.clone();
            parts.senders.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE_PER_TOPIC));
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    let key = format!("{topic}-{n:07}");
                    // Failed sends are counted by the producer; only acknowledged ones must
                    // arrive.
                    let _ = producer.send_keyed(topic, &key, key.as_bytes()).await;
                    n += 1;
                }
            }));
        }
        Ok(())
    }

    /// Advances every topic to `to`, retrying while readiness says no; shows the live view.
    async fn advance_all_to(&self, tasks: &mut Tasks, id: &str, to: Stage) -> Result<(), String> {
        let deadline = Instant::now() + STEP_DEADLINE;
        let mut last_view = Instant::now() - Duration::from_secs(60);
        loop {
            let topics = list_topics(tasks, id).await?;
            let behind: Vec<&pb::TopicStage> =
                topics.iter().filter(|t| t.stage < to as i32).collect();
            if behind.is_empty() {
                println!("{} every topic is {}", self.clock(), stage_name(to as i32));
                return Ok(());
            }
            let results = tasks
                .advance_topics(pb::AdvanceTopicsRequest {
                    change: Some(pb::StageChangeRequest {
                        task_id: id.into(),
                        topics: behind
                            .iter()
                            .map(|t| pb::TopicRef {
                                topic: t.topic.clone(),
                                expected_revision: t.revision,
                            })
                            .collect(),
                        actor: "demo".into(),
                        reason: "demo: ready".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(status)?
                .into_inner()
                .results;
            for r in results.iter().filter(|r| r.changed) {
                println!(
                    "{} {:<13} {} -> {}",
                    self.clock(),
                    r.topic,
                    stage_name(r.from_stage),
                    stage_name(r.to_stage)
                );
            }
            if last_view.elapsed() >= Duration::from_secs(10) {
                self.live_view(&topics).await;
                last_view = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "topics not ready for {} within {:?}: {}",
                    stage_name(to as i32),
                    STEP_DEADLINE,
                    results
                        .iter()
                        .filter(|r| !r.changed)
                        .map(|r| format!("{}: {}", r.topic, short(&r.error)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Stage and readiness per topic, and where the acknowledged writes landed.
    async fn live_view(&self, topics: &[pb::TopicStage]) {
        let parts = self.parts.lock().await;
        let mut per_broker: BTreeMap<String, usize> = BTreeMap::new();
        for p in &parts.producers {
            for r in p.sent() {
                *per_broker.entry(r.broker_name).or_insert(0) += 1;
            }
        }
        let consumed: usize = parts
            .consumers
            .iter()
            .map(|(_, c)| c.received_keys().len())
            .sum();
        println!(
            "{} writes so far: source broker-a {}, target broker-b {}; consumed {} distinct",
            self.clock(),
            per_broker.get("broker-a").copied().unwrap_or(0),
            per_broker.get("broker-b").copied().unwrap_or(0),
            consumed
        );
        for t in topics {
            println!(
                "        {:<13} {:<10} next: {}",
                t.topic,
                stage_name(t.stage),
                readiness_cell(t.next.as_ref())
            );
        }
    }

    async fn summary(&self, stage_times: &[(String, Duration)]) -> Result<bool, String> {
        let mut parts = self.parts.lock().await;
        // No send is in flight once the loops have ended: every acknowledgement is counted.
        stop_senders(&mut parts).await;
        let mut sent = Vec::new();
        let mut failed = 0;
        for p in parts.producers.drain(..) {
            sent.extend(p.sent());
            failed += p.failures();
            if let Ok(p) = Arc::try_unwrap(p) {
                p.shutdown().await;
            }
        }
        let expect: std::collections::HashSet<String> =
            sent.iter().map(|r| r.key.clone()).collect();
        // Every consumer waits (bounded) for the keys of its topic.
        for (topic, c) in &parts.consumers {
            let mine: std::collections::HashSet<String> = sent
                .iter()
                .filter(|r| &r.topic == topic)
                .map(|r| r.key.clone())
                .collect();
            let _ = c.wait_for_keys(&mine, Duration::from_secs(60)).await;
        }
        let mut received: HashMap<String, usize> = HashMap::new();
        for (_, c) in &parts.consumers {
            for (k, n) in c.received_keys() {
                *received.entry(k).or_insert(0) += n;
            }
        }
        let ledger = Ledger::new(sent.clone(), received);
        let missing = ledger.missing();
        let dups = ledger.duplicates();
        let per_broker = ledger.sent_per_broker();
        println!();
        println!("  sent (acknowledged)   {}", ledger.sent().len());
        println!(
            "    to source broker-a  {}",
            per_broker.get("broker-a").copied().unwrap_or(0)
        );
        println!(
            "    to target broker-b  {}",
            per_broker.get("broker-b").copied().unwrap_or(0)
        );
        println!("  send failures         {failed}");
        println!("  consumed (distinct)   {}", expect.len() - missing.len());
        println!("  missing               {}", missing.len());
        println!(
            "  duplicates            {} (extra deliveries {})",
            dups.len(),
            dups.values().map(|n| n - 1).sum::<usize>()
        );
        for (stage, took) in stage_times {
            println!("  time to {stage:<11}   {:.0} s", took.as_secs_f64());
        }
        println!(
            "  total                 {:.0} s",
            self.started.elapsed().as_secs_f64()
        );
        if !missing.is_empty() {
            println!(
                "  MISSING KEYS: {:?}",
                missing.iter().take(20).collect::<Vec<_>>()
            );
        }
        println!("\nmissing {}", missing.len());
        Ok(missing.is_empty())
    }
}

/// Stops the send loops and waits for the sends in flight.
async fn stop_senders(parts: &mut Parts) {
    parts.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in parts.senders.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(10), sender).await;
    }
}

/// Step 3's evidence: per topic, the clients seen through the router.
async fn show_switch_status(addr: &str, id: &str) -> Result<(), String> {
    use ferry_api::health_check::v1::ListTopicClientsRequest;
    use ferry_api::health_check::v1::health_check_service_client::HealthCheckServiceClient;
    let channel = Channel::from_shared(addr.to_string())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot reach Ferry at {addr}: {e}"))?;
    let seen = HealthCheckServiceClient::new(channel)
        .list_topic_clients(ListTopicClientsRequest {
            task_id: id.into(),
            topic: String::new(),
        })
        .await
        .map_err(status)?
        .into_inner();
    for t in seen.topics {
        let addrs: Vec<String> = t.clients.iter().map(|c| c.client_addr.clone()).collect();
        println!(
            "{:<13} {} client(s) through the router: {}",
            t.topic,
            t.client_count,
            addrs.join(", ")
        );
    }
    Ok(())
}

async fn connect(addr: &str) -> Result<Tasks, String> {
    let channel = Channel::from_shared(addr.to_string())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot reach Ferry at {addr}: {e}"))?;
    Ok(Tasks::new(channel))
}

fn endpoint(cluster: &str, namesrv: &str) -> ClusterEndpoint {
    ClusterEndpoint {
        namesrv_addrs: namesrv.into(),
        cluster_name: cluster.into(),
        credentials: None,
    }
}

fn status(s: tonic::Status) -> String {
    format!("{} ({:?})", s.message(), s.code())
}

/// Moves the task one step; the gate's answer on refusal.
async fn step(
    tasks: &mut Tasks,
    id: &str,
    from: pb::MigrationStep,
    force: bool,
) -> Result<(), String> {
    let task = tasks
        .advance_step(pb::AdvanceStepRequest {
            task_id: id.into(),
            from_step: from as i32,
            actor: "demo".into(),
            force,
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner()
        .task
        .ok_or("no task returned")?;
    println!(
        "step {} -> {}",
        from.as_str_name().trim_start_matches("MIGRATION_STEP_"),
        pb::MigrationStep::try_from(task.step)
            .map(|s| s.as_str_name().trim_start_matches("MIGRATION_STEP_"))
            .unwrap_or("?")
    );
    Ok(())
}

async fn list_topics(tasks: &mut Tasks, id: &str) -> Result<Vec<pb::TopicStage>, String> {
    Ok(tasks
        .list_topic_stages(pb::ListTopicStagesRequest {
            task_id: id.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner()
        .topics)
}

fn stage_name(v: i32) -> String {
    Stage::try_from(v)
        .map(|s| s.as_str_name().trim_start_matches("STAGE_").to_string())
        .unwrap_or_else(|_| format!("?{v}"))
}

fn readiness_cell(r: Option<&ferry_api::common::v1::Readiness>) -> String {
    match r {
        None => "not measured yet".into(),
        Some(r) if r.ready => "ready".into(),
        Some(r) => r
            .reasons
            .iter()
            .map(|x| {
                let code = ReadinessReasonCode::try_from(x.code)
                    .map(|c| {
                        c.as_str_name()
                            .trim_start_matches("READINESS_REASON_CODE_")
                            .to_string()
                    })
                    .unwrap_or_default();
                format!("{code} ({})", x.detail)
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The first 160 characters of a long explanation.
fn short(s: &str) -> String {
    let cut: String = s.chars().take(160).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
