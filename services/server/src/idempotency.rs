//! Idempotency keys: a mutating call sent again with the same key gets the first answer back
//! instead of running twice. One tower layer in front of every service of a
//! [`GrpcServer`](crate::GrpcServer), inside the [`AuthLayer`](crate::AuthLayer), so calls
//! refused for want of a token never touch the records.
//!
//! # Protocol
//!
//! The client sends the metadata `idempotency-key: <key>` ([`HEADER`]); a key is 1 to
//! [`MAX_KEY_LEN`] printable ASCII characters (`0x20..=0x7e`), opaque to the server. Only
//! calls [`classify`](crate::auth::classify) calls **mutating** are concerned; on read-only
//! calls the key is ignored, so a client may send it on every call.
//!
//! A call is identified by its method and key: the record id is the hex SHA-256 of
//! `method 0x00 key`, so the key itself is never stored, and logs show only the first 12
//! characters of that id (`key_hash`). The request is identified by the SHA-256 of
//! `method 0x00 body`, the body as sent (gRPC frames: the same message sent the same way,
//! same compression, hashes the same). Then:
//!
//! | situation | answer |
//! |---|---|
//! | key malformed or sent twice | `INVALID_ARGUMENT`, the service does not run |
//! | the server keeps no records ([`GrpcServer::idempotency`](crate::GrpcServer::idempotency) not called) | `FAILED_PRECONDITION`: the client is told rather than left unprotected |
//! | a call with the same method and key is running in this process | `ABORTED`: retry once it finished |
//! | the records cannot be read (store unreachable) | `UNAVAILABLE`, the service does not run; retry |
//! | a record exists, same request hash | the recorded response: same headers, body bytes and trailers (`grpc-status` included), plus the header `idempotent-replay: true`; the service does not run |
//! | a record exists, other request hash | `FAILED_PRECONDITION`: the key was used for a different request |
//! | a record exists but its response was too large to keep | `ALREADY_EXISTS`: the request completed; read its outcome with a `Get…`/`List…` call |
//! | no record | the service runs; if it ends with `grpc-status` 0 the response is recorded for the TTL (default [`DEFAULT_TTL`]) **before** the client gets the final status |
//!
//! Failures are not recorded: a retry after an error runs again. A call with a key runs in a
//! task of its own, so a client that goes away mid-call does not cancel the service or the
//! recording: its retry gets the answer. The request body is hashed while the service reads
//! it (nothing is buffered); to replay, the server reads and hashes the body of the retry
//! (at most [`MAX_HASHED_BODY`], else `RESOURCE_EXHAUSTED`). A response larger than
//! [`DEFAULT_MAX_RECORDED_BYTES`] (one record must fit one etcd request) is streamed through
//! and recorded as completed without its answer.
//!
//! Server-streaming responses pass through the layer like unary ones and are recorded whole
//! when they end with OK within the size bound; none of Ferry's mutating RPCs streams today.
//!
//! # Limits
//!
//! "Running in this process" is checked in memory: two replicas behind a load balancer that
//! both receive the same key while neither has finished may both run the call (the first to
//! finish records its answer; the second's is returned to its caller but not kept).
//!
//! # Stores
//!
//! [`IdempotencyStore`] is what the layer needs. Implemented by
//! [`MemoryIdempotencyStore`] (bounded, per process: tests and fallbacks),
//! [`ferry_store::KvRequestStore`] (records under `requests/` in etcd or the embedded
//! store) and [`ferry_store::RequestSlot`] (the same, while a service still reaches etcd:
//! unreachable means `UNAVAILABLE`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_store::requests::{RecordedResponse, RequestRecord, RequestStore};
use ferry_store::{KvBackend, KvRequestStore, Slot, StoreError};
use futures::future::{BoxFuture, Either};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as _, Frame};
use sha2::{Digest as _, Sha256};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::auth::{Access, classify_path};

/// The request metadata carrying the key.
pub const HEADER: &str = "idempotency-key";
/// Response header of a replayed answer (`true`).
pub const REPLAY_HEADER: &str = "idempotent-replay";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 128;
/// How long a record is kept by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest response (body, headers and trailers) recorded for replay by default.
pub const DEFAULT_MAX_RECORDED_BYTES: usize = 1024 * 1024;
/// Largest request body hashed to compare a retry with its record.
pub const MAX_HASHED_BODY: u64 = 64 * 1024 * 1024;

/// Characters of the record id shown in logs.
const LOG_ID_LEN: usize = 12;
/// Response frames buffered between the call's task and the client.
const FRAME_BUFFER: usize = 8;

/// Why the records could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyStoreError {
    /// Not reachable now (etcd down, still connecting); retrying may work.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (corrupt record, refused write).
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for IdempotencyStoreError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Failed(e.to_string())
        }
    }
}

