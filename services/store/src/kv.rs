//! A small key-value interface with etcd semantics, implemented by etcd and the embedded store.
//!
//! The domain store ([`crate::migration`]) is written once against this trait, so both
//! backends behave the same by construction and one conformance suite covers them. The
//! semantics are etcd's, stated here so the embedded backend can match them exactly:
//!
//! - one store-wide **revision** counter; every transaction that changes something bumps it
//!   by one, and every key it writes gets that revision as `mod_revision` (a new key also as
//!   `create_revision`). A transaction that changes nothing does not bump it.
//! - `range` returns keys in byte order; `more` says whether the limit cut it short.
//! - `txn` evaluates all compares atomically and applies `success` or `failure`. A key may
//!   be put at most once per transaction and not also deleted in it (etcd rejects that), and
//!   each branch has at most [`MAX_TXN_OPS`] operations: callers split batches with
//!   [`chunked`] into transactions of [`MAX_OPS_PER_TXN`].
//! - `watch_prefix` delivers every change in revision order from a given revision; when that
//!   history is gone it fails with [`StoreError::Compacted`] so callers re-list.
//! - leases: keys put with a lease are deleted (with delete events) when it expires or is
//!   revoked.
//!
//! Keys here are relative (e.g. `tasks/abc`); the etcd backend adds its prefix.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::{Result, StoreError};

/// etcd's default `--max-txn-ops`: the most operations (or compares) one branch may have.
pub const MAX_TXN_OPS: usize = 128;

/// Batch size callers use when splitting many writes into transactions (below
/// [`MAX_TXN_OPS`], leaving room for the compares and bookkeeping ops of a batch).
pub const MAX_OPS_PER_TXN: usize = 100;

/// One stored key with its etcd metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the transaction that created this key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the transaction that last wrote this key.
    pub mod_revision: i64,
    /// Lease the key is bound to, 0 for none.
    pub lease: i64,
}

/// One page of a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    /// More keys match after the last one returned.
    pub more: bool,
    /// The store revision the read observed.
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals this (0 means the key is absent).
    ModRevision(String, i64),
    /// The key does not exist.
    Absent(String),
    /// The key exists and its value equals this.
    ValueEquals(String, Vec<u8>),
}

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
}

impl Op {
    /// A put without lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A delete of one key.
    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }
}

