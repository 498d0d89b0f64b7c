//! `ImportTaskService`: import tasks with per-item results. The importer arrives with the
//! import work; until then every RPC answers `UNIMPLEMENTED` saying so.

use ferry_api::metadata_sync::v1::import_task_service_server::{
    ImportTaskService, ImportTaskServiceServer,
};
use ferry_api::metadata_sync::v1::*;

/// The import-task gRPC service.
#[derive(Debug, Clone, Default)]
pub struct ImportTasks;

impl ImportTasks {
    /// The tonic service to add to a server.
    pub fn into_service(self) -> ImportTaskServiceServer<Self> {
        ImportTaskServiceServer::new(self)
    }
}

ferry_server::pending_service! {
    impl ImportTaskService for ImportTasks;
    service ferry_api::service_names::IMPORT_TASK,
        arrives_with "the metadata import work (issue #6)";
    create_import_task(CreateImportTaskRequest) -> CreateImportTaskResponse;
    get_import_task(GetImportTaskRequest) -> GetImportTaskResponse;
    list_import_tasks(ListImportTasksRequest) -> ListImportTasksResponse;
    list_import_items(ListImportItemsRequest) -> ListImportItemsResponse;
    retry_import_task(RetryImportTaskRequest) -> RetryImportTaskResponse;
}
