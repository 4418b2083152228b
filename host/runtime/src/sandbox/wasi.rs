//! The WASI surface a plugin sees, built per call.
//!
//! Everything here exists to make a plugin call hermetic and repeatable:
//! no environment, no arguments, closed stdin, stdout and stderr captured
//! into bounded logs, a wall clock frozen at a fixed instant, a monotonic
//! clock that only the plugin's own sleeps advance (so sleeping never blocks
//! the host thread and never changes between runs), random numbers drawn from
//! the run's seed, and — for a model granted one — a single read-only
//! directory at `/bundle` whose files all show the same fixed timestamps
//! (real ones would tell a model today's date: a time bomb that behaves
//! until after approval, and a run that cannot be repeated) and
//! `metadata-hash` values derived from their paths, not from host inodes.

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_io::poll::{DynPollable, Pollable, subscribe};
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

/// The instant the wall clock shows inside every plugin: 2020-01-01T00:00:00Z.
pub const FROZEN_WALL_CLOCK_SECS: u64 = 1_577_836_800;

/// The access, modification and status-change time of every file and
/// directory a plugin stats: the frozen wall clock's instant, so a file is
/// never from the plugin's future and its times say nothing about the host.
pub const FIXED_FILE_TIME_SECS: u64 = FROZEN_WALL_CLOCK_SECS;

/// The filesystem interface whose `stat` functions are replaced.
const FS_TYPES_IFACE: &str = "wasi:filesystem/types@0.2.12";

/// Where a granted bundle directory appears inside the sandbox.
pub const BUNDLE_GUEST_PATH: &str = "/bundle";

/// A per-call log that keeps the first `cap` bytes and drops the rest,
/// so a chatty or hostile plugin can neither fill host memory nor fail
/// because its log is full.
#[derive(Clone)]
pub struct BoundedLog {
    inner: Arc<Mutex<LogBuf>>,
}

struct LogBuf {
    cap: usize,
    bytes: Vec<u8>,
    dropped: u64,
}

impl BoundedLog {
    /// A log keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        BoundedLog {
            inner: Arc::new(Mutex::new(LogBuf {
                cap,
                bytes: Vec::new(),
                dropped: 0,
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = b.cap.saturating_sub(b.bytes.len());
        let keep = room.min(data.len());
        b.bytes.extend_from_slice(&data[..keep]);
        b.dropped += (data.len() - keep) as u64;
    }

    /// Empties the log, so the next call of a warm instance starts with
    /// the whole cap and reports only its own output.
    pub(crate) fn clear(&self) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        b.bytes.clear();
        b.dropped = 0;
    }

    /// What was kept, as (lossy) UTF-8, and how many bytes were dropped.
    pub fn contents(&self) -> (String, u64) {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (String::from_utf8_lossy(&b.bytes).into_owned(), b.dropped)
    }
}

#[async_trait::async_trait]
impl Pollable for BoundedLog {
    async fn ready(&mut self) {}
}

impl OutputStream for BoundedLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for BoundedLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl IsTerminal for BoundedLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Virtual time: nanoseconds since the call began, advanced only by the
/// plugin's own sleeps (and by one nanosecond per reading, so busy-waits on
/// the clock still see it move).
#[derive(Clone, Default)]
pub struct VirtualTime(Arc<AtomicU64>);

impl VirtualTime {
    fn read(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
    fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
    fn advance(&self, nanos: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(nanos))
            });
    }
}

impl HostMonotonicClock for VirtualTime {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.read()
    }
}

/// A wall clock stuck at [`FROZEN_WALL_CLOCK_SECS`].
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_secs(FROZEN_WALL_CLOCK_SECS)
    }
}

/// A pollable that is always ready: virtual sleeps complete at once.
struct Elapsed;

#[async_trait::async_trait]
impl Pollable for Elapsed {
    async fn ready(&mut self) {}
}

/// What the host needs to serve WASI to one call.
pub struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    time: VirtualTime,
    /// Captured stdout.
    pub stdout: BoundedLog,
    /// Captured stderr.
    pub stderr: BoundedLog,
    /// Stable `metadata-hash` values of the bundle's entries; `None` (no
    /// bundle, or a bundle directory granted without a table) answers
    /// every `metadata-hash` with [`crate::bundle::UNMAPPED_METADATA_HASH`].
    pub metadata_hashes: Option<Arc<crate::bundle::MetadataHashes>>,
}

