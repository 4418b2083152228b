//! The golden-row comparison as plain functions, tested natively.

use airlock_guest::config::{key_error, missing_column};
use airlock_guest::{Context, PluginError, Predictions, Verdict, report::Report};
use serde::Deserialize;

/// How many mismatching rows a finding lists.
pub const SHOW_ROWS: usize = 5;

/// The step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Column of the evaluation data holding the expected outputs.
    pub expected_column: String,
    /// Largest allowed absolute difference.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Which prediction value to compare (see [`Output`]); raw so that a
    /// wrong value gets a message naming the key.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
}

fn default_tolerance() -> f64 {
    1e-6
}

/// Which value of a prediction row is compared with the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One column of the row: the value (width 1) or a class probability.
    Column(usize),
    /// The predicted class index (argmax of the row).
    Class,
}

impl Output {
    /// Resolves the configured `output` against the prediction width.
    pub fn resolve(raw: Option<&serde_json::Value>, width: usize) -> Result<Output, PluginError> {
        let out = match raw {
            None => match width {
                1 => Output::Column(0),
                2 => Output::Column(1),
                w => {
                    return Err(key_error(
                        "output",
                        format!(
                            "is required: the candidate predicts {w} classes; set it to a class index or \"class\""
                        ),
                    ));
                }
            },
            Some(serde_json::Value::String(s)) if s == "class" => Output::Class,
            Some(v) => match v.as_u64() {
                Some(k) => Output::Column(k as usize),
                None => {
                    return Err(key_error(
                        "output",
                        format!("must be a class index (0, 1, ...) or \"class\", got {v}"),
                    ));
                }
            },
        };
        match out {
            Output::Column(k) if k >= width => Err(key_error(
                "output",
                format!("is {k} but the candidate's predictions have width {width}"),
            )),
            Output::Class if width < 2 => Err(key_error(
                "output",
                "is \"class\", which needs classification predictions (width ≥ 2), got width 1",
            )),
            o => Ok(o),
        }
    }

    /// The compared value of prediction row `i`.
    pub fn value(self, preds: &Predictions, i: usize) -> f64 {
        match self {
            Output::Column(k) => preds.row(i)[k],
            Output::Class => preds.predicted_class(i) as f64,
        }
    }

    fn describe(self) -> String {
        match self {
            Output::Column(k) => format!("output {k}"),
            Output::Class => "predicted class".to_string(),
        }
    }
}

/// One row whose prediction differs from its expected value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mismatch {
    /// Row index in the evaluation data (0-based; messages say "data row
    /// N", counting from 1).
    pub row: usize,
    /// The expected value.
    pub expected: f64,
    /// What the candidate gave.
    pub got: f64,
}

/// The outcome of comparing every golden row.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Rows compared (rows with an expected value).
    pub compared: usize,
    /// Rows skipped because the expected value is missing (NaN).
    pub skipped: usize,
    /// Largest absolute difference (infinite when a value is NaN/infinite
    /// and differs from its expectation).
    pub max_abs_error: f64,
    /// Rows off by more than the tolerance, in row order.
    pub mismatches: Vec<Mismatch>,
}

/// Compares `got[i]` with `expected[i]` for every row with an expectation.
///
/// A row matches when `|got − expected| ≤ tolerance`; NaN never matches and
/// an infinite value matches only the same infinity.
pub fn compare(expected: &[f64], got: &[f64], tolerance: f64) -> Comparison {
    let mut c = Comparison {
        compared: 0,
        skipped: 0,
        max_abs_error: 0.0,
        mismatches: Vec::new(),
    };
    for (row, (&e, &g)) in expected.iter().zip(got).enumerate() {
        if e.is_nan() {
            c.skipped += 1;
            continue;
        }
        c.compared += 1;
        let err = if e == g {
            0.0
        } else if g.is_finite() && e.is_finite() {
            (g - e).abs()
        } else {
            f64::INFINITY
        };
        c.max_abs_error = c.max_abs_error.max(err);
        if err > tolerance {
            c.mismatches.push(Mismatch {
                row,
                expected: e,
                got: g,
            });
        }
    }
    c
}

