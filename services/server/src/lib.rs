//! gRPC server plumbing shared by every Ferry service binary.
//!
//! [`GrpcServer`] serves a set of tonic services on one address and adds what
//! every Ferry server must have:
//! - `grpc.health.v1.Health`, driven through the [`HealthReporter`] handle
//!   ([`GrpcServer::health_reporter`]);
//! - server reflection, v1 and v1alpha, answering from the file descriptor
//!   sets passed to [`GrpcServer::add_file_descriptor_set`] (the health and
//!   reflection descriptors are always included), advertising exactly the
//!   services being served;
//! - a `grpc.request` tracing span per call that continues the caller's W3C
//!   trace, plus `ferry_grpc_requests_total` and
//!   `ferry_grpc_request_duration_seconds` (see [`layer`]);
//! - graceful drain: when the shutdown future resolves, every health status
//!   turns NOT_SERVING, open health `Watch` streams send NOT_SERVING and end
//!   (they would otherwise hold their connection open for the whole drain),
//!   the listener closes, in-flight calls get up to the drain timeout (default
//!   [`DEFAULT_DRAIN_TIMEOUT`]) to finish, and whatever is still open after
//!   that is closed;
//! - optional TLS / mTLS and a bearer token for mutating calls, read from the
//!   `FERRY_TLS_*` and `FERRY_AUTH_TOKEN*` environment variables when the server
//!   is bound (see [`security`] for the variables, [`auth`] for which calls need
//!   the token). Unset, the server is plaintext and open, as before;
//! - idempotency keys: a mutating call carrying `idempotency-key` is run once and its
//!   answer replayed to retries, with records in the store given to
//!   [`GrpcServer::idempotency`] (see [`idempotency`]). Without one, such calls are refused
//!   with FAILED_PRECONDITION rather than run unprotected.
//!
//! The listener is bound by [`GrpcServer::bind`] before anything is served, so
//! the real address (port 0 supported) is known up front.
//!
//! # Health
//!
//! When serving starts, `""` (the whole server) and every added service are
//! SERVING, except services whose status the binary already set through the
//! reporter: set one NOT_SERVING before [`GrpcServer::serve`] to hold it back
//! until it is ready.
//!
//! # Example
//!
//! ```no_run
//! # use std::net::SocketAddr;
//! # async fn run(admin: tonic_health::pb::health_server::HealthServer<
//! #     impl tonic_health::pb::health_server::Health>) -> anyhow::Result<()> {
//! use ferry_server::{GrpcServer, shutdown_signal};
//! use tonic_health::ServingStatus;
//!
//! let addr: SocketAddr = "0.0.0.0:9090".parse()?;
//! let mut server = GrpcServer::bind(addr).await?;
//! tracing::info!(addr = %server.local_addr(), "admin gRPC listening");
//! let health = server.health_reporter();
//! server
//!     .add_service(admin) // any tonic-generated `FooServer<impl Foo>`
//!     // .add_file_descriptor_set(ferry_api::FILE_DESCRIPTOR_SET)
//!     .drain_timeout(std::time::Duration::from_secs(5));
//!
//! // Readiness can change later, e.g. when an upstream goes away:
//! health
//!     .set_service_status("ferry.router.v1.RouterAdmin", ServingStatus::NotServing)
//!     .await;
//!
//! server.serve(shutdown_signal()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod idempotency;
pub mod layer;
pub mod pending;
mod run;
pub mod security;

mod drain;
mod health;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::Health as _;

pub use auth::AuthLayer;
pub use idempotency::{IdempotencyLayer, IdempotencyStore, MemoryIdempotencyStore};
pub use layer::GrpcTelemetryLayer;
pub use run::{run_until, set_serving};
pub use security::{SecurityConfig, SecurityError};
pub use tonic_health::server::HealthReporter;

