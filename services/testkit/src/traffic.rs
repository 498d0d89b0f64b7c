//! Real RocketMQ traffic for tests (cargo feature `rocketmq-client`): producers and push
//! consumers built on `rocketmq-client-rust` 1.0.0 that count messages **by key**.
//!
//! Counting by key, not by callback, matters: under a burst the 1.0.0 client logs
//! `consume_message task panicked: ... runtime.capacity.exhausted (BlockingQueueAdmission)`
//! and re-delivers those messages ~10 s later through the group's retry topic, so one
//! message can reach the listener more than once (the runtimes here use a deep blocking
//! queue, which makes this rare, not impossible). [`Ledger`] compares what was *acknowledged* (SendResult SEND_OK) with what was
//! received: [`Ledger::missing`] must be empty for "no loss"; [`Ledger::duplicates`] shows
//! re-deliveries (at-least-once is RocketMQ's contract).
//!
//! Besides plain keyed sends, a producer sends *ordered* (queue chosen by a hash of a shard
//! key, [`TrafficProducer::send_ordered`]) and *delayed* messages
//! ([`TrafficProducer::send_delayed`]); a consumer can be *orderly*
//! ([`TrafficConsumer::start_orderly`]) and can stop pulling for a while
//! ([`TrafficConsumer::suspend`] / [`TrafficConsumer::resume`]) to build a backlog.
//!
//! Every producer/consumer owns its own client runtime (`RuntimeOwner` + `ClientRuntime`,
//! with a no-op telemetry handle, so no global tracing subscriber is installed) and a
//! unique client instance name, so clients of two clusters in one test never share a
//! client instance. Call `shutdown()` at the end of a test; dropping without it still stops
//! the runtime threads, less politely.
//!
//! ```no_run
//! # async fn demo(a: &ferry_testkit::rocketmq::RocketMqCluster) -> ferry_testkit::Result<()> {
//! use ferry_testkit::traffic::{ClientOptions, Ledger, TrafficConsumer, TrafficProducer};
//! a.create_topic("T", 4).await?;
//! a.create_group("cg").await?; // auto-creation is off in testkit clusters
//! let consumer = TrafficConsumer::start(&a.namesrv_addr(), "cg", "T").await?;
//! let producer = TrafficProducer::start(&a.namesrv_addr(), "pg", ClientOptions::default()).await?;
//! let sent = producer.send_keyed("T", "k-1", b"hello").await?;
//! consumer.wait_for_keys(&[sent.key.clone()].into(), std::time::Duration::from_secs(30)).await?;
//! let ledger = Ledger::new(producer.sent(), consumer.received_keys());
//! assert!(ledger.missing().is_empty());
//! producer.shutdown().await;
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientConfig, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, ConsumeOrderlyContext, ConsumeOrderlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, SendResult, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_observability::TelemetryHandle;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use crate::{Result, TestkitError};

/// Send timeout handed to the client (ms).
const SEND_TIMEOUT_MS: u64 = 3_000;
/// Poll interval of [`TrafficConsumer::wait_for_keys`].
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The client's accepted range for the NameServer poll interval (ms).
const POLL_RANGE_MS: std::ops::RangeInclusive<u64> = 10_000..=600_000;

/// Queue depth of the client runtime's metadata-io blocking lane (see [`Runtime::new`]).
const LANE_QUEUE_DEPTH: usize = 8192;

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

fn client_error(what: impl Into<String>, reason: impl std::fmt::Display) -> TestkitError {
    TestkitError::Request {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// FNV-1a of a shard key: stable across runs and processes, unlike `std`'s hasher.
fn shard_hash(shard: &str) -> u64 {
    shard.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Client settings a test may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// How often the client re-reads routes from the NameServer, in ms. `None` keeps the
    /// client's default (30 s); the default here is `Some(10_000)`, the client's minimum,
    /// so a route change reaches clients within ~10 s. Accepted: 10 000 ..= 600 000.
    pub poll_name_server_interval_ms: Option<u64>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            poll_name_server_interval_ms: Some(10_000),
        }
    }
}

