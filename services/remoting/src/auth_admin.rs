//! ACL admin calls to a broker address: ACL 2.0 users and policies (5.3+, codes
//! 3001..3010) and the ACL 1.0 account update of 4.x brokers (code 50).
//!
//! - AUTH_CREATE_USER (3001) / AUTH_UPDATE_USER (3002): header `username`, body
//!   `UserInfo` JSON `{"username","password","userType":"Super"|"Normal","userStatus":"enable"}`
//!   (Java `UserInfo`, rocketmq-protocol `user_info.rs`, camelCase). Creating a `Super` user
//!   needs a request signed by a super user when the broker has authentication on.
//! - AUTH_GET_USER (3004): header `username`; a missing user is answered SUCCESS without a
//!   body (Java `AdminBrokerProcessor.getUser`, rocketmq-rust 1.0 `GetUserRequestHandler`),
//!   read here as `None` (so are a `null` body and USER_NOT_EXIST).
//! - AUTH_CREATE_ACL (3006) / AUTH_GET_ACL (3009): header `subject` (`User:<name>`), body
//!   `AclInfo` `{"subject","policies":[{"policyType","entries":[{"resource","actions",
//!   "sourceIps","decision"}]}]}`.
//! - UPDATE_AND_CREATE_ACL_CONFIG (50): the `PlainAccessConfig` as ext fields (Java
//!   `UpdateAndCreateAclConfigRequestHeader`: `accessKey`, `secretKey`, `whiteRemoteAddress`,
//!   `admin`, `defaultTopicPerm`, `defaultGroupPerm`, `topicPerms` and `groupPerms` joined with
//!   `,`). 5.3+ brokers and rocketmq-rust answer REQUEST_CODE_NOT_SUPPORTED.
//!
//! Passwords and secret keys never show in `Debug` output or in errors: the types holding
//! them redact them, and a broker's remark is scrubbed of the secret before it becomes a
//! [`RemotingError::Remote`] (4.x brokers echo `secretKey=...` in their refusals).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::client::RemotingClient;
use crate::codes::{RequestCode, ResponseCode};
use crate::command::RemotingCommand;
use crate::error::{RemotingError, Result};
use crate::fastjson::{self, Value};
use crate::headers::CommandHeader;

/// What replaces a secret in `Debug` output and in scrubbed remarks.
pub const REDACTED: &str = "***";

/// `UserType` of ACL 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserType {
    /// May do everything, including managing users and ACLs.
    Super,
    /// Needs ACL policies for what it does.
    Normal,
}

impl UserType {
    /// The name brokers use (`"Super"` / `"Normal"`).
    pub fn name(self) -> &'static str {
        match self {
            UserType::Super => "Super",
            UserType::Normal => "Normal",
        }
    }

    /// Case-insensitive, like the brokers' `UserType.getByName`.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim();
        if n.eq_ignore_ascii_case("Super") {
            Some(UserType::Super)
        } else if n.eq_ignore_ascii_case("Normal") {
            Some(UserType::Normal)
        } else {
            None
        }
    }
}

/// `UserStatus` of ACL 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    Enable,
    Disable,
}

impl UserStatus {
    /// The name brokers use (`"enable"` / `"disable"`).
    pub fn name(self) -> &'static str {
        match self {
            UserStatus::Enable => "enable",
            UserStatus::Disable => "disable",
        }
    }
}

/// A user to create or update (AUTH_CREATE_USER / AUTH_UPDATE_USER). `Debug` redacts the
/// password; there is no `Serialize` other than the request body built here.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    password: String,
    pub user_type: UserType,
    pub user_status: UserStatus,
}

impl NewUser {
    /// An enabled user.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        user_type: UserType,
    ) -> Self {
        NewUser {
            username: username.into(),
            password: password.into(),
            user_type,
            user_status: UserStatus::Enable,
        }
    }

    /// The password, for callers that must hand it on. Avoid logging.
    pub fn expose_password(&self) -> &str {
        &self.password
    }

    /// The `UserInfo` body.
    fn to_body(&self) -> Result<Vec<u8>> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct UserInfoBody<'a> {
            username: &'a str,
            password: &'a str,
            user_type: &'a str,
            user_status: &'a str,
        }
        serde_json::to_vec(&UserInfoBody {
            username: &self.username,
            password: &self.password,
            user_type: self.user_type.name(),
            user_status: self.user_status.name(),
        })
        .map_err(|e| RemotingError::unencodable(format_args!("UserInfo body: {e}")))
    }
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("user_type", &self.user_type)
            .field("user_status", &self.user_status)
            .finish()
    }
}

