//! The configuration check that runs before any step: every step's
//! validator is dry-run on zero rows of its data, so a misconfigured gate is
//! refused as the gate's error (exit 2, naming the step, the key and its
//! line in the gate file) before any verdict exists, and never looks like a
//! refused (or, for an advisory step, a passed) candidate.

use super::step::Scored;
use super::{DataKey, GateError, GateJob, LoadedStep};
use crate::data::Dataset;
use airlock_core::contract;
use airlock_core::gate::spec::StepSpec;
use airlock_core::types::{Batch, Context, Predictions, Reference};
use airlock_runtime::error::FailureKind;
use airlock_runtime::sandbox::{CallOptions, CheckedModel};
use std::collections::HashMap;

/// Guest error codes that mean "the gate is misconfigured", not "the
/// candidate is bad": a validator returns them from its configuration
/// check.
pub const CONFIG_ERROR_CODES: [&str; 4] = [
    "bad-config",
    "missing-labels",
    "missing-column",
    "missing-reference",
];

/// Fuel cap of a step's configuration dry run.
pub const DRY_RUN_FUEL: u64 = 200_000_000;
/// Wall-clock cap of a step's configuration dry run, in milliseconds.
pub const DRY_RUN_TIMEOUT_MS: u64 = 2_000;

impl GateJob {
    /// Dry-runs step `i`'s validator on zero rows of its data, so that it
    /// checks its configuration against the columns and the models before
    /// any step runs. A configuration error is a [`GateError::StepConfig`]
    /// pointing at the key in the gate file; any other outcome is left for
    /// the real run to report. Returns the fuel used.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_config(
        &self,
        i: usize,
        step: &StepSpec,
        l: &LoadedStep,
        datasets: &HashMap<DataKey, Dataset>,
        cand: &Scored,
        base: Option<&Scored>,
        seed: u64,
    ) -> Result<u64, GateError> {
        let data = &datasets[&(self.spec.resolve(&step.dataset), step.label.clone())];
        let empty_preds = |m: &CheckedModel| Predictions {
            width: contract::expected_width(&m.metadata) as u32,
            values: Vec::new(),
        };
        let labels = step.label.as_ref().map(|_| Vec::new());
        let reference = step.reference.as_ref().map(|r| {
            let r = &datasets[&(self.spec.resolve(r), step.label.clone())];
            Reference {
                data: zero_rows(&r.batch),
                labels: labels.clone(),
                candidate_predictions: empty_preds(&cand.model),
                baseline_predictions: base.map(|b| empty_preds(&b.model)),
            }
        });
        let ctx = Context {
            step: step.name.clone(),
            config: step.config_json(),
            seed,
            candidate: cand.info.clone(),
            baseline: base.map(|b| b.info.clone()),
            data: zero_rows(&data.batch),
            labels,
            candidate_predictions: empty_preds(&cand.model),
            baseline_predictions: base.map(|b| empty_preds(&b.model)),
            reference,
        };
        // A configuration check is cheap; a validator that loops here is
        // stopped early and judged by its real run.
        let cap = |v: Option<u64>, c: u64| Some(v.map_or(c, |v| v.min(c)));
        let options = CallOptions {
            limits: airlock_core::limits::LimitRequest {
                fuel: cap(step.limits.fuel, DRY_RUN_FUEL),
                timeout_ms: cap(step.limits.timeout_ms, DRY_RUN_TIMEOUT_MS),
                ..step.limits
            },
            seed,
            bundle: None,
        };
        match l.plugin.validate(&options, &ctx, None) {
            Ok(o) => Ok(o.fuel_used),
            Err(f) => {
                let code = f.guest_code.as_deref().unwrap_or("");
                if f.kind == FailureKind::GuestError && CONFIG_ERROR_CODES.contains(&code) {
                    let key = config_key_in(&f.message);
                    let (line, column) = key
                        .and_then(|k| self.spec.locate_config_key(i, k))
                        .or_else(|| self.spec.locate_config_key(i, ""))
                        .unwrap_or((1, 1));
                    // The validator may repeat the code and the step name.
                    let message = f
                        .message
                        .strip_prefix(&format!("{code}: "))
                        .unwrap_or(&f.message);
                    let message = message
                        .strip_prefix(&format!("step `{}`: ", step.name))
                        .unwrap_or(message)
                        .to_string();
                    return Err(GateError::StepConfig {
                        file: self.spec_file_name(),
                        line,
                        column,
                        step: step.name.clone(),
                        message: format!("{code}: {message}"),
                    });
                }
                Ok(f.fuel_used)
            }
        }
    }
}

/// `batch` with the same columns and no rows.
fn zero_rows(batch: &Batch) -> Batch {
    batch
        .rows_in(0..0)
        .expect("rows 0..0 are within every batch and every column")
}

/// The dotted key in a validator's ``config key `a.b` `` message.
fn config_key_in(message: &str) -> Option<&str> {
    let rest = &message[message.find("config key `")? + "config key `".len()..];
    Some(&rest[..rest.find('`')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_read_from_validator_messages() {
        assert_eq!(
            config_key_in("step `drift`: config key `max_drif_share`: unknown key"),
            Some("max_drif_share")
        );
        assert_eq!(
            config_key_in("config key `min.accuracy`: not a number"),
            Some("min.accuracy")
        );
        assert_eq!(config_key_in("no key here"), None);
    }
}
