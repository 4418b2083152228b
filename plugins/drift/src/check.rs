//! Column selection, per-column tests and the dataset rule as plain
//! functions, tested natively.

use std::collections::BTreeMap;

use airlock_guest::config::{key_error, missing_column};
use airlock_guest::stats::drift::{self, DriftResult, TestKind};
use airlock_guest::{
    Batch, Column, ColumnValues, Context, Feature, PluginError, Predictions, Verdict,
    report::Report,
};
use serde::Deserialize;

/// The step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Feature columns to test (default: the candidate's inputs present in both windows).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Test per column, overriding the automatic choice.
    #[serde(default)]
    pub tests: BTreeMap<String, TestKind>,
    /// Threshold per column, overriding the test's default.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Whether to test prediction drift too.
    #[serde(default = "yes")]
    pub predictions: bool,
    /// Share of drifted feature columns at which the step fails.
    #[serde(default = "half")]
    pub max_drift_share: f64,
    /// Whether a drifted prediction column fails the step.
    #[serde(default = "yes")]
    pub fail_on_prediction_drift: bool,
    /// Multiple-testing correction over the tested columns.
    #[serde(default)]
    pub correction: Correction,
}

/// How p-value thresholds account for testing many feature columns at once.
///
/// Testing 30 columns at p < 0.05 flags at least one column in about 79 % of
/// runs on two samples of the *same* distribution (1 − 0.95³⁰). Bonferroni
/// divides each p-value threshold by the number of columns the step tests
/// (feature and prediction columns: every hypothesis whose rejection can
/// warn or fail the step), which keeps the chance of any false alarm in the
/// step at or below the per-test threshold, without assumptions about how
/// the columns depend on each other. Distance tests (PSI, Jensen–Shannon,
/// Wasserstein) are not p-values and are never corrected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correction {
    /// Each column at its own threshold (Evidently's behaviour).
    #[default]
    None,
    /// Each column's p-value threshold divided by the number of columns
    /// tested (feature and prediction columns).
    Bonferroni,
}

fn yes() -> bool {
    true
}

fn half() -> f64 {
    0.5
}

impl Default for Config {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every key has a default")
    }
}

/// Formats a number for messages: 4 significant digits.
pub fn num(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    if x.abs() >= 1e-3 && x.abs() < 1e6 {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{x:.3e}")
    }
}

/// How a test compares its score with the threshold, for messages.
fn comparison(test: TestKind, drifted: bool) -> &'static str {
    match (test, drifted) {
        (TestKind::Ks, true) => "≤",
        (TestKind::Ks, false) => ">",
        (TestKind::ChiSquare | TestKind::Z, true) => "<",
        (TestKind::ChiSquare | TestKind::Z, false) => "≥",
        (_, true) => "≥",
        (_, false) => "<",
    }
}

fn score_name(test: TestKind) -> &'static str {
    if test.is_p_value() {
        "p-value"
    } else {
        "distance"
    }
}

