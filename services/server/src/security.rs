//! Transport security and caller authentication of every Ferry gRPC server.
//!
//! Read once, when the server is bound ([`GrpcServer::bind`](crate::GrpcServer::bind)), from
//! the environment; secrets come from the environment or from files, never from flags
//! (`ps` shows flags):
//!
//! | variable | meaning |
//! |---|---|
//! | `FERRY_TLS_CERT_FILE` | PEM certificate chain of the server; with `FERRY_TLS_KEY_FILE` turns TLS on |
//! | `FERRY_TLS_KEY_FILE` | PEM private key of that certificate |
//! | `FERRY_TLS_CLIENT_CA_FILE` | PEM CA certificate(s): clients must present a certificate signed by one (mTLS); needs TLS |
//! | `FERRY_AUTH_TOKEN_FILE` | file holding the bearer token that mutating calls must carry |
//! | `FERRY_AUTH_TOKEN` | the token itself (instead of the file) |
//!
//! Unset means off: plaintext and no token, as before. A variable that is set but empty, a
//! key without a certificate (or the reverse), a client CA without TLS, both token variables,
//! an unreadable file or a certificate/key that does not load is an error at startup (the
//! server does not start half-secured). The token file is trimmed of surrounding whitespace;
//! a token must be visible ASCII (it travels as `authorization: Bearer <token>`).
//!
//! What the token guards is decided by [`crate::auth`]. The token is never logged, never
//! shown by `Debug` and never part of an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// PEM certificate chain of the server.
pub const ENV_TLS_CERT_FILE: &str = "FERRY_TLS_CERT_FILE";
/// PEM private key of the server certificate.
pub const ENV_TLS_KEY_FILE: &str = "FERRY_TLS_KEY_FILE";
/// PEM CA certificate(s) client certificates must chain to (turns on mTLS).
pub const ENV_TLS_CLIENT_CA_FILE: &str = "FERRY_TLS_CLIENT_CA_FILE";
/// File holding the bearer token of mutating calls.
pub const ENV_AUTH_TOKEN_FILE: &str = "FERRY_AUTH_TOKEN_FILE";
/// The bearer token of mutating calls.
pub const ENV_AUTH_TOKEN: &str = "FERRY_AUTH_TOKEN";

/// Bound on a TLS handshake, so idle half-open connections cannot pile up.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Tokens shorter than this are accepted but warned about.
const SHORT_TOKEN: usize = 16;

