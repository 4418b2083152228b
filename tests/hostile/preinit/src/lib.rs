//! A hostile pre-initialised model for airlock's test suite.
//!
//! It is exported with `export_bundled_model!`, so the host runs its `init`
//! once and serves every call from the snapshot taken after it. What `init`
//! does is chosen by the bundle's `model.json`, one word (plus an argument):
//!
//! | `model.json` | what `init` does                                          |
//! |--------------|-----------------------------------------------------------|
//! | `ok`         | sets the call counter to 100 and records nothing else     |
//! | `entropy`    | also records a random number, the wall clock and the monotonic clock: the snapshot must still be the same on every build |
//! | `spin`       | spins forever                                              |
//! | `grow N`     | leaves N MiB of non-zero heap behind, to bloat the snapshot (`grow 220` fills memory densely: the snapshot is refused while the state is read) |
//! | `scatter N`  | leaves N MiB of heap with one non-zero byte in six: little data, but a separate run per byte |
//! | `probe N`    | asks for N MiB more linear memory and remembers whether it got them: a model measuring the limits it was built under |
//! | `fail`       | returns its own error                                      |
//! | `panic`      | panics with [`INIT_PANIC`]                                 |
//!
//! `predict` picks an attack by the name of the batch's first column:
//!
//! | first column | what `predict` does                                        |
//! |--------------|------------------------------------------------------------|
//! | `remember`   | increments the counter `init` set: a fresh instance of the snapshot always answers 101 |
//! | `scribble`   | appends to a static list and answers its length: always 1 |
//! | `state`      | answers what `init` recorded (counter, random, clocks) and whether it runs pre-initialised |
//! | `probe`      | answers 1 if `init`'s `probe N` got its memory, else 0     |
//! | `panic`      | panics with [`CALL_PANIC`]: the message must reach the host after the restore |
//! | anything else | one 0.0 per row                                           |

use airlock_guest::{
    Batch, BundledModel, Feature, FeatureKind, ModelMetadata, OutputSchema, PluginError,
    Predictions, Task,
};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

// Low enough that a runaway `init` stops in a fraction of a second: the
// manifest lowers `init`'s fixed limits as it lowers every call's.
airlock_guest::manifest!("[limits]\nfuel = 300_000_000\ntimeout_ms = 3_000\n");

/// What `init` panics with in `panic` mode.
pub const INIT_PANIC: &str = "hostile-preinit init panic 51c2";

/// What `predict` panics with for the `panic` column.
pub const CALL_PANIC: &str = "hostile-preinit call panic 9e07";

/// Set to 100 by `init`; every call increments it once.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Set by `init`'s `probe N`: 1 when the memory was granted.
static PROBED: AtomicU64 = AtomicU64::new(0);

/// Grows by one entry per `scribble` call.
static SCRIBBLES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// What `init` recorded.
pub struct State {
    random: f64,
    wall_secs: f64,
    monotonic_ns: f64,
}

/// The model.
struct Preinit;

impl BundledModel for Preinit {
    type Parsed = State;

    fn parse(bytes: &[u8]) -> Result<State, PluginError> {
        let text = String::from_utf8_lossy(bytes);
        let mut words = text.split_whitespace();
        let mode = words.next().unwrap_or("ok");
        COUNTER.store(100, Ordering::Relaxed);
        let mut state = State {
            random: 0.0,
            wall_secs: 0.0,
            monotonic_ns: 0.0,
        };
        match mode {
            "ok" => {}
            "entropy" => {
                use std::hash::{BuildHasher, Hasher};
                // RandomState draws its keys from the host's random source.
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u8(1);
                state.random = (h.finish() >> 11) as f64;
                state.wall_secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(-1.0);
                let t0 = std::time::Instant::now();
                black_box(spin_a_little());
                state.monotonic_ns = t0.elapsed().as_nanos() as f64;
            }
            "spin" => loop {
                black_box(spin_a_little());
            },
            "grow" => {
                let mib: usize = words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| PluginError::bad_input("grow needs a size in MiB"))?;
                std::mem::forget(vec![0xA5u8; mib << 20]);
            }
            "scatter" => {
                let mib: usize = words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| PluginError::bad_input("scatter needs a size in MiB"))?;
                let mut heap = vec![0u8; mib << 20];
                for b in heap.iter_mut().step_by(6) {
                    *b = 1;
                }
                std::mem::forget(heap);
            }
            "probe" => {
                let mib: usize = words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| PluginError::bad_input("probe needs a size in MiB"))?;
                PROBED.store(u64::from(grow_memory(mib << 4)), Ordering::Relaxed);
            }
            "fail" => {
                return Err(PluginError::new(
                    "bad-bundle",
                    "hostile-preinit refuses to initialise",
                ));
            }
            "panic" => panic!("{INIT_PANIC}"),
            other => {
                return Err(PluginError::bad_input(format!(
                    "unknown init mode `{other}`"
                )));
            }
        }
        Ok(state)
    }

    fn metadata_of(_: &State) -> ModelMetadata {
        ModelMetadata {
            name: "hostile-preinit".to_string(),
            version: "0.2.0".to_string(),
            inputs: vec![Feature {
                name: "x".to_string(),
                kind: FeatureKind::Numeric,
            }],
            output: OutputSchema {
                task: Task::Regression,
                classes: Vec::new(),
            },
        }
    }

    fn predict_with(state: &State, batch: &Batch) -> Result<Predictions, PluginError> {
        let mode = batch.columns.first().map_or("", |c| c.name.as_str());
        let values = match mode {
            "remember" => vec![(COUNTER.fetch_add(1, Ordering::Relaxed) + 1) as f64],
            "scribble" => {
                let mut s = SCRIBBLES.lock().unwrap_or_else(|p| p.into_inner());
                s.push(7);
                vec![s.len() as f64]
            }
            "state" => vec![
                COUNTER.load(Ordering::Relaxed) as f64,
                state.random,
                state.wall_secs,
                state.monotonic_ns,
                f64::from(u8::from(airlock_guest::preinit::is_preinitialised())),
            ],
            "probe" => vec![PROBED.load(Ordering::Relaxed) as f64],
            "panic" => panic!("{CALL_PANIC}"),
            _ => vec![0.0; batch.rows as usize],
        };
        Ok(Predictions { width: 1, values })
    }
}

/// Asks for `pages` more 64 KiB pages of linear memory; whether the host
/// granted them.
fn grow_memory(pages: usize) -> bool {
    #[cfg(target_family = "wasm")]
    {
        core::arch::wasm32::memory_grow(0, pages) != usize::MAX
    }
    #[cfg(not(target_family = "wasm"))]
    {
        black_box(pages) == 0
    }
}

/// A little work the optimiser cannot remove.
fn spin_a_little() -> u64 {
    let mut x = 0u64;
    for i in 0..1000u64 {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

airlock_guest::export_bundled_model!(Preinit);
