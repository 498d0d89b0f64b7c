//! Namespaces and the naming rules for topics, groups and namespaces.
//!
//! Two jobs:
//! - **Namespaces.** RocketMQ clients wrap names as `ns%Name` (and `%RETRY%ns%Group`,
//!   `%DLQ%ns%Group`) before they reach any server; the servers only ever see full names.
//!   [`parse_namespaced`] and [`wrap_namespace`] follow the Java `NamespaceUtil` exactly
//!   (remoting/.../protocol/NamespaceUtil.java), so Ferry splits names the way clients built them.
//! - **Validation and classification.** [`validate_topic`], [`validate_group`] and
//!   [`validate_namespace`] follow Apache RocketMQ's `TopicValidator` and client `Validators`
//!   (charset `^[%|a-zA-Z0-9_-]+$`, topic ≤ 127, group ≤ 255) and name the broken rule with a
//!   stable id ([`NameRule`]). [`classify_topic`] tells user topics from retry, DLQ and system
//!   topics, which the scanner keeps apart: those are created by brokers, per cluster, and
//!   must never be imported as if they were the user's.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Separator between namespace and name (`NamespaceUtil.NAMESPACE_SEPARATOR`).
pub const NAMESPACE_SEPARATOR: char = '%';
/// Prefix of a consumer group's retry topic (`MixAll.RETRY_GROUP_TOPIC_PREFIX`).
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic (`MixAll.DLQ_GROUP_TOPIC_PREFIX`).
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Prefix of light message queues (`MixAll.LMQ_PREFIX`), created by brokers on dispatch.
pub const LMQ_PREFIX: &str = "%LMQ%";

/// Longest topic name (`TopicValidator.TOPIC_MAX_LENGTH`, all released versions).
pub const TOPIC_MAX_LEN: usize = 127;
/// Longest group name (client `Validators.CHARACTER_MAX_LENGTH` in every release up to 5.3.3).
/// Apache develop lowers this to 120 after 5.3.3 (pop retry topics `%RETRY%group_topic` must
/// fit 255); a newer target may refuse 121..=255 and the import then reports its error.
pub const GROUP_MAX_LEN: usize = 255;
/// Longest namespace. Ferry's choice (RocketMQ has no rule): fits instance ids such as
/// `MQ_INST_xxx` with room to spare, and leaves most of [`TOPIC_MAX_LEN`] to the topic itself.
pub const NAMESPACE_MAX_LEN: usize = 64;

/// Namespace given to names without `%` by "cluster migration" import tasks (PRODUCT.md §2).
pub const IMPORT_DEFAULT_NAMESPACE: &str = "default";
/// Namespace given to names without `%` on a 4.x target in a seamless migration (PRODUCT.md §4).
pub const V4_TARGET_DEFAULT_NAMESPACE: &str = "Default";

/// Characters allowed in topic and group names: the Java regex `^[%|a-zA-Z0-9_-]+$`.
pub fn is_valid_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '%' | '|' | '_' | '-')
}

/// Characters allowed in a namespace: the name charset without `%`, because `%` is the
/// separator and a namespace containing it could not be split back out.
pub fn is_valid_namespace_char(ch: char) -> bool {
    ch != NAMESPACE_SEPARATOR && is_valid_name_char(ch)
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

/// The retry/DLQ prefix a full name carried in front of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourcePrefix {
    /// No prefix: a plain topic or group.
    #[default]
    Plain,
    /// `%RETRY%`: a consumer group's retry topic.
    Retry,
    /// `%DLQ%`: a consumer group's dead-letter topic.
    Dlq,
}

impl ResourcePrefix {
    /// The prefix text, empty for [`ResourcePrefix::Plain`].
    pub fn as_str(self) -> &'static str {
        match self {
            ResourcePrefix::Plain => "",
            ResourcePrefix::Retry => RETRY_PREFIX,
            ResourcePrefix::Dlq => DLQ_PREFIX,
        }
    }

    /// Splits the prefix off `full` (Java `withOutRetryAndDLQ`).
    fn split(full: &str) -> (ResourcePrefix, &str) {
        if let Some(rest) = full.strip_prefix(RETRY_PREFIX) {
            (ResourcePrefix::Retry, rest)
        } else if let Some(rest) = full.strip_prefix(DLQ_PREFIX) {
            (ResourcePrefix::Dlq, rest)
        } else {
            (ResourcePrefix::Plain, full)
        }
    }
}

/// A full RocketMQ name split into retry/DLQ prefix, namespace and bare name.
///
/// `%RETRY%ns%G` parses to `{ prefix: Retry, namespace: Some("ns"), name: "G" }`;
/// [`NamespacedName::resource`] gives `%RETRY%G` (Java `withoutNamespace`) and
/// [`NamespacedName::full`] gives back `%RETRY%ns%G`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NamespacedName {
    /// The namespace, if the name carried one.
    pub namespace: Option<String>,
    /// The name without prefix and namespace.
    pub name: String,
    /// Which retry/DLQ prefix stood in front.
    pub prefix: ResourcePrefix,
}

