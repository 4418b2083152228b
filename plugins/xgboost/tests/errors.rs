//! Hostile and malformed bundles: each must be refused with a precise error,
//! never a panic or an endless loop.
//!
//! Why: a model bundle is untrusted input that the plugin parses inside the
//! sandbox; a crash there would be a denial of service and a loop would burn
//! the fuel budget. Every test starts from a small valid model and breaks one
//! thing, so a failure points at exactly one check.

use airlock_model_xgboost::{Ensemble, ModelError, Task};
use serde_json::{Value, json};

/// A valid two-tree binary model over features `a`, `b`.
fn valid() -> Value {
    let tree = |id: u32| {
        json!({
            "id": id,
            "left_children": [1, -1, -1],
            "right_children": [2, -1, -1],
            "split_indices": [id, 0, 0],
            "split_conditions": [0.5, -1.0, 1.0],
            "default_left": [1, 0, 0],
            "base_weights": [0.0, -1.0, 1.0],
            "split_type": [0, 0, 0],
            "tree_param": {"num_nodes": "3", "num_feature": "2", "num_deleted": "0", "size_leaf_vector": "1"}
        })
    };
    json!({
        "version": [3, 2, 0],
        "learner": {
            "feature_names": ["a", "b"],
            "feature_types": ["float", "float"],
            "learner_model_param": {"base_score": "[5E-1]", "num_class": "0", "num_feature": "2", "num_target": "1"},
            "objective": {"name": "binary:logistic"},
            "gradient_booster": {
                "name": "gbtree",
                "model": {
                    "gbtree_model_param": {"num_trees": "2", "num_parallel_tree": "1"},
                    "tree_info": [0, 0],
                    "trees": [tree(0), tree(1)]
                }
            }
        }
    })
}

fn load(v: &Value) -> Result<Ensemble, ModelError> {
    Ensemble::from_json(&serde_json::to_vec(v).unwrap())
}

fn tree0(v: &mut Value) -> &mut Value {
    &mut v["learner"]["gradient_booster"]["model"]["trees"][0]
}

#[test]
fn the_valid_model_predicts_by_hand() {
    let m = load(&valid()).unwrap();
    assert_eq!(m.task(), Task::BinaryClassification);
    // Row (0, 0): both trees go left (0 < 0.5): margin 0 - 1 - 1 = -2.
    // Row (NaN, 1): tree 0 defaults left (-1), tree 1 goes right (+1): margin 0.
    // Row (0.5, 0.5): 0.5 < 0.5 is false, both right: margin +2.
    let p = m.predict(&[0.0, 0.0, f64::NAN, 1.0, 0.5, 0.5], 2).unwrap();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    for (got, margin) in p.chunks_exact(2).zip([-2.0, 0.0, 2.0]) {
        assert!(
            (got[1] - sig(margin)).abs() < 1e-6,
            "{got:?} vs margin {margin}"
        );
        assert!((got[0] + got[1] - 1.0).abs() < 1e-12);
    }
}

#[test]
fn base_score_is_a_probability_for_logistic_and_a_margin_for_regression() {
    let mut v = valid();
    v["learner"]["learner_model_param"]["base_score"] = json!("8E-1");
    let p = load(&v).unwrap().predict(&[0.5, 0.5], 2).unwrap();
    let margin = (0.8f64 / 0.2).ln() + 2.0;
    assert!((p[1] - 1.0 / (1.0 + (-margin).exp())).abs() < 1e-6);

    v["learner"]["objective"]["name"] = json!("reg:squarederror");
    v["learner"]["learner_model_param"]["base_score"] = json!("1.5E2");
    let m = load(&v).unwrap();
    assert_eq!(m.task(), Task::Regression);
    assert_eq!(m.predict(&[0.5, 0.5], 2).unwrap(), vec![152.0]);
}

#[test]
fn malformed_json_is_refused() {
    assert!(matches!(
        Ensemble::from_json(b"{not json"),
        Err(ModelError::Malformed(_))
    ));
    assert!(matches!(
        Ensemble::from_json(b""),
        Err(ModelError::Malformed(_))
    ));
    let mut v = valid();
    v["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"] = json!("nope");
    assert!(matches!(load(&v), Err(ModelError::Malformed(_))));
}

#[test]
fn missing_base_score_is_named() {
    let mut v = valid();
    v["learner"]["learner_model_param"]
        .as_object_mut()
        .unwrap()
        .remove("base_score");
    let err = load(&v).unwrap_err();
    assert_eq!(
        err,
        ModelError::MissingField("learner.learner_model_param.base_score".into())
    );
    assert!(err.to_string().contains("base_score"));
}

