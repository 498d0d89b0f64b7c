//! How `ferry` reaches a Ferry server: TLS for `https://` addresses and the bearer token,
//! from the connection options of [`crate::Cli`] (set once in `main`).
//!
//! - `--addr https://…` speaks TLS, trusting `--tls-ca-file` (`FERRY_TLS_CA_FILE`) when
//!   given, else the system's roots; `--tls-client-cert-file` / `--tls-client-key-file`
//!   present a client certificate (servers with `FERRY_TLS_CLIENT_CA_FILE`).
//! - Every call carries `authorization: Bearer <token>` when `FERRY_TOKEN` or the file named
//!   by `--token-file` (`FERRY_TOKEN_FILE`) holds a token. Read-only calls do not need it;
//!   sending it anyway is harmless.
//! - Every call carries the command's W3C trace context (`traceparent`), so the server spans
//!   of one command form one trace (see `main`).
//! - Every call carries `idempotency-key: <id>` when `--request-id` (`FERRY_REQUEST_ID`) is
//!   given: a server runs a mutating call with that key once and answers a retry with the
//!   first answer (marked `idempotent-replay: true`), so automation can re-run a command
//!   whose outcome it did not see. Servers ignore the key on read-only calls. Use one id per
//!   command you mean to run once; reusing it for a different request is refused.
//!
//! Commands build their channel with [`endpoint`] and wrap it with [`authorized`]:
//!
//! ```ignore
//! let channel = connect::endpoint(addr)?.connect().await?;
//! let client = FooServiceClient::new(connect::authorized(channel)?);
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context as _;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The bearer token itself (no flag: `ps` would show it).
pub const ENV_TOKEN: &str = "FERRY_TOKEN";

/// Metadata carrying the request id (`ferry_server::idempotency::HEADER`).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest request id a server accepts.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Connection settings from the global options.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// File holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for `https://` instead of the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for mTLS.
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub tls_client_key_file: Option<PathBuf>,
    /// Sent as `idempotency-key` with every call.
    pub request_id: Option<String>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Records the connection options; called once by `main` before any command runs.
pub fn init(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> &'static Settings {
    SETTINGS.get_or_init(Settings::default)
}

/// A channel whose calls carry the bearer token and the request id (when configured).
pub type FerryChannel = InterceptedService<Channel, CallMetadata>;

/// Adds `authorization: Bearer <token>`, `idempotency-key: <request id>` and the current
/// trace context to every call.
#[derive(Clone, Default)]
pub struct CallMetadata {
    token: Option<AsciiMetadataValue>,
    request_id: Option<AsciiMetadataValue>,
}

impl Interceptor for CallMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        ferry_telemetry::propagation::inject_context(request.metadata_mut());
        if let Some(value) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = &self.request_id {
            request
                .metadata_mut()
                .insert(IDEMPOTENCY_HEADER, value.clone());
        }
        Ok(request)
    }
}

/// The endpoint for `addr`: TLS when it is `https://`.
pub fn endpoint(addr: &str) -> anyhow::Result<Endpoint> {
    let endpoint = Channel::from_shared(addr.to_string())
        .with_context(|| format!("invalid address {addr:?}"))?;
    if !addr.starts_with("https://") {
        return Ok(endpoint);
    }
    let s = settings();
    let mut tls = ClientTlsConfig::new();
    tls = match &s.tls_ca_file {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read(path, "--tls-ca-file")?)),
        None => tls.with_native_roots(),
    };
    match (&s.tls_client_cert_file, &s.tls_client_key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--tls-client-cert-file")?,
                read(key, "--tls-client-key-file")?,
            ));
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "set both --tls-client-cert-file and --tls-client-key-file (FERRY_TLS_CLIENT_CERT_FILE, FERRY_TLS_CLIENT_KEY_FILE), or neither"
        ),
    }
    endpoint
        .tls_config(tls)
        .with_context(|| format!("cannot set up TLS for {addr}"))
}

/// `channel` with the bearer token of `FERRY_TOKEN` / `--token-file` and the
/// `--request-id` added to every call.
pub fn authorized(channel: Channel) -> anyhow::Result<FerryChannel> {
    Ok(InterceptedService::new(
        channel,
        CallMetadata {
            token: token()?,
            request_id: request_id(settings().request_id.as_deref())?,
        },
    ))
}

/// The request id as metadata: 1 to [`MAX_REQUEST_ID_LEN`] printable ASCII characters.
fn request_id(raw: Option<&str>) -> anyhow::Result<Option<AsciiMetadataValue>> {
    let Some(id) = raw else {
        return Ok(None);
    };
    anyhow::ensure!(
        !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id.bytes().all(|b| (0x20..=0x7e).contains(&b))
            && id.trim() == id,
        "--request-id (FERRY_REQUEST_ID) must be 1 to {MAX_REQUEST_ID_LEN} printable ASCII \
         characters without leading or trailing spaces, e.g. a UUID"
    );
    let value = MetadataValue::try_from(id)
        .map_err(|_| anyhow::anyhow!("--request-id cannot be sent as gRPC metadata"))?;
    Ok(Some(value))
}

fn token() -> anyhow::Result<Option<AsciiMetadataValue>> {
    let from_env = std::env::var(ENV_TOKEN).ok();
    let (raw, origin) = match (&settings().token_file, from_env) {
        (Some(_), Some(_)) => {
            anyhow::bail!("set {ENV_TOKEN} or --token-file (FERRY_TOKEN_FILE), not both")
        }
        (Some(path), None) => {
            let raw = String::from_utf8(read(path, "--token-file")?)
                .map_err(|_| anyhow::anyhow!("the token file {} is not text", path.display()))?;
            (raw, format!("the token file {}", path.display()))
        }
        (None, Some(raw)) => (raw, ENV_TOKEN.to_owned()),
        (None, None) => return Ok(None),
    };
    let token = raw.trim();
    anyhow::ensure!(!token.is_empty(), "{origin} is empty");
    // Never put the token into the error: only say where it came from.
    let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| anyhow::anyhow!("{origin} holds characters a gRPC header cannot carry"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn read(path: &Path, option: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {option} {}", path.display()))
}

#[cfg(test)]
mod request_id_tests {
    use super::*;

    #[test]
    fn request_id_rules() {
        assert!(request_id(None).unwrap().is_none());
        let ok = request_id(Some("deploy-42/step 3")).unwrap().unwrap();
        assert_eq!(ok.to_str().unwrap(), "deploy-42/step 3");
        assert!(request_id(Some(&"r".repeat(MAX_REQUEST_ID_LEN))).is_ok());
        for bad in [
            String::new(),
            "r".repeat(MAX_REQUEST_ID_LEN + 1),
            "tab\there".into(),
            "ünicode".into(),
            " padded ".into(),
        ] {
            let err = request_id(Some(&bad)).unwrap_err().to_string();
            assert!(err.contains("--request-id"), "{err}");
        }
    }

    #[test]
    fn every_call_carries_the_request_id() {
        let mut meta = CallMetadata {
            token: Some(MetadataValue::try_from("Bearer t").unwrap()),
            request_id: request_id(Some("req-1")).unwrap(),
        };
        let request = meta.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get(IDEMPOTENCY_HEADER).unwrap(), "req-1");
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer t");
        let request = CallMetadata::default()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(request.metadata().get(IDEMPOTENCY_HEADER).is_none());
        assert!(request.metadata().get("authorization").is_none());
    }
}
