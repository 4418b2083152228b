//! Statistics for airlock validator plugins.
//!
//! Validators decide whether a model may ship, so the numbers they compute must
//! mean the same thing as the numbers a data scientist sees in Python. This crate
//! re-implements, in pure Rust with no I/O, the subset of `sklearn.metrics`,
//! `scipy.stats` and Evidently's drift tests that gates rely on, and is checked
//! against fixtures produced by those libraries (see `tests/fixtures/stats/`).
//!
//! It builds for `wasm32-wasip2` (inside the sandbox) and natively (host tests).
#![forbid(unsafe_code)]

pub mod drift;
pub mod metrics;
mod special;

use std::fmt;

/// Why a statistic could not be computed.
///
/// Validators turn these into findings, so each variant names the problem in
/// words a plugin author can act on instead of producing a silent NaN.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsError {
    /// A sample that must contain at least one value was empty.
    Empty {
        /// Which input was empty (e.g. `"labels"`, `"reference"`).
        what: &'static str,
    },
    /// Two inputs that must be aligned row by row have different lengths.
    LengthMismatch {
        /// Name of the first input.
        left: &'static str,
        /// Its length.
        left_len: usize,
        /// Name of the second input.
        right: &'static str,
        /// Its length.
        right_len: usize,
    },
    /// A NaN or infinite value appeared where only finite numbers make sense.
    NotFinite {
        /// Which input held the value.
        what: &'static str,
        /// Row (0-based; messages count from 1) of the offending value.
        index: usize,
    },
    /// A probability was outside `[0, 1]`.
    ProbabilityOutOfRange {
        /// Row (0-based; messages count from 1) of the offending value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A class label was not a non-negative integer below the class count.
    InvalidLabel {
        /// Which input held the label.
        what: &'static str,
        /// Row of the offending label.
        index: usize,
        /// The label value.
        value: f64,
    },
    /// The computation needs at least two distinct classes / categories.
    TooFewClasses {
        /// What was counted.
        what: &'static str,
        /// How many distinct values were found.
        found: usize,
    },
    /// Too few samples for the statistic to be defined.
    TooFewSamples {
        /// Which statistic.
        what: &'static str,
        /// Minimum number of samples needed.
        needed: usize,
        /// Number provided.
        found: usize,
    },
    /// A probability matrix's flat length is not a multiple of its width, or the width is unusable.
    BadShape {
        /// Row width that was declared.
        width: usize,
        /// Flat length that was provided.
        len: usize,
    },
    /// Probability rows must sum to one for this metric (sklearn refuses otherwise).
    RowsDoNotSumToOne {
        /// First row that failed.
        row: usize,
        /// Its sum.
        sum: f64,
    },
    /// The selected drift test cannot be applied to this kind of column.
    WrongColumnKind {
        /// The test.
        test: &'static str,
        /// What it needs.
        needs: &'static str,
    },
    /// Reference and current columns are of different kinds.
    MixedColumnKinds,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsError::Empty { what } => {
                write!(f, "{what} is empty; at least one value is required")
            }
            StatsError::LengthMismatch {
                left,
                left_len,
                right,
                right_len,
            } => write!(
                f,
                "length mismatch: {left} has {left_len} values but {right} has {right_len}"
            ),
            StatsError::NotFinite { what, index } => {
                write!(
                    f,
                    "{what} at data row {} is NaN or infinite; only finite values are allowed",
                    index + 1
                )
            }
            StatsError::ProbabilityOutOfRange { index, value } => {
                write!(
                    f,
                    "a probability for data row {} is {value}, outside [0, 1]",
                    index + 1
                )
            }
            StatsError::InvalidLabel { what, index, value } => write!(
                f,
                "{what} at data row {} is {value}; class labels must be integers 0..number_of_classes",
                index + 1
            ),
            StatsError::TooFewClasses { what, found } => write!(
                f,
                "{what} has {found} distinct value(s); at least 2 are required"
            ),
            StatsError::TooFewSamples {
                what,
                needed,
                found,
            } => write!(f, "{what} needs at least {needed} samples, got {found}"),
            StatsError::BadShape { width, len } => write!(
                f,
                "probability matrix of {len} values cannot be split into rows of width {width}"
            ),
            StatsError::RowsDoNotSumToOne { row, sum } => write!(
                f,
                "the probabilities for data row {} sum to {sum}, not 1; pass probabilities, not raw scores",
                row + 1
            ),
            StatsError::WrongColumnKind { test, needs } => {
                write!(f, "drift test {test} needs {needs} columns")
            }
            StatsError::MixedColumnKinds => {
                write!(
                    f,
                    "reference and current columns must both be numeric or both categorical"
                )
            }
        }
    }
}

impl std::error::Error for StatsError {}