/// The whole step: parses the config, compares, and reports. On the host's
/// dry run (no rows) it checks everything that needs only column names and
/// the prediction width, then passes without findings.
pub fn run(ctx: &Context) -> Result<Verdict, PluginError> {
    check(ctx).map_err(|e| ctx.name_step(e))
}

fn check(ctx: &Context) -> Result<Verdict, PluginError> {
    let cfg: Config = ctx.config()?;
    if !(cfg.tolerance >= 0.0 && cfg.tolerance.is_finite()) {
        return Err(key_error(
            "tolerance",
            format!("must be a finite number ≥ 0, got {}", cfg.tolerance),
        ));
    }
    if ctx
        .candidate
        .metadata
        .inputs
        .iter()
        .any(|f| f.name == cfg.expected_column)
    {
        return Err(key_error(
            "expected_column",
            format!(
                "`{}` is one of the candidate's inputs; golden expectations must live in a column the model does not read",
                cfg.expected_column
            ),
        ));
    }
    let Some(column) = ctx.data.column(&cfg.expected_column) else {
        let names: Vec<&str> = ctx.data.column_names().collect();
        return Err(missing_column(
            "expected_column",
            &cfg.expected_column,
            format!(
                "is not in the step's dataset (columns: {})",
                names.join(", ")
            ),
        ));
    };
    let expected = column.numeric().map_err(|_| {
        key_error(
            "expected_column",
            format!(
                "column `{}` is categorical; expected values must be numbers",
                cfg.expected_column
            ),
        )
    })?;
    let preds = &ctx.candidate_predictions;
    if preds.width == 0 || preds.values.len() != expected.len() * preds.width as usize {
        return Err(PluginError::bad_input(format!(
            "the candidate returned {} prediction values of width {} for {} rows",
            preds.values.len(),
            preds.width,
            expected.len()
        )));
    }
    let output = Output::resolve(cfg.output.as_ref(), preds.width as usize)?;
    if ctx.is_dry_run() {
        return Ok(Report::new().finish());
    }
    let got: Vec<f64> = (0..expected.len())
        .map(|i| output.value(preds, i))
        .collect();
    let c = compare(expected, &got, cfg.tolerance);
    Ok(report(&cfg, output, &c).finish())
}

