//! Step 2 roles: ACL accounts of the source imported into the target with their keys.
//!
//! Secrets are stored on the task (the store is the only place they live) and never come
//! back from any API, log or `Debug` output: [`RoleView`](pb::RoleView) carries the access
//! key and whether a secret is set.
//!
//! # Input ([`parse_roles`])
//!
//! Roles come one by one (`RoleSpec`s) or as one file, never both in a request:
//!
//! - Apache's `plain_acl.yml` (`accounts:` list; `globalWhiteRemoteAddresses`,
//!   `dataVersion` and other top-level keys are ignored), or
//! - JSON: `[{"accessKey": .., ...}]` or `{"accounts": [...]}` (a file whose first
//!   non-blank character is `[` or `{` is read as JSON).
//!
//! Account fields are Apache's `PlainAccessConfig`: `accessKey`, `secretKey` (both
//! required), `whiteRemoteAddress`, `admin`, `defaultTopicPerm`, `defaultGroupPerm`,
//! `topicPerms`, `groupPerms`. Unquoted numbers are read as their decimal text, as Apache
//! reads them (quote keys that start with `0`).
//!
//! Rules (checked before anything is sent):
//! - access key: 7..=128 characters from `A-Z a-z 0-9 _ -`. Apache refuses keys of 6
//!   characters or fewer ("length should longer than 6"); the character set keeps the key
//!   usable as an ACL 2.0 user name (`User:<name>` subjects) and as a header value;
//! - secret key: 7..=256 characters, no whitespace or control characters (Apache's length
//!   rule again);
//! - permissions: `DENY`, `PUB`, `SUB`, `PUB|SUB` (`SUB|PUB` and lower case are accepted and
//!   normalised); per-resource entries are `name=PERM`. Apache silently reads an unknown
//!   permission as `DENY`; here it is an error;
//! - an access key appears once per request.
//!
//! Errors name the role (its position and access key) or the file line and field, and
//! never contain a secret.
//!
//! # Target ([`apply_roles`], [`apply_roles_to`])
//!
//! The target's master brokers are read from its NameServers (GET_BROKER_CLUSTER_INFO).
//! Then, per role and per master:
//!
//! - **5.x** (ACL 2.0): AUTH_GET_USER first; an existing user is left as it was
//!   (`AlreadyExistsSkipped`, with a notice if its password differs). Otherwise
//!   AUTH_CREATE_USER (`Super` for admin roles, else `Normal`), then AUTH_GET_USER to read it
//!   back (`Success` only when it is there). Permissions become one ACL (AUTH_CREATE_ACL,
//!   subject `User:<access key>`) the way Apache's `AuthMigrator` converts `plain_acl.yml`:
//!   `topicPerms`/`groupPerms` → a `Custom` policy with `Topic:<name>`/`Group:<name>`
//!   entries, the default permissions → a `Default` policy on `Topic:*`/`Group:*`; `PUB` →
//!   `Pub`, `SUB` → `Sub`, `PUB|SUB` → `Pub`+`Sub`, `DENY` → `All` with decision `Deny`,
//!   anything else decision `Allow`. `whiteRemoteAddress` has no ACL 2.0 equivalent (it
//!   skipped signature checks); it is not applied and the reason says so.
//! - **4.x** (ACL 1.0): UPDATE_AND_CREATE_ACL_CONFIG (50) with the account; ACL 1.0 has one
//!   create-or-update call, so SUCCESS is `Success`.
//!
//! A refusal is `Failed` with the broker's remark (scrubbed of the secret), an unreachable
//! broker `Failed` naming its address; one role's failure never fails the call. Only "no
//! master broker found" does (`FAILED_PRECONDITION` naming the NameServers).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use ferry_api::common::v1 as pb_common;
use ferry_api::metadata_sync::v1 as pb;
use ferry_core::{ItemResult, TargetType};
use ferry_remoting::auth_admin::{
    AclInfo, AuthAdmin, NewUser, PlainAccessConfig, PolicyEntryInfo, PolicyInfo, UserType, scrub,
};
use ferry_remoting::{
    ClientConfig, Credentials, NameServerClient, RemotingClient, RemotingError, RequestCode,
    ResponseCode,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};

/// A role as kept on the task.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRole {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub default_topic_perm: String,
    #[serde(default)]
    pub default_group_perm: String,
    #[serde(default)]
    pub topic_perms: Vec<String>,
    #[serde(default)]
    pub group_perms: Vec<String>,
    #[serde(default)]
    pub white_remote_address: String,
    pub result: ItemResult,
    #[serde(default)]
    pub reason: Option<String>,
}

impl std::fmt::Debug for StoredRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRole")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("admin", &self.admin)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

/// Shortest access key and secret key (Apache: "length should longer than 6").
pub const MIN_KEY_LEN: usize = 7;
/// Longest access key.
pub const MAX_ACCESS_KEY_LEN: usize = 128;
/// Longest secret key.
pub const MAX_SECRET_KEY_LEN: usize = 256;
/// Most roles in one request.
pub const MAX_ROLES: usize = 10_000;

/// Roles from the request: `roles` one by one, or a `plain_acl.yml` / JSON file. Both at
/// once is an `INVALID_ARGUMENT`; neither gives an empty list. Every role starts `Pending`.
pub fn parse_roles(roles: &[pb::RoleSpec], file: &[u8]) -> Result<Vec<StoredRole>> {
    let has_file = !file.iter().all(u8::is_ascii_whitespace);
    if !roles.is_empty() && has_file {
        return Err(SyncError::InvalidArgument(
            "give roles one by one or a roles file, not both in one request".into(),
        ));
    }
    let parsed = if has_file {
        parse_file(file)?
    } else {
        roles
            .iter()
            .enumerate()
            .map(|(i, spec)| role_from_spec(i, spec))
            .collect::<Result<Vec<_>>>()?
    };
    if parsed.len() > MAX_ROLES {
        return Err(SyncError::InvalidArgument(format!(
            "{} roles in one request; at most {MAX_ROLES}",
            parsed.len()
        )));
    }
    check_duplicates(&parsed, has_file)?;
    Ok(parsed)
}

