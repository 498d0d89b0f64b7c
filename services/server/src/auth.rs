//! Who may call what: the bearer-token check of mutating calls, as one tower layer in front
//! of every service of a [`GrpcServer`](crate::GrpcServer).
//!
//! # Read-only or mutating
//!
//! Decided by the gRPC path alone, so there is exactly one rule ([`classify`]):
//!
//! 1. every method of `grpc.health.v1.Health` and of server reflection (v1, v1alpha) is
//!    **read-only** ([`OPEN_SERVICES`]);
//! 2. the methods in [`MUTATING_DESPITE_NAME`] are **mutating** whatever their name says
//!    (`HealthCheckService/CheckTopics` measures and *writes* readiness records);
//! 3. a method whose name is one of [`READ_ONLY_PREFIXES`] (`Get`, `List`, `Check`, `Watch`,
//!    `Describe`, `Diff`, `Export`) followed by an upper-case letter or nothing is
//!    **read-only** (`GetSnapshot`, `ListAuditRecords`, `CheckBacklog`; not `Getaway`);
//! 4. everything else, including paths of unknown services and malformed paths, is
//!    **mutating**.
//!
//! A new RPC is therefore mutating unless its name says otherwise; the test
//! `every_ferry_rpc_is_classified` lists the mutating RPCs of every Ferry service, so adding
//! one forces a decision, and checks the result against `deploy/grpc-methods.tsv` (the
//! mesh's read/write classification). Read-only calls may still make the server work for the
//! caller (`CheckConnection` probes the clusters it is given) but store nothing.
//!
//! # The check
//!
//! With a token configured ([`SecurityConfig`](crate::SecurityConfig)), a mutating call needs
//! the metadata `authorization: Bearer <token>` (scheme case-insensitive); the token is
//! compared in constant time. A missing, malformed or wrong token is answered
//! `UNAUTHENTICATED` before the service sees the call; the message says what to send and
//! never contains the token. Without a token, mutating calls pass as before.
//!
//! With mTLS (`FERRY_TLS_CLIENT_CA_FILE`) the TLS handshake already refused every client
//! without a certificate signed by that CA, so every call here comes from a verified client:
//! without a token that certificate is the credential for mutating calls; with a token both
//! are required. The decision is logged at debug level (method, outcome, reason), never the
//! token.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::security::{BearerToken, SecurityConfig};

/// Services whose every method is read-only: health and reflection.
pub const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// `package.Service/Method` of RPCs that change state although their name reads as
/// read-only (rule 2 of the [module docs](self)).
pub const MUTATING_DESPITE_NAME: &[&str] = &[
    // Publishes readiness records to the store (the stage gate reads them).
    "ferry.health_check.v1.HealthCheckService/CheckTopics",
];

/// Method-name prefixes of read-only RPCs (rule 3 of the [module docs](self)).
pub const READ_ONLY_PREFIXES: &[&str] = &[
    "Get", "List", "Check", "Watch", "Describe", "Diff", "Export",
];

/// What a call may do, by its gRPC path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only; never needs the token.
    ReadOnly,
    /// Changes state; needs the token when one is configured.
    Mutating,
}

/// Classifies `service` (fully qualified) / `method` by the rule in the [module docs](self).
pub fn classify(service: &str, method: &str) -> Access {
    if OPEN_SERVICES.contains(&service) {
        return Access::ReadOnly;
    }
    if MUTATING_DESPITE_NAME.iter().any(|full| {
        full.split_once('/')
            .is_some_and(|(s, m)| s == service && m == method)
    }) {
        return Access::Mutating;
    }
    let read_only = READ_ONLY_PREFIXES.iter().any(|prefix| {
        method
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.chars().next().is_none_or(|c| c.is_ascii_uppercase()))
    });
    if read_only {
        Access::ReadOnly
    } else {
        Access::Mutating
    }
}

/// Classifies a request path `/pkg.Service/Method`; anything else is mutating.
pub fn classify_path(path: &str) -> Access {
    match path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'))
    {
        Some((service, method)) => classify(service, method),
        None => Access::Mutating,
    }
}

#[derive(Debug)]
struct Policy {
    token: Option<BearerToken>,
    mtls: bool,
}

/// Tower layer refusing mutating calls without the configured bearer token (see the
/// [module docs](self)).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    policy: Arc<Policy>,
}

