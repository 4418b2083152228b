//! The naming rules for everything a client names: models, plugins, gates,
//! aliases, versions and digests. Names never become file paths (blobs are
//! stored by digest), but they are checked strictly anyway so that a name
//! shaped like a path (`../`, `%2e%2e`, `/etc`, NUL, very long) is a 400
//! that says which rule it broke.

use crate::error::ApiError;
use airlock_core::digest::Digest;

/// The longest name accepted.
pub const MAX_NAME: usize = 64;

/// Checks a model, plugin, gate or alias name: 1 to 64 bytes of lowercase
/// ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit,
/// and no `..`.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let shown = show(name);
    if name.is_empty() {
        return Err(ApiError::bad_name(format!("{what} name is empty")));
    }
    if name.len() > MAX_NAME {
        return Err(ApiError::bad_name(format!(
            "{what} name {shown} is {} bytes long; the limit is {MAX_NAME}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ApiError::bad_name(format!(
            "{what} name {shown} holds {:?}; names use a-z, 0-9, '.', '_' and '-'",
            c
        )));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(ApiError::bad_name(format!(
            "{what} name {shown} must start with a letter or digit"
        )));
    }
    if name.contains("..") {
        return Err(ApiError::bad_name(format!(
            "{what} name {shown} holds `..`"
        )));
    }
    Ok(())
}

/// Checks a semantic version (`MAJOR.MINOR.PATCH`, optional `-pre` and
/// `+build` of `[0-9A-Za-z.-]`, numeric parts without leading zeros).
pub fn check_version(version: &str) -> Result<(), ApiError> {
    let shown = show(version);
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "version {shown} is not a semantic version (MAJOR.MINOR.PATCH): {why}"
        ))
    };
    if version.len() > MAX_NAME {
        return Err(bad("longer than 64 bytes"));
    }
    let (core, rest) = match version.find(['-', '+']) {
        Some(i) => (&version[..i], &version[i..]),
        None => (version, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(bad("expected three numbers separated by dots"));
    }
    for p in parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("each of MAJOR, MINOR and PATCH must be a number"));
        }
        if p.len() > 1 && p.starts_with('0') {
            return Err(bad("numbers have no leading zeros"));
        }
    }
    let tail = rest.trim_start_matches(['-', '+']);
    if !rest.is_empty()
        && (tail.is_empty()
            || !rest[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')))
    {
        return Err(bad(
            "pre-release and build parts use 0-9, A-Z, a-z, '.' and '-'",
        ));
    }
    Ok(())
}

/// Parses `sha256:<64 lowercase hex>`, naming the field on failure.
pub fn parse_digest(what: &str, s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{what} {} is not a digest of the form sha256:<64 hex digits>",
            show(s)
        ))
    })
}

/// A value as it may appear in a message: quoted, escaped, cut at 80 chars.
pub fn show(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut out = format!("{cut:?}");
    if cut.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_shaped_like_paths_are_refused_by_rule() {
        for bad in [
            "", "..", "../etc", "a/b", "/abs", "a\0b", "%2e%2e", "A", "-x", ".hidden", "a..b",
            "x y", "é",
        ] {
            let e = check_name("model", bad).unwrap_err();
            assert_eq!(e.code, "bad_name", "{bad:?}");
        }
        let long = "a".repeat(65);
        assert!(
            check_name("model", &long)
                .unwrap_err()
                .message
                .contains("65 bytes")
        );
        for good in ["breast-cancer", "m1", "a.b_c-d", &"a".repeat(64)] {
            check_name("model", good).unwrap();
        }
    }

    #[test]
    fn versions_follow_semver() {
        for good in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0+build.5",
            "1.0.0-a-b+c",
        ] {
            check_version(good).unwrap();
        }
        for bad in [
            "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "1.2.3-", "1.2.3+", "v1.2.3", "1.2.3-é",
        ] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_escape_and_cut_what_they_show() {
        assert_eq!(show("a\nb"), "\"a\\nb\"");
        assert!(show(&"x".repeat(200)).ends_with('…'));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

            /// A name is accepted exactly when it matches the documented
            /// rule; a refusal is always a `bad_name` that quotes it.
            #[test]
            fn names_are_accepted_exactly_by_the_rule(name in "\\PC{0,80}|[a-z0-9._/%-]{0,70}") {
                let ok = !name.is_empty()
                    && name.len() <= MAX_NAME
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                    && name.as_bytes()[0].is_ascii_alphanumeric()
                    && !name.contains("..");
                match check_name("model", &name) {
                    Ok(()) => prop_assert!(ok),
                    Err(e) => {
                        prop_assert!(!ok);
                        prop_assert_eq!(e.code, "bad_name");
                    }
                }
            }

            /// Versions and digests never panic on any input.
            #[test]
            fn versions_and_digests_never_panic(s in "\\PC{0,100}") {
                let _ = check_version(&s);
                let _ = parse_digest("x", &s);
                let _ = show(&s);
            }
        }
    }
}
