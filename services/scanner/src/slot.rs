//! The snapshot store as the scanner's handlers see it while the service reaches etcd in
//! the background: [`ferry_store::Slot`] over [`SnapshotStore`].

use std::sync::Arc;

use ferry_store::SnapshotStore;

/// Read side: cheap to clone.
pub type SnapshotSlot = ferry_store::Slot<Arc<dyn SnapshotStore>>;
/// Write side, held by the connector task.
pub type SnapshotSlotWriter = ferry_store::SlotWriter<Arc<dyn SnapshotStore>>;
