//! Probe construction and judgement as plain functions; the candidate is a
//! function argument so tests can pass fake models.

use airlock_guest::{
    Batch, CandidateError, ColumnValues, Context, Feature, PluginError, Predictions, Verdict,
    report::Report,
};
use serde::Deserialize;

use crate::rng::SplitMix64;

/// How many probes a finding lists before summarising the rest.
const SHOW: usize = 8;

/// The step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Perturbation size in standard deviations.
    #[serde(default = "default_noise")]
    pub noise: f64,
    /// Largest allowed share of flipped rows.
    #[serde(default = "default_flip_share")]
    pub max_flip_share: f64,
    /// Relative move of a regression prediction that counts as a flip.
    #[serde(default = "default_delta")]
    pub max_regression_delta: f64,
    /// Rows sampled for the noise probe.
    #[serde(default = "default_sample_rows")]
    pub sample_rows: usize,
    /// Whether the candidate may refuse edge cases with its own error.
    #[serde(default)]
    pub allow_errors_on_edge_cases: bool,
}

fn default_noise() -> f64 {
    0.01
}
fn default_flip_share() -> f64 {
    0.05
}
fn default_delta() -> f64 {
    0.05
}
fn default_sample_rows() -> usize {
    50
}

impl Default for Config {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every key has a default")
    }
}

impl Config {
    /// Refuses values that make no sense, naming the key.
    pub fn validate(&self) -> Result<(), PluginError> {
        let bad = |k: &str, want: &str, v: f64| {
            Err(airlock_guest::config::key_error(
                k,
                format!("must be {want}, got {v}"),
            ))
        };
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad("noise", "a finite number ≥ 0", self.noise);
        }
        if !(0.0..=1.0).contains(&self.max_flip_share) {
            return bad("max_flip_share", "in [0, 1]", self.max_flip_share);
        }
        if !(self.max_regression_delta.is_finite() && self.max_regression_delta >= 0.0) {
            return bad(
                "max_regression_delta",
                "a finite number ≥ 0",
                self.max_regression_delta,
            );
        }
        if self.sample_rows == 0 {
            return bad("sample_rows", "at least 1", 0.0);
        }
        Ok(())
    }
}

/// Whether an error from the candidate is the model's own refusal (as
/// opposed to a trap or a sandbox limit, which the host reports as a typed
/// failure the model cannot imitate).
pub fn is_refusal(e: &CandidateError) -> bool {
    e.is_refusal()
}

/// Observed statistics of one numeric input over the evaluation data.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericStats {
    /// Column name.
    pub name: String,
    /// Population standard deviation of the finite values (0 when none).
    pub std: f64,
    /// Smallest finite value (0 when none).
    pub min: f64,
    /// Largest finite value (0 when none).
    pub max: f64,
}

impl NumericStats {
    /// Statistics of `values`, ignoring NaN and infinities.
    pub fn of(name: &str, values: &[f64]) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if finite.is_empty() {
            return NumericStats {
                name: name.to_string(),
                std: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        NumericStats {
            name: name.to_string(),
            std: var.sqrt(),
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// The observed range, or a unit-sized stand-in for a constant column so
    /// that "far outside" still moves the value.
    pub fn range(&self) -> f64 {
        let r = self.max - self.min;
        if r > 0.0 { r } else { self.max.abs().max(1.0) }
    }
}

/// The inputs probes work on: the candidate's declared inputs present in
/// the batch (every column when the candidate declares none), split by kind.
pub fn probe_inputs(inputs: &[Feature], batch: &Batch) -> (Vec<NumericStats>, Vec<String>) {
    let names: Vec<&str> = if inputs.is_empty() {
        batch.column_names().collect()
    } else {
        inputs
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| batch.column(n).is_some())
            .collect()
    };
    let mut numeric = Vec::new();
    let mut categorical = Vec::new();
    for n in names {
        match &batch.column(n).expect("filtered above").values {
            ColumnValues::Numeric(v) => numeric.push(NumericStats::of(n, v)),
            ColumnValues::Categorical(_) => categorical.push(n.to_string()),
        }
    }
    (numeric, categorical)
}

/// `batch` with every numeric input moved by ±`noise`·σ (sign at random per cell).
pub fn perturb(batch: &Batch, numeric: &[NumericStats], noise: f64, rng: &mut SplitMix64) -> Batch {
    let mut out = batch.clone();
    for s in numeric {
        let step = noise * s.std;
        if let Some(col) = out.columns.iter_mut().find(|c| c.name == s.name)
            && let ColumnValues::Numeric(v) = &mut col.values
        {
            for x in v.iter_mut() {
                *x += rng.sign() * step;
            }
        }
    }
    out
}

/// One edge-case probe: a name for reports and how it changes the base row.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What the probe does, e.g. "`age` = +inf".
    pub name: String,
    /// Cells to set: (column, value); `None` for a missing category.
    pub cells: Vec<(String, Cell)>,
}

/// A value an edge-case probe writes into a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A number (NaN for missing).
    Number(f64),
    /// A missing category.
    NoCategory,
}

