//! Conversions between the generated binding types and `airlock-core`'s
//! domain types, applied at the call edge.
//!
//! The bindings belong to wasmtime's generator and change with the WIT; the
//! rest of the host speaks [`airlock_core::types`]. Every value crossing
//! into or out of a guest is converted here, field by field, so the two
//! sets of types can never drift apart silently: a field added to one side
//! only stops this file from compiling.

use crate::sandbox::bindings as wire;
use airlock_core::error::FailureKind;
use airlock_core::types as core;

/// How one field converts: as is, through `Into`, or element-wise.
macro_rules! field {
    (same, $e:expr) => {
        $e
    };
    (into, $e:expr) => {
        $e.into()
    };
    (vec, $e:expr) => {
        $e.into_iter().map(Into::into).collect()
    };
    (opt, $e:expr) => {
        $e.map(Into::into)
    };
}

/// Both directions for a record, naming every field and how it converts.
macro_rules! record {
    ($name:ident { $($f:ident : $how:ident),* $(,)? }) => {
        impl From<wire::$name> for core::$name {
            fn from(v: wire::$name) -> Self {
                core::$name { $($f: field!($how, v.$f)),* }
            }
        }
        impl From<core::$name> for wire::$name {
            fn from(v: core::$name) -> Self {
                wire::$name { $($f: field!($how, v.$f)),* }
            }
        }
    };
}

/// Both directions for an enum without payloads, naming every case.
macro_rules! cases {
    ($name:ident { $($c:ident),* $(,)? }) => {
        impl From<wire::$name> for core::$name {
            fn from(v: wire::$name) -> Self {
                match v { $(wire::$name::$c => core::$name::$c),* }
            }
        }
        impl From<core::$name> for wire::$name {
            fn from(v: core::$name) -> Self {
                match v { $(core::$name::$c => wire::$name::$c),* }
            }
        }
    };
}

cases!(FeatureKind {
    Numeric,
    Categorical
});
cases!(Task {
    Regression,
    BinaryClassification,
    MulticlassClassification
});
cases!(Severity {
    Info,
    Warning,
    Error
});
record!(Feature {
    name: same,
    kind: into
});
record!(OutputSchema {
    task: into,
    classes: same
});
record!(ModelMetadata {
    name: same,
    version: same,
    inputs: vec,
    output: into,
});
record!(Column {
    name: same,
    values: into
});
record!(Batch {
    rows: same,
    columns: vec
});
record!(Predictions {
    width: same,
    values: same
});
record!(PluginError {
    code: same,
    message: same
});
record!(Finding {
    severity: into,
    code: same,
    message: same,
});
record!(Metric {
    name: same,
    value: same
});
record!(Verdict {
    passed: same,
    findings: vec,
    metrics: vec,
});
record!(ValidatorInfo {
    name: same,
    version: same,
    description: same,
});
record!(ModelInfo {
    metadata: into,
    digest: same,
    bundle_digest: same,
});
record!(Reference {
    data: into,
    labels: same,
    candidate_predictions: into,
    baseline_predictions: opt,
});
record!(Context {
    step: same,
    config: same,
    seed: same,
    candidate: into,
    baseline: opt,
    data: into,
    labels: same,
    candidate_predictions: into,
    baseline_predictions: opt,
    reference: opt,
});

impl From<wire::ColumnValues> for core::ColumnValues {
    fn from(v: wire::ColumnValues) -> Self {
        match v {
            wire::ColumnValues::Numeric(x) => core::ColumnValues::Numeric(x),
            wire::ColumnValues::Categorical(x) => core::ColumnValues::Categorical(x),
        }
    }
}

impl From<core::ColumnValues> for wire::ColumnValues {
    fn from(v: core::ColumnValues) -> Self {
        match v {
            core::ColumnValues::Numeric(x) => wire::ColumnValues::Numeric(x),
            core::ColumnValues::Categorical(x) => wire::ColumnValues::Categorical(x),
        }
    }
}

/// A borrowed batch for a call: the guest gets its own copy anyway.
impl From<&core::Batch> for wire::Batch {
    fn from(v: &core::Batch) -> Self {
        v.clone().into()
    }
}