/// How to build one call's WASI state.
pub struct WasiSpec<'a> {
    /// Seed for all randomness the plugin sees.
    pub seed: u64,
    /// Per-stream log cap.
    pub max_log_bytes: usize,
    /// Cap on a single random-bytes request and on live resources.
    pub max_host_alloc_bytes: u64,
    /// The model's bundle directory, when granted.
    pub bundle_dir: Option<&'a std::path::Path>,
}

impl WasiState {
    /// Builds the deny-by-default WASI state for one call.
    pub fn new(spec: &WasiSpec<'_>) -> Result<WasiState, crate::SandboxError> {
        use rand::SeedableRng;
        let stdout = BoundedLog::new(spec.max_log_bytes);
        let stderr = BoundedLog::new(spec.max_log_bytes);
        let time = VirtualTime::default();
        let mut b = WasiCtxBuilder::new();
        // Bundle reads are small and local: do them on the calling thread
        // rather than bouncing each one through a blocking thread pool.
        // (Must be set before the bundle is preopened.)
        b.allow_blocking_current_thread(true);
        b.stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock)
            .monotonic_clock(time.clone())
            .secure_random(rand::rngs::StdRng::seed_from_u64(spec.seed))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(
                spec.seed ^ 0x9e37_79b9_7f4a_7c15,
            ))
            .insecure_random_seed(u128::from(spec.seed))
            .max_random_size(spec.max_host_alloc_bytes)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = spec.bundle_dir {
            b.preopened_dir(dir, BUNDLE_GUEST_PATH, FsPerms::ReadOnly)
                .map_err(|e| {
                    // The failure is the OS refusing to open the directory;
                    // keep its `io::Error` when that is what wasmtime wraps.
                    let source = e
                        .downcast::<std::io::Error>()
                        .unwrap_or_else(std::io::Error::other);
                    crate::SandboxError::io(
                        format!("cannot open bundle directory {}", dir.display()),
                        source,
                    )
                })?;
        }
        let mut table = ResourceTable::new();
        // Each live resource costs the host some memory; bound their number.
        table.set_max_capacity((spec.max_host_alloc_bytes / 1024).clamp(64, 1 << 16) as usize);
        Ok(WasiState {
            ctx: b.build(),
            table,
            time,
            stdout,
            stderr,
            metadata_hashes: None,
        })
    }
}

impl WasiState {
    /// Starts the next call of a warm instance as a fresh instance would
    /// start: empty logs and the virtual clock back at zero.
    pub(crate) fn restart(&mut self) {
        self.stdout.clear();
        self.stderr.clear();
        self.time.reset();
    }
}

impl WasiView for WasiState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The host side of `wasi:clocks/monotonic-clock` with virtual time.
pub struct VirtualClockView<'a> {
    table: &'a mut ResourceTable,
    time: &'a VirtualTime,
}

impl monotonic_clock::Host for VirtualClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.time.read())
    }
    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }
    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.time.read();
        self.time.advance(when.saturating_sub(now));
        let r = self.table.push(Elapsed)?;
        subscribe(self.table, r)
    }
    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.time.advance(duration);
        let r = self.table.push(Elapsed)?;
        subscribe(self.table, r)
    }
}

struct VirtualClock;

impl HasData for VirtualClock {
    type Data<'a> = VirtualClockView<'a>;
}

/// Access to a store's WASI state, for the linker closures.
pub trait HasWasi: Send + 'static {
    /// The call's WASI state.
    fn wasi(&mut self) -> &mut WasiState;
}

/// Links exactly the WASI interfaces of the capability table
/// ([`airlock_core::capabilities`]): no sockets, no HTTP, and the virtual
/// monotonic clock instead of the host's.
pub fn add_to_linker<T: HasWasi + WasiView>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::WasiRandom;

    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    monotonic_clock::add_to_linker::<T, VirtualClock>(l, |t| {
        let w = t.wasi();
        VirtualClockView {
            table: &mut w.table,
            time: &w.time,
        }
    })?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    add_stable_metadata(l)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, IoTable>(l, |t| {
        &mut t.wasi().table
    })?;
    sync::io::poll::add_to_linker::<T, IoTable>(l, |t| &mut t.wasi().table)?;
    sync::io::streams::add_to_linker::<T, IoTable>(l, |t| &mut t.wasi().table)?;
    Ok(())
}

