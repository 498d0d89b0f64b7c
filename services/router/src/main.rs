//! `ferry-router`: serves the router gRPC API with health and reflection; drains on SIGTERM.

use std::net::SocketAddr;

use clap::Parser;
use ferry_server::{GrpcServer, run_until, shutdown_signal};
use ferry_telemetry::TelemetryArgs;

/// Ferry router service.
#[derive(Debug, Parser)]
#[command(name = "ferry-router", version, about)]
struct Args {
    /// gRPC listen address.
    #[arg(long, env = "FERRY_LISTEN", default_value = "0.0.0.0:7073")]
    listen: SocketAddr,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = ferry_telemetry::init("ferry-router", &args.telemetry)?;
    let mut server = GrpcServer::bind(args.listen).await?;
    server
        .add_service(ferry_router::RouterAdmin.into_service())
        .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET);
    run_until(server, args.telemetry.metrics_addr, shutdown_signal()).await
}
