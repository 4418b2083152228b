//! The file store: what is appended reads back and verifies; every kind of
//! tampering with the file is named by its line; torn last lines are
//! repaired without dropping a complete entry; concurrent writers never
//! interleave; filters select what the API will serve.

use airlock_audit::{
    Action, AuditLog, Checkpoint, Filter, LineProblem, LogError, Recovery, Timestamp, read_entries,
    read_newest_entries, verify_file,
};
use serde_json::json;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A log of `n` entries in a fresh directory.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        log.append(
            if i % 2 == 0 { "alice" } else { "bob" },
            [Action::Submission, Action::GateRun, Action::Promotion][i as usize % 3].clone(),
            &format!("fraud@{}", i / 3),
            json!({ "i": i, "note": "é\n" }),
            &format!("2025-06-01T12:00:{:02}Z", i % 60),
        )
        .unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

/// Verifying the file (read-only) and opening it for append both fail, and
/// opening changes nothing.
fn both_refuse(path: &Path) -> LogError {
    let before = fs::read(path).unwrap();
    let err = verify_file(path, None).expect_err("tampering must be detected");
    let open_err = AuditLog::open(path).expect_err("open must refuse a tampered log");
    assert_eq!(err.to_string(), open_err.to_string());
    assert_eq!(fs::read(path).unwrap(), before, "open changed the file");
    assert!(err.is_tampering(), "{err}");
    err
}

#[test]
fn appended_entries_are_canonical_lines_that_read_back_and_verify() {
    let (_dir, path) = log_with(4);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.len(), 4);
    assert!(log.recoveries().is_empty());
    let entries = log.entries(&Filter::default()).unwrap();
    assert_eq!(entries.len(), 4);
    for (line, e) in lines(&path).iter().zip(&entries) {
        assert_eq!(*line, e.to_line().unwrap());
    }
    assert_eq!(log.head(), Some(&entries[3].head()));
    let s = verify_file(&path, Some(entries[3].head().into())).unwrap();
    assert_eq!(s.chain.entries, 4);
    assert_eq!(s.incomplete_tail_bytes, None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn an_edited_line_is_named() {
    let (_dir, path) = log_with(5);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"actor\":\"alice\"", "\"actor\":\"mallory\"");
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert_eq!(
        (err.line(), err.seq(), err.kind()),
        (Some(3), Some(2), "edited")
    );
    assert!(err.to_string().contains("line 3 (seq 2): edited"), "{err}");
}

#[test]
fn a_deleted_line_is_named_at_the_line_that_took_its_place() {
    let (_dir, path) = log_with(5);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert_eq!(
        (err.line(), err.seq(), err.kind()),
        (Some(2), Some(2), "broken_link")
    );
}

#[test]
fn an_inserted_line_is_named() {
    let (_dir, path) = log_with(5);
    let mut l = lines(&path);
    let copy = l[1].clone();
    l.insert(3, copy);
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert_eq!(
        (err.line(), err.seq(), err.kind()),
        (Some(4), Some(1), "broken_link")
    );
}

#[test]
fn swapped_lines_are_named_at_the_first() {
    let (_dir, path) = log_with(5);
    let mut l = lines(&path);
    l.swap(2, 3);
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert_eq!(
        (err.line(), err.seq(), err.kind()),
        (Some(3), Some(3), "broken_link")
    );
}

#[test]
fn a_truncated_tail_is_found_against_a_recorded_head() {
    let (_dir, path) = log_with(5);
    let head = AuditLog::open(&path).unwrap().head().cloned().unwrap();
    let mut l = lines(&path);
    l.truncate(3);
    write_lines(&path, &l);
    // Without a head, the shorter log is a valid log.
    assert_eq!(verify_file(&path, None).unwrap().chain.entries, 3);
    let err = verify_file(&path, Some(head.clone().into())).unwrap_err();
    assert!(err.is_tampering());
    assert_eq!(err.kind(), "checkpoint_missing");
    assert!(err.to_string().contains("ends at seq 2"), "{err}");
    // By hash alone, as `airlock audit verify --head HASH` passes it.
    let by_hash = Checkpoint {
        hash: head.hash,
        seq: None,
    };
    assert_eq!(
        verify_file(&path, Some(by_hash)).unwrap_err().kind(),
        "checkpoint_missing"
    );
}

