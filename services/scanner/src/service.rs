//! `ferry.scanner.v1.ScannerService` over the [`ScanEngine`] and a snapshot store.
//!
//! Snapshots are immutable, so the last inventory loaded is cached: paging through a
//! snapshot's topics does not re-read megabytes from etcd per page.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use ferry_api::scanner::v1 as pb;
use ferry_api::scanner::v1::scanner_service_server::{ScannerService, ScannerServiceServer};
use ferry_metadata::{EXPORT_FILE_NAME, XLSX_FILE_NAME};
use ferry_store::{PageRequest, new_scan_id};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::convert::{
    group_to_pb, inventory_to_pb, report_to_pb, snapshot_to_pb, source_from_pb,
    target_type_from_pb, timeout_from_ms, topic_class_from_pb, topic_to_pb,
};
use crate::engine::ScanEngine;
use crate::error::{Result, ScanError};
use crate::inventory::{Inventory, summary_of};
use crate::slot::SnapshotSlot;

/// Snapshots kept per source by default; older ones are pruned after each scan.
pub const DEFAULT_KEEP_SNAPSHOTS: usize = 20;
/// Bytes per streamed export chunk.
const EXPORT_CHUNK: usize = 64 * 1024;
/// Default and largest page of topics/groups.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A scan id and its inventory.
type Cached = (String, Arc<Inventory>);

/// The scanner's gRPC service.
#[derive(Clone)]
pub struct Scanner {
    engine: ScanEngine,
    store: SnapshotSlot,
    keep: usize,
    /// The last inventory loaded or scanned, with its scan id.
    cache: Arc<Mutex<Option<Cached>>>,
}

impl Scanner {
    pub fn new(engine: ScanEngine, store: SnapshotSlot) -> Self {
        Scanner {
            engine,
            store,
            keep: DEFAULT_KEEP_SNAPSHOTS,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// How many snapshots to keep per source (at least 1).
    pub fn keep_snapshots(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The tonic service to add to a server. Pages and exports are bounded, so the default
    /// message limits hold.
    pub fn into_service(self) -> ScannerServiceServer<Self> {
        ScannerServiceServer::new(self)
    }

    fn cached(&self, scan_id: &str) -> Option<Arc<Inventory>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|(id, _)| id == scan_id)
            .map(|(_, inv)| inv.clone())
    }

    fn remember(&self, scan_id: &str, inventory: Arc<Inventory>) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((scan_id.to_string(), inventory));
    }

    /// A stored snapshot's inventory.
    pub async fn load(&self, scan_id: &str) -> Result<Arc<Inventory>> {
        if scan_id.trim().is_empty() {
            return Err(ScanError::InvalidArgument("snapshot_id is required".into()));
        }
        if let Some(inv) = self.cached(scan_id) {
            return Ok(inv);
        }
        let store = self.store.get().map_err(ScanError::from)?;
        let header = store.get_snapshot(scan_id).await?;
        let items = store.snapshot_items(scan_id).await?;
        let inv = Arc::new(Inventory::from_snapshot(&header, &items)?);
        self.remember(scan_id, inv.clone());
        Ok(inv)
    }

    /// Stores `inventory` as a new snapshot and prunes old ones of its source.
    pub async fn store_inventory(&self, inventory: Inventory) -> Result<pb::Snapshot> {
        let store = self.store.get().map_err(ScanError::from)?;
        let scan_id = new_scan_id(inventory.taken_at_ms);
        let header = store
            .put_snapshot(inventory.to_snapshot(scan_id.clone())?)
            .await?;
        let pruned = store
            .prune_snapshots(&inventory.source_id, self.keep)
            .await?;
        if !pruned.is_empty() {
            tracing::info!(source = %inventory.source_id, pruned = pruned.len(), "old snapshots pruned");
        }
        let summary = inventory.summary();
        self.remember(&scan_id, Arc::new(inventory));
        Ok(snapshot_to_pb(&header, &summary))
    }
}

fn page_bounds(page_size: i32, token: &str) -> (usize, Option<String>) {
    let size = match page_size {
        n if n <= 0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    };
    (size, Some(token.to_string()).filter(|t| !t.is_empty()))
}

