//! `ferry dataflow check`: data-flow migration by hand (PRODUCT.md §3). No message data is
//! copied; clients are switched to the target in one safe order, and the only thing Ferry
//! measures is whether the source is drained, per topic and group (the health-check's
//! `CheckBacklog`: the topic's backlog plus the group's `%RETRY%` backlog on the source).
//!
//! The safe order (another order can strand messages on the source):
//! 1. switch some consumers of every group to the target (they read what producers will
//!    write there);
//! 2. switch some producers;
//! 3. switch all producers (nothing new lands on the source);
//! 4. wait until the source backlog is zero: this check;
//! 5. switch the remaining consumers.
//!
//! The check sees only the source's backlog, so it marks step 4 as waiting while messages are
//! left and step 5 as allowed once none are — provided step 3 is really done (a producer
//! still writing the source makes a new backlog the next check shows).
//! Exit code 0 when drained, 2 when not.

use std::process::ExitCode;

use anyhow::Context;
use ferry_api::health_check::v1 as pb;
use ferry_api::health_check::v1::health_check_service_client::HealthCheckServiceClient;
use serde::Serialize;

use super::scan::SourceArgs;
use crate::output::{OutputFormat, print_json, print_table};

/// Exit code when some topic or group still has a backlog on the source.
pub const EXIT_NOT_DRAINED: u8 = 2;

/// Flags of `ferry dataflow`.
#[derive(Debug, clap::Args)]
pub struct DataflowArgs {
    #[command(subcommand)]
    command: DataflowCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DataflowCommand {
    /// Whether the source is drained, per topic and group, and which client switch the
    /// measured state allows next.
    ///
    /// Exit code 0 when every topic and group is drained, 2 when not.
    /// Example: ferry dataflow check --namesrv 10.0.0.1:9876 --cluster DefaultCluster --topic Orders
    Check(CheckArgs),
}

/// Flags of `ferry dataflow check`.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Topics to check (repeat the flag); default: every user topic of the cluster.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// Consumer groups to check (repeat the flag); default: every group the brokers know
    /// for each topic (committed offsets or online subscriptions).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
}

/// One topic and group on the source.
#[derive(Debug, Serialize)]
struct Row {
    topic: String,
    group: String,
    backlog: i64,
    retry_backlog: i64,
    drained: bool,
}

/// One step of the safe order and what the measured state says about it.
#[derive(Debug, Serialize)]
struct Step {
    step: u8,
    action: &'static str,
    /// `allowed`, `waiting` (this check: messages left), `done` (this check: drained) or
    /// `not_yet`.
    status: &'static str,
}

#[derive(Debug, Serialize)]
struct Report {
    namesrv: String,
    cluster: String,
    backlogs: Vec<Row>,
    all_drained: bool,
    /// Σ backlog + retry backlog over every row.
    total_backlog: i64,
    steps: Vec<Step>,
    /// The step the measured state allows next: 4 (wait) while not drained, 5 once drained.
    next_step: u8,
    notes: Vec<String>,
}

const ORDER: [&str; 5] = [
    "switch some consumers of every group to the target",
    "switch some producers to the target",
    "switch all producers to the target",
    "wait until the source backlog is zero (this check)",
    "switch the remaining consumers to the target",
];

fn steps(drained: bool) -> Vec<Step> {
    ORDER
        .iter()
        .enumerate()
        .map(|(i, action)| {
            let step = i as u8 + 1;
            let status = match (step, drained) {
                (1..=3, _) => "allowed",
                (4, false) => "waiting",
                (4, true) => "done",
                (_, false) => "not_yet",
                (_, true) => "allowed",
            };
            Step {
                step,
                action,
                status,
            }
        })
        .collect()
}

fn report(namesrv: String, cluster: String, resp: pb::CheckBacklogResponse) -> Report {
    let backlogs: Vec<Row> = resp
        .backlogs
        .into_iter()
        .map(|b| Row {
            drained: b.drained,
            topic: b.topic,
            group: b.group,
            backlog: b.backlog,
            retry_backlog: b.retry_backlog,
        })
        .collect();
    let total_backlog = backlogs
        .iter()
        .map(|r| r.backlog.saturating_add(r.retry_backlog))
        .fold(0i64, i64::saturating_add);
    let all_drained = resp.all_drained && backlogs.iter().all(|r| r.drained);
    let mut notes = Vec::new();
    if backlogs.is_empty() {
        notes.push(
            "no consumer group was found for the topics: nothing can be stranded by a switch, but check that the topics and groups are the ones you meant (--topic, --group)"
                .to_string(),
        );
    }
    if all_drained {
        notes.push(
            "drained now; switch the remaining consumers only once every producer writes to the target (step 3), or new source messages appear and the next check shows them"
                .to_string(),
        );
    } else {
        let rows = backlogs.iter().filter(|r| !r.drained).count();
        notes.push(format!(
            "{total_backlog} message(s) left on the source in {rows} topic/group pair(s): keep the remaining consumers on the source until a check says drained"
        ));
    }
    Report {
        namesrv,
        cluster,
        all_drained,
        total_backlog,
        steps: steps(all_drained),
        next_step: if all_drained { 5 } else { 4 },
        notes,
        backlogs,
    }
}

