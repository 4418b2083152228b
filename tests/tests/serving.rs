//! Serving, in process: predictions from the production version in a fresh
//! instance per request, the inference protocol, bad input, instant
//! rollback under load, canaries judged by analysis (abort, promotion,
//! pause, restart), sticky and forced routing, shadow comparison,
//! continuous validation with automatic rollback, signed alert webhooks,
//! and the Prometheus endpoint.
//!
//! The degraded model is `sleeper`: it answers honestly on batches of 8
//! rows or more (what a gate sends) and flips its probabilities on smaller
//! ones (what serving sends). It passes the gate; only live traffic shows
//! what it is, which is what these tests make airlock catch.

use crate::server::{Harness, message};
use airlock_rollout::webhook::verify;
use airlock_server::serving::egress::Cidr;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const MODEL: &str = "breast-cancer";

/// The evaluation rows as feature objects, with their labels.
pub(crate) fn eval_rows() -> Vec<(Value, f64)> {
    let text = std::fs::read_to_string(airlock_tests::example().join("data/eval.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut row = serde_json::Map::new();
            let mut label = f64::NAN;
            for (h, v) in header.iter().zip(l.split(',')) {
                let x: f64 = v.parse().unwrap();
                if *h == "target" {
                    label = x;
                } else {
                    row.insert(h.to_string(), json!(x));
                }
            }
            (Value::Object(row), label)
        })
        .collect()
}

impl Harness {
    /// Registers a model plugin by its component's crate name.
    async fn model_plugin(&self, lib: &str, name: &str) {
        self.register(&airlock_tests::plugin(lib), name, "1.0.0")
            .await;
    }

    /// Submits `version` with `plugin` and the bundle at `dir`; waits for
    /// the gate and insists it passed.
    async fn passing(&self, version: &str, plugin: &str, dir: &str) {
        let bundle = self.bundle(dir).await;
        let v = self
            .ok(
                "POST",
                &format!("/v1/models/{MODEL}/versions"),
                Some(json!({ "version": version, "plugin": plugin, "bundle": bundle })),
            )
            .await;
        let run = v["run"].as_str().unwrap().to_string();
        let r = self.wait(&run).await;
        assert_eq!(r["run"]["status"], "passed", "{version}: {r}");
    }

    async fn promote(&self, version: &str) -> Value {
        self.ok(
            "POST",
            &format!("/v1/models/{MODEL}/promote"),
            Some(json!({ "version": version, "reason": "test" })),
        )
        .await
    }

    /// v1 (good) in production, and `2.0.0` (the sleeper) gated and passed.
    async fn served(&self) {
        self.deployable(0).await;
        self.model_plugin("hostile_sleeper", "sleeper").await;
        self.passing("1.0.0", "xgboost@1.0.0", "model-v1").await;
        self.promote("1.0.0").await;
        self.passing("2.0.0", "sleeper@1.0.0", "model-v1").await;
    }

    async fn predict(
        &self,
        token: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut b = Request::builder()
            .method("POST")
            .uri(format!("/v1/models/{MODEL}/predict"))
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// What the served model's deployment is now.
    fn deployment(&self) -> Arc<airlock_server::serving::Deployment> {
        self.state
            .serving
            .model(MODEL)
            .unwrap()
            .deployment
            .load_full()
    }

    /// `row`'s feature values in the served model's declared input order.
    fn in_input_order(&self, row: &Value) -> Vec<Value> {
        self.deployment()
            .stable
            .metadata()
            .inputs
            .iter()
            .map(|f| row[&f.name].clone())
            .collect()
    }

    /// Sends delayed labels with `token`.
    async fn feedback(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/v1/models/{MODEL}/feedback"),
            Some(token),
            Some(body),
        )
        .await
    }

    async fn policy(&self, policy: Value) {
        self.ok("PUT", &format!("/v1/models/{MODEL}/serving"), Some(policy))
            .await;
    }

    async fn status(&self) -> Value {
        self.ok("GET", &format!("/v1/models/{MODEL}/serving"), None)
            .await
    }

