//! Parsing and checking a gate step's configuration, with errors that name
//! the step and the key.
//!
//! The host renders a step's `[steps.config]` TOML table as JSON. An error
//! that points into that JSON ("line 1 column 20") is useless to the person
//! who wrote the TOML, so every configuration error produced here reads
//!
//! ```text
//! step `<step>`: config key `<dotted.path>`: <what is wrong>
//! ```
//!
//! where `<dotted.path>` is the key path inside `[steps.config]`
//! (`min.accuracy`, `inputs[2].kind`, `max_drift_share`). The host looks
//! for the substring ``config key `<path>` `` to point at the line of the
//! user's TOML, so validators should build their own config errors with
//! [`key_error`] or [`crate::Context::config_error`] rather than by hand.

use crate::PluginError;
use crate::codes;
use serde::de::DeserializeOwned;

/// The path written for an error about the configuration as a whole (for
/// example when it is not a table at all).
pub const WHOLE_CONFIG: &str = "<config>";

/// A `bad-config` error about `key`, not yet naming the step; the SDK
/// adds the step when the error leaves the validator (see
/// [`crate::Context::name_step`]).
pub fn key_error(key: impl AsRef<str>, problem: impl AsRef<str>) -> PluginError {
    PluginError::new(
        codes::BAD_CONFIG,
        format!("config key `{}`: {}", key.as_ref(), problem.as_ref()),
    )
}

/// A `missing-column` error: the key `key` names `column`, which the
/// dataset does not have. The gate is misconfigured, not the model.
pub fn missing_column(
    key: impl AsRef<str>,
    column: impl AsRef<str>,
    problem: impl AsRef<str>,
) -> PluginError {
    PluginError::new(
        codes::MISSING_COLUMN,
        format!(
            "config key `{}`: column `{}` {}",
            key.as_ref(),
            column.as_ref(),
            problem.as_ref()
        ),
    )
}

/// Parses `json` (the step's configuration) into `T`. Errors are
/// `bad-config` and name the step and the key path, never a JSON position.
pub fn parse<T: DeserializeOwned>(step: &str, json: &str) -> Result<T, PluginError> {
    let text = if json.trim().is_empty() { "{}" } else { json };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // The host always sends valid JSON; this is a host or test bug, and
        // the position is all serde_json can say about it.
        in_step(
            step,
            key_error(WHOLE_CONFIG, format!("not valid JSON ({e})")),
        )
    })?;
    if !value.is_object() {
        return Err(in_step(
            step,
            key_error(
                WHOLE_CONFIG,
                format!("must be a table of keys, got `{value}`"),
            ),
        ));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let parent = dotted(e.path());
        let (key, problem) = describe(&parent, &e.inner().to_string());
        in_step(step, key_error(key, problem))
    })
}

/// A serde path as the TOML key path: `a.b[2].c`, or empty at the top.
fn dotted(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." { String::new() } else { text }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Turns serde's message at `path` into (key path, problem in words).
///
/// serde reports a missing field at the enclosing table and an unknown one
/// at the unknown key itself, so the key is taken from the message where
/// needed.
fn describe(path: &str, message: &str) -> (String, String) {
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        return (join(path, name), "is required but missing".to_string());
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let key = if path.ends_with(name) && !path.is_empty() {
            path.to_string()
        } else {
            join(path, name)
        };
        let expected = tail
            .trim_start_matches(',')
            .trim()
            .replace("expected one of", "the known keys are")
            .replace("expected", "the known key is")
            .replace("there are no fields", "this table takes no keys");
        let problem = if expected.is_empty() {
            "unknown key".to_string()
        } else {
            format!("unknown key; {expected}")
        };
        return (key, problem);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let expected = tail.trim_start_matches(',').trim();
        return (
            key_or_whole(path),
            format!("unknown value `{name}`; {expected}"),
        );
    }
    (key_or_whole(path), message.to_string())
}

