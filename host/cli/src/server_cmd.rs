//! `airlock server`: resolves the control plane's settings from flags, the
//! environment and the configuration file's `[server]` section (one rule:
//! flags > environment > file > embedded defaults), starts it on a
//! multi-thread runtime owned by this command, and stops it gracefully on
//! SIGINT or SIGTERM. The settings and their precedence rule are in
//! `server_cmd/settings.rs`; the log subscriber is in `server_cmd/logs.rs`.

mod logs;
mod settings;

pub(crate) use settings::ServerFlags;
use settings::{DataKeys, apply_serving, resolve};

use crate::config::HostConfig;
use crate::exit::CliError;
use airlock_attest::VerifyingKey;
use airlock_blobs::KeyRing;
use airlock_runtime::sandbox::SandboxConfig;
use airlock_server::ServerConfig;
use std::path::{Path, PathBuf};

fn load_trust_root(paths: &[PathBuf]) -> Result<Vec<VerifyingKey>, CliError> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| {
                CliError::input(format!("cannot read trust-root key {}: {e}", p.display()))
            })?;
            VerifyingKey::from_pem(&text)
                .map_err(|e| CliError::input(format!("trust-root key {}: {e}", p.display())))
        })
        .collect()
}

fn load_key_ring(keys: &DataKeys) -> Result<KeyRing, CliError> {
    match keys {
        DataKeys::File(p) => KeyRing::from_file(p)
            .map_err(|e| CliError::input(format!("data keys {}: {e}", p.display()))),
        DataKeys::Value(v) => {
            KeyRing::from_env_value(v).map_err(|e| CliError::input(format!("data keys: {e}")))
        }
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader polling for it never sees half of it.
fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("url.tmp");
    // 0600 whatever the umask, like everything in the data directory.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::input(format!("writing {}: {e}", path.display())))
}

/// `airlock server`: runs until SIGINT or SIGTERM.
pub(crate) fn run(
    cfg: &HostConfig,
    sandbox: SandboxConfig,
    flags: &ServerFlags,
) -> Result<(), CliError> {
    logs::init()?;
    let env = |k: &str| std::env::var(k).ok();
    let r = resolve(flags, &env, &cfg.server)?;
    let mut config = ServerConfig::new(r.data_dir.clone(), sandbox, cfg.data);
    config.listen = r.listen;
    config.workers = r.workers;
    config.queue_depth = r.queue_depth;
    config.max_upload_bytes = r.max_upload_bytes;
    config.trust_root = load_trust_root(&r.trust_root)?;
    config.key_ring = r.data_keys.as_ref().map(load_key_ring).transpose()?;
    config.tls = r.tls.clone();
    apply_serving(&mut config.serving, &cfg.serving, flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("airlock-server")
        .build()
        .map_err(|e| CliError::input(format!("starting the async runtime: {e}")))?;
    let done = if flags.rotate_data_keys {
        runtime.block_on(rotate(config))
    } else {
        runtime.block_on(serve(config))
    };
    // A stop cut short leaves gate workers mid-run; they are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    done
}

/// `airlock server --rotate-data-keys`.
async fn rotate(config: ServerConfig) -> Result<(), CliError> {
    if config.key_ring.is_none() {
        return Err(CliError::input(
            "--rotate-data-keys needs the data key ring (--data-keys, AIRLOCK_DATA_KEYS or AIRLOCK_DATA_KEYS_FILE)",
        ));
    }
    let done = airlock_server::state::rotate_data_keys(config)
        .await
        .map_err(|e| CliError::input(format!("rotating the data keys: {e}")))?;
    out!(
        "re-encrypted {} blobs and re-sealed {} host keys under the current data key",
        done.blobs,
        done.host_keys
    );
    Ok(())
}

async fn serve(config: ServerConfig) -> Result<(), CliError> {
    let data_dir = config.data_dir.clone();
    let no_trust_root = config.trust_root.is_empty();
    let running = airlock_server::start(config)
        .await
        .map_err(|e| CliError::input(format!("the server could not start: {e}")))?;
    let url = format!("{}://{}", running.scheme(), running.addr);
    out!("listening on {url}");
    out!("data directory: {}", data_dir.display());
    if let Some(p) = &running.admin_token_file {
        out!("admin token written to {} (0600)", p.display());
    }
    let has_policy = running
        .state
        .policy
        .read()
        .map(|p| p.is_some())
        .unwrap_or(true);
    if no_trust_root && !has_policy {
        eprintln!(
            "warning: no --trust-root and no trust policy: no gate can be published (and so no model promoted) until a server started with --trust-root KEY.pub accepts one (see `airlock key generate`)"
        );
    }
    let url_file = data_dir.join("server.url");
    write_atomically(&url_file, &format!("{url}\n"))?;
    let signal = wait_for_signal().await;
    let draining = running.begin_stop();
    eprintln!("airlock server: {signal}; {}", describe(&draining));
    let stopped = running
        .stop_unless(async {
            let again = wait_for_signal().await;
            eprintln!(
                "airlock server: {again} again; stopping at once (gate runs still running are recorded as interrupted)"
            );
        })
        .await;
    let _ = std::fs::remove_file(&url_file);
    stopped.map_err(|e| CliError::input(format!("stopping the server: {e}")))?;
    eprintln!("airlock server: stopped");
    Ok(())
}

/// What a stop waits for, in one line for the operator.
fn describe(d: &airlock_server::Draining) -> String {
    if d.running.is_empty() {
        return "stopping (no gate run is running; new requests get 503)".into();
    }
    format!(
        "stopping: waiting up to {} s for {} gate run{} to finish ({}); new requests get 503. Press Ctrl-C again (or send SIGTERM) to stop at once: they are recorded as interrupted",
        d.grace.as_secs(),
        d.running.len(),
        if d.running.len() == 1 { "" } else { "s" },
        d.running.join(", ")
    )
}

/// Waits for SIGINT or SIGTERM and names the one that came.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
