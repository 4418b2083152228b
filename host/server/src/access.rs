//! Access control, free of I/O: roles, what each may do, scopes, and the
//! token format (random secret, stored only as its SHA-256, compared in
//! constant time).
//!
//! The table in [`Role::allows`] is the whole policy; `docs/security.md`
//! prints it and `tests/tests/server.rs` walks every route against every
//! role to check the router enforces exactly it.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A token's role. Each role's powers are listed in [`Role::allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads everything that is not a secret.
    Reader,
    /// Uploads blobs and plugins, submits model versions, re-runs gates.
    Submitter,
    /// Approves versions for promotion (never their own).
    Approver,
    /// Moves aliases: promote, rollback.
    Deployer,
    /// Publishes signed gates, switches gate versions, configures models.
    GateAdmin,
    /// Everything, including tokens, keys and the trust policy.
    Admin,
    /// Asks served models for predictions; reads nothing else (a client
    /// application's token).
    Predictor,
    /// Sends the delayed ground-truth labels that canary analysis and
    /// accuracy monitoring score versions by; reads nothing else. Kept apart
    /// from the predictor so that a client application, which sees the
    /// request ids, cannot also decide whether an answer was right.
    Labeler,
}

/// Every role, in the order the docs print them.
pub const ROLES: [Role; 8] = [
    Role::Predictor,
    Role::Labeler,
    Role::Reader,
    Role::Submitter,
    Role::Approver,
    Role::Deployer,
    Role::GateAdmin,
    Role::Admin,
];

/// What a request does, as the access check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Any GET of non-secret state.
    Read,
    /// Upload a blob, register a plugin, submit a version, re-run or cancel a gate run.
    Submit,
    /// Approve a version.
    Approve,
    /// Promote or roll back (move an alias).
    Deploy,
    /// Publish gates, switch gate versions, create or configure models.
    ManageGates,
    /// Tokens, host keys, trust policy, the audit log.
    Administer,
    /// Call a served model (predict, infer, its serving metadata).
    Predict,
    /// Send delayed labels for a served model's answers.
    Label,
}

/// Every permission, in the order the docs print them.
pub const PERMISSIONS: [Permission; 8] = [
    Permission::Predict,
    Permission::Label,
    Permission::Read,
    Permission::Submit,
    Permission::Approve,
    Permission::Deploy,
    Permission::ManageGates,
    Permission::Administer,
];

impl Role {
    /// Whether this role holds `p`. Reading is every role's but the
    /// predictor's and the labeler's (services' tokens see only the models
    /// they call); each other power belongs to one role and to `admin`.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Predictor => p == P::Predict,
            Role::Labeler => p == P::Label,
            Role::Reader => p == P::Read,
            Role::Submitter => matches!(p, P::Read | P::Submit),
            Role::Approver => matches!(p, P::Read | P::Approve),
            Role::Deployer => matches!(p, P::Read | P::Deploy),
            Role::GateAdmin => matches!(p, P::Read | P::ManageGates),
        }
    }

    /// The role's name as the API and CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Submitter => "submitter",
            Role::Approver => "approver",
            Role::Deployer => "deployer",
            Role::GateAdmin => "gate-admin",
            Role::Admin => "admin",
            Role::Predictor => "predictor",
            Role::Labeler => "labeler",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        ROLES.into_iter().find(|r| r.as_str() == s)
    }
}

impl Permission {
    /// The permission's name in docs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Submit => "submit",
            Permission::Approve => "approve",
            Permission::Deploy => "deploy",
            Permission::ManageGates => "manage-gates",
            Permission::Administer => "administer",
            Permission::Predict => "predict",
            Permission::Label => "label",
        }
    }
}

/// Where a grant applies: `None` means every model (or alias).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The models the token may act on; `None` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// The aliases a deployer may move; `None` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
}

impl Scope {
    /// Whether the grant covers `model`.
    pub fn covers_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }

    /// Whether the grant may move `alias`.
    pub fn covers_alias(&self, alias: &str) -> bool {
        self.aliases
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == alias))
    }
}

/// The prefix every airlock token starts with (so that secret scanners
/// can find leaked ones).
pub const TOKEN_PREFIX: &str = "alk_";

/// A freshly minted token: its public id and the secret shown once.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token's id (public, 16 hex digits).
    pub id: String,
    /// The full token `alk_<id>_<secret>`; never stored.
    pub token: String,
    /// SHA-256 of the secret part, hex; what is stored.
    pub hash: String,
}

/// Mints a token from 8 random bytes of id and 32 of secret.
pub fn mint_token() -> Result<NewToken, getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    Ok(NewToken {
        token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        hash: hash_secret(&secret),
        id,
    })
}

/// Splits a presented token into (id, secret), or `None` if malformed.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexy = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexy(id, 16) && hexy(secret, 64)).then_some((id, secret))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored`, in time independent of where they differ.
pub fn secret_matches(secret: &str, stored: &str) -> bool {
    let h = hash_secret(secret);
    h.as_bytes().ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_administers_and_every_role_but_the_services_reads() {
        for r in ROLES {
            assert_eq!(
                r.allows(Permission::Read),
                !matches!(r, Role::Predictor | Role::Labeler)
            );
            assert_eq!(r.allows(Permission::Administer), r == Role::Admin);
            assert_eq!(
                r.allows(Permission::Predict),
                matches!(r, Role::Predictor | Role::Admin)
            );
            // Whoever sees the answers does not grade them.
            assert_eq!(
                r.allows(Permission::Label),
                matches!(r, Role::Labeler | Role::Admin)
            );
        }
        assert!(!Role::Submitter.allows(Permission::Approve));
        assert!(!Role::Approver.allows(Permission::Deploy));
        assert!(!Role::Deployer.allows(Permission::ManageGates));
        assert!(Role::GateAdmin.allows(Permission::ManageGates));
        assert_eq!(Role::parse("gate-admin"), Some(Role::GateAdmin));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn tokens_round_trip_and_only_their_secret_matches() {
        let t = mint_token().unwrap();
        let (id, secret) = split_token(&t.token).unwrap();
        assert_eq!(id, t.id);
        assert!(secret_matches(secret, &t.hash));
        let other = mint_token().unwrap();
        let (_, s2) = split_token(&other.token).unwrap();
        assert!(!secret_matches(s2, &t.hash));
        assert!(split_token("alk_xyz_abc").is_none());
        assert!(split_token(&t.token[..t.token.len() - 1]).is_none());
    }

    #[test]
    fn scopes_limit_models_and_aliases() {
        let s = Scope {
            models: Some(vec!["a".into()]),
            aliases: Some(vec!["staging".into()]),
        };
        assert!(s.covers_model("a") && !s.covers_model("b"));
        assert!(s.covers_alias("staging") && !s.covers_alias("production"));
        assert!(Scope::default().covers_model("anything"));
    }
}
