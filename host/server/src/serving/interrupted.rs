//! Canaries a stop interrupted. Serving state lives in the process, so a
//! canary in progress does not survive a restart: the new process serves
//! the production alias only. What must survive is the record. A running
//! canary is written to `serving_canaries` when it starts and removed when
//! it ends (promoted, aborted, or overtaken by a promotion or rollback);
//! a row still there at the next start is a canary the stop cut short, and
//! it is closed in the audit log and the history as aborted, by
//! `airlock (restart)`, with what was running. The candidate takes traffic
//! again only when someone starts its canary anew.

use crate::error::ApiError;
use crate::state::AppState;
use serde_json::json;

/// The actor recorded for canaries closed at start.
pub const RESTART_ACTOR: &str = "airlock (restart)";

/// Records, inside `change` (with the canary's audit entry), that
/// `candidate` is being canaried against `stable` (replacing any earlier
/// canary of `model`).
pub async fn mark_running_in(
    change: &mut crate::state::Change<'_>,
    model: &str,
    candidate: &str,
    stable: &str,
    by: &str,
) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM serving_canaries WHERE model = $1")
        .bind(model)
        .execute(&mut *change.tx)
        .await?;
    sqlx::query(
        "INSERT INTO serving_canaries (model, candidate, stable, started_at, started_by)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(model)
    .bind(candidate)
    .bind(stable)
    .bind(crate::db::now())
    .bind(by)
    .execute(&mut *change.tx)
    .await?;
    Ok(())
}

/// Records that `model` has no canary running any more.
pub async fn mark_ended(state: &AppState, model: &str) -> Result<(), ApiError> {
    let mut change = state.begin().await?;
    sqlx::query("DELETE FROM serving_canaries WHERE model = $1")
        .bind(model)
        .execute(&mut *change.tx)
        .await?;
    state.commit(change).await
}

/// At start: closes every canary the last stop interrupted (audit entry
/// and history row, as aborted by [`RESTART_ACTOR`]) and forgets it.
/// Returns the models whose canary was closed.
pub async fn close_interrupted(state: &AppState) -> Result<Vec<String>, ApiError> {
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT model, candidate, stable, started_at, started_by FROM serving_canaries ORDER BY model",
    )
    .fetch_all(&state.db)
    .await?;
    let mut closed = Vec::new();
    for (model, candidate, stable, started_at, started_by) in rows {
        let reason = format!(
            "the server stopped while the canary of {candidate} (started by {started_by} at {started_at}) was running; \
             production stays on {stable}; start the canary again to resume"
        );
        super::control::record_event(
            state,
            RESTART_ACTOR,
            "canary_abort",
            &model,
            &candidate,
            json!({ "reason": reason, "stable": stable, "started_by": started_by, "started_at": started_at }),
        )
        .await?;
        super::control::history_row(
            state,
            &model,
            &candidate,
            "canary-abort",
            RESTART_ACTOR,
            &reason,
        )
        .await?;
        mark_ended(state, &model).await?;
        tracing::warn!(model = %model, version = %candidate, "serving: {model}: {reason}");
        closed.push(model);
    }
    Ok(closed)
}
