//! Control-plane benchmarks, on a real `airlock` server over loopback:
//!
//! * a 1 GiB bundle upload: how much the server's memory grows (the target:
//!   under 64 MiB, because uploads stream to disk while hashing), and its
//!   throughput;
//! * the breast-cancer gate on the server, from submission to signed
//!   attestation, one at a time (latency);
//! * gate runs per second with 2 workers, the queue kept full.
//!
//! The server runs in this process (its memory is this process's; the
//! client streams the upload from one reused 1 MiB buffer, so it adds
//! nothing that grows). Output is Markdown for `docs/benchmarks.md`.
//! Run: `env -u RUST_BACKTRACE cargo bench -p airlock-tests --bench server`.

use airlock_attest::{Curve, SigningKey};
use airlock_tests::http::{Fixture, must, setup};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One line of `/proc/self/status`, in KiB.
fn status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Streams `total` bytes to `POST /v1/blobs`, sampling RSS while it goes.
fn upload_stream(addr: &str, token: &str, total: u64) -> (u16, u64, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/blobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    let mut peak = 0u64;
    let t0 = Instant::now();
    let mut i = 0u64;
    while sent < total {
        // Different bytes per chunk, so nothing deduplicates or compresses.
        for (j, b) in buf.iter_mut().enumerate().step_by(4096) {
            *b = (i as u8).wrapping_add(j as u8);
        }
        let n = buf.len().min((total - sent) as usize);
        s.write_all(&buf[..n]).unwrap();
        sent += n as u64;
        i += 1;
        if i.is_multiple_of(16) {
            peak = peak.max(status_kib("VmRSS:"));
        }
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let elapsed = t0.elapsed();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, peak.max(status_kib("VmRSS:")), elapsed)
}

fn wait_run(addr: &str, fx: &Fixture, run: &str) -> String {
    loop {
        let v = must(addr, "GET", &format!("/v1/runs/{run}"), &fx.admin, None);
        let s = v["run"]["status"].as_str().unwrap().to_string();
        if s != "queued" && s != "running" {
            return s;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn submit(addr: &str, fx: &Fixture, version: &str) -> String {
    let v = must(
        addr,
        "POST",
        "/v1/models/bc/versions",
        &fx.submitter,
        Some(json!({ "version": version, "plugin": "xgboost@1.0.0", "bundle": fx.bundle })),
    );
    v["run"].as_str().unwrap().to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = SigningKey::generate(Curve::P256);
    let mut c = airlock_server::ServerConfig::new(
        dir.path().join("data"),
        airlock_runtime::sandbox::SandboxConfig {
            cache_dir: Some(airlock_tests::cache_dir()),
            ..Default::default()
        },
        airlock_gate::data::DataCaps::default(),
    );
    c.trust_root = vec![root.verifying_key()];
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.workers = 2;
    c.queue_depth = 64;
    let running = rt.block_on(airlock_server::start(c)).unwrap();
    let addr = running.addr.to_string();
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let admin = admin.trim().to_string();

    println!("### Control plane (`cargo bench -p airlock-tests --bench server`)\n");
    // 1. Upload memory, before any gate run has grown the heap.
    let gib = 1u64 << 30;
    let before = status_kib("VmRSS:");
    let (status, peak, took) = upload_stream(&addr, &admin, gib);
    assert!((200..300).contains(&status), "upload answered {status}");
    println!("| measure | value |\n|---|---|");
    println!(
        "| 1 GiB upload: RSS before | {:.1} MiB |",
        before as f64 / 1024.0
    );
    println!(
        "| 1 GiB upload: peak RSS while uploading | {:.1} MiB |",
        peak as f64 / 1024.0
    );
    println!(
        "| 1 GiB upload: growth | {:.1} MiB (target < 64 MiB) |",
        (peak.saturating_sub(before)) as f64 / 1024.0
    );
    println!(
        "| 1 GiB upload: throughput | {:.0} MiB/s |",
        1024.0 / took.as_secs_f64()
    );

    // 2. Submission → signed attestation, one at a time.
    let fx = setup(&addr, &dir.path().join("data"), &root);
    let _ = wait_run(&addr, &fx, &submit(&addr, &fx, "0.0.1")); // warm the compile cache
    let mut lat = Vec::new();
    for i in 0..15 {
        let t = Instant::now();
        let run = submit(&addr, &fx, &format!("0.1.{i}"));
        let s = wait_run(&addr, &fx, &run);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s, "passed");
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "| breast-cancer gate, submission → signed attestation (15 runs, one at a time) | median {:.0} ms, p10 {:.0} ms, p90 {:.0} ms |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.1),
        percentile(&lat, 0.9)
    );

    // 3. Throughput with 2 workers: 40 submissions queued at once.
    let t = Instant::now();
    let runs: Vec<String> = (0..40)
        .map(|i| submit(&addr, &fx, &format!("0.2.{i}")))
        .collect();
    for r in &runs {
        assert_eq!(wait_run(&addr, &fx, r), "passed");
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "| gate runs per second, 2 workers, 40 queued at once | {:.2} runs/s ({:.1} s for 40) |",
        40.0 / secs,
        secs
    );
    rt.block_on(running.stop()).unwrap();
}
