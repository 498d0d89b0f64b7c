//! The embedded backend: etcd semantics in one process, durable in a directory.
//!
//! `ferry standalone` runs every service in one process with no etcd to operate, and unit
//! tests want a store that starts in microseconds. This backend keeps the whole key space in
//! a `BTreeMap` with the same store-wide revision counter as etcd, so the domain layer cannot
//! tell the difference (the conformance suite checks that).
//!
//! **Durability.** Every committed transaction is one JSON line in `log.jsonl`
//! (`{"rev":N,"changes":[...]}`), written and fsync'd *before* the change becomes visible and
//! before `txn` returns. On open, `snapshot.json` (if any) is loaded and the log replayed on
//! top. A torn last line (crash mid-write) was never acknowledged, so it is dropped with a
//! warning and cut off the file; a bad line in the middle is corruption and fails the open.
//! When the log passes [`EmbeddedOptions::compact_log_bytes`] the state is written to a
//! temporary file, fsync'd, renamed over `snapshot.json`, and the log truncated; a crash in
//! between is harmless because replay skips log records already in the snapshot.
//!
//! **Watches** get live changes from a broadcast channel and resume from an in-memory history
//! of the last [`EmbeddedOptions::history_limit`] events; anything older (or from before the
//! process started) is [`StoreError::Compacted`], like a compacted etcd.
//!
//! **Leases** expire in-process: a background task deletes the leased keys at the deadline,
//! emitting delete events. Leased keys are never restored by an open: the lease died with the
//! process that held it.
//!
//! A directory is used by one process at a time (an exclusive lock on `LOCK`).
//!
//! Commits are serialised by an async mutex; readers use a separate short-held lock, so reads
//! never wait for an fsync.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::error::{Result, StoreError};
use crate::kv::{
    Compare, KeyValue, KvBackend, Op, RangePage, Txn, TxnOutcome, WatchEvent, WatchEventKind,
    WatchStream,
};

const LOG_FILE: &str = "log.jsonl";
const SNAPSHOT_FILE: &str = "snapshot.json";
const SNAPSHOT_TMP: &str = "snapshot.json.tmp";
const LOCK_FILE: &str = "LOCK";
const SNAPSHOT_FORMAT: u32 = 1;
/// Revisions buffered per watcher before it must catch up from history.
const BROADCAST_CAPACITY: usize = 1024;

/// Tuning of the embedded backend.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Compact the log into a snapshot once it is larger than this many bytes.
    pub compact_log_bytes: u64,
    /// How many past events watches can resume from.
    pub history_limit: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            compact_log_bytes: 8 * 1024 * 1024,
            history_limit: 10_000,
        }
    }
}

/// The embedded backend. Cheap to clone; clones share one store.
#[derive(Clone)]
pub struct EmbeddedBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

struct Shared {
    dir: Option<PathBuf>,
    options: EmbeddedOptions,
    state: RwLock<State>,
    /// Serialises commits; holds the log when file-backed.
    commit: tokio::sync::Mutex<Option<Durable>>,
    events: broadcast::Sender<Arc<Batch>>,
    /// Wakes the lease reaper (new lease, or the store is going away).
    lease_wake: Arc<Notify>,
    reaper_started: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.lease_wake.notify_one();
    }
}