impl NamespacedName {
    /// The name without its namespace but with its prefix, e.g. `%RETRY%G`
    /// (Java `NamespaceUtil.withoutNamespace`).
    pub fn resource(&self) -> String {
        format!("{}{}", self.prefix.as_str(), self.name)
    }

    /// The full name as clients and servers see it, e.g. `%RETRY%ns%G`.
    /// For any `s`, `parse_namespaced(s).full() == s`.
    pub fn full(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(
                "{}{ns}{NAMESPACE_SEPARATOR}{}",
                self.prefix.as_str(),
                self.name
            ),
            None => self.resource(),
        }
    }
}

/// Splits a full name the way Java's `NamespaceUtil` does: strip a `%RETRY%`/`%DLQ%` prefix,
/// then the part before the first `%` is the namespace if it is non-empty. System resources
/// (see [`is_java_system_resource`]) never have a namespace.
pub fn parse_namespaced(full: &str) -> NamespacedName {
    if full.is_empty() || is_java_system_resource(full) {
        return NamespacedName {
            namespace: None,
            name: full.to_string(),
            prefix: ResourcePrefix::Plain,
        };
    }
    let (prefix, rest) = ResourcePrefix::split(full);
    // `index > 0` in Java: a leading `%` means "no namespace", not an empty one.
    match rest.find(NAMESPACE_SEPARATOR) {
        Some(i) if i > 0 => NamespacedName {
            namespace: Some(rest[..i].to_string()),
            name: rest[i + 1..].to_string(),
            prefix,
        },
        _ => NamespacedName {
            namespace: None,
            name: rest.to_string(),
            prefix,
        },
    }
}

/// Like [`parse_namespaced`], but a name without a namespace gets `default` — the rule of
/// "cluster migration" import tasks ([`IMPORT_DEFAULT_NAMESPACE`]) and of 4.x targets
/// ([`V4_TARGET_DEFAULT_NAMESPACE`]). The result's `namespace` is always `Some`.
/// Callers filter out system resources first ([`classify_topic`], [`is_system_group`]).
pub fn namespace_or_default(full: &str, default: &str) -> NamespacedName {
    let mut parsed = parse_namespaced(full);
    if parsed.namespace.is_none() {
        parsed.namespace = Some(default.to_string());
    }
    parsed
}

/// Java `NamespaceUtil.wrapNamespace`: `[%RETRY%|%DLQ%] + ns + "%" + name`. An empty namespace
/// or name, a system resource, or a name already in `namespace` is returned unchanged, so
/// wrapping twice is the same as wrapping once.
pub fn wrap_namespace(namespace: &str, name: &str) -> String {
    if namespace.is_empty() || name.is_empty() || is_java_system_resource(name) {
        return name.to_string();
    }
    let (prefix, rest) = ResourcePrefix::split(name);
    if rest
        .strip_prefix(namespace)
        .is_some_and(|r| r.starts_with(NAMESPACE_SEPARATOR))
    {
        return name.to_string();
    }
    format!("{}{namespace}{NAMESPACE_SEPARATOR}{rest}", prefix.as_str())
}

/// Java `NamespaceUtil.isSystemResource`: the static `TopicValidator` system topic set, the
/// `rmq_sys_` prefix, or a `CID_RMQ_SYS_` group. Kept exactly as Java has it (narrower than
/// [`classify_topic`]) because it decides how *clients* wrap names, and Ferry must agree.
pub fn is_java_system_resource(name: &str) -> bool {
    is_named_system_topic(name)
        || name.starts_with(SYSTEM_TOPIC_PREFIX)
        || name.starts_with(SYSTEM_GROUP_PREFIX)
}

// ---------------------------------------------------------------------------------------------
// System names
// ---------------------------------------------------------------------------------------------

/// `TopicValidator.SYSTEM_TOPIC_PREFIX`.
const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// Ferry's stricter upper-case twin: every `RMQ_SYS_` topic RocketMQ defines is internal.
const UPPER_SYSTEM_TOPIC_PREFIX: &str = "RMQ_SYS_";
/// `MixAll.CID_RMQ_SYS_PREFIX`.
const SYSTEM_GROUP_PREFIX: &str = "CID_RMQ_SYS_";
/// `MixAll.REPLY_TOPIC_POSTFIX`: each cluster has `<cluster>_REPLY_TOPIC`.
const REPLY_TOPIC_SUFFIX: &str = "_REPLY_TOPIC";

