//! The server's shared state and how it starts: the data directory, the
//! metadata database, the blob store, the audit log, the host's signing
//! keys, the first admin token and the gate-run workers.

use crate::access::{Role, Scope, mint_token};
use crate::audit::{self, Event};
use crate::config::ServerConfig;
use crate::db::Dialect;
use crate::error::ApiError;
use crate::runs::RunQueue;
use airlock_attest::policy::TrustPolicy;
use airlock_attest::{Curve, Envelope, KeySet, SigningKey};
use airlock_audit::{Action, AuditLog};
use airlock_blobs::{BlobStore, LocalBlobStore};
use airlock_runtime::sandbox::Sandbox;
use serde_json::json;
use sqlx::{AnyPool, Executor};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Everything a handler or worker reaches.
pub struct AppState {
    /// The metadata database.
    pub db: AnyPool,
    /// Which database that is.
    pub dialect: Dialect,
    /// Uploaded bytes, by digest.
    pub blobs: Arc<dyn BlobStore>,
    /// The hash-chained audit log (appended from blocking threads).
    pub audit_log: Arc<Mutex<AuditLog>>,
    /// Serialises state changes, so that audit entries follow commits in
    /// order.
    pub writer: tokio::sync::Mutex<()>,
    /// The host's signing keys.
    pub keys: RwLock<HostKeys>,
    /// The settings it started with.
    pub config: ServerConfig,
    /// The sandbox every gate run uses (shared engine and caches).
    pub sandbox: Sandbox,
    /// Gate runs waiting for, or on, a worker.
    pub runs: RunQueue,
    /// Where the first admin token was written, when this start created it.
    pub admin_token_file: std::sync::OnceLock<PathBuf>,
    /// The accepted trust policy (`None` until one is: see
    /// [`crate::trust::effective_policy`]).
    pub policy: RwLock<Option<TrustPolicy>>,
    /// Served models: warm versions, deployments, monitoring.
    pub serving: crate::serving::Serving,
    /// Set once every production version is warm (`/v2/health/ready`).
    pub serving_ready: std::sync::atomic::AtomicBool,
    /// Token rows recently read (see [`crate::auth::TokenCache`]).
    pub tokens: crate::auth::TokenCache,
    /// The clock token expiry is read from.
    pub clock: crate::auth::Clock,
}

/// Removes what earlier runs left in `<data>/tmp`. The directory is first
/// renamed aside, so that a straggler still writing into it (a gate run
/// interrupted by a stop in the same process, or a process being killed)
/// cannot refill what is being removed; then removed best-effort, with
/// earlier asides: scratch holds only copies, so a failure is reported and
/// never stops the start.
fn sweep_scratch(dir: &Path) {
    let scratch = dir.join("tmp");
    if scratch.exists() {
        let mut tag = [0u8; 8];
        let _ = getrandom::fill(&mut tag);
        let aside = dir.join(format!("tmp.sweep-{}", hex::encode(tag)));
        if let Err(e) = std::fs::rename(&scratch, &aside) {
            tracing::warn!(path = %scratch.display(), error = %e, "moving aside {}: {e}", scratch.display());
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("tmp.sweep-")
                && let Err(err) = std::fs::remove_dir_all(e.path())
            {
                tracing::warn!(path = %e.path().display(), error = %err, "removing {}: {err}", e.path().display());
            }
        }
    }
}

/// A scratch directory under `<data>/tmp`, removed when dropped; whatever
/// a crash leaves there is removed at the next start. Plaintext copies of
/// blobs (bundles being unpacked, validators, datasets) live only here,
/// inside the 0700 data directory, never in the system's shared `/tmp`.
pub fn scratch_dir(state: &AppState, prefix: &str) -> Result<tempfile::TempDir, ApiError> {
    let root = state.config.data_dir.join("tmp");
    private_dir(&root).map_err(|e| ApiError::internal(format_args!("scratch directory: {e}")))?;
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&root)
        .map_err(|e| ApiError::internal(format_args!("scratch directory: {e}")))
}

/// Creates `dir` (and missing parents) mode 0700 and sets 0700 on `dir`
/// itself, whatever the umask: every directory the server makes in its
/// data directory is its own alone.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Sets mode 0600 on the metadata database and its `-wal` and `-shm` files
/// where they exist. SQLite creates the other two with the database
/// file's mode, which [`crate::db::sqlite_file`] makes 0600 before SQLite
/// first opens it; this also repairs a data directory an older server
/// left 0644.
fn private_db_files(dir: &Path) -> Result<(), StartError> {
    for name in ["airlock.db", "airlock.db-wal", "airlock.db-shm"] {
        let path = dir.join(name);
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StartError::io(&path, e)),
        }
    }
    Ok(())
}

