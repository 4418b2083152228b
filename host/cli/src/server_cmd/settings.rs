//! `airlock server`'s settings: what the flags, the environment and the
//! configuration file's `[server]` and `[serving]` sections say, merged by
//! one rule (flags > environment > file > embedded defaults) before any
//! file they name is read. Apart from `server_cmd.rs` (which starts and
//! stops the server) so that the precedence rule and its tests are in one
//! place.

use crate::config::{ServerSection, ServingSection};
use crate::exit::CliError;
use airlock_runtime::sandbox::SandboxConfig;
use airlock_server::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What the command line said (`None`: not given).
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerFlags {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) workers: Option<usize>,
    pub(crate) queue_depth: Option<usize>,
    pub(crate) max_upload_bytes: Option<u64>,
    pub(crate) trust_root: Vec<PathBuf>,
    pub(crate) data_keys: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) rotate_data_keys: bool,
    pub(crate) no_monitoring: bool,
    pub(crate) predict_threads: Option<usize>,
    pub(crate) max_in_flight: Option<usize>,
}

/// Where the data key ring comes from.
#[derive(Clone, PartialEq)]
pub(crate) enum DataKeys {
    /// A key file (`--data-keys`, `AIRLOCK_DATA_KEYS_FILE`, `data_keys_file`).
    File(PathBuf),
    /// The key ring itself (`AIRLOCK_DATA_KEYS`).
    Value(String),
}

impl std::fmt::Debug for DataKeys {
    // The value is key material: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataKeys::File(p) => write!(f, "File({})", p.display()),
            DataKeys::Value(_) => write!(f, "Value(..)"),
        }
    }
}

/// The settings after the precedence rule, before any file is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) data_dir: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) queue_depth: usize,
    pub(crate) max_upload_bytes: u64,
    pub(crate) trust_root: Vec<PathBuf>,
    pub(crate) data_keys: Option<DataKeys>,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

/// An environment variable, unset when empty.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// Parses `name`'s value, naming the variable when it does not parse.
fn env_parse<T: std::str::FromStr>(
    env: Env<'_>,
    name: &str,
    what: &str,
) -> Result<Option<T>, CliError> {
    env_var(env, name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| CliError::input(format!("{name}={v:?} is not {what}")))
        })
        .transpose()
}

/// The default data directory: `$XDG_DATA_HOME/airlock`, else
/// `~/.local/share/airlock`.
fn default_data_dir(env: Env<'_>) -> Option<PathBuf> {
    if let Some(d) = env_var(env, "XDG_DATA_HOME") {
        return Some(PathBuf::from(d).join("airlock"));
    }
    env_var(env, "HOME").map(|h| PathBuf::from(h).join(".local/share/airlock"))
}

