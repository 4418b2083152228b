//! What a model promises about itself, checked by the host before anyone
//! believes it.
//!
//! A model plugin is untrusted code: it may declare one output shape and
//! return another, emit NaN or unnormalised "probabilities" that make a
//! metric look perfect (a row `[1, 1 - 1e-9]` scores a log loss of 0), or
//! declare classes that disagree with what it returns. Validators and
//! clients must never see such output: every prediction is checked here
//! against the metadata the model declared, and a violation is the model's
//! failure (`invalid_output`), naming the row and the rule. Pure, so each
//! rule is tested directly.

use crate::types::{ModelMetadata, Predictions, Task};
use std::collections::HashSet;

/// How strictly outputs are checked; part of the operator's configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputRules {
    /// How far a row of class probabilities may sum from 1.
    pub probability_sum_tolerance: f64,
}

impl Default for OutputRules {
    fn default() -> Self {
        OutputRules {
            // f64 sums of a few hundred softmax terms stay within ~1e-13 of
            // 1; 1e-6 admits f32-computed models and nothing that matters.
            probability_sum_tolerance: 1e-6,
        }
    }
}

/// The longest name, version, feature name or class label accepted.
pub const MAX_NAME_BYTES: usize = 256;
/// The most inputs a model may declare.
pub const MAX_INPUTS: usize = 100_000;
/// The most classes a classifier may declare.
pub const MAX_CLASSES: usize = 100_000;

/// The number of values per row a model with `metadata` must return.
pub fn expected_width(metadata: &ModelMetadata) -> usize {
    match metadata.output.task {
        Task::Regression => 1,
        Task::BinaryClassification | Task::MulticlassClassification => {
            metadata.output.classes.len()
        }
    }
}

