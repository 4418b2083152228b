//! The gate decision: pure, so the rule is tested on its own.
//!
//! A gate passes exactly when every required step produced a passing
//! verdict. A required step that failed, or could not produce a verdict at
//! all (its validator trapped, ran out of fuel, the candidate could not
//! score the step's data), blocks the gate: airlock never treats "could not
//! check" as "checked". Advisory steps are reported but never block.

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
    /// Required steps that did not pass, in gate order.
    pub blocking_steps: Vec<String>,
    /// Advisory steps that did not pass.
    pub advisory_failures: Vec<String>,
}

/// Decides from `(step name, advisory, status)` in gate order.
pub fn decide<'a>(steps: impl IntoIterator<Item = (&'a str, bool, StepStatus)>) -> Decision {
    let mut blocking = Vec::new();
    let mut advisory = Vec::new();
    let mut any = false;
    for (name, is_advisory, status) in steps {
        any = true;
        if status == StepStatus::Pass {
            continue;
        }
        if is_advisory {
            advisory.push(name.to_string());
        } else {
            blocking.push(name.to_string());
        }
    }
    Decision {
        passed: any && blocking.is_empty(),
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
        let d = decide([("a", false, Pass), ("b", false, Fail), ("c", false, Error)]);
        assert!(!d.passed);
        assert_eq!(d.blocking_steps, ["b", "c"]);
    }

    #[test]
    fn advisory_failures_do_not_block() {
        let d = decide([("a", false, Pass), ("drift", true, Fail)]);
        assert!(d.passed);
        assert_eq!(d.advisory_failures, ["drift"]);
    }

    #[test]
    fn an_empty_gate_never_passes() {
        assert!(!decide([]).passed);
    }
}
