//! `/metrics` for a token scoped to some models: the exposition with every
//! sample of another model's series left out, so that a reader granted
//! one model learns nothing of the others' traffic, versions or drift.
//! Samples without a `model` label (server-wide series) stay.

use crate::access::Scope;

/// `text` (an OpenMetrics exposition) without the samples whose `model`
/// label names a model `scope` does not cover. An unscoped grant gets
/// `text` unchanged.
pub fn filter(text: String, scope: &Scope) -> String {
    if scope.models.is_none() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let keep =
            line.starts_with('#') || model_label(line).is_none_or(|m| scope.covers_model(&m));
        if keep {
            out.push_str(line);
        }
    }
    out
}

/// The value of the `model` label of a sample line, unescaped; `None` when
/// the line has no label set or no `model` label. Label values are read
/// with their escapes, so a value that merely contains `model="…"` (a
/// feature name a model declared) is never taken for the label.
fn model_label(line: &str) -> Option<String> {
    let open = line.find('{')?;
    // The metric name holds no `{`, `"` or space before the label set.
    if line[..open].contains([' ', '"']) {
        return None;
    }
    let mut chars = line[open + 1..].chars();
    loop {
        let mut name = String::new();
        for c in chars.by_ref() {
            match c {
                '=' => break,
                '}' => return None,
                c => name.push(c),
            }
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        if name.trim() == "model" {
            return Some(value);
        }
        match chars.next()? {
            ',' => continue,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_scoped_models_samples_are_kept_whatever_a_label_value_holds() {
        let text = concat!(
            "# TYPE airlock_predict_requests counter\n",
            "airlock_predict_requests_total{model=\"a\",version=\"1\"} 3\n",
            "airlock_predict_requests_total{model=\"b\",version=\"1\"} 4\n",
            "airlock_drift_detected{feature=\"x\\\",model=\\\"a\",model=\"b\"} 1\n",
            "airlock_webhook_deliveries_total{outcome=\"dropped\"} 0\n",
            "# EOF\n",
        )
        .to_string();
        let scope = Scope {
            models: Some(vec!["a".into()]),
            aliases: None,
        };
        let got = filter(text.clone(), &scope);
        assert!(got.contains("model=\"a\",version=\"1\"} 3"), "{got}");
        assert!(!got.contains("} 4"), "{got}");
        assert!(!got.contains("airlock_drift_detected"), "{got}");
        assert!(got.contains("outcome=\"dropped\""), "{got}");
        assert!(got.contains("# TYPE") && got.ends_with("# EOF\n"), "{got}");
        assert_eq!(filter(text.clone(), &Scope::default()), text);
    }
}
