//! Approvals and promotion: the end of the deployment loop. A version moves
//! to an alias only with a passing attestation that verifies under the
//! host's keys, for exactly its digests, under the model's current gate,
//! plus the approvals its policy asks for; rollback goes back to a version
//! the alias held before.

use crate::access::Permission;
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::{Json, Path};
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, check_version};
use crate::state::{AppState, Change};
use airlock_attest::Envelope;
use airlock_attest::gate::{ExpectedSubject, verify_attestation};
use airlock_audit::Action;
use airlock_core::digest::Digest;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use axum::Json as J;

use super::models::{model_row, model_row_in, version_row, version_row_in};

/// `POST .../approvals` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// `POST /v1/models/{name}/versions/{version}/approvals`.
pub async fn approve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    Json(req): Json<Approve>,
) -> ApiResult<(StatusCode, J<Value>)> {
    check_name("model", &name)?;
    caller.require_model(Permission::Approve, &name)?;
    check_version(&version)?;
    let v = version_row(&state, &name, &version).await?;
    if v.submitter == caller.subject {
        return Err(ApiError::forbidden(format!(
            "{} submitted version {version} of {name} and may not approve it",
            caller.subject
        )));
    }
    if req.comment.len() > 4096 {
        return Err(ApiError::bad_request("comment is over 4096 bytes"));
    }
    let mut change = state.begin().await?;
    let r = sqlx::query(
        "INSERT INTO approvals (model, version, approver, comment, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (model, version, approver) DO NOTHING",
    )
    .bind(&name)
    .bind(&version)
    .bind(&caller.subject)
    .bind(&req.comment)
    .bind(crate::db::now())
    .execute(&mut *change.tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok((
            StatusCode::OK,
            J(json!({ "approved": true, "already": true })),
        ));
    }
    change.record(Event::new(
        &caller.subject,
        Action::Approval,
        format!("{name}/{version}"),
        json!({ "comment": req.comment, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    Ok((StatusCode::CREATED, J(json!({ "approved": true }))))
}

/// `POST /v1/models/{name}/promote` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// The version to move the alias to.
    pub version: String,
    /// The alias (default `production`).
    #[serde(default = "production")]
    pub alias: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

fn production() -> String {
    "production".into()
}

/// What promoting and rolling back check first: well-formed model and
/// alias names, and a caller allowed to move that alias of that model.
fn may_move(caller: &Caller, model: &str, alias: &str) -> Result<(), ApiError> {
    check_name("model", model)?;
    check_name("alias", alias)?;
    caller.require_alias(model, alias)
}

/// `POST /v1/models/{name}/promote`: checks every requirement, names the
/// first that fails, and moves the alias.
pub async fn promote(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<Promote>,
) -> ApiResult<J<Value>> {
    may_move(&caller, &name, &req.alias)?;
    check_version(&req.version)?;
    // Checked once before warming, to answer early; and again below, in
    // the transaction that moves the alias, which is what decides.
    check_promotable(&state, &name, &req.version, true).await?;
    // The production alias is what is served: the version is made warm
    // (compiled, pre-initialised, checked) before the alias moves, so the
    // switch after the commit is one atomic store.
    let warm = if req.alias == "production" {
        Some(crate::serving::prepare(&state, &name, &req.version).await?)
    } else {
        None
    };
    let order = state.serving.alias_lock.lock().await;
    let mut change = state.begin().await?;
    let (run_id, approvers) =
        check_promotable_in(&state, &mut change.tx, &name, &req.version, true).await?;
    let from = move_alias_in(
        &mut change,
        &caller.subject,
        Some(&caller.token_id),
        &name,
        &req.alias,
        &req.version,
        Action::Promotion,
        "promote",
        Some(&run_id),
        &req.reason,
    )
    .await?;
    if from.as_deref() == Some(req.version.as_str()) {
        // Nothing moved and nothing was recorded: the change is dropped.
        drop(change);
        drop(order);
        return Ok(J(
            json!({ "model": name, "alias": req.alias, "version": req.version, "previous": from,
                     "run": run_id, "unchanged": true }),
        ));
    }
    state.commit(change).await?;
    let switch_ns = match warm {
        Some(w) => Some(go_live(&state, &name, w).await),
        None => None,
    };
    drop(order);
    Ok(J(
        json!({ "model": name, "alias": req.alias, "version": req.version, "previous": from,
                 "run": run_id, "approvals": approvers.into_iter().map(|a| a.0).collect::<Vec<_>>(),
                 "switch_ns": switch_ns }),
    ))
}

/// Every rule a version must meet to take production traffic (promotion,
/// a canary; a shadow needs all but the approvals): the newest finished run
/// under the gate's current digest passed; the same bytes were never
/// refused under that digest; the attestation verifies for exactly these
/// digests and that gate digest; enough approvals by someone other than the
/// submitter. Returns the run and the approvers.
pub async fn check_promotable(
    state: &AppState,
    name: &str,
    version: &str,
    approvals: bool,
) -> Result<(String, Vec<(String,)>), ApiError> {
    let mut conn = state.db.acquire().await?;
    check_promotable_in(state, &mut conn, name, version, approvals).await
}

/// [`check_promotable`] as read on `conn`: inside the change that moves
/// the alias (or starts the canary), under the write lock, so that no gate
/// switch, refusal or withdrawn approval can fall between the check and
/// the move.
pub async fn check_promotable_in(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    name: &str,
    version: &str,
    approvals: bool,
) -> Result<(String, Vec<(String,)>), ApiError> {
    let name = name.to_string();
    let model = model_row_in(conn, &name).await?;
    let v = version_row_in(conn, &name, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {version} of model {name}")))?;
    let refuse = |why: String| ApiError::refused("promotion_refused", why);
    let gate = model
        .gate
        .clone()
        .ok_or_else(|| refuse(format!("model {name} has no gate")))?;
    let (gate_version, gate_digest) = crate::gates::current_in(conn, &gate).await?;
    // The newest finished run of this version under the gate's current digest.
    let run: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, attestation FROM runs WHERE model = $1 AND version = $2 AND gate_digest = $3
         AND status IN ('passed', 'refused', 'error') ORDER BY seq DESC LIMIT 1",
    )
    .bind(&name)
    .bind(version)
    .bind(&gate_digest)
    .fetch_optional(&mut *conn)
    .await?;
    let (run_id, status, att) = run.ok_or_else(|| {
        refuse(format!(
            "version {} has no finished gate run under gate {gate} version {gate_version} ({gate_digest})",
            version
        ))
    })?;
    if status != "passed" {
        return Err(refuse(format!(
            "version {}'s gate run {run_id} under gate {gate} version {gate_version} {status}",
            version
        )));
    }
    // A refusal sticks to the bytes: re-running, or re-submitting the same
    // component and bundle under a new version number, until a lucky seed
    // passes buys nothing.
    let refused: Option<(String, String, String)> = sqlx::query_as(
        "SELECT r.id, r.model, r.version FROM runs r JOIN versions v ON v.model = r.model AND v.version = r.version
         WHERE r.gate_digest = $1 AND r.status = 'refused' AND v.plugin = $2
         AND COALESCE(v.bundle_digest, '') = COALESCE($3, '')
         ORDER BY r.seq LIMIT 1",
    )
    .bind(&gate_digest)
    .bind(&v.plugin)
    .bind(&v.bundle_digest)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((r, m, rv)) = refused {
        return Err(refuse(format!(
            "these bytes (component {}, bundle {}) were refused by gate run {r} ({m} {rv}) under gate {gate} version {gate_version}; a later pass does not undo a refusal",
            v.plugin,
            v.bundle_digest.as_deref().unwrap_or("none")
        )));
    }
    let att = att.ok_or_else(|| refuse(format!("gate run {run_id} has no attestation")))?;
    let envelope = Envelope::from_json(&att).map_err(|e| {
        refuse(format!(
            "gate run {run_id}'s attestation does not parse: {e}"
        ))
    })?;
    let expected = ExpectedSubject {
        model: Digest::parse(&v.plugin)
            .ok_or_else(|| ApiError::internal("stored plugin digest"))?,
        bundle: v.bundle_digest.as_deref().and_then(Digest::parse),
    };
    let verified =
        verify_attestation(&envelope, &state.key_set(), Some(&expected)).map_err(|e| {
            refuse(format!(
                "gate run {run_id}'s attestation does not verify: {e}"
            ))
        })?;
    if !verified.passed() {
        return Err(refuse(format!(
            "gate run {run_id}'s attestation records a refusal"
        )));
    }
    if verified.predicate().gate_digest.to_string() != gate_digest {
        return Err(refuse(format!(
            "gate run {run_id}'s attestation is for gate digest {}, not the current {gate_digest}",
            verified.predicate().gate_digest
        )));
    }
    let approvers: Vec<(String,)> = sqlx::query_as(
        "SELECT approver FROM approvals WHERE model = $1 AND version = $2 AND approver <> $3",
    )
    .bind(&name)
    .bind(version)
    .bind(&v.submitter)
    .fetch_all(&mut *conn)
    .await?;
    if approvals && (approvers.len() as i64) < model.approvals_required {
        return Err(refuse(format!(
            "version {} has {} of the {} approvals model {name} requires (the submitter's own does not count)",
            version,
            approvers.len(),
            model.approvals_required
        )));
    }
    Ok((run_id, approvers))
}

/// Serves `warm` as `model`'s production version (one atomic store; a
/// canary in progress ends, since production moved under it) and loads
/// the model's serving policy when it is served for the first time.
/// Returns the switch's duration in nanoseconds.
pub async fn go_live(
    state: &Arc<AppState>,
    model: &str,
    warm: Arc<crate::serving::WarmVersion>,
) -> u64 {
    let first = state.serving.model(model).is_none();
    let took = state.serving.set_stable(state, model, warm);
    if first {
        crate::serving::policy::load_policy(state, model).await;
    } else if let Some(ms) = state.serving.model(model) {
        // Production moved under the canary: it ends with the move (the
        // promotion or rollback is what the record shows).
        let had_canary = ms.control.lock().await.rollout.take().is_some();
        if had_canary && let Err(e) = crate::serving::interrupted::mark_ended(state, model).await {
            tracing::error!(model = %model, error = %e.message, "serving: {model}: {}", e.message);
        }
    }
    took.as_nanos() as u64
}

/// [`move_alias_in`] in a change of its own, by an actor that may not hold a token (the server's own
/// canary analysis and automatic rollback).
#[allow(clippy::too_many_arguments)]
pub async fn move_alias_as(
    state: &AppState,
    actor: &str,
    token: Option<&str>,
    model: &str,
    alias: &str,
    version: &str,
    action: Action,
    verb: &str,
    run: Option<&str>,
    reason: &str,
) -> Result<Option<String>, ApiError> {
    let mut change = state.begin().await?;
    let from = move_alias_in(
        &mut change,
        actor,
        token,
        model,
        alias,
        version,
        action,
        verb,
        run,
        reason,
    )
    .await?;
    state.commit(change).await?;
    Ok(from)
}

/// Moves an alias inside `change`: the alias row, a history row and the
/// audit entry, all committed together or not at all. Returns the version
/// the alias held.
#[allow(clippy::too_many_arguments)]
pub async fn move_alias_in(
    change: &mut Change<'_>,
    actor: &str,
    token: Option<&str>,
    model: &str,
    alias: &str,
    version: &str,
    action: Action,
    verb: &str,
    run: Option<&str>,
    reason: &str,
) -> Result<Option<String>, ApiError> {
    if reason.len() > 4096 {
        return Err(ApiError::bad_request("reason is over 4096 bytes"));
    }
    let from: Option<(String,)> =
        sqlx::query_as("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
            .bind(model)
            .bind(alias)
            .fetch_optional(&mut *change.tx)
            .await?;
    let from = from.map(|f| f.0);
    if from.as_deref() == Some(version) {
        // Already there: nothing moves, so nothing is recorded (no second
        // history row, no audit entry); the transaction rolls back.
        return Ok(from);
    }
    let now = crate::db::now();
    sqlx::query(
        "INSERT INTO aliases (model, alias, version, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (model, alias) DO UPDATE SET version = $3, updated_at = $4, updated_by = $5",
    )
    .bind(model)
    .bind(alias)
    .bind(version)
    .bind(&now)
    .bind(actor)
    .execute(&mut *change.tx)
    .await?;
    sqlx::query(
        "INSERT INTO history (seq, model, alias, version, action, run_id, actor, reason, at)
         VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM history), $1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(model)
    .bind(alias)
    .bind(version)
    .bind(verb)
    .bind(run)
    .bind(actor)
    .bind(reason)
    .bind(&now)
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        actor,
        action,
        format!("{model}/{version}"),
        json!({ "alias": alias, "from": from, "run": run, "reason": reason, "token": token }),
    ));
    Ok(from)
}

/// `POST /v1/models/{name}/rollback` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to go back to (default: the one before the current).
    #[serde(default)]
    pub version: Option<String>,
    /// The alias (default `production`).
    #[serde(default = "production")]
    pub alias: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/models/{name}/rollback`: moves the alias back to a version it
/// held before (by promotion).
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<Rollback>,
) -> ApiResult<J<Value>> {
    may_move(&caller, &name, &req.alias)?;
    model_row(&state, &name).await?;
    let current: Option<(String,)> =
        sqlx::query_as("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
            .bind(&name)
            .bind(&req.alias)
            .fetch_optional(&state.db)
            .await?;
    let current = current.map(|c| c.0).ok_or_else(|| {
        ApiError::refused(
            "rollback_refused",
            format!("model {name} has no {} version", req.alias),
        )
    })?;
    let promoted: Vec<(String,)> = sqlx::query_as(
        "SELECT version FROM history WHERE model = $1 AND alias = $2 AND action = 'promote' ORDER BY seq DESC",
    )
    .bind(&name)
    .bind(&req.alias)
    .fetch_all(&state.db)
    .await?;
    let promoted: Vec<String> = promoted.into_iter().map(|p| p.0).collect();
    let target = match &req.version {
        Some(v) => {
            check_version(v)?;
            // A version that does not exist is named as such, not as one
            // "never promoted".
            version_row(&state, &name, v).await?;
            if !promoted.contains(v) {
                return Err(ApiError::refused(
                    "rollback_refused",
                    format!("version {v} of {name} was never promoted to {}", req.alias),
                ));
            }
            v.clone()
        }
        None => promoted
            .iter()
            .find(|v| **v != current)
            .cloned()
            .ok_or_else(|| {
                ApiError::refused(
                    "rollback_refused",
                    format!(
                        "model {name} has no earlier {} version to roll back to",
                        req.alias
                    ),
                )
            })?,
    };
    if target == current {
        return Err(ApiError::refused(
            "rollback_refused",
            format!("version {target} is already {}", req.alias),
        ));
    }
    // Warm already when it was promoted recently (the usual case): the
    // switch after the commit is then one atomic store.
    let warm = if req.alias == "production" {
        Some(crate::serving::prepare(&state, &name, &target).await?)
    } else {
        None
    };
    let order = state.serving.alias_lock.lock().await;
    // Decided in the transaction that moves the alias: what the alias held
    // is read again under the write lock, and a rollback planned against a
    // version that has since been replaced is refused, never applied to
    // whatever production became meanwhile.
    let mut change = state.begin().await?;
    let now: Option<(String,)> =
        sqlx::query_as("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
            .bind(&name)
            .bind(&req.alias)
            .fetch_optional(&mut *change.tx)
            .await?;
    let now = now.map(|c| c.0);
    if now.as_deref() != Some(current.as_str()) {
        return Err(ApiError::conflict(format!(
            "{} of model {name} moved from {current} to {} while this rollback was prepared; nothing changed, run it again",
            req.alias,
            now.as_deref().unwrap_or("nothing")
        )));
    }
    move_alias_in(
        &mut change,
        &caller.subject,
        Some(&caller.token_id),
        &name,
        &req.alias,
        &target,
        Action::Rollback,
        "rollback",
        None,
        &req.reason,
    )
    .await?;
    state.commit(change).await?;
    let switch_ns = match warm {
        Some(w) => {
            state.serving.metrics.rollback(&name, "manual");
            Some(go_live(&state, &name, w).await)
        }
        None => None,
    };
    drop(order);
    Ok(J(
        json!({ "model": name, "alias": req.alias, "version": target, "previous": current,
                 "switch_ns": switch_ns }),
    ))
}

/// `GET /v1/models/{name}/history`: every alias move, oldest first.
pub async fn history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_model(Permission::Read, &name)?;
    model_row(&state, &name).await?;
    let rows: Vec<(String, String, String, Option<String>, String, String, String)> = sqlx::query_as(
        "SELECT alias, version, action, run_id, actor, reason, at FROM history WHERE model = $1 ORDER BY seq",
    )
    .bind(&name)
    .fetch_all(&state.db)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(alias, version, action, run, actor, reason, at)| {
            json!({ "alias": alias, "version": version, "action": action, "run": run,
                    "by": actor, "reason": reason, "at": at })
        })
        .collect();
    Ok(J(json!({ "model": name, "history": items })))
}
