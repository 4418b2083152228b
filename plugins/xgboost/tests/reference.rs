//! Reference tests: the evaluator must reproduce XGBoost's own predictions.
//!
//! Why: the fixtures under `tests/fixtures/` were produced by XGBoost itself
//! (`tests/fixtures/gen_models.py`), for two XGBoost versions that store
//! `base_score` differently, with and without missing values and feature
//! names. Any drift in parsing, split rules, default directions, base-score
//! handling or output transforms shows up here as a numeric mismatch.

use airlock_model_xgboost::{Ensemble, ModelError, Task};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/breast-cancer");
const TOLERANCE: f64 = 1e-5;

/// A fixture CSV: header of feature names, label column `target` last, empty cell = missing.
struct Csv {
    names: Vec<String>,
    /// Row-major values of every column (features and label), NaN for blanks.
    values: Vec<f64>,
    width: usize,
}

impl Csv {
    fn read(path: &str) -> Csv {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut lines = text.lines();
        let names: Vec<String> = lines
            .next()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let width = names.len();
        let mut values = Vec::new();
        for (i, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(
                cells.len(),
                width,
                "{path}: row {i} has {} cells",
                cells.len()
            );
            values.extend(cells.iter().map(|c| {
                if c.is_empty() {
                    f64::NAN
                } else {
                    c.parse::<f64>().unwrap()
                }
            }));
        }
        Csv {
            names,
            values,
            width,
        }
    }

    fn rows(&self) -> usize {
        self.values.len() / self.width
    }

    /// Feature columns in the order given by `positions` (indices into `names`), row-major.
    fn select(&self, positions: &[usize]) -> Vec<f64> {
        self.values
            .chunks_exact(self.width)
            .flat_map(|row| positions.iter().map(move |&p| row[p]))
            .collect()
    }

    fn column(&self, name: &str) -> Vec<f64> {
        let j = self.names.iter().position(|n| n == name).unwrap();
        self.values.chunks_exact(self.width).map(|r| r[j]).collect()
    }
}

#[derive(Deserialize)]
struct Expected {
    model: String,
    dataset: String,
    width: usize,
    predictions: Vec<Vec<f64>>,
}

fn load_model(path: &str) -> Ensemble {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Ensemble::from_json(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Check one expected-predictions file; returns the largest absolute error.
fn check(expected_file: &str) -> f64 {
    let path = format!("{FIXTURES}/models/{expected_file}");
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let model = load_model(&format!("{FIXTURES}/models/{}", expected.model));
    let csv = Csv::read(&format!("{FIXTURES}/{}", expected.dataset));
    let feature_columns = &csv.names[..csv.names.len() - 1];
    let positions = model.map_columns(feature_columns).unwrap();
    let rows = csv.select(&positions);
    let got = model.predict(&rows, positions.len()).unwrap();
    // Scoring the columns in place gives the same bits as the matrix.
    let columns: Vec<Vec<f64>> = (0..positions.len())
        .map(|c| {
            rows.iter()
                .skip(c)
                .step_by(positions.len())
                .copied()
                .collect()
        })
        .collect();
    let by_column = model
        .predict_columns(&columns.iter().map(Vec::as_slice).collect::<Vec<_>>())
        .unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&by_column), "{expected_file}: by column");

    assert_eq!(
        model.output_width(),
        expected.width,
        "{expected_file}: width"
    );
    assert_eq!(
        expected.predictions.len(),
        csv.rows(),
        "{expected_file}: row count"
    );
    assert_eq!(
        got.len(),
        csv.rows() * expected.width,
        "{expected_file}: output length"
    );
    let mut worst = 0f64;
    for (r, (want, have)) in expected
        .predictions
        .iter()
        .zip(got.chunks_exact(expected.width))
        .enumerate()
    {
        for (c, (w, h)) in want.iter().zip(have).enumerate() {
            let err = (w - h).abs();
            assert!(
                err <= TOLERANCE,
                "{expected_file}: row {r} column {c}: expected {w}, got {h} (|diff| = {err:e})"
            );
            worst = worst.max(err);
        }
    }
    worst
}

