//! The canary state machine.
//!
//! A [`Rollout`] moves a candidate through the traffic steps of a [`Plan`]
//! (e.g. 5 %, 25 %, 50 %, 100 %), one analysis interval at a time. It owns no
//! clock: the server calls [`Rollout::observe`] once per interval with that
//! interval's [`Measurement`], and carries out the [`Action`]s it returns.
//!
//! Rules (after Argo Rollouts' analysis: failure limit, consecutive-error
//! limit, inconclusive pauses):
//! - `Pass` at step `i` before the last => `SetWeight(steps[i+1])`; `Pass` at
//!   the last step => `Promote` (phase `Promoted`).
//! - `Fail` => `failures += 1`; once `failures > failure_limit` => `Abort`.
//!   Failures count over the whole rollout, not per step, so a flaky
//!   candidate cannot reset its record by advancing.
//! - `Error` => `consecutive_errors += 1` (any other measurement resets it);
//!   once `consecutive_errors > consecutive_error_limit` => `Abort`.
//! - `Inconclusive` => `Pause` (weight stays); a person resumes or aborts.
//! - In a paused or terminal phase `observe` does nothing.
//!
//! `Abort` means "send all traffic back to stable": [`Rollout::weight`] is 0
//! afterwards, and the action's reason names the rule that fired and the
//! measurement reasons behind it.

use serde::{Deserialize, Serialize};

use crate::analysis::{Measurement, ThresholdError, Thresholds};

/// How a candidate is rolled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Canary traffic percentages, strictly increasing, ending at 100.
    pub steps: Vec<u8>,
    /// Failed intervals tolerated; one more aborts.
    pub failure_limit: u32,
    /// Measurement errors in a row tolerated; one more aborts.
    pub consecutive_error_limit: u32,
    /// What each interval is measured against.
    pub thresholds: Thresholds,
}

/// Why a plan is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// No steps at all.
    #[error("the plan has no steps")]
    NoSteps,
    /// A step of 0 % would measure nothing.
    #[error("step {index} is 0%; every step must send the canary some traffic")]
    ZeroStep {
        /// Position of the step (from 0).
        index: usize,
    },
    /// A step above 100 %.
    #[error("step {index} is {percent}%, over 100%")]
    Over100 {
        /// Position of the step (from 0).
        index: usize,
        /// Its value.
        percent: u8,
    },
    /// Steps must rise strictly.
    #[error("step {index} is {percent}%, not above the previous step's {previous}%")]
    NotIncreasing {
        /// Position of the step (from 0).
        index: usize,
        /// Its value.
        percent: u8,
        /// The step before it.
        previous: u8,
    },
    /// The last step must send all traffic to the candidate.
    #[error("the last step is {0}%; it must be 100%")]
    LastNot100(u8),
    /// A threshold is out of range.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    /// A version name is empty, or the candidate is the stable version.
    #[error("{0}")]
    Versions(String),
}

impl Plan {
    /// Checks the steps and thresholds, naming the first problem.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.steps.is_empty() {
            return Err(PlanError::NoSteps);
        }
        for (index, &percent) in self.steps.iter().enumerate() {
            if percent == 0 {
                return Err(PlanError::ZeroStep { index });
            }
            if percent > 100 {
                return Err(PlanError::Over100 { index, percent });
            }
            if index > 0 && percent <= self.steps[index - 1] {
                return Err(PlanError::NotIncreasing {
                    index,
                    percent,
                    previous: self.steps[index - 1],
                });
            }
        }
        let last = self.steps[self.steps.len() - 1];
        if last != 100 {
            return Err(PlanError::LastNot100(last));
        }
        self.thresholds.validate()?;
        Ok(())
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Measuring intervals and stepping up.
    Progressing,
    /// Waiting for a person (after an inconclusive interval).
    Paused {
        /// Why it paused.
        reason: String,
    },
    /// Rolled back; terminal.
    Aborted {
        /// Why it was aborted.
        reason: String,
    },
    /// The candidate is the new stable; terminal.
    Promoted,
}

/// What the server must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send this percentage of traffic to the candidate.
    SetWeight(u8),
    /// Make the candidate the stable version.
    Promote,
    /// Send all traffic back to stable and stop the rollout.
    Abort {
        /// The rule that fired and the measurement reasons.
        reason: String,
    },
    /// Hold the current weight until a person resumes or aborts.
    Pause {
        /// Why.
        reason: String,
    },
}

