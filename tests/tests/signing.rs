//! The signing commands end to end through the `airlock` binary: keys,
//! OpenSSF model signatures (`sign` / `verify`), and gate runs that write a
//! signed attestation which `attestation verify` checks offline — and
//! refuses when it is tampered with, signed by another key, or replayed for
//! other bytes. (Interop with the reference `model_signing` tool, both
//! ways, is in `host/attest/tests/`.)

use airlock_tests::{airlock_bin, example, plugin};
use std::path::Path;
use std::process::{Command, Output};

fn airlock(args: &[&str], cache: &Path) -> Output {
    let mut c = Command::new(airlock_bin());
    c.args(args);
    if airlock_tests::takes_cache_dir(args) {
        c.arg("--cache-dir").arg(cache);
    }
    c.output().expect("running airlock")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn keys_are_generated_private_0600_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.pem");
    let o = airlock(&["key", "generate", &s(&key)], dir.path());
    assert!(o.status.success(), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("P-256 key "));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(dir.path().join("signer.pub").exists());
    let again = airlock(&["key", "generate", &s(&key)], dir.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(err(&again).contains("never overwrites"), "{}", err(&again));
}

#[test]
fn a_signed_model_verifies_and_a_changed_byte_or_another_key_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = dir.path().join("model-v1");
    copy_dir(&example().join("model-v1"), &model);
    let key = dir.path().join("k.pem");
    let other = dir.path().join("other.pem");
    for k in [&key, &other] {
        assert!(
            airlock(&["key", "generate", &s(k), "--p384"], &cache)
                .status
                .success()
        );
    }
    let o = airlock(&["sign", &s(&model), "--key", &s(&key)], &cache);
    assert!(o.status.success(), "{}", err(&o));
    let sig = dir.path().join("model-v1.sig");
    assert!(sig.exists());
    let public = s(&dir.path().join("k.pub"));
    let ok = airlock(&["verify", &s(&model), "--public-key", &public], &cache);
    assert_eq!(ok.status.code(), Some(0), "{}", err(&ok));
    let wrong_key = airlock(
        &[
            "verify",
            &s(&model),
            "--public-key",
            &s(&dir.path().join("other.pub")),
        ],
        &cache,
    );
    assert_eq!(wrong_key.status.code(), Some(1), "{}", err(&wrong_key));
    let mut bytes = std::fs::read(model.join("model.json")).unwrap();
    bytes[10] ^= 1;
    std::fs::write(model.join("model.json"), bytes).unwrap();
    let changed = airlock(&["verify", &s(&model), "--public-key", &public], &cache);
    assert_eq!(changed.status.code(), Some(1));
    assert!(err(&changed).contains("model.json"), "{}", err(&changed));
    let missing = airlock(
        &[
            "verify",
            &s(&model),
            "--public-key",
            &public,
            "--signature",
            "nope.sig",
        ],
        &cache,
    );
    assert_eq!(missing.status.code(), Some(2), "{}", err(&missing));
}

#[test]
fn a_gate_run_writes_an_attestation_that_verifies_only_for_its_own_bytes_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for v in ["schema", "golden", "performance", "robustness", "drift"] {
        std::fs::copy(
            plugin(&format!("airlock_validator_{v}")),
            plugins.join(format!("{v}.wasm")),
        )
        .unwrap();
    }
    let key = dir.path().join("host.pem");
    let rotated = dir.path().join("old.pem");
    for k in [&key, &rotated] {
        assert!(
            airlock(&["key", "generate", &s(k)], &cache)
                .status
                .success()
        );
    }
    let public = s(&dir.path().join("host.pub"));
    let old_public = s(&dir.path().join("old.pub"));
    let model = s(&plugin("airlock_model_xgboost"));
    let gate = s(&example().join("gate.toml"));
    let run = |bundle: &str, out: &Path| {
        airlock(
            &[
                "gate",
                "run",
                &gate,
                "--model",
                &model,
                "--bundle",
                &s(&example().join(bundle)),
                "--plugin-dir",
                &s(&plugins),
                "--seed",
                "5",
                "--sign-key",
                &s(&key),
                "--attestation",
                &s(out),
            ],
            &cache,
        )
    };
    let good = dir.path().join("good.json");
    let o = run("model-v1", &good);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let bad = dir.path().join("bad.json");
    assert_eq!(run("model-v2-degraded", &bad).status.code(), Some(1));
    assert!(bad.exists(), "a refused run is attested too");

    let verify = |file: &Path, extra: &[&str]| {
        let mut args = vec!["attestation", "verify", &s(file)]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        airlock(&args, &cache)
    };
    // Valid, under the host key, among rotated keys too, for its own bytes.
    let o = verify(&good, &["--public-key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PASSED"));
    let v1 = s(&example().join("model-v1"));
    let o = verify(
        &good,
        &[
            "--public-key",
            &old_public,
            "--public-key",
            &public,
            "--model",
            &model,
            "--bundle",
            &v1,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // Replayed for other bytes: the degraded bundle.
    let v2 = s(&example().join("model-v2-degraded"));
    let o = verify(
        &good,
        &["--public-key", &public, "--model", &model, "--bundle", &v2],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // Signed by a key that is not trusted.
    let o = verify(&good, &["--public-key", &old_public]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // A refused run's attestation is valid, and says FAILED; --require-pass
    // turns that into a failure.
    let o = verify(&bad, &["--public-key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILED"));
    let o = verify(&bad, &["--public-key", &public, "--require-pass"]);
    assert_eq!(o.status.code(), Some(1));
    // Tampered: the good payload with the bad run's signature.
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(&bad).unwrap()).unwrap();
    b["payload"] = g["payload"].clone();
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&b).unwrap()).unwrap();
    let o = verify(&forged, &["--public-key", &public]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
}
