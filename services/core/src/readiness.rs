//! Readiness of a topic for its next and previous stage: pure rules over measured facts.
//!
//! A stage change is *ready* only when no acknowledged message can be stranded by it, i.e.
//! left in queues no consumer will read again. The health-check service measures the
//! [`TopicFacts`] on both clusters; [`assess`] turns them into a [`Readiness`] with every
//! [`Reason`] that holds. Anything that could not be measured is [`Fact::Unknown`] and blocks
//! every step that needs it (`CLUSTER_UNREACHABLE`): a wrong "ready" loses messages, a wrong
//! "not ready" only costs a wait or an explicit, audited `force`. Each reason's detail carries
//! the figures behind it (counts, groups, brokers, routers registered / answering).
//!
//! # What each step needs, and why
//!
//! Clients refresh routes every poll interval (`pollNameServerInterval`, 30 s by default), so
//! for a while after a change some clients act on the old stage and some on the new one. The
//! permission table (see [`crate::perm`]) keeps every cluster that may hold messages readable
//! in both neighbouring stages; the rules below cover what permissions alone cannot.
//!
//! | step | needs |
//! |---|---|
//! | every step | task not paused; at least the minimum dwell in the current stage |
//! | INITIAL → DUAL_READ | target topic and groups exist (`TOPIC_NOT_IMPORTED`, `GROUP_NOT_IMPORTED`); no broker name in both clusters (`BROKER_NAME_COLLISION`); a router of the task registered and every registered router answering (`ROUTER_UNAVAILABLE`); every client switched to the routers (`CLIENTS_NOT_SWITCHED`) |
//! | DUAL_READ → DUAL_WRITE | as above, and every group consuming on the source also consumes on the target (`CONSUMERS_NOT_ON_TARGET`) |
//! | DUAL_WRITE → SWITCHING | as DUAL_READ → DUAL_WRITE |
//! | SWITCHING → DONE | as DUAL_READ → DUAL_WRITE; on the source: backlog 0 for every group (`SOURCE_BACKLOG`), its `%RETRY%` and `%DLQ%` topics drained (`RETRY_OR_DLQ_BACKLOG`), no scheduled message undelivered (`PENDING_DELAY_MESSAGES`), no transaction unresolved (`PENDING_TRANSACTIONS`), no writes for a quiet window (`SOURCE_STILL_WRITTEN`) |
//! | DUAL_READ → INITIAL | target backlog 0 for every group |
//! | DUAL_WRITE → DUAL_READ, SWITCHING → DUAL_WRITE, DONE → SWITCHING | nothing more: every cluster holding messages stays readable |
//!
//! - **Dwell** (default 2 × 30 s): after a change, clients still on the old route must have
//!   polled the new one before the next change, or a client could skip a stage (e.g. still
//!   write the source after DONE hid it). Twice the interval covers jitter and a missed poll.
//! - **Target topic and groups**: without them consumers cannot attach to target queues and
//!   producers' sends there fail; a group created late may start from the last offset and
//!   skip what was already written (ROCKETMQ.md §6.3).
//! - **Broker names**: clients key addresses and offsets by broker name alone; a name in both
//!   clusters sends traffic and offsets to the wrong cluster (ROCKETMQ.md §6.1).
//! - **Clients switched**: a client that looks routes up on the source NameServer directly
//!   never sees target queues: a direct consumer group never reads what is written to the
//!   target, a direct producer keeps writing the source after DONE. Group members must also
//!   switch together or rebalancing diverges (ROCKETMQ.md §6.3).
//! - **Routers**: who switched is known only from the routers' presence. With no router of
//!   the task registered, or a registered one not answering, a client using it is invisible
//!   (and may follow stale stages), so switching cannot be proven.
//! - **Consumers attached to the target** before any write goes there: a group's first look
//!   at a new queue may start from its last offset and skip earlier messages.
//! - **SWITCHING → DONE** hides the source queues: every group must have drained the source
//!   and its `%RETRY%`/`%DLQ%` topics there, and nothing may still be writing there (a late
//!   transactional commit, a client with a stale route). Messages the source brokers hold
//!   back also land on the source later: scheduled (delayed) messages not delivered yet and
//!   transactional half messages not resolved yet. Brokers keep both in one system queue for
//!   every topic (`SCHEDULE_TOPIC_XXXX`, `RMQ_SYS_TRANS_HALF_TOPIC`), so these two are
//!   counted per source broker for all topics, which errs on the side of waiting. The write
//!   watch needs a quiet window of one poll interval because a rare writer cannot be seen
//!   any faster.
//! - **DUAL_READ → INITIAL** hides the target queues, which may hold messages written during
//!   an earlier DUAL_WRITE: every group must have drained the target.
//! - Rolling back from DUAL_WRITE, SWITCHING or DONE only makes more queues readable; the
//!   dwell alone lets clients settle first.
//!
//! Order and transactions: per-key order is only local while producers spread over both
//! clusters (PRODUCT.md §3 accepts local disorder); transactional check-backs keep working
//! because DONE keeps the source brokers listed with perm 0 during the grace period, and a
//! commit that still lands on the source shows up in the write watch.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::stage::{Direction, Stage};

/// Why a topic is not ready to change stage. Stable codes, as in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
///
/// Records stored before the 12+ codes existed name `SOURCE_WRITES_SEEN`,
/// `TARGET_TOPIC_MISSING` and `TARGET_GROUP_MISSING`; they still read (as
/// `SOURCE_STILL_WRITTEN`, `TOPIC_NOT_IMPORTED`, `GROUP_NOT_IMPORTED`).
pub enum ReasonCode {
    /// Messages of the topic on the source are not consumed yet.
    SourceBacklog,
    /// Messages on the target are not consumed yet (a rollback would strand them).
    TargetBacklog,
    /// Some clients still use the source NameServer directly, or that cannot be ruled out.
    ClientsNotSwitched,
    /// Not long enough in the stage (or watching the source) for every client to follow.
    DwellTooShort,
    /// Writes still reach the source although the stage makes it read-only.
    #[serde(alias = "SOURCE_WRITES_SEEN")]
    SourceStillWritten,
    /// The topic does not exist on the target: import it.
    #[serde(alias = "TARGET_TOPIC_MISSING")]
    TopicNotImported,
    /// A consumer group of the topic does not exist on the target: import it.
    #[serde(alias = "TARGET_GROUP_MISSING")]
    GroupNotImported,
    /// Something could not be measured, so readiness cannot be proven.
    ClusterUnreachable,
    /// A broker name exists in both clusters.
    BrokerNameCollision,
    /// The task is paused.
    TaskPaused,
    /// There is no stage in that direction.
    NoSuchStage,
    /// A group consumes the topic on the source but has no consumer on the target yet.
    ConsumersNotOnTarget,
    /// Scheduled (delayed) messages on the source brokers are not delivered yet.
    PendingDelayMessages,
    /// Transactional half messages on the source brokers are not resolved yet.
    PendingTransactions,
    /// The groups' `%RETRY%` / `%DLQ%` topics on the source hold unconsumed messages.
    RetryOrDlqBacklog,
    /// No router of the task is registered, or a registered router does not answer.
    RouterUnavailable,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 16] = [
        ReasonCode::SourceBacklog,
        ReasonCode::TargetBacklog,
        ReasonCode::ClientsNotSwitched,
        ReasonCode::DwellTooShort,
        ReasonCode::SourceStillWritten,
        ReasonCode::TopicNotImported,
        ReasonCode::GroupNotImported,
        ReasonCode::ClusterUnreachable,
        ReasonCode::BrokerNameCollision,
        ReasonCode::TaskPaused,
        ReasonCode::NoSuchStage,
        ReasonCode::ConsumersNotOnTarget,
        ReasonCode::PendingDelayMessages,
        ReasonCode::PendingTransactions,
        ReasonCode::RetryOrDlqBacklog,
        ReasonCode::RouterUnavailable,
    ];

    /// The API name, e.g. `SOURCE_BACKLOG`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::SourceBacklog => "SOURCE_BACKLOG",
            ReasonCode::TargetBacklog => "TARGET_BACKLOG",
            ReasonCode::ClientsNotSwitched => "CLIENTS_NOT_SWITCHED",
            ReasonCode::DwellTooShort => "DWELL_TOO_SHORT",
            ReasonCode::SourceStillWritten => "SOURCE_STILL_WRITTEN",
            ReasonCode::TopicNotImported => "TOPIC_NOT_IMPORTED",
            ReasonCode::GroupNotImported => "GROUP_NOT_IMPORTED",
            ReasonCode::ClusterUnreachable => "CLUSTER_UNREACHABLE",
            ReasonCode::BrokerNameCollision => "BROKER_NAME_COLLISION",
            ReasonCode::TaskPaused => "TASK_PAUSED",
            ReasonCode::NoSuchStage => "NO_SUCH_STAGE",
            ReasonCode::ConsumersNotOnTarget => "CONSUMERS_NOT_ON_TARGET",
            ReasonCode::PendingDelayMessages => "PENDING_DELAY_MESSAGES",
            ReasonCode::PendingTransactions => "PENDING_TRANSACTIONS",
            ReasonCode::RetryOrDlqBacklog => "RETRY_OR_DLQ_BACKLOG",
            ReasonCode::RouterUnavailable => "ROUTER_UNAVAILABLE",
        }
    }
}