/// A security setting that cannot be used. Messages name the variable and file, never a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A variable is set to nothing.
    #[error("{var} is set but empty; unset it to turn this off, or give it a value")]
    Empty {
        /// The variable.
        var: &'static str,
    },
    /// Variables that only work together, or exclude each other.
    #[error("{0}")]
    Combination(String),
    /// A file named by a variable cannot be read.
    #[error("cannot read {var} ({}): {source}", path.display())]
    Read {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The certificate, key or client CA does not load.
    #[error("TLS configuration from {what} does not load: {reason}")]
    Tls {
        /// Where the material came from (variables and files).
        what: String,
        /// Why (from rustls; never contains key material).
        reason: String,
    },
    /// The token is unusable.
    #[error("the bearer token from {source_name} {reason}")]
    Token {
        /// Variable (and file) the token came from.
        source_name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The secret bearer token. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct BearerToken(Arc<[u8]>);

impl BearerToken {
    fn parse(raw: &str, source_name: impl FnOnce() -> String) -> Result<Self, SecurityError> {
        let token = raw.trim();
        if token.is_empty() {
            return Err(SecurityError::Token {
                source_name: source_name(),
                reason: "is empty",
            });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecurityError::Token {
                source_name: source_name(),
                reason: "has characters a gRPC header cannot carry; use visible ASCII without spaces (e.g. base64 or hex)",
            });
        }
        Ok(Self(Arc::from(token.as_bytes())))
    }

    /// Constant-time comparison: the time taken depends only on the length of the configured
    /// token, never on the presented one or on where they differ.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        let expected: &[u8] = &self.0;
        let mut equal = (expected.len() as u64).ct_eq(&(presented.len() as u64));
        for (i, e) in expected.iter().enumerate() {
            let p = presented.get(i).copied().unwrap_or(0);
            equal &= e.ct_eq(&p);
        }
        bool::from(equal)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// TLS of a server: its identity and, for mTLS, the CA its clients must chain to.
#[derive(Clone)]
struct TlsSettings {
    config: ServerTlsConfig,
    /// Where it came from, for logs and errors.
    origin: String,
    mutual: bool,
}

impl fmt::Debug for TlsSettings {
    // `ServerTlsConfig`'s own Debug would print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("origin", &self.origin)
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

/// TLS and bearer-token settings of a [`GrpcServer`](crate::GrpcServer). See the
/// [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct SecurityConfig {
    tls: Option<TlsSettings>,
    token: Option<BearerToken>,
    token_origin: Option<String>,
}

impl SecurityConfig {
    /// Plaintext, no token (what an unset environment gives).
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the `FERRY_TLS_*` / `FERRY_AUTH_TOKEN*` variables (see the [module docs](self)).
    pub fn from_env() -> Result<Self, SecurityError> {
        Self::from_lookup(|var| std::env::var_os(var).map(|v| v.to_string_lossy().into_owned()))
    }

    /// As [`from_env`](Self::from_env), with variables looked up by `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SecurityError> {
        let get = |var: &'static str| -> Result<Option<String>, SecurityError> {
            match lookup(var) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Err(SecurityError::Empty { var }),
                Some(v) => Ok(Some(v)),
            }
        };
        let cert = get(ENV_TLS_CERT_FILE)?.map(PathBuf::from);
        let key = get(ENV_TLS_KEY_FILE)?.map(PathBuf::from);
        let client_ca = get(ENV_TLS_CLIENT_CA_FILE)?.map(PathBuf::from);
        let token_file = get(ENV_AUTH_TOKEN_FILE)?.map(PathBuf::from);
        let token = get(ENV_AUTH_TOKEN)?;

        let mut config = Self::none();
        match (cert, key) {
            (None, None) => {
                if client_ca.is_some() {
                    return Err(SecurityError::Combination(format!(
                        "{ENV_TLS_CLIENT_CA_FILE} needs TLS: set {ENV_TLS_CERT_FILE} and {ENV_TLS_KEY_FILE} too"
                    )));
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(SecurityError::Combination(format!(
                    "set both {ENV_TLS_CERT_FILE} (PEM certificate chain) and {ENV_TLS_KEY_FILE} (its PEM private key), or neither"
                )));
            }
            (Some(cert), Some(key)) => {
                let cert_pem = read(ENV_TLS_CERT_FILE, &cert)?;
                let key_pem = read(ENV_TLS_KEY_FILE, &key)?;
                let mut origin = format!(
                    "{ENV_TLS_CERT_FILE}={} and {ENV_TLS_KEY_FILE}={}",
                    cert.display(),
                    key.display()
                );
                let ca_pem = match &client_ca {
                    Some(ca) => {
                        origin
                            .push_str(&format!(" with {ENV_TLS_CLIENT_CA_FILE}={}", ca.display()));
                        Some(read(ENV_TLS_CLIENT_CA_FILE, ca)?)
                    }
                    None => None,
                };
                config.tls = Some(TlsSettings::build(
                    &cert_pem,
                    &key_pem,
                    ca_pem.as_deref(),
                    origin,
                )?);
            }
        }

        match (token_file, token) {
            (Some(_), Some(_)) => {
                return Err(SecurityError::Combination(format!(
                    "set {ENV_AUTH_TOKEN_FILE} or {ENV_AUTH_TOKEN}, not both"
                )));
            }
            (Some(path), None) => {
                let raw = read(ENV_AUTH_TOKEN_FILE, &path)?;
                let origin = format!("{ENV_AUTH_TOKEN_FILE}={}", path.display());
                let text = String::from_utf8(raw).map_err(|_| SecurityError::Token {
                    source_name: origin.clone(),
                    reason: "is not UTF-8 text",
                })?;
                config.token = Some(BearerToken::parse(&text, || origin.clone())?);
                warn_if_readable_by_others(&path);
                config.token_origin = Some(origin);
            }
            (None, Some(token)) => {
                config.token = Some(BearerToken::parse(&token, || ENV_AUTH_TOKEN.to_owned())?);
                config.token_origin = Some(ENV_AUTH_TOKEN.to_owned());
            }
            (None, None) => {}
        }
        if let Some(token) = &config.token
            && token.0.len() < SHORT_TOKEN
        {
            tracing::warn!(
                source = config.token_origin.as_deref().unwrap_or_default(),
                "the bearer token is short; use at least 32 random characters (e.g. `openssl rand -hex 32`)"
            );
        }
        Ok(config)
    }

    /// Serves TLS with this PEM certificate chain and private key.
    pub fn with_tls_pem(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, SecurityError> {
        self.tls = Some(TlsSettings::build(
            cert_pem.as_ref(),
            key_pem.as_ref(),
            None,
            "PEM given in code".into(),
        )?);
        Ok(self)
    }

    /// Serves TLS and requires client certificates signed by `client_ca_pem` (mTLS).
    pub fn with_mtls_pem(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
        client_ca_pem: impl AsRef<[u8]>,
    ) -> Result<Self, SecurityError> {
        self.tls = Some(TlsSettings::build(
            cert_pem.as_ref(),
            key_pem.as_ref(),
            Some(client_ca_pem.as_ref()),
            "PEM given in code".into(),
        )?);
        Ok(self)
    }

    /// Requires `authorization: Bearer <token>` on mutating calls.
    pub fn with_token(mut self, token: &str) -> Result<Self, SecurityError> {
        self.token = Some(BearerToken::parse(token, || "code".to_owned())?);
        self.token_origin = Some("code".to_owned());
        Ok(self)
    }

    /// Whether the server speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether clients must present a certificate signed by the client CA.
    pub fn mtls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.mutual)
    }

    /// Whether mutating calls need the bearer token.
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn server_tls(&self) -> Option<ServerTlsConfig> {
        self.tls.as_ref().map(|t| t.config.clone())
    }

    pub(crate) fn token(&self) -> Option<BearerToken> {
        self.token.clone()
    }

    /// One line for the startup log: what is on, from where (never a secret).
    pub(crate) fn describe(&self) -> (&'static str, String) {
        let tls = match &self.tls {
            None => "off",
            Some(t) if t.mutual => "mtls",
            Some(_) => "tls",
        };
        let auth = match (&self.token_origin, self.mtls_enabled()) {
            (Some(origin), _) => format!("bearer token ({origin})"),
            (None, true) => "client certificate".to_owned(),
            (None, false) => "none".to_owned(),
        };
        (tls, auth)
    }
}

