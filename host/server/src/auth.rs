//! Who is calling: the bearer token is looked up by id, its secret compared
//! in constant time with the stored hash, and its expiry and revocation
//! checked, before any handler runs.

use crate::access::{Permission, Role, Scope, secret_matches, split_token};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;

/// A token's stored row: subject, role, scope, hash, expiry, revocation.
pub type TokenRow = (String, String, String, String, Option<i64>, Option<String>);

/// Token rows recently read, so that a prediction does not pay a database
/// round trip for its token. An entry lives at most [`TokenCache::TTL`];
/// rotating or revoking a token on this server drops its entry at once
/// (another server sharing the database sees the change within the TTL).
/// The secret is still hashed and compared on every request.
pub struct TokenCache {
    rows: std::sync::Mutex<std::collections::HashMap<String, (TokenRow, std::time::Instant)>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            rows: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl TokenCache {
    /// How long a cached row is trusted.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const CAP: usize = 4096;

    fn get(&self, id: &str) -> Option<TokenRow> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.get(id)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(r, _)| r.clone())
    }

    fn put(&self, id: &str, row: TokenRow) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if rows.len() >= Self::CAP {
            rows.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if rows.len() >= Self::CAP {
                rows.clear();
            }
        }
        rows.insert(id.to_string(), (row, std::time::Instant::now()));
    }

    /// Forgets a token (rotated or revoked here).
    pub fn forget(&self, id: &str) {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub token_id: String,
    /// Who the token was issued to; the identity approvals compare.
    pub subject: String,
    /// The token's role.
    pub role: Role,
    /// Where the grant applies.
    pub scope: Scope,
}

impl Caller {
    /// Requires `p`, naming the role and the permission when refused.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            let allowed: Vec<&str> = crate::access::ROLES
                .iter()
                .filter(|r| r.allows(p))
                .map(|r| r.as_str())
                .collect();
            Err(ApiError::forbidden(format!(
                "role `{}` may not {} (token {}); a token with role {} may",
                self.role.as_str(),
                p.as_str(),
                self.token_id,
                allowed.join(" or ")
            )))
        }
    }

    /// Requires `p` on `model` (the grant's model scope).
    pub fn require_model(&self, p: Permission, model: &str) -> Result<(), ApiError> {
        self.require(p)?;
        if self.scope.covers_model(model) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {} is not granted model `{model}`",
                self.token_id
            )))
        }
    }

    /// Requires `p` with a grant over every model and alias: what acts on
    /// the whole server (tokens, host keys, the trust policy, the audit
    /// log of every model) is refused to a scoped token, which could
    /// otherwise mint itself a wider one.
    pub fn require_unscoped(&self, p: Permission) -> Result<(), ApiError> {
        self.require(p)?;
        if self.scope == Scope::default() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {} is scoped to some models or aliases; {} the whole server needs an unscoped token",
                self.token_id,
                p.as_str()
            )))
        }
    }

    /// Requires `p` on the gate `gate`, which judges `judged` (the models
    /// whose gate it is): a gate is in scope when every model it judges is,
    /// so a token scoped to one model cannot change how another is judged.
    pub fn require_gate(
        &self,
        p: Permission,
        gate: &str,
        judged: &[String],
    ) -> Result<(), ApiError> {
        self.require(p)?;
        match judged.iter().find(|m| !self.scope.covers_model(m)) {
            None => Ok(()),
            Some(m) => Err(ApiError::forbidden(format!(
                "token {} is not granted gate `{gate}`: it also judges model `{m}`",
                self.token_id
            ))),
        }
    }

    /// Whether a scoped token may read the gate `gate` judging `judged`:
    /// the gate of one of its models, or a gate that judges none yet.
    pub fn may_read_gate(&self, judged: &[String]) -> bool {
        judged.is_empty() || judged.iter().any(|m| self.scope.covers_model(m))
    }

    /// Requires moving `alias` of `model`.
    pub fn require_alias(&self, model: &str, alias: &str) -> Result<(), ApiError> {
        self.require_model(Permission::Deploy, model)?;
        if self.scope.covers_alias(alias) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {} may not move alias `{alias}` of model `{model}`",
                self.token_id
            )))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        // Authenticated once, by the access layer, for every guarded route.
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("no token: send `Authorization: Bearer <token>`")
        })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?
            .trim();
        let (id, secret) = split_token(token).ok_or_else(|| {
            ApiError::unauthorized("the token is malformed (expected alk_<id>_<secret>)")
        })?;
        let row = match state.tokens.get(id) {
            Some(row) => Some(row),
            None => {
                let row: Option<TokenRow> = sqlx::query_as(
                    "SELECT subject, role, scope, hash, expires_at, revoked_at FROM tokens WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&state.db)
                .await?;
                if let Some(r) = &row {
                    state.tokens.put(id, r.clone());
                }
                row
            }
        };
        // One message for unknown ids and wrong secrets: an attacker learns
        // nothing about which ids exist.
        let invalid = || ApiError::unauthorized("the token is not valid");
        let (subject, role, scope, hash, expires_at, revoked_at) = row.ok_or_else(invalid)?;
        if !secret_matches(secret, &hash) {
            return Err(invalid());
        }
        if revoked_at.is_some() {
            return Err(ApiError::unauthorized(format!("token {id} was revoked")));
        }
        if let Some(exp) = expires_at
            && state.clock.unix_now() >= exp
        {
            return Err(ApiError::unauthorized(format!("token {id} has expired")));
        }
        let role = Role::parse(&role)
            .ok_or_else(|| ApiError::internal(format_args!("token {id} has unknown role")))?;
        let scope: Scope = serde_json::from_str(&scope)
            .map_err(|e| ApiError::internal(format_args!("token {id} scope: {e}")))?;
        Ok(Caller {
            token_id: id.to_string(),
            subject,
            role,
            scope,
        })
    }
}

/// The wall clock token expiry is read from: the system's, plus an offset
/// that only moves forward and only when asked ([`Clock::advance`]), so
/// that a test can let a token expire without waiting for it.
#[derive(Debug, Default)]
pub struct Clock {
    offset_s: std::sync::atomic::AtomicI64,
}

impl Clock {
    /// Seconds since the Unix epoch, as the token checks see them.
    pub fn unix_now(&self) -> i64 {
        crate::db::unix_now() + self.offset_s.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Moves this clock forward by `by` (tests).
    pub fn advance(&self, by: std::time::Duration) {
        let s = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.offset_s
            .fetch_add(s, std::sync::atomic::Ordering::AcqRel);
    }
}
