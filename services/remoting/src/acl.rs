//! ACL 1.0 request signing, as Java's `AclClientRPCHook` (also accepted by 5.3's
//! ACL 2.0 brokers, with AccessKey = username, SecretKey = password).
//!
//! `doBeforeRequest`:
//! 1. `extFields["AccessKey"] = ak`, plus `extFields["SecurityToken"]` if set;
//! 2. content = the *values* of all ext fields in key order (Java `TreeMap`, i.e.
//!    UTF-16 code-unit order), skipping `Signature`, as UTF-8, followed by the raw
//!    body bytes (`AclUtils.combineRequestContent` / `combineBytes`);
//! 3. `extFields["Signature"] = Base64(HmacSHA1(secretKey, content))`
//!    (`AclSigner.calSignature`, standard alphabet with padding).
//!
//! Sign last: any ext field or body change after signing invalidates the signature.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

use crate::command::RemotingCommand;
use crate::error::{RemotingError, Result};

/// `SessionCredentials.ACCESS_KEY`.
pub const ACCESS_KEY: &str = "AccessKey";
/// `SessionCredentials.SECRET_KEY` (never sent).
pub const SECRET_KEY: &str = "SecretKey";
/// `SessionCredentials.SIGNATURE`.
pub const SIGNATURE: &str = "Signature";
/// `SessionCredentials.SECURITY_TOKEN`.
pub const SECURITY_TOKEN: &str = "SecurityToken";

/// An access key / secret key pair. `Debug` and `Display` never show the secret
/// key or the security token; there is no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key: String,
    secret_key: String,
    security_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }

    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }

    /// The secret, for callers that must hand it to another signer. Avoid logging.
    pub fn expose_secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Signs `cmd` in place (adds `AccessKey`, `SecurityToken`, `Signature`).
    pub fn sign(&self, cmd: &mut RemotingCommand) -> Result<()> {
        sign_request(cmd, self)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access key {} (secret key ***)", self.access_key)
    }
}

/// The bytes Java signs: ext field values sorted by key (UTF-16 order, like a Java
/// `TreeMap<String, _>`), except `Signature`, then the body.
pub fn signature_content(ext_fields: &BTreeMap<String, String>, body: &[u8]) -> Vec<u8> {
    let mut entries: Vec<(&String, &String)> = ext_fields
        .iter()
        .filter(|(k, _)| k.as_str() != SIGNATURE)
        .collect();
    // BTreeMap orders by UTF-8 bytes, which differs from Java's UTF-16 order only for
    // supplementary vs. U+E000..U+FFFF characters; re-sort to match Java exactly.
    entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut content =
        Vec::with_capacity(entries.iter().map(|(_, v)| v.len()).sum::<usize>() + body.len());
    for (_, v) in entries {
        content.extend_from_slice(v.as_bytes());
    }
    content.extend_from_slice(body);
    content
}

/// `AclSigner.calSignature`: Base64(HmacSHA1(secret_key, content)).
/// Errors (without echoing the key) on an empty secret key, as Java's `Mac.init` does.
pub fn calc_signature(content: &[u8], secret_key: &str) -> Result<String> {
    if secret_key.is_empty() {
        return Err(RemotingError::Auth {
            reason: "secret key is empty".to_string(),
        });
    }
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret_key.as_bytes()).map_err(|_| RemotingError::Auth {
            reason: "secret key rejected by HMAC-SHA1".to_string(),
        })?;
    mac.update(content);
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Java `AclClientRPCHook.doBeforeRequest` on a fully built command.
pub fn sign_request(cmd: &mut RemotingCommand, creds: &Credentials) -> Result<()> {
    if creds.access_key.is_empty() {
        return Err(RemotingError::Auth {
            reason: "access key is empty".to_string(),
        });
    }
    cmd.ext_fields
        .insert(ACCESS_KEY.to_string(), creds.access_key.clone());
    if let Some(token) = &creds.security_token {
        cmd.ext_fields
            .insert(SECURITY_TOKEN.to_string(), token.clone());
    }
    let content = signature_content(&cmd.ext_fields, &cmd.body);
    let sig = calc_signature(&content, &creds.secret_key)?;
    cmd.ext_fields.insert(SIGNATURE.to_string(), sig);
    Ok(())
}

/// Recomputes the signature of a received command (as a broker's validator would),
/// e.g. to test that a proxied request is still valid.
pub fn verify_request(cmd: &RemotingCommand, secret_key: &str) -> Result<bool> {
    let Some(sig) = cmd.ext(SIGNATURE) else {
        return Ok(false);
    };
    let content = signature_content(&cmd.ext_fields, &cmd.body);
    Ok(calc_signature(&content, secret_key)? == sig)
}
