//! The compile cache: compiled components keyed by the component's sha256,
//! in memory and on disk.
//!
//! Loading compiled code skips Wasm validation, so a compiled artifact is as
//! trusted as native code. The host therefore only ever deserializes files
//! it wrote itself: every artifact is sealed with an HMAC-SHA256 under a
//! random key that lives beside the cache (mode 0600) and never leaves the
//! host, over the component digest, the engine's compatibility fingerprint
//! and the artifact bytes. A file that does not verify — tampered, written by
//! someone else, for another engine — is recompiled from the component and
//! replaced, never loaded.
//!
//! Compiling itself runs on a worker thread under a wall-clock limit, so a
//! component that slipped past the static caps of [`crate::precheck`] but
//! still keeps Cranelift busy is refused rather than holding the caller.
//! Cranelift cannot be interrupted: the worker runs to completion in the
//! background and its result is discarded (never cached).

use crate::error::SandboxError;
use airlock_core::digest::Digest;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache-key";
const TAG_LEN: usize = 32;

/// Where a component came from, for benchmarks and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Already compiled in this process.
    Memory,
    /// Loaded from a verified on-disk artifact.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Why a component could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Wasmtime refused the component (validation or code generation).
    #[error(transparent)]
    Invalid(wasmtime::Error),
    /// Compiling took longer than the limit; the worker still runs.
    #[error(
        "compiling took longer than {limit_ms} ms (component.compile_timeout_ms); the compile cannot be interrupted, so it finishes on a background thread and its result is discarded ({running} such compile(s) running now)"
    )]
    TimedOut {
        /// The limit, in milliseconds.
        limit_ms: u128,
        /// Compiles still running in the background, this one included.
        running: usize,
    },
    /// The worker thread could not be started.
    #[error("cannot start a compile thread: {0}")]
    Thread(std::io::Error),
}

/// Compiled components by digest.
pub struct CompileCache {
    /// Bounded, so a long-running host does not keep every component it
    /// ever compiled.
    memory: Mutex<super::lru::Lru<Digest, Component>>,
    disk: Option<DiskCache>,
    /// Compile workers still running (finished ones are not counted).
    running: Arc<AtomicUsize>,
}

struct DiskCache {
    dir: PathBuf,
    key: [u8; 32],
    fingerprint: String,
}

