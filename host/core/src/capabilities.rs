//! Which interfaces a plugin may import, decided before anything runs.
//!
//! airlock denies by default: a component may import only the interfaces
//! listed here, each of which the host links in a harmless form (an empty
//! environment, closed stdin, captured stdout/stderr, virtual clocks, seeded
//! random, a filesystem with nothing in it unless a model is granted its
//! bundle). Anything else — sockets, HTTP, an interface the host has never
//! heard of — makes the component refuse to load, naming the import. Pure
//! logic, so the policy is tested without an engine.

use crate::error::{FailureKind, PluginFailure};
use serde::Serialize;

/// The two kinds of plugin, after the two worlds of `airlock:plugin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum World {
    /// Turns feature rows into predictions.
    Model,
    /// Judges a candidate model in a gate step.
    Validator,
}

impl World {
    /// `"model"` or `"validator"`.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Model => "model",
            World::Validator => "validator",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One capability as a security reviewer sees it: what it is, which
/// interfaces carry it, and in what form the host grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// Short name, e.g. `stdio`.
    pub name: &'static str,
    /// What the plugin actually gets.
    pub granted_as: &'static str,
    /// The imported interfaces (unversioned) that belong to it.
    pub interfaces: Vec<String>,
}

/// (capability, interfaces without version, how it is granted, worlds).
const TABLE: &[(&str, &[&str], &str, &[World])] = &[
    (
        "stdio",
        &[
            "wasi:cli/stdin",
            "wasi:cli/stdout",
            "wasi:cli/stderr",
            "wasi:cli/terminal-input",
            "wasi:cli/terminal-output",
            "wasi:cli/terminal-stdin",
            "wasi:cli/terminal-stdout",
            "wasi:cli/terminal-stderr",
        ],
        "stdin closed; stdout and stderr captured into bounded per-call logs; no terminal",
        &[World::Model, World::Validator],
    ),
    (
        "environment",
        &["wasi:cli/environment", "wasi:cli/exit"],
        "no environment variables, no arguments; exit ends the call",
        &[World::Model, World::Validator],
    ),
    (
        "io",
        &["wasi:io/error", "wasi:io/poll", "wasi:io/streams"],
        "streams over the granted resources only",
        &[World::Model, World::Validator],
    ),
    (
        "clocks",
        &["wasi:clocks/wall-clock", "wasi:clocks/monotonic-clock"],
        "virtual: a fixed wall clock and a monotonic clock that only sleeping advances",
        &[World::Model, World::Validator],
    ),
    (
        "random",
        &[
            "wasi:random/random",
            "wasi:random/insecure",
            "wasi:random/insecure-seed",
        ],
        "deterministic, from the run's recorded seed",
        &[World::Model, World::Validator],
    ),
    (
        "filesystem",
        &["wasi:filesystem/types", "wasi:filesystem/preopens"],
        "nothing, unless a model is granted its data bundle: then one read-only directory at /bundle",
        &[World::Model, World::Validator],
    ),
    (
        "airlock-types",
        &[
            "airlock:plugin/types",
            "airlock:plugin/validation",
            "airlock:plugin/failures",
        ],
        "type definitions only",
        &[World::Model, World::Validator],
    ),
    (
        "candidate",
        &["airlock:plugin/candidate"],
        "calls into the candidate model's own sandbox, charged to the validator's fuel",
        &[World::Validator],
    ),
];

/// Splits `ns:pkg/iface@1.2.3` into (`ns:pkg/iface`, `Some("1.2.3")`).
pub fn split_version(import: &str) -> (&str, Option<&str>) {
    match import.split_once('@') {
        Some((name, v)) => (name, Some(v)),
        None => (import, None),
    }
}

/// Whether a versioned import is one the host links: WASI 0.2.x and
/// `airlock:plugin` 0.1.x (frozen) and 0.2.x. The `failures` interface
/// exists from 0.2 on.
fn version_ok(name: &str, version: Option<&str>) -> bool {
    let Some(v) = version else {
        return false;
    };
    if name.starts_with("wasi:") || name == "airlock:plugin/failures" {
        v.starts_with("0.2.")
    } else {
        v.starts_with("0.1.") || v.starts_with("0.2.")
    }
}

