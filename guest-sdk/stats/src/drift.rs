//! Data-drift tests that reproduce Evidently's legacy column-drift tests and
//! the scipy routines underneath them.
//!
//! Drift validators compare a *reference* window (training or gate-time data)
//! with a *current* window (live traffic). People tune the thresholds in
//! Evidently reports, so each test here returns the number Evidently would
//! (Evidently 0.7.23, module `evidently.legacy.calculations.stattests`, on
//! scipy 1.17.1 / numpy 2.4.6), verified to 1e-9 relative by
//! `tests/fixtures.rs`.
//!
//! # Cleaning
//! Before any test, NaN and ±∞ are removed from numeric columns and `None`
//! from categorical ones, as Evidently's `get_one_column_drift` does
//! (`replace([-inf, inf], nan).dropna()`). A window that is empty after
//! cleaning is an error.
//!
//! # Automatic test choice ([`select_test`])
//! Evidently's `_get_default_stattest` looks at the reference size `n_ref`
//! and the number `u` of distinct values in reference and current *together*:
//!
//! | column      | `n_ref ≤ 1000`                              | `n_ref > 1000`                          |
//! |-------------|---------------------------------------------|-----------------------------------------|
//! | numeric     | `u ≤ 2`: Z; `3 ≤ u ≤ 5`: χ²; `u > 5`: KS      | `u ≤ 5`: Jensen–Shannon; else Wasserstein |
//! | categorical | `u ≤ 2`: Z; otherwise χ²                      | Jensen–Shannon                          |
//!
//! Default thresholds (`StatTest.default_threshold`): 0.05 for the p-value
//! tests (KS, χ², Z) and 0.1 for PSI, Jensen–Shannon and Wasserstein. A
//! p-value test reports drift when `p < threshold` (χ², Z) or
//! `p ≤ threshold` (KS — Evidently's KS uses `<=`); a distance reports drift
//! when `score ≥ threshold`.
//!
//! # Formulas
//! **Kolmogorov–Smirnov** (`scipy.stats.ks_2samp`, two-sided, `method="auto"`).
//! `D = max_x |F₁(x) − F₂(x)|` over the pooled sample, with the empirical
//! CDFs counting values `≤ x` (so ties move both CDFs at once). If
//! `max(n₁, n₂) ≤ 10000` the p-value is exact: with `g = gcd(n₁, n₂)`,
//! `L = n₁n₂/g` and `h = round(D·L)` (and the reported `D = h/L`),
//! `p = P(D ≥ h/L)` under H₀ is the share of monotone lattice paths from
//! `(0,0)` to `(n₁,n₂)` that touch `|i·n₂/g − j·n₁/g| ≥ h` (Hodges 1958,
//! *Ark. Mat.* 3:469–486). For `n₁ = n₂ = n` the reflection-principle sum
//! `2 Σ_{k≥1} (−1)^{k−1} C(2n, n−kh)/C(2n, n)` is used, evaluated in scipy's
//! nested form; otherwise a column-by-column recursion over the band carries
//! the share of paths that have already left it, so small p-values keep full
//! relative precision. Larger samples use scipy's asymptotic branch:
//! `p = kstwo.sf(D, round(n₁n₂/(n₁+n₂)))`, the *finite-n* one-sample
//! distribution (Simard & L'Ecuyer 2011, *J. Stat. Softw.* 39(11)), not the
//! limiting Kolmogorov distribution.
//!
//! **Chi-square** (Evidently `chi_stat_test`). Over the union of categories,
//! expected counts are the reference counts scaled to the current size,
//! `Eₖ = Rₖ · n_cur/n_ref`, observed `Oₖ` are the current counts, and
//! `χ² = Σ (Oₖ − Eₖ)²/Eₖ` (`scipy.stats.chisquare`); `p = Q((K−1)/2, χ²/2)`,
//! the chi-square survival function with `K − 1` degrees of freedom. A
//! category absent from the reference has `Eₖ = 0`, so `χ² = ∞` and `p = 0`.
//!
//! **Z-test for two proportions** (Evidently `z_stat_test`). The smallest
//! category (sorted) is coded 0 and every other category 1; with `p₁`, `p₂`
//! the shares of 1s and `P = (p₁n₁ + p₂n₂)/(n₁+n₂)`,
//! `z = (p₁ − p₂)/√(P(1−P)(1/n₁ + 1/n₂))` and `p = 2(1 − Φ(|z|))`.
//! If both windows hold one and the same single value, `p = 1`.
//!
//! **Binning** for PSI and Jensen–Shannon (Evidently `get_binned_data`). A
//! numeric column whose *reference* has more than 20 distinct values is cut
//! into equal-width bins spanning the pooled minimum and maximum, with
//! numpy's Sturges rule: width `w = (max − min)/(log₂ N + 1)` for `N` pooled
//! values and `⌈(max − min)/w⌉` bins (`numpy.histogram_bin_edges(...,
//! "sturges")`); bins are half-open `[a, b)` except the last, which is closed.
//! Note that Evidently uses the pooled range, not reference quantiles.
//! Any other column is binned by value: one bin per distinct value in either
//! window. Each window's counts are divided by that window's size.
//!
//! **Empty-bin rule** (PSI only; Jensen–Shannon uses the raw shares). In each
//! window separately, zero shares are replaced by `0.0001`, or by
//! `m/10⁶` when the smallest non-zero share `m` of that window is itself
//! `≤ 0.0001`.
//!
//! **PSI** `= Σ (rₖ − cₖ)·ln(rₖ/cₖ)` over bins (Siddiqi 2006, *Credit Risk
//! Scorecards*, ch. 8; Evidently `psi_stat_test`).
//!
//! **Jensen–Shannon distance** (`scipy.spatial.distance.jensenshannon`, natural
//! log): after renormalising both share vectors, `m = (r + c)/2` and
//! `JS = √((KL(r‖m) + KL(c‖m))/2)` (Lin 1991, *IEEE Trans. Inf. Theory*
//! 37(1); Endres & Schindelin 2003 for the metric property), with
//! `0·ln 0 = 0`.
//!
//! **Normed Wasserstein** (Evidently `wasserstein_stat_test`):
//! `W₁(ref, cur) / max(σ_ref, 0.001)`, where `W₁ = ∫ |F_ref − F_cur| dx`
//! (`scipy.stats.wasserstein_distance`) and `σ_ref` is the population
//! standard deviation (`ddof = 0`) of the reference. A constant reference
//! therefore divides by 0.001.

