//! Server-side framing for RocketMQ remoting listeners (the router builds on it).
//!
//! [`serve_connections`] accepts TCP connections and, per connection, decodes frames
//! with [`FrameCodec`], hands requests to a [`RequestHandler`] and writes the answers
//! back with the request's opaque and the response flag, in completion order (clients
//! match by opaque, as Java's `responseTable` does).
//!
//! Resource bounds, so that no peer can make the server grow without limit:
//! - frames over `max_frame_length` and headers over `max_header_length` close the
//!   connection before anything is allocated for them (the codec checks the length
//!   prefixes first);
//! - at most `max_in_flight_per_connection` requests per connection are being handled
//!   or have an unwritten response; when that many are in flight the connection is
//!   not read at all, so TCP flow control pushes back on the sender. A slot is freed
//!   only once its response is in the kernel's socket buffer, so a peer that never
//!   reads its responses stalls itself, not the server's memory;
//! - a connection with no complete frame received, no response written and nothing in
//!   flight for `idle_timeout` is closed, including one trickling a frame byte by
//!   byte (the timer only restarts on *complete* frames); a response that cannot be
//!   written for `idle_timeout` (peer not reading) closes the connection too;
//! - at most `max_connections` connections are served; further ones are closed at
//!   once with a (rate-limited) log line.
//!
//! Decoding is as lenient as Java's NameServer (see [`RemotingCommand::decode`]):
//! `serializeTypeCurrentRPC` is optional, extFields may hold numbers, both header
//! encodings are accepted. Oneway requests are handled but never answered.
//!
//! Shutdown: stop accepting, stop reading new requests, let in-flight requests finish
//! and their responses be written for up to `drain_timeout`, then close what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;

use crate::codes::ResponseCode;
use crate::command::{FLAG_ONEWAY, FLAG_RESPONSE, RemotingCommand};
use crate::error::RemotingError;
use crate::frame::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec};

/// Handles one request. Return `None` to send nothing (the server never answers
/// oneway requests, whatever is returned). The response's opaque and flags are set
/// by the server.
///
/// Also used by [`crate::RemotingClient`] for requests a broker sends back over a
/// client connection (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED, ...).
#[async_trait::async_trait]
pub trait RequestHandler: Send + Sync {
    async fn handle(&self, peer: SocketAddr, request: RemotingCommand) -> Option<RemotingCommand>;
}

/// Limits and timeouts of [`serve_connections`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame accepted, counting the 4-byte length prefix (Netty's rule).
    pub max_frame_length: usize,
    /// Largest header accepted; real headers are a few KiB.
    pub max_header_length: usize,
    /// Requests per connection being handled or awaiting their write.
    pub max_in_flight_per_connection: usize,
    /// Close connections idle this long (see the module docs).
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            max_header_length: 64 * 1024,
            max_in_flight_per_connection: 64,
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then drains (see the module docs).
/// Returns once every connection is closed.
pub async fn serve_connections<F>(
    listener: TcpListener,
    handler: Arc<dyn RequestHandler>,
    config: ServerConfig,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let config = Arc::new(sanitize(config));
    let local = listener.local_addr().ok();
    let conn_slots = Arc::new(Semaphore::new(config.max_connections));
    // `stop`: finish what is in flight, read nothing new. `force`: abort everything.
    let stop = CancellationToken::new();
    let force = CancellationToken::new();
    let mut conns = JoinSet::new();
    let mut refusals = RefusalLog::default();
    tracing::info!(addr = ?local, "remoting server listening");

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            // Reap finished connection tasks so the set does not grow.
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("remoting connection task panicked");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = conn_slots.clone().try_acquire_owned() else {
                        refusals.refused(peer, config.max_connections);
                        drop(stream);
                        continue;
                    };
                    conns.spawn(serve_connection(
                        stream,
                        peer,
                        handler.clone(),
                        config.clone(),
                        stop.clone(),
                        force.child_token(),
                        slot,
                    ));
                }
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    drop(listener);
    tracing::info!(
        addr = ?local,
        connections = conns.len(),
        drain_ms = config.drain_timeout.as_millis() as u64,
        "remoting server shutting down; draining connections"
    );
    stop.cancel();
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            addr = ?local,
            remaining = conns.len(),
            "drain timeout elapsed; closing remaining connections"
        );
        force.cancel();
        conns.shutdown().await;
    }
    tracing::info!(addr = ?local, "remoting server stopped");
}

