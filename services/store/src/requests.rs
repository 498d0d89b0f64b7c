//! Records of completed requests, kept so a client can send a mutating call again with the
//! same idempotency key and get the first answer back instead of a second effect (see
//! `ferry_server::idempotency` for the protocol; this module only keeps the records).
//!
//! # Key layout (relative to the backend prefix)
//!
//! ```text
//! requests/<id>        RequestRecord: method, request hash, the response to replay, expiry
//! ```
//!
//! `<id>` is chosen by the caller (the server uses the hex SHA-256 of method and key, so the
//! client's key itself is never stored). A record is **live** until its `expires_at_ms`;
//! readers treat an expired record as absent whatever is still stored, so expiry is exact on
//! every backend. Removing the dead records is the backend's business ([`Expiry`]):
//!
//! - on etcd the record is bound to a lease that outlives it by at most an hour
//!   ([`Expiry::Lease`]); one lease is shared by all records written in that hour, so a busy
//!   server does not grant a lease per call;
//! - the embedded backend drops leased keys when it is reopened (its leases die with the
//!   process), which would forget every record on a restart of `ferry standalone`, exactly
//!   when a client is most likely to retry. There records carry no lease and a sweep deletes
//!   expired ones, at most every [`SWEEP_EVERY`] ([`Expiry::Sweep`]).
//!
//! Values are JSON like every other record (`etcdctl get` shows them); the response body is
//! base64. One record must fit one etcd request (1.5 MiB by default), so callers keep
//! responses to about 1 MiB ([`MAX_RECORD_BYTES`] is checked here).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embedded::EmbeddedBackend;
use crate::error::{Result, StoreError};
use crate::etcd::EtcdBackend;
use crate::kv::{Compare, KvBackend, Op, Txn, chunked_by};
use crate::migration::KvMigrationStore;
use crate::model::{decode, encode, now_ms};
use crate::slot::{Slot, SlotWriter};

/// Key names of request records.
pub mod keys {
    /// Prefix of every request record.
    pub const REQUESTS: &str = "requests/";

    /// The record with this id.
    pub fn record(id: &str) -> String {
        format!("{REQUESTS}{id}")
    }
}

/// Largest encoded record accepted (below etcd's default 1.5 MiB request limit).
pub const MAX_RECORD_BYTES: usize = 1_400 * 1024;

/// Least time between two sweeps of expired records ([`Expiry::Sweep`]).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// How long a shared lease outlives the records written with it, at most ([`Expiry::Lease`]).
const LEASE_SLACK_MS: i64 = 60 * 60 * 1000;

/// Page size of a sweep, and records deleted per transaction.
const SWEEP_PAGE: usize = 500;
const SWEEP_TXN: usize = 50;

/// Attempts of a put racing other writers of the same id.
const PUT_ATTEMPTS: usize = 3;

/// A request that completed, as kept for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The gRPC method (`/package.Service/Method`).
    pub method: String,
    /// Hex SHA-256 of the request (the server hashes method and request body): a second
    /// request with the same id but another hash is a different request.
    pub request_sha256: String,
    /// The response to replay; `None` when it was too large to keep (the request completed,
    /// but its answer cannot be given again).
    #[serde(default)]
    pub response: Option<RecordedResponse>,
    /// Size of the response (body, headers and trailers) in bytes, kept or not.
    #[serde(default)]
    pub response_bytes: u64,
    /// Unix milliseconds when the record was written (set by the store).
    #[serde(default)]
    pub created_at_ms: i64,
    /// Unix milliseconds after which the record is absent (set by the store from the TTL).
    #[serde(default)]
    pub expires_at_ms: i64,
}

impl RequestRecord {
    /// True when the record no longer counts at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

/// A response as sent: HTTP/2 headers, the body bytes (gRPC-framed messages) and trailers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// Response headers, in order (`[name, value]`; a name may repeat).
    pub headers: Vec<(String, String)>,
    /// The response body, byte for byte.
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// Trailers, in order (`grpc-status` among them unless the response was trailers-only).
    pub trailers: Vec<(String, String)>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Request records, by id.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// The live record with this id, if any (expired records are absent).
    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>>;

    /// Stores `record` under `id` for `ttl` unless a live record is there; returns that
    /// record when there is one (and changes nothing), else `None`. Sets the record's
    /// `created_at_ms` and `expires_at_ms`. An expired record is replaced.
    async fn put_request_if_absent(
        &self,
        id: &str,
        record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>>;
}

/// The request store as handlers see it while a service reaches etcd in the background.
pub type RequestSlot = Slot<Arc<dyn RequestStore>>;
/// Write side of a [`RequestSlot`], held by the store connector.
pub type RequestSlotWriter = SlotWriter<Arc<dyn RequestStore>>;

/// How dead records leave the store (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Bound to a shared lease (etcd).
    Lease,
    /// No lease; expired records are deleted by a periodic sweep (embedded backend).
    Sweep,
}

