//! Models signed by airlock-attest verify with the reference implementation's
//! CLI, `model_signing verify key` (model_signing 1.1.1), and the reference
//! refuses them once tampered with.
//!
//! The reference runs from a Python venv that this test creates once and
//! then reuses: `<target dir>/model-signing-venv` (`$CARGO_TARGET_DIR` if
//! set to an absolute path, else the workspace's `target/`), with `model_signing==1.1.1` and
//! pyOpenSSL installed under the committed pins
//! `tests/fixtures/model-signing/VERSIONS` as a pip constraints file. A
//! stamp records what was installed, so later runs skip pip entirely; a
//! file lock keeps concurrent test processes from installing twice. It
//! needs `python3` with `venv` and pip, and network access to PyPI the
//! first time, and fails naming what is missing otherwise.

use airlock_attest::model_signing::{DEFAULT_SIGNATURE_FILE, Options, sign_model};
use airlock_attest::{Curve, SigningKey};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const REFERENCE: &str = "model_signing==1.1.1";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    manifest_dir().join("tests/fixtures/model-signing")
}

/// The target directory: `$CARGO_TARGET_DIR` when absolute, else `target/`
/// at the workspace root (the nearest ancestor whose Cargo.toml has a
/// `[workspace]`).
fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && t.is_absolute()
    {
        return t;
    }
    let root = manifest_dir()
        .ancestors()
        .find(|d| fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")))
        .expect("the workspace root");
    root.join("target")
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The reference CLI, installing it on first use.
fn model_signing_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        let target = target_dir();
        fs::create_dir_all(&target).unwrap();
        let venv = target.join("model-signing-venv");
        let cli = venv.join("bin/model_signing");
        let pins = fixtures().join("VERSIONS");
        let stamp_want = format!(
            "{REFERENCE}\nconstraints sha256 {}\n",
            hex::encode(Sha256::digest(fs::read(&pins).unwrap()))
        );
        let stamp = venv.join("airlock-stamp");
        let lock = fs::File::create(target.join("model-signing-venv.lock")).unwrap();
        lock.lock().unwrap();
        if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_want.as_str()) && cli.exists() {
            return cli;
        }
        let hint = "the reverse-interop test needs python3 with venv and pip, and network \
                    access to PyPI on first run, to install the reference model_signing 1.1.1";
        let _ = fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            &format!("creating a venv at {} ({hint})", venv.display()),
        );
        run(
            Command::new(venv.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--timeout",
                    "60",
                    "-c",
                ])
                .arg(&pins)
                // 1.1.1 imports OpenSSL but does not declare pyOpenSSL.
                .args([REFERENCE, "pyOpenSSL"]),
            &format!("pip install {REFERENCE} into {} ({hint})", venv.display()),
        );
        run(
            Command::new(&cli).arg("--version"),
            "running the installed model_signing",
        );
        fs::write(&stamp, stamp_want).unwrap();
        cli
    })
}

/// `model_signing verify key MODEL --public_key PUB --signature SIG`:
/// whether it succeeded, and what it said.
fn reference_verify(model: &Path, public_pem: &str, signature: &Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("key.pub");
    fs::write(&public, public_pem).unwrap();
    let out = Command::new(model_signing_cli())
        .args(["verify", "key"])
        .arg(model)
        .arg("--public_key")
        .arg(&public)
        .arg("--signature")
        .arg(signature)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A copy of the tree-model fixture plus git clutter, in a temp dir.
fn tree_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("tree-model");
    copy_dir(&fixtures().join("tree-model"), &m);
    fs::create_dir_all(m.join(".git/refs")).unwrap();
    fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    (dir, m)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn airlock_signed_directories_verify_with_the_reference_cli_on_both_curves() {
    for curve in [Curve::P256, Curve::P384] {
        let key = SigningKey::generate(curve);
        let public = key.verifying_key().to_pem();

        // The signature inside the model, under the reference's default name.
        let (_d, m) = tree_copy();
        let sig = m.join(DEFAULT_SIGNATURE_FILE);
        let opts = Options {
            signature_path: Some(sig.clone()),
            ..Options::default()
        };
        sign_model(&m, &key, &opts).unwrap().write(&sig).unwrap();
        let (ok, said) = reference_verify(&m, &public, &sig);
        assert!(
            ok,
            "{curve}: the reference refused airlock's signature: {said}"
        );
        assert!(said.contains("Verification succeeded"), "{said}");

        // The signature outside the model.
        let model_v1 = manifest_dir().join("../../examples/breast-cancer/model-v1");
        let out = tempfile::tempdir().unwrap();
        let sig = out.path().join("model-v1.sig");
        sign_model(&model_v1, &key, &Options::default())
            .unwrap()
            .write(&sig)
            .unwrap();
        let (ok, said) = reference_verify(&model_v1, &public, &sig);
        assert!(
            ok,
            "{curve}: the reference refused airlock's signature: {said}"
        );
    }
}

#[test]
fn an_airlock_signed_single_file_model_verifies_with_the_reference_cli() {
    let key = SigningKey::generate(Curve::P256);
    let file = manifest_dir().join("../../examples/breast-cancer/model-v2-degraded/model.json");
    let out = tempfile::tempdir().unwrap();
    let sig = out.path().join("model.json.sig");
    sign_model(&file, &key, &Options::default())
        .unwrap()
        .write(&sig)
        .unwrap();
    let (ok, said) = reference_verify(&file, &key.verifying_key().to_pem(), &sig);
    assert!(ok, "the reference refused airlock's signature: {said}");
}

#[test]
fn the_reference_cli_refuses_airlock_signed_models_once_tampered() {
    let key = SigningKey::generate(Curve::P384);
    let public = key.verifying_key().to_pem();
    let (_d, m) = tree_copy();
    let out = tempfile::tempdir().unwrap();
    let sig = out.path().join("tree.sig");
    sign_model(&m, &key, &Options::default())
        .unwrap()
        .write(&sig)
        .unwrap();
    assert!(reference_verify(&m, &public, &sig).0);

    // A changed byte.
    fs::write(m.join("a/deep/c.bin"), b"deeP\n").unwrap();
    let (ok, said) = reference_verify(&m, &public, &sig);
    assert!(!ok && said.contains("a/deep/c.bin"), "{said}");
    fs::write(m.join("a/deep/c.bin"), b"deep\n").unwrap();
    // An added file.
    fs::write(m.join("a/new"), b"x").unwrap();
    let (ok, said) = reference_verify(&m, &public, &sig);
    assert!(!ok && said.contains("a/new"), "{said}");
    fs::remove_file(m.join("a/new")).unwrap();
    // Another key.
    let other = SigningKey::generate(Curve::P384).verifying_key().to_pem();
    let (ok, said) = reference_verify(&m, &other, &sig);
    assert!(!ok && said.contains("Key mismatch"), "{said}");
    // Restored: verifies again.
    assert!(reference_verify(&m, &public, &sig).0);
}