impl ClientOptions {
    fn client_config(&self, namesrv_addr: &str, role: &str) -> Result<ClientConfig> {
        let mut cc = ClientConfig::default();
        cc.set_namesrv_addr(namesrv_addr.into());
        cc.set_instance_name(
            format!(
                "ferry-testkit-{role}-{}-{}",
                std::process::id(),
                INSTANCE.fetch_add(1, Ordering::Relaxed)
            )
            .into(),
        );
        if let Some(ms) = self.poll_name_server_interval_ms {
            if !POLL_RANGE_MS.contains(&ms) {
                return Err(client_error(
                    format!("{role} options"),
                    format!(
                        "poll_name_server_interval_ms = {ms} is outside the client's accepted \
                         range {POLL_RANGE_MS:?}"
                    ),
                ));
            }
            cc.set_poll_name_server_interval(ms as u32);
        }
        Ok(cc)
    }
}

/// The runtime a client needs: a Tokio runtime owner and a client runtime on it.
struct Runtime {
    owner: RuntimeOwner,
    client: Arc<ClientRuntime>,
}

impl Runtime {
    fn new(role: &str) -> Result<Runtime> {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut config = RuntimeConfig::for_parallelism(format!("ferry-{role}"), parallelism);
        // The client runs every consume callback through the metadata-io blocking lane,
        // whose default queue (8 × cores) overflows under a burst of one-message batches:
        // the callback then "panics" with runtime.capacity.exhausted and the message comes
        // back via %RETRY% ~10 s later. A deep queue keeps tests fast (PEER-NOTES.md).
        config.blocking_lane_policies.metadata_io.max_queue_depth = LANE_QUEUE_DEPTH;
        let owner = RuntimeOwner::plan(config)
            .map_err(|e| client_error(format!("{role} runtime config"), e))?
            .build()
            .map_err(|e| client_error(format!("{role} runtime"), e))?;
        let client = ClientRuntime::try_new(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            TelemetryHandle::noop(),
        )
        .map_err(|e| client_error(format!("{role} client runtime"), e))?;
        Ok(Runtime { owner, client })
    }

    async fn shutdown(self) {
        let report = self.client.shutdown().await;
        if !report.is_healthy() {
            tracing::warn!(report = %report.to_json(), "client runtime shutdown was not clean");
        }
        let report = self.owner.shutdown_tasks().await;
        if !report.is_healthy() {
            tracing::warn!(report = %report.to_json(), "runtime task shutdown was not clean");
        }
        let report = self.owner.shutdown_background();
        if !report.is_healthy() {
            tracing::warn!(report = %report.to_json(), "runtime background shutdown was not clean");
        }
    }
}

/// An acknowledged send: the SendResult said SEND_OK.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentRecord {
    pub key: String,
    pub topic: String,
    /// The broker that stored it (`SendResult.message_queue`).
    pub broker_name: String,
    pub queue_id: i32,
}

/// A producer that sends keyed messages and remembers the acknowledged ones.
pub struct TrafficProducer {
    producer: DefaultMQProducer,
    runtime: Runtime,
    group: String,
    sent: Mutex<Vec<SentRecord>>,
    failed: AtomicUsize,
}

impl TrafficProducer {
    /// Starts a producer in `group` against the NameServer (or router) at `namesrv_addr`.
    pub async fn start(
        namesrv_addr: &str,
        group: &str,
        options: ClientOptions,
    ) -> Result<TrafficProducer> {
        let cc = options.client_config(namesrv_addr, "producer")?;
        let runtime = Runtime::new("producer")?;
        let mut producer = DefaultMQProducer::builder(runtime.client.clone())
            .client_config(cc)
            .producer_group(group.to_string())
            .name_server_addr(namesrv_addr.to_string())
            .build();
        if let Err(e) = producer.start().await {
            runtime.shutdown().await;
            return Err(client_error(format!("starting producer {group}"), e));
        }
        Ok(TrafficProducer {
            producer,
            runtime,
            group: group.to_string(),
            sent: Mutex::new(Vec::new()),
            failed: AtomicUsize::new(0),
        })
    }

    /// Sends one message with `key` (no spaces: RocketMQ splits keys on spaces) and waits
    /// for the result. Only SEND_OK counts as acknowledged and is recorded; anything else
    /// (another status, no result, an error) is an `Err` and counted in [`Self::failures`].
    pub async fn send_keyed(&self, topic: &str, key: &str, body: &[u8]) -> Result<SentRecord> {
        let message = self.message(topic, key, body, None)?;
        let result = self
            .producer
            .send_with_timeout(message, SEND_TIMEOUT_MS)
            .await;
        self.record(topic, key, result)
    }

