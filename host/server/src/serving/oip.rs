//! The Open Inference Protocol v2 over REST (KServe's V2, Triton's HTTP
//! API): health, model metadata and readiness, and `infer` with JSON
//! tensors. Errors are a non-200 status with `{"error": "..."}` as the
//! protocol says. The body is read whatever its content type, because
//! clients (tritonclient among them) send none.
//!
//! Inputs: one tensor of shape `[rows, n]` (any name; every declared input
//! numeric, in declared order), or one tensor per declared input named
//! after it, shape `[rows]` or `[rows, 1]` (`BYTES` for categorical ones).
//! Output: `predictions`, FP64, `[rows, width]`.

use super::predict::{Via, body_bytes, choose, parse_json, score, served};
use super::strict::StrictValue;
use super::{ModelServing, WarmVersion};
use crate::access::Permission;
use crate::auth::Caller;
use crate::error::{ApiError, extract::Path};
use crate::state::AppState;
use airlock_core::types::{Batch, Column, ColumnValues, FeatureKind, ModelMetadata, Task};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The output tensor's name.
pub const OUTPUT: &str = "predictions";

/// An error in the protocol's shape.
pub struct OipError(pub ApiError);

impl From<ApiError> for OipError {
    fn from(e: ApiError) -> OipError {
        OipError(e)
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.0.status,
            axum::Json(json!({ "error": self.0.message })),
        )
            .into_response();
        if let Some(s) = self.0.retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        resp
    }
}

type OipResult<T> = Result<T, OipError>;

/// `GET /v2/health/live`.
pub async fn live() -> Response {
    axum::Json(json!({ "live": true })).into_response()
}

/// `GET /v2/health/ready`: ready once every production version is warm.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state
        .serving_ready
        .load(std::sync::atomic::Ordering::Acquire)
    {
        axum::Json(json!({ "ready": true })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "error": "warming up" })),
        )
            .into_response()
    }
}

fn metadata_doc(ms: &ModelServing, v: &WarmVersion, versions: Vec<String>) -> Value {
    let meta = v.metadata();
    let all_numeric = meta.inputs.iter().all(|f| f.kind == FeatureKind::Numeric);
    let inputs: Vec<Value> = if all_numeric {
        vec![json!({ "name": "input-0", "datatype": "FP64", "shape": [-1, meta.inputs.len()] })]
    } else {
        meta.inputs
            .iter()
            .map(|f| {
                let dt = if f.kind == FeatureKind::Numeric {
                    "FP64"
                } else {
                    "BYTES"
                };
                json!({ "name": f.name, "datatype": dt, "shape": [-1] })
            })
            .collect()
    };
    let width = match meta.output.task {
        Task::Regression => 1,
        _ => meta.output.classes.len(),
    };
    json!({
        "name": ms.name,
        "versions": versions,
        "platform": "airlock-wasm",
        "inputs": inputs,
        "outputs": [{ "name": OUTPUT, "datatype": "FP64", "shape": [-1, width] }],
        "parameters": {
            "version": v.version,
            "features": meta.inputs.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            "classes": meta.output.classes,
        }
    })
}

fn version_of(ms: &ModelServing, version: Option<&str>) -> Result<Arc<WarmVersion>, ApiError> {
    match version {
        None => Ok(ms.deployment.load().stable.clone()),
        Some(v) => ms.servable(v).ok_or_else(|| {
            ApiError::not_found(format!(
                "version {} of model {} is not being served (warm versions: {})",
                crate::names::show(v),
                ms.name,
                ms.warm_names().join(", ")
            ))
        }),
    }
}

/// `GET /v2/models/{name}`.
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> OipResult<Response> {
    caller.require_model(Permission::Predict, &name)?;
    let ms = served(&state, &name).await?;
    let v = version_of(&ms, None)?;
    Ok(axum::Json(metadata_doc(&ms, &v, ms.warm_names())).into_response())
}