fn sanitize(mut c: ServerConfig) -> ServerConfig {
    c.max_in_flight_per_connection = c.max_in_flight_per_connection.max(1);
    c.max_connections = c.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    c.max_frame_length = c.max_frame_length.max(16);
    c
}

/// Logs refused connections at most once per second, with the count in between.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn refused(&mut self, peer: SocketAddr, limit: usize) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            %peer,
            limit,
            also_refused = self.suppressed,
            "connection limit reached; refusing connection"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Time of the last complete frame read or response written (ms since `base`).
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A response frame and the in-flight slot it occupies until written.
struct Outgoing {
    frame: Bytes,
    _slot: OwnedSemaphorePermit,
}

enum ReadEnd {
    /// Peer closed its side cleanly.
    Eof,
    /// Server shutdown: drain.
    Stop,
    /// Closed for us (write failure, forced shutdown).
    Cancelled,
    Idle,
    Undecodable(RemotingError),
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<dyn RequestHandler>,
    config: Arc<ServerConfig>,
    stop: CancellationToken,
    cancel: CancellationToken,
    _conn_slot: OwnedSemaphorePermit,
) {
    // Cancels this connection's request tasks however this task ends (even aborted).
    let _abort_requests = cancel.clone().drop_guard();
    let _ = stream.set_nodelay(true);
    tracing::debug!(%peer, "connection accepted");
    let (rd, wr) = stream.into_split();
    let activity = Arc::new(Activity::new());
    let (tx, rx) = mpsc::channel::<Outgoing>(config.max_in_flight_per_connection);
    let writer = tokio::spawn(write_loop(
        wr,
        rx,
        peer,
        config.idle_timeout,
        cancel.clone(),
        activity.clone(),
    ));

    let mut writer = writer;
    let end = read_loop(rd, peer, &handler, &config, &stop, &cancel, &activity, &tx).await;
    match end {
        ReadEnd::Eof => {
            // The peer may have only half-closed: answer what is in flight, but do
            // not hold the connection slot for longer than the idle timeout.
            tracing::debug!(%peer, "peer closed; finishing in-flight requests");
            drop(tx);
            tokio::select! {
                _ = &mut writer => return,
                _ = tokio::time::sleep(config.idle_timeout) => cancel.cancel(),
            }
        }
        ReadEnd::Stop => {
            // Let in-flight requests finish and their responses go out: the writer
            // ends when the last sender (held by request tasks) is gone. Bounded by
            // the server's drain timeout (which cancels `cancel`).
            tracing::debug!(%peer, "connection draining");
            drop(tx);
        }
        ReadEnd::Cancelled => {}
        ReadEnd::Idle => {
            tracing::info!(
                %peer,
                idle_ms = config.idle_timeout.as_millis() as u64,
                "closing idle connection (no complete frame within the idle timeout)"
            );
            cancel.cancel();
        }
        ReadEnd::Undecodable(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: undecodable frame");
            cancel.cancel();
        }
    }
    let _ = writer.await;
    tracing::debug!(%peer, "connection closed");
}

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    rd: OwnedReadHalf,
    peer: SocketAddr,
    handler: &Arc<dyn RequestHandler>,
    config: &Arc<ServerConfig>,
    stop: &CancellationToken,
    cancel: &CancellationToken,
    activity: &Arc<Activity>,
    tx: &mpsc::Sender<Outgoing>,
) -> ReadEnd {
    let codec = FrameCodec::with_max_frame_length(config.max_frame_length)
        .max_header_length(config.max_header_length);
    let mut frames = FramedRead::new(rd, codec);
    let max = config.max_in_flight_per_connection;
    let in_flight = Arc::new(Semaphore::new(max));
    loop {
        // Take a slot *before* reading: with `max` requests in flight the socket is
        // not read, so the peer's writes back up instead of our memory.
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => return ReadEnd::Cancelled,
            _ = stop.cancelled() => return ReadEnd::Stop,
            slot = in_flight.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => return ReadEnd::Cancelled, // never closed
            },
        };
        let next = loop {
            let deadline = activity.last() + config.idle_timeout;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return ReadEnd::Cancelled,
                _ = stop.cancelled() => return ReadEnd::Stop,
                next = frames.next() => break next,
                _ = tokio::time::sleep_until(deadline) => {
                    // Requests still being handled (we hold one slot ourselves): not idle.
                    if in_flight.available_permits() + 1 < max {
                        activity.touch();
                    } else if activity.last() + config.idle_timeout <= Instant::now() {
                        return ReadEnd::Idle;
                    }
                }
            }
        };
        let request = match next {
            None => return ReadEnd::Eof,
            Some(Err(e)) => return ReadEnd::Undecodable(e),
            Some(Ok(cmd)) => cmd,
        };
        activity.touch();
        if request.is_response() {
            // We never send requests on server connections; nothing can match it.
            tracing::debug!(%peer, opaque = request.opaque, "ignoring unsolicited response");
            continue;
        }
        tokio::spawn(handle_request(
            request,
            peer,
            handler.clone(),
            tx.clone(),
            slot,
            cancel.clone(),
            config.max_frame_length,
        ));
    }
}

