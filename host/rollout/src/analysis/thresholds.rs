//! The limits an analysis interval is held to ([`Thresholds`]) and their
//! validation ([`ThresholdError`]). Apart from [`super`] because a policy
//! is configured and checked separately from measuring; re-exported there.

use serde::{Deserialize, Serialize};

/// The limits one interval is held to. Omitted fields take their
/// [`Default`] (a policy names only what it changes); unknown ones are
/// refused, so a misspelt limit is never silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Requests needed before the interval says anything.
    pub min_requests: u64,
    /// Highest acceptable share of failed requests (0..=1).
    pub max_error_rate: f64,
    /// Highest acceptable 99th-percentile latency, in milliseconds.
    pub max_p99_ms: Option<f64>,
    /// Lowest acceptable accuracy on labelled requests (0..=1).
    pub min_accuracy: Option<f64>,
    /// Largest acceptable accuracy drop versus stable in the same window.
    pub max_accuracy_drop: Option<f64>,
    /// Largest acceptable share of shadow comparisons that disagree.
    pub max_disagreement: Option<f64>,
    /// Labels needed before accuracy is judged.
    pub min_labels: u64,
}

impl Default for Thresholds {
    /// At least 20 requests and 20 labels per interval, at most 1 % errors,
    /// nothing else judged.
    fn default() -> Thresholds {
        Thresholds {
            min_requests: 20,
            max_error_rate: 0.01,
            max_p99_ms: None,
            min_accuracy: None,
            max_accuracy_drop: None,
            max_disagreement: None,
            min_labels: 20,
        }
    }
}

/// Why thresholds are unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    /// A threshold is NaN, negative, or a share above 1.
    #[error("threshold {name} is {value}, expected {expected}")]
    OutOfRange {
        /// Which threshold.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The valid range in words.
        expected: &'static str,
    },
}

impl Thresholds {
    /// Checks every threshold is a number in its range: shares in `[0, 1]`,
    /// the latency limit positive and finite.
    pub fn validate(&self) -> Result<(), ThresholdError> {
        let share = |name, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ThresholdError::OutOfRange {
                    name,
                    value: v,
                    expected: "a share in [0, 1]",
                })
            }
        };
        share("max_error_rate", self.max_error_rate)?;
        if let Some(v) = self.min_accuracy {
            share("min_accuracy", v)?;
        }
        if let Some(v) = self.max_accuracy_drop {
            share("max_accuracy_drop", v)?;
        }
        if let Some(v) = self.max_disagreement {
            share("max_disagreement", v)?;
        }
        if let Some(v) = self.max_p99_ms
            && !(v.is_finite() && v > 0.0)
        {
            return Err(ThresholdError::OutOfRange {
                name: "max_p99_ms",
                value: v,
                expected: "a positive number of milliseconds",
            });
        }
        Ok(())
    }
}