/// The static `TopicValidator.SYSTEM_TOPIC_SET` (Apache develop, 2025-09), each with why it is
/// a system topic: brokers create and use them themselves.
const SYSTEM_TOPIC_REASONS: [(&str, &str); 10] = [
    (
        "TBW102",
        "auto-create template: producers look up its route to auto-create topics",
    ),
    (
        "SCHEDULE_TOPIC_XXXX",
        "holds delayed messages until they are due",
    ),
    ("BenchmarkTest", "created by brokers for the benchmark tool"),
    (
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "holds half (prepared) transactional messages",
    ),
    ("RMQ_SYS_TRACE_TOPIC", "the default message trace topic"),
    (
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "records commits and rollbacks of half messages",
    ),
    (
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "holds half messages that ran out of transaction checks",
    ),
    ("SELF_TEST_TOPIC", "used by brokers to test themselves"),
    (
        "OFFSET_MOVED_EVENT",
        "brokers publish consumer offset corrections on it",
    ),
    (
        "CHECKPOINT_TOPIC",
        "5.x RocksDB consumer offset checkpoints",
    ),
];

fn is_named_system_topic(topic: &str) -> bool {
    SYSTEM_TOPIC_REASONS.iter().any(|(t, _)| *t == topic)
}

/// Predefined groups (`MixAll.PREDEFINE_GROUP_SET`): brokers, tools and the client library use
/// them internally, and brokers create several of them at start-up.
const SYSTEM_GROUPS: [&str; 14] = [
    "DEFAULT_CONSUMER",
    "DEFAULT_PRODUCER",
    "TOOLS_CONSUMER",
    "SCHEDULE_CONSUMER",
    "FILTERSRV_CONSUMER",
    "__MONITOR_CONSUMER",
    "CLIENT_INNER_PRODUCER",
    "SELF_TEST_P_GROUP",
    "SELF_TEST_C_GROUP",
    "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PERMISSION",
    "CID_ONSAPI_OWNER",
    "CID_ONSAPI_PULL",
    "CID_RMQ_SYS_TRANS",
];

/// Where a topic belongs. Only [`TopicClass::User`] topics are migrated as the user's own;
/// the others are created by each cluster's brokers on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TopicClass {
    /// A topic the user created.
    User,
    /// `%RETRY%<group>` (and 5.x pop retry topics): created per cluster on consumer send-back.
    Retry,
    /// `%DLQ%<group>`: created per cluster when a message runs out of retries.
    Dlq,
    /// Created and used by RocketMQ itself (see [`system_topic_reason`]).
    System,
}

/// Why `topic` is a system topic, or `None` if it is not one. Brokers and clusters are the
/// names known for the cluster(s) in question: each broker creates a topic named after itself
/// and after its cluster (and `<cluster>_REPLY_TOPIC`), so those are system topics too.
pub fn system_topic_reason<B: AsRef<str>, C: AsRef<str>>(
    topic: &str,
    brokers: &[B],
    clusters: &[C],
) -> Option<&'static str> {
    if let Some((_, why)) = SYSTEM_TOPIC_REASONS.iter().find(|(t, _)| *t == topic) {
        return Some(*why);
    }
    if topic.starts_with(SYSTEM_TOPIC_PREFIX) {
        return Some(
            "rmq_sys_ is RocketMQ's system topic prefix (pop revive logs, timer wheel, broker sync)",
        );
    }
    if topic.starts_with(UPPER_SYSTEM_TOPIC_PREFIX) {
        return Some("RMQ_SYS_ topics are RocketMQ internals (transactions, trace)");
    }
    if topic.starts_with(LMQ_PREFIX) {
        return Some("%LMQ% topics are light message queues that brokers create on dispatch");
    }
    if brokers.iter().any(|b| b.as_ref() == topic) {
        return Some("each broker creates a topic named after itself");
    }
    if clusters.iter().any(|c| c.as_ref() == topic) {
        return Some("each broker creates a topic named after its cluster");
    }
    if clusters
        .iter()
        .any(|c| topic.strip_suffix(REPLY_TOPIC_SUFFIX) == Some(c.as_ref()))
    {
        return Some("<cluster>_REPLY_TOPIC carries request/reply messages of that cluster");
    }
    None
}

/// [`classify_topic_in`] without broker or cluster names: per-broker and per-cluster topics
/// are then not recognised.
pub fn classify_topic(topic: &str) -> TopicClass {
    classify_topic_in::<&str, &str>(topic, &[], &[])
}

/// Classifies a topic. Retry and DLQ prefixes win (they hold a group's messages, per cluster),
/// then the system rules of [`system_topic_reason`], else it is the user's.
pub fn classify_topic_in<B: AsRef<str>, C: AsRef<str>>(
    topic: &str,
    brokers: &[B],
    clusters: &[C],
) -> TopicClass {
    if topic.starts_with(RETRY_PREFIX) {
        TopicClass::Retry
    } else if topic.starts_with(DLQ_PREFIX) {
        TopicClass::Dlq
    } else if system_topic_reason(topic, brokers, clusters).is_some() {
        TopicClass::System
    } else {
        TopicClass::User
    }
}

