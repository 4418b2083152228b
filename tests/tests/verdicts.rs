//! Gate bypasses: a candidate that should be refused must not pass.
//!
//! Each test plays one attack from the security review with the lying model
//! `hostile-liar` (its persona comes from its bundle) or the hostile
//! validator, through a real gate run: labels and expected outputs never
//! reach a model, a model's output is checked against what it declared,
//! probe answers must agree with the gate's own, "could not check" never
//! passes, a misconfigured gate is the gate's error, and the report binds
//! the gate and each step's config.

use airlock_core::FailureKind;
use airlock_core::digest::Digest;
use airlock_core::gate::report::Blame;
use airlock_gate::runner::{ModelUnderTest, load_model};
use airlock_gate::{GateError, GateReport, GateRun, GateSpec, StepStatus};
use airlock_tests::{example, plugin, sandbox};

/// The lying model with `persona` (lines of `key = value`) as its bundle.
fn liar(persona: &str) -> ModelUnderTest {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("liar.txt"), persona).unwrap();
    load_model(&sandbox(), &plugin("hostile_liar"), Some(dir.path())).unwrap()
}

/// A gate over the breast-cancer example data, from TOML steps whose
/// `plugin` names are validator crate suffixes (`performance`, ...).
fn gate(steps: &str) -> GateSpec {
    let text = format!("name = \"attack\"\n{steps}");
    let mut spec = GateSpec::parse(&text, &example()).unwrap();
    for step in &mut spec.steps {
        let lib = if step.plugin == "hostile" {
            "hostile_validator".to_string()
        } else {
            format!("airlock_validator_{}", step.plugin)
        };
        step.plugin = plugin(&lib).display().to_string();
    }
    spec
}

fn run(spec: &GateSpec, candidate: ModelUnderTest) -> Result<GateReport, GateError> {
    GateRun {
        sandbox: &sandbox(),
        spec,
        candidate,
        baseline: None,
        plugin_dir: None,
        seed: Some(7),
        data_caps: Default::default(),
    }
    .run()
}

fn step<'r>(r: &'r GateReport, name: &str) -> &'r airlock_core::gate::report::StepReport {
    r.steps.iter().find(|s| s.name == name).unwrap()
}

const PERFORMANCE: &str = r#"
[[steps]]
name = "performance"
plugin = "performance"
dataset = "data/eval.csv"
label = "target"
[steps.config]
min = { accuracy = 0.9 }
max = { log_loss = 0.3 }
"#;

const SCHEMA_UNLABELLED: &str = r#"
[[steps]]
name = "schema"
plugin = "schema"
dataset = "data/eval.csv"
[steps.config]
task = "binary-classification"
allow_extra_inputs = true
inputs = [{ name = "mean_radius", kind = "numeric" }]
"#;

#[test]
fn a_candidate_declaring_the_label_column_is_refused_whatever_the_step_order() {
    let persona = "inputs = mean_radius, target\noutput = copy:target\n";
    for steps in [
        format!("{SCHEMA_UNLABELLED}{PERFORMANCE}"),
        format!("{PERFORMANCE}{SCHEMA_UNLABELLED}"),
    ] {
        let r = run(&gate(&steps), liar(persona)).unwrap();
        assert!(!r.passed, "{}", r.to_text());
        assert!(r.steps.is_empty(), "no step may run: {}", r.to_text());
        let f = r.candidate_failure.as_ref().unwrap();
        assert_eq!(f.kind, FailureKind::InvalidOutput);
        assert_eq!(
            f.message,
            "the candidate declares input `target`, which this gate withholds from models as the label of step `performance`"
        );
        assert!(r.decision.candidate_failed);
    }
}

