//! Per-version counters the request path bumps without a lock, and the
//! snapshots the analysis takes of them: an analysis window is the
//! difference between two snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets: bucket `i` holds calls that took under `2^(i/4)` µs
/// (four buckets per doubling, so a percentile is known within 19 %), up
/// to about 17 minutes.
const BUCKETS: usize = 120;

/// Counters of one version since it was loaded.
pub struct VersionStats {
    requests: AtomicU64,
    errors: AtomicU64,
    rows: AtomicU64,
    labelled: AtomicU64,
    correct: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for VersionStats {
    fn default() -> VersionStats {
        VersionStats {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            labelled: AtomicU64::new(0),
            correct: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The bucket a duration falls in.
fn bucket(d: Duration) -> usize {
    let us = d.as_secs_f64() * 1e6;
    if us <= 1.0 {
        return 0;
    }
    ((us.log2() * 4.0).ceil() as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in milliseconds.
fn bucket_ms(i: usize) -> f64 {
    2f64.powf(i as f64 / 4.0) / 1e3
}

impl VersionStats {
    /// One answered request.
    pub fn ok(&self, rows: u64, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.latency[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// One request the model refused on purpose (its own error for that
    /// input): counted as a request, not as an error, so that clients
    /// sending bad input cannot make a healthy version look broken (and
    /// trigger a rollback).
    pub fn refused(&self, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// One request the model failed.
    pub fn error(&self, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.latency[bucket(took)].fetch_add(1, Ordering::Relaxed);
    }

    /// One delayed label for an answer of this version.
    pub fn label(&self, correct: bool) {
        self.labelled.fetch_add(1, Ordering::Relaxed);
        if correct {
            self.correct.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            labelled: self.labelled.load(Ordering::Relaxed),
            correct: self.correct.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Requests answered or failed.
    pub requests: u64,
    /// Requests the model failed.
    pub errors: u64,
    /// Rows scored.
    pub rows: u64,
    /// Answers that got a delayed label.
    pub labelled: u64,
    /// Of those, the ones the label agreed with.
    pub correct: u64,
    latency: Vec<u64>,
}

impl Snapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let sub = |a: u64, b: u64| a.saturating_sub(b);
        Snapshot {
            requests: sub(self.requests, earlier.requests),
            errors: sub(self.errors, earlier.errors),
            rows: sub(self.rows, earlier.rows),
            labelled: sub(self.labelled, earlier.labelled),
            correct: sub(self.correct, earlier.correct),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, n)| sub(*n, earlier.latency.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    /// The `q` quantile of latency (upper bucket bound), in milliseconds;
    /// `None` without requests.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_ms(i));
            }
        }
        Some(bucket_ms(BUCKETS - 1))
    }

    /// Labelled accuracy, when there are labels.
    pub fn accuracy(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let s = VersionStats::default();
        s.ok(1, Duration::from_micros(30));
        let a = s.snapshot();
        for _ in 0..98 {
            s.ok(2, Duration::from_micros(30));
        }
        s.ok(1, Duration::from_millis(40));
        s.error(Duration::from_millis(2));
        s.refused(Duration::from_micros(30));
        s.label(true);
        s.label(false);
        let w = s.snapshot().since(&a);
        assert_eq!((w.requests, w.errors, w.rows), (101, 1, 197));
        assert_eq!(w.accuracy(), Some(0.5));
        // p50 is the 30 µs bucket (upper bound within 19 %), p99 is 2 ms's
        // bucket, the max is 40 ms's; the refusal is a request, not an error.
        let p50 = w.latency_quantile_ms(0.5).unwrap();
        assert!((0.030..0.036).contains(&p50), "{p50}");
        let p99 = w.latency_quantile_ms(0.99).unwrap();
        assert!((2.0..2.4).contains(&p99), "{p99}");
        let max = w.latency_quantile_ms(1.0).unwrap();
        assert!((40.0..48.0).contains(&max), "{max}");
        assert_eq!(Snapshot::default().latency_quantile_ms(0.99), None);
    }
}