/// True for RocketMQ's own topics without cluster context (see [`system_topic_reason`]).
pub fn is_system_topic(topic: &str) -> bool {
    system_topic_reason::<&str, &str>(topic, &[], &[]).is_some()
}

/// True for predefined groups and `CID_RMQ_SYS_*` groups (`MixAll.isPredefinedGroup`,
/// `MixAll.isSysConsumerGroup`): brokers and tools own them.
pub fn is_system_group(group: &str) -> bool {
    SYSTEM_GROUPS.contains(&group) || group.starts_with(SYSTEM_GROUP_PREFIX)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// What kind of name was validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NameKind {
    Topic,
    Group,
    Namespace,
}

impl NameKind {
    /// Lower-case word for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Topic => "topic",
            NameKind::Group => "group",
            NameKind::Namespace => "namespace",
        }
    }

    /// Longest allowed name of this kind.
    pub fn max_len(self) -> usize {
        match self {
            NameKind::Topic => TOPIC_MAX_LEN,
            NameKind::Group => GROUP_MAX_LEN,
            NameKind::Namespace => NAMESPACE_MAX_LEN,
        }
    }

    fn allowed_chars(self) -> &'static str {
        match self {
            NameKind::Namespace => "letters a-z A-Z, digits 0-9 and | _ -",
            _ => "letters a-z A-Z, digits 0-9 and % | _ -",
        }
    }
}

/// The naming rule a name broke. The variant is the stable machine-readable id (see
/// [`NameRule::id`]); serialized as `{"rule":"ILLEGAL_CHAR","ch":" ","index":3}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NameRule {
    /// The name is empty.
    Empty,
    /// The name has `len` characters, more than `max`.
    TooLong { max: usize, len: usize },
    /// The first character outside the allowed set, and its index in characters (0-based).
    IllegalChar { ch: char, index: usize },
    /// The name (or its prefix, written `prefix*`) is reserved by RocketMQ, and why.
    Reserved { name: String, reason: String },
}

impl NameRule {
    /// Stable id of the rule, for machines: `EMPTY`, `TOO_LONG`, `ILLEGAL_CHAR`, `RESERVED`.
    pub fn id(&self) -> &'static str {
        match self {
            NameRule::Empty => "EMPTY",
            NameRule::TooLong { .. } => "TOO_LONG",
            NameRule::IllegalChar { .. } => "ILLEGAL_CHAR",
            NameRule::Reserved { .. } => "RESERVED",
        }
    }
}

/// A name that breaks a naming rule: which kind of name, the name, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NameError {
    pub kind: NameKind,
    pub name: String,
    pub rule: NameRule,
}

impl std::error::Error for NameError {}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.as_str();
        let max = self.kind.max_len();
        match &self.rule {
            NameRule::Empty => write!(
                f,
                "{kind} name is empty: a {kind} needs 1 to {max} characters ({})",
                self.kind.allowed_chars()
            ),
            NameRule::TooLong { max, len } => write!(
                f,
                "{kind} {:?} is {len} characters long: at most {max} are allowed",
                self.name
            ),
            NameRule::IllegalChar { ch, index } => write!(
                f,
                "{kind} {:?} has the illegal character {ch:?} (U+{:04X}) at index {index}: only {} are allowed",
                self.name,
                u32::from(*ch),
                self.kind.allowed_chars()
            ),
            NameRule::Reserved { name, reason } => write!(
                f,
                "{kind} {:?} is reserved ({name}: {reason}): choose another name",
                self.name
            ),
        }
    }
}

/// Whether RocketMQ's own names pass validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SystemNames {
    /// Refuse system, retry and DLQ names: they must not be created as user items.
    #[default]
    Reject,
    /// Accept them (e.g. when checking names read back from a cluster).
    Allow,
}

/// The checks shared by every kind, in Java's order: blank, illegal characters, length.
fn check_shape(kind: NameKind, name: &str) -> Result<(), NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    let valid = match kind {
        NameKind::Namespace => is_valid_namespace_char,
        _ => is_valid_name_char,
    };
    if let Some((index, ch)) = name.chars().enumerate().find(|(_, c)| !valid(*c)) {
        return Err(NameRule::IllegalChar { ch, index });
    }
    // Only ASCII is left here, so bytes == characters.
    let len = name.len();
    if len > kind.max_len() {
        return Err(NameRule::TooLong {
            max: kind.max_len(),
            len,
        });
    }
    Ok(())
}

fn fail(kind: NameKind, name: &str, rule: NameRule) -> NameError {
    NameError {
        kind,
        name: name.to_string(),
        rule,
    }
}

