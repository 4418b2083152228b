//! The encrypted blob file format, kept in one place so the writer, the
//! reader, the tests and `docs/blobs.md` agree on every byte.
//!
//! ```text
//! header  = MAGIC (8) ‖ VERSION (1) ‖ id_len (1) ‖ key id (id_len)
//!           ‖ salt (16) ‖ nonce prefix (7)
//! file    = header ‖ segment_0 ‖ … ‖ segment_{n-1}
//! segment = AES-256-GCM(blob key, nonce_i, plaintext_i, aad_i) ‖ tag (16)
//! ```
//!
//! The plaintext is cut into [`SEGMENT_SIZE`] pieces; every segment but the
//! last is full, the last holds 1..=`SEGMENT_SIZE` bytes (0 only when the
//! whole plaintext is empty, which is one empty final segment).
//!
//! This is the STREAM construction of Hoang, Reyhanitabar, Rogaway and
//! Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance" (CRYPTO 2015): `nonce_i = prefix (7) ‖ i (4, big
//! endian) ‖ last (1: 0x01 on the final segment, else 0x00)`. The counter
//! makes reordering and dropping segments fail authentication, and the
//! last-segment flag makes truncation at a segment boundary fail too.
//!
//! `aad_i` is the whole header, so changing any header byte (key id, salt,
//! prefix, version) fails every segment; the final segment's `aad` also
//! appends the 32-byte sha256 of the plaintext, binding the file to the name
//! it is stored under: a valid file copied under another digest's name
//! fails.
//!
//! The blob key is not the ring key itself but
//! `HMAC-SHA256(ring key, "airlock-blob-key-v1\0" ‖ salt)` with a fresh random
//! 16-byte salt per file (the per-file key derivation of Tink's
//! AES-GCM-HKDF streaming AEAD), so nonce prefixes can never collide
//! between files under one key, however many files there are.

use crate::keys::{Key, random_bytes};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use airlock_core::digest::Digest;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::KeyError;

/// First bytes of an encrypted blob file. The leading non-ASCII byte keeps
/// text files from ever looking like one.
pub const MAGIC: [u8; 8] = *b"\x89ALBLOB\n";
/// Format version written after the magic.
pub const VERSION: u8 = 1;
/// Plaintext bytes per segment: at most this much is buffered by a writer
/// or a reader.
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// AES-GCM tag bytes after each segment's ciphertext.
pub const TAG_SIZE: usize = 16;
/// Bytes of per-file salt for the blob-key derivation.
pub const SALT_SIZE: usize = 16;
/// Bytes of random nonce prefix (STREAM: 12-byte nonce minus 4-byte counter
/// minus 1-byte flag).
pub const NONCE_PREFIX_SIZE: usize = 7;
/// Most segments one file may have (the 32-bit counter): 256 TiB.
pub const MAX_SEGMENTS: u64 = 1 << 32;

/// Domain prefix of the blob-key derivation.
const BLOB_KEY_DOMAIN: &[u8] = b"airlock-blob-key-v1\0";

/// Header bytes before the key id: magic, version, id length.
pub(crate) const FIXED_PREFIX: usize = MAGIC.len() + 2;

/// Length of a header whose key id has `id_len` bytes.
pub fn header_len(id_len: usize) -> usize {
    FIXED_PREFIX + id_len + SALT_SIZE + NONCE_PREFIX_SIZE
}

/// A parsed or freshly made header, with its exact bytes (the associated
/// data of every segment).
#[derive(Debug)]
pub(crate) struct Header {
    bytes: Vec<u8>,
}

impl Header {
    /// A header for a new file under `key`, with fresh salt and prefix.
    pub(crate) fn new(key: &Key) -> Result<Header, KeyError> {
        let id = key.id().as_bytes();
        let mut bytes = Vec::with_capacity(header_len(id.len()));
        bytes.extend_from_slice(&MAGIC);
        bytes.push(VERSION);
        bytes.push(id.len() as u8);
        bytes.extend_from_slice(id);
        let mut random = [0u8; SALT_SIZE + NONCE_PREFIX_SIZE];
        random_bytes(&mut random)?;
        bytes.extend_from_slice(&random);
        Ok(Header { bytes })
    }

