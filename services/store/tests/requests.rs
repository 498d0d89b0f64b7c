//! Request records (`requests/<id>`, idempotency keys) on both backends: the embedded store
//! in a temp dir (records without lease, swept) and a real etcd (records on a shared lease).
//! The same cases run against each.

use std::time::Duration;

use ferry_store::kv::KvBackend;
use ferry_store::requests::keys;
use ferry_store::{
    EmbeddedStore, EtcdOptions, EtcdStore, Expiry, KvRequestStore, RecordedResponse, RequestRecord,
    RequestStore, StoreError,
};
use ferry_testkit::EtcdProcess;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn record(hash: &str, body: &[u8]) -> RequestRecord {
    RequestRecord {
        method: "/ferry.metadata_sync.v1.MigrationTaskService/CreateMigrationTask".into(),
        request_sha256: hash.into(),
        response: Some(RecordedResponse {
            headers: vec![("content-type".into(), "application/grpc".into())],
            body: body.to_vec(),
            trailers: vec![
                ("grpc-status".into(), "0".into()),
                ("x-custom".into(), "a b".into()),
            ],
        }),
        response_bytes: body.len() as u64,
        created_at_ms: 0,
        expires_at_ms: 0,
    }
}

/// Absent, put, get back byte for byte, a second put keeps the first.
async fn put_once<B: KvBackend>(store: &KvRequestStore<B>) {
    assert_eq!(store.get_request("once").await.unwrap(), None);
    let body = [0u8, 0, 0, 0, 3, 0xff, 0x00, 0x7f];
    let before = ferry_store::now_ms();
    assert_eq!(
        store
            .put_request_if_absent("once", record("h1", &body), DAY)
            .await
            .unwrap(),
        None
    );
    let got = store.get_request("once").await.unwrap().expect("record");
    assert_eq!(got.response.as_ref().unwrap().body, body);
    assert_eq!(got.request_sha256, "h1");
    assert!(got.created_at_ms >= before);
    assert_eq!(
        got.expires_at_ms - got.created_at_ms,
        DAY.as_millis() as i64
    );
    // A second writer gets the first record back and changes nothing.
    let existing = store
        .put_request_if_absent("once", record("h2", b"other"), DAY)
        .await
        .unwrap()
        .expect("the first record");
    assert_eq!(existing, got);
    assert_eq!(store.get_request("once").await.unwrap().unwrap(), got);
    // A completed request without its response round-trips too.
    let mut bare = record("h3", b"");
    bare.response = None;
    bare.response_bytes = 5_000_000;
    store
        .put_request_if_absent("bare", bare, DAY)
        .await
        .unwrap();
    let got = store.get_request("bare").await.unwrap().unwrap();
    assert_eq!((got.response, got.response_bytes), (None, 5_000_000));
}

/// Expired records are absent at once and replaced by the next put.
async fn expiry<B: KvBackend>(store: &KvRequestStore<B>) {
    store
        .put_request_if_absent("short", record("old", b"1"), Duration::from_millis(100))
        .await
        .unwrap();
    assert!(store.get_request("short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.get_request("short").await.unwrap(), None);
    assert_eq!(
        store
            .put_request_if_absent("short", record("new", b"2"), DAY)
            .await
            .unwrap(),
        None,
        "an expired record is replaced"
    );
    assert_eq!(
        store
            .get_request("short")
            .await
            .unwrap()
            .unwrap()
            .request_sha256,
        "new"
    );
}

/// Concurrent writers of one id: exactly one wins, the others get its record.
async fn one_writer_wins<B: KvBackend>(store: &std::sync::Arc<KvRequestStore<B>>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_request_if_absent("race", record(&format!("h{i}"), b"x"), DAY)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    let mut seen = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            None => winners += 1,
            Some(r) => seen.push(r.request_sha256),
        }
    }
    assert_eq!(winners, 1);
    let stored = store.get_request("race").await.unwrap().unwrap();
    assert!(seen.iter().all(|h| *h == stored.request_sha256), "{seen:?}");
}