#[test]
fn a_byte_change_that_keeps_the_meaning_is_still_found() {
    let (_dir, path) = log_with(3);
    let mut l = lines(&path);
    l[1] = l[1].replacen(':', ": ", 1);
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert!(matches!(
        err,
        LogError::BadLine {
            line: 2,
            problem: LineProblem::NotCanonical,
            ..
        }
    ));
    // An extra field, outside what the hash covers, is not an entry.
    let (_dir, path) = log_with(3);
    let mut l = lines(&path);
    l[0] = l[0].replacen('{', "{\"approved\":true,", 1);
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert_eq!((err.line(), err.kind()), (Some(1), "not_an_entry"));
}

#[test]
fn a_garbage_or_blank_line_in_the_middle_is_named_and_never_dropped() {
    for junk in ["", "not json", "{\"seq\":1"] {
        let (_dir, path) = log_with(4);
        let mut l = lines(&path);
        l.insert(2, junk.to_owned());
        write_lines(&path, &l);
        let err = both_refuse(&path);
        assert_eq!(
            (err.line(), err.kind()),
            (Some(3), "not_an_entry"),
            "{junk:?}"
        );
    }
}

#[test]
fn a_corrupt_last_line_that_has_its_newline_is_an_error_not_a_repair() {
    let (_dir, path) = log_with(3);
    let mut l = lines(&path);
    let half = l[2].len() / 2;
    l[2].truncate(half);
    write_lines(&path, &l);
    let err = both_refuse(&path);
    assert_eq!((err.line(), err.kind()), (Some(3), "not_an_entry"));
}

#[test]
fn a_torn_last_line_is_cut_off_and_reported() {
    let (_dir, path) = log_with(3);
    let intact = fs::read(&path).unwrap();
    // A crash mid-append: half of a fourth line, no newline.
    let torn = br#"{"action":"rollback","actor":"alice","det"#;
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(torn).unwrap();
    drop(f);
    // Read-only verification reports it and changes nothing.
    let s = verify_file(&path, None).unwrap();
    let bytes = torn.len() as u64;
    assert_eq!((s.chain.entries, s.incomplete_tail_bytes), (3, Some(bytes)));
    // Opening cuts it off and says so.
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.recoveries(), [Recovery::Truncated { line: 4, bytes }]);
    assert_eq!(fs::read(&path).unwrap(), intact);
    let e = log
        .append(
            "bob",
            Action::Rollback,
            "fraud@0",
            json!(null),
            "2025-06-01T13:00:00Z",
        )
        .unwrap();
    assert_eq!(e.seq, 3);
    assert_eq!(verify_file(&path, None).unwrap().chain.entries, 4);
}

#[test]
fn a_whole_last_entry_missing_only_its_newline_is_kept() {
    let (_dir, path) = log_with(3);
    // Write the next entry's line as `append` would, minus the newline.
    let head = AuditLog::open(&path).unwrap().head().cloned();
    let e = airlock_audit::Entry::next(
        head.as_ref(),
        "2025-06-01T13:00:00Z",
        "carol",
        Action::Approval,
        "fraud@1",
        json!({"ticket": 7}),
    )
    .unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(e.to_line().unwrap().as_bytes()).unwrap();
    drop(f);
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.recoveries(), [Recovery::Completed { line: 4, seq: 3 }]);
    assert_eq!(log.head(), Some(&e.head()));
    let next = log
        .append(
            "bob",
            Action::Promotion,
            "fraud@1",
            json!(null),
            "2025-06-01T13:00:01Z",
        )
        .unwrap();
    assert_eq!(next.seq, 4);
    let all = read_entries(&path, &Filter::default()).unwrap();
    assert_eq!(all[3], e);
}

#[test]
fn two_handles_appending_at_once_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let writers: Vec<_> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|actor| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut log = AuditLog::open(&path).unwrap();
                (0..40)
                    .map(|i| {
                        log.append(
                            actor,
                            Action::GateRun,
                            "m",
                            json!({ "i": i }),
                            &airlock_audit::utc_now(),
                        )
                        .unwrap()
                        .seq
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..120).collect::<Vec<u64>>());
    let s = verify_file(&path, None).unwrap();
    assert_eq!(s.chain.entries, 120);
}

#[test]
fn a_log_cut_while_open_is_refused() {
    let (_dir, path) = log_with(3);
    let mut log = AuditLog::open(&path).unwrap();
    let l = lines(&path);
    write_lines(&path, &l[..2]);
    let err = log
        .append(
            "bob",
            Action::Rollback,
            "",
            json!(null),
            "2025-06-01T13:00:00Z",
        )
        .unwrap_err();
    assert!(matches!(err, LogError::Shrunk { .. }), "{err}");
    assert!(err.is_tampering());
}

