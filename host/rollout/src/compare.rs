//! Shadow comparison and delayed-label accuracy.
//!
//! Two ways to judge a candidate on live traffic. A *shadow* answers copies of
//! real requests without its answers being used; [`Agreement`] counts how often
//! it disagrees with stable. *Labels* arrive later (a loan repaid, a click
//! made); [`LabelBook`] remembers, per request id, which version answered and
//! what it predicted, so a label can be scored against the right version when
//! it comes. Only predictions are kept, never inputs, and the book is bounded:
//! the oldest requests are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use airlock_core::types::{Predictions, Task};
use serde::{Deserialize, Serialize};

/// Relative tolerance under which two regression values agree: `|a - b| <=
/// 1e-6 * max(1, |a|)`.
pub const REGRESSION_TOLERANCE: f64 = 1e-6;

fn same_value(a: f64, b: f64) -> bool {
    (a - b).abs() <= REGRESSION_TOLERANCE * a.abs().max(1.0)
}

/// Index of the largest score (the first on ties), or `None` if any is NaN.
fn argmax(scores: &[f64]) -> Option<usize> {
    if scores.is_empty() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    Some(best)
}

/// How often a shadow's answers differ from stable's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Rows compared.
    pub compared: u64,
    /// Rows where the two disagreed: a different top class, a regression
    /// value outside [`REGRESSION_TOLERANCE`], a NaN, or answers of different
    /// shapes.
    pub disagreed: u64,
    /// Sum of `|stable - shadow|` over every compared score.
    pub abs_diff_sum: f64,
    /// How many scores went into `abs_diff_sum`.
    pub scores: u64,
    /// Batches whose two answers had different shapes (all their rows count
    /// as disagreeing): a sign the shadow is not a drop-in replacement.
    pub mismatched: u64,
}

impl Agreement {
    /// Adds one batch answered by both versions. Classification rows disagree
    /// when the argmax differs; regression rows when `|a - b| > 1e-6 * max(1,
    /// |a|)` with `a` the stable value. The absolute difference is summed over
    /// every score.
    pub fn add(&mut self, task: Task, stable: &Predictions, shadow: &Predictions) {
        let width = stable.width as usize;
        let rows_of = |p: &Predictions| {
            if p.width == 0 {
                0
            } else {
                p.values.len() / p.width as usize
            }
        };
        let well_formed = |p: &Predictions| {
            p.width > 0
                && p.values.len().is_multiple_of(p.width as usize)
                && (task != Task::Regression || p.width == 1)
        };
        if stable.width != shadow.width
            || stable.values.len() != shadow.values.len()
            || !well_formed(stable)
        {
            self.mismatched += 1;
            let rows = rows_of(stable).max(rows_of(shadow)) as u64;
            self.compared += rows;
            self.disagreed += rows;
            return;
        }
        for (a, b) in stable
            .values
            .chunks_exact(width)
            .zip(shadow.values.chunks_exact(width))
        {
            self.compared += 1;
            let agree = match task {
                Task::Regression => same_value(a[0], b[0]),
                Task::BinaryClassification | Task::MulticlassClassification => {
                    matches!((argmax(a), argmax(b)), (Some(x), Some(y)) if x == y)
                }
            };
            if !agree {
                self.disagreed += 1;
            }
            for (x, y) in a.iter().zip(b) {
                let d = (x - y).abs();
                if d.is_finite() {
                    self.abs_diff_sum += d;
                    self.scores += 1;
                }
            }
        }
    }

    /// Share of compared rows that disagreed; `None` before any comparison.
    pub fn rate(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.disagreed as f64 / self.compared as f64)
    }

    /// Mean absolute difference per score; `None` before any comparison.
    pub fn mean_abs_diff(&self) -> Option<f64> {
        (self.scores > 0).then(|| self.abs_diff_sum / self.scores as f64)
    }
}

/// What a version predicted for one request, kept until its label arrives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// The predicted class index (classification).
    Class(u32),
    /// The predicted value (regression).
    Value(f64),
}