/// Replaces the functions of `wasi:filesystem/types` that describe the host
/// rather than the bundle, with wrappers around wasmtime-wasi's own
/// implementation: `stat` and `stat-at` get every timestamp set to
/// [`FIXED_FILE_TIME_SECS`], and `metadata-hash(-at)` (wasmtime-wasi hashes
/// device and inode numbers) gets the entry's stable value from
/// [`crate::bundle::MetadataHashes`]. Nothing else there returns times or
/// host identities: directory entries carry only a type and a name.
fn add_stable_metadata<T: HasWasi + WasiView>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime::StoreContextMut;
    use wasmtime_wasi::filesystem::WasiFilesystemView;
    use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
        self as fs, Host as _, HostDescriptor as _,
    };

    fn fixed(mut stat: fs::DescriptorStat) -> fs::DescriptorStat {
        let t = Some(fs::Datetime {
            seconds: FIXED_FILE_TIME_SECS,
            nanoseconds: 0,
        });
        stat.data_access_timestamp = t;
        stat.data_modification_timestamp = t;
        stat.status_change_timestamp = t;
        stat
    }

    l.allow_shadowing(true);
    let mut inst = l.instance(FS_TYPES_IFACE)?;
    inst.func_wrap(
        "[method]descriptor.stat",
        |mut store: StoreContextMut<'_, T>,
         (fd,): (Resource<fs::Descriptor>,)|
         -> wasmtime::Result<(Result<fs::DescriptorStat, fs::ErrorCode>,)> {
            let mut view = store.data_mut().filesystem();
            Ok((match view.stat(fd) {
                Ok(stat) => Ok(fixed(stat)),
                Err(e) => Err(view.convert_error_code(e)?),
            },))
        },
    )?;
    inst.func_wrap(
        "[method]descriptor.stat-at",
        |mut store: StoreContextMut<'_, T>,
         (fd, flags, path): (Resource<fs::Descriptor>, fs::PathFlags, String)|
         -> wasmtime::Result<(Result<fs::DescriptorStat, fs::ErrorCode>,)> {
            let mut view = store.data_mut().filesystem();
            Ok((match view.stat_at(fd, flags, path) {
                Ok(stat) => Ok(fixed(stat)),
                Err(e) => Err(view.convert_error_code(e)?),
            },))
        },
    )?;
    fn stable<T: HasWasi>(t: &mut T, v: fs::MetadataHashValue) -> fs::MetadataHashValue {
        let (lower, upper) = t
            .wasi()
            .metadata_hashes
            .as_ref()
            .map_or(crate::bundle::UNMAPPED_METADATA_HASH, |m| m.stable(v.lower));
        fs::MetadataHashValue { lower, upper }
    }
    inst.func_wrap(
        "[method]descriptor.metadata-hash",
        |mut store: StoreContextMut<'_, T>,
         (fd,): (Resource<fs::Descriptor>,)|
         -> wasmtime::Result<(Result<fs::MetadataHashValue, fs::ErrorCode>,)> {
            let result = {
                let mut view = store.data_mut().filesystem();
                match view.metadata_hash(fd) {
                    Ok(v) => Ok(v),
                    Err(e) => Err(view.convert_error_code(e)?),
                }
            };
            Ok((result.map(|v| stable(store.data_mut(), v)),))
        },
    )?;
    inst.func_wrap(
        "[method]descriptor.metadata-hash-at",
        |mut store: StoreContextMut<'_, T>,
         (fd, flags, path): (Resource<fs::Descriptor>, fs::PathFlags, String)|
         -> wasmtime::Result<(Result<fs::MetadataHashValue, fs::ErrorCode>,)> {
            let result = {
                let mut view = store.data_mut().filesystem();
                match view.metadata_hash_at(fd, flags, path) {
                    Ok(v) => Ok(v),
                    Err(e) => Err(view.convert_error_code(e)?),
                }
            };
            Ok((result.map(|v| stable(store.data_mut(), v)),))
        },
    )?;
    l.allow_shadowing(false);
    Ok(())
}

struct IoTable;

impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_log_keeps_prefix_and_counts_drops() {
        let log = BoundedLog::new(4);
        log.append(b"abc");
        log.append(b"defg");
        assert_eq!(log.contents(), ("abcd".to_string(), 3));
    }

    #[test]
    fn virtual_time_only_moves_by_sleeps_and_reads() {
        let t = VirtualTime::default();
        let a = t.read();
        t.advance(1_000_000_000);
        let b = t.read();
        assert_eq!(b - a, 1_000_000_001);
    }
}