/// Where the layer keeps records of completed requests. `id` is the record id of the
/// [module docs](self) (64 hex characters).
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// The live record with this id, if any (expired records are absent).
    async fn get(&self, id: &str) -> Result<Option<RequestRecord>, IdempotencyStoreError>;

    /// Keeps `record` for `ttl` unless a live record has this id; returns that record when
    /// there is one (and changes nothing), else `None`.
    async fn put_if_absent(
        &self,
        id: &str,
        record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>, IdempotencyStoreError>;
}

#[async_trait]
impl<B: KvBackend> IdempotencyStore for KvRequestStore<B> {
    async fn get(&self, id: &str) -> Result<Option<RequestRecord>, IdempotencyStoreError> {
        Ok(self.get_request(id).await?)
    }

    async fn put_if_absent(
        &self,
        id: &str,
        record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>, IdempotencyStoreError> {
        Ok(self.put_request_if_absent(id, record, ttl).await?)
    }
}

/// The store of a service that reaches etcd in the background: `Unavailable` until then.
#[async_trait]
impl<T: RequestStore + ?Sized + 'static> IdempotencyStore for Slot<Arc<T>> {
    async fn get(&self, id: &str) -> Result<Option<RequestRecord>, IdempotencyStoreError> {
        let store = Slot::get(self).map_err(|e| IdempotencyStoreError::Unavailable(e.0))?;
        Ok(store.get_request(id).await?)
    }

    async fn put_if_absent(
        &self,
        id: &str,
        record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>, IdempotencyStoreError> {
        let store = Slot::get(self).map_err(|e| IdempotencyStoreError::Unavailable(e.0))?;
        Ok(store.put_request_if_absent(id, record, ttl).await?)
    }
}

/// Records in this process's memory, bounded in count and bytes (oldest evicted first).
/// For tests, and for a server without a shared store; records die with the process.
pub struct MemoryIdempotencyStore {
    max_entries: usize,
    max_bytes: usize,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    /// id → (record, its size, insertion sequence).
    records: HashMap<String, (RequestRecord, usize, u64)>,
    /// Insertion order; an entry whose sequence no longer matches is stale.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    next_seq: u64,
}

impl MemoryIdempotencyStore {
    /// At most 10 000 records and 64 MiB.
    pub fn new() -> Self {
        Self::with_limits(10_000, 64 * 1024 * 1024)
    }

    /// At most `max_entries` records and `max_bytes` of them (both at least 1).
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// Records kept now (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// No records kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryIdempotencyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryIdempotencyStore")
            .field("records", &self.len())
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

fn record_size(r: &RequestRecord) -> usize {
    let pairs = |v: &[(String, String)]| v.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    r.method.len()
        + r.request_sha256.len()
        + r.response.as_ref().map_or(0, |resp| {
            resp.body.len() + pairs(&resp.headers) + pairs(&resp.trailers)
        })
        + 64
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn get(&self, id: &str) -> Result<Option<RequestRecord>, IdempotencyStoreError> {
        let now = ferry_store::now_ms();
        Ok(self
            .lock()
            .records
            .get(id)
            .filter(|(r, _, _)| !r.is_expired(now))
            .map(|(r, _, _)| r.clone()))
    }

    async fn put_if_absent(
        &self,
        id: &str,
        mut record: RequestRecord,
        ttl: Duration,
    ) -> Result<Option<RequestRecord>, IdempotencyStoreError> {
        let now = ferry_store::now_ms();
        let mut st = self.lock();
        if let Some((existing, _, _)) = st.records.get(id)
            && !existing.is_expired(now)
        {
            return Ok(Some(existing.clone()));
        }
        record.created_at_ms = now;
        record.expires_at_ms = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        let size = record_size(&record);
        if size > self.max_bytes {
            return Err(IdempotencyStoreError::Failed(format!(
                "a record of {size} bytes does not fit this store ({} bytes)",
                self.max_bytes
            )));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        if let Some((_, old_size, _)) = st.records.insert(id.to_owned(), (record, size, seq)) {
            st.bytes -= old_size;
        }
        st.bytes += size;
        st.order.push_back((id.to_owned(), seq));
        while st.records.len() > self.max_entries || st.bytes > self.max_bytes {
            let Some((old, old_seq)) = st.order.pop_front() else {
                break;
            };
            if st.records.get(&old).is_some_and(|(_, _, s)| *s == old_seq)
                && let Some((_, old_size, _)) = st.records.remove(&old)
            {
                st.bytes -= old_size;
            }
        }
        Ok(None)
    }
}

/// Tower layer making mutating calls with an `idempotency-key` idempotent (see the
/// [module docs](self)).
#[derive(Clone)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

struct Config {
    store: Option<Arc<dyn IdempotencyStore>>,
    ttl: Duration,
    max_recorded_bytes: usize,
    /// Record ids of calls running now.
    in_flight: Mutex<HashSet<String>>,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("records", &self.config.store.is_some())
            .field("ttl", &self.config.ttl)
            .field("max_recorded_bytes", &self.config.max_recorded_bytes)
            .finish()
    }
}

impl Default for IdempotencyLayer {
    fn default() -> Self {
        Self::disabled()
    }
}

impl IdempotencyLayer {
    /// Keeps no records: mutating calls with a key are refused with `FAILED_PRECONDITION`.
    pub fn disabled() -> Self {
        Self::build(None, DEFAULT_TTL, DEFAULT_MAX_RECORDED_BYTES)
    }