impl Recorded {
    /// One [`Recorded`] per row of a model's answer: the argmax class for
    /// classification (`None` for a row with a NaN), the value for regression.
    pub fn from_predictions(task: Task, p: &Predictions) -> Vec<Option<Recorded>> {
        if p.width == 0 {
            return Vec::new();
        }
        p.values
            .chunks_exact(p.width as usize)
            .map(|row| match task {
                Task::Regression => Some(Recorded::Value(row[0])),
                _ => argmax(row).map(|i| Recorded::Class(i as u32)),
            })
            .collect()
    }
}

/// A label scored against the prediction it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The version that made the prediction.
    pub version: String,
    /// Class: the label is the predicted class. Regression: the value is
    /// within [`REGRESSION_TOLERANCE`] of the label.
    pub correct: bool,
    /// Class: 0 when correct, else 1. Regression: `|label - value|`.
    pub abs_error: f64,
}

/// Why a label was not scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    /// The request id was never recorded (only one-row answers that the
    /// traffic split routed are), or was evicted to stay bounded.
    #[error(
        "unknown request id {0:?} (only one-row answers routed by the traffic split are scored, not ones forced by header; or it was evicted from the label book)"
    )]
    Unknown(String),
    /// The request already has a label.
    #[error("request id {0:?} already has a label")]
    Duplicate(String),
    /// The label cannot be compared with the prediction.
    #[error("bad label {label} for request id {request_id:?}: {reason}")]
    BadLabel {
        /// The request.
        request_id: String,
        /// The label given.
        label: f64,
        /// Why it is unusable.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    version: Arc<str>,
    prediction: Recorded,
    labelled: bool,
}

/// The label book's hash: multiply-rotate over 8-byte words (the shape of
/// rustc's `FxHasher`), several times cheaper than SipHash on a 32-byte id.
/// SipHash's keyed defence against chosen collisions is not needed here:
/// the only keys stored are the server's own random request ids, and a
/// caller's id in `/feedback` is only looked up.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in words.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A bounded FIFO map `request_id -> (version, prediction)`. It sits on
/// every monitored 1-row request, so an id is allocated once (shared by
/// the map and the queue) and version names are shared, not copied.
#[derive(Debug, Clone)]
pub struct LabelBook {
    capacity: usize,
    entries: HashMap<Arc<str>, Entry, BuildHasherDefault<IdHasher>>,
    order: VecDeque<Arc<str>>,
    /// The version names seen, shared by the entries (a handful).
    versions: Vec<Arc<str>>,
}

impl LabelBook {
    /// A book remembering at most `capacity` requests (0 remembers none).
    pub fn new(capacity: usize) -> Self {
        LabelBook {
            capacity,
            entries: HashMap::default(),
            order: VecDeque::new(),
            versions: Vec::new(),
        }
    }

    /// The shared name of `version`. Names of versions no longer in the
    /// book are dropped when the list grows past a few, so it stays small
    /// however many versions a long-running server has served.
    fn version(&mut self, version: &str) -> Arc<str> {
        if let Some(v) = self.versions.iter().find(|v| &***v == version) {
            return v.clone();
        }
        if self.versions.len() >= 16 {
            // Only the book's entries hold the others.
            self.versions.retain(|v| Arc::strong_count(v) > 1);
        }
        let v: Arc<str> = Arc::from(version);
        self.versions.push(v.clone());
        v
    }