fn all_expected() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(format!("{FIXTURES}/models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("expected_xgb_") && n.ends_with(".json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_xgboost_fixture_matches_the_library() {
    let files = all_expected();
    // 2 versions x (binary: 2 data sets, multiclass, regression) + positional binary x 2 data sets.
    assert!(
        files.len() >= 10,
        "expected at least 10 xgboost reference files, found {}",
        files.len()
    );
    for f in &files {
        let worst = check(f);
        println!("{f}: max |diff| = {worst:e}");
    }
}

#[test]
fn both_base_score_layouts_are_covered() {
    let scalar =
        std::fs::read_to_string(format!("{FIXTURES}/models/xgb_multiclass_2.1.4.json")).unwrap();
    let vector =
        std::fs::read_to_string(format!("{FIXTURES}/models/xgb_multiclass_3.2.0.json")).unwrap();
    assert!(
        scalar.contains("\"base_score\":\"5E-1\""),
        "2.1.4 stores a scalar base_score"
    );
    assert!(
        vector.contains("\"base_score\":\"["),
        "3.2.0 stores a bracketed base_score"
    );
    let m = load_model(&format!("{FIXTURES}/models/xgb_multiclass_3.2.0.json"));
    assert_eq!(m.task(), Task::MulticlassClassification);
    assert_eq!(m.output_width(), 3);
    assert_eq!(m.xgboost_version(), Some("3.2.0"));
}

#[test]
fn missing_values_change_predictions() {
    // Guards against a fixture that silently stopped exercising default directions.
    let a: Expected = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FIXTURES}/models/expected_xgb_binary_3.2.0_breast_cancer_eval.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let b: Expected = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FIXTURES}/models/expected_xgb_binary_3.2.0_breast_cancer_eval_missing.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let changed = a
        .predictions
        .iter()
        .zip(&b.predictions)
        .filter(|(x, y)| (x[1] - y[1]).abs() > 1e-4)
        .count();
    assert!(
        changed >= 5,
        "only {changed} rows changed when values went missing"
    );
}

#[test]
fn positional_model_has_no_names_and_named_model_reorders_columns() {
    let positional = load_model(&format!(
        "{FIXTURES}/models/xgb_binary_positional_3.2.0.json"
    ));
    assert!(positional.feature_names().is_none());
    let named = load_model(&format!("{FIXTURES}/models/xgb_binary_3.2.0.json"));
    let names = named.feature_names().unwrap().to_vec();
    assert_eq!(names.len(), 30);
    assert_eq!(names[0], "mean_radius");

    // Reverse the columns: matching by name must undo it and give the same predictions.
    let csv = Csv::read(&format!("{FIXTURES}/data/breast_cancer_eval.csv"));
    let straight = csv.select(&(0..30).collect::<Vec<_>>());
    let reversed_names: Vec<&str> = names.iter().rev().map(String::as_str).collect();
    let reversed_rows = csv.select(&(0..30).rev().collect::<Vec<_>>());
    let pos = named.map_columns(&reversed_names).unwrap();
    let remapped: Vec<f64> = reversed_rows
        .chunks_exact(30)
        .flat_map(|r| pos.iter().map(move |&p| r[p]))
        .collect();
    assert_eq!(
        named.predict(&remapped, 30).unwrap(),
        named.predict(&straight, 30).unwrap()
    );

    let err = named
        .map_columns(&["mean_radius", "worst_area"])
        .unwrap_err();
    match &err {
        ModelError::MissingFeatures(missing) => {
            assert_eq!(missing.len(), 28);
            assert!(missing.contains(&"worst_concave_points".to_owned()));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("mean_texture"));
    let e = positional.map_columns(&["a"; 29]).unwrap_err().to_string();
    assert!(
        e.contains("takes 30 features by position, but the input has 29 columns"),
        "{e}"
    );
    assert_eq!(
        positional.map_columns(&["a"; 31]).unwrap(),
        (0..30).collect::<Vec<_>>()
    );
}

#[test]
fn example_models_match_golden_rows_and_v2_is_degraded() {
    let v1 = load_model(&format!("{EXAMPLE}/model-v1/model.json"));
    let v2 = load_model(&format!("{EXAMPLE}/model-v2-degraded/model.json"));
    assert_eq!(v1.feature_names(), v2.feature_names(), "same schema");

    let golden = Csv::read(&format!("{EXAMPLE}/data/golden.csv"));
    let pos = v1.map_columns(&golden.names).unwrap();
    let got = v1.predict(&golden.select(&pos), pos.len()).unwrap();
    let expected = golden.column("expected");
    assert_eq!(expected.len(), 10);
    for (i, (g, e)) in got.chunks_exact(2).zip(&expected).enumerate() {
        assert!(
            (g[1] - e).abs() <= TOLERANCE,
            "golden row {i}: expected {e}, got {}",
            g[1]
        );
    }

    let eval = Csv::read(&format!("{EXAMPLE}/data/eval.csv"));
    let labels = eval.column("target");
    let accuracy = |m: &Ensemble| {
        let pos = m.map_columns(&eval.names).unwrap();
        let p = m.predict(&eval.select(&pos), pos.len()).unwrap();
        let right = p
            .chunks_exact(2)
            .zip(&labels)
            .filter(|(p, y)| (p[1] >= 0.5) == (**y == 1.0))
            .count();
        right as f64 / labels.len() as f64
    };
    let (a1, a2) = (accuracy(&v1), accuracy(&v2));
    assert!(a1 > 0.93, "v1 accuracy {a1}");
    assert!(a2 < 0.9, "v2 accuracy {a2}");
}
