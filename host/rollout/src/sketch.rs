//! Live input and score distributions in bounded memory, and their drift from
//! the gate-time reference.
//!
//! A served model sees unbounded traffic, so its inputs cannot be kept to
//! compare with what the gate saw. [`DistributionMonitor`] keeps, per numeric
//! feature (and for the prediction score), a KLL quantile sketch ([`Kll`]) of
//! a few hundred values, and per categorical feature a count per value (at
//! most [`MAX_CATEGORIES`] distinct values). It also counts data-quality
//! problems against the [`Reference`]: missing values, numbers outside the
//! reference range, categories the reference never had.
//!
//! # Why our own KLL
//! The Apache `datasketches` crate (0.6, maintained, no dependencies) has a
//! KLL sketch, but its compactions draw coin flips from a hidden thread-local
//! generator seeded by the OS, so two runs on the same traffic differ and the
//! crate would carry a random source this crate promises not to have. [`Kll`]
//! below is the KLL sketch of Karnin, Lang and Liberty ("Optimal Quantile
//! Approximation in Streams", FOCS 2016) with lazy compaction as in Liberty's
//! reference implementation (`edoliberty/streaming-quantiles`), capacities
//! `ceil(k·(2/3)^depth) + 1`, and its coin flips from a SplitMix64 stream
//! seeded by the caller: the same seed and traffic give the same sketch.
//!
//! # Drift from a sketch (an approximation)
//! The drift tests need samples, not sketches. For a numeric column the
//! monitor draws a *pseudo-sample*: the sketch's quantiles at the `n`
//! midpoint ranks `(i + ½)/n`, `n = min(values seen, 1000)`. Its empirical CDF
//! is within the sketch's rank error plus `1/(2n)` of the live CDF, so
//! distance tests (Wasserstein, Jensen–Shannon) see nearly the live
//! distribution; p-value tests (KS, χ², Z) see a sample of size `n`, so with
//! more than 1000 live rows they are *less* sensitive than on the full
//! traffic, never more. A categorical column's counts are exact and are
//! scaled to `n` rows by largest remainders. The pair (reference sample,
//! pseudo-sample) then goes through [`airlock_stats::drift::auto`], the very
//! test selection and thresholds the drift validator uses at the gate.

use std::collections::{BTreeMap, BTreeSet};

use airlock_core::types::{Batch, ColumnValues};
use airlock_stats::drift;
use serde::{Deserialize, Serialize};

/// The KLL accuracy parameter used by [`DistributionMonitor`]: about 1.3 %
/// rank error (see [`Kll::rank_error_bound`]) in a few hundred values.
pub const DEFAULT_K: u16 = 200;
/// Largest pseudo-sample drawn from a sketch for a drift test.
pub const MAX_PSEUDO_SAMPLE: usize = 1000;
/// Distinct values counted per categorical feature; more go to one overflow
/// bucket.
pub const MAX_CATEGORIES: usize = 1000;
/// The name under which the prediction score appears in drift and quality
/// results.
pub const SCORE_FEATURE: &str = "(prediction score)";
/// The category standing for values past [`MAX_CATEGORIES`] in drift tests.
const OVERFLOW: &str = "(other values)";
/// Seed used by [`DistributionMonitor::new`].
pub const DEFAULT_SEED: u64 = 0x6169_726c_6f63_6b21;

/// Why a sketch or drift computation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// A KLL sketch needs `k >= 8`.
    #[error("KLL k is {0}, must be at least 8")]
    InvalidK(u16),
    /// Drift needs a gate-time reference.
    #[error("no reference distribution to compare with")]
    NoReference,
    /// Too little traffic to judge drift.
    #[error("only {rows} rows observed, {min_rows} needed for drift")]
    NotEnoughRows {
        /// Rows observed so far.
        rows: u64,
        /// Rows asked for.
        min_rows: u64,
    },
    /// A drift test refused its input.
    #[error("drift test on {feature} failed: {reason}")]
    Drift {
        /// The feature.
        feature: String,
        /// The statistics error.
        reason: String,
    },
}

/// One step of SplitMix64 (Steele, Lea, Flood, OOPSLA 2014; constants from
/// Vigna's public-domain `splitmix64.c`).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A KLL quantile sketch of finite `f64` values (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kll {
    k: u16,
    /// `levels[h]` holds items of weight `2^h`.
    levels: Vec<Vec<f64>>,
    retained: usize,
    max_retained: usize,
    n: u64,
    min: f64,
    max: f64,
    rng: u64,
}

const C: f64 = 2.0 / 3.0;

