//! The key ring: which 32-byte AES-256 keys the server holds, which one
//! encrypts new data, and how they are stored, so that keys can be rotated
//! without losing access to data written under older ones.
//!
//! Key file and `AIRLOCK_DATA_KEYS` syntax (see `docs/blobs.md`): one key
//! per line (or per `;`-separated entry), either `<id> <64 hex digits>` or a
//! bare `<64 hex digits>` whose id is then derived from the key; blank lines
//! and lines starting with `#` are ignored; the **last** key is current.
//! Ids are 1–64 characters from `A-Z a-z 0-9 . _ -`.

use crate::error::{BlobError, KeyError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// The environment variable the server reads a key ring from when no key
/// file is configured.
pub const ENV_VAR: &str = "AIRLOCK_DATA_KEYS";

/// Longest key id, so it fits the one-byte length in blob headers with room
/// to spare.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Version byte of the sealed-secret format, so it can change later.
const SEALED_VERSION: u8 = 1;
/// Domain prefix of a sealed secret's associated data, so a sealed secret
/// and a blob segment can never be taken for one another.
const SEALED_DOMAIN: &[u8] = b"airlock-sealed-v1\0";
/// AES-GCM's authentication tag length.
const TAG_LEN: usize = 16;

/// One 32-byte key and its id; the bytes are wiped when dropped.
#[derive(Clone)]
pub(crate) struct Key {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl Key {
    /// The id written into the headers of data this key encrypts.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The raw key.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// An ordered set of AES-256 keys: the last one (the *current* key)
/// encrypts new data, every key decrypts, so data written before a rotation
/// stays readable until [`crate::LocalBlobStore::rotate`] has re-encrypted
/// it.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    /// Shows ids only: a key ring must never end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("current", &self.current_id())
            .finish()
    }
}

/// Whether `id` may name a key (printable, short, no spaces).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The id of a key given without one: 8 hex digits of a domain-separated
/// sha256 of the key (32 bits of a hash reveal nothing useful about it).
pub fn derived_key_id(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"airlock-key-id-v1\0");
    h.update(key);
    hex::encode(&h.finalize()[..4])
}

/// Fills `buf` from the operating system's generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random {
        reason: e.to_string(),
    })
}

impl KeyRing {
    /// Builds a ring from `(id, key)` pairs, the last being current; for
    /// callers that keep keys elsewhere (and for tests).
    pub fn from_keys(
        keys: impl IntoIterator<Item = (String, [u8; 32])>,
    ) -> Result<KeyRing, BlobError> {
        let origin = "key list";
        let mut ring = KeyRing { keys: Vec::new() };
        for (i, (id, bytes)) in keys.into_iter().enumerate() {
            let bytes = Zeroizing::new(bytes);
            if !valid_id(&id) {
                return Err(KeyError::Syntax {
                    origin: origin.into(),
                    line: i + 1,
                    reason: format!("invalid key id `{}`", id.escape_default()),
                }
                .into());
            }
            ring.push(origin, Key { id, bytes })?;
        }
        ring.check_nonempty(origin)?;
        Ok(ring)
    }

    /// Loads a key file, refusing one whose mode lets group or others
    /// access it (`mode & 0o077 != 0`).
    pub fn from_file(path: &Path) -> Result<KeyRing, BlobError> {
        let text = read_private_file(path)?;
        KeyRing::parse(&path.display().to_string(), text.split('\n'))
    }

    /// Parses the value of [`ENV_VAR`]: the key file syntax, entries
    /// separated by `;` or newlines.
    pub fn from_env_value(value: &str) -> Result<KeyRing, BlobError> {
        KeyRing::parse(ENV_VAR, value.split([';', '\n']))
    }

    /// Creates a new key file (mode 0600, never overwriting an existing
    /// file) holding one fresh random key, and returns its ring.
    pub fn generate_file(path: &Path) -> Result<KeyRing, BlobError> {
        let key = fresh_key(&KeyRing { keys: Vec::new() })?;
        let mut text = Zeroizing::new(String::from(
            "# airlock data keys: one `<id> <64 hex digits>` per line; the last line is the current key.\n",
        ));
        text.push_str(&key_line(&key));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| BlobError::io(path, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| BlobError::io(path, e))?;
        sync_parent(path)?;
        Ok(KeyRing { keys: vec![key] })
    }

