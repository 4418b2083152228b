//! One analysis interval's measurement.
//!
//! Modelled on Argo Rollouts' and Flagger's canary analysis: every interval
//! the server gathers what the canary did ([`WindowStats`]) and [`measure`]
//! turns it into one [`Measurement`]: pass, fail (with every reason), error
//! (the measurement itself broke) or inconclusive (not enough data). A window
//! with no data is inconclusive and never a pass: silence must not promote a
//! model. [`crate::rollout::Rollout`] acts on the measurements.
//!
//! Order of the rules:
//! 1. a `measurement_error`, a NaN anywhere, a NaN threshold or counts that
//!    contradict each other (more errors than requests...) => `Error`;
//! 2. any failing continuous validator => `Fail` (validators judged their own
//!    data, so this holds even in a quiet window);
//! 3. fewer than `min_requests` requests => `Inconclusive` (rates over a
//!    handful of requests are noise);
//! 4. any threshold breached => `Fail`, listing every breach;
//! 5. otherwise `Pass`.
//!
//! Accuracy checks run only with at least `min_labels` labels (and at least
//! one); the accuracy-drop check also needs the stable version's accuracy in
//! the same window; the shadow check needs at least one comparison; the p99
//! check needs a p99. A check that cannot run is *skipped*, never passed:
//! [`measure_detail`] lists evaluated and skipped checks so the server can
//! show that a pass was reached without, say, any labels.

use serde::{Deserialize, Serialize};

mod thresholds;

pub use thresholds::{ThresholdError, Thresholds};

/// A continuous validator's verdict on this interval's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorResult {
    /// The validator's name.
    pub name: String,
    /// Whether it passed the candidate.
    pub passed: bool,
    /// What it found, in a line.
    pub summary: String,
}

/// What the candidate did during one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Requests the candidate answered (or tried to).
    pub requests: u64,
    /// Of those, how many failed.
    pub errors: u64,
    /// The 99th-percentile latency in milliseconds, when measured.
    pub p99_ms: Option<f64>,
    /// Predictions whose label arrived.
    pub labelled: u64,
    /// Of those, how many were right.
    pub correct: u64,
    /// The stable version's accuracy over the same window, when known.
    pub stable_accuracy: Option<f64>,
    /// Shadow comparisons made.
    pub compared: u64,
    /// Of those, how many disagreed.
    pub disagreed: u64,
    /// Continuous validation verdicts in this window.
    pub validators: Vec<ValidatorResult>,
    /// Set when measuring broke (e.g. a validator crashed); counts toward the
    /// consecutive-error limit.
    pub measurement_error: Option<String>,
}

/// The outcome of one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measurement {
    /// Every evaluated check passed.
    Pass,
    /// At least one check failed; one plain-words reason per failure.
    Fail {
        /// Each failure, naming metric, observed value and limit.
        reasons: Vec<String>,
    },
    /// Not enough data to judge.
    Inconclusive {
        /// What was missing.
        reason: String,
    },
    /// The measurement itself could not be made.
    Error {
        /// What broke.
        reason: String,
    },
}

/// A check that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The metric ("error_rate", "p99_ms", "accuracy", "accuracy_drop",
    /// "disagreement", or `validator:<name>`).
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was observed against which limit.
    pub detail: String,
}

/// A configured check that could not run for lack of data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The metric, as in [`Check::name`].
    pub name: String,
    /// Why it could not run.
    pub reason: String,
}

/// A measurement with the checks behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementDetail {
    /// The outcome, as [`measure`] returns it.
    pub measurement: Measurement,
    /// Checks that ran (empty when the outcome was decided earlier).
    pub evaluated: Vec<Check>,
    /// Configured checks that could not run.
    pub skipped: Vec<Skipped>,
}

/// Measures one interval; see the module docs for the rules.
pub fn measure(t: &Thresholds, w: &WindowStats) -> Measurement {
    measure_detail(t, w).measurement
}

fn error(reason: String) -> MeasurementDetail {
    MeasurementDetail {
        measurement: Measurement::Error { reason },
        evaluated: Vec::new(),
        skipped: Vec::new(),
    }
}

/// Slack on every comparison so limits are inclusive despite rounding
/// (0.87 - 0.85 is 0.020000000000000018 in binary floating point).
const SLACK: f64 = 1e-9;

fn ratio(n: u64, d: u64) -> f64 {
    n as f64 / d as f64
}

