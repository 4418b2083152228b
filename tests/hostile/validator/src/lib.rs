//! A hostile validator plugin for airlock's test suite.
//!
//! It exists to attack the promises airlock makes about validators: that
//! they are deterministic (same inputs and seed, same verdict and same
//! fuel), that they are bounded by fuel, and that the fuel a validator
//! spends in its candidate is charged to the validator. The step config's
//! `"mode"` picks the attack:
//!
//! | mode             | what the validator does                                       |
//! |------------------|---------------------------------------------------------------|
//! | `nondeterminism` | reads the wall clock, the monotonic clock and std's random   |
//! |                  | hash keys, and lets them decide its metrics and its verdict   |
//! | `loop`           | spins forever                                                 |
//! | `probe-loop`     | asks the candidate (`hostile-model`) to spin forever          |
//! |                  | and reports the candidate's failure as a failing finding      |
//! | `probe-swallow`  | asks the candidate to score the first 20 evaluation rows      |
//! |                  | unchanged, ignores whatever comes back, and passes (a         |
//! |                  | validator that trusts its probes, or hides what they show)    |
//! | `ok`             | passes                                                        |
//! | `loop-live`      | passes on 100 rows or more (a gate's evaluation set) and      |
//! |                  | spins on fewer (a serving monitor's live window): it passes   |
//! |                  | the gate and burns its whole budget in serving                |

use airlock_guest::{
    Batch, Column, ColumnValues, Context, Finding, Metric, PluginError, Severity, Validator,
    ValidatorInfo, Verdict,
};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::hint::black_box;

/// The step config: which attack to run.
#[derive(serde::Deserialize)]
struct Config {
    /// One of the modes in the crate docs.
    mode: String,
}

/// The hostile validator; its behaviour is chosen per step.
struct Hostile;

impl Validator for Hostile {
    fn describe() -> ValidatorInfo {
        ValidatorInfo::new(
            "hostile-validator",
            "0.1.0",
            "attacks airlock's determinism, fuel and candidate-fuel accounting",
        )
    }

    fn validate(ctx: Context) -> Result<Verdict, PluginError> {
        let cfg: Config = ctx.config()?;
        match cfg.mode.as_str() {
            "nondeterminism" => Ok(nondeterminism(&ctx)),
            "loop" => spin(),
            "loop-live" if ctx.data.rows < 100 && !ctx.is_dry_run() => spin(),
            "loop-live" => Ok(Verdict {
                passed: true,
                findings: Vec::new(),
                metrics: Vec::new(),
            }),
            "probe-loop" => Ok(probe_loop()),
            "probe-swallow" => {
                let rows: Vec<usize> = (0..(ctx.data.rows as usize).min(20)).collect();
                let _ = airlock_guest::candidate::predict(&ctx.data.select_rows(&rows));
                Ok(Verdict {
                    passed: true,
                    findings: Vec::new(),
                    metrics: Vec::new(),
                })
            }
            "ok" => Ok(Verdict {
                passed: true,
                findings: Vec::new(),
                metrics: Vec::new(),
            }),
            other => Err(PluginError::bad_config(format!(
                "unknown hostile mode `{other}`"
            ))),
        }
    }
}

/// A metric named `name`.
fn metric(name: &str, value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        value,
    }
}

/// Reads every source of nondeterminism std offers a `wasm32-wasip2`
/// guest and lets each one shape the verdict, so any leak of host time or
/// host entropy shows up as a different verdict or a different fuel count.
fn nondeterminism(ctx: &Context) -> Verdict {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(-1.0);

    let start = std::time::Instant::now();
    let mut x = 0u64;
    for i in 0..10_000u64 {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    let elapsed_ns = start.elapsed().as_nanos() as f64;

    // RandomState draws its keys from the platform's entropy source.
    let hash = RandomState::new().hash_one(0x5eed_u64);
    // A map's iteration order depends on those keys too.
    let map: HashMap<u64, ()> = (0..16).map(|k| (k, ())).collect();
    let order = map.keys().take(8).fold(0u64, |acc, k| acc * 16 + k);

    // Let the observations decide how much work is done, so that leaked
    // entropy would also change the fuel used.
    let extra = (hash ^ wall.to_bits() ^ elapsed_ns.to_bits()) % 4096;
    let mut y = 0u64;
    for i in 0..extra {
        y = black_box(y.wrapping_add(i));
    }

    Verdict {
        passed: (hash ^ order ^ elapsed_ns.to_bits()) & 1 == 0,
        findings: vec![Finding {
            severity: Severity::Info,
            code: "observed".to_string(),
            message: format!(
                "seed {} wall {wall} elapsed {elapsed_ns} ns hash {hash:016x} order {order:x} work {y}",
                ctx.seed
            ),
        }],
        metrics: vec![
            metric("wall_clock_secs", wall),
            metric("monotonic_elapsed_ns", elapsed_ns),
            // 53 bits, so the value is exact in an f64.
            metric("random_state_hash", (hash >> 11) as f64),
            metric("hashmap_order", order as f64),
            metric("extra_work", extra as f64),
        ],
    }
}

/// Loops forever; `black_box` keeps the optimiser from proving the loop
/// useless.
fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

/// Makes the candidate (the `hostile-model` plugin) run its `loop` attack
/// and turns the error the host reports for it into a failing finding whose
/// code is `candidate-` plus the WIT name of the failure kind.
fn probe_loop() -> Verdict {
    let batch = Batch {
        rows: 1,
        // The model's declared input; -1 asks `hostile-model` to spin.
        columns: vec![Column {
            name: "x".to_string(),
            values: ColumnValues::Numeric(vec![-1.0]),
        }],
    };
    match airlock_guest::candidate::predict(&batch) {
        Ok(p) => Verdict {
            passed: true,
            findings: vec![Finding {
                severity: Severity::Info,
                code: "candidate-returned".to_string(),
                message: format!("the candidate returned {} values", p.values.len()),
            }],
            metrics: Vec::new(),
        },
        Err(e) => Verdict {
            passed: false,
            findings: vec![Finding {
                severity: Severity::Error,
                // `candidate-<kind>` for a sandbox failure (the WIT name of
                // the host's failure kind).
                code: e.code(),
                message: format!("{}: {}", e.code(), e.message()),
            }],
            metrics: Vec::new(),
        },
    }
}

airlock_guest::export_validator!(Hostile);
