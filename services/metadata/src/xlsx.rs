//! Spreadsheet import/export of topics and groups, in two templates.
//!
//! - **4.x target**: names are split into a `Namespace` column (the part before `%`, else
//!   `Default`) and the bare name; topics have an `Order` column.
//! - **5.x target**: no namespace column (the full name stays as is); topics have a
//!   `Message Type` column (NORMAL, FIFO, DELAY, TRANSACTION, MIXED).
//!
//! Every workbook has the sheets `Topics`, `Groups` and `About` (which names the template and
//! documents the columns and the defaults of blank cells). Reading recognises the template
//! from the header rows, maps columns by header name (any order; extra columns are ignored)
//! and reports every bad cell as sheet, row, column and reason.

use std::collections::HashMap;
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use ferry_core::{TargetType, V4_TARGET_DEFAULT_NAMESPACE};
use rust_xlsxwriter::{DataValidation, Format, Workbook as XlsxBook, Worksheet};

use crate::convert::MessageType;
use crate::error::{CellError, Collector, XlsxError};

/// File name of a spreadsheet export.
pub const XLSX_FILE_NAME: &str = "rocketmq-metadata-export.xlsx";
/// Sheet of topics.
pub const TOPICS_SHEET: &str = "Topics";
/// Sheet of consumer groups.
pub const GROUPS_SHEET: &str = "Groups";
/// Sheet naming the template and explaining the columns.
pub const ABOUT_SHEET: &str = "About";

/// Queue count of a topic row whose queue cells are blank (mqadmin `updateTopic`'s default).
pub const DEFAULT_QUEUE_NUMS: i32 = 8;
/// Perm of a topic row whose perm cell is blank: read and write.
pub const DEFAULT_PERM: i32 = 6;

/// The suggested file name of the empty template for `target`.
pub fn template_file_name(target: TargetType) -> String {
    format!("ferry-template-{}.xlsx", target.as_str())
}

/// One topic row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRow {
    /// 4.x template only (`None` on 5.x).
    pub namespace: Option<String>,
    /// The topic name: bare on 4.x, full on 5.x.
    pub topic: String,
    /// 5.x template only (`None` on 4.x).
    pub message_type: Option<MessageType>,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    /// RocketMQ PermName bits: 2 write, 4 read, 6 both.
    pub perm: i32,
    /// 4.x: the `Order` column; 5.x: message type FIFO.
    pub order: bool,
    pub remark: String,
}

impl TopicRow {
    /// The full name as clients use it (`ns%Topic` on a 4.x row with a namespace).
    pub fn full_name(&self) -> String {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ferry_core::wrap_namespace(ns, &self.topic),
            _ => self.topic.clone(),
        }
    }
}

/// One consumer group row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// 4.x template only (`None` on 5.x).
    pub namespace: Option<String>,
    pub group: String,
    pub consume_orderly: bool,
    pub consume_broadcast_enable: bool,
    pub consume_enable: bool,
    pub retry_max_times: i32,
    pub retry_queue_nums: i32,
    pub remark: String,
}

impl GroupRow {
    /// The full name as clients use it (`ns%Group` on a 4.x row with a namespace).
    pub fn full_name(&self) -> String {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ferry_core::wrap_namespace(ns, &self.group),
            _ => self.group.clone(),
        }
    }
}

/// A whole workbook in one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workbook {
    pub target: TargetType,
    pub topics: Vec<TopicRow>,
    pub groups: Vec<GroupRow>,
}

impl Workbook {
    /// An empty workbook (the template).
    pub fn empty(target: TargetType) -> Self {
        Workbook {
            target,
            topics: Vec::new(),
            groups: Vec::new(),
        }
    }
}