impl TlsSettings {
    fn build(
        cert_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
        origin: String,
    ) -> Result<Self, SecurityError> {
        install_crypto_provider();
        let fail = |reason: String| SecurityError::Tls {
            what: origin.clone(),
            reason,
        };
        if !contains_pem(cert_pem, "CERTIFICATE") {
            return Err(fail(
                "no PEM certificate (-----BEGIN CERTIFICATE-----) in the certificate file".into(),
            ));
        }
        if !contains_pem(key_pem, "PRIVATE KEY") {
            return Err(fail(
                "no PEM private key (-----BEGIN ... PRIVATE KEY-----) in the key file".into(),
            ));
        }
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert_pem, key_pem))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(ca) = client_ca_pem {
            if !contains_pem(ca, "CERTIFICATE") {
                return Err(fail("no PEM certificate in the client CA file".into()));
            }
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        // Build it once now so a bad certificate or key stops the start, not the first call.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|e| fail(error_chain(&e)))?;
        Ok(Self {
            config,
            origin,
            mutual: client_ca_pem.is_some(),
        })
    }
}

fn contains_pem(pem: &[u8], label: &str) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        var,
        path: path.to_owned(),
        source,
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(file = %path.display(), "the bearer token file is readable by every user; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// rustls picks its process-wide crypto provider from its crate features and refuses when
/// more than one is compiled in; Ferry uses aws-lc-rs everywhere (tonic `tls-aws-lc`).
pub(crate) fn install_crypto_provider() {
    // Err means a provider is installed already, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn unset_means_off() {
        let config = SecurityConfig::from_lookup(lookup(&[])).unwrap();
        assert!(!config.tls_enabled());
        assert!(!config.token_required());
        assert_eq!(config.describe(), ("off", "none".to_owned()));
    }

    #[test]
    fn token_from_env_and_file() {
        let config =
            SecurityConfig::from_lookup(lookup(&[(ENV_AUTH_TOKEN, "s3cr3t-token-value-0123")]))
                .unwrap();
        assert!(config.token_required());
        let token = config.token().unwrap();
        assert!(token.matches(b"s3cr3t-token-value-0123"));
        assert!(!token.matches(b"s3cr3t-token-value-012"));
        assert!(!token.matches(b"s3cr3t-token-value-01234"));
        assert!(!token.matches(b""));
        assert!(!format!("{config:?}").contains("s3cr3t"), "{config:?}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  file-token-0123456789abcdef\n").unwrap();
        let config =
            SecurityConfig::from_lookup(lookup(&[(ENV_AUTH_TOKEN_FILE, file.to_str().unwrap())]))
                .unwrap();
        assert!(
            config
                .token()
                .unwrap()
                .matches(b"file-token-0123456789abcdef")
        );
        assert!(config.describe().1.contains(ENV_AUTH_TOKEN_FILE));
        assert!(!config.describe().1.contains("file-token"));
    }

    #[test]
    fn refuses_unusable_settings_without_echoing_secrets() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![(ENV_AUTH_TOKEN, "")], "is set but empty"),
            (vec![(ENV_AUTH_TOKEN, "   ")], "is set but empty"),
            (vec![(ENV_AUTH_TOKEN, "two words-secret")], "visible ASCII"),
            (
                vec![(ENV_AUTH_TOKEN, "abc-secret"), (ENV_AUTH_TOKEN_FILE, "/x")],
                "not both",
            ),
            (
                vec![(ENV_AUTH_TOKEN_FILE, "/nonexistent/ferry-token")],
                "cannot read FERRY_AUTH_TOKEN_FILE",
            ),
            (vec![(ENV_TLS_CERT_FILE, "/x")], "or neither"),
            (vec![(ENV_TLS_KEY_FILE, "/x")], "or neither"),
            (vec![(ENV_TLS_CLIENT_CA_FILE, "/x")], "needs TLS"),
            (
                vec![
                    (ENV_TLS_CERT_FILE, "/nonexistent/c.pem"),
                    (ENV_TLS_KEY_FILE, "/nonexistent/k.pem"),
                ],
                "cannot read FERRY_TLS_CERT_FILE (/nonexistent/c.pem)",
            ),
        ];
        for (vars, expected) in cases {
            let err = SecurityConfig::from_lookup(lookup(&vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{vars:?}: {err}");
            assert!(!err.contains("secret"), "{vars:?}: {err}");
        }
    }

    #[test]
    fn refuses_files_that_are_not_pem() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let err = SecurityConfig::from_lookup(lookup(&[
            (ENV_TLS_CERT_FILE, cert.to_str().unwrap()),
            (ENV_TLS_KEY_FILE, key.to_str().unwrap()),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