#[derive(Default)]
struct State {
    data: BTreeMap<String, Entry>,
    revision: i64,
    leases: HashMap<i64, Lease>,
    next_lease: i64,
    history: VecDeque<WatchEvent>,
    /// Revisions up to this one are not (fully) in `history`.
    compacted_through: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct Durable {
    dir: PathBuf,
    log: Arc<File>,
    log_bytes: u64,
    /// Held for the lifetime of the store: the exclusive directory lock.
    _lock: File,
}

/// All events of one revision.
struct Batch {
    revision: i64,
    events: Vec<WatchEvent>,
}

/// One resolved change of a transaction (deletes of absent keys are dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Change {
    #[serde(rename = "k")]
    key: String,
    /// `None` deletes the key.
    #[serde(rename = "v")]
    value: Option<LogValue>,
    #[serde(default, skip_serializing_if = "is_zero")]
    lease: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Values as readable text when they are UTF-8 (ours are JSON), raw bytes otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum LogValue {
    Text(String),
    Bytes(Vec<u8>),
}

impl LogValue {
    fn from_bytes(bytes: Vec<u8>) -> LogValue {
        match String::from_utf8(bytes) {
            Ok(s) => LogValue::Text(s),
            Err(e) => LogValue::Bytes(e.into_bytes()),
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        match self {
            LogValue::Text(s) => s.into_bytes(),
            LogValue::Bytes(b) => b,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LogRecord {
    rev: i64,
    changes: Vec<Change>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    format: u32,
    revision: i64,
    kvs: Vec<SnapshotKv>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotKv {
    #[serde(rename = "k")]
    key: String,
    #[serde(rename = "v")]
    value: LogValue,
    #[serde(rename = "c")]
    create_revision: i64,
    #[serde(rename = "m")]
    mod_revision: i64,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl EmbeddedBackend {
    /// A store that lives only in memory, for unit tests.
    pub fn in_memory() -> EmbeddedBackend {
        Self::build(None, EmbeddedOptions::default(), State::default(), None)
    }

    /// Opens (creating if needed) a file-backed store in `dir`.
    pub async fn open(dir: impl AsRef<Path>) -> Result<EmbeddedBackend> {
        Self::open_with(dir, EmbeddedOptions::default()).await
    }

    /// Opens (creating if needed) a file-backed store in `dir` with explicit options.
    pub async fn open_with(
        dir: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<EmbeddedBackend> {
        let dir = dir.as_ref().to_path_buf();
        let loaded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || load(&dir))
                .await
                .map_err(|e| StoreError::io("opening the embedded store", e.into()))??
        };
        let (state, durable) = loaded;
        tracing::info!(
            dir = %dir.display(),
            revision = state.revision,
            keys = state.data.len(),
            "embedded store opened"
        );
        Ok(Self::build(Some(dir), options, state, Some(durable)))
    }

    fn build(
        dir: Option<PathBuf>,
        options: EmbeddedOptions,
        state: State,
        durable: Option<Durable>,
    ) -> EmbeddedBackend {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        EmbeddedBackend {
            shared: Arc::new(Shared {
                dir,
                options,
                state: RwLock::new(state),
                commit: tokio::sync::Mutex::new(durable),
                events,
                lease_wake: Arc::new(Notify::new()),
                reaper_started: AtomicBool::new(false),
            }),
        }
    }

    /// The directory of a file-backed store.
    pub fn dir(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    /// Writes a snapshot and truncates the log now (normally automatic).
    pub async fn compact(&self) -> Result<()> {
        let mut durable = self.shared.commit.lock().await;
        if let Some(d) = durable.as_mut() {
            self.shared.write_snapshot(d).await?;
        }
        Ok(())
    }
}

impl Shared {
    /// Evaluates and applies a transaction; the only way state changes (besides lease
    /// deadlines).
    async fn commit(&self, txn: &Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let mut durable = self.commit.lock().await;
        let (succeeded, changes, revision) = {
            let st = read(&self.state);
            let succeeded = txn.compares.iter().all(|c| st.holds(c));
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            (succeeded, st.resolve(ops)?, st.revision)
        };
        if changes.is_empty() {
            return Ok(TxnOutcome {
                succeeded,
                revision,
            });
        }
        let revision = self.persist_and_apply(&mut durable, changes).await?;
        Ok(TxnOutcome {
            succeeded,
            revision,
        })
    }

    /// Logs (fsync) then applies `changes` as the next revision. Caller holds the commit lock.
    async fn persist_and_apply(
        &self,
        durable: &mut Option<Durable>,
        changes: Vec<Change>,
    ) -> Result<i64> {
        let revision = read(&self.state).revision + 1;
        let record = LogRecord {
            rev: revision,
            changes,
        };
        if let Some(d) = durable.as_mut() {
            let mut line = serde_json::to_vec(&record).map_err(|e| StoreError::Corrupt {
                key: "(log record)".into(),
                reason: e.to_string(),
            })?;
            line.push(b'\n');
            let len = line.len() as u64;
            let log = d.log.clone();
            let path = d.dir.join(LOG_FILE);
            let committed_len = d.log_bytes;
            tokio::task::spawn_blocking(move || {
                let result = (&*log).write_all(&line).and_then(|()| log.sync_data());
                if result.is_err() {
                    // Not acknowledged, so it must not come back on replay either.
                    let _ = log.set_len(committed_len);
                }
                result
            })
            .await
            .map_err(|e| StoreError::io("writing the embedded store log", e.into()))?
            .map_err(|e| StoreError::io(format!("appending to {}", path.display()), e))?;
            d.log_bytes += len;
        }
        {
            let mut st = write(&self.state);
            let batch = st.apply(record, self.options.history_limit);
            // Sent under the write lock so a watcher subscribing under the read lock sees
            // each revision exactly once: in history or on the channel.
            let _ = self.events.send(Arc::new(batch));
        }
        if let Some(d) = durable.as_mut()
            && d.log_bytes > self.options.compact_log_bytes
            && let Err(e) = self.write_snapshot(d).await
        {
            // The transaction is committed either way; the log just keeps growing until a
            // later compaction succeeds.
            tracing::warn!(error = %e, "embedded store compaction failed");
        }
        Ok(revision)
    }

    /// Snapshot to a temp file, fsync, rename, fsync dir, truncate the log.
    async fn write_snapshot(&self, d: &mut Durable) -> Result<()> {
        let snapshot = {
            let st = read(&self.state);
            Snapshot {
                format: SNAPSHOT_FORMAT,
                revision: st.revision,
                kvs: st
                    .data
                    .iter()
                    .filter(|(_, e)| e.lease == 0)
                    .map(|(k, e)| SnapshotKv {
                        key: k.clone(),
                        value: LogValue::from_bytes(e.value.clone()),
                        create_revision: e.create_revision,
                        mod_revision: e.mod_revision,
                    })
                    .collect(),
            }
        };
        let dir = d.dir.clone();
        let log = d.log.clone();
        let revision = snapshot.revision;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let tmp = dir.join(SNAPSHOT_TMP);
            let mut f = File::create(&tmp)?;
            serde_json::to_writer(&mut f, &snapshot)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
            File::open(&dir)?.sync_all()?;
            log.set_len(0)?;
            log.sync_all()
        })
        .await
        .map_err(|e| StoreError::io("compacting the embedded store", e.into()))?
        .map_err(|e| StoreError::io(format!("writing a snapshot in {}", d.dir.display()), e))?;
        d.log_bytes = 0;
        tracing::info!(dir = %d.dir.display(), revision, "embedded store log compacted into a snapshot");
        Ok(())
    }

    /// Deletes the keys of `lease` (one revision) and forgets it.
    async fn drop_lease(&self, lease: i64) -> Result<()> {
        let mut durable = self.commit.lock().await;
        let changes: Vec<Change> = {
            let st = read(&self.state);
            match st.leases.get(&lease) {
                Some(l) => l
                    .keys
                    .iter()
                    .filter(|k| st.data.contains_key(*k))
                    .map(|k| Change {
                        key: k.clone(),
                        value: None,
                        lease: 0,
                    })
                    .collect(),
                None => return Ok(()),
            }
        };
        if !changes.is_empty() {
            self.persist_and_apply(&mut durable, changes).await?;
        }
        write(&self.state).leases.remove(&lease);
        Ok(())
    }

    fn next_lease_deadline(&self) -> Option<Instant> {
        read(&self.state).leases.values().map(|l| l.deadline).min()
    }

    fn expired_leases(&self) -> Vec<i64> {
        let now = Instant::now();
        read(&self.state)
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Expires leases at their deadlines; ends when the store is dropped.
async fn lease_reaper(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            for lease in shared.expired_leases() {
                tracing::debug!(lease, "embedded lease expired");
                if let Err(e) = shared.drop_lease(lease).await {
                    tracing::warn!(lease, error = %e, "could not expire embedded lease");
                }
            }
            shared.next_lease_deadline()
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl State {
    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::ModRevision(key, rev) => {
                self.data.get(key).map_or(0, |e| e.mod_revision) == *rev
            }
            Compare::Absent(key) => !self.data.contains_key(key),
            Compare::ValueEquals(key, value) => {
                self.data.get(key).is_some_and(|e| e.value == *value)
            }
        }
    }

    /// Turns ops into concrete changes against the current state.
    fn resolve(&self, ops: &[Op]) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        let mut deleted = HashSet::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let lease = lease.unwrap_or(0);
                    if lease != 0 && !self.leases.contains_key(&lease) {
                        return Err(StoreError::not_found("lease", lease.to_string()));
                    }
                    changes.push(Change {
                        key: key.clone(),
                        value: Some(LogValue::from_bytes(value.clone())),
                        lease,
                    });
                }
                Op::Delete { key } => {
                    if self.data.contains_key(key) && deleted.insert(key.clone()) {
                        changes.push(Change {
                            key: key.clone(),
                            value: None,
                            lease: 0,
                        });
                    }
                }
                Op::DeletePrefix { prefix } => {
                    for key in self.keys_with_prefix(prefix, None) {
                        if deleted.insert(key.to_string()) {
                            changes.push(Change {
                                key: key.to_string(),
                                value: None,
                                lease: 0,
                            });
                        }
                    }
                }
            }
        }
        Ok(changes)
    }

    fn keys_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.entries_with_prefix(prefix, start_after)
            .map(|(k, _)| k)
    }

