//! Failed probes: when a validator probes the candidate and the candidate
//! traps, runs out of fuel or memory, or refuses, the host records the
//! failure in the step's report (kind, rows, message) whatever the
//! validator does with it, and the step blocks the gate unless its
//! `allow_probe_failures` names that kind.
//!
//! The candidate is `hostile-liar` with a `*-small` persona: it answers the
//! gate's own 100-row batches and fails on the small batches a probe
//! sends. The validator is `hostile-validator` in `probe-swallow` mode: it
//! probes 20 rows, ignores whatever comes back and passes.

use airlock_core::FailureKind;
use airlock_core::gate::report::{Blame, StepReport};
use airlock_gate::runner::{ModelUnderTest, load_model};
use airlock_gate::{GateReport, GateRun, GateSpec, StepStatus};
use airlock_tests::{example, plugin, sandbox};

/// The lying model with `persona` as its bundle.
fn liar(persona: &str) -> ModelUnderTest {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("liar.txt"), persona).unwrap();
    load_model(&sandbox(), &plugin("hostile_liar"), Some(dir.path())).unwrap()
}

/// A one-step gate: the swallowing validator, with `extra` lines in its
/// step (`allow_probe_failures`, `limits`) and `policy` before it.
fn gate(policy: &str, extra: &str) -> GateSpec {
    let text = format!(
        r#"name = "probes"
{policy}
[[steps]]
name = "probe"
plugin = "{}"
dataset = "data/eval.csv"
label = "target"
{extra}
[steps.config]
mode = "probe-swallow"
"#,
        plugin("hostile_validator").display()
    );
    GateSpec::parse(&text, &example()).unwrap()
}

fn run(spec: &GateSpec, candidate: ModelUnderTest) -> GateReport {
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
    .unwrap()
}

fn the_step(r: &GateReport) -> &StepReport {
    &r.steps[0]
}

const PERSONA: &str = "inputs = mean_radius\noutput = ";

#[test]
fn a_probe_failure_the_validator_swallows_is_recorded_and_blocks_the_step() {
    for (output, kind) in [
        ("trap-small", FailureKind::Trap),
        ("spin-small", FailureKind::FuelExhausted),
        ("grow-small", FailureKind::MemoryLimit),
        ("refuse-small", FailureKind::GuestError),
    ] {
        // Advisory or not: a step whose probe failed could not check.
        let r = run(
            &gate(
                "[policy]\nadvisory = [\"probe\"]",
                "limits = { fuel = 400000000 }",
            ),
            liar(&format!("{PERSONA}{output}\n")),
        );
        let text = r.to_text();
        assert!(!r.passed, "{output}: {text}");
        assert_eq!(r.decision.blocking_steps, ["probe"], "{output}: {text}");
        let s = the_step(&r);
        assert_eq!(s.status, StepStatus::Error, "{output}: {text}");
        assert_eq!(s.blame, Some(Blame::Candidate), "{output}: {text}");
        assert_eq!(s.probe_failures.len(), 1, "{output}: {text}");
        let p = &s.probe_failures[0];
        assert_eq!((p.kind, p.rows), (kind, 20), "{output}: {text}");
        assert!(!p.message.is_empty());
        let e = s.error.as_ref().unwrap();
        assert_eq!(e.kind, kind);
        assert!(
            e.message.contains("a probe of 20 rows failed")
                && e.message.contains(&format!(
                    "does not allow probe failures of kind `{kind}` (allow_probe_failures)"
                )),
            "{}",
            e.message
        );
        assert!(
            text.contains(&format!("failed probe (20 rows) {kind}: ")),
            "{text}"
        );
        // The record is in the verdict, so a signature covers it.
        let v = serde_json::to_value(&r.verdict).unwrap();
        assert_eq!(v["steps"][0]["probe_failures"][0]["kind"], kind.as_str());
    }
    // The same validator against a candidate whose probes succeed passes,
    // with nothing recorded.
    let r = run(&gate("", ""), liar(&format!("{PERSONA}half\n")));
    assert!(r.passed, "{}", r.to_text());
    assert!(the_step(&r).probe_failures.is_empty());
    let v = serde_json::to_value(&r.verdict).unwrap();
    assert_eq!(v["steps"][0].get("probe_failures"), None);
}

#[test]
fn a_step_may_allow_named_probe_failure_kinds_and_only_those() {
    let allow = "allow_probe_failures = [\"trap\", \"guest_error\"]\nlimits = { fuel = 400000000 }";
    for output in ["trap-small", "refuse-small"] {
        let r = run(&gate("", allow), liar(&format!("{PERSONA}{output}\n")));
        let text = r.to_text();
        assert!(r.passed, "{output}: {text}");
        let s = the_step(&r);
        assert_eq!(s.status, StepStatus::Pass);
        // Allowed, but still on the record.
        assert_eq!(s.probe_failures.len(), 1, "{text}");
        assert_eq!(
            s.allowed_probe_failures,
            [FailureKind::Trap, FailureKind::GuestError]
        );
        assert!(text.contains("(allowed): "), "{text}");
    }
    // A kind the step does not name still blocks.
    let r = run(&gate("", allow), liar(&format!("{PERSONA}spin-small\n")));
    assert!(!r.passed, "{}", r.to_text());
    let s = the_step(&r);
    assert_eq!(s.status, StepStatus::Error);
    assert_eq!(s.error.as_ref().unwrap().kind, FailureKind::FuelExhausted);
}

#[test]
fn an_unknown_or_unallowable_probe_failure_kind_is_a_gate_error_naming_the_step_and_key() {
    for (kind, why) in [
        ("fuel", "`fuel` is not a probe failure kind"),
        ("invalid_output", "`invalid_output` can never be allowed"),
        ("busy", "`busy` can never be allowed"),
    ] {
        let text = format!(
            "name = \"g\"\n[[steps]]\nname = \"robust\"\nplugin = \"robustness\"\ndataset = \"data/eval.csv\"\nallow_probe_failures = [\"{kind}\"]\n"
        );
        let e = GateSpec::parse(&text, &example()).unwrap_err().to_string();
        assert!(
            e.starts_with("step `robust`: allow_probe_failures: ") && e.contains(why),
            "{e}"
        );
    }
}
