//! Pre-initialisation of bundle-backed models.
//!
//! A model exported with [`crate::export_bundled_model!`] exports `init`:
//! the host calls it once per component and bundle, then snapshots the
//! instance (its memory and globals) and starts every later call from the
//! snapshot. `init` parses the bundle into [`STATE`]; `metadata` and
//! `predict` find it there instead of reading and parsing the bundle again.
//!
//! A snapshot cannot hold host resources. wasi-libc keeps the handles it
//! obtained during `init` (the standard streams, the `/bundle` preopen) in
//! its own tables, and after a restore those numbers would name nothing —
//! or, worse, another resource of the new instance. So `init` ends by
//! closing every descriptor wasi-libc opened ([`seal`]): afterwards the
//! standard streams are closed (Rust's `eprintln!` then writes nowhere)
//! and a panic message reaches the host through a panic hook that opens a
//! fresh `wasi:cli/stderr` handle for every message.

use crate::{BundledModel, PluginError};
use std::any::Any;
use std::sync::OnceLock;

/// The parsed model, set by `init` and frozen into the snapshot.
static STATE: OnceLock<Box<dyn Any + Send + Sync>> = OnceLock::new();

/// The `init` export: parses the bundle once, keeps the result and seals
/// the instance for its snapshot.
pub fn init<M: BundledModel>() -> Result<(), PluginError> {
    let parsed = crate::load_bundled::<M>()?;
    if STATE.set(Box::new(parsed)).is_err() {
        return Err(PluginError::new(
            "already-initialised",
            "init was called twice in one instance",
        ));
    }
    seal();
    Ok(())
}

/// Runs `f` on the parsed model: the one `init` built, or (when `init`
/// never ran, e.g. a model exported with [`crate::export_model!`] or a
/// native test) one parsed now from the bundle.
pub fn with_parsed<M: BundledModel, R>(
    f: impl FnOnce(&M::Parsed) -> Result<R, PluginError>,
) -> Result<R, PluginError> {
    if let Some(parsed) = STATE.get().and_then(|s| s.downcast_ref::<M::Parsed>()) {
        return f(parsed);
    }
    let parsed = crate::load_bundled::<M>()?;
    f(&parsed)
}

/// Whether this instance holds a model parsed by `init` (true in every
/// call started from a snapshot).
pub fn is_preinitialised() -> bool {
    STATE.get().is_some()
}

/// Leaves nothing in the instance that names a host resource: closes the
/// descriptors wasi-libc opened (standard streams, preopens) and routes
/// panic messages through a fresh stderr handle.
fn seal() {
    std::panic::set_hook(Box::new(|info| {
        write_stderr(&format!("{info}\n"));
    }));
    close_descriptors();
}

/// Writes to the host's stderr through a handle opened and dropped here.
#[cfg(target_os = "wasi")]
pub fn write_stderr(message: &str) {
    let err = wasip2::cli::stderr::get_stderr();
    let _ = err.blocking_write_and_flush(message.as_bytes());
}

/// Writes to the process's stderr (native builds: tests).
#[cfg(not(target_os = "wasi"))]
pub fn write_stderr(message: &str) {
    eprint!("{message}");
}

#[cfg(target_os = "wasi")]
#[allow(unsafe_code)]
fn close_descriptors() {
    unsafe extern "C" {
        fn close(fd: i32) -> i32;
    }
    // wasi-libc numbers descriptors from 0 (stdin, stdout, stderr, then the
    // preopens); `init` opens a handful. 64 is far above what any SDK
    // model opens and leaves nothing behind that it did open.
    for fd in 0..64 {
        // SAFETY: a plain libc call on a descriptor number; no Rust object
        // alive here owns a descriptor (files opened during `init` were
        // dropped), so nothing is closed under a live owner.
        unsafe {
            close(fd);
        }
    }
}

#[cfg(not(target_os = "wasi"))]
fn close_descriptors() {}
