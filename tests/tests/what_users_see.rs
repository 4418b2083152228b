//! What a user sees at the terminal, through the real `airlock` binary:
//! plugin text escaped on every output path, one server per data
//! directory, `traffic` that checks its CSV and stops at a refused
//! request, a stop during a gate run that tells the waiting client, help
//! that hides secrets and shows each flag where it applies, messages that
//! name the actual problem, human output without raw JSON, and the audit
//! log newest first. Servers and clients are child processes, so exit
//! codes and stderr are what a script sees.

use crate::server_cli::{err, fails, ok, out, s, wait_for_url};
use airlock_tests::{airlock_bin, cache_dir, example, plugin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `airlock` without any AIRLOCK_* variable of the test's environment
/// (nor `RUST_LOG`, which sets the server's log level).
fn airlock() -> Command {
    let mut c = Command::new(airlock_bin());
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("AIRLOCK_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs a local (sandbox) command with the shared compile cache.
fn local(args: &[&str]) -> Output {
    let mut c = airlock();
    c.args(args);
    if airlock_tests::takes_cache_dir(args) {
        c.arg("--cache-dir").arg(cache_dir());
    }
    c.output().expect("running airlock")
}

/// A running `airlock server`; killed on drop.
struct Server {
    child: Option<Child>,
    url: String,
    data: PathBuf,
    stderr: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    fn start(root: &Path, data: &Path, extra: &[&str]) -> Server {
        Server::start_env(root, data, extra, &[])
    }

    /// [`Server::start`] with environment variables set.
    fn start_env(root: &Path, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let stderr = root.join(format!(
            "server-{}.err",
            data.file_name().unwrap().to_string_lossy()
        ));
        let child = airlock()
            .args(["server", "--data-dir", &s(data), "--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .arg("--cache-dir")
            .arg(cache_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting airlock server");
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            data: data.to_path_buf(),
            stderr,
        };
        server.url = wait_for_url(server.child.as_mut().unwrap(), data, &server.stderr);
        server
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client command with the admin's token.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(args, &["--token-file", &s(&self.data.join("admin.token"))])
    }

    /// Starts a client command against this server with the admin token,
    /// stdout and stderr piped, without waiting for it to finish.
    fn spawn_cli(&self, args: &[&str]) -> Child {
        airlock()
            .args(args)
            .args([
                "--server",
                &self.url,
                "--token-file",
                &s(&self.data.join("admin.token")),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn cli_as(&self, args: &[&str], auth: &[&str]) -> Output {
        airlock()
            .args(args)
            .args(["--server", &self.url])
            .args(auth)
            .output()
            .expect("running airlock")
    }

    fn token(&self, subject: &str, role: &str) -> String {
        ok(&self.cli(&["token", "create", "--subject", subject, "--role", role]))
            .trim()
            .to_string()
    }
}

/// Every character that could act on a terminal: controls other than
/// newline and tab, bidirectional overrides and isolates, zero-width marks.
fn unsafe_chars(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[track_caller]
fn assert_terminal_safe(what: &str, o: &Output) {
    for (stream, text) in [("stdout", out(o)), ("stderr", err(o))] {
        let bad = unsafe_chars(&text);
        assert!(
            bad.is_empty(),
            "{what}: {stream} carries {bad:?} raw:\n{text:?}"
        );
    }
}

/// A bundle for `hostile-liar` with `persona` as its `liar.txt`.
fn liar_bundle(root: &Path, name: &str, persona: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("liar.txt"), persona).unwrap();
    dir
}

const HOSTILE: &str = "\\e]0;owned\u{7}\\e[2K\u{202e}gnirts\u{2066}";

#[test]
fn plugin_text_is_escaped_on_every_output_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let liar = s(&plugin("hostile_liar"));
    let eval = s(&example().join("data/eval.csv"));
    let persona =
        |extra: &str| format!("inputs = mean_radius, mean_texture\nname = liar{HOSTILE}\n{extra}");
    let named = s(&liar_bundle(root, "named", &persona("")));
    let meta_fails = s(&liar_bundle(
        root,
        "meta",
        &persona(&format!("fail = metadata\nmessage = m{HOSTILE}")),
    ));
    let predict_fails = s(&liar_bundle(
        root,
        "predict",
        &persona(&format!("fail = predict\nmessage = p{HOSTILE}")),
    ));
    // hostile-preinit's `init` quotes its bundle's first word in its error.
    let init_dir = root.join("init");
    std::fs::create_dir_all(&init_dir).unwrap();
    std::fs::write(init_dir.join("model.json"), "\u{1b}]0;owned\u{7}\u{202e}x").unwrap();
    let preinit = s(&plugin("hostile_preinit"));
    let x_csv = root.join("x.csv");
    std::fs::write(&x_csv, "x\n1\n").unwrap();

    // The model's name, in text and JSON.
    for json in [false, true] {
        let mut args = vec!["plugin", "run", &liar, "--bundle", &named, "--data", &eval];
        if json {
            args.push("--json");
        }
        let o = local(&args);
        ok(&o);
        assert_terminal_safe("plugin run (name)", &o);
        let text = out(&o);
        assert!(
            if json {
                text.contains("\\u202e")
            } else {
                text.contains("\\u{202e}")
            },
            "{text}"
        );
    }
    // Its metadata error, its predict error and `init`'s error: exit 1,
    // one escaped line.
    for (what, args) in [
        (
            "metadata",
            vec![
                "plugin",
                "run",
                &liar,
                "--bundle",
                &meta_fails,
                "--data",
                &eval,
            ],
        ),
        (
            "predict",
            vec![
                "plugin",
                "run",
                &liar,
                "--bundle",
                &predict_fails,
                "--data",
                &eval,
            ],
        ),
        (
            "init",
            vec![
                "plugin",
                "run",
                &preinit,
                "--bundle",
                &s(&init_dir),
                "--data",
                &s(&x_csv),
            ],
        ),
    ] {
        let o = local(&args);
        let line = fails(&o, 1);
        assert_terminal_safe(what, &o);
        assert!(line.contains("\\u{1b}]0;owned\\u{7}"), "{what}: {line}");
    }
    // The same through a gate (text and JSON reports) and `plugin validate`.
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        plugin("airlock_validator_performance"),
        plugins.join("performance.wasm"),
    )
    .unwrap();
    let gate = root.join("gate.toml");
    std::fs::write(
        &gate,
        format!(
            "name = \"g\"\n[[steps]]\nname = \"performance\"\nplugin = \"performance\"\ndataset = \"{eval}\"\nlabel = \"target\"\n[steps.config]\nmin = {{ accuracy = 0.9 }}\n"
        ),
    )
    .unwrap();
    for bundle in [&named, &meta_fails, &predict_fails] {
        for json in [false, true] {
            let mut args = vec![
                "gate",
                "run",
                s(&gate).leak(),
                "--model",
                &liar,
                "--bundle",
                bundle,
                "--plugin-dir",
                s(&plugins).leak(),
            ];
            if json {
                args.push("--json");
            }
            let o = local(&args);
            assert_terminal_safe("gate run", &o);
        }
        let config = root.join("perf.toml");
        std::fs::write(&config, "min = { accuracy = 0.9 }\n").unwrap();
        let o = local(&[
            "plugin",
            "validate",
            s(&plugins.join("performance.wasm")).leak(),
            "--model",
            &liar,
            "--bundle",
            bundle,
            "--data",
            &eval,
            "--label",
            "target",
            "--step-config",
            s(&config).leak(),
        ]);
        assert_terminal_safe("plugin validate", &o);
    }
}

#[test]
fn plugin_text_from_a_gate_run_on_a_server_is_escaped_too() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let server = served(root, &[], "ok");
    ok(&server.cli(&[
        "submit",
        "plugin",
        &s(&plugin("hostile_liar")),
        "--name",
        "liar",
        "--version",
        "1.0.0",
    ]));
    let bundle = liar_bundle(
        root,
        "liar",
        &format!(
            "inputs = mean_radius\nname = liar{HOSTILE}\nfail = predict\nmessage = p{HOSTILE}"
        ),
    );
    // The candidate fails on the server: its error is in the run's report.
    let o = server.cli(&[
        "submit",
        "model",
        "bc",
        "--version",
        "3.0.0",
        "--plugin",
        "liar@1.0.0",
        "--bundle",
        &s(&bundle),
        "--wait",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", out(&o), err(&o));
    assert_terminal_safe("submit --wait", &o);
    assert!(out(&o).contains("\\u{1b}]0;owned"), "{}", out(&o));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["show", "bc@3.0.0", "--json"]))).unwrap();
    let run = v["runs"][0]["id"].as_str().unwrap().to_string();
    for args in [
        vec!["run", "show", run.as_str()],
        vec!["run", "show", run.as_str(), "--json"],
        vec!["show", "bc@3.0.0"],
        vec!["versions", "bc"],
    ] {
        let o = server.cli(&args);
        ok(&o);
        assert_terminal_safe(&args.join(" "), &o);
    }
}

#[test]
fn plugin_validate_without_a_config_names_the_flag_not_a_generated_file() {
    let eval = s(&example().join("data/eval.csv"));
    let o = local(&[
        "plugin",
        "validate",
        &s(&plugin("airlock_validator_schema")),
        "--model",
        &s(&plugin("airlock_model_xgboost")),
        "--bundle",
        &s(&example().join("model-v1")),
        "--data",
        &eval,
        "--label",
        "target",
    ]);
    let e = fails(&o, 2);
    assert!(e.contains("--step-config FILE"), "{e}");
    assert!(e.contains("none was given"), "{e}");
    // Nothing points into the CLI's own generated gate file.
    assert!(!e.contains("plugin-validate") && !e.contains(".:"), "{e}");
}

#[test]
fn a_second_server_on_one_data_directory_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    let first = Server::start(root, &data, &[]);
    let url_before = std::fs::read_to_string(data.join("server.url")).unwrap();
    let o = airlock()
        .args(["server", "--data-dir", &s(&data), "--listen", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(cache_dir())
        .output()
        .unwrap();
    let e = fails(&o, 2);
    assert!(
        e.contains("is in use by another airlock server")
            && e.contains(&format!("pid {}", first.pid())),
        "{e}"
    );
    // The first one's URL file is untouched and it still answers.
    assert_eq!(
        std::fs::read_to_string(data.join("server.url")).unwrap(),
        url_before
    );
    ok(&first.cli(&["models"]));
    // Once it stops, the directory is free again.
    let mut first = first;
    first.signal("-TERM");
    assert!(first.wait_exit(Duration::from_secs(30)).success());
    drop(first);
    let second = Server::start(root, &data, &[]);
    ok(&second.cli(&["models"]));
}

/// A server with the breast-cancer XGBoost model `bc` 1.0.0 in production
/// under a one-step gate (the hostile validator in `ok` mode, so the gate
/// run takes moments), and version 1.1.0 passed and ready. `extra_step`
/// adds a step (the slow gate of the shutdown test).
fn served(root: &Path, server_args: &[&str], step_mode: &str) -> Server {
    let key = root.join("gate.pem");
    ok(&local(&["key", "generate", &s(&key)]));
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(plugin("hostile_validator"), plugins.join("hostile.wasm")).unwrap();
    let gate = root.join("gate.toml");
    std::fs::write(
        &gate,
        format!(
            "name = \"g\"\n[[steps]]\nname = \"check\"\nplugin = \"hostile\"\ndataset = \"{}\"\nlabel = \"target\"\n[steps.config]\nmode = \"{step_mode}\"\n",
            s(&example().join("data/eval.csv"))
        ),
    )
    .unwrap();
    let mut args = vec!["--trust-root", s(&root.join("gate.pub")).leak()];
    args.extend_from_slice(server_args);
    let server = Server::start(root, &root.join("data"), &args);
    ok(&server.cli(&[
        "gate",
        "publish",
        &s(&gate),
        "--name",
        "g",
        "--version",
        "1",
        "--key",
        &s(&key),
        "--plugin-dir",
        &s(&plugins),
    ]));
    ok(&server.cli(&["model", "create", "bc", "--gate", "g"]));
    ok(&server.cli(&[
        "submit",
        "plugin",
        &s(&plugin("airlock_model_xgboost")),
        "--name",
        "xgboost",
        "--version",
        "1.0.0",
    ]));
    if step_mode == "ok" {
        for v in ["1.0.0", "1.1.0"] {
            ok(&server.cli(&[
                "submit",
                "model",
                "bc",
                "--version",
                v,
                "--plugin",
                "xgboost@1.0.0",
                "--bundle",
                &s(&example().join("model-v1")),
                "--param",
                "trees=30",
                "--wait",
            ]));
        }
        ok(&server.cli(&["promote", "bc", "1.0.0"]));
    }
    server
}

#[test]
fn traffic_checks_its_csv_before_sending_and_stops_at_the_first_refused_request() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let server = served(root, &[], "ok");
    let eval = std::fs::read_to_string(example().join("data/eval.csv")).unwrap();
    // A CSV without `mean_radius`: named before anything is sent, exit 2.
    let drop_first = |line: &str| line.split_once(',').unwrap().1.to_string();
    let missing = root.join("missing.csv");
    std::fs::write(
        &missing,
        eval.lines().map(drop_first).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let o = server.cli(&[
        "traffic",
        "bc",
        "--data",
        &s(&missing),
        "--label",
        "target",
        "--seconds",
        "30",
    ]);
    let e = fails(&o, 2);
    assert!(
        e.contains("no column `mean_radius`") && e.contains("nothing was sent"),
        "{e}"
    );
    // A value the model cannot read: the server refuses the request (400),
    // traffic stops at once, exit 2, the error printed like any other.
    let bad = root.join("bad.csv");
    let mut lines: Vec<String> = eval.lines().map(String::from).collect();
    lines[1] = format!("abc,{}", drop_first(&lines[1]));
    std::fs::write(&bad, lines.join("\n")).unwrap();
    // Asked to send for an hour: only stopping at the refusal ends it
    // before the deadline.
    let mut child = server.spawn_cli(&[
        "traffic",
        "bc",
        "--data",
        &s(&bad),
        "--label",
        "target",
        "--seconds",
        "3600",
    ]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("traffic kept sending after a refused request");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let e = fails(&o, 2);
    assert!(
        e.contains("traffic stopped at the first refused request") && e.contains("(400 "),
        "{e}"
    );
    assert!(
        !e.contains("Server {") && !e.contains("status:"),
        "debug form: {e}"
    );
    // Against a model that does not exist: exit 2, naming it.
    let o = server.cli(&["traffic", "nope", "--data", &s(&missing), "--seconds", "1"]);
    let e = fails(&o, 2);
    assert!(e.contains("model \"nope\" does not exist"), "{e}");
}

#[test]
fn messages_name_the_actual_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let server = served(root, &[], "ok");
    // A misspelled model does not exist (not "not served"), in every command.
    for args in [
        vec!["serving", "status", "bx"],
        vec!["canary", "start", "bx", "1.1.0"],
    ] {
        let e = fails(&server.cli(&args), 2);
        assert!(e.contains("model \"bx\" does not exist"), "{args:?}: {e}");
    }
    // A model that exists but has no production version says that.
    ok(&server.cli(&["model", "create", "fresh", "--gate", "g"]));
    let st = ok(&server.cli(&["serving", "status", "fresh"]));
    assert!(
        st.contains("fresh is not served: it has no production version"),
        "{st}"
    );
    let csv = root.join("one.csv");
    std::fs::write(&csv, "x\n1\n").unwrap();
    let e = fails(
        &server.cli(&["traffic", "fresh", "--data", &s(&csv), "--seconds", "1"]),
        2,
    );
    assert!(
        e.contains("model \"fresh\" is not served: it has no production version"),
        "{e}"
    );
    // A missing token names where one comes from.
    let e = fails(&server.cli_as(&["models"], &[]), 2);
    for name in [
        "--token",
        "--token-file",
        "AIRLOCK_TOKEN",
        "AIRLOCK_TOKEN_FILE",
    ] {
        assert!(e.contains(name), "{e}");
    }
    // A role refusal names the roles that may.
    let reader = server.token("r", "reader");
    let e = fails(
        &server.cli_as(&["promote", "bc", "1.1.0"], &["--token", &reader]),
        1,
    );
    assert!(e.contains("a token with role deployer or admin may"), "{e}");
    // Rolling back to a version that does not exist says so.
    let e = fails(&server.cli(&["rollback", "bc", "--version", "9.9.9"]), 2);
    assert!(e.contains("no version 9.9.9 of model bc"), "{e}");
    // A policy error points into the user's file.
    let policy = root.join("policy.json");
    std::fs::write(
        &policy,
        "{\n  \"steps\": [10, 100],\n  \"interval\": 5\n}\n",
    )
    .unwrap();
    let e = fails(&server.cli(&["serving", "policy", "bc", &s(&policy)]), 2);
    assert!(e.contains(&s(&policy)) && e.contains("line 3"), "{e}");
    // Re-promoting the current version moves nothing and adds no history row.
    let history = |server: &Server| {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&server.cli(&["history", "bc", "--json"]))).unwrap();
        v["history"].as_array().unwrap().len()
    };
    let rows = history(&server);
    let again = ok(&server.cli(&["promote", "bc", "1.0.0"]));
    assert!(again.contains("is already 1.0.0: nothing moved"), "{again}");
    assert_eq!(history(&server), rows);
    // `submit model` without --bundle is refused before anything is sent:
    // the version number stays free.
    let o = server.cli(&[
        "submit",
        "model",
        "bc",
        "--version",
        "2.0.0",
        "--plugin",
        "xgboost@1.0.0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--bundle"), "{}", err(&o));
    ok(&server.cli(&[
        "submit",
        "model",
        "bc",
        "--version",
        "2.0.0",
        "--plugin",
        "xgboost@1.0.0",
        "--bundle",
        &s(&example().join("model-v1")),
        "--wait",
    ]));
    // An abort without a reason does not repeat itself.
    ok(&server.cli(&["canary", "start", "bc", "1.1.0"]));
    ok(&server.cli(&["canary", "abort", "bc"]));
    let status = ok(&server.cli(&["serving", "status", "bc"]));
    assert!(
        status.contains("aborted: aborted by a person: no reason given")
            && !status.contains("aborted by a person: aborted by a person"),
        "{status}"
    );
}

#[test]
fn human_output_reads_as_text_and_json_keeps_the_machine_form() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let server = served(root, &[], "ok");
    // Token expiry as a date.
    let o = server.cli(&[
        "token",
        "create",
        "--subject",
        "x",
        "--role",
        "reader",
        "--ttl",
        "3600",
    ]);
    ok(&o);
    assert!(
        err(&o).contains("expires 20") && !err(&o).contains("unix"),
        "{}",
        err(&o)
    );
    let list = ok(&server.cli(&["token", "list"]));
    let row = list
        .lines()
        .find(|l| l.contains(" x "))
        .expect("the new token is listed");
    assert!(
        row.contains("T") && row.ends_with('-') && row.contains("Z "),
        "{list}"
    );
    assert!(
        !list
            .split_whitespace()
            .any(|w| w.len() >= 9 && w.bytes().all(|b| b.is_ascii_digit())),
        "unix seconds: {list}"
    );
    // Provenance as lines.
    let shown = ok(&server.cli(&["show", "bc@1.0.0"]));
    assert!(
        shown.contains("provenance:\n") && shown.contains("    trees: 30"),
        "{shown}"
    );
    // The policy echoed as text; the shadow comparison and its verdict shown.
    let policy = root.join("policy.json");
    std::fs::write(&policy, "{\"steps\": [10, 100], \"interval_s\": 60}").unwrap();
    let set = ok(&server.cli(&["serving", "policy", "bc", &s(&policy)]));
    assert!(
        set.contains("  steps: 10, 100") && !set.contains('{'),
        "{set}"
    );
    ok(&server.cli(&["serving", "shadow", "bc", "1.1.0"]));
    ok(&server.cli(&["canary", "start", "bc", "1.1.0"]));
    ok(&server.cli(&["canary", "abort", "bc", "--reason", "enough"]));
    let status = ok(&server.cli(&["serving", "status", "bc"]));
    assert!(
        !status.contains('{') && !status.contains('"'),
        "raw JSON: {status}"
    );
    assert!(
        status.contains("shadow:  1.1.0: ") && status.contains("verdict: INCONCLUSIVE"),
        "{status}"
    );
    assert!(
        status.contains("rollout: 1.0.0 -> 1.1.0, aborted: aborted by a person: enough"),
        "{status}"
    );
    // --json keeps the machine form.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["serving", "status", "bc", "--json"]))).unwrap();
    assert!(
        v["rollout"]["phase"]["aborted"]["reason"].is_string(),
        "{v}"
    );
    assert!(v["shadow"]["verdict"]["result"].is_string(), "{v}");
}

#[test]
fn the_audit_log_lists_the_newest_first_and_pages_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let server = served(root, &[], "ok");
    let seqs = |text: &str| -> Vec<u64> {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let page = ok(&server.cli(&["audit", "log", "--limit", "3"]));
    let newest = seqs(&page);
    assert_eq!(newest.len(), 3, "{page}");
    assert!(newest.windows(2).all(|w| w[0] == w[1] + 1), "{page}");
    // The newest is the head.
    assert!(page.contains(&format!("head: {}:", newest[0])), "{page}");
    // The next page, as the last line names it.
    let next = page.lines().last().unwrap();
    let before = format!("airlock audit log --limit 3 --before {}", newest[2]);
    assert_eq!(next, format!("older entries: {before}"));
    let older = seqs(&ok(&server.cli(&[
        "audit",
        "log",
        "--limit",
        "3",
        "--before",
        &newest[2].to_string(),
    ])));
    assert_eq!(older, vec![newest[2] - 1, newest[2] - 2, newest[2] - 3]);
    // From the start on request.
    let first = seqs(&ok(&server.cli(&[
        "audit",
        "log",
        "--limit",
        "2",
        "--oldest-first",
    ])));
    assert_eq!(first, vec![0, 1]);
    let filtered = ok(&server.cli(&["audit", "log", "--action", "promotion", "--limit", "1"]));
    assert!(filtered.contains("bc/1.0.0"), "{filtered}");
}

#[test]
fn help_hides_secret_values_and_shows_sandbox_flags_only_where_they_apply() {
    let help = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = airlock();
        c.args(args).arg("--help");
        for (k, v) in env {
            c.env(k, v);
        }
        ok(&c.output().unwrap())
    };
    let h = help(
        &["traffic"],
        &[("AIRLOCK_FEEDBACK_TOKEN", "al_supersecret")],
    );
    assert!(
        !h.contains("al_supersecret") && h.contains("AIRLOCK_FEEDBACK_TOKEN"),
        "{h}"
    );
    for cmd in [
        vec!["models"],
        vec!["key", "generate"],
        vec!["promote"],
        vec!["audit", "log"],
        vec!["sign"],
    ] {
        let h = help(&cmd, &[]);
        for flag in ["--config", "--cache-dir", "--no-cache"] {
            assert!(!h.contains(flag), "{cmd:?} offers {flag}:\n{h}");
        }
    }
    for cmd in [vec!["plugin", "run"], vec!["gate", "run"], vec!["server"]] {
        let h = help(&cmd, &[]);
        assert!(
            h.contains("--cache-dir") && h.contains("--config"),
            "{cmd:?}:\n{h}"
        );
    }
    let top = help(&[], &[]);
    assert!(
        top.contains("serves the models") && top.contains("server-keys"),
        "{top}"
    );
    assert!(
        !top.lines().any(|l| l.trim_start().starts_with("keys ")),
        "{top}"
    );
    assert!(help(&["promote"], &[]).contains("[default: production]"));
    assert!(!help(&["audit", "log"], &[]).contains("1..=1000"));
    // The old name still works.
    ok(&airlock().args(["keys", "--help"]).output().unwrap());
}

#[test]
fn a_server_without_a_trust_root_warns_that_no_gate_can_be_published() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), &tmp.path().join("data"), &[]);
    let e = server.stderr();
    assert!(
        e.contains("warning: no --trust-root") && e.contains("no gate can be published"),
        "{e}"
    );
    let key = tmp.path().join("k.pem");
    ok(&local(&["key", "generate", &s(&key)]));
    let with = Server::start(
        tmp.path(),
        &tmp.path().join("data2"),
        &["--trust-root", &s(&tmp.path().join("k.pub"))],
    );
    assert!(!with.stderr().contains("warning"), "{}", with.stderr());
}

