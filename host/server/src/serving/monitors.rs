//! Continuous validation: the policy's monitor steps (gate steps, by
//! name) run in the sandbox on each version's live window, off the request
//! path, with the step's gate-time reference scored by the version.

use super::policy::ServingPolicy;
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
/// sandbox, on a blocking thread, without holding the model's control
/// lock. A step whose window is too small is skipped (it says nothing); a
/// validator that fails to run, or monitors that have not answered within
/// `bound`, are a measurement error. Monitors given up on come back to the
/// model when their thread ends; until then the next analysis runs none.
pub(crate) async fn run_monitors(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    policy: &ServingPolicy,
    version: &Arc<WarmVersion>,
    bound: std::time::Duration,
) -> (Vec<ValidatorResult>, Option<String>) {
    if policy.monitors.is_empty() {
        return (Vec::new(), None);
    }
    let loaded = {
        let mut c = ms.control.lock().await;
        if c.monitors_out {
            return (
                Vec::new(),
                Some("the monitors are still running from an earlier interval".into()),
            );
        }
        if c.monitors.len() == policy.monitors.len() {
            c.monitors_out = true;
            c.monitor_runs += 1;
            Some(std::mem::take(&mut c.monitors))
        } else {
            None
        }
    };
    let monitors = match loaded {
        Some(m) => m,
        None => match load_monitors(
            state,
            &ms.name,
            &policy.monitors,
            &version.metadata().inputs,
        )
        .await
        {
            Ok(m) => {
                let mut c = ms.control.lock().await;
                c.monitors_out = true;
                c.monitor_runs += 1;
                m
            }
            Err(e) => return (Vec::new(), Some(format!("loading monitors: {}", e.message))),
        },
    };
    let min_rows = policy.min_window_rows;
    let names = policy.monitors.clone();
    let v = version.clone();
    let owner = ms.clone();
    let (send, answer) = tokio::sync::oneshot::channel();
    let spawned = tokio::task::spawn_blocking(move || {
        // Should the thread unwind (a host-side panic), the model's
        // monitors are no longer out.
        let mut back = Back(Some(owner.clone()));
        let mut monitors = monitors;
        let mut results = Vec::new();
        let mut error = None;
        for (name, m) in monitors.iter_mut() {
            match run_monitor(name, m, &v, min_rows) {
                Ok(Some(r)) => results.push(r),
                Ok(None) => {}
                Err(e) => error = Some(format!("monitor `{name}`: {e}")),
            }
        }
        back.0 = None;
        // Back to the model (unless its policy changed meanwhile), before
        // the answer, so that the next analysis finds them.
        {
            let mut c = owner.control.blocking_lock();
            if c.policy.monitors == names && c.monitors.is_empty() {
                c.monitors = monitors;
            }
            c.monitors_out = false;
        }
        let _ = send.send((results, error));
    });
    drop(spawned);
    match tokio::time::timeout(bound, answer).await {
        Ok(Ok(out)) => out,
        Ok(Err(_)) => (Vec::new(), Some("the monitor thread stopped".into())),
        Err(_) => (
            Vec::new(),
            Some(format!(
                "the monitors did not answer within {} s; this interval is judged without them",
                bound.as_secs_f64()
            )),
        ),
    }
}

/// Marks a model's monitors as back when dropped still holding the model
/// (a monitor thread that unwound).
struct Back(Option<Arc<ModelServing>>);

impl Drop for Back {
    fn drop(&mut self) {
        if let Some(ms) = self.0.take() {
            ms.control.blocking_lock().monitors_out = false;
        }
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
