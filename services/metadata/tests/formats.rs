//! The file formats against files other tools write (fixtures built from the Apache sources,
//! see fixtures/README.md) and round trips of Ferry's own files.

use ferry_core::TargetType;
use ferry_metadata::xlsx::{GROUPS_SHEET, TOPICS_SHEET};
use ferry_metadata::{
    ExportBuilder, ExportLayout, MessageType, MetadataExport, Workbook, XlsxError, group_row,
    parse_export, read_xlsx, topic_row, write_xlsx,
};
use ferry_remoting::body::{SubscriptionGroupConfig, TopicConfig};
use proptest::prelude::*;
use serde_json::Value;

const MQADMIN_53: &[u8] = include_bytes!("fixtures/mqadmin-5.3-metadata.json");
const MQADMIN_49: &[u8] = include_bytes!("fixtures/mqadmin-4.9-metadata.json");
const EXPORT_SCRIPT: &[u8] = include_bytes!("fixtures/export-script.json");

#[test]
fn mqadmin_file_round_trips_byte_for_byte() {
    let parsed = parse_export("metadata.json", MQADMIN_53).unwrap();
    assert_eq!(parsed.layout, ExportLayout::Metadata);
    let e = &parsed.export;
    assert_eq!(e.export_time, 1_726_740_000_123);
    let orders = &e.topic_config_table["Orders"];
    assert_eq!((orders.read_queue_nums, orders.order), (16, true));
    assert_eq!(MessageType::declared(orders), Some(MessageType::Fifo));
    let pay = &e.subscription_group_table["shop%GID_pay"];
    assert_eq!(pay.retry_max_times, -1);
    assert_eq!(pay.group_retry_policy.policy_type, "EXPONENTIAL");
    // Ferry writes what mqadmin writes, to the byte.
    let ours = String::from_utf8(e.to_json()).unwrap();
    assert_eq!(ours, String::from_utf8(MQADMIN_53.to_vec()).unwrap());
}

/// Every property a 4.9 mqadmin wrote comes back with the same value; Ferry adds only the
/// properties 5.x has, with Java's defaults.
#[test]
fn mqadmin_49_file_keeps_every_field() {
    let parsed = parse_export("metadata.json", MQADMIN_49).unwrap();
    let theirs: Value = serde_json::from_slice(MQADMIN_49).unwrap();
    let ours: Value = serde_json::from_slice(&parsed.export.to_json()).unwrap();
    for table in ["topicConfigTable", "subscriptionGroupTable"] {
        for (name, entry) in theirs[table].as_object().unwrap() {
            for (field, value) in entry.as_object().unwrap() {
                assert_eq!(
                    &ours[table][name][field], value,
                    "{table}.{name}.{field} changed"
                );
            }
        }
    }
    assert_eq!(ours["exportTime"], theirs["exportTime"]);
    let g = &parsed.export.subscription_group_table["LegacyGroup"];
    assert_eq!(
        (g.consume_timeout_minute, g.consume_message_orderly),
        (15, false)
    );
    assert!(
        parsed.export.topic_config_table["LegacyTopic"]
            .attributes
            .is_empty()
    );
}

#[test]
fn export_script_wrapper_is_accepted() {
    let parsed = parse_export("rocketmq-metadata-export.json", EXPORT_SCRIPT).unwrap();
    assert_eq!(parsed.layout, ExportLayout::ExportScript);
    let g = &parsed.export.subscription_group_table["GID_orders"];
    assert_eq!(
        g.group_retry_policy
            .customized_retry_policy
            .as_ref()
            .unwrap()
            .next,
        [1000, 5000, 10000]
    );
    let subs = g.subscription_data_set.as_ref().unwrap();
    assert_eq!(subs[0].topic.as_deref(), Some("Orders"));
    // Through Ferry's layout and back: nothing lost.
    let again = parse_export("again.json", &parsed.export.to_json()).unwrap();
    assert_eq!(again.layout, ExportLayout::Metadata);
    assert_eq!(again.export, parsed.export);
}

#[test]
fn errors_inside_the_wrapper_name_the_full_path() {
    let text = String::from_utf8(EXPORT_SCRIPT.to_vec())
        .unwrap()
        .replace("\"readQueueNums\":8", "\"readQueueNums\":-8");
    let err = parse_export("wrapped.json", text.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrapped.json: metadata.topicConfigTable.Orders.readQueueNums: -8 is out of range: expected an integer from 0 to 2147483647"
    );
}

fn sample_export() -> MetadataExport {
    let parsed = parse_export("m.json", MQADMIN_53).unwrap().export;
    let mut b = ExportBuilder::new(parsed.export_time);
    for tc in parsed.topic_config_table.values() {
        b.add_topic(tc);
    }
    for g in parsed.subscription_group_table.values() {
        b.add_group(g);
    }
    b.finish()
}

#[test]
fn xlsx_written_read_back_equal_in_both_templates() {
    let export = sample_export();
    for target in TargetType::ALL {
        let book = Workbook {
            target,
            topics: export
                .topic_config_table
                .values()
                .map(|t| topic_row(t, target))
                .collect(),
            groups: export
                .subscription_group_table
                .values()
                .map(|g| group_row(g, target))
                .collect(),
        };
        let bytes = write_xlsx(&book).unwrap();
        let back = read_xlsx("export.xlsx", &bytes).unwrap();
        assert_eq!(back, book, "{target}");
        let pay = back
            .topics
            .iter()
            .find(|t| t.full_name() == "shop%Payments")
            .unwrap();
        match target {
            TargetType::V4 => {
                assert_eq!(pay.namespace.as_deref(), Some("shop"));
                assert_eq!(pay.topic, "Payments");
            }
            TargetType::V5 => {
                assert_eq!(pay.namespace, None);
                assert_eq!(pay.message_type, Some(MessageType::Normal));
            }
        }
    }
}