    /// Parses a header from the start of `first` (the file's first
    /// `header_len(255)` bytes, or the whole file if shorter); `Err` says
    /// why it is not one.
    pub(crate) fn parse(first: &[u8]) -> Result<Header, String> {
        if first.len() < FIXED_PREFIX || first[..MAGIC.len()] != MAGIC {
            return Err("not an encrypted blob (bad magic)".into());
        }
        if first[MAGIC.len()] != VERSION {
            return Err(format!("unsupported format version {}", first[MAGIC.len()]));
        }
        let id_len = usize::from(first[MAGIC.len() + 1]);
        let len = header_len(id_len);
        if id_len == 0 || first.len() < len {
            return Err("truncated header".into());
        }
        let header = Header {
            bytes: first[..len].to_vec(),
        };
        if std::str::from_utf8(header.key_id_bytes()).is_err() {
            return Err("key id in the header is not UTF-8".into());
        }
        Ok(header)
    }

    /// The header's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn key_id_bytes(&self) -> &[u8] {
        let id_len = usize::from(self.bytes[MAGIC.len() + 1]);
        &self.bytes[FIXED_PREFIX..FIXED_PREFIX + id_len]
    }

    /// The id of the ring key this file is encrypted under.
    pub(crate) fn key_id(&self) -> String {
        String::from_utf8_lossy(self.key_id_bytes()).into_owned()
    }

    fn salt(&self) -> &[u8] {
        let start = FIXED_PREFIX + self.key_id_bytes().len();
        &self.bytes[start..start + SALT_SIZE]
    }

    fn prefix(&self) -> [u8; NONCE_PREFIX_SIZE] {
        let start = self.bytes.len() - NONCE_PREFIX_SIZE;
        let mut p = [0u8; NONCE_PREFIX_SIZE];
        p.copy_from_slice(&self.bytes[start..]);
        p
    }
}

/// The nonce of segment `index`: prefix ‖ index (big endian) ‖ last flag.
pub fn segment_nonce(prefix: &[u8; NONCE_PREFIX_SIZE], index: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..NONCE_PREFIX_SIZE].copy_from_slice(prefix);
    n[NONCE_PREFIX_SIZE..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals and opens the segments of one file.
pub(crate) struct SegmentCipher {
    aead: Aes256Gcm,
    prefix: [u8; NONCE_PREFIX_SIZE],
    header: Vec<u8>,
}

impl SegmentCipher {
    /// The cipher for the file with this header under ring key `key`.
    pub(crate) fn new(key: &Key, header: &Header) -> SegmentCipher {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes())
            .expect("HMAC takes a key of any length");
        mac.update(BLOB_KEY_DOMAIN);
        mac.update(header.salt());
        let blob_key = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        SegmentCipher {
            aead: Aes256Gcm::new((&*blob_key).into()),
            prefix: header.prefix(),
            header: header.bytes().to_vec(),
        }
    }

    fn aad(&self, last: Option<&Digest>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.header.len() + 32);
        aad.extend_from_slice(&self.header);
        if let Some(d) = last {
            aad.extend_from_slice(&d.0);
        }
        aad
    }

    /// Encrypts `buf` in place and appends the tag; `last` carries the
    /// plaintext digest on the final segment.
    pub(crate) fn seal(&self, index: u32, last: Option<&Digest>, buf: &mut Vec<u8>) {
        let nonce = segment_nonce(&self.prefix, index, last.is_some());
        self.aead
            .encrypt_in_place(Nonce::from_slice(&nonce), &self.aad(last), buf)
            .expect("AES-GCM encryption of a 64 KiB segment does not fail");
    }

    /// Authenticates and decrypts `buf` (ciphertext ‖ tag) in place; on
    /// failure `buf` is cleared, so no unauthenticated byte survives.
    pub(crate) fn open(&self, index: u32, last: Option<&Digest>, buf: &mut Vec<u8>) -> bool {
        let nonce = segment_nonce(&self.prefix, index, last.is_some());
        let ok = self
            .aead
            .decrypt_in_place(Nonce::from_slice(&nonce), &self.aad(last), buf)
            .is_ok();
        if !ok {
            buf.clear();
        }
        ok
    }
}

