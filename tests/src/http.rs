//! A minimal HTTP/1.1 client for tests and benchmarks that drive a real
//! `airlock` server over loopback (one connection per request, bodies
//! written in pieces so a kill can land mid-upload), and the fixture that
//! readies a server for breast-cancer submissions.

use airlock_attest::SigningKey;
use airlock_attest::policy::GateDefinition;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// One HTTP/1.1 request over a fresh connection; `None` when the
/// connection fails (the server was killed).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
    json_body: bool,
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let body = body.unwrap_or_default();
    let ctype = if json_body {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    // Large bodies go in pieces, so that a kill lands mid-upload.
    for piece in body.chunks(256 * 1024) {
        s.write_all(piece).ok()?;
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
    let split = text.find("\r\n\r\n")?;
    let v = serde_json::from_str(&text[split + 4..]).unwrap_or(Value::Null);
    Some((status, v))
}

/// A request with an optional JSON body.
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let b = body.map(|v| v.to_string().into_bytes());
    http(addr, method, path, token, b.as_deref(), b.is_some())
}

/// A request that must succeed (2xx); its JSON answer.
pub fn must(addr: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (s, v) = call(addr, method, path, token, body).expect("server answers");
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

/// Uploads a blob; its digest, or `None` if the upload failed.
pub fn upload(addr: &str, token: &str, bytes: &[u8]) -> Option<String> {
    let (s, v) = http(addr, "POST", "/v1/blobs", token, Some(bytes), false)?;
    ((200..300).contains(&s)).then(|| v["digest"].as_str().unwrap().to_string())
}

/// Tokens and digests a test server is driven with.
#[derive(Clone)]
pub struct Fixture {
    /// The admin token.
    pub admin: String,
    /// A submitter (`sam`).
    pub submitter: String,
    /// An approver (`ann`).
    pub approver: String,
    /// A deployer (`dee`).
    pub deployer: String,
    /// The uploaded archive of `model-v1`.
    pub bundle: String,
}

/// Publishes the example gate as `bc` (signed by `root`), creates model `bc`
/// (one approval), registers the XGBoost plugin, uploads model-v1 and makes
/// one token per role. `data` is the server's data directory.
pub fn setup(addr: &str, data: &Path, root: &SigningKey) -> Fixture {
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let text = std::fs::read_to_string(crate::example().join("gate.toml")).unwrap();
    let mut t: toml::Table = toml::from_str(&text).unwrap();
    t.remove("plugin_dir");
    let mut steps = t["steps"].as_array().unwrap().clone();
    for step in &mut steps {
        let s = step.as_table_mut().unwrap();
        let name = s["plugin"].as_str().unwrap().to_string();
        let bytes = std::fs::read(crate::plugin(&format!("airlock_validator_{name}"))).unwrap();
        let d = upload(addr, &admin, &bytes).unwrap();
        must(
            addr,
            "POST",
            "/v1/plugins",
            &admin,
            Some(json!({ "name": name, "version": "1.0.0", "component": d })),
        );
        s.insert("plugin".into(), toml::Value::String(d));
        for key in ["dataset", "reference"] {
            if let Some(p) = s.get(key).and_then(|v| v.as_str()).map(str::to_string) {
                let d = upload(
                    addr,
                    &admin,
                    &std::fs::read(crate::example().join(p)).unwrap(),
                )
                .unwrap();
                s.insert(key.into(), toml::Value::String(d));
            }
        }
    }
    t.insert("steps".into(), toml::Value::Array(steps));
    let env = GateDefinition {
        name: "bc".into(),
        version: 1,
        gate_toml: toml::to_string(&t).unwrap(),
    }
    .sign(root)
    .unwrap();
    must(
        addr,
        "POST",
        "/v1/gates",
        &admin,
        Some(serde_json::from_str(&env.to_json()).unwrap()),
    );
    must(
        addr,
        "PUT",
        "/v1/models/bc",
        &admin,
        Some(json!({ "gate": "bc", "approvals_required": 1 })),
    );
    let x = upload(
        addr,
        &admin,
        &std::fs::read(crate::plugin("airlock_model_xgboost")).unwrap(),
    )
    .unwrap();
    must(
        addr,
        "POST",
        "/v1/plugins",
        &admin,
        Some(json!({ "name": "xgboost", "version": "1.0.0", "component": x })),
    );
    let mut tar = Vec::new();
    airlock_server::archive::pack(&crate::example().join("model-v1"), &mut tar).unwrap();
    let bundle = upload(addr, &admin, &tar).unwrap();
    let token = |subject: &str, role: &str| {
        must(
            addr,
            "POST",
            "/v1/tokens",
            &admin,
            Some(json!({ "subject": subject, "role": role })),
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    Fixture {
        submitter: token("sam", "submitter"),
        approver: token("ann", "approver"),
        deployer: token("dee", "deployer"),
        admin,
        bundle,
    }
}
