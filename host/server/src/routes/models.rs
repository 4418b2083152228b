//! Models and versions: creating and configuring a model, submitting a
//! version (its plugin, bundle and provenance) and queueing its gate run.
//! Submitters never decide a verdict: the gate does, on the server's
//! workers.

use super::artifacts::resolve_plugin;
use super::{Page, Paged};
use crate::access::Permission;
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::{Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, check_version, parse_digest, show};
use crate::state::{AppState, Change};
use airlock_audit::Action;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json as J;

/// `PUT /v1/models/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutModel {
    /// The gate its versions must pass.
    pub gate: String,
    /// Approvals a promotion needs (none of them the submitter's).
    #[serde(default)]
    pub approvals_required: u32,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A model.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ModelView {
    /// Name.
    pub name: String,
    /// Its gate.
    pub gate: Option<String>,
    /// Approvals a promotion needs.
    pub approvals_required: i64,
    /// Free text.
    pub description: String,
    /// When it was created.
    pub created_at: String,
    /// By whom.
    pub created_by: String,
}

/// `PUT /v1/models/{name}`: creates a model or changes its gate and policy.
pub async fn put_model(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<PutModel>,
) -> ApiResult<(StatusCode, J<ModelView>)> {
    check_name("model", &name)?;
    caller.require_model(Permission::ManageGates, &name)?;
    check_name("gate", &req.gate)?;
    crate::gates::current(&state, &req.gate).await?;
    if req.approvals_required > 16 {
        return Err(ApiError::bad_request(format!(
            "approvals_required {} is over 16",
            req.approvals_required
        )));
    }
    if req.description.len() > 4096 {
        return Err(ApiError::bad_request("description is over 4096 bytes"));
    }
    let existed = model_row(&state, &name).await.is_ok();
    let mut change = state.begin().await?;
    sqlx::query(
        "INSERT INTO models (name, gate, approvals_required, description, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET gate = $2, approvals_required = $3, description = $4",
    )
    .bind(&name)
    .bind(&req.gate)
    .bind(i64::from(req.approvals_required))
    .bind(&req.description)
    .bind(crate::db::now())
    .bind(&caller.subject)
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        &caller.subject,
        Action::other("model_change").map_err(ApiError::internal)?,
        format!("model/{name}"),
        json!({ "change": if existed { "updated" } else { "created" }, "gate": req.gate,
                "approvals_required": req.approvals_required, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, J(model_row(&state, &name).await?)))
}

pub(super) async fn model_row(state: &AppState, name: &str) -> Result<ModelView, ApiError> {
    let mut conn = state.db.acquire().await?;
    model_row_in(&mut conn, name).await
}

/// A model as read on `conn` (inside a change's transaction, say).
pub(crate) async fn model_row_in(
    conn: &mut sqlx::AnyConnection,
    name: &str,
) -> Result<ModelView, ApiError> {
    sqlx::query_as(
        "SELECT name, gate, approvals_required, description, created_at, created_by FROM models WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no model {name}")))
}

/// `GET /v1/models`.
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<J<Paged<ModelView>>> {
    caller.require(Permission::Read)?;
    let limit = page.limit()?;
    let items: Vec<ModelView> = sqlx::query_as(
        "SELECT name, gate, approvals_required, description, created_at, created_by FROM models
         WHERE name > $1 ORDER BY name LIMIT $2",
    )
    .bind(page.after())
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    let items = items
        .into_iter()
        .filter(|m| caller.scope.covers_model(&m.name))
        .collect();
    Ok(J(Paged::from_fetched(items, limit, |m: &ModelView| {
        m.name.clone()
    })))
}

