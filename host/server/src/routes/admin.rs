//! Tokens, host keys, the trust policy, the audit log, health.

use crate::access::{Permission, Role, Scope, mint_token};
use crate::audit::Event;
use crate::auth::Caller;
use crate::error::extract::{Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::names::{check_name, show};
use crate::state::AppState;
use airlock_attest::{Curve, Envelope, SigningKey};
use airlock_audit::{Action, Filter, Timestamp};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use axum::Json as J;

/// `GET /v1/health`: no token needed.
pub async fn health(State(state): State<Arc<AppState>>) -> J<Value> {
    J(json!({ "status": "ok", "gate_runs_running": state.runs.running().len() }))
}

/// `GET /v1/whoami`.
pub async fn whoami(caller: Caller) -> J<Value> {
    J(
        json!({ "token": caller.token_id, "subject": caller.subject, "role": caller.role.as_str(),
              "scope": caller.scope }),
    )
}

/// `POST /v1/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Who it is for (the identity approvals compare).
    pub subject: String,
    /// Its role.
    pub role: String,
    /// Where it applies.
    #[serde(default)]
    pub scope: Scope,
    /// Lifetime in seconds (default: the server's).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

fn check_subject(s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "subject {} must be 1 to 128 characters without control characters",
            show(s)
        )));
    }
    Ok(())
}

/// `POST /v1/tokens`: the token is in this response and nowhere else.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(req): Json<CreateToken>,
) -> ApiResult<(StatusCode, J<Value>)> {
    caller.require_unscoped(Permission::Administer)?;
    check_subject(&req.subject)?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        let known: Vec<&str> = crate::access::ROLES.iter().map(|r| r.as_str()).collect();
        ApiError::bad_request(format!(
            "role {} is not one of {}",
            show(&req.role),
            known.join(", ")
        ))
    })?;
    for m in req.scope.models.iter().flatten() {
        check_name("model", m)?;
    }
    for a in req.scope.aliases.iter().flatten() {
        check_name("alias", a)?;
    }
    let ttl = req
        .ttl_seconds
        .unwrap_or(state.config.default_token_ttl.as_secs());
    if ttl == 0 || ttl > 10 * 365 * 24 * 3600 {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds {ttl} is outside 1..=315360000"
        )));
    }
    let expires = state.clock.unix_now() + ttl as i64;
    let t = mint_token().map_err(|e| ApiError::internal(format_args!("randomness: {e}")))?;
    let mut change = state.begin().await?;
    sqlx::query(
        "INSERT INTO tokens (id, subject, role, scope, hash, created_at, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&t.id)
    .bind(&req.subject)
    .bind(role.as_str())
    .bind(serde_json::to_string(&req.scope).map_err(ApiError::internal)?)
    .bind(&t.hash)
    .bind(crate::db::now())
    .bind(&caller.subject)
    .bind(expires)
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        &caller.subject,
        Action::TokenChange,
        format!("token/{}", t.id),
        json!({ "change": "created", "subject": req.subject, "role": role.as_str(),
                "scope": req.scope, "expires_at": expires, "token": caller.token_id }),
    ));
    state.commit(change).await?;
    Ok((
        StatusCode::CREATED,
        J(
            json!({ "id": t.id, "token": t.token, "subject": req.subject, "role": role.as_str(),
                  "expires_at": expires }),
        ),
    ))
}

/// `GET /v1/tokens`: ids, subjects, roles, scopes; never secrets or hashes.
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<J<Value>> {
    caller.require_unscoped(Permission::Administer)?;
    let rows: Vec<(String, String, String, String, String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT id, subject, role, scope, created_at, expires_at, revoked_at FROM tokens ORDER BY created_at",
    )
    .fetch_all(&state.db)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, subject, role, scope, created, exp, revoked)| {
            json!({ "id": id, "subject": subject, "role": role,
                    "scope": serde_json::from_str::<Value>(&scope).unwrap_or(Value::Null),
                    "created_at": created, "expires_at": exp, "revoked_at": revoked })
        })
        .collect();
    Ok(J(json!({ "items": items })))
}

