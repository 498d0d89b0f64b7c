//! `ferry-scanner`: serves the scanner gRPC API with health and reflection; drains on SIGTERM.

use std::net::SocketAddr;

use clap::Parser;
use ferry_server::{GrpcServer, run_until, shutdown_signal};
use ferry_telemetry::TelemetryArgs;

/// Ferry scanner service.
#[derive(Debug, Parser)]
#[command(name = "ferry-scanner", version, about)]
struct Args {
    /// gRPC listen address.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:7071")]
    listen: SocketAddr,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-scanner", &args.telemetry)?;
    let mut server = GrpcServer::bind(args.listen).await?;
    server
        .add_service(ferry_scanner::Scanner.into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await
}
