//! Sandbox benchmarks: what a plugin call costs, and where the time goes.
//!
//! Everything is measured in one process and one run, with the cases
//! interleaved round by round, so that the machine's noise (and the epoch
//! ticker threads of the sandboxes that have one) falls on every case alike
//! and the ratios between rows are comparable. Measured:
//!
//! * a warm call (a live instance reused through [`Plugin::instantiate`])
//!   against a fresh instance per call ([`Plugin::predict`]), on a plugin
//!   that does next to nothing, and on a tiny linear model;
//! * fuel metering and the epoch deadline switched on and off, on a
//!   compute-heavy call (XGBoost on the breast-cancer evaluation set);
//! * the XGBoost evaluator called natively against the same code inside the
//!   sandbox, both doing what the plugin does per call (read the model file,
//!   parse it, score the batch), plus the pieces on their own.
//!
//! The harness is hand-written (no criterion): a warm-up that also sizes the
//! batch, then several interleaved batches of individually timed iterations;
//! the table reports the median and the 10th/90th percentiles over all of a
//! case's iterations, and the spread of its per-batch medians, with the
//! minor page faults of the process and the voluntary context switches of
//! the measuring thread per iteration (they explain where fresh instances
//! and file reads spend their time). The output is Markdown, ready to paste
//! into `docs/benchmarks.md`.

use airlock_core::types::{Batch, Column, ColumnValues, Predictions};
use airlock_gate::data;
use airlock_model_xgboost::Ensemble;
use airlock_runtime::sandbox::wasi::{WasiSpec, WasiState};
use airlock_runtime::sandbox::{Bundle, CallOptions, Plugin, Sandbox, SandboxConfig};
use airlock_tests::{fixture, plugin, repo_root};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the scoring-heavy cases repeat the 171-row evaluation set.
const BIG_REPEAT: usize = 20;

/// Rows of the scoring-heavy batch.
const BIG_ROWS: usize = 171 * BIG_REPEAT;

/// Interleaved rounds per case; each round runs one batch of every case.
const ROUNDS: usize = 7;

/// Wall time one batch of a case should take; sets its iteration count.
const BATCH_TARGET: Duration = Duration::from_millis(120);

/// Warm-up per case before anything is recorded (caches, pool slots, page
/// faults of freshly mapped memory).
const WARMUP: Duration = Duration::from_millis(150);

/// Bounds on the iterations of one batch.
const MIN_ITERS: usize = 10;
/// See [`MIN_ITERS`].
const MAX_ITERS: usize = 100_000;

/// The fuel/epoch combinations, in table order: the default first, the
/// unmetered one (the baseline of the overhead ratios) last.
const MODES: [Mode; 4] = [
    Mode {
        fuel: true,
        epoch: true,
    },
    Mode {
        fuel: true,
        epoch: false,
    },
    Mode {
        fuel: false,
        epoch: true,
    },
    Mode {
        fuel: false,
        epoch: false,
    },
];

/// Which interruption mechanisms a sandbox has switched on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mode {
    /// Fuel metering.
    fuel: bool,
    /// Epoch-deadline interruption.
    epoch: bool,
}

impl Mode {
    /// The default sandbox: both on.
    const DEFAULT: Mode = MODES[0];
    /// Neither on: the baseline for overhead ratios.
    const NEITHER: Mode = MODES[3];

    /// How the mode is printed in the table.
    fn label(self) -> &'static str {
        match (self.fuel, self.epoch) {
            (true, true) => "fuel on, epoch on",
            (true, false) => "fuel on, epoch off",
            (false, true) => "fuel off, epoch on",
            (false, false) => "fuel off, epoch off",
        }
    }
}

/// One measured thing: a closure that does one iteration of work, and the
/// samples it produced.
struct Case {
    /// Short stable key, used to look the case up for derived ratios.
    key: String,
    /// What is measured, for people.
    what: String,
    /// Sandbox settings, or "native".
    config: String,
    /// Key of the case this one's ratio is taken against.
    baseline: Option<String>,
    /// One iteration of the work.
    run: Box<dyn FnMut()>,
    /// Iterations per batch, set by the warm-up.
    iters: usize,
    /// Every recorded iteration, in nanoseconds.
    samples: Vec<f64>,
    /// The median of each batch, in nanoseconds.
    batch_medians: Vec<f64>,
    /// Minor page faults of the whole process over all batches, when
    /// `/proc/self/stat` is readable.
    faults: Option<u64>,
    /// Voluntary context switches of the measuring thread over all
    /// batches: each one is the thread blocking, e.g. on WASI's blocking
    /// thread pool.
    switches: Option<u64>,
}

/// Order statistics of a case, in microseconds.
struct Summary {
    /// Median iteration.
    median: f64,
    /// 10th percentile.
    p10: f64,
    /// 90th percentile.
    p90: f64,
    /// Lowest per-batch median.
    batch_lo: f64,
    /// Highest per-batch median.
    batch_hi: f64,
    /// Iterations recorded.
    n: usize,
}

impl Case {
    /// A case with no samples yet.
    fn new(
        key: impl Into<String>,
        what: impl Into<String>,
        config: impl Into<String>,
        baseline: Option<&str>,
        run: impl FnMut() + 'static,
    ) -> Case {
        Case {
            key: key.into(),
            what: what.into(),
            config: config.into(),
            baseline: baseline.map(str::to_string),
            run: Box::new(run),
            iters: MIN_ITERS,
            samples: Vec::new(),
            batch_medians: Vec::new(),
            faults: Some(0),
            switches: Some(0),
        }
    }