/// Fields of one account before validation.
#[derive(Default)]
struct RawRole {
    access_key: Option<String>,
    secret_key: Option<String>,
    admin: Option<String>,
    default_topic_perm: Option<String>,
    default_group_perm: Option<String>,
    topic_perms: Vec<String>,
    group_perms: Vec<String>,
    white_remote_address: Option<String>,
}

fn role_from_spec(index: usize, spec: &pb::RoleSpec) -> Result<StoredRole> {
    let label = format!("role #{}", index + 1);
    let Some(creds) = &spec.credentials else {
        return Err(SyncError::InvalidArgument(format!(
            "{label}: credentials (access key and secret key) are required"
        )));
    };
    let raw = RawRole {
        access_key: Some(creds.access_key.clone()),
        secret_key: Some(creds.secret_key.clone()),
        admin: Some(spec.admin.to_string()),
        default_topic_perm: Some(spec.default_topic_perm.clone()),
        default_group_perm: Some(spec.default_group_perm.clone()),
        topic_perms: spec.topic_perms.clone(),
        group_perms: spec.group_perms.clone(),
        white_remote_address: Some(spec.white_remote_address.clone()),
    };
    validate(
        raw,
        &label,
        "credentials.access_key",
        "credentials.secret_key",
    )
    .map_err(SyncError::InvalidArgument)
}

/// Checks one account and builds the stored role; the error text never has the secret.
fn validate(
    raw: RawRole,
    label: &str,
    access_field: &str,
    secret_field: &str,
) -> std::result::Result<StoredRole, String> {
    let access_key = raw.access_key.unwrap_or_default().trim().to_string();
    if access_key.is_empty() {
        return Err(format!("{label}: {access_field} is required"));
    }
    let label = format!("{label} (access key {access_key:?})");
    let chars = access_key.chars().count();
    if !(MIN_KEY_LEN..=MAX_ACCESS_KEY_LEN).contains(&chars) {
        return Err(format!(
            "{label}: {access_field} has {chars} characters; it needs {MIN_KEY_LEN} to {MAX_ACCESS_KEY_LEN}"
        ));
    }
    if let Some(bad) = access_key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{label}: {access_field} has the character {bad:?}; only letters, digits, '_' and '-' are allowed"
        ));
    }
    let secret_key = raw.secret_key.unwrap_or_default();
    if secret_key.is_empty() {
        return Err(format!("{label}: {secret_field} is required"));
    }
    let chars = secret_key.chars().count();
    if !(MIN_KEY_LEN..=MAX_SECRET_KEY_LEN).contains(&chars) {
        return Err(format!(
            "{label}: {secret_field} is too {} ({MIN_KEY_LEN} to {MAX_SECRET_KEY_LEN} characters)",
            if chars < MIN_KEY_LEN { "short" } else { "long" }
        ));
    }
    if secret_key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{label}: {secret_field} contains whitespace or control characters"
        ));
    }
    let admin = match raw.admin.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(format!("{label}: admin must be true or false")),
    };
    let default_perm = |field: &str, v: Option<String>| -> std::result::Result<String, String> {
        let v = v.unwrap_or_default();
        if v.trim().is_empty() {
            return Ok(String::new());
        }
        normalize_perm(&v).map(str::to_string).ok_or_else(|| {
            format!(
                "{label}: {field} {:?} is not a permission ({PERMS_HELP})",
                v.trim()
            )
        })
    };
    let default_topic_perm = default_perm("defaultTopicPerm", raw.default_topic_perm)?;
    let default_group_perm = default_perm("defaultGroupPerm", raw.default_group_perm)?;
    let topic_perms = resource_perms(&label, "topicPerms", raw.topic_perms)?;
    let group_perms = resource_perms(&label, "groupPerms", raw.group_perms)?;
    let white_remote_address = raw
        .white_remote_address
        .unwrap_or_default()
        .trim()
        .to_string();
    if white_remote_address.chars().any(char::is_control) {
        return Err(format!(
            "{label}: whiteRemoteAddress contains control characters"
        ));
    }
    Ok(StoredRole {
        access_key,
        secret_key,
        admin,
        default_topic_perm,
        default_group_perm,
        topic_perms,
        group_perms,
        white_remote_address,
        result: ItemResult::Pending,
        reason: None,
    })
}

const PERMS_HELP: &str = "use DENY, PUB, SUB or PUB|SUB";

/// Apache's permission strings, normalised; `None` for anything else.
fn normalize_perm(perm: &str) -> Option<&'static str> {
    let p: String = perm
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    match p.as_str() {
        "DENY" => Some("DENY"),
        "PUB" => Some("PUB"),
        "SUB" => Some("SUB"),
        "PUB|SUB" | "SUB|PUB" => Some("PUB|SUB"),
        _ => None,
    }
}

/// `name=PERM` entries, normalised to `name=PUB|SUB` etc.
fn resource_perms(
    label: &str,
    field: &str,
    entries: Vec<String>,
) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((name, perm)) = entry.split_once('=') else {
            return Err(format!(
                "{label}: {field} entry {entry:?} is not name=PERM ({PERMS_HELP})"
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '=')
        {
            return Err(format!(
                "{label}: {field} entry {entry:?} has no usable name (no spaces, ',' or '=')"
            ));
        }
        let Some(perm) = normalize_perm(perm) else {
            return Err(format!(
                "{label}: {field} entry {entry:?} has an unknown permission ({PERMS_HELP})"
            ));
        };
        out.push(format!("{name}={perm}"));
    }
    Ok(out)
}

