//! What the server checks before it records an artifact: the component's
//! world and contract (read by the sandbox), the bundle's tree digest (of
//! exactly the unpacked bytes), and their signatures under the trust
//! policy. Everything here runs on blocking threads.

use crate::error::ApiError;
use crate::state::AppState;
use airlock_attest::model_signing::Bundle as SigBundle;
use airlock_attest::policy::{
    ArtifactKind, RequireSigned, TrustPolicy, TrustedKey, check_signer, verify_model_for,
};
use airlock_core::capabilities::World;
use airlock_core::digest::Digest;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// The policy in force: the accepted one, or, before any, the bootstrap
/// rule (the configured root keys may sign anything; unsigned plugins and
/// bundles are accepted; gates must still be signed by a root key).
pub fn effective_policy(state: &AppState) -> Result<TrustPolicy, ApiError> {
    if let Some(p) = state
        .policy
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        return Ok(p.clone());
    }
    Ok(TrustPolicy {
        version: 0,
        keys: state
            .config
            .trust_root
            .iter()
            .map(|k| TrustedKey {
                id: k.key_id(),
                public_key_pem: k.to_pem(),
                kinds: vec![
                    ArtifactKind::Plugin,
                    ArtifactKind::Bundle,
                    ArtifactKind::Gate,
                    ArtifactKind::Policy,
                ],
                comment: Some("trust root (no policy accepted yet)".into()),
            })
            .collect(),
        require_signed: RequireSigned {
            plugins: false,
            bundles: false,
        },
    })
}

/// Reads a component back, inspects it, and checks its signature. Returns
/// ((world, contract), size, signer).
pub fn check_plugin(
    state: &AppState,
    digest: &Digest,
    name: &str,
    signature: Option<&Value>,
) -> Result<((String, String), u64, Option<String>), ApiError> {
    let mut bytes = Vec::new();
    let cap = state.config.sandbox_component_cap();
    state
        .blobs
        .open(digest)?
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::error::blob_read(digest, e))?;
    if bytes.len() as u64 > cap {
        return Err(ApiError::refused(
            "invalid_component",
            format!("component {digest} is over the component size cap of {cap} bytes"),
        ));
    }
    let inspection = state
        .sandbox
        .inspect(&bytes)
        .map_err(|e| ApiError::refused("invalid_component", format!("component {digest}: {e}")))?;
    if !inspection.refused_imports.is_empty() {
        return Err(ApiError::refused(
            "invalid_component",
            format!(
                "component {digest} imports what no plugin is granted: {}",
                inspection.refused_imports.join(", ")
            ),
        ));
    }
    let world = match inspection.world {
        World::Model => "model",
        World::Validator => "validator",
    };
    let contract = inspection
        .contract
        .map(|c| c.to_string())
        .unwrap_or_else(|| "unknown".into());
    let policy = effective_policy(state)?;
    let signer = match signature {
        None => None,
        Some(sig) => {
            let dir = crate::state::scratch_dir(state, "check")?;
            let file = dir.path().join(format!("{name}.wasm"));
            write_private(&file, &bytes)
                .map_err(|e| ApiError::internal(format_args!("scratch file: {e}")))?;
            Some(verify_signature(&policy, ArtifactKind::Plugin, &file, sig)?)
        }
    };
    check_signer(&policy, ArtifactKind::Plugin, signer.as_ref())
        .map_err(|e| ApiError::refused("untrusted", format!("plugin {name}: {e}")))?;
    Ok((
        (world.into(), contract),
        bytes.len() as u64,
        signer.map(|k| k.hex()),
    ))
}

/// Unpacks an uploaded bundle archive, digests exactly what was unpacked,
/// and checks its signature. Returns (bundle digest, signer).
pub fn check_bundle(
    state: &AppState,
    archive: &Digest,
    signature: Option<&Value>,
) -> Result<(Digest, Option<String>), ApiError> {
    let caps = state.sandbox.config().bundle_caps;
    let dir = crate::state::scratch_dir(state, "check")?;
    let root = dir.path().join("bundle");
    crate::state::private_dir(&root)
        .map_err(|e| ApiError::internal(format_args!("scratch directory: {e}")))?;
    let reader = state.blobs.open(archive)?;
    // `unpack` reads the blob to its end, so a stored archive changed
    // since its upload fails here, named, before any gate sees it.
    crate::archive::unpack(reader, &root, &caps)
        .map_err(|e| ApiError::refused("invalid_bundle", format!("bundle {archive}: {e}")))?;
    let digest = airlock_runtime::bundle::digest_path(&root, &caps)
        .map_err(|e| ApiError::refused("invalid_bundle", format!("bundle {archive}: {e}")))?;
    let policy = effective_policy(state)?;
    let signer = match signature {
        None => None,
        Some(sig) => Some(verify_signature(&policy, ArtifactKind::Bundle, &root, sig)?),
    };
    check_signer(&policy, ArtifactKind::Bundle, signer.as_ref())
        .map_err(|e| ApiError::refused("untrusted", format!("bundle {archive}: {e}")))?;
    Ok((digest, signer.map(|k| k.hex())))
}

/// Writes a new scratch file, mode 0600 whatever the umask.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Verifies an OpenSSF model-signing bundle over `path` under the keys
/// the policy allows for `kind`.
fn verify_signature(
    policy: &TrustPolicy,
    kind: ArtifactKind,
    path: &Path,
    sig: &Value,
) -> Result<airlock_attest::KeyId, ApiError> {
    let json =
        serde_json::to_vec(sig).map_err(|e| ApiError::bad_request(format!("signature: {e}")))?;
    // Parse first so that a malformed signature is a 400 naming the problem.
    let _: SigBundle = serde_json::from_slice(&json).map_err(|e| {
        ApiError::bad_request(format!("signature is not a model-signing bundle: {e}"))
    })?;
    verify_model_for(policy, kind, path, &json)
        .map_err(|e| ApiError::refused("bad_signature", format!("signature does not verify: {e}")))
}
