//! Reference tests: the evaluator must reproduce scikit-learn's predictions,
//! and refuse malformed models and missing values with precise errors.
//!
//! Why: the fixtures under `tests/fixtures/models/linear_*.json` were exported
//! from fitted scikit-learn estimators (`tests/fixtures/gen_models.py`), with
//! and without a `StandardScaler`; any slip in the format, the
//! standardisation, or the link functions shows up as a numeric mismatch.

use airlock_model_linear::{LinearError, LinearModel, Task};
use serde::Deserialize;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
const TOLERANCE: f64 = 1e-5;

/// A fixture CSV: header of column names, label `target` last, empty cell = missing.
fn read_csv(path: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let names: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|c| {
                    if c.is_empty() {
                        f64::NAN
                    } else {
                        c.parse().unwrap()
                    }
                })
                .collect::<Vec<f64>>()
        })
        .collect();
    (names, rows)
}

#[derive(Deserialize)]
struct Expected {
    model: String,
    dataset: String,
    width: usize,
    predictions: Vec<Vec<f64>>,
}

fn load(path: &str) -> LinearModel {
    LinearModel::from_json(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check(expected_file: &str) -> f64 {
    let e: Expected = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/models/{expected_file}")).unwrap(),
    )
    .unwrap();
    let model = load(&format!("{FIXTURES}/models/{}", e.model));
    let (names, rows) = read_csv(&format!("{FIXTURES}/{}", e.dataset));
    let pos = model.map_columns(&names).unwrap();
    let flat: Vec<f64> = rows
        .iter()
        .flat_map(|r| pos.iter().map(move |&p| r[p]))
        .collect();
    let got = model.predict(&flat, pos.len()).unwrap();
    assert_eq!(model.output_width(), e.width, "{expected_file}");
    assert_eq!(got.len(), rows.len() * e.width, "{expected_file}");
    assert_eq!(e.predictions.len(), rows.len(), "{expected_file}");
    let mut worst = 0f64;
    for (r, (want, have)) in e
        .predictions
        .iter()
        .zip(got.chunks_exact(e.width))
        .enumerate()
    {
        for (c, (w, h)) in want.iter().zip(have).enumerate() {
            let err = (w - h).abs();
            assert!(
                err <= TOLERANCE,
                "{expected_file}: row {r} column {c}: expected {w}, got {h}"
            );
            worst = worst.max(err);
        }
    }
    worst
}

#[test]
fn every_linear_fixture_matches_scikit_learn() {
    let mut files: Vec<String> = std::fs::read_dir(format!("{FIXTURES}/models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("expected_linear_"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "3 tasks x (plain, scaled): {files:?}");
    for f in &files {
        println!("{f}: max |diff| = {:e}", check(f));
    }
}

#[test]
fn fixtures_cover_every_task_with_and_without_scaling() {
    for (stem, task, classes) in [
        ("regression", Task::Regression, 0),
        ("binary", Task::BinaryClassification, 2),
        ("multiclass", Task::MulticlassClassification, 3),
    ] {
        for scaled in [false, true] {
            let path = format!(
                "{FIXTURES}/models/linear_{stem}{}.json",
                if scaled { "_scaled" } else { "" }
            );
            let m = load(&path);
            assert_eq!(m.task(), task, "{path}");
            assert_eq!(m.classes().len(), classes, "{path}");
            assert_eq!(m.is_standardized(), scaled, "{path}");
        }
    }
}

#[test]
fn missing_values_are_an_error_naming_row_and_feature() {
    let m = load(&format!("{FIXTURES}/models/linear_binary_scaled.json"));
    let (names, rows) = read_csv(&format!("{FIXTURES}/data/breast_cancer_eval_missing.csv"));
    let pos = m.map_columns(&names).unwrap();
    let flat: Vec<f64> = rows
        .iter()
        .flat_map(|r| pos.iter().map(move |&p| r[p]))
        .collect();
    let err = m.predict(&flat, pos.len()).unwrap_err();
    let LinearError::MissingValue { row, feature } = &err else {
        panic!("unexpected {err:?}")
    };
    let j = names.iter().position(|n| n == feature).unwrap();
    assert!(rows[*row][j].is_nan());
    assert!(
        rows[..*row]
            .iter()
            .all(|r| r.iter().take(30).all(|v| !v.is_nan())),
        "the first missing row is reported"
    );
    assert!(
        err.to_string().contains(feature.as_str())
            && err.to_string().contains(&format!("row {row}"))
    );
}

fn valid() -> Value {
    json!({
        "format": "airlock-linear",
        "format_version": 1,
        "task": "multiclass-classification",
        "feature_names": ["a", "b"],
        "classes": ["x", "y", "z"],
        "coefficients": [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]],
        "intercepts": [0.0, 0.0, 0.5],
        "standardization": {"mean": [1.0, 1.0], "scale": [2.0, 2.0]}
    })
}

fn parse(v: &Value) -> Result<LinearModel, LinearError> {
    LinearModel::from_json(&serde_json::to_vec(v).unwrap())
}

#[test]
fn a_hand_made_model_predicts_by_hand() {
    let m = parse(&valid()).unwrap();
    // Row (3, 1) standardises to (1, 0); scores (1, 0, 0.5).
    let p = m.predict(&[3.0, 1.0], 2).unwrap();
    let e = [1f64.exp(), 1.0, 0.5f64.exp()];
    let s: f64 = e.iter().sum();
    for (got, want) in p.iter().zip(e.iter().map(|v| v / s)) {
        assert!((got - want).abs() < 1e-12);
    }

    let mut v = valid();
    v["task"] = json!("regression");
    v["classes"] = json!([]);
    v["coefficients"] = json!([[2.0, -1.0]]);
    v["intercepts"] = json!([10.0]);
    v.as_object_mut().unwrap().remove("standardization");
    assert_eq!(
        parse(&v)
            .unwrap()
            .predict(&[1.0, 3.0, 0.0, 0.0], 2)
            .unwrap(),
        vec![9.0, 10.0]
    );

    v["task"] = json!("binary-classification");
    v["classes"] = json!(["0", "1"]);
    v["intercepts"] = json!([0.0]);
    let p = parse(&v)
        .unwrap()
        .predict(&[0.0, 0.0, 1000.0, 0.0], 2)
        .unwrap();
    assert_eq!(p, vec![0.5, 0.5, 0.0, 1.0]);
}

#[test]
fn malformed_models_are_refused() {
    assert!(matches!(
        LinearModel::from_json(b"nope"),
        Err(LinearError::Malformed(_))
    ));
    let cases: Vec<(&str, Value)> = vec![
        ("format", json!("sklearn-pickle")),
        ("format_version", json!(2)),
        ("task", json!("ranking")),
        ("feature_names", json!([])),
        ("feature_names", json!(["a", "a"])),
        ("classes", json!(["x", "y"])),
        ("coefficients", json!([[1.0, 0.0], [0.0, 1.0]])),
        ("coefficients", json!([[1.0], [0.0, 1.0], [0.0, 0.0]])),
        ("intercepts", json!([0.0])),
        (
            "standardization",
            json!({"mean": [0.0], "scale": [1.0, 1.0]}),
        ),
        (
            "standardization",
            json!({"mean": [0.0, 0.0], "scale": [1.0, 0.0]}),
        ),
        ("unexpected", json!(1)),
    ];
    for (field, value) in cases {
        let mut v = valid();
        v[field] = value.clone();
        // Each refusal names the offending field (or the unknown key).
        let e = parse(&v).unwrap_err().to_string();
        let named = if field == "classes" {
            "coefficients"
        } else {
            field
        };
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        assert!(
            e.contains(&format!("`{named}")) || e.contains(&format!("`{shown}`")),
            "{field} = {value}: {e}"
        );
    }
    for field in [
        "format",
        "task",
        "feature_names",
        "coefficients",
        "intercepts",
    ] {
        let mut v = valid();
        v.as_object_mut().unwrap().remove(field);
        let err = parse(&v).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn bad_input_shapes_and_missing_columns_are_errors() {
    let m = parse(&valid()).unwrap();
    assert!(matches!(
        m.predict(&[1.0, 2.0, 3.0], 2),
        Err(LinearError::BadInput(_))
    ));
    assert!(matches!(
        m.predict(&[1.0, 2.0, 3.0], 3),
        Err(LinearError::BadInput(_))
    ));
    assert_eq!(m.predict(&[], 2).unwrap(), Vec::<f64>::new());
    assert_eq!(m.map_columns(&["b", "c", "a"]).unwrap(), vec![2, 0]);
    assert_eq!(
        m.map_columns(&["c"]).unwrap_err(),
        LinearError::MissingFeatures(vec!["a".into(), "b".into()])
    );
    let err = m.predict(&[1.0, 2.0, 1.0, f64::NAN], 2).unwrap_err();
    assert_eq!(
        err,
        LinearError::MissingValue {
            row: 1,
            feature: "b".into()
        }
    );
}