    /// Keeps records in `store` for [`DEFAULT_TTL`].
    pub fn new(store: Arc<dyn IdempotencyStore>) -> Self {
        Self::build(Some(store), DEFAULT_TTL, DEFAULT_MAX_RECORDED_BYTES)
    }

    /// Keeps records for `ttl` instead.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self::build(
            self.config.store.clone(),
            ttl,
            self.config.max_recorded_bytes,
        )
    }

    /// Records responses up to `bytes` (larger ones as completed without their answer).
    pub fn with_max_recorded_bytes(self, bytes: usize) -> Self {
        Self::build(self.config.store.clone(), self.config.ttl, bytes)
    }

    /// True when records are kept.
    pub fn enabled(&self) -> bool {
        self.config.store.is_some()
    }

    /// How long records are kept.
    pub fn ttl(&self) -> Duration {
        self.config.ttl
    }

    fn build(
        store: Option<Arc<dyn IdempotencyStore>>,
        ttl: Duration,
        max_recorded_bytes: usize,
    ) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                ttl,
                max_recorded_bytes,
                in_flight: Mutex::new(HashSet::new()),
            }),
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Service produced by [`IdempotencyLayer`].
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("records", &self.config.store.is_some())
            .finish_non_exhaustive()
    }
}

/// The key of a call: absent, malformed, or the key.
fn read_key(headers: &HeaderMap) -> Option<Result<String, Status>> {
    let mut values = headers.get_all(HEADER).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(Status::invalid_argument(format!(
            "send one {HEADER} metadata entry, not several"
        ))));
    }
    let bytes = first.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_KEY_LEN
        || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        // Never echo the key: say what it must be.
        return Some(Err(Status::invalid_argument(format!(
            "the {HEADER} metadata must be 1 to {MAX_KEY_LEN} printable ASCII characters \
             (got {} bytes)",
            bytes.len()
        ))));
    }
    Some(Ok(String::from_utf8_lossy(bytes).into_owned()))
}

fn hex(digest: &[u8]) -> String {
    use fmt::Write as _;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The record id of `key` on `method`: hex SHA-256 of `method 0x00 key`.
pub fn record_id(method: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    hex(&h.finalize())
}

fn request_hasher(method: &str) -> Sha256 {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0u8]);
    h
}

fn refuse<E>(status: Status) -> Result<http::Response<Body>, E> {
    Ok(status.into_http())
}

impl<S> Service<http::Request<Body>> for Idempotency<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<http::Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if classify_path(req.uri().path()) != Access::Mutating {
            return Either::Left(self.inner.call(req));
        }
        let key = match read_key(req.headers()) {
            None => return Either::Left(self.inner.call(req)),
            Some(Err(status)) => return Either::Right(Box::pin(async move { refuse(status) })),
            Some(Ok(key)) => key,
        };
        let Some(store) = self.config.store.clone() else {
            let status = Status::failed_precondition(format!(
                "this server keeps no idempotency records, so {} cannot be made idempotent; \
                 send the call without {HEADER} or use a server with a store",
                req.uri().path()
            ));
            return Either::Right(Box::pin(async move { refuse(status) }));
        };
        // The clone takes the place of the service that was polled ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let call = Call {
            config: self.config.clone(),
            store,
            id: record_id(req.uri().path(), &key),
            method: req.uri().path().to_owned(),
        };
        let span = tracing::Span::current();
        Either::Right(Box::pin(call.handle(inner, req).instrument(span)))
    }
}

/// One mutating call with a key.
struct Call {
    config: Arc<Config>,
    store: Arc<dyn IdempotencyStore>,
    method: String,
    /// Record id (hex SHA-256 of method and key).
    id: String,
}

/// Marks a record id as running; unmarks it when dropped.
struct InFlight {
    config: Arc<Config>,
    id: String,
}

