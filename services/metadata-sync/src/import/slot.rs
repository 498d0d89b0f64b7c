//! The import store as handlers and runners see it: present once connected, with the last
//! connection error until then (like [`crate::StoreSlot`], for the import side of the
//! store), and a way for the resume loop to wait until it is there.

use std::sync::Arc;

use ferry_store::{ImportStore, SnapshotStore};
use tokio::sync::watch;

use crate::error::{Result, SyncError};

/// What imports need of the store: tasks and items, and snapshots to import from.
pub trait ImportBackend: ImportStore + SnapshotStore {}

impl<T: ImportStore + SnapshotStore> ImportBackend for T {}

#[derive(Clone)]
enum State {
    Connecting(String),
    Ready(Arc<dyn ImportBackend>),
}

/// Read side: cheap to clone.
#[derive(Clone)]
pub struct ImportSlot {
    rx: watch::Receiver<State>,
}

/// Write side, held by the store connector.
pub struct ImportSlotWriter {
    tx: watch::Sender<State>,
}

impl ImportSlot {
    /// A slot that already holds a store (embedded store, tests).
    pub fn ready(store: Arc<dyn ImportBackend>) -> Self {
        let (tx, rx) = watch::channel(State::Ready(store));
        drop(tx);
        ImportSlot { rx }
    }

    /// An empty slot and its writer.
    pub fn connecting(what: impl Into<String>) -> (Self, ImportSlotWriter) {
        let (tx, rx) = watch::channel(State::Connecting(format!("connecting to {}", what.into())));
        (ImportSlot { rx }, ImportSlotWriter { tx })
    }

    /// The store, or `UNAVAILABLE` with the last connection error.
    pub fn get(&self) -> Result<Arc<dyn ImportBackend>> {
        match &*self.rx.borrow() {
            State::Ready(store) => Ok(store.clone()),
            State::Connecting(err) => Err(SyncError::StoreUnavailable(err.clone())),
        }
    }

    /// Waits until the store is there; `None` if the writer went away first.
    pub async fn wait(&self) -> Option<Arc<dyn ImportBackend>> {
        let mut rx = self.rx.clone();
        let found = rx
            .wait_for(|s| matches!(s, State::Ready(_)))
            .await
            .ok()
            .map(|s| match &*s {
                State::Ready(store) => Some(store.clone()),
                State::Connecting(_) => None,
            });
        match found {
            Some(store) => store,
            // The writer is gone: a ready slot made by `ready` has no writer but a value.
            None => self.get().ok(),
        }
    }
}

impl ImportSlotWriter {
    /// Records why the store is not there yet.
    pub fn failed(&self, error: impl Into<String>) {
        self.tx.send_replace(State::Connecting(error.into()));
    }

    /// Publishes the connected store.
    pub fn set(&self, store: Arc<dyn ImportBackend>) {
        self.tx.send_replace(State::Ready(store));
    }
}