#[test]
fn the_server_logs_to_stderr_at_info_by_default_and_airlock_log_or_rust_log_sets_the_level() {
    let tmp = tempfile::tempdir().unwrap();
    // The start is logged before `server.url` is written, so it is in the
    // file once `Server::start` returns.
    let server = Server::start(tmp.path(), &tmp.path().join("data"), &[]);
    let e = server.stderr();
    assert!(
        e.lines().any(|l| l.contains(" INFO ")
            && l.contains("airlock_server")
            && l.contains("control plane started: listening on")),
        "{e}"
    );
    assert!(!e.contains("\u{1b}["), "colour codes in a file: {e}");
    for env in [("AIRLOCK_LOG", "warn"), ("RUST_LOG", "error")] {
        let quiet = Server::start_env(
            tmp.path(),
            &tmp.path().join(format!("data-{}", env.0)),
            &[],
            &[env],
        );
        let e = quiet.stderr();
        assert!(!e.contains("control plane started"), "{env:?}: {e}");
        // The operator's messages are not logs: they stay.
        assert!(e.contains("warning: no --trust-root"), "{env:?}: {e}");
    }
    // AIRLOCK_LOG wins over RUST_LOG.
    let both = Server::start_env(
        tmp.path(),
        &tmp.path().join("data-both"),
        &[],
        &[("RUST_LOG", "error"), ("AIRLOCK_LOG", "info")],
    );
    assert!(
        both.stderr().contains("control plane started"),
        "{}",
        both.stderr()
    );
}

