//! `ferry scan`, `ferry export` and `ferry template` as an operator runs them, against a real
//! RocketMQ cluster: the export script's prompts in a pseudo-terminal, flags that never
//! prompt, partial scans that say so, and a server-side scan through `ferry standalone`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_metadata::{ExportLayout, parse_export, read_xlsx};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::{BrokerAdmin, ClientConfig, RemotingClient, RequestCode, ResponseCode};
use ferry_testkit::ServiceProcess;
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Creates `Cli0..Cli{n}` topics and `GID_cli0..` groups; returns the topic names.
async fn populate(cluster: &RocketMqCluster, n: usize) -> BTreeSet<String> {
    let admin = BrokerAdmin::new(RemotingClient::new(ClientConfig::default()));
    let topics: Vec<TopicConfig> = (0..n)
        .map(|i| TopicConfig {
            topic_name: format!("Cli{i}"),
            read_queue_nums: 4,
            write_queue_nums: 4,
            ..Default::default()
        })
        .collect();
    admin
        .create_topics(&cluster.broker_addr(), &topics)
        .await
        .unwrap();
    let groups: Vec<SubscriptionGroupConfig> = (0..n)
        .map(|i| SubscriptionGroupConfig {
            group_name: format!("GID_cli{i}"),
            ..Default::default()
        })
        .collect();
    admin
        .create_groups(&cluster.broker_addr(), &groups)
        .await
        .unwrap();
    topics.into_iter().map(|t| t.topic_name).collect()
}

