//! Crash safety under SIGKILL: a child process (this test executable, run
//! with a filter and an environment variable) writes and rotates blobs in a
//! loop and is killed at random moments; after every kill each file under
//! `sha256/` must be complete and hash to its name.

mod common;

use airlock_blobs::{BlobStore, LocalBlobStore};
use airlock_core::digest::Digest;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Tells the child run where to write.
const CHILD_ENV: &str = "AIRLOCK_BLOBS_CRASH_CHILD_ROOT";

/// The two keys; the child picks which is current, the checker holds both.
fn keys(current_b: bool) -> airlock_blobs::KeyRing {
    if current_b {
        ring(&[("key-a", 0xaa), ("key-b", 0xbb)])
    } else {
        ring(&[("key-b", 0xbb), ("key-a", 0xaa)])
    }
}

/// Not a test on its own: without the variable it returns at once. With
/// it, it is the child that gets killed.
#[test]
fn crash_child() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let plain = LocalBlobStore::open(&root.join("plain"), None).unwrap();
    let enc = LocalBlobStore::open(&root.join("enc"), Some(keys(below(2) == 0))).unwrap();
    for i in 0u64.. {
        for store in [&plain, &enc] {
            let len = match below(4) {
                0 => below(100) as usize,
                _ => below(300_000) as usize,
            };
            let bytes = random(len);
            let mut w = store.writer(u64::MAX).unwrap();
            for chunk in bytes.chunks(1 + below(100_000) as usize) {
                w.write_all(chunk).unwrap();
            }
            w.finish(None).unwrap();
        }
        if i % 8 == 7 {
            enc.rotate().unwrap();
        }
    }
}

/// Every file under `sha256/` reads back completely and hashes to its name.
fn check(store: &LocalBlobStore) -> usize {
    let names = std::fs::read_dir(store.root().join("sha256")).unwrap();
    let mut n = 0;
    for entry in names {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let d = Digest::parse(&format!("sha256:{name}"))
            .unwrap_or_else(|| panic!("a file that is not a digest: {name}"));
        let bytes = read_all(store, &d).unwrap_or_else(|(e, _)| panic!("{name}: {e}"));
        assert_eq!(Digest::of(&bytes), d, "{name}");
        assert_eq!(store.size(&d).unwrap(), Some(bytes.len() as u64));
        n += 1;
    }
    n
}

#[test]
fn sigkill_at_random_moments_leaves_only_complete_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total = 0;
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + below(300)));
        // Child::kill sends SIGKILL on Unix.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must die by the kill, not finish"
        );
        let plain = LocalBlobStore::open(&dir.path().join("plain"), None).unwrap();
        let enc = LocalBlobStore::open(&dir.path().join("enc"), Some(keys(true))).unwrap();
        total = check(&plain) + check(&enc);
    }
    assert!(
        total > 10,
        "the child wrote only {total} blobs; the test proves nothing"
    );
    // Killed writers leave temporaries; a sweep removes them all.
    for sub in ["plain", "enc"] {
        let store = LocalBlobStore::open(&dir.path().join(sub), None).unwrap();
        store.sweep_temporaries().unwrap();
        assert_eq!(count(&dir.path().join(sub), "tmp"), 0);
    }
}
