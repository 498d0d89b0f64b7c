//! The store as request handlers see it while a service reaches etcd in the background.
//!
//! A service starts serving at once (health NOT_SERVING) even when etcd is down, connects
//! with backoff, and answers `UNAVAILABLE` naming the etcd address meanwhile instead of
//! exiting or panicking. [`Slot`] is the handlers' view (the store once connected, else the
//! last connection error) and [`keep_etcd_connected`] the one connect-and-probe loop every
//! service binary runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::etcd::{EtcdBackend, EtcdOptions};
use crate::migration::{EtcdStore, MigrationStore};

/// The store is not reachable yet; the message is the last connection error (it names the
/// etcd address). Services map it to `UNAVAILABLE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store not available: {0}")]
pub struct Unavailable(pub String);

#[derive(Clone)]
enum State<T> {
    Connecting(String),
    Ready(T),
}

/// Read side, one per handler: cheap to clone. `T` is the handle the service uses, usually
/// an `Arc<dyn SomeStoreTrait>`.
#[derive(Clone)]
pub struct Slot<T> {
    rx: watch::Receiver<State<T>>,
}

/// Write side, held by the connector.
pub struct SlotWriter<T> {
    tx: watch::Sender<State<T>>,
}

impl<T: Clone> Slot<T> {
    /// A slot that already holds a store (embedded store, tests).
    pub fn ready(store: T) -> Self {
        let (_tx, rx) = watch::channel(State::Ready(store));
        Slot { rx }
    }

    /// An empty slot, still connecting to `what` (e.g. "etcd at 10.0.0.1:2379"), and its
    /// writer.
    pub fn connecting(what: impl Into<String>) -> (Self, SlotWriter<T>) {
        let (tx, rx) = watch::channel(State::Connecting(format!("connecting to {}", what.into())));
        (Slot { rx }, SlotWriter { tx })
    }

    /// The store, or why it is not there yet.
    pub fn get(&self) -> Result<T, Unavailable> {
        match &*self.rx.borrow() {
            State::Ready(store) => Ok(store.clone()),
            State::Connecting(err) => Err(Unavailable(err.clone())),
        }
    }

    /// Waits until the store is there (background loops start working then); `None` if the
    /// writer went away without ever publishing one.
    pub async fn wait(&self) -> Option<T> {
        let mut rx = self.rx.clone();
        match rx.wait_for(|s| matches!(s, State::Ready(_))).await {
            Ok(state) => match &*state {
                State::Ready(store) => Some(store.clone()),
                State::Connecting(_) => None,
            },
            // No writer: a slot made by `ready` still holds its value.
            Err(_) => self.get().ok(),
        }
    }
}

impl<T> SlotWriter<T> {
    /// Records why the store is not there yet.
    pub fn failed(&self, error: impl Into<String>) {
        self.tx.send_replace(State::Connecting(error.into()));
    }

    /// Publishes the connected store.
    pub fn set(&self, store: T) {
        self.tx.send_replace(State::Ready(store));
    }
}

/// How often a connected store is probed.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// First and longest pause between connection rounds.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Connects to etcd with backoff until it answers, calling `publish` with every failure
/// and then the store; then probes it forever and calls `reachable(true/false)` whenever its
/// reachability changes (first call: `true` once connected). Runs until aborted.
pub async fn keep_etcd_connected<P, R, RF>(
    endpoints: Vec<String>,
    options: EtcdOptions,
    publish: P,
    reachable: R,
) where
    P: Fn(Result<Arc<EtcdStore>, Unavailable>),
    R: Fn(bool) -> RF,
    RF: Future<Output = ()>,
{
    let mut pause = FIRST_PAUSE;
    let store = loop {
        match EtcdBackend::connect(&endpoints, options.clone()).await {
            Ok(backend) => break Arc::new(EtcdStore::new(backend)),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "store not reachable; still NOT_SERVING");
                publish(Err(Unavailable(err.to_string())));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    };
    publish(Ok(store.clone()));
    let mut up = false;
    loop {
        let ok = match store.health().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "store probe failed; NOT_SERVING");
                false
            }
        };
        if ok != up {
            up = ok;
            tracing::info!(reachable = ok, "store reachability changed");
            reachable(ok).await;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_reports_the_last_error_until_set() {
        let (slot, writer) = Slot::<Arc<str>>::connecting("etcd at 127.0.0.1:1");
        assert!(slot.get().unwrap_err().0.contains("127.0.0.1:1"));
        writer.failed("etcd at 127.0.0.1:1 unreachable: refused");
        assert_eq!(
            slot.get().unwrap_err().to_string(),
            "store not available: etcd at 127.0.0.1:1 unreachable: refused"
        );
        writer.set(Arc::from("store"));
        assert_eq!(&*slot.clone().get().unwrap(), "store");
        assert_eq!(&*Slot::ready(Arc::<str>::from("x")).get().unwrap(), "x");
    }

    #[tokio::test]
    async fn wait_returns_once_published() {
        let (slot, writer) = Slot::<Arc<str>>::connecting("etcd");
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.wait().await }
        });
        writer.failed("still down");
        writer.set(Arc::from("store"));
        assert_eq!(&*waiter.await.unwrap().unwrap(), "store");
        assert_eq!(
            &*Slot::ready(Arc::<str>::from("x")).wait().await.unwrap(),
            "x"
        );
        let (never, writer) = Slot::<Arc<str>>::connecting("etcd");
        drop(writer);
        assert!(never.wait().await.is_none());
    }

    #[tokio::test]
    async fn unreachable_etcd_is_published_with_its_address() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let options = EtcdOptions {
            connect_attempts: 1,
            connect_timeout: Duration::from_millis(200),
            ..EtcdOptions::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(keep_etcd_connected(
            vec![format!("http://127.0.0.1:{port}")],
            options,
            move |r| {
                let _ = tx.send(r.map(|_| ()));
            },
            |_| async {},
        ));
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(first.unwrap_err().0.contains(&port.to_string()));
        task.abort();
    }
}
