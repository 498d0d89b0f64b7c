//! `ferry export`: the metadata export, like the well-known export script.
//!
//! It runs locally, no Ferry server needed: scan the source's masters, write
//! `rocketmq-metadata-export.json` (the layout of `mqadmin exportMetadata -c`) or `.xlsx`.
//! On a terminal, a missing flag is asked for in the script's order: the name server
//! address list, the cluster (listing those found), the output directory. With every flag
//! given (or stdin not a terminal) it never prompts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ferry_api::common::v1 as pb_common;
use ferry_api::scanner::v1 as pb;
use ferry_core::TargetType;
use ferry_metadata::{EXPORT_FILE_NAME, XLSX_FILE_NAME};
use ferry_scanner::ScanEngine;
use ferry_scanner::engine::Outcome;
use serde_json::json;
use tokio_stream::StreamExt;

use super::scan::{EXIT_PARTIAL, SourceArgs, connect, scan_locally};
use crate::output::{OutputFormat, print_json};

/// The export script's default directory.
pub const DEFAULT_EXPORT_DIR: &str = "/tmp/rocketmq/export";

/// File format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormatArg {
    /// rocketmq-metadata-export.json in the mqadmin exportMetadata layout.
    Json,
    /// rocketmq-metadata-export.xlsx in the template of --target.
    Xlsx,
}

/// Flags of `ferry export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Directory to write the file into (created if missing) [default /tmp/rocketmq/export].
    #[arg(long, env = "FERRY_EXPORT_DIR")]
    out: Option<PathBuf>,
    /// File format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Json)]
    format: ExportFormatArg,
    /// Spreadsheet template for --format xlsx: 4.x (namespace column) or 5.x (message type).
    #[arg(long, default_value = "5.x")]
    target: String,
    /// Also export %RETRY% and %DLQ% topics (mqadmin exportMetadata -s).
    #[arg(long)]
    include_retry_dlq: bool,
    /// Write the file even when some broker could not be read (exit code 2 still says so).
    #[arg(long)]
    allow_partial: bool,
    /// Export this stored snapshot from the Ferry server at --addr instead of scanning.
    #[arg(long)]
    snapshot: Option<String>,
}

/// Reads answers from stdin, prompting on stderr (stdout stays clean for --output json).
struct Prompter {
    interactive: bool,
}

impl Prompter {
    fn ask(&self, question: &str) -> anyhow::Result<String> {
        let mut err = std::io::stderr();
        write!(err, "{question}:")?;
        err.flush()?;
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the answer")?;
        if n == 0 {
            bail!("no answer to {question:?} (end of input)");
        }
        Ok(line.trim().to_string())
    }

    /// Asks until the answer is not empty (the script loops the same way); bounded.
    fn ask_required(&self, question: &str, flag: &str) -> anyhow::Result<String> {
        if !self.interactive {
            bail!("{flag} is required when standard input is not a terminal");
        }
        for _ in 0..20 {
            let answer = self.ask(question)?;
            if !answer.is_empty() {
                return Ok(answer);
            }
        }
        bail!("no answer to {question:?}")
    }
}

