//! Gate runs end to end through the library: a good candidate passes, a
//! degraded one is refused by the steps that should refuse it, a step whose
//! validator cannot produce a verdict blocks the gate, runs repeat exactly,
//! and a broken gate is refused before any verdict with an error that names
//! the problem.

use airlock_gate::data::{DataCaps, DataError};
use airlock_gate::runner::load_model;
use airlock_gate::{GateError, GateRun, GateSpec, StepStatus};
use airlock_tests::{example, plugin, sandbox};

/// The example gate with its plugin names pointed at the test build.
fn example_gate() -> GateSpec {
    let text = std::fs::read_to_string(example().join("gate.toml")).unwrap();
    let mut spec = GateSpec::parse(&text, &example()).unwrap();
    for step in &mut spec.steps {
        step.plugin = plugin(&format!("airlock_validator_{}", step.plugin))
            .display()
            .to_string();
    }
    spec
}

fn run(
    spec: &GateSpec,
    bundle: &str,
    baseline: Option<&str>,
) -> Result<airlock_gate::GateReport, GateError> {
    run_with_caps(spec, bundle, baseline, DataCaps::default())
}

fn run_with_caps(
    spec: &GateSpec,
    bundle: &str,
    baseline: Option<&str>,
    data_caps: DataCaps,
) -> Result<airlock_gate::GateReport, GateError> {
    let sb = sandbox();
    let model = plugin("airlock_model_xgboost");
    let candidate = load_model(&sb, &model, Some(&example().join(bundle))).unwrap();
    let baseline = baseline.map(|b| load_model(&sb, &model, Some(&example().join(b))).unwrap());
    GateRun {
        sandbox: &sb,
        spec,
        candidate,
        baseline,
        plugin_dir: None,
        seed: Some(42),
        data_caps,
    }
    .run()
}

fn status(r: &airlock_gate::GateReport, step: &str) -> StepStatus {
    r.steps.iter().find(|s| s.name == step).unwrap().status
}

#[test]
fn good_candidate_passes_and_report_binds_digests() {
    let r = run(&example_gate(), "model-v1", None).unwrap();
    assert!(r.passed, "{}", r.to_text());
    for s in ["schema", "golden", "performance", "robustness"] {
        assert_eq!(status(&r, s), StepStatus::Pass, "{s}: {}", r.to_text());
    }
    let expected =
        airlock_runtime::bundle::digest_path(&example().join("model-v1"), &Default::default())
            .unwrap();
    assert_eq!(r.candidate.bundle_digest, Some(expected));
    let model = std::fs::read(plugin("airlock_model_xgboost")).unwrap();
    assert_eq!(r.candidate.digest, airlock_core::digest::Digest::of(&model));
    let perf = r.steps.iter().find(|s| s.name == "performance").unwrap();
    let acc = perf.metrics.get("accuracy").unwrap();
    assert!((acc - 0.976_608_187_134_502_9).abs() < 1e-12, "{acc}");
    assert!(perf.fuel_used > 0);
    let robust = r.steps.iter().find(|s| s.name == "robustness").unwrap();
    assert!(
        robust.candidate_fuel_used > 0,
        "probes run in the candidate"
    );
    assert!(robust.fuel_used >= robust.candidate_fuel_used);
}

#[test]
fn degraded_candidate_is_refused_by_golden_and_performance() {
    let r = run(&example_gate(), "model-v2-degraded", Some("model-v1")).unwrap();
    assert!(!r.passed);
    assert_eq!(
        r.decision.blocking_steps,
        ["golden", "performance"],
        "{}",
        r.to_text()
    );
    let perf = r.steps.iter().find(|s| s.name == "performance").unwrap();
    let codes: Vec<&str> = perf.findings.iter().map(|f| f.code.as_str()).collect();
    assert!(codes.contains(&"accuracy-below-threshold"), "{codes:?}");
    assert!(codes.contains(&"accuracy-regressed"), "{codes:?}");
    assert!(
        r.to_text()
            .contains("REFUSED (blocking steps: golden, performance)")
    );
}