    /// Runs the work for [`WARMUP`] and sizes the batch from what it took.
    fn warm_up(&mut self) {
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

    /// Runs one batch, timing every iteration on its own.
    fn batch(&mut self) {
        let mut times = Vec::with_capacity(self.iters);
        let faults_before = minor_faults();
        let switches_before = voluntary_switches();
        for _ in 0..self.iters {
            let t = Instant::now();
            (self.run)();
            times.push(t.elapsed().as_nanos() as f64);
        }
        let faults = faults_before.zip(minor_faults()).map(|(a, b)| b - a);
        self.faults = self.faults.zip(faults).map(|(a, b)| a + b);
        let switches = switches_before
            .zip(voluntary_switches())
            .map(|(a, b)| b - a);
        self.switches = self.switches.zip(switches).map(|(a, b)| a + b);
        self.batch_medians.push(percentile(&mut times.clone(), 0.5));
        self.samples.extend(times);
    }

    /// The case's order statistics.
    fn summary(&self) -> Summary {
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

/// Minor page faults this process has taken so far (field 10 of
/// `/proc/self/stat`), or `None` off Linux. A fresh instance from the pool
/// starts with its memory decommitted, so every page it touches faults
/// again; this column shows how much of a call is that.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; count from after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// Voluntary context switches of the calling thread so far, or `None` off
/// Linux. A call that does not block costs none; WASI filesystem calls that
/// wasmtime-wasi hands to a blocking thread pool cost one or more each.
fn voluntary_switches() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// How many threads of the process carry each name, e.g. the epoch
/// tickers and WASI's blocking pool.
fn thread_names() -> Vec<(String, usize)> {
    let mut names: Vec<(String, usize)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return names;
    };
    for t in tasks.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let name = name.trim().to_string();
        match names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, k)) => *k += 1,
            None => names.push((name, 1)),
        }
    }
    names.sort();
    names
}

/// The `q`-quantile (nearest rank) of `v`; sorts `v`.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

/// A sandbox in `mode`, otherwise the defaults (pooling on, 2 ms epoch
/// tick, default limits) and no disk cache, so the run leaves nothing
/// behind and every sandbox compiles its own code for its own settings.
fn sandbox(mode: Mode) -> Sandbox {
    Sandbox::new(SandboxConfig {
        fuel: mode.fuel,
        epoch_deadline: mode.epoch,
        ..SandboxConfig::default()
    })
    .expect("building a sandbox")
}

/// Loads the compiled guest crate `lib` into `sb`.
fn load(sb: &Sandbox, lib: &str) -> Arc<Plugin> {
    sb.load_file(&plugin(lib))
        .unwrap_or_else(|e| panic!("loading {lib}: {e}"))
}

/// A one-column numeric batch named `name` holding `values`.
fn one_column(name: &str, values: Vec<f64>) -> Batch {
    Batch {
        rows: values.len() as u32,
        columns: vec![Column {
            name: name.to_string(),
            values: ColumnValues::Numeric(values),
        }],
    }
}

/// `batch` stacked `times` times.
fn repeat(batch: &Batch, times: usize) -> Batch {
    Batch {
        rows: batch.rows * times as u32,
        columns: batch
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                values: match &c.values {
                    ColumnValues::Numeric(v) => ColumnValues::Numeric(v.repeat(times)),
                    ColumnValues::Categorical(v) => {
                        ColumnValues::Categorical((0..times).flat_map(|_| v.clone()).collect())
                    }
                },
            })
            .collect(),
    }
}

/// Writes a one-feature linear regression bundle (`y = 2x + 1`, the
/// smallest model the linear plugin accepts) into `dir`.
fn tiny_linear_bundle(dir: &Path) -> Bundle {
    let model = r#"{
  "format": "airlock-linear",
  "format_version": 1,
  "task": "regression",
  "feature_names": ["x"],
  "coefficients": [[2.0]],
  "intercepts": [1.0]
}"#;
    std::fs::write(dir.join("model.json"), model).expect("writing the tiny linear bundle");
    Bundle::from_path(dir).expect("tiny linear bundle")
}

/// Options carrying `bundle`, otherwise the defaults.
fn with_bundle(bundle: &Bundle) -> CallOptions {
    CallOptions {
        bundle: Some(bundle.clone()),
        ..CallOptions::default()
    }
}

/// Runs a fresh-instance predict and fails loudly on any plugin failure.
fn predict(p: &Plugin, options: &CallOptions, batch: &Batch) -> Predictions {
    p.predict(options, batch)
        .unwrap_or_else(|e| panic!("predict failed: {e}"))
        .value
}

/// What the XGBoost plugin does per call, natively: read the bundle's
/// model file, parse it, map the batch's columns to the model's features,
/// lay the rows out row-major and walk the trees.
fn native_xgb(model_file: &Path, batch: &Batch) -> Vec<f64> {
    let bytes = std::fs::read(model_file).expect("reading the model");
    let model = Ensemble::from_json(&bytes).expect("parsing the model");
    native_predict(&model, batch)
}

