//! Ferry's gRPC API, generated from `proto/` by `tonic-prost-build`.
//!
//! One module per proto package (`ferry.<service>.v1`), mirroring the proto tree, and
//! [`FILE_DESCRIPTOR_SET`] for gRPC server reflection.

#![allow(clippy::all, missing_docs)]

/// Encoded `FileDescriptorSet` of every Ferry proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ferry_descriptor");

pub mod domain;

pub mod common {
    pub mod v1 {
        tonic::include_proto!("ferry.common.v1");

        /// Never shows the secret key (requests holding credentials get logged and
        /// `Debug`-printed like any other value).
        impl std::fmt::Debug for Credentials {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Credentials")
                    .field("access_key", &self.access_key)
                    .field(
                        "secret_key",
                        &if self.secret_key.is_empty() {
                            ""
                        } else {
                            "<redacted>"
                        },
                    )
                    .finish()
            }
        }
    }
}

pub mod scanner {
    pub mod v1 {
        tonic::include_proto!("ferry.scanner.v1");
    }
}

pub mod metadata_sync {
    pub mod v1 {
        tonic::include_proto!("ferry.metadata_sync.v1");
    }
}

pub mod router {
    pub mod v1 {
        tonic::include_proto!("ferry.router.v1");
    }
}

pub mod health_check {
    pub mod v1 {
        tonic::include_proto!("ferry.health_check.v1");
    }
}

/// Fully-qualified gRPC service names, for health reporting and reflection checks.
pub mod service_names {
    pub const SCANNER: &str = "ferry.scanner.v1.ScannerService";
    pub const IMPORT_TASK: &str = "ferry.metadata_sync.v1.ImportTaskService";
    pub const MIGRATION_TASK: &str = "ferry.metadata_sync.v1.MigrationTaskService";
    pub const ROUTER: &str = "ferry.router.v1.RouterService";
    pub const HEALTH_CHECK: &str = "ferry.health_check.v1.HealthCheckService";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated names must match the constants health and reflection checks rely on.
    #[test]
    fn service_names_match_generated_code() {
        use scanner::v1::scanner_service_server::SERVICE_NAME as S;
        assert_eq!(S, service_names::SCANNER);
        assert_eq!(
            metadata_sync::v1::import_task_service_server::SERVICE_NAME,
            service_names::IMPORT_TASK
        );
        assert_eq!(
            metadata_sync::v1::migration_task_service_server::SERVICE_NAME,
            service_names::MIGRATION_TASK
        );
        assert_eq!(
            router::v1::router_service_server::SERVICE_NAME,
            service_names::ROUTER
        );
        assert_eq!(
            health_check::v1::health_check_service_server::SERVICE_NAME,
            service_names::HEALTH_CHECK
        );
        assert!(FILE_DESCRIPTOR_SET.len() > 1000);
    }

    #[test]
    fn credentials_debug_never_shows_the_secret() {
        let creds = common::v1::Credentials {
            access_key: "ferry_admin".into(),
            secret_key: "s3cret-Value".into(),
        };
        let shown = format!("{creds:?} {creds:#?}");
        assert!(shown.contains("ferry_admin"), "{shown}");
        assert!(!shown.contains("s3cret-Value"), "{shown}");
        let endpoint = common::v1::ClusterEndpoint {
            credentials: Some(creds),
            ..Default::default()
        };
        assert!(!format!("{endpoint:?}").contains("s3cret-Value"));
    }
}
