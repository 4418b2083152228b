//! airlock validator `golden`: does the candidate still give the answers we know are right?
//!
//! Golden rows are inputs whose correct output someone has pinned down (hand
//! checked cases, regulatory examples, outputs of the model version that was
//! signed off). The evaluation data carries the expected output of each row
//! in an extra column that is not a model input; this step compares the
//! candidate's predictions with it within an absolute tolerance and fails
//! listing the first rows that differ.
//!
//! # Config
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `expected_column` | string | required | numeric column of the evaluation data holding each row's expected output; NaN means "no expectation" and the row is skipped; it must not be a model input |
//! | `tolerance` | number ≥ 0 | `1e-6` | largest allowed absolute difference |
//! | `output` | class index, or `"class"` | see below | which prediction value to compare: width 1 compares the value, width 2 the positive-class (index 1) probability; a number `k` compares class `k`'s probability; `"class"` compares the predicted class index (argmax) with an expected class index. Multiclass outputs (width > 2) need `output` |
//!
//! ```toml
//! [[steps]]
//! name = "golden"
//! plugin = "golden"
//!
//! [steps.config]
//! expected_column = "expected_score"
//! tolerance = 1e-4
//! # output = 1        # class 1's probability (the default for binary)
//! # output = "class"  # the predicted class index
//! ```
//!
//! # Config errors and the dry run
//!
//! Errors name the step and key (``step `golden`: config key `tolerance`:
//! …``). `expected_column` missing from the dataset is `missing-column`; one
//! of the candidate's inputs, a categorical one, or an `output` that does not
//! fit the prediction width is `bad-config`. All of these are found on the
//! host's dry run (no rows), which otherwise passes with no findings.
//!
//! # Findings
//!
//! `golden-mismatch` (failure; lists row index, expected and got for the
//! first mismatching rows), `rows-skipped` (info: rows whose expected value
//! is missing), `no-golden-rows` (failure: nothing to compare).
//!
//! # Metrics
//!
//! `max_abs_error` (largest absolute difference over compared rows, infinite
//! when a prediction is NaN or infinite), `mismatches`, `golden_rows` (rows compared).
#![forbid(unsafe_code)]

pub mod check;

use airlock_guest::{Context, PluginError, Validator, ValidatorInfo, Verdict};

/// The plugin type exported as the component's `validator` world; all logic
/// lives in [`check`] so it can be tested natively.
pub struct GoldenValidator;

impl Validator for GoldenValidator {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "golden",
            env!("CARGO_PKG_VERSION"),
            "compares the candidate's predictions with expected outputs stored in the evaluation data",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        check::run(&ctx)
    }
}

airlock_guest::export_validator!(GoldenValidator);