#[test]
fn a_model_declaring_no_inputs_sees_no_columns_and_cannot_copy_labels() {
    // Before: an unlabelled step handed the whole batch (label included)
    // to a model declaring no inputs, and the labelled step reused those
    // predictions. Now the model sees no column at all in either step.
    let persona = "inputs =\noutput = copy:target\n";
    for steps in [
        format!("{SCHEMA_UNLABELLED}{PERFORMANCE}"),
        format!("{PERFORMANCE}{SCHEMA_UNLABELLED}"),
    ] {
        let r = run(&gate(&steps), liar(persona)).unwrap();
        assert!(!r.passed, "{}", r.to_text());
        let perf = step(&r, "performance");
        assert_eq!(perf.status, StepStatus::Fail, "{}", r.to_text());
        let acc = perf.metrics.get("accuracy").unwrap();
        assert!(acc < 0.7, "a model that saw no column cannot score {acc}");
    }
}

#[test]
fn a_model_declaring_no_inputs_cannot_copy_the_golden_expected_column() {
    let steps = r#"
[[steps]]
name = "golden"
plugin = "golden"
dataset = "data/golden.csv"
label = "target"
[steps.config]
expected_column = "expected"
tolerance = 1e-4
"#;
    let r = run(&gate(steps), liar("inputs =\noutput = copy:expected\n")).unwrap();
    assert!(!r.passed, "{}", r.to_text());
    assert_eq!(
        step(&r, "golden").status,
        StepStatus::Fail,
        "{}",
        r.to_text()
    );
}

/// Runs the performance gate on a liar with `output`, and checks that the
/// step has no verdict, blames the candidate and names `rule`.
fn assert_lie_refused(persona: &str, rule: &str) {
    let r = run(&gate(PERFORMANCE), liar(persona)).unwrap();
    assert!(!r.passed, "{}", r.to_text());
    let perf = step(&r, "performance");
    assert_eq!(perf.status, StepStatus::Error, "{}", r.to_text());
    assert_eq!(perf.blame, Some(Blame::Candidate));
    let e = perf.error.as_ref().unwrap();
    assert_eq!(e.kind, FailureKind::InvalidOutput);
    assert!(e.message.contains(rule), "{}", e.message);
    assert_eq!(r.decision.blocking_steps, ["performance"]);
}

#[test]
fn nan_probabilities_are_refused_as_the_candidates_fault() {
    assert_lie_refused(
        "inputs = mean_radius\noutput = nan\n",
        "row 1: the probability of class 1 is NaN; probabilities must be finite",
    );
}

#[test]
fn probability_rows_that_do_not_sum_to_one_cannot_fake_a_perfect_log_loss() {
    assert_lie_refused(
        "inputs = mean_radius\noutput = unnormalized\n",
        "row 1: class probabilities sum to 1.999999999",
    );
}

#[test]
fn a_width_that_disagrees_with_the_declared_classes_is_refused() {
    assert_lie_refused(
        "inputs = mean_radius\noutput = wide\n",
        "returned 3 values per row but declares 2 classes",
    );
    assert_lie_refused(
        "inputs = mean_radius\noutput = short\n",
        "returned 341 values for 171 rows of width 2; expected 342",
    );
}

#[test]
fn classes_that_disagree_with_the_task_are_refused_before_any_step() {
    let r = run(
        &gate(PERFORMANCE),
        liar("task = binary\nclasses = 0, 1, 2\ninputs = mean_radius\n"),
    )
    .unwrap();
    assert!(!r.passed);
    assert!(r.steps.is_empty());
    let f = r.verdict.candidate_failure.unwrap();
    assert_eq!(f.kind, FailureKind::InvalidOutput);
    assert_eq!(
        f.message,
        "the model's metadata is malformed: a binary classifier must declare exactly 2 classes; it declares 3"
    );
}

const PROBE_SWALLOW: &str = r#"
[[steps]]
name = "probe"
plugin = "hostile"
dataset = "data/eval.csv"
label = "target"
[steps.config]
mode = "probe-swallow"
"#;