impl AuthLayer {
    /// The check `config` asks for (a pass-through when it has no token).
    pub fn new(config: &SecurityConfig) -> Self {
        Self {
            policy: Arc::new(Policy {
                token: config.token(),
                mtls: config.mtls_enabled(),
            }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Service produced by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    policy: Arc<Policy>,
}

/// Why a call was let through or refused (logged; never contains the token).
enum Verdict {
    Allow(&'static str),
    Deny(&'static str, Status),
}

impl Policy {
    fn decide(&self, path: &str, headers: &http::HeaderMap) -> Verdict {
        if classify_path(path) == Access::ReadOnly {
            return Verdict::Allow("read-only");
        }
        let Some(token) = &self.token else {
            return Verdict::Allow(if self.mtls {
                "mutating; verified client certificate, no token configured"
            } else {
                "mutating; no token configured"
            });
        };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Verdict::Deny(
                "no authorization metadata",
                Status::unauthenticated(format!(
                    "{path} changes state and needs a bearer token: send the metadata \
                     `authorization: Bearer <token>` (the ferry CLI sends the token from \
                     FERRY_TOKEN or the file named by FERRY_TOKEN_FILE)"
                )),
            );
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(presented) = presented else {
            return Verdict::Deny(
                "authorization metadata is not a bearer token",
                Status::unauthenticated(format!(
                    "{path}: the authorization metadata must be `Bearer <token>`"
                )),
            );
        };
        if token.matches(presented.as_bytes()) {
            Verdict::Allow("mutating; bearer token valid")
        } else {
            Verdict::Deny(
                "bearer token not valid",
                Status::unauthenticated(format!(
                    "{path}: the bearer token is not valid for this server"
                )),
            )
        }
    }
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for Auth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        match self.policy.decide(req.uri().path(), req.headers()) {
            Verdict::Allow(reason) => {
                tracing::debug!(method = %req.uri().path(), decision = "allow", reason, "auth");
                Either::Right(self.inner.call(req))
            }
            Verdict::Deny(reason, status) => {
                tracing::debug!(method = %req.uri().path(), decision = "deny", reason, "auth");
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;

    /// Every RPC of every Ferry service that changes state. A new RPC lands here or gets a
    /// read-only name; this test fails until one of the two happens.
    const MUTATING: &[&str] = &[
        "ferry.health_check.v1.HealthCheckService/CheckTopics",
        "ferry.metadata_sync.v1.ImportTaskService/CreateImportTask",
        "ferry.metadata_sync.v1.ImportTaskService/RetryImportTask",
        "ferry.metadata_sync.v1.ImportTaskService/SetTargetQuota",
        "ferry.metadata_sync.v1.MigrationTaskService/AddTopics",
        "ferry.metadata_sync.v1.MigrationTaskService/AdvanceStep",
        "ferry.metadata_sync.v1.MigrationTaskService/AdvanceTopics",
        "ferry.metadata_sync.v1.MigrationTaskService/CompleteTask",
        "ferry.metadata_sync.v1.MigrationTaskService/ConnectSource",
        "ferry.metadata_sync.v1.MigrationTaskService/CreateMigrationItem",
        "ferry.metadata_sync.v1.MigrationTaskService/CreateMigrationTask",
        "ferry.metadata_sync.v1.MigrationTaskService/ImportMigrationItems",
        "ferry.metadata_sync.v1.MigrationTaskService/ImportRoles",
        "ferry.metadata_sync.v1.MigrationTaskService/PauseTask",
        "ferry.metadata_sync.v1.MigrationTaskService/RefreshSourceInventory",
        "ferry.metadata_sync.v1.MigrationTaskService/RemoveTopics",
        "ferry.metadata_sync.v1.MigrationTaskService/ResumeTask",
        "ferry.metadata_sync.v1.MigrationTaskService/RollbackStep",
        "ferry.metadata_sync.v1.MigrationTaskService/Reconcile",
        "ferry.metadata_sync.v1.MigrationTaskService/RollbackTask",
        "ferry.metadata_sync.v1.MigrationTaskService/RollbackTopics",
        "ferry.scanner.v1.ScannerService/Scan",
    ];

    /// Every `package.Service/Method` of the Ferry API descriptor set.
    fn ferry_rpcs() -> Vec<(String, String)> {
        let set = prost_types::FileDescriptorSet::decode(ferry_api::FILE_DESCRIPTOR_SET).unwrap();
        let mut rpcs = Vec::new();
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    rpcs.push((
                        format!("{package}.{}", service.name()),
                        method.name().to_owned(),
                    ));
                }
            }
        }
        rpcs
    }

    #[test]
    fn every_ferry_rpc_is_classified() {
        let rpcs = ferry_rpcs();
        let services: BTreeSet<&str> = rpcs.iter().map(|(s, _)| s.as_str()).collect();
        for name in [
            ferry_api::service_names::SCANNER,
            ferry_api::service_names::IMPORT_TASK,
            ferry_api::service_names::MIGRATION_TASK,
            ferry_api::service_names::ROUTER,
            ferry_api::service_names::HEALTH_CHECK,
        ] {
            assert!(
                services.contains(name),
                "{name} missing from the descriptor set"
            );
        }
        let mutating: BTreeSet<String> = rpcs
            .iter()
            .filter(|(s, m)| classify(s, m) == Access::Mutating)
            .map(|(s, m)| format!("{s}/{m}"))
            .collect();
        let expected: BTreeSet<String> = MUTATING.iter().map(|s| (*s).to_owned()).collect();
        let unlisted: Vec<_> = mutating.difference(&expected).collect();
        let stale: Vec<_> = expected.difference(&mutating).collect();
        assert!(
            unlisted.is_empty() && stale.is_empty(),
            "RPCs classified mutating but not listed in MUTATING (add them, or give them a \
             read-only name if they change nothing): {unlisted:?}; listed in MUTATING but \
             read-only or gone: {stale:?}"
        );
        // The paths the server sees classify the same way.
        for (s, m) in &rpcs {
            assert_eq!(classify_path(&format!("/{s}/{m}")), classify(s, m));
        }
    }

    /// The mesh retries only what `deploy/grpc-methods.tsv` calls a read; the token must
    /// guard exactly what it calls a write.
    #[test]
    fn agrees_with_the_deploy_classification() {
        let tsv = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grpc-methods.tsv"
        ))
        .unwrap();
        let mut checked = 0;
        for line in tsv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let mut fields = line.split('\t');
            let (Some(path), Some(class)) = (fields.next(), fields.next()) else {
                panic!("malformed line {line:?}");
            };
            let expected = match class {
                "write" => Access::Mutating,
                "read" | "read-stream" => Access::ReadOnly,
                other => panic!("unknown class {other:?} in {line:?}"),
            };
            assert_eq!(
                classify_path(&format!("/{path}")),
                expected,
                "{path} is {class} in deploy/grpc-methods.tsv"
            );
            checked += 1;
        }
        assert!(checked >= MUTATING.len(), "{checked} lines checked");
    }

    #[test]
    fn rule_by_name() {
        assert_eq!(classify("x.v1.S", "GetThing"), Access::ReadOnly);
        assert_eq!(classify("x.v1.S", "List"), Access::ReadOnly);
        assert_eq!(classify("x.v1.S", "WatchStages"), Access::ReadOnly);
        assert_eq!(
            classify("ferry.health_check.v1.HealthCheckService", "CheckTopics"),
            Access::Mutating
        );
        assert_eq!(
            classify("ferry.health_check.v1.HealthCheckService", "CheckBacklog"),
            Access::ReadOnly
        );
        assert_eq!(classify("x.v1.S", "Getaway"), Access::Mutating);
        assert_eq!(classify("x.v1.S", "Checkout"), Access::Mutating);
        assert_eq!(classify("x.v1.S", "DeleteThing"), Access::Mutating);
        assert_eq!(classify("x.v1.S", "getThing"), Access::Mutating);
        assert_eq!(classify("grpc.health.v1.Health", "Watch"), Access::ReadOnly);
        assert_eq!(
            classify(
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo"
            ),
            Access::ReadOnly
        );
        assert_eq!(classify_path("/nope"), Access::Mutating);
        assert_eq!(classify_path("/a/b/GetX"), Access::Mutating);
        assert_eq!(classify_path("/x.v1.S/GetX"), Access::ReadOnly);
    }

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(v) = auth {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn token_check() {
        const SECRET: &str = "0123456789abcdef-secret";
        let config = SecurityConfig::none().with_token(SECRET).unwrap();
        let layer = AuthLayer::new(&config);
        let policy = &layer.policy;
        let path = "/ferry.scanner.v1.ScannerService/Scan";
        let denied = |auth: Option<&str>| match policy.decide(path, &headers(auth)) {
            Verdict::Deny(_, status) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated);
                assert!(!status.message().contains(SECRET));
                status.message().to_owned()
            }
            Verdict::Allow(reason) => panic!("allowed: {reason}"),
        };
        assert!(denied(None).contains("authorization: Bearer <token>"));
        assert!(denied(Some("Basic abc")).contains("must be `Bearer <token>`"));
        assert!(denied(Some(SECRET)).contains("must be `Bearer <token>`"));
        assert!(denied(Some("Bearer wrong")).contains("not valid"));
        assert!(denied(Some(&format!("Bearer {SECRET}x"))).contains("not valid"));
        for ok in [
            format!("Bearer {SECRET}"),
            format!("bearer {SECRET}"),
            format!("BEARER  {SECRET} "),
        ] {
            assert!(matches!(
                policy.decide(path, &headers(Some(&ok))),
                Verdict::Allow(_)
            ));
        }
        // Read-only calls need nothing.
        assert!(matches!(
            policy.decide(
                "/ferry.scanner.v1.ScannerService/ListSnapshots",
                &headers(None)
            ),
            Verdict::Allow("read-only")
        ));
        assert!(!format!("{layer:?}").contains(SECRET));
    }

    #[test]
    fn no_token_lets_everything_through() {
        let layer = AuthLayer::new(&SecurityConfig::none());
        assert!(matches!(
            layer
                .policy
                .decide("/ferry.scanner.v1.ScannerService/Scan", &headers(None)),
            Verdict::Allow(_)
        ));
    }
}
