//! Loading versions to serve: `prepare` (compile, `init`, snapshot,
//! metadata, the attested-snapshot check and the gate-time drift
//! reference, before any alias moves), the limits every prediction call
//! runs under, and `warm_up` at start. Kept apart from `mod.rs`, which
//! holds what is served (the deployment, the warm set, the switch); this
//! is how a version gets there.

use super::{VersionStats, WarmVersion, attested, interrupted, policy, window};
use crate::error::ApiError;
use crate::state::AppState;
use airlock_core::digest::Digest;
use airlock_core::limits::LimitRequest;
use airlock_rollout::sketch::DistributionMonitor;
use airlock_runtime::sandbox::{Bundle, CallOptions};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A warm version of `model`: the one already loaded when there is one,
/// else loaded now (compile, `init`, snapshot, metadata) on a blocking
/// thread, and refused unless its snapshot is the one its newest passing
/// gate run attested ([`attested`]).
pub async fn prepare(
    state: &Arc<AppState>,
    model: &str,
    version: &str,
) -> Result<Arc<WarmVersion>, ApiError> {
    if let Some(ms) = state.serving.model(model)
        && let Some(v) = ms.warm_version(version)
    {
        return Ok(v);
    }
    let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT plugin, bundle_archive, bundle_digest FROM versions WHERE model = $1 AND version = $2",
    )
    .bind(model)
    .bind(version)
    .fetch_optional(&state.db)
    .await?;
    let (plugin, archive, bundle_digest) =
        row.ok_or_else(|| ApiError::not_found(format!("model {model} has no version {version}")))?;
    let gate: Option<(String,)> = sqlx::query_as(
        "SELECT g.toml FROM models m JOIN gate_current c ON c.name = m.gate JOIN gates g ON g.name = c.name AND g.version = c.version WHERE m.name = $1",
    )
    .bind(model)
    .fetch_optional(&state.db)
    .await?;
    let attested = attested::attested(state, model, version).await?;
    let st = state.clone();
    let (m, v) = (model.to_string(), version.to_string());
    tokio::task::spawn_blocking(move || {
        let warm = load(&st, &m, &v, &plugin, archive.as_deref(), bundle_digest)?;
        attested.check(&m, &v, warm.checked.snapshot.as_ref().map(|s| s.digest))?;
        if let Some((toml,)) = gate {
            match reference(&st, &toml, &warm.metadata().inputs) {
                Ok(Some(r)) => {
                    let names: Vec<String> = warm
                        .metadata()
                        .inputs
                        .iter()
                        .map(|f| f.name.clone())
                        .collect();
                    *warm.distributions.lock().unwrap_or_else(|p| p.into_inner()) =
                        DistributionMonitor::new(&names, Some(r));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    model = %m,
                    version = %v,
                    error = %e,
                    "serving {m} {v}: no drift reference: {e}"
                ),
            }
        }
        Ok(warm)
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("loading a version: {e}")))?
}

/// The limits every prediction call runs under.
pub fn call_options(state: &AppState, bundle: Option<Bundle>) -> CallOptions {
    let s = &state.config.serving;
    CallOptions {
        limits: LimitRequest {
            fuel: Some(s.call_fuel),
            timeout_ms: Some(s.call_timeout_ms),
            ..LimitRequest::default()
        },
        seed: 0,
        bundle,
    }
}

fn load(
    state: &Arc<AppState>,
    model: &str,
    version: &str,
    plugin: &str,
    archive: Option<&str>,
    bundle_digest: Option<String>,
) -> Result<Arc<WarmVersion>, ApiError> {
    let started = Instant::now();
    let fail = |what: String| {
        ApiError::refused(
            "cannot_serve",
            format!("model {model} version {version} cannot be served: {what}"),
        )
    };
    let digest = Digest::parse(plugin).ok_or_else(|| ApiError::internal("stored plugin digest"))?;
    let mut bytes = Vec::new();
    // Read whole, so the blob's hash is checked before anything uses it.
    state.blobs.open(&digest)?.read_to_end(&mut bytes).map_err(
        |e| match crate::error::blob_read(&digest, e) {
            e if e.code == "corrupt_blob" => fail(format!("component: {}", e.message)),
            e => e,
        },
    )?;
    let component = state
        .sandbox
        .load(&bytes)
        .map_err(|e| fail(format!("component: {e}")))?;
    let bundle = match archive {
        Some(a) => {
            let a = Digest::parse(a).ok_or_else(|| ApiError::internal("stored bundle digest"))?;
            let scratch = crate::state::scratch_dir(state, "serve")?;
            let dir = scratch.path().join("bundle");
            crate::state::private_dir(&dir)
                .map_err(|e| ApiError::internal(format_args!("scratch directory: {e}")))?;
            Some(
                crate::bundles::unpack_checked(state, &a, bundle_digest.as_deref(), &dir)
                    .map_err(|e| fail(format!("bundle: {e}")))?,
            )
        }
        None => None,
    };
    let checked = state
        .sandbox
        .open_model(component, call_options(state, bundle))
        .map_err(|f| fail(format!("{}: {}", f.kind, f.message)))?;
    let names: Vec<String> = checked
        .metadata
        .inputs
        .iter()
        .map(|f| f.name.clone())
        .collect();
    let series = state.serving.metrics.version_series(model, version, &names);
    Ok(Arc::new(WarmVersion {
        model: model.to_string(),
        version: version.to_string(),
        plugin_digest: plugin.to_string(),
        bundle_digest,
        stats: VersionStats::default(),
        series,
        distributions: Mutex::new(DistributionMonitor::new(&names, None)),
        window: Mutex::new(window::LiveWindow::new(0)),
        checked,
        load_time: started.elapsed(),
    }))
}

