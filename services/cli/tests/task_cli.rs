//! `ferry migration` (alias `ferry task`) as people and scripts run it, against
//! `ferry standalone` and real RocketMQ clusters.

// The real RocketMQ client's futures are deep; the switch-status test holds several.
#![recursion_limit = "256"]

use std::process::{Command, Output};
use std::time::Duration;

use ferry_testkit::ServiceProcess;
use ferry_testkit::rocketmq::TwoClusters;
use serde_json::Value;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

async fn standalone() -> (ServiceProcess, String) {
    standalone_with(&["--data-dir", "data"]).await
}

/// `ferry standalone` with extra flags (an absolute --data-dir keeps state across restarts).
async fn standalone_with(extra: &[&str]) -> (ServiceProcess, String) {
    let mut args = vec![
        "standalone",
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        "ready",
    ];
    args.extend_from_slice(extra);
    let mut process = ServiceProcess::spawn("standalone", FERRY, &args, &[]).unwrap();
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
        .env("FERRY_ACTOR", "cli-test")
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

fn revision(addr: &str, task: &str, topic: &str) -> i64 {
    let topics = json(&ferry(
        addr,
        &["--output", "json", "task", "topics", "list", task],
    ));
    topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == topic)
        .unwrap()["revision"]
        .as_i64()
        .unwrap()
}