fn check_duplicates(roles: &[StoredRole], from_file: bool) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, role) in roles.iter().enumerate() {
        if let Some(first) = seen.insert(role.access_key.as_str(), i) {
            let what = if from_file { "account" } else { "role" };
            return Err(SyncError::InvalidArgument(format!(
                "access key {:?} appears more than once ({what} #{} and #{}); an access key can be imported once per request",
                role.access_key,
                first + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

// --------------------------------------------------------------------------------------
// Files
// --------------------------------------------------------------------------------------

/// A YAML/JSON scalar as text. Maps and lists are refused without quoting anything, and no
/// scalar is ever rejected, so a deserializer error can never carry a field's value.
#[derive(Default)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> std::result::Result<Text, E> {
                Ok(Text(Some(v)))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_some<D2: serde::Deserializer<'de>>(
                self,
                d: D2,
            ) -> std::result::Result<Text, D2::Error> {
                Text::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of scalars (`null` = empty; a single scalar is a one-element list).
#[derive(Default)]
struct TextList(Vec<String>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TextList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<TextList, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(item)) = seq.next_element::<Text>()? {
                    out.extend(item);
                }
                Ok(TextList(out))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<TextList, E> {
                Ok(TextList(Vec::new()))
            }
            fn visit_none<E: serde::de::Error>(self) -> std::result::Result<TextList, E> {
                Ok(TextList(Vec::new()))
            }
            fn visit_some<D2: serde::Deserializer<'de>>(
                self,
                d: D2,
            ) -> std::result::Result<TextList, D2::Error> {
                TextList::deserialize(d)
            }
        }
        // Numbers and booleans are refused by the default `visit_*` with their value in
        // the message; none can be a secret here (these are permission lists).
        d.deserialize_any(V)
    }
}

/// One `accounts` entry of `plain_acl.yml` (Apache `PlainAccessConfig`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileAccount {
    access_key: Text,
    secret_key: Text,
    #[serde(default)]
    white_remote_address: Text,
    #[serde(default)]
    admin: Text,
    #[serde(default)]
    default_topic_perm: Text,
    #[serde(default)]
    default_group_perm: Text,
    #[serde(default)]
    topic_perms: TextList,
    #[serde(default)]
    group_perms: TextList,
}

#[derive(Deserialize)]
struct FileDoc {
    #[serde(default)]
    accounts: Option<Vec<FileAccount>>,
}

fn parse_file(file: &[u8]) -> Result<Vec<StoredRole>> {
    let text = std::str::from_utf8(file).map_err(|e| {
        SyncError::InvalidArgument(format!(
            "the roles file is not UTF-8 text (bad byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json = matches!(text.trim_start().chars().next(), Some('[' | '{'));
    let format = if json { "JSON" } else { "YAML" };
    // Parse a list first and a document second, so that each error names its own shape
    // (an untagged enum would only say "did not match any variant").
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
        .unwrap_or_default();
    let looks_like_list = if json {
        text.trim_start().starts_with('[')
    } else {
        first_line.starts_with("- ") || first_line == "-"
    };
    let accounts: Vec<FileAccount> = if looks_like_list {
        if json {
            serde_json::from_str(text).map_err(|e| file_error(format, text, &e.to_string()))?
        } else {
            serde_yaml::from_str(text).map_err(|e| file_error(format, text, &e.to_string()))?
        }
    } else {
        let doc: FileDoc = if json {
            serde_json::from_str(text).map_err(|e| file_error(format, text, &e.to_string()))?
        } else {
            serde_yaml::from_str(text).map_err(|e| file_error(format, text, &e.to_string()))?
        };
        doc.accounts.ok_or_else(|| {
            SyncError::InvalidArgument(format!(
                "the roles file ({format}) has no `accounts` list (plain_acl.yml format: accounts: [ {{accessKey, secretKey, ...}} ])"
            ))
        })?
    };
    if accounts.is_empty() {
        return Err(SyncError::InvalidArgument(format!(
            "the roles file ({format}) lists no accounts"
        )));
    }
    let lines = account_lines(text);
    accounts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let label = match lines.get(i) {
                Some(line) => format!("roles file account #{} (line {line})", i + 1),
                None => format!("roles file account #{}", i + 1),
            };
            let raw = RawRole {
                access_key: a.access_key.0,
                secret_key: a.secret_key.0,
                admin: a.admin.0,
                default_topic_perm: a.default_topic_perm.0,
                default_group_perm: a.default_group_perm.0,
                topic_perms: a.topic_perms.0,
                group_perms: a.group_perms.0,
                white_remote_address: a.white_remote_address.0,
            };
            validate(raw, &label, "accessKey", "secretKey").map_err(SyncError::InvalidArgument)
        })
        .collect()
}

/// A parse error of the roles file, scrubbed of any `secretKey` value the text has (the
/// parsers do not quote values, this is a second line of defence).
fn file_error(format: &str, text: &str, message: &str) -> SyncError {
    let secrets = secret_values(text);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    SyncError::InvalidArgument(format!(
        "the roles file is not valid {format}: {}",
        scrub(message, &refs)
    ))
}

/// Best effort: the values written after `secretKey` keys in `text`.
fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find("secretKey") {
        rest = &rest[pos + "secretKey".len()..];
        let after = rest.trim_start_matches(['"', '\'']).trim_start();
        let Some(value) = after.strip_prefix(':') else {
            continue;
        };
        let value = value.trim_start_matches([' ', '\t']);
        let end = value.find(['\n', '\r', ',', '}']).unwrap_or(value.len());
        let v = value[..end].trim().trim_matches(['"', '\'']);
        if v.len() >= 3 {
            out.push(v.to_string());
        }
    }
    out
}

/// 1-based line of each `accessKey` key in `text`, in order (comments skipped): the line
/// each account starts near, for error messages.
fn account_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = match line.find('#') {
            // YAML comments; '#' inside a JSON string is rare enough here.
            Some(i) if !line.trim_start().starts_with('{') && !line.contains('"') => &line[..i],
            _ => line,
        };
        let mut rest = code;
        while let Some(pos) = rest.find("accessKey") {
            rest = &rest[pos + "accessKey".len()..];
            if rest
                .trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with(':')
            {
                out.push(n + 1);
            }
        }
    }
    out
}