impl InFlight {
    fn enter(config: &Arc<Config>, id: &str) -> Option<Self> {
        let mut running = config
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running.insert(id.to_owned()).then(|| Self {
            config: config.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.config
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Call {
    fn key_hash(&self) -> &str {
        &self.id[..LOG_ID_LEN]
    }

    async fn handle<S>(
        self,
        inner: S,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let method = self.method.as_str();
        let key_hash = self.key_hash();
        let Some(running) = InFlight::enter(&self.config, &self.id) else {
            tracing::debug!(method, key_hash, outcome = "in progress", "idempotency");
            return refuse(Status::aborted(format!(
                "a call to {method} with this {HEADER} is still in progress on this server; \
                 retry once it has finished"
            )));
        };
        match self.store.get(&self.id).await {
            Err(e) => {
                tracing::warn!(method, key_hash, error = %e, "idempotency records cannot be read; call refused");
                let message = format!(
                    "cannot read the idempotency records, so {method} was not run: {e}; retry"
                );
                refuse(match e {
                    IdempotencyStoreError::Unavailable(_) => Status::unavailable(message),
                    IdempotencyStoreError::Failed(_) => Status::internal(message),
                })
            }
            Ok(Some(record)) => {
                let outcome = self.replay(record, req.into_body()).await;
                drop(running);
                Ok(outcome)
            }
            Ok(None) => Ok(self.run(inner, req, running).await?),
        }
    }

    /// Answers a call whose record exists.
    async fn replay(&self, record: RequestRecord, body: Body) -> http::Response<Body> {
        let method = self.method.as_str();
        let key_hash = self.key_hash();
        let hash = match hash_body(method, body).await {
            Ok(hash) => hash,
            Err(status) => return status.into_http(),
        };
        if hash != record.request_sha256 {
            tracing::debug!(method, key_hash, outcome = "key reused", "idempotency");
            return Status::failed_precondition(format!(
                "this {HEADER} was used for a different request to {method}; send a new key \
                 with a new request"
            ))
            .into_http();
        }
        let Some(response) = record.response else {
            tracing::debug!(
                method,
                key_hash,
                outcome = "completed, not kept",
                "idempotency"
            );
            return Status::already_exists(format!(
                "the request with this {HEADER} to {method} already completed; its response \
                 ({} bytes) was too large to keep, so read the outcome with a Get or List call",
                record.response_bytes
            ))
            .into_http();
        };
        tracing::debug!(method, key_hash, outcome = "replay", "idempotency");
        replayed(response)
    }

    /// Runs the call in a task of its own and records a successful response.
    async fn run<S>(
        self,
        mut inner: S,
        req: http::Request<Body>,
        running: InFlight,
    ) -> Result<http::Response<Body>, S::Error>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let (parts, body) = req.into_parts();
        let hash = Arc::new(Mutex::new(BodyHash {
            hasher: Some(request_hasher(&self.method)),
            complete: false,
            failed: false,
        }));
        let req = http::Request::from_parts(
            parts,
            Body::new(HashingBody {
                inner: body,
                hash: hash.clone(),
            }),
        );
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let task = async move {
            let response = match inner.call(req).await {
                Ok(response) => response,
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                    return;
                }
            };
            let (parts, mut body) = response.into_parts();
            let status_ok = parts.status == http::StatusCode::OK;
            let headers = parts.headers.clone();
            let (frames, rx) = tokio::sync::mpsc::channel(FRAME_BUFFER);
            let _ = head_tx.send(Ok(http::Response::from_parts(
                parts,
                Body::new(ChannelBody { rx }),
            )));
            // Forward the body while keeping a copy; hold the trailers back until recorded.
            let max = self.config.max_recorded_bytes;
            let mut size = header_bytes(&headers);
            let mut copy: Vec<u8> = Vec::new();
            let mut trailers = None;
            loop {
                let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
                match frame {
                    None => break,
                    Some(Err(status)) => {
                        // Not recorded: a retry runs again.
                        let _ = frames.send(Err(status)).await;
                        return;
                    }
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            size += data.len();
                            if size <= max {
                                copy.extend_from_slice(&data);
                            } else {
                                copy = Vec::new();
                            }
                            // A client that went away does not stop the recording.
                            let _ = frames.send(Ok(Frame::data(data))).await;
                        }
                        Err(frame) => {
                            if let Ok(t) = frame.into_trailers() {
                                trailers = Some(t);
                                break;
                            }
                        }
                    },
                }
            }
            let grpc_ok = trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .or_else(|| headers.get("grpc-status"))
                .is_some_and(|v| v.as_bytes() == b"0");
            if status_ok && grpc_ok {
                size += trailers.as_ref().map_or(0, header_bytes);
                self.record(&hash, &headers, copy, trailers.as_ref(), size)
                    .await;
            }
            // Recorded (or not) before the client learns the outcome, so its next call with
            // this key finds the record rather than the call in progress.
            drop(running);
            if let Some(t) = trailers {
                let _ = frames.send(Ok(Frame::trailers(t))).await;
            }
        };
        tokio::spawn(task.in_current_span());
        match head_rx.await {
            Ok(result) => result,
            Err(_) => refuse(Status::internal(
                "the call ended without a response (its task failed); see the server log",
            )),
        }
    }