// ------------------------------------------------------------------ columns

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Col {
    Namespace,
    Topic,
    MessageType,
    ReadQueues,
    WriteQueues,
    Perm,
    Order,
    Group,
    ConsumeOrderly,
    Broadcast,
    ConsumeEnable,
    RetryMaxTimes,
    RetryQueues,
    Remark,
}

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Namespace => "Namespace",
            Col::Topic => "Topic",
            Col::MessageType => "Message Type",
            Col::ReadQueues => "Read Queues",
            Col::WriteQueues => "Write Queues",
            Col::Perm => "Perm",
            Col::Order => "Order",
            Col::Group => "Group",
            Col::ConsumeOrderly => "Consume Orderly",
            Col::Broadcast => "Broadcast",
            Col::ConsumeEnable => "Consume Enable",
            Col::RetryMaxTimes => "Retry Max Times",
            Col::RetryQueues => "Retry Queues",
            Col::Remark => "Remark",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Col::Namespace => "4.x namespace (the name part before %); blank = Default",
            Col::Topic => "topic name (required); 4.x: without the namespace",
            Col::MessageType => "NORMAL, FIFO, DELAY, TRANSACTION or MIXED; blank = NORMAL",
            Col::ReadQueues => "read queue count, a whole number >= 1; blank = 8",
            Col::WriteQueues => "write queue count, a whole number >= 1; blank = 8",
            Col::Perm => "6 = read+write, 4 = read, 2 = write (or RW, R, W); blank = 6",
            Col::Order => "TRUE for an ordered topic; blank = FALSE",
            Col::Group => "consumer group name (required); 4.x: without the namespace",
            Col::ConsumeOrderly => "TRUE when the group consumes in order; blank = FALSE",
            Col::Broadcast => "TRUE when broadcast consumption is allowed; blank = TRUE",
            Col::ConsumeEnable => "FALSE to stop the group consuming; blank = TRUE",
            Col::RetryMaxTimes => "redeliveries before the DLQ (-1 = unlimited); blank = 16",
            Col::RetryQueues => "retry queue count; blank = 1",
            Col::Remark => "free text, not imported",
        }
    }

    fn topic_columns(target: TargetType) -> &'static [Col] {
        match target {
            TargetType::V4 => &[
                Col::Namespace,
                Col::Topic,
                Col::ReadQueues,
                Col::WriteQueues,
                Col::Perm,
                Col::Order,
                Col::Remark,
            ],
            TargetType::V5 => &[
                Col::Topic,
                Col::MessageType,
                Col::ReadQueues,
                Col::WriteQueues,
                Col::Perm,
                Col::Remark,
            ],
        }
    }

    fn group_columns(target: TargetType) -> &'static [Col] {
        match target {
            TargetType::V4 => &[
                Col::Namespace,
                Col::Group,
                Col::ConsumeOrderly,
                Col::Broadcast,
                Col::ConsumeEnable,
                Col::RetryMaxTimes,
                Col::RetryQueues,
                Col::Remark,
            ],
            TargetType::V5 => &[
                Col::Group,
                Col::ConsumeOrderly,
                Col::Broadcast,
                Col::ConsumeEnable,
                Col::RetryMaxTimes,
                Col::RetryQueues,
                Col::Remark,
            ],
        }
    }
}

// ------------------------------------------------------------------ writing

fn write_err(e: rust_xlsxwriter::XlsxError) -> XlsxError {
    XlsxError::Write {
        reason: e.to_string(),
    }
}

/// The empty template for `target`, as .xlsx bytes.
pub fn template(target: TargetType) -> Result<Vec<u8>, XlsxError> {
    write_xlsx(&Workbook::empty(target))
}

