//! `ferry dataflow check` against a real RocketMQ cluster through `ferry standalone`: a real
//! backlog (messages produced, no consumer) is "not drained" with exit code 2 and the
//! figures shown; once a consumer has read them, "drained" with exit code 0 and step 5
//! allowed.

// The rocketmq-client futures held across awaits are deep (as in the router's bench).
#![recursion_limit = "256"]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::ServiceProcess;
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use ferry_testkit::traffic::{ClientOptions, TrafficConsumer, TrafficProducer};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const TOPIC: &str = "FerryDataflowTopic";
const GROUP: &str = "ferry-dataflow-cg";
const MESSAGES: usize = 12;

fn ferry() -> Command {
    let mut cmd = Command::new(FERRY);
    for var in [
        "FERRY_SOURCE_NAMESRV",
        "FERRY_SOURCE_CLUSTER",
        "FERRY_SOURCE_ACCESS_KEY",
        "FERRY_SOURCE_SECRET_KEY",
        "FERRY_ADDR",
        "FERRY_OUTPUT",
        "FERRY_TOKEN",
        "FERRY_TOKEN_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataflow_check_reports_a_real_backlog_and_the_allowed_step() {
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    cluster.create_topic(TOPIC, 4).await.unwrap();
    cluster.create_group(GROUP).await.unwrap();
    let producer = TrafficProducer::start(
        &cluster.namesrv_addr(),
        "ferry-dataflow-pg",
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let mut keys = HashSet::new();
    for i in 0..MESSAGES {
        let key = format!("df-{i}");
        producer.send_keyed(TOPIC, &key, b"m").await.unwrap();
        keys.insert(key);
    }

    let mut process = ServiceProcess::spawn(
        "standalone",
        FERRY,
        &[
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--ready-file",
            "ready",
        ],
        &[],
    )
    .unwrap();
    let addr = process
        .wait_for_file("ready", Duration::from_secs(30))
        .await
        .unwrap();
    let addr = format!("http://{}", addr.trim());
    let namesrv = cluster.namesrv_addr();
    let check = |json: bool| {
        let mut cmd = ferry();
        cmd.args(["--addr", &addr]);
        if json {
            cmd.args(["--output", "json"]);
        }
        cmd.args([
            "dataflow",
            "check",
            "--namesrv",
            &namesrv,
            "--cluster",
            cluster.cluster_name(),
            "--topic",
            TOPIC,
            "--group",
            GROUP,
        ]);
        run(&mut cmd)
    };

    // Produced, nobody consumed: not drained, exit 2, the figures and the step to wait at.
    let (code, stdout, stderr) = check(false);
    eprintln!("{stdout}");
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with(TOPIC))
        .unwrap_or_else(|| panic!("no row for {TOPIC}:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [TOPIC, GROUP, &MESSAGES.to_string(), "0", "no"],
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("source NOT drained: {MESSAGES} message(s) left")),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> 4. wait until the source backlog is zero"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[WAITING: messages left on the source]"),
        "{stdout}"
    );
    assert!(stdout.contains("[not yet: wait for step 4]"), "{stdout}");

    let (code, stdout, stderr) = check(true);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["all_drained"], false);
    assert_eq!(report["total_backlog"], MESSAGES as i64);
    assert_eq!(report["next_step"], 4);
    assert_eq!(report["backlogs"][0]["topic"], TOPIC);
    assert_eq!(report["backlogs"][0]["group"], GROUP);
    assert_eq!(report["backlogs"][0]["backlog"], MESSAGES as i64);
    assert_eq!(report["backlogs"][0]["drained"], false);
    let statuses: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["allowed", "allowed", "allowed", "waiting", "not_yet"]
    );

    // A consumer reads them and commits its offsets: drained, exit 0, step 5 allowed.
    let consumer = TrafficConsumer::start(&namesrv, GROUP, TOPIC)
        .await
        .unwrap();
    consumer
        .wait_for_keys(&keys, Duration::from_secs(60))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stdout = loop {
        let (code, stdout, stderr) = check(false);
        if code == 0 {
            break stdout;
        }
        assert_eq!(code, 2, "{stdout}\n{stderr}");
        assert!(
            Instant::now() < deadline,
            "offsets not committed within 60 s:\n{stdout}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        stdout.contains("source drained: 0 message(s) left"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> 5. switch the remaining consumers to the target"),
        "{stdout}"
    );
    assert!(stdout.contains("[done: the source is drained]"), "{stdout}");

    consumer.shutdown().await;
    producer.shutdown().await;
    process.terminate(Duration::from_secs(10)).await.unwrap();
}