/// Applies the one rule, flags > environment > `[server]` > defaults, to
/// every setting, and checks the counts.
pub(crate) fn resolve(
    flags: &ServerFlags,
    env: Env<'_>,
    file: &ServerSection,
) -> Result<Resolved, CliError> {
    let defaults = ServerConfig::new(PathBuf::new(), SandboxConfig::default(), Default::default());
    let data_dir = flags
        .data_dir
        .clone()
        .or_else(|| env_var(env, "AIRLOCK_DATA_DIR").map(PathBuf::from))
        .or_else(|| file.data_dir.clone())
        .or_else(|| default_data_dir(env))
        .ok_or_else(|| {
            CliError::input(
                "no data directory: pass --data-dir (neither XDG_DATA_HOME nor HOME is set)",
            )
        })?;
    let listen = match flags.listen {
        Some(l) => l,
        None => env_parse(env, "AIRLOCK_LISTEN", "an address such as 127.0.0.1:8470")?
            .or(file.listen)
            .unwrap_or(defaults.listen),
    };
    let count = |flag: Option<usize>, var: &str, key: Option<usize>, default: usize| {
        Ok::<_, CliError>(match flag {
            Some(n) => n,
            None => env_parse(env, var, "a whole number")?
                .or(key)
                .unwrap_or(default),
        })
    };
    let workers = count(
        flags.workers,
        "AIRLOCK_WORKERS",
        file.workers,
        defaults.workers,
    )?;
    let queue_depth = count(
        flags.queue_depth,
        "AIRLOCK_QUEUE_DEPTH",
        file.queue_depth,
        defaults.queue_depth,
    )?;
    let max_upload_bytes = match flags.max_upload_bytes {
        Some(n) => n,
        None => env_parse(env, "AIRLOCK_MAX_UPLOAD_BYTES", "a whole number")?
            .or(file.max_upload_bytes)
            .unwrap_or(defaults.max_upload_bytes),
    };
    for (what, v) in [
        ("workers", workers as u64),
        ("queue depth", queue_depth as u64),
        ("max upload bytes", max_upload_bytes),
    ] {
        if v == 0 {
            return Err(CliError::input(format!("the {what} must be at least 1")));
        }
    }
    let trust_root = if !flags.trust_root.is_empty() {
        flags.trust_root.clone()
    } else if let Some(v) = env_var(env, "AIRLOCK_TRUST_ROOT") {
        v.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    } else {
        file.trust_root.clone().unwrap_or_default()
    };
    let data_keys = match &flags.data_keys {
        Some(f) => Some(DataKeys::File(f.clone())),
        None => match (
            env_var(env, "AIRLOCK_DATA_KEYS"),
            env_var(env, "AIRLOCK_DATA_KEYS_FILE"),
        ) {
            (Some(_), Some(_)) => {
                return Err(CliError::input(
                    "both AIRLOCK_DATA_KEYS and AIRLOCK_DATA_KEYS_FILE are set; set one",
                ));
            }
            (Some(v), None) => Some(DataKeys::Value(v)),
            (None, Some(f)) => Some(DataKeys::File(PathBuf::from(f))),
            (None, None) => file.data_keys_file.clone().map(DataKeys::File),
        },
    };
    let path = |flag: &Option<PathBuf>, var: &str, key: &Option<PathBuf>| {
        flag.clone()
            .or_else(|| env_var(env, var).map(PathBuf::from))
            .or_else(|| key.clone())
    };
    let tls = match (
        path(&flags.tls_cert, "AIRLOCK_TLS_CERT", &file.tls_cert),
        path(&flags.tls_key, "AIRLOCK_TLS_KEY", &file.tls_key),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(CliError::input(
                "a TLS certificate is set but no key (--tls-key, AIRLOCK_TLS_KEY or tls_key)",
            ));
        }
        (None, Some(_)) => {
            return Err(CliError::input(
                "a TLS key is set but no certificate (--tls-cert, AIRLOCK_TLS_CERT or tls_cert)",
            ));
        }
    };
    Ok(Resolved {
        data_dir,
        listen,
        workers,
        queue_depth,
        max_upload_bytes,
        trust_root,
        data_keys,
        tls,
    })
}

