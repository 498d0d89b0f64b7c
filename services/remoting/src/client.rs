//! Async remoting client: one multiplexed TCP connection per peer address.
//!
//! Like Java's `NettyRemotingClient`: every request gets an opaque from one atomic
//! counter, a reader task per connection matches responses to waiting calls by
//! opaque (any order), and requests the peer sends over the same connection (a
//! broker's CHECK_TRANSACTION_STATE 39, NOTIFY_CONSUMER_IDS_CHANGED 40,
//! GET_CONSUMER_RUNNING_INFO 307) are answered REQUEST_CODE_NOT_SUPPORTED unless a
//! [`RequestHandler`] is installed ([`RemotingClient::set_request_handler`]).
//!
//! Failure model:
//! - connect: refused → [`RemotingError::ConnectionRefused`], no answer within
//!   `connect_timeout` → [`RemotingError::Timeout`], anything else (bad address, DNS,
//!   unreachable network) → [`RemotingError::Unreachable`]. Concurrent calls to an
//!   address that is still connecting share that one attempt.
//! - a call not answered within its timeout fails with `Timeout`; its pending entry
//!   is removed and the connection stays open for other calls (a late answer is
//!   dropped). Callers that want Java's close-on-timeout can call
//!   [`RemotingClient::close_connection`] ([`crate::NameServerClient`] does).
//! - when a connection breaks (EOF, I/O error, undecodable frame), every call waiting
//!   on it fails with [`RemotingError::Closed`] and the next call reconnects.
//! - non-success response codes are answers, not errors: callers need e.g.
//!   TOPIC_NOT_EXIST (17) or CONSUMER_NOT_ONLINE (206) as data. Use
//!   [`RemotingCommand::into_success`] to turn them into [`RemotingError::Remote`].
//!
//! Every request goes out with a JSON header (which always carries
//! `"serializeTypeCurrentRPC":"JSON"`; the Rust RocketMQ peers drop connections
//! without it) and, when credentials are configured, is ACL-signed as the very last
//! step. Secrets are never logged: only code, opaque and address are.
//!
//! Metrics: every [`RemotingClient::invoke`] / [`RemotingClient::invoke_oneway`]
//! counts `ferry_remoting_client_requests_total{code,outcome}` and observes
//! `ferry_remoting_client_request_duration_seconds{code}` (see
//! `ferry_telemetry::metrics::remoting_client`), labelled by code names only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::acl::{Credentials, sign_request};
use crate::codes::{
    FERRY_REMOTING_VERSION, LanguageCode, RequestCode, ResponseCode, SerializeType,
};
use crate::command::{FLAG_ONEWAY, FLAG_RESPONSE, RemotingCommand};
use crate::error::{RemotingError, Result};
use crate::frame::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec};
use crate::server::{RequestHandler, encode_frame};

/// Frames queued for one connection's writer before callers wait.
const WRITE_QUEUE: usize = 1024;
/// Coalesce queued frames into one write up to this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// Peer-initiated requests handled at once per connection (the rest get SYSTEM_BUSY).
const PEER_REQUESTS_IN_FLIGHT: usize = 64;

/// Settings of a [`RemotingClient`].
///
/// `Debug` shows the access key only (see [`Credentials`]).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TCP connect deadline (Java `connectTimeoutMillis`, 3 s).
    pub connect_timeout: Duration,
    /// Default per-call deadline, from the request being queued to its answer.
    pub request_timeout: Duration,
    /// Largest frame sent or accepted, prefix included (Netty's 16 MiB default).
    pub max_frame_length: usize,
    /// ACL 1.0 credentials; when set every request is signed (`AclClientRPCHook`).
    pub credentials: Option<Credentials>,
    /// Language stamped by [`RemotingClient::new_request`].
    pub language: LanguageCode,
    /// Version stamped by [`RemotingClient::new_request`] (an `MQVersion` ordinal).
    pub version: i32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            credentials: None,
            language: LanguageCode::Java,
            version: FERRY_REMOTING_VERSION,
        }
    }
}

impl RemotingCommand {
    /// `Ok(self)` for SUCCESS (0); otherwise [`RemotingError::Remote`] with `addr`,
    /// the code and the remark.
    pub fn into_success(self, addr: &str) -> Result<RemotingCommand> {
        if self.code == ResponseCode::SUCCESS {
            Ok(self)
        } else {
            Err(RemotingError::Remote {
                addr: addr.to_string(),
                code: self.code,
                remark: self.remark.unwrap_or_default(),
            })
        }
    }
}