/// A column's values, borrowed from a batch or computed from predictions.
#[derive(Debug, Clone)]
pub enum Values<'a> {
    /// Numbers (NaN and ±∞ are dropped by the tests).
    Numeric(&'a [f64]),
    /// Category labels (`None` is dropped by the tests).
    Categorical(Vec<Option<&'a str>>),
}

impl<'a> Values<'a> {
    /// Borrows a batch column.
    pub fn of(col: &'a Column) -> Values<'a> {
        match &col.values {
            ColumnValues::Numeric(v) => Values::Numeric(v),
            ColumnValues::Categorical(v) => {
                Values::Categorical(v.iter().map(|s| s.as_deref()).collect())
            }
        }
    }

    fn as_drift(&self) -> drift::Column<'_> {
        match self {
            Values::Numeric(v) => drift::Column::Numeric(v),
            Values::Categorical(v) => drift::Column::Categorical(v),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Values::Numeric(_) => "numeric",
            Values::Categorical(_) => "categorical",
        }
    }
}

/// Runs the configured (or automatic) test on one column.
///
/// With a threshold override but no test override, the automatic test's
/// score is compared with the given threshold using that test's own rule.
pub fn test_column(
    reference: &Values<'_>,
    current: &Values<'_>,
    test: Option<TestKind>,
    threshold: Option<f64>,
) -> Result<DriftResult, airlock_guest::stats::StatsError> {
    match test {
        Some(t) => drift::run_with_threshold(
            t,
            reference.as_drift(),
            current.as_drift(),
            threshold.unwrap_or(t.default_threshold()),
        ),
        None => {
            let mut r = drift::auto(reference.as_drift(), current.as_drift())?;
            if let Some(th) = threshold {
                r.threshold = th;
                r.drifted = r.test.is_drift(r.score, th);
            }
            Ok(r)
        }
    }
}

/// The prediction columns drift is tested on: the positive-class score
/// (`prediction`) for width 2, the value (`prediction`) for width 1, and one
/// probability per class (`prediction.<class>`, the declared class label or
/// the index) for wider outputs.
pub fn prediction_columns(preds: &Predictions, classes: &[String]) -> Vec<PredictionColumn> {
    match preds.width {
        0 => Vec::new(),
        1 => vec![("prediction".to_string(), preds.values.clone())],
        2 => vec![(
            "prediction".to_string(),
            preds.values.chunks_exact(2).map(|r| r[1]).collect(),
        )],
        w => (0..w as usize)
            .map(|k| {
                let label = if classes.len() == w as usize {
                    classes[k].clone()
                } else {
                    k.to_string()
                };
                (format!("prediction.{label}"), preds.column(k))
            })
            .collect(),
    }
}

/// The feature columns to test: the configured list, or every candidate
/// input present in both windows (every column present in both when the
/// candidate declares no inputs).
pub fn feature_columns(
    cfg: &Config,
    current: &Batch,
    reference: &Batch,
    inputs: &[Feature],
) -> Vec<String> {
    match &cfg.columns {
        Some(cols) => cols.clone(),
        None if inputs.is_empty() => current
            .column_names()
            .filter(|n| reference.column(n).is_some())
            .map(str::to_string)
            .collect(),
        None => inputs
            .iter()
            .map(|f| f.name.clone())
            .filter(|n| current.column(n).is_some() && reference.column(n).is_some())
            .collect(),
    }
}

/// Everything drift needs, gathered from the context.
#[derive(Debug, Clone, Copy)]
pub struct Windows<'a> {
    /// The current rows.
    pub current: &'a Batch,
    /// The reference rows.
    pub reference: &'a Batch,
    /// The candidate's predictions on the current rows.
    pub current_predictions: &'a Predictions,
    /// The candidate's predictions on the reference rows.
    pub reference_predictions: &'a Predictions,
    /// The candidate's declared inputs.
    pub inputs: &'a [Feature],
    /// The candidate's declared class labels.
    pub classes: &'a [String],
}

/// The whole step: parses the config and evaluates the windows. On the
/// host's dry run (no rows) it checks the config against the column names
/// of both windows and the prediction width, then passes without findings.
pub fn run(ctx: &Context) -> Result<Verdict, PluginError> {
    check(ctx).map_err(|e| ctx.name_step(e))
}

fn check(ctx: &Context) -> Result<Verdict, PluginError> {
    let cfg: Config = ctx.config()?;
    let reference = ctx.reference()?;
    let meta = &ctx.candidate.metadata;
    let w = Windows {
        current: &ctx.data,
        reference: &reference.data,
        current_predictions: &ctx.candidate_predictions,
        reference_predictions: &reference.candidate_predictions,
        inputs: &meta.inputs,
        classes: &meta.output.classes,
    };
    if ctx.is_dry_run() {
        check_config(&cfg, &w)?;
        return Ok(Report::new().finish());
    }
    evaluate(&cfg, &w).map(Report::finish)
}

/// A prediction column to test: its name and its values.
pub type PredictionColumn = (String, Vec<f64>);