use crate::StatsError;
use crate::special;

/// What kind of values a column holds; drives [`select_test`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Real-valued measurements.
    Numeric,
    /// Labels drawn from a finite set (strings, or numeric codes).
    Categorical,
}

/// One of the drift tests Evidently picks by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// Two-sample Kolmogorov–Smirnov p-value (Evidently `"ks"`).
    Ks,
    /// Chi-square goodness of fit against reference frequencies (`"chisquare"`).
    ChiSquare,
    /// Two-proportion Z-test (`"z"`).
    Z,
    /// Population stability index (`"psi"`).
    Psi,
    /// Jensen–Shannon distance of binned shares (`"jensenshannon"`).
    JensenShannon,
    /// Wasserstein-1 distance normed by the reference standard deviation (`"wasserstein"`).
    Wasserstein,
}

impl TestKind {
    /// Evidently's registry name, for reports that people cross-check against Evidently.
    pub fn name(self) -> &'static str {
        match self {
            TestKind::Ks => "ks",
            TestKind::ChiSquare => "chisquare",
            TestKind::Z => "z",
            TestKind::Psi => "psi",
            TestKind::JensenShannon => "jensenshannon",
            TestKind::Wasserstein => "wasserstein",
        }
    }

    /// Evidently's default threshold for this test.
    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    /// True when the score is a p-value (small means drift) rather than a distance.
    pub fn is_p_value(self) -> bool {
        matches!(self, TestKind::Ks | TestKind::ChiSquare | TestKind::Z)
    }

    /// Whether a score crosses the threshold, using each test's own comparison.
    pub fn is_drift(self, score: f64, threshold: f64) -> bool {
        match self {
            TestKind::Ks => score <= threshold,
            TestKind::ChiSquare | TestKind::Z => score < threshold,
            TestKind::Psi | TestKind::JensenShannon | TestKind::Wasserstein => score >= threshold,
        }
    }
}