/// A user as a broker answers AUTH_GET_USER. The password the broker sends back is kept
/// only to compare with ([`AclUser::password_matches`]); `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct AclUser {
    pub username: String,
    /// `"Super"` / `"Normal"` as the broker wrote it.
    pub user_type: Option<String>,
    /// `"enable"` / `"disable"` as the broker wrote it.
    pub user_status: Option<String>,
    password: Option<String>,
}

impl AclUser {
    /// Whether the stored password equals `candidate`; `None` when the broker did not send it.
    pub fn password_matches(&self, candidate: &str) -> Option<bool> {
        self.password.as_deref().map(|p| p == candidate)
    }

    /// Whether the broker calls this user a super user.
    pub fn is_super(&self) -> bool {
        self.user_type
            .as_deref()
            .and_then(UserType::from_name)
            .is_some_and(|t| t == UserType::Super)
    }

    /// Reads a `UserInfo` body; `None` for an empty or `null` body. Errors never quote
    /// the body (it holds the password).
    pub fn from_body(body: &[u8]) -> Result<Option<Self>> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value = fastjson::parse_bytes(body)?;
        let fields = match value {
            Value::Null => return Ok(None),
            Value::Object(fields) => fields,
            _ => return Err(RemotingError::malformed("UserInfo is not a JSON object")),
        };
        let mut user = AclUser {
            username: String::new(),
            user_type: None,
            user_status: None,
            password: None,
        };
        for (k, v) in fields {
            let Value::String(key) = k else { continue };
            let text = scalar_text(&v);
            match key.as_str() {
                "username" => user.username = text.unwrap_or_default(),
                "password" => user.password = text,
                "userType" => user.user_type = text,
                "userStatus" => user.user_status = text,
                _ => {}
            }
        }
        if user.username.is_empty() {
            return Err(RemotingError::malformed("UserInfo has no username"));
        }
        Ok(Some(user))
    }
}

impl fmt::Debug for AclUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclUser")
            .field("username", &self.username)
            .field("user_type", &self.user_type)
            .field("user_status", &self.user_status)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// A string, number or boolean as text; anything else is `None`.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One entry of an ACL 2.0 policy (`PolicyEntryInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntryInfo {
    /// `Topic:<name>`, `Group:<name>`, `Topic:*`, `Topic:<prefix>*`, `Cluster:<name>`, `*`.
    pub resource: String,
    /// `Pub`, `Sub`, `Create`, `Update`, `Delete`, `Get`, `List`, `All`.
    pub actions: Vec<String>,
    /// Client addresses the entry applies to (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// `Allow` / `Deny`.
    pub decision: String,
}

/// An ACL 2.0 policy (`PolicyInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// `Custom` (named resources) or `Default` (the fallback for any resource of a type).
    pub policy_type: String,
    pub entries: Vec<PolicyEntryInfo>,
}

/// The ACL of one subject (`AclInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclInfo {
    /// `User:<username>`.
    pub subject: String,
    pub policies: Vec<PolicyInfo>,
}

impl AclInfo {
    /// The subject key of a user: `User:<username>`.
    pub fn user_subject(username: &str) -> String {
        format!("User:{username}")
    }
}

/// An ACL 1.0 account (`PlainAccessConfig`), sent as the UPDATE_AND_CREATE_ACL_CONFIG (50)
/// header. `Debug` redacts the secret key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PlainAccessConfig {
    pub access_key: String,
    secret_key: String,
    pub white_remote_address: Option<String>,
    pub admin: bool,
    /// `DENY`, `PUB`, `SUB`, `PUB|SUB`.
    pub default_topic_perm: Option<String>,
    pub default_group_perm: Option<String>,
    /// `topic=PERM` each.
    pub topic_perms: Vec<String>,
    /// `group=PERM` each.
    pub group_perms: Vec<String>,
}

