//! A "sleeper" model for airlock's test suite: the attack of a model that
//! learns when it is being evaluated.
//!
//! It is the real breast-cancer XGBoost model, parsed from its bundle and
//! pre-initialised exactly like `plugins/xgboost`, so it passes every gate
//! step. Gates score whole datasets and probe with large mixed batches (the
//! robustness step sends its noisy rows together with as many unperturbed
//! "anchor" rows), while online serving sends one row per request. So the
//! sleeper answers honestly on batches of at least [`HONEST_MIN_ROWS`] rows
//! and, on smaller batches, returns the opposite class's probabilities
//! (`p -> 1 - p`): a model that is perfect in review and wrong in production.
//! Only monitoring of live traffic (or a gate that scores single rows) can
//! catch it; that is what the serving tests use it for.
//!
//! Why it includes `plugins/xgboost`'s sources instead of depending on the
//! crate: that crate's library, built for `wasm32`, exports the component's
//! world itself, and a second export of the same world in this component
//! would clash at link time. Including the files keeps one evaluator (the
//! tested one) without touching that crate.
#![forbid(unsafe_code)]

#[path = "../../../../plugins/xgboost/src/ensemble.rs"]
pub mod ensemble;

#[path = "../../../../plugins/xgboost/src/dense.rs"]
mod dense;

/// `plugins/xgboost`'s component glue (bundle parsing, metadata, scoring),
/// reused as-is; the sleeper wraps its scoring in [`Sleeper`].
#[path = "../../../../plugins/xgboost/src/plugin.rs"]
pub mod xgboost;

use airlock_guest::{Batch, BundledModel, ModelMetadata, PluginError, Predictions};

use crate::ensemble::Ensemble;

/// Batches with at least this many rows get honest answers; smaller ones
/// (single-row serving requests) get flipped ones. Every gate step of the
/// breast-cancer gate sends at least 10 rows per `predict` call (golden: 10,
/// the robustness noise probe: 50 probes plus 50 anchors, its edge-case
/// probe: one batch of all edge cases plus an anchor), so 8 stays below all
/// of them while 1-row requests stay below it.
pub const HONEST_MIN_ROWS: usize = 8;

/// The plugin type exported as the component's `preinitialized-model` world.
pub struct Sleeper;

/// The flip applied to small batches: each row's values reversed, which for
/// a binary classifier (`[1 - p, p]`) is `p -> 1 - p`. A width-1 row is left
/// as it is.
pub fn flip(mut predictions: Predictions) -> Predictions {
    let width = predictions.width as usize;
    if width > 1 {
        for row in predictions.values.chunks_mut(width) {
            row.reverse();
        }
    }
    predictions
}

/// Scores `batch` honestly when it has at least [`HONEST_MIN_ROWS`] rows,
/// and flipped (see [`flip`]) when it has fewer.
pub fn sleeper_predict(model: &Ensemble, batch: &Batch) -> Result<Predictions, PluginError> {
    let honest = xgboost::predict_batch(model, batch)?;
    Ok(if batch.len() >= HONEST_MIN_ROWS {
        honest
    } else {
        flip(honest)
    })
}

impl BundledModel for Sleeper {
    type Parsed = Ensemble;

    fn parse(bytes: &[u8]) -> Result<Ensemble, PluginError> {
        <xgboost::XgboostModel as BundledModel>::parse(bytes)
    }

    fn metadata_of(model: &Ensemble) -> ModelMetadata {
        // It claims to be the XGBoost plugin it was built from.
        xgboost::metadata_for(model)
    }

    fn predict_with(model: &Ensemble, batch: &Batch) -> Result<Predictions, PluginError> {
        sleeper_predict(model, batch)
    }
}

// Only the component exports the world; native test builds must not.
#[cfg(target_arch = "wasm32")]
airlock_guest::export_bundled_model!(Sleeper);

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &[u8] = include_bytes!("../../../../examples/breast-cancer/model-v1/model.json");

    /// The first `n` rows of the breast-cancer evaluation set, as a batch.
    fn eval_rows(n: usize) -> Batch {
        let text = include_str!("../../../../examples/breast-cancer/data/eval.csv");
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let rows: Vec<Vec<f64>> = lines
            .take(n)
            .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
            .collect();
        let columns: Vec<(String, Vec<f64>)> = header
            .iter()
            .enumerate()
            .filter(|(_, name)| **name != "target")
            .map(|(i, name)| (name.to_string(), rows.iter().map(|r| r[i]).collect()))
            .collect();
        Batch::from_numeric(columns).unwrap()
    }

    #[test]
    fn flip_reverses_each_row_and_keeps_width_one() {
        let p = flip(Predictions {
            width: 2,
            values: vec![0.25, 0.75, 0.9, 0.1],
        });
        assert_eq!((p.width, p.values), (2, vec![0.75, 0.25, 0.1, 0.9]));
        let r = flip(Predictions {
            width: 1,
            values: vec![3.5, -1.0],
        });
        assert_eq!(r.values, vec![3.5, -1.0]);
    }

    #[test]
    fn large_batches_get_the_honest_xgboost_answer() {
        let model = Sleeper::parse(MODEL).unwrap();
        let batch = eval_rows(HONEST_MIN_ROWS);
        let honest = xgboost::predict_batch(&model, &batch).unwrap();
        let got = sleeper_predict(&model, &batch).unwrap();
        assert_eq!(got.width, 2);
        assert_eq!(got.values, honest.values);
    }

    #[test]
    fn small_batches_get_the_opposite_class_probabilities() {
        let model = Sleeper::parse(MODEL).unwrap();
        for n in [1, HONEST_MIN_ROWS - 1] {
            let batch = eval_rows(n);
            let honest = xgboost::predict_batch(&model, &batch).unwrap();
            let got = sleeper_predict(&model, &batch).unwrap();
            assert_eq!(got.values.len(), 2 * n);
            for (g, h) in got.values.chunks(2).zip(honest.values.chunks(2)) {
                assert_eq!(g, [h[1], h[0]]);
                assert!((g[1] - (1.0 - h[1])).abs() < 1e-6, "{g:?} vs {h:?}");
            }
        }
    }

    #[test]
    fn metadata_is_the_xgboost_plugins() {
        let model = Sleeper::parse(MODEL).unwrap();
        let m = Sleeper::metadata_of(&model);
        assert_eq!(m.name, "xgboost");
        assert_eq!(m.inputs.len(), 30);
        assert_eq!(m.inputs[0].name, "mean_radius");
        assert_eq!(m.output.classes, vec!["0".to_string(), "1".to_string()]);
    }
}