    async fn record(
        &self,
        hash: &Mutex<BodyHash>,
        headers: &HeaderMap,
        body: Vec<u8>,
        trailers: Option<&HeaderMap>,
        size: usize,
    ) {
        let method = self.method.as_str();
        let key_hash = self.key_hash();
        let Some(request_sha256) = hash.lock().unwrap_or_else(PoisonError::into_inner).finish()
        else {
            tracing::warn!(
                method,
                key_hash,
                "the service answered before reading the whole request; response not recorded"
            );
            return;
        };
        let kept = if size <= self.config.max_recorded_bytes {
            recorded_pairs(headers, true)
                .zip(trailers.map_or(Some(Vec::new()), |t| recorded_pairs(t, false)))
                .map(|(headers, trailers)| RecordedResponse {
                    headers,
                    body,
                    trailers,
                })
        } else {
            None
        };
        if kept.is_none() {
            tracing::info!(
                method,
                key_hash,
                bytes = size,
                "response too large to replay; recorded as completed without it"
            );
        }
        let record = RequestRecord {
            method: self.method.clone(),
            request_sha256,
            response: kept,
            response_bytes: size as u64,
            created_at_ms: 0,
            expires_at_ms: 0,
        };
        match self
            .store
            .put_if_absent(&self.id, record, self.config.ttl)
            .await
        {
            Ok(None) => tracing::debug!(method, key_hash, outcome = "recorded", "idempotency"),
            Ok(Some(_)) => tracing::warn!(
                method,
                key_hash,
                "another server recorded this key first; this call ran as well and its answer is not kept"
            ),
            Err(e) => tracing::warn!(
                method,
                key_hash,
                error = %e,
                "the call succeeded but could not be recorded; a retry with this key would run it again"
            ),
        }
    }
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum()
}

/// Headers (or trailers) as recorded; `None` when one cannot be kept as text.
fn recorded_pairs(map: &HeaderMap, headers: bool) -> Option<Vec<(String, String)>> {
    map.iter()
        .filter(|(n, _)| {
            !headers
                || !matches!(
                    n.as_str(),
                    "content-length" | "date" | "transfer-encoding" | REPLAY_HEADER
                )
        })
        .map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// The response of a record, marked as replayed.
fn replayed(recorded: RecordedResponse) -> http::Response<Body> {
    let mut response = http::Response::new(Body::empty());
    let pairs = |map: &mut HeaderMap, pairs: Vec<(String, String)>| {
        for (name, value) in pairs {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(name), Ok(value)) => {
                    map.append(name, value);
                }
                _ => {
                    tracing::warn!(header = %name, "recorded header not valid; left out of the replay")
                }
            }
        }
    };
    pairs(response.headers_mut(), recorded.headers);
    response
        .headers_mut()
        .insert(REPLAY_HEADER, HeaderValue::from_static("true"));
    let mut trailers = HeaderMap::new();
    pairs(&mut trailers, recorded.trailers);
    *response.body_mut() = Body::new(ReplayBody {
        data: (!recorded.body.is_empty()).then(|| Bytes::from(recorded.body)),
        trailers: (!trailers.is_empty()).then_some(trailers),
    });
    response
}

/// Reads and hashes a whole request body (at most [`MAX_HASHED_BODY`]).
async fn hash_body(method: &str, mut body: Body) -> Result<String, Status> {
    let mut hasher = request_hasher(method);
    let mut read = 0u64;
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(hex(&hasher.finalize())),
            Some(Err(status)) => {
                return Err(Status::cancelled(format!(
                    "the request body could not be read: {}",
                    status.message()
                )));
            }
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len() as u64;
                    if read > MAX_HASHED_BODY {
                        return Err(Status::resource_exhausted(format!(
                            "request bodies with an {HEADER} are compared up to \
                             {MAX_HASHED_BODY} bytes; this one is larger"
                        )));
                    }
                    hasher.update(data);
                }
            }
        }
    }
}

/// Hash of a request body as the service reads it.
struct BodyHash {
    hasher: Option<Sha256>,
    /// The body was read to its end.
    complete: bool,
    failed: bool,
}

impl BodyHash {
    /// The hex hash, once the whole body was read without error.
    fn finish(&mut self) -> Option<String> {
        if !self.complete || self.failed {
            return None;
        }
        self.hasher.take().map(|h| hex(&h.finalize()))
    }
}

/// A request body hashing what passes through.
struct HashingBody {
    inner: Body,
    hash: Arc<Mutex<BodyHash>>,
}

impl http_body::Body for HashingBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let ended = self.inner.is_end_stream();
        let mut hash = self.hash.lock().unwrap_or_else(PoisonError::into_inner);
        match &polled {
            None => hash.complete = true,
            Some(Err(_)) => hash.failed = true,
            Some(Ok(frame)) => {
                if let (Some(data), Some(hasher)) = (frame.data_ref(), hash.hasher.as_mut()) {
                    hasher.update(data);
                }
                if ended {
                    hash.complete = true;
                }
            }
        }
        Poll::Ready(polled)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response body of a call running in its own task.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Status>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.rx.poll_recv(cx)
    }
}