fn key_or_whole(path: &str) -> String {
    if path.is_empty() {
        WHOLE_CONFIG.to_string()
    } else {
        path.to_string()
    }
}

/// Prefixes ``step `<step>`: `` to a configuration error (a code in
/// [`codes::GATE_MISCONFIGURED`]) whose message does not start by naming
/// its step; other errors pass through unchanged.
pub fn in_step(step: &str, mut e: PluginError) -> PluginError {
    let named = format!("step `{step}`");
    if codes::GATE_MISCONFIGURED.contains(&e.code.as_str()) && !e.message.starts_with(&named) {
        e.message = format!("{named}: {}", e.message);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        kind: Kind,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Kind {
        Numeric,
        Categorical,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        #[serde(default)]
        max_drift_share: f64,
        #[serde(default)]
        min: BTreeMap<String, f64>,
        #[serde(default)]
        inputs: Vec<Input>,
        #[serde(default)]
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        required: bool,
    }

    fn err(json: &str) -> PluginError {
        parse::<Cfg>("drift", json).unwrap_err()
    }

    #[test]
    fn an_unknown_key_is_named_by_its_path_without_json_positions() {
        let e = err(r#"{"max_drif_share": 0.5}"#);
        assert_eq!(e.code, codes::BAD_CONFIG);
        assert!(
            e.message
                .starts_with("step `drift`: config key `max_drif_share`: unknown key; the known keys are `max_drift_share`, "),
            "{}",
            e.message
        );
        assert!(!e.message.contains("line"), "{}", e.message);
        assert!(!e.message.contains("column"), "{}", e.message);
    }

    #[test]
    fn a_wrong_type_in_a_nested_table_names_the_dotted_path() {
        let e = err(r#"{"min": {"accuracy": "high"}}"#);
        assert_eq!(
            e.message,
            "step `drift`: config key `min.accuracy`: invalid type: string \"high\", expected f64"
        );
    }

    #[test]
    fn an_error_inside_a_list_names_the_element() {
        let e =
            err(r#"{"inputs": [{"name": "a", "kind": "numeric"}, {"name": "b", "kind": "text"}]}"#);
        assert_eq!(
            e.message,
            "step `drift`: config key `inputs[1].kind`: unknown value `text`; expected `numeric` or `categorical`"
        );
        let e = err(r#"{"inputs": [{"name": "a", "kind": "numeric", "wat": 1}]}"#);
        assert!(
            e.message
                .starts_with("step `drift`: config key `inputs[0].wat`: unknown key"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_missing_key_is_named_inside_its_table() {
        let e = err(r#"{"nested": {}}"#);
        assert_eq!(
            e.message,
            "step `drift`: config key `nested.required`: is required but missing"
        );
        let e = err(r#"{"inputs": [{"kind": "numeric"}]}"#);
        assert_eq!(
            e.message,
            "step `drift`: config key `inputs[0].name`: is required but missing"
        );
    }

    #[test]
    fn a_config_that_is_not_a_table_is_refused_as_a_whole() {
        let e = err("[1, 2]");
        assert_eq!(
            e.message,
            "step `drift`: config key `<config>`: must be a table of keys, got `[1,2]`"
        );
    }

    #[test]
    fn an_empty_config_means_every_default() {
        let c: Cfg = parse("s", "").unwrap();
        assert_eq!(c.max_drift_share, 0.0);
        assert!(c.min.is_empty());
    }

    #[test]
    fn the_step_is_named_once() {
        let e = in_step("s", in_step("s", key_error("k", "bad")));
        assert_eq!(e.message, "step `s`: config key `k`: bad");
        let labels = PluginError::new(codes::MISSING_LABELS, "step `s` needs labels");
        assert_eq!(in_step("s", labels).message, "step `s` needs labels");
        let other = in_step("s", PluginError::new("stats", "x"));
        assert_eq!(other.message, "x");
    }
}
