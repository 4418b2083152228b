//! The gate decision: pure, so the rule is tested on its own.
//!
//! A gate passes exactly when the candidate could be judged and every
//! required step produced a passing verdict. A step that could not produce
//! a verdict at all (its validator trapped, ran out of fuel, the candidate
//! could not score the step's data or broke its contract) blocks the gate
//! *whether or not it is advisory*: airlock never treats "could not check"
//! as "checked". Advisory steps whose verdict failed are reported but do
//! not block.

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