    /// Remembers what `version` predicted for `request_id`, evicting the
    /// oldest request when full. Recording an id again replaces its
    /// prediction (and clears its label) but keeps its place in line.
    pub fn record(&mut self, request_id: &str, version: &str, prediction: Recorded) {
        if self.capacity == 0 {
            return;
        }
        let entry = Entry {
            version: self.version(version),
            prediction,
            labelled: false,
        };
        if let Some(e) = self.entries.get_mut(request_id) {
            *e = entry;
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
        let id: Arc<str> = Arc::from(request_id);
        self.order.push_back(id.clone());
        self.entries.insert(id, entry);
    }

    /// Scores a label against the recorded prediction. A class label must be
    /// a non-negative whole number; any label must be finite. Each request
    /// is scored once.
    pub fn feedback(&mut self, request_id: &str, label: f64) -> Result<Scored, FeedbackError> {
        let e = self
            .entries
            .get_mut(request_id)
            .ok_or_else(|| FeedbackError::Unknown(request_id.to_string()))?;
        if e.labelled {
            return Err(FeedbackError::Duplicate(request_id.to_string()));
        }
        let bad = |reason: &str| FeedbackError::BadLabel {
            request_id: request_id.to_string(),
            label,
            reason: reason.to_string(),
        };
        if !label.is_finite() {
            return Err(bad("not a finite number"));
        }
        let (correct, abs_error) = match e.prediction {
            Recorded::Class(c) => {
                if label < 0.0 || label.fract() != 0.0 || label > f64::from(u32::MAX) {
                    return Err(bad("a class label must be a whole number from 0"));
                }
                let correct = label == f64::from(c);
                (correct, if correct { 0.0 } else { 1.0 })
            }
            Recorded::Value(v) => (same_value(label, v), (label - v).abs()),
        };
        e.labelled = true;
        Ok(Scored {
            version: e.version.to_string(),
            correct,
            abs_error,
        })
    }

    /// Requests currently remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(width: u32, values: &[f64]) -> Predictions {
        Predictions {
            width,
            values: values.to_vec(),
        }
    }

