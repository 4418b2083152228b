//! Gate runs: reading a run and its attestation, re-running a version's
//! gate (fresh or reproducing an earlier run's seed), cancelling a run.

use crate::access::Permission;
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::Path;
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, check_version, show};
use crate::state::AppState;
use airlock_audit::Action;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use axum::Json as J;

use super::models::{RUN_COLUMNS, Reproduce, RunView, model_row, queue_run, version_row};

/// `POST .../runs` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rerun {
    /// Repeat this earlier run exactly: its gate version, baseline and seed.
    /// A reproduction is evidence, never a second chance: promotion refuses
    /// a version any of whose runs under the current gate was refused.
    #[serde(default)]
    pub reproduce: Option<String>,
}

/// `POST /v1/models/{name}/versions/{version}/runs`: runs the current gate
/// again, or reproduces an earlier run.
pub async fn rerun(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, J<Value>)> {
    let req: Rerun = if body.is_empty() {
        Rerun::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?
    };
    check_name("model", &name)?;
    caller.require_model(Permission::Submit, &name)?;
    check_version(&version)?;
    let model = model_row(&state, &name).await?;
    version_row(&state, &name, &version).await?;
    let gate = model
        .gate
        .ok_or_else(|| ApiError::refused("no_gate", format!("model {name} has no gate")))?;
    let reproduce = match &req.reproduce {
        Some(id) => {
            let earlier = run_row(&state, id).await?;
            if earlier.model != name || earlier.version != version {
                return Err(ApiError::bad_request(format!(
                    "run {id} judged {}/{}, not {name}/{version}",
                    earlier.model, earlier.version
                )));
            }
            let (seed,): (Option<String>,) = sqlx::query_as("SELECT seed FROM runs WHERE id = $1")
                .bind(id)
                .fetch_one(&state.db)
                .await?;
            let seed = seed.ok_or_else(|| {
                ApiError::conflict(format!(
                    "run {id} has no recorded seed (status {})",
                    earlier.status
                ))
            })?;
            Some(Reproduce {
                id: id.clone(),
                seed,
                gate_version: earlier.gate_version,
                gate_digest: earlier.gate_digest,
                baseline: earlier.baseline,
            })
        }
        None => None,
    };
    let place = state.runs.reserve()?;
    let mut change = state.begin().await?;
    let run = queue_run(
        &state,
        &mut change,
        &name,
        &version,
        &gate,
        &caller,
        reproduce.as_ref(),
    )
    .await?;
    state.commit(change).await?;
    place.push(&run);
    Ok((
        StatusCode::ACCEPTED,
        J(json!({ "run": run, "reproduces": req.reproduce })),
    ))
}

async fn run_row(state: &AppState, id: &str) -> Result<RunView, ApiError> {
    if !id.starts_with("run_") || id.len() != 20 || !id[4..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ApiError::bad_name(format!(
            "run id {} is malformed (run_<16 hex>)",
            show(id)
        )));
    }
    sqlx::query_as(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

/// Run `id`, once the caller is known to hold `permission` on its model
/// (the model is only known from the run).
async fn run_for(
    state: &AppState,
    caller: &Caller,
    permission: Permission,
    id: &str,
) -> Result<RunView, ApiError> {
    caller.require(permission)?;
    let run = run_row(state, id).await?;
    caller.require_model(permission, &run.model)?;
    Ok(run)
}

/// A stored text column of run `id` (`report` or `attestation`).
async fn run_text(state: &AppState, id: &str, column: &str) -> Result<Option<String>, ApiError> {
    let (text,): (Option<String>,) =
        sqlx::query_as(&format!("SELECT {column} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_one(&state.db)
            .await?;
    Ok(text)
}

/// `GET /v1/runs/{id}`: status, and the report once judged.
pub async fn get_run(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<J<Value>> {
    let run = run_for(&state, &caller, Permission::Read, &id).await?;
    let report: Value = run_text(&state, &id, "report")
        .await?
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or(Value::Null);
    Ok(J(json!({ "run": run, "report": report })))
}

/// `GET /v1/runs/{id}/attestation`: the signed DSSE envelope.
pub async fn get_attestation(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<J<Value>> {
    let run = run_for(&state, &caller, Permission::Read, &id).await?;
    let att = run_text(&state, &id, "attestation").await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "run {id} has no attestation (status {})",
            run.status
        ))
    })?;
    serde_json::from_str(&att)
        .map(J)
        .map_err(|e| ApiError::internal(format_args!("stored attestation: {e}")))
}

/// `POST /v1/runs/{id}/cancel`.
pub async fn cancel_run(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<J<Value>> {
    let run = run_for(&state, &caller, Permission::Submit, &id).await?;
    // The status is read again under the write lock: a worker moves a run
    // to `running` and records its end only through a change, so what is
    // read here holds until this change commits.
    let mut change = state.begin().await?;
    let (now,): (String,) = sqlx::query_as("SELECT status FROM runs WHERE id = $1")
        .bind(&id)
        .fetch_one(&mut *change.tx)
        .await?;
    let status = match now.as_str() {
        "queued" => {
            sqlx::query(
                "UPDATE runs SET status = 'cancelled', reason = $1, finished_at = $2 WHERE id = $3",
            )
            .bind(format!("cancelled by {}", caller.subject))
            .bind(crate::db::now())
            .bind(&id)
            .execute(&mut *change.tx)
            .await?;
            "cancelled"
        }
        // On a worker (its entry outlives the recording of its end, which
        // waits for this change): its result will be discarded.
        "running" if state.runs.cancel(&id) => "cancelling",
        "running" => {
            return Err(ApiError::conflict(format!(
                "run {id} is recorded running but is on no worker of this server; a restart records it interrupted"
            )));
        }
        other => {
            return Err(ApiError::conflict(format!("run {id} is already {other}")));
        }
    };
    change.record(Event::new(
        &caller.subject,
        Action::GateRun,
        format!("{}/{}", run.model, run.version),
        json!({ "run": id, "status": status, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    Ok(J(json!({ "run": id, "status": status })))
}