#[test]
fn a_log_filter_that_does_not_parse_is_refused_naming_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = airlock()
        .args(["server", "--data-dir", &s(&data), "--listen", "127.0.0.1:0"])
        .env("AIRLOCK_LOG", "warn,airlock_server=loud")
        .output()
        .unwrap();
    let e = fails(&o, 2);
    assert!(
        e.contains("AIRLOCK_LOG=\"warn,airlock_server=loud\" is not a log filter"),
        "{e}"
    );
    // Refused before anything was started or written.
    assert!(!data.exists());
}

#[test]
fn stopping_the_server_during_a_gate_run_tells_the_waiting_client_and_a_second_signal_stops_at_once()
 {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Ceilings high enough that the `loop` step spins until it is stopped.
    let config = root.join("airlock.toml");
    std::fs::write(
        &config,
        "[limits]\nfuel = 1_000_000_000_000_000\ntimeout_ms = 600_000\n",
    )
    .unwrap();
    let mut server = served(root, &["--config", &s(&config)], "loop");
    let waiting = server.spawn_cli(&[
        "submit",
        "model",
        "bc",
        "--version",
        "1.0.0",
        "--plugin",
        "xgboost@1.0.0",
        "--bundle",
        &s(&example().join("model-v1")),
        "--wait",
    ]);
    // Wait for the run to be running (a state, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let o = server.cli(&["show", "bc@1.0.0", "--json"]);
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
            if v["runs"][0]["status"] == "running" {
                break v["runs"][0]["id"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the run never started: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    server.signal("-TERM");
    // The waiting client is told the server is stopping: exit 3, naming
    // the command that shows the run.
    let o = waiting.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}\n{}", out(&o), err(&o));
    let e = err(&o);
    assert!(
        e.contains("the server is stopping") && e.contains(&format!("`airlock run show {run}`")),
        "{e}"
    );
    // The server says what it waits for; a second signal stops it at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr().contains("Ctrl-C again") {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = server.stderr();
    assert!(
        said.contains(&format!("for 1 gate run to finish ({run})")),
        "{said}"
    );
    server.signal("-TERM");
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", server.stderr());
    assert!(
        server.stderr().contains("stopping at once"),
        "{}",
        server.stderr()
    );
    // The run was recorded as interrupted.
    let config_s = s(&config);
    drop(server);
    let server = Server::start(root, &root.join("data"), &["--config", &config_s]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["run", "show", &run, "--json"]))).unwrap();
    assert_eq!(v["run"]["status"], "interrupted", "{v}");
}
