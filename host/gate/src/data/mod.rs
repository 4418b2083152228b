//! Datasets: typed columnar batches read from CSV files.
//!
//! The host reads *data* (CSV rows to feed models and validators), never
//! model files. A dataset is the one input the host parses itself, so it is
//! read defensively: only a regular file within the operator's
//! [`DataCaps`], streamed once (hashed as it is parsed), with the column
//! count, rows and cells capped as they arrive, and straight into typed
//! columns. A CSV has a header of column names; an empty cell is a missing
//! value (NaN for numeric columns). Errors name the file, the line and the
//! column, before any plugin runs.
//!
//! What a model then receives is decided by [`model_inputs`]: exactly the
//! columns it declares, never a withheld one (a label or an expected
//! output), matched by name or, for a model trained without feature names,
//! by position.

mod caps;
mod read;
mod source;

pub use airlock_core::inputs::{InputError, InputMatch};
pub use caps::{DataCaps, DataCapsError};

use airlock_core::digest::Digest;
use airlock_core::types::{Batch, Feature, Task};
use std::path::{Path, PathBuf};

/// A dataset read from a CSV file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Where it was read from.
    pub path: PathBuf,
    /// Digest of the file's bytes (sha256 of exactly what was parsed).
    pub digest: Digest,
    /// Every column except the label, typed.
    pub batch: Batch,
    /// The label column, when one was asked for.
    pub labels: Option<Vec<f64>>,
    /// The name of the label column, when one was asked for.
    pub label: Option<String>,
    /// The 1-based file line each row starts on, so that errors found
    /// later (labels, predictions) can point into the file.
    pub lines: Vec<u64>,
}

/// Why a dataset was refused, or why a model's inputs cannot be taken
/// from it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read dataset {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The path names a FIFO, a device, a socket or a directory: reading it
    /// could hang or never end, so it is refused before it is opened.
    #[error(
        "{path}: is {kind}, not a regular file; airlock reads datasets from regular files only"
    )]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is, e.g. `a FIFO (named pipe)`.
        kind: &'static str,
    },
    /// The file is beyond one of the operator's [`DataCaps`].
    #[error(
        "{path}: {found} exceeds data.{key} = {limit} (raise it in the [data] section of the host config to read this file)"
    )]
    CapExceeded {
        /// The file.
        path: PathBuf,
        /// The cap's key in the `[data]` section, e.g. `max_rows`.
        key: &'static str,
        /// The cap.
        limit: u64,
        /// What was found, e.g. `a header of 300000 columns`.
        found: String,
    },
    /// The file changed (grew, shrank or was rewritten) while being read,
    /// so its digest would not name what was parsed.
    #[error("{path}: the file changed while it was being read: {message}")]
    Changed {
        /// The file.
        path: PathBuf,
        /// How it changed.
        message: String,
    },
    /// The CSV structure is broken.
    #[error("{path}: malformed CSV: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The header is one column holding another delimiter.
    #[error(
        "{path}: the header is a single column containing `{delimiter}`: the file looks `{delimiter}`-delimited; airlock reads comma-separated CSV"
    )]
    Delimiter {
        /// The file.
        path: PathBuf,
        /// The delimiter seen, escaped (`;`, `\t`, `|`).
        delimiter: &'static str,
    },
    /// Two header columns share a name.
    #[error("{path}: duplicate column `{column}` (columns {first} and {second} of the header)")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        column: String,
        /// 1-based position of its first occurrence.
        first: usize,
        /// 1-based position of the repeat.
        second: usize,
    },
    /// The model's inputs cannot be cut from the data.
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// A numeric column holds something that is not a number.
    #[error("{path}: line {line}, column `{column}`: `{value}` is not a number")]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// 1-based line in the file.
        line: u64,
        /// The column.
        column: String,
        /// The offending cell (at most 40 characters).
        value: String,
    },
    /// A text cell is not valid UTF-8.
    #[error("{path}: line {line}, column `{column}`: the cell is not valid UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The column.
        column: String,
    },
    /// The label column is absent.
    #[error("{path}: no label column `{column}`")]
    MissingLabel {
        /// The file.
        path: PathBuf,
        /// The expected label column.
        column: String,
    },
    /// A label cell is empty.
    #[error("{path}: line {line}: the label column `{column}` is empty")]
    EmptyLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The label column.
        column: String,
    },
    /// A label is NaN or infinite.
    #[error("{path}: line {line}: label `{value}` in column `{column}` is not a finite number")]
    NonFiniteLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The label column.
        column: String,
        /// The label.
        value: f64,
    },
    /// A classification label is not a class index the model has.
    #[error(
        "{path}: line {line}: label `{value}` is not a class index: the model has {n_classes} class(es), so labels must be {expected}"
    )]
    LabelNotClass {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The label.
        value: f64,
        /// Classes the model declares.
        n_classes: usize,
        /// The labels allowed, e.g. `0 or 1`, `integers 0 to 2`.
        expected: String,
    },
    /// The file has no data rows.
    #[error("{path}: no data rows")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Parses one numeric cell: empty (or `NaN`) is missing; `inf` is allowed.
