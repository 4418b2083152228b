//! What a model receives from a dataset: exactly the columns it declares.
//!
//! This is the one place a batch for a model is cut from a dataset, so the
//! rule lives here: the declared columns, in declaration order, nothing
//! else, and never a withheld column (a label or a golden step's expected
//! output) — a model that could see the answers could copy them. A model
//! declaring no inputs gets the row count and no columns.

use super::DataError;
use super::read::positional_names;
use crate::sandbox::bindings::{Batch, Column, ColumnValues, Feature, FeatureKind};
use std::collections::HashSet;
use std::path::Path;

/// How a model's declared inputs were found in a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputMatch {
    /// Every declared input is a column of the same name.
    ByName,
    /// The model declares `f0..f{n-1}` (XGBoost trained without feature
    /// names), none of them is in the dataset, and the dataset has exactly
    /// `n` columns besides the withheld ones: declared input `i` is the
    /// `i`-th of `columns`, the CSV names, listed so the user can be told.
    ByPosition {
        /// The dataset's columns, in the order they feed `f0..f{n-1}`.
        columns: Vec<String>,
    },
}

/// The error for declared inputs that are not columns: which ones, and for
/// a positional model what to do. `present[i]` says whether `schema[i]` was
/// found; `available` counts the columns besides the withheld ones.
pub(crate) fn missing(
    path: Option<&Path>,
    schema: &[Feature],
    present: &[bool],
    withheld: &[&str],
    available: usize,
) -> DataError {
    let columns: Vec<String> = schema
        .iter()
        .zip(present)
        .filter(|(_, here)| !**here)
        .map(|(f, _)| f.name.clone())
        .collect();
    let hint = if positional_names(schema) {
        let n = schema.len();
        let besides = if withheld.is_empty() {
            "in all".to_string()
        } else {
            format!(
                "besides the label ({})",
                withheld
                    .iter()
                    .map(|w| format!("`{w}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            " (the model declares positional names f0..f{last}: give the CSV exactly {n} feature columns {besides}, or name them f0..f{last}; this one has {available})",
            last = n - 1,
        )
    } else {
        String::new()
    };
    DataError::MissingColumns {
        path: path.map(Path::to_path_buf),
        columns,
        hint,
    }
}

fn kind_name(values: &ColumnValues) -> &'static str {
    match values {
        ColumnValues::Numeric(_) => "numeric",
        ColumnValues::Categorical(_) => "categorical",
    }
}

fn declared_name(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Numeric => "numeric",
        FeatureKind::Categorical => "categorical",
    }
}

/// Exactly the columns the model declares, in declaration order, never a
/// withheld column (labels), and nothing else: a model declaring no inputs
/// receives a batch with `rows` set and no columns. Each column must hold
/// the declared kind. Declared names are matched by name, or by position
/// as [`InputMatch::ByPosition`] describes; in that case the columns are
/// handed over under the declared names `f0..f{n-1}`.
pub fn model_inputs(
    batch: &Batch,
    schema: &[Feature],
    withheld: &[&str],
) -> Result<(Batch, InputMatch), DataError> {
    let mut declared = HashSet::with_capacity(schema.len());
    for f in schema {
        if withheld.contains(&f.name.as_str()) {
            return Err(DataError::WithheldInput {
                column: f.name.clone(),
            });
        }
        if !declared.insert(f.name.as_str()) {
            return Err(DataError::DuplicateInput {
                column: f.name.clone(),
            });
        }
    }
    let available: Vec<&Column> = batch
        .columns
        .iter()
        .filter(|c| !withheld.contains(&c.name.as_str()))
        .collect();
    let found: Vec<Option<&Column>> = schema
        .iter()
        .map(|f| available.iter().copied().find(|c| c.name == f.name))
        .collect();
    let (picked, how): (Vec<&Column>, InputMatch) = if found.iter().all(Option::is_some) {
        (found.into_iter().flatten().collect(), InputMatch::ByName)
    } else if positional_names(schema)
        && found.iter().all(Option::is_none)
        && available.len() == schema.len()
    {
        let columns = available.iter().map(|c| c.name.clone()).collect();
        (available, InputMatch::ByPosition { columns })
    } else {
        let present: Vec<bool> = found.iter().map(Option::is_some).collect();
        return Err(missing(None, schema, &present, withheld, available.len()));
    };
    let by_position = matches!(how, InputMatch::ByPosition { .. });
    let mut columns = Vec::with_capacity(schema.len());
    for (f, c) in schema.iter().zip(picked) {
        let found = kind_name(&c.values);
        let declared = declared_name(f.kind);
        let via = if by_position {
            format!(" (matched by position to `{}`)", f.name)
        } else {
            String::new()
        };
        if found != declared {
            return Err(DataError::KindMismatch {
                column: c.name.clone(),
                declared,
                found,
                via,
            });
        }
        columns.push(Column {
            name: f.name.clone(),
            values: c.values.clone(),
        });
    }
    Ok((
        Batch {
            rows: batch.rows,
            columns,
        },
        how,
    ))
}