/// Writes `book` as .xlsx bytes.
pub fn write_xlsx(book: &Workbook) -> Result<Vec<u8>, XlsxError> {
    let mut xlsx = XlsxBook::new();
    let header = Format::new().set_bold();
    let target = book.target;

    let sheet = xlsx.add_worksheet();
    sheet.set_name(TOPICS_SHEET).map_err(write_err)?;
    let cols = Col::topic_columns(target);
    write_headers(sheet, cols, &header)?;
    for (i, row) in book.topics.iter().enumerate() {
        let r = i as u32 + 1;
        for (c, col) in cols.iter().enumerate() {
            let c = c as u16;
            match col {
                Col::Namespace => {
                    sheet
                        .write_string(r, c, row.namespace.as_deref().unwrap_or(""))
                        .map_err(write_err)?;
                }
                Col::Topic => {
                    sheet.write_string(r, c, &row.topic).map_err(write_err)?;
                }
                Col::MessageType => {
                    let t = row.message_type.unwrap_or(MessageType::Normal);
                    sheet.write_string(r, c, t.as_str()).map_err(write_err)?;
                }
                Col::ReadQueues => {
                    sheet
                        .write_number(r, c, row.read_queue_nums)
                        .map_err(write_err)?;
                }
                Col::WriteQueues => {
                    sheet
                        .write_number(r, c, row.write_queue_nums)
                        .map_err(write_err)?;
                }
                Col::Perm => {
                    sheet.write_number(r, c, row.perm).map_err(write_err)?;
                }
                Col::Order => {
                    sheet.write_boolean(r, c, row.order).map_err(write_err)?;
                }
                Col::Remark => {
                    sheet.write_string(r, c, &row.remark).map_err(write_err)?;
                }
                _ => unreachable!("not a topic column"),
            }
        }
    }
    if let Some(c) = cols.iter().position(|c| *c == Col::MessageType) {
        let names: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        let dv = DataValidation::new()
            .allow_list_strings(&names)
            .map_err(write_err)?;
        sheet
            .add_data_validation(1, c as u16, 1_048_575, c as u16, &dv)
            .map_err(write_err)?;
    }

    let sheet = xlsx.add_worksheet();
    sheet.set_name(GROUPS_SHEET).map_err(write_err)?;
    let cols = Col::group_columns(target);
    write_headers(sheet, cols, &header)?;
    for (i, row) in book.groups.iter().enumerate() {
        let r = i as u32 + 1;
        for (c, col) in cols.iter().enumerate() {
            let c = c as u16;
            match col {
                Col::Namespace => {
                    sheet
                        .write_string(r, c, row.namespace.as_deref().unwrap_or(""))
                        .map_err(write_err)?;
                }
                Col::Group => {
                    sheet.write_string(r, c, &row.group).map_err(write_err)?;
                }
                Col::ConsumeOrderly => {
                    sheet
                        .write_boolean(r, c, row.consume_orderly)
                        .map_err(write_err)?;
                }
                Col::Broadcast => {
                    sheet
                        .write_boolean(r, c, row.consume_broadcast_enable)
                        .map_err(write_err)?;
                }
                Col::ConsumeEnable => {
                    sheet
                        .write_boolean(r, c, row.consume_enable)
                        .map_err(write_err)?;
                }
                Col::RetryMaxTimes => {
                    sheet
                        .write_number(r, c, row.retry_max_times)
                        .map_err(write_err)?;
                }
                Col::RetryQueues => {
                    sheet
                        .write_number(r, c, row.retry_queue_nums)
                        .map_err(write_err)?;
                }
                Col::Remark => {
                    sheet.write_string(r, c, &row.remark).map_err(write_err)?;
                }
                _ => unreachable!("not a group column"),
            }
        }
    }

    let sheet = xlsx.add_worksheet();
    sheet.set_name(ABOUT_SHEET).map_err(write_err)?;
    sheet.set_column_width(0, 22).map_err(write_err)?;
    sheet.set_column_width(1, 80).map_err(write_err)?;
    let lines: Vec<(String, String)> = [
        ("Ferry metadata template".to_string(), String::new()),
        ("Target".to_string(), target.as_str().to_string()),
        ("Template version".to_string(), "1".to_string()),
        (
            "How to use".to_string(),
            "one topic per row in Topics, one group per row in Groups; keep the header rows"
                .to_string(),
        ),
    ]
    .into_iter()
    .chain(
        Col::topic_columns(target)
            .iter()
            .map(|c| (format!("Topics: {}", c.header()), c.help().to_string())),
    )
    .chain(
        Col::group_columns(target)
            .iter()
            .map(|c| (format!("Groups: {}", c.header()), c.help().to_string())),
    )
    .collect();
    for (i, (k, v)) in lines.iter().enumerate() {
        sheet
            .write_string_with_format(i as u32, 0, k, &header)
            .map_err(write_err)?;
        sheet.write_string(i as u32, 1, v).map_err(write_err)?;
    }
    xlsx.save_to_buffer().map_err(write_err)
}

