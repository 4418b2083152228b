//! Serving control: a model's serving policy, canary rollouts (start,
//! resume, abort), shadow traffic, and the serving status (deployment,
//! warm versions, rollout, analysis history, shadow agreement).

use crate::access::Permission;
use crate::auth::Caller;
use crate::error::{
    ApiError, ApiResult,
    extract::{Json, Path},
};
use crate::names::{check_name, check_version};
use crate::serving::control;
use crate::serving::policy::ServingPolicy;
use crate::serving::policy::{install_policy, seal_secrets};
use crate::state::AppState;
use airlock_rollout::rollout::{Action as Step, Rollout};
use airlock_rollout::routing::Split;
use axum::Json as J;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `PUT /v1/models/{name}/serving`: sets the model's serving policy.
pub async fn put_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(policy): Json<ServingPolicy>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_model(Permission::ManageGates, &name)?;
    let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM models WHERE name = $1")
        .bind(&name)
        .fetch_optional(&state.db)
        .await?;
    exists.ok_or_else(|| ApiError::not_found(format!("no model {name}")))?;
    policy
        .check()
        .map_err(|e| ApiError::refused("invalid_policy", format!("serving policy: {e}")))?;
    // Where alerts would go, checked now so the operator hears of a refused
    // destination here (each delivery checks again, resolving afresh).
    let urls: Vec<String> = policy.webhooks.iter().map(|w| w.url.clone()).collect();
    let allow = state.config.serving.webhook_allow.clone();
    tokio::task::spawn_blocking(move || {
        for (i, url) in urls.iter().enumerate() {
            crate::serving::egress::check(url, &allow).map_err(|e| {
                ApiError::refused(
                    "invalid_policy",
                    format!("serving policy: webhooks[{i}]: {e}"),
                )
            })?;
        }
        Ok::<(), ApiError>(())
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("checking webhooks: {e}")))??;
    if !policy.monitors.is_empty() {
        let (toml,): (String,) = sqlx::query_as(
            "SELECT g.toml FROM models m JOIN gate_current c ON c.name = m.gate JOIN gates g ON g.name = c.name AND g.version = c.version WHERE m.name = $1",
        )
        .bind(&name)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| {
            ApiError::refused(
                "invalid_policy",
                format!("serving policy: monitors need a gate, and model {name} has none"),
            )
        })?;
        let spec =
            airlock_core::gate::spec::GateSpec::parse(&toml, std::path::Path::new("/nonexistent"))
                .map_err(|e| ApiError::internal(format_args!("stored gate: {e}")))?;
        for m in &policy.monitors {
            if !spec.steps.iter().any(|s| &s.name == m) {
                return Err(ApiError::refused(
                    "invalid_policy",
                    format!(
                        "serving policy: monitor {} is not a step of the gate (steps: {})",
                        crate::names::show(m),
                        spec.steps
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    let secrets: Vec<String> = policy
        .webhooks
        .iter()
        .map(|w| w.secret.clone().unwrap_or_default())
        .collect();
    let stored = serde_json::to_string(&policy)
        .map_err(|e| ApiError::internal(format_args!("policy: {e}")))?;
    let sealed = seal_secrets(&state, &name, &secrets);
    let now = crate::db::now();
    let mut change = state.begin().await?;
    sqlx::query(
        "INSERT INTO serving_policies (model, policy, secrets, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (model) DO UPDATE SET policy = $2, secrets = $3, updated_at = $4, updated_by = $5",
    )
    .bind(&name)
    .bind(&stored)
    .bind(&sealed)
    .bind(&now)
    .bind(&caller.subject)
    .execute(&mut *change.tx)
    .await?;
    change.record(crate::audit::Event::new(
        &caller.subject,
        airlock_audit::Action::other("serving_policy")
            .map_err(|e| ApiError::internal(format_args!("audit action: {e}")))?,
        format!("{name}/serving"),
        json!({ "policy": serde_json::from_str::<Value>(&stored).unwrap_or(Value::Null), "token": caller.token_id }),
    ));
    state.commit(change).await?;
    if let Some(ms) = state.serving.model(&name) {
        let secrets = secrets.into_iter().map(String::into_bytes).collect();
        install_policy(&ms, policy.clone(), secrets).await;
    }
    Ok(J(json!({ "model": name, "policy": policy })))
}

/// `GET /v1/models/{name}/serving`: policy, deployment, rollout, analysis.
pub async fn status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_model(Permission::Read, &name)?;
    let Some(ms) = state.serving.model(&name) else {
        let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM models WHERE name = $1")
            .bind(&name)
            .fetch_optional(&state.db)
            .await?;
        if exists.is_none() {
            return Err(crate::serving::predict::not_served(&state, &name).await);
        }
        let row: Option<(String,)> =
            sqlx::query_as("SELECT policy FROM serving_policies WHERE model = $1")
                .bind(&name)
                .fetch_optional(&state.db)
                .await?;
        let policy = row
            .and_then(|(p,)| serde_json::from_str::<Value>(&p).ok())
            .unwrap_or_else(|| {
                serde_json::to_value(ServingPolicy::default()).unwrap_or(Value::Null)
            });
        return Ok(J(
            json!({ "model": name, "served": false, "policy": policy }),
        ));
    };
    let dep = ms.deployment.load_full();
    let c = ms.control.lock().await;
    let shadow = dep.shadow.as_ref().map(|s| {
        let a = state
            .serving
            .shadow
            .agreement
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name.clone(), s.version.clone()))
            .cloned()
            .unwrap_or_default();
        json!({ "version": s.version, "compared": a.compared, "disagreed": a.disagreed,
                "disagreement_rate": a.rate(), "mean_abs_difference": a.mean_abs_diff(),
                "verdict": shadow_verdict(&c.policy, &a) })
    });
    let history: Vec<&control::AnalysisRecord> = c.history.iter().rev().take(50).collect();
    Ok(J(json!({
        "model": name,
        "served": true,
        "policy": c.policy,
        "deployment": {
            "generation": dep.generation,
            "stable": dep.stable.version,
            "canary": dep.canary.as_ref().map(|v| &v.version),
            "canary_percent": dep.split.canary_percent,
            "shadow": dep.shadow.as_ref().map(|v| &v.version),
        },
        "warm": ms.warm_names(),
        "rollout": c.rollout.as_ref().map(|r| json!({
            "stable": r.stable(), "candidate": r.candidate(), "phase": r.phase(),
            "step": r.step(), "weight": r.weight(),
        })),
        "shadow": shadow,
        "analysis_in_progress": c.analysing.is_some(),
        "monitors": { "running": c.monitors_out, "runs": c.monitor_runs },
        "analysis": history,
    })))
}

/// The shadow comparison as a verdict: `pass` when the disagreement rate is
/// within `thresholds.max_disagreement` over at least `min_requests`
/// comparisons; `inconclusive` with fewer; `fail` otherwise.
pub fn shadow_verdict(policy: &ServingPolicy, a: &airlock_rollout::compare::Agreement) -> Value {
    let Some(limit) = policy.thresholds.max_disagreement else {
        return json!({ "result": "inconclusive", "reason": "the policy sets no thresholds.max_disagreement" });
    };
    if a.compared < policy.thresholds.min_requests {
        return json!({ "result": "inconclusive", "reason": format!("{} comparisons, fewer than the {} needed", a.compared, policy.thresholds.min_requests) });
    }
    let rate = a.rate().unwrap_or(1.0);
    if rate <= limit {
        json!({ "result": "pass", "reason": format!("disagreement {rate:.4} within {limit}") })
    } else {
        json!({ "result": "fail", "reason": format!("disagreement {rate:.4} over {limit} ({} of {})", a.disagreed, a.compared) })
    }
}

/// `POST /v1/models/{name}/canary` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartCanary {
    /// The candidate version.
    pub version: String,
    /// Why (audited).
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/models/{name}/canary`: starts a canary of `version` against
/// production under the model's policy, or — with one already running —
/// restarts the analysis for the new candidate. The candidate must meet
/// every promotion rule first.
pub async fn start_canary(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<StartCanary>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_alias(&name, "production")?;
    check_version(&req.version)?;
    let ms = crate::serving::predict::served(&state, &name).await?;
    // Checked once before warming, to answer early; and again in the
    // change that records the canary, which is what decides.
    crate::routes::deploy::check_promotable(&state, &name, &req.version, true).await?;
    let warm = crate::serving::prepare(&state, &name, &req.version).await?;
    // Every change to what a model serves takes `alias_lock` and then the
    // model's control lock: no promotion, rollback or analysis can move
    // production between the checks below and the canary's first step.
    let order = state.serving.alias_lock.lock().await;
    let mut c = ms.control.lock().await;
    let dep = ms.deployment.load_full();
    if dep.stable.version == req.version {
        return Err(ApiError::refused(
            "canary_refused",
            format!("version {} is already production", req.version),
        ));
    }
    let running = matches!(
        c.rollout.as_ref().map(Rollout::phase),
        Some(
            airlock_rollout::rollout::Phase::Progressing
                | airlock_rollout::rollout::Phase::Paused { .. }
        )
    );
    // The rollout's next state is worked out on a copy: nothing changes
    // unless the record below commits.
    let (rollout, steps) = match (running, c.rollout.clone()) {
        (true, Some(mut r)) => {
            let steps = r
                .restart(&req.version)
                .map_err(|e| ApiError::refused("canary_refused", e.to_string()))?;
            (r, steps)
        }
        _ => Rollout::start(&dep.stable.version, &req.version, c.policy.plan())
            .map_err(|e| ApiError::refused("canary_refused", format!("serving policy: {e}")))?,
    };
    // The candidate becomes the canary at weight 0; the plan's first step
    // sets its share.
    let split = Split::new(
        &dep.stable.version,
        Some(&req.version),
        0,
        dep.shadow.as_ref().map(|v| v.version.as_str()),
    )
    .map_err(|e| ApiError::internal(format_args!("split: {e}")))?;
    let mut change = state.begin().await?;
    let (run_id, _) = crate::routes::deploy::check_promotable_in(
        &state,
        &mut change.tx,
        &name,
        &req.version,
        true,
    )
    .await?;
    crate::serving::interrupted::mark_running_in(
        &mut change,
        &name,
        &req.version,
        &dep.stable.version,
        &caller.subject,
    )
    .await?;
    change.record(crate::audit::Event::new(
        &caller.subject,
        airlock_audit::Action::other(if running { "canary_restart" } else { "canary_start" })
            .map_err(|e| ApiError::internal(format_args!("audit action: {e}")))?,
        format!("{name}/{}", req.version),
        json!({ "stable": dep.stable.version, "run": run_id, "plan": c.policy.plan(), "reason": req.reason, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    c.rollout = Some(rollout);
    let cap = state.config.serving.warm_versions;
    ms.switch(&state.serving.metrics, cap, |d| {
        (
            d.stable.clone(),
            Some(warm.clone()),
            split,
            d.shadow.clone(),
        )
    });
    let cause = json!({ "started_by": caller.subject });
    let mut done = Vec::new();
    for s in &steps {
        done.push(control::apply(&state, &order, &ms, &mut c, s, &caller.subject, &cause).await?);
    }
    // The analysis window starts now.
    c.history.clear();
    c.restart_analysis();
    drop(c);
    drop(order);
    Ok(J(
        json!({ "model": name, "candidate": req.version, "stable": dep.stable.version,
                 "restarted": running, "actions": done }),
    ))
}

/// `POST /v1/models/{name}/canary/resume`: continues a paused canary.
pub async fn resume_canary(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<J<Value>> {
    canary_command(state, caller, name, None).await
}

/// `POST /v1/models/{name}/canary/abort` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortCanary {
    /// Why (audited, alerted).
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/models/{name}/canary/abort`: stops the canary; stable serves
/// everything again.
pub async fn abort_canary(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<AbortCanary>,
) -> ApiResult<J<Value>> {
    let reason = if req.reason.is_empty() {
        // The rollout says "aborted by a person: <reason>" already.
        "no reason given".to_string()
    } else {
        req.reason
    };
    canary_command(state, caller, name, Some(reason)).await
}

async fn canary_command(
    state: Arc<AppState>,
    caller: Caller,
    name: String,
    abort: Option<String>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_alias(&name, "production")?;
    let ms = crate::serving::predict::served(&state, &name).await?;
    let order = state.serving.alias_lock.lock().await;
    let mut c = ms.control.lock().await;
    let r = c.rollout.as_mut().ok_or_else(|| {
        ApiError::refused("canary_refused", format!("model {name} has no canary"))
    })?;
    let steps: Vec<Step> = match &abort {
        Some(reason) => r.abort(reason),
        None => r.resume(),
    }
    .map_err(|e| ApiError::refused("canary_refused", e.to_string()))?;
    let cause = json!({ "by": caller.subject });
    let mut done = Vec::new();
    for s in &steps {
        done.push(control::apply(&state, &order, &ms, &mut c, s, &caller.subject, &cause).await?);
    }
    if abort.is_none() {
        c.restart_analysis();
    }
    Ok(J(json!({ "model": name, "actions": done })))
}

/// `PUT /v1/models/{name}/shadow` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetShadow {
    /// The version to mirror traffic to; `null` stops shadowing.
    pub version: Option<String>,
}

