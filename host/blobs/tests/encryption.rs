//! Encryption at rest: nothing of the plaintext on disk, every kind of
//! tampering detected without returning wrong bytes, rotation, key files.

mod common;

use airlock_blobs::{BlobError, BlobStore, KeyError, KeyRing, LocalBlobStore, format};
use airlock_core::digest::Digest;
use common::*;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

const SEG: usize = format::SEGMENT_SIZE;
const FULL: usize = format::SEGMENT_SIZE + format::TAG_SIZE;

fn enc_store(dir: &tempfile::TempDir) -> LocalBlobStore {
    LocalBlobStore::open(dir.path(), Some(ring(&[("key-a", 0xaa)]))).unwrap()
}

#[test]
fn no_32_byte_window_of_the_plaintext_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = enc_store(&dir);
    let marker = "AIRLOCK-PLAINTEXT-MARKER-5e1f0c";
    let model = format!(
        r#"{{"model":"gbtree","note":"{marker}","trees":[{}]}}"#,
        (0..3000)
            .map(|i| format!(r#"{{"id":{i},"leaf":0.{i}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let noise = random(200_000);
    let plaintexts = [model.into_bytes(), noise];
    let mut windows = HashSet::new();
    for p in &plaintexts {
        put(&store, p);
        windows.extend(p.windows(32).map(|w| w.to_vec()));
    }
    let files = files_under(dir.path());
    assert_eq!(files.len(), 2);
    for f in files {
        let raw = fs::read(&f).unwrap();
        assert!(
            !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{f:?}"
        );
        assert!(
            !raw.windows(32).any(|w| windows.contains(w)),
            "{f:?} leaks plaintext"
        );
    }
}

/// An encrypted blob of 3.5 segments, its raw file and header length.
fn sample() -> (
    tempfile::TempDir,
    LocalBlobStore,
    Vec<u8>,
    Digest,
    Vec<u8>,
    usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = enc_store(&dir);
    let bytes = random(3 * SEG + SEG / 2);
    let d = put(&store, &bytes).digest;
    let raw = fs::read(store.blob_path(&d)).unwrap();
    let hlen = format::header_len("key-a".len());
    assert_eq!(raw.len(), hlen + 3 * FULL + SEG / 2 + format::TAG_SIZE);
    (dir, store, bytes, d, raw, hlen)
}

/// Installs `raw` as the blob and checks every way of reading it fails,
/// having returned at most a true prefix of the plaintext.
fn assert_refused(what: &str, raw: &[u8], unknown_key: bool) {
    let (dir, store, bytes, d, _, _) = sample();
    fs::write(store.blob_path(&d), raw).unwrap();
    let (err, got) = read_all(&store, &d).unwrap_err();
    match (&err, unknown_key) {
        (BlobError::Corrupt { digest, .. }, false) => assert_eq!(*digest, d, "{what}"),
        (BlobError::UnknownKey { digest, .. }, true) => assert_eq!(*digest, d, "{what}"),
        _ => panic!("{what}: unexpected {err:?}"),
    }
    assert!(
        got.len() < bytes.len() && bytes.starts_with(&got),
        "{what}: returned wrong bytes"
    );
    assert!(store.size(&d).is_err(), "{what}: size");
    let dest = dir.path().join("out");
    assert!(store.materialize(&d, &dest).is_err(), "{what}: materialize");
    assert!(!dest.exists(), "{what}: materialize left a file");
}

#[test]
fn tampering_is_detected_and_no_wrong_byte_is_returned() {
    let (_dir, _store, _bytes, _d, raw, hlen) = sample();
    // Flipped bytes: header (version, key id, salt, prefix), each segment's
    // ciphertext, a tag, the very last byte.
    for at in [
        8,
        hlen - 20,
        hlen - 1,
        hlen,
        hlen + 5,
        hlen + FULL + 100,
        hlen + 2 * FULL - 1,
        raw.len() - 1,
    ] {
        let mut t = raw.clone();
        t[at] ^= 0x01;
        let unknown = (10..15).contains(&at);
        assert_refused(&format!("flip at {at}"), &t, unknown);
    }
    // Truncation at each segment boundary and by one byte.
    for cut in [
        hlen,
        hlen + FULL,
        hlen + 2 * FULL,
        hlen + 3 * FULL,
        raw.len() - 1,
    ] {
        assert_refused(&format!("truncate to {cut}"), &raw[..cut], false);
    }
    // Two segments swapped, and a segment duplicated over another.
    let mut swapped = raw.clone();
    let (a, b) = (hlen..hlen + FULL, hlen + FULL..hlen + 2 * FULL);
    swapped[a.clone()].copy_from_slice(&raw[b.clone()]);
    swapped[b.clone()].copy_from_slice(&raw[a.clone()]);
    assert_refused("swap segments 0 and 1", &swapped, false);
    let mut dup = raw.clone();
    dup[b].copy_from_slice(&raw[a]);
    assert_refused("segment 0 copied over segment 1", &dup, false);
    // An appended copy of the last segment.
    let mut longer = raw.clone();
    longer.extend_from_slice(&raw[hlen + 3 * FULL..]);
    assert_refused("appended segment", &longer, false);
}

#[test]
fn a_changed_key_id_is_refused_naming_the_id() {
    let (_dir, _store, _bytes, d, raw, _) = sample();
    let mut t = raw.clone();
    t[10..15].copy_from_slice(b"key-z");
    assert_refused("key id key-z", &t, true);
    // Same change, read by a ring that holds a `key-z` (a different key):
    // the header is authenticated, so it is corrupt, not readable.
    let dir = tempfile::tempdir().unwrap();
    let store =
        LocalBlobStore::open(dir.path(), Some(ring(&[("key-a", 0xaa), ("key-z", 0xaa)]))).unwrap();
    fs::create_dir_all(store.blob_path(&d).parent().unwrap()).unwrap();
    fs::write(store.blob_path(&d), &t).unwrap();
    let (err, got) = read_all(&store, &d).unwrap_err();
    assert!(matches!(err, BlobError::Corrupt { .. }), "{err:?}");
    assert!(got.is_empty());
    let (e, _) = {
        fs::write(store.blob_path(&d), &t).unwrap();
        let only_other = LocalBlobStore::open(dir.path(), Some(ring(&[("key-b", 1)]))).unwrap();
        read_all(&only_other, &d).unwrap_err()
    };
    assert!(
        matches!(&e, BlobError::UnknownKey { key_id, .. } if key_id == "key-z"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`key-z`"), "{e}");
}

#[test]
fn a_valid_file_stored_under_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = enc_store(&dir);
    let a = put(&store, &random(SEG + 10)).digest;
    let b = put(&store, &random(SEG + 10)).digest;
    fs::copy(store.blob_path(&a), store.blob_path(&b)).unwrap();
    let (err, got) = read_all(&store, &b).unwrap_err();
    assert!(
        matches!(err, BlobError::Corrupt { digest, .. } if digest == b),
        "{err:?}"
    );
    assert!(
        got.is_empty(),
        "the final segment is checked before any byte is returned"
    );
}

#[test]
fn rotation_moves_every_blob_to_the_current_key() {
    let dir = tempfile::tempdir().unwrap();
    // Some plaintext blobs from before encryption was configured.
    let plain = LocalBlobStore::open(dir.path(), None).unwrap();
    let mut blobs: Vec<Vec<u8>> = vec![b"written before keys".to_vec()];
    put(&plain, &blobs[0]);
    let a = LocalBlobStore::open(dir.path(), Some(ring(&[("key-a", 0xaa)]))).unwrap();
    for len in [0, 1, SEG, 2 * SEG + 3] {
        let b = random(len);
        put(&a, &b);
        blobs.push(b);
    }
    // Key B becomes current; A still decrypts.
    let ab =
        LocalBlobStore::open(dir.path(), Some(ring(&[("key-a", 0xaa), ("key-b", 0xbb)]))).unwrap();
    let fresh = random(1000);
    put(&ab, &fresh);
    blobs.push(fresh);
    assert_eq!(
        ab.rotate().unwrap(),
        5,
        "the plaintext one and the four under A"
    );
    assert_eq!(ab.rotate().unwrap(), 0, "nothing left to rotate");
    assert_eq!(count(dir.path(), "tmp"), 0);
    // Only B is needed now.
    let b = LocalBlobStore::open(dir.path(), Some(ring(&[("key-b", 0xbb)]))).unwrap();
    for bytes in &blobs {
        let d = Digest::of(bytes);
        assert_eq!(&read_all(&b, &d).unwrap(), bytes);
        let raw = fs::read(b.blob_path(&d)).unwrap();
        assert_eq!(&raw[10..15], b"key-b");
    }
    // A ring without B cannot read them and says which key is missing.
    let only_a = LocalBlobStore::open(dir.path(), Some(ring(&[("key-a", 0xaa)]))).unwrap();
    let (err, _) = read_all(&only_a, &Digest::of(&blobs[1])).unwrap_err();
    assert!(
        matches!(&err, BlobError::UnknownKey { key_id, .. } if key_id == "key-b"),
        "{err:?}"
    );
    let err = only_a.rotate().unwrap_err();
    assert!(
        matches!(&err, BlobError::UnknownKey { key_id, .. } if key_id == "key-b"),
        "{err:?}"
    );
    // No ring at all: encrypted blobs are unreadable, rotation is refused.
    let none = LocalBlobStore::open(dir.path(), None).unwrap();
    assert!(matches!(
        read_all(&none, &Digest::of(&blobs[1])),
        Err((BlobError::UnknownKey { .. }, _))
    ));
    assert!(matches!(
        none.rotate(),
        Err(BlobError::Key(KeyError::NoKeyRing))
    ));
}

#[test]
fn rotation_with_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("data.keys");
    let first = KeyRing::generate_file(&keys).unwrap();
    let first_id = first.current_id().to_string();
    let root = dir.path().join("blobs");
    let store = LocalBlobStore::open(&root, Some(first)).unwrap();
    let d = put(&store, b"model bytes").digest;
    let second = KeyRing::add_generated(&keys).unwrap();
    let store = LocalBlobStore::open(&root, Some(second)).unwrap();
    assert_eq!(store.rotate().unwrap(), 1);
    // Drop the old key from the file (the last step of a rotation).
    let text = fs::read_to_string(&keys).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&first_id))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&keys, kept).unwrap();
    let ring = KeyRing::from_file(&keys).unwrap();
    assert_eq!(ring.ids().count(), 1);
    let store = LocalBlobStore::open(&root, Some(ring)).unwrap();
    assert_eq!(read_all(&store, &d).unwrap(), b"model bytes");
}

#[test]
fn a_group_readable_key_file_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("data.keys");
    KeyRing::generate_file(&keys).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&keys, fs::Permissions::from_mode(mode)).unwrap();
        let err = KeyRing::from_file(&keys).unwrap_err();
        assert!(
            matches!(&err, BlobError::Key(KeyError::FileMode { path, mode: m }) if path == &keys && *m == mode),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&keys.display().to_string()),
            "{err}"
        );
        assert!(
            KeyRing::add_generated(&keys).is_err(),
            "add_generated also refuses"
        );
    }
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(KeyRing::from_file(&keys).is_ok());
}