fn check_token_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::bad_name(format!(
            "token id {} is not 16 hex digits",
            show(id)
        )))
    }
}

/// `POST /v1/tokens/{id}/rotate`: a new secret for the same grant; the old
/// one stops working at once.
pub async fn rotate_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<J<Value>> {
    caller.require_unscoped(Permission::Administer)?;
    check_token_id(&id)?;
    let t = mint_token().map_err(|e| ApiError::internal(format_args!("randomness: {e}")))?;
    let secret = t.token.rsplit('_').next().unwrap_or_default().to_string();
    let mut change = state.begin().await?;
    let r = sqlx::query("UPDATE tokens SET hash = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(crate::access::hash_secret(&secret))
        .bind(&id)
        .execute(&mut *change.tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no live token {id}")));
    }
    change.record(Event::new(
        &caller.subject,
        Action::TokenChange,
        format!("token/{id}"),
        json!({ "change": "rotated", "token": caller.token_id }),
    ));
    state.commit(change).await?;
    state.tokens.forget(&id);
    Ok(J(
        json!({ "id": id, "token": format!("{}{id}_{secret}", crate::access::TOKEN_PREFIX) }),
    ))
}

/// `DELETE /v1/tokens/{id}`: revokes at once.
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<J<Value>> {
    caller.require_unscoped(Permission::Administer)?;
    check_token_id(&id)?;
    let mut change = state.begin().await?;
    let r = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(crate::db::now())
        .bind(&id)
        .execute(&mut *change.tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("no live token {id}")));
    }
    change.record(Event::new(
        &caller.subject,
        Action::TokenChange,
        format!("token/{id}"),
        json!({ "change": "revoked", "token": caller.token_id }),
    ));
    state.commit(change).await?;
    state.tokens.forget(&id);
    Ok(J(json!({ "id": id, "revoked": true })))
}

/// `GET /v1/keys`: the host's public keys (current and retired), by id.
pub async fn list_keys(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<J<Value>> {
    caller.require(Permission::Read)?;
    let rows: Vec<(String, String, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT key_id, public_pem, current, created_at, retired_at FROM host_keys ORDER BY created_at",
    )
    .fetch_all(&state.db)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, pem, cur, created, retired)| {
            json!({ "key_id": id, "public_key": pem, "current": cur != 0, "created_at": created,
                    "retired_at": retired })
        })
        .collect();
    Ok(J(json!({ "items": items })))
}

