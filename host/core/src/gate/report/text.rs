//! The gate report as text for a terminal, and the escaping every piece
//! of plugin-supplied text goes through on its way there: kept apart from
//! the report's data so that what a signature covers and how a person
//! reads it change independently.

use super::*;

/// `s` with every control character (newlines, escape sequences, ...)
/// written as a visible escape, so untrusted text stays on its own line
/// and cannot drive the terminal.
pub fn escape_untrusted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn short(d: &Digest) -> String {
    let s = d.to_string();
    s[..19].to_string()
}

impl GateReport {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let e = escape_untrusted;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "gate `{}` ({}): candidate {} {} ({}{}{})",
            e(&self.gate),
            short(&self.gate_digest),
            e(&self.candidate.name),
            e(&self.candidate.version),
            short(&self.candidate.digest),
            self.candidate
                .bundle_digest
                .map(|b| format!(", bundle {}", short(&b)))
                .unwrap_or_default(),
            self.candidate
                .snapshot_digest
                .map(|s| format!(", snapshot {}", short(&s)))
                .unwrap_or_default()
        );
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                o,
                "  baseline {} {} ({}{})",
                e(&b.name),
                e(&b.version),
                short(&b.digest),
                b.bundle_digest
                    .map(|d| format!(", bundle {}", short(&d)))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(o, "  seed {} (rerun with --seed {})", self.seed, self.seed);
        if let Some(f) = &self.candidate_failure {
            let _ = writeln!(o, "  ERROR candidate: {}: {}", f.kind, e(&f.message));
        }
        for (i, s) in self.steps.iter().enumerate() {
            // The run's record of the same step; a report assembled by hand
            // may lack it.
            let duration_ms = self
                .run
                .steps
                .get(i)
                .filter(|r| r.name == s.name)
                .map_or(0.0, |r| r.duration_ms);
            let status = match s.status {
                StepStatus::Pass => "PASS ",
                StepStatus::Fail => "FAIL ",
                StepStatus::Error => "ERROR",
            };
            let _ = writeln!(
                o,
                "  {status} {}{}  [fuel {}{}, {:.1} ms]",
                e(&s.name),
                if s.advisory { " (advisory)" } else { "" },
                s.fuel_used,
                if s.candidate_fuel_used > 0 {
                    format!(" incl. {} in candidate probes", s.candidate_fuel_used)
                } else {
                    String::new()
                },
                duration_ms
            );
            const SHOWN: usize = 8;
            for (name, value) in s.metrics.0.iter().take(SHOWN) {
                let _ = writeln!(o, "          {} = {}", e(name), fmt_num(*value));
            }
            if s.metrics.0.len() > SHOWN {
                let _ = writeln!(
                    o,
                    "          ... {} more metrics (see --json)",
                    s.metrics.0.len() - SHOWN
                );
            }
            for f in &s.findings {
                let _ = writeln!(
                    o,
                    "          {} {}: {}",
                    f.severity,
                    e(&f.code),
                    e(&f.message)
                );
            }
            if let Some(err) = &s.error {
                let who = match s.blame {
                    Some(Blame::Candidate) => "candidate ",
                    Some(Blame::Baseline) => "baseline ",
                    Some(Blame::Validator) => "validator ",
                    None => "",
                };
                let _ = writeln!(o, "          {who}{}: {}", err.kind, e(&err.message));
            }
            for p in &s.probe_failures {
                let allowed = if s.allowed_probe_failures.contains(&p.kind) {
                    " (allowed)"
                } else {
                    ""
                };
                let _ = writeln!(
                    o,
                    "          failed probe ({} rows) {}{allowed}: {}",
                    p.rows,
                    p.kind,
                    e(&p.message)
                );
            }
            if s.probe_failures_unrecorded > 0 {
                let _ = writeln!(
                    o,
                    "          ... {} more failed probes (of the kinds above)",
                    s.probe_failures_unrecorded
                );
            }
        }
        if self.passed {
            let _ = write!(o, "result: PASSED");
            if !self.decision.advisory_failures.is_empty() {
                let _ = write!(
                    o,
                    " (advisory failures: {})",
                    e(&self.decision.advisory_failures.join(", "))
                );
            }
        } else if self.candidate_failure.is_some() {
            let _ = write!(o, "result: REFUSED (the candidate could not be judged)");
        } else {
            let _ = write!(
                o,
                "result: REFUSED (blocking steps: {})",
                e(&self.decision.blocking_steps.join(", "))
            );
        }
        let _ = writeln!(
            o,
            " — {} fuel, {:.1} ms",
            self.total_fuel_used, self.run.duration_ms
        );
        o
    }
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{v}")
    } else {
        format!("{v:.6}")
    }
}
