//! `ferry`: the command-line client of Ferry's gRPC API, and `ferry standalone`, which runs
//! every service in one process on the embedded store.
//!
//! Every flag also reads a `FERRY_*` environment variable. Output is a table for people or
//! `--output json` for automation; prompts appear only on a TTY when a flag is missing.

// The CLI's job is to print to stdout.
#![allow(clippy::print_stdout)]

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::OutputFormat;

/// Move a live RocketMQ cluster to another with zero downtime.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Address of a Ferry gRPC endpoint (`ferry standalone` or a service).
    #[arg(
        long,
        global = true,
        env = "FERRY_ADDR",
        default_value = "http://127.0.0.1:7070"
    )]
    addr: String,

    /// Output format.
    #[arg(long, global = true, env = "FERRY_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services (scanner, metadata-sync, router admin, health-check) in one
    /// process on one gRPC port, with the embedded store.
    ///
    /// Example: ferry standalone --listen 127.0.0.1:7070 --data-dir /tmp/ferry
    Standalone(commands::standalone::StandaloneArgs),
    /// Check grpc.health.v1 of every Ferry service behind --addr and list what it serves.
    ///
    /// Exit code 0 only when every service is SERVING.
    /// Example: ferry --addr http://127.0.0.1:7070 health --wait 30
    Health(commands::health::HealthArgs),
    /// Seamless-migration tasks: create, inspect, move topics between stages, pause,
    /// resume, roll back, complete, audit.
    ///
    /// Example: ferry task advance mt-1a2b3c4d5e6f Orders --force
    Task(commands::task::TaskArgs),
    /// Inventory a source cluster: clusters, brokers (version), topics (queues, perm, order,
    /// message type; system, retry and DLQ topics kept apart), groups, ACL users.
    ///
    /// Runs on the Ferry server at --addr and stores a snapshot (list, diff, export it
    /// later); --local scans from this process and stores nothing. Exit code 2 when some
    /// broker could not be read (the missing parts are listed).
    /// Example: ferry scan --namesrv '10.0.0.1:9876;10.0.0.2:9876' --cluster DefaultCluster
    Scan(commands::scan::ScanArgs),
    /// Export a cluster's metadata like the well-known export script:
    /// rocketmq-metadata-export.json in the `mqadmin exportMetadata` layout, or .xlsx.
    ///
    /// Runs locally, no Ferry server needed (or --snapshot ID exports a stored snapshot
    /// from --addr). On a terminal it asks for what is missing, in order: name server
    /// address list, cluster (listing those found), output directory (default
    /// /tmp/rocketmq/export). With the flags (or without a terminal) it never prompts.
    /// Refuses to write a partial export unless --allow-partial.
    /// Example: ferry export --namesrv 10.0.0.1:9876 --cluster DefaultCluster --out ./export
    Export(commands::export::ExportArgs),
    /// Write the empty spreadsheet template for a 4.x or 5.x target.
    ///
    /// Example: ferry template --target 4.x --out ./ferry-template-4.x.xlsx
    Template(commands::template::TemplateArgs),
    /// Import tasks: create topics and groups on a target cluster from an export JSON, an
    /// .xlsx or a scanner snapshot, with one result per item; list, show, items, retry,
    /// and the target's quota.
    ///
    /// Example: ferry import create --file rocketmq-metadata-export.json
    ///   --target-cluster ClusterB --target-namesrv 10.0.1.1:9876 --wait
    Import(commands::import::ImportArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => commands::standalone::run(args).await,
        Command::Health(args) => commands::health::run(&cli.addr, cli.output, args).await,
        Command::Task(args) => commands::task::run(&cli.addr, cli.output, args).await,
        Command::Scan(args) => commands::scan::run(&cli.addr, cli.output, args).await,
        Command::Export(args) => commands::export::run(&cli.addr, cli.output, args).await,
        Command::Template(args) => commands::template::run(cli.output, args).await,
        Command::Import(args) => commands::import::run(&cli.addr, cli.output, args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // A gRPC refusal reads best as the server's message plus its code.
            match err.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {} ({:?})", status.message(), status.code()),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