    /// Sends a keyed message *in order* for `shard`: the queue is chosen among the route's
    /// writable queues by a stable hash of `shard` (as Java's `SelectMessageQueueByHash`
    /// does with the shard's hash code), so every message of a shard goes to one queue as
    /// long as the route does not change. Recorded like [`Self::send_keyed`].
    pub async fn send_ordered(
        &self,
        topic: &str,
        key: &str,
        shard: &str,
        body: &[u8],
    ) -> Result<SentRecord> {
        let message = self.message(topic, key, body, None)?;
        let selector = |mqs: &[MessageQueue], _msg: &Message, shard: &String| {
            if mqs.is_empty() {
                return None;
            }
            Some(mqs[(shard_hash(shard) % mqs.len() as u64) as usize].clone())
        };
        let result = self
            .producer
            .send_with_selector_timeout(message, selector, shard.to_string(), SEND_TIMEOUT_MS)
            .await;
        self.record(topic, key, result)
    }

    /// Sends a keyed message delivered after the broker's delay level `level` (1 = 1 s,
    /// 2 = 5 s, 3 = 10 s, 4 = 30 s with the default `messageDelayLevel`). The broker keeps it
    /// in `SCHEDULE_TOPIC_XXXX` until then. Recorded like [`Self::send_keyed`] (acknowledged
    /// = stored in the schedule queue).
    pub async fn send_delayed(
        &self,
        topic: &str,
        key: &str,
        body: &[u8],
        level: i32,
    ) -> Result<SentRecord> {
        let message = self.message(topic, key, body, Some(level))?;
        let result = self
            .producer
            .send_with_timeout(message, SEND_TIMEOUT_MS)
            .await;
        self.record(topic, key, result)
    }

    fn message(
        &self,
        topic: &str,
        key: &str,
        body: &[u8],
        delay_level: Option<i32>,
    ) -> Result<Message> {
        let mut builder = Message::builder().topic(topic).key(key).body_slice(body);
        if let Some(level) = delay_level {
            builder = builder.delay_level(level);
        }
        builder.build().map_err(|e| {
            client_error(
                format!("producer {} sending key {key} to {topic}", self.group),
                e,
            )
        })
    }

    fn record(
        &self,
        topic: &str,
        key: &str,
        result: rocketmq_client_rust::ClientResult<Option<SendResult>>,
    ) -> Result<SentRecord> {
        let outcome = match result {
            Ok(Some(result)) if result.send_status == SendStatus::SendOk => {
                match result.message_queue {
                    Some(mq) => Ok(SentRecord {
                        key: key.to_string(),
                        topic: topic.to_string(),
                        broker_name: mq.broker_name().to_string(),
                        queue_id: mq.queue_id(),
                    }),
                    None => Err("SEND_OK without a message queue".to_string()),
                }
            }
            Ok(Some(result)) => Err(format!("send status {:?}", result.send_status)),
            Ok(None) => Err("no send result".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(record) => {
                self.sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(record.clone());
                Ok(record)
            }
            Err(reason) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(client_error(
                    format!("producer {} sending key {key} to {topic}", self.group),
                    reason,
                ))
            }
        }
    }

    /// Every acknowledged send so far, in order.
    pub fn sent(&self) -> Vec<SentRecord> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many sends were not acknowledged.
    pub fn failures(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Shuts the producer and its runtime down.
    pub async fn shutdown(mut self) {
        self.producer.shutdown().await;
        self.runtime.shutdown().await;
    }
}

/// One delivery to the consumer's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message's keys as sent (`KEYS` property), `""` when it had none.
    pub key: String,
    pub broker_name: String,
    pub queue_id: i32,
    /// Offset of the message in its queue.
    pub queue_offset: i64,
    pub reconsume_times: i32,
}

#[derive(Default)]
struct Received {
    deliveries: Vec<Delivery>,
    by_key: HashMap<String, usize>,
}

/// Records one listener call's messages.
fn record_deliveries(sink: &Mutex<Received>, msgs: &[&MessageExt]) {
    let mut r = sink.lock().unwrap_or_else(|e| e.into_inner());
    for msg in msgs {
        let key = msg.message.keys().unwrap_or_default().join(" ");
        *r.by_key.entry(key.clone()).or_insert(0) += 1;
        r.deliveries.push(Delivery {
            key,
            broker_name: msg.broker_name().to_string(),
            queue_id: msg.queue_id(),
            queue_offset: msg.queue_offset(),
            reconsume_times: msg.reconsume_times,
        });
    }
}