/// The predict half of [`native_xgb`]: column mapping, then scoring the
/// columns in place (the same steps as the plugin's `predict_batch`).
fn native_predict(model: &Ensemble, batch: &Batch) -> Vec<f64> {
    let names: Vec<&str> = batch.columns.iter().map(|c| c.name.as_str()).collect();
    let positions = model.map_columns(&names).expect("mapping columns");
    let columns: Vec<&[f64]> = positions
        .iter()
        .map(|&p| match &batch.columns[p].values {
            ColumnValues::Numeric(v) => v.as_slice(),
            ColumnValues::Categorical(_) => panic!("categorical feature column"),
        })
        .collect();
    model.predict_columns(&columns).expect("predicting")
}

/// Asserts that two prediction vectors agree (the sandbox runs the very
/// same evaluator, so they must match to the last bit but for NaN
/// canonicalisation, which does not occur on this data).
fn assert_same(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g == w, "{what}: value {i}: {g} != {w}");
    }
}

/// Everything the XGBoost cases share.
struct XgbSetup {
    /// The bundle directory holding `model.json`.
    bundle: Bundle,
    /// The model file, for the native path.
    model_file: PathBuf,
    /// The evaluation set's model inputs (171 rows).
    batch: Batch,
    /// Its first row only.
    one_row: Batch,
    /// The evaluation set repeated [`BIG_REPEAT`] times.
    big: Batch,
}

/// Fuel a call consumed, for the table's footnotes.
struct FuelNote {
    /// What was called.
    what: &'static str,
    /// Fuel units (roughly Wasm instructions).
    fuel: u64,
}

