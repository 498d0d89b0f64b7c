//! A Ferry binary (or any service process) run by a test: output to a log file, SIGTERM to
//! stop gracefully, killed on drop, log tail printed when the test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Result, TestkitError, tail};

/// Pause between polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Log lines shown when a test fails.
const TAIL_LINES: usize = 60;

/// A child process owned by a test.
pub struct ServiceProcess {
    name: String,
    child: Option<Child>,
    /// Working directory, log and any files the test puts there; kept if the test fails.
    dir: Option<TempDir>,
    root: PathBuf,
}

impl ServiceProcess {
    /// Spawns `exe args…` with `envs`, stdout and stderr into `<dir>/<name>.log`. The working
    /// directory is a fresh temporary directory ([`Self::dir`]).
    pub fn spawn(
        name: &str,
        exe: impl AsRef<Path>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<ServiceProcess> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-{name}-"))
            .tempdir()
            .map_err(|source| TestkitError::Io {
                context: format!("creating a temporary directory for {name}"),
                source,
            })?;
        let root = dir.path().to_path_buf();
        let log =
            File::create(root.join(format!("{name}.log"))).map_err(|source| TestkitError::Io {
                context: format!("creating the log of {name}"),
                source,
            })?;
        let log2 = log.try_clone().map_err(|source| TestkitError::Io {
            context: format!("duplicating the log of {name}"),
            source,
        })?;
        let child = Command::new(exe.as_ref())
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| TestkitError::Io {
                context: format!("starting {} ({name})", exe.as_ref().display()),
                source,
            })?;
        Ok(ServiceProcess {
            name: name.to_string(),
            child: Some(child),
            dir: Some(dir),
            root,
        })
    }

    /// The process's working directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.root.join(format!("{}.log", self.name))
    }

    /// Process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Polls until `path` (relative to [`Self::dir`]) exists and is non-empty, returning its
    /// trimmed contents; fails if the process exits first or `timeout` passes.
    pub async fn wait_for_file(&mut self, path: &str, timeout: Duration) -> Result<String> {
        let path = self.root.join(path);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.trim().is_empty()
            {
                return Ok(text.trim().to_string());
            }
            if let Some(status) = self.try_status() {
                return Err(self.failure(format!(
                    "exited with {status} before writing {}",
                    path.display()
                )));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(format!(
                    "did not write {} within {timeout:?}",
                    path.display()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status; kills it after that and
    /// returns an error.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.failure("was not running".into()));
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(format!("ignored SIGTERM for {timeout:?}; killed")));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn failure(&self, what: String) -> TestkitError {
        TestkitError::Failed {
            what: format!("{} {what}", self.name),
            log_tail: tail(&self.log_path(), TAIL_LINES),
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "--- {} log (kept in {}) ---\n{}",
                self.name,
                kept.display(),
                tail(&kept.join(format!("{}.log", self.name)), TAIL_LINES)
            );
        }
    }
}