/// A workbook typed by a person: headers in another order, blank cells, bad cells.
#[test]
fn xlsx_bad_cells_are_reported_with_row_and_column() {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let s = wb.add_worksheet();
    s.set_name(TOPICS_SHEET).unwrap();
    for (c, h) in [
        "Topic",
        "Read Queues",
        "Message Type",
        "Write Queues",
        "Perm",
    ]
    .iter()
    .enumerate()
    {
        s.write_string(0, c as u16, *h).unwrap();
    }
    s.write_string(1, 0, "Good").unwrap();
    s.write_string(2, 0, "BadQueues").unwrap();
    s.write_string(2, 1, "many").unwrap();
    s.write_string(3, 0, "BadType").unwrap();
    s.write_string(3, 2, "URGENT").unwrap();
    s.write_string(4, 0, "Good").unwrap();
    s.write_number(5, 1, 4).unwrap();
    s.write_number(6, 0, 1).unwrap();
    s.write_string(6, 4, "X").unwrap();
    let g = wb.add_worksheet();
    g.set_name(GROUPS_SHEET).unwrap();
    g.write_string(0, 0, "Group").unwrap();
    g.write_string(0, 1, "Consume Enable").unwrap();
    g.write_string(1, 0, "G1").unwrap();
    g.write_string(1, 1, "perhaps").unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    let err = read_xlsx("typed.xlsx", &bytes).unwrap_err();
    let XlsxError::Cells { errors, .. } = &err else {
        panic!("{err}");
    };
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        "sheet Topics row 3 column B (Read Queues): expected a whole number, found \"many\"",
        "sheet Topics row 4 column C (Message Type): unknown message type \"URGENT\": expected NORMAL, FIFO, DELAY, TRANSACTION or MIXED",
        "sheet Topics row 5 column A (Topic): topic Good appears twice (first in row 2)",
        "sheet Topics row 6 column A (Topic): the topic name is empty",
        "sheet Topics row 7 column E (Perm): expected a whole number, found \"X\"",
        "sheet Groups row 2 column B (Consume Enable): expected TRUE or FALSE, found \"perhaps\"",
    ];
    assert_eq!(shown, expected, "{err}");
}

#[test]
fn xlsx_missing_sheet_and_header_are_reported() {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let s = wb.add_worksheet();
    s.set_name(TOPICS_SHEET).unwrap();
    s.write_string(0, 0, "Namespace").unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    let err = read_xlsx("partial.xlsx", &bytes).unwrap_err().to_string();
    assert!(err.contains("sheet Groups: the sheet is missing"), "{err}");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let s = wb.add_worksheet();
    s.set_name(TOPICS_SHEET).unwrap();
    s.write_string(0, 0, "Namespace").unwrap();
    s.write_string(0, 1, "Read Queues").unwrap();
    let g = wb.add_worksheet();
    g.set_name(GROUPS_SHEET).unwrap();
    g.write_string(0, 0, "Namespace").unwrap();
    g.write_string(0, 1, "Group").unwrap();
    let bytes = wb.save_to_buffer().unwrap();
    let err = read_xlsx("partial.xlsx", &bytes).unwrap_err().to_string();
    assert!(
        err.contains("sheet Topics row 1: the header row lacks the required column \"Topic\""),
        "{err}"
    );
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_%|-]{1,40}"
}

fn topic_config() -> impl Strategy<Value = TopicConfig> {
    (
        name(),
        0..1024i32,
        0..1024i32,
        0..8i32,
        any::<bool>(),
        prop::collection::btree_map("[a-z.]{1,12}", "[A-Za-z0-9]{0,8}", 0..3),
    )
        .prop_map(|(n, r, w, perm, order, attributes)| TopicConfig {
            topic_name: n,
            read_queue_nums: r,
            write_queue_nums: w,
            perm,
            order,
            attributes,
            ..Default::default()
        })
}

fn group_config() -> impl Strategy<Value = SubscriptionGroupConfig> {
    (name(), any::<bool>(), any::<bool>(), -1..100i32, 0..16i32).prop_map(
        |(n, orderly, broadcast, retries, rq)| SubscriptionGroupConfig {
            group_name: n,
            consume_message_orderly: orderly,
            consume_broadcast_enable: broadcast,
            retry_max_times: retries,
            retry_queue_nums: rq,
            ..Default::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any export Ferry writes parses back to the same content.
    #[test]
    fn json_round_trips(
        topics in prop::collection::vec(topic_config(), 0..20),
        groups in prop::collection::vec(group_config(), 0..20),
        time in 0..i64::MAX,
    ) {
        let mut e = MetadataExport { export_time: time, ..Default::default() };
        for t in topics { e.topic_config_table.insert(t.topic_name.clone(), t); }
        for g in groups { e.subscription_group_table.insert(g.group_name.clone(), g); }
        let back = parse_export("p.json", &e.to_json()).unwrap();
        prop_assert_eq!(back.export, e);
    }
}