/// Sets the serving settings: the file's `[serving]` keys over the
/// embedded defaults, then the flags over both. A count that cannot be
/// zero is refused naming where it came from.
pub(crate) fn apply_serving(
    serving: &mut airlock_server::config::ServingConfig,
    file: &ServingSection,
    flags: &ServerFlags,
) -> Result<(), CliError> {
    let positive = |value: Option<u64>, what: &str| match value {
        Some(0) => Err(CliError::input(format!("{what} must be at least 1"))),
        _ => Ok(()),
    };
    let as_u64 = |v: Option<usize>| v.map(|n| n as u64);
    positive(as_u64(file.max_body_bytes), "[serving] max_body_bytes")?;
    positive(as_u64(file.max_rows), "[serving] max_rows")?;
    positive(file.call_fuel, "[serving] call_fuel")?;
    positive(file.call_timeout_ms, "[serving] call_timeout_ms")?;
    positive(as_u64(file.max_in_flight), "[serving] max_in_flight")?;
    positive(as_u64(file.predict_threads), "[serving] predict_threads")?;
    positive(as_u64(file.window_rows), "[serving] window_rows")?;
    positive(as_u64(file.shadow_queue), "[serving] shadow_queue")?;
    positive(as_u64(flags.predict_threads), "--predict-threads")?;
    positive(as_u64(flags.max_in_flight), "--max-in-flight")?;
    let set = |slot: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut serving.warm_versions, file.warm_versions);
    set(&mut serving.max_body_bytes, file.max_body_bytes);
    set(&mut serving.max_rows, file.max_rows);
    set(&mut serving.max_in_flight, file.max_in_flight);
    set(&mut serving.threads, file.predict_threads);
    set(&mut serving.label_book, file.label_book);
    set(&mut serving.window_rows, file.window_rows);
    set(&mut serving.shadow_queue, file.shadow_queue);
    if let Some(f) = file.call_fuel {
        serving.call_fuel = f;
    }
    if let Some(ms) = file.call_timeout_ms {
        serving.call_timeout_ms = ms;
    }
    if let Some(on) = file.monitoring {
        serving.monitoring = on;
    }
    if let Some(r) = file.rate_per_token {
        serving.rate_per_token = r;
    }
    if let Some(blocks) = &file.webhook_allow {
        serving.webhook_allow = blocks
            .iter()
            .map(|b| airlock_server::serving::egress::Cidr::parse(b))
            .collect::<Result<_, _>>()
            .map_err(|e| CliError::input(format!("[serving] webhook_allow: {e}")))?;
    }
    if flags.no_monitoring {
        serving.monitoring = false;
    }
    set(&mut serving.threads, flags.predict_threads);
    set(&mut serving.max_in_flight, flags.max_in_flight);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(
        flags: &ServerFlags,
        vars: &[(&str, &str)],
        file: &ServerSection,
    ) -> Result<Resolved, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| map.get(k).cloned();
        resolve(flags, &env, file).map_err(|e| match e {
            CliError::Input(m) => m,
            other => panic!("expected an input error, got {other:?}"),
        })
    }

    #[test]
    fn the_webhook_allow_list_is_read_from_the_file_and_a_bad_block_is_named() {
        let file: crate::config::HostConfig =
            toml::from_str("[serving]\nwebhook_allow = [\"10.20.0.0/16\", \"::1\"]\n").unwrap();
        let mut s = airlock_server::config::ServingConfig::default();
        assert!(s.webhook_allow.is_empty(), "nothing non-public by default");
        apply_serving(&mut s, &file.serving, &ServerFlags::default()).unwrap();
        assert_eq!(s.webhook_allow.len(), 2);
        assert!(s.webhook_allow[0].contains("10.20.3.4".parse().unwrap()));
        let bad: crate::config::HostConfig =
            toml::from_str("[serving]\nwebhook_allow = [\"10.0.0.0/40\"]\n").unwrap();
        let e = apply_serving(&mut s, &bad.serving, &ServerFlags::default()).unwrap_err();
        assert!(
            matches!(&e, CliError::Input(m) if m.contains("[serving] webhook_allow") && m.contains("10.0.0.0/40")),
            "{e:?}"
        );
    }

    #[test]
    fn serving_settings_come_from_the_file_and_flags_win() {
        let defaults = airlock_server::config::ServingConfig::default();
        let file: crate::config::HostConfig = toml::from_str(
            "[serving]\nmax_rows = 16\nmax_in_flight = 8\npredict_threads = 3\nmonitoring = false\ncall_timeout_ms = 250\nwarm_versions = 0\nrate_per_token = 50\n",
        )
        .unwrap();
        let mut s = defaults.clone();
        apply_serving(&mut s, &file.serving, &ServerFlags::default()).unwrap();
        assert_eq!((s.max_rows, s.max_in_flight, s.threads), (16, 8, 3));
        assert_eq!(
            (s.monitoring, s.call_timeout_ms, s.warm_versions),
            (false, 250, 0)
        );
        assert_eq!(s.max_body_bytes, defaults.max_body_bytes);
        assert_eq!((defaults.rate_per_token, s.rate_per_token), (0, 50));
        let flags = ServerFlags {
            predict_threads: Some(5),
            max_in_flight: Some(64),
            ..ServerFlags::default()
        };
        let mut s = defaults.clone();
        apply_serving(&mut s, &file.serving, &flags).unwrap();
        assert_eq!((s.max_in_flight, s.threads, s.max_rows), (64, 5, 16));
        // Zero where it makes no sense, from either source, is named.
        let zero: crate::config::HostConfig = toml::from_str("[serving]\nmax_rows = 0\n").unwrap();
        let e = apply_serving(
            &mut defaults.clone(),
            &zero.serving,
            &ServerFlags::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, CliError::Input(m) if m == "[serving] max_rows must be at least 1"),
            "{e:?}"
        );
        let flags = ServerFlags {
            max_in_flight: Some(0),
            ..ServerFlags::default()
        };
        let e = apply_serving(&mut defaults.clone(), &Default::default(), &flags).unwrap_err();
        assert!(
            matches!(&e, CliError::Input(m) if m == "--max-in-flight must be at least 1"),
            "{e:?}"
        );
        // Unknown keys are refused naming them.
        let e =
            toml::from_str::<crate::config::HostConfig>("[serving]\nmax_row = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_row"), "{e}");
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_defaults() {
        let file = ServerSection {
            data_dir: Some("/file/data".into()),
            listen: Some("127.0.0.3:3".parse().unwrap()),
            workers: Some(3),
            queue_depth: Some(33),
            max_upload_bytes: Some(333),
            trust_root: Some(vec!["/file/root.pub".into()]),
            data_keys_file: Some("/file/keys".into()),
            tls_cert: Some("/file/cert.pem".into()),
            tls_key: Some("/file/key.pem".into()),
        };
        let vars = [
            ("AIRLOCK_TLS_CERT", "/env/cert.pem"),
            ("AIRLOCK_TLS_KEY", "/env/key.pem"),
            ("AIRLOCK_DATA_DIR", "/env/data"),
            ("AIRLOCK_LISTEN", "127.0.0.2:2"),
            ("AIRLOCK_WORKERS", "2"),
            ("AIRLOCK_QUEUE_DEPTH", "22"),
            ("AIRLOCK_MAX_UPLOAD_BYTES", "222"),
            ("AIRLOCK_TRUST_ROOT", "/env/a.pub, /env/b.pub"),
            ("AIRLOCK_DATA_KEYS_FILE", "/env/keys"),
            ("HOME", "/home/x"),
        ];
        let flags = ServerFlags {
            data_dir: Some("/flag/data".into()),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            workers: Some(1),
            queue_depth: Some(11),
            max_upload_bytes: Some(111),
            trust_root: vec!["/flag/root.pub".into()],
            data_keys: Some("/flag/keys".into()),
            tls_cert: Some("/flag/cert.pem".into()),
            tls_key: Some("/flag/key.pem".into()),
            rotate_data_keys: false,
            no_monitoring: false,
            predict_threads: None,
            max_in_flight: None,
        };
        let r = resolve_with(&flags, &vars, &file).unwrap();
        assert_eq!(
            r.tls,
            Some(("/flag/cert.pem".into(), "/flag/key.pem".into()))
        );
        assert_eq!(r.data_dir, PathBuf::from("/flag/data"));
        assert_eq!(r.listen.port(), 1);
        assert_eq!((r.workers, r.queue_depth, r.max_upload_bytes), (1, 11, 111));
        assert_eq!(r.trust_root, vec![PathBuf::from("/flag/root.pub")]);
        assert_eq!(r.data_keys, Some(DataKeys::File("/flag/keys".into())));

        let r = resolve_with(&ServerFlags::default(), &vars, &file).unwrap();
        assert_eq!(r.data_dir, PathBuf::from("/env/data"));
        assert_eq!(r.listen.port(), 2);
        assert_eq!((r.workers, r.queue_depth, r.max_upload_bytes), (2, 22, 222));
        assert_eq!(
            r.trust_root,
            vec![PathBuf::from("/env/a.pub"), PathBuf::from("/env/b.pub")]
        );
        assert_eq!(r.data_keys, Some(DataKeys::File("/env/keys".into())));
        assert_eq!(r.tls, Some(("/env/cert.pem".into(), "/env/key.pem".into())));

        let r = resolve_with(&ServerFlags::default(), &[("HOME", "/home/x")], &file).unwrap();
        assert_eq!(r.data_dir, PathBuf::from("/file/data"));
        assert_eq!(r.listen.port(), 3);
        assert_eq!((r.workers, r.queue_depth, r.max_upload_bytes), (3, 33, 333));
        assert_eq!(
            r.tls,
            Some(("/file/cert.pem".into(), "/file/key.pem".into()))
        );
        let half = ServerFlags {
            tls_cert: Some("/c.pem".into()),
            ..ServerFlags::default()
        };
        let e = resolve_with(&half, &[("HOME", "/h")], &ServerSection::default()).unwrap_err();
        assert!(e.contains("no key"), "{e}");
        assert_eq!(r.trust_root, vec![PathBuf::from("/file/root.pub")]);
        assert_eq!(r.data_keys, Some(DataKeys::File("/file/keys".into())));

        let r = resolve_with(
            &ServerFlags::default(),
            &[("HOME", "/home/x")],
            &ServerSection::default(),
        )
        .unwrap();
        let d = ServerConfig::new(PathBuf::new(), SandboxConfig::default(), Default::default());
        assert_eq!(r.data_dir, PathBuf::from("/home/x/.local/share/airlock"));
        assert_eq!(r.listen, d.listen);
        assert_eq!(r.workers, d.workers);
        assert_eq!(r.trust_root, Vec::<PathBuf>::new());
        assert_eq!(r.data_keys, None);
        let r = resolve_with(
            &ServerFlags::default(),
            &[("HOME", "/home/x"), ("XDG_DATA_HOME", "/xdg")],
            &ServerSection::default(),
        )
        .unwrap();
        assert_eq!(r.data_dir, PathBuf::from("/xdg/airlock"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let none = ServerSection::default();
        let flags = ServerFlags {
            data_dir: Some("/d".into()),
            ..ServerFlags::default()
        };
        let e = resolve_with(&flags, &[("AIRLOCK_WORKERS", "many")], &none).unwrap_err();
        assert_eq!(e, "AIRLOCK_WORKERS=\"many\" is not a whole number");
        let e = resolve_with(&flags, &[("AIRLOCK_LISTEN", "localhost")], &none).unwrap_err();
        assert!(
            e.starts_with("AIRLOCK_LISTEN=\"localhost\" is not an address"),
            "{e}"
        );
        let e = resolve_with(&flags, &[("AIRLOCK_QUEUE_DEPTH", "0")], &none).unwrap_err();
        assert_eq!(e, "the queue depth must be at least 1");
        let e = resolve_with(
            &flags,
            &[
                ("AIRLOCK_DATA_KEYS", "k1 00"),
                ("AIRLOCK_DATA_KEYS_FILE", "/k"),
            ],
            &none,
        )
        .unwrap_err();
        assert!(
            e.contains("AIRLOCK_DATA_KEYS and AIRLOCK_DATA_KEYS_FILE"),
            "{e}"
        );
        let e = resolve_with(&ServerFlags::default(), &[], &none).unwrap_err();
        assert!(e.contains("--data-dir"), "{e}");
        // An empty variable counts as unset.
        let r = resolve_with(&flags, &[("AIRLOCK_WORKERS", "")], &none).unwrap();
        assert_eq!(r.workers, 2);
        let r = resolve_with(&flags, &[("AIRLOCK_DATA_KEYS", "k1 00")], &none).unwrap();
        assert!(matches!(r.data_keys, Some(DataKeys::Value(_))));
        assert_eq!(format!("{:?}", r.data_keys), "Some(Value(..))");
    }
}