/// Every edge-case probe for the given inputs (see the crate docs).
pub fn edge_probes(numeric: &[NumericStats], categorical: &[String]) -> Vec<Probe> {
    let mut probes = Vec::new();
    for s in numeric {
        let far = 1e6 * s.range();
        for (what, v) in [
            ("NaN (missing)", f64::NAN),
            ("+inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("far above range", s.max + far),
            ("far below range", s.min - far),
        ] {
            let name = if v.is_finite() {
                format!("`{}` {what} ({v:e})", s.name)
            } else {
                format!("`{}` = {what}", s.name)
            };
            probes.push(Probe {
                name,
                cells: vec![(s.name.clone(), Cell::Number(v))],
            });
        }
    }
    for c in categorical {
        probes.push(Probe {
            name: format!("`{c}` = missing category"),
            cells: vec![(c.clone(), Cell::NoCategory)],
        });
    }
    if !numeric.is_empty() {
        probes.push(Probe {
            name: "all-zeros row".to_string(),
            cells: numeric
                .iter()
                .map(|s| (s.name.clone(), Cell::Number(0.0)))
                .collect(),
        });
    }
    probes
}

/// A batch with one row per probe: row `base` of `data`, changed as the probe says.
pub fn probe_batch(data: &Batch, base: usize, probes: &[Probe]) -> Batch {
    let mut b = data.select_rows(&vec![base; probes.len()]);
    for (row, p) in probes.iter().enumerate() {
        for (col, cell) in &p.cells {
            let Some(c) = b.columns.iter_mut().find(|c| &c.name == col) else {
                continue;
            };
            match (&mut c.values, cell) {
                (ColumnValues::Numeric(v), Cell::Number(x)) => v[row] = *x,
                (ColumnValues::Categorical(v), Cell::NoCategory) => v[row] = None,
                _ => {}
            }
        }
    }
    b
}

/// Whether row `i` moved enough under noise to count as a flip.
pub fn flipped(before: &Predictions, after: &Predictions, i: usize, delta: f64) -> bool {
    if before.width == 1 {
        let (a, b) = (before.row(i)[0], after.row(i)[0]);
        if !(a.is_finite() && b.is_finite()) {
            return a.to_bits() != b.to_bits();
        }
        (b - a).abs() > delta * a.abs()
    } else {
        after.row(i).iter().any(|v| !v.is_finite())
            || before.predicted_class(i) != after.predicted_class(i)
    }
}

fn list(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(SHOW).map(String::as_str).collect();
    let more = items.len().saturating_sub(SHOW);
    if more > 0 {
        format!("{}; and {more} more", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

fn error_text(e: &CandidateError) -> String {
    format!("{}: {}", e.code(), e.message())
}

/// Relative and absolute tolerance within which the candidate's answer on
/// an unperturbed row inside a probe batch must equal the gate's own
/// prediction for that row.
pub const CONSISTENCY_TOLERANCE: f64 = 1e-9;

/// Whether two predicted values agree within [`CONSISTENCY_TOLERANCE`]
/// (absolute, or relative to the larger magnitude); NaN agrees only with
/// NaN and an infinity only with itself.
pub fn agrees(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= CONSISTENCY_TOLERANCE || diff <= CONSISTENCY_TOLERANCE * a.abs().max(b.abs())
}

/// The whole step: parses and checks the config, then probes the candidate
/// through `predict`. On the host's dry run (no rows) it stops after the
/// config check with a passing verdict.
pub fn run(
    ctx: &Context,
    predict: impl FnMut(&Batch) -> Result<Predictions, CandidateError>,
) -> Result<Verdict, PluginError> {
    let cfg: Config = ctx.config()?;
    cfg.validate().map_err(|e| ctx.name_step(e))?;
    if ctx.is_dry_run() {
        return Ok(Report::new().finish());
    }
    probe(
        &cfg,
        &ctx.data,
        &ctx.candidate_predictions,
        &ctx.candidate.metadata.inputs,
        ctx.seed,
        predict,
    )
    .map(Report::finish)
}

/// Where a row of a mixed probe batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Row `i` of the probe batch.
    Probe(usize),
    /// An unperturbed copy of evaluation row `i`.
    Anchor(usize),
}

/// What the candidate answered for the probe rows of one mixed batch.
enum Answer {
    /// The predictions for the probe rows, in probe order.
    Fine(Predictions),
    /// The output did not have the expected shape (described).
    BadShape(String),
}

/// Sends probe batches to the candidate with unperturbed copies of
/// evaluation rows ("anchors") mixed in at seeded random positions, and
/// checks each anchor's answer against the prediction the gate already
/// holds for that row. A model cannot tell anchors from probes, so one that
/// answers probe-sized batches differently (say, with a constant) is caught.
struct Asker<'a, F> {
    data: &'a Batch,
    gate: &'a Predictions,
    rng: SplitMix64,
    predict: F,
    inconsistent: Vec<String>,
    anchors_checked: usize,
}

impl<F: FnMut(&Batch) -> Result<Predictions, CandidateError>> Asker<'_, F> {
    /// `probe` with the evaluation rows `anchors` mixed in.
    fn ask(
        &mut self,
        what: &str,
        probe: &Batch,
        anchors: &[usize],
    ) -> Result<Answer, CandidateError> {
        let total = probe.len() + anchors.len();
        let mut order: Vec<Source> = (0..probe.len())
            .map(Source::Probe)
            .chain(anchors.iter().map(|&r| Source::Anchor(r)))
            .collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.below(i + 1);
            order.swap(i, j);
        }
        let mixed = interleave(probe, self.data, &order);
        let p = (self.predict)(&mixed)?;
        let width = self.gate.width;
        if p.width != width || p.values.len() != total * width as usize {
            return Ok(Answer::BadShape(format!(
                "{} values of width {} for {total} rows (expected width {width})",
                p.values.len(),
                p.width
            )));
        }
        let mut values = Vec::with_capacity(probe.len() * width as usize);
        for (pos, src) in order.iter().enumerate() {
            match *src {
                Source::Probe(_) => values.extend_from_slice(p.row(pos)),
                Source::Anchor(r) => {
                    self.anchors_checked += 1;
                    let (got, want) = (p.row(pos), self.gate.row(r));
                    if !got.iter().zip(want).all(|(a, b)| agrees(*a, *b)) {
                        self.inconsistent.push(format!(
                            "data row {} in the {what} batch: {got:?}, but {want:?} when the gate scored it",
                            r + 1
                        ));
                    }
                }
            }
        }
        // Probe rows were pushed in batch order, which is a permutation of
        // probe order: put them back.
        let mut probe_rows: Vec<usize> = order
            .iter()
            .filter_map(|s| match s {
                Source::Probe(i) => Some(*i),
                Source::Anchor(_) => None,
            })
            .collect();
        let w = width as usize;
        let mut sorted = vec![0.0; values.len()];
        for (k, i) in probe_rows.drain(..).enumerate() {
            sorted[i * w..(i + 1) * w].copy_from_slice(&values[k * w..(k + 1) * w]);
        }
        Ok(Answer::Fine(Predictions {
            width,
            values: sorted,
        }))
    }
}

