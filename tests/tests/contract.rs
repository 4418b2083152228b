//! Contract versions: the host runs components built against the frozen
//! contract 0.1 beside 0.2 ones, in every combination a gate can mix them
//! (a 0.2 validator learning of candidate failures through the typed
//! `candidate-error` is in `hostile.rs`: `probe-loop`).
//!
//! The 0.1 components are committed builds (`tests/fixtures/contract-0.1/`,
//! made by `make.sh` there from the last 0.1 commit), so they stay exactly
//! what a plugin author published.

use airlock_gate::runner::load_model;
use airlock_gate::{GateReport, GateRun, GateSpec};
use airlock_runtime::sandbox::{ContractVersion, Sandbox};
use airlock_tests::{example, fixture, load, plugin, sandbox};
use std::path::PathBuf;

fn old_model() -> PathBuf {
    fixture("contract-0.1/xgboost-0.1.wasm")
}

fn old_robustness() -> PathBuf {
    fixture("contract-0.1/robustness-0.1.wasm")
}

/// The example gate with every step on this build's validators, except
/// robustness (the step that calls into the candidate) on `robustness`.
fn gate_with_robustness(robustness: &std::path::Path) -> GateSpec {
    let text = std::fs::read_to_string(example().join("gate.toml")).unwrap();
    let mut spec = GateSpec::parse(&text, &example()).unwrap();
    for step in &mut spec.steps {
        step.plugin = if step.plugin == "robustness" {
            robustness.display().to_string()
        } else {
            plugin(&format!("airlock_validator_{}", step.plugin))
                .display()
                .to_string()
        };
    }
    spec
}

fn run(sb: &Sandbox, spec: &GateSpec, model: &std::path::Path, bundle: &str) -> GateReport {
    let candidate = load_model(sb, model, Some(&example().join(bundle))).unwrap();
    GateRun {
        sandbox: sb,
        spec,
        candidate,
        baseline: None,
        plugin_dir: None,
        seed: Some(42),
        data_caps: Default::default(),
    }
    .run()
    .unwrap()
}

/// Each step's (name, status, metrics), the part of a report that must not
/// depend on which contract version the components were built against.
fn outcome(r: &GateReport) -> Vec<(String, String, String)> {
    r.steps
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                format!("{:?}", s.status),
                serde_json::to_string(&s.metrics).unwrap(),
            )
        })
        .collect()
}

#[test]
fn frozen_0_1_components_load_as_0_1_and_0_2_builds_as_0_2() {
    let sb = sandbox();
    let old = sb.load_file(&old_model()).unwrap();
    assert_eq!(old.contract, ContractVersion::V0_1);
    assert!(!old.is_preinitializable());
    let old_v = sb.load_file(&old_robustness()).unwrap();
    assert_eq!(old_v.contract, ContractVersion::V0_1);
    assert!(
        old_v
            .imports
            .iter()
            .any(|i| i == "airlock:plugin/candidate@0.1.0")
    );
    let new = load(&sb, "airlock_model_xgboost");
    assert_eq!(new.contract, ContractVersion::V0_2);
    assert!(new.is_preinitializable());
    let new_v = load(&sb, "airlock_validator_robustness");
    assert_eq!(new_v.contract, ContractVersion::V0_2);
    assert!(
        new_v
            .imports
            .iter()
            .any(|i| i == "airlock:plugin/candidate@0.2.0")
    );
}

#[test]
fn a_gate_gives_the_same_verdicts_and_metrics_whichever_contract_its_parts_were_built_against() {
    let sb = sandbox();
    let new_gate = gate_with_robustness(&plugin("airlock_validator_robustness"));
    let old_gate = gate_with_robustness(&old_robustness());
    let new_model = plugin("airlock_model_xgboost");
    for bundle in ["model-v1", "model-v2-degraded"] {
        let all_new = run(&sb, &new_gate, &new_model, bundle);
        // A 0.1 validator probing a 0.2 candidate, a 0.2 validator probing
        // a 0.1 candidate, and everything 0.1.
        let mixed_a = run(&sb, &old_gate, &new_model, bundle);
        let mixed_b = run(&sb, &new_gate, &old_model(), bundle);
        let all_old = run(&sb, &old_gate, &old_model(), bundle);
        assert_eq!(all_new.passed, bundle == "model-v1");
        for other in [&mixed_a, &mixed_b, &all_old] {
            assert_eq!(other.passed, all_new.passed, "{bundle}");
            assert_eq!(outcome(other), outcome(&all_new), "{bundle}");
        }
        assert!(all_new.candidate.snapshot_digest.is_some());
        assert!(
            mixed_b.candidate.snapshot_digest.is_none(),
            "0.1 has no init"
        );
    }
}