    fn entries_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        self.data
            .range((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Applies one logged revision (also used by replay). Returns its watch events.
    fn apply(&mut self, record: LogRecord, history_limit: usize) -> Batch {
        let rev = record.rev;
        let mut events = Vec::with_capacity(record.changes.len());
        for change in record.changes {
            let old = match change.value {
                Some(value) => {
                    let value = value.into_bytes();
                    let old = self.data.get(&change.key).cloned();
                    let entry = Entry {
                        value: value.clone(),
                        create_revision: old.as_ref().map_or(rev, |o| o.create_revision),
                        mod_revision: rev,
                        lease: change.lease,
                    };
                    if change.lease != 0
                        && let Some(l) = self.leases.get_mut(&change.lease)
                    {
                        l.keys.insert(change.key.clone());
                    }
                    self.data.insert(change.key.clone(), entry);
                    events.push(WatchEvent {
                        kind: WatchEventKind::Put,
                        key: change.key.clone(),
                        value,
                        mod_revision: rev,
                    });
                    old.filter(|o| o.lease != change.lease)
                }
                None => {
                    let old = self.data.remove(&change.key);
                    events.push(WatchEvent {
                        kind: WatchEventKind::Delete,
                        key: change.key.clone(),
                        value: Vec::new(),
                        mod_revision: rev,
                    });
                    old
                }
            };
            if let Some(old) = old
                && old.lease != 0
                && let Some(l) = self.leases.get_mut(&old.lease)
            {
                l.keys.remove(&change.key);
            }
        }
        self.revision = rev;
        self.history.extend(events.iter().cloned());
        while self.history.len() > history_limit {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted_through = self.compacted_through.max(evicted.mod_revision);
            }
        }
        Batch {
            revision: rev,
            events,
        }
    }

    fn kv(key: &str, e: &Entry) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: e.value.clone(),
            create_revision: e.create_revision,
            mod_revision: e.mod_revision,
            lease: e.lease,
        }
    }
}