    /// Appends a fresh random key to an existing key file as the new
    /// current key (the first step of a rotation) and returns the new ring.
    /// The file is replaced crash-safely (temp file, fsync, rename), so a
    /// crash leaves either the old or the new file, never a torn line.
    pub fn add_generated(path: &Path) -> Result<KeyRing, BlobError> {
        let text = read_private_file(path)?;
        let origin = path.display().to_string();
        let mut ring = KeyRing::parse(&origin, text.split('\n'))?;
        let key = fresh_key(&ring)?;
        let mut new_text = Zeroizing::new(String::with_capacity(text.len() + 100));
        new_text.push_str(&text);
        if !new_text.is_empty() && !new_text.ends_with('\n') {
            new_text.push('\n');
        }
        new_text.push_str(&key_line(&key));

        let mut suffix = [0u8; 8];
        random_bytes(&mut suffix)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keys".into());
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", hex::encode(suffix)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(new_text.as_bytes())?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(BlobError::io(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(BlobError::io(path, e));
        }
        sync_parent(path)?;
        ring.push(&origin, key)?;
        Ok(ring)
    }

    /// The id of the key that encrypts new data.
    pub fn current_id(&self) -> &str {
        self.current().id()
    }

    /// Every key id, oldest first (the last is current).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Whether the ring holds a key with this id.
    pub fn contains_id(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Encrypts a small secret (a signing key, a token) under the current
    /// key with AES-256-GCM and a random 96-bit nonce; `context` is bound as
    /// associated data, so a secret sealed for one purpose cannot be opened
    /// for another. The output names the key id, so it still opens after a
    /// rotation while the old key stays in the ring.
    ///
    /// Output: `0x01 ‖ id_len (1 byte) ‖ id ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.
    ///
    /// # Panics
    ///
    /// If the operating system's random generator fails (no nonce can be
    /// drawn safely, and encrypting without one is not an option).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let key = self.current();
        let mut nonce = [0u8; 12];
        if let Err(e) = random_bytes(&mut nonce) {
            panic!("cannot seal a secret: {e}");
        }
        let mut out = Vec::with_capacity(2 + key.id.len() + 12 + plaintext.len() + TAG_LEN);
        out.push(SEALED_VERSION);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        let aad = sealed_aad(&out, context);
        out.extend_from_slice(&nonce);
        let cipher = Aes256Gcm::new(key.bytes().into());
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory message does not fail");
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts and authenticates a secret made by [`KeyRing::seal`] with
    /// the same `context`.
    pub fn open_sealed(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, BlobError> {
        let bad = |reason: &str| {
            BlobError::Key(KeyError::Sealed {
                reason: reason.into(),
            })
        };
        let (&version, rest) = sealed.split_first().ok_or_else(|| bad("empty"))?;
        if version != SEALED_VERSION {
            return Err(bad(&format!("unsupported format version {version}")));
        }
        let (&id_len, rest) = rest.split_first().ok_or_else(|| bad("truncated header"))?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 12 + TAG_LEN {
            return Err(bad("truncated"));
        }
        let (id, rest) = rest.split_at(id_len);
        let id = std::str::from_utf8(id).map_err(|_| bad("key id is not UTF-8"))?;
        let key = self.get(id).ok_or_else(|| {
            BlobError::Key(KeyError::SealedUnknownKey {
                key_id: id.escape_default().to_string(),
            })
        })?;
        let (nonce, ct) = rest.split_at(12);
        let aad = sealed_aad(&sealed[..2 + id_len], context);
        Aes256Gcm::new(key.bytes().into())
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| bad("authentication failed (wrong context, or tampered)"))
    }

    /// The key that encrypts new data.
    pub(crate) fn current(&self) -> &Key {
        self.keys.last().expect("a key ring is never empty")
    }

    /// The key with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    fn push(&mut self, origin: &str, key: Key) -> Result<(), KeyError> {
        if self.get(&key.id).is_some() {
            return Err(KeyError::DuplicateId {
                origin: origin.into(),
                id: key.id.clone(),
            });
        }
        self.keys.push(key);
        Ok(())
    }

    fn check_nonempty(&self, origin: &str) -> Result<(), KeyError> {
        if self.keys.is_empty() {
            return Err(KeyError::Empty {
                origin: origin.into(),
            });
        }
        Ok(())
    }

    fn parse<'a>(origin: &str, lines: impl Iterator<Item = &'a str>) -> Result<KeyRing, BlobError> {
        let mut ring = KeyRing { keys: Vec::new() };
        for (i, line) in lines.enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: String| KeyError::Syntax {
                origin: origin.into(),
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, hex_key) = match fields[..] {
                [hex_key] => (None, hex_key),
                [id, hex_key] => (Some(id), hex_key),
                _ => {
                    return Err(syntax(format!(
                        "expected `<id> <64 hex digits>`, found {} fields",
                        fields.len()
                    ))
                    .into());
                }
            };
            let mut bytes = Zeroizing::new([0u8; 32]);
            if hex_key.len() != 64 || hex::decode_to_slice(hex_key, &mut bytes[..]).is_err() {
                return Err(syntax(format!(
                    "the key must be 64 hex digits (32 bytes); found {} characters",
                    hex_key.len()
                ))
                .into());
            }
            let id = match id {
                Some(id) if valid_id(id) => id.to_string(),
                Some(id) => {
                    return Err(syntax(format!(
                        "invalid key id `{}` (1-{MAX_KEY_ID_LEN} of A-Z a-z 0-9 . _ -)",
                        id.escape_default()
                    ))
                    .into());
                }
                None => derived_key_id(&bytes),
            };
            ring.push(origin, Key { id, bytes })?;
        }
        ring.check_nonempty(origin)?;
        Ok(ring)
    }
}

