//! Metric computation and threshold logic as plain functions, tested natively.

use std::collections::BTreeMap;

use airlock_guest::config::key_error;
use airlock_guest::stats::{
    StatsError,
    metrics::{self, Average, Probabilities},
};
use airlock_guest::{Context, PluginError, Predictions, Verdict, report::Report};
use serde::Deserialize;

/// The step's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lower bounds per metric name.
    #[serde(default)]
    pub min: BTreeMap<String, f64>,
    /// Upper bounds per metric name.
    #[serde(default)]
    pub max: BTreeMap<String, f64>,
    /// Largest allowed worsening against the baseline, per metric name.
    #[serde(default)]
    pub max_regression: BTreeMap<String, f64>,
    /// How precision / recall / f1 average over classes.
    #[serde(default)]
    pub average: Option<Average>,
}

/// A metric this validator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Share of rows whose predicted class is the label.
    Accuracy,
    /// tp / (tp + fp).
    Precision,
    /// tp / (tp + fn).
    Recall,
    /// Harmonic mean of precision and recall.
    F1,
    /// Area under the ROC curve.
    RocAuc,
    /// Mean negative log-likelihood of the true class.
    LogLoss,
    /// Root mean squared error.
    Rmse,
    /// Mean absolute error.
    Mae,
    /// Coefficient of determination.
    R2,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 9] = [
        Metric::Accuracy,
        Metric::Precision,
        Metric::Recall,
        Metric::F1,
        Metric::RocAuc,
        Metric::LogLoss,
        Metric::Rmse,
        Metric::Mae,
        Metric::R2,
    ];

    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::RocAuc => "roc_auc",
            Metric::LogLoss => "log_loss",
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
            Metric::R2 => "r2",
        }
    }

    /// The metric by its config name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the metric scores class probabilities (width ≥ 2) rather than
    /// regression values (width 1).
    pub fn is_classification(self) -> bool {
        !matches!(self, Metric::Rmse | Metric::Mae | Metric::R2)
    }

    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::LogLoss | Metric::Rmse | Metric::Mae)
    }

    fn code(self) -> String {
        self.name().replace('_', "-")
    }
}

/// Formats a number for messages: up to 6 decimals, trailing zeros trimmed.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if (s == "0" || s == "-0") && x != 0.0 {
        format!("{x:e}")
    } else {
        s.to_string()
    }
}

/// The metrics and averaging that apply to the candidate's output.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Metrics to compute, in report order.
    pub metrics: Vec<Metric>,
    /// Averaging for precision / recall / f1.
    pub average: Average,
}