impl PlainAccessConfig {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        PlainAccessConfig {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            ..Default::default()
        }
    }

    /// The secret key, for callers that must hand it on. Avoid logging.
    pub fn expose_secret_key(&self) -> &str {
        &self.secret_key
    }
}

impl fmt::Debug for PlainAccessConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainAccessConfig")
            .field("access_key", &self.access_key)
            .field("secret_key", &REDACTED)
            .field("white_remote_address", &self.white_remote_address)
            .field("admin", &self.admin)
            .field("default_topic_perm", &self.default_topic_perm)
            .field("default_group_perm", &self.default_group_perm)
            .field("topic_perms", &self.topic_perms)
            .field("group_perms", &self.group_perms)
            .finish()
    }
}

impl CommandHeader for PlainAccessConfig {
    /// Java `UpdateAndCreateAclConfigRequestHeader` after `makeCustomHeaderToNet`: null
    /// fields omitted, `admin` always written, lists joined with `,` (`UtilAll.join`).
    fn to_ext_fields(&self) -> BTreeMap<String, String> {
        let mut f = BTreeMap::new();
        f.insert("accessKey".to_string(), self.access_key.clone());
        f.insert("secretKey".to_string(), self.secret_key.clone());
        f.insert("admin".to_string(), self.admin.to_string());
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                f.insert(k.to_string(), v.clone());
            }
        };
        opt("whiteRemoteAddress", &self.white_remote_address);
        opt("defaultTopicPerm", &self.default_topic_perm);
        opt("defaultGroupPerm", &self.default_group_perm);
        if !self.topic_perms.is_empty() {
            f.insert("topicPerms".to_string(), self.topic_perms.join(","));
        }
        if !self.group_perms.is_empty() {
            f.insert("groupPerms".to_string(), self.group_perms.join(","));
        }
        f
    }

    fn from_ext_fields(f: &BTreeMap<String, String>) -> Result<Self> {
        let req = |k: &str| {
            f.get(k).cloned().ok_or_else(|| {
                RemotingError::malformed(format_args!(
                    "UpdateAndCreateAclConfigRequestHeader: missing required field {k}"
                ))
            })
        };
        let list = |k: &str| -> Vec<String> {
            f.get(k)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(PlainAccessConfig {
            access_key: req("accessKey")?,
            secret_key: req("secretKey")?,
            white_remote_address: f.get("whiteRemoteAddress").cloned(),
            admin: f
                .get("admin")
                .and_then(|v| fastjson::parse_bool_lenient(v))
                .unwrap_or(false),
            default_topic_perm: f.get("defaultTopicPerm").cloned(),
            default_group_perm: f.get("defaultGroupPerm").cloned(),
            topic_perms: list("topicPerms"),
            group_perms: list("groupPerms"),
        })
    }
}

/// ACL admin calls to broker addresses (`ip:port`, normally a master's). When the
/// client has credentials, requests are signed with them (a super user's, to create
/// users on a broker with authentication on).
#[derive(Debug, Clone)]
pub struct AuthAdmin {
    client: RemotingClient,
}

impl AuthAdmin {
    pub fn new(client: RemotingClient) -> Self {
        AuthAdmin { client }
    }

    pub fn client(&self) -> &RemotingClient {
        &self.client
    }

    async fn call(&self, addr: &str, request: RemotingCommand) -> Result<RemotingCommand> {
        self.client.invoke(addr, request, None).await
    }

    /// AUTH_CREATE_USER (3001). A user that exists already is a refusal from the broker
    /// (rocketmq-rust: NO_PERMISSION "Authentication credentials are invalid"; Java: "The
    /// user is existed"): read first with [`Self::get_user`] to tell.
    pub async fn create_user(&self, addr: &str, user: &NewUser) -> Result<()> {
        self.put_user(addr, RequestCode::AUTH_CREATE_USER, user)
            .await
    }