// --------------------------------------------------------------------------------------
// Target
// --------------------------------------------------------------------------------------

/// Where roles go: the target's NameServers, optionally one cluster of them (else every
/// master the NameServers know) and the credentials to sign admin calls with (a super
/// user's when the target has ACL on).
#[derive(Debug, Clone, Default)]
pub struct RoleTarget {
    pub namesrv_addrs: String,
    pub cluster: Option<String>,
    pub credentials: Option<Credentials>,
    /// Connect and per-request deadlines.
    pub timeout: Option<Duration>,
}

/// Creates each role on the target (read back to decide its result) and sets `result` and
/// `reason` of each.
pub async fn apply_roles(
    target_namesrv: &str,
    target_type: TargetType,
    roles: &mut [StoredRole],
) -> Result<()> {
    let target = RoleTarget {
        namesrv_addrs: target_namesrv.to_string(),
        ..Default::default()
    };
    apply_roles_to(&target, target_type, roles).await
}

/// [`apply_roles`] with a cluster filter and admin credentials.
pub async fn apply_roles_to(
    target: &RoleTarget,
    target_type: TargetType,
    roles: &mut [StoredRole],
) -> Result<()> {
    let timeout = target.timeout.unwrap_or(Duration::from_secs(5));
    let client = RemotingClient::new(ClientConfig {
        connect_timeout: timeout.min(Duration::from_secs(3)),
        request_timeout: timeout,
        credentials: target.credentials.clone(),
        ..ClientConfig::default()
    });
    let masters = find_masters(&client, &target.namesrv_addrs, target.cluster.as_deref()).await?;
    let admin = AuthAdmin::new(client);
    let mut down: HashMap<String, String> = HashMap::new();
    let admin_secret = target
        .credentials
        .as_ref()
        .map(|c| c.expose_secret_key().to_string())
        .unwrap_or_default();
    for role in roles.iter_mut() {
        let mut outcomes = Vec::with_capacity(masters.len());
        for master in &masters {
            if let Some(reason) = down.get(&master.addr) {
                outcomes.push(Outcome::Failed(reason.clone()));
                continue;
            }
            let outcome = match target_type {
                TargetType::V5 => apply_v5(&admin, master, role).await,
                TargetType::V4 => apply_v4(&admin, master, role).await,
            };
            if let Outcome::Unreachable(reason) = &outcome {
                down.insert(master.addr.clone(), reason.clone());
            }
            outcomes.push(outcome);
        }
        let (result, reason) = combine(outcomes, target_type, role);
        role.result = result;
        // Last guard: nothing that goes back to the caller carries a secret.
        role.reason = reason.map(|r| scrub(&r, &[&role.secret_key, &admin_secret]));
        tracing::info!(
            access_key = %role.access_key,
            result = ?role.result,
            target = %target.namesrv_addrs,
            "role applied"
        );
    }
    Ok(())
}

/// One master broker of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Master {
    broker: String,
    addr: String,
}

impl fmt::Display for Master {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker {} ({})", self.broker, self.addr)
    }
}