/// A window of one column, borrowed from the validator's batch.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    /// Numeric values; NaN and ±∞ count as missing.
    Numeric(&'a [f64]),
    /// Categorical values; `None` counts as missing.
    Categorical(&'a [Option<&'a str>]),
}

/// Outcome of one drift test on one column.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriftResult {
    /// The test that ran.
    pub test: TestKind,
    /// Evidently's `drift_score`: the p-value for p-value tests, else the distance.
    pub score: f64,
    /// The raw test statistic when there is one (KS `D`, χ², `z`).
    pub statistic: Option<f64>,
    /// The p-value for p-value tests.
    pub p_value: Option<f64>,
    /// Threshold the score was compared with.
    pub threshold: f64,
    /// Whether the score crosses the threshold.
    pub drifted: bool,
}

/// Evidently's default test for a column, from the column kind, the reference
/// size and the number of distinct non-missing values in reference and current
/// combined (see the module docs for the table).
pub fn select_test(kind: ColumnKind, n_reference: usize, n_unique: usize) -> TestKind {
    let few = if n_unique > 2 {
        TestKind::ChiSquare
    } else {
        TestKind::Z
    };
    match (kind, n_reference <= 1000) {
        (ColumnKind::Numeric, true) => {
            if n_unique <= 5 {
                few
            } else {
                TestKind::Ks
            }
        }
        (ColumnKind::Categorical, true) => few,
        (ColumnKind::Numeric, false) => {
            if n_unique <= 5 {
                TestKind::JensenShannon
            } else {
                TestKind::Wasserstein
            }
        }
        (ColumnKind::Categorical, false) => TestKind::JensenShannon,
    }
}

/// Runs `test` with its default threshold.
pub fn run(
    test: TestKind,
    reference: Column<'_>,
    current: Column<'_>,
) -> Result<DriftResult, StatsError> {
    run_with_threshold(test, reference, current, test.default_threshold())
}

/// Cleans both windows, picks the test as Evidently would, and runs it with its default threshold.
pub fn auto(reference: Column<'_>, current: Column<'_>) -> Result<DriftResult, StatsError> {
    let (r, c) = clean(reference, current)?;
    let (kind, n_unique) = match (&r, &c) {
        (Clean::Num(a), Clean::Num(b)) => (ColumnKind::Numeric, distinct_numeric(a, b)),
        (Clean::Cat(a), Clean::Cat(b)) => {
            let mut all: Vec<&str> = a.iter().chain(b.iter()).copied().collect();
            all.sort_unstable();
            all.dedup();
            (ColumnKind::Categorical, all.len())
        }
        _ => return Err(StatsError::MixedColumnKinds),
    };
    let test = select_test(kind, r.len(), n_unique);
    run_clean(test, &r, &c, test.default_threshold())
}

/// Runs `test` with an explicit threshold (Evidently's `stattest_threshold`).
pub fn run_with_threshold(
    test: TestKind,
    reference: Column<'_>,
    current: Column<'_>,
    threshold: f64,
) -> Result<DriftResult, StatsError> {
    let (r, c) = clean(reference, current)?;
    run_clean(test, &r, &c, threshold)
}

enum Clean<'a> {
    Num(Vec<f64>),
    Cat(Vec<&'a str>),
}

impl Clean<'_> {
    fn len(&self) -> usize {
        match self {
            Clean::Num(v) => v.len(),
            Clean::Cat(v) => v.len(),
        }
    }
}

fn clean_one<'a>(what: &'static str, col: Column<'a>) -> Result<Clean<'a>, StatsError> {
    let out = match col {
        // -0.0 and 0.0 are one value for counting, as in pandas.
        Column::Numeric(xs) => Clean::Num(
            xs.iter()
                .filter(|x| x.is_finite())
                .map(|&x| x + 0.0)
                .collect(),
        ),
        Column::Categorical(xs) => Clean::Cat(xs.iter().flatten().copied().collect()),
    };
    if out.len() == 0 {
        return Err(StatsError::Empty { what });
    }
    Ok(out)
}

fn clean<'a>(
    reference: Column<'a>,
    current: Column<'a>,
) -> Result<(Clean<'a>, Clean<'a>), StatsError> {
    let r = clean_one("reference (after dropping missing values)", reference)?;
    let c = clean_one("current (after dropping missing values)", current)?;
    if matches!(
        (&r, &c),
        (Clean::Num(_), Clean::Cat(_)) | (Clean::Cat(_), Clean::Num(_))
    ) {
        return Err(StatsError::MixedColumnKinds);
    }
    Ok((r, c))
}

