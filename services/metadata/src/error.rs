//! Errors of the file formats. Each names where the problem is (file and field path, or
//! sheet, row and column) and why, so a person can fix the file without guessing.

use std::fmt;

/// Most problems collected from one file before giving up (a broken file would otherwise
/// produce one per item).
pub const MAX_REPORTED: usize = 50;

/// One bad field of a JSON file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: a dotted path such as `topicConfigTable.Orders.readQueueNums`, or
    /// `line 3 column 7` for a syntax error.
    pub path: String,
    /// What is wrong and what was expected.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// A JSON metadata file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The file name as given by the caller.
    pub file: String,
    /// Every problem found, at most [`MAX_REPORTED`].
    pub errors: Vec<FieldError>,
    /// True when more problems existed than were kept.
    pub truncated: bool,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [] => write!(f, "{}: invalid metadata file", self.file),
            [one] => write!(f, "{}: {one}", self.file),
            [first, rest @ ..] => {
                write!(f, "{}: {first}", self.file)?;
                for e in rest {
                    write!(f, "; {e}")?;
                }
                if self.truncated {
                    write!(f, "; (more errors not shown)")?;
                }
                Ok(())
            }
        }
    }
}

/// One bad cell (or missing header) of a spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// Sheet name.
    pub sheet: String,
    /// 1-based row number as Excel shows it; 0 when the problem is the sheet itself.
    pub row: u32,
    /// Column letter and header, e.g. `C (Read Queues)`; empty for row/sheet problems.
    pub column: String,
    /// What is wrong and what was expected.
    pub reason: String,
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, self.column.is_empty()) {
            (0, _) => write!(f, "sheet {}: {}", self.sheet, self.reason),
            (row, true) => write!(f, "sheet {} row {row}: {}", self.sheet, self.reason),
            (row, false) => write!(
                f,
                "sheet {} row {row} column {}: {}",
                self.sheet, self.column, self.reason
            ),
        }
    }
}

/// A spreadsheet that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XlsxError {
    /// Not an .xlsx file (or a damaged one).
    #[error("{file}: not a readable .xlsx workbook: {reason}")]
    Unreadable { file: String, reason: String },
    /// The workbook was read but some cells are wrong.
    #[error("{file}: {}", join_cells(.errors, *.truncated))]
    Cells {
        file: String,
        errors: Vec<CellError>,
        truncated: bool,
    },
    /// Writing failed (a library error; should not happen with valid rows).
    #[error("cannot write the workbook: {reason}")]
    Write { reason: String },
}

fn join_cells(errors: &[CellError], truncated: bool) -> String {
    let mut s = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if truncated {
        s.push_str("; (more errors not shown)");
    }
    s
}

/// Collects errors up to [`MAX_REPORTED`].
#[derive(Debug)]
pub(crate) struct Collector<E> {
    pub errors: Vec<E>,
    pub truncated: bool,
}

impl<E> Default for Collector<E> {
    fn default() -> Self {
        Collector {
            errors: Vec::new(),
            truncated: false,
        }
    }
}

impl<E> Collector<E> {
    pub fn push(&mut self, e: E) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(e);
        } else {
            self.truncated = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}
