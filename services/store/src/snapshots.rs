//! Scanner snapshots: one source cluster's inventory at one time, kept for listing, diffing
//! and exporting.
//!
//! # Key layout (relative to the backend prefix)
//!
//! ```text
//! snapshots/<source-id>/<scan-id>          SnapshotHeader: summary, counts, chunk count
//! snapshot-index/<scan-id>                 {"source_id": ...}: finds a snapshot by id alone
//! snapshot-chunks/<scan-id>/<n:06>         {"schema_version":1,"items":[...]}, ≤ MAX_CHUNK_BYTES
//! ```
//!
//! An inventory of 10 000 topics and groups is several MiB of JSON, more than etcd accepts
//! in one request (`--max-request-bytes`, 1.5 MiB by default), so items are packed into
//! chunks of at most [`MAX_CHUNK_BYTES`], each written in its own transaction. The header and
//! the index are written last, in one transaction: a snapshot exists once its header does,
//! so readers never see half of one. Chunks live under their own prefix so listing
//! `snapshots/` returns headers only. Deleting removes header, index and chunks in one
//! transaction.
//!
//! Scan ids start with the scan time in milliseconds, zero-padded ([`new_scan_id`]), so
//! byte order is time order and "newest first" is a reverse sort of ids, across sources too.
//!
//! Items are opaque JSON documents (the scanner decides what a topic or group record holds);
//! they come back byte for byte, in the order given.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Result, StoreError};
use crate::kv::{Compare, KvBackend, Op, Txn};
use crate::migration::{KvMigrationStore, segment};
use crate::model::{Page, PageRequest, SCHEMA_VERSION, decode, encode};

/// Largest chunk value written. Well below etcd's 1.5 MiB default request limit, leaving
/// room for the key and the request envelope.
pub const MAX_CHUNK_BYTES: usize = 512 * 1024;

/// Key names. See the module docs for the layout.
pub mod keys {
    /// Prefix of snapshot headers.
    pub const SNAPSHOTS: &str = "snapshots/";
    /// Prefix of the id → source index.
    pub const INDEX: &str = "snapshot-index/";
    /// Prefix of item chunks.
    pub const CHUNKS: &str = "snapshot-chunks/";

    pub fn headers_of(source_id: &str) -> String {
        format!("{SNAPSHOTS}{source_id}/")
    }

    pub fn header(source_id: &str, scan_id: &str) -> String {
        format!("{SNAPSHOTS}{source_id}/{scan_id}")
    }

    pub fn index(scan_id: &str) -> String {
        format!("{INDEX}{scan_id}")
    }

    pub fn chunks_of(scan_id: &str) -> String {
        format!("{CHUNKS}{scan_id}/")
    }

    pub fn chunk(scan_id: &str, n: u32) -> String {
        format!("{CHUNKS}{scan_id}/{n:06}")
    }
}

/// What is stored about a snapshot besides its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub source_id: String,
    pub scan_id: String,
    /// When the scan finished, Unix milliseconds.
    pub taken_at_ms: i64,
    /// The scanner's summary (clusters, counts, missing parts); small, shown by listings.
    pub summary: serde_json::Value,
    /// Number of items over all chunks.
    pub item_count: u64,
    pub chunk_count: u32,
    /// Bytes of item JSON over all chunks.
    pub bytes: u64,
}

/// A snapshot to store.
#[derive(Debug)]
pub struct NewSnapshot {
    pub source_id: String,
    /// From [`new_scan_id`]; unique.
    pub scan_id: String,
    pub taken_at_ms: i64,
    pub summary: serde_json::Value,
    /// One JSON document per item; none may exceed [`MAX_CHUNK_BYTES`].
    pub items: Vec<Box<RawValue>>,
}

/// A fresh scan id: `<ms:013>-<8 hex>`, sortable by time, unique in practice.
pub fn new_scan_id(taken_at_ms: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(taken_at_ms);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:013}-{:08x}", taken_at_ms.max(0), h.finish() as u32)
}