#[test]
fn runs_with_the_same_seed_repeat_exactly() {
    let spec = example_gate();
    let a = run(&spec, "model-v1", None).unwrap();
    let b = run(&spec, "model-v1", None).unwrap();
    assert_eq!(a.seed, b.seed);
    assert_eq!(a.total_fuel_used, b.total_fuel_used);
    for (x, y) in a.steps.iter().zip(&b.steps) {
        assert_eq!(x.status, y.status);
        assert_eq!(x.metrics, y.metrics, "{}", x.name);
        assert_eq!(x.fuel_used, y.fuel_used, "{}", x.name);
    }
}

#[test]
fn a_step_without_a_verdict_blocks_the_gate() {
    let mut spec = example_gate();
    spec.steps.truncate(1);
    let text = format!(
        r#"
        name = "x"
        [[steps]]
        name = "spin"
        plugin = "{}"
        dataset = "data/eval.csv"
        label = "target"
        limits = {{ fuel = 50000000 }}
        [steps.config]
        mode = "loop"
        "#,
        plugin("hostile_validator").display()
    );
    let extra = GateSpec::parse(&text, &example()).unwrap();
    spec.steps.push(extra.steps[0].clone());
    let r = run(&spec, "model-v1", None).unwrap();
    assert!(!r.passed);
    assert_eq!(r.decision.blocking_steps, ["spin"]);
    let spin = r.steps.iter().find(|s| s.name == "spin").unwrap();
    assert_eq!(spin.status, StepStatus::Error);
    assert_eq!(
        spin.error.as_ref().unwrap().kind,
        airlock_core::FailureKind::FuelExhausted
    );
    // The same step as advisory still blocks: "could not check" never
    // passes, advisory or not.
    spec.policy.advisory.push("spin".into());
    let r = run(&spec, "model-v1", None).unwrap();
    assert!(!r.passed, "{}", r.to_text());
    assert_eq!(r.decision.blocking_steps, ["spin"]);
    assert!(r.decision.advisory_failures.is_empty());
}

#[test]
fn broken_gates_are_refused_before_any_verdict() {
    // A validator file that does not exist.
    let mut spec = example_gate();
    spec.steps[1].plugin = "/nonexistent/golden.wasm".into();
    let e = run(&spec, "model-v1", None).unwrap_err();
    assert!(e.to_string().contains("step `golden`"), "{e}");
    assert!(e.to_string().contains("/nonexistent/golden.wasm"), "{e}");

    // A model where a validator belongs.
    let mut spec = example_gate();
    spec.steps[0].plugin = plugin("airlock_model_linear").display().to_string();
    let e = run(&spec, "model-v1", None).unwrap_err();
    assert!(e.to_string().contains("expected a validator plugin"), "{e}");

    // A dataset missing a column the model needs.
    let dir = tempfile::tempdir().unwrap();
    let eval = std::fs::read_to_string(example().join("data/eval.csv")).unwrap();
    let cut: String = eval
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_string() + "\n")
        .collect();
    let path = dir.path().join("cut.csv");
    std::fs::write(&path, cut).unwrap();
    let mut spec = example_gate();
    spec.steps[2].dataset = path;
    let e = run(&spec, "model-v1", None).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing column(s) the model needs: mean_radius"),
        "{e}"
    );

    // A label column that is not there.
    let mut spec = example_gate();
    spec.steps[2].label = Some("diagnosis".into());
    let e = run(&spec, "model-v1", None).unwrap_err();
    assert!(e.to_string().contains("no label column `diagnosis`"), "{e}");
}

/// The dataset caps belong to the run (not to the sandbox), and every
/// dataset the gate reads is read under them.
#[test]
fn a_gate_run_reads_its_datasets_under_its_own_data_caps() {
    let caps = DataCaps {
        max_rows: 3,
        ..DataCaps::default()
    };
    let e = run_with_caps(&example_gate(), "model-v1", None, caps).unwrap_err();
    match &e {
        GateError::Data {
            step,
            source:
                DataError::CapExceeded {
                    path,
                    key,
                    limit,
                    found,
                },
        } => {
            assert_eq!(step, "schema");
            assert_eq!(path, &example().join("data/eval.csv"));
            assert_eq!((*key, *limit), ("max_rows", 3));
            assert_eq!(found, "more than 3 rows (line 5 is row 4)");
        }
        other => panic!("expected the max_rows cap of the run, got {other}"),
    }
}
