//! The schema checks as plain functions over the WIT types, so that every
//! rule is unit-tested natively without a sandbox.

use airlock_guest::config::{key_error, missing_column};
use airlock_guest::{
    Batch, ColumnValues, Context, FeatureKind, ModelMetadata, PluginError, Predictions, Task,
    Verdict, report::Report,
};
use serde::Deserialize;

/// How many offending rows a finding lists before summarising the rest.
const SHOW_ROWS: usize = 5;

/// The step's configuration: the contract the candidate must meet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The inputs the deployment provides.
    pub inputs: Vec<InputSpec>,
    /// Whether the candidate may declare inputs the contract does not list.
    #[serde(default)]
    pub allow_extra_inputs: bool,
    /// The task the candidate must declare.
    pub task: TaskName,
    /// The class labels, in order, the candidate must declare (unchecked when absent).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
}

/// One input of the contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The feature name, as models and batches spell it.
    pub name: String,
    /// How its values are encoded.
    pub kind: KindName,
    /// Whether the candidate must declare it (optional inputs may be left out).
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// A feature kind as written in gate files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    /// 64-bit floats.
    Numeric,
    /// Category labels.
    Categorical,
}

impl KindName {
    fn matches(self, kind: FeatureKind) -> bool {
        matches!(
            (self, kind),
            (KindName::Numeric, FeatureKind::Numeric)
                | (KindName::Categorical, FeatureKind::Categorical)
        )
    }
}

/// A task as written in gate files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskName {
    /// One real number per row.
    Regression,
    /// Two class probabilities per row.
    BinaryClassification,
    /// One probability per class per row.
    MulticlassClassification,
}

impl TaskName {
    fn matches(self, task: Task) -> bool {
        self == TaskName::from(task)
    }

    fn as_str(self) -> &'static str {
        match self {
            TaskName::Regression => "regression",
            TaskName::BinaryClassification => "binary-classification",
            TaskName::MulticlassClassification => "multiclass-classification",
        }
    }
}

impl From<Task> for TaskName {
    fn from(t: Task) -> Self {
        match t {
            Task::Regression => TaskName::Regression,
            Task::BinaryClassification => TaskName::BinaryClassification,
            Task::MulticlassClassification => TaskName::MulticlassClassification,
        }
    }
}

/// The name gate files use for a feature kind.
pub fn kind_str(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Numeric => "numeric",
        FeatureKind::Categorical => "categorical",
    }
}