fn distinct_numeric(a: &[f64], b: &[f64]) -> usize {
    let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all.len()
}

fn run_clean(
    test: TestKind,
    r: &Clean<'_>,
    c: &Clean<'_>,
    threshold: f64,
) -> Result<DriftResult, StatsError> {
    let (score, statistic, p_value) = match test {
        TestKind::Ks => {
            let (Clean::Num(a), Clean::Num(b)) = (r, c) else {
                return Err(StatsError::WrongColumnKind {
                    test: "ks",
                    needs: "numeric",
                });
            };
            let ks = ks_2samp(a, b)?;
            (ks.p_value, Some(ks.statistic), Some(ks.p_value))
        }
        TestKind::Wasserstein => {
            let (Clean::Num(a), Clean::Num(b)) = (r, c) else {
                return Err(StatsError::WrongColumnKind {
                    test: "wasserstein",
                    needs: "numeric",
                });
            };
            let d = wasserstein_distance(a, b)? / std_dev(a).max(0.001);
            (d, None, None)
        }
        TestKind::ChiSquare => {
            let (rc, cc) = value_counts(r, c);
            let (stat, p) = chi_square(&rc, &cc)?;
            (p, Some(stat), Some(p))
        }
        TestKind::Z => {
            let (rc, cc) = value_counts(r, c);
            let (stat, p) = z_test(&rc, &cc);
            (p, stat, Some(p))
        }
        TestKind::Psi => {
            let (mut rp, mut cp) = binned_shares(r, c);
            fill_empty_bins(&mut rp);
            fill_empty_bins(&mut cp);
            let psi = rp
                .iter()
                .zip(&cp)
                .map(|(a, b)| (a - b) * (a / b).ln())
                .sum();
            (psi, None, None)
        }
        TestKind::JensenShannon => {
            let (rp, cp) = binned_shares(r, c);
            (jensen_shannon(&rp, &cp), None, None)
        }
    };
    Ok(DriftResult {
        test,
        score,
        statistic,
        p_value,
        threshold,
        drifted: test.is_drift(score, threshold),
    })
}

/// Counts of every distinct value in either window, in sorted value order
/// (so index 0 is the smallest category, which the Z-test codes as 0).
fn value_counts(r: &Clean<'_>, c: &Clean<'_>) -> (Vec<u64>, Vec<u64>) {
    match (r, c) {
        (Clean::Num(a), Clean::Num(b)) => {
            let mut keys: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
            keys.sort_by(f64::total_cmp);
            keys.dedup();
            let count = |xs: &[f64]| {
                let mut out = vec![0u64; keys.len()];
                for x in xs {
                    out[keys.binary_search_by(|k| k.total_cmp(x)).unwrap()] += 1;
                }
                out
            };
            (count(a), count(b))
        }
        (Clean::Cat(a), Clean::Cat(b)) => {
            let mut keys: Vec<&str> = a.iter().chain(b.iter()).copied().collect();
            keys.sort_unstable();
            keys.dedup();
            let count = |xs: &[&str]| {
                let mut out = vec![0u64; keys.len()];
                for x in xs {
                    out[keys.binary_search(x).unwrap()] += 1;
                }
                out
            };
            (count(a), count(b))
        }
        _ => unreachable!("clean() rejects mixed kinds"),
    }
}

fn chi_square(reference: &[u64], current: &[u64]) -> Result<(f64, f64), StatsError> {
    if reference.len() < 2 {
        return Err(StatsError::TooFewClasses {
            what: "categories (chi-square)",
            found: reference.len(),
        });
    }
    let n_ref: u64 = reference.iter().sum();
    let n_cur: u64 = current.iter().sum();
    let k_norm = n_cur as f64 / n_ref as f64;
    let mut stat = 0.0;
    for (&r, &c) in reference.iter().zip(current) {
        let expected = r as f64 * k_norm;
        let diff = c as f64 - expected;
        stat += diff * diff / expected;
    }
    let p = special::chi2_sf(stat, (reference.len() - 1) as f64);
    Ok((stat, p))
}

