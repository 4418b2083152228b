//! Loading and inspecting components: reading a component file under the
//! caps, the static precheck, compiling through the cache, matching the
//! component to its world and pre-instantiating it. Everything here runs
//! once per plugin, before any of its code runs; refusals are
//! `invalid_component` failures.

use super::cache::{self, CacheOutcome};
use super::classify::root_message;
use super::lru::Lru;
use super::worlds::{ModelPre, ValidatorPre};
use super::{Inspection, Plugin, PreInstance, Sandbox};
use crate::error::{FailureKind, PluginFailure, SandboxError};
use crate::precheck;
use airlock_core::capabilities::{self, World};
use airlock_core::digest::Digest;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::Component;

impl Sandbox {
    /// Reads and loads a component file (see [`Sandbox::read_component`]).
    pub fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, SandboxError> {
        let bytes = self.read_component(path)?;
        self.load(&bytes)
    }

    /// Reads a component file under the sandbox's caps, checking before
    /// reading what can be checked: that the path is a regular file (a
    /// FIFO, a device or a directory is refused, never read), that its size
    /// is within `component.max_component_bytes`, and then that its first
    /// eight bytes are a component header, before the rest is read. Every
    /// caller that reads a component from disk goes through here.
    pub fn read_component(&self, path: &Path) -> Result<Vec<u8>, SandboxError> {
        use std::io::Read;
        let cap = self.inner.runtime.config.component_caps.max_component_bytes;
        let refuse = |why: String| {
            SandboxError::Plugin(PluginFailure::new(
                FailureKind::InvalidComponent,
                format!("component file {}: {why}", path.display()),
            ))
        };
        let io = |e| SandboxError::io(format!("reading plugin {}", path.display()), e);
        let check_meta = |meta: &std::fs::Metadata| {
            if !meta.is_file() {
                return Err(refuse(format!(
                    "is {}, not a regular file",
                    file_kind(meta)
                )));
            }
            if meta.len() > cap {
                return Err(refuse(format!(
                    "is {} bytes; the cap is {cap} bytes (component.max_component_bytes)",
                    meta.len()
                )));
            }
            Ok(())
        };
        // Opening a FIFO blocks until a writer appears, so the type is
        // checked before opening, the open never blocks (the path may have
        // been swapped for a FIFO since), and the type is checked again on
        // the opened handle.
        check_meta(&std::fs::metadata(path).map_err(io)?)?;
        let file = open_nonblocking(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        check_meta(&meta)?;
        // Never more than the cap (plus one byte to notice a file that grew).
        let mut reader = file.take(cap.saturating_add(1));
        let mut header = [0u8; 8];
        let mut got = 0;
        while got < header.len() {
            match reader.read(&mut header[got..]).map_err(io)? {
                0 => break,
                n => got += n,
            }
        }
        precheck::check_header(&header[..got]).map_err(|e| refuse(e.to_string()))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        bytes.extend_from_slice(&header);
        reader.read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > cap {
            return Err(refuse(format!(
                "grew past the cap of {cap} bytes while being read (component.max_component_bytes)"
            )));
        }
        Ok(bytes)
    }

    /// The static pass over a component's bytes: header, caps and names,
    /// without compiling (see [`crate::precheck`]).
    fn precheck(&self, bytes: &[u8]) -> Result<precheck::Summary, SandboxError> {
        let config = &self.inner.runtime.config;
        precheck::check(bytes, &config.component_caps, config.limits.memory_bytes)
            .map_err(|e| SandboxError::Plugin(e.into()))
    }

    /// Compiles (or fetches from the cache) a component that passed the
    /// static checks, within the compile time limit.
    pub(super) fn compile(
        &self,
        digest: Digest,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), SandboxError> {
        let limit =
            Duration::from_millis(self.inner.runtime.config.component_caps.compile_timeout_ms);
        self.inner
            .cache
            .get_or_compile(&self.inner.engine, digest, bytes, limit)
            .map_err(|e| match e {
                cache::CompileError::Invalid(e) => {
                    invalid(format!("not a valid component: {}", root_message(&e)))
                }
                other => invalid(other.to_string()),
            })
    }

    /// Checks a component statically (header, `[component]` caps, the world
    /// its exports name, the import policy), and only then compiles (or
    /// fetches from the cache) and pre-instantiates it. Nothing of a
    /// refused component reaches Cranelift.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, SandboxError> {
        self.load_as(bytes, None)
    }

    /// Loads the snapshot a pre-initialised `source` produced: checked
    /// exactly as any component, then given the source's manifest (the
    /// snapshot is the same plugin, so the limits its author asked for
    /// still apply).
    pub(super) fn load_snapshot(
        &self,
        bytes: &[u8],
        source: &Plugin,
    ) -> Result<Arc<Plugin>, SandboxError> {
        let plugin = self.load_as(bytes, Some(source))?;
        super::preinit::check_snapshot_contract(&plugin).map_err(invalid)?;
        Ok(plugin)
    }