/// Reads snapshot + log from `dir` (blocking). Returns the state and the open log.
fn load(dir: &Path) -> Result<(State, Durable)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::io(format!("opening {}", lock_path.display()), e))?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => StoreError::io(
            format!(
                "embedded store at {} is in use by another process (or another open in this one)",
                dir.display()
            ),
            std::io::Error::from(std::io::ErrorKind::WouldBlock),
        ),
        std::fs::TryLockError::Error(e) => {
            StoreError::io(format!("locking {}", lock_path.display()), e)
        }
    })?;

    let mut state = State::default();
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&snapshot_path) {
        Ok(bytes) => {
            let snapshot: Snapshot =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    key: snapshot_path.display().to_string(),
                    reason: e.to_string(),
                })?;
            if snapshot.format != SNAPSHOT_FORMAT {
                return Err(StoreError::Corrupt {
                    key: snapshot_path.display().to_string(),
                    reason: format!(
                        "snapshot format {} is not supported (expected {SNAPSHOT_FORMAT})",
                        snapshot.format
                    ),
                });
            }
            state.revision = snapshot.revision;
            for kv in snapshot.kvs {
                state.data.insert(
                    kv.key,
                    Entry {
                        value: kv.value.into_bytes(),
                        create_revision: kv.create_revision,
                        mod_revision: kv.mod_revision,
                        lease: 0,
                    },
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::io(
                format!("reading {}", snapshot_path.display()),
                e,
            ));
        }
    }

    let log_path = dir.join(LOG_FILE);
    let bytes = match std::fs::read(&log_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StoreError::io(format!("reading {}", log_path.display()), e)),
    };
    let good_len = replay(&mut state, &bytes, &log_path)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| StoreError::io(format!("opening {}", log_path.display()), e))?;
    if good_len < bytes.len() {
        log.set_len(good_len as u64)
            .and_then(|()| log.sync_all())
            .map_err(|e| StoreError::io(format!("truncating {}", log_path.display()), e))?;
    }

    // The leases died with the process that held them.
    let before = state.data.len();
    state.data.retain(|_, e| e.lease == 0);
    if state.data.len() != before {
        tracing::info!(
            dropped = before - state.data.len(),
            "embedded store: leased keys from the previous process dropped"
        );
    }
    state.compacted_through = state.revision;
    state.next_lease = 1;

    Ok((
        state,
        Durable {
            dir: dir.to_path_buf(),
            log: Arc::new(log),
            log_bytes: good_len as u64,
            _lock: lock,
        },
    ))
}