/// Checks that declared metadata is well-formed: unique, non-empty feature
/// names; for classification unique, non-empty classes (exactly two for a
/// binary model, at least two otherwise); no classes for regression.
pub fn check_metadata(m: &ModelMetadata) -> Result<(), String> {
    let name_ok = |what: &str, s: &str| -> Result<(), String> {
        if s.len() > MAX_NAME_BYTES {
            return Err(format!(
                "{what} is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
                s.len()
            ));
        }
        Ok(())
    };
    name_ok("the model name", &m.name)?;
    name_ok("the model version", &m.version)?;
    if m.inputs.len() > MAX_INPUTS {
        return Err(format!(
            "declares {} inputs; at most {MAX_INPUTS} are allowed",
            m.inputs.len()
        ));
    }
    let mut seen = HashSet::new();
    for (i, f) in m.inputs.iter().enumerate() {
        if f.name.is_empty() {
            return Err(format!("input {} has an empty name", i + 1));
        }
        name_ok(&format!("input {}'s name", i + 1), &f.name)?;
        if !seen.insert(f.name.as_str()) {
            return Err(format!("declares input `{}` twice", f.name.escape_debug()));
        }
    }
    let classes = &m.output.classes;
    match m.output.task {
        Task::Regression if !classes.is_empty() => {
            return Err(format!(
                "a regression model declares {} classes; it must declare none",
                classes.len()
            ));
        }
        Task::BinaryClassification if classes.len() != 2 => {
            return Err(format!(
                "a binary classifier must declare exactly 2 classes; it declares {}",
                classes.len()
            ));
        }
        Task::MulticlassClassification if classes.len() < 2 => {
            return Err(format!(
                "a multiclass classifier must declare at least 2 classes; it declares {}",
                classes.len()
            ));
        }
        _ => {}
    }
    if classes.len() > MAX_CLASSES {
        return Err(format!(
            "declares {} classes; at most {MAX_CLASSES} are allowed",
            classes.len()
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in classes.iter().enumerate() {
        if c.is_empty() {
            return Err(format!("class {} has an empty label", i + 1));
        }
        name_ok(&format!("class {}'s label", i + 1), c)?;
        if !seen.insert(c.as_str()) {
            return Err(format!("declares class `{}` twice", c.escape_debug()));
        }
    }
    Ok(())
}

/// Checks predictions for `rows` input rows against the declared metadata:
/// the declared width, `rows × width` values, finite values; for
/// classification each value in [0, 1] and each row summing to 1 within the
/// tolerance. Rows are numbered from 1 in messages.
pub fn check_predictions(
    m: &ModelMetadata,
    rows: u32,
    p: &Predictions,
    rules: &OutputRules,
) -> Result<(), String> {
    let width = expected_width(m);
    if p.width as usize != width {
        return Err(match m.output.task {
            Task::Regression => format!(
                "returned {} values per row; a regression model returns 1",
                p.width
            ),
            _ => format!(
                "returned {} values per row but declares {} classes (one probability per class)",
                p.width, width
            ),
        });
    }
    let expected_len = rows as usize * width;
    if p.values.len() != expected_len {
        return Err(format!(
            "returned {} values for {rows} rows of width {width}; expected {expected_len}",
            p.values.len()
        ));
    }
    let classification = m.output.task != Task::Regression;
    for (r, row) in p.values.chunks(width.max(1)).enumerate() {
        let row_no = r + 1;
        for (k, v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(if classification {
                    format!(
                        "row {row_no}: the probability of class {} is {v}; probabilities must be finite",
                        k + 1
                    )
                } else {
                    format!("row {row_no}: the prediction is {v}; predictions must be finite")
                });
            }
            if classification && !(0.0..=1.0).contains(v) {
                return Err(format!(
                    "row {row_no}: the probability of class {} is {v}, outside [0, 1]",
                    k + 1
                ));
            }
        }
        if classification {
            let sum: f64 = row.iter().sum();
            if (sum - 1.0).abs() > rules.probability_sum_tolerance {
                return Err(format!(
                    "row {row_no}: class probabilities sum to {sum:.12}, not 1 (tolerance {:e})",
                    rules.probability_sum_tolerance
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Feature, FeatureKind, OutputSchema};

    fn meta(task: Task, classes: &[&str], inputs: &[&str]) -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            version: "1".into(),
            inputs: inputs
                .iter()
                .map(|n| Feature {
                    name: n.to_string(),
                    kind: FeatureKind::Numeric,
                })
                .collect(),
            output: OutputSchema {
                task,
                classes: classes.iter().map(|c| c.to_string()).collect(),
            },
        }
    }

    fn preds(width: u32, values: Vec<f64>) -> Predictions {
        Predictions { width, values }
    }

    const R: OutputRules = OutputRules {
        probability_sum_tolerance: 1e-6,
    };

    #[test]
    fn well_formed_metadata_passes() {
        check_metadata(&meta(Task::BinaryClassification, &["0", "1"], &["a", "b"])).unwrap();
        check_metadata(&meta(Task::Regression, &[], &[])).unwrap();
        check_metadata(&meta(
            Task::MulticlassClassification,
            &["a", "b", "c"],
            &["x"],
        ))
        .unwrap();
    }

    #[test]
    fn malformed_metadata_is_named() {
        let e = check_metadata(&meta(Task::Regression, &[], &["a", "a"])).unwrap_err();
        assert_eq!(e, "declares input `a` twice");
        let e = check_metadata(&meta(Task::Regression, &[], &[""])).unwrap_err();
        assert_eq!(e, "input 1 has an empty name");
        let e =
            check_metadata(&meta(Task::BinaryClassification, &["0", "1", "2"], &[])).unwrap_err();
        assert_eq!(
            e,
            "a binary classifier must declare exactly 2 classes; it declares 3"
        );
        let e = check_metadata(&meta(Task::MulticlassClassification, &["a", "", "c"], &[]))
            .unwrap_err();
        assert_eq!(e, "class 2 has an empty label");
        let e = check_metadata(&meta(Task::MulticlassClassification, &["a", "b", "a"], &[]))
            .unwrap_err();
        assert_eq!(e, "declares class `a` twice");
        let e = check_metadata(&meta(Task::Regression, &["a"], &[])).unwrap_err();
        assert_eq!(
            e,
            "a regression model declares 1 classes; it must declare none"
        );
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = check_metadata(&meta(Task::Regression, &[], &[&long])).unwrap_err();
        assert!(e.starts_with("input 1's name is 257 bytes long"), "{e}");
    }

    #[test]
    fn good_predictions_pass() {
        let b = meta(Task::BinaryClassification, &["0", "1"], &["a"]);
        check_predictions(&b, 2, &preds(2, vec![0.25, 0.75, 1.0, 0.0]), &R).unwrap();
        let r = meta(Task::Regression, &[], &["a"]);
        check_predictions(&r, 3, &preds(1, vec![-1e300, 0.0, 7.5]), &R).unwrap();
        check_predictions(&r, 0, &preds(1, vec![]), &R).unwrap();
    }

    #[test]
    fn nan_probabilities_are_refused_naming_the_row() {
        let b = meta(Task::BinaryClassification, &["0", "1"], &["a"]);
        let e = check_predictions(&b, 2, &preds(2, vec![0.5, 0.5, f64::NAN, f64::NAN]), &R)
            .unwrap_err();
        assert_eq!(
            e,
            "row 2: the probability of class 1 is NaN; probabilities must be finite"
        );
        let r = meta(Task::Regression, &[], &["a"]);
        let e = check_predictions(&r, 1, &preds(1, vec![f64::INFINITY]), &R).unwrap_err();
        assert_eq!(
            e,
            "row 1: the prediction is inf; predictions must be finite"
        );
    }

    #[test]
    fn rows_that_do_not_sum_to_one_are_refused() {
        let b = meta(Task::BinaryClassification, &["0", "1"], &["a"]);
        let e = check_predictions(&b, 1, &preds(2, vec![1.0, 1.0 - 1e-9]), &R).unwrap_err();
        assert!(
            e.starts_with("row 1: class probabilities sum to 1.999999999"),
            "{e}"
        );
        let e = check_predictions(&b, 1, &preds(2, vec![1.5, -0.5]), &R).unwrap_err();
        assert_eq!(
            e,
            "row 1: the probability of class 1 is 1.5, outside [0, 1]"
        );
        // Within tolerance is fine.
        check_predictions(&b, 1, &preds(2, vec![0.3, 0.7 + 1e-9]), &R).unwrap();
    }

    #[test]
    fn width_must_match_the_declared_classes() {
        let b = meta(Task::BinaryClassification, &["0", "1"], &["a"]);
        let e = check_predictions(&b, 1, &preds(3, vec![0.2, 0.3, 0.5]), &R).unwrap_err();
        assert_eq!(
            e,
            "returned 3 values per row but declares 2 classes (one probability per class)"
        );
        let r = meta(Task::Regression, &[], &[]);
        let e = check_predictions(&r, 1, &preds(2, vec![0.2, 0.8]), &R).unwrap_err();
        assert_eq!(e, "returned 2 values per row; a regression model returns 1");
    }

    #[test]
    fn value_count_must_be_rows_times_width() {
        let b = meta(Task::BinaryClassification, &["0", "1"], &["a"]);
        let e = check_predictions(&b, 2, &preds(2, vec![0.5, 0.5, 0.5]), &R).unwrap_err();
        assert_eq!(e, "returned 3 values for 2 rows of width 2; expected 4");
    }
}
