//! Records the store persists, as JSON an operator can read with `etcdctl get`.
//!
//! Every stored value is the record's fields plus `"schema_version"`, so a later release can
//! migrate old values and an old binary refuses (as [`StoreError::Corrupt`]) values it does not
//! understand instead of misreading them. Fields added later go into `extra` (tasks) or get
//! `#[serde(default)]`, which keeps old values readable without a version bump.

use ferry_core::Stage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Version written with every value; values with a higher one are refused.
pub const SCHEMA_VERSION: u32 = 1;

/// The step of a seamless-migration task (connect source, import metadata, ...).
pub type TaskStep = ferry_core::MigrationStep;

/// The lifecycle state of a task (running, paused, completed, rolled back).
pub type TaskState = ferry_core::TaskState;

/// A seamless-migration task: one source cluster to one target cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationTask {
    pub id: String,
    pub name: String,
    pub source_cluster: String,
    pub source_namesrv: String,
    /// The target cluster; at most one running task per target (see the store's lock).
    pub target_cluster: String,
    pub target_namesrv: String,
    pub target_type: ferry_core::TargetType,
    pub step: TaskStep,
    pub state: TaskState,
    /// Unix milliseconds; set by the store on create when 0.
    pub created_at_ms: i64,
    /// Unix milliseconds; set by the store on every write.
    pub updated_at_ms: i64,
    pub created_by: String,
    /// Fields added by later features, kept verbatim.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// The migration stage of one topic of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicState {
    pub task_id: String,
    pub topic: String,
    pub stage: Stage,
    /// Unix milliseconds; set by the store on every write.
    pub updated_at_ms: i64,
    pub updated_by: String,
    /// Latest readiness report of the health checker, cleared by every stage change.
    #[serde(default)]
    pub readiness: Option<serde_json::Value>,
}

impl TopicState {
    /// A topic entering a task at INITIAL.
    pub fn initial(
        task_id: impl Into<String>,
        topic: impl Into<String>,
        by: impl Into<String>,
    ) -> Self {
        TopicState {
            task_id: task_id.into(),
            topic: topic.into(),
            stage: Stage::Initial,
            updated_at_ms: 0,
            updated_by: by.into(),
            readiness: None,
        }
    }
}

/// One stage change, written in the same transaction as the change itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub task_id: String,
    pub topic: String,
    pub from: Stage,
    pub to: Stage,
    pub actor: String,
    /// The change was made although the topic was not reported ready.
    pub forced: bool,
    #[serde(default)]
    pub reason: Option<String>,
    pub at_ms: i64,
    /// Revision of the transaction that made the change (commit order). Not stored in the
    /// value (it is unknown until commit); filled from the key's create revision on read.
    #[serde(default, skip_serializing)]
    pub revision: i64,
}

/// A value with the revision it was read at (the key's `mod_revision`), to pass back as the
/// expected revision of a compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: i64,
}

/// A topic's stage as seen by routers: set (`Some`) or removed from its task (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageEvent {
    pub task_id: String,
    pub topic: String,
    pub stage: Option<Stage>,
    /// Revision of the change; apply an event only if newer than what you hold for the topic.
    pub revision: i64,
}

/// A live member of a kind (e.g. a router), present while its lease is kept alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredMember {
    pub kind: String,
    pub id: String,
    pub value: serde_json::Value,
}

/// A page request: up to `page_size` items (0 = default) after `page_token`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub page_size: u32,
    /// `next_page_token` of the previous page; `None` for the first page.
    pub page_token: Option<String>,
}

impl PageRequest {
    /// Page size used when the request says 0.
    pub const DEFAULT_SIZE: u32 = 100;
    /// The largest page served.
    pub const MAX_SIZE: u32 = 1000;

    /// A page request as the gRPC APIs carry it (`page_size`, `page_token`, "" = first
    /// page); a negative size is refused with the reason.
    pub fn from_wire(page_size: i32, page_token: String) -> std::result::Result<Self, String> {
        let page_size =
            u32::try_from(page_size).map_err(|_| format!("page_size {page_size} is negative"))?;
        Ok(PageRequest {
            page_size,
            page_token: (!page_token.is_empty()).then_some(page_token),
        })
    }

    /// The first page of `page_size` items.
    pub fn first(page_size: u32) -> Self {
        PageRequest {
            page_size,
            page_token: None,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        let size = match self.page_size {
            0 => Self::DEFAULT_SIZE,
            n => n.min(Self::MAX_SIZE),
        };
        size as usize
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The stored form: the record plus its schema version.
#[derive(Serialize)]
struct StoredRef<'a, T> {
    schema_version: u32,
    #[serde(flatten)]
    value: &'a T,
}

#[derive(Deserialize)]
struct Stored<T> {
    schema_version: u32,
    #[serde(flatten)]
    value: T,
}

/// Serialises a record with its schema version.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(&StoredRef {
        schema_version: SCHEMA_VERSION,
        value,
    })
    .expect("store records serialise to JSON")
}

/// Parses a stored record, refusing unknown schema versions.
pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    let stored: Stored<T> = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    if stored.schema_version == 0 || stored.schema_version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: format!(
                "schema_version {} is not supported by this binary (supports up to {SCHEMA_VERSION}); upgrade Ferry",
                stored.schema_version
            ),
        });
    }
    Ok(stored.value)
}

/// Milliseconds since the Unix epoch: the one clock of every stored or compared timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_schema_version_and_round_trip() {
        let state = TopicState::initial("t1", "TopicA", "alice");
        let bytes = encode(&state);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["stage"], "INITIAL");
        assert_eq!(decode::<TopicState>("k", &bytes).unwrap(), state);
    }

    #[test]
    fn audit_revision_is_not_stored() {
        let rec = AuditRecord {
            task_id: "t".into(),
            topic: "T".into(),
            from: Stage::Initial,
            to: Stage::DualRead,
            actor: "a".into(),
            forced: false,
            reason: None,
            at_ms: 1,
            revision: 42,
        };
        let json: serde_json::Value = serde_json::from_slice(&encode(&rec)).unwrap();
        assert!(json.get("revision").is_none());
        assert_eq!(
            decode::<AuditRecord>("k", &encode(&rec)).unwrap().revision,
            0
        );
    }

    #[test]
    fn newer_schema_and_bad_json_are_corrupt() {
        let newer = br#"{"schema_version":99,"task_id":"t","topic":"T","stage":"INITIAL","updated_at_ms":0,"updated_by":""}"#;
        let err = decode::<TopicState>("k", newer).unwrap_err();
        assert!(err.to_string().contains("schema_version 99"), "{err}");
        assert!(matches!(
            decode::<TopicState>("k", b"{not json"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(PageRequest::first(0).limit(), 100);
        assert_eq!(PageRequest::first(5).limit(), 5);
        assert_eq!(PageRequest::first(100_000).limit(), 1000);
    }
}