/// `POST /v1/keys/rotate`: a new current signing key; old attestations stay
/// verifiable by their key id.
pub async fn rotate_key(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<J<Value>> {
    caller.require_unscoped(Permission::Administer)?;
    let key = SigningKey::generate(Curve::P256);
    let id = key.key_id().hex();
    let mut change = state.begin().await?;
    let old: Option<(String,)> = sqlx::query_as("SELECT key_id FROM host_keys WHERE current = 1")
        .fetch_optional(&mut *change.tx)
        .await?;
    sqlx::query("UPDATE host_keys SET current = 0, retired_at = $1 WHERE current = 1")
        .bind(crate::db::now())
        .execute(&mut *change.tx)
        .await?;
    crate::state::insert_host_key(&mut change.tx, &state.config, &key, true).await?;
    change.record(Event::new(
        &caller.subject,
        Action::KeyChange,
        format!("host-key/{id}"),
        json!({ "change": "rotated", "retired": old.as_ref().map(|o| &o.0), "token": caller.token_id }),
    ));
    state.commit(change).await?;
    {
        let mut keys = state.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.all.insert(key.verifying_key());
        keys.current = key;
    }
    Ok(J(json!({ "key_id": id, "retired": old.map(|o| o.0) })))
}

/// `GET /v1/trust-policy`.
pub async fn get_policy(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<J<Value>> {
    caller.require(Permission::Read)?;
    let p = crate::trust::effective_policy(&state)?;
    Ok(J(serde_json::to_value(&p).map_err(ApiError::internal)?))
}

/// `PUT /v1/trust-policy`: a signed policy (DSSE envelope), accepted only
/// if signed by a key the current policy (or, for the first, the trust
/// root) allows for policies, with a higher version.
pub async fn put_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(envelope): Json<Envelope>,
) -> ApiResult<J<Value>> {
    caller.require_unscoped(Permission::Administer)?;
    let current = state
        .policy
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut root = airlock_attest::KeySet::new();
    for k in &state.config.trust_root {
        root.insert(*k);
    }
    let accepted = airlock_attest::policy::accept_policy(current.as_ref(), &root, &envelope)
        .map_err(|e| ApiError::refused("untrusted", format!("trust policy: {e}")))?;
    let signer = envelope
        .signatures
        .first()
        .map(|s| s.keyid.clone())
        .unwrap_or_default();
    let mut change = state.begin().await?;
    sqlx::query(
        "INSERT INTO trust_policies (version, envelope, signer, accepted_at, accepted_by) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(accepted.version as i64)
    .bind(envelope.to_json())
    .bind(&signer)
    .bind(crate::db::now())
    .bind(&caller.subject)
    .execute(&mut *change.tx)
    .await?;
    change.record(Event::new(
        &caller.subject,
        Action::KeyChange,
        "trust-policy",
        json!({ "change": "policy accepted", "version": accepted.version, "signer": signer,
                "token": caller.token_id }),
    ));
    state.commit(change).await?;
    *state.policy.write().unwrap_or_else(|p| p.into_inner()) = Some(accepted.clone());
    Ok(J(
        serde_json::to_value(&accepted).map_err(ApiError::internal)?
    ))
}

/// `GET /v1/audit` filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// From this time (RFC 3339).
    pub since: Option<String>,
    /// Until this time (RFC 3339).
    pub until: Option<String>,
    /// Only entries after this sequence number (paging forward).
    pub after_seq: Option<u64>,
    /// Only entries before this sequence number (paging back from the
    /// newest).
    pub before_seq: Option<u64>,
    /// `oldest` (the default, log order from the start) or `newest` (the
    /// latest entries, newest first).
    pub order: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /v1/audit`: entries with filters, and the log's head.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<J<Value>> {
    caller.require_unscoped(Permission::Administer)?;
    let ts = |what: &str, s: &Option<String>| -> Result<Option<Timestamp>, ApiError> {
        s.as_deref()
            .map(|s| {
                Timestamp::parse(s)
                    .map_err(|e| ApiError::bad_request(format!("{what} {}: {e}", show(s))))
            })
            .transpose()
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is outside 1..=1000"
        )));
    }
    let newest = match q.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order {} is neither `oldest` nor `newest`",
                show(other)
            )));
        }
    };
    if q.before_seq == Some(0) {
        return Err(ApiError::bad_request(
            "before_seq 0: no entry comes before the first",
        ));
    }
    let filter = Filter {
        action: q.action.as_deref().map(Action::from_name),
        actor: q.actor.clone(),
        subject: q.subject.clone(),
        since: ts("since", &q.since)?,
        until: ts("until", &q.until)?,
        seq_from: q.after_seq.map(|s| s + 1),
        seq_to: q.before_seq.map(|s| s - 1),
        limit: Some(limit),
    };
    let log = state.audit_log.clone();
    let (entries, head) = tokio::task::spawn_blocking(move || {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        let entries = if newest {
            log.newest_entries(&filter, limit)?
        } else {
            log.entries(&filter)?
        };
        Ok::<_, ApiError>((entries, log.head().cloned()))
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("audit reader: {e}")))??;
    // A full page may have more beyond it: the sequence number to page on.
    let full = entries.len() == limit;
    let next = |seq: Option<u64>| if full { seq } else { None };
    let (next_after, next_before) = if newest {
        (None, next(entries.last().map(|e| e.seq)))
    } else {
        (next(entries.last().map(|e| e.seq)), None)
    };
    Ok(J(
        json!({ "entries": entries, "head": head, "order": if newest { "newest" } else { "oldest" },
                 "next_after_seq": next_after, "next_before_seq": next_before }),
    ))
}
