//! Gate files: an ordered chain of validator steps and the policy that
//! turns their verdicts into a decision.
//!
//! ```toml
//! name = "breast-cancer"
//! plugin_dir = "../../target/plugins"   # where bare plugin names resolve
//!
//! [policy]
//! advisory = ["drift"]                  # reported, but cannot fail the gate
//!
//! [[steps]]
//! name = "performance"
//! plugin = "performance"                # or a path ending in .wasm
//! dataset = "data/eval.csv"
//! label = "target"
//! reference = "data/train.csv"          # optional
//! limits = { fuel = 500000000 }         # optional; may only lower limits
//! allow_probe_failures = ["fuel_exhausted"]  # optional; see below
//! [steps.config]
//! min = { accuracy = 0.9 }
//! ```
//!
//! Relative paths resolve against the gate file's directory.
//!
//! `allow_probe_failures` names the kinds of failed candidate probes a step
//! accepts (see [`crate::gate::policy::ALLOWABLE_PROBE_FAILURES`]); by
//! default none: a validator's probe that made the candidate trap, run out
//! of fuel or memory, time out or refuse makes the step an error that
//! blocks the gate, whatever the validator concluded.

use crate::digest::Digest;
use crate::limits::LimitRequest;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A parsed gate file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// The gate's name, for reports.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where plugin names without `.wasm` resolve (`<dir>/<name>.wasm`).
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// How verdicts become a decision.
    #[serde(default)]
    pub policy: Policy,
    /// The ordered steps.
    pub steps: Vec<StepSpec>,
    /// The directory relative paths resolve against (the file's directory,
    /// unless the command line overrides it).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Digest of the gate file's bytes, bound into every report.
    #[serde(skip, default = "zero_digest")]
    pub digest: Digest,
    /// The file's text, kept to point errors at lines of it.
    #[serde(skip)]
    pub source: String,
    /// The file it was read from, when it was read from one.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

fn zero_digest() -> Digest {
    Digest([0; 32])
}

/// The decision rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Steps whose failure is reported but does not fail the gate.
    #[serde(default)]
    pub advisory: Vec<String>,
}

/// One step: a validator, its config and its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique within the gate.
    pub name: String,
    /// A plugin name (resolved in `plugin_dir`) or a path to a `.wasm`.
    pub plugin: String,
    /// The evaluation rows.
    pub dataset: PathBuf,
    /// The label column of `dataset` (and of `reference`).
    #[serde(default)]
    pub label: Option<String>,
    /// A reference dataset for drift-style comparisons.
    #[serde(default)]
    pub reference: Option<PathBuf>,
    /// Lower limits for this step's validator.
    #[serde(default)]
    pub limits: LimitRequest,
    /// Kinds of failed candidate probes this step accepts (names from
    /// [`crate::gate::policy::ALLOWABLE_PROBE_FAILURES`], checked when the
    /// gate is parsed); any other failed probe blocks the gate.
    #[serde(default)]
    pub allow_probe_failures: Vec<String>,
    /// The validator's configuration, handed over as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Table,
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

/// Why a gate file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Unreadable file.
    #[error("cannot read gate file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, the wrong shape, or inconsistent steps.
    #[error("gate file {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text.
        source: InvalidSpec,
    },
}

