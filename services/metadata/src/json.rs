//! `rocketmq-metadata-export.json`: the layout of `mqadmin exportMetadata -c <cluster>`.
//!
//! mqadmin (tools/.../command/export/ExportMetadataCommand.java) writes
//! `JSON.toJSONString(result, true)` of a `HashMap` with `exportTime` (ms), `topicConfigTable`
//! (topic → `TopicConfig`) and `subscriptionGroupTable` (group → `SubscriptionGroupConfig`):
//! fastjson's pretty format (tab indent, `"key":value`), bean fields in alphabetical order
//! (fastjson's default `SortField`), null fields left out. [`MetadataExport::to_json`] writes
//! the same bytes for the same content, with the top-level keys in the order Java's `HashMap`
//! iterates them (`exportTime`, `topicConfigTable`, `subscriptionGroupTable`) and map entries
//! sorted by name.
//!
//! [`parse_export`] reads, besides that layout:
//! - the export script's wrapper `{"configs":{..},"metadata":{<the above>},"metrics":{..}}`
//!   (the well-known `export.sh` concatenates mqadmin's three exports into a file of this
//!   name);
//! - mqadmin's per-broker `topic.json` (a `TopicConfigSerializeWrapper`, with `dataVersion`)
//!   and `subscriptionGroup.json` (a `SubscriptionGroupWrapper`);
//! - fastjson quirks (unquoted keys, trailing commas) via the tolerant parser of
//!   `ferry-remoting`.
//!
//! Every field Ferry understands is type-checked with its path; unknown fields are kept
//! (`extra`) so settings of newer brokers survive an export → import round trip.

use std::collections::BTreeMap;

use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use serde_json::{Map, Value};

use crate::error::{Collector, FieldError, ParseError};

/// The file name the export script and Ferry write.
pub const EXPORT_FILE_NAME: &str = "rocketmq-metadata-export.json";

/// One exported cluster: what `mqadmin exportMetadata -c` writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataExport {
    /// Milliseconds since the Unix epoch.
    pub export_time: i64,
    /// Topic name → config (queue counts summed over the cluster's masters, as mqadmin does).
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// Group name → config (`retryQueueNums` summed over masters, as mqadmin does).
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

/// Which kind of file [`parse_export`] recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLayout {
    /// `mqadmin exportMetadata -c` / Ferry: `topicConfigTable` + `subscriptionGroupTable`.
    Metadata,
    /// The export script's `{"configs","metadata","metrics"}` wrapper.
    ExportScript,
    /// Only `topicConfigTable` (mqadmin `-t`, or a broker's `topic.json`).
    TopicsOnly,
    /// Only `subscriptionGroupTable` (mqadmin `-g`).
    GroupsOnly,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedExport {
    pub export: MetadataExport,
    pub layout: ExportLayout,
}

impl MetadataExport {
    /// The file as mqadmin writes it (fastjson pretty format, UTF-8, no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut w = FastjsonWriter::default();
        w.out.push('{');
        w.depth = 1;
        w.key_first("exportTime");
        w.out.push_str(&self.export_time.to_string());
        w.key_next("topicConfigTable");
        w.map(self.topic_config_table.iter().map(|(k, tc)| {
            (
                k.as_str(),
                serde_json::to_value(tc).expect("TopicConfig serialises"),
            )
        }));
        w.key_next("subscriptionGroupTable");
        w.map(self.subscription_group_table.iter().map(|(k, g)| {
            (
                k.as_str(),
                serde_json::to_value(g).expect("SubscriptionGroupConfig serialises"),
            )
        }));
        w.depth = 0;
        w.newline();
        w.out.push('}');
        w.out.into_bytes()
    }
}

/// Writes values the way fastjson's `PrettyFormat` does: tab indentation, `"key":value`,
/// objects with their keys sorted, empty containers as `{}` / `[]`, arrays of scalars on one
/// line (Java primitive arrays such as `long[] next`).
#[derive(Default)]
struct FastjsonWriter {
    out: String,
    depth: usize,
}

impl FastjsonWriter {
    fn newline(&mut self) {
        self.out.push('\n');
        for _ in 0..self.depth {
            self.out.push('\t');
        }
    }

    fn key_first(&mut self, key: &str) {
        self.newline();
        self.string(key);
        self.out.push(':');
    }

    fn key_next(&mut self, key: &str) {
        self.out.push(',');
        self.key_first(key);
    }

