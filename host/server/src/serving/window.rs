//! Live windows for continuous validation: the last rows each version
//! answered (inputs, predictions, delayed labels), bounded and in memory
//! only, kept only when the model's policy names monitor steps.

use super::{ModelServing, WarmVersion};
use crate::state::AppState;
use airlock_core::types::{Batch, Column, ColumnValues, FeatureKind, Predictions};
use std::collections::VecDeque;

/// Live rows kept for continuous validation: bounded, in memory only.
pub struct LiveWindow {
    cap: usize,
    rows: VecDeque<LiveRow>,
}

struct LiveRow {
    request_id: String,
    values: Vec<Cell>,
    prediction: Vec<f64>,
    label: Option<f64>,
}

#[derive(Clone)]
enum Cell {
    Num(f64),
    Cat(Option<String>),
}

impl LiveWindow {
    /// A window of at most `cap` rows (0 keeps nothing).
    pub fn new(cap: usize) -> LiveWindow {
        LiveWindow {
            cap,
            rows: VecDeque::new(),
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
        while self.rows.len() > cap {
            self.rows.pop_front();
        }
    }
}

/// Keeps a scored request's rows for monitors (only when the model's
/// policy names some).
pub fn window_push(
    state: &AppState,
    ms: &ModelServing,
    version: &WarmVersion,
    request_id: &str,
    batch: &Batch,
    predictions: &Predictions,
) {
    if ms.policy.load().monitors.is_empty() {
        return;
    }
    let cap = state.config.serving.window_rows;
    let mut w = version.window.lock().unwrap_or_else(|p| p.into_inner());
    if w.cap != cap {
        w.set_cap(cap);
    }
    if cap == 0 {
        return;
    }
    let width = predictions.width.max(1) as usize;
    for r in 0..batch.rows as usize {
        let values = batch
            .columns
            .iter()
            .map(|c| match &c.values {
                ColumnValues::Numeric(v) => Cell::Num(v[r]),
                ColumnValues::Categorical(v) => Cell::Cat(v[r].clone()),
            })
            .collect();
        if w.rows.len() == cap {
            w.rows.pop_front();
        }
        w.rows.push_back(LiveRow {
            request_id: request_id.to_string(),
            values,
            prediction: predictions.values[r * width..(r + 1) * width].to_vec(),
            label: None,
        });
    }
}

/// Attaches a delayed label to the window's row for `request_id`.
pub fn window_label(version: &WarmVersion, request_id: &str, label: f64) {
    let mut w = version.window.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(row) = w.rows.iter_mut().rev().find(|r| r.request_id == request_id) {
        row.label = Some(label);
    }
}

/// A window as a batch, predictions and (when asked) labels. With
/// `labelled`, only rows that have a label.
pub(crate) fn window_batch(
    version: &WarmVersion,
    labelled: bool,
) -> (Batch, Predictions, Option<Vec<f64>>) {
    let meta = version.metadata();
    let w = version.window.lock().unwrap_or_else(|p| p.into_inner());
    let rows: Vec<&LiveRow> = w
        .rows
        .iter()
        .filter(|r| !labelled || r.label.is_some())
        .collect();
    let width = rows.first().map_or(1, |r| r.prediction.len()) as u32;
    let columns = meta
        .inputs
        .iter()
        .enumerate()
        .map(|(i, f)| Column {
            name: f.name.clone(),
            values: match f.kind {
                FeatureKind::Numeric => ColumnValues::Numeric(
                    rows.iter()
                        .map(|r| match &r.values[i] {
                            Cell::Num(x) => *x,
                            Cell::Cat(_) => f64::NAN,
                        })
                        .collect(),
                ),
                FeatureKind::Categorical => ColumnValues::Categorical(
                    rows.iter()
                        .map(|r| match &r.values[i] {
                            Cell::Cat(x) => x.clone(),
                            Cell::Num(_) => None,
                        })
                        .collect(),
                ),
            },
        })
        .collect();
    let predictions = Predictions {
        width,
        values: rows
            .iter()
            .flat_map(|r| r.prediction.iter().copied())
            .collect(),
    };
    let labels = labelled.then(|| rows.iter().filter_map(|r| r.label).collect());
    (
        Batch {
            rows: rows.len() as u32,
            columns,
        },
        predictions,
        labels,
    )
}
