//! Audit entries for every state change, durable before the API answers.
//!
//! A change and its audit entry must not part ways in a crash. The entry is
//! staged in the database's `audit_outbox` inside the change's own
//! transaction; after the commit it is appended to the hash-chained JSON
//! Lines log (`airlock-audit`, fdatasync'd) and only then removed from the
//! outbox. A crash between the two leaves the entry in the outbox, and the
//! next start appends it (once: each entry carries its `op` id, and ops
//! already in the log's tail are skipped) before serving anything.

use crate::error::ApiError;
use airlock_audit::{Action, AuditLog, Filter};
use serde_json::{Value, json};
use sqlx::{Any, AnyPool, Transaction};
use std::sync::{Arc, Mutex};

/// One state change to record.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who did it (a token's subject, or `server` for the server's own actions).
    pub actor: String,
    /// What kind of change.
    pub action: Action,
    /// What it changed (`model/version`, `token/<id>`, ...).
    pub subject: String,
    /// The particulars (digests, verdicts, reasons); JSON integers stay
    /// within ±(2^53−1).
    pub details: Value,
}

impl Event {
    /// An event.
    pub fn new(actor: &str, action: Action, subject: impl Into<String>, details: Value) -> Event {
        Event {
            actor: actor.to_string(),
            action,
            subject: subject.into(),
            details,
        }
    }
}

/// Stages `events` in the transaction's outbox (they commit with it).
pub async fn stage(tx: &mut Transaction<'_, Any>, events: &[Event]) -> Result<(), ApiError> {
    for e in events {
        let mut op = [0u8; 12];
        getrandom::fill(&mut op)
            .map_err(|e| ApiError::internal(format_args!("randomness: {e}")))?;
        let op = hex::encode(op);
        let mut details = e.details.clone();
        if let Value::Object(m) = &mut details {
            m.insert("op".into(), json!(op));
        } else {
            details = json!({ "value": details, "op": op });
        }
        sqlx::query(
            "INSERT INTO audit_outbox (op, seq, actor, action, subject, details, time)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_outbox), $2, $3, $4, $5, $6)",
        )
        .bind(&op)
        .bind(&e.actor)
        .bind(e.action.as_str())
        .bind(&e.subject)
        .bind(details.to_string())
        .bind(crate::db::now())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Appends every staged entry to the log, oldest first, removing each from
/// the outbox once it is durable. Entries already in the log (a crash after
/// the append, before the removal) are not appended twice.
pub async fn flush(db: &AnyPool, log: &Arc<Mutex<AuditLog>>) -> Result<usize, ApiError> {
    let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
        "SELECT op, actor, action, subject, details, time FROM audit_outbox ORDER BY seq",
    )
    .fetch_all(db)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let log = log.clone();
    let pending = rows.clone();
    let appended = tokio::task::spawn_blocking(move || -> Result<Vec<String>, ApiError> {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let recent: Vec<String> = match log.head() {
            Some(h) => log
                .entries(&Filter {
                    seq_from: Some(h.seq.saturating_sub(pending.len() as u64 + 1)),
                    ..Filter::default()
                })?
                .into_iter()
                .filter_map(|e| {
                    e.details
                        .get("op")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect(),
            None => Vec::new(),
        };
        let mut done = Vec::new();
        for (op, actor, action, subject, details, time) in pending {
            if !recent.contains(&op) {
                let details: Value = serde_json::from_str(&details)
                    .map_err(|e| ApiError::internal(format_args!("outbox entry {op}: {e}")))?;
                log.append(&actor, Action::from_name(&action), &subject, details, &time)?;
            }
            done.push(op);
        }
        Ok(done)
    })
    .await
    .map_err(|e| ApiError::internal(format_args!("audit writer: {e}")))??;
    for op in &appended {
        sqlx::query("DELETE FROM audit_outbox WHERE op = $1")
            .bind(op)
            .execute(db)
            .await?;
    }
    Ok(appended.len())
}