    fn string(&mut self, s: &str) {
        self.out
            .push_str(&serde_json::to_string(s).expect("strings serialise"));
    }

    fn map<'a>(&mut self, entries: impl Iterator<Item = (&'a str, Value)>) {
        let mut entries = entries.peekable();
        if entries.peek().is_none() {
            self.out.push_str("{}");
            return;
        }
        self.out.push('{');
        self.depth += 1;
        let mut first = true;
        for (k, v) in entries {
            if first {
                self.key_first(k);
                first = false;
            } else {
                self.key_next(k);
            }
            self.value(&v);
        }
        self.depth -= 1;
        self.newline();
        self.out.push('}');
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<(&String, &Value)> = m.iter().collect();
                keys.sort_by(|a, b| a.0.cmp(b.0));
                self.map(keys.into_iter().map(|(k, v)| (k.as_str(), v.clone())));
            }
            Value::Array(items) if items.is_empty() => self.out.push_str("[]"),
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(item);
                }
                self.out.push(']');
            }
            Value::Array(items) => {
                self.out.push('[');
                self.depth += 1;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline();
                    self.value(item);
                }
                self.depth -= 1;
                self.newline();
                self.out.push(']');
            }
            Value::String(s) => self.string(s),
            other => self.out.push_str(&other.to_string()),
        }
    }
}

// ------------------------------------------------------------------ parsing

/// Parses a metadata file. `file` names it in errors (a path or an upload name).
pub fn parse_export(file: &str, bytes: &[u8]) -> Result<ParsedExport, ParseError> {
    let fail = |path: String, reason: String| ParseError {
        file: file.to_string(),
        errors: vec![FieldError { path, reason }],
        truncated: false,
    };
    let root = parse_value(bytes).map_err(|(path, reason)| fail(path, reason))?;
    let root = match root {
        Value::Object(m) => m,
        other => {
            return Err(fail(
                "(root)".into(),
                format!("expected a JSON object, found {}", kind(&other)),
            ));
        }
    };
    let (body, prefix, wrapped) = match root.get("metadata") {
        Some(Value::Object(inner))
            if !root.contains_key("topicConfigTable")
                && !root.contains_key("subscriptionGroupTable") =>
        {
            (inner.clone(), "metadata.", true)
        }
        Some(other)
            if !root.contains_key("topicConfigTable")
                && !root.contains_key("subscriptionGroupTable") =>
        {
            return Err(fail(
                "metadata".into(),
                format!(
                    "expected an object with topicConfigTable and subscriptionGroupTable, found {}",
                    kind(other)
                ),
            ));
        }
        _ => (root, "", false),
    };
    let has_topics = body.contains_key("topicConfigTable");
    let has_groups = body.contains_key("subscriptionGroupTable");
    if !has_topics && !has_groups {
        return Err(fail(
            if wrapped { "metadata" } else { "(root)" }.into(),
            "not a RocketMQ metadata export: expected topicConfigTable and/or subscriptionGroupTable \
             (mqadmin exportMetadata), or metadata (the export script's file)"
                .into(),
        ));
    }
    let mut errors = Collector::default();
    let mut export = MetadataExport::default();
    match body.get("exportTime") {
        None | Some(Value::Null) => {}
        Some(v) => match as_i64(v) {
            Some(ms) => export.export_time = ms,
            None => errors.push(FieldError {
                path: format!("{prefix}exportTime"),
                reason: format!(
                    "expected milliseconds since the epoch (an integer), found {}",
                    kind(v)
                ),
            }),
        },
    }
    if let Some(table) = body.get("topicConfigTable") {
        let path = format!("{prefix}topicConfigTable");
        for_each_entry(table, &path, &mut errors, |key, entry, path, errors| {
            if let Some(tc) = parse_topic(key, entry, path, errors) {
                export.topic_config_table.insert(key.to_string(), tc);
            }
        });
    }
    if let Some(table) = body.get("subscriptionGroupTable") {
        let path = format!("{prefix}subscriptionGroupTable");
        for_each_entry(table, &path, &mut errors, |key, entry, path, errors| {
            if let Some(g) = parse_group(key, entry, path, errors) {
                export.subscription_group_table.insert(key.to_string(), g);
            }
        });
    }
    if !errors.is_empty() {
        return Err(ParseError {
            file: file.to_string(),
            errors: errors.errors,
            truncated: errors.truncated,
        });
    }
    let layout = match (wrapped, has_topics, has_groups) {
        (true, _, _) => ExportLayout::ExportScript,
        (false, true, true) => ExportLayout::Metadata,
        (false, true, false) => ExportLayout::TopicsOnly,
        (false, false, _) => ExportLayout::GroupsOnly,
    };
    Ok(ParsedExport { export, layout })
}