/// A fresh random key whose derived id is not already in `ring`.
fn fresh_key(ring: &KeyRing) -> Result<Key, KeyError> {
    loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_bytes(&mut bytes[..])?;
        let id = derived_key_id(&bytes);
        if ring.get(&id).is_none() {
            return Ok(Key { id, bytes });
        }
    }
}

/// `<id> <hex>\n`, in a buffer that is wiped when dropped.
fn key_line(key: &Key) -> Zeroizing<String> {
    let mut line = Zeroizing::new(String::with_capacity(key.id.len() + 66));
    line.push_str(&key.id);
    line.push(' ');
    line.push_str(&Zeroizing::new(hex::encode(key.bytes())));
    line.push('\n');
    line
}

/// Associated data of a sealed secret: domain, header, context.
fn sealed_aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEALED_DOMAIN.len() + header.len() + context.len());
    aad.extend_from_slice(SEALED_DOMAIN);
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

/// Reads a key file after checking, on the opened file itself (no race with
/// a chmod in between), that it is a regular file private to its owner.
fn read_private_file(path: &Path) -> Result<Zeroizing<String>, BlobError> {
    let mut file = File::open(path).map_err(|e| BlobError::io(path, e))?;
    let meta = file.metadata().map_err(|e| BlobError::io(path, e))?;
    if !meta.is_file() {
        return Err(BlobError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::FileMode {
            path: path.to_path_buf(),
            mode,
        }
        .into());
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| BlobError::io(path, e))?;
    Ok(text)
}

/// Makes a directory entry change (create, rename) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BlobError::io(dir, e))
}

