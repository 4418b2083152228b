//! The `airlock` command line against a running server (`airlock server`, client commands).
//!
//! Every server here is a child process (`airlock server --listen
//! 127.0.0.1:0`) found through the `server.url` it writes; a guard kills it
//! when the test ends, passed or not. The client commands are child
//! processes too, so their exit codes and one-line errors are what a
//! script sees.

use airlock_tests::{airlock_bin, cache_dir, example, plugin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Variables that would change what a child resolves; every child starts
/// without them and gets only what its test sets.
const AIRLOCK_VARS: &[&str] = &[
    "AIRLOCK_CONFIG",
    "AIRLOCK_DATA_DIR",
    "AIRLOCK_LISTEN",
    "AIRLOCK_WORKERS",
    "AIRLOCK_QUEUE_DEPTH",
    "AIRLOCK_MAX_UPLOAD_BYTES",
    "AIRLOCK_TRUST_ROOT",
    "AIRLOCK_DATA_KEYS",
    "AIRLOCK_DATA_KEYS_FILE",
    "AIRLOCK_SERVER",
    "AIRLOCK_TOKEN",
    "AIRLOCK_TOKEN_FILE",
];

fn airlock() -> Command {
    let mut c = Command::new(airlock_bin());
    for v in AIRLOCK_VARS {
        c.env_remove(v);
    }
    c
}

/// Waits (bounded) for a server started with data directory `data` to
/// write `server.url`, and returns the URL; panics with the server's
/// stderr (the file `stderr`) if it exits first or never writes it.
/// Shared with `what_users_see`, whose servers start the same way.
pub(crate) fn wait_for_url(child: &mut Child, data: &Path, stderr: &Path) -> String {
    let url_file = data.join("server.url");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(u) = std::fs::read_to_string(&url_file)
            && u.ends_with('\n')
        {
            return u.trim().to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "airlock server exited ({status}) before writing {}: {}",
                url_file.display(),
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {} after 60 s; stderr: {}",
            url_file.display(),
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `airlock server`; killed on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `airlock server <args>` with `env`, and waits (bounded) for
    /// `server.url` to appear in `data` (where the test expects the data
    /// directory to be, whichever way it was configured).
    fn start(data: &Path, logs: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(logs).unwrap();
        let stdout = logs.join("server.out");
        let stderr = logs.join("server.err");
        let mut cmd = airlock();
        cmd.arg("server")
            .args(args)
            .arg("--cache-dir")
            .arg(cache_dir())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting airlock server");
        let mut s = Server {
            child,
            url: String::new(),
            data: data.to_path_buf(),
            stdout,
            stderr,
        };
        s.url = wait_for_url(&mut s.child, data, &s.stderr);
        s
    }

    fn admin_token(&self) -> PathBuf {
        self.data.join("admin.token")
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (
                    status,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default(),
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a client command against this server with the admin token.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(args, &["--token-file", &s(&self.admin_token())])
    }

    /// Runs a client command with the given credentials flags.
    fn cli_as(&self, args: &[&str], auth: &[&str]) -> Output {
        airlock()
            .args(args)
            .args(["--server", &self.url])
            .args(auth)
            .output()
            .expect("running airlock")
    }
}

/// A path as an argument (shared with `what_users_see`).
pub(crate) fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A child's stdout as text.
pub(crate) fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A child's stderr as text.
pub(crate) fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, showing stderr otherwise.
#[track_caller]
pub(crate) fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        out(o),
        err(o)
    );
    out(o)
}

/// Asserts exit `code` and one stderr line, and returns it.
#[track_caller]
pub(crate) fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        out(o),
        err(o)
    );
    let e = err(o);
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
    e
}

