//! Ferry's state: migration tasks, per-topic stages, target locks, live members and the
//! audit log, behind one [`MigrationStore`] trait; and the scanner's inventory snapshots,
//! behind [`SnapshotStore`] (see [`snapshots`]), implemented by the same store; and the
//! records that make mutating calls idempotent, behind [`RequestStore`] (see [`requests`]).
//!
//! The shape follows GreptimeDB's meta store: a small key-value trait with etcd semantics
//! ([`kv::KvBackend`]) with two backends, and the domain store written once on top of it
//! ([`KvMigrationStore`]):
//!
//! - [`EtcdBackend`]: production; shared by every service replica and router.
//! - [`EmbeddedBackend`]: one process, file-backed (`ferry standalone`), or in memory for
//!   unit tests.
//!
//! Writing the domain logic once means the transactional rules (compare-and-swap on
//! revisions, one task per target, audit with every stage change) cannot drift between
//! backends, and one conformance suite ([`conformance`]) runs against both.
//!
//! ```no_run
//! # async fn demo() -> ferry_store::Result<()> {
//! use ferry_store::{EmbeddedStore, MigrationStore};
//! let store = EmbeddedStore::open("/var/lib/ferry").await?;
//! let (stages, revision) = store.stage_snapshot().await?;
//! let changes = store.watch_stages(revision + 1).await?;
//! # Ok(()) }
//! ```

pub mod embedded;
pub mod error;
pub mod etcd;
pub mod imports;
pub mod kv;
pub mod migration;
pub mod model;
pub mod readiness;
pub mod requests;
pub mod slot;
pub mod snapshots;

#[doc(hidden)]
pub mod conformance;

pub use embedded::{EmbeddedBackend, EmbeddedOptions};
pub use error::{Result, StoreError};
pub use etcd::{EtcdBackend, EtcdOptions};
pub use imports::{
    ImportClaim, ImportItem, ImportStore, ImportTask, ImportTaskType, ImportWrite, ItemFilter,
    TargetQuota,
};
pub use kv::KvBackend;
pub use migration::{
    AddTopicsOutcome, EmbeddedStore, EtcdStore, KvMigrationStore, MemberLease, MigrationStore,
    StageChange,
};
pub use model::{
    AuditRecord, MigrationTask, Page, PageRequest, RegisteredMember, SCHEMA_VERSION, StageEvent,
    TaskState, TaskStep, TopicState, Versioned, now_ms,
};
pub use readiness::{FerryStore, ReadinessRecord, ReadinessStore, SourceWatch};
pub use requests::{
    Expiry, KvRequestStore, RecordedResponse, RequestRecord, RequestSlot, RequestSlotWriter,
    RequestStore,
};
pub use slot::{Slot, SlotWriter, Unavailable, keep_etcd_connected};
pub use snapshots::{MAX_CHUNK_BYTES, NewSnapshot, SnapshotHeader, SnapshotStore, new_scan_id};