/// Everything about the config that can be checked from column names and
/// the prediction width alone; returns the feature columns and the
/// prediction columns to test.
pub fn check_config(
    cfg: &Config,
    w: &Windows<'_>,
) -> Result<(Vec<String>, Vec<PredictionColumn>), PluginError> {
    if !(cfg.max_drift_share > 0.0 && cfg.max_drift_share <= 1.0) {
        return Err(key_error(
            "max_drift_share",
            format!("must be in (0, 1], got {}", cfg.max_drift_share),
        ));
    }
    if let Some((k, v)) = cfg
        .thresholds
        .iter()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(key_error(
            format!("thresholds.{k}"),
            format!("must be a finite number ≥ 0, got {v}"),
        ));
    }
    let features = feature_columns(cfg, w.current, w.reference, w.inputs);
    if cfg.columns.is_some() {
        for (i, name) in features.iter().enumerate() {
            let side = match (w.reference.column(name), w.current.column(name)) {
                (Some(_), Some(_)) => continue,
                (None, None) => "is in neither the step's dataset nor the reference dataset",
                (None, Some(_)) => "is not in the reference dataset",
                _ => "is not in the step's dataset",
            };
            return Err(missing_column(format!("columns[{i}]"), name, side));
        }
    }
    let preds = if cfg.predictions {
        prediction_columns(w.current_predictions, w.classes)
    } else {
        Vec::new()
    };
    for (table, keys) in [
        ("tests", cfg.tests.keys().collect::<Vec<_>>()),
        ("thresholds", cfg.thresholds.keys().collect()),
    ] {
        for k in keys {
            if !features.contains(k) && !preds.iter().any(|(n, _)| n == k) {
                let pred_names: Vec<&str> = preds.iter().map(|(n, _)| n.as_str()).collect();
                return Err(key_error(
                    format!("{table}.{k}"),
                    format!(
                        "names no tested column (feature columns: [{}]; prediction columns: [{}])",
                        features.join(", "),
                        pred_names.join(", ")
                    ),
                ));
            }
        }
    }
    Ok((features, preds))
}