/// The host's keys: the current one signs attestations; every key it ever
/// had still verifies them (rotation keeps old attestations checkable).
pub struct HostKeys {
    /// Signs new attestations.
    pub current: SigningKey,
    /// Every host key, current and retired.
    pub all: KeySet,
}

impl AppState {
    /// Opens or initialises the data directory and everything in it.
    pub async fn open(config: ServerConfig) -> Result<Arc<AppState>, StartError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StartError::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StartError::io(dir, e))?;
        let url = match &config.database_url {
            Some(u) => u.clone(),
            None => {
                crate::db::sqlite_file(dir).map_err(|e| StartError::io(dir, e))?;
                crate::db::sqlite_url(dir)
            }
        };
        let (db, dialect) = crate::db::open(&url)
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
        if config.database_url.is_none() {
            private_db_files(dir)?;
        }
        let blobs = LocalBlobStore::open(&dir.join("blobs"), config.key_ring.clone())
            .map_err(|e| StartError::Blobs(e.to_string()))?;
        blobs
            .sweep_temporaries()
            .map_err(|e| StartError::Blobs(e.to_string()))?;
        let audit_path = dir.join("audit.jsonl");
        let audit_log =
            AuditLog::open(&audit_path).map_err(|e| StartError::Audit(e.to_string()))?;
        let audit_log = Arc::new(Mutex::new(audit_log));
        // Entries a crash left staged go into the log before anything else.
        audit::flush(&db, &audit_log)
            .await
            .map_err(|e| StartError::Audit(e.message))?;
        let keys = load_host_keys(&db, &config).await?;
        let mut sandbox_config = config.sandbox.clone();
        if config.key_ring.is_some() {
            // Compiled code (of pre-initialised snapshots too) holds what
            // the encrypted blobs hold: with encryption at rest it stays in
            // memory, never in an on-disk compile cache.
            sandbox_config.cache_dir = None;
        }
        let sandbox =
            Sandbox::new(sandbox_config).map_err(|e| StartError::Sandbox(e.to_string()))?;
        let runs = RunQueue::new(config.queue_depth);
        // Scratch left by a crash (plaintext copies of blobs) goes first;
        // so do bundle snapshots whose process is gone (their locks free).
        sweep_scratch(dir);
        let snapshots = crate::bundles::snapshots_dir(dir);
        if snapshots.exists() {
            airlock_runtime::bundle::sweep(&snapshots);
        }
        let serving = crate::serving::Serving::new(&config.serving)
            .map_err(|e| StartError::Sandbox(format!("starting prediction threads: {e}")))?;
        let policy = load_policy(&db).await?;
        let state = Arc::new(AppState {
            db,
            dialect,
            blobs: Arc::new(blobs),
            audit_log,
            writer: tokio::sync::Mutex::new(()),
            keys: RwLock::new(keys),
            sandbox,
            runs,
            admin_token_file: std::sync::OnceLock::new(),
            policy: RwLock::new(policy),
            serving,
            serving_ready: std::sync::atomic::AtomicBool::new(false),
            tokens: crate::auth::TokenCache::default(),
            clock: crate::auth::Clock::default(),
            config,
        });
        if let Some(path) = bootstrap_admin(&state).await? {
            let _ = state.admin_token_file.set(path);
        }
        crate::runs::mark_interrupted(&state)
            .await
            .map_err(|e| StartError::Db(e.message))?;
        Ok(state)
    }

    /// Begins a state change: holds the writer lock and opens a transaction.
    pub async fn begin(&self) -> Result<Change<'_>, ApiError> {
        let guard = self.writer.lock().await;
        // See `Dialect::begin_write`: SQLite's write lock up front; on
        // PostgreSQL, an advisory lock serialising writers across servers.
        let mut tx = self.db.begin_with(self.dialect.begin_write()).await?;
        if let Some(lock) = self.dialect.write_lock() {
            (&mut *tx).execute(lock.as_str()).await?;
        }
        Ok(Change {
            _guard: guard,
            tx,
            events: Vec::new(),
        })
    }

    /// Commits a change with its audit entries and returns once they are
    /// durable in the log.
    pub async fn commit(&self, mut change: Change<'_>) -> Result<(), ApiError> {
        audit::stage(&mut change.tx, &change.events).await?;
        change.tx.commit().await?;
        audit::flush(&self.db, &self.audit_log).await?;
        Ok(())
    }

    /// The host's key set (for verifying attestations).
    pub fn key_set(&self) -> KeySet {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .all
            .clone()
    }
}

