//! Grouping and per-group metrics as plain functions, tested natively.

use std::collections::BTreeMap;

use airlock_guest::config::{key_error, missing_column};
use airlock_guest::{ColumnValues, Context, PluginError, Predictions, Verdict, report::Report};
use serde::Deserialize;

/// A numeric group column with more distinct values than this is refused:
/// it is a measurement, not a group.
pub const MAX_GROUPS: usize = 20;

/// The step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Column defining the groups.
    pub group_column: String,
    /// Metric compared across groups.
    pub metric: FairMetric,
    /// Largest allowed max − min.
    #[serde(default = "default_gap")]
    pub max_gap: f64,
    /// Groups smaller than this are skipped.
    #[serde(default = "default_min_size")]
    pub min_group_size: usize,
    /// The class counted as positive.
    #[serde(default = "one")]
    pub positive_class: usize,
}

fn default_gap() -> f64 {
    0.1
}
fn default_min_size() -> usize {
    10
}
fn one() -> usize {
    1
}

/// A per-group metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FairMetric {
    /// Share of rows whose predicted class is the label.
    Accuracy,
    /// Share of rows predicted positive.
    SelectionRate,
    /// Share of positive rows predicted positive (recall).
    TruePositiveRate,
    /// Share of negative rows predicted positive.
    FalsePositiveRate,
    /// Share of rows predicted positive that are positive.
    Precision,
}

impl FairMetric {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            FairMetric::Accuracy => "accuracy",
            FairMetric::SelectionRate => "selection_rate",
            FairMetric::TruePositiveRate => "true_positive_rate",
            FairMetric::FalsePositiveRate => "false_positive_rate",
            FairMetric::Precision => "precision",
        }
    }

    /// Whether the metric compares predictions with labels.
    pub fn needs_labels(self) -> bool {
        self != FairMetric::SelectionRate
    }

    /// The metric over rows `(label, predicted class)`; `None` when its
    /// denominator is empty (e.g. no positives for the true positive rate).
    pub fn compute(self, rows: &[(f64, usize)], positive: usize) -> Option<f64> {
        let pos = positive as f64;
        let share = |den: Vec<&(f64, usize)>, hit: &dyn Fn(&(f64, usize)) -> bool| {
            if den.is_empty() {
                None
            } else {
                Some(den.iter().filter(|r| hit(r)).count() as f64 / den.len() as f64)
            }
        };
        let all: Vec<&(f64, usize)> = rows.iter().collect();
        match self {
            FairMetric::Accuracy => share(all, &|r| r.0 == r.1 as f64),
            FairMetric::SelectionRate => share(all, &|r| r.1 == positive),
            FairMetric::TruePositiveRate => {
                share(all.into_iter().filter(|r| r.0 == pos).collect(), &|r| {
                    r.1 == positive
                })
            }
            FairMetric::FalsePositiveRate => {
                share(all.into_iter().filter(|r| r.0 != pos).collect(), &|r| {
                    r.1 == positive
                })
            }
            FairMetric::Precision => share(
                all.into_iter().filter(|r| r.1 == positive).collect(),
                &|r| r.0 == pos,
            ),
        }
    }
}

/// Each row's group name (`None` when missing), from a categorical column
/// or a numeric one with at most [`MAX_GROUPS`] distinct values.
pub fn group_names(
    values: &ColumnValues,
    column: &str,
) -> Result<Vec<Option<String>>, PluginError> {
    match values {
        ColumnValues::Categorical(v) => Ok(v.clone()),
        ColumnValues::Numeric(v) => {
            let mut distinct: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            if distinct.len() > MAX_GROUPS {
                return Err(key_error(
                    "group_column",
                    format!(
                        "`{column}` is numeric with {} distinct values; a group column needs at most {MAX_GROUPS} (bin it into a categorical column first)",
                        distinct.len()
                    ),
                ));
            }
            Ok(v.iter()
                .map(|x| (!x.is_nan()).then(|| format!("{}", x + 0.0)))
                .collect())
        }
    }
}

/// The whole step: parses the config, groups the rows and compares. On the
/// host's dry run (no rows) it checks the config against the column names,
/// the labels and the prediction width, then passes without findings.
pub fn run(ctx: &Context) -> Result<Verdict, PluginError> {
    check(ctx).map_err(|e| ctx.name_step(e))
}

fn check(ctx: &Context) -> Result<Verdict, PluginError> {
    let cfg: Config = ctx.config()?;
    check_config(&cfg, &ctx.candidate_predictions)?;
    let col = ctx.data.column(&cfg.group_column).ok_or_else(|| {
        let names: Vec<&str> = ctx.data.column_names().collect();
        missing_column(
            "group_column",
            &cfg.group_column,
            format!(
                "is not in the step's dataset (columns: {})",
                names.join(", ")
            ),
        )
    })?;
    let labels = if cfg.metric.needs_labels() {
        Some(ctx.labels()?)
    } else {
        ctx.labels.as_deref()
    };
    if ctx.is_dry_run() {
        return Ok(Report::new().finish());
    }
    let groups = group_names(&col.values, &cfg.group_column)?;
    evaluate(&cfg, &groups, labels, &ctx.candidate_predictions).map(Report::finish)
}

