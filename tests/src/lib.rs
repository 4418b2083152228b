//! Shared helpers for airlock's integration tests: where the compiled
//! plugins and the committed fixtures are, and one sandbox per process
//! (compiling components is the slow part, so it is done once and cached on
//! disk across processes: earlier test runs and the `airlock` processes the
//! tests start).

use airlock_core::LimitRequest;
use airlock_core::types::{Batch, Column, ColumnValues};
use airlock_runtime::sandbox::{CallOptions, Plugin, Sandbox, SandboxConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;

pub mod http;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("AIRLOCK_REPO_ROOT"))
}

/// The component built from the guest crate whose library is `lib_name`
/// (e.g. `airlock_model_xgboost`).
pub fn plugin(lib_name: &str) -> PathBuf {
    let p = PathBuf::from(env!("AIRLOCK_PLUGIN_DIR")).join(format!("{lib_name}.wasm"));
    assert!(p.exists(), "plugin {} was not built", p.display());
    p
}

/// A committed fixture, relative to `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(rel)
}

/// The compile cache shared by the integration tests and the `airlock`
/// processes they start.
pub fn cache_dir() -> PathBuf {
    repo_root().join("target").join("airlock-test-cache")
}

/// A sandbox with default limits and the shared compile cache.
pub fn sandbox() -> Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(cache_dir()),
            ..SandboxConfig::default()
        })
        .expect("sandbox")
    })
    .clone()
}

/// The `airlock` CLI of this build: the crate's `airlock-under-test`
/// binary, which cargo builds beside the integration tests (in the
/// directory above `deps/`, where the running test executable lives).
pub fn airlock_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile directory");
    let bin = dir.join(format!(
        "airlock-under-test{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        bin.exists(),
        "{} missing: run the tests through cargo so it builds the binary",
        bin.display()
    );
    bin
}

/// Whether the `airlock` command line `args` runs a sandbox and so takes
/// `--config`, `--cache-dir` and `--no-cache` (client commands and key
/// tools do not).
pub fn takes_cache_dir(args: &[&str]) -> bool {
    matches!(
        args,
        ["plugin", "build" | "inspect" | "run" | "validate", ..]
            | ["gate", "run", ..]
            | ["server", ..]
    )
}

/// The example directory of the breast-cancer gate.
pub fn example() -> PathBuf {
    repo_root().join("examples").join("breast-cancer")
}

/// Loads the compiled guest crate `lib_name` into `sb`.
pub fn load(sb: &Sandbox, lib_name: &str) -> Arc<Plugin> {
    sb.load_file(&plugin(lib_name))
        .unwrap_or_else(|e| panic!("loading {lib_name}: {e}"))
}

/// A batch of `rows` zeros in one numeric column named `mode`, which is how
/// `hostile-model` is told which attack to run.
pub fn hostile_batch(mode: &str, rows: u32) -> Batch {
    Batch {
        rows,
        columns: vec![Column {
            name: mode.to_string(),
            values: ColumnValues::Numeric(vec![0.0; rows as usize]),
        }],
    }
}

/// Call options that lower the ceilings by `limits`.
pub fn with_limits(limits: LimitRequest) -> CallOptions {
    CallOptions {
        limits,
        ..CallOptions::default()
    }
}