fn write_headers(sheet: &mut Worksheet, cols: &[Col], header: &Format) -> Result<(), XlsxError> {
    for (c, col) in cols.iter().enumerate() {
        let c = c as u16;
        sheet
            .write_string_with_format(0, c, col.header(), header)
            .map_err(write_err)?;
        let width = match col {
            Col::Topic | Col::Group => 40,
            Col::Remark => 30,
            _ => 16,
        };
        sheet.set_column_width(c, width).map_err(write_err)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(write_err)?;
    Ok(())
}

// ------------------------------------------------------------------ reading

/// Excel's column letters for a 0-based index.
fn col_letter(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

struct Sheet {
    name: &'static str,
    /// 1-based row number of `rows[0]`.
    first_row: u32,
    /// 0-based column of `rows[i][0]`.
    first_col: u32,
    rows: Vec<Vec<Data>>,
}

/// Reads a workbook written from either template. `file` names it in errors.
pub fn read_xlsx(file: &str, bytes: &[u8]) -> Result<Workbook, XlsxError> {
    let unreadable = |reason: String| XlsxError::Unreadable {
        file: file.to_string(),
        reason,
    };
    let mut xlsx: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    let names = xlsx.sheet_names();
    let mut errors = Collector::default();
    let mut load = |name: &'static str, errors: &mut Collector<CellError>| -> Option<Sheet> {
        if !names.iter().any(|n| n == name) {
            errors.push(CellError {
                sheet: name.to_string(),
                row: 0,
                column: String::new(),
                reason: format!(
                    "the sheet is missing (found {}); keep the template's sheets, even when empty",
                    names.join(", ")
                ),
            });
            return None;
        }
        match xlsx.worksheet_range(name) {
            Ok(range) => {
                let (r0, c0) = range.start().unwrap_or((0, 0));
                Some(Sheet {
                    name,
                    first_row: r0 + 1,
                    first_col: c0,
                    rows: range.rows().map(<[Data]>::to_vec).collect(),
                })
            }
            Err(e) => {
                errors.push(CellError {
                    sheet: name.to_string(),
                    row: 0,
                    column: String::new(),
                    reason: format!("cannot read the sheet: {e}"),
                });
                None
            }
        }
    };
    let topics_sheet = load(TOPICS_SHEET, &mut errors);
    let groups_sheet = load(GROUPS_SHEET, &mut errors);
    let about_target = load(ABOUT_SHEET, &mut Collector::default()).and_then(|s| about_target(&s));
    let (Some(topics_sheet), Some(groups_sheet)) = (topics_sheet, groups_sheet) else {
        return Err(cells(file, errors));
    };
    let target = match detect_target(&topics_sheet, &groups_sheet, about_target) {
        Ok(t) => t,
        Err(e) => {
            errors.push(e);
            return Err(cells(file, errors));
        }
    };
    let topics = read_topics(&topics_sheet, target, &mut errors);
    let groups = read_groups(&groups_sheet, target, &mut errors);
    if !errors.is_empty() {
        return Err(cells(file, errors));
    }
    Ok(Workbook {
        target,
        topics,
        groups,
    })
}

fn cells(file: &str, errors: Collector<CellError>) -> XlsxError {
    XlsxError::Cells {
        file: file.to_string(),
        errors: errors.errors,
        truncated: errors.truncated,
    }
}

fn text(d: &Data) -> Option<String> {
    match d {
        Data::Empty => None,
        Data::String(s) if s.trim().is_empty() => None,
        Data::String(s) => Some(s.trim().to_string()),
        Data::Int(i) => Some(i.to_string()),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some((*f as i64).to_string()),
        Data::Float(f) => Some(f.to_string()),
        Data::Bool(b) => Some(if *b { "TRUE" } else { "FALSE" }.to_string()),
        other => Some(other.to_string()),
    }
}

fn about_target(sheet: &Sheet) -> Option<TargetType> {
    sheet.rows.iter().find_map(|row| {
        let key = row.first().and_then(text)?;
        if key.eq_ignore_ascii_case("Target") {
            row.get(1).and_then(text)?.parse().ok()
        } else {
            None
        }
    })
}

fn header_cols(sheet: &Sheet) -> Vec<String> {
    sheet
        .rows
        .first()
        .map(|r| r.iter().map(|d| text(d).unwrap_or_default()).collect())
        .unwrap_or_default()
}

fn has_header(headers: &[String], col: Col) -> bool {
    headers.iter().any(|h| h.eq_ignore_ascii_case(col.header()))
}

fn detect_target(
    topics: &Sheet,
    groups: &Sheet,
    about: Option<TargetType>,
) -> Result<TargetType, CellError> {
    let th = header_cols(topics);
    let gh = header_cols(groups);
    let from_headers = match (
        has_header(&th, Col::Namespace) || has_header(&gh, Col::Namespace),
        has_header(&th, Col::MessageType),
    ) {
        (true, false) => Some(TargetType::V4),
        (false, true) => Some(TargetType::V5),
        (false, false) => None,
        (true, true) => {
            return Err(CellError {
                sheet: TOPICS_SHEET.to_string(),
                row: topics.first_row,
                column: String::new(),
                reason: "the header row mixes the 4.x template (Namespace) and the 5.x template (Message Type); use one template".into(),
            });
        }
    };
    match (from_headers, about) {
        (Some(h), Some(a)) if h != a => Err(CellError {
            sheet: ABOUT_SHEET.to_string(),
            row: 0,
            column: String::new(),
            reason: format!(
                "the About sheet says target {a} but the headers are those of the {h} template"
            ),
        }),
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Err(CellError {
            sheet: TOPICS_SHEET.to_string(),
            row: topics.first_row,
            column: String::new(),
            reason: "cannot tell the template: expected a Namespace column (4.x) or a Message Type column (5.x) in the header row".into(),
        }),
    }
}

/// Finds each expected column by header; reports the missing ones.
fn locate(
    sheet: &Sheet,
    cols: &[Col],
    errors: &mut Collector<CellError>,
) -> Option<HashMap<Col, usize>> {
    let headers = header_cols(sheet);
    let mut at = HashMap::new();
    let mut complete = true;
    for col in cols {
        match headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(col.header()))
        {
            Some(i) => {
                at.insert(*col, i);
            }
            // Only the name columns are required: the others default like blank cells.
            None if !matches!(col, Col::Topic | Col::Group) => {}
            None => {
                complete = false;
                errors.push(CellError {
                    sheet: sheet.name.to_string(),
                    row: sheet.first_row,
                    column: String::new(),
                    reason: format!(
                        "the header row lacks the required column {:?} (template columns: {})",
                        col.header(),
                        cols.iter()
                            .map(|c| c.header())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        }
    }
    complete.then_some(at)
}

/// One data row under reading, with its position for error messages.
struct RowReader<'a> {
    sheet: &'a Sheet,
    row: &'a [Data],
    number: u32,
    at: &'a HashMap<Col, usize>,
    ok: bool,
}

impl RowReader<'_> {
    fn cell(&self, col: Col) -> Option<&Data> {
        self.at.get(&col).and_then(|i| self.row.get(*i))
    }

    fn bad(&mut self, col: Col, reason: String, errors: &mut Collector<CellError>) {
        self.ok = false;
        let index = self.at.get(&col).copied().unwrap_or(0) + self.sheet.first_col as usize;
        errors.push(CellError {
            sheet: self.sheet.name.to_string(),
            row: self.number,
            column: format!("{} ({})", col_letter(index), col.header()),
            reason,
        });
    }

    fn text(&self, col: Col) -> Option<String> {
        self.cell(col).and_then(text)
    }

    fn int(&mut self, col: Col, default: i32, min: i32, errors: &mut Collector<CellError>) -> i32 {
        let Some(d) = self.cell(col) else {
            return default;
        };
        let parsed = match d {
            Data::Empty => return default,
            Data::Int(i) => i32::try_from(*i).ok(),
            Data::Float(f)
                if f.fract() == 0.0 && *f >= i32::MIN as f64 && *f <= i32::MAX as f64 =>
            {
                Some(*f as i32)
            }
            Data::String(s) if s.trim().is_empty() => return default,
            Data::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n >= min => n,
            Some(n) => {
                self.bad(
                    col,
                    format!("{n} is too small: expected a whole number >= {min}"),
                    errors,
                );
                default
            }
            None => {
                let shown = text(d).unwrap_or_default();
                self.bad(
                    col,
                    format!("expected a whole number, found {shown:?}"),
                    errors,
                );
                default
            }
        }
    }

    fn boolean(&mut self, col: Col, default: bool, errors: &mut Collector<CellError>) -> bool {
        let Some(d) = self.cell(col) else {
            return default;
        };
        let parsed = match d {
            Data::Empty => return default,
            Data::Bool(b) => Some(*b),
            Data::Int(0) => Some(false),
            Data::Int(1) => Some(true),
            Data::Float(f) if *f == 0.0 => Some(false),
            Data::Float(f) if *f == 1.0 => Some(true),
            Data::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "" => return default,
                "true" | "yes" | "y" | "1" => Some(true),
                "false" | "no" | "n" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some(b) => b,
            None => {
                let shown = text(d).unwrap_or_default();
                self.bad(
                    col,
                    format!("expected TRUE or FALSE, found {shown:?}"),
                    errors,
                );
                default
            }
        }
    }

    fn perm(&mut self, errors: &mut Collector<CellError>) -> i32 {
        let Some(d) = self.cell(Col::Perm) else {
            return DEFAULT_PERM;
        };
        if let Data::String(s) = d {
            match s.trim().to_ascii_uppercase().as_str() {
                "" => return DEFAULT_PERM,
                "RW" | "WR" => return 6,
                "R" => return 4,
                "W" => return 2,
                _ => {}
            }
        }
        let n = self.int(Col::Perm, DEFAULT_PERM, 0, errors);
        if !(0..=7).contains(&n) {
            self.bad(
                Col::Perm,
                format!("{n} is not a permission: expected 6 (read+write), 4 (read) or 2 (write)"),
                errors,
            );
        }
        n
    }

    fn namespace(&self) -> Option<String> {
        Some(
            self.text(Col::Namespace)
                .unwrap_or_else(|| V4_TARGET_DEFAULT_NAMESPACE.to_string()),
        )
    }
}

fn is_blank(row: &[Data]) -> bool {
    row.iter().all(|d| text(d).is_none())
}

fn read_topics(
    sheet: &Sheet,
    target: TargetType,
    errors: &mut Collector<CellError>,
) -> Vec<TopicRow> {
    let cols = Col::topic_columns(target);
    let Some(at) = locate(sheet, cols, errors) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for (i, row) in sheet.rows.iter().enumerate().skip(1) {
        if is_blank(row) {
            continue;
        }
        let mut r = RowReader {
            sheet,
            row,
            number: sheet.first_row + i as u32,
            at: &at,
            ok: true,
        };
        let Some(topic) = r.text(Col::Topic) else {
            r.bad(Col::Topic, "the topic name is empty".into(), errors);
            continue;
        };
        let namespace = (target == TargetType::V4).then(|| r.namespace()).flatten();
        let message_type = match target {
            TargetType::V4 => None,
            TargetType::V5 => match r.text(Col::MessageType) {
                None => Some(MessageType::Normal),
                Some(t) => match t.parse::<MessageType>() {
                    Ok(t) => Some(t),
                    Err(reason) => {
                        r.bad(Col::MessageType, reason, errors);
                        None
                    }
                },
            },
        };
        let read_queue_nums = r.int(Col::ReadQueues, DEFAULT_QUEUE_NUMS, 1, errors);
        let write_queue_nums = r.int(Col::WriteQueues, DEFAULT_QUEUE_NUMS, 1, errors);
        let perm = r.perm(errors);
        let order = match target {
            TargetType::V4 => r.boolean(Col::Order, false, errors),
            TargetType::V5 => message_type == Some(MessageType::Fifo),
        };
        let row = TopicRow {
            namespace,
            topic,
            message_type,
            read_queue_nums,
            write_queue_nums,
            perm,
            order,
            remark: r.text(Col::Remark).unwrap_or_default(),
        };
        let full = row.full_name();
        if let Some(first) = seen.get(&full) {
            r.bad(
                Col::Topic,
                format!("topic {full} appears twice (first in row {first})"),
                errors,
            );
        } else {
            seen.insert(full, r.number);
        }
        if r.ok {
            out.push(row);
        }
    }
    out
}

fn read_groups(
    sheet: &Sheet,
    target: TargetType,
    errors: &mut Collector<CellError>,
) -> Vec<GroupRow> {
    let cols = Col::group_columns(target);
    let Some(at) = locate(sheet, cols, errors) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for (i, row) in sheet.rows.iter().enumerate().skip(1) {
        if is_blank(row) {
            continue;
        }
        let mut r = RowReader {
            sheet,
            row,
            number: sheet.first_row + i as u32,
            at: &at,
            ok: true,
        };
        let Some(group) = r.text(Col::Group) else {
            r.bad(Col::Group, "the group name is empty".into(), errors);
            continue;
        };
        let row = GroupRow {
            namespace: (target == TargetType::V4).then(|| r.namespace()).flatten(),
            group,
            consume_orderly: r.boolean(Col::ConsumeOrderly, false, errors),
            consume_broadcast_enable: r.boolean(Col::Broadcast, true, errors),
            consume_enable: r.boolean(Col::ConsumeEnable, true, errors),
            retry_max_times: r.int(Col::RetryMaxTimes, 16, -1, errors),
            retry_queue_nums: r.int(Col::RetryQueues, 1, 0, errors),
            remark: r.text(Col::Remark).unwrap_or_default(),
        };
        let full = row.full_name();
        if let Some(first) = seen.get(&full) {
            r.bad(
                Col::Group,
                format!("group {full} appears twice (first in row {first})"),
                errors,
            );
        } else {
            seen.insert(full, r.number);
        }
        if r.ok {
            out.push(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_letters() {
        assert_eq!(col_letter(0), "A");
        assert_eq!(col_letter(25), "Z");
        assert_eq!(col_letter(26), "AA");
        assert_eq!(col_letter(27), "AB");
        assert_eq!(col_letter(701), "ZZ");
        assert_eq!(col_letter(702), "AAA");
    }

    #[test]
    fn templates_read_back_empty() {
        for target in TargetType::ALL {
            let bytes = template(target).unwrap();
            let book = read_xlsx("t.xlsx", &bytes).unwrap();
            assert_eq!(book, Workbook::empty(target));
        }
    }

    #[test]
    fn garbage_is_unreadable() {
        let err = read_xlsx("x.xlsx", b"not a zip").unwrap_err();
        assert!(matches!(err, XlsxError::Unreadable { .. }), "{err}");
        assert!(err.to_string().starts_with("x.xlsx: not a readable .xlsx"));
    }
}