/// The checks that need only the config and the prediction width.
fn check_config(cfg: &Config, preds: &Predictions) -> Result<(), PluginError> {
    if !(cfg.max_gap.is_finite() && cfg.max_gap >= 0.0) {
        return Err(key_error(
            "max_gap",
            format!("must be a finite number ≥ 0, got {}", cfg.max_gap),
        ));
    }
    let width = preds.width as usize;
    if width < 2 {
        return Err(PluginError::bad_input(format!(
            "fairness compares predicted classes, but the candidate's predictions have width {width} (regression)"
        )));
    }
    if cfg.positive_class >= width {
        return Err(key_error(
            "positive_class",
            format!(
                "is {} but the candidate predicts {width} classes",
                cfg.positive_class
            ),
        ));
    }
    Ok(())
}

/// Computes the metric per group and applies the gap rule.
pub fn evaluate(
    cfg: &Config,
    groups: &[Option<String>],
    labels: Option<&[f64]>,
    preds: &Predictions,
) -> Result<Report, PluginError> {
    check_config(cfg, preds)?;
    let width = preds.width as usize;
    let n = groups.len();
    if preds.values.len() != n * width {
        return Err(PluginError::bad_input(format!(
            "the candidate returned {} prediction values of width {width} for {n} rows",
            preds.values.len()
        )));
    }
    if let Some(l) = labels
        && l.len() != n
    {
        return Err(PluginError::bad_input(format!(
            "{} labels for {n} rows",
            l.len()
        )));
    }
    if let Some(row) = (0..n).find(|&i| preds.row(i).iter().any(|v| !v.is_finite())) {
        return Err(PluginError::bad_input(format!(
            "the prediction for data row {} holds NaN or infinity; fairness needs a predicted class for every row",
            row + 1
        )));
    }

    let mut by_group: BTreeMap<&str, Vec<(f64, usize)>> = BTreeMap::new();
    let mut missing = 0usize;
    for (i, g) in groups.iter().enumerate() {
        let Some(g) = g else {
            missing += 1;
            continue;
        };
        let label = labels.map_or(f64::NAN, |l| l[i]);
        by_group
            .entry(g.as_str())
            .or_default()
            .push((label, preds.predicted_class(i)));
    }

    let mut report = Report::new();
    let name = cfg.metric.name();
    if missing > 0 {
        report.info(
            "missing-group",
            format!(
                "{missing} rows have no value in `{}` and were left out",
                cfg.group_column
            ),
        );
    }
    let mut values: Vec<(&str, f64)> = Vec::new();
    for (g, rows) in &by_group {
        if rows.len() < cfg.min_group_size {
            report.info(
                "small-group",
                format!(
                    "group `{g}` of `{}` has {} rows (< min_group_size {}); skipped",
                    cfg.group_column,
                    rows.len(),
                    cfg.min_group_size
                ),
            );
            continue;
        }
        match cfg.metric.compute(rows, cfg.positive_class) {
            Some(v) => {
                report.metric(format!("fairness.{g}"), v);
                values.push((g, v));
            }
            None => {
                report.info(
                    "undefined-metric",
                    format!(
                        "{name} is undefined for group `{g}` of `{}` ({} rows; no {}); skipped",
                        cfg.group_column,
                        rows.len(),
                        match cfg.metric {
                            FairMetric::TruePositiveRate => "positive labels",
                            FairMetric::FalsePositiveRate => "negative labels",
                            FairMetric::Precision => "positive predictions",
                            _ => "rows",
                        }
                    ),
                );
            }
        }
    }
    report.metric("groups", values.len() as f64);
    if values.len() < 2 {
        report.warn(
            "too-few-groups",
            format!(
                "only {} group(s) of `{}` could be compared; the gap is not checked",
                values.len(),
                cfg.group_column
            ),
        );
        return Ok(report);
    }
    let (best, hi) = values
        .iter()
        .copied()
        .fold(values[0], |a, b| if b.1 > a.1 { b } else { a });
    let (worst, lo) = values
        .iter()
        .copied()
        .fold(values[0], |a, b| if b.1 < a.1 { b } else { a });
    let gap = hi - lo;
    report.metric("gap", gap);
    let msg = format!(
        "{name} differs by {gap:.4} across groups of `{}` (highest: `{best}` {hi:.4}, lowest: `{worst}` {lo:.4}); max_gap {}",
        cfg.group_column, cfg.max_gap
    );
    if gap > cfg.max_gap {
        report.fail("fairness-gap", msg);
    } else {
        report.info("fairness-gap", msg);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_guest::{Batch, Column, Severity};
    use serde_json::json;

    /// Group A: 10 rows, 9 right; group B: 10 rows, 6 right; group C: 3 rows.
    fn fixture() -> (Vec<Option<String>>, Vec<f64>, Predictions) {
        let mut groups = Vec::new();
        let mut labels = Vec::new();
        let mut p1 = Vec::new();
        // A: labels 1×5, 0×5; predicted 1×5, 0×4, 1×1 (one false positive).
        for i in 0..10 {
            groups.push(Some("A".to_string()));
            labels.push(if i < 5 { 1.0 } else { 0.0 });
            p1.push(if i < 5 || i == 9 { 0.8 } else { 0.2 });
        }
        // B: labels 1×5, 0×5; predicted 1×2, 0×3 | 0×4, 1×1: tp 2, fn 3, tn 4, fp 1.
        for i in 0..10 {
            groups.push(Some("B".to_string()));
            labels.push(if i < 5 { 1.0 } else { 0.0 });
            p1.push(if i < 2 || i == 9 { 0.8 } else { 0.2 });
        }
        for _ in 0..3 {
            groups.push(Some("C".to_string()));
            labels.push(1.0);
            p1.push(0.1);
        }
        groups.push(None);
        labels.push(0.0);
        p1.push(0.5);
        let preds = Predictions::probabilities(2, p1.iter().flat_map(|p| [1.0 - p, *p]).collect());
        (groups, labels, preds)
    }

    fn cfg(v: serde_json::Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    fn metric(v: &Verdict, name: &str) -> f64 {
        v.metric(name).unwrap_or_else(|| panic!("no metric {name}"))
    }

    fn codes(v: &Verdict) -> Vec<&str> {
        v.finding_codes()
    }

    #[test]
    fn accuracy_gap_fails_and_names_groups() {
        let (g, l, p) = fixture();
        let v = evaluate(
            &cfg(json!({"group_column": "g", "metric": "accuracy"})),
            &g,
            Some(&l),
            &p,
        )
        .unwrap()
        .finish();
        assert!(!v.passed);
        assert_eq!(metric(&v, "fairness.A"), 0.9);
        assert_eq!(metric(&v, "fairness.B"), 0.6);
        assert!((metric(&v, "gap") - 0.3).abs() < 1e-12);
        assert_eq!(metric(&v, "groups"), 2.0);
        assert_eq!(codes(&v), ["missing-group", "small-group", "fairness-gap"]);
        assert!(
            v.findings[1]
                .message
                .contains("group `C` of `g` has 3 rows")
        );
        assert_eq!(
            v.findings[2].message,
            "accuracy differs by 0.3000 across groups of `g` (highest: `A` 0.9000, lowest: `B` 0.6000); max_gap 0.1"
        );
        let v = evaluate(
            &cfg(json!({"group_column": "g", "metric": "accuracy", "max_gap": 0.35})),
            &g,
            Some(&l),
            &p,
        )
        .unwrap()
        .finish();
        assert!(v.passed);
        assert_eq!(v.findings[2].severity, Severity::Info);
    }

    #[test]
    fn rates_match_hand_counts() {
        let (g, l, p) = fixture();
        let get = |m: &str, min: usize| {
            let v = evaluate(
                &cfg(json!({"group_column": "g", "metric": m, "min_group_size": min})),
                &g,
                Some(&l),
                &p,
            )
            .unwrap()
            .finish();
            (metric(&v, "fairness.A"), metric(&v, "fairness.B"), v)
        };
        assert_eq!(get("selection_rate", 10).0, 0.6);
        assert_eq!(get("selection_rate", 10).1, 0.3);
        assert_eq!(get("true_positive_rate", 10).0, 1.0);
        assert_eq!(get("true_positive_rate", 10).1, 0.4);
        assert_eq!(get("false_positive_rate", 10).0, 0.2);
        assert_eq!(get("false_positive_rate", 10).1, 0.2);
        assert!(get("false_positive_rate", 10).2.passed);
        assert!((get("precision", 10).0 - 5.0 / 6.0).abs() < 1e-12);
        assert!((get("precision", 10).1 - 2.0 / 3.0).abs() < 1e-12);
        // Group C (all positive labels, nothing predicted positive): FPR and precision undefined.
        let (_, _, v) = get("false_positive_rate", 1);
        assert!(
            v.findings
                .iter()
                .any(|f| f.code == "undefined-metric" && f.message.contains("`C`"))
        );
        let (_, _, v) = get("true_positive_rate", 1);
        assert_eq!(metric(&v, "fairness.C"), 0.0);
        assert_eq!(metric(&v, "gap"), 1.0);
    }

    #[test]
    fn numeric_groups_and_limits() {
        let g = group_names(
            &ColumnValues::Numeric(vec![0.0, 1.0, f64::NAN, -0.0, 2.5]),
            "sex",
        )
        .unwrap();
        assert_eq!(
            g,
            vec![
                Some("0".into()),
                Some("1".into()),
                None,
                Some("0".into()),
                Some("2.5".into())
            ]
        );
        let e = group_names(
            &ColumnValues::Numeric((0..21).map(f64::from).collect()),
            "age",
        )
        .unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message
                .starts_with("config key `group_column`: `age` is numeric with 21 distinct values"),
            "{}",
            e.message
        );
    }

    #[test]
    fn too_few_groups_is_a_warning() {
        let (g, l, p) = fixture();
        let v = evaluate(
            &cfg(json!({"group_column": "g", "metric": "accuracy", "min_group_size": 11})),
            &g,
            Some(&l),
            &p,
        )
        .unwrap()
        .finish();
        assert!(v.passed);
        assert_eq!(codes(&v).last(), Some(&"too-few-groups"));
        assert_eq!(v.findings.last().unwrap().severity, Severity::Warning);
    }

    #[test]
    fn through_the_context() {
        let (g, l, p) = fixture();
        let ctx = |config: serde_json::Value, labels: Option<Vec<f64>>| {
            airlock_guest::testing::TestContext::new("fairness")
                .config(&config)
                .data(Batch {
                    rows: g.len() as u32,
                    columns: vec![Column {
                        name: "grp".into(),
                        values: ColumnValues::Categorical(g.clone()),
                    }],
                })
                .labels(labels)
                .predictions(p.clone())
                .build()
        };
        let v = run(&ctx(
            json!({"group_column": "grp", "metric": "selection_rate"}),
            None,
        ))
        .unwrap();
        assert!(!v.passed, "selection rate 0.6 vs 0.3");
        let e = run(&ctx(
            json!({"group_column": "grp", "metric": "accuracy"}),
            None,
        ))
        .unwrap_err();
        assert_eq!(e.code, "missing-labels");
        assert!(e.message.contains("add `label = "), "{}", e.message);
        let e = run(&ctx(
            json!({"group_column": "nope", "metric": "accuracy"}),
            Some(l.clone()),
        ))
        .unwrap_err();
        assert_eq!(e.code, "missing-column");
        assert_eq!(
            e.message,
            "step `fairness`: config key `group_column`: column `nope` is not in the step's dataset (columns: grp)"
        );
        let e = run(&ctx(
            json!({"group_column": "grp", "metric": "recall"}),
            Some(l.clone()),
        ))
        .unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message.starts_with(
                "step `fairness`: config key `metric`: unknown value `recall`; expected one of"
            ),
            "{}",
            e.message
        );
        let e = run(&ctx(
            json!({"group_column": "grp", "metric": "accuracy", "positive_class": 2}),
            Some(l.clone()),
        ))
        .unwrap_err();
        assert_eq!(
            e.message,
            "step `fairness`: config key `positive_class`: is 2 but the candidate predicts 2 classes"
        );

        // The host's dry run: the same checks on names and widths, then a pass.
        let dry = ctx(
            json!({"group_column": "grp", "metric": "accuracy"}),
            Some(l),
        )
        .as_dry_run();
        let v = run(&dry).unwrap();
        assert!(v.passed);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        let dry = ctx(json!({"group_column": "grp", "metric": "accuracy"}), None).as_dry_run();
        assert_eq!(run(&dry).unwrap_err().code, "missing-labels");
        let dry = ctx(
            json!({"group_column": "grq", "metric": "selection_rate"}),
            None,
        )
        .as_dry_run();
        assert_eq!(run(&dry).unwrap_err().code, "missing-column");
        let dry = ctx(
            json!({"group_column": "grp", "metric": "selection_rate", "max_gap": -1}),
            None,
        )
        .as_dry_run();
        assert_eq!(
            run(&dry).unwrap_err().message,
            "step `fairness`: config key `max_gap`: must be a finite number ≥ 0, got -1"
        );
    }

    #[test]
    fn regression_and_nan_predictions_are_refused() {
        let g = vec![Some("a".to_string()); 2];
        let c = cfg(json!({"group_column": "g", "metric": "selection_rate"}));
        let e = evaluate(&c, &g, None, &Predictions::regression(vec![0.1, 0.2])).unwrap_err();
        assert!(e.message.contains("width 1"), "{}", e.message);
        let e = evaluate(
            &c,
            &g,
            None,
            &Predictions::probabilities(2, vec![0.5, 0.5, f64::NAN, 0.1]),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "the prediction for data row 2 holds NaN or infinity; fairness needs a predicted class for every row"
        );
    }
}