fn z_test(reference: &[u64], current: &[u64]) -> (Option<f64>, f64) {
    let single = |v: &[u64]| {
        let nz: Vec<usize> = (0..v.len()).filter(|&i| v[i] > 0).collect();
        if nz.len() == 1 { Some(nz[0]) } else { None }
    };
    if let (Some(a), Some(b)) = (single(reference), single(current))
        && a == b
    {
        return (None, 1.0);
    }
    let n1: u64 = reference.iter().sum();
    let n2: u64 = current.iter().sum();
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p1 = (n1 - reference[0]) as f64 / n1f;
    let p2 = (n2 - current[0]) as f64 / n2f;
    let pooled = (p1 * n1f + p2 * n2f) / (n1f + n2f);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    (Some(z), 2.0 * (1.0 - special::ndtr(z.abs())))
}

/// Shares per bin for PSI / Jensen–Shannon, following Evidently's `get_binned_data`.
fn binned_shares(r: &Clean<'_>, c: &Clean<'_>) -> (Vec<f64>, Vec<f64>) {
    let (rc, cc) = match (r, c) {
        (Clean::Num(a), Clean::Num(b)) if distinct_numeric(a, &[]) > 20 => sturges_histograms(a, b),
        _ => value_counts(r, c),
    };
    let shares = |v: &[u64], n: usize| v.iter().map(|&k| k as f64 / n as f64).collect::<Vec<_>>();
    (shares(&rc, r.len()), shares(&cc, c.len()))
}

fn sturges_histograms(a: &[f64], b: &[f64]) -> (Vec<u64>, Vec<u64>) {
    let n = (a.len() + b.len()) as f64;
    let lo = a.iter().chain(b).copied().fold(f64::INFINITY, f64::min);
    let hi = a.iter().chain(b).copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    let width = span / (n.log2() + 1.0);
    let bins = (span / width).ceil() as usize;
    // numpy.linspace: start + i·step, with the last edge set to stop exactly.
    let step = span / bins as f64;
    let mut edges: Vec<f64> = (0..bins).map(|i| i as f64 * step + lo).collect();
    edges.push(hi);
    let hist = |xs: &[f64]| {
        let mut out = vec![0u64; bins];
        for &x in xs {
            if x < edges[0] || x > edges[bins] {
                continue;
            }
            let idx = if x == edges[bins] {
                bins - 1
            } else {
                edges.partition_point(|&e| e <= x) - 1
            };
            out[idx] += 1;
        }
        out
    };
    (hist(a), hist(b))
}

/// Evidently's empty-bin rule (see module docs).
fn fill_empty_bins(shares: &mut [f64]) {
    let min_nonzero = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if min_nonzero <= 0.0001 {
        min_nonzero / 1e6
    } else {
        0.0001
    };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = fill;
    }
}

fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let ps: f64 = p.iter().sum();
    let qs: f64 = q.iter().sum();
    let rel = |x: f64, m: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
    let mut total = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / ps, b / qs);
        let m = (a + b) / 2.0;
        total += rel(a, m) + rel(b, m);
    }
    (total / 2.0).sqrt()
}

fn std_dev(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

fn check_sample(what: &'static str, xs: &[f64]) -> Result<(), StatsError> {
    if xs.is_empty() {
        return Err(StatsError::Empty { what });
    }
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(StatsError::NotFinite { what, index }),
        None => Ok(()),
    }
}

/// First Wasserstein distance between two empirical distributions
/// (`scipy.stats.wasserstein_distance` without weights). Inputs must be finite.
pub fn wasserstein_distance(u: &[f64], v: &[f64]) -> Result<f64, StatsError> {
    check_sample("u", u)?;
    check_sample("v", v)?;
    let mut a = u.to_vec();
    let mut b = v.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut ia, mut ib) = (0usize, 0usize);
    let mut total = 0.0;
    for w in all.windows(2) {
        while ia < a.len() && a[ia] <= w[0] {
            ia += 1;
        }
        while ib < b.len() && b[ib] <= w[0] {
            ib += 1;
        }
        total += (ia as f64 / na - ib as f64 / nb).abs() * (w[1] - w[0]);
    }
    Ok(total)
}

