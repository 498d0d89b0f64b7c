//! `ferry import` as people and scripts run it, against `ferry standalone` and a real
//! RocketMQ target cluster.

use std::process::{Command, Output};
use std::time::Duration;

use ferry_testkit::ServiceProcess;
use ferry_testkit::rocketmq::{ClusterSpec, RocketMqCluster};
use serde_json::Value;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

async fn standalone() -> (ServiceProcess, String) {
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
    (process, format!("http://{addr}"))
}

fn ferry(addr: &str, args: &[&str]) -> Output {
    Command::new(FERRY)
        .args(["--addr", addr])
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_create_wait_items_list_quota_and_bad_files() {
    let (b, (_server, addr)) = tokio::join!(
        RocketMqCluster::start(ClusterSpec::cluster_b()),
        standalone()
    );
    let b = b.expect("RocketMQ target");
    b.create_topic("Existing", 4).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rocketmq-metadata-export.json");
    std::fs::write(
        &file,
        br#"{"exportTime":1,
            "topicConfigTable":{
              "Orders":{"topicName":"Orders","readQueueNums":8,"writeQueueNums":8,"perm":6},
              "Existing":{"topicName":"Existing","readQueueNums":4,"writeQueueNums":4,"perm":6}},
            "subscriptionGroupTable":{"GOrders":{"groupName":"GOrders"}}}"#,
    )
    .unwrap();
    let namesrv = b.namesrv_addr();
    let file_arg = file.to_str().unwrap();

    let quota = json(&ferry(
        &addr,
        &[
            "--output", "json", "import", "quota", "ClusterB", "--topics", "100",
        ],
    ));
    assert_eq!(quota["topic_quota"], 100);
    assert_eq!(quota["group_quota"], 0);
    // A dry-run quota is shown as it would be stored and leaves the stored one alone.
    let out = ferry(
        &addr,
        &["import", "quota", "ClusterB", "--topics", "7", "--dry-run"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains('7') && text.contains("dry run: nothing stored"),
        "{text}"
    );
    let quota = json(&ferry(
        &addr,
        &["--output", "json", "import", "quota", "ClusterB"],
    ));
    assert_eq!(quota["topic_quota"], 100);

    // "Check my upload": the plan comes back, nothing is stored or created.
    let create_args = |extra: &[&'static str]| {
        let mut args = vec![
            "import",
            "create",
            "--file",
            file_arg,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            namesrv.as_str(),
        ];
        args.extend_from_slice(extra);
        args
    };
    let dry = json(&ferry(
        &addr,
        &[&["--output", "json"][..], &create_args(&["--dry-run"])].concat(),
    ));
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["task_id"], "");
    assert_eq!(dry["status"], "PENDING");
    assert_eq!(
        (dry["topic_count"].as_i64(), dry["group_count"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(dry["progress"]["pending"], 3);
    assert_eq!(dry["items"].as_array().unwrap().len(), 3);
    let table = ferry(&addr, &create_args(&["--dry-run"]));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    assert!(text.contains("dry run: nothing stored"), "{text}");
    assert!(text.contains("3 of 3 items would be sent"), "{text}");
    let list = json(&ferry(&addr, &["--output", "json", "import", "list"]));
    assert_eq!(list, serde_json::json!([]), "a dry run stores no task");
    assert!(
        b.route("Orders").await.unwrap().is_none(),
        "nor creates anything"
    );
    let conflict = ferry(&addr, &create_args(&["--dry-run", "--wait"]));
    assert_eq!(
        conflict.status.code(),
        Some(2),
        "clap refuses --dry-run with --wait"
    );

    let out = ferry(
        &addr,
        &[
            "--output",
            "json",
            "import",
            "create",
            "--file",
            file_arg,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            &namesrv,
            "--wait",
        ],
    );
    let task = json(&out);
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    assert_eq!(task["progress"]["success"], 2);
    assert_eq!(task["progress"]["skipped"], 1);
    assert_eq!(task["source"], "export JSON rocketmq-metadata-export.json");
    let id = task["task_id"].as_str().unwrap().to_string();

    let skipped = json(&ferry(
        &addr,
        &[
            "--output",
            "json",
            "import",
            "items",
            &id,
            "--result",
            "already-exists-skipped",
        ],
    ));
    assert_eq!(skipped.as_array().unwrap().len(), 1);
    assert_eq!(skipped[0]["name"], "Existing");
    let table = ferry(&addr, &["import", "items", &id, "--kind", "topic"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("SEQ"), "{text}");
    assert!(
        text.contains("Orders") && !text.contains("GOrders"),
        "{text}"
    );
    let list = json(&ferry(&addr, &["--output", "json", "import", "list"]));
    assert_eq!(list[0]["task_id"], id.as_str());
    assert_eq!(list[0]["topic_count"], 2);
    let shown = ferry(&addr, &["import", "show", &id]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("SUCCEEDED"));

    // A broken file is refused with the file and field named; exit code 1.
    std::fs::write(&file, br#"{"topicConfigTable":{"T":{"perm":"rw"}}}"#).unwrap();
    let out = ferry(
        &addr,
        &[
            "import",
            "create",
            "--file",
            file_arg,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            &namesrv,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rocketmq-metadata-export.json") && err.contains("topicConfigTable.T.perm"),
        "{err}"
    );
    // A dry run refuses it the same way.
    let dry = ferry(&addr, &create_args(&["--dry-run"]));
    assert_eq!(dry.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&dry.stderr), err);

    // A target that cannot be reached: the task fails, --wait exits 2.
    std::fs::write(
        &file,
        br#"{"topicConfigTable":{"T":{"topicName":"T"}},"subscriptionGroupTable":{}}"#,
    )
    .unwrap();
    let dead = format!("127.0.0.1:{}", ferry_testkit::free_port());
    let out = ferry(
        &addr,
        &[
            "--output",
            "json",
            "import",
            "create",
            "--file",
            file_arg,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            &dead,
            "--wait",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["status"], "FAILED");
    assert!(failed["error"].as_str().unwrap().contains(&dead));

    let help = Command::new(FERRY)
        .args(["import", "create", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}