/// What is wrong with a gate file's text, wherever it came from (a file, or
/// a gate the CLI builds for `plugin validate`).
#[derive(Debug, thiserror::Error)]
pub enum InvalidSpec {
    /// Not valid TOML, or not a gate's shape (an unknown or missing key, a
    /// value of the wrong type); TOML's message gives the line and the key.
    #[error("{}", crate::error::one_line(&.0.to_string()))]
    Toml(#[source] toml::de::Error),
    /// `steps` is empty: a gate that checks nothing would always pass.
    #[error("a gate needs at least one [[steps]] entry")]
    NoSteps,
    /// A step's name is empty or blank; reports and `policy.advisory` name
    /// steps by it.
    #[error("step {number} has an empty name")]
    EmptyStepName {
        /// The step's 1-based position in the file.
        number: usize,
    },
    /// Two steps share a name, so reports and the policy could not tell
    /// them apart.
    #[error("step name `{name}` is used twice")]
    DuplicateStep {
        /// The repeated name.
        name: String,
    },
    /// A step's `allow_probe_failures` names an unknown kind, or one that
    /// can never be allowed.
    #[error("step `{step}`: allow_probe_failures: {message}")]
    ProbeFailureKind {
        /// The step.
        step: String,
        /// What is wrong with the entry.
        message: String,
    },
    /// `policy.advisory` names no step of the gate (most likely a typo,
    /// which would silently make a step blocking).
    #[error("policy.advisory names `{name}`, which is not a step")]
    UnknownAdvisory {
        /// The name as written in the policy.
        name: String,
    },
}

impl GateSpec {
    /// Reads and checks a gate file.
    pub fn load(path: &Path) -> Result<GateSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut spec = GateSpec::parse(&text, &base).map_err(|source| SpecError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
        spec.path = Some(path.to_path_buf());
        Ok(spec)
    }

    /// Parses gate TOML whose relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<GateSpec, InvalidSpec> {
        let mut spec: GateSpec = toml::from_str(text).map_err(InvalidSpec::Toml)?;
        spec.base_dir = base_dir.to_path_buf();
        spec.digest = Digest::of(text.as_bytes());
        spec.source = text.to_string();
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), InvalidSpec> {
        if self.steps.is_empty() {
            return Err(InvalidSpec::NoSteps);
        }
        for (i, s) in self.steps.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(InvalidSpec::EmptyStepName { number: i + 1 });
            }
            if self.steps[..i].iter().any(|o| o.name == s.name) {
                return Err(InvalidSpec::DuplicateStep {
                    name: s.name.clone(),
                });
            }
            for k in &s.allow_probe_failures {
                crate::gate::policy::allowable_probe_failure(k).map_err(|message| {
                    InvalidSpec::ProbeFailureKind {
                        step: s.name.clone(),
                        message,
                    }
                })?;
            }
        }
        for a in &self.policy.advisory {
            if !self.steps.iter().any(|s| &s.name == a) {
                return Err(InvalidSpec::UnknownAdvisory { name: a.clone() });
            }
        }
        Ok(())
    }

    /// Resolves a path from the gate file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The component file of a step, with `plugin_dir_override` (from the
    /// command line) taking precedence over the file's `plugin_dir`.
    pub fn plugin_path(&self, step: &StepSpec, plugin_dir_override: Option<&Path>) -> PathBuf {
        if step.plugin.ends_with(".wasm") {
            return self.resolve(Path::new(&step.plugin));
        }
        let dir = match (plugin_dir_override, &self.plugin_dir) {
            (Some(d), _) => d.to_path_buf(),
            (None, Some(d)) => self.resolve(d),
            (None, None) => self.base_dir.clone(),
        };
        dir.join(format!("{}.wasm", step.plugin))
    }
}

impl StepSpec {
    /// The step's config as a JSON object string for the validator.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }

    /// The kinds its `allow_probe_failures` names (entries that name none
    /// were refused when the gate was parsed).
    pub fn allowed_probe_failures(&self) -> Vec<crate::error::FailureKind> {
        self.allow_probe_failures
            .iter()
            .filter_map(|k| crate::gate::policy::allowable_probe_failure(k).ok())
            .collect()
    }