/// Tests every selected column and applies the dataset and prediction rules.
pub fn evaluate(cfg: &Config, w: &Windows<'_>) -> Result<Report, PluginError> {
    let (features, preds) = check_config(cfg, w)?;
    let family = features.len() + preds.len();

    let mut report = Report::new();
    let mut drifted: Vec<String> = Vec::new();
    let mut tested = 0usize;
    for name in &features {
        let (Some(r), Some(c)) = (w.reference.column(name), w.current.column(name)) else {
            // check_config refused configured columns missing from a window,
            // and automatic ones are taken from both.
            continue;
        };
        let (rv, cv) = (Values::of(r), Values::of(c));
        if rv.kind() != cv.kind() {
            report.fail(
                "column-kind-mismatch",
                format!(
                    "column `{name}` is {} in the reference but {} in the current window",
                    rv.kind(),
                    cv.kind()
                ),
            );
            continue;
        }
        match test_column(
            &rv,
            &cv,
            cfg.tests.get(name).copied(),
            cfg.thresholds.get(name).copied(),
        ) {
            Ok(mut res) => {
                if cfg.correction == Correction::Bonferroni && res.test.is_p_value() {
                    res.threshold /= family as f64;
                    res.drifted = res.test.is_drift(res.score, res.threshold);
                }
                tested += 1;
                report.metric(format!("drift.{name}.score"), res.score);
                if res.drifted {
                    report.warn("column-drift", describe(name, &res));
                    drifted.push(name.clone());
                }
            }
            Err(e) => {
                report.warn(
                    "drift-test-failed",
                    format!("column `{name}` could not be tested: {e}"),
                );
            }
        }
    }
    let share = if tested == 0 {
        0.0
    } else {
        drifted.len() as f64 / tested as f64
    };
    report.metric("drift_share", share);
    report.metric("drifted_columns", drifted.len() as f64);
    report.metric("columns_tested", tested as f64);
    if tested > 0 {
        let summary = format!(
            "{} of {tested} feature columns drifted{} (share {} {} max_drift_share {}){}",
            drifted.len(),
            if cfg.correction == Correction::Bonferroni {
                format!(" (p-value thresholds Bonferroni-corrected over {family} tested columns)")
            } else {
                String::new()
            },
            num(share),
            if share >= cfg.max_drift_share {
                "≥"
            } else {
                "<"
            },
            num(cfg.max_drift_share),
            if drifted.is_empty() {
                String::new()
            } else {
                format!(": {}", drifted.join(", "))
            }
        );
        if share >= cfg.max_drift_share {
            report.fail("dataset-drift", summary);
        } else {
            report.info("dataset-drift", summary);
        }
    }

    let mut preds_tested = 0usize;
    if cfg.predictions {
        if w.reference_predictions.width != w.current_predictions.width {
            report.fail(
                "prediction-width-mismatch",
                format!(
                    "the candidate's predictions have width {} on the reference window but {} on the current one",
                    w.reference_predictions.width, w.current_predictions.width
                ),
            );
        } else {
            let reference = prediction_columns(w.reference_predictions, w.classes);
            for ((name, cur), (_, refv)) in preds.iter().zip(&reference) {
                let (rv, cv) = (Values::Numeric(refv), Values::Numeric(cur));
                match test_column(
                    &rv,
                    &cv,
                    cfg.tests.get(name).copied(),
                    cfg.thresholds.get(name).copied(),
                ) {
                    Ok(mut res) => {
                        if cfg.correction == Correction::Bonferroni && res.test.is_p_value() {
                            res.threshold /= family as f64;
                            res.drifted = res.test.is_drift(res.score, res.threshold);
                        }
                        preds_tested += 1;
                        report.metric(format!("drift.{name}.score"), res.score);
                        if res.drifted {
                            let msg = describe(name, &res);
                            if cfg.fail_on_prediction_drift {
                                report.fail("prediction-drift", msg);
                            } else {
                                report.warn("prediction-drift", msg);
                            }
                        }
                    }
                    Err(e) => {
                        report.warn(
                            "drift-test-failed",
                            format!("column `{name}` could not be tested: {e}"),
                        );
                    }
                }
            }
        }
    }
    if tested == 0 && preds_tested == 0 {
        report.fail(
            "no-columns-tested",
            "no feature or prediction column could be tested for drift; check `columns` and the reference dataset",
        );
    }
    Ok(report)
}