impl Kll {
    /// An empty sketch with accuracy parameter `k` (at least 8) whose coin
    /// flips come from `seed`.
    pub fn new(k: u16, seed: u64) -> Result<Kll, SketchError> {
        if k < 8 {
            return Err(SketchError::InvalidK(k));
        }
        let mut s = Kll {
            k,
            levels: Vec::new(),
            retained: 0,
            max_retained: 0,
            n: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            rng: seed,
        };
        s.grow();
        Ok(s)
    }

    /// Capacity of level `h`: `ceil(k·c^depth) + 1`, depth counted from the top.
    fn capacity(&self, h: usize) -> usize {
        let depth = (self.levels.len() - h - 1) as i32;
        (f64::from(self.k) * C.powi(depth)).ceil() as usize + 1
    }

    fn grow(&mut self) {
        self.levels.push(Vec::new());
        self.max_retained = (0..self.levels.len()).map(|h| self.capacity(h)).sum();
    }

    /// Adds a value; NaN and ±∞ are refused (returns false).
    pub fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        let x = x + 0.0; // -0.0 and 0.0 are one value
        self.n += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.levels[0].push(x);
        self.retained += 1;
        if self.retained >= self.max_retained {
            self.compress();
        }
        true
    }

    /// Lazy compaction: compact the lowest full level, then the next full
    /// one, until the sketch is under its total capacity again.
    fn compress(&mut self) {
        let mut h = 0;
        while h < self.levels.len() {
            if self.levels[h].len() >= self.capacity(h) {
                if h + 1 == self.levels.len() {
                    self.grow();
                }
                let coin = splitmix64(&mut self.rng) & 1;
                let level = &mut self.levels[h];
                // Unstable is enough: values equal under `total_cmp` are
                // the same bits, so the order of equals cannot show.
                level.sort_unstable_by(f64::total_cmp);
                // With an odd count the smallest item stays behind.
                let start = level.len() % 2;
                let promoted: Vec<f64> = level[start..]
                    .chunks_exact(2)
                    .map(|pair| pair[coin as usize])
                    .collect();
                level.truncate(start);
                self.levels[h + 1].extend(promoted);
                self.retained = self.levels.iter().map(Vec::len).sum();
                if self.retained < self.max_retained {
                    break;
                }
            }
            h += 1;
        }
    }

    /// Values added so far.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Values held in memory (the sketch's size is about 8 bytes each).
    pub fn retained(&self) -> usize {
        self.retained
    }

    /// Number of levels (`2^(levels-1)` is the heaviest weight).
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    /// The smallest and largest values seen, exactly.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.n > 0).then_some((self.min, self.max))
    }

    /// The single-sided normalized rank error that holds with 99 %
    /// confidence: `2.296 / k^0.9723`, the empirical fit Apache DataSketches
    /// publishes for KLL (`KllSketch::getNormalizedRankError`). About 0.0133
    /// for `k = 200`.
    pub fn rank_error_bound(&self) -> f64 {
        2.296 / f64::from(self.k).powf(0.9723)
    }

    /// Items with their weights, sorted, and cumulative weights.
    fn sorted_view(&self) -> Vec<(f64, u64)> {
        let mut items: Vec<(f64, u64)> = self
            .levels
            .iter()
            .enumerate()
            .flat_map(|(h, l)| l.iter().map(move |&x| (x, 1u64 << h)))
            .collect();
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut cum = 0;
        for it in &mut items {
            cum += it.1;
            it.1 = cum;
        }
        items
    }

    /// The estimated fraction of values `<= x`; `None` when empty.
    pub fn rank(&self, x: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let w: u64 = self
            .levels
            .iter()
            .enumerate()
            .map(|(h, l)| (l.iter().filter(|&&v| v <= x).count() as u64) << h)
            .sum();
        Some(w as f64 / self.n as f64)
    }

    /// The estimated values at each normalized rank in `[0, 1]` (clamped):
    /// the smallest retained item whose cumulative weight reaches `rank · n`;
    /// ranks 0 and 1 give the exact minimum and maximum. Empty when no value
    /// was added.
    pub fn quantiles(&self, ranks: &[f64]) -> Vec<f64> {
        if self.n == 0 {
            return Vec::new();
        }
        let view = self.sorted_view();
        let total = self.n as f64;
        ranks
            .iter()
            .map(|&r| {
                let r = if r.is_nan() { 0.5 } else { r.clamp(0.0, 1.0) };
                if r == 0.0 {
                    return self.min;
                }
                if r == 1.0 {
                    return self.max;
                }
                let target = r * total;
                let i = view.partition_point(|&(_, cum)| (cum as f64) < target);
                view.get(i).map_or(self.max, |&(x, _)| x)
            })
            .collect()
    }

    /// `n` values at the midpoint ranks `(i + ½)/n` (see the module docs).
    pub fn pseudo_sample(&self, n: usize) -> Vec<f64> {
        let ranks: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
        self.quantiles(&ranks)
    }
}