/// An atomic compare-then-write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    /// Checks the rules etcd enforces server-side, so both backends reject the same
    /// transactions with the same error: op counts, and no key put twice or put and deleted.
    pub fn validate(&self) -> Result<()> {
        if self.compares.len() > MAX_TXN_OPS
            || self.success.len() > MAX_TXN_OPS
            || self.failure.len() > MAX_TXN_OPS
        {
            return Err(StoreError::invalid(format!(
                "too many operations in one transaction ({} compares, {} success, {} failure; at most {MAX_TXN_OPS} each): split the batch with ferry_store::kv::chunked",
                self.compares.len(),
                self.success.len(),
                self.failure.len()
            )));
        }
        for ops in [&self.success, &self.failure] {
            let mut puts = HashSet::new();
            for op in ops.iter() {
                if let Op::Put { key, .. } = op
                    && !puts.insert(key.as_str())
                {
                    return Err(StoreError::invalid(format!(
                        "key {key} is put twice in one transaction"
                    )));
                }
            }
            for op in ops.iter() {
                let clash = match op {
                    Op::Put { .. } => None,
                    Op::Delete { key } => puts.contains(key.as_str()).then(|| key.clone()),
                    Op::DeletePrefix { prefix } => puts
                        .iter()
                        .find(|k| k.starts_with(prefix.as_str()))
                        .map(|k| k.to_string()),
                };
                if let Some(key) = clash {
                    return Err(StoreError::invalid(format!(
                        "key {key} is both put and deleted in one transaction"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Result of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    /// All compares held and `success` was applied (else `failure` was).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: i64,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchEventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: WatchEventKind,
    pub key: String,
    /// The new value; empty for deletes.
    pub value: Vec<u8>,
    /// Revision of the change (for deletes, the revision of the deletion).
    pub mod_revision: i64,
}

/// A stream of watch events; ends only on error (e.g. [`StoreError::Compacted`]) or drop.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;

/// Key-value storage with etcd semantics. See the module docs for the exact rules.
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Reads up to `limit` keys (0 = no limit) starting with `prefix`, in byte order, after
    /// `start_after` if given.
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
    ) -> Result<RangePage>;

    /// Reads up to `limit` keys (0 = no limit) starting with `prefix` whose
    /// `create_revision > after_revision`, ordered by `create_revision` (= commit order of
    /// immutable records such as audit entries). Keys created by one transaction share a
    /// create revision and come in no particular order among themselves, so paging by create
    /// revision is exact only for records written one per transaction.
    async fn range_by_create_revision(
        &self,
        prefix: &str,
        after_revision: i64,
        limit: usize,
    ) -> Result<RangePage>;

    /// Applies a transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;

    /// The current store revision.
    async fn current_revision(&self) -> Result<i64>;

    /// Every change under `prefix` from revision `from_revision` on (inclusive); `None` means
    /// changes after the current revision. Fails with [`StoreError::Compacted`] when that
    /// history is gone.
    async fn watch_prefix(&self, prefix: &str, from_revision: Option<i64>) -> Result<WatchStream>;

    /// Grants a lease that expires `ttl_secs` after its last refresh.
    async fn grant_lease(&self, ttl_secs: i64) -> Result<i64>;

    /// Refreshes a lease once. [`StoreError::NotFound`] when it expired or was revoked.
    async fn keep_alive(&self, lease: i64) -> Result<()>;

    /// Revokes a lease and deletes its keys. Revoking an unknown lease is not an error.
    async fn revoke_lease(&self, lease: i64) -> Result<()>;
}

/// Splits `items` into batches of at most [`MAX_OPS_PER_TXN`], one transaction each.
pub fn chunked<T>(items: Vec<T>) -> Vec<Vec<T>> {
    chunked_by(items, MAX_OPS_PER_TXN)
}

/// Splits `items` into batches of at most `size` (≥ 1).
pub fn chunked_by<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(items.len().div_ceil(size));
    let mut iter = items.into_iter().peekable();
    while iter.peek().is_some() {
        out.push(iter.by_ref().take(size).collect());
    }
    out
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end).
/// Empty means "no end" (the prefix was all 0xff bytes or empty).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_limit() {
        let batches = chunked((0..250).collect::<Vec<_>>());
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert!(chunked(Vec::<u8>::new()).is_empty());
        assert_eq!(chunked_by(vec![1, 2, 3], 0).len(), 3);
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"");
        assert_eq!(prefix_end(b""), b"");
    }

    #[test]
    fn validate_rejects_what_etcd_rejects() {
        let too_many = Txn {
            success: (0..129).map(|i| Op::put(format!("k{i}"), "v")).collect(),
            ..Txn::default()
        };
        assert!(matches!(
            too_many.validate(),
            Err(StoreError::InvalidArgument { .. })
        ));
        let twice = Txn {
            success: vec![Op::put("k", "1"), Op::put("k", "2")],
            ..Txn::default()
        };
        assert!(twice.validate().is_err());
        let put_and_delete = Txn {
            success: vec![
                Op::put("a/k", "1"),
                Op::DeletePrefix {
                    prefix: "a/".into(),
                },
            ],
            ..Txn::default()
        };
        assert!(put_and_delete.validate().is_err());
        let fine = Txn {
            compares: vec![Compare::Absent("k".into())],
            success: vec![Op::put("k", "1"), Op::delete("j")],
            failure: vec![Op::put("k", "2")],
        };
        fine.validate().unwrap();
    }
}