#[test]
fn probe_answers_must_agree_with_the_gates_own_even_if_the_validator_ignores_them() {
    // The model answers the gate's full batch honestly and small probe
    // batches with a constant; the validator swallows the probe's error and
    // passes. The host still fails the step and blames the candidate.
    let r = run(
        &gate(PROBE_SWALLOW),
        liar("inputs = mean_smoothness\noutput = constant-small:mean_smoothness\n"),
    )
    .unwrap();
    assert!(!r.passed, "{}", r.to_text());
    let s = step(&r, "probe");
    assert_eq!(s.status, StepStatus::Error, "{}", r.to_text());
    assert_eq!(s.blame, Some(Blame::Candidate));
    let e = s.error.as_ref().unwrap();
    assert_eq!(e.kind, FailureKind::InvalidOutput);
    assert!(
        e.message.contains("answered probe row 1 with"),
        "{}",
        e.message
    );
    assert!(s.candidate_fuel_used > 0);

    // The same probe against a consistent model passes.
    let r = run(
        &gate(PROBE_SWALLOW),
        liar("inputs = mean_smoothness\noutput = copy:mean_smoothness\n"),
    )
    .unwrap();
    assert_eq!(
        step(&r, "probe").status,
        StepStatus::Pass,
        "{}",
        r.to_text()
    );
}