/// Checks the config against the output width and decides what to compute.
pub fn plan(cfg: &Config, width: usize) -> Result<Plan, PluginError> {
    if width == 0 {
        return Err(PluginError::bad_input(
            "the candidate's predictions have width 0",
        ));
    }
    let classification = width >= 2;
    for (table, entries) in [
        ("min", &cfg.min),
        ("max", &cfg.max),
        ("max_regression", &cfg.max_regression),
    ] {
        for (name, &value) in entries {
            let Some(m) = Metric::parse(name) else {
                let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                return Err(key_error(
                    format!("{table}.{name}"),
                    format!("unknown metric `{name}` (known: {})", known.join(", ")),
                ));
            };
            if m.is_classification() != classification {
                return Err(key_error(
                    format!("{table}.{name}"),
                    format!(
                        "`{name}` is a {} metric but the candidate's output is {} (width {width})",
                        if m.is_classification() {
                            "classification"
                        } else {
                            "regression"
                        },
                        if classification {
                            "classification"
                        } else {
                            "regression"
                        },
                    ),
                ));
            }
            if !value.is_finite() || (table == "max_regression" && value < 0.0) {
                return Err(key_error(
                    format!("{table}.{name}"),
                    format!(
                        "must be a finite number{}, got {value}",
                        if table == "max_regression" {
                            " ≥ 0"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
    }
    let average = match (width, cfg.average) {
        (1, Some(_)) => {
            return Err(key_error(
                "average",
                "applies to classification outputs, but the candidate's output is regression (width 1)",
            ));
        }
        (1, None) => Average::Binary,
        (2, a) => a.unwrap_or(Average::Binary),
        (_, Some(Average::Binary)) => {
            return Err(key_error(
                "average",
                format!(
                    "is \"binary\", which needs a binary output, but the candidate predicts {width} classes; use \"macro\", \"weighted\" or \"micro\""
                ),
            ));
        }
        (_, a) => a.unwrap_or(Average::Macro),
    };
    let metrics = Metric::ALL
        .into_iter()
        .filter(|m| m.is_classification() == classification)
        .collect();
    Ok(Plan { metrics, average })
}

/// Computes one metric of `preds` against `labels`.
pub fn compute(
    metric: Metric,
    labels: &[f64],
    preds: &Predictions,
    average: Average,
) -> Result<f64, StatsError> {
    let width = preds.width as usize;
    match metric {
        Metric::Accuracy => metrics::accuracy(labels, &classes(preds)?),
        Metric::Precision => {
            Ok(metrics::precision_recall_f1(labels, &classes(preds)?, average)?.precision)
        }
        Metric::Recall => {
            Ok(metrics::precision_recall_f1(labels, &classes(preds)?, average)?.recall)
        }
        Metric::F1 => Ok(metrics::precision_recall_f1(labels, &classes(preds)?, average)?.f1),
        Metric::RocAuc if width == 2 => {
            Probabilities::new(2, &preds.values)?;
            let scores: Vec<f64> = preds.values.chunks_exact(2).map(|r| r[1]).collect();
            metrics::roc_auc_binary(labels, &scores)
        }
        Metric::RocAuc => {
            metrics::roc_auc_ovr_macro(labels, &Probabilities::new(width, &preds.values)?)
        }
        Metric::LogLoss => metrics::log_loss(labels, &Probabilities::new(width, &preds.values)?),
        Metric::Rmse => metrics::rmse(labels, &preds.values),
        Metric::Mae => metrics::mae(labels, &preds.values),
        Metric::R2 => metrics::r2(labels, &preds.values),
    }
}

/// Predicted classes, after checking that the rows are probabilities (so a
/// NaN row is an error, not silently class 0).
fn classes(preds: &Predictions) -> Result<Vec<f64>, StatsError> {
    Ok(Probabilities::new(preds.width as usize, &preds.values)?.argmax())
}

/// The candidate's (and baseline's) value of every planned metric.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Candidate value, or why it could not be computed.
    pub candidate: BTreeMap<Metric, Result<f64, String>>,
    /// Baseline value (when there is a comparable baseline).
    pub baseline: BTreeMap<Metric, Result<f64, String>>,
}

/// The whole step: parses the config, scores, checks, and reports. On the
/// host's dry run (no rows) it checks the config against the prediction
/// width and the labels, then passes without findings.
pub fn run(ctx: &Context) -> Result<Verdict, PluginError> {
    check(ctx).map_err(|e| ctx.name_step(e))
}

fn check(ctx: &Context) -> Result<Verdict, PluginError> {
    let cfg: Config = ctx.config()?;
    plan(&cfg, ctx.candidate_predictions.width as usize)?;
    let labels = ctx.labels()?;
    if ctx.is_dry_run() {
        return Ok(Report::new().finish());
    }
    evaluate(
        &cfg,
        labels,
        &ctx.candidate_predictions,
        ctx.baseline_predictions.as_ref(),
    )
    .map(Report::finish)
}

/// Scores the candidate (and baseline) and applies the config's rules.
pub fn evaluate(
    cfg: &Config,
    labels: &[f64],
    candidate: &Predictions,
    baseline: Option<&Predictions>,
) -> Result<Report, PluginError> {
    let plan = plan(cfg, candidate.width as usize)?;
    let mut report = Report::new();
    let mut scores = Scores::default();
    for &m in &plan.metrics {
        let v = compute(m, labels, candidate, plan.average).map_err(|e| e.to_string());
        scores.candidate.insert(m, v);
    }
    let mut incomparable = false;
    let baseline = match baseline {
        Some(b) if b.width != candidate.width => {
            incomparable = true;
            let msg = format!(
                "the baseline's predictions have width {} but the candidate's have width {}; the two cannot be compared",
                b.width, candidate.width
            );
            if cfg.max_regression.is_empty() {
                report.warn("baseline-incomparable", msg);
            } else {
                report.fail("baseline-incomparable", msg);
            }
            None
        }
        b => b,
    };
    if let Some(b) = baseline {
        for &m in &plan.metrics {
            let v = compute(m, labels, b, plan.average).map_err(|e| e.to_string());
            scores.baseline.insert(m, v);
        }
    } else if !cfg.max_regression.is_empty() && !incomparable {
        report.info(
            "no-baseline",
            "`max_regression` is set but the gate has no baseline predictions; regression checks skipped",
        );
    }
    apply(cfg, &scores, &mut report);
    Ok(report)
}

/// Records every score as a metric and checks it against the config.
pub fn apply(cfg: &Config, scores: &Scores, report: &mut Report) {
    let configured = |m: Metric| {
        cfg.min.contains_key(m.name())
            || cfg.max.contains_key(m.name())
            || cfg.max_regression.contains_key(m.name())
    };
    for (&m, v) in &scores.candidate {
        match v {
            Ok(v) => {
                report.metric(m.name(), *v);
            }
            Err(e) => {
                let msg = format!("{} could not be computed for the candidate: {e}", m.name());
                if configured(m) {
                    report.fail("metric-unavailable", msg);
                } else {
                    report.warn("metric-unavailable", msg);
                }
            }
        }
    }
    for (&m, v) in &scores.baseline {
        match v {
            Ok(v) => {
                report.metric(format!("baseline_{}", m.name()), *v);
            }
            Err(e) => {
                let msg = format!("{} could not be computed for the baseline: {e}", m.name());
                if cfg.max_regression.contains_key(m.name()) {
                    report.fail("metric-unavailable", msg);
                } else {
                    report.warn("metric-unavailable", msg);
                }
            }
        }
    }
    let value = |m: Metric| {
        scores
            .candidate
            .get(&m)
            .and_then(|v| v.as_ref().ok())
            .copied()
    };
    for (name, &min) in &cfg.min {
        let Some(m) = Metric::parse(name) else {
            continue;
        };
        if let Some(v) = value(m)
            && v < min
        {
            report.fail(
                format!("{}-below-threshold", m.code()),
                format!(
                    "{name} {} is below the minimum {} (min.{name})",
                    num(v),
                    num(min)
                ),
            );
        }
    }
    for (name, &max) in &cfg.max {
        let Some(m) = Metric::parse(name) else {
            continue;
        };
        if let Some(v) = value(m)
            && v > max
        {
            report.fail(
                format!("{}-above-threshold", m.code()),
                format!(
                    "{name} {} is above the maximum {} (max.{name})",
                    num(v),
                    num(max)
                ),
            );
        }
    }
    for (name, &delta) in &cfg.max_regression {
        let Some(m) = Metric::parse(name) else {
            continue;
        };
        let base = scores
            .baseline
            .get(&m)
            .and_then(|v| v.as_ref().ok())
            .copied();
        let (Some(v), Some(b)) = (value(m), base) else {
            continue;
        };
        let worse_by = if m.higher_is_better() { b - v } else { v - b };
        if worse_by > delta {
            report.fail(
                format!("{}-regressed", m.code()),
                format!(
                    "{name} {} is {} worse than the baseline's {}; at most {} is allowed (max_regression.{name})",
                    num(v),
                    num(worse_by),
                    num(b),
                    num(delta)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_guest::Severity;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    fn binary(p1: &[f64]) -> Predictions {
        Predictions::probabilities(2, p1.iter().flat_map(|&p| [1.0 - p, p]).collect())
    }

    const LABELS: [f64; 5] = [0.0, 1.0, 1.0, 0.0, 1.0];
    const P1: [f64; 5] = [0.2, 0.8, 0.4, 0.6, 0.9];

    fn metric(v: &Verdict, name: &str) -> f64 {
        v.metric(name).unwrap_or_else(|| panic!("no metric {name}"))
    }

    fn codes(v: &Verdict) -> Vec<&str> {
        v.finding_codes()
    }

    #[test]
    fn binary_metrics_match_hand_computation() {
        // predicted classes 0,1,0,1,1: tp = 2, fp = 1, fn = 1, 3 of 5 right.
        let v = evaluate(&Config::default(), &LABELS, &binary(&P1), None)
            .unwrap()
            .finish();
        assert!(v.passed, "{:?}", v.findings);
        assert_eq!(metric(&v, "accuracy"), 0.6);
        assert!((metric(&v, "precision") - 2.0 / 3.0).abs() < 1e-12);
        assert!((metric(&v, "recall") - 2.0 / 3.0).abs() < 1e-12);
        assert!((metric(&v, "f1") - 2.0 / 3.0).abs() < 1e-12);
        // 5 of the 6 (positive, negative) pairs are ordered right.
        assert!((metric(&v, "roc_auc") - 5.0 / 6.0).abs() < 1e-12);
        let ll = -(0.8f64.ln() * 2.0 + 0.4f64.ln() * 2.0 + 0.9f64.ln()) / 5.0;
        assert!((metric(&v, "log_loss") - ll).abs() < 1e-12);
        assert_eq!(v.metrics.len(), 6);
    }

    #[test]
    fn thresholds_fail_with_names_and_numbers() {
        let c = cfg(json!({"min": {"accuracy": 0.9, "roc_auc": 0.8}, "max": {"log_loss": 0.3}}));
        let v = evaluate(&c, &LABELS, &binary(&P1), None).unwrap().finish();
        assert!(!v.passed);
        assert_eq!(
            codes(&v),
            ["accuracy-below-threshold", "log-loss-above-threshold"]
        );
        assert_eq!(
            v.findings[0].message,
            "accuracy 0.6 is below the minimum 0.9 (min.accuracy)"
        );
        assert!(
            v.findings[1].message.starts_with("log_loss 0.476"),
            "{}",
            v.findings[1].message
        );
        let c = cfg(json!({"min": {"accuracy": 0.6}, "max": {"log_loss": 0.5}}));
        assert!(
            evaluate(&c, &LABELS, &binary(&P1), None)
                .unwrap()
                .finish()
                .passed
        );
    }

    #[test]
    fn regression_against_baseline() {
        let base = binary(&[0.2, 0.8, 0.6, 0.4, 0.9]); // all right: accuracy 1
        let c = cfg(json!({"max_regression": {"accuracy": 0.1, "log_loss": 1.0}}));
        let v = evaluate(&c, &LABELS, &binary(&P1), Some(&base))
            .unwrap()
            .finish();
        assert!(!v.passed);
        assert_eq!(metric(&v, "baseline_accuracy"), 1.0);
        assert_eq!(codes(&v), ["accuracy-regressed"]);
        assert!(
            v.findings[0]
                .message
                .contains("accuracy 0.6 is 0.4 worse than the baseline's 1"),
            "{}",
            v.findings[0].message
        );
        // Better than the baseline is never a regression.
        let v = evaluate(&c, &LABELS, &base, Some(&binary(&P1)))
            .unwrap()
            .finish();
        assert!(v.passed, "{:?}", v.findings);
        // Without a baseline the check is skipped, visibly.
        let v = evaluate(&c, &LABELS, &binary(&P1), None).unwrap().finish();
        assert!(v.passed);
        assert_eq!(codes(&v), ["no-baseline"]);
        // An incomparable baseline fails when regression checks are asked for.
        let wide = Predictions::probabilities(3, vec![1.0 / 3.0; 15]);
        let v = evaluate(&c, &LABELS, &binary(&P1), Some(&wide))
            .unwrap()
            .finish();
        assert_eq!(codes(&v), ["baseline-incomparable"]);
        assert!(!v.passed);
    }

    #[test]
    fn lower_is_better_metrics_regress_upwards() {
        let targets = [1.0, 2.0, 3.0];
        let cand = Predictions::regression(vec![1.0, 2.0, 5.0]);
        let base = Predictions::regression(vec![1.0, 2.0, 3.5]);
        let c = cfg(json!({"max_regression": {"rmse": 0.5, "r2": 10.0}, "max": {"mae": 1.0}}));
        let v = evaluate(&c, &targets, &cand, Some(&base)).unwrap().finish();
        assert!((metric(&v, "rmse") - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((metric(&v, "mae") - 2.0 / 3.0).abs() < 1e-12);
        assert!((metric(&v, "r2") + 1.0).abs() < 1e-12);
        assert!((metric(&v, "baseline_rmse") - (0.25f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(codes(&v), ["rmse-regressed"]);
        assert_eq!(v.metrics.len(), 6);
    }

    #[test]
    fn multiclass_uses_macro_average_and_ovr_auc() {
        let labels = [0.0, 1.0, 2.0, 2.0];
        let p = Predictions::probabilities(
            3,
            vec![0.7, 0.2, 0.1, 0.2, 0.6, 0.2, 0.1, 0.6, 0.3, 0.1, 0.1, 0.8],
        );
        let v = evaluate(&Config::default(), &labels, &p, None)
            .unwrap()
            .finish();
        assert_eq!(metric(&v, "accuracy"), 0.75);
        // Per class precision 1, 1/2, 1; recall 1, 1, 1/2; f1 1, 2/3, 2/3.
        assert!((metric(&v, "precision") - 2.5 / 3.0).abs() < 1e-12);
        assert!((metric(&v, "recall") - 2.5 / 3.0).abs() < 1e-12);
        assert!((metric(&v, "f1") - (1.0 + 4.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!(metric(&v, "roc_auc") > 0.5);
        let v = evaluate(&cfg(json!({"average": "micro"})), &labels, &p, None)
            .unwrap()
            .finish();
        assert_eq!(metric(&v, "precision"), 0.75);
    }

    #[test]
    fn unknown_and_inapplicable_metrics_are_bad_config() {
        let e = plan(&cfg(json!({"min": {"acuracy": 0.9}})), 2).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message.starts_with(
                "config key `min.acuracy`: unknown metric `acuracy` (known: accuracy, "
            ),
            "{}",
            e.message
        );
        let e = plan(&cfg(json!({"min": {"rmse": 0.9}})), 2).unwrap_err();
        assert!(
            e.message.contains("`rmse` is a regression metric"),
            "{}",
            e.message
        );
        let e = plan(&cfg(json!({"max": {"roc_auc": 0.9}})), 1).unwrap_err();
        assert!(
            e.message.contains("`roc_auc` is a classification metric"),
            "{}",
            e.message
        );
        let e = plan(&cfg(json!({"max_regression": {"accuracy": -0.1}})), 2).unwrap_err();
        assert!(e.message.contains("≥ 0"), "{}", e.message);
        let e = plan(&cfg(json!({"average": "binary"})), 3).unwrap_err();
        assert!(e.message.contains("predicts 3 classes"), "{}", e.message);
        let e = serde_json::from_value::<Config>(json!({"minimum": {}})).unwrap_err();
        assert!(e.to_string().starts_with("unknown field `minimum`"), "{e}");
    }

    #[test]
    fn uncomputable_metrics_fail_only_when_configured() {
        let labels = [1.0, 1.0];
        let p = binary(&[0.7, 0.9]);
        let v = evaluate(&Config::default(), &labels, &p, None)
            .unwrap()
            .finish();
        assert!(v.passed);
        assert_eq!(codes(&v), ["metric-unavailable"]);
        assert_eq!(v.findings[0].severity, Severity::Warning);
        assert!(
            v.findings[0].message.starts_with("roc_auc"),
            "{}",
            v.findings[0].message
        );
        let v = evaluate(&cfg(json!({"min": {"roc_auc": 0.5}})), &labels, &p, None)
            .unwrap()
            .finish();
        assert!(!v.passed);
        // NaN predictions are an error, not class 0.
        let nan = Predictions::probabilities(2, vec![f64::NAN, f64::NAN, 0.1, 0.9]);
        let v = evaluate(&cfg(json!({"min": {"accuracy": 0.5}})), &labels, &nan, None)
            .unwrap()
            .finish();
        assert!(!v.passed);
        assert!(codes(&v).iter().all(|c| *c == "metric-unavailable"));
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1e-9), "1e-9");
        assert_eq!(num(f64::INFINITY), "inf");
    }

    fn ctx(config: serde_json::Value, labels: Option<Vec<f64>>) -> Context {
        use airlock_guest::Batch;
        airlock_guest::testing::TestContext::new("performance")
            .config(&config)
            .data(Batch::from_numeric(vec![("x".into(), vec![1.0, 2.0, 3.0, 4.0])]).unwrap())
            .labels(labels)
            .predictions(Predictions::probabilities(
                2,
                vec![0.9, 0.1, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4],
            ))
            .build()
    }

    #[test]
    fn errors_through_the_context_name_the_step_and_the_key() {
        let labels = Some(vec![0.0, 1.0, 1.0, 0.0]);
        let e = run(&ctx(json!({"min": {"acuracy": 0.9}}), labels.clone())).unwrap_err();
        assert!(
            e.message.starts_with(
                "step `performance`: config key `min.acuracy`: unknown metric `acuracy`"
            ),
            "{}",
            e.message
        );
        let e = run(&ctx(json!({"min": {"accuracy": "high"}}), labels.clone())).unwrap_err();
        assert_eq!(
            e.message,
            "step `performance`: config key `min.accuracy`: invalid type: string \"high\", expected f64"
        );
        let e = run(&ctx(json!({"min": {"accuracy": 0.5}}), None)).unwrap_err();
        assert_eq!(e.code, "missing-labels");
        // Labels are checked by metric code, which names 1-based data rows.
        let v = run(&ctx(
            json!({"min": {"accuracy": 0.5}}),
            Some(vec![0.0, 1.0, 1.0, 0.5]),
        ));
        let v = v.unwrap();
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "metric-unavailable")
            .unwrap();
        assert!(
            f.message.contains("labels at data row 4 is 0.5"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_dry_run_checks_metrics_against_the_width_and_labels_then_passes() {
        let labels = Some(vec![0.0, 1.0, 1.0, 0.0]);
        let good = ctx(
            json!({"min": {"accuracy": 0.9, "roc_auc": 0.9}}),
            labels.clone(),
        );
        let v = run(&good.as_dry_run()).unwrap();
        assert!(v.passed);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        let e = run(&ctx(json!({"min": {"rmse": 0.1}}), labels).as_dry_run()).unwrap_err();
        assert_eq!(
            e.message,
            "step `performance`: config key `min.rmse`: `rmse` is a regression metric but the candidate's output is classification (width 2)"
        );
        let e = run(&ctx(json!({}), None).as_dry_run()).unwrap_err();
        assert_eq!(e.code, "missing-labels");
    }
}
