//! Blobs and plugins: streamed uploads that are hashed while written and
//! never held whole in memory, and plugin registration (a component's
//! world, contract and manifest are read by the sandbox, never trusted from
//! the request).

use super::{Page, Paged};
use crate::access::Permission;
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::{Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, check_version, parse_digest, show};
use crate::state::AppState;
use airlock_audit::Action;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;

/// The header a client may send with the digest it expects.
pub const DIGEST_HEADER: &str = "x-airlock-digest";

/// A stored blob.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
pub struct BlobView {
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// When it was first uploaded.
    pub created_at: String,
}

/// `POST /v1/blobs`: streams the body into the blob store.
pub async fn upload_blob(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    caller.require(Permission::Submit)?;
    let cap = state.config.max_upload_bytes;
    let expected = match headers.get(DIGEST_HEADER) {
        Some(v) => Some(parse_digest(
            "X-Airlock-Digest",
            v.to_str()
                .map_err(|_| ApiError::bad_request("X-Airlock-Digest is not ASCII"))?,
        )?),
        None => None,
    };
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > cap
    {
        return Err(ApiError::too_large(format!(
            "the upload is {len} bytes; the limit is {cap}"
        )));
    }
    // The body is read on this task and written on a blocking thread; a
    // channel of a few chunks bounds what is in memory at once.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let blobs = state.blobs.clone();
    let writer =
        tokio::task::spawn_blocking(move || -> Result<airlock_blobs::BlobInfo, ApiError> {
            let mut w = blobs.writer(cap)?;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Chunk::Data(b) => w.write_all(&b).map_err(|e| write_error(e, cap))?,
                    Chunk::Abort(why) => return Err(ApiError::bad_request(why)),
                    Chunk::End => return Ok(w.finish(expected.as_ref())?),
                }
            }
            Err(ApiError::bad_request("the upload ended early"))
        });
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let mut end = Chunk::End;
    while let Some(next) = stream.next().await {
        match next {
            Ok(b) => {
                total += b.len() as u64;
                if tx.send(Chunk::Data(b)).await.is_err() {
                    break; // the writer stopped: its error is the answer
                }
            }
            Err(e) => {
                end = Chunk::Abort(format!("the upload was cut off after {total} bytes: {e}"));
                break;
            }
        }
    }
    let _ = tx.send(end).await;
    drop(tx);
    let info = writer
        .await
        .map_err(|e| ApiError::internal(format_args!("upload writer: {e}")))??;
    let digest = info.digest.to_string();
    let mut change = state.begin().await?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(&digest)
    .bind(info.size as i64)
    .bind(crate::db::now())
    .bind(&caller.subject)
    .execute(&mut *change.tx)
    .await?;
    state.commit(change).await?;
    let status = if info.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({ "digest": digest, "size": info.size, "created": info.created })),
    ))
}

/// The messages between the request task and the blob writer.
enum Chunk {
    /// Bytes of the body.
    Data(axum::body::Bytes),
    /// The body failed; nothing may be published.
    Abort(String),
    /// The body ended.
    End,
}

/// A failed write: over the cap is the client's 413, anything else ours.
fn write_error(e: std::io::Error, cap: u64) -> ApiError {
    match airlock_blobs::BlobError::of_io(&e) {
        Some(airlock_blobs::BlobError::TooLarge { .. }) => {
            ApiError::too_large(format!("the upload is over the limit of {cap} bytes"))
        }
        _ => ApiError::internal(format_args!("writing the upload: {e}")),
    }
}

/// `GET /v1/blobs/{digest}`.
pub async fn get_blob(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(digest): Path<String>,
) -> ApiResult<axum::Json<BlobView>> {
    caller.require(Permission::Read)?;
    let d = parse_digest("blob", &digest)?;
    let row: Option<BlobView> =
        sqlx::query_as("SELECT digest, size, created_at FROM blobs WHERE digest = $1")
            .bind(d.to_string())
            .fetch_optional(&state.db)
            .await?;
    row.map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no blob {d}")))
}

/// `POST /v1/plugins` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPlugin {
    /// The plugin's name.
    pub name: String,
    /// Its semantic version.
    pub version: String,
    /// The uploaded component's digest.
    pub component: String,
    /// An OpenSSF model-signing bundle over the component (a single file).
    #[serde(default)]
    pub signature: Option<Value>,
}