fn reserved(name: &str, reason: &str) -> NameRule {
    NameRule::Reserved {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

/// [`validate_topic_with`] refusing system, retry and DLQ topics.
pub fn validate_topic(topic: &str) -> Result<(), NameError> {
    validate_topic_with(topic, SystemNames::Reject)
}

/// Checks a full topic name (namespace included): non-empty, charset `[%|a-zA-Z0-9_-]`, at most
/// [`TOPIC_MAX_LEN`] characters, and — unless `system` is [`SystemNames::Allow`] — not a
/// system, `%RETRY%`, `%DLQ%` or `%LMQ%` topic. Per-broker/per-cluster topics need cluster
/// names: check them with [`classify_topic_in`].
pub fn validate_topic_with(topic: &str, system: SystemNames) -> Result<(), NameError> {
    let kind = NameKind::Topic;
    check_shape(kind, topic).map_err(|r| fail(kind, topic, r))?;
    if system == SystemNames::Reject {
        let rule = if topic.starts_with(RETRY_PREFIX) {
            Some(reserved(
                "%RETRY%*",
                "brokers create retry topics for each consumer group",
            ))
        } else if topic.starts_with(DLQ_PREFIX) {
            Some(reserved(
                "%DLQ%*",
                "brokers create dead-letter topics for each consumer group",
            ))
        } else {
            system_topic_reason::<&str, &str>(topic, &[], &[])
                .map(|why| reserved(&reserved_pattern(topic), why))
        };
        if let Some(rule) = rule {
            return Err(fail(kind, topic, rule));
        }
    }
    Ok(())
}

/// The reserved name or prefix that matched, for [`NameRule::Reserved`].
fn reserved_pattern(topic: &str) -> String {
    [SYSTEM_TOPIC_PREFIX, UPPER_SYSTEM_TOPIC_PREFIX, LMQ_PREFIX]
        .iter()
        .find(|p| topic.starts_with(**p) && !is_named_system_topic(topic))
        .map(|p| format!("{p}*"))
        .unwrap_or_else(|| topic.to_string())
}

/// [`validate_group_with`] refusing system groups.
pub fn validate_group(group: &str) -> Result<(), NameError> {
    validate_group_with(group, SystemNames::Reject)
}

/// Checks a full group name (namespace included): non-empty, charset `[%|a-zA-Z0-9_-]`, at most
/// [`GROUP_MAX_LEN`] characters, and — unless `system` is [`SystemNames::Allow`] — not a
/// predefined or `CID_RMQ_SYS_*` group.
pub fn validate_group_with(group: &str, system: SystemNames) -> Result<(), NameError> {
    let kind = NameKind::Group;
    check_shape(kind, group).map_err(|r| fail(kind, group, r))?;
    if system == SystemNames::Reject && is_system_group(group) {
        let pattern = if SYSTEM_GROUPS.contains(&group) {
            group.to_string()
        } else {
            format!("{SYSTEM_GROUP_PREFIX}*")
        };
        return Err(fail(
            kind,
            group,
            reserved(
                &pattern,
                "RocketMQ's brokers, tools and client library use this group internally",
            ),
        ));
    }
    Ok(())
}

/// Checks a namespace: non-empty, charset `[|a-zA-Z0-9_-]` (no `%`), at most
/// [`NAMESPACE_MAX_LEN`] characters, and not starting with `rmq_sys_` or `CID_RMQ_SYS_`:
/// names wrapped in such a namespace would look like system resources, which clients never
/// unwrap, so the namespace would be lost.
pub fn validate_namespace(namespace: &str) -> Result<(), NameError> {
    let kind = NameKind::Namespace;
    check_shape(kind, namespace).map_err(|r| fail(kind, namespace, r))?;
    for prefix in [SYSTEM_TOPIC_PREFIX, SYSTEM_GROUP_PREFIX] {
        if namespace.starts_with(prefix) {
            return Err(fail(
                kind,
                namespace,
                reserved(
                    &format!("{prefix}*"),
                    "names in it would look like RocketMQ system resources and lose their namespace",
                ),
            ));
        }
    }
    Ok(())
}

/// The full topic name to create: validates `namespace` (if any) and the bare `name`, wraps
/// them ([`wrap_namespace`]) and checks the result still fits [`TOPIC_MAX_LEN`].
pub fn qualify_topic(namespace: Option<&str>, name: &str) -> Result<String, NameError> {
    qualify(namespace, name, validate_topic)
}

/// The full group name to create; as [`qualify_topic`] with the group rules.
pub fn qualify_group(namespace: Option<&str>, name: &str) -> Result<String, NameError> {
    qualify(namespace, name, validate_group)
}

fn qualify(
    namespace: Option<&str>,
    name: &str,
    validate: fn(&str) -> Result<(), NameError>,
) -> Result<String, NameError> {
    validate(name)?;
    match namespace {
        None => Ok(name.to_string()),
        Some(ns) => {
            validate_namespace(ns)?;
            let full = wrap_namespace(ns, name);
            validate(&full)?;
            Ok(full)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any character outside the name charset, often ASCII so punctuation gets exercised.
    fn illegal_char() -> impl Strategy<Value = char> {
        prop_oneof![
            prop::char::range(' ', '~'),
            any::<char>(),
            Just('\u{0}'),
            Just('\u{e9}'),
        ]
        .prop_filter("must be illegal", |c| !is_valid_name_char(*c))
    }

    fn valid_topic() -> impl Strategy<Value = String> {
        "[%|a-zA-Z0-9_-]{1,127}"
    }

    fn valid_group() -> impl Strategy<Value = String> {
        "[%|a-zA-Z0-9_-]{1,255}"
    }

    fn valid_namespace() -> impl Strategy<Value = String> {
        "[|a-zA-Z0-9_-]{1,64}".prop_filter("not reserved", |ns| validate_namespace(ns).is_ok())
    }

    fn insert_at(s: &str, index: usize, ch: char) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        chars.insert(index, ch);
        chars.into_iter().collect()
    }

    proptest! {
        /// Any name of valid characters and valid length passes when system names are allowed.
        #[test]
        fn valid_chars_and_length_pass(t in valid_topic(), g in valid_group(), ns in "[|a-zA-Z0-9_-]{1,64}") {
            prop_assert_eq!(validate_topic_with(&t, SystemNames::Allow), Ok(()));
            prop_assert_eq!(validate_group_with(&g, SystemNames::Allow), Ok(()));
            if !ns.starts_with("rmq_sys_") && !ns.starts_with("CID_RMQ_SYS_") {
                prop_assert_eq!(validate_namespace(&ns), Ok(()));
            }
        }

        /// With system names refused, a valid name fails only with RESERVED, exactly when it is
        /// a system/retry/DLQ name.
        #[test]
        fn strict_mode_only_adds_reserved(t in valid_topic(), g in valid_group()) {
            match validate_topic(&t) {
                Ok(()) => prop_assert_eq!(classify_topic(&t), TopicClass::User),
                Err(e) => {
                    prop_assert_eq!(e.rule.id(), "RESERVED");
                    prop_assert_ne!(classify_topic(&t), TopicClass::User);
                }
            }
            match validate_group(&g) {
                Ok(()) => prop_assert!(!is_system_group(&g)),
                Err(e) => {
                    prop_assert_eq!(e.rule.id(), "RESERVED");
                    prop_assert!(is_system_group(&g));
                }
            }
        }

        /// Inserting one illegal character anywhere fails, naming that character and its index,
        /// whatever the length (characters are checked before length, as in Java).
        #[test]
        fn illegal_char_is_named_with_index(
            t in valid_topic(), g in valid_group(), ns in valid_namespace(),
            ch in illegal_char(), pos in any::<prop::sample::Index>(),
        ) {
            for (kind, name) in [(NameKind::Topic, t), (NameKind::Group, g), (NameKind::Namespace, ns)] {
                let index = pos.index(name.chars().count() + 1);
                let bad = insert_at(&name, index, ch);
                let err = match kind {
                    NameKind::Topic => validate_topic_with(&bad, SystemNames::Allow),
                    NameKind::Group => validate_group_with(&bad, SystemNames::Allow),
                    NameKind::Namespace => validate_namespace(&bad),
                }.unwrap_err();
                prop_assert_eq!(err.kind, kind);
                prop_assert_eq!(&err.rule, &NameRule::IllegalChar { ch, index });
                prop_assert!(err.to_string().contains(&format!("index {index}")), "{}", err);
            }
        }

        /// `%` is legal in topics and groups but not in namespaces.
        #[test]
        fn percent_is_illegal_only_in_namespaces(ns in valid_namespace(), pos in any::<prop::sample::Index>()) {
            let index = pos.index(ns.len() + 1);
            let bad = insert_at(&ns, index, '%');
            prop_assert_eq!(validate_namespace(&bad).unwrap_err().rule, NameRule::IllegalChar { ch: '%', index });
        }

        /// The length limit is exact: max passes, max + 1 fails with TOO_LONG naming both numbers.
        #[test]
        fn length_limit_is_exact(c in "[a-zA-Z0-9_|-]", extra in 1usize..50) {
            for kind in [NameKind::Topic, NameKind::Group, NameKind::Namespace] {
                let max = kind.max_len();
                let check = |s: &str| match kind {
                    NameKind::Topic => validate_topic_with(s, SystemNames::Allow),
                    NameKind::Group => validate_group_with(s, SystemNames::Allow),
                    NameKind::Namespace => validate_namespace(s),
                };
                // Lead with 'x' so no reserved prefix can form.
                let ok = format!("x{}", c.repeat(max - 1));
                prop_assert_eq!(check(&ok), Ok(()));
                let long = format!("x{}", c.repeat(max - 1 + extra));
                prop_assert_eq!(check(&long).unwrap_err().rule, NameRule::TooLong { max, len: max + extra });
            }
        }

        /// Wrapping a valid name in a valid namespace and parsing it back gives the parts back.
        #[test]
        fn wrap_then_parse_round_trips(
            ns in valid_namespace(),
            prefix in prop::sample::select(vec![ResourcePrefix::Plain, ResourcePrefix::Retry, ResourcePrefix::Dlq]),
            bare in "[%|a-zA-Z0-9_-]{1,60}",
        ) {
            let name = format!("{}{bare}", prefix.as_str());
            prop_assume!(!is_java_system_resource(&name));
            let (_, rest) = ResourcePrefix::split(&name);
            prop_assume!(!rest.starts_with(&format!("{ns}%")));
            let full = wrap_namespace(&ns, &name);
            let parsed = parse_namespaced(&full);
            prop_assert_eq!(parsed.namespace.as_deref(), Some(ns.as_str()));
            prop_assert_eq!(parsed.resource(), name);
            prop_assert_eq!(parsed.full(), full);
        }

        /// Wrapping is idempotent, as in Java.
        #[test]
        fn wrap_is_idempotent(ns in valid_namespace(), name in "[%|a-zA-Z0-9_-]{0,60}") {
            let once = wrap_namespace(&ns, &name);
            prop_assert_eq!(wrap_namespace(&ns, &once), once);
        }

        /// Parsing loses nothing: `full()` rebuilds any input exactly.
        #[test]
        fn parse_then_full_is_identity(
            s in (prop::sample::select(vec!["", "%", "%RETRY%", "%DLQ%", "rmq_sys_", "TBW102"]), "[%|a-zA-Z0-9_ -]{0,40}")
                .prop_map(|(p, rest)| format!("{p}{rest}")),
        ) {
            prop_assert_eq!(parse_namespaced(&s).full(), s);
        }

        /// A name without a namespace gets the given default; one with a namespace keeps it.
        #[test]
        fn default_namespace_only_fills_gaps(s in "[%|a-zA-Z0-9_-]{0,40}", d in "[a-zA-Z]{1,10}") {
            let parsed = parse_namespaced(&s);
            let defaulted = namespace_or_default(&s, &d);
            prop_assert_eq!(&defaulted.name, &parsed.name);
            prop_assert_eq!(defaulted.prefix, parsed.prefix);
            prop_assert_eq!(defaulted.namespace, Some(parsed.namespace.unwrap_or(d)));
        }
    }

    #[test]
    fn parse_follows_namespace_util() {
        let p = parse_namespaced("%RETRY%ns%G");
        assert_eq!(p.namespace.as_deref(), Some("ns"));
        assert_eq!(p.name, "G");
        assert_eq!(p.prefix, ResourcePrefix::Retry);
        assert_eq!(p.resource(), "%RETRY%G");

        let p = parse_namespaced("%DLQ%MQ_INST_1%GID_A");
        assert_eq!(
            (p.namespace.as_deref(), p.name.as_str(), p.prefix),
            (Some("MQ_INST_1"), "GID_A", ResourcePrefix::Dlq)
        );
        // First `%` splits; the rest stays in the name.
        let p = parse_namespaced("a%b%c");
        assert_eq!(
            (p.namespace.as_deref(), p.name.as_str()),
            (Some("a"), "b%c")
        );
        // No `%` (besides the prefix), or a leading `%`: no namespace.
        assert_eq!(parse_namespaced("TopicA").namespace, None);
        assert_eq!(parse_namespaced("%RETRY%G").namespace, None);
        assert_eq!(parse_namespaced("%RETRY%G").name, "G");
        assert_eq!(parse_namespaced("%x").namespace, None);
        // System resources are never split.
        assert_eq!(parse_namespaced("rmq_sys_a%b").namespace, None);
        assert_eq!(parse_namespaced("CID_RMQ_SYS_x%y").namespace, None);
    }

    #[test]
    fn defaults_for_import_and_v4() {
        let p = namespace_or_default("TopicA", IMPORT_DEFAULT_NAMESPACE);
        assert_eq!(p.namespace.as_deref(), Some("default"));
        let p = namespace_or_default("TopicA", V4_TARGET_DEFAULT_NAMESPACE);
        assert_eq!(p.namespace.as_deref(), Some("Default"));
        let p = namespace_or_default("ns%TopicA", "default");
        assert_eq!(p.namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn wrap_follows_namespace_util() {
        assert_eq!(wrap_namespace("ns", "T"), "ns%T");
        assert_eq!(wrap_namespace("ns", "%RETRY%G"), "%RETRY%ns%G");
        assert_eq!(wrap_namespace("ns", "%DLQ%G"), "%DLQ%ns%G");
        assert_eq!(wrap_namespace("ns", "ns%T"), "ns%T");
        assert_eq!(wrap_namespace("ns", "%RETRY%ns%G"), "%RETRY%ns%G");
        assert_eq!(wrap_namespace("ns", "TBW102"), "TBW102");
        assert_eq!(wrap_namespace("ns", "rmq_sys_x"), "rmq_sys_x");
        assert_eq!(wrap_namespace("", "T"), "T");
        assert_eq!(wrap_namespace("ns", ""), "");
        // A different namespace is wrapped again, as Java does.
        assert_eq!(wrap_namespace("a", "b%T"), "a%b%T");
    }

    #[test]
    fn classification() {
        for t in [
            "TBW102",
            "SCHEDULE_TOPIC_XXXX",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "RMQ_SYS_ANY",
        ] {
            assert_eq!(classify_topic(t), TopicClass::System, "{t}");
        }
        for t in [
            "rmq_sys_wheel_timer",
            "BenchmarkTest",
            "OFFSET_MOVED_EVENT",
            "SELF_TEST_TOPIC",
            "%LMQ%x",
        ] {
            assert_eq!(classify_topic(t), TopicClass::System, "{t}");
        }
        assert_eq!(classify_topic("%RETRY%G"), TopicClass::Retry);
        assert_eq!(classify_topic("%DLQ%G"), TopicClass::Dlq);
        assert_eq!(classify_topic("ns%Orders"), TopicClass::User);
        assert_eq!(classify_topic("broker-a"), TopicClass::User);

        let brokers = vec!["broker-a".to_string()];
        let clusters = ["DefaultCluster"];
        assert_eq!(
            classify_topic_in("broker-a", &brokers, &clusters),
            TopicClass::System
        );
        assert_eq!(
            classify_topic_in("DefaultCluster", &brokers, &clusters),
            TopicClass::System
        );
        assert_eq!(
            classify_topic_in("DefaultCluster_REPLY_TOPIC", &brokers, &clusters),
            TopicClass::System
        );
        assert_eq!(
            classify_topic_in("broker-b", &brokers, &clusters),
            TopicClass::User
        );
    }

    #[test]
    fn system_groups() {
        for g in [
            "DEFAULT_CONSUMER",
            "TOOLS_CONSUMER",
            "CLIENT_INNER_PRODUCER",
            "CID_RMQ_SYS_X",
        ] {
            assert!(is_system_group(g), "{g}");
            assert_eq!(validate_group(g).unwrap_err().rule.id(), "RESERVED");
            assert_eq!(validate_group_with(g, SystemNames::Allow), Ok(()));
        }
        assert!(!is_system_group("GID_orders"));
    }

    #[test]
    fn errors_name_the_rule() {
        let e = validate_topic("").unwrap_err();
        assert_eq!(e.rule, NameRule::Empty);
        assert!(e.to_string().contains("1 to 127"), "{e}");

        let e = validate_topic("a b").unwrap_err();
        assert_eq!(e.rule, NameRule::IllegalChar { ch: ' ', index: 1 });
        assert!(e.to_string().contains("' '"), "{e}");

        let e = validate_topic("TBW102").unwrap_err();
        assert!(e.to_string().contains("auto-create"), "{e}");
        let e = validate_topic("rmq_sys_x").unwrap_err();
        assert_eq!(
            e.rule,
            NameRule::Reserved {
                name: "rmq_sys_*".into(),
                reason: system_topic_reason::<&str, &str>("rmq_sys_x", &[], &[])
                    .unwrap()
                    .into()
            }
        );
        assert_eq!(
            validate_topic("%RETRY%G").unwrap_err().rule.id(),
            "RESERVED"
        );
        assert_eq!(validate_topic_with("%RETRY%G", SystemNames::Allow), Ok(()));

        let e = validate_namespace("rmq_sys_ns").unwrap_err();
        assert_eq!(e.rule.id(), "RESERVED");

        // The rule serializes with a stable tag.
        let json = serde_json::to_string(&NameRule::IllegalChar { ch: ' ', index: 3 }).unwrap();
        assert_eq!(json, r#"{"rule":"ILLEGAL_CHAR","ch":" ","index":3}"#);

        // And converts into the crate error with the same message.
        let core: crate::CoreError = e.clone().into();
        assert_eq!(core.to_string(), e.to_string());
    }

    #[test]
    fn qualify_checks_parts_and_whole() {
        assert_eq!(qualify_topic(Some("ns"), "T").unwrap(), "ns%T");
        assert_eq!(qualify_topic(None, "T").unwrap(), "T");
        assert_eq!(qualify_group(Some("ns"), "G").unwrap(), "ns%G");
        let e = qualify_topic(Some("bad%ns"), "T").unwrap_err();
        assert_eq!(e.kind, NameKind::Namespace);
        let long = "t".repeat(TOPIC_MAX_LEN);
        let e = qualify_topic(Some("ns"), &long).unwrap_err();
        assert_eq!(
            e.rule,
            NameRule::TooLong {
                max: TOPIC_MAX_LEN,
                len: TOPIC_MAX_LEN + 3
            }
        );
        assert_eq!(
            qualify_topic(Some("ns"), "TBW102").unwrap_err().rule.id(),
            "RESERVED"
        );
    }
}
