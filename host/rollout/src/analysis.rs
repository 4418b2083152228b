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
mod tests {
    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            min_requests: 100,
            max_error_rate: 0.05,
            max_p99_ms: Some(250.0),
            min_accuracy: Some(0.85),
            max_accuracy_drop: Some(0.02),
            max_disagreement: Some(0.05),
            min_labels: 50,
        }
    }

    fn good() -> WindowStats {
        WindowStats {
            requests: 100,
            errors: 1,
            p99_ms: Some(120.0),
            labelled: 100,
            correct: 90,
            stable_accuracy: Some(0.9),
            compared: 100,
            disagreed: 2,
            validators: vec![],
            measurement_error: None,
        }
    }

    #[test]
    fn a_healthy_window_passes_with_every_check_evaluated() {
        let d = measure_detail(&t(), &good());
        assert_eq!(d.measurement, Measurement::Pass);
        let names: Vec<_> = d.evaluated.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "error_rate",
                "p99_ms",
                "accuracy",
                "accuracy_drop",
                "disagreement"
            ]
        );
        assert!(d.skipped.is_empty());
        assert_eq!(
            d.evaluated[0].detail,
            "error rate 0.010 within limit 0.050 (1 of 100 requests)"
        );
    }

    #[test]
    fn every_breach_is_listed_in_plain_words() {
        let w = WindowStats {
            errors: 12,
            p99_ms: Some(340.0),
            correct: 81,
            stable_accuracy: Some(0.87),
            disagreed: 10,
            validators: vec![ValidatorResult {
                name: "drift".into(),
                passed: false,
                summary: "3 of 10 features drifted".into(),
            }],
            ..good()
        };
        assert_eq!(
            measure(&t(), &w),
            Measurement::Fail {
                reasons: vec![
                    "validator drift failed: 3 of 10 features drifted".into(),
                    "error rate 0.120 over limit 0.050 (12 of 100 requests)".into(),
                    "p99 latency 340.0 ms over limit 250.0 ms".into(),
                    "accuracy 0.810 under limit 0.850 (81 correct of 100 labelled)".into(),
                    "accuracy drop 0.060 over limit 0.020 (candidate 0.810, stable 0.870)".into(),
                    "shadow disagreement 0.100 over limit 0.050 (10 of 100 compared)".into(),
                ]
            }
        );
    }

    #[test]
    fn no_data_is_inconclusive_never_a_pass() {
        assert_eq!(
            measure(&t(), &WindowStats::default()),
            Measurement::Inconclusive {
                reason: "no requests in this window".into()
            }
        );
        let few = WindowStats {
            requests: 99,
            ..good()
        };
        assert_eq!(
            measure(&t(), &few),
            Measurement::Inconclusive {
                reason: "only 99 of the 100 requests needed".into()
            }
        );
        // Even with min_requests 0, an empty window has no error rate to pass.
        let zero = Thresholds {
            min_requests: 0,
            ..t()
        };
        assert_eq!(
            measure(&zero, &WindowStats::default()),
            Measurement::Inconclusive {
                reason: "no requests in this window".into()
            }
        );
    }

    #[test]
    fn a_failing_validator_fails_even_a_quiet_window() {
        let w = WindowStats {
            validators: vec![ValidatorResult {
                name: "schema".into(),
                passed: false,
                summary: "column age missing".into(),
            }],
            ..WindowStats::default()
        };
        assert_eq!(
            measure(&t(), &w),
            Measurement::Fail {
                reasons: vec!["validator schema failed: column age missing".into()]
            }
        );
    }

    #[test]
    fn missing_labels_skip_accuracy_and_say_so() {
        let w = WindowStats {
            labelled: 3,
            correct: 0,
            compared: 0,
            disagreed: 0,
            p99_ms: None,
            ..good()
        };
        let d = measure_detail(&t(), &w);
        assert_eq!(d.measurement, Measurement::Pass);
        let names: Vec<_> = d.evaluated.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["error_rate"]);
        assert_eq!(
            d.skipped,
            vec![
                Skipped {
                    name: "p99_ms".into(),
                    reason: "no latency measured".into()
                },
                Skipped {
                    name: "accuracy".into(),
                    reason: "only 3 labelled of the 50 needed".into()
                },
                Skipped {
                    name: "accuracy_drop".into(),
                    reason: "only 3 labelled of the 50 needed".into()
                },
                Skipped {
                    name: "disagreement".into(),
                    reason: "no shadow comparisons".into()
                },
            ]
        );
        // min_labels 0 still needs one label: 0 of 0 is not accuracy 1.
        let zero = Thresholds {
            min_labels: 0,
            ..t()
        };
        let w = WindowStats {
            labelled: 0,
            correct: 0,
            ..good()
        };
        let d = measure_detail(&zero, &w);
        assert_eq!(d.skipped[0].reason, "only 0 labelled of the 1 needed");
        let w = WindowStats {
            stable_accuracy: None,
            ..good()
        };
        assert_eq!(
            measure_detail(&t(), &w).skipped[0].reason,
            "no stable accuracy in this window"
        );
    }

    #[test]
    fn errors_nan_and_contradictions_are_errors() {
        let crashed = WindowStats {
            measurement_error: Some("validator drift trapped".into()),
            ..good()
        };
        assert_eq!(
            measure(&t(), &crashed),
            Measurement::Error {
                reason: "measurement failed: validator drift trapped".into()
            }
        );
        let nan = WindowStats {
            p99_ms: Some(f64::NAN),
            ..good()
        };
        assert_eq!(
            measure(&t(), &nan),
            Measurement::Error {
                reason: "p99_ms is NaN".into()
            }
        );
        let nan = WindowStats {
            stable_accuracy: Some(f64::NAN),
            ..good()
        };
        assert_eq!(
            measure(&t(), &nan),
            Measurement::Error {
                reason: "stable_accuracy is NaN".into()
            }
        );
        let nan_limit = Thresholds {
            max_error_rate: f64::NAN,
            ..t()
        };
        assert_eq!(
            measure(&nan_limit, &good()),
            Measurement::Error {
                reason: "threshold max_error_rate is NaN, expected a share in [0, 1]".into()
            }
        );
        let bad = WindowStats {
            errors: 101,
            ..good()
        };
        assert_eq!(
            measure(&t(), &bad),
            Measurement::Error {
                reason: "inconsistent stats: errors 101 over requests 100".into()
            }
        );
    }

    #[test]
    fn threshold_validation_names_the_threshold() {
        let bad = Thresholds {
            max_p99_ms: Some(-1.0),
            ..t()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "threshold max_p99_ms is -1, expected a positive number of milliseconds"
        );
        let bad = Thresholds {
            min_accuracy: Some(1.5),
            ..t()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "threshold min_accuracy is 1.5, expected a share in [0, 1]"
        );
        assert_eq!(t().validate(), Ok(()));
    }

    #[test]
    fn limits_are_inclusive() {
        let w = WindowStats {
            errors: 5,
            p99_ms: Some(250.0),
            correct: 85,
            stable_accuracy: Some(0.87),
            disagreed: 5,
            ..good()
        };
        assert_eq!(measure(&t(), &w), Measurement::Pass);
    }
}