impl CompileCache {
    /// A cache in memory (at most `memory_capacity` components, least
    /// recently used evicted first), and on disk under `dir` when given.
    pub fn new(
        engine: &Engine,
        dir: Option<&Path>,
        memory_capacity: usize,
    ) -> Result<Self, SandboxError> {
        let disk = match dir {
            Some(d) => Some(DiskCache::open(engine, d)?),
            None => None,
        };
        Ok(CompileCache {
            memory: Mutex::new(super::lru::Lru::new(memory_capacity)),
            disk,
            running: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The compiled component for `bytes` (whose digest is `digest`),
    /// compiling it, within `timeout`, if no verified artifact exists.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        digest: Digest,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(Component, CacheOutcome), CompileError> {
        if let Some(c) = self.lock().get(&digest) {
            return Ok((c.clone(), CacheOutcome::Memory));
        }
        let mut outcome = CacheOutcome::Compiled;
        let loaded = self.disk.as_ref().and_then(|d| d.load(engine, digest));
        let component = match loaded {
            Some(c) => {
                outcome = CacheOutcome::Disk;
                c
            }
            None => {
                let c = self.compile(engine, bytes, timeout)?;
                if let Some(d) = &self.disk {
                    // A cache that cannot be written only costs a recompile later.
                    let _ = d.store(digest, &c);
                }
                c
            }
        };
        self.lock().insert(digest, component.clone());
        Ok((component, outcome))
    }

    /// Compiles on a worker thread and waits at most `timeout` for it.
    fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<Component, CompileError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let engine = engine.clone();
        let bytes = bytes.to_vec();
        let guard = Running::enter(&self.running);
        let spawned = std::thread::Builder::new()
            .name("airlock-compile".into())
            .spawn(move || {
                let result = Component::new(&engine, &bytes);
                // Let go of the engine before the caller can return, so a
                // dropped sandbox frees its engine as soon as it is dropped
                // (an abandoned compile holds it until it finishes).
                drop(engine);
                drop(bytes);
                drop(guard);
                // The receiver is gone when the caller gave up waiting.
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            return Err(CompileError::Thread(e));
        }
        match rx.recv_timeout(timeout) {
            Ok(result) => result.map_err(CompileError::Invalid),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CompileError::Invalid(
                wasmtime::Error::msg("the compile thread stopped without a result"),
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CompileError::TimedOut {
                limit_ms: timeout.as_millis(),
                running: self.running.load(Ordering::SeqCst),
            }),
        }
    }

    /// Compile workers still running, including those whose caller gave up.
    pub fn compiles_running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, super::lru::Lru<Digest, Component>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts one compile worker for as long as it lives (panics included).
struct Running(Arc<AtomicUsize>);

impl Running {
    fn enter(counter: &Arc<AtomicUsize>) -> Running {
        counter.fetch_add(1, Ordering::SeqCst);
        Running(counter.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DiskCache {
    fn open(engine: &Engine, dir: &Path) -> Result<Self, SandboxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SandboxError::io(format!("creating cache dir {}", dir.display()), e))?;
        let key_path = dir.join(KEY_FILE);
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k);
                key
            }
            _ => new_key(&key_path)?,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            key,
            fingerprint: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, digest: Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.fingerprint))
    }

    fn tag(&self, digest: Digest, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&digest.0);
        mac.update(self.fingerprint.as_bytes());
        mac.update(payload);
        mac
    }

    fn load(&self, engine: &Engine, digest: Digest) -> Option<Component> {
        let file = std::fs::read(self.path(digest)).ok()?;
        if file.len() < TAG_LEN {
            return None;
        }
        let (tag, payload) = file.split_at(TAG_LEN);
        self.tag(digest, payload).verify_slice(tag).ok()?;
        deserialize_own(engine, payload).ok()
    }

    fn store(&self, digest: Digest, component: &Component) -> Result<(), wasmtime::Error> {
        let payload = component.serialize()?;
        let tag = self.tag(digest, &payload).finalize().into_bytes();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&tag)?;
        tmp.write_all(&payload)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(digest))?;
        Ok(())
    }
}

/// Deserializes an artifact whose HMAC has just been verified.
#[allow(unsafe_code)]
fn deserialize_own(engine: &Engine, payload: &[u8]) -> Result<Component, wasmtime::Error> {
    // SAFETY: `payload` was produced by `Component::serialize` in this host
    // (its HMAC under the host-private key verified in `DiskCache::load`), and
    // wasmtime itself checks the artifact's engine and version compatibility.
    unsafe { Component::deserialize(engine, payload) }
}

fn new_key(path: &Path) -> Result<[u8; 32], SandboxError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(SandboxError::Randomness)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| SandboxError::io("creating cache key", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SandboxError::io("protecting cache key", e))?;
    }
    tmp.write_all(&key)
        .map_err(|e| SandboxError::io("writing cache key", e))?;
    // Another process may have created the key meanwhile: keep theirs, so
    // both seal artifacts under the same key.
    if let Err(e) = tmp.persist_noclobber(path) {
        if e.error.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(SandboxError::io("storing cache key", e.error));
        }
        let existing = std::fs::read(path).map_err(|e| SandboxError::io("reading cache key", e))?;
        if existing.len() != 32 {
            return Err(SandboxError::CorruptCacheKey {
                path: path.to_path_buf(),
                len: existing.len(),
            });
        }
        key.copy_from_slice(&existing);
    }
    Ok(key)
}