/// The stored value is JSON with a schema version and never the id's source.
async fn value_is_readable<B: KvBackend>(kv: &B) {
    let stored = kv.get(&keys::record("once")).await.unwrap().unwrap();
    let text = String::from_utf8(stored.value).unwrap();
    assert!(text.contains("\"schema_version\":1"), "{text}");
    assert!(text.contains("CreateMigrationTask"), "{text}");
    assert!(text.contains("\"body\":\"AAAAAAP/AH8=\""), "{text}");
}

async fn bad_ids<B: KvBackend>(store: &KvRequestStore<B>) {
    for bad in ["", "a/b", "tab\there"] {
        assert!(matches!(
            store.get_request(bad).await,
            Err(StoreError::InvalidArgument { .. })
        ));
        assert!(matches!(
            store
                .put_request_if_absent(bad, record("h", b""), DAY)
                .await,
            Err(StoreError::InvalidArgument { .. })
        ));
    }
}

async fn all_cases<B: KvBackend>(store: KvRequestStore<B>, kv: &B) {
    put_once(&store).await;
    value_is_readable(kv).await;
    expiry(&store).await;
    bad_ids(&store).await;
    one_writer_wins(&std::sync::Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_records_on_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let requests = KvRequestStore::embedded(&store);
    assert_eq!(requests.expiry(), Expiry::Sweep);
    all_cases(requests, store.backend().as_ref()).await;
    // No lease: records survive a restart of `ferry standalone`, when clients retry.
    let lease = store
        .backend()
        .get(&keys::record("once"))
        .await
        .unwrap()
        .unwrap()
        .lease;
    assert_eq!(lease, 0);
    drop(store);
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let requests = KvRequestStore::embedded(&store);
    assert_eq!(
        requests
            .get_request("once")
            .await
            .unwrap()
            .unwrap()
            .request_sha256,
        "h1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sweep_deletes_only_expired_records() {
    let store = EmbeddedStore::in_memory();
    let requests = KvRequestStore::embedded(&store);
    // The first put starts a background sweep; nothing has expired yet then.
    requests
        .put_request_if_absent("kept", record("h", b"x"), DAY)
        .await
        .unwrap();
    for i in 0..120 {
        requests
            .put_request_if_absent(
                &format!("gone-{i:03}"),
                record("h", b"x"),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let deleted = requests.sweep_expired().await.unwrap();
    assert_eq!(deleted, 120);
    let left = store
        .backend()
        .range(keys::REQUESTS, None, 0)
        .await
        .unwrap();
    assert_eq!(
        left.kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["requests/kept"]
    );
    assert_eq!(requests.sweep_expired().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_records_on_etcd() {
    let etcd = EtcdProcess::start().await.expect("etcd must start");
    let store = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default())
        .await
        .expect("connect to the test etcd");
    let requests = KvRequestStore::etcd(&store);
    assert_eq!(requests.expiry(), Expiry::Lease);
    all_cases(requests, store.backend().as_ref()).await;

    // Records sit on one shared lease that outlives them (by at most an hour).
    let requests = KvRequestStore::etcd(&store);
    for id in ["l1", "l2"] {
        requests
            .put_request_if_absent(id, record("h", b"x"), DAY)
            .await
            .unwrap();
    }
    let lease_of = |id: &'static str| {
        let kv = store.backend().clone();
        async move { kv.get(&keys::record(id)).await.unwrap().unwrap().lease }
    };
    let (l1, l2) = (lease_of("l1").await, lease_of("l2").await);
    assert_ne!(l1, 0);
    assert_eq!(l1, l2, "records written together share a lease");
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let ttl = client.lease_time_to_live(l1, None).await.unwrap().ttl();
    let day = DAY.as_secs() as i64;
    assert!(ttl >= day && ttl <= day + 3600 + 5, "lease TTL {ttl}");

    // A lease revoked underneath (store restored, operator) is replaced, not an error.
    store.backend().revoke_lease(l1).await.unwrap();
    assert_eq!(requests.get_request("l1").await.unwrap(), None);
    requests
        .put_request_if_absent("l3", record("h", b"x"), DAY)
        .await
        .unwrap();
    let l3 = lease_of("l3").await;
    assert!(l3 != 0 && l3 != l1);
}