impl Config {
    /// Refuses contracts that cannot be met by any model, naming the problem.
    pub fn validate(&self) -> Result<(), PluginError> {
        let mut seen = std::collections::BTreeSet::new();
        for (k, i) in self.inputs.iter().enumerate() {
            if !seen.insert(i.name.as_str()) {
                return Err(key_error(
                    format!("inputs[{k}].name"),
                    format!("`{}` is listed twice", i.name),
                ));
            }
        }
        if let Some(classes) = &self.classes {
            let ok = match self.task {
                TaskName::Regression => classes.is_empty(),
                TaskName::BinaryClassification => classes.len() == 2,
                TaskName::MulticlassClassification => classes.len() >= 2,
            };
            if !ok {
                return Err(key_error(
                    "classes",
                    format!(
                        "has {} entries, which does not fit task `{}` (regression: none, binary: 2, multiclass: 2 or more)",
                        classes.len(),
                        self.task.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The whole step: parses the config, runs every check, returns the verdict.
/// On the host's dry run (no rows) it checks the contract and that the
/// step's dataset has every required contract input, then passes without
/// findings.
pub fn run(ctx: &Context) -> Result<Verdict, PluginError> {
    check(ctx).map_err(|e| ctx.name_step(e))
}

fn check(ctx: &Context) -> Result<Verdict, PluginError> {
    let cfg: Config = ctx.config()?;
    cfg.validate()?;
    for (k, input) in cfg.inputs.iter().enumerate() {
        if input.required && ctx.data.column(&input.name).is_none() {
            return Err(missing_column(
                format!("inputs[{k}].name"),
                &input.name,
                "is a required contract input but is not in the step's dataset",
            ));
        }
    }
    if ctx.is_dry_run() {
        return Ok(Report::new().finish());
    }
    let meta = &ctx.candidate.metadata;
    let mut report = Report::new();
    report.metric("inputs", meta.inputs.len() as f64);
    report.metric("rows", ctx.data.len() as f64);
    check_metadata(&cfg, meta, &mut report);
    check_batch(meta, &ctx.data, &mut report);
    check_predictions(
        expected_width(&cfg, meta),
        matches!(cfg.task, TaskName::Regression),
        ctx.data.len(),
        &ctx.candidate_predictions,
        &mut report,
    );
    Ok(report.finish())
}

/// Checks the candidate's declared inputs, task and classes against the contract.
pub fn check_metadata(cfg: &Config, meta: &ModelMetadata, report: &mut Report) {
    let mut seen = std::collections::BTreeSet::new();
    for f in &meta.inputs {
        if !seen.insert(f.name.as_str()) {
            report.fail(
                "duplicate-input",
                format!("the candidate declares input `{}` more than once", f.name),
            );
        }
    }
    for want in &cfg.inputs {
        match meta.inputs.iter().find(|f| f.name == want.name) {
            None if want.required => {
                report.fail(
                    "missing-input",
                    format!(
                        "contract input `{}` ({}) is not declared by the candidate",
                        want.name,
                        kind_name(want.kind)
                    ),
                );
            }
            None => {}
            Some(f) if !want.kind.matches(f.kind) => {
                report.fail(
                    "input-kind-mismatch",
                    format!(
                        "input `{}` is {} in the contract but the candidate declares it {}",
                        want.name,
                        kind_name(want.kind),
                        kind_str(f.kind)
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for f in &meta.inputs {
        if cfg.inputs.iter().any(|w| w.name == f.name) {
            continue;
        }
        let msg = format!(
            "the candidate declares input `{}` ({}) that the contract does not list",
            f.name,
            kind_str(f.kind)
        );
        if cfg.allow_extra_inputs {
            report.info("extra-input", msg);
        } else {
            report.fail(
                "extra-input",
                format!(
                    "{msg}; production will not send it (set `allow_extra_inputs = true` to accept)"
                ),
            );
        }
    }
    if !cfg.task.matches(meta.output.task) {
        report.fail(
            "task-mismatch",
            format!(
                "the contract expects task `{}` but the candidate declares `{}`",
                cfg.task.as_str(),
                TaskName::from(meta.output.task).as_str()
            ),
        );
    }
    let declared = &meta.output.classes;
    let consistent = match meta.output.task {
        Task::Regression => declared.is_empty(),
        Task::BinaryClassification => declared.is_empty() || declared.len() == 2,
        Task::MulticlassClassification => declared.is_empty() || declared.len() >= 2,
    };
    if !consistent {
        report.fail(
            "classes-inconsistent",
            format!(
                "the candidate declares task `{}` with {} classes [{}]",
                TaskName::from(meta.output.task).as_str(),
                declared.len(),
                declared.join(", ")
            ),
        );
    }
    if let Some(want) = &cfg.classes
        && want != declared
    {
        report.fail(
            "classes-mismatch",
            format!(
                "the contract expects classes [{}] in this order but the candidate declares [{}]",
                want.join(", "),
                declared.join(", ")
            ),
        );
    }
}

fn kind_name(k: KindName) -> &'static str {
    match k {
        KindName::Numeric => "numeric",
        KindName::Categorical => "categorical",
    }
}

/// Checks that the batch provides every input the candidate declares, with
/// the declared kind, and that every column has one value per row.
pub fn check_batch(meta: &ModelMetadata, batch: &Batch, report: &mut Report) {
    for col in &batch.columns {
        if col.len() != batch.len() {
            report.fail(
                "column-length-mismatch",
                format!(
                    "column `{}` has {} values but the batch has {} rows",
                    col.name,
                    col.len(),
                    batch.len()
                ),
            );
        }
    }
    for f in &meta.inputs {
        match batch.column(&f.name) {
            None => {
                report.fail(
                    "missing-column",
                    format!(
                        "the evaluation data has no column `{}`, which the candidate declares as a {} input",
                        f.name,
                        kind_str(f.kind)
                    ),
                );
            }
            Some(col) => {
                let got = match col.values {
                    ColumnValues::Numeric(_) => FeatureKind::Numeric,
                    ColumnValues::Categorical(_) => FeatureKind::Categorical,
                };
                if got != f.kind {
                    report.fail(
                        "column-kind-mismatch",
                        format!(
                            "column `{}` is {} in the evaluation data but the candidate declares it {}",
                            f.name,
                            kind_str(got),
                            kind_str(f.kind)
                        ),
                    );
                }
            }
        }
    }
}

/// The prediction width the contract implies: 1 for regression, 2 for
/// binary, the number of classes for multiclass (from the contract, else
/// from the candidate's declaration; `None` when neither says).
pub fn expected_width(cfg: &Config, meta: &ModelMetadata) -> Option<usize> {
    match cfg.task {
        TaskName::Regression => Some(1),
        TaskName::BinaryClassification => Some(2),
        TaskName::MulticlassClassification => cfg
            .classes
            .as_ref()
            .map(Vec::len)
            .or_else(|| (!meta.output.classes.is_empty()).then_some(meta.output.classes.len())),
    }
}

/// Checks the predictions' width, row count and values.
///
/// `width` is the expected width (`None`: any width of at least 2, for a
/// multiclass contract without classes); probabilities outside `[0, 1]` are
/// a warning for classification outputs.
pub fn check_predictions(
    width: Option<usize>,
    regression: bool,
    rows: usize,
    preds: &Predictions,
    report: &mut Report,
) {
    let w = preds.width as usize;
    let width_ok = match width {
        Some(want) => w == want,
        None => w >= 2,
    };
    if !width_ok {
        let want = width.map_or_else(|| "at least 2".to_string(), |n| n.to_string());
        report.fail(
            "prediction-width-mismatch",
            format!("the candidate's predictions have width {w}, expected {want}"),
        );
    }
    if w == 0 {
        return;
    }
    if preds.values.len() != rows * w {
        report.fail(
            "prediction-rows-mismatch",
            format!(
                "the candidate returned {} values of width {w} for {rows} rows (expected {})",
                preds.values.len(),
                rows * w
            ),
        );
    }
    let mut bad_rows = Vec::new();
    let mut out_of_range = 0usize;
    for (i, row) in preds.values.chunks(w).enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            bad_rows.push(i);
        } else if !regression && row.iter().any(|v| !(0.0..=1.0).contains(v)) {
            out_of_range += 1;
        }
    }
    if !bad_rows.is_empty() {
        let shown: Vec<String> = bad_rows
            .iter()
            .take(SHOW_ROWS)
            .map(|&i| format!("data row {}: {:?}", i + 1, preds.row(i)))
            .collect();
        let more = bad_rows.len().saturating_sub(SHOW_ROWS);
        report.fail(
            "non-finite-predictions",
            format!(
                "{} of {} prediction rows hold NaN or infinity: {}{}",
                bad_rows.len(),
                preds.rows(),
                shown.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        );
    }
    if out_of_range > 0 {
        report.warn(
            "probability-out-of-range",
            format!("{out_of_range} prediction rows hold class probabilities outside [0, 1]"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_guest::{Column, Feature, ModelInfo, OutputSchema, Severity};

    fn meta(inputs: &[(&str, FeatureKind)], task: Task, classes: &[&str]) -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            version: "1".into(),
            inputs: inputs
                .iter()
                .map(|(n, k)| Feature {
                    name: (*n).into(),
                    kind: *k,
                })
                .collect(),
            output: OutputSchema {
                task,
                classes: classes.iter().map(|c| (*c).to_string()).collect(),
            },
        }
    }

    fn ctx(
        config: serde_json::Value,
        meta: ModelMetadata,
        data: Batch,
        preds: Predictions,
    ) -> Context {
        Context {
            step: "schema".into(),
            config: config.to_string(),
            seed: 0,
            candidate: ModelInfo {
                metadata: meta,
                digest: "sha256:00".into(),
                bundle_digest: None,
            },
            baseline: None,
            data,
            labels: None,
            candidate_predictions: preds,
            baseline_predictions: None,
            reference: None,
        }
    }

    fn binary_config() -> serde_json::Value {
        serde_json::json!({
            "task": "binary-classification",
            "classes": ["no", "yes"],
            "inputs": [
                {"name": "a", "kind": "numeric"},
                {"name": "c", "kind": "categorical"},
            ],
        })
    }

    fn good_data() -> Batch {
        Batch {
            rows: 2,
            columns: vec![
                Column {
                    name: "a".into(),
                    values: ColumnValues::Numeric(vec![1.0, 2.0]),
                },
                Column {
                    name: "c".into(),
                    values: ColumnValues::Categorical(vec![Some("x".into()), None]),
                },
            ],
        }
    }

    fn good_meta() -> ModelMetadata {
        meta(
            &[("a", FeatureKind::Numeric), ("c", FeatureKind::Categorical)],
            Task::BinaryClassification,
            &["no", "yes"],
        )
    }

    fn codes(v: &Verdict) -> Vec<&str> {
        v.finding_codes()
    }

    #[test]
    fn matching_candidate_passes_with_metrics() {
        let preds = Predictions::probabilities(2, vec![0.2, 0.8, 0.6, 0.4]);
        let v = run(&ctx(binary_config(), good_meta(), good_data(), preds)).unwrap();
        assert!(v.passed, "{:?}", v.findings);
        assert!(v.findings.is_empty());
        assert_eq!(v.metrics[0].name, "inputs");
        assert_eq!(v.metrics[0].value, 2.0);
        assert_eq!(v.metrics[1].name, "rows");
        assert_eq!(v.metrics[1].value, 2.0);
    }

    #[test]
    fn missing_wrong_kind_and_extra_inputs_fail() {
        let m = meta(
            &[("a", FeatureKind::Categorical), ("z", FeatureKind::Numeric)],
            Task::BinaryClassification,
            &["no", "yes"],
        );
        let cfg: Config = serde_json::from_value(binary_config()).unwrap();
        let mut r = Report::new();
        check_metadata(&cfg, &m, &mut r);
        let v = r.finish();
        assert!(!v.passed);
        assert_eq!(
            codes(&v),
            ["input-kind-mismatch", "missing-input", "extra-input"]
        );
        assert!(
            v.findings[0]
                .message
                .contains("`a` is numeric in the contract")
        );
        assert!(v.findings[1].message.contains("`c` (categorical)"));
        assert!(v.findings[2].message.contains("`z`"));
    }

    #[test]
    fn extra_inputs_allowed_are_info_and_optional_inputs_may_be_absent() {
        let mut c = binary_config();
        c["allow_extra_inputs"] = true.into();
        c["inputs"][1]["required"] = false.into();
        let cfg: Config = serde_json::from_value(c).unwrap();
        let m = meta(
            &[("a", FeatureKind::Numeric), ("z", FeatureKind::Numeric)],
            Task::BinaryClassification,
            &["no", "yes"],
        );
        let mut r = Report::new();
        check_metadata(&cfg, &m, &mut r);
        let v = r.finish();
        assert!(v.passed);
        assert_eq!(codes(&v), ["extra-input"]);
        assert_eq!(v.findings[0].severity, Severity::Info);
    }

    #[test]
    fn task_and_classes_are_checked() {
        let cfg: Config = serde_json::from_value(binary_config()).unwrap();
        let m = meta(
            &[("a", FeatureKind::Numeric), ("c", FeatureKind::Categorical)],
            Task::MulticlassClassification,
            &["yes", "no", "maybe"],
        );
        let mut r = Report::new();
        check_metadata(&cfg, &m, &mut r);
        let v = r.finish();
        assert_eq!(codes(&v), ["task-mismatch", "classes-mismatch"]);
        assert!(v.findings[0].message.contains("`binary-classification`"));
        assert!(
            v.findings[0]
                .message
                .contains("`multiclass-classification`")
        );
        assert!(v.findings[1].message.contains("[no, yes]"));
    }

    #[test]
    fn inconsistent_declared_classes_fail() {
        let mut c = binary_config();
        c.as_object_mut().unwrap().remove("classes");
        let cfg: Config = serde_json::from_value(c).unwrap();
        let m = meta(
            &[("a", FeatureKind::Numeric), ("c", FeatureKind::Categorical)],
            Task::BinaryClassification,
            &["a", "b", "c"],
        );
        let mut r = Report::new();
        check_metadata(&cfg, &m, &mut r);
        assert_eq!(codes(&r.finish()), ["classes-inconsistent"]);
    }

    #[test]
    fn batch_must_provide_declared_inputs_with_their_kind() {
        let m = meta(
            &[
                ("a", FeatureKind::Categorical),
                ("c", FeatureKind::Categorical),
                ("q", FeatureKind::Numeric),
            ],
            Task::Regression,
            &[],
        );
        let mut r = Report::new();
        check_batch(&m, &good_data(), &mut r);
        let v = r.finish();
        assert_eq!(codes(&v), ["column-kind-mismatch", "missing-column"]);
        assert!(v.findings[0].message.contains("`a` is numeric"));
        assert!(v.findings[1].message.contains("`q`"));
    }

    #[test]
    fn predictions_shape_and_values() {
        let mut r = Report::new();
        check_predictions(
            Some(2),
            false,
            2,
            &Predictions::regression(vec![1.0, 0.0, 0.5]),
            &mut r,
        );
        assert_eq!(
            codes(&r.finish()),
            ["prediction-width-mismatch", "prediction-rows-mismatch"]
        );

        let mut r = Report::new();
        let p = Predictions::probabilities(2, vec![0.5, 0.5, f64::NAN, 1.0, 0.3, 0.7]);
        check_predictions(Some(2), false, 3, &p, &mut r);
        let v = r.finish();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["non-finite-predictions"]);
        assert!(
            v.findings[0].message.starts_with("1 of 3 prediction rows"),
            "{}",
            v.findings[0].message
        );
        assert!(
            v.findings[0].message.contains("data row 2: [NaN"),
            "{}",
            v.findings[0].message
        );

        let mut r = Report::new();
        check_predictions(
            Some(1),
            true,
            1,
            &Predictions::regression(vec![f64::INFINITY]),
            &mut r,
        );
        assert!(!r.finish().passed);

        let mut r = Report::new();
        check_predictions(
            Some(2),
            false,
            1,
            &Predictions::probabilities(2, vec![-0.5, 1.5]),
            &mut r,
        );
        let v = r.finish();
        assert!(v.passed);
        assert_eq!(codes(&v), ["probability-out-of-range"]);

        let mut r = Report::new();
        check_predictions(
            None,
            false,
            1,
            &Predictions::probabilities(3, vec![0.2, 0.3, 0.5]),
            &mut r,
        );
        assert!(r.finish().passed);
    }

    #[test]
    fn expected_width_follows_task_and_classes() {
        let m = meta(&[], Task::MulticlassClassification, &["a", "b", "c", "d"]);
        let mut cfg: Config = serde_json::from_value(binary_config()).unwrap();
        assert_eq!(expected_width(&cfg, &m), Some(2));
        cfg.task = TaskName::MulticlassClassification;
        cfg.classes = None;
        assert_eq!(expected_width(&cfg, &m), Some(4));
        cfg.classes = Some(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(expected_width(&cfg, &m), Some(3));
        cfg.task = TaskName::Regression;
        assert_eq!(expected_width(&cfg, &m), Some(1));
    }

    #[test]
    fn bad_configs_are_named() {
        let preds = Predictions::probabilities(2, vec![0.2, 0.8, 0.6, 0.4]);
        let mut c = binary_config();
        c["alow_extra_inputs"] = true.into();
        let e = run(&ctx(c, good_meta(), good_data(), preds.clone())).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message
                .starts_with("step `schema`: config key `alow_extra_inputs`: unknown key"),
            "{}",
            e.message
        );

        let mut c = binary_config();
        c["classes"] = serde_json::json!(["a", "b", "c"]);
        let e = run(&ctx(c, good_meta(), good_data(), preds.clone())).unwrap_err();
        assert!(
            e.message
                .starts_with("step `schema`: config key `classes`: has 3 entries"),
            "{}",
            e.message
        );

        let mut c = binary_config();
        c["inputs"][1]["name"] = "a".into();
        let e = run(&ctx(c, good_meta(), good_data(), preds.clone())).unwrap_err();
        assert_eq!(
            e.message,
            "step `schema`: config key `inputs[1].name`: `a` is listed twice"
        );

        let mut c = binary_config();
        c["inputs"][1]["kind"] = "text".into();
        let e = run(&ctx(c, good_meta(), good_data(), preds.clone())).unwrap_err();
        assert_eq!(
            e.message,
            "step `schema`: config key `inputs[1].kind`: unknown value `text`; expected `numeric` or `categorical`"
        );

        let mut c = binary_config();
        c["task"] = "classification".into();
        let e = run(&ctx(c, good_meta(), good_data(), preds.clone())).unwrap_err();
        assert!(
            e.message.starts_with(
                "step `schema`: config key `task`: unknown value `classification`; expected one of"
            ),
            "{}",
            e.message
        );

        // The dry run checks the same contract and the dataset's column
        // names, and passes without judging the (absent) rows.
        let dry = ctx(binary_config(), good_meta(), good_data(), preds.clone()).as_dry_run();
        let v = run(&dry).unwrap();
        assert!(v.passed);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        let mut c = binary_config();
        c["inputs"][0]["name"] = "zz".into();
        let e = run(&ctx(c, good_meta(), good_data(), preds).as_dry_run()).unwrap_err();
        assert_eq!(e.code, "missing-column");
        assert_eq!(
            e.message,
            "step `schema`: config key `inputs[0].name`: column `zz` is a required contract input but is not in the step's dataset"
        );
    }

    #[test]
    fn end_to_end_failure_on_nan_predictions() {
        let preds = Predictions::probabilities(2, vec![0.2, 0.8, f64::NAN, f64::NAN]);
        let v = run(&ctx(binary_config(), good_meta(), good_data(), preds)).unwrap();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["non-finite-predictions"]);
    }
}
