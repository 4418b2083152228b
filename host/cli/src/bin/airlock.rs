//! The `airlock` binary: a thin shell over [`airlock_cli`].
#![forbid(unsafe_code)]

/// mimalloc instead of glibc's allocator: the serving path makes many small,
/// short-lived allocations on several threads (wasmtime's per-store state,
/// JSON, hyper), and glibc's arenas spent about 16 % of a loaded server's
/// CPU in `malloc`/`free` and their lock (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    airlock_cli::main()
}
