//! The metadata database, through `sqlx`'s `Any` driver: SQLite by default
//! (a file in the data directory, in WAL mode with full sync, so a
//! committed change survives power loss) or PostgreSQL when
//! [`crate::ServerConfig::database_url`] names one. The SQL is kept to what
//! both run (`$n` parameters, `TEXT`/`BIGINT` columns, no dialect-only
//! functions); the few differences live in [`Dialect`].
//!
//! Nothing here points at a blob that is not durable: callers publish the
//! blob first (fsync + rename) and record it after.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::path::Path;

/// The database behind the pool, for the little SQL that differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (a file in the data directory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The key of the PostgreSQL advisory lock every write transaction takes
/// (and the schema set-up), so that two servers on one database serialise
/// their writers as the in-process writer lock does within one.
pub const WRITE_LOCK_KEY: i64 = 0x0061_6972_6c6f_636b; // "airlock"

impl Dialect {
    /// The dialect a database URL names.
    pub fn of(url: &str) -> Result<Dialect, sqlx::Error> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Dialect::Postgres)
        } else {
            Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL (expected sqlite: or postgres:): {}",
                    redact(url)
                )
                .into(),
            ))
        }
    }

    /// The statement that opens a write transaction. SQLite's IMMEDIATE
    /// takes the write lock up front: a deferred transaction that reads and
    /// then writes fails with "database is locked" (no busy wait) when
    /// another connection wrote in between. On PostgreSQL a plain
    /// transaction, then [`Dialect::write_lock`].
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// What to run first inside a write transaction, if anything: on
    /// PostgreSQL, the advisory lock that serialises writers across
    /// processes (released at commit or rollback).
    pub fn write_lock(self) -> Option<String> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => {
                // `::TEXT`: the function returns `void`, which the Any
                // driver does not decode.
                Some(format!(
                    "SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})::TEXT"
                ))
            }
        }
    }
}

impl Dialect {
    /// A schema statement in this dialect. On PostgreSQL every `TEXT`
    /// column gets the "C" collation: byte order, as SQLite's `BINARY`
    /// compares, so that ordering and keyset paging (`WHERE name > $1 ORDER
    /// BY name`) do not depend on the cluster's locale.
    pub fn ddl(self, stmt: &str) -> String {
        match self {
            Dialect::Sqlite => stmt.to_string(),
            Dialect::Postgres => stmt.replace(" TEXT", " TEXT COLLATE \"C\""),
        }
    }
}

/// A database URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Creates `airlock.db` in the data directory, mode 0600, if it is missing,
/// so that SQLite (which gives its `-wal` and `-shm` files the database
/// file's mode) never creates any of the three readable by others,
/// whatever the umask. An empty file is a valid empty database.
pub fn sqlite_file(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data_dir.join("airlock.db"))
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The default database: `airlock.db` in the data directory (created if
/// missing). The path is percent-encoded, as sqlx decodes it, so that a
/// `?`, `#`, `%` or space in it survives.
pub fn sqlite_url(data_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // Absolute and without `..` (a relative first component would parse as
    // the URL's host; URL parsing folds `..` away).
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let path = dir.join("airlock.db");
    let mut encoded = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("sqlite://{encoded}?mode=rwc")
}

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
        name TEXT PRIMARY KEY, gate TEXT, approvals_required BIGINT NOT NULL,
        description TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS versions (
        model TEXT NOT NULL, version TEXT NOT NULL, seq BIGINT NOT NULL,
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
        id TEXT PRIMARY KEY, seq BIGINT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
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
        seq BIGINT PRIMARY KEY, model TEXT NOT NULL, alias TEXT NOT NULL,
        version TEXT NOT NULL, action TEXT NOT NULL, run_id TEXT, actor TEXT NOT NULL,
        reason TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (
        id TEXT PRIMARY KEY, subject TEXT NOT NULL, role TEXT NOT NULL, scope TEXT NOT NULL,
        hash TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
        expires_at BIGINT, revoked_at TEXT)",
    "CREATE TABLE IF NOT EXISTS host_keys (
        key_id TEXT PRIMARY KEY, public_pem TEXT NOT NULL, private_key TEXT NOT NULL,
        sealed BIGINT NOT NULL, current BIGINT NOT NULL, created_at TEXT NOT NULL,
        retired_at TEXT)",
    "CREATE TABLE IF NOT EXISTS trust_policies (
        version BIGINT PRIMARY KEY, envelope TEXT NOT NULL, signer TEXT NOT NULL,
        accepted_at TEXT NOT NULL, accepted_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS serving_policies (
        model TEXT PRIMARY KEY, policy TEXT NOT NULL, secrets TEXT,
        updated_at TEXT NOT NULL, updated_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS serving_canaries (
        model TEXT PRIMARY KEY, candidate TEXT NOT NULL, stable TEXT NOT NULL,
        started_at TEXT NOT NULL, started_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_outbox (
        op TEXT PRIMARY KEY, seq BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, details TEXT NOT NULL, time TEXT NOT NULL)",
];

/// Opens the database at `url` (creating an SQLite file if needed) and
/// applies the schema.
pub async fn open(url: &str) -> Result<(AnyPool, Dialect), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::of(url)?;
    let mut options = AnyPoolOptions::new().max_connections(4);
    if dialect == Dialect::Sqlite {
        options = options.after_connect(|conn, _meta| {
            Box::pin(async move {
                let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode=WAL")
                    .fetch_one(&mut *conn)
                    .await?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(sqlx::Error::Configuration(
                        format!("SQLite did not switch to WAL (journal_mode is {mode})").into(),
                    ));
                }
                for pragma in [
                    "PRAGMA synchronous=FULL",
                    "PRAGMA foreign_keys=ON",
                    "PRAGMA busy_timeout=10000",
                ] {
                    conn.execute(pragma).await?;
                }
                Ok(())
            })
        });
    }
    let pool = options.connect(url).await?;
    let mut tx = pool.begin().await?;
    if let Some(lock) = dialect.write_lock() {
        // Two servers starting on one PostgreSQL database at once would race
        // on `CREATE TABLE IF NOT EXISTS`; DDL is transactional there.
        (&mut *tx).execute(lock.as_str()).await?;
    }
    for stmt in SCHEMA {
        (&mut *tx).execute(dialect.ddl(stmt).as_str()).await?;
    }
    tx.commit().await?;
    Ok((pool, dialect))
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
