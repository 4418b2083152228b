//! Turning checks into a [`Verdict`]: a validator records metrics and
//! findings as it goes, and the verdict fails exactly when an
//! error-severity finding was recorded, so "pass" can never be forgotten.

use crate::{Finding, Metric, Severity, Verdict};

/// Collects a validator's findings and metrics.
#[derive(Debug, Default, Clone)]
pub struct Report {
    findings: Vec<Finding>,
    metrics: Vec<Metric>,
}

impl Report {
    /// An empty report (which would pass).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a measured number.
    pub fn metric(&mut self, name: impl Into<String>, value: f64) -> &mut Self {
        self.metrics.push(Metric {
            name: name.into(),
            value,
        });
        self
    }

    /// Records a finding of any severity.
    pub fn finding(
        &mut self,
        severity: Severity,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Self {
        self.findings.push(Finding {
            severity,
            code: code.into(),
            message: message.into(),
        });
        self
    }

    /// Records an informational finding.
    pub fn info(&mut self, code: impl Into<String>, message: impl Into<String>) -> &mut Self {
        self.finding(Severity::Info, code, message)
    }

    /// Records a warning (does not fail the verdict).
    pub fn warn(&mut self, code: impl Into<String>, message: impl Into<String>) -> &mut Self {
        self.finding(Severity::Warning, code, message)
    }

    /// Records a failure.
    pub fn fail(&mut self, code: impl Into<String>, message: impl Into<String>) -> &mut Self {
        self.finding(Severity::Error, code, message)
    }

    /// Records a failure with `code`/`message` unless `ok` holds.
    pub fn require(
        &mut self,
        ok: bool,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Self {
        if !ok {
            self.fail(code, message);
        }
        self
    }

    /// Whether an error-severity finding has been recorded.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The verdict: passed unless an error-severity finding was recorded.
    pub fn finish(self) -> Verdict {
        Verdict {
            passed: !self.failed(),
            findings: self.findings,
            metrics: self.metrics,
        }
    }
}

impl Verdict {
    /// The value of the metric called `name`, if the validator recorded one.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// The codes of the findings, in the order they were recorded.
    pub fn finding_codes(&self) -> Vec<&str> {
        self.findings.iter().map(|f| f.code.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_only_on_error_findings() {
        let mut r = Report::new();
        r.metric("accuracy", 0.9).warn("w", "just a warning");
        assert!(r.clone().finish().passed);
        r.require(false, "too-low", "accuracy too low");
        let v = r.finish();
        assert!(!v.passed);
        assert_eq!(v.findings.len(), 2);
        assert_eq!(v.metric("accuracy"), Some(0.9));
        assert_eq!(v.metric("recall"), None);
        assert_eq!(v.finding_codes(), ["w", "too-low"]);
    }
}