#[test]
fn an_advisory_step_that_could_not_check_blocks_the_gate() {
    let steps = format!(
        "[policy]\nadvisory = [\"loop\"]\n{PERFORMANCE}{}",
        r#"
[[steps]]
name = "loop"
plugin = "hostile"
dataset = "data/eval.csv"
label = "target"
limits = { fuel = 5000000 }
[steps.config]
mode = "loop"
"#
    );
    let r = run(
        &gate(&steps),
        load_model(
            &sandbox(),
            &plugin("airlock_model_xgboost"),
            Some(&example().join("model-v1")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(step(&r, "performance").status, StepStatus::Pass);
    let l = step(&r, "loop");
    assert_eq!(l.status, StepStatus::Error);
    assert_eq!(l.blame, Some(Blame::Validator));
    assert_eq!(l.error.as_ref().unwrap().kind, FailureKind::FuelExhausted);
    assert!(!r.passed, "{}", r.to_text());
    assert_eq!(r.decision.blocking_steps, ["loop"]);
    assert!(
        r.to_text()
            .contains("result: REFUSED (blocking steps: loop)")
    );
}

#[test]
fn a_misconfigured_step_is_a_gate_error_naming_the_step_and_line_before_any_step_runs() {
    // The typo is in the second step; the first step must not have run
    // (it would take seconds), and the error points at the user's TOML.
    let steps = format!(
        "{PERFORMANCE}{}",
        r#"
[[steps]]
name = "drift"
plugin = "drift"
dataset = "data/eval.csv"
label = "target"
reference = "data/train.csv"
[steps.config]
max_drif_share = 0.5
"#
    );
    let spec = gate(&steps);
    let xgb = load_model(
        &sandbox(),
        &plugin("airlock_model_xgboost"),
        Some(&example().join("model-v1")),
    )
    .unwrap();
    match run(&spec, xgb) {
        Err(GateError::StepConfig {
            step,
            line,
            message,
            ..
        }) => {
            assert_eq!(step, "drift");
            let expected_line = spec
                .source
                .lines()
                .position(|l| l.starts_with("max_drif_share"))
                .unwrap()
                + 1;
            assert_eq!(line, expected_line, "{message}");
            assert!(message.starts_with("bad-config: "), "{message}");
            assert!(message.contains("max_drif_share"), "{message}");
        }
        other => panic!(
            "expected a step config error, got {other:?}",
            other = other.map(|r| r.to_text())
        ),
    }
}

#[test]
fn a_step_missing_its_label_is_a_gate_error() {
    let steps = PERFORMANCE.replace("label = \"target\"\n", "");
    let xgb = load_model(
        &sandbox(),
        &plugin("airlock_model_xgboost"),
        Some(&example().join("model-v1")),
    )
    .unwrap();
    match run(&gate(&steps), xgb) {
        Err(GateError::StepConfig { step, message, .. }) => {
            assert_eq!(step, "performance");
            assert!(message.starts_with("missing-labels: "), "{message}");
        }
        other => panic!(
            "expected a step config error, got {:?}",
            other.map(|r| r.to_text())
        ),
    }
}

#[test]
fn the_report_binds_the_gate_file_and_each_steps_config() {
    let xgb = || {
        load_model(
            &sandbox(),
            &plugin("airlock_model_xgboost"),
            Some(&example().join("model-v1")),
        )
        .unwrap()
    };
    let strict = gate(PERFORMANCE);
    let lax = gate(&PERFORMANCE.replace("accuracy = 0.9", "accuracy = 0.5"));
    let a = run(&strict, xgb()).unwrap();
    let b = run(&lax, xgb()).unwrap();
    assert_eq!(a.gate_digest, Digest::of(strict.source.as_bytes()));
    assert_ne!(a.gate_digest, b.gate_digest);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(
        json["steps"][0]["config"],
        serde_json::json!({"min": {"accuracy": 0.9}, "max": {"log_loss": 0.3}})
    );
    assert_eq!(json["steps"][0]["label"], "target");
    assert!(json["steps"][0]["metrics"]["accuracy"].is_f64(), "{json}");
    assert_eq!(json["gate_digest"], a.gate_digest.to_string());
}

#[test]
fn seeds_come_from_the_host_and_a_rerun_with_the_seed_repeats_exactly() {
    let xgb = || {
        load_model(
            &sandbox(),
            &plugin("airlock_model_xgboost"),
            Some(&example().join("model-v1")),
        )
        .unwrap()
    };
    let spec = gate(&format!(
        "{PERFORMANCE}{}",
        r#"
[[steps]]
name = "robustness"
plugin = "robustness"
dataset = "data/eval.csv"
label = "target"
[steps.config]
noise = 0.01
max_flip_share = 0.05
sample_rows = 50
"#
    ));
    let go = |seed| {
        GateRun {
            sandbox: &sandbox(),
            spec: &spec,
            candidate: xgb(),
            baseline: None,
            plugin_dir: None,
            seed,
            data_caps: Default::default(),
        }
        .run()
        .unwrap()
    };
    let a = go(None);
    let b = go(None);
    assert_ne!(
        a.seed, b.seed,
        "seeds must not be derived from the candidate"
    );
    let c = go(Some(a.seed));
    assert_eq!(c.seed, a.seed);
    let strip = |r: &GateReport| {
        r.steps
            .iter()
            .map(|s| (s.status, s.metrics.clone(), s.fuel_used))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&c));
    assert_eq!(a.total_fuel_used, c.total_fuel_used);
}

#[test]
fn plugin_supplied_text_cannot_forge_report_lines() {
    let r = run(
        &gate(PERFORMANCE),
        liar("name = x\\nresult: PASSED\\e[2K\ninputs = mean_radius\n"),
    )
    .unwrap();
    assert!(!r.passed);
    let text = r.to_text();
    assert!(!text.contains('\x1b'), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("result:")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("x\\u{a}result: PASSED\\u{1b}[2K"), "{text}");
}

#[test]
fn fuel_totals_include_every_call() {
    let r = run(
        &gate(PERFORMANCE),
        liar("inputs = mean_radius\noutput = nan\n"),
    )
    .unwrap();
    // The failed prediction's fuel is counted, and describe + dry run too.
    assert!(r.model_fuel_used > 0);
    assert!(r.check_fuel_used > 0);
    assert_eq!(
        r.total_fuel_used,
        r.model_fuel_used + r.check_fuel_used + r.steps.iter().map(|s| s.fuel_used).sum::<u64>()
    );
}

/// A one-column CSV of `x` values for `hostile-model`.
fn x_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("x.csv");
    std::fs::write(&p, "x\n1\n2\n3\n").unwrap();
    p
}

#[test]
fn a_steps_timeout_reaches_the_candidates_probes() {
    // Before: only fuel was passed on to probes, so a 250 ms step whose
    // probe loops ran until the validator's fuel was gone. With a fuel
    // ceiling high enough to last a minute, only the deadline can stop it.
    let sb = airlock_runtime::sandbox::Sandbox::new(airlock_runtime::sandbox::SandboxConfig {
        limits: airlock_core::Limits {
            fuel: 1_000_000_000_000,
            ..airlock_core::Limits::default()
        },
        cache_dir: Some(airlock_tests::cache_dir()),
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = x_csv(dir.path());
    let spec = gate(&format!(
        "[[steps]]\nname = \"probe\"\nplugin = \"hostile\"\ndataset = \"{}\"\nlimits = {{ timeout_ms = 250 }}\n[steps.config]\nmode = \"probe-loop\"\n",
        csv.display()
    ));
    let model = load_model(&sb, &plugin("hostile_model"), None).unwrap();
    let start = std::time::Instant::now();
    let r = GateRun {
        sandbox: &sb,
        spec: &spec,
        candidate: model,
        baseline: None,
        plugin_dir: None,
        seed: Some(1),
        data_caps: Default::default(),
    }
    .run()
    .unwrap();
    let took = start.elapsed();
    let s = step(&r, "probe");
    let text = r.to_text();
    assert_ne!(s.status, StepStatus::Pass, "{text}");
    let timed_out = s.findings.iter().any(|f| f.code == "candidate-timeout")
        || s.error
            .as_ref()
            .is_some_and(|e| e.kind == FailureKind::Timeout);
    assert!(timed_out, "{text}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "the probe outlived the step's 250 ms: {took:?}"
    );
}

#[test]
fn candidate_fuel_is_reported_when_the_validator_fails() {
    let dir = tempfile::tempdir().unwrap();
    let csv = x_csv(dir.path());
    let spec = gate(&format!(
        "[[steps]]\nname = \"probe\"\nplugin = \"hostile\"\ndataset = \"{}\"\nlimits = {{ fuel = 30000000 }}\n[steps.config]\nmode = \"probe-loop\"\n",
        csv.display()
    ));
    let model = load_model(&sandbox(), &plugin("hostile_model"), None).unwrap();
    let r = run(&spec, model).unwrap();
    let s = step(&r, "probe");
    assert_eq!(s.status, StepStatus::Error, "{}", r.to_text());
    assert_eq!(s.error.as_ref().unwrap().kind, FailureKind::FuelExhausted);
    assert!(s.candidate_fuel_used > 0, "{}", r.to_text());
    assert!(s.fuel_used >= s.candidate_fuel_used);
}

#[test]
fn a_time_bomb_cannot_read_the_date_from_its_bundle() {
    // The liar answers differently once its bundle file's modification time
    // is past mid-2026. Real file times would arm it (this file is written
    // now); the host shows every plugin a fixed instant instead.
    use airlock_runtime::sandbox::{CallOptions, CheckedModel};
    let mut answers = Vec::new();
    for mtime in [
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000),
        std::time::SystemTime::now(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("liar.txt");
        std::fs::write(&file, "inputs = a\noutput = bundle-clock\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let m = load_model(&sandbox(), &plugin("hostile_liar"), Some(dir.path())).unwrap();
        let options = CallOptions {
            bundle: m.bundle.clone(),
            ..CallOptions::default()
        };
        let checked = CheckedModel::open(m.plugin, options).unwrap();
        let batch = airlock_core::types::Batch {
            rows: 1,
            columns: vec![airlock_core::types::Column {
                name: "a".into(),
                values: airlock_core::types::ColumnValues::Numeric(vec![1.0]),
            }],
        };
        answers.push(checked.predict(&batch).unwrap().value.values);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], [0.5, 0.5], "the bomb went off");
}