pub async fn run(addr: &str, output: OutputFormat, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let target: TargetType = args
        .target
        .parse()
        .map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    if let Some(id) = &args.snapshot {
        return export_snapshot(addr, output, &args, id, target).await;
    }
    let prompter = Prompter {
        interactive: std::io::stdin().is_terminal(),
    };
    let namesrv = match &args.source.namesrv {
        Some(n) => n.clone(),
        None => prompter.ask_required("Enter name server address list", "--namesrv")?,
    };
    let cluster = match &args.source.cluster {
        Some(c) => c.clone(),
        None => choose_cluster(&prompter, &args.source, &namesrv).await?,
    };
    let dir = match &args.out {
        Some(d) => d.clone(),
        None if prompter.interactive => {
            let answer = prompter.ask(&format!(
                "Enter file path to export [default {DEFAULT_EXPORT_DIR}]"
            ))?;
            PathBuf::from(if answer.is_empty() {
                DEFAULT_EXPORT_DIR.to_string()
            } else {
                answer
            })
        }
        None => PathBuf::from(DEFAULT_EXPORT_DIR),
    };
    let inv = scan_locally(&args.source, &namesrv, Some(&cluster), None).await?;
    if inv.is_partial() {
        eprintln!("PARTIAL SCAN of cluster {cluster}: these parts could not be read:");
        for m in &inv.missing {
            eprintln!("  - {m}");
        }
        if !args.allow_partial {
            bail!(
                "export refused: the file would lack what is listed above; fix the cluster or pass --allow-partial"
            );
        }
    }
    let export = inv.export_json(Some(&cluster), args.include_retry_dlq)?;
    let (name, bytes) = match args.format {
        ExportFormatArg::Json => (EXPORT_FILE_NAME, export.to_json()),
        ExportFormatArg::Xlsx => (
            XLSX_FILE_NAME,
            ferry_metadata::write_xlsx(&inv.workbook(Some(&cluster), target)?)?,
        ),
    };
    let path = write_file(&dir, name, &bytes)?;
    report(
        output,
        &path,
        &cluster,
        export.topic_config_table.len(),
        export.subscription_group_table.len(),
        &inv.missing,
    )?;
    Ok(if inv.is_partial() {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// Lists the clusters the name servers know and lets the user pick one (by number or name).
/// Without a terminal, the only cluster is taken; several are an error listing them.
async fn choose_cluster(
    prompter: &Prompter,
    source: &SourceArgs,
    namesrv: &str,
) -> anyhow::Result<String> {
    let report = ScanEngine::default()
        .check_connection(&source.spec(namesrv, None)?, None, Some(source.timeout()))
        .await?;
    if matches!(
        report.outcome,
        Outcome::NamesrvUnreachable | Outcome::ProtocolError
    ) || report.clusters.is_empty()
    {
        bail!("{}", report.message);
    }
    let names: Vec<String> = report.clusters.iter().map(|c| c.name.clone()).collect();
    if !prompter.interactive {
        return match names.as_slice() {
            [only] => Ok(only.clone()),
            _ => bail!(
                "--cluster is required when standard input is not a terminal; the name servers know: {}",
                names.join(", ")
            ),
        };
    }
    eprintln!("Clusters found:");
    for (i, c) in report.clusters.iter().enumerate() {
        let brokers: Vec<&str> = c.brokers.iter().map(|b| b.name.as_str()).collect();
        eprintln!("  {}) {} (brokers: {})", i + 1, c.name, brokers.join(", "));
    }
    for _ in 0..20 {
        let answer = prompter.ask("Choose a cluster to export")?;
        if let Ok(n) = answer.parse::<usize>()
            && (1..=names.len()).contains(&n)
        {
            return Ok(names[n - 1].clone());
        }
        if names.contains(&answer) {
            return Ok(answer);
        }
        eprintln!(
            "unknown cluster {answer:?}: enter a number from 1 to {} or a name",
            names.len()
        );
    }
    bail!("no valid cluster chosen")
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn report(
    output: OutputFormat,
    path: &Path,
    cluster: &str,
    topics: usize,
    groups: usize,
    missing: &[String],
) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&json!({
            "file": path.display().to_string(),
            "cluster": cluster,
            "topics": topics,
            "groups": groups,
            "partial": !missing.is_empty(),
            "missing": missing,
        })),
        OutputFormat::Table => {
            println!(
                "exported {topics} topics and {groups} groups of cluster {cluster} to {}",
                path.display()
            );
            Ok(())
        }
    }
}

async fn export_snapshot(
    addr: &str,
    output: OutputFormat,
    args: &ExportArgs,
    id: &str,
    target: TargetType,
) -> anyhow::Result<ExitCode> {
    let mut client = connect(addr).await?;
    let (format, template) = match args.format {
        ExportFormatArg::Json => (pb::ExportFormat::Json, pb_common::TargetType::Unspecified),
        ExportFormatArg::Xlsx => (
            pb::ExportFormat::Xlsx,
            match target {
                TargetType::V4 => pb_common::TargetType::V4,
                TargetType::V5 => pb_common::TargetType::V5,
            },
        ),
    };
    let snapshot = client
        .get_snapshot(pb::GetSnapshotRequest {
            snapshot_id: id.to_string(),
        })
        .await?
        .into_inner()
        .snapshot
        .context("the server answered without a snapshot")?;
    let mut stream = client
        .export_metadata(pb::ExportMetadataRequest {
            snapshot_id: id.to_string(),
            cluster_name: args.source.cluster.clone().unwrap_or_default(),
            format: format as i32,
            template: template as i32,
            include_retry_dlq: args.include_retry_dlq,
        })
        .await?
        .into_inner();
    let mut name = String::new();
    let mut bytes = Vec::new();
    // Bounded by the server's file size; each chunk is 64 KiB.
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if name.is_empty() {
            name = chunk.file_name;
        }
        bytes.extend(chunk.chunk);
    }
    if name.is_empty() {
        bail!("the server sent no file");
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_EXPORT_DIR));
    let path = write_file(&dir, &name, &bytes)?;
    let cluster = args
        .source
        .cluster
        .clone()
        .unwrap_or_else(|| "(all)".into());
    // Count what the file holds (the snapshot may span several clusters).
    let (topics, groups) = match args.format {
        ExportFormatArg::Json => {
            let parsed = ferry_metadata::parse_export(&name, &bytes)?;
            (
                parsed.export.topic_config_table.len(),
                parsed.export.subscription_group_table.len(),
            )
        }
        ExportFormatArg::Xlsx => {
            let book = ferry_metadata::read_xlsx(&name, &bytes)?;
            (book.topics.len(), book.groups.len())
        }
    };
    report(output, &path, &cluster, topics, groups, &snapshot.missing)?;
    Ok(if snapshot.partial {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}
