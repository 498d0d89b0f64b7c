//! `ferry task` as people and scripts run it, against `ferry standalone`.

use std::process::{Command, Output};
use std::time::Duration;

use ferry_testkit::ServiceProcess;
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

#[tokio::test]
async fn concurrent_advance_from_two_clis_exactly_one_wins() {
    let (_ferry, addr) = standalone().await;
    let task = json(&ferry(
        &addr,
        &[
            "--output",
            "json",
            "task",
            "create",
            "--name",
            "cli",
            "--source-cluster",
            "ClusterA",
            "--source-namesrv",
            "127.0.0.1:19876",
            "--target-cluster",
            "ClusterB",
            "--target-namesrv",
            "127.0.0.1:29876",
            "--target-type",
            "5.x",
        ],
    ));
    let task_id = task["task_id"].as_str().unwrap().to_string();
    assert_eq!(task["step"], "CONNECT");
    assert!(
        ferry(&addr, &["task", "topics", "add", &task_id, "Orders"])
            .status
            .success()
    );

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