/// Walks a new task through steps 1–3 with the CLI: connect, import (a topic created by
/// hand joins the task), and a forced step 3 (no router runs here, so nothing proves that
/// clients moved). Returns the task id, at step 4.
fn to_gray_migration(addr: &str, clusters: &TwoClusters, topic: &str) -> String {
    let (a, b) = (clusters.a.namesrv_addr(), clusters.b.namesrv_addr());
    let task = json(&ferry(
        addr,
        &[
            "--output",
            "json",
            "migration",
            "create",
            "--name",
            "cli",
            "--source-cluster",
            "ClusterA",
            "--source-namesrv",
            &a,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            &b,
            "--target-type",
            "5.x",
        ],
    ));
    let task_id = task["task_id"].as_str().unwrap().to_string();
    assert_eq!(task["step"], "CONNECT");
    // Dry runs change nothing.
    let dry = ferry(addr, &["migration", "connect", &task_id, "--dry-run"]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("not kept on the task"));
    let refused = ferry(addr, &["migration", "step", "advance", &task_id]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("run ConnectSource first"),
        "the dry-run probe was kept: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // A second task on the same target is refused by a dry run too, naming the holder.
    let again = ferry(
        addr,
        &[
            "migration",
            "create",
            "--name",
            "again",
            "--source-cluster",
            "ClusterA",
            "--source-namesrv",
            &a,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            &b,
            "--target-type",
            "5.x",
            "--dry-run",
        ],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&task_id),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out = ferry(addr, &["migration", "connect", &task_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let step = |expect: &str, extra: &[&str]| {
        let mut args = vec!["--output", "json", "migration", "step", "advance", &task_id];
        args.extend_from_slice(extra);
        let moved = json(&ferry(addr, &args));
        assert_eq!(moved["step"], expect, "{moved}");
    };
    step("IMPORT_METADATA", &[]);
    let created = ferry(
        addr,
        &["migration", "create-item", &task_id, "--topic", topic],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    let imported = ferry(addr, &["migration", "import", &task_id, "--all"]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    step("SWITCH_ACCESS_POINT", &[]);
    let refused = ferry(addr, &["migration", "step", "advance", &task_id]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("clients have not all moved"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    step(
        "GRAY_MIGRATION",
        &["--force", "--reason", "no router in this test"],
    );
    task_id
}

#[tokio::test]
async fn concurrent_advance_from_two_clis_exactly_one_wins() {
    let clusters = TwoClusters::start().await.unwrap();
    let (_ferry, addr) = standalone().await;
    let task_id = to_gray_migration(&addr, &clusters, "Orders");
    // A desired state gives a plan; unproven readiness blocks it (exit 2), nothing moves.
    let plan = ferry(&addr, &["migration", "reconcile", &task_id, "--to", "DONE"]);
    assert_eq!(plan.status.code(), Some(2));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("INITIAL -> DUAL_READ (wants DONE)") && text.contains("blocked"),
        "{text}"
    );
    // Batch selection by pattern, decided by the server without committing: unproven
    // readiness refuses (non-zero exit, the reason shown), --force would change.
    let args = |force: bool| {
        let mut a = vec![
            "--output",
            "json",
            "migration",
            "advance",
            &task_id,
            "--match",
            "Ord*",
            "--dry-run",
        ];
        if force {
            a.push("--force");
        }
        a
    };
    let dry = ferry(&addr, &args(false));
    assert!(!dry.status.success());
    let refused: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(refused[0]["topic"], "Orders");
    assert!(
        refused[0]["error"].as_str().unwrap().contains("readiness"),
        "{refused}"
    );
    let dry = ferry(&addr, &args(true));
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stdout)
    );
    let would: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(would[0]["changed"], false);
    assert_eq!(would[0]["to"], "DUAL_READ");
    assert_eq!(would[0]["error"], "");

    // Advance INITIAL -> DONE; each step raced by two CLI processes from the same revision.
    for round in 0..4 {
        let rev = revision(&addr, &task_id, "Orders").to_string();
        let spawn = || {
            Command::new(FERRY)
                .args([
                    "--addr", &addr, "--output", "json", "task", "advance", &task_id, "Orders",
                ])
                .args(["--force", "--expected-revision", &rev, "--reason", "race"])
                .env("FERRY_ACTOR", "cli-test")
                .output()
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(spawn);
            let b = s.spawn(spawn);
            (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
        });
        let wins = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} {b:?}");
        let loser = if a.status.success() { &b } else { &a };
        let results: Value = serde_json::from_slice(&loser.stdout).unwrap();
        assert_eq!(results[0]["changed"], false);
        assert!(
            results[0]["error"]
                .as_str()
                .unwrap()
                .contains("changed concurrently")
        );
    }
    let shown = json(&ferry(
        &addr,
        &["--output", "json", "task", "show", &task_id],
    ));
    // The alias `task` and `migration` are the same command.
    assert_eq!(shown["topics_per_stage"]["DONE"], 1);

    // The audit log has the four winning changes, by the CLI's actor.
    let audit = json(&ferry(
        &addr,
        &["--output", "json", "task", "audit", &task_id],
    ));
    let records = audit.as_array().unwrap();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r["actor"] == "cli-test" && r["forced"] == true)
    );

    // A refusal is a non-zero exit with the server's reason.
    let out = ferry(&addr, &["task", "advance", &task_id, "Orders", "--force"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("DONE is the last stage"));
    let out = ferry(&addr, &["task", "show", "mt-missing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("task mt-missing not found") && err.contains("NotFound"),
        "{err}"
    );

    // Completing releases the target.
    assert!(
        ferry(&addr, &["task", "complete", &task_id])
            .status
            .success()
    );
    let tasks = json(&ferry(
        &addr,
        &["--output", "json", "task", "list", "--state", "completed"],
    ));
    assert_eq!(
        tasks["task_id"],
        task_id.as_str(),
        "one completed task: {tasks}"
    );
}

/// Step 3 with real clients: `switch-status` lists, per topic, the clients seen through the
/// router (address, last seen, router), and the client that still uses the source
/// NameServer directly — until it is gone.
#[tokio::test]
async fn switch_status_shows_clients_at_the_router_and_those_left_on_the_source() {
    use ferry_testkit::traffic::{ClientOptions, TrafficConsumer, TrafficProducer};
    let clusters = TwoClusters::start().await.unwrap();
    clusters.a.create_topic("Orders", 4).await.unwrap();
    clusters.a.create_group("orders-cg").await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let fast = ["--scan-interval", "1s", "--route-poll-interval", "10s"];
    let (mut first, addr) =
        standalone_with(&[&["--data-dir", &data_dir][..], &fast].concat()).await;
    let (a, b) = (clusters.a.namesrv_addr(), clusters.b.namesrv_addr());
    let task = json(&ferry(
        &addr,
        &[
            "--output",
            "json",
            "migration",
            "create",
            "--name",
            "switch",
            "--source-cluster",
            "ClusterA",
            "--source-namesrv",
            &a,
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            &b,
            "--target-type",
            "5.x",
        ],
    ));
    let task_id = task["task_id"].as_str().unwrap().to_string();
    for args in [
        vec!["migration", "connect", &task_id],
        vec!["migration", "step", "advance", &task_id],
        vec!["migration", "import", &task_id, "--all"],
        vec!["migration", "step", "advance", &task_id],
    ] {
        let out = ferry(&addr, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The router of the task runs in standalone once it knows the task (state survives).
    first.terminate(Duration::from_secs(15)).await.unwrap();
    let router = format!("127.0.0.1:{}", ferry_testkit::free_port());
    let (_second, addr) = standalone_with(
        &[
            &[
                "--data-dir",
                &data_dir,
                "--router-task-id",
                &task_id,
                "--namesrv-listen",
                &router,
            ][..],
            &fast,
        ]
        .concat(),
    )
    .await;

    let status = |addr: &str| {
        let out = ferry(
            addr,
            &["--output", "json", "migration", "switch-status", &task_id],
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), v)
    };
    // Switched clients are matched by host, and every client here is on 127.0.0.1: first a
    // producer on the source NameServer alone, then clients on the router alone.
    let options = ClientOptions::default();
    let direct = TrafficProducer::start(&a, "orders-direct", options)
        .await
        .unwrap();
    direct
        .send_keyed("Orders", "via-source", b"x")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = status(&addr);
        let left: Vec<Value> = v["unswitched"].as_array().cloned().unwrap_or_default();
        if left
            .iter()
            .any(|c| c["role"] == "producer" && c["group"] == "orders-direct")
        {
            assert_eq!(code, Some(2), "a client left on the source: exit 2; {v}");
            assert_eq!(v["routers_registered"], 1, "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the direct producer never showed: {v}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    direct.shutdown().await;

    let consumer = TrafficConsumer::start_with(&router, "orders-cg", "Orders", options)
        .await
        .unwrap();
    let switched = TrafficProducer::start(&router, "orders-switched", options)
        .await
        .unwrap();
    switched
        .send_keyed("Orders", "via-router", b"x")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let (code, v) = status(&addr);
        let at_router = v["through_routers"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["topic"] == "Orders"))
            .cloned();
        if code == Some(0)
            && let Some(t) = at_router
        {
            assert!(v["unswitched"].as_array().unwrap().is_empty(), "{v}");
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "clients never showed at the router: {v}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(seen["client_count"].as_i64().unwrap() >= 1, "{seen}");
    let client = &seen["clients"][0];
    assert!(
        client["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{seen}"
    );
    assert!(!client["last_seen"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(client["routers"].as_array().unwrap().len(), 1, "{seen}");
    switched.shutdown().await;
    consumer.shutdown().await;
}