/// `GET /v1/models/{name}`: the model, its aliases and its gate.
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_model(Permission::Read, &name)?;
    let m = model_row(&state, &name).await?;
    let aliases: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT alias, version, updated_at, updated_by FROM aliases WHERE model = $1 ORDER BY alias",
    )
    .bind(&name)
    .fetch_all(&state.db)
    .await?;
    let aliases: BTreeMap<String, Value> = aliases
        .into_iter()
        .map(|(a, v, at, by)| {
            (
                a,
                json!({ "version": v, "updated_at": at, "updated_by": by }),
            )
        })
        .collect();
    Ok(J(json!({ "model": m, "aliases": aliases })))
}

// ---------------------------------------------------------------- versions

/// Provenance recorded with a version.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Digest of the training data.
    #[serde(default)]
    pub training_data: Option<String>,
    /// The code commit that produced the model.
    #[serde(default)]
    pub code_commit: Option<String>,
    /// Training parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// Who trained it.
    #[serde(default)]
    pub author: Option<String>,
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /v1/models/{name}/versions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitVersion {
    /// Semantic version.
    pub version: String,
    /// The model plugin: `sha256:<hex>` or `name@version`.
    pub plugin: String,
    /// The uploaded bundle archive (a tar of the bundle directory).
    #[serde(default)]
    pub bundle: Option<String>,
    /// An OpenSSF model-signing bundle over the bundle directory.
    #[serde(default)]
    pub bundle_signature: Option<Value>,
    /// Where it came from.
    #[serde(default)]
    pub provenance: Provenance,
}

/// A version.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct VersionView {
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Order of submission.
    pub seq: i64,
    /// The model component.
    pub plugin: String,
    /// The uploaded archive.
    pub bundle_archive: Option<String>,
    /// The bundle's tree digest (what the model reads and attestations name).
    pub bundle_digest: Option<String>,
    /// Who signed the bundle.
    pub bundle_signer: Option<String>,
    /// Provenance (JSON).
    pub provenance: String,
    /// Who submitted it.
    pub submitter: String,
    /// When.
    pub created_at: String,
}

const VERSION_COLUMNS: &str = "model, version, seq, plugin, bundle_archive, bundle_digest, bundle_signer, provenance, submitter, created_at";

pub(super) async fn version_row(
    state: &AppState,
    model: &str,
    version: &str,
) -> Result<VersionView, ApiError> {
    let mut conn = state.db.acquire().await?;
    version_row_in(&mut conn, model, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {version} of model {model}")))
}

/// A version as read on `conn` (inside a change's transaction, say).
pub(crate) async fn version_row_in(
    conn: &mut sqlx::AnyConnection,
    model: &str,
    version: &str,
) -> Result<Option<VersionView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE model = $1 AND version = $2"
    ))
    .bind(model)
    .bind(version)
    .fetch_optional(conn)
    .await?)
}

