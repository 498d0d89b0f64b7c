//! The scanner service: the only component that reads a source cluster's inventory.
//!
//! - [`engine`]: [`ScanEngine`] probes a cluster (telling unreachable NameServers, refused
//!   credentials and protocol errors apart, and broker/cluster name collisions with a
//!   target) and scans it into an [`Inventory`], brokers concurrently with a bound. Usable
//!   without gRPC (the CLI's `ferry export` runs it locally).
//! - [`inventory`]: the scanned model, its snapshot form, diffs and exports (mqadmin JSON and
//!   the 4.x/5.x spreadsheets, via `ferry-metadata`).
//! - [`service`]: [`Scanner`], the `ferry.scanner.v1.ScannerService` gRPC API over the engine
//!   and a [`ferry_store::SnapshotStore`].

pub mod convert;
pub mod engine;
pub mod error;
pub mod inventory;
pub mod service;
pub mod slot;

pub use engine::{EngineConfig, Progress, ScanEngine, SourceSpec};
pub use error::{Result, ScanError};
pub use inventory::Inventory;
pub use service::Scanner;
pub use slot::{SnapshotSlot, SnapshotSlotWriter};