/// Measures one interval and reports which checks ran and which were skipped.
pub fn measure_detail(t: &Thresholds, w: &WindowStats) -> MeasurementDetail {
    if let Some(e) = &w.measurement_error {
        return error(format!("measurement failed: {e}"));
    }
    if let Err(e) = t.validate() {
        return error(e.to_string());
    }
    for (name, v) in [("p99_ms", w.p99_ms), ("stable_accuracy", w.stable_accuracy)] {
        if let Some(v) = v
            && v.is_nan()
        {
            return error(format!("{name} is NaN"));
        }
    }
    for (part, whole, a, b) in [
        (w.errors, w.requests, "errors", "requests"),
        (w.correct, w.labelled, "correct", "labelled"),
        (w.disagreed, w.compared, "disagreed", "compared"),
    ] {
        if part > whole {
            return error(format!("inconsistent stats: {a} {part} over {b} {whole}"));
        }
    }

    let mut evaluated = Vec::new();
    let mut skipped = Vec::new();
    let mut reasons = Vec::new();
    let mut check = |name: String, passed: bool, detail: String, reasons: &mut Vec<String>| {
        if !passed {
            reasons.push(detail.clone());
        }
        evaluated.push(Check {
            name,
            passed,
            detail,
        });
    };

    for v in &w.validators {
        let detail = if v.passed {
            format!("validator {} passed: {}", v.name, v.summary)
        } else {
            format!("validator {} failed: {}", v.name, v.summary)
        };
        check(
            format!("validator:{}", v.name),
            v.passed,
            detail,
            &mut reasons,
        );
    }

    if w.requests < t.min_requests.max(1) && reasons.is_empty() {
        let reason = if w.requests == 0 {
            "no requests in this window".to_string()
        } else {
            format!(
                "only {} of the {} requests needed",
                w.requests, t.min_requests
            )
        };
        return MeasurementDetail {
            measurement: Measurement::Inconclusive { reason },
            evaluated,
            skipped,
        };
    }
    if w.requests >= t.min_requests && w.requests > 0 {
        let rate = ratio(w.errors, w.requests);
        let passed = rate <= t.max_error_rate + SLACK;
        let word = if passed { "within" } else { "over" };
        check(
            "error_rate".into(),
            passed,
            format!(
                "error rate {rate:.3} {word} limit {:.3} ({} of {} requests)",
                t.max_error_rate, w.errors, w.requests
            ),
            &mut reasons,
        );

        if let Some(limit) = t.max_p99_ms {
            match w.p99_ms {
                Some(p99) => {
                    let passed = p99 <= limit + SLACK;
                    let word = if passed { "within" } else { "over" };
                    check(
                        "p99_ms".into(),
                        passed,
                        format!("p99 latency {p99:.1} ms {word} limit {limit:.1} ms"),
                        &mut reasons,
                    );
                }
                None => skipped.push(Skipped {
                    name: "p99_ms".into(),
                    reason: "no latency measured".into(),
                }),
            }
        }

        let enough_labels = w.labelled >= t.min_labels.max(1);
        let accuracy = ratio(w.correct, w.labelled);
        let labels_missing = || {
            format!(
                "only {} labelled of the {} needed",
                w.labelled,
                t.min_labels.max(1)
            )
        };
        if let Some(limit) = t.min_accuracy {
            if enough_labels {
                let passed = accuracy >= limit - SLACK;
                let word = if passed { "within" } else { "under" };
                check(
                    "accuracy".into(),
                    passed,
                    format!(
                        "accuracy {accuracy:.3} {word} limit {limit:.3} ({} correct of {} labelled)",
                        w.correct, w.labelled
                    ),
                    &mut reasons,
                );
            } else {
                skipped.push(Skipped {
                    name: "accuracy".into(),
                    reason: labels_missing(),
                });
            }
        }
        if let Some(limit) = t.max_accuracy_drop {
            match (enough_labels, w.stable_accuracy) {
                (true, Some(stable)) => {
                    let drop = stable - accuracy;
                    let passed = drop <= limit + SLACK;
                    let word = if passed { "within" } else { "over" };
                    check(
                        "accuracy_drop".into(),
                        passed,
                        format!(
                            "accuracy drop {drop:.3} {word} limit {limit:.3} (candidate {accuracy:.3}, stable {stable:.3})"
                        ),
                        &mut reasons,
                    );
                }
                (false, _) => skipped.push(Skipped {
                    name: "accuracy_drop".into(),
                    reason: labels_missing(),
                }),
                (true, None) => skipped.push(Skipped {
                    name: "accuracy_drop".into(),
                    reason: "no stable accuracy in this window".into(),
                }),
            }
        }
        if let Some(limit) = t.max_disagreement {
            if w.compared > 0 {
                let rate = ratio(w.disagreed, w.compared);
                let passed = rate <= limit + SLACK;
                let word = if passed { "within" } else { "over" };
                check(
                    "disagreement".into(),
                    passed,
                    format!(
                        "shadow disagreement {rate:.3} {word} limit {limit:.3} ({} of {} compared)",
                        w.disagreed, w.compared
                    ),
                    &mut reasons,
                );
            } else {
                skipped.push(Skipped {
                    name: "disagreement".into(),
                    reason: "no shadow comparisons".into(),
                });
            }
        }
    }

    let measurement = if reasons.is_empty() {
        Measurement::Pass
    } else {
        Measurement::Fail { reasons }
    };
    MeasurementDetail {
        measurement,
        evaluated,
        skipped,
    }
}

#[cfg(test)]
mod tests;