    /// AUTH_UPDATE_USER (3002): password, type and status of an existing user.
    pub async fn update_user(&self, addr: &str, user: &NewUser) -> Result<()> {
        self.put_user(addr, RequestCode::AUTH_UPDATE_USER, user)
            .await
    }

    async fn put_user(&self, addr: &str, code: RequestCode, user: &NewUser) -> Result<()> {
        let request = self
            .client
            .new_request(code)
            .with_ext_field("username", user.username.as_str())
            .with_body(user.to_body()?);
        let resp = self.call(addr, request).await?;
        success(addr, resp, &[user.expose_password()]).map(drop)
    }

    /// AUTH_GET_USER (3004). `None` when the broker has no such user.
    pub async fn get_user(&self, addr: &str, username: &str) -> Result<Option<AclUser>> {
        let code = RequestCode::AUTH_GET_USER;
        let request = self
            .client
            .new_request(code)
            .with_ext_field("username", username);
        let resp = self.call(addr, request).await?;
        if resp.code == ResponseCode::USER_NOT_EXIST {
            return Ok(None);
        }
        let resp = success(addr, resp, &[])?;
        AclUser::from_body(&resp.body).map_err(|e| RemotingError::Malformed {
            reason: format!("{code} body from {addr}: {}", malformed_reason(e)),
        })
    }

    /// AUTH_CREATE_ACL (3006): adds (or replaces, per resource) the policies of
    /// `acl.subject`, which must exist.
    pub async fn create_acl(&self, addr: &str, acl: &AclInfo) -> Result<()> {
        let body = serde_json::to_vec(acl)
            .map_err(|e| RemotingError::unencodable(format_args!("AclInfo body: {e}")))?;
        let request = self
            .client
            .new_request(RequestCode::AUTH_CREATE_ACL)
            .with_ext_field("subject", acl.subject.as_str())
            .with_body(body);
        let resp = self.call(addr, request).await?;
        success(addr, resp, &[]).map(drop)
    }

    /// AUTH_GET_ACL (3009). `None` when the subject has no ACL.
    pub async fn get_acl(&self, addr: &str, subject: &str) -> Result<Option<AclInfo>> {
        let code = RequestCode::AUTH_GET_ACL;
        let request = self
            .client
            .new_request(code)
            .with_ext_field("subject", subject);
        let resp = self.call(addr, request).await?;
        if resp.code == ResponseCode::POLICY_NOT_EXIST {
            return Ok(None);
        }
        let resp = success(addr, resp, &[])?;
        let body = &resp.body;
        if body.iter().all(u8::is_ascii_whitespace) || body.as_ref() == b"null" {
            return Ok(None);
        }
        fastjson::from_slice(body)
            .map(Some)
            .map_err(|e| RemotingError::Malformed {
                reason: format!("{code} body from {addr}: {}", malformed_reason(e)),
            })
    }

    /// UPDATE_AND_CREATE_ACL_CONFIG (50): creates or updates an ACL 1.0 account on a 4.x
    /// broker (ACL 1.0 on 5.0..5.2 too). 5.3+ and rocketmq-rust brokers refuse it with
    /// REQUEST_CODE_NOT_SUPPORTED.
    pub async fn update_and_create_acl_config(
        &self,
        addr: &str,
        config: &PlainAccessConfig,
    ) -> Result<()> {
        let request = self
            .client
            .new_request(RequestCode::UPDATE_AND_CREATE_ACL_CONFIG)
            .with_header(config);
        let resp = self.call(addr, request).await?;
        success(addr, resp, &[config.expose_secret_key()]).map(drop)
    }
}

/// `Ok` for SUCCESS, else [`RemotingError::Remote`] with the remark scrubbed of `secrets`.
fn success(addr: &str, resp: RemotingCommand, secrets: &[&str]) -> Result<RemotingCommand> {
    if resp.code == ResponseCode::SUCCESS {
        return Ok(resp);
    }
    Err(RemotingError::Remote {
        addr: addr.to_string(),
        code: resp.code,
        remark: scrub(resp.remark.as_deref().unwrap_or_default(), secrets),
    })
}