/// The rows of `probe` and `data` in the given order, as one batch (both
/// have the same columns, since probes are built from `data`).
fn interleave(probe: &Batch, data: &Batch, order: &[Source]) -> Batch {
    let columns = probe
        .columns
        .iter()
        .map(|c| {
            let from_data = data.column(&c.name);
            let values = match &c.values {
                ColumnValues::Numeric(v) => {
                    let d = from_data.and_then(|d| d.numeric().ok()).unwrap_or(&[]);
                    ColumnValues::Numeric(
                        order
                            .iter()
                            .map(|s| match *s {
                                Source::Probe(i) => v[i],
                                Source::Anchor(r) => d.get(r).copied().unwrap_or(f64::NAN),
                            })
                            .collect(),
                    )
                }
                ColumnValues::Categorical(v) => {
                    let d = from_data.and_then(|d| d.categorical().ok()).unwrap_or(&[]);
                    ColumnValues::Categorical(
                        order
                            .iter()
                            .map(|s| match *s {
                                Source::Probe(i) => v[i].clone(),
                                Source::Anchor(r) => d.get(r).cloned().flatten(),
                            })
                            .collect(),
                    )
                }
            };
            airlock_guest::Column {
                name: c.name.clone(),
                values,
            }
        })
        .collect();
    Batch {
        rows: order.len() as u32,
        columns,
    }
}

