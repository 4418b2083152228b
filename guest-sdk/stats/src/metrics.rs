//! Classification and regression metrics, numerically matching `sklearn.metrics`.
//!
//! Gates compare a candidate's score against thresholds that people set while
//! looking at scikit-learn output, so every function here reproduces the
//! scikit-learn 1.9 definition (including its conventions for ties and for
//! division by zero), verified to 1e-9 by `tests/fixtures.rs`.
//!
//! Conventions:
//! - class labels are `f64` values holding class indices `0, 1, 2, …`
//!   (the shape airlock's columnar batches carry them in);
//! - probability outputs are a row-major matrix viewed through [`Probabilities`];
//! - every function rejects empty input, mismatched lengths and NaN with a
//!   [`StatsError`] instead of returning NaN.

use crate::StatsError;
use std::collections::BTreeMap;

/// How per-class precision / recall / F1 are combined into one number.
///
/// Mirrors scikit-learn's `average=` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Average {
    /// Only the positive class `1` of a binary problem (sklearn's default).
    Binary,
    /// Unweighted mean over the classes seen in labels or predictions.
    Macro,
    /// Mean weighted by each class's true support.
    Weighted,
    /// Global counts of true/false positives over all classes.
    Micro,
}

/// A borrowed row-major matrix of class probabilities (one row per sample).
///
/// Model plugins return probabilities flattened; this view gives them a shape
/// without copying.
#[derive(Debug, Clone, Copy)]
pub struct Probabilities<'a> {
    width: usize,
    values: &'a [f64],
}

impl<'a> Probabilities<'a> {
    /// Wraps `values` as rows of `width` columns, checking shape, finiteness and range.
    pub fn new(width: usize, values: &'a [f64]) -> Result<Self, StatsError> {
        if width == 0 || !values.len().is_multiple_of(width) {
            return Err(StatsError::BadShape {
                width,
                len: values.len(),
            });
        }
        if values.is_empty() {
            return Err(StatsError::Empty {
                what: "probabilities",
            });
        }
        for (flat, &value) in values.iter().enumerate() {
            let index = flat / width;
            if value.is_nan() {
                return Err(StatsError::NotFinite {
                    what: "probabilities",
                    index,
                });
            }
            if !(0.0..=1.0).contains(&value) {
                return Err(StatsError::ProbabilityOutOfRange { index, value });
            }
        }
        Ok(Self { width, values })
    }

    /// Number of classes (columns).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of samples (rows).
    pub fn rows(&self) -> usize {
        self.values.len() / self.width
    }

    /// Row `i` (one sample's class probabilities).
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    /// Column `c` copied out (one class's scores across samples).
    pub fn column(&self, c: usize) -> Vec<f64> {
        (0..self.rows())
            .map(|i| self.values[i * self.width + c])
            .collect()
    }

    /// Predicted class per row: the index of the largest probability, the first
    /// one on ties (as `numpy.argmax`, which `predict` uses).
    pub fn argmax(&self) -> Vec<f64> {
        (0..self.rows())
            .map(|i| {
                let row = self.row(i);
                let mut best = 0;
                for (c, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = c;
                    }
                }
                best as f64
            })
            .collect()
    }
}

fn check_same_len(
    left: &'static str,
    a: usize,
    right: &'static str,
    b: usize,
) -> Result<(), StatsError> {
    if a != b {
        return Err(StatsError::LengthMismatch {
            left,
            left_len: a,
            right,
            right_len: b,
        });
    }
    if a == 0 {
        return Err(StatsError::Empty { what: left });
    }
    Ok(())
}

fn check_finite(what: &'static str, xs: &[f64]) -> Result<(), StatsError> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(StatsError::NotFinite { what, index }),
        None => Ok(()),
    }
}

fn class_index(what: &'static str, index: usize, value: f64) -> Result<u64, StatsError> {
    if !value.is_finite() {
        return Err(StatsError::NotFinite { what, index });
    }
    if value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
        return Err(StatsError::InvalidLabel { what, index, value });
    }
    Ok(value as u64)
}

fn class_indices(what: &'static str, xs: &[f64]) -> Result<Vec<u64>, StatsError> {
    xs.iter()
        .enumerate()
        .map(|(i, &v)| class_index(what, i, v))
        .collect()
}

/// Fraction of samples whose predicted class equals the label
/// (`sklearn.metrics.accuracy_score`).
pub fn accuracy(labels: &[f64], predicted: &[f64]) -> Result<f64, StatsError> {
    check_same_len("labels", labels.len(), "predicted", predicted.len())?;
    let y = class_indices("labels", labels)?;
    let p = class_indices("predicted", predicted)?;
    let hits = y.iter().zip(&p).filter(|(a, b)| a == b).count();
    Ok(hits as f64 / y.len() as f64)
}

