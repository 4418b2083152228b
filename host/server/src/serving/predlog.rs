//! The optional sampled prediction log: when a model's policy sets
//! `prediction_log`, a sample of answered rows is appended as JSON lines
//! to `<data>/prediction-logs/<model>.jsonl` (0600, inside the 0700 data
//! directory), each with the features the policy calls sensitive replaced
//! by `"[redacted]"` before anything is written. Off by default: serving
//! keeps no raw input anywhere else.
//!
//! The file is capped: past [`MAX_LOG_BYTES`] it is renamed to `.1`
//! (replacing the previous one) and a new file starts, so the log never
//! holds more than twice the cap.

use super::ModelServing;
use super::policy::PredictionLogPolicy;
use crate::state::AppState;
use airlock_core::types::{Batch, ColumnValues, Predictions};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The size at which a model's prediction log is rotated.
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// What is written for a redacted feature.
pub const REDACTED: &str = "[redacted]";

/// The open log files, by model.
#[derive(Default)]
pub struct PredictionLogs {
    files: Mutex<std::collections::HashMap<String, (std::fs::File, u64)>>,
}

fn path_of(state: &AppState, model: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("prediction-logs")
        .join(format!("{model}.jsonl"))
}

/// One row as the log keeps it: inputs by name (sensitive ones redacted)
/// and the answer.
pub fn record(
    policy: &PredictionLogPolicy,
    version: &str,
    request_id: &str,
    batch: &Batch,
    predictions: &Predictions,
    row: usize,
) -> Value {
    let mut inputs = Map::new();
    for c in &batch.columns {
        let v = if policy.sensitive.contains(&c.name) {
            Value::String(REDACTED.into())
        } else {
            match &c.values {
                ColumnValues::Numeric(v) => json!(v[row]),
                ColumnValues::Categorical(v) => json!(v[row]),
            }
        };
        inputs.insert(c.name.clone(), v);
    }
    let w = predictions.width.max(1) as usize;
    json!({
        "at": crate::db::now(),
        "request_id": request_id,
        "version": version,
        "row": row,
        "inputs": inputs,
        "prediction": predictions.values.get(row * w..(row + 1) * w).unwrap_or(&[]),
    })
}

/// Writes the sampled rows of one answered request, when the model's
/// policy asks for a log. A write that fails is reported once per failure
/// and never fails the request.
pub fn maybe_log(
    state: &AppState,
    ms: &ModelServing,
    version: &str,
    request_id: &str,
    batch: &Batch,
    predictions: &Predictions,
) {
    let policy = ms.policy.load();
    let Some(lp) = &policy.prediction_log else {
        return;
    };
    let mut lines = Vec::new();
    for row in 0..batch.rows as usize {
        let draw = super::predict::split_random() % 10_000;
        if (draw as f64) < lp.sample_percent * 100.0 {
            let mut line = record(lp, version, request_id, batch, predictions, row).to_string();
            line.push('\n');
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return;
    }
    if let Err(e) = append(state, &ms.name, &lines) {
        tracing::error!(model = %ms.name, error = %e, "prediction log of {}: {e}", ms.name);
    }
}

fn append(state: &AppState, model: &str, lines: &[String]) -> std::io::Result<()> {
    let logs = &state.serving.prediction_logs;
    let mut files = logs.files.lock().unwrap_or_else(|p| p.into_inner());
    let path = path_of(state, model);
    if !files.contains_key(model) {
        let dir = path
            .parent()
            .unwrap_or(&state.config.data_dir)
            .to_path_buf();
        crate::state::private_dir(&dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let len = f.metadata()?.len();
        files.insert(model.to_string(), (f, len));
    }
    let Some((file, len)) = files.get_mut(model) else {
        return Ok(());
    };
    for line in lines {
        file.write_all(line.as_bytes())?;
        *len += line.len() as u64;
    }
    if *len >= MAX_LOG_BYTES {
        files.remove(model);
        std::fs::rename(&path, path.with_extension("jsonl.1"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::types::Column;

    #[test]
    fn sensitive_features_are_redacted_before_anything_is_written() {
        let batch = Batch {
            rows: 2,
            columns: vec![
                Column {
                    name: "income".into(),
                    values: ColumnValues::Numeric(vec![123_456.0, 98_765.0]),
                },
                Column {
                    name: "age".into(),
                    values: ColumnValues::Numeric(vec![41.0, 37.0]),
                },
                Column {
                    name: "postcode".into(),
                    values: ColumnValues::Categorical(vec![Some("SW1A".into()), None]),
                },
            ],
        };
        let p = Predictions {
            width: 2,
            values: vec![0.1, 0.9, 0.7, 0.3],
        };
        let policy = PredictionLogPolicy {
            sample_percent: 100.0,
            sensitive: vec!["income".into(), "postcode".into()],
        };
        let r = record(&policy, "1.0.0", "abc", &batch, &p, 1);
        assert_eq!(r["inputs"]["income"], REDACTED);
        assert_eq!(r["inputs"]["postcode"], REDACTED);
        assert_eq!(r["inputs"]["age"], 37.0);
        assert_eq!(r["prediction"], json!([0.7, 0.3]));
        let text = r.to_string();
        assert!(!text.contains("98765") && !text.contains("SW1A"), "{text}");
    }
}