/// `POST /v1/models/{name}/versions`: records a version and queues its gate run.
pub async fn submit_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<SubmitVersion>,
) -> ApiResult<(StatusCode, J<Value>)> {
    check_name("model", &name)?;
    caller.require_model(Permission::Submit, &name)?;
    check_version(&req.version)?;
    let model = model_row(&state, &name).await?;
    let plugin = resolve_plugin(&state, &req.plugin).await?;
    if plugin.world != "model" {
        return Err(ApiError::refused(
            "not_a_model",
            format!(
                "plugin {}@{} is a {}, not a model",
                plugin.name, plugin.version, plugin.world
            ),
        ));
    }
    let prov = serde_json::to_string(&req.provenance)
        .map_err(|e| ApiError::bad_request(format!("provenance: {e}")))?;
    if prov.len() > 64 * 1024 {
        return Err(ApiError::bad_request("provenance is over 64 KiB"));
    }
    let (archive, bundle_digest, signer) = match &req.bundle {
        Some(b) => {
            let archive = parse_digest("bundle", b)?;
            if !state.blobs.contains(&archive)? {
                return Err(ApiError::not_found(format!(
                    "no uploaded blob {archive}: upload the bundle archive to /v1/blobs first"
                )));
            }
            let st = state.clone();
            let sig = req.bundle_signature.clone();
            let (digest, signer) = tokio::task::spawn_blocking(move || {
                crate::trust::check_bundle(&st, &archive, sig.as_ref())
            })
            .await
            .map_err(|e| ApiError::internal(format_args!("bundle check: {e}")))??;
            (Some(archive.to_string()), Some(digest.to_string()), signer)
        }
        None => {
            if req.bundle_signature.is_some() {
                return Err(ApiError::bad_request(
                    "bundle_signature given without a bundle",
                ));
            }
            (None, None, None)
        }
    };
    let gate = model
        .gate
        .clone()
        .ok_or_else(|| ApiError::refused("no_gate", format!("model {name} has no gate")))?;
    // Whether the version exists is decided under the write lock: two
    // submissions of one version at once are serialised here, so the
    // second sees the first (same bytes: the same answer; other bytes:
    // 409), never a key violation.
    let place = state.runs.reserve();
    let mut change = state.begin().await?;
    let existing = version_row_in(&mut change.tx, &name, &req.version).await?;
    if let Some(existing) = existing {
        if existing.plugin == plugin.digest && existing.bundle_digest == bundle_digest {
            return Ok((
                StatusCode::OK,
                J(json!({ "version": existing, "run": Value::Null })),
            ));
        }
        return Err(ApiError::conflict(format!(
            "version {} of model {name} already names other bytes (plugin {}, bundle {}); a version number is never reused",
            req.version,
            existing.plugin,
            existing.bundle_digest.as_deref().unwrap_or("none")
        )));
    }
    // A full queue refuses before anything is recorded; the place taken is
    // the committed run's, so no 503 follows a commit.
    let place = place?;
    let (seq,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE model = $1")
            .bind(&name)
            .fetch_one(&mut *change.tx)
            .await?;
    sqlx::query(&format!(
        "INSERT INTO versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&name)
    .bind(&req.version)
    .bind(seq)
    .bind(&plugin.digest)
    .bind(&archive)
    .bind(&bundle_digest)
    .bind(&signer)
    .bind(&prov)
    .bind(&caller.subject)
    .bind(crate::db::now())
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        &caller.subject,
        Action::Submission,
        format!("{name}/{}", req.version),
        json!({ "kind": "model_version", "plugin": plugin.digest, "bundle_archive": archive,
                "bundle_digest": bundle_digest, "bundle_signer": signer, "token": caller.token_id }),
    ));
    let run = queue_run(
        &state,
        &mut change,
        &name,
        &req.version,
        &gate,
        &caller,
        None,
    )
    .await?;
    state.commit(change).await?;
    place.push(&run);
    let v = version_row(&state, &name, &req.version).await?;
    Ok((StatusCode::CREATED, J(json!({ "version": v, "run": run }))))
}

/// What a reproduction repeats of an earlier run.
pub(super) struct Reproduce {
    pub(super) id: String,
    pub(super) seed: String,
    pub(super) gate_version: i64,
    pub(super) gate_digest: String,
    pub(super) baseline: Option<String>,
}

/// Inserts a queued run for the model's current gate, with production as
/// baseline; the caller reserved its place in the queue before the change
/// began and pushes it there after the commit.
pub(super) async fn queue_run(
    state: &AppState,
    change: &mut Change<'_>,
    model: &str,
    version: &str,
    gate: &str,
    caller: &Caller,
    reproduce: Option<&Reproduce>,
) -> Result<String, ApiError> {
    let (gate_version, gate_digest, baseline) = match reproduce {
        Some(r) => (r.gate_version, r.gate_digest.clone(), r.baseline.clone()),
        None => {
            let (gv, gd) = crate::gates::current(state, gate).await?;
            let baseline: Option<(String,)> = sqlx::query_as(
                "SELECT version FROM aliases WHERE model = $1 AND alias = 'production'",
            )
            .bind(model)
            .fetch_optional(&mut *change.tx)
            .await?;
            (gv, gd, baseline.map(|b| b.0).filter(|b| b != version))
        }
    };
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| ApiError::internal(format_args!("randomness: {e}")))?;
    let id = format!("run_{}", hex::encode(id));
    let (seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs")
        .fetch_one(&mut *change.tx)
        .await?;
    sqlx::query(
        "INSERT INTO runs (id, seq, model, version, gate, gate_version, gate_digest, baseline, status, requested_by, created_at, seed, reproduces)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $11, $12)",
    )
    .bind(&id)
    .bind(seq)
    .bind(model)
    .bind(version)
    .bind(gate)
    .bind(gate_version)
    .bind(&gate_digest)
    .bind(&baseline)
    .bind(&caller.subject)
    .bind(crate::db::now())
    .bind(reproduce.map(|r| r.seed.clone()))
    .bind(reproduce.map(|r| r.id.clone()))
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        &caller.subject,
        Action::GateRun,
        format!("{model}/{version}"),
        json!({ "run": id, "status": "queued", "gate": gate, "gate_version": gate_version,
                "gate_digest": gate_digest, "baseline": baseline, "reproduces": reproduce.map(|r| r.id.clone()) }),
    ));
    Ok(id)
}