/// The capability an import belongs to for `world`, if it is allowed.
fn capability_of(world: World, import: &str) -> Option<&'static str> {
    let (name, version) = split_version(import);
    if !version_ok(name, version) {
        return None;
    }
    TABLE
        .iter()
        .find(|(_, ifaces, _, worlds)| ifaces.contains(&name) && worlds.contains(&world))
        .map(|(cap, ..)| *cap)
}

/// Refuses a component of `world` that imports anything not granted,
/// naming every such import.
pub fn check_imports<S: AsRef<str>>(world: World, imports: &[S]) -> Result<(), PluginFailure> {
    let refused: Vec<&str> = imports
        .iter()
        .map(AsRef::as_ref)
        .filter(|i| capability_of(world, i).is_none())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(PluginFailure::new(
        FailureKind::DisallowedImport,
        format!(
            "{} plugin imports {} not granted: {}",
            world,
            if refused.len() == 1 {
                "an interface"
            } else {
                "interfaces"
            },
            refused.join(", ")
        ),
    ))
}

/// The capabilities a component of `world` with these imports would get,
/// for `airlock plugin inspect`.
pub fn granted<S: AsRef<str>>(world: World, imports: &[S]) -> Vec<Capability> {
    let mut out: Vec<Capability> = Vec::new();
    for import in imports.iter().map(AsRef::as_ref) {
        let Some(cap) = capability_of(world, import) else {
            continue;
        };
        let (name, _) = split_version(import);
        match out.iter_mut().find(|c| c.name == cap) {
            Some(c) => c.interfaces.push(name.to_string()),
            None => {
                let granted_as = TABLE.iter().find(|t| t.0 == cap).map(|t| t.2).unwrap_or("");
                out.push(Capability {
                    name: cap,
                    granted_as,
                    interfaces: vec![name.to_string()],
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_rust_imports_are_allowed() {
        let imports = [
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.6",
            "wasi:filesystem/preopens@0.2.0",
            "wasi:random/insecure-seed@0.2.6",
            "airlock:plugin/types@0.1.0",
        ];
        check_imports(World::Model, &imports).unwrap();
        let caps = granted(World::Model, &imports);
        assert_eq!(caps.len(), 5);
    }

    #[test]
    fn sockets_are_refused_and_named() {
        let e = check_imports(
            World::Model,
            &["wasi:io/streams@0.2.6", "wasi:sockets/tcp@0.2.6"],
        )
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::DisallowedImport);
        assert!(
            e.message.contains("wasi:sockets/tcp@0.2.6"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("streams"));
    }

    #[test]
    fn both_contract_versions_are_linked() {
        for imports in [
            [
                "airlock:plugin/types@0.1.0",
                "airlock:plugin/candidate@0.1.0",
            ],
            [
                "airlock:plugin/failures@0.2.0",
                "airlock:plugin/candidate@0.2.0",
            ],
        ] {
            check_imports(World::Validator, &imports).unwrap();
        }
    }

    #[test]
    fn candidate_is_for_validators_only() {
        let imports = ["airlock:plugin/candidate@0.1.0"];
        check_imports(World::Validator, &imports).unwrap();
        let e = check_imports(World::Model, &imports).unwrap_err();
        assert!(e.message.contains("airlock:plugin/candidate"));
    }

    #[test]
    fn unknown_and_unversioned_and_wrong_major_imports_are_refused() {
        for bad in [
            "evil:exfil/leak@1.0.0",
            "wasi:cli/stdout",
            "wasi:cli/stdout@0.3.0",
            "airlock:plugin/types@0.3.0",
            "airlock:plugin/failures@0.1.0",
            "wasi:http/outgoing-handler@0.2.6",
        ] {
            let e = check_imports(World::Validator, &[bad]).unwrap_err();
            assert_eq!(e.kind, FailureKind::DisallowedImport, "{bad}");
            assert_eq!(
                e.message,
                format!("validator plugin imports an interface not granted: {bad}")
            );
        }
    }
}