/// Standard JSON first (its errors carry line and column); fastjson's dialect as a fallback.
fn parse_value(bytes: &[u8]) -> Result<Value, (String, String)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Ok(v),
        Err(strict) => match ferry_remoting::fastjson::parse_bytes(bytes) {
            Ok(v) => Ok(v.to_json()),
            Err(_) => Err((
                format!("line {} column {}", strict.line(), strict.column()),
                format!("not valid JSON: {strict}"),
            )),
        },
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `path.key`, or `path["key"]` when the key is not a plain name.
fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'));
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::to_string(key).unwrap_or_default())
    }
}

fn for_each_entry(
    table: &Value,
    path: &str,
    errors: &mut Collector<FieldError>,
    mut f: impl FnMut(&str, &Value, &str, &mut Collector<FieldError>),
) {
    match table {
        Value::Object(m) => {
            for (key, entry) in m {
                let p = child(path, key);
                f(key, entry, &p, errors);
            }
        }
        Value::Null => {}
        other => errors.push(FieldError {
            path: path.to_string(),
            reason: format!("expected an object keyed by name, found {}", kind(other)),
        }),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        // fastjson reads numeric strings into int fields; so do we.
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Checks (and normalises in `obj`) the scalar fields Ferry relies on, with their paths.
struct FieldCheck<'a> {
    obj: &'a mut Map<String, Value>,
    path: &'a str,
    errors: &'a mut Collector<FieldError>,
    ok: bool,
}

impl FieldCheck<'_> {
    fn bad(&mut self, field: &str, reason: String) {
        self.ok = false;
        self.errors.push(FieldError {
            path: child(self.path, field),
            reason,
        });
    }

    fn int(&mut self, field: &str, min: i64, max: i64) {
        let Some(v) = self.obj.get(field) else {
            return;
        };
        if v.is_null() {
            self.obj.remove(field);
            return;
        }
        match as_i64(v) {
            Some(n) if (min..=max).contains(&n) => {
                self.obj.insert(field.to_string(), Value::from(n));
            }
            Some(n) => self.bad(
                field,
                format!("{n} is out of range: expected an integer from {min} to {max}"),
            ),
            None => {
                let found = kind(v);
                self.bad(field, format!("expected an integer, found {found}"))
            }
        }
    }

    fn boolean(&mut self, field: &str) {
        let Some(v) = self.obj.get(field) else {
            return;
        };
        if v.is_null() {
            self.obj.remove(field);
            return;
        }
        match as_bool(v) {
            Some(b) => {
                self.obj.insert(field.to_string(), Value::Bool(b));
            }
            None => {
                let found = kind(v);
                self.bad(field, format!("expected true or false, found {found}"))
            }
        }
    }

    fn one_of(&mut self, field: &str, allowed: &[&str]) {
        let Some(v) = self.obj.get(field) else {
            return;
        };
        match v {
            Value::Null => {
                self.obj.remove(field);
            }
            Value::String(s) if allowed.contains(&s.as_str()) => {}
            other => {
                let found = match other {
                    Value::String(s) => format!("{s:?}"),
                    v => kind(v).to_string(),
                };
                self.bad(
                    field,
                    format!("expected one of {}, found {found}", allowed.join(", ")),
                )
            }
        }
    }

    fn string_map(&mut self, field: &str) {
        let Some(v) = self.obj.get_mut(field) else {
            return;
        };
        match v {
            Value::Null => {
                self.obj.remove(field);
            }
            Value::Object(m) => {
                let mut bad = None;
                for (k, val) in m.iter_mut() {
                    match val {
                        Value::String(_) => {}
                        Value::Number(_) | Value::Bool(_) => *val = Value::String(val.to_string()),
                        other => {
                            bad = Some((k.clone(), kind(other)));
                            break;
                        }
                    }
                }
                if let Some((k, found)) = bad {
                    self.bad(
                        &format!("{field}.{k}"),
                        format!("expected a string value, found {found}"),
                    );
                }
            }
            other => {
                let found = kind(other);
                self.bad(
                    field,
                    format!("expected an object of string values, found {found}"),
                )
            }
        }
    }

    /// The entry's name field must be absent (then the key is used) or equal the key.
    fn name(&mut self, field: &str, key: &str) {
        match self.obj.get(field) {
            None | Some(Value::Null) => {
                self.obj
                    .insert(field.to_string(), Value::String(key.to_string()));
            }
            Some(Value::String(s)) if s == key => {}
            Some(Value::String(s)) => {
                let s = s.clone();
                self.bad(
                    field,
                    format!("{s:?} differs from its table key {key:?}: they must be equal"),
                )
            }
            Some(other) => {
                let found = kind(other);
                self.bad(field, format!("expected a string, found {found}"))
            }
        }
    }
}