async fn handle_request(
    request: RemotingCommand,
    peer: SocketAddr,
    handler: Arc<dyn RequestHandler>,
    tx: mpsc::Sender<Outgoing>,
    slot: OwnedSemaphorePermit,
    cancel: CancellationToken,
    max_frame_length: usize,
) {
    let oneway = request.is_oneway();
    let opaque = request.opaque;
    let code = request.code;
    // A panicking handler must not leave the caller waiting for its timeout.
    let handled = AssertUnwindSafe(handler.handle(peer, request)).catch_unwind();
    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => return,
        outcome = handled => outcome,
    };
    let response = match outcome {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(%peer, code, opaque, "request handler panicked");
            Some(RemotingCommand::response(
                ResponseCode::SYSTEM_ERROR,
                Some("internal error".to_string()),
            ))
        }
    };
    if oneway {
        return;
    }
    let Some(mut response) = response else {
        tracing::debug!(%peer, code, opaque, "handler returned no response");
        return;
    };
    response.opaque = opaque;
    response.flag = (response.flag | FLAG_RESPONSE) & !FLAG_ONEWAY;
    let frame = match encode_frame(&response, max_frame_length) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(%peer, code, opaque, error = %e, "response cannot be encoded");
            let fallback = RemotingCommand::response(
                ResponseCode::SYSTEM_ERROR,
                Some(format!("response cannot be encoded: {e}")),
            )
            .with_opaque(opaque);
            match encode_frame(&fallback, max_frame_length) {
                Ok(f) => f,
                Err(_) => return,
            }
        }
    };
    // Fails only when the connection is closing; the slot is released either way.
    let _ = tx.send(Outgoing { frame, _slot: slot }).await;
}

/// Encodes a whole frame, enforcing `max` (prefix included) like the codec.
pub(crate) fn encode_frame(cmd: &RemotingCommand, max: usize) -> crate::Result<Bytes> {
    let mut buf = BytesMut::new();
    FrameCodec::with_max_frame_length(max).encode(cmd, &mut buf)?;
    Ok(buf.freeze())
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    peer: SocketAddr,
    write_timeout: Duration,
    cancel: CancellationToken,
    activity: Arc<Activity>,
) {
    loop {
        let out = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            out = rx.recv() => match out {
                Some(o) => o,
                None => break,
            },
        };
        let written = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(write_timeout, wr.write_all(&out.frame)) => r,
        };
        match written {
            Ok(Ok(())) => activity.touch(),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "write failed; closing connection");
                cancel.cancel();
                return;
            }
            Err(_) => {
                tracing::info!(
                    %peer,
                    timeout_ms = write_timeout.as_millis() as u64,
                    "peer is not reading its responses; closing connection"
                );
                cancel.cancel();
                return;
            }
        }
        // `out` (and its in-flight slot) is released here, after the write.
    }
    // Drained: send FIN so the peer sees a clean close.
    let _ = wr.shutdown().await;
}