/// Precision, recall and F1 computed together (they share the same counts).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PrecisionRecallF1 {
    /// tp / (tp + fp), 0 when nothing was predicted positive.
    pub precision: f64,
    /// tp / (tp + fn), 0 when there are no positives.
    pub recall: f64,
    /// 2·tp / (2·tp + fp + fn), 0 when all three counts are 0.
    pub f1: f64,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

fn ratio(num: u64, den: u64) -> f64 {
    // sklearn's zero_division="warn" behaves as 0.
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn scores(c: Counts) -> PrecisionRecallF1 {
    PrecisionRecallF1 {
        precision: ratio(c.tp, c.tp + c.fp),
        recall: ratio(c.tp, c.tp + c.fn_),
        f1: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn_),
    }
}

/// Precision, recall and F1 as `sklearn.metrics.precision_recall_fscore_support`
/// with the given `average` and the default `zero_division` (0 for undefined ratios).
///
/// `Average::Binary` scores class `1` and rejects labels other than 0 and 1,
/// like scikit-learn. Macro/weighted average over the sorted union of classes
/// seen in `labels` and `predicted`.
pub fn precision_recall_f1(
    labels: &[f64],
    predicted: &[f64],
    average: Average,
) -> Result<PrecisionRecallF1, StatsError> {
    check_same_len("labels", labels.len(), "predicted", predicted.len())?;
    let y = class_indices("labels", labels)?;
    let p = class_indices("predicted", predicted)?;
    let mut per_class: BTreeMap<u64, (Counts, u64)> = BTreeMap::new();
    for (&t, &q) in y.iter().zip(&p) {
        per_class.entry(t).or_default().1 += 1;
        per_class.entry(q).or_default();
        if t == q {
            per_class.get_mut(&t).unwrap().0.tp += 1;
        } else {
            per_class.get_mut(&q).unwrap().0.fp += 1;
            per_class.get_mut(&t).unwrap().0.fn_ += 1;
        }
    }
    match average {
        Average::Binary => {
            if let Some((&bad, _)) = per_class.iter().find(|(c, _)| **c > 1) {
                let (what, index) = match y.iter().position(|&v| v == bad) {
                    Some(i) => ("labels", i),
                    None => ("predicted", p.iter().position(|&v| v == bad).unwrap_or(0)),
                };
                let value = bad as f64;
                return Err(StatsError::InvalidLabel { what, index, value });
            }
            let c = per_class.get(&1).map(|e| e.0).unwrap_or_default();
            Ok(scores(c))
        }
        Average::Micro => {
            let mut total = Counts::default();
            for (c, _) in per_class.values() {
                total.tp += c.tp;
                total.fp += c.fp;
                total.fn_ += c.fn_;
            }
            Ok(scores(total))
        }
        Average::Macro | Average::Weighted => {
            let (mut pr, mut re, mut f1, mut wsum) = (0.0, 0.0, 0.0, 0.0);
            for (c, support) in per_class.values() {
                let w = if average == Average::Macro {
                    1.0
                } else {
                    *support as f64
                };
                let s = scores(*c);
                pr += w * s.precision;
                re += w * s.recall;
                f1 += w * s.f1;
                wsum += w;
            }
            if wsum == 0.0 {
                return Ok(PrecisionRecallF1 {
                    precision: 0.0,
                    recall: 0.0,
                    f1: 0.0,
                });
            }
            Ok(PrecisionRecallF1 {
                precision: pr / wsum,
                recall: re / wsum,
                f1: f1 / wsum,
            })
        }
    }
}

/// Area under the ROC curve for a binary problem (`sklearn.metrics.roc_auc_score`).
///
/// `labels` are 0/1, `scores` any finite values where larger means "more
/// likely 1". Tied scores form one ROC point, so the area is the trapezoid
/// over the curve — the same as counting tied pairs as half.
pub fn roc_auc_binary(labels: &[f64], scores: &[f64]) -> Result<f64, StatsError> {
    check_same_len("labels", labels.len(), "scores", scores.len())?;
    check_finite("scores", scores)?;
    let y = class_indices("labels", labels)?;
    if let Some(index) = y.iter().position(|&v| v > 1) {
        return Err(StatsError::InvalidLabel {
            what: "labels",
            index,
            value: labels[index],
        });
    }
    auc_from_bool(&y.iter().map(|&v| v == 1).collect::<Vec<_>>(), scores)
}

