//! SIGKILL at random moments during uploads, gate runs and promotions.
//!
//! The test executable re-runs itself as the server (`crash_child`, with
//! `AIRLOCK_SERVER_CRASH_CHILD` set to the data directory), drives it over
//! loopback HTTP from a load thread, kills it with SIGKILL after a random
//! delay, restarts it, and checks the data directory after every restart:
//! no partial blob, no record pointing at a missing blob, no promotion
//! without a passing attestation, an empty audit outbox and a log that
//! verifies, and every run that was queued or running marked interrupted
//! (and re-runnable).

use airlock_attest::{Curve, SigningKey, VerifyingKey};
use airlock_core::digest::Digest;
use airlock_tests::http::{Fixture, call, must, setup, upload};
use serde_json::json;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "AIRLOCK_SERVER_CRASH_CHILD";
/// Kills per run (`AIRLOCK_SERVER_CRASH_KILLS` overrides, for longer soaks).
const KILLS: usize = 100;

/// The server, when this process is the child: serves until killed.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let root = VerifyingKey::from_pem(&std::fs::read_to_string(dir.join("root.pub")).unwrap())
            .unwrap();
        let mut c = airlock_server::ServerConfig::new(
            dir.join("data"),
            airlock_runtime::sandbox::SandboxConfig {
                cache_dir: Some(airlock_tests::cache_dir()),
                ..Default::default()
            },
            airlock_gate::data::DataCaps::default(),
        );
        c.trust_root = vec![root];
        c.listen = "127.0.0.1:0".parse().unwrap();
        let running = airlock_server::start(c).await.expect("server start");
        let tmp = dir.join("url.tmp");
        std::fs::write(&tmp, format!("{}", running.addr)).unwrap();
        std::fs::rename(&tmp, dir.join("url")).unwrap();
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

struct Server {
    child: Child,
    addr: String,
}

