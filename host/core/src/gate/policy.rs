//! The gate decision: pure, so the rule is tested on its own.
//!
//! A gate passes exactly when the candidate could be judged and every
//! required step produced a passing verdict. A step that could not produce
//! a verdict at all (its validator trapped, ran out of fuel, the candidate
//! could not score the step's data or broke its contract) blocks the gate
//! *whether or not it is advisory*: airlock never treats "could not check"
//! as "checked". Advisory steps whose verdict failed are reported but do
//! not block.
//!
//! A failed probe is "could not check" too: a validator that probed the
//! candidate and got a trap, a timeout or no memory may have ignored the
//! error and judged on what was left. So a step with a failed probe of a
//! kind its `allow_probe_failures` does not name is an error of the
//! candidate's ([`first_unallowed_probe_failure`]), blocking whether or not
//! the step is advisory. Only the kinds in [`ALLOWABLE_PROBE_FAILURES`] may
//! be allowed.

use crate::error::FailureKind;
use serde::Serialize;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The validator's verdict passed.
    Pass,
    /// The validator's verdict failed.
    Fail,
    /// No verdict: a plugin failed.
    Error,
}

/// The gate's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the candidate may proceed.
    pub passed: bool,
    /// Whether the candidate itself could not be judged (no step ran).
    pub candidate_failed: bool,
    /// Steps that block the gate, in gate order: required steps that did
    /// not pass, and any step without a verdict.
    pub blocking_steps: Vec<String>,
    /// Advisory steps whose verdict failed.
    pub advisory_failures: Vec<String>,
}

/// How many failed probes one step's report lists (each kind at least once).
pub const MAX_RECORDED_PROBE_FAILURES: usize = 32;

/// A probe of the candidate, made by a validator, that returned no
/// predictions because the candidate failed: recorded by the host on the
/// probe's path, so a validator can neither hide nor invent one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeFailure {
    /// How the candidate failed (`trap`, `fuel_exhausted`, `timeout`,
    /// `memory_limit`, `guest_error` for its own refusal, `invalid_output`
    /// for a broken contract or an answer that contradicts the gate's, ...).
    pub kind: FailureKind,
    /// Rows in the probe.
    pub rows: u32,
    /// What happened, in the host's words (untrusted text where it quotes
    /// the candidate; at most [`MAX_PROBE_MESSAGE_BYTES`]).
    pub message: String,
}

/// The longest message a recorded probe failure keeps, in bytes.
pub const MAX_PROBE_MESSAGE_BYTES: usize = 512;

impl ProbeFailure {
    /// A failure of a probe of `rows` rows, its message cut to
    /// [`MAX_PROBE_MESSAGE_BYTES`] on a character boundary.
    pub fn new(kind: FailureKind, rows: u32, message: &str) -> ProbeFailure {
        let mut end = message.len().min(MAX_PROBE_MESSAGE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        ProbeFailure {
            kind,
            rows,
            message: message[..end].to_string(),
        }
    }
}

/// The probe failure kinds a step's `allow_probe_failures` may name: what a
/// candidate can run into when probed with inputs a gate author chose (an
/// edge case that traps, refuses, or takes too long). Never
/// `invalid_output` (a broken contract, or an answer that contradicts what
/// the candidate told the gate, always fails the step) and never `busy`
/// (the host's capacity: the run is retried, not judged).
pub const ALLOWABLE_PROBE_FAILURES: [FailureKind; 8] = [
    FailureKind::FuelExhausted,
    FailureKind::Timeout,
    FailureKind::MemoryLimit,
    FailureKind::StackOverflow,
    FailureKind::Trap,
    FailureKind::GuestError,
    FailureKind::InputTooLarge,
    FailureKind::OutputTooLarge,
];

/// The kind an `allow_probe_failures` entry names, or why it names none:
/// an unknown name, or a kind that can never be allowed.
pub fn allowable_probe_failure(name: &str) -> Result<FailureKind, String> {
    let names = || {
        ALLOWABLE_PROBE_FAILURES
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = serde_json::from_value::<FailureKind>(serde_json::Value::String(name.into()))
        .map_err(|_| {
            format!(
                "`{}` is not a probe failure kind (one of: {})",
                name.escape_debug(),
                names()
            )
        })?;
    if !ALLOWABLE_PROBE_FAILURES.contains(&kind) {
        return Err(format!(
            "`{kind}` can never be allowed (allowable kinds: {})",
            names()
        ));
    }
    Ok(kind)
}

/// The first failed probe whose kind `allowed` does not name: when there is
/// one, the step has no verdict (an error of the candidate) and blocks.
pub fn first_unallowed_probe_failure<'a>(
    failures: &'a [ProbeFailure],
    allowed: &[FailureKind],
) -> Option<&'a ProbeFailure> {
    failures.iter().find(|f| !allowed.contains(&f.kind))
}

