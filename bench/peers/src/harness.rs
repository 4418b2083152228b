//! The measuring harness: warm-up, batch sizing, interleaved rounds and
//! order statistics.
//!
//! Hand-written rather than criterion so that every case runs in the same
//! process and the rounds interleave: a burst of machine noise (or an epoch
//! ticker waking) then lands on every case alike, and the ratios between
//! cases stay meaningful even when absolute numbers drift.

use std::time::{Duration, Instant};

/// Wall time the warm-up of one case runs before anything is recorded
/// (caches, pool slots, first-touch page faults).
pub const WARMUP: Duration = Duration::from_millis(150);

/// Wall time one batch of a case should take; sets its iteration count.
pub const BATCH_TARGET: Duration = Duration::from_millis(100);

/// Interleaved rounds; each round runs one batch of every case.
pub const ROUNDS: usize = 7;

/// Fewest iterations in a batch, however slow the case.
const MIN_ITERS: usize = 10;

/// Most iterations in a batch, however fast the case.
const MAX_ITERS: usize = 100_000;

/// One measured thing: the work of one iteration and what it recorded.
pub struct Case {
    /// Short stable key, for looking the case up in the ratios.
    pub key: &'static str,
    /// What is measured, for the table.
    pub what: String,
    /// One iteration of the work.
    run: Box<dyn FnMut()>,
    /// Iterations per batch, set by the warm-up.
    iters: usize,
    /// Every recorded iteration, in nanoseconds.
    samples: Vec<f64>,
    /// The median of each batch, in nanoseconds (shows drift across rounds).
    batch_medians: Vec<f64>,
}

/// Order statistics of a case, in microseconds.
pub struct Summary {
    /// Median iteration.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Lowest per-batch median.
    pub batch_lo: f64,
    /// Highest per-batch median.
    pub batch_hi: f64,
    /// Iterations recorded.
    pub n: usize,
}

impl Case {
    /// A case that has recorded nothing yet.
    pub fn new(key: &'static str, what: impl Into<String>, run: impl FnMut() + 'static) -> Case {
        Case {
            key,
            what: what.into(),
            run: Box::new(run),
            iters: MIN_ITERS,
            samples: Vec::new(),
            batch_medians: Vec::new(),
        }
    }

    /// Runs the work for [`WARMUP`] (at least three times) and sizes the
    /// batch so that one takes about [`BATCH_TARGET`].
    pub fn warm_up(&mut self) {
        let start = Instant::now();
        let mut n = 0usize;
        while n < 3 || start.elapsed() < WARMUP {
            (self.run)();
            n += 1;
        }
        let per_iter = start.elapsed().as_secs_f64() / n as f64;
        let iters = (BATCH_TARGET.as_secs_f64() / per_iter) as usize;
        self.iters = iters.clamp(MIN_ITERS, MAX_ITERS);
    }

    /// Runs one batch, timing each iteration on its own so that the
    /// percentiles describe single calls, not batch averages.
    pub fn batch(&mut self) {
        let mut times = Vec::with_capacity(self.iters);
        for _ in 0..self.iters {
            let t = Instant::now();
            (self.run)();
            times.push(t.elapsed().as_nanos() as f64);
        }
        self.batch_medians.push(percentile(&mut times.clone(), 0.5));
        self.samples.extend(times);
    }

    /// The case's order statistics over every recorded iteration.
    pub fn summary(&self) -> Summary {
        let mut s = self.samples.clone();
        let mut b = self.batch_medians.clone();
        let us = 1e-3;
        Summary {
            median: percentile(&mut s, 0.5) * us,
            p10: percentile(&mut s, 0.1) * us,
            p90: percentile(&mut s, 0.9) * us,
            batch_lo: percentile(&mut b, 0.0) * us,
            batch_hi: percentile(&mut b, 1.0) * us,
            n: s.len(),
        }
    }
}

/// Warms every case up, then runs [`ROUNDS`] rounds of one batch per case,
/// reporting progress on stderr.
pub fn run_all(cases: &mut [Case]) {
    for c in cases.iter_mut() {
        eprintln!("warming up: {}", c.key);
        c.warm_up();
    }
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}");
        for c in cases.iter_mut() {
            c.batch();
        }
    }
}

/// The `q`-quantile of `v` by nearest rank; sorts `v`. NaN when empty.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Microseconds with a precision that suits their size.
pub fn fmt_us(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else if us >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}