/// The gate-time distribution of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceFeature {
    /// A numeric feature.
    Numeric {
        /// Finite values, thinned evenly to at most `max_rows`.
        sample: Vec<f64>,
        /// Smallest finite value of the whole column.
        min: f64,
        /// Largest finite value of the whole column.
        max: f64,
    },
    /// A categorical feature.
    Categorical {
        /// Non-missing values, thinned evenly to at most `max_rows`.
        sample: Vec<String>,
        /// Every distinct value of the whole column.
        values: BTreeSet<String>,
    },
}

/// What the gate saw: per feature a capped sample and its range or value set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Features by name, in the batch's column order. A feature whose column
    /// had no non-missing value is absent.
    pub features: Vec<(String, ReferenceFeature)>,
}

/// Keeps at most `max` items, evenly spaced (index `⌊j·len/max⌋`), so the
/// sample is the same every time and spans the whole column.
fn thin<T: Clone>(items: Vec<T>, max: usize) -> Vec<T> {
    let max = max.max(1);
    if items.len() <= max {
        return items;
    }
    let len = items.len();
    (0..max).map(|j| items[j * len / max].clone()).collect()
}

fn numeric_reference(values: &[f64], max_rows: usize) -> Option<ReferenceFeature> {
    let finite: Vec<f64> = values
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| x + 0.0)
        .collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!finite.is_empty()).then(|| ReferenceFeature::Numeric {
        sample: thin(finite, max_rows),
        min,
        max,
    })
}

impl Reference {
    /// Builds the reference from the gate's batch, keeping at most `max_rows`
    /// values per feature (e.g. 5 000), chosen by deterministic thinning.
    pub fn from_batch(batch: &Batch, max_rows: usize) -> Reference {
        let mut features = Vec::new();
        for col in &batch.columns {
            let f = match &col.values {
                ColumnValues::Numeric(v) => numeric_reference(v, max_rows),
                ColumnValues::Categorical(v) => {
                    let present: Vec<String> = v.iter().flatten().cloned().collect();
                    let values: BTreeSet<String> = present.iter().cloned().collect();
                    (!present.is_empty()).then(|| ReferenceFeature::Categorical {
                        sample: thin(present, max_rows),
                        values,
                    })
                }
            };
            if let Some(f) = f {
                features.push((col.name.clone(), f));
            }
        }
        Reference { features }
    }

    /// Adds the model's scores on the reference rows (positive-class
    /// probability or regression value), so score drift can be judged too.
    pub fn with_scores(mut self, scores: &[f64], max_rows: usize) -> Reference {
        self.features.retain(|(n, _)| n != SCORE_FEATURE);
        if let Some(f) = numeric_reference(scores, max_rows) {
            self.features.push((SCORE_FEATURE.to_string(), f));
        }
        self
    }

    /// The reference for one feature.
    pub fn feature(&self, name: &str) -> Option<&ReferenceFeature> {
        self.features
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f)
    }
}

/// One feature's drift verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// The feature ([`SCORE_FEATURE`] for the prediction score).
    pub feature: String,
    /// The test run (Evidently's name: "ks", "wasserstein", ...).
    pub test: String,
    /// The p-value or distance.
    pub score: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// Whether it crossed the threshold.
    pub drifted: bool,
}

/// Data-quality counts per monitored feature, in monitoring order (the
/// score last, under [`SCORE_FEATURE`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityCounts {
    /// Missing values: NaN or ±∞ in a numeric column, `None` in a
    /// categorical one, or every row when the column is absent or of the
    /// other kind.
    pub missing: Vec<(String, u64)>,
    /// Numbers outside the reference's `[min, max]`.
    pub out_of_range: Vec<(String, u64)>,
    /// Categories the reference never had.
    pub unseen_category: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
enum Track {
    /// Kind not known yet (no reference, no column seen).
    Unknown,
    Numeric(Kll),
    Categorical {
        counts: BTreeMap<String, u64>,
        overflow: u64,
    },
}

#[derive(Debug, Clone)]
struct Monitored {
    name: String,
    seed: u64,
    track: Track,
    /// Where this feature sits in the reference, found once: `observe`
    /// runs on every request and must not search by name.
    reference_at: Option<usize>,
}

