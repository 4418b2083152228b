//! The control plane over HTTP, in process (the router driven with
//! `oneshot`, gate runs on the server's own worker threads): the
//! deployment loop, access control, signatures and trust, tokens and keys,
//! bad input, encryption at rest.

use airlock_attest::gate::{ExpectedSubject, verify_attestation};
use airlock_attest::policy::{GateDefinition, TrustPolicy};
use airlock_attest::{Curve, Envelope, KeySet, SigningKey, VerifyingKey};
use airlock_core::digest::Digest;
use airlock_server::access::{PERMISSIONS, ROLES};
use airlock_server::routes::{ROUTES, Reach};
use airlock_server::{AppState, ServerConfig};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// One server in process, with its own data directory (shared with the
/// serving tests).
pub(crate) struct Harness {
    pub(crate) router: Router,
    pub(crate) state: Arc<AppState>,
    pub(crate) admin: String,
    pub(crate) root: SigningKey,
    pub(crate) dir: tempfile::TempDir,
    /// Stops the serving controller when dropped.
    _controller: tokio::sync::watch::Sender<bool>,
}

pub(crate) fn config(dir: &Path, root: &SigningKey) -> ServerConfig {
    let mut c = ServerConfig::new(
        dir.join("data"),
        airlock_runtime::sandbox::SandboxConfig {
            cache_dir: Some(airlock_tests::cache_dir()),
            ..Default::default()
        },
        airlock_gate::data::DataCaps::default(),
    );
    c.trust_root = vec![root.verifying_key()];
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.database_url = test_database(dir);
    c
}

/// The metadata database for the test directory `dir`: `None` (SQLite in
/// the data directory) unless `AIRLOCK_TEST_DATABASE_URL` names a
/// PostgreSQL server, e.g. `postgres://airlock:airlock@127.0.0.1:5432/postgres`.
/// Then a database of the test's own on that server, `airlock_test_<hash
/// of the (random) temporary directory>`, created through the URL's
/// database on first use; calling again for the same directory (a restart)
/// gives the same database.
fn test_database(dir: &Path) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let base = std::env::var("AIRLOCK_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    let name = format!("airlock_test_{:016x}", hasher.finish());
    let maintenance = base.clone();
    let create = name.clone();
    on_own_runtime(async move {
        use sqlx::{Connection, Executor};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&maintenance)
            .await
            .expect("connect to AIRLOCK_TEST_DATABASE_URL");
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT datname::TEXT FROM pg_database WHERE datname = $1")
                .bind(&create)
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        if exists.is_none() {
            conn.execute(format!("CREATE DATABASE {create}").as_str())
                .await
                .unwrap();
        }
    });
    Some(with_database(&base, &name))
}

/// `url` with its database (path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = url.split_at(start);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let query = rest.find('?').map_or("", |q| &rest[q..]);
    format!("{scheme}{authority}/{db}{query}")
}

/// Drops a database [`test_database`] created (connections and all).
fn drop_test_database(url: &str) {
    let Ok(base) = std::env::var("AIRLOCK_TEST_DATABASE_URL") else {
        return;
    };
    let name = url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    if !name.starts_with("airlock_test_") {
        return;
    }
    on_own_runtime(async move {
        use sqlx::{Connection, Executor};
        if let Ok(mut conn) = sqlx::AnyConnection::connect(&base).await {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    });
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own
/// (so that it works from inside a test's runtime as well as outside one).
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(url) = &self.state.config.database_url {
            drop_test_database(url);
        }
    }
}