fn auc_from_bool(positive: &[bool], scores: &[f64]) -> Result<f64, StatsError> {
    let n_pos = positive.iter().filter(|&&b| b).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(StatsError::TooFewClasses {
            what: "labels (ROC AUC)",
            found: 1,
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    // Walk thresholds from high to low; each distinct score adds one ROC point.
    let (mut tp, mut fp) = (0u64, 0u64);
    let (mut prev_tp, mut prev_fp) = (0u64, 0u64);
    let mut area2 = 0.0f64; // twice the area, in units of (tp × fp) counts
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        area2 += (fp - prev_fp) as f64 * (tp + prev_tp) as f64;
        prev_tp = tp;
        prev_fp = fp;
    }
    Ok(area2 / 2.0 / (n_pos as f64 * n_neg as f64))
}

/// Multiclass ROC AUC, one-vs-rest, macro averaged
/// (`roc_auc_score(multi_class="ovr", average="macro")`).
///
/// Like scikit-learn, every class `0..width` must occur in `labels` and each
/// probability row must sum to 1 (within `sqrt(f64::EPSILON)` relative).
pub fn roc_auc_ovr_macro(labels: &[f64], probs: &Probabilities<'_>) -> Result<f64, StatsError> {
    check_same_len("labels", labels.len(), "probability rows", probs.rows())?;
    let y = class_indices("labels", labels)?;
    let width = probs.width();
    if width < 2 {
        return Err(StatsError::TooFewClasses {
            what: "probability columns",
            found: width,
        });
    }
    for (index, &v) in y.iter().enumerate() {
        if v as usize >= width {
            return Err(StatsError::InvalidLabel {
                what: "labels",
                index,
                value: labels[index],
            });
        }
    }
    let mut present = vec![false; width];
    for &v in &y {
        present[v as usize] = true;
    }
    let found = present.iter().filter(|&&b| b).count();
    if found != width {
        return Err(StatsError::TooFewClasses {
            what: "labels (every class must appear for OvR AUC)",
            found,
        });
    }
    for row in 0..probs.rows() {
        let sum: f64 = probs.row(row).iter().sum();
        // numpy.allclose(1, sum) with its default tolerances, as sklearn checks.
        if (sum - 1.0).abs() > 1e-8 + 1e-5 * sum.abs() {
            return Err(StatsError::RowsDoNotSumToOne { row, sum });
        }
    }
    let mut total = 0.0;
    for c in 0..width {
        let positive: Vec<bool> = y.iter().map(|&v| v as usize == c).collect();
        total += auc_from_bool(&positive, &probs.column(c))?;
    }
    Ok(total / width as f64)
}

/// Mean negative log-likelihood of the true class (`sklearn.metrics.log_loss`
/// with `labels=range(width)`).
///
/// Probabilities are clipped to `[ε, 1-ε]` with `ε = f64::EPSILON`, as
/// scikit-learn 1.9 does; rows are *not* renormalised (scikit-learn ≥ 1.5 only
/// warns when rows do not sum to one).
pub fn log_loss(labels: &[f64], probs: &Probabilities<'_>) -> Result<f64, StatsError> {
    check_same_len("labels", labels.len(), "probability rows", probs.rows())?;
    let y = class_indices("labels", labels)?;
    if probs.width() < 2 {
        return Err(StatsError::TooFewClasses {
            what: "probability columns",
            found: probs.width(),
        });
    }
    let eps = f64::EPSILON;
    let mut total = 0.0;
    for (i, &c) in y.iter().enumerate() {
        if c as usize >= probs.width() {
            return Err(StatsError::InvalidLabel {
                what: "labels",
                index: i,
                value: labels[i],
            });
        }
        let p = probs.row(i)[c as usize].clamp(eps, 1.0 - eps);
        total -= p.ln();
    }
    Ok(total / y.len() as f64)
}

/// Binary log loss from the probability of class 1 per sample
/// (`log_loss(labels, p1, labels=[0, 1])`).
pub fn log_loss_binary(labels: &[f64], p1: &[f64]) -> Result<f64, StatsError> {
    check_same_len("labels", labels.len(), "p1", p1.len())?;
    let y = class_indices("labels", labels)?;
    let eps = f64::EPSILON;
    let mut total = 0.0;
    for (i, (&c, &p)) in y.iter().zip(p1).enumerate() {
        if p.is_nan() {
            return Err(StatsError::NotFinite {
                what: "p1",
                index: i,
            });
        }
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::ProbabilityOutOfRange { index: i, value: p });
        }
        let q = match c {
            0 => 1.0 - p,
            1 => p,
            _ => {
                return Err(StatsError::InvalidLabel {
                    what: "labels",
                    index: i,
                    value: labels[i],
                });
            }
        };
        total -= q.clamp(eps, 1.0 - eps).ln();
    }
    Ok(total / y.len() as f64)
}

fn regression_inputs(targets: &[f64], predicted: &[f64]) -> Result<(), StatsError> {
    check_same_len("targets", targets.len(), "predicted", predicted.len())?;
    check_finite("targets", targets)?;
    check_finite("predicted", predicted)
}

