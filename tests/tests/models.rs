//! The model plugins, run inside the sandbox, reproduce the reference
//! libraries' predictions (XGBoost's and scikit-learn's) to 1e-5 on the
//! committed fixtures — the same check the evaluators pass natively, now
//! through the component boundary, WASI bundle mount and all.

use airlock_gate::data::{self, read_csv};
use airlock_runtime::sandbox::{Bundle, CallOptions};
use airlock_tests::{fixture, plugin, sandbox};

fn expected(name: &str) -> (usize, Vec<Vec<f64>>, String) {
    let text = std::fs::read_to_string(fixture(&format!("models/{name}"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let width = v["width"].as_u64().unwrap() as usize;
    let rows = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r {
            serde_json::Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
            x => vec![x.as_f64().unwrap()],
        })
        .collect();
    (width, rows, v["dataset"].as_str().unwrap().to_string())
}

fn check(plugin_lib: &str, model_file: &str, expected_file: &str, positional: bool) {
    let sb = sandbox();
    let p = sb.load_file(&plugin(plugin_lib)).unwrap();
    let options = CallOptions {
        bundle: Some(Bundle::from_path(&fixture(&format!("models/{model_file}"))).unwrap()),
        ..CallOptions::default()
    };
    let meta = p.metadata(&options).unwrap().value;
    let (width, want, dataset) = expected(expected_file);
    let ds = read_csv(&fixture(&dataset), Some(&meta.inputs), Some("target")).unwrap();
    let (batch, how) = data::model_inputs(&ds.batch, &meta.inputs, &["target"]).unwrap();
    assert_eq!(
        matches!(how, data::InputMatch::ByPosition { .. }),
        positional,
        "{expected_file}"
    );
    let got = p.predict(&options, &batch).unwrap().value;
    assert_eq!(got.width as usize, width, "{expected_file}");
    assert_eq!(got.values.len(), want.len() * width, "{expected_file}");
    let mut worst = 0.0f64;
    for (i, row) in want.iter().enumerate() {
        for (k, w) in row.iter().enumerate() {
            let g = got.values[i * width + k];
            worst = worst.max((g - w).abs());
            assert!(
                (g - w).abs() <= 1e-5,
                "{expected_file}: row {i} class {k}: got {g}, want {w}"
            );
        }
    }
    assert!(worst.is_finite());
}

#[test]
fn xgboost_plugin_matches_xgboost_in_the_sandbox() {
    for (model, exp, positional) in [
        (
            "xgb_binary_3.2.0.json",
            "expected_xgb_binary_3.2.0_breast_cancer_eval.json",
            false,
        ),
        (
            "xgb_binary_3.2.0.json",
            "expected_xgb_binary_3.2.0_breast_cancer_eval_missing.json",
            false,
        ),
        (
            "xgb_binary_2.1.4.json",
            "expected_xgb_binary_2.1.4_breast_cancer_eval_missing.json",
            false,
        ),
        (
            "xgb_multiclass_3.2.0.json",
            "expected_xgb_multiclass_3.2.0_wine_eval.json",
            false,
        ),
        (
            "xgb_multiclass_2.1.4.json",
            "expected_xgb_multiclass_2.1.4_wine_eval.json",
            false,
        ),
        (
            "xgb_regression_3.2.0.json",
            "expected_xgb_regression_3.2.0_diabetes_eval.json",
            false,
        ),
        (
            "xgb_regression_2.1.4.json",
            "expected_xgb_regression_2.1.4_diabetes_eval.json",
            false,
        ),
        (
            "xgb_binary_positional_3.2.0.json",
            "expected_xgb_binary_positional_3.2.0_breast_cancer_eval_missing.json",
            true,
        ),
    ] {
        check("airlock_model_xgboost", model, exp, positional);
    }
}

#[test]
fn linear_plugin_matches_scikit_learn_in_the_sandbox() {
    for (model, exp) in [
        (
            "linear_binary.json",
            "expected_linear_binary_breast_cancer_eval.json",
        ),
        (
            "linear_binary_scaled.json",
            "expected_linear_binary_scaled_breast_cancer_eval.json",
        ),
        (
            "linear_multiclass.json",
            "expected_linear_multiclass_wine_eval.json",
        ),
        (
            "linear_multiclass_scaled.json",
            "expected_linear_multiclass_scaled_wine_eval.json",
        ),
        (
            "linear_regression.json",
            "expected_linear_regression_diabetes_eval.json",
        ),
        (
            "linear_regression_scaled.json",
            "expected_linear_regression_scaled_diabetes_eval.json",
        ),
    ] {
        check("airlock_model_linear", model, exp, false);
    }
}

#[test]
fn a_model_without_its_bundle_fails_with_a_guest_error_not_a_crash() {
    let sb = sandbox();
    let p = sb.load_file(&plugin("airlock_model_xgboost")).unwrap();
    let batch = airlock_core::types::Batch {
        rows: 0,
        columns: vec![],
    };
    let e = p.predict(&CallOptions::default(), &batch).unwrap_err();
    assert_eq!(e.kind, airlock_core::FailureKind::GuestError, "{e}");
    assert_eq!(e.guest_code.as_deref(), Some("bad-bundle"));
}

#[test]
fn a_corrupt_bundle_is_refused_inside_the_sandbox() {
    let sb = sandbox();
    let p = sb.load_file(&plugin("airlock_model_xgboost")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), b"{\"learner\": 5").unwrap();
    let options = CallOptions {
        bundle: Some(Bundle::from_path(dir.path()).unwrap()),
        ..CallOptions::default()
    };
    let batch = airlock_core::types::Batch {
        rows: 0,
        columns: vec![],
    };
    let e = p.predict(&options, &batch).unwrap_err();
    assert_eq!(e.kind, airlock_core::FailureKind::GuestError, "{e}");
    assert_eq!(e.guest_code.as_deref(), Some("bad-bundle"), "{e}");
}

#[test]
fn a_bundle_is_a_snapshot_of_exactly_what_was_digested() {
    let sb = sandbox();
    let p = sb.load_file(&plugin("airlock_model_xgboost")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(fixture("models/xgb_binary_3.2.0.json")).unwrap();
    std::fs::write(dir.path().join("model.json"), &model).unwrap();
    let before = airlock_runtime::bundle::digest_path(dir.path(), &Default::default()).unwrap();
    let bundle = Bundle::from_path(dir.path()).unwrap();
    assert_eq!(bundle.digest, before);
    // Swapping the model after the bundle was opened changes nothing the
    // plugin sees: it reads the snapshot the digest names.
    std::fs::write(dir.path().join("model.json"), b"{}").unwrap();
    let options = CallOptions {
        bundle: Some(bundle),
        ..CallOptions::default()
    };
    let meta = p.metadata(&options).unwrap().value;
    assert_eq!(meta.inputs.len(), 30);
    let ds = read_csv(
        &fixture("data/breast_cancer_eval.csv"),
        Some(&meta.inputs),
        Some("target"),
    )
    .unwrap();
    let got = p
        .predict(
            &options,
            &data::model_inputs(&ds.batch, &meta.inputs, &["target"])
                .unwrap()
                .0,
        )
        .unwrap();
    let (_, want, _) = expected("expected_xgb_binary_3.2.0_breast_cancer_eval.json");
    assert!((got.value.values[1] - want[0][1]).abs() < 1e-5);
}