/// Replays log `bytes` into `state`; returns the length of the valid prefix.
fn replay(state: &mut State, bytes: &[u8], path: &Path) -> Result<usize> {
    let mut offset = 0;
    let mut line_no = 0;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(complete);
        if line.iter().all(u8::is_ascii_whitespace) {
            offset = next;
            continue;
        }
        let parsed = if complete {
            serde_json::from_slice::<LogRecord>(line).ok()
        } else {
            None
        };
        match parsed {
            Some(record) => {
                if record.rev > state.revision {
                    state.apply(record, 0);
                }
            }
            None if next >= bytes.len() => {
                tracing::warn!(
                    path = %path.display(),
                    line = line_no,
                    bytes = line.len(),
                    "ignoring torn last line of the embedded store log (crash during a write that was never acknowledged)"
                );
                return Ok(offset);
            }
            None => {
                return Err(StoreError::Corrupt {
                    key: format!("{}:{line_no}", path.display()),
                    reason: "unreadable log record before the end of the log".into(),
                });
            }
        }
        offset = next;
    }
    state.history.clear();
    Ok(offset)
}

#[async_trait]
impl KvBackend for EmbeddedBackend {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let st = read(&self.shared.state);
        Ok(st.data.get(key).map(|e| State::kv(key, e)))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
    ) -> Result<RangePage> {
        let st = read(&self.shared.state);
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut iter = st.entries_with_prefix(prefix, start_after.as_deref());
        let kvs: Vec<KeyValue> = iter
            .by_ref()
            .take(limit)
            .map(|(k, e)| State::kv(k, e))
            .collect();
        let more = iter.next().is_some();
        Ok(RangePage {
            kvs,
            more,
            revision: st.revision,
        })
    }

    async fn range_by_create_revision(
        &self,
        prefix: &str,
        after_revision: i64,
        limit: usize,
    ) -> Result<RangePage> {
        let st = read(&self.shared.state);
        let mut kvs: Vec<KeyValue> = st
            .entries_with_prefix(prefix, None)
            .filter(|(_, e)| e.create_revision > after_revision)
            .map(|(k, e)| State::kv(k, e))
            .collect();
        kvs.sort_by(|a, b| (a.create_revision, &a.key).cmp(&(b.create_revision, &b.key)));
        let more = limit != 0 && kvs.len() > limit;
        if more {
            kvs.truncate(limit);
        }
        Ok(RangePage {
            kvs,
            more,
            revision: st.revision,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        self.shared.commit(&txn).await
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(read(&self.shared.state).revision)
    }

    async fn watch_prefix(&self, prefix: &str, from_revision: Option<i64>) -> Result<WatchStream> {
        let (rx, backlog, next_rev) = {
            let st = read(&self.shared.state);
            let from = from_revision.unwrap_or(st.revision + 1);
            catch_up(&st, prefix, from).map(|backlog| {
                (
                    self.shared.events.subscribe(),
                    backlog,
                    from.max(st.revision + 1),
                )
            })?
        };
        let watch = EmbeddedWatch {
            shared: Arc::downgrade(&self.shared),
            prefix: prefix.to_string(),
            rx,
            pending: backlog.into(),
            next_rev,
            failed: false,
        };
        Ok(futures::stream::unfold(watch, |mut w| async move {
            let item = w.next_event().await?;
            Some((item, w))
        })
        .boxed())
    }

    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64> {
        if ttl_secs <= 0 {
            return Err(StoreError::invalid(format!(
                "lease TTL must be positive, got {ttl_secs}"
            )));
        }
        if !self.shared.reaper_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(lease_reaper(
                Arc::downgrade(&self.shared),
                self.shared.lease_wake.clone(),
            ));
        }
        let ttl = Duration::from_secs(ttl_secs as u64);
        let id = {
            let mut st = write(&self.shared.state);
            let id = st.next_lease.max(1);
            st.next_lease = id + 1;
            st.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline: Instant::now() + ttl,
                    keys: BTreeSet::new(),
                },
            );
            id
        };
        self.shared.lease_wake.notify_one();
        Ok(id)
    }

    async fn keep_alive(&self, lease: i64) -> Result<()> {
        let mut st = write(&self.shared.state);
        match st.leases.get_mut(&lease) {
            Some(l) if l.deadline > Instant::now() => {
                l.deadline = Instant::now() + l.ttl;
                Ok(())
            }
            _ => Err(StoreError::not_found("lease", lease.to_string())),
        }
    }

    async fn revoke_lease(&self, lease: i64) -> Result<()> {
        self.shared.drop_lease(lease).await
    }
}