/// How the body (file minus header) of `body_len` bytes splits into
/// segments: their count and the ciphertext length of the last one; `None`
/// if no valid file has that length.
pub(crate) fn segment_layout(body_len: u64) -> Option<(u64, u64)> {
    let full = (SEGMENT_SIZE + TAG_SIZE) as u64;
    let count = body_len.div_ceil(full).max(1);
    let last = body_len - (count - 1) * full;
    if last < TAG_SIZE as u64 || (count > 1 && last == TAG_SIZE as u64) || count > MAX_SEGMENTS {
        return None;
    }
    Some((count, last))
}

/// The plaintext length of an encrypted file whose body (file minus
/// header) is `body_len` bytes; `None` if no writer makes that length.
pub fn plaintext_len(body_len: u64) -> Option<u64> {
    let (count, _) = segment_layout(body_len)?;
    Some(body_len - count * TAG_SIZE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyRing;

    #[test]
    fn the_nonce_is_prefix_counter_flag() {
        let n = segment_nonce(&[1, 2, 3, 4, 5, 6, 7], 0x0a0b0c0d, true);
        assert_eq!(n, [1, 2, 3, 4, 5, 6, 7, 0x0a, 0x0b, 0x0c, 0x0d, 1]);
        assert_eq!(segment_nonce(&[0; 7], 1, false)[11], 0);
    }

    #[test]
    fn layouts_match_what_a_writer_produces() {
        let t = TAG_SIZE as u64;
        let s = SEGMENT_SIZE as u64;
        assert_eq!(plaintext_len(t), Some(0));
        assert_eq!(plaintext_len(t + 1), Some(1));
        assert_eq!(plaintext_len(s + t), Some(s));
        assert_eq!(plaintext_len(s + t + 1 + t), Some(s + 1));
        assert_eq!(segment_layout(2 * (s + t)), Some((2, s + t)));
        // Shorter than a tag, or a final segment with nothing but a tag
        // after full ones: no writer makes these.
        assert_eq!(plaintext_len(t - 1), None);
        assert_eq!(plaintext_len(s + t + t), None);
    }

    #[test]
    fn headers_round_trip_and_changes_are_refused_or_alter_the_bytes() {
        let ring = KeyRing::from_env_value(&format!("key-1 {}", "11".repeat(32))).unwrap();
        let h = Header::new(ring.current()).unwrap();
        assert_eq!(h.bytes().len(), header_len(5));
        let p = Header::parse(h.bytes()).unwrap();
        assert_eq!(p.key_id(), "key-1");
        assert_eq!(p.bytes(), h.bytes());
        let mut bad = h.bytes().to_vec();
        bad[MAGIC.len()] = 2;
        assert!(Header::parse(&bad).unwrap_err().contains("version 2"));
        assert!(Header::parse(&h.bytes()[..h.bytes().len() - 1]).is_err());
        assert!(Header::parse(b"plain text").is_err());
    }

    #[test]
    fn a_segment_opens_only_at_its_index_flag_and_digest() {
        let ring = KeyRing::from_env_value(&format!("k {}", "22".repeat(32))).unwrap();
        let h = Header::new(ring.current()).unwrap();
        let c = SegmentCipher::new(ring.current(), &h);
        let d = Digest::of(b"x");
        let mut buf = b"hello".to_vec();
        c.seal(3, Some(&d), &mut buf);
        for (i, last) in [(3, None), (2, Some(&d)), (3, Some(&Digest::of(b"y")))] {
            let mut b = buf.clone();
            assert!(!c.open(i, last, &mut b));
            assert!(b.is_empty());
        }
        // A different header (new salt) cannot open it either.
        let other = SegmentCipher::new(ring.current(), &Header::new(ring.current()).unwrap());
        let mut b = buf.clone();
        assert!(!other.open(3, Some(&d), &mut b));
        assert!(c.open(3, Some(&d), &mut buf));
        assert_eq!(buf, b"hello");
    }
}
