//! The metadata database: SQLite through `sqlx`, in WAL mode with full
//! sync, so a committed change survives power loss. The SQL is kept to
//! what PostgreSQL also runs (`$n` parameters, `TEXT`/`INTEGER`/`BIGINT`,
//! no SQLite-only functions) so that a PostgreSQL pool can take over.
//!
//! Nothing here points at a blob that is not durable: callers publish the
//! blob first (fsync + rename) and record it after.

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// The schema, applied idempotently at every start.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS blobs (
        digest TEXT PRIMARY KEY, size BIGINT NOT NULL,
        created_at TEXT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS plugins (
        digest TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,
        world TEXT NOT NULL, contract TEXT NOT NULL, size BIGINT NOT NULL,
        signer TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        UNIQUE (name, version))",
    "CREATE TABLE IF NOT EXISTS models (
        name TEXT PRIMARY KEY, gate TEXT, approvals_required INTEGER NOT NULL,
        description TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL,
        plugin TEXT NOT NULL, bundle_archive TEXT, bundle_digest TEXT, bundle_signer TEXT,
        provenance TEXT NOT NULL, submitter TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (model, version))",
    "CREATE TABLE IF NOT EXISTS gates (
        name TEXT NOT NULL, version BIGINT NOT NULL, digest TEXT NOT NULL,
        toml TEXT NOT NULL, envelope TEXT NOT NULL, signer TEXT NOT NULL,
        created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        PRIMARY KEY (name, version))",
    "CREATE TABLE IF NOT EXISTS gate_current (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, seq INTEGER NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
        gate TEXT NOT NULL, gate_version BIGINT NOT NULL, gate_digest TEXT NOT NULL,
        baseline TEXT, status TEXT NOT NULL, reason TEXT, report TEXT, attestation TEXT,
        seed TEXT, reproduces TEXT,
        key_id TEXT, requested_by TEXT NOT NULL, created_at TEXT NOT NULL,
        started_at TEXT, finished_at TEXT)",
    "CREATE INDEX IF NOT EXISTS runs_by_version ON runs (model, version, seq)",
    "CREATE TABLE IF NOT EXISTS approvals (
        model TEXT NOT NULL, version TEXT NOT NULL, approver TEXT NOT NULL,
        comment TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (model, version, approver))",
    "CREATE TABLE IF NOT EXISTS aliases (
        model TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,
        updated_at TEXT NOT NULL, updated_by TEXT NOT NULL, PRIMARY KEY (model, alias))",
    "CREATE TABLE IF NOT EXISTS history (
        seq INTEGER PRIMARY KEY, model TEXT NOT NULL, alias TEXT NOT NULL,
        version TEXT NOT NULL, action TEXT NOT NULL, run_id TEXT, actor TEXT NOT NULL,
        reason TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (
        id TEXT PRIMARY KEY, subject TEXT NOT NULL, role TEXT NOT NULL, scope TEXT NOT NULL,
        hash TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        expires_at BIGINT, revoked_at TEXT)",
    "CREATE TABLE IF NOT EXISTS host_keys (
        key_id TEXT PRIMARY KEY, public_pem TEXT NOT NULL, private_key TEXT NOT NULL,
        sealed INTEGER NOT NULL, current INTEGER NOT NULL, created_at TEXT NOT NULL,
        retired_at TEXT)",
    "CREATE TABLE IF NOT EXISTS trust_policies (
        version BIGINT PRIMARY KEY, envelope TEXT NOT NULL, signer TEXT NOT NULL,
        accepted_at TEXT NOT NULL, accepted_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_outbox (
        op TEXT PRIMARY KEY, seq INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, details TEXT NOT NULL, time TEXT NOT NULL)",
];

/// Opens (creating if needed) the database at `path` and applies the schema.
pub async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    for stmt in SCHEMA {
        sqlx::query(stmt).execute(&pool).await?;
    }
    Ok(pool)
}

/// The current time as RFC 3339 UTC (the audit log's format).
pub fn now() -> String {
    airlock_audit::utc_now()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