/// `PUT /v1/models/{name}/shadow`: mirrors stable's traffic to a version
/// that passed the gate (approvals are not needed: it answers no one).
pub async fn set_shadow(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<SetShadow>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_alias(&name, "production")?;
    let ms = crate::serving::predict::served(&state, &name).await?;
    let warm = match &req.version {
        Some(v) => {
            check_version(v)?;
            crate::routes::deploy::check_promotable(&state, &name, v, false).await?;
            Some(crate::serving::prepare(&state, &name, v).await?)
        }
        None => None,
    };
    let cap = state.config.serving.warm_versions;
    let shadow_name = warm.as_ref().map(|w| w.version.clone());
    ms.switch(&state.serving.metrics, cap, |d| {
        let split = Split::new(
            &d.stable.version,
            d.canary.as_ref().map(|v| v.version.as_str()),
            d.split.canary_percent,
            shadow_name.as_deref(),
        )
        .unwrap_or_else(|_| crate::serving::stable_split(&d.stable.version));
        (d.stable.clone(), d.canary.clone(), split, warm.clone())
    });
    if let Some(v) = &shadow_name {
        state
            .serving
            .shadow
            .agreement
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(name.clone(), v.clone()));
    }
    control::record_event(
        &state,
        &caller.subject,
        "shadow",
        &name,
        shadow_name.as_deref().unwrap_or("none"),
        json!({ "shadow": shadow_name, "token": caller.token_id }),
    )
    .await?;
    Ok(J(json!({ "model": name, "shadow": shadow_name })))
}
