//! `ferry`: the command-line client of Ferry's gRPC API, and `ferry standalone`, which runs
//! every service in one process on the embedded store.
//!
//! Every flag also reads a `FERRY_*` environment variable. Output is a table for people or
//! `--output json` for automation; prompts appear only on a TTY when a flag is missing.

// The CLI's job is to print to stdout.
#![allow(clippy::print_stdout)]

mod commands;
mod connect;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::Instrument as _;

use crate::output::OutputFormat;

/// Move a live RocketMQ cluster to another with zero downtime.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Address of a Ferry gRPC endpoint (`ferry standalone` or a service); `https://…`
    /// connects with TLS.
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

    /// File holding the bearer token sent with every call (servers with a token require it
    /// for calls that change state). FERRY_TOKEN may hold the token itself instead; there is
    /// no flag for it, `ps` would show it.
    #[arg(
        long,
        global = true,
        env = "FERRY_TOKEN_FILE",
        value_name = "PATH",
        help_heading = "Connection"
    )]
    token_file: Option<PathBuf>,

    /// For an `https://` --addr: PEM CA certificate(s) to trust instead of the system's roots.
    #[arg(
        long,
        global = true,
        env = "FERRY_TLS_CA_FILE",
        value_name = "PATH",
        help_heading = "Connection"
    )]
    tls_ca_file: Option<PathBuf>,

    /// For an `https://` --addr: PEM client certificate, for servers that require one (mTLS).
    #[arg(
        long,
        global = true,
        env = "FERRY_TLS_CLIENT_CERT_FILE",
        value_name = "PATH",
        help_heading = "Connection"
    )]
    tls_client_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-client-cert-file.
    #[arg(
        long,
        global = true,
        env = "FERRY_TLS_CLIENT_KEY_FILE",
        value_name = "PATH",
        help_heading = "Connection"
    )]
    tls_client_key_file: Option<PathBuf>,

    /// Idempotency key sent with every call (1-128 printable ASCII, e.g. a UUID): a server
    /// runs a call that changes state once per key and answers a retry of the same command
    /// with the first answer; the same id with a different request is refused.
    #[arg(
        long,
        global = true,
        env = "FERRY_REQUEST_ID",
        value_name = "ID",
        help_heading = "Connection"
    )]
    request_id: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services (scanner, metadata-sync, router admin, health-check) in one
    /// process on one gRPC port, with the embedded store (or etcd with --etcd-endpoints).
    ///
    /// Example: ferry standalone --listen 127.0.0.1:7070 --data-dir /tmp/ferry
    Standalone(commands::standalone::StandaloneArgs),
    /// Check grpc.health.v1 of every Ferry service behind --addr and list what it serves.
    ///
    /// Exit code 0 only when every service is SERVING.
    /// Example: ferry --addr http://127.0.0.1:7070 health --wait 30
    Health(commands::health::HealthArgs),
    /// Seamless migration tasks through their five steps: create, connect, import,
    /// switch-status, step, advance/rollback topics, pause, resume, complete, audit, watch.
    ///
    /// Example: ferry migration advance mt-1a2b3c4d5e6f --match 'Order*'
    #[command(alias = "task")]
    Migration(commands::migration::MigrationArgs),
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
    /// Data-flow migration by hand (no task, no router): check per topic and group whether
    /// the source is drained, and which step of the safe order of client switches the
    /// measured state allows (some consumers, some producers, all producers, wait for zero
    /// source backlog, the remaining consumers).
    ///
    /// Exit code 0 when drained, 2 when not.
    /// Example: ferry dataflow check --namesrv 10.0.0.1:9876 --cluster DefaultCluster --topic Orders
    Dataflow(commands::dataflow::DataflowArgs),
}

impl Command {
    /// The name of the command's trace span.
    fn span_name(&self) -> &'static str {
        match self {
            Command::Standalone(_) => "ferry standalone",
            Command::Health(_) => "ferry health",
            Command::Migration(_) => "ferry migration",
            Command::Scan(_) => "ferry scan",
            Command::Export(_) => "ferry export",
            Command::Template(_) => "ferry template",
            Command::Import(_) => "ferry import",
            Command::Dataflow(_) => "ferry dataflow",
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    connect::init(connect::Settings {
        token_file: cli.token_file,
        tls_ca_file: cli.tls_ca_file,
        tls_client_cert_file: cli.tls_client_cert_file,
        tls_client_key_file: cli.tls_client_key_file,
        request_id: cli.request_id,
    });
    // A client command runs in one span whose trace every call carries (servers continue
    // it); the standalone server sets up its own telemetry.
    let (_trace, span) = match &cli.command {
        Command::Standalone(_) => (None, tracing::Span::none()),
        command => match ferry_telemetry::init_client("ferry", command.span_name()) {
            Ok((guard, span)) => (Some(guard), span),
            Err(err) => {
                eprintln!("warning: tracing is off: {err:#}");
                (None, tracing::Span::none())
            }
        },
    };
    let result = async {
        match cli.command {
            Command::Standalone(args) => commands::standalone::run(args).await,
            Command::Health(args) => commands::health::run(&cli.addr, cli.output, args).await,
            Command::Migration(args) => commands::migration::run(&cli.addr, cli.output, args).await,
            Command::Scan(args) => commands::scan::run(&cli.addr, cli.output, args).await,
            Command::Export(args) => commands::export::run(&cli.addr, cli.output, args).await,
            Command::Template(args) => commands::template::run(cli.output, args).await,
            Command::Import(args) => commands::import::run(&cli.addr, cli.output, args).await,
            Command::Dataflow(args) => commands::dataflow::run(&cli.addr, cli.output, args).await,
        }
    }
    .instrument(span)
    .await;
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