/// Per-version live distributions with quality counts (see the module docs).
#[derive(Debug, Clone)]
pub struct DistributionMonitor {
    /// The features, then the score last.
    monitored: Vec<Monitored>,
    reference: Option<Reference>,
    quality: QualityCounts,
    rows: u64,
}

fn new_kll(seed: u64) -> Kll {
    Kll::new(DEFAULT_K, seed).expect("DEFAULT_K is valid")
}

impl DistributionMonitor {
    /// Monitors `features` (and the score) with [`DEFAULT_SEED`].
    pub fn new(features: &[String], reference: Option<Reference>) -> Self {
        Self::with_seed(features, reference, DEFAULT_SEED)
    }

    /// Monitors `features` (and the score); `seed` drives the sketches'
    /// compaction coin flips.
    pub fn with_seed(features: &[String], reference: Option<Reference>, seed: u64) -> Self {
        let mut state = seed;
        let names = features.iter().map(String::as_str).chain([SCORE_FEATURE]);
        let monitored: Vec<Monitored> = names
            .map(|name| {
                let seed = splitmix64(&mut state);
                let track = match reference.as_ref().and_then(|r| r.feature(name)) {
                    Some(ReferenceFeature::Numeric { .. }) => Track::Numeric(new_kll(seed)),
                    Some(ReferenceFeature::Categorical { .. }) => Track::Categorical {
                        counts: BTreeMap::new(),
                        overflow: 0,
                    },
                    None if name == SCORE_FEATURE => Track::Numeric(new_kll(seed)),
                    None => Track::Unknown,
                };
                Monitored {
                    name: name.to_string(),
                    seed,
                    track,
                    reference_at: reference
                        .as_ref()
                        .and_then(|r| r.features.iter().position(|(n, _)| n == name)),
                }
            })
            .collect();
        let zero = |_: ()| -> Vec<(String, u64)> {
            monitored.iter().map(|m| (m.name.clone(), 0)).collect()
        };
        let quality = QualityCounts {
            missing: zero(()),
            out_of_range: zero(()),
            unseen_category: zero(()),
        };
        DistributionMonitor {
            monitored,
            reference,
            quality,
            rows: 0,
        }
    }

    /// Adds a batch and its scores (one per row: positive-class probability
    /// or regression value). Columns not monitored are ignored; a monitored
    /// feature absent from the batch counts `batch.rows` missing values.
    pub fn observe(&mut self, batch: &Batch, scores: &[f64]) {
        self.rows += u64::from(batch.rows);
        let score_values = ColumnValues::Numeric(scores.to_vec());
        let last = self.monitored.len() - 1;
        for (i, m) in self.monitored.iter_mut().enumerate() {
            let values = if i == last {
                Some(&score_values)
            } else {
                // Served batches carry the model's inputs in the model's
                // order, which is the monitoring order: look there first.
                match batch.columns.get(i) {
                    Some(c) if c.name == m.name => Some(&c.values),
                    _ => batch
                        .columns
                        .iter()
                        .find(|c| c.name == m.name)
                        .map(|c| &c.values),
                }
            };
            let reference = match (&self.reference, m.reference_at) {
                (Some(r), Some(at)) => r.features.get(at).map(|(_, f)| f),
                _ => None,
            };
            let q = &mut self.quality;
            observe_one(m, values, batch.rows, reference, i, q);
        }
    }

    /// Drift of every monitored feature with a reference and at least one
    /// live value, and of the score when the reference has scores. Needs a
    /// reference and at least `min_rows` rows observed.
    pub fn drift(&self, min_rows: u64) -> Result<Vec<FeatureDrift>, SketchError> {
        let reference = self.reference.as_ref().ok_or(SketchError::NoReference)?;
        if self.rows < min_rows {
            return Err(SketchError::NotEnoughRows {
                rows: self.rows,
                min_rows,
            });
        }
        let mut out = Vec::new();
        for m in &self.monitored {
            let Some(rf) = reference.feature(&m.name) else {
                continue;
            };
            let fail = |e: airlock_stats::StatsError| SketchError::Drift {
                feature: m.name.clone(),
                reason: e.to_string(),
            };
            let result = match (&m.track, rf) {
                (Track::Numeric(kll), ReferenceFeature::Numeric { sample, .. }) => {
                    if kll.n() == 0 {
                        continue;
                    }
                    let n = (kll.n() as usize).min(MAX_PSEUDO_SAMPLE);
                    let pseudo = kll.pseudo_sample(n);
                    drift::auto(
                        drift::Column::Numeric(sample),
                        drift::Column::Numeric(&pseudo),
                    )
                    .map_err(fail)?
                }
                (
                    Track::Categorical { counts, overflow },
                    ReferenceFeature::Categorical { sample, .. },
                ) => {
                    let pseudo = apportion(counts, *overflow, MAX_PSEUDO_SAMPLE);
                    if pseudo.is_empty() {
                        continue;
                    }
                    let r: Vec<Option<&str>> = sample.iter().map(|s| Some(s.as_str())).collect();
                    drift::auto(
                        drift::Column::Categorical(&r),
                        drift::Column::Categorical(&pseudo),
                    )
                    .map_err(fail)?
                }
                _ => continue,
            };
            out.push(FeatureDrift {
                feature: m.name.clone(),
                test: result.test.name().to_string(),
                score: result.score,
                threshold: result.threshold,
                drifted: result.drifted,
            });
        }
        Ok(out)
    }

