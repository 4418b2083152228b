//! A pure-Rust evaluator for airlock's linear-model JSON format.
//!
//! Why it exists: linear and logistic regression are the simplest models a
//! team deploys, and the host must not parse their files either; this module
//! parses the `airlock-linear` format (documented in
//! `tests/fixtures/models/LINEAR_FORMAT.md`) and scores rows inside the
//! sandbox, with no I/O.
//!
//! Predictions: regression is `x·β + b`; binary classification is the
//! sigmoid of one score, reported as `[1 - p, p]`; multi-class is the softmax
//! of one score per class. Features are standardised as `(x - mean) / scale`
//! first when the model carries a standardisation. Everything is computed in
//! `f64`, matching scikit-learn.
//!
//! Linear models have no notion of a missing value, so a NaN in the input is
//! an error naming the row and the feature, never a silent guess.
#![forbid(unsafe_code)]

use serde::Deserialize;

/// The `format` tag every linear-model file carries.
pub const FORMAT: &str = "airlock-linear";
/// The newest `format_version` this evaluator reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a linear model could not be loaded or evaluated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinearError {
    /// The bytes are not JSON of the expected shape (includes missing fields).
    #[error("malformed airlock-linear model: {0}")]
    Malformed(String),
    /// A field is present but its value makes no sense.
    #[error("airlock-linear model field `{field}` is invalid: {reason}")]
    InvalidField {
        /// Field name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The input rows do not fit the model.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A value is missing (NaN), which linear models cannot score.
    #[error("row {row}: feature `{feature}` is missing (NaN); linear models need every value")]
    MissingValue {
        /// Zero-based row index in the batch.
        row: usize,
        /// Name of the feature.
        feature: String,
    },
    /// Named columns do not cover the model's features.
    #[error("input is missing model feature(s): {}", .0.join(", "))]
    MissingFeatures(Vec<String>),
}

/// What the model predicts, which decides the prediction width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// One number per row.
    Regression,
    /// Two probabilities per row: `[1 - p, p]`.
    BinaryClassification,
    /// One probability per class per row.
    MulticlassClassification,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    format: String,
    format_version: u32,
    #[serde(default)]
    #[allow(dead_code)]
    producer: Option<serde_json::Value>,
    task: Task,
    feature_names: Vec<String>,
    #[serde(default)]
    classes: Vec<String>,
    coefficients: Vec<Vec<f64>>,
    intercepts: Vec<f64>,
    #[serde(default)]
    standardization: Option<RawStandardization>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStandardization {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

/// A parsed, validated linear model, ready to score rows.
#[derive(Debug, Clone)]
pub struct LinearModel {
    task: Task,
    feature_names: Vec<String>,
    classes: Vec<String>,
    /// One row of `feature_names.len()` coefficients per output score.
    coefficients: Vec<Vec<f64>>,
    intercepts: Vec<f64>,
    /// `(mean, scale)` per feature, applied before the coefficients.
    standardization: Option<(Vec<f64>, Vec<f64>)>,
}

fn invalid(field: &str, reason: String) -> LinearError {
    LinearError::InvalidField {
        field: field.to_owned(),
        reason,
    }
}

fn all_finite(field: &str, values: &[f64]) -> Result<(), LinearError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(invalid(
            field,
            format!("entry {i} is {} (must be finite)", values[i]),
        )),
        None => Ok(()),
    }
}