fn sync_parent(path: &Path) -> Result<(), BlobError> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    #[test]
    fn the_last_line_is_current_and_comments_are_skipped() {
        let ring = KeyRing::from_env_value(&format!("# old\nold {K1}\n\n new {K2} ")).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["old", "new"]);
        assert_eq!(ring.current_id(), "new");
        let ring = KeyRing::from_env_value(&format!("a {K1};b {K2}")).unwrap();
        assert_eq!(ring.current_id(), "b");
    }

    #[test]
    fn a_bare_key_gets_a_derived_id() {
        let ring = KeyRing::from_env_value(K1).unwrap();
        assert_eq!(ring.current_id().len(), 8);
        assert_eq!(ring.current_id(), derived_key_id(&[1u8; 32]));
    }

    #[test]
    fn malformed_entries_are_refused_without_echoing_the_key() {
        let short = &K1[..62];
        let err = KeyRing::from_env_value(&format!("a {K1};b {short}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AIRLOCK_DATA_KEYS, line 2"), "{err}");
        assert!(!err.contains(short), "{err}");
        let err = KeyRing::from_env_value(&format!("a b {K1}")).unwrap_err();
        assert!(err.to_string().contains("3 fields"), "{err}");
        let err = KeyRing::from_env_value(&format!("bad/id {K1}")).unwrap_err();
        assert!(err.to_string().contains("invalid key id"), "{err}");
        let err = KeyRing::from_env_value(&format!("a {K1};a {K2}")).unwrap_err();
        assert!(
            matches!(err, BlobError::Key(KeyError::DuplicateId { ref id, .. }) if id == "a"),
            "{err}"
        );
        let err = KeyRing::from_env_value("# nothing\n").unwrap_err();
        assert!(
            matches!(err, BlobError::Key(KeyError::Empty { .. })),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_ids_not_keys() {
        let ring = KeyRing::from_env_value(&format!("a {K1}")).unwrap();
        let dbg = format!("{ring:?}");
        assert!(dbg.contains("\"a\""), "{dbg}");
        assert!(!dbg.contains("0101"), "{dbg}");
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused_naming_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        fs::write(&path, format!("a {K1}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyRing::from_file(&path).unwrap_err();
        assert!(
            matches!(&err, BlobError::Key(KeyError::FileMode { path: p, mode: 0o644 }) if p == &path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("0644"),
            "{msg}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(KeyRing::from_file(&path).unwrap().current_id(), "a");
    }

    #[test]
    fn generate_then_add_keeps_old_keys_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let first = KeyRing::generate_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(KeyRing::generate_file(&path).is_err(), "must not overwrite");
        let loaded = KeyRing::from_file(&path).unwrap();
        assert_eq!(loaded.current_id(), first.current_id());
        let second = KeyRing::add_generated(&path).unwrap();
        assert_eq!(second.ids().count(), 2);
        assert_ne!(second.current_id(), first.current_id());
        assert!(second.contains_id(first.current_id()));
        let reloaded = KeyRing::from_file(&path).unwrap();
        assert_eq!(
            reloaded.ids().collect::<Vec<_>>(),
            second.ids().collect::<Vec<_>>()
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary left next to the key file.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sealed_secrets_round_trip_and_bind_context_and_key() {
        let old = KeyRing::from_env_value(&format!("a {K1}")).unwrap();
        let sealed = old.seal(b"signing key", b"ctx");
        assert_eq!(old.open_sealed(&sealed, b"ctx").unwrap(), b"signing key");
        assert!(!sealed.windows(11).any(|w| w == b"signing key"));
        // Wrong context, flipped bytes, truncation: refused.
        assert!(old.open_sealed(&sealed, b"other").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(old.open_sealed(&bad, b"ctx").is_err(), "byte {i}");
        }
        assert!(
            old.open_sealed(&sealed[..sealed.len() - 1], b"ctx")
                .is_err()
        );
        // After a rotation the old secret still opens; without the key it
        // names the missing id.
        let rotated = KeyRing::from_env_value(&format!("a {K1};b {K2}")).unwrap();
        assert_eq!(
            rotated.open_sealed(&sealed, b"ctx").unwrap(),
            b"signing key"
        );
        assert_eq!(&rotated.seal(b"x", b"")[2..3], b"b");
        let only_b = KeyRing::from_env_value(&format!("b {K2}")).unwrap();
        let err = only_b.open_sealed(&sealed, b"ctx").unwrap_err();
        assert!(
            matches!(err, BlobError::Key(KeyError::SealedUnknownKey { ref key_id }) if key_id == "a"),
            "{err}"
        );
        // Two seals of the same secret differ (random nonce).
        assert_ne!(old.seal(b"x", b""), old.seal(b"x", b""));
    }
}
