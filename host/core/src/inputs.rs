//! What a model receives from a dataset: exactly the columns it declares.
//!
//! This is the one place a batch for a model is cut from a dataset, so the
//! rule lives here: the declared columns, in declaration order, nothing
//! else, and never a withheld column (a label or a golden step's expected
//! output) — a model that could see the answers could copy them. A model
//! declaring no inputs gets the row count and no columns.
//!
//! It lives in `airlock-core` because two layers cut batches: the gate
//! (from datasets) and the runtime's `candidate` interface (from a
//! validator's probe), and the runtime must not depend on the gate.

use crate::types::{Batch, Column, ColumnValues, Feature, FeatureKind};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

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

/// Why a model's inputs cannot be cut from a batch or a dataset header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// Columns the model needs are absent.
    #[error("{}missing column(s) the model needs: {}{hint}", at(path.as_deref()), list_names(columns))]
    MissingColumns {
        /// The file, when the check was made while reading it.
        path: Option<PathBuf>,
        /// The absent columns.
        columns: Vec<String>,
        /// What to do, starting with a space (empty when there is nothing
        /// to add).
        hint: String,
    },
    /// The model declares a column that is withheld from models.
    #[error(
        "the model declares `{column}` as an input, but `{column}` is withheld from models (it is a label or an expected output)"
    )]
    WithheldInput {
        /// The column.
        column: String,
    },
    /// The model declares the same input twice.
    #[error("the model declares input `{column}` more than once")]
    DuplicateInput {
        /// The column.
        column: String,
    },
    /// A column's type disagrees with what the model declares.
    #[error("column `{column}` holds {found} values but the model declares it {declared}{via}")]
    KindMismatch {
        /// The CSV column.
        column: String,
        /// What the model declares: `numeric` or `categorical`.
        declared: &'static str,
        /// What the column holds.
        found: &'static str,
        /// ` (matched by position to `f3`)` when matched by position.
        via: String,
    },
}

/// `"{path}: "`, or nothing for an error found after reading.
fn at(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

/// At most eight names, then how many more: errors stay readable for a
/// model with hundreds of inputs.
fn list_names(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// Whether `schema` is `f0..f{n-1}`: the names XGBoost gives features when
/// it was trained without names, which may then be matched by position.
pub fn positional_names(schema: &[Feature]) -> bool {
    !schema.is_empty()
        && schema
            .iter()
            .enumerate()
            .all(|(i, f)| f.name.strip_prefix('f') == Some(i.to_string().as_str()))
}

/// The error for declared inputs that are not columns: which ones, and for
/// a positional model what to do. `present[i]` says whether `schema[i]` was
/// found; `available` counts the columns besides the withheld ones.
pub fn missing(
    path: Option<&Path>,
    schema: &[Feature],
    present: &[bool],
    withheld: &[&str],
    available: usize,
) -> InputError {
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
    InputError::MissingColumns {
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
) -> Result<(Batch, InputMatch), InputError> {
    let mut declared = HashSet::with_capacity(schema.len());
    for f in schema {
        if withheld.contains(&f.name.as_str()) {
            return Err(InputError::WithheldInput {
                column: f.name.clone(),
            });
        }
        if !declared.insert(f.name.as_str()) {
            return Err(InputError::DuplicateInput {
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
            return Err(InputError::KindMismatch {
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
