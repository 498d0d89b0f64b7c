//! `ferry import`: import tasks that create topics and groups on a target cluster, with one
//! result per item.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use ferry_api::common::v1::{ClusterEndpoint, Credentials, ItemKind, ItemResult, TaskStatus};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::create_import_task_request::Source;
use ferry_api::metadata_sync::v1::import_task_service_client::ImportTaskServiceClient;
use serde_json::{Value, json};

use crate::connect::FerryChannel;
use crate::output::{OutputFormat, all_pages, print_json, print_table};

/// Exit code of `--wait` when the task ended but not every item succeeded.
const EXIT_NOT_ALL_SUCCEEDED: u8 = 2;
/// Largest upload accepted by the server.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How often `--wait` polls.
const POLL_EVERY: Duration = Duration::from_millis(500);

type Client = ImportTaskServiceClient<FerryChannel>;

/// Flags of `ferry import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    command: ImportCommand,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Create an import task from an export JSON, an .xlsx or a scanner snapshot, and start
    /// it. Bad files are refused before anything is created, naming the field or row;
    /// --dry-run only checks the file and shows the plan.
    ///
    /// Examples:
    ///   ferry import create --file rocketmq-metadata-export.json \
    ///     --target-cluster ClusterB --target-namesrv 10.0.1.1:9876 --wait
    ///   ferry import create --file topics.xlsx --dry-run \
    ///     --target-cluster ClusterB --target-namesrv 10.0.1.1:9876
    ///   ferry import create --snapshot 1732550000000-1a2b3c4d --type into-namespace \
    ///     --namespace prod --topic Orders --group GOrders \
    ///     --target-cluster ClusterB --target-namesrv 10.0.1.1:9876
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// List import tasks, newest first.
    ///
    /// Example: ferry import list --target-cluster ClusterB
    List {
        /// Only tasks of this target cluster.
        #[arg(long)]
        target_cluster: Option<String>,
    },
    /// Show one task with its progress counts and notices.
    ///
    /// Example: ferry import show imp-1732550000000-1a2b3c4d
    Show { task_id: String },
    /// The items of a task with their results, filtered.
    ///
    /// Example: ferry import items imp-1732550000000-1a2b3c4d --result failed --kind topic
    Items(ItemsArgs),
    /// Run the items that failed (target errors, target quota) again; done items are
    /// skipped.
    ///
    /// Example: ferry import retry imp-1732550000000-1a2b3c4d --wait
    Retry {
        task_id: String,
        /// Only show what would run again (counts per kind); nothing is changed.
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Topic and group quota of a target cluster: items over it end QUOTA_EXCEEDED.
    ///
    /// Examples:
    ///   ferry import quota ClusterB
    ///   ferry import quota ClusterB --topics 5000 --groups 5000   (0 = no quota)
    #[command(verbatim_doc_comment)]
    Quota {
        target_cluster: String,
        /// Most user topics on the cluster (0 = no quota); sets the quota.
        #[arg(long)]
        topics: Option<i64>,
        /// Most user groups on the cluster (0 = no quota); sets the quota.
        #[arg(long)]
        groups: Option<i64>,
        /// With --topics/--groups: have the server check the quota and show it as it would
        /// be stored, without storing it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TaskType {
    /// Names as they are; the namespace is the part before '%', or "default".
    ClusterMigration,
    /// Picked items created inside --namespace.
    IntoNamespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Batch requests where the broker has them, one per item otherwise.
    Auto,
    /// Batch requests.
    Batch,
    /// One request per item.
    OneByOne,
}

#[derive(Debug, Args)]
struct WaitArgs {
    /// Wait until the task has finished, showing progress on stderr. Exit code 0 when every
    /// item succeeded or was skipped, 2 when some failed.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (the task keeps running).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Export JSON (Ferry's or mqadmin's) or .xlsx (4.x or 5.x template) to import.
    #[arg(
        long,
        conflicts_with = "snapshot",
        required_unless_present = "snapshot"
    )]
    file: Option<PathBuf>,
    /// Scanner snapshot id to import.
    #[arg(long)]
    snapshot: Option<String>,
    /// Kind of task.
    #[arg(long = "type", value_enum, default_value_t = TaskType::ClusterMigration)]
    task_type: TaskType,
    /// Namespace to import into (--type into-namespace).
    #[arg(long)]
    namespace: Option<String>,
    /// Only these source topics (repeat the flag); default: every user topic.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Only these source groups (repeat the flag); default: every user group.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Target cluster name.
    #[arg(long)]
    target_cluster: String,
    /// Target NameServers, "host:port;host:port".
    #[arg(long)]
    target_namesrv: String,
    /// ACL access key of the target (when ACL is on).
    #[arg(long, env = "FERRY_TARGET_ACCESS_KEY")]
    access_key: Option<String>,
    /// ACL secret key of the target.
    #[arg(long, env = "FERRY_TARGET_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Most topics in this task (default 1000); the rest end QUOTA_EXCEEDED.
    #[arg(long, default_value_t = 0)]
    topic_limit: i32,
    /// Most groups in this task (default 1000); the rest end QUOTA_EXCEEDED.
    #[arg(long, default_value_t = 0)]
    group_limit: i32,
    /// How items are created on the target's brokers.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// Check the file and plan the task on the server, storing and creating nothing: shows
    /// the task as it would be and the items the plan decides (names refused, over the
    /// per-task limit, queue counts changed). A bad file fails as it would for real.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