/// `GET /v1/models/{name}/versions`.
pub async fn list_versions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<J<Paged<VersionView>>> {
    check_name("model", &name)?;
    caller.require_model(Permission::Read, &name)?;
    model_row(&state, &name).await?;
    let limit = page.limit()?;
    let after: i64 = if page.after().is_empty() {
        0
    } else {
        page.after().parse().map_err(|_| {
            ApiError::bad_request(format!("cursor {} is not a number", show(page.after())))
        })?
    };
    let items: Vec<VersionView> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE model = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(&name)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    Ok(J(Paged::from_fetched(items, limit, |v| v.seq.to_string())))
}

/// A run as listed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct RunView {
    /// Its id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Gate name.
    pub gate: String,
    /// Gate version.
    pub gate_version: i64,
    /// Gate digest.
    pub gate_digest: String,
    /// The production version it was compared against.
    pub baseline: Option<String>,
    /// queued, running, passed, refused, error, cancelled, interrupted.
    pub status: String,
    /// Why (errors, cancellations, interruptions).
    pub reason: Option<String>,
    /// The key that signed its attestation.
    pub key_id: Option<String>,
    /// The seed every plugin saw (decimal; set once the run is judged, or
    /// from the start for a reproduction).
    pub seed: Option<String>,
    /// The run this one reproduces.
    pub reproduces: Option<String>,
    /// Who asked for it.
    pub requested_by: String,
    /// Queued at.
    pub created_at: String,
    /// Started at.
    pub started_at: Option<String>,
    /// Finished at.
    pub finished_at: Option<String>,
}

pub(super) const RUN_COLUMNS: &str = "id, model, version, gate, gate_version, gate_digest, baseline, status, reason, key_id, seed, reproduces, requested_by, created_at, started_at, finished_at";

/// `GET /v1/models/{name}/versions/{version}`: the version, its runs and approvals.
pub async fn get_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    caller.require_model(Permission::Read, &name)?;
    check_version(&version)?;
    let v = version_row(&state, &name, &version).await?;
    let runs: Vec<RunView> = sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE model = $1 AND version = $2 ORDER BY seq"
    ))
    .bind(&name)
    .bind(&version)
    .fetch_all(&state.db)
    .await?;
    let approvals: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT approver, comment, created_at FROM approvals WHERE model = $1 AND version = $2 ORDER BY created_at",
    )
    .bind(&name)
    .bind(&version)
    .fetch_all(&state.db)
    .await?;
    let approvals: Vec<Value> = approvals
        .into_iter()
        .map(|(a, c, t)| json!({ "approver": a, "comment": c, "at": t }))
        .collect();
    let provenance: Value = serde_json::from_str(&v.provenance).unwrap_or(Value::Null);
    Ok(J(
        json!({ "version": v, "provenance": provenance, "runs": runs, "approvals": approvals }),
    ))
}
