//! The component glue, tested natively: declared schema, batches matched by
//! name, and the error codes a caller sees.
//!
//! Why: the host and validators rely on the codes (`missing-feature`,
//! `bad-input`, `bad-bundle`) and on the declared schema.

use airlock_guest::{Batch, FeatureKind, Task};
use airlock_model_linear::LinearModel;
use airlock_model_linear::plugin::{metadata_for, plugin_error, predict_batch};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn model(file: &str) -> LinearModel {
    LinearModel::from_json(&std::fs::read(format!("{FIXTURES}/models/{file}")).unwrap()).unwrap()
}

fn batch(csv: &str) -> Batch {
    let text = std::fs::read_to_string(format!("{FIXTURES}/data/{csv}")).unwrap();
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
    Batch::from_numeric(
        (0..names.len() - 1)
            .rev()
            .map(|j| (names[j].to_owned(), rows.iter().map(|r| r[j]).collect()))
            .collect(),
    )
    .unwrap()
}

#[test]
fn metadata_declares_inputs_and_classes() {
    let md = metadata_for(&model("linear_multiclass_scaled.json"));
    assert_eq!(md.inputs.len(), 13);
    assert!(md.inputs.iter().all(|f| f.kind == FeatureKind::Numeric));
    assert_eq!(md.output.task, Task::MulticlassClassification);
    assert_eq!(md.output.classes, vec!["0", "1", "2"]);
    let md = metadata_for(&model("linear_regression.json"));
    assert_eq!(md.output.task, Task::Regression);
    assert!(md.output.classes.is_empty());
}

#[test]
fn batch_predictions_match_scikit_learn() {
    let p = predict_batch(
        &model("linear_binary_scaled.json"),
        &batch("breast_cancer_eval.csv"),
    )
    .unwrap();
    assert_eq!(p.width, 2);
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FIXTURES}/models/expected_linear_binary_scaled_breast_cancer_eval.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let flat: Vec<f64> = expected["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(flat.len(), p.values.len());
    assert!(
        p.values
            .iter()
            .zip(&flat)
            .all(|(a, b)| (a - b).abs() <= 1e-5)
    );
}

#[test]
fn errors_carry_machine_readable_codes() {
    let m = model("linear_binary.json");
    let e = predict_batch(&m, &batch("breast_cancer_eval_missing.csv")).unwrap_err();
    assert_eq!(e.code, "bad-input");
    assert!(
        e.message.contains("missing (NaN)") && e.message.contains("row "),
        "{}",
        e.message
    );
    let e = predict_batch(&m, &batch("wine_eval.csv")).unwrap_err();
    assert_eq!(e.code, "missing-feature");
    assert!(e.message.contains("mean_radius"));
    assert_eq!(
        plugin_error(LinearModel::from_json(b"[]").unwrap_err()).code,
        "bad-bundle"
    );
}
