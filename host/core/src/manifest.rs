//! Plugin manifests: what a plugin asks of the host, embedded in the
//! component itself.
//!
//! A plugin may declare lower limits for itself (a small validator can say
//! it never needs more than 50M fuel, so a bug in it fails fast). The
//! manifest is a TOML document in a custom section named
//! [`SECTION`] anywhere in the component (the SDK's
//! `airlock_guest::manifest!` macro puts it in the core module), so it is
//! covered by the component's digest. Requests only ever lower the
//! operator's ceilings ([`crate::limits`]).

use crate::limits::LimitRequest;
use serde::{Deserialize, Serialize};

/// The custom section holding the manifest.
pub const SECTION: &str = "airlock-manifest";

/// A plugin's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Limits the plugin asks for (lower than the ceilings to take effect).
    #[serde(default)]
    pub limits: LimitRequest,
}

/// Why a component's manifest could not be read. Each variant keeps its
/// cause, so callers can tell a broken binary from a broken manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The component's bytes are not a well-formed WebAssembly binary, so
    /// its custom sections cannot be listed.
    #[error("{0}")]
    Binary(#[source] wasmparser::BinaryReaderError),
    /// The component carries two manifest sections; which one applies
    /// would be ambiguous.
    #[error("more than one `{SECTION}` section")]
    Duplicate,
    /// The manifest section is not UTF-8 text.
    #[error("`{SECTION}` is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The manifest is not valid TOML of the manifest's shape (an unknown
    /// key among others; TOML's message names it).
    #[error("`{SECTION}`: {}", crate::error::one_line(&.0.to_string()))]
    Toml(#[source] toml::de::Error),
}

/// Reads the manifest of a component; a component without one gets the
/// empty manifest. Two manifest sections, or one that is not valid TOML of
/// the right shape, is an error naming the problem.
pub fn read(component: &[u8]) -> Result<Manifest, ManifestError> {
    let mut found: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = payload.map_err(ManifestError::Binary)?;
        if let wasmparser::Payload::CustomSection(c) = payload
            && c.name() == SECTION
        {
            if found.is_some() {
                return Err(ManifestError::Duplicate);
            }
            found = Some(c.data());
        }
    }
    let Some(data) = found else {
        return Ok(Manifest::default());
    };
    let text = std::str::from_utf8(data).map_err(ManifestError::NotUtf8)?;
    toml::from_str(text).map_err(ManifestError::Toml)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal core module with one custom section.
    fn module_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.push(name.len() as u8);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.push(0);
        m.push(body.len() as u8);
        m.extend(body);
        m
    }

    #[test]
    fn reads_limits_and_rejects_unknown_keys() {
        let m = read(&module_with(SECTION, b"[limits]\nfuel = 5\n")).unwrap();
        assert_eq!(m.limits.fuel, Some(5));
        assert_eq!(
            read(&module_with("other", b"x")).unwrap(),
            Manifest::default()
        );
        let e = read(&module_with(SECTION, b"[limits]\nfule = 5\n")).unwrap_err();
        let ManifestError::Toml(source) = &e else {
            panic!("expected a TOML error, got {e:?}");
        };
        assert!(
            source.message().contains("unknown field `fule`"),
            "{source}"
        );
        let text = e.to_string();
        assert!(text.starts_with("`airlock-manifest`: "), "{text}");
        assert!(text.contains("fule") && !text.contains('\n'), "{text}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn each_kind_of_broken_manifest_keeps_its_cause() {
        // Two manifest sections.
        let mut two = module_with(SECTION, b"");
        two.extend_from_slice(&module_with(SECTION, b"")[8..]);
        let e = read(&two).unwrap_err();
        assert!(matches!(e, ManifestError::Duplicate), "{e:?}");
        assert_eq!(e.to_string(), "more than one `airlock-manifest` section");

        // A section that is not UTF-8.
        let e = read(&module_with(SECTION, b"\xff\xfe")).unwrap_err();
        let ManifestError::NotUtf8(source) = &e else {
            panic!("expected NotUtf8, got {e:?}");
        };
        assert_eq!(source.valid_up_to(), 0);
        assert_eq!(e.to_string(), "`airlock-manifest` is not UTF-8");

        // Bytes that are not WebAssembly at all.
        let e = read(b"not wasm").unwrap_err();
        let ManifestError::Binary(source) = &e else {
            panic!("expected Binary, got {e:?}");
        };
        assert_eq!(e.to_string(), source.to_string());
        assert!(std::error::Error::source(&e).is_some());
    }
}