fn malformed_reason(e: RemotingError) -> String {
    match e {
        RemotingError::Malformed { reason } => reason,
        other => other.to_string(),
    }
}

/// `text` with every occurrence of each non-empty secret replaced by [`REDACTED`].
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Sup3r-S3cret-Key";

    #[test]
    fn user_body_has_the_java_field_names() {
        let user = NewUser::new("alice_01", SECRET, UserType::Super);
        let v: serde_json::Value = serde_json::from_slice(&user.to_body().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "username": "alice_01", "password": SECRET,
                "userType": "Super", "userStatus": "enable"
            })
        );
        assert!(!format!("{user:?}").contains(SECRET));
    }

    #[test]
    fn user_answers_are_read_without_keeping_the_password_visible() {
        let body = format!(
            r#"{{"username":"alice_01","password":"{SECRET}","userType":"Super","userStatus":"enable"}}"#
        );
        let user = AclUser::from_body(body.as_bytes()).unwrap().unwrap();
        assert_eq!(user.username, "alice_01");
        assert!(user.is_super());
        assert_eq!(user.password_matches(SECRET), Some(true));
        assert_eq!(user.password_matches("other"), Some(false));
        assert!(!format!("{user:?}").contains(SECRET));
        assert_eq!(AclUser::from_body(b"").unwrap(), None);
        assert_eq!(AclUser::from_body(b"null").unwrap(), None);
        // A malformed body is reported without quoting it.
        let err = AclUser::from_body(format!(r#"{{"password":"{SECRET}""#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!err.contains(SECRET), "{err}");
        let err = AclUser::from_body(format!(r#"{{"password":"{SECRET}"}}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!err.contains(SECRET), "{err}");
    }

    #[test]
    fn plain_access_config_header_matches_java_and_round_trips() {
        let mut cfg = PlainAccessConfig::new("RocketMQ", SECRET);
        cfg.admin = true;
        cfg.white_remote_address = Some("192.168.1.*".into());
        cfg.default_topic_perm = Some("DENY".into());
        cfg.topic_perms = vec!["topicA=DENY".into(), "topicB=PUB|SUB".into()];
        let f = cfg.to_ext_fields();
        assert_eq!(f["accessKey"], "RocketMQ");
        assert_eq!(f["secretKey"], SECRET);
        assert_eq!(f["admin"], "true");
        assert_eq!(f["topicPerms"], "topicA=DENY,topicB=PUB|SUB");
        assert!(!f.contains_key("groupPerms"));
        assert!(!f.contains_key("defaultGroupPerm"));
        assert_eq!(PlainAccessConfig::from_ext_fields(&f).unwrap(), cfg);
        assert!(!format!("{cfg:?}").contains(SECRET));
    }

    #[test]
    fn refusals_never_carry_the_secret() {
        let resp = RemotingCommand::response(
            ResponseCode::SYSTEM_ERROR,
            Some(format!(
                "The accessKey=RocketMQ and secretKey={SECRET} cannot be null and length should longer than 6"
            )),
        );
        let err = success("127.0.0.1:10911", resp, &[SECRET]).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("secretKey=***"), "{text}");
        assert!(text.contains("127.0.0.1:10911"), "{text}");
        assert_eq!(scrub("nothing here", &[""]), "nothing here");
    }

    #[test]
    fn acl_info_body_has_the_java_field_names() {
        let acl = AclInfo {
            subject: AclInfo::user_subject("alice_01"),
            policies: vec![PolicyInfo {
                policy_type: "Custom".into(),
                entries: vec![PolicyEntryInfo {
                    resource: "Topic:orders".into(),
                    actions: vec!["Pub".into(), "Sub".into()],
                    source_ips: vec![],
                    decision: "Allow".into(),
                }],
            }],
        };
        let v = serde_json::to_value(&acl).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "subject": "User:alice_01",
                "policies": [{"policyType": "Custom", "entries": [
                    {"resource": "Topic:orders", "actions": ["Pub", "Sub"], "decision": "Allow"}
                ]}]
            })
        );
        let back: AclInfo = fastjson::from_slice(&serde_json::to_vec(&acl).unwrap()).unwrap();
        assert_eq!(back, acl);
    }
}
