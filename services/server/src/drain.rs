//! Accepted connections that can be cut off when the drain deadline passes.
//!
//! tonic drains gracefully but without a bound: it waits for every connection
//! to close, and connection tasks outlive a dropped server future. Wrapping each
//! socket lets the server fail all remaining I/O at the deadline, which ends the
//! connection tasks (and the calls on them) promptly.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A TCP connection whose I/O fails with `ConnectionAborted` once `kill` fires.
pub(crate) struct DrainableIo {
    io: TcpStream,
    kill: Pin<Box<WaitForCancellationFutureOwned>>,
    killed: bool,
}

impl DrainableIo {
    fn new(io: TcpStream, kill: CancellationToken) -> Self {
        Self {
            io,
            kill: Box::pin(kill.cancelled_owned()),
            killed: false,
        }
    }

    /// Also registers the waker, so a connection parked on I/O wakes up and
    /// observes the kill.
    fn poll_killed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.killed && self.kill.as_mut().poll(cx).is_ready() {
            self.killed = true;
        }
        self.killed
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "drain timeout: connection closed by server",
    )
}

impl AsyncRead for DrainableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for DrainableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for DrainableIo {
    // Keeps `Request::remote_addr()` working for handlers.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepted connections as the stream tonic serves. Accept errors (e.g. out
/// of file descriptors) are logged and retried after a pause instead of being
/// surfaced, which would make tonic spin on them.
pub(crate) fn incoming(
    listener: TcpListener,
    kill: CancellationToken,
) -> impl Stream<Item = io::Result<DrainableIo>> {
    futures::stream::unfold((listener, kill), |(listener, kill)| async move {
        loop {
            match listener.accept().await {
                Ok((io, peer)) => {
                    // gRPC is latency-bound small frames; Nagle only adds delay.
                    if let Err(err) = io.set_nodelay(true) {
                        tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
                    }
                    let conn = DrainableIo::new(io, kill.clone());
                    return Some((Ok(conn), (listener, kill)));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}