/// What happened, for the rollout's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An interval was measured while progressing.
    Observed(Measurement),
    /// A person resumed a paused rollout.
    Resumed,
    /// A person aborted the rollout.
    AbortedByPerson {
        /// Their reason.
        reason: String,
    },
    /// A new candidate replaced the old one mid-canary.
    Restarted {
        /// The replaced candidate.
        from: String,
        /// The new candidate.
        to: String,
    },
}

/// One history line: the event, and the step and weight it happened at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The step index when it happened.
    pub step: usize,
    /// The candidate's weight when it happened.
    pub weight: u8,
    /// The candidate at the time.
    pub candidate: String,
    /// What happened.
    pub event: Event,
}

/// Why a person's command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// `resume` outside the paused phase.
    #[error("cannot resume: the rollout is {0}, not paused")]
    NotPaused(String),
    /// A command on a promoted or aborted rollout.
    #[error("the rollout is already {0}; start a new one")]
    Finished(String),
    /// An abort without a reason.
    #[error("an abort needs a reason")]
    EmptyReason,
    /// A restart with an empty name or the stable version.
    #[error("{0}")]
    BadCandidate(String),
}

/// A canary rollout of `candidate` against `stable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    stable: String,
    candidate: String,
    plan: Plan,
    step: usize,
    weight: u8,
    phase: Phase,
    failures: u32,
    consecutive_errors: u32,
    history: Vec<HistoryEntry>,
}

fn phase_name(p: &Phase) -> String {
    match p {
        Phase::Progressing => "progressing".into(),
        Phase::Paused { .. } => "paused".into(),
        Phase::Aborted { .. } => "aborted".into(),
        Phase::Promoted => "promoted".into(),
    }
}

fn check_versions(stable: &str, candidate: &str) -> Result<(), String> {
    if stable.is_empty() {
        return Err("the stable version name is empty".into());
    }
    if candidate.is_empty() {
        return Err("the candidate version name is empty".into());
    }
    if stable == candidate {
        return Err(format!("the candidate {candidate:?} is the stable version"));
    }
    Ok(())
}

impl Rollout {
    /// Validates the plan and starts at its first step: `[SetWeight(steps[0])]`.
    pub fn start(
        stable: &str,
        candidate: &str,
        plan: Plan,
    ) -> Result<(Rollout, Vec<Action>), PlanError> {
        plan.validate()?;
        check_versions(stable, candidate).map_err(PlanError::Versions)?;
        let weight = plan.steps[0];
        let r = Rollout {
            stable: stable.to_string(),
            candidate: candidate.to_string(),
            plan,
            step: 0,
            weight,
            phase: Phase::Progressing,
            failures: 0,
            consecutive_errors: 0,
            history: Vec::new(),
        };
        Ok((r, vec![Action::SetWeight(weight)]))
    }

    fn record(&mut self, event: Event) {
        self.history.push(HistoryEntry {
            step: self.step,
            weight: self.weight,
            candidate: self.candidate.clone(),
            event,
        });
    }

    fn abort_with(&mut self, reason: String) -> Vec<Action> {
        self.weight = 0;
        self.phase = Phase::Aborted {
            reason: reason.clone(),
        };
        vec![Action::Abort { reason }]
    }

    /// Feeds one interval's measurement; see the module docs for the rules.
    /// Returns no actions when paused, aborted or promoted.
    pub fn observe(&mut self, m: &Measurement) -> Vec<Action> {
        if self.phase != Phase::Progressing {
            return Vec::new();
        }
        self.record(Event::Observed(m.clone()));
        if !matches!(m, Measurement::Error { .. }) {
            self.consecutive_errors = 0;
        }
        match m {
            Measurement::Pass => {
                if self.step + 1 < self.plan.steps.len() {
                    self.step += 1;
                    self.weight = self.plan.steps[self.step];
                    vec![Action::SetWeight(self.weight)]
                } else {
                    self.phase = Phase::Promoted;
                    vec![Action::Promote]
                }
            }
            Measurement::Fail { reasons } => {
                self.failures += 1;
                if self.failures > self.plan.failure_limit {
                    let reason = format!(
                        "failure limit exceeded: {} failed intervals, limit {}; last failure at {}%: {}",
                        self.failures,
                        self.plan.failure_limit,
                        self.weight,
                        reasons.join("; ")
                    );
                    self.abort_with(reason)
                } else {
                    Vec::new()
                }
            }
            Measurement::Error { reason } => {
                self.consecutive_errors += 1;
                if self.consecutive_errors > self.plan.consecutive_error_limit {
                    let reason = format!(
                        "consecutive-error limit exceeded: {} measurement errors in a row, limit {}; last: {}",
                        self.consecutive_errors, self.plan.consecutive_error_limit, reason
                    );
                    self.abort_with(reason)
                } else {
                    Vec::new()
                }
            }
            Measurement::Inconclusive { reason } => {
                let reason = format!("inconclusive at {}%: {reason}", self.weight);
                self.phase = Phase::Paused {
                    reason: reason.clone(),
                };
                vec![Action::Pause { reason }]
            }
        }
    }

