//! The compile cache: compiled code is reused across processes, and the host
//! only ever deserializes artifacts it sealed itself — a tampered artifact,
//! or one sealed under another host's key, is recompiled, never loaded.

use airlock_runtime::sandbox::cache::CacheOutcome;
use airlock_runtime::sandbox::{Sandbox, SandboxConfig};
use airlock_tests::plugin;
use std::path::Path;

fn fresh(dir: &Path) -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: 4,
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn artifact(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("an artifact")
}

#[test]
fn artifacts_are_reused_only_when_their_seal_verifies() {
    let wasm = std::fs::read(plugin("airlock_validator_fairness")).unwrap();
    let a = tempfile::tempdir().unwrap();
    assert_eq!(
        fresh(a.path()).load(&wasm).unwrap().cache_outcome,
        CacheOutcome::Compiled
    );
    assert_eq!(
        fresh(a.path()).load(&wasm).unwrap().cache_outcome,
        CacheOutcome::Disk
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path().join("cache-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the cache key is private to the host user");
    }

    // Flip one byte of the compiled code: the seal no longer verifies.
    let path = artifact(a.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let p = fresh(a.path()).load(&wasm).unwrap();
    assert_eq!(p.cache_outcome, CacheOutcome::Compiled);
    p.describe(&Default::default()).unwrap();
    // ...and the recompiled artifact replaced it.
    assert_eq!(
        fresh(a.path()).load(&wasm).unwrap().cache_outcome,
        CacheOutcome::Disk
    );

    // An artifact sealed by another host (another key) is not trusted.
    let b = tempfile::tempdir().unwrap();
    fresh(b.path()).load(&wasm).unwrap();
    std::fs::copy(artifact(b.path()), artifact(a.path())).unwrap();
    assert_eq!(
        fresh(a.path()).load(&wasm).unwrap().cache_outcome,
        CacheOutcome::Compiled
    );
}