    fn load_as(
        &self,
        bytes: &[u8],
        snapshot_of: Option<&Plugin>,
    ) -> Result<Arc<Plugin>, SandboxError> {
        let digest = Digest::of(bytes);
        if let Some(p) = self.lock_loaded().get(&digest) {
            self.inner.loads.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(p.clone());
        }
        self.inner.loads.misses.fetch_add(1, Ordering::Relaxed);
        let summary = self.precheck(bytes)?;
        let static_world = summary
            .world()
            .map_err(|e| SandboxError::Plugin(e.into()))?;
        capabilities::check_imports(static_world, &summary.imports)?;
        let engine = &self.inner.engine;
        let (component, cache_outcome) = self.compile(digest, bytes)?;
        // Wasmtime's own view after compiling must agree with the static one.
        let (world, imports, exports) = world_and_interfaces(engine, &component)?;
        capabilities::check_imports(world, &imports)?;
        let manifest = match snapshot_of {
            Some(source) => source.manifest.clone(),
            None => airlock_core::manifest::read(bytes).map_err(|e| invalid(e.to_string()))?,
        };
        let pre = match world {
            World::Model => {
                let ip = self
                    .inner
                    .runtime
                    .model_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&e))?;
                PreInstance::Model(ModelPre::new(ip).map_err(invalid)?)
            }
            World::Validator => {
                let ip = self
                    .inner
                    .runtime
                    .validator_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&e))?;
                PreInstance::Validator(ValidatorPre::new(ip, &imports).map_err(invalid)?)
            }
        };
        let contract = match &pre {
            PreInstance::Model(p) => p.version(),
            PreInstance::Validator(p) => p.version(),
        };
        // A snapshot still exports `init` (already run): never again.
        let init_source = (snapshot_of.is_none()
            && contract == super::ContractVersion::V0_2
            && world == World::Model
            && super::preinit::exports_init(&exports))
        .then(|| Arc::<[u8]>::from(bytes));
        let plugin = Arc::new(Plugin {
            runtime: self.inner.runtime.clone(),
            digest,
            world,
            contract,
            init_source,
            imports,
            exports,
            cache_outcome,
            manifest,
            pre,
        });
        if self.lock_loaded().insert(digest, plugin.clone()).is_some() {
            self.inner.loads.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(plugin)
    }

    /// Describes a component for review without instantiating it. The
    /// static caps apply as at load time (a component refused by them is
    /// never compiled); an ungranted import is listed, not refused.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection, SandboxError> {
        let digest = Digest::of(bytes);
        let summary = self.precheck(bytes)?;
        summary
            .world()
            .map_err(|e| SandboxError::Plugin(e.into()))?;
        let (component, _) = self.compile(digest, bytes)?;
        let (world, imports, exports) = world_and_interfaces(&self.inner.engine, &component)?;
        let manifest = airlock_core::manifest::read(bytes).map_err(|e| invalid(e.to_string()))?;
        let ceiling = self.inner.runtime.config.limits;
        let refused_imports = imports
            .iter()
            .filter(|i| capabilities::check_imports(world, &[i.as_str()]).is_err())
            .cloned()
            .collect();
        let contract = super::worlds::contract_of_imports(&imports);
        let preinitialized = world == World::Model
            && contract == Some(super::ContractVersion::V0_2)
            && super::preinit::exports_init(&exports);
        Ok(Inspection {
            digest,
            world,
            contract,
            preinitialized,
            size: bytes.len(),
            capabilities: capabilities::granted(world, &imports),
            imports,
            exports,
            refused_imports,
            granted_limits: ceiling.lowered_by(&manifest.limits),
            refused_limit_raises: ceiling.refused_raises(&manifest.limits),
            requested_limits: manifest.limits,
        })
    }

    pub(super) fn lock_loaded(&self) -> std::sync::MutexGuard<'_, Lru<Digest, Arc<Plugin>>> {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock_snapshots(
        &self,
    ) -> std::sync::MutexGuard<'_, Lru<super::preinit::SnapshotKey, super::Snapshot>> {
        self.inner
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn invalid(message: String) -> SandboxError {
    // Parser errors can carry multi-line dumps; keep one readable line.
    let mut line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 400 {
        let mut cut = 400;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" ...");
    }
    SandboxError::Plugin(PluginFailure::new(FailureKind::InvalidComponent, line))
}

/// What kind of file system object `meta` describes, for error messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "an unknown kind of file"
    }
}

fn link_error(e: &wasmtime::Error) -> SandboxError {
    invalid(format!("cannot be linked: {}", root_message(e)))
}

/// The world a component implements, and its import and export names.
fn world_and_interfaces(
    engine: &Engine,
    component: &Component,
) -> Result<(World, Vec<String>, Vec<String>), SandboxError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let has = |n: &str| names.iter().any(|e| e == n);
    let world = if has("predict") && has("metadata") {
        World::Model
    } else if has("validate") && has("describe") {
        World::Validator
    } else {
        return Err(invalid(format!(
            "exports neither the model world (metadata, predict) nor the validator world (describe, validate); it exports: [{}]",
            names.join(", ")
        )));
    };
    Ok((world, imports, names))
}

/// Opens `path` for reading without ever blocking in `open` (a FIFO with no
/// writer, a terminal): `O_NONBLOCK | O_NOCTTY`. Reads from a regular file
/// are unaffected by `O_NONBLOCK`.
pub(crate) fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_fifo_without_a_writer_returns_at_once() {
        // The race `read_component` guards against: a path that passed the
        // regular-file check is swapped for a FIFO before the open. A
        // blocking open would wait forever for a writer.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("swapped.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.clone();
        std::thread::spawn(move || {
            let opened = open_nonblocking(&p).map(|f| f.metadata().unwrap().file_type());
            let _ = tx.send(opened.map(|t| std::os::unix::fs::FileTypeExt::is_fifo(&t)));
        });
        let is_fifo = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("open blocked on a FIFO")
            .unwrap();
        // The handle's own metadata then tells `read_component` to refuse it.
        assert!(is_fifo);
    }
}