    /// Data-quality counts so far.
    pub fn quality(&self) -> &QualityCounts {
        &self.quality
    }

    /// Rows observed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Values and category counters held in memory across all features: the
    /// monitor's size is about 8 bytes per numeric value plus one string per
    /// category, whatever the traffic.
    pub fn retained_values(&self) -> usize {
        self.monitored
            .iter()
            .map(|m| match &m.track {
                Track::Unknown => 0,
                Track::Numeric(k) => k.retained(),
                Track::Categorical { counts, .. } => counts.len(),
            })
            .sum()
    }
}

fn observe_one(
    m: &mut Monitored,
    values: Option<&ColumnValues>,
    rows: u32,
    reference: Option<&ReferenceFeature>,
    i: usize,
    q: &mut QualityCounts,
) {
    if matches!(m.track, Track::Unknown) {
        m.track = match values {
            Some(ColumnValues::Numeric(_)) => Track::Numeric(new_kll(m.seed)),
            Some(ColumnValues::Categorical(_)) => Track::Categorical {
                counts: BTreeMap::new(),
                overflow: 0,
            },
            None => Track::Unknown,
        };
    }
    match (&mut m.track, values) {
        (Track::Numeric(kll), Some(ColumnValues::Numeric(v))) => {
            let range = match reference {
                Some(ReferenceFeature::Numeric { min, max, .. }) => Some((*min, *max)),
                _ => None,
            };
            for &x in v {
                if !kll.update(x) {
                    q.missing[i].1 += 1;
                } else if let Some((lo, hi)) = range
                    && (x < lo || x > hi)
                {
                    q.out_of_range[i].1 += 1;
                }
            }
        }
        (Track::Categorical { counts, overflow }, Some(ColumnValues::Categorical(v))) => {
            let known = match reference {
                Some(ReferenceFeature::Categorical { values, .. }) => Some(values),
                _ => None,
            };
            for x in v {
                let Some(x) = x else {
                    q.missing[i].1 += 1;
                    continue;
                };
                if known.is_some_and(|k| !k.contains(x)) {
                    q.unseen_category[i].1 += 1;
                }
                if let Some(c) = counts.get_mut(x) {
                    *c += 1;
                } else if counts.len() < MAX_CATEGORIES {
                    counts.insert(x.clone(), 1);
                } else {
                    *overflow += 1;
                }
            }
        }
        // Absent column, or a column of the other kind: every row is missing.
        _ => q.missing[i].1 += u64::from(rows),
    }
}

