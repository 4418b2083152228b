//! airlock validator `fairness`: does the candidate serve every group about equally well?
//!
//! A model can look good on average while failing one group of people (or
//! regions, devices, ...). This step splits the labelled evaluation rows by
//! a group column, computes one classification metric per group from the
//! candidate's predicted classes, and fails when the gap between the best
//! and the worst group (max − min) exceeds `max_gap`. Groups with fewer than
//! `min_group_size` rows are reported and left out, since their value is
//! mostly noise. Rows whose group value is missing are left out too.
//!
//! # Config
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `group_column` | string | required | column of the evaluation data defining the groups: categorical, or numeric with at most 20 distinct values |
//! | `metric` | `"accuracy"`, `"selection_rate"`, `"true_positive_rate"`, `"false_positive_rate"`, `"precision"` | required | what to compare: `selection_rate` is the share predicted positive (needs no labels) |
//! | `max_gap` | number ≥ 0 | `0.1` | largest allowed max − min across groups |
//! | `min_group_size` | integer | `10` | smaller groups are reported as info and skipped |
//! | `positive_class` | integer | `1` | the class counted as "positive" (one-vs-rest for multiclass) |
//!
//! ```toml
//! [[steps]]
//! name = "fairness"
//! plugin = "fairness"
//!
//! [steps.config]
//! group_column = "sex"
//! metric = "true_positive_rate"
//! max_gap = 0.1
//! min_group_size = 30
//! ```
//!
//! # Config errors and the dry run
//!
//! Errors name the step and key (``step `fairness`: config key `max_gap`:
//! …``). A `group_column` missing from the dataset is `missing-column`; a
//! metric that needs labels on a step without `label` is `missing-labels`;
//! a `positive_class` the candidate does not predict is `bad-config`. All of
//! these are found on the host's dry run (no rows), which otherwise passes
//! with no findings. A numeric group column with too many distinct values
//! can only be seen in the data, so it is reported on the real run.
//!
//! # Findings
//!
//! `fairness-gap` (failure when the gap exceeds `max_gap`, info otherwise;
//! names the best and worst groups and their values), `small-group` (info),
//! `undefined-metric` (info: e.g. a true positive rate in a group without
//! positives; the group is skipped), `missing-group` (info), `too-few-groups`
//! (warning: fewer than two groups could be compared).
//!
//! # Metrics
//!
//! `fairness.<group>` per compared group, `gap`, `groups` (groups compared).
#![forbid(unsafe_code)]

pub mod check;

use airlock_guest::{Context, PluginError, Validator, ValidatorInfo, Verdict};

/// The plugin type exported as the component's `validator` world; all logic
/// lives in [`check`] so it can be tested natively.
pub struct FairnessValidator;

impl Validator for FairnessValidator {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "fairness",
            env!("CARGO_PKG_VERSION"),
            "compares a classification metric across groups and fails when the gap is too large",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        check::run(&ctx)
    }
}

airlock_guest::export_validator!(FairnessValidator);