/// Decides from whether the candidate could be judged and from
/// `(step name, advisory, status)` in gate order.
pub fn decide<'a>(
    candidate_ok: bool,
    steps: impl IntoIterator<Item = (&'a str, bool, StepStatus)>,
) -> Decision {
    let mut blocking = Vec::new();
    let mut advisory = Vec::new();
    let mut any = false;
    for (name, is_advisory, status) in steps {
        any = true;
        match status {
            StepStatus::Pass => {}
            StepStatus::Fail if is_advisory => advisory.push(name.to_string()),
            StepStatus::Fail | StepStatus::Error => blocking.push(name.to_string()),
        }
    }
    Decision {
        passed: candidate_ok && any && blocking.is_empty(),
        candidate_failed: !candidate_ok,
        blocking_steps: blocking,
        advisory_failures: advisory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepStatus::*;

    #[test]
    fn required_failures_and_errors_block() {
        let d = decide(
            true,
            [("a", false, Pass), ("b", false, Fail), ("c", false, Error)],
        );
        assert!(!d.passed);
        assert_eq!(d.blocking_steps, ["b", "c"]);
    }

    #[test]
    fn advisory_failures_do_not_block() {
        let d = decide(true, [("a", false, Pass), ("drift", true, Fail)]);
        assert!(d.passed);
        assert_eq!(d.advisory_failures, ["drift"]);
    }

    #[test]
    fn an_advisory_step_that_could_not_check_blocks() {
        let d = decide(true, [("a", false, Pass), ("drift", true, Error)]);
        assert!(!d.passed);
        assert_eq!(d.blocking_steps, ["drift"]);
        assert!(d.advisory_failures.is_empty());
    }

    #[test]
    fn a_failed_probe_blocks_unless_its_kind_is_allowed() {
        let fuel = ProbeFailure::new(FailureKind::FuelExhausted, 3, "used all fuel");
        let trap = ProbeFailure::new(FailureKind::Trap, 1, "unreachable");
        let both = [fuel.clone(), trap.clone()];
        assert_eq!(first_unallowed_probe_failure(&both, &[]), Some(&fuel));
        assert_eq!(
            first_unallowed_probe_failure(&both, &[FailureKind::FuelExhausted]),
            Some(&trap)
        );
        assert_eq!(
            first_unallowed_probe_failure(&both, &[FailureKind::Trap, FailureKind::FuelExhausted]),
            None
        );
        assert_eq!(first_unallowed_probe_failure(&[], &[]), None);
    }

    #[test]
    fn only_named_allowable_kinds_can_be_allowed() {
        assert_eq!(
            allowable_probe_failure("fuel_exhausted"),
            Ok(FailureKind::FuelExhausted)
        );
        let e = allowable_probe_failure("fuel").unwrap_err();
        assert!(e.contains("`fuel` is not a probe failure kind"), "{e}");
        assert!(e.contains("fuel_exhausted, timeout"), "{e}");
        for never in ["invalid_output", "busy"] {
            let e = allowable_probe_failure(never).unwrap_err();
            assert!(e.contains("can never be allowed"), "{e}");
        }
    }

    #[test]
    fn an_empty_gate_never_passes() {
        assert!(!decide(true, []).passed);
    }

    #[test]
    fn a_candidate_that_cannot_be_judged_never_passes() {
        let d = decide(false, [("a", false, Pass)]);
        assert!(!d.passed);
        assert!(d.candidate_failed);
    }
}
