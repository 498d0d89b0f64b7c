//! Real parts for the import tests and the import bench: etcd, two RocketMQ clusters
//! (A = source, B = target, auto-creation off) and `ferry-metadata-sync` as a process.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_api::common::v1::{ClusterEndpoint, TaskStatus};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::import_task_service_client::ImportTaskServiceClient;
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use ferry_remoting::{BrokerAdmin, ClientConfig, RemotingClient};
use ferry_testkit::rocketmq::TwoClusters;
use ferry_testkit::{EtcdProcess, ServiceProcess, free_port};
use tonic::transport::Channel;

pub type Client = ImportTaskServiceClient<Channel>;

/// Key prefix the service (and in-test store handles) use.
pub const PREFIX: &str = "/ferry-import-test/";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ferry=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// etcd, clusters A and B, and a metadata-sync process.
pub struct Harness {
    pub etcd: EtcdProcess,
    pub clusters: TwoClusters,
    pub service: ServiceProcess,
    pub addr: String,
    pub client: Client,
}

impl Harness {
    pub async fn start() -> Harness {
        init_tracing();
        let (etcd, clusters) = tokio::join!(EtcdProcess::start(), TwoClusters::start());
        let etcd = etcd.expect("etcd must start");
        let clusters = clusters.expect("RocketMQ clusters must start");
        let (service, addr) = spawn_service(&etcd.endpoint());
        let client = Client::new(channel(&addr).await).max_decoding_message_size(64 << 20);
        Harness {
            etcd,
            clusters,
            service,
            addr,
            client,
        }
    }

    /// Kills the service (SIGKILL, as a crash) and starts a new one on the same etcd.
    pub async fn restart_service_after_kill(&mut self) {
        self.service.kill();
        let (service, addr) = spawn_service(&self.etcd.endpoint());
        self.service = service;
        self.addr = addr;
        self.client = Client::new(channel(&self.addr).await);
    }

    pub fn target(&self) -> ClusterEndpoint {
        ClusterEndpoint {
            namesrv_addrs: self.clusters.b.namesrv_addr(),
            cluster_name: self.clusters.b.cluster_name().into(),
            credentials: None,
        }
    }
}

pub fn spawn_service(etcd_endpoint: &str) -> (ServiceProcess, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let process = ServiceProcess::spawn(
        "metadata-sync",
        env!("CARGO_BIN_EXE_ferry-metadata-sync"),
        &[
            "--listen",
            &listen,
            "--etcd-endpoints",
            etcd_endpoint,
            "--etcd-prefix",
            PREFIX,
        ],
        &[("FERRY_LOG", "info,ferry=debug,ferry_metadata_sync=debug")],
    )
    .expect("spawn ferry-metadata-sync");
    (process, format!("http://{listen}"))
}

pub async fn channel(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Channel::from_shared(addr.to_string())
            .unwrap()
            .connect()
            .await
        {
            Ok(ch) => return ch,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub fn admin() -> BrokerAdmin {
    BrokerAdmin::new(RemotingClient::new(ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }))
}

/// Topic name → config on a broker.
pub async fn topics_on(broker_addr: &str) -> BTreeMap<String, TopicConfig> {
    admin()
        .all_topic_config(broker_addr)
        .await
        .expect("read topics (21)")
        .topic_config_table
}

/// Group name → config on a broker.
pub async fn groups_on(broker_addr: &str) -> BTreeMap<String, SubscriptionGroupConfig> {
    admin()
        .all_subscription_groups(broker_addr)
        .await
        .expect("read groups (201)")
        .subscription_group_table
}

/// An export JSON (mqadmin layout) with `topics` topics `{prefix}-T{n}` of 4 queues and
/// `groups` groups `{prefix}-G{n}`.
pub fn export_json(prefix: &str, topics: usize, groups: usize) -> Vec<u8> {
    let mut export = ferry_metadata::MetadataExport {
        export_time: 1,
        ..Default::default()
    };
    for i in 0..topics {
        let name = format!("{prefix}-T{i:05}");
        export.topic_config_table.insert(
            name.clone(),
            TopicConfig {
                topic_name: name,
                read_queue_nums: 4,
                write_queue_nums: 4,
                ..Default::default()
            },
        );
    }
    for i in 0..groups {
        let name = format!("{prefix}-G{i:05}");
        export.subscription_group_table.insert(
            name.clone(),
            SubscriptionGroupConfig {
                group_name: name,
                ..Default::default()
            },
        );
    }
    export.to_json()
}

pub fn create_request(
    target: ClusterEndpoint,
    source: pb::create_import_task_request::Source,
) -> pb::CreateImportTaskRequest {
    pb::CreateImportTaskRequest {
        r#type: pb::ImportTaskType::ClusterMigration as i32,
        namespace: String::new(),
        target: Some(target),
        source: Some(source),
        topics: vec![],
        groups: vec![],
        topic_limit: 0,
        group_limit: 0,
        create_mode: pb::CreateMode::Unspecified as i32,
        file_name: String::new(),
        dry_run: false,
    }
}

pub async fn get(client: &mut Client, id: &str) -> pb::ImportTask {
    client
        .get_import_task(pb::GetImportTaskRequest { task_id: id.into() })
        .await
        .expect("GetImportTask")
        .into_inner()
        .task
        .expect("task")
}

pub fn is_terminal(task: &pb::ImportTask) -> bool {
    matches!(
        TaskStatus::try_from(task.status),
        Ok(TaskStatus::Succeeded | TaskStatus::PartiallyFailed | TaskStatus::Failed)
    )
}

/// Polls until the task has ended.
pub async fn wait_done(client: &mut Client, id: &str, within: Duration) -> pb::ImportTask {
    let deadline = Instant::now() + within;
    loop {
        let task = get(client, id).await;
        if is_terminal(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} did not finish within {within:?}: {task:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until at least `done` items have a result.
pub async fn wait_progress(client: &mut Client, id: &str, done: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let task = get(client, id).await;
        let p = task.progress.unwrap_or_default();
        if p.total - p.pending >= done {
            return;
        }
        assert!(
            !is_terminal(&task),
            "task ended before {done} items: {task:?}"
        );
        assert!(
            Instant::now() < deadline,
            "task {id} did not reach {done} items within {within:?}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every item of a task, through the paged API.
pub async fn all_items(client: &mut Client, id: &str) -> Vec<pb::ImportItem> {
    items_where(client, id, vec![], 0, "").await
}

pub async fn items_where(
    client: &mut Client,
    id: &str,
    results: Vec<i32>,
    kind: i32,
    name: &str,
) -> Vec<pb::ImportItem> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = client
            .list_import_items(pb::ListImportItemsRequest {
                task_id: id.into(),
                results: results.clone(),
                kind,
                name_contains: name.into(),
                page_size: 500,
                page_token: token,
            })
            .await
            .expect("ListImportItems")
            .into_inner();
        out.extend(page.items);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("more than 10000 pages of items");
}