/// A borrowed context for a call: the guest gets its own copy anyway.
impl From<&core::Context> for wire::Context {
    fn from(v: &core::Context) -> Self {
        v.clone().into()
    }
}

/// The contract-0.2 name of a host failure kind, or `None` for
/// [`FailureKind::GuestError`], which 0.2 reports as the candidate's own
/// refusal (`candidate-error::refused`) rather than as a sandbox failure.
/// Naming every case keeps the WIT enum and the host's kinds in step.
pub(crate) fn failure_kind_v2(kind: FailureKind) -> Option<wire::v2::FailureKind> {
    use wire::v2::FailureKind as W;
    Some(match kind {
        FailureKind::FuelExhausted => W::FuelExhausted,
        FailureKind::Timeout => W::Timeout,
        FailureKind::MemoryLimit => W::MemoryLimit,
        FailureKind::StackOverflow => W::StackOverflow,
        FailureKind::Trap => W::Trap,
        FailureKind::GuestError => return None,
        FailureKind::DisallowedImport => W::DisallowedImport,
        FailureKind::InvalidComponent => W::InvalidComponent,
        FailureKind::OutputTooLarge => W::OutputTooLarge,
        FailureKind::InputTooLarge => W::InputTooLarge,
        FailureKind::InvalidOutput => W::InvalidOutput,
        FailureKind::Busy => W::Busy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> core::Batch {
        core::Batch {
            rows: 2,
            columns: vec![
                core::Column {
                    name: "x".into(),
                    values: core::ColumnValues::Numeric(vec![1.5, f64::INFINITY]),
                },
                core::Column {
                    name: "c".into(),
                    values: core::ColumnValues::Categorical(vec![Some("a".into()), None]),
                },
            ],
        }
    }

    fn metadata() -> core::ModelMetadata {
        core::ModelMetadata {
            name: "m".into(),
            version: "1".into(),
            inputs: vec![
                core::Feature {
                    name: "x".into(),
                    kind: core::FeatureKind::Numeric,
                },
                core::Feature {
                    name: "c".into(),
                    kind: core::FeatureKind::Categorical,
                },
            ],
            output: core::OutputSchema {
                task: core::Task::MulticlassClassification,
                classes: vec!["a".into(), "b".into(), "c".into()],
            },
        }
    }

    #[test]
    fn a_context_survives_the_round_trip_through_the_bindings_unchanged() {
        let p = core::Predictions {
            width: 3,
            values: vec![0.2, 0.3, 0.5, 1.0, 0.0, 0.0],
        };
        let ctx = core::Context {
            step: "s".into(),
            config: "{}".into(),
            seed: 7,
            candidate: core::ModelInfo {
                metadata: metadata(),
                digest: "sha256:00".into(),
                bundle_digest: Some("sha256:11".into()),
            },
            baseline: None,
            data: batch(),
            labels: Some(vec![0.0, 2.0]),
            candidate_predictions: p.clone(),
            baseline_predictions: Some(p.clone()),
            reference: Some(core::Reference {
                data: batch(),
                labels: None,
                candidate_predictions: p,
                baseline_predictions: None,
            }),
        };
        let wire_ctx = wire::Context::from(&ctx);
        assert_eq!(wire_ctx.candidate.metadata.output.classes.len(), 3);
        assert_eq!(core::Context::from(wire_ctx), ctx);
    }

    #[test]
    fn a_verdict_keeps_every_finding_metric_and_severity() {
        let v = wire::Verdict {
            passed: false,
            findings: vec![
                wire::Finding {
                    severity: wire::Severity::Error,
                    code: "e".into(),
                    message: "bad".into(),
                },
                wire::Finding {
                    severity: wire::Severity::Info,
                    code: "i".into(),
                    message: "fyi".into(),
                },
            ],
            metrics: vec![wire::Metric {
                name: "auc".into(),
                value: 0.9,
            }],
        };
        let core_v = core::Verdict::from(v.clone());
        assert_eq!(core_v.findings[0].severity, core::Severity::Error);
        assert_eq!(core_v.findings[1].severity, core::Severity::Info);
        assert_eq!(core_v.metrics[0].value, 0.9);
        assert_eq!(wire::Verdict::from(core_v), v);
    }
}
