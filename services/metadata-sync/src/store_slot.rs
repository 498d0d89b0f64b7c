//! The migration store as handlers see it while metadata-sync reaches etcd in the
//! background: [`ferry_store::Slot`] over the combined stage + readiness store.

use std::sync::Arc;

use ferry_store::FerryStore;

/// Read side, one per handler.
pub type StoreSlot = ferry_store::Slot<Arc<dyn FerryStore>>;
/// Write side, held by the store connector.
pub type StoreSlotWriter = ferry_store::SlotWriter<Arc<dyn FerryStore>>;
