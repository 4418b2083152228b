//! The `airlock` binary: a thin shell over [`airlock_cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    airlock_cli::main()
}
