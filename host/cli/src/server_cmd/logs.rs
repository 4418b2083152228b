//! The server's log subscriber: the libraries (`airlock-server`, …) emit
//! `tracing` events and only the `airlock server` command installs a
//! subscriber, so a library embedded elsewhere logs where its host says.
//! Events go to stderr, one line each, at the level `AIRLOCK_LOG` (or else
//! `RUST_LOG`) asks for, `info` by default; colour only on a terminal.

use crate::exit::CliError;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// The level when neither variable is set: warnings, errors and the
/// server's lifecycle (start, production versions warmed).
const DEFAULT: &str = "info";

/// Which variable sets the filter and what it says: `AIRLOCK_LOG` wins over
/// `RUST_LOG`; an empty value counts as unset.
fn filter_spec(env: &dyn Fn(&str) -> Option<String>) -> (&'static str, String) {
    for name in ["AIRLOCK_LOG", "RUST_LOG"] {
        if let Some(v) = env(name).filter(|v| !v.trim().is_empty()) {
            return (name, v);
        }
    }
    ("", DEFAULT.to_string())
}

/// Installs the stderr subscriber. A filter that does not parse is refused
/// naming the variable (a typo would otherwise silence the logs).
pub(super) fn init() -> Result<(), CliError> {
    let env = |k: &str| std::env::var(k).ok();
    let (name, spec) = filter_spec(&env);
    let filter = EnvFilter::builder().parse(&spec).map_err(|e| {
        CliError::input(format!(
            "{name}={spec:?} is not a log filter ({e}); use a level such as `info` or `debug`, or directives such as `warn,airlock_server=debug`"
        ))
    })?;
    // Already installed (a second server in one process): the first stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(vars: &[(&str, &str)]) -> (&'static str, String) {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        filter_spec(&move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn airlock_log_wins_over_rust_log_and_info_is_the_default() {
        assert_eq!(spec(&[]), ("", "info".to_string()));
        assert_eq!(spec(&[("RUST_LOG", "debug")]), ("RUST_LOG", "debug".into()));
        assert_eq!(
            spec(&[("RUST_LOG", "debug"), ("AIRLOCK_LOG", "warn")]),
            ("AIRLOCK_LOG", "warn".into())
        );
        assert_eq!(
            spec(&[("AIRLOCK_LOG", " "), ("RUST_LOG", "error")]),
            ("RUST_LOG", "error".into())
        );
    }
}
