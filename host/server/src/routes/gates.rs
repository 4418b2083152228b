//! Gates over HTTP: publishing a signed gate version, listing and reading
//! them, and switching a gate's current version. A gate decides every
//! verdict, so publishing one needs a gate key's signature as well as the
//! gate-admin's token. A scoped token acts only on a gate every model of
//! which is in its scope, and reads only gates judging one of its models.

use super::{Page, Paged};
use crate::access::Permission;
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::{Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, show};
use crate::state::AppState;
use airlock_attest::Envelope;
use airlock_audit::Action;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

use axum::Json as J;

/// A gate version as listed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct GateView {
    /// Name.
    pub name: String,
    /// Version (1, 2, ...).
    pub version: i64,
    /// sha256 of the gate TOML.
    pub digest: String,
    /// Key id that signed it.
    pub signer: String,
    /// When it was published.
    pub created_at: String,
    /// By whom.
    pub created_by: String,
}

/// `POST /v1/gates`: publishes a signed gate definition (a DSSE envelope).
pub async fn publish_gate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(envelope): Json<Envelope>,
) -> ApiResult<(StatusCode, J<GateView>)> {
    caller.require(Permission::ManageGates)?;
    let policy = crate::trust::effective_policy(&state)?;
    let signed = airlock_attest::policy::accept_gate(&policy, &envelope)
        .map_err(|e| ApiError::refused("untrusted", format!("gate definition: {e}")))?;
    let def = signed.doc;
    check_name("gate", &def.name)?;
    let spec = crate::gates::check_spec(&state, &def.gate_toml).await?;
    let existing: Option<(String,)> =
        sqlx::query_as("SELECT digest FROM gates WHERE name = $1 AND version = $2")
            .bind(&def.name)
            .bind(def.version as i64)
            .fetch_optional(&state.db)
            .await?;
    if let Some((d,)) = existing {
        if d == spec.digest.to_string() {
            return get_gate_row(&state, &def.name, def.version as i64)
                .await
                .map(|g| (StatusCode::OK, J(g)));
        }
        return Err(ApiError::conflict(format!(
            "gate {} version {} already exists with digest {d}; publish a higher version",
            def.name, def.version
        )));
    }
    let (latest,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM gates WHERE name = $1")
            .bind(&def.name)
            .fetch_one(&state.db)
            .await?;
    if let Some(l) = latest
        && def.version as i64 <= l
    {
        return Err(ApiError::conflict(format!(
            "gate {} version {} is not above the latest, {l}",
            def.name, def.version
        )));
    }
    let view = GateView {
        name: def.name.clone(),
        version: def.version as i64,
        digest: spec.digest.to_string(),
        signer: signed.signer.hex(),
        created_at: crate::db::now(),
        created_by: caller.subject.clone(),
    };
    let mut change = state.begin().await?;
    // In the transaction, so that no model can take this gate between the
    // scope check and the insert.
    let judged = judged_by(&mut change.tx, &def.name).await?;
    caller.require_gate(Permission::ManageGates, &def.name, &judged)?;
    sqlx::query(
        "INSERT INTO gates (name, version, digest, toml, envelope, signer, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&view.name)
    .bind(view.version)
    .bind(&view.digest)
    .bind(&def.gate_toml)
    .bind(envelope.to_json())
    .bind(&view.signer)
    .bind(&view.created_at)
    .bind(&view.created_by)
    .execute(&mut *change.tx)
    .await?;
    let first = latest.is_none();
    if first {
        sqlx::query("INSERT INTO gate_current (name, version) VALUES ($1, $2)")
            .bind(&view.name)
            .bind(view.version)
            .execute(&mut *change.tx)
            .await?;
    }
    change.record(Event::new(
        &caller.subject,
        Action::other("gate_change").map_err(ApiError::internal)?,
        format!("gate/{}", view.name),
        json!({ "change": "published", "version": view.version, "digest": view.digest,
                "signer": view.signer, "current": first, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    Ok((StatusCode::CREATED, J(view)))
}

/// The models whose gate `gate` is.
pub(crate) async fn judged_by(
    conn: &mut sqlx::AnyConnection,
    gate: &str,
) -> Result<Vec<String>, ApiError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT name FROM models WHERE gate = $1")
        .bind(gate)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(m,)| m).collect())
}

/// Refuses a scoped token a gate that judges none of its models.
pub(crate) async fn require_read_gate(
    state: &AppState,
    caller: &Caller,
    gate: &str,
) -> Result<(), ApiError> {
    caller.require(Permission::Read)?;
    if caller.scope.models.is_none() {
        return Ok(());
    }
    let mut conn = state.db.acquire().await?;
    let judged = judged_by(&mut conn, gate).await?;
    if caller.may_read_gate(&judged) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {} is not granted gate `{gate}`: it judges none of the token's models",
            caller.token_id
        )))
    }
}