/// Scanner snapshots in domain terms. Object safe: services hold an `Arc<dyn SnapshotStore>`.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Stores a snapshot; [`StoreError::AlreadyExists`] when its scan id is taken,
    /// [`StoreError::InvalidArgument`] for an item or summary too large for one chunk.
    async fn put_snapshot(&self, snapshot: NewSnapshot) -> Result<SnapshotHeader>;

    /// A snapshot's header by scan id.
    async fn get_snapshot(&self, scan_id: &str) -> Result<SnapshotHeader>;

    /// A snapshot's items, in the order they were stored.
    async fn snapshot_items(&self, scan_id: &str) -> Result<Vec<Box<RawValue>>>;

    /// Headers newest first, of one source or (None) of all; `page_token` is the last scan id
    /// of the previous page.
    async fn list_snapshots(
        &self,
        source_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<SnapshotHeader>>;

    /// Deletes a snapshot (header, index and chunks, atomically).
    async fn delete_snapshot(&self, scan_id: &str) -> Result<()>;

    /// Deletes all but the `keep` newest snapshots of a source; returns the deleted ids.
    async fn prune_snapshots(&self, source_id: &str, keep: usize) -> Result<Vec<String>>;

    /// A cheap read proving the store answers.
    async fn snapshot_health(&self) -> Result<()>;
}

#[derive(Serialize, Deserialize)]
struct IndexEntry {
    source_id: String,
}

/// A chunk as read back; its schema version is checked by hand because `RawValue` cannot go
/// through serde's `flatten`.
#[derive(Deserialize)]
struct StoredChunk {
    schema_version: u32,
    items: Vec<Box<RawValue>>,
}

/// Packs items into chunk values of at most [`MAX_CHUNK_BYTES`].
fn pack(items: &[Box<RawValue>]) -> Result<Vec<Vec<u8>>> {
    let head = format!("{{\"schema_version\":{SCHEMA_VERSION},\"items\":[");
    let tail = "]}";
    let room = MAX_CHUNK_BYTES - head.len() - tail.len();
    let mut chunks = Vec::new();
    let mut current = head.clone().into_bytes();
    let mut used = 0usize;
    for (i, item) in items.iter().enumerate() {
        let text = item.get().as_bytes();
        if text.len() > room {
            return Err(StoreError::invalid(format!(
                "snapshot item {i} is {} bytes, more than one chunk holds ({room}); split it",
                text.len()
            )));
        }
        let need = text.len() + usize::from(used > 0);
        if used > 0 && used + need > room {
            current.extend_from_slice(tail.as_bytes());
            chunks.push(std::mem::replace(&mut current, head.clone().into_bytes()));
            used = 0;
        }
        if used > 0 {
            current.push(b',');
            used += 1;
        }
        current.extend_from_slice(text);
        used += text.len();
    }
    if used > 0 || chunks.is_empty() {
        current.extend_from_slice(tail.as_bytes());
        chunks.push(current);
    }
    Ok(chunks)
}

impl<B: KvBackend> KvMigrationStore<B> {
    async fn source_of(&self, scan_id: &str) -> Result<String> {
        segment("scan id", scan_id)?;
        let key = keys::index(scan_id);
        match self.backend().get(&key).await? {
            Some(kv) => Ok(decode::<IndexEntry>(&key, &kv.value)?.source_id),
            None => Err(StoreError::not_found("snapshot", scan_id)),
        }
    }

    async fn headers_under(&self, prefix: &str) -> Result<Vec<SnapshotHeader>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.backend().range(prefix, after.clone(), 500).await?;
            for kv in &page.kvs {
                out.push(decode::<SnapshotHeader>(&kv.key, &kv.value)?);
            }
            if !page.more {
                return Ok(out);
            }
            after = page.kvs.last().map(|kv| kv.key.clone());
        }
    }
}