/// The [`RequestStore`] over any backend.
pub struct KvRequestStore<B: KvBackend> {
    kv: Arc<B>,
    expiry: Expiry,
    /// The shared lease: (id, unix ms when it ends).
    lease: tokio::sync::Mutex<Option<(i64, i64)>>,
    /// Unix ms of the last sweep started (0: none yet).
    last_sweep_ms: Arc<AtomicI64>,
}

impl<B: KvBackend> std::fmt::Debug for KvRequestStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvRequestStore")
            .field("backend", &std::any::type_name::<B>())
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl<B: KvBackend> KvRequestStore<B> {
    /// Records on `kv`, removed as `expiry` says.
    pub fn new(kv: Arc<B>, expiry: Expiry) -> Self {
        Self {
            kv,
            expiry,
            lease: tokio::sync::Mutex::new(None),
            last_sweep_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// How this store removes dead records.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// Deletes every expired record now; returns how many were deleted. Records rewritten
    /// meanwhile are left alone.
    pub async fn sweep_expired(&self) -> Result<usize> {
        sweep(self.kv.as_ref(), now_ms()).await
    }

    /// A lease that ends at or after `expires_at_ms`, at most [`LEASE_SLACK_MS`] after it.
    async fn lease_until(&self, expires_at_ms: i64, now: i64) -> Result<i64> {
        let mut cached = self.lease.lock().await;
        if let Some((id, ends)) = *cached
            && ends >= expires_at_ms
            && ends <= expires_at_ms + LEASE_SLACK_MS
        {
            return Ok(id);
        }
        let ttl_ms = (expires_at_ms - now).max(0) + LEASE_SLACK_MS;
        let ttl_secs = ((ttl_ms + 999) / 1000).max(1);
        let id = self.kv.grant_lease(ttl_secs).await?;
        *cached = Some((id, now + ttl_secs * 1000));
        Ok(id)
    }

    async fn forget_lease(&self, lease: i64) {
        let mut cached = self.lease.lock().await;
        if matches!(*cached, Some((id, _)) if id == lease) {
            *cached = None;
        }
    }

    /// Starts a sweep in the background when the last one is old enough.
    fn maybe_sweep(&self, now: i64) {
        if self.expiry != Expiry::Sweep {
            return;
        }
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if last != 0 && now - last < SWEEP_EVERY.as_millis() as i64 {
            return;
        }
        if self
            .last_sweep_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another call started it
        }
        let kv = self.kv.clone();
        tokio::spawn(async move {
            match sweep(kv.as_ref(), now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired request records swept"),
                Err(e) => tracing::warn!(error = %e, "could not sweep expired request records"),
            }
        });
    }
}

impl KvRequestStore<EtcdBackend> {
    /// Records in the etcd of `store`, bound to shared leases.
    pub fn etcd(store: &KvMigrationStore<EtcdBackend>) -> Self {
        Self::new(store.backend().clone(), Expiry::Lease)
    }
}

impl KvRequestStore<EmbeddedBackend> {
    /// Records in the embedded store of `store`, without leases (they would not survive a
    /// reopen), swept when expired.
    pub fn embedded(store: &KvMigrationStore<EmbeddedBackend>) -> Self {
        Self::new(store.backend().clone(), Expiry::Sweep)
    }
}

/// Checks an id: one key segment.
fn valid_id(id: &str) -> Result<&str> {
    if id.is_empty() || id.len() > 255 || id.contains('/') || id.chars().any(char::is_control) {
        return Err(StoreError::InvalidArgument {
            reason: format!(
                "request id {id:?} must be 1 to 255 characters without '/' or control characters"
            ),
        });
    }
    Ok(id)
}

fn live(key: &str, bytes: &[u8], now: i64) -> Result<Option<RequestRecord>> {
    let record: RequestRecord = decode(key, bytes)?;
    Ok((!record.is_expired(now)).then_some(record))
}

async fn sweep<B: KvBackend + ?Sized>(kv: &B, now: i64) -> Result<usize> {
    let mut deleted = 0;
    let mut after = None;
    loop {
        let page = kv.range(keys::REQUESTS, after.clone(), SWEEP_PAGE).await?;
        after = page.kvs.last().map(|kv| kv.key.clone());
        let expired: Vec<(String, i64)> = page
            .kvs
            .iter()
            .filter(|e| {
                // Unreadable records are left for a person to look at.
                decode::<RequestRecord>(&e.key, &e.value).is_ok_and(|r| r.is_expired(now))
            })
            .map(|e| (e.key.clone(), e.mod_revision))
            .collect();
        for batch in chunked_by(expired, SWEEP_TXN) {
            let n = batch.len();
            let txn = Txn {
                compares: batch
                    .iter()
                    .map(|(k, rev)| Compare::ModRevision(k.clone(), *rev))
                    .collect(),
                success: batch.into_iter().map(|(k, _)| Op::delete(k)).collect(),
                failure: Vec::new(),
            };
            // A record rewritten meanwhile fails the batch; the next sweep gets the rest.
            if kv.txn(txn).await?.succeeded {
                deleted += n;
            }
        }
        if !page.more {
            return Ok(deleted);
        }
    }
}

#[async_trait]
impl<B: KvBackend> RequestStore for KvRequestStore<B> {
    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>> {
        let key = keys::record(valid_id(id)?);
        match self.kv.get(&key).await? {
            Some(kv) => live(&key, &kv.value, now_ms()),
            None => Ok(None),
        }
    }

    async fn put_request_if_absent(
        &self,
        id: &str,
        mut record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>> {
        let key = keys::record(valid_id(id)?);
        let now = now_ms();
        record.created_at_ms = now;
        record.expires_at_ms = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        let value = encode(&record);
        if value.len() > MAX_RECORD_BYTES {
            return Err(StoreError::InvalidArgument {
                reason: format!(
                    "request record {id} is {} bytes, more than the {MAX_RECORD_BYTES} one record may hold; keep the response out of it",
                    value.len()
                ),
            });
        }
        for _ in 0..PUT_ATTEMPTS {
            let compare = match self.kv.get(&key).await? {
                None => Compare::Absent(key.clone()),
                Some(existing) => match live(&key, &existing.value, now_ms())? {
                    Some(live) => return Ok(Some(live)),
                    None => Compare::ModRevision(key.clone(), existing.mod_revision),
                },
            };
            let lease = match self.expiry {
                Expiry::Lease => Some(self.lease_until(record.expires_at_ms, now).await?),
                Expiry::Sweep => None,
            };
            let txn = Txn {
                compares: vec![compare],
                success: vec![Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease,
                }],
                failure: Vec::new(),
            };
            match self.kv.txn(txn).await {
                Ok(outcome) if outcome.succeeded => {
                    self.maybe_sweep(now);
                    return Ok(None);
                }
                // Someone wrote the id meanwhile: look again.
                Ok(_) => {}
                // The shared lease ended early (revoked, store restored): take a new one.
                Err(StoreError::NotFound { kind: "lease", .. }) => {
                    if let Some(lease) = lease {
                        self.forget_lease(lease).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict {
            what: format!("request record {id}"),
            key,
            expected: 0,
            actual: 0,
        })
    }
}

#[async_trait]
impl<T: RequestStore + ?Sized> RequestStore for Arc<T> {
    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>> {
        (**self).get_request(id).await
    }

    async fn put_request_if_absent(
        &self,
        id: &str,
        record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>> {
        (**self).put_request_if_absent(id, record, ttl).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hash: &str) -> RequestRecord {
        RequestRecord {
            method: "/x.v1.S/Create".into(),
            request_sha256: hash.into(),
            response: Some(RecordedResponse {
                headers: vec![("content-type".into(), "application/grpc".into())],
                body: vec![0, 0, 0, 0, 2, 8, 1],
                trailers: vec![("grpc-status".into(), "0".into())],
            }),
            response_bytes: 7,
            created_at_ms: 0,
            expires_at_ms: 0,
        }
    }

    #[test]
    fn values_are_json_with_base64_body() {
        let bytes = encode(&record("ab"));
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\"schema_version\":1"), "{text}");
        assert!(text.contains("\"body\":\"AAAAAAIIAQ==\""), "{text}");
        let back: RequestRecord = decode("requests/x", &bytes).unwrap();
        assert_eq!(back, record("ab"));
    }

    #[tokio::test]
    async fn ids_are_one_segment() {
        let store = KvRequestStore::embedded(&crate::EmbeddedStore::in_memory());
        for bad in ["", "a/b", "a\nb"] {
            assert!(matches!(
                store.get_request(bad).await,
                Err(StoreError::InvalidArgument { .. })
            ));
        }
        let long = "x".repeat(256);
        assert!(store.get_request(&long).await.is_err());
    }

    #[tokio::test]
    async fn oversized_records_are_refused() {
        let store = KvRequestStore::embedded(&crate::EmbeddedStore::in_memory());
        let mut big = record("ab");
        big.response.as_mut().unwrap().body = vec![7; MAX_RECORD_BYTES];
        let err = store
            .put_request_if_absent("id", big, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument { .. }), "{err}");
        assert_eq!(store.get_request("id").await.unwrap(), None);
    }
}
