//! The store's contract, on plaintext and encrypted stores alike: round
//! trips, idempotence, caps, mismatches, drops, sweeps, materialize.

mod common;

use airlock_blobs::{BlobError, BlobStore, LocalBlobStore, format};
use airlock_core::digest::Digest;
use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

/// A plaintext store and an encrypted one, each in its own directory.
fn stores() -> Vec<(tempfile::TempDir, LocalBlobStore)> {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let plain = LocalBlobStore::open(a.path(), None).unwrap();
    let enc = LocalBlobStore::open(b.path(), Some(ring(&[("k1", 1)]))).unwrap();
    vec![(a, plain), (b, enc)]
}

const SEG: usize = format::SEGMENT_SIZE;

#[test]
fn round_trips_of_every_boundary_size_plain_and_encrypted() {
    for (dir, store) in stores() {
        let encrypted = store.key_ring().is_some();
        for len in [
            0,
            1,
            100,
            SEG - 1,
            SEG,
            SEG + 1,
            2 * SEG,
            3 * 1024 * 1024 + 17,
        ] {
            let bytes = random(len);
            let info = put(&store, &bytes);
            assert_eq!(info.digest, Digest::of(&bytes), "len {len}");
            assert_eq!(info.size, len as u64);
            assert!(info.created);
            assert!(store.contains(&info.digest).unwrap());
            assert_eq!(
                store.size(&info.digest).unwrap(),
                Some(len as u64),
                "len {len}"
            );
            let back = read_all(&store, &info.digest).unwrap();
            assert!(back == bytes, "len {len} encrypted={encrypted}");
            let raw = fs::read(store.blob_path(&info.digest)).unwrap();
            assert_eq!(raw == bytes, !encrypted, "len {len}");
            let dest = dir.path().join(format!("out-{len}"));
            assert_eq!(store.materialize(&info.digest, &dest).unwrap(), len as u64);
            assert!(fs::read(&dest).unwrap() == bytes);
            let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(count(dir.path(), "tmp"), 0);
    }
}

#[test]
fn the_directories_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    LocalBlobStore::open(&root, None).unwrap();
    for d in [&root, &root.join("sha256"), &root.join("tmp")] {
        assert_eq!(fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

#[test]
fn writing_the_same_bytes_twice_keeps_one_blob() {
    for (dir, store) in stores() {
        let bytes = random(SEG + 5);
        let first = put(&store, &bytes);
        let before = fs::read(store.blob_path(&first.digest)).unwrap();
        let second = put(&store, &bytes);
        assert_eq!(second.digest, first.digest);
        assert!(first.created && !second.created);
        assert_eq!(count(dir.path(), "sha256"), 1);
        assert_eq!(count(dir.path(), "tmp"), 0);
        // The existing file was kept as it was.
        assert_eq!(fs::read(store.blob_path(&first.digest)).unwrap(), before);
    }
}

#[test]
fn a_write_past_the_cap_fails_and_leaves_nothing() {
    for (dir, store) in stores() {
        let mut w = store.writer(100_000).unwrap();
        w.write_all(&random(SEG)).unwrap();
        let err = w.write_all(&random(SEG)).unwrap_err();
        assert!(
            matches!(
                BlobError::of_io(&err),
                Some(BlobError::TooLarge { limit: 100_000 })
            ),
            "{err:?}"
        );
        // Later writes and finish keep failing; nothing is published.
        assert!(w.write_all(b"x").is_err());
        let err = w.finish(None).unwrap_err();
        assert!(
            matches!(err, BlobError::TooLarge { limit: 100_000 }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "blob exceeds the size limit of 100000 bytes"
        );
        assert_eq!(count(dir.path(), "sha256"), 0);
        assert_eq!(count(dir.path(), "tmp"), 0);
        // Exactly at the cap is fine.
        let mut w = store.writer(100_000).unwrap();
        w.write_all(&random(100_000)).unwrap();
        assert_eq!(w.finish(None).unwrap().size, 100_000);
    }
}

#[test]
fn a_digest_mismatch_publishes_nothing() {
    for (dir, store) in stores() {
        let mut w = store.writer(u64::MAX).unwrap();
        w.write_all(b"actual bytes").unwrap();
        let expected = Digest::of(b"other bytes");
        let err = w.finish(Some(&expected)).unwrap_err();
        match &err {
            BlobError::DigestMismatch {
                expected: e,
                actual,
            } => {
                assert_eq!(*e, expected);
                assert_eq!(*actual, Digest::of(b"actual bytes"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&expected.to_string()));
        assert_eq!(count(dir.path(), "sha256"), 0);
        assert_eq!(count(dir.path(), "tmp"), 0);
        // The right expectation publishes.
        let mut w = store.writer(u64::MAX).unwrap();
        w.write_all(b"actual bytes").unwrap();
        let d = Digest::of(b"actual bytes");
        assert_eq!(w.finish(Some(&d)).unwrap().digest, d);
    }
}

#[test]
fn a_writer_dropped_mid_write_leaves_nothing() {
    for (dir, store) in stores() {
        let mut w = store.writer(u64::MAX).unwrap();
        w.write_all(&random(3 * SEG + 7)).unwrap();
        assert_eq!(
            count(dir.path(), "tmp"),
            1,
            "the temporary exists while writing"
        );
        drop(w);
        assert_eq!(count(dir.path(), "tmp"), 0);
        assert_eq!(count(dir.path(), "sha256"), 0);
    }
}

#[test]
fn sweep_removes_stale_temporaries_but_not_live_ones() {
    for (dir, store) in stores() {
        let stale = dir.path().join("tmp").join("0123abcd.tmp");
        fs::write(&stale, b"half a blob").unwrap();
        let other = dir.path().join("tmp").join("not-ours");
        fs::write(&other, b"x").unwrap();
        let mut live = store.writer(u64::MAX).unwrap();
        live.write_all(b"in flight").unwrap();
        assert_eq!(store.sweep_temporaries().unwrap(), 1);
        assert!(!stale.exists());
        assert!(other.exists(), "only `.tmp` files are swept");
        let info = live.finish(None).unwrap();
        assert_eq!(read_all(&store, &info.digest).unwrap(), b"in flight");
        assert_eq!(store.sweep_temporaries().unwrap(), 0);
    }
}

#[test]
fn absent_blobs_are_not_found_and_materialize_creates_nothing() {
    for (dir, store) in stores() {
        let d = Digest::of(b"never stored");
        assert!(!store.contains(&d).unwrap());
        assert_eq!(store.size(&d).unwrap(), None);
        let err = store.open(&d).err().unwrap();
        assert!(matches!(err, BlobError::NotFound { digest } if digest == d));
        assert_eq!(err.to_string(), format!("blob {d} is not in the store"));
        let dest = dir.path().join("out");
        assert!(matches!(
            store.materialize(&d, &dest),
            Err(BlobError::NotFound { .. })
        ));
        assert!(!dest.exists());
    }
}

#[test]
fn materialize_never_overwrites() {
    for (dir, store) in stores() {
        let info = put(&store, b"data");
        let dest = dir.path().join("exists");
        fs::write(&dest, b"keep me").unwrap();
        let err = store.materialize(&info.digest, &dest).unwrap_err();
        assert!(
            matches!(&err, BlobError::Io { path, source } if path == &dest && source.kind() == std::io::ErrorKind::AlreadyExists),
            "{err:?}"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"keep me");
    }
}

#[test]
fn a_plaintext_blob_changed_on_disk_fails_to_read_and_to_materialize() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path(), None).unwrap();
    let bytes = random(SEG * 2);
    let info = put(&store, &bytes);
    let path = store.blob_path(&info.digest);
    let mut raw = fs::read(&path).unwrap();
    raw[1000] ^= 0x40;
    fs::write(&path, &raw).unwrap();
    let (err, _) = read_all(&store, &info.digest).unwrap_err();
    assert!(
        matches!(&err, BlobError::Corrupt { digest, reason } if *digest == info.digest && reason.contains("hashes to")),
        "{err}"
    );
    let dest = dir.path().join("out");
    assert!(matches!(
        store.materialize(&info.digest, &dest),
        Err(BlobError::Corrupt { .. })
    ));
    assert!(!dest.exists(), "a failed materialize leaves no file");
}

#[test]
fn a_plaintext_upload_that_begins_like_an_encrypted_file_stays_plaintext() {
    // Stored while no key ring was configured, then read and rotated by a
    // store that has one: it must not be mistaken for ciphertext.
    let dir = tempfile::tempdir().unwrap();
    let mut crafted = format::MAGIC.to_vec();
    crafted.extend_from_slice(&[format::VERSION, 2, b'k', b'1']);
    crafted.extend_from_slice(&random(3 * SEG));
    let plain = LocalBlobStore::open(dir.path(), None).unwrap();
    let info = put(&plain, &crafted);
    assert_eq!(read_all(&plain, &info.digest).unwrap(), crafted);
    let enc = LocalBlobStore::open(dir.path(), Some(ring(&[("k1", 1)]))).unwrap();
    assert_eq!(enc.size(&info.digest).unwrap(), Some(crafted.len() as u64));
    assert_eq!(read_all(&enc, &info.digest).unwrap(), crafted);
    assert_eq!(enc.rotate().unwrap(), 1);
    assert_ne!(fs::read(enc.blob_path(&info.digest)).unwrap(), crafted);
    assert_eq!(read_all(&enc, &info.digest).unwrap(), crafted);
}

#[test]
fn list_names_every_blob() {
    for (_dir, store) in stores() {
        let mut want: Vec<Digest> = (0..5)
            .map(|i| put(&store, &random(i * 1000)).digest)
            .collect();
        want.sort();
        assert_eq!(store.list().unwrap(), want);
    }
}

#[test]
fn a_large_streamed_write_in_segment_chunks() {
    // 256 MiB (32 MiB in unoptimised builds, where the generic AES-GCM code
    // runs at a few MB/s) in 64 KiB chunks through an encrypting writer. The
    // writer buffers one segment (see the unit test on its buffer), so this
    // only checks that long streams round-trip.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path(), Some(ring(&[("k", 7)]))).unwrap();
    let chunk = random(SEG);
    let mib = if cfg!(debug_assertions) { 32 } else { 256 };
    let n = mib * 1024 * 1024 / SEG;
    let mut w = store.writer(u64::MAX).unwrap();
    let mut h = sha2::Sha256::default();
    for i in 0..n {
        let mut c = chunk.clone();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        sha2::Digest::update(&mut h, &c);
        w.write_all(&c).unwrap();
    }
    let info = w.finish(None).unwrap();
    assert_eq!(info.digest, Digest(sha2::Digest::finalize(h).into()));
    assert_eq!(store.size(&info.digest).unwrap(), Some((n * SEG) as u64));
    let dest = dir.path().join("big");
    assert_eq!(
        store.materialize(&info.digest, &dest).unwrap(),
        (n * SEG) as u64
    );
}