/// `ferry` with a clean environment for the source flags.
fn ferry() -> Command {
    let mut cmd = Command::new(FERRY);
    for var in [
        "FERRY_SOURCE_NAMESRV",
        "FERRY_SOURCE_CLUSTER",
        "FERRY_SOURCE_ACCESS_KEY",
        "FERRY_SOURCE_SECRET_KEY",
        "FERRY_EXPORT_DIR",
        "FERRY_ADDR",
        "FERRY_OUTPUT",
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

fn exported_topics(path: &std::path::Path) -> BTreeSet<String> {
    let parsed = parse_export("export", &std::fs::read(path).unwrap()).unwrap();
    assert_eq!(parsed.layout, ExportLayout::Metadata);
    parsed.export.topic_config_table.into_keys().collect()
}

/// The export script's dialogue, in a pseudo-terminal: name servers, a cluster chosen from
/// the list, the output directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_asks_like_the_export_script_in_a_terminal() {
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let topics = populate(&cluster, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("export");
    let namesrv = cluster.namesrv_addr();
    let out_text = out_dir.display().to_string();
    let answers = tokio::task::spawn_blocking(move || {
        let mut cmd = ferry();
        cmd.arg("export");
        let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
        p.exp_string("Enter name server address list:").unwrap();
        p.send_line(&namesrv).unwrap();
        p.exp_string("1) ClusterA (brokers: broker-a)").unwrap();
        p.exp_string("Choose a cluster to export:").unwrap();
        p.send_line("7").unwrap(); // not in the list: asked again
        p.exp_string("enter a number from 1 to 1").unwrap();
        p.send_line("1").unwrap();
        p.exp_string("Enter file path to export [default /tmp/rocketmq/export]:")
            .unwrap();
        p.send_line(&out_text).unwrap();
        let (_, done) = p.exp_regex("exported \\d+ topics.*\n").unwrap();
        p.exp_eof().unwrap();
        done
    })
    .await
    .unwrap();
    assert!(
        answers.contains("exported 5 topics and 5 groups of cluster ClusterA"),
        "{answers}"
    );
    assert_eq!(
        exported_topics(&out_dir.join("rocketmq-metadata-export.json")),
        topics
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_with_flags_never_prompts() {
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let topics = populate(&cluster, 3).await;
    let dir = tempfile::tempdir().unwrap();

    // No terminal and no --namesrv: a clear error, no prompt.
    let (code, stdout, stderr) = run(ferry().arg("export"));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--namesrv is required when standard input is not a terminal"),
        "{stderr}"
    );
    assert!(!stdout.contains("Enter"), "{stdout}");

    // No terminal, no --cluster: the only cluster is taken; no --out: the default would be
    // used, so pass one.
    let (code, stdout, stderr) = run(ferry().args([
        "--output",
        "json",
        "export",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--out",
        &dir.path().display().to_string(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["cluster"], "ClusterA");
    assert_eq!(report["topics"], 3);
    assert_eq!(
        exported_topics(&dir.path().join("rocketmq-metadata-export.json")),
        topics
    );

    // The spreadsheet, in the 4.x template.
    let (code, _, stderr) = run(ferry().args([
        "export",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--cluster",
        "ClusterA",
        "--out",
        &dir.path().display().to_string(),
        "--format",
        "xlsx",
        "--target",
        "4.x",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let book = read_xlsx(
        "x",
        &std::fs::read(dir.path().join("rocketmq-metadata-export.xlsx")).unwrap(),
    )
    .unwrap();
    assert_eq!(book.target, ferry_core::TargetType::V4);
    // On a 4.x target a name without a namespace goes to namespace Default.
    let names: BTreeSet<String> = book.topics.iter().map(|t| t.topic.clone()).collect();
    assert_eq!(names, topics);
    assert!(
        book.topics
            .iter()
            .all(|t| t.namespace.as_deref() == Some("Default"))
    );

    // An unknown cluster names the known ones.
    let (code, _, stderr) = run(ferry().args([
        "export",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--cluster",
        "Nope",
        "--out",
        &dir.path().display().to_string(),
    ]));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cluster Nope not found") && stderr.contains("ClusterA"),
        "{stderr}"
    );
}

/// Registers a broker that is down; the NameServer keeps it while the connection lives.
async fn register_dead_broker(namesrv: &str) -> RemotingClient {
    let client = RemotingClient::new(ClientConfig::default());
    let dead = format!("127.0.0.1:{}", ferry_testkit::free_port());
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
        .with_ext_field("brokerName", "broker-down")
        .with_ext_field("brokerAddr", dead.as_str())
        .with_ext_field("clusterName", "ClusterA")
        .with_ext_field("haServerAddr", dead.as_str())
        .with_ext_field("brokerId", "0")
        .with_ext_field("compressed", "false")
        .with_ext_field("bodyCrc32", "0")
        .with_body(serde_json::to_vec(&body).unwrap());
    let resp = client.invoke(namesrv, request, None).await.unwrap();
    assert_eq!(resp.code, ResponseCode::SUCCESS, "{:?}", resp.remark);
    for _ in 0..200 {
        let info = ferry_testkit::rocketmq::fetch_cluster_info(namesrv)
            .await
            .unwrap();
        if info.broker_addr_table.contains_key("broker-down") {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("broker-down never registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_scans_exit_2_and_exports_refuse() {
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let topics = populate(&cluster, 2).await;
    let _registration = register_dead_broker(&cluster.namesrv_addr()).await;
    let dir = tempfile::tempdir().unwrap();

    let (code, stdout, stderr) = run(ferry().args([
        "--output",
        "json",
        "scan",
        "--local",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--timeout-ms",
        "2000",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("PARTIAL SCAN") && stderr.contains("broker-down"),
        "{stderr}"
    );
    let listing: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listing["partial"], true);
    let names: BTreeSet<String> = listing["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, topics);

    let args = [
        "export",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--cluster",
        "ClusterA",
        "--out",
        &dir.path().display().to_string(),
        "--timeout-ms",
        "2000",
    ];
    let (code, _, stderr) = run(ferry().args(args));
    assert_ne!(code, 0);
    assert!(stderr.contains("export refused"), "{stderr}");
    assert!(!dir.path().join("rocketmq-metadata-export.json").exists());
    let (code, _, _) = run(ferry().args(args).arg("--allow-partial"));
    assert_eq!(code, 2);
    assert_eq!(
        exported_topics(&dir.path().join("rocketmq-metadata-export.json")),
        topics
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_through_standalone_stores_a_snapshot_to_export_later() {
    let cluster = RocketMqCluster::start(ClusterSpec::default())
        .await
        .unwrap();
    let topics = populate(&cluster, 4).await;
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

    // --dry-run: scanned on the server, the summary shown, no snapshot stored.
    let (code, stdout, stderr) = run(ferry().args([
        "--addr",
        &addr,
        "scan",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Scan of "), "{stdout}");
    assert!(stdout.contains("4 user topics"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("dry run: nothing stored"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(ferry().args([
        "--addr",
        &addr,
        "--output",
        "json",
        "scan",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let dry: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["snapshot_id"].as_str()),
        (Some(true), Some(""))
    );
    assert_eq!(dry["counts"]["user_topics"], 4);

    let (code, stdout, stderr) = run(ferry().args([
        "--addr",
        &addr,
        "scan",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--cluster",
        "ClusterA",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Snapshot "), "{stdout}");
    for t in &topics {
        assert!(stdout.contains(t.as_str()), "{t} missing from\n{stdout}");
    }
    assert!(stdout.contains("broker-a"), "{stdout}");
    assert!(stdout.contains("4 user topics"), "{stdout}");

    let (code, stdout, stderr) = run(ferry().args([
        "--addr",
        &addr,
        "--output",
        "json",
        "scan",
        "--namesrv",
        &cluster.namesrv_addr(),
        "--all",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let listing: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = listing["snapshot_id"].as_str().unwrap().to_string();
    assert!(
        listing["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["class"] == "system"),
        "--all lists system topics"
    );

    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(ferry().args([
        "--addr",
        &addr,
        "export",
        "--snapshot",
        &id,
        "--out",
        &dir.path().display().to_string(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        exported_topics(&dir.path().join("rocketmq-metadata-export.json")),
        topics
    );
}

#[test]
fn template_writes_both_templates() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["4.x", "5.x"] {
        let (code, stdout, stderr) = run(ferry().args([
            "template",
            "--target",
            target,
            "--out",
            &format!("{}/", dir.path().display()),
        ]));
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains(target), "{stdout}");
        let path = dir.path().join(format!("ferry-template-{target}.xlsx"));
        let book = read_xlsx("t", &std::fs::read(path).unwrap()).unwrap();
        assert_eq!(book.target.as_str(), target);
        assert!(book.topics.is_empty() && book.groups.is_empty());
    }
    let (code, _, stderr) = run(ferry().args(["template", "--target", "6.x"]));
    assert_ne!(code, 0);
    assert!(stderr.contains("4.x, 5.x"), "{stderr}");
}