// The child is waited for in `Server`'s `Drop`.
#[allow(clippy::zombie_processes)]
fn start(dir: &Path) -> Server {
    let _ = std::fs::remove_file(dir.join("url"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server_crash::crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Ok(addr) = std::fs::read_to_string(dir.join("url")) {
            return Server { child, addr };
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Random operations until the server dies or `stop` is set.
fn load(addr: String, fx: Fixture, round: usize, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        match next() % 4 {
            0 => {
                let size = 64 * 1024 + (next() % (6 << 20)) as usize;
                let fill = (next() % 251) as u8;
                let bytes: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(fill)).collect();
                if upload(&addr, &fx.submitter, &bytes).is_none() {
                    return;
                }
            }
            1 => {
                let v = format!("1.{round}.{k}");
                let body = json!({ "version": v, "plugin": "xgboost@1.0.0", "bundle": fx.bundle });
                if call(
                    &addr,
                    "POST",
                    "/v1/models/bc/versions",
                    &fx.submitter,
                    Some(body),
                )
                .is_none()
                {
                    return;
                }
            }
            _ => {
                // Promote the newest version whose run passed (approving it first).
                let Some((_, list)) = call(
                    &addr,
                    "GET",
                    "/v1/models/bc/versions?limit=500",
                    &fx.admin,
                    None,
                ) else {
                    return;
                };
                let versions: Vec<String> = list["items"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v["version"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let Some(v) = versions.last() else { continue };
                if call(
                    &addr,
                    "POST",
                    &format!("/v1/models/bc/versions/{v}/approvals"),
                    &fx.approver,
                    Some(json!({})),
                )
                .is_none()
                {
                    return;
                }
                let body = json!({ "version": v, "reason": "crash test" });
                if call(
                    &addr,
                    "POST",
                    "/v1/models/bc/promote",
                    &fx.deployer,
                    Some(body),
                )
                .is_none()
                {
                    return;
                }
                if next() % 3 == 0
                    && call(
                        &addr,
                        "POST",
                        "/v1/models/bc/rollback",
                        &fx.deployer,
                        Some(json!({})),
                    )
                    .is_none()
                {
                    return;
                }
            }
        }
    }
}

/// Checks the data directory of a server that has just (re)started.
async fn check(dir: &Path, round: usize) -> (usize, usize, usize) {
    let data = dir.join("data");
    let blobs = data.join("blobs/sha256");
    // Every published blob is complete: its bytes hash to its name.
    let mut on_disk = std::collections::HashSet::new();
    for e in std::fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            name,
            "round {round}: partial blob {name}"
        );
        on_disk.insert(format!("sha256:{name}"));
    }
    let leftovers = std::fs::read_dir(data.join("blobs/tmp")).unwrap().count();
    assert_eq!(
        leftovers, 0,
        "round {round}: temporaries left after restart"
    );
    let url = format!("sqlite://{}?mode=ro", data.join("airlock.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut referenced: Vec<String> = Vec::new();
    for q in [
        "SELECT digest FROM blobs",
        "SELECT digest FROM plugins",
        "SELECT plugin FROM versions",
        "SELECT bundle_archive FROM versions WHERE bundle_archive IS NOT NULL",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(q).fetch_all(&db).await.unwrap();
        referenced.extend(rows.into_iter().map(|r| r.0));
    }
    for d in &referenced {
        assert!(
            on_disk.contains(d),
            "round {round}: a record points at missing blob {d}"
        );
        assert!(Digest::parse(d).is_some());
    }
    // Every promotion has a passing run with its attestation.
    let promos: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT version, run_id FROM history WHERE action = 'promote'")
            .fetch_all(&db)
            .await
            .unwrap();
    for (v, run) in &promos {
        let run = run
            .as_ref()
            .unwrap_or_else(|| panic!("round {round}: promotion of {v} names no run"));
        let (status, att): (String, Option<String>) =
            sqlx::query_as("SELECT status, attestation FROM runs WHERE id = $1")
                .bind(run)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(status, "passed", "round {round}: {v} promoted on run {run}");
        assert!(
            att.is_some(),
            "round {round}: {v} promoted without attestation"
        );
    }
    // Nothing is left queued or running from before the restart.
    let (stuck,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(stuck, 0, "round {round}: runs left queued or running");
    let (outbox,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "round {round}: audit entries left in the outbox");
    airlock_audit::verify_file(&data.join("audit.jsonl"), None)
        .unwrap_or_else(|e| panic!("round {round}: audit log: {e}"));
    let (interrupted,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM runs WHERE status = 'interrupted'")
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    (interrupted as usize, promos.len(), on_disk.len())
}

#[test]
fn sigkill_during_uploads_gate_runs_and_promotions_loses_nothing_and_leaves_nothing_half_done() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let kills: usize = std::env::var("AIRLOCK_SERVER_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    let dir = tempfile::tempdir().unwrap();
    let root = SigningKey::generate(Curve::P256);
    std::fs::write(dir.path().join("root.pub"), root.verifying_key().to_pem()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut server = start(dir.path());
    let fx = setup(&server.addr, &dir.path().join("data"), &root);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut counts = (0, 0, 0);
    let t0 = Instant::now();
    for round in 0..kills {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (addr, fx, stop) = (server.addr.clone(), fx.clone(), stop.clone());
            std::thread::spawn(move || load(addr, fx, round, seed | 1, stop))
        };
        std::thread::sleep(Duration::from_millis(20 + (seed >> 33) % 600));
        let _ = server.child.kill();
        let _ = server.child.wait();
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        server = start(dir.path());
        counts = rt.block_on(check(dir.path(), round));
    }
    // An interrupted run can be re-run to completion.
    let url = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("data/airlock.db").display()
    );
    let versions: Vec<(String,)> = rt.block_on(async {
        let db = sqlx::SqlitePool::connect(&url).await.unwrap();
        let v = sqlx::query_as("SELECT version FROM runs WHERE status = 'interrupted' LIMIT 1")
            .fetch_all(&db)
            .await
            .unwrap();
        db.close().await;
        v
    });
    if let Some((v,)) = versions.first() {
        let r = must(
            &server.addr,
            "POST",
            &format!("/v1/models/bc/versions/{v}/runs"),
            &fx.submitter,
            None,
        );
        let run = r["run"].as_str().unwrap().to_string();
        let t = Instant::now();
        loop {
            let s = must(
                &server.addr,
                "GET",
                &format!("/v1/runs/{run}"),
                &fx.admin,
                None,
            );
            let status = s["run"]["status"].as_str().unwrap().to_string();
            if status == "passed" {
                break;
            }
            assert!(
                matches!(status.as_str(), "queued" | "running"),
                "re-run ended {status}"
            );
            assert!(t.elapsed() < Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "server crash test: {kills} kills in {:.1} s; {} runs interrupted and marked, {} promotions, {} blobs",
        t0.elapsed().as_secs_f64(),
        counts.0,
        counts.1,
        counts.2
    );
    assert!(
        counts.0 > 0 && counts.1 > 0,
        "the kills must land during gate runs and after promotions: {counts:?}"
    );
}