/// Events of `history` under `prefix` from revision `from`, or Compacted.
fn catch_up(st: &State, prefix: &str, from: i64) -> Result<Vec<WatchEvent>> {
    if from <= st.compacted_through {
        return Err(StoreError::Compacted {
            requested: from,
            oldest: st.compacted_through + 1,
        });
    }
    Ok(st
        .history
        .iter()
        .filter(|e| e.mod_revision >= from && e.key.starts_with(prefix))
        .cloned()
        .collect())
}

struct EmbeddedWatch {
    shared: Weak<Shared>,
    prefix: String,
    rx: broadcast::Receiver<Arc<Batch>>,
    pending: VecDeque<WatchEvent>,
    /// The first revision not yet queued.
    next_rev: i64,
    failed: bool,
}

impl EmbeddedWatch {
    async fn next_event(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    if batch.revision < self.next_rev {
                        continue;
                    }
                    self.next_rev = batch.revision + 1;
                    self.pending.extend(
                        batch
                            .events
                            .iter()
                            .filter(|e| e.key.starts_with(&self.prefix))
                            .cloned(),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the channel: catch up from history instead.
                    let shared = self.shared.upgrade()?;
                    let st = read(&shared.state);
                    match catch_up(&st, &self.prefix, self.next_rev) {
                        Ok(events) => {
                            self.pending.extend(events);
                            self.next_rev = st.revision + 1;
                        }
                        Err(e) => {
                            self.failed = true;
                            return Some(Err(e));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, key: &str, value: &str) -> String {
        serde_json::to_string(&LogRecord {
            rev,
            changes: vec![Change {
                key: key.into(),
                value: Some(LogValue::Text(value.into())),
                lease: 0,
            }],
        })
        .unwrap()
    }

    #[test]
    fn replay_applies_records_and_drops_a_torn_tail() {
        let log = format!(
            "{}\n{}\n{{\"rev\":3,\"chan",
            put(1, "a", "1"),
            put(2, "a", "2")
        );
        let mut st = State::default();
        let good = replay(&mut st, log.as_bytes(), Path::new("log")).unwrap();
        assert_eq!(good, log.rfind('\n').unwrap() + 1);
        assert_eq!(st.revision, 2);
        let e = &st.data["a"];
        assert_eq!((e.create_revision, e.mod_revision), (1, 2));
        assert_eq!(e.value, b"2");
    }

    #[test]
    fn replay_rejects_corruption_in_the_middle() {
        let log = format!("{}\ngarbage\n{}\n", put(1, "a", "1"), put(2, "a", "2"));
        let err = replay(&mut State::default(), log.as_bytes(), Path::new("log")).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn replay_skips_records_already_in_the_snapshot() {
        let log = format!("{}\n{}\n", put(1, "a", "old"), put(2, "b", "new"));
        let mut st = State {
            revision: 1,
            ..State::default()
        };
        replay(&mut st, log.as_bytes(), Path::new("log")).unwrap();
        assert!(!st.data.contains_key("a"));
        assert_eq!(st.data["b"].mod_revision, 2);
    }

    #[test]
    fn values_are_logged_as_text_when_utf8() {
        assert_eq!(
            serde_json::to_string(&LogValue::from_bytes(b"{\"x\":1}".to_vec())).unwrap(),
            "\"{\\\"x\\\":1}\""
        );
        let raw = LogValue::from_bytes(vec![0xff, 0]);
        let json = serde_json::to_string(&raw).unwrap();
        assert_eq!(serde_json::from_str::<LogValue>(&json).unwrap(), raw);
    }

    #[tokio::test]
    async fn txn_revisions_follow_etcd_rules() {
        let kv = EmbeddedBackend::in_memory();
        let out = kv
            .txn(Txn {
                success: vec![Op::put("a", "1"), Op::put("b", "1")],
                ..Txn::default()
            })
            .await
            .unwrap();
        assert_eq!(out.revision, 1);
        // A txn that changes nothing does not bump the revision.
        let out = kv
            .txn(Txn {
                success: vec![Op::delete("missing")],
                ..Txn::default()
            })
            .await
            .unwrap();
        assert_eq!(out.revision, 1);
        let out = kv
            .txn(Txn {
                compares: vec![Compare::ModRevision("a".into(), 1)],
                success: vec![Op::put("a", "2")],
                failure: vec![],
            })
            .await
            .unwrap();
        assert!(out.succeeded);
        let a = kv.get("a").await.unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 2));
        let failed = kv
            .txn(Txn {
                compares: vec![Compare::Absent("a".into())],
                success: vec![Op::put("a", "3")],
                failure: vec![],
            })
            .await
            .unwrap();
        assert!(!failed.succeeded);
        assert_eq!(failed.revision, 2);
    }
}
