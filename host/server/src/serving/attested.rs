//! The snapshot the gate judged: a pre-initialised model is served only
//! from the snapshot its passing gate run attested.
//!
//! The gate ran every call of the candidate from a snapshot taken after its
//! `init`, and the signed attestation names that snapshot's digest
//! (`candidate.snapshotDigest`). Serving builds the snapshot again from the
//! same component and bundle; `init` runs under fixed limits, so it should
//! come out byte for byte the same. If it does not (a model that found some
//! other difference between the two hosts, or a host that changed), the
//! server would serve something no gate judged: [`Attested::check`] refuses
//! it, naming both digests, before any alias moves or any request reaches
//! it.

use crate::error::ApiError;
use crate::state::AppState;
use airlock_attest::Envelope;
use airlock_attest::gate::{ExpectedSubject, verify_attestation};
use airlock_core::digest::Digest;

/// What a version's newest passing gate run attested about the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The run.
    pub run: String,
    /// The snapshot it attested (`None` for a model without `init`).
    pub snapshot: Option<Digest>,
}

/// `model version cannot be served: why`, as every serving refusal says it.
fn refuse(model: &str, version: &str, why: String) -> ApiError {
    ApiError::refused(
        "cannot_serve",
        format!("model {model} version {version} cannot be served: {why}"),
    )
}

/// The attestation of the newest passing gate run of `model` `version`,
/// verified under the host's keys for exactly the version's digests.
pub async fn attested(state: &AppState, model: &str, version: &str) -> Result<Attested, ApiError> {
    let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT r.id, r.attestation, v.plugin, v.bundle_digest FROM runs r
         JOIN versions v ON v.model = r.model AND v.version = r.version
         WHERE r.model = $1 AND r.version = $2 AND r.status = 'passed' AND r.attestation IS NOT NULL
         ORDER BY r.seq DESC LIMIT 1",
    )
    .bind(model)
    .bind(version)
    .fetch_optional(&state.db)
    .await?;
    let (run, att, plugin, bundle) =
        row.ok_or_else(|| refuse(model, version, "no passing gate run attests it".into()))?;
    let envelope = Envelope::from_json(&att).map_err(|e| {
        refuse(
            model,
            version,
            format!("gate run {run}'s attestation does not parse: {e}"),
        )
    })?;
    let expected = ExpectedSubject {
        model: Digest::parse(&plugin).ok_or_else(|| ApiError::internal("stored plugin digest"))?,
        bundle: bundle.as_deref().and_then(Digest::parse),
    };
    let verified =
        verify_attestation(&envelope, &state.key_set(), Some(&expected)).map_err(|e| {
            refuse(
                model,
                version,
                format!("gate run {run}'s attestation does not verify: {e}"),
            )
        })?;
    if !verified.passed() {
        return Err(refuse(
            model,
            version,
            format!("gate run {run}'s attestation records a refusal"),
        ));
    }
    Ok(Attested {
        run,
        snapshot: verified.snapshot_digest(),
    })
}

impl Attested {
    /// Refuses to serve `model` `version` from `built` (the snapshot this
    /// host made, `None` when the model has no `init`) unless it is the
    /// one the run attested.
    pub fn check(&self, model: &str, version: &str, built: Option<Digest>) -> Result<(), ApiError> {
        if built == self.snapshot {
            return Ok(());
        }
        let show = |d: Option<Digest>| d.map_or_else(|| "none".to_string(), |d| d.to_string());
        Err(refuse(
            model,
            version,
            format!(
                "its snapshot here is {}, but gate run {} attested snapshot {}: only the snapshot the gate judged is served",
                show(built),
                self.run,
                show(self.snapshot)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_attested_snapshot_passes() {
        let a = Digest::of(b"a");
        let att = Attested {
            run: "r1".into(),
            snapshot: Some(a),
        };
        assert!(att.check("m", "1", Some(a)).is_ok());
        let e = att.check("m", "1", Some(Digest::of(b"b"))).unwrap_err();
        assert!(
            e.message.contains(&a.to_string()) && e.message.contains("gate run r1"),
            "{}",
            e.message
        );
        assert!(att.check("m", "1", None).is_err());
        let none = Attested {
            run: "r2".into(),
            snapshot: None,
        };
        assert!(none.check("m", "1", None).is_ok());
        assert!(none.check("m", "1", Some(a)).is_err());
    }
}
