//! The store as handlers and the scan loop see it while the service reaches etcd in the
//! background: [`ferry_store::Slot`] over the combined stage + readiness store.

use std::sync::Arc;

use ferry_store::FerryStore;

/// Read side: cheap to clone.
pub type StoreSlot = ferry_store::Slot<Arc<dyn FerryStore>>;
/// Write side, held by the connector task.
pub type StoreSlotWriter = ferry_store::SlotWriter<Arc<dyn FerryStore>>;
