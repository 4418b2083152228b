//! A hostile model plugin for airlock's test suite.
//!
//! It exists to attack the sandbox from the inside: every batch picks one
//! attack by the name of its first column, so a single component exercises
//! every limit and every capability the host must deny. The integration
//! tests in `tests/tests/hostile.rs` assert that each attack ends in the
//! exact failure kind the host promises, and that the next call is unharmed.
//!
//! | first column   | what the plugin does                                        |
//! |----------------|-------------------------------------------------------------|
//! | `loop`         | spins forever                                               |
//! | `recurse`      | recurses without bound                                      |
//! | `grow`         | allocates and touches memory until allocation fails         |
//! | `huge-output`  | returns 4 Mi values (32 MiB), past the default output cap   |
//! | `big-output`   | returns 256 Ki values (2 MiB), past a lowered output cap    |
//! | `read-abs`     | reads `/etc/passwd`                                         |
//! | `read-dotdot`  | reads `/bundle/../../../../etc/passwd`                      |
//! | `read-symlink` | reads `/bundle/link`, a symlink the test plants             |
//! | `read-bundle`  | reads `/bundle/model.json` (the readable control)           |
//! | `write-bundle` | creates, appends to, renames and deletes files in `/bundle` |
//! | `env`          | counts environment variables and arguments                  |
//! | `panic`        | panics with [`PANIC_MESSAGE`]                               |
//! | `sleep`        | sleeps for an hour                                          |
//! | `print`        | writes 10 MiB to stdout                                     |
//! | `remember`     | counts its calls in a static: state that must not survive   |
//! | `clock`        | the monotonic clock's reading in nanoseconds, then sleeps an |
//! |                | hour: a warm session's next call must see the clock reset   |
//! | `ok`           | behaves: one value per row, the row count                   |
//! | `x`            | the declared input, as a validator's probe and a served     |
//! |                | request send it: spins forever when the first value is -1,  |
//! |                | panics when it is -3, answers (per row) the largest value   |
//! |                | any earlier call of this instance sent when it is -2 (a     |
//! |                | model snooping on other clients); otherwise remembers the   |
//! |                | values and behaves like `ok`                                |
//! | `stat-bundle`  | modified, accessed, created (seconds since the epoch, -1 when unavailable) of `/bundle/model.json` by path, of it through an open handle, and of `/bundle`; then WASI `metadata-hash` of `model.json` and of `/bundle`, each as four 32-bit halves |

use airlock_guest::{
    Batch, Feature, FeatureKind, Model, ModelMetadata, OutputSchema, PluginError, Predictions, Task,
};
use std::hint::black_box;
use std::io::Write;

/// What the `panic` attack panics with, so the test can find it in the
/// failure.
pub const PANIC_MESSAGE: &str = "hostile-model deliberate panic 7f3a9c";

/// How many values the `huge-output` attack returns: 4 Mi `f64`s, 32 MiB,
/// twice the default output cap and well inside the default memory cap.
pub const HUGE_OUTPUT_VALUES: usize = 4 << 20;

/// How many values the `big-output` attack returns: 256 Ki `f64`s, 2 MiB,
/// below the host's per-call allocation cap, so only the output cap stops it.
pub const BIG_OUTPUT_VALUES: usize = 256 << 10;

/// How many bytes the `print` attack writes to stdout: 10 MiB.
pub const PRINT_BYTES: usize = 10 << 20;

/// Calls seen by this instance; lives in linear memory, so a fresh instance
/// per call must always start it at zero.
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The hostile model; its behaviour is chosen per batch.
struct Hostile;

impl Model for Hostile {
    fn metadata() -> Result<ModelMetadata, PluginError> {
        Ok(ModelMetadata {
            name: "hostile-model".to_string(),
            version: "0.1.0".to_string(),
            inputs: vec![Feature {
                name: "x".to_string(),
                kind: FeatureKind::Numeric,
            }],
            output: OutputSchema {
                task: Task::Regression,
                classes: Vec::new(),
            },
        })
    }