/// A state change in progress: a transaction, the writer lock, and the
/// audit entries it will commit with.
pub struct Change<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    /// The transaction.
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    events: Vec<Event>,
}

impl Change<'_> {
    /// Records an audit entry for this change.
    pub fn record(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or a file in it.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata database.
    #[error("metadata database: {0}")]
    Db(String),
    /// The blob store.
    #[error("blob store: {0}")]
    Blobs(String),
    /// The audit log.
    #[error("audit log: {0}")]
    Audit(String),
    /// The host keys.
    #[error("host keys: {0}")]
    Keys(String),
    /// The sandbox.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Binding or serving.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// The data directory is in use by another server (or its lock file
    /// could not be taken).
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

impl StartError {
    fn io(path: &Path, source: std::io::Error) -> StartError {
        StartError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Loads the host keys, creating the first one on a fresh data directory.
async fn load_host_keys(db: &AnyPool, config: &ServerConfig) -> Result<HostKeys, StartError> {
    let keyerr = |e: String| StartError::Keys(e);
    let rows: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT key_id, private_key, sealed, current FROM host_keys")
            .fetch_all(db)
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
    if rows.is_empty() {
        let key = SigningKey::generate(Curve::P256);
        let mut tx = db
            .begin()
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
        insert_host_key(&mut tx, config, &key, true)
            .await
            .map_err(|e| keyerr(e.message))?;
        tx.commit()
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
        let mut all = KeySet::new();
        all.insert(key.verifying_key());
        return Ok(HostKeys { current: key, all });
    }
    let mut all = KeySet::new();
    let mut current = None;
    for (id, private, sealed, is_current) in rows {
        let pem = open_private(config, &id, &private, sealed != 0).map_err(keyerr)?;
        let key = SigningKey::from_pem(&pem).map_err(|e| keyerr(format!("key {id}: {e}")))?;
        all.insert(key.verifying_key());
        if is_current != 0 {
            current = Some(key);
        }
    }
    let current = current.ok_or_else(|| keyerr("no current host key".into()))?;
    Ok(HostKeys { current, all })
}

/// Decrypts (or reads) a stored private key.
fn open_private(
    config: &ServerConfig,
    id: &str,
    stored: &str,
    sealed: bool,
) -> Result<String, String> {
    if !sealed {
        return Ok(stored.to_string());
    }
    let ring = config.key_ring.as_ref().ok_or_else(|| {
        format!("host key {id} is encrypted at rest but no data key ring is configured")
    })?;
    let bytes = hex::decode(stored).map_err(|e| format!("host key {id}: {e}"))?;
    let pem = ring
        .open_sealed(&bytes, format!("airlock host key {id}").as_bytes())
        .map_err(|e| format!("host key {id}: {e}"))?;
    String::from_utf8(pem).map_err(|e| format!("host key {id}: {e}"))
}

/// Stores a host key (sealed under the key ring when one is configured).
pub async fn insert_host_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    config: &ServerConfig,
    key: &SigningKey,
    current: bool,
) -> Result<(), ApiError> {
    let id = key.key_id().hex();
    let pem = key.to_pkcs8_pem();
    let (stored, sealed) = match &config.key_ring {
        Some(ring) => (
            hex::encode(ring.seal(pem.as_bytes(), format!("airlock host key {id}").as_bytes())),
            1_i64,
        ),
        None => (pem.to_string(), 0),
    };
    sqlx::query(
        "INSERT INTO host_keys (key_id, public_pem, private_key, sealed, current, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(key.verifying_key().to_pem())
    .bind(stored)
    .bind(sealed)
    .bind(i64::from(current))
    .bind(crate::db::now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The newest accepted trust policy, read back from its stored envelope
/// (its signature chain was checked when it was accepted).
async fn load_policy(db: &AnyPool) -> Result<Option<TrustPolicy>, StartError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT envelope FROM trust_policies ORDER BY version DESC LIMIT 1")
            .fetch_optional(db)
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
    let Some((env,)) = row else { return Ok(None) };
    let env = Envelope::from_json(&env)
        .map_err(|e| StartError::Keys(format!("stored trust policy: {e}")))?;
    let policy = TrustPolicy::from_json(&env.payload)
        .map_err(|e| StartError::Keys(format!("stored trust policy: {e}")))?;
    Ok(Some(policy))
}

/// On a fresh data directory, mints the first admin token and writes it to
/// `<data>/admin.token` (0600); returns that path when it did.
async fn bootstrap_admin(state: &Arc<AppState>) -> Result<Option<PathBuf>, StartError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens")
        .fetch_one(&state.db)
        .await
        .map_err(|e| StartError::Db(e.to_string()))?;
    if count > 0 {
        return Ok(None);
    }
    let token = mint_token().map_err(|e| StartError::Keys(format!("randomness: {e}")))?;
    let path = state.config.data_dir.join("admin.token");
    let tmp = state.config.data_dir.join("admin.token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StartError::io(&tmp, e))?;
    f.write_all(format!("{}\n", token.token).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StartError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StartError::io(&path, e))?;
    let mut change = state.begin().await.map_err(|e| StartError::Db(e.message))?;
    sqlx::query(
        "INSERT INTO tokens (id, subject, role, scope, hash, created_at, created_by, expires_at)
         VALUES ($1, 'admin', $2, $3, $4, $5, 'server', NULL)",
    )
    .bind(&token.id)
    .bind(Role::Admin.as_str())
    .bind(serde_json::to_string(&Scope::default()).unwrap_or_else(|_| "{}".into()))
    .bind(&token.hash)
    .bind(crate::db::now())
    .execute(&mut *change.tx)
    .await
    .map_err(|e| StartError::Db(e.to_string()))?;
    change.record(Event::new(
        "server",
        Action::TokenChange,
        format!("token/{}", token.id),
        json!({ "change": "created", "role": "admin", "subject": "admin", "first_start": true }),
    ));
    state
        .commit(change)
        .await
        .map_err(|e| StartError::Db(e.message))?;
    Ok(Some(path))
}

/// What a data-key rotation rewrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Blobs re-encrypted under the current key.
    pub blobs: usize,
    /// Host private keys re-sealed under the current key.
    pub host_keys: usize,
}

/// Re-encrypts every blob and re-seals every host key under the key ring's
/// current key, so that older keys can then be dropped from the ring. Run it
/// with the server stopped (it takes the data directory as the server
/// would); it records a `key_change` audit entry. Each blob is rewritten
/// crash-safely, so an interrupted rotation can simply be run again.
pub async fn rotate_data_keys(config: ServerConfig) -> Result<Rotated, StartError> {
    let ring = config
        .key_ring
        .clone()
        .ok_or_else(|| StartError::Keys("no data key ring is configured".into()))?;
    // Never under a running server.
    std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::io(&config.data_dir, e))?;
    let _lock = crate::lock::DataDirLock::acquire(&config.data_dir)?;
    let state = AppState::open(config).await?;
    let blobs = LocalBlobStore::open(&state.config.data_dir.join("blobs"), Some(ring.clone()))
        .map_err(|e| StartError::Blobs(e.to_string()))?;
    let rewritten = blobs
        .rotate()
        .map_err(|e| StartError::Blobs(e.to_string()))?;
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT key_id, private_key, sealed FROM host_keys")
            .fetch_all(&state.db)
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
    let mut change = state.begin().await.map_err(|e| StartError::Db(e.message))?;
    let mut resealed = 0;
    for (id, stored, sealed) in rows {
        let pem =
            open_private(&state.config, &id, &stored, sealed != 0).map_err(StartError::Keys)?;
        let again =
            hex::encode(ring.seal(pem.as_bytes(), format!("airlock host key {id}").as_bytes()));
        sqlx::query("UPDATE host_keys SET private_key = $1, sealed = 1 WHERE key_id = $2")
            .bind(again)
            .bind(&id)
            .execute(&mut *change.tx)
            .await
            .map_err(|e| StartError::Db(e.to_string()))?;
        resealed += 1;
    }
    change.record(Event::new(
        "server",
        Action::KeyChange,
        "data-keys",
        json!({ "change": "data keys rotated", "current": ring.current_id(),
                "blobs_rewritten": rewritten, "host_keys_resealed": resealed }),
    ));
    state
        .commit(change)
        .await
        .map_err(|e| StartError::Db(e.message))?;
    Ok(Rotated {
        blobs: rewritten,
        host_keys: resealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_left_by_a_crash_is_swept_and_a_failed_sweep_never_stops_a_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("tmp/run-1/bundle")).unwrap();
        std::fs::write(d.join("tmp/run-1/bundle/model.json"), b"plaintext").unwrap();
        std::fs::create_dir_all(d.join("tmp.sweep-0123/x")).unwrap();
        std::fs::write(d.join("keep.db"), b"db").unwrap();
        sweep_scratch(d);
        let left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["keep.db".to_string()]);
        // Nothing to sweep: nothing happens.
        sweep_scratch(d);
        assert!(d.join("keep.db").exists());
    }
}