    async fn metrics(&self) -> String {
        let reader = self.token("prometheus", "reader").await;
        let req = Request::builder()
            .uri("/metrics")
            .header("authorization", format!("Bearer {reader}"))
            .body(Body::empty())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

fn p1(v: &Value) -> f64 {
    v["predictions"][0][1].as_f64().unwrap()
}

/// Sends 1-row requests until `stop` says so, and their labels with the
/// labeler's token when one is given; returns how many were answered and
/// every non-200.
async fn traffic(
    h: Arc<Harness>,
    token: String,
    rows: Arc<Vec<(Value, f64)>>,
    labeler: Option<String>,
    until: impl Fn() -> bool + Send + 'static,
) -> (u64, Vec<String>) {
    let mut n = 0u64;
    let mut bad = Vec::new();
    let mut i = 0usize;
    while !until() {
        let (row, label) = &rows[i % rows.len()];
        i += 1;
        let (s, v) = h.predict(&token, json!({ "rows": [row] }), &[]).await;
        if s != StatusCode::OK {
            bad.push(format!("{s} {v}"));
            continue;
        }
        n += 1;
        if let Some(labeler) = &labeler {
            let id = v["request_id"].as_str().unwrap();
            let (s, f) = h
                .feedback(labeler, json!({ "request_id": id, "label": label }))
                .await;
            assert_eq!(s, StatusCode::OK, "{f}");
        }
        tokio::task::yield_now().await;
    }
    (n, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_come_from_production_in_a_checked_answer_and_bad_input_is_named() {
    let h = Harness::with(|c| c.serving.max_rows = 8).await;
    let predictor = h.token("app", "predictor").await;
    // Nothing served yet.
    let (s, v) = h.predict(&predictor, json!({ "rows": [] }), &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(message(&v).contains("does not exist"), "{v}");
    h.served().await;
    let rows = eval_rows();
    let (row, _) = &rows[0];
    let (s, v) = h.predict(&predictor, json!({ "rows": [row] }), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["request_id"].as_str().unwrap().len(), 32);
    assert_eq!(v["classes"], json!(["0", "1"]));
    let p = v["predictions"][0].as_array().unwrap();
    assert_eq!(p.len(), 2);
    let sum: f64 = p.iter().map(|x| x.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{v}");
    // The same row by position answers the same.
    let ordered = h.in_input_order(row);
    let (s, w) = h
        .predict(&predictor, json!({ "rows": [ordered] }), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["predictions"], v["predictions"]);
    // Bad input: each a 4xx naming the problem.
    let mut unknown = row.clone();
    unknown["tumour_colour"] = json!(1.0);
    let mut missing = row.clone();
    missing.as_object_mut().unwrap().remove("mean_radius");
    let mut text = row.clone();
    text["mean_radius"] = json!("big");
    let mut absent = row.clone();
    absent["mean_radius"] = Value::Null;
    let cases = [
        (
            json!({ "rows": [unknown] }),
            StatusCode::BAD_REQUEST,
            "unknown feature \"tumour_colour\"",
        ),
        (
            json!({ "rows": [missing] }),
            StatusCode::BAD_REQUEST,
            "row 0: feature `mean_radius` is missing",
        ),
        (
            json!({ "rows": [text] }),
            StatusCode::BAD_REQUEST,
            "must be a number, not a string",
        ),
        (
            json!({ "rows": [absent] }),
            StatusCode::BAD_REQUEST,
            "does not accept missing values",
        ),
        (
            json!({ "rows": [[1.0, 2.0]] }),
            StatusCode::BAD_REQUEST,
            "row 0 has 2 values; the model reads 30 inputs",
        ),
        (
            json!({ "rows": [] }),
            StatusCode::BAD_REQUEST,
            "`rows` is empty",
        ),
        (
            json!({ "rows": [7] }),
            StatusCode::BAD_REQUEST,
            "row 0 is a number",
        ),
        (
            json!({ "rows": vec![row.clone(); 9] }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "9 rows is over the serving cap of 8",
        ),
        (
            json!({ "rowz": [] }),
            StatusCode::BAD_REQUEST,
            "unknown field `rowz`",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = h.predict(&predictor, body.clone(), &[]).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(message(&v).contains(needle), "{needle:?} not in {v}");
    }
    // NaN is not JSON; the error says what to do instead.
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/models/{MODEL}/predict"))
        .header("authorization", format!("Bearer {predictor}"))
        .body(Body::from(r#"{"rows": [[NaN]]}"#))
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&v).contains("NaN and Infinity are not JSON"), "{v}");
    // An oversized body is refused before it is parsed.
    let big = "x".repeat(h.state.config.serving.max_body_bytes + 1);
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/models/{MODEL}/predict"))
        .header("authorization", format!("Bearer {predictor}"))
        .body(Body::from(big))
        .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(message(&v).contains("serving cap"), "{v}");
    // A forced version must be warm; other roles may not predict.
    let (s, v) = h
        .predict(
            &predictor,
            json!({ "rows": [row] }),
            &[("x-airlock-version", "9.9.9")],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        message(&v).contains("version \"9.9.9\" of model breast-cancer is not being served"),
        "{v}"
    );
    let reader = h.token("someone", "reader").await;
    let (s, v) = h.predict(&reader, json!({ "rows": [row] }), &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(message(&v).contains("may not predict"), "{v}");
    // A predictor reads nothing else.
    let (s, _) = h
        .call(
            "GET",
            &format!("/v1/models/{MODEL}"),
            Some(&predictor),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inference_protocol_v2_answers_json_tensors_without_a_content_type() {
    let h = Harness::new().await;
    h.served().await;
    let predictor = h.token("app", "predictor").await;
    for path in ["/v2/health/live", "/v2/health/ready"] {
        let (s, v) = h.call("GET", path, None, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    let (s, meta) = h
        .call(
            "GET",
            &format!("/v2/models/{MODEL}"),
            Some(&predictor),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{meta}");
    assert_eq!(meta["name"], MODEL);
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 30]));
    assert_eq!(meta["outputs"][0]["name"], "predictions");
    for path in [
        format!("/v2/models/{MODEL}/ready"),
        format!("/v2/models/{MODEL}/versions/1.0.0"),
        format!("/v2/models/{MODEL}/versions/1.0.0/ready"),
    ] {
        let (s, v) = h.call("GET", &path, Some(&predictor), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    let names: Vec<String> = meta["parameters"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    let rows = eval_rows();
    let data: Vec<f64> = rows[..2]
        .iter()
        .flat_map(|(r, _)| {
            names
                .iter()
                .map(|n| r[n].as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let infer = |path: String, body: String| {
        Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {predictor}"))
            .body(Body::from(body))
            .unwrap()
    };
    let body = json!({ "id": "req-7", "inputs": [{ "name": "input-0", "shape": [2, 30], "datatype": "FP64", "data": data }],
                       "outputs": [{ "name": "predictions", "parameters": { "binary_data": false } }] });
    let (s, v) = h
        .send(infer(format!("/v2/models/{MODEL}/infer"), body.to_string()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "req-7");
    assert_eq!(v["model_version"], "1.0.0");
    assert_eq!(v["outputs"][0]["shape"], json!([2, 2]));
    let (_, one) = h
        .predict(&predictor, json!({ "rows": [rows[0].0] }), &[])
        .await;
    assert_eq!(v["outputs"][0]["data"][1], one["predictions"][0][1]);
    // A version path answers from that version (the sleeper flips 2-row batches).
    let (s, w) = h
        .send(infer(
            format!("/v2/models/{MODEL}/versions/2.0.0/infer"),
            body.to_string(),
        ))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "2.0.0 is not warm until promoted or canaried: {w}"
    );
    // Errors are {"error": "..."} with a 4xx.
    let cases = [
        (
            json!({ "inputs": [{ "name": "input-0", "shape": [1, 29], "datatype": "FP64", "data": vec![0.0; 29] }] }),
            StatusCode::BAD_REQUEST,
            "the model reads 30 inputs per row",
        ),
        (
            json!({ "inputs": [{ "name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": vec![0.0; 29] }] }),
            StatusCode::BAD_REQUEST,
            "has 29 values but its shape [1, 30] holds 30",
        ),
        (
            json!({ "inputs": [{ "name": "input-0", "shape": [1, 30], "datatype": "BYTES", "data": vec!["a"; 30] }] }),
            StatusCode::BAD_REQUEST,
            "datatype \"BYTES\"",
        ),
        (
            json!({ "inputs": [] }),
            StatusCode::BAD_REQUEST,
            "`inputs` is empty",
        ),
        (
            json!({ "inputs": [{ "name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": vec![0.0; 30] }], "outputs": [{ "name": "probs" }] }),
            StatusCode::BAD_REQUEST,
            "unknown output \"probs\"",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = h
            .send(infer(format!("/v2/models/{MODEL}/infer"), body.to_string()))
            .await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{needle:?} not in {v}"
        );
    }
    let (s, v) = h
        .send(infer("/v2/models/nope/infer".into(), body.to_string()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("model \"nope\" does not exist"),
        "{v}"
    );
    let (s, v) = h
        .call("GET", &format!("/v2/models/{MODEL}"), None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_runs_in_a_fresh_instance_so_no_request_sees_another() {
    let h = Harness::new().await;
    // A one-step gate the hostile model passes: golden answers are the row
    // count (what mode `x` returns).
    let golden = h
        .register(
            &airlock_tests::plugin("airlock_validator_golden"),
            "golden",
            "1.0.0",
        )
        .await;
    let data = h.upload(b"x,expected\n1,3\n2,3\n3,3\n".to_vec()).await;
    let gate = format!(
        "name = \"snoop\"\n[[steps]]\nname = \"golden\"\nplugin = \"{golden}\"\ndataset = \"{data}\"\n[steps.config]\nexpected_column = \"expected\"\n"
    );
    let env = airlock_attest::policy::GateDefinition {
        name: "snoop".into(),
        version: 1,
        gate_toml: gate,
    }
    .sign(&h.root)
    .unwrap();
    let (s, v) = h
        .call(
            "POST",
            "/v1/gates",
            Some(&h.admin.clone()),
            Some(serde_json::from_str(&env.to_json()).unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.ok(
        "PUT",
        "/v1/models/snoop",
        Some(json!({ "gate": "snoop", "approvals_required": 0 })),
    )
    .await;
    h.register(&airlock_tests::plugin("hostile_model"), "hostile", "1.0.0")
        .await;
    let v = h
        .ok(
            "POST",
            "/v1/models/snoop/versions",
            Some(json!({ "version": "1.0.0", "plugin": "hostile@1.0.0" })),
        )
        .await;
    let r = h.wait(v["run"].as_str().unwrap()).await;
    assert_eq!(r["run"]["status"], "passed", "{r}");
    h.ok(
        "POST",
        "/v1/models/snoop/promote",
        Some(json!({ "version": "1.0.0" })),
    )
    .await;
    let predictor = h.token("app", "predictor").await;
    let h = Arc::new(h);
    // Two clients at once: one sends a secret, the other asks the model for
    // the largest value it has ever seen.
    let mut tasks = Vec::new();
    for client in 0..4 {
        let h = h.clone();
        let t = predictor.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..50 {
                let x = if client % 2 == 0 { 7777.0 } else { -2.0 };
                let req = Request::builder()
                    .method("POST")
                    .uri("/v1/models/snoop/predict")
                    .header("authorization", format!("Bearer {t}"))
                    .body(Body::from(json!({ "rows": [{ "x": x }] }).to_string()))
                    .unwrap();
                let (s, v) = h.send(req).await;
                assert_eq!(s, StatusCode::OK, "{v}");
                if x < 0.0 {
                    seen.push(v["predictions"][0][0].as_f64().unwrap());
                }
            }
            seen
        }));
    }
    for t in tasks {
        for seen in t.await.unwrap() {
            assert_eq!(seen, 0.0, "a request saw another request's data");
        }
    }
    // A model that traps on some inputs fails only those requests.
    let mut tasks = Vec::new();
    for client in 0..4 {
        let h = h.clone();
        let t = predictor.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let x = if client == 0 { -3.0 } else { 5.0 };
                let req = Request::builder()
                    .method("POST")
                    .uri("/v1/models/snoop/predict")
                    .header("authorization", format!("Bearer {t}"))
                    .body(Body::from(json!({ "rows": [{ "x": x }] }).to_string()))
                    .unwrap();
                let (s, v) = h.send(req).await;
                if client == 0 {
                    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
                    assert!(message(&v).contains("failed on this request: trap"), "{v}");
                } else {
                    assert_eq!(s, StatusCode::OK, "{v}");
                    assert_eq!(v["predictions"][0][0], 1.0);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = h.metrics().await;
    assert!(
        text.contains(
            r#"airlock_predict_errors_total{model="snoop",version="1.0.0",kind="trap"} 25"#
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_with_retry_after() {
    let h = Harness::with(|c| {
        c.serving.max_in_flight = 1;
        c.serving.call_timeout_ms = 400;
        c.serving.call_fuel = u64::MAX / 2;
        c.sandbox.limits.fuel = u64::MAX / 2;
    })
    .await;
    let golden = h
        .register(
            &airlock_tests::plugin("airlock_validator_golden"),
            "golden",
            "1.0.0",
        )
        .await;
    let data = h.upload(b"x,expected\n1,3\n2,3\n3,3\n".to_vec()).await;
    let gate = format!(
        "name = \"snoop\"\n[[steps]]\nname = \"golden\"\nplugin = \"{golden}\"\ndataset = \"{data}\"\n[steps.config]\nexpected_column = \"expected\"\n"
    );
    let env = airlock_attest::policy::GateDefinition {
        name: "snoop".into(),
        version: 1,
        gate_toml: gate,
    }
    .sign(&h.root)
    .unwrap();
    h.call(
        "POST",
        "/v1/gates",
        Some(&h.admin.clone()),
        Some(serde_json::from_str(&env.to_json()).unwrap()),
    )
    .await;
    h.ok(
        "PUT",
        "/v1/models/snoop",
        Some(json!({ "gate": "snoop", "approvals_required": 0 })),
    )
    .await;
    h.register(&airlock_tests::plugin("hostile_model"), "hostile", "1.0.0")
        .await;
    let v = h
        .ok(
            "POST",
            "/v1/models/snoop/versions",
            Some(json!({ "version": "1.0.0", "plugin": "hostile@1.0.0" })),
        )
        .await;
    h.wait(v["run"].as_str().unwrap()).await;
    h.ok(
        "POST",
        "/v1/models/snoop/promote",
        Some(json!({ "version": "1.0.0" })),
    )
    .await;
    let predictor = h.token("app", "predictor").await;
    let h = Arc::new(h);
    let slow = {
        let h = h.clone();
        let t = predictor.clone();
        tokio::spawn(async move {
            let req = Request::builder()
                .method("POST")
                .uri("/v1/models/snoop/predict")
                .header("authorization", format!("Bearer {t}"))
                .body(Body::from(json!({ "rows": [{ "x": -1.0 }] }).to_string()))
                .unwrap();
            h.send(req).await
        })
    };
    // Wait until the slow request holds the only place.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state.serving.pool.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the slow request never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let req = Request::builder()
        .method("POST")
        .uri("/v1/models/snoop/predict")
        .header("authorization", format!("Bearer {predictor}"))
        .body(Body::from(json!({ "rows": [{ "x": 1.0 }] }).to_string()))
        .unwrap();
    let resp = h.router.clone().oneshot(req).await.unwrap();
    if slow.is_finished() {
        panic!("the slow request finished early: {:?}", slow.await.unwrap());
    }
    // Refused while the slow one still runs: not queued behind it.
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    // The spinning request ends at its own limit (time or fuel, whichever
    // the machine reaches first), as a 502 naming it.
    let (s, v) = slow.await.unwrap();
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        message(&v).contains("timeout") || message(&v).contains("fuel_exhausted"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_budget_gets_429_with_retry_after_and_others_do_not() {
    let h = Harness::with(|c| c.serving.rate_per_token = 1).await;
    h.served().await;
    let greedy = h.token("greedy", "predictor").await;
    let polite = h.token("polite", "predictor").await;
    let (row, _) = &eval_rows()[0];
    let request = |token: &str, uri: String, body: Value| {
        Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let predict_uri = format!("/v1/models/{MODEL}/predict");
    // One request a second, burst one: back-to-back requests run out at
    // once (ten would need ten seconds to all fit).
    let mut refused = None;
    for _ in 0..10 {
        let resp = h
            .router
            .clone()
            .oneshot(request(
                &greedy,
                predict_uri.clone(),
                json!({ "rows": [row] }),
            ))
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = refused.expect("ten back-to-back requests never hit the budget");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        retry, 1,
        "one request a second: the next fits within a second"
    );
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(message(&v).contains("budget"), "{v}");
    // The inference protocol shares the budget and answers in its own form.
    let data = h.in_input_order(row);
    let infer = json!({ "inputs": [{ "name": "input-0", "shape": [1, data.len()], "datatype": "FP64", "data": data }] });
    let resp = h
        .router
        .clone()
        .oneshot(request(
            &greedy,
            format!("/v2/models/{MODEL}/infer"),
            infer.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    // Another token has its own budget.
    let (s, v) = h.predict(&polite, json!({ "rows": [row] }), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = h.metrics().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("airlock_predict_rate_limited_total ") && !l.ends_with(" 0")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_and_forward_100_times_under_load_loses_no_request_and_never_mixes_versions() {
    let h = Harness::new().await;
    h.served().await;
    h.promote("2.0.0").await;
    let predictor = h.token("app", "predictor").await;
    let rows = eval_rows();
    // What each version answers for each row (1-row requests: the sleeper flips).
    let mut answers = std::collections::HashMap::new();
    for v in ["1.0.0", "2.0.0"] {
        let mut list = Vec::new();
        for (row, _) in &rows[..20] {
            let (s, a) = h
                .predict(
                    &predictor,
                    json!({ "rows": [row] }),
                    &[("x-airlock-version", v)],
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{a}");
            list.push(p1(&a));
        }
        answers.insert(v.to_string(), list);
    }
    assert!((answers["1.0.0"][0] - (1.0 - answers["2.0.0"][0])).abs() < 1e-9);
    let h = Arc::new(h);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(answers);
    let rows = Arc::new(rows);
    let mut clients = Vec::new();
    for c in 0..4 {
        let (h, t, stop, answers, rows) = (
            h.clone(),
            predictor.clone(),
            stop.clone(),
            answers.clone(),
            rows.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut seen = std::collections::HashSet::new();
            let mut i = c;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (s, v) = h
                    .predict(&t, json!({ "rows": [rows[i % 20].0] }), &[])
                    .await;
                assert_eq!(s, StatusCode::OK, "request lost during a switch: {v}");
                let version = v["version"].as_str().unwrap().to_string();
                assert_eq!(
                    p1(&v),
                    answers[&version][i % 20],
                    "the answer is not {version}'s: versions mixed within a request"
                );
                seen.insert(version);
                n += 1;
                i += 1;
            }
            (n, seen)
        }));
    }
    let mut switch_ns = Vec::new();
    for k in 0..100 {
        let target = if k % 2 == 0 { "1.0.0" } else { "2.0.0" };
        let v = h
            .ok(
                "POST",
                &format!("/v1/models/{MODEL}/rollback"),
                Some(json!({ "version": target, "reason": "drill" })),
            )
            .await;
        switch_ns.push(v["switch_ns"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut versions = std::collections::HashSet::new();
    for c in clients {
        let (n, seen) = c.await.unwrap();
        total += n;
        versions.extend(seen);
    }
    assert_eq!(
        versions.len(),
        2,
        "the load saw both versions: {versions:?}"
    );
    assert!(total > 200, "{total} requests");
    // How long a switch takes is measured by the benchmark
    // (docs/benchmarks.md), not asserted here: a test machine under load
    // can preempt any thread for longer than the switch itself.
    switch_ns.sort_unstable();
    eprintln!(
        "100 switches under load ({total} requests): switch median {} ns, max {} ns",
        switch_ns[50], switch_ns[99]
    );
    let text = h.metrics().await;
    assert!(
        text.contains(r#"airlock_rollbacks_total{model="breast-cancer",trigger="manual"} 100"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_breaches_is_aborted_traffic_returns_to_stable_and_a_signed_alert_goes_out() {
    let h = Harness::with(allow_loopback_webhooks).await;
    h.served().await;
    let (hook_url, received) = webhook_receiver().await;
    let secret = "webhook-secret-0123456789";
    h.policy(json!({
        "steps": [50, 100], "interval_s": 1, "failure_limit": 0,
        "thresholds": { "min_requests": 10, "max_error_rate": 0.01, "min_labels": 10, "min_accuracy": 0.8 },
        "webhooks": [{ "url": hook_url, "secret": secret }],
    }))
    .await;
    let predictor = h.token("app", "predictor").await;
    let labeler = h.token("labels", "labeler").await;
    let v = h
        .ok(
            "POST",
            &format!("/v1/models/{MODEL}/canary"),
            Some(json!({ "version": "2.0.0" })),
        )
        .await;
    assert_eq!(v["actions"][0], "canary weight 50%", "{v}");
    let h = Arc::new(h);
    let started = Instant::now();
    let hh = h.clone();
    let load = tokio::spawn(traffic(
        h.clone(),
        predictor.clone(),
        Arc::new(eval_rows()),
        Some(labeler.clone()),
        move || {
            let dep = hh.deployment();
            dep.canary.is_none() || started.elapsed() > Duration::from_secs(20)
        },
    ));
    let (n, bad) = load.await.unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert!(n > 10);
    let st = h.status().await;
    assert_eq!(st["deployment"]["canary"], Value::Null, "{st}");
    assert_eq!(st["deployment"]["stable"], "1.0.0");
    let phase = &st["rollout"]["phase"];
    let reason = phase["aborted"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{st}"));
    assert!(reason.contains("accuracy"), "{reason}");
    // The first canary interval with data breached, and that same analysis
    // aborted (how long it took is the benchmark's to measure).
    let canary: Vec<&Value> = st["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["scope"] == "canary")
        .collect();
    assert_eq!(canary.len(), 1, "{st}");
    assert!(canary[0]["measurement"]["fail"].is_object(), "{st}");
    assert!(
        canary[0]["actions"][0]
            .as_str()
            .unwrap()
            .starts_with("aborted the canary"),
        "{st}"
    );
    let breach_ms = canary[0]["breach_to_rollback_ms"].as_f64().unwrap();
    eprintln!(
        "canary abort: {breach_ms:.1} ms from window start, decision→switch {} ms",
        canary[0]["decision_to_switch_ms"]
    );
    // The aborted version is gone: no header can route to it.
    let rows0 = eval_rows();
    let (s, v) = h
        .predict(
            &predictor,
            json!({ "rows": [rows0[0].0] }),
            &[("x-airlock-version", "2.0.0")],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an aborted canary answered a forced request: {v}"
    );
    // Every request after the abort is answered by stable.
    let rows = eval_rows();
    for (row, _) in &rows[..20] {
        let (s, v) = h.predict(&predictor, json!({ "rows": [row] }), &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["version"], "1.0.0");
    }
    // Audit, metric, signed webhook.
    let audit = h.ok("GET", "/v1/audit?action=canary_abort", None).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    assert!(
        audit["entries"][0]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("accuracy")
    );
    let text = h.metrics().await;
    assert!(
        text.contains(r#"airlock_rollout_aborts_total{model="breast-cancer",reason="analysis"} 1"#),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = received.lock().unwrap().clone();
        if let Some((sig, body)) = got.iter().find(|(_, b)| b.contains("canary_aborted")) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            verify(secret.as_bytes(), sig, body.as_bytes(), now, 300).expect("a valid signature");
            assert!(verify(b"another-secret-entirely", sig, body.as_bytes(), now, 300).is_err());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no canary_aborted webhook: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_steps_through_and_is_promoted_a_quiet_one_pauses_and_a_new_candidate_restarts()
 {
    let h = Harness::new().await;
    h.served().await;
    h.passing("1.1.0", "xgboost@1.0.0", "model-v1").await;
    h.policy(json!({
        "steps": [20, 60, 100], "interval_s": 1,
        "thresholds": { "min_requests": 5, "max_error_rate": 0.01 },
    }))
    .await;
    let predictor = h.token("app", "predictor").await;
    // No traffic: the first window is inconclusive, which pauses.
    h.ok(
        "POST",
        &format!("/v1/models/{MODEL}/canary"),
        Some(json!({ "version": "1.1.0" })),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = h.status().await;
        if st["rollout"]["phase"]["paused"].is_object() {
            assert!(
                st["rollout"]["phase"]["paused"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("requests"),
                "{st}"
            );
            assert_eq!(st["deployment"]["canary_percent"], 20);
            break;
        }
        assert!(Instant::now() < deadline, "never paused: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new candidate mid-canary restarts the analysis at the first step.
    let v = h
        .ok(
            "POST",
            &format!("/v1/models/{MODEL}/canary"),
            Some(json!({ "version": "1.1.0" })),
        )
        .await;
    assert_eq!(v["restarted"], true, "{v}");
    let st = h.status().await;
    assert_eq!(st["rollout"]["step"], 0, "{st}");
    assert_eq!(st["rollout"]["phase"], "progressing", "{st}");
    // With traffic it steps 20 → 60 → 100 and is promoted.
    let h = Arc::new(h);
    let hh = h.clone();
    let started = Instant::now();
    let (_, bad) = traffic(
        h.clone(),
        predictor.clone(),
        Arc::new(eval_rows()),
        None,
        move || {
            hh.deployment().stable.version == "1.1.0" || started.elapsed() > Duration::from_secs(30)
        },
    )
    .await;
    assert!(bad.is_empty(), "{bad:?}");
    let st = h.status().await;
    assert_eq!(st["deployment"]["stable"], "1.1.0", "{st}");
    assert_eq!(st["rollout"]["phase"], "promoted", "{st}");
    let hist = h
        .ok("GET", &format!("/v1/models/{MODEL}/history"), None)
        .await;
    let last = hist["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["version"], "1.1.0");
    assert_eq!(last["by"], "airlock (canary analysis)");
    let steps = h.ok("GET", "/v1/audit?action=canary_step", None).await;
    let weights: Vec<i64> = steps["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["weight"].as_i64().unwrap())
        .collect();
    assert_eq!(weights, vec![20, 20, 60, 100], "{steps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keys_keep_their_version_and_a_header_forces_one() {
    let h = Harness::new().await;
    h.served().await;
    h.policy(json!({ "steps": [50, 100], "interval_s": 3600 }))
        .await;
    h.ok(
        "POST",
        &format!("/v1/models/{MODEL}/canary"),
        Some(json!({ "version": "2.0.0" })),
    )
    .await;
    let predictor = h.token("app", "predictor").await;
    let rows = eval_rows();
    let row = json!({ "rows": [rows[0].0] });
    let mut per_key = std::collections::HashMap::new();
    for k in 0..40 {
        let key = format!("user-{k}");
        for _ in 0..5 {
            let (s, v) = h
                .predict(&predictor, row.clone(), &[("x-airlock-key", &key)])
                .await;
            assert_eq!(s, StatusCode::OK);
            let prev = per_key.insert(key.clone(), v["version"].as_str().unwrap().to_string());
            if let Some(p) = prev {
                assert_eq!(p, v["version"], "key {key} moved");
            }
        }
    }
    let canary = per_key.values().filter(|v| *v == "2.0.0").count();
    assert!(
        (5..=35).contains(&canary),
        "{canary} of 40 keys on the 50% canary"
    );
    // Forced answers are the caller's pick, not the split's: a predictor
    // flooding the canary with requests it chose must not move the
    // canary's analysis (requests, errors, labels) at all.
    let counted = |v: &str| {
        let ms = h.state.serving.model(MODEL).unwrap();
        ms.warm_version(v).unwrap().stats.snapshot()
    };
    let before = (counted("1.0.0"), counted("2.0.0"));
    let labeler = h.token("labels", "labeler").await;
    for forced in ["1.0.0", "2.0.0"] {
        for _ in 0..10 {
            let (_, v) = h
                .predict(&predictor, row.clone(), &[("x-airlock-version", forced)])
                .await;
            assert_eq!(v["version"], forced);
            let (s, f) = h
                .feedback(
                    &labeler,
                    json!({ "request_id": v["request_id"], "label": 1 }),
                )
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{f}");
            assert!(f.to_string().contains("forced by header"), "{f}");
        }
    }
    let after = (counted("1.0.0"), counted("2.0.0"));
    for (b, a) in [(&before.0, &after.0), (&before.1, &after.1)] {
        assert_eq!(
            (a.requests, a.errors, a.labelled),
            (b.requests, b.errors, b.labelled)
        );
    }
    // They still show in the operational metrics, as forced.
    let text = h.metrics().await;
    assert!(
        text.contains(r#"airlock_predict_requests_total{model="breast-cancer",version="2.0.0",route="forced"} 10"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_traffic_is_compared_off_the_response_path_and_judged() {
    let h = Harness::new().await;
    h.served().await;
    h.policy(json!({ "interval_s": 3600, "thresholds": { "min_requests": 20, "max_error_rate": 0.01, "max_disagreement": 0.1 } })).await;
    let predictor = h.token("app", "predictor").await;
    let v = h
        .ok(
            "PUT",
            &format!("/v1/models/{MODEL}/shadow"),
            Some(json!({ "version": "2.0.0" })),
        )
        .await;
    assert_eq!(v["shadow"], "2.0.0");
    let rows = eval_rows();
    for (row, _) in &rows[..60] {
        let (s, v) = h.predict(&predictor, json!({ "rows": [row] }), &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["version"], "1.0.0", "the shadow never answers");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = h.status().await;
        if st["shadow"]["compared"].as_u64().unwrap() == 60 {
            break st;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The sleeper flips every 1-row answer.
    assert_eq!(st["shadow"]["disagreed"], 60, "{st}");
    assert_eq!(st["shadow"]["verdict"]["result"], "fail", "{st}");
    assert!(st["shadow"]["mean_abs_difference"].as_f64().unwrap() > 0.5);
    let text = h.metrics().await;
    assert!(
        text.contains(
            r#"airlock_shadow_disagreements_total{model="breast-cancer",version="2.0.0"} 60"#
        ),
        "{text}"
    );
    // A shadow must have passed the gate.
    h.passing("3.0.0", "xgboost@1.0.0", "model-v1").await;
    let (s, v) = h
        .call(
            "PUT",
            &format!("/v1/models/{MODEL}/shadow"),
            Some(&h.admin.clone()),
            Some(json!({ "version": "4.0.0" })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // The shadow answers no one, even when asked by name: it passed the
    // gate but was never approved for traffic.
    let (s, v) = h
        .predict(
            &predictor,
            json!({ "rows": [rows[0].0] }),
            &[("x-airlock-version", "2.0.0")],
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the shadow answered a forced request: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_validation_rolls_production_back_when_the_policy_says_so() {
    let h = Harness::with(allow_loopback_webhooks).await;
    h.served().await;
    let (hook_url, received) = webhook_receiver().await;
    // The sleeper passed the gate, so a person promotes it.
    h.promote("2.0.0").await;
    h.policy(json!({
        "interval_s": 1, "auto_rollback": true, "monitors": ["performance"], "min_window_rows": 40,
        "thresholds": { "min_requests": 10, "max_error_rate": 0.01 },
        "webhooks": [{ "url": hook_url, "secret": "another-webhook-secret" }],
    }))
    .await;
    let predictor = h.token("app", "predictor").await;
    let labeler = h.token("labels", "labeler").await;
    let h = Arc::new(h);
    let hh = h.clone();
    let started = Instant::now();
    let (_, bad) = traffic(
        h.clone(),
        predictor.clone(),
        Arc::new(eval_rows()),
        Some(labeler.clone()),
        move || {
            hh.deployment().stable.version == "1.0.0" || started.elapsed() > Duration::from_secs(30)
        },
    )
    .await;
    assert!(bad.is_empty(), "{bad:?}");
    let st = h.status().await;
    assert_eq!(st["deployment"]["stable"], "1.0.0", "{st}");
    let rec = st["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["actions"].to_string().contains("rolled back"))
        .cloned()
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(rec["scope"], "production");
    assert_eq!(rec["window"]["validators"][0]["name"], "performance");
    assert_eq!(rec["window"]["validators"][0]["passed"], false);
    let hist = h
        .ok("GET", &format!("/v1/models/{MODEL}/history"), None)
        .await;
    let last = hist["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["by"], "airlock (automatic rollback)");
    assert!(
        last["reason"].as_str().unwrap().contains("performance"),
        "{last}"
    );
    let text = h.metrics().await;
    assert!(
        text.contains(r#"airlock_rollbacks_total{model="breast-cancer",trigger="automatic"} 1"#),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !received
        .lock()
        .unwrap()
        .iter()
        .any(|(_, b)| b.contains("\"event\":\"rollback\""))
    {
        assert!(Instant::now() < deadline, "no rollback webhook");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_prometheus_naming_with_bounded_labels() {
    let h = Harness::new().await;
    h.served().await;
    let predictor = h.token("app", "predictor").await;
    let labeler = h.token("labels", "labeler").await;
    let rows = eval_rows();
    for (i, (row, label)) in rows[..50].iter().enumerate() {
        let (_, v) = h.predict(&predictor, json!({ "rows": [row] }), &[]).await;
        let body = json!({ "request_id": v["request_id"], "label": label });
        if i == 0 {
            // The client that saw the answer may not grade it.
            let (s, f) = h.feedback(&predictor, body.clone()).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{f}");
        }
        let (s, f) = h.feedback(&labeler, body).await;
        assert_eq!(s, StatusCode::OK, "{f}");
    }
    // Feedback for an unknown id, twice for one id.
    let (s, v) = h
        .feedback(
            &labeler,
            json!({ "request_id": "0".repeat(32), "label": 1 }),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let text = h.metrics().await;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("airlock_"), "{line}");
    }
    for l in text
        .lines()
        .filter(|l| l.starts_with("# TYPE") && l.ends_with(" counter"))
    {
        let name = l.split_whitespace().nth(2).unwrap();
        assert!(
            !name.ends_with("_total"),
            "the exposition adds _total itself: {l}"
        );
    }
    assert!(text.contains(r#"airlock_predict_requests_total{model="breast-cancer",version="1.0.0",route="stable"} 50"#), "{text}");
    assert!(
        text.contains(r#"airlock_feedback_labels_total{model="breast-cancer",version="1.0.0"} 50"#),
        "{text}"
    );
    assert!(
        text.contains("airlock_predict_duration_seconds_bucket{"),
        "{text}"
    );
    // Drift against the gate's reference (train.csv): live rows from the
    // same population do not drift.
    assert!(text.contains(r#"airlock_drift_detected{model="breast-cancer",version="1.0.0",feature="mean_radius"} 0"#), "{text}");
    // A predictor token may not scrape.
    let req = Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {predictor}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        h.router.clone().oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // A reader scoped to another model sees none of this model's series;
    // one scoped to it sees them.
    let scoped = |model: &str| {
        json!({ "subject": format!("reader-of-{model}"), "role": "reader",
                "scope": { "models": [model] } })
    };
    let other = h
        .ok("POST", "/v1/tokens", Some(scoped("other-model")))
        .await;
    let own = h.ok("POST", "/v1/tokens", Some(scoped(MODEL))).await;
    let scrape = |token: Value| {
        let h = &h;
        async move {
            let (s, v) = h
                .call(
                    "GET",
                    "/metrics",
                    Some(token["token"].as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v.as_str().unwrap().to_string()
        }
    };
    let text = scrape(other).await;
    assert!(!text.contains(&format!("model=\"{MODEL}\"")), "{text}");
    assert!(
        text.contains("# TYPE airlock_predict_requests counter"),
        "{text}"
    );
    let text = scrape(own).await;
    assert!(text.contains(r#"airlock_predict_requests_total{model="breast-cancer",version="1.0.0",route="stable"} 50"#), "{text}");
}

/// The operator's allow-list for a test's webhook receivers on 127.0.0.1
/// (webhooks go only to public addresses otherwise).
fn allow_loopback_webhooks(c: &mut airlock_server::ServerConfig) {
    c.serving.webhook_allow = vec![Cidr::parse("127.0.0.1/32").unwrap()];
}

/// A local webhook receiver: (URL, what it received as (signature, body)).
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let g = g.clone();
            async move {
                let sig = headers
                    .get("x-airlock-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                g.lock().unwrap().push((sig, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tritonclient_http_client_works_against_the_v2_endpoints() {
    let h = Harness::new().await;
    h.served().await;
    let predictor = h.token("triton", "predictor").await;
    // The same server over TCP, as a client sees it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = airlock_server::routes::router(h.state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let root = airlock_tests::repo_root();
    let setup = std::process::Command::new(root.join("tests/interop/setup-venv.sh"))
        .output()
        .expect("run tests/interop/setup-venv.sh");
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8(setup.stdout).unwrap().trim().to_string();
    let ms = h.state.serving.model(MODEL).unwrap();
    let inputs = ms.deployment.load().stable.metadata().inputs.clone();
    let (row, _) = &eval_rows()[3];
    let ordered: Vec<f64> = inputs
        .iter()
        .map(|f| row[&f.name].as_f64().unwrap())
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(root.join("tests/interop/oip_client.py"))
            .arg(format!("127.0.0.1:{}", addr.port()))
            .arg(MODEL)
            .arg(&predictor)
            .arg(serde_json::to_string(&ordered).unwrap())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "tritonclient failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["is_server_live"], true, "{v}");
    assert_eq!(v["is_server_ready"], true, "{v}");
    assert_eq!(v["is_model_ready"], true, "{v}");
    assert_eq!(v["metadata"]["name"], MODEL, "{v}");
    let admin = h.admin.clone();
    let (_, ours) = h.predict(&admin, json!({ "rows": [row] }), &[]).await;
    assert_eq!(v["infer"]["output"]["data"], ours["predictions"][0], "{v}");
    assert!(
        v["unknown_model_error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{v}"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_production_at_once_and_keeps_earlier_versions_warm() {
    let h = Harness::new().await;
    h.served().await;
    h.passing("1.1.0", "xgboost@1.0.0", "model-v1").await;
    h.promote("1.1.0").await;
    h.policy(json!({ "steps": [10, 100], "interval_s": 7 }))
        .await;
    // A canary is running when the server stops.
    h.ok(
        "POST",
        &format!("/v1/models/{MODEL}/canary"),
        Some(json!({ "version": "2.0.0" })),
    )
    .await;
    // A second server on the same data directory, started the way
    // `airlock server` starts: everything in production warm before it
    // listens, the versions promoted before kept warm, the policy loaded.
    let state = airlock_server::AppState::open(crate::server::config(h.dir.path(), &h.root))
        .await
        .expect("second state");
    airlock_server::serving::warm_up(&state).await;
    // The interrupted canary is closed in the record, not resumed: no
    // traffic reaches the candidate until someone starts it again.
    let dep = state.serving.model(MODEL).unwrap().deployment.load_full();
    assert!(dep.canary.is_none());
    let closed = |hist: &Value| {
        hist["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "canary-abort" && r["by"] == "airlock (restart)")
            .cloned()
            .collect::<Vec<_>>()
    };
    let hist = h
        .ok("GET", &format!("/v1/models/{MODEL}/history"), None)
        .await;
    let rows = closed(&hist);
    assert_eq!(rows.len(), 1, "{hist}");
    assert_eq!(rows[0]["version"], "2.0.0");
    let reason = rows[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("server stopped") && reason.contains("1.1.0"),
        "{reason}"
    );
    let audit = h.ok("GET", "/v1/audit?action=canary_abort", None).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    // A later start finds nothing left to close.
    let third = airlock_server::AppState::open(crate::server::config(h.dir.path(), &h.root))
        .await
        .expect("third state");
    airlock_server::serving::warm_up(&third).await;
    let hist = h
        .ok("GET", &format!("/v1/models/{MODEL}/history"), None)
        .await;
    assert_eq!(closed(&hist).len(), 1, "{hist}");
    let ms = state
        .serving
        .model(MODEL)
        .expect("served after the restart");
    assert_eq!(ms.deployment.load().stable.version, "1.1.0");
    assert_eq!(
        ms.warm_names(),
        vec!["1.1.0".to_string(), "1.0.0".to_string()]
    );
    assert_eq!(ms.policy.load().interval_s, 7);
    assert!(ms.servable("2.0.0").is_none(), "never promoted: not warm");
    // And it answers.
    let router = airlock_server::routes::router(state.clone());
    let predictor = h.token("app", "predictor").await;
    let (row, _) = &eval_rows()[0];
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/models/{MODEL}/predict"))
        .header("authorization", format!("Bearer {predictor}"))
        .body(Body::from(json!({ "rows": [row] }).to_string()))
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampled_prediction_log_is_off_by_default_and_redacts_sensitive_fields() {
    let h = Harness::new().await;
    h.served().await;
    let predictor = h.token("app", "predictor").await;
    let log = h.data_dir().join("prediction-logs/breast-cancer.jsonl");
    let rows = eval_rows();
    let mut row = rows[0].0.clone();
    row["mean_radius"] = json!(12.34567);
    row["worst_area"] = json!(765.4321);
    let (s, _) = h.predict(&predictor, json!({ "rows": [row] }), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!log.exists(), "no log unless the policy asks for one");
    h.policy(json!({ "prediction_log": { "sample_percent": 100, "sensitive": ["mean_radius", "worst_area"] } }))
        .await;
    for _ in 0..5 {
        let (s, _) = h.predict(&predictor, json!({ "rows": [row] }), &[]).await;
        assert_eq!(s, StatusCode::OK);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    for l in &lines {
        assert_eq!(l["inputs"]["mean_radius"], "[redacted]");
        assert_eq!(l["inputs"]["worst_area"], "[redacted]");
        assert_eq!(l["inputs"]["mean_texture"], row["mean_texture"]);
        assert_eq!(l["version"], "1.0.0");
        assert_eq!(l["prediction"].as_array().unwrap().len(), 2);
    }
    assert!(
        !text.contains("12.34567") && !text.contains("765.4321"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A bad sample rate is refused, naming the field.
    let (s, v) = h
        .call(
            "PUT",
            &format!("/v1/models/{MODEL}/serving"),
            Some(&h.admin.clone()),
            Some(json!({ "prediction_log": { "sample_percent": 0 } })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        message(&v).contains("prediction_log.sample_percent 0"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_start_racing_a_promotion_never_answers_500_and_audits_only_what_happened() {
    let h = Harness::new().await;
    h.served().await;
    h.passing("1.1.0", "xgboost@1.0.0", "model-v1").await;
    // No analysis moves the canary during a round.
    h.policy(json!({ "steps": [20, 60, 100], "interval_s": 3600 }))
        .await;
    let h = Arc::new(h);
    let mut production = "1.0.0";
    let (mut canary_after, mut canary_ended) = (0, 0);
    for round in 0..50 {
        let target = if production == "1.0.0" {
            "1.1.0"
        } else {
            "1.0.0"
        };
        let before = crate::races::audit_head(&h);
        let hc = h.clone();
        let canary = tokio::spawn(async move {
            hc.call(
                "POST",
                &format!("/v1/models/{MODEL}/canary"),
                Some(&hc.admin.clone()),
                Some(json!({ "version": "2.0.0" })),
            )
            .await
        });
        crate::races::jitter(round, Duration::from_millis(8)).await;
        let hp = h.clone();
        let promote = tokio::spawn(async move {
            hp.call(
                "POST",
                &format!("/v1/models/{MODEL}/promote"),
                Some(&hp.admin.clone()),
                Some(json!({ "version": target })),
            )
            .await
        });
        let (cs, cv) = canary.await.unwrap();
        let (ps, pv) = promote.await.unwrap();
        assert_eq!(ps, StatusCode::OK, "round {round}: promotion: {pv}");
        assert_eq!(cs, StatusCode::OK, "round {round}: canary: {cv}");
        production = target;
        // The canary started once, whichever came first.
        let entries = crate::races::audit_after(&h, before).await;
        let starts = entries
            .iter()
            .filter(|e| e["action"] == "canary_start" || e["action"] == "canary_restart")
            .count();
        assert_eq!(starts, 1, "round {round}: {entries:?}");
        // What serves, what the status says and what is recorded agree:
        // the promotion either ended the canary or came before it.
        let dep = h.deployment();
        assert_eq!(dep.stable.version, target, "round {round}");
        let recorded: Option<(String, String)> =
            sqlx::query_as("SELECT candidate, stable FROM serving_canaries WHERE model = $1")
                .bind(MODEL)
                .fetch_optional(&h.state.db)
                .await
                .unwrap();
        let st = h.status().await;
        match &dep.canary {
            Some(c) => {
                assert_eq!(c.version, "2.0.0", "round {round}");
                assert_eq!(dep.split.canary_percent, 20, "round {round}");
                assert_eq!(
                    recorded,
                    Some(("2.0.0".to_string(), target.to_string())),
                    "round {round}"
                );
                assert_eq!(st["rollout"]["stable"], target, "round {round}: {st}");
                assert_eq!(st["rollout"]["phase"], "progressing", "round {round}: {st}");
                h.ok(
                    "POST",
                    &format!("/v1/models/{MODEL}/canary/abort"),
                    Some(json!({ "reason": "next round" })),
                )
                .await;
                canary_after += 1;
            }
            None => {
                assert_eq!(dep.split.canary_percent, 0, "round {round}");
                assert_eq!(recorded, None, "round {round}");
                canary_ended += 1;
            }
        }
    }
    eprintln!("{canary_after} canaries started after the promotion, {canary_ended} ended by it");
}

/// A model whose monitor burns its whole time budget (50 s) on every live
/// window: its analyses are errors, its status answers while the monitor
/// runs, and another model's automatic rollback happens meanwhile.
#[test]
fn a_slow_monitor_delays_neither_its_status_nor_another_models_rollback() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(slow_monitor_scenario());
    // The slow monitor's thread spins until its step's deadline: not
    // waited for.
    rt.shutdown_background();
}

async fn slow_monitor_scenario() {
    const SLOW: &str = "slow-model";
    let h = Harness::with(|c| {
        c.sandbox.limits.timeout_ms = 60_000;
        c.sandbox.limits.fuel = 1 << 50;
    })
    .await;
    let hostile = h
        .register(
            &airlock_tests::plugin("hostile_validator"),
            "hostile",
            "1.0.0",
        )
        .await;
    let eval = h
        .upload(std::fs::read(airlock_tests::example().join("data/eval.csv")).unwrap())
        .await;
    let gate = h
        .pinned_gate(|t| {
            let steps = t.get_mut("steps").unwrap().as_array_mut().unwrap();
            let step: toml::Value = toml::from_str::<toml::Table>(&format!(
                "name = 'slow'\nplugin = '{hostile}'\ndataset = '{eval}'\n\
                 config = {{ mode = 'loop-live' }}\nlimits = {{ timeout_ms = 50000 }}\n"
            ))
            .unwrap()
            .into();
            steps.push(step);
        })
        .await;
    let (s, v) = h.publish_gate(1, gate, &h.root.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for m in [MODEL, SLOW] {
        h.ok(
            "PUT",
            &format!("/v1/models/{m}"),
            Some(json!({ "gate": "breast-cancer" })),
        )
        .await;
    }
    h.model_plugin("airlock_model_xgboost", "xgboost").await;
    h.model_plugin("hostile_sleeper", "sleeper").await;
    // The other model, set up first (its gate runs are not timed): the
    // sleeper in production, to be rolled back automatically once traffic
    // shows what it is.
    h.passing("1.0.0", "xgboost@1.0.0", "model-v1").await;
    h.promote("1.0.0").await;
    h.passing("2.0.0", "sleeper@1.0.0", "model-v1").await;
    h.promote("2.0.0").await;
    h.policy(json!({
        "interval_s": 1, "auto_rollback": true, "monitors": ["performance"], "min_window_rows": 40,
        "thresholds": { "min_requests": 10, "max_error_rate": 0.01 },
    }))
    .await;
    // The slow model: served, its monitor the slow step, some traffic.
    let bundle = h.bundle("model-v1").await;
    let v = h
        .ok(
            "POST",
            &format!("/v1/models/{SLOW}/versions"),
            Some(json!({ "version": "1.0.0", "plugin": "xgboost@1.0.0", "bundle": bundle })),
        )
        .await;
    let r = h.wait(v["run"].as_str().unwrap()).await;
    assert_eq!(r["run"]["status"], "passed", "{r}");
    h.ok(
        "POST",
        &format!("/v1/models/{SLOW}/promote"),
        Some(json!({ "version": "1.0.0" })),
    )
    .await;
    h.ok(
        "PUT",
        &format!("/v1/models/{SLOW}/serving"),
        Some(json!({ "interval_s": 1, "monitors": ["slow"], "min_window_rows": 1 })),
    )
    .await;
    let predictor = h.token("app", "predictor").await;
    for (row, _) in eval_rows().iter().take(5) {
        let (s, v) = h
            .call(
                "POST",
                &format!("/v1/models/{SLOW}/predict"),
                Some(&predictor),
                Some(json!({ "rows": [row] })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let slow_status = || async {
        h.ok("GET", &format!("/v1/models/{SLOW}/serving"), None)
            .await
    };
    // Its status answers while its monitor runs (waits for that state).
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let st = slow_status().await;
        if st["monitors"]["running"] == true {
            break st["monitors"]["runs"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the slow monitor never ran: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let labeler = h.token("labels", "labeler").await;
    let h = Arc::new(h);
    let hh = h.clone();
    let started = Instant::now();
    let (_, bad) = traffic(
        h.clone(),
        predictor.clone(),
        Arc::new(eval_rows()),
        Some(labeler),
        move || {
            hh.deployment().stable.version == "1.0.0" || started.elapsed() > Duration::from_secs(60)
        },
    )
    .await;
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(h.deployment().stable.version, "1.0.0", "no rollback");
    // All of that while the slow model's first monitor run was still out.
    let st = h
        .ok("GET", &format!("/v1/models/{SLOW}/serving"), None)
        .await;
    assert_eq!(st["monitors"]["running"], true, "{st}");
    assert_eq!(st["monitors"]["runs"], runs, "{st}");
    // Its analyses are recorded as errors, judged without the monitor
    // (waits for the first to be recorded).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = h
            .ok("GET", &format!("/v1/models/{SLOW}/serving"), None)
            .await;
        let analyses = st["analysis"].as_array().unwrap();
        assert!(
            analyses
                .iter()
                .all(|a| a["measurement"] != "pass" && a["measurement"].get("fail").is_none()),
            "{st}"
        );
        if analyses.iter().any(|a| {
            a["window"]["measurement_error"]
                .as_str()
                .is_some_and(|e| e.contains("did not answer within 1 s"))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no timed-out analysis: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_gate_moved_under_it_is_aborted_instead_of_promoted() {
    let h = Harness::new().await;
    h.served().await;
    h.passing("1.1.0", "xgboost@1.0.0", "model-v1").await;
    h.policy(json!({
        "steps": [50, 100], "interval_s": 1,
        "thresholds": { "min_requests": 5, "max_error_rate": 0.01 },
    }))
    .await;
    h.ok(
        "POST",
        &format!("/v1/models/{MODEL}/canary"),
        Some(json!({ "version": "1.1.0" })),
    )
    .await;
    // The gate moves on while the canary runs: 1.1.0 has no run under it.
    let (s, v) = h.publish_stricter_gate(2).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.ok(
        "PUT",
        "/v1/gates/breast-cancer/current",
        Some(json!({ "version": 2 })),
    )
    .await;
    // Good traffic: every interval passes, and the last would promote.
    let predictor = h.token("app", "predictor").await;
    let h = Arc::new(h);
    let hh = h.clone();
    let started = Instant::now();
    let (_, bad) = traffic(
        h.clone(),
        predictor,
        Arc::new(eval_rows()),
        None,
        move || hh.deployment().canary.is_none() || started.elapsed() > Duration::from_secs(30),
    )
    .await;
    assert!(bad.is_empty(), "{bad:?}");
    let st = h.status().await;
    assert_eq!(st["deployment"]["stable"], "1.0.0", "{st}");
    let reason = st["rollout"]["phase"]["aborted"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("not aborted: {st}"));
    assert!(
        reason.contains("may not be promoted")
            && reason.contains("no finished gate run under gate breast-cancer version 2"),
        "{reason}"
    );
    let hist = h
        .ok("GET", &format!("/v1/models/{MODEL}/history"), None)
        .await;
    assert!(
        !hist["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["version"] == "1.1.0" && e["action"] == "promote"),
        "{hist}"
    );
}

/// A raw HTTP listener on `ip` that records the first line of every
/// request it gets and answers each with `response` (any method, any path).
async fn recorder(ip: &str, response: String) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let got: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (g, response) = (g.clone(), response.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then as much body as it announces.
                let head_end = loop {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                g.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, got)
}

const OK_ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Waits until `/metrics` shows `webhook_deliveries{outcome}` at `n`.
async fn wait_for_deliveries(h: &Harness, outcome: &str, n: u32) {
    let line = format!("airlock_webhook_deliveries_total{{outcome=\"{outcome}\"}} {n}\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = h
            .call("GET", "/metrics", Some(&h.admin.clone()), None)
            .await;
        let text = text.as_str().unwrap_or_default().to_string();
        if text.contains(&line) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{line}` in {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a canary of 2.0.0 and aborts it: one `canary_aborted` alert.
async fn canary_started_and_aborted(h: &Harness) {
    h.ok(
        "POST",
        &format!("/v1/models/{MODEL}/canary"),
        Some(json!({ "version": "2.0.0" })),
    )
    .await;
    h.ok(
        "POST",
        &format!("/v1/models/{MODEL}/canary/abort"),
        Some(json!({ "reason": "test" })),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_only_allow_listed_non_public_addresses_and_never_follow_a_redirect() {
    // The operator allow-lists 127.0.0.1 only.
    let h = Harness::with(allow_loopback_webhooks).await;
    h.served().await;
    let (outside, outside_got) = recorder("127.0.0.2", OK_ANSWER.to_string()).await;
    let (target, target_got) = recorder("127.0.0.1", OK_ANSWER.to_string()).await;
    let (redirector, redirector_got) = recorder(
        "127.0.0.1",
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{target}/stolen\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    let (hook_url, received) = webhook_receiver().await;
    let secret = "webhook-secret-0123456789";
    let policy = |urls: &[String]| {
        json!({
            "steps": [50, 100], "interval_s": 3600,
            "webhooks": urls.iter().map(|u| json!({ "url": u, "secret": secret })).collect::<Vec<_>>(),
        })
    };
    // Loopback outside the allow-list is refused when the policy is set.
    let outside_url = format!("http://{outside}/hook");
    let (s, v) = h
        .call(
            "PUT",
            &format!("/v1/models/{MODEL}/serving"),
            Some(&h.admin.clone()),
            Some(policy(std::slice::from_ref(&outside_url))),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        message(&v).contains("127.0.0.2") && message(&v).contains("webhook_allow"),
        "{v}"
    );
    // Allow-listed: the receiver gets the signed alert; the redirector's
    // 302 is a failed delivery, never followed to the target.
    let redirect_url = format!("http://{redirector}/hook");
    h.policy(policy(&[hook_url.clone(), redirect_url.clone()]))
        .await;
    canary_started_and_aborted(&h).await;
    wait_for_deliveries(&h, "delivered", 1).await;
    wait_for_deliveries(&h, "failed", 1).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    verify(secret.as_bytes(), &got[0].0, got[0].1.as_bytes(), now, 300).expect("signed");
    assert_eq!(
        redirector_got.lock().unwrap().clone(),
        vec!["POST /hook HTTP/1.1".to_string()],
        "a redirect is answered once and not retried"
    );
    assert!(
        target_got.lock().unwrap().is_empty(),
        "a redirect was followed"
    );
    // A policy stored with a destination the rule now refuses (the store
    // edited, or an older server's policy) is refused at delivery too: the
    // address is checked when the alert goes out, not only when set.
    let (stored,): (String,) =
        sqlx::query_as("SELECT policy FROM serving_policies WHERE model = $1")
            .bind(MODEL)
            .fetch_one(&h.state.db)
            .await
            .unwrap();
    let edited = stored.replace(&redirect_url, &outside_url);
    assert_ne!(edited, stored);
    sqlx::query("UPDATE serving_policies SET policy = $1 WHERE model = $2")
        .bind(&edited)
        .bind(MODEL)
        .execute(&h.state.db)
        .await
        .unwrap();
    airlock_server::serving::policy::load_policy(&h.state, MODEL).await;
    canary_started_and_aborted(&h).await;
    wait_for_deliveries(&h, "refused", 1).await;
    wait_for_deliveries(&h, "delivered", 2).await;
    assert!(
        outside_got.lock().unwrap().is_empty(),
        "a non-allow-listed loopback address was reached"
    );
    assert!(target_got.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_loopback_private_link_local_or_metadata_addresses_are_refused_by_default() {
    let h = Harness::new().await;
    h.deployable(0).await;
    let (listener, listener_got) = recorder("127.0.0.1", OK_ANSWER.to_string()).await;
    for url in [
        format!("http://{listener}/hook"),
        format!("http://localhost:{}/hook", listener.port()),
        format!("http://[::ffff:127.0.0.1]:{}/hook", listener.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/hook".to_string(),
        "http://192.168.0.1/hook".to_string(),
        "http://[fe80::1]/hook".to_string(),
    ] {
        let (s, v) = h
            .call(
                "PUT",
                &format!("/v1/models/{MODEL}/serving"),
                Some(&h.admin.clone()),
                Some(
                    json!({ "webhooks": [{ "url": url, "secret": "webhook-secret-0123456789" }] }),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert!(message(&v).contains("webhook_allow"), "{url}: {v}");
    }
    assert!(listener_got.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_twice_in_a_prediction_row_is_refused_naming_it() {
    let h = Harness::new().await;
    h.deployable(0).await;
    h.passing("1.0.0", "xgboost@1.0.0", "model-v1").await;
    h.promote("1.0.0").await;
    let predictor = h.token("app", "predictor").await;
    let raw = |path: String, body: String| {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {predictor}"))
            .body(Body::from(body))
            .unwrap();
        h.send(req)
    };
    let row = eval_rows()[0].0.to_string();
    // The row as sent, then with `mean_radius` given a second time (the
    // last value would have won).
    let (s, v) = raw(
        format!("/v1/models/{MODEL}/predict"),
        format!("{{\"rows\": [{row}]}}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let twice = row.replacen('{', "{\"mean_radius\": 99.0, ", 1);
    let (s, v) = raw(
        format!("/v1/models/{MODEL}/predict"),
        format!("{{\"rows\": [{twice}]}}"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("\"mean_radius\" appears twice"), "{v}");
    // `/v2`: a tensor's parameters, and a tensor's own field, given twice.
    let data: Vec<f64> = (0..30).map(|i| f64::from(i) / 10.0).collect();
    let tensor = |extra: &str| {
        format!(
            "{{\"inputs\": [{{\"name\": \"input-0\", \"shape\": [1, 30], \"datatype\": \"FP64\", \"data\": {}{extra}}}]}}",
            serde_json::to_string(&data).unwrap()
        )
    };
    for (extra, key) in [
        (
            ", \"parameters\": {\"a\": 1, \"a\": 2}",
            "\"a\" appears twice",
        ),
        (", \"datatype\": \"FP32\"", "duplicate field `datatype`"),
    ] {
        let (s, v) = raw(format!("/v2/models/{MODEL}/infer"), tensor(extra)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{extra}: {v}");
        assert!(message(&v).contains(key), "{extra}: {v}");
    }
    let (s, v) = raw(format!("/v2/models/{MODEL}/infer"), tensor("")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // One tensor per feature, with `mean_radius` sent twice: the second
    // would have been dropped unseen.
    let first = eval_rows()[0].0.clone();
    let mut tensors: Vec<Value> = first
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| json!({ "name": k, "shape": [1], "datatype": "FP64", "data": [x] }))
        .collect();
    let (s, v) = raw(
        format!("/v2/models/{MODEL}/infer"),
        json!({ "inputs": tensors.clone() }).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tensors
        .push(json!({ "name": "mean_radius", "shape": [1], "datatype": "FP64", "data": [99.0] }));
    let (s, v) = raw(
        format!("/v2/models/{MODEL}/infer"),
        json!({ "inputs": tensors }).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        message(&v).contains("input \"mean_radius\" is given twice"),
        "{v}"
    );
}
