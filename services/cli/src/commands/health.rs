//! `ferry health`: grpc.health.v1 status of every Ferry service behind an address, plus the
//! services its reflection lists.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_api::service_names;
use serde::Serialize;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::output::{OutputFormat, print_json, print_table};

/// Flags of `ferry health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Keep polling up to this many seconds until every service is SERVING.
    #[arg(long, env = "FERRY_HEALTH_WAIT", default_value_t = 0)]
    wait: u64,
}

/// Services every Ferry endpoint is expected to serve ("" is the server as a whole).
const SERVICES: [&str; 6] = [
    "",
    service_names::SCANNER,
    service_names::IMPORT_TASK,
    service_names::MIGRATION_TASK,
    service_names::ROUTER,
    service_names::HEALTH_CHECK,
];

#[derive(Debug, Serialize)]
struct ServiceHealth {
    service: String,
    status: String,
}

#[derive(Debug, Serialize)]
struct HealthReport {
    addr: String,
    services: Vec<ServiceHealth>,
    reflection: Vec<String>,
    all_serving: bool,
}

pub async fn run(addr: &str, output: OutputFormat, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let report = loop {
        match check(addr).await {
            Ok(report) if report.all_serving || Instant::now() >= deadline => break report,
            Err(err) if Instant::now() >= deadline => return Err(err),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    match output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Table => {
            println!("Ferry at {}", report.addr);
            let rows: Vec<Vec<String>> = report
                .services
                .iter()
                .map(|s| {
                    let name = if s.service.is_empty() {
                        "(server)"
                    } else {
                        &s.service
                    };
                    vec![name.to_string(), s.status.clone()]
                })
                .collect();
            print_table(&["SERVICE", "STATUS"], &rows);
            println!("reflection lists: {}", report.reflection.join(", "));
        }
    }
    Ok(if report.all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check(addr: &str) -> anyhow::Result<HealthReport> {
    let channel = crate::connect::endpoint(addr)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach Ferry at {addr}"))?;
    let mut health = HealthClient::new(channel.clone());
    let mut services = Vec::new();
    for service in SERVICES {
        let status = match health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
        {
            Ok(resp) => ServingStatus::try_from(resp.into_inner().status)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| "UNKNOWN".to_string()),
            Err(status) if status.code() == tonic::Code::NotFound => "NOT_FOUND".to_string(),
            Err(status) => format!("ERROR: {}", status.message()),
        };
        services.push(ServiceHealth {
            service: service.to_string(),
            status,
        });
    }
    let reflection = list_services(channel).await.unwrap_or_default();
    let all_serving = services.iter().all(|s| s.status == "SERVING");
    Ok(HealthReport {
        addr: addr.to_string(),
        services,
        reflection,
        all_serving,
    })
}

/// Services listed by server reflection (v1).
pub async fn list_services(channel: Channel) -> anyhow::Result<Vec<String>> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let mut names = Vec::new();
    if let Some(resp) = stream.next().await
        && let Some(MessageResponse::ListServicesResponse(list)) = resp?.message_response
    {
        names = list.service.into_iter().map(|s| s.name).collect();
    }
    names.sort();
    Ok(names)
}
