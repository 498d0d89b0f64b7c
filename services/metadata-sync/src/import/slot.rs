//! The import store as handlers and runners see it while metadata-sync reaches etcd:
//! [`ferry_store::Slot`] over what imports need (`wait` lets the resume loop start once the
//! store is there).

use std::sync::Arc;

use ferry_store::{ImportStore, SnapshotStore};

/// What imports need of the store: tasks and items, and snapshots to import from.
pub trait ImportBackend: ImportStore + SnapshotStore {}

impl<T: ImportStore + SnapshotStore> ImportBackend for T {}

/// Read side: cheap to clone.
pub type ImportSlot = ferry_store::Slot<Arc<dyn ImportBackend>>;
/// Write side, held by the store connector.
pub type ImportSlotWriter = ferry_store::SlotWriter<Arc<dyn ImportBackend>>;
