//! Unit tests of [`super`]: the measurement rules, one per test. Kept in their
//! own file so `analysis.rs` holds only the rules and stays readable.

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
