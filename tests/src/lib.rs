//! Shared helpers for airlock's integration tests: where the compiled
//! plugins and the committed fixtures are, and one sandbox per test binary
//! (compiling components is the slow part, so it is done once and cached on
//! disk across test binaries).

use airlock_host::sandbox::{Sandbox, SandboxConfig};
use std::path::PathBuf;
use std::sync::OnceLock;

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

/// The compile cache shared by all test binaries.
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

/// The `airlock` binary of this build, built on demand (integration tests
/// of this crate do not get `CARGO_BIN_EXE_*` for another package's binary).
pub fn airlock_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .current_dir(repo_root())
            .args(["build", "-q", "-p", "airlock-host", "--bin", "airlock"])
            .status()
            .expect("running cargo to build the airlock binary");
        assert!(status.success(), "building the airlock binary failed");
        let bin = repo_root().join("target").join("debug").join("airlock");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// The example directory of the breast-cancer gate.
pub fn example() -> PathBuf {
    repo_root().join("examples").join("breast-cancer")
}