pub fn parse_number(cell: &str) -> Option<f64> {
    let t = cell.trim();
    if t.is_empty() {
        return Some(f64::NAN);
    }
    t.parse::<f64>().ok()
}

/// Exactly the columns a model declares, cut from `batch`; see
/// [`airlock_core::inputs::model_inputs`]. Wrapped here so that callers
/// reading datasets get one error type.
pub fn model_inputs(
    batch: &Batch,
    schema: &[Feature],
    withheld: &[&str],
) -> Result<(Batch, InputMatch), DataError> {
    Ok(airlock_core::inputs::model_inputs(batch, schema, withheld)?)
}

/// Reads `path` under the default [`DataCaps`]; see [`read_csv_with`].
pub fn read_csv(
    path: &Path,
    schema: Option<&[Feature]>,
    label: Option<&str>,
) -> Result<Dataset, DataError> {
    read_csv_with(path, schema, label, &DataCaps::default())
}

/// Reads `path` under `caps`. `schema` (a model's declared inputs) decides
/// column kinds: by name, or by position for a model declaring `f0..f{n-1}`
/// when none of those names is in the header and the file has exactly `n`
/// columns besides the label. Columns it does not type are kept, numeric
/// when every cell parses as a number and categorical otherwise. Declared
/// inputs missing from the header, or a declared input that is the label,
/// are refused before any row is read; [`model_inputs`] checks the same
/// again when a batch is cut. A positional schema none of whose names is in
/// the header is left to [`model_inputs`], which knows every withheld
/// column and says what to do when the count does not fit. `label`
/// names a numeric column that is split off as labels; every label must be
/// a finite number.
pub fn read_csv_with(
    path: &Path,
    schema: Option<&[Feature]>,
    label: Option<&str>,
    caps: &DataCaps,
) -> Result<Dataset, DataError> {
    read::read(path, schema, label, caps)
}

impl Dataset {
    /// Checks the labels against the model's task: every label finite, and
    /// for classification an integer class index in `0..n_classes`. Errors
    /// name the file line, the value and the classes count. A dataset
    /// without labels passes.
    pub fn check_labels(&self, task: Task, n_classes: usize) -> Result<(), DataError> {
        let Some(labels) = &self.labels else {
            return Ok(());
        };
        let classification = !matches!(task, Task::Regression);
        for (row, &value) in labels.iter().enumerate() {
            let line = self.lines.get(row).copied().unwrap_or(0);
            if !value.is_finite() {
                return Err(DataError::NonFiniteLabel {
                    path: self.path.clone(),
                    line,
                    column: self.label.clone().unwrap_or_default(),
                    value,
                });
            }
            if classification && (value < 0.0 || value.fract() != 0.0 || value >= n_classes as f64)
            {
                let expected = match n_classes {
                    0 => "absent: the model declares no classes".to_string(),
                    1 => "0".to_string(),
                    2 => "0 or 1".to_string(),
                    n => format!("integers 0 to {}", n - 1),
                };
                return Err(DataError::LabelNotClass {
                    path: self.path.clone(),
                    line,
                    value,
                    n_classes,
                    expected,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
