//! `airlock audit verify`: exit 0 for an intact log (printing the head to
//! record), 1 naming the first bad entry of a tampered one, 2 when the log
//! cannot be read or `--head` is malformed.

use airlock_audit::{Action, AuditLog};
use airlock_tests::airlock_bin;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn airlock(args: &[&str]) -> Output {
    Command::new(airlock_bin())
        .args(args)
        .output()
        .expect("running airlock")
}

/// A log of `n` entries; returns its path and the head as `SEQ:HASH`.
fn log_of(dir: &Path, n: u64) -> (PathBuf, String) {
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        log.append(
            "alice",
            [Action::Submission, Action::GateRun, Action::Promotion][i as usize % 3].clone(),
            "fraud@1",
            json!({ "i": i }),
            &format!("2025-06-01T12:00:0{i}Z"),
        )
        .unwrap();
    }
    let h = log.head().unwrap();
    (path.clone(), format!("{}:{}", h.seq, h.hash))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stderr, asserting it is exactly one line.
fn one_line_err(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
    e
}

#[test]
fn an_intact_log_exits_0_and_prints_the_head_to_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, head) = log_of(dir.path(), 3);
    let file = path.to_str().unwrap();
    let o = airlock(&["audit", "verify", file]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("3 entries, head {head}")),
        "{}",
        stdout(&o)
    );
    // The printed head verifies, by SEQ:HASH and by hash alone.
    let hash = head.split_once(':').unwrap().1;
    for h in [head.as_str(), hash] {
        let o = airlock(&["audit", "verify", file, "--head", h]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = airlock(&["audit", "verify", file, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(v["summary"]["entries"], 3);
    assert_eq!(v["summary"]["head"]["hash"], hash);
}

#[test]
fn a_tampered_log_exits_1_naming_the_first_bad_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_of(dir.path(), 4);
    let file = path.to_str().unwrap();
    let original = lines(&path);

    // An edited field.
    let mut l = original.clone();
    l[1] = l[1].replace("\"actor\":\"alice\"", "\"actor\":\"mallory\"");
    rewrite(&path, &l);
    let o = airlock(&["audit", "verify", file]);
    assert_eq!(o.status.code(), Some(1));
    let e = one_line_err(&o);
    assert!(e.contains("line 2 (seq 1): edited"), "{e}");

    // A deleted entry.
    let mut l = original.clone();
    l.remove(1);
    rewrite(&path, &l);
    let o = airlock(&["audit", "verify", file, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line_err(&o).contains("line 2 (seq 2): broken link"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["intact"], &v["line"], &v["seq"], &v["kind"]),
        (&json!(false), &json!(2), &json!(2), &json!("broken_link"))
    );

    // Two entries swapped.
    let mut l = original.clone();
    l.swap(2, 3);
    rewrite(&path, &l);
    let o = airlock(&["audit", "verify", file]);
    assert_eq!(o.status.code(), Some(1));
    assert!(one_line_err(&o).contains("line 3 (seq 3): broken link"));
}

#[test]
fn a_cut_tail_exits_1_only_against_a_recorded_head() {
    let dir = tempfile::tempdir().unwrap();
    let (path, head) = log_of(dir.path(), 4);
    let file = path.to_str().unwrap();
    let l = lines(&path);
    rewrite(&path, &l[..2]);
    let o = airlock(&["audit", "verify", file]);
    assert_eq!(o.status.code(), Some(0), "a shorter chain is a valid chain");
    let o = airlock(&["audit", "verify", file, "--head", &head]);
    assert_eq!(o.status.code(), Some(1));
    let e = one_line_err(&o);
    assert!(
        e.contains("truncated or rewritten") && e.contains("ends at seq 1"),
        "{e}"
    );
}

#[test]
fn an_unreadable_log_or_a_bad_head_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_of(dir.path(), 1);
    let missing = dir.path().join("missing.jsonl");
    for args in [
        vec!["audit", "verify", missing.to_str().unwrap()],
        vec!["audit", "verify", dir.path().to_str().unwrap()],
        vec!["audit", "verify", path.to_str().unwrap(), "--head", "abc"],
    ] {
        let o = airlock(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(one_line_err(&o).starts_with("error: "));
    }
}
