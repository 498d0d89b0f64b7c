//! Idempotency keys end to end: a real `GrpcServer` on 127.0.0.1 serving the real
//! `MigrationTaskService` on an in-memory embedded store, records kept in that same store
//! (as the service binaries do), and a tonic client sending `idempotency-key`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_api::common::v1::{ClusterEndpoint, TargetType};
use ferry_api::metadata_sync::v1 as pb;
use ferry_api::metadata_sync::v1::migration_task_service_client::MigrationTaskServiceClient;
use ferry_metadata_sync::{MigrationTasks, StoreSlot};
use ferry_server::idempotency::{HEADER, REPLAY_HEADER};
use ferry_server::{GrpcServer, IdempotencyStore, MemoryIdempotencyStore, SecurityConfig};
use ferry_store::kv::KvBackend;
use ferry_store::{EmbeddedStore, KvRequestStore, RequestSlot, RequestStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;

const TOKEN: &str = "0123456789abcdef-idempotency";

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ferry_server::ServerError>>,
}

impl Running {
    /// Serves `MigrationTaskService` on `store`; records in `records` when given.
    async fn start(
        store: &Arc<EmbeddedStore>,
        records: Option<Arc<dyn IdempotencyStore>>,
        security: SecurityConfig,
    ) -> Self {
        let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let slot = StoreSlot::ready(store.clone());
        server
            .add_service(MigrationTasks::new(slot).into_service())
            .security(security);
        if let Some(records) = records {
            server.idempotency(records);
        }
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    async fn client(&self) -> MigrationTaskServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        MigrationTaskServiceClient::new(channel)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Records in the service's own store, behind a slot, as `ferry-metadata-sync` wires them.
fn store_records(store: &EmbeddedStore) -> Arc<dyn IdempotencyStore> {
    let requests: Arc<dyn RequestStore> = Arc::new(KvRequestStore::embedded(store));
    Arc::new(RequestSlot::ready(requests))
}

fn create(name: &str, target: &str) -> pb::CreateMigrationTaskRequest {
    pb::CreateMigrationTaskRequest {
        name: name.into(),
        source: Some(ClusterEndpoint {
            namesrv_addrs: "127.0.0.1:19876".into(),
            cluster_name: "ClusterA".into(),
            credentials: None,
        }),
        target_type: TargetType::V5 as i32,
        target: Some(ClusterEndpoint {
            namesrv_addrs: "127.0.0.1:29876".into(),
            cluster_name: target.into(),
            credentials: None,
        }),
        actor: "test".into(),
        dry_run: false,
    }
}

fn with_meta<T>(message: T, key: Option<&str>, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert(HEADER, key.parse().unwrap());
    }
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

async fn task_ids(client: &mut MigrationTaskServiceClient<Channel>) -> Vec<String> {
    let mut ids: Vec<String> = client
        .list_migration_tasks(pb::ListMigrationTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_creates_one_task() {
    let store = Arc::new(EmbeddedStore::in_memory());
    let server = Running::start(&store, Some(store_records(&store)), SecurityConfig::none()).await;
    let mut client = server.client().await;

    let first = client
        .create_migration_task(with_meta(create("t", "ClusterB"), Some("req-1"), None))
        .await
        .unwrap();
    assert!(first.metadata().get(REPLAY_HEADER).is_none());
    let first_id = first.into_inner().task.unwrap().task_id;

    // The retry gets the same answer, marked as replayed; no second task.
    let again = client
        .create_migration_task(with_meta(create("t", "ClusterB"), Some("req-1"), None))
        .await
        .unwrap();
    assert_eq!(
        again
            .metadata()
            .get(REPLAY_HEADER)
            .unwrap()
            .to_str()
            .unwrap(),
        "true"
    );
    assert_eq!(again.into_inner().task.unwrap().task_id, first_id);
    assert_eq!(task_ids(&mut client).await, std::slice::from_ref(&first_id));

    // The same key on another request is refused, and runs nothing.
    let other = client
        .create_migration_task(with_meta(create("t2", "ClusterC"), Some("req-1"), None))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert!(
        other.message().contains("different request"),
        "{}",
        other.message()
    );
    assert_eq!(task_ids(&mut client).await, std::slice::from_ref(&first_id));

    // One record, under `requests/`, naming the method but not the key.
    let records = store
        .backend()
        .range(ferry_store::requests::keys::REQUESTS, None, 0)
        .await
        .unwrap();
    assert_eq!(records.kvs.len(), 1);
    let value = String::from_utf8(records.kvs[0].value.clone()).unwrap();
    assert!(value.contains("CreateMigrationTask") && !value.contains("req-1"));

    // Without a key the same request runs again: a second task would be created, and the
    // service's own rule (one running task per target) refuses it.
    let fresh = client
        .create_migration_task(with_meta(create("n", "ClusterD"), None, None))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .task_id;
    let dup = client
        .create_migration_task(with_meta(create("n", "ClusterD"), None, None))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::FailedPrecondition);
    assert!(dup.message().contains(&fresh), "{}", dup.message());
    // ... whereas with a key, a retry of a create on a fresh target gets its task back.
    let keyed = |key: &'static str| {
        let mut client = client.clone();
        async move {
            client
                .create_migration_task(with_meta(create("k", "ClusterE"), Some(key), None))
                .await
        }
    };
    let e1 = keyed("req-2")
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .task_id;
    let e2 = keyed("req-2")
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap()
        .task_id;
    assert_eq!(e1, e2);
    assert_eq!(task_ids(&mut client).await.len(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_create_one_task() {
    let store = Arc::new(EmbeddedStore::in_memory());
    let server = Running::start(&store, Some(store_records(&store)), SecurityConfig::none()).await;
    let client = server.client().await;
    let mut calls = Vec::new();
    for _ in 0..6 {
        let mut client = client.clone();
        calls.push(tokio::spawn(async move {
            client
                .create_migration_task(with_meta(create("c", "ClusterB"), Some("burst"), None))
                .await
        }));
    }
    let mut ids = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => ids.push(response.into_inner().task.unwrap().task_id),
            // A duplicate that arrived while the first was running.
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert!(!ids.is_empty());
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer names the one task");
    assert_eq!(task_ids(&mut client.clone()).await, ids);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_calls_never_touch_the_records() {
    let store = Arc::new(EmbeddedStore::in_memory());
    let records = Arc::new(MemoryIdempotencyStore::new());
    let security = SecurityConfig::none().with_token(TOKEN).unwrap();
    let server = Running::start(&store, Some(records.clone()), security).await;
    let mut client = server.client().await;
    let refused = client
        .create_migration_task(with_meta(create("t", "ClusterB"), Some("req-1"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(records.is_empty());
    client
        .create_migration_task(with_meta(
            create("t", "ClusterB"),
            Some("req-1"),
            Some(TOKEN),
        ))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    // A replay needs the token as well.
    let refused = client
        .create_migration_task(with_meta(create("t", "ClusterB"), Some("req-1"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_records_refuses_keys() {
    let store = Arc::new(EmbeddedStore::in_memory());
    let server = Running::start(&store, None, SecurityConfig::none()).await;
    let mut client = server.client().await;
    let refused = client
        .create_migration_task(with_meta(create("t", "ClusterB"), Some("req-1"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("keeps no idempotency records"),
        "{}",
        refused.message()
    );
    assert!(task_ids(&mut client).await.is_empty());
    // Reads with a key, and writes without one, work as before.
    client
        .list_migration_tasks(with_meta(
            pb::ListMigrationTasksRequest::default(),
            Some("req-1"),
            None,
        ))
        .await
        .unwrap();
    client
        .create_migration_task(with_meta(create("t", "ClusterB"), None, None))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_answers_unavailable() {
    let store = Arc::new(EmbeddedStore::in_memory());
    let (slot, _writer) = RequestSlot::connecting("etcd at 127.0.0.1:1");
    let server = Running::start(&store, Some(Arc::new(slot)), SecurityConfig::none()).await;
    let mut client = server.client().await;
    let refused = client
        .create_migration_task(with_meta(create("t", "ClusterB"), Some("req-1"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("127.0.0.1:1"),
        "{}",
        refused.message()
    );
    assert!(
        task_ids(&mut client).await.is_empty(),
        "the call did not run"
    );
    server.stop().await;
}