/// Turns a comparison into metrics and findings.
pub fn report(cfg: &Config, output: Output, c: &Comparison) -> Report {
    let mut r = Report::new();
    r.metric("max_abs_error", c.max_abs_error);
    r.metric("mismatches", c.mismatches.len() as f64);
    r.metric("golden_rows", c.compared as f64);
    if c.skipped > 0 {
        r.info(
            "rows-skipped",
            format!(
                "{} rows have no expected value in `{}` (NaN) and were not compared",
                c.skipped, cfg.expected_column
            ),
        );
    }
    if c.compared == 0 {
        r.fail(
            "no-golden-rows",
            format!(
                "column `{}` holds no expected value to compare",
                cfg.expected_column
            ),
        );
    }
    if !c.mismatches.is_empty() {
        let shown: Vec<String> = c
            .mismatches
            .iter()
            .take(SHOW_ROWS)
            .map(|m| {
                format!(
                    "data row {} expected {} got {}",
                    m.row + 1,
                    m.expected,
                    m.got
                )
            })
            .collect();
        let more = c.mismatches.len().saturating_sub(SHOW_ROWS);
        r.fail(
            "golden-mismatch",
            format!(
                "{} of {} golden rows differ from `{}` by more than {} ({}): {}{}",
                c.mismatches.len(),
                c.compared,
                cfg.expected_column,
                cfg.tolerance,
                output.describe(),
                shown.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_guest::{Batch, Column, ColumnValues};
    use serde_json::json;

    fn ctx(config: serde_json::Value, expected: Vec<f64>, preds: Predictions) -> Context {
        airlock_guest::testing::TestContext::new("golden")
            .config(&config)
            .numeric_inputs(&["x"])
            .data(Batch {
                rows: expected.len() as u32,
                columns: vec![
                    Column {
                        name: "x".into(),
                        values: ColumnValues::Numeric(vec![0.0; expected.len()]),
                    },
                    Column {
                        name: "expected".into(),
                        values: ColumnValues::Numeric(expected),
                    },
                ],
            })
            .predictions(preds)
            .build()
    }

    fn codes(v: &Verdict) -> Vec<&str> {
        v.finding_codes()
    }

    fn metric(v: &Verdict, name: &str) -> f64 {
        v.metric(name).unwrap_or_else(|| panic!("no metric {name}"))
    }

    #[test]
    fn compare_counts_and_measures() {
        let c = compare(
            &[1.0, 2.0, f64::NAN, 4.0],
            &[1.0, 2.5, 9.0, 4.0 + 1e-9],
            1e-6,
        );
        assert_eq!(c.compared, 3);
        assert_eq!(c.skipped, 1);
        assert_eq!(c.max_abs_error, 0.5);
        assert_eq!(
            c.mismatches,
            vec![Mismatch {
                row: 1,
                expected: 2.0,
                got: 2.5
            }]
        );
    }

    #[test]
    fn nan_and_infinite_predictions_never_match() {
        let c = compare(
            &[1.0, f64::INFINITY, 3.0],
            &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
            1.0,
        );
        assert_eq!(c.mismatches.len(), 2);
        assert_eq!(c.mismatches[0].row, 0);
        assert_eq!(c.mismatches[1].row, 2);
        assert_eq!(c.max_abs_error, f64::INFINITY);
    }

    #[test]
    fn binary_defaults_to_positive_class_and_passes_within_tolerance() {
        let p = Predictions::probabilities(2, vec![0.3, 0.7, 0.9, 0.1]);
        let v = run(&ctx(
            json!({"expected_column": "expected"}),
            vec![0.7, 0.1 + 1e-9],
            p,
        ))
        .unwrap();
        assert!(v.passed, "{:?}", v.findings);
        assert_eq!(metric(&v, "mismatches"), 0.0);
        assert_eq!(metric(&v, "golden_rows"), 2.0);
        assert!(metric(&v, "max_abs_error") < 1e-8);
    }

    #[test]
    fn mismatches_fail_and_name_rows() {
        let p = Predictions::probabilities(2, vec![0.3, 0.7, 0.9, 0.1, 0.5, 0.5]);
        let v = run(&ctx(
            json!({"expected_column": "expected", "tolerance": 0.01}),
            vec![0.7, 0.2, 0.5],
            p,
        ))
        .unwrap();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["golden-mismatch"]);
        let msg = &v.findings[0].message;
        assert!(
            msg.starts_with("1 of 3 golden rows differ from `expected` by more than 0.01"),
            "{msg}"
        );
        assert!(msg.contains("data row 2 expected 0.2 got 0.1"), "{msg}");
        assert!((metric(&v, "max_abs_error") - 0.1).abs() < 1e-12);
        assert_eq!(metric(&v, "mismatches"), 1.0);
    }

    #[test]
    fn only_first_rows_are_listed() {
        let cfg: Config = serde_json::from_value(json!({"expected_column": "e"})).unwrap();
        let c = compare(&[0.0; 8], &[1.0; 8], 1e-6);
        let v = report(&cfg, Output::Column(0), &c).finish();
        let msg = &v.findings[0].message;
        assert!(msg.contains("data row 5 expected 0 got 1"), "{msg}");
        assert!(!msg.contains("data row 6 "), "{msg}");
        assert!(msg.ends_with("and 3 more"), "{msg}");
    }

    #[test]
    fn output_selection() {
        let p = Predictions::probabilities(3, vec![0.1, 0.2, 0.7, 0.6, 0.3, 0.1]);
        assert_eq!(
            Output::resolve(Some(&json!(2)), 3).unwrap().value(&p, 0),
            0.7
        );
        assert_eq!(
            Output::resolve(Some(&json!("class")), 3)
                .unwrap()
                .value(&p, 1),
            0.0
        );
        assert_eq!(Output::resolve(None, 1).unwrap(), Output::Column(0));
        assert_eq!(Output::resolve(None, 2).unwrap(), Output::Column(1));
        let e = Output::resolve(None, 3).unwrap_err();
        assert_eq!(
            e.message,
            "config key `output`: is required: the candidate predicts 3 classes; set it to a class index or \"class\""
        );
        let e = Output::resolve(Some(&json!(3)), 3).unwrap_err();
        assert_eq!(
            e.message,
            "config key `output`: is 3 but the candidate's predictions have width 3"
        );
        let e = Output::resolve(Some(&json!("positive")), 3).unwrap_err();
        assert_eq!(
            e.message,
            "config key `output`: must be a class index (0, 1, ...) or \"class\", got \"positive\""
        );
        let e = Output::resolve(Some(&json!("class")), 1).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message.starts_with("config key `output`: is \"class\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn multiclass_predicted_class_against_class_index() {
        let p = Predictions::probabilities(3, vec![0.1, 0.2, 0.7, 0.6, 0.3, 0.1]);
        let v = run(&ctx(
            json!({"expected_column": "expected", "output": "class"}),
            vec![2.0, 1.0],
            p,
        ))
        .unwrap();
        assert!(!v.passed);
        assert!(
            v.findings[0]
                .message
                .contains("data row 2 expected 1 got 0"),
            "{}",
            v.findings[0].message
        );
    }

    #[test]
    fn skipped_rows_and_empty_expectations() {
        let p = Predictions::regression(vec![1.0, 2.0]);
        let v = run(&ctx(
            json!({"expected_column": "expected"}),
            vec![f64::NAN, f64::NAN],
            p,
        ))
        .unwrap();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["rows-skipped", "no-golden-rows"]);
    }

    #[test]
    fn config_errors_are_named() {
        let p = Predictions::regression(vec![1.0]);
        let e = run(&ctx(
            json!({"expected_column": "nope"}),
            vec![1.0],
            p.clone(),
        ))
        .unwrap_err();
        assert_eq!(e.code, "missing-column");
        assert_eq!(
            e.message,
            "step `golden`: config key `expected_column`: column `nope` is not in the step's dataset (columns: x, expected)"
        );
        let e = run(&ctx(json!({"expected_column": "x"}), vec![1.0], p.clone())).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert_eq!(
            e.message,
            "step `golden`: config key `expected_column`: `x` is one of the candidate's inputs; golden expectations must live in a column the model does not read"
        );
        let e = run(&ctx(
            json!({"expected_column": "expected", "tolerance": -1.0}),
            vec![1.0],
            p.clone(),
        ))
        .unwrap_err();
        assert_eq!(
            e.message,
            "step `golden`: config key `tolerance`: must be a finite number ≥ 0, got -1"
        );
        let e = run(&ctx(
            json!({"expected_column": "expected", "tolerence": 1.0}),
            vec![1.0],
            p,
        ))
        .unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message
                .starts_with("step `golden`: config key `tolerence`: unknown key"),
            "{}",
            e.message
        );
        let e = run(&ctx(
            json!({"expected_column": "expected"}),
            vec![1.0, 2.0],
            Predictions::regression(vec![1.0]),
        ))
        .unwrap_err();
        assert_eq!(e.code, "bad-input");
    }

    #[test]
    fn a_dry_run_checks_the_expected_column_and_output_then_passes() {
        let p = Predictions::probabilities(2, vec![0.3, 0.7]);
        let c = ctx(json!({"expected_column": "expected"}), vec![0.7], p.clone());
        let v = run(&c.as_dry_run()).unwrap();
        assert!(v.passed);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        assert!(v.metrics.is_empty(), "{:?}", v.metrics);
        let e = run(&ctx(json!({"expected_column": "expectd"}), vec![0.7], p.clone()).as_dry_run())
            .unwrap_err();
        assert_eq!(e.code, "missing-column");
        assert!(
            e.message
                .starts_with("step `golden`: config key `expected_column`: column `expectd`"),
            "{}",
            e.message
        );
        let wide = Predictions::probabilities(3, vec![0.3, 0.3, 0.4]);
        let e = run(&ctx(json!({"expected_column": "expected"}), vec![0.7], wide).as_dry_run())
            .unwrap_err();
        assert_eq!(
            e.message,
            "step `golden`: config key `output`: is required: the candidate predicts 3 classes; set it to a class index or \"class\""
        );
    }
}