#[test]
fn other_missing_fields_are_named() {
    for (path, field) in [
        (vec!["learner"], "learner"),
        (vec!["learner", "objective"], "learner.objective"),
        (
            vec!["learner", "gradient_booster", "model", "trees"],
            "learner.gradient_booster.model.trees",
        ),
    ] {
        let mut v = valid();
        let (last, parents) = path.split_last().unwrap();
        let mut node = &mut v;
        for p in parents {
            node = &mut node[*p];
        }
        node.as_object_mut().unwrap().remove(*last);
        assert_eq!(
            load(&v).unwrap_err(),
            ModelError::MissingField(field.into())
        );
    }
    let mut v = valid();
    tree0(&mut v)
        .as_object_mut()
        .unwrap()
        .remove("default_left");
    assert!(
        matches!(load(&v), Err(ModelError::MissingField(f)) if f.ends_with("trees[0].default_left"))
    );
}

#[test]
fn bad_base_score_values_are_refused() {
    for bad in ["abc", "[0.5", "[0.5,0.5]", "1.5", "0", "inf", "[]"] {
        let mut v = valid();
        v["learner"]["learner_model_param"]["base_score"] = json!(bad);
        assert!(
            matches!(load(&v), Err(ModelError::InvalidField { .. })),
            "base_score {bad:?} was accepted"
        );
    }
}

#[test]
fn wrong_array_lengths_are_refused() {
    for field in [
        "right_children",
        "split_indices",
        "split_conditions",
        "default_left",
        "base_weights",
    ] {
        let mut v = valid();
        tree0(&mut v)[field].as_array_mut().unwrap().pop();
        assert_eq!(
            load(&v).unwrap_err(),
            ModelError::LengthMismatch {
                tree: 0,
                field,
                expected: 3,
                found: 2
            },
            "{field}"
        );
    }
    let mut v = valid();
    tree0(&mut v)["tree_param"]["num_nodes"] = json!("5");
    assert!(matches!(
        load(&v),
        Err(ModelError::LengthMismatch {
            field: "tree_param.num_nodes",
            ..
        })
    ));
    let mut v = valid();
    v["learner"]["gradient_booster"]["model"]["tree_info"] = json!([0]);
    assert!(matches!(load(&v), Err(ModelError::InvalidField { .. })));
    let mut v = valid();
    v["learner"]["feature_names"] = json!(["a"]);
    assert!(matches!(load(&v), Err(ModelError::InvalidField { .. })));
}

#[test]
fn out_of_range_children_are_refused() {
    for (left, right) in [
        (json!([3, -1, -1]), json!([2, -1, -1])),
        (json!([1, -1, -1]), json!([-7, -1, -1])),
    ] {
        let mut v = valid();
        tree0(&mut v)["left_children"] = left;
        tree0(&mut v)["right_children"] = right;
        let err = load(&v).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::BadTree {
                    tree: 0,
                    node: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("out of range"), "{err}");
    }
    let mut v = valid();
    tree0(&mut v)["right_children"] = json!([-1, -1, -1]);
    assert!(matches!(load(&v), Err(ModelError::BadTree { node: 0, .. })));
}

#[test]
fn cycles_and_shared_children_are_refused() {
    // Node 1 points back at the root: an evaluator without checks would loop forever.
    let mut v = valid();
    tree0(&mut v)["left_children"] = json!([1, 0, -1]);
    tree0(&mut v)["right_children"] = json!([2, 2, -1]);
    let err = load(&v).unwrap_err();
    assert!(matches!(err, ModelError::BadTree { tree: 0, .. }), "{err}");
    assert!(err.to_string().contains("reached twice"), "{err}");

    // A self-loop at the root.
    let mut v = valid();
    tree0(&mut v)["left_children"] = json!([0, -1, -1]);
    assert!(matches!(load(&v), Err(ModelError::BadTree { .. })));

    // Both children the same node (a DAG, not a tree).
    let mut v = valid();
    tree0(&mut v)["right_children"] = json!([1, -1, -1]);
    assert!(matches!(load(&v), Err(ModelError::BadTree { .. })));
}

#[test]
fn out_of_range_features_and_groups_are_refused() {
    let mut v = valid();
    tree0(&mut v)["split_indices"] = json!([2, 0, 0]);
    assert!(
        load(&v)
            .unwrap_err()
            .to_string()
            .contains("split feature 2")
    );
    let mut v = valid();
    v["learner"]["gradient_booster"]["model"]["tree_info"] = json!([0, 1]);
    assert!(matches!(load(&v), Err(ModelError::InvalidField { .. })));
}