/// A recorded body and trailers.
struct ReplayBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Notify;

    use super::*;

    const CREATE: &str = "/ferry.test.v1.Things/CreateThing";
    const GET: &str = "/ferry.test.v1.Things/GetThing";

    /// A gRPC service stub: counts calls, reads the whole request, answers one framed message
    /// `call <n>` with trailers `grpc-status` (13 when the request says `fail`) and
    /// `x-call: <n>`; a request saying `big` gets a 4 KiB message. With a gate, waits for it
    /// after reading the request.
    #[derive(Clone, Default)]
    struct Stub {
        calls: Arc<AtomicUsize>,
        gate: Option<Arc<Notify>>,
    }

    impl Stub {
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn frame(payload: &[u8]) -> Bytes {
        let mut out = vec![0u8];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    async fn read_all(mut body: Body) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Some(data) = frame.unwrap().data_ref() {
                out.extend_from_slice(data);
            }
        }
        out
    }

    impl Service<http::Request<Body>> for Stub {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let stub = self.clone();
            Box::pin(async move {
                let n = stub.calls.fetch_add(1, Ordering::SeqCst) + 1;
                let request = read_all(req.into_body()).await;
                if let Some(gate) = &stub.gate {
                    gate.notified().await;
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let payload = if text.contains("big") {
                    vec![b'x'; 4096]
                } else {
                    format!("call {n}").into_bytes()
                };
                let mut trailers = HeaderMap::new();
                let code = if text.contains("fail") { "13" } else { "0" };
                trailers.insert("grpc-status", HeaderValue::from_static(code));
                trailers.insert("x-call", HeaderValue::from_str(&n.to_string()).unwrap());
                let mut response = http::Response::new(Body::new(ReplayBody {
                    data: Some(frame(&payload)),
                    trailers: Some(trailers),
                }));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                Ok(response)
            })
        }
    }

    fn request(path: &str, key: Option<&str>, body: &str) -> http::Request<Body> {
        let mut req = http::Request::new(Body::new(ReplayBody {
            data: Some(frame(body.as_bytes())),
            trailers: None,
        }));
        *req.uri_mut() = format!("http://ferry{path}").parse().unwrap();
        if let Some(key) = key {
            req.headers_mut()
                .insert(HEADER, HeaderValue::from_str(key).unwrap());
        }
        req
    }

    /// What a client sees: headers, body bytes, trailers (or the trailers-only headers).
    struct Seen {
        headers: HeaderMap,
        body: Vec<u8>,
        trailers: HeaderMap,
    }

    impl Seen {
        fn code(&self) -> tonic::Code {
            let status = self
                .trailers
                .get("grpc-status")
                .or_else(|| self.headers.get("grpc-status"))
                .expect("a grpc-status");
            tonic::Code::from_bytes(status.as_bytes())
        }

        fn message(&self) -> String {
            Status::from_header_map(&self.headers)
                .map(|s| s.message().to_owned())
                .unwrap_or_default()
        }

        fn replayed(&self) -> bool {
            self.headers.get(REPLAY_HEADER).is_some()
        }
    }

    async fn send<S>(svc: &mut Idempotency<S>, req: http::Request<Body>) -> Seen
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        let response = svc.call(req).await.unwrap();
        let (parts, mut body) = response.into_parts();
        let mut seen = Seen {
            headers: parts.headers,
            body: Vec::new(),
            trailers: HeaderMap::new(),
        };
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            match frame.unwrap().into_data() {
                Ok(data) => seen.body.extend_from_slice(&data),
                Err(frame) => seen.trailers = frame.into_trailers().unwrap(),
            }
        }
        seen
    }

    fn layer_with(store: Arc<dyn IdempotencyStore>, stub: &Stub) -> Idempotency<Stub> {
        IdempotencyLayer::new(store).layer(stub.clone())
    }

    #[tokio::test]
    async fn same_key_same_request_replays_the_first_answer() {
        let stub = Stub::default();
        let store = Arc::new(MemoryIdempotencyStore::new());
        let mut svc = layer_with(store.clone(), &stub);
        let first = send(&mut svc, request(CREATE, Some("k-1"), "create a")).await;
        assert_eq!(first.code(), tonic::Code::Ok);
        assert!(!first.replayed());
        let again = send(&mut svc, request(CREATE, Some("k-1"), "create a")).await;
        assert_eq!(stub.calls(), 1, "the service ran once");
        assert!(again.replayed());
        assert_eq!(again.body, first.body);
        assert_eq!(again.body, frame(b"call 1"));
        assert_eq!(again.trailers, first.trailers);
        assert_eq!(
            again.headers.get(http::header::CONTENT_TYPE).unwrap(),
            "application/grpc"
        );
        // The key is scoped to its method, and the store never holds the key itself.
        assert_eq!(store.len(), 1);
        let id = record_id(CREATE, "k-1");
        let record = store.get(&id).await.unwrap().unwrap();
        assert_eq!(record.method, CREATE);
        assert!(!format!("{record:?}").contains("k-1"));
        let other = send(
            &mut svc,
            request("/ferry.test.v1.Things/DeleteThing", Some("k-1"), "create a"),
        )
        .await;
        assert!(!other.replayed());
        assert_eq!(stub.calls(), 2);
    }

    #[tokio::test]
    async fn same_key_other_request_is_refused() {
        let stub = Stub::default();
        let mut svc = layer_with(Arc::new(MemoryIdempotencyStore::new()), &stub);
        send(&mut svc, request(CREATE, Some("k-2"), "create a")).await;
        let other = send(&mut svc, request(CREATE, Some("k-2"), "create b")).await;
        assert_eq!(other.code(), tonic::Code::FailedPrecondition);
        assert!(
            other.message().contains("different request"),
            "{}",
            other.message()
        );
        assert!(!other.message().contains("k-2"));
        assert_eq!(stub.calls(), 1);
    }

    #[tokio::test]
    async fn without_key_or_on_reads_every_call_runs() {
        let stub = Stub::default();
        let store = Arc::new(MemoryIdempotencyStore::new());
        let mut svc = layer_with(store.clone(), &stub);
        for _ in 0..2 {
            assert!(!send(&mut svc, request(CREATE, None, "a")).await.replayed());
            // Read-only calls ignore the key, even a malformed one.
            assert!(
                !send(&mut svc, request(GET, Some("k-3"), "a"))
                    .await
                    .replayed()
            );
            assert_eq!(
                send(&mut svc, request(GET, Some("\tbad"), "a"))
                    .await
                    .code(),
                tonic::Code::Ok
            );
        }
        assert_eq!(stub.calls(), 6);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn failures_are_not_recorded() {
        let stub = Stub::default();
        let store = Arc::new(MemoryIdempotencyStore::new());
        let mut svc = layer_with(store.clone(), &stub);
        for _ in 0..2 {
            let seen = send(&mut svc, request(CREATE, Some("k-4"), "fail")).await;
            assert_eq!(seen.code(), tonic::Code::Internal);
            assert!(!seen.replayed());
        }
        assert_eq!(stub.calls(), 2, "a retry after a failure runs again");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_call_in_progress_aborts_its_duplicate() {
        let gate = Arc::new(Notify::new());
        let stub = Stub {
            gate: Some(gate.clone()),
            ..Stub::default()
        };
        let mut svc = layer_with(Arc::new(MemoryIdempotencyStore::new()), &stub);
        let mut first_svc = svc.clone();
        let first =
            tokio::spawn(
                async move { send(&mut first_svc, request(CREATE, Some("k-5"), "a")).await },
            );
        while stub.calls() == 0 {
            tokio::task::yield_now().await;
        }
        let dup = send(&mut svc, request(CREATE, Some("k-5"), "a")).await;
        assert_eq!(dup.code(), tonic::Code::Aborted);
        assert!(dup.message().contains("in progress"), "{}", dup.message());
        // Another key is not held up.
        gate.notify_one();
        let first = first.await.unwrap();
        assert_eq!(first.code(), tonic::Code::Ok);
        let after = send(&mut svc, request(CREATE, Some("k-5"), "a")).await;
        assert!(after.replayed());
        assert_eq!(stub.calls(), 1);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_still_gets_its_answer_on_retry() {
        let gate = Arc::new(Notify::new());
        let stub = Stub {
            gate: Some(gate.clone()),
            ..Stub::default()
        };
        let mut svc = layer_with(Arc::new(MemoryIdempotencyStore::new()), &stub);
        {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            let call = svc.call(request(CREATE, Some("k-6"), "a"));
            // The client gives up before the service answers.
            let _ = tokio::time::timeout(Duration::from_millis(50), call).await;
        }
        gate.notify_one();
        let retry = loop {
            let seen = send(&mut svc, request(CREATE, Some("k-6"), "a")).await;
            if seen.code() != tonic::Code::Aborted {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(retry.replayed());
        assert_eq!(retry.body, frame(b"call 1"));
        assert_eq!(stub.calls(), 1);
    }

    #[tokio::test]
    async fn without_records_a_key_is_refused() {
        let stub = Stub::default();
        let mut svc = IdempotencyLayer::disabled().layer(stub.clone());
        let seen = send(&mut svc, request(CREATE, Some("k-7"), "a")).await;
        assert_eq!(seen.code(), tonic::Code::FailedPrecondition);
        assert!(seen.message().contains("keeps no idempotency records"));
        assert_eq!(stub.calls(), 0);
        assert_eq!(
            send(&mut svc, request(CREATE, None, "a")).await.code(),
            tonic::Code::Ok
        );
        assert_eq!(stub.calls(), 1);
    }

    #[tokio::test]
    async fn malformed_keys_are_refused() {
        let stub = Stub::default();
        let mut svc = layer_with(Arc::new(MemoryIdempotencyStore::new()), &stub);
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for key in ["", "tab\there", long.as_str()] {
            let seen = send(&mut svc, request(CREATE, Some(key), "a")).await;
            assert_eq!(seen.code(), tonic::Code::InvalidArgument, "{key:?}");
            assert!(seen.message().contains("printable ASCII"));
        }
        let mut twice = request(CREATE, Some("k-8"), "a");
        twice
            .headers_mut()
            .append(HEADER, HeaderValue::from_static("k-9"));
        assert_eq!(
            send(&mut svc, twice).await.code(),
            tonic::Code::InvalidArgument
        );
        // The longest key and spaces inside are fine.
        let longest = "k".repeat(MAX_KEY_LEN);
        for key in [longest.as_str(), "a key with spaces"] {
            let seen = send(&mut svc, request(CREATE, Some(key), "a")).await;
            assert_eq!(seen.code(), tonic::Code::Ok);
        }
        assert_eq!(stub.calls(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_store_refuses_rather_than_runs_unprotected() {
        let stub = Stub::default();
        let (slot, writer) = ferry_store::RequestSlot::connecting("etcd at 127.0.0.1:1");
        let mut svc = layer_with(Arc::new(slot), &stub);
        let seen = send(&mut svc, request(CREATE, Some("k-10"), "a")).await;
        assert_eq!(seen.code(), tonic::Code::Unavailable);
        assert!(seen.message().contains("127.0.0.1:1"), "{}", seen.message());
        assert_eq!(stub.calls(), 0);
        // Calls without a key are not held up by the records.
        assert_eq!(
            send(&mut svc, request(CREATE, None, "a")).await.code(),
            tonic::Code::Ok
        );
        // Once the store is there, records work.
        let store = ferry_store::EmbeddedStore::in_memory();
        writer.set(Arc::new(KvRequestStore::embedded(&store)));
        send(&mut svc, request(CREATE, Some("k-10"), "a")).await;
        assert!(
            send(&mut svc, request(CREATE, Some("k-10"), "a"))
                .await
                .replayed()
        );
        assert_eq!(stub.calls(), 2);
    }

    #[tokio::test]
    async fn a_response_too_large_to_keep_is_recorded_as_completed() {
        let stub = Stub::default();
        let mut svc = IdempotencyLayer::new(Arc::new(MemoryIdempotencyStore::new()))
            .with_max_recorded_bytes(1024)
            .layer(stub.clone());
        let first = send(&mut svc, request(CREATE, Some("k-11"), "big")).await;
        assert_eq!(first.code(), tonic::Code::Ok);
        assert_eq!(first.body.len(), 4096 + 5, "streamed through whole");
        let again = send(&mut svc, request(CREATE, Some("k-11"), "big")).await;
        assert_eq!(again.code(), tonic::Code::AlreadyExists);
        assert!(again.message().contains("too large"), "{}", again.message());
        assert_eq!(stub.calls(), 1);
    }

    #[tokio::test]
    async fn records_expire() {
        let stub = Stub::default();
        let mut svc = IdempotencyLayer::new(Arc::new(MemoryIdempotencyStore::new()))
            .with_ttl(Duration::from_millis(50))
            .layer(stub.clone());
        send(&mut svc, request(CREATE, Some("k-12"), "a")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !send(&mut svc, request(CREATE, Some("k-12"), "a"))
                .await
                .replayed()
        );
        assert_eq!(stub.calls(), 2);
    }

    #[tokio::test]
    async fn memory_store_is_bounded() {
        let store = MemoryIdempotencyStore::with_limits(3, 1 << 20);
        let record = |hash: &str| RequestRecord {
            method: CREATE.into(),
            request_sha256: hash.into(),
            response: None,
            response_bytes: 0,
            created_at_ms: 0,
            expires_at_ms: 0,
        };
        for i in 0..5 {
            let id = format!("id-{i}");
            assert_eq!(
                store
                    .put_if_absent(&id, record("h"), DEFAULT_TTL)
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.get("id-0").await.unwrap(), None, "oldest evicted");
        assert!(store.get("id-4").await.unwrap().is_some());
        // A live record is kept, not replaced.
        let kept = store
            .put_if_absent("id-4", record("other"), DEFAULT_TTL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.request_sha256, "h");
        // Bytes bound too.
        let small = MemoryIdempotencyStore::with_limits(100, 200);
        for i in 0..5 {
            small
                .put_if_absent(&format!("b-{i}"), record("h"), DEFAULT_TTL)
                .await
                .unwrap();
        }
        assert!(small.len() < 5);
    }

    #[test]
    fn record_ids_hide_the_key() {
        let id = record_id(CREATE, "secret-key");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, record_id(GET, "secret-key"));
        assert_ne!(id, record_id(CREATE, "secret-key2"));
    }
}
