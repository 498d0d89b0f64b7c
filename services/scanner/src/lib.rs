//! The scanner service: the only component that reads a source cluster's inventory.
//!
//! It probes NameServers and brokers (telling unreachable, auth and protocol failures
//! apart), scans topics, groups and ACL users into stored snapshots, and exports them as
//! mqadmin-compatible JSON or spreadsheets. The logic arrives with the scanner work; until
//! then every RPC answers `UNIMPLEMENTED` saying so.

use std::pin::Pin;

use ferry_api::scanner::v1::scanner_service_server::{ScannerService, ScannerServiceServer};
use ferry_api::scanner::v1::*;
use ferry_api::service_names::SCANNER;
use ferry_server::pending::not_implemented;
use futures::Stream;
use tonic::{Request, Response, Status};

const ARRIVES_WITH: &str = "the scanner service work (issue #5)";

/// The scanner's gRPC service.
#[derive(Debug, Clone, Default)]
pub struct Scanner;

impl Scanner {
    /// The tonic service to add to a server.
    pub fn into_service(self) -> ScannerServiceServer<Self> {
        ScannerServiceServer::new(self)
    }
}

fn pending(rpc: &str) -> Status {
    not_implemented(SCANNER, rpc, ARRIVES_WITH)
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportMetadataResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ScannerService for Scanner {
    async fn check_connection(
        &self,
        _: Request<CheckConnectionRequest>,
    ) -> Result<Response<CheckConnectionResponse>, Status> {
        Err(pending("CheckConnection"))
    }

    async fn scan(&self, _: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        Err(pending("Scan"))
    }

    async fn get_snapshot(
        &self,
        _: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(pending("GetSnapshot"))
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(pending("ListSnapshots"))
    }

    async fn list_snapshot_topics(
        &self,
        _: Request<ListSnapshotTopicsRequest>,
    ) -> Result<Response<ListSnapshotTopicsResponse>, Status> {
        Err(pending("ListSnapshotTopics"))
    }

    async fn list_snapshot_groups(
        &self,
        _: Request<ListSnapshotGroupsRequest>,
    ) -> Result<Response<ListSnapshotGroupsResponse>, Status> {
        Err(pending("ListSnapshotGroups"))
    }

    async fn diff_snapshots(
        &self,
        _: Request<DiffSnapshotsRequest>,
    ) -> Result<Response<DiffSnapshotsResponse>, Status> {
        Err(pending("DiffSnapshots"))
    }

    type ExportMetadataStream = ExportStream;

    async fn export_metadata(
        &self,
        _: Request<ExportMetadataRequest>,
    ) -> Result<Response<Self::ExportMetadataStream>, Status> {
        Err(pending("ExportMetadata"))
    }

    async fn get_template(
        &self,
        _: Request<GetTemplateRequest>,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        Err(pending("GetTemplate"))
    }
}