    /// Resumes a paused rollout at the same step: `[SetWeight(weight)]`.
    pub fn resume(&mut self) -> Result<Vec<Action>, RolloutError> {
        match &self.phase {
            Phase::Paused { .. } => {
                self.phase = Phase::Progressing;
                self.record(Event::Resumed);
                Ok(vec![Action::SetWeight(self.weight)])
            }
            Phase::Progressing => Err(RolloutError::NotPaused(phase_name(&self.phase))),
            _ => Err(RolloutError::Finished(phase_name(&self.phase))),
        }
    }

    /// A person aborts a progressing or paused rollout: `[Abort]`.
    pub fn abort(&mut self, reason: &str) -> Result<Vec<Action>, RolloutError> {
        self.ensure_live()?;
        if reason.trim().is_empty() {
            return Err(RolloutError::EmptyReason);
        }
        self.record(Event::AbortedByPerson {
            reason: reason.to_string(),
        });
        Ok(self.abort_with(format!("aborted by a person: {reason}")))
    }

    /// Replaces the candidate mid-canary: analysis starts over at `steps[0]`
    /// with the failure and error counters reset: `[SetWeight(steps[0])]`.
    pub fn restart(&mut self, candidate: &str) -> Result<Vec<Action>, RolloutError> {
        self.ensure_live()?;
        check_versions(&self.stable, candidate).map_err(RolloutError::BadCandidate)?;
        let from = std::mem::replace(&mut self.candidate, candidate.to_string());
        self.step = 0;
        self.weight = self.plan.steps[0];
        self.failures = 0;
        self.consecutive_errors = 0;
        self.phase = Phase::Progressing;
        self.record(Event::Restarted {
            from,
            to: candidate.to_string(),
        });
        Ok(vec![Action::SetWeight(self.weight)])
    }

