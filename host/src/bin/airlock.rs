//! The `airlock` binary: a thin shell over [`airlock_host::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    airlock_host::cli::main()
}
