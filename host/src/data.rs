//! Datasets: typed columnar batches read from CSV files.
//!
//! The host reads *data* (CSV rows to feed models and validators), never
//! model files. A CSV has a header of column names; an empty cell is a
//! missing value (NaN for numeric columns). Columns the model declares as
//! numeric must hold numbers, and every declared input must be present —
//! both are checked here so that a bad file is refused with an error that
//! names the column and line, before any plugin runs.

use crate::digest::Digest;
use crate::sandbox::bindings::{Batch, Column, ColumnValues, Feature, FeatureKind};
use std::path::{Path, PathBuf};

/// A dataset read from a CSV file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Where it was read from.
    pub path: PathBuf,
    /// Digest of the file's bytes.
    pub digest: Digest,
    /// Every column except the label, typed.
    pub batch: Batch,
    /// The label column, when one was asked for.
    pub labels: Option<Vec<f64>>,
}

/// Why a dataset was refused.
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
    /// The CSV structure is broken.
    #[error("{path}: malformed CSV: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Columns the model needs are absent.
    #[error("{path}: missing column(s) the model needs: {}", columns.join(", "))]
    MissingColumns {
        /// The file.
        path: PathBuf,
        /// The absent columns.
        columns: Vec<String>,
    },
    /// A numeric column holds something that is not a number.
    #[error("{path}: line {line}, column `{column}`: `{value}` is not a number")]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// 1-based line in the file.
        line: u64,
        /// The column.
        column: String,
        /// The offending cell.
        value: String,
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
    /// The file has no data rows.
    #[error("{path}: no data rows")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl Dataset {
    /// Labels must be finite; for classification, integer class indices
    /// below `n_classes`.
    pub fn check_labels(
        &self,
        task: crate::sandbox::bindings::Task,
        n_classes: usize,
    ) -> Result<(), DataError> {
        let Some(labels) = &self.labels else {
            return Ok(());
        };
        let classification = task != crate::sandbox::bindings::Task::Regression;
        for (i, v) in labels.iter().enumerate() {
            let ok = v.is_finite()
                && (!classification
                    || (v.fract() == 0.0 && *v >= 0.0 && (*v as usize) < n_classes));
            if !ok {
                return Err(DataError::Malformed {
                    path: self.path.clone(),
                    message: format!(
                        "data row {}: label {v} is not a class index below {n_classes}",
                        i + 1
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Parses one numeric cell: empty (or `NaN`) is missing; `inf` is allowed.
pub fn parse_number(cell: &str) -> Option<f64> {
    let t = cell.trim();
    if t.is_empty() {
        return Some(f64::NAN);
    }
    t.parse::<f64>().ok()
}

/// Reads `path`. `schema` (a model's declared inputs) decides column kinds
/// and which columns must be present; columns it does not name are kept,
/// numeric when every cell parses as a number and categorical otherwise.
/// `label` names a numeric column that is split off as labels.
pub fn read_csv(
    path: &Path,
    schema: Option<&[Feature]>,
    label: Option<&str>,
) -> Result<Dataset, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = Digest::of(&bytes);
    let p = || path.to_path_buf();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| DataError::Malformed {
            path: p(),
            message: e.to_string(),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    if let Some(dup) = headers
        .iter()
        .enumerate()
        .find(|(i, h)| headers[..*i].contains(h))
    {
        return Err(DataError::Malformed {
            path: p(),
            message: format!("duplicate column `{}`", dup.1),
        });
    }
    let mut cells: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    let mut lines: Vec<u64> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DataError::Malformed {
            path: p(),
            message: e.to_string(),
        })?;
        lines.push(record.position().map_or(0, |pos| pos.line()));
        for (i, cell) in record.iter().enumerate() {
            cells[i].push(cell.to_string());
        }
    }
    if lines.is_empty() {
        return Err(DataError::Empty { path: p() });
    }
    if let Some(schema) = schema {
        let missing: Vec<String> = schema
            .iter()
            .filter(|f| !headers.contains(&f.name))
            .map(|f| f.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(DataError::MissingColumns {
                path: p(),
                columns: missing,
            });
        }
    }
    let mut labels = None;
    if let Some(label) = label {
        let Some(idx) = headers.iter().position(|h| h == label) else {
            return Err(DataError::MissingLabel {
                path: p(),
                column: label.to_string(),
            });
        };
        let mut values = Vec::with_capacity(lines.len());
        for (row, cell) in cells[idx].iter().enumerate() {
            if cell.is_empty() {
                return Err(DataError::EmptyLabel {
                    path: p(),
                    line: lines[row],
                    column: label.to_string(),
                });
            }
            values.push(numeric_cell(path, label, cell, lines[row])?);
        }
        labels = Some(values);
    }
    let mut columns = Vec::new();
    for (i, name) in headers.iter().enumerate() {
        if Some(name.as_str()) == label {
            continue;
        }
        let declared = schema.and_then(|s| s.iter().find(|f| &f.name == name).map(|f| f.kind));
        let values = match declared {
            Some(FeatureKind::Numeric) => ColumnValues::Numeric(
                cells[i]
                    .iter()
                    .zip(&lines)
                    .map(|(c, l)| numeric_cell(path, name, c, *l))
                    .collect::<Result<_, _>>()?,
            ),
            Some(FeatureKind::Categorical) => categorical(&cells[i]),
            None => match cells[i]
                .iter()
                .map(|c| parse_number(c))
                .collect::<Option<Vec<f64>>>()
            {
                Some(v) => ColumnValues::Numeric(v),
                None => categorical(&cells[i]),
            },
        };
        columns.push(Column {
            name: name.clone(),
            values,
        });
    }
    Ok(Dataset {
        path: p(),
        digest,
        batch: Batch {
            rows: lines.len() as u32,
            columns,
        },
        labels,
    })
}

fn numeric_cell(path: &Path, column: &str, cell: &str, line: u64) -> Result<f64, DataError> {
    parse_number(cell).ok_or_else(|| DataError::NotNumeric {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        value: cell.chars().take(40).collect(),
    })
}

fn categorical(cells: &[String]) -> ColumnValues {
    ColumnValues::Categorical(
        cells
            .iter()
            .map(|c| (!c.is_empty()).then(|| c.clone()))
            .collect(),
    )
}

/// How a model's declared inputs were found in a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputMatch {
    /// Every declared input is a column of the same name.
    ByName,
    /// Declared positional names `f0..fN` matched these columns in order.
    ByPosition {
        /// The dataset columns used, in the model's order.
        columns: Vec<String>,
    },
}

/// Exactly the columns the model declares, in declaration order, never a
/// withheld column (labels), and nothing else: a model declaring no inputs
/// receives a batch with `rows` set and no columns.
pub fn model_inputs(
    batch: &Batch,
    schema: &[Feature],
    withheld: &[&str],
) -> Result<(Batch, InputMatch), DataError> {
    let mut columns = Vec::with_capacity(schema.len());
    let mut missing = Vec::new();
    for f in schema {
        match batch
            .columns
            .iter()
            .find(|c| c.name == f.name && !withheld.contains(&c.name.as_str()))
        {
            Some(c) => columns.push(c.clone()),
            None => missing.push(f.name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(DataError::MissingColumns {
            path: PathBuf::new(),
            columns: missing,
        });
    }
    Ok((
        Batch {
            rows: batch.rows,
            columns,
        },
        InputMatch::ByName,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn num(name: &str) -> Feature {
        Feature {
            name: name.into(),
            kind: FeatureKind::Numeric,
        }
    }

    #[test]
    fn reads_typed_columns_missing_values_and_labels() {
        let f = write("a,b,group,target\n1,,x,0\n2.5,inf,y,1\n");
        let d = read_csv(f.path(), Some(&[num("a"), num("b")]), Some("target")).unwrap();
        assert_eq!(d.batch.rows, 2);
        assert_eq!(d.labels, Some(vec![0.0, 1.0]));
        let ColumnValues::Numeric(b) = &d.batch.columns[1].values else {
            panic!()
        };
        assert!(b[0].is_nan() && b[1].is_infinite());
        assert!(matches!(
            d.batch.columns[2].values,
            ColumnValues::Categorical(_)
        ));
    }

    #[test]
    fn errors_name_the_problem() {
        let f = write("a,target\n1,0\nabc,1\n");
        let e = read_csv(f.path(), Some(&[num("a")]), Some("target")).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 3, column `a`: `abc` is not a number"),
            "{e}"
        );
        let e = read_csv(f.path(), Some(&[num("a"), num("zz")]), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("missing column(s) the model needs: zz"),
            "{e}"
        );
        let e = read_csv(f.path(), None, Some("label")).unwrap_err();
        assert!(e.to_string().contains("no label column `label`"), "{e}");
        let f = write("a,b\n1\n");
        let e = read_csv(f.path(), None, None).unwrap_err();
        assert!(e.to_string().contains("malformed CSV"), "{e}");
        let f = write("a,a\n1,2\n");
        assert!(
            read_csv(f.path(), None, None)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
    }

    #[test]
    fn model_inputs_follow_schema_order() {
        let f = write("b,a,c\n1,2,3\n");
        let d = read_csv(f.path(), None, None).unwrap();
        let (m, _) = model_inputs(&d.batch, &[num("a"), num("b")], &[]).unwrap();
        let names: Vec<_> = m.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