impl Harness {
    pub(crate) async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    pub(crate) async fn with(tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let root = SigningKey::generate(Curve::P256);
        let mut c = config(dir.path(), &root);
        tweak(&mut c);
        let workers = c.workers;
        let state = AppState::open(c).await.expect("server state");
        airlock_server::runs::start_workers(&state, workers);
        let token_file = state
            .admin_token_file
            .get()
            .expect("fresh data dir writes the admin token");
        let admin = std::fs::read_to_string(token_file)
            .unwrap()
            .trim()
            .to_string();
        let router = airlock_server::routes::router(state.clone());
        state
            .serving_ready
            .store(true, std::sync::atomic::Ordering::Release);
        let (controller, stopped) = tokio::sync::watch::channel(false);
        airlock_server::serving::control::start(state.clone(), stopped);
        Harness {
            router,
            state,
            admin,
            root,
            dir,
            _controller: controller,
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let text_answer = status.is_success()
            && resp
                .headers()
                .get("content-type")
                .and_then(|c| c.to_str().ok())
                .is_some_and(|c| c.contains("text"));
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        if text_answer {
            // The Prometheus exposition: text by design.
            return (
                status,
                Value::String(String::from_utf8_lossy(&bytes).into()),
            );
        }
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "non-JSON answer ({status}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, v)
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    /// Calls as admin and insists on a 2xx.
    pub(crate) async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self
            .call(method, path, Some(&self.admin.clone()), body)
            .await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    pub(crate) async fn upload_as(&self, token: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/blobs")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(bytes))
            .unwrap();
        self.send(req).await
    }

    pub(crate) async fn upload(&self, bytes: Vec<u8>) -> String {
        let (s, v) = self.upload_as(&self.admin.clone(), bytes).await;
        assert!(s.is_success(), "upload: {s} {v}");
        v["digest"].as_str().unwrap().to_string()
    }

    pub(crate) async fn token(&self, subject: &str, role: &str) -> String {
        let v = self
            .ok(
                "POST",
                "/v1/tokens",
                Some(json!({ "subject": subject, "role": role })),
            )
            .await;
        v["token"].as_str().unwrap().to_string()
    }

    pub(crate) async fn register(&self, file: &Path, name: &str, version: &str) -> String {
        let digest = self.upload(std::fs::read(file).unwrap()).await;
        self.ok(
            "POST",
            "/v1/plugins",
            Some(json!({ "name": name, "version": version, "component": digest })),
        )
        .await;
        digest
    }

    /// Pins the breast-cancer example gate to uploaded validators and
    /// datasets; returns the TOML.
    pub(crate) async fn pinned_gate(&self, tweak: impl FnOnce(&mut toml::Table)) -> String {
        let text = std::fs::read_to_string(airlock_tests::example().join("gate.toml")).unwrap();
        let mut t: toml::Table = toml::from_str(&text).unwrap();
        t.remove("plugin_dir");
        let steps = t["steps"].as_array().unwrap().clone();
        let mut pinned = Vec::new();
        for mut step in steps {
            let s = step.as_table_mut().unwrap();
            let name = s["plugin"].as_str().unwrap().to_string();
            let d = self
                .register(
                    &airlock_tests::plugin(&format!("airlock_validator_{name}")),
                    &name,
                    "1.0.0",
                )
                .await;
            s.insert("plugin".into(), toml::Value::String(d));
            for key in ["dataset", "reference"] {
                if let Some(p) = s.get(key).and_then(|v| v.as_str()).map(str::to_string) {
                    let bytes = std::fs::read(airlock_tests::example().join(p)).unwrap();
                    let d = self.upload(bytes).await;
                    s.insert(key.into(), toml::Value::String(d));
                }
            }
            pinned.push(step);
        }
        t.insert("steps".into(), toml::Value::Array(pinned));
        tweak(&mut t);
        toml::to_string(&t).unwrap()
    }

    /// Publishes gate `version` (signed by root) as the pinned gate with a
    /// stricter performance step (min accuracy 0.94): a gate change under
    /// which no existing version has a run yet.
    pub(crate) async fn publish_stricter_gate(&self, version: u64) -> (StatusCode, Value) {
        let strict = self
            .pinned_gate(|t| {
                let steps = t.get_mut("steps").unwrap().as_array_mut().unwrap();
                let perf = steps
                    .iter_mut()
                    .find(|s| s["name"].as_str() == Some("performance"))
                    .unwrap();
                perf["config"]["min"]["accuracy"] = toml::Value::Float(0.94);
            })
            .await;
        self.publish_gate(version, strict, &self.root).await
    }

    pub(crate) async fn publish_gate(
        &self,
        version: u64,
        gate_toml: String,
        key: &SigningKey,
    ) -> (StatusCode, Value) {
        let env = GateDefinition {
            name: "breast-cancer".into(),
            version,
            gate_toml,
        }
        .sign(key)
        .unwrap();
        let body: Value = serde_json::from_str(&env.to_json()).unwrap();
        self.call("POST", "/v1/gates", Some(&self.admin.clone()), Some(body))
            .await
    }

    pub(crate) async fn bundle(&self, dir: &str) -> String {
        let mut bytes = Vec::new();
        airlock_server::archive::pack(&airlock_tests::example().join(dir), &mut bytes).unwrap();
        self.upload(bytes).await
    }

    /// Gate, model and the XGBoost plugin: ready for submissions.
    pub(crate) async fn deployable(&self, approvals: u32) {
        let gate = self.pinned_gate(|_| {}).await;
        let (s, v) = self.publish_gate(1, gate, &self.root.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        self.ok(
            "PUT",
            "/v1/models/breast-cancer",
            Some(json!({ "gate": "breast-cancer", "approvals_required": approvals })),
        )
        .await;
        self.register(
            &airlock_tests::plugin("airlock_model_xgboost"),
            "xgboost",
            "1.0.0",
        )
        .await;
    }

    pub(crate) async fn submit_as(
        &self,
        token: &str,
        version: &str,
        bundle_dir: &str,
    ) -> (StatusCode, Value) {
        let bundle = self.bundle(bundle_dir).await;
        self.call(
            "POST",
            "/v1/models/breast-cancer/versions",
            Some(token),
            Some(
                json!({ "version": version, "plugin": "xgboost@1.0.0", "bundle": bundle,
                         "provenance": { "author": "test", "labels": { "team": "qa" } } }),
            ),
        )
        .await
    }

    pub(crate) async fn wait(&self, run: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.ok("GET", &format!("/v1/runs/{run}"), None).await;
            let status = v["run"]["status"].as_str().unwrap().to_string();
            if !matches!(status.as_str(), "queued" | "running") {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "run {run} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn submit_and_wait(
        &self,
        token: &str,
        version: &str,
        bundle_dir: &str,
    ) -> (String, Value) {
        let (s, v) = self.submit_as(token, version, bundle_dir).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let run = v["run"].as_str().unwrap().to_string();
        let r = self.wait(&run).await;
        (run, r)
    }

    pub(crate) async fn host_keys(&self) -> KeySet {
        let v = self.ok("GET", "/v1/keys", None).await;
        let mut ks = KeySet::new();
        for k in v["items"].as_array().unwrap() {
            ks.insert(VerifyingKey::from_pem(k["public_key"].as_str().unwrap()).unwrap());
        }
        ks
    }
}

/// The message of an error answer (`/v1`'s `{"error": {"message"}}` or the
/// inference protocol's `{"error": "..."}`).
pub(crate) fn message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .or(v["error"].as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_loop_gates_signs_approves_promotes_refuses_and_rolls_back() {
    let h = Harness::new().await;
    h.deployable(1).await;
    let alice = h.token("alice", "submitter").await;
    let bob = h.token("bob", "approver").await;
    let carol = h.token("carol", "deployer").await;

    // v1 passes, and its attestation verifies offline for exactly its digests.
    let (run1, r1) = h.submit_and_wait(&alice, "1.0.0", "model-v1").await;
    assert_eq!(r1["run"]["status"], "passed", "{r1}");
    let att = h
        .ok("GET", &format!("/v1/runs/{run1}/attestation"), None)
        .await;
    let env = Envelope::from_json(&att.to_string()).unwrap();
    let v1 = h
        .ok("GET", "/v1/models/breast-cancer/versions/1.0.0", None)
        .await;
    let expected = ExpectedSubject {
        model: Digest::parse(v1["version"]["plugin"].as_str().unwrap()).unwrap(),
        bundle: Digest::parse(v1["version"]["bundle_digest"].as_str().unwrap()),
    };
    let verified = verify_attestation(&env, &h.host_keys().await, Some(&expected)).unwrap();
    assert!(verified.passed());
    // Reproducing the run (same gate version, baseline and seed) gives the
    // same verdict and metrics, byte for byte.
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions/1.0.0/runs",
            Some(&alice),
            Some(json!({ "reproduce": run1 })),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let again = h.wait(v["run"].as_str().unwrap()).await;
    assert_eq!(again["run"]["seed"], r1["run"]["seed"]);
    let verdict = |r: &Value| {
        let mut v = r["report"].clone();
        v.as_object_mut().unwrap().remove("run");
        v
    };
    assert_eq!(verdict(&again), verdict(&r1));
    assert!(r1["report"]["steps"].as_array().unwrap().len() >= 5);
    // Submitting the same bytes again is idempotent; other bytes under the
    // same version are refused.
    let (s, _) = h.submit_as(&alice, "1.0.0", "model-v1").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = h.submit_as(&alice, "1.0.0", "model-v2-degraded").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(message(&v).contains("never reused"), "{v}");

    // Promotion needs an approval, and the submitter's own does not count.
    let promote = json!({ "version": "1.0.0", "reason": "first release" });
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(promote.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).contains("0 of the 1 approvals"), "{v}");
    let alice_approver = h.token("alice", "approver").await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions/1.0.0/approvals",
            Some(&alice_approver),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("may not approve"), "{v}");
    let (s, _) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions/1.0.0/approvals",
            Some(&bob),
            Some(json!({ "comment": "looks good" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(promote),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The degraded v2 is judged against v1 in production and refused;
    // promoting it is refused naming the refused run.
    let (run2, r2) = h
        .submit_and_wait(&alice, "2.0.0", "model-v2-degraded")
        .await;
    assert_eq!(r2["run"]["status"], "refused", "{r2}");
    assert_eq!(r2["run"]["baseline"], "1.0.0");
    h.call(
        "POST",
        "/v1/models/breast-cancer/versions/2.0.0/approvals",
        Some(&bob),
        Some(json!({})),
    )
    .await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(json!({ "version": "2.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        message(&v).contains(&run2) && message(&v).contains("refused"),
        "{v}"
    );

    // A replayed attestation (v1's, for other digests) planted on v2's run
    // is refused by the promotion check.
    let att1: (String,) = sqlx_query_one(&h, &run1).await;
    plant_attestation(&h, &run2, &att1.0).await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(json!({ "version": "2.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).contains("does not verify"), "{v}");

    // A second good version, promoted, then rolled back to v1.
    let (_, r3) = h.submit_and_wait(&alice, "1.1.0", "model-v1").await;
    assert_eq!(r3["run"]["status"], "passed", "{r3}");
    h.call(
        "POST",
        "/v1/models/breast-cancer/versions/1.1.0/approvals",
        Some(&bob),
        Some(json!({})),
    )
    .await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(json!({ "version": "1.1.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/rollback",
            Some(&carol),
            Some(json!({ "reason": "drill" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], "1.0.0");
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/rollback",
            Some(&carol),
            Some(json!({ "version": "2.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).contains("never promoted"), "{v}");
    // A refusal sticks: a version refused once under the current gate is
    // not promoted on a later pass (no grinding seeds with re-runs).
    let (gate_digest,): (String,) = sqlx::query_as("SELECT gate_digest FROM runs WHERE id = $1")
        .bind(&run1)
        .fetch_one(&h.state.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO runs (id, seq, model, version, gate, gate_version, gate_digest, status, requested_by, created_at)
         VALUES ('run_00000000000000ff', 0, 'breast-cancer', '1.1.0', 'breast-cancer', 1, $1, 'refused', 'alice', 'then')",
    )
    .bind(&gate_digest)
    .execute(&h.state.db)
    .await
    .unwrap();
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(json!({ "version": "1.1.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(&v).contains("does not undo a refusal"), "{v}");
    // ... and to the bytes: the same component and bundle under a fresh
    // version number cannot be promoted either.
    let (_, r4) = h.submit_and_wait(&alice, "1.1.1", "model-v1").await;
    assert_eq!(r4["run"]["status"], "passed", "{r4}");
    h.call(
        "POST",
        "/v1/models/breast-cancer/versions/1.1.1/approvals",
        Some(&bob),
        Some(json!({})),
    )
    .await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&carol),
            Some(json!({ "version": "1.1.1" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        message(&v).contains("these bytes") && message(&v).contains("1.1.0"),
        "{v}"
    );
    let hist = h.ok("GET", "/v1/models/breast-cancer/history", None).await;
    let moves: Vec<(String, String, String)> = hist["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["version"].as_str().unwrap().into(),
                e["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("promote".into(), "1.0.0".into(), "carol".into()),
            ("promote".into(), "1.1.0".into(), "carol".into()),
            ("rollback".into(), "1.0.0".into(), "carol".into()),
        ]
    );

    // Every change is in the audit log, which verifies.
    let log = airlock_audit::verify_file(&h.data_dir().join("audit.jsonl"), None).unwrap();
    assert!(log.chain.entries > 10, "{log:?}");
    let all = h.ok("GET", "/v1/audit?limit=1000", None).await;
    let actions: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "submission",
        "gate_run",
        "attestation",
        "approval",
        "promotion",
        "rollback",
        "token_change",
    ] {
        assert!(actions.contains(&a), "no {a} entry in {actions:?}");
    }
    let promos = h.ok("GET", "/v1/audit?action=promotion", None).await;
    assert_eq!(promos["entries"].as_array().unwrap().len(), 2);
}

async fn sqlx_query_one(h: &Harness, run: &str) -> (String,) {
    sqlx::query_as("SELECT attestation FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(&h.state.db)
        .await
        .unwrap()
}

async fn plant_attestation(h: &Harness, run: &str, att: &str) {
    sqlx::query("UPDATE runs SET status = 'passed', attestation = $1 WHERE id = $2")
        .bind(att)
        .bind(run)
        .execute(&h.state.db)
        .await
        .unwrap();
}

/// A request that a route's handler accepts as far as access goes.
fn sample(path: &str) -> String {
    path.replace("{name}", "breast-cancer")
        .replace("{version}", "1.0.0")
        .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
        .replace("{id}", "0123456789abcdef")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_every_role_allows_exactly_the_access_table() {
    let h = Harness::new().await;
    let mut tokens = Vec::new();
    for role in ROLES {
        tokens.push((
            role,
            h.token(&format!("user-{}", role.as_str()), role.as_str())
                .await,
        ));
    }
    let mut table = Vec::new();
    for route in ROUTES {
        let path = sample(route.path);
        // No token: refused on every guarded route.
        let (s, v) = h.call(route.method, &path, None, Some(json!({}))).await;
        match route.needs {
            Some(_) => assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{} {path} without a token: {v}",
                route.method
            ),
            None => assert!(s.is_success(), "{} {path}: {s}", route.method),
        }
        for (role, token) in &tokens {
            let (s, v) = h
                .call(route.method, &path, Some(token), Some(json!({})))
                .await;
            let allowed = route.needs.is_none_or(|p| role.allows(p));
            if allowed {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{} {path} as {}: {s} {v}",
                    route.method,
                    role.as_str()
                );
            } else {
                assert_eq!(
                    s,
                    StatusCode::FORBIDDEN,
                    "{} {path} as {}: {v}",
                    route.method,
                    role.as_str()
                );
                assert!(message(&v).contains(role.as_str()), "{v}");
            }
            assert!(
                !s.is_server_error(),
                "{} {path} as {}: {s} {v}",
                route.method,
                role.as_str()
            );
            table.push((route.method, route.path, role.as_str(), allowed));
        }
    }
    // The docs print the same table.
    let doc = std::fs::read_to_string(airlock_tests::repo_root().join("docs/security.md")).unwrap();
    for route in ROUTES {
        let needs = route.needs.map_or("none", |p| p.as_str());
        let mut row = format!("| `{} {}` | {needs} |", route.method, route.path);
        for role in ROLES {
            let allowed = route.needs.is_none_or(|p| role.allows(p));
            row.push_str(if allowed { " allow |" } else { " deny |" });
        }
        assert!(doc.contains(&row), "docs/security.md lacks the row {row}");
    }
    let header: String = ROLES.iter().map(|r| format!(" {} |", r.as_str())).collect();
    assert!(
        doc.contains(&format!("| route | permission |{header}")),
        "docs/security.md's access table has other role columns than {header}"
    );
    // Every permission guards at least one route: none is dead in the table.
    for p in PERMISSIONS {
        assert!(
            ROUTES.iter().any(|r| r.needs == Some(p)),
            "no route needs {}",
            p.as_str()
        );
    }
    assert_eq!(table.len(), ROUTES.len() * ROLES.len());

    // Scopes. The model exists and is judged by the gate of its name, so
    // every route naming either can be refused by scope alone.
    sqlx::query(
        "INSERT INTO models (name, gate, approvals_required, description, created_at, created_by)
         VALUES ('breast-cancer', 'breast-cancer', 0, '', '2026-01-01T00:00:00Z', 'test')",
    )
    .execute(&h.state.db)
    .await
    .unwrap();
    let mut scoped = Vec::new();
    for role in ROLES {
        for model in ["other-model", "breast-cancer"] {
            let v = h
                .ok(
                    "POST",
                    "/v1/tokens",
                    Some(json!({ "subject": format!("{}-of-{model}", role.as_str()),
                                 "role": role.as_str(), "scope": { "models": [model] } })),
                )
                .await;
            scoped.push((role, model, v["token"].as_str().unwrap().to_string()));
        }
    }
    for route in ROUTES {
        let path = sample(route.path);
        let reach = route.reach();
        for (role, model, token) in &scoped {
            if !route.needs.is_some_and(|p| role.allows(p)) {
                continue; // refused by role, as above
            }
            let (s, v) = h
                .call(route.method, &path, Some(token), Some(json!({})))
                .await;
            let refused = match reach {
                Reach::Server => true,
                Reach::Model => *model != "breast-cancer",
                // A body names the gate to publish: checked after parsing.
                Reach::Gate => route.path.contains("{name}") && *model != "breast-cancer",
                Reach::Run | Reach::Filtered | Reach::Shared => false,
            };
            let shown = format!(
                "{} {path} as {} scoped to {model} ({}): {s} {v}",
                route.method,
                role.as_str(),
                reach.as_str()
            );
            if refused {
                assert_eq!(s, StatusCode::FORBIDDEN, "{shown}");
                let m = message(&v);
                assert!(
                    m.contains("not granted") || m.contains("unscoped"),
                    "{shown}"
                );
            } else {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{shown}"
                );
            }
            assert!(!s.is_server_error(), "{shown}");
        }
        let row = format!("| `{} {}` | {} |", route.method, route.path, reach.as_str());
        assert!(
            doc.contains(&row),
            "docs/security.md lacks the scope row {row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_router_route_is_in_the_access_table_and_the_openapi_document() {
    let h = Harness::new().await;
    // What the router serves, as registered, against the table: both ways.
    let served = airlock_server::routes::registered(h.state.clone());
    let listed: std::collections::BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let registered: std::collections::BTreeSet<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(served.len(), registered.len(), "a route registered twice");
    let unlisted: Vec<_> = registered.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "served but not in the access table: {unlisted:?}"
    );
    let unserved: Vec<_> = listed.difference(&registered).collect();
    assert!(
        unserved.is_empty(),
        "in the access table but not served: {unserved:?}"
    );
    // Every listed route that needs a token is really reached: an
    // anonymous call is refused by the access layer (401), never the
    // router's own 404 or 405.
    for r in ROUTES.iter().filter(|r| r.needs.is_some()) {
        let path = r
            .path
            .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
            .replace("{version}", "1")
            .replace(['{', '}'], "");
        let (s, v) = h.call(r.method, &path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{} {path}: {v}", r.method);
    }
    let doc = h.call("GET", "/v1/openapi.json", None, None).await.1;
    let paths = doc["paths"].as_object().unwrap();
    let mut n = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            n += 1;
            assert!(
                ROUTES
                    .iter()
                    .any(|r| r.path == path && r.method.eq_ignore_ascii_case(method)),
                "{method} {path}"
            );
        }
    }
    assert_eq!(n, ROUTES.len());
    // A route the table does not list does not exist: 404 JSON.
    let (s, v) = h
        .call("GET", "/v1/nothing-here", Some(&h.admin.clone()), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(message(&v).contains("no route"));
    let (s, _) = h
        .call("PATCH", "/v1/models", Some(&h.admin.clone()), None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_rotate_and_revoke_and_are_never_listed() {
    let h = Harness::new().await;
    let v = h
        .ok(
            "POST",
            "/v1/tokens",
            Some(json!({ "subject": "dave", "role": "reader", "ttl_seconds": 3600 })),
        )
        .await;
    let short = v["token"].as_str().unwrap().to_string();
    let (s, _) = h.call("GET", "/v1/whoami", Some(&short), None).await;
    assert_eq!(s, StatusCode::OK);
    // The server's clock, not the test, moves: still valid well inside its
    // hour, expired once the hour has passed.
    h.state.clock.advance(Duration::from_secs(3000));
    let (s, _) = h.call("GET", "/v1/whoami", Some(&short), None).await;
    assert_eq!(s, StatusCode::OK);
    h.state.clock.advance(Duration::from_secs(600));
    let (s, v) = h.call("GET", "/v1/whoami", Some(&short), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&v).contains("expired"), "{v}");

    let v = h
        .ok(
            "POST",
            "/v1/tokens",
            Some(json!({ "subject": "erin", "role": "reader" })),
        )
        .await;
    let (id, old) = (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    );
    let v = h.ok("POST", &format!("/v1/tokens/{id}/rotate"), None).await;
    let new = v["token"].as_str().unwrap().to_string();
    assert_eq!(
        h.call("GET", "/v1/whoami", Some(&old), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = h.call("GET", "/v1/whoami", Some(&new), None).await;
    assert_eq!((s, v["subject"].as_str()), (StatusCode::OK, Some("erin")));
    h.ok("DELETE", &format!("/v1/tokens/{id}"), None).await;
    let (s, v) = h.call("GET", "/v1/whoami", Some(&new), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&v).contains("revoked"), "{v}");

    // A forged secret for a real id, and a malformed token.
    let forged = format!("alk_{id}_{}", "a".repeat(64));
    assert_eq!(
        h.call("GET", "/v1/whoami", Some(&forged), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.call("GET", "/v1/whoami", Some("letmein"), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Listing shows no secret and no hash; the database holds only hashes.
    let list = h.ok("GET", "/v1/tokens", None).await.to_string();
    assert!(!list.contains(&new[20..]) && !list.contains("hash"));
    let stored: Vec<(String,)> = sqlx::query_as("SELECT hash FROM tokens")
        .fetch_all(&h.state.db)
        .await
        .unwrap();
    assert!(stored.iter().all(|(hash,)| !new.contains(hash.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_grants_reach_only_their_models_and_aliases() {
    let h = Harness::new().await;
    h.deployable(0).await;
    let v = h
        .ok(
            "POST",
            "/v1/tokens",
            Some(json!({ "subject": "stager", "role": "deployer",
                         "scope": { "models": ["breast-cancer"], "aliases": ["staging"] } })),
        )
        .await;
    let stager = v["token"].as_str().unwrap().to_string();
    let alice = h.token("alice", "submitter").await;
    let (_, r) = h.submit_and_wait(&alice, "1.0.0", "model-v1").await;
    assert_eq!(r["run"]["status"], "passed", "{r}");
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&stager),
            Some(json!({ "version": "1.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(message(&v).contains("production"), "{v}");
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&stager),
            Some(json!({ "version": "1.0.0", "alias": "staging" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = h
        .call("GET", "/v1/models/other-model", Some(&stager), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_gate_admin_changes_only_gates_whose_every_model_is_in_its_scope() {
    let h = Harness::new().await;
    h.deployable(0).await;
    // The same gate judges a second model.
    h.ok(
        "PUT",
        "/v1/models/second-model",
        Some(json!({ "gate": "breast-cancer" })),
    )
    .await;
    let token = |subject: &str, role: &str, models: &[&str]| {
        let body = json!({ "subject": subject, "role": role, "scope": { "models": models } });
        let h = &h;
        async move {
            let v = h.ok("POST", "/v1/tokens", Some(body)).await;
            v["token"].as_str().unwrap().to_string()
        }
    };
    let one = token("gatekeeper-of-one", "gate-admin", &["breast-cancer"]).await;
    let both = token(
        "gatekeeper-of-both",
        "gate-admin",
        &["breast-cancer", "second-model"],
    )
    .await;
    let gate = h.pinned_gate(|_| {}).await;
    let signed = |version: u64| {
        let env = GateDefinition {
            name: "breast-cancer".into(),
            version,
            gate_toml: gate.clone(),
        }
        .sign(&h.root)
        .unwrap();
        serde_json::from_str::<Value>(&env.to_json()).unwrap()
    };
    // Publishing or switching the gate that also judges second-model.
    let (s, v) = h
        .call("POST", "/v1/gates", Some(&one), Some(signed(2)))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("second-model"), "{v}");
    let (s, v) = h
        .call(
            "PUT",
            "/v1/gates/breast-cancer/current",
            Some(&one),
            Some(json!({ "version": 1 })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("second-model"), "{v}");
    let g = h.ok("GET", "/v1/gates/breast-cancer", None).await;
    assert_eq!(g["versions"].as_array().unwrap().len(), 1, "{g}");
    // With both models in scope, both work.
    let (s, v) = h
        .call("POST", "/v1/gates", Some(&both), Some(signed(2)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h
        .call(
            "PUT",
            "/v1/gates/breast-cancer/current",
            Some(&both),
            Some(json!({ "version": 2 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A reader reads the gate of one of its models, not another's, and the
    // list shows only those.
    let own = token("reader-of-one", "reader", &["second-model"]).await;
    let stranger = token("reader-of-none", "reader", &["third-model"]).await;
    let (s, v) = h
        .call(
            "GET",
            "/v1/gates/breast-cancer/versions/2",
            Some(&own),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for path in [
        "/v1/gates/breast-cancer",
        "/v1/gates/breast-cancer/versions/2",
    ] {
        let (s, v) = h.call("GET", path, Some(&stranger), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    let (_, v) = h.call("GET", "/v1/gates", Some(&own), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = h.call("GET", "/v1/gates", Some(&stranger), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");
    // A scoped admin cannot mint itself a wider token.
    let admin_of_one = token("admin-of-one", "admin", &["breast-cancer"]).await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin_of_one),
            Some(json!({ "subject": "escalated", "role": "admin" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("unscoped"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_must_be_signed_by_a_trusted_key_and_switch_forward_and_back_in_one_call() {
    let h = Harness::new().await;
    let gate = h.pinned_gate(|_| {}).await;
    let stranger = SigningKey::generate(Curve::P256);
    let (s, v) = h.publish_gate(1, gate.clone(), &stranger).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // An unpinned gate (a host path) is refused naming it.
    let (s, v) = h
        .publish_gate(1, gate.replacen("sha256:", "/etc/", 1), &h.root.clone())
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("not pinned"), "{v}");
    let (s, v) = h.publish_gate(1, gate.clone(), &h.root.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.ok(
        "PUT",
        "/v1/models/breast-cancer",
        Some(json!({ "gate": "breast-cancer" })),
    )
    .await;
    h.register(
        &airlock_tests::plugin("airlock_model_xgboost"),
        "xgboost",
        "1.0.0",
    )
    .await;
    let alice = h.token("alice", "submitter").await;
    let (_, r) = h.submit_and_wait(&alice, "1.0.0", "model-v1").await;
    assert_eq!(r["run"]["status"], "passed", "{r}");

    // Gate v2 (stricter accuracy); v1's attestation is not under it.
    let (s, v) = h.publish_stricter_gate(2).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h.publish_gate(2, gate.clone(), &h.root.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    h.ok(
        "PUT",
        "/v1/gates/breast-cancer/current",
        Some(json!({ "version": 2 })),
    )
    .await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&h.admin.clone()),
            Some(json!({ "version": "1.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        message(&v).contains("no finished gate run under gate breast-cancer version 2"),
        "{v}"
    );
    // And back: one call.
    h.ok(
        "PUT",
        "/v1/gates/breast-cancer/current",
        Some(json!({ "version": 1 })),
    )
    .await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&h.admin.clone()),
            Some(json!({ "version": "1.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_policy_can_require_signed_bundles_and_cannot_be_replayed() {
    let h = Harness::new().await;
    h.deployable(0).await;
    let policy_toml = |version: u64, require: bool| {
        let k = h.root.verifying_key();
        format!(
            "version = {version}\n[require_signed]\nplugins = false\nbundles = {require}\n\n[[keys]]\nid = \"{}\"\npublic_key_pem = \"\"\"\n{}\"\"\"\nkinds = [\"plugin\", \"bundle\", \"gate\", \"policy\"]\n",
            k.key_id().hex(),
            k.to_pem()
        )
    };
    let put = |env: Envelope| serde_json::from_str::<Value>(&env.to_json()).unwrap();
    let p2 = TrustPolicy::from_toml(&policy_toml(2, true))
        .unwrap()
        .sign(&h.root)
        .unwrap();
    h.ok("PUT", "/v1/trust-policy", Some(put(p2))).await;
    let alice = h.token("alice", "submitter").await;
    let (s, v) = h.submit_as(&alice, "1.0.0", "model-v1").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("bundle"), "{v}");
    // A signed bundle (OpenSSF model signing, by the trusted key) passes.
    let sig = airlock_attest::model_signing::sign_model(
        &airlock_tests::example().join("model-v1"),
        &h.root,
        &airlock_attest::model_signing::Options::default(),
    )
    .unwrap();
    let bundle = h.bundle("model-v1").await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions",
            Some(&alice),
            Some(
                json!({ "version": "1.0.0", "plugin": "xgboost@1.0.0", "bundle": bundle,
                         "bundle_signature": serde_json::to_value(&sig).unwrap() }),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["version"]["bundle_signer"].as_str(),
        Some(h.root.key_id().hex().as_str())
    );
    // An older policy, validly signed, is a replay.
    let p1 = TrustPolicy::from_toml(&policy_toml(1, false))
        .unwrap()
        .sign(&h.root)
        .unwrap();
    let (s, v) = h
        .call(
            "PUT",
            "/v1/trust-policy",
            Some(&h.admin.clone()),
            Some(put(p1)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        message(&v).contains('1') && message(&v).contains('2'),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_json_error_naming_the_problem() {
    let h = Harness::with(|c| c.max_upload_bytes = 1 << 20).await;
    let admin = h.admin.clone();
    let cases: &[(&str, &str, Option<Value>, u16, &str)] = &[
        ("GET", "/v1/models/..%2F..%2Fetc", None, 400, "name"),
        ("GET", "/v1/models/%2e%2e", None, 400, "must start with"),
        ("GET", "/v1/models/a..b", None, 400, "`..`"),
        ("GET", "/v1/models/%00", None, 400, "holds"),
        ("GET", "/v1/models/%FF%FE", None, 400, "path"),
        ("GET", "/v1/models/Upper", None, 400, "holds"),
        (
            "GET",
            "/v1/models/no-such-model",
            None,
            404,
            "no model no-such-model",
        ),
        (
            "GET",
            "/v1/models/no-such-model/versions/1.0.0",
            None,
            404,
            "no-such-model",
        ),
        ("GET", "/v1/plugins/sha256:xyz", None, 400, "not a digest"),
        ("GET", "/v1/plugins/..%2Fescape", None, 400, "name@version"),
        ("GET", "/v1/runs/run_..%2F..%2F", None, 400, "malformed"),
        ("GET", "/v1/blobs/sha256:0000", None, 400, "not a digest"),
        ("GET", "/v1/models?limit=100000", None, 400, "limit"),
        ("GET", "/v1/models?bogus=1", None, 400, "query"),
        (
            "PUT",
            "/v1/models/m1",
            Some(json!({ "gate": "nope" })),
            404,
            "no gate nope",
        ),
        (
            "PUT",
            "/v1/models/m1",
            Some(json!({ "gate": "g", "extra": 1 })),
            400,
            "extra",
        ),
        (
            "POST",
            "/v1/plugins",
            Some(json!({ "name": "x", "version": "1", "component": "sha256:00" })),
            400,
            "semantic version",
        ),
        (
            "POST",
            "/v1/plugins",
            Some(json!({ "name": "../x", "version": "1.0.0", "component": "sha256:00" })),
            400,
            "name",
        ),
        (
            "POST",
            "/v1/plugins",
            Some(
                json!({ "name": "x", "version": "1.0.0", "component": format!("sha256:{}", "1".repeat(64)) }),
            ),
            404,
            "no uploaded blob",
        ),
        (
            "POST",
            "/v1/tokens",
            Some(json!({ "subject": "x", "role": "root" })),
            400,
            "role \"root\" is not one of predictor, labeler, reader, submitter, approver, deployer, gate-admin, admin",
        ),
        (
            "POST",
            "/v1/gates",
            Some(json!({ "payload": "e30=", "payloadType": "x", "signatures": [] })),
            422,
            "gate definition",
        ),
        (
            "PUT",
            "/v1/trust-policy",
            Some(json!({ "nope": 1 })),
            400,
            "request body",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let (s, v) = h.call(method, path, Some(&admin), body.clone()).await;
        assert_eq!(s.as_u16(), *status, "{method} {path}: {v}");
        assert!(
            message(&v).contains(needle),
            "{method} {path}: {v} should mention {needle}"
        );
    }
    let long = format!("/v1/models/{}", "a".repeat(5000));
    let (s, v) = h.call("GET", &long, Some(&admin), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&v).contains("5000 bytes"), "{v}");
    // Malformed JSON and a JSON body without its content type.
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/models/m1")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"gate\": "))
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // An upload over the cap, declared or not.
    let (s, v) = h.upload_as(&admin, vec![0u8; (1 << 20) + 1]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let over = futures_stream(vec![vec![1u8; 600_000], vec![2u8; 600_000]], false);
    let req = Request::builder()
        .method("POST")
        .uri("/v1/blobs")
        .header("authorization", format!("Bearer {admin}"))
        .body(over)
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // A truncated upload (the connection fails mid-body) stores nothing.
    let cut = futures_stream(vec![vec![3u8; 1000]], true);
    let req = Request::builder()
        .method("POST")
        .uri("/v1/blobs")
        .header("authorization", format!("Bearer {admin}"))
        .body(cut)
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("cut off"), "{v}");
    // A wrong declared digest stores nothing.
    let req = Request::builder()
        .method("POST")
        .uri("/v1/blobs")
        .header("authorization", format!("Bearer {admin}"))
        .header("x-airlock-digest", Digest::of(b"other").to_string())
        .body(Body::from("these bytes"))
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "digest_mismatch");
    let blobs = std::fs::read_dir(h.data_dir().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "nothing was stored");
    // A bundle archive that climbs out is refused naming the entry, and
    // nothing lands outside the data directory.
    let mut evil = tar::Header::new_old();
    evil.as_old_mut().name[..9].copy_from_slice(b"../escape");
    evil.set_size(1);
    evil.set_entry_type(tar::EntryType::Regular);
    evil.set_cksum();
    let mut bytes = evil.as_bytes().to_vec();
    bytes.extend([b'x']);
    bytes.extend([0u8; 511 + 1024]);
    h.deployable(0).await;
    let d = h.upload(bytes).await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions",
            Some(&admin),
            Some(json!({ "version": "1.0.0", "plugin": "xgboost@1.0.0", "bundle": d })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("../escape"), "{v}");
    // A model that is not a model, and a validator submitted as one.
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions",
            Some(&admin),
            Some(json!({ "version": "1.0.0", "plugin": "schema@1.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("not a model"), "{v}");
    // A blob that is not a component.
    let junk = h.upload(b"not wasm at all".to_vec()).await;
    let (s, v) = h
        .call(
            "POST",
            "/v1/plugins",
            Some(&admin),
            Some(json!({ "name": "junk", "version": "1.0.0", "component": junk })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains(&junk), "{v}");
}

/// A streamed body of `chunks`, failing at the end when `fail`.
fn futures_stream(chunks: Vec<Vec<u8>>, fail: bool) -> Body {
    let mut items: Vec<Result<Vec<u8>, std::io::Error>> = chunks.into_iter().map(Ok).collect();
    if fail {
        items.push(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer went away",
        )));
    }
    Body::from_stream(futures_util::stream::iter(items))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_and_secrets_are_encrypted_at_rest_and_old_attestations_survive_key_rotation() {
    let keys = tempfile::tempdir().unwrap();
    let ring_file = keys.path().join("data.keys");
    let ring = airlock_blobs::KeyRing::generate_file(&ring_file).unwrap();
    let h = Harness::with(move |c| c.key_ring = Some(ring)).await;
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    let (run, r) = h.submit_and_wait(&alice, "1.0.0", "model-v1").await;
    assert_eq!(r["run"]["status"], "passed", "{r}");

    // No 64-byte window of the model file, the component or the host's
    // private key is anywhere in the data directory's raw files.
    let model = std::fs::read(airlock_tests::example().join("model-v1/model.json")).unwrap();
    let component = std::fs::read(airlock_tests::plugin("airlock_model_xgboost")).unwrap();
    let key_pem = h
        .state
        .keys
        .read()
        .unwrap()
        .current
        .to_pkcs8_pem()
        .to_string();
    let needles: Vec<&[u8]> = vec![
        &model[100..164],
        &model[model.len() / 2..model.len() / 2 + 64],
        &component[4096..4160],
        &key_pem.as_bytes()[40..104],
    ];
    let mut files = 0;
    for entry in walk(&h.data_dir()) {
        let raw = std::fs::read(&entry).unwrap();
        files += 1;
        for n in &needles {
            assert!(
                !raw.windows(n.len()).any(|w| w == *n),
                "plaintext found in {}",
                entry.display()
            );
        }
    }
    assert!(files > 5);

    // Rotating the host key: the old attestation still verifies by key id,
    // and promotion still accepts it.
    let before = h
        .ok("GET", &format!("/v1/runs/{run}/attestation"), None)
        .await;
    let old_id = before["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    let v = h.ok("POST", "/v1/keys/rotate", None).await;
    assert_ne!(v["key_id"].as_str().unwrap(), old_id);
    let ks = h.host_keys().await;
    assert_eq!(ks.len(), 2);
    verify_attestation(
        &Envelope::from_json(&before.to_string()).unwrap(),
        &ks,
        None,
    )
    .unwrap();
    h.ok(
        "POST",
        "/v1/models/breast-cancer/promote",
        Some(json!({ "version": "1.0.0" })),
    )
    .await;
    // Served, the version's bundle is plaintext only in the data
    // directory's private scratch area (its snapshot), nowhere else there.
    let data = h.data_dir();
    for entry in walk(&data) {
        let raw = std::fs::read(&entry).unwrap();
        if needles[..2]
            .iter()
            .any(|n| raw.windows(n.len()).any(|w| w == *n))
        {
            assert!(
                entry.starts_with(data.join("snapshots")) || entry.starts_with(data.join("tmp")),
                "plaintext outside the scratch area: {}",
                entry.display()
            );
        }
    }
}

/// Changes one digit of the JSON inside a stored blob, in place (same
/// length): the archive stays a valid tar of a valid model, with another
/// threshold; a component stays the same size. Returns the original bytes.
fn change_a_byte(h: &Harness, digest: &str, after: &[u8]) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = h.data_dir().join("blobs").join("sha256").join(hex);
    let original = std::fs::read(&path).unwrap();
    let mut changed = original.clone();
    let start = changed
        .windows(after.len())
        .position(|w| w == after)
        .unwrap_or_else(|| panic!("{} not in blob {digest}", String::from_utf8_lossy(after)))
        + after.len();
    let i = (start..changed.len())
        .find(|&i| changed[i].is_ascii_digit())
        .unwrap();
    changed[i] = if changed[i] == b'9' {
        b'8'
    } else {
        changed[i] + 1
    };
    std::fs::write(&path, &changed).unwrap();
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_a_stored_bundle_or_component_is_refused_naming_the_blob() {
    let h = Harness::new().await;
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    let bundle = h.bundle("model-v1").await;
    let submit = |version: &str| json!({ "version": version, "plugin": "xgboost@1.0.0", "bundle": bundle.clone() });
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions",
            Some(&alice),
            Some(submit("1.0.0")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = h.wait(v["run"].as_str().unwrap()).await;
    assert_eq!(r["run"]["status"], "passed", "{r}");
    let rerun = || async {
        let v = h
            .ok("POST", "/v1/models/breast-cancer/versions/1.0.0/runs", None)
            .await;
        h.wait(v["run"].as_str().unwrap()).await
    };

    // The stored archive changed while the server was not looking: one
    // digit of a split threshold, past the tar's headers.
    let original = change_a_byte(&h, &bundle, b"\"split_conditions\":[");
    // Serving it: refused, naming the blob (what a start does for a
    // production version goes through the same load).
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&h.admin.clone()),
            Some(json!({ "version": "1.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains(&bundle), "{v}");
    assert!(h.state.serving.model("breast-cancer").is_none());
    // A new version naming the same blob: refused at submission.
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/versions",
            Some(&alice),
            Some(submit("1.0.1")),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains(&bundle), "{v}");
    // The same for the model's component (one byte flipped mid-file).
    let blob_file = |d: &str| {
        h.data_dir()
            .join("blobs")
            .join("sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    std::fs::write(blob_file(&bundle), &original).unwrap();
    let component_bytes = std::fs::read(airlock_tests::plugin("airlock_model_xgboost")).unwrap();
    let component = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&component_bytes))
    );
    let mut flipped = std::fs::read(blob_file(&component)).unwrap();
    assert_eq!(
        flipped, component_bytes,
        "components are stored as plaintext here"
    );
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    std::fs::write(blob_file(&component), &flipped).unwrap();
    let (s, v) = h
        .call(
            "POST",
            "/v1/models/breast-cancer/promote",
            Some(&h.admin.clone()),
            Some(json!({ "version": "1.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains(&component), "{v}");
    let r = rerun().await;
    assert_eq!(r["run"]["status"], "error", "{r}");
    assert!(
        r["run"]["reason"].as_str().unwrap().contains(&component),
        "{r}"
    );
    // And judging the version again with the changed archive: an error
    // naming the archive's blob, never a verdict.
    std::fs::write(blob_file(&component), &component_bytes).unwrap();
    change_a_byte(&h, &bundle, b"\"split_conditions\":[");
    let r = rerun().await;
    assert_eq!(r["run"]["status"], "error", "{r}");
    assert!(
        r["run"]["reason"].as_str().unwrap().contains(&bundle),
        "{r}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_everything_and_marks_unfinished_runs_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let root = SigningKey::generate(Curve::P256);
    let state = AppState::open(config(dir.path(), &root)).await.unwrap();
    let admin = std::fs::read_to_string(state.admin_token_file.get().unwrap()).unwrap();
    // A run recorded as running when the server died.
    sqlx::query(
        "INSERT INTO runs (id, seq, model, version, gate, gate_version, gate_digest, status, requested_by, created_at)
         VALUES ('run_00000000000000aa', 1, 'm', '1.0.0', 'g', 1, 'sha256:00', 'running', 'x', 'now')",
    )
    .execute(&state.db)
    .await
    .unwrap();
    drop(state);
    let again = AppState::open(config(dir.path(), &root)).await.unwrap();
    assert!(
        again.admin_token_file.get().is_none(),
        "no second admin token"
    );
    let (status, reason): (String, String) =
        sqlx::query_as("SELECT status, reason FROM runs WHERE id = 'run_00000000000000aa'")
            .fetch_one(&again.db)
            .await
            .unwrap();
    assert_eq!(status, "interrupted");
    assert!(reason.contains("re-run"), "{reason}");
    let router = airlock_server::routes::router(again.clone());
    let resp = router
        .oneshot(
            Request::builder()
                .method(Method::GET)
                .uri("/v1/whoami")
                .header("authorization", format!("Bearer {}", admin.trim()))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let log = airlock_audit::verify_file(&dir.path().join("data/audit.jsonl"), None).unwrap();
    assert!(log.chain.entries >= 2);
}

/// Random requests at every route shape: never a 5xx, always a JSON body,
/// and every error names its problem. `AIRLOCK_FUZZ_CASES` sets the number
/// of requests (default 3000; `docs/security.md` records longer runs).
#[test]
fn random_requests_never_get_a_server_error() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(async {
        let h = Harness::new().await;
        h.deployable(0).await;
        h
    });
    let admin = h.admin.clone();
    let cases: u32 = std::env::var("AIRLOCK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let segment = prop_oneof![
        Just("breast-cancer".to_string()),
        Just("1.0.0".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("%00".to_string()),
        Just("%FF".to_string()),
        Just(format!("sha256:{}", "a".repeat(64))),
        Just("run_0123456789abcdef".to_string()),
        "[a-zA-Z0-9._%~-]{0,40}",
    ];
    let route = proptest::sample::select(
        ROUTES
            .iter()
            .map(|r| (r.method, r.path))
            .collect::<Vec<_>>(),
    );
    let body = prop_oneof![
        Just(Vec::new()),
        Just(b"{}".to_vec()),
        Just(b"{\"version\":\"1.0.0\",\"plugin\":\"xgboost@1.0.0\"}".to_vec()),
        Just(b"{\"gate\":\"breast-cancer\",\"approvals_required\":4294967296}".to_vec()),
        Just(b"{\"payload\":\"!!\",\"payloadType\":\"\",\"signatures\":[{\"keyid\":\"\",\"sig\":\"\"}]}".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..300),
        "\\PC{0,200}".prop_map(String::into_bytes),
    ];
    let strategy = (
        route,
        proptest::collection::vec(segment, 3),
        "[a-z_=&0-9%]{0,30}",
        body,
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    runner
        .run(
            &strategy,
            |((method, template), segs, query, body, as_json)| {
                let mut path = template.to_string();
                for (i, key) in ["{name}", "{version}", "{digest}"].iter().enumerate() {
                    path = path.replace(key, &segs[i]);
                }
                path = path.replace("{id}", &segs[2]);
                if !query.is_empty() {
                    path = format!("{path}?{query}");
                }
                let Ok(uri) = path.parse::<axum::http::Uri>() else {
                    return Ok(());
                };
                let mut b = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("authorization", format!("Bearer {admin}"));
                if as_json {
                    b = b.header("content-type", "application/json");
                }
                let req = b.body(Body::from(body)).unwrap();
                let (s, v) = rt.block_on(h.send(req));
                prop_assert!(!s.is_server_error(), "{method} {path}: {s} {v}");
                if !s.is_success() {
                    prop_assert!(!message(&v).is_empty(), "{method} {path}: {s} {v}");
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "router fuzz: {cases} requests in {:.1} s without a server error",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_graceful_stop_finishes_or_records_every_gate_run() {
    use airlock_tests::http::{must, setup};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = SigningKey::generate(Curve::P256);
    let mut c = config(dir.path(), &root);
    c.workers = 1;
    c.shutdown_grace = Duration::from_millis(0);
    let running = rt.block_on(airlock_server::start(c)).unwrap();
    let addr = running.addr.to_string();
    let fx = setup(&addr, &dir.path().join("data"), &root);
    let runs: Vec<String> = (0..4)
        .map(|i| {
            let v = must(
                &addr,
                "POST",
                "/v1/models/bc/versions",
                &fx.submitter,
                Some(json!({ "version": format!("1.0.{i}"), "plugin": "xgboost@1.0.0", "bundle": fx.bundle })),
            );
            v["run"].as_str().unwrap().to_string()
        })
        .collect();
    rt.block_on(running.stop()).unwrap();
    // After the stop: no run is left queued or running.
    let state = rt
        .block_on(AppState::open(config(dir.path(), &root)))
        .unwrap();
    for run in &runs {
        let (status, reason): (String, Option<String>) = rt
            .block_on(
                sqlx::query_as("SELECT status, reason FROM runs WHERE id = $1")
                    .bind(run)
                    .fetch_one(&state.db),
            )
            .unwrap();
        assert!(
            matches!(status.as_str(), "passed" | "interrupted"),
            "{run}: {status} ({reason:?})"
        );
    }
    let (interrupted,): (i64,) = rt
        .block_on(
            sqlx::query_as("SELECT COUNT(*) FROM runs WHERE status = 'interrupted'")
                .fetch_one(&state.db),
        )
        .unwrap();
    assert!(
        interrupted >= 1,
        "four runs on one worker cannot all finish in a zero grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_keys_rotate_and_the_old_key_can_then_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = SigningKey::generate(Curve::P256);
    let ring_file = dir.path().join("data.keys");
    let old = airlock_blobs::KeyRing::generate_file(&ring_file).unwrap();
    let old_id = old.current_id().to_string();
    let mut c = config(dir.path(), &root);
    c.key_ring = Some(old);
    let state = AppState::open(c).await.unwrap();
    let admin = std::fs::read_to_string(state.admin_token_file.get().unwrap()).unwrap();
    let router = airlock_server::routes::router(state.clone());
    let marker = b"a model's weights that must stay secret ".repeat(100);
    let resp = router
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/v1/blobs")
                .header("authorization", format!("Bearer {}", admin.trim()))
                .body(Body::from(marker.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let key_before = state.keys.read().unwrap().current.key_id();
    drop(state);

    // Add a key (now current), rotate, then drop the old one from the ring.
    let both = airlock_blobs::KeyRing::add_generated(&ring_file).unwrap();
    let new_id = both.current_id().to_string();
    let mut c = config(dir.path(), &root);
    c.key_ring = Some(both);
    let done = airlock_server::state::rotate_data_keys(c).await.unwrap();
    assert_eq!(done.blobs, 1);
    assert_eq!(done.host_keys, 1);
    let only_new = airlock_blobs::KeyRing::from_env_value(&format!(
        "{new_id} {}",
        key_hex(&ring_file, &new_id)
    ))
    .unwrap();
    assert!(!only_new.contains_id(&old_id));
    let mut c = config(dir.path(), &root);
    c.key_ring = Some(only_new);
    let state = AppState::open(c)
        .await
        .expect("opens with only the new key");
    assert_eq!(state.keys.read().unwrap().current.key_id(), key_before);
    let d = Digest::of(&marker);
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut state.blobs.open(&d).unwrap(), &mut back).unwrap();
    assert_eq!(back, marker);
}

/// The hex of key `id` in a key file (`<id> <hex>` lines).
fn key_hex(file: &Path, id: &str) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{id} ")).map(str::to_string))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_running_gate_runs_can_be_cancelled_and_a_full_queue_answers_503() {
    let h = Harness::with(|c| {
        c.workers = 1;
        c.queue_depth = 2;
    })
    .await;
    h.deployable(0).await;
    let alice = h.token("alice", "submitter").await;
    let bundle = h.bundle("model-v1").await;
    let mut runs = Vec::new();
    let mut full = None;
    for i in 0..8 {
        let (s, v) = h
            .call(
                "POST",
                "/v1/models/breast-cancer/versions",
                Some(&alice),
                Some(json!({ "version": format!("1.0.{i}"), "plugin": "xgboost@1.0.0", "bundle": bundle })),
            )
            .await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            full = Some(v);
            break;
        }
        assert_eq!(s, StatusCode::CREATED, "{v}");
        runs.push(v["run"].as_str().unwrap().to_string());
    }
    let full = full.expect("a queue of 2 behind 1 worker fills within 8 quick submissions");
    assert!(message(&full).contains("queue is full"), "{full}");
    // Cancel the last queued run: it never runs.
    let last = runs.last().unwrap().clone();
    let v = h.ok("POST", &format!("/v1/runs/{last}/cancel"), None).await;
    assert!(
        matches!(v["status"].as_str(), Some("cancelled" | "cancelling")),
        "{v}"
    );
    let done = h.wait(&last).await;
    assert_eq!(done["run"]["status"], "cancelled", "{done}");
    assert!(
        done["run"]["reason"].as_str().unwrap().contains("cancel"),
        "{done}"
    );
    assert_eq!(done["report"], Value::Null);
    let (s, v) = h
        .call(
            "POST",
            &format!("/v1/runs/{last}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // The others finish.
    for r in &runs[..runs.len() - 1] {
        let d = h.wait(r).await;
        assert_eq!(d["run"]["status"], "passed", "{d}");
    }
}

const MODES_CHILD: &str = "AIRLOCK_SERVER_MODES_CHILD";

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every path under `dir`, directories included, `dir` first.
fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk_all(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn everything_the_server_writes_is_0600_or_0700_whatever_the_umask() {
    if std::env::var_os(MODES_CHILD).is_some() {
        // The child, started under umask 000 (checked: a file made without
        // an explicit mode is 0666 here).
        let probe = tempfile::tempdir().unwrap();
        std::fs::write(probe.path().join("probe"), b"").unwrap();
        assert_eq!(
            mode_of(&probe.path().join("probe")),
            0o666,
            "umask is not 000"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = Harness::new().await;
            h.deployable(0).await;
            let alice = h.token("alice", "submitter").await;
            let (_, r) = h.submit_and_wait(&alice, "1.0.0", "model-v1").await;
            assert_eq!(r["run"]["status"], "passed", "{r}");
            h.ok(
                "POST",
                "/v1/models/breast-cancer/promote",
                Some(json!({ "version": "1.0.0" })),
            )
            .await;
            h.ok(
                "PUT",
                "/v1/models/breast-cancer/serving",
                Some(json!({ "prediction_log": { "sample_percent": 100.0 } })),
            )
            .await;
            let predictor = h.token("app", "predictor").await;
            for (row, _) in crate::serving::eval_rows().iter().take(5) {
                let (s, v) = h
                    .call(
                        "POST",
                        "/v1/models/breast-cancer/predict",
                        Some(&predictor),
                        Some(json!({ "rows": [row] })),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
            }
            let data = h.data_dir();
            let log = data.join("prediction-logs").join("breast-cancer.jsonl");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !log.exists() {
                assert!(Instant::now() < deadline, "no prediction log");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut seen = Vec::new();
            for p in walk_all(&data) {
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let want = if meta.is_dir() { 0o700 } else { 0o600 };
                assert_eq!(mode_of(&p), want, "{} is {:o}", p.display(), mode_of(&p));
                seen.push(p.strip_prefix(&data).unwrap().display().to_string());
            }
            // What the issue named, among everything.
            for must in [
                "airlock.db",
                "airlock.db-wal",
                "airlock.db-shm",
                "tmp",
                "snapshots",
                "prediction-logs",
                "prediction-logs/breast-cancer.jsonl",
                "audit.jsonl",
                "admin.token",
            ] {
                assert!(seen.iter().any(|s| s == must), "{must} not in {seen:?}");
            }
            println!("AIRLOCK_MODES_OK {}", seen.len());
        });
        return;
    }
    let name = match module_path!().split_once("::") {
        Some((_, module)) => {
            format!("{module}::everything_the_server_writes_is_0600_or_0700_whatever_the_umask")
        }
        None => "everything_the_server_writes_is_0600_or_0700_whatever_the_umask".to_string(),
    };
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(MODES_CHILD, "1")
        // SQLite, whose files are what a umask used to leave readable.
        .env_remove("AIRLOCK_TEST_DATABASE_URL")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("AIRLOCK_MODES_OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