const I32: (i64, i64) = (i32::MIN as i64, i32::MAX as i64);

fn parse_topic(
    key: &str,
    entry: &Value,
    path: &str,
    errors: &mut Collector<FieldError>,
) -> Option<TopicConfig> {
    let Value::Object(obj) = entry else {
        errors.push(FieldError {
            path: path.to_string(),
            reason: format!("expected a TopicConfig object, found {}", kind(entry)),
        });
        return None;
    };
    let mut obj = obj.clone();
    let mut check = FieldCheck {
        obj: &mut obj,
        path,
        errors,
        ok: true,
    };
    check.name("topicName", key);
    check.int("readQueueNums", 0, I32.1);
    check.int("writeQueueNums", 0, I32.1);
    // PermName bits: 1 inherit, 2 write, 4 read.
    check.int("perm", 0, 7);
    check.int("topicSysFlag", I32.0, I32.1);
    check.boolean("order");
    check.one_of("topicFilterType", &["SINGLE_TAG", "MULTI_TAG"]);
    check.string_map("attributes");
    if !check.ok {
        return None;
    }
    deserialize(Value::Object(obj), path, "TopicConfig", errors)
}

fn parse_group(
    key: &str,
    entry: &Value,
    path: &str,
    errors: &mut Collector<FieldError>,
) -> Option<SubscriptionGroupConfig> {
    let Value::Object(obj) = entry else {
        errors.push(FieldError {
            path: path.to_string(),
            reason: format!(
                "expected a SubscriptionGroupConfig object, found {}",
                kind(entry)
            ),
        });
        return None;
    };
    let mut obj = obj.clone();
    let mut check = FieldCheck {
        obj: &mut obj,
        path,
        errors,
        ok: true,
    };
    check.name("groupName", key);
    for field in [
        "consumeEnable",
        "consumeFromMinEnable",
        "consumeBroadcastEnable",
        "consumeMessageOrderly",
        "notifyConsumerIdsChangedEnable",
    ] {
        check.boolean(field);
    }
    check.int("retryQueueNums", 0, I32.1);
    // -1 means "retry forever" for orderly consumers.
    check.int("retryMaxTimes", -1, I32.1);
    check.int("groupSysFlag", I32.0, I32.1);
    check.int("consumeTimeoutMinute", I32.0, I32.1);
    check.int("brokerId", i64::MIN, i64::MAX);
    check.int("whichBrokerWhenConsumeSlowly", i64::MIN, i64::MAX);
    check.string_map("attributes");
    if let Some(Value::Object(policy)) = check.obj.get("groupRetryPolicy")
        && let Some(t) = policy.get("type")
        && !matches!(t.as_str(), Some("CUSTOMIZED" | "EXPONENTIAL"))
    {
        let found = match t {
            Value::String(s) => format!("{s:?}"),
            v => kind(v).to_string(),
        };
        check.bad(
            "groupRetryPolicy.type",
            format!("expected one of CUSTOMIZED, EXPONENTIAL, found {found}"),
        );
    }
    if !check.ok {
        return None;
    }
    deserialize(Value::Object(obj), path, "SubscriptionGroupConfig", errors)
}