    fn predict(batch: Batch) -> Result<Predictions, PluginError> {
        let mode = batch
            .columns
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_default();
        match mode.as_str() {
            "loop" => spin(),
            "recurse" => Ok(values(vec![recurse(black_box(0)) as f64])),
            "grow" => grow(),
            "huge-output" => Ok(values(vec![1.0; HUGE_OUTPUT_VALUES])),
            "big-output" => Ok(values(vec![1.0; BIG_OUTPUT_VALUES])),
            "read-abs" => read_file("/etc/passwd"),
            "read-dotdot" => read_file("/bundle/../../../../etc/passwd"),
            "read-symlink" => read_file("/bundle/link"),
            "read-bundle" => read_file("/bundle/model.json"),
            "write-bundle" => write_bundle(),
            "env" => Ok(values(vec![
                std::env::vars_os().count() as f64,
                std::env::args_os().count() as f64,
            ])),
            "panic" => panic!("{PANIC_MESSAGE}"),
            "sleep" => sleep_an_hour(),
            "print" => print_flood(),
            "remember" => {
                let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Ok(values(vec![n as f64]))
            }
            "clock" => clock_then_sleep(),
            "ok" => Ok(values(vec![f64::from(batch.rows); batch.rows as usize])),
            "x" => match &batch.columns[0].values {
                airlock_guest::ColumnValues::Numeric(v) if v.first() == Some(&-1.0) => spin(),
                airlock_guest::ColumnValues::Numeric(v) if v.first() == Some(&-3.0) => {
                    panic!("{PANIC_MESSAGE}")
                }
                airlock_guest::ColumnValues::Numeric(v) if v.first() == Some(&-2.0) => {
                    Ok(values(snoop(v)))
                }
                airlock_guest::ColumnValues::Numeric(v) => {
                    stash(v);
                    Ok(values(vec![f64::from(batch.rows); batch.rows as usize]))
                }
                _ => Ok(values(vec![f64::from(batch.rows); batch.rows as usize])),
            },
            "stat-bundle" => stat_bundle(),
            other => Err(PluginError::bad_input(format!(
                "unknown hostile mode `{other}`"
            ))),
        }
    }
}

/// Every value this instance was ever given, in linear memory: a served
/// model keeping what other clients sent. A fresh instance per request must
/// leave it empty.
static SEEN: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// Remembers `v` (what a curious model keeps of other requests).
fn stash(v: &[f64]) {
    if let Ok(mut seen) = SEEN.lock() {
        seen.extend_from_slice(v);
    }
}

/// One value per row: the largest value any earlier request in this
/// instance sent, or 0 when it saw none (the answer when isolation holds).
fn snoop(v: &[f64]) -> Vec<f64> {
    let seen = SEEN
        .lock()
        .map(|s| s.iter().copied().fold(0.0, f64::max))
        .unwrap_or(0.0);
    stash(v);
    vec![seen; v.len()]
}

/// Predictions of width 1 holding `v`.
fn values(v: Vec<f64>) -> Predictions {
    Predictions {
        width: 1,
        values: v,
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

/// Recurses without bound. The recursive call goes through a function
/// pointer hidden by `black_box`, so it can be neither inlined nor turned
/// into a loop, and every level costs a native Wasm stack frame (the
/// values stay in Wasm locals, not on Rust's shadow stack in linear
/// memory, so the engine's stack guard is what stops it).
fn recurse(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = black_box(recurse);
    next(depth.wrapping_add(1)).wrapping_add(depth)
}

/// Allocates 1 MiB blocks and touches every page of each, keeping them all
/// alive, until an allocation fails (which aborts the guest).
fn grow() -> Result<Predictions, PluginError> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = 0xa5;
        }
        blocks.push(black_box(block));
    }
}

/// Reads `path`; on success returns its length followed by every byte as
/// a value (so a test can tell if any content leaked), on failure a
/// `read-failed` error.
fn read_file(path: &str) -> Result<Predictions, PluginError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut v = vec![bytes.len() as f64];
            v.extend(bytes.iter().map(|b| f64::from(*b)));
            Ok(values(v))
        }
        Err(e) => Err(PluginError::new(
            "read-failed",
            format!("cannot read `{path}`: {e}"),
        )),
    }
}

/// Tries every way of changing the read-only bundle; returns how many
/// succeeded, or a `write-failed` error listing why each one failed.
fn write_bundle() -> Result<Predictions, PluginError> {
    let attempts: [(&str, std::io::Result<()>); 5] = [
        (
            "create /bundle/evil.txt",
            std::fs::write("/bundle/evil.txt", b"pwned"),
        ),
        (
            "append to /bundle/model.json",
            std::fs::OpenOptions::new()
                .append(true)
                .open("/bundle/model.json")
                .and_then(|mut f| f.write_all(b"pwned")),
        ),
        ("mkdir /bundle/evil", std::fs::create_dir("/bundle/evil")),
        (
            "rename /bundle/model.json",
            std::fs::rename("/bundle/model.json", "/bundle/moved.json"),
        ),
        (
            "remove /bundle/model.json",
            std::fs::remove_file("/bundle/model.json"),
        ),
    ];
    let mut succeeded = 0.0;
    let mut errors = Vec::new();
    for (what, result) in attempts {
        match result {
            Ok(()) => succeeded += 1.0,
            Err(e) => errors.push(format!("{what}: {e}")),
        }
    }
    if succeeded > 0.0 {
        return Ok(values(vec![succeeded]));
    }
    Err(PluginError::new("write-failed", errors.join("; ")))
}

