//! A single-member etcd on free loopback ports, for tests.
//!
//! Fault tests need to take etcd away and bring it back unchanged, so the process keeps its
//! ports and data directory across [`EtcdProcess::stop`] / [`EtcdProcess::restart`]. Readiness
//! is established by polling a real etcd call, never by sleeping a fixed time.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use crate::{Result, TestkitError, free_port, require_part, tail};

/// How long `start`/`restart` wait for etcd to answer a request.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Launch attempts; a retry picks new ports in case another process took ours.
const START_ATTEMPTS: u32 = 3;
/// Pause between readiness probes (polling, not a readiness guess).
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Log lines shown when a test fails.
const TAIL_LINES: usize = 50;

/// A running `etcd` (single member) owned by a test; killed on drop.
///
/// Election timeout is 100 ms so the member elects itself at once and leases as short as
/// one second are granted as asked (etcd's minimum TTL is 1.5 × election timeout).
pub struct EtcdProcess {
    exe: PathBuf,
    /// `None` once the directory has been kept for a post-mortem.
    dir: Option<TempDir>,
    root: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdProcess {
    /// Starts etcd from `PATH` and waits (≤ 15 s) until it serves requests.
    ///
    /// Fails, never skips, when etcd is not installed.
    pub async fn start() -> Result<EtcdProcess> {
        let exe = require_part(
            "etcd",
            "install the Debian package etcd-server (scripts/test does this)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-etcd-")
            .tempdir()
            .map_err(|source| TestkitError::Io {
                context: "creating a temporary directory for etcd".into(),
                source,
            })?;
        let root = dir.path().to_path_buf();
        let mut etcd = EtcdProcess {
            exe,
            dir: Some(dir),
            root,
            client_port: 0,
            peer_port: 0,
            child: None,
        };
        let mut last_err = None;
        for attempt in 1..=START_ATTEMPTS {
            etcd.client_port = free_port();
            etcd.peer_port = loop {
                let p = free_port();
                if p != etcd.client_port {
                    break p;
                }
            };
            // A failed attempt may have initialised membership with its old ports.
            let _ = std::fs::remove_dir_all(etcd.data_dir());
            match etcd.launch_and_wait(attempt).await {
                Ok(()) => {
                    tracing::info!(endpoint = %etcd.endpoint(), dir = %etcd.root.display(), "etcd ready");
                    return Ok(etcd);
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "etcd did not start, retrying with new ports");
                    etcd.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt was made"))
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Where etcd keeps its data (survives stop/restart).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// etcd's combined stdout/stderr, appended to across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("etcd.log")
    }

    /// Whether the process is running (it may still be starting up).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops etcd gracefully (SIGTERM, then SIGKILL after 10 s). Ports and data are kept.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if child.try_wait().ok().flatten().is_none() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map_err(|source| TestkitError::Io {
                    context: "sending SIGTERM to etcd".into(),
                    source,
                })?;
            if status.success() {
                let deadline = Instant::now() + STOP_TIMEOUT;
                while Instant::now() < deadline {
                    if child.try_wait().ok().flatten().is_some() {
                        self.child = None;
                        return Ok(());
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                tracing::warn!("etcd ignored SIGTERM for {STOP_TIMEOUT:?}, killing it");
            }
        }
        self.kill();
        Ok(())
    }

    /// Kills etcd at once (SIGKILL), as a crash would. Ports and data are kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports with the same data; stops it first if running.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let mut last_err = None;
        for attempt in 1..=START_ATTEMPTS {
            match self.launch_and_wait(attempt).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "etcd did not restart, retrying");
                    self.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt was made"))
    }

    async fn launch_and_wait(&mut self, attempt: u32) -> Result<()> {
        let log = self.open_log()?;
        let _ = writeln!(
            &log,
            "=== ferry-testkit: launching etcd (attempt {attempt}) on client port {} ===",
            self.client_port
        );
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let stderr = log.try_clone().map_err(|source| TestkitError::Io {
            context: "duplicating the etcd log handle".into(),
            source,
        })?;
        let child = Command::new(&self.exe)
            .arg("--name=ferry-test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=ferry-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=ferry-test")
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|source| TestkitError::Io {
                context: format!("spawning {}", self.exe.display()),
                source,
            })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let endpoint = self.endpoint();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.not_ready(format!("etcd exited with {status}")));
            }
            let reason = match probe(&endpoint).await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!(
                    "no answer from {endpoint} within {READY_TIMEOUT:?}, last error: {reason}"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn not_ready(&self, reason: String) -> TestkitError {
        TestkitError::NotReady {
            what: "etcd".into(),
            reason: format!(
                "{reason}\n--- last lines of {} ---\n{}",
                self.log_path().display(),
                tail(&self.log_path(), TAIL_LINES)
            ),
            log: self.log_path().display().to_string(),
        }
    }

    fn open_log(&self) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|source| TestkitError::Io {
                context: format!("opening {}", self.log_path().display()),
                source,
            })
    }
}

/// One real request: connect and read a key, with short timeouts.
async fn probe(endpoint: &str) -> std::result::Result<(), String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        client
            .get("ferry-testkit-ready", None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .map_err(|_| "probe timed out".to_string())?
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_path();
            let kept: Option<&Path> = self.dir.take().map(|d| {
                let _ = d.keep();
                self.root.as_path()
            });
            // The test is failing: leave a post-mortem where the developer looks first.
            eprintln!(
                "etcd log: {} (directory {})\n--- last {TAIL_LINES} lines ---\n{}",
                log.display(),
                match kept {
                    Some(p) => format!("kept at {}", p.display()),
                    None => "already kept".into(),
                },
                tail(&log, TAIL_LINES)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_stops_and_restarts_with_same_port_and_data() {
        let mut etcd = EtcdProcess::start().await.expect("etcd must start");
        let endpoint = etcd.endpoint();
        let mut client = Client::connect([endpoint.as_str()], None).await.unwrap();
        client.put("k", "v", None).await.unwrap();

        etcd.stop().await.unwrap();
        assert!(!etcd.is_running());
        assert!(probe(&endpoint).await.is_err(), "etcd should be down");

        etcd.restart().await.unwrap();
        assert_eq!(etcd.endpoint(), endpoint);
        let mut client = Client::connect([endpoint.as_str()], None).await.unwrap();
        let resp = client.get("k", None).await.unwrap();
        assert_eq!(resp.kvs()[0].value(), b"v");

        let log = etcd.log_path();
        drop(etcd);
        assert!(
            !log.exists(),
            "temporary directory is removed on a clean drop"
        );
    }
}