    /// The step's config as a JSON value, for reports.
    pub fn config_value(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

impl GateSpec {
    /// Where, in the gate file, step `step` (0-based) sets the config key
    /// `dotted` (e.g. `min.accuracy`): `(line, column)`, 1-based. Falls back
    /// to the step's `config` table, then to the step, when the key is not
    /// written in the file (a missing key).
    pub fn locate_config_key(&self, step: usize, dotted: &str) -> Option<(usize, usize)> {
        use toml::de::{DeTable, DeValue};
        let doc = DeTable::parse(&self.source).ok()?;
        fn find<'i>(
            t: &DeTable<'i>,
            key: &str,
        ) -> Option<(std::ops::Range<usize>, toml::Spanned<DeValue<'i>>)> {
            t.iter()
                .find(|(k, _)| k.get_ref().as_ref() == key)
                .map(|(k, v)| (k.span(), v.clone()))
        }
        let (_, steps) = find(doc.get_ref(), "steps")?;
        let DeValue::Array(steps) = steps.into_inner() else {
            return None;
        };
        let step_value = steps.get(step)?;
        let step_span = step_value.span();
        let DeValue::Table(step_table) = step_value.get_ref() else {
            return None;
        };
        let mut best = step_span;
        if let Some((config_key_span, config)) = find(step_table, "config") {
            best = config_key_span;
            let mut current = config.into_inner();
            for part in dotted.split('.').filter(|p| !p.is_empty()) {
                let DeValue::Table(t) = &current else { break };
                let Some((span, next)) = find(t, part) else {
                    break;
                };
                best = span;
                current = next.into_inner();
            }
        }
        Some(line_col(&self.source, best.start))
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "g"
        plugin_dir = "plugins"
        [policy]
        advisory = ["drift"]
        [[steps]]
        name = "perf"
        plugin = "performance"
        dataset = "eval.csv"
        label = "target"
        limits = { fuel = 5 }
        [steps.config]
        min = { accuracy = 0.9 }
        [[steps]]
        name = "drift"
        plugin = "/abs/drift.wasm"
        dataset = "eval.csv"
    "#;

    #[test]
    fn parses_and_resolves() {
        let g = GateSpec::parse(GOOD, Path::new("/gates")).unwrap();
        assert_eq!(g.steps.len(), 2);
        assert_eq!(
            g.plugin_path(&g.steps[0], None),
            PathBuf::from("/gates/plugins/performance.wasm")
        );
        assert_eq!(
            g.plugin_path(&g.steps[0], Some(Path::new("/o"))),
            PathBuf::from("/o/performance.wasm")
        );
        assert_eq!(
            g.plugin_path(&g.steps[1], None),
            PathBuf::from("/abs/drift.wasm")
        );
        assert_eq!(g.steps[0].limits.fuel, Some(5));
        assert_eq!(g.steps[0].config_json(), r#"{"min":{"accuracy":0.9}}"#);
        assert_eq!(
            g.resolve(Path::new("eval.csv")),
            PathBuf::from("/gates/eval.csv")
        );
    }

    #[test]
    fn broken_files_name_the_problem() {
        let e = GateSpec::parse("name = \"g\"\nsteps = []", Path::new(".")).unwrap_err();
        assert!(matches!(e, InvalidSpec::NoSteps), "{e:?}");
        assert_eq!(e.to_string(), "a gate needs at least one [[steps]] entry");
        let e = GateSpec::parse(
            &GOOD.replace("advisory = [\"drift\"]", "advisory = [\"x\"]"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(
            matches!(&e, InvalidSpec::UnknownAdvisory { name } if name == "x"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "policy.advisory names `x`, which is not a step"
        );
        let e = GateSpec::parse(
            &GOOD.replace(
                "dataset = \"eval.csv\"\n        label",
                "datset = \"eval.csv\"\n        label",
            ),
            Path::new("."),
        )
        .unwrap_err();
        let InvalidSpec::Toml(source) = &e else {
            panic!("expected a TOML error, got {e:?}");
        };
        assert!(
            source.message().contains("unknown field `datset`"),
            "{source}"
        );
        assert!(e.to_string().contains("datset"), "{e}");
        let e = GateSpec::parse(
            &GOOD.replace("name = \"drift\"", "name = \"perf\""),
            Path::new("."),
        )
        .unwrap_err();
        assert!(
            matches!(&e, InvalidSpec::DuplicateStep { name } if name == "perf"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "step name `perf` is used twice");
        let e = GateSpec::parse(
            &GOOD.replace("name = \"perf\"", "name = \" \""),
            Path::new("."),
        )
        .unwrap_err();
        assert!(
            matches!(e, InvalidSpec::EmptyStepName { number: 1 }),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "step 1 has an empty name");
        let e = GateSpec::parse("name = ", Path::new(".")).unwrap_err();
        assert!(matches!(e, InvalidSpec::Toml(_)), "{e:?}");
        assert!(!e.to_string().contains('\n'));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn allowed_probe_failures_are_named_kinds_and_a_bad_one_names_the_step_and_key() {
        let g = GateSpec::parse(
            &GOOD.replace(
                "limits = { fuel = 5 }",
                "limits = { fuel = 5 }\n        allow_probe_failures = [\"fuel_exhausted\", \"trap\"]",
            ),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            g.steps[0].allowed_probe_failures(),
            [
                crate::error::FailureKind::FuelExhausted,
                crate::error::FailureKind::Trap
            ]
        );
        assert!(g.steps[1].allowed_probe_failures().is_empty());
        for (bad, why) in [
            ("fuel", "`fuel` is not a probe failure kind"),
            ("invalid_output", "`invalid_output` can never be allowed"),
        ] {
            let e = GateSpec::parse(
                &GOOD.replace(
                    "limits = { fuel = 5 }",
                    &format!("limits = {{ fuel = 5 }}\n        allow_probe_failures = [\"{bad}\"]"),
                ),
                Path::new("."),
            )
            .unwrap_err();
            assert!(
                matches!(&e, InvalidSpec::ProbeFailureKind { step, .. } if step == "perf"),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.starts_with("step `perf`: allow_probe_failures: ") && text.contains(why),
                "{text}"
            );
        }
    }

    #[test]
    fn file_errors_keep_the_path_and_the_cause() {
        let dir = std::env::temp_dir().join(format!("airlock-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let e = GateSpec::load(&missing).unwrap_err();
        let SpecError::Io { path, source } = &e else {
            panic!("expected Io, got {e:?}");
        };
        assert_eq!(path, &missing);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read gate file {}: ", missing.display())),
            "{e}"
        );

        let broken = dir.join("broken.toml");
        std::fs::write(&broken, "name = \"g\"\nsteps = []\n").unwrap();
        let e = GateSpec::load(&broken).unwrap_err();
        let SpecError::Invalid { path, source } = &e else {
            panic!("expected Invalid, got {e:?}");
        };
        assert_eq!(path, &broken);
        assert!(matches!(source, InvalidSpec::NoSteps), "{source:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "gate file {}: a gate needs at least one [[steps]] entry",
                broken.display()
            )
        );
        assert!(std::error::Error::source(&e).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_keys_are_located_in_the_users_toml() {
        let g = GateSpec::parse(GOOD, Path::new("/gates")).unwrap();
        let line_of = |needle: &str| GOOD.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let (line, col) = g.locate_config_key(0, "min.accuracy").unwrap();
        assert_eq!(line, line_of("min = { accuracy"));
        assert_eq!(col, 17);
        // A key that is not written points at the step's config table.
        let (line, _) = g.locate_config_key(0, "nope").unwrap();
        assert_eq!(line, line_of("[steps.config]"));
        // A step without config points at the step itself.
        assert!(g.locate_config_key(1, "x").is_some());
        assert!(g.locate_config_key(5, "x").is_none());
    }

    #[test]
    fn the_digest_covers_the_file_text() {
        let a = GateSpec::parse(GOOD, Path::new("/gates")).unwrap();
        let b = GateSpec::parse(&GOOD.replace("0.9", "0.5"), Path::new("/gates")).unwrap();
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.digest, Digest::of(GOOD.as_bytes()));
    }
}
