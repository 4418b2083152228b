//! Prediction request bodies: read under the serving cap, parsed as JSON,
//! and rows turned into a typed batch of the model's declared inputs, every
//! problem named by row and feature. Shared by `/v1` predict and the
//! inference protocol (`oip.rs`), and kept apart from routing and scoring
//! in `predict.rs`.

use crate::error::ApiError;
use airlock_core::types::{Batch, Column, ColumnValues, FeatureKind, ModelMetadata};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde_json::Value;

/// A body read under the serving cap, with the cap named when over it.
pub fn body_bytes(body: Result<Bytes, BytesRejection>, cap: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::too_large(format!(
            "the request body is over the {cap}-byte serving cap"
        )),
        other => ApiError::bad_request(format!("request body: {}", other.body_text())),
    })
}

/// Parses JSON, naming where it broke (NaN and Infinity are not JSON).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let hint = if bytes.windows(3).any(|w| w == b"NaN") || bytes.windows(8).any(|w| w == b"Infinity") {
            " (NaN and Infinity are not JSON; send null for a missing value where the model's policy allows one)"
        } else {
            ""
        };
        ApiError::bad_request(format!("request body is not valid: {e}{hint}"))
    })
}

/// Rows as a batch of the model's declared inputs.
pub fn rows_to_batch(
    meta: &ModelMetadata,
    rows: &[Value],
    max_rows: usize,
    allow_missing: bool,
) -> Result<Batch, ApiError> {
    if rows.is_empty() {
        return Err(ApiError::bad_request(
            "`rows` is empty: send at least one row",
        ));
    }
    if rows.len() > max_rows {
        return Err(ApiError::too_large(format!(
            "{} rows is over the serving cap of {max_rows} rows per request",
            rows.len()
        )));
    }
    let n = meta.inputs.len();
    let mut columns: Vec<ColumnValues> = meta
        .inputs
        .iter()
        .map(|f| match f.kind {
            FeatureKind::Numeric => ColumnValues::Numeric(Vec::with_capacity(rows.len())),
            FeatureKind::Categorical => ColumnValues::Categorical(Vec::with_capacity(rows.len())),
        })
        .collect();
    for (r, row) in rows.iter().enumerate() {
        match row {
            Value::Object(map) => {
                for key in map.keys() {
                    if !meta.inputs.iter().any(|f| &f.name == key) {
                        return Err(ApiError::bad_request(format!(
                            "row {r}: unknown feature {} (the model reads {})",
                            crate::names::show(key),
                            input_names(meta)
                        )));
                    }
                }
                for (i, f) in meta.inputs.iter().enumerate() {
                    let v = map.get(&f.name).ok_or_else(|| {
                        ApiError::bad_request(format!("row {r}: feature `{}` is missing", f.name))
                    })?;
                    push(&mut columns[i], v, r, &f.name, allow_missing)?;
                }
            }
            Value::Array(values) => {
                if values.len() != n {
                    return Err(ApiError::bad_request(format!(
                        "row {r} has {} values; the model reads {n} inputs, in order: {}",
                        values.len(),
                        input_names(meta)
                    )));
                }
                for (i, (f, v)) in meta.inputs.iter().zip(values).enumerate() {
                    push(&mut columns[i], v, r, &f.name, allow_missing)?;
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "row {r} is {}: send an object of feature values or an array in input order",
                    json_kind(other)
                )));
            }
        }
    }
    Ok(Batch {
        rows: rows.len() as u32,
        columns: meta
            .inputs
            .iter()
            .zip(columns)
            .map(|(f, values)| Column {
                name: f.name.clone(),
                values,
            })
            .collect(),
    })
}

/// The declared input names, shortened for an error message.
pub fn input_names(meta: &ModelMetadata) -> String {
    let names: Vec<&str> = meta.inputs.iter().map(|f| f.name.as_str()).collect();
    if names.len() > 8 {
        format!("{}, … ({} in all)", names[..8].join(", "), names.len())
    } else {
        names.join(", ")
    }
}

/// What kind of JSON value `v` is, for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn push(
    col: &mut ColumnValues,
    v: &Value,
    row: usize,
    name: &str,
    allow_missing: bool,
) -> Result<(), ApiError> {
    match (col, v) {
        (ColumnValues::Numeric(c), Value::Number(x)) => {
            c.push(x.as_f64().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "row {row}: feature `{name}` is not a finite number"
                ))
            })?);
            Ok(())
        }
        (ColumnValues::Numeric(c), Value::Null) if allow_missing => {
            c.push(f64::NAN);
            Ok(())
        }
        (ColumnValues::Categorical(c), Value::String(s)) => {
            c.push(Some(s.clone()));
            Ok(())
        }
        (ColumnValues::Categorical(c), Value::Null) if allow_missing => {
            c.push(None);
            Ok(())
        }
        (_, Value::Null) => Err(ApiError::bad_request(format!(
            "row {row}: feature `{name}` is missing (null), and this model's serving policy does not accept missing values"
        ))),
        (ColumnValues::Numeric(_), other) => Err(ApiError::bad_request(format!(
            "row {row}: feature `{name}` must be a number, not {}",
            json_kind(other)
        ))),
        (ColumnValues::Categorical(_), other) => Err(ApiError::bad_request(format!(
            "row {row}: feature `{name}` is categorical and must be a string, not {}",
            json_kind(other)
        ))),
    }
}
