//! Crash test: a process appending in a loop is killed with SIGKILL at
//! random moments, again and again; after each kill the log is reopened
//! (which repairs a torn last line) and must verify, and every entry the
//! killed process had acknowledged — it prints an entry's seq and hash
//! only after `append` returned — must be in it, unchanged.
//!
//! The appending process is this test executable again, started with
//! `AIRLOCK_AUDIT_CRASH_CHILD` set to the log's path: the same test then
//! runs as the child. A process kill leaves the page cache alone, so this
//! proves that nothing `append` acknowledged is lost or damaged by a crash
//! of the writer and the recovery after it; that `fdatasync` survives a
//! power cut is the kernel's and the device's promise (docs/audit.md).

use airlock_audit::{Action, AuditLog, Filter, read_entries, verify_file};
use serde_json::json;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "AIRLOCK_AUDIT_CRASH_CHILD";
const TEST_NAME: &str = "sigkilled_appenders_never_lose_an_acknowledged_entry";
const KILLS: u32 = 60;
const MIN_KILLS: u32 = 50;

/// The child: append forever (until killed; it gives up by itself after
/// 20 s in case its parent died), acknowledging each entry on stdout.
fn append_until_killed(path: &std::ffi::OsStr) {
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut log = AuditLog::open(path).expect("the child opens the log");
    let mut out = std::io::stdout().lock();
    let mut n: u64 = 0;
    while Instant::now() < give_up {
        // Entries of varying size, some large, so that kills land in
        // writes of different lengths.
        let padding = "x".repeat((n as usize * 97) % 2000);
        let e = log
            .append(
                &format!("child-{}", std::process::id()),
                Action::GateRun,
                "model@1",
                json!({ "n": n, "padding": padding }),
                &airlock_audit::utc_now(),
            )
            .expect("append");
        // The acknowledgement: printed only once `append` has returned.
        if writeln!(out, "ack:{}:{}", e.seq, e.hash)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
        n += 1;
    }
}

/// A small random number generator seeded from the process's randomness.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::hash::RandomState::new().build_hasher().finish() | 1;
        eprintln!("crash test seed: {seed:#x}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkilled_appenders_never_lose_an_acknowledged_entry() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        append_until_killed(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let (mut kills, mut runs_that_acked, mut recoveries) = (0u32, 0u32, 0usize);

    while kills < KILLS && Instant::now() < deadline {
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the child");
        let stdout = child.stdout.take().unwrap();
        let (first_ack, got_first_ack) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            // Only whole lines count: a kill can cut an acknowledgement
            // short, and a cut one is not an acknowledgement.
            let mut acks = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.last() == Some(&b'\n') {
                    let text = String::from_utf8_lossy(&line);
                    if let Some((_, ack)) = text.trim_end().rsplit_once("ack:") {
                        let (seq, hash) = ack.split_once(':').unwrap();
                        acks.push((seq.parse::<u64>().unwrap(), hash.to_owned()));
                        let _ = first_ack.send(());
                    }
                }
                line.clear();
            }
            acks
        });
        // One kill in four at any moment from the start (in the child's
        // open and recovery too); the others once it is appending.
        if rng.below(4) != 0 {
            let _ = got_first_ack.recv_timeout(Duration::from_secs(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(25)));
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        kills += 1;
        let acks = reader.join().unwrap();
        if !acks.is_empty() {
            runs_that_acked += 1;
        }
        for (seq, hash) in acks {
            assert!(
                acked.insert(seq, hash).is_none(),
                "seq {seq} acknowledged twice"
            );
        }

        // Reopen (repairing a torn tail), then verify every acknowledged
        // entry is there with the hash the child saw.
        let log =
            AuditLog::open(&path).unwrap_or_else(|e| panic!("reopening after kill {kills}: {e}"));
        recoveries += log.recoveries().len();
        drop(log);
        // Reading verifies the whole chain.
        let entries = read_entries(&path, &Filter::default())
            .unwrap_or_else(|e| panic!("verifying after kill {kills}: {e}"));
        for (seq, hash) in &acked {
            let e = entries
                .get(*seq as usize)
                .unwrap_or_else(|| panic!("acknowledged seq {seq} lost after kill {kills}"));
            assert_eq!(&e.hash, hash, "acknowledged seq {seq} changed");
        }
    }
    let summary = verify_file(&path, None).unwrap();
    assert_eq!(summary.incomplete_tail_bytes, None);
    let total = summary.chain.entries;
    eprintln!(
        "{kills} kills, {} acknowledged entries, {total} in the log, {recoveries} torn tails repaired",
        acked.len()
    );
    assert!(kills >= MIN_KILLS, "only {kills} kills before the deadline");
    assert!(
        runs_that_acked >= kills / 2,
        "only {runs_that_acked} of {kills} children appended before being killed"
    );
}
