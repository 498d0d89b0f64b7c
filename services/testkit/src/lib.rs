//! Real parts for Ferry's tests.
//!
//! Ferry's tests run against the real things it talks to in production, not mocks: an `etcd`
//! process ([`EtcdProcess`]), RocketMQ clusters of NameServer + broker processes
//! ([`rocketmq::RocketMqCluster`], [`rocketmq::TwoClusters`]) and, with the cargo feature
//! `rocketmq-client`, real producers and consumers counting messages by key
//! (`traffic::{TrafficProducer, TrafficConsumer, Ledger}`). Every part
//!
//! - is found on `PATH` (installed by `scripts/test`), or for the RocketMQ peers in the cache
//!   `scripts/install-peers` fills; a missing part is an **error that fails the test**, never a
//!   skip. Under CI (`CI=true`) this is the same: see [`require_part`], the one place that
//!   builds that error;
//! - listens on free loopback ports ([`free_port`]), so tests run in parallel;
//! - keeps its data and log in a temporary directory, is killed when dropped, and when the
//!   test is failing (the thread is panicking at drop) prints where its log is plus the last
//!   lines of it and keeps the directory for a post-mortem.
//!
//! ```no_run
//! # async fn demo() -> ferry_testkit::Result<()> {
//! let mut etcd = ferry_testkit::EtcdProcess::start().await?;
//! let endpoint = etcd.endpoint(); // "http://127.0.0.1:PORT"
//! etcd.stop().await?; // fault injection: etcd is down ...
//! etcd.restart().await?; // ... and back, same ports and data
//! # Ok(()) }
//! ```

mod etcd;
mod process;
pub mod rocketmq;
#[cfg(feature = "rocketmq-client")]
pub mod traffic;

pub use etcd::EtcdProcess;
pub use process::ServiceProcess;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

/// What can go wrong while starting a test part.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A required executable is not installed.
    #[error("{what} not found on PATH: {how}")]
    MissingPart { what: String, how: String },
    /// The part started but never became ready, or exited.
    #[error("{what} did not become ready: {reason} (log: {log})")]
    NotReady {
        what: String,
        reason: String,
        log: String,
    },
    /// Spawning, signalling or file handling failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A process did something a test did not expect (exited early, ignored SIGTERM, ...).
    #[error("{what}; last log lines:\n{log_tail}")]
    Failed { what: String, log_tail: String },
    /// A request to a part failed or was answered with an error (raw RocketMQ remoting,
    /// a client send, a wait for messages that did not arrive).
    #[error("{what}: {reason}")]
    Request { what: String, reason: String },
}

/// Result of testkit operations.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;

/// True when running under CI (`CI=true`, as `.ci/run` sets it).
///
/// Informational only: a missing part fails the test everywhere, CI or not, so a green run
/// always means the real part was exercised.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `exe` on `PATH`, or returns the error that fails the test, saying how to install it.
///
/// `how` is the install hint, e.g. "install the Debian package etcd-server (scripts/test does
/// this)". There is deliberately no way to turn this into a skip.
pub fn require_part(exe: &str, how: &str) -> Result<PathBuf> {
    find_on_path(exe).ok_or_else(|| TestkitError::MissingPart {
        what: exe.to_string(),
        how: if in_ci() {
            format!("{how}; CI=true and every part is required")
        } else {
            how.to_string()
        },
    })
}

fn find_on_path(exe: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(exe))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
///
/// Another process may grab it before the part binds it; starters retry on that.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 must work on a test machine")
}

/// The last `n` lines of a log file, or a note saying why it could not be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port should still be free");
    }

    #[test]
    fn missing_part_is_an_error_with_install_hint() {
        let err = require_part("definitely-not-a-ferry-part", "install it").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("definitely-not-a-ferry-part not found on PATH: install it"),
            "{msg}"
        );
    }

    #[test]
    fn tail_returns_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
    }
}