/// The gate-time reference live distributions are compared with: the
/// dataset of the first gate step that names a `reference` (what the drift
/// step compares against), else the first step's dataset.
fn reference(
    state: &AppState,
    gate_toml: &str,
    inputs: &[airlock_core::types::Feature],
) -> Result<Option<airlock_rollout::sketch::Reference>, String> {
    let spec =
        airlock_core::gate::spec::GateSpec::parse(gate_toml, std::path::Path::new("/nonexistent"))
            .map_err(|e| e.to_string())?;
    let Some(data) = spec
        .steps
        .iter()
        .find_map(|s| s.reference.clone())
        .or_else(|| spec.steps.first().map(|s| s.dataset.clone()))
    else {
        return Ok(None);
    };
    let digest = crate::gates::pinned(&data.to_string_lossy()).map_err(|e| e.message)?;
    let scratch = crate::state::scratch_dir(state, "reference").map_err(|e| e.message)?;
    let path = scratch.path().join("reference.csv");
    state
        .blobs
        .materialize(&digest, &path)
        .map_err(|e| e.to_string())?;
    let d = airlock_gate::data::read_csv_with(&path, Some(inputs), None, &state.config.data_caps)
        .map_err(|e| e.to_string())?;
    let (batch, _) =
        airlock_gate::data::model_inputs(&d.batch, inputs, &[]).map_err(|e| e.to_string())?;
    Ok(Some(airlock_rollout::sketch::Reference::from_batch(
        &batch, 5_000,
    )))
}

/// At startup: serves every model's production version and keeps the
/// versions promoted before it warm. A version that no longer loads is
/// reported and skipped; the server still starts.
pub async fn warm_up(state: &Arc<AppState>) {
    let rows: Vec<(String, String)> = match sqlx::query_as(
        "SELECT model, version FROM aliases WHERE alias = 'production' ORDER BY model",
    )
    .fetch_all(&state.db)
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "serving: reading production aliases: {e}");
            return;
        }
    };
    for (model, version) in rows {
        match prepare(state, &model, &version).await {
            Ok(v) => {
                state.serving.set_stable(state, &model, v);
                tracing::info!(model = %model, version = %version, "serving: {model} {version} is warm (production)");
            }
            Err(e) => {
                tracing::error!(
                    model = %model,
                    version = %version,
                    error = %e.message,
                    "serving: {model} {version}: {}",
                    e.message
                );
                continue;
            }
        }
        for earlier in promoted_before(state, &model, &version).await {
            match prepare(state, &model, &earlier).await {
                Ok(v) => state.serving.keep_warm(state, &model, v),
                Err(e) => tracing::warn!(
                    model = %model,
                    version = %earlier,
                    error = %e.message,
                    "serving: {model} {earlier}: {}",
                    e.message
                ),
            }
        }
        policy::load_policy(state, &model).await;
    }
    if let Err(e) = interrupted::close_interrupted(state).await {
        tracing::error!(
            error = %e.message,
            "serving: closing interrupted canaries: {}",
            e.message
        );
    }
}

/// Versions promoted to production before `current`, newest first, at most
/// `serving.warm_versions`.
pub async fn promoted_before(state: &AppState, model: &str, current: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT version FROM history WHERE model = $1 AND alias = 'production' AND action = 'promote' ORDER BY seq DESC",
    )
    .bind(model)
    .fetch_all(&state.db)
    .await
    .unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for (v,) in rows {
        if v != current && !out.contains(&v) {
            out.push(v);
        }
        if out.len() >= state.config.serving.warm_versions {
            break;
        }
    }
    out
}
