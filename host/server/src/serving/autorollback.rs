//! Automatic rollback of production, for the controller: the target (the
//! version promoted before the one that breached) is made warm before any
//! lock is taken; the alias then moves, with its audit entry, and traffic
//! follows in one store.

use super::{ModelServing, WarmVersion};
use crate::error::ApiError;
use crate::state::AppState;
use airlock_audit::Action;
use std::sync::Arc;
use std::time::Instant;

/// The version promoted before `current`, made warm (so that the switch
/// is one store), or why there is none.
pub(crate) async fn target(
    state: &Arc<AppState>,
    ms: &Arc<ModelServing>,
    current: &str,
) -> Result<Arc<WarmVersion>, ApiError> {
    let earlier = super::promoted_before(state, &ms.name, current).await;
    let target = earlier.first().cloned().ok_or_else(|| {
        ApiError::refused(
            "rollback_refused",
            format!("model {} has no earlier production version", ms.name),
        )
    })?;
    super::prepare(state, &ms.name, &target).await
}

/// Rolls production back to `target` (warm), recording why; the caller
/// holds `alias_lock` (`_order`).
pub(crate) async fn roll_back(
    state: &Arc<AppState>,
    _order: &tokio::sync::MutexGuard<'_, ()>,
    ms: &Arc<ModelServing>,
    target: Result<Arc<WarmVersion>, ApiError>,
    why: &str,
) -> Result<(String, Instant), ApiError> {
    let warm = target?;
    let to = warm.version.clone();
    crate::routes::deploy::move_alias_as(
        state,
        "airlock (automatic rollback)",
        None,
        &ms.name,
        "production",
        &to,
        Action::Rollback,
        "rollback",
        None,
        &format!("automatic: {why}"),
    )
    .await?;
    // The alias moves first (durably, with its audit entry), then traffic:
    // a crash in between restarts serving the version the alias names.
    state.serving.set_stable(state, &ms.name, warm);
    Ok((to, Instant::now()))
}