async fn get_gate_row(state: &AppState, name: &str, version: i64) -> Result<GateView, ApiError> {
    sqlx::query_as(
        "SELECT name, version, digest, signer, created_at, created_by FROM gates WHERE name = $1 AND version = $2",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no gate {name} version {version}")))
}

/// `GET /v1/gates`.
pub async fn list_gates(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<J<Paged<Value>>> {
    caller.require(Permission::Read)?;
    let limit = page.limit()?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, version FROM gate_current WHERE name > $1 ORDER BY name LIMIT $2",
    )
    .bind(page.after())
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    let items = rows
        .into_iter()
        .map(|(name, version)| json!({ "name": name, "current": version }))
        .collect();
    let mut page = Paged::from_fetched(items, limit, |v: &Value| {
        v["name"].as_str().unwrap_or_default().to_string()
    });
    if caller.scope.models.is_some() {
        // Filtered after the page is cut, so the cursor stays right.
        let judged: Vec<(String, Option<String>)> = sqlx::query_as("SELECT name, gate FROM models")
            .fetch_all(&state.db)
            .await?;
        page.items.retain(|g| {
            let of_gate: Vec<String> = judged
                .iter()
                .filter(|(_, gate)| gate.as_deref() == g["name"].as_str())
                .map(|(m, _)| m.clone())
                .collect();
            caller.may_read_gate(&of_gate)
        });
    }
    Ok(J(page))
}

/// `GET /v1/gates/{name}`: the current version and every version.
pub async fn get_gate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<J<Value>> {
    check_name("gate", &name)?;
    require_read_gate(&state, &caller, &name).await?;
    let current = crate::gates::current(&state, &name).await?;
    let versions: Vec<GateView> = sqlx::query_as(
        "SELECT name, version, digest, signer, created_at, created_by FROM gates WHERE name = $1 ORDER BY version",
    )
    .bind(&name)
    .fetch_all(&state.db)
    .await?;
    Ok(J(
        json!({ "name": name, "current": current.0, "digest": current.1, "versions": versions }),
    ))
}

/// `GET /v1/gates/{name}/versions/{version}`: the definition, its TOML and envelope.
pub async fn get_gate_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<J<Value>> {
    check_name("gate", &name)?;
    require_read_gate(&state, &caller, &name).await?;
    let v: i64 = version.parse().map_err(|_| {
        ApiError::bad_request(format!("gate version {} is not a number", show(&version)))
    })?;
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT digest, toml, envelope, signer FROM gates WHERE name = $1 AND version = $2",
    )
    .bind(&name)
    .bind(v)
    .fetch_optional(&state.db)
    .await?;
    let (digest, toml, envelope, signer) =
        row.ok_or_else(|| ApiError::not_found(format!("no gate {name} version {v}")))?;
    let envelope: Value = serde_json::from_str(&envelope).unwrap_or(Value::Null);
    Ok(J(
        json!({ "name": name, "version": v, "digest": digest, "signer": signer,
                 "toml": toml, "envelope": envelope }),
    ))
}

/// `PUT /v1/gates/{name}/current` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchGate {
    /// The published version to make current.
    pub version: i64,
}

/// `PUT /v1/gates/{name}/current`: one call moves a gate to another
/// published (signed) version, forward or back.
pub async fn switch_gate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<SwitchGate>,
) -> ApiResult<J<Value>> {
    caller.require(Permission::ManageGates)?;
    check_name("gate", &name)?;
    let target = get_gate_row(&state, &name, req.version).await?;
    let (from, _) = crate::gates::current(&state, &name).await?;
    let mut change = state.begin().await?;
    let judged = judged_by(&mut change.tx, &name).await?;
    caller.require_gate(Permission::ManageGates, &name, &judged)?;
    sqlx::query("UPDATE gate_current SET version = $1 WHERE name = $2")
        .bind(req.version)
        .bind(&name)
        .execute(&mut *change.tx)
        .await?;
    change.record(Event::new(
        &caller.subject,
        Action::other("gate_change").map_err(ApiError::internal)?,
        format!("gate/{name}"),
        json!({ "change": "switched", "from": from, "to": req.version, "digest": target.digest,
                "token": caller.token_id }),
    ));
    state.commit(change).await?;
    Ok(J(
        json!({ "name": name, "current": req.version, "digest": target.digest, "previous": from }),
    ))
}
