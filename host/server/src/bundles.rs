//! Bundles read back from blobs, for a gate run or for serving: unpacked
//! into the data directory's private scratch area, snapshotted into
//! `<data>/snapshots` (never under the system's temporary directory), and
//! refused unless the archive's blob hashes to its name and the unpacked
//! tree has the digest recorded for the version.

use crate::state::AppState;
use airlock_core::digest::Digest;
use airlock_runtime::sandbox::Bundle;
use std::path::{Path, PathBuf};

/// Where bundle snapshots live: `<data>/snapshots` (mode 0700). Each
/// snapshot is locked by the process that uses it and removed when
/// dropped; one whose process died is removed by the next snapshot's sweep
/// (and at start), never one still locked. It is kept apart from
/// `<data>/tmp`, which a start empties wholesale.
pub fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// Unpacks the bundle archive `archive` into the empty directory `dir`
/// (inside the scratch area), snapshots it under [`snapshots_dir`] and
/// checks its tree digest against `expected` (the version's recorded one).
/// Every error names the blob.
pub fn unpack_checked(
    state: &AppState,
    archive: &Digest,
    expected: Option<&str>,
    dir: &Path,
) -> Result<Bundle, String> {
    let caps = state.sandbox.config().bundle_caps;
    let reader = state
        .blobs
        .open(archive)
        .map_err(|e| format!("blob {archive}: {e}"))?;
    crate::archive::unpack(reader, dir, &caps).map_err(|e| format!("blob {archive}: {e}"))?;
    let snapshots = snapshots_dir(&state.config.data_dir);
    let bundle =
        Bundle::from_path_in(dir, &caps, &snapshots).map_err(|e| format!("blob {archive}: {e}"))?;
    if let Some(expected) = expected
        && bundle.digest.to_string() != expected
    {
        return Err(format!(
            "blob {archive} unpacks to bundle {}, not the version's recorded {expected}: \
             the stored archive was changed",
            bundle.digest
        ));
    }
    Ok(bundle)
}