/// Masters of `cluster` (or of every cluster) from the NameServers' cluster info, as
/// `import::target::Target::connect` finds them.
async fn find_masters(
    client: &RemotingClient,
    namesrv_addrs: &str,
    cluster: Option<&str>,
) -> Result<Vec<Master>> {
    let no_master = |why: String| {
        SyncError::FailedPrecondition(format!(
            "no master broker found through the target NameServers {namesrv_addrs}: {why}"
        ))
    };
    let namesrv = NameServerClient::new(namesrv_addrs, client.clone())
        .map_err(|e| no_master(format!("the address list is invalid: {e}")))?;
    let info = namesrv
        .cluster_info()
        .await
        .map_err(|e| no_master(format!("unreachable: {e}")))?;
    let names: Vec<&String> = match cluster {
        Some(c) => match info.cluster_addr_table.get(c) {
            Some(brokers) => brokers.iter().collect(),
            None => {
                let known: Vec<&str> = info.cluster_addr_table.keys().map(String::as_str).collect();
                return Err(no_master(format!(
                    "cluster {c} is not known (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        },
        None => info.broker_addr_table.keys().collect(),
    };
    let masters: Vec<Master> = names
        .into_iter()
        .filter_map(|name| {
            let data = info.broker_addr_table.get(name)?;
            Some(Master {
                broker: name.clone(),
                addr: data.master_addr()?.to_string(),
            })
        })
        .collect();
    if masters.is_empty() {
        return Err(no_master(match cluster {
            Some(c) => format!("cluster {c} has no master online"),
            None => "no broker has a master online".to_string(),
        }));
    }
    Ok(masters)
}

/// What happened to one role on one master.
#[derive(Debug)]
enum Outcome {
    /// Created (and read back); notices for the reason.
    Created(Vec<String>),
    /// There before; left as it was.
    Existed(Vec<String>),
    /// Refused, or wrong on read-back.
    Failed(String),
    /// The broker could not be reached (later roles skip it).
    Unreachable(String),
}

impl Outcome {
    /// The failure text (empty for the other outcomes).
    fn failure(self) -> String {
        match self {
            Outcome::Failed(r) | Outcome::Unreachable(r) => r,
            Outcome::Created(_) | Outcome::Existed(_) => String::new(),
        }
    }
}

fn call_failed(master: &Master, code: RequestCode, e: &RemotingError) -> Outcome {
    if e.is_transport() {
        return Outcome::Unreachable(format!("{master} is unreachable: {e}"));
    }
    let hint = match e {
        RemotingError::Remote { code: c, .. } if *c == ResponseCode::REQUEST_CODE_NOT_SUPPORTED => {
            match code {
                RequestCode::UPDATE_AND_CREATE_ACL_CONFIG => {
                    " (the broker has no ACL 1.0 account API: is the target a 5.x cluster?)"
                }
                _ => " (the broker has no ACL 2.0 user API: is the target a 4.x cluster?)",
            }
        }
        RemotingError::Remote { code: c, .. } if *c == ResponseCode::NO_PERMISSION => {
            " (with ACL on, the target needs a super user's credentials for this)"
        }
        _ => "",
    };
    let what = match e {
        RemotingError::Remote {
            code: c, remark, ..
        } => format!("{} ({c}): {remark}", ResponseCode::name_or_unknown(*c)),
        other => other.to_string(),
    };
    Outcome::Failed(format!("{master} refused {code}: {what}{hint}"))
}

async fn apply_v5(admin: &AuthAdmin, master: &Master, role: &StoredRole) -> Outcome {
    let addr = master.addr.as_str();
    let existing = match admin.get_user(addr, &role.access_key).await {
        Ok(u) => u,
        Err(e) => return call_failed(master, RequestCode::AUTH_GET_USER, &e),
    };
    if let Some(user) = existing {
        let mut notes = Vec::new();
        if user.password_matches(&role.secret_key) == Some(false) {
            notes.push(format!(
                "the user exists on {master} with a different secret key; left as it was"
            ));
        }
        if user.is_super() != role.admin {
            notes.push(format!(
                "the user exists on {master} as a {} user; left as it was",
                user.user_type.as_deref().unwrap_or("?")
            ));
        }
        return Outcome::Existed(notes);
    }
    let user_type = if role.admin {
        UserType::Super
    } else {
        UserType::Normal
    };
    let user = NewUser::new(&role.access_key, &role.secret_key, user_type);
    if let Err(e) = admin.create_user(addr, &user).await {
        return call_failed(master, RequestCode::AUTH_CREATE_USER, &e);
    }
    match admin.get_user(addr, &role.access_key).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Outcome::Failed(format!(
                "{master} accepted the user but does not have it on read-back"
            ));
        }
        Err(e) => return call_failed(master, RequestCode::AUTH_GET_USER, &e),
    }
    let mut notes = Vec::new();
    if let Some(acl) = acl_of(role)
        && let Err(e) = admin.create_acl(addr, &acl).await
    {
        let why = call_failed(master, RequestCode::AUTH_CREATE_ACL, &e).failure();
        return Outcome::Failed(format!(
            "the user was created but its permissions were not: {why}; add them by hand or delete the user and import again"
        ));
    }
    if !role.white_remote_address.is_empty() {
        notes.push(
            "whiteRemoteAddress is an ACL 1.0 setting without an ACL 2.0 equivalent; not applied"
                .to_string(),
        );
    }
    Outcome::Created(notes)
}

async fn apply_v4(admin: &AuthAdmin, master: &Master, role: &StoredRole) -> Outcome {
    let mut config = PlainAccessConfig::new(&role.access_key, &role.secret_key);
    config.admin = role.admin;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    config.white_remote_address = opt(&role.white_remote_address);
    config.default_topic_perm = opt(&role.default_topic_perm);
    config.default_group_perm = opt(&role.default_group_perm);
    config.topic_perms = role.topic_perms.clone();
    config.group_perms = role.group_perms.clone();
    match admin
        .update_and_create_acl_config(&master.addr, &config)
        .await
    {
        Ok(()) => Outcome::Created(Vec::new()),
        Err(e) => call_failed(master, RequestCode::UPDATE_AND_CREATE_ACL_CONFIG, &e),
    }
}

/// The ACL 2.0 policies of a role, as Apache's `AuthMigrator` converts ACL 1.0 accounts;
/// `None` when the role has no permissions.
pub fn acl_of(role: &StoredRole) -> Option<AclInfo> {
    fn entry(resource: String, perm: &str) -> PolicyEntryInfo {
        let (actions, decision): (&[&str], &str) = match perm {
            "PUB" => (&["Pub"], "Allow"),
            "SUB" => (&["Sub"], "Allow"),
            "PUB|SUB" => (&["Pub", "Sub"], "Allow"),
            // DENY (and anything unexpected): everything denied, like AuthMigrator.
            _ => (&["All"], "Deny"),
        };
        PolicyEntryInfo {
            resource,
            actions: actions.iter().map(|a| a.to_string()).collect(),
            source_ips: Vec::new(),
            decision: decision.to_string(),
        }
    }
    let split = |p: &String| -> Option<(String, String)> {
        let (name, perm) = p.split_once('=')?;
        Some((name.to_string(), perm.to_string()))
    };
    let mut custom = Vec::new();
    for (name, perm) in role.topic_perms.iter().filter_map(split) {
        custom.push(entry(format!("Topic:{name}"), &perm));
    }
    for (name, perm) in role.group_perms.iter().filter_map(split) {
        custom.push(entry(format!("Group:{name}"), &perm));
    }
    let mut defaults = Vec::new();
    if !role.default_topic_perm.is_empty() {
        defaults.push(entry("Topic:*".into(), &role.default_topic_perm));
    }
    if !role.default_group_perm.is_empty() {
        defaults.push(entry("Group:*".into(), &role.default_group_perm));
    }
    let mut policies = Vec::new();
    if !custom.is_empty() {
        policies.push(PolicyInfo {
            policy_type: "Custom".into(),
            entries: custom,
        });
    }
    if !defaults.is_empty() {
        policies.push(PolicyInfo {
            policy_type: "Default".into(),
            entries: defaults,
        });
    }
    (!policies.is_empty()).then(|| AclInfo {
        subject: AclInfo::user_subject(&role.access_key),
        policies,
    })
}

/// The role's result over every master: any failure fails it, all "there before" is
/// `AlreadyExistsSkipped`, else `Success`.
fn combine(
    outcomes: Vec<Outcome>,
    target_type: TargetType,
    role: &StoredRole,
) -> (ItemResult, Option<String>) {
    let mut failures = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let (mut created, mut existed) = (0, 0);
    for o in outcomes {
        match o {
            Outcome::Failed(r) | Outcome::Unreachable(r) => failures.push(r),
            Outcome::Created(n) => {
                created += 1;
                notes.extend(n);
            }
            Outcome::Existed(n) => {
                existed += 1;
                notes.extend(n);
            }
        }
    }
    let mut seen = HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    if !failures.is_empty() {
        let mut reason = failures.join("; ");
        if created > 0 {
            reason.push_str(&format!(
                " (created on {created} other master{})",
                if created == 1 { "" } else { "s" }
            ));
        }
        return (ItemResult::Failed, Some(reason));
    }
    if created == 0 && existed > 0 {
        let mut reason = format!(
            "user {} already exists on the target; left as it was",
            role.access_key
        );
        for n in &notes {
            reason.push_str("; ");
            reason.push_str(n);
        }
        return (ItemResult::AlreadyExistsSkipped, Some(reason));
    }
    if existed > 0 {
        notes.push(format!(
            "already on {existed} of {} masters (left as it was there)",
            created + existed
        ));
    }
    if target_type == TargetType::V4 {
        notes.insert(
            0,
            "ACL 1.0 creates or updates: an existing account of that access key now has these keys"
                .to_string(),
        );
    }
    (
        ItemResult::Success,
        (!notes.is_empty()).then(|| notes.join("; ")),
    )
}

/// What the API returns of a role: never the secret.
pub fn role_view(role: &StoredRole) -> pb::RoleView {
    pb::RoleView {
        credentials: Some(pb_common::CredentialsView {
            access_key: role.access_key.clone(),
            secret_key_set: !role.secret_key.is_empty(),
        }),
        admin: role.admin,
        result: crate::import::pb::result_to_pb(role.result) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret-Do-Not-Leak";

    fn spec(ak: &str, sk: &str) -> pb::RoleSpec {
        pb::RoleSpec {
            credentials: Some(pb_common::Credentials {
                access_key: ak.into(),
                secret_key: sk.into(),
            }),
            ..Default::default()
        }
    }

    fn err_text(r: Result<Vec<StoredRole>>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => {
                assert!(
                    matches!(e, SyncError::InvalidArgument(_)),
                    "not INVALID_ARGUMENT: {e:?}"
                );
                e.to_string()
            }
        }
    }

    const PLAIN_ACL: &str = r#"
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: "s3cret-Do-Not-Leak"
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
"#;

    #[test]
    fn apache_plain_acl_yml_is_read() {
        let roles = parse_roles(&[], PLAIN_ACL.as_bytes()).unwrap();
        assert_eq!(roles.len(), 2);
        let a = &roles[0];
        assert_eq!(a.access_key, "RocketMQ");
        assert_eq!(a.secret_key, "12345678", "unquoted numbers read as text");
        assert!(!a.admin);
        assert_eq!(a.default_topic_perm, "DENY");
        assert_eq!(a.default_group_perm, "SUB");
        assert_eq!(
            a.topic_perms,
            ["topicA=DENY", "topicB=PUB|SUB", "topicC=SUB"]
        );
        assert_eq!(
            a.group_perms,
            ["groupA=DENY", "groupB=PUB|SUB", "groupC=SUB"]
        );
        assert_eq!(a.white_remote_address, "");
        let b = &roles[1];
        assert_eq!(b.access_key, "rocketmq2");
        assert_eq!(b.secret_key, SECRET);
        assert!(b.admin);
        assert_eq!(b.white_remote_address, "192.168.1.*");
        assert!(roles.iter().all(|r| r.result == ItemResult::Pending));
        assert!(roles.iter().all(|r| r.reason.is_none()));
    }

    #[test]
    fn json_files_in_both_shapes() {
        let list = format!(
            r#"[{{"accessKey":"alice_01","secretKey":"{SECRET}","admin":true,"topicPerms":["t1=sub|pub"]}}]"#
        );
        let doc = format!(
            r#"{{"accounts":[{{"accessKey":"alice_01","secretKey":"{SECRET}","admin":"true","topicPerms":["t1=SUB|PUB"]}}]}}"#
        );
        for text in [list, doc] {
            let roles = parse_roles(&[], text.as_bytes()).unwrap();
            assert_eq!(roles.len(), 1);
            assert_eq!(roles[0].access_key, "alice_01");
            assert_eq!(roles[0].secret_key, SECRET);
            assert!(roles[0].admin);
            assert_eq!(roles[0].topic_perms, ["t1=PUB|SUB"]);
        }
        // A YAML list at the top works too (after comments and a document marker).
        let yaml = format!("# roles\n---\n- accessKey: alice_01\n  secretKey: {SECRET}\n");
        assert_eq!(parse_roles(&[], yaml.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn specs_one_by_one() {
        let mut admin = spec("admin_key", SECRET);
        admin.admin = true;
        admin.default_topic_perm = "pub".into();
        admin.group_perms = vec!["g1 = SUB".into()];
        let roles = parse_roles(&[admin, spec("plain-key", "another-secret")], b"").unwrap();
        assert_eq!(roles.len(), 2);
        assert!(roles[0].admin);
        assert_eq!(roles[0].default_topic_perm, "PUB");
        assert_eq!(roles[0].group_perms, ["g1=SUB"]);
        assert_eq!(roles[1].access_key, "plain-key");
        assert_eq!(roles[1].result, ItemResult::Pending);
        assert!(parse_roles(&[], b"  \n").unwrap().is_empty());
    }

    #[test]
    fn specs_and_a_file_together_are_refused() {
        let e = err_text(parse_roles(
            &[spec("alice_01", SECRET)],
            PLAIN_ACL.as_bytes(),
        ));
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn duplicates_are_named() {
        let e = err_text(parse_roles(
            &[
                spec("alice_01", SECRET),
                spec("bob_0001", SECRET),
                spec("alice_01", "other-secret"),
            ],
            b"",
        ));
        assert!(e.contains("\"alice_01\"") && e.contains("#1 and #3"), "{e}");
        assert!(!e.contains(SECRET));
        let file = format!(
            "accounts:\n  - accessKey: dup_key1\n    secretKey: {SECRET}\n  - accessKey: dup_key1\n    secretKey: {SECRET}\n"
        );
        let e = err_text(parse_roles(&[], file.as_bytes()));
        assert!(
            e.contains("dup_key1") && e.contains("account #1 and #2"),
            "{e}"
        );
        assert!(!e.contains(SECRET));
    }

    #[test]
    fn bad_specs_are_named_without_the_secret() {
        let cases: Vec<(pb::RoleSpec, &str)> = vec![
            (
                pb::RoleSpec {
                    credentials: None,
                    ..Default::default()
                },
                "credentials",
            ),
            (spec("", SECRET), "access_key is required"),
            (spec("short", SECRET), "5 characters"),
            (spec("has space", SECRET), "' '"),
            (spec("user:name", SECRET), "':'"),
            (spec("alice_01", ""), "secret_key is required"),
            (spec("alice_01", "tiny"), "too short"),
            (spec("alice_01", "has a space in it"), "whitespace"),
        ];
        for (s, needle) in cases {
            let e = err_text(parse_roles(&[s], b""));
            assert!(e.contains(needle), "{needle:?} not in {e}");
            assert!(e.contains("role #1"), "{e}");
            assert!(!e.contains(SECRET), "{e}");
        }
        let mut s = spec("alice_01", SECRET);
        s.topic_perms = vec!["orders=WRITE".into()];
        let e = err_text(parse_roles(&[s], b""));
        assert!(
            e.contains("topicPerms") && e.contains("orders=WRITE"),
            "{e}"
        );
        let mut s = spec("alice_01", SECRET);
        s.default_group_perm = "ALL".into();
        let e = err_text(parse_roles(&[s], b""));
        assert!(e.contains("defaultGroupPerm"), "{e}");
        let mut s = spec("alice_01", SECRET);
        s.group_perms = vec!["no-equals-sign".into()];
        let e = err_text(parse_roles(&[s], b""));
        assert!(e.contains("name=PERM"), "{e}");
    }

    #[test]
    fn bad_yaml_names_line_and_field_without_the_secret() {
        // Missing secretKey: serde names the account and the line.
        let missing = "accounts:\n  - accessKey: alice_01\n    admin: true\n";
        let e = err_text(parse_roles(&[], missing.as_bytes()));
        assert!(
            e.contains("secretKey") && e.contains("line 2") && e.contains("accounts[0]"),
            "{e}"
        );
        // Broken YAML syntax (a mapping inside a scalar), the secret on the line before.
        let broken = format!(
            "accounts:\n  - accessKey: alice_01\n    secretKey: {SECRET}\n    admin: true: false\n"
        );
        let e = err_text(parse_roles(&[], broken.as_bytes()));
        assert!(e.contains("line 4"), "{e}");
        assert!(!e.contains(SECRET), "{e}");
        // A secret given as a map: the type error does not quote it.
        let typed = format!("accounts:\n  - accessKey: alice_01\n    secretKey: {{k: {SECRET}}}\n");
        let e = err_text(parse_roles(&[], typed.as_bytes()));
        assert!(e.contains("secretKey") && e.contains("line 3"), "{e}");
        assert!(!e.contains(SECRET), "{e}");
        // A validation error names the account's line and the field.
        let short = format!(
            "accounts:\n  - accessKey: alice_01\n    secretKey: {SECRET}\n\n  - accessKey: bob_0001\n    secretKey: abc\n"
        );
        let e = err_text(parse_roles(&[], short.as_bytes()));
        assert!(
            e.contains("account #2 (line 5)") && e.contains("secretKey is too short"),
            "{e}"
        );
        assert!(!e.contains("abc\""), "{e}");
        let bad_perm = "accounts:\n  - accessKey: alice_01\n    secretKey: abcdefgh\n    defaultTopicPerm: READ\n";
        let e = err_text(parse_roles(&[], bad_perm.as_bytes()));
        assert!(e.contains("defaultTopicPerm") && e.contains("READ"), "{e}");
        let e = err_text(parse_roles(
            &[],
            b"accounts:\n  - accessKey: alice_01\n    secretKey: abcdefgh\n    topicPerms: {a: b}\n",
        ));
        assert!(
            e.contains("accounts[0].topicPerms") && e.contains("line 4"),
            "{e}"
        );
        // No accounts at all.
        let e = err_text(parse_roles(&[], b"globalWhiteRemoteAddresses: []\n"));
        assert!(e.contains("no `accounts`"), "{e}");
        let e = err_text(parse_roles(&[], b"accounts: []\n"));
        assert!(e.contains("no accounts"), "{e}");
    }

    #[test]
    fn bad_json_names_line_without_the_secret() {
        let broken = format!(
            "{{\"accounts\": [\n  {{\"accessKey\": \"alice_01\",\n   \"secretKey\": \"{SECRET}\"\n   \"admin\": true}}\n]}}"
        );
        let e = err_text(parse_roles(&[], broken.as_bytes()));
        assert!(e.contains("JSON") && e.contains("line 4"), "{e}");
        assert!(!e.contains(SECRET), "{e}");
        let typed = format!(r#"[{{"accessKey":"alice_01","secretKey":["{SECRET}"]}}]"#);
        let e = err_text(parse_roles(&[], typed.as_bytes()));
        assert!(!e.contains(SECRET), "{e}");
        let e = err_text(parse_roles(&[], b"[]"));
        assert!(e.contains("no accounts"), "{e}");
        let e = err_text(parse_roles(&[], &[0xff, 0xfe, b'a']));
        assert!(e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn debug_output_never_has_the_secret() {
        let roles = parse_roles(&[spec("alice_01", SECRET)], b"").unwrap();
        let shown = format!("{:?} {:#?}", roles[0], roles);
        assert!(shown.contains("alice_01"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        let view = format!("{:?}", role_view(&roles[0]));
        assert!(!view.contains(SECRET), "{view}");
        assert!(view.contains("secret_key_set: true"), "{view}");
        let target = RoleTarget {
            namesrv_addrs: "127.0.0.1:9876".into(),
            cluster: None,
            credentials: Some(Credentials::new("admin_key", SECRET)),
            timeout: None,
        };
        assert!(!format!("{target:?}").contains(SECRET));
        // The gRPC request itself (its `Credentials` have a redacting `Debug`).
        let request = pb::ImportRolesRequest {
            task_id: "mt-1".into(),
            roles: vec![spec("alice_01", SECRET)],
            roles_file: Vec::new(),
            dry_run: false,
        };
        let shown = format!("{request:?}");
        assert!(shown.contains("alice_01"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn acl_policies_follow_apache_auth_migrator() {
        let roles = parse_roles(&[], PLAIN_ACL.as_bytes()).unwrap();
        let acl = acl_of(&roles[0]).unwrap();
        assert_eq!(acl.subject, "User:RocketMQ");
        assert_eq!(acl.policies.len(), 2);
        let custom = &acl.policies[0];
        assert_eq!(custom.policy_type, "Custom");
        let find = |r: &str| {
            custom
                .entries
                .iter()
                .find(|e| e.resource == r)
                .unwrap_or_else(|| panic!("no {r}"))
        };
        assert_eq!(find("Topic:topicA").decision, "Deny");
        assert_eq!(find("Topic:topicA").actions, ["All"]);
        assert_eq!(find("Topic:topicB").actions, ["Pub", "Sub"]);
        assert_eq!(find("Topic:topicB").decision, "Allow");
        assert_eq!(find("Group:groupC").actions, ["Sub"]);
        let defaults = &acl.policies[1];
        assert_eq!(defaults.policy_type, "Default");
        assert_eq!(defaults.entries[0].resource, "Topic:*");
        assert_eq!(defaults.entries[0].decision, "Deny");
        assert_eq!(defaults.entries[1].resource, "Group:*");
        assert_eq!(defaults.entries[1].actions, ["Sub"]);
        // An admin without permissions gets no ACL.
        assert!(acl_of(&roles[1]).is_none());
    }

    #[test]
    fn results_combine_over_masters() {
        let role = parse_roles(&[spec("alice_01", SECRET)], b"")
            .unwrap()
            .remove(0);
        let (r, reason) = combine(
            vec![Outcome::Created(vec![]), Outcome::Created(vec![])],
            TargetType::V5,
            &role,
        );
        assert_eq!((r, reason), (ItemResult::Success, None));
        let (r, reason) = combine(
            vec![Outcome::Existed(vec![]), Outcome::Existed(vec![])],
            TargetType::V5,
            &role,
        );
        assert_eq!(r, ItemResult::AlreadyExistsSkipped);
        assert!(reason.unwrap().contains("already exists"));
        let (r, reason) = combine(
            vec![
                Outcome::Created(vec![]),
                Outcome::Unreachable("broker b (127.0.0.1:1) is unreachable".into()),
            ],
            TargetType::V5,
            &role,
        );
        assert_eq!(r, ItemResult::Failed);
        let reason = reason.unwrap();
        assert!(reason.contains("127.0.0.1:1") && reason.contains("created on 1 other master"));
        let (r, _) = combine(
            vec![Outcome::Existed(vec![]), Outcome::Created(vec![])],
            TargetType::V5,
            &role,
        );
        assert_eq!(r, ItemResult::Success);
    }

    #[tokio::test]
    async fn no_master_is_a_failed_precondition_naming_the_namesrv() {
        // Nothing listens on this port.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let mut roles = parse_roles(&[spec("alice_01", SECRET)], b"").unwrap();
        let err = apply_roles(&addr, TargetType::V5, &mut roles)
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::FailedPrecondition(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&addr), "{text}");
        assert_eq!(roles[0].result, ItemResult::Pending);
    }
}
