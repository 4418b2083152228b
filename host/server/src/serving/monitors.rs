//! Continuous validation: the policy's monitor steps (gate steps, by
//! name) run in the sandbox on each version's live window, off the request
//! path, with the step's gate-time reference scored by the version.

use super::control::Control;
use super::window::window_batch;
use super::{ModelServing, WarmVersion};
use crate::error::ApiError;
use crate::state::AppState;
use airlock_core::types::{Context, ModelInfo, Predictions, Reference};
use airlock_rollout::analysis::ValidatorResult;
use std::collections::HashMap;
use std::sync::Arc;

/// A monitor step, loaded once per policy.
pub(crate) struct LoadedMonitor {
    plugin: Arc<airlock_runtime::sandbox::Plugin>,
    step: airlock_core::gate::spec::StepSpec,
    reference: Option<airlock_gate::data::Dataset>,
    /// The reference scored by each version (cached).
    reference_predictions: HashMap<String, Predictions>,
}

/// Runs the policy's monitor steps on `version`'s live window, in the
/// sandbox, on a blocking thread. A step whose window is too small is
/// skipped (it says nothing); a validator that fails to run is a
/// measurement error.
pub(crate) async fn run_monitors(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    c: &mut Control,
    version: &Arc<WarmVersion>,
) -> (Vec<ValidatorResult>, Option<String>) {
    if c.policy.monitors.is_empty() {
        return (Vec::new(), None);
    }
    if c.monitors.len() != c.policy.monitors.len() {
        match load_monitors(
            state,
            &ms.name,
            &c.policy.monitors,
            &version.metadata().inputs,
        )
        .await
        {
            Ok(m) => c.monitors = m,
            Err(e) => return (Vec::new(), Some(format!("loading monitors: {}", e.message))),
        }
    }
    let min_rows = c.policy.min_window_rows;
    let mut monitors = std::mem::take(&mut c.monitors);
    let v = version.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        let mut error = None;
        for (name, m) in monitors.iter_mut() {
            match run_monitor(name, m, &v, min_rows) {
                Ok(Some(r)) => results.push(r),
                Ok(None) => {}
                Err(e) => error = Some(format!("monitor `{name}`: {e}")),
            }
        }
        (monitors, results, error)
    })
    .await;
    match joined {
        Ok((monitors, results, error)) => {
            c.monitors = monitors;
            (results, error)
        }
        Err(e) => (Vec::new(), Some(format!("monitor thread: {e}"))),
    }
}

fn run_monitor(
    name: &str,
    m: &mut LoadedMonitor,
    v: &WarmVersion,
    min_rows: usize,
) -> Result<Option<ValidatorResult>, String> {
    let labelled = m.step.label.is_some();
    let (data, predictions, labels) = window_batch(v, labelled);
    if (data.rows as usize) < min_rows {
        return Ok(None);
    }
    let reference = match &m.reference {
        None => None,
        Some(r) => {
            let preds = match m.reference_predictions.get(&v.version) {
                Some(p) => p.clone(),
                None => {
                    let (batch, _) =
                        airlock_gate::data::model_inputs(&r.batch, &v.metadata().inputs, &[])
                            .map_err(|e| format!("reference: {e}"))?;
                    let p = v
                        .checked
                        .predict(&batch)
                        .map_err(|f| format!("scoring the reference: {}: {}", f.kind, f.message))?
                        .value;
                    m.reference_predictions.insert(v.version.clone(), p.clone());
                    p
                }
            };
            Some(Reference {
                data: r.batch.clone(),
                labels: r.labels.clone(),
                candidate_predictions: preds,
                baseline_predictions: None,
            })
        }
    };
    let ctx = Context {
        step: name.to_string(),
        config: m.step.config_json(),
        seed: 0,
        candidate: ModelInfo {
            metadata: v.metadata().clone(),
            digest: v.plugin_digest.clone(),
            bundle_digest: v.bundle_digest.clone(),
        },
        baseline: None,
        data,
        labels,
        candidate_predictions: predictions,
        baseline_predictions: None,
        reference,
    };
    let options = airlock_runtime::sandbox::CallOptions {
        limits: m.step.limits,
        seed: 0,
        bundle: None,
    };
    let out = m
        .plugin
        .validate(&options, &ctx, None)
        .map_err(|f| format!("{}: {}", f.kind, f.message))?;
    let summary = out
        .value
        .findings
        .iter()
        .find(|f| matches!(f.severity, airlock_core::types::Severity::Error))
        .or(out.value.findings.first())
        .map(|f| f.message.clone())
        .unwrap_or_else(|| {
            if out.value.passed {
                "passed".into()
            } else {
                "failed".into()
            }
        });
    Ok(Some(ValidatorResult {
        name: name.to_string(),
        passed: out.value.passed,
        summary: format!("on {} live rows: {summary}", ctx.data.rows),
    }))
}

async fn load_monitors(
    state: &Arc<AppState>,
    model: &str,
    names: &[String],
    inputs: &[airlock_core::types::Feature],
) -> Result<HashMap<String, LoadedMonitor>, ApiError> {
    let gate: Option<(String,)> = sqlx::query_as(
        "SELECT g.toml FROM models m JOIN gate_current c ON c.name = m.gate JOIN gates g ON g.name = c.name AND g.version = c.version WHERE m.name = $1",
    )
    .bind(model)
    .fetch_optional(&state.db)
    .await?;
    let (toml,) = gate.ok_or_else(|| {
        ApiError::refused(
            "invalid_policy",
            format!("model {model} has no current gate to take monitor steps from"),
        )
    })?;
    let st = state.clone();
    let names = names.to_vec();
    let inputs = inputs.to_vec();
    let model = model.to_string();
    tokio::task::spawn_blocking(move || {
        let scratch = crate::state::scratch_dir(&st, "monitor")?;
        let spec = airlock_core::gate::spec::GateSpec::parse(&toml, scratch.path())
            .map_err(|e| ApiError::internal(format_args!("stored gate: {e}")))?;
        let mut out = HashMap::new();
        for name in names {
            let step = spec
                .steps
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| {
                    ApiError::refused(
                        "invalid_policy",
                        format!("monitor `{name}` is not a step of model {model}'s gate"),
                    )
                })?;
            let digest = crate::gates::pinned(&step.plugin)?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut st.blobs.open(&digest)?, &mut bytes)
                .map_err(|e| ApiError::internal(format_args!("reading validator: {e}")))?;
            let plugin = st.sandbox.load(&bytes).map_err(|e| {
                ApiError::refused("invalid_policy", format!("monitor `{name}`: {e}"))
            })?;
            let reference = match &step.reference {
                None => None,
                Some(r) => {
                    let d = crate::gates::pinned(&r.to_string_lossy())?;
                    let path = scratch.path().join("reference.csv");
                    st.blobs.materialize(&d, &path)?;
                    Some(
                        airlock_gate::data::read_csv_with(
                            &path,
                            Some(&inputs),
                            step.label.as_deref(),
                            &st.config.data_caps,
                        )
                        .map_err(|e| {
                            ApiError::refused(
                                "invalid_policy",
                                format!("monitor `{name}`: reference: {e}"),
                            )
                        })?,
                    )
                }
            };
            out.insert(
                name,
                LoadedMonitor {
                    plugin,
                    step,
                    reference,
                    reference_predictions: HashMap::new(),
                },
            );
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("loading monitors: {e}")))?
}