/// Builds the four sandboxes, checks that every path computes the same
/// predictions, measures every case interleaved, and prints the report.
fn main() {
    let started = Instant::now();
    let load_before = load_average();
    let sandboxes: Vec<(Mode, Sandbox)> = MODES.iter().map(|&m| (m, sandbox(m))).collect();
    let sb = |mode: Mode| -> &Sandbox {
        &sandboxes
            .iter()
            .find(|(m, _)| *m == mode)
            .expect("a sandbox per mode")
            .1
    };

    // ---------------------------------------------------------- inputs
    let xgb_dir = repo_root().join("examples/breast-cancer/model-v1");
    let xgb = {
        let bundle = Bundle::from_path(&xgb_dir).expect("xgboost bundle");
        let probe = load(sb(Mode::DEFAULT), "airlock_model_xgboost");
        let meta = probe
            .metadata(&with_bundle(&bundle))
            .expect("xgboost metadata")
            .value;
        let data = data::read_csv(
            &fixture("data/breast_cancer_eval.csv"),
            Some(&meta.inputs),
            Some("target"),
        )
        .expect("reading the evaluation set");
        let (batch, _) =
            data::model_inputs(&data.batch, &meta.inputs, &["target"]).expect("model inputs");
        XgbSetup {
            one_row: batch.rows_in(0..1).expect("the evaluation set has rows"),
            big: repeat(&batch, BIG_REPEAT),
            bundle,
            model_file: xgb_dir.join("model.json"),
            batch,
        }
    };
    let tiny_dir = tempfile::tempdir().expect("temp dir");
    let tiny = tiny_linear_bundle(tiny_dir.path());
    let ok_batch = one_column("ok", vec![0.0]);
    let x_batch = one_column("x", vec![3.0]);
    let model_bytes = std::fs::read(&xgb.model_file).expect("reading the model");

    // ---------------------------------------------------------- sanity
    // Every sandboxed path must compute what the native path computes, so
    // the timings compare the same work.
    let want = native_xgb(&xgb.model_file, &xgb.batch);
    let mut fuel_notes = Vec::new();
    for (mode, s) in sandboxes.iter().map(|(m, s)| (*m, s)) {
        let p = load(s, "airlock_model_xgboost");
        let out = p
            .predict(&with_bundle(&xgb.bundle), &xgb.batch)
            .expect("xgboost predict");
        assert_same(mode.label(), &out.value.values, &want);
        let mut session = p.instantiate(&with_bundle(&xgb.bundle)).expect("session");
        let warm = session.predict(&xgb.batch).expect("warm predict");
        assert_same("warm", &warm.value.values, &want);
        let big = session.predict(&xgb.big).expect("warm big predict");
        assert_same("big", &big.value.values, &want.repeat(BIG_REPEAT));
        if mode == Mode::DEFAULT {
            fuel_notes.push(FuelNote {
                what: "xgboost predict, 171 rows (fresh instance)",
                fuel: out.fuel_used,
            });
            fuel_notes.push(FuelNote {
                what: "xgboost predict, 171 rows (warm instance)",
                fuel: warm.fuel_used,
            });
            let one = p
                .predict(&with_bundle(&xgb.bundle), &xgb.one_row)
                .expect("one row");
            fuel_notes.push(FuelNote {
                what: "xgboost predict, 3420 rows (warm instance)",
                fuel: big.fuel_used,
            });
            fuel_notes.push(FuelNote {
                what: "xgboost predict, 1 row (fresh instance)",
                fuel: one.fuel_used,
            });
            let meta = p.metadata(&with_bundle(&xgb.bundle)).expect("metadata");
            fuel_notes.push(FuelNote {
                what: "xgboost metadata (read + parse, no scoring)",
                fuel: meta.fuel_used,
            });
            let h = load(s, "hostile_model");
            let ok = h.predict(&CallOptions::default(), &ok_batch).expect("ok");
            assert_eq!(ok.value.values, vec![1.0]);
            fuel_notes.push(FuelNote {
                what: "hostile-model `ok`, 1 row",
                fuel: ok.fuel_used,
            });
            let lin = load(s, "airlock_model_linear");
            let y = lin.predict(&with_bundle(&tiny), &x_batch).expect("linear");
            assert_eq!(y.value.values, vec![7.0]);
            fuel_notes.push(FuelNote {
                what: "tiny linear model, 1 row",
                fuel: y.fuel_used,
            });
        }
    }

    // ---------------------------------------------------------- cases
    let mut cases: Vec<Case> = Vec::new();

    // 1. The floor: a plugin that does nothing, warm and fresh.
    for &mode in &[Mode::DEFAULT, Mode::NEITHER] {
        let tag = if mode == Mode::DEFAULT { "def" } else { "none" };
        let h = load(sb(mode), "hostile_model");
        let mut session = h.instantiate(&CallOptions::default()).expect("session");
        let batch = ok_batch.clone();
        cases.push(Case::new(
            format!("ok-warm-{tag}"),
            "trivial call (`hostile_model` ok, 1 row), warm instance",
            mode.label(),
            None,
            move || {
                black_box(session.predict(&batch).expect("warm ok"));
            },
        ));
        let batch = ok_batch.clone();
        let hp = h.clone();
        cases.push(Case::new(
            format!("ok-fresh-{tag}"),
            "trivial call (`hostile_model` ok, 1 row), fresh instance",
            mode.label(),
            Some(&format!("ok-warm-{tag}")),
            move || {
                black_box(predict(&hp, &CallOptions::default(), &batch));
            },
        ));
        let hp = h.clone();
        cases.push(Case::new(
            format!("ok-meta-{tag}"),
            "`hostile_model` metadata (no input), fresh instance",
            mode.label(),
            Some(&format!("ok-warm-{tag}")),
            move || {
                black_box(hp.metadata(&CallOptions::default()).expect("metadata"));
            },
        ));
    }

    // 1b. The same fresh calls with pool slots decommitted after each
    // instance (no memory kept resident), to measure what keeping slots
    // resident buys within this run.
    let decommit = Sandbox::new(SandboxConfig {
        keep_resident_bytes: 0,
        ..SandboxConfig::default()
    })
    .expect("building a sandbox");
    {
        let h = load(&decommit, "hostile_model");
        let batch = ok_batch.clone();
        cases.push(Case::new(
            "ok-fresh-decommit".to_string(),
            "trivial call (`hostile_model` ok, 1 row), fresh instance, slots decommitted",
            Mode::DEFAULT.label(),
            Some("ok-fresh-def"),
            move || {
                black_box(predict(&h, &CallOptions::default(), &batch));
            },
        ));
        let p = load(&decommit, "airlock_model_xgboost");
        let opts = with_bundle(&xgb.bundle);
        let batch = xgb.batch.clone();
        cases.push(Case::new(
            "xgb-fresh-decommit".to_string(),
            "XGBoost plugin: fresh instance + read + parse + predict 171 rows, slots decommitted",
            Mode::DEFAULT.label(),
            Some("nat-full"),
            move || {
                black_box(predict(&p, &opts, &batch));
            },
        ));
    }

    // 2. A fresh instance plus a small model call: the tiny linear bundle.
    for &mode in &[Mode::DEFAULT, Mode::NEITHER] {
        let tag = if mode == Mode::DEFAULT { "def" } else { "none" };
        let lin = load(sb(mode), "airlock_model_linear");
        let opts = with_bundle(&tiny);
        let mut session = lin.instantiate(&opts).expect("session");
        let batch = x_batch.clone();
        cases.push(Case::new(
            format!("lin-warm-{tag}"),
            "tiny linear model (1 feature) + 1 row, warm instance",
            mode.label(),
            None,
            move || {
                black_box(session.predict(&batch).expect("warm linear"));
            },
        ));
        let batch = x_batch.clone();
        cases.push(Case::new(
            format!("lin-fresh-{tag}"),
            "tiny linear model (1 feature) + 1 row, fresh instance",
            mode.label(),
            Some(&format!("lin-warm-{tag}")),
            move || {
                black_box(predict(&lin, &opts, &batch));
            },
        ));
    }

    // 2b. One piece of the fresh-instance cost the host builds per call:
    // the WASI context (seeded RNGs, log pipes, the bundle preopen).
    {
        let spec_no_bundle = || WasiSpec {
            seed: 0,
            max_log_bytes: 64 << 10,
            max_host_alloc_bytes: 16 << 20,
            bundle_dir: None,
        };
        cases.push(Case::new(
            "wasi-none",
            "host part of a fresh call: WASI state, no bundle",
            "native",
            Some("ok-fresh-def"),
            move || {
                black_box(WasiState::new(&spec_no_bundle()).expect("wasi state"));
            },
        ));
        let dir = xgb.bundle.dir().to_path_buf();
        cases.push(Case::new(
            "wasi-bundle",
            "host part of a fresh call: WASI state with the bundle preopened",
            "native",
            Some("ok-fresh-def"),
            move || {
                let spec = WasiSpec {
                    bundle_dir: Some(&dir),
                    ..spec_no_bundle()
                };
                black_box(WasiState::new(&spec).expect("wasi state"));
            },
        ));
    }

    // 3. Native XGBoost: the whole per-call job, and its parts.
    {
        let file = xgb.model_file.clone();
        let batch = xgb.batch.clone();
        cases.push(Case::new(
            "nat-full",
            "XGBoost native: read + parse + predict 171 rows",
            "native",
            None,
            move || {
                black_box(native_xgb(&file, &batch));
            },
        ));
        let file = xgb.model_file.clone();
        cases.push(Case::new(
            "nat-read-parse",
            "XGBoost native: read + parse only",
            "native",
            Some("nat-full"),
            move || {
                let bytes = std::fs::read(&file).expect("read");
                black_box(Ensemble::from_json(&bytes).expect("parse"));
            },
        ));
        let bytes = model_bytes.clone();
        cases.push(Case::new(
            "nat-parse",
            "XGBoost native: parse only (bytes in memory)",
            "native",
            Some("nat-full"),
            move || {
                black_box(Ensemble::from_json(&bytes).expect("parse"));
            },
        ));
        let batch = xgb.batch.clone();
        let model = Ensemble::from_json(&model_bytes).expect("parse");
        cases.push(Case::new(
            "nat-predict",
            "XGBoost native: predict only, 171 rows (parsed model)",
            "native",
            Some("nat-full"),
            move || {
                black_box(native_predict(&model, &batch));
            },
        ));
    }

    // 4. XGBoost in the sandbox, every fuel/epoch combination.
    for (mode, s) in sandboxes.iter().map(|(m, s)| (*m, s)) {
        let p = load(s, "airlock_model_xgboost");
        let opts = with_bundle(&xgb.bundle);
        let batch = xgb.batch.clone();
        cases.push(Case::new(
            format!("xgb-fresh-{}-{}", mode.fuel, mode.epoch),
            "XGBoost plugin: fresh instance + read + parse + predict 171 rows",
            mode.label(),
            Some("nat-full"),
            move || {
                black_box(predict(&p, &opts, &batch));
            },
        ));
    }
    for (mode, s) in sandboxes.iter().map(|(m, s)| (*m, s)) {
        let p = load(s, "airlock_model_xgboost");
        let mut session = p.instantiate(&with_bundle(&xgb.bundle)).expect("session");
        let batch = xgb.batch.clone();
        cases.push(Case::new(
            format!("xgb-warm-{}-{}", mode.fuel, mode.epoch),
            "XGBoost plugin: warm instance, read + parse + predict 171 rows",
            mode.label(),
            Some("nat-full"),
            move || {
                black_box(session.predict(&batch).expect("warm xgboost"));
            },
        ));
    }
    // Where the plugin's time goes: no scoring (metadata), one row.
    for &mode in &[Mode::DEFAULT, Mode::NEITHER] {
        let p = load(sb(mode), "airlock_model_xgboost");
        let opts = with_bundle(&xgb.bundle);
        let pm = p.clone();
        let om = opts.clone();
        cases.push(Case::new(
            format!("xgb-meta-{}-{}", mode.fuel, mode.epoch),
            "XGBoost plugin: metadata = fresh instance + read + parse",
            mode.label(),
            Some("nat-read-parse"),
            move || {
                black_box(pm.metadata(&om).expect("metadata"));
            },
        ));
        let batch = xgb.one_row.clone();
        let p1 = p.clone();
        let o1 = opts.clone();
        cases.push(Case::new(
            format!("xgb-one-{}-{}", mode.fuel, mode.epoch),
            "XGBoost plugin: fresh instance + read + parse + predict 1 row",
            mode.label(),
            Some("nat-read-parse"),
            move || {
                black_box(predict(&p1, &o1, &batch));
            },
        ));
        let batch = xgb.one_row.clone();
        let mut session = p.instantiate(&opts).expect("session");
        cases.push(Case::new(
            format!("xgb-warm1-{}-{}", mode.fuel, mode.epoch),
            "XGBoost plugin: warm instance, read + parse + predict 1 row",
            mode.label(),
            Some("nat-read-parse"),
            move || {
                black_box(session.predict(&batch).expect("warm one row"));
            },
        ));
    }

    // 5. Scoring-heavy: the evaluation set repeated, so that the tree walk
    // and not the model parse dominates, on both sides.
    {
        let file = xgb.model_file.clone();
        let batch = xgb.big.clone();
        cases.push(Case::new(
            "nat-big-full",
            format!("XGBoost native: read + parse + predict {BIG_ROWS} rows"),
            "native",
            None,
            move || {
                black_box(native_xgb(&file, &batch));
            },
        ));
        let batch = xgb.big.clone();
        let model = Ensemble::from_json(&model_bytes).expect("parse");
        cases.push(Case::new(
            "nat-big-predict",
            format!("XGBoost native: predict only, {BIG_ROWS} rows (parsed model)"),
            "native",
            Some("nat-big-full"),
            move || {
                black_box(native_predict(&model, &batch));
            },
        ));
    }
    for &mode in &[Mode::DEFAULT, Mode::NEITHER] {
        let p = load(sb(mode), "airlock_model_xgboost");
        let opts = with_bundle(&xgb.bundle);
        let batch = xgb.big.clone();
        let pf = p.clone();
        let of = opts.clone();
        cases.push(Case::new(
            format!("xgb-big-fresh-{}-{}", mode.fuel, mode.epoch),
            format!("XGBoost plugin: fresh instance + read + parse + predict {BIG_ROWS} rows"),
            mode.label(),
            Some("nat-big-full"),
            move || {
                black_box(predict(&pf, &of, &batch));
            },
        ));
        let batch = xgb.big.clone();
        let mut session = p.instantiate(&opts).expect("session");
        cases.push(Case::new(
            format!("xgb-big-warm-{}-{}", mode.fuel, mode.epoch),
            format!("XGBoost plugin: warm instance, read + parse + predict {BIG_ROWS} rows"),
            mode.label(),
            Some("nat-big-full"),
            move || {
                black_box(session.predict(&batch).expect("warm big"));
            },
        ));
    }

    // 6. Pre-initialised XGBoost: `init` parsed the bundle once and every
    // call is a fresh instance of the snapshot taken after it (what the
    // product runs since contract 0.2). Checked bit-identical to native.
    let mut snapshot_notes = Vec::new();
    for &mode in &[Mode::DEFAULT, Mode::NEITHER] {
        let tag = if mode == Mode::DEFAULT { "def" } else { "none" };
        let s = sb(mode);
        let source = load(s, "airlock_model_xgboost");
        let opts = with_bundle(&xgb.bundle);
        let built = Instant::now();
        let snap = s
            .preinitialize(&source, &opts)
            .expect("pre-initialising xgboost")
            .expect("the xgboost plugin exports init");
        snapshot_notes.push(format!(
            "{}: snapshot {} bytes (source {} bytes, +{:.1} %), built in {:.0} ms (instrument, compile, init, snapshot, load), init fuel {}",
            mode.label(),
            snap.info.size,
            snap.info.source_size,
            (snap.info.size as f64 / snap.info.source_size as f64 - 1.0) * 100.0,
            built.elapsed().as_secs_f64() * 1e3,
            snap.info.init_fuel_used
        ));
        let p = snap.plugin.clone();
        let model = Ensemble::from_json(&model_bytes).expect("parse");
        assert_same(
            "snapshot, 171 rows",
            &predict(&p, &opts, &xgb.batch).values,
            &native_predict(&model, &xgb.batch),
        );
        let (p1, o1, batch) = (p.clone(), opts.clone(), xgb.one_row.clone());
        cases.push(Case::new(
            format!("snap-one-{tag}"),
            "XGBoost snapshot: fresh instance + predict 1 row",
            mode.label(),
            Some(&format!("ok-fresh-{tag}")),
            move || {
                black_box(predict(&p1, &o1, &batch));
            },
        ));
        let (p2, o2, batch) = (p.clone(), opts.clone(), xgb.batch.clone());
        cases.push(Case::new(
            format!("snap-fresh-{tag}"),
            "XGBoost snapshot: fresh instance + predict 171 rows",
            mode.label(),
            Some("nat-predict"),
            move || {
                black_box(predict(&p2, &o2, &batch));
            },
        ));
        let (p3, o3, batch) = (p.clone(), opts.clone(), xgb.big.clone());
        cases.push(Case::new(
            format!("snap-big-fresh-{tag}"),
            format!("XGBoost snapshot: fresh instance + predict {BIG_ROWS} rows"),
            mode.label(),
            Some("nat-big-predict"),
            move || {
                black_box(predict(&p3, &o3, &batch));
            },
        ));
        let mut session = p.instantiate(&opts).expect("snapshot session");
        let batch = xgb.big.clone();
        cases.push(Case::new(
            format!("snap-big-warm-{tag}"),
            format!("XGBoost snapshot: warm instance, predict alone {BIG_ROWS} rows"),
            mode.label(),
            Some("nat-big-predict"),
            move || {
                black_box(session.predict(&batch).expect("warm snapshot"));
            },
        ));
    }

    // 6b. The same warm snapshot with NaN canonicalisation off too (and no
    // fuel or epoch): only Cranelift's code against LLVM's, to split the
    // predict-alone ratio into its causes. Not a configuration to run:
    // canonicalisation keeps a plugin from telling CPUs apart.
    let bare = Sandbox::new(SandboxConfig {
        fuel: false,
        epoch_deadline: false,
        nan_canonicalization: false,
        ..SandboxConfig::default()
    })
    .expect("building a sandbox");
    {
        let source = load(&bare, "airlock_model_xgboost");
        let opts = with_bundle(&xgb.bundle);
        let snap = bare
            .preinitialize(&source, &opts)
            .expect("pre-initialising xgboost")
            .expect("the xgboost plugin exports init");
        let model = Ensemble::from_json(&model_bytes).expect("parse");
        assert_same(
            "snapshot, no canonicalisation, 3420 rows",
            &predict(&snap.plugin, &opts, &xgb.big).values,
            &native_predict(&model, &xgb.big),
        );
        let mut session = snap.plugin.instantiate(&opts).expect("snapshot session");
        let batch = xgb.big.clone();
        cases.push(Case::new(
            "snap-big-warm-bare",
            format!("XGBoost snapshot: warm instance, predict alone {BIG_ROWS} rows"),
            "fuel off, epoch off, NaN canonicalisation off",
            Some("nat-big-predict"),
            move || {
                black_box(session.predict(&batch).expect("warm snapshot"));
            },
        ));
    }

    // 6c. The boundary alone: a model that does nothing (`hostile_model`
    // ok), warm, handed the same 3,420-row batch (plus its mode column) and
    // answering 3,420 values. What the host spends lowering the batch into
    // the guest and lifting the answer, and the guest's allocations, with
    // no scoring: the floor under the snapshot's predict-alone rows.
    {
        let h = load(sb(Mode::DEFAULT), "hostile_model");
        let mut session = h.instantiate(&CallOptions::default()).expect("session");
        let mut batch = xgb.big.clone();
        batch.columns.insert(
            0,
            Column {
                name: "ok".to_string(),
                values: ColumnValues::Numeric(vec![0.0; BIG_ROWS]),
            },
        );
        cases.push(Case::new(
            "snap-big-warm-floor",
            format!(
                "the boundary alone: trivial model, warm instance, the same {BIG_ROWS}-row batch"
            ),
            Mode::DEFAULT.label(),
            Some("nat-big-predict"),
            move || {
                black_box(session.predict(&batch).expect("warm ok, big batch"));
            },
        ));

        // The same boundary for one served request: a fresh instance of
        // the trivial model handed the breast-cancer model's 1-row batch
        // (30 named columns of one value, plus the mode column). Against
        // the 1-column trivial call it shows what 30 columns cost to lower
        // (each name and each list is a guest allocation); against the
        // 1-row snapshot prediction, what is left for the model.
        let mut batch = xgb.one_row.clone();
        batch.columns.insert(
            0,
            Column {
                name: "ok".to_string(),
                values: ColumnValues::Numeric(vec![0.0]),
            },
        );
        cases.push(Case::new(
            "snap-one-floor",
            "the boundary alone: trivial model, fresh instance, the 1-row 30-column batch",
            Mode::DEFAULT.label(),
            Some("ok-fresh-def"),
            move || {
                black_box(predict(&h, &CallOptions::default(), &batch));
            },
        ));
    }

    // ---------------------------------------------------------- run
    // `AIRLOCK_BENCH_ONLY=<prefix>` keeps the cases whose key starts with
    // it, and their baselines (for profiling one case under `perf`).
    if let Ok(prefix) = std::env::var("AIRLOCK_BENCH_ONLY") {
        let mut keep: Vec<String> = cases
            .iter()
            .filter(|c| c.key.starts_with(&prefix))
            .map(|c| c.key.clone())
            .collect();
        // Baselines of kept cases, transitively.
        loop {
            let more: Vec<String> = cases
                .iter()
                .filter(|c| keep.contains(&c.key))
                .filter_map(|c| c.baseline.clone())
                .filter(|b| !keep.contains(b))
                .collect();
            if more.is_empty() {
                break;
            }
            keep.extend(more);
        }
        cases.retain(|c| keep.contains(&c.key));
    }
    eprintln!("warming up {} cases ...", cases.len());
    for c in &mut cases {
        c.warm_up();
    }
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        for c in &mut cases {
            c.batch();
        }
    }

    // ---------------------------------------------------------- report
    report(&cases, &fuel_notes, started.elapsed());
    println!();
    println!("Pre-initialised XGBoost (`examples/breast-cancer/model-v1`):");
    println!();
    for n in &snapshot_notes {
        println!("- {n}");
    }
    println!();
    println!(
        "Load average (1 min) at start: {}; at end: {}.",
        load_before,
        load_average()
    );
}