/// Items after `token` (names are unique and sorted), at most `size`, and the next token.
fn page<'a, T>(
    items: impl Iterator<Item = &'a T>,
    name: impl Fn(&T) -> &str,
    size: usize,
    token: Option<&str>,
) -> (Vec<&'a T>, String)
where
    T: 'a,
{
    let mut out: Vec<&T> = items
        .filter(|i| token.is_none_or(|t| name(i) > t))
        .take(size + 1)
        .collect();
    let next = if out.len() > size {
        out.truncate(size);
        out.last().map(|i| name(i).to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    (out, next)
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportMetadataResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ScannerService for Scanner {
    async fn check_connection(
        &self,
        request: Request<pb::CheckConnectionRequest>,
    ) -> Result<Response<pb::CheckConnectionResponse>, Status> {
        let req = request.into_inner();
        let source = source_from_pb(req.source, "source")?;
        let target = match req.target {
            Some(t) if !t.namesrv_addrs.trim().is_empty() => {
                Some(source_from_pb(Some(t), "target")?)
            }
            _ => None,
        };
        let report = self
            .engine
            .check_connection(&source, target.as_ref(), timeout_from_ms(req.timeout_ms))
            .await?;
        Ok(Response::new(report_to_pb(&report)))
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let req = request.into_inner();
        let source = source_from_pb(req.source, "source")?;
        // Fail fast before touching the cluster when results could not be stored (a dry run
        // stores nothing).
        if !req.dry_run {
            self.store.get().map_err(ScanError::from)?;
        }
        // Free the cached inventory first: a scan of a large cluster needs the room, and
        // two inventories at once would double the peak memory.
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).take();
        let inventory = self
            .engine
            .scan(
                &source,
                Some(req.source_id.as_str()),
                timeout_from_ms(req.timeout_ms),
                &|_| {},
            )
            .await?;
        let snapshot = if req.dry_run {
            tracing::info!(source = %inventory.source_id, "scanned (dry run): no snapshot stored");
            inventory_to_pb(&inventory)
        } else {
            self.store_inventory(inventory).await?
        };
        Ok(Response::new(pb::ScanResponse {
            snapshot: Some(snapshot),
        }))
    }

    async fn get_snapshot(
        &self,
        request: Request<pb::GetSnapshotRequest>,
    ) -> Result<Response<pb::GetSnapshotResponse>, Status> {
        let id = request.into_inner().snapshot_id;
        if id.trim().is_empty() {
            return Err(ScanError::InvalidArgument("snapshot_id is required".into()).into());
        }
        let store = self.store.get().map_err(ScanError::from)?;
        let header = store.get_snapshot(&id).await.map_err(ScanError::from)?;
        let summary = summary_of(&header)?;
        Ok(Response::new(pb::GetSnapshotResponse {
            snapshot: Some(snapshot_to_pb(&header, &summary)),
        }))
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let req = request.into_inner();
        let store = self.store.get().map_err(ScanError::from)?;
        let page_size = match req.page_size {
            n if n <= 0 => 50,
            n => n as u32,
        };
        let source = Some(req.source_id.as_str()).filter(|s| !s.is_empty());
        let page = store
            .list_snapshots(
                source,
                PageRequest {
                    page_size,
                    page_token: Some(req.page_token).filter(|t| !t.is_empty()),
                },
            )
            .await
            .map_err(ScanError::from)?;
        let mut snapshots = Vec::with_capacity(page.items.len());
        for header in &page.items {
            snapshots.push(snapshot_to_pb(header, &summary_of(header)?));
        }
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshots,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_snapshot_topics(
        &self,
        request: Request<pb::ListSnapshotTopicsRequest>,
    ) -> Result<Response<pb::ListSnapshotTopicsResponse>, Status> {
        let req = request.into_inner();
        let inv = self.load(&req.snapshot_id).await?;
        let mut classes = Vec::new();
        for c in &req.classes {
            classes.push(
                topic_class_from_pb(*c).ok_or_else(|| {
                    ScanError::InvalidArgument(format!("unknown topic class {c}"))
                })?,
            );
        }
        if classes.is_empty() {
            classes.push(ferry_core::TopicClass::User);
        }
        let (size, token) = page_bounds(req.page_size, &req.page_token);
        let (topics, next) = page(
            inv.topics.iter().filter(|t| {
                classes.contains(&t.class)
                    && (req.name_contains.is_empty() || t.name.contains(&req.name_contains))
            }),
            |t| t.name.as_str(),
            size,
            token.as_deref(),
        );
        Ok(Response::new(pb::ListSnapshotTopicsResponse {
            topics: topics.into_iter().map(topic_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_snapshot_groups(
        &self,
        request: Request<pb::ListSnapshotGroupsRequest>,
    ) -> Result<Response<pb::ListSnapshotGroupsResponse>, Status> {
        let req = request.into_inner();
        let inv = self.load(&req.snapshot_id).await?;
        let (size, token) = page_bounds(req.page_size, &req.page_token);
        let (groups, next) = page(
            inv.groups.iter().filter(|g| {
                (req.include_system || !g.system)
                    && (req.name_contains.is_empty() || g.name.contains(&req.name_contains))
            }),
            |g| g.name.as_str(),
            size,
            token.as_deref(),
        );
        Ok(Response::new(pb::ListSnapshotGroupsResponse {
            groups: groups.into_iter().map(group_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn diff_snapshots(
        &self,
        request: Request<pb::DiffSnapshotsRequest>,
    ) -> Result<Response<pb::DiffSnapshotsResponse>, Status> {
        let req = request.into_inner();
        let base = self.load(&req.base_snapshot_id).await?;
        let head = self.load(&req.head_snapshot_id).await?;
        if base.source_id != head.source_id {
            return Err(ScanError::InvalidArgument(format!(
                "snapshots of different sources ({} and {}) cannot be diffed",
                base.source_id, head.source_id
            ))
            .into());
        }
        let d = base.diff(&head);
        Ok(Response::new(pb::DiffSnapshotsResponse {
            topics_added: d.topics_added,
            topics_removed: d.topics_removed,
            groups_added: d.groups_added,
            groups_removed: d.groups_removed,
        }))
    }

    type ExportMetadataStream = ExportStream;

    async fn export_metadata(
        &self,
        request: Request<pb::ExportMetadataRequest>,
    ) -> Result<Response<Self::ExportMetadataStream>, Status> {
        let req = request.into_inner();
        let inv = self.load(&req.snapshot_id).await?;
        let cluster = Some(req.cluster_name.as_str()).filter(|c| !c.is_empty());
        let format =
            pb::ExportFormat::try_from(req.format).unwrap_or(pb::ExportFormat::Unspecified);
        let (file_name, content_type, bytes) = match format {
            pb::ExportFormat::Json => (
                EXPORT_FILE_NAME,
                "application/json",
                inv.export_json(cluster, req.include_retry_dlq)?.to_json(),
            ),
            pb::ExportFormat::Xlsx => {
                let target = target_type_from_pb(req.template).ok_or_else(|| {
                    ScanError::InvalidArgument(
                        "template (TARGET_TYPE_V4 or TARGET_TYPE_V5) is required for XLSX".into(),
                    )
                })?;
                let book = inv.workbook(cluster, target)?;
                (
                    XLSX_FILE_NAME,
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    ferry_metadata::write_xlsx(&book)
                        .map_err(|e| ScanError::Format(e.to_string()))?,
                )
            }
            pb::ExportFormat::Unspecified => {
                return Err(ScanError::InvalidArgument(
                    "format is required: EXPORT_FORMAT_JSON or EXPORT_FORMAT_XLSX".into(),
                )
                .into());
            }
        };
        let mut chunks: Vec<Result<pb::ExportMetadataResponse, Status>> = bytes
            .chunks(EXPORT_CHUNK)
            .map(|c| {
                Ok(pb::ExportMetadataResponse {
                    chunk: c.to_vec(),
                    ..Default::default()
                })
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(Ok(pb::ExportMetadataResponse::default()));
        }
        if let Some(Ok(first)) = chunks.first_mut() {
            first.file_name = file_name.to_string();
            first.content_type = content_type.to_string();
        }
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        let target = target_type_from_pb(request.into_inner().target_type).ok_or_else(|| {
            ScanError::InvalidArgument(
                "target_type is required: TARGET_TYPE_V4 or TARGET_TYPE_V5".into(),
            )
        })?;
        let content =
            ferry_metadata::template(target).map_err(|e| ScanError::Format(e.to_string()))?;
        Ok(Response::new(pb::GetTemplateResponse {
            file_name: ferry_metadata::xlsx::template_file_name(target),
            content,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_name() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (p1, next) = page(names.iter(), |s| s.as_str(), 2, None);
        assert_eq!(p1, ["a", "b"]);
        assert_eq!(next, "b");
        let (p2, next) = page(names.iter(), |s| s.as_str(), 2, Some(&next));
        assert_eq!(p2, ["c", "d"]);
        let (p3, next) = page(names.iter(), |s| s.as_str(), 2, Some(&next));
        assert_eq!(p3, ["e"]);
        assert_eq!(next, "");
    }
}