/// Runs the noise and edge-case probes and reports what happened.
///
/// `gate` holds the candidate's predictions on every row of `data`, made by
/// the host before this step ran; the noise probe compares against them,
/// and every probe batch carries unperturbed copies of the probed rows
/// whose answers must agree with them (`inconsistent-probe-answers`).
pub fn probe(
    cfg: &Config,
    data: &Batch,
    gate: &Predictions,
    inputs: &[Feature],
    seed: u64,
    predict: impl FnMut(&Batch) -> Result<Predictions, CandidateError>,
) -> Result<Report, PluginError> {
    let mut report = Report::new();
    if data.is_empty() {
        report.fail(
            "no-rows",
            "the evaluation data has no rows to build probes from",
        );
        return Ok(report);
    }
    if gate.width == 0 || gate.values.len() != data.len() * gate.width as usize {
        return Err(PluginError::bad_input(format!(
            "the gate's predictions hold {} values of width {} for {} evaluation rows",
            gate.values.len(),
            gate.width,
            data.len()
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let rows = rng.sample(data.len(), cfg.sample_rows);
    let sample = data.select_rows(&rows);
    let (numeric, categorical) = probe_inputs(inputs, data);
    let mut ask = Asker {
        data,
        gate,
        // A separate stream, so that where anchors go never changes which
        // rows are sampled or how they are perturbed.
        rng: SplitMix64::new(seed ^ 0xa5a5_5a5a_c3c3_3c3c),
        predict,
        inconsistent: Vec::new(),
        anchors_checked: 0,
    };

    // (a) noise: the gate's predictions on the sampled rows are "before".
    let before = Predictions {
        width: gate.width,
        values: rows.iter().flat_map(|&r| gate.row(r).to_vec()).collect(),
    };
    let mut probes = 0usize;
    let noisy = perturb(&sample, &numeric, cfg.noise, &mut rng);
    probes += rows.len();
    match ask.ask("noise", &noisy, &rows) {
        Err(e) => {
            report.fail(
                "probe-error",
                format!(
                    "noise probe: the candidate failed on {} rows perturbed by {}σ: {}",
                    rows.len(),
                    cfg.noise,
                    error_text(&e)
                ),
            );
        }
        Ok(Answer::BadShape(what)) => {
            report.fail(
                "probe-bad-output",
                format!("noise probe: the candidate returned {what}"),
            );
        }
        Ok(Answer::Fine(after)) => {
            let flipped_rows: Vec<usize> = (0..rows.len())
                .filter(|&i| flipped(&before, &after, i, cfg.max_regression_delta))
                .collect();
            let share = flipped_rows.len() as f64 / rows.len() as f64;
            report.metric("flip_share", share);
            report.metric("flips", flipped_rows.len() as f64);
            let what = if before.width == 1 {
                format!("moved by more than {} relative", cfg.max_regression_delta)
            } else {
                "changed predicted class".to_string()
            };
            let examples: Vec<String> = flipped_rows
                .iter()
                .take(SHOW)
                .map(|&i| rows[i].to_string())
                .collect();
            let msg = format!(
                "{} of {} rows {what} when numeric inputs moved by {}σ (flip share {:.4}, max_flip_share {}){}",
                flipped_rows.len(),
                rows.len(),
                cfg.noise,
                share,
                cfg.max_flip_share,
                if examples.is_empty() {
                    String::new()
                } else {
                    format!("; rows {}", examples.join(", "))
                }
            );
            if share > cfg.max_flip_share {
                report.fail("prediction-flips", msg);
            } else {
                report.info("prediction-flips", msg);
            }
        }
    }

    // (b) edge cases, with the base row itself mixed in.
    let edge = edge_probes(&numeric, &categorical);
    probes += edge.len();
    let mut errors = Vec::new();
    let mut non_finite = Vec::new();
    let mut bad_output = Vec::new();
    let mut refused = Vec::new();
    if !edge.is_empty() {
        let base = rows[0];
        let all = probe_batch(data, base, &edge);
        match ask.ask("edge-case", &all, &[base]) {
            Ok(Answer::Fine(p)) => {
                for (i, probe) in edge.iter().enumerate() {
                    if p.row(i).iter().any(|v| !v.is_finite()) {
                        non_finite.push(format!("{} -> {:?}", probe.name, p.row(i)));
                    }
                }
            }
            Ok(Answer::BadShape(what)) => bad_output.push(format!("all edge cases: {what}")),
            Err(_) => {
                // Find out which probes the candidate fails on, one at a time.
                for probe in &edge {
                    let one = probe_batch(data, base, std::slice::from_ref(probe));
                    match ask.ask("edge-case", &one, &[base]) {
                        Ok(Answer::Fine(p)) => {
                            if p.row(0).iter().any(|v| !v.is_finite()) {
                                non_finite.push(format!("{} -> {:?}", probe.name, p.row(0)));
                            }
                        }
                        Ok(Answer::BadShape(what)) => {
                            bad_output.push(format!("{}: {what}", probe.name));
                        }
                        Err(e) if cfg.allow_errors_on_edge_cases && is_refusal(&e) => {
                            refused.push(format!("{}: {}", probe.name, error_text(&e)));
                        }
                        Err(e) => errors.push(format!("{}: {}", probe.name, error_text(&e))),
                    }
                }
            }
        }
    }
    let failures = errors.len() + non_finite.len() + bad_output.len();
    report.metric("probes", probes as f64);
    report.metric("edge_case_failures", failures as f64);
    report.metric("anchor_rows", ask.anchors_checked as f64);
    report.metric("inconsistent_answers", ask.inconsistent.len() as f64);
    if !ask.inconsistent.is_empty() {
        report.fail(
            "inconsistent-probe-answers",
            format!(
                "the candidate answered {} of {} unperturbed evaluation rows mixed into its probe batches differently from the gate's own predictions (tolerance {CONSISTENCY_TOLERANCE:e}), so its probe answers cannot be trusted: {}",
                ask.inconsistent.len(),
                ask.anchors_checked,
                list(&ask.inconsistent)
            ),
        );
    }
    if !errors.is_empty() {
        let hint = if cfg.allow_errors_on_edge_cases {
            " (traps and sandbox limits always fail)"
        } else {
            " (set `allow_errors_on_edge_cases = true` to let the model refuse them with its own error)"
        };
        report.fail(
            "edge-case-error",
            format!(
                "the candidate failed on {} of {} edge-case probes{hint}: {}",
                errors.len(),
                edge.len(),
                list(&errors)
            ),
        );
    }
    if !non_finite.is_empty() {
        report.fail(
            "edge-case-non-finite",
            format!(
                "the candidate returned NaN or infinity for {} of {} edge-case probes: {}",
                non_finite.len(),
                edge.len(),
                list(&non_finite)
            ),
        );
    }
    if !bad_output.is_empty() {
        report.fail(
            "edge-case-bad-output",
            format!(
                "the candidate returned predictions of the wrong shape: {}",
                list(&bad_output)
            ),
        );
    }
    if !refused.is_empty() {
        report.info(
            "edge-case-refused",
            format!(
                "the candidate refused {} of {} edge-case probes with its own error (allowed): {}",
                refused.len(),
                edge.len(),
                list(&refused)
            ),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_guest::{Column, FailureKind, FeatureKind, SandboxFailure, Severity};
    use serde_json::json;

    fn data() -> Batch {
        Batch {
            rows: 40,
            columns: vec![
                Column {
                    name: "x".into(),
                    values: ColumnValues::Numeric((0..40).map(|i| i as f64 / 10.0).collect()),
                },
                Column {
                    name: "y".into(),
                    values: ColumnValues::Numeric((0..40).map(|i| (i % 7) as f64).collect()),
                },
                Column {
                    name: "c".into(),
                    values: ColumnValues::Categorical(
                        (0..40)
                            .map(|i| Some(["a", "b"][i % 2].to_string()))
                            .collect(),
                    ),
                },
                Column {
                    name: "target".into(),
                    values: ColumnValues::Numeric(vec![0.0; 40]),
                },
            ],
        }
    }

    fn inputs() -> Vec<Feature> {
        vec![
            Feature {
                name: "x".into(),
                kind: FeatureKind::Numeric,
            },
            Feature {
                name: "y".into(),
                kind: FeatureKind::Numeric,
            },
            Feature {
                name: "c".into(),
                kind: FeatureKind::Categorical,
            },
        ]
    }

    /// A binary model: p = sigmoid(x + y − 4); NaN in, NaN out.
    fn logistic(b: &Batch) -> Result<Predictions, PluginError> {
        let x = b.numeric("x")?;
        let y = b.numeric("y")?;
        let mut v = Vec::new();
        for i in 0..b.len() {
            let p = 1.0 / (1.0 + (-(x[i] + y[i] - 4.0)).exp());
            v.extend([1.0 - p, p]);
        }
        Ok(Predictions::probabilities(2, v))
    }

    /// The same model, but missing and infinite inputs are replaced by 0 and
    /// inputs are clamped, so every output is finite.
    fn hardened(b: &Batch) -> Result<Predictions, PluginError> {
        let mut b = b.clone();
        for c in &mut b.columns {
            if let ColumnValues::Numeric(v) = &mut c.values {
                for x in v.iter_mut() {
                    *x = if x.is_nan() {
                        0.0
                    } else {
                        x.clamp(-100.0, 100.0)
                    };
                }
            }
        }
        logistic(&b)
    }

    /// Refuses rows with missing or infinite values with its own error.
    fn strict(b: &Batch) -> Result<Predictions, PluginError> {
        for c in &b.columns {
            if let ColumnValues::Numeric(v) = &c.values
                && v.iter().any(|x| !x.is_finite())
            {
                return Err(PluginError::new(
                    "bad-input",
                    format!("`{}` must be finite", c.name),
                ));
            }
        }
        hardened(b)
    }

    fn run_cfg(
        cfg: serde_json::Value,
        seed: u64,
        f: fn(&Batch) -> Result<Predictions, PluginError>,
    ) -> Verdict {
        let cfg: Config = serde_json::from_value(cfg).unwrap();
        cfg.validate().unwrap();
        let gate = f(&data()).unwrap();
        probe(&cfg, &data(), &gate, &inputs(), seed, |b| {
            f(b).map_err(CandidateError::Refused)
        })
        .unwrap()
        .finish()
    }

    fn codes(v: &Verdict) -> Vec<&str> {
        v.finding_codes()
    }

    fn metric(v: &Verdict, name: &str) -> f64 {
        v.metric(name).unwrap_or_else(|| panic!("no metric {name}"))
    }

    #[test]
    fn hardened_model_passes_every_probe() {
        let v = run_cfg(json!({}), 1, hardened);
        assert!(v.passed, "{:?}", v.findings);
        assert_eq!(codes(&v), ["prediction-flips"]);
        assert_eq!(v.findings[0].severity, Severity::Info);
        // 40 noisy rows (all rows: sample_rows 50 > 40) + 5 × 2 numeric + 1 categorical + all-zeros.
        assert_eq!(metric(&v, "probes"), 40.0 + 10.0 + 1.0 + 1.0);
        assert_eq!(metric(&v, "edge_case_failures"), 0.0);
        // Every sampled row rode along unperturbed in the noise batch, and
        // the base row in the edge-case batch; all agreed with the gate.
        assert_eq!(metric(&v, "anchor_rows"), 40.0 + 1.0);
        assert_eq!(metric(&v, "inconsistent_answers"), 0.0);
    }

    /// Honest on the gate's full batch (40 rows), a constant on anything
    /// smaller — such as probe batches. Without anchors this passed: no
    /// flips (the same constant before and after noise), finite edge cases.
    fn constant_on_small_batches(b: &Batch) -> Result<Predictions, PluginError> {
        if b.len() >= 40 {
            return hardened(b);
        }
        Ok(Predictions::probabilities(2, [0.3, 0.7].repeat(b.len())))
    }

    #[test]
    fn a_model_constant_on_small_batches_is_caught_by_unperturbed_rows_in_its_probes() {
        let gate = hardened(&data()).unwrap();
        let cfg: Config = serde_json::from_value(json!({"sample_rows": 3})).unwrap();
        let v = probe(&cfg, &data(), &gate, &inputs(), 7, |b| {
            constant_on_small_batches(b).map_err(CandidateError::Refused)
        })
        .unwrap()
        .finish();
        assert!(!v.passed, "{:?}", v.findings);
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "inconsistent-probe-answers")
            .unwrap_or_else(|| panic!("{:?}", v.findings));
        assert_eq!(f.severity, Severity::Error);
        assert!(
            f.message.starts_with(
                "the candidate answered 4 of 4 unperturbed evaluation rows mixed into its probe batches differently from the gate's own predictions (tolerance 1e-9)"
            ),
            "{}",
            f.message
        );
        let rows = SplitMix64::new(7).sample(40, 3);
        for r in &rows {
            let expected = format!(
                "data row {} in the noise batch: [0.3, 0.7], but {:?} when the gate scored it",
                r + 1,
                gate.row(*r)
            );
            assert!(f.message.contains(&expected), "{expected}\n{}", f.message);
        }
        let expected = format!(
            "data row {} in the edge-case batch: [0.3, 0.7], but {:?}",
            rows[0] + 1,
            gate.row(rows[0])
        );
        assert!(f.message.contains(&expected), "{expected}\n{}", f.message);
        assert_eq!(metric(&v, "inconsistent_answers"), 4.0);
    }

    #[test]
    fn anchor_rows_land_at_seeded_positions_among_the_probes() {
        let gate = hardened(&data()).unwrap();
        let cfg: Config = serde_json::from_value(json!({"sample_rows": 6})).unwrap();
        let positions = |seed| {
            let batches = std::cell::RefCell::new(Vec::new());
            probe(&cfg, &data(), &gate, &inputs(), seed, |b| {
                batches.borrow_mut().push(b.clone());
                hardened(b).map_err(CandidateError::Refused)
            })
            .unwrap();
            let noise = batches.borrow()[0].clone();
            // Anchors are exact copies of evaluation rows; noisy rows are not
            // (every column of `x` and `y` moved by ±0.01σ).
            let x = data();
            let x = x.numeric("x").unwrap();
            noise
                .numeric("x")
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, v)| x.contains(v))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        let a = positions(21);
        assert_eq!(a.len(), 6, "{a:?}");
        assert_eq!(a, positions(21), "same seed, same positions");
        assert_ne!(
            a,
            (6..12).collect::<Vec<_>>(),
            "anchors are not simply appended"
        );
        assert_ne!(a, positions(22));
    }

    #[test]
    fn agreement_allows_1e_9_absolute_or_relative() {
        assert!(agrees(0.5, 0.5 + 5e-10));
        assert!(!agrees(0.5, 0.5 + 5e-9));
        assert!(agrees(1e12, 1e12 + 100.0));
        assert!(!agrees(1e12, 1e12 + 1e4));
        assert!(agrees(f64::NAN, f64::NAN));
        assert!(!agrees(f64::NAN, 0.0));
        assert!(agrees(f64::INFINITY, f64::INFINITY));
        assert!(!agrees(f64::INFINITY, f64::NEG_INFINITY));
    }

    #[test]
    fn nan_outputs_fail_naming_the_probes() {
        let v = run_cfg(json!({}), 1, logistic);
        assert!(!v.passed);
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "edge-case-non-finite")
            .unwrap();
        assert!(f.message.contains("`x` = NaN (missing)"), "{}", f.message);
        assert!(f.message.contains("`y` = NaN (missing)"), "{}", f.message);
        // +inf on x gives p = 1 (finite), but +inf − inf never happens here; x = NaN and y = NaN do.
        assert_eq!(metric(&v, "edge_case_failures"), 2.0);
    }

    #[test]
    fn refusals_fail_unless_allowed() {
        let v = run_cfg(json!({}), 3, strict);
        assert!(!v.passed);
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "edge-case-error")
            .unwrap();
        assert!(
            f.message.contains("failed on 6 of 12 edge-case probes"),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("`x` = +inf: bad-input: `x` must be finite"),
            "{}",
            f.message
        );
        let v = run_cfg(json!({"allow_errors_on_edge_cases": true}), 3, strict);
        assert!(v.passed, "{:?}", v.findings);
        assert!(codes(&v).contains(&"edge-case-refused"));
    }

    #[test]
    fn traps_fail_even_when_refusals_are_allowed() {
        // A trap is a typed sandbox failure: a model cannot make one read
        // as a refusal (in 0.1 it could return the code `trap` itself).
        fn trapping(b: &Batch) -> Result<Predictions, CandidateError> {
            if b.numeric("x").unwrap().iter().any(|x| x.is_infinite()) {
                return Err(CandidateError::Failed(SandboxFailure {
                    kind: FailureKind::Trap,
                    message: "wasm trap: unreachable".into(),
                }));
            }
            cand_hardened(b)
        }
        let cfg: Config =
            serde_json::from_value(json!({"allow_errors_on_edge_cases": true})).unwrap();
        let gate = hardened(&data()).unwrap();
        let v = probe(&cfg, &data(), &gate, &inputs(), 3, trapping)
            .unwrap()
            .finish();
        assert!(!v.passed);
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "edge-case-error")
            .unwrap();
        assert!(f.message.contains("failed on 2 of 12"), "{}", f.message);
        assert!(
            f.message
                .contains("`x` = -inf: candidate-trap: wasm trap: unreachable"),
            "{}",
            f.message
        );
        assert!(f.message.contains("traps and sandbox limits always fail"));
    }

    #[test]
    fn flips_near_the_boundary_fail() {
        // Class 1 iff round(100·x) is odd: every x is a multiple of 0.1, so a nudge of ≈ 0.0115 flips every row.
        fn twitchy(b: &Batch) -> Result<Predictions, PluginError> {
            let x = b.numeric("x")?;
            let v = x
                .iter()
                .flat_map(|x| {
                    let k = (x * 100.0).round();
                    let p = if k.is_finite() && (k as i64) % 2 != 0 {
                        0.9
                    } else {
                        0.1
                    };
                    [1.0 - p, p]
                })
                .collect();
            Ok(Predictions::probabilities(2, v))
        }
        let v = run_cfg(json!({"noise": 0.01}), 5, twitchy);
        assert!(!v.passed);
        let f = v
            .findings
            .iter()
            .find(|f| f.code == "prediction-flips")
            .unwrap();
        assert_eq!(f.severity, Severity::Error);
        assert!(metric(&v, "flip_share") > 0.05);
        assert!(
            f.message.contains("changed predicted class"),
            "{}",
            f.message
        );
        // The same model with no noise never flips.
        let v = run_cfg(json!({"noise": 0.0}), 5, twitchy);
        assert_eq!(metric(&v, "flip_share"), 0.0);
    }

    #[test]
    fn regression_flips_use_relative_delta() {
        fn reg(b: &Batch) -> Result<Predictions, PluginError> {
            let x = b.numeric("x")?;
            let clean = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(-1e3, 1e3) };
            Ok(Predictions::regression(
                x.iter().map(|&x| 10.0 + 100.0 * clean(x)).collect(),
            ))
        }
        // σ(x) ≈ 1.154, so noise 0.01 moves every output by ≈ 1.154: more than 5 % of
        // outputs below 23.08, i.e. of the rows x = 0 (output 10) and x = 0.1 (output 20).
        let v = run_cfg(json!({"max_flip_share": 1.0}), 9, reg);
        assert_eq!(metric(&v, "flips"), 2.0, "{:?}", v.findings);
        assert!(
            v.findings[0]
                .message
                .starts_with("2 of 40 rows moved by more than 0.05 relative"),
            "{}",
            v.findings[0].message
        );
        let v = run_cfg(json!({"max_regression_delta": 0.5}), 9, reg);
        assert_eq!(metric(&v, "flips"), 0.0);
        assert!(v.passed, "{:?}", v.findings);
    }

    #[test]
    fn noise_probe_errors_name_the_probe() {
        let calls = std::cell::Cell::new(0);
        let cfg = Config::default();
        let gate = hardened(&data()).unwrap();
        let v = probe(&cfg, &data(), &gate, &inputs(), 1, |b| {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err(CandidateError::Failed(SandboxFailure {
                    kind: FailureKind::FuelExhausted,
                    message: "all fuel used".into(),
                }))
            } else {
                hardened(b).map_err(CandidateError::Refused)
            }
        })
        .unwrap()
        .finish();
        assert!(!v.passed);
        assert_eq!(codes(&v), ["probe-error"]);
        assert!(
            v.findings[0].message.starts_with("noise probe:"),
            "{}",
            v.findings[0].message
        );
        assert!(
            v.findings[0]
                .message
                .contains("candidate-fuel-exhausted: all fuel used")
        );
    }

    #[test]
    fn runs_repeat_with_the_same_seed() {
        let cfg: Config = serde_json::from_value(json!({"sample_rows": 5})).unwrap();
        let seen = std::cell::RefCell::new(Vec::new());
        let go = |seed| {
            seen.borrow_mut().clear();
            let gate = hardened(&data()).unwrap();
            let v = probe(&cfg, &data(), &gate, &inputs(), seed, |b| {
                seen.borrow_mut().push(b.numeric("x").unwrap().to_vec());
                hardened(b).map_err(CandidateError::Refused)
            })
            .unwrap()
            .finish();
            (v, seen.borrow().clone())
        };
        let (a, sa) = go(11);
        let (b, sb) = go(11);
        let (_, sc) = go(12);
        assert_eq!(a, b);
        assert_eq!(sa.len(), 2, "noisy sample, edge cases");
        assert_eq!(sa[0].len(), 5 + 5, "5 noisy rows and their 5 originals");
        assert!(
            sa.iter()
                .zip(&sb)
                .all(|(x, y)| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()))
        );
        assert_ne!(sa[0], sc[0]);
    }

    #[test]
    fn edge_probes_cover_each_input() {
        let (numeric, categorical) = probe_inputs(&inputs(), &data());
        assert_eq!(
            numeric[0],
            NumericStats {
                name: "x".into(),
                std: numeric[0].std,
                min: 0.0,
                max: 3.9
            }
        );
        let probes = edge_probes(&numeric, &categorical);
        assert_eq!(probes.len(), 12);
        assert!(probes.iter().all(|p| !p.name.contains("target")));
        let b = probe_batch(&data(), 3, &probes);
        assert_eq!(b.len(), 12);
        let x = b.numeric("x").unwrap();
        assert!(x[0].is_nan());
        assert_eq!(x[1], f64::INFINITY);
        assert_eq!(x[3], 3.9 + 3.9e6);
        assert_eq!(x[5], 0.3, "other probes keep the base row");
        assert_eq!(b.categorical("c").unwrap()[10], None);
        assert_eq!(x[11], 0.0);
        assert_eq!(b.numeric("y").unwrap()[11], 0.0);
    }

    fn ctx(c: serde_json::Value) -> Context {
        airlock_guest::testing::TestContext::new("robustness")
            .config(&c)
            .inputs(inputs())
            .data(data())
            .predictions(hardened(&data()).unwrap())
            .build()
    }

    #[test]
    fn config_errors_name_the_step_and_the_key() {
        let e = run(&ctx(json!({"max_flip_share": 2.0})), cand_hardened).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert_eq!(
            e.message,
            "step `robustness`: config key `max_flip_share`: must be in [0, 1], got 2"
        );
        let e = run(&ctx(json!({"sample_row": 5})), cand_hardened).unwrap_err();
        assert_eq!(e.code, "bad-config");
        assert!(
            e.message
                .starts_with("step `robustness`: config key `sample_row`: unknown key; the known keys are `noise`, "),
            "{}",
            e.message
        );
        assert!(run(&ctx(json!({})), cand_hardened).unwrap().passed);
    }

    fn cand_hardened(b: &Batch) -> Result<Predictions, CandidateError> {
        hardened(b).map_err(CandidateError::Refused)
    }

    fn never_called(_: &Batch) -> Result<Predictions, CandidateError> {
        panic!("a dry run must not probe the candidate")
    }

    #[test]
    fn a_dry_run_checks_the_config_and_passes_without_probing() {
        let dry = ctx(json!({"noise": 0.02})).as_dry_run();
        assert!(dry.is_dry_run());
        let v = run(&dry, never_called).unwrap();
        assert!(v.passed);
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        let e = run(&ctx(json!({"noise": -1.0})).as_dry_run(), never_called).unwrap_err();
        assert_eq!(
            e.message,
            "step `robustness`: config key `noise`: must be a finite number ≥ 0, got -1"
        );
    }
}