/// The final typed read; scalar fields were checked already, so what fails here is a nested
/// structure (retry policy, subscription data), reported at the entry's path.
fn deserialize<T: serde::de::DeserializeOwned>(
    v: Value,
    path: &str,
    what: &str,
    errors: &mut Collector<FieldError>,
) -> Option<T> {
    match serde_json::from_value(v) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(FieldError {
                path: path.to_string(),
                reason: format!("not a valid {what}: {e}"),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetadataExport {
        let mut e = MetadataExport {
            export_time: 1_700_000_000_123,
            ..Default::default()
        };
        let mut tc = TopicConfig {
            topic_name: "Orders".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            ..Default::default()
        };
        tc.attributes.insert("message.type".into(), "NORMAL".into());
        e.topic_config_table.insert("Orders".into(), tc);
        e.subscription_group_table.insert(
            "GID_orders".into(),
            SubscriptionGroupConfig {
                group_name: "GID_orders".into(),
                ..Default::default()
            },
        );
        e
    }

    #[test]
    fn writes_fastjson_pretty_layout() {
        let text = String::from_utf8(sample().to_json()).unwrap();
        assert!(
            text.starts_with("{\n\t\"exportTime\":1700000000123,\n\t\"topicConfigTable\":{\n\t\t\"Orders\":{\n\t\t\t\"attributes\":{\n\t\t\t\t\"message.type\":\"NORMAL\"\n\t\t\t},\n\t\t\t\"order\":false,"),
            "{text}"
        );
        assert!(text.contains("\t\"subscriptionGroupTable\":{"), "{text}");
        assert!(
            text.contains("\"groupRetryPolicy\":{\n\t\t\t\t\"type\":\"CUSTOMIZED\"\n\t\t\t}"),
            "{text}"
        );
        assert!(text.ends_with("\n}"), "{text}");
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let parsed = parse_export("f.json", &e.to_json()).unwrap();
        assert_eq!(parsed.layout, ExportLayout::Metadata);
        assert_eq!(parsed.export, e);
    }

    #[test]
    fn empty_tables_are_braces() {
        let text = String::from_utf8(MetadataExport::default().to_json()).unwrap();
        assert_eq!(
            text,
            "{\n\t\"exportTime\":0,\n\t\"topicConfigTable\":{},\n\t\"subscriptionGroupTable\":{}\n}"
        );
    }

    #[test]
    fn errors_name_file_path_and_reason() {
        let bad = br#"{"topicConfigTable":{"A":{"topicName":"B","readQueueNums":"x","perm":9},
            "C":[]},"subscriptionGroupTable":{"G":{"consumeEnable":"maybe","retryMaxTimes":-5}},
            "exportTime":"soon"}"#;
        let err = parse_export("in.json", bad).unwrap_err();
        let msg = err.to_string();
        for needle in [
            "in.json: ",
            "exportTime: expected milliseconds",
            "topicConfigTable.A.topicName: \"B\" differs from its table key \"A\"",
            "topicConfigTable.A.readQueueNums: expected an integer, found a string",
            "topicConfigTable.A.perm: 9 is out of range",
            "topicConfigTable.C: expected a TopicConfig object, found an array",
            "subscriptionGroupTable.G.consumeEnable: expected true or false",
            "subscriptionGroupTable.G.retryMaxTimes: -5 is out of range",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in {msg}");
        }
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = parse_export("x.json", b"{\n  \"topicConfigTable\": {\n  ]").unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert!(err.errors[0].path.starts_with("line 3 column"), "{err}");
        let err = parse_export("x.json", b"[1,2]").unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        let err = parse_export("x.json", br#"{"foo":1}"#).unwrap_err();
        assert!(err.to_string().contains("not a RocketMQ metadata export"));
    }

    #[test]
    fn fastjson_dialect_is_accepted() {
        let text = br#"{topicConfigTable:{"T":{"readQueueNums":4,},},"exportTime":5}"#;
        let parsed = parse_export("fj.json", text).unwrap();
        assert_eq!(parsed.layout, ExportLayout::TopicsOnly);
        assert_eq!(parsed.export.topic_config_table["T"].read_queue_nums, 4);
        assert_eq!(parsed.export.topic_config_table["T"].topic_name, "T");
        assert_eq!(parsed.export.export_time, 5);
    }

    #[test]
    fn unknown_fields_survive() {
        let text = br#"{"topicConfigTable":{"T":{"futureField":{"a":1}}},"subscriptionGroupTable":{"G":{"newKnob":true}}}"#;
        let parsed = parse_export("u.json", text).unwrap();
        let again = parse_export("u2.json", &parsed.export.to_json()).unwrap();
        assert_eq!(
            again.export.topic_config_table["T"].extra["futureField"]["a"],
            1
        );
        assert_eq!(
            again.export.subscription_group_table["G"].extra["newKnob"],
            true
        );
    }
}