struct ItemsArgs {
    task_id: String,
    /// Only these results (repeat): success, already-exists-skipped, quota-exceeded,
    /// invalid-name, failed, pending.
    #[arg(long = "result")]
    results: Vec<String>,
    /// Only topics or groups.
    #[arg(long, value_parser = ["topic", "group"])]
    kind: Option<String>,
    /// Only names containing this text (case-insensitive).
    #[arg(long)]
    name: Option<String>,
    /// At most this many items (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

pub async fn run(addr: &str, output: OutputFormat, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let channel = crate::connect::endpoint(addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach Ferry at {addr}"))?;
    let mut client = ImportTaskServiceClient::new(crate::connect::authorized(channel)?)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    match args.command {
        ImportCommand::Create(c) => create(&mut client, output, c).await,
        ImportCommand::List { target_cluster } => {
            let tasks = all_pages(|page_token| {
                let mut client = client.clone();
                let request = pb::ListImportTasksRequest {
                    target_cluster: target_cluster.clone().unwrap_or_default(),
                    page_size: 0,
                    page_token,
                };
                async move {
                    let page = client.list_import_tasks(request).await?.into_inner();
                    Ok((page.tasks, page.next_page_token))
                }
            })
            .await?;
            show_tasks(output, &tasks)?;
            Ok(ExitCode::SUCCESS)
        }
        ImportCommand::Show { task_id } => {
            let task = get(&mut client, &task_id).await?;
            show_task(output, &task)?;
            Ok(ExitCode::SUCCESS)
        }
        ImportCommand::Items(i) => items(&mut client, output, i).await,
        ImportCommand::Retry {
            task_id,
            dry_run,
            wait,
        } => {
            let task = client
                .retry_import_task(pb::RetryImportTaskRequest { task_id, dry_run })
                .await?
                .into_inner()
                .task
                .context("server returned no task")?;
            if dry_run {
                return show_dry_run(output, &task, None);
            }
            finish(&mut client, output, task, &wait).await
        }
        ImportCommand::Quota {
            target_cluster,
            topics,
            groups,
            dry_run,
        } => {
            if dry_run && topics.is_none() && groups.is_none() {
                bail!("--dry-run checks a quota to set: give --topics and/or --groups");
            }
            let quota = if topics.is_none() && groups.is_none() {
                client
                    .get_target_quota(pb::GetTargetQuotaRequest { target_cluster })
                    .await?
                    .into_inner()
                    .quota
            } else {
                // Unset flags keep their current value.
                let current = client
                    .get_target_quota(pb::GetTargetQuotaRequest {
                        target_cluster: target_cluster.clone(),
                    })
                    .await?
                    .into_inner()
                    .quota
                    .unwrap_or_default();
                client
                    .set_target_quota(pb::SetTargetQuotaRequest {
                        quota: Some(pb::TargetQuota {
                            target_cluster,
                            topic_quota: topics.unwrap_or(current.topic_quota),
                            group_quota: groups.unwrap_or(current.group_quota),
                            updated_at: None,
                        }),
                        dry_run,
                    })
                    .await?
                    .into_inner()
                    .quota
            }
            .context("server returned no quota")?;
            let limit = |n: i64| {
                if n == 0 {
                    "none".to_string()
                } else {
                    n.to_string()
                }
            };
            match output {
                OutputFormat::Json => {
                    let mut out = json!({
                        "target_cluster": quota.target_cluster,
                        "topic_quota": quota.topic_quota,
                        "group_quota": quota.group_quota,
                        "updated_at": time(&quota.updated_at),
                    });
                    if dry_run {
                        out["dry_run"] = json!(true);
                    }
                    print_json(&out)?
                }
                OutputFormat::Table => {
                    print_table(
                        &["TARGET", "TOPIC QUOTA", "GROUP QUOTA", "UPDATED"],
                        &[vec![
                            quota.target_cluster.clone(),
                            limit(quota.topic_quota),
                            limit(quota.group_quota),
                            time(&quota.updated_at),
                        ]],
                    );
                    if dry_run {
                        println!("dry run: nothing stored");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(
    client: &mut Client,
    output: OutputFormat,
    c: CreateArgs,
) -> anyhow::Result<ExitCode> {
    let (source, file_name) = match (&c.file, &c.snapshot) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_xlsx = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
            let source = if is_xlsx {
                Source::Xlsx(bytes)
            } else {
                Source::ExportJson(bytes)
            };
            (source, name)
        }
        (None, Some(id)) => (Source::SnapshotId(id.clone()), String::new()),
        (None, None) => bail!("give --file or --snapshot"),
    };
    if c.task_type == TaskType::IntoNamespace && c.namespace.is_none() {
        bail!("--type into-namespace needs --namespace");
    }
    let credentials = match (c.access_key, c.secret_key) {
        (Some(access_key), Some(secret_key)) => Some(Credentials {
            access_key,
            secret_key,
        }),
        (None, None) => None,
        _ => bail!("give both --access-key and --secret-key, or neither"),
    };
    let response = client
        .create_import_task(pb::CreateImportTaskRequest {
            r#type: match c.task_type {
                TaskType::ClusterMigration => pb::ImportTaskType::ClusterMigration,
                TaskType::IntoNamespace => pb::ImportTaskType::IntoNamespace,
            } as i32,
            namespace: c.namespace.unwrap_or_default(),
            target: Some(ClusterEndpoint {
                namesrv_addrs: c.target_namesrv,
                cluster_name: c.target_cluster,
                credentials,
            }),
            source: Some(source),
            topics: c.topics,
            groups: c.groups,
            topic_limit: c.topic_limit,
            group_limit: c.group_limit,
            create_mode: match c.mode {
                Mode::Auto => pb::CreateMode::Unspecified,
                Mode::Batch => pb::CreateMode::Batch,
                Mode::OneByOne => pb::CreateMode::OneByOne,
            } as i32,
            file_name,
            dry_run: c.dry_run,
        })
        .await?
        .into_inner();
    let task = response.task.context("server returned no task")?;
    if c.dry_run {
        return show_dry_run(output, &task, Some(&response.items));
    }
    finish(client, output, task, &c.wait).await
}

/// Shows the answer of a dry run: the task as it would be and, for a create, its items.
/// JSON: the task's object with `"dry_run": true` (and `"items"`); a table lists only the
/// items the plan decided or changed.
fn show_dry_run(
    output: OutputFormat,
    task: &pb::ImportTask,
    items: Option<&[pb::ImportItem]>,
) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Json => {
            let mut out = task_json(task);
            out["dry_run"] = json!(true);
            if let Some(items) = items {
                out["items"] = Value::Array(items.iter().map(item_json).collect());
            }
            print_json(&out)?;
        }
        OutputFormat::Table => {
            let mut shown = task.clone();
            if shown.task_id.is_empty() {
                shown.task_id = "(none: dry run)".into();
            }
            show_task(output, &shown)?;
            if let Some(items) = items {
                let decided: Vec<&pb::ImportItem> = items
                    .iter()
                    .filter(|i| i.result != ItemResult::Pending as i32 || !i.notices.is_empty())
                    .collect();
                if !decided.is_empty() {
                    println!();
                    print_items(&decided);
                }
                println!(
                    "{} of {} items would be sent to the target (created, or skipped when already there)",
                    items
                        .iter()
                        .filter(|i| i.result == ItemResult::Pending as i32)
                        .count(),
                    items.len()
                );
            }
            println!("dry run: nothing stored");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows the task, after waiting for it when asked.
async fn finish(
    client: &mut Client,
    output: OutputFormat,
    mut task: pb::ImportTask,
    wait: &WaitArgs,
) -> anyhow::Result<ExitCode> {
    if !wait.wait {
        show_task(output, &task)?;
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(wait.timeout);
    let mut last = None;
    while !is_terminal(&task) {
        if Instant::now() >= deadline {
            bail!(
                "task {} still {} after {} s; it keeps running (ferry import show {})",
                task.task_id,
                status_name(task.status),
                wait.timeout,
                task.task_id
            );
        }
        let p = task.progress.unwrap_or_default();
        let line = format!(
            "{}: {}/{} items done",
            task.task_id,
            p.total - p.pending,
            p.total
        );
        if last.as_ref() != Some(&line) {
            eprintln!("{line}");
            last = Some(line);
        }
        tokio::time::sleep(POLL_EVERY).await;
        task = get(client, &task.task_id).await?;
    }
    show_task(output, &task)?;
    Ok(if task.status == TaskStatus::Succeeded as i32 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_ALL_SUCCEEDED)
    })
}

async fn items(
    client: &mut Client,
    output: OutputFormat,
    i: ItemsArgs,
) -> anyhow::Result<ExitCode> {
    let results = i
        .results
        .iter()
        .map(|r| parse_result(r).map(|r| r as i32))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kind = match i.kind.as_deref() {
        Some("topic") => ItemKind::Topic,
        Some("group") => ItemKind::Group,
        _ => ItemKind::Unspecified,
    };
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_import_items(pb::ListImportItemsRequest {
                task_id: i.task_id.clone(),
                results: results.clone(),
                kind: kind as i32,
                name_contains: i.name.clone().unwrap_or_default(),
                page_size: 500,
                page_token,
            })
            .await?
            .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() || (i.limit > 0 && items.len() >= i.limit) {
            break;
        }
        page_token = page.next_page_token;
    }
    if i.limit > 0 {
        items.truncate(i.limit);
    }
    match output {
        OutputFormat::Json => print_json(&items.iter().map(item_json).collect::<Vec<_>>())?,
        OutputFormat::Table => print_items(&items.iter().collect::<Vec<_>>()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The items table of `ferry import items`.
fn print_items(items: &[&pb::ImportItem]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| {
            let mut why = it.reason.clone();
            for n in &it.notices {
                if !why.is_empty() {
                    why.push_str("; ");
                }
                why.push_str(n);
            }
            vec![
                it.seq.to_string(),
                kind_name(it.kind).into(),
                it.name.clone(),
                it.namespace.clone(),
                result_name(it.result).into(),
                why,
            ]
        })
        .collect();
    print_table(
        &[
            "SEQ",
            "KIND",
            "NAME",
            "NAMESPACE",
            "RESULT",
            "REASON / NOTICES",
        ],
        &rows,
    );
}

async fn get(client: &mut Client, task_id: &str) -> anyhow::Result<pb::ImportTask> {
    client
        .get_import_task(pb::GetImportTaskRequest {
            task_id: task_id.into(),
        })
        .await?
        .into_inner()
        .task
        .context("server returned no task")
}

fn is_terminal(t: &pb::ImportTask) -> bool {
    matches!(
        TaskStatus::try_from(t.status),
        Ok(TaskStatus::Succeeded | TaskStatus::PartiallyFailed | TaskStatus::Failed)
    )
}

fn parse_result(s: &str) -> anyhow::Result<ItemResult> {
    let norm = s.trim().to_ascii_uppercase().replace('-', "_");
    ItemResult::from_str_name(&format!("ITEM_RESULT_{norm}"))
        .filter(|r| *r != ItemResult::Unspecified)
        .with_context(|| {
            format!(
                "unknown result {s:?}: expected success, already-exists-skipped, quota-exceeded, invalid-name, failed or pending"
            )
        })
}

fn status_name(v: i32) -> &'static str {
    TaskStatus::try_from(v)
        .map(|s| s.as_str_name().trim_start_matches("TASK_STATUS_"))
        .unwrap_or("UNKNOWN")
}

pub(crate) fn result_name(v: i32) -> &'static str {
    ItemResult::try_from(v)
        .map(|s| s.as_str_name().trim_start_matches("ITEM_RESULT_"))
        .unwrap_or("UNKNOWN")
}

pub(crate) fn kind_name(v: i32) -> &'static str {
    ItemKind::try_from(v)
        .map(|s| s.as_str_name().trim_start_matches("ITEM_KIND_"))
        .unwrap_or("UNKNOWN")
}

fn type_name(v: i32) -> &'static str {
    match pb::ImportTaskType::try_from(v) {
        Ok(pb::ImportTaskType::ClusterMigration) => "cluster-migration",
        Ok(pb::ImportTaskType::IntoNamespace) => "into-namespace",
        _ => "unknown",
    }
}

fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map(|t| t.to_string()).unwrap_or_default()
}

fn task_json(t: &pb::ImportTask) -> Value {
    let p = t.progress.unwrap_or_default();
    json!({
        "task_id": t.task_id,
        "type": type_name(t.r#type),
        "namespace": t.namespace,
        "target_cluster": t.target_cluster,
        "target_namesrv_addrs": t.target_namesrv_addrs,
        "source": t.source,
        "topic_count": t.topic_count,
        "group_count": t.group_count,
        "topic_limit": t.topic_limit,
        "group_limit": t.group_limit,
        "status": status_name(t.status),
        "progress": {
            "total": p.total, "pending": p.pending, "success": p.success,
            "skipped": p.skipped, "quota_exceeded": p.quota_exceeded,
            "invalid_name": p.invalid_name, "failed": p.failed,
        },
        "runs": t.runs,
        "notices": t.notices,
        "error": t.error,
        "created_at": time(&t.created_at),
        "updated_at": time(&t.updated_at),
        "finished_at": time(&t.finished_at),
    })
}

fn item_json(i: &pb::ImportItem) -> Value {
    json!({
        "seq": i.seq,
        "kind": kind_name(i.kind),
        "name": i.name,
        "source_name": i.source_name,
        "namespace": i.namespace,
        "result": result_name(i.result),
        "reason": i.reason,
        "notices": i.notices,
        "read_queue_nums": i.read_queue_nums,
        "write_queue_nums": i.write_queue_nums,
        "attempts": i.attempts,
    })
}

fn show_tasks(output: OutputFormat, tasks: &[pb::ImportTask]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&tasks.iter().map(task_json).collect::<Vec<_>>()),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    let p = t.progress.unwrap_or_default();
                    vec![
                        t.task_id.clone(),
                        t.target_cluster.clone(),
                        type_name(t.r#type).into(),
                        t.namespace.clone(),
                        t.topic_count.to_string(),
                        t.group_count.to_string(),
                        time(&t.created_at),
                        status_name(t.status).into(),
                        format!("{}/{}", p.total - p.pending, p.total),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TASK",
                    "TARGET",
                    "TYPE",
                    "NAMESPACE",
                    "TOPICS",
                    "GROUPS",
                    "CREATED",
                    "STATUS",
                    "DONE",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

fn show_task(output: OutputFormat, t: &pb::ImportTask) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&task_json(t)),
        OutputFormat::Table => {
            let p = t.progress.unwrap_or_default();
            let mut rows = vec![
                vec!["task".to_string(), t.task_id.clone()],
                vec!["status".into(), status_name(t.status).into()],
                vec!["type".into(), type_name(t.r#type).into()],
                vec!["namespace".into(), t.namespace.clone()],
                vec![
                    "target".into(),
                    format!("{} ({})", t.target_cluster, t.target_namesrv_addrs),
                ],
                vec!["source".into(), t.source.clone()],
                vec![
                    "items".into(),
                    format!(
                        "{} topics, {} groups (limits {} / {})",
                        t.topic_count, t.group_count, t.topic_limit, t.group_limit
                    ),
                ],
                vec![
                    "results".into(),
                    format!(
                        "success {}, skipped {}, quota exceeded {}, invalid name {}, failed {}, pending {}",
                        p.success, p.skipped, p.quota_exceeded, p.invalid_name, p.failed, p.pending
                    ),
                ],
                vec!["runs".into(), t.runs.to_string()],
                vec!["created".into(), time(&t.created_at)],
                vec!["finished".into(), time(&t.finished_at)],
            ];
            if !t.error.is_empty() {
                rows.push(vec!["error".into(), t.error.clone()]);
            }
            for n in &t.notices {
                rows.push(vec!["notice".into(), n.clone()]);
            }
            print_table(&["FIELD", "VALUE"], &rows);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_in_cli_spelling() {
        assert_eq!(
            parse_result("already-exists-skipped").unwrap(),
            ItemResult::AlreadyExistsSkipped
        );
        assert_eq!(parse_result("FAILED").unwrap(), ItemResult::Failed);
        assert!(parse_result("unspecified").is_err());
        assert!(
            parse_result("nope")
                .unwrap_err()
                .to_string()
                .contains("quota-exceeded")
        );
    }
}
