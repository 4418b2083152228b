//! Models, versions, gates, runs, approvals and promotion: the deployment
//! loop. A version moves to an alias only with a passing attestation that
//! verifies under the host's keys, for exactly its digests, under the
//! model's current gate, plus the approvals its policy asks for.

use super::artifacts::resolve_plugin;
use super::{Page, Paged};
use crate::access::Permission;
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::{Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, check_version, parse_digest, show};
use crate::state::{AppState, Change};
use airlock_attest::Envelope;
use airlock_attest::gate::{ExpectedSubject, verify_attestation};
use airlock_audit::Action;
use airlock_core::digest::Digest;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json as J;

// ---------------------------------------------------------------- gates

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
    Ok(J(Paged::from_fetched(items, limit, |v: &Value| {
        v["name"].as_str().unwrap_or_default().to_string()
    })))
}

/// `GET /v1/gates/{name}`: the current version and every version.
pub async fn get_gate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<J<Value>> {
    caller.require(Permission::Read)?;
    check_name("gate", &name)?;
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
    caller.require(Permission::Read)?;
    check_name("gate", &name)?;
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

// ---------------------------------------------------------------- models

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

async fn model_row(state: &AppState, name: &str) -> Result<ModelView, ApiError> {
    sqlx::query_as(
        "SELECT name, gate, approvals_required, description, created_at, created_by FROM models WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&state.db)
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

async fn version_row(
    state: &AppState,
    model: &str,
    version: &str,
) -> Result<VersionView, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE model = $1 AND version = $2"
    ))
    .bind(model)
    .bind(version)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no version {version} of model {model}")))
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
    if let Ok(existing) = version_row(&state, &name, &req.version).await {
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
    let gate = model
        .gate
        .clone()
        .ok_or_else(|| ApiError::refused("no_gate", format!("model {name} has no gate")))?;
    let mut change = state.begin().await?;
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
    state.runs.push(&run)?;
    let v = version_row(&state, &name, &req.version).await?;
    Ok((StatusCode::CREATED, J(json!({ "version": v, "run": run }))))
}

/// Inserts a queued run for the model's current gate, with production as
/// baseline; the caller pushes it to the queue after the commit.
async fn queue_run(
    state: &AppState,
    change: &mut Change<'_>,
    model: &str,
    version: &str,
    gate: &str,
    caller: &Caller,
    reproduce: Option<&Reproduce>,
) -> Result<String, ApiError> {
    if !state.runs.has_room() {
        return Err(ApiError::unavailable(
            "the gate-run queue is full; retry later",
            10,
        ));
    }
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

const RUN_COLUMNS: &str = "id, model, version, gate, gate_version, gate_digest, baseline, status, reason, key_id, seed, reproduces, requested_by, created_at, started_at, finished_at";

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

/// What a reproduction repeats of an earlier run.
struct Reproduce {
    id: String,
    seed: String,
    gate_version: i64,
    gate_digest: String,
    baseline: Option<String>,
}

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
    state.runs.push(&run)?;
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

/// `GET /v1/runs/{id}`: status, and the report once judged.
pub async fn get_run(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<J<Value>> {
    caller.require(Permission::Read)?;
    let run = run_row(&state, &id).await?;
    caller.require_model(Permission::Read, &run.model)?;
    let (report,): (Option<String>,) = sqlx::query_as("SELECT report FROM runs WHERE id = $1")
        .bind(&id)
        .fetch_one(&state.db)
        .await?;
    let report: Value = report
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
    caller.require(Permission::Read)?;
    let run = run_row(&state, &id).await?;
    caller.require_model(Permission::Read, &run.model)?;
    let (att,): (Option<String>,) = sqlx::query_as("SELECT attestation FROM runs WHERE id = $1")
        .bind(&id)
        .fetch_one(&state.db)
        .await?;
    let att = att.ok_or_else(|| {
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
    caller.require(Permission::Submit)?;
    let run = run_row(&state, &id).await?;
    caller.require_model(Permission::Submit, &run.model)?;
    if !matches!(run.status.as_str(), "queued" | "running") {
        return Err(ApiError::conflict(format!(
            "run {id} is already {}",
            run.status
        )));
    }
    state.runs.cancel(&id);
    let mut change = state.begin().await?;
    let done = sqlx::query(
        "UPDATE runs SET status = 'cancelled', reason = $1, finished_at = $2 WHERE id = $3 AND status = 'queued'",
    )
    .bind(format!("cancelled by {}", caller.subject))
    .bind(crate::db::now())
    .bind(&id)
    .execute(&mut *change.tx)
    .await?;
    let status = if done.rows_affected() == 1 {
        "cancelled"
    } else {
        "cancelling"
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

// ---------------------------------------------------------------- approvals and promotion

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

/// `POST /v1/models/{name}/promote`: checks every requirement, names the
/// first that fails, and moves the alias.
pub async fn promote(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<Promote>,
) -> ApiResult<J<Value>> {
    check_name("model", &name)?;
    check_name("alias", &req.alias)?;
    caller.require_alias(&name, &req.alias)?;
    check_version(&req.version)?;
    let (run_id, approvers) = check_promotable(&state, &name, &req.version, true).await?;
    // The production alias is what is served: the version is made warm
    // (compiled, pre-initialised, checked) before the alias moves, so the
    // switch after the commit is one atomic store.
    let warm = if req.alias == "production" {
        Some(crate::serving::prepare(&state, &name, &req.version).await?)
    } else {
        None
    };
    let order = state.serving.alias_lock.lock().await;
    let from = move_alias(
        &state,
        &caller,
        &name,
        &req.alias,
        &req.version,
        Action::Promotion,
        "promote",
        Some(&run_id),
        &req.reason,
    )
    .await?;
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
    let name = name.to_string();
    let model = model_row(state, &name).await?;
    let v = version_row(state, &name, version).await?;
    let refuse = |why: String| ApiError::refused("promotion_refused", why);
    let gate = model
        .gate
        .clone()
        .ok_or_else(|| refuse(format!("model {name} has no gate")))?;
    let (gate_version, gate_digest) = crate::gates::current(state, &gate).await?;
    // The newest finished run of this version under the gate's current digest.
    let run: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, attestation FROM runs WHERE model = $1 AND version = $2 AND gate_digest = $3
         AND status IN ('passed', 'refused', 'error') ORDER BY seq DESC LIMIT 1",
    )
    .bind(&name)
    .bind(version)
    .bind(&gate_digest)
    .fetch_optional(&state.db)
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
    .fetch_optional(&state.db)
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
    .fetch_all(&state.db)
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
        ms.control.lock().await.rollout = None;
    }
    took.as_nanos() as u64
}

/// Moves an alias inside one change, recording history and audit.
#[allow(clippy::too_many_arguments)]
async fn move_alias(
    state: &AppState,
    caller: &Caller,
    model: &str,
    alias: &str,
    version: &str,
    action: Action,
    verb: &str,
    run: Option<&str>,
    reason: &str,
) -> Result<Option<String>, ApiError> {
    move_alias_as(
        state,
        &caller.subject,
        Some(&caller.token_id),
        model,
        alias,
        version,
        action,
        verb,
        run,
        reason,
    )
    .await
}

/// [`move_alias`] by an actor that may not hold a token (the server's own
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
    if reason.len() > 4096 {
        return Err(ApiError::bad_request("reason is over 4096 bytes"));
    }
    let mut change = state.begin().await?;
    let from: Option<(String,)> =
        sqlx::query_as("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
            .bind(model)
            .bind(alias)
            .fetch_optional(&mut *change.tx)
            .await?;
    let from = from.map(|f| f.0);
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
    state.commit(change).await?;
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
    check_name("model", &name)?;
    check_name("alias", &req.alias)?;
    caller.require_alias(&name, &req.alias)?;
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
    move_alias(
        &state,
        &caller,
        &name,
        &req.alias,
        &target,
        Action::Rollback,
        "rollback",
        None,
        &req.reason,
    )
    .await?;
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