/// Scales category counts to about `max` rows (exactly `min(total, max)`) by
/// largest remainders (Hamilton's method), keeping every category's share as
/// close as whole rows allow.
fn apportion(counts: &BTreeMap<String, u64>, overflow: u64, max: usize) -> Vec<Option<&str>> {
    let mut items: Vec<(&str, u64)> = counts.iter().map(|(k, &v)| (k.as_str(), v)).collect();
    if overflow > 0 {
        items.push((OVERFLOW, overflow));
    }
    let total: u64 = items.iter().map(|i| i.1).sum();
    if total == 0 {
        return Vec::new();
    }
    let n = total.min(max as u64);
    let mut shares: Vec<(usize, u64, u128)> = items
        .iter()
        .enumerate()
        .map(|(j, &(_, c))| {
            let exact = u128::from(c) * u128::from(n);
            let whole = (exact / u128::from(total)) as u64;
            (j, whole, exact % u128::from(total))
        })
        .collect();
    let given: u64 = shares.iter().map(|s| s.1).sum();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for &j in by_remainder.iter().take((n - given) as usize) {
        shares[j].1 += 1;
    }
    let mut out = Vec::with_capacity(n as usize);
    for (j, k, _) in shares {
        out.extend(std::iter::repeat_n(Some(items[j].0), k as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::types::Column;

    /// Uniform in (0, 1) from a SplitMix64 stream.
    fn uniform(state: &mut u64) -> f64 {
        ((splitmix64(state) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller.
    fn normal(state: &mut u64) -> f64 {
        let (u, v) = (uniform(state), uniform(state));
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn batch(rows: usize, seed: u64, scale: f64) -> (Batch, Vec<f64>) {
        let mut s = seed;
        let income: Vec<f64> = (0..rows)
            .map(|_| scale * (10.0 + 2.0 * normal(&mut s)))
            .collect();
        let colours = ["red", "green", "blue"];
        let colour: Vec<Option<String>> = (0..rows)
            .map(|_| {
                // red 50 %, green 30 %, blue 20 %; a scale above 1 flips to blue-heavy.
                let u = uniform(&mut s);
                let i = if scale > 1.0 {
                    if u < 0.2 {
                        0
                    } else if u < 0.4 {
                        1
                    } else {
                        2
                    }
                } else if u < 0.5 {
                    0
                } else if u < 0.8 {
                    1
                } else {
                    2
                };
                Some(colours[i].to_string())
            })
            .collect();
        let scores: Vec<f64> = income
            .iter()
            .map(|x| 1.0 / (1.0 + (-(x - 10.0)).exp()))
            .collect();
        (
            Batch {
                rows: rows as u32,
                columns: vec![
                    Column {
                        name: "income".into(),
                        values: ColumnValues::Numeric(income),
                    },
                    Column {
                        name: "colour".into(),
                        values: ColumnValues::Categorical(colour),
                    },
                ],
            },
            scores,
        )
    }

    fn features() -> Vec<String> {
        vec!["income".into(), "colour".into()]
    }

    /// Max over ranks 1 %..99 % of |true rank of the sketch's quantile - rank|,
    /// for the values 0..n (true rank of v is (v+1)/n).
    fn max_rank_error(kll: &Kll, n: u64) -> f64 {
        let ranks: Vec<f64> = (1..100).map(|i| f64::from(i) / 100.0).collect();
        kll.quantiles(&ranks)
            .iter()
            .zip(&ranks)
            .map(|(q, r)| ((q + 1.0) / n as f64 - r).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn kll_quantiles_stay_within_the_rank_error_bound() {
        let n = 200_000u64;
        let mut perm: Vec<u64> = (0..n).collect();
        let mut s = 7;
        for i in (1..perm.len()).rev() {
            let j = (splitmix64(&mut s) % (i as u64 + 1)) as usize;
            perm.swap(i, j);
        }
        type Order = Box<dyn Fn(u64) -> u64>;
        let orders: [(&str, Order); 3] = [
            ("sorted", Box::new(|i| i)),
            ("reversed", Box::new(move |i| n - 1 - i)),
            ("shuffled", Box::new(move |i| perm[i as usize])),
        ];
        for (name, order) in &orders {
            for seed in 1..=4 {
                let mut kll = Kll::new(DEFAULT_K, seed).unwrap();
                for i in 0..n {
                    kll.update(order(i) as f64);
                }
                assert_eq!(kll.n(), n);
                assert_eq!(kll.range(), Some((0.0, (n - 1) as f64)));
                let err = max_rank_error(&kll, n);
                let bound = kll.rank_error_bound();
                assert!((bound - 0.0133).abs() < 0.0001, "{bound}");
                assert!(
                    err <= bound,
                    "{name}, seed {seed}: rank error {err} over {bound}"
                );
                // rank() agrees with quantiles() to within the same bound.
                let r = kll.rank((n / 2) as f64).unwrap();
                assert!((r - 0.5).abs() <= bound, "{name}: rank {r}");
            }
        }
    }

    #[test]
    fn kll_is_exact_while_small_and_deterministic_per_seed() {
        let mut kll = Kll::new(DEFAULT_K, 1).unwrap();
        assert_eq!(kll.quantiles(&[0.5]), Vec::<f64>::new());
        assert_eq!(kll.rank(1.0), None);
        for x in [5.0, 1.0, 3.0, 2.0, 4.0] {
            kll.update(x);
        }
        assert!(!kll.update(f64::NAN));
        assert!(!kll.update(f64::INFINITY));
        assert_eq!(kll.n(), 5);
        assert_eq!(
            kll.quantiles(&[0.0, 0.2, 0.5, 0.8, 1.0]),
            vec![1.0, 1.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(kll.pseudo_sample(5), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(kll.rank(3.0), Some(0.6));
        let fill = |seed| {
            let mut k = Kll::new(DEFAULT_K, seed).unwrap();
            for i in 0..50_000 {
                k.update(f64::from(i * 7919 % 50_000));
            }
            k
        };
        assert_eq!(fill(3), fill(3));
        assert_ne!(fill(3), fill(4));
        assert_eq!(
            Kll::new(7, 0).unwrap_err().to_string(),
            "KLL k is 7, must be at least 8"
        );
    }

    #[test]
    fn a_million_observations_keep_the_sketch_small() {
        let mut kll = Kll::new(DEFAULT_K, 11).unwrap();
        let mut s = 5;
        let mut peak = 0;
        for _ in 0..1_000_000 {
            kll.update(normal(&mut s));
            peak = peak.max(kll.retained());
        }
        // Capacities sum to at most k/(1 - 2/3) + 2·levels = 3k + 2·levels.
        let levels = kll.levels();
        assert!(levels <= 16, "{levels} levels");
        assert!(
            peak <= 3 * usize::from(DEFAULT_K) + 2 * levels,
            "peak {peak}"
        );
        // Stated size: under 650 values, about 5.2 KB of f64s, for 1M rows.
        assert!(peak < 650, "peak {peak}");

        // The whole monitor stays bounded too, categories included.
        let mut m = DistributionMonitor::new(&features(), None);
        let rows = 10_000;
        for b in 0..100u32 {
            let (mut batch, scores) = batch(rows, u64::from(b), 1.0);
            // 5000 distinct categories over the run, more than MAX_CATEGORIES.
            batch.columns[1].values = ColumnValues::Categorical(
                (0..rows)
                    .map(|i| Some(format!("c{}", (i + b as usize * 50) % 5000)))
                    .collect(),
            );
            m.observe(&batch, &scores);
        }
        assert_eq!(m.rows(), 1_000_000);
        let retained = m.retained_values();
        assert!(retained <= 2 * 650 + MAX_CATEGORIES, "{retained}");
    }

    #[test]
    fn the_same_distribution_does_not_drift() {
        let (gate, gate_scores) = batch(5000, 1, 1.0);
        let reference = Reference::from_batch(&gate, 5000).with_scores(&gate_scores, 5000);
        let mut m = DistributionMonitor::new(&features(), Some(reference));
        for b in 0..20 {
            let (live, scores) = batch(1000, 100 + b, 1.0);
            m.observe(&live, &scores);
        }
        let d = m.drift(1000).unwrap();
        let names: Vec<_> = d
            .iter()
            .map(|f| (f.feature.as_str(), f.test.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("income", "wasserstein"),
                ("colour", "jensenshannon"),
                (SCORE_FEATURE, "wasserstein")
            ]
        );
        for f in &d {
            assert!(!f.drifted, "{f:?}");
            assert!(f.score < 0.05, "{f:?}");
        }
    }

    #[test]
    fn a_shift_by_one_and_a_half_drifts() {
        let (gate, gate_scores) = batch(5000, 1, 1.0);
        let reference = Reference::from_batch(&gate, 5000).with_scores(&gate_scores, 5000);
        let mut m = DistributionMonitor::new(&features(), Some(reference));
        let (live, scores) = batch(20_000, 2, 1.5);
        m.observe(&live, &scores);
        let d = m.drift(1000).unwrap();
        assert_eq!(d.len(), 3);
        for f in &d {
            assert!(f.drifted, "{f:?}");
        }
        assert_eq!(d[0].threshold, 0.1);
    }

    #[test]
    fn small_references_use_the_p_value_tests_and_still_judge_right() {
        // A reference of 800 rows selects KS and chi-square, as the validator would.
        let (gate, _) = batch(800, 1, 1.0);
        let reference = Reference::from_batch(&gate, 5000);
        let same = {
            let mut m = DistributionMonitor::new(&features(), Some(reference.clone()));
            let (live, scores) = batch(5000, 9, 1.0);
            m.observe(&live, &scores);
            m.drift(100).unwrap()
        };
        assert_eq!(same.len(), 2, "no score reference, no score drift");
        assert_eq!(
            (same[0].test.as_str(), same[1].test.as_str()),
            ("ks", "chisquare")
        );
        assert!(same.iter().all(|f| !f.drifted), "{same:?}");
        let mut m = DistributionMonitor::new(&features(), Some(reference));
        let (live, scores) = batch(5000, 9, 1.5);
        m.observe(&live, &scores);
        assert!(m.drift(100).unwrap().iter().all(|f| f.drifted));
    }

    #[test]
    fn drift_needs_a_reference_and_enough_rows() {
        let m = DistributionMonitor::new(&features(), None);
        assert_eq!(
            m.drift(0).unwrap_err().to_string(),
            "no reference distribution to compare with"
        );
        let (gate, _) = batch(100, 1, 1.0);
        let mut m = DistributionMonitor::new(&features(), Some(Reference::from_batch(&gate, 50)));
        let (live, scores) = batch(10, 2, 1.0);
        m.observe(&live, &scores);
        assert_eq!(
            m.drift(500).unwrap_err(),
            SketchError::NotEnoughRows {
                rows: 10,
                min_rows: 500
            }
        );
    }

    #[test]
    fn quality_counts_missing_out_of_range_and_unseen() {
        let gate = Batch {
            rows: 4,
            columns: vec![
                Column {
                    name: "age".into(),
                    values: ColumnValues::Numeric(vec![20.0, 30.0, f64::NAN, 60.0]),
                },
                Column {
                    name: "city".into(),
                    values: ColumnValues::Categorical(vec![
                        Some("Oslo".into()),
                        Some("Rome".into()),
                        None,
                        Some("Oslo".into()),
                    ]),
                },
            ],
        };
        let reference = Reference::from_batch(&gate, 2);
        assert_eq!(
            reference.feature("age"),
            Some(&ReferenceFeature::Numeric {
                sample: vec![20.0, 30.0],
                min: 20.0,
                max: 60.0
            })
        );
        let monitored = vec!["age".to_string(), "city".to_string(), "zip".to_string()];
        let mut m = DistributionMonitor::new(&monitored, Some(reference));
        let live = Batch {
            rows: 5,
            columns: vec![
                Column {
                    name: "age".into(),
                    values: ColumnValues::Numeric(vec![19.0, 20.0, 60.0, f64::NAN, f64::INFINITY]),
                },
                Column {
                    name: "city".into(),
                    values: ColumnValues::Categorical(vec![
                        Some("Oslo".into()),
                        Some("Paris".into()),
                        None,
                        Some("Lima".into()),
                        Some("Rome".into()),
                    ]),
                },
            ],
        };
        m.observe(&live, &[0.1, 0.2, f64::NAN, 0.4, 0.5]);
        let q = m.quality();
        let pairs =
            |v: &[(String, u64)]| v.iter().map(|(n, c)| (n.clone(), *c)).collect::<Vec<_>>();
        let expect = |a, b, c, d| {
            vec![
                ("age".to_string(), a),
                ("city".to_string(), b),
                ("zip".to_string(), c),
                (SCORE_FEATURE.to_string(), d),
            ]
        };
        assert_eq!(pairs(&q.missing), expect(2, 1, 5, 1));
        assert_eq!(pairs(&q.out_of_range), expect(1, 0, 0, 0));
        assert_eq!(pairs(&q.unseen_category), expect(0, 2, 0, 0));
        assert_eq!(m.rows(), 5);

        // Columns are matched by name, not by place: the same rows with the
        // columns swapped give the same counts (observe looks at the
        // monitoring order first, then searches).
        let mut swapped =
            DistributionMonitor::new(&monitored, Some(Reference::from_batch(&gate, 2)));
        let mut reversed = live.clone();
        reversed.columns.reverse();
        swapped.observe(&reversed, &[0.1, 0.2, f64::NAN, 0.4, 0.5]);
        assert_eq!(swapped.quality(), m.quality());
        assert_eq!(swapped.rows(), 5);
    }

    #[test]
    fn thinning_is_even_and_apportioning_exact() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(thin(v.clone(), 4), vec![0, 2, 5, 7]);
        assert_eq!(thin(v.clone(), 20), v);
        let mut counts = BTreeMap::new();
        counts.insert("a".to_string(), 5000u64);
        counts.insert("b".to_string(), 3334);
        counts.insert("c".to_string(), 1666);
        let p = apportion(&counts, 0, 1000);
        assert_eq!(p.len(), 1000);
        let count = |s: &str| p.iter().filter(|x| **x == Some(s)).count();
        assert_eq!((count("a"), count("b"), count("c")), (500, 333, 167));
        let small = apportion(&counts, 7, 1_000_000);
        assert_eq!(small.len(), 10_007);
        assert_eq!(small.iter().filter(|x| **x == Some(OVERFLOW)).count(), 7);
    }
}