/// Result of the two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KsResult {
    /// Largest absolute gap between the two empirical CDFs.
    pub statistic: f64,
    /// Two-sided p-value, exact or asymptotic as scipy's `method="auto"` chooses.
    pub p_value: f64,
}

/// Two-sample, two-sided Kolmogorov–Smirnov test as `scipy.stats.ks_2samp`
/// (`method="auto"`): exact p-value when both samples have at most 10000
/// values, otherwise the finite-n asymptotic one (see module docs).
pub fn ks_2samp(sample1: &[f64], sample2: &[f64]) -> Result<KsResult, StatsError> {
    check_sample("sample1", sample1)?;
    check_sample("sample2", sample2)?;
    let mut a = sample1.to_vec();
    let mut b = sample2.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    // Evaluate F1 - F2 at every pooled value (right-continuous ECDFs).
    let (mut max_diff, mut min_diff) = (f64::NEG_INFINITY, f64::INFINITY);
    let (mut ia, mut ib) = (0usize, 0usize);
    while ia < a.len() || ib < b.len() {
        let x = match (a.get(ia), b.get(ib)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while ia < a.len() && a[ia] <= x {
            ia += 1;
        }
        while ib < b.len() && b[ib] <= x {
            ib += 1;
        }
        let diff = ia as f64 / n1f - ib as f64 / n2f;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    let mut d = if min_s > max_diff { min_s } else { max_diff };

    if n1.max(n2) <= 10_000 {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = round_half_even(d * lcm as f64) as u64;
        d = h as f64 / lcm as f64;
        if h == 0 {
            return Ok(KsResult {
                statistic: d,
                p_value: 1.0,
            });
        }
        let p = if n1 == n2 {
            prob_outside_square(n1, h)
        } else {
            prob_outside_band(n1, n2, g, h)
        };
        if (0.0..=1.0).contains(&p) {
            return Ok(KsResult {
                statistic: d,
                p_value: p,
            });
        }
    }
    let (m, n) = if n1f >= n2f { (n1f, n2f) } else { (n2f, n1f) };
    let en = m * n / (m + n);
    let p = special::kolmogorov_n_sf(round_half_even(en) as u64, d);
    Ok(KsResult {
        statistic: d,
        p_value: p.clamp(0.0, 1.0),
    })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `P(D ≥ h/n)` for two samples of equal size `n` (reflection principle).
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let mut p = 0.0;
    let mut k = n / h;
    loop {
        let mut p1 = 1.0f64;
        for j in 0..h {
            p1 = (n as f64 - (k * h) as f64 - j as f64) * p1
                / (n as f64 + (k * h) as f64 + j as f64 + 1.0);
        }
        p = p1 * (1.0 - p);
        if k == 0 {
            break;
        }
        k -= 1;
    }
    2.0 * p
}

/// `P(D ≥ h/L)` for unequal sizes: share of lattice paths (i steps for sample
/// 1, j steps for sample 2) that touch `|i·n2/g − j·n1/g| ≥ h`. Each band
/// cell holds the share of paths into it that already left the band; cells
/// outside the band hold 1.
fn prob_outside_band(n1: u64, n2: u64, g: u64, h: u64) -> f64 {
    let (a, b, h) = ((n2 / g) as i64, (n1 / g) as i64, h as i64);
    let n2u = n2 as usize;
    let floor_div = |x: i64, y: i64| x.div_euclid(y);
    let ceil_div = |x: i64, y: i64| -((-x).div_euclid(y));
    let band = |i: i64| {
        let lo = (floor_div(i * a - h, b) + 1).max(0);
        let hi = (ceil_div(i * a + h, b) - 1).min(n2 as i64);
        (lo, hi)
    };
    let mut col = vec![1.0f64; n2u + 1];
    let (_, hi0) = band(0);
    for v in col.iter_mut().take(hi0 as usize + 1) {
        *v = 0.0;
    }
    for i in 1..=n1 as i64 {
        let (lo, hi) = band(i);
        if lo > hi {
            return 1.0;
        }
        let fi = i as f64;
        let mut below = 1.0; // the cell under `lo` is outside the band (or absent)
        for j in lo..=hi {
            let fj = j as f64;
            let left = col[j as usize];
            let v = (fi * left + fj * below) / (fi + fj);
            col[j as usize] = v;
            below = v;
        }
    }
    col[n2u]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_test_table() {
        use ColumnKind::*;
        assert_eq!(select_test(Numeric, 1000, 6), TestKind::Ks);
        assert_eq!(select_test(Numeric, 1000, 5), TestKind::ChiSquare);
        assert_eq!(select_test(Numeric, 10, 2), TestKind::Z);
        assert_eq!(select_test(Categorical, 10, 3), TestKind::ChiSquare);
        assert_eq!(select_test(Categorical, 10, 1), TestKind::Z);
        assert_eq!(select_test(Numeric, 1001, 6), TestKind::Wasserstein);
        assert_eq!(select_test(Numeric, 1001, 5), TestKind::JensenShannon);
        assert_eq!(select_test(Categorical, 1001, 2), TestKind::JensenShannon);
    }

    #[test]
    fn thresholds_and_comparisons() {
        assert_eq!(TestKind::Ks.default_threshold(), 0.05);
        assert_eq!(TestKind::Psi.default_threshold(), 0.1);
        assert!(TestKind::Ks.is_drift(0.05, 0.05));
        assert!(!TestKind::ChiSquare.is_drift(0.05, 0.05));
        assert!(TestKind::Wasserstein.is_drift(0.1, 0.1));
    }

    #[test]
    fn ks_identical_samples_have_p_one() {
        let x = [1.0, 2.0, 3.0];
        let r = ks_2samp(&x, &x).unwrap();
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn ks_disjoint_small_samples() {
        // All of sample 1 below sample 2: D = 1, p = 2 / C(n1+n2, n1).
        let r = ks_2samp(&[1.0, 2.0], &[3.0, 4.0, 5.0]).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!((r.p_value - 2.0 / 10.0).abs() < 1e-15, "{}", r.p_value);
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((r.p_value - 2.0 / 20.0).abs() < 1e-15, "{}", r.p_value);
    }

    #[test]
    fn missing_values_are_dropped_and_empty_is_an_error() {
        let r = run(
            TestKind::Ks,
            Column::Numeric(&[f64::NAN, 1.0, 2.0]),
            Column::Numeric(&[1.0, 2.0, f64::INFINITY]),
        )
        .unwrap();
        assert_eq!(r.p_value, Some(1.0));
        let e = run(
            TestKind::Ks,
            Column::Numeric(&[f64::NAN]),
            Column::Numeric(&[1.0]),
        )
        .unwrap_err();
        assert!(matches!(e, StatsError::Empty { .. }));
        assert!(e.to_string().contains("reference"), "{e}");
    }

    #[test]
    fn wrong_kinds_are_rejected() {
        let cats = [Some("a"), Some("b")];
        assert!(matches!(
            run(
                TestKind::Ks,
                Column::Categorical(&cats),
                Column::Categorical(&cats)
            ),
            Err(StatsError::WrongColumnKind { .. })
        ));
        assert!(matches!(
            run(
                TestKind::Psi,
                Column::Categorical(&cats),
                Column::Numeric(&[1.0])
            ),
            Err(StatsError::MixedColumnKinds)
        ));
        let one = [Some("a")];
        assert!(matches!(
            run(
                TestKind::ChiSquare,
                Column::Categorical(&one),
                Column::Categorical(&one)
            ),
            Err(StatsError::TooFewClasses { .. })
        ));
    }

    #[test]
    fn z_test_same_single_value_is_p_one() {
        let a = [Some("x"), Some("x")];
        let r = run(
            TestKind::Z,
            Column::Categorical(&a),
            Column::Categorical(&a),
        )
        .unwrap();
        assert_eq!(r.score, 1.0);
        assert!(!r.drifted);
    }

    #[test]
    fn empty_bin_rule() {
        let mut v = [0.5, 0.0, 0.5];
        fill_empty_bins(&mut v);
        assert_eq!(v[1], 0.0001);
        let mut v = [0.00005, 0.0, 0.99995];
        fill_empty_bins(&mut v);
        assert_eq!(v[1], 0.00005 / 1e6);
    }

    #[test]
    fn wasserstein_shift() {
        assert!((wasserstein_distance(&[0.0, 1.0], &[1.0, 2.0]).unwrap() - 1.0).abs() < 1e-15);
    }
}