/// Sleeps for an hour and reports how much monotonic and wall-clock time
/// the guest saw pass, in seconds.
fn sleep_an_hour() -> Result<Predictions, PluginError> {
    let mono = std::time::Instant::now();
    let wall = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_secs(3600));
    let wall_elapsed = wall.elapsed().map(|d| d.as_secs_f64()).unwrap_or(-1.0);
    Ok(values(vec![mono.elapsed().as_secs_f64(), wall_elapsed]))
}

/// The monotonic clock's raw reading in nanoseconds (std hides it behind
/// `Instant`), then an hour's sleep, which advances the clock by an hour.
#[cfg(target_arch = "wasm32")]
fn clock_then_sleep() -> Result<Predictions, PluginError> {
    let now = wasip2::clocks::monotonic_clock::now();
    std::thread::sleep(std::time::Duration::from_secs(3600));
    Ok(values(vec![now as f64]))
}

/// Native builds (tests of the workspace) have no WASI clock to read.
#[cfg(not(target_arch = "wasm32"))]
fn clock_then_sleep() -> Result<Predictions, PluginError> {
    Err(PluginError::bad_input("the clock attack needs WASI"))
}

/// Writes [`PRINT_BYTES`] to stdout in 64 KiB chunks, then behaves.
fn print_flood() -> Result<Predictions, PluginError> {
    let chunk = vec![b'x'; 64 << 10];
    let mut out = std::io::stdout().lock();
    for _ in 0..PRINT_BYTES / chunk.len() {
        out.write_all(&chunk)
            .map_err(|e| PluginError::new("write-failed", e.to_string()))?;
    }
    out.flush()
        .map_err(|e| PluginError::new("write-failed", e.to_string()))?;
    Ok(values(vec![PRINT_BYTES as f64]))
}

/// The `stat-bundle` attack: the timestamps (modified, accessed, created, in
/// seconds since the epoch, or -1 where the host gives none) of
/// `/bundle/model.json` stat'ed by path (`stat-at`), of the same file through
/// an open handle (`stat`), and of `/bundle`. Real times would let a model
/// read the host's date.
fn stat_bundle() -> Result<Predictions, PluginError> {
    fn secs(t: std::io::Result<std::time::SystemTime>) -> f64 {
        t.ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1.0, |d| d.as_secs_f64())
    }
    let failed = |what: &str, e: std::io::Error| {
        PluginError::new("read-failed", format!("cannot stat {what}: {e}"))
    };
    let by_path = std::fs::metadata("/bundle/model.json").map_err(|e| failed("by path", e))?;
    let by_handle = std::fs::File::open("/bundle/model.json")
        .and_then(|f| f.metadata())
        .map_err(|e| failed("by handle", e))?;
    let dir = std::fs::metadata("/bundle").map_err(|e| failed("/bundle", e))?;
    let mut v = Vec::new();
    for m in [by_path, by_handle, dir] {
        v.extend([secs(m.modified()), secs(m.accessed()), secs(m.created())]);
    }
    v.extend(metadata_hashes()?);
    Ok(values(v))
}

/// WASI `metadata-hash` of `/bundle/model.json` (`metadata-hash-at`) and of
/// `/bundle` (`metadata-hash`), each as the 32-bit halves of its lower and
/// upper 64 bits (exact in `f64`). std does not expose these, so the raw
/// bindings are used.
#[cfg(target_arch = "wasm32")]
fn metadata_hashes() -> Result<Vec<f64>, PluginError> {
    use wasip2::filesystem::{preopens, types};
    let failed = |what: &str, e: types::ErrorCode| {
        PluginError::new("read-failed", format!("metadata-hash of {what}: {e:?}"))
    };
    let dirs = preopens::get_directories();
    let (dir, _) = dirs
        .iter()
        .find(|(_, path)| path == "/bundle")
        .ok_or_else(|| PluginError::new("read-failed", "no /bundle preopen"))?;
    let file = dir
        .metadata_hash_at(types::PathFlags::empty(), "model.json")
        .map_err(|e| failed("model.json", e))?;
    let root = dir.metadata_hash().map_err(|e| failed("/bundle", e))?;
    let mut v = Vec::new();
    for h in [file, root] {
        for half in [h.lower, h.upper] {
            v.extend([(half >> 32) as f64, (half & 0xffff_ffff) as f64]);
        }
    }
    Ok(v)
}

/// Native builds (tests of the workspace) have no WASI to ask.
#[cfg(not(target_arch = "wasm32"))]
fn metadata_hashes() -> Result<Vec<f64>, PluginError> {
    Ok(Vec::new())
}

airlock_guest::export_model!(Hostile);
