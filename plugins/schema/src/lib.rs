//! airlock validator `schema`: does the candidate fit the slot it is meant to fill?
//!
//! A model that declares different inputs, a different task or different
//! classes than the deployment expects would be served wrong data or have its
//! output misread, so this step checks the candidate's declared metadata
//! against a contract written in the gate, checks that the evaluation batch
//! really provides what the candidate declares, and that the candidate's
//! predictions have the shape the task implies and hold no NaN or infinity.
//!
//! # Config
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `inputs` | list of `{ name, kind, required }` | required | the inputs the deployment provides; `kind` is `"numeric"` or `"categorical"`; `required` (default `true`) inputs must be declared by the candidate with the same kind; optional ones may be left out, but when declared must have the same kind |
//! | `allow_extra_inputs` | bool | `false` | whether the candidate may declare inputs the contract does not list (a failure otherwise, since production will not send them) |
//! | `task` | `"regression"`, `"binary-classification"`, `"multiclass-classification"` | required | the task the candidate must declare |
//! | `classes` | list of strings | not checked | the class labels, in class order, the candidate must declare |
//!
//! ```toml
//! [[steps]]
//! name = "schema"
//! plugin = "schema"
//!
//! [steps.config]
//! task = "binary-classification"
//! classes = ["malignant", "benign"]
//! allow_extra_inputs = false
//! inputs = [
//!   { name = "mean_radius", kind = "numeric" },
//!   { name = "mean_texture", kind = "numeric" },
//!   { name = "clinic", kind = "categorical", required = false },
//! ]
//! ```
//!
//! # Config errors and the dry run
//!
//! Errors name the step and key (``step `schema`: config key
//! `inputs[1].kind`: …``). A required contract input missing from the
//! step's dataset is `missing-column` (key `inputs[i].name`). The host's dry
//! run (no rows) checks the contract and the dataset's column names, then
//! passes with no findings; the candidate is judged on the real run.
//!
//! # Findings (all failures unless noted)
//!
//! `missing-input`, `input-kind-mismatch`, `extra-input` (info when allowed),
//! `duplicate-input`, `task-mismatch`, `classes-mismatch`,
//! `classes-inconsistent`, `missing-column`, `column-kind-mismatch`,
//! `prediction-width-mismatch`, `prediction-rows-mismatch`,
//! `non-finite-predictions`, `probability-out-of-range` (warning).
//!
//! # Metrics
//!
//! `inputs` (inputs the candidate declares), `rows` (rows of the evaluation batch).
#![forbid(unsafe_code)]

pub mod check;

use airlock_guest::{Context, PluginError, Validator, ValidatorInfo, Verdict};

/// The plugin type exported as the component's `validator` world; all logic
/// lives in [`check`] so it can be tested natively.
pub struct SchemaValidator;

impl Validator for SchemaValidator {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "schema",
            env!("CARGO_PKG_VERSION"),
            "checks the candidate's declared inputs, task and classes, and its predictions' shape, against the gate's contract",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        check::run(&ctx)
    }
}

airlock_guest::export_validator!(SchemaValidator);

// Checking a schema is cheap: ask for far less than the host's defaults, so
// a bug here fails fast instead of burning the default budget.
airlock_guest::manifest!("[limits]\nfuel = 500_000_000\nmemory_bytes = 134_217_728\n");
