//! TLS, mTLS and the bearer token of mutating calls, over real TCP on 127.0.0.1 with
//! certificates made at test time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_server::{GrpcServer, SecurityConfig, ServerError};
use futures::future::BoxFuture;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const TOKEN: &str = "test-token-7f3a9c1e5b2d4f60";
const SERVICE: &str = "ferry.test.v1.ThingService";
/// Mutating by the naming rule.
const SET: &str = "/ferry.test.v1.ThingService/SetThing";
/// Read-only by the naming rule.
const GET: &str = "/ferry.test.v1.ThingService/GetThing";

/// A hand-written service: every method answers SERVING, so "the call reached the service"
/// is visible as OK.
#[derive(Clone, Default)]
struct Things;

impl NamedService for Things {
    const NAME: &'static str = SERVICE;
}

struct Answer;

impl tonic::server::UnaryService<HealthCheckRequest> for Answer {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
        Box::pin(async {
            Ok(tonic::Response::new(HealthCheckResponse {
                status: WireStatus::Serving as i32,
            }))
        })
    }
}

impl tower::Service<http::Request<Body>> for Things {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Answer, request).await)
        })
    }
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn start(security: SecurityConfig) -> Self {
        let mut server = GrpcServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        server.add_service(Things).security(security);
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

async fn plain_channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

async fn call(
    channel: Channel,
    path: &'static str,
    authorization: Option<&str>,
) -> Result<HealthCheckResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

fn assert_unauthenticated(result: Result<HealthCheckResponse, tonic::Status>) -> String {
    let status = result.expect_err("call must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        !status.message().contains(TOKEN),
        "the token leaked into {status:?}"
    );
    status.message().to_owned()
}

#[tokio::test]
async fn token_guards_mutating_calls_only() {
    let running = Running::start(SecurityConfig::none().with_token(TOKEN).unwrap()).await;
    let channel = plain_channel(running.addr).await.unwrap();

    let message = assert_unauthenticated(call(channel.clone(), SET, None).await);
    assert!(
        message.contains("authorization: Bearer <token>"),
        "{message}"
    );
    assert!(message.contains("SetThing"), "{message}");
    let message = assert_unauthenticated(call(channel.clone(), SET, Some("Bearer wrong")).await);
    assert!(message.contains("not valid"), "{message}");
    // The token without the scheme is not accepted either.
    assert_unauthenticated(call(channel.clone(), SET, Some(TOKEN)).await);

    let ok = call(channel.clone(), SET, Some(&format!("Bearer {TOKEN}")))
        .await
        .expect("the right token passes");
    assert_eq!(ok.status, WireStatus::Serving as i32);

    // Read-only calls need no token: the service's own answer comes back.
    let ok = call(channel.clone(), GET, None).await.unwrap();
    assert_eq!(ok.status, WireStatus::Serving as i32);
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, WireStatus::Serving as i32);

    // An unknown path is mutating: refused before routing says UNIMPLEMENTED.
    let status = {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        grpc.unary::<_, HealthCheckResponse, _>(
            tonic::Request::new(HealthCheckRequest::default()),
            http::uri::PathAndQuery::from_static("/no.such.v1.Service/Delete"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err()
    };
    assert_eq!(status.code(), Code::Unauthenticated);

    running.stop().await;
}

#[tokio::test]
async fn without_a_token_everything_passes() {
    let running = Running::start(SecurityConfig::none()).await;
    let channel = plain_channel(running.addr).await.unwrap();
    call(channel.clone(), SET, None).await.unwrap();
    // A token sent to a server without one is ignored.
    call(channel, SET, Some("Bearer anything")).await.unwrap();
    running.stop().await;
}

/// A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, all PEM.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} {usage:?}"));
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) = leaf(
            vec!["ferry-cli".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self {
            ca_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        }
    }
}

async fn tls_channel(
    addr: SocketAddr,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// A call over `channel` fails at the transport (no gRPC status from the service).
async fn fails_to_talk(channel: Result<Channel, tonic::transport::Error>) {
    let Ok(channel) = channel else { return };
    let result = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await;
    let status = result.expect_err("a call must not succeed");
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ),
        "{status:?}"
    );
}

#[tokio::test]
async fn tls_server_refuses_plaintext_and_serves_clients_trusting_its_ca() {
    let pki = Pki::new("tls");
    let other = Pki::new("other");
    let security = SecurityConfig::none()
        .with_tls_pem(&pki.server_cert_pem, &pki.server_key_pem)
        .unwrap()
        .with_token(TOKEN)
        .unwrap();
    let running = Running::start(security).await;

    // Plaintext HTTP/2 to a TLS port gets nowhere.
    fails_to_talk(plain_channel(running.addr).await).await;
    // A client trusting another CA refuses the server's certificate.
    fails_to_talk(
        tls_channel(
            running.addr,
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&other.ca_pem)),
        )
        .await,
    )
    .await;

    // Trusting the CA works, by IP and by name; auth still applies inside TLS.
    let trusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));
    let channel = tls_channel(running.addr, trusted.clone()).await.unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, WireStatus::Serving as i32);
    assert_unauthenticated(call(channel.clone(), SET, None).await);
    call(channel, SET, Some(&format!("Bearer {TOKEN}")))
        .await
        .unwrap();
    let by_name = tls_channel(running.addr, trusted.domain_name("localhost"))
        .await
        .unwrap();
    call(by_name, GET, None).await.unwrap();

    running.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let pki = Pki::new("mtls");
    let other = Pki::new("other");
    let security = SecurityConfig::none()
        .with_mtls_pem(&pki.server_cert_pem, &pki.server_key_pem, &pki.ca_pem)
        .unwrap();
    assert!(security.mtls_enabled() && !security.token_required());
    let running = Running::start(security).await;
    let trust = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem));

    // No client certificate: the handshake (or the first call) fails.
    fails_to_talk(tls_channel(running.addr, trust()).await).await;
    // A certificate from another CA: refused too.
    fails_to_talk(
        tls_channel(
            running.addr,
            trust().identity(Identity::from_pem(
                &other.client_cert_pem,
                &other.client_key_pem,
            )),
        )
        .await,
    )
    .await;

    // A certificate from the client CA is the credential: mutating calls pass without a token.
    let channel = tls_channel(
        running.addr,
        trust().identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        )),
    )
    .await
    .unwrap();
    call(channel.clone(), SET, None).await.unwrap();
    call(channel, GET, None).await.unwrap();

    running.stop().await;
}

#[tokio::test]
async fn bad_tls_material_is_refused_at_configuration() {
    let pki = Pki::new("bad");
    // A key that does not belong to the certificate.
    let err = SecurityConfig::none()
        .with_tls_pem(&pki.server_cert_pem, &pki.client_key_pem)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not load"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    // Swapped files.
    let err = SecurityConfig::none()
        .with_tls_pem(&pki.server_key_pem, &pki.server_cert_pem)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
}