#[test]
fn unsupported_objectives_are_named() {
    for obj in [
        "rank:pairwise",
        "survival:cox",
        "reg:gamma",
        "count:poisson",
        "",
    ] {
        let mut v = valid();
        v["learner"]["objective"]["name"] = json!(obj);
        let err = load(&v).unwrap_err();
        assert_eq!(err, ModelError::UnsupportedObjective(obj.into()));
        assert!(err.to_string().contains("unsupported XGBoost objective"));
    }
}

#[test]
fn unsupported_model_features_are_named() {
    let mut v = valid();
    tree0(&mut v)["split_type"] = json!([1, 0, 0]);
    assert!(load(&v).unwrap_err().to_string().contains("categorical"));
    let mut v = valid();
    v["learner"]["gradient_booster"]["name"] = json!("gblinear");
    assert!(matches!(load(&v), Err(ModelError::Unsupported(_))));
    let mut v = valid();
    tree0(&mut v)["tree_param"]["size_leaf_vector"] = json!("3");
    assert!(matches!(load(&v), Err(ModelError::Unsupported(_))));
}

#[test]
fn multiclass_needs_a_consistent_class_count() {
    let mut v = valid();
    v["learner"]["objective"]["name"] = json!("multi:softprob");
    // num_class 0 with a softmax objective.
    assert!(matches!(load(&v), Err(ModelError::InvalidField { .. })));
    v["learner"]["learner_model_param"]["num_class"] = json!("2");
    v["learner"]["gradient_booster"]["model"]["tree_info"] = json!([0, 1]);
    v["learner"]["learner_model_param"]["base_score"] = json!("[0.1,0.2,0.3]");
    assert!(matches!(load(&v), Err(ModelError::InvalidField { .. })));
    v["learner"]["learner_model_param"]["base_score"] = json!("[0.1,-0.2]");
    let m = load(&v).unwrap();
    let p = m.predict(&[0.0, 0.0], 2).unwrap();
    assert_eq!(p.len(), 2);
    // Margins: class 0 = 0.1 - 1, class 1 = -0.2 - 1.
    let (a, b) = ((0.1f64 - 1.0).exp(), (-0.2f64 - 1.0).exp());
    assert!((p[0] - a / (a + b)).abs() < 1e-6);
}

#[test]
fn bad_input_shapes_are_errors_not_panics() {
    let m = load(&valid()).unwrap();
    assert!(matches!(
        m.predict(&[1.0, 2.0, 3.0], 2),
        Err(ModelError::BadInput(_))
    ));
    assert!(matches!(m.predict(&[1.0], 1), Err(ModelError::BadInput(_))));
    assert!(matches!(m.predict(&[], 0), Err(ModelError::BadInput(_))));
    assert_eq!(m.predict(&[], 2).unwrap(), Vec::<f64>::new());
    // Extra columns beyond the model's features are ignored.
    assert_eq!(
        m.predict(&[0.0, 0.0, 9.0], 3).unwrap(),
        m.predict(&[0.0, 0.0], 2).unwrap()
    );
    // The same by columns: too few columns, or columns of unequal length,
    // are named; an extra column is ignored.
    let e = m.predict_columns(&[&[1.0]]).unwrap_err().to_string();
    assert!(e.contains("1 columns but the model needs 2"), "{e}");
    let e = m
        .predict_columns(&[&[1.0, 2.0], &[1.0]])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column 1 has 1 values but column 0 has 2"),
        "{e}"
    );
    assert_eq!(m.predict_columns(&[&[], &[]]).unwrap(), Vec::<f64>::new());
    assert_eq!(
        m.predict_columns(&[&[0.0], &[0.0], &[9.0]]).unwrap(),
        m.predict(&[0.0, 0.0], 2).unwrap()
    );
}

#[test]
fn deep_nesting_and_huge_numbers_do_not_panic() {
    let deep = "[".repeat(100_000);
    let e = Ensemble::from_json(deep.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("recursion limit exceeded"), "{e}");
    let mut v = valid();
    tree0(&mut v)["split_indices"] = json!([u64::MAX, 0, 0]);
    let e = load(&v).unwrap_err().to_string();
    assert!(e.contains("integer `18446744073709551615`"), "{e}");
    let mut v = valid();
    tree0(&mut v)["split_conditions"] = json!([0.5, 1e300, 1.0]);
    assert!(
        load(&v).is_err(),
        "a leaf that overflows f32 must be refused"
    );
}