/// `GET /v2/models/{name}/versions/{version}`.
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> OipResult<Response> {
    caller.require_model(Permission::Predict, &name)?;
    let ms = served(&state, &name).await?;
    let v = version_of(&ms, Some(&version))?;
    Ok(axum::Json(metadata_doc(&ms, &v, vec![v.version.clone()])).into_response())
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> OipResult<Response> {
    caller.require_model(Permission::Predict, &name)?;
    let ms = served(&state, &name).await?;
    Ok(axum::Json(json!({ "name": ms.name, "ready": true })).into_response())
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> OipResult<Response> {
    caller.require_model(Permission::Predict, &name)?;
    let ms = served(&state, &name).await?;
    let v = version_of(&ms, Some(&version))?;
    Ok(axum::Json(json!({ "name": ms.name, "version": v.version, "ready": true })).into_response())
}

/// One input tensor.
#[derive(Debug, Deserialize)]
struct Tensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<StrictValue>,
    data: StrictValue,
}

/// An inference request.
#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<StrictValue>,
    inputs: Vec<Tensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<StrictValue>,
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OipResult<Response> {
    infer_inner(state, caller, name, None, headers, body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OipResult<Response> {
    infer_inner(state, caller, name, Some(version), headers, body).await
}

async fn infer_inner(
    state: Arc<AppState>,
    caller: Caller,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> OipResult<Response> {
    caller.require_model(Permission::Predict, &name)?;
    state.serving.admit(&caller.token_id)?;
    let cfg = &state.config.serving;
    let ms = served(&state, &name).await?;
    let body = body_bytes(body, cfg.max_body_bytes)?;
    if headers.contains_key("inference-header-content-length") {
        return Err(ApiError::bad_request(
            "binary tensor data is not supported: send JSON tensors (binary_data=False)",
        )
        .into());
    }
    let req: InferRequest = parse_json(&body)?;
    if let Some(outs) = &req.outputs {
        for o in outs {
            if o.name != OUTPUT {
                return Err(ApiError::bad_request(format!(
                    "unknown output {}: this model has one output, `{OUTPUT}`",
                    crate::names::show(&o.name)
                ))
                .into());
            }
            if o.parameters
                .as_ref()
                .and_then(|p| p.0.get("binary_data"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                return Err(ApiError::bad_request(
                    "binary output data is not supported: ask for JSON (binary_data=False)",
                )
                .into());
            }
        }
    }
    let dep = ms.deployment.load_full();
    let (v, via) = match &version {
        Some(v) => (version_of(&ms, Some(v))?, Via::Forced),
        None => choose(&ms, &dep, &headers, None)?,
    };
    let allow_missing = ms.policy.load().allow_missing;
    let batch = tensors_to_batch(v.metadata(), &req.inputs, cfg.max_rows, allow_missing)?;
    let (st, m) = (state.clone(), ms.clone());
    let a = state
        .serving
        .call(move || score(&st, &m, &dep, v, via, batch))
        .await??;
    let rows = a.predictions.values.len() / a.predictions.width.max(1) as usize;
    let mut out = json!({
        "model_name": ms.name,
        "model_version": a.version.version,
        "outputs": [{
            "name": OUTPUT,
            "datatype": "FP64",
            "shape": [rows, a.predictions.width],
            "data": a.predictions.values,
        }],
        "parameters": { "request_id": a.request_id },
    });
    if let Some(id) = req.id {
        out["id"] = Value::String(id);
    }
    Ok(axum::Json(out).into_response())
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn numeric(dt: &str) -> bool {
    matches!(
        dt,
        "FP64"
            | "FP32"
            | "FP16"
            | "BF16"
            | "INT8"
            | "INT16"
            | "INT32"
            | "INT64"
            | "UINT8"
            | "UINT16"
            | "UINT32"
            | "UINT64"
            | "BOOL"
    )
}

/// Input tensors as a batch of the model's declared inputs.
fn tensors_to_batch(
    meta: &ModelMetadata,
    inputs: &[Tensor],
    max_rows: usize,
    allow_missing: bool,
) -> Result<Batch, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    if inputs.is_empty() {
        return Err(bad("`inputs` is empty".into()));
    }
    let n = meta.inputs.len();
    // Shape checks shared by both layouts.
    fn elements(t: &Tensor, max_rows: usize) -> Result<(usize, Vec<&Value>), ApiError> {
        let bad = |m: String| ApiError::bad_request(m);
        if t.shape.iter().any(|d| *d < 0) || t.shape.is_empty() || t.shape.len() > 2 {
            return Err(bad(format!(
                "input `{}` has shape {:?}: expected [rows] or [rows, columns] with no negative dimension",
                t.name, t.shape
            )));
        }
        let rows = t.shape[0] as usize;
        if rows == 0 {
            return Err(bad(format!("input `{}` has no rows", t.name)));
        }
        if rows > max_rows {
            return Err(ApiError::too_large(format!(
                "{rows} rows is over the serving cap of {max_rows} rows per request"
            )));
        }
        let mut flat = Vec::new();
        flatten(&t.data.0, &mut flat);
        let want: i64 = t.shape.iter().product();
        if flat.len() as i64 != want {
            return Err(bad(format!(
                "input `{}` has {} values but its shape {:?} holds {want}",
                t.name,
                flat.len(),
                t.shape
            )));
        }
        Ok((rows, flat))
    }
    let number = |t: &Tensor, v: &Value, row: usize, feature: &str| -> Result<f64, ApiError> {
        match v {
            Value::Number(x) => x
                .as_f64()
                .ok_or_else(|| bad(format!("input `{}` row {row}: not a finite number", t.name))),
            Value::Bool(b) if t.datatype == "BOOL" => Ok(if *b { 1.0 } else { 0.0 }),
            Value::Null if allow_missing => Ok(f64::NAN),
            Value::Null => Err(bad(format!(
                "input `{}` row {row}: feature `{feature}` is missing (null), and this model's serving policy does not accept missing values",
                t.name
            ))),
            other => Err(bad(format!(
                "input `{}` row {row}: feature `{feature}` must be a number, not {}",
                t.name,
                super::predict::json_kind(other)
            ))),
        }
    };
    if inputs.len() == 1 && (n != 1 || inputs[0].name != meta.inputs[0].name) {
        // One [rows, n] tensor.
        let t = &inputs[0];
        if meta.inputs.iter().any(|f| f.kind != FeatureKind::Numeric) {
            return Err(bad(format!(
                "this model has categorical inputs: send one tensor per input, named after it ({})",
                super::predict::input_names(meta)
            )));
        }
        if !numeric(&t.datatype) {
            return Err(bad(format!(
                "input `{}` has datatype {}: this model's inputs are numeric (FP64, FP32 or an integer type)",
                t.name,
                crate::names::show(&t.datatype)
            )));
        }
        let cols = if t.shape.len() == 2 { t.shape[1] } else { 1 };
        if cols != n as i64 {
            return Err(bad(format!(
                "input `{}` has shape {:?}: the model reads {n} inputs per row ({})",
                t.name,
                t.shape,
                super::predict::input_names(meta)
            )));
        }
        let (rows, flat) = elements(t, max_rows)?;
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); n];
        for (i, v) in flat.iter().enumerate() {
            let (r, c) = (i / n, i % n);
            columns[c].push(number(t, v, r, &meta.inputs[c].name)?);
        }
        return Ok(Batch {
            rows: rows as u32,
            columns: meta
                .inputs
                .iter()
                .zip(columns)
                .map(|(f, v)| Column {
                    name: f.name.clone(),
                    values: ColumnValues::Numeric(v),
                })
                .collect(),
        });
    }
    // One tensor per declared input, each named once: a second tensor of
    // the same name would otherwise be dropped unseen (as a key given twice
    // in a `/v1` row is refused, so is an input given twice here).
    for (i, t) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|u| u.name == t.name) {
            return Err(bad(format!(
                "input {} is given twice",
                crate::names::show(&t.name)
            )));
        }
        if !meta.inputs.iter().any(|f| f.name == t.name) {
            return Err(bad(format!(
                "unknown input {} (the model reads {})",
                crate::names::show(&t.name),
                super::predict::input_names(meta)
            )));
        }
    }
    let mut rows_seen: Option<usize> = None;
    let mut columns = Vec::with_capacity(n);
    for f in &meta.inputs {
        let t = inputs
            .iter()
            .find(|t| t.name == f.name)
            .ok_or_else(|| bad(format!("input `{}` is missing", f.name)))?;
        if t.shape.len() == 2 && t.shape[1] != 1 {
            return Err(bad(format!(
                "input `{}` has shape {:?}: a per-feature tensor is [rows] or [rows, 1]",
                t.name, t.shape
            )));
        }
        let (rows, flat) = elements(t, max_rows)?;
        if let Some(r) = rows_seen
            && r != rows
        {
            return Err(bad(format!(
                "input `{}` has {rows} rows but an earlier input has {r}",
                t.name
            )));
        }
        rows_seen = Some(rows);
        let values = match f.kind {
            FeatureKind::Numeric => {
                if !numeric(&t.datatype) {
                    return Err(bad(format!(
                        "input `{}` has datatype {}: it is numeric",
                        t.name,
                        crate::names::show(&t.datatype)
                    )));
                }
                ColumnValues::Numeric(
                    flat.iter()
                        .enumerate()
                        .map(|(r, v)| number(t, v, r, &f.name))
                        .collect::<Result<_, _>>()?,
                )
            }
            FeatureKind::Categorical => {
                if t.datatype != "BYTES" {
                    return Err(bad(format!(
                        "input `{}` has datatype {}: it is categorical (BYTES)",
                        t.name,
                        crate::names::show(&t.datatype)
                    )));
                }
                ColumnValues::Categorical(
                    flat.iter()
                        .enumerate()
                        .map(|(r, v)| match v {
                            Value::String(s) => Ok(Some(s.clone())),
                            Value::Null if allow_missing => Ok(None),
                            other => Err(bad(format!(
                                "input `{}` row {r}: must be a string, not {}",
                                t.name,
                                super::predict::json_kind(other)
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
        };
        columns.push(Column {
            name: f.name.clone(),
            values,
        });
    }
    Ok(Batch {
        rows: rows_seen.unwrap_or(0) as u32,
        columns,
    })
}
