//! `ferry task`: seamless-migration tasks and their per-topic stages.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ferry_api::common::v1::{ClusterEndpoint, Readiness, ReadinessReasonCode, Stage, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::output::{OutputFormat, all_pages, print_json, print_table};

/// Flags of `ferry task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// Who is acting, recorded in the audit log.
    #[arg(long, global = true, env = "FERRY_ACTOR")]
    actor: Option<String>,
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Create a migration task (one running task per target cluster).
    ///
    /// Example: ferry task create --name orders --source-cluster ClusterA
    ///   --source-namesrv 10.0.0.1:9876 --target-cluster ClusterB
    ///   --target-namesrv 10.0.1.1:9876 --target-type 5.x
    Create(CreateArgs),
    /// List migration tasks.
    ///
    /// Example: ferry task list --state running
    List {
        /// Only tasks in this state.
        #[arg(long, value_parser = ["running", "paused", "completed", "rolled-back"])]
        state: Option<String>,
    },
    /// Show one task with its topic counts per stage.
    ///
    /// Example: ferry task show mt-1a2b3c4d5e6f
    Show { task_id: String },
    /// Topics of a task.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Move topics one stage forward (INITIAL → DUAL_READ → DUAL_WRITE → SWITCHING → DONE).
    ///
    /// Example: ferry task advance mt-1a2b3c4d5e6f Orders Payments --force --reason "window 3"
    Advance(ChangeArgs),
    /// Move topics one stage back.
    ///
    /// Example: ferry task rollback mt-1a2b3c4d5e6f Orders --force
    Rollback(ChangeArgs),
    /// Pause the task: no stage change is accepted; routers keep serving.
    ///
    /// Example: ferry task pause mt-1a2b3c4d5e6f
    Pause { task_id: String },
    /// Resume a paused task.
    ///
    /// Example: ferry task resume mt-1a2b3c4d5e6f
    Resume { task_id: String },
    /// Roll every topic of the task back one stage.
    ///
    /// Example: ferry task rollback-all mt-1a2b3c4d5e6f --force
    RollbackAll {
        task_id: String,
        /// Change even though readiness is not proven (recorded as forced).
        #[arg(long)]
        force: bool,
    },
    /// Complete the task once every topic is DONE; releases the target cluster.
    ///
    /// Example: ferry task complete mt-1a2b3c4d5e6f
    Complete { task_id: String },
    /// The audit log of stage changes.
    ///
    /// Example: ferry task audit mt-1a2b3c4d5e6f --topic Orders
    Audit {
        task_id: String,
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Task name.
    #[arg(long)]
    name: String,
    /// Source cluster name.
    #[arg(long)]
    source_cluster: String,
    /// Source NameServers, "host:port;host:port".
    #[arg(long)]
    source_namesrv: String,
    /// Target cluster name.
    #[arg(long)]
    target_cluster: String,
    /// Target NameServers, "host:port;host:port".
    #[arg(long)]
    target_namesrv: String,
    /// Target version line: 4.x or 5.x.
    #[arg(long, value_parser = ["4.x", "5.x"])]
    target_type: String,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// List the task's topics with stage and revision.
    ///
    /// Example: ferry task topics list mt-1a2b3c4d5e6f --stage DUAL_READ
    List {
        task_id: String,
        /// Only topics in this stage (INITIAL, DUAL_READ, DUAL_WRITE, SWITCHING, DONE).
        #[arg(long)]
        stage: Option<String>,
    },
    /// Add topics to the task; they start at INITIAL.
    ///
    /// Example: ferry task topics add mt-1a2b3c4d5e6f Orders Payments
    Add {
        task_id: String,
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Remove topics from the task; only INITIAL topics can be removed.
    ///
    /// Example: ferry task topics remove mt-1a2b3c4d5e6f Payments
    Remove {
        task_id: String,
        #[arg(required = true)]
        topics: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct ChangeArgs {
    task_id: String,
    /// Topics to change.
    #[arg(required = true)]
    topics: Vec<String>,
    /// Only change if the topic is still at this revision (from `topics list`); one topic only.
    #[arg(long)]
    expected_revision: Option<i64>,
    /// Change even though readiness is not proven (recorded as forced in the audit log).
    #[arg(long)]
    force: bool,
    /// Reason recorded in the audit log.
    #[arg(long, default_value = "")]
    reason: String,
}

pub async fn run(addr: &str, output: OutputFormat, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let channel = Channel::from_shared(addr.to_string())
        .with_context(|| format!("invalid address {addr:?}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach Ferry at {addr}"))?;
    let mut client = MigrationTaskServiceClient::new(channel);
    let actor = args
        .actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    match args.command {
        TaskCommand::Create(c) => {
            let target_type = match c.target_type.as_str() {
                "4.x" => TargetType::V4,
                _ => TargetType::V5,
            };
            let task = client
                .create_migration_task(pb::CreateMigrationTaskRequest {
                    name: c.name,
                    source: Some(endpoint(c.source_cluster, c.source_namesrv)),
                    target_type: target_type as i32,
                    target: Some(endpoint(c.target_cluster, c.target_namesrv)),
                    actor,
                })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            show_tasks(output, &[task])?;
        }
        TaskCommand::List { state } => {
            let state = match state.as_deref() {
                Some("running") => pb::MigrationTaskState::Running,
                Some("paused") => pb::MigrationTaskState::Paused,
                Some("completed") => pb::MigrationTaskState::Completed,
                Some("rolled-back") => pb::MigrationTaskState::RolledBack,
                _ => pb::MigrationTaskState::Unspecified,
            };
            let tasks = all_pages(|page_token| {
                let mut client = client.clone();
                async move {
                    let page = client
                        .list_migration_tasks(pb::ListMigrationTasksRequest {
                            state: state as i32,
                            page_size: 0,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    Ok((page.tasks, page.next_page_token))
                }
            })
            .await?;
            show_tasks(output, &tasks)?;
        }
        TaskCommand::Show { task_id } => {
            let task = client
                .get_migration_task(pb::GetMigrationTaskRequest { task_id })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            show_tasks(output, &[task])?;
        }
        TaskCommand::Topics(TopicsCommand::List { task_id, stage }) => {
            let stages = match stage {
                Some(s) => vec![parse_stage(&s)? as i32],
                None => Vec::new(),
            };
            let topics = all_pages(|page_token| {
                let mut client = client.clone();
                let request = pb::ListTopicStagesRequest {
                    task_id: task_id.clone(),
                    stages: stages.clone(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let page = client.list_topic_stages(request).await?.into_inner();
                    Ok((page.topics, page.next_page_token))
                }
            })
            .await?;
            show_topics(output, &topics)?;
        }
        TaskCommand::Topics(TopicsCommand::Add { task_id, topics }) => {
            let resp = client
                .add_topics(pb::AddTopicsRequest {
                    task_id,
                    topics,
                    actor,
                })
                .await?
                .into_inner();
            match output {
                OutputFormat::Json => print_json(&json!({
                    "added": resp.added, "already_present": resp.already_present
                }))?,
                OutputFormat::Table => {
                    println!("added: {}", list_or_none(&resp.added));
                    println!(
                        "already in the task: {}",
                        list_or_none(&resp.already_present)
                    );
                }
            }
        }
        TaskCommand::Topics(TopicsCommand::Remove { task_id, topics }) => {
            let resp = client
                .remove_topics(pb::RemoveTopicsRequest {
                    task_id,
                    topics: topics
                        .into_iter()
                        .map(|t| pb::TopicRef {
                            topic: t,
                            expected_revision: 0,
                        })
                        .collect(),
                    actor,
                })
                .await?
                .into_inner();
            let all_ok = resp.refused.is_empty();
            match output {
                OutputFormat::Json => print_json(&json!({
                    "removed": resp.removed,
                    "refused": resp.refused.iter().map(change_json).collect::<Vec<_>>(),
                }))?,
                OutputFormat::Table => {
                    println!("removed: {}", list_or_none(&resp.removed));
                    for r in &resp.refused {
                        println!("not removed: {}: {}", r.topic, r.error);
                    }
                }
            }
            return Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        TaskCommand::Advance(c) | TaskCommand::Rollback(c)
            if c.expected_revision.is_some() && c.topics.len() != 1 =>
        {
            bail!(
                "--expected-revision applies to exactly one topic, {} given",
                c.topics.len()
            );
        }
        TaskCommand::Advance(c) => {
            let resp = client
                .advance_topics(pb::AdvanceTopicsRequest {
                    change: Some(change_request(c, actor)),
                })
                .await?
                .into_inner();
            return show_changes(output, &resp.results);
        }
        TaskCommand::Rollback(c) => {
            let resp = client
                .rollback_topics(pb::RollbackTopicsRequest {
                    change: Some(change_request(c, actor)),
                })
                .await?
                .into_inner();
            return show_changes(output, &resp.results);
        }
        TaskCommand::Pause { task_id } => {
            let task = client
                .pause_task(pb::PauseTaskRequest { task_id, actor })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            show_tasks(output, &[task])?;
        }
        TaskCommand::Resume { task_id } => {
            let task = client
                .resume_task(pb::ResumeTaskRequest { task_id, actor })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            show_tasks(output, &[task])?;
        }
        TaskCommand::RollbackAll { task_id, force } => {
            let resp = client
                .rollback_task(pb::RollbackTaskRequest {
                    task_id,
                    force,
                    actor,
                })
                .await?
                .into_inner();
            return show_changes(output, &resp.results);
        }
        TaskCommand::Complete { task_id } => {
            let task = client
                .complete_task(pb::CompleteTaskRequest { task_id, actor })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            show_tasks(output, &[task])?;
        }
        TaskCommand::Audit { task_id, topic } => {
            let records = all_pages(|page_token| {
                let mut client = client.clone();
                let request = pb::ListAuditRecordsRequest {
                    task_id: task_id.clone(),
                    topic: topic.clone().unwrap_or_default(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let page = client.list_audit_records(request).await?.into_inner();
                    Ok((page.records, page.next_page_token))
                }
            })
            .await?;
            show_audit(output, &records)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn endpoint(cluster_name: String, namesrv_addrs: String) -> ClusterEndpoint {
    ClusterEndpoint {
        namesrv_addrs,
        cluster_name,
        credentials: None,
    }
}

fn change_request(c: ChangeArgs, actor: String) -> pb::StageChangeRequest {
    let expected = c.expected_revision.unwrap_or(0);
    pb::StageChangeRequest {
        task_id: c.task_id,
        topics: c
            .topics
            .into_iter()
            .map(|topic| pb::TopicRef {
                topic,
                expected_revision: expected,
            })
            .collect(),
        force: c.force,
        actor,
        reason: c.reason,
    }
}

fn parse_stage(s: &str) -> anyhow::Result<Stage> {
    let name = format!("STAGE_{}", s.trim().to_ascii_uppercase().replace('-', "_"));
    match Stage::from_str_name(&name) {
        Some(stage) if stage != Stage::Unspecified => Ok(stage),
        _ => {
            bail!("unknown stage {s:?}: expected INITIAL, DUAL_READ, DUAL_WRITE, SWITCHING or DONE")
        }
    }
}

/// "DUAL_READ" for STAGE_DUAL_READ.
fn stage_name(value: i32) -> String {
    Stage::try_from(value)
        .map(|s| s.as_str_name().trim_start_matches("STAGE_").to_string())
        .unwrap_or_else(|_| format!("?{value}"))
}

fn step_name(value: i32) -> String {
    pb::MigrationStep::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MIGRATION_STEP_")
                .to_string()
        })
        .unwrap_or_else(|_| format!("?{value}"))
}

fn state_name(value: i32) -> String {
    pb::MigrationTaskState::try_from(value)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MIGRATION_TASK_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| format!("?{value}"))
}

fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map(|t| t.to_string()).unwrap_or_default()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

fn task_json(t: &pb::MigrationTask) -> Value {
    let per_stage: serde_json::Map<String, Value> = t
        .topics_per_stage
        .iter()
        .map(|(k, v)| (k.trim_start_matches("STAGE_").to_string(), json!(v)))
        .collect();
    json!({
        "task_id": t.task_id,
        "name": t.name,
        "source_cluster": t.source_cluster,
        "source_namesrv_addrs": t.source_namesrv_addrs,
        "target_cluster": t.target_cluster,
        "target_namesrv_addrs": t.target_namesrv_addrs,
        "target_type": if t.target_type == TargetType::V4 as i32 { "4.x" } else { "5.x" },
        "step": step_name(t.step),
        "state": state_name(t.state),
        "topics_per_stage": per_stage,
        "revision": t.revision,
        "created_at": time(&t.created_at),
        "updated_at": time(&t.updated_at),
        "created_by": t.created_by,
    })
}

fn show_tasks(output: OutputFormat, tasks: &[pb::MigrationTask]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json if tasks.len() == 1 => print_json(&task_json(&tasks[0])),
        OutputFormat::Json => print_json(&tasks.iter().map(task_json).collect::<Vec<_>>()),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    let mut per_stage: Vec<String> = t
                        .topics_per_stage
                        .iter()
                        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("STAGE_")))
                        .collect();
                    per_stage.sort();
                    vec![
                        t.task_id.clone(),
                        t.name.clone(),
                        format!("{} -> {}", t.source_cluster, t.target_cluster),
                        step_name(t.step),
                        state_name(t.state),
                        if per_stage.is_empty() {
                            "-".into()
                        } else {
                            per_stage.join(" ")
                        },
                    ]
                })
                .collect();
            print_table(
                &["TASK", "NAME", "CLUSTERS", "STEP", "STATE", "TOPICS"],
                &rows,
            );
            Ok(())
        }
    }
}

fn show_topics(output: OutputFormat, topics: &[pb::TopicStage]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(
            &topics
                .iter()
                .map(|t| {
                    json!({
                        "topic": t.topic, "stage": stage_name(t.stage), "revision": t.revision,
                        "updated_at": time(&t.updated_at), "updated_by": t.updated_by,
                        "next": readiness_json(&t.next), "previous": readiness_json(&t.previous),
                    })
                })
                .collect::<Vec<_>>(),
        ),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    vec![
                        t.topic.clone(),
                        stage_name(t.stage),
                        t.revision.to_string(),
                        time(&t.updated_at),
                        t.updated_by.clone(),
                        readiness_cell(&t.next),
                        readiness_cell(&t.previous),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TOPIC", "STAGE", "REVISION", "UPDATED", "BY", "NEXT", "PREVIOUS",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

fn change_json(r: &pb::StageChangeResult) -> Value {
    json!({
        "topic": r.topic, "changed": r.changed, "from": stage_name(r.from_stage),
        "to": stage_name(r.to_stage), "revision": r.revision, "error": r.error,
        "readiness": readiness_json(&r.readiness),
    })
}

/// "SOURCE_BACKLOG" for READINESS_REASON_CODE_SOURCE_BACKLOG.
fn reason_name(code: i32) -> String {
    ReadinessReasonCode::try_from(code)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("READINESS_REASON_CODE_")
                .to_string()
        })
        .unwrap_or_else(|_| format!("?{code}"))
}

fn readiness_json(r: &Option<Readiness>) -> Value {
    match r {
        None => Value::Null,
        Some(r) => json!({
            "to": stage_name(r.to_stage), "ready": r.ready, "checked_at": time(&r.checked_at),
            "reasons": r.reasons.iter().map(|x| json!({
                "code": reason_name(x.code), "detail": x.detail,
            })).collect::<Vec<_>>(),
        }),
    }
}

/// `ready`, `not ready: CODE, CODE`, or `-` when not measured.
fn readiness_cell(r: &Option<Readiness>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r.ready => "ready".into(),
        Some(r) => {
            let mut codes: Vec<String> = r.reasons.iter().map(|x| reason_name(x.code)).collect();
            codes.dedup();
            format!("not ready: {}", codes.join(", "))
        }
    }
}

/// Prints per-topic results; the exit code is non-zero when any topic did not change.
fn show_changes(
    output: OutputFormat,
    results: &[pb::StageChangeResult],
) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Json => print_json(&results.iter().map(change_json).collect::<Vec<_>>())?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    vec![
                        r.topic.clone(),
                        if r.changed {
                            "changed".into()
                        } else {
                            "NOT changed".into()
                        },
                        format!("{} -> {}", stage_name(r.from_stage), stage_name(r.to_stage)),
                        match &r.readiness {
                            _ if r.changed => r.revision.to_string(),
                            Some(rd) if !rd.ready && !rd.reasons.is_empty() => {
                                readiness_cell(&r.readiness)
                            }
                            _ => r.error.clone(),
                        },
                    ]
                })
                .collect();
            print_table(&["TOPIC", "RESULT", "STAGE", "REVISION / WHY NOT"], &rows);
            // Every reason with what was measured, one per line, under the table.
            for r in results.iter().filter(|r| !r.changed) {
                let Some(rd) = r.readiness.as_ref().filter(|rd| !rd.ready) else {
                    continue;
                };
                for reason in &rd.reasons {
                    println!(
                        "  {}: {}: {}",
                        r.topic,
                        reason_name(reason.code),
                        reason.detail
                    );
                }
            }
        }
    }
    let all = results.iter().all(|r| r.changed);
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show_audit(output: OutputFormat, records: &[pb::AuditRecord]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(
            &records
                .iter()
                .map(|r| {
                    json!({
                        "topic": r.topic, "from": stage_name(r.from_stage), "to": stage_name(r.to_stage),
                        "actor": r.actor, "forced": r.forced, "reason": r.reason,
                        "at": time(&r.at), "revision": r.revision,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        time(&r.at),
                        r.topic.clone(),
                        format!("{} -> {}", stage_name(r.from_stage), stage_name(r.to_stage)),
                        r.actor.clone(),
                        if r.forced { "forced".into() } else { String::new() },
                        r.reason.clone(),
                    ]
                })
                .collect();
            print_table(&["AT", "TOPIC", "CHANGE", "BY", "", "REASON"], &rows);
            Ok(())
        }
    }
}