impl LinearModel {
    /// Parse and validate a model in the `airlock-linear` JSON format.
    pub fn from_json(bytes: &[u8]) -> Result<LinearModel, LinearError> {
        let raw: RawModel =
            serde_json::from_slice(bytes).map_err(|e| LinearError::Malformed(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(invalid(
                "format",
                format!("expected `{FORMAT}`, found `{}`", raw.format),
            ));
        }
        if raw.format_version == 0 || raw.format_version > FORMAT_VERSION {
            return Err(invalid(
                "format_version",
                format!(
                    "version {} is not supported (this evaluator reads 1..={FORMAT_VERSION})",
                    raw.format_version
                ),
            ));
        }
        let n = raw.feature_names.len();
        if n == 0 {
            return Err(invalid(
                "feature_names",
                "the model has no features".to_owned(),
            ));
        }
        for (i, name) in raw.feature_names.iter().enumerate() {
            if raw.feature_names[..i].contains(name) {
                return Err(invalid("feature_names", format!("`{name}` appears twice")));
            }
        }
        let scores = match raw.task {
            Task::Regression => {
                if !raw.classes.is_empty() {
                    return Err(invalid(
                        "classes",
                        "must be empty for regression".to_owned(),
                    ));
                }
                1
            }
            Task::BinaryClassification => {
                if raw.classes.len() != 2 {
                    return Err(invalid(
                        "classes",
                        format!("binary classification needs 2, found {}", raw.classes.len()),
                    ));
                }
                1
            }
            Task::MulticlassClassification => {
                if raw.classes.len() < 2 {
                    return Err(invalid(
                        "classes",
                        format!(
                            "multi-class classification needs at least 2, found {}",
                            raw.classes.len()
                        ),
                    ));
                }
                raw.classes.len()
            }
        };
        if raw.coefficients.len() != scores {
            return Err(invalid(
                "coefficients",
                format!(
                    "{} rows, but task {:?} with {} classes needs {scores}",
                    raw.coefficients.len(),
                    raw.task,
                    raw.classes.len()
                ),
            ));
        }
        for (i, row) in raw.coefficients.iter().enumerate() {
            if row.len() != n {
                return Err(invalid(
                    "coefficients",
                    format!("row {i} has {} entries for {n} features", row.len()),
                ));
            }
            all_finite(&format!("coefficients[{i}]"), row)?;
        }
        if raw.intercepts.len() != scores {
            return Err(invalid(
                "intercepts",
                format!("{} entries, expected {scores}", raw.intercepts.len()),
            ));
        }
        all_finite("intercepts", &raw.intercepts)?;
        let standardization = match raw.standardization {
            None => None,
            Some(s) => {
                if s.mean.len() != n || s.scale.len() != n {
                    return Err(invalid(
                        "standardization",
                        format!(
                            "mean has {} and scale {} entries for {n} features",
                            s.mean.len(),
                            s.scale.len()
                        ),
                    ));
                }
                all_finite("standardization.mean", &s.mean)?;
                all_finite("standardization.scale", &s.scale)?;
                if let Some(i) = s.scale.iter().position(|&v| v == 0.0) {
                    return Err(invalid(
                        "standardization.scale",
                        format!("entry {i} is zero"),
                    ));
                }
                Some((s.mean, s.scale))
            }
        };
        Ok(LinearModel {
            task: raw.task,
            feature_names: raw.feature_names,
            classes: raw.classes,
            coefficients: raw.coefficients,
            intercepts: raw.intercepts,
            standardization,
        })
    }

    /// The task the model was trained for.
    pub fn task(&self) -> Task {
        self.task
    }

    /// Feature names in the order the coefficients use.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Class labels in output order; empty for regression.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Whether inputs are standardised before the coefficients apply.
    pub fn is_standardized(&self) -> bool {
        self.standardization.is_some()
    }

    /// Values per row that [`LinearModel::predict`] returns.
    pub fn output_width(&self) -> usize {
        match self.task {
            Task::Regression => 1,
            Task::BinaryClassification => 2,
            Task::MulticlassClassification => self.classes.len(),
        }
    }

    /// Map named input columns to the model's features: for each model
    /// feature in order, the index of the column that feeds it. Every missing
    /// feature is named in the error; extra columns are ignored.
    pub fn map_columns<S: AsRef<str>>(&self, columns: &[S]) -> Result<Vec<usize>, LinearError> {
        airlock_guest::batch::positions_by_name(&self.feature_names, columns)
            .map_err(LinearError::MissingFeatures)
    }

    /// Predict for row-major `rows` of exactly `n_features` values each, in
    /// the model's feature order. Returns `rows * output_width()` values.
    pub fn predict(&self, rows: &[f64], n_features: usize) -> Result<Vec<f64>, LinearError> {
        let n = self.feature_names.len();
        if n_features != n {
            return Err(LinearError::BadInput(format!(
                "rows have {n_features} features but the model needs {n}"
            )));
        }
        if !rows.len().is_multiple_of(n) {
            return Err(LinearError::BadInput(format!(
                "{} values do not divide into rows of {n} features",
                rows.len()
            )));
        }
        let mut out = Vec::with_capacity(rows.len() / n * self.output_width());
        let mut x = vec![0.0; n];
        let mut scores = vec![0.0; self.coefficients.len()];
        for (r, row) in rows.chunks_exact(n).enumerate() {
            for (j, (&v, xj)) in row.iter().zip(x.iter_mut()).enumerate() {
                if v.is_nan() {
                    return Err(LinearError::MissingValue {
                        row: r,
                        feature: self.feature_names[j].clone(),
                    });
                }
                *xj = match &self.standardization {
                    Some((mean, scale)) => (v - mean[j]) / scale[j],
                    None => v,
                };
            }
            for ((score, coef), b) in scores
                .iter_mut()
                .zip(&self.coefficients)
                .zip(&self.intercepts)
            {
                *score = coef.iter().zip(&x).map(|(c, v)| c * v).sum::<f64>() + b;
            }
            match self.task {
                Task::Regression => out.push(scores[0]),
                Task::BinaryClassification => {
                    let p = sigmoid(scores[0]);
                    out.push(1.0 - p);
                    out.push(p);
                }
                Task::MulticlassClassification => {
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                    out.extend(scores.iter().map(|s| (s - max).exp() / sum));
                }
            }
        }
        Ok(out)
    }
}

/// Numerically stable logistic function.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
