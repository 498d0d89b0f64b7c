//! Metadata file formats shared by the scanner (which writes them) and the importer (which
//! reads them).
//!
//! - [`json`]: `rocketmq-metadata-export.json` in the layout `mqadmin exportMetadata -c`
//!   writes (`exportTime`, `topicConfigTable`, `subscriptionGroupTable`), and a parser that
//!   accepts that layout, the export script's wrapper (`{"configs","metadata","metrics"}`)
//!   and mqadmin's per-broker `topic.json` / `subscriptionGroup.json`. Bad input is reported
//!   with the file, the field path and the reason.
//! - [`xlsx`]: the two spreadsheet templates (4.x target: namespace column; 5.x target: no
//!   namespace, message type column), written with `rust_xlsxwriter` and read back with
//!   `calamine`; bad cells are reported with sheet, row, column and reason.
//! - [`convert`]: merging per-broker `TopicConfig` / `SubscriptionGroupConfig` into one export
//!   the way mqadmin does, message types, and spreadsheet rows from configs.

pub mod convert;
pub mod error;
pub mod json;
pub mod xlsx;

pub use convert::{ExportBuilder, MessageType, group_row, topic_row};
pub use error::{CellError, FieldError, ParseError, XlsxError};
pub use json::{EXPORT_FILE_NAME, ExportLayout, MetadataExport, ParsedExport, parse_export};
pub use xlsx::{GroupRow, TopicRow, Workbook, XLSX_FILE_NAME, read_xlsx, template, write_xlsx};