#[test]
fn settings_come_from_flags_then_environment_then_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = root.join("airlock.toml");
    std::fs::write(
        &config,
        "[server]\ndata_dir = \"file-data\"\nlisten = \"127.0.0.3:0\"\n",
    )
    .unwrap();
    let env_data = root.join("env-data");
    let flag_data = root.join("flag-data");
    let cfg = s(&config);
    let env_data_s = s(&env_data);
    let env = [
        ("AIRLOCK_CONFIG", cfg.as_str()),
        ("AIRLOCK_LISTEN", "127.0.0.2:0"),
        ("AIRLOCK_DATA_DIR", env_data_s.as_str()),
    ];

    // Flags beat the environment and the file.
    let server = Server::start(
        &flag_data,
        &root.join("logs1"),
        &["--listen", "127.0.0.1:0", "--data-dir", &s(&flag_data)],
        &env,
    );
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    let printed = server.stdout();
    assert!(
        printed.contains(&format!("listening on {}\n", server.url)),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("data directory: {}\n", flag_data.display())),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "admin token written to {} (0600)\n",
            server.admin_token().display()
        )),
        "{printed}"
    );
    assert!(!env_data.exists() && !root.join("file-data").exists());
    let health = server.cli(&["models", "--json"]);
    assert_eq!(ok(&health).trim(), "{\n  \"items\": []\n}");
    // SIGTERM stops it cleanly and removes the URL file.
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("stopped"),
        "{stderr}"
    );
    assert!(!flag_data.join("server.url").exists());

    // Without the flags, the environment beats the file.
    let server = Server::start(&env_data, &root.join("logs2"), &[], &env);
    assert!(
        server.url.starts_with("http://127.0.0.2:"),
        "{}",
        server.url
    );
    drop(server);

    // Without the environment, the file (its paths relative to itself).
    let file_data = root.join("file-data");
    let server = Server::start(&file_data, &root.join("logs3"), &[], &env[..1]);
    assert!(
        server.url.starts_with("http://127.0.0.3:"),
        "{}",
        server.url
    );
    // A restart on an existing directory mints no new admin token.
    drop(server);
    let server = Server::start(&file_data, &root.join("logs4"), &[], &env[..1]);
    assert!(
        !server.stdout().contains("admin token"),
        "{}",
        server.stdout()
    );
    drop(server);

    // A bad environment value is one line naming the variable, exit 2.
    let o = airlock()
        .args(["server", "--data-dir", &s(&root.join("x"))])
        .env("AIRLOCK_WORKERS", "many")
        .output()
        .unwrap();
    let e = fails(&o, 2);
    assert!(e.contains("AIRLOCK_WORKERS"), "{e}");
}

#[test]
fn a_bad_or_unreachable_server_url_is_exit_2_naming_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let o = airlock()
        .args(["models", "--server", &url, "--token", "x"])
        .output()
        .unwrap();
    let e = fails(&o, 2);
    assert!(
        e.contains(&format!("cannot reach the server at {url}")),
        "{e}"
    );
    let o = airlock()
        .args(["models", "--token", "x"])
        .env("AIRLOCK_SERVER", "localhost:8470")
        .output()
        .unwrap();
    let e = fails(&o, 2);
    assert!(e.contains("\"localhost:8470\" is not a server URL"), "{e}");
}