/// One drifted column in words: test, score, threshold.
pub fn describe(name: &str, r: &DriftResult) -> String {
    format!(
        "column `{name}` drifted: {} {} {} {} threshold {}",
        r.test.name(),
        score_name(r.test),
        num(r.score),
        comparison(r.test, r.drifted),
        num(r.threshold)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_guest::{FeatureKind, Severity};
    use serde_json::json;

    fn num_col(name: &str, v: Vec<f64>) -> Column {
        Column {
            name: name.into(),
            values: ColumnValues::Numeric(v),
        }
    }

    fn cat_col(name: &str, v: &[&str]) -> Column {
        Column {
            name: name.into(),
            values: ColumnValues::Categorical(v.iter().map(|s| Some((*s).to_string())).collect()),
        }
    }

    fn batch(cols: Vec<Column>) -> Batch {
        Batch {
            rows: cols[0].len() as u32,
            columns: cols,
        }
    }

    fn inputs(names: &[&str]) -> Vec<Feature> {
        names
            .iter()
            .map(|n| Feature {
                name: (*n).into(),
                kind: FeatureKind::Numeric,
            })
            .collect()
    }

    fn codes(v: &Verdict) -> Vec<&str> {
        v.finding_codes()
    }

    fn metric(v: &Verdict, name: &str) -> f64 {
        v.metric(name).unwrap_or_else(|| panic!("no metric {name}"))
    }

    fn range(lo: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| lo + i as f64).collect()
    }

    /// Reference: two steady numeric columns and one categorical; current:
    /// `a` shifted far away, `b` unchanged, `c` unchanged.
    fn windows() -> (Batch, Batch) {
        let cats: Vec<&str> = (0..30).map(|i| ["x", "y", "z"][i % 3]).collect();
        let reference = batch(vec![
            num_col("a", range(0.0, 30)),
            num_col("b", range(0.0, 30)),
            cat_col("c", &cats),
            num_col("label_copy", range(0.0, 30)),
        ]);
        let current = batch(vec![
            num_col("a", range(100.0, 30)),
            num_col("b", range(0.0, 30)),
            cat_col("c", &cats),
            num_col("label_copy", range(500.0, 30)),
        ]);
        (reference, current)
    }

    fn eval(
        cfg: serde_json::Value,
        cur_p: &Predictions,
        ref_p: &Predictions,
    ) -> Result<Verdict, PluginError> {
        let (reference, current) = windows();
        let ins = inputs(&["a", "b", "c"]);
        let cfg: Config = serde_json::from_value(cfg).unwrap();
        evaluate(
            &cfg,
            &Windows {
                current: &current,
                reference: &reference,
                current_predictions: cur_p,
                reference_predictions: ref_p,
                inputs: &ins,
                classes: &[],
            },
        )
        .map(Report::finish)
    }

    fn steady_preds() -> Predictions {
        Predictions::regression(range(0.0, 30))
    }

    #[test]
    fn one_of_three_drifted_is_a_warning_below_the_share() {
        let p = steady_preds();
        let v = eval(json!({}), &p, &p).unwrap();
        assert!(v.passed, "{:?}", v.findings);
        assert_eq!(codes(&v), ["column-drift", "dataset-drift"]);
        let msg = &v.findings[0].message;
        // Disjoint samples of 30: KS D = 1, p = 2 / C(60, 30).
        assert!(msg.starts_with("column `a` drifted: ks p-value"), "{msg}");
        assert!(msg.ends_with("≤ threshold 0.05"), "{msg}");
        assert!(metric(&v, "drift.a.score") < 1e-15);
        assert_eq!(metric(&v, "drift.b.score"), 1.0);
        assert_eq!(metric(&v, "drift.c.score"), 1.0);
        assert!((metric(&v, "drift_share") - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(metric(&v, "columns_tested"), 3.0);
        // Non-input columns are not tested by default.
        assert!(v.metrics.iter().all(|m| m.name != "drift.label_copy.score"));
        assert_eq!(v.findings[1].severity, Severity::Info);
    }

    #[test]
    fn share_rule_is_greater_or_equal() {
        let p = steady_preds();
        let v = eval(json!({"columns": ["a", "b"]}), &p, &p).unwrap();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["column-drift", "dataset-drift"]);
        assert!(
            v.findings[1]
                .message
                .starts_with("1 of 2 feature columns drifted (share 0.5 ≥ max_drift_share 0.5): a"),
            "{}",
            v.findings[1].message
        );
        let v = eval(
            json!({"columns": ["a", "b"], "max_drift_share": 0.51}),
            &p,
            &p,
        )
        .unwrap();
        assert!(v.passed);
    }

    #[test]
    fn categorical_drift_uses_chi_square() {
        let cats: Vec<&str> = (0..30).map(|i| ["x", "y", "z"][i % 3]).collect();
        let reference = batch(vec![cat_col("c", &cats)]);
        let current = batch(vec![cat_col("c", &["x"; 30])]);
        let p = steady_preds();
        let cfg = Config::default();
        let v = evaluate(
            &cfg,
            &Windows {
                current: &current,
                reference: &reference,
                current_predictions: &p,
                reference_predictions: &p,
                inputs: &inputs(&["c"]),
                classes: &[],
            },
        )
        .unwrap()
        .finish();
        assert!(!v.passed);
        assert!(
            v.findings[0].message.contains("chisquare p-value"),
            "{}",
            v.findings[0].message
        );
        // chi² = (30-10)²/10 + 10 + 10 = 60 with 2 dof: p = exp(-30).
        assert!((metric(&v, "drift.c.score") - (-30.0f64).exp()).abs() < 1e-20);
    }

    #[test]
    fn overrides_change_test_and_threshold() {
        let p = steady_preds();
        let v = eval(
            json!({"tests": {"a": "wasserstein"}, "thresholds": {"a": 200.0}}),
            &p,
            &p,
        )
        .unwrap();
        // W1 = 100, reference std = sqrt((30²-1)/12) ≈ 8.655: normed ≈ 11.55 < 200.
        assert_eq!(codes(&v), ["dataset-drift"]);
        let sd = ((30.0f64 * 30.0 - 1.0) / 12.0).sqrt();
        assert!((metric(&v, "drift.a.score") - 100.0 / sd).abs() < 1e-9);
        // A threshold alone keeps the automatic test (KS) and its comparison.
        let v = eval(json!({"thresholds": {"b": 1.0}}), &p, &p).unwrap();
        assert!(codes(&v).iter().filter(|c| **c == "column-drift").count() == 2);
        assert!(
            v.findings[1]
                .message
                .contains("column `b` drifted: ks p-value 1 ≤ threshold 1")
        );
    }

    #[test]
    fn prediction_drift_fails_unless_relaxed() {
        let cur = Predictions::regression(range(1000.0, 30));
        let refp = steady_preds();
        let v = eval(json!({"columns": ["b"]}), &cur, &refp).unwrap();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["dataset-drift", "prediction-drift"]);
        assert!(
            v.findings[1]
                .message
                .starts_with("column `prediction` drifted: ks")
        );
        let v = eval(
            json!({"columns": ["b"], "fail_on_prediction_drift": false}),
            &cur,
            &refp,
        )
        .unwrap();
        assert!(v.passed);
        assert_eq!(v.findings[1].severity, Severity::Warning);
        let v = eval(json!({"columns": ["b"], "predictions": false}), &cur, &refp).unwrap();
        assert!(v.passed);
        assert!(v.metrics.iter().all(|m| m.name != "drift.prediction.score"));
    }

    #[test]
    fn prediction_columns_by_width() {
        let b = Predictions::probabilities(2, vec![0.3, 0.7, 0.9, 0.1]);
        assert_eq!(
            prediction_columns(&b, &[]),
            vec![("prediction".to_string(), vec![0.7, 0.1])]
        );
        let m = Predictions::probabilities(3, vec![0.1, 0.2, 0.7, 0.3, 0.3, 0.4]);
        let cols = prediction_columns(&m, &["x".into(), "y".into(), "z".into()]);
        assert_eq!(cols[2], ("prediction.z".to_string(), vec![0.7, 0.4]));
        assert_eq!(prediction_columns(&m, &[])[0].0, "prediction.0");
    }

    #[test]
    fn config_mistakes_are_named() {
        let p = steady_preds();
        let e = eval(json!({"tests": {"aa": "ks"}}), &p, &p).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert_eq!(
            e.message,
            "config key `tests.aa`: names no tested column (feature columns: [a, b, c]; prediction columns: [prediction])"
        );
        let e = eval(json!({"max_drift_share": 0.0}), &p, &p).unwrap_err();
        assert_eq!(
            e.message,
            "config key `max_drift_share`: must be in (0, 1], got 0"
        );
        let e = eval(json!({"thresholds": {"a": -1.0}}), &p, &p).unwrap_err();
        assert_eq!(
            e.message,
            "config key `thresholds.a`: must be a finite number ≥ 0, got -1"
        );
        let e =
            serde_json::from_value::<Config>(json!({"tests": {"a": "kolmogorov"}})).unwrap_err();
        assert!(
            e.to_string().starts_with("unknown variant `kolmogorov`"),
            "{e}"
        );
        let e = serde_json::from_value::<Config>(json!({"max_share": 0.3})).unwrap_err();
        assert!(
            e.to_string().starts_with("unknown field `max_share`"),
            "{e}"
        );
    }

    #[test]
    fn missing_and_untestable_columns() {
        let p = steady_preds();
        let e = eval(
            json!({"columns": ["a", "nope"], "predictions": false}),
            &p,
            &p,
        )
        .unwrap_err();
        assert_eq!(e.code, "missing-column");
        assert_eq!(
            e.message,
            "config key `columns[1]`: column `nope` is in neither the step's dataset nor the reference dataset"
        );
        let reference = batch(vec![num_col("a", vec![f64::NAN; 3])]);
        let current = batch(vec![num_col("a", vec![1.0; 3])]);
        let v = evaluate(
            &serde_json::from_value(json!({"predictions": false})).unwrap(),
            &Windows {
                current: &current,
                reference: &reference,
                current_predictions: &p,
                reference_predictions: &p,
                inputs: &inputs(&["a"]),
                classes: &[],
            },
        )
        .unwrap()
        .finish();
        assert_eq!(codes(&v), ["drift-test-failed", "no-columns-tested"]);
        assert!(!v.passed);
    }

    #[test]
    fn bonferroni_divides_p_value_thresholds_by_the_number_of_tested_columns() {
        let p = steady_preds();
        let score = metric(&eval(json!({}), &p, &p).unwrap(), "drift.a.score");
        // Threshold 2p: drifted alone, not after dividing by 4 columns
        // (a, b, c and the prediction).
        let th = json!({"a": 2.0 * score});
        let v = eval(json!({"thresholds": th}), &p, &p).unwrap();
        assert_eq!(metric(&v, "drifted_columns"), 1.0);
        let v = eval(
            json!({"thresholds": th, "correction": "bonferroni"}),
            &p,
            &p,
        )
        .unwrap();
        assert_eq!(metric(&v, "drifted_columns"), 0.0, "{:?}", v.findings);
        assert!(
            v.findings[0].message.starts_with(
                "0 of 3 feature columns drifted (p-value thresholds Bonferroni-corrected over 4 tested columns)"
            ),
            "{}",
            v.findings[0].message
        );
        // A distance test is not a p-value: its threshold stays as given.
        let v = eval(
            json!({"tests": {"a": "wasserstein"}, "correction": "bonferroni"}),
            &p,
            &p,
        )
        .unwrap();
        assert!(
            v.findings[0].message.ends_with("≥ threshold 0.1"),
            "{}",
            v.findings[0].message
        );
        // Prediction columns are in the family: 2 columns here (b and the
        // prediction), and a real prediction shift is still caught.
        let cur = Predictions::regression(range(1000.0, 30));
        let v = eval(
            json!({"columns": ["b"], "correction": "bonferroni"}),
            &cur,
            &p,
        )
        .unwrap();
        assert!(!v.passed);
        assert!(
            v.findings
                .iter()
                .any(|f| f.code == "prediction-drift" && f.message.ends_with("≤ threshold 0.025")),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn a_dry_run_checks_names_and_passes_without_findings() {
        use airlock_guest::{Reference, Task};
        let (reference, current) = windows();
        let p = steady_preds();
        let ctx = |config: serde_json::Value, reference_given: bool| {
            airlock_guest::testing::TestContext::new("drift")
                .config(&config)
                .task(Task::Regression, &[])
                .inputs(inputs(&["a", "b", "c"]))
                .data(current.clone())
                .predictions(p.clone())
                .reference(reference_given.then(|| Reference {
                    data: reference.clone(),
                    labels: None,
                    candidate_predictions: p.clone(),
                    baseline_predictions: None,
                }))
                .build()
        };
        let v = run(&ctx(json!({"correction": "bonferroni"}), true).as_dry_run()).unwrap();
        assert!(v.passed);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        assert!(v.metrics.is_empty(), "{:?}", v.metrics);
        let e = run(&ctx(json!({"columns": ["a", "zz"]}), true).as_dry_run()).unwrap_err();
        assert_eq!(
            e.message,
            "step `drift`: config key `columns[1]`: column `zz` is in neither the step's dataset nor the reference dataset"
        );
        let e = run(&ctx(json!({"max_drif_share": 0.5}), true).as_dry_run()).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message
                .starts_with("step `drift`: config key `max_drif_share`: unknown key"),
            "{}",
            e.message
        );
        let e = run(&ctx(json!({"correction": "holm"}), true).as_dry_run()).unwrap_err();
        assert_eq!(
            e.message,
            "step `drift`: config key `correction`: unknown value `holm`; expected `none` or `bonferroni`"
        );
        let e = run(&ctx(json!({}), false).as_dry_run()).unwrap_err();
        assert_eq!(e.code, "missing-reference");
    }

    fn read_csv(text: &str) -> Batch {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let mut cols: Vec<Vec<f64>> = vec![Vec::new(); header.len()];
        for line in lines.filter(|l| !l.is_empty()) {
            for (k, cell) in line.split(',').enumerate() {
                cols[k].push(cell.parse().unwrap_or(f64::NAN));
            }
        }
        Batch::from_numeric(header.iter().map(|h| h.to_string()).zip(cols).collect()).unwrap()
    }

    #[test]
    fn breast_cancer_train_vs_eval_does_not_drift_but_a_scaled_column_does() {
        let reference = read_csv(include_str!(
            "../../../tests/fixtures/data/breast_cancer_train.csv"
        ));
        let mut current = read_csv(include_str!(
            "../../../tests/fixtures/data/breast_cancer_eval.csv"
        ));
        let names: Vec<String> = reference
            .column_names()
            .filter(|n| *n != "target")
            .map(str::to_string)
            .collect();
        let ins: Vec<Feature> = names
            .iter()
            .map(|n| Feature {
                name: n.clone(),
                kind: FeatureKind::Numeric,
            })
            .collect();
        let p = Predictions::regression(vec![0.5; current.len()]);
        let rp = Predictions::regression(vec![0.5; reference.len()]);
        let bonferroni: Config =
            serde_json::from_value(json!({"correction": "bonferroni"})).unwrap();
        let run_with = |cfg: &Config, current: &Batch| {
            evaluate(
                cfg,
                &Windows {
                    current,
                    reference: &reference,
                    current_predictions: &p,
                    reference_predictions: &rp,
                    inputs: &ins,
                    classes: &[],
                },
            )
            .unwrap()
            .finish()
        };
        let w = |current: &Batch| run_with(&Config::default(), current);
        let v = w(&current);
        assert!(v.passed, "{:?}", v.findings);
        assert_eq!(metric(&v, "columns_tested"), 30.0);
        assert!(metric(&v, "drift_share") < 0.2);
        // Two random splits of one dataset: some of 30 columns cross 0.05 by
        // chance; none crosses the corrected 0.05 / 31.
        assert!(metric(&v, "drifted_columns") > 0.0);
        let v = run_with(&bonferroni, &current);
        assert_eq!(metric(&v, "drifted_columns"), 0.0, "{:?}", v.findings);
        for c in current
            .columns
            .iter_mut()
            .filter(|c| c.name == "mean_radius")
        {
            if let ColumnValues::Numeric(v) = &mut c.values {
                v.iter_mut().for_each(|x| *x *= 1.5);
            }
        }
        let v = w(&current);
        assert!(
            v.findings
                .iter()
                .any(|f| f.code == "column-drift" && f.message.contains("`mean_radius`"))
        );
        assert!(metric(&v, "drift.mean_radius.score") < 1e-6);
        let v = run_with(&bonferroni, &current);
        assert_eq!(metric(&v, "drifted_columns"), 1.0, "{:?}", v.findings);
        assert!(
            v.findings.iter().any(|f| f.code == "column-drift"
                && f.message
                    .starts_with("column `mean_radius` drifted: ks p-value")),
            "{:?}",
            v.findings
        );
    }
}