#[async_trait]
impl<B: KvBackend> SnapshotStore for KvMigrationStore<B> {
    async fn put_snapshot(&self, snapshot: NewSnapshot) -> Result<SnapshotHeader> {
        segment("source id", &snapshot.source_id)?;
        segment("scan id", &snapshot.scan_id)?;
        let kv = self.backend();
        let header_key = keys::header(&snapshot.source_id, &snapshot.scan_id);
        let index_key = keys::index(&snapshot.scan_id);
        if kv.get(&index_key).await?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "snapshot",
                id: snapshot.scan_id,
            });
        }
        let chunks = pack(&snapshot.items)?;
        let header = SnapshotHeader {
            source_id: snapshot.source_id.clone(),
            scan_id: snapshot.scan_id.clone(),
            taken_at_ms: snapshot.taken_at_ms,
            summary: snapshot.summary,
            item_count: snapshot.items.len() as u64,
            chunk_count: chunks.len() as u32,
            bytes: snapshot.items.iter().map(|i| i.get().len() as u64).sum(),
        };
        let header_value = encode(&header);
        if header_value.len() > MAX_CHUNK_BYTES {
            return Err(StoreError::invalid(format!(
                "snapshot summary of {} bytes is larger than {MAX_CHUNK_BYTES}; keep summaries small",
                header_value.len()
            )));
        }
        // Chunks first, one per transaction (etcd's request size limit); invisible until the
        // header exists.
        for (n, chunk) in chunks.into_iter().enumerate() {
            kv.txn(Txn {
                compares: vec![],
                success: vec![Op::put(keys::chunk(&snapshot.scan_id, n as u32), chunk)],
                failure: vec![],
            })
            .await?;
        }
        let outcome = kv
            .txn(Txn {
                compares: vec![
                    Compare::Absent(header_key.clone()),
                    Compare::Absent(index_key.clone()),
                ],
                success: vec![
                    Op::put(header_key, header_value),
                    Op::put(
                        index_key,
                        encode(&IndexEntry {
                            source_id: snapshot.source_id.clone(),
                        }),
                    ),
                ],
                failure: vec![],
            })
            .await?;
        if !outcome.succeeded {
            // Another writer took the id meanwhile; its chunks were overwritten by ours, so
            // neither snapshot can be trusted: remove both and report.
            kv.txn(Txn {
                compares: vec![],
                success: vec![Op::DeletePrefix {
                    prefix: keys::chunks_of(&snapshot.scan_id),
                }],
                failure: vec![],
            })
            .await?;
            return Err(StoreError::AlreadyExists {
                kind: "snapshot",
                id: snapshot.scan_id,
            });
        }
        tracing::info!(
            source = %header.source_id,
            scan = %header.scan_id,
            items = header.item_count,
            chunks = header.chunk_count,
            bytes = header.bytes,
            "snapshot stored"
        );
        Ok(header)
    }

    async fn get_snapshot(&self, scan_id: &str) -> Result<SnapshotHeader> {
        let source = self.source_of(scan_id).await?;
        let key = keys::header(&source, scan_id);
        match self.backend().get(&key).await? {
            Some(kv) => decode(&key, &kv.value),
            None => Err(StoreError::not_found("snapshot", scan_id)),
        }
    }

    async fn snapshot_items(&self, scan_id: &str) -> Result<Vec<Box<RawValue>>> {
        let header = self.get_snapshot(scan_id).await?;
        let mut items = Vec::with_capacity(header.item_count as usize);
        for n in 0..header.chunk_count {
            // One get per chunk: a range of several could exceed the etcd client's 4 MiB
            // response limit.
            let key = keys::chunk(scan_id, n);
            let Some(kv) = self.backend().get(&key).await? else {
                // Deleted while we read?
                self.get_snapshot(scan_id).await?;
                return Err(StoreError::Corrupt {
                    key,
                    reason: format!(
                        "chunk {n} of {} is missing for an existing snapshot",
                        header.chunk_count
                    ),
                });
            };
            let chunk: StoredChunk =
                serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
            if chunk.schema_version == 0 || chunk.schema_version > SCHEMA_VERSION {
                return Err(StoreError::Corrupt {
                    key,
                    reason: format!(
                        "schema_version {} is not supported by this binary (supports up to {SCHEMA_VERSION}); upgrade Ferry",
                        chunk.schema_version
                    ),
                });
            }
            items.extend(chunk.items);
        }
        if items.len() as u64 != header.item_count {
            return Err(StoreError::Corrupt {
                key: keys::chunks_of(scan_id),
                reason: format!(
                    "{} items in the chunks, the header says {}",
                    items.len(),
                    header.item_count
                ),
            });
        }
        Ok(items)
    }

    async fn list_snapshots(
        &self,
        source_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<SnapshotHeader>> {
        let prefix = match source_id {
            Some(s) => keys::headers_of(segment("source id", s)?),
            None => keys::SNAPSHOTS.to_string(),
        };
        let mut headers = self.headers_under(&prefix).await?;
        headers.sort_by(|a, b| b.scan_id.cmp(&a.scan_id));
        if let Some(token) = &page.page_token {
            headers.retain(|h| h.scan_id.as_str() < token.as_str());
        }
        let limit = page.limit();
        let more = headers.len() > limit;
        headers.truncate(limit);
        let next_page_token = if more {
            headers.last().map(|h| h.scan_id.clone())
        } else {
            None
        };
        Ok(Page {
            items: headers,
            next_page_token,
        })
    }

    async fn delete_snapshot(&self, scan_id: &str) -> Result<()> {
        let source = self.source_of(scan_id).await?;
        let header_key = keys::header(&source, scan_id);
        let index_key = keys::index(scan_id);
        let outcome = self
            .backend()
            .txn(Txn {
                // Deletes run on the failure branch, i.e. only if the index still exists.
                compares: vec![Compare::Absent(index_key.clone())],
                success: vec![],
                failure: vec![
                    Op::delete(header_key),
                    Op::delete(index_key),
                    Op::DeletePrefix {
                        prefix: keys::chunks_of(scan_id),
                    },
                ],
            })
            .await?;
        if outcome.succeeded {
            // The index vanished between our read and the transaction.
            return Err(StoreError::not_found("snapshot", scan_id));
        }
        tracing::info!(source = %source, scan = %scan_id, "snapshot deleted");
        Ok(())
    }

    async fn prune_snapshots(&self, source_id: &str, keep: usize) -> Result<Vec<String>> {
        segment("source id", source_id)?;
        let mut headers = self.headers_under(&keys::headers_of(source_id)).await?;
        headers.sort_by(|a, b| b.scan_id.cmp(&a.scan_id));
        let mut deleted = Vec::new();
        for old in headers.into_iter().skip(keep) {
            match self.delete_snapshot(&old.scan_id).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => deleted.push(old.scan_id),
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    async fn snapshot_health(&self) -> Result<()> {
        self.backend().current_revision().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn packing_respects_the_chunk_size_and_keeps_order() {
        let item = format!("\"{}\"", "x".repeat(100_000));
        let items: Vec<Box<RawValue>> = (0..12).map(|_| raw(&item)).collect();
        let chunks = pack(&items).unwrap();
        assert!(chunks.len() >= 3, "{}", chunks.len());
        let mut n = 0;
        for c in &chunks {
            assert!(c.len() <= MAX_CHUNK_BYTES, "{}", c.len());
            let parsed: StoredChunk = serde_json::from_slice(c).unwrap();
            assert_eq!(parsed.schema_version, SCHEMA_VERSION);
            n += parsed.items.len();
        }
        assert_eq!(n, 12);
        let empty = pack(&[]).unwrap();
        assert_eq!(empty.len(), 1);
        let parsed: StoredChunk = serde_json::from_slice(&empty[0]).unwrap();
        assert!(parsed.items.is_empty());
    }

    #[test]
    fn an_item_larger_than_a_chunk_is_refused() {
        let huge = raw(&format!("\"{}\"", "x".repeat(MAX_CHUNK_BYTES)));
        assert!(matches!(
            pack(&[huge]),
            Err(StoreError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn scan_ids_sort_by_time() {
        let a = new_scan_id(1_000);
        let b = new_scan_id(20_000);
        assert!(a < b, "{a} {b}");
        assert_eq!(a.len(), 13 + 1 + 8);
        assert_ne!(new_scan_id(5), new_scan_id(5));
    }
}