/// A registered plugin.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
pub struct PluginView {
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `model` or `validator`.
    pub world: String,
    /// The contract version it was built against.
    pub contract: String,
    /// Component size.
    pub size: i64,
    /// Key id of the signature checked at registration, if any.
    pub signer: Option<String>,
    /// When.
    pub created_at: String,
    /// By whom.
    pub created_by: String,
}

const PLUGIN_COLUMNS: &str =
    "digest, name, version, world, contract, size, signer, created_at, created_by";

/// `POST /v1/plugins`: registers an uploaded component as a plugin.
pub async fn register_plugin(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<RegisterPlugin>,
) -> ApiResult<(StatusCode, axum::Json<PluginView>)> {
    caller.require(Permission::Submit)?;
    check_name("plugin", &req.name)?;
    check_version(&req.version)?;
    let digest = parse_digest("component", &req.component)?;
    if let Some(existing) = plugin_by_digest(&state, &digest.to_string()).await? {
        if existing.name == req.name && existing.version == req.version {
            return Ok((StatusCode::OK, axum::Json(existing)));
        }
        return Err(ApiError::conflict(format!(
            "component {digest} is already registered as {}@{}",
            existing.name, existing.version
        )));
    }
    let taken: Option<(String,)> =
        sqlx::query_as("SELECT digest FROM plugins WHERE name = $1 AND version = $2")
            .bind(&req.name)
            .bind(&req.version)
            .fetch_optional(&state.db)
            .await?;
    if let Some((other,)) = taken {
        return Err(ApiError::conflict(format!(
            "plugin {}@{} already names component {other}; a version number is never reused for other bytes",
            req.name, req.version
        )));
    }
    if !state.blobs.contains(&digest)? {
        return Err(ApiError::not_found(format!(
            "no uploaded blob {digest}: upload the component to /v1/blobs first"
        )));
    }
    let st = state.clone();
    let name = req.name.clone();
    let signature = req.signature.clone();
    let (inspection, size, signer) = tokio::task::spawn_blocking(move || {
        crate::trust::check_plugin(&st, &digest, &name, signature.as_ref())
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("plugin check: {e}")))??;
    let view = PluginView {
        digest: digest.to_string(),
        name: req.name.clone(),
        version: req.version.clone(),
        world: inspection.0,
        contract: inspection.1,
        size: size as i64,
        signer,
        created_at: crate::db::now(),
        created_by: caller.subject.clone(),
    };
    let mut change = state.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO plugins ({PLUGIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&view.digest)
    .bind(&view.name)
    .bind(&view.version)
    .bind(&view.world)
    .bind(&view.contract)
    .bind(view.size)
    .bind(&view.signer)
    .bind(&view.created_at)
    .bind(&view.created_by)
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        &caller.subject,
        Action::Submission,
        format!("plugin/{}@{}", view.name, view.version),
        json!({ "kind": "plugin", "digest": view.digest, "world": view.world,
                "contract": view.contract, "signer": view.signer, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// A plugin by digest.
pub async fn plugin_by_digest(
    state: &AppState,
    digest: &str,
) -> Result<Option<PluginView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE digest = $1"
    ))
    .bind(digest)
    .fetch_optional(&state.db)
    .await?)
}

/// A plugin by `sha256:<hex>` or `name@version`.
pub async fn resolve_plugin(state: &AppState, reference: &str) -> Result<PluginView, ApiError> {
    if reference.starts_with("sha256:") {
        let d = parse_digest("plugin", reference)?;
        return plugin_by_digest(state, &d.to_string())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no plugin with digest {d}")));
    }
    let (name, version) = reference.split_once('@').ok_or_else(|| {
        ApiError::bad_request(format!(
            "plugin {} must be sha256:<hex> or name@version",
            show(reference)
        ))
    })?;
    check_name("plugin", name)?;
    check_version(version)?;
    sqlx::query_as(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE name = $1 AND version = $2"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no plugin {name}@{version}")))
}

/// `GET /v1/plugins`.
pub async fn list_plugins(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<axum::Json<Paged<PluginView>>> {
    caller.require(Permission::Read)?;
    let limit = page.limit()?;
    let items: Vec<PluginView> = sqlx::query_as(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE digest > $1 ORDER BY digest LIMIT $2"
    ))
    .bind(page.after())
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(Paged::from_fetched(items, limit, |p| {
        p.digest.clone()
    })))
}

/// `GET /v1/plugins/{digest}`.
pub async fn get_plugin(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
) -> ApiResult<axum::Json<PluginView>> {
    caller.require(Permission::Read)?;
    Ok(axum::Json(resolve_plugin(&state, &reference).await?))
}
