//! airlock validator `drift`: does the current data still look like the data the model was judged on?
//!
//! A model is only as good as the match between the data it sees and the data
//! it was validated on. This step compares the current window (the gate's
//! evaluation rows, or a window of live traffic when run continuously) with
//! the reference window (e.g. training data) column by column, with the same
//! tests and defaults as Evidently (`airlock_guest::stats::drift`): the test
//! is chosen from the column's kind, the reference size and the number of
//! distinct values (KS, chi-square, Z, Jensen–Shannon, Wasserstein), and can
//! be overridden per column. It also tests the candidate's predictions for
//! drift. Needs a reference dataset.
//!
//! Every formula, the binning (Sturges edges over the pooled windows for
//! numeric PSI/Jensen–Shannon, category frequencies otherwise), the
//! empty-bin rule (PSI replaces empty shares with 0.0001) and the test
//! selection table are documented, with citations, in the `drift` module
//! of the `airlock-stats` crate (`guest-sdk/stats/src/drift.rs`), which this
//! plugin calls and which is verified against scipy and Evidently to 1e-9.
//!
//! # Dataset rule
//!
//! As in Evidently's dataset drift, the step fails when the share of drifted
//! feature columns (drifted ÷ tested) is **greater than or equal to**
//! `max_drift_share`. A single drifted column below that share is a warning.
//! Prediction columns are not counted in the share; they fail the step on
//! their own when `fail_on_prediction_drift` is true.
//!
//! # Config
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `columns` | list of strings | every column in both windows that the candidate declares as an input | feature columns to test; a listed column missing from either window is a `missing-column` error |
//! | `tests` | table column → test | automatic | test per column: `"ks"`, `"chisquare"`, `"z"`, `"psi"`, `"jensenshannon"`, `"wasserstein"`; prediction columns can be named too |
//! | `thresholds` | table column → number | the test's default (0.05 for p-values, 0.1 for distances) | drift threshold per column |
//! | `predictions` | bool | `true` | also test the candidate's predictions: the positive-class score (`prediction`) for binary, each class's probability (`prediction.<class>`) for multiclass, the value (`prediction`) for regression |
//! | `max_drift_share` | number in (0, 1] | `0.5` | fail when the share of drifted feature columns is ≥ this |
//! | `fail_on_prediction_drift` | bool | `true` | whether a drifted prediction column fails the step (a warning otherwise) |
//! | `correction` | `"none"` or `"bonferroni"` | `"none"` | multiple-testing correction over the tested columns (see below) |
//!
//! # Multiple testing
//!
//! Each p-value test flags drift at its threshold (0.05 by default) even
//! when both windows come from the same distribution; with 30 feature
//! columns, at least one false alarm happens in about 79 % of runs
//! (1 − 0.95³⁰). With `correction = "bonferroni"` every column's p-value
//! threshold (the default or the one in `thresholds`) is divided by the
//! number of columns the step tests — feature and prediction columns, since
//! a false alarm on either warns or fails the step — so the chance of *any*
//! false alarm in the step stays at or below the per-test threshold,
//! whatever the dependence between columns. Distance tests (PSI,
//! Jensen–Shannon, Wasserstein) are not p-values and keep their thresholds.
//! The price is power: a column must drift more clearly to be flagged (the
//! breast-cancer test in `check.rs` still flags a column scaled by 1.5, at
//! p < 10⁻⁶, against a corrected threshold of 0.05 / 31 ≈ 0.0016).
//!
//! A configured `columns` entry missing from either window is a
//! `missing-column` error naming the key (`columns[i]`), as is every other
//! mistake in the config: the host checks each step's config before any
//! step runs (the dry run, see `docs/plugin-authoring.md`).
//!
//! A key of `tests` or `thresholds` that names no tested column is a
//! `bad-config` error, so typos do not silently fall back to defaults.
//!
//! ```toml
//! [[steps]]
//! name = "drift"
//! plugin = "drift"
//!
//! [steps.config]
//! max_drift_share = 0.3
//! tests = { mean_radius = "psi" }
//! thresholds = { mean_radius = 0.2, prediction = 0.01 }
//! fail_on_prediction_drift = true
//! ```
//!
//! # Findings
//!
//! `column-drift` (warning, one per drifted feature column, naming test,
//! score and threshold), `dataset-drift` (failure when the share rule trips,
//! info otherwise), `prediction-drift`,
//! `column-kind-mismatch`, `drift-test-failed` (warning: the column could not
//! be tested, e.g. all values missing; it is left out of the share),
//! `prediction-width-mismatch`, `no-columns-tested` (failure).
//!
//! # Metrics
//!
//! `drift.<column>.score` per tested column (p-value or distance, as
//! Evidently's `drift_score`), `drift_share`, `drifted_columns`, `columns_tested`.
#![forbid(unsafe_code)]

pub mod check;

use airlock_guest::{Context, PluginError, Validator, ValidatorInfo, Verdict};

/// The plugin type exported as the component's `validator` world; all logic
/// lives in [`check`] so it can be tested natively.
pub struct DriftValidator;

impl Validator for DriftValidator {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "drift",
            env!("CARGO_PKG_VERSION"),
            "tests feature and prediction drift against a reference window with Evidently's tests and defaults",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        check::run(&ctx)
    }
}

airlock_guest::export_validator!(DriftValidator);
