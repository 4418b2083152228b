//! airlock's integration tests, as one test binary.
//!
//! Every test binary links wasmtime (hundreds of megabytes and a long link
//! each), so the files in `tests/tests/` are modules of this one binary
//! rather than a binary each: touching a host crate costs one link, not one
//! per file. Each file keeps its own module, so test names are
//! `file::test`; run one file's tests with, e.g.,
//! `cargo test --workspace --test integration -- verdicts::`.
//!
//! The tests share one process, so none may change process-global state
//! (environment variables, the current directory): a test that needs a
//! different environment gives it to a child process instead.

/// Builders of hostile components, shared by `compile_bombs` and the
/// `compile_caps` bench.
mod bombs;

mod audit;
mod bundles;
mod cache;
mod cli;
mod compile_bombs;
mod contract;
mod datasets;
mod gate;
mod hostile;
mod longrun;
mod manifest;
mod models;
mod preinit;
mod probes;
mod races;
mod readme;
mod report;
mod scaffold;
mod server;
mod server_cli;
mod server_crash;
mod server_tls;
mod serving;
mod signing;
mod snapshot_serving;
mod verdicts;
mod what_users_see;
