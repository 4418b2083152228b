//! The README's "Using it" section, run as written: the block is taken
//! from `README.md` itself and executed by bash from the repository root,
//! so a README that drifts from the commands fails here.
//!
//! One substitution, because the test is already inside the build: the
//! block's first line (`cargo build --workspace`, which built this test and,
//! through `tests/build.rs`, put every plugin in `target/plugins/`) is not
//! run again, and `airlock` on PATH is this build's binary. The block's
//! `mktemp -d` lands in a temporary directory removed afterwards; guest
//! crates build in `target/scaffold-test`, shared with `scaffold.rs`.

use airlock_tests::{airlock_bin, cache_dir, repo_root};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The first ```sh block after `## Using it`.
fn using_it_block(readme: &str) -> String {
    let section = &readme[readme
        .find("\n## Using it")
        .expect("README.md has a `## Using it` section")..];
    let start = section.find("```sh\n").expect("a ```sh block") + "```sh\n".len();
    let len = section[start..].find("\n```").expect("the block ends");
    section[start..start + len].to_string()
}

#[test]
fn the_using_it_section_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = using_it_block(&readme);
    let first = block.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("cargo build --workspace "),
        "the section starts by building: {first}"
    );
    for p in [
        "xgboost",
        "performance",
        "schema",
        "golden",
        "robustness",
        "drift",
    ] {
        let wasm = root.join("target/plugins").join(format!("{p}.wasm"));
        assert!(wasm.is_file(), "the build left no {}", wasm.display());
    }
    let tmp = tempfile::tempdir().unwrap();
    let shim = tmp.path().join("bin");
    std::fs::create_dir_all(&shim).unwrap();
    std::os::unix::fs::symlink(airlock_bin(), shim.join("airlock")).unwrap();
    let body: Vec<&str> = block.lines().skip(1).collect();
    let script = format!(
        "set -euo pipefail\n\
         # Whatever fails, no server outlives the script.\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n\
         {}\n",
        body.join("\n").replace(
            "export PATH=\"$PWD/target/debug:$PATH\"",
            &format!(
                "export PATH=\"$PWD/target/debug:$PATH\"; export PATH=\"{}:$PATH\"",
                shim.display()
            )
        )
    );
    let script_path = tmp.path().join("using-it.sh");
    std::fs::write(&script_path, &script).unwrap();
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(&root)
        .env("TMPDIR", &scratch)
        .env("AIRLOCK_CACHE_DIR", cache_dir())
        .env(
            "CARGO_TARGET_DIR",
            root.join("target").join("scaffold-test"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("AIRLOCK_") && k != "AIRLOCK_CACHE_DIR" {
            cmd.env_remove(&k);
        }
    }
    for v in [
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(v);
    }
    let mut child = cmd.spawn().expect("running bash");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Bounded: a hung step fails the test instead of the whole run.
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the README's section ran over 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "the README's section failed ({status})\n--- script\n{script}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    for expected in [
        ": PASSED (breast-cancer 1.0.0 under gate breast-cancer v1)",
        "breast-cancer production -> 1.0.0",
        "breast-cancer production rolled back to 1.0.0",
        "older entries: airlock audit log --limit 5 --before ",
    ] {
        assert!(
            out.contains(expected),
            "no {expected:?} in\n{out}\n--- stderr\n{err}"
        );
    }
}
