//! The etcd backend: production storage shared by every Ferry service and router.
//!
//! Keys are stored under a configurable prefix (default `/ferry/`) so several installations
//! can share one etcd and `etcdctl get --prefix /ferry/` shows everything Ferry keeps; the
//! domain layer only ever sees relative keys.
//!
//! Startup connects with bounded exponential backoff (services usually start next to etcd and
//! may win the race), logging each attempt with the address. Every error names the endpoint
//! ("etcd at 127.0.0.1:2379 unreachable: ...") so an operator knows where to look.
//!
//! Watches survive disconnects: the stream re-creates the etcd watch from the last revision it
//! delivered + 1, so callers see one uninterrupted, gap-free stream; only when etcd has
//! compacted that revision away does it end with [`StoreError::Compacted`].

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, SortOrder, SortTarget, Txn as EtcdTxn, TxnOp, WatchOptions,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Result, StoreError};
use crate::kv::{
    Compare, KeyValue, KvBackend, Op, RangePage, Txn, TxnOutcome, WatchEvent, WatchEventKind,
    WatchStream, prefix_end,
};

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Prefix of every key Ferry writes; must end with `/`.
    pub prefix: String,
    /// Attempts to connect at startup before giving up (≥ 1).
    pub connect_attempts: u32,
    /// Backoff after the first failed attempt; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Largest pause between connection attempts (also between watch re-creations).
    pub max_backoff: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout of each request.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: "/ferry/".into(),
            connect_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl EtcdOptions {
    /// The same options with another key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// The etcd backend. Cheap to clone.
#[derive(Clone)]
pub struct EtcdBackend {
    client: Client,
    prefix: String,
    /// The endpoints for error messages, without scheme, comma-separated.
    endpoint: String,
    options: EtcdOptions,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdBackend {
    /// Connects to etcd, retrying with exponential backoff (bounded by `options`), and checks
    /// the connection with a real read. Fails with [`StoreError::Unavailable`] naming the
    /// endpoints when every attempt failed.
    pub async fn connect(endpoints: &[String], options: EtcdOptions) -> Result<EtcdBackend> {
        let endpoint = endpoints
            .iter()
            .map(|e| {
                e.trim_start_matches("http://")
                    .trim_start_matches("https://")
            })
            .collect::<Vec<_>>()
            .join(",");
        if endpoints.is_empty() {
            return Err(StoreError::invalid("no etcd endpoints given"));
        }
        if !options.prefix.ends_with('/') {
            return Err(StoreError::invalid(format!(
                "etcd key prefix {:?} must end with '/'",
                options.prefix
            )));
        }
        let connect_options = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let attempts = options.connect_attempts.max(1);
        let mut backoff = options.initial_backoff;
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            tracing::info!(endpoint = %endpoint, attempt, attempts, "connecting to etcd");
            let result = async {
                let client = Client::connect(endpoints, Some(connect_options.clone())).await?;
                // The client connects lazily; a real request proves etcd answers.
                client
                    .kv_client()
                    .get(
                        options.prefix.as_str(),
                        Some(GetOptions::new().with_count_only()),
                    )
                    .await?;
                Ok::<_, etcd_client::Error>(client)
            };
            match tokio::time::timeout(options.connect_timeout + options.request_timeout, result)
                .await
            {
                Ok(Ok(client)) => {
                    tracing::info!(endpoint = %endpoint, prefix = %options.prefix, "connected to etcd");
                    return Ok(EtcdBackend {
                        client,
                        prefix: options.prefix.clone(),
                        endpoint,
                        options,
                    });
                }
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "timed out".into(),
            }
            if attempt < attempts {
                tracing::warn!(
                    endpoint = %endpoint,
                    attempt,
                    error = %last_error,
                    retry_in = ?backoff,
                    "etcd unreachable, retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
        Err(StoreError::Unavailable {
            endpoint,
            reason: format!("{last_error} (gave up after {attempts} attempts)"),
        })
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The underlying client, for tests and administrative tools.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn relative(&self, key: &[u8]) -> Result<String> {
        let rel = key
            .strip_prefix(self.prefix.as_bytes())
            .ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: format!("key outside the prefix {}", self.prefix),
            })?;
        String::from_utf8(rel.to_vec()).map_err(|_| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "key is not UTF-8".into(),
        })
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.relative(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        })
    }

    fn err(&self, e: etcd_client::Error) -> StoreError {
        map_error(&self.endpoint, e)
    }

    async fn read_range(
        &self,
        from: Vec<u8>,
        end: Vec<u8>,
        options: GetOptions,
    ) -> Result<RangePage> {
        let options = options.with_range(end);
        let resp = self
            .client
            .kv_client()
            .get(from, Some(options))
            .await
            .map_err(|e| self.err(e))?;
        Ok(RangePage {
            kvs: resp
                .kvs()
                .iter()
                .map(|kv| self.convert(kv))
                .collect::<Result<_>>()?,
            more: resp.more(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }
}

/// gRPC status codes we distinguish (numbers from the gRPC spec; the store does not depend
/// on tonic, whose `Code` etcd-client exposes).
mod grpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const OUT_OF_RANGE: i32 = 11;
}

/// Maps a client error to a store error naming the endpoint.
fn map_error(endpoint: &str, e: etcd_client::Error) -> StoreError {
    match &e {
        etcd_client::Error::GRpcStatus(status) => {
            map_status(endpoint, status.code() as i32, status.message())
        }
        etcd_client::Error::LeaseKeepAliveError(m) if m.contains("not found") => {
            StoreError::not_found("lease", m.clone())
        }
        _ => StoreError::Unavailable {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        },
    }
}

/// Maps a gRPC status from etcd: compaction, missing lease and rejected requests are
/// distinct; everything else (unavailable, deadline, no leader, ...) is retryable.
fn map_status(endpoint: &str, code: i32, message: &str) -> StoreError {
    if code == grpc_code::OUT_OF_RANGE && message.contains("compacted") {
        StoreError::Compacted {
            requested: 0,
            oldest: 0,
        }
    } else if code == grpc_code::NOT_FOUND && message.contains("lease not found") {
        StoreError::not_found("lease", message.to_string())
    } else if code == grpc_code::INVALID_ARGUMENT
        || code == grpc_code::OUT_OF_RANGE
        || (code == grpc_code::FAILED_PRECONDITION && !message.contains("leader"))
    {
        StoreError::invalid(format!(
            "etcd at {endpoint} rejected the request: {message}"
        ))
    } else {
        StoreError::Unavailable {
            endpoint: endpoint.to_string(),
            reason: format!("gRPC code {code}: {message}"),
        }
    }
}

#[async_trait]
impl KvBackend for EtcdBackend {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .client
            .kv_client()
            .get(self.full(key), None)
            .await
            .map_err(|e| self.err(e))?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
    ) -> Result<RangePage> {
        let full_prefix = self.full(prefix);
        let end = prefix_end(&full_prefix);
        let from = match start_after {
            Some(after) if after.as_str() >= prefix => {
                let mut k = self.full(&after);
                k.push(0);
                k
            }
            _ => full_prefix,
        };
        self.read_range(from, end, GetOptions::new().with_limit(limit as i64))
            .await
    }

    async fn range_by_create_revision(
        &self,
        prefix: &str,
        after_revision: i64,
        limit: usize,
    ) -> Result<RangePage> {
        let full_prefix = self.full(prefix);
        let end = prefix_end(&full_prefix);
        let options = GetOptions::new()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_min_create_revision(after_revision + 1)
            .with_limit(limit as i64);
        self.read_range(full_prefix, end, options).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision(k, rev) => {
                    EtcdCompare::mod_revision(self.full(k), CompareOp::Equal, *rev)
                }
                Compare::Absent(k) => EtcdCompare::version(self.full(k), CompareOp::Equal, 0),
                Compare::ValueEquals(k, v) => {
                    EtcdCompare::value(self.full(k), CompareOp::Equal, v.clone())
                }
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<TxnOp> {
            ops.iter()
                .map(|op| match op {
                    Op::Put { key, value, lease } => TxnOp::put(
                        self.full(key),
                        value.clone(),
                        lease.map(|l| PutOptions::new().with_lease(l)),
                    ),
                    Op::Delete { key } => TxnOp::delete(self.full(key), None),
                    Op::DeletePrefix { prefix } => {
                        let full = self.full(prefix);
                        let end = prefix_end(&full);
                        TxnOp::delete(full, Some(DeleteOptions::new().with_range(end)))
                    }
                })
                .collect()
        };
        let request = EtcdTxn::new()
            .when(compares)
            .and_then(ops(&txn.success))
            .or_else(ops(&txn.failure));
        let resp = self
            .client
            .kv_client()
            .txn(request)
            .await
            .map_err(|e| self.err(e))?;
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .client
            .kv_client()
            .get(
                self.prefix.as_str(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: Option<i64>) -> Result<WatchStream> {
        let from = match from_revision {
            Some(rev) => rev,
            None => self.current_revision().await? + 1,
        };
        let (tx, rx) = mpsc::channel(256);
        // Report "compacted" and "unreachable" to the caller right away, not as the first
        // stream item. etcd confirms a watch on compacted history as created and cancels it
        // only a moment later, so check with a read at that revision first.
        self.check_not_compacted(prefix, from).await?;
        let first = self.open_watch(prefix, from).await?;
        let backend = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = tx.closed() => {}
                _ = backend.pump_watch(&prefix, from, first, &tx) => {}
            }
        });
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64> {
        let resp = self
            .client
            .lease_client()
            .grant(ttl_secs, None)
            .await
            .map_err(|e| self.err(e))?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: i64) -> Result<()> {
        // `keep_alive` sends one refresh and awaits its answer (ttl ≤ 0: lease gone).
        let (_keeper, _stream) = self
            .client
            .lease_client()
            .keep_alive(lease)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn revoke_lease(&self, lease: i64) -> Result<()> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) => match self.err(e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// An open etcd watch on one gRPC stream.
type EtcdWatch = etcd_client::WatchStream;

impl EtcdBackend {
    /// Creates a watch from revision `from` and waits for etcd to confirm it.
    async fn open_watch(&self, prefix: &str, from: i64) -> Result<EtcdWatch> {
        let full = self.full(prefix);
        let end = prefix_end(&full);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(from)
            .with_progress_notify();
        let mut stream = self
            .client
            .watch_client()
            .watch(full, Some(options))
            .await
            .map_err(|e| self.err(e))?;
        // The first response confirms creation, or says the revision is compacted.
        match stream.message().await.map_err(|e| self.err(e))? {
            Some(resp) if resp.canceled() => Err(self.cancelled(from, &resp)),
            Some(_) => Ok(stream),
            None => Err(StoreError::Unavailable {
                endpoint: self.endpoint.clone(),
                reason: "watch stream closed before it was created".into(),
            }),
        }
    }

    /// Fails with [`StoreError::Compacted`] if revision `from` is no longer readable.
    async fn check_not_compacted(&self, prefix: &str, from: i64) -> Result<()> {
        let options = GetOptions::new().with_revision(from).with_count_only();
        match self
            .client
            .kv_client()
            .get(self.full(prefix), Some(options))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.err(e) {
                StoreError::Compacted { .. } => Err(StoreError::Compacted {
                    requested: from,
                    oldest: self.oldest_watchable(prefix, from).await,
                }),
                // A future revision is fine to watch from: etcd waits for it.
                StoreError::InvalidArgument { reason } if reason.contains("future") => Ok(()),
                other => Err(other),
            },
        }
    }

    /// The compaction revision etcd reports for a watch from `from` (0 if it does not say
    /// within a few seconds).
    async fn oldest_watchable(&self, prefix: &str, from: i64) -> i64 {
        let probe = async {
            let full = self.full(prefix);
            let options = WatchOptions::new()
                .with_range(prefix_end(&full))
                .with_start_revision(from);
            let mut stream = self
                .client
                .watch_client()
                .watch(full, Some(options))
                .await
                .ok()?;
            while let Ok(Some(resp)) = stream.message().await {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(3), probe)
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    fn cancelled(&self, requested: i64, resp: &etcd_client::WatchResponse) -> StoreError {
        if resp.compact_revision() > 0 {
            StoreError::Compacted {
                requested,
                oldest: resp.compact_revision(),
            }
        } else {
            StoreError::Unavailable {
                endpoint: self.endpoint.clone(),
                reason: format!("watch cancelled: {}", resp.cancel_reason()),
            }
        }
    }

    /// Forwards events to `tx`, re-creating the watch after disconnects. Returns when the
    /// receiver is gone or history was compacted.
    async fn pump_watch(
        &self,
        prefix: &str,
        mut next: i64,
        first: EtcdWatch,
        tx: &mpsc::Sender<Result<WatchEvent>>,
    ) {
        let mut stream = Some(first);
        let mut backoff = self.options.initial_backoff;
        loop {
            let mut current = match stream.take() {
                Some(s) => s,
                None => match self.open_watch(prefix, next).await {
                    Ok(s) => {
                        tracing::info!(endpoint = %self.endpoint, prefix, from = next, "etcd watch resumed");
                        backoff = self.options.initial_backoff;
                        s
                    }
                    Err(e @ StoreError::Compacted { .. }) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %self.endpoint, error = %e, retry_in = ?backoff, "etcd watch broken, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.options.max_backoff);
                        continue;
                    }
                },
            };
            loop {
                match current.message().await {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            let err = self.cancelled(next, &resp);
                            if matches!(err, StoreError::Compacted { .. }) {
                                let _ = tx.send(Err(err)).await;
                                return;
                            }
                            tracing::warn!(endpoint = %self.endpoint, error = %err, "etcd watch cancelled, re-creating");
                            break;
                        }
                        if resp.events().is_empty() {
                            // A progress notification: everything up to the header revision
                            // has been delivered, so a resume may start after it.
                            if let Some(h) = resp.header()
                                && !resp.created()
                            {
                                next = next.max(h.revision() + 1);
                            }
                            continue;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let event = self.convert(kv).map(|kv| WatchEvent {
                                kind: match ev.event_type() {
                                    EventType::Put => WatchEventKind::Put,
                                    EventType::Delete => WatchEventKind::Delete,
                                },
                                key: kv.key,
                                value: kv.value,
                                mod_revision: kv.mod_revision,
                            });
                            if let Ok(e) = &event {
                                next = e.mod_revision + 1;
                            }
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(endpoint = %self.endpoint, "etcd watch stream ended, re-creating");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %self.endpoint, error = %e, "etcd watch stream failed, re-creating");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_errors_map_to_store_errors() {
        let compacted = map_status(
            "127.0.0.1:2379",
            grpc_code::OUT_OF_RANGE,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert!(matches!(compacted, StoreError::Compacted { .. }));
        let down = map_status("127.0.0.1:2379", 14, "connection refused");
        assert!(down.is_retryable());
        assert!(
            down.to_string()
                .contains("etcd at 127.0.0.1:2379 unreachable")
        );
        let too_many = map_status(
            "e",
            grpc_code::INVALID_ARGUMENT,
            "etcdserver: too many operations in txn request",
        );
        assert!(matches!(too_many, StoreError::InvalidArgument { .. }));
        let future = map_status(
            "e",
            grpc_code::OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
        );
        assert!(matches!(future, StoreError::InvalidArgument { .. }));
        let lease = map_status(
            "e",
            grpc_code::NOT_FOUND,
            "etcdserver: requested lease not found",
        );
        assert!(matches!(lease, StoreError::NotFound { .. }));
    }
}
