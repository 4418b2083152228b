//! The component glue, tested natively: metadata from a real model, batches
//! matched by name and by position, and the error codes a caller sees.
//!
//! Why: the host and validators rely on the codes (`missing-feature`,
//! `bad-input`, `bad-bundle`) and on the declared schema; these tests pin
//! them without needing a sandbox.

use airlock_guest::{Batch, Column, ColumnValues, FeatureKind, Task};
use airlock_model_xgboost::Ensemble;
use airlock_model_xgboost::plugin::{metadata_for, plugin_error, predict_batch};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn model(file: &str) -> Ensemble {
    Ensemble::from_json(&std::fs::read(format!("{FIXTURES}/models/{file}")).unwrap()).unwrap()
}

/// The breast-cancer eval CSV as a batch (label column dropped), columns reversed
/// so that matching by name is actually exercised.
fn eval_batch() -> Batch {
    let text =
        std::fs::read_to_string(format!("{FIXTURES}/data/breast_cancer_eval_missing.csv")).unwrap();
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .map(|c| {
                    if c.is_empty() {
                        f64::NAN
                    } else {
                        c.parse().unwrap()
                    }
                })
                .collect()
        })
        .collect();
    let columns = (0..names.len() - 1)
        .rev()
        .map(|j| (names[j].to_owned(), rows.iter().map(|r| r[j]).collect()))
        .collect();
    Batch::from_numeric(columns).unwrap()
}

#[test]
fn metadata_declares_named_numeric_inputs_and_classes() {
    let md = metadata_for(&model("xgb_binary_3.2.0.json"));
    assert_eq!(md.inputs.len(), 30);
    assert_eq!(md.inputs[0].name, "mean_radius");
    assert!(md.inputs.iter().all(|f| f.kind == FeatureKind::Numeric));
    assert_eq!(md.output.task, Task::BinaryClassification);
    assert_eq!(md.output.classes, vec!["0", "1"]);

    let md = metadata_for(&model("xgb_multiclass_3.2.0.json"));
    assert_eq!(md.output.task, Task::MulticlassClassification);
    assert_eq!(md.output.classes, vec!["0", "1", "2"]);
    let md = metadata_for(&model("xgb_regression_2.1.4.json"));
    assert_eq!(md.output.task, Task::Regression);
    assert!(md.output.classes.is_empty());
    let md = metadata_for(&model("xgb_binary_positional_3.2.0.json"));
    assert_eq!(md.inputs[0].name, "f0");
    assert_eq!(md.inputs[29].name, "f29");
}

#[test]
fn predictions_match_the_reference_through_the_batch_api() {
    let m = model("xgb_binary_3.2.0.json");
    let p = predict_batch(&m, &eval_batch()).unwrap();
    assert_eq!(p.width, 2);
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FIXTURES}/models/expected_xgb_binary_3.2.0_breast_cancer_eval_missing.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let expected: Vec<f64> = expected["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(p.values.len(), expected.len());
    for (a, b) in p.values.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
}

#[test]
fn errors_carry_machine_readable_codes() {
    let m = model("xgb_binary_3.2.0.json");
    let batch = Batch::from_numeric(vec![("mean_radius".into(), vec![1.0])]).unwrap();
    let e = predict_batch(&m, &batch).unwrap_err();
    assert_eq!(e.code, "missing-feature");
    assert!(e.message.contains("worst_area"), "{}", e.message);

    let mut batch = eval_batch();
    batch.columns[3].values = ColumnValues::Categorical(vec![None; batch.rows as usize]);
    let name = batch.columns[3].name.clone();
    let e = predict_batch(&m, &batch).unwrap_err();
    assert_eq!(e.code, "bad-input");
    assert!(e.message.contains(&name));

    let positional = model("xgb_binary_positional_3.2.0.json");
    let short = Batch {
        rows: 1,
        columns: vec![Column {
            name: "x".into(),
            values: ColumnValues::Numeric(vec![1.0]),
        }],
    };
    assert_eq!(
        predict_batch(&positional, &short).unwrap_err().code,
        "bad-input"
    );

    let e = plugin_error(Ensemble::from_json(b"{}").unwrap_err());
    assert_eq!(e.code, "bad-bundle");
}