/// The 1-minute load average from `/proc/loadavg`, so a noisy run says so.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Prints the results table, the derived ratios and the fuel notes.
fn report(cases: &[Case], fuel_notes: &[FuelNote], elapsed: Duration) {
    let median = |key: &str| -> f64 {
        cases
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("no case {key}"))
            .summary()
            .median
    };

    println!(
        "| # | measurement | settings | median µs | p10 µs | p90 µs | batch medians µs | iterations | page faults / iter | ctx switches / iter | ratio to baseline |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (i, c) in cases.iter().enumerate() {
        let s = c.summary();
        let ratio = match &c.baseline {
            Some(b) => {
                let idx = cases.iter().position(|x| &x.key == b).expect("baseline") + 1;
                format!("{:.2}× row {idx}", s.median / median(b))
            }
            None => "baseline".to_string(),
        };
        let faults = c.faults.map_or("–".to_string(), |f| {
            format!("{:.1}", f as f64 / s.n as f64)
        });
        let switches = c.switches.map_or("–".to_string(), |k| {
            format!("{:.1}", k as f64 / s.n as f64)
        });
        println!(
            "| {} | {} | {} | {} | {} | {} | {}–{} | {} | {} | {} | {} |",
            i + 1,
            c.what,
            c.config,
            fmt_us(s.median),
            fmt_us(s.p10),
            fmt_us(s.p90),
            fmt_us(s.batch_lo),
            fmt_us(s.batch_hi),
            s.n,
            faults,
            switches,
            ratio
        );
    }

    if std::env::var_os("AIRLOCK_BENCH_ONLY").is_some() {
        // A filtered run lacks the cases the derived rows compare.
        return;
    }
    let r = |a: &str, b: &str| median(a) / median(b);
    let d = |a: &str, b: &str| median(a) - median(b);
    println!();
    println!("| derived | value |");
    println!("|---|---:|");
    let rows: Vec<(String, String)> = vec![
        (
            "plugin ÷ native, fresh instance, fuel on + epoch on (default)".into(),
            format!("{:.2}×", r("xgb-fresh-true-true", "nat-full")),
        ),
        (
            "plugin ÷ native, fresh instance, default, slots decommitted".into(),
            format!("{:.2}×", r("xgb-fresh-decommit", "nat-full")),
        ),
        (
            "fresh trivial call: decommitted ÷ resident slots".into(),
            format!("{:.2}×", r("ok-fresh-decommit", "ok-fresh-def")),
        ),
        (
            "plugin ÷ native, fresh instance, fuel off + epoch on".into(),
            format!("{:.2}×", r("xgb-fresh-false-true", "nat-full")),
        ),
        (
            "plugin ÷ native, fresh instance, fuel off + epoch off".into(),
            format!("{:.2}×", r("xgb-fresh-false-false", "nat-full")),
        ),
        (
            "plugin ÷ native, warm instance, fuel on + epoch on".into(),
            format!("{:.2}×", r("xgb-warm-true-true", "nat-full")),
        ),
        (
            "plugin ÷ native, warm instance, fuel off + epoch off".into(),
            format!("{:.2}×", r("xgb-warm-false-false", "nat-full")),
        ),
        (
            "fuel overhead, XGBoost fresh (fuel on ÷ off, epoch off)".into(),
            format!("{:.2}×", r("xgb-fresh-true-false", "xgb-fresh-false-false")),
        ),
        (
            "fuel overhead, XGBoost fresh (fuel on ÷ off, epoch on)".into(),
            format!("{:.2}×", r("xgb-fresh-true-true", "xgb-fresh-false-true")),
        ),
        (
            "fuel overhead, XGBoost warm (fuel on ÷ off, epoch off)".into(),
            format!("{:.2}×", r("xgb-warm-true-false", "xgb-warm-false-false")),
        ),
        (
            "epoch overhead, XGBoost fresh (epoch on ÷ off, fuel off)".into(),
            format!("{:.2}×", r("xgb-fresh-false-true", "xgb-fresh-false-false")),
        ),
        (
            "epoch overhead, XGBoost fresh (epoch on ÷ off, fuel on)".into(),
            format!("{:.2}×", r("xgb-fresh-true-true", "xgb-fresh-true-false")),
        ),
        (
            "epoch overhead, XGBoost warm (epoch on ÷ off, fuel off)".into(),
            format!("{:.2}×", r("xgb-warm-false-true", "xgb-warm-false-false")),
        ),
        (
            "instantiation cost, trivial plugin (fresh − warm, default)".into(),
            format!("{} µs", fmt_us(d("ok-fresh-def", "ok-warm-def"))),
        ),
        (
            "instantiation cost, XGBoost (fresh − warm, default)".into(),
            format!(
                "{} µs",
                fmt_us(d("xgb-fresh-true-true", "xgb-warm-true-true"))
            ),
        ),
        (
            "read + parse in the sandbox ÷ native (metadata − trivial metadata, default)".into(),
            format!(
                "{:.2}×",
                d("xgb-meta-true-true", "ok-meta-def") / median("nat-read-parse")
            ),
        ),
        (
            "read + parse in the sandbox ÷ native (same, fuel off + epoch off)".into(),
            format!(
                "{:.2}×",
                d("xgb-meta-false-false", "ok-meta-none") / median("nat-read-parse")
            ),
        ),
        (
            format!(
                "scoring {} rows in the sandbox ÷ native (warm {BIG_ROWS} rows − warm 1 row, default)",
                BIG_ROWS - 1
            ),
            format!(
                "{:.2}×",
                d("xgb-big-warm-true-true", "xgb-warm1-true-true") / median("nat-big-predict")
            ),
        ),
        (
            format!(
                "scoring {} rows in the sandbox ÷ native (same, fuel off + epoch off)",
                BIG_ROWS - 1
            ),
            format!(
                "{:.2}×",
                d("xgb-big-warm-false-false", "xgb-warm1-false-false") / median("nat-big-predict")
            ),
        ),
        (
            format!("plugin ÷ native, {BIG_ROWS} rows, fresh instance, default"),
            format!("{:.2}×", r("xgb-big-fresh-true-true", "nat-big-full")),
        ),
        (
            format!("plugin ÷ native, {BIG_ROWS} rows, fresh instance, fuel off + epoch off"),
            format!("{:.2}×", r("xgb-big-fresh-false-false", "nat-big-full")),
        ),
        (
            format!("fuel + epoch overhead, {BIG_ROWS} rows warm (default ÷ neither)"),
            format!(
                "{:.2}×",
                r("xgb-big-warm-true-true", "xgb-big-warm-false-false")
            ),
        ),
        (
            "share of the native call spent reading + parsing".into(),
            format!("{:.0}%", 100.0 * r("nat-read-parse", "nat-full")),
        ),
    ];
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }

    println!();
    println!("| fuel consumed (default sandbox) | units |");
    println!("|---|---:|");
    for n in fuel_notes {
        println!("| {} | {} |", n.what, n.fuel);
    }
    println!();
    let threads: Vec<String> = thread_names()
        .iter()
        .map(|(n, k)| format!("{n} × {k}"))
        .collect();
    println!("Threads at the end of the run: {}.", threads.join(", "));
    println!();
    println!(
        "{} cases × {ROUNDS} interleaved rounds; total run {:.1} s.",
        cases.len(),
        elapsed.as_secs_f64()
    );
}

/// Microseconds with a precision that suits their size.
fn fmt_us(us: f64) -> String {
    if us.abs() >= 100.0 {
        format!("{us:.0}")
    } else if us.abs() >= 10.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.2}")
    }
}
