//! The host's own domain types: batches, predictions, metadata, verdicts.
//!
//! They mirror the records of `wit/airlock.wit` field for field, but belong
//! to the host, not to a binding generator: reports, datasets, contracts and
//! gates name these, so nothing that builds or reads a report links
//! wasmtime or cranelift. `airlock-runtime` converts them to and from the
//! generated binding types at the call edge.

use serde::{Deserialize, Serialize};

/// How a model's input feature is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FeatureKind {
    /// A number (missing values are NaN).
    Numeric,
    /// A string category (missing values are `None`).
    Categorical,
}

/// One input a model declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// The column name the model reads.
    pub name: String,
    /// Its kind.
    pub kind: FeatureKind,
}

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Task {
    /// One number per row.
    Regression,
    /// Two class probabilities per row.
    BinaryClassification,
    /// One probability per class per row.
    MulticlassClassification,
}

/// The shape of a model's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSchema {
    /// The task.
    pub task: Task,
    /// Class names, for classification (empty for regression).
    pub classes: Vec<String>,
}

/// What a model declares about itself; checked by [`crate::contract`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// The model's version.
    pub version: String,
    /// The inputs it reads, in order.
    pub inputs: Vec<Feature>,
    /// What it outputs.
    pub output: OutputSchema,
}

/// The values of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnValues {
    /// Numbers (NaN is missing).
    Numeric(Vec<f64>),
    /// Categories (`None` is missing).
    Categorical(Vec<Option<String>>),
}

/// A named column of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// Its values, one per row.
    pub values: ColumnValues,
}

/// Rows handed to a model or validator, stored by column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// How many rows (a model declaring no inputs still gets the count).
    pub rows: u32,
    /// The columns.
    pub columns: Vec<Column>,
}

impl Batch {
    /// The rows `range` of this batch, every column kept: the one way to cut
    /// a batch, for the gate's probes, the benches and the tests. `None`
    /// when `range` reaches past the batch's rows or past a column's values.
    pub fn rows_in(&self, range: std::ops::Range<usize>) -> Option<Batch> {
        if range.start > range.end || range.end > self.rows as usize {
            return None;
        }
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let values = match &c.values {
                    ColumnValues::Numeric(v) => {
                        ColumnValues::Numeric(v.get(range.clone())?.to_vec())
                    }
                    ColumnValues::Categorical(v) => {
                        ColumnValues::Categorical(v.get(range.clone())?.to_vec())
                    }
                };
                Some(Column {
                    name: c.name.clone(),
                    values,
                })
            })
            .collect::<Option<Vec<Column>>>()?;
        Some(Batch {
            rows: (range.end - range.start) as u32,
            columns,
        })
    }
}

/// A model's answers: `width` values per row, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    /// Values per row (1 for regression, the class count otherwise).
    pub width: u32,
    /// The values, row after row.
    pub values: Vec<f64>,
}

/// An error a plugin returns on purpose (e.g. "this input is wrong").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginError {
    /// A stable code chosen by the plugin.
    pub code: String,
    /// Details for people.
    pub message: String,
}

/// How serious a validator's finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// For information.
    Info,
    /// Worth a look; does not fail a step by itself.
    Warning,
    /// A problem.
    Error,
}

/// One thing a validator found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// A stable code chosen by the validator.
    pub code: String,
    /// Details for people.
    pub message: String,
}

/// A named number a validator measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The metric's name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// A validator's answer for one gate step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the validator passes the candidate.
    pub passed: bool,
    /// What it found.
    pub findings: Vec<Finding>,
    /// What it measured.
    pub metrics: Vec<Metric>,
}

/// What a validator says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    /// The validator's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it checks.
    pub description: String,
}

/// A model as a validator sees it: checked metadata and digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's checked metadata.
    pub metadata: ModelMetadata,
    /// Digest of the model component.
    pub digest: String,
    /// Digest of its bundle, when it has one.
    pub bundle_digest: Option<String>,
}

/// A second dataset a validator compares against (e.g. for drift).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The reference rows.
    pub data: Batch,
    /// Their labels, when the gate has them.
    pub labels: Option<Vec<f64>>,
    /// The candidate's answers on them.
    pub candidate_predictions: Predictions,
    /// The baseline's answers on them, when there is a baseline.
    pub baseline_predictions: Option<Predictions>,
}

/// Everything a validator receives for one gate step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The step's name.
    pub step: String,
    /// The step's configuration, as JSON text.
    pub config: String,
    /// The seed the validator should use for any randomness.
    pub seed: u64,
    /// The candidate model.
    pub candidate: ModelInfo,
    /// The baseline model, when the gate has one.
    pub baseline: Option<ModelInfo>,
    /// The rows the gate scored.
    pub data: Batch,
    /// Their labels, when the gate has them.
    pub labels: Option<Vec<f64>>,
    /// The candidate's answers on them.
    pub candidate_predictions: Predictions,
    /// The baseline's answers on them, when there is a baseline.
    pub baseline_predictions: Option<Predictions>,
    /// A reference dataset, when the step has one.
    pub reference: Option<Reference>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_cuts_every_column_alike() {
        let b = Batch {
            rows: 3,
            columns: vec![
                Column {
                    name: "x".into(),
                    values: ColumnValues::Numeric(vec![1.0, 2.0, 3.0]),
                },
                Column {
                    name: "c".into(),
                    values: ColumnValues::Categorical(vec![
                        Some("a".into()),
                        None,
                        Some("b".into()),
                    ]),
                },
            ],
        };
        let mid = b.rows_in(1..3).unwrap();
        assert_eq!(mid.rows, 2);
        assert_eq!(mid.columns[0].values, ColumnValues::Numeric(vec![2.0, 3.0]));
        assert_eq!(
            mid.columns[1].values,
            ColumnValues::Categorical(vec![None, Some("b".into())])
        );
        let none = b.rows_in(3..3).unwrap();
        assert_eq!(none.rows, 0);
        assert_eq!(none.columns.len(), 2);
        assert_eq!(none.columns[1].name, "c");
        assert_eq!(b.rows_in(0..3).unwrap(), b);
    }

    #[test]
    fn rows_in_refuses_rows_past_the_end_or_past_a_short_column() {
        let mut b = Batch {
            rows: 3,
            columns: vec![Column {
                name: "x".into(),
                values: ColumnValues::Numeric(vec![1.0, 2.0, 3.0]),
            }],
        };
        assert_eq!(b.rows_in(2..4), None);
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = b.rows_in(2..1);
        assert_eq!(backwards, None);
        // A batch whose count claims more rows than a column holds.
        b.columns[0].values = ColumnValues::Numeric(vec![1.0]);
        assert_eq!(b.rows_in(0..2), None);
        assert_eq!(b.rows_in(0..1).unwrap().rows, 1);
    }
}
