//! The snapshot store as seen by request handlers: present once connected, with the last
//! connection error until then.
//!
//! `ferry-scanner` must serve (health NOT_SERVING) even while etcd is down and connect in
//! the background (the pattern of `ferry-metadata-sync`); handlers answer `UNAVAILABLE`
//! naming the etcd address meanwhile. Connection checks and scans that are not stored keep
//! working without a store.

use std::sync::Arc;

use ferry_store::SnapshotStore;
use tokio::sync::watch;

use crate::error::{Result, ScanError};

#[derive(Clone)]
enum State {
    Connecting(String),
    Ready(Arc<dyn SnapshotStore>),
}

/// Read side: cheap to clone.
#[derive(Clone)]
pub struct SnapshotSlot {
    rx: watch::Receiver<State>,
}

/// Write side, held by the connector task.
pub struct SnapshotSlotWriter {
    tx: watch::Sender<State>,
}

impl SnapshotSlot {
    /// A slot that already holds a store (embedded store, tests).
    pub fn ready(store: Arc<dyn SnapshotStore>) -> Self {
        let (tx, rx) = watch::channel(State::Ready(store));
        drop(tx);
        SnapshotSlot { rx }
    }

    /// An empty slot and its writer.
    pub fn connecting(what: impl Into<String>) -> (Self, SnapshotSlotWriter) {
        let (tx, rx) = watch::channel(State::Connecting(format!("connecting to {}", what.into())));
        (SnapshotSlot { rx }, SnapshotSlotWriter { tx })
    }

    /// The store, or `UNAVAILABLE` with the last connection error.
    pub fn get(&self) -> Result<Arc<dyn SnapshotStore>> {
        match &*self.rx.borrow() {
            State::Ready(store) => Ok(store.clone()),
            State::Connecting(err) => Err(ScanError::StoreUnavailable(err.clone())),
        }
    }
}

impl SnapshotSlotWriter {
    /// Records why the store is not there yet.
    pub fn failed(&self, error: impl Into<String>) {
        self.tx.send_replace(State::Connecting(error.into()));
    }

    /// Publishes the connected store.
    pub fn set(&self, store: Arc<dyn SnapshotStore>) {
        self.tx.send_replace(State::Ready(store));
    }
}
