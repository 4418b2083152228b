//! The `airlock` CLI built as part of this test crate, so that integration
//! tests run the binary of exactly this build (same features, no second
//! cargo invocation) — `main` is the same function the real binary runs.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    airlock_cli::main()
}
