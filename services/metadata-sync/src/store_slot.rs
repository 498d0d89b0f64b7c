//! The store (stages, tasks and readiness) as seen by request handlers: present once
//! connected, with the last connection error until then.
//!
//! A service must start serving (health NOT_SERVING) even when etcd is down, and connect in
//! the background with backoff; handlers answer `UNAVAILABLE` naming the etcd address
//! meanwhile instead of the process panicking or exiting.

use std::sync::Arc;

use ferry_store::FerryStore;
use tokio::sync::watch;

use crate::error::{Result, SyncError};

#[derive(Clone)]
enum State {
    Connecting(String),
    Ready(Arc<dyn FerryStore>),
}

/// Read side: cheap to clone, one per handler.
#[derive(Clone)]
pub struct StoreSlot {
    rx: watch::Receiver<State>,
}

/// Write side, held by the connector task.
pub struct StoreSlotWriter {
    tx: watch::Sender<State>,
}

impl StoreSlot {
    /// A slot that already holds a store (embedded store, tests).
    pub fn ready(store: Arc<dyn FerryStore>) -> Self {
        let (tx, rx) = watch::channel(State::Ready(store));
        drop(tx);
        StoreSlot { rx }
    }

    /// An empty slot and its writer.
    pub fn connecting(what: impl Into<String>) -> (Self, StoreSlotWriter) {
        let (tx, rx) = watch::channel(State::Connecting(format!("connecting to {}", what.into())));
        (StoreSlot { rx }, StoreSlotWriter { tx })
    }

    /// The store, or `UNAVAILABLE` with the last connection error.
    pub fn get(&self) -> Result<Arc<dyn FerryStore>> {
        match &*self.rx.borrow() {
            State::Ready(store) => Ok(store.clone()),
            State::Connecting(err) => Err(SyncError::StoreUnavailable(err.clone())),
        }
    }
}

impl StoreSlotWriter {
    /// Records why the store is not there yet.
    pub fn failed(&self, error: impl Into<String>) {
        self.tx.send_replace(State::Connecting(error.into()));
    }

    /// Publishes the connected store.
    pub fn set(&self, store: Arc<dyn FerryStore>) {
        self.tx.send_replace(State::Ready(store));
    }
}