/// A push consumer (clustering, concurrent listener, from the first offset) that records
/// every delivery; duplicates are counted, not hidden.
pub struct TrafficConsumer {
    consumer: DefaultMQPushConsumer,
    runtime: Runtime,
    group: String,
    topic: String,
    received: Arc<Mutex<Received>>,
}

impl TrafficConsumer {
    /// Starts a push consumer in `group` subscribed to `topic` (`*`) with the default
    /// [`ClientOptions`]. On clusters without auto-created groups, create the group first
    /// (`RocketMqCluster::create_group`).
    pub async fn start(namesrv_addr: &str, group: &str, topic: &str) -> Result<TrafficConsumer> {
        Self::start_with(namesrv_addr, group, topic, ClientOptions::default()).await
    }

    /// [`Self::start`] with explicit client options.
    pub async fn start_with(
        namesrv_addr: &str,
        group: &str,
        topic: &str,
        options: ClientOptions,
    ) -> Result<TrafficConsumer> {
        Self::launch(namesrv_addr, group, topic, options, false).await
    }

    /// Like [`Self::start_with`] with an *orderly* listener: the client locks each queue on
    /// its broker (`LOCK_BATCH_MQ`) and hands one queue's messages to the listener one batch
    /// at a time, in queue order, so [`Self::deliveries`] keep each queue's order.
    pub async fn start_orderly(
        namesrv_addr: &str,
        group: &str,
        topic: &str,
        options: ClientOptions,
    ) -> Result<TrafficConsumer> {
        Self::launch(namesrv_addr, group, topic, options, true).await
    }

    async fn launch(
        namesrv_addr: &str,
        group: &str,
        topic: &str,
        options: ClientOptions,
        orderly: bool,
    ) -> Result<TrafficConsumer> {
        let cc = options.client_config(namesrv_addr, "consumer")?;
        let runtime = Runtime::new("consumer")?;
        let mut consumer = DefaultMQPushConsumer::builder(runtime.client.clone())
            .client_config(cc)
            .consumer_group(group.to_string())
            .name_server_addr(namesrv_addr.to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = Arc::clone(&received);
        let started = async {
            consumer.subscribe(topic, "*").await?;
            if orderly {
                consumer.register_message_listener_orderly(
                    move |msgs: &[&MessageExt], _ctx: &mut ConsumeOrderlyContext| {
                        record_deliveries(&sink, msgs);
                        Ok(ConsumeOrderlyStatus::Success)
                    },
                );
            } else {
                consumer.register_message_listener_concurrently(
                    move |msgs: &[&MessageExt], _ctx: &ConsumeConcurrentlyContext| {
                        record_deliveries(&sink, msgs);
                        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
                    },
                );
            }
            consumer.start().await
        };
        if let Err(e) = started.await {
            runtime.shutdown().await;
            return Err(client_error(
                format!("starting consumer {group} on {topic}"),
                e,
            ));
        }
        Ok(TrafficConsumer {
            consumer,
            runtime,
            group: group.to_string(),
            topic: topic.to_string(),
            received,
        })
    }

    /// Stops pulling new messages (the client keeps heartbeating, so the group stays
    /// online and its backlog grows); messages already pulled are still delivered.
    pub async fn suspend(&self) {
        self.consumer.suspend().await;
    }

    /// Pulls again after [`Self::suspend`].
    pub async fn resume(&self) {
        self.consumer.resume().await;
    }

    /// How many times each key was delivered so far.
    pub fn received_keys(&self) -> HashMap<String, usize> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .clone()
    }