/// A cheap-to-clone handle on a connection pool keyed by `host:port`.
///
/// Dropping the last clone closes every connection.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

type HandlerCell = Arc<RwLock<Option<Arc<dyn RequestHandler>>>>;
type ConnectFuture = Shared<BoxFuture<'static, Result<Arc<Conn>>>>;

struct Inner {
    config: ClientConfig,
    next_opaque: AtomicI32,
    next_attempt: AtomicU64,
    pool: Mutex<HashMap<String, Slot>>,
    handler: HandlerCell,
}

enum Slot {
    /// A connect in progress, shared by every caller that needs this address.
    Connecting {
        attempt: u64,
        fut: ConnectFuture,
    },
    Ready(Arc<Conn>),
}

impl Drop for Inner {
    fn drop(&mut self) {
        let pool = self.pool.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, slot) in pool.drain() {
            if let Slot::Ready(conn) = slot {
                conn.close("client dropped");
            }
        }
    }
}

impl RemotingClient {
    pub fn new(config: ClientConfig) -> Self {
        RemotingClient {
            inner: Arc::new(Inner {
                config,
                next_opaque: AtomicI32::new(0),
                next_attempt: AtomicU64::new(0),
                pool: Mutex::new(HashMap::new()),
                handler: Arc::new(RwLock::new(None)),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A request with the configured language and version (JSON header).
    pub fn new_request(&self, code: impl Into<i32>) -> RemotingCommand {
        RemotingCommand::request(code)
            .with_language(self.inner.config.language)
            .with_version(self.inner.config.version)
    }

    /// Installs the handler for requests peers send over client connections
    /// (existing connections included). Without one they get
    /// REQUEST_CODE_NOT_SUPPORTED, oneway ones nothing.
    pub fn set_request_handler(&self, handler: Arc<dyn RequestHandler>) {
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Sends `request` to `addr` and waits for its response (any response code).
    ///
    /// The client sets the opaque, clears the response/oneway flags, forces a JSON
    /// header and signs last; language, version, ext fields and body are sent as
    /// given. `timeout` defaults to `request_timeout` and does not include the
    /// connect (bounded by `connect_timeout`).
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Option<Duration>,
    ) -> Result<RemotingCommand> {
        let mut observed = Observed::start(request.code);
        let result = self.invoke_inner(addr, request, timeout).await;
        observed.outcome = match &result {
            Ok(response) => ResponseCode::name_of(response.code).unwrap_or(OTHER_LABEL),
            Err(e) => failure_label(e),
        };
        result
    }

    async fn invoke_inner(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Option<Duration>,
    ) -> Result<RemotingCommand> {
        let timeout = timeout.unwrap_or(self.inner.config.request_timeout);
        let code = request.code;
        let conn = self.inner.connection(addr).await?;
        let (opaque, rx) = conn.register(|| self.inner.opaque())?;
        // Removes the pending entry however this call ends (timeout, error, drop).
        let _pending = PendingGuard {
            conn: &conn,
            opaque,
        };
        let frame = self.inner.prepare(request, opaque, false)?;
        tracing::trace!(addr, code, opaque, "remoting request");
        let exchange = async {
            conn.send(frame).await?;
            rx.await.unwrap_or_else(|_| Err(conn.closed_error()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(addr, code, opaque, "remoting request timed out");
                Err(RemotingError::Timeout {
                    addr: addr.to_string(),
                    ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Sends a oneway request (flag bit 1; the peer never answers). Returns once the
    /// frame is queued on the connection.
    pub async fn invoke_oneway(&self, addr: &str, request: RemotingCommand) -> Result<()> {
        let mut observed = Observed::start(request.code);
        let result = self.invoke_oneway_inner(addr, request).await;
        observed.outcome = match &result {
            Ok(()) => "oneway",
            Err(e) => failure_label(e),
        };
        result
    }

    async fn invoke_oneway_inner(&self, addr: &str, request: RemotingCommand) -> Result<()> {
        let timeout = self.inner.config.request_timeout;
        let conn = self.inner.connection(addr).await?;
        let frame = self.inner.prepare(request, self.inner.opaque(), true)?;
        match tokio::time::timeout(timeout, conn.send(frame)).await {
            Ok(r) => r,
            Err(_) => Err(RemotingError::Timeout {
                addr: addr.to_string(),
                ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// Closes the connection to `addr`, if any (waiting calls fail with `Closed`);
    /// the next call reconnects.
    pub fn close_connection(&self, addr: &str) {
        let slot = self.inner.lock_pool().remove(addr);
        if let Some(Slot::Ready(conn)) = slot {
            conn.close("closed by caller");
        }
    }

    /// Whether an open connection to `addr` is pooled.
    pub fn is_connected(&self, addr: &str) -> bool {
        matches!(self.inner.lock_pool().get(addr), Some(Slot::Ready(c)) if c.is_open())
    }

    /// Calls waiting for a response from `addr` (diagnostics, leak checks).
    pub fn pending_requests(&self, addr: &str) -> usize {
        match self.inner.lock_pool().get(addr) {
            Some(Slot::Ready(c)) => c.lock_state().pending.len(),
            _ => 0,
        }
    }
}

/// Label for request or response codes Ferry has no name for (bounded label sets).
const OTHER_LABEL: &str = "OTHER";

/// Records the remoting client metrics of one request when dropped, so a call its
/// caller abandons (e.g. under an outer timeout) still counts, as `cancelled`.
struct Observed {
    code: &'static str,
    started: Instant,
    outcome: &'static str,
}

impl Observed {
    fn start(code: i32) -> Self {
        Observed {
            code: RequestCode::name_of(code).unwrap_or(OTHER_LABEL),
            started: Instant::now(),
            outcome: "cancelled",
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        ferry_telemetry::metrics::remoting_client().observe(
            self.code,
            self.outcome,
            self.started.elapsed(),
        );
    }
}

/// The `outcome` label of a request that got no answer.
fn failure_label(e: &RemotingError) -> &'static str {
    match e {
        RemotingError::Timeout { .. } => "timeout",
        RemotingError::ConnectionRefused { .. } => "refused",
        RemotingError::Unreachable { .. } => "unreachable",
        RemotingError::Closed { .. } => "closed",
        _ => "error",
    }
}

impl Inner {
    fn lock_pool(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opaque(&self) -> i32 {
        // Wraps at i32::MAX like Java's AtomicInteger.
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    fn prepare(&self, mut cmd: RemotingCommand, opaque: i32, oneway: bool) -> Result<Bytes> {
        cmd.opaque = opaque;
        cmd.flag &= !(FLAG_RESPONSE | FLAG_ONEWAY);
        if oneway {
            cmd.flag |= FLAG_ONEWAY;
        }
        cmd.serialize_type = SerializeType::Json;
        // Last: any change after signing would invalidate the signature.
        if let Some(creds) = &self.config.credentials {
            sign_request(&mut cmd, creds)?;
        }
        encode_frame(&cmd, self.config.max_frame_length)
    }

    /// The pooled connection to `addr`, connecting if needed.
    async fn connection(self: &Arc<Self>, addr: &str) -> Result<Arc<Conn>> {
        let fut = {
            let mut pool = self.lock_pool();
            match pool.get(addr) {
                Some(Slot::Ready(conn)) if conn.is_open() => return Ok(conn.clone()),
                Some(Slot::Connecting { fut, .. }) => fut.clone(),
                _ => {
                    let attempt = self.next_attempt.fetch_add(1, Ordering::Relaxed);
                    // Spawned so the attempt completes (and is pooled or closed) even
                    // if every caller waiting on it gives up.
                    let task = tokio::spawn(connect_and_pool(
                        Arc::downgrade(self),
                        addr.to_string(),
                        attempt,
                        self.config.connect_timeout,
                        self.config.max_frame_length,
                        self.handler.clone(),
                    ));
                    let addr_owned = addr.to_string();
                    let fut = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(RemotingError::Unreachable {
                                addr: addr_owned,
                                reason: format!("connect task failed: {e}"),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    pool.insert(
                        addr.to_string(),
                        Slot::Connecting {
                            attempt,
                            fut: fut.clone(),
                        },
                    );
                    fut
                }
            }
        };
        fut.await
    }
}

async fn connect_and_pool(
    inner: Weak<Inner>,
    addr: String,
    attempt: u64,
    connect_timeout: Duration,
    max_frame_length: usize,
    handler: HandlerCell,
) -> Result<Arc<Conn>> {
    let result = connect(&addr, connect_timeout, max_frame_length, handler).await;
    let Some(inner) = inner.upgrade() else {
        if let Ok(conn) = &result {
            conn.close("client dropped");
        }
        return Err(RemotingError::Closed { addr });
    };
    let mut pool = inner.lock_pool();
    let ours =
        matches!(pool.get(&addr), Some(Slot::Connecting { attempt: a, .. }) if *a == attempt);
    if !ours {
        // `close_connection` ran while we were connecting.
        if let Ok(conn) = &result {
            conn.close("closed by caller while connecting");
        }
        return Err(RemotingError::Closed { addr });
    }
    match &result {
        Ok(conn) => {
            pool.insert(addr, Slot::Ready(conn.clone()));
        }
        Err(_) => {
            pool.remove(&addr);
        }
    }
    result
}

async fn connect(
    addr: &str,
    connect_timeout: Duration,
    max_frame_length: usize,
    handler: HandlerCell,
) -> Result<Arc<Conn>> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(RemotingError::Timeout {
                addr: addr.to_string(),
                ms: connect_timeout.as_millis() as u64,
            });
        }
        Ok(Err(e)) => return Err(connect_error(addr, &e, connect_timeout)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_err(|e| connect_error(addr, &e, connect_timeout))?;
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let conn = Arc::new(Conn {
        addr: addr.to_string(),
        out: tx,
        state: Mutex::new(ConnState::default()),
        cancel: CancellationToken::new(),
    });
    tracing::debug!(addr, %peer, "connected");
    tokio::spawn(write_loop(conn.clone(), wr, rx));
    tokio::spawn(read_loop(
        conn.clone(),
        rd,
        peer,
        FrameCodec::with_max_frame_length(max_frame_length),
        handler,
        max_frame_length,
    ));
    Ok(conn)
}

fn connect_error(addr: &str, e: &std::io::Error, timeout: Duration) -> RemotingError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => RemotingError::ConnectionRefused {
            addr: addr.to_string(),
        },
        std::io::ErrorKind::TimedOut => RemotingError::Timeout {
            addr: addr.to_string(),
            ms: timeout.as_millis() as u64,
        },
        _ => RemotingError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    }
}

/// One TCP connection: a writer queue, the pending-call table and a close switch.
struct Conn {
    addr: String,
    out: mpsc::Sender<Bytes>,
    state: Mutex<ConnState>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct ConnState {
    /// Set under the same lock as draining `pending`, so no call can register on a
    /// closed connection and wait for its full timeout.
    closed: bool,
    pending: HashMap<i32, oneshot::Sender<Result<RemotingCommand>>>,
}

impl Conn {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_open(&self) -> bool {
        !self.cancel.is_cancelled()
    }

    fn closed_error(&self) -> RemotingError {
        RemotingError::Closed {
            addr: self.addr.clone(),
        }
    }

    /// Registers a waiting call under a fresh opaque (skipping any still pending
    /// after the counter wrapped).
    fn register(
        &self,
        mut next_opaque: impl FnMut() -> i32,
    ) -> Result<(i32, oneshot::Receiver<Result<RemotingCommand>>)> {
        let mut state = self.lock_state();
        if state.closed {
            return Err(self.closed_error());
        }
        let mut opaque = next_opaque();
        while state.pending.contains_key(&opaque) {
            opaque = next_opaque();
        }
        let (tx, rx) = oneshot::channel();
        state.pending.insert(opaque, tx);
        Ok((opaque, rx))
    }

    fn complete(&self, response: RemotingCommand) {
        let waiter = self.lock_state().pending.remove(&response.opaque);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok(response));
            }
            // Usually the answer to a call that already timed out.
            None => tracing::debug!(
                addr = %self.addr,
                opaque = response.opaque,
                code = response.code,
                "dropping response with no waiting call"
            ),
        }
    }

    async fn send(&self, frame: Bytes) -> Result<()> {
        self.out.send(frame).await.map_err(|_| self.closed_error())
    }

    /// Marks the connection closed, fails every waiting call, stops its tasks.
    fn close(&self, reason: &str) {
        let drained: Vec<_> = {
            let mut state = self.lock_state();
            if state.closed {
                return;
            }
            state.closed = true;
            state.pending.drain().map(|(_, tx)| tx).collect()
        };
        tracing::debug!(addr = %self.addr, reason, failed_calls = drained.len(), "connection closed");
        for tx in drained {
            let _ = tx.send(Err(self.closed_error()));
        }
        self.cancel.cancel();
    }
}

struct PendingGuard<'a> {
    conn: &'a Conn,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.lock_state().pending.remove(&self.opaque);
    }
}

async fn write_loop(conn: Arc<Conn>, mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break,
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        // Coalesce whatever else is queued into one write.
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break,
            r = wr.write_all(&batch) => r,
        };
        if let Err(e) = written {
            conn.close(&format!("write failed: {e}"));
            break;
        }
    }
}

async fn read_loop(
    conn: Arc<Conn>,
    rd: OwnedReadHalf,
    peer: SocketAddr,
    codec: FrameCodec,
    handler: HandlerCell,
    max_frame_length: usize,
) {
    let mut frames = FramedRead::new(rd, codec);
    let peer_requests = Arc::new(Semaphore::new(PEER_REQUESTS_IN_FLIGHT));
    let reason = loop {
        let next = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => break "closed locally".to_string(),
            next = frames.next() => next,
        };
        match next {
            None => break "closed by peer".to_string(),
            Some(Err(e)) => {
                // Oversized or undecodable frames (or a reset): worth a warning,
                // the waiting calls only see `Closed`.
                tracing::warn!(addr = %conn.addr, error = %e, "closing connection");
                break e.to_string();
            }
            Some(Ok(cmd)) if cmd.is_response() => conn.complete(cmd),
            Some(Ok(cmd)) => {
                answer_peer_request(&conn, cmd, peer, &handler, &peer_requests, max_frame_length)
                    .await
            }
        }
    };
    conn.close(&reason);
}

/// A request the peer sent us (flag bit 0 clear).
async fn answer_peer_request(
    conn: &Arc<Conn>,
    request: RemotingCommand,
    peer: SocketAddr,
    handler: &HandlerCell,
    slots: &Arc<Semaphore>,
    max_frame_length: usize,
) {
    let handler = handler.read().unwrap_or_else(|e| e.into_inner()).clone();
    let oneway = request.is_oneway();
    let Some(handler) = handler else {
        tracing::debug!(addr = %conn.addr, code = request.code, "peer request not supported");
        if !oneway {
            reply(conn, request.not_supported_response(), max_frame_length).await;
        }
        return;
    };
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        tracing::warn!(addr = %conn.addr, code = request.code, "too many peer requests in flight");
        if !oneway {
            let busy = request.respond_to(
                ResponseCode::SYSTEM_BUSY,
                Some("[OVERLOAD]system busy, start flow control for a while".to_string()),
            );
            reply(conn, busy, max_frame_length).await;
        }
        return;
    };
    let conn = conn.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let opaque = request.opaque;
        let handled = tokio::select! {
            biased;
            _ = conn.cancel.cancelled() => return,
            r = handler.handle(peer, request) => r,
        };
        if let (false, Some(mut response)) = (oneway, handled) {
            response.opaque = opaque;
            response.flag = (response.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
            reply(&conn, response, max_frame_length).await;
        }
    });
}

async fn reply(conn: &Conn, response: RemotingCommand, max_frame_length: usize) {
    match encode_frame(&response, max_frame_length) {
        Ok(frame) => {
            let _ = conn.send(frame).await;
        }
        Err(e) => {
            tracing::warn!(addr = %conn.addr, error = %e, "cannot encode answer to peer request")
        }
    }
}

/// Parses a success response's body; failures are `Malformed` errors naming the
/// peer address and the request code.
pub(crate) fn decode_body<T>(
    addr: &str,
    code: crate::codes::RequestCode,
    response: &RemotingCommand,
    parse: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    if response.body.is_empty() {
        return Err(RemotingError::Malformed {
            reason: format!("{code} answer from {addr} has no body"),
        });
    }
    parse(&response.body).map_err(|e| {
        let detail = match e {
            RemotingError::Malformed { reason } => reason,
            other => other.to_string(),
        };
        RemotingError::Malformed {
            reason: format!("{code} body from {addr}: {detail}"),
        }
    })
}
