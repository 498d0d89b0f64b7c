//! The metadata-sync service: owns tasks.
//!
//! - [`ImportTasks`]: import tasks that create topics and groups on a target cluster with
//!   per-item results.
//! - [`MigrationTasks`]: seamless-migration tasks with their five steps and per-topic stages;
//!   every stage change is a store transaction conditioned on the previous revision, with an
//!   audit record.
//!
//! Both read the store through a [`StoreSlot`], so the service serves (and reports
//! NOT_SERVING) while etcd is still being reached.

pub mod convert;
pub mod error;
pub mod import;
pub mod migration;
pub mod store_slot;

pub use error::SyncError;
pub use import::{ImportSettings, ImportSlot, ImportSlotWriter, ImportTasks};
pub use migration::MigrationTasks;
pub use store_slot::{StoreSlot, StoreSlotWriter};