/// Default bound on graceful drain.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// After the drain deadline, how long closed connections get to unwind before
/// the server stops waiting for them.
const FORCE_CLOSE_GRACE: Duration = Duration::from_secs(2);

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1_SERVICE: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA_SERVICE: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Errors of the server plumbing.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or another address")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A descriptor set passed to [`GrpcServer::add_file_descriptor_set`] is invalid.
    #[error("invalid file descriptor set for reflection: {0}; rebuild the API crate")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The address of an already bound listener cannot be read.
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
    /// The TLS or token settings cannot be used (see [`security`]).
    #[error("security settings: {0}")]
    Security(#[from] SecurityError),
    /// The HTTP/2 server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound, not yet serving, gRPC server. See the [crate docs](crate).
#[derive(Debug)]
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: RoutesBuilder,
    health: HealthReporter,
    draining: CancellationToken,
    services: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    drain_timeout: Duration,
    security: SecurityConfig,
    idempotency: IdempotencyLayer,
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks a free port) and reads the security settings from
    /// the environment ([`SecurityConfig::from_env`]); nothing is served until
    /// [`serve`](Self::serve).
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServerError> {
        // Settings first: a server that cannot be secured as asked never listens.
        let security = SecurityConfig::from_env()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let mut server = Self::with_listener(listener)?;
        server.security = security;
        Ok(server)
    }

    /// Uses an already bound listener; security settings from the environment, as
    /// [`bind`](Self::bind).
    pub fn from_listener(listener: TcpListener) -> Result<Self, ServerError> {
        let security = SecurityConfig::from_env()?;
        let mut server = Self::with_listener(listener)?;
        server.security = security;
        Ok(server)
    }

    fn with_listener(listener: TcpListener) -> Result<Self, ServerError> {
        let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
        let health = HealthReporter::new();
        let draining = CancellationToken::new();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health::service(&health, draining.clone()));
        Ok(Self {
            listener,
            local_addr,
            routes,
            health,
            draining,
            services: Vec::new(),
            descriptor_sets: Vec::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            security: SecurityConfig::none(),
            idempotency: IdempotencyLayer::disabled(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handle to set SERVING / NOT_SERVING per service name (`""` = whole server).
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Adds a tonic service (e.g. a generated `FooServer`), routed by its
    /// [`NamedService::NAME`].
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.services.push(S::NAME);
        self
    }

    /// Registers an encoded `FileDescriptorSet` (e.g. `ferry_api::FILE_DESCRIPTOR_SET`)
    /// for reflection. Files already registered are skipped.
    pub fn add_file_descriptor_set(&mut self, set: &'static [u8]) -> &mut Self {
        self.descriptor_sets.push(set);
        self
    }

    /// Replaces the security settings read from the environment (tests, embedders).
    pub fn security(&mut self, config: SecurityConfig) -> &mut Self {
        self.security = config;
        self
    }

    /// The security settings this server will serve with.
    pub fn security_config(&self) -> &SecurityConfig {
        &self.security
    }

    /// Keeps records of mutating calls sent with an `idempotency-key` in `store`, so a
    /// retry gets the first answer instead of a second effect (see [`idempotency`]).
    /// Without it such calls are refused with FAILED_PRECONDITION.
    pub fn idempotency(&mut self, store: Arc<dyn IdempotencyStore>) -> &mut Self {
        let ttl = self.idempotency.ttl();
        self.idempotency = IdempotencyLayer::new(store).with_ttl(ttl);
        self
    }

    /// How long idempotency records are kept (default [`idempotency::DEFAULT_TTL`]).
    pub fn idempotency_ttl(&mut self, ttl: Duration) -> &mut Self {
        self.idempotency = self.idempotency.clone().with_ttl(ttl);
        self
    }

    /// Bound on graceful drain after shutdown is requested.
    pub fn drain_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.drain_timeout = timeout;
        self
    }

    /// Every service this server answers for, as reflection lists them.
    fn advertised(&self) -> Vec<&'static str> {
        let mut names = vec![
            HEALTH_SERVICE,
            REFLECTION_V1_SERVICE,
            REFLECTION_V1ALPHA_SERVICE,
        ];
        names.extend(self.services.iter().copied());
        names
    }

    fn reflection_builder(&self) -> tonic_reflection::server::Builder<'static> {
        let builtin = [
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut builder = tonic_reflection::server::Builder::configure();
        for set in builtin
            .into_iter()
            .chain(self.descriptor_sets.iter().copied())
        {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        for name in self.advertised() {
            builder = builder.with_service_name(name);
        }
        builder
    }

    /// Marks `""` and every added service SERVING unless the binary already set it.
    async fn initial_health(&self) {
        let probe = tonic_health::server::HealthService::from_health_reporter(self.health.clone());
        for name in std::iter::once("").chain(self.services.iter().copied()) {
            let request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
                service: name.to_owned(),
            });
            if probe.check(request).await.is_err() {
                self.health
                    .set_service_status(name, ServingStatus::Serving)
                    .await;
            }
        }
    }

    /// Serves until `shutdown` resolves, then drains (see the [crate docs](crate)).
    /// Returns once every connection is closed or the drain timeout forced them.
    pub async fn serve<F>(self, shutdown: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send,
    {
        let v1 = self.reflection_builder().build_v1()?;
        let v1alpha = self.reflection_builder().build_v1alpha()?;
        self.initial_health().await;

        let advertised = self.advertised();
        let Self {
            listener,
            local_addr,
            mut routes,
            health,
            draining,
            services,
            drain_timeout,
            security,
            idempotency,
            ..
        } = self;
        routes.add_service(v1).add_service(v1alpha);
        let routes: Routes = routes.routes();

        let kill = CancellationToken::new();
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!(addr = %local_addr, timeout_s = drain_timeout.as_secs_f64(), "shutdown requested; draining gRPC server");
            // Tell health watchers first so load balancers stop routing here.
            for name in std::iter::once("").chain(services.iter().copied()) {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            draining.cancel();
            let _ = draining_tx.send(());
        };

        let (tls, auth) = security.describe();
        tracing::info!(addr = %local_addr, services = ?advertised, tls, auth = %auth, idempotency_records = idempotency.enabled(), "gRPC server serving");
        warn_if_exposed(local_addr, &security);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = security.server_tls() {
            builder = builder.tls_config(tls)?;
        }
        // Telemetry outside auth: refused calls are counted and traced like any other.
        // Idempotency inside auth: unauthenticated calls never touch the records.
        let server = builder
            .layer(GrpcTelemetryLayer::with_known_services(advertised))
            .layer(AuthLayer::new(&security))
            .layer(idempotency)
            .add_routes(routes)
            .serve_with_incoming_shutdown(drain::incoming(listener, kill.clone()), signal);
        let mut server = std::pin::pin!(server);

        let drain_deadline = async {
            match draining_rx.await {
                Ok(()) => tokio::time::sleep(drain_timeout).await,
                // The server ended on its own before any shutdown request.
                Err(_) => std::future::pending().await,
            }
        };

        tokio::select! {
            result = &mut server => result?,
            () = drain_deadline => {
                tracing::warn!(addr = %local_addr, "drain timeout reached; closing remaining connections");
                kill.cancel();
                match tokio::time::timeout(FORCE_CLOSE_GRACE, &mut server).await {
                    Ok(result) => result?,
                    Err(_) => tracing::warn!(addr = %local_addr, "connections still open after force close; abandoning them"),
                }
            }
        }
        tracing::info!(addr = %local_addr, "gRPC server stopped");
        Ok(())
    }
}

/// Says so when a server reachable from other hosts has no authentication or sends the
/// token in the clear.
fn warn_if_exposed(addr: SocketAddr, security: &SecurityConfig) {
    if addr.ip().is_loopback() {
        return;
    }
    if !security.token_required() && !security.mtls_enabled() {
        tracing::warn!(
            %addr,
            "mutating gRPC calls need no credentials on this address; set {} (and TLS) to require a bearer token",
            security::ENV_AUTH_TOKEN_FILE
        );
    } else if security.token_required() && !security.tls_enabled() {
        tracing::warn!(
            %addr,
            "the bearer token travels in plaintext on this address; set {} and {} to serve TLS",
            security::ENV_TLS_CERT_FILE,
            security::ENV_TLS_KEY_FILE
        );
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), logging which one arrived.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C; shutting down"),
        () = term => tracing::info!("received SIGTERM; shutting down"),
    }
}
