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

/// Reads the manifest of a component; a component without one gets the
/// empty manifest. Two manifest sections, or one that is not valid TOML of
/// the right shape, is an error naming the problem.
pub fn read(component: &[u8]) -> Result<Manifest, String> {
    let mut found: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let wasmparser::Payload::CustomSection(c) = payload
            && c.name() == SECTION
        {
            if found.is_some() {
                return Err(format!("more than one `{SECTION}` section"));
            }
            found = Some(c.data());
        }
    }
    let Some(data) = found else {
        return Ok(Manifest::default());
    };
    let text = std::str::from_utf8(data).map_err(|_| format!("`{SECTION}` is not UTF-8"))?;
    toml::from_str(text).map_err(|e| {
        format!(
            "`{SECTION}`: {}",
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )
    })
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
        assert!(e.contains("fule"), "{e}");
    }
}