crate::text_enum!(
    ReasonCode,
    "readiness reason code",
    "SOURCE_BACKLOG, TARGET_BACKLOG, CLIENTS_NOT_SWITCHED, DWELL_TOO_SHORT, SOURCE_STILL_WRITTEN, TOPIC_NOT_IMPORTED, GROUP_NOT_IMPORTED, CLUSTER_UNREACHABLE, BROKER_NAME_COLLISION, TASK_PAUSED, NO_SUCH_STAGE, CONSUMERS_NOT_ON_TARGET, PENDING_DELAY_MESSAGES, PENDING_TRANSACTIONS, RETRY_OR_DLQ_BACKLOG, ROUTER_UNAVAILABLE"
);

/// One reason a topic is not ready: a stable code and what was measured, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub detail: String,
}

impl Reason {
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Reason {
            code,
            detail: detail.into(),
        }
    }
}

/// Whether one stage change may happen now. `ready` is true exactly when `reasons` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The stage the change would move to; `None` past either end.
    pub to: Option<Stage>,
    pub ready: bool,
    pub reasons: Vec<Reason>,
}

impl Readiness {
    fn from_reasons(to: Option<Stage>, reasons: Vec<Reason>) -> Self {
        Readiness {
            to,
            ready: reasons.is_empty(),
            reasons,
        }
    }

    /// The distinct reason codes.
    pub fn codes(&self) -> BTreeSet<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }

    /// `CODE: detail; CODE: detail`, for error messages and logs.
    pub fn summary(&self) -> String {
        self.reasons
            .iter()
            .map(|r| format!("{}: {}", r.code, r.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A measured value, or why it could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact<T> {
    Known(T),
    /// What failed, e.g. "broker-a at 10.0.0.1:10911 unreachable: connection refused".
    Unknown(String),
}

impl<T> Fact<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Fact::Known(v) => Some(v),
            Fact::Unknown(_) => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Fact::Known(_))
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Fact<U> {
        match self {
            Fact::Known(v) => Fact::Known(f(v)),
            Fact::Unknown(why) => Fact::Unknown(why),
        }
    }
}

impl<T, E: std::fmt::Display> From<Result<T, E>> for Fact<T> {
    fn from(r: Result<T, E>) -> Self {
        match r {
            Ok(v) => Fact::Known(v),
            Err(e) => Fact::Unknown(e.to_string()),
        }
    }
}

/// Messages of one consumer group not consumed yet on one cluster (summed over the
/// cluster's brokers). On the source this is the topic alone (the group's retry and
/// dead-letter topics are [`RetryBacklog`]s); on the target it includes the retry topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBacklog {
    pub group: String,
    pub messages: Fact<i64>,
}

/// Messages of one group's `%RETRY%<group>` or `%DLQ%<group>` topic on the source not
/// consumed yet (summed over the source brokers holding it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryBacklog {
    pub group: String,
    /// `%RETRY%<group>` or `%DLQ%<group>`.
    pub topic: String,
    pub messages: Fact<i64>,
}

/// Messages one source broker holds back for later: scheduled messages not delivered yet,
/// or transactional half messages not resolved yet. Brokers keep them for every topic in
/// one system queue, so the count is the broker's, not the topic's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerPending {
    /// Broker name and address, e.g. `broker-a (10.0.0.1:10911)`.
    pub broker: String,
    pub messages: Fact<i64>,
    /// Where they are, for people (e.g. `delay level 18: 3`); may be empty.
    pub detail: String,
}

/// Which clients of the topic still use the source NameServer directly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSwitch {
    /// Clients seen on source brokers and at no router, one description each
    /// (e.g. `consumer G 10.0.0.5:53122 (10.0.0.5@pid)`).
    pub unswitched: Vec<String>,
    /// What could not be checked, e.g. producers a 4.x broker cannot list. Each one blocks
    /// like an unswitched client. (Routers that do not answer are [`Routers`].)
    pub unproven: Vec<String>,
}

/// The routers of the task: client presence is only known from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routers {
    /// Routers registered for the task (live registrations in the store).
    pub registered: usize,
    /// Registered routers that answered the presence query.
    pub answering: usize,
    /// Why each of the others did not answer.
    pub failures: Vec<String>,
}

impl Routers {
    /// `n` registered routers, every one answering.
    pub fn all_answering(n: usize) -> Self {
        Routers {
            registered: n,
            answering: n,
            failures: Vec::new(),
        }
    }
}

/// Writes seen on the source topic by comparing its max offsets over a watched window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWrites {
    /// Messages written to the source during the window.
    pub written: i64,
    /// How long the source has been watched (the window).
    pub watched: Duration,
}

/// Everything the rules look at for one topic. See the module docs for which step needs what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicFacts {
    pub task_paused: bool,
    /// Time in the current stage; `None` when the stage's start is unknown.
    pub dwell: Option<Duration>,
    /// Broker names present in both clusters.
    pub broker_name_collisions: Fact<Vec<String>>,
    pub target_topic_exists: Fact<bool>,
    /// Consumer groups of the topic missing on the target (`group` or `group@broker`).
    pub target_groups_missing: Fact<Vec<String>>,
    /// Routers of the task registered and answering.
    pub routers: Fact<Routers>,
    pub clients: Fact<ClientSwitch>,
    /// Groups with consumers of the topic on the source but none on the target.
    pub groups_not_on_target: Fact<Vec<String>>,
    pub source_backlog: Fact<Vec<GroupBacklog>>,
    /// The groups' `%RETRY%` / `%DLQ%` topics on the source (entries with a backlog, or
    /// unknown; a drained or absent topic may be left out).
    pub retry_backlog: Fact<Vec<RetryBacklog>>,
    /// Scheduled messages not delivered yet, per source broker of the task's cluster.
    pub pending_delay: Fact<Vec<BrokerPending>>,
    /// Transactional half messages not resolved yet, per source broker.
    pub pending_transactions: Fact<Vec<BrokerPending>>,
    pub target_backlog: Fact<Vec<GroupBacklog>>,
    /// Scheduled messages not delivered yet, per target broker: a rollback to INITIAL stops
    /// reading the target, so each would arrive there after its consumers left.
    pub target_pending_delay: Fact<Vec<BrokerPending>>,
    /// Transactional half messages not resolved yet, per target broker (same reason).
    pub target_pending_transactions: Fact<Vec<BrokerPending>>,
    pub source_writes: Fact<SourceWrites>,
}

