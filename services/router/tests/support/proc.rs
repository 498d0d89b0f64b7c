//! `ferry-router` as a child process against real etcd, with its gRPC admin, health and
//! metrics endpoints.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_api::router::v1::router_service_client::RouterServiceClient;
use ferry_api::router::v1::{
    GetRouterStatusRequest, GetRouterStatusResponse, GetTopicPresenceRequest,
    ListClientPresenceRequest, ListClientPresenceResponse,
};
use ferry_remoting::headers::GetRouteInfoRequestHeader;
use ferry_remoting::{RemotingCommand, RequestCode, TopicRouteData};
use ferry_store::{EtcdOptions, EtcdStore};
use ferry_testkit::{ServiceProcess, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const ROUTER_SERVICE: &str = ferry_api::service_names::ROUTER;

pub async fn etcd_store(endpoint: &str, prefix: &str) -> EtcdStore {
    EtcdStore::connect(
        &[endpoint.to_string()],
        EtcdOptions::default().with_prefix(prefix),
    )
    .await
    .expect("connect to test etcd")
}

/// A running `ferry-router` and the addresses it serves.
pub struct RouterProcess {
    pub process: ServiceProcess,
    pub namesrv: String,
    pub grpc: String,
    pub metrics: String,
    args: Vec<String>,
}

impl RouterProcess {
    /// Starts the router for `task` on free loopback ports, with `extra` flags.
    pub async fn start(task: &str, etcd: &str, prefix: &str, extra: &[&str]) -> RouterProcess {
        let namesrv = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = [
            "--task-id",
            task,
            "--namesrv-listen",
            &namesrv,
            "--listen",
            &grpc,
            "--metrics-addr",
            &metrics,
            "--etcd-endpoints",
            etcd,
            "--etcd-prefix",
            prefix,
            "--ready-file",
            "ready",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Self::spawn(&args).await;
        RouterProcess {
            process,
            namesrv,
            grpc,
            metrics,
            args,
        }
    }

    async fn spawn(args: &[String]) -> ServiceProcess {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = ServiceProcess::spawn(
            "ferry-router",
            env!("CARGO_BIN_EXE_ferry-router"),
            &argv,
            &[("FERRY_LOG", "info,ferry_router=debug,ferry_remoting=info")],
        )
        .expect("spawn ferry-router");
        p.wait_for_file("ready", Duration::from_secs(20))
            .await
            .expect("ferry-router ready");
        p
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again with the same flags and ports.
    pub async fn restart(&mut self) {
        self.process.kill();
        // The ports were just released; retry briefly if the kernel still holds them.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let argv: Vec<&str> = self.args.iter().map(String::as_str).collect();
            let mut p = ServiceProcess::spawn(
                "ferry-router",
                env!("CARGO_BIN_EXE_ferry-router"),
                &argv,
                &[("FERRY_LOG", "info,ferry_router=debug,ferry_remoting=info")],
            )
            .expect("spawn ferry-router");
            match p.wait_for_file("ready", Duration::from_secs(20)).await {
                Ok(_) => {
                    self.process = p;
                    return;
                }
                Err(e) if Instant::now() > deadline => panic!("router restart: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn channel(&self) -> Channel {
        let addr = format!("http://{}", self.grpc);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Channel::from_shared(addr.clone()).unwrap().connect().await {
                Ok(ch) => return ch,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn health(&self, service: &str) -> ServingStatus {
        let resp = HealthClient::new(self.channel().await)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check answers");
        ServingStatus::try_from(resp.into_inner().status).unwrap()
    }

    pub async fn wait_health(&self, service: &str, want: ServingStatus, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.health(service).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "health of {service:?} stayed {got:?}, wanted {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn status(&self) -> GetRouterStatusResponse {
        RouterServiceClient::new(self.channel().await)
            .get_router_status(GetRouterStatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    pub async fn presence(&self, topic: &str) -> ListClientPresenceResponse {
        RouterServiceClient::new(self.channel().await)
            .list_client_presence(ListClientPresenceRequest {
                topic: topic.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("presence")
            .into_inner()
    }

    pub async fn topic_presence(
        &self,
        topic: &str,
    ) -> ferry_api::router::v1::GetTopicPresenceResponse {
        RouterServiceClient::new(self.channel().await)
            .get_topic_presence(GetTopicPresenceRequest {
                topics: vec![topic.into()],
            })
            .await
            .expect("topic presence")
            .into_inner()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let mut s = tokio::net::TcpStream::connect(&self.metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// The value of one metric line (exact name with labels), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// A raw 105 (standard dialect), code and body.
    pub async fn route_raw(&self, topic: &str) -> ferry_testkit::Result<RemotingCommand> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.into(),
            ..Default::default()
        };
        ferry_testkit::rocketmq::request(
            &self.namesrv,
            RemotingCommand::request_with_header(RequestCode::GET_ROUTEINFO_BY_TOPIC, &header),
        )
        .await
    }

    /// Queue perm by broker of the answer, `None` unless SUCCESS.
    pub async fn perms(&self, topic: &str) -> Option<BTreeMap<String, i32>> {
        let resp = self.route_raw(topic).await.ok()?;
        if resp.code != 0 {
            return None;
        }
        let r = TopicRouteData::from_body(&resp.body).ok()?;
        Some(ferry_router::merge::perms_by_broker(&r))
    }

    /// Waits until the router answers `want` for `topic`.
    pub async fn wait_perms(&self, topic: &str, want: &BTreeMap<String, i32>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.perms(topic).await;
            if got.as_ref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}: router answers {got:?}, wanted {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