pub async fn run(addr: &str, output: OutputFormat, args: DataflowArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DataflowCommand::Check(args) => check(addr, output, args).await,
    }
}

async fn check(addr: &str, output: OutputFormat, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let namesrv = args
        .source
        .namesrv
        .clone()
        .filter(|n| !n.trim().is_empty())
        .context("--namesrv (FERRY_SOURCE_NAMESRV) is required: the source cluster's name servers, host:port;host:port")?;
    args.source.credentials()?;
    let channel = crate::connect::endpoint(addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach Ferry at {addr} (start `ferry standalone`)"))?;
    let mut client = HealthCheckServiceClient::new(crate::connect::authorized(channel)?);
    let resp = client
        .check_backlog(pb::CheckBacklogRequest {
            cluster: Some(args.source.endpoint(&namesrv)),
            topics: args.topics,
            groups: args.groups,
        })
        .await?
        .into_inner();
    let report = report(
        namesrv,
        args.source.cluster.clone().unwrap_or_default(),
        resp,
    );
    match output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Table => print_report(&report),
    }
    Ok(if report.all_drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_DRAINED)
    })
}

fn print_report(r: &Report) {
    let cluster = if r.cluster.is_empty() {
        "every cluster".to_string()
    } else {
        format!("cluster {}", r.cluster)
    };
    println!("Source backlog at {} ({cluster})", r.namesrv);
    let rows: Vec<Vec<String>> = r
        .backlogs
        .iter()
        .map(|b| {
            vec![
                b.topic.clone(),
                b.group.clone(),
                b.backlog.to_string(),
                b.retry_backlog.to_string(),
                if b.drained { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    print_table(&["TOPIC", "GROUP", "BACKLOG", "RETRY", "DRAINED"], &rows);
    println!(
        "source {}: {} message(s) left",
        if r.all_drained {
            "drained"
        } else {
            "NOT drained"
        },
        r.total_backlog
    );
    println!();
    println!("Safe order of client switches:");
    for s in &r.steps {
        let mark = match s.status {
            "allowed" => "allowed",
            "waiting" => "WAITING: messages left on the source",
            "done" => "done: the source is drained",
            _ => "not yet: wait for step 4",
        };
        let here = if s.step == r.next_step { "-> " } else { "   " };
        println!("{here}{}. {:<52} [{mark}]", s.step, s.action);
    }
    for note in &r.notes {
        println!("note: {note}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(rows: &[(i64, i64)]) -> pb::CheckBacklogResponse {
        let backlogs: Vec<pb::GroupBacklog> = rows
            .iter()
            .enumerate()
            .map(|(i, (b, r))| pb::GroupBacklog {
                topic: format!("T{i}"),
                group: "G".into(),
                backlog: *b,
                retry_backlog: *r,
                drained: *b == 0 && *r == 0,
            })
            .collect();
        pb::CheckBacklogResponse {
            all_drained: backlogs.iter().all(|b| b.drained),
            backlogs,
        }
    }

    #[test]
    fn not_drained_waits_at_step_four() {
        let r = report("ns".into(), "C".into(), resp(&[(3, 0), (0, 2), (0, 0)]));
        assert!(!r.all_drained);
        assert_eq!((r.total_backlog, r.next_step), (5, 4));
        let status: Vec<&str> = r.steps.iter().map(|s| s.status).collect();
        assert_eq!(
            status,
            ["allowed", "allowed", "allowed", "waiting", "not_yet"]
        );
        assert!(r.notes[0].contains("5 message(s) left on the source in 2"));
    }

    #[test]
    fn drained_allows_step_five() {
        let r = report("ns".into(), "C".into(), resp(&[(0, 0)]));
        assert!(r.all_drained);
        assert_eq!(r.next_step, 5);
        assert_eq!(r.steps[3].status, "done");
        assert_eq!(r.steps[4].status, "allowed");
        let empty = report("ns".into(), String::new(), resp(&[]));
        assert!(empty.all_drained);
        assert!(empty.notes[0].contains("no consumer group was found"));
    }
}
