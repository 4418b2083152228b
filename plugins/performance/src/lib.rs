//! airlock validator `performance`: is the candidate good enough, and no worse than production?
//!
//! Scores the candidate's predictions on the labelled evaluation rows with
//! scikit-learn-compatible metrics (`airlock_guest::stats::metrics`), checks
//! them against absolute thresholds, and — when the gate has a production
//! baseline — checks that the candidate is not worse than the baseline by
//! more than an allowed margin. Needs labels.
//!
//! # Config
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `min` | table metric → number | `{}` | fail when the metric is below the number |
//! | `max` | table metric → number | `{}` | fail when the metric is above the number |
//! | `max_regression` | table metric → number ≥ 0 | `{}` | fail when the candidate is worse than the baseline by more than the number ("worse" is lower for accuracy, precision, recall, f1, roc_auc, r2 and higher for log_loss, rmse, mae); checked only when the gate has baseline predictions |
//! | `average` | `"binary"`, `"macro"`, `"weighted"`, `"micro"` | binary: `"binary"` (positive class 1); multiclass: `"macro"` | how precision, recall and f1 combine classes (scikit-learn's `average=`) |
//!
//! Metrics: `accuracy`, `precision`, `recall`, `f1`, `roc_auc` (binary:
//! positive-class score; multiclass: one-vs-rest, macro), `log_loss` for
//! classification outputs (width ≥ 2), and `rmse`, `mae`, `r2` for
//! regression outputs (width 1). A name that is unknown, or that does not fit
//! the candidate's output, is a `bad-config` error naming it.
//!
//! ```toml
//! [[steps]]
//! name = "performance"
//! plugin = "performance"
//!
//! [steps.config]
//! min = { accuracy = 0.9, roc_auc = 0.95 }
//! max = { log_loss = 0.3 }
//! max_regression = { accuracy = 0.01 }
//! ```
//!
//! # Config errors and the dry run
//!
//! Errors name the step and key (``step `performance`: config key
//! `min.acuracy`: unknown metric …``); a step without `label` is
//! `missing-labels`. Metric names, their fit to the candidate's output
//! width and `average` are checked on the host's dry run (no rows), which
//! otherwise passes with no findings.
//!
//! # Findings
//!
//! `<metric>-below-threshold`, `<metric>-above-threshold`,
//! `<metric>-regressed` (failures; the metric in kebab case, e.g.
//! `roc-auc-below-threshold`), `metric-unavailable` (a metric could not be
//! computed, e.g. ROC AUC with a single class in the labels: a failure when
//! the metric has a threshold, a warning otherwise), `no-baseline` (info:
//! `max_regression` set but the gate has no baseline), `baseline-incomparable`.
//!
//! # Metrics
//!
//! Every metric that applies to the output and could be computed, under its
//! own name, and `baseline_<name>` for the baseline's value when there is one.
#![forbid(unsafe_code)]

pub mod check;

use airlock_guest::{Context, PluginError, Validator, ValidatorInfo, Verdict};

/// The plugin type exported as the component's `validator` world; all logic
/// lives in [`check`] so it can be tested natively.
pub struct PerformanceValidator;

impl Validator for PerformanceValidator {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "performance",
            env!("CARGO_PKG_VERSION"),
            "scores the candidate against metric thresholds and against the production baseline",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        check::run(&ctx)
    }
}

airlock_guest::export_validator!(PerformanceValidator);
