//! Gate definitions on the server: every validator and dataset pinned by
//! digest (`sha256:<hex>`) to something already stored, no host paths.

use crate::error::ApiError;
use crate::names::{parse_digest, show};
use crate::state::AppState;
use airlock_core::digest::Digest;
use airlock_core::gate::spec::GateSpec;

/// A step's `plugin`, `dataset` or `reference`, which must be a digest.
pub fn pinned(s: &str) -> Result<Digest, ApiError> {
    if !s.starts_with("sha256:") {
        return Err(ApiError::refused(
            "invalid_gate",
            format!(
                "{} is not pinned: gates on the server name validators and datasets by sha256:<hex>",
                show(s)
            ),
        ));
    }
    parse_digest("gate reference", s)
}

/// Parses a gate's TOML and checks that it runs only stored things.
pub async fn check_spec(state: &AppState, toml: &str) -> Result<GateSpec, ApiError> {
    if toml.len() > 1 << 20 {
        return Err(ApiError::too_large("the gate TOML is over 1 MiB"));
    }
    let spec = GateSpec::parse(toml, std::path::Path::new("/nonexistent"))
        .map_err(|e| ApiError::refused("invalid_gate", format!("gate: {e}")))?;
    if spec.plugin_dir.is_some() {
        return Err(ApiError::refused(
            "invalid_gate",
            "gate: plugin_dir has no meaning on the server; pin validators by digest",
        ));
    }
    for step in &spec.steps {
        let v = pinned(&step.plugin).map_err(|e| step_err(&step.name, e))?;
        let row: Option<(String,)> = sqlx::query_as("SELECT world FROM plugins WHERE digest = $1")
            .bind(v.to_string())
            .fetch_optional(&state.db)
            .await?;
        match row {
            None => {
                return Err(ApiError::refused(
                    "invalid_gate",
                    format!("step `{}`: no registered plugin {v}", step.name),
                ));
            }
            Some((w,)) if w != "validator" => {
                return Err(ApiError::refused(
                    "invalid_gate",
                    format!("step `{}`: plugin {v} is a {w}, not a validator", step.name),
                ));
            }
            Some(_) => {}
        }
        for data in std::iter::once(&step.dataset).chain(step.reference.as_ref()) {
            let name = data.to_string_lossy();
            let d = pinned(&name).map_err(|e| step_err(&step.name, e))?;
            if !state.blobs.contains(&d)? {
                return Err(ApiError::refused(
                    "invalid_gate",
                    format!("step `{}`: no uploaded dataset {d}", step.name),
                ));
            }
        }
    }
    Ok(spec)
}

fn step_err(step: &str, e: ApiError) -> ApiError {
    ApiError {
        message: format!("step `{step}`: {}", e.message),
        ..e
    }
}

/// The gate's current (version, digest).
pub async fn current(state: &AppState, gate: &str) -> Result<(i64, String), ApiError> {
    let mut conn = state.db.acquire().await?;
    current_in(&mut conn, gate).await
}

/// [`current`] as read on `conn` (inside a change's transaction, so that
/// what a promotion checks is what holds when the alias moves).
pub async fn current_in(
    conn: &mut sqlx::AnyConnection,
    gate: &str,
) -> Result<(i64, String), ApiError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT g.version, g.digest FROM gate_current c JOIN gates g ON g.name = c.name AND g.version = c.version
         WHERE c.name = $1",
    )
    .bind(gate)
    .fetch_optional(conn)
    .await?;
    row.ok_or_else(|| ApiError::not_found(format!("no gate {gate}")))
}