impl TopicFacts {
    /// Facts under which every step is ready (a starting point for tests and tools).
    pub fn all_clear(dwell: Duration, quiet: Duration) -> Self {
        TopicFacts {
            task_paused: false,
            dwell: Some(dwell),
            broker_name_collisions: Fact::Known(Vec::new()),
            target_topic_exists: Fact::Known(true),
            target_groups_missing: Fact::Known(Vec::new()),
            routers: Fact::Known(Routers::all_answering(1)),
            clients: Fact::Known(ClientSwitch::default()),
            groups_not_on_target: Fact::Known(Vec::new()),
            source_backlog: Fact::Known(Vec::new()),
            retry_backlog: Fact::Known(Vec::new()),
            pending_delay: Fact::Known(Vec::new()),
            pending_transactions: Fact::Known(Vec::new()),
            target_backlog: Fact::Known(Vec::new()),
            target_pending_delay: Fact::Known(Vec::new()),
            target_pending_transactions: Fact::Known(Vec::new()),
            source_writes: Fact::Known(SourceWrites {
                written: 0,
                watched: quiet,
            }),
        }
    }
}

/// How long changes need to reach every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessPolicy {
    /// Minimum time in a stage before the next change (default 2 × route poll interval).
    pub min_dwell: Duration,
    /// Minimum window without source writes before SWITCHING → DONE (default one poll
    /// interval).
    pub source_quiet: Duration,
}

impl ReadinessPolicy {
    /// RocketMQ clients' default `pollNameServerInterval`.
    pub const DEFAULT_ROUTE_POLL: Duration = Duration::from_secs(30);

    /// Dwell 2 × `route_poll`, quiet window 1 × `route_poll`.
    pub fn for_route_poll(route_poll: Duration) -> Self {
        ReadinessPolicy {
            min_dwell: route_poll.saturating_mul(2),
            source_quiet: route_poll,
        }
    }
}

impl Default for ReadinessPolicy {
    fn default() -> Self {
        Self::for_route_poll(Self::DEFAULT_ROUTE_POLL)
    }
}

/// The checks one step needs (module docs, table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    pub no_collision: bool,
    pub target_topic: bool,
    pub target_groups: bool,
    /// Routers available and every client switched to them.
    pub clients_switched: bool,
    pub attached_to_target: bool,
    /// The source drained: the topic, the groups' retry / DLQ topics, scheduled messages
    /// and transactions.
    pub source_drained: bool,
    pub source_quiet: bool,
    pub target_drained: bool,
}

/// What the step `from -> to` needs besides "not paused" and the dwell, which every step
/// needs. Steps that are not one stage apart need nothing (they are refused elsewhere).
pub fn needs(from: Stage, to: Stage) -> Needs {
    use Stage::*;
    let forward = Needs {
        no_collision: true,
        target_topic: true,
        target_groups: true,
        clients_switched: true,
        ..Needs::default()
    };
    match (from, to) {
        (Initial, DualRead) => forward,
        (DualRead, DualWrite) | (DualWrite, Switching) => Needs {
            attached_to_target: true,
            ..forward
        },
        (Switching, Done) => Needs {
            attached_to_target: true,
            source_drained: true,
            source_quiet: true,
            ..forward
        },
        (DualRead, Initial) => Needs {
            target_drained: true,
            ..Needs::default()
        },
        _ => Needs::default(),
    }
}

/// Most items named in one reason's detail; the rest are counted.
const MAX_LISTED: usize = 20;

