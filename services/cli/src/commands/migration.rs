//! `ferry migration` (alias `ferry task`): seamless-migration tasks through their five
//! steps, and their per-topic stages.
//!
//! Every mutating verb takes `--dry-run`: the server decides the call as it would (the same
//! validation, gates and readiness) and commits nothing.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ferry_api::common::v1::{
    ClusterEndpoint, ConnectOutcome, Credentials, ItemKind, ItemResult, Readiness,
    ReadinessReasonCode, Stage, TargetType,
};
use ferry_api::health_check::v1::health_check_service_client::HealthCheckServiceClient;
use ferry_api::health_check::v1::{ListTopicClientsRequest, ListUnswitchedClientsRequest};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::ImportItem;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use serde_json::{Value, json};

use crate::commands::import::{kind_name, result_name};
use crate::output::{OutputFormat, all_pages, print_json, print_table};

/// Flags of `ferry migration`.
#[derive(Debug, Args)]
pub struct MigrationArgs {
    /// Who is acting, recorded in the audit log.
    #[arg(long, global = true, env = "FERRY_ACTOR")]
    actor: Option<String>,
    #[command(subcommand)]
    command: MigrationCommand,
}

#[derive(Debug, Subcommand)]
enum MigrationCommand {
    /// Create a migration task (one running task per target cluster).
    ///
    /// Source admin keys (ACL on) come from --source-access-key and the secret from
    /// FERRY_SOURCE_SECRET_KEY or --source-secret-key-file, never from a flag value.
    /// Example: ferry migration create --name orders --source-cluster ClusterA
    ///   --source-namesrv 10.0.0.1:9876 --target-cluster ClusterB
    ///   --target-namesrv 10.0.1.1:9876 --target-type 5.x
    Create(CreateArgs),
    /// List migration tasks.
    ///
    /// Example: ferry migration list --state running
    List {
        /// Only tasks in this state.
        #[arg(long, value_parser = ["running", "paused", "completed", "rolled-back"])]
        state: Option<String>,
    },
    /// Show one task: step, state, topic counts per stage, step history.
    ///
    /// Example: ferry migration show mt-1a2b3c4d5e6f
    Show { task_id: String },
    /// Step 1: probe the source and target clusters and keep the result on the task.
    ///
    /// Example: ferry migration connect mt-1a2b3c4d5e6f
    Connect {
        task_id: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Step 2: scan the source again and list topics and groups not in the task yet.
    ///
    /// Example: ferry migration inventory mt-1a2b3c4d5e6f
    Inventory { task_id: String },
    /// Step 2: the task's topics and groups with their import state.
    ///
    /// Example: ferry migration items mt-1a2b3c4d5e6f --state not-imported
    Items {
        task_id: String,
        /// Only topics or only groups.
        #[arg(long, value_parser = ["topic", "group"])]
        kind: Option<String>,
        /// Only items in this state.
        #[arg(long, value_parser = ["not-imported", "imported", "failed"])]
        state: Option<String>,
        /// Only names containing this text.
        #[arg(long)]
        contains: Option<String>,
    },
    /// Step 2: import topics and groups from the source scan into the target; imported
    /// topics join the task at INITIAL.
    ///
    /// Example: ferry migration import mt-1a2b3c4d5e6f --all
    Import(ImportItemsArgs),
    /// Step 2: create a topic or group on the target by hand.
    ///
    /// Example: ferry migration create-item mt-1a2b3c4d5e6f --topic Audit --queues 8
    CreateItem(CreateItemArgs),
    /// Step 2: ACL roles (accounts and their keys) for the target.
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Step 3: which clients still use the source NameServer directly.
    ///
    /// Exit code 0 when every client uses the routers, 2 when some do not.
    /// Example: ferry migration switch-status mt-1a2b3c4d5e6f
    SwitchStatus {
        task_id: String,
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Move the task to its next step (or back) when the step's gate holds.
    #[command(subcommand)]
    Step(StepCommand),
    /// Topics of a task.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Step 4: move topics one stage forward (INITIAL → DUAL_READ → DUAL_WRITE →
    /// SWITCHING → DONE).
    ///
    /// Example: ferry migration advance mt-1a2b3c4d5e6f --match 'Order*' --reason "window 3"
    Advance(ChangeArgs),
    /// Step 4: move topics one stage back.
    ///
    /// Example: ferry migration rollback mt-1a2b3c4d5e6f Orders
    Rollback(ChangeArgs),
    /// Remove INITIAL topics from the task.
    ///
    /// Example: ferry migration remove-topic mt-1a2b3c4d5e6f Payments
    RemoveTopic {
        task_id: String,
        #[arg(required = true)]
        topics: Vec<String>,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Pause the task: no stage change is accepted; routers keep serving.
    ///
    /// Example: ferry migration pause mt-1a2b3c4d5e6f
    Pause {
        task_id: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Resume a paused task.
    ///
    /// Example: ferry migration resume mt-1a2b3c4d5e6f
    Resume {
        task_id: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Roll every topic of the task back one stage.
    ///
    /// Example: ferry migration rollback-all mt-1a2b3c4d5e6f
    RollbackAll {
        task_id: String,
        /// Change even though readiness is not proven (recorded as forced).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Complete the task once every topic is DONE; releases the target cluster.
    ///
    /// Example: ferry migration complete mt-1a2b3c4d5e6f
    Complete {
        task_id: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// The audit log of stage changes.
    ///
    /// Example: ferry migration audit mt-1a2b3c4d5e6f --topic Orders
    Audit {
        task_id: String,
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Bring topics to a desired stage: print the plan (one next stage per topic and whether
    /// it is ready); with --apply make the ready steps, with --wait keep going until every
    /// topic is there (one stage per topic per round, honouring readiness).
    ///
    /// Example: ferry migration reconcile mt-1a2b3c4d5e6f --to DONE --apply --wait 600
    Reconcile(ReconcileArgs),
    /// Show the task's stages and readiness live, refreshed every --interval seconds.
    ///
    /// Example: ferry migration watch mt-1a2b3c4d5e6f --interval 2
    Watch {
        task_id: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct ReconcileArgs {
    task_id: String,
    /// Desired stage of every topic not named with --topic.
    #[arg(long)]
    to: Option<String>,
    /// Desired stage of one topic, TOPIC=STAGE (repeat).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Make the ready steps (without it: only the plan, a dry run).
    #[arg(long)]
    apply: bool,
    /// Make steps even when readiness is not proven (recorded as forced).
    #[arg(long)]
    force: bool,
    /// With --apply: keep reconciling until converged, at most this many seconds.
    #[arg(long)]
    wait: Option<u64>,
    /// Seconds between rounds with --wait.
    #[arg(long, default_value_t = 5)]
    interval: u64,
}

/// `--dry-run`: say what would happen, change nothing.
#[derive(Debug, Clone, Copy, Args)]
struct DryRun {
    /// Show what would be done and change nothing.
    #[arg(long)]
    dry_run: bool,
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
    /// Access key of the source's admin account (ACL on).
    #[arg(long, env = "FERRY_SOURCE_ACCESS_KEY")]
    source_access_key: Option<String>,
    /// File holding the source admin secret key (or set FERRY_SOURCE_SECRET_KEY).
    #[arg(long)]
    source_secret_key_file: Option<std::path::PathBuf>,
    /// Target cluster name.
    #[arg(long)]
    target_cluster: String,
    /// Target NameServers, "host:port;host:port".
    #[arg(long)]
    target_namesrv: String,
    /// Target version line: 4.x or 5.x.
    #[arg(long, value_parser = ["4.x", "5.x"])]
    target_type: String,
    #[command(flatten)]
    dry: DryRun,
}

#[derive(Debug, Args)]
struct ImportItemsArgs {
    task_id: String,
    /// Topics to import (repeat).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Groups to import (repeat).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Every item not imported yet.
    #[arg(long, conflicts_with_all = ["topics", "groups"])]
    all: bool,
    #[command(flatten)]
    dry: DryRun,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "item")]
struct CreateItemNames {
    /// Topic to create.
    #[arg(long)]
    topic: Option<String>,
    /// Consumer group to create.
    #[arg(long)]
    group: Option<String>,
}

#[derive(Debug, Args)]
struct CreateItemArgs {
    task_id: String,
    #[command(flatten)]
    names: CreateItemNames,
    /// Queue count of a topic (clamped into 3..16 with a notice); default 8.
    #[arg(long, default_value_t = 0)]
    queues: i32,
    /// Ordered topic, or orderly consumer group.
    #[arg(long)]
    order: bool,
    #[command(flatten)]
    dry: DryRun,
}

#[derive(Debug, Subcommand)]
enum RolesCommand {
    /// Import roles from a plain_acl.yml or JSON file; secrets are stored, never shown.
    ///
    /// Example: ferry migration roles import mt-1a2b3c4d5e6f --file plain_acl.yml
    Import {
        task_id: String,
        /// plain_acl.yml or JSON with the accounts.
        #[arg(long)]
        file: std::path::PathBuf,
        #[command(flatten)]
        dry: DryRun,
    },
    /// List imported roles (access key, admin, result; never the secret).
    ///
    /// Example: ferry migration roles list mt-1a2b3c4d5e6f
    List { task_id: String },
}

#[derive(Debug, Subcommand)]
enum StepCommand {
    /// Move the task to its next step when the current step's gate holds.
    ///
    /// Example: ferry migration step advance mt-1a2b3c4d5e6f
    Advance {
        task_id: String,
        /// Advance although the gate does not hold (recorded in the step history).
        #[arg(long)]
        force: bool,
        /// Reason recorded in the step history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Move the task back one step.
    ///
    /// Example: ferry migration step rollback mt-1a2b3c4d5e6f
    Rollback {
        task_id: String,
        /// Reason recorded in the step history.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        dry: DryRun,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// List the task's topics with stage and revision.
    ///
    /// Example: ferry migration topics list mt-1a2b3c4d5e6f --stage DUAL_READ
    List {
        task_id: String,
        /// Only topics in this stage (INITIAL, DUAL_READ, DUAL_WRITE, SWITCHING, DONE).
        #[arg(long)]
        stage: Option<String>,
    },
    /// Add topics to the task; they start at INITIAL.
    ///
    /// Example: ferry migration topics add mt-1a2b3c4d5e6f Orders Payments
    Add {
        task_id: String,
        #[arg(required = true)]
        topics: Vec<String>,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Remove topics from the task; only INITIAL topics can be removed.
    ///
    /// Example: ferry migration topics remove mt-1a2b3c4d5e6f Payments
    Remove {
        task_id: String,
        #[arg(required = true)]
        topics: Vec<String>,
        #[command(flatten)]
        dry: DryRun,
    },
}

#[derive(Debug, Args)]
struct ChangeArgs {
    task_id: String,
    /// Topics to change (or select them with --match / --all).
    topics: Vec<String>,
    /// Select the task's topics whose name matches this pattern (`*` and `?`).
    #[arg(long = "match", conflicts_with = "all")]
    pattern: Option<String>,
    /// Select every topic of the task.
    #[arg(long)]
    all: bool,
    /// Only change if the topic is still at this revision (from `topics list`); one topic only.
    #[arg(long)]
    expected_revision: Option<i64>,
    /// Change even though readiness is not proven (recorded as forced in the audit log).
    #[arg(long)]
    force: bool,
    /// Reason recorded in the audit log.
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    dry: DryRun,
}

pub async fn run(
    addr: &str,
    output: OutputFormat,
    args: MigrationArgs,
) -> anyhow::Result<ExitCode> {
    let channel = crate::connect::endpoint(addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach Ferry at {addr}"))?;
    let mut client = MigrationTaskServiceClient::new(crate::connect::authorized(channel)?);
    let actor = args
        .actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    match args.command {
        MigrationCommand::Create(c) => {
            let target_type = match c.target_type.as_str() {
                "4.x" => TargetType::V4,
                _ => TargetType::V5,
            };
            let credentials = source_credentials(c.source_access_key, c.source_secret_key_file)?;
            let mut source = endpoint(c.source_cluster, c.source_namesrv);
            source.credentials = credentials;
            let request = pb::CreateMigrationTaskRequest {
                name: c.name,
                source: Some(source),
                target_type: target_type as i32,
                target: Some(endpoint(c.target_cluster, c.target_namesrv)),
                actor,
                dry_run: c.dry.dry_run,
            };
            let task = client
                .create_migration_task(request)
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            if c.dry.dry_run && output == OutputFormat::Table {
                println!("dry run: the target is free and the task is valid; nothing created");
            }
            show_tasks(output, &[task])?;
        }
        MigrationCommand::List { state } => {
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
        MigrationCommand::Show { task_id } => {
            let task = get_task(&mut client, &task_id).await?;
            show_task_detail(output, &task)?;
        }
        MigrationCommand::Connect { task_id, dry } => {
            let resp = client
                .connect_source(pb::ConnectSourceRequest {
                    task_id,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner();
            let ok = resp.outcome == ConnectOutcome::Ok as i32;
            match output {
                OutputFormat::Json => print_json(&json!({
                    "outcome": outcome_name(resp.outcome),
                    "message": resp.message,
                    "probes": resp.probes.iter().map(|p| json!({
                        "address": p.address, "role": p.role, "ok": p.ok,
                        "error_kind": p.error_kind, "error": p.error,
                    })).collect::<Vec<_>>(),
                }))?,
                OutputFormat::Table => {
                    println!("{}: {}", outcome_name(resp.outcome), resp.message);
                    let rows: Vec<Vec<String>> = resp
                        .probes
                        .iter()
                        .map(|p| {
                            vec![
                                p.address.clone(),
                                p.role.clone(),
                                if p.ok {
                                    "ok".into()
                                } else {
                                    p.error_kind.to_ascii_uppercase()
                                },
                                p.error.clone(),
                            ]
                        })
                        .collect();
                    print_table(&["ADDRESS", "ROLE", "RESULT", "DETAIL"], &rows);
                    if dry.dry_run {
                        println!("dry run: the result is not kept on the task");
                    }
                }
            }
            return Ok(exit(ok));
        }
        MigrationCommand::Inventory { task_id } => {
            let resp = client
                .refresh_source_inventory(pb::RefreshSourceInventoryRequest {
                    task_id,
                    dry_run: false,
                })
                .await?
                .into_inner();
            match output {
                OutputFormat::Json => print_json(&json!({
                    "snapshot_id": resp.snapshot_id,
                    "new_topics": resp.new_topics,
                    "new_groups": resp.new_groups,
                }))?,
                OutputFormat::Table => {
                    println!("snapshot: {}", resp.snapshot_id);
                    println!(
                        "source topics not in the task: {}",
                        list_or_none(&resp.new_topics)
                    );
                    println!(
                        "source groups not imported: {}",
                        list_or_none(&resp.new_groups)
                    );
                }
            }
        }
        MigrationCommand::Items {
            task_id,
            kind,
            state,
            contains,
        } => {
            let kind = match kind.as_deref() {
                Some("topic") => ItemKind::Topic,
                Some("group") => ItemKind::Group,
                _ => ItemKind::Unspecified,
            };
            let state = match state.as_deref() {
                Some("not-imported") => pb::MigrationItemState::NotImported,
                Some("imported") => pb::MigrationItemState::Imported,
                Some("failed") => pb::MigrationItemState::Failed,
                _ => pb::MigrationItemState::Unspecified,
            };
            let items = all_pages(|page_token| {
                let mut client = client.clone();
                let request = pb::ListMigrationItemsRequest {
                    task_id: task_id.clone(),
                    kind: kind as i32,
                    state: state as i32,
                    name_contains: contains.clone().unwrap_or_default(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let page = client.list_migration_items(request).await?.into_inner();
                    Ok((page.items, page.next_page_token))
                }
            })
            .await?;
            show_items(output, &items)?;
        }
        MigrationCommand::Import(c) => {
            if !c.all && c.topics.is_empty() && c.groups.is_empty() {
                bail!("name --topic/--group items to import, or --all");
            }
            let resp = client
                .import_migration_items(pb::ImportMigrationItemsRequest {
                    task_id: c.task_id,
                    topics: c.topics,
                    groups: c.groups,
                    all: c.all,
                    dry_run: c.dry.dry_run,
                })
                .await?
                .into_inner();
            return show_import_results(output, &resp.items, c.dry.dry_run);
        }
        MigrationCommand::CreateItem(c) => {
            let (kind, name) = match (c.names.topic, c.names.group) {
                (Some(t), _) => (ItemKind::Topic, t),
                (_, Some(g)) => (ItemKind::Group, g),
                _ => bail!("name a --topic or a --group"),
            };
            let request = pb::CreateMigrationItemRequest {
                task_id: c.task_id,
                kind: kind as i32,
                name,
                queue_nums: c.queues,
                order: c.order,
                dry_run: c.dry.dry_run,
            };
            let resp = client.create_migration_item(request).await?.into_inner();
            return show_import_results(output, resp.item.as_slice(), c.dry.dry_run);
        }
        MigrationCommand::Roles(RolesCommand::Import { task_id, file, dry }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let resp = client
                .import_roles(pb::ImportRolesRequest {
                    task_id,
                    roles: Vec::new(),
                    roles_file: bytes,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner();
            return show_import_results(output, &resp.items, dry.dry_run);
        }
        MigrationCommand::Roles(RolesCommand::List { task_id }) => {
            let roles = all_pages(|page_token| {
                let mut client = client.clone();
                let request = pb::ListRolesRequest {
                    task_id: task_id.clone(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let page = client.list_roles(request).await?.into_inner();
                    Ok((page.roles, page.next_page_token))
                }
            })
            .await?;
            let rows: Vec<Value> = roles
                .iter()
                .map(|r| {
                    let keys = r.credentials.clone().unwrap_or_default();
                    json!({
                        "access_key": keys.access_key, "secret_key_set": keys.secret_key_set,
                        "admin": r.admin, "result": result_name(r.result),
                    })
                })
                .collect();
            match output {
                OutputFormat::Json => print_json(&rows)?,
                OutputFormat::Table => print_table(
                    &["ACCESS KEY", "SECRET", "ADMIN", "RESULT"],
                    &rows
                        .iter()
                        .map(|r| {
                            vec![
                                r["access_key"].as_str().unwrap_or_default().to_string(),
                                if r["secret_key_set"] == json!(true) {
                                    "set".into()
                                } else {
                                    "-".into()
                                },
                                r["admin"].to_string(),
                                r["result"].as_str().unwrap_or_default().to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        MigrationCommand::SwitchStatus { task_id, topic } => {
            return switch_status(addr, output, &task_id, topic).await;
        }
        MigrationCommand::Step(StepCommand::Advance {
            task_id,
            force,
            reason,
            dry,
        }) => {
            let task = get_task(&mut client, &task_id).await?;
            let moved = client
                .advance_step(pb::AdvanceStepRequest {
                    task_id,
                    from_step: task.step,
                    actor,
                    force,
                    reason,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            dry_note(
                output,
                dry,
                &format!("the task would leave step {}", step_name(task.step)),
            );
            show_task_detail(output, &moved)?;
        }
        MigrationCommand::Step(StepCommand::Rollback {
            task_id,
            reason,
            dry,
        }) => {
            let task = get_task(&mut client, &task_id).await?;
            let moved = client
                .rollback_step(pb::RollbackStepRequest {
                    task_id,
                    from_step: task.step,
                    actor,
                    reason,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            dry_note(
                output,
                dry,
                &format!("the task could go back from step {}", step_name(task.step)),
            );
            show_task_detail(output, &moved)?;
        }
        MigrationCommand::Topics(TopicsCommand::List { task_id, stage }) => {
            let stages = match stage {
                Some(s) => vec![parse_stage(&s)? as i32],
                None => Vec::new(),
            };
            let topics = list_topics(&client, &task_id, stages).await?;
            show_topics(output, &topics)?;
        }
        MigrationCommand::Topics(TopicsCommand::Add {
            task_id,
            topics,
            dry,
        }) => {
            let resp = client
                .add_topics(pb::AddTopicsRequest {
                    task_id,
                    topics,
                    actor,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner();
            match output {
                OutputFormat::Json => print_json(&json!({
                    "added": resp.added, "already_present": resp.already_present,
                    "dry_run": dry.dry_run,
                }))?,
                OutputFormat::Table => {
                    let verb = if dry.dry_run {
                        "would be added"
                    } else {
                        "added"
                    };
                    println!("{verb}: {}", list_or_none(&resp.added));
                    println!(
                        "already in the task: {}",
                        list_or_none(&resp.already_present)
                    );
                }
            }
        }
        MigrationCommand::Topics(TopicsCommand::Remove {
            task_id,
            topics,
            dry,
        })
        | MigrationCommand::RemoveTopic {
            task_id,
            topics,
            dry,
        } => {
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
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner();
            let all_ok = resp.refused.is_empty();
            match output {
                OutputFormat::Json => print_json(&json!({
                    "removed": resp.removed,
                    "refused": resp.refused.iter().map(change_json).collect::<Vec<_>>(),
                    "dry_run": dry.dry_run,
                }))?,
                OutputFormat::Table => {
                    let verb = if dry.dry_run {
                        "would be removed"
                    } else {
                        "removed"
                    };
                    println!("{verb}: {}", list_or_none(&resp.removed));
                    for r in &resp.refused {
                        println!("not removed: {}: {}", r.topic, r.error);
                    }
                }
            }
            return Ok(exit(all_ok));
        }
        MigrationCommand::Advance(c) | MigrationCommand::Rollback(c)
            if c.expected_revision.is_some() && c.topics.len() != 1 =>
        {
            bail!(
                "--expected-revision applies to exactly one topic, {} given",
                c.topics.len()
            );
        }
        MigrationCommand::Advance(c) => {
            let change = change_request(&client, c, actor).await?;
            let dry_run = change.dry_run;
            let resp = client
                .advance_topics(pb::AdvanceTopicsRequest {
                    change: Some(change),
                })
                .await?
                .into_inner();
            return show_changes(output, &resp.results, dry_run);
        }
        MigrationCommand::Rollback(c) => {
            let change = change_request(&client, c, actor).await?;
            let dry_run = change.dry_run;
            let resp = client
                .rollback_topics(pb::RollbackTopicsRequest {
                    change: Some(change),
                })
                .await?
                .into_inner();
            return show_changes(output, &resp.results, dry_run);
        }
        MigrationCommand::Pause { task_id, dry } => {
            let task = client
                .pause_task(pb::PauseTaskRequest {
                    task_id,
                    actor,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            dry_note(output, dry, "the task could be paused");
            show_tasks(output, &[task])?;
        }
        MigrationCommand::Resume { task_id, dry } => {
            let task = client
                .resume_task(pb::ResumeTaskRequest {
                    task_id,
                    actor,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            dry_note(output, dry, "the task could be resumed");
            show_tasks(output, &[task])?;
        }
        MigrationCommand::RollbackAll {
            task_id,
            force,
            dry,
        } => {
            let resp = client
                .rollback_task(pb::RollbackTaskRequest {
                    task_id,
                    force,
                    actor,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner();
            return show_changes(output, &resp.results, dry.dry_run);
        }
        MigrationCommand::Complete { task_id, dry } => {
            let task = client
                .complete_task(pb::CompleteTaskRequest {
                    task_id,
                    actor,
                    dry_run: dry.dry_run,
                })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            dry_note(output, dry, "the task could complete");
            show_tasks(output, &[task])?;
        }
        MigrationCommand::Audit { task_id, topic } => {
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
        MigrationCommand::Reconcile(c) => {
            return reconcile(&mut client, output, c, actor).await;
        }
        MigrationCommand::Watch {
            task_id,
            interval,
            count,
        } => {
            return watch(&mut client, output, &task_id, interval, count).await;
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

/// The topics a change names: given by name, by `--match` pattern or `--all`.
async fn change_request(
    client: &Client,
    c: ChangeArgs,
    actor: String,
) -> anyhow::Result<pb::StageChangeRequest> {
    let expected = c.expected_revision.unwrap_or(0);
    let mut refs: Vec<pb::TopicRef> = c
        .topics
        .iter()
        .map(|topic| pb::TopicRef {
            topic: topic.clone(),
            expected_revision: expected,
        })
        .collect();
    if c.all || c.pattern.is_some() {
        if !c.topics.is_empty() {
            bail!("name topics, or select them with --match / --all, not both");
        }
        let topics = list_topics(client, &c.task_id, Vec::new()).await?;
        // The revision each topic had when selected fences the change: a topic moved by
        // someone else meanwhile is refused, not moved twice.
        refs = topics
            .into_iter()
            .filter(|t| c.pattern.as_deref().is_none_or(|p| glob_match(p, &t.topic)))
            .map(|t| pb::TopicRef {
                topic: t.topic,
                expected_revision: t.revision,
            })
            .collect();
        if refs.is_empty() {
            bail!("no topic of task {} matches", c.task_id);
        }
    } else if refs.is_empty() {
        bail!("name the topics to change, or select them with --match PATTERN or --all");
    }
    Ok(pb::StageChangeRequest {
        task_id: c.task_id,
        topics: refs,
        force: c.force,
        actor,
        reason: c.reason,
        dry_run: c.dry.dry_run,
    })
}

/// `*` matches any run of characters, `?` one character; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

type Client = MigrationTaskServiceClient<crate::connect::FerryChannel>;

async fn get_task(client: &mut Client, task_id: &str) -> anyhow::Result<pb::MigrationTask> {
    client
        .get_migration_task(pb::GetMigrationTaskRequest {
            task_id: task_id.to_string(),
        })
        .await?
        .into_inner()
        .task
        .context("server returned no task")
}

async fn list_topics(
    client: &Client,
    task_id: &str,
    stages: Vec<i32>,
) -> anyhow::Result<Vec<pb::TopicStage>> {
    all_pages(|page_token| {
        let mut client = client.clone();
        let request = pb::ListTopicStagesRequest {
            task_id: task_id.to_string(),
            stages: stages.clone(),
            page_size: 0,
            page_token,
        };
        async move {
            let page = client.list_topic_stages(request).await?.into_inner();
            Ok((page.topics, page.next_page_token))
        }
    })
    .await
}

/// The source admin keys: access key from a flag or env, the secret only from env or a file.
fn source_credentials(
    access_key: Option<String>,
    secret_file: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<Credentials>> {
    let secret = match secret_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("FERRY_SOURCE_SECRET_KEY").ok(),
    };
    match (access_key, secret) {
        (None, None) => Ok(None),
        (Some(access_key), Some(secret_key)) if !secret_key.is_empty() => Ok(Some(Credentials {
            access_key,
            secret_key,
        })),
        (Some(_), _) => bail!(
            "--source-access-key needs a secret: set FERRY_SOURCE_SECRET_KEY or --source-secret-key-file"
        ),
        (None, Some(_)) => bail!("a source secret key was given without --source-access-key"),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Under a table, says that a dry run changed nothing.
fn dry_note(output: OutputFormat, dry: DryRun, what: &str) {
    if dry.dry_run && output == OutputFormat::Table {
        println!("dry run: {what}; nothing changed");
    }
}

fn outcome_name(v: i32) -> String {
    short_name(v, |o: ConnectOutcome| o.as_str_name(), "CONNECT_OUTCOME_")
}

fn item_state_name(v: i32) -> String {
    short_name(
        v,
        |s: pb::MigrationItemState| s.as_str_name(),
        "MIGRATION_ITEM_STATE_",
    )
}

fn show_items(output: OutputFormat, items: &[pb::MigrationItem]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(
            &items
                .iter()
                .map(|i| {
                    json!({
                        "kind": kind_name(i.kind), "name": i.name, "state": item_state_name(i.state),
                        "last_result": result_name(i.last_result), "reason": i.reason,
                        "notices": i.notices,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        kind_name(i.kind).to_string(),
                        i.name.clone(),
                        item_state_name(i.state),
                        i.reason.clone(),
                    ]
                })
                .collect();
            print_table(&["KIND", "NAME", "STATE", "REASON"], &rows);
            Ok(())
        }
    }
}

/// Per-item import results; non-zero exit when any item did not reach the target.
/// In a dry run every item is PENDING: the call succeeding is the answer.
fn show_import_results(
    output: OutputFormat,
    items: &[ImportItem],
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Json => print_json(
            &items
                .iter()
                .map(|i| {
                    json!({
                        "kind": kind_name(i.kind), "name": i.name, "result": result_name(i.result),
                        "reason": i.reason, "notices": i.notices,
                    })
                })
                .collect::<Vec<_>>(),
        )?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    vec![
                        kind_name(i.kind).to_string(),
                        i.name.clone(),
                        result_name(i.result).to_string(),
                        i.reason.clone(),
                    ]
                })
                .collect();
            print_table(&["KIND", "NAME", "RESULT", "REASON"], &rows);
        }
    }
    if dry_run {
        if output == OutputFormat::Table {
            println!("dry run: nothing created");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ok = items.iter().all(|i| {
        i.result == ItemResult::Success as i32
            || i.result == ItemResult::AlreadyExistsSkipped as i32
    });
    Ok(exit(ok))
}

/// Step 3's view: clients still on the source NameServer, from the health checker.
async fn switch_status(
    addr: &str,
    output: OutputFormat,
    task_id: &str,
    topic: Option<String>,
) -> anyhow::Result<ExitCode> {
    let channel = crate::connect::endpoint(addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach Ferry at {addr}"))?;
    let mut health = HealthCheckServiceClient::new(crate::connect::authorized(channel)?);
    let seen = health
        .list_topic_clients(ListTopicClientsRequest {
            task_id: task_id.to_string(),
            topic: topic.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    let resp = health
        .list_unswitched_clients(ListUnswitchedClientsRequest {
            task_id: task_id.to_string(),
            topic: topic.unwrap_or_default(),
        })
        .await?
        .into_inner();
    match output {
        OutputFormat::Json => print_json(&json!({
            "routers_registered": seen.routers_registered,
            "routers_answered": seen.routers_answered,
            "router_failures": seen.router_failures,
            "through_routers": seen.topics.iter().map(|t| json!({
                "topic": t.topic, "client_count": t.client_count,
                "clients": t.clients.iter().map(|c| json!({
                    "client_addr": c.client_addr, "language": c.language,
                    "lookups": c.lookups, "last_seen": time(&c.last_seen), "routers": c.routers,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "routers_consulted": resp.routers_consulted,
            "unswitched": resp.clients.iter().map(|c| json!({
                "topic": c.topic, "group": c.group, "role": c.role,
                "client_id": c.client_id, "client_addr": c.client_addr,
            })).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Table => {
            println!(
                "routers: {} registered, {} answering",
                seen.routers_registered, seen.routers_answered
            );
            for why in &seen.router_failures {
                println!("  {why}");
            }
            let rows: Vec<Vec<String>> = seen
                .topics
                .iter()
                .flat_map(|t| {
                    t.clients.iter().map(move |c| {
                        vec![
                            t.topic.clone(),
                            t.client_count.to_string(),
                            c.client_addr.clone(),
                            c.language.clone(),
                            time(&c.last_seen),
                            c.routers.join(","),
                        ]
                    })
                })
                .collect();
            println!("clients through the routers:");
            print_table(
                &[
                    "TOPIC",
                    "CLIENTS",
                    "ADDRESS",
                    "LANGUAGE",
                    "LAST SEEN",
                    "ROUTERS",
                ],
                &rows,
            );
            println!(
                "clients still on the source NameServer (seen on source brokers, not at any router):"
            );
            if resp.clients.is_empty() {
                println!("every client seen on the source brokers uses the routers");
            } else {
                let rows: Vec<Vec<String>> = resp
                    .clients
                    .iter()
                    .map(|c| {
                        vec![
                            c.topic.clone(),
                            c.role.clone(),
                            c.group.clone(),
                            c.client_addr.clone(),
                            c.client_id.clone(),
                        ]
                    })
                    .collect();
                print_table(&["TOPIC", "ROLE", "GROUP", "ADDRESS", "CLIENT ID"], &rows);
            }
        }
    }
    Ok(if resp.clients.is_empty() && resp.routers_consulted > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn reconcile(
    client: &mut Client,
    output: OutputFormat,
    c: ReconcileArgs,
    actor: String,
) -> anyhow::Result<ExitCode> {
    let mut desired = std::collections::HashMap::new();
    for spec in &c.topics {
        let (topic, stage) = spec
            .split_once('=')
            .with_context(|| format!("--topic takes TOPIC=STAGE, got {spec:?}"))?;
        desired.insert(topic.to_string(), parse_stage(stage)? as i32);
    }
    let desired_all = match &c.to {
        Some(s) => parse_stage(s)? as i32,
        None => Stage::Unspecified as i32,
    };
    if desired.is_empty() && c.to.is_none() {
        bail!("say where to go: --to STAGE and/or --topic TOPIC=STAGE");
    }
    if c.wait.is_some() && !c.apply {
        bail!("--wait needs --apply");
    }
    let deadline = c
        .wait
        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    loop {
        let resp = client
            .reconcile(pb::ReconcileRequest {
                task_id: c.task_id.clone(),
                desired: desired.clone(),
                desired_all,
                apply: c.apply,
                force: c.force,
                actor: actor.clone(),
            })
            .await?
            .into_inner();
        match output {
            OutputFormat::Json => print_json(&json!({
                "converged": resp.converged,
                "plan": resp.plan.iter().map(|p| json!({
                    "topic": p.topic, "current": stage_name(p.current),
                    "desired": stage_name(p.desired), "next": stage_name(p.next),
                    "ready": p.ready, "blocked_by": p.blocked_by,
                })).collect::<Vec<_>>(),
                "applied": resp.applied.iter().map(change_json).collect::<Vec<_>>(),
            }))?,
            OutputFormat::Table => {
                let rows: Vec<Vec<String>> = resp
                    .plan
                    .iter()
                    .map(|p| {
                        let changed = resp.applied.iter().any(|a| a.topic == p.topic && a.changed);
                        vec![
                            p.topic.clone(),
                            format!(
                                "{} -> {} (wants {})",
                                stage_name(p.current),
                                stage_name(p.next),
                                stage_name(p.desired)
                            ),
                            if changed {
                                "changed".into()
                            } else if p.ready {
                                "ready".into()
                            } else {
                                format!("blocked: {}", p.blocked_by)
                            },
                        ]
                    })
                    .collect();
                if !rows.is_empty() {
                    print_table(&["TOPIC", "STEP", "STATE"], &rows);
                }
                if resp.converged {
                    println!("converged: every topic is at its desired stage");
                } else if !c.apply {
                    println!("plan only (dry run); add --apply to make the ready steps");
                }
            }
        }
        if resp.converged {
            return Ok(ExitCode::SUCCESS);
        }
        match deadline {
            Some(d) if std::time::Instant::now() < d => {
                tokio::time::sleep(std::time::Duration::from_secs(c.interval.max(1))).await;
            }
            // Not there (yet): exit 2 so scripts can tell "blocked" from "failed".
            _ => return Ok(ExitCode::from(2)),
        }
    }
}

/// Refreshes the task's stages and readiness until Ctrl-C or `count` rounds.
async fn watch(
    client: &mut Client,
    output: OutputFormat,
    task_id: &str,
    interval: u64,
    count: Option<u64>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal() && output == OutputFormat::Table;
    let interval = std::time::Duration::from_secs(interval.max(1));
    let mut round = 0u64;
    loop {
        let task = get_task(client, task_id).await?;
        let topics = list_topics(client, task_id, Vec::new()).await?;
        if tty {
            // Clear the screen and home the cursor so the view updates in place.
            print!("\x1b[2J\x1b[H");
        }
        match output {
            OutputFormat::Json => print_json(&json!({
                "task": task_json(&task),
                "topics": topics.iter().map(|t| json!({
                    "topic": t.topic, "stage": stage_name(t.stage),
                    "next": readiness_json(&t.next), "previous": readiness_json(&t.previous),
                })).collect::<Vec<_>>(),
            }))?,
            OutputFormat::Table => {
                println!(
                    "{}  {}  step {}  {}",
                    task.task_id,
                    task.name,
                    step_name(task.step),
                    state_name(task.state)
                );
                show_topics(output, &topics)?;
            }
        }
        round += 1;
        if count.is_some_and(|c| round >= c)
            || task.state != pb::MigrationTaskState::Running as i32
                && task.state != pb::MigrationTaskState::Paused as i32
        {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// One task with its step history.
fn show_task_detail(output: OutputFormat, task: &pb::MigrationTask) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&task_json(task)),
        OutputFormat::Table => {
            show_tasks(output, std::slice::from_ref(task))?;
            println!(
                "source: {} ({}){}",
                task.source_cluster,
                task.source_namesrv_addrs,
                if task.source_acl_enabled {
                    ", ACL on"
                } else {
                    ""
                }
            );
            println!(
                "target: {} ({})",
                task.target_cluster, task.target_namesrv_addrs
            );
            println!("last connect check: {}", outcome_name(task.connect_outcome));
            if !task.inventory_snapshot_id.is_empty() {
                println!(
                    "source inventory: {} at {}",
                    task.inventory_snapshot_id,
                    time(&task.inventory_taken_at)
                );
            }
            if task.clients_need_credentials {
                println!("clients need AK/SK: an earlier source of this target had ACL on");
            }
            for s in &task.step_history {
                println!(
                    "  {}  {} -> {}  by {}{}{}",
                    time(&s.at),
                    step_name(s.from_step),
                    step_name(s.to_step),
                    s.actor,
                    if s.forced { "  FORCED" } else { "" },
                    if s.reason.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", s.reason)
                    }
                );
            }
            Ok(())
        }
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
    short_name(value, |s: Stage| s.as_str_name(), "STAGE_")
}

/// A proto enum value's name without its type prefix, or `?N` for an unknown number.
fn short_name<E: TryFrom<i32>>(
    value: i32,
    name: impl Fn(E) -> &'static str,
    prefix: &str,
) -> String {
    E::try_from(value)
        .map(|e| name(e).trim_start_matches(prefix).to_string())
        .unwrap_or_else(|_| format!("?{value}"))
}

fn step_name(value: i32) -> String {
    short_name(
        value,
        |s: pb::MigrationStep| s.as_str_name(),
        "MIGRATION_STEP_",
    )
}

fn state_name(value: i32) -> String {
    short_name(
        value,
        |s: pb::MigrationTaskState| s.as_str_name(),
        "MIGRATION_TASK_STATE_",
    )
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
    short_name(
        code,
        |c: ReadinessReasonCode| c.as_str_name(),
        "READINESS_REASON_CODE_",
    )
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
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    // In a dry run, "would change" is a result with no error.
    let would = |r: &pb::StageChangeResult| r.changed || (dry_run && r.error.is_empty());
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
                        } else if would(r) {
                            "would change".into()
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
            for r in results.iter().filter(|r| !would(r)) {
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
    if dry_run && output == OutputFormat::Table {
        println!("dry run: nothing changed");
    }
    let all = results.iter().all(would);
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

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn patterns_select_topics_like_a_shell() {
        assert!(glob_match("Order*", "OrderCreated"));
        assert!(glob_match("*", ""));
        assert!(glob_match("Ord?r", "Order"));
        assert!(glob_match("*Paid*", "OrderPaidEvent"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("Order*", "Payments"));
        assert!(!glob_match("Ord?r", "Ordr"));
        assert!(!glob_match("a*b", "aXbY"));
    }
}