    fn ensure_live(&self) -> Result<(), RolloutError> {
        match self.phase {
            Phase::Progressing | Phase::Paused { .. } => Ok(()),
            _ => Err(RolloutError::Finished(phase_name(&self.phase))),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }
    /// The candidate's current traffic percentage (0 once aborted).
    pub fn weight(&self) -> u8 {
        self.weight
    }
    /// The current step index into the plan's steps.
    pub fn step(&self) -> usize {
        self.step
    }
    /// The version being rolled out.
    pub fn candidate(&self) -> &str {
        &self.candidate
    }
    /// The version it replaces.
    pub fn stable(&self) -> &str {
        &self.stable
    }
    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// Failed intervals so far (for this candidate).
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// Measurement errors in a row so far.
    pub fn consecutive_errors(&self) -> u32 {
        self.consecutive_errors
    }
    /// Everything that happened, oldest first.
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            min_requests: 100,
            max_error_rate: 0.05,
            max_p99_ms: None,
            min_accuracy: None,
            max_accuracy_drop: None,
            max_disagreement: None,
            min_labels: 0,
        }
    }

    fn plan(failure_limit: u32, consecutive_error_limit: u32) -> Plan {
        Plan {
            steps: vec![5, 25, 50, 100],
            failure_limit,
            consecutive_error_limit,
            thresholds: thresholds(),
        }
    }

    fn fail(r: &str) -> Measurement {
        Measurement::Fail {
            reasons: vec![r.into()],
        }
    }

    fn err(r: &str) -> Measurement {
        Measurement::Error { reason: r.into() }
    }

    fn inconclusive() -> Measurement {
        Measurement::Inconclusive {
            reason: "no requests in this window".into(),
        }
    }

    #[test]
    fn passes_step_through_the_plan_and_promote() {
        let (mut r, a) = Rollout::start("v1", "v2", plan(0, 0)).unwrap();
        assert_eq!(a, vec![Action::SetWeight(5)]);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::SetWeight(25)]);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::SetWeight(50)]);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::SetWeight(100)]);
        assert_eq!(r.step(), 3);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::Promote]);
        assert_eq!(r.phase(), &Phase::Promoted);
        assert_eq!(r.weight(), 100);
        // Terminal: nothing more happens.
        assert_eq!(r.observe(&fail("x")), vec![]);
        assert_eq!(r.phase(), &Phase::Promoted);
        assert_eq!(r.history().len(), 4);
        assert_eq!(
            r.abort("late").unwrap_err().to_string(),
            "the rollout is already promoted; start a new one"
        );
    }

    #[test]
    fn failure_limit_zero_aborts_on_the_first_failure() {
        let (mut r, _) = Rollout::start("v1", "v2", plan(0, 0)).unwrap();
        let a = r.observe(&fail(
            "error rate 0.120 over limit 0.050 (12 of 100 requests)",
        ));
        let reason = "failure limit exceeded: 1 failed intervals, limit 0; last failure at 5%: error rate 0.120 over limit 0.050 (12 of 100 requests)";
        assert_eq!(
            a,
            vec![Action::Abort {
                reason: reason.into()
            }]
        );
        assert_eq!(
            r.phase(),
            &Phase::Aborted {
                reason: reason.into()
            }
        );
        assert_eq!(r.weight(), 0);
        assert_eq!(r.observe(&Measurement::Pass), vec![]);
    }

    #[test]
    fn failures_within_the_limit_hold_the_weight_and_accumulate_across_steps() {
        let (mut r, _) = Rollout::start("v1", "v2", plan(2, 0)).unwrap();
        assert_eq!(r.observe(&fail("a")), vec![]);
        assert_eq!(r.weight(), 5);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::SetWeight(25)]);
        assert_eq!(r.observe(&fail("b")), vec![]);
        assert_eq!(r.failures(), 2);
        let a = r.observe(&fail("c"));
        assert_eq!(
            a,
            vec![Action::Abort {
                reason:
                    "failure limit exceeded: 3 failed intervals, limit 2; last failure at 25%: c"
                        .into()
            }]
        );
    }

    #[test]
    fn consecutive_errors_over_the_limit_abort() {
        let (mut r, _) = Rollout::start("v1", "v2", plan(0, 2)).unwrap();
        assert_eq!(r.observe(&err("validator drift trapped")), vec![]);
        assert_eq!(r.observe(&err("validator drift trapped")), vec![]);
        assert_eq!(r.consecutive_errors(), 2);
        assert_eq!(
            r.observe(&err("validator drift trapped")),
            vec![Action::Abort {
                reason: "consecutive-error limit exceeded: 3 measurement errors in a row, limit 2; last: validator drift trapped".into()
            }]
        );
        assert_eq!(r.weight(), 0);
    }

    #[test]
    fn alternating_error_and_pass_never_reaches_a_limit_of_two() {
        let p = Plan {
            steps: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 100],
            ..plan(0, 2)
        };
        let (mut r, _) = Rollout::start("v1", "v2", p).unwrap();
        for i in 0..9 {
            assert_eq!(r.observe(&err("scrape failed")), vec![]);
            assert_eq!(r.consecutive_errors(), 1);
            let next = r.plan().steps[i + 1];
            assert_eq!(r.observe(&Measurement::Pass), vec![Action::SetWeight(next)]);
            assert_eq!(r.consecutive_errors(), 0);
        }
        assert_eq!(r.observe(&err("x")), vec![]);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::Promote]);
    }

    #[test]
    fn a_no_data_interval_pauses_and_never_promotes() {
        let (mut r, _) = Rollout::start("v1", "v2", plan(0, 0)).unwrap();
        for _ in 0..3 {
            r.observe(&Measurement::Pass);
        }
        assert_eq!(r.weight(), 100);
        let a = r.observe(&inconclusive());
        let reason = "inconclusive at 100%: no requests in this window";
        assert_eq!(
            a,
            vec![Action::Pause {
                reason: reason.into()
            }]
        );
        assert_eq!(
            r.phase(),
            &Phase::Paused {
                reason: reason.into()
            }
        );
        // Paused: even a pass does nothing until a person resumes.
        assert_eq!(r.observe(&Measurement::Pass), vec![]);
        assert_eq!(r.weight(), 100);
        assert_eq!(r.resume().unwrap(), vec![Action::SetWeight(100)]);
        assert_eq!(r.observe(&Measurement::Pass), vec![Action::Promote]);
    }

    #[test]
    fn resume_only_from_paused_and_abort_by_a_person() {
        let (mut r, _) = Rollout::start("v1", "v2", plan(0, 0)).unwrap();
        assert_eq!(
            r.resume().unwrap_err().to_string(),
            "cannot resume: the rollout is progressing, not paused"
        );
        r.observe(&inconclusive());
        assert_eq!(r.abort("  "), Err(RolloutError::EmptyReason));
        assert_eq!(
            r.abort("customers complain").unwrap(),
            vec![Action::Abort {
                reason: "aborted by a person: customers complain".into()
            }]
        );
        assert_eq!(r.weight(), 0);
        assert_eq!(
            r.resume().unwrap_err().to_string(),
            "the rollout is already aborted; start a new one"
        );
        assert_eq!(
            r.restart("v3").unwrap_err(),
            RolloutError::Finished("aborted".into())
        );
    }

    #[test]
    fn a_restart_mid_canary_goes_back_to_the_first_step_with_counters_reset() {
        let (mut r, _) = Rollout::start("v1", "v2", plan(1, 1)).unwrap();
        r.observe(&Measurement::Pass);
        r.observe(&Measurement::Pass);
        r.observe(&fail("a"));
        r.observe(&err("b"));
        assert_eq!(
            (r.step(), r.weight(), r.failures(), r.consecutive_errors()),
            (2, 50, 1, 1)
        );
        assert_eq!(r.restart("v3").unwrap(), vec![Action::SetWeight(5)]);
        assert_eq!(
            (r.step(), r.weight(), r.failures(), r.consecutive_errors()),
            (0, 5, 0, 0)
        );
        assert_eq!(r.candidate(), "v3");
        assert_eq!(r.stable(), "v1");
        assert_eq!(
            r.history().last().unwrap().event,
            Event::Restarted {
                from: "v2".into(),
                to: "v3".into()
            }
        );
        // The old failure no longer counts: one failure is within limit 1.
        assert_eq!(r.observe(&fail("c")), vec![]);
        // A restart also un-pauses.
        r.observe(&inconclusive());
        assert_eq!(r.restart("v4").unwrap(), vec![Action::SetWeight(5)]);
        assert_eq!(r.phase(), &Phase::Progressing);
        assert_eq!(
            r.restart("v1").unwrap_err().to_string(),
            "the candidate \"v1\" is the stable version"
        );
    }

    #[test]
    fn plan_validation_names_the_problem() {
        let v = |steps: Vec<u8>| {
            Plan {
                steps,
                ..plan(0, 0)
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert_eq!(v(vec![]), "the plan has no steps");
        assert_eq!(
            v(vec![0, 100]),
            "step 0 is 0%; every step must send the canary some traffic"
        );
        assert_eq!(
            v(vec![5, 50, 50, 100]),
            "step 2 is 50%, not above the previous step's 50%"
        );
        assert_eq!(
            v(vec![50, 25, 100]),
            "step 1 is 25%, not above the previous step's 50%"
        );
        assert_eq!(v(vec![5, 50]), "the last step is 50%; it must be 100%");
        assert_eq!(v(vec![5, 101]), "step 1 is 101%, over 100%");
        assert_eq!(
            Rollout::start("v1", "v1", plan(0, 0))
                .unwrap_err()
                .to_string(),
            "the candidate \"v1\" is the stable version"
        );
        let mut bad = plan(0, 0);
        bad.thresholds.max_error_rate = 2.0;
        assert_eq!(
            Rollout::start("v1", "v2", bad).unwrap_err().to_string(),
            "threshold max_error_rate is 2, expected a share in [0, 1]"
        );
        // A single 100% step is a valid (blue-green style) plan.
        let (_, a) = Rollout::start(
            "v1",
            "v2",
            Plan {
                steps: vec![100],
                ..plan(0, 0)
            },
        )
        .unwrap();
        assert_eq!(a, vec![Action::SetWeight(100)]);
    }

    #[test]
    fn phase_action_and_plan_serialize_for_the_api() {
        assert_eq!(
            serde_json::to_string(&Action::SetWeight(25)).unwrap(),
            r#"{"set_weight":25}"#
        );
        assert_eq!(
            serde_json::to_string(&Action::Promote).unwrap(),
            r#""promote""#
        );
        assert_eq!(
            serde_json::to_string(&Phase::Paused { reason: "r".into() }).unwrap(),
            r#"{"paused":{"reason":"r"}}"#
        );
        let p = plan(1, 2);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.starts_with(r#"{"steps":[5,25,50,100],"failure_limit":1,"consecutive_error_limit":2,"thresholds":{"min_requests":100"#), "{json}");
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