fn listed(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(MAX_LISTED).map(String::as_str).collect();
    match items.len().saturating_sub(MAX_LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

fn secs(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Collects reasons for one step.
struct Check {
    reasons: Vec<Reason>,
}

impl Check {
    fn add(&mut self, code: ReasonCode, detail: String) {
        self.reasons.push(Reason::new(code, detail));
    }

    /// The known value, or a CLUSTER_UNREACHABLE reason naming what is unknown.
    fn known<'f, T>(&mut self, what: &str, fact: &'f Fact<T>) -> Option<&'f T> {
        match fact {
            Fact::Known(v) => Some(v),
            Fact::Unknown(why) => {
                self.add(
                    ReasonCode::ClusterUnreachable,
                    format!("{what} unknown: {why}"),
                );
                None
            }
        }
    }

    fn drained(&mut self, side: &str, code: ReasonCode, fact: &Fact<Vec<GroupBacklog>>) {
        let Some(groups) = self.known(&format!("{side} backlog"), fact) else {
            return;
        };
        for g in groups {
            match &g.messages {
                Fact::Known(n) if *n > 0 => self.add(
                    code,
                    format!("{side} backlog {n} messages in group {}", g.group),
                ),
                Fact::Known(_) => {}
                Fact::Unknown(why) => self.add(
                    ReasonCode::ClusterUnreachable,
                    format!("{side} backlog of group {} unknown: {why}", g.group),
                ),
            }
        }
    }

    /// RETRY_OR_DLQ_BACKLOG per retry / dead-letter topic with messages left.
    fn retry_drained(&mut self, fact: &Fact<Vec<RetryBacklog>>) {
        let Some(topics) = self.known("source retry / dead-letter backlog", fact) else {
            return;
        };
        for t in topics {
            match &t.messages {
                Fact::Known(n) if *n > 0 => {
                    let what = if t.topic.starts_with("%DLQ%") {
                        "dead-letter messages not handled yet (resend them, then reset the group's offset on it; RocketMQ never redelivers them)"
                    } else {
                        "retry messages not consumed yet"
                    };
                    self.add(
                        ReasonCode::RetryOrDlqBacklog,
                        format!("source {} holds {n} {what} of group {}", t.topic, t.group),
                    )
                }
                Fact::Known(_) => {}
                Fact::Unknown(why) => self.add(
                    ReasonCode::ClusterUnreachable,
                    format!("source backlog of {} unknown: {why}", t.topic),
                ),
            }
        }
    }

    /// One reason with the total over the `side`'s brokers holding messages back, naming
    /// each; CLUSTER_UNREACHABLE per broker that could not be read.
    fn pending(
        &mut self,
        side: &str,
        what: &str,
        code: ReasonCode,
        fact: &Fact<Vec<BrokerPending>>,
        why: &str,
    ) {
        let Some(brokers) = self.known(what, fact) else {
            return;
        };
        let mut total = 0i64;
        let mut named = Vec::new();
        for b in brokers {
            match &b.messages {
                Fact::Known(n) if *n > 0 => {
                    total = total.saturating_add(*n);
                    named.push(if b.detail.is_empty() {
                        format!("{}: {n}", b.broker)
                    } else {
                        format!("{}: {n} ({})", b.broker, b.detail)
                    });
                }
                Fact::Known(_) => {}
                Fact::Unknown(e) => self.add(
                    ReasonCode::ClusterUnreachable,
                    format!("{what} on {} unknown: {e}", b.broker),
                ),
            }
        }
        if total > 0 {
            self.add(
                code,
                format!(
                    "{total} {what} on the {side} ({}); counted per broker for all topics, {why}",
                    listed(&named)
                ),
            );
        }
    }
}

/// Readiness of the step from `from` one stage in `direction`, under `facts`.
pub fn assess(
    from: Stage,
    direction: Direction,
    facts: &TopicFacts,
    policy: &ReadinessPolicy,
) -> Readiness {
    let Some(to) = from.step(direction) else {
        let why = match direction {
            Direction::Advance => "DONE is the last stage",
            Direction::Rollback => "INITIAL is the first stage",
        };
        return Readiness::from_reasons(
            None,
            vec![Reason::new(
                ReasonCode::NoSuchStage,
                format!("topic is {from}: {why}"),
            )],
        );
    };
    let need = needs(from, to);
    let mut c = Check {
        reasons: Vec::new(),
    };
    if facts.task_paused {
        c.add(
            ReasonCode::TaskPaused,
            "the task is paused; resume it first".into(),
        );
    }
    match facts.dwell {
        None => c.add(
            ReasonCode::DwellTooShort,
            format!("time in {from} unknown (no stage change time recorded)"),
        ),
        Some(d) if d < policy.min_dwell => c.add(
            ReasonCode::DwellTooShort,
            format!(
                "in {from} for {}; at least {} so every client has polled the current route",
                secs(d),
                secs(policy.min_dwell)
            ),
        ),
        Some(_) => {}
    }
    if need.no_collision
        && let Some(names) = c.known(
            "broker names of both clusters",
            &facts.broker_name_collisions,
        )
        && !names.is_empty()
    {
        c.add(
            ReasonCode::BrokerNameCollision,
            format!("broker names in both clusters: {}", listed(names)),
        );
    }
    if need.target_topic
        && let Some(false) = c.known("target topic", &facts.target_topic_exists)
    {
        c.add(
            ReasonCode::TopicNotImported,
            "the topic does not exist on the target cluster; import it".into(),
        );
    }
    if need.target_groups
        && let Some(missing) = c.known("target groups", &facts.target_groups_missing)
        && !missing.is_empty()
    {
        c.add(
            ReasonCode::GroupNotImported,
            format!(
                "{} consumer group(s) missing on the target: {}",
                missing.len(),
                listed(missing)
            ),
        );
    }
    if need.clients_switched
        && let Some(r) = c.known("routers of the task", &facts.routers)
    {
        if r.registered == 0 {
            c.add(
                ReasonCode::RouterUnavailable,
                "no router of the task is registered (0 registered, 0 answering): clients have no router to switch to, and switching cannot be proven".into(),
            );
        } else if r.answering < r.registered {
            let mut detail = format!(
                "{} of {} registered router(s) answering; clients of the others cannot be seen",
                r.answering, r.registered
            );
            if !r.failures.is_empty() {
                detail.push_str(&format!(": {}", listed(&r.failures)));
            }
            c.add(ReasonCode::RouterUnavailable, detail);
        }
    }
    if need.clients_switched
        && let Some(sw) = c.known("client presence", &facts.clients)
    {
        if !sw.unswitched.is_empty() {
            c.add(
                ReasonCode::ClientsNotSwitched,
                format!(
                    "{} client(s) still use the source NameServer: {}",
                    sw.unswitched.len(),
                    listed(&sw.unswitched)
                ),
            );
        }
        if !sw.unproven.is_empty() {
            c.add(
                ReasonCode::ClientsNotSwitched,
                format!(
                    "cannot prove every client uses the routers: {}",
                    listed(&sw.unproven)
                ),
            );
        }
    }
    if need.attached_to_target
        && let Some(groups) = c.known("consumers on the target", &facts.groups_not_on_target)
        && !groups.is_empty()
    {
        c.add(
            ReasonCode::ConsumersNotOnTarget,
            format!(
                "{} group(s) consuming on the source with no consumer on the target yet: {}",
                groups.len(),
                listed(groups)
            ),
        );
    }
    if need.source_drained {
        c.drained("source", ReasonCode::SourceBacklog, &facts.source_backlog);
        c.retry_drained(&facts.retry_backlog);
        c.pending(
            "source",
            "scheduled message(s) not delivered yet",
            ReasonCode::PendingDelayMessages,
            &facts.pending_delay,
            "as the schedule queue does not tell topics apart; each would be delivered to the source after its consumers left",
        );
        c.pending(
            "source",
            "transactional half message(s) not resolved yet",
            ReasonCode::PendingTransactions,
            &facts.pending_transactions,
            "as the half queue does not tell topics apart; a commit would deliver to the source after its consumers left",
        );
    }
    if need.source_quiet
        && let Some(w) = c.known("writes to the source", &facts.source_writes)
    {
        if w.written > 0 {
            c.add(
                ReasonCode::SourceStillWritten,
                format!(
                    "{} message(s) written to the source in the last {} although {from} makes it read-only",
                    w.written,
                    secs(w.watched)
                ),
            );
        }
        if w.watched < policy.source_quiet {
            c.add(
                ReasonCode::DwellTooShort,
                format!(
                    "source watched for {} without writes; at least {} needed",
                    secs(w.watched),
                    secs(policy.source_quiet)
                ),
            );
        }
    }
    if need.target_drained {
        c.drained("target", ReasonCode::TargetBacklog, &facts.target_backlog);
        // Found by the zero-loss test: messages delayed or half-sent during DUAL_WRITE sit on
        // the target; back at INITIAL nobody reads the target when they come due.
        c.pending(
            "target",
            "scheduled message(s) not delivered yet",
            ReasonCode::PendingDelayMessages,
            &facts.target_pending_delay,
            "as the schedule queue does not tell topics apart; each would be delivered to the target after its consumers left",
        );
        c.pending(
            "target",
            "transactional half message(s) not resolved yet",
            ReasonCode::PendingTransactions,
            &facts.target_pending_transactions,
            "as the half queue does not tell topics apart; a commit would deliver to the target after its consumers left",
        );
    }
    Readiness::from_reasons(Some(to), c.reasons)
}

/// Readiness for the next stage and for the previous one.
pub fn assess_both(
    from: Stage,
    facts: &TopicFacts,
    policy: &ReadinessPolicy,
) -> (Readiness, Readiness) {
    (
        assess(from, Direction::Advance, facts, policy),
        assess(from, Direction::Rollback, facts, policy),
    )
}

/// Parses a duration as written in flags: `30s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, CoreError> {
    let s = text.trim();
    let bad = || {
        CoreError::unknown(
            "duration",
            text,
            "<n>ms, <n>s, <n>m, <n>h or plain seconds, e.g. 30s",
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DWELL: Duration = Duration::from_secs(60);
    const QUIET: Duration = Duration::from_secs(30);

    fn policy() -> ReadinessPolicy {
        ReadinessPolicy::default()
    }

    fn clear() -> TopicFacts {
        TopicFacts::all_clear(DWELL, QUIET)
    }

    /// Every step that exists: (from, direction, to).
    fn steps() -> Vec<(Stage, Direction, Stage)> {
        let mut out = Vec::new();
        for from in Stage::ALL {
            for dir in [Direction::Advance, Direction::Rollback] {
                if let Some(to) = from.step(dir) {
                    out.push((from, dir, to));
                }
            }
        }
        out
    }

    // ----------------------------------------------------------------- strategies

    fn any_stage() -> impl Strategy<Value = Stage> {
        prop::sample::select(Stage::ALL.to_vec())
    }

    fn any_dir() -> impl Strategy<Value = Direction> {
        prop::sample::select(vec![Direction::Advance, Direction::Rollback])
    }

    fn fact<T: std::fmt::Debug + Clone>(
        known: impl Strategy<Value = T>,
    ) -> impl Strategy<Value = Fact<T>> {
        prop_oneof![
            3 => known.prop_map(Fact::Known),
            1 => "[a-z ]{1,12}".prop_map(Fact::Unknown),
        ]
    }

    fn names(max: usize) -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[A-Za-z]{1,6}", 0..=max)
    }

    fn backlogs() -> impl Strategy<Value = Vec<GroupBacklog>> {
        prop::collection::vec(
            ("[A-Z]{1,4}", fact(0i64..50))
                .prop_map(|(group, messages)| GroupBacklog { group, messages }),
            0..4,
        )
    }

    fn retry_backlogs() -> impl Strategy<Value = Vec<RetryBacklog>> {
        prop::collection::vec(
            ("[A-Z]{1,4}", any::<bool>(), fact(0i64..50)).prop_map(|(group, dlq, messages)| {
                let topic = if dlq {
                    format!("%DLQ%{group}")
                } else {
                    format!("%RETRY%{group}")
                };
                RetryBacklog {
                    group,
                    topic,
                    messages,
                }
            }),
            0..3,
        )
    }

    fn pendings() -> impl Strategy<Value = Vec<BrokerPending>> {
        prop::collection::vec(
            ("broker-[a-c]", fact(0i64..20)).prop_map(|(broker, messages)| BrokerPending {
                broker,
                messages,
                detail: String::new(),
            }),
            0..3,
        )
    }

    fn any_routers() -> impl Strategy<Value = Routers> {
        (0usize..3, 0usize..3).prop_map(|(registered, down)| {
            let down = down.min(registered);
            Routers {
                registered,
                answering: registered - down,
                failures: (0..down).map(|i| format!("router r{i} down")).collect(),
            }
        })
    }

    fn secs_up_to(max: u64) -> impl Strategy<Value = Duration> {
        (0..=max * 1000).prop_map(Duration::from_millis)
    }

    prop_compose! {
        fn any_facts()(
            task_paused in any::<bool>(),
            dwell in prop::option::weighted(0.9, secs_up_to(120)),
            broker_name_collisions in fact(names(2)),
            target_topic_exists in fact(any::<bool>()),
            target_groups_missing in fact(names(2)),
            clients in fact((names(2), names(1)).prop_map(|(unswitched, unproven)| ClientSwitch { unswitched, unproven })),
            groups_not_on_target in fact(names(2)),
            source_backlog in fact(backlogs()),
            target_backlog in fact(backlogs()),
            source_writes in fact((0i64..5, secs_up_to(60)).prop_map(|(written, watched)| SourceWrites { written, watched })),
            (routers, retry_backlog, pending_delay, pending_transactions) in (
                fact(any_routers()), fact(retry_backlogs()), fact(pendings()), fact(pendings())
            ),
            (target_pending_delay, target_pending_transactions) in (
                fact(pendings()), fact(pendings())
            ),
        ) -> TopicFacts {
            TopicFacts {
                task_paused, dwell, broker_name_collisions, target_topic_exists,
                target_groups_missing, routers, clients, groups_not_on_target, source_backlog,
                retry_backlog, pending_delay, pending_transactions, target_backlog,
                target_pending_delay, target_pending_transactions, source_writes,
            }
        }
    }

    /// A sub-list of `v` (each item kept or dropped).
    fn sublist<T: Clone + std::fmt::Debug>(v: Vec<T>) -> impl Strategy<Value = Vec<T>> {
        let n = v.len();
        prop::collection::vec(any::<bool>(), n).prop_map(move |keep| {
            v.iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(x, _)| x.clone())
                .collect()
        })
    }

    /// A fact at least as good as `f`: a better known value, or unknown turned perfect.
    fn improve_fact<T: Clone + std::fmt::Debug + 'static, S: Strategy<Value = T> + 'static>(
        f: Fact<T>,
        better: impl Fn(T) -> S + 'static,
        perfect: T,
    ) -> BoxedStrategy<Fact<T>> {
        match f {
            Fact::Known(v) => prop_oneof![
                Just(Fact::Known(v.clone())),
                better(v).prop_map(Fact::Known)
            ]
            .boxed(),
            Fact::Unknown(why) => {
                prop_oneof![Just(Fact::Unknown(why)), Just(Fact::Known(perfect))].boxed()
            }
        }
    }

    fn improve_backlogs(v: Vec<GroupBacklog>) -> impl Strategy<Value = Vec<GroupBacklog>> {
        v.into_iter()
            .map(|g| {
                let group = g.group.clone();
                improve_fact(g.messages, |n| 0..=n, 0).prop_map(move |messages| GroupBacklog {
                    group: group.clone(),
                    messages,
                })
            })
            .collect::<Vec<_>>()
    }

    fn improve_retry(v: Vec<RetryBacklog>) -> impl Strategy<Value = Vec<RetryBacklog>> {
        v.into_iter()
            .map(|t| {
                let (group, topic) = (t.group.clone(), t.topic.clone());
                improve_fact(t.messages, |n| 0..=n, 0).prop_map(move |messages| RetryBacklog {
                    group: group.clone(),
                    topic: topic.clone(),
                    messages,
                })
            })
            .collect::<Vec<_>>()
    }

    fn improve_pending(v: Vec<BrokerPending>) -> impl Strategy<Value = Vec<BrokerPending>> {
        v.into_iter()
            .map(|b| {
                let (broker, detail) = (b.broker.clone(), b.detail.clone());
                improve_fact(b.messages, |n| 0..=n, 0).prop_map(move |messages| BrokerPending {
                    broker: broker.clone(),
                    messages,
                    detail: detail.clone(),
                })
            })
            .collect::<Vec<_>>()
    }

    /// Routers at least as available: more of them answering, or some registered at all.
    fn improve_routers(r: Routers) -> BoxedStrategy<Routers> {
        if r.registered == 0 {
            prop_oneof![Just(r), (1usize..3).prop_map(Routers::all_answering)].boxed()
        } else {
            (r.answering..=r.registered)
                .prop_map(move |answering| Routers {
                    registered: r.registered,
                    answering,
                    failures: r.failures[..r.registered - answering].to_vec(),
                })
                .boxed()
        }
    }

    /// Facts at least as good as `f` in every respect.
    fn improved(f: TopicFacts) -> impl Strategy<Value = TopicFacts> {
        let paused = if f.task_paused {
            any::<bool>().boxed()
        } else {
            Just(false).boxed()
        };
        let dwell = match f.dwell {
            Some(d) => (d.as_millis() as u64..=200_000)
                .prop_map(|ms| Some(Duration::from_millis(ms)))
                .boxed(),
            None => prop::option::of(secs_up_to(200)).boxed(),
        };
        let topic = match f.target_topic_exists.clone() {
            Fact::Known(true) => Just(Fact::Known(true)).boxed(),
            other => prop_oneof![Just(other), Just(Fact::Known(true))].boxed(),
        };
        let more = (
            improve_fact(f.routers, improve_routers, Routers::all_answering(1)),
            improve_fact(f.retry_backlog, improve_retry, vec![]),
            improve_fact(f.pending_delay, improve_pending, vec![]),
            improve_fact(f.pending_transactions, improve_pending, vec![]),
            improve_fact(f.target_pending_delay, improve_pending, vec![]),
            improve_fact(f.target_pending_transactions, improve_pending, vec![]),
        );
        (
            paused,
            dwell,
            improve_fact(f.broker_name_collisions, sublist, vec![]),
            topic,
            improve_fact(f.target_groups_missing, sublist, vec![]),
            improve_fact(
                f.clients,
                |c: ClientSwitch| {
                    (sublist(c.unswitched), sublist(c.unproven)).prop_map(
                        |(unswitched, unproven)| ClientSwitch {
                            unswitched,
                            unproven,
                        },
                    )
                },
                ClientSwitch::default(),
            ),
            improve_fact(f.groups_not_on_target, sublist, vec![]),
            improve_fact(f.source_backlog, improve_backlogs, vec![]),
            improve_fact(f.target_backlog, improve_backlogs, vec![]),
            improve_fact(
                f.source_writes,
                |w: SourceWrites| {
                    (0..=w.written, w.watched.as_millis() as u64..=100_000).prop_map(
                        |(written, ms)| SourceWrites {
                            written,
                            watched: Duration::from_millis(ms),
                        },
                    )
                },
                SourceWrites {
                    written: 0,
                    watched: QUIET,
                },
            ),
            more,
        )
            .prop_map(
                |(
                    task_paused,
                    dwell,
                    broker_name_collisions,
                    target_topic_exists,
                    target_groups_missing,
                    clients,
                    groups_not_on_target,
                    source_backlog,
                    target_backlog,
                    source_writes,
                    (
                        routers,
                        retry_backlog,
                        pending_delay,
                        pending_transactions,
                        target_pending_delay,
                        target_pending_transactions,
                    ),
                )| TopicFacts {
                    task_paused,
                    dwell,
                    broker_name_collisions,
                    target_topic_exists,
                    target_groups_missing,
                    routers,
                    clients,
                    groups_not_on_target,
                    source_backlog,
                    retry_backlog,
                    pending_delay,
                    pending_transactions,
                    target_backlog,
                    target_pending_delay,
                    target_pending_transactions,
                    source_writes,
                },
            )
    }

    /// Whether any fact the step needs is unknown (in whole or for one group).
    fn needed_unknown(from: Stage, to: Stage, f: &TopicFacts) -> bool {
        let n = needs(from, to);
        let backlog_unknown = |b: &Fact<Vec<GroupBacklog>>| match b {
            Fact::Unknown(_) => true,
            Fact::Known(gs) => gs.iter().any(|g| !g.messages.is_known()),
        };
        let retry_unknown = match &f.retry_backlog {
            Fact::Unknown(_) => true,
            Fact::Known(ts) => ts.iter().any(|t| !t.messages.is_known()),
        };
        let pending_unknown = |p: &Fact<Vec<BrokerPending>>| match p {
            Fact::Unknown(_) => true,
            Fact::Known(bs) => bs.iter().any(|b| !b.messages.is_known()),
        };
        (n.no_collision && !f.broker_name_collisions.is_known())
            || (n.target_topic && !f.target_topic_exists.is_known())
            || (n.target_groups && !f.target_groups_missing.is_known())
            || (n.clients_switched && !f.clients.is_known())
            || (n.clients_switched && !f.routers.is_known())
            || (n.attached_to_target && !f.groups_not_on_target.is_known())
            || (n.source_drained && backlog_unknown(&f.source_backlog))
            || (n.source_drained && retry_unknown)
            || (n.source_drained && pending_unknown(&f.pending_delay))
            || (n.source_drained && pending_unknown(&f.pending_transactions))
            || (n.source_quiet && !f.source_writes.is_known())
            || (n.target_drained && backlog_unknown(&f.target_backlog))
            || (n.target_drained && pending_unknown(&f.target_pending_delay))
            || (n.target_drained && pending_unknown(&f.target_pending_transactions))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Ready exactly when there is no reason; a step past either end is never ready.
        #[test]
        fn ready_iff_no_reasons(from in any_stage(), dir in any_dir(), f in any_facts()) {
            let r = assess(from, dir, &f, &policy());
            prop_assert_eq!(r.ready, r.reasons.is_empty());
            prop_assert_eq!(r.to, from.step(dir));
            if r.to.is_none() {
                prop_assert!(!r.ready);
                prop_assert_eq!(r.codes(), BTreeSet::from([ReasonCode::NoSuchStage]));
            }
        }

        /// Anything unknown that a step needs makes it not ready, saying so.
        #[test]
        fn unknown_facts_never_yield_ready(from in any_stage(), dir in any_dir(), f in any_facts()) {
            let r = assess(from, dir, &f, &policy());
            if let Some(to) = r.to && needed_unknown(from, to, &f) {
                prop_assert!(!r.ready);
                prop_assert!(r.codes().contains(&ReasonCode::ClusterUnreachable), "{:?}", r);
            }
            if r.ready {
                prop_assert!(!needed_unknown(from, r.to.unwrap(), &f));
            }
        }

        /// Improving any fact never adds a reason code.
        #[test]
        fn monotonic(
            from in any_stage(),
            dir in any_dir(),
            (f, g) in any_facts().prop_flat_map(|f| (Just(f.clone()), improved(f))),
        ) {
            let before = assess(from, dir, &f, &policy()).codes();
            let after = assess(from, dir, &g, &policy()).codes();
            prop_assert!(after.is_subset(&before), "before {before:?}, after {after:?}\n{f:?}\n{g:?}");
        }

        /// A paused task or a short dwell blocks every step.
        #[test]
        fn pause_and_dwell_block_every_step(from in any_stage(), dir in any_dir(), d in secs_up_to(59)) {
            let mut f = clear();
            f.task_paused = true;
            let r = assess(from, dir, &f, &policy());
            prop_assert!(r.codes().contains(&ReasonCode::TaskPaused) || r.to.is_none());
            let mut f = clear();
            f.dwell = Some(d);
            let r = assess(from, dir, &f, &policy());
            prop_assert!(r.codes().contains(&ReasonCode::DwellTooShort) || r.to.is_none());
        }
    }

    /// Each blocking fact, set bad on otherwise clear facts, with the code it must yield.
    /// (name, which steps need it, facts with it bad, the code it must yield).
    type Blocking = (&'static str, fn(&Needs) -> bool, TopicFacts, ReasonCode);

    fn blocking_facts() -> Vec<Blocking> {
        let with = |edit: fn(&mut TopicFacts)| {
            let mut f = clear();
            edit(&mut f);
            f
        };
        vec![
            (
                "collision",
                |n| n.no_collision,
                with(|f| f.broker_name_collisions = Fact::Known(vec!["broker-a".into()])),
                ReasonCode::BrokerNameCollision,
            ),
            (
                "collision unknown",
                |n| n.no_collision,
                with(|f| f.broker_name_collisions = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "topic",
                |n| n.target_topic,
                with(|f| f.target_topic_exists = Fact::Known(false)),
                ReasonCode::TopicNotImported,
            ),
            (
                "topic unknown",
                |n| n.target_topic,
                with(|f| f.target_topic_exists = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "groups",
                |n| n.target_groups,
                with(|f| f.target_groups_missing = Fact::Known(vec!["G".into()])),
                ReasonCode::GroupNotImported,
            ),
            (
                "unswitched",
                |n| n.clients_switched,
                with(|f| {
                    f.clients = Fact::Known(ClientSwitch {
                        unswitched: vec!["c".into()],
                        unproven: vec![],
                    })
                }),
                ReasonCode::ClientsNotSwitched,
            ),
            (
                "unproven",
                |n| n.clients_switched,
                with(|f| {
                    f.clients = Fact::Known(ClientSwitch {
                        unswitched: vec![],
                        unproven: vec!["producers on broker-a cannot be listed".into()],
                    })
                }),
                ReasonCode::ClientsNotSwitched,
            ),
            (
                "no router",
                |n| n.clients_switched,
                with(|f| f.routers = Fact::Known(Routers::default())),
                ReasonCode::RouterUnavailable,
            ),
            (
                "router down",
                |n| n.clients_switched,
                with(|f| {
                    f.routers = Fact::Known(Routers {
                        registered: 2,
                        answering: 1,
                        failures: vec!["router r2 did not answer".into()],
                    })
                }),
                ReasonCode::RouterUnavailable,
            ),
            (
                "routers unknown",
                |n| n.clients_switched,
                with(|f| f.routers = Fact::Unknown("store down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "clients unknown",
                |n| n.clients_switched,
                with(|f| f.clients = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "not attached",
                |n| n.attached_to_target,
                with(|f| f.groups_not_on_target = Fact::Known(vec!["G".into()])),
                ReasonCode::ConsumersNotOnTarget,
            ),
            (
                "source backlog",
                |n| n.source_drained,
                with(|f| {
                    f.source_backlog = Fact::Known(vec![GroupBacklog {
                        group: "G".into(),
                        messages: Fact::Known(3),
                    }])
                }),
                ReasonCode::SourceBacklog,
            ),
            (
                "source group unknown",
                |n| n.source_drained,
                with(|f| {
                    f.source_backlog = Fact::Known(vec![GroupBacklog {
                        group: "G".into(),
                        messages: Fact::Unknown("down".into()),
                    }])
                }),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "source unknown",
                |n| n.source_drained,
                with(|f| f.source_backlog = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "retry backlog",
                |n| n.source_drained,
                with(|f| {
                    f.retry_backlog = Fact::Known(vec![RetryBacklog {
                        group: "G".into(),
                        topic: "%RETRY%G".into(),
                        messages: Fact::Known(2),
                    }])
                }),
                ReasonCode::RetryOrDlqBacklog,
            ),
            (
                "dlq backlog",
                |n| n.source_drained,
                with(|f| {
                    f.retry_backlog = Fact::Known(vec![RetryBacklog {
                        group: "G".into(),
                        topic: "%DLQ%G".into(),
                        messages: Fact::Known(1),
                    }])
                }),
                ReasonCode::RetryOrDlqBacklog,
            ),
            (
                "retry unknown",
                |n| n.source_drained,
                with(|f| {
                    f.retry_backlog = Fact::Known(vec![RetryBacklog {
                        group: "G".into(),
                        topic: "%RETRY%G".into(),
                        messages: Fact::Unknown("down".into()),
                    }])
                }),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "delay pending",
                |n| n.source_drained,
                with(|f| {
                    f.pending_delay = Fact::Known(vec![BrokerPending {
                        broker: "broker-a".into(),
                        messages: Fact::Known(4),
                        detail: "delay level 18: 4".into(),
                    }])
                }),
                ReasonCode::PendingDelayMessages,
            ),
            (
                "delay unknown",
                |n| n.source_drained,
                with(|f| {
                    f.pending_delay = Fact::Known(vec![BrokerPending {
                        broker: "broker-a".into(),
                        messages: Fact::Unknown("code 45 not supported".into()),
                        detail: String::new(),
                    }])
                }),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "transactions pending",
                |n| n.source_drained,
                with(|f| {
                    f.pending_transactions = Fact::Known(vec![BrokerPending {
                        broker: "broker-a".into(),
                        messages: Fact::Known(1),
                        detail: String::new(),
                    }])
                }),
                ReasonCode::PendingTransactions,
            ),
            (
                "transactions unknown",
                |n| n.source_drained,
                with(|f| f.pending_transactions = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "writes",
                |n| n.source_quiet,
                with(|f| {
                    f.source_writes = Fact::Known(SourceWrites {
                        written: 1,
                        watched: QUIET,
                    })
                }),
                ReasonCode::SourceStillWritten,
            ),
            (
                "short watch",
                |n| n.source_quiet,
                with(|f| {
                    f.source_writes = Fact::Known(SourceWrites {
                        written: 0,
                        watched: Duration::from_secs(5),
                    })
                }),
                ReasonCode::DwellTooShort,
            ),
            (
                "writes unknown",
                |n| n.source_quiet,
                with(|f| f.source_writes = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "target backlog",
                |n| n.target_drained,
                with(|f| {
                    f.target_backlog = Fact::Known(vec![GroupBacklog {
                        group: "G".into(),
                        messages: Fact::Known(1),
                    }])
                }),
                ReasonCode::TargetBacklog,
            ),
            (
                "target unknown",
                |n| n.target_drained,
                with(|f| f.target_backlog = Fact::Unknown("down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "target delay pending",
                |n| n.target_drained,
                with(|f| {
                    f.target_pending_delay = Fact::Known(vec![BrokerPending {
                        broker: "broker-b".into(),
                        messages: Fact::Known(103),
                        detail: "delay level 5: 103".into(),
                    }])
                }),
                ReasonCode::PendingDelayMessages,
            ),
            (
                "target delay unknown",
                |n| n.target_drained,
                with(|f| f.target_pending_delay = Fact::Unknown("broker-b down".into())),
                ReasonCode::ClusterUnreachable,
            ),
            (
                "target transactions pending",
                |n| n.target_drained,
                with(|f| {
                    f.target_pending_transactions = Fact::Known(vec![BrokerPending {
                        broker: "broker-b".into(),
                        messages: Fact::Known(2),
                        detail: String::new(),
                    }])
                }),
                ReasonCode::PendingTransactions,
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A blocking fact yields its code whatever else holds.
        #[test]
        fn every_blocking_fact_yields_its_code(from in any_stage(), dir in any_dir(), f in any_facts()) {
            let Some(to) = from.step(dir) else { return Ok(()) };
            for (name, needed, bad, code) in blocking_facts() {
                if !needed(&needs(from, to)) {
                    continue;
                }
                // Carry only the bad fact over onto the random ones.
                let mut facts = f.clone();
                let clear = clear();
                if bad.broker_name_collisions != clear.broker_name_collisions { facts.broker_name_collisions = bad.broker_name_collisions.clone(); }
                if bad.target_topic_exists != clear.target_topic_exists { facts.target_topic_exists = bad.target_topic_exists.clone(); }
                if bad.target_groups_missing != clear.target_groups_missing { facts.target_groups_missing = bad.target_groups_missing.clone(); }
                if bad.clients != clear.clients { facts.clients = bad.clients.clone(); }
                if bad.routers != clear.routers { facts.routers = bad.routers.clone(); }
                if bad.retry_backlog != clear.retry_backlog { facts.retry_backlog = bad.retry_backlog.clone(); }
                if bad.pending_delay != clear.pending_delay { facts.pending_delay = bad.pending_delay.clone(); }
                if bad.pending_transactions != clear.pending_transactions { facts.pending_transactions = bad.pending_transactions.clone(); }
                if bad.groups_not_on_target != clear.groups_not_on_target { facts.groups_not_on_target = bad.groups_not_on_target.clone(); }
                if bad.source_backlog != clear.source_backlog { facts.source_backlog = bad.source_backlog.clone(); }
                if bad.target_backlog != clear.target_backlog { facts.target_backlog = bad.target_backlog.clone(); }
                if bad.target_pending_delay != clear.target_pending_delay { facts.target_pending_delay = bad.target_pending_delay.clone(); }
                if bad.target_pending_transactions != clear.target_pending_transactions { facts.target_pending_transactions = bad.target_pending_transactions.clone(); }
                if bad.source_writes != clear.source_writes { facts.source_writes = bad.source_writes.clone(); }
                let r = assess(from, dir, &facts, &policy());
                prop_assert!(r.codes().contains(&code), "{name}: {from} -> {to}: {r:?}");
            }
        }
    }

    #[test]
    fn every_blocking_fact_yields_its_code_and_only_where_needed() {
        for (from, dir, to) in steps() {
            let clear_r = assess(from, dir, &clear(), &policy());
            assert!(
                clear_r.ready,
                "{from} -> {to} with clear facts: {clear_r:?}"
            );
            let n = needs(from, to);
            for (name, needed, facts, code) in blocking_facts() {
                let r = assess(from, dir, &facts, &policy());
                if needed(&n) {
                    assert!(!r.ready, "{name}: {from} -> {to} must not be ready");
                    assert!(r.codes().contains(&code), "{name}: {from} -> {to}: {r:?}");
                } else {
                    assert!(r.ready, "{name} must not block {from} -> {to}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn table_matches_the_documented_rules() {
        use Stage::*;
        let fwd = needs(Initial, DualRead);
        assert!(fwd.target_topic && fwd.target_groups && fwd.clients_switched && fwd.no_collision);
        assert!(!fwd.attached_to_target && !fwd.source_drained);
        assert!(needs(DualRead, DualWrite).attached_to_target);
        assert_eq!(needs(DualRead, DualWrite), needs(DualWrite, Switching));
        let done = needs(Switching, Done);
        assert!(done.source_drained && done.source_quiet && done.attached_to_target);
        assert!(!done.target_drained);
        assert_eq!(
            needs(DualRead, Initial),
            Needs {
                target_drained: true,
                ..Needs::default()
            }
        );
        for (from, to) in [
            (DualWrite, DualRead),
            (Switching, DualWrite),
            (Done, Switching),
        ] {
            assert_eq!(needs(from, to), Needs::default(), "{from} -> {to}");
        }
    }

    #[test]
    fn details_say_what_was_measured() {
        let mut f = clear();
        f.source_backlog = Fact::Known(vec![
            GroupBacklog {
                group: "G1".into(),
                messages: Fact::Known(42),
            },
            GroupBacklog {
                group: "G2".into(),
                messages: Fact::Known(0),
            },
        ]);
        f.dwell = Some(Duration::from_millis(12_500));
        let r = assess(Stage::Switching, Direction::Advance, &f, &policy());
        assert_eq!(r.to, Some(Stage::Done));
        assert_eq!(
            r.codes(),
            BTreeSet::from([ReasonCode::SourceBacklog, ReasonCode::DwellTooShort])
        );
        let s = r.summary();
        assert!(
            s.contains("SOURCE_BACKLOG: source backlog 42 messages in group G1"),
            "{s}"
        );
        assert!(!s.contains("G2"), "{s}");
        assert!(s.contains("in SWITCHING for 12.5 s; at least 60 s"), "{s}");

        let r = assess(Stage::Done, Direction::Advance, &clear(), &policy());
        assert_eq!(r.to, None);
        assert!(r.summary().contains("DONE is the last stage"));
        let r = assess(Stage::Initial, Direction::Rollback, &clear(), &policy());
        assert!(r.summary().contains("INITIAL is the first stage"));
    }

    /// Each reason added with the 12+ codes, with the figures its detail must carry.
    #[test]
    fn new_reasons_carry_their_figures() {
        let at = |from: Stage, f: &TopicFacts| {
            let r = assess(from, Direction::Advance, f, &policy());
            (r.codes(), r.summary())
        };

        // ROUTER_UNAVAILABLE: none registered, then one of two answering.
        let mut f = clear();
        f.routers = Fact::Known(Routers::default());
        let (codes, s) = at(Stage::Initial, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::RouterUnavailable]),
            "{s}"
        );
        assert!(s.contains("0 registered, 0 answering"), "{s}");
        f.routers = Fact::Known(Routers {
            registered: 2,
            answering: 1,
            failures: vec!["router r2 at 10.0.0.2:7073 did not answer within 3s".into()],
        });
        let (codes, s) = at(Stage::DualWrite, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::RouterUnavailable]),
            "{s}"
        );
        assert!(
            s.contains("1 of 2 registered router(s) answering") && s.contains("r2 at 10.0.0.2"),
            "{s}"
        );
        // Rolling back does not need routers.
        let r = assess(Stage::DualRead, Direction::Rollback, &f, &policy());
        assert!(r.ready, "{r:?}");

        // CONSUMERS_NOT_ON_TARGET, no longer folded into CLIENTS_NOT_SWITCHED.
        let mut f = clear();
        f.groups_not_on_target = Fact::Known(vec!["G1".into(), "G2".into()]);
        let (codes, s) = at(Stage::DualRead, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::ConsumersNotOnTarget]),
            "{s}"
        );
        assert!(
            s.contains("2 group(s) consuming on the source") && s.contains("G1, G2"),
            "{s}"
        );
        assert!(
            at(Stage::Initial, &f).0.is_empty(),
            "not needed before DUAL_WRITE"
        );

        // RETRY_OR_DLQ_BACKLOG, apart from SOURCE_BACKLOG.
        let mut f = clear();
        f.retry_backlog = Fact::Known(vec![
            RetryBacklog {
                group: "G".into(),
                topic: "%RETRY%G".into(),
                messages: Fact::Known(7),
            },
            RetryBacklog {
                group: "G".into(),
                topic: "%DLQ%G".into(),
                messages: Fact::Known(2),
            },
            RetryBacklog {
                group: "H".into(),
                topic: "%RETRY%H".into(),
                messages: Fact::Known(0),
            },
        ]);
        let (codes, s) = at(Stage::Switching, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::RetryOrDlqBacklog]),
            "{s}"
        );
        assert!(s.contains("source %RETRY%G holds 7 retry messages"), "{s}");
        assert!(
            s.contains("source %DLQ%G holds 2 dead-letter messages"),
            "{s}"
        );
        assert!(!s.contains("%RETRY%H"), "{s}");
        assert!(
            at(Stage::DualWrite, &f).0.is_empty(),
            "only SWITCHING -> DONE"
        );

        // PENDING_DELAY_MESSAGES: total and per broker, said to be cluster-wide.
        let mut f = clear();
        f.pending_delay = Fact::Known(vec![
            BrokerPending {
                broker: "broker-a (10.0.0.1:10911)".into(),
                messages: Fact::Known(3),
                detail: "delay level 18: 3".into(),
            },
            BrokerPending {
                broker: "broker-b (10.0.0.2:10911)".into(),
                messages: Fact::Known(1),
                detail: "delay level 2: 1".into(),
            },
            BrokerPending {
                broker: "broker-c (10.0.0.3:10911)".into(),
                messages: Fact::Known(0),
                detail: String::new(),
            },
        ]);
        let (codes, s) = at(Stage::Switching, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::PendingDelayMessages]),
            "{s}"
        );
        assert!(
            s.contains("4 scheduled message(s) not delivered yet on the source")
                && s.contains("broker-a (10.0.0.1:10911): 3 (delay level 18: 3)")
                && s.contains("broker-b (10.0.0.2:10911): 1")
                && !s.contains("broker-c")
                && s.contains("for all topics"),
            "{s}"
        );
        // One broker unreadable: cannot prove, never zero.
        f.pending_delay = Fact::Known(vec![BrokerPending {
            broker: "broker-a (10.0.0.1:10911)".into(),
            messages: Fact::Unknown("GET_ALL_DELAY_OFFSET: REQUEST_CODE_NOT_SUPPORTED".into()),
            detail: String::new(),
        }]);
        let (codes, s) = at(Stage::Switching, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::ClusterUnreachable]),
            "{s}"
        );
        assert!(s.contains("broker-a (10.0.0.1:10911) unknown"), "{s}");

        // PENDING_TRANSACTIONS.
        let mut f = clear();
        f.pending_transactions = Fact::Known(vec![BrokerPending {
            broker: "broker-a (10.0.0.1:10911)".into(),
            messages: Fact::Known(5),
            detail: String::new(),
        }]);
        let (codes, s) = at(Stage::Switching, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::PendingTransactions]),
            "{s}"
        );
        assert!(
            s.contains("5 transactional half message(s) not resolved yet on the source")
                && s.contains("broker-a (10.0.0.1:10911): 5"),
            "{s}"
        );
        f.pending_transactions = Fact::Unknown("broker-a unreachable".into());
        let (codes, _) = at(Stage::Switching, &f);
        assert_eq!(codes, BTreeSet::from([ReasonCode::ClusterUnreachable]));

        // Renamed codes.
        let mut f = clear();
        f.target_topic_exists = Fact::Known(false);
        f.target_groups_missing = Fact::Known(vec!["G".into()]);
        let (codes, _) = at(Stage::Initial, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::TopicNotImported, ReasonCode::GroupNotImported])
        );
        let mut f = clear();
        f.source_writes = Fact::Known(SourceWrites {
            written: 3,
            watched: QUIET,
        });
        let (codes, s) = at(Stage::Switching, &f);
        assert_eq!(
            codes,
            BTreeSet::from([ReasonCode::SourceStillWritten]),
            "{s}"
        );
        assert!(s.contains("3 message(s) written to the source"), "{s}");
    }

    #[test]
    fn long_lists_are_cut() {
        let mut f = clear();
        let many: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        f.clients = Fact::Known(ClientSwitch {
            unswitched: many,
            unproven: vec![],
        });
        let r = assess(Stage::Initial, Direction::Advance, &f, &policy());
        let s = r.summary();
        assert!(
            s.contains("25 client(s)") && s.contains("c19 and 5 more") && !s.contains("c20"),
            "{s}"
        );
    }

    #[test]
    fn policy_follows_the_poll_interval() {
        let p = ReadinessPolicy::for_route_poll(Duration::from_secs(10));
        assert_eq!(p.min_dwell, Duration::from_secs(20));
        assert_eq!(p.source_quiet, Duration::from_secs(10));
        assert_eq!(
            ReadinessPolicy::default().min_dwell,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn readiness_round_trips_as_json() {
        let r = assess(
            Stage::Initial,
            Direction::Advance,
            &TopicFacts {
                target_topic_exists: Fact::Known(false),
                ..clear()
            },
            &policy(),
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["to"], "DUAL_READ");
        assert_eq!(json["reasons"][0]["code"], "TOPIC_NOT_IMPORTED");
        assert_eq!(serde_json::from_value::<Readiness>(json).unwrap(), r);
        // Records written before the 12+ codes still read, as their replacements.
        for (old, new) in [
            ("SOURCE_WRITES_SEEN", ReasonCode::SourceStillWritten),
            ("TARGET_TOPIC_MISSING", ReasonCode::TopicNotImported),
            ("TARGET_GROUP_MISSING", ReasonCode::GroupNotImported),
        ] {
            assert_eq!(
                serde_json::from_value::<ReasonCode>(serde_json::json!(old)).unwrap(),
                new
            );
        }
        for code in ReasonCode::ALL {
            assert_eq!(code.as_str().parse::<ReasonCode>().unwrap(), code);
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 parsecs",
            "99999999999999999999h",
        ] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }
}