/// Validators under the names the example gate uses (`<name>.wasm`), as
/// `examples/demo.sh` lays them out.
fn validator_dir(dir: &Path) -> PathBuf {
    let out = dir.join("plugins");
    std::fs::create_dir_all(&out).unwrap();
    for name in ["schema", "golden", "performance", "robustness", "drift"] {
        std::fs::copy(
            plugin(&format!("airlock_validator_{name}")),
            out.join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    out
}

#[test]
fn plugins_gates_versions_and_promotion_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let key = root.join("gate.pem");
    ok(&airlock()
        .args(["key", "generate", &s(&key)])
        .output()
        .unwrap());
    let data = root.join("data");
    let server = Server::start(
        &data,
        &root.join("logs"),
        &[
            "--data-dir",
            &s(&data),
            "--listen",
            "127.0.0.1:0",
            "--trust-root",
            &s(&root.join("gate.pub")),
        ],
        &[],
    );

    // A model plugin: registered once, the same bytes again are fine,
    // other bytes under the same name@version are refused.
    let xgb = plugin("airlock_model_xgboost");
    let submit = |file: &Path| {
        server.cli(&[
            "submit",
            "plugin",
            &s(file),
            "--name",
            "xgboost",
            "--version",
            "1.0.0",
        ])
    };
    let first = ok(&submit(&xgb));
    assert!(
        first.starts_with("registered plugin xgboost@1.0.0 (sha256:"),
        "{first}"
    );
    assert!(first.contains("model plugin"), "{first}");
    let again = ok(&submit(&xgb));
    assert!(
        again.starts_with("already registered: plugin xgboost@1.0.0"),
        "{again}"
    );
    let e = fails(&submit(&plugin("airlock_model_linear")), 1);
    assert!(e.contains("xgboost@1.0.0") && e.contains("version"), "{e}");

    // A wrong token is the server's 401, exit 2.
    let e = fails(&server.cli_as(&["models"], &["--token", "al_bogus"]), 2);
    assert!(e.contains("401"), "{e}");

    // The example gate, published from its local form.
    let plugins = validator_dir(root);
    let gate = example().join("gate.toml");
    let published = ok(&server.cli(&[
        "gate",
        "publish",
        &s(&gate),
        "--name",
        "breast-cancer",
        "--version",
        "1",
        "--key",
        &s(&key),
        "--plugin-dir",
        &s(&plugins),
    ]));
    assert!(
        published.starts_with("published gate breast-cancer version 1: sha256:"),
        "{published}"
    );
    // Publishing it again is idempotent (same digest).
    let again = ok(&server.cli(&[
        "gate",
        "publish",
        &s(&gate),
        "--name",
        "breast-cancer",
        "--version",
        "1",
        "--key",
        &s(&key),
        "--plugin-dir",
        &s(&plugins),
    ]));
    assert!(
        again.starts_with("already published: gate breast-cancer"),
        "{again}"
    );

    ok(&server.cli(&[
        "model",
        "create",
        "bc",
        "--gate",
        "breast-cancer",
        "--approvals",
        "1",
    ]));

    // A good candidate passes; --wait exits 0.
    let passed = ok(&server.cli(&[
        "submit",
        "model",
        "bc",
        "--version",
        "1.0.0",
        "--plugin",
        "xgboost@1.0.0",
        "--bundle",
        &s(&example().join("model-v1")),
        "--param",
        "trees=30",
        "--wait",
    ]));
    assert!(
        passed.contains(": PASSED (bc 1.0.0 under gate breast-cancer v1)"),
        "{passed}"
    );

    // A degraded one is refused; --wait exits 1 and names the failing steps.
    let o = server.cli(&[
        "submit",
        "model",
        "bc",
        "--version",
        "2.0.0",
        "--plugin",
        "xgboost@1.0.0",
        "--bundle",
        &s(&example().join("model-v2-degraded")),
        "--wait",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", out(&o), err(&o));
    assert!(out(&o).contains("REFUSED"), "{}", out(&o));
    assert!(
        out(&o).contains("failing steps:") && out(&o).contains("performance"),
        "{}",
        out(&o)
    );

    // No approval yet: promotion is refused, naming approvals.
    let e = fails(&server.cli(&["promote", "bc", "1.0.0"]), 1);
    assert!(e.contains("approvals"), "{e}");

    // A reviewer (not the submitter) approves; then promotion goes through.
    let o = server.cli(&[
        "token",
        "create",
        "--subject",
        "reviewer",
        "--role",
        "approver",
    ]);
    let reviewer = ok(&o).trim().to_string();
    assert!(
        !reviewer.is_empty() && !reviewer.contains(' '),
        "{reviewer}"
    );
    ok(&server.cli_as(
        &["approve", "bc", "1.0.0", "--comment", "looks right"],
        &["--token", &reviewer],
    ));
    let promoted = ok(&server.cli(&["promote", "bc", "1.0.0", "--reason", "first release"]));
    assert!(promoted.starts_with("bc production -> 1.0.0"), "{promoted}");
    let history = ok(&server.cli(&["history", "bc"]));
    assert!(
        history.contains("promote") && history.contains("first release"),
        "{history}"
    );

    // The passing run's attestation verifies offline under the host key.
    let shown = ok(&server.cli(&["show", "bc@1.0.0", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let run = v["runs"][0]["id"].as_str().unwrap().to_string();
    let att = root.join("v1.attestation.json");
    ok(&server.cli(&["run", "attestation", &run, "-o", &s(&att)]));
    let e = fails(
        &server.cli(&["run", "attestation", &run, "-o", &s(&att)]),
        2,
    );
    assert!(e.contains("already exists"), "{e}");
    let keys = root.join("keys");
    ok(&server.cli(&["keys", "--out", &s(&keys)]));
    let pubs: Vec<PathBuf> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pubs.len(), 1, "{pubs:?}");
    ok(&airlock()
        .args([
            "attestation",
            "verify",
            &s(&att),
            "--public-key",
            &s(&pubs[0]),
        ])
        .args([
            "--model",
            &s(&xgb),
            "--bundle",
            &s(&example().join("model-v1")),
        ])
        .arg("--require-pass")
        .output()
        .unwrap());

    // The tables list what was done; the audit log recorded the promotion.
    let models = ok(&server.cli(&["models"]));
    assert!(
        models
            .lines()
            .any(|l| l.starts_with("bc ") && l.contains("breast-cancer")),
        "{models}"
    );
    let versions = ok(&server.cli(&["versions", "bc"]));
    assert_eq!(versions.lines().count(), 3, "{versions}");
    let audit = ok(&server.cli(&["audit", "log", "--action", "promotion"]));
    assert!(audit.contains("bc/1.0.0"), "{audit}");
}
