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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => commands::standalone::run(args).await,
        Command::Health(args) => commands::health::run(&cli.addr, cli.output, args).await,
        Command::Task(args) => commands::task::run(&cli.addr, cli.output, args).await,
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