/// Root mean squared error (`sklearn.metrics.root_mean_squared_error`).
pub fn rmse(targets: &[f64], predicted: &[f64]) -> Result<f64, StatsError> {
    regression_inputs(targets, predicted)?;
    let sse: f64 = targets
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p) * (t - p))
        .sum();
    Ok((sse / targets.len() as f64).sqrt())
}

/// Mean absolute error (`sklearn.metrics.mean_absolute_error`).
pub fn mae(targets: &[f64], predicted: &[f64]) -> Result<f64, StatsError> {
    regression_inputs(targets, predicted)?;
    let sae: f64 = targets
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).abs())
        .sum();
    Ok(sae / targets.len() as f64)
}

/// Coefficient of determination (`sklearn.metrics.r2_score`).
///
/// With constant targets scikit-learn's `force_finite=True` rule applies:
/// 1.0 for a perfect prediction, otherwise 0.0. Needs at least 2 samples.
pub fn r2(targets: &[f64], predicted: &[f64]) -> Result<f64, StatsError> {
    regression_inputs(targets, predicted)?;
    if targets.len() < 2 {
        return Err(StatsError::TooFewSamples {
            what: "R²",
            needed: 2,
            found: targets.len(),
        });
    }
    let mean = targets.iter().sum::<f64>() / targets.len() as f64;
    let ss_res: f64 = targets
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p) * (t - p))
        .sum();
    let ss_tot: f64 = targets.iter().map(|t| (t - mean) * (t - mean)).sum();
    if ss_tot == 0.0 {
        return Ok(if ss_res == 0.0 { 1.0 } else { 0.0 });
    }
    Ok(1.0 - ss_res / ss_tot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(
            accuracy(&[0.0, 1.0, 2.0, 1.0], &[0.0, 2.0, 2.0, 1.0]).unwrap(),
            0.75
        );
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(accuracy(&[], &[]), Err(StatsError::Empty { .. })));
        assert!(matches!(
            accuracy(&[0.0], &[0.0, 1.0]),
            Err(StatsError::LengthMismatch {
                left_len: 1,
                right_len: 2,
                ..
            })
        ));
        assert!(matches!(
            accuracy(&[f64::NAN], &[0.0]),
            Err(StatsError::NotFinite { .. })
        ));
        assert!(matches!(
            accuracy(&[0.5], &[0.0]),
            Err(StatsError::InvalidLabel { .. })
        ));
        assert!(matches!(
            Probabilities::new(2, &[0.5, 0.5, 0.5, 1.5]),
            Err(StatsError::ProbabilityOutOfRange { index: 1, .. })
        ));
        // Messages count data rows from 1, as people and the host's file
        // lines do.
        assert_eq!(
            Probabilities::new(2, &[0.5, 0.5, 0.5, 1.5])
                .unwrap_err()
                .to_string(),
            "a probability for data row 2 is 1.5, outside [0, 1]"
        );
        assert_eq!(
            accuracy(&[0.0, 0.0, 0.5], &[0.0, 0.0, 0.0])
                .unwrap_err()
                .to_string(),
            "labels at data row 3 is 0.5; class labels must be integers 0..number_of_classes"
        );
        assert!(matches!(
            Probabilities::new(2, &[0.5]),
            Err(StatsError::BadShape { .. })
        ));
        assert!(matches!(
            roc_auc_binary(&[1.0, 1.0], &[0.2, 0.3]),
            Err(StatsError::TooFewClasses { .. })
        ));
        assert!(matches!(
            precision_recall_f1(&[0.0, 2.0], &[0.0, 1.0], Average::Binary),
            Err(StatsError::InvalidLabel { .. })
        ));
        assert!(matches!(
            r2(&[1.0], &[1.0]),
            Err(StatsError::TooFewSamples { .. })
        ));
        let e = rmse(&[1.0, f64::INFINITY], &[1.0, 2.0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "targets at data row 2 is NaN or infinite; only finite values are allowed"
        );
    }

    #[test]
    fn zero_division_is_zero() {
        let s = precision_recall_f1(&[0.0, 0.0], &[0.0, 0.0], Average::Binary).unwrap();
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn auc_ties_count_half() {
        // One positive and one negative with the same score: AUC = 0.5.
        assert_eq!(roc_auc_binary(&[0.0, 1.0], &[0.4, 0.4]).unwrap(), 0.5);
        assert_eq!(roc_auc_binary(&[0.0, 1.0], &[0.1, 0.4]).unwrap(), 1.0);
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        let p = Probabilities::new(3, &[0.4, 0.4, 0.2, 0.1, 0.2, 0.7]).unwrap();
        assert_eq!(p.argmax(), vec![0.0, 2.0]);
    }

    #[test]
    fn r2_constant_targets() {
        assert_eq!(r2(&[2.0, 2.0], &[2.0, 2.0]).unwrap(), 1.0);
        assert_eq!(r2(&[2.0, 2.0], &[2.0, 3.0]).unwrap(), 0.0);
    }
}