#[test]
fn bad_entries_are_refused_and_nothing_is_written() {
    let (_dir, path) = log_with(2);
    let before = fs::read(&path).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    let t = "2025-06-01T13:00:00Z";
    let cases = [
        log.append("", Action::Rollback, "", json!(null), t),
        log.append("a", Action::Other("Bad Name".into()), "", json!(null), t),
        log.append("a", Action::Rollback, "", json!(null), "2025-06-01 13:00"),
        log.append("a", Action::Rollback, "", json!({"n": u64::MAX}), t),
        log.append("a", Action::Rollback, "", json!("x".repeat(1 << 20)), t),
    ];
    for r in cases {
        let err = r.unwrap_err();
        assert_eq!(err.kind(), "bad_entry", "{err}");
        assert!(!err.is_tampering());
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    // The handle still works.
    assert_eq!(
        log.append("a", Action::Rollback, "", json!(null), t)
            .unwrap()
            .seq,
        2
    );
}

#[test]
fn the_deepest_allowed_details_and_every_float_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut deep = json!(0.1);
    for _ in 0..airlock_audit::canonical::MAX_DEPTH - 1 {
        deep = json!([deep]);
    }
    let mut log = AuditLog::open(&path).unwrap();
    let t = "2025-06-01T13:00:00Z";
    let a = log.append("a", Action::Rollback, "", deep, t).unwrap();
    let floats = json!([
        5e-324,
        1.7976931348623157e308,
        0.1,
        -2.5e-7,
        1e21,
        123456789.125
    ]);
    let b = log.append("a", Action::Rollback, "", floats, t).unwrap();
    drop(log);
    let back = read_entries(&path, &Filter::default()).unwrap();
    assert_eq!(back, [a, b]);
}

#[test]
fn filters_select_by_action_actor_subject_time_and_seq() {
    let (_dir, path) = log_with(12);
    let read = |f: Filter| -> Vec<u64> {
        read_entries(&path, &f)
            .unwrap()
            .into_iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(read(Filter::default()).len(), 12);
    assert_eq!(
        read(Filter {
            action: Some(Action::Promotion),
            ..Filter::default()
        }),
        [2, 5, 8, 11]
    );
    assert_eq!(
        read(Filter {
            actor: Some("bob".into()),
            subject: Some("fraud@1".into()),
            ..Filter::default()
        }),
        [3, 5]
    );
    assert_eq!(
        read(Filter {
            since: Some(Timestamp::parse("2025-06-01T12:00:04Z").unwrap()),
            until: Some(Timestamp::parse("2025-06-01T12:00:06.5Z").unwrap()),
            ..Filter::default()
        }),
        [4, 5, 6]
    );
    assert_eq!(
        read(Filter {
            seq_from: Some(9),
            ..Filter::default()
        }),
        [9, 10, 11]
    );
    assert_eq!(
        read(Filter {
            seq_from: Some(2),
            seq_to: Some(7),
            limit: Some(3),
            ..Filter::default()
        }),
        [2, 3, 4]
    );
    assert_eq!(
        read(Filter {
            limit: Some(0),
            ..Filter::default()
        }),
        Vec::<u64>::new()
    );
    assert_eq!(
        read(Filter {
            action: Some(Action::other("token_change").unwrap()),
            ..Filter::default()
        }),
        Vec::<u64>::new()
    );
}

#[test]
fn what_is_not_a_regular_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let err = verify_file(dir.path(), None).unwrap_err();
    assert_eq!(err.kind(), "not_a_file");
    assert!(!err.is_tampering());
    assert_eq!(AuditLog::open(dir.path()).unwrap_err().kind(), "not_a_file");
    let missing = verify_file(&dir.path().join("missing"), None).unwrap_err();
    assert_eq!(missing.kind(), "io");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(verify_file(&fifo, None).unwrap_err().kind(), "not_a_file");
    assert_eq!(AuditLog::open(&fifo).unwrap_err().kind(), "not_a_file");
}

#[test]
fn the_newest_entries_come_newest_first_filtered_and_paged_back() {
    let (_dir, path) = log_with(10);
    let seqs = |f: &Filter, n: usize| -> Vec<u64> {
        read_newest_entries(&path, f, n)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(&Filter::default(), 3), [9, 8, 7]);
    // The next page: before the last one shown.
    let before_7 = Filter {
        seq_to: Some(6),
        ..Filter::default()
    };
    assert_eq!(seqs(&before_7, 3), [6, 5, 4]);
    // Filters apply before the count; fewer than asked is all there is.
    let bob = Filter {
        actor: Some("bob".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&bob, 2), [9, 7]);
    assert_eq!(seqs(&bob, 100), [9, 7, 5, 3, 1]);
    assert_eq!(seqs(&Filter::default(), 0), Vec::<u64>::new());
}
