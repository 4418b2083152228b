//! airlock validator `robustness`: does the candidate behave when its inputs are slightly off or plainly wrong?
//!
//! Accuracy on clean evaluation rows says nothing about what a model does
//! with a sensor that jitters, a missing value, an overflowed field or a
//! value from another unit. This step builds probe rows from the evaluation
//! data and sends them to the candidate through the `candidate` interface
//! (each call runs in the candidate's own sandbox, charged to this step's
//! fuel):
//!
//! * **noise**: every numeric input of up to `sample_rows` sampled rows is
//!   moved by `noise` × the column's standard deviation, up or down at
//!   random; a row *flips* when its predicted class changes (classification)
//!   or its prediction moves by more than `max_regression_delta` × |the
//!   gate's prediction for it| (regression). The step fails when the share
//!   of flipped rows exceeds `max_flip_share`.
//! * **edge cases**: from one sampled row, one probe per input and case —
//!   missing (NaN, or no category), +∞, −∞, far above and far below the
//!   observed range (max + 10⁶ × range, min − 10⁶ × range) — and one row with
//!   every numeric input 0. The candidate must return finite predictions of
//!   the right width. With `allow_errors_on_edge_cases` it may instead refuse
//!   a probe with its own error; a trap, a sandbox limit (fuel, memory,
//!   time) or a NaN/infinite output always fails. The host records every
//!   failed probe, refusals included, and blocks the step on any kind its
//!   `allow_probe_failures` does not name, so a step that accepts refusals
//!   also sets `allow_probe_failures = ["guest_error"]` (example below).
//!
//! # Trusting the probe answers
//!
//! A model sees every probe batch and could answer small batches differently
//! from the gate's full batch (say, with a constant, which never flips and is
//! always finite). So each probe batch also carries unperturbed copies of
//! the rows being probed (every sampled row in the noise batch, the base row
//! in the edge-case batch), at seeded random positions the model cannot tell
//! apart, and the candidate's answers for them must equal the gate's own
//! predictions for those rows within 1e-9 (absolute or relative). Any
//! disagreement is an `inconsistent-probe-answers` failure naming the data
//! row and both values. The noise probe's "before" is the gate's prediction
//! itself, not a second call.
//!
//! Sampling and noise signs come from a SplitMix64 generator seeded with the
//! run's `seed`, and where the unperturbed rows go from a second generator
//! seeded from it, so the same inputs give the same verdict; no clock and no
//! OS randomness are used.
//!
//! On the host's dry run (no rows) the step only checks its config.
//!
//! # Config
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `noise` | number ≥ 0 | `0.01` | perturbation size, in standard deviations of each column |
//! | `max_flip_share` | number in [0, 1] | `0.05` | largest allowed share of rows whose prediction flips under noise |
//! | `max_regression_delta` | number ≥ 0 | `0.05` | regression: relative move of a prediction that counts as a flip |
//! | `sample_rows` | integer ≥ 1 | `50` | rows sampled from the evaluation data for the noise probe |
//! | `allow_errors_on_edge_cases` | bool | `false` | whether the candidate may refuse edge-case probes with its own error |
//!
//! ```toml
//! [[steps]]
//! name = "robustness"
//! plugin = "robustness"
//! allow_probe_failures = ["guest_error"]
//!
//! [steps.config]
//! noise = 0.01
//! max_flip_share = 0.05
//! sample_rows = 50
//! allow_errors_on_edge_cases = true
//! ```
//!
//! # Findings
//!
//! `prediction-flips` (failure when the flip share is too high, info
//! otherwise), `inconsistent-probe-answers` (failure: an unperturbed row
//! inside a probe batch got a different answer than the gate's),
//! `probe-error` (the candidate failed on the noisy rows),
//! `probe-bad-output` (wrong width or row count), `edge-case-error`,
//! `edge-case-non-finite`, `edge-case-bad-output` (failures, listing the
//! probes), `edge-case-refused` (info, when refusals are allowed), `no-rows`.
//!
//! # Metrics
//!
//! `flip_share`, `flips`, `probes` (probe rows sent: noisy rows plus
//! edge-case rows, not counting the unperturbed copies), `edge_case_failures`,
//! `anchor_rows` (unperturbed copies checked against the gate's
//! predictions), `inconsistent_answers`.
#![forbid(unsafe_code)]

pub mod check;
pub mod rng;

use airlock_guest::{Context, PluginError, Validator, ValidatorInfo, Verdict};

/// The plugin type exported as the component's `validator` world; all logic
/// lives in [`check`], with the candidate passed in as a function, so it
/// can be tested natively against fake models.
pub struct RobustnessValidator;

impl Validator for RobustnessValidator {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "robustness",
            env!("CARGO_PKG_VERSION"),
            "probes the candidate with noisy and edge-case rows and fails on flips, errors and non-finite outputs",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        check::run(&ctx, airlock_guest::candidate::predict)
    }
}

airlock_guest::export_validator!(RobustnessValidator);