    /// Every delivery so far, in arrival order (with the broker each came from).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deliveries
            .clone()
    }

    /// Polls until every key in `keys` was delivered at least once, or fails after
    /// `timeout` saying how many (and which, up to 10) are missing.
    pub async fn wait_for_keys(&self, keys: &HashSet<String>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<String> = {
                let r = self.received.lock().unwrap_or_else(|e| e.into_inner());
                keys.iter()
                    .filter(|k| !r.by_key.contains_key(*k))
                    .cloned()
                    .collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let mut sample = missing.clone();
                sample.sort();
                sample.truncate(10);
                return Err(client_error(
                    format!("consumer {} on {}", self.group, self.topic),
                    format!(
                        "{} of {} keys not received within {timeout:?} (e.g. {sample:?})",
                        missing.len(),
                        keys.len()
                    ),
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Shuts the consumer and its runtime down.
    pub async fn shutdown(mut self) {
        self.consumer.shutdown().await;
        self.runtime.shutdown().await;
    }
}

/// Sent (acknowledged) vs received, by key.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    sent: BTreeMap<String, SentRecord>,
    received: HashMap<String, usize>,
}

impl Ledger {
    /// A ledger of acknowledged sends (e.g. [`TrafficProducer::sent`] of one or more
    /// producers) and received counts ([`TrafficConsumer::received_keys`], merged with
    /// [`Ledger::add_received`] for several consumers).
    pub fn new(
        sent: impl IntoIterator<Item = SentRecord>,
        received: HashMap<String, usize>,
    ) -> Ledger {
        Ledger {
            sent: sent.into_iter().map(|r| (r.key.clone(), r)).collect(),
            received,
        }
    }

    /// Adds another consumer's received counts.
    pub fn add_received(&mut self, received: &HashMap<String, usize>) {
        for (k, n) in received {
            *self.received.entry(k.clone()).or_insert(0) += n;
        }
    }

    /// Acknowledged sends by key.
    pub fn sent(&self) -> &BTreeMap<String, SentRecord> {
        &self.sent
    }

    /// Keys acknowledged but never received: message loss. Sorted.
    pub fn missing(&self) -> Vec<String> {
        self.sent
            .keys()
            .filter(|k| !self.received.contains_key(*k))
            .cloned()
            .collect()
    }

    /// Keys received more than once, with their delivery counts.
    pub fn duplicates(&self) -> BTreeMap<String, usize> {
        self.received
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    /// Keys received but never acknowledged (a send that timed out at the client but was
    /// stored, or traffic from elsewhere). Sorted.
    pub fn unexpected(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .received
            .keys()
            .filter(|k| !self.sent.contains_key(*k))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Acknowledged sends per broker name.
    pub fn sent_per_broker(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.sent.values() {
            *out.entry(r.broker_name.clone()).or_insert(0) += 1;
        }
        out
    }

    /// One line for assertion messages.
    pub fn summary(&self) -> String {
        let missing = self.missing();
        let dups = self.duplicates();
        format!(
            "sent {} (per broker {:?}), received {} distinct keys, missing {} {:?}, duplicated {} (extra deliveries {}), unexpected {}",
            self.sent.len(),
            self.sent_per_broker(),
            self.received.len(),
            missing.len(),
            &missing[..missing.len().min(10)],
            dups.len(),
            dups.values().map(|n| n - 1).sum::<usize>(),
            self.unexpected().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, broker: &str) -> SentRecord {
        SentRecord {
            key: key.into(),
            topic: "T".into(),
            broker_name: broker.into(),
            queue_id: 0,
        }
    }

    #[test]
    fn ledger_finds_missing_duplicates_and_unexpected() {
        let received = HashMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 3),
            ("x".to_string(), 1),
        ]);
        let ledger = Ledger::new(
            [
                rec("a", "broker-a"),
                rec("b", "broker-b"),
                rec("c", "broker-a"),
            ],
            received,
        );
        assert_eq!(ledger.missing(), ["c"]);
        assert_eq!(ledger.duplicates(), BTreeMap::from([("b".to_string(), 3)]));
        assert_eq!(ledger.unexpected(), ["x"]);
        assert_eq!(
            ledger.sent_per_broker(),
            BTreeMap::from([("broker-a".to_string(), 2), ("broker-b".to_string(), 1)])
        );
        assert!(
            ledger.summary().contains("missing 1"),
            "{}",
            ledger.summary()
        );
    }

    #[test]
    fn poll_interval_outside_the_client_range_is_rejected() {
        let opts = ClientOptions {
            poll_name_server_interval_ms: Some(1_000),
        };
        let Err(err) = opts.client_config("127.0.0.1:1", "producer") else {
            panic!("1 s must be rejected");
        };
        assert!(err.to_string().contains("outside"), "{err}");
        let cc = ClientOptions::default()
            .client_config("127.0.0.1:1", "producer")
            .unwrap();
        assert_eq!(cc.get_poll_name_server_interval(), 10_000);
    }
}