    #[test]
    fn classification_disagrees_on_argmax_and_sums_every_score() {
        let mut a = Agreement::default();
        a.add(
            Task::BinaryClassification,
            &p(2, &[0.9, 0.1, 0.4, 0.6, 0.5, 0.5]),
            &p(2, &[0.8, 0.2, 0.6, 0.4, 0.5, 0.5]),
        );
        assert_eq!((a.compared, a.disagreed, a.scores), (3, 1, 6));
        assert!((a.abs_diff_sum - 0.6).abs() < 1e-12);
        assert!((a.rate().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((a.mean_abs_diff().unwrap() - 0.1).abs() < 1e-12);
        a.add(
            Task::MulticlassClassification,
            &p(3, &[0.1, 0.2, 0.7]),
            &p(3, &[0.1, 0.7, 0.2]),
        );
        assert_eq!((a.compared, a.disagreed), (4, 2));
    }

    #[test]
    fn regression_uses_a_relative_tolerance() {
        let mut a = Agreement::default();
        a.add(
            Task::Regression,
            &p(1, &[1000.0, 0.5, 2.0]),
            &p(1, &[1000.0005, 0.5000005, 2.1]),
        );
        // 5e-4 <= 1e-6*1000 agrees; 5e-7 <= 1e-6 agrees; 0.1 disagrees.
        assert_eq!((a.compared, a.disagreed), (3, 1));
        a.add(Task::Regression, &p(1, &[f64::NAN]), &p(1, &[1.0]));
        assert_eq!((a.compared, a.disagreed, a.scores), (4, 2, 3));
    }

    #[test]
    fn mismatched_shapes_count_as_disagreement() {
        let mut a = Agreement::default();
        assert_eq!(a.rate(), None);
        assert_eq!(a.mean_abs_diff(), None);
        a.add(
            Task::MulticlassClassification,
            &p(3, &[0.1, 0.2, 0.7, 0.3, 0.3, 0.4]),
            &p(2, &[0.1, 0.9, 0.2, 0.8]),
        );
        assert_eq!((a.compared, a.disagreed, a.mismatched), (2, 2, 1));
        assert_eq!(a.mean_abs_diff(), None);
    }

    #[test]
    fn recorded_rows_from_predictions() {
        assert_eq!(
            Recorded::from_predictions(
                Task::BinaryClassification,
                &p(2, &[0.9, 0.1, 0.2, 0.8, f64::NAN, 0.5])
            ),
            vec![Some(Recorded::Class(0)), Some(Recorded::Class(1)), None]
        );
        assert_eq!(
            Recorded::from_predictions(Task::Regression, &p(1, &[3.5])),
            vec![Some(Recorded::Value(3.5))]
        );
    }

    #[test]
    fn feedback_scores_against_the_right_version() {
        let mut b = LabelBook::new(10);
        b.record("r1", "v1", Recorded::Class(1));
        b.record("r2", "v2", Recorded::Class(0));
        b.record("r3", "v2", Recorded::Value(10.0));
        assert_eq!(
            b.feedback("r1", 1.0).unwrap(),
            Scored {
                version: "v1".into(),
                correct: true,
                abs_error: 0.0
            }
        );
        assert_eq!(
            b.feedback("r2", 1.0).unwrap(),
            Scored {
                version: "v2".into(),
                correct: false,
                abs_error: 1.0
            }
        );
        assert_eq!(
            b.feedback("r3", 12.5).unwrap(),
            Scored {
                version: "v2".into(),
                correct: false,
                abs_error: 2.5
            }
        );
    }

    #[test]
    fn duplicate_feedback_is_refused() {
        let mut b = LabelBook::new(4);
        b.record("r1", "v1", Recorded::Class(1));
        b.feedback("r1", 1.0).unwrap();
        assert_eq!(
            b.feedback("r1", 0.0).unwrap_err().to_string(),
            "request id \"r1\" already has a label"
        );
    }

    #[test]
    fn the_oldest_request_is_evicted_at_capacity() {
        let mut b = LabelBook::new(3);
        for i in 0..5 {
            b.record(&format!("r{i}"), "v1", Recorded::Class(0));
        }
        assert_eq!(b.len(), 3);
        for gone in ["r0", "r1"] {
            assert_eq!(
                b.feedback(gone, 0.0).unwrap_err(),
                FeedbackError::Unknown(gone.into())
            );
        }
        assert!(b.feedback("r2", 0.0).unwrap().correct);
        // Re-recording keeps the place in line: r3 is still evicted next.
        b.record("r3", "v9", Recorded::Class(1));
        b.record("r5", "v1", Recorded::Class(0));
        assert_eq!(
            b.feedback("r2", 0.0).unwrap_err(),
            FeedbackError::Unknown("r2".into())
        );
        assert_eq!(b.feedback("r3", 1.0).unwrap().version, "v9");
        let mut none = LabelBook::new(0);
        none.record("r", "v", Recorded::Class(0));
        assert!(none.is_empty());
        let said = none.feedback("r", 0.0).unwrap_err().to_string();
        assert!(said.starts_with("unknown request id \"r\""), "{said}");
        assert!(
            said.contains("forced by header") && said.contains("evicted"),
            "{said}"
        );
    }

    #[test]
    fn bad_labels_are_named() {
        let mut b = LabelBook::new(4);
        b.record("c", "v1", Recorded::Class(0));
        b.record("v", "v1", Recorded::Value(1.0));
        assert_eq!(
            b.feedback("c", 1.5).unwrap_err().to_string(),
            "bad label 1.5 for request id \"c\": a class label must be a whole number from 0"
        );
        assert_eq!(
            b.feedback("c", -1.0).unwrap_err().to_string(),
            "bad label -1 for request id \"c\": a class label must be a whole number from 0"
        );
        assert_eq!(
            b.feedback("v", f64::NAN).unwrap_err().to_string(),
            "bad label NaN for request id \"v\": not a finite number"
        );
        // A refused label does not use up the request.
        assert!(b.feedback("c", 0.0).unwrap().correct);
    }

    #[test]
    fn version_names_are_shared_and_forgotten_with_their_entries() {
        let mut b = LabelBook::new(2);
        for i in 0..100 {
            b.record(&format!("r{i}"), &format!("1.0.{i}"), Recorded::Class(1));
        }
        // Two entries remain; the names of evicted versions do not pile up.
        assert_eq!(b.len(), 2);
        assert!(b.versions.len() <= 17, "{} names kept", b.versions.len());
        assert_eq!(b.feedback("r99", 1.0).unwrap().version, "1.0.99");
        assert_eq!(b.feedback("r98", 0.0).unwrap().version, "1.0.98");
        assert!(matches!(
            b.feedback("r97", 1.0),
            Err(FeedbackError::Unknown(_))
        ));
        // The same name twice is one shared string.
        b.record("x", "2.0.0", Recorded::Class(0));
        b.record("y", "2.0.0", Recorded::Class(0));
        assert!(Arc::ptr_eq(
            &b.entries["x"].version,
            &b.entries["y"].version
        ));
    }
}
