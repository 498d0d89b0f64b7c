//! Loopback helpers for the client/server tests: a closure-based handler, a server
//! running `serve_connections` on 127.0.0.1, raw frame I/O, dead and black-hole
//! addresses. Every wait is bounded.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use ferry_remoting::{
    FrameCodec, RemotingCommand, RequestHandler, ServerConfig, serve_connections,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;

pub type BoxFut = Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send>>;

/// A handler from a closure; counts calls.
pub struct FnHandler<F> {
    f: F,
    pub calls: AtomicUsize,
}

impl<F> FnHandler<F>
where
    F: Fn(SocketAddr, RemotingCommand) -> BoxFut + Send + Sync + 'static,
{
    pub fn new(f: F) -> Arc<Self> {
        Arc::new(FnHandler {
            f,
            calls: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl<F> RequestHandler for FnHandler<F>
where
    F: Fn(SocketAddr, RemotingCommand) -> BoxFut + Send + Sync + 'static,
{
    async fn handle(&self, peer: SocketAddr, request: RemotingCommand) -> Option<RemotingCommand> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.f)(peer, request).await
    }
}

/// Answers every request SUCCESS, echoing ext field `id` and the body.
pub fn echo(_peer: SocketAddr, req: RemotingCommand) -> BoxFut {
    Box::pin(async move {
        let mut resp = req.respond_to(0, None).with_body(req.body.clone());
        if let Some(id) = req.ext("id") {
            resp = resp.with_ext_field("id", id);
        }
        Some(resp)
    })
}

pub struct TestServer {
    pub addr: String,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(handler: Arc<dyn RequestHandler>, config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(serve_connections(listener, handler, config, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            shutdown: Some(tx),
            join: Some(join),
        }
    }

    /// Triggers shutdown (without waiting).
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Triggers shutdown and waits (bounded) for `serve_connections` to return.
    pub async fn shutdown(mut self, within: Duration) -> bool {
        self.trigger_shutdown();
        let join = self.join.take().unwrap();
        tokio::time::timeout(within, join).await.is_ok()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
        if let Some(j) = self.join.take() {
            j.abort();
        }
    }
}

/// An address nothing listens on (bound once, then released): connects are refused.
pub async fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

/// A listener whose accept queue is full, so new connects hang (SYNs are dropped).
/// Returns `None` if the kernel does not behave that way.
pub struct BlackHole {
    pub addr: String,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<std::net::TcpStream>,
}

pub async fn black_hole() -> Option<BlackHole> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let attempt = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300))
        })
        .await
        .unwrap();
        match attempt {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Some(BlackHole {
                    addr: addr.to_string(),
                    _listener: listener,
                    _fillers: fillers,
                });
            }
            Err(_) => return None,
        }
    }
    None
}

pub fn frame(cmd: &RemotingCommand) -> Vec<u8> {
    cmd.to_frame().unwrap().to_vec()
}

/// Reads one frame (bounded); `None` on EOF, error or timeout.
pub async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    within: Duration,
) -> Option<RemotingCommand> {
    let mut codec = FrameCodec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(cmd) = codec.decode(buf).ok()? {
            return Some(cmd);
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one raw frame (prefix included) as bytes, bounded.
pub async fn read_raw_frame(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    tokio::time::timeout(within, async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.ok()?;
        let total = u32::from_be_bytes(len) as usize;
        let mut rest = vec![0u8; total];
        stream.read_exact(&mut rest).await.ok()?;
        let mut all = len.to_vec();
        all.extend_from_slice(&rest);
        Some(all)
    })
    .await
    .ok()
    .flatten()
}

/// The JSON header text of a raw frame (prefix included).
pub fn header_text(raw: &[u8]) -> String {
    let header_len = u32::from_be_bytes([0, raw[5], raw[6], raw[7]]) as usize;
    String::from_utf8_lossy(&raw[8..8 + header_len]).into_owned()
}

/// True if the peer closes the connection within `within` (EOF or reset); data
/// received meanwhile is discarded.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

pub async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await
}

/// Polls `cond` every 10 ms until true or `within` elapses.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
